"""soulbox serve end to end: /health over the bus, roles split over two processes joined by
an authenticated tcp bus, a stranger on the bus port refused, SIGTERM under load, and
configuration refused with the key and range named."""
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "lib"))
from soulbox_proc import Soulbox, free_port, run_tests  # noqa: E402

import requests  # noqa: E402

BIN = sys.argv[1]
SECRET = "integration-secret-0123456789abcdef"
ALL = ["gateway", "scheduler", "pool", "executor", "monitor", "auditor", "storage"]


def serve(*args, env=None, name="soulbox"):
    return Soulbox(BIN, ["serve", "--port", "0"] + list(args), env=env, name=name)


def test_health_all_actors():
    sb = serve().start()
    try:
        r = requests.get(sb.url("/health"), timeout=10)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "ok"
        assert sorted(body["actors"]) == sorted(ALL)
        for name, a in body["actors"].items():
            assert a["ok"] is True, (name, a)
            assert a["node"] == sb.node
            assert isinstance(a["rtt_us"], int) and a["rtt_us"] >= 0
        # keep-alive: two requests on one connection
        c = http.client.HTTPConnection("127.0.0.1", sb.port, timeout=10)
        c.request("GET", "/health")
        r1 = c.getresponse()
        r1.read()
        sock = c.sock
        c.request("GET", "/health")
        r2 = c.getresponse()
        r2.read()
        assert r1.status == 200 and r2.status == 200
        assert c.sock is sock, "connection was not kept alive"
        c.close()
        assert requests.get(sb.url("/nope"), timeout=10).status_code == 404
    finally:
        assert sb.stop() == 0, sb.log()


def wait_health(sb, pred, timeout=15):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        r = requests.get(sb.url("/health"), timeout=10)
        last = (r.status_code, r.json())
        if pred(*last):
            return last
        time.sleep(0.05)  # the event is a node joining or dropping; re-probe
    raise AssertionError("health never matched: %r" % (last,))


def test_roles_split_over_two_processes():
    pa, pb = free_port(), free_port()
    a = serve("--roles", "gateway,scheduler,storage,auditor", "--node", "node-a",
              "--bus-listen", "tcp://127.0.0.1:%d" % pa, "--bus-secret", SECRET,
              "--bus-hello-ms", "100", "--bus-node-ttl-ms", "1000", name="a").start()
    b = None
    try:
        code, body = wait_health(a, lambda c, j: True)
        assert code == 503 and body["status"] == "degraded"
        assert body["actors"]["executor"]["ok"] is False
        assert body["actors"]["executor"]["error"] == "no_route"
        assert body["actors"]["gateway"]["ok"] is True
        b = serve("--roles", "pool,executor,monitor", "--node", "node-b",
                  "--bus-listen", "tcp://127.0.0.1:%d" % pb,
                  "--bus-join", "tcp://127.0.0.1:%d" % pa,
                  "--bus-secret", SECRET, "--bus-hello-ms", "100", name="b").start()
        code, body = wait_health(a, lambda c, j: c == 200)
        assert body["status"] == "ok"
        for k in ["pool", "executor", "monitor"]:
            assert body["actors"][k]["node"] == "node-b", body
        for k in ["gateway", "scheduler", "storage", "auditor"]:
            assert body["actors"][k]["node"] == "node-a", body
        names = {n["name"]: n for n in body["nodes"]}
        assert names["node-b"]["alive"] and "executor" in names["node-b"]["actors"]
        # node b dies: a reports the remote actors down, naming them
        b.kill()
        code, body = wait_health(a, lambda c, j: c == 503)
        assert body["actors"]["executor"]["ok"] is False
        assert body["actors"]["gateway"]["ok"] is True
    finally:
        if b:
            b.kill()
        assert a.stop() == 0, a.log()


def sp_handshake(sock, proto):
    # NNG's SP-over-TCP header: 0x00 'S' 'P' 0x00, protocol id (big-endian), two zero bytes.
    sock.sendall(b"\x00SP\x00" + struct.pack(">H", proto) + b"\x00\x00")
    return sock.recv(8)


def test_stranger_on_bus_port_refused():
    pa = free_port()
    a = serve("--bus-listen", "tcp://127.0.0.1:%d" % pa, "--bus-secret", SECRET, name="a").start()
    try:
        # 1. junk bytes: not even the SP handshake
        s = socket.create_connection(("127.0.0.1", pa), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\n\r\n" * 10)
        s.settimeout(5)
        try:
            s.recv(100)
        except OSError:
            pass
        s.close()
        # 2. a well-formed push peer sending a batch without the HMAC trailer
        s = socket.create_connection(("127.0.0.1", pa), timeout=5)
        peer = sp_handshake(s, 0x50)  # push0
        assert peer[:4] == b"\x00SP\x00", peer
        frame_body = b"\x80"
        batch = (b"SB\x01\x00" + struct.pack("<I", 1) + struct.pack("<Q", 0x1234) +
                 struct.pack("<Q", int(time.time() * 1000)) +
                 struct.pack("<IHBBBBHQQQ", len(frame_body), 5, 1, 8, 2, 0, 0, 1, 0, 0) +
                 frame_body)
        s.sendall(struct.pack(">Q", len(batch)) + batch)
        assert a.wait_log("SB-BUS-REFUSED", 10), a.log()
        # the server closed that connection
        s.settimeout(5)
        closed = False
        try:
            closed = s.recv(100) == b""
        except ConnectionResetError:
            closed = True
        assert closed
        s.close()
        # 3. a huge length prefix is refused before allocation
        s = socket.create_connection(("127.0.0.1", pa), timeout=5)
        sp_handshake(s, 0x50)
        s.sendall(struct.pack(">Q", 1 << 40))
        s.settimeout(5)
        try:
            s.recv(100)
        except OSError:
            pass
        s.close()
        r = requests.get(a.url("/health"), timeout=10)
        assert r.status_code == 200 and r.json()["status"] == "ok"
    finally:
        assert a.stop() == 0, a.log()


def test_sigterm_under_load():
    sb = serve("--shutdown-grace-ms", "3000").start()
    stop = threading.Event()
    counts = {"ok": 0, "err": 0}

    def hammer():
        s = requests.Session()
        while not stop.is_set():
            try:
                r = s.get(sb.url("/health"), timeout=5)
                counts["ok" if r.status_code in (200, 503) else "err"] += 1
            except requests.RequestException:
                counts["err"] += 1
                time.sleep(0.01)  # the server is going away; don't spin
    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while counts["ok"] < 200 and time.monotonic() < deadline:
        time.sleep(0.01)  # wait for load to build
    sb.signal(signal.SIGTERM)
    rc = sb.wait(timeout=20)
    stop.set()
    for t in threads:
        t.join()
    log = sb.log()
    assert rc == 0, log
    assert counts["ok"] >= 200
    assert "soulbox stopped (cleanly)" in log, log
    assert "SB-ACTOR-LEAK" not in log and "SB-MAIN-UNCLEAN" not in log, log


def test_sigint_idle():
    sb = serve().start()
    sb.signal(signal.SIGINT)
    assert sb.wait(timeout=20) == 0
    assert "soulbox stopped (cleanly)" in sb.log()


def test_audit_events_wait_for_the_auditor():
    """Audit events the gateway cannot hand to an auditor yet are not lost: they wait in its
    bounded queue and reach the auditor once one joins the bus."""
    admin = "sbk_audit_wait_admin_key_0123456789abcdef"
    pa, pb = free_port(), free_port()
    a = serve("--roles", "gateway,scheduler,pool,executor,monitor,storage", "--node", "node-a",
              "--bus-listen", "tcp://127.0.0.1:%d" % pa, "--bus-secret", SECRET,
              "--bus-hello-ms", "100", "--auth-admin-key", admin, "--pool-min-size", "0",
              name="a").start()
    b = None
    try:
        hdr = {"Authorization": "Bearer " + admin}
        deadline = time.monotonic() + 20
        while True:  # the scheduler may not know the executor for a moment after start
            r = requests.post(a.url("/api/v1/execute"), headers=hdr, timeout=60,
                              json={"runtime": "bash", "code": "echo audited"})
            if r.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert r.status_code == 200 and r.json()["stdout"] == "audited\n", r.text
        exec_id = r.json()["id"]
        # no auditor anywhere yet: the query has nowhere to go
        assert requests.get(a.url("/api/v1/audit"), headers=hdr, timeout=30).status_code == 503
        b = serve("--roles", "auditor", "--node", "node-b",
                  "--bus-listen", "tcp://127.0.0.1:%d" % pb,
                  "--bus-join", "tcp://127.0.0.1:%d" % pa, "--bus-secret", SECRET,
                  "--bus-hello-ms", "100", name="b").start()
        deadline = time.monotonic() + 20
        found = False
        while time.monotonic() < deadline and not found:
            r = requests.get(a.url("/api/v1/audit?type=execution"), headers=hdr, timeout=30)
            if r.status_code == 200:
                found = any(x.get("fields", {}).get("execution_id") == exec_id
                            for x in r.json()["records"])
            time.sleep(0.2)  # the queue is re-sent every second once the auditor is reachable
        assert found, (r.status_code, r.text, a.log()[-2000:])
        assert "SB-GW-AUDIT-DROP" not in a.log()
    finally:
        if b:
            assert b.stop() == 0, b.log()
        assert a.stop() == 0, a.log()


def refused(args, env=None, needles=()):
    p = subprocess.run([BIN] + args, capture_output=True, text=True, timeout=20,
                       env=dict(os.environ, **(env or {})))
    assert p.returncode != 0, (args, p.stdout, p.stderr)
    for n in needles:
        assert n in p.stderr, (n, p.stderr)
    return p


def test_invalid_config_refused():
    refused(["serve", "--port", "99999"], needles=["http.port", "0..65535"])
    refused(["serve"], env={"SOULBOX_HTTP_PORT": "abc"}, needles=["SOULBOX_HTTP_PORT", "http.port"])
    refused(["serve", "--roles", "gateway,teapot"], needles=["roles", "teapot"])
    refused(["serve", "--shutdown-grace-ms", "-5"], needles=["shutdown.grace_ms", "0..600000"])
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write("[http]\nport = 0\n[bus]\nhello_ms = 1\n")
    refused(["serve", "--config", f.name], needles=["bus.hello_ms", "50..60000", "line 4"])
    os.unlink(f.name)
    # a tcp bus without a secret never opens
    p = refused(["serve", "--port", "0", "--bus-listen", "tcp://127.0.0.1:%d" % free_port()])
    assert "bus.secret" in p.stdout + p.stderr
    refused(["serve", "--bogus-flag"], needles=["bogus"])
    refused(["frobnicate"], needles=["unknown command"])


if __name__ == "__main__":
    sys.exit(run_tests([test_health_all_actors, test_roles_split_over_two_processes,
                        test_stranger_on_bus_port_refused, test_sigterm_under_load,
                        test_sigint_idle, test_invalid_config_refused,
                        test_audit_events_wait_for_the_auditor]))
