//! An in-memory sink with every capability: what `run` collects into a child's environment,
//! and what engine tests write to.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use crate::error::Result;
use crate::sink::*;

/// Targets held in memory, with the same Merge semantics as the folder sink.
#[derive(Debug, Default)]
pub struct MemorySink {
    targets: Mutex<HashMap<TargetRef, TargetState>>,
    writes: AtomicU64,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }
    /// What a target holds.
    pub fn get(&self, t: &TargetRef) -> Option<TargetState> {
        self.targets.lock().expect("lock").get(t).cloned()
    }
    /// Puts a target as someone else would (not counted as a write).
    pub fn put(&self, t: TargetRef, state: TargetState) {
        self.targets.lock().expect("lock").insert(t, state);
    }
    /// Writes since creation.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }
    /// All targets, in order.
    pub fn targets(&self) -> Vec<TargetRef> {
        let mut all: Vec<TargetRef> = self.targets.lock().expect("lock").keys().cloned().collect();
        all.sort();
        all
    }
}

#[async_trait]
impl SecretSink for MemorySink {
    fn name(&self) -> &str {
        "memory"
    }
    fn capabilities(&self) -> SinkCapabilities {
        SinkCapabilities::all()
    }
    async fn read(&self, target: &TargetRef) -> Result<Option<TargetState>> {
        Ok(self.get(target))
    }
    /// Compares in place: an unchanged target is not copied.
    async fn compare(&self, desired: &DesiredTarget) -> Result<Compared> {
        let targets = self.targets.lock().expect("lock");
        Ok(match targets.get(&desired.target) {
            None => Compared::Missing,
            Some(cur) if crate::sink::target_matches(desired, cur, &self.capabilities()) => Compared::Matches,
            Some(cur) => Compared::Differs(cur.clone()),
        })
    }
    async fn apply(&self, desired: &DesiredTarget) -> Result<ApplyOutcome> {
        let mut t = self.targets.lock().expect("lock");
        let current = t.get(&desired.target).cloned();
        if let Some(done) = super::precheck(desired, current.as_ref())? {
            return Ok(done);
        }
        let merged = crate::sinks::merged_state(desired, current.as_ref());
        t.insert(
            desired.target.clone(),
            TargetState {
                data: merged.data,
                secret_type: merged.secret_type,
                labels: merged.labels,
                annotations: merged.annotations,
                immutable: merged.immutable,
            },
        );
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(if current.is_some() {
            ApplyOutcome::Updated
        } else {
            ApplyOutcome::Created
        })
    }
    async fn delete(&self, target: &TargetRef) -> Result<bool> {
        let removed = self.targets.lock().expect("lock").remove(target).is_some();
        if removed {
            self.writes.fetch_add(1, Ordering::Relaxed);
        }
        Ok(removed)
    }
}
