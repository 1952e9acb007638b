//! Values during evaluation, typed as Go's text/template sees them, and how Go prints them.
//!
//! ESO hands templates a `map[string]string`; functions make ints, floats, lists, maps and
//! times. The Go type matters where Go is strict (a `string` parameter refuses an `int`, an
//! `int` parameter refuses an `int64`) and where it prints differently (`<no value>` for a
//! missing interface value, `1e+06` for a float).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use zeroize::Zeroizing;

use super::TemplateContext;
pub(crate) use super::gotime::Time;

/// Bytes of a Go string: shared, zeroized when the last reference goes. `Arc` (not `Rc`) so
/// a parsed template, shared between threads, can hold its string constants ready to use.
pub(crate) type Bytes = Arc<Zeroizing<Vec<u8>>>;

/// A Go map: shared and mutable, as `set` / `unset` / `merge` change it in place.
pub(crate) type MapRef = Rc<RefCell<BTreeMap<String, Value>>>;

/// Which Go integer type an integer has: sprig returns `int64` where text/template constants
/// are `int`, and an `int` parameter refuses an `int64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IntTy {
    Int,
    Int64,
}

/// Which Go map type a map has: the data (`map[string]string`) and `split` give string maps,
/// whose missing keys `index` reads as `""`; JSON, YAML and `dict` give `map[string]interface{}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MapTy {
    Strings,
    Any,
}

/// A value as a template sees it.
#[derive(Clone)]
pub(crate) enum Value {
    /// A missing interface value (Go's invalid `reflect.Value` / nil interface).
    Nil,
    Bool(bool),
    Int(i64, IntTy),
    Float(f64),
    Str(Bytes),
    /// `[]interface{}` (and `[]string`, which prints and indexes alike).
    List(Rc<Vec<Value>>),
    Map(MapRef, MapTy),
    /// The data map itself, read lazily (`.` at the top): a `map[string]string`.
    Root,
    Time(Time),
}

impl std::fmt::Debug for Value {
    /// Never shows contents: values may be secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.type_name())
    }
}

impl Value {
    pub fn str(s: impl Into<Vec<u8>>) -> Value {
        Value::Str(Arc::new(Zeroizing::new(s.into())))
    }
    pub fn int(i: i64) -> Value {
        Value::Int(i, IntTy::Int)
    }
    pub fn int64(i: i64) -> Value {
        Value::Int(i, IntTy::Int64)
    }
    pub fn list(v: Vec<Value>) -> Value {
        Value::List(Rc::new(v))
    }
    pub fn map(m: BTreeMap<String, Value>) -> Value {
        Value::Map(Rc::new(RefCell::new(m)), MapTy::Any)
    }
    pub fn str_map(m: BTreeMap<String, Value>) -> Value {
        Value::Map(Rc::new(RefCell::new(m)), MapTy::Strings)
    }

    /// Go's name of the type, for errors (never a value).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "bool",
            Value::Int(_, IntTy::Int) => "int",
            Value::Int(_, IntTy::Int64) => "int64",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::List(_) => "[]interface {}",
            Value::Map(_, MapTy::Any) => "map[string]interface {}",
            Value::Map(_, MapTy::Strings) | Value::Root => "map[string]string",
            Value::Time(_) => "time.Time",
        }
    }

    /// Go's reflect kind name, for `kindOf` / `kindIs`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Nil => "invalid",
            Value::Bool(_) => "bool",
            Value::Int(_, IntTy::Int) => "int",
            Value::Int(_, IntTy::Int64) => "int64",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::List(_) => "slice",
            Value::Map(..) | Value::Root => "map",
            Value::Time(_) => "struct",
        }
    }

    /// The bytes of a string value.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Str(b) => Some(b.as_slice()),
            _ => None,
        }
    }

    /// Go's truth: false, 0, "", nil and empty collections are false.
    pub fn truth(&self, ctx: &TemplateContext) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i, _) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Map(m, _) => !m.borrow().is_empty(),
            Value::Root => !ctx.is_empty(),
            Value::Time(_) => true,
        }
    }

    /// sprig's `empty`: Go's zero values (a struct such as a time is never empty).
    pub fn is_empty(&self, ctx: &TemplateContext) -> bool {
        !self.truth(ctx)
    }
}

/// A copy of `v` whose maps and lists are new (strings, immutable, are shared): what a
/// caller may change with `set` / `unset` without touching `v`. Recurses as deep as `v`
/// nests, which its maker bounds (JSON's depth limit).
pub(crate) fn deep_copy(v: &Value) -> Value {
    match v {
        Value::Map(m, ty) => Value::Map(
            Rc::new(RefCell::new(
                m.borrow().iter().map(|(k, e)| (k.clone(), deep_copy(e))).collect(),
            )),
            *ty,
        ),
        Value::List(l) => Value::List(Rc::new(l.iter().map(deep_copy).collect())),
        other => other.clone(),
    }
}

/// Writes `v` as text/template prints an action's value (`fmt.Fprint`), at the top level:
/// a missing value prints `<no value>`.
pub(crate) fn print_top(v: &Value, ctx: &TemplateContext, out: &mut Vec<u8>) {
    match v {
        Value::Nil => out.extend_from_slice(b"<no value>"),
        v => print_value(v, ctx, out),
    }
}

/// Deepest nesting printed: a map set into itself would recurse forever.
const MAX_PRINT_DEPTH: usize = 64;

/// Writes `v` as Go's `%v` does.
pub(crate) fn print_value(v: &Value, ctx: &TemplateContext, out: &mut Vec<u8>) {
    print_depth(v, ctx, out, 0)
}

fn print_depth(v: &Value, ctx: &TemplateContext, out: &mut Vec<u8>, depth: usize) {
    if depth > MAX_PRINT_DEPTH {
        out.extend_from_slice(b"...");
        return;
    }
    match v {
        Value::Nil => out.extend_from_slice(b"<nil>"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int(i, _) => {
            // Into the output as it is, without a string in between.
            let _ = std::io::Write::write_fmt(out, format_args!("{i}"));
        }
        Value::Float(f) => out.extend_from_slice(format_float_g(*f).as_bytes()),
        Value::Str(s) => out.extend_from_slice(s),
        Value::List(l) => {
            out.push(b'[');
            for (i, e) in l.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                print_depth(e, ctx, out, depth + 1);
            }
            out.push(b']');
        }
        Value::Map(m, _) => {
            out.extend_from_slice(b"map[");
            for (i, (k, e)) in m.borrow().iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                out.extend_from_slice(k.as_bytes());
                out.push(b':');
                print_depth(e, ctx, out, depth + 1);
            }
            out.push(b']');
        }
        Value::Root => {
            out.extend_from_slice(b"map[");
            for (i, (k, e)) in ctx.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                out.extend_from_slice(k.as_bytes());
                out.push(b':');
                out.extend_from_slice(e.expose());
            }
            out.push(b']');
        }
        Value::Time(t) => out.extend_from_slice(super::gotime::time_string(t).as_bytes()),
    }
}

/// The printed form of a value, as a new string value.
pub(crate) fn to_text(v: &Value, ctx: &TemplateContext) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::new());
    print_value(v, ctx, &mut out);
    out
}

/// Shortest decimal digits and exponent of a finite, non-zero float: `d.ddd × 10^exp`.
pub(crate) fn shortest_digits(f: f64) -> (String, i32) {
    let s = format!("{:e}", f.abs());
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    (digits, exp.parse().unwrap_or(0))
}

/// Go's `%v` (`strconv.FormatFloat(f, 'g', -1, 64)`): the shortest digits, in exponent
/// form when the exponent is under -4 or at least 6 (so `1e+06`, but `123456`).
pub(crate) fn format_float_g(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let (digits, exp) = shortest_digits(f);
    let neg = f < 0.0;
    let nd = digits.len() as i32;
    let eprec = 6;
    let dp = exp + 1;
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    if exp < -4 || exp >= eprec {
        s.push_str(&digits[..1]);
        if nd > 1 {
            s.push('.');
            s.push_str(&digits[1..]);
        }
        s.push('e');
        s.push(if exp < 0 { '-' } else { '+' });
        let e = exp.unsigned_abs();
        if e < 10 {
            s.push('0');
        }
        s.push_str(&e.to_string());
    } else if dp <= 0 {
        s.push_str("0.");
        for _ in 0..(-dp) {
            s.push('0');
        }
        s.push_str(&digits);
    } else if dp >= nd {
        s.push_str(&digits);
        for _ in 0..(dp - nd) {
            s.push('0');
        }
    } else {
        s.push_str(&digits[..dp as usize]);
        s.push('.');
        s.push_str(&digits[dp as usize..]);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_go_does() {
        for (f, s) in [
            (1.0, "1"),
            (1.5, "1.5"),
            (1e6, "1e+06"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5, "-2.5"),
            (1e21, "1e+21"),
            (100.0, "100"),
        ] {
            assert_eq!(format_float_g(f), s, "{f}");
        }
    }
}
