"""Smoke run of http_load against a real `soulbox serve`, so the driver never rots.

Starts the server (temporary data dir, a known admin key), then runs http_load twice with
--fail-on-error: GET /health for about a second (closed loop, 2 connections) and one
POST /api/v1/execute of python print(1) whose answer must contain "stdout":"1\\n".  Both must
write their JSON.  Checks correctness only: timing is never asserted here.

usage: http_load_smoke.py SOULBOX HTTP_LOAD OUTDIR
"""
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "lib"))
from soulbox_proc import Soulbox  # noqa: E402

SOULBOX, HTTP_LOAD, OUT = sys.argv[1:4]
ADMIN = "sbk_load_smoke_admin_key_0123456789abcdef"


def run(args, json_path):
    if os.path.exists(json_path):
        os.unlink(json_path)
    p = subprocess.run([HTTP_LOAD] + args + ["--json", json_path, "--fail-on-error"],
                       capture_output=True, text=True, timeout=60)
    print(p.stdout, p.stderr, sep="", flush=True)
    assert p.returncode == 0, "http_load exited %d" % p.returncode
    with open(json_path) as f:
        j = json.load(f)
    assert j["operations"] >= 1 and j["failed"] == 0, j
    assert ADMIN not in p.stdout and ADMIN not in json.dumps(j), "the key must be redacted"
    return j


def main():
    sb = Soulbox(SOULBOX, ["serve", "--port", "0", "--auth-admin-key", ADMIN,
                           "--pool-min-size", "1", "--pool-max-size", "2"])
    sb.args += ["--data-dir", os.path.join(sb.tmp, "data")]
    sb.start()
    try:
        base = "http://127.0.0.1:%d" % sb.port
        j = run(["-c", "2", "-d", "1", base + "/health"],
                os.path.join(OUT, "http_load_smoke_health.json"))
        assert j["status"].get("200", 0) == j["operations"], j["status"]
        j = run(["-n", "1", "-H", "Authorization: Bearer " + ADMIN,
                 "-b", '{"runtime":"python","code":"print(1)"}',
                 "--expect-body", '"stdout":"1\\n"', base + "/api/v1/execute"],
                os.path.join(OUT, "http_load_smoke_execute.json"))
        assert j["status"] == {"200": 1}, j["status"]
        # open loop: a handful of scheduled requests at a low rate, all answered
        j = run(["-r", "50", "-n", "10", "-c", "2", base + "/health"],
                os.path.join(OUT, "http_load_smoke_open.json"))
        assert j["operations"] == 10, j
    except Exception:
        print(sb.log()[-4000:])
        raise
    finally:
        sb.stop()
        shutil.rmtree(sb.tmp, ignore_errors=True)
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
