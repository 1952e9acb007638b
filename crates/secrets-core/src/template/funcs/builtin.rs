//! Go's text/template builtins (`and` / `or` are in the evaluator: they short-circuit).

use std::cmp::Ordering;

use super::super::value::{MapTy, Value, to_text};
use super::gofmt::sprintf;
use super::{Call, Param::*, Table, fail};

pub(super) fn register(t: &mut Table) {
    t.add("not", &[Any], |c, a| Ok(Value::Bool(!a[0].truth(c.ctx))));
    t.add("len", &[Any], |c, a| {
        Ok(Value::int(match &a[0] {
            Value::Str(s) => s.len() as i64,
            Value::List(l) => l.len() as i64,
            Value::Map(m, _) => m.borrow().len() as i64,
            Value::Root => c.ctx.len() as i64,
            other => return fail(format!("len of type {}", other.type_name())),
        }))
    });
    t.var("index", &[Any], Any, |c, a| {
        let mut it = a.into_iter();
        let mut cur = it.next().unwrap_or(Value::Nil);
        for (n, k) in it.enumerate() {
            cur = index_one(c, cur, &k, n + 2)?;
        }
        Ok(cur)
    });
    t.var("print", &[], Any, |c, a| Ok(Value::str(sprint(c, &a, false))));
    t.var("println", &[], Any, |c, a| Ok(Value::str(sprint(c, &a, true))));
    t.var("printf", &[Str], Any, |c, a| {
        Ok(Value::str(sprintf(
            c.ctx,
            super::bytes(&a[0]),
            &a[1..],
            c.literal_first,
        )?))
    });
    t.var("html", &[], Any, |c, a| Ok(Value::str(html(&eval_args(c, &a)))));
    t.var("js", &[], Any, |c, a| Ok(Value::str(js(&eval_args(c, &a)))));
    t.var("urlquery", &[], Any, |c, a| {
        Ok(Value::str(super::encoding::query_escape(&eval_args(c, &a))))
    });
    t.var("eq", &[Any], Any, |_, a| {
        if a.len() < 2 {
            return fail("missing argument for comparison");
        }
        for b in &a[1..] {
            if equal(&a[0], b)? {
                return Ok(Value::Bool(true));
            }
        }
        Ok(Value::Bool(false))
    });
    t.add("ne", &[Any, Any], |_, a| Ok(Value::Bool(!equal(&a[0], &a[1])?)));
    t.add("lt", &[Any, Any], |_, a| {
        Ok(Value::Bool(less(&a[0], &a[1])? == Ordering::Less))
    });
    t.add("le", &[Any, Any], |_, a| {
        Ok(Value::Bool(less(&a[0], &a[1])? != Ordering::Greater))
    });
    t.add("gt", &[Any, Any], |_, a| {
        Ok(Value::Bool(less(&a[0], &a[1])? == Ordering::Greater))
    });
    t.add("ge", &[Any, Any], |_, a| {
        Ok(Value::Bool(less(&a[0], &a[1])? != Ordering::Less))
    });
}

/// `index`: one step into a map, list or string. A missing map key gives the map's zero
/// value ("" for string maps, nil otherwise), as in Go.
fn index_one(c: &Call<'_>, cur: Value, k: &Value, argn: usize) -> Result<Value, String> {
    match cur {
        Value::Root => {
            let key = map_key(k, argn)?;
            Ok(c.ctx
                .get(key.as_str())
                .map(|v| Value::str(v.expose().to_vec()))
                .unwrap_or_else(|| Value::str("")))
        }
        Value::Map(m, ty) => {
            let key = map_key(k, argn)?;
            Ok(m.borrow().get(key.as_str()).cloned().unwrap_or(match ty {
                MapTy::Strings => Value::str(""),
                MapTy::Any => Value::Nil,
            }))
        }
        Value::List(l) => {
            let i = list_index(k, argn)?;
            l.get(i)
                .cloned()
                .ok_or_else(|| format!("index out of range (argument {argn})"))
        }
        Value::Str(s) => {
            let i = list_index(k, argn)?;
            s.get(i)
                .map(|b| Value::Int(*b as i64, super::super::value::IntTy::Int))
                .ok_or_else(|| format!("index out of range (argument {argn})"))
        }
        Value::Nil => fail("index of untyped nil"),
        other => fail(format!("can't index item of type {}", other.type_name())),
    }
}

fn map_key(k: &Value, argn: usize) -> Result<String, String> {
    match k {
        Value::Str(s) => Ok(String::from_utf8_lossy(s).into_owned()),
        other => fail(format!(
            "value has type {}; should be string (argument {argn} of index)",
            other.type_name()
        )),
    }
}

fn list_index(k: &Value, argn: usize) -> Result<usize, String> {
    match k {
        Value::Int(i, _) if *i >= 0 => Ok(*i as usize),
        Value::Int(..) => fail(format!("index out of range (argument {argn})")),
        other => fail(format!("cannot index slice/array with type {}", other.type_name())),
    }
}

/// `fmt.Sprint` (spaces between operands when neither is a string) or `fmt.Sprintln`.
pub(super) fn sprint(c: &Call<'_>, a: &[Value], ln: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, v) in a.iter().enumerate() {
        if i > 0 {
            let is_str = |v: &Value| matches!(v, Value::Str(_));
            if ln || (!is_str(v) && !is_str(&a[i - 1])) {
                out.push(b' ');
            }
        }
        match v {
            Value::Nil => out.extend_from_slice(b"<nil>"),
            v => out.extend_from_slice(&to_text(v, c.ctx)),
        }
    }
    if ln {
        out.push(b'\n');
    }
    out
}

/// The text of `html` / `js` / `urlquery` arguments: one string as is, else `fmt.Sprint`.
fn eval_args<'v>(c: &Call<'_>, a: &'v [Value]) -> std::borrow::Cow<'v, [u8]> {
    if let [Value::Str(s)] = a {
        return std::borrow::Cow::Borrowed(s.as_slice());
    }
    std::borrow::Cow::Owned(sprint(c, a, false))
}

/// Go's `template.HTMLEscapeString`.
fn html(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"&#34;"),
            b'\'' => out.extend_from_slice(b"&#39;"),
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            0 => out.extend_from_slice("\u{FFFD}".as_bytes()),
            b => out.push(b),
        }
    }
    out
}

/// Go's `template.JSEscapeString`.
fn js(s: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(s);
    let mut out = String::with_capacity(s.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04X}", c as u32)),
            c if c.is_ascii() => out.push(c),
            c if !c.is_control() => out.push(c),
            c => out.push_str(&format!("\\u{:04X}", c as u32)),
        }
    }
    out.into_bytes()
}

/// Go's basic kinds, for comparisons.
#[derive(PartialEq)]
enum Kind {
    Bool,
    Int,
    Float,
    Str,
    Other,
    Invalid,
}

fn kind(v: &Value) -> Kind {
    match v {
        Value::Bool(_) => Kind::Bool,
        Value::Int(..) => Kind::Int,
        Value::Float(_) => Kind::Float,
        Value::Str(_) => Kind::Str,
        Value::Nil => Kind::Invalid,
        _ => Kind::Other,
    }
}

/// Go's `eq` for two values.
fn equal(a: &Value, b: &Value) -> Result<bool, String> {
    let (ka, kb) = (kind(a), kind(b));
    if ka != kb {
        if ka == Kind::Invalid || kb == Kind::Invalid {
            return Ok(false);
        }
        return fail("incompatible types for comparison");
    }
    Ok(match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x, _), Value::Int(y, _)) => x == y,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Nil, Value::Nil) => true,
        (Value::Time(x), Value::Time(y)) => x == y,
        _ => return fail(format!("non-comparable type {}", a.type_name())),
    })
}

/// Go's ordering for `lt` and friends.
fn less(a: &Value, b: &Value) -> Result<Ordering, String> {
    let (ka, kb) = (kind(a), kind(b));
    if ka != kb {
        return fail("incompatible types for comparison");
    }
    match (a, b) {
        (Value::Int(x, _), Value::Int(y, _)) => Ok(x.cmp(y)),
        (Value::Float(x), Value::Float(y)) => Ok(x.partial_cmp(y).unwrap_or(Ordering::Greater)),
        (Value::Str(x), Value::Str(y)) => Ok(x.as_slice().cmp(y.as_slice())),
        _ => fail("invalid type for comparison"),
    }
}
