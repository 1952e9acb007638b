//! Template functions: Go's builtins, the sprig functions ESO exposes, and ESO's own.
//!
//! Each family registers its functions with Go's parameter types ([`Param`]), so the
//! evaluator checks arguments as Go's reflection does. Functions never see the evaluator:
//! they take values and give a value (no import cycle). Errors name the function and the
//! problem, never an argument's value.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::LazyLock;

use super::TemplateContext;
use super::gotime::Time;
use super::value::Value;

mod builtin;
mod collections;
pub(crate) mod date;
mod encoding;
mod eso;
mod gofmt;
mod json;
mod math;
mod strings;
mod yaml;

/// A parameter's Go type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Param {
    /// `interface{}`.
    Any,
    /// `string`.
    Str,
    /// `int`.
    Int,
    /// `float64`.
    Float,
    /// `bool`.
    Bool,
    /// `map[string]interface{}`.
    MapAny,
    /// `time.Time`.
    Time,
}

impl Param {
    /// Go's spelling, for errors.
    pub fn go_name(self) -> &'static str {
        match self {
            Param::Any => "interface {}",
            Param::Str => "string",
            Param::Int => "int",
            Param::Float => "float64",
            Param::Bool => "bool",
            Param::MapAny => "map[string]interface {}",
            Param::Time => "time.Time",
        }
    }
}

/// What a function sees besides its arguments.
pub(crate) struct Call<'a> {
    /// The data (for printing the data map).
    pub ctx: &'a TemplateContext,
    /// The function's name.
    pub name: &'static str,
    /// The clock (`now`).
    pub now: Time,
    /// The first argument is a string literal of the template (not data), so an error may
    /// quote it (`printf`'s format).
    pub literal_first: bool,
    /// Texts `fromJson` parsed in this render, each with a private copy of what it gave.
    pub json_memo: &'a mut JsonMemo,
}

/// `fromJson`'s results of one render: the text and an unshared copy of its value.
pub(crate) type JsonMemo = Vec<(super::value::Bytes, Value)>;

/// A call's arguments: inline up to four (most calls), so a call allocates nothing for them.
pub(crate) type Args = smallvec::SmallVec<[Value; 4]>;

/// A function's implementation.
pub(crate) type Imp = fn(&mut Call<'_>, Args) -> Result<Value, String>;

/// A function: name, Go parameter types, implementation.
pub(crate) struct Func {
    pub name: &'static str,
    pub params: &'static [Param],
    pub variadic: Option<Param>,
    pub f: Imp,
}

impl std::fmt::Debug for Func {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// Where families add their functions.
pub(crate) struct Table(Vec<Func>);

impl Table {
    /// A function with fixed parameters.
    pub fn add(&mut self, name: &'static str, params: &'static [Param], f: Imp) {
        self.0.push(Func {
            name,
            params,
            variadic: None,
            f,
        });
    }
    /// A function whose last parameter is variadic (`...T`).
    pub fn var(&mut self, name: &'static str, params: &'static [Param], rest: Param, f: Imp) {
        self.0.push(Func {
            name,
            params,
            variadic: Some(rest),
            f,
        });
    }
}

static TABLE: LazyLock<HashMap<&'static str, Func>> = LazyLock::new(|| {
    let mut t = Table(Vec::new());
    builtin::register(&mut t);
    strings::register(&mut t);
    math::register(&mut t);
    collections::register(&mut t);
    json::register(&mut t);
    encoding::register(&mut t);
    date::register(&mut t);
    eso::register(&mut t);
    t.0.into_iter().map(|f| (f.name, f)).collect()
});

/// Functions of sprig (or Go) that are deliberately left out, with why: a load-time error.
pub(crate) const EXCLUDED: &[(&str, &str)] = &[
    ("env", "ESO removes it (it would expose the process environment)"),
    ("expandenv", "ESO removes it (it would expose the process environment)"),
    ("getHostByName", "it would make network lookups during a sync"),
    ("call", "templates have no function values to call"),
    (
        "genPrivateKey",
        "key generation belongs to generators, not templates (output differs every sync)",
    ),
    ("genCA", "certificate generation belongs to generators, not templates"),
    (
        "genCAWithKey",
        "certificate generation belongs to generators, not templates",
    ),
    (
        "genSelfSignedCert",
        "certificate generation belongs to generators, not templates",
    ),
    (
        "genSelfSignedCertWithKey",
        "certificate generation belongs to generators, not templates",
    ),
    (
        "genSignedCert",
        "certificate generation belongs to generators, not templates",
    ),
    (
        "genSignedCertWithKey",
        "certificate generation belongs to generators, not templates",
    ),
    (
        "buildCustomCert",
        "certificate generation belongs to generators, not templates",
    ),
    ("derivePassword", "not supported by secretsync"),
    ("encryptAES", "not supported by secretsync"),
    ("decryptAES", "not supported by secretsync"),
    ("rsaDecrypt", "not supported by secretsync"),
    ("semver", "not supported by secretsync"),
    ("semverCompare", "not supported by secretsync"),
    ("toDecimal", "not supported by secretsync"),
    ("deepCopy", "not supported by secretsync"),
    ("mustDeepCopy", "not supported by secretsync"),
    ("typeIsLike", "not supported by secretsync"),
    ("deepEqual", "not supported by secretsync"),
    ("urlParse", "not supported by secretsync"),
    ("urlJoin", "not supported by secretsync"),
    ("shuffle", "not supported by secretsync"),
    ("addf", "decimal arithmetic is not supported by secretsync"),
    ("add1f", "decimal arithmetic is not supported by secretsync"),
    ("subf", "decimal arithmetic is not supported by secretsync"),
    ("mulf", "decimal arithmetic is not supported by secretsync"),
    ("divf", "decimal arithmetic is not supported by secretsync"),
    ("pemTruststoreToPKCS12", "not supported by secretsync"),
    ("pemTruststoreToPKCS12Pass", "not supported by secretsync"),
    ("getSecretKey", "not an ESO template function"),
];

/// The function called `name`.
pub(crate) fn lookup(name: &str) -> Option<&'static Func> {
    TABLE.get(name)
}

/// Functions whose result depends on the clock or on randomness (PKCS#12 encoding draws
/// salts): a template that calls one renders differently each time.
const VARYING: &[&str] = &[
    "now",
    "date",
    "dateInZone",
    "date_in_zone",
    "htmlDate",
    "htmlDateInZone",
    "ago",
    "durationRound",
    "bcrypt",
    "htpasswd",
    "randBytes",
    "randAlphaNum",
    "randAlpha",
    "randNumeric",
    "randAscii",
    "randInt",
    "uuidv4",
    "pemToPkcs12",
    "pemToPkcs12Pass",
    "fullPemToPkcs12",
    "fullPemToPkcs12Pass",
];

/// Whether a function's result may differ between calls with the same arguments.
pub(crate) fn varies(name: &str) -> bool {
    VARYING.contains(&name)
}

/// The static name of a function the parser may use (including `and` / `or`, which the
/// evaluator handles itself).
pub(crate) fn lookup_name(name: &str) -> Option<&'static str> {
    match name {
        "and" => Some("and"),
        "or" => Some("or"),
        n => TABLE.get(n).map(|f| f.name),
    }
}

/// Why a known function is left out, if it is.
pub(crate) fn excluded(name: &str) -> Option<&'static str> {
    EXCLUDED.iter().find(|(n, _)| *n == name).map(|(_, why)| *why)
}

/// Every supported function name, sorted.
pub(crate) fn names() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = TABLE.keys().copied().chain(["and", "or"]).collect();
    v.sort_unstable();
    v
}

// ---------------------------------------------------------------- helpers for families

/// The bytes of a `string` argument (the evaluator checked its type).
pub(crate) fn bytes(v: &Value) -> &[u8] {
    v.as_bytes().unwrap_or_default()
}

/// A `string` argument as text (invalid UTF-8 replaced, as Go's rune loops do).
pub(crate) fn text(v: &Value) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes(v))
}

/// An int argument.
pub(crate) fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i, _) => *i,
        _ => 0,
    }
}

/// sprig's `strval`: strings as they are, anything else as `%v` prints it.
pub(crate) fn strval(c: &Call<'_>, v: &Value) -> Vec<u8> {
    match v {
        Value::Str(s) => s.to_vec(),
        Value::Nil => b"<nil>".to_vec(),
        other => super::value::to_text(other, c.ctx).to_vec(),
    }
}

/// spf13/cast's `ToInt64` (what sprig's numeric functions use): strings parse in any Go
/// base, floats truncate, anything else is 0.
pub(crate) fn to_i64(v: &Value) -> i64 {
    match v {
        Value::Int(i, _) => *i,
        Value::Float(f) => *f as i64,
        Value::Bool(b) => i64::from(*b),
        Value::Str(s) => parse_go_int(&trim_zero_decimal(&String::from_utf8_lossy(s))).unwrap_or(0),
        _ => 0,
    }
}

/// spf13/cast's `ToFloat64`.
pub(crate) fn to_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i, _) => *i as f64,
        Value::Float(f) => *f,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Str(s) => parse_go_float(&String::from_utf8_lossy(s)).unwrap_or(0.0),
        _ => 0.0,
    }
}

/// `1.000` → `1`, as cast does before parsing an int.
fn trim_zero_decimal(s: &str) -> String {
    let b = s.as_bytes();
    let mut found_zero = false;
    for i in (1..=b.len()).rev() {
        match b[i - 1] {
            b'.' if found_zero => return s[..i - 1].to_string(),
            b'.' => {}
            b'0' => found_zero = true,
            _ => return s.to_string(),
        }
    }
    s.to_string()
}

/// Go's `strconv.ParseInt(s, 0, 64)`: sign, `0x` / `0o` / `0b` / `0` prefixes, `_` between
/// digits only with a prefix.
pub(crate) fn parse_go_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits, prefixed) = if let Some(h) = lower.strip_prefix("0x") {
        (16, h.to_string(), true)
    } else if let Some(o) = lower.strip_prefix("0o") {
        (8, o.to_string(), true)
    } else if let Some(b) = lower.strip_prefix("0b") {
        (2, b.to_string(), true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_string(), true)
    } else {
        (10, lower.clone(), false)
    };
    let digits = if prefixed {
        if digits.starts_with('_') && radix != 8 || digits.ends_with('_') || digits.contains("__") {
            return None;
        }
        digits.replace('_', "")
    } else {
        digits
    };
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let v = i128::from_str_radix(&digits, radix).ok()?;
    let v = if neg { -v } else { v };
    i64::try_from(v).ok()
}

/// Go's `strconv.ParseFloat(s, 64)` for the usual spellings.
pub(crate) fn parse_go_float(s: &str) -> Option<f64> {
    let t = s.to_ascii_lowercase();
    let body = t.trim_start_matches(['+', '-']);
    match body {
        "inf" | "infinity" => {
            return Some(if t.starts_with('-') {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            });
        }
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    if body.starts_with("0x") || body.contains('_') || body.is_empty() {
        return None;
    }
    if !body
        .bytes()
        .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'+' | b'-'))
    {
        return None;
    }
    s.parse::<f64>().ok()
}

/// A list's elements, for functions that take `interface{}` and want a slice.
pub(crate) fn as_list(v: &Value) -> Option<&[Value]> {
    match v {
        Value::List(l) => Some(l),
        _ => None,
    }
}

/// An error that names the function and what is wrong.
pub(crate) fn fail<T>(msg: impl Into<String>) -> Result<T, String> {
    Err(msg.into())
}
