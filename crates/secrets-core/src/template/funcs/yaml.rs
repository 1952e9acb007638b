//! ESO's `toYaml` / `fromYaml` (sigs.k8s.io/yaml): values go through JSON, then out as
//! go-yaml v2 writes them — keys in its natural order, strings plain when they read back as
//! strings, quoted otherwise, multi-line strings as literal blocks.

use std::collections::BTreeMap;

use super::super::TemplateContext;
use super::super::value::Value;

/// A YAML node after the JSON round trip.
enum Node {
    Null,
    Bool(bool),
    /// A number as JSON wrote it, re-read as YAML reads it.
    Num(String),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

/// `toYaml`: the YAML text without its final newline; "" when the value cannot be JSON.
pub(crate) fn to_yaml(ctx: &TemplateContext, v: &Value) -> Vec<u8> {
    let Ok(json) = super::json::to_json(ctx, v, false, None) else {
        return Vec::new();
    };
    let Ok(parsed) = serde_json::from_slice::<serde_json::Value>(&json) else {
        return Vec::new();
    };
    let node = node_of(parsed);
    let mut out = String::new();
    emit(&node, 0, &mut out, Ctx::Top);
    while out.ends_with('\n') {
        out.pop();
    }
    out.into_bytes()
}

fn node_of(v: serde_json::Value) -> Node {
    match v {
        serde_json::Value::Null => Node::Null,
        serde_json::Value::Bool(b) => Node::Bool(b),
        serde_json::Value::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            Node::Num(match n.as_i64() {
                Some(i) => i.to_string(),
                None if f.fract() == 0.0 && f.abs() < 1e21 => format!("{f}"),
                None => super::super::value::format_float_g(f),
            })
        }
        serde_json::Value::String(s) => Node::Str(s),
        serde_json::Value::Array(a) => Node::Seq(a.into_iter().map(node_of).collect()),
        serde_json::Value::Object(o) => {
            let mut entries: Vec<(String, Node)> = o.into_iter().map(|(k, v)| (k, node_of(v))).collect();
            entries.sort_by(|a, b| natural_cmp(&a.0, &b.0));
            Node::Map(entries)
        }
    }
}

/// go-yaml v2's key order: digit runs compare as numbers, non-letters before letters.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let ar: Vec<char> = a.chars().collect();
    let br: Vec<char> = b.chars().collect();
    let mut i = 0;
    while i < ar.len() && i < br.len() {
        if ar[i] == br[i] {
            i += 1;
            continue;
        }
        let (al, bl) = (ar[i].is_alphabetic(), br[i].is_alphabetic());
        if al && bl {
            return ar[i].cmp(&br[i]);
        }
        if al || bl {
            return if bl { Ordering::Less } else { Ordering::Greater };
        }
        let (mut an, mut bn) = (0i64, 0i64);
        if ar[i] == '0' || br[i] == '0' {
            let mut j = i;
            while j > 0 && ar[j - 1].is_ascii_digit() {
                j -= 1;
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while ai < ar.len() && ar[ai].is_ascii_digit() {
            an = an.saturating_mul(10).saturating_add(ar[ai] as i64 - '0' as i64);
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && br[bi].is_ascii_digit() {
            bn = bn.saturating_mul(10).saturating_add(br[bi] as i64 - '0' as i64);
            bi += 1;
        }
        if an != bn {
            return an.cmp(&bn);
        }
        if ai != bi {
            return ai.cmp(&bi);
        }
        return ar[i].cmp(&br[i]);
    }
    ar.len().cmp(&br.len())
}

#[derive(Clone, Copy, PartialEq)]
enum Ctx {
    Top,
    MapValue,
    SeqItem,
}

fn pad(out: &mut String, n: usize) {
    for _ in 0..n {
        out.push(' ');
    }
}

fn emit(n: &Node, indent: usize, out: &mut String, ctx: Ctx) {
    match n {
        Node::Null => scalar_line(out, "null", ctx),
        Node::Bool(b) => scalar_line(out, if *b { "true" } else { "false" }, ctx),
        Node::Num(s) => scalar_line(out, s, ctx),
        Node::Str(s) => {
            if s.contains('\n') && literal_ok(s) {
                literal(s, indent, out, ctx);
            } else {
                scalar_line(out, &quote(s), ctx);
            }
        }
        Node::Seq(items) => {
            if items.is_empty() {
                scalar_line(out, "[]", ctx);
                return;
            }
            if ctx == Ctx::MapValue {
                out.push('\n');
            }
            for (i, it) in items.iter().enumerate() {
                if i > 0 || ctx != Ctx::SeqItem {
                    pad(out, indent);
                }
                out.push_str("- ");
                emit(it, indent + 2, out, Ctx::SeqItem);
            }
        }
        Node::Map(entries) => {
            if entries.is_empty() {
                scalar_line(out, "{}", ctx);
                return;
            }
            let inner = if ctx == Ctx::MapValue { indent + 2 } else { indent };
            if ctx == Ctx::MapValue {
                out.push('\n');
            }
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 || ctx != Ctx::SeqItem {
                    pad(out, inner);
                }
                out.push_str(&quote(k));
                out.push(':');
                match v {
                    Node::Seq(s) if !s.is_empty() => emit(v, inner, out, Ctx::MapValue),
                    Node::Map(m) if !m.is_empty() => emit(v, inner, out, Ctx::MapValue),
                    _ => {
                        out.push(' ');
                        emit(v, inner + 2, out, Ctx::MapValue);
                    }
                }
            }
        }
    }
}

fn scalar_line(out: &mut String, s: &str, _ctx: Ctx) {
    out.push_str(s);
    out.push('\n');
}

/// Whether a multi-line string can be a literal block (go-yaml falls back to double quotes
/// for special characters and for leading spaces it would need an indicator for).
fn literal_ok(s: &str) -> bool {
    !s.starts_with(' ')
        && !s.chars().any(|c| (c.is_control() && c != '\n') || c == '\u{feff}')
        && !s.contains(" \n")
        && !s.ends_with(' ')
}

fn literal(s: &str, indent: usize, out: &mut String, ctx: Ctx) {
    let chomp = if !s.ends_with('\n') {
        "-"
    } else if s.ends_with("\n\n") {
        "+"
    } else {
        ""
    };
    out.push('|');
    out.push_str(chomp);
    out.push('\n');
    let body_indent = if ctx == Ctx::Top { indent + 2 } else { indent.max(2) };
    let body = s.strip_suffix('\n').unwrap_or(s);
    for line in body.split('\n') {
        if !line.is_empty() {
            pad(out, body_indent);
            out.push_str(line);
        }
        out.push('\n');
    }
    if chomp == "+" {
        // The kept trailing newlines are already lines above.
    }
}

/// A string as go-yaml v2 writes it: plain, single- or double-quoted.
fn quote(s: &str) -> String {
    if resolves_non_string(s) {
        return double_quote(s);
    }
    if plain_ok(s) {
        return s.to_string();
    }
    if s.chars().any(|c| c.is_control() || c == '\u{feff}' || !printable(c)) || s.contains('\n') {
        return double_quote(s);
    }
    format!("'{}'", s.replace('\'', "''"))
}

fn printable(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | ' '..='~' | '\u{85}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
        && c != '\u{feff}'
}

fn double_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{b}' => out.push_str("\\v"),
            '\u{c}' => out.push_str("\\f"),
            '\u{1b}' => out.push_str("\\e"),
            '\u{85}' => out.push_str("\\N"),
            '\u{a0}' => out.push_str("\\_"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if !printable(c) => {
                if (c as u32) <= 0xff {
                    out.push_str(&format!("\\x{:02X}", c as u32));
                } else if (c as u32) <= 0xffff {
                    out.push_str(&format!("\\u{:04X}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08X}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether go-yaml v2 (YAML 1.1) reads the plain text as something other than a string.
fn resolves_non_string(s: &str) -> bool {
    if s.is_empty() {
        return true;
    }
    const WORDS: &[&str] = &[
        "~", "null", "Null", "NULL", "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE",
        "false", "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF", ".inf", ".Inf", ".INF", "+.inf", "+.Inf",
        "+.INF", "-.inf", "-.Inf", "-.INF", ".nan", ".NaN", ".NAN", "<<",
    ];
    if WORDS.contains(&s) {
        return true;
    }
    let first = s.as_bytes()[0];
    if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.')) {
        return false;
    }
    let plain: String = s.chars().filter(|c| *c != '_').collect();
    let body = plain.trim_start_matches(['-', '+']);
    if body.is_empty() {
        return false;
    }
    // Integers (decimal, 0x, 0b, octal) and floats.
    if body.bytes().all(|c| c.is_ascii_digit()) {
        return true;
    }
    if let Some(h) = body.strip_prefix("0x")
        && !h.is_empty()
        && h.bytes().all(|c| c.is_ascii_hexdigit())
    {
        return true;
    }
    if let Some(b) = body.strip_prefix("0b")
        && !b.is_empty()
        && b.bytes().all(|c| c == b'0' || c == b'1')
    {
        return true;
    }
    if plain.parse::<f64>().is_ok()
        && !body.eq_ignore_ascii_case("inf")
        && !body.eq_ignore_ascii_case("infinity")
        && !body.eq_ignore_ascii_case("nan")
    {
        return true;
    }
    // Timestamps (2001-12-14, 2001-12-14t21:59:43.10-05:00) read as times.
    let b = s.as_bytes();
    if b.len() >= 10 && b[4] == b'-' && b[7] == b'-' && b[..4].iter().all(u8::is_ascii_digit) {
        return true;
    }
    // Base 60 floats (1:20) are quoted by go-yaml too.
    let parts: Vec<&str> = body.split(':').collect();
    parts.len() > 1
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit() || c == b'.'))
}

/// Whether the emitter may write the string plain.
fn plain_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let first = b[0];
    if matches!(
        first,
        b'-' | b'?'
            | b':'
            | b','
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b'#'
            | b'&'
            | b'*'
            | b'!'
            | b'|'
            | b'>'
            | b'\''
            | b'"'
            | b'%'
            | b'@'
            | b'`'
    ) {
        // `-`, `?` and `:` may start a plain scalar when followed by a non-space.
        let next_ok = b.get(1).is_some_and(|c| !matches!(c, b' ' | b'\t'));
        if !(matches!(first, b'-' | b'?' | b':') && next_ok) {
            return false;
        }
        if first == b'-' && s == "-" {
            return false;
        }
    }
    if s.starts_with(' ') || s.ends_with(' ') || s.starts_with("---") || s.starts_with("...") {
        return false;
    }
    if s.contains(": ") || s.contains(" #") || s.ends_with(':') || s.contains(":\t") {
        return false;
    }
    if s.chars()
        .any(|c| c.is_control() || !printable(c) || c == '\u{85}' || c == '\u{2028}' || c == '\u{2029}')
    {
        return false;
    }
    if s.chars().any(|c| matches!(c, ',' | '[' | ']' | '{' | '}')) {
        // Flow indicators are allowed in block context plain scalars by go-yaml.
    }
    true
}

/// `fromYaml`: a map; a document that is not a YAML map gives `{"Error": ...}` as in ESO,
/// with a message that names no value.
pub(crate) fn from_yaml(text: &[u8]) -> Value {
    let parsed: Result<serde_norway::Value, _> = serde_norway::from_slice(text);
    let json = parsed.ok().and_then(|y| serde_json::to_value(y).ok());
    match json {
        Some(serde_json::Value::Object(o)) => super::json::from_serde(serde_json::Value::Object(o)),
        Some(serde_json::Value::Null) => Value::map(BTreeMap::new()),
        _ => {
            let mut m = BTreeMap::new();
            m.insert(
                "Error".to_string(),
                Value::str("error unmarshaling YAML: the document is not a YAML map"),
            );
            Value::map(m)
        }
    }
}
