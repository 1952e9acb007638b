//! Against drongo, a Secret Manager emulator (PyPI), through the real client over loopback.

mod common;

use common::{drongo_source, unique};
use secretsync_core::testkit::conformance::{self as c, Ran};
use secretsync_core::{FindQuery, RemoteKey, SecretSource, SecretValue, SecretWriter, WriteOutcome, WriteRequest};
use secretsync_gcp::VersionSelectionPolicy;

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let project = unique("conf");
            let src = drongo_source(&project);
            assert_eq!(c::$name(&src, &unique("k")).await, Ran::Passed, "{} did not run", stringify!($name));
        }
    )*};
}

conformance!(
    source_get_returns_current_value,
    source_get_missing_is_not_found,
    source_get_many_in_order_with_isolated_errors,
    source_change_tokens_track_writes,
    source_find_by_name,
    source_find_by_path,
    source_previous_version_readable,
    writer_put_creates_then_updates,
    writer_property_merges_json,
    writer_disable_previous,
    source_values_not_in_debug_or_errors,
);

#[tokio::test]
async fn source_get_many_large() {
    let src = drongo_source(&unique("conf"));
    assert_eq!(c::source_get_many_large(&src, &unique("k"), 45).await, Ran::Passed);
}

#[tokio::test]
async fn whole_source_suite_runs_every_behaviour() {
    let src = drongo_source(&unique("suite"));
    assert_eq!(
        c::run_source_suite(&src, &unique("k")).await,
        12,
        "every behaviour applies to gcpsm"
    );
}

/// Seed 000's rule at the writer level: a differing value adds a version and disables the
/// old one; describe and get give the rotation layer what it needs to see an equal value.
#[tokio::test]
async fn rotation_adds_a_version_and_disables_the_old_one() {
    let src = drongo_source(&unique("rot"));
    let key = "tomoda-jwt-secret";
    let first = src
        .put(&WriteRequest::new(key, SecretValue::from("one")))
        .await
        .unwrap();
    assert_eq!(
        first,
        WriteOutcome::Created {
            version: Some("1".into())
        }
    );

    // Equal desired value: the rotation layer compares with get and writes nothing.
    let current = src.get(&RemoteKey::new(key)).await.unwrap();
    assert_eq!(current.value, SecretValue::from("one"));
    assert_eq!(current.version.as_deref(), Some("1"));
    let calls_before = src.api_calls();

    let mut req = WriteRequest::new(key, SecretValue::from("two"));
    req.disable_previous = true;
    let out = src.put(&req).await.unwrap();
    assert_eq!(
        out,
        WriteOutcome::Updated {
            version: Some("2".into()),
            previous: Some("1".into()),
            disabled_previous: true
        }
    );
    let stats = src.call_stats().unwrap();
    // The second put: GetSecret, GetSecretVersion(latest), AddSecretVersion, DisableSecretVersion.
    assert_eq!(src.api_calls() - calls_before, 4, "{:?}", stats.snapshot());
    assert_eq!(stats.of("AddSecretVersion"), 2, "one per put");
    assert_eq!(stats.of("DisableSecretVersion"), 1);
    assert_eq!(stats.of("CreateSecret"), 1, "created once, on the first put");

    let d = src.describe(key).await.unwrap().unwrap();
    assert!(d.managed);
    assert_eq!(d.current_version.as_deref(), Some("2"));
    assert_eq!(
        d.versions
            .iter()
            .map(|v| (v.id.as_str(), v.enabled))
            .collect::<Vec<_>>(),
        vec![("2", true), ("1", false)]
    );
    let e = src.get(&RemoteKey::with_version(key, "1")).await.unwrap_err();
    assert!(
        e.to_string().contains("version 1 of `tomoda-jwt-secret` is DISABLED"),
        "{e}"
    );
    assert!(!e.is_retryable());
    assert_eq!(
        src.get(&RemoteKey::new(key)).await.unwrap().value,
        SecretValue::from("two")
    );
}

#[tokio::test]
async fn unmanaged_secret_is_refused_unless_forced() {
    let project = unique("unmanaged");
    let src = drongo_source(&project);
    // Create a secret the way gcloud would: without our label.
    let host = common::drongo_host();
    let admin = common::builder_for(&host, &project).build().unwrap();
    admin
        .put(&WriteRequest::new("foreign", SecretValue::from("x")))
        .await
        .unwrap();
    // Remove the label with a raw PATCH, as an operator outside secretsync would have no label.
    raw_patch_labels(
        &host,
        &format!("/v1/projects/{project}/secrets/foreign?updateMask=labels"),
    );
    let e = src
        .put(&WriteRequest::new("foreign", SecretValue::from("y")))
        .await
        .unwrap_err();
    assert!(matches!(e, secretsync_core::Error::PermissionDenied { .. }), "{e}");
    assert!(
        e.to_string().contains("foreign") && e.to_string().contains("managed-by"),
        "{e}"
    );
    assert_eq!(
        src.call_stats().unwrap().of("AddSecretVersion"),
        0,
        "refused before writing"
    );
    let mut forced = WriteRequest::new("foreign", SecretValue::from("y"));
    forced.force = true;
    assert!(matches!(src.put(&forced).await.unwrap(), WriteOutcome::Updated { .. }));
}

fn raw_patch_labels(host: &str, path: &str) {
    use std::io::{Read, Write};
    let body = r#"{"labels":{}}"#;
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "PATCH {path} HTTP/1.0\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(
        out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200"),
        "{out}"
    );
}

#[tokio::test]
async fn empty_payload_is_refused_before_any_call() {
    let src = drongo_source(&unique("empty"));
    let e = src
        .put(&WriteRequest::new("tomoda-google-client-id", SecretValue::from("")))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
    assert_eq!(src.api_calls(), 0);
}

#[tokio::test]
async fn find_by_labels_and_metadata() {
    let src = drongo_source(&unique("labels"));
    for k in ["a", "b"] {
        src.put(&WriteRequest::new(k, SecretValue::from("v"))).await.unwrap();
    }
    let q = FindQuery {
        tags: [("managed-by".to_string(), "secretsync".to_string())].into(),
        ..Default::default()
    };
    assert_eq!(src.find(&q).await.unwrap(), vec!["a", "b"]);
    let none = FindQuery {
        tags: [("team".to_string(), "x".to_string())].into(),
        ..Default::default()
    };
    assert!(
        src.find(&none).await.unwrap().is_empty(),
        "labels are checked on the client too (drongo ignores filter)"
    );
    let m = src.metadata("a").await.unwrap();
    assert_eq!(m.get("managed-by").map(String::as_str), Some("secretsync"));
    assert!(src.metadata("zzz").await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn latest_or_fetch_against_drongo() {
    // drongo resolves `latest` to the newest ENABLED version itself (the real service does
    // not), so both policies read v1 here; the fake tests the difference.
    let project = unique("fetch");
    let src = common::builder_for(&common::drongo_host(), &project)
        .with_version_selection_policy(VersionSelectionPolicy::LatestOrFetch)
        .build()
        .unwrap();
    src.put(&WriteRequest::new("s", SecretValue::from("v1"))).await.unwrap();
    src.put(&WriteRequest::new("s", SecretValue::from("v2"))).await.unwrap();
    src.disable_version("s", "2").await.unwrap();
    let f = src.get(&RemoteKey::new("s")).await.unwrap();
    assert_eq!((f.value, f.version.as_deref()), (SecretValue::from("v1"), Some("1")));
}
