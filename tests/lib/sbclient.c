/* sbclient.c: the synchronous test client of sbclient.h. */
#include "sbclient.h"

#include "base/err.h"
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

void
sbc_start(sbc_t *c, sb_bus_t *bus)
{
    memset(c, 0, sizeof *c);
    CHECK(sb_client_open(bus, &c->cl) == 0);
}

int
sbc_call(sbc_t *c, uint8_t dst, uint16_t type, const void *body, size_t len, uint32_t timeout_ms)
{
    int st = sb_client_call(c->cl, sb_addr(dst), type, body, len, timeout_ms, &c->reply);
    c->status = st;
    c->rtype = c->reply.type;
    c->rbody = c->reply.body;
    c->rlen = c->reply.len;
    snprintf(c->errmsg, sizeof c->errmsg, "%s", c->reply.error);
    return st;
}

int
sbc_stop(sbc_t *c)
{
    int r = sb_client_close(c->cl);
    sb_reply_fini(&c->reply);
    c->rbody = NULL;
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


char *
sbc_tmpdir(const char *tag)
{
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/sb-%s-XXXXXX", base, tag);
    CHECK(mkdtemp(p) != NULL);
    return p;
}

void
sbc_rmrf(const char *dir)
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
sbc_redis_start(int port, const char *dir)
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
sbc_redis_stop(pid_t pid)
{
    kill(pid, SIGTERM);
    if (sb_test_wait_exit(pid, 10000) < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
}
