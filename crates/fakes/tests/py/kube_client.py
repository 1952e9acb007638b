"""Drives fake-kube with the official Python `kubernetes` client and prints what it saw.

Usage: kube_client.py SERVER_URL NAMESPACE
Prints one JSON object: the watch events a label-selector watch received, the status of
a stale replace, and the pages of a paginated list. The Rust test asserts on it, so this
script only observes; an exception is a failure (non-zero exit, traceback on stderr).
"""
import json
import sys
import threading
import time

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

url, ns = sys.argv[1], sys.argv[2]
conf = client.Configuration()
conf.host = url
api = client.CoreV1Api(client.ApiClient(conf))
out = {}

# Namespaces must exist before anything is created in them.
api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))

# 1. A watch under a label selector: ADDED when an object starts matching, MODIFIED
#    while it matches, DELETED when it stops matching or is deleted.
events = []
ready = threading.Event()


def watcher():
    w = watch.Watch()
    ready.set()
    for ev in w.stream(api.list_namespaced_secret, ns, label_selector="app=web", timeout_seconds=8):
        md = ev["object"].metadata
        events.append({"type": ev["type"], "name": md.name, "labels": md.labels or {}})
        if md.name == "w" and ev["type"] == "DELETED" and (md.labels or {}).get("final") == "yes":
            w.stop()


t = threading.Thread(target=watcher)
t.start()
ready.wait()
time.sleep(0.5)
api.create_namespaced_secret(ns, client.V1Secret(metadata=client.V1ObjectMeta(name="w"), string_data={"k": "v"}))
api.patch_namespaced_secret("w", ns, {"metadata": {"labels": {"app": "web"}}})
api.patch_namespaced_secret("w", ns, {"metadata": {"labels": {"tier": "1"}}})
api.patch_namespaced_secret("w", ns, {"metadata": {"labels": {"app": None}}})
api.patch_namespaced_secret("w", ns, {"metadata": {"labels": {"app": "web", "final": "yes"}}})
api.delete_namespaced_secret("w", ns)
t.join(15)
out["watch"] = events

# 2. Replace with a stale resourceVersion: 409 Conflict.
cm = api.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm"), data={"a": "1"}))
stale = cm.metadata.resource_version
cm.data = {"a": "2"}
api.replace_namespaced_config_map("cm", ns, cm)
cm.metadata.resource_version = stale
cm.data = {"a": "3"}
try:
    api.replace_namespaced_config_map("cm", ns, cm)
    out["stale_replace"] = {"status": 200}
except ApiException as e:
    body = json.loads(e.body)
    out["stale_replace"] = {"status": e.status, "reason": body.get("reason")}
out["after_replace"] = api.read_namespaced_config_map("cm", ns).data

# 3. Pagination: limit and continue, across writes made between pages.
for i in range(5):
    api.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"page-{i}", labels={"page": "yes"})))
pages = []
token = None
while True:
    kwargs = {"limit": 2, "label_selector": "page=yes"}
    if token:
        kwargs["_continue"] = token
    resp = api.list_namespaced_config_map(ns, **kwargs)
    pages.append({
        "names": [i.metadata.name for i in resp.items],
        "resourceVersion": resp.metadata.resource_version,
        "remaining": resp.metadata.remaining_item_count,
    })
    if len(pages) == 1:
        # Written after the first page: a consistent list does not show it.
        api.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="page-9", labels={"page": "yes"})))
    token = resp.metadata._continue
    if not token:
        break
out["pages"] = pages
unpaged = api.list_namespaced_config_map(ns, limit=3)
out["unfiltered_remaining"] = unpaged.metadata.remaining_item_count

print(json.dumps(out))
