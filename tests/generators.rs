//! Generators on ExternalSecrets (`sourceRef.generatorRef`, ESO's `Password` and `UUID`)
//! through the real `secretsync` binary, and "generate only if absent" (ESO #5782): seed
//! 000's generated values (JWT, DB and Redis passwords, made by `setup-gcp-secrets.sh`
//! today) are made once, kept across runs, and sit next to values read from a store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;

const BIN: &str = env!("CARGO_BIN_EXE_secretsync");

/// Seed 000's backend Secret: OAuth values from the store, JWT/DB/Redis generated.
/// `annotation` is the `secretsync.io/generate` line of the ExternalSecret (or nothing).
fn manifests(annotation: &str) -> String {
    format!(
        r#"apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {{name: local, namespace: tomoda}}
spec: {{provider: {{file: {{path: secrets.yaml}}}}}}
---
apiVersion: generators.external-secrets.io/v1alpha1
kind: Password
metadata: {{name: jwt, namespace: tomoda}}
spec: {{length: 64, digits: 16, symbols: 0, allowRepeat: true}}
---
apiVersion: generators.external-secrets.io/v1alpha1
kind: Password
metadata: {{name: db}}
spec: {{length: 24, symbols: 0, allowRepeat: true, encoding: base64}}
---
apiVersion: generators.external-secrets.io/v1alpha1
kind: UUID
metadata: {{name: instance}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata:
  name: backend-secrets-dev
  namespace: tomoda
  annotations: {{{annotation}}}
spec:
  refreshInterval: 1h
  secretStoreRef: {{name: local}}
  target: {{name: backend-secrets-dev}}
  data:
    - secretKey: GOOGLE_CLIENT_ID
      remoteRef: {{key: tomoda-google-client-id}}
    - secretKey: JWT_SECRET
      remoteRef: {{key: password}}
      sourceRef:
        generatorRef: {{apiVersion: generators.external-secrets.io/v1alpha1, kind: Password, name: jwt}}
    - secretKey: REDIS_PASSWORD
      remoteRef: {{key: password}}
      sourceRef:
        generatorRef: {{kind: Password, name: db}}
  dataFrom:
    - sourceRef:
        generatorRef: {{apiVersion: generators.external-secrets.io/v1alpha1, kind: Password, name: db}}
      rewrite:
        - regexp: {{source: "^password$", target: DB_PASSWORD}}
    - sourceRef:
        generatorRef: {{kind: UUID, name: instance}}
      rewrite:
        - regexp: {{source: "^uuid$", target: INSTANCE_ID}}
"#
    )
}

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    manifest: PathBuf,
}

fn setup(annotation: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let manifest = root.join("backend.yaml");
    std::fs::write(&manifest, manifests(annotation)).unwrap();
    std::fs::write(root.join("secrets.yaml"), "tomoda-google-client-id: client-1\n").unwrap();
    Setup {
        _dir: dir,
        root,
        manifest,
    }
}

/// One `sync --once --output DIR --format json`: its report and the target's data.
fn run(s: &Setup) -> (serde_json::Value, BTreeMap<String, String>) {
    let out = Command::new(BIN)
        .args(["sync", "--once", "--format", "json", "-m"])
        .arg(&s.manifest)
        .arg("--output")
        .arg(s.root.join("out"))
        .env("SECRETSYNC_STATE_DIR", s.root.join("state"))
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "sync failed: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not a JSON report ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    (report, target(&s.root.join("out/tomoda/backend-secrets-dev.yaml")))
}

fn target(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap();
    let doc: serde_json::Value = serde_norway::from_str(&text).unwrap();
    doc["data"]
        .as_object()
        .expect("a Secret with data")
        .iter()
        .map(|(k, v)| {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap();
            (k.clone(), String::from_utf8(raw).unwrap())
        })
        .collect()
}

fn writes(report: &serde_json::Value) -> u64 {
    report["writes"]
        .as_u64()
        .unwrap_or_else(|| panic!("no writes in {report}"))
}

fn check_shapes(data: &BTreeMap<String, String>) {
    let jwt = &data["JWT_SECRET"];
    assert_eq!(jwt.chars().count(), 64, "JWT_SECRET follows its generator's length");
    assert_eq!(jwt.chars().filter(char::is_ascii_digit).count(), 16);
    assert!(jwt.chars().all(|c| c.is_ascii_alphanumeric()), "symbols: 0");
    for k in ["DB_PASSWORD", "REDIS_PASSWORD"] {
        let raw = base64::engine::general_purpose::STANDARD.decode(&data[k]).unwrap();
        assert_eq!(raw.len(), 24, "{k}: base64 of 24 characters");
    }
    let id = &data["INSTANCE_ID"];
    let groups: Vec<usize> = id.split('-').map(str::len).collect();
    assert_eq!(groups, [8, 4, 4, 4, 12], "INSTANCE_ID is a UUID");
    assert!(id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    assert_eq!(id.as_bytes()[14], b'4', "version 4");
    assert_ne!(
        data["DB_PASSWORD"], data["REDIS_PASSWORD"],
        "each use generates its own value"
    );
    assert_eq!(data["GOOGLE_CLIENT_ID"], "client-1");
    assert_eq!(
        data.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "DB_PASSWORD",
            "GOOGLE_CLIENT_ID",
            "INSTANCE_ID",
            "JWT_SECRET",
            "REDIS_PASSWORD"
        ]
    );
}

/// "A Password generator with 'only if absent' creates seed 000's JWT once and never again
/// across 3 runs": same values every run, no write on runs 2 and 3; a store value next to
/// them still syncs (what ESO's `refreshPolicy: CreatedOnce` would freeze).
#[test]
fn if_absent_generates_once_and_keeps_the_value() {
    let s = setup(r#""secretsync.io/generate": if-absent"#);
    let (r1, first) = run(&s);
    assert_eq!(writes(&r1), 1, "run 1 creates the target: {r1}");
    check_shapes(&first);
    for n in 2..=3 {
        let (r, data) = run(&s);
        assert_eq!(writes(&r), 0, "run {n} writes nothing: {r}");
        assert_eq!(data, first, "run {n} keeps every generated value");
    }
    // The store's value changes: it syncs, the generated values stay.
    std::fs::write(s.root.join("secrets.yaml"), "tomoda-google-client-id: client-2\n").unwrap();
    let (r4, fourth) = run(&s);
    assert_eq!(writes(&r4), 1, "{r4}");
    assert_eq!(fourth["GOOGLE_CLIENT_ID"], "client-2");
    for k in ["JWT_SECRET", "DB_PASSWORD", "REDIS_PASSWORD", "INSTANCE_ID"] {
        assert_eq!(fourth[k], first[k], "{k} kept");
    }
    // A key removed from the target (an operator deleting it to rotate) is generated anew,
    // and only that key.
    let path = s.root.join("out/tomoda/backend-secrets-dev.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().trim_start_matches('"').starts_with("JWT_SECRET"))
        .collect();
    assert_ne!(kept.len(), text.lines().count(), "the target has a JWT_SECRET line");
    std::fs::write(&path, kept.join("\n") + "\n").unwrap();
    let (r5, fifth) = run(&s);
    assert_eq!(writes(&r5), 1, "{r5}");
    assert_ne!(fifth["JWT_SECRET"], first["JWT_SECRET"], "an absent key is generated");
    assert_eq!(fifth["JWT_SECRET"].chars().count(), 64);
    assert_eq!(fifth["DB_PASSWORD"], first["DB_PASSWORD"]);
    let (r6, sixth) = run(&s);
    assert_eq!(writes(&r6), 0, "{r6}");
    assert_eq!(sixth, fifth);
}

/// The generator document's own annotation works the same (for a generator shared by
/// many ExternalSecrets).
#[test]
fn if_absent_on_the_generator_document() {
    let s = setup("");
    let text = std::fs::read_to_string(&s.manifest).unwrap().replace(
        "metadata: {name: jwt, namespace: tomoda}",
        "metadata: {name: jwt, namespace: tomoda, annotations: {secretsync.io/generate: if-absent}}",
    );
    std::fs::write(&s.manifest, text).unwrap();
    let (_, first) = run(&s);
    let (_, second) = run(&s);
    assert_eq!(
        second["JWT_SECRET"], first["JWT_SECRET"],
        "the jwt generator keeps its value"
    );
    assert_ne!(
        second["DB_PASSWORD"], first["DB_PASSWORD"],
        "the db generator is ESO's default"
    );
}

/// ESO's behaviour (`Always`, the default): every sync generates, so every run writes.
#[test]
fn always_generates_every_run() {
    for annotation in ["", r#""secretsync.io/generate": Always"#] {
        let s = setup(annotation);
        let mut seen = vec![];
        for n in 1..=3 {
            let (r, data) = run(&s);
            assert_eq!(writes(&r), 1, "run {n} writes ({annotation}): {r}");
            check_shapes(&data);
            assert!(!seen.contains(&data["JWT_SECRET"]), "run {n} has a new JWT_SECRET");
            seen.push(data["JWT_SECRET"].clone());
        }
    }
}

/// What `check` says about bad generator references: file, document, field; never a
/// value.
#[test]
fn bad_generator_references_are_named() {
    let check = |text: &str| -> String {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("es.yaml");
        std::fs::write(&m, text).unwrap();
        std::fs::write(dir.path().join("secrets.yaml"), "tomoda-google-client-id: client-1\n").unwrap();
        let out = Command::new(BIN)
            .args(["check", "-m"])
            .arg(&m)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        assert!(!out.status.success(), "check accepted:\n{text}");
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout)
    };
    let base = manifests("");
    let err = check(&base.replace("kind: UUID, name: instance", "kind: SSHKey, name: instance"));
    assert!(
        err.contains("spec.dataFrom[1].sourceRef.generatorRef.kind: not supported yet: spec.dataFrom[1].sourceRef.generatorRef.kind"),
        "{err}"
    );
    let err = check(&base.replace("kind: Password, name: jwt}", "kind: Password, name: nope}"));
    assert!(
        err.contains("es.yaml: document 5 (ExternalSecret tomoda/backend-secrets-dev)"),
        "{err}"
    );
    assert!(
        err.contains("spec.data[1].sourceRef.generatorRef: generator Password nope is not in the given manifests"),
        "{err}"
    );
    let err = check(&base.replacen("remoteRef: {key: password}", "remoteRef: {key: uuid}", 1));
    assert!(
        err.contains("spec.data[1].remoteRef.key: generator Password jwt produces only the key `password`"),
        "{err}"
    );
    let err = check(&base.replace("length: 64,", "length: 64, lenght: 3,"));
    assert!(err.contains("document 2"), "{err}");
    assert!(err.contains("lenght"), "an unknown generator field is an error: {err}");
    let err = check(&manifests(r#""secretsync.io/generate": sometimes"#));
    assert!(
        err.contains("metadata.annotations.secretsync.io/generate: `sometimes`: expected always or if-absent"),
        "{err}"
    );
    let err = check(&base.replace(
        "    - sourceRef:\n        generatorRef: {kind: UUID, name: instance}\n",
        "    - sourceRef:\n        generatorRef: {kind: UUID, name: instance}\n      extract: {key: x}\n",
    ));
    assert!(
        err.contains("spec.dataFrom[1].sourceRef: a generator gives its whole output"),
        "{err}"
    );
    let err = check(&base.replace(
        "name: db}\n  dataFrom",
        "name: db}\n        storeRef: {name: local}\n  dataFrom",
    ));
    assert!(
        err.contains("not supported yet: spec.data[2].sourceRef.storeRef"),
        "{err}"
    );
}

/// ESO's own generator example: an ExternalSecret whose every entry is generated has no
/// `secretStoreRef`, and needs no store in the manifests. One that also reads a store
/// still needs one, and `check` says which field.
#[test]
fn generator_only_external_secret_needs_no_store() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("password.yaml");
    let text = r#"apiVersion: generators.external-secrets.io/v1alpha1
kind: Password
metadata: {name: my-password, namespace: tomoda}
spec: {length: 42, digits: 5, symbols: 5, symbolCharacters: "-_$@", noUpper: false, allowRepeat: true}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: password, namespace: tomoda, annotations: {secretsync.io/generate: if-absent}}
spec:
  refreshInterval: 30m
  target: {name: backend-secrets-dev}
  dataFrom:
    - sourceRef:
        generatorRef: {apiVersion: generators.external-secrets.io/v1alpha1, kind: Password, name: my-password}
"#;
    std::fs::write(&m, text).unwrap();
    let s = Setup {
        root: dir.path().to_path_buf(),
        manifest: m.clone(),
        _dir: dir,
    };
    let (r, data) = run(&s);
    assert_eq!(writes(&r), 1, "first run writes the generated password: {r}");
    let password = &data["password"];
    assert_eq!(password.chars().count(), 42, "the generator's length");
    let (r, again) = run(&s);
    assert_eq!(writes(&r), 0, "if-absent keeps it: {r}");
    assert_eq!(&again["password"], password);

    // A store-backed entry next to the generated one: the store is needed again.
    let mixed = text.replace(
        "  dataFrom:\n",
        "  data:\n    - {secretKey: A, remoteRef: {key: a}}\n  dataFrom:\n",
    );
    std::fs::write(&m, mixed).unwrap();
    let out = Command::new(BIN)
        .args(["check", "-m"])
        .arg(&m)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(!out.status.success(), "check accepted a store read without a store");
    let err = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        err.contains("document 2 (ExternalSecret tomoda/password): spec.secretStoreRef: missing secretStoreRef"),
        "{err}"
    );
}
