//! Bring your own provider: a team's in-house secret service (`examples/custom-provider/`,
//! API in `kv_server.py`) as a secretsync plug-in registered under the name `kv`, then the
//! whole `secretsync` command line with it — no workspace crate touched.
//!
//! ```sh
//! python3 examples/custom-provider/kv_server.py 8200 examples/custom-provider/seed.json &
//! cargo run --example custom-provider -- sync -m examples/custom-provider/manifest.yaml --once --output out
//! ```

#[path = "custom-provider/kv.rs"]
mod kv;

fn main() {
    secretsync::register_provider(std::sync::Arc::new(kv::KvFactory));
    secretsync::app::cli::main()
}
