#!/usr/bin/env bash
# The importer's one entry point. Sets up what it needs on first use (a venv from pinned requirements).
#
#   ./run.sh                 import the bundled example export (examples/) and print the summary
#   ./run.sh import FLAGS…   run an import (python -m pipeline FLAGS…); ./run.sh import --help lists flags
#   ./run.sh test [ARGS…]    set up and run the whole test suite (ARGS go to pytest)
#   ./run.sh bench [ARGS…]   run the benchmark (bench/run_bench.py)
#   ./run.sh setup           only set up the venv
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV="$ROOT/.venv"

find_python() {
  for candidate in python3.11 "$(command -v pyenv >/dev/null 2>&1 && echo "$(pyenv root)/versions/3.11"*/bin/python3 | awk '{print $1}')" python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      command -v "$candidate"; return 0
    fi
  done
  echo "error: Python 3.11 is needed (Beam 2.77 and the pinned wheels); none found on PATH or in pyenv" >&2
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

py() { "$VENV/bin/python" "$@"; }

cmd=${1:-example}
[ $# -gt 0 ] && shift
case "$cmd" in
  setup) setup ;;
  example)
    setup
    out="$ROOT/out/example"
    echo "importing examples/*.ndjson.gz into $out (file sink)…" >&2
    py -m pipeline --input "$ROOT/examples/*.ndjson.gz" --datasource_id 61a095fdd8d2e20011544831 \
      --output_dir "$out" "$@"
    ;;
  import) setup; py -m pipeline "$@" ;;
  test)
    setup
    set +e
    py -m pytest "$@"
    code=$?
    set -e
    exit $code
    ;;
  bench) setup; py bench/run_bench.py "$@" ;;
  -h|--help|help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) echo "unknown command: $cmd (try ./run.sh help)" >&2; exit 2 ;;
esac
