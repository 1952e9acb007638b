//! The AWS provider against moto's server (a real Secrets Manager API peer).

mod common;

use std::collections::BTreeMap;

use common::{builder, count, prefix, recorded_since, recording, source};
use secretsync_aws::{AwsFactory, AwsSecretsManager};
use secretsync_core::registry::{EnvFileCredentials, SourceFactory};
use secretsync_core::transform::get_property;
use secretsync_core::{
    Error, FindQuery, RemoteKey, SecretSource, SecretValue, SecretWriter, WriteOutcome, WriteRequest,
};

async fn create(admin: &AwsSecretsManager, key: &str, value: &str) -> String {
    match admin
        .put(&WriteRequest::new(key, SecretValue::from(value)))
        .await
        .expect("create")
    {
        WriteOutcome::Created { version } => version.expect("version id"),
        o => panic!("expected Created, got {o:?}"),
    }
}

async fn create_tagged(admin: &AwsSecretsManager, key: &str, value: &str, tags: &[(&str, &str)]) {
    let mut req = admin.sdk_client().create_secret().name(key).secret_string(value);
    for (k, v) in tags {
        req = req.tags(aws_sdk_secretsmanager::types::Tag::builder().key(*k).value(*v).build());
    }
    req.send().await.expect("create_secret");
}

fn ok(r: &secretsync_core::Result<secretsync_core::Fetched>) -> String {
    match r {
        Ok(f) => f.value.expose_str().expect("utf-8").to_string(),
        Err(e) => panic!("expected a value, got {e}"),
    }
}

fn batch_sizes(recs: &[common::Recorded]) -> Vec<usize> {
    let mut v: Vec<usize> = recs
        .iter()
        .filter(|r| r.op == "BatchGetSecretValue")
        .map(|r| {
            let b: serde_json::Value = serde_json::from_str(&r.body).expect("json body");
            b["SecretIdList"].as_array().map(Vec::len).unwrap_or(0)
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn seed_000_s3_uploader_one_json_secret_five_properties() {
    let p = prefix();
    let admin = source().await;
    let key = format!("{p}tomoda-s3-uploader-dev");
    let blob = serde_json::json!({
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG",
        "S3_BUCKET": "tomoda-assets-dev",
        "S3_REGION": "ap-northeast-1",
        "S3_BASE_URL": "https://assets-dev.tomoda.life",
    });
    create(&admin, &key, &blob.to_string()).await;

    let sm = source().await;
    let mark = recording().len();
    // Five remoteRefs with the same key and different properties.
    let keys = vec![RemoteKey::new(&key); 5];
    let got = sm.get_many(&keys).await;
    let props = [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "S3_BUCKET",
        "S3_REGION",
        "S3_BASE_URL",
    ];
    for (r, prop) in got.iter().zip(props) {
        let v = r.as_ref().expect("value");
        let p = get_property(&v.value, prop, &key).expect("property");
        assert_eq!(p.expose_str(), blob[prop].as_str(), "{prop}");
    }
    let stats = sm.call_stats().expect("stats");
    assert_eq!(stats.of("BatchGetSecretValue"), 1);
    assert_eq!(sm.api_calls(), 1, "{:?}", stats.snapshot());
    let recs = recorded_since(mark, &p);
    assert_eq!(batch_sizes(&recs), vec![1], "one id, read once");
    assert_eq!(recs.len(), 1);
}

#[tokio::test]
async fn get_many_45_secrets_uses_three_batch_calls() {
    let p = prefix();
    let admin = source().await;
    let keys: Vec<RemoteKey> = (0..45).map(|i| RemoteKey::new(format!("{p}app/s{i:02}"))).collect();
    for (i, k) in keys.iter().enumerate() {
        create(&admin, &k.key, &format!("value-{i}")).await;
    }
    let sm = source().await;
    let mark = recording().len();
    let got = sm.get_many(&keys).await;
    assert_eq!(got.len(), 45);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(ok(r), format!("value-{i}"));
        assert!(r.as_ref().unwrap().version.is_some());
    }
    let stats = sm.call_stats().unwrap();
    assert_eq!(stats.of("BatchGetSecretValue"), 3, "{:?}", stats.snapshot());
    assert_eq!(stats.of("GetSecretValue"), 0);
    assert_eq!(sm.api_calls(), 3);
    let recs = recorded_since(mark, &p);
    assert_eq!(batch_sizes(&recs), vec![5, 20, 20]);
    assert_eq!(count(&recs, "GetSecretValue"), 0);
    assert_eq!(recs.len(), 3, "{recs:?}");
}

#[tokio::test]
async fn ids_beyond_20_are_chunked_and_each_error_is_its_own() {
    let p = prefix();
    let admin = source().await;
    let mut keys: Vec<RemoteKey> = vec![];
    for i in 0..40 {
        let k = format!("{p}c{i:02}");
        create(&admin, &k, &format!("v{i}")).await;
        keys.push(RemoteKey::new(k));
    }
    keys.insert(7, RemoteKey::new(format!("{p}missing")));
    // A non-current version is read with GetSecretValue.
    keys.push(RemoteKey::with_version(format!("{p}c00"), "AWSCURRENT"));
    keys.push(RemoteKey::with_version(format!("{p}c01"), "AWSPREVIOUS"));
    let sm = source().await;
    let mark = recording().len();
    let got = sm.get_many(&keys).await;
    assert_eq!(got.len(), 43);
    let e = got[7].as_ref().unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(e.to_string().contains(&format!("{p}missing")), "{e}");
    assert_eq!(ok(&got[0]), "v0");
    assert_eq!(ok(&got[8]), "v7");
    assert_eq!(ok(&got[41]), "v0");
    assert!(
        got[42].as_ref().unwrap_err().is_not_found(),
        "c01 has no previous version"
    );
    let recs = recorded_since(mark, &p);
    // 41 distinct current ids (c00 twice): 20 + 20 + 1.
    assert_eq!(batch_sizes(&recs), vec![1, 20, 20]);
    assert_eq!(count(&recs, "GetSecretValue"), 1);
    assert_eq!(sm.call_stats().unwrap().of("BatchGetSecretValue"), 3);
    assert_eq!(sm.call_stats().unwrap().of("GetSecretValue"), 1);
}

#[tokio::test]
async fn change_tokens_skip_values_and_see_exactly_one_change() {
    let p = prefix();
    let admin = source().await;
    let keys: Vec<RemoteKey> = (0..45).map(|i| RemoteKey::new(format!("{p}ct/s{i:02}"))).collect();
    for k in &keys {
        create(&admin, &k.key, "same").await;
    }
    let sm = source().await;
    let mark = recording().len();
    let t1: Vec<String> = sm
        .change_tokens(&keys)
        .await
        .into_iter()
        .map(|t| t.expect("token").expect("known"))
        .collect();
    let stats = sm.call_stats().unwrap();
    assert_eq!(stats.of("ListSecrets"), 1, "ceil(45/100) = 1: {:?}", stats.snapshot());
    assert_eq!(
        stats.of("GetSecretValue") + stats.of("BatchGetSecretValue"),
        0,
        "no value reads"
    );
    assert_eq!(sm.api_calls(), 1);

    // Nothing changed: same tokens, still no value read.
    let t2: Vec<String> = sm
        .change_tokens(&keys)
        .await
        .into_iter()
        .map(|t| t.unwrap().unwrap())
        .collect();
    assert_eq!(t1, t2);

    // One PutSecretValue from outside this source.
    admin
        .put(&WriteRequest::new(&keys[17].key, SecretValue::from("new")))
        .await
        .expect("put");
    let t3: Vec<String> = sm
        .change_tokens(&keys)
        .await
        .into_iter()
        .map(|t| t.unwrap().unwrap())
        .collect();
    let changed: Vec<usize> = (0..45).filter(|&i| t1[i] != t3[i]).collect();
    assert_eq!(changed, vec![17]);

    // The engine then reads only the changed key; its version is the new token.
    let got = sm.get_many(&[keys[17].clone()]).await;
    assert_eq!(ok(&got[0]), "new");
    assert_eq!(got[0].as_ref().unwrap().version.as_deref(), Some(t3[17].as_str()));

    let stats = sm.call_stats().unwrap();
    assert_eq!(stats.of("ListSecrets"), 3);
    assert_eq!(stats.of("BatchGetSecretValue"), 1);
    assert_eq!(stats.of("GetSecretValue"), 0);
    let recs = recorded_since(mark, &p);
    let mine: Vec<_> = recs
        .iter()
        .filter(|r| r.op != "DescribeSecret" && r.op != "PutSecretValue")
        .collect();
    assert_eq!(
        mine.len(),
        4,
        "3 ListSecrets + 1 BatchGetSecretValue at the server: {recs:?}"
    );

    // One key: one DescribeSecret; a uuid version: no call.
    let before = sm.api_calls();
    let t = sm
        .change_tokens(&[
            keys[0].clone(),
            RemoteKey::with_version(&keys[1].key, format!("uuid/{}", t1[1])),
        ])
        .await;
    assert_eq!(t[0].as_ref().unwrap().as_deref(), Some(t1[0].as_str()));
    assert_eq!(t[1].as_ref().unwrap().as_deref(), Some(t1[1].as_str()));
    assert_eq!(sm.api_calls() - before, 1);
    assert_eq!(sm.call_stats().unwrap().of("DescribeSecret"), 1);
}

#[tokio::test]
async fn find_listing_answers_the_next_change_tokens_once() {
    let p = prefix();
    let admin = source().await;
    for i in 0..5 {
        create(&admin, &format!("{p}crawbl/dev/backend/s{i}"), "x").await;
    }
    let sm = source().await;
    let names = sm
        .find(&FindQuery {
            path: Some(format!("{p}crawbl/dev/")),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(names.len(), 5);
    let keys: Vec<RemoteKey> = names.iter().map(RemoteKey::new).collect();
    let t1 = sm.change_tokens(&keys).await;
    assert!(t1.iter().all(|t| matches!(t, Ok(Some(_)))));
    assert_eq!(
        sm.call_stats().unwrap().of("ListSecrets"),
        1,
        "served from find's listing"
    );
    // A write through this source drops what the listing said about that key.
    sm.put(&WriteRequest::new(&names[0], SecretValue::from("y")))
        .await
        .unwrap();
    let t2 = sm.change_tokens(&keys).await;
    assert_ne!(t1[0].as_ref().unwrap(), t2[0].as_ref().unwrap());
    assert_eq!(t1[1].as_ref().unwrap(), t2[1].as_ref().unwrap());
    assert_eq!(
        sm.call_stats().unwrap().of("ListSecrets"),
        2,
        "the listing is used once"
    );
}

#[tokio::test]
async fn previous_stage_uuid_versions_and_disable() {
    let p = prefix();
    let sm = source().await;
    let key = format!("{p}rotating");
    let v1 = create(&sm, &key, "one").await;
    let out = sm
        .put(&WriteRequest::new(&key, SecretValue::from("two")))
        .await
        .unwrap();
    let WriteOutcome::Updated {
        version: Some(v2),
        previous,
        disabled_previous: false,
    } = out
    else {
        panic!("{out:?}")
    };
    assert_eq!(previous.as_deref(), Some(v1.as_str()));

    let prev = sm.get(&RemoteKey::with_version(&key, "AWSPREVIOUS")).await.unwrap();
    assert_eq!(prev.value.expose_str(), Some("one"));
    assert_eq!(prev.version.as_deref(), Some(v1.as_str()));
    let cur = sm.get(&RemoteKey::with_version(&key, "AWSCURRENT")).await.unwrap();
    assert_eq!(
        (cur.value.expose_str(), cur.version.as_deref()),
        (Some("two"), Some(v2.as_str()))
    );
    let by_id = sm
        .get(&RemoteKey::with_version(&key, format!("uuid/{v1}")))
        .await
        .unwrap();
    assert_eq!(by_id.value.expose_str(), Some("one"));

    let d = sm.describe(&key).await.unwrap().expect("exists");
    assert_eq!(d.current_version.as_deref(), Some(v2.as_str()));
    assert!(d.managed);
    assert_eq!(d.versions.first().map(|v| v.id.as_str()), Some(v2.as_str()));

    // Disabling the current version is refused; the previous one becomes unreadable.
    let e = sm.disable_version(&key, &v2).await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
    sm.disable_version(&key, &v1).await.unwrap();
    let e = sm
        .get(&RemoteKey::with_version(&key, format!("uuid/{v1}")))
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(
        sm.get(&RemoteKey::with_version(&key, "AWSPREVIOUS"))
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        sm.disable_version(&key, "no-such-version")
            .await
            .unwrap_err()
            .is_not_found()
    );

    // put with disable_previous: the replaced version loses AWSPREVIOUS.
    let mut req = WriteRequest::new(&key, SecretValue::from("three"));
    req.disable_previous = true;
    let out = sm.put(&req).await.unwrap();
    let WriteOutcome::Updated {
        previous,
        disabled_previous: true,
        ..
    } = out
    else {
        panic!("{out:?}")
    };
    assert_eq!(previous.as_deref(), Some(v2.as_str()));
    assert!(
        sm.get(&RemoteKey::with_version(&key, "AWSPREVIOUS"))
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        sm.get(&RemoteKey::with_version(&key, format!("uuid/{v2}")))
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert_eq!(
        sm.get(&RemoteKey::new(&key)).await.unwrap().value.expose_str(),
        Some("three")
    );
}

#[tokio::test]
async fn missing_and_deleted_secrets_are_not_found() {
    let p = prefix();
    let sm = source().await;
    let missing = format!("{p}nope");
    let e = sm.get(&RemoteKey::new(&missing)).await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(e.to_string().contains(&missing), "{e}");
    assert_eq!(
        sm.call_stats()
            .unwrap()
            .snapshot()
            .get(&("GetSecretValue".into(), "not_found".into())),
        Some(&1)
    );
    assert!(sm.describe(&missing).await.unwrap().is_none());
    assert!(sm.metadata(&missing).await.unwrap_err().is_not_found());
    assert!(
        sm.change_tokens(&[RemoteKey::new(&missing)]).await[0]
            .as_ref()
            .unwrap_err()
            .is_not_found()
    );

    let key = format!("{p}deleted");
    create(&sm, &key, "gone-soon").await;
    sm.sdk_client()
        .delete_secret()
        .secret_id(&key)
        .recovery_window_in_days(7)
        .send()
        .await
        .unwrap();
    let e = sm.get(&RemoteKey::new(&key)).await.unwrap_err();
    assert!(e.is_not_found(), "marked for deletion: {e}");
    let e = sm.get_many(&[RemoteKey::new(&key)]).await.remove(0).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    let e = sm.change_tokens(&[RemoteKey::new(&key)]).await.remove(0).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    let e = sm
        .put(&WriteRequest::new(&key, SecretValue::from("x")))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Conflict { .. }), "{e}");
    let found = sm
        .find(&FindQuery {
            path: Some(p.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!found.contains(&key), "{found:?}");
}

#[tokio::test]
async fn find_by_path_regexp_and_tags_follows_pages() {
    let p = prefix();
    let admin = source().await;
    let paths = [
        "crawbl/dev/backend/orchestrator",
        "crawbl/dev/backend/postgresql",
        "crawbl/dev/backend/redis",
        "crawbl/dev/infra/cloudflare",
        "crawbl/dev/runtime/openai",
        "crawbl/prod/backend/redis",
    ];
    for path in paths {
        let env = path.split('/').nth(1).unwrap();
        create_tagged(
            &admin,
            &format!("{p}{path}"),
            "{}",
            &[("environment", env), ("team", "platform")],
        )
        .await;
    }
    create_tagged(
        &admin,
        &format!("{p}crawbl/dev/edge/hmac"),
        "{}",
        &[("environment", "dev")],
    )
    .await;

    let sm = source().await;
    let find = |q: FindQuery| {
        let sm = &sm;
        async move { sm.find(&q).await.unwrap() }
    };
    let all = |v: &[&str]| v.iter().map(|s| format!("{p}{s}")).collect::<Vec<_>>();

    let got = find(FindQuery {
        path: Some(format!("{p}crawbl/dev/backend/")),
        ..Default::default()
    })
    .await;
    assert_eq!(
        got,
        all(&[
            "crawbl/dev/backend/orchestrator",
            "crawbl/dev/backend/postgresql",
            "crawbl/dev/backend/redis"
        ])
    );

    let got = find(FindQuery {
        name_regexp: Some(format!("^{p}crawbl/[a-z]+/backend/redis$")),
        ..Default::default()
    })
    .await;
    assert_eq!(got, all(&["crawbl/dev/backend/redis", "crawbl/prod/backend/redis"]));

    let mut tags = BTreeMap::new();
    tags.insert("environment".to_string(), "dev".to_string());
    tags.insert("team".to_string(), "platform".to_string());
    let got = find(FindQuery {
        path: Some(p.clone()),
        tags,
        ..Default::default()
    })
    .await;
    assert_eq!(got.len(), 5, "{got:?}");
    assert!(!got.iter().any(|n| n.contains("hmac") || n.contains("prod")));

    // Paging: 105 secrets under one path, read in two pages of 100.
    let q = format!("{p}many/");
    for i in 0..105 {
        admin
            .sdk_client()
            .create_secret()
            .name(format!("{q}{i:03}"))
            .secret_string("x")
            .send()
            .await
            .unwrap();
    }
    let before = sm.call_stats().unwrap().of("ListSecrets");
    let got = find(FindQuery {
        path: Some(q.clone()),
        ..Default::default()
    })
    .await;
    assert_eq!(got.len(), 105);
    assert_eq!(sm.call_stats().unwrap().of("ListSecrets") - before, 2);

    // A bad regexp is invalid input, not a provider failure.
    let e = sm
        .find(&FindQuery {
            name_regexp: Some("(".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
}

#[tokio::test]
async fn prefix_is_added_to_keys_and_stripped_from_found_names() {
    let p = prefix();
    let admin = source().await;
    create(&admin, &format!("{p}crawbl/dev/backend/redis"), "r").await;
    let sm = builder().with_prefix(format!("{p}crawbl/dev/")).build().await.unwrap();
    assert_eq!(
        sm.get(&RemoteKey::new("backend/redis"))
            .await
            .unwrap()
            .value
            .expose_str(),
        Some("r")
    );
    let got = sm
        .find(&FindQuery {
            path: Some("backend/".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(got, vec!["backend/redis".to_string()]);
}

#[tokio::test]
async fn writes_tag_refuse_unmanaged_and_merge_properties() {
    let p = prefix();
    let sm = source().await;
    let key = format!("{p}managed");
    let mut req = WriteRequest::new(&key, SecretValue::from("u1"));
    req.property = Some("user".into());
    assert!(matches!(sm.put(&req).await.unwrap(), WriteOutcome::Created { .. }));
    let tags = sm.metadata(&key).await.unwrap();
    assert_eq!(tags.get("managed-by").map(String::as_str), Some("secretsync"));
    let mut req = WriteRequest::new(&key, SecretValue::from("hunter2-canary"));
    req.property = Some("password".into());
    sm.put(&req).await.unwrap();
    let v = sm.get(&RemoteKey::new(&key)).await.unwrap().value;
    let json: serde_json::Value = serde_json::from_str(v.expose_str().unwrap()).unwrap();
    assert_eq!(json, serde_json::json!({"user": "u1", "password": "hunter2-canary"}));

    // Terraform's secret: not ours.
    let foreign = format!("{p}terraform-owned");
    create_tagged(&sm, &foreign, "tf-value", &[("owner", "terraform")]).await;
    let req = WriteRequest::new(&foreign, SecretValue::from("hunter2-canary"));
    let e = sm.put(&req).await.unwrap_err();
    assert!(matches!(e, Error::PermissionDenied { .. }), "{e}");
    let text = format!("{e} {e:?}");
    assert!(text.contains(&foreign) && !text.contains("hunter2"), "{text}");
    assert_eq!(
        sm.get(&RemoteKey::new(&foreign)).await.unwrap().value.expose_str(),
        Some("tf-value"),
        "untouched"
    );
    let mut forced = req.clone();
    forced.force = true;
    sm.put(&forced).await.unwrap();
    assert_eq!(
        sm.get(&RemoteKey::new(&foreign)).await.unwrap().value.expose_str(),
        Some("hunter2-canary")
    );
    assert!(
        !sm.describe(&foreign).await.unwrap().unwrap().managed,
        "a forced write does not take ownership"
    );

    // Property writes need a JSON object.
    let mut req = WriteRequest::new(&foreign, SecretValue::from("x"));
    req.property = Some("p".into());
    req.force = true;
    let e = sm.put(&req).await.unwrap_err();
    assert!(
        matches!(e, Error::InvalidInput { .. }) && !e.to_string().contains("hunter2"),
        "{e}"
    );

    // Binary values round-trip.
    let bin = format!("{p}binary");
    let bytes = vec![0u8, 159, 146, 150, 255];
    sm.put(&WriteRequest::new(&bin, SecretValue::new(bytes.clone())))
        .await
        .unwrap();
    assert_eq!(
        sm.get(&RemoteKey::new(&bin)).await.unwrap().value.expose(),
        bytes.as_slice()
    );
    assert_eq!(
        sm.get_many(&[RemoteKey::new(&bin)]).await[0]
            .as_ref()
            .unwrap()
            .value
            .expose(),
        bytes.as_slice()
    );
}

#[tokio::test]
async fn debug_output_has_no_credentials() {
    let b = builder().with_credentials("AKIDEXAMPLE", SecretValue::from("secret-canary-1234"));
    assert!(!format!("{b:?}").contains("secret-canary"));
    let sm = b.build().await.unwrap();
    let d = format!("{sm:?}");
    assert!(!d.contains("secret-canary") && d.contains("us-east-1"), "{d}");
}

fn store_yaml(p: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: external-secrets.io/v1
kind: SecretStore
metadata:
  name: aws-{p}
  namespace: ns1
spec:
  provider:
    aws:
      service: SecretsManager
      region: eu-central-1
      endpoint: {}
      auth:
        secretRef:
          accessKeyIDSecretRef: {{name: aws-creds, key: access-key}}
          secretAccessKeySecretRef: {{name: aws-creds, key: secret-access-key}}
{extra}"#,
        common::moto_url()
    )
}

fn creds_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("ns1/aws-creds");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("access-key"), "testing\n").unwrap();
    std::fs::write(d.join("secret-access-key"), "testing\n").unwrap();
    dir
}

#[tokio::test]
async fn factory_builds_from_an_eso_store() {
    let p = prefix();
    let dir = creds_dir();
    let creds = std::sync::Arc::new(EnvFileCredentials::with_dir(dir.path()));
    let admin = builder().with_region("eu-central-1").build().await.unwrap();
    create(&admin, &format!("{p}crawbl/dev/backend/redis"), "from-store").await;

    let yaml = store_yaml(&p, &format!("      prefix: {p}crawbl/dev/\n"));
    let m = secretsync_core::manifest::load_str(&yaml, "store.yaml")
        .into_result()
        .expect("manifest");
    let store = &m.stores[0];
    let built = AwsFactory.build(store, creds.clone()).await.expect("build");
    assert_eq!(built.source.provider(), "aws");
    assert!(built.writer.is_some());
    let v = built.source.get(&RemoteKey::new("backend/redis")).await.unwrap();
    assert_eq!(v.value.expose_str(), Some("from-store"));

    // AssumeRole against moto's STS (same endpoint), then Secrets Manager with those keys.
    let role = format!("arn:aws:iam::123456789012:role/{p}reader");
    let yaml = store_yaml(&p, &format!("      role: {role}\n      externalID: ext-1\n"));
    let m = secretsync_core::manifest::load_str(&yaml, "store.yaml")
        .into_result()
        .expect("manifest");
    let mark = recording().len();
    let built = AwsFactory.build(&m.stores[0], creds.clone()).await.expect("build");
    let v = built
        .source
        .get(&RemoteKey::new(format!("{p}crawbl/dev/backend/redis")))
        .await
        .unwrap();
    assert_eq!(v.value.expose_str(), Some("from-store"));
    let recs = recorded_since(mark, &p);
    assert_eq!(count(&recs, "AssumeRole"), 1, "{recs:?}");

    // Unsupported fields are named.
    let yaml = store_yaml(
        &p,
        "      role: arn:aws:iam::123456789012:role/r\n      transitiveTagKeys: [a]\n",
    );
    let m = secretsync_core::manifest::load_str(&yaml, "store.yaml")
        .into_result()
        .expect("manifest");
    let e = AwsFactory.build(&m.stores[0], creds.clone()).await.unwrap_err();
    assert!(matches!(e.root(), Error::NotSupported { .. }), "{e}");
    assert!(e.to_string().contains("spec.provider.aws.transitiveTagKeys"), "{e}");

    // auth.jwt: web identity from the pod's IRSA variables, else a clear refusal.
    let yaml = "apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {name: irsa, namespace: ns1}\nspec:\n  provider:\n    aws:\n      region: eu-central-1\n      auth:\n        jwt:\n          serviceAccountRef: {name: eso}\n";
    let m = secretsync_core::manifest::load_str(yaml, "store.yaml")
        .into_result()
        .expect("manifest");
    let r = AwsFactory.build(&m.stores[0], creds.clone()).await;
    if std::env::var_os("AWS_WEB_IDENTITY_TOKEN_FILE").is_some() && std::env::var_os("AWS_ROLE_ARN").is_some() {
        r.expect("web identity from the environment");
    } else {
        let e = r.unwrap_err();
        assert!(matches!(e.root(), Error::NotSupported { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("spec.provider.aws.auth.jwt")
                && text.contains("ns1/eso")
                && text.contains("AWS_WEB_IDENTITY_TOKEN_FILE"),
            "{text}"
        );
    }

    // Missing credentials name the selector.
    let empty = std::sync::Arc::new(EnvFileCredentials::with_dir(tempfile::tempdir().unwrap().path()));
    let yaml = store_yaml(&p, "");
    let m = secretsync_core::manifest::load_str(&yaml, "store.yaml")
        .into_result()
        .expect("manifest");
    let e = AwsFactory.build(&m.stores[0], empty).await.unwrap_err();
    assert!(e.is_not_found() && e.to_string().contains("aws-creds"), "{e}");
}

#[tokio::test]
async fn conformance_source_and_writer_suite_on_moto() {
    use secretsync_core::testkit::{conformance, unique_prefix};
    let sm = source().await;
    let ran = conformance::run_source_suite(&sm, &unique_prefix("conf")).await;
    assert_eq!(ran, 12, "every behaviour applies to AWS Secrets Manager");
}

#[tokio::test]
async fn conformance_through_the_factory_as_dyn_writer() {
    use secretsync_core::testkit::{conformance, unique_prefix};
    let dir = creds_dir();
    let creds = std::sync::Arc::new(EnvFileCredentials::with_dir(dir.path()));
    let p = prefix();
    let m = secretsync_core::manifest::load_str(&store_yaml(&p, ""), "store.yaml")
        .into_result()
        .expect("manifest");
    let built = AwsFactory.build(&m.stores[0], creds).await.expect("build");
    let w = built.writer.expect("aws stores accept writes");
    let ran = conformance::run_source_suite(w.as_ref(), &unique_prefix("confdyn")).await;
    assert_eq!(ran, 12);
}

#[tokio::test]
async fn no_value_in_trace_logs() {
    use secretsync_core::testkit::{CANARY, assert_no_canary, capture_logs};
    let p = prefix();
    let sm = source().await;
    let key = format!("{p}logged");
    let ((), logs) = capture_logs(async {
        let mut req = WriteRequest::new(&key, SecretValue::from(CANARY));
        req.property = Some("password".into());
        sm.put(&req).await.unwrap();
        sm.get(&RemoteKey::new(&key)).await.unwrap();
        sm.get_many(&[RemoteKey::new(&key), RemoteKey::new(format!("{p}missing"))])
            .await;
        sm.change_tokens(&[RemoteKey::new(&key)]).await;
        let mut bad = WriteRequest::new(format!("{p}missing"), SecretValue::from(CANARY));
        bad.property = Some("a".into());
        sm.put(&bad).await.unwrap();
        let e = sm.disable_version(&key, "AWSCURRENT").await.unwrap_err();
        assert_no_canary(&format!("{e} {e:?}"), "an error");
    })
    .await;
    assert!(
        logs.contains("GetSecretValue") || logs.contains("get_secret_value"),
        "trace logs were captured"
    );
    assert_no_canary(&logs, "trace logs");
}
