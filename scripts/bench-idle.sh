#!/usr/bin/env bash
# What an idle seckilld costs: a release daemon with Redis and the broker
# up, a sale of IDLE_ITEMS (500) items loaded and every item with wins (so
# the sweeper and the outbox publisher have all of them to look at, and
# the dashboard lists 200), no traffic; CPU of the daemon, and of Redis,
# over IDLE_SECONDS (30) from /proc/<pid>/stat (utime + stime), as a share
# of one core. Run once with no dashboard viewer and once with
# IDLE_VIEWERS (5) event streams open. IDLE_STOCK=1 sells every item out
# (the default 2 leaves every item on sale).
#
#   ./scripts/bench-idle.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_all
SECONDS_IDLE=${IDLE_SECONDS:-30}
VIEWERS=${IDLE_VIEWERS:-5}
HTTP_PORT=${IDLE_HTTP_PORT:-18094}
TOKEN=idle-admin-token
source scripts/services.sh
prepare

rm -rf "$STATE/idle-wal"
SECKILL_LISTEN="127.0.0.1:$HTTP_PORT" SECKILL_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/" \
SECKILL_KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT" SECKILL_WAL_DIR="$STATE/idle-wal" \
SECKILL_ADMIN_TOKEN="$TOKEN" SECKILL_REQUIRE_TOKEN=false SECKILL_LOG=warn \
  target/release/seckilld >"$STATE/idle-seckilld.log" 2>&1 &
daemon=$!
pids+=($daemon)
wait_port "$HTTP_PORT"
ITEMS=${IDLE_ITEMS:-500}
say "a $ITEMS-item sale, one win on every item"
target/release/seckill-load --target "http://127.0.0.1:$HTTP_PORT" --admin-token "$TOKEN" \
  --redis-url "redis://127.0.0.1:$REDIS_PORT/" --kafka-brokers "127.0.0.1:$KAFKA_PORT" \
  --items "$ITEMS" --stock "${IDLE_STOCK:-2}" --users "$ITEMS" --clicks 1 --countdown-s 1 --json >/dev/null
sleep 5

redis_pid=$(pgrep -f "redis-server .*:$REDIS_PORT" | head -1 || true)
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
measure() { # label
  local t0 t1 r0 r1 hz
  hz=$(getconf CLK_TCK)
  t0=$(ticks "$daemon") r0=$(ticks "${redis_pid:-0}")
  sleep "$SECONDS_IDLE"
  t1=$(ticks "$daemon") r1=$(ticks "${redis_pid:-0}")
  python3 -c "print(f'idle, $1: seckilld {100 * ($t1 - $t0) / $hz / $SECONDS_IDLE:.2f} %, redis-server {100 * ($r1 - $r0) / $hz / $SECONDS_IDLE:.2f} % of one core over $SECONDS_IDLE s')"
}
measure "no dashboard viewer"
vpids=()
for _ in $(seq "$VIEWERS"); do
  curl -sN -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$HTTP_PORT/dashboard/events" >/dev/null &
  vpids+=($!)
  pids+=($!)
done
sleep 2
measure "$VIEWERS dashboard viewers"
