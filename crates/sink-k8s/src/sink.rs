//! [`KubeSink`]: Secrets and ConfigMaps written by server-side apply.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use secretsync_core::sink::{MANAGED_BY_LABEL, MANAGED_BY_LABEL_VALUE};
use secretsync_core::{
    ApplyOutcome, Compared, CreationPolicy, DesiredTarget, Error, Result, SecretMap, SecretSink, SecretValue,
    SinkCapabilities, TargetKind, TargetRef, TargetState,
};
use serde_json::{Map, Value, json};

use crate::FIELD_MANAGER;
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
#[derive(Clone)]
pub struct KubeSink {
    client: kube::Client,
    field_manager: String,
    /// Targets `compare` just read and found different, for the `apply` that follows.
    compared: Arc<Mutex<HashMap<TargetRef, JustRead>>>,
}

/// A target as `compare` read it (`None`: missing), and when.
type JustRead = (Instant, Option<DynamicObject>);

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
        }
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

    async fn current(&self, t: &TargetRef, manager: &str) -> Result<Option<Current>> {
        let obj = match self.just_compared(t) {
            Some(obj) => obj,
            None => self.get(t).await?,
        };
        obj.map(|o| decode(t, &o, manager)).transpose()
    }

    /// What `compare` read of `t` less than [`COMPARED_FOR`] ago, taken (used once).
    fn just_compared(&self, t: &TargetRef) -> Option<Option<DynamicObject>> {
        let (at, obj) = self.compared.lock().expect("lock").remove(t)?;
        (at.elapsed() < COMPARED_FOR).then_some(obj)
    }

    fn remember_compared(&self, t: &TargetRef, obj: Option<DynamicObject>) {
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
            None => {
                let version = owner.api_version.rsplit('/').next().unwrap_or("v1");
                match KubeExternalSecrets::new(self.client.clone())
                    .with_version(version)
                    .get(&d.target.namespace, &owner.name)
                    .await
                {
                    Ok(Some(es)) => es.uid?,
                    Ok(None) => return None,
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
        let obj = self.get(t).await?;
        let state = obj
            .as_ref()
            .map(|o| decode(t, o, &self.field_manager))
            .transpose()?
            .map(|c| c.state);
        let compared = Compared::of(desired, state, &self.capabilities());
        if !matches!(compared, Compared::Matches) {
            self.remember_compared(t, obj);
        }
        Ok(compared)
    }

    async fn apply(&self, d: &DesiredTarget) -> Result<ApplyOutcome> {
        check_desired(d)?;
        if d.creation_policy == CreationPolicy::None {
            return Ok(ApplyOutcome::Unchanged);
        }
        let t = &d.target;
        let manager = self.field_manager_for(d);
        let current = self.current(t, &manager).await?;
        let merge = d.creation_policy == CreationPolicy::Merge;
        if merge && current.is_none() {
            return Err(Error::not_found(format!(
                "{t} (creationPolicy Merge only updates an existing target)"
            )));
        }
        if let Some(cur) = &current {
            let desired_type = d.secret_type.as_deref().unwrap_or("Opaque");
            if !merge && t.kind == TargetKind::Secret && cur.state.secret_type.as_deref() != Some(desired_type) {
                return Err(Error::Conflict {
                    what: format!(
                        "{t} has type `{}`, the template wants `{desired_type}`: a Secret's type cannot change; delete the Secret to recreate it",
                        cur.state.secret_type.as_deref().unwrap_or("Opaque")
                    ),
                });
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
                    });
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
        let body = Self::applied(d, &labels, owner_ref.as_ref());
        let api = self.api(t);
        let params = PatchParams::apply(&manager).force();
        let written = api
            .patch(&t.name, &params, &Patch::Apply(&body))
            .await
            .map_err(|e| from_kube(e, &format!("applying {t}")))?;
        tracing::debug!(target = %t, keys = d.data.len(), manager = %manager, "applied");

        // An Owner or Orphan target holds our data exactly: keys someone else added (and so
        // owns) are not removed by our apply, so remove them here.
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
                api.patch(&t.name, &params, &Patch::Merge(&patch))
                    .await
                    .map_err(|e| from_kube(e, &format!("removing keys others added to {t}")))?;
                tracing::debug!(target = %t, removed = extra.len(), "removed keys written by other managers");
            }
        }
        Ok(if current.is_some() {
            ApplyOutcome::Updated
        } else {
            ApplyOutcome::Created
        })
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
