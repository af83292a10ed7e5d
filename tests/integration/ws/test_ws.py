"""WebSocket /ws end to end against the real soulbox binary, with a real client (Debian's
python3-websockets, asyncio): one port for HTTP and WS, auth before the upgrade (header,
token query parameter, refusals as HTTP statuses), streaming order, stdin, interrupt keeping
state, reconnect to the same session (resumed, same sandbox, variables intact), another
user's session refused, protocol errors with the session surviving, size and rate limits,
heartbeats (a client that never answers pings is dropped), the PTY terminal (bash -i, output,
resize seen by `stty size`), session close and idle expiry recorded with its reason."""
import asyncio
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "lib"))
from soulbox_proc import Soulbox, make_keys, run_tests  # noqa: E402

import requests  # noqa: E402
import websockets  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidStatusCode  # noqa: E402

BIN = sys.argv[1]
ADMIN = "sbk_integration_admin_key_0123456789abcdef"
SB = None
KEYS = {}
T = 60  # seconds any single wait may take


def ws_url(query=""):
    return "ws://127.0.0.1:%d/ws%s" % (SB.port, query)


def auth(role="user"):
    return {"Authorization": "Bearer " + KEYS[role]}


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, T * 3))


async def connect(role="user", query="", **kw):
    kw.setdefault("ping_interval", None)
    return await websockets.connect(ws_url(query), extra_headers=auth(role), **kw)


async def recv(ws, timeout=T):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def until(ws, pred, timeout=T):
    """Frames received until (and including) the first one pred accepts."""
    got = []
    deadline = time.monotonic() + timeout
    while True:
        m = await recv(ws, max(0.1, deadline - time.monotonic()))
        got.append(m)
        if pred(m):
            return got


async def execute(ws, code, **kw):
    kw.setdefault("timeout", 60000)  # a loaded CI host starts kernels slowly
    msg = dict(type="execute", code=code, **kw)
    await ws.send(json.dumps(msg))
    return await until(ws, lambda m: m["type"] == "exit")


def out(frames, kind="stdout"):
    return "".join(m["output"] for m in frames if m["type"] == kind)


def setup():
    global SB
    SB = Soulbox(BIN, ["serve", "--port", "0", "--auth-admin-key", ADMIN,
                       "--pool-min-size", "1", "--ratelimit-per-key-per-minute", "100000",
                       "--ws.ping_interval_s=1", "--ws.pong_timeout_s=2",
                       "--ws.session_idle_s=4", "--ws.max_message_bytes=65536",
                       "--ws.max_frame_bytes=65536", "--ws.messages_per_second=20",
                       "--ws.max_sessions_per_key=6"]).start()
    KEYS.update(make_keys(SB, ADMIN))


def test_same_port_http_and_ws():
    r = requests.get(SB.url("/health"), timeout=30)
    assert r.status_code == 200, r.text

    async def go():
        ws = await connect()
        await ws.send(json.dumps({"type": "ping"}))
        assert (await recv(ws))["type"] == "pong"
        await ws.close()
    run(go())
    # a plain GET on /ws is told to upgrade
    r = requests.get(SB.url("/ws"), headers=auth(), timeout=30)
    assert r.status_code == 426, r.status_code


def test_auth_before_upgrade():
    async def status_of(headers, query=""):
        try:
            ws = await websockets.connect(ws_url(query), extra_headers=headers)
        except InvalidStatusCode as e:
            return e.status_code
        await ws.close()
        return 101

    async def go():
        assert await status_of({}) == 401
        assert await status_of({"Authorization": "Bearer sbk_" + "A" * 43}) == 401
        assert await status_of({}, "?token=sbk_" + "B" * 43) == 401
        assert await status_of({"Authorization": "Bearer " + KEYS["viewer"]}) == 403
        assert await status_of({}, "?token=" + KEYS["user"]) == 101
        assert await status_of({"X-API-Key": KEYS["user"]}) == 101
        assert await status_of(auth(), "?session_id=bad%20id") == 400
    run(go())


def test_streaming_order():
    async def go():
        ws = await connect()
        code = "import time\nfor i in range(5):\n    print('line', i, flush=True)\n    time.sleep(0.2)\n"
        await ws.send(json.dumps({"type": "execute", "runtime": "python", "code": code,
                                  "id": "s1", "timeout": 60000}))
        frames = await until(ws, lambda m: m["type"] == "exit")
        sess = [m for m in frames if m["type"] == "session"]
        assert sess and sess[0]["resumed"] is False and sess[0]["sandbox_id"], frames
        outs = [m for m in frames if m["type"] == "stdout"]
        assert all(m.get("id") == "s1" for m in outs), outs
        assert "".join(m["output"] for m in outs) == "".join("line %d\n" % i for i in range(5))
        assert len(outs) >= 2, "output should stream in several frames: %r" % outs
        assert frames[-1]["type"] == "exit" and frames[-1]["exit_code"] == 0, frames[-1]
        assert frames[-1]["id"] == "s1" and frames[-1]["execution_time"] >= 800
        # stderr and a failing program
        frames = await execute(ws, "import sys\nsys.stderr.write('oops\\n')\nraise SystemExit(3)"
                               if False else "import sys\nsys.stderr.write('oops\\n')\n1/0")
        assert "oops" in out(frames, "stderr") + json.dumps(frames), frames
        assert frames[-1]["exit_code"] != 0, frames
        await ws.close()
    run(go())


def test_stdin_process_mode():
    async def go():
        ws = await connect()
        await ws.send(json.dumps({"type": "execute", "runtime": "python", "mode": "process",
                                  "code": "name = input()\nprint('hello', name)\n"}))
        await ws.send(json.dumps({"type": "stdin", "data": "world\n"}))
        frames = await until(ws, lambda m: m["type"] == "exit")
        assert out(frames) == "hello world\n", frames
        assert frames[-1]["exit_code"] == 0 and frames[-1]["status"] == "exited", frames[-1]
        # with nothing running, stdin is a protocol error and the session lives on
        await ws.send(json.dumps({"type": "stdin", "data": "x"}))
        m = await recv(ws)
        assert m["type"] == "error" and m["code"] == "no_execution", m
        frames = await execute(ws, "print(2+2)")
        assert out(frames) == "4\n", frames
        await ws.close()
    run(go())


def test_interrupt_keeps_state():
    async def go():
        ws = await connect(query="?session_id=intr-1")
        frames = await execute(ws, "x = 1\nprint('set')")
        assert out(frames) == "set\n", frames
        await ws.send(json.dumps({"type": "execute", "code": "import time\nprint('loop', flush=True)\nwhile True:\n    time.sleep(0.05)\n"}))
        await until(ws, lambda m: m["type"] == "stdout" and "loop" in m["output"])
        await ws.send(json.dumps({"type": "interrupt"}))
        frames = await until(ws, lambda m: m["type"] == "exit", timeout=30)
        assert frames[-1]["status"] in ("interrupted", "signaled", "error"), frames[-1]
        frames = await execute(ws, "print(x)")
        assert out(frames) == "1\n", frames
        await ws.close()
    run(go())


def test_reconnect_resumes_session():
    async def go():
        ws = await connect(query="?session_id=resume-1")
        frames = await execute(ws, "y = 41\nprint('ok')")
        first = [m for m in frames if m["type"] == "session"][0]
        assert first["resumed"] is False and first["session_id"] == "resume-1"
        # files persist too (the same sandbox)
        frames = await execute(ws, "open('/home/user/mark.txt','w').write('here')\nprint('w')")
        await ws.close()
        ws = await connect(query="?session_id=resume-1")
        m = await recv(ws)
        assert m["type"] == "session" and m["resumed"] is True, m
        assert m["sandbox_id"] == first["sandbox_id"], (m, first)
        frames = await execute(ws, "print(open('/home/user/mark.txt').read(), y + 1)")
        assert out(frames) == "here 42\n", frames
        # another user naming the session gets an error, never the sandbox
        other = await connect("user2", query="?session_id=resume-1")
        m = await recv(other)
        assert m["type"] == "error" and m["code"] == "session_forbidden", m
        await other.send(json.dumps({"type": "execute", "code": "print(1)",
                                     "session_id": "resume-1"}))
        m = await recv(other)
        assert m["type"] == "error" and m["code"] == "session_forbidden", m
        await other.close()
        # a second connection of the owner takes the session over
        ws2 = await connect(query="?session_id=resume-1")
        m = await recv(ws2)
        assert m["type"] == "session" and m["resumed"] is True
        try:
            await asyncio.wait_for(ws.recv(), 10)
            assert False, "the first connection should be closed"
        except ConnectionClosed as e:
            assert e.code == 4001, e
        await ws2.close()
    run(go())


def test_protocol_errors_session_survives():
    async def go():
        ws = await connect()
        frames = await execute(ws, "z = 5")
        for bad, code in [("{not json", "bad_json"), ("[1,2]", "bad_json"),
                          (json.dumps({"type": "bogus"}), "unknown_type"),
                          (json.dumps({"type": "execute", "runtime": "cobol-99", "code": "x"}),
                           "unknown_runtime"),
                          (json.dumps({"type": "execute"}), "bad_message"),
                          (json.dumps({"type": "input", "data": "x"}), "no_pty"),
                          (json.dumps({"type": "execute", "code": "1",
                                       "session_id": "someone-else"}), "session_mismatch")]:
            await ws.send(bad)
            m = await recv(ws)
            assert m["type"] == "error" and m["code"] == code, (bad, m)
            assert "message" in m
        frames = await execute(ws, "print('alive')")
        assert out(frames) == "alive\n", frames
        await ws.close()
    run(go())


def test_limits_size_and_rate():
    async def go():
        ws = await connect()
        await ws.send(json.dumps({"type": "execute", "code": "#" + "x" * 70000}))
        try:
            await asyncio.wait_for(ws.recv(), 10)
            assert False, "an oversized message must close the connection"
        except ConnectionClosed as e:
            assert e.code == 1009, e
        # message rate: a burst past 2 s worth gets rate_limited errors, the connection lives
        ws = await connect()
        for _ in range(80):
            await ws.send(json.dumps({"type": "ping"}))
        kinds = {}
        for _ in range(80):
            m = await recv(ws)
            kinds[m.get("code", m["type"])] = kinds.get(m.get("code", m["type"]), 0) + 1
        assert kinds.get("rate_limited", 0) > 0 and kinds.get("pong", 0) >= 40, kinds
        await asyncio.sleep(1.5)  # the bucket refills with time; that is what is tested
        await ws.send(json.dumps({"type": "ping"}))
        assert (await recv(ws))["type"] == "pong"
        await ws.close()
        # binary frames are refused
        ws = await connect()
        await ws.send(b"\x00\x01")
        try:
            await asyncio.wait_for(ws.recv(), 10)
            assert False
        except ConnectionClosed as e:
            assert e.code == 1003, e
        # sessions per key: the 7th concurrent connection is refused before the upgrade
        conns = [await connect("user2") for _ in range(6)]
        try:
            await connect("user2")
            assert False, "over ws.max_sessions_per_key"
        except InvalidStatusCode as e:
            assert e.status_code == 429, e
        for c in conns:
            await c.close()
    run(go())


def test_heartbeat_drops_silent_client():
    # A raw client: handshake by hand, then never answer the server's PINGs.
    s = socket.create_connection(("127.0.0.1", SB.port), timeout=T)
    s.sendall(("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
               "Authorization: Bearer %s\r\n\r\n" % KEYS["user"]).encode())
    data = b""
    t0 = time.monotonic()
    saw_ping = False
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
        if b"\r\n\r\n" in data:
            head, rest = data.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 101"), head
            if rest[:1] == b"\x89":
                saw_ping = True
    elapsed = time.monotonic() - t0
    assert saw_ping or b"\x89" in data, data
    assert elapsed < 10, elapsed
    s.close()

    # A client that answers (websockets does by default) stays connected.
    async def go():
        ws = await connect(ping_interval=None)
        await asyncio.sleep(3.5)
        await ws.send(json.dumps({"type": "ping"}))
        assert (await recv(ws))["type"] == "pong"
        await ws.close()
    run(go())


def test_pty():
    async def go():
        ws = await connect()
        await ws.send(json.dumps({"type": "pty", "cols": 100, "rows": 30}))
        frames = await until(ws, lambda m: m["type"] == "pty_started")
        assert frames[-1]["cols"] == 100
        await ws.send(json.dumps({"type": "input", "data": "echo $((6*7))\r"}))
        got = ""
        while "42" not in got.replace("$((6*7))", ""):
            m = await recv(ws)
            if m["type"] == "pty_output":
                got += m["data"]
        await ws.send(json.dumps({"type": "input", "data": "stty size\r"}))
        got = ""
        while "30 100" not in got:
            m = await recv(ws)
            if m["type"] == "pty_output":
                got += m["data"]
        await ws.send(json.dumps({"type": "resize", "cols": 120, "rows": 40}))
        await ws.send(json.dumps({"type": "input", "data": "stty size\r"}))
        got = ""
        while "40 120" not in got:
            m = await recv(ws)
            if m["type"] == "pty_output":
                got += m["data"]
        await ws.send(json.dumps({"type": "pty"}))
        m = await until(ws, lambda m: m["type"] == "error")
        assert m[-1]["code"] == "pty_exists"
        await ws.send(json.dumps({"type": "input", "data": "exit 7\r"}))
        frames = await until(ws, lambda m: m["type"] == "pty_exit")
        assert frames[-1]["exit_code"] == 7, frames[-1]
        await ws.close()
    run(go())


def sandbox_record(sid):
    r = requests.get(SB.url("/api/v1/sandboxes/" + sid), headers=auth(), timeout=30)
    return r.status_code, (r.json() if r.status_code == 200 else r.text)


def test_close_and_idle_expiry():
    async def go():
        ws = await connect(query="?session_id=closing-1")
        frames = await execute(ws, "print(1)")
        sid = [m for m in frames if m["type"] == "session"][0]["sandbox_id"]
        await ws.send(json.dumps({"type": "close"}))
        try:
            await asyncio.wait_for(ws.recv(), 10)
        except ConnectionClosed as e:
            assert e.code == 1000, e
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            st, rec = sandbox_record(sid)
            if st == 200 and rec.get("state") != "running":
                break
            await asyncio.sleep(0.2)
        assert rec.get("end_reason") == "session_closed", rec

        ws = await connect(query="?session_id=idle-1")
        frames = await execute(ws, "print(1)")
        sid = [m for m in frames if m["type"] == "session"][0]["sandbox_id"]
        # attached: it does not expire, even past ws.session_idle_s (4 s)
        await asyncio.sleep(5)
        frames = await execute(ws, "print(2)")
        assert out(frames) == "2\n", frames
        await ws.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            st, rec = sandbox_record(sid)
            if st == 200 and rec.get("state") != "running":
                break
            await asyncio.sleep(0.3)
        assert rec.get("state") == "expired" and rec.get("end_reason") == "session_expired", rec
        # the id is free again: a new session with a new sandbox
        ws = await connect(query="?session_id=idle-1")
        frames = await execute(ws, "print(3)")
        m = [m for m in frames if m["type"] == "session"][0]
        assert m["resumed"] is False and m["sandbox_id"] != sid, m
        await ws.close()
    run(go())
    r = requests.get(SB.url("/api/v1/audit?type=sandbox.expired"), headers=auth("admin"),
                     timeout=30)
    assert r.status_code == 200 and "session_expired" in r.text, r.text[:500]


def main():
    setup()
    try:
        rc = run_tests([test_same_port_http_and_ws, test_auth_before_upgrade,
                        test_streaming_order, test_stdin_process_mode,
                        test_interrupt_keeps_state, test_reconnect_resumes_session,
                        test_protocol_errors_session_survives, test_limits_size_and_rate,
                        test_heartbeat_drops_silent_client, test_pty,
                        test_close_and_idle_expiry])
        code = SB.stop()
        if code != 0:
            print("soulbox exited %s\n%s" % (code, SB.log()[-4000:]))
            rc = 1
    finally:
        SB.kill()
    if rc:
        print(SB.log()[-6000:])
    return rc


if __name__ == "__main__":
    sys.exit(main())
