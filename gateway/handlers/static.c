/*
 * static.c: the browser playground's static files.  GET /playground and /playground/ answer
 * index.html; /playground/vendor/PATH answers PATH under playground.vendor_dir (npm's
 * node_modules with xterm.js, installed at setup, never committed); any other /playground/PATH
 * answers PATH under playground.dir (our own HTML/CSS/JS, gateway/playground/ in the tree).
 *
 * No authentication: these are public files; the page asks for an API key and sends it with
 * each API call itself.  Invariants that keep a request inside its root:
 *   - the (already percent-decoded) path is checked segment by segment: no empty, "." or ".."
 *     segment, no backslash, NUL or control byte, no leading dot (no dotfiles), bounded length;
 *   - the file is opened relative to the root's realpath and its own realpath must still lie
 *     under it (a symlink pointing out is refused, 404 like any missing file);
 *   - only regular files are served, at most STATIC_MAX_FILE bytes, one read on the loop
 *     thread -- these are a handful of small files from the page cache, so a thread pool hop
 *     would cost more than the read.
 * Responses carry the type by extension, nosniff, no-cache (a changed file is seen at once)
 * and, for HTML, a Content-Security-Policy that only allows this origin's scripts.
 */
#include "gateway/api.h"

#include "base/err.h"
#include "base/log.h"
#include "base/alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STATIC_MAX_FILE (8u << 20)
#define STATIC_MAX_PATH 512

/* Defaults that work from a source-tree build; an install puts them under /usr/share. */
#ifndef SB_PLAYGROUND_SOURCE_DIR
#define SB_PLAYGROUND_SOURCE_DIR ""
#endif
#ifndef SB_PLAYGROUND_VENDOR_SOURCE_DIR
#define SB_PLAYGROUND_VENDOR_SOURCE_DIR ""
#endif

typedef struct {
    char root[PATH_MAX];   /* realpath of playground.dir ("" when missing) */
    char vendor[PATH_MAX]; /* realpath of playground.vendor_dir ("" when missing) */
} static_roots_t;

static static_roots_t static_roots; /* the gateway runs one loop: set once in routes() */

static const struct {
    const char *ext, *type;
} static_types[] = {
    {".html", "text/html; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"},
    {".json", "application/json"},
    {".map", "application/json"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".woff2", "font/woff2"},
    {".txt", "text/plain; charset=utf-8"},
};

/* static_type returns the content type for name's extension, NULL when not one we serve. */
static const char *
static_type(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot || strchr(dot, '/'))
        return NULL;
    for (size_t i = 0; i < sizeof static_types / sizeof static_types[0]; i++)
        if (!strcmp(dot, static_types[i].ext))
            return static_types[i].type;
    return NULL;
}

/* static_rel_ok checks a relative path (no leading '/') segment by segment. */
static int
static_rel_ok(const char *p, size_t n)
{
    size_t seg = 0;
    if (n == 0 || n > STATIC_MAX_PATH)
        return 0;
    for (size_t i = 0; i <= n; i++) {
        unsigned char c = i < n ? (unsigned char)p[i] : '/';
        if (c == '/') {
            if (i == seg || p[seg] == '.') /* empty, ".", "..", or a dotfile */
                return 0;
            seg = i + 1;
            continue;
        }
        if (c < 0x20 || c == 0x7f || c == '\\')
            return 0;
    }
    return 1;
}

/* static_resolve puts the realpath of dir into out ("" if it does not exist). */
static void
static_resolve(const char *dir, char out[PATH_MAX], const char *what)
{
    out[0] = 0;
    if (!dir || !*dir || !realpath(dir, out)) {
        out[0] = 0;
        sb_log_warn("SB-GW-PLAYGROUND-DIR",
                    "the playground's %s directory '%s' is missing: %s; /playground answers 404 "
                    "for those files (run scripts/setup-deps.sh, or set playground.%s)",
                    what, dir ? dir : "", strerror(errno),
                    !strcmp(what, "vendor") ? "vendor_dir" : "dir");
    }
}

/* static_serve answers root/rel, or 404. */
static void
static_serve(sb_http_req_t *req, const char *root, const char *rel, size_t n)
{
    char path[PATH_MAX], real[PATH_MAX];
    const char *type;
    struct stat st;
    size_t rl = strlen(root);
    int fd = -1;
    char *body = NULL;

    if (!*root || !static_rel_ok(rel, n) ||
        snprintf(path, sizeof path, "%s/%.*s", root, (int)n, rel) >= (int)sizeof path)
        goto not_found;
    if (!(type = static_type(path)))
        goto not_found;
    /* The resolved file must stay under the root: refuses symlinks that point out. */
    if (!realpath(path, real) || strncmp(real, root, rl) != 0 || real[rl] != '/')
        goto not_found;
    if ((fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0 || fstat(fd, &st) != 0 ||
        !S_ISREG(st.st_mode))
        goto not_found;
    if ((uint64_t)st.st_size > STATIC_MAX_FILE) {
        close(fd);
        sb_http_respond_error(req, 500, "internal", "file too large to serve");
        return;
    }
    body = sb_xmalloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, body + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    sb_http_add_header(req, "X-Content-Type-Options", "nosniff");
    sb_http_add_header(req, "Cache-Control", "no-cache");
    if (!strncmp(type, "text/html", 9)) {
        sb_http_add_header(req, "Content-Security-Policy",
                           "default-src 'self'; script-src 'self'; style-src 'self' "
                           "'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
                           "object-src 'none'; base-uri 'none'; frame-ancestors 'none'");
        sb_http_add_header(req, "X-Frame-Options", "DENY");
        sb_http_add_header(req, "Referrer-Policy", "no-referrer");
    }
    sb_http_respond(req, 200, type, body, got);
    free(body);
    return;
not_found:
    if (fd >= 0)
        close(fd);
    sb_http_respond_error(req, 404, "not_found", "no such file");
}

static void
static_on_index(sb_http_req_t *req, void *ud)
{
    (void)ud;
    static_serve(req, static_roots.root, "index.html", 10);
}

static void
static_on_file(sb_http_req_t *req, void *ud)
{
    sb_str_t p = sb_http_path(req);
    const size_t pre = sizeof "/playground/" - 1, vpre = sizeof "/playground/vendor/" - 1;
    (void)ud;
    /* The router matched "/playground/" "*", so the prefix is there. */
    if (p.len <= pre) {
        static_serve(req, static_roots.root, "index.html", 10);
        return;
    }
    if (p.len > vpre && !memcmp(p.ptr, "/playground/vendor/", vpre)) {
        static_serve(req, static_roots.vendor, p.ptr + vpre, p.len - vpre);
        return;
    }
    static_serve(req, static_roots.root, p.ptr + pre, p.len - pre);
}

void
sb__gw_static_routes(gw_ctx_t *ctx, sb_http_server_t *srv)
{
    const sb_config_t *cfg = ctx->cfg;
    const char *dir = cfg->playground_dir, *vendor = cfg->playground_vendor_dir;
    struct stat st;

    if (!dir || !*dir)
        dir = SB_PLAYGROUND_SOURCE_DIR[0] && stat(SB_PLAYGROUND_SOURCE_DIR, &st) == 0
                  ? SB_PLAYGROUND_SOURCE_DIR
                  : "/usr/share/soulbox/playground";
    if (!vendor || !*vendor)
        vendor = SB_PLAYGROUND_VENDOR_SOURCE_DIR[0] &&
                         stat(SB_PLAYGROUND_VENDOR_SOURCE_DIR, &st) == 0
                     ? SB_PLAYGROUND_VENDOR_SOURCE_DIR
                     : "/usr/share/soulbox/playground-vendor";
    static_resolve(dir, static_roots.root, "page");
    static_resolve(vendor, static_roots.vendor, "vendor");
    sb_http_route(srv, "GET", "/playground", static_on_index, NULL, 0);
    sb_http_route(srv, "GET", "/playground/*", static_on_file, NULL, 0);
}
