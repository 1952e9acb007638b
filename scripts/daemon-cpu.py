#!/usr/bin/env python3
"""CPU time of an idle `secretsync sync` daemon against three `--once` unchanged cycles.

2,000 ExternalSecrets at a 10s refresh over the file provider, targets in a folder, nothing
changing. Runs the daemon for 60 s (JSON reports, one line per cycle) and reads its CPU time
from /proc/<pid>/stat just before stopping it; then times three `--once` runs of the same
manifests (after a first run that created the targets) with getrusage of the children.

    cargo build --bin secretsync
    python3 scripts/daemon-cpu.py [--bin target/debug/secretsync] [--specs 2000] [--seconds 60]

Prints the daemon's CPU seconds, the three runs' CPU seconds, the ratio, the number of
cycles and the largest number of cycles that started within one batching window.
"""
import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time


def manifests(d, n, interval):
    with open(os.path.join(d, "secrets.yaml"), "w") as f:
        for i in range(n):
            f.write(f"key-{i}: value-{i}\n")
    with open(os.path.join(d, "m.yaml"), "w") as f:
        f.write("apiVersion: external-secrets.io/v1\nkind: SecretStore\n"
                "metadata: {name: local, namespace: dev}\n"
                "spec: {provider: {file: {path: secrets.yaml}}}\n")
        for i in range(n):
            f.write(f"---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\n"
                    f"metadata: {{name: es-{i}, namespace: dev}}\nspec:\n"
                    f"  refreshInterval: {interval}\n  secretStoreRef: {{name: local}}\n"
                    f"  data:\n    - {{secretKey: VALUE, remoteRef: {{key: key-{i}}}}}\n")
    return os.path.join(d, "m.yaml")


def cpu_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 (1-based) of the whole line.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/debug/secretsync")
    ap.add_argument("--specs", type=int, default=2000)
    ap.add_argument("--interval", default="10s")
    ap.add_argument("--seconds", type=float, default=60)
    a = ap.parse_args()
    if not os.path.exists(a.bin):
        sys.exit(f"{a.bin} not found: run `cargo build --bin secretsync` first")
    with tempfile.TemporaryDirectory() as d:
        m = manifests(d, a.specs, a.interval)
        out = os.path.join(d, "out")
        env = dict(os.environ, SECRETSYNC_STATE_DIR=os.path.join(d, "state"))
        env.pop("SECRETSYNC_FINGERPRINT_KEY", None)
        once = [a.bin, "sync", "--once", "--format", "json", "-m", m, "--output", out]
        subprocess.run(once, env=env, check=True, stdout=subprocess.DEVNULL)  # creates the targets
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        for _ in range(3):
            r = subprocess.run(once, env=env, check=True, stdout=subprocess.PIPE)
            assert json.loads(r.stdout)["writes"] == 0, "an unchanged run wrote"
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        once_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

        log = open(os.path.join(d, "daemon.jsonl"), "w")
        p = subprocess.Popen([a.bin, "sync", "--format", "json", "-m", m, "--output", out],
                             env=env, stdout=log, stderr=subprocess.DEVNULL)
        time.sleep(a.seconds)
        daemon_cpu = cpu_of(p.pid)
        p.send_signal(signal.SIGTERM)
        p.wait()
        log.close()
        reports = [json.loads(l) for l in open(os.path.join(d, "daemon.jsonl")) if l.strip()]
    secs = float(a.interval.rstrip("s"))
    window = min(2.0, 0.05 * secs)

    def start(r):
        t = r["time"]
        return int(t[11:13]) * 3600 + int(t[14:16]) * 60 + float(t[17:23]) - r["duration_ms"] / 1000

    starts = sorted(start(r) for r in reports)
    # 10 ms: start times are estimated from millisecond report times less the duration.
    most = max((sum(1 for t in starts if s <= t < s + window - 0.01) for s in starts), default=0)
    writes = sum(r["writes"] for r in reports[1:])
    print(f"specs={a.specs} interval={a.interval} daemon_seconds={a.seconds:.0f}")
    print(f"daemon_cpu_s={daemon_cpu:.2f} three_once_cpu_s={once_cpu:.2f} ratio={daemon_cpu / once_cpu:.2f}")
    print(f"cycles={len(reports)} specs_per_cycle={[len(r['specs']) for r in reports]}")
    print(f"window_s={window} most_cycles_in_one_window={most} writes_after_first={writes}")


if __name__ == "__main__":
    main()
