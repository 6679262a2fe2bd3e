#!/usr/bin/env bash
# bench/echo.sh: wrk against tern-echo (io_uring and epoll backends), the minimal epoll responder (the no-runtime
# limit, bench/peers/epoll_responder), Go's net/http (bench/peers/go_http) and Tokio (bench/peers/tokio_http), side
# by side in one run.
#
#   bench/echo.sh                 # -c100 and -c1000, 3 runs of 10 s each per server, medians
#   bench/echo.sh --quick         # one 1 s run per server and connection count (`tools/tern bench echo --quick`)
#   bench/echo.sh --bin build-echo/bin --conns "100 1000" --runs 5 --duration 20
#   bench/echo.sh --restart --runs 9   # every server started afresh (and warmed 1 s) before each of its runs
#   bench/echo.sh --report /tmp/a /tmp/b   # no runs: the table and ratios over the raw output of earlier --out DIRs
#   bench/echo.sh --pinned [percore.py flags]   # the per-core mode: bench/percore.py (server on CPU 0, wrk on CPU 1,
#                                               # one processor each, CPU per response, a Tokio peer; issue 21)
#
# With --restart each run measures new server processes: the kernel places a process's threads on the CPUs early in
# its life and the placement tends to hold, and the -c100 tail differs by a factor of about 1.5 between placements
# (threads of a server on separate CPUs or sharing one), so runs of one process sample one placement.
#
# All servers run at once, each on its own port, idle except while wrk measures it; runs interleave the servers
# (run 1 of every server, then run 2, ..., in reverse order on every other run) so that drift in the machine's load
# hits all of them alike. Nothing is pinned: wrk (-t2) and every server (2 processors: tern-echo --procs auto, 2
# epoll-responder threads, Go's default GOMAXPROCS, Tokio's default workers) float over the same CPUs, so both sides
# of every comparison share the machine the same way. `--pinned` is the per-core mode instead (bench/percore.py).
#
# Prints, per connection count and server: the valid runs, requests/s, p50 and p99 latency, the runs invalidated by socket
# errors, socket errors (connect+read+write+timeout, summed over all runs) and non-2xx responses; then the ratios the
# targets are stated in, each the median over runs of the ratio between two servers measured in the same run, with how
# many of those runs met the target and the ratio of the two medians beside it. Raw wrk output is kept in the --out
# directory.
#
# Only what was answered counts: requests/s is 2xx/3xx responses per second (wrk's own figure counts error responses
# too), and a run with any socket error is invalid: its figures enter no median and no ratio (a server that drops
# connections must not look fast for it), and the table says how many runs were dropped so.
#
# --report pools earlier invocations: every run found in the given --out directories counts once, paired with the other
# servers' runs of the same number in the same directory. On this shared machine a verdict from one invocation can flip
# in the next (the -c100 tail differs by placement, and the machine's speed drifts by 2x over hours); one over runs
# taken at different times of a session says more than any of them.
#
# Exit status: 0 when every server ran, 1 on a failed start, a missing program or a failed wrk run (wrk's exit status,
# or output without a Requests/sec line: its output is kept as *.txt.failed and enters no figure); missed targets are
# reported, not fatal (the machine is shared).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

bin=${TERN_BIN_DIR:-$root/build/bin}
conns="100 1000"
runs=3
duration=10
warmup=2
path=/health
port_base=18480
out=""
quick=0
restart=0
report_dirs=()

usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
  echo
  echo "options: --quick --restart --bin DIR --conns \"N ...\" --runs N --duration S --path P --port-base P --out DIR"
  echo "         --report DIR... (must come last)"
}

while [[ $# -gt 0 ]]; do
  case $1 in
    --pinned)
      shift
      exec /usr/bin/python3 "$here/percore.py" --bin "$bin" "$@"
      ;;
    --quick) quick=1 ;;
    --bin) bin=$2; shift ;;
    --conns) conns=$2; shift ;;
    --runs) runs=$2; shift ;;
    --duration) duration=$2; shift ;;
    --path) path=$2; shift ;;
    --port-base) port_base=$2; shift ;;
    --out) out=$2; shift ;;
    --restart) restart=1 ;;
    --report)
      shift
      report_dirs=("$@")
      [[ ${#report_dirs[@]} -gt 0 ]] || { echo "echo.sh: --report needs at least one directory" >&2; exit 2; }
      break
      ;;
    -h|--help) usage; exit 0 ;;
    *) echo "echo.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
if [[ $quick == 1 ]]; then
  runs=1
  duration=1
  warmup=0
fi

die() { echo "echo.sh: $*" >&2; exit 1; }

# measure: starts the servers, runs wrk against each, and leaves the raw output in $out.
measure() {
  [[ -d $bin ]] || die "$bin is not a directory (build first, or pass --bin)"
  bin=$(cd "$bin" && pwd)

  command -v wrk >/dev/null || die "wrk not found: apt-get install wrk"
  command -v curl >/dev/null || die "curl not found: apt-get install curl"
  [[ -x $bin/tern-echo ]] || die "$bin/tern-echo missing: cmake --build build --target tern-echo epoll-responder"
  [[ -x $bin/epoll-responder ]] || die "$bin/epoll-responder missing: cmake --build build --target epoll-responder"

  # -c1000 needs a descriptor per connection on each side, plus the servers' own.
  max_conns=0
  for c in $conns; do ((c > max_conns)) && max_conns=$c; done
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  (($(ulimit -n) >= max_conns + 64)) || die "ulimit -n is $(ulimit -n), too low for -c$max_conns (raise the hard limit)"

  # The Go peer is built here, offline, with Debian's golang-go; without Go the table has one server fewer.
  go_bin=""
  if command -v go >/dev/null; then
    go_cache=$(dirname "$bin")/go-cache
    mkdir -p "$go_cache"
    if (cd "$here/peers/go_http" && GOCACHE=$go_cache GOPATH=$go_cache/path GOPROXY=off GOFLAGS=-mod=mod \
        go build -o "$bin/go-http" .); then
      go_bin=$bin/go-http
    else
      echo "echo.sh: building the Go peer failed; continuing without it" >&2
    fi
  else
    echo "echo.sh: go not found (apt-get install golang-go); continuing without the Go peer" >&2
  fi

  # The Tokio peer (bench/peers/tokio_http), built offline from Debian's librust-tokio-dev; without it the table has
  # one server fewer.
  tokio_bin=""
  if bash "$here/peers/tokio_http/build.sh" "$bin" >"$(dirname "$bin")/tokio-http-build.log" 2>&1; then
    tokio_bin=$bin/tokio-http
  else
    echo "echo.sh: building the Tokio peer failed (apt-get install cargo librust-tokio-dev; $(dirname "$bin")/tokio-http-build.log); continuing without it" >&2
  fi

  [[ -n $out ]] || out=$(mktemp -d /tmp/tern-echo-bench.XXXXXX)
  mkdir -p "$out"

  names=()
  ports=()
  pids=()
  commands=()
  cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  }
  trap cleanup EXIT

  port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

  next_port=$port_base
  # launch INDEX: starts server INDEX from its command (tmpl_INDEX, PORT where the port goes) on the next free port, and
  # waits until it answers.
  launch() {
    local i=$1 name=${names[$1]}
    local -n tmpl="tmpl_$1"
    local port=$next_port
    next_port=$((next_port + 1))
    port_free "$port" || die "port $port is in use (choose another --port-base)"
    local args=("${tmpl[@]//PORT/$port}")
    "${args[@]}" >>"$out/${name//\//_}.log" 2>&1 &
    pids[i]=$!
    ports[i]=$port
    for _ in $(seq 100); do
      if curl -sf -o /dev/null "http://127.0.0.1:$port/health"; then return 0; fi
      kill -0 "${pids[i]}" 2>/dev/null || die "$name exited at start: $(cat "$out/${name//\//_}.log")"
      sleep 0.05
    done
    die "$name did not answer /health on port $port within 5 s"
  }
  start() {  # name, then the command with PORT where the port goes
    local i=${#names[@]}
    names+=("$1"); shift
    declare -g -a "tmpl_$i"
    local -n tmpl="tmpl_$i"
    tmpl=("$@")
    : >"$out/${names[i]//\//_}.log"  # launch appends: a restarted server's output follows the earlier processes'
    launch "$i"
    commands+=("${names[i]}: ${tmpl[*]//PORT/${ports[i]}}")
  }
  # restart INDEX: the same server, a new process (--restart), warmed up like the first.
  restart() {
    kill "${pids[$1]}" 2>/dev/null || true
    wait "${pids[$1]}" 2>/dev/null || true
    launch "$1"
    wrk -t$wrk_threads -c100 -d1s "http://127.0.0.1:${ports[$1]}$path" >/dev/null
  }

  wrk_threads=2
  wrk_timeout=2s

  start tern-echo/uring "$bin/tern-echo" --listen 127.0.0.1:PORT --poller uring
  start tern-echo/epoll "$bin/tern-echo" --listen 127.0.0.1:PORT --poller epoll
  start epoll-responder "$bin/epoll-responder" --listen 127.0.0.1:PORT
  if [[ -n $go_bin ]]; then start go-net/http "$go_bin" -listen 127.0.0.1:PORT; fi
  # Tokio with its default worker count (the CPUs it may run on), as Go's GOMAXPROCS and tern-echo's --procs auto.
  if [[ -n $tokio_bin ]]; then start tokio "$tokio_bin" --listen 127.0.0.1:PORT; fi

  echo "bench/echo.sh: wrk -t$wrk_threads -d${duration}s --timeout $wrk_timeout --latency GET $path;" \
    "$runs run(s) per point, medians; unpinned on $(nproc) CPUs;" \
    "$( ((restart)) && echo "servers restarted before each run;")" "raw output in $out"
  printf '  %s\n' "${commands[@]}"

  if ((warmup > 0)); then
    for i in "${!names[@]}"; do
      wrk -t$wrk_threads -c100 -d${warmup}s "http://127.0.0.1:${ports[$i]}$path" >/dev/null
    done
  fi

  # The order of the servers alternates from run to run: measured always in one order, each server would always follow
  # the same one (tern-echo/io_uring came right after Go's net/http, whose runtime is still busy for a moment after a
  # -c1000 run) and inherit its aftermath.
  wrk_failures=0
  order_fwd=("${!names[@]}")
  order_rev=()
  for ((k = ${#order_fwd[@]} - 1; k >= 0; k--)); do order_rev+=("${order_fwd[$k]}"); done
  for c in $conns; do
    for r in $(seq "$runs"); do
      if ((r % 2)); then order=("${order_fwd[@]}"); else order=("${order_rev[@]}"); fi
      for i in "${order[@]}"; do
        ((restart)) && restart "$i"
        local f="$out/${names[$i]//\//_}.c$c.r$r.txt" rc=0
        wrk -t$wrk_threads -c"$c" -d"${duration}s" --timeout $wrk_timeout --latency \
          "http://127.0.0.1:${ports[$i]}$path" >"$f" 2>&1 || rc=$?
        if ((rc != 0)) || ! grep -q '^Requests/sec:' "$f"; then
          echo "echo.sh: wrk FAILED against ${names[$i]} at -c$c, run $r (exit $rc); its output:" >&2
          sed 's/^/    /' "$f" >&2
          mv "$f" "$f.failed"
          wrk_failures=$((wrk_failures + 1))
        fi
      done
    done
  done
}


# The servers, in table order; a report shows those it finds output of.
all_names=(tern-echo/uring tern-echo/epoll epoll-responder go-net/http tokio)

if [[ ${#report_dirs[@]} -eq 0 ]]; then
  measure
  dirs=("$out")
else
  for d in "${report_dirs[@]}"; do [[ -d $d ]] || die "--report: $d is not a directory"; done
  dirs=("${report_dirs[@]}")
  names=()
  for n in "${all_names[@]}"; do
    compgen -G "${dirs[0]}/${n//\//_}.c*.r*.txt" >/dev/null && names+=("$n")
    for d in "${dirs[@]:1}"; do
      [[ " ${names[*]} " == *" $n "* ]] && break
      compgen -G "$d/${n//\//_}.c*.r*.txt" >/dev/null && names+=("$n")
    done
  done
  [[ " ${names[*]} " == *" tern-echo/uring "* ]] || die "--report: no tern-echo/uring output in ${dirs[*]}"
  echo "bench/echo.sh --report: the runs found in ${dirs[*]}"
fi
has_server() { [[ " ${names[*]} " == *" $1 "* ]]; }

# runs_of CONNS: "DIR R" for every run of tern-echo/uring at CONNS connections, over all directories.
runs_of() {
  local d f
  for d in "${dirs[@]}"; do
    for f in "$d"/tern-echo_uring.c"$1".r*.txt; do
      [[ -e $f ]] || continue
      f=${f##*.r}
      echo "$d ${f%.txt}"
    done
  done | sort -k1,1 -k2,2n
}
# Connection counts with output: those asked for (--conns) that a report finds.
shown_conns=()
for c in $conns; do [[ -n $(runs_of "$c") ]] && shown_conns+=("$c"); done
[[ ${#shown_conns[@]} -gt 0 ]] || die "no wrk output for -c${conns// /, -c} in ${dirs[*]}"

# One line per wrk output: req/s (2xx/3xx responses only), p50 us, p99 us, socket errors, non-2xx, valid (1: a
# Requests/sec line and no socket error).
parse() {
  awk '
    function us(v) {
      if (v ~ /us$/) return v + 0;
      if (v ~ /ms$/) return (v + 0) * 1000;
      if (v ~ /s$/) return (v + 0) * 1000000;
      return v + 0;
    }
    function secs(v) {
      if (v ~ /ms$/) return (v + 0) / 1000;
      if (v ~ /m$/) return (v + 0) * 60;
      if (v ~ /h$/) return (v + 0) * 3600;
      return v + 0;
    }
    /^Requests\/sec:/ { rps = $2 }
    / requests in / { reqs = $1; d = $4; gsub(",", "", d); took = secs(d) }
    /^ +50%/ { p50 = us($2) }
    /^ +99%/ { p99 = us($2) }
    /Socket errors:/ { gsub(",", ""); err = $4 + $6 + $8 + $10 }
    /Non-2xx or 3xx responses:/ { bad = $5 }
    END {
      # wrk counts error responses in requests and Requests/sec: only the answered ones count here.
      good = (took > 0 && reqs != "") ? (reqs - bad) / took : 0
      valid = (rps != "" && took > 0 && err == 0) ? 1 : 0
      printf "%s %s %s %d %d %d\n", good, (p50 == "" ? 0 : p50), (p99 == "" ? 0 : p99), err, bad, valid
    }
  ' "$1"
}
# run_file NAME DIR R CONNS: that server's wrk output of one run.
run_file() { echo "$2/${1//\//_}.c$4.r$3.txt"; }

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR == 0 ? 0 : v[int((NR + 1) / 2)]) }'; }

declare -A rps p50 p99 errs bad nruns ninvalid
invalid_total=0
for c in "${shown_conns[@]}"; do
  for n in "${names[@]}"; do
    rows=$(runs_of "$c" | while read -r d r; do
      f=$(run_file "$n" "$d" "$r" "$c")
      if [[ -e $f ]]; then parse "$f"; fi
    done)
    valid=$(awk '$6 == 1' <<<"$rows")
    nruns[$n,$c]=$(grep -c . <<<"$valid" || true)
    ninvalid[$n,$c]=$(awk 'NF && $6 != 1 { k++ } END { print k + 0 }' <<<"$rows")
    invalid_total=$((invalid_total + ninvalid[$n,$c]))
    rps[$n,$c]=$(awk 'NF { print $1 }' <<<"$valid" | median)
    p50[$n,$c]=$(awk 'NF { print $2 }' <<<"$valid" | median)
    p99[$n,$c]=$(awk 'NF { print $3 }' <<<"$valid" | median)
    errs[$n,$c]=$(awk '{ s += $4 } END { print s + 0 }' <<<"$rows")
    bad[$n,$c]=$(awk '{ s += $5 } END { print s + 0 }' <<<"$rows")
  done
done

printf '\n%-6s %-16s %5s %12s %10s %10s %7s %9s %8s\n' conns server runs req/s p50_us p99_us invalid sock_err non2xx
for c in "${shown_conns[@]}"; do
  for n in "${names[@]}"; do
    printf '%-6s %-16s %5d %12.0f %10.0f %10.0f %7d %9d %8d\n' "$c" "$n" "${nruns[$n,$c]}" "${rps[$n,$c]}" \
      "${p50[$n,$c]}" "${p99[$n,$c]}" "${ninvalid[$n,$c]}" "${errs[$n,$c]}" "${bad[$n,$c]}"
  done
done
if ((invalid_total > 0)); then
  echo "echo.sh: $invalid_total run(s) had socket errors and count in no figure or ratio (column invalid)" >&2
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
# paired A B COLUMN CONNS: A's figure over B's in each run that measured both (1 = req/s, 3 = p99), one per line. Both
# were measured seconds apart, so the machine's drift from run to run (here often 140k to 170k req/s within minutes)
# cancels out of each ratio, where a ratio of the two medians can pair one server's fast run with the other's slow one.
paired() {
  local d r fa fb
  runs_of "$4" | while read -r d r; do
    fa=$(run_file "$1" "$d" "$r" "$4")
    fb=$(run_file "$2" "$d" "$r" "$4")
    if [[ -e $fa && -e $fb ]]; then paste -d' ' <(parse "$fa") <(parse "$fb"); fi
  done | awk -v k="$3" '$6 == 1 && $12 == 1 { if ($(k + 6) > 0) print $k / $(k + 6) }'
}
check() {  # label, A, B, column, conns, op (ge|le), target
  local ratios v m verdict runs_met
  ratios=$(paired "$2" "$3" "$4" "$5")
  v=$(median <<<"$ratios" | awk '{ printf "%.2f", $1 }')
  [[ -n $ratios ]] || v=n/a
  # Each run's ratio rounded as the median is, so that a median printed as met counts as met in its own run.
  runs_met=$(awk -v t="$7" -v op="$6" 'NF { n++; r = sprintf("%.2f", $1) + 0; if ((op == "ge" && r >= t) || (op == "le" && r <= t)) k++ }
    END { printf "%d/%d", k, n }' <<<"$ratios")
  if (($4 == 1)); then m=$(ratio "${rps[$2,$5]}" "${rps[$3,$5]}"); else m=$(ratio "${p99[$2,$5]}" "${p99[$3,$5]}"); fi
  verdict=$(awk -v v="$v" -v t="$7" -v op="$6" -v n="${ratios:+1}" 'BEGIN {
    if (n == "") print "n/a"; else if ((op == "ge" && v >= t) || (op == "le" && v <= t)) print "met"; else print "MISSED" }')
  printf '  %-44s %6s  (target %s %s) %-6s  runs met %-7s ratio of medians %s\n' "$1" "$v" \
    "$([[ $6 == ge ]] && echo '>=' || echo '<=')" "$7" "$verdict" "$runs_met" "$m"
}
check_errors() {  # label, count
  printf '  %-44s %6s  (target <= 0) %s\n' "$1" "$2" "$( (($2 == 0)) && echo met || echo MISSED)"
}

echo
echo "ratios (median over runs of the ratio within each run; tern-echo = the io_uring backend):"
for c in "${shown_conns[@]}"; do
  echo " -c$c"
  t=tern-echo/uring
  check "throughput tern-echo / epoll-responder" $t epoll-responder 1 "$c" ge 0.95
  if has_server go-net/http; then
    check "throughput tern-echo / go net/http" $t go-net/http 1 "$c" ge 1.4
  fi
  check "p99 latency tern-echo / epoll-responder" $t epoll-responder 3 "$c" le 1.2
  if has_server tokio; then
    # Issue 21: unpinned on the shared CPUs, throughput at least Tokio's, with either backend.
    check "throughput tern-echo / tokio" $t tokio 1 "$c" ge 1.0
    check "throughput epoll backend / tokio" tern-echo/epoll tokio 1 "$c" ge 1.0
  fi
  check "throughput uring / epoll backend" $t tern-echo/epoll 1 "$c" ge 1.0
  # tern-echo falls back to the epoll backend where io_uring is missing: it is held to the same targets.
  check "throughput epoll backend / epoll-responder" tern-echo/epoll epoll-responder 1 "$c" ge 0.95
  check "p99 latency epoll backend / epoll-responder" tern-echo/epoll epoll-responder 3 "$c" le 1.2
  check_errors "socket errors, tern-echo/uring" "${errs[$t,$c]}"
  check_errors "socket errors, tern-echo/epoll" "${errs[tern-echo/epoll,$c]}"
done

if ((${wrk_failures:-0} > 0)); then
  echo "echo.sh: FAILED: $wrk_failures wrk run(s) failed (see above); their output is kept as $out/*.txt.failed" >&2
  exit 1
fi
