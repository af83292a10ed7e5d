/*
 * exec_util.c: the executor's RAW field readers (limits map, string arrays, files).  Every reader walks untrusted msgpack with the bounded reader of
 * protocols/mp.h, refuses what does not match the convention of executor.def with
 * SB_EBADMSG (never a crash), and allocates only after the sizes have been checked.
 */
#include "exec.h"

#include "base/err.h"
#include "protocols/mp.h"
#include "sandbox/env.h"
#include "base/alloc.h"

#include <stdlib.h>
#include <string.h>

int
sb__x_limits(sb_str_t raw, sb_sandbox_limits_t *lim)
{
    sb_mp_reader_t r;
    uint32_t cnt;
    if (raw.len == 0)
        return 0;
    sb_mp_reader_init(&r, raw.ptr, raw.len);
    if (sb_mp_peek(&r) == SB_MP_NIL)
        return 0;
    if (sb_mp_read_map(&r, &cnt) != 0)
        return SB_EBADMSG;
    for (uint32_t i = 0; i < cnt; i++) {
        sb_str_t k;
        uint64_t v;
        if (sb_mp_read_str(&r, &k) != 0)
            return SB_EBADMSG;
        if (sb_str_eq(k, "memory_mb") || sb_str_eq(k, "pids") || sb_str_eq(k, "cpu_pct") ||
            sb_str_eq(k, "disk_mb")) {
            if (sb_mp_read_u64(&r, &v) != 0 || v > (1u << 30))
                return SB_EBADMSG;
            if (sb_str_eq(k, "memory_mb"))
                lim->memory_bytes = v << 20;
            else if (sb_str_eq(k, "pids"))
                lim->pids = (uint32_t)v;
            else if (sb_str_eq(k, "cpu_pct"))
                lim->cpu_pct = (uint32_t)v;
            else
                lim->disk_mb = (uint32_t)v;
        } else if (sb_mp_skip(&r) != 0) {
            return SB_EBADMSG; /* unknown keys are ignored, as in every body */
        }
    }
    return 0;
}

void
sb__x_files_free(sb__xfile_t *f, size_t n)
{
    for (size_t i = 0; f && i < n; i++) {
        free(f[i].path);
        free(f[i].data);
    }
    free(f);
}

int
sb__x_files(sb_str_t raw, sb__xfile_t **out, size_t *n)
{
    sb_mp_reader_t r;
    uint32_t cnt;
    *out = NULL;
    *n = 0;
    if (raw.len == 0)
        return 0;
    sb_mp_reader_init(&r, raw.ptr, raw.len);
    if (sb_mp_peek(&r) == SB_MP_NIL)
        return 0;
    if (sb_mp_read_array(&r, &cnt) != 0 || cnt > 1024)
        return SB_EBADMSG;
    sb__xfile_t *f = sb_xcalloc(cnt ? cnt : 1, sizeof *f);
    for (uint32_t i = 0; i < cnt; i++) {
        uint32_t m;
        sb_str_t path, data;
        uint64_t mode = 0644;
        if (sb_mp_read_array(&r, &m) != 0 || m < 2 || sb_mp_read_str(&r, &path) != 0 ||
            path.len == 0 || path.len > 4096 || memchr(path.ptr, 0, path.len) ||
            sb_mp_read_bin(&r, &data) != 0 || (m >= 3 && sb_mp_read_u64(&r, &mode) != 0) ||
            mode > 07777) {
            sb__x_files_free(f, i);
            return SB_EBADMSG;
        }
        for (uint32_t k = 3; k < m; k++)
            if (sb_mp_skip(&r) != 0) {
                sb__x_files_free(f, i);
                return SB_EBADMSG;
            }
        f[i].path = sb_str_dup(path);
        f[i].data = sb_xmalloc(data.len ? data.len : 1);
        if (data.len)
            memcpy(f[i].data, data.ptr, data.len);
        f[i].len = data.len;
        f[i].mode = (int)mode;
    }
    *out = f;
    *n = cnt;
    return 0;
}
