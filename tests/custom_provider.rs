//! A provider outside the workspace crates (`examples/custom-provider/kv.rs`, a team's
//! in-house HTTP secret service) passes the source and writer conformance suite against
//! the real service (`kv_server.py`), and the example syncs its manifest through the
//! `secretsync` command line with the provider registered under its own name.

#[path = "../examples/custom-provider/kv.rs"]
#[allow(dead_code)]
mod kv;

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use secretsync::testkit::conformance;

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kv_server(seed: Option<&Path>) -> Server {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/custom-provider/kv_server.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg("0").stdout(Stdio::piped());
    if let Some(s) = seed {
        cmd.arg(s);
    }
    let mut child = cmd.spawn().expect("python3 runs the in-house service");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .rsplit(' ')
        .next()
        .expect("the server prints its address")
        .to_string();
    Server {
        child,
        url: format!("http://{addr}"),
    }
}

#[tokio::test]
async fn the_out_of_tree_provider_passes_the_conformance_suite() {
    let server = kv_server(None);
    let source = kv::KvSource::new(&server.url, "conf/");
    let passed = conformance::run_source_suite(&source, "kv").await;
    // All 12 but the three its capabilities rule out: change tokens, versions by id and
    // disabling them, which the service does not have.
    assert_eq!(passed, 9, "behaviours that ran");
}

#[test]
fn the_example_syncs_its_manifest_with_the_provider_under_its_own_name() {
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/custom-provider/seed.json");
    let server = kv_server(Some(&seed));
    let dir = tempfile::tempdir().unwrap();
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/custom-provider/manifest.yaml"))
            .unwrap()
            .replace("http://127.0.0.1:8200", &server.url);
    let m = dir.path().join("manifest.yaml");
    std::fs::write(&m, manifest).unwrap();
    let out_dir = dir.path().join("out");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debug/examples/custom-provider");
    let run = |extra: &[&str]| {
        Command::new(&example)
            .args([
                "sync",
                "-m",
                m.to_str().unwrap(),
                "--once",
                "--output",
                out_dir.to_str().unwrap(),
            ])
            .args(extra)
            .output()
            .expect("scripts/test.sh builds the examples first")
    };
    let out = run(&["--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let written = std::fs::read_to_string(out_dir.join("dev/backend-secrets.yaml")).unwrap();
    assert!(
        written.contains("DB_PASSWORD") && written.contains("API_TOKEN"),
        "{written}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["writes"], 1);
    // Again: nothing changed, nothing written.
    let again: serde_json::Value = serde_json::from_slice(&run(&["--format", "json"]).stdout).unwrap();
    assert_eq!(again["writes"], 0);
    // `check` validates the provider's own settings too.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata: {name: s}\nspec: {provider: {kv: {url: 'http://kv.example.com', prefx: a}}}\n",
    )
    .unwrap();
    let out = Command::new(&example)
        .args(["check", "-m", bad.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("bad.yaml: document 1 (ClusterSecretStore s): spec.provider.kv.prefx: unknown field `prefx`"),
        "{err}"
    );
}
