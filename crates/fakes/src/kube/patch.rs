//! Patches: JSON merge patch (RFC 7386), strategic merge patch (k8s.io/apimachinery
//! `strategicpatch`) and JSON patch (RFC 6902).

use serde_json::{Map, Value};

use super::schema::{ListType, list_type};

/// RFC 7386 JSON merge patch: maps merge, `null` deletes, everything else (lists
/// included) replaces.
pub(super) fn json_merge(target: &mut Value, patch: &Value) {
    if let Value::Object(p) = patch {
        if !target.is_object() {
            *target = Value::Object(Map::new());
        }
        let t = target.as_object_mut().expect("just made an object");
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                json_merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    } else {
        *target = patch.clone();
    }
}

/// Strategic merge patch for a built-in `kind`: like a merge patch, except that lists
/// with a patch merge key merge item by item (`$patch: delete` removes one), lists with
/// the merge strategy of scalars add elements, and the directives `$patch: replace`,
/// `$retainKeys`, `$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>` are
/// honoured. Errors name the field, never a value.
pub(super) fn strategic_merge(target: &mut Value, patch: &Value, kind: &str) -> Result<(), String> {
    let mut names = vec![];
    smp_map(target, patch, kind, &mut names)
}

fn smp_map<'a>(target: &mut Value, patch: &'a Value, kind: &str, names: &mut Vec<&'a str>) -> Result<(), String> {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replaced = p.clone();
        replaced.remove("$patch");
        *target = Value::Object(replaced);
        return Ok(());
    }
    if let Some(directive) = p.get("$patch").and_then(Value::as_str)
        && directive != "merge"
        && directive != "delete"
    {
        return Err(format!("unknown patch type: {directive} in {}", dotted(names)));
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("just made an object");
    for (k, v) in p {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            let remove = v.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(items)) = t.get_mut(field) {
                items.retain(|i| !remove.contains(i));
            }
            continue;
        }
        if k.starts_with("$setElementOrder/") || k == "$patch" {
            continue; // ordering is not kept; `$patch: merge` is the default
        }
        if k == "$retainKeys" {
            let keep: Vec<&str> = v
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            t.retain(|key, _| keep.contains(&key.as_str()));
            continue;
        }
        if k.starts_with('$') {
            return Err(format!("unknown directive {k} in {}", dotted(names)));
        }
        names.push(k.as_str());
        let result = match v {
            Value::Null => {
                t.remove(k);
                Ok(())
            }
            Value::Object(_) => {
                let deletes_all = v.get("$patch").and_then(Value::as_str) == Some("delete");
                if deletes_all {
                    t.remove(k);
                    Ok(())
                } else {
                    smp_map(t.entry(k.clone()).or_insert(Value::Null), v, kind, names)
                }
            }
            Value::Array(items) => smp_list(t.entry(k.clone()).or_insert(Value::Null), items, kind, names),
            scalar => {
                t.insert(k.clone(), scalar.clone());
                Ok(())
            }
        };
        names.pop();
        result?;
    }
    Ok(())
}

fn smp_list<'a>(target: &mut Value, items: &'a [Value], kind: &str, names: &mut Vec<&'a str>) -> Result<(), String> {
    let replace_all = items.iter().any(|i| {
        i.as_object()
            .is_some_and(|m| m.len() == 1 && m.get("$patch").and_then(Value::as_str) == Some("replace"))
    });
    if replace_all {
        let kept: Vec<Value> = items.iter().filter(|i| i.get("$patch").is_none()).cloned().collect();
        *target = Value::Array(kept);
        return Ok(());
    }
    match list_type(kind, names) {
        ListType::Atomic => {
            *target = Value::Array(items.to_vec());
            Ok(())
        }
        ListType::Set => {
            if !target.is_array() {
                *target = Value::Array(vec![]);
            }
            let t = target.as_array_mut().expect("just made an array");
            for item in items {
                if !t.contains(item) {
                    t.push(item.clone());
                }
            }
            Ok(())
        }
        ListType::Map(keys) => {
            let merge_key = keys[0];
            if !target.is_array() {
                *target = Value::Array(vec![]);
            }
            let t = target.as_array_mut().expect("just made an array");
            for item in items {
                let Some(key) = item.get(merge_key) else {
                    return Err(format!(
                        "map: {} does not contain declared merge key: {merge_key}",
                        dotted(names)
                    ));
                };
                let pos = t.iter().position(|x| x.get(merge_key) == Some(key));
                let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                match (pos, delete) {
                    (Some(p), true) => {
                        t.remove(p);
                    }
                    (None, true) => {}
                    (Some(p), false) => smp_map(&mut t[p], item, kind, names)?,
                    (None, false) => {
                        let mut fresh = Value::Null;
                        smp_map(&mut fresh, item, kind, names)?;
                        t.push(fresh);
                    }
                }
            }
            Ok(())
        }
    }
}

fn dotted(names: &[&str]) -> String {
    if names.is_empty() {
        "the object".into()
    } else {
        format!(".{}", names.join("."))
    }
}

/// RFC 6902 JSON patch. Errors name the operation and path, never a value.
pub(super) fn json_patch(target: &mut Value, ops: &Value) -> Result<(), String> {
    let Some(ops) = ops.as_array() else {
        return Err("a JSON patch must be a list of operations".into());
    };
    for (i, op) in ops.iter().enumerate() {
        let name = op.get("op").and_then(Value::as_str).unwrap_or("");
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("operation {i} ({name}) has no path"))?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| format!("operation {i} ({name} {path}) has no value"))
        };
        let from = || {
            op.get("from")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("operation {i} ({name} {path}) has no from"))
        };
        match name {
            "add" => add(target, path, value()?)?,
            "remove" => {
                remove(target, path)?;
            }
            "replace" => {
                remove(target, path)?;
                add(target, path, value()?)?;
            }
            "move" => {
                let v = remove(target, from()?)?;
                add(target, path, v)?;
            }
            "copy" => {
                let v = target
                    .pointer(from()?)
                    .cloned()
                    .ok_or_else(|| format!("operation {i} (copy): missing value at {}", from().unwrap_or("")))?;
                add(target, path, v)?;
            }
            "test" => {
                if target.pointer(path) != Some(&value()?) {
                    return Err(format!("testing value {path} failed"));
                }
            }
            other => return Err(format!("unexpected kind of operation: {other:?}")),
        }
    }
    Ok(())
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn split_pointer(path: &str) -> Result<(String, String), String> {
    if path.is_empty() {
        return Err("the whole document cannot be patched".into());
    }
    let (parent, last) = path
        .rsplit_once('/')
        .ok_or_else(|| format!("invalid JSON pointer {path}"))?;
    Ok((parent.to_string(), unescape(last)))
}

fn add(target: &mut Value, path: &str, v: Value) -> Result<(), String> {
    let (parent, last) = split_pointer(path)?;
    let container = target
        .pointer_mut(&parent)
        .ok_or_else(|| format!("add operation does not apply: doc is missing path: {path}"))?;
    match container {
        Value::Object(m) => {
            m.insert(last, v);
            Ok(())
        }
        Value::Array(a) => {
            let idx = if last == "-" {
                a.len()
            } else {
                last.parse::<usize>()
                    .ok()
                    .filter(|i| *i <= a.len())
                    .ok_or_else(|| format!("add operation does not apply: index out of range at {path}"))?
            };
            a.insert(idx, v);
            Ok(())
        }
        _ => Err(format!("add operation does not apply: doc is missing path: {path}")),
    }
}

fn remove(target: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split_pointer(path)?;
    let missing = || format!("remove operation does not apply: doc is missing path: \"{path}\"");
    match target.pointer_mut(&parent).ok_or_else(missing)? {
        Value::Object(m) => m.remove(&last).ok_or_else(missing),
        Value::Array(a) => {
            let idx = last
                .parse::<usize>()
                .ok()
                .filter(|i| *i < a.len())
                .ok_or_else(missing)?;
            Ok(a.remove(idx))
        }
        _ => Err(missing()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merge_merges_containers_by_name_and_env_by_name() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "a:1", "env": [{"name": "A", "value": "1"}]},
            {"name": "side", "image": "s:1"}
        ]}}}});
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "a:2", "env": [{"name": "B", "value": "2"}]},
            {"name": "side", "$patch": "delete"}
        ]}}}});
        strategic_merge(&mut d, &patch, "Deployment").unwrap();
        assert_eq!(
            d,
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "app", "image": "a:2", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}
            ]}}}})
        );
    }

    #[test]
    fn strategic_merge_directives() {
        let mut o = json!({"metadata": {"finalizers": ["a", "b"], "labels": {"x": "1", "y": "2"}}});
        let patch = json!({"metadata": {
            "$deleteFromPrimitiveList/finalizers": ["a"],
            "finalizers": ["c"],
            "labels": {"$patch": "replace", "z": "3"}
        }});
        strategic_merge(&mut o, &patch, "Secret").unwrap();
        assert_eq!(o, json!({"metadata": {"finalizers": ["b", "c"], "labels": {"z": "3"}}}));
    }

    #[test]
    fn json_patch_ops() {
        let mut o = json!({"metadata": {"labels": {"a": "1"}}, "list": [1, 2]});
        let ops = json!([
            {"op": "add", "path": "/metadata/labels/b~1c", "value": "2"},
            {"op": "remove", "path": "/metadata/labels/a"},
            {"op": "add", "path": "/list/-", "value": 3},
            {"op": "replace", "path": "/list/0", "value": 0},
            {"op": "test", "path": "/list/2", "value": 3},
            {"op": "move", "from": "/list/1", "path": "/moved"},
            {"op": "copy", "from": "/moved", "path": "/copied"}
        ]);
        json_patch(&mut o, &ops).unwrap();
        assert_eq!(
            o,
            json!({"metadata": {"labels": {"b/c": "2"}}, "list": [0, 3], "moved": 2, "copied": 2})
        );
        let err = json_patch(&mut o, &json!([{"op": "test", "path": "/moved", "value": 9}])).unwrap_err();
        assert!(!err.contains('9'), "{err}");
        assert!(json_patch(&mut o, &json!([{"op": "remove", "path": "/nope"}])).is_err());
    }
}
