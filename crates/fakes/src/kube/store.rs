//! The server: routing, the object store, and every verb.

// Handlers return the HTTP error response itself as the error: it is built once and sent.
#![allow(clippy::result_large_err)]

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use futures::SinkExt;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::discovery::{groups, resource_list};
use super::fields::*;
use super::patch::json_merge;
use super::schema::*;
use super::selectors::Filter;
use super::validate::*;
use super::wire::*;

/// History of watch events kept for watches that resume from a `resourceVersion`.
const HISTORY: usize = 10_000;

/// One request the fake answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// Path, without the query.
    pub path: String,
    /// Raw query string (empty when none).
    pub query: String,
    /// `Content-Type` of the request, if any.
    pub content_type: Option<String>,
    /// HTTP status of the response.
    pub status: u16,
    /// The [`CLIENT_HEADER`] the request carried: which of several clients sent it.
    pub client: Option<String>,
}

impl RequestRecord {
    /// Whether this request asked for a write (POST, PUT, PATCH, DELETE), whatever its status.
    pub fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE")
    }
}

#[derive(Debug, Clone)]
pub(super) struct Stored {
    pub(super) obj: Value,
    pub(super) managers: Vec<ManagerEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Key {
    pub(super) rid: usize,
    pub(super) ns: String,
    pub(super) name: String,
}

#[derive(Debug, Clone)]
pub(super) struct Event {
    pub(super) rid: usize,
    pub(super) ns: String,
    pub(super) rv: u64,
    pub(super) kind: &'static str,
    pub(super) object: Value,
}

#[derive(Debug, Default)]
pub(super) struct Inner {
    pub(super) rv: u64,
    pub(super) objects: BTreeMap<Key, Stored>,
    pub(super) history: VecDeque<Event>,
}

#[derive(Debug)]
pub(super) struct Shared {
    pub(super) inner: Mutex<Inner>,
    pub(super) events: broadcast::Sender<Event>,
    pub(super) log: Mutex<Vec<RequestRecord>>,
    pub(super) addr: SocketAddr,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------
// Routing

#[derive(Debug)]
pub(super) enum Target {
    Collection {
        ns: Option<String>,
    },
    Item {
        ns: Option<String>,
        name: String,
        status: bool,
    },
}

#[derive(Debug)]
pub(super) enum Route {
    Version,
    CoreVersions,
    Groups,
    ResourceList {
        group: String,
        version: String,
    },
    Resource {
        rid: usize,
        version: String,
        target: Target,
    },
}

pub(super) fn route(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest): (&str, &str, &[&str]) = match segs.as_slice() {
        ["version"] => return Some(Route::Version),
        ["api"] => return Some(Route::CoreVersions),
        ["apis"] => return Some(Route::Groups),
        ["api", v, rest @ ..] => ("", v, rest),
        ["apis", g, v, rest @ ..] => (g, v, rest),
        _ => return None,
    };
    let find = |plural: &str| find_resource(group, version, plural);
    match rest {
        [] => Some(Route::ResourceList {
            group: group.into(),
            version: version.into(),
        }),
        [plural] => Some(Route::Resource {
            rid: find(plural)?,
            version: version.into(),
            target: Target::Collection { ns: None },
        }),
        ["namespaces", name] if group.is_empty() => Some(Route::Resource {
            rid: find("namespaces")?,
            version: version.into(),
            target: Target::Item {
                ns: None,
                name: name.to_string(),
                status: false,
            },
        }),
        ["namespaces", name, "status"] if group.is_empty() => Some(Route::Resource {
            rid: find("namespaces")?,
            version: version.into(),
            target: Target::Item {
                ns: None,
                name: name.to_string(),
                status: true,
            },
        }),
        ["namespaces", ns, plural, tail @ ..] => {
            let rid = find(plural)?;
            if !RESOURCES[rid].namespaced {
                return None;
            }
            let ns = Some(ns.to_string());
            let target = match tail {
                [] => Target::Collection { ns },
                [name] => Target::Item {
                    ns,
                    name: name.to_string(),
                    status: false,
                },
                [name, "status"] if RESOURCES[rid].status => Target::Item {
                    ns,
                    name: name.to_string(),
                    status: true,
                },
                _ => return None,
            };
            Some(Route::Resource {
                rid,
                version: version.into(),
                target,
            })
        }
        [plural, name, tail @ ..] => {
            let rid = find(plural)?;
            if RESOURCES[rid].namespaced {
                return None;
            }
            let status = match tail {
                [] => false,
                ["status"] if RESOURCES[rid].status => true,
                _ => return None,
            };
            Some(Route::Resource {
                rid,
                version: version.into(),
                target: Target::Item {
                    ns: None,
                    name: name.to_string(),
                    status,
                },
            })
        }
    }
}

pub(super) async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let method = parts.method.clone();
    let path = parts.uri.path().to_string();
    let query_raw = parts.uri.query().unwrap_or("").to_string();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let client = parts
        .headers
        .get(CLIENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let response = match axum::body::to_bytes(body, 64 * 1024 * 1024).await {
        Ok(body) => shared.dispatch_with_dry_run(
            &method,
            &path,
            &parse_query(parts.uri.query()),
            content_type.as_deref(),
            &parts.headers,
            &body,
        ),
        Err(_) => status_error(413, "RequestEntityTooLarge", "request entity too large", None),
    };
    lock(&shared.log).push(RequestRecord {
        method: method.to_string(),
        path,
        query: query_raw,
        content_type,
        status: response.status().as_u16(),
        client,
    });
    response
}

pub(super) fn field_manager(q: &BTreeMap<String, String>, headers: &HeaderMap) -> String {
    if let Some(m) = q.get("fieldManager").filter(|m| !m.is_empty()) {
        return m.clone();
    }
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

pub(super) fn parse_body(body: &[u8], content_type: Option<&str>) -> Result<Value, Response> {
    let yaml = content_type.is_some_and(|c| c.contains("yaml"));
    let parsed: Result<Value, String> = if yaml {
        serde_yaml::from_slice(body).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    };
    // The parser's message may quote the body, which may hold secret values: say where only.
    parsed.map_err(|_| bad_request("the request body could not be decoded"))
}

thread_local! {
    /// Set while a `?dryRun=All` request is handled: writes are computed, validated and
    /// answered, but not stored. Handlers never await, so the flag cannot leak.
    static DRY_RUN: Cell<bool> = const { Cell::new(false) };
}

impl Shared {
    fn dispatch_with_dry_run(
        self: &Arc<Self>,
        method: &Method,
        path: &str,
        q: &BTreeMap<String, String>,
        content_type: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Response {
        let dry_run = q.get("dryRun").is_some_and(|v| v == "All");
        DRY_RUN.with(|d| d.set(dry_run));
        let response = self.dispatch(method, path, q, content_type, headers, body);
        DRY_RUN.with(|d| d.set(false));
        response
    }

    fn dispatch(
        self: &Arc<Self>,
        method: &Method,
        path: &str,
        q: &BTreeMap<String, String>,
        content_type: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Response {
        let Some(route) = route(path) else {
            return no_such_path();
        };
        let (rid, version, target) = match route {
            Route::Version => {
                return json_response(
                    StatusCode::OK,
                    &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-secretsync-fake", "gitCommit": "", "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"}),
                );
            }
            Route::CoreVersions => {
                return json_response(
                    StatusCode::OK,
                    &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.addr.to_string()}]}),
                );
            }
            Route::Groups => return json_response(StatusCode::OK, &groups()),
            Route::ResourceList { group, version } => {
                return match resource_list(&group, &version) {
                    Some(v) => json_response(StatusCode::OK, &v),
                    None => no_such_path(),
                };
            }
            Route::Resource { rid, version, target } => (rid, version, target),
        };
        let res = &RESOURCES[rid];
        let version = version.as_str();
        match (method, target) {
            (&Method::GET, Target::Collection { ns }) => {
                let filter = match Filter::from_query(ns, q) {
                    Ok(f) => f,
                    Err(r) => return r,
                };
                if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
                    self.watch(rid, version, filter, q)
                } else {
                    self.list(rid, version, &filter)
                }
            }
            (&Method::GET, Target::Item { ns, name, .. }) => {
                let key = Key {
                    rid,
                    ns: ns.unwrap_or_default(),
                    name: name.clone(),
                };
                match lock(&self.inner).objects.get(&key) {
                    Some(s) => json_response(StatusCode::OK, &with_version(&s.obj, res, version)),
                    None => not_found(res, &name),
                }
            }
            (&Method::POST, Target::Collection { ns }) => {
                if res.namespaced && ns.is_none() {
                    return no_such_path();
                }
                match parse_body(body, content_type) {
                    Ok(obj) => self.create(rid, version, ns, obj, &field_manager(q, headers)),
                    Err(r) => r,
                }
            }
            (&Method::PUT, Target::Item { ns, name, status }) => match parse_body(body, content_type) {
                Ok(obj) => self.replace(
                    rid,
                    version,
                    Key {
                        rid,
                        ns: ns.unwrap_or_default(),
                        name,
                    },
                    obj,
                    &field_manager(q, headers),
                    status,
                ),
                Err(r) => r,
            },
            (&Method::PATCH, Target::Item { ns, name, status }) => {
                let key = Key {
                    rid,
                    ns: ns.unwrap_or_default(),
                    name,
                };
                let ct = content_type
                    .unwrap_or("")
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string();
                let patch = match parse_body(body, Some(&ct)) {
                    Ok(p) => p,
                    Err(r) => return r,
                };
                match ct.as_str() {
                    "application/apply-patch+yaml" => {
                        let Some(manager) = q.get("fieldManager").filter(|m| !m.is_empty()) else {
                            return bad_request(
                                "PATCH with apply-patch+yaml requires the fieldManager query parameter",
                            );
                        };
                        let force = q.get("force").is_some_and(|f| f == "true");
                        self.apply(rid, version, key, patch, manager, force, status)
                    }
                    "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                        self.merge_patch(rid, version, key, patch, &field_manager(q, headers), status)
                    }
                    other => status_error(
                        415,
                        "UnsupportedMediaType",
                        format!(
                            "the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml (got `{other}`)"
                        ),
                        None,
                    ),
                }
            }
            (
                &Method::DELETE,
                Target::Item {
                    ns,
                    name,
                    status: false,
                },
            ) => {
                let opts = if body.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(body).unwrap_or(Value::Null)
                };
                self.delete(
                    rid,
                    version,
                    Key {
                        rid,
                        ns: ns.unwrap_or_default(),
                        name,
                    },
                    &opts,
                )
            }
            _ => status_error(
                405,
                "MethodNotAllowed",
                format!("the server does not allow this method on the requested resource ({method})"),
                None,
            ),
        }
    }

    fn list(&self, rid: usize, version: &str, filter: &Filter) -> Response {
        let res = &RESOURCES[rid];
        let inner = lock(&self.inner);
        let items: Vec<Value> = inner
            .objects
            .iter()
            .filter(|(k, s)| k.rid == rid && filter.matches(&k.ns, &s.obj))
            .map(|(_, s)| with_version(&s.obj, res, version))
            .collect();
        json_response(
            StatusCode::OK,
            &json!({
                "kind": format!("{}List", res.kind),
                "apiVersion": res.api_version(version),
                "metadata": {"resourceVersion": inner.rv.to_string()},
                "items": items,
            }),
        )
    }

    fn watch(&self, rid: usize, version: &str, filter: Filter, q: &BTreeMap<String, String>) -> Response {
        let res = &RESOURCES[rid];
        let timeout = q
            .get("timeoutSeconds")
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(1800);
        let send_initial = q.get("sendInitialEvents").is_some_and(|v| v == "true");
        let rv_param = q.get("resourceVersion").cloned().unwrap_or_default();
        let line = |kind: &str, obj: Value| -> Bytes {
            let mut b = serde_json::to_vec(&json!({"type": kind, "object": obj})).unwrap_or_default();
            b.push(b'\n');
            Bytes::from(b)
        };
        let (initial, rx, start_rv, expired) = {
            let inner = lock(&self.inner);
            let rx = self.events.subscribe();
            let mut initial = vec![];
            let mut expired = false;
            if send_initial || rv_param.is_empty() || rv_param == "0" {
                for (k, s) in &inner.objects {
                    if k.rid == rid && filter.matches(&k.ns, &s.obj) {
                        initial.push(line("ADDED", with_version(&s.obj, res, version)));
                    }
                }
                if send_initial {
                    initial.push(line(
                        "BOOKMARK",
                        json!({"kind": res.kind, "apiVersion": res.api_version(version), "metadata": {"resourceVersion": inner.rv.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}}),
                    ));
                }
            } else {
                let Ok(from) = rv_param.parse::<u64>() else {
                    return bad_request(format!("invalid resourceVersion `{rv_param}`"));
                };
                let oldest = inner.history.front().map(|e| e.rv).unwrap_or(inner.rv + 1);
                if from + 1 < oldest && from < inner.rv {
                    expired = true;
                    initial.push(line(
                        "ERROR",
                        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": format!("too old resource version: {from} ({})", oldest - 1), "reason": "Expired", "code": 410}),
                    ));
                } else {
                    for e in inner
                        .history
                        .iter()
                        .filter(|e| e.rv > from && e.rid == rid && filter.matches(&e.ns, &e.object))
                    {
                        initial.push(line(e.kind, with_version(&e.object, res, version)));
                    }
                }
            }
            (initial, rx, inner.rv, expired)
        };
        let (mut tx, body_rx) = futures::channel::mpsc::channel::<Result<Bytes, Infallible>>(64);
        let version = version.to_string();
        tokio::spawn(async move {
            let mut rx = rx;
            for b in initial {
                if tx.send(Ok(b)).await.is_err() {
                    return;
                }
            }
            if expired {
                return;
            }
            let deadline = tokio::time::sleep(Duration::from_secs(timeout));
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = &mut deadline => return,
                    ev = rx.recv() => match ev {
                        Ok(e) => {
                            if e.rv <= start_rv || e.rid != rid || !filter.matches(&e.ns, &e.object) {
                                continue;
                            }
                            if tx.send(Ok(line(e.kind, with_version(&e.object, &RESOURCES[rid], &version)))).await.is_err() {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            let _ = tx
                                .send(Ok(line("ERROR", json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "watch fell behind", "reason": "Expired", "code": 410}))))
                                .await;
                            return;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                }
            }
        });
        Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from_stream(body_rx))
            .expect("a valid response")
    }

    /// Stores `obj` under `key` with a fresh resourceVersion and tells watchers.
    fn commit(
        &self,
        inner: &mut Inner,
        key: Key,
        mut obj: Value,
        managers: Vec<ManagerEntry>,
        old: Option<&Value>,
    ) -> Value {
        let dry_run = DRY_RUN.with(Cell::get);
        if !dry_run {
            inner.rv += 1;
        }
        let rv = inner.rv;
        let res = &RESOURCES[key.rid];
        let generation = match old {
            None => 1,
            Some(o) => {
                let g = o.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1);
                if spec_part(o) == spec_part(&obj) { g } else { g + 1 }
            }
        };
        {
            let meta = obj
                .as_object_mut()
                .expect("objects are maps")
                .entry("metadata")
                .or_insert_with(|| json!({}));
            let meta = meta.as_object_mut().expect("metadata is a map");
            meta.insert("name".into(), json!(key.name));
            if res.namespaced {
                meta.insert("namespace".into(), json!(key.ns));
            } else {
                meta.remove("namespace");
            }
            let old_meta = old.and_then(|o| o.get("metadata"));
            let keep = |f: &str, default: Value| old_meta.and_then(|m| m.get(f)).cloned().unwrap_or(default);
            meta.insert("uid".into(), keep("uid", json!(new_uid())));
            meta.insert(
                "creationTimestamp".into(),
                keep("creationTimestamp", json!(now_rfc3339())),
            );
            meta.insert("generation".into(), json!(generation));
            meta.insert("resourceVersion".into(), json!(rv.to_string()));
            if managers.is_empty() {
                meta.remove("managedFields");
            } else {
                meta.insert("managedFields".into(), render_managed_fields(&managers));
            }
        }
        if dry_run {
            return obj;
        }
        let kind = if old.is_some() { "MODIFIED" } else { "ADDED" };
        inner.objects.insert(
            key.clone(),
            Stored {
                obj: obj.clone(),
                managers,
            },
        );
        self.record(
            inner,
            Event {
                rid: key.rid,
                ns: key.ns,
                rv,
                kind,
                object: obj.clone(),
            },
        );
        obj
    }

    fn record(&self, inner: &mut Inner, event: Event) {
        inner.history.push_back(event.clone());
        while inner.history.len() > HISTORY {
            inner.history.pop_front();
        }
        let _ = self.events.send(event);
    }

    /// Applies the rules every write shares, then stores the result (or nothing, when the
    /// write changed nothing).
    #[allow(clippy::too_many_arguments)]
    fn finish_write(
        &self,
        inner: &mut Inner,
        key: Key,
        version: &str,
        mut new: Value,
        managers: Vec<ManagerEntry>,
        old: Option<Stored>,
    ) -> Response {
        let res = &RESOURCES[key.rid];
        if res.kind == "Namespace" {
            // The API server labels every Namespace with its name (and keeps it so), which
            // is how selectors pick namespaces by name.
            let meta = new
                .as_object_mut()
                .expect("objects are maps")
                .entry("metadata")
                .or_insert_with(|| json!({}));
            if let Some(meta) = meta.as_object_mut() {
                let labels = meta.entry("labels").or_insert_with(|| json!({}));
                if !labels.is_object() {
                    *labels = json!({});
                }
                labels[NAMESPACE_NAME_LABEL] = json!(key.name);
            }
        }
        if res.kind == "Secret" {
            fold_string_data(&mut new);
            if new.get("type").is_none_or(Value::is_null) {
                let t = old
                    .as_ref()
                    .and_then(|o| o.obj.get("type").cloned())
                    .unwrap_or(json!("Opaque"));
                new["type"] = t;
            }
        }
        if (res.kind == "Secret" || res.kind == "ConfigMap")
            && let Err(r) = validate_data(res, &key.name, &new, old.as_ref().map(|o| &o.obj))
        {
            return r;
        }
        match old {
            None => {
                let obj = self.commit(inner, key, new, managers, None);
                json_response(StatusCode::CREATED, &with_version(&obj, res, version))
            }
            Some(old) => {
                if comparable(&old.obj) == comparable(&new)
                    && old
                        .managers
                        .iter()
                        .map(|m| &m.fields)
                        .eq(managers.iter().map(|m| &m.fields))
                {
                    return json_response(StatusCode::OK, &with_version(&old.obj, res, version));
                }
                let obj = self.commit(inner, key, new, managers, Some(&old.obj));
                json_response(StatusCode::OK, &with_version(&obj, res, version))
            }
        }
    }

    fn create(&self, rid: usize, version: &str, ns: Option<String>, mut obj: Value, manager: &str) -> Response {
        let res = &RESOURCES[rid];
        if !obj.is_object() {
            return bad_request("the body must be a JSON object");
        }
        let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
        let mut name = meta.get("name").and_then(Value::as_str).unwrap_or("").to_string();
        if name.is_empty()
            && let Some(prefix) = meta.get("generateName").and_then(Value::as_str)
        {
            let suffix: String = (0..5).map(|_| (b'a' + rand::random_range(0..26u8)) as char).collect();
            name = format!("{prefix}{suffix}");
        }
        if name.is_empty() {
            return invalid(
                res,
                "",
                vec![(
                    "metadata.name".into(),
                    "Required value: name or generateName is required".into(),
                )],
            );
        }
        if let Err(r) = validate_name(res, &name) {
            return r;
        }
        if let (Some(path_ns), Some(body_ns)) = (&ns, meta.get("namespace").and_then(Value::as_str))
            && path_ns != body_ns
        {
            return bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            );
        }
        if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            m.remove("managedFields");
        }
        if res.status
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        let key = Key {
            rid,
            ns: ns.unwrap_or_default(),
            name: name.clone(),
        };
        let mut inner = lock(&self.inner);
        if inner.objects.contains_key(&key) {
            return status_error(
                409,
                "AlreadyExists",
                format!("{} \"{}\" already exists", res.qualified(), name),
                Some(json!({"name": name, "group": res.group, "kind": res.plural})),
            );
        }
        if res.kind == "Secret" {
            fold_string_data(&mut obj);
        }
        let mut managers = vec![];
        update_ownership(
            &mut managers,
            manager,
            &res.api_version(version),
            None,
            &obj,
            Part::Main,
        );
        self.finish_write(&mut inner, key, version, obj, managers, None)
    }

    fn check_precondition(res: &ResourceDef, name: &str, body: &Value, current: &Value) -> Result<(), Response> {
        if let Some(want) = body
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            && Some(want) != current.pointer("/metadata/resourceVersion").and_then(Value::as_str)
        {
            return Err(conflict(res, name));
        }
        Ok(())
    }

    /// The object an update to the main resource or to `status` turns `old` into.
    fn merge_parts(res: &ResourceDef, old: &Value, mut proposed: Value, status: bool) -> Value {
        if status {
            let mut out = old.clone();
            match proposed.get("status") {
                Some(s) => out["status"] = s.clone(),
                None => {
                    if let Some(m) = out.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            out
        } else {
            if res.status {
                match old.get("status") {
                    Some(s) => proposed["status"] = s.clone(),
                    None => {
                        if let Some(m) = proposed.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
            proposed
        }
    }

    fn replace(&self, rid: usize, version: &str, key: Key, obj: Value, manager: &str, status: bool) -> Response {
        let res = &RESOURCES[rid];
        if !obj.is_object() {
            return bad_request("the body must be a JSON object");
        }
        if let Some(n) = obj.pointer("/metadata/name").and_then(Value::as_str)
            && n != key.name
        {
            return bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({})",
                key.name
            ));
        }
        let mut inner = lock(&self.inner);
        let Some(old) = inner.objects.get(&key).cloned() else {
            return not_found(res, &key.name);
        };
        if let Err(r) = Self::check_precondition(res, &key.name, &obj, &old.obj) {
            return r;
        }
        let mut new = Self::merge_parts(res, &old.obj, obj, status);
        if res.kind == "Secret" {
            fold_string_data(&mut new);
        }
        let mut managers = old.managers.clone();
        let part = if status { Part::Status } else { Part::Main };
        update_ownership(
            &mut managers,
            manager,
            &res.api_version(version),
            Some(&old.obj),
            &new,
            part,
        );
        self.finish_write(&mut inner, key, version, new, managers, Some(old))
    }

    fn merge_patch(&self, rid: usize, version: &str, key: Key, patch: Value, manager: &str, status: bool) -> Response {
        let res = &RESOURCES[rid];
        let mut inner = lock(&self.inner);
        let Some(old) = inner.objects.get(&key).cloned() else {
            return not_found(res, &key.name);
        };
        if let Err(r) = Self::check_precondition(res, &key.name, &patch, &old.obj) {
            return r;
        }
        let mut patched = old.obj.clone();
        json_merge(&mut patched, &patch);
        let mut new = Self::merge_parts(res, &old.obj, patched, status);
        if res.kind == "Secret" {
            fold_string_data(&mut new);
        }
        let mut managers = old.managers.clone();
        let part = if status { Part::Status } else { Part::Main };
        update_ownership(
            &mut managers,
            manager,
            &res.api_version(version),
            Some(&old.obj),
            &new,
            part,
        );
        self.finish_write(&mut inner, key, version, new, managers, Some(old))
    }

    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        rid: usize,
        version: &str,
        key: Key,
        mut applied: Value,
        manager: &str,
        force: bool,
        status: bool,
    ) -> Response {
        let res = &RESOURCES[rid];
        if !applied.is_object() {
            return bad_request("the applied configuration must be an object");
        }
        if applied.get("apiVersion").and_then(Value::as_str).is_none()
            || applied.get("kind").and_then(Value::as_str) != Some(res.kind)
        {
            return bad_request(format!(
                "the applied configuration must set apiVersion and kind {}",
                res.kind
            ));
        }
        match applied.pointer("/metadata/name").and_then(Value::as_str) {
            Some(n) if n == key.name => {}
            Some(n) => {
                return bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({})",
                    key.name
                ));
            }
            None => return bad_request("metadata.name is required in an applied configuration"),
        }
        if res.kind == "Secret" {
            fold_string_data(&mut applied);
        }
        let mut inner = lock(&self.inner);
        let old = inner.objects.get(&key).cloned();
        if old.is_none()
            && let Err(r) = validate_name(res, &key.name)
        {
            return r;
        }
        if let Some(o) = &old
            && let Err(r) = Self::check_precondition(res, &key.name, &applied, &o.obj)
        {
            return r;
        }
        let part = if status { Part::Status } else { Part::Main };
        let subresource = status.then_some("status");
        let applied_fields = leaf_paths(&applied, part);
        let mut managers = old.as_ref().map(|o| o.managers.clone()).unwrap_or_default();
        let mut obj = old
            .as_ref()
            .map(|o| o.obj.clone())
            .unwrap_or_else(|| json!({"metadata": {}}));

        let mut conflicts = vec![];
        for (path, val) in &applied_fields {
            let current = get_path(&obj, path);
            for m in managers.iter_mut().filter(|m| m.manager != manager) {
                if m.fields.iter().any(|f| overlaps(f, path)) && current != Some(val) {
                    if force {
                        m.fields.retain(|f| !overlaps(f, path));
                    } else {
                        conflicts.push((m.manager.clone(), format!(".{}", path.join("."))));
                    }
                }
            }
        }
        if !conflicts.is_empty() {
            let list: Vec<String> = conflicts
                .iter()
                .map(|(m, f)| format!("conflict with \"{m}\": {f}"))
                .collect();
            let causes: Vec<Value> = conflicts.iter().map(|(m, f)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{m}\""), "field": f})).collect();
            return status_error(
                409,
                "Conflict",
                format!(
                    "Apply failed with {} conflict{}: {}",
                    conflicts.len(),
                    if conflicts.len() == 1 { "" } else { "s" },
                    list.join("\n")
                ),
                Some(json!({"name": key.name, "group": res.group, "kind": res.plural, "causes": causes})),
            );
        }
        let previously: BTreeSet<FieldPath> = managers
            .iter()
            .find(|m| m.manager == manager && m.operation == "Apply" && m.subresource == subresource)
            .map(|m| m.fields.clone())
            .unwrap_or_default();
        for path in previously.iter().filter(|p| !applied_fields.contains_key(*p)) {
            let shared_with_others = managers.iter().any(|m| {
                !(m.manager == manager && m.operation == "Apply") && m.fields.iter().any(|f| overlaps(f, path))
            });
            if !shared_with_others {
                remove_path(&mut obj, path);
            }
        }
        for (path, val) in &applied_fields {
            set_path(&mut obj, path, val.clone());
        }
        managers.retain(|m| !(m.manager == manager && m.operation == "Apply" && m.subresource == subresource));
        if !applied_fields.is_empty() {
            managers.push(ManagerEntry {
                manager: manager.to_string(),
                operation: "Apply",
                subresource,
                api_version: res.api_version(version),
                time: now_rfc3339(),
                fields: applied_fields.keys().cloned().collect(),
            });
        }
        managers.retain(|m| !m.fields.is_empty());
        // Keep the manager order stable for no-op detection: same entries, same order.
        if let Some(o) = &old {
            let same = |a: &ManagerEntry, b: &ManagerEntry| {
                a.manager == b.manager && a.operation == b.operation && a.subresource == b.subresource
            };
            managers.sort_by_key(|m| o.managers.iter().position(|x| same(x, m)).unwrap_or(usize::MAX));
            for m in managers.iter_mut() {
                if let Some(prev) = o.managers.iter().find(|x| same(x, m))
                    && prev.fields == m.fields
                {
                    m.time = prev.time.clone();
                }
            }
        }
        let new = match &old {
            Some(o) => Self::merge_parts(res, &o.obj, obj, status),
            None => {
                if status {
                    return not_found(res, &key.name);
                }
                obj
            }
        };
        self.finish_write(&mut inner, key, version, new, managers, old)
    }

    fn delete(&self, rid: usize, version: &str, key: Key, opts: &Value) -> Response {
        let res = &RESOURCES[rid];
        let mut inner = lock(&self.inner);
        let Some(old) = inner.objects.get(&key).cloned() else {
            return not_found(res, &key.name);
        };
        if let Some(want) = opts.pointer("/preconditions/resourceVersion").and_then(Value::as_str)
            && Some(want) != old.obj.pointer("/metadata/resourceVersion").and_then(Value::as_str)
        {
            return conflict(res, &key.name);
        }
        if let Some(want) = opts.pointer("/preconditions/uid").and_then(Value::as_str)
            && Some(want) != old.obj.pointer("/metadata/uid").and_then(Value::as_str)
        {
            return conflict(res, &key.name);
        }
        let body_dry_run = opts
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v == "All"));
        if DRY_RUN.with(Cell::get) || body_dry_run {
            return json_response(
                StatusCode::OK,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": {"name": key.name, "group": res.group, "kind": res.plural}}),
            );
        }
        inner.objects.remove(&key);
        inner.rv += 1;
        let rv = inner.rv;
        let mut obj = old.obj.clone();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.record(
            &mut inner,
            Event {
                rid,
                ns: key.ns.clone(),
                rv,
                kind: "DELETED",
                object: obj.clone(),
            },
        );
        let uid = obj.pointer("/metadata/uid").cloned().unwrap_or(Value::Null);
        let _ = version;
        json_response(
            StatusCode::OK,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": {"name": key.name, "group": res.group, "kind": res.plural, "uid": uid}}),
        )
    }
}
