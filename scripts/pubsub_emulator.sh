#!/usr/bin/env bash
# Start/stop the official Pub/Sub emulator (from the Google Cloud SDK on this machine) in the background.
#
# Usage: scripts/pubsub_emulator.sh start|stop|status|restart
# Env (defaults): PUBSUB_EMULATOR_PORT=8085, PUBSUB_EMULATOR_DATA_DIR=<repo>/.emulators/pubsub-data
# PID in <repo>/.emulators/pubsub-$PORT.pid (the Java server's own PID: its launcher script is started
# directly, not through gcloud, and ends in exec java), log in <repo>/.emulators/pubsub-$PORT.log.
# `status` exits 0 if running, 3 if not.
# Clients: export PUBSUB_EMULATOR_HOST=127.0.0.1:$PORT
# Start, stop, status and the files: scripts/lib/emulator.sh, shared with scripts/bigquery_emulator.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/emulator.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/emulator.sh" pubsub_emulator pubsub

PORT="${PUBSUB_EMULATOR_PORT:-8085}"
DATA_DIR="${PUBSUB_EMULATOR_DATA_DIR:-$STATE/pubsub-data}"
TIMEOUT=30
ADDRESS="127.0.0.1:$PORT"
PROCESS_MATCH=cloud-pubsub-emulator

probe() {  # any HTTP answer means the emulator is up (CODE 200), none means nothing listens (000)
    CODE=000; BODY=
    if curl -s --max-time 2 "http://$ADDRESS/v1/projects/probe/topics" >/dev/null 2>&1; then CODE=200; fi
}

prepare() {
    local sdk
    command -v gcloud >/dev/null 2>&1 || die "gcloud (Google Cloud SDK) not found: it ships the Pub/Sub emulator"
    sdk="$(gcloud info --format='value(installation.sdk_root)' 2>/dev/null)"
    [[ -x "$sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator" ]] \
        || die "no Pub/Sub emulator under $sdk/platform/pubsub-emulator (install the SDK component pubsub-emulator)"
    mkdir -p "$DATA_DIR"
    SERVER=("$sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator" --host=127.0.0.1 "--port=$PORT"
            "--data-dir=$DATA_DIR")
}

emulator_main "$@"
