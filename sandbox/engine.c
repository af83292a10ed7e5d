/*
 * engine.c: the engine's life -- finding soulbox-init and the cgroups, the state directories,
 * reaping the orphans of dead engines (their processes, cgroups and state dirs) -- and the
 * preparation thread that keeps uid slots, cgroups and network namespaces ready ahead of
 * demand.  Shared state between the loop thread and the preparation thread is guarded by
 * prep_mu (see internal.h).
 */
#include "internal.h"

#include "base/err.h"
#include "base/log.h"
#include "protocols/frame.h"
#include "protocols/mp.h"
#include "base/alloc.h"
#include "base/clock.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- engine ---------------------------------------------------------------------------- */

unsigned long long
sb__sbx_proc_start(pid_t pid)
{
    char p[64], b[1024];
    snprintf(p, sizeof p, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(p, "re");
    if (!f)
        return 0;
    size_t n = fread(b, 1, sizeof b - 1, f);
    fclose(f);
    b[n] = 0;
    char *s = strrchr(b, ')');
    if (!s)
        return 0;
    /* fields after "pid (comm)": state is field 3, starttime field 22 */
    int field = 2;
    for (char *q = s + 1; *q; q++) {
        if (*q == ' ' && ++field == 22)
            return strtoull(q + 1, NULL, 10);
    }
    return 0;
}

static int
sbx_find_init(sb_engine_t *e, const char *configured)
{
    char self[PATH_MAX], cand[PATH_MAX + 16];
    const char *c[4] = {configured, NULL, getenv("SOULBOX_INIT"), NULL};
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = 0;
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = 0;
            snprintf(cand, sizeof cand, "%s/soulbox-init", self);
            c[1] = cand;
        }
    }
    const char *fallback[] = {SB_INIT_BUILD_PATH, SB_INIT_INSTALL_PATH};
    for (int i = 0; i < 6; i++) {
        const char *p = i < 4 ? c[i] : fallback[i - 4];
        if (p && access(p, X_OK) == 0) {
            snprintf(e->init_path, sizeof e->init_path, "%s", p);
            return 0;
        }
        if (i == 0 && configured)
            return SB_ENOTFOUND; /* an explicit path must exist */
    }
    return SB_ENOTFOUND;
}

int
sb_engine_new(uv_loop_t *loop, const sb_engine_config_t *cfg, sb_engine_t **out)
{
    sb_engine_config_t def = {0};
    if (!cfg)
        cfg = &def;
    sb_engine_t *e = sb_xcalloc(1, sizeof *e);
    e->loop = loop;
    SB_ASSERT(uv_mutex_init(&e->prep_mu) == 0 && uv_cond_init(&e->prep_cv) == 0);
    e->uid_base = cfg->uid_base ? cfg->uid_base : 200000;
    e->slots = cfg->uid_slots ? cfg->uid_slots : 4096;
    e->next_slot = (uint32_t)getpid() % e->slots;
    e->self_start = sb__sbx_proc_start(getpid());
    snprintf(e->state_dir, sizeof e->state_dir, "%s", cfg->state_dir ? cfg->state_dir : "/run/soulbox");
    snprintf(e->sb_dir, sizeof e->sb_dir, "%s/sandboxes", e->state_dir);
    snprintf(e->root_dir, sizeof e->root_dir, "%s/root", e->state_dir);
    int rc = sbx_find_init(e, cfg->init_path);
    if (rc < 0) {
        sb_log_error("SB-SBX-NO-INIT", "soulbox-init not found next to the binary, in "
                     "$SOULBOX_INIT or %s", SB_INIT_BUILD_PATH);
        free(e);
        return rc;
    }
    if ((mkdir(e->state_dir, 0755) < 0 && errno != EEXIST) ||
        (mkdir(e->sb_dir, 0700) < 0 && errno != EEXIST) ||
        (mkdir(e->root_dir, 0755) < 0 && errno != EEXIST)) {
        rc = -errno;
        sb_log_error("SB-SBX-STATE-DIR", "cannot create %s: %s", e->sb_dir, strerror(errno));
        free(e);
        return rc;
    }
    rc = sb_cgroup_detect(&e->cg, cfg->cgroup_root, cfg->cgroup_parent);
    if (rc < 0) {
        sb_log_error("SB-SBX-CGROUP-FAIL", "no usable cgroup hierarchy under %s: %s",
                     cfg->cgroup_root ? cfg->cgroup_root : "/sys/fs/cgroup", sb_strerror(rc));
        free(e);
        return rc;
    }
    sb_log_debug("SB-SBX-ENGINE", "sandbox engine: cgroup %s, init %s, uids %u+%u",
                sb_cgroup_kind_name(e->cg.kind), e->init_path, e->uid_base, e->slots * 2);
    int reaped = sb_engine_reap_orphans(e);
    if (reaped > 0)
        sb_log_warn("SB-SBX-ORPHANS", "reaped %d sandbox(es) left by a previous run", reaped);
    *out = e;
    return 0;
}

void
sb_engine_free(sb_engine_t *e)
{
    if (!e)
        return;
    SB_ASSERT(e->live == 0);
    if (e->prep_started) {
        uv_mutex_lock(&e->prep_mu);
        e->prep_stop = true;
        uv_cond_signal(&e->prep_cv);
        uv_mutex_unlock(&e->prep_mu);
        uv_thread_join(&e->prep_thread);
    }
    for (int i = 0; i < e->n_netns; i++)
        close(e->netns[i]);
    for (int i = 0; i < e->n_ready; i++)
        sb__sbx_slot_release(e, e->ready[i]);
    uv_cond_destroy(&e->prep_cv);
    uv_mutex_destroy(&e->prep_mu);
    free(e);
}

const sb_cgroup_sys_t *
sb_engine_cgroups(const sb_engine_t *e)
{
    return &e->cg;
}

const char *
sb_engine_init_path(const sb_engine_t *e)
{
    return e->init_path;
}

/* Kill everything in a group and remove it, waiting (bounded) for tasks to exit.  Only used
 * at start-up for orphans, where a short synchronous wait is acceptable. */
void
sb__sbx_cgroup_purge(sb_engine_t *e, const char *name)
{
    for (int i = 0; i < 400; i++) {
        sb_cgroup_kill(&e->cg, name);
        int rc = sb_cgroup_destroy(&e->cg, name);
        if (rc == 0)
            return;
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    sb_log_error("SB-SBX-ORPHAN-CGROUP", "cannot remove orphan cgroup %s", name);
}

typedef struct {
    sb_engine_t *e;
    int count;
} sbx_reap_t;

static void
sbx_reap_cg(const char *name, void *ud)
{
    sbx_reap_t *r = ud;
    char p[400];
    unsigned slot;
    if (sscanf(name, "sb-%u", &slot) != 1)
        return;
    snprintf(p, sizeof p, "%s/%u", r->e->sb_dir, slot);
    if (access(p, F_OK) == 0)
        return; /* owned: its state dir is handled (or live) */
    sb__sbx_cgroup_purge(r->e, name);
    r->count++;
}

int
sb_engine_reap_orphans(sb_engine_t *e)
{
    sbx_reap_t r = {e, 0};
    DIR *d = opendir(e->sb_dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        char *end;
        unsigned long slot = strtoul(de->d_name, &end, 10);
        if (de->d_name[0] == '.' || *end)
            continue;
        char p[400], b[128], name[32];
        snprintf(p, sizeof p, "%s/%lu/owner", e->sb_dir, slot);
        FILE *f = fopen(p, "re");
        int pid = 0;
        unsigned long long start = 0;
        if (f) {
            if (fgets(b, sizeof b, f))
                sscanf(b, "%d %llu", &pid, &start);
            fclose(f);
        } else {
            /* A slot being created by a live engine has its dir before its owner file. */
            struct stat st;
            snprintf(p, sizeof p, "%s/%lu", e->sb_dir, slot);
            if (stat(p, &st) == 0 && time(NULL) - st.st_mtime < 10)
                continue;
        }
        if (pid > 0 && kill(pid, 0) == 0 && sb__sbx_proc_start(pid) == start)
            continue; /* its engine is alive */
        snprintf(p, sizeof p, "%s/%lu/init", e->sb_dir, slot);
        if ((f = fopen(p, "re"))) {
            int ipid = 0;
            unsigned long long istart = 0;
            if (fgets(b, sizeof b, f) && sscanf(b, "%d %llu", &ipid, &istart) == 2 && ipid > 0 &&
                sb__sbx_proc_start(ipid) == istart)
                kill(ipid, SIGKILL);
            fclose(f);
        }
        snprintf(name, sizeof name, "sb-%lu", slot);
        sb__sbx_cgroup_purge(e, name);
        snprintf(p, sizeof p, "%s/%lu/owner", e->sb_dir, slot);
        unlink(p);
        snprintf(p, sizeof p, "%s/%lu/init", e->sb_dir, slot);
        unlink(p);
        snprintf(p, sizeof p, "%s/%lu", e->sb_dir, slot);
        if (rmdir(p) == 0)
            r.count++;
    }
    if (d)
        closedir(d);
    sb_cgroup_list(&e->cg, "sb-", sbx_reap_cg, &r);
    return r.count;
}

/* ---- preparation ------------------------------------------------------------------------
 *
 * What a sandbox needs from the host before clone() -- a uid slot (its state dir and owner
 * file), a cgroup (five directories and six limit files on v1) and, above all, a network
 * namespace (≈0.5–1 ms with long tails, DESIGN.md §2) -- is made ahead of demand by one
 * preparation thread, SBX_PREP of each, and replaced while the sandbox that took them starts.
 * sb_sandbox_create falls back to making them itself when none is ready.  The thread starts
 * with the first sandbox (a one-shot `soulbox run` never waits for it) and is joined, its
 * leftovers released, by sb_engine_free.
 *
 * A prepared network namespace is owned by the host's user namespace, not the sandbox's:
 * its lo is brought up here, and root inside the sandbox has no CAP_NET_ADMIN over it at all
 * (stricter than a namespace created by clone(), where it could reconfigure lo).  Each one
 * serves exactly one sandbox; none is reused. */

/* sb__sbx_slot_take reserves a free uid slot: its state dir (mkdir is the lock, atomic across
 * processes), owner file and cgroup, created with limits cl.  Any thread. */
int
sb__sbx_slot_take(sb_engine_t *e, const sb_cgroup_limits_t *cl, uint32_t *out)
{
    char dir[320], p[400], buf[64], cg[32];
    uv_mutex_lock(&e->prep_mu);
    uint32_t start = e->next_slot, slot = 0, s;
    uv_mutex_unlock(&e->prep_mu);
    for (s = 0; s < e->slots; s++) {
        slot = (start + s) % e->slots;
        snprintf(dir, sizeof dir, "%s/%u", e->sb_dir, slot);
        if (mkdir(dir, 0700) == 0)
            break;
        if (errno != EEXIST)
            return -errno;
    }
    if (s == e->slots)
        return SB_ELIMIT;
    uv_mutex_lock(&e->prep_mu);
    e->next_slot = slot + 1;
    uv_mutex_unlock(&e->prep_mu);
    snprintf(p, sizeof p, "%s/owner", dir);
    snprintf(buf, sizeof buf, "%d %llu\n", (int)getpid(), e->self_start);
    int rc = sb__sbx_write_file(p, buf);
    if (rc == 0) {
        /* a leftover of a crashed owner of this slot is purged first */
        snprintf(cg, sizeof cg, "sb-%u", slot);
        rc = sb_cgroup_create(&e->cg, cg, cl);
        if (rc == SB_EEXIST) {
            sb__sbx_cgroup_purge(e, cg);
            rc = sb_cgroup_create(&e->cg, cg, cl);
        }
    }
    if (rc < 0) {
        unlink(p);
        rmdir(dir);
        return rc;
    }
    *out = slot;
    return 0;
}

/* sb__sbx_slot_release undoes sb__sbx_slot_take for a slot no process ever ran in. */
void
sb__sbx_slot_release(sb_engine_t *e, uint32_t slot)
{
    char dir[320], p[400], cg[32];
    snprintf(cg, sizeof cg, "sb-%u", slot);
    sb__sbx_cgroup_purge(e, cg);
    snprintf(dir, sizeof dir, "%s/%u", e->sb_dir, slot);
    snprintf(p, sizeof p, "%s/owner", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/init", dir);
    unlink(p);
    rmdir(dir);
}

/* sb__sbx_netns_new makes a new network namespace with its lo up and returns an fd to it; the
 * calling thread enters it to do so and returns to `home` (its own namespace) after, so it
 * never keeps a sandbox's namespace alive.  Preparation thread only.  *stuck is set when the
 * thread could not return home (it then must not make more). */
int
sb__sbx_netns_new(int home, bool *stuck)
{
    struct ifreq ifr;
    if (unshare(CLONE_NEWNET) < 0)
        return -errno;
    int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    int s = fd < 0 ? -1 : socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int rc = s < 0 ? -1 : 0;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
    if (rc == 0 && (rc = ioctl(s, SIOCGIFFLAGS, &ifr)) == 0) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        rc = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    int err = errno;
    if (s >= 0)
        close(s);
    if (setns(home, CLONE_NEWNET) < 0) {
        *stuck = true;
        err = errno;
        rc = -1;
    }
    if (rc < 0) {
        if (fd >= 0)
            close(fd);
        return -err;
    }
    return fd;
}

static void
sbx_prep_main(void *arg)
{
    sb_engine_t *e = arg;
    const sb_cgroup_limits_t def = {SBX_DEF_MEMORY, SBX_DEF_PIDS, SBX_DEF_CPU};
    int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    bool stuck = false;
    uv_mutex_lock(&e->prep_mu);
    if (home < 0) {
        e->netns_off = true;
        e->netns_err = -errno;
    }
    while (!e->prep_stop) {
        bool want_ns = !e->netns_off && e->n_netns < SBX_PREP;
        bool want_slot = !e->prep_slot_fail && e->n_ready < SBX_PREP;
        if (want_slot && (!want_ns || e->n_ready <= e->n_netns)) {
            uint32_t slot;
            uv_mutex_unlock(&e->prep_mu);
            int rc = sb__sbx_slot_take(e, &def, &slot);
            uv_mutex_lock(&e->prep_mu);
            if (rc == 0)
                e->ready[e->n_ready++] = slot;
            else
                e->prep_slot_fail = true; /* retried after the next sandbox is created */
        } else if (want_ns) {
            uv_mutex_unlock(&e->prep_mu);
            int fd = sb__sbx_netns_new(home, &stuck);
            uv_mutex_lock(&e->prep_mu);
            if (fd >= 0)
                e->netns[e->n_netns++] = fd;
            if (fd < 0 || stuck) {
                e->netns_off = true; /* e.g. not privileged: never retried */
                e->netns_err = fd < 0 ? fd : SB_EIO;
            }
        } else {
            uv_cond_wait(&e->prep_cv, &e->prep_mu);
        }
    }
    uv_mutex_unlock(&e->prep_mu);
    if (home >= 0)
        close(home);
}

/* Start the preparation thread if needed and wake it.  Loop thread. */
void
sb__sbx_prep_kick(sb_engine_t *e)
{
    if (!e->prep_started) {
        if (uv_thread_create(&e->prep_thread, sbx_prep_main, e) != 0)
            return; /* creation then simply makes everything itself */
        e->prep_started = true;
        return;
    }
    uv_mutex_lock(&e->prep_mu);
    uv_cond_signal(&e->prep_cv);
    uv_mutex_unlock(&e->prep_mu);
}
