//! Kind-specific rules: what the API server checks and normalises before it stores.

use std::collections::BTreeSet;

use axum::response::Response;
use base64::Engine;
use serde_json::{Map, Value, json};

use super::schema::{MAX_DATA_BYTES, ResourceDef};
use super::wire::{invalid, is_config_key, is_dns_label, is_dns_subdomain};

pub(super) fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Moves a Secret's `stringData` into `data` (base64), as the API server does on write.
pub(super) fn fold_string_data(obj: &mut Value) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    if let Some(Value::Object(sd)) = map.remove("stringData") {
        let data = map.entry("data").or_insert_with(|| Value::Object(Map::new()));
        if !data.is_object() {
            *data = Value::Object(Map::new());
        }
        let data = data.as_object_mut().expect("an object");
        for (k, v) in sd {
            let s = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            data.insert(k, Value::String(b64().encode(s.as_bytes())));
        }
    }
}

/// Validates a Secret or ConfigMap about to be stored. Messages name fields and keys,
/// never values.
pub(super) fn validate_data(res: &ResourceDef, name: &str, new: &Value, old: Option<&Value>) -> Result<(), Response> {
    let mut causes = vec![];
    let mut size = 0usize;
    let data_fields: &[&str] = if res.kind == "Secret" {
        &["data"]
    } else {
        &["data", "binaryData"]
    };
    let mut seen = BTreeSet::new();
    for field in data_fields {
        let Some(entries) = new.get(*field) else {
            continue;
        };
        if entries.is_null() {
            continue;
        }
        let Some(entries) = entries.as_object() else {
            causes.push((field.to_string(), "Invalid value: must be a map".to_string()));
            continue;
        };
        for (k, v) in entries {
            if !is_config_key(k) {
                causes.push((
                    format!("{field}[{k}]"),
                    format!("Invalid value: \"{k}\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"),
                ));
            }
            if !seen.insert(k.clone()) {
                causes.push((
                    format!("{field}[{k}]"),
                    "Invalid value: duplicate of key present in data".to_string(),
                ));
            }
            let Some(s) = v.as_str() else {
                causes.push((format!("{field}[{k}]"), "Invalid value: must be a string".to_string()));
                continue;
            };
            let base64_field = res.kind == "Secret" || *field == "binaryData";
            if base64_field {
                match b64().decode(s) {
                    Ok(bytes) => size += k.len() + bytes.len(),
                    Err(_) => causes.push((
                        format!("{field}[{k}]"),
                        "Invalid value: illegal base64 data".to_string(),
                    )),
                }
            } else {
                size += k.len() + s.len();
            }
        }
    }
    if size > MAX_DATA_BYTES {
        causes.push((
            "data".to_string(),
            format!("Too long: must have at most {MAX_DATA_BYTES} bytes"),
        ));
    }
    if let Some(old) = old {
        if res.kind == "Secret" {
            let old_type = old.get("type").and_then(Value::as_str).unwrap_or("Opaque");
            let new_type = new.get("type").and_then(Value::as_str).unwrap_or("Opaque");
            if old_type != new_type {
                causes.push(("type".to_string(), "Invalid value: field is immutable".to_string()));
            }
        }
        if old.get("immutable").and_then(Value::as_bool) == Some(true) {
            for field in data_fields {
                let norm = |v: Option<&Value>| {
                    v.filter(|v| !v.is_null() && v.as_object().is_none_or(|m| !m.is_empty()))
                        .cloned()
                };
                if norm(old.get(*field)) != norm(new.get(*field)) {
                    causes.push((
                        field.to_string(),
                        "Forbidden: field is immutable when `immutable` is set".to_string(),
                    ));
                }
            }
            if new.get("immutable").and_then(Value::as_bool) != Some(true) {
                causes.push((
                    "immutable".to_string(),
                    "Forbidden: field is immutable when `immutable` is set".to_string(),
                ));
            }
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(invalid(res, name, causes))
    }
}

pub(super) fn validate_name(res: &ResourceDef, name: &str) -> Result<(), Response> {
    let ok = if res.kind == "Namespace" {
        is_dns_label(name)
    } else {
        is_dns_subdomain(name)
    };
    if ok {
        return Ok(());
    }
    let what = if res.kind == "Namespace" {
        "RFC 1123 label"
    } else {
        "RFC 1123 subdomain"
    };
    Err(invalid(
        res,
        name,
        vec![(
            "metadata.name".to_string(),
            format!(
                "Invalid value: \"{name}\": a lowercase {what} must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
            ),
        )],
    ))
}

/// The object without the fields the server owns, to tell whether a write changed anything.
pub(super) fn comparable(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in [
            "resourceVersion",
            "managedFields",
            "generation",
            "creationTimestamp",
            "uid",
        ] {
            m.remove(f);
        }
    }
    if let Some(m) = o.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
    }
    o
}

pub(super) fn spec_part(obj: &Value) -> Value {
    let mut o = comparable(obj);
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    o
}

pub(super) fn with_version(obj: &Value, res: &ResourceDef, version: &str) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.insert("apiVersion".into(), json!(res.api_version(version)));
        m.insert("kind".into(), json!(res.kind));
    }
    o
}
