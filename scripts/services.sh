#!/usr/bin/env bash
# services.sh — make sure PostgreSQL, RabbitMQ and Redis run on 127.0.0.1 at
# their default ports (5432, 5672, 6379), for the tests and the demo.
#
# For each service:
#   * the port already answers      -> "already running", nothing is touched;
#   * installed but stopped         -> started with the machine's start command;
#   * not installed                 -> installed from Debian's packages, then started.
# Then it waits (bounded) until the service answers. PostgreSQL is also made to
# accept password-less TCP logins from loopback (trust), so that
#   psql -h 127.0.0.1 -U postgres
# works, as DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres expects.
#
# Idempotent; does not use systemd. Exits non-zero with a message naming the
# service when one cannot be brought up.
#
# Usage: scripts/services.sh [postgres] [rabbitmq] [redis]   (default: all three)
# Env:   SERVICES_WAIT_SECS   how long to wait for each service (default 60)
#        SERVICES_PG_CLUSTER  the PostgreSQL cluster to start (default main)
set -euo pipefail

readonly HOST=127.0.0.1
readonly PG_PORT=5432
readonly RABBIT_PORT=5672
readonly REDIS_PORT=6379
readonly WAIT_SECS="${SERVICES_WAIT_SECS:-60}"
readonly PG_CLUSTER="${SERVICES_PG_CLUSTER:-main}"
readonly HBA_MARKER="# tarefas scripts/services.sh: password-less TCP from loopback (dev/CI)"

LOG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/tarefas-services.XXXXXX")"
trap 'rm -rf "$LOG_DIR"' EXIT
APT_UPDATED=0

say() { printf '%s: %s\n' "$1" "$2"; }
warn() { printf '%s: WARNING: %s\n' "$1" "$2" >&2; }
die() {
    printf '%s: ERROR: %s\n' "$1" "$2" >&2
    exit 1
}

# Show the last lines of a log file on stderr (used when something fails).
show_log() {
    local file=$1
    if [[ -s "$file" ]]; then
        printf -- '--- last lines of %s ---\n' "$file" >&2
        tail -n 30 "$file" >&2 || true
        printf -- '---\n' >&2
    fi
}

# Run a command as root (directly, or through sudo when not root).
as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        printf 'services.sh: ERROR: need root (or sudo) to run: %s\n' "$*" >&2
        return 1
    fi
}

# True when something accepts TCP connections on $HOST:$1.
port_open() {
    timeout 3 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

# Wait until "$@" succeeds, for at most WAIT_SECS seconds.
wait_until() {
    local deadline=$((SECONDS + WAIT_SECS))
    until "$@"; do
        if ((SECONDS >= deadline)); then
            return 1
        fi
        sleep 1
    done
}

# Install Debian packages ("apt-get update" at most once per run).
apt_install() {
    command -v apt-get >/dev/null 2>&1 ||
        die "services" "apt-get not found: install $* by hand"
    if ((APT_UPDATED == 0)); then
        echo "services: apt-get update"
        as_root apt-get update -q ||
            die "services" "apt-get update failed"
        APT_UPDATED=1
    fi
    echo "services: apt-get install -y $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" </dev/null ||
        die "services" "apt-get install $* failed"
}

# ---------------------------------------------------------------- PostgreSQL

pg_version() {
    # Newest cluster configured under /etc/postgresql, else newest server installed.
    local v
    v="$(find /etc/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort -V | tail -1 || true)"
    if [[ -z "$v" ]]; then
        v="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort -V | tail -1 || true)"
    fi
    printf '%s' "$v"
}

pg_installed() {
    command -v pg_ctlcluster >/dev/null 2>&1 && [[ -n "$(pg_version)" ]]
}

pg_ready() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h "$HOST" -p "$PG_PORT" -t 2
    else
        port_open "$PG_PORT"
    fi
}

pg_start() {
    local ver log="$LOG_DIR/postgres.log"
    ver="$(pg_version)"
    if [[ ! -d "/etc/postgresql/$ver/$PG_CLUSTER" ]]; then
        say postgres "creating cluster $ver/$PG_CLUSTER"
        as_root pg_createcluster -p "$PG_PORT" "$ver" "$PG_CLUSTER" >"$log" 2>&1 </dev/null || {
            show_log "$log"
            die postgres "pg_createcluster $ver $PG_CLUSTER failed"
        }
    fi
    say postgres "starting cluster $ver/$PG_CLUSTER"
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$PG_CLUSTER" start >"$log" 2>&1 </dev/null || {
        show_log "$log"
        show_log "/var/log/postgresql/postgresql-$ver-$PG_CLUSTER.log"
        die postgres "pg_ctlcluster $ver $PG_CLUSTER start failed"
    }
    if ! wait_until pg_ready; then
        show_log "/var/log/postgresql/postgresql-$ver-$PG_CLUSTER.log"
        die postgres "not accepting connections on $HOST:$PG_PORT after ${WAIT_SECS}s"
    fi
}

# Can we log in as postgres over TCP without a password?
pg_passwordless() {
    PGPASSWORD='' PGCONNECT_TIMEOUT=5 psql -w -X -q -h "$HOST" -p "$PG_PORT" \
        -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1 </dev/null
}

# Put trust rules for TCP from 127.0.0.1/::1 at the top of pg_hba.conf (the first
# matching rule wins) and reload. Idempotent thanks to the marker line.
pg_trust_loopback() {
    local ver hba log="$LOG_DIR/postgres-reload.log"
    ver="$(pg_version)"
    hba="/etc/postgresql/$ver/$PG_CLUSTER/pg_hba.conf"
    if [[ ! -f "$hba" ]]; then
        warn postgres "password-less login over TCP fails and $hba does not exist; set DATABASE_URL with a password"
        return 0
    fi
    if ! grep -qxF "$HBA_MARKER" "$hba"; then
        say postgres "allowing password-less (trust) TCP logins from 127.0.0.1 and ::1 in $hba"
        local tmp="$LOG_DIR/pg_hba.conf"
        {
            printf '%s\n' "$HBA_MARKER"
            printf 'host    all    all    127.0.0.1/32    trust\n'
            printf 'host    all    all    ::1/128         trust\n'
            cat "$hba"
        } >"$tmp"
        # Keep owner and mode of the original file.
        # shellcheck disable=SC2016 # $1/$2 are expanded by the inner sh
        as_root sh -c 'cat "$1" > "$2"' sh "$tmp" "$hba"
    fi
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$PG_CLUSTER" reload >"$log" 2>&1 </dev/null || {
        show_log "$log"
        die postgres "pg_ctlcluster $ver $PG_CLUSTER reload failed"
    }
    # A reload is applied asynchronously; give it a moment.
    local _
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        pg_passwordless && return 0
        sleep 0.5
    done
    warn postgres "password-less login as postgres over TCP still fails after editing $hba"
}

pg_check_auth() {
    if ! command -v psql >/dev/null 2>&1; then
        warn postgres "psql not found; cannot check password-less login"
        return 0
    fi
    if pg_passwordless; then
        return 0
    fi
    pg_trust_loopback
}

# ------------------------------------------------------------------ RabbitMQ

rabbit_installed() { command -v rabbitmq-server >/dev/null 2>&1; }

# True when an AMQP 0-9-1 server answers the protocol header with a frame
# (Connection.Start begins with frame type 1). An open port is not enough: a
# node whose app was stopped (`rabbitmqctl stop_app`) or that is still booting
# can accept TCP and never answer, and clients then hang.
amqp_answers() {
    local first
    first="$(timeout 10 bash -c "exec 3<>/dev/tcp/$HOST/$RABBIT_PORT && printf 'AMQP\\x00\\x00\\x09\\x01' >&3 && head -c 1 <&3 | od -An -tx1" 2>/dev/null || true)"
    [[ "${first// /}" == 01 ]]
}

# True when a RabbitMQ (Erlang) node answers rabbitmqctl, whether or not its app runs.
rabbit_node_up() {
    command -v rabbitmqctl >/dev/null 2>&1 || return 1
    as_root timeout 20 rabbitmqctl -q ping >/dev/null 2>&1 </dev/null
}

# The pid of whatever listens on the AMQP port (only that node is ever killed: other
# RabbitMQ nodes on this machine, e.g. the fault tests' private ones, are left alone).
rabbit_listener_pid() {
    ss -Hltnp "sport = :$RABBIT_PORT" 2>/dev/null | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1
}

# A node runs but AMQP does not answer. Either its app is stopped (`rabbitmqctl
# stop_app`: the port is closed) -> start the app, and if that fails within WAIT_SECS,
# stop that node and start it again; or it listens without answering, which a busy
# node does for a while (e.g. recovering many quorum queues) -> give it time, then fail
# with a clear message.
rabbit_recover() {
    local log="$LOG_DIR/rabbitmq-recover.log" pid
    command -v rabbitmqctl >/dev/null 2>&1 || die rabbitmq "AMQP does not answer on port $RABBIT_PORT (and no rabbitmqctl to recover it)"
    if port_open "$RABBIT_PORT"; then
        # Never restart a node that listens: it may only be busy, and a restart makes it
        # recover every quorum queue again (slower still), under whoever is using it.
        say rabbitmq "port $RABBIT_PORT open but AMQP does not answer yet: waiting up to ${WAIT_SECS}s"
        if wait_until amqp_answers; then
            return 0
        fi
        die rabbitmq "port $RABBIT_PORT accepts connections but AMQP has not answered for ${WAIT_SECS}s; see /var/log/rabbitmq/ (busy node? 'rabbitmqctl list_queues' counts its queues)"
    fi
    say rabbitmq "node up but its app is stopped: rabbitmqctl start_app"
    as_root timeout 120 rabbitmqctl start_app >"$log" 2>&1 </dev/null || true
    if wait_until amqp_answers; then
        return 0
    fi
    show_log "$log"
    say rabbitmq "still no answer after ${WAIT_SECS}s: stopping the node and starting it again"
    as_root timeout 60 rabbitmqctl stop >>"$log" 2>&1 </dev/null || true
    pid="$(rabbit_listener_pid)"
    if [[ -n "$pid" ]]; then
        as_root kill -9 "$pid" 2>/dev/null || true
    fi
    sleep 2
    rabbit_start
}

rabbit_start() {
    local log="$LOG_DIR/rabbitmq.log"
    say rabbitmq "starting (rabbitmq-server -detached)"
    as_root rabbitmq-server -detached >"$log" 2>&1 </dev/null || {
        show_log "$log"
        die rabbitmq "rabbitmq-server -detached failed"
    }
    if ! wait_until amqp_answers; then
        show_log "$log"
        local f
        for f in /var/log/rabbitmq/startup_err /var/log/rabbitmq/*.log; do
            [[ -f "$f" ]] && show_log "$f"
        done
        die rabbitmq "not accepting connections on $HOST:$RABBIT_PORT after ${WAIT_SECS}s"
    fi
}

# Once the AMQP port answers, let the node finish booting (when rabbitmqctl exists).
rabbit_await() {
    command -v rabbitmqctl >/dev/null 2>&1 || return 0
    local log="$LOG_DIR/rabbitmqctl.log"
    if ! as_root timeout "$((WAIT_SECS + 5))" rabbitmqctl await_startup --timeout "$WAIT_SECS" \
        >"$log" 2>&1 </dev/null; then
        show_log "$log"
        warn rabbitmq "port $RABBIT_PORT answers but 'rabbitmqctl await_startup' failed"
    fi
}

# --------------------------------------------------------------------- Redis

redis_installed() { command -v redis-server >/dev/null 2>&1; }

redis_ready() {
    if command -v redis-cli >/dev/null 2>&1; then
        [[ "$(timeout 3 redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]
    else
        port_open "$REDIS_PORT"
    fi
}

redis_start() {
    local log="$LOG_DIR/redis.log"
    as_root mkdir -p /var/lib/redis /var/log/redis
    say redis "starting (redis-server --daemonize yes)"
    as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
        --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log \
        >"$log" 2>&1 </dev/null || {
        show_log "$log"
        show_log /var/log/redis/ci.log
        die redis "redis-server failed to start"
    }
    if ! wait_until redis_ready; then
        show_log /var/log/redis/ci.log
        die redis "no PONG from $HOST:$REDIS_PORT after ${WAIT_SECS}s"
    fi
}

# ---------------------------------------------------------------------- main

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

declare -a SERVICES=()
for arg in "$@"; do
    case "$arg" in
    postgres | postgresql) SERVICES+=(postgres) ;;
    rabbitmq | rabbit) SERVICES+=(rabbitmq) ;;
    redis) SERVICES+=(redis) ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) die services "unknown service '$arg' (expected postgres, rabbitmq or redis)" ;;
    esac
done
if ((${#SERVICES[@]} == 0)); then
    SERVICES=(postgres rabbitmq redis)
fi
[[ "$WAIT_SECS" =~ ^[0-9]+$ ]] || die services "SERVICES_WAIT_SECS must be a number of seconds"

is_up() {
    case "$1" in
    postgres) pg_ready ;;
    rabbitmq) amqp_answers ;;
    redis) redis_ready ;;
    esac
}

is_installed() {
    case "$1" in
    postgres) pg_installed ;;
    rabbitmq) rabbit_installed ;;
    redis) redis_installed ;;
    esac
}

package_of() {
    case "$1" in
    postgres) echo postgresql ;;
    rabbitmq) echo rabbitmq-server ;;
    redis) echo redis-server ;;
    esac
}

# Pass 1: what is already up, what is missing.
declare -A ACTION=()
declare -a MISSING=()
for svc in "${SERVICES[@]}"; do
    if is_up "$svc"; then
        ACTION[$svc]="already running"
    elif is_installed "$svc"; then
        ACTION[$svc]="started"
    else
        ACTION[$svc]="installed and started"
        MISSING+=("$(package_of "$svc")")
    fi
done

# Pass 2: install whatever is missing, in one apt transaction.
if ((${#MISSING[@]} > 0)); then
    apt_install "${MISSING[@]}"
fi

# Pass 3: start and wait.
for svc in "${SERVICES[@]}"; do
    case "${ACTION[$svc]}" in
    "already running") ;;
    *)
        is_installed "$svc" || die "$svc" "still not installed after apt-get install $(package_of "$svc")"
        # A package's maintainer scripts may have started it already.
        if is_up "$svc"; then
            if [[ "${ACTION[$svc]}" == "installed and started" ]]; then
                ACTION[$svc]="installed (started by its package)"
            fi
        else
            case "$svc" in
            postgres) pg_start ;;
            rabbitmq)
                if port_open "$RABBIT_PORT" || rabbit_node_up; then
                    ACTION[$svc]="recovered"
                    rabbit_recover
                else
                    rabbit_start
                fi
                ;;
            redis) redis_start ;;
            esac
        fi
        ;;
    esac
    case "$svc" in
    postgres) pg_check_auth ;;
    rabbitmq)
        if [[ "${ACTION[$svc]}" != "already running" ]]; then
            rabbit_await
        fi
        ;;
    esac
    case "$svc" in
    postgres) say postgres "${ACTION[$svc]} ($HOST:$PG_PORT)" ;;
    rabbitmq) say rabbitmq "${ACTION[$svc]} ($HOST:$RABBIT_PORT)" ;;
    redis) say redis "${ACTION[$svc]} ($HOST:$REDIS_PORT)" ;;
    esac
done
