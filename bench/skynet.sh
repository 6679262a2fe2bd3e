#!/usr/bin/env bash
# bench/skynet.sh: tern-skynet and the Go skynet (bench/peers/go_skynet) in one run, same processor count, same
# rounds; prints both programs' output, the median round of each and the ratio tern/go (target: at most 0.5).
#
#   bench/skynet.sh [--procs N] [--rounds R]      # defaults: every CPU this process may run on, 5 rounds
#
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

# The median of the "Result: S in N ms." lines of a log (lower middle for an even count).
median_ms() { grep -Eo 'in [0-9]+ ms\.' "$1" | awk '{print $2}' | sort -n | awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]}'; }
expected=$(awk -v n="$size" 'BEGIN {printf "%.0f", n * (n - 1) / 2}')
check_sums() {
  local bad
  bad=$(grep -E '^Result:' "$1" | grep -vc "^Result: $expected in" || true)
  [ "$(grep -c '^Result:' "$1")" -eq "$rounds" ] && [ "$bad" -eq 0 ]
}

tmp=$(mktemp -d)
old_map_count=$(cat /proc/sys/vm/max_map_count)
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

echo "== tern-skynet --procs $procs --rounds $rounds"
"$build_dir/bin/tern-skynet" --procs "$procs" --rounds "$rounds" --size "$size" | tee "$tmp/tern.log"
echo "== go-skynet (GOMAXPROCS=$procs) --rounds $rounds"
GOMAXPROCS=$procs "$build_dir/bin/go-skynet" --rounds "$rounds" --size "$size" | tee "$tmp/go.log"

status=0
check_sums "$tmp/tern.log" || { echo "skynet.sh: tern-skynet printed a wrong or missing result" >&2; status=1; }
check_sums "$tmp/go.log" || { echo "skynet.sh: go-skynet printed a wrong or missing result" >&2; status=1; }
tern_ms=$(median_ms "$tmp/tern.log")
go_ms=$(median_ms "$tmp/go.log")
if [ -n "$tern_ms" ] && [ -n "$go_ms" ] && [ "$go_ms" -gt 0 ]; then
  awk -v t="$tern_ms" -v g="$go_ms" -v p="$procs" -v target="$target_ratio" 'BEGIN {
    r = t / g
    printf "skynet median (procs %d): tern %d ms, go %d ms, tern/go %.2f (target <= %.1f: %s)\n",
      p, t, g, r, target, r <= target ? "met" : "missed"
  }'
fi
exit $status
