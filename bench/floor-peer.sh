#!/usr/bin/env bash
# floor-peer.sh: starts the bare receive floor (bench/floor: nbio, reads
# and counts frames, nothing else) on 127.0.0.1:8081 with its count on
# 127.0.0.1:2113, in the foreground, and execs it so that its PID is the
# one measured (PEER_PORTS="8081 2113" for bench.sh).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec "$here/floor/floor" -addr 127.0.0.1:8081 -metrics-addr 127.0.0.1:2113 ${FLOOR_FLAGS:-}
