//! [`KubeExternalSecrets`]: ESO's objects as they are in the cluster.

use std::collections::BTreeMap;
use std::fmt;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use secretsync_core::manifest::{API_GROUP, FORCE_SYNC_ANNOTATION, Loaded, SpecId, load_str};
use secretsync_core::{OwnerRef, Result};
use serde_json::{Value, json};

use crate::FIELD_MANAGER;
use crate::error::from_kube;

/// One ExternalSecret in the cluster.
#[derive(Debug, Clone)]
pub struct ExternalSecretObject {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Uid (for owner references).
    pub uid: Option<String>,
    /// `metadata.resourceVersion`.
    pub resource_version: Option<String>,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// The whole object, as the API server returned it.
    pub object: Value,
}

impl ExternalSecretObject {
    /// The value of ESO's `force-sync` annotation: a refresh is due when it changes.
    pub fn force_sync(&self) -> Option<&str> {
        self.annotations.get(FORCE_SYNC_ANNOTATION).map(String::as_str)
    }

    /// `namespace/name`.
    pub fn id(&self) -> SpecId {
        SpecId {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    fn from_dynamic(obj: DynamicObject, api_version: &str) -> Self {
        let mut object = serde_json::to_value(&obj).unwrap_or(Value::Null);
        if let Some(m) = object.as_object_mut() {
            m.insert("apiVersion".into(), json!(api_version));
            m.insert("kind".into(), json!("ExternalSecret"));
        }
        let meta = obj.metadata;
        ExternalSecretObject {
            namespace: meta.namespace.unwrap_or_else(|| "default".into()),
            name: meta.name.unwrap_or_default(),
            uid: meta.uid,
            resource_version: meta.resource_version,
            generation: meta.generation,
            annotations: meta.annotations.unwrap_or_default(),
            object,
        }
    }
}

/// Lists and reads `external-secrets.io` objects (version `v1` unless told otherwise).
#[derive(Clone)]
pub struct KubeExternalSecrets {
    client: kube::Client,
    version: String,
}

impl fmt::Debug for KubeExternalSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeExternalSecrets")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl KubeExternalSecrets {
    /// Reads `external-secrets.io/v1` objects through `client`.
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            version: "v1".into(),
        }
    }

    /// Uses another API version (`v1beta1`).
    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    fn api_version(&self) -> String {
        format!("{API_GROUP}/{}", self.version)
    }

    fn resource(&self, kind: &str, plural: &str) -> ApiResource {
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(API_GROUP, &self.version, kind), plural)
    }

    fn api(&self, kind: &str, plural: &str, namespace: Option<&str>) -> Api<DynamicObject> {
        let ar = self.resource(kind, plural);
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        }
    }

    /// ExternalSecrets of one namespace, or of all when `None`.
    pub async fn list(&self, namespace: Option<&str>) -> Result<Vec<ExternalSecretObject>> {
        let list = self
            .api("ExternalSecret", "externalsecrets", namespace)
            .list(&ListParams::default())
            .await
            .map_err(|e| {
                from_kube(
                    e,
                    &format!("listing ExternalSecrets in {}", namespace.unwrap_or("all namespaces")),
                )
            })?;
        let v = self.api_version();
        Ok(list
            .items
            .into_iter()
            .map(|o| ExternalSecretObject::from_dynamic(o, &v))
            .collect())
    }

    /// One ExternalSecret, `None` when it (or ESO's CRD) is not in the cluster.
    pub async fn get(&self, namespace: &str, name: &str) -> Result<Option<ExternalSecretObject>> {
        let obj = self
            .api("ExternalSecret", "externalsecrets", Some(namespace))
            .get_opt(name)
            .await
            .map_err(|e| from_kube(e, &format!("reading ExternalSecret {namespace}/{name}")))?;
        let v = self.api_version();
        Ok(obj.map(|o| ExternalSecretObject::from_dynamic(o, &v)))
    }

    /// The owner reference of an ExternalSecret, with its uid, when it is in the cluster.
    pub async fn owner_ref(&self, namespace: &str, name: &str) -> Result<Option<OwnerRef>> {
        Ok(self.get(namespace, name).await?.map(|es| OwnerRef {
            api_version: self.api_version(),
            kind: "ExternalSecret".into(),
            name: es.name,
            uid: es.uid,
        }))
    }

    /// The `force-sync` annotation of every ExternalSecret that has one.
    pub async fn force_sync_tokens(&self, namespace: Option<&str>) -> Result<BTreeMap<SpecId, String>> {
        Ok(self
            .list(namespace)
            .await?
            .into_iter()
            .filter_map(|es| es.force_sync().map(str::to_string).map(|t| (es.id(), t)))
            .collect())
    }

    /// Sets the `force-sync` annotation, as `kubectl annotate externalsecret NAME
    /// force-sync=$(date +%s) --overwrite` does.
    pub async fn request_force_sync(&self, namespace: &str, name: &str, token: &str) -> Result<()> {
        let patch = json!({"metadata": {"annotations": {FORCE_SYNC_ANNOTATION: token}}});
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        self.api("ExternalSecret", "externalsecrets", Some(namespace))
            .patch(name, &params, &Patch::Merge(&patch))
            .await
            .map_err(|e| from_kube(e, &format!("annotating ExternalSecret {namespace}/{name}")))?;
        Ok(())
    }

    /// The ExternalSecrets and SecretStores of a namespace (all when `None`) and every
    /// ClusterSecretStore, loaded as manifests (file name `cluster:` in errors).
    pub async fn load_manifests(&self, namespace: Option<&str>) -> Result<Loaded> {
        let mut docs = vec![];
        for (kind, plural, namespaced) in [
            ("ClusterSecretStore", "clustersecretstores", false),
            ("SecretStore", "secretstores", true),
            ("ExternalSecret", "externalsecrets", true),
        ] {
            let ns = if namespaced { namespace } else { None };
            let list = self
                .api(kind, plural, ns)
                .list(&ListParams::default())
                .await
                .map_err(|e| from_kube(e, &format!("listing {kind}s")))?;
            for o in list.items {
                let mut v = serde_json::to_value(&o).unwrap_or(Value::Null);
                if let Some(m) = v.as_object_mut() {
                    m.insert("apiVersion".into(), json!(self.api_version()));
                    m.insert("kind".into(), json!(kind));
                    m.remove("status");
                }
                docs.push(serde_json::to_string(&v).unwrap_or_default());
            }
        }
        Ok(load_str(
            &docs.join("\n---\n"),
            format!("cluster:{}", namespace.unwrap_or("*")),
        ))
    }
}
