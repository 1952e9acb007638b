//! The fake API server's behaviours where it used to differ from a real one (issue 19,
//! items 1–6), each stated as the real server's behaviour with the source it was checked
//! against, and driven through a real `kube::Client` (or raw HTTP where the wire shape is
//! the point).

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use secretsync_fakes::kube::FakeKube;
use serde_json::{Value, json};

fn status_of(e: kube::Error) -> Box<kube::core::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API status, got {other}"),
    }
}

async fn namespace(fake: &FakeKube, name: &str) {
    let api: Api<Namespace> = Api::all(fake.client());
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
    )
    .await
    .expect("create the namespace");
}

fn es_api(fake: &FakeKube, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("external-secrets.io", "v1", "ExternalSecret"),
        "externalsecrets",
    );
    Api::namespaced_with(fake.client(), ns, &ar)
}

/// Sends one raw HTTP/1.1 request and returns (status, headers, body).
async fn raw(fake: &FakeKube, method: &str, path: &str, content_type: &str, body: &str) -> (u16, String, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(fake.addr()).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: fake\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    sock.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![];
    sock.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (
        status,
        head.to_string(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

// ---------------------------------------------------------------------------------------
// 1. Watches under a label selector

/// Real server (k8s.io/apiserver/pkg/storage/cacher/cache_watcher.go, `convertToWatchEvent`):
/// an object that starts matching a watch's selector is sent as ADDED, one that keeps
/// matching as MODIFIED, one that stops matching as DELETED (the object as it last
/// matched); changes to an object that never matched are not sent.
#[tokio::test]
async fn selector_watch_sees_objects_enter_and_leave() {
    let fake = FakeKube::start().await;
    let api: Api<Secret> = Api::namespaced(fake.client(), "default");
    let wp = WatchParams::default().labels("managed-by=secretsync").timeout(10);
    let mut stream = api.watch(&wp, "0").await.unwrap().boxed();
    let s: Secret = serde_json::from_value(json!({"metadata": {"name": "t"}, "stringData": {"k": "v"}})).unwrap();
    api.create(&PostParams::default(), &s).await.unwrap();
    let label = |v: Value| Patch::Merge(json!({"metadata": {"labels": {"managed-by": v}}}));
    let pp = PatchParams::default();
    api.patch("t", &pp, &label(json!("secretsync"))).await.unwrap();
    api.patch(
        "t",
        &pp,
        &Patch::Merge(json!({"metadata": {"annotations": {"a": "1"}}})),
    )
    .await
    .unwrap();
    api.patch("t", &pp, &label(Value::Null)).await.unwrap();
    api.patch(
        "t",
        &pp,
        &Patch::Merge(json!({"metadata": {"annotations": {"a": "2"}}})),
    )
    .await
    .unwrap();
    api.patch("t", &pp, &label(json!("secretsync"))).await.unwrap();
    api.delete("t", &DeleteParams::default()).await.unwrap();
    let mut seen = vec![];
    while seen.len() < 5 {
        let ev = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
            .await
            .expect("the watch sends each transition in time")
            .unwrap()
            .unwrap();
        seen.push(match ev {
            WatchEvent::Added(s) => ("ADDED", s.metadata.labels.unwrap_or_default().len()),
            WatchEvent::Modified(s) => ("MODIFIED", s.metadata.labels.unwrap_or_default().len()),
            WatchEvent::Deleted(s) => ("DELETED", s.metadata.labels.unwrap_or_default().len()),
            other => panic!("unexpected {other:?}"),
        });
    }
    // The DELETED sent when the label went carries the object as it last matched.
    assert_eq!(
        seen,
        vec![
            ("ADDED", 1),
            ("MODIFIED", 1),
            ("DELETED", 1),
            ("ADDED", 1),
            ("DELETED", 1)
        ]
    );
}

// ---------------------------------------------------------------------------------------
// 2. Server-side apply merges associative lists

fn owner(uid: &str, name: &str, controller: bool) -> Value {
    json!({"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "name": name, "uid": uid, "controller": controller})
}

/// Real server: `metadata.ownerReferences` is `+listType=map +listMapKey=uid`
/// (k8s.io/apimachinery/pkg/apis/meta/v1/types.go), so server-side apply merges it by uid:
/// a manager applying its own reference, even with force, keeps other managers' references,
/// and dropping its reference later removes only that one ("Server-Side Apply", merge
/// strategy, kubernetes.io/docs/reference/using-api/server-side-apply/#merge-strategy).
#[tokio::test]
async fn apply_merges_owner_references_by_uid() {
    let fake = FakeKube::start().await;
    let api: Api<Secret> = Api::namespaced(fake.client(), "default");
    let apply = |refs: Value| {
        Patch::Apply(
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "t", "ownerReferences": refs}, "data": {}}),
        )
    };
    api.patch(
        "t",
        &PatchParams::apply("other-controller"),
        &apply(json!([owner("u-other", "theirs", false)])),
    )
    .await
    .unwrap();
    api.patch(
        "t",
        &PatchParams::apply("secretsync").force(),
        &apply(json!([owner("u-ours", "ours", true)])),
    )
    .await
    .unwrap();
    let uids = |s: &Secret| -> Vec<String> {
        s.metadata
            .owner_references
            .iter()
            .flatten()
            .map(|r| r.uid.clone())
            .collect()
    };
    assert_eq!(uids(&api.get("t").await.unwrap()), vec!["u-other", "u-ours"]);
    // Applying without our reference drops only ours.
    api.patch("t", &PatchParams::apply("secretsync").force(), &apply(json!([])))
        .await
        .unwrap();
    assert_eq!(uids(&api.get("t").await.unwrap()), vec!["u-other"]);
    // managedFields name items by key, as the real server renders FieldsV1.
    let raw = fake.object("v1", "secrets", Some("default"), "t").unwrap();
    let other = raw["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["manager"] == "other-controller")
        .unwrap();
    assert!(other["fieldsV1"]["f:metadata"]["f:ownerReferences"]["k:{\"uid\":\"u-other\"}"]["."].is_object());
}

/// Real server: two controllers may not both be the controller of an object
/// (apimachinery validation `ValidateOwnerReferences`: "Only one reference can have
/// Controller set to true").
#[tokio::test]
async fn only_one_owner_reference_may_be_the_controller() {
    let fake = FakeKube::start().await;
    let api: Api<Secret> = Api::namespaced(fake.client(), "default");
    let s: Secret = serde_json::from_value(
        json!({"metadata": {"name": "t", "ownerReferences": [owner("a", "a", true), owner("b", "b", true)]}}),
    )
    .unwrap();
    let e = status_of(api.create(&PostParams::default(), &s).await.unwrap_err());
    assert_eq!(e.code, 422);
    assert!(
        e.message.contains("Only one reference can have Controller set to true"),
        "{}",
        e.message
    );
}

/// Real server: `spec.template.spec.containers` is a map keyed by name, so two managers
/// own different containers without conflict, and a conflict names the one field
/// (`.spec.template.spec.containers[name="app"].image`), not the whole list.
#[tokio::test]
async fn apply_merges_containers_by_name() {
    let fake = FakeKube::start().await;
    let api: Api<Deployment> = Api::namespaced(fake.client(), "default");
    let dep = |containers: Value| {
        Patch::Apply(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}}}}),
        )
    };
    api.patch(
        "web",
        &PatchParams::apply("team"),
        &dep(json!([{"name": "app", "image": "app:1"}])),
    )
    .await
    .unwrap();
    api.patch(
        "web",
        &PatchParams::apply("mesh"),
        &dep(json!([{"name": "proxy", "image": "proxy:1"}])),
    )
    .await
    .unwrap();
    let names = |d: &Deployment| -> Vec<String> {
        d.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers
            .iter()
            .map(|c| c.name.clone())
            .collect()
    };
    assert_eq!(names(&api.get("web").await.unwrap()), vec!["app", "proxy"]);
    let e = status_of(
        api.patch(
            "web",
            &PatchParams::apply("mesh"),
            &dep(json!([{"name": "proxy", "image": "proxy:1"}, {"name": "app", "image": "app:2"}])),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 409);
    assert!(
        e.message
            .contains(r#"conflict with "team": .spec.template.spec.containers[name="app"].image"#),
        "{}",
        e.message
    );
}

// ---------------------------------------------------------------------------------------
// 3. Strategic merge patch

/// Real server (k8s.io/apimachinery/pkg/util/strategicpatch; "Update API Objects in Place
/// Using kubectl patch", kubernetes.io/docs/tasks/manage-kubernetes-objects/update-api-object-kubectl-patch/):
/// a strategic merge patch merges `containers` by name and `env` by name instead of
/// replacing the list; `$patch: delete` removes one item. Custom resources refuse it (415).
#[tokio::test]
async fn strategic_merge_patch_merges_lists_by_key() {
    let fake = FakeKube::start().await;
    let api: Api<Deployment> = Api::namespaced(fake.client(), "default");
    let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
        {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]},
        {"name": "sidecar", "image": "side:1"}
    ]}}}}))
    .unwrap();
    api.create(&PostParams::default(), &d).await.unwrap();
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "env": [{"name": "B", "value": "2"}]},
        {"name": "sidecar", "$patch": "delete"}
    ]}}}});
    let got = api
        .patch("web", &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .unwrap();
    let containers = &got.spec.unwrap().template.spec.unwrap().containers;
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0].image.as_deref(), Some("app:1"));
    let env: Vec<String> = containers[0].env.iter().flatten().map(|e| e.name.clone()).collect();
    assert_eq!(env, vec!["A", "B"]);
    // A JSON merge patch replaces the list, as RFC 7386 says.
    let got = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "only", "image": "o:1"}]}}}})),
        )
        .await
        .unwrap();
    assert_eq!(got.spec.unwrap().template.spec.unwrap().containers[0].name, "only");
    // Custom resources have no patch strategies: 415.
    let es = es_api(&fake, "default");
    es.create(&PostParams::default(), &serde_json::from_value(json!({"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": {"name": "e"}, "spec": {}})).unwrap())
        .await
        .unwrap();
    let e = status_of(
        es.patch(
            "e",
            &PatchParams::default(),
            &Patch::Strategic(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 415);
}

/// Real server: JSON patch (RFC 6902) is accepted for every kind (`application/json-patch+json`).
#[tokio::test]
async fn json_patch_is_applied() {
    let fake = FakeKube::start().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "default");
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "c"}, "data": {"a": "1"}})).unwrap(),
    )
    .await
    .unwrap();
    let ops = r#"[{"op":"test","path":"/data/a","value":"1"},{"op":"add","path":"/data/b","value":"2"},{"op":"remove","path":"/data/a"}]"#;
    let (status, _, got) = raw(
        &fake,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/c",
        "application/json-patch+json",
        ops,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(got["data"], json!({"b": "2"}));
    let failing = r#"[{"op":"test","path":"/data/b","value":"nope"}]"#;
    let (status, _, _) = raw(
        &fake,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/c",
        "application/json-patch+json",
        failing,
    )
    .await;
    assert_eq!(status, 422);
}

// ---------------------------------------------------------------------------------------
// 4. Namespaces

/// Real server: a new cluster has `default`, `kube-system`, `kube-public` and
/// `kube-node-lease`; creating in a namespace that does not exist is 404 `namespaces "x"
/// not found` (NamespaceLifecycle admission, k8s.io/apiserver/pkg/admission/plugin/namespace/lifecycle).
#[tokio::test]
async fn objects_need_an_existing_namespace() {
    let fake = FakeKube::start().await;
    let names: Vec<String> = Api::<Namespace>::all(fake.client())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|n| n.metadata.name.unwrap())
        .collect();
    assert_eq!(names, vec!["default", "kube-node-lease", "kube-public", "kube-system"]);
    let api: Api<Secret> = Api::namespaced(fake.client(), "missing");
    let s: Secret = serde_json::from_value(json!({"metadata": {"name": "s"}})).unwrap();
    let e = status_of(api.create(&PostParams::default(), &s).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (404, "NotFound"));
    assert_eq!(e.message, "namespaces \"missing\" not found");
    // Server-side apply creates too, so it is refused the same way.
    let e = status_of(
        api.patch(
            "s",
            &PatchParams::apply("t"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.message, "namespaces \"missing\" not found");
}

/// Real server: deleting a namespace marks it `Terminating` (deletionTimestamp, status.phase)
/// and answers 200 with it; creating in it is then 403 Forbidden; the namespace controller
/// deletes everything in it, then the namespace ("Namespaces" docs,
/// kubernetes.io/docs/concepts/overview/working-with-objects/namespaces/, and
/// pkg/registry/core/namespace/storage). `default` cannot be deleted.
#[tokio::test]
async fn deleting_a_namespace_terminates_it_and_its_objects() {
    let fake = FakeKube::start().await;
    namespace(&fake, "team").await;
    let secrets: Api<Secret> = Api::namespaced(fake.client(), "team");
    let s: Secret = serde_json::from_value(json!({"metadata": {"name": "s"}})).unwrap();
    secrets.create(&PostParams::default(), &s).await.unwrap();
    let ns: Api<Namespace> = Api::all(fake.client());
    let mut watch = secrets.watch(&WatchParams::default(), "0").await.unwrap().boxed();
    let deleted = ns.delete("team", &DeleteParams::default()).await.unwrap();
    let terminating = deleted.left().expect("a namespace is not gone at once");
    assert_eq!(terminating.status.unwrap().phase.as_deref(), Some("Terminating"));
    assert!(terminating.metadata.deletion_timestamp.is_some());
    let e = status_of(
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "late"}})).unwrap(),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
    assert!(e.message.contains("because it is being terminated"), "{}", e.message);
    // Its objects are deleted (watchers see it), then the namespace.
    let mut saw_delete = false;
    while !saw_delete {
        match tokio::time::timeout(Duration::from_secs(5), watch.try_next())
            .await
            .unwrap()
            .unwrap()
        {
            Some(WatchEvent::Deleted(s)) => saw_delete = s.metadata.name.as_deref() == Some("s"),
            Some(_) => {}
            None => panic!("the watch ended"),
        }
    }
    for _ in 0..50 {
        if ns.get_opt("team").await.unwrap().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        ns.get_opt("team").await.unwrap().is_none(),
        "the emptied namespace goes"
    );
    let e = status_of(ns.delete("default", &DeleteParams::default()).await.unwrap_err());
    assert_eq!(e.code, 403);
}

// ---------------------------------------------------------------------------------------
// 5. Validation

/// Real server (pkg/apis/core/validation `ValidateSecret`): typed Secrets must carry
/// their keys — `kubernetes.io/tls` both `tls.crt` and `tls.key`,
/// `kubernetes.io/dockerconfigjson` a `.dockerconfigjson` holding JSON — or the write is
/// 422 Invalid naming the key (and never the value).
#[tokio::test]
async fn typed_secrets_need_their_keys() {
    let fake = FakeKube::start().await;
    let api: Api<Secret> = Api::namespaced(fake.client(), "default");
    let tls: Secret = serde_json::from_value(
        json!({"metadata": {"name": "tls"}, "type": "kubernetes.io/tls", "stringData": {"tls.key": "k"}}),
    )
    .unwrap();
    let e = status_of(api.create(&PostParams::default(), &tls).await.unwrap_err());
    assert_eq!(e.code, 422);
    assert_eq!(e.message, "Secret \"tls\" is invalid: data[tls.crt]: Required value");
    let docker: Secret = serde_json::from_value(json!({"metadata": {"name": "pull"}, "type": "kubernetes.io/dockerconfigjson", "stringData": {".dockerconfigjson": "not-json-sekrit"}})).unwrap();
    let e = status_of(api.create(&PostParams::default(), &docker).await.unwrap_err());
    assert_eq!(e.code, 422);
    assert!(e.message.contains("data[.dockerconfigjson]"), "{}", e.message);
    assert!(!e.message.contains("sekrit"), "{}", e.message);
    let missing: Secret = serde_json::from_value(
        json!({"metadata": {"name": "pull"}, "type": "kubernetes.io/dockerconfigjson", "data": {}}),
    )
    .unwrap();
    let e = status_of(api.create(&PostParams::default(), &missing).await.unwrap_err());
    assert_eq!(
        e.message,
        "Secret \"pull\" is invalid: data[.dockerconfigjson]: Required value"
    );
    let ok: Secret = serde_json::from_value(json!({"metadata": {"name": "pull"}, "type": "kubernetes.io/dockerconfigjson", "stringData": {".dockerconfigjson": "{\"auths\":{}}"}})).unwrap();
    api.create(&PostParams::default(), &ok).await.unwrap();
}

/// Real server ("Field validation", kubernetes.io/docs/reference/using-api/api-concepts/#field-validation):
/// unknown fields are dropped with a `Warning` header by default, and refused with
/// 400 `strict decoding error: unknown field "..."` under `fieldValidation=Strict`.
#[tokio::test]
async fn unknown_fields_are_dropped_or_refused() {
    let fake = FakeKube::start().await;
    let body = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"a":"1"},"datta":{"b":"2"}}"#;
    let (status, _, e) = raw(
        &fake,
        "POST",
        "/api/v1/namespaces/default/configmaps?fieldValidation=Strict",
        "application/json",
        body,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(e["message"], "strict decoding error: unknown field \"datta\"");
    let (status, head, created) = raw(
        &fake,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        body,
    )
    .await;
    assert_eq!(status, 201);
    assert!(
        head.to_lowercase()
            .contains("warning: 299 - \"unknown field \\\"datta\\\"\""),
        "{head}"
    );
    assert!(created.get("datta").is_none());
    assert!(
        fake.object("v1", "configmaps", Some("default"), "c")
            .unwrap()
            .get("datta")
            .is_none()
    );
}

/// Real server (apiextensions-apiserver): a custom resource is validated against its CRD's
/// structural schema (here `spec` must be an object, deploy/crds.yaml), and a PUT must
/// carry `metadata.resourceVersion` — "must be specified for an update" — while built-in
/// kinds allow an unconditional update.
#[tokio::test]
async fn custom_resources_follow_their_schema_and_need_a_resource_version() {
    let fake = FakeKube::start().await;
    let es = es_api(&fake, "default");
    let bad: DynamicObject = serde_json::from_value(json!({"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": {"name": "e"}, "spec": "oops"})).unwrap();
    let e = status_of(es.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!(e.code, 422);
    assert!(
        e.message
            .starts_with("ExternalSecret.external-secrets.io \"e\" is invalid: spec"),
        "{}",
        e.message
    );
    let good: DynamicObject = serde_json::from_value(json!({"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": {"name": "e"}, "spec": {"refreshInterval": "1h"}})).unwrap();
    es.create(&PostParams::default(), &good).await.unwrap();
    let e = status_of(es.replace("e", &PostParams::default(), &good).await.unwrap_err());
    assert_eq!(e.code, 422);
    assert!(
        e.message
            .contains("metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"),
        "{}",
        e.message
    );
    let cms: Api<ConfigMap> = Api::namespaced(fake.client(), "default");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "c"}, "data": {"a": "1"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    cms.replace("c", &PostParams::default(), &cm)
        .await
        .expect("built-in kinds allow unconditional updates");
}

// ---------------------------------------------------------------------------------------
// 6. Pagination and field selectors

/// Real server ("Retrieving large results sets in chunks",
/// kubernetes.io/docs/reference/using-api/api-concepts/#retrieving-large-results-sets-in-chunks):
/// `limit` caps a page and sets `continue`; every page comes from the first page's
/// resourceVersion, so writes made between pages do not show; `remainingItemCount` counts
/// what is left when no selector is used.
#[tokio::test]
async fn lists_are_paginated_consistently() {
    let fake = FakeKube::start().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "default");
    for i in 0..5 {
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": format!("c{i}")}})).unwrap();
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
    let first = api.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(first.items.len(), 2);
    assert_eq!(first.metadata.remaining_item_count, Some(3));
    let rv = first.metadata.resource_version.clone();
    let token = first.metadata.continue_.clone().expect("a continue token");
    // Changes after the first page: a new object and a deleted one.
    let late: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "c9"}})).unwrap();
    api.create(&PostParams::default(), &late).await.unwrap();
    api.delete("c4", &DeleteParams::default()).await.unwrap();
    let mut names: Vec<String> = first.items.iter().map(|c| c.metadata.name.clone().unwrap()).collect();
    let mut next = Some(token);
    while let Some(t) = next {
        let page = api
            .list(&ListParams::default().limit(2).continue_token(&t))
            .await
            .unwrap();
        assert_eq!(
            page.metadata.resource_version, rv,
            "every page comes from the same resourceVersion"
        );
        names.extend(page.items.iter().map(|c| c.metadata.name.clone().unwrap()));
        next = page.metadata.continue_.filter(|c| !c.is_empty());
    }
    assert_eq!(names, vec!["c0", "c1", "c2", "c3", "c4"]);
    // A token that is not one is 400.
    let e = status_of(
        api.list(&ListParams::default().continue_token("bm9wZQ"))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 400);
}

/// Real server: field selectors support `metadata.name` and `metadata.namespace` for every
/// kind plus each kind's own few (Secrets: `type`); anything else is 400 — "field label not
/// supported" for built-in kinds (pkg/registry/core/secret/strategy.go `SelectableFields`),
/// "is not a known field selector" for custom resources.
#[tokio::test]
async fn field_selectors_accept_only_known_labels() {
    let fake = FakeKube::start().await;
    let api: Api<Secret> = Api::namespaced(fake.client(), "default");
    for (name, ty) in [("a", "Opaque"), ("b", "kubernetes.io/basic-auth")] {
        let s: Secret =
            serde_json::from_value(json!({"metadata": {"name": name}, "type": ty, "stringData": {"username": "u"}}))
                .unwrap();
        api.create(&PostParams::default(), &s).await.unwrap();
    }
    let got = api
        .list(&ListParams::default().fields("type=kubernetes.io/basic-auth"))
        .await
        .unwrap();
    assert_eq!(got.items.len(), 1);
    let got = api
        .list(&ListParams::default().fields("metadata.name!=a"))
        .await
        .unwrap();
    assert_eq!(got.items[0].metadata.name.as_deref(), Some("b"));
    let e = status_of(
        api.list(&ListParams::default().fields("data.username=dQ=="))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.code, e.message.as_str()),
        (400, "field label not supported: data.username")
    );
    let es = es_api(&fake, "default");
    let e = status_of(
        es.list(&ListParams::default().fields("spec.refreshInterval=1h"))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 400);
    assert!(e.message.contains("is not a known field selector"), "{}", e.message);
    assert!(
        es.list(&ListParams::default().fields("metadata.name=x"))
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

/// `--request-log`: one JSON line per request with method, path, query, status and user agent.
#[tokio::test]
async fn request_log_file_has_a_line_per_request() {
    let fake = FakeKube::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("requests.jsonl");
    fake.log_requests_to(&path).unwrap();
    let api: Api<Secret> = Api::namespaced(fake.client(), "default");
    api.list(&ListParams::default().labels("a=b")).await.unwrap();
    let _ = api.get("missing").await;
    let lines: Vec<Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["method"], "GET");
    assert_eq!(lines[0]["path"], "/api/v1/namespaces/default/secrets");
    assert_eq!(lines[0]["query"], "&labelSelector=a%3Db");
    assert_eq!(lines[0]["status"], 200);
    // kube-rs sends no User-Agent: the field is there, null (kubectl's is checked in
    // tests/kubectl.rs).
    assert!(lines[0].get("userAgent").is_some(), "{}", lines[0]);
    assert_eq!(lines[1]["status"], 404);
}
