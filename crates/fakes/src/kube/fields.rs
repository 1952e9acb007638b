//! Field paths and ownership: what each field manager owns, as `metadata.managedFields`
//! shows it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::wire::now_rfc3339;

pub(super) type FieldPath = Vec<String>;

#[derive(Debug, Clone, PartialEq)]
pub(super) struct ManagerEntry {
    pub(super) manager: String,
    pub(super) operation: &'static str,
    pub(super) subresource: Option<&'static str>,
    pub(super) api_version: String,
    pub(super) time: String,
    pub(super) fields: BTreeSet<FieldPath>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    Main,
    Status,
}

/// Leaf fields of an object, the unit of ownership: maps are walked into, lists and
/// scalars (and empty maps) are leaves. `metadata` contributes labels, annotations, owner
/// references and finalizers only.
pub(super) fn leaf_paths(obj: &Value, part: Part) -> BTreeMap<FieldPath, Value> {
    let mut out = BTreeMap::new();
    let Some(map) = obj.as_object() else {
        return out;
    };
    for (k, v) in map {
        match (part, k.as_str()) {
            (_, "apiVersion" | "kind") => {}
            (Part::Main, "status") => {}
            (Part::Status, "status") => walk(vec![k.clone()], v, &mut out),
            (Part::Status, _) => {}
            (Part::Main, "metadata") => {
                if let Some(m) = v.as_object() {
                    for field in ["labels", "annotations"] {
                        if let Some(Value::Object(entries)) = m.get(field) {
                            for (ek, ev) in entries {
                                out.insert(vec!["metadata".into(), field.into(), ek.clone()], ev.clone());
                            }
                        }
                    }
                    for field in ["ownerReferences", "finalizers"] {
                        if let Some(val) = m.get(field) {
                            out.insert(vec!["metadata".into(), field.into()], val.clone());
                        }
                    }
                }
            }
            (Part::Main, _) => walk(vec![k.clone()], v, &mut out),
        }
    }
    out
}

pub(super) fn walk(path: FieldPath, v: &Value, out: &mut BTreeMap<FieldPath, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                let mut p = path.clone();
                p.push(k.clone());
                walk(p, child, out);
            }
        }
        _ => {
            out.insert(path, v.clone());
        }
    }
}

pub(super) fn overlaps(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

pub(super) fn get_path<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |v, seg| v.get(seg))
}

pub(super) fn set_path(obj: &mut Value, path: &[String], val: Value) {
    let mut cur = obj;
    for seg in &path[..path.len() - 1] {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let map = cur.as_object_mut().expect("just made an object");
        let next = map.entry(seg.clone()).or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        cur = next;
    }
    if !cur.is_object() {
        *cur = Value::Object(Map::new());
    }
    cur.as_object_mut()
        .expect("an object")
        .insert(path[path.len() - 1].clone(), val);
}

/// Removes a field, then parents it leaves empty (never `metadata` itself).
pub(super) fn remove_path(obj: &mut Value, path: &[String]) {
    fn rec(v: &mut Value, path: &[String], depth: usize) -> bool {
        let Some(map) = v.as_object_mut() else {
            return false;
        };
        if path.len() == 1 {
            map.remove(&path[0]);
        } else if let Some(child) = map.get_mut(&path[0])
            && rec(child, &path[1..], depth + 1)
        {
            map.remove(&path[0]);
        }
        depth > 0 && map.is_empty()
    }
    rec(obj, path, 0);
    if let Some(m) = obj.as_object_mut()
        && !m.contains_key("metadata")
    {
        m.insert("metadata".into(), json!({}));
    }
}

pub(super) fn fields_tree(fields: &BTreeSet<FieldPath>) -> Value {
    let mut root = Value::Object(Map::new());
    for f in fields {
        let path: Vec<String> = f.iter().map(|s| format!("f:{s}")).collect();
        let mut cur = &mut root;
        for seg in path {
            cur = cur
                .as_object_mut()
                .expect("tree nodes are objects")
                .entry(seg)
                .or_insert_with(|| Value::Object(Map::new()));
        }
    }
    root
}

pub(super) fn render_managed_fields(managers: &[ManagerEntry]) -> Value {
    Value::Array(
        managers
            .iter()
            .map(|m| {
                let mut e = json!({
                    "manager": m.manager,
                    "operation": m.operation,
                    "apiVersion": m.api_version,
                    "time": m.time,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": fields_tree(&m.fields),
                });
                if let Some(s) = m.subresource {
                    e["subresource"] = json!(s);
                }
                e
            })
            .collect(),
    )
}

/// Ownership after an update (create, PUT, merge patch) by `manager`: it owns what it
/// changed, nobody keeps what it changed or removed.
pub(super) fn update_ownership(
    managers: &mut Vec<ManagerEntry>,
    manager: &str,
    api_version: &str,
    old: Option<&Value>,
    new: &Value,
    part: Part,
) {
    let old_f = old.map(|o| leaf_paths(o, part)).unwrap_or_default();
    let new_f = leaf_paths(new, part);
    let changed: Vec<FieldPath> = new_f
        .iter()
        .filter(|(p, v)| old_f.get(*p) != Some(*v))
        .map(|(p, _)| p.clone())
        .collect();
    let removed: Vec<FieldPath> = old_f.keys().filter(|p| !new_f.contains_key(*p)).cloned().collect();
    if changed.is_empty() && removed.is_empty() {
        return;
    }
    for m in managers.iter_mut() {
        m.fields
            .retain(|f| !changed.iter().chain(removed.iter()).any(|c| overlaps(f, c)));
    }
    let subresource = (part == Part::Status).then_some("status");
    let now = now_rfc3339();
    match managers
        .iter_mut()
        .find(|m| m.manager == manager && m.operation == "Update" && m.subresource == subresource)
    {
        Some(m) => {
            m.fields.extend(changed);
            m.time = now;
            m.api_version = api_version.to_string();
        }
        None if !changed.is_empty() => managers.push(ManagerEntry {
            manager: manager.to_string(),
            operation: "Update",
            subresource,
            api_version: api_version.to_string(),
            time: now,
            fields: changed.into_iter().collect(),
        }),
        None => {}
    }
    managers.retain(|m| !m.fields.is_empty());
}
