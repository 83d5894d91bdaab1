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
#   BQ_EMULATOR_THREADS=             DuckDB threads of the emulator (unset: DuckDB's default, one per core;
#                                    the tests set 1: see scripts/lib/local-bigquery-tuned.py)
# Files: PID in <repo>/.emulators/bigquery-$PORT.pid, log in <repo>/.emulators/bigquery-$PORT.log
# (one pair per port, so several instances can run side by side; EMULATOR_RUN_DIR=DIR puts them in DIR).
# `start` runs scripts/setup_bigquery_emulator.sh first (instant once installed), is a no-op
# if this port's emulator already runs, and returns once the REST API answers.
# `status` exits 0 if running, 3 if not.
# load_table_from_uri("gs://BUCKET/path/*.parquet") reads local files under
# $DATA_DIR/gcs/BUCKET/path/ (or $GCS_LOCAL_ROOT/BUCKET/... if that env var is set at start).
# Client: bigquery.Client(project=PROJECT, credentials=AnonymousCredentials(),
#   client_options=ClientOptions(api_endpoint="http://127.0.0.1:$PORT")), env NO_GCE_CHECK=true.
# Start, stop, status and the files: scripts/lib/emulator.sh, shared with scripts/pubsub_emulator.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/emulator.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/emulator.sh" bigquery_emulator bigquery

PORT="${BQ_EMULATOR_PORT:-9050}"
GRPC_PORT="${BQ_EMULATOR_GRPC_PORT:-9060}"
PROJECT="${BQ_EMULATOR_PROJECT:-local-project}"
DATA_DIR="${BQ_EMULATOR_DATA_DIR:-$STATE/bigquery-data}"
TIMEOUT="${BQ_EMULATOR_START_TIMEOUT:-30}"
ADDRESS="http://127.0.0.1:$PORT"
PROCESS_MATCH=local-bigquery
READY_DETAILS=", grpc 127.0.0.1:$GRPC_PORT, project $PROJECT"

# HTTP status of a cheap API call ("000" = nothing listens). The first call opens the
# emulator's DuckDB catalog, so a 200 means it really works.
probe() {  # sets CODE and BODY
    local out
    out="$(curl -s -w '\n%{http_code}' --max-time 5 "$ADDRESS/bigquery/v2/projects" 2>/dev/null || true)"
    CODE="${out##*$'\n'}"; BODY="${out%$'\n'*}"; CODE="${CODE:-000}"
}

prepare() {
    "$ROOT/scripts/setup_bigquery_emulator.sh"
    mkdir -p "$DATA_DIR"
    echo "=== $(date -Is) start port=$PORT grpc=$GRPC_PORT project=$PROJECT data=$DATA_DIR" >> "$LOG"
    SERVER=("$STATE/bigquery-venv/bin/local-bigquery")
    if [[ -n "${BQ_EMULATOR_THREADS:-}" ]]; then
        [[ "$BQ_EMULATOR_THREADS" =~ ^[1-9][0-9]*$ ]] || die "BQ_EMULATOR_THREADS must be a whole number ≥ 1, not '$BQ_EMULATOR_THREADS'"
        SERVER=("$STATE/bigquery-venv/bin/python" "$ROOT/scripts/lib/local-bigquery-tuned.py" "$BQ_EMULATOR_THREADS")
    fi
    SERVER+=(serve --host 127.0.0.1 --port "$PORT" --grpc-port "$GRPC_PORT" --project "$PROJECT" --data-dir "$DATA_DIR")
}

emulator_main "$@"
