/*
 * cgroup.c: v1 and v2 backends of the per-sandbox cgroup (see cgroup.h).
 *
 * v2: one directory; memory.max + memory.swap.max=0 + memory.oom.group=1 (the whole sandbox
 * is OOM-killed together), pids.max, cpu.max; kill via cgroup.kill (5.14+) or freeze+kill.
 * v1: one directory per controller; memory.limit_in_bytes and memory.memsw.limit_in_bytes set
 * equal (no swap), pids.max, cpu.cfs_quota_us; CPU time from cpuacct.usage; OOM kills from
 * memory.oom_control's oom_kill; kill via the freezer.  v1 has no oom.group: the executor
 * kills the rest of the sandbox itself when it sees an OOM kill.
 *
 * Invariant: functions only touch paths under <root>/[<controller>/]<parent>/<name>, where
 * name is validated (no '/', no "..", not empty) so a bad name can never address another
 * group.
 */
#include "cgroup.h"

#include "base/err.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CG_PATH 512

static int
cg_name_ok(const char *name)
{
    return name && *name && !strchr(name, '/') && strcmp(name, ".") && strcmp(name, "..");
}

static int
cg_write(const char *dir, const char *file, const char *val)
{
    char p[CG_PATH];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    /* O_CREAT is a no-op on cgroupfs (its files exist or cannot be created) and lets the
     * same code drive a fake tree of plain files in tests. */
    int fd = open(p, O_WRONLY | O_CLOEXEC | O_TRUNC | O_CREAT, 0644);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, val, strlen(val));
    int e = errno;
    close(fd);
    return n < 0 ? -e : 0;
}

static int
cg_read(const char *dir, const char *file, char *buf, size_t cap)
{
    char p[CG_PATH];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, cap - 1);
    int e = errno;
    close(fd);
    if (n < 0)
        return -e;
    buf[n] = 0;
    return (int)n;
}

static int
cg_read_u64(const char *dir, const char *file, uint64_t *v)
{
    char b[64];
    int rc = cg_read(dir, file, b, sizeof b);
    if (rc < 0)
        return rc;
    if (!strncmp(b, "max", 3)) {
        *v = UINT64_MAX;
        return 0;
    }
    *v = strtoull(b, NULL, 10);
    return 0;
}

/* A "key value" line of a flat-keyed file (memory.events, cpu.stat, memory.oom_control). */
static int
cg_read_key(const char *dir, const char *file, const char *key, uint64_t *v)
{
    char b[4096];
    int rc = cg_read(dir, file, b, sizeof b);
    if (rc < 0)
        return rc;
    size_t kl = strlen(key);
    for (char *l = b; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (!strncmp(l, key, kl) && l[kl] == ' ') {
            *v = strtoull(l + kl + 1, NULL, 10);
            return 0;
        }
    }
    return -ENOENT;
}

static int
cg_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* Directory of group `name` for a v1 controller mount (or the v2 root when ctl is root). */
static void
cg_dir(char *out, const char *ctl, const sb_cgroup_sys_t *s, const char *name)
{
    if (name)
        snprintf(out, CG_PATH, "%s/%s/%s", ctl, s->parent, name);
    else
        snprintf(out, CG_PATH, "%s/%s", ctl, s->parent);
}

const char *
sb_cgroup_kind_name(sb_cgroup_kind_t k)
{
    return k == SB_CGROUP_V2 ? "v2" : k == SB_CGROUP_V1 ? "v1" : "none";
}

/* The v1 controllers a sandbox uses, in a fixed order; absent ones are "". */
static const char *
cg_v1_ctl(const sb_cgroup_sys_t *s, int i)
{
    switch (i) {
    case 0: return s->memory;
    case 1: return s->pids;
    case 2: return s->cpu;
    case 3: return strcmp(s->cpuacct, s->cpu) ? s->cpuacct : "";
    case 4: return s->freezer;
    default: return NULL;
    }
}

int
sb_cgroup_detect(sb_cgroup_sys_t *s, const char *root, const char *parent)
{
    char p[CG_PATH], b[512];
    memset(s, 0, sizeof s[0]);
    snprintf(s->root, sizeof s->root, "%s", root ? root : "/sys/fs/cgroup");
    snprintf(s->parent, sizeof s->parent, "%s", parent ? parent : "soulbox");
    if (!cg_name_ok(s->parent))
        return SB_EINVAL;
    if (cg_read(s->root, "cgroup.controllers", b, sizeof b) >= 0 && strstr(b, "memory") &&
        strstr(b, "pids")) {
        s->kind = SB_CGROUP_V2;
        cg_dir(p, s->root, s, NULL);
        if (mkdir(p, 0755) < 0 && errno != EEXIST)
            return -errno;
        /* Delegate controllers down to <parent> and from it to the sandboxes.  "+cpu" may be
         * refused on hosts with realtime threads in the root; limits then degrade, not fail. */
        const char *ctls[] = {"+memory", "+pids", "+cpu"};
        for (int i = 0; i < 3; i++) {
            cg_write(s->root, "cgroup.subtree_control", ctls[i]);
            cg_write(p, "cgroup.subtree_control", ctls[i]);
        }
        return 0;
    }
    struct {
        char *dst;
        const char *const cands[3];
    } v1[] = {
        {s->memory, {"memory", NULL, NULL}},
        {s->pids, {"pids", NULL, NULL}},
        {s->cpu, {"cpu", "cpu,cpuacct", NULL}},
        {s->cpuacct, {"cpuacct", "cpu,cpuacct", NULL}},
        {s->freezer, {"freezer", NULL, NULL}},
    };
    for (size_t i = 0; i < sizeof v1 / sizeof v1[0]; i++)
        for (int j = 0; v1[i].cands[j]; j++) {
            snprintf(p, sizeof p, "%s/%s/tasks", s->root, v1[i].cands[j]);
            if (cg_exists(p)) {
                snprintf(v1[i].dst, 320, "%s/%s", s->root, v1[i].cands[j]);
                break;
            }
        }
    if (!s->memory[0] || !s->pids[0])
        return SB_EUNSUPPORTED;
    s->kind = SB_CGROUP_V1;
    snprintf(p, sizeof p, "%s/memory.memsw.limit_in_bytes", s->memory);
    s->memsw = cg_exists(p);
    for (int i = 0; cg_v1_ctl(s, i); i++) {
        const char *ctl = cg_v1_ctl(s, i);
        if (!*ctl)
            continue;
        cg_dir(p, ctl, s, NULL);
        if (mkdir(p, 0755) < 0 && errno != EEXIST)
            return -errno;
    }
    return 0;
}

int
sb_cgroup_set_limits(const sb_cgroup_sys_t *s, const char *name, const sb_cgroup_limits_t *l)
{
    char d[CG_PATH], v[64];
    int rc;
    if (!cg_name_ok(name))
        return SB_EINVAL;
    if (s->kind == SB_CGROUP_V2) {
        cg_dir(d, s->root, s, name);
        if (l->memory_bytes)
            snprintf(v, sizeof v, "%llu", (unsigned long long)l->memory_bytes);
        else
            snprintf(v, sizeof v, "max");
        if ((rc = cg_write(d, "memory.max", v)) < 0)
            return rc;
        cg_write(d, "memory.swap.max", "0"); /* absent without swap accounting: fine */
        cg_write(d, "memory.oom.group", "1");
        if (l->pids)
            snprintf(v, sizeof v, "%llu", (unsigned long long)l->pids);
        else
            snprintf(v, sizeof v, "max");
        if ((rc = cg_write(d, "pids.max", v)) < 0)
            return rc;
        if (l->cpu_pct)
            snprintf(v, sizeof v, "%u 100000", l->cpu_pct * 1000u);
        else
            snprintf(v, sizeof v, "max 100000");
        cg_write(d, "cpu.max", v);
        return 0;
    }
    if (s->kind != SB_CGROUP_V1)
        return SB_EUNSUPPORTED;
    cg_dir(d, s->memory, s, name);
    snprintf(v, sizeof v, "%lld", l->memory_bytes ? (long long)l->memory_bytes : -1LL);
    /* memsw must stay >= limit: when lowering write limit first, when raising memsw first;
     * not knowing which, try one order and fall back to the other. */
    if ((rc = cg_write(d, "memory.limit_in_bytes", v)) < 0 && !s->memsw)
        return rc;
    if (s->memsw) {
        if (cg_write(d, "memory.memsw.limit_in_bytes", v) < 0)
            return -EINVAL;
        if (rc < 0 && (rc = cg_write(d, "memory.limit_in_bytes", v)) < 0)
            return rc;
    }
    cg_write(d, "memory.swappiness", "0");
    cg_dir(d, s->pids, s, name);
    if (l->pids)
        snprintf(v, sizeof v, "%llu", (unsigned long long)l->pids);
    else
        snprintf(v, sizeof v, "max");
    if ((rc = cg_write(d, "pids.max", v)) < 0)
        return rc;
    if (s->cpu[0]) {
        cg_dir(d, s->cpu, s, name);
        cg_write(d, "cpu.cfs_period_us", "100000");
        snprintf(v, sizeof v, "%lld", l->cpu_pct ? (long long)l->cpu_pct * 1000 : -1LL);
        if ((rc = cg_write(d, "cpu.cfs_quota_us", v)) < 0)
            return rc;
    }
    return 0;
}

int
sb_cgroup_create(const sb_cgroup_sys_t *s, const char *name, const sb_cgroup_limits_t *l)
{
    char d[CG_PATH];
    if (!cg_name_ok(name))
        return SB_EINVAL;
    if (s->kind == SB_CGROUP_V2) {
        cg_dir(d, s->root, s, name);
        if (mkdir(d, 0755) < 0)
            return errno == EEXIST ? SB_EEXIST : -errno;
    } else if (s->kind == SB_CGROUP_V1) {
        for (int i = 0; cg_v1_ctl(s, i); i++) {
            if (!*cg_v1_ctl(s, i))
                continue;
            cg_dir(d, cg_v1_ctl(s, i), s, name);
            if (mkdir(d, 0755) < 0) {
                int e = errno;
                sb_cgroup_destroy(s, name);
                return e == EEXIST ? SB_EEXIST : -e;
            }
        }
    } else {
        return SB_EUNSUPPORTED;
    }
    int rc = sb_cgroup_set_limits(s, name, l);
    if (rc < 0)
        sb_cgroup_destroy(s, name);
    return rc;
}

int
sb_cgroup_attach(const sb_cgroup_sys_t *s, const char *name, pid_t pid)
{
    char d[CG_PATH], v[32];
    int rc;
    if (!cg_name_ok(name))
        return SB_EINVAL;
    snprintf(v, sizeof v, "%d", (int)pid);
    if (s->kind == SB_CGROUP_V2) {
        cg_dir(d, s->root, s, name);
        return cg_write(d, "cgroup.procs", v);
    }
    for (int i = 0; cg_v1_ctl(s, i); i++) {
        if (!*cg_v1_ctl(s, i))
            continue;
        cg_dir(d, cg_v1_ctl(s, i), s, name);
        if ((rc = cg_write(d, "cgroup.procs", v)) < 0)
            return rc;
    }
    return 0;
}

int
sb_cgroup_join_fds(const sb_cgroup_sys_t *s, const char *name, int *fds)
{
    char d[CG_PATH], p[CG_PATH + 8];
    int n = 0;
    if (!cg_name_ok(name))
        return SB_EINVAL;
    if (s->kind != SB_CGROUP_V1)
        return 0;
    for (int i = 0; cg_v1_ctl(s, i) && n < SB_CGROUP_JOIN_MAX; i++) {
        if (!*cg_v1_ctl(s, i))
            continue;
        cg_dir(d, cg_v1_ctl(s, i), s, name);
        snprintf(p, sizeof p, "%s/tasks", d);
        if ((fds[n] = open(p, O_WRONLY | O_CLOEXEC)) < 0) {
            int e = -errno;
            while (n > 0)
                close(fds[--n]);
            return e;
        }
        n++;
    }
    return n;
}

int
sb_cgroup_stats(const sb_cgroup_sys_t *s, const char *name, sb_cgroup_stats_t *st)
{
    char d[CG_PATH];
    uint64_t v;
    if (!cg_name_ok(name))
        return SB_EINVAL;
    memset(st, 0, sizeof *st);
    if (s->kind == SB_CGROUP_V2) {
        cg_dir(d, s->root, s, name);
        if (cg_read_u64(d, "memory.peak", &st->memory_peak) < 0)
            cg_read_u64(d, "memory.current", &st->memory_peak);
        cg_read_u64(d, "memory.current", &st->memory_current);
        if (cg_read_key(d, "cpu.stat", "usage_usec", &v) == 0)
            st->cpu_usage_ns = v * 1000;
        cg_read_key(d, "memory.events", "oom_kill", &st->oom_kills);
        if (cg_read_key(d, "memory.events", "oom_group_kill", &v) == 0 && v > st->oom_kills)
            st->oom_kills = v;
        cg_read_u64(d, "pids.current", &st->pids_current);
        return 0;
    }
    if (s->kind != SB_CGROUP_V1)
        return SB_EUNSUPPORTED;
    cg_dir(d, s->memory, s, name);
    cg_read_u64(d, s->memsw ? "memory.memsw.max_usage_in_bytes" : "memory.max_usage_in_bytes",
                &st->memory_peak);
    cg_read_u64(d, "memory.usage_in_bytes", &st->memory_current);
    cg_read_key(d, "memory.oom_control", "oom_kill", &st->oom_kills);
    if (s->cpuacct[0]) {
        cg_dir(d, s->cpuacct, s, name);
        cg_read_u64(d, "cpuacct.usage", &st->cpu_usage_ns);
    }
    cg_dir(d, s->pids, s, name);
    cg_read_u64(d, "pids.current", &st->pids_current);
    return 0;
}

int
sb_cgroup_reset_peak(const sb_cgroup_sys_t *s, const char *name)
{
    char d[CG_PATH];
    if (!cg_name_ok(name))
        return SB_EINVAL;
    if (s->kind == SB_CGROUP_V2) {
        cg_dir(d, s->root, s, name);
        return cg_write(d, "memory.peak", "0"); /* kernels >= 6.12; harmless before */
    }
    cg_dir(d, s->memory, s, name);
    cg_write(d, "memory.max_usage_in_bytes", "0");
    if (s->memsw)
        cg_write(d, "memory.memsw.max_usage_in_bytes", "0");
    return 0;
}

#define CG_PIDS_MAX 8192
#define CG_PIDS_BUF 65536

/* Read the pid list of a group directory (cgroup.procs) into pids (NULL: count only);
 * returns the count or -errno.  No static buffers: any thread may call it (the engine's
 * preparation thread purges leftover groups while its loop thread sweeps others). */
static int
cg_pids(const char *dir, pid_t *pids, int cap)
{
    char *b = malloc(CG_PIDS_BUF);
    if (!b)
        return -ENOMEM;
    int rc = cg_read(dir, "cgroup.procs", b, CG_PIDS_BUF);
    if (rc < 0) {
        free(b);
        return rc;
    }
    int n = 0;
    for (char *p = b; *p && n < cap;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p)
            break;
        if (v > 0) {
            if (pids)
                pids[n] = (pid_t)v;
            n++;
        }
        p = end;
        while (*p == '\n' || *p == ' ')
            p++;
    }
    free(b);
    return n;
}

int
sb_cgroup_count(const sb_cgroup_sys_t *s, const char *name)
{
    char d[CG_PATH];
    if (!cg_name_ok(name))
        return SB_EINVAL;
    cg_dir(d, s->kind == SB_CGROUP_V2 ? s->root : s->pids, s, name);
    return cg_pids(d, NULL, INT_MAX);
}

int
sb_cgroup_kill(const sb_cgroup_sys_t *s, const char *name)
{
    char d[CG_PATH], fz[CG_PATH];
    pid_t *pids;
    int n = 0;
    if (!cg_name_ok(name))
        return SB_EINVAL;
    if (s->kind == SB_CGROUP_V2) {
        cg_dir(d, s->root, s, name);
        if (cg_write(d, "cgroup.kill", "1") == 0)
            return 0;
        snprintf(fz, sizeof fz, "%s", d);
        cg_write(fz, "cgroup.freeze", "1");
    } else {
        cg_dir(d, s->pids, s, name);
        /* An empty group needs no freeze/thaw round (two slow freezer writes): the common
         * case, when the executor sweeps a sandbox whose pid namespace is already gone. */
        if ((n = cg_pids(d, NULL, INT_MAX)) <= 0)
            return n;
        fz[0] = 0;
        if (s->freezer[0]) {
            cg_dir(fz, s->freezer, s, name);
            cg_write(fz, "freezer.state", "FROZEN");
        }
    }
    /* A frozen task still receives SIGKILL and dies on thaw; killed tasks cannot fork, so
     * the list converges.  Bounded rounds: the caller retries on a timer if tasks remain. */
    if (!(pids = malloc(CG_PIDS_MAX * sizeof *pids)))
        n = -ENOMEM;
    for (int round = 0; pids && round < 16; round++) {
        n = cg_pids(d, pids, CG_PIDS_MAX);
        if (n <= 0)
            break;
        for (int i = 0; i < n; i++)
            kill(pids[i], SIGKILL);
    }
    free(pids);
    if (fz[0])
        cg_write(fz, s->kind == SB_CGROUP_V2 ? "cgroup.freeze" : "freezer.state",
                 s->kind == SB_CGROUP_V2 ? "0" : "THAWED");
    return n;
}

int
sb_cgroup_destroy(const sb_cgroup_sys_t *s, const char *name)
{
    char d[CG_PATH];
    int rc = 0;
    if (!cg_name_ok(name))
        return SB_EINVAL;
    if (s->kind == SB_CGROUP_V2) {
        cg_dir(d, s->root, s, name);
        if (rmdir(d) < 0 && errno != ENOENT)
            rc = -errno;
        return rc;
    }
    for (int i = 0; cg_v1_ctl(s, i); i++) {
        if (!*cg_v1_ctl(s, i))
            continue;
        cg_dir(d, cg_v1_ctl(s, i), s, name);
        if (rmdir(d) < 0 && errno != ENOENT && rc == 0)
            rc = -errno;
    }
    return rc;
}

int
sb_cgroup_list(const sb_cgroup_sys_t *s, const char *prefix,
               void (*cb)(const char *name, void *ud), void *ud)
{
    char d[CG_PATH];
    const char *base = s->kind == SB_CGROUP_V2 ? s->root : s->kind == SB_CGROUP_V1 ? s->pids : NULL;
    if (!base)
        return SB_EUNSUPPORTED;
    /* v1: the union over controllers, so a group left in only one hierarchy is found too;
     * the callback may see a name more than once and must be idempotent. */
    for (int i = 0; i < 5; i++) {
        const char *ctl = s->kind == SB_CGROUP_V2 ? (i ? NULL : s->root) : cg_v1_ctl(s, i);
        if (!ctl || !*ctl)
            continue;
        cg_dir(d, ctl, s, NULL);
        DIR *dir = opendir(d);
        if (!dir)
            continue;
        struct dirent *e;
        while ((e = readdir(dir)))
            if (e->d_name[0] != '.' && !strncmp(e->d_name, prefix, strlen(prefix)) &&
                e->d_type == DT_DIR)
                cb(e->d_name, ud);
        closedir(dir);
    }
    return 0;
}
