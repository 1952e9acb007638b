//! The testkit's source and writer conformance suites, run against the real provider on the
//! fake ESC API: every call goes to `EscSource` and over HTTP to the fake.

mod common;

use common::*;
use secretsync_core::testkit::conformance::{self, Ran};
use secretsync_fakes::pulumi::FakeEsc;
use secretsync_pulumi::EscSource;

async fn esc() -> (FakeEsc, EscSource, String) {
    let (fake, project, token) = fake_env("conformance", "values: {}\n").await;
    // Every call checks: the suites write and read back at once.
    let source = builder(&fake, &token, &project, "conformance")
        .with_freshness(std::time::Duration::ZERO)
        .build()
        .unwrap();
    (fake, source, format!("c{:06x}", rand::random::<u32>() & 0xff_ffff))
}

#[tokio::test]
async fn every_applicable_suite_function_passes() {
    let (fake, w, prefix) = esc().await;
    let p = |s: &str| format!("{prefix}-{s}");
    assert_eq!(
        conformance::source_get_returns_current_value(&w, &p("1")).await,
        Ran::Passed
    );
    assert_eq!(
        conformance::source_get_missing_is_not_found(&w, &p("2")).await,
        Ran::Passed
    );
    assert_eq!(
        conformance::source_get_many_in_order_with_isolated_errors(&w, &p("3")).await,
        Ran::Passed
    );
    assert_eq!(conformance::source_get_many_large(&w, &p("4"), 45).await, Ran::Passed);
    assert_eq!(
        conformance::source_change_tokens_track_writes(&w, &p("5")).await,
        Ran::Passed
    );
    assert_eq!(conformance::source_find_by_name(&w, &p("6")).await, Ran::Passed);
    assert_eq!(conformance::source_find_by_path(&w, &p("7")).await, Ran::Passed);
    assert_eq!(
        conformance::writer_put_creates_then_updates(&w, &p("9")).await,
        Ran::Passed
    );
    assert_eq!(
        conformance::writer_property_merges_json(&w, &p("10")).await,
        Ran::Passed
    );
    assert_eq!(
        conformance::source_values_not_in_debug_or_errors(&w, &p("12")).await,
        Ran::Passed
    );
    // ESC revisions are not per key, and no revision is disabled: these say so rather than
    // pass vacuously.
    assert_eq!(
        conformance::source_previous_version_readable(&w, &p("8")).await,
        Ran::NotApplicable
    );
    assert_eq!(
        conformance::writer_disable_previous(&w, &p("11")).await,
        Ran::NotApplicable
    );
    assert!(
        fake.count("UpdateEnvironmentYaml") > 45,
        "the suites wrote through the fake"
    );
}

#[tokio::test]
async fn whole_suite_runs_ten_of_twelve() {
    let (_fake, w, prefix) = esc().await;
    assert_eq!(conformance::run_source_suite(&w, &prefix).await, 10);
}
