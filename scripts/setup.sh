#!/usr/bin/env bash
# Installs what seckill's demo and tests need, when it is missing:
#   - redis-server, gcc/g++/make/perl for the bundled librdkafka (with the
#     OpenSSL and cyrus-sasl development packages for TLS/SASL), python3 for
#     the layout check and the benchmark scripts, nginx for the proxy tests,
#     promtool (prometheus) for the metrics test, PostgreSQL for the order
#     service (the demo starts its own instance), and for the test suite
#     only chromium + chromium-driver for the dashboard's browser test and
#     MariaDB for the order service's MySQL tests (Debian packages)
#   - tansu, a Kafka-protocol broker (cargo install; ~9 minutes the first time)
#   - the Python packages of the OpenAPI and fuzz tests, in target/pyenv (pip)
# Sourced by demo.sh and test.sh; safe to run again (it skips what is there).
set -euo pipefail

say() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Installs Debian packages, never starting the services they ship.
apt_install() {
  say "installing Debian packages: $*"
  as_root apt-get update -qq
  # Packages that ship a service (redis-server, nginx) must not start it:
  # the tests start their own on free ports. policy-rc.d says so to
  # invoke-rc.d, then goes.
  local policy=/usr/sbin/policy-rc.d added_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod +x "$policy"
    added_policy=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  if [ -n "$added_policy" ]; then as_root rm -f "$policy"; fi
}

ensure_packages() {
  local missing=()
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  # redis-sentinel: the failover tests run real Sentinels.
  command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
  command -v cc >/dev/null 2>&1 || missing+=(gcc)
  command -v c++ >/dev/null 2>&1 || missing+=(g++)
  command -v make >/dev/null 2>&1 || missing+=(make)
  command -v perl >/dev/null 2>&1 || missing+=(perl)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  # librdkafka is built with TLS (OpenSSL) and SASL (cyrus-sasl, GSSAPI)
  # so that managed Kafka clusters can be reached.
  command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
  # openssl(1): the TLS tests make their certificates with it.
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  pkg_have openssl || missing+=(libssl-dev)
  pkg_have libsasl2 || missing+=(libsasl2-dev)
  # The OpenAPI and black-box fuzz tests run in a virtualenv.
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
  # nginx: the proxy tests put the daemon behind a real one.
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
  # promtool (package prometheus): a test lints a live /metrics scrape.
  command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
  # PostgreSQL: the order service's database (the demo and the tests run
  # their own instance with initdb, never the packaged one).
  pg_bindir >/dev/null 2>&1 || missing+=(postgresql)
  if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
  fi
}

# Whether a C library's development files are installed (pkg-config, or
# the header where pkg-config itself is still missing).
pkg_have() {
  if command -v pkg-config >/dev/null 2>&1; then
    pkg-config --exists "$1"
  else
    case "$1" in
      openssl) [ -e /usr/include/openssl/ssl.h ] ;;
      libsasl2) [ -e /usr/include/sasl/sasl.h ] ;;
      *) return 1 ;;
    esac
  fi
}

# Debian keeps PostgreSQL's server programs off the PATH, in
# /usr/lib/postgresql/<version>/bin: the newest one.
pg_bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$d" ] && [ -x "$d/initdb" ] && echo "$d"
}

# The order service's MySQL tests run against a MariaDB of their own.
ensure_mariadb() {
  if ! command -v mariadb-install-db >/dev/null 2>&1 || ! command -v mariadb >/dev/null 2>&1; then
    apt_install mariadb-server mariadb-client
  fi
}

# The dashboard's browser test: a headless Chromium driven over WebDriver.
ensure_browser() {
  local missing=()
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
  if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
  fi
}

tansu_path() {
  if [ -n "${SECKILL_TANSU_BIN:-}" ]; then echo "$SECKILL_TANSU_BIN"; return; fi
  if command -v tansu >/dev/null 2>&1; then command -v tansu; return; fi
  echo "${CARGO_HOME:-$HOME/.cargo}/bin/tansu"
}

ensure_tansu() {
  if [ ! -x "$(tansu_path)" ]; then
    say "installing the tansu Kafka-protocol broker (cargo install tansu; takes a while once)"
    cargo install tansu --locked --features dynostore
  fi
}

# The Python packages of the OpenAPI and fuzz tests (openapi-spec-validator,
# openapi-python-client), in target/pyenv; re-installed when
# scripts/requirements-test.txt changes.
ensure_pyenv() {
  local root req env stamp
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  req="$root/scripts/requirements-test.txt" env="$root/target/pyenv"
  stamp="$env/.requirements"
  if [ -x "$env/bin/python" ] && cmp -s "$req" "$stamp"; then return; fi
  say "installing the Python test packages into target/pyenv (pip)"
  python3 -m venv "$env"
  "$env/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  cp "$req" "$stamp"
}

ensure_all() {
  command -v cargo >/dev/null 2>&1 || { echo "cargo is required (install Rust first)" >&2; exit 1; }
  ensure_packages
  ensure_tansu
  ensure_pyenv
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  ensure_all
  say "ready: redis-server $(redis-server --version | awk '{print $3}'), tansu at $(tansu_path)"
fi
