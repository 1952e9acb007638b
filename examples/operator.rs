//! `operator`: an External Secrets Operator-compatible controller (feature `k8s`).
//!
//! ```text
//! operator [--group G] [--api-version v1|v1beta1] [--namespace NS]
//!          [--leader-elect] [--lease-name N] [--lease-namespace NS] [--lease-duration 15s]
//!          [--shards N --shard-index I] [--metrics-addr 0.0.0.0:8080]
//!          [--no-restart] [--no-watch-targets] [--refresh-token-file PATH]
//!          [--log-format text|json] [--log info]
//! ```
//!
//! Watches ExternalSecret, SecretStore, ClusterSecretStore and ClusterExternalSecret in
//! the API group `G` (ESO's `external-secrets.io` by default) and keeps their targets in
//! sync; serves `/metrics`, `/healthz` and `/readyz`, and change events (`POST /refresh`
//! with the bearer token from `--refresh-token-file` or `SECRETSYNC_REFRESH_TOKEN`, Doppler
//! webhooks at `/events/doppler/...`; docs/events.md). See `deploy/README.md`.
//! The `secretsync operator` subcommand, as a thin demo of the library (`secretsync::app`).
//! Build: `cargo build --example operator --features k8s` (add `aws`, `gcp`, `doppler`,
//! `pulumi` or use `full` for the providers).

fn main() {
    secretsync::app::cli::main_with_subcommand("operator")
}
