#!/usr/bin/python3
"""bench/percore.py: one server core against one load core (bench/echo.sh --pinned runs it; issue 21's targets).

Every server runs on CPU 0 with one processor (tern-echo --procs 1 with each backend, the epoll responder with one
thread, Tokio with one worker) and wrk runs on CPU 1 with one thread, so a server's figures are one core's: its CPU
per response (utime + stime of the whole process from /proc/PID/stat over the run, kernel work done on its threads'
behalf included; io_uring's own io-wq threads belong to the process and are counted), responses per second and the
p99 latency. The machine is shared and its speed drifts, so the servers take turns within a round (the order reversed
on every other round) and every ratio is taken between two servers measured in the same round, seconds apart; the
table gives the median of those paired ratios, with their range and how many rounds they come from.

The points (each server at each): connections (--conns, default 100 1000 10000) x pipelining (--depth, default 1 16:
16 requests written back to back, TechEmpower-style, by a wrk Lua script) x response size (--sizes, default 64 16384:
64 B is GET /health, whose whole response is 67 bytes; 16 KiB is POST /echo of a 16 KiB body, so 16 KiB both ways).

    bench/percore.py --bin build/bin                         # 3 rounds of 5 s per point and server
    bench/percore.py --rounds 5 --conns "100 1000" --depth 1 --sizes 64 --out /tmp/pc
    bench/percore.py --report /tmp/pc /tmp/pc2               # no runs: the table over earlier --out directories

A run with a socket error or a wrk failure enters no figure (a server that drops connections must not look fast for
it); the table says how many runs were dropped. Exit status 0 when every server started and every wrk ran, 1 otherwise;
missed targets are reported, not fatal (the machine is shared).
"""

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Table order. "cmd" gets the port; a server whose binary is missing is left out with a line saying so.
SERVERS = [
    ("tern/uring", "tern-echo", lambda b, p: [b, "--listen", f"127.0.0.1:{p}", "--procs", "1", "--poller", "uring"]),
    # io_uring with deferred rings (Config::uring_defer, off by default: netpoll/uring_poller.h, "Deferred rings").
    ("tern/uring-defer", "tern-echo",
     lambda b, p: ["env", "TERN_URING_DEFER=on", b, "--listen", f"127.0.0.1:{p}", "--procs", "1", "--poller", "uring"]),
    ("tern/epoll", "tern-echo", lambda b, p: [b, "--listen", f"127.0.0.1:{p}", "--procs", "1", "--poller", "epoll"]),
    ("epoll-C", "epoll-responder", lambda b, p: [b, "--listen", f"127.0.0.1:{p}", "--threads", "1"]),
    ("tokio", "tokio-http", lambda b, p: [b, "--listen", f"127.0.0.1:{p}", "--workers", "1"]),
]

# The targets of issue 21, as (label, numerator, denominator, metric, op, value, which points). Metrics: cpu (per
# response, lower is better), rps, p99.
TARGETS = [
    ("CPU/resp uring / epoll-C", "tern/uring", "epoll-C", "cpu", "le", 0.85, "plain"),
    ("CPU/resp uring / tokio", "tern/uring", "tokio", "cpu", "le", 0.90, "plain"),
    ("resp/s uring / tokio, pipelined", "tern/uring", "tokio", "rps", "ge", 1.10, "pipelined"),
    ("p99 uring / tokio", "tern/uring", "tokio", "p99", "le", 1.00, "c1000"),
    ("resp/s uring / tern epoll", "tern/uring", "tern/epoll", "rps", "ge", 1.00, "all"),
    ("CPU/resp uring / tern epoll", "tern/uring", "tern/epoll", "cpu", "le", 1.00, "all"),
    ("CPU/resp uring-defer / epoll-C", "tern/uring-defer", "epoll-C", "cpu", "le", 0.85, "plain"),
    ("CPU/resp uring-defer / tokio", "tern/uring-defer", "tokio", "cpu", "le", 0.90, "plain"),
    ("resp/s uring-defer / tokio, pipelined", "tern/uring-defer", "tokio", "rps", "ge", 1.10, "pipelined"),
    ("CPU/resp uring-defer / tern epoll", "tern/uring-defer", "tern/epoll", "cpu", "le", 1.00, "all"),
]

LUA = """-- written by bench/percore.py: {depth} requests back to back per write
local depth = {depth}
local body = {body}
init = function(args)
  local r = {{}}
  for i = 1, depth do
    if body > 0 then
      r[i] = wrk.format("POST", "/echo", {{["Content-Type"] = "application/octet-stream"}}, string.rep("x", body))
    else
      r[i] = wrk.format("GET", "/health")
    end
  end
  req = table.concat(r)
end
request = function()
  return req
end
"""


def die(msg):
    print(f"percore.py: {msg}", file=sys.stderr)
    sys.exit(1)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15)


def free_port(start):
    port = start
    while True:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                port += 1


def wait_health(port, proc, name):
    for _ in range(200):
        if proc.poll() is not None:
            die(f"{name} exited at start (status {proc.returncode})")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    die(f"{name} did not answer /health on port {port} within 10 s")


def parse_wrk(text):
    """responses/s counting 2xx/3xx only, p99 in us, socket errors, validity."""
    def us(v):
        for suffix, k in (("us", 1), ("ms", 1e3), ("s", 1e6)):
            if v.endswith(suffix):
                return float(v[: -len(suffix)]) * k
        return float(v)

    def secs(v):
        for suffix, k in (("ms", 1e-3), ("m", 60), ("h", 3600), ("s", 1)):
            if v.endswith(suffix):
                return float(v[: -len(suffix)]) * k
        return float(v)

    reqs = took = None
    p99 = 0.0
    errors = bad = 0
    rps_line = False
    for line in text.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec:"):
            rps_line = True
        elif " requests in " in line:
            reqs = int(parts[0])
            took = secs(parts[3].rstrip(","))
        elif line.strip().startswith("99%") and len(parts) == 2:
            p99 = us(parts[1])
        elif "Socket errors:" in line:
            nums = [int(x.rstrip(",")) for x in parts if x.rstrip(",").isdigit()]
            errors = sum(nums)
        elif "Non-2xx or 3xx responses:" in line:
            bad = int(parts[-1])
    valid = rps_line and took and reqs is not None and errors == 0
    good = (reqs - bad) if reqs is not None else 0
    return {"responses": good, "secs": took or 0.0, "p99_us": p99, "sock_errors": errors, "non2xx": bad,
            "valid": bool(valid)}


def measure(args, out):
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    need = max(args.conns) + 64
    if nofile < need:
        die(f"the descriptor limit is {nofile}, too low for -c{max(args.conns)} (raise the hard limit)")
    if os.cpu_count() < 2:
        die("needs 2 CPUs (server on CPU 0, wrk on CPU 1)")
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            die(f"{tool} not found (apt-get install wrk util-linux)")

    scripts = {}
    for depth in args.depth:
        for size in args.sizes:
            path = os.path.join(out, f"d{depth}.s{size}.lua")
            with open(path, "w") as f:
                f.write(LUA.format(depth=depth, body=0 if size <= 64 else size))
            scripts[depth, size] = path

    servers = []
    port = args.port_base
    try:
        for name, binary, cmd in SERVERS:
            path = os.path.join(args.bin, binary)
            if not os.access(path, os.X_OK):
                print(f"percore.py: {path} missing: {name} left out", file=sys.stderr)
                continue
            port = free_port(port)
            argv = ["taskset", "-c", "0"] + cmd(path, port)
            log = open(os.path.join(out, name.replace("/", "_") + ".log"), "ab")
            proc = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
            servers.append({"name": name, "port": port, "proc": proc, "argv": argv})
            wait_health(port, proc, name)
            port += 1
        if not servers:
            die("no server to measure")
        with open(os.path.join(out, "servers.json"), "w") as f:
            json.dump([{"name": s["name"], "argv": s["argv"]} for s in servers], f, indent=1)
        print(f"percore.py: server on CPU 0, wrk -t1 on CPU 1, {args.duration} s per run, {args.rounds} round(s); "
              f"raw output in {out}")
        for s in servers:
            print(f"  {s['name']}: {' '.join(s['argv'])}")
        # Warm every server up (its pools, its rings' buffers) before the first measured run.
        for s in servers:
            subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c100", "-d1s", f"http://127.0.0.1:{s['port']}/health"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        failures = 0
        results = open(os.path.join(out, "runs.jsonl"), "a")
        for rnd in range(1, args.rounds + 1):
            order = servers if rnd % 2 else list(reversed(servers))
            for c in args.conns:
                for depth in args.depth:
                    for size in args.sizes:
                        for s in order:
                            failures += run_one(args, s, rnd, c, depth, size, scripts[depth, size], out, results)
            print(f"percore.py: round {rnd} done", flush=True)
        return failures
    finally:
        for s in servers:
            try:
                os.killpg(s["proc"].pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for s in servers:
            try:
                s["proc"].wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(s["proc"].pid, signal.SIGKILL)


def run_one(args, s, rnd, c, depth, size, script, out, results):
    if s["proc"].poll() is not None:
        die(f"{s['name']} exited (status {s['proc'].returncode}); its log is in {out}")
    path = "/echo" if size > 64 else "/health"
    argv = ["taskset", "-c", "1", "wrk", "-t1", f"-c{c}", f"-d{args.duration}s", "--timeout", "4s", "--latency",
            "-s", script, f"http://127.0.0.1:{s['port']}{path}"]
    pid = s["proc"].pid
    # tern-echo is started through taskset, which execs it: the pid is the server's.
    before = cpu_seconds(pid)
    t0 = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True)
    wall = time.monotonic() - t0
    after = cpu_seconds(pid)
    tag = f"{s['name'].replace('/', '_')}.c{c}.d{depth}.s{size}.r{rnd}"
    with open(os.path.join(out, tag + ".txt"), "w") as f:
        f.write(done.stdout + done.stderr)
    rec = parse_wrk(done.stdout)
    rec.update({"server": s["name"], "round": rnd, "conns": c, "depth": depth, "size": size,
                "cpu_s": after - before, "wall_s": wall, "wrk_status": done.returncode})
    if done.returncode != 0:
        rec["valid"] = False
    results.write(json.dumps(rec) + "\n")
    results.flush()
    if done.returncode != 0 or "Requests/sec:" not in done.stdout:
        print(f"percore.py: wrk FAILED against {s['name']} at {tag}: {done.stderr.strip()[:300]}", file=sys.stderr)
        return 1
    return 0


def load(dirs):
    runs = []
    for i, d in enumerate(dirs):
        path = os.path.join(d, "runs.jsonl")
        if not os.path.exists(path):
            die(f"--report: no runs.jsonl in {d}")
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                rec["dir"] = i
                runs.append(rec)
    return runs


def metric(rec, m):
    if m == "cpu":
        return rec["cpu_s"] / rec["responses"] * 1e6 if rec["responses"] > 0 else None  # us per response
    if m == "rps":
        return rec["responses"] / rec["secs"] if rec["secs"] > 0 else None
    return rec["p99_us"] or None


def report(runs, names):
    points = sorted({(r["conns"], r["depth"], r["size"]) for r in runs})
    by = {}
    for r in runs:
        by.setdefault((r["conns"], r["depth"], r["size"], r["server"]), []).append(r)
    present = [n for n, _, _ in SERVERS if n in names]
    print()
    print(f"{'point':<22} {'server':<11} {'runs':>4} {'dropped':>7} {'resp/s':>10} {'CPU us/resp':>11} {'p99 us':>9}")
    for c, d, z in points:
        label = f"c{c} d{d} {z}B"
        for n in present:
            rs = by.get((c, d, z, n), [])
            ok = [r for r in rs if r["valid"]]
            med = {m: statistics.median([v for v in (metric(r, m) for r in ok) if v is not None] or [0])
                   for m in ("rps", "cpu", "p99")}
            print(f"{label:<22} {n:<11} {len(ok):>4} {len(rs) - len(ok):>7} {med['rps']:>10.0f} {med['cpu']:>11.2f} "
                  f"{med['p99']:>9.0f}")
        label = ""

    def paired(a, b, m, c, d, z):
        ra = {(r["dir"], r["round"]): r for r in by.get((c, d, z, a), []) if r["valid"]}
        out = []
        for r in by.get((c, d, z, b), []):
            k = (r["dir"], r["round"])
            if r["valid"] and k in ra:
                va, vb = metric(ra[k], m), metric(r, m)
                if va is not None and vb:
                    out.append(va / vb)
        return out

    print("\nratios: the median over rounds of the ratio within each round [range] (rounds); "
          "cpu = server CPU per response, lower is better")
    missed = 0
    for label, a, b, m, op, target, which in TARGETS:
        if a not in present or b not in present:
            print(f"  {label}: n/a ({a if a not in present else b} not measured)")
            continue
        print(f"  {label} (target {'<=' if op == 'le' else '>='} {target}):")
        for c, d, z in points:
            if which == "plain" and d != 1:
                continue
            if which == "pipelined" and d == 1:
                continue
            if which == "c1000" and (c != 1000 or d != 1):
                continue
            rs = paired(a, b, m, c, d, z)
            if not rs:
                continue
            med = statistics.median(rs)
            met = med <= target if op == "le" else med >= target
            missed += not met
            print(f"    c{c} d{d} {z}B: {med:.2f} [{min(rs):.2f}-{max(rs):.2f}] ({len(rs)}) "
                  f"{'met' if met else 'MISSED'}")
    return missed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.environ.get("TERN_BIN_DIR", os.path.join(ROOT, "build", "bin")))
    ap.add_argument("--conns", default="100 1000 10000")
    ap.add_argument("--depth", default="1 16")
    ap.add_argument("--sizes", default="64 16384")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--port-base", type=int, default=18580)
    ap.add_argument("--out")
    ap.add_argument("--report", nargs="+", metavar="DIR")
    args = ap.parse_args()
    try:
        args.conns = [int(x) for x in args.conns.split()]
        args.depth = [int(x) for x in args.depth.split()]
        args.sizes = [int(x) for x in args.sizes.split()]
    except ValueError:
        die("--conns, --depth and --sizes take whole numbers separated by spaces")
    if not args.conns or not args.depth or not args.sizes or min(args.conns + args.depth + args.sizes) <= 0:
        die("--conns, --depth and --sizes need positive numbers")
    if args.rounds < 1 or args.duration < 1:
        die("--rounds and --duration must be at least 1")

    failures = 0
    if args.report:
        dirs = args.report
    else:
        args.bin = os.path.abspath(args.bin)
        out = args.out or tempfile.mkdtemp(prefix="tern-percore.")
        os.makedirs(out, exist_ok=True)
        failures = measure(args, out)
        dirs = [out]
    runs = load(dirs)
    if not runs:
        die("no runs to report")
    report(runs, {r["server"] for r in runs})
    if failures:
        print(f"percore.py: FAILED: {failures} wrk run(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
