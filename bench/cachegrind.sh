#!/usr/bin/env bash
# bench/cachegrind.sh: instructions and simulated cache misses per request of tern-echo builds, which a shared VM's
# timing noise leaves intact (docs/performance.md, "lazy deadlines"). Each binary runs under
# `valgrind --tool=cachegrind --cache-sim=yes` with one processor on the epoll backend while `wrk -t1 -cN` asks for
# /health (a warm-up run, then the measured one); the totals over all requests of both are divided by their count.
#
#   bench/cachegrind.sh build/bin/tern-echo                      # one build
#   bench/cachegrind.sh /tmp/base/tern-echo build/bin/tern-echo  # two builds, in turn
#   bench/cachegrind.sh --conns 1000 --duration 8 --rounds 2 A B
#   bench/cachegrind.sh --conns 100 --lua post512.lua --path /echo \
#     "build/bin/tern-echo --buffers pool" "build/bin/tern-echo --buffers alloc"   # one build, two settings
#
# A binary may carry flags of its own (one quoted argument, split at spaces); --lua hands wrk a script (a POST body,
# pipelining) and --path names the URL path (/health by default). The epoll backend only: under valgrind a thread
# asleep in io_uring_enter keeps valgrind's thread lock, and tern-echo on io_uring hangs at exit before cachegrind
# has written anything.
#
# Under valgrind the server is about 50x slower and serializes its threads, so many requests wait per poll: the
# figures compare builds with each other, not with a server at full speed.
set -euo pipefail
conns=2000 duration=8 rounds=1 port=18807 lua="" path=/health
bins=()
while [ $# -gt 0 ]; do
  case $1 in
    --conns) conns=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --lua) lua=$2; shift 2 ;;
    --path) path=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    -*) echo "cachegrind.sh: unknown option $1" >&2; exit 2 ;;
    *) bins+=("$1"); shift ;;
  esac
done
[ ${#bins[@]} -gt 0 ] || { echo "cachegrind.sh: name at least one tern-echo binary" >&2; exit 2; }
for tool in valgrind cg_annotate wrk; do
  command -v $tool >/dev/null || { echo "cachegrind.sh: $tool is missing (apt-get install valgrind wrk)" >&2; exit 2; }
done
ulimit -n $((conns * 2 + 1000))
script=()
[ -n "$lua" ] && script=(-s "$lua")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

one() {  # BIN FILE: prints "requests instr/req D1-read-misses/req D1-write-misses/req LL-read-misses/req"
  local bin=$1 file=$2 pid n1 n2
  # shellcheck disable=SC2086  # a binary's own flags are meant to split
  valgrind --tool=cachegrind --cache-sim=yes --cachegrind-out-file="$file" $bin --listen 127.0.0.1:$port \
    --procs 1 --poller epoll >/dev/null 2>"$file.err" &
  pid=$!
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
    sleep 0.1
  done
  n1=$(wrk -t1 -c"$conns" -d3s "${script[@]}" "http://127.0.0.1:$port$path" 2>&1 | awk '/requests in/{print $1}')
  n2=$(wrk -t1 -c"$conns" -d"${duration}s" "${script[@]}" "http://127.0.0.1:$port$path" 2>&1 |
    awk '/requests in/{print $1}')
  kill -INT $pid 2>/dev/null || true
  wait $pid 2>/dev/null || true
  [ -s "$file" ] || { echo "cachegrind.sh: no cachegrind output for $bin ($(tail -1 "$file.err"))" >&2; return 1; }
  # PROGRAM TOTALS: Ir (..) I1mr (..) ILmr (..) Dr (..) D1mr (..) DLmr (..) Dw (..) D1mw (..) DLmw
  cg_annotate "$file" 2>/dev/null | grep "PROGRAM TOTALS" | tr -d ',' |
    awk -v n=$((n1 + n2)) '{ printf "%d %.0f %.2f %.2f %.3f\n", n, $1 / n, $9 / n, $15 / n, $11 / n }'
}

printf '%-40s %5s %10s %12s %11s %11s %11s\n' binary round requests "instr/req" "D1mr/req" "D1mw/req" "LLmr/req"
for r in $(seq "$rounds"); do
  i=0
  for b in "${bins[@]}"; do
    i=$((i + 1))
    read -r n ir d1r d1w llr < <(one "$b" "$out/cg.$r.$i")
    printf '%-40s %5d %10d %12s %11s %11s %11s\n' "$b" "$r" "$n" "$ir" "$d1r" "$d1w" "$llr"
  done
done
