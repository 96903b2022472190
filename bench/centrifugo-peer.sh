#!/usr/bin/env bash
# centrifugo-peer.sh: starts Centrifugo (bench/centrifugo, built by
# bench/run.sh from the Go module proxy) on 127.0.0.1:8081 with
# bench/centrifugo.json: insecure clients (no token), publishing allowed
# to clients in the track: namespace, no history. Execs it so that its
# PID is the one measured.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec "$here/centrifugo" --config "$here/centrifugo.json"
