//! [`KubeSink`]: Secrets and ConfigMaps written by server-side apply.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Resource;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use secretsync_core::sink::{MANAGED_BY_LABEL, MANAGED_BY_LABEL_VALUE};
use secretsync_core::{
    ApplyOutcome, Compared, CreationPolicy, DesiredTarget, Error, Result, SecretMap, SecretSink, SecretValue,
    SinkCapabilities, TargetKind, TargetRef, TargetState,
};
use serde_json::{Map, Value, json};

use crate::FIELD_MANAGER;
use crate::cache::{Cached, TargetCache};
use crate::error::{from_kube, is_not_found};
use crate::external_secrets::KubeExternalSecrets;
use crate::validate::{check_desired, check_target};

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Writes [`TargetKind::Secret`] and [`TargetKind::ConfigMap`] targets to a cluster.
///
/// Every write is a server-side apply with `force`: the applied configuration holds
/// exactly our keys, labels and annotations, so what we applied before and no longer
/// desire is removed by the API server, and fields other managers own are left alone.
/// `apply` reads the target first and sends nothing when it already holds the desired
/// state; right after `compare` found the target different (the engine's order), it uses
/// what `compare` read instead of reading again.
///
/// # Requests
///
/// Targets we own or orphan carry the label `app.kubernetes.io/managed-by=secretsync`.
/// The sink answers `compare` from a [`TargetCache`] of those targets where it covers
/// the target's namespace, and asks the API server otherwise:
///
/// - **`sync` (no watch):** [`SecretSink::begin_cycle`] lists each namespace with two or
///   more of the cycle's targets once with that label selector, a page of [`LIST_PAGE`] at a time
///   ([`KubeSink::with_list_page`]);
///   the cycle's `compare`s answer from the lists, which are dropped at `end_cycle`.
/// - **operator:** [`KubeSink::with_watched_cache`] shares the cache the operator's watch
///   keeps; `begin_cycle` lists nothing. Until the watch has listed once, targets are read.
///
/// A labelled target in the cache is compared as it is there: an unchanged target costs
/// no request. An Owner or Orphan target absent from a covering cache is missing or not
/// labelled by us; either way it must be written, so `apply` sends the apply alone (a
/// created target costs that one request; the API server's `201`/`200` tells Created from
/// Updated). Merge targets, which we never label, are read. Writes carry the
/// `resourceVersion` the decision was made on; a `409 Conflict` reads the target once and
/// decides again, once.
///
/// # Owner references
///
/// An Owner target is owned (ownerReferences, so deleting the ExternalSecret deletes it)
/// by its ExternalSecret when that ExternalSecret is in the cluster: the operator passes
/// its uid; for manifests read from files (`sync`), the first created target of a cycle in
/// a namespace lists that namespace's ExternalSecrets once, and the cycle's other created
/// targets there use that list. The list is not kept across cycles: an owner reference
/// naming a uid that no longer exists (an ExternalSecret deleted and re-applied) makes the
/// garbage collector delete the target. Where the cluster does not serve ExternalSecrets
/// (no ESO CRDs) or forbids reading them, the first lookup learns it and the sink stops
/// asking: from then on a created target costs its apply alone, with no owner reference.
#[derive(Clone)]
pub struct KubeSink {
    client: kube::Client,
    field_manager: String,
    /// Targets `compare` just read and found different, for the `apply` that follows.
    compared: Arc<Mutex<HashMap<TargetRef, JustRead>>>,
    /// Labelled targets seen by a watch (operator) or this cycle's lists (`sync`).
    cache: Arc<TargetCache>,
    /// The cache is kept by the caller's watch: `begin_cycle` lists nothing.
    watched: bool,
    /// ExternalSecret uids by namespace and name, listed at most once per namespace per
    /// cycle for the owner references of created targets (`None` outside a cycle: each
    /// lookup is a read).
    owners: Arc<tokio::sync::Mutex<Option<OwnersByNamespace>>>,
    /// The cluster does not serve ExternalSecrets (no ESO CRDs: `404` on their list) or
    /// does not let us read them (`403`): no target can have one as its owner, so owner
    /// lookups stop for the sink's lifetime and a created target costs its apply alone.
    no_owners: Arc<std::sync::atomic::AtomicBool>,
    /// Page size of the lists sent at the start of a cycle.
    list_page: u32,
}

/// ExternalSecret uids (`None`: it has none) by name, by namespace.
type OwnersByNamespace = HashMap<String, HashMap<String, Option<String>>>;

/// Page size of the lists [`KubeSink`] sends at the start of a cycle.
pub const LIST_PAGE: u32 = 500;

/// What `compare` found of a target, for the `apply` that follows.
#[derive(Clone)]
enum Prior {
    /// Read from the API server or the cache (`None`: missing).
    Read(Option<Arc<DynamicObject>>),
    /// Absent from a covering cache of labelled targets: missing or not labelled by us.
    NotLabelled,
}

/// What `compare` found, and when.
type JustRead = (Instant, Prior);

/// How long what `compare` read stands in for a read by `apply`. The engine applies right
/// after comparing; older reads are not trusted.
const COMPARED_FOR: Duration = Duration::from_secs(1);

impl fmt::Debug for KubeSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeSink")
            .field("field_manager", &self.field_manager)
            .finish_non_exhaustive()
    }
}

/// What a target holds, plus what our field manager owns in it.
struct Current {
    state: TargetState,
    owned: Owned,
    owner_uids: Vec<String>,
    resource_version: Option<String>,
}

#[derive(Default)]
struct Owned {
    data: BTreeSet<String>,
    labels: BTreeSet<String>,
    annotations: BTreeSet<String>,
}

fn api_resource(kind: TargetKind) -> ApiResource {
    match kind {
        TargetKind::Secret => ApiResource::erase::<Secret>(&()),
        TargetKind::ConfigMap => ApiResource::erase::<ConfigMap>(&()),
    }
}

impl KubeSink {
    /// A sink using `client`.
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            field_manager: FIELD_MANAGER.to_string(),
            compared: Arc::default(),
            cache: Arc::default(),
            watched: false,
            owners: Arc::default(),
            no_owners: Arc::default(),
            list_page: LIST_PAGE,
        }
    }

    /// Lists a page of `n` targets at a time (default [`LIST_PAGE`]).
    pub fn with_list_page(mut self, n: u32) -> Self {
        self.list_page = n.max(1);
        self
    }

    /// Answers `compare` from `cache`, which the caller keeps up to date from a watch of
    /// the labelled Secrets and ConfigMaps (and marks complete once listed); the sink adds
    /// what it writes. `begin_cycle` then lists nothing.
    pub fn with_watched_cache(mut self, cache: Arc<TargetCache>) -> Self {
        self.cache = cache;
        self.watched = true;
        self
    }

    /// The cache of labelled targets this sink answers from.
    pub fn cache(&self) -> &Arc<TargetCache> {
        &self.cache
    }

    /// A sink with a client from `KUBECONFIG` / `~/.kube/config`, else in-cluster.
    pub async fn infer() -> Result<Self> {
        Ok(Self::new(crate::infer_client().await?))
    }

    /// A sink with a client from a kube `Config`.
    pub fn from_config(config: kube::Config) -> Result<Self> {
        crate::install_crypto_provider();
        let client = kube::Client::try_from(config).map_err(|e| from_kube(e, "building the Kubernetes client"))?;
        Ok(Self::new(client))
    }

    /// Uses another field manager name for Owner and Orphan targets (and as the prefix of
    /// Merge targets' managers).
    pub fn with_field_manager(mut self, name: impl Into<String>) -> Self {
        self.field_manager = name.into();
        self
    }

    /// The client.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The field manager that writes `desired`.
    pub fn field_manager_for(&self, desired: &DesiredTarget) -> String {
        if desired.creation_policy != CreationPolicy::Merge {
            return self.field_manager.clone();
        }
        let suffix = desired.owner.as_ref().map(|o| o.name.as_str()).unwrap_or("merge");
        let mut m = format!("{}:{}", self.field_manager, suffix);
        m.truncate(128);
        m
    }

    fn api(&self, t: &TargetRef) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &t.namespace, &api_resource(t.kind))
    }

    async fn get(&self, t: &TargetRef) -> Result<Option<DynamicObject>> {
        self.api(t)
            .get_opt(&t.name)
            .await
            .map_err(|e| from_kube(e, &format!("reading {t}")))
    }

    /// What is known of `d`'s target before deciding: the cache where it covers the
    /// target, else a read.
    async fn prior(&self, d: &DesiredTarget) -> Result<Prior> {
        let t = &d.target;
        Ok(match self.cache.get(t) {
            Cached::Labelled(obj) => Prior::Read(Some(obj)),
            Cached::NotLabelled if Self::labelled(d) => Prior::NotLabelled,
            _ => Prior::Read(self.get(t).await?.map(Arc::new)),
        })
    }

    /// Whether `d` is an Owner or Orphan target whose applied labels carry our managed-by
    /// label: absent from a covering cache, it is missing or not ours yet, and must be
    /// written either way.
    fn labelled(d: &DesiredTarget) -> bool {
        matches!(d.creation_policy, CreationPolicy::Owner | CreationPolicy::Orphan)
            && Self::labels_for(d).get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_LABEL_VALUE)
    }

    /// What `compare` found of `t` less than [`COMPARED_FOR`] ago, taken (used once).
    fn just_compared(&self, t: &TargetRef) -> Option<Prior> {
        let (at, prior) = self.compared.lock().expect("lock").remove(t)?;
        (at.elapsed() < COMPARED_FOR).then_some(prior)
    }

    fn remember_compared(&self, t: &TargetRef, obj: Prior) {
        let mut compared = self.compared.lock().expect("lock");
        // Reads never followed by an apply (dry runs) must not pile up or keep a target's
        // data in memory longer than needed. The map holds the targets in flight (a few
        // dozen at most), so the sweep is cheap.
        compared.retain(|_, (at, _)| at.elapsed() < COMPARED_FOR);
        compared.insert(t.clone(), (Instant::now(), obj));
    }

    /// The owner reference of an Owner target: the ExternalSecret's uid from the desired
    /// state or, failing that, from the cluster. `None` when it is not in the cluster.
    async fn owner_reference(&self, d: &DesiredTarget) -> Option<Value> {
        if d.creation_policy != CreationPolicy::Owner {
            return None;
        }
        let owner = d.owner.as_ref()?;
        let uid = match &owner.uid {
            Some(uid) => uid.clone(),
            None if self.no_owners.load(std::sync::atomic::Ordering::Relaxed) => return None,
            None if self.owners.lock().await.is_some() => {
                let version = owner.api_version.rsplit('/').next().unwrap_or("v1");
                self.cycle_owner_uid(version, &d.target.namespace, &owner.name).await?
            }
            None => {
                let version = owner.api_version.rsplit('/').next().unwrap_or("v1");
                match KubeExternalSecrets::new(self.client.clone())
                    .with_version(version)
                    .get(&d.target.namespace, &owner.name)
                    .await
                {
                    Ok(Some(es)) => es.uid?,
                    Ok(None) => return None,
                    Err(e) if Self::owners_unreadable(&e) => {
                        self.no_owners.store(true, std::sync::atomic::Ordering::Relaxed);
                        tracing::debug!(error = %e, "ExternalSecrets are not readable in this cluster; targets get no owner reference");
                        return None;
                    }
                    Err(e) => {
                        tracing::warn!(target = %d.target, owner = %owner.name, error = %e, "cannot look up the owning ExternalSecret; labelling the target instead");
                        return None;
                    }
                }
            }
        };
        Some(json!({
            "apiVersion": owner.api_version,
            "kind": owner.kind,
            "name": owner.name,
            "uid": uid,
            "controller": true,
            "blockOwnerDeletion": true,
        }))
    }

    /// The uid of ExternalSecret `namespace/name` from this cycle's list of the namespace
    /// (listed on first use; a namespace that cannot be listed has none).
    async fn cycle_owner_uid(&self, version: &str, namespace: &str, name: &str) -> Option<String> {
        let mut owners = self.owners.lock().await;
        let by_ns = owners.as_mut()?;
        if !by_ns.contains_key(namespace) {
            let listed = match KubeExternalSecrets::new(self.client.clone())
                .with_version(version)
                .list(Some(namespace))
                .await
            {
                Ok(list) => list.into_iter().map(|es| (es.name, es.uid)).collect(),
                Err(e) if Self::owners_unreadable(&e) => {
                    self.no_owners.store(true, std::sync::atomic::Ordering::Relaxed);
                    tracing::debug!(namespace, error = %e, "ExternalSecrets are not readable in this cluster; targets get no owner reference");
                    HashMap::new()
                }
                Err(e) => {
                    tracing::debug!(namespace, error = %e, "cannot list ExternalSecrets; targets get no owner reference");
                    HashMap::new()
                }
            };
            by_ns.insert(namespace.to_string(), listed);
        }
        by_ns.get(namespace)?.get(name).cloned().flatten()
    }

    /// Whether an error listing or reading ExternalSecrets says none can ever be read: the
    /// resource is not served (no ESO CRDs; a `get` of a missing one is `Ok(None)`, so a
    /// not-found error is about the resource type) or reading it is forbidden.
    fn owners_unreadable(e: &Error) -> bool {
        matches!(e, Error::NotFound { .. } | Error::PermissionDenied { .. })
    }

    /// Every labelled target of `kind` in `namespace`, a page at a time.
    async fn list_labelled(&self, kind: TargetKind, namespace: &str) -> Result<Vec<DynamicObject>> {
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, &api_resource(kind));
        let selector = format!("{MANAGED_BY_LABEL}={MANAGED_BY_LABEL_VALUE}");
        let mut out = vec![];
        let mut token: Option<String> = None;
        loop {
            let mut params = ListParams::default().labels(&selector).limit(self.list_page);
            if let Some(t) = &token {
                params = params.continue_token(t);
            }
            let page = api
                .list(&params)
                .await
                .map_err(|e| from_kube(e, &format!("listing {kind}s in namespace {namespace}")))?;
            out.extend(page.items);
            match page.metadata.continue_ {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
    }

    /// Sends a server-side apply; returns the object written and whether the API server
    /// created it (`201`) rather than updated it.
    async fn send_apply(
        &self,
        t: &TargetRef,
        params: &PatchParams,
        body: &Value,
    ) -> std::result::Result<(bool, DynamicObject), kube::Error> {
        let ar = api_resource(t.kind);
        let url = DynamicObject::url_path(&ar, Some(&t.namespace));
        let req = kube::core::Request::new(url)
            .patch(&t.name, params, &Patch::Apply(body))
            .map_err(kube::Error::BuildRequest)?;
        let res = self.client.send(req.map(kube::client::Body::from)).await?;
        let code = res.status().as_u16();
        let bytes = res.into_body().collect_bytes().await?;
        if code >= 400 {
            let status = serde_json::from_slice::<kube::core::Status>(&bytes).unwrap_or_else(|_| {
                kube::core::Status::failure("the API server's answer is not a Status", "Unknown").with_code(code)
            });
            return Err(kube::Error::Api(status.boxed()));
        }
        let obj: DynamicObject = serde_json::from_slice(&bytes).map_err(kube::Error::SerdeError)?;
        Ok((code == 201, obj))
    }

    fn labels_for(d: &DesiredTarget) -> BTreeMap<String, String> {
        let mut labels = d.labels.clone();
        if matches!(d.creation_policy, CreationPolicy::Owner | CreationPolicy::Orphan) {
            labels
                .entry(MANAGED_BY_LABEL.to_string())
                .or_insert_with(|| MANAGED_BY_LABEL_VALUE.to_string());
        }
        labels
    }

    /// The applied configuration: exactly the fields we own.
    fn applied(d: &DesiredTarget, labels: &BTreeMap<String, String>, owner_ref: Option<&Value>) -> Value {
        let t = &d.target;
        let mut meta = json!({"name": t.name, "namespace": t.namespace});
        if !labels.is_empty() {
            meta["labels"] = json!(labels);
        }
        if !d.annotations.is_empty() {
            meta["annotations"] = json!(d.annotations);
        }
        if let Some(r) = owner_ref {
            meta["ownerReferences"] = json!([r]);
        }
        let merge = d.creation_policy == CreationPolicy::Merge;
        let mut obj = json!({"apiVersion": "v1", "kind": t.kind.to_string(), "metadata": meta});
        match t.kind {
            TargetKind::Secret => {
                if !d.data.is_empty() {
                    let data: Map<String, Value> = d
                        .data
                        .iter()
                        .map(|(k, v)| (k.clone(), Value::String(b64().encode(v.expose()))))
                        .collect();
                    obj["data"] = Value::Object(data);
                }
                if !merge {
                    obj["type"] = json!(d.secret_type.as_deref().unwrap_or("Opaque"));
                }
            }
            TargetKind::ConfigMap => {
                let mut data = Map::new();
                let mut binary = Map::new();
                for (k, v) in d.data.iter() {
                    match v.expose_str() {
                        Some(s) => data.insert(k.clone(), Value::String(s.to_string())),
                        None => binary.insert(k.clone(), Value::String(b64().encode(v.expose()))),
                    };
                }
                if !data.is_empty() {
                    obj["data"] = Value::Object(data);
                }
                if !binary.is_empty() {
                    obj["binaryData"] = Value::Object(binary);
                }
            }
        }
        if d.immutable && !merge {
            obj["immutable"] = json!(true);
        }
        obj
    }
}

/// Why an apply attempt failed.
enum ApplyError {
    /// Worth one more attempt on a fresh read (409 on a stale `resourceVersion`, 422 on a
    /// target that is not what the decision assumed).
    Retry(kube::Error),
    /// Final.
    Done(Error),
}

impl From<Error> for ApplyError {
    fn from(e: Error) -> Self {
        ApplyError::Done(e)
    }
}

impl KubeSink {
    /// One apply decided on `prior`.
    async fn apply_on(&self, d: &DesiredTarget, prior: &Prior) -> std::result::Result<ApplyOutcome, ApplyError> {
        let t = &d.target;
        let manager = self.field_manager_for(d);
        let (current, guessed) = match prior {
            Prior::Read(obj) => (obj.as_ref().map(|o| decode(t, o, &manager)).transpose()?, false),
            Prior::NotLabelled => (None, true),
        };
        let merge = d.creation_policy == CreationPolicy::Merge;
        if merge && current.is_none() {
            return Err(Error::not_found(format!("{t} (creationPolicy Merge only updates an existing target)")).into());
        }
        if let Some(cur) = &current {
            let desired_type = d.secret_type.as_deref().unwrap_or("Opaque");
            if !merge && t.kind == TargetKind::Secret && cur.state.secret_type.as_deref() != Some(desired_type) {
                return Err(Error::Conflict {
                    what: format!(
                        "{t} has type `{}`, the template wants `{desired_type}`: a Secret's type cannot change; delete the Secret to recreate it",
                        cur.state.secret_type.as_deref().unwrap_or("Opaque")
                    ),
                }
                .into());
            }
            if cur.state.immutable {
                let data_same = if merge {
                    d.data.iter().all(|(k, v)| cur.state.data.get(k) == Some(v))
                        && cur.owned.data.iter().all(|k| d.data.contains_key(k))
                } else {
                    cur.state.data == d.data
                };
                if !data_same {
                    return Err(Error::Conflict {
                        what: format!("{t} is immutable; delete it to change its data"),
                    }
                    .into());
                }
            }
        }
        let labels = Self::labels_for(d);
        let owner_ref = self.owner_reference(d).await;
        if let Some(cur) = &current
            && is_noop(d, cur, &labels, owner_ref.as_ref())
        {
            return Ok(ApplyOutcome::Unchanged);
        }
        let mut body = Self::applied(d, &labels, owner_ref.as_ref());
        // The decision holds for the version it was made on only.
        if let Some(rv) = current.as_ref().and_then(|c| c.resource_version.as_ref()) {
            body["metadata"]["resourceVersion"] = json!(rv);
        }
        let params = PatchParams::apply(&manager).force();
        let (created, written) = match self.send_apply(t, &params, &body).await {
            Ok(w) => w,
            // 409: the version decided on is stale. 422: the target is not what was
            // decided on (guessed missing but exists with another type or immutable, or
            // gone since it was cached); a fresh read decides again, with our own checks
            // and their clearer errors. A write that is invalid either way fails twice.
            Err(kube::Error::Api(s)) if s.code == 409 || (s.code == 422 && (guessed || current.is_some())) => {
                return Err(ApplyError::Retry(kube::Error::Api(s)));
            }
            Err(e) => return Err(from_kube(e, &format!("applying {t}")).into()),
        };
        tracing::debug!(target = %t, keys = d.data.len(), manager = %manager, created, "applied");

        // An Owner or Orphan target holds our data exactly: keys someone else added (and so
        // owns) are not removed by our apply, so remove them here.
        let mut written = written;
        if !merge {
            let after = decode(t, &written, &manager)?;
            let extra: Vec<&String> = after.state.data.keys().filter(|k| !d.data.contains_key(k)).collect();
            if !extra.is_empty() {
                let mut nulls = Map::new();
                for k in &extra {
                    nulls.insert((*k).clone(), Value::Null);
                }
                let mut patch = json!({"metadata": {"resourceVersion": after.resource_version}});
                match t.kind {
                    TargetKind::Secret => patch["data"] = Value::Object(nulls),
                    TargetKind::ConfigMap => {
                        patch["data"] = Value::Object(nulls.clone());
                        patch["binaryData"] = Value::Object(nulls);
                    }
                }
                let params = PatchParams {
                    field_manager: Some(manager.clone()),
                    ..PatchParams::default()
                };
                written = self
                    .api(t)
                    .patch(&t.name, &params, &Patch::Merge(&patch))
                    .await
                    .map_err(|e| from_kube(e, &format!("removing keys others added to {t}")))?;
                tracing::debug!(target = %t, removed = extra.len(), "removed keys written by other managers");
            }
        }
        // What we wrote is the freshest view of the target until the watch says otherwise.
        // (A list-filled cache lives for one cycle, which writes each target once.)
        if self.watched && carries_label(&written) {
            self.cache.insert(t.kind, written);
        }
        Ok(if current.is_some() || (guessed && !created) {
            ApplyOutcome::Updated
        } else {
            ApplyOutcome::Created
        })
    }
}

/// Whether `obj` carries our managed-by label (what the watch of targets selects).
fn carries_label(obj: &DynamicObject) -> bool {
    obj.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .map(String::as_str)
        == Some(MANAGED_BY_LABEL_VALUE)
}

/// Reads a Secret's or ConfigMap's state and what `manager` applied in it.
fn decode(t: &TargetRef, obj: &DynamicObject, manager: &str) -> Result<Current> {
    let mut data = SecretMap::new();
    let decode_b64 = |field: &str, k: &str, s: &str| {
        b64().decode(s).map_err(|_| {
            Error::provider(
                "kubernetes",
                format!("{t}: {field} key `{k}` is not valid base64"),
                false,
            )
        })
    };
    let entries = |field: &str| {
        obj.data
            .get(field)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    match t.kind {
        TargetKind::Secret => {
            for (k, v) in entries("data") {
                let bytes = decode_b64("data", &k, v.as_str().unwrap_or(""))?;
                data.insert(k, SecretValue::new(bytes));
            }
        }
        TargetKind::ConfigMap => {
            for (k, v) in entries("data") {
                data.insert(k, SecretValue::from(v.as_str().unwrap_or("")));
            }
            for (k, v) in entries("binaryData") {
                let bytes = decode_b64("binaryData", &k, v.as_str().unwrap_or(""))?;
                data.insert(k, SecretValue::new(bytes));
            }
        }
    }
    let meta = &obj.metadata;
    let state = TargetState {
        data,
        secret_type: match t.kind {
            TargetKind::Secret => Some(
                obj.data
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("Opaque")
                    .to_string(),
            ),
            TargetKind::ConfigMap => None,
        },
        labels: meta.labels.clone().unwrap_or_default(),
        annotations: meta.annotations.clone().unwrap_or_default(),
        immutable: obj.data.get("immutable").and_then(Value::as_bool).unwrap_or(false),
    };
    let mut owned = Owned::default();
    for entry in meta.managed_fields.iter().flatten() {
        if entry.manager.as_deref() != Some(manager)
            || entry.operation.as_deref() != Some("Apply")
            || entry.subresource.is_some()
        {
            continue;
        }
        let Some(fields) = &entry.fields_v1 else { continue };
        let keys = |v: Option<&Value>| -> BTreeSet<String> {
            v.and_then(Value::as_object)
                .map(|m| {
                    m.keys()
                        .filter_map(|k| k.strip_prefix("f:"))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let f = &fields.0;
        owned.data.extend(keys(f.get("f:data")));
        owned.data.extend(keys(f.get("f:binaryData")));
        owned.labels.extend(keys(f.pointer("/f:metadata/f:labels")));
        owned.annotations.extend(keys(f.pointer("/f:metadata/f:annotations")));
    }
    Ok(Current {
        state,
        owned,
        owner_uids: meta.owner_references.iter().flatten().map(|r| r.uid.clone()).collect(),
        resource_version: meta.resource_version.clone(),
    })
}

fn map_contains(have: &BTreeMap<String, String>, want: &BTreeMap<String, String>) -> bool {
    want.iter().all(|(k, v)| have.get(k) == Some(v))
}

/// Whether the target already holds what `apply` would write.
fn is_noop(d: &DesiredTarget, cur: &Current, labels: &BTreeMap<String, String>, owner_ref: Option<&Value>) -> bool {
    let merge = d.creation_policy == CreationPolicy::Merge;
    let data_ok = if merge {
        d.data.iter().all(|(k, v)| cur.state.data.get(k) == Some(v))
            && cur.owned.data.iter().all(|k| d.data.contains_key(k))
    } else {
        cur.state.data == d.data
    };
    let type_ok = merge
        || d.target.kind == TargetKind::ConfigMap
        || cur.state.secret_type.as_deref() == Some(d.secret_type.as_deref().unwrap_or("Opaque"));
    let meta_ok = map_contains(&cur.state.labels, labels)
        && map_contains(&cur.state.annotations, &d.annotations)
        && cur.owned.labels.iter().all(|k| labels.contains_key(k))
        && cur.owned.annotations.iter().all(|k| d.annotations.contains_key(k));
    let owner_ok = owner_ref
        .and_then(|r| r.get("uid").and_then(Value::as_str))
        .is_none_or(|uid| cur.owner_uids.iter().any(|u| u == uid));
    let immutable_ok = merge || !d.immutable || cur.state.immutable;
    data_ok && type_ok && meta_ok && owner_ok && immutable_ok
}

#[async_trait]
impl SecretSink for KubeSink {
    fn name(&self) -> &str {
        "kubernetes"
    }

    fn capabilities(&self) -> SinkCapabilities {
        let mut c = SinkCapabilities::default();
        c.config_maps = true;
        c.merge = true;
        c.owner_references = true;
        c.immutable = true;
        c.readable = true;
        c.metadata = true;
        c
    }

    async fn read(&self, target: &TargetRef) -> Result<Option<TargetState>> {
        check_target(target)?;
        let obj = self.get(target).await?;
        Ok(obj
            .map(|o| decode(target, &o, &self.field_manager))
            .transpose()?
            .map(|c| c.state))
    }

    async fn compare(&self, desired: &DesiredTarget) -> Result<Compared> {
        let t = &desired.target;
        check_target(t)?;
        let prior = self.prior(desired).await?;
        let compared = match &prior {
            // Missing or not ours yet: either way our label must be written.
            Prior::NotLabelled => Compared::Missing,
            Prior::Read(obj) => {
                let state = obj
                    .as_ref()
                    .map(|o| decode(t, o, &self.field_manager))
                    .transpose()?
                    .map(|c| c.state);
                Compared::of(desired, state, &self.capabilities())
            }
        };
        if !matches!(compared, Compared::Matches) {
            self.remember_compared(t, prior);
        }
        Ok(compared)
    }

    async fn begin_cycle(&self, targets: &[TargetRef]) {
        if self.watched {
            return;
        }
        // A namespace with one target of this cycle (an event-driven sync of one spec) is
        // cheaper read than listed.
        let mut per_scope: BTreeMap<(TargetKind, String), usize> = BTreeMap::new();
        for t in targets {
            *per_scope.entry((t.kind, t.namespace.clone())).or_default() += 1;
        }
        let scopes: Vec<(TargetKind, String)> = per_scope.into_iter().filter(|(_, n)| *n > 1).map(|(s, _)| s).collect();
        *self.owners.lock().await = Some(HashMap::new());
        let lists: Vec<_> = scopes
            .into_iter()
            .map(|(kind, ns)| {
                let me = self.clone();
                async move {
                    match me.list_labelled(kind, &ns).await {
                        Ok(objs) => me.cache.replace_namespace(kind, &ns, objs),
                        // Not fatal: the targets of that namespace are read one by one.
                        Err(e) => tracing::debug!(namespace = %ns, %kind, error = %e, "cannot list targets; reading them one by one"),
                    }
                }
            })
            .collect();
        futures::stream::iter(lists)
            .buffer_unordered(4)
            .collect::<Vec<()>>()
            .await;
    }

    async fn end_cycle(&self, targets: &[TargetRef]) {
        if self.watched {
            return;
        }
        let scopes: BTreeSet<(TargetKind, &str)> = targets.iter().map(|t| (t.kind, t.namespace.as_str())).collect();
        for (kind, ns) in scopes {
            self.cache.forget_namespace(kind, ns);
        }
        *self.owners.lock().await = None;
    }

    async fn apply(&self, d: &DesiredTarget) -> Result<ApplyOutcome> {
        check_desired(d)?;
        if d.creation_policy == CreationPolicy::None {
            return Ok(ApplyOutcome::Unchanged);
        }
        let t = &d.target;
        let mut prior = match self.just_compared(t) {
            Some(p) => p,
            None => self.prior(d).await?,
        };
        // A decision made on a stale cache entry (409) or on a guess (a target absent from
        // the cache that exists with something the API server refuses) is made once more
        // on a fresh read.
        for attempt in 0..2 {
            match self.apply_on(d, &prior).await {
                Err(ApplyError::Retry(e)) if attempt == 0 => {
                    tracing::debug!(target = %t, error = %from_kube(e, "applying"), "deciding again on a fresh read");
                    let fresh = self.get(t).await?;
                    match &fresh {
                        Some(o) if self.watched && carries_label(o) => self.cache.insert(t.kind, o.clone()),
                        _ => self.cache.remove(t),
                    }
                    prior = Prior::Read(fresh.map(Arc::new));
                }
                Err(ApplyError::Retry(e)) => return Err(from_kube(e, &format!("applying {t}"))),
                Err(ApplyError::Done(e)) => return Err(e),
                Ok(outcome) => return Ok(outcome),
            }
        }
        unreachable!("the second attempt returns")
    }

    async fn delete(&self, target: &TargetRef) -> Result<bool> {
        check_target(target)?;
        match self.api(target).delete(&target.name, &DeleteParams::default()).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(from_kube(e, &format!("deleting {target}"))),
        }
    }
}
