#!/usr/bin/env python3
"""A stand-in for a team's in-house secret service, for examples/custom-provider.rs.

    python3 kv_server.py PORT [SEED.json]

Its API (JSON over HTTP, bearer-less: it listens on loopback only):
  GET  /v1/secrets?prefix=P   -> {"keys": [...]}            names under P, sorted
  GET  /v1/secrets/NAME       -> {"value", "version", "labels"} or 404
  PUT  /v1/secrets/NAME       <- {"value", "labels"?}  -> {"version", "created"}
Each PUT adds a version (1, 2, ...); labels are kept from the first write.
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

store = {}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        with lock:
            if url.path == "/v1/secrets":
                prefix = parse_qs(url.query).get("prefix", [""])[0]
                return self.reply(200, {"keys": sorted(k for k in store if k.startswith(prefix))})
            name = unquote(url.path.removeprefix("/v1/secrets/"))
            if name not in store:
                return self.reply(404, {"error": "no such secret"})
            s = store[name]
            return self.reply(200, {"value": s["versions"][-1], "version": len(s["versions"]), "labels": s["labels"]})

    def do_PUT(self):
        name = unquote(urlparse(self.path).path.removeprefix("/v1/secrets/"))
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with lock:
            created = name not in store
            s = store.setdefault(name, {"versions": [], "labels": body.get("labels", {})})
            s["versions"].append(body["value"])
            return self.reply(200, {"version": len(s["versions"]), "created": created})

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    if len(sys.argv) > 2:
        for k, v in json.load(open(sys.argv[2])).items():
            store[k] = {"versions": [v], "labels": {}}
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    print(f"kv_server listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()
