//! moto's server for the tests (`secretsync_fakes::moto`: `SECRETSYNC_MOTO_URL`, else `.venv/bin/moto_server`
//! started once per test binary on a free port, recording requests, stopped when the binary
//! exits), and AWS builders pointed at it.

#![allow(dead_code)]

use secretsync_aws::{AwsSecretsManager, AwsSecretsManagerBuilder};

pub use secretsync_fakes::moto::{Recorded, recording};

/// The base URL of moto (`http://127.0.0.1:<port>`): `SECRETSYNC_MOTO_URL`, else moto started
/// for this test binary by `secretsync_fakes::moto`. Panics, failing the test, when moto cannot be used.
pub fn moto_url() -> String {
    secretsync_fakes::moto::Moto::shared().url().to_string()
}

/// Requests recorded after `mark` (a length of [`recording`]) whose body mentions `needle`.
pub fn recorded_since(mark: usize, needle: &str) -> Vec<Recorded> {
    recording()
        .into_iter()
        .skip(mark)
        .filter(|r| r.body.contains(needle))
        .collect()
}

/// How many of `recs` are `op`.
pub fn count(recs: &[Recorded], op: &str) -> usize {
    recs.iter().filter(|r| r.op == op).count()
}

/// A random name prefix, so tests run in parallel on one server.
pub fn prefix() -> String {
    format!("t{:08x}-", rand::random::<u32>())
}

/// A builder pointed at moto with dummy credentials, reading nothing from the environment.
pub fn builder() -> AwsSecretsManagerBuilder {
    AwsSecretsManagerBuilder::new()
        .with_region("us-east-1")
        .with_endpoint(moto_url())
        .with_credentials("testing", "testing".into())
}

/// A fresh source on moto (its own call counts).
pub async fn source() -> AwsSecretsManager {
    builder().build().await.expect("build source")
}
