/*
 * auditor.c: the auditor actor -- the append-only, HMAC-chained audit trail (file format in
 * audit_log.h) fed by AUDIT_EVENT requests from every actor, and AUDIT_QUERY for the API.
 *
 * Group commit: an event is validated and formatted as soon as it is handled, appended to an
 * in-memory batch, and its reply held back.  A uv_check handle -- it runs right after the
 * loop's I/O phase, i.e. after this wake-up's whole mailbox drain -- writes the batch with
 * write(2), fdatasync()s audit.log, rewrites audit.head (fdatasync'd too), and only then sends
 * every AUDIT_ACK.  So an acknowledged event is on disk (survives kill -9), and N events that
 * arrived together cost one fdatasync, not N.
 *
 * Failure: if the write or a sync fails, the log is truncated back to where the batch began,
 * seq and the chain are rewound, every event of the batch gets an SB_EIO error reply and an
 * SB-AUDIT-WRITE-FAIL line is logged.  Nothing is dropped silently: a sender either has an
 * ack or an error.
 *
 * Backpressure: while the auditor syncs, senders' messages wait in its bounded mailbox; when
 * that and the sender's bounded outbox are full, sb_actor_request returns SB_EAGAIN to the
 * sender (core/actor.h), who must retry or fail its own request -- never drop the event.
 *
 * The sync happens on the loop thread on purpose: the auditor does nothing else, and
 * blocking here is exactly what makes the backpressure above reach the senders.
 *
 * Start: the key is loaded (or made), the tail of audit.log read to continue seq and the
 * chain; a partial last line (a write cut by a crash, never acknowledged) is truncated.  If
 * audit.head is ahead of the log (records deleted from its end) seq continues after the
 * head's, so the gap stays visible to `soulbox audit verify` forever.
 *
 * Expects sb_actor_arg to be the process's const sb_config_t * (data_dir).
 */
#include "auditor.h"

#include "audit_log.h"

#include "core/config.h"
#include "base/err.h"
#include "base/log.h"
#include "protocols/msgs.h"
#include "base/alloc.h"
#include "base/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define AUDIT_BATCH_MAX 4096   /* events per group commit; more wait for the next one */
#define AUDIT_QUERY_MAX 1000
#define AUDIT_QUERY_DEFAULT 100
#define AUDIT_REPLY_CAP (3u << 20)

typedef struct {
    sb_replyto_t to;
    uint64_t seq;
    int wants_reply;
} audit_waiter_t;

typedef struct {
    sb_actor_t *a;
    char dir[PATH_MAX];
    uint8_t key[SB__AUDIT_KEY_LEN];
    int log_fd, head_fd;
    uint64_t seq;                       /* last seq handed out */
    char mac[SB__AUDIT_HEX + 1];        /* last mac handed out */
    /* the batch being built (committed in the check callback) */
    sb_buf_t batch;
    audit_waiter_t *waiters;
    size_t nwaiters;
    uint64_t batch_seq0;                /* seq and mac before the batch, to rewind */
    char batch_mac0[SB__AUDIT_HEX + 1];
    uv_check_t check;
    int check_open;
    uint64_t written, failed;
} audit_state;

/* ---- start: recover the tail --------------------------------------------------------- */

static int
audit_recover(audit_state *s, char *err, size_t cap)
{
    struct stat st;
    char head[SB__AUDIT_HEAD_LEN + 1], head_mac[SB__AUDIT_HEX + 1];
    uint64_t head_seq = 0;

    strcpy(s->mac, "0000000000000000000000000000000000000000000000000000000000000000");
    s->seq = 0;
    if (fstat(s->log_fd, &st) != 0) {
        snprintf(err, cap, "stat audit.log: %s", strerror(errno));
        return SB_EIO;
    }
    if (st.st_size > 0) {
        /* Read the last 64 KiB (a record is at most ~17 KiB) and find the last full line. */
        off_t from = st.st_size > 65536 ? st.st_size - 65536 : 0;
        size_t n = (size_t)(st.st_size - from);
        char *buf = sb_xmalloc(n + 1);
        if (pread(s->log_fd, buf, n, from) != (ssize_t)n) {
            free(buf);
            snprintf(err, cap, "read audit.log: %s", strerror(errno));
            return SB_EIO;
        }
        buf[n] = 0;
        size_t end = n;
        while (end > 0 && buf[end - 1] != '\n')
            end--;
        if (end < n) {
            sb_log_warn("SB-AUDIT-TORN-TAIL", "audit.log ends in %zu bytes of an unacknowledged "
                        "record cut by a crash; dropping them", n - end);
            if (ftruncate(s->log_fd, from + (off_t)end) != 0 || fdatasync(s->log_fd) != 0) {
                free(buf);
                snprintf(err, cap, "truncate audit.log: %s", strerror(errno));
                return SB_EIO;
            }
        }
        if (end > 0) {
            size_t start = end - 1;
            while (start > 0 && buf[start - 1] != '\n')
                start--;
            size_t len = end - 1 - start, blen;
            const char *mac;
            json_t *o = NULL;
            if (sb__audit_split(buf + start, len, &blen, &mac) == 0) {
                memcpy(s->mac, mac, SB__AUDIT_HEX);
                buf[start + blen] = '}'; /* the signed body: the record without its mac */
                o = json_loadb(buf + start, blen + 1, 0, NULL);
            }
            json_t *js = json_object_get(o, "seq");
            if (!json_is_integer(js)) {
                json_decref(o);
                free(buf);
                snprintf(err, cap, "the last record of audit.log is unreadable; run `soulbox "
                         "audit verify` and move the damaged log aside");
                return SB_EIO;
            }
            s->seq = (uint64_t)json_integer_value(js);
            json_decref(o);
        }
        free(buf);
    }
    if (pread(s->head_fd, head, SB__AUDIT_HEAD_LEN, 0) == SB__AUDIT_HEAD_LEN) {
        head[SB__AUDIT_HEAD_LEN] = 0;
        if (sscanf(head, "%20" SCNu64 " %64s", &head_seq, head_mac) == 2 && head_seq > s->seq) {
            sb_log_error("SB-AUDIT-TAMPER", "audit.log ends at seq %" PRIu64 " but audit.head "
                         "says %" PRIu64 ": records were deleted from its end; continuing after "
                         "seq %" PRIu64 " so the gap stays visible", s->seq, head_seq, head_seq);
            s->seq = head_seq;
        }
    }
    return 0;
}

static int
audit_open(audit_state *s, const char *dir, char *err, size_t cap)
{
    char path[PATH_MAX + 16];
    struct stat st;
    int r;

    if (snprintf(s->dir, sizeof s->dir, "%s", dir) >= (int)sizeof s->dir) {
        snprintf(err, cap, "data_dir too long");
        return SB_ECONFIG;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, cap, "cannot create data_dir %s: %s", dir, strerror(errno));
        return SB_EIO;
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, cap, "data_dir %s is not a directory", dir);
        return SB_EIO;
    }
    if ((r = sb__audit_key(dir, 1, s->key, err, cap)) != 0)
        return r;
    snprintf(path, sizeof path, "%s/audit.log", dir);
    s->log_fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (s->log_fd < 0) {
        snprintf(err, cap, "cannot open %.400s: %s", path, strerror(errno));
        return SB_EIO;
    }
    snprintf(path, sizeof path, "%s/audit.head", dir);
    s->head_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (s->head_fd < 0) {
        snprintf(err, cap, "cannot open %.400s: %s", path, strerror(errno));
        return SB_EIO;
    }
    /* New files: make their directory entries durable before anything is acknowledged. */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return audit_recover(s, err, cap);
}

/* ---- group commit ----------------------------------------------------------------------- */

static int
audit_write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void
audit_commit(audit_state *s)
{
    struct stat st;
    char head[SB__AUDIT_HEAD_LEN + 1];
    off_t before = fstat(s->log_fd, &st) == 0 ? st.st_size : -1;
    int ok = before >= 0 && audit_write_all(s->log_fd, s->batch.data, s->batch.len) == 0 &&
             fdatasync(s->log_fd) == 0;
    if (ok) {
        snprintf(head, sizeof head, "%020" PRIu64 " %s\n", s->seq, s->mac);
        ok = pwrite(s->head_fd, head, SB__AUDIT_HEAD_LEN, 0) == SB__AUDIT_HEAD_LEN &&
             fdatasync(s->head_fd) == 0;
        /* A head that failed to update only lags the log; verify accepts a lagging head. */
    }
    int e = errno;
    for (size_t i = 0; i < s->nwaiters; i++) {
        audit_waiter_t *w = &s->waiters[i];
        if (!w->wants_reply)
            continue;
        if (ok) {
            sb_buf_t *b = sb_actor_scratch(s->a); /* reset by each call */
            sb_audit_ack_t ack = {.seq = w->seq};
            if (sb_audit_ack_encode(&ack, b) == 0)
                sb_actor_reply(s->a, &w->to, SB_MSG_AUDIT_ACK, 0, b->data, b->len);
        } else {
            sb_actor_reply_error(s->a, &w->to, SB_EIO, "audit log write failed: %s",
                                 strerror(e));
        }
    }
    if (ok) {
        s->written += s->nwaiters;
    } else {
        s->failed += s->nwaiters;
        sb_log_error("SB-AUDIT-WRITE-FAIL", "could not write %zu audit events to %s/audit.log: "
                     "%s; senders got errors", s->nwaiters, s->dir, strerror(e));
        /* Rewind: the file and the chain continue from the last durable record. */
        if (before >= 0 && ftruncate(s->log_fd, before) != 0)
            sb_log_error("SB-AUDIT-TRUNCATE-FAIL", "cannot truncate audit.log back: %s",
                         strerror(errno));
        s->seq = s->batch_seq0;
        memcpy(s->mac, s->batch_mac0, sizeof s->mac);
    }
    sb_buf_reset(&s->batch);
    s->nwaiters = 0;
}

static void
audit_on_check(uv_check_t *h)
{
    audit_state *s = h->data;
    if (s->nwaiters)
        audit_commit(s);
}

/* ---- events ------------------------------------------------------------------------------ */

static int
audit_type_ok(sb_str_t t)
{
    if (t.len == 0)
        return 0;
    for (uint32_t i = 0; i < t.len; i++) {
        char c = t.ptr[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return 0;
    }
    return 1;
}

/* Field names that would carry contents rather than hashes: refused, so a careless sender
 * cannot put code or file data into the audit trail. */
static const char *const audit_forbidden[] = {"code", "content", "contents", "data", "source",
                                              "stdin", "stdout", "stderr", "output", "body",
                                              "password", "api_key", "token", "secret"};

static int
audit_fields_ok(sb_str_t f, char *err, size_t cap)
{
    if (f.len == 0)
        return 0;
    json_t *o = json_loadb(f.ptr, f.len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        snprintf(err, cap, "audit fields must be a JSON object");
        return SB_EINVAL;
    }
    for (size_t i = 0; i < sizeof audit_forbidden / sizeof audit_forbidden[0]; i++) {
        if (json_object_get(o, audit_forbidden[i])) {
            snprintf(err, cap, "audit fields must not carry '%s': send its sha256 instead "
                     "(e.g. code_sha256)", audit_forbidden[i]);
            json_decref(o);
            return SB_EINVAL;
        }
    }
    json_decref(o);
    return 0;
}

static int
audit_event(audit_state *s, const sb_msg_t *m)
{
    sb_audit_event_t ev;
    sb_replyto_t to = sb_replyto(m);
    const char *bad = NULL;
    char err[256], actor[80], principal[300], type[80], mac[SB__AUDIT_HEX + 1];
    int r;

    if ((r = sb_codec_decode(&sb_audit_event_def, m->body, m->body_len, &ev, &bad)) != 0) {
        sb_log_warn("SB-AUDIT-BAD-EVENT", "malformed audit event (field %s) from %s",
                    bad ? bad : "?", sb_actor_kind_name(m->src_actor));
        if (m->flags & SB_MF_REQ)
            sb_actor_reply_error(s->a, &to, r, "malformed audit event: field '%s'",
                                 bad ? bad : "?");
        return 0;
    }
    if (!audit_type_ok(ev.type)) {
        snprintf(err, sizeof err, "audit event type must be 1-64 of [a-z0-9._-]");
        r = SB_EINVAL;
    } else {
        r = audit_fields_ok(ev.fields, err, sizeof err);
    }
    if (r) {
        sb_log_warn("SB-AUDIT-BAD-EVENT", "refused audit event from %s: %s",
                    sb_actor_kind_name(m->src_actor), err);
        if (m->flags & SB_MF_REQ)
            sb_actor_reply_error(s->a, &to, r, "%s", err);
        return 0;
    }
    if (s->nwaiters >= AUDIT_BATCH_MAX)
        audit_commit(s); /* bound the batch (and its memory) */
    if (s->nwaiters == 0) {
        s->batch_seq0 = s->seq;
        memcpy(s->batch_mac0, s->mac, sizeof s->mac);
    }
    snprintf(type, sizeof type, "%.*s", (int)ev.type.len, ev.type.ptr);
    if (ev.actor.len)
        snprintf(actor, sizeof actor, "%.*s", (int)ev.actor.len, ev.actor.ptr);
    else
        snprintf(actor, sizeof actor, "%s", sb_actor_kind_name(m->src_actor));
    snprintf(principal, sizeof principal, "%.*s", (int)ev.principal.len, ev.principal.ptr);
    uint64_t ts = ev.ts_ms ? ev.ts_ms : sb_now_real_ms();
    r = sb__audit_line(&s->batch, s->key, s->seq + 1, ts, actor, principal, type, ev.fields.ptr,
                       ev.fields.len, s->mac, mac);
    if (r) {
        /* Invalid UTF-8 in a string is what jansson refuses here. */
        if (m->flags & SB_MF_REQ)
            sb_actor_reply_error(s->a, &to, SB_EINVAL, "audit event is not valid UTF-8 JSON");
        return 0;
    }
    s->seq++;
    memcpy(s->mac, mac, sizeof mac);
    s->waiters = sb_xrealloc(s->waiters, (s->nwaiters + 1) * sizeof *s->waiters);
    s->waiters[s->nwaiters++] = (audit_waiter_t){to, s->seq, !!(m->flags & SB_MF_REQ)};
    if (!s->check_open)
        audit_commit(s); /* stopping: no check callback any more, commit now */
    return 0;
}

/* ---- query -------------------------------------------------------------------------------- */

static int
audit_match_str(json_t *o, const char *k, sb_str_t want)
{
    if (want.len == 0)
        return 1;
    json_t *v = json_object_get(o, k);
    return json_is_string(v) && sb_str_eq(want, json_string_value(v));
}

/* audit_query scans the log from the start.  It reads the file on the loop: fine for the
 * admin-only, rare query it serves; a large log wants an index (or a work thread) later. */
static int
audit_query(audit_state *s, const sb_msg_t *m)
{
    sb_audit_query_t q;
    sb_replyto_t to = sb_replyto(m);
    char path[PATH_MAX + 16], *line = NULL;
    size_t cap = 0;
    ssize_t n;
    sb_buf_t out;
    uint64_t count = 0, last = 0;
    int more = 0, r;

    if ((r = sb_audit_query_decode(m, &q)) != 0)
        return r;
    if (q.limit > AUDIT_QUERY_MAX)
        return SB_EINVAL;
    uint64_t limit = q.limit ? q.limit : AUDIT_QUERY_DEFAULT;
    if (s->nwaiters)
        audit_commit(s); /* answer with everything handled so far */
    snprintf(path, sizeof path, "%s/audit.log", s->dir);
    FILE *f = fopen(path, "re");
    if (!f) {
        sb_actor_reply_error(s->a, &to, SB_EIO, "cannot read audit.log: %s", strerror(errno));
        return 0;
    }
    sb_buf_init(&out, 0);
    sb_buf_append(&out, "[", 1);
    while ((n = getline(&line, &cap, f)) > 0) {
        if (line[n - 1] != '\n')
            break;
        json_t *o = json_loadb(line, (size_t)n - 1, 0, NULL);
        json_t *js = json_object_get(o, "seq"), *jt = json_object_get(o, "ts_ms");
        uint64_t seq = json_is_integer(js) ? (uint64_t)json_integer_value(js) : 0;
        uint64_t ts = json_is_integer(jt) ? (uint64_t)json_integer_value(jt) : 0;
        int hit = o && seq > q.after_seq && (!q.since_ms || ts >= q.since_ms) &&
                  (!q.until_ms || ts < q.until_ms) && audit_match_str(o, "actor", q.actor) &&
                  audit_match_str(o, "type", q.type) &&
                  audit_match_str(o, "principal", q.principal);
        json_decref(o);
        if (!hit)
            continue;
        if (count == limit || out.len + (size_t)n + 2 > AUDIT_REPLY_CAP) {
            more = 1;
            break;
        }
        if (count++)
            sb_buf_append(&out, ",", 1);
        sb_buf_append(&out, line, (size_t)n - 1);
        last = seq;
    }
    free(line);
    fclose(f);
    sb_buf_append(&out, "]", 1);
    sb_audit_records_t rec = {.records = {(const char *)out.data, (uint32_t)out.len},
                              .count = count, .last_seq = last, .more = more};
    sb_buf_t *b = sb_actor_scratch(s->a);
    if (sb_audit_records_encode(&rec, b) == 0)
        sb_actor_reply(s->a, &to, SB_MSG_AUDIT_RECORDS, 0, b->data, b->len);
    sb_buf_fini(&out);
    return 0;
}

/* ---- actor ------------------------------------------------------------------------------- */

static int
audit_handle(sb_actor_t *a, void *state, const sb_msg_t *m)
{
    audit_state *s = state;
    (void)a;
    switch (m->type) {
    case SB_MSG_AUDIT_EVENT: return audit_event(s, m);
    case SB_MSG_AUDIT_QUERY: return audit_query(s, m);
    default: return SB_EUNKNOWN_TYPE;
    }
}

static int
audit_init(sb_actor_t *a, void *state)
{
    audit_state *s = state;
    const sb_config_t *cfg = sb_actor_arg(a);
    char err[512];
    int r;

    s->a = a;
    s->log_fd = s->head_fd = -1;
    sb_buf_init(&s->batch, 0);
    if (!cfg) {
        sb_log_error("SB-AUDIT-NO-CONFIG", "the auditor needs the configuration as its argument");
        return SB_ECONFIG;
    }
    if ((r = audit_open(s, cfg->data_dir, err, sizeof err)) != 0) {
        sb_log_error("SB-AUDIT-OPEN-FAIL", "%s", err);
        return r;
    }
    uv_check_init(sb_actor_loop(a), &s->check);
    s->check.data = s;
    uv_check_start(&s->check, audit_on_check);
    s->check_open = 1;
    sb_log_info("SB-AUDIT-READY", "audit log %s/audit.log, next seq %" PRIu64, s->dir,
                s->seq + 1);
    return 0;
}

static void
audit_stop(sb_actor_t *a, void *state)
{
    audit_state *s = state;
    (void)a;
    if (s->nwaiters)
        audit_commit(s);
    if (s->check_open) {
        uv_close((uv_handle_t *)&s->check, NULL);
        s->check_open = 0;
    }
}

static void
audit_fini(sb_actor_t *a, void *state)
{
    audit_state *s = state;
    (void)a;
    if (s->nwaiters)
        audit_commit(s); /* events that arrived during the stop */
    if (s->log_fd >= 0)
        close(s->log_fd);
    if (s->head_fd >= 0)
        close(s->head_fd);
    sb_buf_fini(&s->batch);
    free(s->waiters);
}

const sb_actor_ops_t sb_auditor_actor = {
    .abi = SB_ACTOR_ABI_V1,
    .name = "auditor",
    .kind = SB_ACTOR_AUDITOR,
    .state_size = sizeof(audit_state),
    .init = audit_init,
    .handle = audit_handle,
    .stop = audit_stop,
    .fini = audit_fini,
};
