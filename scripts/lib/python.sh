# shellcheck shell=bash
# Finding an installed Python: the newest of one version that pyenv holds. Sourced by run.sh (a new venv's
# interpreter), scripts/smoke_pythons.sh (the other supported versions) and scripts/setup_bigquery_emulator.sh
# (3.13 for the emulator's own venv).

pyenv_root() {  # pyenv's folder: `pyenv root` when pyenv is on PATH, else its usual place
    # shellcheck disable=SC2015  # `pyenv root` failing falls back to the usual place too
    command -v pyenv >/dev/null 2>&1 && pyenv root || echo "${PYENV_ROOT:-$HOME/.pyenv}"
}

pyenv_python() {  # pyenv_python X.Y: the python3 of the newest X.Y.* pyenv holds, or nothing
    # shellcheck disable=SC2012  # version folders: plain names
    ls -d "$(pyenv_root)/versions/$1".*/bin/python3 2>/dev/null | sort -V | tail -n 1 || true
}
