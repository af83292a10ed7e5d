/*
 * files.c: file operations and the process list, performed by soulbox-init inside the
 * sandbox's own mount namespace (so the kernel, not string checks, confines every path).
 * Each operation is one request frame and one REPLY frame matched by id; pending ones fail
 * with SB_ECLOSED when the sandbox dies.
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

/* ---- file operations ------------------------------------------------------------------- */

static int
sbx_fop(sb_sandbox_t *sb, uint32_t t, const char *path, const char *path2, const void *data,
        size_t len, int64_t num, bool flag, sb_file_cb cb, void *ud)
{
    if (sb->state != SBX_READY || sb->killed)
        return SB_ECLOSED;
    if ((path && strlen(path) > SB_FRAME_PATH_MAX) || (path2 && strlen(path2) > SB_FRAME_PATH_MAX))
        return SB_ETOOBIG;
    if (len > SB_FRAME_DATA_MAX)
        return SB_ETOOBIG;
    if (t != SB_IF_PS && (!path || !*path))
        return SB_EINVAL;
    sb_buf_t b;
    sb_buf_init(&b, SB_FRAME_MAX + 4);
    uint64_t id = ++sb->next_id;
    sb_str_t ps = sb_str(path), ps2 = sb_str(path2), dv = {data ? data : "", (uint32_t)len};
    uint64_t un = num < 0 ? 0 : (uint64_t)num;
    int rc;
    switch (t) {
    case SB_IF_PS: rc = sb_if_ps_write(&b, &(sb_if_ps_t){.id = id}); break;
    case SB_IF_FREAD:
        rc = sb_if_fread_write(&b, &(sb_if_fread_t){.id = id, .path = ps, .max = un});
        break;
    case SB_IF_FWRITE:
        rc = sb_if_fwrite_write(&b, &(sb_if_fwrite_t){.id = id, .path = ps, .data = dv,
                                                      .mode = un, .append = flag});
        break;
    case SB_IF_FLIST:
        rc = sb_if_flist_write(&b, &(sb_if_flist_t){.id = id, .path = ps, .depth = un});
        break;
    case SB_IF_FSTAT: rc = sb_if_fstat_write(&b, &(sb_if_fstat_t){.id = id, .path = ps}); break;
    case SB_IF_MKDIR:
        rc = sb_if_mkdir_write(&b, &(sb_if_mkdir_t){.id = id, .path = ps, .mode = un});
        break;
    case SB_IF_REMOVE: rc = sb_if_remove_write(&b, &(sb_if_remove_t){.id = id, .path = ps}); break;
    case SB_IF_RENAME:
        rc = sb_if_rename_write(&b, &(sb_if_rename_t){.id = id, .path = ps, .path2 = ps2});
        break;
    default: rc = SB_EINVAL; break;
    }
    if (rc < 0) {
        sb_buf_fini(&b);
        return rc;
    }
    rc = sb__sbx_send(sb, &b);
    sb_buf_fini(&b);
    if (rc < 0)
        return rc;
    sbx_fop_t *f = sb_xcalloc(1, sizeof *f);
    f->id = id;
    f->kind = (int)t;
    f->cb = cb;
    f->ud = ud;
    f->next = sb->fops;
    sb->fops = f;
    return 0;
}

int
sb_sandbox_file_read(sb_sandbox_t *sb, const char *path, uint64_t max, sb_file_cb cb, void *ud)
{
    return sbx_fop(sb, SB_IF_FREAD, path, NULL, NULL, 0, (int64_t)max, false, cb, ud);
}
int
sb_sandbox_file_write(sb_sandbox_t *sb, const char *path, const void *data, size_t len, int mode,
                      bool append, sb_file_cb cb, void *ud)
{
    return sbx_fop(sb, SB_IF_FWRITE, path, NULL, data ? data : "", len, mode, append, cb, ud);
}
int
sb_sandbox_file_list(sb_sandbox_t *sb, const char *path, int depth, sb_file_cb cb, void *ud)
{
    return sbx_fop(sb, SB_IF_FLIST, path, NULL, NULL, 0, depth, false, cb, ud);
}
int
sb_sandbox_file_stat(sb_sandbox_t *sb, const char *path, sb_file_cb cb, void *ud)
{
    return sbx_fop(sb, SB_IF_FSTAT, path, NULL, NULL, 0, 0, false, cb, ud);
}
int
sb_sandbox_file_mkdir(sb_sandbox_t *sb, const char *path, sb_file_cb cb, void *ud)
{
    return sbx_fop(sb, SB_IF_MKDIR, path, NULL, NULL, 0, 0755, false, cb, ud);
}
int
sb_sandbox_file_remove(sb_sandbox_t *sb, const char *path, sb_file_cb cb, void *ud)
{
    return sbx_fop(sb, SB_IF_REMOVE, path, NULL, NULL, 0, 0, false, cb, ud);
}
int
sb_sandbox_file_rename(sb_sandbox_t *sb, const char *from, const char *to, sb_file_cb cb, void *ud)
{
    if (!to || !*to)
        return SB_EINVAL;
    return sbx_fop(sb, SB_IF_RENAME, from, to, NULL, 0, 0, false, cb, ud);
}
int
sb_sandbox_ps(sb_sandbox_t *sb, sb_file_cb cb, void *ud)
{
    return sbx_fop(sb, SB_IF_PS, NULL, NULL, NULL, 0, 0, false, cb, ud);
}

/* Decode the "ents" array of a list or ps reply. */
/* sbx_entries decodes a REPLY's ents: an array of entry maps (init.def). */
static sb_file_entry_t *
sbx_entries(const sb_if_reply_t *f, size_t *n)
{
    sb_mp_reader_t r;
    uint32_t cnt;
    *n = 0;
    if (!f->ents.len)
        return NULL;
    sb_mp_reader_init(&r, f->ents.ptr, f->ents.len);
    if (sb_mp_read_array(&r, &cnt) != 0 || cnt > sb_mp_left(&r))
        return NULL;
    sb_file_entry_t *v = sb_xcalloc(cnt ? cnt : 1, sizeof *v);
    for (uint32_t i = 0; i < cnt; i++) {
        sb_str_t raw;
        sb_if_entry_t e;
        if (sb_mp_read_raw(&r, &raw) != 0 ||
            sb_if_entry_decode((const uint8_t *)raw.ptr, raw.len, &e) != 0)
            break;
        v[i].path = sb_str_dup(e.path.len ? e.path : e.cmd);
        v[i].type = (int)e.type;
        v[i].size = e.size;
        v[i].mode = (int)e.mode;
        v[i].mtime = e.mtime;
        v[i].pid = (int)e.pid;
        v[i].ppid = (int)e.ppid;
        v[i].state = e.state.len ? e.state.ptr[0] : 0;
        (*n)++;
    }
    return v;
}

void
sb__sbx_fop_done(sb_sandbox_t *sb, const sb_if_reply_t *f)
{
    sbx_fop_t *op = NULL;
    for (sbx_fop_t **pp = &sb->fops; *pp; pp = &(*pp)->next)
        if ((*pp)->id == f->id) {
            op = *pp;
            *pp = op->next;
            break;
        }
    if (!op)
        return;
    sb_file_result_t res;
    memset(&res, 0, sizeof res);
    res.err = (int)f->err;
    res.data = (const uint8_t *)f->data.ptr;
    res.len = f->data.len;
    res.size = f->size;
    res.type = (int)f->type;
    res.mode = (int)f->mode;
    res.mtime = f->mtime;
    sb_file_entry_t *ents = NULL;
    if (!res.err && (op->kind == SB_IF_FLIST || op->kind == SB_IF_PS)) {
        ents = sbx_entries(f, &res.nents);
        res.ents = ents;
    }
    if (op->cb)
        op->cb(&res, op->ud);
    for (size_t i = 0; i < res.nents; i++)
        free(ents[i].path);
    free(ents);
    free(op);
}
