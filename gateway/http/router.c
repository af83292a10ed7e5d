/*
 * http_router.c: the HTTP server's router and the URL helpers it needs (request-target
 * splitting, percent-decoding, query lookup).
 *
 * Routes are kept in registration order and matched segment by segment against the decoded
 * path: a literal segment must be equal, "{name}" takes any non-empty segment as a parameter,
 * and a trailing "*" takes whatever remains.  A linear scan is deliberate: the gateway has a
 * few dozen routes and a trie would buy nothing measurable at that size.  Nothing here
 * allocates on the request path; everything sized by the request is bounded by the caller's
 * buffers.
 */
#include "http_internal.h"

#include "base/err.h"
#include "base/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int
router_valid_method(const char *m)
{
    size_t n = strlen(m);
    if (n == 0 || n >= sizeof(((sb__http_route_t *)0)->method))
        return 0;
    if (strcmp(m, "*") == 0)
        return 1;
    for (size_t i = 0; i < n; i++)
        if (!((m[i] >= 'A' && m[i] <= 'Z') || m[i] == '-'))
            return 0;
    return 1;
}

int
sb__http_route_add(sb__http_route_t **head, const char *method, const char *pattern,
                   sb_http_handler_t fn, void *ud, size_t max_body)
{
    if (!method || !pattern || !fn || !router_valid_method(method) || pattern[0] != '/')
        return SB_EINVAL;
    sb__http_route_t *r = sb_xcalloc(1, sizeof(*r));
    snprintf(r->method, sizeof(r->method), "%s", method);
    r->pattern = sb_xstrdup(pattern);
    r->segbuf = sb_xstrdup(pattern + 1);
    r->fn = fn;
    r->ud = ud;
    r->max_body = max_body;
    size_t n = 1;
    for (const char *p = r->segbuf; *p; p++)
        n += *p == '/';
    r->segs = sb_xcalloc(n, sizeof(*r->segs));
    if (r->segbuf[0] != '\0') {
        char *s = r->segbuf;
        for (;;) {
            char *slash = strchr(s, '/');
            if (slash)
                *slash = '\0';
            r->segs[r->nsegs++] = s;
            if (!slash)
                break;
            s = slash + 1;
        }
    }
    int nparams = 0;
    for (int i = 0; i < r->nsegs; i++) {
        const char *s = r->segs[i];
        size_t len = strlen(s);
        if (strcmp(s, "*") == 0) {
            if (i != r->nsegs - 1)
                goto fail_pattern;
            r->rest = 1;
            r->nsegs--;
        } else if (len > 0 && s[0] == '{') {
            if (len < 3 || s[len - 1] != '}' || ++nparams > SB__HTTP_MAX_PARAMS)
                goto fail_pattern;
        } else if (strchr(s, '{') || strchr(s, '}') || strchr(s, '*')) {
            goto fail_pattern;
        }
    }
    while (*head)
        head = &(*head)->next;
    *head = r;
    return 0;

fail_pattern:
    sb__http_routes_free(r);
    return SB_EINVAL;
}

void
sb__http_routes_free(sb__http_route_t *head)
{
    while (head) {
        sb__http_route_t *next = head->next;
        free(head->pattern);
        free(head->segbuf);
        free(head->segs);
        free(head);
        head = next;
    }
}

/* router_match_path matches path against r's pattern only (not the method). */
static int
router_match_path(const sb__http_route_t *r, const char *path, size_t len,
                  sb__http_param_t *params, int *nparams)
{
    if (len == 0 || path[0] != '/')
        return 0;
    const char *p = path + 1, *end = path + len;
    int np = 0;
    for (int i = 0; i < r->nsegs; i++) {
        if (p > end)
            return 0;
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *segend = slash ? slash : end;
        size_t seglen = (size_t)(segend - p);
        const char *s = r->segs[i];
        size_t slen = strlen(s);
        if (s[0] == '{') {
            if (seglen == 0)
                return 0;
            params[np].name = (sb_str_t){s + 1, (uint32_t)(slen - 2)};
            params[np].value = (sb_str_t){p, (uint32_t)seglen};
            np++;
        } else if (seglen != slen || memcmp(p, s, slen) != 0) {
            return 0;
        }
        p = segend + 1; /* one past the end when this was the last segment */
    }
    if (r->rest) {
        /* "/a/" "*" takes "/a", "/a/" and "/a/anything/below". */
        if (p <= end && p > path + 1 && p[-1] != '/')
            return 0;
    } else if (r->nsegs == 0) {
        if (len != 1)
            return 0;
    } else if (p != end + 1) {
        return 0;
    }
    *nparams = np;
    return 1;
}

static int
router_method_fits(const sb__http_route_t *r, const char *method)
{
    return strcmp(r->method, "*") == 0 || strcmp(r->method, method) == 0 ||
           (strcmp(method, "HEAD") == 0 && strcmp(r->method, "GET") == 0);
}

/* router_allow_add appends m to the comma list in allow unless it is already there. */
static void
router_allow_add(char *allow, size_t cap, const char *m)
{
    size_t mlen = strlen(m);
    for (const char *p = allow; *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (n == mlen && memcmp(p, m, n) == 0)
            return;
        if (!comma)
            break;
        p = comma + 2;
    }
    size_t used = strlen(allow);
    if (used + mlen + 3 > cap)
        return;
    snprintf(allow + used, cap - used, "%s%s", used ? ", " : "", m);
}

int
sb__http_route_match(const sb__http_route_t *head, const char *method, const char *path,
                     size_t len, const sb__http_route_t **out, sb__http_param_t *params,
                     int *nparams, char *allow, size_t allow_cap)
{
    int path_matched = 0;
    if (allow_cap)
        allow[0] = '\0';
    for (const sb__http_route_t *r = head; r; r = r->next) {
        sb__http_param_t tmp[SB__HTTP_MAX_PARAMS];
        int np = 0;
        if (!router_match_path(r, path, len, tmp, &np))
            continue;
        if (router_method_fits(r, method)) {
            memcpy(params, tmp, sizeof(tmp[0]) * (size_t)np);
            *nparams = np;
            *out = r;
            return 0;
        }
        path_matched = 1;
        if (allow_cap) {
            if (strcmp(r->method, "*") == 0)
                continue;
            router_allow_add(allow, allow_cap, r->method);
            if (strcmp(r->method, "GET") == 0)
                router_allow_add(allow, allow_cap, "HEAD");
        }
    }
    return path_matched ? SB_EUNSUPPORTED : SB_ENOTFOUND;
}

static int
router_hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int
sb__http_pct_decode(const char *in, size_t n, char *out, int plus)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = in[i];
        if (ch == '%') {
            if (i + 2 >= n)
                return -1;
            int hi = router_hex(in[i + 1]), lo = router_hex(in[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            ch = (char)(hi * 16 + lo);
            i += 2;
        } else if (plus && ch == '+') {
            ch = ' ';
        }
        if (ch == '\0')
            return -1;
        out[o++] = ch;
    }
    return (int)o;
}

int
sb__http_split_target(const char *url, size_t len, sb_str_t *path, sb_str_t *query)
{
    const char *p = url, *end = url + len;
    *query = (sb_str_t){NULL, 0};
    if (len == 1 && url[0] == '*') {
        *path = (sb_str_t){url, 1};
        return 0;
    }
    /* absolute-form: skip "scheme://authority". */
    if (len > 7 && (strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0)) {
        p = memchr(url, ':', len) + 3;
        const char *slash = p < end ? memchr(p, '/', (size_t)(end - p)) : NULL;
        if (!slash) {
            /* "http://host" or "http://host?q" means "/". */
            static const char root[] = "/";
            const char *q = p < end ? memchr(p, '?', (size_t)(end - p)) : NULL;
            *path = (sb_str_t){root, 1};
            if (q)
                *query = (sb_str_t){q + 1, (uint32_t)(end - q - 1)};
            return 0;
        }
        p = slash;
    }
    if (p >= end || p[0] != '/')
        return -1;
    const char *hash = memchr(p, '#', (size_t)(end - p));
    if (hash)
        end = hash;
    const char *q = memchr(p, '?', (size_t)(end - p));
    if (q) {
        *path = (sb_str_t){p, (uint32_t)(q - p)};
        *query = (sb_str_t){q + 1, (uint32_t)(end - q - 1)};
    } else {
        *path = (sb_str_t){p, (uint32_t)(end - p)};
    }
    return 0;
}

int
sb__http_query_get(sb_str_t query, const char *name, char *out, size_t cap)
{
    size_t nlen = strlen(name);
    const char *p = query.ptr, *end = query.ptr ? query.ptr + query.len : NULL;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pend = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pend - p));
        const char *kend = eq ? eq : pend;
        size_t klen = (size_t)(kend - p);
        /* Keys are short: decode into a bounded scratch buffer; longer keys cannot match. */
        char key[256];
        if (klen <= sizeof(key)) {
            int k = sb__http_pct_decode(p, klen, key, 1);
            if (k >= 0 && (size_t)k == nlen && memcmp(key, name, nlen) == 0) {
                const char *v = eq ? eq + 1 : pend;
                size_t vlen = (size_t)(pend - v);
                /* A decoded value is never longer than its encoding. */
                char *tmp = malloc(vlen + 1);
                if (!tmp)
                    return SB_ENOMEM;
                int n = sb__http_pct_decode(v, vlen, tmp, 1);
                if (n < 0) {
                    free(tmp);
                    return SB_EINVAL;
                }
                if ((size_t)n + 1 > cap) {
                    free(tmp);
                    return SB_ETOOBIG;
                }
                memcpy(out, tmp, (size_t)n);
                out[n] = '\0';
                free(tmp);
                return n;
            }
        }
        p = amp ? amp + 1 : end;
    }
    return -1;
}
