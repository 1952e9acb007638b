//! The server: routing, the object store, and every verb.

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
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

use super::discovery::{groups, openapi_gv, openapi_root, resource_list};
use super::fields::*;
use super::patch::{json_merge, json_patch, strategic_merge};
use super::schema::*;
use super::selectors::Filter;
use super::table::{table, wants_table};
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
    /// The `User-Agent` the request carried (`kubectl/v1.32.4 ...`, `kube-rs/...`).
    pub user_agent: Option<String>,
}

impl RequestRecord {
    /// The record as one JSON object: method, path, query, status, user agent, content type
    /// and client (the `--request-log` line format).
    pub fn to_json(&self) -> Value {
        json!({
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "status": self.status,
            "userAgent": self.user_agent,
            "contentType": self.content_type,
            "client": self.client,
        })
    }

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
    /// The object before this change (none for ADDED): a watch with a selector tells from
    /// it whether the object started or stopped matching.
    pub(super) old: Option<Value>,
}

impl Event {
    /// What a watcher with `filter` sees of this event, as the API server's cache watcher
    /// decides it (k8s.io/apiserver/pkg/storage/cacher/cache_watcher.go,
    /// `convertToWatchEvent`): MODIFIED if the object matched before and after, ADDED if it
    /// starts matching, DELETED (with the object as it was, at this resourceVersion) if it
    /// stops matching, nothing if it never matched.
    pub(super) fn seen_through(&self, filter: &Filter) -> Option<(&'static str, Value)> {
        let cur_passes = self.kind != "DELETED" && filter.matches(&self.ns, &self.object);
        let old_passes = self.old.as_ref().is_some_and(|o| filter.matches(&self.ns, o));
        match (cur_passes, old_passes) {
            (true, true) => Some(("MODIFIED", self.object.clone())),
            (true, false) => Some(("ADDED", self.object.clone())),
            (false, true) => {
                let mut prev = self.old.clone().unwrap_or_default();
                prev["metadata"]["resourceVersion"] = json!(self.rv.to_string());
                Some(("DELETED", prev))
            }
            (false, false) => None,
        }
    }
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
    /// Where every request is also appended as a JSON line (`--request-log`).
    pub(super) log_file: Mutex<Option<std::fs::File>>,
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
    OpenApiRoot,
    OpenApiGroupVersion(String),
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
        ["openapi", "v3"] => return Some(Route::OpenApiRoot),
        ["openapi", "v3", rest @ ..] => return Some(Route::OpenApiGroupVersion(rest.join("/"))),
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
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let record = RequestRecord {
        method: method.to_string(),
        path,
        query: query_raw,
        content_type,
        status: response.status().as_u16(),
        client,
        user_agent,
    };
    if let Some(file) = lock(&shared.log_file).as_mut() {
        use std::io::Write;
        let mut line = serde_json::to_vec(&record.to_json()).unwrap_or_default();
        line.push(b'\n');
        // One write per line, so a reader never sees half a record.
        if let Err(e) = file.write_all(&line) {
            tracing::warn!(error = %e, "fake kube: cannot append to the request log");
        }
    }
    lock(&shared.log).push(record);
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
    if content_type.is_some_and(|c| c.starts_with("application/vnd.kubernetes.protobuf")) {
        return super::protobuf::decode(body)
            .map_err(|message| status_error(415, "UnsupportedMediaType", message, None));
    }
    let yaml = content_type.is_some_and(|c| c.contains("yaml"));
    let parsed: Result<Value, String> = if yaml {
        serde_norway::from_slice(body).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    };
    // The parser's message may quote the body, which may hold secret values: say where only.
    parsed.map_err(|_| bad_request("the request body could not be decoded"))
}

/// A continue token: the list's resourceVersion and the last key sent, base64 JSON as the
/// API server makes them (k8s.io/apiserver/pkg/storage/continue.go: `{"v", "rv", "start"}`).
fn encode_continue(rv: u64, ns: &str, name: &str) -> String {
    use base64::Engine;
    let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{ns}/{name}\u{0}")});
    base64::engine::general_purpose::URL_SAFE.encode(serde_json::to_vec(&token).unwrap_or_default())
}

type ContinueFrom = (u64, Option<(String, String)>);

fn decode_continue(token: &str) -> Result<ContinueFrom, String> {
    use base64::Engine;
    let bad =
        || "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)".to_string();
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(token))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if v.get("v").and_then(Value::as_str) != Some("meta.k8s.io/v1") {
        return Err("continue key is not valid: server does not recognize this encoded key".into());
    }
    let rv = v
        .get("rv")
        .and_then(Value::as_u64)
        .filter(|rv| *rv > 0)
        .ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    let start = start.strip_suffix('\u{0}').unwrap_or(start);
    let (ns, name) = start.split_once('/').ok_or_else(bad)?;
    Ok((rv, Some((ns.to_string(), name.to_string()))))
}

/// The objects of resource `rid` as they were at resourceVersion `rv`, undoing the
/// events since; `None` when the history no longer reaches back that far.
fn snapshot_at(inner: &Inner, rid: usize, rv: u64) -> Option<BTreeMap<Key, Value>> {
    if rv > inner.rv {
        return None;
    }
    let oldest = inner.history.front().map(|e| e.rv).unwrap_or(inner.rv + 1);
    if oldest > rv + 1 {
        return None;
    }
    let mut objects: BTreeMap<Key, Value> = inner
        .objects
        .iter()
        .filter(|(k, _)| k.rid == rid)
        .map(|(k, s)| (k.clone(), s.obj.clone()))
        .collect();
    for e in inner.history.iter().rev().filter(|e| e.rv > rv && e.rid == rid) {
        let name = e.object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
        let key = Key {
            rid,
            ns: e.ns.clone(),
            name: name.to_string(),
        };
        match &e.old {
            None => {
                objects.remove(&key);
            }
            Some(old) => {
                objects.insert(key, old.clone());
            }
        }
    }
    Some(objects)
}

/// Namespaces a fresh fake has, as a new cluster does.
pub(super) const INITIAL_NAMESPACES: &[&str] = &["default", "kube-node-lease", "kube-public", "kube-system"];

/// Namespaces the API server refuses to delete (NamespaceLifecycle admission).
const IMMORTAL_NAMESPACES: &[&str] = &["default", "kube-public", "kube-system"];

/// How long the namespace controller takes to empty a `Terminating` namespace here.
pub(super) const NAMESPACE_FINALIZE_DELAY: Duration = Duration::from_millis(100);

fn namespace_key(name: &str) -> Key {
    Key {
        rid: find_resource("", "v1", "namespaces").expect("namespaces are served"),
        ns: String::new(),
        name: name.to_string(),
    }
}

/// Whether an object may be created under `key`: its namespace must exist (404 `namespaces
/// "x" not found`) and not be terminating (403), as the NamespaceLifecycle admission plugin
/// (k8s.io/apiserver/pkg/admission/plugin/namespace/lifecycle) decides.
fn namespace_accepts(inner: &Inner, res: &ResourceDef, key: &Key) -> Result<(), Response> {
    if !res.namespaced {
        return Ok(());
    }
    let Some(ns) = inner.objects.get(&namespace_key(&key.ns)) else {
        return Err(status_error(
            404,
            "NotFound",
            format!("namespaces \"{}\" not found", key.ns),
            Some(json!({"name": key.ns, "kind": "namespaces"})),
        ));
    };
    if ns.obj.pointer("/metadata/deletionTimestamp").is_some() {
        return Err(status_error(
            403,
            "Forbidden",
            format!(
                "{} \"{}\" is forbidden: unable to create new content in namespace {} because it is being terminated",
                res.qualified(),
                key.name,
                key.ns
            ),
            Some(
                json!({"name": key.name, "group": res.group, "kind": res.plural, "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {} is being terminated", key.ns), "field": "metadata.namespace"}]}),
            ),
        ));
    }
    Ok(())
}

/// Which kind of PATCH a request sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PatchKind {
    /// `application/merge-patch+json`
    Merge,
    /// `application/strategic-merge-patch+json`
    Strategic,
    /// `application/json-patch+json`
    Json,
}

fn unsupported_patch(res: &ResourceDef) -> Response {
    let accepted = if res.custom {
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    } else {
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json"
    };
    status_error(
        415,
        "UnsupportedMediaType",
        format!("the body of the request was in an unknown format - accepted media types include: {accepted}"),
        None,
    )
}

/// The `fieldValidation` a write asked for; the API server's default is `Warn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}

thread_local! {
    static FIELD_VALIDATION: Cell<FieldValidation> = const { Cell::new(FieldValidation::Warn) };
    /// `Warning` headers to send with the response being built.
    static WARNINGS: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(vec![]) };
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
        let validation = match q.get("fieldValidation").map(String::as_str) {
            Some("Strict") => FieldValidation::Strict,
            Some("Ignore") => FieldValidation::Ignore,
            _ => FieldValidation::Warn,
        };
        FIELD_VALIDATION.with(|f| f.set(validation));
        WARNINGS.with(|w| w.borrow_mut().clear());
        let mut response = self.dispatch(method, path, q, content_type, headers, body);
        DRY_RUN.with(|d| d.set(false));
        FIELD_VALIDATION.with(|f| f.set(FieldValidation::Warn));
        for warning in WARNINGS.with(|w| std::mem::take(&mut *w.borrow_mut())) {
            let text = format!("299 - {}", serde_json::to_string(&warning).unwrap_or_default());
            if let Ok(v) = axum::http::HeaderValue::from_str(&text) {
                response.headers_mut().append("warning", v);
            }
        }
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
            Route::OpenApiRoot => return json_response(StatusCode::OK, &openapi_root()),
            Route::OpenApiGroupVersion(gv) => {
                return match openapi_gv(&gv) {
                    Some(v) => json_response(StatusCode::OK, &v),
                    None => no_such_path(),
                };
            }
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
        let as_table = wants_table(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
        match (method, target) {
            (&Method::GET, Target::Collection { ns }) => {
                let filter = match Filter::from_query(res, ns, q) {
                    Ok(f) => f,
                    Err(r) => return r,
                };
                if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
                    self.watch(rid, version, filter, q, as_table)
                } else {
                    self.list(rid, version, &filter, q, as_table)
                }
            }
            (&Method::GET, Target::Item { ns, name, .. }) => {
                let key = Key {
                    rid,
                    ns: ns.unwrap_or_default(),
                    name: name.clone(),
                };
                match lock(&self.inner).objects.get(&key) {
                    Some(s) if as_table => {
                        let obj = with_version(&s.obj, res, version);
                        let rv = obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(json!(""));
                        let include = q.get("includeObject").map(String::as_str).unwrap_or("Metadata");
                        json_response(
                            StatusCode::OK,
                            &table(res, version, &[obj], json!({"resourceVersion": rv}), include),
                        )
                    }
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
                    "application/merge-patch+json" => self.patch(
                        rid,
                        version,
                        key,
                        patch,
                        PatchKind::Merge,
                        &field_manager(q, headers),
                        status,
                    ),
                    "application/json-patch+json" => self.patch(
                        rid,
                        version,
                        key,
                        patch,
                        PatchKind::Json,
                        &field_manager(q, headers),
                        status,
                    ),
                    // Custom resources have no Go types to carry patch strategies, so the
                    // API server refuses strategic merge patches for them (crd_handler.go).
                    "application/strategic-merge-patch+json" if !res.custom => self.patch(
                        rid,
                        version,
                        key,
                        patch,
                        PatchKind::Strategic,
                        &field_manager(q, headers),
                        status,
                    ),
                    _ => unsupported_patch(res),
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

    /// A list, a page at a time with `limit` and `continue`: later pages are served from
    /// the same resourceVersion as the first (rebuilt from the event history), as etcd
    /// serves them; a token older than the history is 410 Expired, as after compaction.
    fn list(
        &self,
        rid: usize,
        version: &str,
        filter: &Filter,
        q: &BTreeMap<String, String>,
        as_table: bool,
    ) -> Response {
        let res = &RESOURCES[rid];
        let limit = match q.get("limit").map(|l| l.parse::<i64>()) {
            None => None,
            Some(Ok(n)) if n > 0 => Some(n as usize),
            Some(Ok(_)) => None,
            Some(Err(_)) => return bad_request("limit must be an integer"),
        };
        let inner = lock(&self.inner);
        let (snapshot_rv, start) = match q.get("continue").filter(|c| !c.is_empty()) {
            None => (inner.rv, None),
            Some(token) => match decode_continue(token) {
                Ok(t) => t,
                Err(message) => return bad_request(message),
            },
        };
        // Only what matches is cloned: lists by name or label are frequent and the store
        // may be large.
        let after_start = |k: &Key| start.as_ref().is_none_or(|(ns, name)| (&k.ns, &k.name) > (ns, name));
        let objects: Vec<(Key, Value)> = if snapshot_rv == inner.rv {
            let lo = Key {
                rid,
                ns: String::new(),
                name: String::new(),
            };
            inner
                .objects
                .range(lo..)
                .take_while(|(k, _)| k.rid == rid)
                .filter(|(k, s)| after_start(k) && filter.matches(&k.ns, &s.obj))
                .map(|(k, s)| (k.clone(), s.obj.clone()))
                .collect()
        } else {
            match snapshot_at(&inner, rid, snapshot_rv) {
                Some(o) => o
                    .into_iter()
                    .filter(|(k, o)| after_start(k) && filter.matches(&k.ns, o))
                    .collect(),
                None => {
                    return status_error(
                        410,
                        "Expired",
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                        None,
                    );
                }
            }
        };
        let mut matching = objects.into_iter();
        let mut items = vec![];
        let mut last = None;
        for (k, o) in matching.by_ref() {
            if limit.is_some_and(|l| items.len() >= l) {
                last = Some(k);
                break;
            }
            items.push(with_version(&o, res, version));
        }
        let mut meta = json!({"resourceVersion": snapshot_rv.to_string()});
        if let Some(next) = last {
            // `next` is the first item not sent: continue from the one before it.
            let sent = items.last().map(|o| {
                (
                    o.pointer("/metadata/namespace")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    o.pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                )
            });
            let (ns, name) = sent.unwrap_or((next.ns.clone(), next.name.clone()));
            meta["continue"] = json!(encode_continue(snapshot_rv, &ns, &name));
            if filter.labels.is_empty() && filter.fields.is_empty() {
                // remainingItemCount is only known without selectors (etcd counts keys).
                meta["remainingItemCount"] = json!(1 + matching.count());
            }
        }
        if as_table {
            let include = q.get("includeObject").map(String::as_str).unwrap_or("Metadata");
            return json_response(StatusCode::OK, &table(res, version, &items, meta, include));
        }
        json_response(
            StatusCode::OK,
            &json!({
                "kind": format!("{}List", res.kind),
                "apiVersion": res.api_version(version),
                "metadata": meta,
                "items": items,
            }),
        )
    }

    fn watch(
        &self,
        rid: usize,
        version: &str,
        filter: Filter,
        q: &BTreeMap<String, String>,
        as_table: bool,
    ) -> Response {
        let res = &RESOURCES[rid];
        // With `as=Table`, each event carries a one-row Table, as kubectl get --watch asks.
        let include = q.get("includeObject").cloned().unwrap_or_else(|| "Metadata".into());
        let table_version = version.to_string();
        let render = move |obj: Value| -> Value {
            if as_table {
                let rv = obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(json!(""));
                table(
                    &RESOURCES[rid],
                    &table_version,
                    &[obj],
                    json!({"resourceVersion": rv}),
                    &include,
                )
            } else {
                obj
            }
        };
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
                        initial.push(line("ADDED", render(with_version(&s.obj, res, version))));
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
                    for e in inner.history.iter().filter(|e| e.rv > from && e.rid == rid) {
                        if let Some((kind, obj)) = e.seen_through(&filter) {
                            initial.push(line(kind, render(with_version(&obj, res, version))));
                        }
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
                            if e.rv <= start_rv || e.rid != rid {
                                continue;
                            }
                            let Some((kind, obj)) = e.seen_through(&filter) else {
                                continue;
                            };
                            if tx.send(Ok(line(kind, render(with_version(&obj, &RESOURCES[rid], &version))))).await.is_err() {
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

    /// Deleting a Namespace marks it `Terminating` (deletionTimestamp, `status.phase`) and
    /// answers 200 with it; the namespace controller then deletes everything in it and,
    /// once empty, the Namespace itself (pkg/registry/core/namespace/storage, the
    /// namespace controller). Deleting one already terminating is 409; `default`,
    /// `kube-system` and `kube-public` cannot be deleted (403).
    fn delete_namespace(
        self: &Arc<Self>,
        mut inner: MutexGuard<'_, Inner>,
        version: &str,
        key: Key,
        old: Stored,
        opts: &Value,
    ) -> Response {
        let res = &RESOURCES[key.rid];
        if IMMORTAL_NAMESPACES.contains(&key.name.as_str()) {
            return status_error(
                403,
                "Forbidden",
                format!(
                    "namespaces \"{}\" is forbidden: this namespace may not be deleted",
                    key.name
                ),
                Some(json!({"name": key.name, "kind": "namespaces"})),
            );
        }
        if let Some(want) = opts.pointer("/preconditions/resourceVersion").and_then(Value::as_str)
            && Some(want) != old.obj.pointer("/metadata/resourceVersion").and_then(Value::as_str)
        {
            return conflict(res, &key.name);
        }
        if old.obj.pointer("/metadata/deletionTimestamp").is_some() {
            return status_error(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on namespaces \"{}\": The system is ensuring all content is removed from this namespace.  Upon completion, this namespace will automatically be purged by the system.",
                    key.name
                ),
                Some(json!({"name": key.name, "kind": "namespaces"})),
            );
        }
        let mut terminating = old.obj.clone();
        terminating["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
        terminating["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        terminating["spec"] = json!({"finalizers": ["kubernetes"]});
        terminating["status"] = json!({"phase": "Terminating"});
        let body_dry_run = opts
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v == "All"));
        if DRY_RUN.with(Cell::get) || body_dry_run {
            return json_response(StatusCode::OK, &with_version(&terminating, res, version));
        }
        let obj = self.commit(
            &mut inner,
            key.clone(),
            terminating,
            old.managers.clone(),
            Some(&old.obj),
        );
        drop(inner);
        let shared = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(NAMESPACE_FINALIZE_DELAY).await;
            shared.finalize_namespace(&key.name);
        });
        json_response(StatusCode::OK, &with_version(&obj, res, version))
    }

    /// The namespace controller's work: delete every object in the namespace, then it.
    fn finalize_namespace(&self, name: &str) {
        let mut inner = lock(&self.inner);
        let doomed: Vec<Key> = inner
            .objects
            .keys()
            .filter(|k| RESOURCES[k.rid].namespaced && k.ns == name)
            .cloned()
            .collect();
        for key in doomed.into_iter().chain([namespace_key(name)]) {
            let Some(old) = inner.objects.remove(&key) else {
                continue;
            };
            inner.rv += 1;
            let rv = inner.rv;
            let mut obj = old.obj.clone();
            obj["metadata"]["resourceVersion"] = json!(rv.to_string());
            self.record(
                &mut inner,
                Event {
                    rid: key.rid,
                    ns: key.ns.clone(),
                    rv,
                    kind: "DELETED",
                    object: obj,
                    old: Some(old.obj),
                },
            );
        }
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
                old: old.cloned(),
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
        if res.kind == "Namespace" {
            if new.pointer("/status/phase").is_none() {
                new["status"] = json!({"phase": "Active"});
            }
            if new.pointer("/spec/finalizers").is_none() {
                new["spec"] = json!({"finalizers": ["kubernetes"]});
            }
        }
        // Unknown fields: dropped, with a warning by default, refused with
        // `fieldValidation=Strict` (what kubectl sends), as the API server's decoder does.
        let unknown = unknown_fields(res, version, &new);
        if !unknown.is_empty() {
            let named: Vec<String> = unknown.iter().map(|u| format!("unknown field \"{u}\"")).collect();
            match FIELD_VALIDATION.with(Cell::get) {
                FieldValidation::Strict => {
                    return bad_request(format!("strict decoding error: {}", named.join(", ")));
                }
                FieldValidation::Warn => WARNINGS.with(|w| w.borrow_mut().extend(named)),
                FieldValidation::Ignore => {}
            }
            prune(&mut new, &unknown);
        }
        let mut causes = owner_reference_causes(&new);
        if res.kind == "Secret" {
            causes.extend(secret_type_causes(&new));
        }
        if res.custom {
            causes.extend(schema_causes(res, version, &new));
        }
        if !causes.is_empty() {
            return invalid(res, &key.name, causes);
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

    /// Creates `default`, `kube-system`, `kube-public` and `kube-node-lease`, as a new
    /// cluster has them.
    pub(super) fn create_initial_namespaces(&self) {
        for name in INITIAL_NAMESPACES {
            self.create_namespace(name, "kube-apiserver");
        }
    }

    /// Creates a Namespace unless it exists; false when the name is not a valid one.
    pub(super) fn create_namespace(&self, name: &str, manager: &str) -> bool {
        let rid = find_resource("", "v1", "namespaces").expect("namespaces are served");
        if lock(&self.inner).objects.contains_key(&namespace_key(name)) {
            return true;
        }
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        self.create(rid, "v1", None, obj, manager).status().is_success()
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
        if let (Some(path_ns), Some(body_ns)) = (
            &ns,
            meta.get("namespace").and_then(Value::as_str).filter(|n| !n.is_empty()),
        ) && path_ns != body_ns
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
        if let Err(r) = namespace_accepts(&inner, res, &key) {
            return r;
        }
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
            res.kind,
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
        // Custom resources allow no unconditional update (apiextensions-apiserver's
        // strategy: AllowUnconditionalUpdate is false), so a PUT must carry one.
        if res.custom
            && obj
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            return invalid(
                res,
                &key.name,
                vec![(
                    "metadata.resourceVersion".into(),
                    "Invalid value: 0x0: must be specified for an update".into(),
                )],
            );
        }
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
            res.kind,
            Some(&old.obj),
            &new,
            part,
        );
        self.finish_write(&mut inner, key, version, new, managers, Some(old))
    }

    #[allow(clippy::too_many_arguments)]
    fn patch(
        &self,
        rid: usize,
        version: &str,
        key: Key,
        patch: Value,
        kind: PatchKind,
        manager: &str,
        status: bool,
    ) -> Response {
        let res = &RESOURCES[rid];
        let mut inner = lock(&self.inner);
        let Some(old) = inner.objects.get(&key).cloned() else {
            return not_found(res, &key.name);
        };
        if kind != PatchKind::Json
            && let Err(r) = Self::check_precondition(res, &key.name, &patch, &old.obj)
        {
            return r;
        }
        let mut patched = with_version(&old.obj, res, version);
        let result = match kind {
            PatchKind::Merge => {
                json_merge(&mut patched, &patch);
                Ok(())
            }
            PatchKind::Strategic => strategic_merge(&mut patched, &patch, res.kind),
            PatchKind::Json => json_patch(&mut patched, &patch),
        };
        if let Err(message) = result {
            // As the API server answers a patch it cannot apply (patch.go): 422 for a JSON
            // patch, 400 for a strategic one; the message names paths, not values.
            return match kind {
                PatchKind::Json => status_error(422, "Invalid", message, None),
                _ => bad_request(message),
            };
        }
        if kind == PatchKind::Json
            && let Err(r) = Self::check_precondition(res, &key.name, &patched, &old.obj)
        {
            return r;
        }
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
            res.kind,
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
            && let Err(r) = validate_name(res, &key.name).and_then(|()| namespace_accepts(&inner, res, &key))
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
        let applied_fields = leaf_paths(&applied, res.kind, part);
        let mut managers = old.as_ref().map(|o| o.managers.clone()).unwrap_or_default();
        let mut obj = old
            .as_ref()
            .map(|o| o.obj.clone())
            .unwrap_or_else(|| json!({"metadata": {}}));
        if let Err(conflicts) = apply_fields(&mut obj, &mut managers, manager, &applied_fields, force, subresource) {
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
        for m in managers
            .iter_mut()
            .filter(|m| m.manager == manager && m.operation == "Apply" && m.subresource == subresource)
        {
            m.api_version = res.api_version(version);
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

    fn delete(self: &Arc<Self>, rid: usize, version: &str, key: Key, opts: &Value) -> Response {
        let res = &RESOURCES[rid];
        let mut inner = lock(&self.inner);
        let Some(old) = inner.objects.get(&key).cloned() else {
            return not_found(res, &key.name);
        };
        if res.kind == "Namespace" {
            return self.delete_namespace(inner, version, key, old, opts);
        }
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
                old: Some(old.obj.clone()),
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
