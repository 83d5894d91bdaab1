#!/usr/bin/env bash
# A smoke import on the other supported Pythons (the tests run on the first one, 3.11): for each version
# given (default 3.12 3.13), a venv of its own from the same pins (.venv-pyX.Y, via run.sh's RLVT_VENV),
# then a dry-run import of the bundled example, which must end with every record accounted for.
# A version not installed on the machine is reported and skipped; a failure stops with its output.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source-path=SCRIPTDIR source=lib/python.sh
source scripts/lib/python.sh  # pyenv_python
versions=("$@"); [ ${#versions[@]} -gt 0 ] || versions=(3.12 3.13)
for v in "${versions[@]}"; do
  python=""  # on PATH (a pyenv shim answers only for its active versions), else in pyenv's versions
  if command -v "python$v" >/dev/null 2>&1 && "python$v" -c '' 2>/dev/null; then python=$(command -v "python$v"); fi
  [ -n "$python" ] || python=$(pyenv_python "$v")
  if [ -z "$python" ]; then echo "smoke: Python $v is not installed here: skipped" >&2; continue; fi
  started=$(date +%s)
  out=$(PYTHON="$python" RLVT_VENV="$PWD/.venv-py$v" ./run.sh import --input 'examples/*.ndjson.gz' --dry_run 2>&1) || {
    echo "$out" | tail -n 40 >&2; echo "smoke: the dry-run import failed on Python $v ($python)" >&2; exit 1; }
  grep -q "every record accounted for" <<<"$out" || {
    echo "$out" | tail -n 40 >&2; echo "smoke: no balanced report on Python $v" >&2; exit 1; }
  echo "smoke: Python $v ($("$PWD/.venv-py$v/bin/python" -V 2>&1)): dry-run import of the example balanced" \
       "in $(( $(date +%s) - started )) s, set-up included" >&2
done
