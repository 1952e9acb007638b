//! Request counts of engine cycles: find, then change_tokens, then get_many — one request
//! per config per cycle, and a 304 when nothing changed.

mod common;

use std::time::Duration;

use common::*;
use secretsync_core::source::{FindQuery, RemoteKey, SecretSource};
use secretsync_doppler::DopplerSource;

const FRESH: Duration = Duration::from_millis(300);

/// What the engine does for one store in one cycle: every distinct find, then the change
/// tokens of every key, then a read of the keys whose token is new or changed.
async fn cycle(
    source: &DopplerSource,
    finds: &[FindQuery],
    keys: &[RemoteKey],
    known: &[Option<String>],
) -> (Vec<String>, Vec<usize>) {
    for q in finds {
        source.find(q).await.expect("find");
    }
    let tokens: Vec<String> = source
        .change_tokens(keys)
        .await
        .into_iter()
        .map(|t| t.expect("token").expect("doppler always has a token"))
        .collect();
    let changed: Vec<usize> = (0..keys.len())
        .filter(|&i| known.get(i).cloned().flatten().as_ref() != Some(&tokens[i]))
        .collect();
    let to_read: Vec<RemoteKey> = changed.iter().map(|&i| keys[i].clone()).collect();
    for (f, &i) in source.get_many(&to_read).await.into_iter().zip(&changed) {
        assert_eq!(
            f.expect("read").version.as_ref(),
            Some(&tokens[i]),
            "Fetched::version is the change token"
        );
    }
    (tokens, changed)
}

#[tokio::test]
async fn fifty_specs_of_200_keys_cost_one_request_then_a_304() {
    let names: Vec<String> = (0..200).map(|i| format!("APP{:02}_KEY_{i:03}", i / 4)).collect();
    let values: Vec<String> = (0..200).map(|i| format!("value-{i}-{}", "x".repeat(i % 7))).collect();
    let pairs: Vec<(&str, &str)> = names
        .iter()
        .map(String::as_str)
        .zip(values.iter().map(String::as_str))
        .collect();
    let (fake, _p, _c, token) = fake_with(&pairs).await;
    let source = builder(&fake, &token).with_freshness(FRESH).build().unwrap();

    // 50 specs of 4 keys each: the engine dedupes them into 200 keys of this store.
    let keys: Vec<RemoteKey> = names.iter().map(RemoteKey::new).collect();
    let finds = vec![
        FindQuery {
            name_regexp: Some("^APP0[0-4]_".into()),
            ..Default::default()
        },
        FindQuery {
            path: Some("APP49_".into()),
            ..Default::default()
        },
    ];

    let (tokens1, changed1) = cycle(&source, &finds, &keys, &[]).await;
    assert_eq!(changed1.len(), 200, "first cycle reads every key");
    assert_eq!(downloads(&fake), vec![200], "cycle 1: one request");
    assert_eq!(source.call_stats().unwrap().total(), 1);

    tokio::time::sleep(FRESH + Duration::from_millis(50)).await;
    let known: Vec<Option<String>> = tokens1.iter().cloned().map(Some).collect();
    let (tokens2, changed2) = cycle(&source, &finds, &keys, &known).await;
    assert_eq!(
        downloads(&fake),
        vec![200, 304],
        "cycle 2: one conditional request, answered 304"
    );
    let last = fake.requests().last().cloned().unwrap();
    assert_eq!(
        last.if_none_match,
        fake.etag(&_p, &_c),
        "revalidated with the ETag of the first download"
    );
    assert_eq!(tokens2, tokens1, "unchanged config, unchanged tokens");
    assert!(changed2.is_empty(), "nothing to re-read");
    let snap = source.call_stats().unwrap().snapshot();
    assert_eq!(snap.get(&("secrets/download".into(), "ok".into())), Some(&1));
    assert_eq!(snap.get(&("secrets/download".into(), "not_modified".into())), Some(&1));

    // One value changes in Doppler: one request, exactly that key's token moves.
    fake.set_secret(&_p, &_c, &names[17], "rotated");
    tokio::time::sleep(FRESH + Duration::from_millis(50)).await;
    let (tokens3, changed3) = cycle(&source, &finds, &keys, &known).await;
    assert_eq!(downloads(&fake), vec![200, 304, 200]);
    assert_eq!(changed3, vec![17]);
    assert_ne!(tokens3[17], tokens1[17]);
    let v = source.get(&keys[17]).await.unwrap();
    assert_eq!(v.value.expose_str(), Some("rotated"));
    assert_eq!(
        downloads(&fake).len(),
        3,
        "still inside the window: served from the download"
    );
}

#[tokio::test]
async fn concurrent_reads_share_one_request() {
    let (fake, _p, _c, token) = fake_with(&[("A", "1"), ("B", "2")]).await;
    let source = std::sync::Arc::new(source(&fake, &token));
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let s = source.clone();
            tokio::spawn(async move { s.get(&RemoteKey::new(if i % 2 == 0 { "A" } else { "B" })).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(downloads(&fake), vec![200]);
}

#[tokio::test]
async fn zero_freshness_revalidates_every_call() {
    let (fake, _p, _c, token) = fake_with(&[("A", "1")]).await;
    let source = builder(&fake, &token).with_freshness(Duration::ZERO).build().unwrap();
    for _ in 0..3 {
        source.get(&RemoteKey::new("A")).await.unwrap();
    }
    assert_eq!(downloads(&fake), vec![200, 304, 304]);
    source.refresh().await.unwrap();
    assert_eq!(downloads(&fake).len(), 4);
}

#[tokio::test]
async fn find_filters_and_transformers_come_from_the_one_download() {
    let (fake, _p, _c, token) = fake_with(&[("API_KEY", "k"), ("API_URL", "u"), ("DB_PASSWORD", "p")]).await;
    let plain = source(&fake, &token);
    let by_name = plain
        .find(&FindQuery {
            name_regexp: Some("^API_".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_name, vec!["API_KEY", "API_URL"]);
    let by_path = plain
        .find(&FindQuery {
            path: Some("DB_".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_path, vec!["DB_PASSWORD"]);
    let all = plain.find(&FindQuery::default()).await.unwrap();
    assert_eq!(
        all,
        vec![
            "API_KEY",
            "API_URL",
            "DB_PASSWORD",
            "DOPPLER_CONFIG",
            "DOPPLER_ENVIRONMENT",
            "DOPPLER_PROJECT"
        ]
    );
    let tags = FindQuery {
        tags: [("team".to_string(), "x".to_string())].into(),
        ..Default::default()
    };
    assert!(matches!(
        plain.find(&tags).await.unwrap_err(),
        secretsync_core::Error::NotSupported { .. }
    ));
    assert_eq!(downloads(&fake), vec![200]);

    let tf = builder(&fake, &token).with_name_transformer("tf-var").build().unwrap();
    let names = tf
        .find(&FindQuery {
            path: Some("TF_VAR_api".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(names, vec!["TF_VAR_api_key", "TF_VAR_api_url"]);
    // Both the transformed and the Doppler name read the value, from the same download.
    assert_eq!(
        tf.get(&RemoteKey::new("TF_VAR_api_key"))
            .await
            .unwrap()
            .value
            .expose_str(),
        Some("k")
    );
    assert_eq!(
        tf.get(&RemoteKey::new("API_KEY")).await.unwrap().value.expose_str(),
        Some("k")
    );
    assert_eq!(downloads(&fake), vec![200, 200], "one download per source");
}

#[tokio::test]
async fn extract_reads_the_json_value_whole() {
    let json = r#"{"host":"db","password":"pw"}"#;
    let (fake, _p, _c, token) = fake_with(&[("DB_CONFIG", json)]).await;
    let source = source(&fake, &token);
    let v = source.get(&RemoteKey::new("DB_CONFIG")).await.unwrap();
    let parsed: serde_json::Value = serde_json::from_slice(v.value.expose()).unwrap();
    assert_eq!(parsed["password"], "pw");
}
