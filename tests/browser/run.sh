#!/usr/bin/env bash
# Browser tests of the Tarefas web console: a real headless Chromium (Debian's `chromium`,
# driven by playwright-core) goes through the help article's steps against a whole stack on
# this machine — its own Postgres database, RabbitMQ queue prefix and Redis key prefix, a
# fake Huggy, a worker and `tarefas admin`. Screenshots of every page land in
# target/browser-artifacts/. Installs Chromium (apt) and the npm packages when missing.
#
#   bash tests/browser/run.sh          (make browser-test; make test runs it)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
HERE=$ROOT/tests/browser
ARTIFACTS=${TAREFAS_BROWSER_ARTIFACTS:-$ROOT/target/browser-artifacts}
PG_BASE=${TAREFAS_BROWSER_PG:-postgres://postgres@127.0.0.1:5432}

log() { echo "[browser-test] $*"; }

# --- tools: Chromium, Node.js and the npm packages -------------------------------------
apt_install() {
  if [ "$(id -u)" != 0 ]; then log "need root to apt-get install $*"; exit 1; fi
  if [ -z "${APT_UPDATED:-}" ]; then timeout 300 apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq "$@"
}
CHROMIUM=${TAREFAS_CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then log "installing Debian's chromium"; apt_install chromium; fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  log "installing Node.js and npm"; apt_install nodejs npm
fi
# Installed again only when package-lock.json changed since the last install.
if [ ! -d "$HERE/node_modules/playwright-core" ] \
   || ! cmp -s "$HERE/package-lock.json" "$HERE/node_modules/.installed-from-lock" 2>/dev/null; then
  log "npm ci (playwright-core; no browser download)"
  (cd "$HERE" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 timeout 300 npm ci --no-audit --no-fund --loglevel=error)
  cp "$HERE/package-lock.json" "$HERE/node_modules/.installed-from-lock"
fi

# --- the binary ------------------------------------------------------------------------
if [ -z "${TAREFAS_BIN:-}" ]; then
  log "cargo build -p tarefas-cli"
  cargo build -q -p tarefas-cli --bin tarefas
  TAREFAS_BIN=$ROOT/target/debug/tarefas
fi

# --- a stack of our own ----------------------------------------------------------------
RUN_ID="browser_$$_$(date +%s)"
WORK=$(mktemp -d -t tarefas-browser.XXXXXX)
export TAREFAS_DATABASE_URL="$PG_BASE/tarefas_$RUN_ID"
export TAREFAS_QUEUE_PREFIX="tarefas-$RUN_ID"
export DEMO_TOKEN=fake-huggy-token
export RUST_LOG=${RUST_LOG:-warn}
PIDS=()
VHOST=""
cleanup() {
  local code=$?
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [ -n "$VHOST" ]; then timeout 60 rabbitmqctl -q delete_vhost "$VHOST" >/dev/null 2>&1 || true; fi
  psql "$PG_BASE/postgres" -qc "DROP DATABASE IF EXISTS \"tarefas_$RUN_ID\" WITH (FORCE)" >/dev/null 2>&1 || true
  if [ $code -ne 0 ]; then
    for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -n 30 "$f"; }; done
  fi
  rm -rf "$WORK"
  exit $code
}
trap cleanup EXIT INT TERM

# A RabbitMQ vhost of our own, deleted afterwards with every queue in it (the shared node
# stays as we found it); without rabbitmqctl, the queue prefix in the default vhost.
if command -v rabbitmqctl >/dev/null; then
  VHOST="tarefas-$RUN_ID"
  timeout 60 rabbitmqctl -q add_vhost "$VHOST" >/dev/null 2>&1 || true
  if timeout 60 rabbitmqctl -q list_vhosts 2>/dev/null | grep -qx "$VHOST" \
     && timeout 60 rabbitmqctl -q set_permissions -p "$VHOST" guest '.*' '.*' '.*' >/dev/null 2>&1; then
    export TAREFAS_AMQP_URL="amqp://guest:guest@127.0.0.1:5672/$VHOST"
  else
    log "no vhost of our own (rabbitmqctl failed); using queue prefix $TAREFAS_QUEUE_PREFIX in /"
  fi
fi


# Waits until FILE has a line matching REGEX and prints the first match's group 1.
wait_log() {
  for _ in $(seq 300); do
    local m
    m=$(sed -nE "s#$2#\1#p" "$1" 2>/dev/null | head -n1)
    if [ -n "$m" ]; then echo "$m"; return 0; fi
    sleep 0.1
  done
  log "no line matching $2 in $1"; return 1
}

"$TAREFAS_BIN" fake-huggy --listen 127.0.0.1:0 --contacts 400 --chats 200 >"$WORK/fake.log" 2>&1 &
PIDS+=($!)
HUGGY_URL=$(wait_log "$WORK/fake.log" '.*fake Huggy on (http://[0-9.:]+).*')
export TAREFAS_HUGGY_API_URL=$HUGGY_URL

"$TAREFAS_BIN" migrate >/dev/null
"$TAREFAS_BIN" account add demo --token-env DEMO_TOKEN --rate-limit 200/s >/dev/null
"$TAREFAS_BIN" sync --once >"$WORK/sync.log" 2>&1
"$TAREFAS_BIN" worker >"$WORK/worker.log" 2>&1 &
PIDS+=($!)
"$TAREFAS_BIN" admin --listen 127.0.0.1:0 >"$WORK/admin.log" 2>&1 &
PIDS+=($!)
CONSOLE=$(wait_log "$WORK/admin.log" '.*Tarefas console: (http://[0-9.:]+)/.*')
TOKEN=$("$TAREFAS_BIN" token create --account demo --name "navegador" 2>/dev/null)

rm -rf "$ARTIFACTS" && mkdir -p "$ARTIFACTS"
log "stack up: console $CONSOLE/, database tarefas_$RUN_ID; screenshots in $ARTIFACTS"
cd "$HERE"
TAREFAS_CONSOLE_URL="$CONSOLE" TAREFAS_TOKEN="$TOKEN" \
  TAREFAS_ARTIFACTS="$ARTIFACTS" TAREFAS_CHROMIUM="$CHROMIUM" \
  timeout 600 node --test --test-concurrency=1 --test-timeout=240000 console.test.mjs
