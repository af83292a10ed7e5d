/*
 * ctl.c: the control socket to soulbox-init -- frames out (one uv_write per frame, in order)
 * and frames in (buffered, split by sb_frame_next, decoded by the protocols/frame.h decoder
 * of their type and handed to the run or file operation they answer).  A frame that does not decode, or a socket that
 * reaches EOF, means the sandbox is lost: init never sends garbage on its own.
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

/* ---- frames out ------------------------------------------------------------------------ */

typedef struct {
    uv_write_t req;
    size_t len;
    uint8_t data[];
} sbx_write_t;

static void
sbx_write_done(uv_write_t *req, int status)
{
    (void)status; /* a failed write means the socket is gone; EOF handling follows */
    free(req->data);
}

int
sb__sbx_send(sb_sandbox_t *sb, const sb_buf_t *b)
{
    if (sb->state == SBX_DYING || sb->ctl_eof)
        return SB_ECLOSED;
    sbx_write_t *w = malloc(sizeof *w + b->len);
    if (!w)
        return SB_ENOMEM;
    memcpy(w->data, b->data, b->len);
    w->len = b->len;
    w->req.data = w;
    uv_buf_t ub = uv_buf_init((char *)w->data, (unsigned)b->len);
    int rc = uv_write(&w->req, (uv_stream_t *)&sb->ctl, &ub, 1, sbx_write_done);
    if (rc < 0) {
        free(w);
        return rc;
    }
    return 0;
}

int
sb_sandbox_send_raw(sb_sandbox_t *sb, const void *p, size_t n)
{
    sb_buf_t b = {(uint8_t *)p, n, n, 0};
    return sb__sbx_send(sb, &b);
}

void
sb__sbx_on_eof(sb_sandbox_t *sb)
{
    if (sb->ctl_eof)
        return;
    sb->ctl_eof = true;
    uv_read_stop((uv_stream_t *)&sb->ctl);
    if (sb->state == SBX_READY && !sb->killed && !sb->destroying)
        sb_log_warn("SB-SBX-LOST", "sandbox %s: soulbox-init ended unexpectedly", sb->cg_name);
    /* Make sure nothing outlives init (it is dead or dying; pid ns teardown follows, and the
     * cgroup is swept when init has been reaped: sbx_retry). */
    if (!sb->reaped)
        kill(sb->pid, SIGKILL);
    sb__sbx_fail_pending(sb);
    sb__sbx_check_dead(sb);
}

static void
sbx_bad_frame(sb_sandbox_t *sb, uint8_t type)
{
    sb_log_error("SB-SBX-BAD-FRAME", "sandbox %s sent a malformed frame (type %u)", sb->cg_name,
                 (unsigned)type);
    sb_sandbox_kill(sb);
}

/* sbx_frame hands one frame from init to what it answers.  Init never sends garbage on its
 * own: a frame that does not decode means the sandbox is lost. */
static void
sbx_frame(sb_sandbox_t *sb, uint8_t type, const uint8_t *body, size_t len)
{
    sb_sandbox_run_t *r;
    switch (type) {
    case SB_IF_HELLO: {
        sb_if_hello_t f;
        if (sb_if_hello_decode(body, len, &f) != 0) {
            sbx_bad_frame(sb, type);
            return;
        }
        if (sb->state == SBX_CREATING) {
            sb->state = SBX_READY;
            sb_sandbox_create_cb cb = sb->create_cb;
            sb->create_cb = NULL;
            cb(sb, 0, sb->create_ud);
        }
        return;
    }
    case SB_IF_STARTED: {
        sb_if_started_t f;
        if (sb_if_started_decode(body, len, &f) != 0 || f.pid > INT32_MAX) {
            sbx_bad_frame(sb, type);
            return;
        }
        if ((r = sb__sbx_run_find(sb, f.id)) && !r->pid && f.pid > 0) {
            r->pid = (int)f.pid;
            if (r->on_started)
                r->on_started(r, r->pid, r->ud);
        }
        return;
    }
    case SB_IF_OUTPUT: {
        sb_if_output_t f;
        if (sb_if_output_decode(body, len, &f) != 0) {
            sbx_bad_frame(sb, type);
            return;
        }
        if ((r = sb__sbx_run_find(sb, f.id)))
            sb__sbx_run_output(r, f.fd == 2 ? 2 : 1, f.data);
        return;
    }
    case SB_IF_EXIT: {
        sb_if_exit_t f;
        if (sb_if_exit_decode(body, len, &f) != 0) {
            sbx_bad_frame(sb, type);
            return;
        }
        if ((r = sb__sbx_run_find(sb, f.id)))
            sb__sbx_run_finish(r, (int)f.code, (int)f.sig, f.cpu_us);
        return;
    }
    case SB_IF_REPLY: {
        sb_if_reply_t f;
        if (sb_if_reply_decode(body, len, &f) != 0) {
            sbx_bad_frame(sb, type);
            return;
        }
        if ((r = sb__sbx_run_find(sb, f.id)))
            r->error = (int)f.err; /* an EXEC that failed before its process existed */
        else
            sb__sbx_fop_done(sb, &f);
        return;
    }
    case SB_IF_ERROR: {
        sb_if_error_t f;
        if (sb_if_error_decode(body, len, &f) != 0) {
            sbx_bad_frame(sb, type);
            return;
        }
        if (sb->state == SBX_CREATING) {
            sb->create_err = f.err ? (int)f.err : SB_EIO;
            sb_log_error("SB-SBX-INIT-FAIL", "sandbox %s setup failed: %.*s", sb->cg_name,
                         (int)f.msg.len, f.msg.ptr);
            sb_sandbox_kill(sb);
        } else {
            sb_log_warn("SB-SBX-INIT-REFUSED", "sandbox %s refused a frame: %.*s", sb->cg_name,
                        (int)f.msg.len, f.msg.ptr);
        }
        return;
    }
    default:
        sbx_bad_frame(sb, type);
        return;
    }
}

void
sb__sbx_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    sb_sandbox_t *sb = h->data;
    (void)hint;
    if (sb_buf_reserve(&sb->in, 65536) != 0) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    *buf = uv_buf_init((char *)sb->in.data + sb->in.len, 65536);
}

void
sb__sbx_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    sb_sandbox_t *sb = s->data;
    (void)buf;
    if (n < 0) {
        sb__sbx_on_eof(sb);
        return;
    }
    sb->in.len += (size_t)n;
    for (;;) {
        const uint8_t *body;
        size_t len, total;
        uint8_t type;
        int rc = sb_frame_next(&sb->in, &type, &body, &len, &total);
        if (rc < 0) {
            sb_log_error("SB-SBX-BAD-FRAME", "sandbox %s sent an %s frame", sb->cg_name,
                         rc == SB_ETOOBIG ? "oversized" : "empty");
            sb_buf_reset(&sb->in);
            sb_sandbox_kill(sb);
            return;
        }
        if (rc == 0)
            break;
        sbx_frame(sb, type, body, len);
        if (sb->ctl_eof)
            return;
        sb_buf_consume(&sb->in, total);
    }
}
