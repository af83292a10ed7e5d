/* test_cgroup_v2.c: the cgroup v2 backend against a fake cgroupfs tree (plain files in a temp
 * dir): detection, limits written, stats parsed, attach, kill, list.  The v1 backend is
 * exercised for real by test_executor_sandbox and the security suite on this machine. */
#include "sandbox/cgroup.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[256];

static void
put(const char *rel, const char *s)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    FILE *f = fopen(p, "w");
    CHECK(f);
    fputs(s, f);
    fclose(f);
}

static int
has(const char *rel, const char *s)
{
    char p[512], b[256] = {0};
    snprintf(p, sizeof p, "%s/%s", root, rel);
    FILE *f = fopen(p, "r");
    if (!f)
        return 0;
    size_t n = fread(b, 1, sizeof b - 1, f);
    fclose(f);
    b[n] = 0;
    return strcmp(b, s) == 0;
}

static int listed;
static void
on_list(const char *name, void *ud)
{
    (void)ud;
    listed += !strcmp(name, "sb-7");
}

int
main(void)
{
    snprintf(root, sizeof root, "/tmp/sb-fake-cg-XXXXXX");
    CHECK(mkdtemp(root));
    put("cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n");
    put("cgroup.subtree_control", "");
    sb_cgroup_sys_t s;
    CHECK_EQ(sb_cgroup_detect(&s, root, "soulbox"), 0);
    CHECK_EQ(s.kind, SB_CGROUP_V2);
    sb_test_ok("detect v2");

    sb_cgroup_limits_t l = {128ull << 20, 64, 50};
    CHECK_EQ(sb_cgroup_create(&s, "sb-7", &l), 0);
    CHECK(has("soulbox/sb-7/memory.max", "134217728"));
    CHECK(has("soulbox/sb-7/memory.swap.max", "0"));
    CHECK(has("soulbox/sb-7/memory.oom.group", "1"));
    CHECK(has("soulbox/sb-7/pids.max", "64"));
    CHECK(has("soulbox/sb-7/cpu.max", "50000 100000"));
    CHECK_EQ(sb_cgroup_create(&s, "sb-7", &l), -10014 /* SB_EEXIST */);
    CHECK(sb_cgroup_create(&s, "../evil", &l) < 0);
    sb_test_ok("create and limits");

    CHECK_EQ(sb_cgroup_attach(&s, "sb-7", 1234), 0);
    CHECK(has("soulbox/sb-7/cgroup.procs", "1234"));
    put("soulbox/sb-7/memory.peak", "12345\n");
    put("soulbox/sb-7/memory.current", "100\n");
    put("soulbox/sb-7/cpu.stat", "usage_usec 5000\nuser_usec 4000\nsystem_usec 1000\n");
    put("soulbox/sb-7/memory.events", "low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\noom_group_kill 1\n");
    put("soulbox/sb-7/pids.current", "3\n");
    sb_cgroup_stats_t st;
    CHECK_EQ(sb_cgroup_stats(&s, "sb-7", &st), 0);
    CHECK_EQ(st.memory_peak, 12345);
    CHECK_EQ(st.cpu_usage_ns, 5000000);
    CHECK_EQ(st.oom_kills, 2);
    CHECK_EQ(st.pids_current, 3);
    sb_test_ok("stats");

    CHECK_EQ(sb_cgroup_kill(&s, "sb-7"), 0);
    CHECK(has("soulbox/sb-7/cgroup.kill", "1"));
    sb_cgroup_limits_t l2 = {0, 0, 0};
    CHECK_EQ(sb_cgroup_set_limits(&s, "sb-7", &l2), 0);
    CHECK(has("soulbox/sb-7/memory.max", "max"));
    CHECK(has("soulbox/sb-7/cpu.max", "max 100000"));
    CHECK_EQ(sb_cgroup_list(&s, "sb-", on_list, NULL), 0);
    CHECK_EQ(listed, 1);
    sb_test_ok("kill, unlimit, list");

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    CHECK_EQ(system(cmd), 0);
    return sb_test_done();
}
