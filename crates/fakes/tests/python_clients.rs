//! The fakes held to Google's and Kubernetes' official Python clients (installed into
//! `.venv` by scripts/setup-test-env.sh): each script drives a fake served in-process and
//! prints what it observed; the assertions are here. A missing client fails.

mod common;

use secretsync_fakes::gcp::FakeSecretManager;
use secretsync_fakes::kube::FakeKube;
use serde_json::{Value, json};

async fn run_script(name: &str, args: &[&str]) -> Value {
    let python = common::venv_python();
    let out = common::run_ok(
        tokio::process::Command::new(python)
            .arg(common::script(name))
            .args(args),
        name,
    )
    .await;
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{name} printed no JSON ({e}):\n{out}"))
}

/// The official `kubernetes` client: a label-selector watch sees ADDED / MODIFIED /
/// DELETED as the object enters, changes within and leaves the selection; a replace with
/// a stale resourceVersion is 409 Conflict and changes nothing; `limit`/`continue` pages
/// come from one resourceVersion and leave out what was written between pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_python_client() {
    let fake = FakeKube::start().await;
    let got = run_script("kube_client.py", &[&fake.url(), "py-client"]).await;
    let watch: Vec<(String, bool)> = got["watch"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["type"].as_str().unwrap().to_string(), e["labels"]["app"] == "web"))
        .collect();
    let types: Vec<&str> = watch.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(types, ["ADDED", "MODIFIED", "DELETED", "ADDED", "DELETED"], "{got}");
    // The DELETED for leaving the selection carries the object as it last matched.
    assert!(watch.iter().all(|(_, matched)| *matched), "{got}");
    assert_eq!(got["stale_replace"], json!({"status": 409, "reason": "Conflict"}));
    assert_eq!(got["after_replace"], json!({"a": "2"}));
    let pages = got["pages"].as_array().unwrap();
    let names: Vec<&str> = pages
        .iter()
        .flat_map(|p| p["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()))
        .collect();
    assert_eq!(
        names,
        ["page-0", "page-1", "page-2", "page-3", "page-4"],
        "page-9 came after the first page"
    );
    assert!(
        pages
            .iter()
            .all(|p| p["resourceVersion"] == pages[0]["resourceVersion"])
    );
    assert_eq!(pages.len(), 3);
    // remainingItemCount only without a selector: 7 ConfigMaps, 3 in the first page.
    assert_eq!(got["unfiltered_remaining"], 4);
}

/// Google's `google-cloud-secret-manager` (REST transport, anonymous credentials): create
/// with labels, add versions (a wrong `data_crc32c` is refused), access latest and by
/// number with a CRC32C that matches the data, list with a label filter in pages,
/// disable / enable / destroy and what access says then, update labels, errors in Google's
/// codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_manager_python_client() {
    let fake = FakeSecretManager::start().await;
    let got = run_script("gcp_client.py", &[&fake.url(), "cross-check"]).await;
    assert_eq!(got["created"]["labels"], json!({"env": "prod", "team": "a"}));
    assert_eq!(got["duplicate"], "409 ALREADY_EXISTS");
    assert_eq!(got["bad_crc"], "400 INVALID_ARGUMENT");
    assert_eq!(
        got["latest"],
        json!({"name": "projects/cross-check/secrets/db-password/versions/2", "data": "two", "crc_ok": true})
    );
    assert_eq!(got["first"]["data"], "one");
    assert_eq!(got["first"]["crc_ok"], true);
    assert_eq!(got["list_pages"], json!([["db-password", "svc-0"], ["svc-2", "svc-4"]]));
    assert_eq!(got["access_disabled"], "400 FAILED_PRECONDITION");
    assert_eq!(got["enabled_state"], "ENABLED");
    assert_eq!(got["destroyed_state"], "DESTROYED");
    assert_eq!(got["access_destroyed"], "400 FAILED_PRECONDITION");
    assert_eq!(got["version_states"], json!({"1": "DESTROYED", "2": "ENABLED"}));
    assert_eq!(got["updated_labels"], json!({"env": "staging"}));
    assert_eq!(got["get_labels"], json!({"env": "staging"}));
    assert_eq!(got["missing"], "404 NOT_FOUND");
    assert_eq!(
        got["after_delete"],
        json!(["db-password", "svc-1", "svc-2", "svc-3", "svc-4"])
    );
    assert!(fake.unknown_routes().is_empty(), "{:?}", fake.unknown_routes());
}
