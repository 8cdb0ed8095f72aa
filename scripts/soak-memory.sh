#!/usr/bin/env bash
# Memory soak: REQUESTS distinct request ids (one per user) against one long
# sale with stock to spare, so every request is a real win — a Redis
# deduction, a journaled decision, a Kafka order, a status-board entry.
# Samples seckilld's resident memory every 5 s and prints it against the
# requests sent: with the status board bounded (status_board_len_max) it
# levels off. Usage: ./scripts/soak-memory.sh [REQUESTS] [BOARD_LEN_MAX]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_all
source scripts/services.sh
prepare

REQUESTS=${1:-2000000}
BOARD=${2:-1000000}
PORT=${SOAK_PORT:-18099}
TOKEN=soak-admin-token-0123456789
WAL="$STATE/soak-wal"
RSS="$STATE/soak-rss.txt"
rm -rf "$WAL"
say "seckilld with status_board_len_max=$BOARD; $REQUESTS distinct requests"
SECKILL_LISTEN=127.0.0.1:$PORT SECKILL_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/ \
  SECKILL_KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT SECKILL_WAL_DIR="$WAL" \
  SECKILL_ADMIN_TOKEN=$TOKEN SECKILL_REQUIRE_TOKEN=false SECKILL_RATE_USER_PER_S=0 \
  SECKILL_STATUS_BOARD_LEN_MAX=$BOARD SECKILL_LOG=warn \
  target/release/seckilld >"$STATE/soak-seckilld.log" 2>&1 &
DAEMON=$!
pids+=($DAEMON)
wait_port "$PORT"
# Resident memory (kB) and the board's size, every 5 s.
(
  while kill -0 "$DAEMON" 2>/dev/null; do
    rss=$(awk '/^VmRSS/{print $2}' "/proc/$DAEMON/status" 2>/dev/null || echo 0)
    board=$(curl -s "http://127.0.0.1:$PORT/metrics" | awk '/^seckill_status_board_requests /{print $2}')
    taken=$(curl -s "http://127.0.0.1:$PORT/metrics" | awk '/^seckill_ring_batch_events_sum /{print $2}')
    echo "$(date +%s) ${rss:-0} ${board:-0} ${taken:-0}"
    sleep 5
  done
) >"$RSS" &
SAMPLER=$!
pids+=($SAMPLER)
target/release/seckill-load --target "http://127.0.0.1:$PORT" --admin-token "$TOKEN" \
  --kafka-brokers "127.0.0.1:$KAFKA_PORT" --users "$REQUESTS" --clicks 1 \
  --stock $((REQUESTS + 1000)) --concurrency 64 --countdown-s 1 --time-max-s 1800 \
  --no-check | tail -n 12
sleep 6
say "resident memory of seckilld (MB) against the status board's size"
awk 'NR==1{t0=$1} {printf "%5ds  RSS %6.1f MB  board %9d  requests %d\n", $1-t0, $2/1024, $3, $4}' "$RSS"
