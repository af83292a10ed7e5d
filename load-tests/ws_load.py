#!/usr/bin/python3
"""ws_load: WebSocket session load driver for SoulBox's /ws (protocol: docs/api.md).

Holds N concurrent sessions -- N connections, each attached to its own session and therefore
its own sandbox -- and has each one execute CODE every INTERVAL seconds (first execute at a
random offset within the interval, so the load is spread).  Reports:

  - connect: time to a completed WebSocket upgrade (auth included);
  - first execute: execute sent -> exit received for each session's first execute, which
    includes creating the session's sandbox and starting its warm kernel;
  - steady round trip: execute sent -> exit received for every later execute;
  - server memory: the soulbox process's RSS (VmRSS, VmHWM from /proc/PID/status when the pid
    is known, else process_resident_memory_bytes from /metrics), the sandboxes' memory (sum of
    soulbox_sandbox_memory_bytes, i.e. their cgroups) and the node's used memory
    (MemTotal - MemAvailable) against the baseline before the run; sampled every
    --sample-every seconds, peaks reported;
  - errors by kind (HTTP status refusing the upgrade, protocol error codes, close codes,
    execute timeouts, wrong output).

With --spawn BINARY it starts its own `soulbox serve` on a free port with the limits sized for
N sessions (ws.max_sessions_per_key, scheduler and executor sandbox caps, ...; any extra flags
after --) and an admin key, makes a user key, runs, and stops the server; else --url and --key
name a running server (and --pid its process, for VmRSS).

Bounded: every connection and execute has a deadline, the run stops after --duration seconds
(plus --ramp), traffic goes to the given loopback URL only.  Output: parameters and results on
stdout, everything as JSON with --json.  Exit status 1 if --max-error-rate is exceeded (the
smoke run in ctest uses that).

usage:
  load-tests/ws_load.py --spawn build/bin/soulbox --sessions 1000 --ramp 120 --duration 120 \\
      --interval 5 --json ws_load.json
  load-tests/ws_load.py --url http://127.0.0.1:3000 --key sbk_... --pid $(pidof soulbox) ...
"""
import argparse
import asyncio
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import websockets  # Debian's python3-websockets

ADMIN_KEY = "sbk_ws_load_admin_key_0123456789abcdef0123"


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)


def summary(xs):
    if not xs:
        return {"n": 0}
    return {"n": len(xs), "p50_ms": round(pct(xs, 50), 2), "p90_ms": round(pct(xs, 90), 2),
            "p99_ms": round(pct(xs, 99), 2), "max_ms": round(max(xs), 2),
            "mean_ms": round(sum(xs) / len(xs), 2)}


def meminfo():
    d = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":", 1)
            d[k] = int(v.split()[0]) * 1024
    return d


def proc_status(pid):
    d = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:", "Threads:")):
                    k, v = line.split(":", 1)
                    d[k] = int(v.split()[0]) * (1024 if k != "Threads" else 1)
    except OSError:
        pass
    return d


def scrape(url):
    """The metrics the report needs from /metrics (no authentication)."""
    out = {"sandbox_memory_bytes": 0, "sandboxes_reporting": 0}
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
            text = r.read().decode()
    except Exception as e:  # noqa: BLE001 -- the report says it could not scrape
        out["error"] = str(e)
        return out
    for line in text.splitlines():
        if line.startswith("soulbox_sandbox_memory_bytes{"):
            out["sandbox_memory_bytes"] += int(float(line.rsplit(" ", 1)[1]))
            out["sandboxes_reporting"] += 1
        elif line.startswith("process_resident_memory_bytes "):
            out["process_resident_memory_bytes"] = int(float(line.split()[1]))
        elif line.startswith("soulbox_sandboxes_active "):
            out["sandboxes_active"] = int(float(line.split()[1]))
    return out


class Stats:
    def __init__(self):
        self.connect_ms = []
        self.first_ms = []
        self.steady_ms = []
        self.errors = {}
        self.examples = {}  # kind -> first message text seen, for the report
        self.executes = 0
        self.ok = 0
        self.connected = 0
        self.attached = 0
        self.peak_connected = 0

    def err(self, kind, example=None):
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if example and kind not in self.examples:
            self.examples[kind] = example[:300]


async def session(i, a, st, stop_at):
    """One session: connect, then an execute every a.interval seconds until stop_at."""
    url = a.ws_url + "/ws?token=" + a.key
    t0 = time.monotonic()
    try:
        ws = await asyncio.wait_for(
            websockets.connect(url, max_size=4 << 20, open_timeout=a.timeout,
                               ping_interval=None, close_timeout=5),
            a.timeout)
    except websockets.exceptions.InvalidStatusCode as e:
        st.err("upgrade_http_%d" % e.status_code)
        return
    except Exception as e:  # noqa: BLE001
        st.err("connect_" + type(e).__name__)
        return
    st.connect_ms.append((time.monotonic() - t0) * 1000)
    st.connected += 1
    st.peak_connected = max(st.peak_connected, st.connected)
    n = 0
    try:
        await asyncio.sleep(random.uniform(0, a.interval))
        while time.monotonic() < stop_at:
            started = time.monotonic()
            eid = "%d-%d" % (i, n)
            msg = {"type": "execute", "runtime": a.runtime, "code": a.code, "id": eid}
            if n == 0:
                msg["session_id"] = "load-%d-%s" % (i, a.run_tag)
            await ws.send(json.dumps(msg))
            st.executes += 1
            out = []
            exit_msg = None
            deadline = started + a.timeout
            while exit_msg is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise asyncio.TimeoutError()
                m = json.loads(await asyncio.wait_for(ws.recv(), left))
                t = m.get("type")
                if t == "session":
                    st.attached += 1
                elif t == "stdout" and m.get("id") == eid:
                    out.append(m.get("output", ""))
                elif t == "exit" and m.get("id") == eid:
                    exit_msg = m
                elif t == "error" and m.get("code"):
                    st.err("protocol_" + m["code"], m.get("message"))
                    if m.get("id") == eid or m["code"] in ("busy", "sandbox_failed",
                                                           "session_ended"):
                        exit_msg = m
            rtt = (time.monotonic() - started) * 1000
            if exit_msg.get("type") == "exit" and exit_msg.get("exit_code") == 0:
                if a.expect is not None and "".join(out) != a.expect:
                    st.err("wrong_output")
                else:
                    st.ok += 1
                (st.first_ms if n == 0 else st.steady_ms).append(rtt)
            elif exit_msg.get("type") == "exit":
                st.err("exit_" + str(exit_msg.get("status")))
            n += 1
            # Periodic: the next execute INTERVAL after this one started (never a burst).
            await asyncio.sleep(max(0.0, started + a.interval - time.monotonic()))
    except asyncio.TimeoutError:
        st.err("execute_timeout")
    except websockets.exceptions.ConnectionClosed as e:
        st.err("closed_%s" % (e.rcvd.code if e.rcvd else "abnormal"))
    except Exception as e:  # noqa: BLE001
        st.err("session_" + type(e).__name__)
    finally:
        st.connected -= 1
        try:
            if a.close_sessions:
                await asyncio.wait_for(ws.send(json.dumps({"type": "close"})), 5)
            await asyncio.wait_for(ws.close(), 5)
        except Exception:  # noqa: BLE001
            pass


async def sampler(a, st, samples, stop_evt):
    while True:
        s = {"t_s": round(time.monotonic() - a.t_start, 1), "connected": st.connected,
             "attached": st.attached, "executes": st.executes}
        if a.pid:
            ps = proc_status(a.pid)
            s["server_rss_bytes"] = ps.get("VmRSS")
            s["server_hwm_bytes"] = ps.get("VmHWM")
            s["server_threads"] = ps.get("Threads")
        m = await asyncio.get_running_loop().run_in_executor(None, scrape, a.url)
        s.update({k: v for k, v in m.items() if k != "error"})
        mi = meminfo()
        s["node_used_bytes"] = mi["MemTotal"] - mi["MemAvailable"]
        s["node_used_delta_bytes"] = s["node_used_bytes"] - a.baseline_used
        samples.append(s)
        if a.verbose:
            print("sample", json.dumps(s), flush=True)
        try:
            await asyncio.wait_for(stop_evt.wait(), a.sample_every)
            return
        except asyncio.TimeoutError:
            pass


async def run(a):
    st = Stats()
    samples = []
    stop_evt = asyncio.Event()
    a.t_start = time.monotonic()
    stop_at = a.t_start + a.ramp + a.duration
    smp = asyncio.create_task(sampler(a, st, samples, stop_evt))
    tasks = []
    for i in range(a.sessions):
        # Ramp: connections start evenly over --ramp seconds.
        if a.ramp > 0:
            await asyncio.sleep(max(0.0, a.t_start + a.ramp * i / a.sessions - time.monotonic()))
        tasks.append(asyncio.create_task(session(i, a, st, stop_at)))
    await asyncio.gather(*tasks)
    stop_evt.set()
    await smp
    return st, samples


def mb(x):
    return None if x is None else round(x / 1048576, 1)


def spawn(a):
    """Start soulbox serve sized for a.sessions; returns the Popen and a temp dir."""
    tmp = tempfile.mkdtemp(prefix="ws-load-")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    n = a.sessions
    args = [os.path.abspath(a.spawn), "serve", "--port", str(port), "--auth-admin-key", ADMIN_KEY,
            "--data-dir", os.path.join(tmp, "data"), "--log-level", "warn",
            "--ws-max-sessions-per-key", str(n + 16), "--ws-max-sessions", str(n + 64),
            "--scheduler-max-sandboxes-per-key", "0",
            "--scheduler-max-concurrent-per-key", str(max(8, n + 16)),
            "--scheduler-max-concurrent", str(max(64, n + 64)),
            "--scheduler-max-queue", str(max(256, n + 64)),
            "--scheduler-queue-timeout-ms", str(int(a.timeout * 1000)),
            "--executor-max-sandboxes", str(n + 64),
            "--ratelimit-per-key-per-minute", "0", "--ratelimit-global-per-second", "0",
            "--http-max-connections", str(n + 1000)] + a.server_args
    r, w = os.pipe()
    log = open(os.path.join(tmp, "soulbox.log"), "wb")
    p = subprocess.Popen(args + ["--ready-fd", str(w)], stdout=log, stderr=subprocess.STDOUT,
                         pass_fds=(w,), cwd=tmp, start_new_session=True)
    os.close(w)
    line = b""
    deadline = time.monotonic() + 60
    import select
    while b"\n" not in line and time.monotonic() < deadline:
        rd, _, _ = select.select([r], [], [], deadline - time.monotonic())
        if not rd:
            break
        chunk = os.read(r, 256)
        if not chunk:
            break
        line += chunk
    os.close(r)
    if b"READY" not in line:
        p.kill()
        with open(os.path.join(tmp, "soulbox.log")) as f:
            sys.exit("soulbox did not start:\n" + f.read()[-4000:])
    a.url = "http://127.0.0.1:%d" % port
    a.pid = p.pid
    req = urllib.request.Request(a.url + "/api/v1/keys", method="POST",
                                 data=json.dumps({"name": "ws-load", "role": "user"}).encode(),
                                 headers={"Authorization": "Bearer " + ADMIN_KEY,
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        a.key = json.loads(resp.read())["key"]
    return p, tmp


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", help="http://127.0.0.1:PORT of a running server")
    ap.add_argument("--key", help="a user API key (with --url)")
    ap.add_argument("--pid", type=int, help="the server's pid (for VmRSS)")
    ap.add_argument("--spawn", metavar="SOULBOX", help="start this soulbox binary sized for the run")
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--ramp", type=float, default=5.0, help="seconds over which sessions connect")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of load after the ramp")
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between executes")
    ap.add_argument("--runtime", default="python")
    ap.add_argument("--code", default="print(1)")
    ap.add_argument("--expect", default="1\n", help="expected stdout ('' to skip the check)")
    ap.add_argument("--timeout", type=float, default=60.0, help="per connect and per execute")
    ap.add_argument("--sample-every", type=float, default=5.0)
    ap.add_argument("--close-sessions", action="store_true",
                    help="send {type: close} at the end (destroys the sandboxes at once)")
    ap.add_argument("--max-error-rate", type=float, default=None,
                    help="exit 1 if errors / sessions exceeds this (e.g. 0 for the smoke run)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("server_args", nargs="*", help="after --: extra flags for --spawn")
    a = ap.parse_args()
    if a.expect == "":
        a.expect = None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, a.sessions * 4 + 1024))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    proc = tmp = None
    mi = meminfo()
    a.baseline_used = mi["MemTotal"] - mi["MemAvailable"]
    if a.spawn:
        proc, tmp = spawn(a)
    elif not (a.url and a.key):
        ap.error("give --spawn, or --url and --key")
    a.ws_url = "ws" + a.url[len("http"):]
    a.run_tag = "%x" % random.getrandbits(32)
    params = {k: getattr(a, k) for k in ("url", "sessions", "ramp", "duration", "interval",
                                         "runtime", "code", "timeout", "spawn")}
    params["server_args"] = a.server_args
    print("ws_load", json.dumps(params), flush=True)
    t0 = time.monotonic()
    try:
        st, samples = asyncio.run(run(a))
    finally:
        if proc:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    wall = time.monotonic() - t0
    errors = sum(st.errors.values())

    def peak(k):
        v = [s[k] for s in samples if s.get(k) is not None]
        return max(v) if v else None

    res = {
        "params": params,
        "wall_s": round(wall, 1),
        "sessions_connected_peak": st.peak_connected,
        "sessions_attached": st.attached,
        "executes_sent": st.executes,
        "executes_ok": st.ok,
        "executes_per_s": round(st.executes / wall, 1) if wall else None,
        "connect": summary(st.connect_ms),
        "first_execute": summary(st.first_ms),
        "steady_round_trip": summary(st.steady_ms),
        "errors": st.errors,
        "error_examples": st.examples,
        "memory": {
            "baseline_node_used_mb": mb(a.baseline_used),
            "server_rss_peak_mb": mb(peak("server_rss_bytes") or
                                     peak("process_resident_memory_bytes")),
            "server_hwm_mb": mb(peak("server_hwm_bytes")),
            "sandbox_memory_peak_mb": mb(peak("sandbox_memory_bytes")),
            "sandboxes_reporting_peak": peak("sandboxes_reporting"),
            "node_used_delta_peak_mb": mb(peak("node_used_delta_bytes")),
        },
        "samples": samples,
    }
    print("connect        ", json.dumps(res["connect"]))
    print("first execute  ", json.dumps(res["first_execute"]))
    print("steady rtt     ", json.dumps(res["steady_round_trip"]))
    print("sessions       peak connected %d, attached %d; executes %d sent, %d ok (%.1f/s)" % (
        st.peak_connected, st.attached, st.executes, st.ok, res["executes_per_s"] or 0))
    print("memory         ", json.dumps(res["memory"]))
    print("errors         ", json.dumps(st.errors))
    for k, v in st.examples.items():
        print("  e.g. %s: %s" % (k, v))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    if a.max_error_rate is not None:
        rate = errors / max(1, a.sessions)
        ok = rate <= a.max_error_rate and st.ok > 0
        print("%d passed, %d failed" % (1 if ok else 0, 0 if ok else 1))
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
