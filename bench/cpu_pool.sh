#!/usr/bin/env bash
# bench/cpu_pool.sh: does tern-echo --cpu-pool keep /health answered beside a burst of CPU work (issue 18)?
#
#   bench/cpu_pool.sh                         # 3 runs of each configuration, 10 s each
#   bench/cpu_pool.sh --runs 5 --duration 20 --pool 1
#
# Each run starts a fresh tern-echo with its default processors, then two wrk at once for --duration seconds: one on
# GET /work?us=20000 (20 ms of CPU per request) at -c8, one on GET /health at -c10. The configurations alternate
# (without the pool, then with --cpu-pool N, then again), so that a change in what else the machine runs falls on
# both. Prints each run's /health p50, p99 and rate and /work's rate, then each configuration's medians over its runs.
# The goal: /health p99 under 25 ms with --cpu-pool 1.
#
# wrk shares the CPUs with the server (2 on the development machine), so its figures include its own waits for a CPU;
# check that nothing else loads the machine first (ps aux --sort=-%cpu | head); each run line ends with the 1-minute
# load average after it, which counts the run's own wrk and server threads too (about 3 with the pool busy).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
bin=${TERN_BIN_DIR:-$root/build/bin}
runs=3
duration=10
pool=1
port=18620

while [[ $# -gt 0 ]]; do
  case $1 in
    --runs) runs=$2; shift ;;
    --duration) duration=$2; shift ;;
    --pool) pool=$2; shift ;;
    --port) port=$2; shift ;;
    *) echo "cpu_pool.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
command -v wrk >/dev/null || { echo "cpu_pool.sh: wrk not found (apt-get install wrk)" >&2; exit 2; }
[[ -x $bin/tern-echo ]] || { echo "cpu_pool.sh: $bin/tern-echo not built" >&2; exit 2; }

out=$(mktemp -d /tmp/cpu_pool.XXXXXX)
server=
cleanup() { [[ -n $server ]] && kill "$server" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT

# wrk's --latency percentile line ("    99%   12.34ms") in milliseconds.
pct_ms() {
  awk -v p="$2%" '$1 == p {
    v = $2; unit = v; sub(/[0-9.]+/, "", unit); sub(/[a-z]+$/, "", v);
    if (unit == "us") v /= 1000; else if (unit == "s") v *= 1000; else if (unit == "m") v *= 60000;
    print v; exit }' "$1"
}
rate() { awk '/^Requests\/sec:/ { print $2 }' "$1"; }
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

run_one() {  # $1: label, rest: tern-echo flags
  local label=$1 i=$2
  shift 2
  "$bin/tern-echo" --listen "127.0.0.1:$port" "$@" 2>"$out/$label.$i.server" &
  server=$!
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/health" && break
    sleep 0.05
  done
  wrk -t1 -c8 -d"${duration}s" --latency "http://127.0.0.1:$port/work?us=20000" >"$out/$label.$i.work" &
  local w=$!
  wrk -t1 -c10 -d"${duration}s" --latency "http://127.0.0.1:$port/health" >"$out/$label.$i.health"
  wait "$w"
  kill "$server"
  wait "$server" 2>/dev/null || true
  server=
  local h=$out/$label.$i.health
  printf '%-10s run %d  /health p50 %8.2f ms  p99 %8.2f ms  %9.0f req/s   /work %6.1f req/s   load %s\n' \
    "$label" "$i" "$(pct_ms "$h" 50)" "$(pct_ms "$h" 99)" "$(rate "$h")" "$(rate "$out/$label.$i.work")" \
    "$(cut -d' ' -f1 /proc/loadavg)"
}

echo "tern-echo $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) CPUs, $(
  "$bin/tern-echo" --dry-run | awk -F': ' '/"procs":/ { gsub(/,/, "", $2); print $2; exit }') processors by default"
for i in $(seq "$runs"); do
  run_one nopool "$i"
  run_one "pool$pool" "$i" --cpu-pool "$pool"
done
for label in nopool "pool$pool"; do
  p99=$(for i in $(seq "$runs"); do pct_ms "$out/$label.$i.health" 99; done | median)
  p50=$(for i in $(seq "$runs"); do pct_ms "$out/$label.$i.health" 50; done | median)
  hr=$(for i in $(seq "$runs"); do rate "$out/$label.$i.health"; done | median)
  wr=$(for i in $(seq "$runs"); do rate "$out/$label.$i.work"; done | median)
  printf '%-10s median of %d: /health p50 %.2f ms, p99 %.2f ms, %.0f req/s; /work %.1f req/s\n' "$label" "$runs" \
    "$p50" "$p99" "$hr" "$wr"
done
echo "raw wrk output: $out"
