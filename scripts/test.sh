#!/usr/bin/env bash
# The whole test suite: unit, property, stage, end-to-end and chaos tests.
# Installs what the tests need first (see setup.sh); the tests spawn their
# own redis-server and broker processes on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_all

say "building the binaries the tests start as processes"
# Built up front: a test that needs seckilld would otherwise build it while
# the other tests run, and a compile on the same two cores starves their
# brokers and daemons.
cargo build --quiet -p seckill-io --bins
say "building and running the test suite"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
  # nextest does not run doctests.
  cargo test --workspace --doc --quiet
else
  cargo test --workspace --no-fail-fast
fi
