/*
 * test_storage.c: the storage behaviour suite, run once per backend (STORE_BACKEND is "sqlite"
 * or "redis", set by CMake).  In-process: a bus, the real storage actor, and a test client.
 * For Redis the test runs its own redis-server on a free loopback port in a temp dir, and
 * stops and restarts it mid-test: requests must fail with SB_EUNAVAILABLE while it is down
 * and succeed again, with every acknowledged record intact, once it is back.
 */
#include "sbclient.h"

#include "actors/storage/storage.h"
#include "base/err.h"
#include "base/log.h"
#include "protocols/msgs.h"
#include "test.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>

#define H1 "1111111111111111111111111111111111111111111111111111111111111111"
#define H2 "2222222222222222222222222222222222222222222222222222222222222222"

static int redis_mode;
static int redis_port;
static pid_t redis_pid;
static char *dir;

typedef struct {
    sb_bus_t *bus;
    sb_actor_t *store;
    sbc_t c;
    sb_config_t cfg;
} rig_t;

static void
rig_up(rig_t *r)
{
    char port[16];
    snprintf(port, sizeof port, "%d", redis_port ? redis_port : 6379);
    const char *flags[] = {"--data-dir", dir, "--storage-backend", redis_mode ? "redis" : "sqlite",
                           "--storage-redis-port", port, "--storage-redis-prefix", "t:",
                           "--storage-max-record-bytes", "4096", NULL};
    sb_bus_opts_t bo = {0};
    sb_test_config(&r->cfg, flags);
    CHECK(sb_bus_alloc(&bo, &r->bus) == 0);
    CHECK(sb_actor_spawn(r->bus, &sb_storage_actor, &r->cfg, &r->store) == 0);
    sbc_start(&r->c, r->bus);
}

static void
rig_down(rig_t *r)
{
    CHECK_EQ(sbc_stop(&r->c), 0);
    sb_actor_stop(r->store, 3000);
    CHECK_EQ(sb_actor_join(r->store), 0); /* the loop closed cleanly */
    sb_actor_free(r->store);
    sb_bus_free(r->bus);
    sb_config_fini(&r->cfg);
}

/* put_ok retries while Redis is still connecting (the actor connects asynchronously). */
static int
call_until_up(rig_t *r, const char *kind, const char *json)
{
    int rc = SB_EUNAVAILABLE;
    for (int i = 0; i < 400 && rc == SB_EUNAVAILABLE; i++) {
        rc = st_put(&r->c, kind, json, 0);
        if (rc == SB_EUNAVAILABLE)
            poll(NULL, 0, 25); /* the reconnect has no event visible from here */
    }
    return rc;
}

static void
test_crud(rig_t *r)
{
    char *out;
    const char *u = "{\"username\":\"alice\",\"password_hash\":\"$argon2id$v=19$x\","
                    "\"role\":\"admin\",\"created\":1700000000000}";
    CHECK_EQ(call_until_up(r, "user", u), 0);
    CHECK_EQ(st_get(&r->c, "user", "alice", "", &out), 0);
    CHECK(strcmp(out, "{\"created\":1700000000000,\"password_hash\":\"$argon2id$v=19$x\","
                      "\"role\":\"admin\",\"username\":\"alice\"}") == 0);
    free(out);
    CHECK_EQ(st_get(&r->c, "user", "bob", "", &out), SB_ENOTFOUND);
    /* create_only on an existing key is refused. */
    CHECK_EQ(st_put(&r->c, "user", u, 1), SB_EEXIST);
    /* A full put replaces: the role changes. */
    CHECK_EQ(st_put(&r->c, "user", "{\"username\":\"alice\",\"password_hash\":\"h2\","
                                   "\"role\":\"viewer\"}", 0), 0);
    CHECK_EQ(st_get(&r->c, "user", "alice", NULL, &out), 0);
    CHECK(strstr(out, "\"role\":\"viewer\"") && !strstr(out, "created"));
    free(out);
    sb_test_ok("put/get/replace/create_only");
}

static void
test_api_keys(rig_t *r)
{
    char *out;
    CHECK_EQ(st_put(&r->c, "api_key", "{\"id\":\"k1\",\"key_hash\":\"" H1 "\",\"owner\":\"alice\","
                                      "\"role\":\"user\",\"created\":5}", 1), 0);
    /* Lookup by hash: what auth does with a presented key. */
    CHECK_EQ(st_get(&r->c, "api_key", H1, "key_hash", &out), 0);
    CHECK(strstr(out, "\"id\":\"k1\""));
    free(out);
    CHECK_EQ(st_get(&r->c, "api_key", H2, "key_hash", &out), SB_ENOTFOUND);
    /* Another key with the same hash is refused, and the first is untouched. */
    CHECK_EQ(st_put(&r->c, "api_key", "{\"id\":\"k2\",\"key_hash\":\"" H1 "\",\"owner\":\"bob\","
                                      "\"role\":\"user\"}", 0), SB_EEXIST);
    CHECK_EQ(st_get(&r->c, "api_key", "k2", NULL, &out), SB_ENOTFOUND);
    /* Revoking = putting the record with revoked set. */
    CHECK_EQ(st_put(&r->c, "api_key", "{\"id\":\"k1\",\"key_hash\":\"" H1 "\",\"owner\":\"alice\","
                                      "\"role\":\"user\",\"created\":5,\"revoked\":99}", 0), 0);
    CHECK_EQ(st_get(&r->c, "api_key", H1, "key_hash", &out), 0);
    CHECK(strstr(out, "\"revoked\":99"));
    free(out);
    /* Looking up by a field that is not unique is refused. */
    CHECK_EQ(st_get(&r->c, "api_key", "alice", "owner", &out), SB_EINVAL);
    /* Re-keying (new hash) frees the old hash. */
    CHECK_EQ(st_put(&r->c, "api_key", "{\"id\":\"k1\",\"key_hash\":\"" H2 "\",\"owner\":\"alice\","
                                      "\"role\":\"user\",\"created\":5}", 0), 0);
    CHECK_EQ(st_get(&r->c, "api_key", H1, "key_hash", &out), SB_ENOTFOUND);
    CHECK_EQ(st_put(&r->c, "api_key", "{\"id\":\"k3\",\"key_hash\":\"" H1 "\",\"owner\":\"bob\","
                                      "\"role\":\"viewer\",\"created\":6}", 0), 0);
    sb_test_ok("api keys: lookup by hash, unique hash, revoke");
}

static void
test_lists(rig_t *r)
{
    char json[512], *out;
    uint64_t n;
    int more;
    for (int i = 0; i < 5; i++) {
        snprintf(json, sizeof json, "{\"id\":\"sb-%d\",\"owner\":\"%s\",\"runtime\":\"python\","
                 "\"state\":\"%s\",\"created\":%d,\"limits\":{\"memory_mb\":256},"
                 "\"metadata\":{\"tag\":\"t%d\"}}", i, i % 2 ? "bob" : "alice",
                 i < 3 ? "running" : "ended", 1000 + i, i);
        CHECK_EQ(st_put(&r->c, "sandbox", json, 1), 0);
    }
    CHECK_EQ(st_list(&r->c, "sandbox", "", "", 0, &out, &n, &more), 0);
    CHECK_EQ(n, 5);
    CHECK(!more);
    /* Newest first. */
    CHECK(strstr(out, "sb-4") < strstr(out, "sb-3") && strstr(out, "sb-1") < strstr(out, "sb-0"));
    free(out);
    CHECK_EQ(st_list(&r->c, "sandbox", "alice", "", 0, &out, &n, &more), 0);
    CHECK_EQ(n, 3); /* sb-0, sb-2, sb-4 */
    CHECK(!strstr(out, "\"bob\""));
    free(out);
    CHECK_EQ(st_list(&r->c, "sandbox", "alice", "running", 0, &out, &n, &more), 0);
    CHECK_EQ(n, 2);
    free(out);
    CHECK_EQ(st_list(&r->c, "sandbox", "", "ended", 0, &out, &n, &more), 0);
    CHECK_EQ(n, 2);
    free(out);
    CHECK_EQ(st_list(&r->c, "sandbox", "", "", 2, &out, &n, &more), 0);
    CHECK_EQ(n, 2);
    CHECK(more);
    CHECK(strstr(out, "sb-4") && strstr(out, "sb-3") && !strstr(out, "sb-2"));
    free(out);
    /* A state change moves the record between state lists; an owner change between owners. */
    CHECK_EQ(st_put(&r->c, "sandbox", "{\"id\":\"sb-0\",\"owner\":\"bob\",\"runtime\":\"python\","
                                      "\"state\":\"ended\",\"created\":1000,\"ended\":2000,"
                                      "\"end_reason\":\"killed\"}", 0), 0);
    CHECK_EQ(st_list(&r->c, "sandbox", "alice", "", 0, &out, &n, &more), 0);
    CHECK_EQ(n, 2);
    free(out);
    CHECK_EQ(st_list(&r->c, "sandbox", "", "ended", 0, &out, &n, &more), 0);
    CHECK_EQ(n, 3);
    free(out);
    /* Executions list by status; sessions by owner; users cannot be listed by owner. */
    CHECK_EQ(st_put(&r->c, "execution", "{\"id\":\"ex-1\",\"owner\":\"alice\",\"runtime\":\"python\","
                    "\"code_sha256\":\"" H1 "\",\"status\":\"exited\",\"exit_code\":-1,"
                    "\"wall_ms\":12,\"cpu_ms\":3,\"memory_peak\":1048576,\"created\":7}", 0), 0);
    CHECK_EQ(st_list(&r->c, "execution", "", "exited", 0, &out, &n, &more), 0);
    CHECK_EQ(n, 1);
    CHECK(strstr(out, "\"exit_code\":-1"));
    free(out);
    CHECK_EQ(st_put(&r->c, "session", "{\"id\":\"s-1\",\"owner\":\"alice\",\"sandbox_id\":\"sb-2\","
                    "\"created\":1,\"last_seen\":2,\"expires\":3}", 0), 0);
    CHECK_EQ(st_list(&r->c, "session", "alice", "", 0, &out, &n, &more), 0);
    CHECK_EQ(n, 1);
    free(out);
    CHECK_EQ(st_list(&r->c, "user", "alice", "", 0, &out, &n, &more), SB_EINVAL);
    CHECK_EQ(st_list(&r->c, "sandbox", "", "", 5000, &out, &n, &more), SB_EINVAL);
    sb_test_ok("list: owner/state filters, newest first, limit and more");
}

static void
test_delete(rig_t *r)
{
    char *out;
    uint64_t changed = 9, n;
    int more;
    CHECK_EQ(st_del(&r->c, "sandbox", "sb-1", &changed), 0);
    CHECK_EQ(changed, 1);
    CHECK_EQ(st_get(&r->c, "sandbox", "sb-1", NULL, &out), SB_ENOTFOUND);
    CHECK_EQ(st_del(&r->c, "sandbox", "sb-1", &changed), 0);
    CHECK_EQ(changed, 0);
    CHECK_EQ(st_list(&r->c, "sandbox", "bob", "", 0, &out, &n, &more), 0);
    CHECK(!strstr(out, "sb-1"));
    free(out);
    /* Deleting an API key frees its hash. */
    CHECK_EQ(st_del(&r->c, "api_key", "k3", &changed), 0);
    CHECK_EQ(st_get(&r->c, "api_key", H1, "key_hash", &out), SB_ENOTFOUND);
    sb_test_ok("delete");
}

static void
test_bad_input(rig_t *r)
{
    char *before, *after, big[8192];
    CHECK_EQ(st_get(&r->c, "user", "alice", NULL, &before), 0);
    /* Each bad record: refused with the named error, and the stored record is unchanged. */
    struct {
        const char *kind, *json;
        int err;
    } bad[] = {
        {"user", "{\"username\":\"alice\",\"password_hash\":\"x\",\"role\":\"admin\"", SB_EBADMSG},
        {"user", "[1,2]", SB_EBADMSG},
        {"user", "{\"username\":\"alice\",\"role\":\"admin\"}", SB_EINVAL},
        {"user", "{\"username\":\"alice\",\"password_hash\":\"x\",\"role\":\"root\"}", SB_EINVAL},
        {"user", "{\"username\":\"alice\",\"password_hash\":\"x\",\"role\":\"admin\",\"x\":1}",
         SB_EINVAL},
        {"user", "{\"username\":\"alice\",\"password_hash\":\"x\",\"role\":\"admin\","
                 "\"created\":\"yesterday\"}", SB_EINVAL},
        {"user", "{\"username\":\"alice\",\"password_hash\":\"x\",\"role\":\"admin\","
                 "\"created\":-5}", SB_EINVAL},
        {"user", "{\"username\":\"al ice\",\"password_hash\":\"x\",\"role\":\"admin\"}", SB_EINVAL},
        {"user", "{\"username\":\"alice\",\"username\":\"eve\",\"password_hash\":\"x\","
                 "\"role\":\"admin\"}", SB_EBADMSG},
        {"api_key", "{\"id\":\"k9\",\"key_hash\":\"sk-rawkey\",\"owner\":\"a\",\"role\":\"user\"}",
         SB_EINVAL},
        {"sandbox", "{\"id\":\"s\",\"owner\":\"a\",\"runtime\":\"p\",\"state\":\"x\","
                    "\"limits\":[1]}", SB_EINVAL},
        {"gizmo", "{\"id\":\"x\"}", SB_EINVAL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = st_put(&r->c, bad[i].kind, bad[i].json, 0);
        if (rc != bad[i].err)
            fprintf(stderr, "bad[%zu]: got %s, want %s\n", i, sb_err_name(rc),
                    sb_err_name(bad[i].err));
        CHECK_EQ(rc, bad[i].err);
        CHECK(r->c.errmsg[0] != 0); /* a clear message comes with it */
    }
    /* Over storage.max_record_bytes (4096 here). */
    int n = snprintf(big, sizeof big, "{\"username\":\"alice\",\"role\":\"admin\","
                     "\"password_hash\":\"");
    memset(big + n, 'x', 5000);
    strcpy(big + n + 5000, "\"}");
    CHECK_EQ(st_put(&r->c, "user", big, 0), SB_ETOOBIG);
    /* A body that is not msgpack at all. */
    CHECK_EQ(sbc_call(&r->c, SB_ACTOR_STORAGE, SB_MSG_STORE_PUT, "\xc1\xc1", 2, 5000), SB_EBADMSG);
    /* A key with a space, an unknown `by`. */
    CHECK_EQ(st_get(&r->c, "user", "a b", NULL, &after), SB_EINVAL);
    CHECK_EQ(st_get(&r->c, "user", "alice", "nonsense", &after), SB_EINVAL);
    CHECK_EQ(st_get(&r->c, "user", "alice", NULL, &after), 0);
    CHECK(strcmp(before, after) == 0);
    free(before);
    free(after);
    sb_test_ok("bad input refused with an error reply, nothing changed");
}

static void
test_redis_outage(rig_t *r)
{
    char *out;
    sbc_redis_stop(redis_pid);
    /* Down: a clear unavailable error, quickly. */
    int rc = st_put(&r->c, "user", "{\"username\":\"carol\",\"password_hash\":\"h\","
                                   "\"role\":\"user\"}", 0);
    CHECK_EQ(rc, SB_EUNAVAILABLE);
    CHECK(strstr(r->c.errmsg, "redis"));
    CHECK_EQ(st_get(&r->c, "user", "alice", NULL, &out), SB_EUNAVAILABLE);
    redis_pid = sbc_redis_start(redis_port, dir);
    /* Back: it reconnects by itself; everything acknowledged before is there. */
    CHECK_EQ(call_until_up(r, "user", "{\"username\":\"carol\",\"password_hash\":\"h\","
                                      "\"role\":\"user\"}"), 0);
    CHECK_EQ(st_get(&r->c, "user", "alice", NULL, &out), 0);
    CHECK(strstr(out, "viewer"));
    free(out);
    CHECK_EQ(st_get(&r->c, "api_key", H2, "key_hash", &out), 0);
    free(out);
    sb_test_ok("redis stopped: unavailable; restarted: recovers, nothing acknowledged lost");
}

static void
test_restart(void)
{
    rig_t r;
    char *out;
    uint64_t n;
    int more;
    rig_up(&r);
    CHECK_EQ(call_until_up(&r, "user", "{\"username\":\"dave\",\"password_hash\":\"h\","
                                       "\"role\":\"user\"}"), 0);
    CHECK_EQ(st_get(&r.c, "user", "alice", NULL, &out), 0);
    free(out);
    CHECK_EQ(st_get(&r.c, "sandbox", "sb-0", NULL, &out), 0);
    CHECK(strstr(out, "\"end_reason\":\"killed\""));
    free(out);
    CHECK_EQ(st_list(&r.c, "sandbox", "", "", 0, &out, &n, &more), 0);
    CHECK_EQ(n, 4);
    free(out);
    rig_down(&r);
    sb_test_ok("records survive an actor restart");
}

int
main(void)
{
    rig_t r;
    sb_log_setup(SB_LOG_WARN, 0);
    redis_mode = strcmp(STORE_BACKEND, "redis") == 0;
    dir = sbc_tmpdir("store");
    if (redis_mode) {
        redis_port = sb_test_free_port();
        redis_pid = sbc_redis_start(redis_port, dir);
    }
    rig_up(&r);
    test_crud(&r);
    test_api_keys(&r);
    test_lists(&r);
    test_delete(&r);
    test_bad_input(&r);
    if (redis_mode)
        test_redis_outage(&r);
    rig_down(&r);
    test_restart();
    if (redis_mode)
        sbc_redis_stop(redis_pid);
    sbc_rmrf(dir);
    free(dir);
    return sb_test_done();
}
