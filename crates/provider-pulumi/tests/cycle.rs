//! Engine cycles on the fake ESC: how many ESC requests a cycle costs, counted at the fake.

mod common;

use std::time::Duration;

use common::*;
use secretsync_core::engine::CycleOptions;
use secretsync_core::sink::{TargetKind, TargetRef};

const KEYS: usize = 200;
const SPECS: usize = 50;

fn environment(version: &str) -> String {
    let mut y = String::from("# 200 values, as a team's pulumiConfig grows\nvalues:\n  pulumiConfig:\n");
    for i in 0..KEYS {
        y.push_str(&format!(
            "    \"app:key{i:03}\":\n      fn::secret: value-{i}-{version}\n"
        ));
    }
    y
}

fn manifests() -> String {
    let mut m = String::from(
        "apiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata: {name: esc-bench}\nspec:\n  provider:\n    fake: {data: []}\n",
    );
    for s in 0..SPECS {
        m.push_str(&format!(
            "---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: app-{s:02}, namespace: bench}}\nspec:\n  secretStoreRef: {{name: esc-bench, kind: ClusterSecretStore}}\n  target: {{name: app-{s:02}}}\n  data:\n"
        ));
        for i in 0..KEYS {
            m.push_str(&format!(
                "    - {{secretKey: KEY_{i:03}, remoteRef: {{key: 'pulumiConfig[\"app:key{i:03}\"]'}}}}\n"
            ));
        }
    }
    m
}

#[tokio::test]
async fn fifty_specs_of_two_hundred_keys_cost_one_open_and_one_read_then_one_head() {
    let env = "bench";
    let (fake, project, token) = fake_env(env, &environment("v1")).await;
    let freshness = Duration::from_millis(200);
    let source = builder(&fake, &token, &project, env)
        .with_freshness(freshness)
        .build()
        .unwrap();
    let (m, engine, sink) = engine_on(&manifests(), "esc-bench", source).await;
    let entries = SPECS * KEYS;

    // First cycle: one open, one read, for 10,000 data entries.
    let r = engine.run(&m, &CycleOptions::default()).await;
    assert!(r.all_synced(), "{}", r.to_text());
    assert_eq!(r.writes, SPECS as u64);
    let first = ops(&fake);
    assert_eq!(first, ["OpenEnvironment", "ReadOpenEnvironment"]);
    let t = TargetRef {
        kind: TargetKind::Secret,
        namespace: "bench".into(),
        name: "app-07".into(),
    };
    let data = sink.get(&t).expect("written").data;
    assert_eq!(data.len(), KEYS);
    assert_eq!(data.get("KEY_123").unwrap().expose_str(), Some("value-123-v1"));

    // Next cycle, nothing changed: one HEAD; nothing rendered or written.
    fake.clear_log();
    tokio::time::sleep(freshness + Duration::from_millis(50)).await;
    let r = engine.run(&m, &CycleOptions::default()).await;
    assert!(r.all_synced(), "{}", r.to_text());
    assert_eq!(r.writes, 0);
    let second = ops(&fake);
    assert_eq!(second, ["GetEnvironmentETag"]);

    // Someone edits the environment in the console: HEAD sees it, one open and one read.
    fake.set_yaml(ORG, &project, env, &environment("v2"));
    fake.clear_log();
    tokio::time::sleep(freshness + Duration::from_millis(50)).await;
    let r = engine.run(&m, &CycleOptions::default()).await;
    assert!(r.all_synced(), "{}", r.to_text());
    assert_eq!(r.writes, SPECS as u64);
    let third = ops(&fake);
    assert_eq!(third, ["GetEnvironmentETag", "OpenEnvironment", "ReadOpenEnvironment"]);
    assert_eq!(
        sink.get(&t).unwrap().data.get("KEY_123").unwrap().expose_str(),
        Some("value-123-v2")
    );
    eprintln!(
        "ESC requests for {SPECS} specs x {KEYS} keys ({entries} data entries): first cycle {}, unchanged cycle {}, changed cycle {}; ESO: {} per refresh",
        first.len(),
        second.len(),
        third.len(),
        2 * entries
    );
}

#[tokio::test]
async fn values_shapes_and_find() {
    let yaml = r#"values:
  dbHost: db.internal
  port: 5432
  nested:
    user: app
    tags: [a, b]
  pulumiConfig:
    "postgresql:password":
      fn::secret: s3cr3t
    dbHost: pg.internal
"#;
    let (fake, project, token) = fake_env("shapes", yaml).await;
    let source = source(&fake, &token, &project, "shapes");
    let manifests = r#"
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata: {name: esc}
spec: {provider: {fake: {data: []}}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: shapes, namespace: app}
spec:
  secretStoreRef: {name: esc, kind: ClusterSecretStore}
  target: {name: shapes}
  data:
    - {secretKey: password, remoteRef: {key: 'pulumiConfig["postgresql:password"]'}}
    - {secretKey: host, remoteRef: {key: pulumiConfig.dbHost}}
    - {secretKey: port, remoteRef: {key: port}}
    - {secretKey: user, remoteRef: {key: nested, property: user}}
    - {secretKey: nested, remoteRef: {key: nested}}
  dataFrom:
    - extract: {key: nested}
    - find: {name: {regexp: '^pulumiConfig\.db'}}
      rewrite: [{regexp: {source: '^pulumiConfig\.', target: 'cfg_'}}]
"#;
    let (m, engine, sink) = engine_on(manifests, "esc", source).await;
    let r = engine.run(&m, &CycleOptions::default()).await;
    assert!(r.all_synced(), "{}", r.to_text());
    let t = TargetRef {
        kind: TargetKind::Secret,
        namespace: "app".into(),
        name: "shapes".into(),
    };
    let data = sink.get(&t).unwrap().data;
    let get = |k: &str| data.get(k).and_then(|v| v.expose_str()).map(str::to_string);
    assert_eq!(get("password").as_deref(), Some("s3cr3t"));
    assert_eq!(get("host").as_deref(), Some("pg.internal"));
    assert_eq!(get("port").as_deref(), Some("5432"));
    assert_eq!(get("user").as_deref(), Some("app"));
    assert_eq!(get("nested").as_deref(), Some(r#"{"tags":["a","b"],"user":"app"}"#));
    assert_eq!(get("tags").as_deref(), Some(r#"["a","b"]"#));
    assert_eq!(get("cfg_dbHost").as_deref(), Some("pg.internal"));
    // ESC's metadata never reaches the target.
    for (_, v) in data.iter() {
        let v = v.expose_str().unwrap_or_default();
        assert!(!v.contains("trace") && !v.contains("\"secret\""), "{v}");
    }
    assert_eq!(ops(&fake), ["OpenEnvironment", "ReadOpenEnvironment"]);
}
