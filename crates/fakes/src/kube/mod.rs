//! A fake Kubernetes API server over loopback, driven through a real `kube::Client`.
//!
//! What it serves, faithful to the shapes the real API server sends:
//!
//! - core `v1` Secrets, ConfigMaps, Events and (cluster-scoped) Namespaces; `apps/v1`
//!   Deployments, StatefulSets, DaemonSets; `coordination.k8s.io/v1` Leases;
//!   `external-secrets.io/v1` (and `v1beta1`) ExternalSecrets, SecretStores,
//!   ClusterSecretStores and ClusterExternalSecrets, `v1alpha1` PushSecrets and
//!   ClusterPushSecrets, and
//!   `generators.external-secrets.io/v1alpha1` Passwords and UUIDs, stored as generic JSON; plus discovery (`/api`, `/apis`,
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
//!   field ownership per manager: maps are walked into, associative lists merge item by
//!   key (`metadata.ownerReferences` by uid, containers, env, volumes… by name) and sets by
//!   value, other lists are atomic; fields a manager stops applying are removed unless
//!   another manager owns them too; `metadata.managedFields` is rendered in the `FieldsV1`
//!   shape (`f:`, `k:{…}`, `v:…`). Updates (POST, PUT, patches) take ownership of the
//!   fields they change, as on a real server.
//! - JSON merge patch, strategic merge patch (lists merged by patch merge key, `$patch`,
//!   `$retainKeys`, `$deleteFromPrimitiveList`; refused with 415 for custom resources) and
//!   JSON patch.
//! - List with `labelSelector` (equality and set-based), `fieldSelector` (the labels each
//!   kind supports: `metadata.name`, `metadata.namespace`, plus e.g. a Secret's `type`;
//!   others are 400) and `limit`/`continue` (every page from the first page's
//!   resourceVersion, 410 once the history no longer reaches it); watch (`?watch=true`)
//!   streaming newline-delimited events from a `resourceVersion`, with `sendInitialEvents`
//!   and its closing `BOOKMARK`, ending after `timeoutSeconds`. Under a selector an object
//!   that starts matching is `ADDED`, one that stops matching `DELETED`, as the API
//!   server's cache watcher sends them.
//! - Namespaces: `default`, `kube-system`, `kube-public`, `kube-node-lease` exist from the
//!   start; creating in a missing namespace is 404 and in a terminating one 403; deleting
//!   one makes it `Terminating`, then deletes what is in it, then it. Namespaces carry the
//!   label `kubernetes.io/metadata.name`.
//! - Validation: Secret types' required keys, at most one controller owner reference,
//!   unknown fields (dropped with a `Warning`, or 400 under `fieldValidation=Strict`), the
//!   ESO CRDs' schemas from deploy/crds.yaml, and no unconditional PUT of a custom resource.
//! - For kubectl: protobuf request bodies of Secrets, ConfigMaps and Namespaces (what
//!   `kubectl create` sends), a minimal OpenAPI v3 (`/openapi/v3`), short names and
//!   categories in discovery, `Table` output (`kubectl get`, also in watches).
//! - A request log (method, path, query, content type, status, user agent and the client's
//!   name from the [`CLIENT_HEADER`] header, see [`FakeKube::named_client`]) with helpers
//!   that count writes, optionally appended to a file as JSON lines
//!   ([`FakeKube::log_requests_to`], `fake-kube --request-log`).
//!
//! `?dryRun=All` writes are validated and answered but not stored.
//!
//! Divergences worth knowing: no defaulting of workload fields; no admission beyond
//! namespaces, no RBAC, no finalizers or garbage collection of owned objects (deleting an
//! owner leaves its dependents); only the kinds above, with minimal OpenAPI schemas for
//! the built-in ones (so `kubectl explain` says little); protobuf only for request bodies of
//! the three kinds `kubectl create` sends.

// Handlers return the HTTP error response itself as the error: it is built once and sent.
#![allow(clippy::result_large_err)]

mod crd;
mod discovery;
mod fields;
mod patch;
mod protobuf;
mod schema;
mod selectors;
mod store;
mod table;
mod validate;
mod wire;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use serde_json::Value;
use tokio::sync::broadcast;

pub use schema::{CLIENT_HEADER, MAX_DATA_BYTES, NAMESPACE_NAME_LABEL};
pub use store::RequestRecord;
pub use wire::{is_config_key, is_dns_label, is_dns_subdomain};

use schema::{RESOURCES, find_resource};
use store::{Inner, Key, Shared, handle, lock};
use validate::with_version;

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
            log_file: Mutex::new(None),
            addr,
        });
        shared.create_initial_namespaces();
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

    /// Appends every request answered from now on to `path` as one JSON line (method,
    /// path, query, status, user agent, content type, client), so tools outside this process
    /// can count requests. The file is created if missing and appended to otherwise.
    pub fn log_requests_to(&self, path: &std::path::Path) -> std::io::Result<()> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        *lock(&self.shared.log_file) = Some(file);
        Ok(())
    }

    /// Creates these Namespaces (those that do not exist yet) directly, without a request:
    /// the fake, like a real server, refuses objects in a namespace that does not exist,
    /// and a test's setup should not show in its request counts.
    ///
    /// # Panics
    /// When a name is not a valid namespace name.
    pub fn create_namespaces(&self, names: &[&str]) {
        for name in names {
            assert!(
                self.shared.create_namespace(name, "secretsync-test-setup"),
                "`{name}` is not a valid namespace name"
            );
        }
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
