#!/usr/bin/env bash
# bench/ab.sh: two tern-echo builds (or one build with two sets of flags) against each other, one server core each:
# the server on CPU 0 with one processor, `wrk -t1` on CPU 1, server CPU per response from /proc/PID/stat, in pairs
# whose order alternates (A first, then B first, ...), with the medians of the pairs' ratios B/A.
#
#   bench/ab.sh /tmp/base/tern-echo build/bin/tern-echo
#   bench/ab.sh --poller uring --conns 10000 --pairs 8 A B
#   bench/ab.sh "build/bin/tern-echo --buffers pool" "build/bin/tern-echo --buffers alloc"
#   bench/ab.sh --lua /tmp/pipe16.lua --path / A B     # any wrk script (pipelining, POST bodies)
#   bench/ab.sh "tern-echo --poller epoll" "env TERN_URING_DEFER=on tern-echo --poller uring"   # backends
#
# Alternating the order, and one port for both, leaves drift in the shared machine's speed and the port's history
# (connections in TIME_WAIT) to both sides alike. What this VM resolves: the same binary against itself gave median
# B/A 1.055 [0.90-1.17] over 6 pairs and 0.951 [0.88-1.04] over 8 (docs/performance.md 2026-12-08), so a difference
# under about 5% needs bench/cachegrind.sh instead. Per pair: a fresh server each, 1 s of warm-up load, then
# `--duration` seconds measured. A run with socket errors still counts, and is marked.
set -euo pipefail
poller=epoll conns=1000 pairs=6 duration=4 lua="" path=/health
cmds=()
while [ $# -gt 0 ]; do
  case $1 in
    --poller) poller=$2; shift 2 ;;
    --conns) conns=$2; shift 2 ;;
    --pairs) pairs=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --lua) lua=$2; shift 2 ;;
    --path) path=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) echo "ab.sh: unknown option $1" >&2; exit 2 ;;
    *) cmds+=("$1"); shift ;;
  esac
done
[ ${#cmds[@]} -eq 2 ] || { echo "ab.sh: name two tern-echo commands, A and B" >&2; exit 2; }
command -v wrk >/dev/null || { echo "ab.sh: wrk is missing (apt-get install wrk)" >&2; exit 2; }
want=$((conns * 2 + 1000)) hard=$(ulimit -Hn)
[ "$hard" = unlimited ] || [ "$want" -le "$hard" ] || want=$hard
ulimit -n "$want"
script=()
[ -n "$lua" ] && script=(-s "$lua")
hz=$(getconf CLK_TCK)

one() {  # CMD PORT: prints "responses cpu_us_per_response socket_error_lines"
  local cmd=$1 port=$2 pid t0 t1 out n err
  local pflag="--poller $poller"
  case " $cmd " in *" --poller "*) pflag="" ;; esac  # a command that names its own backend keeps it
  # shellcheck disable=SC2086  # the command's flags are meant to split
  taskset -c 0 $cmd --listen 127.0.0.1:$port --procs 1 $pflag >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 50); do
    (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
    sleep 0.1
  done
  taskset -c 1 wrk -t1 -c"$conns" -d1s "${script[@]}" "http://127.0.0.1:$port$path" >/dev/null 2>&1 || true
  t0=$(awk '{print $14 + $15}' /proc/$pid/stat)
  out=$(taskset -c 1 wrk -t1 -c"$conns" -d"${duration}s" "${script[@]}" "http://127.0.0.1:$port$path" 2>&1 || true)
  t1=$(awk '{print $14 + $15}' /proc/$pid/stat)
  kill $pid 2>/dev/null || true
  wait $pid 2>/dev/null || true
  n=$(echo "$out" | awk '/requests in/{print $1}')
  err=$(echo "$out" | grep -c "Socket errors" || true)
  [ -n "$n" ] && [ "$n" -gt 0 ] || { echo "ab.sh: no responses from: $cmd" >&2; exit 1; }
  awk -v n="$n" -v t=$((t1 - t0)) -v hz="$hz" -v e="$err" 'BEGIN { printf "%d %.3f %d\n", n, t * 1e6 / hz / n, e }'
}

ratios=$(mktemp)
trap 'rm -f "$ratios"' EXIT
printf '%-5s %-6s %12s %10s %12s %10s %8s %8s\n' pair first "A resp" "A us/resp" "B resp" "B us/resp" "B/A cpu" "B/A resp"
for i in $(seq "$pairs"); do
  if [ $((i % 2)) -eq 1 ]; then
    first=A; read -r na ca ea < <(one "${cmds[0]}" 18811); read -r nb cb eb < <(one "${cmds[1]}" 18811)
  else
    first=B; read -r nb cb eb < <(one "${cmds[1]}" 18811); read -r na ca ea < <(one "${cmds[0]}" 18811)
  fi
  awk -v i="$i" -v f=$first -v na="$na" -v ca="$ca" -v nb="$nb" -v cb="$cb" -v ea="$ea" -v eb="$eb" 'BEGIN {
    printf "%-5d %-6s %12d %10.2f %12d %10.2f %8.3f %8.3f%s\n", i, f, na, ca, nb, cb, cb / ca, nb / na,
      (ea + eb > 0 ? "  (socket errors)" : "") }'
  awk -v ca="$ca" -v cb="$cb" -v na="$na" -v nb="$nb" 'BEGIN { print cb / ca, nb / na }' >>"$ratios"
done
med() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo "median B/A: cpu per response $(cut -d' ' -f1 "$ratios" | med) [$(cut -d' ' -f1 "$ratios" | sort -g | head -1)-$(cut -d' ' -f1 "$ratios" | sort -g | tail -1)]," \
  "responses/s $(cut -d' ' -f2 "$ratios" | med); $pairs pairs, $poller, -c$conns"
