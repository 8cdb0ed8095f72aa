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

stop_services() {
  for p in "${started_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}

# Processes the calling script starts (daemons, baselines), ended on exit
# together with the services.
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  stop_services
}
trap cleanup EXIT

# Builds the release binaries and starts the services.
prepare() {
  say "building seckilld, seckill-load, seckill-bare, seckill-naive and seckill-replay (release)"
  cargo build --release --quiet -p seckill-io -p seckill-benches -p seckill-replay-cli --bins
  start_services
}
