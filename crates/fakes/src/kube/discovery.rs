//! Discovery documents and a minimal OpenAPI v3.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::schema::RESOURCES;

pub(super) fn groups() -> Value {
    let mut seen: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        let e = seen.entry(r.group).or_default();
        for v in r.versions {
            if !e.contains(v) {
                e.push(v);
            }
        }
    }
    let groups: Vec<Value> = seen
        .into_iter()
        .map(|(g, vs)| {
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                .collect();
            json!({"name": g, "versions": versions, "preferredVersion": versions[0].clone()})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub(super) fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut resources = vec![];
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.versions.contains(&version))
    {
        resources.push(json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            "shortNames": r.short_names,
            "categories": r.categories,
            "storageVersionHash": "",
        }));
        if r.status {
            resources.push(json!({"name": format!("{}/status", r.plural), "singularName": "", "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"]}));
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

/// The OpenAPI v3 path of a group version: `api/v1`, `apis/apps/v1`.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out = vec![];
    for r in RESOURCES {
        for v in r.versions {
            if !out.contains(&(r.group, *v)) {
                out.push((r.group, *v));
            }
        }
    }
    out
}

/// `/openapi/v3`: where each group version's document is.
pub(super) fn openapi_root() -> Value {
    let paths: serde_json::Map<String, Value> = group_versions()
        .into_iter()
        .map(|(g, v)| {
            let p = gv_path(g, v);
            let url = format!("/openapi/v3/{p}?hash={}", OPENAPI_HASH);
            (p, json!({"serverRelativeURL": url}))
        })
        .collect();
    json!({"paths": paths})
}

/// Bumped whenever the documents change, so kubectl's cache (keyed by it) refreshes.
const OPENAPI_HASH: &str = "secretsync-fake-2";

fn schema_name(group: &str, version: &str, kind: &str) -> String {
    match group {
        "" => format!("io.k8s.api.core.v1.{kind}"),
        "apps" => format!("io.k8s.api.apps.{version}.{kind}"),
        "coordination.k8s.io" => format!("io.k8s.api.coordination.{version}.{kind}"),
        "events.k8s.io" => format!("io.k8s.api.events.{version}.{kind}"),
        g => {
            let reversed: Vec<&str> = g.split('.').rev().collect();
            format!("{}.{version}.{kind}", reversed.join("."))
        }
    }
}

fn query_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

/// `/openapi/v3/{api/v1 | apis/g/v}`: the paths of the group version's resources, each
/// PATCH tagged with its kind and taking `fieldValidation` — what kubectl checks before
/// it leaves validation to the server — and a schema per kind. The PATCH bodies listed are
/// JSON, merge and apply patches: a client that would compute a strategic merge patch
/// from OpenAPI falls back to its built-in types instead, which carry the same strategies.
pub(super) fn openapi_gv(path: &str) -> Option<Value> {
    let (group, version) = match path.trim_matches('/').split('/').collect::<Vec<_>>().as_slice() {
        ["api", v] => ("", *v),
        ["apis", g, v] => (*g, *v),
        _ => return None,
    };
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.versions.contains(&version))
    {
        let gvk = json!({"group": group, "version": version, "kind": r.kind});
        let name = schema_name(group, version, r.kind);
        let reference = json!({"$ref": format!("#/components/schemas/{name}")});
        let body = |types: &[&str]| -> Value {
            let content: serde_json::Map<String, Value> = types
                .iter()
                .map(|t| (t.to_string(), json!({"schema": {"type": "object"}})))
                .collect();
            json!({"content": content, "required": true})
        };
        let ok = json!({"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}});
        let write_params = vec![
            query_param(
                "dryRun",
                "When present, indicates that modifications should not be persisted.",
            ),
            query_param(
                "fieldManager",
                "fieldManager is a name associated with the actor or entity that is making these changes.",
            ),
            query_param(
                "fieldValidation",
                "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields.",
            ),
        ];
        let mut patch_params = write_params.clone();
        patch_params.push(json!({"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}}));
        let item = json!({
            "get": {"operationId": format!("read{}", r.kind), "responses": ok, "x-kubernetes-action": "get", "x-kubernetes-group-version-kind": gvk},
            "put": {"operationId": format!("replace{}", r.kind), "parameters": write_params, "requestBody": body(&["application/json"]), "responses": ok, "x-kubernetes-action": "put", "x-kubernetes-group-version-kind": gvk},
            "patch": {
                "operationId": format!("patch{}", r.kind),
                "parameters": patch_params,
                "requestBody": body(&["application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json"]),
                "responses": ok,
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": gvk,
            },
            "delete": {"operationId": format!("delete{}", r.kind), "responses": ok, "x-kubernetes-action": "delete", "x-kubernetes-group-version-kind": gvk},
            "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
        });
        let collection = json!({
            "get": {"operationId": format!("list{}", r.kind), "responses": ok, "x-kubernetes-action": "list", "x-kubernetes-group-version-kind": gvk},
            "post": {"operationId": format!("create{}", r.kind), "parameters": write_params, "requestBody": body(&["application/json"]), "responses": ok, "x-kubernetes-action": "post", "x-kubernetes-group-version-kind": gvk},
        });
        let base = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{prefix}/{}", r.plural)
        };
        paths.insert(base.clone(), collection);
        paths.insert(format!("{base}/{{name}}"), item);
        let schema = match super::crd::crd(r.kind, version) {
            Some(c) if r.custom => c.schema.clone(),
            _ => json!({
                "type": "object",
                "description": format!("{} (the fake serves a minimal schema; the server validates)", r.kind),
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {"type": "object"},
                },
                "x-kubernetes-preserve-unknown-fields": true,
            }),
        };
        let mut schema = schema;
        schema["x-kubernetes-group-version-kind"] = json!([gvk]);
        schemas.insert(name, schema);
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}
