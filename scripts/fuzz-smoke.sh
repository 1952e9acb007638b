#!/usr/bin/env bash
# Fuzz smoke: builds the cargo-fuzz targets under fuzz/ and runs each for a bounded time
# (FUZZ_SECONDS, default 25). Exits non-zero when a target crashes; the crashing input is
# left in fuzz/artifacts/<target>/ and must become a test in
# crates/secrets-core/tests/fuzz_regressions.rs.
#
# Runs on the stable toolchain: cargo-fuzz (installed into target/fuzz-tools when missing)
# needs nightly-only flags, so RUSTC_BOOTSTRAP=1 is set for its builds only. No sanitizer by
# default (FUZZ_SANITIZER=none): the workspace forbids `unsafe`, and an ASan build would
# double the build time; set FUZZ_SANITIZER=address to use it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

seconds=${FUZZ_SECONDS:-25}
# A fixed seed by default, so that CI explores the same inputs on every run of the same code
# (a run on a faster machine goes further along the same path). FUZZ_SEED=0 lets libFuzzer
# pick one, for longer exploratory campaigns.
seed=${FUZZ_SEED:-1}
sanitizer=${FUZZ_SANITIZER:-none}
targets=(${FUZZ_TARGETS:-manifest_load property_path template dotenv})
tools="$root/target/fuzz-tools"
cargo_fuzz="$tools/bin/cargo-fuzz"
version=0.13.2

if ! "$cargo_fuzz" --version 2>/dev/null | grep -q "$version"; then
    echo "fuzz-smoke: installing cargo-fuzz $version into $tools"
    cargo install cargo-fuzz --version "$version" --locked --root "$tools"
fi

export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
fuzz=("$cargo_fuzz")
common=(--target-dir "$root/target/fuzz" --sanitizer "$sanitizer")

start=$(date +%s)
(cd fuzz && "${fuzz[@]}" build "${common[@]}")
echo "fuzz-smoke: build took $(( $(date +%s) - start ))s"

failed=()
for t in "${targets[@]}"; do
    work="$root/target/fuzz-corpus/$t"
    mkdir -p "$work" "fuzz/artifacts/$t"
    corpora=("$work" "$root/fuzz/seeds/$t")
    if [ "$t" = manifest_load ]; then
        corpora+=("$root/crates/secrets-core/tests/bad-manifests" "$root/examples/manifests")
    fi
    log="$root/target/fuzz-$t.log"
    echo "fuzz-smoke: $t for ${seconds}s"
    set +e
    (cd fuzz && "${fuzz[@]}" run "${common[@]}" "$t" "${corpora[@]}" -- \
        -seed="$seed" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
        -print_final_stats=1) >"$log" 2>&1
    rc=$?
    set -e
    grep -E '^(Done|stat::number_of_executed_units)' "$log" | sed "s/^/  $t: /" || true
    if [ "$rc" -ne 0 ]; then
        echo "fuzz-smoke: $t FAILED (exit $rc); last lines of $log:"
        tail -40 "$log"
        ls -1 "fuzz/artifacts/$t" | sed "s|^|  artifact: fuzz/artifacts/$t/|"
        failed+=("$t")
    fi
done

echo "fuzz-smoke: took $(( $(date +%s) - start ))s"
if [ "${#failed[@]}" -ne 0 ]; then
    echo "fuzz-smoke: crashes in: ${failed[*]} — reproduce with:"
    echo "  (cd fuzz && RUSTC_BOOTSTRAP=1 $cargo_fuzz run --target-dir $root/target/fuzz -s $sanitizer <target> artifacts/<target>/<file>)"
    exit 1
fi
echo "fuzz-smoke: no crash"
