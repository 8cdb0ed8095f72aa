#!/usr/bin/env bash
# A local flash sale you can watch: starts (or reuses) Redis and a
# Kafka-protocol broker on loopback, starts a PostgreSQL of its own and the
# order service (seckill-orders) on it, starts seckilld, creates a sale,
# lets simulated users race for it, and prints the outcome counts, the
# invariant check and the order rows by state. Ctrl-C stops everything it
# started.
#
# Knobs (environment): DEMO_USERS (20000), DEMO_CLICKS (2), DEMO_STOCK (500),
# DEMO_ITEMS (1), DEMO_CONCURRENCY (64), DEMO_REDIS_PORT (16379),
# DEMO_KAFKA_PORT (19092), DEMO_HTTP_PORT (18080), DEMO_PG_PORT (15432),
# DEMO_ORDERS_PORT (18090), DEMO_DAEMONS (1; N > 1: N daemons behind
# nginx on DEMO_HTTP_PORT, the daemons on the ports after it), DEMO_COUNTDOWN_S (3: the
# sale starts this long after it is created; give yourself 30 to open the
# dashboard first), DEMO_KEEP (unset: stop after the sale; 1: keep the
# daemon and its dashboard up until Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_all

USERS=${DEMO_USERS:-20000}
CLICKS=${DEMO_CLICKS:-2}
STOCK=${DEMO_STOCK:-500}
ITEMS=${DEMO_ITEMS:-1}
CONC=${DEMO_CONCURRENCY:-64}
HTTP_PORT=${DEMO_HTTP_PORT:-18080}
TOKEN=demo-admin-token
COUNTDOWN=${DEMO_COUNTDOWN_S:-3}
# A read-only token for the live dashboard (/dashboard), new every run.
DASHBOARD_TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d " \n")
TOKEN_KEY=$(od -An -N32 -tx1 /dev/urandom | tr -d " \n")
ORDERS_PORT=${DEMO_ORDERS_PORT:-18090}
DAEMONS=${DEMO_DAEMONS:-1}
source scripts/services.sh
prepare
start_postgres

say "starting seckill-orders on 127.0.0.1:$ORDERS_PORT (log: $STATE/seckill-orders.log)"
SECKILL_DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres" \
SECKILL_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/" \
SECKILL_KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT" \
SECKILL_ORDERS_LISTEN="127.0.0.1:$ORDERS_PORT" \
  target/release/seckill-orders run >"$STATE/seckill-orders.log" 2>&1 &
pids+=($!)
wait_port "$ORDERS_PORT"

# One daemon serves 127.0.0.1:$HTTP_PORT itself; with DEMO_DAEMONS=N > 1,
# N daemons serve $HTTP_PORT+1 … $HTTP_PORT+N (each the others' peer)
# behind an nginx on $HTTP_PORT with the shipped configuration.
daemons=()
ports=()
if [ "$DAEMONS" -gt 1 ]; then
  for n in $(seq 1 "$DAEMONS"); do ports+=($((HTTP_PORT + n))); done
else
  ports=("$HTTP_PORT")
fi
for n in "${!ports[@]}"; do
  port=${ports[$n]}
  peers=""
  for other in "${ports[@]}"; do
    [ "$other" = "$port" ] || peers="${peers:+$peers,}127.0.0.1:$other"
  done
  say "starting seckilld on 127.0.0.1:$port (log: $STATE/seckilld-$n.log)"
  rm -rf "$STATE/wal-$n"
  SECKILL_LISTEN="127.0.0.1:$port" \
  SECKILL_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/" \
  SECKILL_KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT" \
  SECKILL_WAL_DIR="$STATE/wal-$n" \
  SECKILL_ADMIN_TOKEN="$TOKEN" SECKILL_TOKEN_KEY="$TOKEN_KEY" \
  SECKILL_DASHBOARD_TOKEN="$DASHBOARD_TOKEN" \
  SECKILL_PEERS="$peers" \
  SECKILL_TRUSTED_PROXIES="$([ "$DAEMONS" -gt 1 ] && echo 1 || true)" \
  SECKILL_SHUTDOWN_DRAIN_MS="$([ "$DAEMONS" -gt 1 ] && echo 2000 || echo 0)" \
    target/release/seckilld >"$STATE/seckilld-$n.log" 2>&1 &
  daemons+=($!)
  pids+=($!)
done
for port in "${ports[@]}"; do wait_port "$port"; done
if [ "$DAEMONS" -gt 1 ]; then
  start_nginx "$HTTP_PORT" "${ports[@]}"
  say "nginx on 127.0.0.1:$HTTP_PORT in front of $DAEMONS daemons (round robin)"
fi
say "live dashboard: http://127.0.0.1:${ports[0]}/dashboard  (token: $DASHBOARD_TOKEN)"

say "flash sale: $USERS users × $CLICKS clicks for $ITEMS item(s) × $STOCK units"
status=0
target/release/seckill-load \
  --target "http://127.0.0.1:$HTTP_PORT" --admin-token "$TOKEN" \
  --redis-url "redis://127.0.0.1:$REDIS_PORT/" --kafka-brokers "127.0.0.1:$KAFKA_PORT" \
  --users "$USERS" --clicks "$CLICKS" --stock "$STOCK" --items "$ITEMS" \
  --concurrency "$CONC" --countdown-s "$COUNTDOWN" || status=$?

say "daemon counters (GET /metrics of the first daemon)"
exec 3<>"/dev/tcp/127.0.0.1/${ports[0]}"
printf 'GET /metrics HTTP/1.0\r\nHost: demo\r\n\r\n' >&3
grep -E '^seckill_(requests|redis_(calls|requests)|wal_commits|kafka_acked|ring_batch_len_max)' <&3 | grep -v ' 0$' || true
exec 3>&-

say "order rows in PostgreSQL by state (seckill-orders; once they stop moving)"
rows=0 same=0
for _ in $(seq 1 150); do
  now=$(psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -X -A -t \
    -c "SELECT COUNT(*) FROM seckill_orders" 2>/dev/null || echo 0)
  if [ "$now" = "$rows" ] && [ "$now" != 0 ]; then same=$((same + 1)); else same=0; fi
  rows=$now
  [ "$same" -ge 5 ] && break
  sleep 0.2
done
pg_rows_by_state | sed 's/^/    /'
echo "    rows: $rows (one per win; GET http://127.0.0.1:$ORDERS_PORT/api/v1/users/user-0/orders lists a user's)"

if [ -n "${DEMO_KEEP:-}" ]; then
  say "the sale is over; the dashboard stays at http://127.0.0.1:${ports[0]}/dashboard (token: $DASHBOARD_TOKEN) until Ctrl-C"
  wait "${daemons[0]}" || true
fi
say "stopping seckilld (SIGTERM: drain the ring, flush the WAL and Kafka)"
kill -TERM "${daemons[@]}" 2>/dev/null || true
for d in "${daemons[@]}"; do wait "$d" || true; done
exit "$status"
