/*
 * toml.h: a small TOML reader for soulbox.toml and plugin manifests: [tables], dotted and
 * quoted keys, basic and literal strings (one-line and multi-line, with \uXXXX escapes),
 * integers, floats, booleans, and one-line arrays of those.  Each value is reported with its
 * full dotted key and the line its key is on.  Inline tables, arrays of tables, multi-line
 * arrays and dates are refused with a line-numbered error.  Duplicate keys are not detected
 * here: the callback sees every occurrence.
 */
#ifndef SB_TOML_H
#define SB_TOML_H

#include <stddef.h>

typedef enum { SB_TOML_STR, SB_TOML_INT, SB_TOML_FLOAT, SB_TOML_BOOL, SB_TOML_ARRAY } sb_toml_type_t;

/* Return non-zero from the callback to stop with that error (message already in err). */
typedef int (*sb_toml_cb)(void *ud, const char *key, sb_toml_type_t type, const char *value,
                          int line, char *err, size_t errcap);

/* sb_toml_parse returns 0, or SB_ECONFIG with a message "line N: ..." in err.  Arrays arrive
 * as their elements joined with ','. */
int sb_toml_parse(const char *text, size_t len, sb_toml_cb cb, void *ud, char *err, size_t errcap);

/* One value for sb_toml_parse_ex, borrowed for the duration of the callback.  A scalar is in
 * value (len bytes, NUL-terminated, never holding a NUL).  An array has its n elements in
 * elems (each NUL-terminated) with their types in etypes, and its ','-joined form in value. */
typedef struct {
    sb_toml_type_t type;
    const char *value;
    size_t len;
    size_t n;
    const char *const *elems;
    const sb_toml_type_t *etypes;
} sb_toml_val_t;

typedef int (*sb_toml_cb_ex)(void *ud, const char *key, const sb_toml_val_t *v, int line,
                             char *err, size_t errcap);

/* sb_toml_parse_ex: the same reader, with arrays split into their elements (at most 256). */
int sb_toml_parse_ex(const char *text, size_t len, sb_toml_cb_ex cb, void *ud, char *err,
                     size_t errcap);

#endif
