//! When each spec is due: `refreshInterval` with jitter, `refreshPolicy`, force-sync, and
//! backoff with jitter on errors that honours a provider's retry-after.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rand::Rng;

use super::report::{SpecReport, SyncStatus};
use crate::manifest::{ExternalSecret, RefreshPolicy, SpecId};

/// First retry after an error; doubles per consecutive failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Longest wait between retries.
pub const BACKOFF_MAX: Duration = Duration::from_secs(600);
/// Refreshes are spread over this fraction of the interval, so thousands of specs with
/// the same interval do not fire together.
pub const JITTER_FRACTION: f64 = 0.1;

/// Longest batching window: specs due within it of each other run in one cycle.
pub const BATCH_WINDOW_MAX: Duration = Duration::from_secs(2);
/// The batching window is at most this fraction of the shortest refresh interval, so a
/// spec is never refreshed more than 5 % early.
pub const BATCH_WINDOW_FRACTION: f64 = 0.05;

#[derive(Debug, Clone)]
struct Entry {
    next_due: Option<Instant>,
    failures: u32,
    spec_hash: u64,
    force_token: Option<String>,
    synced_once: bool,
    interval: Option<Duration>,
    policy: RefreshPolicy,
}

/// Tracks when each ExternalSecret is due.
#[derive(Debug, Default)]
pub struct Scheduler {
    entries: BTreeMap<SpecId, Entry>,
}

impl Scheduler {
    /// An empty scheduler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes in the current specs: new specs, changed specs and changed `force-sync`
    /// annotations are due now; specs no longer present are forgotten.
    pub fn observe(&mut self, specs: &[ExternalSecret], now: Instant) {
        let mut seen = BTreeSet::new();
        for es in specs {
            let id = es.id();
            seen.insert(id.clone());
            let hash = es.spec_hash();
            let force = es.force_sync_token().map(str::to_string);
            let interval = es.refresh_interval().ok().flatten();
            let policy = es.refresh_policy();
            match self.entries.get_mut(&id) {
                None => {
                    self.entries.insert(
                        id,
                        Entry {
                            next_due: Some(now),
                            failures: 0,
                            spec_hash: hash,
                            force_token: force,
                            synced_once: false,
                            interval,
                            policy,
                        },
                    );
                }
                Some(e) => {
                    if e.spec_hash != hash || e.force_token != force {
                        e.next_due = Some(now);
                        e.failures = 0;
                    }
                    e.spec_hash = hash;
                    e.force_token = force;
                    e.interval = interval;
                    e.policy = policy;
                }
            }
        }
        self.entries.retain(|id, _| seen.contains(id));
    }

    /// Makes a spec due now (force-sync from outside the manifests).
    pub fn force(&mut self, id: &SpecId, now: Instant) {
        if let Some(e) = self.entries.get_mut(id) {
            e.next_due = Some(now);
        }
    }

    /// Specs due at `now`.
    pub fn due(&self, now: Instant) -> BTreeSet<SpecId> {
        self.entries
            .iter()
            .filter(|(_, e)| e.next_due.is_some_and(|d| d <= now))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The batching window: [`BATCH_WINDOW_MAX`] or [`BATCH_WINDOW_FRACTION`] of the
    /// shortest periodic interval, whichever is smaller (zero when no spec is periodic).
    /// A daemon that runs [`Scheduler::due_within`] this window at each wake runs at most
    /// one cycle per window, while jitter still spreads specs over their interval.
    pub fn window(&self) -> Duration {
        self.entries
            .values()
            .filter(|e| e.policy == RefreshPolicy::Periodic)
            .filter_map(|e| e.interval)
            .filter(|iv| !iv.is_zero())
            .min()
            .map(|iv| iv.mul_f64(BATCH_WINDOW_FRACTION).min(BATCH_WINDOW_MAX))
            .unwrap_or(Duration::ZERO)
    }

    /// Specs due at `now` or within `window` after it: one cycle takes them all.
    pub fn due_within(&self, now: Instant, window: Duration) -> BTreeSet<SpecId> {
        self.due(now + window)
    }

    /// The earliest time a spec becomes due.
    pub fn next_wake(&self) -> Option<Instant> {
        self.entries.values().filter_map(|e| e.next_due).min()
    }

    /// When a spec is next due (`None`: only on change or force-sync).
    pub fn next_due(&self, id: &SpecId) -> Option<Instant> {
        self.entries.get(id).and_then(|e| e.next_due)
    }

    /// Records a spec's result and schedules its next run.
    pub fn record(&mut self, report: &SpecReport, now: Instant) {
        let id = SpecId {
            namespace: report.namespace.clone(),
            name: report.name.clone(),
        };
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        let mut rng = rand::rng();
        if report.status == SyncStatus::SecretSynced {
            e.failures = 0;
            e.synced_once = true;
            e.next_due = match (e.policy, e.interval) {
                (RefreshPolicy::Periodic, Some(iv)) => {
                    let jitter = iv.mul_f64(rng.random_range(0.0..JITTER_FRACTION));
                    Some(now + iv + jitter)
                }
                // interval 0, CreatedOnce and OnChange wait for a spec change or force-sync.
                _ => None,
            };
        } else {
            e.failures = e.failures.saturating_add(1);
            let exp = BACKOFF_BASE.saturating_mul(1u32 << (e.failures - 1).min(16));
            let cap = match (e.policy, e.interval) {
                (RefreshPolicy::Periodic, Some(iv)) => iv.clamp(BACKOFF_BASE, BACKOFF_MAX),
                _ => BACKOFF_MAX,
            };
            let backoff = exp.min(cap);
            // Full jitter between half and all of the backoff.
            let backoff = backoff.mul_f64(rng.random_range(0.5..=1.0));
            let wait = match report.retry_after {
                Some(ra) if ra > backoff => ra,
                _ => backoff,
            };
            e.next_due = Some(now + wait);
        }
    }

    /// Consecutive failures of a spec.
    pub fn failures(&self, id: &SpecId) -> u32 {
        self.entries.get(id).map(|e| e.failures).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::report::Outcome;
    use crate::manifest::load_str;

    fn specs(yaml: &str) -> Vec<ExternalSecret> {
        load_str(yaml, "t.yaml").into_result().unwrap().external_secrets
    }

    fn report(ns: &str, name: &str, ok: bool, retry_after: Option<Duration>) -> SpecReport {
        SpecReport {
            kind: "ExternalSecret",
            name: name.into(),
            namespace: ns.into(),
            target: String::new(),
            status: if ok {
                SyncStatus::SecretSynced
            } else {
                SyncStatus::SecretSyncedError
            },
            changed: false,
            outcome: Outcome::Unchanged,
            message: String::new(),
            fingerprint: None,
            previous_fingerprint: None,
            keys: vec![],
            retryable: !ok,
            retry_after,
        }
    }

    const ES: &str = r#"
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: a, namespace: ns, annotations: {force-sync: "1"}}
spec:
  refreshInterval: 1m
  secretStoreRef: {name: s, kind: ClusterSecretStore}
  data: [{secretKey: K, remoteRef: {key: k}}]
"#;

    #[test]
    fn periodic_with_jitter_force_and_backoff() {
        let t0 = Instant::now();
        let mut s = Scheduler::new();
        let es = specs(ES);
        s.observe(&es, t0);
        let id = es[0].id();
        assert!(s.due(t0).contains(&id), "new specs are due at once");
        s.record(&report("ns", "a", true, None), t0);
        let next = s.next_due(&id).unwrap();
        assert!(
            next >= t0 + Duration::from_secs(60) && next <= t0 + Duration::from_secs(66),
            "interval plus at most 10% jitter"
        );
        assert!(s.due(t0 + Duration::from_secs(30)).is_empty());
        // force-sync annotation changes: due now
        let forced = specs(&ES.replace("force-sync: \"1\"", "force-sync: \"2\""));
        s.observe(&forced, t0 + Duration::from_secs(1));
        assert!(s.due(t0 + Duration::from_secs(1)).contains(&id));
        // errors back off exponentially, capped by the interval, and honour retry-after
        s.record(&report("ns", "a", false, None), t0);
        let d1 = s.next_due(&id).unwrap() - t0;
        assert!(d1 >= Duration::from_millis(2500) && d1 <= BACKOFF_BASE, "{d1:?}");
        s.record(&report("ns", "a", false, Some(Duration::from_secs(45))), t0);
        assert_eq!(s.next_due(&id).unwrap() - t0, Duration::from_secs(45));
        assert_eq!(s.failures(&id), 2);
    }

    #[test]
    fn window_is_the_smaller_of_two_seconds_and_five_percent() {
        let t0 = Instant::now();
        let mut s = Scheduler::new();
        assert_eq!(s.window(), Duration::ZERO);
        let mut es = specs(ES);
        s.observe(&es, t0);
        assert_eq!(s.window(), Duration::from_secs(2), "1m: 5% is 3s, capped at 2s");
        let mut fast = specs(
            &ES.replace("refreshInterval: 1m", "refreshInterval: 10s")
                .replace("name: a", "name: b"),
        );
        es.append(&mut fast);
        s.observe(&es, t0);
        assert_eq!(s.window(), Duration::from_millis(500), "10s: 5%");
        for r in [report("ns", "a", true, None), report("ns", "b", true, None)] {
            s.record(&r, t0);
        }
        let b = es[1].id();
        let due_b = s.next_due(&b).unwrap();
        assert!(s.due(due_b - Duration::from_millis(400)).is_empty());
        assert!(
            s.due_within(due_b - Duration::from_millis(400), s.window())
                .contains(&b)
        );
    }

    #[test]
    fn created_once_and_on_change_wait_for_changes() {
        let t0 = Instant::now();
        for policy in ["CreatedOnce", "OnChange"] {
            let yaml = ES.replace(
                "refreshInterval: 1m",
                &format!("refreshInterval: 1m\n  refreshPolicy: {policy}"),
            );
            let mut s = Scheduler::new();
            let es = specs(&yaml);
            s.observe(&es, t0);
            s.record(&report("ns", "a", true, None), t0);
            assert_eq!(s.next_wake(), None, "{policy}");
            let changed = specs(&yaml.replace("key: k", "key: k2"));
            s.observe(&changed, t0);
            assert_eq!(s.due(t0).len(), 1, "{policy}: a spec change is due");
        }
    }
}
