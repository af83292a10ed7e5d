/*
 * test_audit_cli.c: the real `soulbox` binary's `audit verify`, `audit tail` and `migrate`
 * subcommands: exit statuses and output on an intact log, a tampered one, and a data
 * directory that needs migrating.  The log is written by the real auditor actor in-process.
 */
#include "sbclient.h"

#include "actors/auditor/auditor.h"
#include "base/err.h"
#include "base/log.h"
#include "protocols/msgs.h"
#include "test.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* soulbox runs the binary with args; returns its exit status, output in out (malloc'd). */
static int
soulbox(const char *const *args, char **out)
{
    int p[2];
    const char *argv[16] = {SB_BINARY_DIR "/bin/soulbox"};
    int n = 1;
    for (; args[n - 1]; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        char *env[] = {NULL};
        dup2(p[1], 1);
        dup2(p[1], 2);
        close(p[0]);
        execve(argv[0], (char *const *)argv, env);
        _exit(127);
    }
    close(p[1]);
    size_t cap = 1 << 20, len = 0;
    *out = calloc(1, cap);
    ssize_t r;
    while ((r = read(p[0], *out + len, cap - 1 - len)) > 0)
        len += (size_t)r;
    close(p[0]);
    int st = sb_test_wait_exit(pid, 30000);
    CHECK(st >= 0 && WIFEXITED(st));
    return WEXITSTATUS(st);
}

int
main(void)
{
    char *dir = sbc_tmpdir("auditcli"), *out, path[4200];
    sb_config_t cfg;
    sb_bus_t *bus;
    sb_actor_t *aud;
    sbc_t c;
    sb_bus_opts_t bo = {0};

    sb_log_setup(SB_LOG_ERROR, 0);
    const char *flags[] = {"--data-dir", dir, NULL};
    sb_test_config(&cfg, flags);
    CHECK(sb_bus_alloc(&bo, &bus) == 0);
    CHECK(sb_actor_spawn(bus, &sb_auditor_actor, &cfg, &aud) == 0);
    sbc_start(&c, bus);
    for (int i = 0; i < 5; i++) {
        sb_audit_event_t e = {.type = SB_STR("login.success"), .principal = SB_STR("alice")};
        sb_buf_t b;
        sb_buf_init(&b, 0);
        CHECK(sb_audit_event_encode(&e, &b) == 0);
        CHECK_EQ(sbc_call(&c, SB_ACTOR_AUDITOR, SB_MSG_AUDIT_EVENT, b.data, b.len, 5000), 0);
        sb_buf_fini(&b);
    }
    CHECK_EQ(sbc_stop(&c), 0);
    sb_actor_stop(aud, 2000);
    CHECK_EQ(sb_actor_join(aud), 0);
    sb_actor_free(aud);
    sb_bus_free(bus);

    const char *verify[] = {"audit", "verify", "--data-dir", dir, NULL};
    CHECK_EQ(soulbox(verify, &out), 0);
    CHECK(strstr(out, "OK: 5 records"));
    free(out);
    const char *tail[] = {"audit", "tail", "-n", "1", "--data-dir", dir, NULL};
    CHECK_EQ(soulbox(tail, &out), 0);
    CHECK(strstr(out, "{\"seq\":5,") == out);
    free(out);
    sb_test_ok("soulbox audit verify / tail on an intact log");

    /* Edit record 3 by hand: alice -> alicf. */
    snprintf(path, sizeof path, "%s/audit.log", dir);
    FILE *f = fopen(path, "r+b");
    char *buf = calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    char *l3 = buf;
    for (int i = 0; i < 2; i++)
        l3 = strchr(l3, '\n') + 1;
    char *a = strstr(l3, "alice");
    a[4] = 'f';
    rewind(f);
    CHECK(fwrite(buf, 1, n, f) == n);
    fclose(f);
    free(buf);
    CHECK_EQ(soulbox(verify, &out), 1);
    CHECK(strstr(out, "TAMPERED") && strstr(out, "line 3:") && strstr(out, "MAC mismatch"));
    free(out);
    sb_test_ok("soulbox audit verify exits 1 naming the edited line");

    char dbdir[4200];
    snprintf(dbdir, sizeof dbdir, "%s/db", dir);
    const char *migrate[] = {"migrate", "--data-dir", dbdir, NULL};
    CHECK_EQ(soulbox(migrate, &out), 0);
    CHECK(strstr(out, "schema version 0 -> 2"));
    free(out);
    CHECK_EQ(soulbox(migrate, &out), 0);
    CHECK(strstr(out, "already current"));
    free(out);
    sb_test_ok("soulbox migrate creates and then finds the schema current");

    sb_config_fini(&cfg);
    sbc_rmrf(dir);
    free(dir);
    return sb_test_done();
}
