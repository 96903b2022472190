#!/usr/bin/env bash
# pulse-peer.sh [FLAGS...]: starts Pulse all-in-one as a benchmark peer, in
# the foreground, on the ports the peers' bench.sh waits for (ingest :8081,
# dashboard :2112), with a fresh data directory, and execs it so that its
# PID is the one measured. FLAGS override those settings. PULSE_BIN names
# the binary (default: bench/pulse, built by bench/run.sh); PULSE_BENCH_DIR
# the data directory. Other PULSE_* settings pass through.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
data="${PULSE_BENCH_DIR:-/tmp/pulse-bench}"
rm -rf "$data" && mkdir -p "$data"
export PULSE_DATA_DIR="$data"
export PULSE_ADMIN_PASSWORD="${PULSE_ADMIN_PASSWORD:-bench-password}"
export PULSE_API_TOKEN="${PULSE_API_TOKEN:-bench-token}"
export PULSE_LOG_LEVEL="${PULSE_LOG_LEVEL:-warn}"
export PULSE_QUOTE_SOURCE="${PULSE_QUOTE_SOURCE:-off}"
exec "${PULSE_BIN:-$here/pulse}" all -ingest-addr 127.0.0.1:8081 -dashboard-addr 127.0.0.1:2112 "$@"
