#!/usr/bin/env bash
# bench.sh — build tarefas-bench in release and run the benchmarks (`make bench`).
#
# Each benchmark is a subcommand of tarefas-bench that measures Tarefas against a baseline
# in the same run (the machines are shared and noisy: ratios, not absolute times), prints a
# table and writes target/bench/<name>.json. docs/benchmarks.md reports them and says how.
#
# Usage: scripts/bench.sh [benchmark ...]      (default: every one in BENCHMARKS)
# Env:   TAREFAS_BENCH_DATABASE_URL  the benchmarks' own database, created if missing and
#                                    kept between runs
#                                    (default postgres://postgres@127.0.0.1:5432/tarefas_bench)
#        BENCH_ARGS                  extra arguments for every benchmark (e.g. "--reload")
#        BENCH_TIMEOUT_SECS          the most one benchmark may run (default 600)
#        CARGO_TARGET_DIR            where cargo builds (default target)
#
# Expects the services to run (make services). Exits non-zero when a build or a benchmark
# fails (a benchmark fails when Tarefas and its baseline disagree on a result).
set -euo pipefail

# The benchmarks, in the order they run. To add one: a subcommand of tarefas-bench (see
# crates/tarefas-bench/src/main.rs) and its name here; then its section in docs/benchmarks.md.
BENCHMARKS=(segment fanout)

cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly TIMEOUT_SECS="${BENCH_TIMEOUT_SECS:-600}"
readonly BIN="${CARGO_TARGET_DIR:-target}/release/tarefas-bench"

if [[ $# -gt 0 ]]; then
    selected=("$@")
else
    selected=("${BENCHMARKS[@]}")
fi
for b in "${selected[@]}"; do
    if [[ ! " ${BENCHMARKS[*]} " == *" $b "* ]]; then
        echo "bench.sh: unknown benchmark '$b' (known: ${BENCHMARKS[*]})" >&2
        exit 2
    fi
done

echo "+ cargo build --release -p tarefas-bench -p tarefas-cli"
cargo build --release -p tarefas-bench -p tarefas-cli   # fanout runs the real binary

read -r -a extra <<<"${BENCH_ARGS:-}"
failed=()
for b in "${selected[@]}"; do
    echo
    echo "== $b =="
    started=$SECONDS
    if timeout "$TIMEOUT_SECS" "$BIN" "$b" "${extra[@]}"; then
        echo "== $b: done in $((SECONDS - started)) s"
    else
        rc=$?
        echo "== $b: FAILED (exit $rc after $((SECONDS - started)) s)" >&2
        failed+=("$b")
    fi
done

echo
ls -l target/bench/*.json 2>/dev/null || true
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "bench.sh: failed: ${failed[*]}" >&2
    exit 1
fi
