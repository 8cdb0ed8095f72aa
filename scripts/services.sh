#!/usr/bin/env bash
# Starts (or reuses) the local Redis and Kafka-protocol broker the demo and
# the benchmarks use, on loopback. Sourced; `stop_services` ends what it
# started.
REDIS_PORT=${DEMO_REDIS_PORT:-16379}
KAFKA_PORT=${DEMO_KAFKA_PORT:-19092}
STATE=${SECKILL_STATE_DIR:-.seckill}
mkdir -p "$STATE"
started_pids=()
REDIS_PID=""   # set when this script started redis-server itself

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
  for _ in $(seq 1 200); do port_open "$1" && return 0; sleep 0.1; done
  echo "nothing listens on port $1" >&2; return 1
}

start_services() {
  if port_open "$REDIS_PORT"; then
    say "reusing Redis on 127.0.0.1:$REDIS_PORT"
  else
    say "starting redis-server on 127.0.0.1:$REDIS_PORT"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
      --dir "$STATE" --logfile "$PWD/$STATE/redis.log" &
    REDIS_PID=$!
    started_pids+=($REDIS_PID)
    wait_port "$REDIS_PORT"
  fi
  if port_open "$KAFKA_PORT"; then
    say "reusing the Kafka-protocol broker on 127.0.0.1:$KAFKA_PORT"
  else
    say "starting the tansu broker on 127.0.0.1:$KAFKA_PORT (in-memory storage)"
    "$(tansu_path)" broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
      --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
      --storage-engine memory://tansu/ >"$STATE/tansu.log" 2>&1 &
    started_pids+=($!)
    wait_port "$KAFKA_PORT"
  fi
}

# A PostgreSQL of the demo's own (initdb in a fresh directory, a loopback
# port): the order service's database. PostgreSQL refuses to run as root,
# so as root the server runs as the `postgres` user the package created.
PG_PORT=${DEMO_PG_PORT:-15432}
PG_DIR=""
start_postgres() {
  local bin run=()
  bin=$(pg_bindir) || { echo "PostgreSQL's initdb not found" >&2; return 1; }
  PG_DIR=$(mktemp -d /tmp/seckill-demo-pg.XXXXXX)
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres:postgres "$PG_DIR"
    run=(runuser -u postgres --)
  fi
  say "starting PostgreSQL on 127.0.0.1:$PG_PORT (data: $PG_DIR)"
  "${run[@]}" "$bin/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
  "${run[@]}" "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w \
    -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1" start >/dev/null
  PG_STOP=("${run[@]}" "$bin/pg_ctl" -D "$PG_DIR/data" -m fast stop)
}

# nginx with the shipped configuration (docs/deploy/nginx.conf) on
# 127.0.0.1:$1 in front of the daemons on the other ports: only its
# upstream `server` lines and its `listen` line are replaced.
start_nginx() {
  local port=$1 dir servers="" bin
  shift
  for p in "$@"; do servers="$servers    server 127.0.0.1:$p max_fails=1 fail_timeout=5s;\n"; done
  case $STATE in /*) dir="$STATE/nginx" ;; *) dir="$PWD/$STATE/nginx" ;; esac
  rm -rf "$dir" && mkdir -p "$dir"
  awk -v servers="$servers" -v port="$port" '
    /^[[:space:]]*server 127\.0\.0\.1:/ { if (!done) { printf "%s", servers; done = 1 } next }
    /^[[:space:]]*listen 80;/ { print "    listen 127.0.0.1:" port ";"; next }
    { print }' docs/deploy/nginx.conf >"$dir/site.conf"
  printf '%s\n' "daemon off;" "worker_processes auto;" "pid $dir/nginx.pid;" \
    "error_log $dir/error.log;" "events { worker_connections 4096; }" "http {" \
    "  access_log off;" "  client_body_temp_path $dir/body;" \
    "  proxy_temp_path $dir/proxy;" "  fastcgi_temp_path $dir/fastcgi;" \
    "  uwsgi_temp_path $dir/uwsgi;" "  scgi_temp_path $dir/scgi;" \
    "  include $dir/site.conf;" "}" >"$dir/nginx.conf"
  bin=$(command -v nginx || echo /usr/sbin/nginx)
  "$bin" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" &
  pids+=($!)
  wait_port "$port"
}

# Rows of the order service's table by state, as `state  count` lines.
pg_rows_by_state() {
  psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -X -A -t -F '  ' \
    -c "SELECT state, COUNT(*) FROM seckill_orders GROUP BY state ORDER BY state"
}

stop_services() {
  for p in "${started_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "$PG_DIR" ]; then
    "${PG_STOP[@]}" >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
  fi
}

# Processes the calling script starts (daemons, baselines), ended on exit
# together with the services.
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  stop_services
}
trap cleanup EXIT

# Waits (at most 60 s) until the box is at least 75 % idle over a second:
# after a burst of wins the broker and Redis keep a core busy for a while,
# and a run started then measures their catch-up, not the server.
quiet() {
  python3 -c "
import time
def cpu():
    with open('/proc/stat') as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[3] + v[4], sum(v)
for _ in range(60):
    i0, t0 = cpu(); time.sleep(1); i1, t1 = cpu()
    if t1 > t0 and (i1 - i0) / (t1 - t0) >= 0.75:
        break
"
}
# Builds the release binaries and starts the services.
prepare() {
  say "building seckilld, seckill-orders, seckill-load, seckill-bare, seckill-naive and seckill-replay (release)"
  cargo build --release --quiet -p seckill-io -p seckill-orders -p seckill-benches -p seckill-replay-cli --bins
  start_services
}
