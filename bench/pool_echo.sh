#!/usr/bin/env bash
# bench/pool_echo.sh: the sync.Pool cache experiment (../shared/CAPACITY.md) in tern's terms: tern-echo with each
# request's read buffer from tern::Pool (--buffers pool) against new/delete (--buffers alloc), side by side.
#
#   bench/pool_echo.sh                       # 5 interleaved pairs of 5 s runs, medians and ranges
#   bench/pool_echo.sh --pairs 7 --duration 10 --bin build/bin --body 512
#
# Each run starts a fresh server pinned to CPU 0 (`taskset -c 0 tern-echo --procs 1 --buffers MODE`), warms it for
# 1 s, then loads it from CPU 1 (`taskset -c 1 wrk -t1 -c100 -dDs`, POST /echo with a BODY-byte body, so every
# request is read into the buffer and echoed from it) while `perf stat -e cache-references,cache-misses` watches the
# server. CPU per request is the server's utime+stime (/proc/PID/stat) over the load, divided by wrk's request count.
# Pairs alternate which mode goes first, so drift in the shared machine's speed hits both alike.
#
# Prints one line per run and then, per mode, the median and range of requests/s, CPU us per request, cache
# references and misses per request (where the machine exposes the counters: in a VM without a PMU perf says
# <not supported> and the columns read n/a).
set -euo pipefail

pairs=5
duration=5
bin=build/bin
body=512
base_port=18480
while [[ $# -gt 0 ]]; do
  case "$1" in
    --pairs) pairs="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    --body) body="$2"; shift 2 ;;
    --port) base_port="$2"; shift 2 ;;
    *) echo "pool_echo.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
for p in "$bin/tern-echo" wrk perf taskset; do
  command -v "$p" > /dev/null || { echo "pool_echo.sh: $p not found" >&2; exit 1; }
done

work=$(mktemp -d /tmp/pool_echo.XXXXXX)
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = string.rep("x", $body)
wrk.headers["Content-Type"] = "application/octet-stream"
LUA
clk=$(getconf CLK_TCK)

cpu_ticks() {  # utime + stime of PID, in clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat"
}

runs=0
run_one() {  # mode index
  local mode=$1 i=$2 out="$work/$1.$2"
  # A port per run: the last run's connections may hold the previous one in TIME_WAIT.
  runs=$((runs + 1))
  local port=$((base_port + runs))
  taskset -c 0 "$bin/tern-echo" --procs 1 --listen "127.0.0.1:$port" --buffers "$mode" > "$out.server" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do
    (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null && break
    sleep 0.05
  done
  taskset -c 1 wrk -t1 -c100 -d1s -s "$work/post.lua" "http://127.0.0.1:$port/echo" > /dev/null
  kill -0 "$pid" 2> /dev/null || { echo "pool_echo.sh: tern-echo exited:" >&2; cat "$out.server" >&2; exit 1; }
  local t0; t0=$(cpu_ticks "$pid")
  perf stat -e cache-references,cache-misses -x, -o "$out.perf" -p "$pid" -- sleep "$((duration + 1))" &
  local perf_pid=$!
  taskset -c 1 wrk -t1 -c100 -d"${duration}s" -s "$work/post.lua" "http://127.0.0.1:$port/echo" > "$out.wrk"
  local t1; t1=$(cpu_ticks "$pid")
  wait "$perf_pid" || true
  kill "$pid"; wait "$pid" 2> /dev/null || true
  echo "$mode $i $((t1 - t0))" >> "$work/cpu"
}

for i in $(seq "$pairs"); do
  if (( i % 2 )); then order="pool alloc"; else order="alloc pool"; fi
  for mode in $order; do run_one "$mode" "$i"; done
done

python3 - "$work" "$clk" <<'PY'
import os, re, statistics, sys
work, clk = sys.argv[1], int(sys.argv[2])
cpu = {}
for line in open(os.path.join(work, "cpu")):
    mode, i, ticks = line.split()
    cpu[(mode, i)] = int(ticks)
rows = {}
for (mode, i), ticks in sorted(cpu.items()):
    w = open(os.path.join(work, f"{mode}.{i}.wrk")).read()
    reqs = int(re.search(r"(\d+) requests in", w).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", w).group(1))
    perf = {}
    for l in open(os.path.join(work, f"{mode}.{i}.perf")):
        f = l.strip().split(",")
        if len(f) > 2 and f[2] in ("cache-references", "cache-misses"):
            perf[f[2]] = float(f[0]) if re.match(r"^[\d.]+$", f[0]) else None
    us = ticks / clk * 1e6 / reqs
    refs = perf.get("cache-references"); miss = perf.get("cache-misses")
    r = dict(rps=rps, us=us, refs=refs / reqs if refs else None, miss=miss / reqs if miss else None)
    rows.setdefault(mode, []).append(r)
    refs_s = "n/a" if r["refs"] is None else "%.1f" % r["refs"]
    miss_s = "n/a" if r["miss"] is None else "%.2f" % r["miss"]
    print(f"{mode:5} run {i}: {rps:9.0f} req/s  {us:6.2f} us CPU/req  refs/req {refs_s}  misses/req {miss_s}")
def summary(vals):
    vals = [v for v in vals if v is not None]
    if not vals: return "n/a"
    return f"{statistics.median(vals):.2f} [{min(vals):.2f}, {max(vals):.2f}]"
print()
for mode in ("pool", "alloc"):
    rs = rows.get(mode, [])
    print(f"{mode:5}: req/s {summary([r['rps'] for r in rs])}  CPU us/req {summary([r['us'] for r in rs])}  "
          f"cache-refs/req {summary([r['refs'] for r in rs])}  cache-misses/req {summary([r['miss'] for r in rs])}")
print(f"(raw output in {work})")
PY
