//! `sync --env-file`: what the dotenv sink writes is data, never code. POSIX `sh` and bash
//! (`set -a; . file`) and python-dotenv (`dotenv_values`, `load_dotenv`) all read back
//! exactly the bytes of every value — every printable ASCII character, newlines, non-ASCII
//! UTF-8, command substitutions — and a value that cannot round-trip is an error naming the
//! target and key, never the value. Needs `.venv` (scripts/setup-test-env.sh) for python-dotenv.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use secretsync::app::{Exit, Format, SinkChoice, SyncOptions, run_sync};

fn venv_python() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup-test-env.sh (installs python-dotenv)",
        p.display()
    );
    p
}

/// Writes a file store holding `values` and an ExternalSecret reading each into the key of
/// the same name; returns the manifest.
fn manifests(dir: &Path, values: &BTreeMap<String, String>) -> PathBuf {
    let store: serde_json::Map<String, serde_json::Value> = values
        .iter()
        .map(|(k, v)| (k.to_lowercase(), serde_json::Value::String(v.clone())))
        .collect();
    std::fs::write(dir.join("secrets.json"), serde_json::to_string(&store).unwrap()).unwrap();
    let mut m = String::from(
        "apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {name: local, namespace: dev}\nspec: {provider: {file: {path: secrets.json}}}\n---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {name: app, namespace: dev}\nspec:\n  secretStoreRef: {name: local}\n  data:\n",
    );
    for k in values.keys() {
        m.push_str(&format!(
            "    - {{secretKey: {k}, remoteRef: {{key: {}}}}}\n",
            k.to_lowercase()
        ));
    }
    let path = dir.join("manifests.yaml");
    std::fs::write(&path, m).unwrap();
    path
}

async fn sync(manifest: &Path, env_file: &Path) -> (Exit, serde_json::Value, String) {
    let opts = SyncOptions {
        manifests: vec![manifest.to_path_buf()],
        once: true,
        sink: SinkChoice::Dotenv(env_file.display().to_string()),
        format: Format::Json,
        ..Default::default()
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_sync(&opts, &mut out, &mut err).await;
    let json = serde_json::from_slice(&out).unwrap_or(serde_json::Value::Null);
    (code, json, String::from_utf8(err).unwrap())
}

/// `set -a; . file` in `shell`, then every exported variable starting with `SSK`.
fn read_with_shell(shell: &str, file: &Path, cwd: &Path) -> BTreeMap<String, String> {
    let out = std::process::Command::new(shell)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .args(["-c", "set -a; . \"$1\"; env -0", shell, file.to_str().unwrap()])
        .output()
        .unwrap_or_else(|e| panic!("cannot start {shell}: {e}"));
    assert!(
        out.status.success(),
        "{shell}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{shell}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .split(|b| *b == 0)
        .filter_map(|e| {
            let e = String::from_utf8(e.to_vec()).unwrap();
            let (k, v) = e.split_once('=')?;
            k.starts_with("SSK").then(|| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// python-dotenv's two entry points: `dotenv_values` and `load_dotenv` into a clean
/// environment.
fn read_with_python_dotenv(file: &Path, cwd: &Path) -> [BTreeMap<String, String>; 2] {
    let py = venv_python();
    let script = r#"
import json, os, sys, warnings, logging
logging.basicConfig(level=logging.WARNING)
import dotenv
values = dotenv.dotenv_values(sys.argv[1])
dotenv.load_dotenv(sys.argv[1])
loaded = {k: v for k, v in os.environ.items() if k.startswith("SSK")}
sys.stdout.write(json.dumps([values, loaded]))
"#;
    let out = std::process::Command::new(&py)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .args(["-c", script, file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));
    // python-dotenv logs a warning for every line it cannot parse.
    assert!(
        out.stderr.is_empty(),
        "python-dotenv: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let [values, loaded]: [BTreeMap<String, String>; 2] = serde_json::from_slice(&out.stdout).unwrap();
    [values, loaded]
}

fn printable_ascii() -> String {
    (0x20u8..0x7f).map(char::from).collect()
}

#[tokio::test]
async fn every_value_reads_back_exactly_through_sh_bash_and_python_dotenv() {
    let dir = tempfile::tempdir().unwrap();
    let pwned = dir.path().join("pwned");
    let p = pwned.display();
    let mut values = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        values.insert(format!("SSK_{k}"), v);
    };
    put("ALL", printable_ascii());
    put("ALL_LINES", format!("first line\n{}\nlast line\n\n", printable_ascii()));
    put("UTF8", "é ü ß 日本語 🎉 \u{2028} ∑".into());
    put("BACKTICK", format!("`touch {p}-bt`"));
    put(
        "SUBST",
        format!("$(touch {p}-subst) ${{HOME}} $HOME $$ $1 $? ${{X:-y}}"),
    );
    put("QUOTES", "it's \"quoted\" \\\" \\' \\\\".into());
    put("BACKSLASHES", "\\\\ \\n \\t \\$ \\` \\".into());
    put("EMPTY", String::new());
    put("SPACES", "  leading and trailing  ".into());
    put("HASH", "value # not a comment".into());
    put("DOLLAR_END", "ends with $".into());
    put("MIXED", format!("a'b`touch {p}-mixed`c$d\n`e'${{f}}$g"));
    // Random values over printable ASCII, newlines and some UTF-8; nearly all are
    // writable (the rest are refused, tested below).
    let alphabet: Vec<char> = printable_ascii()
        .chars()
        .chain("\n\té日🎉".chars())
        .chain("$`'\"\\{}".chars())
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(20);
    let mut refused = 0;
    for i in 0..300 {
        let len = rng.random_range(0..40);
        let v: String = (0..len)
            .map(|_| alphabet[rng.random_range(0..alphabet.len())])
            .collect();
        let mut one = secretsync::SecretMap::new();
        one.insert("K", secretsync::SecretValue::from(v.as_str()));
        if secretsync::format::dotenv::render(&one, "t").is_err() {
            refused += 1;
            continue;
        }
        put(&format!("R{i:03}"), v);
    }
    assert!(refused < 60, "{refused} of 300 random values refused");

    let m = manifests(dir.path(), &values);
    let env_file = dir.path().join("out.env");
    let (code, report, err) = sync(&m, &env_file).await;
    assert_eq!(code, Exit::Synced, "{err} {report}");
    assert_eq!(report["writes"], 1);

    for shell in ["sh", "bash"] {
        let got = read_with_shell(shell, &env_file, dir.path());
        for (k, v) in &values {
            assert_eq!(got.get(k), Some(v), "{shell} reads {k} back");
        }
        assert_eq!(got.len(), values.len(), "{shell}: no other variables");
    }
    let [from_values, from_load] = read_with_python_dotenv(&env_file, dir.path());
    for (k, v) in &values {
        assert_eq!(from_values.get(k), Some(v), "dotenv_values reads {k} back");
        assert_eq!(from_load.get(k), Some(v), "load_dotenv reads {k} back");
    }
    assert_eq!(from_values.len(), values.len());
    let ran: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("pwned"))
        .map(|e| e.file_name())
        .collect();
    assert!(ran.is_empty(), "a value ran as a command: {ran:?}");

    // Our own reader agrees, so the next run writes nothing.
    let (code, report, err) = sync(&m, &env_file).await;
    assert_eq!(code, Exit::Synced, "{err}");
    assert_eq!(report["writes"], 0, "{report}");
}

#[tokio::test]
async fn a_value_or_key_that_cannot_round_trip_is_an_error_naming_target_and_key() {
    for (key, value, why) in [
        ("SSK_NUL", "canary-\u{0}-9f2c", "NUL"),
        ("SSK_CR", "canary-\r\n-9f2c", "carriage return"),
        ("SSK_TICKS", "`canary'-9f2c`", "backticks"),
        ("SSK.DOTTED", "canary-9f2c", "not an environment variable name"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let values = BTreeMap::from([(key.to_string(), value.to_string())]);
        let m = manifests(dir.path(), &values);
        let env_file = dir.path().join("out.env");
        let (code, report, err) = sync(&m, &env_file).await;
        assert_eq!(code, Exit::SpecFailed, "{key}: {err} {report}");
        let msg = report["specs"][0]["message"].as_str().unwrap_or_default().to_string();
        assert!(
            msg.contains("dev/app")
                && msg.contains("out.env")
                && msg.contains(&format!("`{key}`"))
                && msg.contains(why),
            "{key}: {msg}"
        );
        let all = format!("{report} {err}");
        assert!(!all.contains("canary"), "{key}: the value leaks: {all}");
        assert!(!env_file.exists(), "{key}: nothing written");
    }
}
