/*
 * mpw.h: the msgpack writer -- the only one in the tree: the codecs, the init frames, the RAW
 * field values and every handler that builds msgpack use it.  Values are appended to an
 * sb_buf_t; each writer returns 0 or SB_ETOOBIG/SB_ENOMEM when the buffer's limit is reached
 * (and may then leave a partial value: discard the buffer on error).  Pure functions over
 * the caller's buffer; thread-safe as long as the buffer is not shared.
 */
#ifndef SB_MPW_H
#define SB_MPW_H

#include "base/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Writer: append a msgpack value to b.  The buffer's limit bounds everything; writers return
 * 0 or SB_ETOOBIG/SB_ENOMEM (and may leave a partial frame: discard b on error). */
int sb_mpw_map(sb_buf_t *b, uint32_t n);
int sb_mpw_array(sb_buf_t *b, uint32_t n);
int sb_mpw_str(sb_buf_t *b, const void *s, size_t n);
int sb_mpw_cstr(sb_buf_t *b, const char *s);
int sb_mpw_bin(sb_buf_t *b, const void *s, size_t n);
int sb_mpw_uint(sb_buf_t *b, uint64_t v);
int sb_mpw_int(sb_buf_t *b, int64_t v);
int sb_mpw_bool(sb_buf_t *b, bool v);
int sb_mpw_nil(sb_buf_t *b);
int sb_mpw_f64(sb_buf_t *b, double v);
/* An array of C strings (NULL-terminated vector; NULL writes an empty array). */
int sb_mpw_strv(sb_buf_t *b, const char *const *v);
/* key + value shortcuts */
int sb_mpw_kuint(sb_buf_t *b, const char *k, uint64_t v);
int sb_mpw_kint(sb_buf_t *b, const char *k, int64_t v);
int sb_mpw_kstr(sb_buf_t *b, const char *k, const void *s, size_t n);
int sb_mpw_kbin(sb_buf_t *b, const char *k, const void *s, size_t n);
int sb_mpw_kbool(sb_buf_t *b, const char *k, bool v);

#endif
