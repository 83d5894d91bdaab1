#!/usr/bin/env bash
# The importer's one entry point. Sets up what it needs on first use (a venv from pinned requirements).
#
#   ./run.sh                 start the local BigQuery emulator, import the bundled example export
#                            (examples/) into local-project.rlvt.events, print the report and a sample query
#   ./run.sh import FLAGS…   run an import (python -m pipeline FLAGS…); ./run.sh import --help lists flags.
#                            Without --bigquery_endpoint and without Google credentials, BigQuery is the
#                            local emulator (started if needed); without any output, local-project.rlvt.events
#   ./run.sh query "SQL" [--format=json]   run SQL on the local emulator (or real BigQuery when configured)
#   ./run.sh pubsub-demo     start the Pub/Sub emulator, publish the example export to a topic and import it
#                            from its subscription into local-project.rlvt.stream_events
#   ./run.sh publish FILES… --topic projects/P/topics/T [--subscription …]   publish lines as messages
#   ./run.sh replay --dead_letters FILES | --from_table T [--reason C] IMPORT_FLAGS…   re-import dead letters
#   ./run.sh merge-landed --output_table P.D.T [--landing_table …]   one MERGE of a Pub/Sub landing table
#                            (for --merge_interval_seconds 0; deploy/scheduler/merge_landed.sh schedules it)
#   ./run.sh dataflow FLAGS…   run an import on Dataflow (scripts/dataflow.sh submit): needs --project,
#                            --region, --temp_location gs://…; waits for the job and prints the report
#   ./run.sh template-build  build the Flex Template image + spec (IMAGE=… TEMPLATE_PATH=… PROJECT=…)
#   ./run.sh template-run FLAGS…   start a job from the Flex Template (docs/dataflow.md)
#   ./run.sh stop            stop the services run.sh started (by their PIDs)
#   ./run.sh test [ARGS…]    set up and run the whole test suite on cores+1 workers (TEST_WORKERS=N; ARGS to pytest;
#                            --fast: only the pure-function tests, in seconds)
#   ./run.sh bench [ARGS…]   run the benchmark (bench/run_bench.py)
#   ./run.sh mutate [MODULE…]   mutation testing of the pure modules against their unit tests (docs/mutation.md)
#   ./run.sh setup           only set up the venvs (Python 3.11, 3.12 or 3.13; PYTHON=… to choose)
#   ./run.sh which-python    the interpreter a new venv would use
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
# shellcheck source=scripts/lib/python.sh
source scripts/lib/python.sh  # pyenv_python
VENV="${RLVT_VENV:-$ROOT/.venv}"  # RLVT_VENV: another venv (scripts/smoke_pythons.sh makes one per Python)

SUPPORTED_PYTHONS="3.11 3.12 3.13"  # Beam 2.77 and every pinned package have wheels for these (docs/operations.md)

is_supported_python() {
  "$1" -c 'import sys; sys.exit(f"{sys.version_info[0]}.{sys.version_info[1]}" not in sys.argv[1].split())' \
    "$SUPPORTED_PYTHONS" 2>/dev/null
}

# The interpreter for a new venv: $PYTHON if set, else the first of python3.11, 3.12, 3.13 (on PATH, then
# in pyenv), else python3 if it is one of them. 3.11 first: the Dataflow image's Python.
find_python() {
  local candidates=() v
  if [ -n "${PYTHON:-}" ]; then candidates=("$PYTHON"); else
    for v in $SUPPORTED_PYTHONS; do
      candidates+=("python$v" "$(pyenv_python "$v")")
    done
    candidates+=(python3)
  fi
  for candidate in "${candidates[@]}"; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 && is_supported_python "$candidate"; then
      command -v "$candidate"; return 0
    fi
  done
  echo "error: Python 3.11, 3.12 or 3.13 is needed (Beam 2.77 and the pinned wheels); none found on PATH or in" \
       "pyenv${PYTHON:+ (PYTHON=$PYTHON is not one of them)}" >&2
  return 1
}

setup() {
  local stamp="$VENV/.installed" want
  want=$(cat requirements.lock requirements-dev.txt setup.py | sha256sum | cut -c1-16)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  echo "setting up $VENV (first run takes about a minute)…" >&2
  if [ ! -x "$VENV/bin/python" ]; then "$(find_python)" -m venv "$VENV"; fi
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q -r requirements.lock -r requirements-dev.txt >&2
  "$VENV/bin/python" -m pip install -q --no-deps -e . >&2
  echo "$want" > "$stamp"
}

setup_all() {
  setup
  scripts/setup_bigquery_emulator.sh >&2
}

py() { "$VENV/bin/python" "$@"; }

LOCAL_PUBSUB="127.0.0.1:${PUBSUB_EMULATOR_PORT:-8085}"
DEMO_TOPIC=projects/local-project/topics/rlvt-events
DEMO_SUBSCRIPTION=projects/local-project/subscriptions/rlvt-events-import

# Without credentials or an emulator already named, Pub/Sub is the local emulator (started if needed).
use_local_pubsub() {
  if [ -z "${PUBSUB_EMULATOR_HOST:-}" ] && ! has_google_credentials; then
    scripts/pubsub_emulator.sh start >&2
    export PUBSUB_EMULATOR_HOST="$LOCAL_PUBSUB"
    echo "no Google credentials: using the local Pub/Sub emulator at $PUBSUB_EMULATOR_HOST" >&2
  fi
}
LOCAL_BQ_PORT=${BQ_EMULATOR_PORT:-9050}
LOCAL_BQ="http://127.0.0.1:$LOCAL_BQ_PORT"
DEFAULT_TABLE=local-project.rlvt.events

start_bigquery() { scripts/bigquery_emulator.sh start >&2; USING_LOCAL_BQ=1; }

# After a command that failed while using the local emulator: if the emulator is gone, say so (the
# command itself only sees "Connection refused" after its retries), with the last lines of its log.
explain_dead_emulator() {
  [ -n "${USING_LOCAL_BQ:-}" ] || return 0
  scripts/bigquery_emulator.sh status >/dev/null 2>&1 && return 0
  local log="$ROOT/.emulators/bigquery-$LOCAL_BQ_PORT.log"
  echo "error: the local BigQuery emulator ($LOCAL_BQ) died while the command ran; last lines of $log:" >&2
  tail -n 15 "$log" 2>/dev/null | sed 's/^/  | /' >&2
  echo "(./run.sh starts it again on the next command; the data under .emulators/ is kept)" >&2
}

run_local() {  # run_local CMD…: run a command that may use the local emulator, explain if it died
  set +e
  "$@"
  local code=$?
  set -e
  [ $code -eq 0 ] || explain_dead_emulator
  return $code
}

has_google_credentials() {
  [ -n "${GOOGLE_APPLICATION_CREDENTIALS:-}" ] || [ -f "$HOME/.config/gcloud/application_default_credentials.json" ]
}

has_flag() {  # has_flag NAME ARGS…: is --NAME among ARGS (as --NAME or --NAME=…)?
  local name=$1; shift
  for a in "$@"; do case "$a" in "--$name"|"--$name="*) return 0 ;; esac; done
  return 1
}

wants_help() {  # -h or --help among the arguments: show the command's help, start nothing
  for a in "$@"; do case "$a" in -h|--help) return 0 ;; esac; done
  return 1
}

# Before starting an emulator for a command: its flags must all exist (a misspelled flag must not
# start a service, nor later import into the default table). Only when the emulator is not already
# up, so a running one costs nothing (the import checks its flags itself, before any work).
check_flags_before_start() {  # check_flags_before_start import|replay ARGS…
  scripts/bigquery_emulator.sh status >/dev/null 2>&1 && return 0
  py -m pipeline.cli check "$@" || exit 2
}

# Fill in the local defaults of an import: where the rows go and which BigQuery.
local_import_args() {
  local extra=()
  # a replay --from_table writes to the events table its dead-letter table belongs to (pipeline.replay)
  if ! has_flag output_table "$@" && ! has_flag output_dir "$@" && ! has_flag dry_run "$@" \
     && ! has_flag from_table "$@" && ! has_flag help "$@" && ! has_flag h "$@"; then
    extra+=(--output_table "$DEFAULT_TABLE")
  fi
  if { has_flag output_table "$@" || has_flag from_table "$@" || [ ${#extra[@]} -gt 0 ]; } \
     && ! has_flag bigquery_endpoint "$@" \
     && ! has_google_credentials; then
    check_flags_before_start "$FLAGS_OF" "$@"
    start_bigquery
    echo "no Google credentials and no --bigquery_endpoint: using the local BigQuery emulator at $LOCAL_BQ" >&2
    extra+=(--bigquery_endpoint "$LOCAL_BQ")
    # the emulator run.sh started runs on this machine: it reads the staged files in place
    if [ "$FLAGS_OF" != merge_landed ] && ! has_flag emulator_load "$@"; then extra+=(--emulator_load local_files); fi
  fi
  IMPORT_ARGS=("$@" "${extra[@]}")
}

cmd=${1:-example}
[ $# -gt 0 ] && shift
case "$cmd" in
  setup) setup_all ;;
  example)
    setup
    start_bigquery
    echo "importing examples/*.ndjson.gz into $DEFAULT_TABLE on the local BigQuery emulator ($LOCAL_BQ)…" >&2
    set +e
    rm -f "$ROOT/out/example_report.html"
    py -m pipeline --input "$ROOT/examples/*.ndjson.gz" --datasource_id 61a095fdd8d2e20011544831 \
      --output_table "$DEFAULT_TABLE" --bigquery_endpoint "$LOCAL_BQ" --emulator_load local_files --report_html "$ROOT/out/example_report.html" "$@"
    code=$?
    set -e
    echo
    echo "Events per day and name (./run.sh query \"…\"):"
    py -m pipeline.query --bigquery_endpoint "$LOCAL_BQ" \
      "SELECT DATE(timestamp) AS day, name, COUNT(*) AS events FROM \`$DEFAULT_TABLE\`
       WHERE timestamp >= TIMESTAMP_SUB((SELECT MAX(timestamp) FROM \`$DEFAULT_TABLE\`), INTERVAL 2 DAY)
       GROUP BY day, name ORDER BY day DESC, events DESC LIMIT 20"
    [ -f "$ROOT/out/example_report.html" ] && echo && echo "HTML report: $ROOT/out/example_report.html (open it in a browser)"
    exit $code
    ;;
  import)
    setup
    if wants_help "$@"; then py -m pipeline --help; exit 0; fi
    FLAGS_OF=import
    if has_flag input_subscription "$@"; then check_flags_before_start import "$@"; use_local_pubsub; fi
    local_import_args "$@"
    run_local py -m pipeline "${IMPORT_ARGS[@]}"
    ;;
  query)
    setup
    if wants_help "$@"; then py -m pipeline.query --help; exit 0; fi
    if has_flag bigquery_endpoint "$@" || has_google_credentials; then
      py -m pipeline.query "$@"
    else
      check_flags_before_start query "$@"
      start_bigquery
      run_local py -m pipeline.query --bigquery_endpoint "$LOCAL_BQ" "$@"
    fi
    ;;
  publish)
    setup
    if wants_help "$@"; then py -m pipeline.publish --help; exit 0; fi
    py -m pipeline.cli check publish "$@" || exit 2
    use_local_pubsub
    py -m pipeline.publish "$@"
    ;;
  merge-landed)
    setup
    if wants_help "$@"; then py -m pipeline.merge_landed --help; exit 0; fi
    FLAGS_OF=merge_landed
    local_import_args "$@"
    run_local py -m pipeline.merge_landed "${IMPORT_ARGS[@]}"
    ;;
  replay)
    setup
    if wants_help "$@"; then py -m pipeline.replay --help; exit 0; fi
    FLAGS_OF=replay
    local_import_args "$@"
    run_local py -m pipeline.replay "${IMPORT_ARGS[@]}"
    ;;
  pubsub-demo)
    setup
    use_local_pubsub
    start_bigquery
    py -m pipeline.publish "$ROOT/examples/*.ndjson.gz" --topic "$DEMO_TOPIC" --subscription "$DEMO_SUBSCRIPTION"
    py -m pipeline --input_subscription "$DEMO_SUBSCRIPTION" --output_table local-project.rlvt.stream_events \
      --bigquery_endpoint "$LOCAL_BQ" --datasource_id 61a095fdd8d2e20011544831 \
      --stop_after_idle_seconds 5 --merge_interval_seconds 10 "$@"
    ;;
  dataflow)
    setup
    # the job's workers run the 3.11 image: a launcher on another Python would pickle for the wrong one
    if ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      echo "error: Dataflow jobs run the Python 3.11 image: submit them from a 3.11 venv (PYTHON=python3.11;" \
           "remove $VENV first)" >&2
      exit 2
    fi
    exec scripts/dataflow.sh submit "$@"
    ;;
  which-python) find_python ;;
  template-build|template-run) setup; exec scripts/dataflow.sh "$cmd" "$@" ;;
  stop) scripts/bigquery_emulator.sh stop; scripts/pubsub_emulator.sh stop ;;
  test)
    setup_all
    if ! command -v chromium >/dev/null; then  # the HTML report's browser test: the system's Chromium, never a download
      sudo=; [ "$(id -u)" = 0 ] || sudo="sudo -n"
      $sudo apt-get install -y -q chromium >&2 || { $sudo apt-get update -q >&2 && $sudo apt-get install -y -q chromium >&2; } ||
        echo "no Chromium (apt-get install chromium): the HTML report's browser tests are skipped" >&2
    fi
    set +e
    # one worker more than the cores (one emulator each): the emulator tests partly wait (idle stops,
    # retries), which the extra worker fills. Measured on two cores: 2 workers 6:10, 3 workers 5:12,
    # 4 workers 5:51, with 584, 584 and 691 CPU-seconds (a fourth worker's contention costs more than its
    # overlap saves). --by-cost (tests/conftest.py) splits the independent files test by test and starts
    # the longest first. --fast: the pure-function tests only, on two workers
    workers=$(( $(nproc 2>/dev/null || echo 2) + 1 )); case " $* " in *" --fast "*) workers=2 ;; esac
    py -m pytest -n "${TEST_WORKERS:-$workers}" --dist loadfile --by-cost "$@"
    code=$?
    set -e
    exit $code
    ;;
  bench) setup; py bench/run_bench.py "$@" ;;
  mutate) setup; py scripts/mutate.py "$@" ;;
  -h|--help|help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) echo "unknown command: $cmd (try ./run.sh help)" >&2; exit 2 ;;
esac
