#!/usr/bin/env bash
# pulse-backend.sh: starts, in the foreground, the Pulse parts an ingest
# node under test needs: embedded NATS (clients on 127.0.0.1:4333), the
# aggregator and the dashboard (127.0.0.1:2112), in one process, with a
# fresh data directory. Its own ingest listener is on 127.0.0.1:18081, out
# of the way. Pair it with pulse-ingest-peer.sh to measure an ingest node
# alone.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
data="${PULSE_BENCH_DIR:-/tmp/pulse-bench-backend}"
rm -rf "$data" && mkdir -p "$data"
export PULSE_DATA_DIR="$data"
export PULSE_ADMIN_PASSWORD="${PULSE_ADMIN_PASSWORD:-bench-password}"
export PULSE_API_TOKEN="${PULSE_API_TOKEN:-bench-token}"
export PULSE_LOG_LEVEL="${PULSE_LOG_LEVEL:-warn}"
export PULSE_QUOTE_SOURCE="${PULSE_QUOTE_SOURCE:-off}"
exec "${PULSE_BIN:-$here/pulse}" all -nats-listen 127.0.0.1:4333 \
  -ingest-addr 127.0.0.1:18081 -dashboard-addr 127.0.0.1:2112
