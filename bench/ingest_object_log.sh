#!/usr/bin/env bash
# Line-protocol ingest with the write-ahead log also in an S3-compatible
# bucket (each group commit stored before the acknowledgement) against the
# log on local disk only: same points, batch size and client threads,
# alternating rounds in one run. Needs moto's server (pip install
# 'moto[server]', which scripts/test installs).
#
#   bench/ingest_object_log.sh
#   BENCH_LP_POINTS=600000 BENCH_LP_CLIENTS=8 bench/ingest_object_log.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vega/target}"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -srm)"
echo "profile: dev"
cargo test --workspace --test it --locked -- --ignored --nocapture --test-threads=1 \
  bench::line_protocol_ingest_with_the_log_in_the_object_store 2>&1 \
  | grep -E '^\||^ratio|^batch|test result'
