//! ESO-shaped status and Events of ExternalSecrets after a run: written only when the
//! Ready condition, its message, the synced version or the binding changes, and
//! `refreshTime` alone at most every `refresh_time_every`.

use std::collections::BTreeMap;

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use secretsync_core::engine::{CycleReport, Outcome, SpecReport, SyncStatus};
use secretsync_core::manifest::SpecId;
use secretsync_k8s::FIELD_MANAGER;
use serde_json::json;

use crate::metrics::{ResourceLabels, unix_now};
use crate::shared::Shared;
use crate::state::ReadyCondition;

/// What the status of one ExternalSecret is written from.
#[derive(Debug, Clone)]
pub(crate) struct Info {
    pub(crate) uid: Option<String>,
    pub(crate) generation: Option<i64>,
    pub(crate) meta_hash: u64,
    pub(crate) ready: Option<ReadyCondition>,
    pub(crate) target_name: Option<String>,
}

impl Shared {
    pub(crate) async fn write_statuses(
        &self,
        report: &CycleReport,
        invalid: &[(SpecId, String)],
        infos: &BTreeMap<SpecId, Info>,
    ) {
        let mut jobs: Vec<(SpecId, Option<SpecReport>, Option<String>)> = vec![];
        for s in report.specs.iter().filter(|s| s.kind == "ExternalSecret") {
            let id = SpecId {
                namespace: s.namespace.clone(),
                name: s.name.clone(),
            };
            jobs.push((id, Some(s.clone()), None));
        }
        for (id, msg) in invalid {
            jobs.push((id.clone(), None, Some(msg.clone())));
        }
        futures::stream::iter(jobs)
            .map(|(id, spec, invalid)| {
                let info = infos.get(&id).cloned();
                async move {
                    if let Some(info) = info {
                        self.finish_one(&id, spec.as_ref(), invalid.as_deref(), &info).await;
                    }
                }
            })
            .buffer_unordered(self.cfg.status_concurrency.max(1))
            .collect::<Vec<()>>()
            .await;
    }

    /// Status, Event and metrics of one ExternalSecret after a run.
    pub(crate) async fn finish_one(&self, id: &SpecId, spec: Option<&SpecReport>, invalid: Option<&str>, info: &Info) {
        let labels = ResourceLabels::from(id);
        self.metrics.sync_calls.get_or_create(&labels).inc();
        let synced = spec.is_some_and(|s| s.status == SyncStatus::SecretSynced);
        let message = match (spec, invalid) {
            (Some(s), _) if synced => match s.outcome {
                Outcome::Deleted => "secret deleted: the remote secret is gone".to_string(),
                _ => "Secret was synced".to_string(),
            },
            (Some(s), _) => s.message.clone(),
            (None, Some(m)) => m.to_string(),
            (None, None) => "not synced".to_string(),
        };
        if synced {
            self.metrics.last_success.get_or_create(&labels).set(unix_now());
        } else {
            self.metrics.sync_errors.get_or_create(&labels).inc();
        }
        let now_ts = Timestamp::now();
        let now = now_ts.to_string();
        let (status, reason) = if synced {
            ("True", "SecretSynced")
        } else {
            ("False", "SecretSyncedError")
        };
        let ltt = match &info.ready {
            Some(r) if r.status == status && !r.last_transition_time.is_empty() => r.last_transition_time.clone(),
            _ => now.clone(),
        };
        let mut st = json!({
            "conditions": [{
                "type": "Ready",
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": ltt,
            }],
        });
        if synced {
            st["refreshTime"] = json!(now);
            st["syncedResourceVersion"] = json!(format!("{}-{:016x}", info.generation.unwrap_or(0), info.meta_hash));
        }
        if let Some(t) = &info.target_name {
            st["binding"] = json!({"name": t});
        }
        let want = ReadyCondition {
            status: status.to_string(),
            reason: reason.to_string(),
            message: message.clone(),
            last_transition_time: ltt.clone(),
            synced_version: st
                .get("syncedResourceVersion")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            refresh_time: st.get("refreshTime").and_then(|v| v.as_str()).map(str::to_string),
            binding: info.target_name.clone(),
        };
        // Unchanged condition, message, version and binding, and a recent refreshTime:
        // nothing to write.
        let unchanged = info
            .ready
            .as_ref()
            .is_some_and(|have| have.covers(&want, now_ts, self.cfg.refresh_time_every));
        let patch = json!({"status": st});
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        if !self.is_leader() {
            return;
        }
        if !unchanged {
            let r = self
                .es_api(&id.namespace)
                .patch_status(&id.name, &params, &Patch::Merge(&patch))
                .await;
            self.count_api_write("status", r.is_ok());
            if let Err(e) = r {
                tracing::warn!(spec = %id, error = %secretsync_k8s::from_kube(e, &format!("writing the status of ExternalSecret {id}")), "status write failed");
            }
        }
        // Events: created, updated, deleted, failed; nothing when unchanged.
        let event = match (spec.map(|s| s.outcome), synced) {
            (Some(Outcome::Created), true) => {
                Some((EventType::Normal, "Created", format!("Created {}", spec_target(spec))))
            }
            (Some(Outcome::Updated), true) => {
                Some((EventType::Normal, "Updated", format!("Updated {}", spec_target(spec))))
            }
            (Some(Outcome::Deleted), true) => {
                Some((EventType::Normal, "Deleted", format!("Deleted {}", spec_target(spec))))
            }
            (_, false) => Some((EventType::Warning, "UpdateFailed", message.clone())),
            _ => None,
        };
        if let Some((type_, reason, note)) = event {
            self.publish(
                &self.reference("ExternalSecret", Some(&id.namespace), &id.name, info.uid.clone()),
                type_,
                reason,
                note,
            )
            .await;
        }
    }
}

pub(crate) fn spec_target(spec: Option<&SpecReport>) -> String {
    spec.map(|s| s.target.clone()).unwrap_or_default()
}
