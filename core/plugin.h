/*
 * plugin.h: runtimes as plugins.  A runtime is a folder plugins/<name>/ holding manifest.toml
 * (and optional helper files such as a warm kernel script).  This module reads and validates
 * manifests and answers "which runtime is `py`?"; the executor turns a manifest into the
 * commands it runs inside a sandbox, the gateway lists runtimes and validates requests, and
 * `soulbox plugins list|check` uses both.  Manifest format: docs/plugins.md.
 *
 * Commands are argv templates run without a shell: each element may contain {file} (the
 * source file's path in the sandbox, e.g. /home/user/main.py), {dir} (its directory),
 * {name} (the file name without extension), {bin} (the compiled output path: the source's
 * path without its extension), {args} (as a whole element: the user's arguments, spliced in),
 * {plugin} (the plugin folder; see kernel_cmd).  "{{" and "}}" are literal braces.
 *
 * A plugin set is immutable once loaded; share it read-only between threads.
 */
#ifndef SB_PLUGIN_H
#define SB_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *name;           /* "python" */
    char **aliases;       /* {"py", "python3"}, NULL-terminated */
    char *display;        /* "Python 3" */
    char *dir;            /* absolute path of the plugin folder on the host */
    char *source_file;    /* "main.py" */
    char **version_cmd;   /* {"python3", "--version"}, NULL-terminated */
    char **compile_cmd;   /* NULL when interpreted */
    char **run_cmd;       /* {"python3", "{file}", "{args}"} */
    char **env;           /* extra "K=V" for compile and run, NULL-terminated */
    uint64_t compile_timeout_ms, compile_memory_mb, compile_cpu_ms; /* 0: defaults */
    uint64_t run_timeout_ms, run_memory_mb;                          /* defaults for runs */
    char **kernel_cmd;    /* warm kernel (issue 6), NULL when none; {plugin} = plugin dir */
    char *hello;          /* a hello-world program for `plugins check` */
    char *hello_expect;   /* its expected stdout */
    char **packages;      /* Debian packages that provide it (for docs and CI) */
    bool installed;       /* version_cmd's program was found on this host */
    char *version;        /* first line of version_cmd's output, or "" */
} sb_plugin_t;

typedef struct sb_plugins sb_plugins_t;

/* sb_plugins_load reads every <dir>/<name>/manifest.toml.  A bad manifest is skipped with a
 * logged error naming the file and line (or, with strict, fails the load: for `plugins
 * check`).  probe: run each version_cmd on the host (outside any sandbox, with a 5 s cap) to
 * fill installed/version.  Returns 0 or SB_E*; err gets a message. */
int sb_plugins_load(const char *dir, bool strict, bool probe, sb_plugins_t **out, char *err,
                    size_t errcap);
/* sb_plugins_load_one reads the single plugin folder dir (dir/manifest.toml), strictly: for
 * `plugins check DIR`.  SB_ENOTFOUND: no manifest there; SB_ECONFIG: err says what is wrong. */
int sb_plugins_load_one(const char *dir, bool probe, sb_plugins_t **out, char *err,
                        size_t errcap);
void sb_plugins_free(sb_plugins_t *ps);
size_t sb_plugins_count(const sb_plugins_t *ps);
const sb_plugin_t *sb_plugins_at(const sb_plugins_t *ps, size_t i);
/* sb_plugins_find matches a name or alias, case-insensitively; NULL if none. */
const sb_plugin_t *sb_plugins_find(const sb_plugins_t *ps, const char *name);

/* sb_plugin_expand builds argv for one command template: placeholders filled, {args}
 * spliced.  Returns a malloc'd NULL-terminated array (free with sb_plugin_argv_free). */
char **sb_plugin_expand(const sb_plugin_t *p, char *const *tmpl, const char *file,
                        const char *const *args, size_t nargs);
void sb_plugin_argv_free(char **argv);

/* The plugin folder: $SOULBOX_PLUGINS, else the config key plugins.dir, else <source tree>/
 * plugins (built in at compile time), else /usr/share/soulbox/plugins. */
const char *sb_plugins_default_dir(void);

#endif
