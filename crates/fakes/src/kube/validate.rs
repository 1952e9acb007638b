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

/// What each Secret type requires of its data (k8s.io/kubernetes pkg/apis/core/validation
/// `ValidateSecret`): TLS needs `tls.crt` and `tls.key`, docker configs their key holding
/// JSON, basic-auth a username or password, ssh-auth a private key, service-account
/// tokens the account's name annotation. Messages name keys, never values.
pub(super) fn secret_type_causes(secret: &Value) -> Vec<(String, String)> {
    let data = secret.get("data").and_then(Value::as_object);
    let has = |k: &str| data.is_some_and(|d| d.contains_key(k));
    let decoded = |k: &str| {
        data.and_then(|d| d.get(k))
            .and_then(Value::as_str)
            .and_then(|s| b64().decode(s).ok())
    };
    let required = |k: &str| (format!("data[{k}]"), "Required value".to_string());
    let mut out = vec![];
    match secret.get("type").and_then(Value::as_str).unwrap_or("Opaque") {
        "kubernetes.io/tls" => {
            for k in ["tls.crt", "tls.key"] {
                if !has(k) {
                    out.push(required(k));
                }
            }
        }
        t @ ("kubernetes.io/dockerconfigjson" | "kubernetes.io/dockercfg") => {
            let k = if t == "kubernetes.io/dockercfg" {
                ".dockercfg"
            } else {
                ".dockerconfigjson"
            };
            match decoded(k) {
                None if !has(k) => out.push(required(k)),
                bytes => {
                    let ok = bytes.is_some_and(|b| serde_json::from_slice::<Map<String, Value>>(&b).is_ok());
                    if !ok {
                        out.push((
                            format!("data[{k}]"),
                            "Invalid value: \"<secret contents redacted>\": the value is not a JSON object".into(),
                        ));
                    }
                }
            }
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            out.push(required("username"));
            out.push(required("password"));
        }
        "kubernetes.io/ssh-auth" if decoded("ssh-privatekey").is_none_or(|b| b.is_empty()) => {
            out.push(required("ssh-privatekey"));
        }
        "kubernetes.io/service-account-token" => {
            let named = secret
                .pointer("/metadata/annotations/kubernetes.io~1service-account.name")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty());
            if !named {
                out.push((
                    "metadata.annotations[kubernetes.io/service-account.name]".into(),
                    "Required value".into(),
                ));
            }
        }
        _ => {}
    }
    out
}

/// At most one owner reference may be the controller (apimachinery's
/// `ValidateOwnerReferences`).
pub(super) fn owner_reference_causes(obj: &Value) -> Vec<(String, String)> {
    let refs = obj
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut controller: Option<String> = None;
    let mut out = vec![];
    for r in &refs {
        let name = format!(
            "{}/{}",
            r.get("kind").and_then(Value::as_str).unwrap_or(""),
            r.get("name").and_then(Value::as_str).unwrap_or("")
        );
        for field in ["apiVersion", "kind", "name", "uid"] {
            if r.get(field).and_then(Value::as_str).is_none_or(str::is_empty) {
                out.push((
                    format!("metadata.ownerReferences.{field}"),
                    "Invalid value: \"\": must not be empty".into(),
                ));
            }
        }
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            match &controller {
                Some(first) => out.push((
                    "metadata.ownerReferences".into(),
                    format!("Invalid value: []v1.OwnerReference{{...}}: Only one reference can have Controller set to true. Found \"true\" in references for {first} and {name}"),
                )),
                None => controller = Some(name),
            }
        }
    }
    out
}

/// Fields of `obj` that `kind` does not have: for built-in kinds, what a decode into the
/// typed object (k8s-openapi's types, which mirror k8s.io/api) drops; for the ESO kinds,
/// what their CRD schema (deploy/crds.yaml) would prune. Paths are dotted, as the API
/// server's strict decoding names them (`spec.foo`, `spec.containers[0].bar`).
pub(super) fn unknown_fields(res: &ResourceDef, version: &str, obj: &Value) -> Vec<String> {
    use k8s_openapi::api;
    fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(obj: &Value) -> Option<Value> {
        let typed: T = serde_json::from_value(obj.clone()).ok()?;
        serde_json::to_value(typed).ok()
    }
    if res.custom {
        let mut out = vec![];
        if let Some(crd) = super::crd::crd(res.kind, version) {
            schema_unknown(&crd.schema, obj, "", &mut out);
        }
        return out;
    }
    let typed = match (res.group, res.kind) {
        ("", "Secret") => round_trip::<api::core::v1::Secret>(obj),
        ("", "ConfigMap") => round_trip::<api::core::v1::ConfigMap>(obj),
        ("", "Namespace") => round_trip::<api::core::v1::Namespace>(obj),
        ("", "Event") => round_trip::<api::core::v1::Event>(obj),
        ("apps", "Deployment") => round_trip::<api::apps::v1::Deployment>(obj),
        ("apps", "StatefulSet") => round_trip::<api::apps::v1::StatefulSet>(obj),
        ("apps", "DaemonSet") => round_trip::<api::apps::v1::DaemonSet>(obj),
        ("coordination.k8s.io", "Lease") => round_trip::<api::coordination::v1::Lease>(obj),
        ("events.k8s.io", "Event") => round_trip::<api::events::v1::Event>(obj),
        _ => None,
    };
    let mut out = vec![];
    if let Some(typed) = typed {
        diff_unknown(obj, &typed, "", &mut out);
    }
    out
}

fn join(prefix: &str, k: &str) -> String {
    if prefix.is_empty() {
        k.to_string()
    } else {
        format!("{prefix}.{k}")
    }
}

fn diff_unknown(orig: &Value, typed: &Value, prefix: &str, out: &mut Vec<String>) {
    match (orig, typed) {
        (Value::Object(o), Value::Object(t)) => {
            for (k, v) in o {
                match t.get(k) {
                    None if !v.is_null() => out.push(join(prefix, k)),
                    None => {}
                    Some(tv) => diff_unknown(v, tv, &join(prefix, k), out),
                }
            }
        }
        (Value::Array(o), Value::Array(t)) if o.len() == t.len() => {
            for (i, (ov, tv)) in o.iter().zip(t).enumerate() {
                diff_unknown(ov, tv, &format!("{prefix}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn schema_unknown(schema: &Value, obj: &Value, prefix: &str, out: &mut Vec<String>) {
    if schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
    {
        return;
    }
    match obj {
        Value::Object(o) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            for (k, v) in o {
                // metadata is validated by the server's own rules, never pruned by the schema.
                if prefix.is_empty() && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                match (props.and_then(|p| p.get(k)), additional) {
                    (Some(s), _) => schema_unknown(s, v, &join(prefix, k), out),
                    (None, Some(s)) if s.is_object() => schema_unknown(s, v, &join(prefix, k), out),
                    (None, Some(Value::Bool(true))) => {}
                    _ => out.push(join(prefix, k)),
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    schema_unknown(s, v, &format!("{prefix}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// Type, enum and required-field errors of a custom resource against its CRD schema
/// (the structural-schema validation apiextensions-apiserver runs), in the API server's
/// words: `spec: Invalid value: "string": spec in body must be of type object: "string"`.
pub(super) fn schema_causes(res: &ResourceDef, version: &str, obj: &Value) -> Vec<(String, String)> {
    let mut out = vec![];
    if let Some(crd) = super::crd::crd(res.kind, version) {
        schema_check(&crd.schema, obj, "", &mut out);
    }
    out
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn schema_check(schema: &Value, obj: &Value, path: &str, out: &mut Vec<(String, String)>) {
    if let Some(want) = schema.get("type").and_then(Value::as_str) {
        let got = type_name(obj);
        let ok = got == want
            || (want == "number" && got == "integer")
            || (got == "null" && schema.get("nullable") == Some(&Value::Bool(true)));
        if !ok {
            let field = if path.is_empty() { "<root>" } else { path };
            let last = field.rsplit('.').next().unwrap_or(field);
            out.push((
                field.to_string(),
                format!("Invalid value: \"{got}\": {last} in body must be of type {want}: \"{got}\""),
            ));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(obj)
    {
        let list: Vec<String> = allowed.iter().map(|v| v.to_string()).collect();
        out.push((
            path.to_string(),
            format!("Unsupported value: supported values: {}", list.join(", ")),
        ));
    }
    match obj {
        Value::Object(o) => {
            for req in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
                if let Some(r) = req.as_str()
                    && !o.contains_key(r)
                {
                    out.push((join(path, r), "Required value".into()));
                }
            }
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, v) in o {
                    if path.is_empty() && k == "metadata" {
                        continue;
                    }
                    if let Some(s) = props.get(k) {
                        schema_check(s, v, &join(path, k), out);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    schema_check(s, v, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// Removes the fields at `paths` (as [`unknown_fields`] names them) from `obj`.
pub(super) fn prune(obj: &mut Value, paths: &[String]) {
    for p in paths {
        let mut segs: Vec<(String, Option<usize>)> = vec![];
        for part in p.split('.') {
            let mut rest = part;
            let name_end = rest.find('[').unwrap_or(rest.len());
            segs.push((rest[..name_end].to_string(), None));
            rest = &rest[name_end..];
            while let Some(r) = rest.strip_prefix('[') {
                let close = r.find(']').unwrap_or(r.len());
                segs.push((String::new(), r[..close].parse().ok()));
                rest = r.get(close + 1..).unwrap_or("");
            }
        }
        remove_at(obj, &segs);
    }
}

fn remove_at(v: &mut Value, segs: &[(String, Option<usize>)]) {
    match segs {
        [] => {}
        [(last, None)] => {
            if let Some(m) = v.as_object_mut() {
                m.remove(last);
            }
        }
        [(name, idx), rest @ ..] => {
            let next = match idx {
                Some(i) => v.get_mut(*i),
                None => v.get_mut(name.as_str()),
            };
            if let Some(n) = next {
                remove_at(n, rest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_of_builtin_kinds() {
        let res = super::super::schema::RESOURCES
            .iter()
            .find(|r| r.kind == "Secret")
            .unwrap();
        let s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "a", "bogus": 1}, "data": {}, "extra": {"x": 1}, "type": "Opaque"});
        let mut got = unknown_fields(res, "v1", &s);
        got.sort();
        assert_eq!(got, vec!["extra".to_string(), "metadata.bogus".to_string()]);
        let d = super::super::schema::RESOURCES
            .iter()
            .find(|r| r.kind == "Deployment")
            .unwrap();
        let dep =
            json!({"spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "a", "imagee": "x"}]}}}});
        assert_eq!(
            unknown_fields(d, "v1", &dep),
            vec!["spec.template.spec.containers[0].imagee".to_string()]
        );
        let mut pruned = dep.clone();
        prune(&mut pruned, &unknown_fields(d, "v1", &dep));
        assert_eq!(
            pruned["spec"]["template"]["spec"]["containers"][0],
            json!({"name": "a"})
        );
    }

    #[test]
    fn crd_schema_checks() {
        let es = super::super::schema::RESOURCES
            .iter()
            .find(|r| r.kind == "ExternalSecret")
            .unwrap();
        let bad = json!({"metadata": {"name": "x"}, "spec": "string", "extra": 1});
        assert_eq!(unknown_fields(es, "v1", &bad), vec!["extra".to_string()]);
        let causes = schema_causes(es, "v1", &bad);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].0, "spec");
        assert!(causes[0].1.contains("must be of type object"), "{}", causes[0].1);
    }
}
