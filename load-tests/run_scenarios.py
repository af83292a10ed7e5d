#!/usr/bin/env python3
"""run_scenarios.py: the HTTP API and execution numbers of docs/performance.md, in one run.

Starts a fresh `soulbox serve` (temporary data dir, a known admin key, rate limits and
scheduler limits raised so they never shape the numbers, the pool sized for the scenario) and
runs, against it, with load-tests/http_load:

  baseline      bare `python3 -c 'print(1)'`, no sandbox (hyperfine when installed, else a
                posix_spawn loop), measured in this same run
  warm_python   one-shot python print(1) via POST /api/v1/execute, pool warm: paced at 5/s
                (open loop: one request on an idle server), then back to back on 1 and 4
                connections (closed loop)
  create_destroy  POST /api/v1/sandboxes then DELETE /api/v1/sandboxes/{id}, closed loop
  stateful      POST /api/v1/sandboxes/{id}/execute on one sandbox (skipped when the route is
                not there yet)
  fresh_rate    one-shot python executions at fixed arrival rates (open loop), rising until the
                latency degrades: the highest sustained rate
  mixed         python/bash/javascript one-shots, weighted, closed loop
  health        GET /health throughput
  memory        idle warm sandboxes: cgroup usage and PSS/RSS of their processes, against a bare
                idle python3 interpreter and the bare kernel script

Results: one JSON per scenario in OUTDIR (http_load's own JSON), plus OUTDIR/summary.json with
every command, the machine load (uptime) next to each scenario, and the numbers.

usage: run_scenarios.py --soulbox BIN --http-load BIN --out DIR [--quick] [--only a,b,...]
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "lib"))
from soulbox_proc import Soulbox  # noqa: E402

ADMIN = "sbk_load_scenarios_admin_key_0123456789abcdef"
PY1 = '{"runtime":"python","code":"print(1)"}'
EXPECT1 = '"stdout":"1\\n"'

A = None
SB = None
KEY = None
SUMMARY = {"scenarios": {}}


def log(*a):
    print(*a, flush=True)


def uptime():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def http(method, path, body=None, key=None, timeout=60):
    req = urllib.request.Request(SB.url(path), method=method,
                                 data=body.encode() if isinstance(body, str) else body)
    if key:
        req.add_header("Authorization", "Bearer " + key)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def load(name, args, path, auth=True):
    """Run http_load, keep its stdout and JSON, return the JSON with the command and load."""
    out = os.path.join(A.out, name + ".json")
    cmd = [A.http_load] + args
    if auth:
        cmd += ["-H", "Authorization: Bearer " + KEY]
    cmd += ["--json", out, SB.url(path)]
    shown = " ".join("'%s'" % c if (" " in c or "{" in c or '"' in c) else c for c in cmd)
    shown = shown.replace(KEY, "$KEY") if KEY else shown
    before = uptime()
    log("\n== %s  (load average %s)\n$ %s" % (name, before, shown))
    p = subprocess.run(cmd, capture_output=True, text=True)
    log(p.stdout.rstrip())
    if p.stderr:
        log(p.stderr.rstrip())
    with open(os.path.join(A.out, name + ".txt"), "w") as f:
        f.write("$ " + shown + "\n" + p.stdout + p.stderr)
    try:
        with open(out) as f:
            j = json.load(f)
    except (OSError, ValueError):
        j = {"error": "http_load exited %d" % p.returncode}
    j["command"] = shown
    j["loadavg_before"] = before
    j["loadavg_after"] = uptime()
    return j


def metric(name, labels=None):
    st, text = http("GET", "/metrics")
    vals = []
    for line in text.splitlines():
        if line.startswith(name) and (labels is None or labels in line):
            vals.append(float(line.rsplit(" ", 1)[1]))
    return vals


def wait_pool(runtime, n, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = metric("soulbox_pool_warm", 'runtime="%s"' % runtime)
        if v and v[0] >= n:
            return True
        time.sleep(0.2)  # the pool fills in the background; poll its gauge
    return False


def summarize(j):
    """The few numbers a table needs from an http_load JSON."""
    if "latency_ms" not in j:
        return j
    lat = j["latency_ms"]
    return {"ops": j["operations"], "ok": j["ok"], "failed": j["failed"],
            "rps": round(j["throughput_rps"], 1),
            "p50_ms": lat["p50"], "p90_ms": lat["p90"], "p99_ms": lat["p99"],
            "max_ms": lat["max"], "status": j["status"],
            "errors": {k: v for k, v in j["errors"].items() if v},
            "loadavg": j["loadavg_before"], "command": j["command"]}


# ---- scenarios ------------------------------------------------------------------------------

def sc_baseline():
    runs = 60 if A.quick else 300
    r = {}
    if shutil.which("hyperfine"):
        out = os.path.join(A.out, "baseline_hyperfine.json")
        cmd = ["hyperfine", "-N", "--warmup", "20", "--runs", str(runs), "--export-json", out,
               "python3 -c 'print(1)'"]
        log("\n== baseline (load average %s)\n$ %s" % (uptime(), " ".join(cmd)))
        subprocess.run(cmd, stdout=subprocess.DEVNULL)
        with open(out) as f:
            h = json.load(f)["results"][0]
        t = sorted(h["times"])
        r = {"tool": "hyperfine", "command": " ".join(cmd[:-1]) + " \"python3 -c 'print(1)'\"",
             "runs": len(t), "mean_ms": h["mean"] * 1e3, "p50_ms": t[len(t) // 2] * 1e3,
             "p90_ms": t[int(len(t) * .9)] * 1e3, "p99_ms": t[int(len(t) * .99)] * 1e3,
             "min_ms": h["min"] * 1e3}
    else:
        t = []
        py = shutil.which("python3")
        for i in range(runs + 20):
            s = time.monotonic()
            pid = os.posix_spawn(py, [py, "-c", "print(1)"], os.environ,
                                 file_actions=[(os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0)])
            os.waitpid(pid, 0)
            if i >= 20:
                t.append(time.monotonic() - s)
        t.sort()
        r = {"tool": "posix_spawn loop", "runs": len(t), "mean_ms": sum(t) / len(t) * 1e3,
             "p50_ms": t[len(t) // 2] * 1e3, "p90_ms": t[int(len(t) * .9)] * 1e3,
             "p99_ms": t[int(len(t) * .99)] * 1e3, "min_ms": t[0] * 1e3}
    r["loadavg"] = uptime()
    log("baseline python3 -c 'print(1)': p50 %.2f ms, p90 %.2f, p99 %.2f (%s, %d runs)" %
        (r["p50_ms"], r["p90_ms"], r["p99_ms"], r["tool"], r["runs"]))
    return r


def sc_warm_python():
    d = "3" if A.quick else "10"
    wait_pool("python", A.pool_min)
    res = {}
    # Paced: 5 requests/s (open loop), so each finds the server idle and the pool refilled --
    # the latency of one request.  Back to back (closed loop): each request also competes with
    # the refills the previous ones started.
    j = load("warm_python_paced5", ["-r", "5", "-c", "4", "-d", d, "--warmup", "1", "-b", PY1,
                                    "--expect-body", EXPECT1], "/api/v1/execute")
    res["paced5"] = summarize(j)
    wait_pool("python", A.pool_min)
    for c in (1, 4):
        j = load("warm_python_c%d" % c, ["-c", str(c), "-d", d, "--warmup", "1", "-b", PY1,
                                         "--expect-body", EXPECT1], "/api/v1/execute")
        res["c%d" % c] = summarize(j)
        wait_pool("python", A.pool_min)
    return res


def sc_create_destroy():
    d = "3" if A.quick else "10"
    res = {}
    # python: the pool's runtime (does create take a warm one?); c (compiled runtime, no kernel)
    for rt in ("python", "bash"):
        body = '{"runtime":"%s","timeout":60}' % rt
        j = load("create_destroy_%s" % rt,
                 ["-c", "1", "-d", d, "--warmup", "1",
                  "--req", "create_destroy=1:POST:/api/v1/sandboxes:" + body,
                  "--then", "DELETE:/api/v1/sandboxes/{id}"], "/")
        s = summarize(j)
        if "templates" in j:
            st = j["templates"][0]["steps"]
            s["create_p50_ms"] = st[0]["latency_ms"]["p50"]
            s["create_p99_ms"] = st[0]["latency_ms"]["p99"]
            s["delete_p50_ms"] = st[1]["latency_ms"]["p50"]
            s["delete_p99_ms"] = st[1]["latency_ms"]["p99"]
        res[rt] = s
    return res


def sc_stateful():
    st, body = http("POST", "/api/v1/sandboxes", '{"runtime":"python","timeout":120}', KEY)
    if st != 201:
        return {"skipped": "could not create a sandbox: %d %s" % (st, body[:200])}
    sid = json.loads(body)["id"]
    try:
        st, body = http("POST", "/api/v1/sandboxes/%s/execute" % sid, '{"code":"x = 1"}', KEY)
        if st != 200:
            return {"skipped": "POST /api/v1/sandboxes/{id}/execute answers %d %s: not there yet"
                               % (st, body[:160])}
        d = "3" if A.quick else "10"
        j = load("stateful_execute", ["-c", "1", "-d", d, "--warmup", "1",
                                      "-b", '{"code":"x += 1\\nprint(1)"}',
                                      "--expect-body", EXPECT1],
                 "/api/v1/sandboxes/%s/execute" % sid)
        return summarize(j)
    finally:
        http("DELETE", "/api/v1/sandboxes/" + sid, None, KEY)


def sc_fresh_rate():
    rates = ([10, 25, 50, 100, 200, 300] if A.quick else
             [10, 15, 20, 25, 30, 35, 50, 75, 100, 150, 200, 300, 400])
    d = "3" if A.quick else "8"
    steps, best = [], 0
    low_p50 = None
    for r in rates:
        wait_pool("python", A.pool_min, timeout=30)
        j = load("fresh_rate_%d" % r, ["-r", str(r), "-c", "512", "-d", d, "--warmup", "1",
                                       "--timeout", "20000", "-b", PY1,
                                       "--expect-body", EXPECT1], "/api/v1/execute")
        s = summarize(j)
        if "p50_ms" not in s:
            steps.append(s)
            break
        s["offered_rps"] = r
        s["service_p50_ms"] = j["service_ms"]["p50"]
        s["max_send_queue"] = j["max_send_queue"]
        if low_p50 is None:
            low_p50 = s["p50_ms"]
        bad = s["failed"] + sum(s["errors"].values())
        # Sustained: the server keeps up with the arrivals (>= 95% of them answered within the
        # window), answers them all 200, and its p99 stays within 1 s (queueing shows there).
        s["sustained"] = (bad == 0 and s["rps"] >= 0.95 * r and s["p99_ms"] <= 1000)
        steps.append(s)
        if not s["sustained"]:
            break
        best = r
    return {"steps": steps, "max_sustained_rps": best}


def sc_mixed():
    d = "3" if A.quick else "10"
    for rt in ("python", "bash", "javascript"):
        wait_pool(rt, A.pool_min, timeout=30)
    args = ["-c", "4", "-d", d, "--warmup", "1", "--expect-body", EXPECT1]
    for rt, code, w in (("python", "print(1)", 2), ("bash", "echo 1", 1),
                        ("javascript", "console.log(1)", 1)):
        args += ["--req", '%s=%d:POST:/api/v1/execute:{"runtime":"%s","code":"%s"}'
                 % (rt, w, rt, code)]
    j = load("mixed", args, "/api/v1/execute")
    s = summarize(j)
    s["per_runtime"] = {t["name"]: {"ok": t["ok"], "failed": t["failed"],
                                    "p50_ms": t["latency_ms"]["p50"],
                                    "p99_ms": t["latency_ms"]["p99"]}
                        for t in j.get("templates", [])}
    return s


def sc_health():
    d = "3" if A.quick else "8"
    res = {}
    for c, t in ((64, 1), (64, 2)):
        j = load("health_c%d_t%d" % (c, t), ["-c", str(c), "-t", str(t), "-d", d, "--warmup", "1"],
                 "/health", auth=False)
        res["c%d_t%d" % (c, t)] = summarize(j)
    return res


def descendants(root):
    kids = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open("/proc/%s/stat" % p) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(p))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = set(), [root]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.add(k)
            todo.append(k)
    return out


def smaps(pid):
    r = {}
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                k, v = line.split(":", 1)
                if k in ("Rss", "Pss", "Pss_Anon", "Pss_File", "Private_Clean", "Private_Dirty"):
                    r[k] = int(v.split()[0]) * 1024
        r["Uss"] = r.get("Private_Clean", 0) + r.get("Private_Dirty", 0)
    except OSError:
        pass
    return r


def idle_process(argv, settle=1.0):
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    time.sleep(settle)  # let the interpreter finish its start-up before we read its memory
    m = smaps(p.pid)
    p.kill()
    p.wait()
    return m


def sc_memory():
    for rt in ("python", "bash", "javascript"):
        wait_pool(rt, A.pool_min, timeout=30)
    time.sleep(2)  # idle: no run in flight, the pool full
    mine = descendants(SB.proc.pid)
    root = "/sys/fs/cgroup/memory/soulbox"
    per_rt = {}
    by_metric = {}
    for line in http("GET", "/metrics")[1].splitlines():
        m = re.match(r'soulbox_sandbox_memory_bytes\{sandbox="([^"]+)",runtime="([^"]+)"\} (\S+)',
                     line)
        if m:
            by_metric.setdefault(m.group(2), []).append(float(m.group(3)))
    if os.path.isdir(root):
        for g in os.listdir(root):
            gp = os.path.join(root, g)
            try:
                with open(os.path.join(gp, "cgroup.procs")) as f:
                    pids = [int(x) for x in f.read().split()]
            except OSError:
                continue
            if not pids or not set(pids) <= mine:
                continue
            procs = []
            for pid in pids:
                try:
                    with open("/proc/%d/cmdline" % pid, "rb") as f:
                        cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
                except OSError:
                    continue
                sm = smaps(pid)
                procs.append({"cmd": cmd[:80], **sm})
            # bash's kernel is a python script driving a bash: look for the bash first.
            cmds = " | ".join(p["cmd"] for p in procs)
            rt = ("bash" if re.search(r"(^|[ /|])bash( |$)", cmds) else
                  "javascript" if re.search(r"(^|[ /|])node( |$)", cmds) else "python" if "kernel.py" in cmds else "?")
            stat = {}
            with open(os.path.join(gp, "memory.stat")) as f:
                for line in f:
                    k, v = line.split()
                    if k in ("rss", "cache", "shmem", "mapped_file"):
                        stat["cgroup_" + k] = int(v)
            with open(os.path.join(gp, "memory.usage_in_bytes")) as f:
                usage = int(f.read())
            per_rt.setdefault(rt, []).append({
                "cgroup": g, "usage": usage, **stat,
                "pss": sum(p.get("Pss", 0) for p in procs),
                "uss": sum(p.get("Uss", 0) for p in procs),
                "rss": sum(p.get("Rss", 0) for p in procs), "cmds": cmds, "procs": procs})
    kernel = os.path.join(HERE, "..", "plugins", "python", "kernel.py")
    bare = {"python3 idle (reading stdin)": idle_process(["python3", "-c",
                                                          "import sys; sys.stdin.read()"]),
            "python3 kernel.py outside a sandbox": idle_process(["python3", "-u", kernel])}
    res = {"bare": bare, "metric_bytes": by_metric, "sandboxes": {}}
    mb = 1 << 20
    for rt, sbs in per_rt.items():
        n = len(sbs)
        avg = {k: sum(s.get(k, 0) for s in sbs) / n
               for k in ("usage", "cgroup_rss", "cgroup_cache", "rss", "pss", "uss")}
        res["sandboxes"][rt] = {"count": n, "avg": avg, "example": sbs[0]}
        log("memory %s (%d idle warm sandboxes): cgroup usage %.2f MB (anon %.2f, cache %.2f); "
            "processes USS %.2f MB, PSS %.2f MB, RSS %.2f MB  [%s]"
            % (rt, n, avg["usage"] / mb, avg["cgroup_rss"] / mb, avg["cgroup_cache"] / mb,
               avg["uss"] / mb, avg["pss"] / mb, avg["rss"] / mb, sbs[0]["cmds"]))
    for k, v in bare.items():
        log("memory %s: USS %.2f MB, PSS %.2f MB, RSS %.2f MB"
            % (k, v.get("Uss", 0) / mb, v.get("Pss", 0) / mb, v.get("Rss", 0) / mb))
    py = res["sandboxes"].get("python")
    if py:
        # Beyond the interpreter: the sandbox's private memory (USS of its processes) and its
        # cgroup charge, each against a bare idle python3's USS.
        for base in ("python3 idle (reading stdin)", "python3 kernel.py outside a sandbox"):
            b = bare[base].get("Uss", 0)
            res["python_beyond_uss_bytes vs " + base] = py["avg"]["uss"] - b
            res["python_beyond_cgroup_usage_bytes vs " + base] = py["avg"]["usage"] - b
            log("python idle warm sandbox beyond '%s': %.2f MB (USS), %.2f MB (cgroup usage)"
                % (base, (py["avg"]["uss"] - b) / mb, (py["avg"]["usage"] - b) / mb))
    return res


SCENARIOS = [("baseline", sc_baseline), ("warm_python", sc_warm_python),
             ("create_destroy", sc_create_destroy), ("stateful", sc_stateful),
             ("mixed", sc_mixed), ("memory", sc_memory), ("health", sc_health),
             ("fresh_rate", sc_fresh_rate)]


def main():
    global A, SB, KEY
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--soulbox", required=True)
    ap.add_argument("--http-load", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true", help="short runs (a check of the script)")
    ap.add_argument("--only", default="", help="comma-separated scenario names")
    ap.add_argument("--pool-min", type=int, default=8)
    ap.add_argument("--pool-max", type=int, default=64)
    ap.add_argument("--server-arg", action="append", default=[],
                    help="extra soulbox serve argument (repeatable)")
    A = ap.parse_args()
    os.makedirs(A.out, exist_ok=True)
    only = set(filter(None, A.only.split(",")))

    git = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    serve = ["serve", "--port", "0", "--auth-admin-key", ADMIN, "--log-level", "warn",
             "--ratelimit-per-key-per-minute", "10000000",
             "--ratelimit-global-per-second", "10000000",
             "--scheduler-max-concurrent-per-key", "100000", "--scheduler-max-concurrent", "512",
             "--scheduler-max-queue", "100000", "--scheduler-max-sandboxes-per-key", "0",
             "--executor-max-sandboxes", "1024", "--api-place-timeout-ms", "60000",
             "--pool-runtimes", "python,bash,javascript",
             "--pool-min-size", str(A.pool_min), "--pool-max-size", str(A.pool_max)] + A.server_arg
    SB = Soulbox(os.path.abspath(A.soulbox), serve)
    SB.args += ["--data-dir", os.path.join(SB.tmp, "data")]
    SUMMARY.update({"git": git, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "nproc": os.cpu_count(), "kernel": os.uname().release,
                    "loadavg_start": uptime(),
                    "server": "soulbox " + " ".join(serve).replace(ADMIN, "$ADMIN_KEY")})
    log("soulbox %s (git %s), load average %s" % (" ".join(serve).replace(ADMIN, "$ADMIN_KEY"),
                                                 git, uptime()))
    SB.start(timeout=60)
    SUMMARY["server_pid"] = SB.proc.pid
    try:
        st, body = http("POST", "/api/v1/keys", '{"name":"load","role":"user"}', ADMIN)
        assert st == 201, body
        KEY = json.loads(body)["key"]
        for name, fn in SCENARIOS:
            if only and name not in only:
                continue
            SUMMARY["scenarios"][name] = fn()
            with open(os.path.join(A.out, "summary.json"), "w") as f:
                json.dump(SUMMARY, f, indent=1)
    finally:
        SB.stop(timeout=60)
        SUMMARY["loadavg_end"] = uptime()
        with open(os.path.join(A.out, "summary.json"), "w") as f:
            json.dump(SUMMARY, f, indent=1)
        with open(os.path.join(A.out, "server.log"), "w") as f:
            f.write(SB.log())
        shutil.rmtree(SB.tmp, ignore_errors=True)
    log("\nresults in %s/summary.json" % A.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
