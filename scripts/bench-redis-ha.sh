#!/usr/bin/env bash
# Redis beyond one process, measured on the whole system with the load
# generator, each comparison in the same run, its two sides alternated
# (ABAB) so drift does not read as a difference:
#
#   ./scripts/bench-redis-ha.sh [wait] [shards]
#
# `wait`: seckilld on a master with one replica on the same box, with
# redis_wait_replicas 0 and 1 (one WAIT per ring batch): all-win closed
# loop (decisions/s, p99) and open loop at BENCH_WAIT_RATE (4,000/s) for
# the p99 at a fixed load.
# `shards`: seckilld on a 3-master Redis Cluster (redis-cli --cluster
# create), one hot item of 200,000 units with its stock in one place and
# split over three shards (one per master): closed loop (decisions/s, p99).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_all
PARTS=("$@")
[ "${#PARTS[@]}" -gt 0 ] || PARTS=(wait shards)
CONC=${BENCH_CONCURRENCY:-256}
RUNS=${BENCH_RUNS:-2}
WAIT_RATE=${BENCH_WAIT_RATE:-4000}
TOKEN=bench-admin-token
TOKEN_KEY=$(od -An -N32 -tx1 /dev/urandom | tr -d " \n")
source scripts/services.sh
prepare
HA_DIR="$STATE/bench-ha"
rm -rf "$HA_DIR" && mkdir -p "$HA_DIR"

redis() { # port, extra args: a redis-server of this run
  mkdir -p "$HA_DIR/$1"
  redis-server --port "$1" --bind 127.0.0.1 --save "" --appendonly no --dir "$PWD/$HA_DIR/$1" \
    --logfile "$PWD/$HA_DIR/$1/redis.log" "${@:2}" &
  pids+=($!)
  wait_port "$1"
}
daemon() { # port, wal name, extra environment (NAME=value …)
  rm -rf "$HA_DIR/$2"
  env SECKILL_LISTEN="127.0.0.1:$1" SECKILL_KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT" \
    SECKILL_WAL_DIR="$HA_DIR/$2" SECKILL_ADMIN_TOKEN="$TOKEN" SECKILL_TOKEN_KEY="$TOKEN_KEY" \
    SECKILL_LOG=warn SECKILL_REQUIRE_TOKEN=false "${@:3}" \
    target/release/seckilld >"$HA_DIR/$2.log" 2>&1 &
  pids+=($!)
  wait_port "$1"
}
load() { # port, extra args: one seckill-load run, its JSON
  quiet
  target/release/seckill-load --target "http://127.0.0.1:$1" --admin-token "$TOKEN" \
    --kafka-brokers "127.0.0.1:$KAFKA_PORT" --concurrency "$CONC" --countdown-s 1 --json "${@:2}"
}
row() { # label, JSON: decisions/s, p99, invariants
  python3 -c "
import json,sys
d=json.loads(sys.argv[2]); r=d['report']
ok='OK' if not (d.get('check') or {}).get('violations') else 'VIOLATED'
print(f\"{sys.argv[1]:<28} {r['requests_per_sec']:>10.0f}/s  p99 {r['latency']['p99_us']/1000:>7.2f} ms  {ok}\")" "$1" "$2"
}

for part in "${PARTS[@]}"; do
  case "$part" in
    wait)
      MASTER=16479 REPLICA=16480
      redis "$MASTER"
      redis "$REPLICA" --replicaof 127.0.0.1 "$MASTER"
      daemon 18101 wal-wait0 SECKILL_REDIS_URL="redis://127.0.0.1:$MASTER/" SECKILL_REDIS_WAIT_REPLICAS=0
      daemon 18102 wal-wait1 SECKILL_REDIS_URL="redis://127.0.0.1:$MASTER/" SECKILL_REDIS_WAIT_REPLICAS=1
      say "wait: all-win, a replica on the same box; closed loop, then open loop at $WAIT_RATE/s"
      for run in $(seq 1 "$RUNS"); do
        for w in 0 1; do
          out=$(load $((18101 + w)) --redis-url "redis://127.0.0.1:$MASTER/" --scenario all-win)
          row "all-win wait_replicas=$w" "$out"
        done
        for w in 0 1; do
          out=$(load $((18101 + w)) --redis-url "redis://127.0.0.1:$MASTER/" --scenario all-win \
            --rate "$WAIT_RATE" --time-max-s 10)
          row "@$WAIT_RATE/s wait_replicas=$w" "$out"
        done
      done
      ;;
    shards)
      PORTS=(16491 16492 16493)
      for p in "${PORTS[@]}"; do
        redis "$p" --cluster-enabled yes --cluster-config-file nodes.conf --cluster-port $((p + 100))
      done
      redis-cli --cluster create "${PORTS[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >"$HA_DIR/create.log"
      sleep 2
      NODES=$(printf '127.0.0.1:%s,' "${PORTS[@]}"); NODES=${NODES%,}
      daemon 18103 wal-cluster SECKILL_REDIS_URL="redis://127.0.0.1:${PORTS[0]}/" SECKILL_REDIS_CLUSTER_NODES="$NODES"
      say "shards: one hot item (all-win: 200,000 units, 100,000 buyers) on a 3-master cluster"
      for run in $(seq 1 "$RUNS"); do
        for k in 1 3; do
          out=$(load 18103 --redis-url "redis://127.0.0.1:${PORTS[0]}/" --redis-cluster-nodes "$NODES" \
            --scenario all-win --shards "$k")
          row "hot item, shards=$k" "$out"
        done
      done
      ;;
    *) echo "unknown part $part (wait, shards)" >&2; exit 2 ;;
  esac
done
