//! Kubernetes Secrets/ConfigMaps sink, consumer restarts and controller mode for secretsync.
