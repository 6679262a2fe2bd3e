#!/usr/bin/env bash
# bench/parked.sh: many parked fibers, tern-parked (bench/parked/parked.cc) beside the Go program (parked.go), on the
# same processor count, interleaved: at each N, each of R rounds runs tern then Go (Go then tern in even rounds), so a
# slow spell of a shared machine hits both sides of a pair. Each program spawns N fibers (goroutines) that write a
# 1 KiB local array and park on one WaitGroup, and prints the time to spawn and park them all and the resident memory
# they added per fiber (VmRSS with all parked minus VmRSS before the first spawn, over N), the page tables they added
# per fiber (VmPTE, which VmRSS leaves out), and its CPU time (user + system) over the spawning and parking, which a
# loaded machine stretches less than the wall time. Prints every run,
# then per N each program's medians (with min-max) and the medians of the per-round tern/go ratios. Targets (issue 19): bytes
# per fiber (resident pages and page tables) at most 1.7x Go's, time at most Go's.
#
#   bench/parked.sh [--procs N] [--rounds R] [--sizes "200000 1000000"] [--stack-size SIZE]
#   # defaults: 2 procs, 5 rounds, tern's default stack size (TERN_STACK_SIZE for tern-parked otherwise)
#
# Builds tern-parked in $TERN_BUILD_DIR (default build; configure it first) and the Go program into
# $TERN_BUILD_DIR/bin/go-parked (Debian's golang-go, GOPATH mode, offline). A million fibers need about 4.5 GB for
# tern and 2.8 GB for Go, one program at a time. Exits non-zero if a program fails; the ratios are reported, not
# enforced (the machine may be shared).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${TERN_BUILD_DIR:-build}
case $build_dir in /*) ;; *) build_dir=$root/$build_dir ;; esac
procs=2
rounds=5
sizes="200000 1000000"
stack_size=
# The ratios the issue sets against Go.
target_mem_ratio=1.7
target_time_ratio=1.0

while [ $# -gt 0 ]; do
  case $1 in
    --procs) procs=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --sizes) sizes=$2; shift 2 ;;
    --stack-size) stack_size=$2; shift 2 ;;
    *) echo "usage: bench/parked.sh [--procs N] [--rounds R] [--sizes \"N1 N2\"] [--stack-size SIZE]" >&2; exit 2 ;;
  esac
done

[ -f "$build_dir/CMakeCache.txt" ] || { echo "parked.sh: $build_dir is not configured" >&2; exit 1; }
cmake --build "$build_dir" -j "${TERN_JOBS:-1}" --target tern-parked >/dev/null
command -v go >/dev/null || { echo "parked.sh: go not found: apt-get install golang-go" >&2; exit 1; }
mkdir -p "$build_dir/bin"
GOCACHE=${GOCACHE:-$build_dir/bin/.gocache} GO111MODULE=off GOPROXY=off GOFLAGS='' \
  go build -o "$build_dir/bin/go-parked" "$root/bench/parked/parked.go"

# Each stack is one mapping with guard regions (Linux 6.13+), two on older kernels: a million fibers then need
# vm.max_map_count above two million.
max_n=0
for n in $sizes; do [ "$n" -gt "$max_n" ] && max_n=$n; done
need_maps=$((2 * max_n + 65536))
old_map_count=$(cat /proc/sys/vm/max_map_count)
tmp=$(mktemp -d)
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  rm -rf "$tmp"
  if [ "$(cat /proc/sys/vm/max_map_count)" != "$old_map_count" ]; then
    echo "$old_map_count" >/proc/sys/vm/max_map_count
  fi
}
trap cleanup EXIT
kernel=$(uname -r)
kmajor=${kernel%%.*}
kminor=${kernel#*.}
kminor=${kminor%%[!0-9]*}
has_guard_regions=0
if [ "$kmajor" -gt 6 ] || { [ "$kmajor" -eq 6 ] && [ "$kminor" -ge 13 ]; }; then has_guard_regions=1; fi
if [ "$has_guard_regions" -eq 0 ] && [ "$old_map_count" -lt "$need_maps" ]; then
  if [ "$(id -u)" -eq 0 ] && (echo "$need_maps" >/proc/sys/vm/max_map_count) 2>/dev/null; then
    echo "parked.sh: vm.max_map_count raised from $old_map_count to $need_maps for this run" >&2
  else
    echo "parked.sh: vm.max_map_count is $old_map_count, $max_n fibers need $need_maps:" \
      "sysctl -w vm.max_map_count=$need_maps" >&2
    exit 1
  fi
fi

# The median of a column of numbers on stdin (lower middle for an even count).
median() { sort -g | awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]}'; }
# field LOG NAME: the value of NAME=... on the program's "parked" line.
field() { grep '^parked ' "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k {print $2}'; }

echo "parked.sh: procs $procs, $rounds rounds, sizes $sizes, tern stack size ${stack_size:-default};" \
  "$(uname -r); load $(cut -d' ' -f1-3 /proc/loadavg)"
status=0
for n in $sizes; do
  : >"$tmp/rows.$n"
  for ((r = 1; r <= rounds; r++)); do
    order=(tern go)
    if ((r % 2 == 0)); then order=(go tern); fi
    ok=1
    for name in "${order[@]}"; do
      log=$tmp/$name.$n.$r.log
      if [ "$name" = tern ]; then
        TERN_STACK_SIZE=${stack_size:-${TERN_STACK_SIZE:-}} "$build_dir/bin/tern-parked" --procs "$procs" -n "$n" \
          >"$log" 2>"$log.err" || ok=0
      else
        GOMAXPROCS=$procs "$build_dir/bin/go-parked" -n "$n" >"$log" 2>"$log.err" || ok=0
      fi
      grep -q '^parked ' "$log" || ok=0
      [ "$ok" -eq 1 ] || { echo "parked.sh: n=$n round $r: $name failed:" >&2; cat "$log.err" >&2; status=1; break; }
      echo "n=$n round $r $name: $(grep '^parked ' "$log")"
    done
    [ "$ok" -eq 1 ] || continue
    # Resident pages plus page tables.
    tb=$(($(field "$tmp/tern.$n.$r.log" bytes_per_fiber) + $(field "$tmp/tern.$n.$r.log" pte_bytes_per_fiber)))
    gb=$(($(field "$tmp/go.$n.$r.log" bytes_per_fiber) + $(field "$tmp/go.$n.$r.log" pte_bytes_per_fiber)))
    tp=$(field "$tmp/tern.$n.$r.log" pte_bytes_per_fiber)
    gp=$(field "$tmp/go.$n.$r.log" pte_bytes_per_fiber)
    tm=$(field "$tmp/tern.$n.$r.log" spawn_park_ms)
    gm=$(field "$tmp/go.$n.$r.log" spawn_park_ms)
    tc=$(field "$tmp/tern.$n.$r.log" cpu_ms)
    gc=$(field "$tmp/go.$n.$r.log" cpu_ms)
    echo "$tb $gb $tm $gm $tc $gc $tp $gp" >>"$tmp/rows.$n"
  done
  [ -s "$tmp/rows.$n" ] || continue
  col() { awk -v c="$1" '{print $c}' "$tmp/rows.$n"; }
  range() { col "$1" | sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%s-%s", lo, hi}'; }
  mem_ratio=$(awk '$2 > 0 {printf "%.4f\n", $1 / $2}' "$tmp/rows.$n" | median)
  time_ratio=$(awk '$4 > 0 {printf "%.4f\n", $3 / $4}' "$tmp/rows.$n" | median)
  time_ratios=$(awk '$4 > 0 {printf "%.2f\n", $3 / $4}' "$tmp/rows.$n" | sort -g |
    awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%s-%s", lo, hi}')
  printf 'n=%d (%d rounds): bytes/fiber (resident + page tables) tern %s (%s; page tables %s) go %s (%s; page tables %s),' \
    "$n" "$(wc -l <"$tmp/rows.$n")" "$(col 1 | median)" "$(range 1)" "$(col 7 | median)" "$(col 2 | median)" "$(range 2)" \
    "$(col 8 | median)"
  printf ' tern/go %.2f (target <= %s: %s)\n' "$mem_ratio" \
    "$target_mem_ratio" "$(awk -v r="$mem_ratio" -v t="$target_mem_ratio" 'BEGIN {print (r <= t ? "met" : "missed")}')"
  printf 'n=%d (%d rounds): spawn+park ms tern %s (%s) go %s (%s), tern/go %.2f (range %s; target <= %s: %s)\n' \
    "$n" "$(wc -l <"$tmp/rows.$n")" "$(col 3 | median)" "$(range 3)" "$(col 4 | median)" "$(range 4)" "$time_ratio" \
    "$time_ratios" "$target_time_ratio" \
    "$(awk -v r="$time_ratio" -v t="$target_time_ratio" 'BEGIN {print (r <= t ? "met" : "missed")}')"
  cpu_ratio=$(awk '$6 > 0 {printf "%.4f\n", $5 / $6}' "$tmp/rows.$n" | median)
  printf 'n=%d (%d rounds): CPU ms over spawn+park tern %s (%s) go %s (%s), tern/go %.2f\n' \
    "$n" "$(wc -l <"$tmp/rows.$n")" "$(col 5 | median)" "$(range 5)" "$(col 6 | median)" "$(range 6)" "$cpu_ratio"
done
exit $status
