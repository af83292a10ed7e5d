/*
 * config.c: one table (config.h) gives the struct, the defaults, the TOML keys, the
 * environment variables, the flags, the validation and the usage text.
 */
#include "config.h"

#include "base/err.h"
#include "base/log.h"
#include "protocols/msg.h"
#include "base/toml.h"
#include "base/alloc.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CFG_STR, CFG_INT, CFG_BOOL };

typedef struct {
    int type;
    const char *key;
    size_t offset;
    const char *def_s;
    int64_t def_i, min, max;
    const char *help;
} cfg_key_t;

#define SB__CFG_DEF_STR(d) (d), 0
#define SB__CFG_DEF_INT(d) NULL, (d)
#define SB__CFG_DEF_BOOL(d) NULL, (d)
#define SB__CFG_ENTRY(type, field, key, def, min, max, help)                                      \
    {CFG_##type, key, offsetof(sb_config_t, field), SB__CFG_DEF_##type(def), (min), (max), help},
static const cfg_key_t cfg_keys[] = {SB_CONFIG_KEYS(SB__CFG_ENTRY)};
#define CFG_NKEYS (sizeof cfg_keys / sizeof cfg_keys[0])

/* Short flags operators expect, mapped onto keys. */
static const struct {
    const char *flag, *key;
} cfg_aliases[] = {
    {"port", "http.port"},         {"host", "http.host"},         {"listen", "http.host"},
    {"roles", "roles"},            {"bus-listen", "bus.listen"},  {"bus-join", "bus.join"},
    {"bus-secret", "bus.secret"},  {"data-dir", "data_dir"},      {"log-level", "log.level"},
    {"node", "node.name"},         {"advertise", "bus.advertise"},
};

static const cfg_key_t *
cfg_find(const char *key)
{
    for (size_t i = 0; i < CFG_NKEYS; i++)
        if (strcmp(cfg_keys[i].key, key) == 0)
            return &cfg_keys[i];
    return NULL;
}

/* cfg_flag_key maps a flag name ("http-port", "http.port", or an alias) to its key. */
static const cfg_key_t *
cfg_flag_key(const char *flag, size_t len)
{
    char name[128];
    if (len >= sizeof name)
        return NULL;
    memcpy(name, flag, len);
    name[len] = 0;
    for (size_t i = 0; i < sizeof cfg_aliases / sizeof cfg_aliases[0]; i++)
        if (strcmp(cfg_aliases[i].flag, name) == 0)
            return cfg_find(cfg_aliases[i].key);
    for (size_t i = 0; i < CFG_NKEYS; i++) {
        const char *k = cfg_keys[i].key;
        size_t j = 0;
        for (; k[j] && j < len; j++) {
            char a = k[j], b = name[j];
            if (a == b || ((a == '.' || a == '_') && (b == '-' || b == '.' || b == '_')))
                continue;
            break;
        }
        if (!k[j] && j == len)
            return &cfg_keys[i];
    }
    return NULL;
}

static int
cfg_validate_str(const cfg_key_t *k, const char *v, char *err, size_t errcap)
{
    if (strcmp(k->key, "log.level") == 0 && sb_log_level_parse(v) < 0) {
        snprintf(err, errcap, "%s: '%s' is not one of error, warn, info, debug", k->key, v);
        return SB_ECONFIG;
    }
    if (strcmp(k->key, "log.format") == 0 && strcmp(v, "text") && strcmp(v, "json")) {
        snprintf(err, errcap, "%s: '%s' is not one of text, json", k->key, v);
        return SB_ECONFIG;
    }
    if (strcmp(k->key, "roles") == 0) {
        const char *p = v;
        int any = 0;
        while (*p) {
            const char *e = strchr(p, ',');
            size_t n = e ? (size_t)(e - p) : strlen(p);
            while (n && isspace((unsigned char)*p))
                p++, n--;
            while (n && isspace((unsigned char)p[n - 1]))
                n--;
            if (n && sb_actor_kind_parse(p, n) < 0) {
                snprintf(err, errcap, "roles: '%.*s' is not an actor (allowed: gateway, scheduler, "
                         "pool, executor, monitor, auditor, storage)", (int)n, p);
                return SB_ECONFIG;
            }
            any |= n > 0;
            p += e ? (size_t)(e - p) + 1 : strlen(p);
        }
        if (!any) {
            snprintf(err, errcap, "roles: empty (allowed: gateway, scheduler, pool, executor, "
                     "monitor, auditor, storage)");
            return SB_ECONFIG;
        }
    }
    if ((strcmp(k->key, "bus.listen") == 0 || strcmp(k->key, "bus.advertise") == 0) && *v &&
        strncmp(v, "tcp://", 6) != 0) {
        snprintf(err, errcap, "%s: '%s' must be a tcp://host:port URL", k->key, v);
        return SB_ECONFIG;
    }
    return 0;
}

int
sb_config_set(sb_config_t *cfg, const char *key, const char *value, char *err, size_t errcap)
{
    const cfg_key_t *k = cfg_find(key);
    void *field;
    if (!k) {
        snprintf(err, errcap, "unknown configuration key '%s'", key);
        return SB_ECONFIG;
    }
    field = (char *)cfg + k->offset;
    if (k->type == CFG_STR) {
        if (strlen(value) > 4096) {
            snprintf(err, errcap, "%s: value longer than 4096 bytes", key);
            return SB_ECONFIG;
        }
        if (cfg_validate_str(k, value, err, errcap))
            return SB_ECONFIG;
        free(*(char **)field);
        *(char **)field = sb_xstrdup(value);
        return 0;
    }
    if (k->type == CFG_BOOL) {
        if (!strcmp(value, "true") || !strcmp(value, "1") || !strcmp(value, "yes"))
            *(int *)field = 1;
        else if (!strcmp(value, "false") || !strcmp(value, "0") || !strcmp(value, "no"))
            *(int *)field = 0;
        else {
            snprintf(err, errcap, "%s: '%s' is not a boolean (true or false)", key, value);
            return SB_ECONFIG;
        }
        return 0;
    }
    char *end;
    errno = 0;
    long long v = strtoll(value, &end, 10);
    if (errno || end == value || *end || v < k->min || v > k->max) {
        snprintf(err, errcap, "%s: '%s' is out of range (allowed: integer %lld..%lld)", key,
                 value, (long long)k->min, (long long)k->max);
        return SB_ECONFIG;
    }
    *(int64_t *)field = v;
    return 0;
}

static int
cfg_toml_cb(void *ud, const char *key, sb_toml_type_t type, const char *value, int line,
            char *err, size_t errcap)
{
    sb_config_t *cfg = ud;
    const cfg_key_t *k = cfg_find(key);
    char msg[512];
    if (!k) {
        snprintf(err, errcap, "line %d: unknown key '%s'", line, key);
        return SB_ECONFIG;
    }
    if ((k->type == CFG_INT && type != SB_TOML_INT) ||
        (k->type == CFG_BOOL && type != SB_TOML_BOOL) ||
        (k->type == CFG_STR && type != SB_TOML_STR && type != SB_TOML_ARRAY)) {
        snprintf(err, errcap, "line %d: %s has the wrong type (expected %s)", line, key,
                 k->type == CFG_INT ? "an integer" : k->type == CFG_BOOL ? "a boolean" : "a string");
        return SB_ECONFIG;
    }
    if (sb_config_set(cfg, key, value, msg, sizeof msg)) {
        snprintf(err, errcap, "line %d: %s", line, msg);
        return SB_ECONFIG;
    }
    return 0;
}

static int
cfg_read_file(sb_config_t *cfg, const char *path, int must, char *err, size_t errcap)
{
    FILE *f = fopen(path, "rb");
    char msg[512];
    if (!f) {
        if (!must && errno == ENOENT)
            return 0;
        snprintf(err, errcap, "config file %s: %s", path, strerror(errno));
        return SB_ECONFIG;
    }
    char *text = sb_xmalloc(1 << 20);
    size_t n = fread(text, 1, 1 << 20, f);
    int toolong = n == 1 << 20;
    fclose(f);
    if (toolong) {
        free(text);
        snprintf(err, errcap, "config file %s: larger than 1 MiB", path);
        return SB_ECONFIG;
    }
    int r = sb_toml_parse(text, n, cfg_toml_cb, cfg, msg, sizeof msg);
    free(text);
    if (r) {
        snprintf(err, errcap, "config file %s: %s", path, msg);
        return SB_ECONFIG;
    }
    free(cfg->config_file);
    cfg->config_file = sb_xstrdup(path);
    return 0;
}

int
sb_config_load(sb_config_t *cfg, int argc, char **argv, char **env, int *nrest, char **rest,
               char *err, size_t errcap)
{
    const char *file = NULL;
    int must = 0;

    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < CFG_NKEYS; i++) {
        void *field = (char *)cfg + cfg_keys[i].offset;
        if (cfg_keys[i].type == CFG_STR)
            *(char **)field = sb_xstrdup(cfg_keys[i].def_s);
        else if (cfg_keys[i].type == CFG_INT)
            *(int64_t *)field = cfg_keys[i].def_i;
        else
            *(int *)field = (int)cfg_keys[i].def_i;
    }
    /* The file comes first, so find --config / SOULBOX_CONFIG before anything else. */
    for (char **e = env; e && *e; e++)
        if (strncmp(*e, "SOULBOX_CONFIG=", 15) == 0) {
            file = *e + 15;
            must = 1;
        }
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            file = argv[i + 1];
            must = 1;
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            file = argv[i] + 9;
            must = 1;
        }
    }
    if (!file)
        file = "soulbox.toml";
    if (cfg_read_file(cfg, file, must, err, errcap))
        return SB_ECONFIG;

    for (char **e = env; e && *e; e++) {
        if (strncmp(*e, "SOULBOX_", 8) != 0 || strncmp(*e, "SOULBOX_CONFIG=", 15) == 0)
            continue;
        const char *eq = strchr(*e, '=');
        if (!eq)
            continue;
        for (size_t i = 0; i < CFG_NKEYS; i++) {
            const char *k = cfg_keys[i].key, *n = *e + 8;
            size_t j = 0;
            for (; k[j] && n + j < eq; j++)
                if (toupper((unsigned char)k[j]) != n[j] && !(k[j] == '.' && n[j] == '_'))
                    break;
            if (!k[j] && n + j == eq) {
                char msg[512];
                if (sb_config_set(cfg, k, eq + 1, msg, sizeof msg)) {
                    snprintf(err, errcap, "environment %.*s: %s", (int)(eq - *e), *e, msg);
                    return SB_ECONFIG;
                }
            }
        }
    }

    *nrest = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--config", 8) == 0 && (a[8] == 0 || a[8] == '=')) {
            i += a[8] == 0;
            continue;
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == 0) {
            rest[(*nrest)++] = argv[i];
            continue;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const cfg_key_t *k = cfg_flag_key(name, len);
        if (!k) {
            rest[(*nrest)++] = argv[i];
            continue;
        }
        const char *val = eq ? eq + 1 : NULL;
        if (!val) {
            if (i + 1 >= argc) {
                snprintf(err, errcap, "flag --%s needs a value (%s)", name, k->key);
                return SB_ECONFIG;
            }
            val = argv[++i];
        }
        char msg[512];
        if (sb_config_set(cfg, k->key, val, msg, sizeof msg)) {
            snprintf(err, errcap, "flag --%.*s: %s", (int)len, name, msg);
            return SB_ECONFIG;
        }
    }
    if (cfg->bus_secret_file[0] && !cfg->bus_secret[0]) {
        FILE *f = fopen(cfg->bus_secret_file, "rb");
        char buf[4097];
        if (!f) {
            snprintf(err, errcap, "bus.secret_file: %s: %s", cfg->bus_secret_file, strerror(errno));
            return SB_ECONFIG;
        }
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
            n--;
        buf[n] = 0;
        free(cfg->bus_secret);
        cfg->bus_secret = sb_xstrdup(buf);
    }
    if (cfg->bus_secret[0] && strlen(cfg->bus_secret) < 16) {
        snprintf(err, errcap, "bus.secret: too short (allowed: at least 16 bytes)");
        return SB_ECONFIG;
    }
    return 0;
}

void
sb_config_fini(sb_config_t *cfg)
{
    for (size_t i = 0; i < CFG_NKEYS; i++)
        if (cfg_keys[i].type == CFG_STR) {
            char **p = (char **)((char *)cfg + cfg_keys[i].offset);
            free(*p);
            *p = NULL;
        }
    free(cfg->config_file);
    cfg->config_file = NULL;
}

void
sb_config_usage(void *fp)
{
    FILE *f = fp;
    for (size_t i = 0; i < CFG_NKEYS; i++) {
        const cfg_key_t *k = &cfg_keys[i];
        char flag[128];
        size_t j = 0;
        for (; k->key[j] && j < sizeof flag - 1; j++)
            flag[j] = (k->key[j] == '.' || k->key[j] == '_') ? '-' : k->key[j];
        flag[j] = 0;
        if (k->type == CFG_STR)
            fprintf(f, "  --%-22s %s (default \"%s\")\n", flag, k->help, k->def_s);
        else
            fprintf(f, "  --%-22s %s (default %lld, %lld..%lld)\n", flag, k->help,
                    (long long)k->def_i, (long long)k->min, (long long)k->max);
    }
}

size_t
sb_split_list(char *s, char **out, size_t max)
{
    size_t n = 0;
    char *save = NULL;
    for (char *t = strtok_r(s, ",", &save); t && n < max; t = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*t))
            t++;
        char *e = t + strlen(t);
        while (e > t && isspace((unsigned char)e[-1]))
            *--e = 0;
        if (*t)
            out[n++] = t;
    }
    return n;
}
