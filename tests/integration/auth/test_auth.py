"""Authentication end to end through the real `soulbox serve` and real clients (requests, the
soulbox CLI): the first-start admin key (printed once, never again), API keys over HTTP and the
CLI, revocation taking effect at once, logins, refresh rotation and reuse detection, forged
JWTs, roles, login brute force and per-key rate limits (429 + Retry-After), bad credentials,
audit events written, and a short JWT secret refused at start.  The server stays up throughout.
"""
import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "lib"))
from soulbox_proc import Soulbox, run_tests  # noqa: E402

import requests  # noqa: E402

BIN = sys.argv[1]
ROLES = "gateway,storage,auditor,monitor"
SECRET = "integration-jwt-secret-" + "x" * 64
KEY_RE = re.compile(r"sbk_[A-Za-z0-9_-]{43}")
T = 10  # seconds: every HTTP call's deadline


def serve(data_dir, env=None, extra=()):
    e = {"SOULBOX_AUTH_JWT_SECRET": SECRET}
    e.update(env or {})
    return Soulbox(BIN, ["serve", "--port", "0", "--roles", ROLES, "--data-dir", data_dir]
                   + list(extra), env=e)


def admin_key(sb):
    assert sb.wait_log("SB-AUTH-BOOTSTRAP-KEY", timeout=15), sb.log()
    keys = KEY_RE.findall(sb.log())
    assert len(keys) == 1, keys
    return keys[0]


def cli(*args, data_dir, stdin=None):
    p = subprocess.run([BIN] + list(args) + ["--data-dir", data_dir], input=stdin,
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def H(key):
    return {"Authorization": "Bearer " + key}


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def make_jwt(header, claims, key=SECRET.encode(), digest=hashlib.sha256, sig=None):
    h = b64u(json.dumps(header).encode())
    c = b64u(json.dumps(claims).encode())
    if sig is None:
        sig = b64u(hmac.new(key, (h + "." + c).encode(), digest).digest())
    return h + "." + c + "." + sig


def wait_audit(data_dir, needle, timeout=10):
    path = os.path.join(data_dir, "audit.log")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path, errors="replace") as f:
                if needle in f.read():
                    return True
        except FileNotFoundError:
            pass
        time.sleep(0.05)  # the event is the line landing in the log; re-read it
    return False


def healthy(sb):
    r = requests.get(sb.url("/health"), timeout=T)
    assert r.status_code in (200, 503), r.status_code  # the process answers: it stayed up
    assert sb.proc.poll() is None


class Env:
    def __init__(self, env=None, extra=()):
        self.dir = tempfile.mkdtemp(prefix="sbauth-")
        self.data = os.path.join(self.dir, "data")
        self.sb = serve(self.data, env, extra).start()
        self.key = admin_key(self.sb)

    def close(self):
        rc = self.sb.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        assert rc == 0, self.sb.log()


def test_first_start_prints_key_once():
    d = tempfile.mkdtemp(prefix="sbauth-")
    data = os.path.join(d, "data")
    try:
        # No JWT secret configured: one is made in the data dir (0600) and kept.
        noenv = {"SOULBOX_AUTH_JWT_SECRET": ""}
        sb = serve(data, env=noenv).start()
        key = admin_key(sb)
        log = sb.log()
        # The log line says it was printed, without the key; stdout had the key once.
        line = [ln for ln in log.splitlines() if "SB-AUTH-BOOTSTRAP-KEY" in ln][0]
        assert key not in line and "printed" in line
        assert log.count(key) == 1
        assert requests.get(sb.url("/api/v1/keys"), headers=H(key), timeout=T).status_code == 200
        assert sb.stop() == 0
        # Only the hash is stored.
        with open(os.path.join(data, "soulbox.db"), "rb") as f:
            db = f.read()
        assert key.encode() not in db
        st = os.stat(os.path.join(data, "jwt.key"))
        assert st.st_mode & 0o777 == 0o600 and st.st_size == 64
        with open(os.path.join(data, "jwt.key"), "rb") as f:
            jwt_key = f.read()
        # Second start, same data dir: no new key, and the old one still works.
        sb2 = serve(data, env=noenv).start()
        try:
            assert sb2.wait_log("SB-AUTH-CREDENTIALS-PRESENT", timeout=15), sb2.log()
            assert not KEY_RE.search(sb2.log()), sb2.log()
            r = requests.get(sb2.url("/api/v1/keys"), headers=H(key), timeout=T)
            assert r.status_code == 200, r.text
            assert [k["id"] for k in r.json()["keys"]] == ["bootstrap"]
            with open(os.path.join(data, "jwt.key"), "rb") as f:
                assert f.read() == jwt_key  # tokens survive restarts
        finally:
            assert sb2.stop() == 0
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_configured_admin_key_no_bootstrap():
    d = tempfile.mkdtemp(prefix="sbauth-")
    admin = "preseeded-admin-key-" + "z" * 40
    try:
        sb = serve(os.path.join(d, "data"), env={"SOULBOX_AUTH_ADMIN_KEY": admin}).start()
        try:
            assert sb.wait_log("SB-AUTH-CREDENTIALS-PRESENT", timeout=15)
            assert not KEY_RE.search(sb.log())
            r = requests.get(sb.url("/api/v1/keys"), headers={"X-API-Key": admin}, timeout=T)
            assert r.status_code == 200, r.text
            r = requests.get(sb.url("/api/v1/keys"), headers={"X-API-Key": admin + "x"},
                             timeout=T)
            assert r.status_code == 401
        finally:
            assert sb.stop() == 0
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_keys_over_http():
    e = Env()
    try:
        sb, key = e.sb, e.key
        r = requests.post(sb.url("/api/v1/keys"), headers=H(key),
                          json={"name": "ci", "role": "user"}, timeout=T)
        assert r.status_code == 201, r.text
        k = r.json()
        assert KEY_RE.fullmatch(k["key"]) and k["role"] == "user" and k["name"] == "ci"
        assert k["id"] and isinstance(k["created"], int)
        # The new key authenticates (a user: 403 on an admin route, not 401).
        r = requests.get(sb.url("/api/v1/keys"), headers={"X-API-Key": k["key"]}, timeout=T)
        assert r.status_code == 403, r.text
        assert r.json()["error"]["code"] == "forbidden"
        # The list names it, without any key or hash.
        r = requests.get(sb.url("/api/v1/keys"), headers=H(key), timeout=T)
        assert r.status_code == 200
        body = r.text
        assert k["key"] not in body and "key_hash" not in body
        assert hashlib.sha256(k["key"].encode()).hexdigest() not in body
        ids = {x["id"]: x for x in r.json()["keys"]}
        assert ids[k["id"]]["revoked"] is False and ids[k["id"]]["role"] == "user"
        # Revoke: 204, and the key (cached a moment ago) stops working at once.
        r = requests.delete(sb.url("/api/v1/keys/" + k["id"]), headers=H(key), timeout=T)
        assert r.status_code == 204, r.text
        r = requests.get(sb.url("/api/v1/keys"), headers={"X-API-Key": k["key"]}, timeout=T)
        assert r.status_code == 401, r.text
        assert r.headers.get("WWW-Authenticate", "").startswith("Bearer")
        assert r.json()["error"]["code"] == "unauthorized"
        r = requests.get(sb.url("/api/v1/keys"), headers=H(key), timeout=T)
        assert {x["id"]: x for x in r.json()["keys"]}[k["id"]]["revoked"] is True
        # Idempotent revoke; unknown id 404.
        assert requests.delete(sb.url("/api/v1/keys/" + k["id"]), headers=H(key),
                               timeout=T).status_code == 204
        r = requests.delete(sb.url("/api/v1/keys/k_nope"), headers=H(key), timeout=T)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        # Bad bodies: 400 naming the field.
        for body, field in [({"role": "root"}, "role"), ({"name": "x"}, "role"),
                            ({"name": 5, "role": "user"}, "name"),
                            ({"role": ["user"]}, "role"), ({"role": "user", "owner": "a b"},
                                                           "owner")]:
            r = requests.post(sb.url("/api/v1/keys"), headers=H(key), json=body, timeout=T)
            assert r.status_code == 400, (body, r.text)
            assert field in r.json()["error"]["message"], r.text
        for raw in [b"{", b"[]", b"null", b"\xff\xfe", b""]:
            r = requests.post(sb.url("/api/v1/keys"), headers=dict(H(key), **{
                "Content-Type": "application/json"}), data=raw, timeout=T)
            assert r.status_code == 400, (raw, r.text)
        assert wait_audit(e.data, "api_key.created") and wait_audit(e.data, "api_key.revoked")
        with open(os.path.join(e.data, "audit.log")) as f:
            audit = f.read()
        assert k["key"] not in audit and key not in audit
        healthy(sb)
    finally:
        e.close()


def test_keys_cli():
    e = Env()
    try:
        rc, out, err = cli("keys", "create", "--role", "viewer", "--name", "dash",
                           data_dir=e.data)
        assert rc == 0, err
        vkey = out.strip()
        assert KEY_RE.fullmatch(vkey), out
        kid = re.search(r"API key id=(\S+)", err).group(1)
        # Viewer: authenticated, but admin routes are forbidden.
        for m in ("get", "post"):
            r = getattr(requests, m)(e.sb.url("/api/v1/keys"), headers=H(vkey), timeout=T,
                                     **({"json": {"role": "admin"}} if m == "post" else {}))
            assert r.status_code == 403, r.text
        r = requests.delete(e.sb.url("/api/v1/keys/bootstrap"), headers=H(vkey), timeout=T)
        assert r.status_code == 403
        rc, out, err = cli("keys", "list", data_dir=e.data)
        assert rc == 0 and kid in out and "bootstrap" in out and vkey not in out
        rc, out, err = cli("keys", "list", "--json", data_dir=e.data)
        assert rc == 0 and "key_hash" not in out
        assert {k["id"] for k in json.loads(out)} == {kid, "bootstrap"}
        # A key revoked by the CLI before this gateway ever saw it is refused.
        rc, out, err = cli("keys", "create", "--role", "user", data_dir=e.data)
        ukey = out.strip()
        uid = re.search(r"API key id=(\S+)", err).group(1)
        rc, out, err = cli("keys", "revoke", uid, data_dir=e.data)
        assert rc == 0, err
        assert requests.get(e.sb.url("/api/v1/keys"), headers=H(ukey),
                            timeout=T).status_code == 401
        assert cli("keys", "revoke", "no-such-id", data_dir=e.data)[0] == 1
        assert cli("keys", "create", "--role", "root", data_dir=e.data)[0] == 2
        assert cli("keys", "create", data_dir=e.data)[0] == 2
        assert cli("keys", "bogus", data_dir=e.data)[0] == 2
        healthy(e.sb)
    finally:
        e.close()


def login(sb, user, pw):
    return requests.post(sb.url("/api/v1/auth/login"), json={"username": user, "password": pw},
                         timeout=T)


def refresh(sb, tok):
    return requests.post(sb.url("/api/v1/auth/refresh"), json={"refresh_token": tok}, timeout=T)


def test_login_refresh_reuse():
    e = Env()
    try:
        sb = e.sb
        rc, out, err = cli("users", "add", "alice", "--role", "user", "--password-stdin",
                           data_dir=e.data, stdin="correct horse battery\n")
        assert rc == 0, err
        assert cli("users", "add", "alice", "--role", "user", data_dir=e.data,
                   stdin="another password\n")[0] == 1  # exists
        assert cli("users", "add", "bob", "--role", "user", data_dir=e.data,
                   stdin="short\n")[0] == 1  # too short
        r = login(sb, "alice", "correct horse battery")
        assert r.status_code == 200, r.text
        t = r.json()
        assert t["token_type"] == "Bearer" and t["expires_in"] == 900
        assert t["refresh_token"].startswith("sbr_")
        hdr, claims = [json.loads(base64.urlsafe_b64decode(p + "==")) for p in
                       t["access_token"].split(".")[:2]]
        assert hdr["alg"] == "HS256" and claims["sub"] == "alice" and claims["role"] == "user"
        assert claims["exp"] - claims["iat"] == 900
        # The access token authenticates (403: a user on an admin route, not 401).
        r = requests.get(sb.url("/api/v1/keys"), headers=H(t["access_token"]), timeout=T)
        assert r.status_code == 403, r.text
        # Refresh rotates: a new pair; the old refresh token is spent.
        r = refresh(sb, t["refresh_token"])
        assert r.status_code == 200, r.text
        t2 = r.json()
        assert t2["refresh_token"] != t["refresh_token"]
        assert requests.get(sb.url("/api/v1/keys"), headers=H(t2["access_token"]),
                            timeout=T).status_code == 403
        # Reuse of the spent one: refused, audited, and the whole family is revoked.
        r = refresh(sb, t["refresh_token"])
        assert r.status_code == 401, r.text
        assert wait_audit(e.data, "auth.refresh_reuse")
        r = refresh(sb, t2["refresh_token"])
        assert r.status_code == 401, r.text
        # Garbage refresh tokens.
        for bad in ["", "sbr_short", "sbk_" + "A" * 43, "sbr_" + "A" * 43]:
            r = refresh(sb, bad)
            assert r.status_code in (400, 401), (bad, r.text)
        r = requests.post(sb.url("/api/v1/auth/refresh"), json={"refresh_token": 7}, timeout=T)
        assert r.status_code == 400 and "refresh_token" in r.json()["error"]["message"]
        r = requests.post(sb.url("/api/v1/auth/refresh"), json={}, timeout=T)
        assert r.status_code == 400 and "refresh_token" in r.json()["error"]["message"]
        # Wrong password and unknown user look the same.
        r1, r2 = login(sb, "alice", "wrong password"), login(sb, "mallory", "whatever1")
        assert r1.status_code == r2.status_code == 401
        assert r1.json() == r2.json()
        # Bad login bodies: 400 naming the field.
        for body, field in [({"password": "x"}, "username"), ({"username": "alice"}, "password"),
                            ({"username": 1, "password": "x"}, "username"),
                            ({"username": "alice", "password": None}, "password"),
                            ({"username": "a b", "password": "x"}, "username")]:
            r = requests.post(sb.url("/api/v1/auth/login"), json=body, timeout=T)
            assert r.status_code == 400, (body, r.text)
            assert field in r.json()["error"]["message"]
        r = requests.post(sb.url("/api/v1/auth/login"), data=b"{nope", timeout=T)
        assert r.status_code == 400
        assert wait_audit(e.data, "login.success") and wait_audit(e.data, "login.failure")
        with open(os.path.join(e.data, "audit.log")) as f:
            audit = f.read()
        assert "correct horse" not in audit and t["refresh_token"] not in audit
        healthy(sb)
    finally:
        e.close()


def test_forged_jwts():
    e = Env()
    try:
        sb = e.sb
        now = int(time.time())
        good = {"sub": "admin", "role": "admin", "iat": now, "nbf": now, "exp": now + 600}
        # The control: a correct HS256 token with the configured secret is accepted.
        ok = make_jwt({"alg": "HS256", "typ": "JWT"}, good)
        assert requests.get(sb.url("/api/v1/keys"), headers=H(ok), timeout=T).status_code == 200
        forged = {
            "alg none, no signature": make_jwt({"alg": "none", "typ": "JWT"}, good, sig=""),
            "alg none, junk signature": make_jwt({"alg": "none"}, good, sig="AAAA"),
            "alg None": make_jwt({"alg": "None"}, good, sig=""),
            "wrong key": make_jwt({"alg": "HS256"}, good, key=b"k" * 64),
            "HS512 with the right key": make_jwt({"alg": "HS512"}, good, digest=hashlib.sha512),
            "HS384 with the right key": make_jwt({"alg": "HS384"}, good, digest=hashlib.sha384),
            "RS256 header": make_jwt({"alg": "RS256"}, good),
            "expired": make_jwt({"alg": "HS256"}, dict(good, iat=now - 7200, nbf=now - 7200,
                                                       exp=now - 3600)),
            "not yet valid": make_jwt({"alg": "HS256"}, dict(good, nbf=now + 3600,
                                                             exp=now + 7200)),
            "no exp": make_jwt({"alg": "HS256"}, {"sub": "admin", "role": "admin"}),
            "unknown role": make_jwt({"alg": "HS256"}, dict(good, role="root")),
            "tampered claims": ok.split(".")[0] + "." + b64u(json.dumps(
                dict(good, sub="mallory")).encode()) + "." + ok.split(".")[2],
            "two segments": ".".join(ok.split(".")[:2]),
            "empty payload": ok.split(".")[0] + ".." + ok.split(".")[2],
            "empty signature": ".".join(ok.split(".")[:2]) + ".",
            "array payload": ok.split(".")[0] + "." + b64u(b"[1]") + "." + ok.split(".")[2],
            "four segments": ok + ".x",
        }
        for name, tok in forged.items():
            r = requests.get(sb.url("/api/v1/keys"), headers=H(tok), timeout=T)
            assert r.status_code == 401, (name, r.status_code, r.text)
            assert r.json()["error"]["code"] == "unauthorized"
        healthy(sb)
    finally:
        e.close()


def test_bad_credentials():
    e = Env()
    try:
        sb = e.sb
        cases = [{}, {"Authorization": ""}, {"Authorization": "Bearer"},
                 {"Authorization": "Bearer "}, {"Authorization": "Basic dXNlcjpwYXNz"},
                 {"Authorization": "Bearer garbage"}, {"Authorization": "Bearer sbk_"},
                 {"Authorization": "Bearer " + "sbk_" + "A" * 43},
                 {"Authorization": "Bearer " + e.key + "x"},
                 {"Authorization": "Bearer " + "a" * 5000},
                 {"Authorization": "Bearer a.b.c"}, {"X-API-Key": "nope"},
                 {"X-API-Key": e.key[:-1]}, {"Authorization": "bearer\t" + "x" * 20}]
        for h in cases:
            r = requests.get(sb.url("/api/v1/keys"), headers=h, timeout=T)
            assert r.status_code == 401, (h, r.text)
            assert r.json()["error"]["code"] == "unauthorized"
            assert "WWW-Authenticate" in r.headers
        # The scheme is case-insensitive; X-API-Key works too.
        assert requests.get(sb.url("/api/v1/keys"), headers={"Authorization": "bearer " + e.key},
                            timeout=T).status_code == 200
        assert requests.get(sb.url("/api/v1/keys"), headers={"X-API-Key": e.key},
                            timeout=T).status_code == 200
        healthy(sb)
    finally:
        e.close()


def test_login_brute_force_429():
    e = Env()
    try:
        sb = e.sb
        cli("users", "add", "carol", "--role", "viewer", data_dir=e.data,
            stdin="carols password\n")
        codes = [login(sb, "carol", "guess-%d" % i).status_code for i in range(5)]
        assert codes == [401] * 5, codes
        r = login(sb, "carol", "guess-5")
        assert r.status_code == 429, r.text
        assert r.json()["error"]["code"] == "rate_limited"
        ra = int(r.headers["Retry-After"])
        assert 1 <= ra <= 60, ra
        # Even the right password is refused while limited (the limit is per name and per IP).
        assert login(sb, "carol", "carols password").status_code == 429
        assert login(sb, "someone-else", "x" * 10).status_code == 429  # same client IP
        assert wait_audit(e.data, "login.rate_limited")
        healthy(sb)
    finally:
        e.close()


def test_per_key_rate_limit_429():
    e = Env(env={"SOULBOX_RATELIMIT_PER_KEY_PER_MINUTE": "5"})
    try:
        sb = e.sb
        codes = []
        for _ in range(5):
            codes.append(requests.get(sb.url("/api/v1/keys"), headers=H(e.key),
                                      timeout=T).status_code)
        assert codes == [200] * 5, codes
        r = requests.get(sb.url("/api/v1/keys"), headers=H(e.key), timeout=T)
        assert r.status_code == 429, r.text
        assert r.json()["error"]["code"] == "rate_limited"
        ra = int(r.headers["Retry-After"])
        assert 1 <= ra <= 12, ra  # 5/min: a token every 12 s
        # Another key has its own bucket.
        # (created through the CLI: the admin key is limited right now)
        rc, out, err = cli("keys", "create", "--role", "admin", data_dir=e.data)
        k2 = out.strip()
        assert requests.get(sb.url("/api/v1/keys"), headers=H(k2), timeout=T).status_code == 200
        assert wait_audit(e.data, "ratelimit.hit")
        healthy(sb)
    finally:
        e.close()


def test_short_jwt_secret_refused():
    d = tempfile.mkdtemp(prefix="sbauth-")
    try:
        for env in ({"SOULBOX_AUTH_JWT_SECRET": "too-short"},
                    {"SOULBOX_AUTH_JWT_SECRET": "", "JWT_SECRET": "x" * 63}):
            sb = serve(os.path.join(d, "data"), env=env)
            try:
                sb.start(timeout=15)
                raise AssertionError("started with a short JWT secret")
            except RuntimeError:
                pass
            assert "64" in sb.log(), sb.log()
            assert not KEY_RE.search(sb.log())
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(run_tests([
        test_first_start_prints_key_once,
        test_configured_admin_key_no_bootstrap,
        test_keys_over_http,
        test_keys_cli,
        test_login_refresh_reuse,
        test_forged_jwts,
        test_bad_credentials,
        test_login_brute_force_429,
        test_per_key_rate_limit_429,
        test_short_jwt_secret_refused,
    ]))
