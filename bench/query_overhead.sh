#!/usr/bin/env bash
# Query-path overhead: the same SQL through Vega's HTTP API and through
# DuckDB directly on the same Parquet files, interleaved in one run; prints
# medians and the ratio (Vega / direct). Results go in BENCHMARKS.md.
#
#   bench/query_overhead.sh                  # defaults: 500k rows, 30 runs
#   BENCH_ROWS=1000000 BENCH_RUNS=50 bench/query_overhead.sh
#   BENCH_PROFILE=release bench/query_overhead.sh   # optimized build (compiles DuckDB again)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=()
if [ "${BENCH_PROFILE:-dev}" = "release" ]; then profile=(--release); fi
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -srm)"
echo "profile: ${BENCH_PROFILE:-dev}"
cargo test "${profile[@]}" -p vega --test it --locked -- --ignored --nocapture --test-threads=1 bench::query_overhead 2>&1 \
  | grep -E '^\||^rows:|^machine|^profile|test result'
