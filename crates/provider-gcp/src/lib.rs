//! GCP Secret Manager provider for secretsync.
