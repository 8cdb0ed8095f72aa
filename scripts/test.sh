#!/usr/bin/env bash
# The whole test suite: unit, property, stage, end-to-end and chaos tests.
# Installs what the tests need first (see setup.sh); the tests spawn their
# own redis-server and broker processes on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_all
ensure_browser
ensure_mariadb

say "checking the source layout (module cycles, file sizes)"
python3 scripts/check-layout.py
# The named fail points (the WAL's writes, flushes and rotations, the
# Kafka send) are compiled in for the test build only; every command below
# uses the same features so one build serves them all.
FEATURES=seckill-wal/failpoints,seckill-tests/failpoints
# The tests that start binaries build them with the same features.
export SECKILL_TEST_FEATURES="$FEATURES"
say "building the binaries the tests start as processes"
# Built up front: a test that needs seckilld would otherwise build it while
# the other tests run, and a compile on the same two cores starves their
# brokers and daemons.
cargo build --quiet --workspace --bins --features "$FEATURES"
say "building and running the test suite"
if cargo nextest --version >/dev/null 2>&1; then
  # nextest does not run doctests: they go first, so the suite's own
  # summary is the last line.
  cargo test --workspace --doc --quiet --features "$FEATURES"
  cargo nextest run --workspace --no-fail-fast --features "$FEATURES"
else
  cargo test --workspace --no-fail-fast --features "$FEATURES"
fi
