#!/usr/bin/env bash
# Start/stop the local BigQuery emulator (local-bigquery) in the background.
#
# Usage: scripts/bigquery_emulator.sh start|stop|status|restart
#
# Env (defaults):
#   BQ_EMULATOR_PORT=9050            HTTP (REST) port
#   BQ_EMULATOR_GRPC_PORT=9060       gRPC port (Storage Read/Write API)
#   BQ_EMULATOR_PROJECT=local-project
#   BQ_EMULATOR_DATA_DIR=<repo>/.emulators/bigquery-data   (kept across restarts)
#   BQ_EMULATOR_START_TIMEOUT=30     seconds to wait for HTTP to answer
# Files: PID in <repo>/.emulators/bigquery-$PORT.pid, log in <repo>/.emulators/bigquery-$PORT.log
# (one pair per port, so several instances can run side by side).
# `start` runs scripts/setup_bigquery_emulator.sh first (instant once installed), is a no-op
# if this port's emulator already runs, and returns once the REST API answers.
# `status` exits 0 if running, 3 if not.
# load_table_from_uri("gs://BUCKET/path/*.parquet") reads local files under
# $DATA_DIR/gcs/BUCKET/path/ (or $GCS_LOCAL_ROOT/BUCKET/... if that env var is set at start).
# Client: bigquery.Client(project=PROJECT, credentials=AnonymousCredentials(),
#   client_options=ClientOptions(api_endpoint="http://127.0.0.1:$PORT")), env NO_GCE_CHECK=true.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="$ROOT/.emulators"
PORT="${BQ_EMULATOR_PORT:-9050}"
GRPC_PORT="${BQ_EMULATOR_GRPC_PORT:-9060}"
PROJECT="${BQ_EMULATOR_PROJECT:-local-project}"
DATA_DIR="${BQ_EMULATOR_DATA_DIR:-$STATE/bigquery-data}"
TIMEOUT="${BQ_EMULATOR_START_TIMEOUT:-30}"
PID_FILE="$STATE/bigquery-$PORT.pid"
LOG="$STATE/bigquery-$PORT.log"
URL="http://127.0.0.1:$PORT"
mkdir -p "$STATE"

die() { echo "bigquery_emulator: ERROR: $*" >&2; exit 1; }
# HTTP status of a cheap API call ("000" = nothing listens). The first call opens the
# emulator's DuckDB catalog, so a 200 means it really works.
probe() {  # sets CODE and BODY
    local out
    out="$(curl -s -w '\n%{http_code}' --max-time 5 "$URL/bigquery/v2/projects" 2>/dev/null || true)"
    CODE="${out##*$'\n'}"; BODY="${out%$'\n'*}"; CODE="${CODE:-000}"
}
answers() { probe; [[ "$CODE" != 000 ]]; }

running_pid() {  # prints the PID if our emulator process is alive
    local pid
    [[ -f "$PID_FILE" ]] || return 1
    pid="$(cat "$PID_FILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null \
        && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "local-bigquery" \
        && echo "$pid"
}

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

terminate() {  # SIGTERM, wait up to 10 s, then SIGKILL; removes the pid file
    local pid=$1
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        echo "bigquery_emulator: pid $pid ignored SIGTERM for 10 s, sending SIGKILL" >&2
        kill -9 "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$PID_FILE"
}

start() {
    if pid="$(running_pid)"; then
        echo "bigquery_emulator: already running (pid $pid, $URL)"; return 0
    fi
    rm -f "$PID_FILE"
    answers && die "port $PORT already answers HTTP, but not an emulator this script started"
    "$ROOT/scripts/setup_bigquery_emulator.sh"
    mkdir -p "$DATA_DIR"
    echo "=== $(date -Is) start port=$PORT grpc=$GRPC_PORT project=$PROJECT data=$DATA_DIR" >> "$LOG"
    # setsid: own session, so a Ctrl-C in the caller's terminal does not reach the server;
    # 9>&-: the server must not inherit (and so keep) this script's lock.
    setsid "$STATE/bigquery-venv/bin/local-bigquery" serve --host 127.0.0.1 --port "$PORT" \
        --grpc-port "$GRPC_PORT" --project "$PROJECT" --data-dir "$DATA_DIR" \
        >> "$LOG" 2>&1 < /dev/null 9>&- &
    local pid=$! t0 deadline
    t0=$(now_ms); deadline=$((t0 + TIMEOUT * 1000))
    echo "$pid" > "$PID_FILE"
    while probe; [[ "$CODE" != 200 ]]; do
        if [[ "$CODE" != 000 ]]; then
            echo "--- last lines of $LOG:" >&2; tail -n 20 "$LOG" >&2
            terminate "$pid"
            die "emulator answered HTTP $CODE: ${BODY:0:500} (stopped it)"
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PID_FILE"
            echo "--- last lines of $LOG:" >&2; tail -n 20 "$LOG" >&2
            die "emulator exited during startup"
        fi
        if (( $(now_ms) >= deadline )); then
            echo "--- last lines of $LOG:" >&2; tail -n 20 "$LOG" >&2
            terminate "$pid"
            die "emulator did not answer on $URL within ${TIMEOUT}s (stopped it)"
        fi
        sleep 0.2
    done
    echo "bigquery_emulator: ready in $(( ($(now_ms) - t0) / 1000 )).$(( ($(now_ms) - t0) % 1000 / 100 )) s (pid $pid, $URL, grpc 127.0.0.1:$GRPC_PORT, project $PROJECT, log $LOG)"
}

stop() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$PID_FILE"; echo "bigquery_emulator: not running (port $PORT)"; return 0
    fi
    terminate "$pid"
    echo "bigquery_emulator: stopped (pid $pid)"
}

status() {
    local pid
    if pid="$(running_pid)"; then
        probe; if [[ "$CODE" == 200 ]]; then echo "bigquery_emulator: running (pid $pid, $URL)"; return 0; fi
        echo "bigquery_emulator: pid $pid alive but $URL does not answer"; return 3
    fi
    echo "bigquery_emulator: not running (port $PORT)"; return 3
}

# One start/stop at a time per port (parallel test runs calling `start` at once).
exec 9> "$STATE/bigquery-$PORT.lock"
flock -w 60 9 || die "another start/stop for port $PORT holds $STATE/bigquery-$PORT.lock"

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    restart) stop; start ;;
    *) echo "usage: $0 start|stop|status|restart" >&2; exit 2 ;;
esac
