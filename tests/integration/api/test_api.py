"""The native REST API end to end against the real soulbox binary: one-shot execution with
every request field, the sandbox lifecycle with commands, processes and files, ownership
between two users, idle expiry with its end reason, every bad input the API must refuse
(with the server still up afterwards), the audit trail and a metrics scrape checked by
promtool."""
import base64
import os
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "lib"))
from soulbox_proc import Soulbox, make_keys, run_tests  # noqa: E402

import requests  # noqa: E402

BIN = sys.argv[1]
ADMIN = "sbk_integration_admin_key_0123456789abcdef"
SB = None
KEYS = {}


def h(role):
    return {"Authorization": "Bearer " + KEYS[role]}


def api(method, path, role="user", **kw):
    kw.setdefault("timeout", 60)
    return requests.request(method, SB.url(path), headers=h(role), **kw)


def execute(role="user", **body):
    return api("POST", "/api/v1/execute", role, json=body)


def setup():
    global SB
    SB = Soulbox(BIN, ["serve", "--port", "0", "--auth-admin-key", ADMIN,
                       "--api-max-code-bytes", "65536", "--pool-min-size", "1",
                       "--ratelimit-per-key-per-minute", "100000"]).start()
    KEYS.update(make_keys(SB, ADMIN))


def test_runtimes():
    r = api("GET", "/api/v1/runtimes", "viewer")
    assert r.status_code == 200, r.text
    names = {rt["name"]: rt for rt in r.json()["runtimes"]}
    assert "python" in names and "bash" in names
    assert names["python"]["version"].lower().startswith("python")


def test_execute_basics():
    r = execute(runtime="python", code="print(1)")
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["stdout"] == "1\n" and j["stderr"] == ""
    assert j["exit_code"] == 0 and j["status"] == "exited" and j["signal"] is None
    assert j["execution_time"] >= 0 and j["memory_used"] > 0 and j["truncated"] is False
    # alias, language instead of runtime, stdin, args, env, exit code
    r = requests.post(SB.url("/api/execute"), headers=h("user"), timeout=60, json={
        "language": "py", "stdin": "abc\n", "args": ["x", "y"], "env": {"GREETING": "hi"},
        "code": "import sys,os\nprint(sys.stdin.read().strip(), sys.argv[1:], os.environ['GREETING'])\nsys.exit(3)"})
    j = r.json()
    assert r.status_code == 200, r.text
    assert j["stdout"] == "abc ['x', 'y'] hi\n", j
    assert j["exit_code"] == 3 and j["status"] == "exited"
    r = execute(runtime="bash", code="echo out; echo err >&2; kill -9 $$")
    j = r.json()
    assert j["stdout"] == "out\n" and j["stderr"] == "err\n"
    assert j["status"] == "signaled" and j["signal"] == 9 and j["exit_code"] is None


def test_execute_limits():
    j = execute(runtime="python", code="import time\ntime.sleep(30)", timeout=500).json()
    assert j["status"] == "timeout", j
    j = execute(runtime="python", memory_limit=64,
                code="x = bytearray(400 * 1024 * 1024)\nprint(len(x))").json()
    assert j["status"] == "memory_limit", j
    j = execute(runtime="python", code="import sys\nsys.stdout.write('x' * (8 << 20))").json()
    assert j["truncated"] is True and j["truncated_streams"]["stdout"] is True, j
    assert j["status"] == "output_limit", j


def test_execute_files_and_artifacts():
    j = execute(runtime="python", files=[
        {"path": "data/in.txt", "content": "hello"},
        {"path": "raw.bin", "content": base64.b64encode(b"\x00\x01\x02").decode(),
         "encoding": "base64"}],
        code="print(open('data/in.txt').read(), len(open('raw.bin','rb').read()))\n"
             "open('out.txt','w').write('made it')").json()
    assert j["stdout"] == "hello 3\n", j
    arts = {a["path"].split("/")[-1]: a for a in j["artifacts"]}
    assert "out.txt" in arts, j["artifacts"]
    assert base64.b64decode(arts["out.txt"]["data"]) == b"made it"
    assert arts["out.txt"]["mime_type"].startswith("text/plain")


def test_execute_compile_error():
    if not shutil.which("gcc"):
        return
    j = execute(runtime="c", code="int main(void) { return 0 }").json()
    assert j["status"] == "compile_error", j
    assert "error" in j["compile"]["stderr"], j
    j = execute(runtime="c", code='#include <stdio.h>\nint main(void){puts("ok");return 4;}').json()
    assert j["stdout"] == "ok\n" and j["exit_code"] == 4, j


def raw(data, read=True):
    s = socket.create_connection(("127.0.0.1", SB.port), timeout=10)
    s.sendall(data)
    out = b""
    if read:
        s.settimeout(10)
        try:
            while True:
                c = s.recv(65536)
                if not c:
                    break
                out += c
        except socket.timeout:
            pass
    s.close()
    return out


def test_bad_input():
    url = SB.url("/api/v1/execute")
    r = requests.post(url, headers=dict(h("user"), **{"Content-Type": "application/json"}),
                      data="{not json", timeout=10)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json", r.text
    r = execute(runtime="python", code=5)
    assert r.status_code == 400 and "'code'" in r.json()["error"]["message"], r.text
    r = execute(runtime="python")
    assert r.status_code == 400 and "code" in r.json()["error"]["message"]
    r = execute(runtime="cobol-on-wheels", code="x")
    assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_runtime"
    r = execute(runtime="python", code="x", timeout=10 ** 9)
    assert r.status_code == 400 and "api.max_timeout_ms" in r.json()["error"]["message"], r.text
    r = execute(runtime="python", code="x", memory_limit=10 ** 7)
    assert r.status_code == 400 and "api.max_memory_mb" in r.json()["error"]["message"]
    r = execute(runtime="python", code="x", args="notalist")
    assert r.status_code == 400 and "'args'" in r.json()["error"]["message"]
    r = execute(runtime="python", code="#" * 70000)
    assert r.status_code == 413, r.text
    r = execute(runtime="python", code="x", files=[{"path": "../escape", "content": "x"}])
    assert r.status_code == 400
    r = requests.get(SB.url("/api/v1/nope"), headers=h("user"), timeout=10)
    assert r.status_code == 404
    r = requests.get(url, headers=h("user"), timeout=10)
    assert r.status_code == 405 and "POST" in r.headers.get("Allow", "")
    r = requests.post(url, json={"runtime": "python", "code": "print(1)"}, timeout=10)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    r = requests.post(url, headers={"Authorization": "Bearer sbk_not_a_real_key"},
                      json={"runtime": "python", "code": "print(1)"}, timeout=10)
    assert r.status_code == 401
    r = execute("viewer", runtime="python", code="print(1)")
    assert r.status_code == 403
    out = raw(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 431"), out[:100]
    # a connection dropped mid-request: headers promise a body that never comes
    raw(b"POST /api/v1/execute HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
        KEYS["user"].encode() + b"\r\nContent-Length: 1000\r\n\r\n{\"runtime\":", read=False)
    assert requests.get(SB.url("/health"), timeout=10).status_code == 200


def test_sandbox_lifecycle_and_ownership():
    r = api("POST", "/api/v1/sandboxes", json={"runtime": "python", "timeout": 120,
                                              "metadata": {"who": "alice"},
                                              "limits": {"memory_mb": 256}})
    assert r.status_code == 201, r.text
    sb = r.json()
    sid = sb["id"]
    assert sb["state"] == "running" and sb["metadata"] == {"who": "alice"}
    assert sb["expires_at"] > sb["created_at"]
    ids = [s["id"] for s in api("GET", "/api/v1/sandboxes").json()["sandboxes"]]
    assert sid in ids
    assert sid not in [s["id"] for s in api("GET", "/api/v1/sandboxes", "user2").json()["sandboxes"]]
    assert sid in [s["id"] for s in api("GET", "/api/v1/sandboxes", "admin").json()["sandboxes"]]
    assert api("GET", "/api/v1/sandboxes/" + sid, "user2").status_code == 404
    assert api("DELETE", "/api/v1/sandboxes/" + sid, "user2").status_code == 404
    assert api("POST", "/api/v1/sandboxes/%s/commands" % sid, "user2",
               json={"cmd": "id"}).status_code == 404
    assert api("GET", "/api/v1/sandboxes/%s/files?path=x" % sid, "user2").status_code == 404
    # alias prefix
    assert api("GET", "/api/v1/containers/" + sid).status_code == 200

    # commands: a shell line, argv form with stdin, background + processes + signal
    j = api("POST", "/api/v1/sandboxes/%s/commands" % sid, json={"cmd": "echo $((6*7)); pwd"}).json()
    assert j["stdout"] == "42\n/home/user\n", j
    j = api("POST", "/api/v1/sandboxes/%s/commands" % sid,
            json={"cmd": "cat", "args": [], "stdin": "piped"}).json()
    assert j["stdout"] == "piped", j
    r = api("POST", "/api/v1/sandboxes/%s/commands" % sid, json={"cmd": "sleep 300", "background": True})
    assert r.status_code == 202, r.text
    pid = r.json()["pid"]
    procs = api("GET", "/api/v1/sandboxes/%s/processes" % sid).json()["processes"]
    assert any(p["pid"] == pid for p in procs), procs
    # a scrape while the sandbox runs: its executor samples its cgroup every second
    deadline = time.monotonic() + 15
    series = 'soulbox_sandbox_memory_bytes{sandbox="%s"' % sid
    while time.monotonic() < deadline:
        text = requests.get(SB.url("/metrics"), timeout=10).text
        if series in text:
            break
        time.sleep(0.1)  # the event is the executor's next 1 s sample reaching the monitor
    line = [l for l in text.splitlines() if l.startswith(series)]
    assert line and int(line[0].split()[-1]) > 0, text
    assert "soulbox_sandboxes_active 0" not in text
    assert api("POST", "/api/v1/sandboxes/%s/processes/%d/signal" % (sid, pid),
               json={"signal": "SIGKILL"}).status_code == 204
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        procs = api("GET", "/api/v1/sandboxes/%s/processes" % sid).json()["processes"]
        if not any(p["pid"] == pid for p in procs):
            break
        time.sleep(0.05)  # the kill is asynchronous; poll the process list
    assert not any(p["pid"] == pid for p in procs)

    # files
    base = "/api/v1/sandboxes/%s/files" % sid
    assert api("PUT", base + "?path=notes/a.txt", data=b"alpha").status_code == 201
    r = api("GET", base + "?path=notes/a.txt")
    assert r.status_code == 200 and r.content == b"alpha"
    lst = api("GET", base + "?path=notes").json()
    assert lst["type"] == "dir" and any(e["path"].endswith("a.txt") for e in lst["entries"]), lst
    assert api("POST", base + "/mkdir", json={"path": "d1/d2"}).status_code == 201
    assert api("POST", base + "/move", json={"from": "notes/a.txt", "to": "d1/b.txt"}).status_code == 200
    assert api("GET", base + "?path=notes/a.txt").status_code == 404
    assert api("GET", base + "?path=d1/b.txt").content == b"alpha"
    assert api("DELETE", base + "?path=d1/b.txt").status_code == 204
    assert api("GET", base + "?path=d1/b.txt").status_code == 404
    # confinement: traversal and symlinks reach only the sandbox's own files
    r = api("GET", base + "?path=../../../../etc/shadow")
    assert r.status_code in (403, 404) or b"root:" not in r.content
    api("POST", "/api/v1/sandboxes/%s/commands" % sid, json={"cmd": "ln -s /etc/hostname link"})
    host_hostname = open("/etc/hostname", "rb").read()
    r = api("GET", base + "?path=link")
    assert r.content != host_hostname or r.status_code != 200
    marker = "/tmp/soulbox-escape-%d" % os.getpid()
    api("PUT", base + "?path=../../.." + marker, data=b"x")
    assert not os.path.exists(marker)
    assert api("GET", base).status_code == 400  # path is required

    # timeout then delete, with end reasons recorded
    assert api("POST", "/api/v1/sandboxes/%s/timeout" % sid, json={"timeout": 600}).json()["timeout"] == 600
    assert api("DELETE", "/api/v1/sandboxes/" + sid).status_code == 204
    r = api("GET", "/api/v1/sandboxes/" + sid)
    assert r.status_code == 200 and r.json()["state"] == "destroyed" and r.json()["end_reason"] == "deleted", r.text
    assert api("POST", "/api/v1/sandboxes/%s/commands" % sid, json={"cmd": "true"}).status_code == 404


def test_sandbox_idle_expiry():
    sid = api("POST", "/api/v1/sandboxes", json={"runtime": "bash", "timeout": 1}).json()["id"]
    deadline = time.monotonic() + 15
    state = None
    while time.monotonic() < deadline:
        j = api("GET", "/api/v1/sandboxes/" + sid).json()
        state = j.get("state")
        if state == "expired":
            break
        time.sleep(0.1)  # expiry runs on the server's 1 s timer; poll the record
    assert state == "expired" and j["end_reason"] == "expired", j


def test_audit_and_metrics():
    r = api("GET", "/api/v1/audit?type=execution&limit=5", "admin")
    assert r.status_code == 200, r.text
    recs = r.json()["records"]
    assert recs and all(x["type"] == "execution" for x in recs)
    assert "code" not in str(recs[0].get("fields", {})).replace("code_sha256", "")
    assert api("GET", "/api/v1/audit", "user").status_code == 403
    types = {x["type"] for x in api("GET", "/api/v1/audit?limit=1000", "admin").json()["records"]}
    assert {"sandbox.created", "sandbox.killed", "sandbox.expired", "file.write",
            "file.delete"} <= types, types
    text = requests.get(SB.url("/metrics"), timeout=10).text
    assert 'soulbox_executions_total{runtime="python",status="exited"}' in text
    assert "soulbox_execution_duration_seconds_bucket" in text
    assert 'soulbox_http_requests_total{route="/api/v1/execute",code="200"}' in text
    assert 'soulbox_actor_up{actor="executor"} 1' in text
    if shutil.which("promtool"):
        p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                           text=True)
        assert p.returncode == 0, p.stdout + p.stderr


def test_admission_limits():
    """The scheduler's per-key admission limit reaches the client as 429 with Retry-After,
    another key is unaffected, and the slot frees when the sandbox is gone."""
    sb = Soulbox(BIN, ["serve", "--port", "0", "--auth-admin-key", ADMIN,
                       "--scheduler-max-sandboxes-per-key", "1", "--pool-min-size", "0",
                       "--ratelimit-per-key-per-minute", "100000"], name="limits").start()
    try:
        adm = {"Authorization": "Bearer " + ADMIN}
        k1, k2 = [{"Authorization": "Bearer " + requests.post(
            sb.url("/api/v1/keys"), headers=adm, timeout=30,
            json={"name": n, "role": "user"}).json()["key"]} for n in ("k1", "k2")]
        url = sb.url("/api/v1/sandboxes")
        deadline = time.monotonic() + 20
        while True:  # right after start the scheduler may not know a node yet: 503 + Retry-After
            r = requests.post(url, headers=k1, json={"runtime": "bash"}, timeout=30)
            if r.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(min(float(r.headers.get("Retry-After", "1")), 1.0))
        assert r.status_code == 201, r.text
        first = r.json()["id"]
        r = requests.post(url, headers=k1, json={"runtime": "bash"}, timeout=30)
        assert r.status_code == 429, r.text
        assert r.json()["error"]["code"] == "rate_limited"
        assert int(r.headers["Retry-After"]) >= 1
        r = requests.post(url, headers=k2, json={"runtime": "bash"}, timeout=30)
        assert r.status_code == 201, r.text
        assert requests.delete(url + "/" + first, headers=k1, timeout=30).status_code == 204
        r = requests.post(url, headers=k1, json={"runtime": "bash"}, timeout=30)
        assert r.status_code == 201, r.text
    finally:
        assert sb.stop() == 0, sb.log()[-2000:]


def teardown():
    rc = SB.stop()
    log = SB.log()
    assert rc == 0, log[-3000:]
    assert "SB-ACTOR-LEAK" not in log


if __name__ == "__main__":
    setup()
    try:
        rc = run_tests([test_runtimes, test_execute_basics, test_execute_limits,
                        test_execute_files_and_artifacts, test_execute_compile_error,
                        test_bad_input, test_sandbox_lifecycle_and_ownership,
                        test_sandbox_idle_expiry, test_audit_and_metrics,
                        test_admission_limits])
    finally:
        teardown()
    sys.exit(rc)
