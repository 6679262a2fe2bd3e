#!/usr/bin/env bash
# bench/skynet.sh: tern-skynet and the Go skynet (bench/peers/go_skynet) on the same processor count, interleaved:
# each of R rounds runs tern then Go (Go then tern in odd rounds), so a slow spell of a shared machine hits both sides
# of a pair. Prints both programs' output, each one's median and the median over rounds of the ratio tern/go within a
# round (target: at most 0.5). A ratio of medians taken over runs that were not interleaved would compare one
# program's quiet minute with the other's busy one.
#
#   bench/skynet.sh [--procs N] [--rounds R]      # defaults: every CPU this process may run on, 5 rounds
#
# Each program runs as a new process per round with two skynet rounds, the first a warm-up (pools and page faults):
# the second one's time is the round's.
# Builds tern-skynet in $TERN_BUILD_DIR (default build; configure it first, e.g. with `tools/tern build`) and the Go
# peer into $TERN_BUILD_DIR/bin/go-skynet. Exits non-zero if either program fails or prints a wrong sum; the ratio
# itself is reported, not enforced (the machine may be shared).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${TERN_BUILD_DIR:-build}
case $build_dir in /*) ;; *) build_dir=$root/$build_dir ;; esac
procs=$(nproc)
rounds=5
# The classic skynet tree: a million leaves.
size=1000000
# Skynet keeps about a hundred thousand fibers alive at its peak. From Linux 6.13 tern guards stacks with guard regions
# and neighbouring stacks merge into few mappings; on older kernels each stack is two mappings (an mprotect'ed guard
# page splits it: up to 172k mappings measured), so the default vm.max_map_count (65530) is too low there and is
# raised for the run to 262144, the usual raised value (Elasticsearch asks for the same).
skynet_map_count=262144
# The ratio the issue sets for tern against Go on the 2-core reference machine.
target_ratio=0.5

while [ $# -gt 0 ]; do
  case $1 in
    --procs) procs=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) echo "usage: bench/skynet.sh [--procs N] [--rounds R]" >&2; exit 2 ;;
  esac
done

[ -f "$build_dir/CMakeCache.txt" ] || { echo "skynet.sh: $build_dir is not configured: run tools/tern build" >&2; exit 1; }
cmake --build "$build_dir" -j "${TERN_JOBS:-2}" --target tern-skynet >/dev/null
"$root/bench/peers/go_skynet/build.sh" "$build_dir/bin/go-skynet"

# Skynet rounds per process: a warm-up, then the measured one.
per_run=2
# The median of a column of numbers on stdin (lower middle for an even count).
median() { sort -g | awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]}'; }
expected=$(awk -v n="$size" 'BEGIN {printf "%.0f", n * (n - 1) / 2}')
# check_sums LOG: every "Result: S in N ms." line of one process's output has the right sum, and there are per_run.
check_sums() {
  local bad
  bad=$(grep -E '^Result:' "$1" | grep -vc "^Result: $expected in" || true)
  [ "$(grep -c '^Result:' "$1")" -eq "$per_run" ] && [ "$bad" -eq 0 ]
}
# last_ms LOG: the measured (last) round's milliseconds.
last_ms() { grep -Eo 'in [0-9]+ ms\.' "$1" | awk '{print $2}' | tail -n 1; }

tmp=$(mktemp -d)
old_map_count=$(cat /proc/sys/vm/max_map_count)
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  rm -rf "$tmp"
  if [ "$(cat /proc/sys/vm/max_map_count)" != "$old_map_count" ]; then echo "$old_map_count" >/proc/sys/vm/max_map_count; fi
}
trap cleanup EXIT
kernel=$(uname -r)
kmajor=${kernel%%.*}
kminor=${kernel#*.}
kminor=${kminor%%[!0-9]*}
has_guard_regions=0
if [ "$kmajor" -gt 6 ] || { [ "$kmajor" -eq 6 ] && [ "$kminor" -ge 13 ]; }; then has_guard_regions=1; fi
if [ "$has_guard_regions" -eq 0 ] && [ "$old_map_count" -lt "$skynet_map_count" ]; then
  if [ "$(id -u)" -eq 0 ] && (echo "$skynet_map_count" >/proc/sys/vm/max_map_count) 2>/dev/null; then
    echo "skynet.sh: vm.max_map_count raised from $old_map_count to $skynet_map_count for this run" >&2
  else
    echo "skynet.sh: vm.max_map_count is $old_map_count, skynet needs $skynet_map_count; as root: sysctl -w vm.max_map_count=$skynet_map_count" >&2
    exit 1
  fi
fi

status=0
# run_one NAME ROUND: one process of NAME (tern or go), its output kept in $tmp/NAME.ROUND.log; returns non-zero if it
# failed or printed a wrong or missing result.
run_one() {
  local name=$1 round=$2 log="$tmp/$1.$2.log"
  echo "== round $round: $name-skynet (procs $procs) --rounds $per_run"
  if [ "$name" = tern ]; then
    "$build_dir/bin/tern-skynet" --procs "$procs" --rounds "$per_run" --size "$size" | tee "$log" || return 1
  else
    GOMAXPROCS=$procs "$build_dir/bin/go-skynet" --rounds "$per_run" --size "$size" | tee "$log" || return 1
  fi
  check_sums "$log" || { echo "skynet.sh: $name-skynet printed a wrong or missing result" >&2; return 1; }
}

: >"$tmp/pairs"
for ((r = 1; r <= rounds; r++)); do
  order=(tern go)
  if ((r % 2 == 0)); then order=(go tern); fi
  ok=1
  for name in "${order[@]}"; do
    run_one "$name" "$r" || { echo "skynet.sh: round $r: $name-skynet failed" >&2; ok=0; status=1; }
  done
  [ "$ok" -eq 1 ] || continue
  t=$(last_ms "$tmp/tern.$r.log")
  g=$(last_ms "$tmp/go.$r.log")
  echo "$t $g" >>"$tmp/pairs"
  awk -v r="$r" -v t="$t" -v g="$g" 'BEGIN {printf "round %d: tern %d ms, go %d ms, tern/go %.2f\n", r, t, g, (g > 0 ? t / g : 0)}'
done

pairs=$(wc -l <"$tmp/pairs")
if [ "$pairs" -gt 0 ]; then
  tern_ms=$(awk '{print $1}' "$tmp/pairs" | median)
  go_ms=$(awk '{print $2}' "$tmp/pairs" | median)
  ratio=$(awk '$2 > 0 {printf "%.4f\n", $1 / $2}' "$tmp/pairs" | median)
  awk -v t="$tern_ms" -v g="$go_ms" -v r="$ratio" -v p="$procs" -v n="$pairs" -v target="$target_ratio" 'BEGIN {
    printf "skynet (procs %d, %d interleaved rounds): median tern %d ms, go %d ms; median of per-round tern/go %.2f (target <= %.1f: %s)\n",
      p, n, t, g, r, target, r <= target ? "met" : "missed"
  }'
fi
[ "$pairs" -eq "$rounds" ] || echo "skynet.sh: only $pairs of $rounds rounds completed" >&2
exit $status
