#!/usr/bin/env python3
"""SoulBox warm kernel for Bash (protocol: docs/plugins.md, "Warm kernels").

Same JSON-lines protocol as the Python kernel.  Each context is one persistent
`bash --norc --noprofile` process (its variables, functions, cwd and aliases persist).  A cell
is written to a file and `source`d with stdin from /dev/null; then the shell prints a random
sentinel with the cell's exit status on stdout and the sentinel on stderr, which marks the end
of the cell on both streams.  Output is streamed as it arrives.  A non-zero exit status is
reported as an error {name: "ExitCode", value: N}; the status is also in done.exit_code.
SIGINT to the kernel interrupts the cell (SIGINT to the shell's foreground process group) and
keeps the shell; a cell that exits the shell gets an error and a fresh shell (state lost).
"""
import json
import os
import secrets
import selectors
import signal
import subprocess
import sys
import tempfile
import uuid

PROTOCOL = 1
_out = sys.stdout.buffer
_cells = tempfile.mkdtemp(prefix=".soulbox-bash-")


def emit(obj):
    _out.write((json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8", "replace"))
    _out.flush()


class Shell:
    def __init__(self, cid):
        self.id = cid
        self.count = 0
        self.token = "__SOULBOX_%s__" % secrets.token_hex(12)
        self.proc = subprocess.Popen(
            ["bash", "--norc", "--noprofile"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True, bufsize=0)
        # An interrupted cell returns from `source` instead of killing the shell.
        self.send("trap 'return 130 2>/dev/null' INT\n")

    def send(self, text):
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def alive(self):
        return self.proc.poll() is None

    def close(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        self.proc.wait()


contexts = {}
_running = [None]


def _on_sigint(signum, frame):
    sh = _running[0]
    if sh is not None and sh.alive():
        try:
            os.killpg(sh.proc.pid, signal.SIGINT)
        except OSError:
            pass


signal.signal(signal.SIGINT, _on_sigint)


def execute(req):
    rid = req.get("id")
    cid = req.get("context_id") or "default"
    sh = contexts.get(cid)
    if sh is None:
        emit({"type": "error", "id": rid, "name": "ContextNotFound", "value": cid, "traceback": []})
        emit({"type": "done", "id": rid, "execution_count": None})
        return
    if not sh.alive():
        sh = contexts[cid] = Shell(cid)
    sh.count += 1
    path = os.path.join(_cells, "%s-%d.sh" % (cid, sh.count))
    with open(path, "w") as f:
        f.write(req.get("code") or "")
        f.write("\n")
    tok = sh.token
    sh.send("source %s </dev/null; __sb_rc=$?; printf '%s %%d\\n' \"$__sb_rc\"; printf '%s' >&2\n"
            % (path, tok, tok))
    sel = selectors.DefaultSelector()
    bufs = {sh.proc.stdout: b"", sh.proc.stderr: b""}
    names = {sh.proc.stdout: "stdout", sh.proc.stderr: "stderr"}
    done = {sh.proc.stdout: False, sh.proc.stderr: False}
    for f in bufs:
        sel.register(f, selectors.EVENT_READ)
    rc = None
    btok = tok.encode()
    _running[0] = sh
    try:
        while not all(done.values()):
            try:
                events = sel.select()
            except InterruptedError:
                continue
            for key, _ in events:
                f = key.fileobj
                data = os.read(f.fileno(), 65536)
                if not data:  # the shell is gone (exit in the cell)
                    done[f] = True
                    sel.unregister(f)
                    continue
                buf = bufs[f] + data
                i = buf.find(btok)
                if i >= 0:
                    text, rest = buf[:i], buf[i + len(btok):]
                    if f is sh.proc.stdout:
                        line = rest.split(b"\n", 1)[0].strip()
                        rc = int(line) if line.lstrip(b"-").isdigit() else None
                        if b"\n" not in rest:  # the status line is not complete yet
                            bufs[f] = buf
                            continue
                    if text:
                        emit({"type": names[f], "id": rid, "text": text.decode("utf-8", "replace")})
                    bufs[f] = b""
                    done[f] = True
                    sel.unregister(f)
                    continue
                # Keep back only a tail that could be the start of the sentinel.
                keep = 0
                for n in range(min(len(buf), len(btok) - 1), 0, -1):
                    if buf.endswith(btok[:n]):
                        keep = n
                        break
                safe = buf[:len(buf) - keep]
                # Do not split a UTF-8 sequence.
                while safe and (safe[-1] & 0xC0) == 0x80:
                    safe = safe[:-1]
                if safe and (safe[-1] & 0x80):
                    safe = safe[:-1]
                if safe:
                    emit({"type": names[f], "id": rid, "text": safe.decode("utf-8", "replace")})
                bufs[f] = buf[len(safe):]
    finally:
        _running[0] = None
        sel.close()
        try:
            os.unlink(path)
        except OSError:
            pass
    if rc is None:
        sh.proc.wait()
        emit({"type": "error", "id": rid, "name": "ShellExited",
              "value": "the shell exited (status %s); the context starts afresh" % sh.proc.returncode,
              "traceback": []})
        contexts[cid] = Shell(cid)
        emit({"type": "done", "id": rid, "execution_count": sh.count, "exit_code": sh.proc.returncode})
        return
    if rc != 0:
        emit({"type": "error", "id": rid, "name": "Interrupted" if rc == 130 else "ExitCode",
              "value": str(rc), "traceback": []})
    emit({"type": "done", "id": rid, "execution_count": sh.count, "exit_code": rc})


def handle(req):
    t = req.get("type")
    rid = req.get("id")
    if t == "execute":
        execute(req)
    elif t == "create_context":
        cid = req.get("context_id") or uuid.uuid4().hex
        if cid in contexts:
            emit({"type": "error", "id": rid, "name": "ContextExists", "value": cid, "traceback": []})
            return
        contexts[cid] = Shell(cid)
        if req.get("cwd"):
            contexts[cid].send("cd %s\n" % json.dumps(req["cwd"]))
        emit({"type": "context", "id": rid, "context_id": cid})
    elif t in ("reset_context", "restart"):
        cid = req.get("context_id") or "default"
        if cid not in contexts:
            emit({"type": "error", "id": rid, "name": "ContextNotFound", "value": cid, "traceback": []})
            return
        contexts[cid].close()
        contexts[cid] = Shell(cid)
        emit({"type": "context", "id": rid, "context_id": cid})
    elif t == "delete_context":
        cid = req.get("context_id")
        if cid not in contexts:
            emit({"type": "error", "id": rid, "name": "ContextNotFound", "value": str(cid), "traceback": []})
            return
        contexts.pop(cid).close()
        if cid == "default":
            contexts["default"] = Shell("default")
        emit({"type": "ok", "id": rid})
    elif t == "list_contexts":
        emit({"type": "contexts", "id": rid, "contexts": sorted(contexts)})
    elif t == "ping":
        emit({"type": "pong", "id": rid})
    elif t == "shutdown":
        emit({"type": "ok", "id": rid})
        for sh in contexts.values():
            sh.close()
        os._exit(0)
    else:
        emit({"type": "error", "id": rid, "name": "BadRequest", "value": "unknown type %r" % (t,),
              "traceback": []})


def main():
    contexts["default"] = Shell("default")
    ver = subprocess.run(["bash", "-c", "echo $BASH_VERSION"], capture_output=True, text=True).stdout.strip()
    emit({"type": "ready", "language": "bash", "protocol": PROTOCOL, "version": ver, "pid": os.getpid()})
    stdin = sys.stdin.buffer
    while True:
        try:
            line = stdin.readline()
        except KeyboardInterrupt:
            continue
        if not line:
            break
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise ValueError("a request is a JSON object")
        except ValueError as e:
            emit({"type": "error", "id": None, "name": "BadRequest", "value": str(e), "traceback": []})
            continue
        try:
            handle(req)
        except KeyboardInterrupt:
            continue
    for sh in contexts.values():
        sh.close()
    os._exit(0)


if __name__ == "__main__":
    main()
