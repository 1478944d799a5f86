#!/usr/bin/env bash
# The whole test suite: set up, type-check etl (mypy, configured in pyproject.toml), start the local
# servers, run pytest, stop the servers. A type error fails the run before any server starts.
# Extra arguments go to pytest. ETL_KEEP_SERVERS=1 leaves the servers running afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/shared_data.sh

scripts/setup.sh --tests
.venv/bin/mypy
scripts/services.sh up
if [ "${ETL_KEEP_SERVERS:-0}" != 1 ]; then
  trap 'scripts/services.sh down' EXIT
fi
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-local} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-local}
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
# pytest exits 5 when it collected no test: that is a failure here, and set -e keeps it one.
.venv/bin/python -m pytest "$@"
