/*
 * toml.h: a small TOML reader for soulbox.toml: [tables], dotted and quoted keys, basic and
 * literal strings, integers, floats, booleans, and one-line arrays of those.  Each value is
 * reported with its full dotted key; arrays arrive as their elements joined with ','.
 * Inline tables, multi-line strings and dates are refused with a line-numbered error.
 */
#ifndef SB_TOML_H
#define SB_TOML_H

#include <stddef.h>

typedef enum { SB_TOML_STR, SB_TOML_INT, SB_TOML_FLOAT, SB_TOML_BOOL, SB_TOML_ARRAY } sb_toml_type_t;

/* Return non-zero from the callback to stop with that error (message already in err). */
typedef int (*sb_toml_cb)(void *ud, const char *key, sb_toml_type_t type, const char *value,
                          int line, char *err, size_t errcap);

/* sb_toml_parse returns 0, or SB_ECONFIG with a message "line N: ..." in err. */
int sb_toml_parse(const char *text, size_t len, sb_toml_cb cb, void *ud, char *err, size_t errcap);

#endif
