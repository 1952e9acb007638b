//! Patches: JSON merge patch (RFC 7386).

use serde_json::{Map, Value};

/// RFC 7386 JSON merge patch.
pub(super) fn json_merge(target: &mut Value, patch: &Value) {
    if let Value::Object(p) = patch {
        if !target.is_object() {
            *target = Value::Object(Map::new());
        }
        let t = target.as_object_mut().expect("just made an object");
        for (k, v) in p {
            if k.starts_with('$') {
                continue; // strategic-merge directives
            }
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
