# Tarefas: developer and CI entry points (GNU make).
#
#   make services   start PostgreSQL, RabbitMQ and Redis on 127.0.0.1 if needed
#   make test       services, then the whole test suite (nextest when available), doc tests
#                   and the browser tests of the web console
#   make browser-test  the web console in headless Chromium (tests/browser/run.sh)
#   make demo       services, then `tarefas demo --keep-running` (fake Huggy, sync, scheduler,
#                   two workers; the web console stays up until Ctrl-C)
#   make lint       rustfmt check, clippy with warnings as errors, and the Kubernetes manifests
#                   rendered and validated (scripts/k8s-lint.sh; installs its tools once)
#   make k8s-lint   only the manifests
#   make fmt        format the workspace
#   make build      build the workspace
#   make bench      services, then the benchmarks (scripts/bench.sh; see docs/benchmarks.md)
#   make chaos      services, then only the fault scenarios (docs/reliability.md); also in `make test`
#   make fuzz       the cargo-fuzz targets of fuzz/, FUZZ_SECONDS (default 60) each; see
#                   docs/reliability.md
#
# .ci/run runs `make test` then `make lint`.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

# Where the tests find the real services (scripts/services.sh starts them).
# Override from the environment or the command line. Exported to every recipe,
# so that anything that connects at build time (e.g. sqlx macros) sees them too.
DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres
TAREFAS_AMQP_URL ?= amqp://guest:guest@127.0.0.1:5672/%2f
TAREFAS_REDIS_URL ?= redis://127.0.0.1:6379
export DATABASE_URL TAREFAS_AMQP_URL TAREFAS_REDIS_URL

.PHONY: services test lint fmt build rust-tools bench demo browser-test k8s-lint chaos fuzz

services:
	bash scripts/services.sh

# The main job on a fresh machine: everything up, the demo run end to end.
demo: services
	cargo build --release -p tarefas-cli
	./target/release/tarefas demo --keep-running

test: services
	@if cargo nextest --version >/dev/null 2>&1; then \
		echo "+ cargo nextest run --workspace --no-fail-fast"; \
		cargo nextest run --workspace --no-fail-fast; \
	else \
		echo "+ cargo test --workspace (cargo-nextest not installed)"; \
		cargo test --workspace; \
	fi
	cargo test --workspace --doc
	$(MAKE) browser-test

# Installs Debian's chromium and the npm packages when missing; screenshots in
# target/browser-artifacts/.
browser-test: services
	bash tests/browser/run.sh

# rustfmt and clippy are rustup components a fresh toolchain may lack.
rust-tools:
	@cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@cargo clippy --version >/dev/null 2>&1 || rustup component add clippy

lint: rust-tools k8s-lint
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

# `kubectl kustomize` each overlay in deploy/kubernetes/overlays, then kubernetes-validate
# (pinned Kubernetes version) and the CRD schemas in deploy/schemas; see docs/operations.md.
k8s-lint:
	bash scripts/k8s-lint.sh

fmt: rust-tools
	cargo fmt --all

build:
	cargo build --workspace

bench: services
	bash scripts/bench.sh

# Parser, filter compiler and message decoder under libFuzzer, bounded in time; installs
# cargo-fuzz when missing. Its own workspace (fuzz/), so `make test` never builds it.
FUZZ_SECONDS ?= 60
export FUZZ_SECONDS
fuzz:
	bash scripts/fuzz.sh

# The fault scenarios of docs/reliability.md, one at a time, with their CHAOS lines shown.
chaos: services
	@if cargo nextest --version >/dev/null 2>&1; then \
		echo "+ cargo nextest run -p tarefas-cli --test e2e --no-capture chaos_"; \
		cargo nextest run -p tarefas-cli --test e2e --no-capture chaos_; \
	else \
		echo "+ cargo test -p tarefas-cli --test e2e chaos_ -- --nocapture --test-threads 1"; \
		cargo test -p tarefas-cli --test e2e chaos_ -- --nocapture --test-threads 1; \
	fi
