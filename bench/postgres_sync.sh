#!/usr/bin/env bash
# Full sync of a PostgreSQL table (5 million rows by default) against
# `COPY … TO STDOUT` through psql, in one run, and Vega's peak memory.
# Needs PostgreSQL's server binaries (Debian package `postgresql`).
#
#   bench/postgres_sync.sh
#   BENCH_PG_ROWS=1000000 bench/postgres_sync.sh
set -euo pipefail
cd "$(dirname "$0")/.."
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -srm)"
echo "profile: dev"
cargo test -p vega --test it --locked -- --ignored --nocapture --test-threads=1 bench::postgres_full_sync 2>&1 \
  | grep -E '^\||^ratio|^rows:|^vega peak|test result'
