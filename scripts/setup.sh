#!/usr/bin/env bash
# Install everything etl, its tests and its demo need on a fresh Debian 12 machine:
# OS packages (ODBC for pyodbc), the project's virtualenv (.venv) with the test extra.
# Idempotent and quick when nothing changed. The servers themselves: scripts/services.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

# chromium: headless rendering of the notebook HTML in tests/integration/test_html_render.py
APT_PACKAGES=(unixodbc tdsodbc chromium)

log() { printf '[setup] %s\n' "$*" >&2; }

missing=()
for package in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if (( ${#missing[@]} )); then
  log "installing OS packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${missing[@]}" >&2 || { apt-get update -q >&2 && apt-get install -y -q "${missing[@]}" >&2; }
fi

if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  python3 -m venv .venv
fi
# Reinstall only when the dependency list changed since the last install.
stamp=.venv/.etl-installed
inputs=(pyproject.toml)
[ -f requirements.lock ] && inputs+=(requirements.lock)
if [ ! -f "$stamp" ] || [ -n "$(find "${inputs[@]}" -newer "$stamp")" ]; then
  log "installing etl and its test dependencies into .venv"
  if [ -f requirements.lock ]; then
    .venv/bin/pip install -q -r requirements.lock 2> >(grep -v "is ignored" >&2)
    .venv/bin/pip install -q --no-deps -e . 2> >(grep -v "is ignored" >&2)
  else
    .venv/bin/pip install -q -e '.[test,bench]' 2> >(grep -v "is ignored" >&2)
  fi
  touch "$stamp"
fi
