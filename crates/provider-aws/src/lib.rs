//! AWS Secrets Manager provider for secretsync.
