#!/usr/bin/env bash
# split.sh PATTERN: sums utime/stime (ticks) of processes matching PATTERN at t=6s and t=18s after start
sleep 6
snap() { local u=0 s=0; for p in $(pgrep -f "$1"); do read -r -a f < /proc/$p/stat || continue; u=$((u+f[13])); s=$((s+f[14])); done; echo "$u $s"; }
a=$(snap "$1"); sleep 12; b=$(snap "$1")
echo "$1 start $a end $b"
