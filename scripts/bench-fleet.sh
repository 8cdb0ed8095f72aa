#!/usr/bin/env bash
# A fleet against one daemon, in the same run and on the same Redis and
# broker: the same sale played (1) against one daemon directly, (2)
# through nginx (the shipped configuration) in front of that one daemon,
# (3) through nginx in front of FLEET_DAEMONS (3) daemons. Prints each
# run's throughput and p99 and the ratios against (1).
#
#   ./scripts/bench-fleet.sh            # FLEET_USERS (50000) × 2 clicks, stock 1000
#
# On a 2-core machine every daemon, nginx, Redis, the broker and the load
# generator share the same two cores: this measures what the fleet's
# extra hop and peers cost, not how it scales (see docs/deploy.md).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_all
USERS=${FLEET_USERS:-50000}
DAEMONS=${FLEET_DAEMONS:-3}
CONC=${FLEET_CONCURRENCY:-64}
BASE_PORT=${FLEET_HTTP_PORT:-18180}
TOKEN=fleet-admin-token
TOKEN_KEY=$(od -An -N32 -tx1 /dev/urandom | tr -d " \n")
source scripts/services.sh
prepare

# start_daemons N: N daemons on BASE_PORT+1 … BASE_PORT+N, each the others'
# peer; their pids in `running`.
running=()
start_daemons() {
  local n=$1 port peers other
  running=()
  for i in $(seq 1 "$n"); do
    port=$((BASE_PORT + i))
    peers=""
    for j in $(seq 1 "$n"); do
      other=$((BASE_PORT + j))
      [ "$other" = "$port" ] || peers="${peers:+$peers,}127.0.0.1:$other"
    done
    rm -rf "$STATE/fleet-wal-$i"
    SECKILL_LISTEN="127.0.0.1:$port" SECKILL_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/" \
    SECKILL_KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT" SECKILL_WAL_DIR="$STATE/fleet-wal-$i" \
    SECKILL_ADMIN_TOKEN="$TOKEN" SECKILL_TOKEN_KEY="$TOKEN_KEY" SECKILL_PEERS="$peers" \
    SECKILL_TRUSTED_PROXIES=1 SECKILL_WORKER_THREADS=2 SECKILL_LOG=warn \
      target/release/seckilld >"$STATE/fleet-seckilld-$i.log" 2>&1 &
    running+=($!)
    pids+=($!)
  done
  for i in $(seq 1 "$n"); do wait_port $((BASE_PORT + i)); done
}

stop_daemons() {
  kill -TERM "${running[@]}" 2>/dev/null || true
  for p in "${running[@]}"; do wait "$p" 2>/dev/null || true; done
}

# play LABEL URL: one sale through URL; prints "LABEL rps p99_us ok".
play() {
  local out
  out=$(target/release/seckill-load --target "$2" --admin-token "$TOKEN" \
    --redis-url "redis://127.0.0.1:$REDIS_PORT/" --kafka-brokers "127.0.0.1:$KAFKA_PORT" \
    --users "$USERS" --clicks 2 --stock 1000 --items 1 --concurrency "$CONC" \
    --countdown-s 2 --json)
  python3 -c '
import json, sys
v = json.load(sys.stdin)
r = v["report"]
ok = "OK" if not v["check"]["violations"] else "VIOLATIONS"
print(sys.argv[1], round(r["requests_per_sec"]), r["latency"]["p99_us"], ok)
' "$1" <<<"$out" | tee /dev/stderr
}

results=()
start_daemons 1
results+=("$(play "1-direct" "http://127.0.0.1:$((BASE_PORT + 1))")")
start_nginx "$BASE_PORT" $((BASE_PORT + 1))
results+=("$(play "1-nginx" "http://127.0.0.1:$BASE_PORT")")
kill "${pids[-1]}" 2>/dev/null || true
wait "${pids[-1]}" 2>/dev/null || true
stop_daemons
sleep 1

start_daemons "$DAEMONS"
nginx_ports=()
for i in $(seq 1 "$DAEMONS"); do nginx_ports+=($((BASE_PORT + i))); done
start_nginx "$BASE_PORT" "${nginx_ports[@]}"
results+=("$(play "$DAEMONS-nginx" "http://127.0.0.1:$BASE_PORT")")
stop_daemons

say "the same sale ($USERS users × 2 clicks, 1,000 units, $CONC connections)"
printf '%s\n' "${results[@]}" | python3 -c '
import sys
rows = [l.split() for l in sys.stdin if l.strip()]
base = float(rows[0][1])
print("%-10s %8s %7s %9s  check" % ("setup", "req/s", "p99 ms", "/ direct"))
for label, rps, p99, ok in rows:
    print(f"{label:<10} {int(rps):>8} {int(p99)/1000:>7.1f} {float(rps)/base:>8.2f}x  {ok}")
'
