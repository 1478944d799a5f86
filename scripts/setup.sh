#!/usr/bin/env bash
# Install what etl and its demo need on a fresh Debian 12 machine, and with `--tests` what the test
# suite needs too: OS packages (ODBC for pyodbc), the project's virtualenv (.venv) with the test extra.
# Idempotent and quick when nothing changed. The servers themselves: scripts/services.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(unixodbc tdsodbc)
if [ "${1:-}" = "--tests" ]; then
  # chromium: headless rendering of the notebook HTML in tests/integration/test_html_render.py
  # tmux: the run's terminal display, read back from a real terminal in test_terminal_display.py
  APT_PACKAGES+=(chromium tmux)
fi

log() { printf '[setup] %s\n' "$*" >&2; }

missing=()
for package in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if (( ${#missing[@]} )); then
  log "installing OS packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # no recommended packages: chromium recommends systemd, avahi and more that nothing here uses
  install=(apt-get install -y -q --no-install-recommends "${missing[@]}")
  "${install[@]}" >&2 || { apt-get update -q >&2 && "${install[@]}" >&2; }
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

# The checkout is installed editable, so nothing compiled etl's modules the way installing a package
# does; where PYTHONDONTWRITEBYTECODE is set, every process (each `python -m etl.run`, each worker
# process of a run) would compile them from source again, about 0.1 s each. Quick when up to date;
# Python checks each compiled file against its source, so an edited module is never run stale.
.venv/bin/python -m compileall -q etl >/dev/null
