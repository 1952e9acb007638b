//! A fake Kubernetes API server over loopback, driven through a real `kube::Client`.
//!
//! What it serves, faithful to the shapes the real API server sends:
//!
//! - core `v1` Secrets, ConfigMaps, Events and (cluster-scoped) Namespaces; `apps/v1`
//!   Deployments, StatefulSets, DaemonSets; `coordination.k8s.io/v1` Leases;
//!   `external-secrets.io/v1` (and `v1beta1`) ExternalSecrets, SecretStores,
//!   ClusterSecretStores and ClusterExternalSecrets, stored as generic JSON; plus discovery (`/api`, `/apis`,
//!   `/version`) for clients that look resources up.
//! - Namespaced paths `/api/v1/namespaces/{ns}/{plural}[/{name}[/status]]`, group paths
//!   `/apis/{group}/{version}/...`, cluster-scoped paths, and lists across namespaces.
//! - A global `resourceVersion` counter bumped on every write; `metadata.uid`,
//!   `creationTimestamp` and `generation` (bumped when anything outside metadata and status
//!   changes); a write that changes nothing is a no-op, as on a real server.
//! - `409 Conflict` for an update or patch with a stale `resourceVersion` and for a
//!   server-side apply conflict without `force`; `409 AlreadyExists` on create; `404` with
//!   reason `NotFound`; `422 Invalid` for bad names, bad Secret/ConfigMap keys, data over
//!   1 MiB and changes to an `immutable` object's data or a Secret's `type` — all in the
//!   `Status` JSON shape (`kind: Status`, `status: Failure`, `message`, `reason`, `code`).
//! - Server-side apply (`application/apply-patch+yaml`, `?fieldManager=&force=`) with
//!   field ownership per manager at leaf granularity (lists are atomic): fields a manager
//!   stops applying are removed unless another manager owns them too; `metadata.managedFields`
//!   is rendered in the `FieldsV1` shape. Updates (POST, PUT, merge patch) take ownership
//!   of the fields they change, as on a real server.
//! - JSON merge patch; strategic merge patch is treated as a merge patch (enough for the
//!   map-shaped patches `kubectl annotate` and `kubectl rollout restart` send).
//! - List with `labelSelector` (equality and set-based) and `fieldSelector` (any dotted
//!   path, `=`, `==`, `!=`); watch (`?watch=true`) streaming newline-delimited events
//!   `ADDED` / `MODIFIED` / `DELETED` from a `resourceVersion`, with `sendInitialEvents`
//!   and its closing `BOOKMARK`, ending after `timeoutSeconds`.
//! - A request log (method, path, query, content type, status, and the client's name from
//!   the [`CLIENT_HEADER`] header, see [`FakeKube::named_client`]) with helpers that count
//!   writes.
//!
//! `?dryRun=All` writes are validated and answered but not stored.
//!
//! - Namespaces carry the label `kubernetes.io/metadata.name` with their name, as the API
//!   server sets it.
//!
//! Divergences worth knowing: namespaces need not exist before objects are created in
//! them, and deleting one removes it at once (no `Terminating` phase) without deleting
//! what is in it; no defaulting of workload fields; no admission, RBAC, finalizers or garbage
//! collection (deleting an owner leaves its dependents); JSON patch is refused (415).

// Handlers return the HTTP error response itself as the error: it is built once and sent.
#![allow(clippy::result_large_err)]

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use futures::SinkExt;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

/// Largest total size of a Secret's or ConfigMap's data, as the real API server enforces.
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

/// A request header naming the client that sent it, recorded in [`RequestRecord::client`]
/// (tests with several clients, e.g. controller replicas, tell their requests apart).
pub const CLIENT_HEADER: &str = "x-fake-client";

/// The label the API server puts on every Namespace, set to its name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// History of watch events kept for watches that resume from a `resourceVersion`.
const HISTORY: usize = 10_000;

#[derive(Debug)]
struct ResourceDef {
    group: &'static str,
    versions: &'static [&'static str],
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    status: bool,
}

const RESOURCES: &[ResourceDef] = &[
    ResourceDef {
        group: "",
        versions: &["v1"],
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        status: true,
    },
    ResourceDef {
        group: "",
        versions: &["v1"],
        plural: "secrets",
        singular: "secret",
        kind: "Secret",
        namespaced: true,
        status: false,
    },
    ResourceDef {
        group: "",
        versions: &["v1"],
        plural: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        namespaced: true,
        status: false,
    },
    ResourceDef {
        group: "",
        versions: &["v1"],
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        status: false,
    },
    ResourceDef {
        group: "apps",
        versions: &["v1"],
        plural: "deployments",
        singular: "deployment",
        kind: "Deployment",
        namespaced: true,
        status: true,
    },
    ResourceDef {
        group: "apps",
        versions: &["v1"],
        plural: "statefulsets",
        singular: "statefulset",
        kind: "StatefulSet",
        namespaced: true,
        status: true,
    },
    ResourceDef {
        group: "apps",
        versions: &["v1"],
        plural: "daemonsets",
        singular: "daemonset",
        kind: "DaemonSet",
        namespaced: true,
        status: true,
    },
    ResourceDef {
        group: "coordination.k8s.io",
        versions: &["v1"],
        plural: "leases",
        singular: "lease",
        kind: "Lease",
        namespaced: true,
        status: false,
    },
    ResourceDef {
        group: "events.k8s.io",
        versions: &["v1"],
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        status: false,
    },
    ResourceDef {
        group: "external-secrets.io",
        versions: &["v1", "v1beta1"],
        plural: "externalsecrets",
        singular: "externalsecret",
        kind: "ExternalSecret",
        namespaced: true,
        status: true,
    },
    ResourceDef {
        group: "external-secrets.io",
        versions: &["v1", "v1beta1"],
        plural: "secretstores",
        singular: "secretstore",
        kind: "SecretStore",
        namespaced: true,
        status: true,
    },
    ResourceDef {
        group: "external-secrets.io",
        versions: &["v1", "v1beta1"],
        plural: "clustersecretstores",
        singular: "clustersecretstore",
        kind: "ClusterSecretStore",
        namespaced: false,
        status: true,
    },
    ResourceDef {
        group: "external-secrets.io",
        versions: &["v1", "v1beta1"],
        plural: "clusterexternalsecrets",
        singular: "clusterexternalsecret",
        kind: "ClusterExternalSecret",
        namespaced: false,
        status: true,
    },
];

impl ResourceDef {
    fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{}", self.group, version)
        }
    }
    /// `secrets` or `deployments.apps`, as the real server names resources in messages.
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

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

type FieldPath = Vec<String>;

#[derive(Debug, Clone, PartialEq)]
struct ManagerEntry {
    manager: String,
    operation: &'static str,
    subresource: Option<&'static str>,
    api_version: String,
    time: String,
    fields: BTreeSet<FieldPath>,
}

#[derive(Debug, Clone)]
struct Stored {
    obj: Value,
    managers: Vec<ManagerEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    rid: usize,
    ns: String,
    name: String,
}

#[derive(Debug, Clone)]
struct Event {
    rid: usize,
    ns: String,
    rv: u64,
    kind: &'static str,
    object: Value,
}

#[derive(Debug, Default)]
struct Inner {
    rv: u64,
    objects: BTreeMap<Key, Stored>,
    history: VecDeque<Event>,
}

#[derive(Debug)]
struct Shared {
    inner: Mutex<Inner>,
    events: broadcast::Sender<Event>,
    log: Mutex<Vec<RequestRecord>>,
    addr: SocketAddr,
}

/// A running fake API server. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeKube {
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeKube {
    /// Starts a fake on `127.0.0.1` with a free port.
    ///
    /// # Panics
    /// When no loopback port can be bound (a test cannot run without one).
    pub async fn start() -> FakeKube {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind a loopback port for the fake Kubernetes API")
    }

    /// Starts a fake on `addr` (port 0 picks a free one).
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<FakeKube> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (events, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            events,
            log: Mutex::new(vec![]),
            addr,
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "fake kube server stopped");
            }
        });
        Ok(FakeKube { shared, server })
    }

    /// The socket address served.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// A real `kube::Client` talking to this fake (default namespace `default`).
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn client(&self) -> kube::Client {
        // kube's TLS setup needs a process-wide rustls provider even for plain http.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let uri = self.url().parse().expect("the fake's URL is a valid URI");
        kube::Client::try_from(kube::Config::new(uri)).expect("build a kube client for the fake")
    }

    /// A real `kube::Client` whose requests carry [`CLIENT_HEADER`]`: name`, so the
    /// request log tells them from other clients'.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn named_client(&self, name: &str) -> kube::Client {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let uri = self.url().parse().expect("the fake's URL is a valid URI");
        let mut config = kube::Config::new(uri);
        config.headers.push((
            axum::http::HeaderName::from_static(CLIENT_HEADER),
            axum::http::HeaderValue::from_str(name).expect("a client name is a valid header value"),
        ));
        kube::Client::try_from(config).expect("build a kube client for the fake")
    }

    /// A kubeconfig whose current context points at this fake, for `KUBECONFIG`.
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake-kube\n  cluster:\n    server: {}\ncontexts:\n- name: fake-kube\n  context:\n    cluster: fake-kube\n    user: fake-kube\n    namespace: default\ncurrent-context: fake-kube\nusers:\n- name: fake-kube\n  user:\n    token: fake-token\npreferences: {{}}\n",
            self.url()
        )
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.log).clone()
    }

    /// The write requests (POST, PUT, PATCH, DELETE) answered so far.
    pub fn writes(&self) -> Vec<RequestRecord> {
        self.requests().into_iter().filter(RequestRecord::is_write).collect()
    }

    /// How many write requests were answered so far.
    pub fn write_count(&self) -> usize {
        lock(&self.shared.log).iter().filter(|r| r.is_write()).count()
    }

    /// How many requests were answered so far.
    pub fn request_count(&self) -> usize {
        lock(&self.shared.log).len()
    }

    /// Forgets the request log (objects are kept).
    pub fn clear_requests(&self) {
        lock(&self.shared.log).clear();
    }

    /// The current global `resourceVersion`.
    pub fn resource_version(&self) -> u64 {
        lock(&self.shared.inner).rv
    }

    /// Peeks at a stored object without going through HTTP (not logged). `api_version` is
    /// `v1`, `apps/v1`, `external-secrets.io/v1`…; `namespace` is `None` for cluster-scoped
    /// kinds.
    pub fn object(&self, api_version: &str, plural: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let rid = find_resource(group, version, plural)?;
        let key = Key {
            rid,
            ns: namespace.unwrap_or("").to_string(),
            name: name.to_string(),
        };
        lock(&self.shared.inner)
            .objects
            .get(&key)
            .map(|s| with_version(&s.obj, &RESOURCES[rid], version))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn find_resource(group: &str, version: &str, plural: &str) -> Option<usize> {
    RESOURCES
        .iter()
        .position(|r| r.group == group && r.plural == plural && r.versions.contains(&version))
}

// ---------------------------------------------------------------------------------------
// Responses

fn json_response(code: StatusCode, body: &Value) -> Response {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap_or_default()))
        .expect("a valid response")
}

fn status_error(code: u16, reason: &str, message: impl Into<String>, details: Option<Value>) -> Response {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message.into(),
        "reason": reason,
        "code": code,
    });
    if let Some(d) = details {
        body["details"] = d;
    }
    json_response(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &body,
    )
}

fn not_found(res: &ResourceDef, name: &str) -> Response {
    status_error(
        404,
        "NotFound",
        format!("{} \"{}\" not found", res.qualified(), name),
        Some(json!({"name": name, "group": res.group, "kind": res.plural})),
    )
}

fn no_such_path() -> Response {
    status_error(
        404,
        "NotFound",
        "the server could not find the requested resource",
        Some(json!({})),
    )
}

fn bad_request(message: impl Into<String>) -> Response {
    status_error(400, "BadRequest", message, None)
}

fn conflict(res: &ResourceDef, name: &str) -> Response {
    status_error(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
            res.qualified(),
            name
        ),
        Some(json!({"name": name, "group": res.group, "kind": res.plural})),
    )
}

fn invalid(res: &ResourceDef, name: &str, causes: Vec<(String, String)>) -> Response {
    let summary: Vec<String> = causes.iter().map(|(f, m)| format!("{f}: {m}")).collect();
    let message = if summary.len() == 1 {
        format!("{} \"{}\" is invalid: {}", res.kind, name, summary[0])
    } else {
        format!("{} \"{}\" is invalid: [{}]", res.kind, name, summary.join(", "))
    };
    let causes: Vec<Value> = causes
        .into_iter()
        .map(|(f, m)| json!({"reason": "FieldValueInvalid", "message": m, "field": f}))
        .collect();
    status_error(
        422,
        "Invalid",
        message,
        Some(json!({"name": name, "group": res.group, "kind": res.kind, "causes": causes})),
    )
}

// ---------------------------------------------------------------------------------------
// Small helpers: time, uid, query strings, names

fn now_rfc3339() -> String {
    let secs = k8s_openapi::jiff::Timestamp::now().as_second();
    k8s_openapi::jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn new_uid() -> String {
    let h = format!("{:032x}", rand::random::<u128>());
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: Option<&str>) -> BTreeMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// A lowercase RFC 1123 subdomain: what most object names must be.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A lowercase RFC 1123 label: what namespace names must be.
pub fn is_dns_label(s: &str) -> bool {
    s.len() <= 63 && !s.contains('.') && is_dns_subdomain(s)
}

/// A valid Secret or ConfigMap key: `[-._a-zA-Z0-9]+`, at most 253 characters, not `.` or `..`.
pub fn is_config_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

// ---------------------------------------------------------------------------------------
// Field paths

#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Main,
    Status,
}

/// Leaf fields of an object, the unit of ownership: maps are walked into, lists and
/// scalars (and empty maps) are leaves. `metadata` contributes labels, annotations, owner
/// references and finalizers only.
fn leaf_paths(obj: &Value, part: Part) -> BTreeMap<FieldPath, Value> {
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

fn walk(path: FieldPath, v: &Value, out: &mut BTreeMap<FieldPath, Value>) {
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

fn overlaps(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

fn get_path<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |v, seg| v.get(seg))
}

fn set_path(obj: &mut Value, path: &[String], val: Value) {
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
fn remove_path(obj: &mut Value, path: &[String]) {
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

fn fields_tree(fields: &BTreeSet<FieldPath>) -> Value {
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

fn render_managed_fields(managers: &[ManagerEntry]) -> Value {
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
fn update_ownership(
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

// ---------------------------------------------------------------------------------------
// Selectors

#[derive(Debug)]
enum LabelReq {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

fn split_top_level(s: &str) -> Vec<String> {
    let mut out = vec![];
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c)
            }
            ')' => {
                depth -= 1;
                cur.push(c)
            }
            ',' if depth == 0 => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

fn parse_label_selector(s: &str) -> Result<Vec<LabelReq>, String> {
    let mut out = vec![];
    for term in split_top_level(s) {
        let set_values = |rest: &str| -> Result<Vec<String>, String> {
            let rest = rest.trim();
            let inner = rest
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| format!("unable to parse requirement: `{term}`"))?;
            Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
        };
        if let Some(k) = term.strip_prefix('!') {
            out.push(LabelReq::NotExists(k.trim().to_string()));
        } else if let Some((k, v)) = term.split_once("!=") {
            out.push(LabelReq::Ne(k.trim().into(), v.trim().into()));
        } else if let Some((k, v)) = term.split_once("==") {
            out.push(LabelReq::Eq(k.trim().into(), v.trim().into()));
        } else if let Some((k, v)) = term.split_once('=') {
            out.push(LabelReq::Eq(k.trim().into(), v.trim().into()));
        } else if let Some((k, rest)) = term.split_once(" notin ") {
            out.push(LabelReq::NotIn(k.trim().into(), set_values(rest)?));
        } else if let Some((k, rest)) = term.split_once(" in ") {
            out.push(LabelReq::In(k.trim().into(), set_values(rest)?));
        } else if term.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)) {
            out.push(LabelReq::Exists(term.clone()));
        } else {
            return Err(format!("unable to parse requirement: `{term}`"));
        }
    }
    Ok(out)
}

fn labels_match(obj: &Value, reqs: &[LabelReq]) -> bool {
    let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    reqs.iter().all(|r| match r {
        LabelReq::Eq(k, v) => get(k) == Some(v.as_str()),
        LabelReq::Ne(k, v) => get(k) != Some(v.as_str()),
        LabelReq::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
        LabelReq::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
        LabelReq::Exists(k) => get(k).is_some(),
        LabelReq::NotExists(k) => get(k).is_none(),
    })
}

fn parse_field_selector(s: &str) -> Result<Vec<(Vec<String>, bool, String)>, String> {
    split_top_level(s)
        .into_iter()
        .map(|term| {
            let (k, v, eq) = if let Some((k, v)) = term.split_once("!=") {
                (k, v, false)
            } else if let Some((k, v)) = term.split_once("==") {
                (k, v, true)
            } else if let Some((k, v)) = term.split_once('=') {
                (k, v, true)
            } else {
                return Err(format!("invalid field selector: `{term}`"));
            };
            Ok((
                k.trim().split('.').map(str::to_string).collect(),
                eq,
                v.trim().to_string(),
            ))
        })
        .collect()
}

fn fields_match(obj: &Value, reqs: &[(Vec<String>, bool, String)]) -> bool {
    reqs.iter().all(|(path, eq, want)| {
        let got = get_path(obj, path).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        (got.as_deref().unwrap_or("") == want.as_str()) == *eq
    })
}

struct Filter {
    ns: Option<String>,
    labels: Vec<LabelReq>,
    fields: Vec<(Vec<String>, bool, String)>,
}

impl Filter {
    fn from_query(ns: Option<String>, q: &BTreeMap<String, String>) -> Result<Filter, Response> {
        let labels = match q.get("labelSelector") {
            Some(s) => parse_label_selector(s).map_err(bad_request)?,
            None => vec![],
        };
        let fields = match q.get("fieldSelector") {
            Some(s) => parse_field_selector(s).map_err(bad_request)?,
            None => vec![],
        };
        Ok(Filter { ns, labels, fields })
    }
    fn matches(&self, ns: &str, obj: &Value) -> bool {
        self.ns.as_deref().is_none_or(|n| n == ns) && labels_match(obj, &self.labels) && fields_match(obj, &self.fields)
    }
}

// ---------------------------------------------------------------------------------------
// Kind-specific rules

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Moves a Secret's `stringData` into `data` (base64), as the API server does on write.
fn fold_string_data(obj: &mut Value) {
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
fn validate_data(res: &ResourceDef, name: &str, new: &Value, old: Option<&Value>) -> Result<(), Response> {
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

fn validate_name(res: &ResourceDef, name: &str) -> Result<(), Response> {
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
fn comparable(obj: &Value) -> Value {
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

fn spec_part(obj: &Value) -> Value {
    let mut o = comparable(obj);
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    o
}

fn with_version(obj: &Value, res: &ResourceDef, version: &str) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.insert("apiVersion".into(), json!(res.api_version(version)));
        m.insert("kind".into(), json!(res.kind));
    }
    o
}

// ---------------------------------------------------------------------------------------
// Routing

#[derive(Debug)]
enum Target {
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
enum Route {
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

fn route(path: &str) -> Option<Route> {
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

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
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

fn field_manager(q: &BTreeMap<String, String>, headers: &HeaderMap) -> String {
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

fn parse_body(body: &[u8], content_type: Option<&str>) -> Result<Value, Response> {
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

/// RFC 7386 JSON merge patch.
fn json_merge(target: &mut Value, patch: &Value) {
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

fn groups() -> Value {
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

fn resource_list(group: &str, version: &str) -> Option<Value> {
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
            "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse_and_match() {
        let obj = json!({"metadata": {"labels": {"app": "api", "tier": "web"}}});
        let m = |s: &str| labels_match(&obj, &parse_label_selector(s).unwrap());
        assert!(m("app=api"));
        assert!(m("app==api,tier!=db"));
        assert!(!m("app=worker"));
        assert!(m("tier in (web, db)"));
        assert!(!m("tier notin (web)"));
        assert!(m("app"));
        assert!(!m("!app"));
        assert!(m("!missing"));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%3Db%2Cc%21%3Dd"), "a=b,c!=d");
        assert_eq!(percent_decode("x+y%"), "x y%");
    }

    #[test]
    fn names_and_keys() {
        assert!(is_dns_subdomain("backend-secrets.prod"));
        assert!(!is_dns_subdomain("Backend"));
        assert!(!is_dns_subdomain("-a"));
        assert!(is_config_key("DB_PASSWORD.v1-x"));
        assert!(!is_config_key("bad key"));
        assert!(!is_config_key(".."));
    }
}
