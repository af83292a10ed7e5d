#!/usr/bin/env python3
"""SoulBox warm kernel for Python (protocol: docs/plugins.md, "Warm kernels").

One JSON object per line on stdin (requests), one JSON object per line on stdout (events).
Per context a persistent namespace; the value of a trailing expression is the main result
(text/plain plus any rich form: _repr_png_/_repr_svg_/_repr_html_/...); matplotlib figures
made during an execute come back as image/png results; print() is streamed as it happens;
exceptions come back as {name, value, traceback}.  SIGINT stops the running code (a
KeyboardInterrupt error) and keeps the namespace.

The protocol channel is a private duplicate of the original stdout; fds 1 and 2 are pipes the
kernel reads, so output written below Python (os.system, C extensions, children) is streamed
too.  User code's stdin is /dev/null: the request channel is never readable from user code.
"""
import ast
import base64
import builtins
import importlib.abc
import importlib.util
import io
import json
import linecache
import os
import signal
import sys
import threading
import time
import traceback
import uuid

PROTOCOL = 1

# --- the channel -----------------------------------------------------------------------------
_req = os.fdopen(os.dup(0), "r", encoding="utf-8", errors="replace")
_out_fd = os.dup(1)
_lock = threading.Lock()
_devnull = os.open(os.devnull, os.O_RDONLY)
os.dup2(_devnull, 0)
os.close(_devnull)
sys.stdin = io.StringIO("")


def emit(obj):
    data = (json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8", "replace")
    with _lock:
        while data:
            n = os.write(_out_fd, data)
            data = data[n:]


_current = {"id": None}


class _Stream(io.TextIOBase):
    """sys.stdout / sys.stderr: every write becomes an event at once (flush per write)."""

    def __init__(self, name):
        self.name = name

    def writable(self):
        return True

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError("write() argument must be str, not %s" % type(s).__name__)
        if s:
            emit({"type": self.name, "id": _current["id"], "text": s})
        return len(s)

    def flush(self):
        pass

    def isatty(self):
        return False

    @property
    def encoding(self):
        return "utf-8"


# fd-level output (below sys.stdout) arrives through pipes read by one thread each.
_pending = [0]
_pending_cv = threading.Condition()


def _pump(rfd, name):
    while True:
        try:
            data = os.read(rfd, 65536)
        except InterruptedError:
            continue
        if not data:
            return
        emit({"type": name, "id": _current["id"], "text": data.decode("utf-8", "replace")})
        with _pending_cv:
            _pending[0] -= len(data)
            _pending_cv.notify_all()


_pipes = {}
for _fd, _name in ((1, "stdout"), (2, "stderr")):
    _r, _w = os.pipe()
    os.dup2(_w, _fd)
    os.close(_w)
    _pipes[_fd] = _r
    threading.Thread(target=_pump, args=(_r, _name), daemon=True).start()
sys.stdout = _Stream("stdout")
sys.stderr = _Stream("stderr")
sys.__stdout__ = sys.stdout
sys.__stderr__ = sys.stderr


def _drain_fd_output(timeout=0.5):
    """Wait (bounded) until the pump threads have sent what sits in the fd pipes."""
    import fcntl
    import termios

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = 0
        for r in _pipes.values():
            buf = bytearray(4)
            try:
                fcntl.ioctl(r, termios.FIONREAD, buf)
                waiting += int.from_bytes(buf, sys.byteorder)
            except OSError:
                pass
        if not waiting:
            return
        time.sleep(0.001)


# --- matplotlib: a lazy Agg backend whose show() sends the figures ----------------------------
_BACKEND = "soulbox_mpl_backend"


def _send_figures():
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    for num in plt.get_fignums():
        fig = plt.figure(num)
        buf = io.BytesIO()
        try:
            fig.savefig(buf, format="png", bbox_inches="tight")
        except Exception as e:  # a broken figure must not break the kernel
            emit({"type": "stderr", "id": _current["id"], "text": "figure %d: %s\n" % (num, e)})
            continue
        emit({"type": "result", "id": _current["id"], "is_main_result": False,
              "data": {"image/png": base64.b64encode(buf.getvalue()).decode("ascii"),
                       "text/plain": "<Figure size %dx%d with %d Axes>" % (
                           fig.bbox.width, fig.bbox.height, len(fig.axes))}})
    plt.close("all")


class _BackendFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name == _BACKEND:
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        from matplotlib.backends import backend_agg
        from matplotlib.backend_bases import FigureManagerBase

        module.__dict__.update({k: v for k, v in vars(backend_agg).items() if not k.startswith("__")})
        module.FigureCanvas = backend_agg.FigureCanvasAgg
        module.FigureManager = FigureManagerBase

        def show(*args, **kwargs):
            _send_figures()

        module.show = show


sys.meta_path.insert(0, _BackendFinder())
os.environ["MPLBACKEND"] = "module://" + _BACKEND
# Debian's matplotlib reads /etc/matplotlibrc, which a sandbox may not show: give it one.
if not os.environ.get("MATPLOTLIBRC") and not os.path.exists("/etc/matplotlibrc"):
    _rcdir = os.path.join(os.environ.get("TMPDIR", "/tmp"), ".soulbox-mpl-%d" % os.getpid())
    try:
        os.makedirs(_rcdir, exist_ok=True)
        with open(os.path.join(_rcdir, "matplotlibrc"), "w") as f:
            f.write("backend: Agg\n")
        os.environ["MATPLOTLIBRC"] = _rcdir
    except OSError:
        pass

# --- results ----------------------------------------------------------------------------------
_RICH = (("_repr_png_", "image/png"), ("_repr_jpeg_", "image/jpeg"), ("_repr_svg_", "image/svg+xml"),
         ("_repr_html_", "text/html"), ("_repr_markdown_", "text/markdown"),
         ("_repr_latex_", "text/latex"), ("_repr_json_", "application/json"),
         ("_repr_javascript_", "application/javascript"))


def _bundle(value):
    data = {"text/plain": repr(value)}
    for meth, mime in _RICH:
        f = getattr(value, meth, None)
        if f is None or not callable(f) or isinstance(value, type):
            continue
        try:
            r = f()
        except Exception:
            continue
        if isinstance(r, tuple):  # (data, metadata)
            r = r[0]
        if r is None:
            continue
        if isinstance(r, (bytes, bytearray)):
            r = base64.b64encode(bytes(r)).decode("ascii")
        elif mime == "application/json":
            pass
        elif not isinstance(r, str):
            r = str(r)
        data[mime] = r
    # A matplotlib figure as the last expression: its PNG.
    if type(value).__name__ == "Figure" and "matplotlib.figure" in sys.modules:
        buf = io.BytesIO()
        try:
            value.savefig(buf, format="png", bbox_inches="tight")
            data["image/png"] = base64.b64encode(buf.getvalue()).decode("ascii")
        except Exception:
            pass
    return data


# --- contexts ---------------------------------------------------------------------------------
class Context:
    def __init__(self, cid):
        self.id = cid
        self.reset()

    def reset(self):
        self.ns = {"__name__": "__main__", "__builtins__": builtins, "__doc__": None}
        self.count = 0


contexts = {"default": Context("default")}
_executing = [False]


def _on_sigint(signum, frame):
    # Idle: nothing to stop.  Executing: stop the user's code, keep the kernel.
    if _executing[0]:
        raise KeyboardInterrupt


signal.signal(signal.SIGINT, _on_sigint)


def _user_tb(exc):
    tb = exc.__traceback__
    # Drop the kernel's own frames: the first user frame is in a <cell-...> file.
    while tb is not None and not tb.tb_frame.f_code.co_filename.startswith("<cell-"):
        tb = tb.tb_next
    return tb


def execute(req):
    rid = req.get("id")
    cid = req.get("context_id") or "default"
    ctx = contexts.get(cid)
    if ctx is None:
        emit({"type": "error", "id": rid, "name": "ContextNotFound", "value": "no context %r" % cid,
              "traceback": []})
        emit({"type": "done", "id": rid, "execution_count": None})
        return
    code = req.get("code") or ""
    ctx.count += 1
    fname = "<cell-%s-%d>" % (cid, ctx.count)
    linecache.cache[fname] = (len(code), None, code.splitlines(True), fname)
    _current["id"] = rid
    _executing[0] = True
    try:
        try:
            tree = ast.parse(code, fname, "exec")
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                last = ast.Expression(tree.body.pop().value)
            exec(compile(tree, fname, "exec"), ctx.ns)
            if last is not None:
                value = eval(compile(last, fname, "eval"), ctx.ns)
                if value is not None:
                    ctx.ns["_"] = value
                    sys.stdout.flush()
                    emit({"type": "result", "id": rid, "is_main_result": True, "data": _bundle(value)})
        except BaseException as e:  # KeyboardInterrupt and SystemExit are the user's too
            if isinstance(e, SystemExit) and e.code in (None, 0):
                pass
            else:
                tb = _user_tb(e) if not isinstance(e, SyntaxError) else None
                lines = traceback.format_exception(type(e), e, tb)
                emit({"type": "error", "id": rid, "name": type(e).__name__, "value": str(e),
                      "traceback": "".join(lines).rstrip("\n").split("\n")})
        try:
            _send_figures()
        except BaseException as e:
            emit({"type": "stderr", "id": rid, "text": "figures: %s\n" % e})
    finally:
        _executing[0] = False
    _drain_fd_output()
    emit({"type": "done", "id": rid, "execution_count": ctx.count})


def handle(req):
    t = req.get("type")
    rid = req.get("id")
    if t == "execute":
        execute(req)
    elif t == "create_context":
        cid = req.get("context_id") or uuid.uuid4().hex
        if cid in contexts:
            emit({"type": "error", "id": rid, "name": "ContextExists", "value": cid, "traceback": []})
        else:
            contexts[cid] = Context(cid)
            cwd = req.get("cwd")
            if cwd:
                contexts[cid].ns["__cwd__"] = cwd
            emit({"type": "context", "id": rid, "context_id": cid})
    elif t in ("reset_context", "restart"):
        cid = req.get("context_id") or "default"
        if cid not in contexts:
            emit({"type": "error", "id": rid, "name": "ContextNotFound", "value": cid, "traceback": []})
        else:
            contexts[cid].reset()
            emit({"type": "context", "id": rid, "context_id": cid})
    elif t == "delete_context":
        cid = req.get("context_id")
        if cid not in contexts:
            emit({"type": "error", "id": rid, "name": "ContextNotFound", "value": str(cid), "traceback": []})
        else:
            del contexts[cid]
            if cid == "default":
                contexts["default"] = Context("default")
            emit({"type": "ok", "id": rid})
    elif t == "list_contexts":
        emit({"type": "contexts", "id": rid, "contexts": sorted(contexts)})
    elif t == "ping":
        emit({"type": "pong", "id": rid})
    elif t == "shutdown":
        emit({"type": "ok", "id": rid})
        os._exit(0)
    else:
        emit({"type": "error", "id": rid, "name": "BadRequest", "value": "unknown type %r" % (t,),
              "traceback": []})


def main():
    emit({"type": "ready", "language": "python", "protocol": PROTOCOL,
          "version": sys.version.split()[0], "pid": os.getpid()})
    while True:
        try:
            line = _req.readline()
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
    os._exit(0)


if __name__ == "__main__":
    main()
