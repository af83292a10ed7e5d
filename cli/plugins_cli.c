/*
 * plugins_cli.c: `soulbox plugins list|check` (see plugins_cli.h).  list loads the plugin
 * folder leniently (a bad manifest is reported, the rest still listed) with the host probe;
 * check loads each named plugin strictly and runs its hello program through sb_run_job, the
 * same path `soulbox run` takes, so a plugin that passes check runs under `soulbox run`.
 */
#include "plugins_cli.h"

#include "base/err.h"
#include "core/plugin.h"
#include "run_cli.h"

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void
plugins_usage(void)
{
    fprintf(stderr, "usage: soulbox plugins list [--plugins DIR] [--json]\n"
                    "       soulbox plugins check [--plugins DIR] [--json] PLUGIN_DIR|NAME... | --all\n");
}

static json_t *
plugins_strv_json(char *const *v)
{
    json_t *a = json_array();
    for (; v && *v; v++)
        json_array_append_new(a, json_string(*v));
    return a;
}

static void
plugins_join(char *out, size_t cap, char *const *v)
{
    size_t n = 0;
    out[0] = 0;
    for (; v && *v && n + 1 < cap; v++)
        n += (size_t)snprintf(out + n, cap - n, "%s%s", n ? "," : "", *v);
    if (!out[0])
        snprintf(out, cap, "-");
}

/* plugins_list_errors reports the manifests sb_plugins_load skipped (it logs them; here
 * they are re-read strictly one by one so list can show and count them). */
static int
plugins_list_errors(const char *dir, const sb_plugins_t *ps, json_t *errs)
{
    DIR *d = opendir(dir);
    int bad = 0;
    struct dirent *de;
    if (!d)
        return 0;
    while ((de = readdir(d)) != NULL) {
        char sub[4096], mf[4200], err[8192];
        struct stat st;
        if (de->d_name[0] == '.')
            continue;
        snprintf(sub, sizeof sub, "%s/%s", dir, de->d_name);
        snprintf(mf, sizeof mf, "%s/manifest.toml", sub);
        if (stat(mf, &st) != 0)
            continue;
        int found = 0;
        for (size_t i = 0; i < sb_plugins_count(ps); i++) {
            const char *pd = sb_plugins_at(ps, i)->dir, *slash = strrchr(pd, '/');
            found |= slash && !strcmp(slash + 1, de->d_name);
        }
        if (found)
            continue;
        sb_plugins_t *one = NULL;
        if (sb_plugins_load_one(sub, false, &one, err, sizeof err) == 0)
            snprintf(err, sizeof err, "%s: its name or an alias clashes with another plugin", mf);
        sb_plugins_free(one);
        json_array_append_new(errs, json_string(err));
        bad++;
    }
    closedir(d);
    return bad;
}

static int
plugins_list(const char *dir, int as_json)
{
    sb_plugins_t *ps = NULL;
    char err[1024];
    if (sb_plugins_load(dir, false, true, &ps, err, sizeof err) != 0) {
        fprintf(stderr, "soulbox plugins: %s\n", err);
        return 1;
    }
    json_t *errs = json_array();
    int bad = plugins_list_errors(dir, ps, errs);
    if (as_json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < sb_plugins_count(ps); i++) {
            const sb_plugin_t *p = sb_plugins_at(ps, i);
            json_array_append_new(
                arr, json_pack("{s:s, s:s, s:s, s:o, s:b, s:b, s:b, s:s, s:o}", "name", p->name,
                               "display", p->display, "version", p->version, "aliases",
                               plugins_strv_json(p->aliases), "compiled", p->compile_cmd != NULL,
                               "installed", p->installed, "kernel", p->kernel_cmd != NULL, "dir",
                               p->dir, "packages", plugins_strv_json(p->packages)));
        }
        json_t *j = json_pack("{s:s, s:o, s:O}", "dir", dir, "plugins", arr, "errors", errs);
        char *s = json_dumps(j, JSON_COMPACT);
        printf("%s\n", s);
        free(s);
        json_decref(j);
    } else {
        printf("%-12s %-28s %-22s %-8s %-9s %s\n", "NAME", "VERSION", "ALIASES", "COMPILED",
               "INSTALLED", "KERNEL");
        for (size_t i = 0; i < sb_plugins_count(ps); i++) {
            const sb_plugin_t *p = sb_plugins_at(ps, i);
            char aliases[256];
            plugins_join(aliases, sizeof aliases, p->aliases);
            printf("%-12s %-28.28s %-22s %-8s %-9s %s\n", p->name, p->version[0] ? p->version : "-",
                   aliases, p->compile_cmd ? "yes" : "no", p->installed ? "yes" : "no",
                   p->kernel_cmd ? "yes" : "no");
        }
        for (size_t i = 0; i < json_array_size(errs); i++)
            printf("error: %s\n", json_string_value(json_array_get(errs, i)));
        printf("%zu plugins in %s%s\n", sb_plugins_count(ps), dir,
               bad ? " (some manifests are invalid)" : "");
    }
    json_decref(errs);
    sb_plugins_free(ps);
    return bad ? 1 : 0;
}

/* plugins_check_one validates and runs one plugin; prints the report; 0 if it passed. */
static int
plugins_check_one(const sb_plugin_t *p, json_t *report)
{
    printf("%s (%s): manifest ok; %s %s\n", p->name, p->dir,
           p->installed ? "installed," : "NOT installed", p->version[0] ? p->version : "");
    if (!p->installed) {
        printf("  FAIL: the runtime is not installed on this host (packages: ");
        for (char **k = p->packages; *k; k++)
            printf("%s%s", k == p->packages ? "" : " ", *k);
        printf(")\n");
        json_object_set_new(report, "result", json_string("not_installed"));
        return 1;
    }
    sb_run_job_t job = {
        .plugin = p, .code = p->hello, .code_len = strlen(p->hello), .stream = false};
    json_t *res = NULL;
    int rc = sb_run_job(&job, &res);
    if (!res) {
        printf("  FAIL: no sandbox (exit %d)\n", rc);
        json_object_set_new(report, "result", json_string("no_sandbox"));
        return 1;
    }
    json_object_set(report, "run", res);
    const char *status = json_string_value(json_object_get(res, "status"));
    const char *out = json_string_value(json_object_get(res, "stdout"));
    json_t *comp = json_object_get(res, "compile");
    if (comp)
        printf("  compile: %s in %lld ms\n", json_string_value(json_object_get(comp, "status")),
               (long long)json_integer_value(json_object_get(comp, "execution_time_ms")));
    int ok = status && !strcmp(status, "exited") && rc == 0 && out && !strcmp(out, p->hello_expect);
    if (ok) {
        printf("  run: exited 0 in %lld ms, stdout as expected\n  PASS\n",
               (long long)json_integer_value(json_object_get(res, "execution_time_ms")));
    } else {
        const char *cerr = comp ? json_string_value(json_object_get(comp, "stderr")) : NULL;
        const char *cout = comp ? json_string_value(json_object_get(comp, "stdout")) : NULL;
        printf("  run: status %s, exit %d\n", status ? status : "?", rc);
        if (cerr && *cerr)
            printf("  compiler stderr:\n%s\n", cerr);
        if (cout && *cout && strcmp(status, "compile_error") == 0)
            printf("  compiler stdout:\n%s\n", cout);
        printf("  expected stdout: \"%s\"\n  got stdout:      \"%s\"\n", p->hello_expect,
               out ? out : "");
        const char *err = json_string_value(json_object_get(res, "stderr"));
        if (err && *err)
            printf("  stderr:\n%s\n", err);
        printf("  FAIL\n");
    }
    json_object_set_new(report, "result", json_string(ok ? "pass" : "fail"));
    json_decref(res);
    return ok ? 0 : 1;
}

static int
plugins_check(const char *dir, int all, int as_json, int n, char **names)
{
    int failed = 0, passed = 0, skipped = 0;
    json_t *reports = json_array();
    FILE *real_stdout = stdout;
    /* With --json the human report goes to stderr and stdout carries only the JSON. */
    if (as_json)
        stdout = stderr;
    if (all) {
        sb_plugins_t *ps = NULL;
        char err[1024];
        if (sb_plugins_load(dir, true, true, &ps, err, sizeof err) != 0) {
            printf("FAIL: %s\n", err);
            failed++;
        } else {
            for (size_t i = 0; i < sb_plugins_count(ps); i++) {
                const sb_plugin_t *p = sb_plugins_at(ps, i);
                json_t *r = json_pack("{s:s}", "plugin", p->name);
                if (!p->installed) {
                    printf("%s: skipped (not installed)\n", p->name);
                    json_object_set_new(r, "result", json_string("skipped"));
                    skipped++;
                } else if (plugins_check_one(p, r) == 0) {
                    passed++;
                } else {
                    failed++;
                }
                json_array_append_new(reports, r);
            }
            sb_plugins_free(ps);
        }
    }
    for (int i = 0; i < n; i++) {
        sb_plugins_t *ps = NULL, *set = NULL;
        char err[8192], path[4096];
        struct stat st;
        const char *target = names[i];
        /* A folder, or the name of a plugin in DIR. */
        if (stat(target, &st) != 0 || !S_ISDIR(st.st_mode)) {
            char lerr[1024];
            if (sb_plugins_load(dir, false, false, &set, lerr, sizeof lerr) == 0) {
                const sb_plugin_t *p = sb_plugins_find(set, target);
                if (p) {
                    snprintf(path, sizeof path, "%s", p->dir);
                    target = path;
                }
            }
            sb_plugins_free(set);
        }
        json_t *r = json_pack("{s:s}", "plugin", names[i]);
        if (sb_plugins_load_one(target, true, &ps, err, sizeof err) != 0) {
            printf("%s: FAIL: %s\n", names[i], err);
            json_object_set_new(r, "result", json_string("invalid"));
            json_object_set_new(r, "error", json_string(err));
            failed++;
        } else if (plugins_check_one(sb_plugins_at(ps, 0), r) == 0) {
            passed++;
        } else {
            failed++;
        }
        json_array_append_new(reports, r);
        sb_plugins_free(ps);
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    fflush(stdout);
    stdout = real_stdout;
    if (as_json) {
        json_t *j = json_pack("{s:i, s:i, s:i, s:o}", "passed", passed, "failed", failed,
                              "skipped", skipped, "checks", reports);
        char *s = json_dumps(j, JSON_COMPACT);
        printf("%s\n", s);
        free(s);
        json_decref(j);
    } else {
        json_decref(reports);
    }
    return failed ? 1 : 0;
}

int
sb_cmd_plugins(int argc, char **argv, const sb_config_t *cfg)
{
    const char *dir = NULL, *sub = NULL;
    int as_json = 0, all = 0, n = 0;
    char **names = calloc((size_t)argc + 1, sizeof *names);
    (void)cfg;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) {
            as_json = 1;
        } else if (!strcmp(a, "--all")) {
            all = 1;
        } else if (!strcmp(a, "--plugins") && i + 1 < argc) {
            dir = argv[++i];
        } else if (!strncmp(a, "--plugins=", 10)) {
            dir = a + 10;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            plugins_usage();
            free(names);
            return 0;
        } else if (a[0] == '-') {
            fprintf(stderr, "soulbox plugins: unknown flag %s\n", a);
            plugins_usage();
            free(names);
            return 2;
        } else if (!sub) {
            sub = a;
        } else {
            names[n++] = argv[i];
        }
    }
    if (!dir)
        dir = sb_plugins_default_dir();
    int rc;
    if (sub && !strcmp(sub, "list") && n == 0 && !all) {
        rc = plugins_list(dir, as_json);
    } else if (sub && !strcmp(sub, "check") && (n > 0 || all)) {
        rc = plugins_check(dir, all, as_json, n, names);
    } else {
        plugins_usage();
        rc = 2;
    }
    free(names);
    return rc;
}
