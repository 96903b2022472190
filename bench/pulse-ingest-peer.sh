#!/usr/bin/env bash
# pulse-ingest-peer.sh [FLAGS...]: starts a Pulse ingest node alone on 127.0.0.1:8081,
# in the foreground, against the NATS of pulse-backend.sh, and execs it so
# that its PID is the one measured (PEER_PORTS=8081 for bench.sh). Its
# metrics are on 127.0.0.1:2114: the backend has 2113. FLAGS override
# these settings.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export PULSE_LOG_LEVEL="${PULSE_LOG_LEVEL:-warn}"
export PULSE_QUOTE_SOURCE="${PULSE_QUOTE_SOURCE:-off}"
exec "${PULSE_BIN:-$here/pulse}" ingest -nats nats://127.0.0.1:4333 -ingest-addr 127.0.0.1:8081 -metrics-addr 127.0.0.1:2114 "$@"
