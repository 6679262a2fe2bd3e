#!/usr/bin/env bash
# bench/cswitch.sh: who waits for a CPU while wrk drives one server. On a machine where wrk and the server share the
# CPUs, a latency percentile is partly the server's and partly wrk's own delay in reading a response (wrk times a
# request from its write to its read, so a wrk thread that waits for a CPU adds that wait). This prints the latency
# percentiles of one wrk run beside the context switches, per thread and per second, of the server's threads and of
# wrk's: voluntary (the thread slept) and involuntary (it was preempted, and waited runnable).
#
#   bench/cswitch.sh -- build/bin/tern-echo --listen 127.0.0.1:PORT
#   bench/cswitch.sh --conns 1000 --duration 5 -- build/bin/epoll-responder --listen 127.0.0.1:PORT
#
# PORT in the server command is replaced by a free port. The counts come from /proc/PID/task/*/status, sampled after
# a warm-up second and again one second before wrk ends, so that connection setup and teardown are left out.
set -euo pipefail

conns=100
duration=5
threads=2
path=/health
port=0

usage() {
  sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  echo
  echo "options: --conns N --duration S (at least 3) --threads N (wrk -t) --path P --port P -- SERVER COMMAND"
}

while [[ $# -gt 0 ]]; do
  case $1 in
    --conns) conns=$2; shift ;;
    --duration) duration=$2; shift ;;
    --threads) threads=$2; shift ;;
    --path) path=$2; shift ;;
    --port) port=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) echo "cswitch.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
die() { echo "cswitch.sh: $*" >&2; exit 1; }
[[ $# -gt 0 ]] || { usage >&2; exit 2; }
if ! [[ $duration =~ ^[0-9]+$ ]] || ((duration < 3)); then
  die "--duration must be a whole number of seconds, at least 3"
fi
command -v wrk >/dev/null || die "wrk not found: apt-get install wrk"
command -v curl >/dev/null || die "curl not found: apt-get install curl"

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if ((port == 0)); then
  for _ in $(seq 50); do
    port=$((20000 + RANDOM % 20000))
    port_free "$port" && break
  done
fi
port_free "$port" || die "port $port is in use"

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
work=$(mktemp -d /tmp/tern-cswitch.XXXXXX)
server_pid=""
wrk_pid=""
cleanup() {
  if [[ -n $wrk_pid ]]; then kill "$wrk_pid" 2>/dev/null || true; fi
  if [[ -n $server_pid ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

args=("${@//PORT/$port}")
"${args[@]}" >"$work/server.log" 2>&1 &
server_pid=$!
up=0
for _ in $(seq 100); do
  if curl -sf -o /dev/null "http://127.0.0.1:$port$path"; then up=1; break; fi
  kill -0 "$server_pid" 2>/dev/null || die "the server exited at start: $(cat "$work/server.log")"
  sleep 0.05
done
((up)) || die "the server did not answer $path on port $port within 5 s"

cat >"$work/pct.lua" <<'EOF'
done = function(summary, latency, requests)
  local s = ""
  for _, p in ipairs({50, 90, 95, 99, 99.9}) do
    s = s .. string.format(" p%s=%.2fms", p, latency:percentile(p) / 1000)
  end
  io.write(string.format("latency%s  req/s=%.0f\n", s, summary.requests / (summary.duration / 1e6)))
end
EOF

# Per thread: "tid voluntary involuntary".
snap() {
  local t
  for t in /proc/"$1"/task/*; do
    awk -v tid="${t##*/}" '/^voluntary_ctxt_switches/ { v = $2 } /^nonvoluntary_ctxt_switches/ { n = $2 }
      END { print tid, v, n }' "$t/status" 2>/dev/null || true
  done
}
# Threads that switched in the window: per-second rates, busiest first, then the process total.
report() {  # name, before file, after file, seconds
  join "$2" "$3" | awk -v name="$1" -v secs="$4" '
    { v = ($4 - $2) / secs; n = ($5 - $3) / secs; tv += v; tn += n
      if (v + n >= 1) rows[++k] = sprintf("  %-6s tid %-8s %9.0f %9.0f", name, $1, v, n) }
    END { for (i = 1; i <= k; i++) print rows[i]
          printf "  %-6s %-12s %9.0f %9.0f\n", name, "total", tv, tn }'
}

wrk -t"$threads" -c"$conns" -d1s "http://127.0.0.1:$port$path" >/dev/null  # warm-up: connections, stacks, rings
wrk -t"$threads" -c"$conns" -d"${duration}s" -s "$work/pct.lua" "http://127.0.0.1:$port$path" >"$work/wrk.out" 2>&1 &
wrk_pid=$!
sleep 1
window=$((duration - 2))
snap "$wrk_pid" | sort >"$work/w0"
snap "$server_pid" | sort >"$work/s0"
sleep "$window"
snap "$wrk_pid" | sort >"$work/w1"
snap "$server_pid" | sort >"$work/s1"
wait "$wrk_pid" || die "wrk failed: $(cat "$work/wrk.out")"
wrk_pid=""

echo "cswitch.sh: wrk -t$threads -c$conns -d${duration}s GET $path against: ${args[*]}"
grep '^latency' "$work/wrk.out" || die "wrk printed no latency: $(cat "$work/wrk.out")"
echo "context switches per second over ${window} s (voluntary = slept, involuntary = preempted):"
printf '  %-6s %-12s %9s %9s\n' side thread vol/s invol/s
report server "$work/s0" "$work/s1" "$window"
report wrk "$work/w0" "$work/w1" "$window"
