//! Field paths and ownership: what each field manager owns, as `metadata.managedFields`
//! shows it, and the server-side apply merge built on it.
//!
//! Paths follow structured-merge-diff's `FieldsV1` elements: a map field (`f:name`), an
//! item of an associative list by its keys (`k:{"name":"app"}`), an element of a set
//! (`v:"x"`). Which lists are associative or sets comes from [`list_type`], as the real
//! server takes it from the types' `x-kubernetes-list-type` markers.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::schema::{ListType, list_type};
use super::wire::now_rfc3339;

/// One element of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Seg {
    /// A field of a map.
    Field(String),
    /// An item of an associative list, by the canonical JSON of its key fields.
    Key(String),
    /// An element of a set, by its canonical JSON.
    Value(String),
}

pub(super) type FieldPath = Vec<Seg>;

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

/// `.spec.containers[name="app"].image`, as the API server names fields in conflicts.
pub(super) fn display_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Field(f) => {
                out.push('.');
                out.push_str(f);
            }
            Seg::Key(k) => {
                let fields: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
                let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push_str(&format!("[{}]", parts.join(",")));
            }
            Seg::Value(v) => out.push_str(&format!("[={v}]")),
        }
    }
    out
}

/// The canonical JSON of an associative-list item's keys (sorted by key name), or `None`
/// when the item is not a map or has none of the keys.
fn key_of(item: &Value, keys: &[&str]) -> Option<String> {
    let map = item.as_object()?;
    let mut present: Vec<(&str, &Value)> = keys
        .iter()
        .filter_map(|k| map.get(*k).filter(|v| !v.is_null()).map(|v| (*k, v)))
        .collect();
    if present.is_empty() {
        return None;
    }
    present.sort_by_key(|(k, _)| *k);
    let parts: Vec<String> = present
        .iter()
        .map(|(k, v)| format!("{}:{}", json!(k), serde_json::to_string(v).unwrap_or_default()))
        .collect();
    Some(format!("{{{}}}", parts.join(",")))
}

fn item_matches(item: &Value, key: &str) -> bool {
    let Ok(Value::Object(want)) = serde_json::from_str::<Value>(key) else {
        return false;
    };
    let keys: Vec<&str> = want.keys().map(String::as_str).collect();
    // Compare against the same key fields, so an item with an extra key field set is
    // still told apart from one without.
    item.as_object()
        .is_some_and(|_| key_of(item, &keys).as_deref() == Some(key))
}

fn is_marker(p: &[Seg]) -> bool {
    matches!(p.last(), Some(Seg::Key(_)))
}

/// Leaf fields of an object, the unit of ownership: maps are walked into, associative
/// lists and sets are walked item by item (an associative item also counts as a field of
/// its own, its "`.`"), other lists and scalars (and empty maps) are leaves. `metadata`
/// contributes labels, annotations, owner references and finalizers only.
pub(super) fn leaf_paths(obj: &Value, kind: &str, part: Part) -> BTreeMap<FieldPath, Value> {
    let mut out = BTreeMap::new();
    let Some(map) = obj.as_object() else {
        return out;
    };
    for (k, v) in map {
        match (part, k.as_str()) {
            (_, "apiVersion" | "kind") => {}
            (Part::Main, "status") => {}
            (Part::Status, "status") => walk(kind, vec![Seg::Field(k.clone())], &mut vec!["status"], v, &mut out),
            (Part::Status, _) => {}
            (Part::Main, "metadata") => {
                if let Some(m) = v.as_object() {
                    for field in ["labels", "annotations"] {
                        if let Some(Value::Object(entries)) = m.get(field) {
                            for (ek, ev) in entries {
                                out.insert(
                                    vec![
                                        Seg::Field("metadata".into()),
                                        Seg::Field(field.into()),
                                        Seg::Field(ek.clone()),
                                    ],
                                    ev.clone(),
                                );
                            }
                        }
                    }
                    for field in ["ownerReferences", "finalizers"] {
                        if let Some(val) = m.get(field) {
                            walk(
                                kind,
                                vec![Seg::Field("metadata".into()), Seg::Field(field.into())],
                                &mut vec!["metadata", field],
                                val,
                                &mut out,
                            );
                        }
                    }
                }
            }
            (Part::Main, _) => walk(kind, vec![Seg::Field(k.clone())], &mut vec![k.as_str()], v, &mut out),
        }
    }
    out
}

fn walk<'a>(kind: &str, path: FieldPath, names: &mut Vec<&'a str>, v: &'a Value, out: &mut BTreeMap<FieldPath, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                let mut p = path.clone();
                p.push(Seg::Field(k.clone()));
                names.push(k.as_str());
                walk(kind, p, names, child, out);
                names.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => match list_type(kind, names) {
            ListType::Map(keys) => {
                let item_keys: Vec<Option<String>> = items.iter().map(|i| key_of(i, keys)).collect();
                let unique: BTreeSet<&String> = item_keys.iter().flatten().collect();
                if unique.len() != items.len() {
                    // Items without keys or with duplicate keys: the server rejects these
                    // (see validate); until then the list counts as one field.
                    out.insert(path, v.clone());
                    return;
                }
                for (item, key) in items.iter().zip(item_keys) {
                    let key = key.expect("checked above");
                    let mut p = path.clone();
                    p.push(Seg::Key(key));
                    let key_fields: Map<String, Value> = keys
                        .iter()
                        .filter_map(|k| item.get(*k).map(|v| (k.to_string(), v.clone())))
                        .collect();
                    out.insert(p.clone(), Value::Object(key_fields));
                    if let Some(fields) = item.as_object() {
                        for (k, child) in fields.iter().filter(|(k, _)| !keys.contains(&k.as_str())) {
                            let mut cp = p.clone();
                            cp.push(Seg::Field(k.clone()));
                            names.push(k.as_str());
                            walk(kind, cp, names, child, out);
                            names.pop();
                        }
                    }
                }
            }
            ListType::Set if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
                let mut seen = BTreeSet::new();
                let mut elements = vec![];
                for item in items {
                    let s = serde_json::to_string(item).unwrap_or_default();
                    if !seen.insert(s.clone()) {
                        out.insert(path, v.clone());
                        return;
                    }
                    elements.push((s, item));
                }
                for (s, item) in elements {
                    let mut p = path.clone();
                    p.push(Seg::Value(s));
                    out.insert(p, item.clone());
                }
            }
            _ => {
                out.insert(path, v.clone());
            }
        },
        // An empty associative list or set in an applied configuration claims nothing: the
        // merge keeps the items others own (an atomic empty list is a value like any other).
        Value::Array(items) if items.is_empty() && list_type(kind, names) != ListType::Atomic => {}
        _ => {
            out.insert(path, v.clone());
        }
    }
}

/// Whether two paths name the same field or one contains the other.
fn overlaps(a: &[Seg], b: &[Seg]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Whether owning `owned` is touched by a change at `changed`: the same field, a field
/// inside it, or a field containing it — except that owning a list item's "`.`" does not
/// make its fields anyone else's to keep.
fn touches(owned: &[Seg], changed: &[Seg]) -> bool {
    overlaps(owned, changed) && !(is_marker(owned) && owned.len() < changed.len())
}

pub(super) fn get_path<'a>(obj: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |v, seg| match seg {
        Seg::Field(f) => v.get(f),
        Seg::Key(k) => v.as_array()?.iter().find(|i| item_matches(i, k)),
        Seg::Value(s) => v
            .as_array()?
            .iter()
            .find(|e| serde_json::to_string(e).ok().as_deref() == Some(s)),
    })
}

fn container_for(next: &Seg) -> Value {
    match next {
        Seg::Field(_) => Value::Object(Map::new()),
        Seg::Key(_) | Seg::Value(_) => Value::Array(vec![]),
    }
}

/// Sets the field at `path` (creating maps, lists and list items on the way). For an
/// associative item's "`.`" the item is created from its keys if missing; for a set
/// element the element is added if missing.
pub(super) fn set_path(obj: &mut Value, path: &[Seg], val: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for (i, seg) in parents.iter().enumerate() {
        let next_seg = &path[i + 1];
        cur = match seg {
            Seg::Field(f) => {
                if !cur.is_object() {
                    *cur = Value::Object(Map::new());
                }
                let map = cur.as_object_mut().expect("just made an object");
                let next = map.entry(f.clone()).or_insert_with(|| container_for(next_seg));
                let want_array = !matches!(next_seg, Seg::Field(_));
                if want_array != next.is_array() {
                    *next = container_for(next_seg);
                }
                next
            }
            Seg::Key(k) => {
                if !cur.is_array() {
                    *cur = Value::Array(vec![]);
                }
                let items = cur.as_array_mut().expect("just made an array");
                let pos = match items.iter().position(|i| item_matches(i, k)) {
                    Some(p) => p,
                    None => {
                        items.push(serde_json::from_str(k).unwrap_or(Value::Object(Map::new())));
                        items.len() - 1
                    }
                };
                &mut items[pos]
            }
            Seg::Value(_) => return,
        };
    }
    match last {
        Seg::Field(f) => {
            if !cur.is_object() {
                *cur = Value::Object(Map::new());
            }
            cur.as_object_mut().expect("an object").insert(f.clone(), val);
        }
        Seg::Key(k) => {
            if !cur.is_array() {
                *cur = Value::Array(vec![]);
            }
            let items = cur.as_array_mut().expect("an array");
            if !items.iter().any(|i| item_matches(i, k)) {
                items.push(serde_json::from_str(k).unwrap_or(val));
            }
        }
        Seg::Value(s) => {
            if !cur.is_array() {
                *cur = Value::Array(vec![]);
            }
            let items = cur.as_array_mut().expect("an array");
            if !items
                .iter()
                .any(|e| serde_json::to_string(e).ok().as_deref() == Some(s))
            {
                items.push(val);
            }
        }
    }
}

/// Removes a field (or list item, or set element), then the maps and lists it leaves
/// empty (never `metadata` itself).
pub(super) fn remove_path(obj: &mut Value, path: &[Seg]) {
    fn rec(v: &mut Value, path: &[Seg], depth: usize) -> bool {
        let Some(seg) = path.first() else {
            return false;
        };
        let last = path.len() == 1;
        match (v, seg) {
            (Value::Object(map), Seg::Field(f)) => {
                if last {
                    map.remove(f);
                } else if let Some(child) = map.get_mut(f)
                    && rec(child, &path[1..], depth + 1)
                {
                    map.remove(f);
                }
                depth > 0 && map.is_empty()
            }
            (Value::Array(items), Seg::Key(k)) => {
                if last {
                    items.retain(|i| !item_matches(i, k));
                } else if let Some(pos) = items.iter().position(|i| item_matches(i, k)) {
                    // An item keeps its keys: emptying its other fields never drops it.
                    rec(&mut items[pos], &path[1..], 0);
                }
                depth > 0 && items.is_empty()
            }
            (Value::Array(items), Seg::Value(s)) => {
                items.retain(|e| serde_json::to_string(e).ok().as_deref() != Some(s));
                depth > 0 && items.is_empty()
            }
            _ => false,
        }
    }
    rec(obj, path, 0);
    if let Some(m) = obj.as_object_mut()
        && !m.contains_key("metadata")
    {
        m.insert("metadata".into(), json!({}));
    }
}

fn render_seg(seg: &Seg) -> String {
    match seg {
        Seg::Field(f) => format!("f:{f}"),
        Seg::Key(k) => format!("k:{k}"),
        Seg::Value(v) => format!("v:{v}"),
    }
}

fn fields_tree(fields: &BTreeSet<FieldPath>) -> Value {
    let mut root = Value::Object(Map::new());
    for f in fields {
        let mut segs: Vec<String> = f.iter().map(render_seg).collect();
        if is_marker(f) {
            segs.push(".".into());
        }
        let mut cur = &mut root;
        for seg in segs {
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

/// Ownership after an update (create, PUT, patch) by `manager`: it owns what it changed,
/// nobody keeps what it changed or removed.
pub(super) fn update_ownership(
    managers: &mut Vec<ManagerEntry>,
    manager: &str,
    api_version: &str,
    kind: &str,
    old: Option<&Value>,
    new: &Value,
    part: Part,
) {
    let old_f = old.map(|o| leaf_paths(o, kind, part)).unwrap_or_default();
    let new_f = leaf_paths(new, kind, part);
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
            .retain(|f| !changed.iter().chain(removed.iter()).any(|c| touches(f, c)));
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

/// A server-side apply conflict: the other manager and the field, as displayed.
pub(super) type Conflict = (String, String);

/// Merges an applied configuration's fields into `obj` for `manager`, as server-side apply
/// does: conflicts with other managers that own a field with a different value fail the
/// apply unless `force` (then they lose the field); fields this manager applied before
/// and no longer applies are removed unless another manager owns them; list items of
/// associative lists merge by key, set elements by value.
pub(super) fn apply_fields(
    obj: &mut Value,
    managers: &mut Vec<ManagerEntry>,
    manager: &str,
    applied_fields: &BTreeMap<FieldPath, Value>,
    force: bool,
    subresource: Option<&'static str>,
) -> Result<(), Vec<Conflict>> {
    let mut conflicts = vec![];
    for (path, val) in applied_fields {
        if is_marker(path) {
            continue; // owning an item's "." never conflicts: it either exists or is added
        }
        let current = get_path(obj, path);
        for m in managers.iter_mut().filter(|m| m.manager != manager) {
            let clash = |f: &FieldPath| !is_marker(f) && overlaps(f, path);
            if m.fields.iter().any(clash) && current != Some(val) {
                if force {
                    m.fields.retain(|f| !clash(f));
                } else {
                    conflicts.push((m.manager.clone(), display_path(path)));
                }
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(conflicts);
    }
    let previously: BTreeSet<FieldPath> = managers
        .iter()
        .find(|m| m.manager == manager && m.operation == "Apply" && m.subresource == subresource)
        .map(|m| m.fields.clone())
        .unwrap_or_default();
    // Deepest first, so an item's fields go before the item.
    let mut dropped: Vec<&FieldPath> = previously.iter().filter(|p| !applied_fields.contains_key(*p)).collect();
    dropped.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for path in dropped {
        let shared_with_others = managers.iter().any(|m| {
            !(m.manager == manager && m.operation == "Apply" && m.subresource == subresource)
                && m.fields.iter().any(|f| touches(f, path))
        }) || applied_fields
            .keys()
            .any(|a| a.len() > path.len() && a.starts_with(path));
        if !shared_with_others {
            remove_path(obj, path);
        }
    }
    // Items before their fields, so a new item is created from its keys first.
    let mut ordered: Vec<(&FieldPath, &Value)> = applied_fields.iter().collect();
    ordered.sort_by_key(|(p, _)| p.len());
    for (path, val) in ordered {
        set_path(obj, path, val.clone());
    }
    managers.retain(|m| !(m.manager == manager && m.operation == "Apply" && m.subresource == subresource));
    if !applied_fields.is_empty() {
        managers.push(ManagerEntry {
            manager: manager.to_string(),
            operation: "Apply",
            subresource,
            api_version: String::new(),
            time: now_rfc3339(),
            fields: applied_fields.keys().cloned().collect(),
        });
    }
    managers.retain(|m| !m.fields.is_empty());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> Seg {
        Seg::Field(s.into())
    }

    #[test]
    fn owner_references_are_keyed_by_uid_and_finalizers_a_set() {
        let obj = json!({"metadata": {
            "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "a", "uid": "u1"}],
            "finalizers": ["a/b"],
        }});
        let paths = leaf_paths(&obj, "Secret", Part::Main);
        let item = vec![f("metadata"), f("ownerReferences"), Seg::Key(r#"{"uid":"u1"}"#.into())];
        assert!(paths.contains_key(&item));
        let mut name = item.clone();
        name.push(f("name"));
        assert_eq!(paths.get(&name), Some(&json!("a")));
        assert!(paths.contains_key(&vec![f("metadata"), f("finalizers"), Seg::Value(r#""a/b""#.into())]));
        let tree = fields_tree(&paths.keys().cloned().collect());
        assert!(
            tree.pointer("/f:metadata/f:ownerReferences/k:{\"uid\":\"u1\"}/.")
                .is_some()
        );
        assert!(tree.pointer("/f:metadata/f:finalizers/v:\"a~1b\"").is_some());
        assert_eq!(display_path(&name), ".metadata.ownerReferences[uid=\"u1\"].name");
    }

    #[test]
    fn set_and_remove_list_items() {
        let mut obj = json!({"metadata": {}});
        let item = vec![f("metadata"), f("ownerReferences"), Seg::Key(r#"{"uid":"u2"}"#.into())];
        let mut name = item.clone();
        name.push(f("name"));
        set_path(&mut obj, &item, json!({"uid": "u2"}));
        set_path(&mut obj, &name, json!("b"));
        assert_eq!(obj["metadata"]["ownerReferences"], json!([{"uid": "u2", "name": "b"}]));
        remove_path(&mut obj, &item);
        assert_eq!(obj, json!({"metadata": {}}));
    }
}
