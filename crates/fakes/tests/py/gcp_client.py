"""Drives fake-gcp with Google's `google-cloud-secret-manager` client (REST transport,
anonymous credentials) and prints what it saw, as one JSON object. The Rust test asserts
on it; an exception is a failure (non-zero exit, traceback on stderr).

Usage: gcp_client.py ENDPOINT PROJECT
"""
import json
import sys

from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import secretmanager

endpoint, project = sys.argv[1], sys.argv[2]
client = secretmanager.SecretManagerServiceClient(
    credentials=AnonymousCredentials(),
    transport="rest",
    client_options=ClientOptions(api_endpoint=endpoint),
)
parent = f"projects/{project}"
out = {}


def failure(call):
    """Runs `call`; returns "ok" or the HTTP code and the error's `status` (the gRPC code
    name the service puts in its JSON error), e.g. "400 FAILED_PRECONDITION"."""
    try:
        call()
        return "ok"
    except exceptions.GoogleAPICallError as e:
        status = ""
        if e.response is not None:
            try:
                status = e.response.json()["error"]["status"]
            except Exception:  # noqa: BLE001 - a body without the envelope says so below
                status = "<no status>"
        return f"{e.code} {status}"


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), written out so the check does not depend on google-crc32c."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


secret = client.create_secret(
    request={
        "parent": parent,
        "secret_id": "db-password",
        "secret": {"replication": {"automatic": {}}, "labels": {"env": "prod", "team": "a"}},
    }
)
out["created"] = {"name": secret.name, "labels": dict(secret.labels)}
out["duplicate"] = failure(
    lambda: client.create_secret(request={"parent": parent, "secret_id": "db-password", "secret": {"replication": {"automatic": {}}}})
)

v1 = client.add_secret_version(
    request={"parent": secret.name, "payload": {"data": b"one", "data_crc32c": crc32c(b"one")}}
)
v2 = client.add_secret_version(request={"parent": secret.name, "payload": {"data": b"two"}})
out["bad_crc"] = failure(
    lambda: client.add_secret_version(request={"parent": secret.name, "payload": {"data": b"three", "data_crc32c": 1}})
)
out["versions_added"] = [v1.name, v2.name]

latest = client.access_secret_version(request={"name": f"{secret.name}/versions/latest"})
first = client.access_secret_version(request={"name": f"{secret.name}/versions/1"})
out["latest"] = {"name": latest.name, "data": latest.payload.data.decode(), "crc_ok": latest.payload.data_crc32c == crc32c(latest.payload.data)}
out["first"] = {"name": first.name, "data": first.payload.data.decode(), "crc_ok": first.payload.data_crc32c == crc32c(first.payload.data)}

for i in range(5):
    client.create_secret(
        request={
            "parent": parent,
            "secret_id": f"svc-{i}",
            "secret": {"replication": {"automatic": {}}, "labels": {"env": "prod" if i % 2 == 0 else "dev"}},
        }
    )
pager = client.list_secrets(request={"parent": parent, "filter": "labels.env=prod", "page_size": 2})
pages = [[s.name.rsplit("/", 1)[1] for s in page.secrets] for page in pager.pages]
out["list_pages"] = pages

client.disable_secret_version(request={"name": v2.name})
out["access_disabled"] = failure(lambda: client.access_secret_version(request={"name": f"{secret.name}/versions/latest"}))
enabled = client.enable_secret_version(request={"name": v2.name})
out["enabled_state"] = secretmanager.SecretVersion.State(enabled.state).name
destroyed = client.destroy_secret_version(request={"name": v1.name})
out["destroyed_state"] = secretmanager.SecretVersion.State(destroyed.state).name
out["access_destroyed"] = failure(lambda: client.access_secret_version(request={"name": f"{secret.name}/versions/1"}))
states = client.list_secret_versions(request={"parent": secret.name})
out["version_states"] = {v.name.rsplit("/", 1)[1]: secretmanager.SecretVersion.State(v.state).name for v in states}

updated = client.update_secret(
    request={"secret": {"name": secret.name, "labels": {"env": "staging"}}, "update_mask": {"paths": ["labels"]}}
)
out["updated_labels"] = dict(updated.labels)
out["get_labels"] = dict(client.get_secret(request={"name": secret.name}).labels)
out["missing"] = failure(lambda: client.get_secret(request={"name": f"{parent}/secrets/missing"}))
client.delete_secret(request={"name": f"{parent}/secrets/svc-0"})
out["after_delete"] = sorted(s.name.rsplit("/", 1)[1] for s in client.list_secrets(request={"parent": parent}))

print(json.dumps(out))
