#!/usr/bin/env bash
# bench.sh — build tarefas-bench in release and run the benchmarks (`make bench`).
#
# Each benchmark is a subcommand of tarefas-bench that measures Tarefas against a baseline
# in the same run (the machines are shared and noisy: ratios, not absolute times) and writes
# target/bench/<name>.json; its own detailed tables go to target/bench/<name>.txt, its
# progress to the terminal. At the end `tarefas-bench report` prints the ONE summary table
# (also target/bench/summary.md) and writes the chart, target/bench/summary.svg.
# docs/benchmarks.md reports them and says how.
#
# The fan-out benchmark runs the same job on Celery (RabbitMQ) and BullMQ (Redis): their
# code is in scripts/bench/peers/, installed from PyPI and npm by scripts/bench/peers/
# install.sh into a venv and node_modules there (gitignored) when missing. Celery gets a
# RabbitMQ vhost of its own (tarefas-bench-peers, created here with rabbitmqctl when
# missing); BullMQ a Redis key prefix of its own (its queue is obliterated before and after).
#
# Usage: scripts/bench.sh [benchmark ...]      (default: every one in BENCHMARKS)
# Env:   TAREFAS_BENCH_DATABASE_URL  the segment and planning database, created if missing
#                                    and kept between runs
#                                    (default postgres://postgres@127.0.0.1:5432/tarefas_bench)
#        BENCH_QUICK=1               a quick pass (~5 min): smaller peer runs, 15 s of rate
#                                    limit, a 200,000-item memory run, one scheduler minute.
#                                    Not for the figures of docs/benchmarks.md.
#        BENCH_ARGS                  extra arguments for the segment benchmark (e.g. "--reload")
#        BENCH_ARGS_<name>           extra arguments for benchmark <name> (e.g.
#                                    BENCH_ARGS_fanout="--celery-items 50000")
#        BENCH_TIMEOUT_SECS          the most one benchmark may run (default 900)
#        CARGO_TARGET_DIR            where cargo builds (default target)
#
# Expects the services to run (make services). Exits non-zero when a build or a benchmark
# fails (a benchmark fails when Tarefas and its baseline disagree on a result). A missed
# target does not fail it: the table says MISSED.
set -euo pipefail

# The benchmarks, in the order they run. To add one: a subcommand of tarefas-bench (see
# crates/tarefas-bench/src/main.rs) and its name here; then its section in docs/benchmarks.md.
BENCHMARKS=(segment planning fanout scheduler history)

cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly TIMEOUT_SECS="${BENCH_TIMEOUT_SECS:-900}"
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

# The peers of the fan-out benchmark.
if [[ " ${selected[*]} " == *" fanout "* ]]; then
    bash scripts/bench/peers/install.sh
    if command -v rabbitmqctl >/dev/null 2>&1; then
        vhost=tarefas-bench-peers
        # The shared node's (set RABBITMQ_NODENAME for another); a failure here shows later,
        # as the Celery peer failing to connect.
        if ! timeout 60 rabbitmqctl -q list_vhosts 2>/dev/null | grep -qx "$vhost"; then
            echo "+ rabbitmqctl add_vhost $vhost"
            timeout 60 rabbitmqctl -q add_vhost "$vhost" >/dev/null || echo "bench.sh: could not add vhost $vhost" >&2
        fi
        timeout 60 rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*' >/dev/null ||
            echo "bench.sh: could not set permissions on vhost $vhost" >&2
    fi
fi

quick=()
declare -A quick_args=(
    [segment]="--reps 5 --stream-reps 3"
    [planning]="--reps 3"
    [fanout]="--celery-items 20000 --bullmq-items 50000 --rate-secs 15 --memory-items 200000 --latency-items 5000"
    [scheduler]="--minutes 1"
    [history]="--items 2000000 --prune-items 500000 --sched-tasks 20000"
)
mkdir -p target/bench
failed=()
started_all=$SECONDS
for b in "${selected[@]}"; do
    echo
    echo "== $b =="
    started=$SECONDS
    extra=()
    if [[ $b == segment ]]; then
        read -r -a extra <<<"${BENCH_ARGS:-}"
    fi
    var="BENCH_ARGS_$b"
    read -r -a more <<<"${!var:-}"
    quick=()
    if [[ -n ${BENCH_QUICK:-} ]]; then
        read -r -a quick <<<"${quick_args[$b]}"
    fi
    if timeout "$TIMEOUT_SECS" "$BIN" "$b" "${quick[@]}" "${extra[@]}" "${more[@]}" >"target/bench/$b.txt"; then
        echo "== $b: done in $((SECONDS - started)) s (tables: target/bench/$b.txt)"
    else
        rc=$?
        cat "target/bench/$b.txt"
        echo "== $b: FAILED (exit $rc after $((SECONDS - started)) s)" >&2
        failed+=("$b")
    fi
done

echo
echo "== summary ($((SECONDS - started_all)) s of benchmarks${BENCH_QUICK:+, QUICK pass: not the figures of the docs}) =="
"$BIN" report
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "bench.sh: failed: ${failed[*]}" >&2
    exit 1
fi
