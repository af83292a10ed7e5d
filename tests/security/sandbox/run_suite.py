#!/usr/bin/env python3
"""Hostile-program suite: each case runs a program through a real sandbox with
`soulbox run --json` (sb_run), asserts the outcome, then checks the host: no process of the
sandbox's uids, no cgroup, no state dir left by that run.

usage: run_suite.py --sb-run PATH --probe PATH (--list | --case NAME | --all)
"""
import argparse, base64, json, os, subprocess, sys, time

ARGS = None
PROBE_B64 = None


def sb(code, runtime="bash", flags=(), timeout=120):
    """Run code in a fresh sandbox; return (result dict, exit status, runner pid)."""
    p = subprocess.Popen([ARGS.sb_run, "--json", "-r", runtime, *flags, "-"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(code.encode(), timeout=timeout)
    try:
        res = json.loads(out.decode().strip().splitlines()[-1])
    except Exception:
        raise AssertionError("no JSON result (rc=%d): %r %r" % (p.returncode, out[-500:], err[-500:]))
    check_host(res, p.pid)
    return res, p.returncode


def check_host(res, runner_pid):
    uid = res["sandbox"]["host_uid"]
    cg = res["sandbox"]["cgroup"]
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/status" % pid) as f:
                for line in f:
                    if line.startswith("Uid:"):
                        u = int(line.split()[1])
                        assert u not in (uid, uid + 1), "stray process %s of sandbox uid %d" % (pid, u)
        except FileNotFoundError:
            pass
    for base in ("/sys/fs/cgroup/soulbox", "/sys/fs/cgroup/memory/soulbox", "/sys/fs/cgroup/pids/soulbox",
                 "/sys/fs/cgroup/cpu/soulbox", "/sys/fs/cgroup/cpuacct/soulbox", "/sys/fs/cgroup/freezer/soulbox"):
        assert not os.path.isdir(os.path.join(base, cg)), "cgroup %s/%s left behind" % (base, cg)
    slot = cg.split("-", 1)[1]
    owner = "/run/soulbox/sandboxes/%s/owner" % slot
    if os.path.exists(owner):
        with open(owner) as f:
            assert int(f.read().split()[0]) != runner_pid, "state dir of slot %s left behind" % slot


def probe(names, flags=()):
    """Run the probe binary for each name; return {name: 'ok' | 'errno=E' | 'exit=N'}."""
    lines = ["base64 -d > /tmp/probe <<'EOF'", PROBE_B64, "EOF", "chmod +x /tmp/probe"]
    for n in names:
        lines.append("/tmp/probe %s || echo \"%s exit=$?\"" % (n, n))
    res, _ = sb("\n".join(lines) + "\n", flags=flags)
    got = {}
    for line in res["stdout"].splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in names:
            got.setdefault(parts[0], parts[1])
    return got, res


def expect_eperm(*names):
    def case():
        got, res = probe(names)
        for n in names:
            assert got.get(n) == "errno=EPERM", "%s: %s (stderr %r)" % (n, got.get(n), res["stderr"][-300:])
    return case


def expect_status(code, runtime, status, flags=(), check=None):
    def case():
        res, rc = sb(code, runtime, flags)
        st = status if isinstance(status, tuple) else (status,)
        assert res["status"] in st, "status %s, want %s; stdout %r stderr %r" % (
            res["status"], st, res["stdout"][-300:], res["stderr"][-300:])
        if check:
            check(res)
    return case


def out_has(*words):
    def check(res):
        for w in words:
            assert w in res["stdout"], "%r not in stdout %r (stderr %r)" % (w, res["stdout"][-500:], res["stderr"][-300:])
    return check


def persistence():
    res, _ = sb("echo secret > /tmp/m; echo secret > /home/user/m; echo s > /dev/shm/m\n"
                "(setsid sleep 1000 >/dev/null 2>&1 &)\necho planted\n")
    assert "planted" in res["stdout"], res
    res, _ = sb("ls /tmp/m /home/user/m /dev/shm/m 2>&1; ps -eo comm | grep -c sleep || true\n")
    assert res["stdout"].count("No such file") == 3, res["stdout"]
    assert res["stdout"].strip().endswith("0"), res["stdout"]


PY_WRITE_UNTIL = """
import errno, os, sys
path = sys.argv[1] if len(sys.argv) > 1 else %r
n = 0
try:
    with open(path, "wb") as f:
        while n < (4 << 30):
            f.write(b"x" * (1 << 20)); f.flush(); n += 1 << 20
    print("wrote all", n)
except OSError as e:
    print("stopped", errno.errorcode[e.errno], n)
"""

CASES = {
    # Resource exhaustion
    "fork_bomb": expect_status(":(){ :|:& };:\n", "bash", ("exited", "signaled", "timeout"),
                               ("--timeout", "5000", "--pids", "64")),
    "fork_bomb_python": expect_status(
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
        "python", ("timeout", "signaled", "memory_limit"), ("--timeout", "3000", "--pids", "64")),
    "thread_bomb": expect_status(
        "import threading, time\nn=0\ntry:\n    while True:\n        threading.Thread(target=time.sleep, args=(100,), daemon=True).start(); n+=1\n"
        "except RuntimeError as e:\n    print('limited', n, flush=True)\nimport os; os._exit(0)\n",
        "python", "exited", ("--pids", "64", "--timeout", "10000"), out_has("limited")),
    "memory_bomb": expect_status("x=[]\nwhile True:\n    x.append(bytearray(16<<20))\n", "python",
                                 "memory_limit", ("--memory", "128")),
    "shm_fill": expect_status(PY_WRITE_UNTIL % "/dev/shm/f", "python", "exited", ("--memory", "512"),
                              out_has("stopped ENOSPC")),
    "tmp_fill": expect_status(PY_WRITE_UNTIL % "/tmp/f", "python", "exited", ("--disk", "32", "--memory", "512"),
                              lambda r: (out_has("stopped")(r), None)),
    "home_fill": expect_status(PY_WRITE_UNTIL % "/home/user/f", "python", "exited", ("--disk", "32", "--memory", "512"),
                               lambda r: (out_has("stopped")(r), None)),
    "inode_exhaustion": expect_status(
        "import os,errno\nn=0\ntry:\n    while n < 10**7:\n        open('/tmp/f%d'%n,'w').close(); n+=1\n"
        "except OSError as e:\n    print('stopped', errno.errorcode[e.errno], n)\n",
        "python", "exited", ("--timeout", "60000", "--memory", "512"), out_has("stopped ENOSPC")),
    "endless_output": expect_status("yes\n", "bash", "output_limit", ("--output", "65536"),
                                    lambda r: assert_(r["stdout_truncated"] and len(r["stdout"]) == 65536, r)),
    "endless_stderr": expect_status("while True: print('e'*100, file=__import__('sys').stderr)\n", "python",
                                    "output_limit", ("--output", "10000"),
                                    lambda r: assert_(r["stderr_truncated"], r)),
    "cpu_spin": expect_status("while True: pass\n", "python", "cpu_limit", ("--cpu-time", "1000", "--timeout", "20000"),
                              lambda r: assert_(r["cpu_time_ms"] >= 1000, r)),
    "multicore_burn": expect_status(
        "import multiprocessing as m\ndef f():\n    while True: pass\nps=[m.Process(target=f) for _ in range(4)]\n"
        "[p.start() for p in ps]\n[p.join() for p in ps]\n",
        "python", "cpu_limit", ("--cpu-time", "1500", "--timeout", "30000"),
        lambda r: assert_(r["cpu_time_ms"] >= 1500, r)),
    "sleep_forever": expect_status("sleep 100000\n", "bash", "timeout", ("--timeout", "1000")),
    "stdin_forever": expect_status("import sys\nprint(len(sys.stdin.read()))\n", "python", "exited",
                                   ("--timeout", "10000",), out_has("0")),
    "daemons_survive": expect_status(
        "(setsid sleep 1000 >/dev/null 2>&1 &)\nnohup sleep 1000 >/dev/null 2>&1 &\n"
        "python3 -c 'import os\nif os.fork()==0:\n    os.setsid()\n    if os.fork()==0:\n        import time; time.sleep(1000)\n'\necho started\n",
        "bash", "exited", (), out_has("started")),
    "zombie_storm": expect_status(
        "import os\nfor i in range(200):\n    if os.fork()==0: os._exit(0)\nprint('done')\n",
        "python", "exited", ("--pids", "512"), out_has("done")),
    "fd_exhaustion": expect_status(
        "import errno\nfs=[]\ntry:\n    while True: fs.append(open('/dev/null'))\nexcept OSError as e:\n    print(errno.errorcode[e.errno], len(fs))\n",
        "python", "exited", (), lambda r: (out_has("EMFILE")(r), assert_(int(r["stdout"].split()[1]) < 1024, r))),
    "mlock": expect_eperm("mlock", "mlockall"),
    "big_file_fsize": expect_status(PY_WRITE_UNTIL % "/home/user/big", "python", ("exited", "signaled"),
                                    ("--disk", "16", "--memory", "512")),
    # Network
    "net_tcp": expect_status("import socket\ntry:\n    socket.create_connection(('1.1.1.1', 80), timeout=2)\n    print('connected')\nexcept OSError as e:\n    print('refused', e.errno)\n",
                             "python", "exited", (), out_has("refused 101")),
    "net_udp": expect_status("import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ntry:\n    s.sendto(b'x', ('8.8.8.8', 53)); print('sent')\nexcept OSError as e:\n    print('refused', e.errno)\n",
                             "python", "exited", (), out_has("refused 101")),
    "net_dns": expect_status("import socket\ntry:\n    print(socket.getaddrinfo('example.com', 80)); print('resolved')\nexcept OSError as e:\n    print('failed')\n",
                             "python", "exited", ("--timeout", "20000"), out_has("failed")),
    "raw_sockets": expect_eperm("socket_raw", "socket_raw6", "socket_packet"),
    "vsock": expect_eperm("socket_vsock"),
    # Host secrets and filesystem
    "read_etc_shadow": expect_status("cat /etc/shadow /etc/gshadow 2>&1; ls /root 2>&1; cat /etc/passwd\n", "bash", "exited", (),
                                     lambda r: (out_has("No such file")(r), assert_("daemon:" not in r["stdout"] and "sshd" not in r["stdout"], r))),
    "server_files_env": expect_status(
        "ls /work /run /var /opt /srv /home 2>&1; env; cat /proc/1/environ 2>&1; ls /proc/1/fd 2>&1; echo end\n", "bash", "exited", (),
        lambda r: (out_has("end", "cannot access '/work'")(r),
                   assert_("SOULBOX" not in r["stdout"] and "JWT" not in r["stdout"] and "/work/main" not in r["stdout"], r))),
    "write_usr_etc": expect_status("for f in /usr/bin/python3 /etc/passwd /bin/sh /newfile /lib/x; do (echo x > $f) 2>&1; done; echo end\n", "bash", "exited", (),
                                   lambda r: assert_(r["stdout"].count("Read-only file system") == 5, r)),
    "hardlink_host_file": expect_status("ln /usr/bin/su /tmp/su 2>&1; ln /etc/passwd /home/user/p 2>&1; echo end\n", "bash", "exited", (),
                                        lambda r: assert_(r["stdout"].count("Invalid cross-device link") == 2, r)),
    "proc_host_pids": expect_status("ls /proc | grep -c '^[0-9]'; cat /proc/1/cmdline | tr '\\0' ' '; echo\n", "bash", "exited", (),
                                    lambda r: (out_has("soulbox-init")(r), assert_(int(r["stdout"].split()[0]) < 10, r))),
    "proc_sysrq_sys": expect_status("(echo c > /proc/sysrq-trigger) 2>&1; (echo 1 > /proc/sys/kernel/sysrq) 2>&1; (echo 0 > /proc/sys/vm/overcommit_memory) 2>&1; echo end\n",
                                    "bash", "exited", (), lambda r: assert_(r["stdout"].count("Read-only file system") + r["stdout"].count("Permission denied") + r["stdout"].count("No such file") >= 3, r)),
    "proc_kallsyms": expect_status("head -3 /proc/kallsyms 2>&1; ls /sys 2>&1; echo end\n", "bash", "exited", (),
                                   lambda r: assert_(all(l.startswith("0000000000000000") or "kallsyms" in l or "No such" in l or l == "end" or l == "" for l in r["stdout"].splitlines()), r)),
    "dev_mem_and_friends": expect_status("ls /dev; for d in /dev/mem /dev/kmem /dev/kmsg /dev/kvm /dev/vda /dev/uinput /dev/port; do test -e $d && echo PRESENT $d; done; echo end\n",
                                         "bash", "exited", (), lambda r: assert_("PRESENT" not in r["stdout"], r)),
    "core_dump": expect_status("ulimit -c; python3 -c 'import os; os.abort()'; ls -a /home/user /tmp; echo end\n", "bash", "exited", (),
                               lambda r: (out_has("end")(r), assert_("core" not in r["stdout"].replace("ulimit", ""), r), assert_(r["stdout"].startswith("0"), r))),
    "setuid_binaries": expect_status("su root -c id 2>&1; /usr/bin/newgrp 2>&1; mount -t tmpfs x /tmp 2>&1; id -u\n", "bash", "exited", (),
                                     lambda r: assert_(r["stdout"].strip().endswith("1000") and "uid=0" not in r["stdout"], r)),
    # Kernel attack surface
    "ptrace": expect_eperm("ptrace_init", "ptrace_traceme", "process_vm_readv"),
    "mount_family": expect_eperm("mount", "umount", "pivot_root", "chroot", "fsopen", "open_tree", "move_mount"),
    "nested_userns": lambda: (expect_eperm("unshare_user", "unshare_ns", "clone_newuser", "setns")(),
                              assert_(probe(["clone3"])[0].get("clone3") == "errno=ENOSYS", "clone3")),
    "keyctl": expect_eperm("keyctl", "add_key"),
    "bpf": expect_eperm("bpf"),
    "perf_event_open": expect_eperm("perf_event_open"),
    "userfaultfd": expect_eperm("userfaultfd"),
    "io_uring": expect_eperm("io_uring_setup"),
    "modules_kexec_reboot": expect_eperm("init_module", "finit_module", "kexec_load", "reboot", "swapon", "acct", "quotactl"),
    "clock_change": expect_eperm("settimeofday", "clock_settime", "adjtimex"),
    "identity": expect_eperm("sethostname", "mknod", "setuid0", "personality"),
    "tiocsti": expect_eperm("tiocsti", "tiocsti_hi"),
    "int80_x32": lambda: assert_(probe(["int80", "x32"])[0] == {"int80": "exit=159", "x32": "exit=159"}, "int80/x32 not killed by SIGSYS"),
    "kill_init": lambda: assert_(probe(["kill_init", "mlock"])[0].get("mlock") == "errno=EPERM", "sandbox died after kill(1)"),
    "kill_all": expect_status("sleep 1000 &\nkill -9 -1\necho survived\n", "bash", ("signaled", "exited")),
    "persistence_next_sandbox": persistence,
}


def assert_(cond, msg):
    if not cond:
        raise AssertionError(msg if isinstance(msg, str) else json.dumps(msg)[:800])


def main():
    global ARGS, PROBE_B64
    ap = argparse.ArgumentParser()
    ap.add_argument("--sb-run")
    ap.add_argument("--probe")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--case")
    ap.add_argument("--all", action="store_true")
    ARGS = ap.parse_args()
    if ARGS.list:
        print(";".join(CASES))
        return 0
    with open(ARGS.probe, "rb") as f:
        PROBE_B64 = base64.b64encode(f.read()).decode()
    names = list(CASES) if ARGS.all else [ARGS.case]
    failed = 0
    for n in names:
        t0 = time.time()
        try:
            CASES[n]()
            print("ok %s (%.1fs)" % (n, time.time() - t0))
        except Exception as e:
            failed += 1
            print("FAIL %s: %s" % (n, e))
        sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
