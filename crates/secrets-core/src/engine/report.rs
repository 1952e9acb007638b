//! What a cycle did: per-spec status, counts of provider calls and sink writes, and the
//! plan (keys and fingerprints, never values).

use std::time::Duration;

use serde::Serialize;

use crate::sink::ConsumerRef;

/// ESO's Ready-condition reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SyncStatus {
    /// The target holds the desired data.
    SecretSynced,
    /// Fetching, rendering or writing failed; the target keeps its last good data.
    SecretSyncedError,
}

/// What happened to a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Outcome {
    /// Created (or, in a dry run, would be).
    Created,
    /// Updated (or would be).
    Updated,
    /// Already up to date: nothing written.
    Unchanged,
    /// Deleted because the remote secret is gone (deletionPolicy Delete).
    Deleted,
    /// Nothing done (error, or creationPolicy None).
    Skipped,
}

/// One spec's result.
#[derive(Debug, Clone, Serialize)]
pub struct SpecReport {
    /// `ExternalSecret`, `ConfigMap` or `Secret` (static targets).
    pub kind: &'static str,
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// The target, as `Secret ns/name`.
    pub target: String,
    /// Ready reason.
    pub status: SyncStatus,
    /// Whether the target's data changed (or would, in a dry run).
    pub changed: bool,
    /// What happened.
    pub outcome: Outcome,
    /// Empty when synced; the error otherwise (names, never values).
    pub message: String,
    /// Short keyed fingerprint of the desired data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Short keyed fingerprint of what the target held before, when it existed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_fingerprint: Option<String>,
    /// Keys of the desired data.
    pub keys: Vec<String>,
    /// Whether the error may clear by itself (throttling, timeouts, outages).
    #[serde(skip)]
    pub retryable: bool,
    /// How long the provider asked us to wait.
    #[serde(skip)]
    pub retry_after: Option<Duration>,
}

impl SpecReport {
    /// A report for a spec that has not synced yet: an error until proven otherwise.
    pub fn pending(kind: &'static str, namespace: &str, name: &str, target: String) -> Self {
        Self {
            kind,
            name: name.to_string(),
            namespace: namespace.to_string(),
            target,
            status: SyncStatus::SecretSyncedError,
            changed: false,
            outcome: Outcome::Skipped,
            message: String::new(),
            fingerprint: None,
            previous_fingerprint: None,
            keys: vec![],
            retryable: false,
            retry_after: None,
        }
    }
}

/// One cycle's result.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CycleReport {
    /// Whether nothing was written on purpose.
    pub dry_run: bool,
    /// Sink write requests (creates, updates, deletes).
    pub writes: u64,
    /// Provider API requests in this cycle.
    pub provider_calls: u64,
    /// Distinct remote values read (after dedupe and change tokens).
    pub values_read: u64,
    /// Consumers restarted.
    pub restarts: Vec<ConsumerRef>,
    /// Restart failures (the targets were written).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restart_errors: Vec<String>,
    /// Per spec.
    pub specs: Vec<SpecReport>,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// PushSecrets pushed after the cycle ([`crate::push::push_all`]), when there are any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<crate::push::PushReport>,
}

impl CycleReport {
    /// Whether every spec synced.
    pub fn all_synced(&self) -> bool {
        self.specs.iter().all(|s| s.status == SyncStatus::SecretSynced) && self.push.as_ref().is_none_or(|p| p.ok())
    }
    /// Specs that failed.
    pub fn failed(&self) -> impl Iterator<Item = &SpecReport> {
        self.specs.iter().filter(|s| s.status == SyncStatus::SecretSyncedError)
    }
    /// The report of one spec.
    pub fn spec(&self, namespace: &str, name: &str) -> Option<&SpecReport> {
        self.specs.iter().find(|s| s.namespace == namespace && s.name == name)
    }
    /// Human-readable lines (the `text` format).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for s in &self.specs {
            let what = match (self.dry_run, s.outcome) {
                (true, Outcome::Created) => "would create",
                (true, Outcome::Updated) => "would update",
                (true, Outcome::Deleted) => "would delete",
                (_, Outcome::Created) => "created",
                (_, Outcome::Updated) => "updated",
                (_, Outcome::Deleted) => "deleted",
                (_, Outcome::Unchanged) => "unchanged",
                (_, Outcome::Skipped) => "skipped",
            };
            let fp = s
                .fingerprint
                .as_deref()
                .map(|f| format!(" fingerprint={f}"))
                .unwrap_or_default();
            out.push_str(&format!(
                "{:<18} {}/{} -> {}: {what}{fp}",
                format!("{:?}", s.status),
                s.namespace,
                s.name,
                s.target
            ));
            if self.dry_run && s.changed {
                out.push_str(&format!(" keys=[{}]", s.keys.join(",")));
            }
            if !s.message.is_empty() {
                out.push_str(&format!(": {}", s.message));
            }
            out.push('\n');
        }
        for r in &self.restarts {
            out.push_str(&format!("restarted {r}\n"));
        }
        if let Some(p) = &self.push {
            out.push_str(&p.to_text());
            out.push_str(&format!("{} push writes\n", p.writes));
        }
        for e in &self.restart_errors {
            out.push_str(&format!("restart failed: {e}\n"));
        }
        out.push_str(&format!(
            "{} specs, {} failed, {} writes, {} provider calls, {} values read, {} ms{}\n",
            self.specs.len(),
            self.failed().count(),
            self.writes,
            self.provider_calls,
            self.values_read,
            self.duration_ms,
            if self.dry_run {
                " (dry run: nothing written)"
            } else {
                ""
            }
        ));
        out
    }
}
