//! `Table` output (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`), what
//! `kubectl get` asks for: the columns the API server's printers define for the built-in
//! kinds (pkg/printers/internalversion/printers.go) and the CRDs' additionalPrinterColumns
//! (deploy/crds.yaml) for the ESO kinds.

use serde_json::{Value, json};

use super::crd::crd;
use super::schema::ResourceDef;

/// Whether an `Accept` header asks for a Table.
pub(super) fn wants_table(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',')
            .next()
            .is_some_and(|first| first.contains("as=Table") && first.contains("g=meta.k8s.io"))
    })
}

struct Column {
    name: &'static str,
    ty: &'static str,
    format: &'static str,
    priority: u8,
    description: &'static str,
}

const fn col(name: &'static str, ty: &'static str, priority: u8, description: &'static str) -> Column {
    Column {
        name,
        ty,
        format: "",
        priority,
        description,
    }
}

const NAME: Column = Column {
    name: "Name",
    ty: "string",
    format: "name",
    priority: 0,
    description: "Name must be unique within a namespace.",
};
const AGE: Column = col(
    "Age",
    "string",
    0,
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
);

fn columns(res: &ResourceDef, version: &str) -> Vec<Column> {
    let mut out = vec![NAME];
    match res.kind {
        "Secret" => {
            out.push(col("Type", "string", 0, "The type of the secret"));
            out.push(col("Data", "string", 0, "The number of entries in the data"));
            out.push(AGE);
        }
        "ConfigMap" => {
            out.push(col("Data", "string", 0, "The number of entries in the data"));
            out.push(AGE);
        }
        "Namespace" => {
            out.push(col("Status", "string", 0, "The status of the namespace"));
            out.push(AGE);
        }
        "Deployment" => {
            out.push(col("Ready", "string", 0, "Number of the pod with ready state"));
            out.push(col(
                "Up-to-date",
                "string",
                0,
                "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
            ));
            out.push(col(
                "Available",
                "string",
                0,
                "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
            ));
            out.push(AGE);
            out.push(col(
                "Containers",
                "string",
                1,
                "Names of each container in the template.",
            ));
            out.push(col(
                "Images",
                "string",
                1,
                "Images referenced by each container in the template.",
            ));
            out.push(col("Selector", "string", 1, "Label selector for pods."));
        }
        "StatefulSet" => {
            out.push(col("Ready", "string", 0, "Number of the pod with ready state"));
            out.push(AGE);
            out.push(col(
                "Containers",
                "string",
                1,
                "Names of each container in the template.",
            ));
            out.push(col(
                "Images",
                "string",
                1,
                "Images referenced by each container in the template.",
            ));
        }
        "DaemonSet" => {
            out.push(col(
                "Desired",
                "integer",
                0,
                "The total number of nodes that should be running the daemon pod.",
            ));
            out.push(col(
                "Current",
                "integer",
                0,
                "The number of nodes that are running at least 1 daemon pod.",
            ));
            out.push(col("Ready", "integer", 0, "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready."));
            out.push(col(
                "Up-to-date",
                "integer",
                0,
                "The total number of nodes that are running updated daemon pod",
            ));
            out.push(col("Available", "integer", 0, "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available."));
            out.push(AGE);
        }
        "Lease" => {
            out.push(col("Holder", "string", 0, "The holder of the lease"));
            out.push(AGE);
        }
        _ if res.custom => {
            for (name, ty, _) in crd_columns(res, version) {
                out.push(Column {
                    name: leak(name),
                    ty: if ty == "date" { "date" } else { "string" },
                    format: "",
                    priority: 0,
                    description: "",
                });
            }
        }
        _ => out.push(AGE),
    }
    out
}

/// A CRD's printer columns; with none declared, the API server defaults to Age.
fn crd_columns(res: &ResourceDef, version: &str) -> Vec<(String, String, String)> {
    let cols = crd(res.kind, version).map(|c| c.columns.clone()).unwrap_or_default();
    if cols.is_empty() {
        vec![("Age".into(), "date".into(), ".metadata.creationTimestamp".into())]
    } else {
        cols
    }
}

/// Column names live for the process: there are a handful, read once from deploy/crds.yaml.
fn leak(s: String) -> &'static str {
    static NAMES: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(vec![]);
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = names.iter().find(|n| **n == s) {
        return n;
    }
    let n: &'static str = Box::leak(s.into_boxed_str());
    names.push(n);
    n
}

/// `kubectl`'s human durations (k8s.io/apimachinery/pkg/util/duration.HumanDuration).
pub(super) fn human_age(created: Option<&str>) -> String {
    let Some(t) = created.and_then(|c| c.parse::<k8s_openapi::jiff::Timestamp>().ok()) else {
        return "<unknown>".into();
    };
    let secs = (k8s_openapi::jiff::Timestamp::now().as_second() - t.as_second()).max(0);
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86_400);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => {
            if s % 60 == 0 {
                format!("{m}m")
            } else {
                format!("{m}m{}s", s % 60)
            }
        }
        s if s < 3 * 3600 => format!("{m}m"),
        s if s < 8 * 3600 => {
            if m % 60 == 0 {
                format!("{h}h")
            } else {
                format!("{h}h{}m", m % 60)
            }
        }
        s if s < 48 * 3600 => format!("{h}h"),
        s if s < 8 * 86_400 => {
            if h % 24 == 0 {
                format!("{d}d")
            } else {
                format!("{d}d{}h", h % 24)
            }
        }
        _ => format!("{d}d"),
    }
}

/// The small JSONPath subset printer columns use: `.a.b` and `.list[?(@.k=="v")].field`.
fn json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    let mut rest = path.strip_prefix('.')?;
    while !rest.is_empty() {
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        let (field, tail) = rest.split_at(end);
        if !field.is_empty() {
            cur = cur.get(field)?;
        }
        rest = tail;
        if let Some(filter) = rest.strip_prefix("[?(@.") {
            let close = filter.find(")]")?;
            let (cond, after) = filter.split_at(close);
            let (k, v) = cond.split_once("==")?;
            let want = v.trim_matches('"');
            cur = cur
                .as_array()?
                .iter()
                .find(|i| i.get(k).and_then(Value::as_str) == Some(want))?;
            rest = &after[2..];
        }
        rest = rest.strip_prefix('.').unwrap_or(rest);
    }
    Some(cur)
}

fn cell_text(v: Option<&Value>) -> Value {
    match v {
        None | Some(Value::Null) => json!("<none>"),
        Some(Value::String(s)) => json!(s),
        Some(other) => json!(other.to_string()),
    }
}

fn count(v: Option<&Value>) -> usize {
    v.and_then(Value::as_object).map(|m| m.len()).unwrap_or(0)
}

fn containers(obj: &Value, field: &str) -> String {
    obj.pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get(field).and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn int(obj: &Value, ptr: &str) -> i64 {
    obj.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn cells(res: &ResourceDef, version: &str, obj: &Value) -> Vec<Value> {
    let name = json!(obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or(""));
    let age = json!(human_age(
        obj.pointer("/metadata/creationTimestamp").and_then(Value::as_str)
    ));
    let mut out = vec![name];
    match res.kind {
        "Secret" => {
            out.push(json!(obj.get("type").and_then(Value::as_str).unwrap_or("Opaque")));
            out.push(json!(count(obj.get("data"))));
            out.push(age);
        }
        "ConfigMap" => {
            out.push(json!(count(obj.get("data")) + count(obj.get("binaryData"))));
            out.push(age);
        }
        "Namespace" => {
            out.push(json!(
                obj.pointer("/status/phase").and_then(Value::as_str).unwrap_or("Active")
            ));
            out.push(age);
        }
        "Deployment" => {
            let desired = obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
            out.push(json!(format!("{}/{desired}", int(obj, "/status/readyReplicas"))));
            out.push(json!(int(obj, "/status/updatedReplicas")));
            out.push(json!(int(obj, "/status/availableReplicas")));
            out.push(age);
            out.push(json!(containers(obj, "name")));
            out.push(json!(containers(obj, "image")));
            let selector = obj
                .pointer("/spec/selector/matchLabels")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            out.push(json!(selector));
        }
        "StatefulSet" => {
            let desired = obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
            out.push(json!(format!("{}/{desired}", int(obj, "/status/readyReplicas"))));
            out.push(age);
            out.push(json!(containers(obj, "name")));
            out.push(json!(containers(obj, "image")));
        }
        "DaemonSet" => {
            for f in [
                "desiredNumberScheduled",
                "currentNumberScheduled",
                "numberReady",
                "updatedNumberScheduled",
                "numberAvailable",
            ] {
                out.push(json!(int(obj, &format!("/status/{f}"))));
            }
            out.push(age);
        }
        "Lease" => {
            out.push(cell_text(obj.pointer("/spec/holderIdentity")));
            out.push(age);
        }
        _ if res.custom => {
            for (_, ty, path) in crd_columns(res, version) {
                let v = json_path(obj, &path);
                if ty == "date" {
                    out.push(json!(human_age(v.and_then(Value::as_str))));
                } else {
                    out.push(cell_text(v));
                }
            }
        }
        _ => out.push(age),
    }
    out
}

fn row_object(obj: &Value, include: &str) -> Value {
    match include {
        "None" => Value::Null,
        "Object" => obj.clone(),
        _ => {
            let mut meta = obj.get("metadata").cloned().unwrap_or(json!({}));
            if let Some(m) = meta.as_object_mut() {
                m.remove("managedFields");
            }
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta})
        }
    }
}

/// A `meta.k8s.io/v1` Table of `objects` (already in the requested version).
pub(super) fn table(res: &ResourceDef, version: &str, objects: &[Value], list_meta: Value, include: &str) -> Value {
    let defs: Vec<Value> = columns(res, version)
        .iter()
        .map(|c| json!({"name": c.name, "type": c.ty, "format": c.format, "description": c.description, "priority": c.priority}))
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| json!({"cells": cells(res, version, o), "object": row_object(o, include)}))
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": defs,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printer_column_paths() {
        let es = json!({"spec": {"secretStoreRef": {"name": "gcp"}}, "status": {"conditions": [
            {"type": "Other", "status": "False"},
            {"type": "Ready", "status": "True", "reason": "SecretSynced"}
        ]}});
        assert_eq!(json_path(&es, ".spec.secretStoreRef.name"), Some(&json!("gcp")));
        assert_eq!(
            json_path(&es, ".status.conditions[?(@.type==\"Ready\")].reason"),
            Some(&json!("SecretSynced"))
        );
        assert_eq!(json_path(&es, ".spec.nope"), None);
    }

    #[test]
    fn accept_headers() {
        assert!(wants_table(Some(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        )));
        assert!(!wants_table(Some("application/json")));
        assert!(!wants_table(None));
    }
}
