#!/usr/bin/python3
"""bench/controller.py: the controller's targets, measured on real cgroups (run through bench/controller.sh).

Scenarios (each in a fresh cgroup of its own; tern-echo runs inside it, wrk outside it):
  follow   quota moved 0.5 -> 2 -> 1 cores under light load, three times: the time from the write to the cgroup file to
           the controller's new processor count (its TERN_DEBUG=controller line carries the wall-clock time); and the
           controller thread's CPU over an idle stretch (/proc/PID/task/TID/schedstat of the thread named tern-ctl)
  quota1   a 1-core quota set while running (the process started with 2 cores), wrk -c100 on /work?us=40: the default
           policy against --procs 1 and --procs 2, rounds interleaved; p99 and throughput ratios
  quota15  a 1.5-core quota: --procs 1, --procs 2 and auto rounding; which count auto ends at, and when
  step     /block?ms=N (each request blocks its thread), --procs-max 16: a sweep of static counts at -c200 finds the
           best; then hill and latency under -c10 -> -c200 -> -c10 in 1 s slices: when they reach 95% of the best, and
           whether they come back down; plotted (procs, throughput, p99 over time) with gnuplot
Prints a summary and writes it (summary.json, raw logs, the PNG) to --out.
"""
import argparse
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(*a):
    print(*a, flush=True)


# ---- cgroups (v1 cpu controller, or v2 with the cpu controller enabled) ----


class Cgroup:
    def __init__(self, name):
        self.v1 = os.path.exists("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
        if self.v1:
            self.path = f"/sys/fs/cgroup/cpu/{name}"
        else:
            base = "/sys/fs/cgroup"
            if not os.path.exists(f"{base}/cgroup.controllers"):
                sys.exit("controller.py: no cgroup v1 cpu controller and no cgroup v2 hierarchy")
            try:
                with open(f"{base}/cgroup.subtree_control", "w") as f:
                    f.write("+cpu")
            except OSError:
                pass
            self.path = f"{base}/{name}"
        os.makedirs(self.path, exist_ok=True)
        self.set_quota(None)

    def set_quota(self, cores):
        period = 100000
        if self.v1:
            with open(f"{self.path}/cpu.cfs_period_us", "w") as f:
                f.write(str(period))
            with open(f"{self.path}/cpu.cfs_quota_us", "w") as f:
                f.write("-1" if cores is None else str(int(cores * period)))
        else:
            with open(f"{self.path}/cpu.max", "w") as f:
                f.write(("max" if cores is None else str(int(cores * period))) + f" {period}")

    def throttled(self):
        out = {}
        with open(f"{self.path}/cpu.stat") as f:
            for line in f:
                k, v = line.split()
                out[k] = int(v)
        return out.get("nr_throttled", 0)

    def remove(self):
        for _ in range(50):
            try:
                os.rmdir(self.path)
                return
            except OSError:
                time.sleep(0.1)


# ---- processes ----


class Server:
    def __init__(self, args, cg, port, flags, env=None, name="server"):
        self.port = port
        self.log_path = os.path.join(args.out, f"{name}-{port}.log")
        e = dict(os.environ)
        e.update(env or {})
        cmd = [os.path.join(args.bin, "tern-echo"), "--listen", f"127.0.0.1:{port}"] + flags
        self.logf = open(self.log_path, "w")
        # The child joins the cgroup before it execs, so every thread it starts is in it.
        self.p = subprocess.Popen(
            ["sh", "-c", f'echo $$ > {cg.path}/cgroup.procs && exec "$@"', "sh"] + cmd,
            stdout=subprocess.DEVNULL,
            stderr=self.logf,
            env=e,
        )
        deadline = time.time() + 10
        while time.time() < deadline:
            if health(port):
                return
            time.sleep(0.05)
        self.stop()
        sys.exit(f"controller.py: tern-echo {' '.join(flags)} did not answer on port {port}")

    def tid(self, comm):
        for t in os.listdir(f"/proc/{self.p.pid}/task"):
            try:
                with open(f"/proc/{self.p.pid}/task/{t}/comm") as f:
                    if f.read().strip() == comm:
                        return int(t)
            except OSError:
                pass
        return None

    def thread_cpu_ns(self, tid):
        with open(f"/proc/{self.p.pid}/task/{tid}/schedstat") as f:
            return int(f.read().split()[0])

    def stop(self):
        self.p.send_signal(signal.SIGKILL)
        self.p.wait()
        self.logf.close()
        with open(self.log_path) as f:
            return f.read()


def health(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as c:
            c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return c.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def wrk(port, threads, conns, duration, path, check=True):
    """Runs wrk; returns (requests/s, p99 seconds) or None when it could not connect."""
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{max(1, round(duration))}s", "--latency", f"http://127.0.0.1:{port}{path}"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    m = re.search(r"Requests/sec:\s+([\d.]+)", r.stdout)
    if not m or "Socket errors: connect" in r.stdout:
        if check:
            log(r.stdout, r.stderr)
        return None
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", r.stdout)
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
    return float(m.group(1)), float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")


def wrk_bg(port, conns, duration, path):
    return subprocess.Popen(
        ["wrk", "-t1", f"-c{conns}", f"-d{max(1, round(duration))}s", f"http://127.0.0.1:{port}{path}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def median(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


# ---- scenarios ----


def follow(args, summary):
    cg = Cgroup(f"tern-bench-follow-{os.getpid()}")
    try:
        srv = Server(args, cg, args.port, [], {"TERN_DEBUG": "controller"}, "follow")
        load = wrk_bg(args.port, 2, 60, "/health")
        time.sleep(1)
        tid = srv.tid("tern-ctl")
        l0, lw0 = srv.thread_cpu_ns(tid), time.time()
        delays = []
        have = os.cpu_count()  # the count before the first write: the process started with every CPU
        for rnd in range(args.rounds):
            for cores, want in ((0.5, 1), (2, 2), (1, 1)):
                want = min(want, os.cpu_count())
                time.sleep(random.uniform(0, 0.2))  # writes at every phase of the tick, not one
                t0 = time.time()
                cg.set_quota(cores)
                time.sleep(1.0)
                if want != have:  # a write that leaves the count as it is has nothing to follow
                    delays.append((cores, want, t0))
                have = want
        l1, lw1 = srv.thread_cpu_ns(tid), time.time()
        # Idle stretch for the tick cost: no load, default interval (the first second is the idle back-off's).
        load.kill()
        load.wait()
        time.sleep(1.5)
        c0, w0 = srv.thread_cpu_ns(tid), time.time()
        time.sleep(args.idle)
        c1, w1 = srv.thread_cpu_ns(tid), time.time()
        text = srv.stop()
    finally:
        cg.remove()
    changes = [(float(m.group(3)), int(m.group(1)), int(m.group(2)))
               for m in re.finditer(r"set procs (\d+) -> (\d+) .*at=([\d.]+)", text)]
    lat = []
    for cores, want, t0 in delays:
        after = [c for c in changes if c[0] >= t0 and c[2] == want]
        if after and after[0][0] - t0 < 1.0:
            lat.append(after[0][0] - t0)
        else:
            lat.append(float("nan"))
    ok = [x for x in lat if x == x]
    cost = (c1 - c0) / ((w1 - w0) * 1e9)
    loaded_cost = (l1 - l0) / ((lw1 - lw0) * 1e9)
    summary["follow"] = {
        "delays_ms": [round(x * 1e3, 1) for x in lat],
        "median_ms": round(median(lat) * 1e3, 1),
        "max_ms": round(max(ok) * 1e3, 1) if ok else None,
        "missed": len(lat) - len(ok),
        "tick_cost_core_fraction": cost,
        "tick_cost_loaded_core_fraction": loaded_cost,
        "target": "every change within 250 ms; tick cost < 0.1% of a core, idle and under light load",
        "met": bool(ok) and len(ok) == len(lat) and max(ok) < 0.25 and cost < 0.001 and loaded_cost < 0.001,
    }
    log("follow:", json.dumps(summary["follow"]))


def loaded_run(args, cg_name, flags, quota, path, conns, duration, env=None, name="run", settle=1.0):
    cg = Cgroup(cg_name)
    try:
        srv = Server(args, cg, args.port, flags, env, name)
        time.sleep(0.3)
        if quota is not None:
            cg.set_quota(quota)
        time.sleep(settle)
        th0 = cg.throttled()
        r = wrk(args.port, 1, conns, duration, path)
        th1 = cg.throttled()
        text = srv.stop()
    finally:
        cg.remove()
    procs = re.findall(r"procs=(\d+) idleprocs", text)
    return {"rps": r[0] if r else float("nan"), "p99": r[1] if r else float("nan"), "throttled": th1 - th0,
            "final_procs": int(procs[-1]) if procs else None, "log": text}


def quota1(args, summary):
    modes = {"static1": ["--procs", "1"], "static2": ["--procs", "2"], "default": []}
    res = {k: [] for k in modes}
    for rnd in range(args.rounds):
        order = list(modes) if rnd % 2 == 0 else list(reversed(modes))
        for k in order:
            r = loaded_run(args, f"tern-bench-q1-{os.getpid()}", modes[k], 1.0, "/work?us=40", 100, args.duration,
                           {"TERN_SCHEDTRACE": "500"}, f"quota1-{k}")
            r.pop("log")
            res[k].append(r)
            log(f"quota1 round {rnd + 1} {k}: {r}")
    ratios = {
        "p99_default_over_static1": median([d["p99"] / s["p99"] for d, s in zip(res["default"], res["static1"])]),
        "p99_default_over_static2": median([d["p99"] / s["p99"] for d, s in zip(res["default"], res["static2"])]),
        "rps_default_over_static2": median([d["rps"] / s["rps"] for d, s in zip(res["default"], res["static2"])]),
    }
    summary["quota1"] = {
        "runs": res,
        "ratios": ratios,
        "target": "p99 <= 1.2x static 1 and <= 0.3x static 2; throughput >= static 2",
        "met": ratios["p99_default_over_static1"] <= 1.2 and ratios["p99_default_over_static2"] <= 0.3 and
        ratios["rps_default_over_static2"] >= 1.0,
    }
    log("quota1:", json.dumps(ratios))


def quota15(args, summary):
    modes = {"static1": ["--procs", "1"], "static2": ["--procs", "2"], "auto": ["--quota-rounding", "auto"]}
    res = {k: [] for k in modes}
    for rnd in range(args.rounds):
        order = list(modes) if rnd % 2 == 0 else list(reversed(modes))
        for k in order:
            r = loaded_run(args, f"tern-bench-q15-{os.getpid()}", modes[k], 1.5, "/work?us=40", 100, args.duration,
                           {"TERN_SCHEDTRACE": "100"}, f"quota15-{k}", settle=0.2)
            # auto: when it first reached the count it ended at, the time of its last change (auto re-probes the
            # higher count after 3 s clean, then after twice as long each time it throttles again), and the share
            # of the run's trace lines at the final count.
            if k == "auto":
                trace = [(int(m.group(1)), int(m.group(2))) for m in re.finditer(r"SCHED (\d+)ms: procs=(\d+)", r["log"])]
                final = trace[-1][1] if trace else None
                r["first_at_final_ms"] = next((t for t, p in trace if p == final), None)
                changes = [t for (t, p), (_, q) in zip(trace[1:], trace) if p != q]
                r["last_change_ms"] = changes[-1] if changes else None
                r["share_at_final"] = round(sum(1 for _, p in trace if p == final) / max(1, len(trace)), 2)
            r.pop("log")
            res[k].append(r)
            log(f"quota15 round {rnd + 1} {k}: {r}")
    best = [1 if a["p99"] <= b["p99"] else 2 for a, b in zip(res["static1"], res["static2"])]
    ends = [r["final_procs"] for r in res["auto"]]
    summary["quota15"] = {
        "runs": res,
        "better_static_by_p99": best,
        "auto_final_procs": ends,
        # The quota is written 0.3 s after the server starts (loaded_run); trace times count from its start.
        "auto_reached_final_s_after_quota": [None if r["first_at_final_ms"] is None else
                                             round(r["first_at_final_ms"] / 1e3 - 0.3, 1) for r in res["auto"]],
        "target": "auto ends at whichever of 1 and 2 gives the lower p99, within 5 s",
        "met": sum(1 for b, e, r in zip(best, ends, res["auto"]) if b == e and r["first_at_final_ms"] is not None and
                   r["first_at_final_ms"] / 1e3 - 0.3 <= 5) * 2 > len(ends),
    }
    log("quota15: better", best, "auto ended at", ends)


def step(args, summary):
    path = f"/block?ms={args.block_ms}"
    sweep = {}
    for n in (1, 2, 4, 8, 16):
        r = loaded_run(args, f"tern-bench-sweep-{os.getpid()}", ["--procs", str(n)], None, path, 200, args.slice * 4,
                       None, f"sweep-{n}", settle=0.2)
        sweep[n] = r["rps"]
        log(f"step sweep procs={n}: {r['rps']:.0f} req/s")
    best_n = max(sweep, key=lambda n: sweep[n])
    best = sweep[best_n]
    out = {"sweep": sweep, "best_static": best_n, "best_rps": best}
    phases = [(10, args.low_s), (200, args.high_s), (10, args.low_s)]
    for policy in ("hill", "latency"):
        cg = Cgroup(f"tern-bench-step-{os.getpid()}")
        rows = []
        try:
            srv = Server(args, cg, args.port, ["--policy", policy, "--procs-max", "16"], {"TERN_SCHEDTRACE": "100"},
                         f"step-{policy}")
            t_start = time.time()
            for conns, secs in phases:
                for _ in range(int(secs / args.slice)):
                    r = wrk(args.port, 1, conns, args.slice, path)
                    rows.append((time.time() - t_start, conns, r[0] if r else float("nan"),
                                 r[1] if r else float("nan")))
            text = srv.stop()
        finally:
            cg.remove()
        trace = [(int(m.group(1)) / 1000.0, int(m.group(2))) for m in re.finditer(r"SCHED (\d+)ms: procs=(\d+)", text)]
        # Server time 0 is its start, a few ms before t_start: close enough at 1 s slices.
        def procs_at(t):
            ps = [p for (ts, p) in trace if ts <= t]
            return ps[-1] if ps else None
        # The step: when the last -c10 slice before it ended (slices run a little longer than --slice).
        step_t = next((rows[i - 1][0] for i in range(1, len(rows)) if rows[i][1] == 200 and rows[i - 1][1] == 10),
                      args.low_s)
        reach = None
        for (t, conns, rps, p99) in rows:
            if conns == 200 and t > step_t and rps >= 0.95 * best:
                reach = t - step_t
                break
        high_end = max([t for (t, conns, _, _) in rows if conns == 200] or [args.low_s + args.high_s])
        peak = max([p for (ts, p) in trace if step_t <= ts <= high_end] or [0])
        end_procs = procs_at(rows[-1][0]) if rows else None
        data = os.path.join(args.out, f"step-{policy}.dat")
        with open(data, "w") as f:
            for (t, conns, rps, p99) in rows:
                f.write(f"{t:.2f} {procs_at(t) or 0} {rps:.0f} {p99 * 1e3:.3f} {conns}\n")
        with open(os.path.join(args.out, f"step-{policy}-procs.dat"), "w") as f:
            for (ts, p) in trace:
                f.write(f"{ts:.2f} {p}\n")
        out[policy] = {"reach_95pct_s": reach, "peak_procs": peak, "end_procs": end_procs,
                       "slices": [(round(t, 1), c, round(r), round(p * 1e3, 2)) for (t, c, r, p) in rows]}
        log(f"step {policy}: reached 95% of best after {reach} s; peak procs {peak}, back to {end_procs}")
    out["target"] = "hill and latency reach 95% of the best static throughput within 5 s of the step, and come back down"
    out["met"] = all(out[p]["reach_95pct_s"] is not None and out[p]["reach_95pct_s"] <= 5 and
                     out[p]["end_procs"] is not None and out[p]["end_procs"] < out[p]["peak_procs"]
                     for p in ("hill", "latency"))
    summary["step"] = out
    plot(args)


def plot(args):
    png = os.path.join(args.out, "controller-step.png")
    xmax = 1
    for name in ("step-hill.dat", "step-latency.dat"):
        with open(os.path.join(args.out, name)) as f:
            xmax = max([xmax] + [float(line.split()[0]) for line in f if line.strip()])
    xmax = int(xmax) + 1
    script = f"""
set terminal pngcairo size 1100,900 font ",10"
set output "{png}"
set multiplot layout 3,1 title "tern-echo /block?ms={args.block_ms}: -c10 -> -c200 -> -c10 (1 s wrk slices), --procs-max 16"
set grid
set key top left
set xlabel "seconds since start"
set ylabel "processors"
set xrange [0:{xmax}]
plot "{args.out}/step-hill-procs.dat" using 1:2 with steps lw 2 title "hill", \\
     "{args.out}/step-latency-procs.dat" using 1:2 with steps lw 2 title "latency"
set ylabel "requests/s"
plot "{args.out}/step-hill.dat" using 1:3 with linespoints lw 2 title "hill", \\
     "{args.out}/step-latency.dat" using 1:3 with linespoints lw 2 title "latency"
set ylabel "p99 (ms)"
set logscale y
plot "{args.out}/step-hill.dat" using 1:4 with linespoints lw 2 title "hill", \\
     "{args.out}/step-latency.dat" using 1:4 with linespoints lw 2 title "latency"
unset multiplot
"""
    try:
        subprocess.run(["gnuplot"], input=script, text=True, check=True)
        log("plot:", png)
    except (OSError, subprocess.CalledProcessError) as e:
        log("plot: gnuplot failed:", e)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    ap.add_argument("--out", default=f"/tmp/tern-controller-{int(time.time())}")
    ap.add_argument("--port", type=int, default=18600)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=8, help="seconds of wrk per loaded run")
    ap.add_argument("--idle", type=float, default=10, help="seconds of idle for the tick cost")
    ap.add_argument("--block-ms", type=int, default=1)
    ap.add_argument("--slice", type=float, default=1.0)
    ap.add_argument("--low-s", type=float, default=5)
    ap.add_argument("--high-s", type=float, default=10)
    ap.add_argument("scenarios", nargs="*", default=["follow", "quota1", "quota15", "step"])
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("controller.py: needs root (it creates cgroups)")
    os.makedirs(args.out, exist_ok=True)
    summary = {"commit": subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                                        text=True).stdout.strip(), "date": time.strftime("%Y-%m-%d %H:%M")}
    for s in args.scenarios:
        {"follow": follow, "quota1": quota1, "quota15": quota15, "step": step}[s](args, summary)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    log("summary:", os.path.join(args.out, "summary.json"))
    for k, v in summary.items():
        if isinstance(v, dict) and "met" in v:
            log(f"  {k}: {'met' if v['met'] else 'MISSED'} ({v['target']})")


if __name__ == "__main__":
    main()
