//! Leader election through a `coordination.k8s.io/v1` Lease.
//!
//! One replica holds the Lease and writes; the others watch it and take it over when the
//! holder stops renewing. The algorithm is client-go's:
//!
//! - acquire when the Lease is missing, has no holder, or is expired;
//! - renew every third of the lease duration, with optimistic concurrency
//!   (`resourceVersion`), so two replicas can never both succeed;
//! - a Lease is expired when its `renewTime` plus `leaseDurationSeconds` is past, or when
//!   its record has not changed for a whole lease duration as this replica observed it
//!   (the latter does not trust clocks across machines);
//! - the holder steps down (stops writing) as soon as a renewal fails or has not
//!   succeeded within the renew deadline (two thirds of the duration), before anyone
//!   else may take over;
//! - on shutdown the holder releases the Lease, so another replica takes over at once.

use std::fmt;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::sync::watch;

/// Settings of one Lease.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Lease name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// How long a Lease is valid after its last renewal.
    pub duration: Duration,
    /// How often the holder renews (default a third of `duration`).
    pub renew_every: Duration,
    /// How often a non-holder checks whether it may take over.
    pub retry_every: Duration,
}

impl LeaseConfig {
    /// A Lease with client-go's proportions: renew every third of `duration`, retry
    /// every tenth.
    pub fn new(name: impl Into<String>, namespace: impl Into<String>, duration: Duration) -> Self {
        Self {
            name: name.into(),
            namespace: namespace.into(),
            duration,
            renew_every: duration / 3,
            retry_every: (duration / 10).max(Duration::from_millis(100)),
        }
    }

    /// The longest a holder keeps writing without a successful renewal.
    pub fn renew_deadline(&self) -> Duration {
        self.duration.mul_f64(2.0 / 3.0)
    }
}

/// What the last round of election decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Round {
    Leading,
    Following,
}

/// Runs the election for one identity and publishes whether it leads.
pub(crate) struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    identity: String,
    tx: watch::Sender<bool>,
    observed: Option<(String, Instant)>,
    last_renew: Option<Instant>,
}

impl fmt::Debug for LeaderElector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaderElector")
            .field("lease", &format!("{}/{}", self.config.namespace, self.config.name))
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

fn now_micro() -> MicroTime {
    MicroTime(Timestamp::now())
}

/// A fingerprint of the parts of a Lease that change on every renewal.
fn record_of(l: &Lease) -> String {
    let spec = l.spec.clone().unwrap_or_default();
    format!(
        "{}|{}|{}",
        spec.holder_identity.unwrap_or_default(),
        spec.renew_time.map(|t| t.0.to_string()).unwrap_or_default(),
        l.metadata.resource_version.clone().unwrap_or_default()
    )
}

impl LeaderElector {
    pub(crate) fn new(client: kube::Client, config: LeaseConfig, identity: String, tx: watch::Sender<bool>) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            identity,
            tx,
            observed: None,
            last_renew: None,
        }
    }

    fn set_leader(&self, leading: bool) {
        let was = *self.tx.borrow();
        if was != leading {
            if leading {
                tracing::info!(lease = %self.config.name, identity = %self.identity, "became leader");
            } else {
                tracing::warn!(lease = %self.config.name, identity = %self.identity, "stepped down: no longer leader");
            }
            self.tx.send_replace(leading);
        }
    }

    /// Runs until `stop` resolves, then releases the Lease when held.
    pub(crate) async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            let round =
                match tokio::time::timeout(self.config.retry_every.max(Duration::from_secs(1)), self.round()).await {
                    Ok(r) => r,
                    Err(_) => {
                        tracing::warn!(lease = %self.config.name, "lease request timed out");
                        Round::Following
                    }
                };
            // A holder that could not renew in time must stop writing before anyone else
            // may take over.
            let within_deadline = self
                .last_renew
                .is_some_and(|t| t.elapsed() < self.config.renew_deadline());
            self.set_leader(round == Round::Leading && within_deadline);
            let wait = if round == Round::Leading {
                self.config.renew_every
            } else {
                self.config.retry_every
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        if *self.tx.borrow() {
            self.set_leader(false);
            self.release().await;
        }
    }

    async fn round(&mut self) -> Round {
        let current = match self.api.get_opt(&self.config.name).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(lease = %self.config.name, error = %secretsync_k8s::from_kube(e, "reading the Lease"), "lease check failed");
                return Round::Following;
            }
        };
        let Some(mut lease) = current else {
            return self.create().await;
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let record = record_of(&lease);
        let now = Instant::now();
        let observed_at = match &self.observed {
            Some((r, at)) if *r == record => *at,
            _ => {
                self.observed = Some((record, now));
                now
            }
        };
        let duration = spec
            .lease_duration_seconds
            .map(|s| Duration::from_secs(s.max(1) as u64))
            .unwrap_or(self.config.duration);
        if holder == self.identity {
            return self.update(&mut lease, false).await;
        }
        let stale_locally = now.duration_since(observed_at) >= duration;
        let stale_by_time = spec.renew_time.as_ref().is_some_and(|t| {
            let age = Timestamp::now().duration_since(t.0);
            age.as_secs_f64() >= duration.as_secs_f64()
        });
        if holder.is_empty() || stale_locally || stale_by_time {
            return self.update(&mut lease, true).await;
        }
        Round::Following
    }

    async fn create(&mut self) -> Round {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.config.name.clone()),
                namespace: Some(self.config.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(self.config.duration.as_secs().max(1) as i32),
                acquire_time: Some(now_micro()),
                renew_time: Some(now_micro()),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(_) => {
                self.last_renew = Some(Instant::now());
                Round::Leading
            }
            Err(e) => {
                tracing::debug!(lease = %self.config.name, error = %secretsync_k8s::from_kube(e, "creating the Lease"), "lease taken by another replica");
                Round::Following
            }
        }
    }

    /// Renews (ours) or takes over (expired or free); the `resourceVersion` we read makes a
    /// concurrent writer's request fail with 409.
    async fn update(&mut self, lease: &mut Lease, takeover: bool) -> Round {
        let started = Instant::now();
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if takeover {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(now_micro());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.lease_duration_seconds = Some(self.config.duration.as_secs().max(1) as i32);
        spec.renew_time = Some(now_micro());
        match self.api.replace(&self.config.name, &PostParams::default(), lease).await {
            Ok(_) => {
                if takeover {
                    tracing::info!(lease = %self.config.name, identity = %self.identity, "took over the lease");
                }
                self.last_renew = Some(started);
                Round::Leading
            }
            Err(e) => {
                let e = secretsync_k8s::from_kube(e, "renewing the Lease");
                if takeover {
                    tracing::debug!(lease = %self.config.name, error = %e, "lease taken by another replica");
                } else {
                    tracing::warn!(lease = %self.config.name, error = %e, "lease renewal failed");
                }
                self.last_renew = None;
                Round::Following
            }
        }
    }

    /// Gives the Lease up so another replica need not wait for it to expire.
    async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = Some(now_micro());
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.config.name, identity = %self.identity, "released the lease"),
            Err(e) => {
                tracing::warn!(lease = %self.config.name, error = %secretsync_k8s::from_kube(e, "releasing the Lease"), "lease release failed")
            }
        }
    }
}
