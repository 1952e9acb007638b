//! Shared by the integration tests: a fake Doppler with a config, and a source on it.

#![allow(dead_code)]

use std::time::Duration;

use secretsync_doppler::{DopplerBuilder, DopplerSource};
use secretsync_fakes::doppler::FakeDoppler;

/// A random project name, so tests never share state.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

/// A fake with one config holding `secrets`, and a read/write service token for it.
pub async fn fake_with(secrets: &[(&str, &str)]) -> (FakeDoppler, String, String, String) {
    let fake = FakeDoppler::start().await;
    let project = unique("proj");
    let config = "prd".to_string();
    fake.create_config(&project, &config);
    fake.set_secrets(&project, &config, secrets.iter().copied());
    let token = fake.service_token(&project, &config);
    (fake, project, config, token)
}

/// A source on the fake with quick retries.
pub fn builder(fake: &FakeDoppler, token: &str) -> DopplerBuilder {
    DopplerBuilder::new()
        .with_token(token)
        .with_api_host(fake.url())
        .with_backoff(Duration::from_millis(5), Duration::from_millis(40))
}

pub fn source(fake: &FakeDoppler, token: &str) -> DopplerSource {
    builder(fake, token).build().expect("build")
}

/// Downloads seen by the fake, with their statuses.
pub fn downloads(fake: &FakeDoppler) -> Vec<u16> {
    fake.requests()
        .iter()
        .filter(|r| r.path == "/v3/configs/config/secrets/download")
        .map(|r| r.status)
        .collect()
}
