#!/usr/bin/env bash
# Line-protocol ingest (acknowledged after fsync) against InfluxDB 1.x from
# Debian on the same machine: same points, batch size and client threads,
# alternating rounds in one run. Needs `influxd` (Debian package `influxdb`).
#
#   bench/ingest_line_protocol.sh
#   BENCH_LP_POINTS=1200000 BENCH_LP_BATCH=5000 BENCH_LP_CLIENTS=4 bench/ingest_line_protocol.sh
set -euo pipefail
cd "$(dirname "$0")/.."
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -srm)"
echo "profile: ${BENCH_VEGA_BIN:+release binary, }dev test harness"
cargo test -p vega --test it --locked -- --ignored --nocapture --test-threads=1 bench::line_protocol_ingest 2>&1 \
  | grep -E '^\||^ratio|^batch|test result'
