#!/usr/bin/env bash
# bench/soak.sh: tern-echo held under mixed, verified load for a long time while its processor count changes (issue
# 20's soak; not part of CI).
#
#   bench/soak.sh                                  # 10 minutes, 5,000 connections
#   bench/soak.sh --duration 120 --connections 2000
#
# The server (all CPUs, --metrics on) gets bench/soak.py's load: every connection sends /health, /echo with random
# bodies checked byte for byte, and /mix, one request at a time, plus a trickle of malformed requests and peers that
# reset mid-body. Meanwhile the processor count is moved every 20 s through the admin endpoint: 1, then 2, then back
# to the controller (POST /debug/policy?name=hill), round and round. The server's resident memory is sampled every
# 10 s. Passes when no answer was lost or corrupted, every malformed request got its error, the server is alive at
# the end, and resident memory after the warm-up (the first minute, or a sixth of a shorter run) grew under 5%.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
bin=${TERN_BIN_DIR:-$root/build/bin}
duration=600
connections=5000
port=18660
mport=18661

while [[ $# -gt 0 ]]; do
  case $1 in
    --duration) duration=$2; shift ;;
    --connections) connections=$2; shift ;;
    --port) port=$2; mport=$((port + 1)); shift ;;
    *) echo "soak.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[[ -x $bin/tern-echo ]] || { echo "soak.sh: $bin/tern-echo not built" >&2; exit 2; }
# The client holds $connections sockets too: its soft limit goes to the hard one (the server raises its own).
ulimit -n "$(ulimit -Hn)"
if (( $(ulimit -n) < connections + 100 )); then
  echo "soak.sh: the open-file limit ($(ulimit -n)) is below $connections connections" >&2
  exit 2
fi
out=$(mktemp -d /tmp/soak.XXXXXX)
server=
cleanup() {
  [[ -n $server ]] && kill -KILL "$server" 2>/dev/null || true
  jobs -p | xargs -r kill 2>/dev/null || true
}
trap cleanup EXIT

"$bin/tern-echo" --listen "127.0.0.1:$port" --metrics "127.0.0.1:$mport" --policy hill 2>"$out/server.log" &
server=$!
for _ in $(seq 100); do
  curl -s -o /dev/null "http://127.0.0.1:$port/health" && break
  sleep 0.05
done
echo "soak.sh: tern-echo pid $server, $connections connections for $duration s; files in $out"

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$server/status"; }
metric() {  # metric NAME: the sum of a metric's samples in the exposition
  curl -s "http://127.0.0.1:$mport/metrics" | awk -v n="$1" '$1 == n || index($1, n "{") == 1 {s += $2} END {print s + 0}'
}

/usr/bin/python3 "$here/soak.py" --port "$port" --connections "$connections" --duration "$duration" \
  >"$out/client.json" 2>"$out/client.err" &
client=$!

# Samples and resizes until the client ends.
start=$SECONDS
next_resize=20
step=0
echo "seconds,rss_kb,procs,connections_open,threads" >"$out/samples.csv"
while kill -0 "$client" 2>/dev/null; do
  sleep 10
  t=$((SECONDS - start))
  kill -0 "$server" 2>/dev/null || { echo "soak.sh: the server died" >&2; break; }
  echo "$t,$(rss_kb),$(metric tern_procs),$(metric tern_connections_open),$(ls "/proc/$server/task" | wc -l)" \
    >>"$out/samples.csv"
  if (( t >= next_resize )); then
    case $((step % 3)) in
      0) curl -s -X POST "http://127.0.0.1:$mport/debug/procs?n=1" >/dev/null ;;
      1) curl -s -X POST "http://127.0.0.1:$mport/debug/procs?n=2" >/dev/null ;;
      2) curl -s -X POST "http://127.0.0.1:$mport/debug/policy?name=hill" >/dev/null ;;
    esac
    step=$((step + 1))
    next_resize=$((next_resize + 20))
  fi
done
client_rc=0
wait "$client" || client_rc=$?
alive=no
curl -s -m 5 "http://127.0.0.1:$port/health" | grep -q OK && alive=yes
decisions=$(metric tern_controller_decisions_total)
timeouts=$(metric tern_echo_timeouts_total)
kill -TERM "$server"
server_rc=0
wait "$server" || server_rc=$?
server=

warm=$(( duration / 6 < 60 ? duration / 6 : 60 ))
/usr/bin/python3 - "$out" "$warm" "$client_rc" "$alive" "$server_rc" "$decisions" "$timeouts" "$step" <<'EOF'
import csv, json, statistics, sys
out, warm, client_rc, alive, server_rc, decisions, timeouts, resizes = sys.argv[1:]
rows = [r for r in csv.DictReader(open(f"{out}/samples.csv")) if r["rss_kb"]]
c = json.load(open(f"{out}/client.json"))
# Under load only: the sample after the client ended (its connections closed) is not the server's steady state.
after = [int(r["rss_kb"]) for r in rows if int(r["seconds"]) >= int(warm) and r["connections_open"] not in ("0", "")]
growth = None
if len(after) >= 6:
    first, last = statistics.median(after[:3]), statistics.median(after[-3:])
    growth = (last - first) / first
procs_seen = sorted({r["procs"] for r in rows})
print(f"load: {c['connections']} connections, {c['requests_per_second']} requests/s for {c['seconds']} s "
      f"({c['ok']} answers checked, {c['bytes_checked'] / 1e9:.2f} GB of bodies compared)")
print(f"outcomes: corrupt {c['corrupt']}, lost {c['lost']}, limited (503) {c['limited']}, reconnects {c['reconnects']}, "
      f"connect errors {c['connect_errors']}")
print(f"hostile: malformed answered {c['hostile_ok']}, wrongly {c['hostile_bad']}; resets mid-body {c['resets_sent']}")
print(f"processors seen: {', '.join(procs_seen)}; admin resizes {resizes}; controller decisions {decisions}; "
      f"server timeouts {timeouts}")
if growth is not None:
    print(f"resident memory under load after {warm} s (medians of the first and last 3 samples): {first / 1024:.1f} MiB "
          f"-> {last / 1024:.1f} MiB, growth {growth * 100:+.1f}%; threads {rows[0]['threads']} -> {rows[-1]['threads']}")
else:
    print(f"resident memory: {len(after)} samples after the {warm} s warm-up, too few to judge growth (6 needed)")
print(f"server alive at the end: {alive}; exit status on SIGTERM: {server_rc}")
for e in c["examples"]:
    print("  e.g.", e)
ok = (c["corrupt"] == 0 and c["lost"] == 0 and c["hostile_bad"] == 0 and alive == "yes" and server_rc == "0"
      and growth is not None and growth < 0.05)
print("soak:", "PASSED" if ok else "FAILED")
sys.exit(0 if ok else 1)
EOF
