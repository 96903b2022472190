#!/usr/bin/env bash
# bench/run.sh [SCENARIO...]: the side-by-side benchmarks of BENCHMARKS.md.
# Runs the Node design of ../shared/peers and Pulse one after the other on
# this machine, loopback only, every run with a fresh server, and writes
# each run's JSON report to bench/results/. Scenarios (default: all):
#   paced     1,000 classic connections x 20 events/s: Node and Pulse with
#             the peers' loadgen; Pulse classic and batched with pulse
#             loadgen (latency to the dashboard's SSE)
#   sweep     Pulse: highest classic rate with >= 99 % counted
#   idle      19,000 idle connections: Node, Pulse all-in-one, Pulse ingest;
#             then pulse loadgen's hellos, joins and leaves (idle_own alone)
#   held_100k 100,000 idle batched trackers on this machine: six ingest
#             processes share one port (-ingest-reuse-port), as one
#             process may open only 20,000 files here (not in the default
#             set: it needs about 4 GB and 2 minutes a run)
#   overload  100 connections as fast as they can for 20 s
#   fanout    SSE subscribers: Node 100 admins, Pulse 1,000 consumers
#   quotes    10,000 quote widgets obeying callIn
#   hostile   1,000 good trackers counted exactly while ping floods, half-sent
#             frames, path floods, SSE floods and silent connections run (Pulse only)
#   live      event to screen at 50,000 events/s with 100 dashboards, with
#             and without the live panels (Pulse only)
#   cost      Pulse's CPU per event and RSS against connections, events a
#             second, sites and dashboards, one at a time; then 100, 1,000
#             and 10,000 sites (cost_sites alone) and 10,000 trackers x 20
#             events/s (cost_active alone)
#   floor     1,000 classic connections x 20 events/s: the bare receive
#             floor (bench/floor, nbio: callbacks on the poller, and on
#             nbio's default pool), Pulse all-in-one and Node, same
#             loadgen, alternating
#   peers     1,000 batched trackers x 20 events/s, the same frames to
#             Pulse all-in-one, the bare receive floor and Centrifugo,
#             alternating; then 10,000 trackers held (a batch of 10
#             every 10 s) on Pulse's ingest node, the floor and
#             Centrifugo, for the memory a connection costs (peers_held
#             alone)
# RUNS (default 3) repeats each measured run; OUT (default bench/results)
# is where the reports go. Needs node, npm and go.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
peers=$(cd "${PEERS:-../shared/peers}" && pwd)
out="${OUT:-$root/bench/results}"
runs="${RUNS:-3}"
mkdir -p "$out"
out=$(cd "$out" && pwd) # the peers' bench.sh writes there from its own directory

go build -o bench/pulse ./cmd/pulse
(cd bench/floor && go build -o floor .)
# Centrifugo for the peers scenario, from the Go module proxy.
[ -x bench/centrifugo ] || GOBIN="$root/bench" go install github.com/centrifugal/centrifugo/v6@v6.9.1
(cd "$peers/loadgen" && go build -o loadgen .)
[ -d "$peers/node-watcher/node_modules" ] || (cd "$peers/node-watcher" && npm ci --silent)

SSE=http://127.0.0.1:2112/receive/adminname
METRICS=(-metrics http://127.0.0.1:2113/metrics -counter pulse_aggregator_events_total)

# run_node LABEL FLAGS...: one run of the Node design with the peers' loadgen.
run_node() { RESULTS="$out" "$peers/bench.sh" "node-$1" -q "${@:2}" >/dev/null 2>&1 || true; }
# run_pulse LABEL FLAGS...: one run of Pulse all-in-one with the peers' loadgen.
run_pulse() {
  RESULTS="$out" PEER_CMD="$root/bench/pulse-peer.sh" "$peers/bench.sh" "pulse-$1" -q "${@:2}" >/dev/null 2>&1 || true
}
# run_floor LABEL FLAGS...: one run of the bare receive floor with the peers' loadgen.
run_floor() {
  RESULTS="$out" PEER_CMD="$root/bench/floor-peer.sh" PEER_PORTS="8081 2113" "$peers/bench.sh" "floor-$1" -q "${@:2}" >/dev/null 2>&1 || true
}
# pulse_own LABEL ENV... -- FLAGS...: a fresh Pulse all-in-one and one run
# of pulse loadgen against it.
pulse_own() {
  local label=$1; shift
  local env=()
  while [ "$1" != "--" ]; do env+=("$1"); shift; done; shift
  env "${env[@]}" bench/pulse-peer.sh > "$out/pulse-$label.peer.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/2112) 2>/dev/null && break; sleep 0.1; done
  sleep 1
  PULSE_ADMIN_PASSWORD=bench-password bench/pulse loadgen -url http://127.0.0.1:8081 \
    -dashboard http://127.0.0.1:2112 -server-pid "$pid" "$@" > "$out/pulse-$label.json" || true
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
}

paced() {
  for i in $(seq "$runs"); do
    run_node "paced-classic-$i" -url ws://127.0.0.1:8081 -subprotocol json -c 1000 -ramp 2000 -rate 20 -d 20s -sse $SSE -drain 30s
    run_pulse "paced-classic-$i" -url ws://127.0.0.1:8081 -subprotocol json -c 1000 -ramp 2000 -rate 20 -d 20s "${METRICS[@]}" -drain 30s
    pulse_own "own-classic-20k-$i" -- -trackers 1000 -rate 20 -duration 20s -ramp 1s -sources 2
    pulse_own "own-batched-20k-$i" -- -trackers 1000 -rate 20 -duration 20s -ramp 1s -sources 2 -batched
    # The same classic run reading with epoll instead of io_uring.
    pulse_own "own-classic-20k-epoll-$i" PULSE_INGEST_POLLER=epoll -- -trackers 1000 -rate 20 -duration 20s -ramp 1s -sources 2
  done
}

# floor: the same classic load on the bare receive floor, on Pulse's whole
# path (decode, JetStream, aggregate) and on the Node design, one after the
# other in each round, so the ratios come from one run.
floor() {
  # Four source addresses: Pulse allows one address 500 connects at once.
  local load=(-url ws://127.0.0.1:8081 -subprotocol json -c 1000 -src-ips 4 -ramp 2000 -rate 20 -d 20s -drain 30s)
  for i in $(seq "$runs"); do
    run_floor "classic-$i" "${load[@]}" -metrics http://127.0.0.1:2113/metrics -counter floor_frames_total
    FLOOR_FLAGS=-pool run_floor "pool-classic-$i" "${load[@]}" -metrics http://127.0.0.1:2113/metrics -counter floor_frames_total
    run_pulse "floor-classic-$i" "${load[@]}" "${METRICS[@]}"
    run_node "floor-classic-$i" "${load[@]}" -sse $SSE
  done
}

# own_peer LABEL PEER-SCRIPT -- FLAGS...: a fresh peer (started by
# PEER-SCRIPT on 127.0.0.1:8081) and one run of pulse loadgen against it.
own_peer() {
  local label=$1 script=$2; shift 3
  "$script" > "$out/$label.peer.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/8081) 2>/dev/null && break; sleep 0.1; done
  sleep 1
  bench/pulse loadgen -url http://127.0.0.1:8081 -server-pid "$pid" "$@" > "$out/$label.json" || true
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
}

# peers: the same batched frames (1,000 trackers × 20 events/s, a batch of
# 20 a second each) to Pulse's whole path, to the bare receive floor
# (frames read and counted) and to Centrifugo (each batch published to a
# channel, each publish replied to), one after the other in each round.
# Then memory: 10,000 trackers that send a batch of 10 every 10 s, to
# Pulse's ingest node (what holds trackers in a deployment), the floor and
# Centrifugo; serverRssPerConnKB is the growth of the server's RSS per
# connection.
peers() {
  local load=(-trackers 1000 -rate 20 -duration 20s -ramp 2s -sources 4 -batched)
  for i in $(seq "$runs"); do
    pulse_own "peers-batched-$i" -- "${load[@]}"
    own_peer "floor-peers-batched-$i" bench/floor-peer.sh -- "${load[@]}" -target floor
    own_peer "centrifugo-peers-batched-$i" bench/centrifugo-peer.sh -- "${load[@]}" -target centrifugo
  done
  peers_held
}

peers_held() {
  local held=(-trackers 10000 -rate 1 -batch-every 10s -duration 20s -ramp 10s -sources 20 -batched)
  for i in $(seq "$runs"); do
    bench/pulse-backend.sh > "$out/pulse-backend.log" 2>&1 &
    local backend=$!
    sleep 3
    own_peer "pulse-ingest-peers-held-$i" bench/pulse-ingest-peer.sh -- "${held[@]}"
    kill "$backend" 2>/dev/null || true; wait "$backend" 2>/dev/null || true
    own_peer "floor-peers-held-$i" bench/floor-peer.sh -- "${held[@]}" -target floor
    own_peer "centrifugo-peers-held-$i" bench/centrifugo-peer.sh -- "${held[@]}" -target centrifugo
  done
}

# live: event to screen at 50,000 events/s (1,000 batched trackers × 50/s)
# with 100 dashboards, with the live panels (the default) and without. The
# node's capacity is lifted above the offered rate, or it would tell the
# trackers to slow down (its default is 50,000/s).
live() {
  for i in $(seq "$runs"); do
    pulse_own "live-off-$i" PULSE_LIVE_EVERY=-1ms PULSE_INGEST_CAPACITY=200000 -- -trackers 1000 -rate 50 -duration 15s -ramp 2s -sources 4 -batched -consumers 100
    pulse_own "live-on-$i" PULSE_INGEST_CAPACITY=200000 -- -trackers 1000 -rate 50 -duration 15s -ramp 2s -sources 4 -batched -consumers 100
  done
}

# sites_file N: a sites file registering load-0 to load-(N-1); prints its path.
sites_file() {
  local f="/tmp/pulse-bench-sites-$1.json"
  python3 -c 'import json,sys; n=int(sys.argv[1]); print(json.dumps([{"key":f"load-{i}","name":f"Load {i}","origins":[]} for i in range(n)]))' "$1" > "$f"
  echo "$f"
}

# cost: how the cost grows, one dimension at a time from a base of 1,000
# batched trackers × 20 events/s, one site, one dashboard: connections
# (10,000 × 2/s, the same 20,000/s), events a second (5, 20, 50 a
# tracker), sites (10,000 trackers over 1, 100 and 10,000 sites) and
# dashboards (1, 100, 1,000 SSE consumers). Capacity is lifted so that no
# run is slowed down by rate directives.
cost() {
  local cap=PULSE_INGEST_CAPACITY=1000000
  local base=(-duration 20s -batched -sources 20)
  for i in $(seq "$runs"); do
    pulse_own "cost-1k-20-$i" $cap -- "${base[@]}" -trackers 1000 -rate 20 -ramp 2s
    pulse_own "cost-1k-5-$i" $cap -- "${base[@]}" -trackers 1000 -rate 5 -ramp 2s
    pulse_own "cost-1k-50-$i" $cap -- "${base[@]}" -trackers 1000 -rate 50 -ramp 2s
    pulse_own "cost-10k-2-$i" $cap -- "${base[@]}" -trackers 10000 -rate 2 -ramp 10s
    pulse_own "cost-1k-20-dash100-$i" $cap -- "${base[@]}" -trackers 1000 -rate 20 -ramp 2s -consumers 100
    pulse_own "cost-1k-20-dash1000-$i" $cap -- "${base[@]}" -trackers 1000 -rate 20 -ramp 2s -consumers 1000
  done
  cost_sites
  cost_active
}

# cost_sites: 10,000 trackers × 2 events/s spread over 100, 1,000 and
# 10,000 sites, alternating.
cost_sites() {
  local cap=PULSE_INGEST_CAPACITY=1000000
  local base=(-duration 20s -batched -sources 20 -trackers 10000 -rate 2 -ramp 10s -site load)
  local n
  for n in 100 1000 10000; do sites_file "$n" > /dev/null; done
  for i in $(seq "$runs"); do
    pulse_own "cost-10k-2-sites100-$i" $cap PULSE_SITES_FILE="$(sites_file 100)" -- "${base[@]}" -sites 100
    pulse_own "cost-10k-2-sites1k-$i" $cap PULSE_SITES_FILE="$(sites_file 1000)" -- "${base[@]}" -sites 1000 -settle 20s
    pulse_own "cost-10k-2-sites10k-$i" $cap PULSE_SITES_FILE="$(sites_file 10000)" -- "${base[@]}" -sites 10000 -settle 30s
  done
}

# cost_active: 10,000 batched trackers × 20 events/s (200,000 events/s),
# every event counted at the dashboard.
cost_active() {
  for i in $(seq "$runs"); do
    pulse_own "cost-10k-20-$i" PULSE_INGEST_CAPACITY=1000000 -- -duration 20s -batched -sources 20 -trackers 10000 -rate 20 -ramp 10s
  done
}

sweep() {
  for rate in 40 60 80; do
    for i in $(seq 2); do
      pulse_own "sweep-classic-$rate-$i" -- -trackers 1000 -rate "$rate" -duration 15s -ramp 1s -sources 2
    done
  done
  for rate in 100 200; do
    pulse_own "sweep-batched-$rate" PULSE_INGEST_CONN_RATE=1000 -- -trackers 1000 -rate "$rate" -duration 15s -ramp 1s -sources 2 -batched
  done
}

idle() {
  local flags=(-url ws://127.0.0.1:8081 -subprotocol json -c 19000 -ramp 2000 -src-ips 24 -rate 1 -n 1 -d 3s -hold 20s -drain 10s)
  for i in $(seq "$runs"); do
    run_node "idle-19k-$i" "${flags[@]}" -sse $SSE
    run_pulse "idle-19k-$i" "${flags[@]}" "${METRICS[@]}"
    bench/pulse-backend.sh > "$out/pulse-backend.log" 2>&1 &
    local backend=$!
    sleep 3
    RESULTS="$out" PEER_PORTS=8081 PEER_CMD="$root/bench/pulse-ingest-peer.sh" "$peers/bench.sh" "pulse-ingest-idle-19k-$i" -q "${flags[@]}" "${METRICS[@]}" >/dev/null 2>&1 || true
    kill "$backend" 2>/dev/null || true; wait "$backend" 2>/dev/null || true
  done
  idle_own
}

# idle_own: 19,000 batched trackers on Pulse all-in-one, one event each
# every 10 s, with pulse loadgen: each hello timed from its dial, every
# join and leave counted at the dashboard.
idle_own() {
  for i in $(seq "$runs"); do
    pulse_own "own-idle-19k-$i" -- -trackers 19000 -rate 0.1 -batch-every 10s -duration 20s -ramp 10s -sources 24 -batched -settle 30s
  done
}

# rss_kb PID...: the resident memory of the processes, summed, in KB.
rss_kb() { local p; for p in "$@"; do awk '/^VmRSS/ {print $2}' "/proc/$p/status"; done | awk '{s += $1} END {print s}'; }

# ingest_conns PORT...: the tracker connections the ingest nodes whose
# metrics are on those ports hold, summed.
ingest_conns() {
  local p; for p in "$@"; do curl -s "http://127.0.0.1:$p/metrics" | awk '/^pulse_ingest_connections / {print $2}'; done | awk '{s += $1} END {printf "%d", s}'
}

# held_100k: 100,000 batched trackers, one event each every 10 s, ramped
# over 50 s (2,000 new connections a second) from 60 source addresses,
# held 30 s. This machine's hard limit of 20,000 open files a process
# rules out one process on either side, so six ingest processes share
# 127.0.0.1:8081 (-ingest-reuse-port, the kernel spreads the connections)
# against one backend, and six pulse loadgens send 16,667 trackers each,
# each to its own site, so each counts its own hellos, joins and leaves
# at the dashboard. The ingest processes' RSS and connections, summed,
# are read before the ramp and 20 s after it, into
# pulse-held-100k-N.json; each loadgen's report is beside it.
held_100k() {
  local procs=6 per=16667
  local sites
  sites=$(sites_file "$procs")
  for i in $(seq "$runs"); do
    local label="held-100k-$i" ingests=() gens=() ports=()
    PULSE_SITES_FILE="$sites" bench/pulse-backend.sh > "$out/pulse-$label.backend.log" 2>&1 &
    local backend=$!
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/4333) 2>/dev/null && break; sleep 0.1; done
    for j in $(seq 0 $((procs - 1))); do
      ports+=($((2120 + j)))
      PULSE_INGEST_REUSE_PORT=1 bench/pulse-ingest-peer.sh -metrics-addr "127.0.0.1:$((2120 + j))" > "$out/pulse-$label.ingest-$j.log" 2>&1 &
      ingests+=($!)
    done
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/8081) 2>/dev/null && break; sleep 0.1; done
    sleep 2
    local before
    before=$(rss_kb "${ingests[@]}")
    for j in $(seq 0 $((procs - 1))); do
      PULSE_ADMIN_PASSWORD=bench-password bench/pulse loadgen -url http://127.0.0.1:8081 -dashboard http://127.0.0.1:2112 \
        -site "load-$j" -trackers "$per" -rate 0.1 -batch-every 10s -ramp 50s -duration 30s -sources 60 -batched -settle 60s \
        > "$out/pulse-$label-$j.json" 2> "$out/pulse-$label-$j.log" &
      gens+=($!)
    done
    sleep 70
    local held conns
    held=$(rss_kb "${ingests[@]}")
    conns=$(ingest_conns "${ports[@]}")
    wait "${gens[@]}" || true
    printf '{"ingestProcesses": %d, "trackers": %d, "connectionsHeld": %d, "rssBeforeKB": %d, "rssHeldKB": %d, "rssPerConnKB": %.3f}\n' \
      "$procs" $((procs * per)) "$conns" "$before" "$held" "$(awk -v h="$held" -v b="$before" -v c="$conns" 'BEGIN { print c ? (h - b) / c : 0 }')" > "$out/pulse-$label.json"
    kill "${ingests[@]}" 2>/dev/null || true; wait "${ingests[@]}" 2>/dev/null || true
    kill "$backend" 2>/dev/null || true; wait "$backend" 2>/dev/null || true
  done
}

overload() {
  local flags=(-url ws://127.0.0.1:8081 -subprotocol json -c 100 -rate 0 -d 20s -write-timeout 30s -drain 60s -settle 20s)
  run_node "overload" "${flags[@]}" -sse $SSE
  run_pulse "overload" "${flags[@]}" "${METRICS[@]}"
  PULSE_INGEST_CONN_RATE=1000000 run_pulse "overload-unlimited" "${flags[@]}" "${METRICS[@]}"
  pulse_own "overload-batched" PULSE_INGEST_CAPACITY=20000 -- -trackers 100 -rate 2000 -batch-every 100ms -duration 20s -ramp 1s -batched
}

fanout() {
  local admins
  admins=$(seq -f 'admin%g' 0 99 | paste -sd,)
  ADMINS=$admins run_node "fanout-100sse-2k" -url ws://127.0.0.1:8081 -subprotocol json -c 100 -ramp 1000 -rate 20 -d 20s \
    -sse 'http://127.0.0.1:2112/receive/admin{i}' -sse-n 100 -drain 30s
  for i in $(seq "$runs"); do
    pulse_own "fanout-1000sse-20k-$i" -- -trackers 1000 -rate 20 -duration 20s -ramp 1s -sources 2 -consumers 1000
  done
}

quotes() {
  PULSE_QUOTE_SOURCE=simulated bench/pulse-peer.sh > "$out/pulse-quotes.peer.log" 2>&1 &
  local pid=$!
  sleep 3
  bench/pulse loadgen -url http://127.0.0.1:8081 -widgets 10000 -symbols IBM,AAPL,MSFT,GOOG,AMZN -duration 60s -ramp 10s -sources 8 \
    > "$out/pulse-quotes-10k.json" || true
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  go test -run '^$' -bench QuoteEndpoint -count "$runs" ./ingest > "$out/pulse-quote-endpoint.txt"
}

hostile() {
  local sites="$out/hostile-sites.json"
  echo '[{"key":"flood","name":"Path flood","origins":[]}]' > "$sites"
  for i in $(seq "$runs"); do
    pulse_own "hostile-$i" PULSE_SITES_FILE="$sites" -- -hostile -trackers 1000 -duration 30s
  done
}

for s in "${@:-paced sweep idle overload fanout quotes hostile live floor peers cost}"; do
  for one in $s; do
    echo "== $one ($(date -u +%T))"
    "$one"
  done
done
