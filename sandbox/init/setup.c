/*
 * setup.c: everything soulbox-init does, as root of its fresh user namespace, before it
 * serves: a new root filesystem, the network loopback, the hostname, then the irreversible
 * privilege drop (bounding set, uid/gid 1000, no_new_privs, seccomp).
 *
 * The new root is a small tmpfs mounted on a host directory that exists only to be a mount
 * point (the mount is private to this namespace), filled with:
 *   /usr /lib /lib64 /lib32 /bin /sbin  read-only binds of the host's (or the host's
 *                                       merged-/usr symlinks, copied as symlinks)
 *   /etc   generated passwd/group/hosts/resolv.conf/nsswitch.conf/hostname, plus read-only
 *          binds of ld.so.cache and alternatives, which the dynamic linker and Debian's
 *          /usr/bin links need, and of the few runtime configuration paths outside /usr
 *          (setup_host_extra: /etc/java-17-openjdk, /etc/R, /etc/matplotlibrc,
 *          /var/lib/ghc), each only when the host has it
 *   /dev   tmpfs with binds of null zero full random urandom tty, devpts (newinstance),
 *          /dev/shm tmpfs (size-capped), the usual symlinks; read-only after setup
 *   /proc  a new procfs (our pid namespace only), /proc/sys read-only, a few entries masked
 *   /tmp /home/user  size- and inode-capped tmpfs (the sandbox's disk)
 * then pivot_root into it, detach the old root, and make / read-only.
 *
 * Invariant: when sbi_setup returns 0 the process has uid/gid 1000, no capabilities in any
 * set (bounding included), no_new_privs, and the seccomp filter installed; nothing of the
 * host's filesystem is reachable except the read-only binds above.
 */
#include "init.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The seccomp policy of seccomp_policy.c, compiled to BPF at build time. */
#include "seccomp_bpf.inc"

#define TRY(step, expr)                                                                            \
    do {                                                                                           \
        if ((expr) < 0) {                                                                          \
            *what = (step);                                                                        \
            return -errno;                                                                         \
        }                                                                                          \
    } while (0)

static char setup_path_buf[4096];

static const char *
setup_path(const char *root, const char *rel)
{
    snprintf(setup_path_buf, sizeof setup_path_buf, "%s%s", root, rel);
    return setup_path_buf;
}

/* Read-only bind that keeps the flags the kernel locks on mounts inherited from a more
 * privileged namespace (nosuid, nodev, noexec, atime): dropping one would fail with EPERM. */
static int
setup_bind_ro(const char *src, const char *dst, unsigned long extra)
{
    struct statvfs sv;
    if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) < 0)
        return -1;
    if (statvfs(dst, &sv) < 0)
        return -1;
    unsigned long fl = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | extra;
    if (sv.f_flag & ST_NODEV)
        fl |= MS_NODEV;
    if (sv.f_flag & ST_NOEXEC)
        fl |= MS_NOEXEC;
    if (sv.f_flag & ST_NOATIME)
        fl |= MS_NOATIME;
    if (sv.f_flag & ST_NODIRATIME)
        fl |= MS_NODIRATIME;
    if (sv.f_flag & ST_RELATIME)
        fl |= MS_RELATIME;
    return mount(NULL, dst, NULL, fl, NULL);
}

static int
setup_write_file(const char *path, const char *content, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return -1;
    size_t n = strlen(content);
    ssize_t w = write(fd, content, n);
    close(fd);
    return w == (ssize_t)n ? 0 : -1;
}

static int
setup_touch(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return -1;
    close(fd);
    return 0;
}

/* A host top-level path: a symlink is recreated as the same symlink (merged /usr), a
 * directory becomes a read-only bind, a missing one is skipped. */
static int
setup_host_dir(const char *root, const char *name)
{
    char host[64], dst[4096], target[4096];
    struct stat st;
    snprintf(host, sizeof host, "/%s", name);
    snprintf(dst, sizeof dst, "%s/%s", root, name);
    if (lstat(host, &st) < 0)
        return errno == ENOENT ? 0 : -1;
    if (S_ISLNK(st.st_mode)) {
        ssize_t n = readlink(host, target, sizeof target - 1);
        if (n < 0)
            return -1;
        target[n] = 0;
        return symlink(target, dst);
    }
    if (!S_ISDIR(st.st_mode))
        return 0;
    if (mkdir(dst, 0755) < 0)
        return -1;
    return setup_bind_ro(host, dst, MS_NODEV);
}

/* Host paths bound read-only into every sandbox when they exist (see setup_etc).  A path that
 * is added here must hold configuration only: nothing secret, nothing writable. */
static const char *const setup_host_extra[] = {
    "/etc/ld.so.cache",
    "/etc/alternatives",
    "/etc/java-17-openjdk", /* java: java.security, jvm.cfg (linked from /usr/lib/jvm) */
    "/etc/R",               /* R: Renviron, ldpaths (linked from /usr/lib/R/etc) */
    "/etc/matplotlibrc",    /* matplotlib: Debian's default backend and paths */
    "/var/lib/ghc",         /* haskell: GHC's package database */
};

/* mkdir -p of path's parents below root (all inside the new root's tmpfs). */
static int
setup_mkdirs(const char *root, const char *path)
{
    char p[4096];
    int n = snprintf(p, sizeof p, "%s%s", root, path);
    if (n < 0 || (size_t)n >= sizeof p)
        return -1;
    for (char *c = p + strlen(root) + 1; (c = strchr(c, '/')); c++) {
        *c = 0;
        if (mkdir(p, 0755) < 0 && errno != EEXIST)
            return -1;
        *c = '/';
    }
    return 0;
}

/* Bind host path (a directory or a file; followed if a symlink) read-only at the same place
 * in the new root; a path the host does not have is skipped. */
static int
setup_bind_extra(const char *root, const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return errno == ENOENT || errno == ENOTDIR ? 0 : -1;
    if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
        return 0;
    if (setup_mkdirs(root, path) < 0)
        return -1;
    const char *dst = setup_path(root, path);
    if (S_ISDIR(st.st_mode) ? mkdir(dst, 0755) < 0 && errno != EEXIST : setup_touch(dst) < 0)
        return -1;
    return setup_bind_ro(path, dst, MS_NODEV);
}

static int
setup_etc(const char *root, const sbi_config_t *c)
{
    char buf[512];
    if (mkdir(setup_path(root, "/etc"), 0755) < 0)
        return -1;
    if (setup_write_file(setup_path(root, "/etc/passwd"),
                         "root:x:0:0:root:/root:/bin/sh\n"
                         "user:x:1000:1000:user:/home/user:/bin/bash\n"
                         "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
                         0644) < 0 ||
        setup_write_file(setup_path(root, "/etc/group"),
                         "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n", 0644) < 0 ||
        setup_write_file(setup_path(root, "/etc/nsswitch.conf"),
                         "passwd: files\ngroup: files\nhosts: files dns\n", 0644) < 0 ||
        setup_write_file(setup_path(root, "/etc/resolv.conf"), "nameserver 127.0.0.1\n",
                         0644) < 0)
        return -1;
    snprintf(buf, sizeof buf, "127.0.0.1 localhost %s\n::1 localhost ip6-localhost\n",
             c->hostname);
    if (setup_write_file(setup_path(root, "/etc/hosts"), buf, 0644) < 0)
        return -1;
    snprintf(buf, sizeof buf, "%s\n", c->hostname);
    if (setup_write_file(setup_path(root, "/etc/hostname"), buf, 0644) < 0)
        return -1;
    /* Read-only host paths that programs and runtimes need, each only if the host has it:
     * the dynamic linker's cache, Debian's alternatives links (/usr/bin/java and friends
     * resolve through them) and runtime configuration that lives outside /usr. */
    for (size_t i = 0; i < sizeof setup_host_extra / sizeof setup_host_extra[0]; i++)
        if (setup_bind_extra(root, setup_host_extra[i]) < 0)
            return -1;
    return 0;
}

static int
setup_dev(const char *root, const sbi_config_t *c)
{
    static const char *const nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};
    char opts[128], dst[4096], src[64];
    if (mkdir(setup_path(root, "/dev"), 0755) < 0 ||
        mount("tmpfs", setup_path(root, "/dev"), "tmpfs", MS_NOSUID | MS_NOEXEC,
              "size=64k,nr_inodes=64,mode=0755") < 0)
        return -1;
    for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
        snprintf(src, sizeof src, "/dev/%s", nodes[i]);
        snprintf(dst, sizeof dst, "%s/dev/%s", root, nodes[i]);
        if (access(src, F_OK) < 0)
            continue;
        /* Device nodes cannot be created in a user namespace; bind the host's. */
        if (setup_touch(dst) < 0 || mount(src, dst, NULL, MS_BIND, NULL) < 0)
            return -1;
    }
    if (mkdir(setup_path(root, "/dev/pts"), 0755) < 0 ||
        mount("devpts", setup_path(root, "/dev/pts"), "devpts", MS_NOSUID | MS_NOEXEC,
              "newinstance,ptmxmode=0666,mode=0620") < 0)
        return -1;
    snprintf(opts, sizeof opts, "size=%llum,nr_inodes=%llu,mode=1777",
             (unsigned long long)c->shm_mb, (unsigned long long)c->inodes);
    if (mkdir(setup_path(root, "/dev/shm"), 0755) < 0 ||
        mount("shm", setup_path(root, "/dev/shm"), "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
        return -1;
    if (symlink("pts/ptmx", setup_path(root, "/dev/ptmx")) < 0 ||
        symlink("/proc/self/fd", setup_path(root, "/dev/fd")) < 0 ||
        symlink("/proc/self/fd/0", setup_path(root, "/dev/stdin")) < 0 ||
        symlink("/proc/self/fd/1", setup_path(root, "/dev/stdout")) < 0 ||
        symlink("/proc/self/fd/2", setup_path(root, "/dev/stderr")) < 0)
        return -1;
    return 0;
}

static int
setup_proc(const char *root)
{
    static const char *const masked[] = {"/proc/sysrq-trigger", "/proc/kcore", "/proc/kmsg",
                                         "/proc/timer_list", "/proc/keys", "/proc/latency_stats",
                                         "/proc/sched_debug"};
    char dst[4096];
    if (mkdir(setup_path(root, "/proc"), 0555) < 0 ||
        mount("proc", setup_path(root, "/proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return -1;
    snprintf(dst, sizeof dst, "%s/proc/sys", root);
    if (setup_bind_ro(dst, dst, MS_NODEV | MS_NOEXEC) < 0)
        return -1;
    for (size_t i = 0; i < sizeof masked / sizeof masked[0]; i++) {
        snprintf(dst, sizeof dst, "%s%s", root, masked[i]);
        if (access(dst, F_OK) < 0)
            continue;
        /* read-only, so `echo c > /proc/sysrq-trigger` fails instead of writing to null */
        if (mount("/dev/null", dst, NULL, MS_BIND, NULL) < 0 ||
            mount(NULL, dst, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC, NULL) < 0)
            return -1;
    }
    return 0;
}

static int
setup_workspace(const char *root, const sbi_config_t *c)
{
    char opts[160];
    snprintf(opts, sizeof opts, "size=%llum,nr_inodes=%llu,mode=1777",
             (unsigned long long)c->disk_mb, (unsigned long long)c->inodes);
    if (mkdir(setup_path(root, "/tmp"), 0755) < 0 ||
        mount("tmp", setup_path(root, "/tmp"), "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
        return -1;
    snprintf(opts, sizeof opts, "size=%llum,nr_inodes=%llu,mode=0755,uid=%d,gid=%d",
             (unsigned long long)c->disk_mb, (unsigned long long)c->inodes, SB_INIT_UID,
             SB_INIT_GID);
    if (mkdir(setup_path(root, "/home"), 0755) < 0 ||
        mkdir(setup_path(root, "/home/user"), 0755) < 0 ||
        mount("home", setup_path(root, "/home/user"), "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
        return -1;
    if (mkdir(setup_path(root, "/root"), 0700) < 0)
        return -1;
    return 0;
}

static int
setup_loopback(void)
{
    struct ifreq ifr;
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -1;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    int rc = ioctl(s, SIOCGIFFLAGS, &ifr);
    /* A namespace the executor prepared ahead comes with lo up, and is owned by the host's
     * user namespace: we could not change it, and need not. */
    if (rc == 0 && !(ifr.ifr_flags & IFF_UP)) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        rc = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    close(s);
    return rc;
}

static int
setup_drop_privileges(void)
{
    /* Bounding set first (needs CAP_SETPCAP, which we still hold), then the identity
     * change, which clears permitted/effective/ambient because we are not keeping caps. */
    for (int cap = 0; cap <= 63; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
            return -1;
    if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
        return -1;
    if (setgroups(0, NULL) < 0 || setresgid(SB_INIT_GID, SB_INIT_GID, SB_INIT_GID) < 0 ||
        setresuid(SB_INIT_UID, SB_INIT_UID, SB_INIT_UID) < 0)
        return -1;
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof d);
    if (syscall(SYS_capset, &h, d) < 0)
        return -1;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return -1;
    /* Not dumpable: user code (same uid) cannot open /proc/1/mem, /proc/1/fd or ptrace us. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        return -1;
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

/* Load the precompiled policy (see seccomp_policy.h): the same program libseccomp's
 * seccomp_load() would install, with the same flags (none), without compiling it again in
 * every sandbox.  no_new_privs is set already; setting it again is what seccomp_load does. */
static int
setup_seccomp(void)
{
    struct sock_fprog prog = {SB_SECCOMP_BPF_LEN, (struct sock_filter *)sb_seccomp_bpf};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0)
        return -1;
    return 0;
}

int
sbi_setup(const sbi_config_t *c, const char **what)
{
    const char *root = c->rootdir;
    static const char *const host_dirs[] = {"usr", "bin", "sbin", "lib", "lib64", "lib32"};
    struct rlimit zero = {0, 0};

    /* The cgroup namespace is created here, not at clone(): the executor moves us into the
     * sandbox's cgroup after clone(), and the namespace root is fixed at creation. */
    TRY("unshare-cgroup", unshare(CLONE_NEWCGROUP));
    TRY("make-private", mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL));
    TRY("root-tmpfs", mount("sbroot", root, "tmpfs", MS_NOSUID | MS_NODEV,
                            "size=1m,nr_inodes=4096,mode=0755"));
    for (size_t i = 0; i < sizeof host_dirs / sizeof host_dirs[0]; i++)
        TRY(host_dirs[i], setup_host_dir(root, host_dirs[i]));
    TRY("etc", setup_etc(root, c));
    TRY("dev", setup_dev(root, c));
    TRY("proc", setup_proc(root));
    TRY("workspace", setup_workspace(root, c));
    TRY("oldroot-dir", mkdir(setup_path(root, "/.oldroot"), 0700));
    TRY("pivot_root", syscall(SYS_pivot_root, root, setup_path(root, "/.oldroot")));
    TRY("chdir-root", chdir("/"));
    TRY("umount-oldroot", umount2("/.oldroot", MNT_DETACH));
    TRY("rmdir-oldroot", rmdir("/.oldroot"));
    TRY("ro-dev", mount(NULL, "/dev", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC, NULL));
    TRY("ro-root", mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL));
    TRY("hostname", sethostname(c->hostname, strlen(c->hostname)));
    TRY("loopback", setup_loopback());
    TRY("rlimit-core", setrlimit(RLIMIT_CORE, &zero));
    TRY("drop-privileges", setup_drop_privileges());
    TRY("chdir-home", chdir(SB_INIT_HOME));
    TRY("seccomp", setup_seccomp());
    return 0;
}
