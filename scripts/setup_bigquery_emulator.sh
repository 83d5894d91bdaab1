#!/usr/bin/env bash
# Install the local BigQuery emulator (local-bigquery) into its own venv.
#
# Usage: scripts/setup_bigquery_emulator.sh
#
# - venv: <repo>/.emulators/bigquery-venv, built with pyenv's Python 3.13.x
#   (found via "$(pyenv root)/versions/3.13.*/bin/python3"; PYTHON313=/path overrides).
# - pins local-bigquery 0.4.0 + duckdb 1.5.5 + the ducklake/icu/spatial extension wheels,
#   and copies their .duckdb_extension files to $HOME/.duckdb/extensions/v1.5.5/linux_amd64/
#   so DuckDB never tries to download them (no internet here). That folder is per DuckDB version and
#   shared by every checkout: a file already there with the same bytes is never rewritten, and a
#   different one replaces it by a rename, so emulators already running (which map those files) are
#   never disturbed by another checkout's set-up (`install-extension SRC DIR` does one file).
# - idempotent: a marker file records what was installed; a second run exits in well
#   under a second. Delete .emulators/bigquery-venv to force a reinstall.
# Then: scripts/bigquery_emulator.sh start
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/emulator.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/emulator.sh" setup_bigquery_emulator  # ROOT, STATE, die, hold_lock
# shellcheck source-path=SCRIPTDIR source=lib/python.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/python.sh"  # pyenv_python

VENV="$STATE/bigquery-venv"
DUCKDB_VERSION=1.5.5
# DuckDB extensions the emulator loads: ducklake (storage), icu (time zones), spatial
# (its GEOGRAPHY macros are created at the first request; without it every call fails).
EXTENSIONS=(ducklake icu spatial)
PACKAGES=(local-bigquery==0.4.0 "duckdb==$DUCKDB_VERSION")
for ext in "${EXTENSIONS[@]}"; do PACKAGES+=("duckdb-extension-$ext==$DUCKDB_VERSION"); done
EXT_DIR="$HOME/.duckdb/extensions/v$DUCKDB_VERSION/linux_amd64"
MARKER="$VENV/.setup-done"
WANT="${PACKAGES[*]}"

# Put one extension file in place without touching the one a running emulator has mapped: a file with
# the same bytes is left alone; a different one is written beside it and renamed over it (a new inode:
# running emulators keep the old one; `cp -f` rewrote it in place and crashed them, SIGBUS).
install_extension() {  # install_extension SRC_FILE DEST_DIR
    local src=$1 dest tmp
    dest="$2/$(basename "$1")"
    if [[ -f "$dest" ]] && cmp -s "$src" "$dest"; then return 0; fi
    tmp="$(mktemp "$2/.$(basename "$1").XXXXXX")"
    if ! { cp "$src" "$tmp" && chmod 644 "$tmp" && mv -f "$tmp" "$dest"; }; then rm -f "$tmp"; return 1; fi
}
if [[ "${1:-}" == install-extension ]]; then install_extension "$2" "$3"; exit; fi

# Fast path: everything already in place.
installed() {
    [[ -f "$MARKER" && "$(cat "$MARKER")" == "$WANT" && -x "$VENV/bin/local-bigquery" ]] || return 1
    for ext in "${EXTENSIONS[@]}"; do [[ -f "$EXT_DIR/$ext.duckdb_extension" ]] || return 1; done
}
installed && exit 0

# One install at a time; re-check once we hold the lock.
hold_lock "$STATE/bigquery-setup.lock" 600 setup
installed && exit 0

# Find Python 3.13 (local-bigquery needs >= 3.13).
PY="${PYTHON313:-$(pyenv_python 3.13)}"
[[ -n "$PY" ]] || die "no Python 3.13 found as $(pyenv_root)/versions/3.13.*/bin/python3; run 'pyenv install 3.13' or set PYTHON313=/path/to/python3.13"
"$PY" -c 'import sys; assert sys.version_info[:2] >= (3, 13)' 2>/dev/null \
    || die "$PY is not Python >= 3.13"

echo "setup_bigquery_emulator: venv $VENV (python: $PY)"
if [[ ! -x "$VENV/bin/python" ]]; then
    "$PY" -m venv --clear "$VENV" || die "could not create venv at $VENV"
fi
rm -f "$MARKER"
# local-bigquery 0.4.0 declares duckdb>=2.0.0, but only 1.5.5 has the extension wheels, and
# it works with 1.5.5. So: install it without deps, then its other declared deps + the pins.
# (stderr filter: this machine's pip.conf names local index folders that lack most packages,
# and pip reports the deliberate duckdb downgrade as a conflict.)
pip_install() {
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@" \
        2> >(grep -v -e "is ignored: it is neither a file" -e "dependency resolver does not currently" \
                     -e "requires duckdb>=2" >&2)
}
pip_install --no-deps "${PACKAGES[0]}" || die "pip install ${PACKAGES[0]} failed"
mapfile -t DEPS < <("$VENV/bin/python" -c '
from importlib.metadata import requires
print("\n".join(r for r in requires("local-bigquery") if not r.lower().startswith("duckdb")))')
[[ ${#DEPS[@]} -gt 0 ]] || die "could not read local-bigquery's dependencies"
pip_install "${DEPS[@]}" "${PACKAGES[@]:1}" || die "pip install failed: ${DEPS[*]} ${PACKAGES[*]:1}"
"$VENV/bin/local-bigquery" --help >/dev/null 2>&1 || die "local-bigquery does not run in $VENV"

# Copy DuckDB extensions out of the wheels.
mkdir -p "$EXT_DIR"
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
for ext in "${EXTENSIONS[@]}"; do
    f="$(find "$SITE" -name "$ext.duckdb_extension" -print -quit)"
    [[ -n "$f" ]] || die "$ext.duckdb_extension not found under $SITE"
    install_extension "$f" "$EXT_DIR" || die "could not install $f into $EXT_DIR"
done
"$VENV/bin/python" -c '
import sys, duckdb
con = duckdb.connect()
for ext in sys.argv[1:]:
    con.execute(f"LOAD {ext}")' "${EXTENSIONS[@]}" \
    || die "DuckDB cannot load the extensions ${EXTENSIONS[*]} from $EXT_DIR"

echo "$WANT" > "$MARKER"
echo "setup_bigquery_emulator: ready: ${PACKAGES[*]} in $VENV"
