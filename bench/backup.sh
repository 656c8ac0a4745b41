#!/usr/bin/env bash
# Backup and restore throughput of a large asset (1 GiB of segments by
# default) against `cp -r` + `sync` of the same files, measured in one run,
# and the bytes a second backup with no changes writes (near zero: every
# segment is already stored, by content).
#
#   bench/backup.sh
#   BENCH_BACKUP_MIB=4096 bench/backup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vega/target}"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -srm), disk: $(df -h --output=fstype "${TMPDIR:-/tmp}" | tail -1)"
echo "profile: dev"
cargo test --workspace --test it --locked -- --ignored --nocapture --test-threads=1 bench::backup_and_restore 2>&1 \
  | grep -E '^\||^asset:|^second backup|test result'
