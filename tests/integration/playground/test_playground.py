"""The browser playground end to end against the real soulbox binary.

Static serving first (types, security headers, HEAD, every traversal spelling refused, a
symlink out of the root refused, unauthenticated), then browser.mjs drives Debian's chromium
through playwright-core: key, runtimes, typed code run with streamed stdout/stderr, a
traceback, a matplotlib plot as an <img>, Stop keeping state, the terminal running `ls` and
following a resize.  Screenshots land in ARTIFACTS (printed).  No skipping: setup-deps.sh
installs chromium and playwright-core, so their absence is a failure.

usage: test_playground.py SOULBOX_BINARY ARTIFACT_DIR
"""
import http.client
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "lib"))
from soulbox_proc import Soulbox, run_tests  # noqa: E402

import requests  # noqa: E402

BIN = sys.argv[1]
ARTIFACTS = sys.argv[2]
HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
PAGE_SRC = os.path.join(SRC, "gateway", "playground")
VENDOR = os.path.join(SRC, ".cache", "playground", "node_modules")
PLAYWRIGHT = os.path.join(SRC, ".cache", "playground-test", "node_modules")
CHROMIUM = os.environ.get("SB_CHROMIUM", "/usr/bin/chromium")
ADMIN = "sbk_integration_admin_key_0123456789abcdef"
SB = None
KEY = None
PAGE = None  # a copy of the page's files plus a symlink pointing out of the root


def setup():
    global SB, KEY, PAGE
    PAGE = tempfile.mkdtemp(prefix="sb-playground-")
    for f in os.listdir(PAGE_SRC):
        if f.endswith((".html", ".css", ".js")):
            shutil.copy(os.path.join(PAGE_SRC, f), PAGE)
    outside = os.path.join(tempfile.mkdtemp(prefix="sb-outside-"), "secret.txt")
    with open(outside, "w") as f:
        f.write("must not be served\n")
    os.symlink(outside, os.path.join(PAGE, "escape.txt"))
    with open(os.path.join(PAGE, ".hidden.txt"), "w") as f:
        f.write("dotfile\n")
    SB = Soulbox(BIN, ["serve", "--port", "0", "--auth-admin-key", ADMIN,
                       "--pool-min-size", "1", "--ratelimit-per-key-per-minute", "100000",
                       "--playground-dir", PAGE, "--playground-vendor-dir", VENDOR])
    SB.args += ["--data-dir", os.path.join(SB.tmp, "data")]
    SB.start()
    r = requests.post(SB.url("/api/v1/keys"), headers={"Authorization": "Bearer " + ADMIN},
                      json={"name": "playground-user", "role": "user"}, timeout=30)
    assert r.status_code == 201, r.text
    KEY = r.json()["key"]


def raw_get(path, method="GET"):
    """GET with the path sent exactly as given (requests would normalize '..')."""
    c = http.client.HTTPConnection("127.0.0.1", SB.port, timeout=10)
    c.putrequest(method, path, skip_accept_encoding=True)
    c.endheaders()
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, dict((k.lower(), v) for k, v in r.getheaders()), body


def test_page_and_assets_served():
    for path, ctype in [("/playground", "text/html"), ("/playground/", "text/html"),
                        ("/playground/index.html", "text/html"),
                        ("/playground/app.js", "text/javascript"),
                        ("/playground/style.css", "text/css"),
                        ("/playground/vendor/@xterm/xterm/lib/xterm.js", "text/javascript"),
                        ("/playground/vendor/@xterm/xterm/css/xterm.css", "text/css"),
                        ("/playground/vendor/@xterm/addon-fit/lib/addon-fit.js",
                         "text/javascript")]:
        st, h, body = raw_get(path)  # no credentials: the files are public
        assert st == 200, (path, st, body[:200])
        assert h["content-type"].startswith(ctype), (path, h["content-type"])
        assert h["x-content-type-options"] == "nosniff", path
        assert len(body) > 100, path
    st, h, body = raw_get("/playground")
    assert b"SoulBox Playground" in body
    csp = h["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp, csp
    with open(os.path.join(PAGE_SRC, "app.js"), "rb") as f:
        assert raw_get("/playground/app.js")[2] == f.read()
    st, h, body = raw_get("/playground/app.js", "HEAD")
    assert st == 200 and body == b"" and int(h["content-length"]) > 1000, (st, h)


def test_traversal_refused():
    paths = [
        "/playground/../CMakeLists.txt", "/playground/../../etc/passwd",
        "/playground/%2e%2e/%2e%2e/etc/passwd", "/playground/%2E%2E%2Fetc%2Fpasswd",
        "/playground/vendor/../../package.json", "/playground/vendor/%2e%2e/package.json",
        "/playground/vendor/@xterm/../../playground-test/node_modules/playwright-core/package.json",
        "/playground/./index.html", "/playground//index.html", "/playground/..%5cindex.html",
        "/playground/index.html%00.js", "/playground/escape.txt", "/playground/.hidden.txt",
        "/playground/vendor/.package-lock.json", "/playground/vendor/@xterm",
        "/playground/vendor/", "/playground/nonexistent.js", "/playground/app.js/",
        "/playground/vendor/@xterm/xterm/README.md",  # not a type we serve
    ]
    for p in paths:
        st, h, body = raw_get(p)
        assert st in (400, 404), (p, st, body[:200])
        assert b"must not be served" not in body and b"root:" not in body, p
        assert b"dotfile" not in body, p


def test_browser():
    assert os.path.exists(CHROMIUM), CHROMIUM + " missing: run scripts/setup-deps.sh"
    assert os.path.isdir(os.path.join(PLAYWRIGHT, "playwright-core")), \
        "playwright-core missing: run scripts/setup-deps.sh"
    env = dict(os.environ, SB_URL="http://127.0.0.1:%d" % SB.port, SB_KEY=KEY,
               SB_ARTIFACTS=ARTIFACTS, SB_PLAYWRIGHT=PLAYWRIGHT, SB_CHROMIUM=CHROMIUM,
               PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1")
    p = subprocess.run(["node", os.path.join(HERE, "browser.mjs")], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=400)
    out = p.stdout.decode(errors="replace")
    print(out, end="", flush=True)
    if p.returncode != 0:
        print("--- soulbox log (tail):\n" + SB.log()[-6000:])
    assert p.returncode == 0, "browser steps failed (exit %d)" % p.returncode
    assert os.path.exists(os.path.join(ARTIFACTS, "playground.png"))


def main():
    try:
        setup()
    except Exception:
        import traceback
        traceback.print_exc()
        print("0 passed, 1 failed")
        return 1
    try:
        return run_tests([test_page_and_assets_served, test_traversal_refused, test_browser])
    finally:
        SB.stop()
        shutil.rmtree(PAGE, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
