#!/usr/bin/env bash
# The demo end to end: set up, start the local servers, load the Chinook customers into MongoDB,
# migrate them to DynamoDB and PostgreSQL with jobs/demo.yaml, validate both, print the report.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/shared_data.sh

scripts/setup.sh
scripts/services.sh up
.venv/bin/python scripts/load_demo_data.py

export ETL_MONGO_URI=${ETL_MONGO_URI:-mongodb://127.0.0.1:${ETL_MONGO_PORT:-27017}/?directConnection=true}
export ETL_DYNAMODB_ENDPOINT=${ETL_DYNAMODB_ENDPOINT:-http://127.0.0.1:${ETL_DYNAMODB_PORT:-8001}}
export ETL_PG_DSN=${ETL_PG_DSN:-host=${ETL_PG_HOST:-127.0.0.1} port=${ETL_PG_PORT:-5432} user=postgres dbname=etl_demo}
# A fixed key for the demo's HMAC of e-mail addresses; real jobs take it from ${secret:...}.
export ETL_DEMO_HMAC_KEY=${ETL_DEMO_HMAC_KEY:-demo-only-hmac-key}
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-local} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-local}
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
.venv/bin/python -m etl.run jobs/demo.yaml --full-refresh "$@"
