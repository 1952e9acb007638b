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
    pub push: Option<PushReport>,
    /// Event sources that are not flowing, and why (their stores keep polling).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events_down: Vec<EventsDown>,
    /// Change events this cycle handled (an event-driven cycle), 0 for a periodic one.
    #[serde(skip_serializing_if = "is_zero")]
    pub events: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

pub use crate::events::EventsDown;

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
        for d in &self.events_down {
            out.push_str(&format!(
                "events of {} ({}) not flowing, polling continues: {}\n",
                d.store, d.source, d.problem
            ));
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

// ---------------------------------------------------------------- push (crate::push)

/// What happened to one pushed remote key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PushOutcome {
    /// The remote secret did not exist and was created.
    Created,
    /// A new version was written.
    Updated,
    /// The remote value already equals the pushed one: no write.
    Unchanged,
    /// `IfNotExists` (or generate if-absent) and the remote secret exists: left alone.
    Exists,
    /// No longer pushed and `deletionPolicy: Delete`: deleted.
    Deleted,
    /// No longer pushed, but not managed by secretsync or ESO: left alone.
    LeftUnmanaged,
    /// No longer pushed, but the provider cannot delete secrets (Doppler: no mark tells
    /// what secretsync created): left alone, and not tried again.
    LeftNotDeletable,
    /// Nothing was written: see the error.
    Failed,
}

/// One remote key of one PushSecret in one store.
#[derive(Debug, Clone, Serialize)]
pub struct PushEntry {
    /// The PushSecret, `namespace/name`.
    pub push_secret: String,
    /// The store.
    pub store: String,
    /// The remote key (and `.property`).
    pub remote_key: String,
    /// What happened.
    pub outcome: PushOutcome,
    /// Why it failed (names keys, never values).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The result of pushing every PushSecret once.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PushReport {
    /// Writes sent to stores (creates and updates).
    pub writes: u64,
    /// Remote secrets deleted (`deletionPolicy: Delete`).
    pub deletes: u64,
    /// Per remote key.
    pub entries: Vec<PushEntry>,
    /// Problems with a whole PushSecret (its source or its stores).
    pub errors: Vec<String>,
}

impl PushReport {
    /// Whether every push succeeded.
    pub fn ok(&self) -> bool {
        self.errors.is_empty() && self.entries.iter().all(|e| e.outcome != PushOutcome::Failed)
    }
    /// Human-readable lines.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for e in &self.entries {
            let what = match e.outcome {
                PushOutcome::Created => "pushed (created)",
                PushOutcome::Updated => "pushed (updated)",
                PushOutcome::Unchanged => "unchanged",
                PushOutcome::Exists => "exists, left alone",
                PushOutcome::Deleted => "no longer pushed: deleted",
                PushOutcome::LeftUnmanaged => "no longer pushed, not managed: left alone",
                PushOutcome::LeftNotDeletable => "no longer pushed, the provider cannot delete: left alone",
                PushOutcome::Failed => "FAILED",
            };
            out.push_str(&format!(
                "push {} → {} {}: {what}",
                e.push_secret, e.store, e.remote_key
            ));
            if let Some(err) = &e.error {
                out.push_str(&format!(": {err}"));
            }
            out.push('\n');
        }
        for e in &self.errors {
            out.push_str(&format!("push: {e}\n"));
        }
        out
    }
}
