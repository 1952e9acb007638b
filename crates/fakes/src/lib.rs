//! Faithful fakes of the wire APIs secretsync talks to, served over loopback so tests
//! drive the real client libraries against them: Doppler's REST API, GCP Secret
//! Manager's REST API and the Kubernetes API server. Each keeps a request log for
//! counting calls. [`moto`] runs the real AWS emulator for tests, [`pubsub`] Google's
//! Pub/Sub emulator; [`daemon`] runs the `secretsync` daemon itself as a child process.

pub mod daemon;
pub mod doppler;
pub mod gcp;
pub mod kube;
pub mod moto;
pub mod pubsub;
pub mod pulumi;
pub mod signal;
