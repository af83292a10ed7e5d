/*
 * cgroup.h: per-sandbox control groups behind one interface, with a cgroup v2 backend and a
 * v1 backend (memory, pids, cpu, cpuacct, freezer hierarchies), chosen by sb_cgroup_detect.
 *
 * Every function takes the detected sb_cgroup_sys_t, whose root is a parameter, so tests can
 * point it at a fake cgroupfs tree (a temp dir holding the v2 files).  Sandbox cgroups live
 * under <root>/<parent>/<name> (v2) or <root>/<controller>/<parent>/<name> (v1).  All calls
 * are synchronous file writes on cgroupfs (microseconds; never blocking on user code) and
 * may be called from any thread; nothing is cached between calls but the detection result.
 * Errors are negated errnos (or SB_EUNSUPPORTED when no usable hierarchy exists).
 */
#ifndef SB_CGROUP_H
#define SB_CGROUP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef enum { SB_CGROUP_NONE = 0, SB_CGROUP_V1 = 1, SB_CGROUP_V2 = 2 } sb_cgroup_kind_t;

typedef struct {
    sb_cgroup_kind_t kind;
    char root[256];   /* e.g. /sys/fs/cgroup */
    char parent[64];  /* e.g. soulbox */
    /* v1: mount directory of each controller ("" when absent) */
    char memory[320], pids[320], cpu[320], cpuacct[320], freezer[320];
    bool memsw;       /* v1: swap accounting present (memory.memsw.*) */
} sb_cgroup_sys_t;

typedef struct {
    uint64_t memory_bytes; /* 0: unlimited; swap is always off */
    uint64_t pids;         /* 0: unlimited */
    uint32_t cpu_pct;      /* CPU quota in percent of one core; 0: unlimited */
} sb_cgroup_limits_t;

typedef struct {
    uint64_t memory_peak;  /* bytes, since creation or the last sb_cgroup_reset_peak */
    uint64_t memory_current;
    uint64_t cpu_usage_ns; /* cumulative, all tasks ever in the group */
    uint64_t oom_kills;    /* cumulative */
    uint64_t pids_current;
} sb_cgroup_stats_t;

/* sb_cgroup_detect looks at root (NULL = /sys/fs/cgroup): v2 when root/cgroup.controllers
 * lists memory and pids, else v1 when root/memory and root/pids are hierarchies, else
 * SB_EUNSUPPORTED.  Creates <parent> (enabling controllers for v2). */
int sb_cgroup_detect(sb_cgroup_sys_t *s, const char *root, const char *parent);
const char *sb_cgroup_kind_name(sb_cgroup_kind_t k);

/* sb_cgroup_create makes the group `name` (SB_EEXIST if present) and sets limits. */
int sb_cgroup_create(const sb_cgroup_sys_t *s, const char *name, const sb_cgroup_limits_t *l);
int sb_cgroup_set_limits(const sb_cgroup_sys_t *s, const char *name, const sb_cgroup_limits_t *l);
/* sb_cgroup_attach moves pid (a whole process) into the group. */
int sb_cgroup_attach(const sb_cgroup_sys_t *s, const char *name, pid_t pid);
/* sb_cgroup_join_fds opens, on v1, the `tasks` file of group `name` in each hierarchy (at
 * most SB_CGROUP_JOIN_MAX) with O_WRONLY | O_CLOEXEC into fds.  A single-threaded process
 * that writes "0" to each (write(2) only: async-signal-safe, fine in a clone() child) moves
 * itself into the group without the system-wide threadgroup lock -- and the RCU grace period
 * it waits for, up to ~9 ms here under load -- that sb_cgroup_attach's write of another
 * process's pid to cgroup.procs takes.  Returns how many were opened: 0 on v2 (use
 * sb_cgroup_attach), or a negated errno with none left open. */
#define SB_CGROUP_JOIN_MAX 5
int sb_cgroup_join_fds(const sb_cgroup_sys_t *s, const char *name, int *fds);
int sb_cgroup_stats(const sb_cgroup_sys_t *s, const char *name, sb_cgroup_stats_t *st);
/* sb_cgroup_reset_peak restarts peak tracking (v1 always; v2 where memory.peak is writable). */
int sb_cgroup_reset_peak(const sb_cgroup_sys_t *s, const char *name);
/* sb_cgroup_kill SIGKILLs every task of the group: cgroup.kill on v2 when present, else
 * freeze, kill each listed task until the list stays empty (bounded rounds), thaw.  Returns
 * the number of tasks still listed (0: all gone or dying) or a negated errno. */
int sb_cgroup_kill(const sb_cgroup_sys_t *s, const char *name);
/* sb_cgroup_count returns the number of tasks in the group (<0 on error). */
int sb_cgroup_count(const sb_cgroup_sys_t *s, const char *name);
/* sb_cgroup_destroy removes the group; -EBUSY while tasks remain, 0 if already gone. */
int sb_cgroup_destroy(const sb_cgroup_sys_t *s, const char *name);
/* sb_cgroup_list calls cb for every group under <parent> whose name starts with prefix. */
int sb_cgroup_list(const sb_cgroup_sys_t *s, const char *prefix,
                   void (*cb)(const char *name, void *ud), void *ud);

#endif
