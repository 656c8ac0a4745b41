#!/usr/bin/env bash
# Failover figures of a Vega cluster: runs the chaos and cluster tests (3
# nodes behind HAProxy on one PostgreSQL catalog and shared storage, plus
# the catalog primary/replica failover) and prints the figures each
# reports — failed requests, error window, detection and recovery times.
# The tests assert correctness (nothing acknowledged lost or doubled); the
# figures are measured, not asserted. Record them in BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vega/target}"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
cargo test -q -p vega --test it --locked -- --nocapture --test-threads 1 \
  chaos:: cluster:: 2>&1 | tee "$out" >/dev/null || { cat "$out"; exit 1; }
cargo test -q -p vega-catalog --test catalog --locked -- --nocapture --test-threads 1 \
  replication:: 2>&1 | tee -a "$out" >/dev/null || { cat "$out"; exit 1; }
# Test names and figures share lines under --nocapture: match the figures.
grep -oE "(chaos [a-z0-9 -]+(\(SIGTERM\))?:|job taken over|[0-9]+ acknowledged rows of|MQTT consumer taken over|failover: writes|read-only primary:).*" "$out" || true
