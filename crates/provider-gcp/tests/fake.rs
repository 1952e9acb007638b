//! Against the fake Secret Manager REST API (`secretsync_fakes::gcp`), through the real client over
//! loopback: what drongo does not model (pagination, filters, CRC32C, `latest` pointing at
//! a disabled version, injected errors, regional paths), and call counts.

mod common;

use std::time::{Duration, Instant};

use common::{builder_for, unique};
use secretsync_core::testkit::conformance::{self as c, Ran};
use secretsync_core::{
    Error, FindQuery, RemoteKey, SecretSource, SecretValue, SecretWriter, WriteOutcome, WriteRequest,
};
use secretsync_fakes::gcp::{Crc32cMode, FakeSecretManager, VersionState};
use secretsync_gcp::{GcpSecretManager, VersionSelectionPolicy};

const P: &str = "projects/development-485000";

fn source(fake: &FakeSecretManager) -> GcpSecretManager {
    builder_for(&fake.host(), "development-485000").build().expect("build")
}

/// Every request the client sent matched a route of the fake.
fn assert_known_routes(fake: &FakeSecretManager) {
    assert_eq!(
        fake.unknown_routes(),
        Vec::<String>::new(),
        "the client sent requests the fake does not know"
    );
}

#[tokio::test]
async fn conformance_suite_against_the_fake() {
    let fake = FakeSecretManager::start().await;
    let src = source(&fake);
    let prefix = unique("k");
    for (name, ran) in [
        (
            "get_returns_current_value",
            c::source_get_returns_current_value(&src, &format!("{prefix}-1")).await,
        ),
        (
            "get_missing_is_not_found",
            c::source_get_missing_is_not_found(&src, &format!("{prefix}-2")).await,
        ),
        (
            "get_many_isolated_errors",
            c::source_get_many_in_order_with_isolated_errors(&src, &format!("{prefix}-3")).await,
        ),
        (
            "get_many_large",
            c::source_get_many_large(&src, &format!("{prefix}-4"), 45).await,
        ),
        (
            "change_tokens_track_writes",
            c::source_change_tokens_track_writes(&src, &format!("{prefix}-5")).await,
        ),
        (
            "find_by_name",
            c::source_find_by_name(&src, &format!("{prefix}-6")).await,
        ),
        (
            "find_by_path",
            c::source_find_by_path(&src, &format!("{prefix}-7")).await,
        ),
        (
            "previous_version_readable",
            c::source_previous_version_readable(&src, &format!("{prefix}-8")).await,
        ),
        (
            "put_creates_then_updates",
            c::writer_put_creates_then_updates(&src, &format!("{prefix}-9")).await,
        ),
        (
            "property_merges_json",
            c::writer_property_merges_json(&src, &format!("{prefix}-10")).await,
        ),
        (
            "disable_previous",
            c::writer_disable_previous(&src, &format!("{prefix}-11")).await,
        ),
        (
            "values_not_in_debug",
            c::source_values_not_in_debug_or_errors(&src, &format!("{prefix}-12")).await,
        ),
    ] {
        assert_eq!(ran, Ran::Passed, "{name} did not run");
    }
    assert_known_routes(&fake);
    assert!(
        fake.requests().iter().all(|r| !r.authorized),
        "an emulator gets no credentials"
    );
}

/// The engine's order per cycle: change_tokens for every key, then get for the keys whose
/// token changed or is unknown. Returns the keys it read.
async fn engine_cycle(src: &GcpSecretManager, keys: &[RemoteKey], known: &mut [Option<String>]) -> usize {
    let tokens = src.change_tokens(keys).await;
    let stale: Vec<usize> = (0..keys.len())
        .filter(|&i| match &tokens[i] {
            Ok(Some(t)) => known[i].as_deref() != Some(t.as_str()),
            _ => true,
        })
        .collect();
    let to_read: Vec<RemoteKey> = stale.iter().map(|&i| keys[i].clone()).collect();
    let read = src.get_many(&to_read).await;
    for (&i, r) in stale.iter().zip(read) {
        let f = r.expect("read");
        known[i] = f.version;
    }
    stale.len()
}

#[tokio::test]
async fn unchanged_cycle_makes_no_access_call_and_one_new_version_makes_one() {
    let fake = FakeSecretManager::start().await;
    let names = [
        "tomoda-jwt-secret",
        "tomoda-db-password",
        "tomoda-redis-password",
        "tomoda-stripe-secret-key",
        "tomoda-email-api-key",
    ];
    for n in names {
        fake.create_secret(P, n, &[]);
        fake.add_version(P, n, format!("{n}-v1").as_bytes());
    }
    let src = source(&fake);
    let keys: Vec<RemoteKey> = names.iter().map(|n| RemoteKey::new(*n)).collect();
    let mut known = vec![None; keys.len()];

    assert_eq!(
        engine_cycle(&src, &keys, &mut known).await,
        5,
        "first cycle reads everything"
    );
    assert_eq!(fake.count("AccessSecretVersion"), 5);
    assert_eq!(fake.count("GetSecretVersion"), 5);

    fake.clear_log();
    assert_eq!(engine_cycle(&src, &keys, &mut known).await, 0);
    assert_eq!(
        fake.count("AccessSecretVersion"),
        0,
        "nothing changed: no billed access call"
    );
    assert_eq!(fake.count("GetSecretVersion"), 5, "one metadata call per key");
    assert_eq!(fake.requests().len(), 5);

    fake.add_version(P, "tomoda-db-password", b"rotated");
    fake.clear_log();
    assert_eq!(engine_cycle(&src, &keys, &mut known).await, 1);
    assert_eq!(
        fake.count("AccessSecretVersion"),
        1,
        "exactly the changed secret is read"
    );
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.operation == "AccessSecretVersion" && r.path.contains("tomoda-db-password/versions/latest"))
    );
    assert_eq!(known[1].as_deref(), Some("2"));
    assert_eq!(
        src.call_stats().unwrap().of("AccessSecretVersion"),
        6,
        "call stats agree with the server's log"
    );
    assert_eq!(src.call_stats().unwrap().of("GetSecretVersion"), 15);
    assert_known_routes(&fake);
}

#[tokio::test]
async fn disabled_latest_fails_with_latest_or_fail_and_falls_back_with_latest_or_fetch() {
    let fake = FakeSecretManager::start().await;
    fake.create_secret(P, "tomoda-jwt-secret", &[]);
    fake.add_version(P, "tomoda-jwt-secret", b"v1");
    fake.add_version(P, "tomoda-jwt-secret", b"v2");
    fake.add_version(P, "tomoda-jwt-secret", b"v3");
    fake.set_state(P, "tomoda-jwt-secret", 3, VersionState::Disabled);
    fake.set_state(P, "tomoda-jwt-secret", 2, VersionState::Destroyed);
    let key = RemoteKey::new("tomoda-jwt-secret");

    let fail = source(&fake);
    assert_eq!(fail.version_selection_policy(), VersionSelectionPolicy::LatestOrFail);
    let e = fail.get(&key).await.unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("version 3 of `tomoda-jwt-secret` is DISABLED"), "{msg}");
    assert!(msg.contains("LatestOrFetch"), "the error says how to fix it: {msg}");
    assert!(!e.is_retryable() && !e.is_not_found());
    let t = fail.change_tokens(std::slice::from_ref(&key)).await;
    assert!(t[0].as_ref().unwrap_err().to_string().contains("is DISABLED"), "{t:?}");

    let fetch = builder_for(&fake.host(), "development-485000")
        .with_version_selection_policy(VersionSelectionPolicy::LatestOrFetch)
        .build()
        .unwrap();
    fake.clear_log();
    let f = fetch.get(&key).await.unwrap();
    assert_eq!(
        (f.value, f.version.as_deref()),
        (SecretValue::from("v1"), Some("1")),
        "newest ENABLED version"
    );
    assert_eq!(fake.count("AccessSecretVersion"), 2, "latest (refused), then version 1");
    assert_eq!(fake.count("ListSecretVersions"), 1);
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.operation == "ListSecretVersions" && r.query.contains("filter=state%3AENABLED"))
    );
    let t = fetch.change_tokens(std::slice::from_ref(&key)).await;
    assert_eq!(
        t[0].as_ref().unwrap().as_deref(),
        Some("1"),
        "the token follows the version actually read"
    );

    // A pinned version is read as asked, whatever the policy.
    let e = fetch
        .get(&RemoteKey::with_version("tomoda-jwt-secret", "2"))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("version 2 of `tomoda-jwt-secret` is DESTROYED"),
        "{e}"
    );
    assert_known_routes(&fake);
}

#[tokio::test]
async fn list_secrets_follows_three_pages_with_a_server_side_label_filter() {
    let fake = FakeSecretManager::start().await;
    for i in 0..5 {
        fake.create_secret(P, &format!("payments-{i}"), &[("team", "payments"), ("env", "prod")]);
        fake.create_secret(P, &format!("other-{i}"), &[("team", "web")]);
    }
    fake.create_secret(P, "payments-dev", &[("team", "payments"), ("env", "dev")]);
    let src = builder_for(&fake.host(), "development-485000")
        .with_page_size(2)
        .build()
        .unwrap();
    let q = FindQuery {
        tags: [("team".into(), "payments".into()), ("env".into(), "prod".into())].into(),
        ..Default::default()
    };
    let found = src.find(&q).await.unwrap();
    assert_eq!(found, (0..5).map(|i| format!("payments-{i}")).collect::<Vec<_>>());
    let lists: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.operation == "ListSecrets")
        .collect();
    assert_eq!(lists.len(), 3, "5 matches at 2 a page: 3 pages");
    for r in &lists {
        assert!(r.query.contains("pageSize=2"), "{}", r.query);
        assert!(
            r.query.contains("filter=labels.env%3Dprod+AND+labels.team%3Dpayments"),
            "server-side filter: {}",
            r.query
        );
    }
    assert!(lists[1].query.contains("pageToken=fake-offset-2") && lists[2].query.contains("pageToken=fake-offset-4"));

    // By name regexp: no server filter, every page, matched on the client.
    fake.clear_log();
    let by_name = src
        .find(&FindQuery {
            name_regexp: Some("^other-[0-2]$".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_name, vec!["other-0", "other-1", "other-2"]);
    assert_eq!(fake.count("ListSecrets"), 6, "11 secrets at 2 a page");
    assert_known_routes(&fake);
}

#[tokio::test]
async fn crc32c_is_checked_when_sent() {
    let fake = FakeSecretManager::start().await;
    fake.add_version(P, "s", b"payload");
    let src = source(&fake);
    let k = RemoteKey::new("s");
    assert_eq!(src.get(&k).await.unwrap().value, SecretValue::from("payload"));
    fake.set_crc32c(Crc32cMode::Omit);
    assert_eq!(
        src.get(&k).await.unwrap().value,
        SecretValue::from("payload"),
        "no checksum: nothing to check"
    );
    fake.set_crc32c(Crc32cMode::Corrupt);
    let e = src.get(&k).await.unwrap_err();
    assert!(e.to_string().contains("CRC32C") && e.to_string().contains('s'), "{e}");
    assert!(!e.to_string().contains("payload\""), "{e}");
    assert!(e.is_retryable());
}

#[tokio::test]
async fn writes_send_a_checksum_the_server_verifies() {
    let fake = FakeSecretManager::start().await;
    let src = source(&fake);
    let out = src
        .put(&WriteRequest::new("tomoda-db-password", SecretValue::from("pw1")))
        .await
        .unwrap();
    assert_eq!(
        out,
        WriteOutcome::Created {
            version: Some("1".into())
        }
    );
    assert_eq!(
        fake.labels(P, "tomoda-db-password")
            .unwrap()
            .get("managed-by")
            .map(String::as_str),
        Some("secretsync")
    );
    assert_eq!(fake.data(P, "tomoda-db-password", 1).unwrap(), b"pw1");
    let mut req = WriteRequest::new("tomoda-db-password", SecretValue::from("pw2"));
    req.disable_previous = true;
    fake.clear_log();
    let out = src.put(&req).await.unwrap();
    assert_eq!(
        out,
        WriteOutcome::Updated {
            version: Some("2".into()),
            previous: Some("1".into()),
            disabled_previous: true
        }
    );
    assert_eq!(fake.state(P, "tomoda-db-password", 1), Some(VersionState::Disabled));
    let ops: Vec<_> = fake.requests().iter().map(|r| r.operation).collect();
    assert_eq!(
        ops,
        vec![
            "GetSecret",
            "GetSecretVersion",
            "AddSecretVersion",
            "DisableSecretVersion"
        ]
    );
    // Empty values never reach the server.
    fake.clear_log();
    let e = src
        .put(&WriteRequest::new("tomoda-db-password", SecretValue::from("")))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::InvalidInput { .. }) && e.to_string().contains("empty payloads"),
        "{e}"
    );
    assert!(fake.requests().is_empty());
    assert_known_routes(&fake);
}

#[tokio::test]
async fn permission_denied_names_the_secret_and_the_role() {
    let fake = FakeSecretManager::start().await;
    fake.add_version(P, "tomoda-stripe-secret-key", b"sk");
    let src = source(&fake);
    fake.fail_next(Some("AccessSecretVersion"), "", 403, 1);
    let e = src.get(&RemoteKey::new("tomoda-stripe-secret-key")).await.unwrap_err();
    assert!(matches!(e, Error::PermissionDenied { .. }), "{e}");
    let m = e.to_string();
    assert!(
        m.contains("tomoda-stripe-secret-key") && m.contains("roles/secretmanager.secretAccessor"),
        "{m}"
    );
    assert_eq!(fake.count("AccessSecretVersion"), 1, "denied is not retried");
    assert_eq!(
        src.call_stats()
            .unwrap()
            .snapshot()
            .get(&("AccessSecretVersion".into(), "denied".into())),
        Some(&1)
    );
    fake.fail_next(Some("AddSecretVersion"), "", 403, 1);
    let e = src
        .put(&WriteRequest::new("tomoda-stripe-secret-key", SecretValue::from("x")))
        .await;
    // The secret is unlabelled, so the write is refused before AddSecretVersion; force it.
    assert!(matches!(e, Err(Error::PermissionDenied { .. })));
    let mut forced = WriteRequest::new("tomoda-stripe-secret-key", SecretValue::from("x"));
    forced.force = true;
    let e = src.put(&forced).await.unwrap_err();
    assert!(e.to_string().contains("roles/secretmanager.secretVersionAdder"), "{e}");
}

#[tokio::test]
async fn resource_exhausted_is_retried_with_backoff_then_throttled() {
    let fake = FakeSecretManager::start().await;
    fake.add_version(P, "s", b"v");
    let src = builder_for(&fake.host(), "development-485000")
        .with_initial_backoff(Duration::from_millis(50))
        .build()
        .unwrap();
    fake.fail_next(Some("AccessSecretVersion"), "", 429, 1);
    assert_eq!(
        src.get(&RemoteKey::new("s")).await.unwrap().value,
        SecretValue::from("v")
    );
    assert_eq!(fake.count("AccessSecretVersion"), 2, "one 429, one retry");
    let snap = src.call_stats().unwrap().snapshot();
    assert_eq!(snap.get(&("AccessSecretVersion".into(), "throttled".into())), Some(&1));
    assert_eq!(snap.get(&("AccessSecretVersion".into(), "ok".into())), Some(&1));

    fake.fail_next(Some("AccessSecretVersion"), "", 429, 100);
    fake.clear_log();
    let e = src.get(&RemoteKey::new("s")).await.unwrap_err();
    assert!(matches!(e, Error::Throttled { .. }) && e.is_retryable(), "{e}");
    assert_eq!(fake.count("AccessSecretVersion"), 3, "max attempts");
}

#[tokio::test]
async fn transient_503_is_retried_but_a_write_is_not_repeated() {
    let fake = FakeSecretManager::start().await;
    fake.create_secret(P, "s", &[("managed-by", "secretsync")]);
    fake.add_version(P, "s", b"v");
    let src = builder_for(&fake.host(), "development-485000")
        .with_initial_backoff(Duration::from_millis(20))
        .build()
        .unwrap();
    fake.fail_next(Some("GetSecretVersion"), "", 503, 2);
    assert_eq!(
        src.change_tokens(&[RemoteKey::new("s")]).await[0]
            .as_ref()
            .unwrap()
            .as_deref(),
        Some("1")
    );
    assert_eq!(fake.count("GetSecretVersion"), 3);
    fake.fail_next(Some("AddSecretVersion"), "", 503, 1);
    let e = src
        .put(&WriteRequest::new("s", SecretValue::from("w")))
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert_eq!(
        fake.count("AddSecretVersion"),
        1,
        "AddSecretVersion may have landed: not repeated"
    );
    assert_eq!(fake.version_count(P, "s"), 1);
}

#[tokio::test]
async fn change_token_budget_answers_unknown_when_spent() {
    let fake = FakeSecretManager::start().await;
    for n in ["a", "b", "c"] {
        fake.add_version(P, n, b"v");
    }
    let src = builder_for(&fake.host(), "development-485000")
        .with_metadata_calls_per_minute(2)
        .build()
        .unwrap();
    let keys: Vec<_> = ["a", "b", "c"].iter().map(|k| RemoteKey::new(*k)).collect();
    let t = src.change_tokens(&keys).await;
    let got: Vec<_> = t.iter().map(|r| r.as_ref().unwrap().clone()).collect();
    assert_eq!(got.iter().filter(|t| t.is_some()).count(), 2, "{got:?}");
    assert_eq!(
        got.iter().filter(|t| t.is_none()).count(),
        1,
        "over budget: unknown, not a wait"
    );
    assert_eq!(fake.count("GetSecretVersion"), 2);
}

#[tokio::test]
async fn over_budget_keys_keep_their_last_token_so_unchanged_cycles_access_nothing() {
    let fake = FakeSecretManager::start().await;
    let names = ["a", "b", "c", "d", "e"];
    for n in names {
        fake.add_version(P, n, b"v1");
    }
    // A budget of 2 metadata calls for 5 keys (the bucket refills slowly: 2 per minute).
    let src = builder_for(&fake.host(), "development-485000")
        .with_metadata_calls_per_minute(2)
        .build()
        .unwrap();
    let keys: Vec<_> = names.iter().map(|k| RemoteKey::new(*k)).collect();
    // First cycle: the engine reads the values it has never seen; the accesses carry tokens.
    for r in src.get_many(&keys).await {
        r.unwrap();
    }
    fake.clear_log();
    // Unchanged cycle: 2 keys checked, 3 keep their last token; no access call at all.
    let t = src.change_tokens(&keys).await;
    assert!(t.iter().all(|r| matches!(r, Ok(Some(v)) if v == "1")), "{t:?}");
    assert_eq!(
        (fake.count("GetSecretVersion"), fake.count("AccessSecretVersion")),
        (2, 0)
    );
    // The next call finds the bucket empty: every key keeps its last token, still no access.
    let t = src.change_tokens(&keys).await;
    assert!(t.iter().all(|r| matches!(r, Ok(Some(v)) if v == "1")), "{t:?}");
    assert_eq!(fake.count("AccessSecretVersion"), 0);
}

#[tokio::test]
async fn metadata_returns_labels_and_annotations() {
    let fake = FakeSecretManager::start().await;
    fake.create_secret(P, "tomoda-sentry-dsn", &[("team", "obs")]);
    fake.set_annotation(P, "tomoda-sentry-dsn", "owner", "alice@example.com");
    let src = source(&fake);
    let m = src.metadata("tomoda-sentry-dsn").await.unwrap();
    assert_eq!(m.get("team").map(String::as_str), Some("obs"));
    assert_eq!(m.get("owner").map(String::as_str), Some("alice@example.com"));
    assert_eq!(fake.count("GetSecret"), 1);
    assert!(src.metadata("missing").await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn regional_secrets_use_location_paths() {
    let fake = FakeSecretManager::start().await;
    let src = builder_for(&fake.host(), "development-485000")
        .with_location("europe-west1")
        .build()
        .unwrap();
    assert_eq!(src.parent(), "projects/development-485000/locations/europe-west1");
    src.put(&WriteRequest::new("regional", SecretValue::from("r1")))
        .await
        .unwrap();
    assert_eq!(
        src.get(&RemoteKey::new("regional")).await.unwrap().value,
        SecretValue::from("r1")
    );
    assert_eq!(src.find(&FindQuery::default()).await.unwrap(), vec!["regional"]);
    assert!(fake.requests().iter().all(|r| {
        r.path
            .starts_with("/v1/projects/development-485000/locations/europe-west1/secrets")
    }));
    assert_eq!(
        fake.version_count("projects/development-485000/locations/europe-west1", "regional"),
        1
    );
    assert_known_routes(&fake);
}

#[tokio::test]
async fn not_found_and_bad_keys() {
    let fake = FakeSecretManager::start().await;
    let src = source(&fake);
    let e = src.get(&RemoteKey::new("nope")).await.unwrap_err();
    assert!(e.is_not_found() && e.to_string().contains("nope"), "{e}");
    let e = src.get(&RemoteKey::new("../../etc")).await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
    let e = src.get(&RemoteKey::with_version("x", "1/../2")).await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
    assert_eq!(fake.requests().len(), 1, "invalid keys never reach the server");
    assert!(src.describe("nope").await.unwrap().is_none());
}

#[tokio::test]
async fn a_closed_port_fails_fast() {
    // Port 1: nothing listens there. (A freed ephemeral port may be taken by a fake a
    // parallel test starts.)
    let port = 1;
    let src = builder_for(&format!("127.0.0.1:{port}"), "p").build().unwrap();
    let start = Instant::now();
    let e = src.get(&RemoteKey::new("s")).await.unwrap_err();
    let took = start.elapsed();
    eprintln!("closed port: failed after {took:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(e.is_retryable() && e.to_string().contains("cannot reach"), "{e}");
    assert_eq!(
        src.call_stats().unwrap().of("AccessSecretVersion"),
        3,
        "every attempt is counted"
    );
}
