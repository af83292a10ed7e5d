/* env.c: the sandbox's default environment (the one copy of it) and merging (env.h). */
#include "env.h"

#include "base/alloc.h"
#include "base/err.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENV_BASE                                                                                   \
    "PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin", "HOME=/home/user",        \
        "USER=user", "LOGNAME=user", "LANG=C.UTF-8", "SHELL=/bin/bash"

const char *const sb_env_default[] = {ENV_BASE, NULL};
const char *const sb_env_default_pty[] = {ENV_BASE, SB_ENV_TERM, NULL};

void
sb_strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

/* Replace the entry of the same name in v[0..*n) or append; v has room for one more. */
static void
env_put(char **v, size_t *n, const char *kv)
{
    size_t klen = (size_t)(strchr(kv, '=') - kv);
    for (size_t i = 0; i < *n; i++)
        if (strncmp(v[i], kv, klen + 1) == 0) {
            free(v[i]);
            v[i] = sb_xstrdup(kv);
            return;
        }
    v[(*n)++] = sb_xstrdup(kv);
}

int
sb_env_merge(char ***out, const char *const *base, const char *const *const *layers, size_t n)
{
    size_t total = 0, len = 0;
    for (size_t k = 0; k <= n; k++) {
        const char *const *l = k == 0 ? base : layers[k - 1];
        for (size_t i = 0; l && l[i]; i++) {
            const char *eq = strchr(l[i], '=');
            if (!eq || eq == l[i])
                return SB_EBADMSG;
            total++;
        }
    }
    char **v = sb_xcalloc(total + 1, sizeof *v);
    for (size_t k = 0; k <= n; k++) {
        const char *const *l = k == 0 ? base : layers[k - 1];
        for (size_t i = 0; l && l[i]; i++)
            env_put(v, &len, l[i]);
    }
    *out = v;
    return 0;
}

int
sb_env_build(char ***out, const char *const *base, bool pty, const sb_plugin_t *p,
             const char *const *extra)
{
    static const char *const term[] = {SB_ENV_TERM, NULL};
    char **penv = NULL;
    if (p && p->env) {
        char file[320];
        snprintf(file, sizeof file, "/home/user/%s", p->source_file ? p->source_file : "main");
        penv = sb_plugin_expand(p, p->env, file, NULL, 0);
    }
    const char *const *layers[] = {pty ? term : NULL, (const char *const *)penv, extra};
    int rc = sb_env_merge(out, base ? base : sb_env_default, layers, 3);
    sb_plugin_argv_free(penv);
    return rc;
}
