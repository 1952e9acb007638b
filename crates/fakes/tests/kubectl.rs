//! `fake-kube` (the binary) held to kubectl, with no special flags: create (protobuf
//! bodies), apply (client- and server-side, with server-side field validation), get
//! (Table output, short names, wide), patch (strategic, merge, JSON), label and annotate,
//! rollout restart, watch, delete, for Secrets, ConfigMaps, Namespaces, Deployments and
//! the ESO kinds. A missing kubectl fails the test.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

struct Kubectl {
    bin: PathBuf,
    home: tempfile::TempDir,
    kubeconfig: PathBuf,
    request_log: PathBuf,
    server: tokio::process::Child,
}

impl Kubectl {
    async fn start() -> Kubectl {
        let bin = common::on_path("kubectl");
        let home = tempfile::tempdir().unwrap();
        let kubeconfig = home.path().join("kubeconfig");
        let request_log = home.path().join("requests.jsonl");
        let server = tokio::process::Command::new(env!("CARGO_BIN_EXE_fake-kube"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--request-log")
            .arg(&request_log)
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start fake-kube");
        for _ in 0..200 {
            if std::fs::metadata(&kubeconfig).is_ok_and(|m| m.len() > 0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(kubeconfig.exists(), "fake-kube wrote no kubeconfig");
        Kubectl {
            bin,
            home,
            kubeconfig,
            request_log,
            server,
        }
    }

    fn cmd(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.bin);
        c.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            // Its own discovery cache, so runs do not share one.
            .env("HOME", self.home.path())
            .env("KUBECACHEDIR", self.home.path().join("cache"));
        c
    }

    async fn ok(&self, args: &[&str]) -> String {
        common::run_ok(&mut self.cmd(args), &format!("kubectl {}", args.join(" "))).await
    }

    async fn err(&self, args: &[&str]) -> String {
        common::run_err(&mut self.cmd(args), &format!("kubectl {}", args.join(" "))).await
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all).await).unwrap()
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p = self.home.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    }
}

fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: app
        image: app:1
        env: [{name: MODE, value: prod}]
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_common_commands() {
    let k = Kubectl::start().await;

    // create: kubectl sends these as protobuf.
    k.ok(&["create", "namespace", "team"]).await;
    k.ok(&[
        "-n",
        "team",
        "create",
        "secret",
        "generic",
        "db",
        "--from-literal=password=s3cret",
    ])
    .await;
    k.ok(&[
        "-n",
        "team",
        "create",
        "configmap",
        "settings",
        "--from-literal=mode=prod",
    ])
    .await;
    let db = k.json(&["-n", "team", "get", "secret", "db"]).await;
    assert_eq!(db["data"]["password"], "czNjcmV0");
    assert_eq!(db["type"], "Opaque");
    let err = k
        .err(&["-n", "nowhere", "create", "configmap", "x", "--from-literal=a=b"])
        .await;
    assert!(err.contains("namespaces \"nowhere\" not found"), "{err}");

    // get: Table output, short names, wide.
    let table = k.ok(&["-n", "team", "get", "secrets"]).await;
    assert_eq!(rows(&table)[0], ["NAME", "TYPE", "DATA", "AGE"]);
    assert_eq!(rows(&table)[1][..3], ["db", "Opaque", "1"]);
    let table = k.ok(&["-n", "team", "get", "cm"]).await;
    assert_eq!(rows(&table)[1][..2], ["settings", "1"]);
    let table = k.ok(&["get", "ns"]).await;
    let names: Vec<String> = rows(&table)[1..].iter().map(|r| r[0].clone()).collect();
    assert_eq!(
        names,
        ["default", "kube-node-lease", "kube-public", "kube-system", "team"]
    );

    // apply (client-side, with the server validating fields strictly): create, configure.
    let dep = k.file("deploy.yaml", DEPLOYMENT);
    assert!(
        k.ok(&["-n", "team", "apply", "-f", &dep])
            .await
            .contains("deployment.apps/web created")
    );
    let changed = k.file("deploy2.yaml", &DEPLOYMENT.replace("app:1", "app:2"));
    assert!(
        k.ok(&["-n", "team", "apply", "-f", &changed])
            .await
            .contains("deployment.apps/web configured")
    );
    let wide = k.ok(&["-n", "team", "get", "deploy", "-o", "wide"]).await;
    assert_eq!(
        rows(&wide)[0],
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    assert_eq!(rows(&wide)[1][5..], ["app", "app:2", "app=web"]);
    let bogus = k.file(
        "bogus.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bogus}\ndata: {a: b}\ndatta: {c: d}\n",
    );
    let err = k.err(&["-n", "team", "apply", "-f", &bogus]).await;
    assert!(err.contains("unknown field \"datta\""), "{err}");

    // patch: strategic (the default) merges containers by name; JSON patch; merge patch.
    k.ok(&[
        "-n",
        "team",
        "patch",
        "deploy",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"proxy","image":"proxy:1"}]}}}}"#,
    ])
    .await;
    k.ok(&[
        "-n",
        "team",
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":3}]"#,
    ])
    .await;
    k.ok(&[
        "-n",
        "team",
        "patch",
        "secret",
        "db",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"tier":"db"}}}"#,
    ])
    .await;
    let d = k.json(&["-n", "team", "get", "deploy", "web"]).await;
    let containers: Vec<&str> = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(containers, ["app", "proxy"]);
    assert_eq!(d["spec"]["replicas"], 3);

    // rollout restart: a strategic merge patch of the template's annotations.
    k.ok(&["-n", "team", "rollout", "restart", "deployment/web"]).await;
    let d = k.json(&["-n", "team", "get", "deploy", "web"]).await;
    assert!(d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].is_string());
    assert_eq!(d["metadata"]["generation"], 5, "create, apply, two patches, restart");

    // The ESO kinds: apply, server-side apply, annotate, printer columns.
    let eso = k.file(
        "eso.yaml",
        "apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata: {name: gcp}
spec: {provider: {fake: {data: []}}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: db, namespace: team}
spec:
  refreshInterval: 1h
  secretStoreRef: {name: gcp, kind: ClusterSecretStore}
  target: {name: db}
  data: [{secretKey: password, remoteRef: {key: db-password}}]
",
    );
    k.ok(&["apply", "-f", &eso]).await;
    k.ok(&["apply", "--server-side", "-f", &eso]).await;
    k.ok(&["-n", "team", "annotate", "es", "db", "force-sync=1", "--overwrite"])
        .await;
    let es = k.ok(&["-n", "team", "get", "es"]).await;
    assert_eq!(
        rows(&es)[0],
        ["NAME", "STORE", "REFRESH", "INTERVAL", "STATUS", "READY"]
    );
    assert_eq!(rows(&es)[1][..3], ["db", "gcp", "1h"]);
    let es = k
        .json(&["-n", "team", "get", "externalsecret", "db", "--show-managed-fields"])
        .await;
    assert_eq!(es["metadata"]["annotations"]["force-sync"], "1");
    let managers: Vec<&str> = es["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["manager"].as_str().unwrap())
        .collect();
    assert!(
        managers.contains(&"kubectl") && managers.contains(&"kubectl-annotate"),
        "{managers:?}"
    );
    assert_eq!(rows(&k.ok(&["get", "css"]).await)[1][0], "gcp");

    // watch: events as kubectl prints them.
    let mut watch = k
        .cmd(&[
            "-n",
            "team",
            "get",
            "secrets",
            "--watch",
            "--output-watch-events",
            "-o",
            "json",
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    k.ok(&["-n", "team", "create", "secret", "generic", "w", "--from-literal=a=b"])
        .await;
    k.ok(&["-n", "team", "label", "secret", "w", "x=y"]).await;
    k.ok(&["-n", "team", "delete", "secret", "w"]).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    watch.start_kill().unwrap();
    let out = watch.wait_with_output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let events: Vec<(String, String)> = serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .map(|v| {
            let v = v.unwrap();
            (
                v["type"].as_str().unwrap().to_string(),
                v["object"]["metadata"]["name"].as_str().unwrap().to_string(),
            )
        })
        .filter(|(_, n)| n == "w")
        .collect();
    let types: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(types, ["ADDED", "MODIFIED", "DELETED"], "{text}");

    // delete: kubectl waits for the object to go, a namespace included.
    k.ok(&["-n", "team", "delete", "externalsecret", "db"]).await;
    k.ok(&["delete", "namespace", "team"]).await;
    let err = k.err(&["get", "namespace", "team"]).await;
    assert!(err.contains("NotFound"), "{err}");

    // Every request was logged with kubectl's user agent.
    let log = std::fs::read_to_string(&k.request_log).unwrap();
    let lines: Vec<Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.len() > 20);
    for l in &lines {
        for f in ["method", "path", "query", "status"] {
            assert!(l.get(f).is_some(), "{l}");
        }
        assert!(l["userAgent"].as_str().unwrap_or("").starts_with("kubectl"), "{l}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l["method"] == "POST" && l["path"] == "/api/v1/namespaces/team/secrets" && l["status"] == 201)
    );
    let mut server = k.server;
    server.start_kill().ok();
}
