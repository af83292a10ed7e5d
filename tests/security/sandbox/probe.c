/*
 * probe.c: the hostile program of the security suite.  `probe NAME` attempts one dangerous
 * operation and prints "NAME ok" if it succeeded or "NAME errno=E" (the errno name) if the
 * kernel refused it; some probes are expected to be killed instead (int80, x32).  Built on
 * the host, carried into the sandbox by the suite (base64 in a bash program).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/keyctl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/timex.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static int
report(const char *name, long rc)
{
    if (rc >= 0)
        printf("%s ok\n", name);
    else
        printf("%s errno=%s\n", name, strerrorname_np(errno));
    fflush(stdout);
    return 0;
}

int
main(int argc, char **argv)
{
    const char *n = argc > 1 ? argv[1] : "";
    errno = 0;
    if (!strcmp(n, "int80")) {
        /* getpid through the i386 ABI: must be killed by the filter, not answered */
        long r;
        __asm__ volatile("int $0x80" : "=a"(r) : "a"(20) : "memory");
        return report(n, r < 0 ? (errno = (int)-r, -1) : r);
    }
    if (!strcmp(n, "x32"))
        return report(n, syscall(0x40000000 | SYS_getpid));
    if (!strcmp(n, "unshare_user"))
        return report(n, unshare(CLONE_NEWUSER));
    if (!strcmp(n, "unshare_ns"))
        return report(n, unshare(CLONE_NEWNS));
    if (!strcmp(n, "clone_newuser")) {
        long r = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
        if (r == 0)
            _exit(0);
        if (r > 0)
            waitpid((pid_t)r, NULL, 0);
        return report(n, r);
    }
    if (!strcmp(n, "clone3"))
        return report(n, syscall(435, NULL, 0));
    if (!strcmp(n, "setns")) {
        int fd = open("/proc/self/ns/net", O_RDONLY);
        return report(n, setns(fd, 0));
    }
    if (!strcmp(n, "mount"))
        return report(n, mount("none", "/tmp", "tmpfs", 0, NULL));
    if (!strcmp(n, "umount"))
        return report(n, umount2("/proc", MNT_DETACH));
    if (!strcmp(n, "pivot_root"))
        return report(n, syscall(SYS_pivot_root, "/tmp", "/tmp"));
    if (!strcmp(n, "chroot"))
        return report(n, chroot("/tmp"));
    if (!strcmp(n, "fsopen"))
        return report(n, syscall(430, "tmpfs", 0));
    if (!strcmp(n, "open_tree"))
        return report(n, syscall(428, AT_FDCWD, "/tmp", 1));
    if (!strcmp(n, "move_mount"))
        return report(n, syscall(429, -1, "", AT_FDCWD, "/tmp", 0));
    if (!strcmp(n, "ptrace_init"))
        return report(n, ptrace(PTRACE_ATTACH, 1, 0, 0));
    if (!strcmp(n, "ptrace_traceme"))
        return report(n, ptrace(PTRACE_TRACEME, 0, 0, 0));
    if (!strcmp(n, "process_vm_readv"))
        return report(n, syscall(SYS_process_vm_readv, 1, NULL, 0, NULL, 0, 0));
    if (!strcmp(n, "keyctl"))
        return report(n, syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, 0));
    if (!strcmp(n, "add_key"))
        return report(n, syscall(SYS_add_key, "user", "x", "y", 1, KEY_SPEC_SESSION_KEYRING));
    if (!strcmp(n, "bpf"))
        return report(n, syscall(SYS_bpf, 0, NULL, 0));
    if (!strcmp(n, "perf_event_open")) {
        unsigned char attr[128] = {0};
        attr[0] = 1;                       /* type = PERF_TYPE_SOFTWARE */
        *(unsigned *)(attr + 4) = 128;     /* size */
        return report(n, syscall(SYS_perf_event_open, attr, 0, -1, -1, 0));
    }
    if (!strcmp(n, "userfaultfd"))
        return report(n, syscall(SYS_userfaultfd, 0));
    if (!strcmp(n, "io_uring_setup")) {
        unsigned char params[120] = {0};
        return report(n, syscall(425, 4, params));
    }
    if (!strcmp(n, "init_module"))
        return report(n, syscall(SYS_init_module, NULL, 0, ""));
    if (!strcmp(n, "finit_module"))
        return report(n, syscall(SYS_finit_module, 0, "", 0));
    if (!strcmp(n, "kexec_load"))
        return report(n, syscall(SYS_kexec_load, 0, 0, NULL, 0));
    if (!strcmp(n, "reboot"))
        return report(n, syscall(SYS_reboot, 0xfee1dead, 672274793, 0x1234567, NULL));
    if (!strcmp(n, "swapon"))
        return report(n, syscall(SYS_swapon, "/tmp/x", 0));
    if (!strcmp(n, "acct"))
        return report(n, syscall(SYS_acct, NULL));
    if (!strcmp(n, "quotactl"))
        return report(n, syscall(SYS_quotactl, 0, "/", 0, NULL));
    if (!strcmp(n, "settimeofday")) {
        struct timeval tv = {1, 0};
        return report(n, settimeofday(&tv, NULL));
    }
    if (!strcmp(n, "clock_settime")) {
        struct timespec ts = {1, 0};
        return report(n, clock_settime(CLOCK_REALTIME, &ts));
    }
    if (!strcmp(n, "adjtimex")) {
        struct timex tx = {0};
        tx.modes = ADJ_OFFSET;
        return report(n, adjtimex(&tx));
    }
    if (!strcmp(n, "socket_packet"))
        return report(n, socket(17 /* AF_PACKET */, SOCK_RAW, 0));
    if (!strcmp(n, "socket_raw"))
        return report(n, socket(AF_INET, SOCK_RAW, 1));
    if (!strcmp(n, "socket_raw6"))
        return report(n, socket(AF_INET6, SOCK_RAW, 58));
    if (!strcmp(n, "socket_vsock"))
        return report(n, socket(40 /* AF_VSOCK */, SOCK_STREAM, 0));
    if (!strcmp(n, "tiocsti")) {
        char c = 'x';
        int fd = open("/dev/tty", O_RDWR);
        if (fd < 0)
            fd = 0;
        return report(n, ioctl(fd, TIOCSTI, &c));
    }
    if (!strcmp(n, "tiocsti_hi")) {
        char c = 'x';
        return report(n, syscall(SYS_ioctl, 0, 0x100000000UL | TIOCSTI, &c));
    }
    if (!strcmp(n, "mlock")) {
        static char buf[1 << 20];
        return report(n, mlock(buf, sizeof buf));
    }
    if (!strcmp(n, "mlockall"))
        return report(n, mlockall(MCL_CURRENT));
    if (!strcmp(n, "kill_init"))
        return report(n, kill(1, SIGKILL));
    if (!strcmp(n, "kill_all")) {
        long r = kill(-1, SIGKILL); /* kills ourselves too, if allowed */
        return report(n, r);
    }
    if (!strcmp(n, "personality"))
        return report(n, syscall(SYS_personality, 0x0040000 /* ADDR_NO_RANDOMIZE */));
    if (!strcmp(n, "sethostname"))
        return report(n, sethostname("evil", 4));
    if (!strcmp(n, "mknod"))
        return report(n, mknod("/tmp/mem", S_IFCHR | 0600, makedev(1, 1)));
    if (!strcmp(n, "setuid0"))
        return report(n, setuid(0));
    fprintf(stderr, "unknown probe %s\n", n);
    return 2;
}
