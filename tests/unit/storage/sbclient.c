/* sbclient.c: the synchronous test client of sbclient.h. */
#include "sbclient.h"

#include "core/err.h"
#include "protocols/msgs.h"
#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void
sbc_on_reply(sb_actor_t *a, int status, const sb_msg_t *reply, void *ud)
{
    sbc_t *c = ud;
    (void)a;
    uv_mutex_lock(&c->mu);
    c->status = status;
    c->errmsg[0] = 0;
    if (reply) {
        c->rtype = reply->type;
        c->rbody = malloc(reply->body_len + 1);
        memcpy(c->rbody, reply->body, reply->body_len);
        c->rbody[reply->body_len] = 0;
        c->rlen = reply->body_len;
        sb_error_t e;
        if (status && reply->type == SB_MSG_ERROR && sb_error_decode(reply, &e) == 0)
            snprintf(c->errmsg, sizeof c->errmsg, "%.*s", (int)e.message.len, e.message.ptr);
    }
    c->done = 1;
    uv_cond_signal(&c->cv);
    uv_mutex_unlock(&c->mu);
}

static void
sbc_on_async(uv_async_t *h)
{
    sbc_t *c = h->data;
    uv_mutex_lock(&c->mu);
    if (!c->have) {
        uv_mutex_unlock(&c->mu);
        return;
    }
    c->have = 0;
    uint8_t dst = c->dst;
    uint16_t type = c->type;
    uint8_t *body = c->body;
    size_t len = c->len;
    uint32_t t = c->timeout_ms;
    c->body = NULL;
    uv_mutex_unlock(&c->mu);
    int r = sb_actor_request(c->actor, sb_addr(dst), type, body, len, t, sbc_on_reply, c, NULL);
    free(body);
    if (r) {
        uv_mutex_lock(&c->mu);
        c->status = r;
        c->done = 1;
        uv_cond_signal(&c->cv);
        uv_mutex_unlock(&c->mu);
    }
}

static int
sbc_init(sb_actor_t *a, void *state)
{
    sbc_t *c = sb_actor_arg(a);
    (void)state;
    c->actor = a;
    uv_async_init(sb_actor_loop(a), &c->async, sbc_on_async);
    c->async.data = c;
    return 0;
}

static void
sbc_stop_op(sb_actor_t *a, void *state)
{
    sbc_t *c = sb_actor_arg(a);
    (void)state;
    if (!uv_is_closing((uv_handle_t *)&c->async))
        uv_close((uv_handle_t *)&c->async, NULL);
}

static const sb_actor_ops_t sbc_ops = {
    .abi = SB_ACTOR_ABI_V1,
    .name = "testclient",
    .kind = SB_ACTOR_CLIENT,
    .state_size = 1,
    .init = sbc_init,
    .stop = sbc_stop_op,
};

void
sbc_start(sbc_t *c, sb_bus_t *bus)
{
    memset(c, 0, sizeof *c);
    CHECK(uv_mutex_init(&c->mu) == 0);
    CHECK(uv_cond_init(&c->cv) == 0);
    CHECK(sb_actor_spawn(bus, &sbc_ops, c, &c->actor) == 0);
}

int
sbc_call(sbc_t *c, uint8_t dst, uint16_t type, const void *body, size_t len, uint32_t timeout_ms)
{
    uv_mutex_lock(&c->mu);
    free(c->rbody);
    c->rbody = NULL;
    c->rlen = 0;
    c->rtype = 0;
    c->done = 0;
    c->have = 1;
    c->dst = dst;
    c->type = type;
    c->body = malloc(len ? len : 1);
    memcpy(c->body, body, len);
    c->len = len;
    c->timeout_ms = timeout_ms;
    uv_mutex_unlock(&c->mu);
    uv_async_send(&c->async);
    uint64_t end = uv_hrtime() + ((uint64_t)timeout_ms + 2000) * 1000000ull;
    uv_mutex_lock(&c->mu);
    while (!c->done) {
        uint64_t now = uv_hrtime();
        if (now >= end)
            break;
        uv_cond_timedwait(&c->cv, &c->mu, end - now);
    }
    int done = c->done, st = c->status;
    uv_mutex_unlock(&c->mu);
    if (!done) {
        fprintf(stderr, "FAIL: no answer to message type %u within %u ms\n", type, timeout_ms);
        exit(1);
    }
    return st;
}

int
sbc_stop(sbc_t *c)
{
    sb_actor_stop(c->actor, 1000);
    int r = sb_actor_join(c->actor);
    sb_actor_free(c->actor);
    free(c->rbody);
    c->rbody = NULL;
    uv_cond_destroy(&c->cv);
    uv_mutex_destroy(&c->mu);
    return r;
}

/* ---- storage wrappers ---------------------------------------------------------------- */

static int
st_send(sbc_t *c, uint16_t type, const sb_msgdef_t *d, const void *req)
{
    sb_buf_t b;
    sb_buf_init(&b, 0);
    CHECK(sb_codec_encode(d, req, &b) == 0);
    int r = sbc_call(c, SB_ACTOR_STORAGE, type, b.data, b.len, 5000);
    sb_buf_fini(&b);
    return r;
}

static sb_msg_t
st_reply(sbc_t *c)
{
    return (sb_msg_t){.type = c->rtype, .body = c->rbody, .body_len = (uint32_t)c->rlen};
}

int
st_put(sbc_t *c, const char *kind, const char *json, int create_only)
{
    sb_store_put_t req = {.kind = sb_str(kind), .record = sb_str(json), .create_only = create_only};
    int r = st_send(c, SB_MSG_STORE_PUT, &sb_store_put_def, &req);
    if (r == 0) {
        sb_msg_t m = st_reply(c);
        sb_store_ack_t ack;
        CHECK_EQ(m.type, SB_MSG_STORE_ACK);
        CHECK(sb_store_ack_decode(&m, &ack) == 0);
        CHECK(sb_str_eq(ack.kind, kind));
    }
    return r;
}

int
st_get(sbc_t *c, const char *kind, const char *key, const char *by, char **out)
{
    sb_store_get_t req = {.kind = sb_str(kind), .key = sb_str(key), .by = sb_str(by)};
    int r = st_send(c, SB_MSG_STORE_GET, &sb_store_get_def, &req);
    *out = NULL;
    if (r == 0) {
        sb_msg_t m = st_reply(c);
        sb_store_record_t rec;
        CHECK_EQ(m.type, SB_MSG_STORE_RECORD);
        CHECK(sb_store_record_decode(&m, &rec) == 0);
        *out = sb_str_dup(rec.record);
    }
    return r;
}

int
st_list(sbc_t *c, const char *kind, const char *owner, const char *state, uint64_t limit,
        char **out, uint64_t *count, int *more)
{
    sb_store_list_t req = {.kind = sb_str(kind), .owner = sb_str(owner), .state = sb_str(state),
                           .limit = limit};
    int r = st_send(c, SB_MSG_STORE_LIST, &sb_store_list_def, &req);
    *out = NULL;
    if (r == 0) {
        sb_msg_t m = st_reply(c);
        sb_store_records_t recs;
        CHECK_EQ(m.type, SB_MSG_STORE_RECORDS);
        CHECK(sb_store_records_decode(&m, &recs) == 0);
        *out = sb_str_dup(recs.records);
        if (count)
            *count = recs.count;
        if (more)
            *more = recs.more;
    }
    return r;
}

int
st_del(sbc_t *c, const char *kind, const char *key, uint64_t *changed)
{
    sb_store_del_t req = {.kind = sb_str(kind), .key = sb_str(key)};
    int r = st_send(c, SB_MSG_STORE_DEL, &sb_store_del_def, &req);
    if (r == 0) {
        sb_msg_t m = st_reply(c);
        sb_store_ack_t ack;
        CHECK(sb_store_ack_decode(&m, &ack) == 0);
        if (changed)
            *changed = ack.changed;
    }
    return r;
}

/* ---- environment --------------------------------------------------------------------- */

void
test_config(sb_config_t *cfg, const char *const *flags)
{
    char *argv[64], *rest[64], err[512];
    char *env[] = {NULL};
    int n = 0, nrest = 0;
    for (; flags && flags[n]; n++)
        argv[n] = (char *)flags[n];
    argv[n] = NULL;
    if (sb_config_load(cfg, n, argv, env, &nrest, rest, err, sizeof err) != 0) {
        fprintf(stderr, "FAIL: config: %s\n", err);
        exit(1);
    }
}

char *
test_tmpdir(const char *tag)
{
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/sb-%s-XXXXXX", base, tag);
    CHECK(mkdtemp(p) != NULL);
    return p;
}

void
test_rmrf(const char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", dir);
}

static int
test_port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

pid_t
test_redis_start(int port, const char *dir)
{
    char portarg[16];
    snprintf(portarg, sizeof portarg, "%d", port);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        /* If the test dies (a CHECK, a timeout), its redis-server must not outlive it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        execl("/usr/bin/redis-server", "redis-server", "--port", portarg, "--bind", "127.0.0.1",
              "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", dir,
              "--daemonize", "no", (char *)NULL);
        _exit(127);
    }
    /* Wait for it to accept connections (or to die), up to 10 s: the event is the listening
     * socket appearing, which offers nothing to block on from outside, so poll on a 10 ms tick. */
    for (int i = 0; i < 1000; i++) {
        if (test_port_open(port))
            return pid;
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            fprintf(stderr, "FAIL: redis-server exited at start\n");
            exit(1);
        }
        poll(NULL, 0, 10);
    }
    fprintf(stderr, "FAIL: redis-server did not start listening on %d\n", port);
    kill(pid, SIGKILL);
    exit(1);
}

void
test_redis_stop(pid_t pid)
{
    kill(pid, SIGTERM);
    if (sb_test_wait_exit(pid, 10000) < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
}
