/*
 * toml.c: line-oriented TOML subset reader (see toml.h).  Config files are the operator's and
 * plugin manifests a plugin author's, but the reader still bounds every key, value and array
 * and never reads past the text.  Only multi-line strings span lines; the line reported for a
 * value is the line its key is on.
 */
#include "toml.h"

#include "err.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#define TOML_KEY_MAX 256
#define TOML_VAL_MAX 16384
#define TOML_ELEMS_MAX 256

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

static int
toml_put(toml_t *t, char *out, size_t *n, char ch)
{
    if (*n + 1 >= TOML_VAL_MAX)
        return toml_fail(t, "value too long");
    out[(*n)++] = ch;
    return 0;
}

/* toml_utf8 appends code point cp as UTF-8. */
static int
toml_utf8(toml_t *t, char *out, size_t *n, unsigned long cp)
{
    unsigned char u[4];
    int k;
    if (cp < 0x80) {
        u[0] = (unsigned char)cp;
        k = 1;
    } else if (cp < 0x800) {
        u[0] = (unsigned char)(0xc0 | (cp >> 6));
        u[1] = (unsigned char)(0x80 | (cp & 0x3f));
        k = 2;
    } else if (cp < 0x10000) {
        u[0] = (unsigned char)(0xe0 | (cp >> 12));
        u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (unsigned char)(0x80 | (cp & 0x3f));
        k = 3;
    } else {
        u[0] = (unsigned char)(0xf0 | (cp >> 18));
        u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        u[3] = (unsigned char)(0x80 | (cp & 0x3f));
        k = 4;
    }
    for (int i = 0; i < k; i++)
        if (toml_put(t, out, n, (char)u[i]) != 0)
            return SB_ECONFIG;
    return 0;
}

/* toml_escape decodes the escape after a backslash in a basic string. */
static int
toml_escape(toml_t *t, char *out, size_t *n)
{
    if (t->p >= t->end)
        return toml_fail(t, "unterminated string");
    char e = *t->p++;
    switch (e) {
    case 'n': return toml_put(t, out, n, '\n');
    case 't': return toml_put(t, out, n, '\t');
    case 'r': return toml_put(t, out, n, '\r');
    case 'b': return toml_put(t, out, n, '\b');
    case 'f': return toml_put(t, out, n, '\f');
    case 'e': return toml_put(t, out, n, '\x1b');
    case '"': return toml_put(t, out, n, '"');
    case '\\': return toml_put(t, out, n, '\\');
    case 'u':
    case 'U': {
        int digits = e == 'u' ? 4 : 8;
        unsigned long cp = 0;
        for (int i = 0; i < digits; i++) {
            if (t->p >= t->end || !isxdigit((unsigned char)*t->p))
                return toml_fail(t, "bad unicode escape in string");
            int h = tolower((unsigned char)*t->p++);
            cp = cp * 16 + (unsigned long)(isdigit(h) ? h - '0' : h - 'a' + 10);
        }
        /* NUL is refused too: values are handed on as C strings. */
        if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return toml_fail(t, "bad unicode escape in string");
        return toml_utf8(t, out, n, cp);
    }
    default: return toml_fail(t, "unsupported escape in string");
    }
}

/* toml_multiline reads the body of a multi-line string whose three opening quotes q are
 * consumed: a newline right after them is dropped; in a basic string a backslash at the end
 * of a line joins it to the next non-blank text; up to two quotes may sit before the closing
 * three. */
static int
toml_multiline(toml_t *t, char *out, size_t *n, char q)
{
    if (t->end - t->p >= 1 && *t->p == '\n') {
        t->p++;
        t->line++;
    } else if (t->end - t->p >= 2 && t->p[0] == '\r' && t->p[1] == '\n') {
        t->p += 2;
        t->line++;
    }
    for (;;) {
        if (t->p >= t->end)
            return toml_fail(t, "unterminated multi-line string");
        if (t->end - t->p >= 3 && t->p[0] == q && t->p[1] == q && t->p[2] == q) {
            int extra = 0;
            while (extra < 2 && t->end - t->p > 3 + extra && t->p[3 + extra] == q)
                extra++;
            for (int i = 0; i < extra; i++)
                if (toml_put(t, out, n, q) != 0)
                    return SB_ECONFIG;
            t->p += 3 + extra;
            return 0;
        }
        char ch = *t->p++;
        if (ch == '\n')
            t->line++;
        if (q == '"' && ch == '\\') {
            const char *s = t->p;
            while (s < t->end && (*s == ' ' || *s == '\t' || *s == '\r'))
                s++;
            if (s < t->end && *s == '\n') {
                t->p = s;
                while (t->p < t->end && strchr(" \t\r\n", *t->p)) {
                    if (*t->p == '\n')
                        t->line++;
                    t->p++;
                }
                continue;
            }
            if (toml_escape(t, out, n) != 0)
                return SB_ECONFIG;
            continue;
        }
        if (toml_put(t, out, n, ch) != 0)
            return SB_ECONFIG;
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
        *type = SB_TOML_STR;
        if (t->end - t->p >= 3 && t->p[1] == c && t->p[2] == c) {
            t->p += 3;
            return toml_multiline(t, out, n, c);
        }
        t->p++;
        while (t->p < t->end && *t->p != c && *t->p != '\n') {
            char ch = *t->p++;
            if (c == '"' && ch == '\\') {
                if (toml_escape(t, out, n) != 0)
                    return SB_ECONFIG;
            } else if (toml_put(t, out, n, ch) != 0) {
                return SB_ECONFIG;
            }
        }
        if (t->p >= t->end || *t->p != c)
            return toml_fail(t, "unterminated string");
        t->p++;
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

/* Per-thread scratch: values are bounded, and a parse never nests. */
typedef struct {
    char val[TOML_VAL_MAX];    /* a scalar, or array elements each ending in NUL */
    char joined[TOML_VAL_MAX]; /* an array's ','-joined form */
    const char *elems[TOML_ELEMS_MAX];
    sb_toml_type_t etypes[TOML_ELEMS_MAX];
} toml_scratch_t;

static _Thread_local toml_scratch_t toml_scratch;

/* toml_array reads the elements of a one-line array whose '[' is consumed into v. */
static int
toml_array(toml_t *t, toml_scratch_t *s, sb_toml_val_t *v)
{
    size_t n = 0, ne = 0, j = 0;
    int r;
    for (;;) {
        toml_ws(t);
        if (t->p < t->end && *t->p == ']') {
            t->p++;
            break;
        }
        if (ne == TOML_ELEMS_MAX)
            return toml_fail(t, "too many array elements");
        size_t start = n;
        if ((r = toml_scalar(t, s->val, &n, &s->etypes[ne])) != 0)
            return r;
        if (toml_put(t, s->val, &n, 0) != 0)
            return SB_ECONFIG;
        s->elems[ne++] = s->val + start;
        toml_ws(t);
        if (t->p < t->end && *t->p == ',')
            t->p++;
        else if (!(t->p < t->end && *t->p == ']'))
            return toml_fail(t, "expected ',' or ']' (arrays must fit on one line)");
    }
    for (size_t i = 0; i < ne; i++) {
        size_t el = strlen(s->elems[i]);
        if (j + el + 2 >= TOML_VAL_MAX)
            return toml_fail(t, "value too long");
        if (i > 0)
            s->joined[j++] = ',';
        memcpy(s->joined + j, s->elems[i], el);
        j += el;
    }
    s->joined[j] = 0;
    v->type = SB_TOML_ARRAY;
    v->value = s->joined;
    v->len = j;
    v->n = ne;
    v->elems = s->elems;
    v->etypes = s->etypes;
    return 0;
}

int
sb_toml_parse_ex(const char *text, size_t len, sb_toml_cb_ex cb, void *ud, char *err,
                 size_t errcap)
{
    toml_t t = {text, text + len, 1, err, errcap};
    char table[TOML_KEY_MAX] = "", key[TOML_KEY_MAX], full[2 * TOML_KEY_MAX + 2];
    toml_scratch_t *s = &toml_scratch;
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
            sb_toml_val_t v = {0};
            int line = t.line;
            if ((r = toml_key(&t, key)) != 0)
                return r;
            if (t.p >= t.end || *t.p != '=')
                return toml_fail(&t, "expected '='");
            t.p++;
            toml_ws(&t);
            if (t.p < t.end && *t.p == '[') {
                t.p++;
                if ((r = toml_array(&t, s, &v)) != 0)
                    return r;
            } else if (t.p < t.end && *t.p == '{') {
                return toml_fail(&t, "inline tables are not supported");
            } else {
                size_t n = 0;
                if ((r = toml_scalar(&t, s->val, &n, &v.type)) != 0)
                    return r;
                s->val[n] = 0;
                v.value = s->val;
                v.len = n;
            }
            if ((r = toml_eol(&t)) != 0)
                return r;
            snprintf(full, sizeof full, "%s%s%s", table, table[0] ? "." : "", key);
            if ((r = cb(ud, full, &v, line, err, errcap)) != 0)
                return r;
        }
        if (t.p < t.end && *t.p == '\n') {
            t.p++;
            t.line++;
        }
    }
    return 0;
}

typedef struct {
    sb_toml_cb cb;
    void *ud;
} toml_compat_t;

static int
toml_compat_cb(void *ud, const char *key, const sb_toml_val_t *v, int line, char *err,
               size_t errcap)
{
    toml_compat_t *c = ud;
    return c->cb(c->ud, key, v->type, v->value, line, err, errcap);
}

int
sb_toml_parse(const char *text, size_t len, sb_toml_cb cb, void *ud, char *err, size_t errcap)
{
    toml_compat_t c = {cb, ud};
    return sb_toml_parse_ex(text, len, toml_compat_cb, &c, err, errcap);
}
