//! [`KubeRestarter`]: `kubectl rollout restart` for the workloads that read changed targets.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use secretsync_core::{ConsumerRef, RestartRequest, Restarter, Result, TargetKind};
use serde_json::{Value, json};

use crate::FIELD_MANAGER;
use crate::error::{from_kube, is_not_found};

/// The pod-template annotation `kubectl rollout restart` sets to the current time.
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";

const KINDS: [&str; 3] = ["Deployment", "StatefulSet", "DaemonSet"];

fn workload_resource(kind: &str) -> Option<ApiResource> {
    Some(match kind {
        "Deployment" => ApiResource::erase::<Deployment>(&()),
        "StatefulSet" => ApiResource::erase::<StatefulSet>(&()),
        "DaemonSet" => ApiResource::erase::<DaemonSet>(&()),
        _ => return None,
    })
}

/// Restarts Deployments, StatefulSets and DaemonSets whose pods read a changed target.
///
/// Consumers are the ones a spec declares plus the ones found by listing the workloads of
/// each changed target's namespace and reading their pod templates: `envFrom`
/// (`secretRef` / `configMapRef`), `env[].valueFrom` (`secretKeyRef` / `configMapKeyRef`),
/// `secret` / `configMap` volumes and projected volume sources, in containers and init
/// containers. Each is restarted once per call by setting
/// [`RESTARTED_AT_ANNOTATION`] on its pod template, as `kubectl rollout restart` does.
#[derive(Clone)]
pub struct KubeRestarter {
    client: kube::Client,
    field_manager: String,
    discover: bool,
}

impl fmt::Debug for KubeRestarter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeRestarter")
            .field("field_manager", &self.field_manager)
            .field("discover", &self.discover)
            .finish_non_exhaustive()
    }
}

/// The targets of one namespace that changed, by kind.
#[derive(Default)]
struct Changed {
    secrets: BTreeSet<String>,
    config_maps: BTreeSet<String>,
}

impl KubeRestarter {
    /// A restarter using `client`, discovering consumers from pod templates.
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            field_manager: FIELD_MANAGER.to_string(),
            discover: true,
        }
    }

    /// A restarter with a client from `KUBECONFIG` / `~/.kube/config`, else in-cluster.
    pub async fn infer() -> Result<Self> {
        Ok(Self::new(crate::infer_client().await?))
    }

    /// Restarts only declared consumers when `false` (no workload listing).
    pub fn with_discovery(mut self, discover: bool) -> Self {
        self.discover = discover;
        self
    }

    /// Uses another field manager for the restart patches.
    pub fn with_field_manager(mut self, name: impl Into<String>) -> Self {
        self.field_manager = name.into();
        self
    }

    /// The workloads in the changed targets' namespaces whose pod templates read them.
    pub async fn discover(&self, changed: &[RestartRequest]) -> Result<BTreeSet<ConsumerRef>> {
        let mut by_ns: BTreeMap<&str, Changed> = BTreeMap::new();
        for r in changed {
            let c = by_ns.entry(r.target.namespace.as_str()).or_default();
            match r.target.kind {
                TargetKind::Secret => c.secrets.insert(r.target.name.clone()),
                TargetKind::ConfigMap => c.config_maps.insert(r.target.name.clone()),
            };
        }
        let mut found = BTreeSet::new();
        for (ns, targets) in by_ns {
            for kind in KINDS {
                let ar = workload_resource(kind).expect("a known kind");
                let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &ar);
                let list = api
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| from_kube(e, &format!("listing {kind}s in {ns}")))?;
                for obj in list.items {
                    let Some(name) = obj.metadata.name.clone() else {
                        continue;
                    };
                    let template = obj.data.pointer("/spec/template").cloned().unwrap_or(Value::Null);
                    let Ok(template) = serde_json::from_value::<PodTemplateSpec>(template) else {
                        tracing::debug!(kind, namespace = ns, name, "pod template does not parse; skipped");
                        continue;
                    };
                    if template.spec.as_ref().is_some_and(|spec| reads(spec, &targets)) {
                        found.insert(ConsumerRef {
                            kind: kind.to_string(),
                            namespace: ns.to_string(),
                            name,
                        });
                    }
                }
            }
        }
        Ok(found)
    }

    async fn restart_one(&self, c: &ConsumerRef, at: &str) -> std::result::Result<(), kube::Error> {
        let ar = workload_resource(&c.kind).expect("checked by the caller");
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &c.namespace, &ar);
        let patch = json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: at}}}}});
        let params = PatchParams {
            field_manager: Some(self.field_manager.clone()),
            ..PatchParams::default()
        };
        api.patch(&c.name, &params, &Patch::Strategic(&patch)).await.map(|_| ())
    }
}

/// Whether a pod spec reads any of the targets.
fn reads(spec: &PodSpec, t: &Changed) -> bool {
    let secret = |n: &str| t.secrets.contains(n);
    let config_map = |n: &str| t.config_maps.contains(n);
    let containers = spec.containers.iter().chain(spec.init_containers.iter().flatten());
    for c in containers {
        for e in c.env_from.iter().flatten() {
            if e.secret_ref.as_ref().is_some_and(|r| secret(&r.name))
                || e.config_map_ref.as_ref().is_some_and(|r| config_map(&r.name))
            {
                return true;
            }
        }
        for e in c.env.iter().flatten() {
            if let Some(from) = &e.value_from
                && (from.secret_key_ref.as_ref().is_some_and(|r| secret(&r.name))
                    || from.config_map_key_ref.as_ref().is_some_and(|r| config_map(&r.name)))
            {
                return true;
            }
        }
    }
    for v in spec.volumes.iter().flatten() {
        if v.secret
            .as_ref()
            .and_then(|s| s.secret_name.as_deref())
            .is_some_and(secret)
            || v.config_map.as_ref().is_some_and(|c| config_map(&c.name))
        {
            return true;
        }
        if let Some(p) = &v.projected {
            for s in p.sources.iter().flatten() {
                if s.secret.as_ref().is_some_and(|r| secret(&r.name))
                    || s.config_map.as_ref().is_some_and(|r| config_map(&r.name))
                {
                    return true;
                }
            }
        }
    }
    false
}

#[async_trait]
impl Restarter for KubeRestarter {
    async fn restart(&self, changed: &[RestartRequest]) -> Result<Vec<ConsumerRef>> {
        if changed.is_empty() {
            return Ok(vec![]);
        }
        let mut consumers: BTreeSet<ConsumerRef> = BTreeSet::new();
        for r in changed {
            for c in &r.declared {
                if workload_resource(&c.kind).is_some() {
                    consumers.insert(c.clone());
                } else {
                    tracing::warn!(consumer = %c, "cannot restart a consumer of this kind in Kubernetes; skipped");
                }
            }
        }
        if self.discover {
            consumers.extend(self.discover(changed).await?);
        }
        let declared: BTreeSet<&ConsumerRef> = changed.iter().flat_map(|r| r.declared.iter()).collect();
        let at = k8s_openapi::jiff::Timestamp::now().to_string();
        let mut restarted = vec![];
        let mut failed = vec![];
        for c in &consumers {
            match self.restart_one(c, &at).await {
                Ok(()) => {
                    tracing::info!(consumer = %c, "restarted");
                    restarted.push(c.clone());
                }
                Err(e) if is_not_found(&e) && declared.contains(c) => {
                    tracing::warn!(consumer = %c, "declared consumer not found; skipped");
                }
                Err(e) => failed.push(from_kube(e, &format!("restarting {c}"))),
            }
        }
        if let Some(first) = failed.into_iter().next() {
            let done: Vec<String> = restarted.iter().map(ToString::to_string).collect();
            return Err(first.context(format!("restarted [{}] before the failure", done.join(", "))));
        }
        Ok(restarted)
    }
}
