#!/usr/bin/env bash
# install.sh — install the peers of `tarefas-bench peers` from their package registries when
# missing: Celery (and requests) into scripts/bench/peers/.venv, BullMQ into
# scripts/bench/peers/node_modules. Both are gitignored; versions are pinned in
# requirements.txt and package.json. Idempotent: does nothing when both are in place.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if [[ ! -x .venv/bin/celery ]] || ! cmp -s requirements.txt .venv/.requirements.txt; then
    command -v python3 >/dev/null || { echo "install.sh: python3 is needed for the Celery peer" >&2; exit 1; }
    echo "+ python3 -m venv .venv && pip install -r requirements.txt"
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
    cp requirements.txt .venv/.requirements.txt
fi

if [[ ! -d node_modules/bullmq ]] || ! cmp -s package.json node_modules/.package.json; then
    command -v npm >/dev/null || { echo "install.sh: node and npm are needed for the BullMQ peer" >&2; exit 1; }
    echo "+ npm install (bullmq)"
    npm install --no-audit --no-fund --loglevel=error
    cp package.json node_modules/.package.json
fi
