//! The testkit's source and writer conformance suites, run against the real provider on the
//! fake Doppler API.
//!
//! The suites name keys `{prefix}-get`, `{prefix}-find-x1`…: lower case and `-`, which
//! Doppler refuses (its names are upper-case letters, digits and underscores). `DopplerNames`
//! maps each name to Doppler's style on the way in (`p-find-x1` → `P_FIND_X1`) and back on
//! the way out — names only; every call still goes to `DopplerSource` and over HTTP to the
//! fake, and the assertions are the suites' own.

mod common;

use std::collections::BTreeMap;

use async_trait::async_trait;
use common::*;
use secretsync_core::source::{
    ChangeToken, Fetched, FindQuery, RemoteDescription, RemoteKey, SecretSource, SecretWriter, SourceCapabilities,
    WriteOutcome, WriteRequest,
};
use secretsync_core::testkit::conformance::{self, Ran};
use secretsync_core::{CallStats, Error, Result};
use secretsync_doppler::DopplerSource;

#[derive(Debug)]
struct DopplerNames(DopplerSource);

fn to_doppler(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

fn from_doppler(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

fn key(k: &RemoteKey) -> RemoteKey {
    RemoteKey {
        key: to_doppler(&k.key),
        version: k.version.clone(),
    }
}

/// Error texts name the Doppler key; name the suite's key instead.
fn err(e: Error) -> Error {
    let fix = |s: &str| {
        s.split('`')
            .enumerate()
            .map(|(i, part)| {
                if i % 2 == 1
                    && part
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                {
                    from_doppler(part)
                } else {
                    part.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("`")
    };
    match e {
        Error::NotFound { what } => Error::NotFound { what: fix(&what) },
        other => other,
    }
}

#[async_trait]
impl SecretSource for DopplerNames {
    fn provider(&self) -> &str {
        self.0.provider()
    }
    fn capabilities(&self) -> SourceCapabilities {
        self.0.capabilities()
    }
    async fn get(&self, k: &RemoteKey) -> Result<Fetched> {
        self.0.get(&key(k)).await.map_err(err)
    }
    async fn get_many(&self, keys: &[RemoteKey]) -> Vec<Result<Fetched>> {
        let keys: Vec<RemoteKey> = keys.iter().map(key).collect();
        self.0
            .get_many(&keys)
            .await
            .into_iter()
            .map(|r| r.map_err(err))
            .collect()
    }
    async fn find(&self, q: &FindQuery) -> Result<Vec<String>> {
        // The suites' regexps are `^<escaped prefix>-find-x`: literal text, `\-` for `-`.
        let q = FindQuery {
            name_regexp: q
                .name_regexp
                .as_ref()
                .map(|r| r.replace("\\-", "-").to_ascii_uppercase().replace('-', "_")),
            path: q.path.as_deref().map(to_doppler),
            tags: q.tags.clone(),
        };
        Ok(self.0.find(&q).await?.iter().map(|n| from_doppler(n)).collect())
    }
    async fn change_tokens(&self, keys: &[RemoteKey]) -> Vec<Result<Option<ChangeToken>>> {
        let keys: Vec<RemoteKey> = keys.iter().map(key).collect();
        self.0
            .change_tokens(&keys)
            .await
            .into_iter()
            .map(|r| r.map_err(err))
            .collect()
    }
    async fn metadata(&self, k: &str) -> Result<BTreeMap<String, String>> {
        self.0.metadata(&to_doppler(k)).await
    }
    fn call_stats(&self) -> Option<&CallStats> {
        self.0.call_stats()
    }
}

#[async_trait]
impl SecretWriter for DopplerNames {
    async fn describe(&self, k: &str) -> Result<Option<RemoteDescription>> {
        self.0.describe(&to_doppler(k)).await.map_err(err)
    }
    async fn put(&self, r: &WriteRequest) -> Result<WriteOutcome> {
        let mut r = r.clone();
        r.key = to_doppler(&r.key);
        self.0.put(&r).await.map_err(err)
    }
    async fn disable_version(&self, k: &str, v: &str) -> Result<()> {
        self.0.disable_version(&to_doppler(k), v).await.map_err(err)
    }
}

async fn doppler() -> (secretsync_fakes::doppler::FakeDoppler, DopplerNames, String) {
    let (fake, _p, _c, token) = fake_with(&[]).await;
    let source = DopplerNames(source(&fake, &token));
    (fake, source, format!("c{:06x}", rand::random::<u32>() & 0xff_ffff))
}

#[tokio::test]
async fn every_applicable_suite_function_passes() {
    let (fake, w, prefix) = doppler().await;
    let p = |s: &str| format!("{prefix}-{s}");
    assert_eq!(
        conformance::source_get_returns_current_value(&w, &p("1")).await,
        Ran::Passed
    );
    assert_eq!(
        conformance::source_get_missing_is_not_found(&w, &p("2")).await,
        Ran::Passed
    );
    assert_eq!(
        conformance::source_get_many_in_order_with_isolated_errors(&w, &p("3")).await,
        Ran::Passed
    );
    assert_eq!(conformance::source_get_many_large(&w, &p("4"), 45).await, Ran::Passed);
    assert_eq!(
        conformance::source_change_tokens_track_writes(&w, &p("5")).await,
        Ran::Passed
    );
    assert_eq!(conformance::source_find_by_name(&w, &p("6")).await, Ran::Passed);
    assert_eq!(conformance::source_find_by_path(&w, &p("7")).await, Ran::Passed);
    assert_eq!(
        conformance::writer_put_creates_then_updates(&w, &p("9")).await,
        Ran::Passed
    );
    assert_eq!(
        conformance::writer_property_merges_json(&w, &p("10")).await,
        Ran::Passed
    );
    assert_eq!(
        conformance::source_values_not_in_debug_or_errors(&w, &p("12")).await,
        Ran::Passed
    );
    // Doppler keeps no versions: these say so rather than pass vacuously.
    assert_eq!(
        conformance::source_previous_version_readable(&w, &p("8")).await,
        Ran::NotApplicable
    );
    assert_eq!(
        conformance::writer_disable_previous(&w, &p("11")).await,
        Ran::NotApplicable
    );
    assert!(
        fake.count("POST", "/v3/configs/config/secrets") > 45,
        "the suites wrote through the fake"
    );
}

#[tokio::test]
async fn whole_suite_runs_ten_of_twelve() {
    let (_fake, w, prefix) = doppler().await;
    assert_eq!(conformance::run_source_suite(&w, &prefix).await, 10);
}
