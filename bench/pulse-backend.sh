#!/usr/bin/env bash
# pulse-backend.sh: starts, in the foreground, the Pulse parts an ingest
# node under test needs: embedded NATS (clients on 127.0.0.1:4333), the
# aggregator and the dashboard (127.0.0.1:2112), in one process, with a
# fresh data directory. Its own ingest listener is on 127.0.0.1:18081, out
# of the way. Pair it with pulse-ingest-peer.sh to measure an ingest node
# alone.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export PULSE_BENCH_DIR="${PULSE_BENCH_DIR:-/tmp/pulse-bench-backend}"
exec "$here/pulse-peer.sh" -nats-listen 127.0.0.1:4333 -ingest-addr 127.0.0.1:18081
