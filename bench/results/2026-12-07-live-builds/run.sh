#!/usr/bin/env bash
# run.sh LABEL BIN: a fresh Pulse all-in-one from BIN and one pulse loadgen run against it.
set -u
label=$1 bin=$2
cd /work/main
PULSE_BIN=$bin bench/pulse-peer.sh > /tmp/lat/$label.peer.log 2>&1 &
pid=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/2112) 2>/dev/null && break; sleep 0.1; done
sleep 1
PULSE_ADMIN_PASSWORD=bench-password bench/pulse loadgen -url http://127.0.0.1:8081 -dashboard http://127.0.0.1:2112 -server-pid "$pid" \
  -trackers 2500 -rate 20 -duration 15s -ramp 2s -sources 4 -batched -consumers 100 > /tmp/lat/$label.json 2>/tmp/lat/$label.err || true
kill "$pid"; wait "$pid" 2>/dev/null || true
