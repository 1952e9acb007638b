//! What the two cluster-wide kinds that make namespaced copies share:
//! ClusterExternalSecret (→ ExternalSecrets, `cluster`) and ClusterPushSecret (→
//! PushSecrets, `cpush`). Each owns its copies through a controller owner reference,
//! deletes only copies it owns, and writes its status only when it changes.

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use secretsync_k8s::{FIELD_MANAGER, from_kube, is_not_found};
use serde_json::{Value, json};

use crate::shared::Shared;

/// The controller owner reference of an object, when its owner is a `kind` of `group`:
/// the owner's name and uid.
pub(crate) fn controller_owner(obj: &DynamicObject, kind: &str, group: &str) -> Option<(String, String)> {
    obj.metadata.owner_references.as_ref()?.iter().find_map(|r| {
        let ref_group = r.api_version.rsplit_once('/').map_or("", |(g, _)| g);
        (r.controller == Some(true) && r.kind == kind && ref_group == group).then(|| (r.name.clone(), r.uid.clone()))
    })
}

/// A status without empty fields, for comparison.
pub(crate) fn normalized(status: &Value) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(m) = status.as_object() {
        for (k, v) in m {
            let empty = v.is_null() || v.as_array().is_some_and(Vec::is_empty) || v.as_str() == Some("");
            if !empty {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// A namespaced copy and the cluster-wide object that may own it.
pub(crate) struct OwnedCopy<'a> {
    /// The copies' API in their namespace.
    pub api: Api<DynamicObject>,
    /// The copy's kind (`ExternalSecret`), for messages; its lower case is the metric's.
    pub kind: &'static str,
    pub namespace: &'a str,
    pub name: &'a str,
    /// The owner's kind (`ClusterExternalSecret`) and name, and its uid when known.
    pub owner_kind: &'static str,
    pub owner: &'a str,
    pub owner_uid: Option<&'a str>,
}

impl Shared {
    /// Deletes the copy if its owner (with that uid, when given) owns it; anything else of
    /// that name is left alone. Only the leader deletes.
    pub(crate) async fn delete_owned_copy(&self, c: OwnedCopy<'_>) -> Result<(), String> {
        let what = format!("{} {}/{}", c.kind, c.namespace, c.name);
        let Some(x) = c
            .api
            .get_opt(c.name)
            .await
            .map_err(|e| from_kube(e, &format!("reading {what}")).to_string())?
        else {
            return Ok(());
        };
        let ours = controller_owner(&x, c.owner_kind, &self.cfg.group)
            .is_some_and(|(owner, u)| owner == c.owner && c.owner_uid.is_none_or(|want| want == u));
        if !ours {
            return Ok(());
        }
        if !self.is_leader() {
            return Err("not deleted: this replica is not the leader (any more)".to_string());
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: x.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let metric = c.kind.to_lowercase();
        match c.api.delete(c.name, &params).await {
            Ok(_) => {
                self.count_api_write(&metric, true);
                tracing::info!(owner_kind = c.owner_kind, owner = %c.owner, object = %what, "deleted");
                Ok(())
            }
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => {
                self.count_api_write(&metric, false);
                Err(from_kube(e, &format!("deleting {what}")).to_string())
            }
        }
    }

    /// Writes the fields of `status` on the cluster-wide object `kind` `name` (through
    /// `api`) unless it already says so; returns the status now on the object when it wrote
    /// it. Empty lists are removed (a merge patch; ESO omits them).
    pub(crate) async fn write_owner_status(
        &self,
        api: Api<DynamicObject>,
        kind: &str,
        name: &str,
        observed: &Value,
        status: &Value,
    ) -> Option<Value> {
        let have = normalized(observed);
        let want = normalized(status);
        let same = status
            .as_object()
            .is_some_and(|fields| fields.keys().all(|k| have.get(k) == want.get(k)));
        if same || !self.is_leader() {
            return None;
        }
        let mut patch = status.clone();
        if let Some(m) = patch.as_object_mut() {
            for v in m.values_mut() {
                if v.as_array().is_some_and(Vec::is_empty) {
                    *v = Value::Null;
                }
            }
        }
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        let r = api
            .patch_status(name, &params, &Patch::Merge(&json!({"status": patch})))
            .await;
        self.count_api_write("status", r.is_ok());
        match r {
            Ok(obj) => Some(obj.data.get("status").cloned().unwrap_or(Value::Null)),
            Err(e) => {
                tracing::warn!(kind, name, error = %from_kube(e, &format!("writing the status of {kind} {name}")), "status write failed");
                None
            }
        }
    }
}
