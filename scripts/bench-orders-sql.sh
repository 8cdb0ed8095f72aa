#!/usr/bin/env bash
# The order service's benchmark, same run: orders/s into PostgreSQL and
# into MariaDB through seckill-orders, batched (one transaction and one
# multi-row statement per poll batch) against one INSERT and one
# transaction per message; then the decision-to-row lag at a steady rate
# of wins. Every run gets a fresh broker (tansu, in memory), a fresh
# database and its own consumer group.
#
# Knobs: BENCH_ORDERS (200000 wins for the batched runs), BENCH_ORDERS_SINGLE
# (20000 for the one-by-one runs), BENCH_LAG_RATE (5000 wins/s),
# BENCH_LAG_SECONDS (20), BENCH_ENGINES ("postgres mariadb").
#
# orders/s = wins / (last row's updated_ms − first row's): the service's
# own writing time, without its start. The lag of a row is updated_ms −
# created_ms (written in the same transaction as the insert: the commit,
# within the batch's time).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_all
ensure_mariadb

N=${BENCH_ORDERS:-200000}
N_SINGLE=${BENCH_ORDERS_SINGLE:-20000}
RATE=${BENCH_LAG_RATE:-5000}
SECS=${BENCH_LAG_SECONDS:-20}
ENGINES=${BENCH_ENGINES:-postgres mariadb}
export DEMO_REDIS_PORT=${DEMO_REDIS_PORT:-16379}
MY_PORT=${BENCH_MARIADB_PORT:-13306}
ORDERS_PORT=${BENCH_ORDERS_PORT:-18091}
source scripts/services.sh
# A broker of its own, fresh for every run (services.sh names its own port
# KAFKA_PORT).
BROKER_PORT=${BENCH_KAFKA_PORT:-19192}

say "building seckill-orders and seckill-orders-bench (release)"
cargo build --release --quiet -p seckill-orders -p seckill-benches --bins
start_services
start_postgres

MY_DIR=$(mktemp -d /tmp/seckill-bench-mariadb.XXXXXX)
say "starting MariaDB on 127.0.0.1:$MY_PORT (data: $MY_DIR)"
root_flag=()
[ "$(id -u)" -eq 0 ] && root_flag=(--user=root)
mariadb-install-db --no-defaults --datadir="$MY_DIR/data" --auth-root-authentication-method=normal \
  --skip-test-db "${root_flag[@]}" >/dev/null
mariadbd --no-defaults --datadir="$MY_DIR/data" --port="$MY_PORT" --bind-address=127.0.0.1 \
  --socket="$MY_DIR/sock" --skip-name-resolve --skip-log-bin "${root_flag[@]}" \
  >"$MY_DIR/server.log" 2>&1 &
pids+=($!)
wait_port "$MY_PORT"
for _ in $(seq 1 100); do mariadb -h 127.0.0.1 -P "$MY_PORT" -u root -e "SELECT 1" >/dev/null 2>&1 && break; sleep 0.1; done
trap 'cleanup; rm -rf "$MY_DIR"' EXIT

broker=""
fresh_broker() {
  [ -n "$broker" ] && { kill "$broker" 2>/dev/null || true; wait "$broker" 2>/dev/null || true; }
  "$(tansu_path)" broker --listener-url "tcp://127.0.0.1:$BROKER_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$BROKER_PORT" \
    --storage-engine memory://tansu/ >"$STATE/tansu-bench.log" 2>&1 &
  broker=$!
  pids+=($broker)
  wait_port "$BROKER_PORT"
}

sql() { # engine db statement
  case "$1" in
    postgres) psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$2" -X -A -t -F ' ' -c "$3" ;;
    mariadb) mariadb -h 127.0.0.1 -P "$MY_PORT" -u root --batch --skip-column-names "$2" -e "$3" ;;
  esac
}
url() {
  case "$1" in
    postgres) echo "postgres://postgres@127.0.0.1:$PG_PORT/$2" ;;
    mariadb) echo "mysql://root@127.0.0.1:$MY_PORT/$2" ;;
  esac
}
admin_db() { case "$1" in postgres) echo postgres ;; mariadb) echo mysql ;; esac; }

service=""
start_orders() { # engine db write-mode
  SECKILL_DATABASE_URL=$(url "$1" "$2") SECKILL_DB_WRITE="$3" \
  SECKILL_ORDERS_GROUP="bench-$2" SECKILL_ORDERS_LISTEN="127.0.0.1:$ORDERS_PORT" \
  SECKILL_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/" SECKILL_KAFKA_BROKERS="127.0.0.1:$BROKER_PORT" \
  SECKILL_BACKLOG_RELEASE=false SECKILL_LOG=warn \
    target/release/seckill-orders run >>"$STATE/seckill-orders-bench.log" 2>&1 &
  service=$!
  pids+=($service)
  wait_port "$ORDERS_PORT"
}
stop_orders() { kill -TERM "$service" 2>/dev/null || true; wait "$service" 2>/dev/null || true; }

wait_rows() { # engine db count
  for _ in $(seq 1 6000); do
    n=$(sql "$1" "$2" "SELECT COUNT(*) FROM seckill_orders" 2>/dev/null || echo 0)
    [ "$n" = "$3" ] && return 0
    sleep 0.1
  done
  echo "only $n of $3 rows arrived" >&2
  return 1
}

declare -A RATE_OF
throughput() { # engine write-mode count
  local engine=$1 mode=$2 count=$3 db="bench_${1}_${2}_$RANDOM"
  fresh_broker
  sql "$engine" "$(admin_db "$engine")" "CREATE DATABASE $db" >/dev/null
  target/release/seckill-orders-bench --kafka-brokers "127.0.0.1:$BROKER_PORT" \
    --redis-url "redis://127.0.0.1:$REDIS_PORT/" --sale "$db" fill --count "$count" >&2
  start_orders "$engine" "$db" "$mode"
  wait_rows "$engine" "$db" "$count"
  local span
  span=$(sql "$engine" "$db" "SELECT MAX(updated_ms) - MIN(updated_ms) FROM seckill_orders")
  stop_orders
  local r=$(( count * 1000 / (span > 0 ? span : 1) ))
  RATE_OF["$engine/$mode"]=$r
  printf '%-9s %-7s %8d orders in %6.2f s: %7d orders/s\n' "$engine" "$mode" "$count" \
    "$(awk "BEGIN { print $span / 1000 }")" "$r"
}

lag() { # engine
  local engine=$1 db="bench_${1}_lag_$RANDOM"
  fresh_broker
  sql "$engine" "$(admin_db "$engine")" "CREATE DATABASE $db" >/dev/null
  start_orders "$engine" "$db" batch
  # The group joined before the first win is sent.
  for _ in $(seq 1 300); do
    exec 3<>"/dev/tcp/127.0.0.1/$ORDERS_PORT"
    printf 'GET /healthz HTTP/1.0\r\n\r\n' >&3
    if grep -q '"partitions_assigned":[1-9]' <&3; then exec 3>&-; break; fi
    exec 3>&-; sleep 0.1
  done
  target/release/seckill-orders-bench --kafka-brokers "127.0.0.1:$BROKER_PORT" \
    --redis-url "redis://127.0.0.1:$REDIS_PORT/" --sale "$db" pace --rate "$RATE" --seconds "$SECS" >&2
  wait_rows "$engine" "$db" $(( RATE * SECS ))
  stop_orders
  sql "$engine" "$db" "SELECT updated_ms - created_ms FROM seckill_orders" | python3 -c '
import sys
v = sorted(int(l) for l in sys.stdin if l.strip())
q = lambda p: v[min(len(v) - 1, int(p * len(v)))]
print(f"{sys.argv[1]:<9} lag at {sys.argv[2]} wins/s over {len(v)} rows: p50 {q(0.5)} ms, p99 {q(0.99)} ms, max {v[-1]} ms")
' "$engine" "$RATE"
}

say "orders/s through seckill-orders (same run)"
for e in $ENGINES; do
  throughput "$e" batch "$N"
  throughput "$e" single "$N_SINGLE"
  printf '%-9s batched / one by one: %.1fx\n' "$e" \
    "$(awk "BEGIN { print ${RATE_OF[$e/batch]} / ${RATE_OF[$e/single]} }")"
done
say "decision-to-row lag at $RATE wins/s"
for e in $ENGINES; do lag "$e"; done
