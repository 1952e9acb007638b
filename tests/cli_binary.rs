//! The `secretsync` binary as people run it: subcommands, `--version`, completions, exit
//! codes of `run`, signals, `--stdout` into a pipe, `--env-file` collisions, folders of real
//! repositories, `check`, daemon output (`--quiet`, JSON `time`, no colour when piped).

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_secretsync");

fn quickstart() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/manifests/quickstart.yaml")
}

fn secretsync(args: &[&str]) -> Output {
    std::process::Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn write(dir: &Path, rel: &str, body: &str) -> PathBuf {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, body).unwrap();
    p
}

const STORE: &str = "apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {name: local, namespace: dev}\nspec: {provider: {file: {path: secrets.yaml}}}\n";

fn es(name: &str, store: &str) -> String {
    format!(
        "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: {name}, namespace: dev}}\nspec:\n  refreshInterval: 1s\n  secretStoreRef: {{name: {store}}}\n  data:\n    - {{secretKey: TOKEN, remoteRef: {{key: token}}}}\n"
    )
}

#[test]
fn version_help_and_completions() {
    let out = secretsync(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        format!("secretsync {}", env!("CARGO_PKG_VERSION"))
    );
    let out = secretsync(&["--help"]);
    for sub in ["sync", "check", "rotate", "run", "operator", "completions"] {
        assert!(text(&out.stdout).contains(sub), "{sub} in --help");
    }
    let out = secretsync(&["completions", "bash"]);
    assert!(out.status.success());
    let script = text(&out.stdout);
    assert!(
        script.contains("_secretsync") && script.contains("--env-file"),
        "a bash completion script"
    );
    // bash accepts it.
    let mut bash = std::process::Command::new("bash")
        .args(["-n"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    bash.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    assert!(bash.wait().unwrap().success());
    assert_eq!(secretsync(&["sync"]).status.code(), Some(2), "missing --manifest");
    assert_eq!(secretsync(&["nope"]).status.code(), Some(2));
}

#[test]
fn quickstart_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let q = quickstart();
    let args = [
        "sync",
        "--manifest",
        q.to_str().unwrap(),
        "--once",
        "--output",
        out_dir.to_str().unwrap(),
    ];
    let out = secretsync(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out_dir.join("tomoda/backend-secrets-dev.yaml").exists());
    let out = secretsync(&args);
    assert!(text(&out.stdout).contains("0 writes"), "{}", text(&out.stdout));
}

#[test]
fn stdout_is_only_manifests_and_pipes_into_kubectl_apply() {
    let q = quickstart();
    let out = secretsync(&["sync", "-m", q.to_str().unwrap(), "--once", "--stdout"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let docs: Vec<serde_norway::Value> = serde_norway::Deserializer::from_str(&stdout)
        .map(|d| serde::Deserialize::deserialize(d).expect("each document is YAML"))
        .filter(|v: &serde_norway::Value| !v.is_null())
        .collect();
    assert_eq!(docs.len(), 4, "{stdout}");
    for d in &docs {
        assert!(
            matches!(d["kind"].as_str(), Some("Secret" | "ConfigMap")) && d["apiVersion"] == "v1",
            "{d:?}"
        );
        assert!(d["metadata"]["name"].is_string());
    }
    assert!(!stdout.contains("writes"), "the report is not on stdout: {stdout}");
    assert!(text(&out.stderr).contains("writes"), "the report is on stderr");
}

#[test]
fn env_file_without_placeholders_for_several_targets_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("all.env");
    let q = quickstart();
    let out = secretsync(&[
        "sync",
        "-m",
        q.to_str().unwrap(),
        "--once",
        "--env-file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("all.env") && err.contains("{namespace}") && err.contains("tomoda/backend-secrets-dev"),
        "{err}"
    );
    assert!(!file.exists(), "nothing written");
    let template = dir.path().join("{namespace}/{name}.env");
    let out = secretsync(&[
        "sync",
        "-m",
        q.to_str().unwrap(),
        "--once",
        "--env-file",
        template.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(dir.path().join("tomoda/backend-secrets-dev.env").exists());
}

/// A repository: manifests in subfolders, beside Deployments, Services and a
/// kustomization; one ExternalSecret names a store that is not there.
fn repository(dir: &Path, with_orphan: bool) {
    write(dir, "secrets.yaml", "token: t0k3n\n");
    write(dir, "platform/store.yaml", STORE);
    write(
        dir,
        "apps/api/manifests.yaml",
        &format!(
            "{}---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: api}}\nspec: {{}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: api}}\nspec: {{}}\n",
            es("api", "local")
        ),
    );
    write(
        dir,
        "apps/kustomization.yaml",
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [api/manifests.yaml]\n",
    );
    write(dir, ".git/junk.yaml", "{{ not yaml\n");
    if with_orphan {
        write(dir, "apps/web/es.yaml", &es("web", "missing"));
    }
}

#[test]
fn folders_recurse_ignore_other_kinds_and_a_missing_store_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    repository(dir.path(), true);
    let secrets_yaml = dir.path().join("secrets.yaml");
    // The store's file is relative to the store's manifest.
    std::fs::rename(&secrets_yaml, dir.path().join("platform/secrets.yaml")).unwrap();
    let out_dir = dir.path().join("out");
    let d = dir.path().to_str().unwrap();
    let out = secretsync(&[
        "sync",
        "-m",
        d,
        "--once",
        "--output",
        out_dir.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let specs = report["specs"].as_array().unwrap();
    assert_eq!(specs.len(), 2, "{report}");
    let api = specs.iter().find(|s| s["name"] == "api").unwrap();
    let web = specs.iter().find(|s| s["name"] == "web").unwrap();
    assert_eq!(api["status"], "SecretSynced");
    assert_eq!(web["status"], "SecretSyncedError");
    assert!(web["message"].as_str().unwrap().contains("missing store"), "{web}");
    assert!(out_dir.join("dev/api.yaml").exists(), "the other spec synced");

    // `check` fails on what the run fails on, offline, with the same message.
    let out = secretsync(&["check", "-m", d]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("missing store") && err.contains("es.yaml"), "{err}");

    std::fs::remove_file(dir.path().join("apps/web/es.yaml")).unwrap();
    let out = secretsync(&["check", "-m", d]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let notes = text(&out.stdout);
    for kind in ["Deployment", "Service", "Kustomization"] {
        assert!(notes.contains(&format!("ignored kind `{kind}`")), "{kind}: {notes}");
    }
    assert!(notes.contains("1 ExternalSecret"), "{notes}");
}

#[test]
fn check_rejects_an_unknown_provider_like_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let m = write(
        dir.path(),
        "m.yaml",
        "apiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata: {name: s}\nspec: {provider: {vault: {server: x}}}\n",
    );
    let out = secretsync(&["check", "-m", m.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
}

fn run_manifest(dir: &Path) -> PathBuf {
    write(dir, "secrets.yaml", "token: t0k3n\n");
    let mut m = String::from(STORE);
    m.push_str("---\n");
    m.push_str(&es("app", "local"));
    write(dir, "m.yaml", &m)
}

#[test]
fn run_exit_codes_follow_the_shell() {
    let dir = tempfile::tempdir().unwrap();
    let m = run_manifest(dir.path());
    let m = m.to_str().unwrap();
    let code = |cmd: &[&str]| {
        let mut args = vec!["run", "-m", m, "--"];
        args.extend_from_slice(cmd);
        secretsync(&args).status.code()
    };
    assert_eq!(code(&["sh", "-c", "test \"$TOKEN\" = t0k3n && exit 7"]), Some(7));
    assert_eq!(code(&["/no/such/command"]), Some(127));
    let not_exec = write(dir.path(), "not-exec.sh", "echo hi\n");
    assert_eq!(code(&[not_exec.to_str().unwrap()]), Some(126));
    assert_eq!(code(&["sh", "-c", "kill -TERM $$"]), Some(143), "128 + SIGTERM");
}

fn signal(pid: u32, sig: &str) {
    assert!(
        std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

fn alive(pid: &str) -> bool {
    std::process::Command::new("kill")
        .args(["-0", pid])
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

async fn wait_for_file(p: &Path) -> String {
    let start = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(p)
            && s.ends_with('\n')
        {
            return s.trim().to_string();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{} never appeared",
            p.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn run_forwards_sigterm_and_sigint_waits_and_returns_the_child_code() {
    for (sig, trap, want) in [("-TERM", "TERM", 7), ("-INT", "INT", 5), ("-HUP", "HUP", 9)] {
        let dir = tempfile::tempdir().unwrap();
        let m = run_manifest(dir.path());
        let pidfile = dir.path().join("child.pid");
        let script = format!(
            "trap 'echo got-{trap}; exit {want}' {trap}; echo $$ > {}; while :; do sleep 0.1; done",
            pidfile.display()
        );
        let child = tokio::process::Command::new(BIN)
            .args(["run", "-m", m.to_str().unwrap(), "--", "sh", "-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let grandchild = wait_for_file(&pidfile).await;
        signal(child.id().unwrap(), sig);
        let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
            .await
            .expect("run exits after its command")
            .unwrap();
        assert_eq!(out.status.code(), Some(want), "{sig}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim(), format!("got-{trap}"));
        assert!(!alive(&grandchild), "{sig}: the command is not orphaned");
    }
}

#[tokio::test]
async fn sync_daemon_stops_on_the_first_signal_and_reports_with_time_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let m = run_manifest(dir.path());
    let out_dir = dir.path().join("out");
    let child = tokio::process::Command::new(BIN)
        .args([
            "sync",
            "-m",
            m.to_str().unwrap(),
            "--output",
            out_dir.to_str().unwrap(),
            "--format",
            "json",
            "--quiet",
            "--log",
            "debug",
        ])
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Several 1s cycles: only the first wrote.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    signal(child.id().unwrap(), "-TERM");
    let out = tokio::time::timeout(Duration::from_secs(5), child.wait_with_output())
        .await
        .expect("stops at once")
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let reports: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(reports.len(), 1, "--quiet prints only the cycle that wrote: {stdout}");
    assert_eq!(reports[0]["writes"], 1);
    let time = reports[0]["time"].as_str().expect("a time");
    assert!(
        time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "{time}"
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("DEBUG"), "logs at debug: {stderr}");
    assert!(!stderr.contains('\u{1b}'), "no colour into a pipe: {stderr}");
}

/// `check` runs each provider's own offline validation: an AWS endpoint without a scheme, a
/// store with no region anywhere, a plain-http endpoint to another host and a misspelt field
/// all fail `check` (exit 2), each named by file, document and field, all listed at once.
#[cfg(feature = "aws")]
#[test]
fn check_runs_each_providers_offline_validation() {
    let dir = tempfile::tempdir().unwrap();
    let store = |name: &str, body: &str| {
        format!(
            "apiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata: {{name: {name}}}\nspec:\n  provider:\n    aws:\n{body}---\n"
        )
    };
    let m = write(
        dir.path(),
        "stores.yaml",
        &[
            store(
                "no-scheme",
                "      region: eu-central-1\n      endpoint: localhost:5000\n",
            ),
            store("no-region", "      service: SecretsManager\n"),
            store(
                "plain-http",
                "      region: eu-central-1\n      endpoint: http://sm.example.com\n",
            ),
            store("typo", "      regoin: eu-central-1\n"),
        ]
        .concat(),
    );
    let out = std::process::Command::new(BIN)
        .args(["check", "-m", m.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env("AWS_CONFIG_FILE", dir.path().join("no-such-config"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for expected in [
        "stores.yaml: document 1 (ClusterSecretStore no-scheme): spec.provider.aws.endpoint: `localhost:5000` is not a URL",
        "stores.yaml: document 2 (ClusterSecretStore no-region): spec.provider.aws.region: no region",
        "stores.yaml: document 3 (ClusterSecretStore plain-http): spec.provider.aws.endpoint: plain http to `sm.example.com` is refused",
        "stores.yaml: document 4 (ClusterSecretStore typo): spec.provider.aws.regoin: unknown field `regoin`",
    ] {
        assert!(err.contains(expected), "missing `{expected}` in:\n{err}");
    }
    assert!(err.contains("4 problem(s) found"), "{err}");
}

/// An HTTP server that is not AWS: answers every request 404 with an HTML page.
fn not_aws() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            use std::io::{Read, Write};
            let mut buf = [0u8; 65536];
            let _ = s.read(&mut buf);
            let body = "<html>not here</html>";
            let _ = write!(
                s,
                "HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}")
}

fn aws_manifest(dir: &Path) -> PathBuf {
    write(
        dir,
        "aws.yaml",
        "apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {name: aws, namespace: dev}\nspec: {provider: {aws: {service: SecretsManager, region: us-east-1}}}\n---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {name: api, namespace: dev}\nspec:\n  secretStoreRef: {name: aws}\n  data:\n    - {secretKey: DB, remoteRef: {key: db}}\n",
    )
}

/// Errors say how to fix: the endpoint that answered and its HTTP status, the host that
/// does not resolve; a failed read is not a value read.
#[cfg(feature = "aws")]
#[test]
fn aws_errors_name_the_endpoint_and_what_went_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let m = aws_manifest(dir.path());
    let run = |endpoint: &str| {
        let out = std::process::Command::new(BIN)
            .args(["sync", "--once", "--format", "json", "-m"])
            .arg(&m)
            .arg("--output")
            .arg(dir.path().join("out"))
            .env("AWS_ACCESS_KEY_ID", "x")
            .env("AWS_SECRET_ACCESS_KEY", "y")
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_MAX_ATTEMPTS", "1")
            .env("SECRETSYNC_STATE_DIR", dir.path().join("state"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["values_read"], 0, "a failed read is not a value read: {report}");
        report["specs"][0]["message"].as_str().unwrap().to_string()
    };
    let url = not_aws();
    let message = run(&url);
    assert!(message.contains(&format!("at {url}")), "names the endpoint: {message}");
    assert!(message.contains("HTTP 404"), "names the status: {message}");
    assert!(
        message.contains("is the endpoint an AWS Secrets Manager API?"),
        "{message}"
    );
    let message = run("https://no-such-host.invalid");
    assert!(
        message.contains("at https://no-such-host.invalid"),
        "names the host: {message}"
    );
    assert!(message.contains("does not resolve"), "{message}");
}

/// No cluster configuration: say which file is missing and what to do instead, not
/// "unauthenticated" with a redacted path.
#[cfg(feature = "k8s")]
#[test]
fn a_missing_kubeconfig_is_named_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["sync", "--once", "-m", quickstart().to_str().unwrap()])
        .env("KUBECONFIG", dir.path().join("nope.yaml"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("SECRETSYNC_STATE_DIR", dir.path().join("state"))
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let missing = dir.path().join("nope.yaml");
    assert!(
        err.contains(&format!("KUBECONFIG names {}, which does not exist", missing.display())),
        "{err}"
    );
    assert!(err.contains("--output DIR"), "says what to do instead: {err}");
    assert!(!err.contains("REDACTED") && !err.contains("unauthenticated"), "{err}");
}
