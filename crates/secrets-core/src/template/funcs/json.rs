//! sprig's JSON functions, with Go's `encoding/json` output: sorted keys, HTML-safe escapes
//! (`toJson`), shortest floats, `null` for nil.

use std::collections::BTreeMap;

use super::super::TemplateContext;
use super::super::value::{Value, deep_copy};
use super::{Param::*, Table, bytes, fail};

pub(super) fn register(t: &mut Table) {
    t.add("toJson", &[Any], |c, a| {
        Ok(Value::str(to_json(c.ctx, &a[0], true, None).unwrap_or_default()))
    });
    t.add("mustToJson", &[Any], |c, a| {
        Ok(Value::str(to_json(c.ctx, &a[0], true, None)?))
    });
    t.add("toPrettyJson", &[Any], |c, a| {
        Ok(Value::str(to_json(c.ctx, &a[0], true, Some("  ")).unwrap_or_default()))
    });
    t.add("mustToPrettyJson", &[Any], |c, a| {
        Ok(Value::str(to_json(c.ctx, &a[0], true, Some("  "))?))
    });
    t.add("toRawJson", &[Any], |c, a| {
        Ok(Value::str(to_json(c.ctx, &a[0], false, None)?))
    });
    t.add("mustToRawJson", &[Any], |c, a| {
        Ok(Value::str(to_json(c.ctx, &a[0], false, None)?))
    });
    t.add("fromJson", &[Str], |c, a| {
        Ok(from_json_memo(c, &a[0]).unwrap_or(Value::Nil))
    });
    t.add("mustFromJson", &[Str], |c, a| {
        from_json_memo(c, &a[0]).ok_or_else(|| "the text is not valid JSON".into())
    });
}

/// Most texts one render remembers the parse of.
const JSON_MEMO_ENTRIES: usize = 8;
/// Longest text whose parse a render remembers.
const JSON_MEMO_MAX_TEXT: usize = 64 * 1024;

/// [`from_json`], remembering the parse of each text during one render: templates often
/// call `fromJson` on the same field several times. Each call still gets maps and lists of
/// its own (as Go's fresh `map` per call), since `set` / `unset` change maps in place.
fn from_json_memo(c: &mut super::Call<'_>, v: &Value) -> Option<Value> {
    let Value::Str(text) = v else {
        return from_json(bytes(v));
    };
    let same = |(k, _): &&(super::super::value::Bytes, Value)| {
        std::sync::Arc::ptr_eq(k, text) || k.as_slice() == text.as_slice()
    };
    if let Some((_, parsed)) = c.json_memo.iter().find(same) {
        return Some(deep_copy(parsed));
    }
    let parsed = from_json(text)?;
    if text.len() <= JSON_MEMO_MAX_TEXT && c.json_memo.len() < JSON_MEMO_ENTRIES {
        c.json_memo.push((text.clone(), deep_copy(&parsed)));
    }
    Some(parsed)
}

/// Parses JSON as Go does into `interface{}`: objects, arrays, float64 numbers (straight
/// into template values, without an intermediate tree).
pub(crate) fn from_json(text: &[u8]) -> Option<Value> {
    let mut de = serde_json::Deserializer::from_slice(text);
    let v = serde::de::DeserializeSeed::deserialize(JsonSeed(0), &mut de).ok()?;
    de.end().ok()?;
    Some(v)
}

/// Deserializes a JSON value into a template value; the depth bounds nesting.
struct JsonSeed(usize);

impl<'de> serde::de::DeserializeSeed<'de> for JsonSeed {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for JsonSeed {
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Float(i as f64))
    }
    fn visit_u64<E>(self, i: u64) -> Result<Value, E> {
        Ok(Value::Float(i as f64))
    }
    fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
        Ok(Value::Float(f))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::str(s.as_bytes()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::str(s.into_bytes()))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
        if self.0 > 128 {
            return Err(serde::de::Error::custom("JSON nests too deeply"));
        }
        let mut v = Vec::new();
        while let Some(e) = a.next_element_seed(JsonSeed(self.0 + 1))? {
            v.push(e);
        }
        Ok(Value::list(v))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
        if self.0 > 128 {
            return Err(serde::de::Error::custom("JSON nests too deeply"));
        }
        let mut m = BTreeMap::new();
        while let Some(k) = a.next_key::<String>()? {
            let v = a.next_value_seed(JsonSeed(self.0 + 1))?;
            m.insert(k, v);
        }
        Ok(Value::map(m))
    }
}

/// A serde JSON value as a template value (numbers as float64, as Go decodes them).
pub(crate) fn from_serde(v: serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => Value::Float(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => Value::str(s),
        serde_json::Value::Array(a) => Value::list(a.into_iter().map(from_serde).collect()),
        serde_json::Value::Object(o) => Value::map(
            o.into_iter()
                .map(|(k, v)| (k, from_serde(v)))
                .collect::<BTreeMap<_, _>>(),
        ),
    }
}

/// `json.Marshal` (or `MarshalIndent` with `indent`); `html` escapes `<`, `>`, `&`.
pub(crate) fn to_json(ctx: &TemplateContext, v: &Value, html: bool, indent: Option<&str>) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    write_json(ctx, v, html, indent, 0, &mut out)?;
    Ok(out)
}

fn newline(out: &mut Vec<u8>, indent: Option<&str>, depth: usize) {
    if let Some(ind) = indent {
        out.push(b'\n');
        for _ in 0..depth {
            out.extend_from_slice(ind.as_bytes());
        }
    }
}

fn write_json(
    ctx: &TemplateContext,
    v: &Value,
    html: bool,
    indent: Option<&str>,
    depth: usize,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    if depth > 64 {
        return fail("json: the value nests too deeply");
    }
    if out.len() > crate::value::MAX_TARGET_BYTES {
        return fail("the text would be over the 1 MiB target limit");
    }
    match v {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int(i, _) => out.extend_from_slice(i.to_string().as_bytes()),
        Value::Float(f) => out.extend_from_slice(json_float(*f)?.as_bytes()),
        Value::Str(s) => json_string(s, html, out),
        Value::Time(t) => {
            out.push(b'"');
            out.extend_from_slice(super::super::gotime::rfc3339_nano(t).as_bytes());
            out.push(b'"');
        }
        Value::List(l) => {
            if l.is_empty() {
                out.extend_from_slice(b"[]");
                return Ok(());
            }
            out.push(b'[');
            for (i, e) in l.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                newline(out, indent, depth + 1);
                write_json(ctx, e, html, indent, depth + 1, out)?;
            }
            newline(out, indent, depth);
            out.push(b']');
        }
        Value::Map(m, _) => {
            let m = m.borrow();
            write_object(
                ctx,
                m.iter().map(|(k, v)| (k.as_str(), v.clone())),
                m.is_empty(),
                html,
                indent,
                depth,
                out,
            )?;
        }
        Value::Root => {
            let entries = ctx.iter().map(|(k, v)| (k.as_str(), Value::str(v.expose().to_vec())));
            write_object(ctx, entries, ctx.is_empty(), html, indent, depth, out)?;
        }
    }
    Ok(())
}

fn write_object<'k>(
    ctx: &TemplateContext,
    entries: impl Iterator<Item = (&'k str, Value)>,
    empty: bool,
    html: bool,
    indent: Option<&str>,
    depth: usize,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    if empty {
        out.extend_from_slice(b"{}");
        return Ok(());
    }
    out.push(b'{');
    for (i, (k, e)) in entries.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        newline(out, indent, depth + 1);
        json_string(k.as_bytes(), html, out);
        out.push(b':');
        if indent.is_some() {
            out.push(b' ');
        }
        write_json(ctx, &e, html, indent, depth + 1, out)?;
    }
    newline(out, indent, depth);
    out.push(b'}');
    Ok(())
}

/// Go's JSON number: shortest digits, exponent form below 1e-6 or from 1e21.
pub(crate) fn json_float(f: f64) -> Result<String, String> {
    if !f.is_finite() {
        return fail("json: unsupported value (NaN or infinity)");
    }
    let a = f.abs();
    if a != 0.0 && !(1e-6..1e21).contains(&a) {
        let (digits, exp) = super::super::value::shortest_digits(f);
        let mut s = String::new();
        if f < 0.0 {
            s.push('-');
        }
        s.push_str(&digits[..1]);
        if digits.len() > 1 {
            s.push('.');
            s.push_str(&digits[1..]);
        }
        s.push('e');
        s.push(if exp < 0 { '-' } else { '+' });
        s.push_str(&exp.unsigned_abs().to_string());
        return Ok(s);
    }
    Ok(format!("{f}"))
}

/// A JSON string as Go writes it (invalid UTF-8 becomes U+FFFD).
pub(crate) fn json_string(s: &[u8], html: bool, out: &mut Vec<u8>) {
    out.push(b'"');
    let text = String::from_utf8_lossy(s);
    for c in text.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '<' | '>' | '&' if html => out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes()),
            '\u{2028}' | '\u{2029}' => out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes()),
            c if (c as u32) < 0x20 => out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes()),
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}
