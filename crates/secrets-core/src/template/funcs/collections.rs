//! sprig's lists, dicts, defaults and type functions.

use std::collections::BTreeMap;
use std::rc::Rc;

use super::super::value::{MapRef, MapTy, Value};
use super::{Call, Param::*, Table, as_list, bytes, fail, int, strval, to_i64};

pub(super) fn register(t: &mut Table) {
    t.var("list", &[], Any, |_, a| Ok(Value::list(a.into_vec())));
    t.var("tuple", &[], Any, |_, a| Ok(Value::list(a.into_vec())));
    t.var("dict", &[], Any, |c, a| {
        let mut m = BTreeMap::new();
        let mut it = a.chunks(2);
        for pair in &mut it {
            let key = String::from_utf8_lossy(&strval(c, &pair[0])).into_owned();
            m.insert(key, pair.get(1).cloned().unwrap_or_else(|| Value::str("")));
        }
        Ok(Value::map(m))
    });
    t.add("get", &[MapAny, Str], |_, a| {
        let key = super::text(&a[1]).into_owned();
        Ok(map_of(&a[0])
            .borrow()
            .get(&key)
            .cloned()
            .unwrap_or_else(|| Value::str("")))
    });
    t.add("set", &[MapAny, Str, Any], |_, a| {
        let m = map_of(&a[0]);
        if contains_map(&a[2], m, 0) {
            return fail("a map cannot contain itself");
        }
        m.borrow_mut().insert(super::text(&a[1]).into_owned(), a[2].clone());
        Ok(a[0].clone())
    });
    t.add("unset", &[MapAny, Str], |_, a| {
        map_of(&a[0]).borrow_mut().remove(super::text(&a[1]).as_ref());
        Ok(a[0].clone())
    });
    t.add("hasKey", &[MapAny, Str], |_, a| {
        Ok(Value::Bool(
            map_of(&a[0]).borrow().contains_key(super::text(&a[1]).as_ref()),
        ))
    });
    t.var("pluck", &[Str], MapAny, |_, a| {
        let key = super::text(&a[0]).into_owned();
        Ok(Value::list(
            a[1..]
                .iter()
                .filter_map(|d| map_of(d).borrow().get(&key).cloned())
                .collect(),
        ))
    });
    t.var("keys", &[], MapAny, |_, a| {
        // Go gives map keys in random order; sorted is one of its orders.
        let mut k = Vec::new();
        for d in &a {
            k.extend(map_of(d).borrow().keys().map(|k| Value::str(k.as_bytes())));
        }
        Ok(Value::list(k))
    });
    t.add("values", &[MapAny], |_, a| {
        Ok(Value::list(map_of(&a[0]).borrow().values().cloned().collect()))
    });
    t.var("pick", &[MapAny], Str, |_, a| {
        let m = map_of(&a[0]).borrow();
        let mut out = BTreeMap::new();
        for k in &a[1..] {
            let k = super::text(k);
            if let Some(v) = m.get(k.as_ref()) {
                out.insert(k.into_owned(), v.clone());
            }
        }
        Ok(Value::map(out))
    });
    t.var("omit", &[MapAny], Str, |_, a| {
        let omit: Vec<String> = a[1..].iter().map(|k| super::text(k).into_owned()).collect();
        let out = map_of(&a[0])
            .borrow()
            .iter()
            .filter(|(k, _)| !omit.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Value::map(out))
    });
    for name in ["merge", "mustMerge"] {
        t.var(name, &[MapAny], MapAny, |c, a| merge_into(c, a, false));
    }
    for name in ["mergeOverwrite", "mustMergeOverwrite"] {
        t.var(name, &[MapAny], MapAny, |c, a| merge_into(c, a, true));
    }
    t.var("dig", &[Any, Any], Any, |_, a| {
        if a.len() < 3 {
            return fail("dig needs at least three arguments");
        }
        let n = a.len();
        let default = a[n - 2].clone();
        let Value::Map(m, MapTy::Any) = &a[n - 1] else {
            return fail(format!(
                "dig: the last argument must be a map[string]interface {}, got {}",
                "",
                a[n - 1].type_name()
            ));
        };
        let mut cur = Value::Map(m.clone(), MapTy::Any);
        for k in &a[..n - 2] {
            let Value::Str(key) = k else {
                return fail("dig: keys must be strings");
            };
            let next = match &cur {
                Value::Map(m, MapTy::Any) => m.borrow().get(String::from_utf8_lossy(key).as_ref()).cloned(),
                _ => return fail("dig: a value on the path is not a map[string]interface {}"),
            };
            match next {
                Some(v) => cur = v,
                None => return Ok(default),
            }
        }
        Ok(cur)
    });
    for name in ["append", "push", "mustAppend", "mustPush"] {
        t.add(name, &[Any, Any], |c, a| {
            let mut l = list_of(c, &a[0])?.to_vec();
            l.push(a[1].clone());
            Ok(Value::list(l))
        });
    }
    for name in ["prepend", "mustPrepend"] {
        t.add(name, &[Any, Any], |c, a| {
            let mut l = vec![a[1].clone()];
            l.extend(list_of(c, &a[0])?.iter().cloned());
            Ok(Value::list(l))
        });
    }
    for name in ["first", "mustFirst"] {
        t.add(name, &[Any], |c, a| {
            Ok(list_of(c, &a[0])?.first().cloned().unwrap_or(Value::Nil))
        });
    }
    for name in ["last", "mustLast"] {
        t.add(name, &[Any], |c, a| {
            Ok(list_of(c, &a[0])?.last().cloned().unwrap_or(Value::Nil))
        });
    }
    for name in ["rest", "mustRest"] {
        t.add(name, &[Any], |c, a| {
            let l = list_of(c, &a[0])?;
            Ok(if l.is_empty() {
                Value::Nil
            } else {
                Value::list(l[1..].to_vec())
            })
        });
    }
    for name in ["initial", "mustInitial"] {
        t.add(name, &[Any], |c, a| {
            let l = list_of(c, &a[0])?;
            Ok(if l.is_empty() {
                Value::Nil
            } else {
                Value::list(l[..l.len() - 1].to_vec())
            })
        });
    }
    for name in ["reverse", "mustReverse"] {
        t.add(name, &[Any], |c, a| {
            let mut l = list_of(c, &a[0])?.to_vec();
            l.reverse();
            Ok(Value::list(l))
        });
    }
    for name in ["uniq", "mustUniq"] {
        t.add(name, &[Any], |c, a| {
            let mut out: Vec<Value> = Vec::new();
            for v in list_of(c, &a[0])?.iter() {
                if !out.iter().any(|o| deep_equal(o, v)) {
                    out.push(v.clone());
                }
            }
            Ok(Value::list(out))
        });
    }
    for name in ["without", "mustWithout"] {
        t.var(name, &[Any], Any, |c, a| {
            let out = list_of(c, &a[0])?
                .iter()
                .filter(|v| !a[1..].iter().any(|o| deep_equal(o, v)))
                .cloned()
                .collect();
            Ok(Value::list(out))
        });
    }
    for name in ["has", "mustHas"] {
        t.add(name, &[Any, Any], |c, a| {
            if matches!(a[1], Value::Nil) {
                return Ok(Value::Bool(false));
            }
            Ok(Value::Bool(list_of(c, &a[1])?.iter().any(|v| deep_equal(&a[0], v))))
        });
    }
    for name in ["slice", "mustSlice"] {
        t.var(name, &[Any], Any, |c, a| {
            let l = list_of(c, &a[0])?;
            if l.is_empty() {
                return Ok(Value::Nil);
            }
            let start = a.get(1).map(go_to_int).unwrap_or(0);
            let end = a.get(2).map(go_to_int).unwrap_or(l.len() as i64);
            if start < 0 || end < start || end > l.len() as i64 {
                return fail("slice bounds out of range");
            }
            Ok(Value::list(l[start as usize..end as usize].to_vec()))
        });
    }
    t.var("concat", &[], Any, |c, a| {
        let mut out = Vec::new();
        for l in &a {
            out.extend(list_of(c, l)?.iter().cloned());
        }
        if out.is_empty() {
            return Ok(Value::Nil);
        }
        Ok(Value::list(out))
    });
    for name in ["chunk", "mustChunk"] {
        t.add(name, &[Int, Any], |c, a| {
            let size = int(&a[0]);
            let l = list_of(c, &a[1])?;
            if size <= 0 {
                return fail("chunk size must be positive");
            }
            Ok(Value::list(
                l.chunks(size as usize).map(|ch| Value::list(ch.to_vec())).collect(),
            ))
        });
    }
    for name in ["compact", "mustCompact"] {
        t.add(name, &[Any], |c, a| {
            let out = list_of(c, &a[0])?
                .iter()
                .filter(|v| !v.is_empty(c.ctx))
                .cloned()
                .collect();
            Ok(Value::list(out))
        });
    }
    t.add("sortAlpha", &[Any], |c, a| {
        if !matches!(a[0], Value::List(_)) {
            return Ok(Value::list(vec![Value::str(strval(c, &a[0]))]));
        }
        let mut s = strslice(c, &a[0]);
        s.sort();
        Ok(Value::list(s.into_iter().map(Value::str).collect()))
    });
    t.add("toStrings", &[Any], |c, a| {
        Ok(Value::list(strslice(c, &a[0]).into_iter().map(Value::str).collect()))
    });
    t.add("join", &[Str, Any], |c, a| {
        let parts = strslice(c, &a[1]);
        Ok(Value::str(parts.join(bytes(&a[0]))))
    });
    // Defaults.
    t.var("default", &[Any], Any, |c, a| {
        Ok(match a.get(1) {
            Some(v) if !v.is_empty(c.ctx) => v.clone(),
            _ => a[0].clone(),
        })
    });
    t.add("empty", &[Any], |c, a| Ok(Value::Bool(a[0].is_empty(c.ctx))));
    t.var("coalesce", &[], Any, |c, a| {
        Ok(a.iter().find(|v| !v.is_empty(c.ctx)).cloned().unwrap_or(Value::Nil))
    });
    t.var("all", &[], Any, |c, a| {
        Ok(Value::Bool(a.iter().all(|v| !v.is_empty(c.ctx))))
    });
    t.var("any", &[], Any, |c, a| {
        Ok(Value::Bool(a.iter().any(|v| !v.is_empty(c.ctx))))
    });
    t.add("ternary", &[Any, Any, Bool], |_, a| {
        Ok(if matches!(a[2], Value::Bool(true)) {
            a[0].clone()
        } else {
            a[1].clone()
        })
    });
    t.add("fail", &[Str], |_, _| {
        fail("the template called fail (its message is not shown: it may hold a value)")
    });
    // Types.
    t.add("typeOf", &[Any], |_, a| Ok(Value::str(type_of(&a[0]))));
    t.add("typeIs", &[Str, Any], |_, a| {
        Ok(Value::Bool(bytes(&a[0]) == type_of(&a[1]).as_bytes()))
    });
    t.add("kindOf", &[Any], |_, a| Ok(Value::str(a[0].kind_name())));
    t.add("kindIs", &[Str, Any], |_, a| {
        Ok(Value::Bool(bytes(&a[0]) == a[1].kind_name().as_bytes()))
    });
}

/// `reflect.TypeOf(v).String()` (`<nil>` for nil).
fn type_of(v: &Value) -> String {
    match v {
        Value::Nil => "<nil>".into(),
        v => v.type_name().into(),
    }
}

fn map_of(v: &Value) -> &MapRef {
    match v {
        Value::Map(m, _) => m,
        _ => unreachable!("the evaluator passes only maps for map parameters"),
    }
}

/// Whether `v` holds `target` (so setting it in would make a cycle).
fn contains_map(v: &Value, target: &MapRef, depth: usize) -> bool {
    if depth > 64 {
        return true;
    }
    match v {
        Value::Map(m, _) => Rc::ptr_eq(m, target) || m.borrow().values().any(|e| contains_map(e, target, depth + 1)),
        Value::List(l) => l.iter().any(|e| contains_map(e, target, depth + 1)),
        _ => false,
    }
}

/// The elements of a slice argument; sprig refuses anything else.
fn list_of<'v>(c: &Call<'_>, v: &'v Value) -> Result<&'v [Value], String> {
    match as_list(v) {
        Some(l) => Ok(l),
        None => fail(format!("{}: cannot use type {} as a list", c.name, v.type_name())),
    }
}

/// cast's `ToInt` as sprig's `slice` uses it.
fn go_to_int(v: &Value) -> i64 {
    to_i64(v)
}

/// sprig's `strslice`: a list's elements as strings (nil elements dropped), nil as empty,
/// anything else as one string.
pub(super) fn strslice(c: &Call<'_>, v: &Value) -> Vec<Vec<u8>> {
    match v {
        Value::List(l) => l
            .iter()
            .filter(|e| !matches!(e, Value::Nil))
            .map(|e| strval(c, e))
            .collect(),
        Value::Nil => vec![],
        other => vec![strval(c, other)],
    }
}

/// Go's `reflect.DeepEqual` for template values.
pub(super) fn deep_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Nil, Value::Nil) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x, tx), Value::Int(y, ty)) => x == y && tx == ty,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::List(x), Value::List(y)) => x.len() == y.len() && x.iter().zip(y.iter()).all(|(a, b)| deep_equal(a, b)),
        (Value::Map(x, tx), Value::Map(y, ty)) => {
            tx == ty && {
                let (x, y) = (x.borrow(), y.borrow());
                x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| deep_equal(v, w)))
            }
        }
        (Value::Time(x), Value::Time(y)) => x == y,
        _ => false,
    }
}

/// mergo's `Merge` (fill what `dst` lacks or has empty) and `MergeWithOverwrite` (take
/// what `src` has non-empty), into `dst` in place, recursing into nested maps.
fn merge_into(c: &mut Call<'_>, a: super::Args, overwrite: bool) -> Result<Value, String> {
    let dst = map_of(&a[0]).clone();
    for src in &a[1..] {
        let src = map_of(src).clone();
        if Rc::ptr_eq(&dst, &src) {
            continue;
        }
        merge_maps(c, &dst, &src, overwrite, 0)?;
    }
    Ok(a[0].clone())
}

fn merge_maps(c: &Call<'_>, dst: &MapRef, src: &MapRef, overwrite: bool, depth: usize) -> Result<(), String> {
    if depth > 32 {
        return fail("maps nest too deeply to merge");
    }
    let entries: Vec<(String, Value)> = src.borrow().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    for (k, sv) in entries {
        let dv = dst.borrow().get(&k).cloned();
        match (dv, &sv) {
            (Some(Value::Map(dm, MapTy::Any)), Value::Map(sm, MapTy::Any)) if !Rc::ptr_eq(&dm, sm) => {
                merge_maps(c, &dm, sm, overwrite, depth + 1)?;
            }
            (Some(d), _) if !d.is_empty(c.ctx) => {
                if overwrite && !sv.is_empty(c.ctx) {
                    if contains_map(&sv, dst, 0) {
                        return fail("a map cannot contain itself");
                    }
                    dst.borrow_mut().insert(k, sv);
                }
            }
            _ => {
                if contains_map(&sv, dst, 0) {
                    return fail("a map cannot contain itself");
                }
                dst.borrow_mut().insert(k, sv);
            }
        }
    }
    Ok(())
}
