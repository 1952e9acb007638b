//! secretsync facade.
