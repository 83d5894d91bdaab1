#!/usr/bin/env bash
# Start/stop the official Pub/Sub emulator (from the Google Cloud SDK on this machine) in the background.
#
# Usage: scripts/pubsub_emulator.sh start|stop|status
# Env (defaults): PUBSUB_EMULATOR_PORT=8085, PUBSUB_EMULATOR_DATA_DIR=<repo>/.emulators/pubsub-data
# PID in <repo>/.emulators/pubsub-$PORT.pid (the Java server's own PID: its launcher script is started
# directly, not through gcloud), log in <repo>/.emulators/pubsub-$PORT.log.
# Clients: export PUBSUB_EMULATOR_HOST=127.0.0.1:$PORT
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="$ROOT/.emulators"
PORT="${PUBSUB_EMULATOR_PORT:-8085}"
DATA_DIR="${PUBSUB_EMULATOR_DATA_DIR:-$STATE/pubsub-data}"
PID_FILE="$STATE/pubsub-$PORT.pid"
LOG="$STATE/pubsub-$PORT.log"
mkdir -p "$STATE"

die() { echo "pubsub_emulator: ERROR: $*" >&2; exit 1; }

emulator_bin() {
  local sdk
  command -v gcloud >/dev/null 2>&1 || die "gcloud (Google Cloud SDK) not found: it ships the Pub/Sub emulator"
  sdk="$(gcloud info --format='value(installation.sdk_root)' 2>/dev/null)"
  [ -x "$sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator" ] \
    || die "no Pub/Sub emulator under $sdk/platform/pubsub-emulator (install the SDK component pubsub-emulator)"
  echo "$sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator"
}

running_pid() {
  [ -f "$PID_FILE" ] || return 1
  local pid; pid="$(cat "$PID_FILE")"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

answers() { curl -s --max-time 2 "http://127.0.0.1:$PORT/v1/projects/probe/topics" >/dev/null 2>&1; }

start() {
  if pid="$(running_pid)"; then echo "pubsub_emulator: already running (pid $pid, 127.0.0.1:$PORT)"; return 0; fi
  answers && die "port $PORT already answers, but not an emulator this script started"
  local bin; bin="$(emulator_bin)"
  mkdir -p "$DATA_DIR"
  # exec: the PID we keep is the Java server's, so stop really stops it
  setsid bash -c "exec '$bin' --host=127.0.0.1 --port=$PORT --data-dir='$DATA_DIR'" >> "$LOG" 2>&1 < /dev/null &
  local pid=$!
  echo "$pid" > "$PID_FILE"
  for _ in $(seq 150); do
    if answers; then echo "pubsub_emulator: ready (pid $pid, 127.0.0.1:$PORT, log $LOG)"; return 0; fi
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$LOG" >&2; rm -f "$PID_FILE"; die "emulator exited during startup"; }
    sleep 0.2
  done
  tail -n 20 "$LOG" >&2; kill "$pid" 2>/dev/null || true; rm -f "$PID_FILE"
  die "emulator did not answer on 127.0.0.1:$PORT within 30 s"
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then rm -f "$PID_FILE"; echo "pubsub_emulator: not running (port $PORT)"; return 0; fi
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  rm -f "$PID_FILE"
  echo "pubsub_emulator: stopped (pid $pid)"
}

status() {
  if pid="$(running_pid)"; then echo "pubsub_emulator: running (pid $pid, 127.0.0.1:$PORT)"; return 0; fi
  echo "pubsub_emulator: not running (port $PORT)"; return 3
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
