#!/usr/bin/env bash
# Runs every test of the workspace, with the real peers the tests need installed into
# .venv (moto's server for AWS, the Doppler CLI, the drongo Secret Manager emulator).
# Tests start those servers themselves on free loopback ports; a test that cannot reach
# its peer fails, it never skips. This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-test-env.sh
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# Some tests drive the example binaries (run, sync) as a user would: build them first.
cargo build --workspace --all-features --examples
cargo test --workspace --all-features --all-targets "$@"
cargo test --workspace --all-features --doc
