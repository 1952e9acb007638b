//! Doppler provider for secretsync.
