/*
 * toml.c: line-oriented TOML subset reader (see toml.h).  Config files are the operator's,
 * but the reader still bounds every key and value and never reads past the text.
 */
#include "toml.h"

#include "err.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#define TOML_KEY_MAX 256
#define TOML_VAL_MAX 8192

typedef struct {
    const char *p, *end;
    int line;
    char *err;
    size_t errcap;
} toml_t;

static int
toml_fail(toml_t *t, const char *msg)
{
    snprintf(t->err, t->errcap, "line %d: %s", t->line, msg);
    return SB_ECONFIG;
}

static void
toml_ws(toml_t *t)
{
    while (t->p < t->end && (*t->p == ' ' || *t->p == '\t'))
        t->p++;
}

/* toml_key reads a dotted key (bare or quoted parts) into out. */
static int
toml_key(toml_t *t, char *out)
{
    size_t n = 0;
    for (;;) {
        toml_ws(t);
        if (t->p < t->end && (*t->p == '"' || *t->p == '\'')) {
            char q = *t->p++;
            while (t->p < t->end && *t->p != q && *t->p != '\n') {
                if (n + 1 >= TOML_KEY_MAX)
                    return toml_fail(t, "key too long");
                out[n++] = *t->p++;
            }
            if (t->p >= t->end || *t->p != q)
                return toml_fail(t, "unterminated quoted key");
            t->p++;
        } else {
            const char *s = t->p;
            while (t->p < t->end && (isalnum((unsigned char)*t->p) || *t->p == '_' || *t->p == '-')) {
                if (n + 1 >= TOML_KEY_MAX)
                    return toml_fail(t, "key too long");
                out[n++] = *t->p++;
            }
            if (t->p == s)
                return toml_fail(t, "expected a key");
        }
        toml_ws(t);
        if (t->p < t->end && *t->p == '.') {
            if (n + 1 >= TOML_KEY_MAX)
                return toml_fail(t, "key too long");
            out[n++] = '.';
            t->p++;
            continue;
        }
        out[n] = 0;
        return 0;
    }
}

/* toml_scalar reads one value; strings are unescaped into out. */
static int
toml_scalar(toml_t *t, char *out, size_t *n, sb_toml_type_t *type)
{
    toml_ws(t);
    if (t->p >= t->end)
        return toml_fail(t, "expected a value");
    char c = *t->p;
    if (c == '"' || c == '\'') {
        if (t->end - t->p >= 3 && t->p[1] == c && t->p[2] == c)
            return toml_fail(t, "multi-line strings are not supported");
        t->p++;
        while (t->p < t->end && *t->p != c && *t->p != '\n') {
            char ch = *t->p++;
            if (c == '"' && ch == '\\') {
                if (t->p >= t->end)
                    break;
                switch (*t->p++) {
                case 'n': ch = '\n'; break;
                case 't': ch = '\t'; break;
                case 'r': ch = '\r'; break;
                case '"': ch = '"'; break;
                case '\\': ch = '\\'; break;
                default: return toml_fail(t, "unsupported escape in string");
                }
            }
            if (*n + 1 >= TOML_VAL_MAX)
                return toml_fail(t, "value too long");
            out[(*n)++] = ch;
        }
        if (t->p >= t->end || *t->p != c)
            return toml_fail(t, "unterminated string");
        t->p++;
        *type = SB_TOML_STR;
        return 0;
    }
    const char *s = t->p;
    while (t->p < t->end && !strchr(" \t\r\n,]#", *t->p))
        t->p++;
    size_t len = (size_t)(t->p - s);
    if (len == 0)
        return toml_fail(t, "expected a value");
    if (*n + len + 1 >= TOML_VAL_MAX)
        return toml_fail(t, "value too long");
    if ((len == 4 && !memcmp(s, "true", 4)) || (len == 5 && !memcmp(s, "false", 5))) {
        *type = SB_TOML_BOOL;
    } else {
        int dot = 0, digits = 0;
        for (size_t i = 0; i < len; i++) {
            if (isdigit((unsigned char)s[i]))
                digits++;
            else if (s[i] == '.' || s[i] == 'e' || s[i] == 'E')
                dot = 1;
            else if (!(s[i] == '_' || ((s[i] == '+' || s[i] == '-') && (i == 0 || dot))))
                return toml_fail(t, "unsupported value (strings need quotes)");
        }
        if (!digits)
            return toml_fail(t, "unsupported value (strings need quotes)");
        *type = dot ? SB_TOML_FLOAT : SB_TOML_INT;
    }
    for (size_t i = 0; i < len; i++)
        if (s[i] != '_')
            out[(*n)++] = s[i];
    return 0;
}

static int
toml_eol(toml_t *t)
{
    toml_ws(t);
    if (t->p < t->end && *t->p == '#')
        while (t->p < t->end && *t->p != '\n')
            t->p++;
    if (t->p < t->end && *t->p == '\r')
        t->p++;
    if (t->p < t->end && *t->p != '\n')
        return toml_fail(t, "unexpected text after the value");
    return 0;
}

int
sb_toml_parse(const char *text, size_t len, sb_toml_cb cb, void *ud, char *err, size_t errcap)
{
    toml_t t = {text, text + len, 1, err, errcap};
    char table[TOML_KEY_MAX] = "", key[TOML_KEY_MAX], full[2 * TOML_KEY_MAX + 2];
    static _Thread_local char val[TOML_VAL_MAX];
    int r;

    while (t.p < t.end) {
        toml_ws(&t);
        if (t.p >= t.end)
            break;
        if (*t.p == '#' || *t.p == '\n' || *t.p == '\r') {
            if ((r = toml_eol(&t)) != 0)
                return r;
        } else if (*t.p == '[') {
            t.p++;
            if (t.p < t.end && *t.p == '[')
                return toml_fail(&t, "arrays of tables are not supported");
            if ((r = toml_key(&t, table)) != 0)
                return r;
            if (t.p >= t.end || *t.p != ']')
                return toml_fail(&t, "expected ']'");
            t.p++;
            if ((r = toml_eol(&t)) != 0)
                return r;
        } else {
            size_t n = 0;
            sb_toml_type_t type;
            if ((r = toml_key(&t, key)) != 0)
                return r;
            if (t.p >= t.end || *t.p != '=')
                return toml_fail(&t, "expected '='");
            t.p++;
            toml_ws(&t);
            if (t.p < t.end && *t.p == '[') {
                t.p++;
                type = SB_TOML_ARRAY;
                for (;;) {
                    sb_toml_type_t et;
                    toml_ws(&t);
                    if (t.p < t.end && *t.p == ']') {
                        t.p++;
                        break;
                    }
                    if (n > 0) {
                        if (n + 1 >= TOML_VAL_MAX)
                            return toml_fail(&t, "value too long");
                        val[n++] = ',';
                    }
                    if ((r = toml_scalar(&t, val, &n, &et)) != 0)
                        return r;
                    toml_ws(&t);
                    if (t.p < t.end && *t.p == ',')
                        t.p++;
                    else if (!(t.p < t.end && *t.p == ']'))
                        return toml_fail(&t, "expected ',' or ']' (arrays must fit on one line)");
                }
            } else if (t.p < t.end && *t.p == '{') {
                return toml_fail(&t, "inline tables are not supported");
            } else if ((r = toml_scalar(&t, val, &n, &type)) != 0) {
                return r;
            }
            val[n] = 0;
            if ((r = toml_eol(&t)) != 0)
                return r;
            snprintf(full, sizeof full, "%s%s%s", table, table[0] ? "." : "", key);
            if ((r = cb(ud, full, type, val, t.line, err, errcap)) != 0)
                return r;
        }
        if (t.p < t.end && *t.p == '\n') {
            t.p++;
            t.line++;
        }
    }
    return 0;
}
