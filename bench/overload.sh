#!/usr/bin/env bash
# bench/overload.sh: tern-echo past its knee, with and without --max-inflight auto (issue 20's overload target).
#
#   bench/overload.sh                       # 3 rounds, 10 s per load step
#   bench/overload.sh --rounds 5 --duration 15 --path '/work?us=200' --factor 2 --warmup 1s
#
# The server runs on CPU 0 with one processor, tern-load (open loop, latency from each request's intended send time)
# on CPU 1. Each round, on a fresh server per measurement:
#   1. peak: tern-load closed loop, 64 connections: X_max, the goodput at the knee;
#   2. unloaded: open loop at a tenth of X_max: the p99 of an unloaded server;
#   3. overload: open loop at --factor x X_max over 1,000 connections (so that the server, not the generator, holds
#      the queue), once without a limit and once with --max-inflight auto; each reports the goodput (200s per
#      second), the p99 of the admitted requests and the 503s per second.
# The two overload runs alternate their order by round. Then the medians over rounds, and the targets: with auto, the
# admitted p99 at most 3x the unloaded p99 and the goodput at least 90% of X_max; without it, the collapse beside.
# Every run's first --warmup (default 1 s) is load sent and not measured: the overload's onset, where the limiter
# admits a burst for up to its queue_interval (100 ms) before it declares the queue standing, and where the 1,000
# connections are opened. The warm-up's own p99 is printed beside (tern-load reports it apart).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
bin=${TERN_BIN_DIR:-$root/build/bin}
rounds=3
duration=10
path='/work?us=200'
factor=2
warmup=1s
port=18640

while [[ $# -gt 0 ]]; do
  case $1 in
    --rounds) rounds=$2; shift ;;
    --duration) duration=$2; shift ;;
    --path) path=$2; shift ;;
    --factor) factor=$2; shift ;;
    --warmup) warmup=$2; shift ;;
    --port) port=$2; shift ;;
    *) echo "overload.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
for b in tern-echo tern-load; do
  [[ -x $bin/$b ]] || { echo "overload.sh: $bin/$b not built" >&2; exit 2; }
done
out=$(mktemp -d /tmp/overload.XXXXXX)
server=
stop_server() {
  if [[ -n $server ]]; then
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=
  fi
}
trap stop_server EXIT

# start_server [FLAGS..]
start_server() {
  taskset -c 0 "$bin/tern-echo" --listen "127.0.0.1:$port" --procs 1 "$@" 2>>"$out/server.log" &
  server=$!
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/health" && return 0
    sleep 0.05
  done
  echo "overload.sh: tern-echo did not start (see $out/server.log)" >&2
  exit 1
}

# load NAME [tern-load flags..]: one run, its JSON in $out/NAME.json
load() {
  local name=$1
  shift
  taskset -c 1 "$bin/tern-load" --procs 1 --json --warmup "$warmup" -d "${duration}s" "$@" "http://127.0.0.1:$port$path" \
    >"$out/$name.json"
}

field() { /usr/bin/python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

echo "overload.sh: $rounds rounds, $duration s per step after a $warmup warm-up, path $path, factor $factor; files in $out"
for r in $(seq "$rounds"); do
  start_server
  load "peak.$r" -c 64
  stop_server
  peak=$(field "$out/peak.$r.json" "j['ok'] / j['elapsed_s']")
  start_server
  load "unloaded.$r" -c 64 -r "$(/usr/bin/python3 -c "print(max(10, $peak / 10))")"
  stop_server
  rate=$(/usr/bin/python3 -c "print($factor * $peak)")
  order=(off auto)
  (( r % 2 == 0 )) && order=(auto off)
  for mode in "${order[@]}"; do
    if [[ $mode == auto ]]; then start_server --max-inflight auto; else start_server; fi
    load "$mode.$r" -c 1000 -r "$rate" --timeout 30s
    stop_server
  done
  printf 'round %d: peak %.0f/s, unloaded p99 %.2f ms\n' "$r" "$peak" \
    "$(field "$out/unloaded.$r.json" "j['latency']['p99_s'] * 1e3")"
  for mode in off auto; do
    printf '  %-4s at %.0f/s offered: goodput %.0f/s (%.2f of peak), admitted p99 %.1f ms (warm-up %.1f ms), 503 %.0f/s, errors %s\n' \
      "$mode" "$rate" "$(field "$out/$mode.$r.json" "j['ok'] / j['elapsed_s']")" \
      "$(/usr/bin/python3 -c "import json; j=json.load(open('$out/$mode.$r.json')); print(j['ok'] / j['elapsed_s'] / $peak)")" \
      "$(field "$out/$mode.$r.json" "j['latency']['p99_s'] * 1e3 if j['ok'] else float('nan')")" \
      "$(field "$out/$mode.$r.json" "j['warmup_latency']['p99_s'] * 1e3 if j.get('warmup_ok') else float('nan')")" \
      "$(field "$out/$mode.$r.json" "j['errors'].get('status 5xx', 0) / j['elapsed_s']")" \
      "$(field "$out/$mode.$r.json" "{k: v for k, v in j['errors'].items() if k != 'status 5xx'}")"
  done
done

/usr/bin/python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def j(name): return json.load(open(f"{out}/{name}.json"))
med = statistics.median
peak = [j(f"peak.{r}")["ok"] / j(f"peak.{r}")["elapsed_s"] for r in range(1, rounds + 1)]
base = [j(f"unloaded.{r}")["latency"]["p99_s"] for r in range(1, rounds + 1)]
print(f"medians over {rounds} rounds: peak {med(peak):.0f}/s, unloaded p99 {med(base) * 1e3:.2f} ms")
for mode in ("off", "auto"):
    runs = [j(f"{mode}.{r}") for r in range(1, rounds + 1)]
    good = [x["ok"] / x["elapsed_s"] / p for x, p in zip(runs, peak)]
    p99 = [x["latency"]["p99_s"] / b if x["ok"] else float("inf") for x, b in zip(runs, base)]
    print(f"  {mode:4}: goodput {med(good):.2f} of peak (range {min(good):.2f}-{max(good):.2f}), "
          f"admitted p99 {med(p99):.1f}x unloaded (range {min(p99):.1f}-{max(p99):.1f})")
auto = [j(f"auto.{r}") for r in range(1, rounds + 1)]
g = med([x["ok"] / x["elapsed_s"] / p for x, p in zip(auto, peak)])
q = med([x["latency"]["p99_s"] / b for x, b in zip(auto, base)])
print(f"targets with auto: p99 <= 3x unloaded: {'met' if q <= 3 else 'MISSED'} ({q:.1f}x); "
      f"goodput >= 0.9 of peak: {'met' if g >= 0.9 else 'MISSED'} ({g:.2f})")
PY
