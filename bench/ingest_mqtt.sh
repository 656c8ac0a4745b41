#!/usr/bin/env bash
# MQTT QoS 1 end-to-end throughput through Mosquitto (Debian `mosquitto`):
# a plain subscriber acknowledging on receipt (baseline) against Vega
# (acknowledging once durable, counting until queryable), same messages,
# one run; checks that no message is lost or duplicated.
#
#   bench/ingest_mqtt.sh
#   BENCH_MQTT_MESSAGES=100000 bench/ingest_mqtt.sh
set -euo pipefail
cd "$(dirname "$0")/.."
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -srm)"
echo "profile: ${BENCH_VEGA_BIN:+release binary }dev test harness"
cargo test -p vega --test it --locked -- --ignored --nocapture --test-threads=1 bench::mqtt_ingest 2>&1 \
  | grep -E '^\||^ratio|test result'
