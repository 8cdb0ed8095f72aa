#!/usr/bin/env bash
# The proof for the whole system: plays a named flash sale (seckill-load
# --scenario) against seckilld, then against seckill-naive (the idiomatic
# baseline: one EVALSHA per request on a multiplexed connection, one
# awaited Kafka send per win, no ring, no journal), then the same load
# against seckill-bare (a bare hyper server answering a constant JSON: the
# ingress ceiling), in the same run on the same box, and prints all three
# and the ratios.
#
#   ./scripts/bench-ingress.sh [hot-item|sold-out-storm|many-items|all-win|degraded|dashboard] ...
#
# `dashboard` plays hot-item against seckilld alone, with no dashboard
# viewer and with BENCH_VIEWERS (5) event streams open, alternating, two
# rounds each: the live dashboard's cost on the hot path.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_all
SCENARIOS=("$@")
[ "${#SCENARIOS[@]}" -gt 0 ] || SCENARIOS=(hot-item sold-out-storm)
# Open connections of the load generator. A flash sale has far more
# clients than this; 256 is where seckilld's throughput stops growing on a
# 2-core box (the daemon is saturated, so its ring batches fill).
CONC=${BENCH_CONCURRENCY:-256}
# The half-rate runs are paced (--rate), so few requests are in flight; 64
# connections are plenty and keep the client's own overhead out of the tail.
HALF_CONC=${BENCH_HALF_CONCURRENCY:-64}
HTTP_PORT=${BENCH_HTTP_PORT:-18090}
BARE_PORT=${BENCH_BARE_PORT:-18091}
NAIVE_PORT=${BENCH_NAIVE_PORT:-18092}
# seckilld again with durability = "os" (page cache only): the fsync's cost.
OS_PORT=${BENCH_OS_PORT:-18093}
TOKEN=bench-admin-token
TOKEN_KEY=$(od -An -N32 -tx1 /dev/urandom | tr -d " \n")
source scripts/services.sh
prepare

rm -rf "$STATE/bench-wal"
SECKILL_LISTEN="127.0.0.1:$HTTP_PORT" SECKILL_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/" \
SECKILL_KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT" SECKILL_WAL_DIR="$STATE/bench-wal" \
SECKILL_ADMIN_TOKEN="$TOKEN" SECKILL_TOKEN_KEY="$TOKEN_KEY" SECKILL_LOG=warn \
  target/release/seckilld >"$STATE/bench-seckilld.log" 2>&1 &
pids+=($!)
rm -rf "$STATE/bench-wal-os"
SECKILL_LISTEN="127.0.0.1:$OS_PORT" SECKILL_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/" \
SECKILL_KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT" SECKILL_WAL_DIR="$STATE/bench-wal-os" \
SECKILL_ADMIN_TOKEN="$TOKEN" SECKILL_TOKEN_KEY="$TOKEN_KEY" SECKILL_LOG=warn SECKILL_DURABILITY=os \
  target/release/seckilld >"$STATE/bench-seckilld-os.log" 2>&1 &
pids+=($!)
target/release/seckill-bare --listen "127.0.0.1:$BARE_PORT" >/dev/null 2>&1 &
pids+=($!)
SECKILL_LISTEN="127.0.0.1:$NAIVE_PORT" SECKILL_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/" \
SECKILL_KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT" SECKILL_ADMIN_TOKEN="$TOKEN" \
  target/release/seckill-naive >"$STATE/bench-naive.log" 2>&1 &
pids+=($!)
wait_port "$HTTP_PORT"
wait_port "$BARE_PORT"
wait_port "$NAIVE_PORT"
wait_port "$OS_PORT"

load() { # target, scenario, extra args
  target/release/seckill-load --target "http://127.0.0.1:$1" --admin-token "$TOKEN" \
    --redis-url "redis://127.0.0.1:$REDIS_PORT/" --kafka-brokers "127.0.0.1:$KAFKA_PORT" \
    --scenario "$2" --concurrency "${LOAD_CONC:-$CONC}" --countdown-s 1 --json "${@:3}"
}
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
metric() { # name: its value on seckilld's /metrics
  exec 3<>"/dev/tcp/127.0.0.1/$HTTP_PORT"
  printf 'GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n' >&3
  awk -v n="$1" '$1 == n { print $2 }' <&3
  exec 3<&-
}

printf '\n%-16s %12s %12s %12s %12s %8s %8s %10s %10s %10s %9s %12s %12s %s\n' scenario "seckilld" "os (no fsync)" "naive" "bare hyper" ratio "naive/b" "p99 ms" "naive p99" "bare p99" "req/call" "p99 @ half" "bare @ half" invariants
for sc in "${SCENARIOS[@]}"; do
  if [ "$sc" = degraded ] || [ "$sc" = dashboard ]; then
    continue  # reported below: not a comparison with the other servers
  fi
  calls0=$(metric seckill_redis_calls_total); reqs0=$(metric seckill_redis_requests_total)
  s=$(load "$HTTP_PORT" "$sc")
  calls1=$(metric seckill_redis_calls_total); reqs1=$(metric seckill_redis_requests_total)
  per_call=$(python3 -c "c=$calls1-$calls0; print(f'{($reqs1-$reqs0)/c:.1f}' if c else '-')")
  o=$(load "$OS_PORT" "$sc")
  o_rps=$(echo "$o" | field "round(d['report']['requests_per_sec'])")
  n=$(load "$NAIVE_PORT" "$sc")
  b=$(load "$BARE_PORT" "$sc" --no-check)
  n_rps=$(echo "$n" | field "round(d['report']['requests_per_sec'])")
  n_p99=$(echo "$n" | field "d['report']['latency']['p99_us']/1000")
  ok_n=$(echo "$n" | field "'OK' if not d['check']['violations'] else 'VIOLATED'")
  s_rps=$(echo "$s" | field "round(d['report']['requests_per_sec'])")
  b_rps=$(echo "$b" | field "round(d['report']['requests_per_sec'])")
  s_p99=$(echo "$s" | field "d['report']['latency']['p99_us']/1000")
  b_p99=$(echo "$b" | field "d['report']['latency']['p99_us']/1000")
  ok=$(echo "$s" | field "'OK' if not d['check']['violations'] else 'VIOLATED'")
  # Latency at half of seckilld's maximum rate, the load a sale is sized for.
  h=$(LOAD_CONC=$HALF_CONC load "$HTTP_PORT" "$sc" --rate "$((s_rps / 2))")
  h_p99=$(echo "$h" | field "d['report']['latency']['p99_us']/1000")
  # The reference at the same rate: what the box itself adds to the tail.
  hb=$(LOAD_CONC=$HALF_CONC load "$BARE_PORT" "$sc" --rate "$((s_rps / 2))" --no-check)
  hb_p99=$(echo "$hb" | field "d['report']['latency']['p99_us']/1000")
  ok_h=$(echo "$h" | field "'OK' if not d['check']['violations'] else 'VIOLATED'")
  ratio=$(python3 -c "print(f'{$s_rps/$b_rps:.2f}x')")
  n_ratio=$(python3 -c "print(f'{$n_rps/$b_rps:.2f}x')")
  printf '%-16s %10s/s %10s/s %10s/s %10s/s %8s %8s %10s %10s %10s %9s %12s %12s %s\n' "$sc" "$s_rps" "$o_rps" "$n_rps" "$b_rps" "$ratio" "$n_ratio" "$s_p99" "$n_p99" "$b_p99" "$per_call" "$h_p99" "$hb_p99" "$ok/$ok_h (naive $ok_n)"
done
for sc in "${SCENARIOS[@]}"; do
  [ "$sc" = degraded ] || continue
  if [ -z "$REDIS_PID" ]; then
    say "degraded: skipped (Redis on $REDIS_PORT was reused; the scenario freezes a redis-server this script started)"
    continue
  fi
  d=$(load "$HTTP_PORT" degraded --redis-pid "$REDIS_PID" --outage-s 5)
  echo "$d" | python3 -c "
import json,sys
d=json.load(sys.stdin); r=d['report']
burst=r.get('burst_by_status') or {}
print(f\"\\ndegraded: {r['requests']} requests during a 5 s Redis freeze: {burst.get('pending',0)} answered 202 pending;\")
print(f\"  once Redis was back and settled: {r['by_status']}; invariants {'OK' if not d['check']['violations'] else d['check']['violations']}\")
"
done
for sc in "${SCENARIOS[@]}"; do
  [ "$sc" = dashboard ] || continue
  VIEWERS=${BENCH_VIEWERS:-5}
  without=() with=()
  for round in 1 2; do
    without+=("$(load "$HTTP_PORT" hot-item | field "d['report']['requests_per_sec']")")
    # Viewers as a browser holds them: one event stream each, read as it
    # comes (the page's drawing happens on the viewer's machine).
    vpids=()
    for _ in $(seq "$VIEWERS"); do
      curl -sN -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$HTTP_PORT/dashboard/events" >/dev/null &
      vpids+=($!)
      pids+=($!)
    done
    sleep 1.5
    with+=("$(load "$HTTP_PORT" hot-item | field "d['report']['requests_per_sec']")")
    kill "${vpids[@]}" 2>/dev/null || true
    wait "${vpids[@]}" 2>/dev/null || true
  done
  python3 -c "
w=[$(IFS=,; echo "${without[*]}")]; v=[$(IFS=,; echo "${with[*]}")]
mw=sum(w)/len(w); mv=sum(v)/len(v)
print(f'\ndashboard: hot-item on seckilld, no viewer {[round(x) for x in w]} req/s (mean {mw:.0f}), '
      f'$VIEWERS viewers {[round(x) for x in v]} (mean {mv:.0f}): {mv/mw:.3f}x; '
      f'no-viewer runs differ by {abs(w[0]-w[1])/mw*100:.1f}% between themselves')
"
done
say "seckilld counters"
exec 3<>"/dev/tcp/127.0.0.1/$HTTP_PORT"
printf 'GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n' >&3
grep -E '^seckill_(redis_(calls|requests)_total|ring_batch_len_max|wal_commits_total)' <&3 || true
