//! Conformance suites: one `pub async fn` per behaviour of each trait's contract. Every
//! provider runs the source/writer suite against its real peer (or faithful fake); every
//! sink runs the sink suite. Functions skip behaviours the capabilities say are absent —
//! visibly: they return [`Ran::NotApplicable`] so callers can assert what ran.
//!
//! Source suites take a [`SecretWriter`] so they seed their own data, with a unique
//! `prefix` per test run. Names are `{prefix}-a` style (letters, digits and `-`, which every
//! provider accepts).

use serde_json::Value;

use super::{CANARY, assert_no_canary, desired, map};
use crate::error::Error;
use crate::sink::{ApplyOutcome, Compared, CreationPolicy, SecretSink, TargetKind, TargetRef};
use crate::source::{FindQuery, RemoteKey, SecretWriter, WriteOutcome, WriteRequest};
use crate::value::SecretValue;

/// Whether a suite function ran its assertions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ran {
    /// All assertions ran and passed.
    Passed,
    /// The capability is absent, nothing was asserted.
    NotApplicable,
}

fn put(key: &str, value: &str) -> WriteRequest {
    WriteRequest::new(key, SecretValue::from(value))
}

async fn seed(w: &dyn SecretWriter, key: &str, value: &str) {
    w.put(&put(key, value))
        .await
        .unwrap_or_else(|e| panic!("seeding `{key}` failed: {e}"));
}

fn text(v: &SecretValue) -> String {
    String::from_utf8(v.expose().to_vec()).expect("test values are UTF-8")
}

/// `get` returns the current value, and the new one after a write.
pub async fn source_get_returns_current_value(w: &dyn SecretWriter, prefix: &str) -> Ran {
    let key = format!("{prefix}-get");
    seed(w, &key, "v1").await;
    assert_eq!(text(&w.get(&RemoteKey::new(&key)).await.expect("get").value), "v1");
    seed(w, &key, "v2").await;
    assert_eq!(text(&w.get(&RemoteKey::new(&key)).await.expect("get").value), "v2");
    Ran::Passed
}

/// `get` of a missing key is NotFound and names the key.
pub async fn source_get_missing_is_not_found(w: &dyn SecretWriter, prefix: &str) -> Ran {
    let key = format!("{prefix}-missing");
    let e = w.get(&RemoteKey::new(&key)).await.expect_err("a missing key must fail");
    assert!(e.is_not_found(), "expected NotFound, got: {e}");
    assert!(e.to_string().contains(&key), "the error must name the key: {e}");
    Ran::Passed
}

/// `get_many` answers in input order, one entry per key, a failing key not failing others.
pub async fn source_get_many_in_order_with_isolated_errors(w: &dyn SecretWriter, prefix: &str) -> Ran {
    let (a, b, missing) = (
        format!("{prefix}-many-a"),
        format!("{prefix}-many-b"),
        format!("{prefix}-many-missing"),
    );
    seed(w, &a, "A").await;
    seed(w, &b, "B").await;
    let keys = [RemoteKey::new(&b), RemoteKey::new(&missing), RemoteKey::new(&a)];
    let out = w.get_many(&keys).await;
    assert_eq!(out.len(), 3);
    assert_eq!(text(&out[0].as_ref().expect("b").value), "B");
    assert!(
        out[1].as_ref().err().is_some_and(Error::is_not_found),
        "missing key must be NotFound"
    );
    assert_eq!(text(&out[2].as_ref().expect("a").value), "A");
    Ran::Passed
}

/// `get_many` of many keys (more than one batch of any provider) returns them all, in order.
pub async fn source_get_many_large(w: &dyn SecretWriter, prefix: &str, n: usize) -> Ran {
    let keys: Vec<RemoteKey> = (0..n)
        .map(|i| RemoteKey::new(format!("{prefix}-bulk-{i:03}")))
        .collect();
    for (i, k) in keys.iter().enumerate() {
        seed(w, &k.key, &format!("value-{i}")).await;
    }
    let out = w.get_many(&keys).await;
    assert_eq!(out.len(), n);
    for (i, r) in out.iter().enumerate() {
        assert_eq!(
            text(&r.as_ref().unwrap_or_else(|e| panic!("key {i}: {e}")).value),
            format!("value-{i}")
        );
    }
    Ran::Passed
}

/// Change tokens are stable while nothing changes and change on a write.
pub async fn source_change_tokens_track_writes(w: &dyn SecretWriter, prefix: &str) -> Ran {
    if !w.capabilities().change_tokens {
        return Ran::NotApplicable;
    }
    let (a, b) = (format!("{prefix}-tok-a"), format!("{prefix}-tok-b"));
    seed(w, &a, "1").await;
    seed(w, &b, "1").await;
    let keys = [RemoteKey::new(&a), RemoteKey::new(&b)];
    let t1 = w.change_tokens(&keys).await;
    let t2 = w.change_tokens(&keys).await;
    let get = |v: &Vec<crate::Result<Option<String>>>, i: usize| {
        v[i].as_ref()
            .expect("token")
            .clone()
            .expect("a token for an existing key")
    };
    assert_eq!(get(&t1, 0), get(&t2, 0), "tokens must be stable while nothing changes");
    assert_eq!(get(&t1, 1), get(&t2, 1));
    seed(w, &a, "2").await;
    let t3 = w.change_tokens(&keys).await;
    assert_ne!(get(&t1, 0), get(&t3, 0), "a write must change the key's token");
    assert_eq!(get(&t1, 1), get(&t3, 1), "an unchanged key keeps its token");
    let missing = w
        .change_tokens(&[RemoteKey::new(format!("{prefix}-tok-missing"))])
        .await;
    match &missing[0] {
        Ok(None) => {}
        Err(e) if e.is_not_found() => {}
        other => panic!("a missing key's token must be None or NotFound, got {other:?}"),
    }
    Ran::Passed
}

/// `find` by name regexp returns exactly the matching names.
pub async fn source_find_by_name(w: &dyn SecretWriter, prefix: &str) -> Ran {
    if !w.capabilities().find_by_name {
        return Ran::NotApplicable;
    }
    for k in ["x1", "x2", "y1"] {
        seed(w, &format!("{prefix}-find-{k}"), k).await;
    }
    let mut found = w
        .find(&FindQuery {
            name_regexp: Some(format!("^{}-find-x", regex::escape(prefix))),
            ..Default::default()
        })
        .await
        .expect("find");
    found.sort();
    assert_eq!(found, vec![format!("{prefix}-find-x1"), format!("{prefix}-find-x2")]);
    Ran::Passed
}

/// `find` by path prefix returns exactly the names under it.
pub async fn source_find_by_path(w: &dyn SecretWriter, prefix: &str) -> Ran {
    if !w.capabilities().find_by_path {
        return Ran::NotApplicable;
    }
    for k in ["dev-a", "dev-b", "prod-a"] {
        seed(w, &format!("{prefix}-path-{k}"), k).await;
    }
    let mut found = w
        .find(&FindQuery {
            path: Some(format!("{prefix}-path-dev")),
            ..Default::default()
        })
        .await
        .expect("find");
    found.sort();
    assert_eq!(
        found,
        vec![format!("{prefix}-path-dev-a"), format!("{prefix}-path-dev-b")]
    );
    Ran::Passed
}

/// A previous version stays readable by the id `describe` gives for it.
pub async fn source_previous_version_readable(w: &dyn SecretWriter, prefix: &str) -> Ran {
    if !w.capabilities().versions {
        return Ran::NotApplicable;
    }
    let key = format!("{prefix}-ver");
    seed(w, &key, "old").await;
    seed(w, &key, "new").await;
    let d = w.describe(&key).await.expect("describe").expect("exists");
    assert!(
        d.versions.len() >= 2,
        "describe must list versions, newest first: {d:?}"
    );
    let prev = &d.versions[1];
    assert_eq!(
        text(
            &w.get(&RemoteKey::with_version(&key, &prev.id))
                .await
                .expect("previous version")
                .value
        ),
        "old"
    );
    assert_eq!(
        text(
            &w.get(&RemoteKey::with_version(&key, &d.versions[0].id))
                .await
                .expect("current version")
                .value
        ),
        "new"
    );
    Ran::Passed
}

/// `put` creates a missing secret marked managed, then adds versions.
pub async fn writer_put_creates_then_updates(w: &dyn SecretWriter, prefix: &str) -> Ran {
    let key = format!("{prefix}-put");
    assert_eq!(
        w.describe(&key).await.expect("describe"),
        None,
        "describe of a missing key is None"
    );
    let o = w.put(&put(&key, "first")).await.expect("create");
    assert!(matches!(o, WriteOutcome::Created { .. }), "{o:?}");
    let d = w.describe(&key).await.expect("describe").expect("exists after put");
    assert!(d.managed, "secrets created by put carry managed-by: secretsync");
    let o = w.put(&put(&key, "second")).await.expect("update");
    assert!(matches!(o, WriteOutcome::Updated { .. }), "{o:?}");
    assert_eq!(text(&w.get(&RemoteKey::new(&key)).await.expect("get").value), "second");
    Ran::Passed
}

/// `put` with a property merges into the JSON object, keeping other properties.
pub async fn writer_property_merges_json(w: &dyn SecretWriter, prefix: &str) -> Ran {
    let key = format!("{prefix}-json");
    seed(w, &key, r#"{"user":"app","password":"old"}"#).await;
    let mut req = put(&key, "new");
    req.property = Some("password".into());
    w.put(&req).await.expect("property write");
    let v: Value =
        serde_json::from_slice(w.get(&RemoteKey::new(&key)).await.expect("get").value.expose()).expect("still JSON");
    assert_eq!(v, serde_json::json!({"user": "app", "password": "new"}));
    Ran::Passed
}

/// `put` with `disable_previous` disables the old version where the provider can, and the
/// old version is then unreadable.
pub async fn writer_disable_previous(w: &dyn SecretWriter, prefix: &str) -> Ran {
    let key = format!("{prefix}-dis");
    seed(w, &key, "old").await;
    let mut req = put(&key, "new");
    req.disable_previous = true;
    match w.put(&req).await.expect("put") {
        WriteOutcome::Updated {
            previous: Some(prev),
            disabled_previous: true,
            ..
        } => {
            let e = w
                .get(&RemoteKey::with_version(&key, &prev))
                .await
                .expect_err("a disabled version must not be readable");
            assert!(!e.to_string().contains("old"), "errors carry no values");
            assert_eq!(text(&w.get(&RemoteKey::new(&key)).await.expect("current").value), "new");
            Ran::Passed
        }
        WriteOutcome::Updated {
            disabled_previous: false,
            ..
        } => Ran::NotApplicable,
        other => panic!("expected Updated, got {other:?}"),
    }
}

/// A canary value never shows in Debug output of values, results or the source, nor in
/// errors about its key.
pub async fn source_values_not_in_debug_or_errors(w: &dyn SecretWriter, prefix: &str) -> Ran {
    let key = format!("{prefix}-canary");
    seed(w, &key, CANARY).await;
    let f = w.get(&RemoteKey::new(&key)).await.expect("get");
    assert_eq!(text(&f.value), CANARY);
    assert_no_canary(&format!("{f:?} {:?} {w:?}", f.value), "Debug output");
    assert_no_canary(&format!("{}", f.value), "Display output");
    let many = w.get_many(&[RemoteKey::new(&key)]).await;
    assert_no_canary(&format!("{many:?}"), "Debug of get_many");
    let mut bad = put(&key, "x");
    bad.property = Some("p".into());
    if let Err(e) = w.put(&bad).await {
        // Writing a property into a non-JSON value fails; it must not quote the value.
        assert_no_canary(&format!("{e} {e:?}"), "the error of a bad property write");
    }
    Ran::Passed
}

/// Runs every source and writer behaviour; returns how many applied.
pub async fn run_source_suite(w: &dyn SecretWriter, prefix: &str) -> usize {
    let p = |s: &str| format!("{prefix}-{s}");
    let results = [
        source_get_returns_current_value(w, &p("1")).await,
        source_get_missing_is_not_found(w, &p("2")).await,
        source_get_many_in_order_with_isolated_errors(w, &p("3")).await,
        source_get_many_large(w, &p("4"), 45).await,
        source_change_tokens_track_writes(w, &p("5")).await,
        source_find_by_name(w, &p("6")).await,
        source_find_by_path(w, &p("7")).await,
        source_previous_version_readable(w, &p("8")).await,
        writer_put_creates_then_updates(w, &p("9")).await,
        writer_property_merges_json(w, &p("10")).await,
        writer_disable_previous(w, &p("11")).await,
        source_values_not_in_debug_or_errors(w, &p("12")).await,
    ];
    results.iter().filter(|r| **r == Ran::Passed).count()
}

fn target(ns: &str, name: &str) -> TargetRef {
    TargetRef {
        kind: TargetKind::Secret,
        namespace: ns.to_string(),
        name: name.to_string(),
    }
}

/// `read` of a missing target is None.
pub async fn sink_read_missing_is_none(s: &dyn SecretSink, ns: &str, prefix: &str) -> Ran {
    assert!(
        s.read(&target(ns, &format!("{prefix}-none")))
            .await
            .expect("read")
            .is_none()
    );
    Ran::Passed
}

/// `apply` creates, and `read` gives back the data (and type and metadata where stored).
pub async fn sink_apply_creates_and_reads_back(s: &dyn SecretSink, ns: &str, prefix: &str) -> Ran {
    let t = target(ns, &format!("{prefix}-create"));
    let d = desired(
        t.clone(),
        map(&[("A", "1"), ("B", "two words\nand a line")]),
        CreationPolicy::Owner,
    );
    assert_eq!(s.apply(&d).await.expect("apply"), ApplyOutcome::Created);
    if !s.capabilities().readable {
        return Ran::Passed;
    }
    let cur = s.read(&t).await.expect("read").expect("exists");
    assert_eq!(cur.data, d.data);
    if s.capabilities().metadata {
        assert_eq!(cur.secret_type.as_deref(), Some("Opaque"));
        assert_eq!(cur.labels.get("app").map(String::as_str), Some("conformance"));
        assert!(
            cur.recorded_fingerprint().is_some(),
            "the fingerprint annotation is kept"
        );
    }
    Ran::Passed
}

/// An Owner target holds exactly the desired keys: a key dropped upstream disappears.
pub async fn sink_apply_replaces_and_drops_keys(s: &dyn SecretSink, ns: &str, prefix: &str) -> Ran {
    if !s.capabilities().readable {
        return Ran::NotApplicable;
    }
    let t = target(ns, &format!("{prefix}-replace"));
    s.apply(&desired(
        t.clone(),
        map(&[("A", "1"), ("B", "2")]),
        CreationPolicy::Owner,
    ))
    .await
    .expect("create");
    let o = s
        .apply(&desired(
            t.clone(),
            map(&[("A", "1"), ("C", "3")]),
            CreationPolicy::Owner,
        ))
        .await
        .expect("update");
    assert_eq!(o, ApplyOutcome::Updated);
    assert_eq!(
        s.read(&t).await.expect("read").expect("exists").data,
        map(&[("A", "1"), ("C", "3")])
    );
    Ran::Passed
}

/// Binary (non-UTF-8) values round-trip.
pub async fn sink_binary_values(s: &dyn SecretSink, ns: &str, prefix: &str) -> Ran {
    if !s.capabilities().readable || !s.capabilities().metadata {
        return Ran::NotApplicable;
    }
    let t = target(ns, &format!("{prefix}-binary"));
    let mut data = map(&[]);
    data.insert("bin", SecretValue::new(vec![0, 159, 146, 150, 255]));
    s.apply(&desired(t.clone(), data.clone(), CreationPolicy::Owner))
        .await
        .expect("apply");
    assert_eq!(s.read(&t).await.expect("read").expect("exists").data, data);
    Ran::Passed
}

/// Merge: only our keys are touched; others' keys survive; our dropped keys go; a missing
/// target is NotFound.
pub async fn sink_merge_keeps_foreign_keys(s: &dyn SecretSink, ns: &str, prefix: &str) -> Ran {
    if !s.capabilities().merge {
        return Ran::NotApplicable;
    }
    let t = target(ns, &format!("{prefix}-merge"));
    let e = s
        .apply(&desired(t.clone(), map(&[("OURS", "1")]), CreationPolicy::Merge))
        .await
        .expect_err("Merge into a missing target");
    assert!(e.is_not_found(), "{e}");
    // Someone else's Secret.
    s.apply(&desired(t.clone(), map(&[("FOREIGN", "f")]), CreationPolicy::Orphan))
        .await
        .expect("foreign create");
    s.apply(&desired(
        t.clone(),
        map(&[("OURS", "1"), ("OURS2", "2")]),
        CreationPolicy::Merge,
    ))
    .await
    .expect("merge");
    let cur = s.read(&t).await.expect("read").expect("exists");
    assert_eq!(cur.data, map(&[("FOREIGN", "f"), ("OURS", "1"), ("OURS2", "2")]));
    s.apply(&desired(t.clone(), map(&[("OURS", "9")]), CreationPolicy::Merge))
        .await
        .expect("merge again");
    let cur = s.read(&t).await.expect("read").expect("exists");
    assert_eq!(
        cur.data,
        map(&[("FOREIGN", "f"), ("OURS", "9")]),
        "our dropped key goes, the foreign one stays"
    );
    Ran::Passed
}

/// creationPolicy None writes nothing.
pub async fn sink_creation_policy_none_writes_nothing(s: &dyn SecretSink, ns: &str, prefix: &str) -> Ran {
    let t = target(ns, &format!("{prefix}-nonepolicy"));
    assert_eq!(
        s.apply(&desired(t.clone(), map(&[("A", "1")]), CreationPolicy::None))
            .await
            .expect("apply"),
        ApplyOutcome::Unchanged
    );
    if s.capabilities().readable {
        assert!(s.read(&t).await.expect("read").is_none());
    }
    Ran::Passed
}

/// `delete` removes the target and reports whether it existed.
pub async fn sink_delete(s: &dyn SecretSink, ns: &str, prefix: &str) -> Ran {
    if !s.capabilities().readable {
        return Ran::NotApplicable;
    }
    let t = target(ns, &format!("{prefix}-delete"));
    s.apply(&desired(t.clone(), map(&[("A", "1")]), CreationPolicy::Owner))
        .await
        .expect("apply");
    assert!(s.delete(&t).await.expect("delete"));
    assert!(s.read(&t).await.expect("read").is_none());
    assert!(!s.delete(&t).await.expect("delete again"));
    Ran::Passed
}

/// A canary value never shows in the sink's Debug output or errors.
pub async fn sink_values_not_in_debug_or_errors(s: &dyn SecretSink, ns: &str, prefix: &str) -> Ran {
    let t = target(ns, &format!("{prefix}-canary"));
    let d = desired(t.clone(), map(&[("TOKEN", CANARY)]), CreationPolicy::Owner);
    assert_no_canary(&format!("{d:?} {s:?}"), "Debug of the desired target and sink");
    s.apply(&d).await.expect("apply");
    if s.capabilities().readable {
        let cur = s.read(&t).await.expect("read").expect("exists");
        assert_no_canary(&format!("{cur:?}"), "Debug of the target state");
    }
    let merge = desired(
        target(ns, &format!("{prefix}-canary-missing")),
        map(&[("TOKEN", CANARY)]),
        CreationPolicy::Merge,
    );
    if let Err(e) = s.apply(&merge).await {
        assert_no_canary(&format!("{e} {e:?}"), "a sink error");
    }
    Ran::Passed
}

/// `compare` agrees with `read` and [`crate::engine::target_matches`]: missing, matching,
/// then differing (with what `read` gives), and an `apply` right after a differing
/// `compare` writes the new state (sinks may reuse what `compare` read).
pub async fn sink_compare_agrees_with_read(s: &dyn SecretSink, ns: &str, prefix: &str) -> Ran {
    if !s.capabilities().readable {
        return Ran::NotApplicable;
    }
    let caps = s.capabilities();
    let t = target(ns, &format!("{prefix}-compare"));
    let first = desired(t.clone(), map(&[("A", "1")]), CreationPolicy::Owner);
    assert!(matches!(s.compare(&first).await.expect("compare"), Compared::Missing));
    assert_eq!(s.apply(&first).await.expect("apply"), ApplyOutcome::Created);
    assert!(matches!(s.compare(&first).await.expect("compare"), Compared::Matches));
    let cur = s.read(&t).await.expect("read").expect("exists");
    assert!(crate::engine::target_matches(&first, &cur, &caps));

    let second = desired(t.clone(), map(&[("A", "2"), ("B", "3")]), CreationPolicy::Owner);
    match s.compare(&second).await.expect("compare") {
        Compared::Differs(held) => assert_eq!(held.data, cur.data, "compare gives what the target holds"),
        other => panic!("a changed value must differ, got {other:?}"),
    }
    assert_eq!(s.apply(&second).await.expect("apply"), ApplyOutcome::Updated);
    assert_eq!(s.read(&t).await.expect("read").expect("exists").data, second.data);
    assert!(matches!(s.compare(&second).await.expect("compare"), Compared::Matches));
    // A compare not followed by an apply (a dry run) leaves nothing that a later apply of
    // other data would get wrong.
    let third = desired(t.clone(), map(&[("A", "4")]), CreationPolicy::Owner);
    assert!(matches!(
        s.compare(&third).await.expect("compare"),
        Compared::Differs(_)
    ));
    assert_eq!(s.apply(&first).await.expect("apply"), ApplyOutcome::Updated);
    assert_eq!(s.read(&t).await.expect("read").expect("exists").data, first.data);
    Ran::Passed
}

/// Runs every sink behaviour; returns how many applied.
pub async fn run_sink_suite(s: &dyn SecretSink, ns: &str, prefix: &str) -> usize {
    let results = [
        sink_read_missing_is_none(s, ns, prefix).await,
        sink_apply_creates_and_reads_back(s, ns, prefix).await,
        sink_apply_replaces_and_drops_keys(s, ns, prefix).await,
        sink_binary_values(s, ns, prefix).await,
        sink_merge_keeps_foreign_keys(s, ns, prefix).await,
        sink_creation_policy_none_writes_nothing(s, ns, prefix).await,
        sink_delete(s, ns, prefix).await,
        sink_values_not_in_debug_or_errors(s, ns, prefix).await,
        sink_compare_agrees_with_read(s, ns, prefix).await,
    ];
    results.iter().filter(|r| **r == Ran::Passed).count()
}
