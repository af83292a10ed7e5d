"""Helpers for integration tests: start the real soulbox binary and wait on events.

Every wait has a deadline; readiness is the READY line soulbox writes to --ready-fd (an event,
not a guess), process exit is waited for with a timeout, and log lines are awaited by reading
the log file as it grows.
"""
import os
import signal
import socket
import subprocess
import tempfile
import time


class Soulbox:
    def __init__(self, binary, args, env=None, name="soulbox"):
        self.binary = binary
        self.args = list(args)
        self.tmp = tempfile.mkdtemp(prefix="sbit-")
        # Every server gets its own data directory unless the test names one: tests never
        # read or write the machine's /var/lib/soulbox.
        if "serve" in self.args and not any(a.startswith("--data-dir") for a in self.args):
            self.args += ["--data-dir", os.path.join(self.tmp, "data")]
        self.log_path = os.path.join(self.tmp, name + ".log")
        self.env = dict(os.environ, **(env or {}))
        self.proc = None
        self.port = None
        self.bus = None
        self.node = None

    def start(self, timeout=20):
        r, w = os.pipe()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.binary] + self.args + ["--ready-fd", str(w)],
            stdout=log, stderr=subprocess.STDOUT, pass_fds=(w,), env=self.env,
            cwd=self.tmp)
        os.close(w)
        log.close()
        line = b""
        deadline = time.monotonic() + timeout
        while b"\n" not in line:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            import select
            rd, _, _ = select.select([r], [], [], left)
            if not rd:
                break
            chunk = os.read(r, 256)
            if not chunk:
                break
            line += chunk
        os.close(r)
        if b"READY" not in line:
            self.kill()
            raise RuntimeError("soulbox did not become ready:\n" + self.log())
        fields = dict(kv.split("=", 1) for kv in line.decode().split()[1:])
        self.port = int(fields["port"])
        self.node = fields.get("node")
        self.bus = fields.get("bus")
        return self

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def log(self):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_log(self, needle, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log():
                return True
            time.sleep(0.02)  # re-read the growing log; the event is the line appearing
        return False

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=20):
        return self.proc.wait(timeout=timeout)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self, timeout=20):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(timeout=timeout)
        return self.proc.returncode if self.proc else None


def make_keys(sb, admin_key, roles=(("user", "alice"), ("user2", "bob"), ("viewer", "carol"))):
    """Mint API keys through POST /api/v1/keys with the admin key; returns {label: key} with
    "admin" included.  A label starting with "viewer" gets the viewer role, others user."""
    import requests
    keys = {"admin": admin_key}
    for label, name in roles:
        r = requests.post(sb.url("/api/v1/keys"), headers={"Authorization": "Bearer " + admin_key},
                          json={"name": name,
                                "role": "viewer" if label.startswith("viewer") else "user"},
                          timeout=30)
        assert r.status_code == 201, r.text
        keys[label] = r.json()["key"]
    return keys


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


SKIP_CODE = 77  # what ctest reports as skipped (SKIP_RETURN_CODE in cmake/SbTest.cmake)


class Skip(Exception):
    """Raised by a test that cannot run here; the run then ends skipped, never passed."""


def run_tests(tests):
    """Run test functions in order; print ok/skip/FAIL lines and a closing count.  Returns 1
    after a failure, SKIP_CODE after a skip, else 0."""
    import traceback
    passed = failed = skipped = 0
    for t in tests:
        try:
            t()
            print("ok", t.__name__, flush=True)
            passed += 1
        except Skip as e:
            print("skip", t.__name__ + ":", e, flush=True)
            skipped += 1
        except Exception:
            print("FAIL", t.__name__, flush=True)
            traceback.print_exc()
            failed += 1
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped), flush=True)
    return 1 if failed else SKIP_CODE if skipped else 0
