/*
 * plugin.c: runtime plugins (see plugin.h and docs/plugins.md).  Reads every
 * <dir>/<name>/manifest.toml with the core TOML reader, validates it strictly (unknown keys,
 * wrong types, duplicates, missing required keys, unknown placeholders: each a line-numbered
 * error), and optionally probes the host for the runtime's version.
 *
 * Invariants: a loaded set is immutable and every string in it is owned by the set; every
 * command template in a loaded plugin has at least one element, uses only the known
 * placeholders, and has {args} only as a whole element; no two plugins share a name or alias
 * (case-insensitively).
 *
 * The probe runs version_cmd without a shell, looked up in the sandbox's PATH rather than the
 * caller's (a host may have pyenv shims or ~/.cargo/bin first in its PATH that no sandbox
 * sees), with stdout and stderr on one pipe (java -version prints to stderr), and a 5 s cap.
 */
#include "plugin.h"

#include "base/buf.h"
#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"
#include "base/toml.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PLUGIN_MANIFEST_MAX (64u << 10)
#define PLUGIN_NAME_MAX 32
#define PLUGIN_PROBE_MS 5000
#define PLUGIN_PROBE_OUT 4096
#define PLUGIN_SANDBOX_PATH "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"

#ifndef SB_PLUGINS_SOURCE_DIR
#define SB_PLUGINS_SOURCE_DIR ""
#endif

struct sb_plugins {
    sb_plugin_t **v;
    size_t n;
};

/* The keys a manifest may hold, with their types; `seen` lines catch duplicates. */
typedef enum { PK_STR, PK_STRS, PK_CMD, PK_INT } plugin_kind_t;

typedef struct {
    const char *key;
    plugin_kind_t kind;
    size_t off; /* into sb_plugin_t */
    uint64_t max; /* PK_INT: the largest value accepted */
} plugin_key_t;

#define PKEY(k, kind, field, max) {k, kind, offsetof(sb_plugin_t, field), max}
static const plugin_key_t plugin_keys[] = {
    PKEY("name", PK_STR, name, 0),
    PKEY("aliases", PK_STRS, aliases, 0),
    PKEY("display", PK_STR, display, 0),
    PKEY("source_file", PK_STR, source_file, 0),
    PKEY("version_cmd", PK_CMD, version_cmd, 0),
    PKEY("compile_cmd", PK_CMD, compile_cmd, 0),
    PKEY("run_cmd", PK_CMD, run_cmd, 0),
    PKEY("env", PK_STRS, env, 0),
    PKEY("kernel_cmd", PK_CMD, kernel_cmd, 0),
    PKEY("hello", PK_STR, hello, 0),
    PKEY("hello_expect", PK_STR, hello_expect, 0),
    PKEY("packages", PK_STRS, packages, 0),
    PKEY("compile.timeout_ms", PK_INT, compile_timeout_ms, 3600000),
    PKEY("compile.memory_mb", PK_INT, compile_memory_mb, 65536),
    PKEY("compile.cpu_ms", PK_INT, compile_cpu_ms, 3600000),
    PKEY("run.timeout_ms", PK_INT, run_timeout_ms, 3600000),
    PKEY("run.memory_mb", PK_INT, run_memory_mb, 65536),
};
#define PLUGIN_NKEYS (sizeof plugin_keys / sizeof plugin_keys[0])

typedef struct {
    sb_plugin_t *p;
    int seen[PLUGIN_NKEYS]; /* line of the key's first occurrence, 0 if absent */
} plugin_parse_t;

static const char *const plugin_placeholders[] = {"file", "dir", "name", "bin", "args", "plugin"};

static void
plugin_strv_free(char **v)
{
    if (!v)
        return;
    for (char **s = v; *s; s++)
        free(*s);
    free(v);
}

void
sb_plugin_argv_free(char **argv)
{
    plugin_strv_free(argv);
}

static void
plugin_free(sb_plugin_t *p)
{
    if (!p)
        return;
    free(p->name);
    plugin_strv_free(p->aliases);
    free(p->display);
    free(p->dir);
    free(p->source_file);
    plugin_strv_free(p->version_cmd);
    plugin_strv_free(p->compile_cmd);
    plugin_strv_free(p->run_cmd);
    plugin_strv_free(p->env);
    plugin_strv_free(p->kernel_cmd);
    free(p->hello);
    free(p->hello_expect);
    plugin_strv_free(p->packages);
    free(p->version);
    free(p);
}

void
sb_plugins_free(sb_plugins_t *ps)
{
    if (!ps)
        return;
    for (size_t i = 0; i < ps->n; i++)
        plugin_free(ps->v[i]);
    free(ps->v);
    free(ps);
}

size_t
sb_plugins_count(const sb_plugins_t *ps)
{
    return ps ? ps->n : 0;
}

const sb_plugin_t *
sb_plugins_at(const sb_plugins_t *ps, size_t i)
{
    return ps && i < ps->n ? ps->v[i] : NULL;
}

const sb_plugin_t *
sb_plugins_find(const sb_plugins_t *ps, const char *name)
{
    if (!ps || !name)
        return NULL;
    for (size_t i = 0; i < ps->n; i++) {
        const sb_plugin_t *p = ps->v[i];
        if (!strcasecmp(p->name, name))
            return p;
        for (char **a = p->aliases; a && *a; a++)
            if (!strcasecmp(*a, name))
                return p;
    }
    return NULL;
}

/* A runtime name or alias: 1..32 of [a-z0-9_+.-], starting with a letter or digit. */
static int
plugin_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > PLUGIN_NAME_MAX || !isalnum((unsigned char)s[0]))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || strchr("_+.-", s[i])))
            return 0;
    return 1;
}

/* plugin_tmpl_check validates one command element (or env value): every '{' opens a known
 * placeholder ("{{" and "}}" are literal braces); {args} only as the whole element. */
static int
plugin_tmpl_check(const char *s, const char *key, int line, char *err, size_t errcap)
{
    for (const char *c = s; *c; c++) {
        if (c[0] == '}' && c[1] == '}') {
            c++;
            continue;
        }
        if (*c != '{')
            continue;
        if (c[1] == '{') {
            c++;
            continue;
        }
        const char *close = strchr(c, '}');
        if (!close) {
            snprintf(err, errcap, "line %d: %s: unclosed '{' in \"%s\" (write {{ for a brace)",
                     line, key, s);
            return SB_ECONFIG;
        }
        size_t n = (size_t)(close - c - 1), k;
        for (k = 0; k < sizeof plugin_placeholders / sizeof plugin_placeholders[0]; k++)
            if (strlen(plugin_placeholders[k]) == n && !memcmp(plugin_placeholders[k], c + 1, n))
                break;
        if (k == sizeof plugin_placeholders / sizeof plugin_placeholders[0]) {
            snprintf(err, errcap,
                     "line %d: %s: unknown placeholder {%.*s} (known: {file} {dir} {name} {bin} "
                     "{args} {plugin})",
                     line, key, (int)(n > 40 ? 40 : n), c + 1);
            return SB_ECONFIG;
        }
        if (!strcmp(plugin_placeholders[k], "args") && strcmp(s, "{args}") != 0) {
            snprintf(err, errcap, "line %d: %s: {args} must be a whole element, not part of \"%s\"",
                     line, key, s);
            return SB_ECONFIG;
        }
        c = close;
    }
    return 0;
}

static char **
plugin_strv_dup(const sb_toml_val_t *v)
{
    char **out = sb_xcalloc(v->n + 1, sizeof *out);
    for (size_t i = 0; i < v->n; i++)
        out[i] = sb_xstrdup(v->elems[i]);
    return out;
}

static const char *
plugin_type_name(sb_toml_type_t t)
{
    switch (t) {
    case SB_TOML_STR: return "a string";
    case SB_TOML_INT: return "an integer";
    case SB_TOML_FLOAT: return "a float";
    case SB_TOML_BOOL: return "a boolean";
    default: return "an array";
    }
}

static int
plugin_toml_cb(void *ud, const char *key, const sb_toml_val_t *v, int line, char *err,
               size_t errcap)
{
    plugin_parse_t *pp = ud;
    size_t k;
    for (k = 0; k < PLUGIN_NKEYS; k++)
        if (!strcmp(plugin_keys[k].key, key))
            break;
    if (k == PLUGIN_NKEYS) {
        snprintf(err, errcap, "line %d: unknown key '%s'", line, key);
        return SB_ECONFIG;
    }
    const plugin_key_t *pk = &plugin_keys[k];
    if (pp->seen[k]) {
        snprintf(err, errcap, "line %d: duplicate key '%s' (first on line %d)", line, key,
                 pp->seen[k]);
        return SB_ECONFIG;
    }
    pp->seen[k] = line;
    void *field = (char *)pp->p + pk->off;

    switch (pk->kind) {
    case PK_STR:
        if (v->type != SB_TOML_STR) {
            snprintf(err, errcap, "line %d: '%s' must be a string, not %s", line, key,
                     plugin_type_name(v->type));
            return SB_ECONFIG;
        }
        *(char **)field = sb_xstrdup(v->value);
        return 0;
    case PK_INT: {
        if (v->type != SB_TOML_INT) {
            snprintf(err, errcap, "line %d: '%s' must be an integer, not %s", line, key,
                     plugin_type_name(v->type));
            return SB_ECONFIG;
        }
        char *end;
        errno = 0;
        long long x = strtoll(v->value, &end, 10);
        if (errno || *end || x <= 0 || (uint64_t)x > pk->max) {
            snprintf(err, errcap, "line %d: '%s' must be between 1 and %llu", line, key,
                     (unsigned long long)pk->max);
            return SB_ECONFIG;
        }
        *(uint64_t *)field = (uint64_t)x;
        return 0;
    }
    case PK_STRS:
    case PK_CMD:
        if (v->type != SB_TOML_ARRAY) {
            snprintf(err, errcap, "line %d: '%s' must be an array of strings, not %s", line, key,
                     plugin_type_name(v->type));
            return SB_ECONFIG;
        }
        for (size_t i = 0; i < v->n; i++) {
            if (v->etypes[i] != SB_TOML_STR) {
                snprintf(err, errcap, "line %d: '%s' must be an array of strings (element %zu is %s)",
                         line, key, i + 1, plugin_type_name(v->etypes[i]));
                return SB_ECONFIG;
            }
        }
        if (pk->kind == PK_CMD) {
            if (v->n == 0 || !v->elems[0][0]) {
                snprintf(err, errcap, "line %d: '%s' needs at least a program", line, key);
                return SB_ECONFIG;
            }
            for (size_t i = 0; i < v->n; i++)
                if (plugin_tmpl_check(v->elems[i], key, line, err, errcap) != 0)
                    return SB_ECONFIG;
        }
        if (!strcmp(key, "env")) {
            for (size_t i = 0; i < v->n; i++) {
                const char *e = v->elems[i], *eq = strchr(e, '=');
                int ok = eq && eq > e && (isalpha((unsigned char)e[0]) || e[0] == '_');
                for (const char *c = e; ok && c < eq; c++)
                    ok = isalnum((unsigned char)*c) || *c == '_';
                if (!ok) {
                    snprintf(err, errcap, "line %d: env: \"%s\" is not NAME=value", line, e);
                    return SB_ECONFIG;
                }
                if (plugin_tmpl_check(eq + 1, key, line, err, errcap) != 0)
                    return SB_ECONFIG;
                if (strstr(eq + 1, "{args}")) {
                    snprintf(err, errcap, "line %d: env: {args} is not allowed in env", line);
                    return SB_ECONFIG;
                }
            }
        }
        if (!strcmp(key, "aliases")) {
            for (size_t i = 0; i < v->n; i++) {
                if (!plugin_name_ok(v->elems[i])) {
                    snprintf(err, errcap,
                             "line %d: alias \"%s\" must be 1-%d of a-z 0-9 _ + . - starting "
                             "with a letter or digit",
                             line, v->elems[i], PLUGIN_NAME_MAX);
                    return SB_ECONFIG;
                }
            }
        }
        *(char ***)field = plugin_strv_dup(v);
        return 0;
    }
    return 0;
}

/* plugin_validate: what needs the whole manifest (required keys, names, file name). */
static int
plugin_validate(plugin_parse_t *pp, char *err, size_t errcap)
{
    sb_plugin_t *p = pp->p;
    static const char *const required[] = {"name", "source_file", "run_cmd", "hello",
                                           "hello_expect"};
    for (size_t r = 0; r < sizeof required / sizeof required[0]; r++) {
        for (size_t k = 0; k < PLUGIN_NKEYS; k++) {
            if (!strcmp(plugin_keys[k].key, required[r]) && !pp->seen[k]) {
                snprintf(err, errcap, "missing required key '%s'", required[r]);
                return SB_ECONFIG;
            }
        }
    }
    int name_line = 0, src_line = 0;
    for (size_t k = 0; k < PLUGIN_NKEYS; k++) {
        if (!strcmp(plugin_keys[k].key, "name"))
            name_line = pp->seen[k];
        if (!strcmp(plugin_keys[k].key, "source_file"))
            src_line = pp->seen[k];
    }
    if (!plugin_name_ok(p->name)) {
        snprintf(err, errcap,
                 "line %d: name \"%s\" must be 1-%d of a-z 0-9 _ + . - starting with a letter "
                 "or digit",
                 name_line, p->name, PLUGIN_NAME_MAX);
        return SB_ECONFIG;
    }
    for (char **a = p->aliases; a && *a; a++) {
        if (!strcasecmp(*a, p->name)) {
            snprintf(err, errcap, "alias \"%s\" repeats the name", *a);
            return SB_ECONFIG;
        }
        for (char **b = p->aliases; b < a; b++) {
            if (!strcasecmp(*a, *b)) {
                snprintf(err, errcap, "alias \"%s\" is listed twice", *a);
                return SB_ECONFIG;
            }
        }
    }
    /* A plain file name: it is written to the sandbox's workspace and must not escape it. */
    const char *s = p->source_file;
    int ok = s[0] && s[0] != '.' && strlen(s) <= 64;
    for (const char *c = s; ok && *c; c++)
        ok = isalnum((unsigned char)*c) || strchr("._-", *c);
    if (!ok) {
        snprintf(err, errcap,
                 "line %d: source_file \"%s\" must be a plain file name (a-z A-Z 0-9 . _ -, "
                 "not starting with a dot)",
                 src_line, s);
        return SB_ECONFIG;
    }
    if (!p->display)
        p->display = sb_xstrdup(p->name);
    if (!p->aliases)
        p->aliases = sb_xcalloc(1, sizeof *p->aliases);
    if (!p->env)
        p->env = sb_xcalloc(1, sizeof *p->env);
    if (!p->packages)
        p->packages = sb_xcalloc(1, sizeof *p->packages);
    return 0;
}

/* plugin_find_program looks prog up in the sandbox's PATH (or takes it as a path). */
static int
plugin_find_program(const char *prog, char *out, size_t cap)
{
    if (strchr(prog, '/')) {
        if (access(prog, X_OK) != 0)
            return 0;
        snprintf(out, cap, "%s", prog);
        return 1;
    }
    const char *path = PLUGIN_SANDBOX_PATH;
    while (*path) {
        const char *colon = strchr(path, ':');
        size_t n = colon ? (size_t)(colon - path) : strlen(path);
        struct stat st;
        if (snprintf(out, cap, "%.*s/%s", (int)n, path, prog) < (int)cap &&
            stat(out, &st) == 0 && S_ISREG(st.st_mode) && access(out, X_OK) == 0)
            return 1;
        path += n + (colon ? 1 : 0);
    }
    return 0;
}

static uint64_t
plugin_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* plugin_probe runs version_cmd (or, without one, only looks for the run program). */
static void
plugin_probe(sb_plugin_t *p)
{
    char prog[PATH_MAX], tmp_prog[PATH_MAX];
    char *const *cmd = p->version_cmd ? p->version_cmd : p->compile_cmd ? p->compile_cmd : p->run_cmd;
    p->installed = false;
    free(p->version);
    p->version = sb_xstrdup("");
    if (!plugin_find_program(cmd[0], prog, sizeof prog))
        return;
    /* The compiler and the run program must be there too (a run program that is a
     * placeholder, like {bin}, is the compiler's output). */
    if ((p->compile_cmd && !plugin_find_program(p->compile_cmd[0], tmp_prog, sizeof tmp_prog)) ||
        (!strchr(p->run_cmd[0], '{') && !plugin_find_program(p->run_cmd[0], tmp_prog, sizeof tmp_prog)))
        return;
    if (!p->version_cmd) {
        p->installed = true;
        return;
    }

    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return;
    char *const envp[] = {"PATH=" PLUGIN_SANDBOX_PATH, "HOME=/tmp", "LANG=C.UTF-8", NULL};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
    posix_spawnattr_init(&at);
    /* Its own process group, so a timeout kills what it started too. */
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
    posix_spawnattr_setpgroup(&at, 0);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&at, &none);
    pid_t pid;
    int rc = posix_spawn(&pid, prog, &fa, &at, p->version_cmd, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        return;
    }

    char out[PLUGIN_PROBE_OUT];
    size_t n = 0;
    int timed_out = 0;
    uint64_t deadline = plugin_now_ms() + PLUGIN_PROBE_MS;
    for (;;) {
        uint64_t now = plugin_now_ms();
        if (now >= deadline) {
            timed_out = 1;
            break;
        }
        struct pollfd pfd = {fds[0], POLLIN, 0};
        int pr = poll(&pfd, 1, (int)(deadline - now));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0) {
            timed_out = pr == 0;
            break;
        }
        char tmp[1024];
        ssize_t r = read(fds[0], tmp, sizeof tmp);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        size_t keep = (size_t)r < sizeof out - 1 - n ? (size_t)r : sizeof out - 1 - n;
        memcpy(out + n, tmp, keep);
        n += keep;
    }
    close(fds[0]);
    if (timed_out)
        kill(-pid, SIGKILL);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (timed_out) {
        sb_log_warn("SB-PLUGIN-PROBE-TIMEOUT", "%s: version_cmd took over %d ms", p->name,
                    PLUGIN_PROBE_MS);
        return;
    }
    out[n] = 0;
    /* The first non-blank line, trimmed. */
    char *line = out;
    while (*line && isspace((unsigned char)*line))
        line++;
    char *eol = line + strcspn(line, "\r\n");
    *eol = 0;
    while (eol > line && isspace((unsigned char)eol[-1]))
        *--eol = 0;
    p->installed = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    free(p->version);
    p->version = sb_xstrdup(line);
}

static int
plugin_read_file(const char *path, char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    sb_buf_t b;
    sb_buf_init(&b, PLUGIN_MANIFEST_MAX + 1);
    int rc = 0;
    for (;;) {
        if (sb_buf_reserve(&b, 4096) != 0) {
            rc = SB_ETOOBIG;
            break;
        }
        ssize_t n = read(fd, b.data + b.len, 4096);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            break;
        }
        if (n == 0)
            break;
        b.len += (size_t)n;
        if (b.len > PLUGIN_MANIFEST_MAX) {
            rc = SB_ETOOBIG;
            break;
        }
    }
    close(fd);
    if (rc == 0 && memchr(b.data, 0, b.len))
        rc = SB_EBADMSG;
    if (rc != 0) {
        sb_buf_fini(&b);
        return rc;
    }
    *out = (char *)sb_buf_steal(&b, len);
    if (!*out)
        *out = sb_xstrdup("");
    return 0;
}

/* plugin_parse_dir reads dir/manifest.toml into a new plugin.  err: "<file>: line N: ...". */
static int
plugin_parse_dir(const char *dir, bool probe, sb_plugin_t **out, char *err, size_t errcap)
{
    char path[PATH_MAX], msg[512];
    char *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/manifest.toml", dir);
    int rc = plugin_read_file(path, &text, &len);
    if (rc != 0) {
        snprintf(err, errcap, "%s: %s", path,
                 rc == SB_ETOOBIG   ? "manifest over 64 KiB"
                 : rc == SB_EBADMSG ? "manifest holds a NUL byte"
                                    : sb_strerror(rc));
        return rc == -ENOENT ? SB_ENOTFOUND : SB_ECONFIG;
    }
    plugin_parse_t pp = {.p = sb_xcalloc(1, sizeof(sb_plugin_t))};
    msg[0] = 0;
    rc = sb_toml_parse_ex(text, len, plugin_toml_cb, &pp, msg, sizeof msg);
    if (rc == 0)
        rc = plugin_validate(&pp, msg, sizeof msg);
    free(text);
    if (rc != 0) {
        snprintf(err, errcap, "%s: %s", path, msg);
        plugin_free(pp.p);
        return SB_ECONFIG;
    }
    char real[PATH_MAX];
    pp.p->dir = sb_xstrdup(realpath(dir, real) ? real : dir);
    pp.p->version = sb_xstrdup("");
    if (probe)
        plugin_probe(pp.p);
    *out = pp.p;
    return 0;
}

/* plugin_clash names a plugin of ps that already answers to one of p's names. */
static const char *
plugin_clash(const sb_plugins_t *ps, const sb_plugin_t *p)
{
    if (sb_plugins_find(ps, p->name))
        return p->name;
    for (char **a = p->aliases; *a; a++)
        if (sb_plugins_find(ps, *a))
            return *a;
    return NULL;
}

static void
plugin_add(sb_plugins_t *ps, sb_plugin_t *p)
{
    ps->v = sb_xrealloc(ps->v, (ps->n + 1) * sizeof *ps->v);
    ps->v[ps->n++] = p;
}

static int
plugin_cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int
sb_plugins_load(const char *dir, bool strict, bool probe, sb_plugins_t **out, char *err,
                size_t errcap)
{
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errcap, "%s: %s", dir, strerror(errno));
        return SB_ENOTFOUND;
    }
    /* Sorted, so the order (and which of two clashing plugins wins) never depends on readdir. */
    char **names = NULL;
    size_t nn = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        names = sb_xrealloc(names, (nn + 1) * sizeof *names);
        names[nn++] = sb_xstrdup(de->d_name);
    }
    closedir(d);
    if (nn)
        qsort(names, nn, sizeof *names, plugin_cmp_names);

    sb_plugins_t *ps = sb_xcalloc(1, sizeof *ps);
    int rc = 0;
    for (size_t i = 0; i < nn; i++) {
        char sub[PATH_MAX], mf[PATH_MAX + 16];
        struct stat st;
        snprintf(sub, sizeof sub, "%s/%s", dir, names[i]);
        snprintf(mf, sizeof mf, "%s/manifest.toml", sub);
        if (stat(sub, &st) != 0 || !S_ISDIR(st.st_mode) || stat(mf, &st) != 0)
            continue;
        sb_plugin_t *p = NULL;
        char perr[2 * PATH_MAX + 512];
        int r = plugin_parse_dir(sub, probe, &p, perr, sizeof perr);
        const char *clash = r == 0 ? plugin_clash(ps, p) : NULL;
        if (clash) {
            snprintf(perr, sizeof perr, "%s: name or alias \"%s\" is already taken by plugin %s",
                     mf, clash, sb_plugins_find(ps, clash)->name);
            plugin_free(p);
            r = SB_ECONFIG;
        }
        if (r != 0) {
            if (strict) {
                snprintf(err, errcap, "%s", perr);
                rc = r;
                break;
            }
            sb_log_error("SB-PLUGIN-BAD", "skipping plugin: %s", perr);
            continue;
        }
        plugin_add(ps, p);
    }
    for (size_t i = 0; i < nn; i++)
        free(names[i]);
    free(names);
    if (rc != 0) {
        sb_plugins_free(ps);
        return rc;
    }
    *out = ps;
    return 0;
}

int
sb_plugins_load_one(const char *dir, bool probe, sb_plugins_t **out, char *err, size_t errcap)
{
    sb_plugin_t *p = NULL;
    int rc = plugin_parse_dir(dir, probe, &p, err, errcap);
    if (rc != 0)
        return rc;
    sb_plugins_t *ps = sb_xcalloc(1, sizeof *ps);
    plugin_add(ps, p);
    *out = ps;
    return 0;
}

/* plugin_subst fills the placeholders of one element ({args} is handled by the caller). */
static char *
plugin_subst(const char *s, const char *const vals[6])
{
    sb_buf_t b;
    sb_buf_init(&b, 0);
    for (const char *c = s; *c; c++) {
        if ((c[0] == '{' && c[1] == '{') || (c[0] == '}' && c[1] == '}')) {
            sb_buf_append(&b, c, 1);
            c++;
            continue;
        }
        if (*c == '{') {
            const char *close = strchr(c, '}');
            size_t n = close ? (size_t)(close - c - 1) : 0;
            size_t k = 0;
            for (; close && k < 6; k++)
                if (strlen(plugin_placeholders[k]) == n && !memcmp(plugin_placeholders[k], c + 1, n))
                    break;
            if (close && k < 6) {
                sb_buf_append(&b, vals[k], strlen(vals[k]));
                c = close;
                continue;
            }
        }
        sb_buf_append(&b, c, 1);
    }
    sb_buf_append(&b, "", 1);
    size_t len;
    return (char *)sb_buf_steal(&b, &len);
}

char **
sb_plugin_expand(const sb_plugin_t *p, char *const *tmpl, const char *file,
                 const char *const *args, size_t nargs)
{
    char dir[PATH_MAX], name[PATH_MAX], bin[PATH_MAX + 8];
    if (!file)
        file = "";
    const char *slash = strrchr(file, '/');
    const char *base = slash ? slash + 1 : file;
    if (slash)
        snprintf(dir, sizeof dir, "%.*s", (int)(slash == file ? 1 : slash - file), file);
    else
        snprintf(dir, sizeof dir, "%s", *file ? "." : "");
    const char *dot = strrchr(base, '.');
    snprintf(name, sizeof name, "%.*s", (int)(dot && dot != base ? dot - base : (long)strlen(base)),
             base);
    /* {bin} sits next to the source; a source without an extension gets ".bin" added so the
     * two never collide. */
    if (!*file)
        bin[0] = 0;
    else if (dot && dot != base)
        snprintf(bin, sizeof bin, "%.*s", (int)(dot - file), file);
    else
        snprintf(bin, sizeof bin, "%s.bin", file);
    const char *vals[6] = {file, dir, name, bin, "", p && p->dir ? p->dir : ""};

    size_t n = 0, cap = 0;
    for (char *const *t = tmpl; t && *t; t++)
        cap += strcmp(*t, "{args}") ? 1 : nargs;
    char **argv = sb_xcalloc(cap + 1, sizeof *argv);
    for (char *const *t = tmpl; t && *t; t++) {
        if (!strcmp(*t, "{args}")) {
            for (size_t i = 0; i < nargs; i++)
                argv[n++] = sb_xstrdup(args[i]);
            continue;
        }
        argv[n++] = plugin_subst(*t, vals);
    }
    argv[n] = NULL;
    return argv;
}

const char *
sb_plugins_default_dir(void)
{
    const char *env = getenv("SOULBOX_PLUGINS");
    struct stat st;
    if (env && *env)
        return env;
    if (SB_PLUGINS_SOURCE_DIR[0] && stat(SB_PLUGINS_SOURCE_DIR, &st) == 0 && S_ISDIR(st.st_mode))
        return SB_PLUGINS_SOURCE_DIR;
    return "/usr/share/soulbox/plugins";
}
