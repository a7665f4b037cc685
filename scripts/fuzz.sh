#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/ for a bounded time each (`make fuzz`).
#
#   FUZZ_SECONDS=60       time per target (libFuzzer -max_total_time)
#   FUZZ_TARGETS="task_file segment message"
#   FUZZ_SANITIZER=address   address | none (cargo fuzz --sanitizer)
#
# cargo-fuzz is installed from crates.io when missing. It passes nightly-only `-Z` flags to
# rustc; the machine has the stable toolchain only, so the build runs with RUSTC_BOOTSTRAP=1,
# which lets stable rustc accept them (the sanitizer runtimes ship with stable's std).
# fuzz/ is its own Cargo workspace with its own target directory (fuzz/target): the main
# build never compiles it. A crash leaves its input in fuzz/artifacts/TARGET/ and fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds="${FUZZ_SECONDS:-60}"
targets="${FUZZ_TARGETS:-task_file segment message}"
sanitizer="${FUZZ_SANITIZER:-address}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "+ cargo install cargo-fuzz --locked"
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
# cargo fuzz sets its own RUSTFLAGS; keep the caller's out of the way.
unset RUSTFLAGS CARGO_TARGET_DIR

echo "+ cargo fuzz build -s $sanitizer (fuzz/target)"
cargo fuzz build --fuzz-dir fuzz -s "$sanitizer"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for t in $targets; do
    mkdir -p "fuzz/corpus/$t"
    echo "+ cargo fuzz run $t for ${seconds}s"
    status=0
    cargo fuzz run --fuzz-dir fuzz -s "$sanitizer" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 >"$log" 2>&1 || status=$?
    # The final statistics, or the panic and how to reproduce it.
    grep -v 'NEW_FUNC\|^"\|^INFO: \|^#[0-9]\|^ *[0-9]*: \|^ *at \|^ *#[0-9]' "$log" | tail -n 40 || true
    if [[ "$status" != 0 ]]; then
        echo "fuzz target $t failed (exit $status); the input is in fuzz/artifacts/$t/" >&2
        exit "$status"
    fi
done
echo "fuzz: ${targets} ran ${seconds}s each with no crash"
