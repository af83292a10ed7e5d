/*
 * auth_cli.c: `soulbox keys` and `soulbox users` (auth_cli.h).
 *
 * The command runs on the main thread as a sequence of synchronous STORE_* calls through a
 * core/client.h client, so every bus operation still happens on an actor loop and the command
 * reads top to bottom.  Secrets: a new key is printed once to stdout;
 * passwords come from stdin (echo off on a terminal) and are wiped after hashing.
 *
 * Not audited: the auditor's hash-chained log has one writer, the serving process, and a CLI
 * running beside it must not append to it.  Key ids created here show up in `keys list`.
 */
#include "auth_cli.h"

#include "gateway/auth/auth.h"

#include "actors/storage/storage.h"
#include "core/actor.h"
#include "core/bus.h"
#include "core/client.h"
#include "base/err.h"
#include "protocols/msgs.h"
#include "base/clock.h"
#include "base/base64.h"
#include "base/id.h"
#include "base/sha256.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define CLI_TIMEOUT_MS 10000

typedef struct {
    sb_bus_t *bus;
    sb_actor_t *storage;
    sb_client_t *client;
    sb_reply_t reply; /* the last call's, until the next */
    sb_buf_t body;
} cli_t;

static int
cli_open(cli_t *c, const sb_config_t *cfg)
{
    sb_bus_opts_t bo = {0};
    int r;
    memset(c, 0, sizeof *c);
    sb_buf_init(&c->body, 0);
    if ((r = sb_bus_alloc(&bo, &c->bus)) != 0) {
        fprintf(stderr, "soulbox: cannot start a bus: %s\n", sb_strerror(r));
        return r;
    }
    if ((r = sb_actor_spawn(c->bus, &sb_storage_actor, (void *)cfg, &c->storage)) != 0) {
        fprintf(stderr, "soulbox: cannot open storage (%s, data dir %s): %s\n",
                cfg->storage_backend, cfg->data_dir, sb_strerror(r));
        return r;
    }
    if ((r = sb_client_open(c->bus, &c->client)) != 0) {
        fprintf(stderr, "soulbox: cannot start the client: %s\n", sb_strerror(r));
        return r;
    }
    return 0;
}

static void
cli_close(cli_t *c)
{
    sb_client_close(c->client);
    if (c->storage) {
        sb_actor_stop(c->storage, 5000);
        sb_actor_join(c->storage);
        sb_actor_free(c->storage);
    }
    if (c->bus)
        sb_bus_free(c->bus);
    sb_reply_fini(&c->reply);
    sb_buf_fini(&c->body);
}

/* cli_call sends one encoded request to storage and waits for its reply (deadline: the
 * request's own timeout plus 2 s).  Returns the status; the reply stays in c->reply until the
 * next call. */
static int
cli_call(cli_t *c, uint16_t type, const sb_msgdef_t *def, const void *req)
{
    sb_buf_reset(&c->body);
    if (sb_codec_encode(def, req, &c->body) != 0)
        return SB_EINVAL;
    return sb_client_call(c->client, sb_addr(SB_ACTOR_STORAGE), type, c->body.data, c->body.len,
                          CLI_TIMEOUT_MS, &c->reply);
}

static sb_msg_t
cli_reply(cli_t *c)
{
    return sb_reply_msg(&c->reply);
}

static int
cli_put(cli_t *c, const char *kind, json_t *rec, int create_only)
{
    char *text = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
    sb_store_put_t p = {.kind = sb_str(kind), .record = sb_str(text), .create_only = create_only};
    int r = cli_call(c, SB_MSG_STORE_PUT, &sb_store_put_def, &p);
    free(text);
    return r;
}

/* cli_get returns the record parsed, or NULL with *status set. */
static json_t *
cli_get(cli_t *c, const char *kind, const char *key, int *status)
{
    sb_store_get_t g = {.kind = sb_str(kind), .key = sb_str(key)};
    sb_store_record_t rec;
    *status = cli_call(c, SB_MSG_STORE_GET, &sb_store_get_def, &g);
    if (*status)
        return NULL;
    sb_msg_t m = cli_reply(c);
    if (sb_store_record_decode(&m, &rec) != 0) {
        *status = SB_EBADMSG;
        return NULL;
    }
    return json_loadb(rec.record.ptr, rec.record.len, 0, NULL);
}

static json_t *
cli_list(cli_t *c, const char *kind, int *status)
{
    sb_store_list_t l = {.kind = sb_str(kind), .limit = 1000};
    sb_store_records_t recs;
    *status = cli_call(c, SB_MSG_STORE_LIST, &sb_store_list_def, &l);
    if (*status)
        return NULL;
    sb_msg_t m = cli_reply(c);
    if (sb_store_records_decode(&m, &recs) != 0) {
        *status = SB_EBADMSG;
        return NULL;
    }
    return json_loadb(recs.records.ptr, recs.records.len, 0, NULL);
}

static void
cli_fail(cli_t *c, const char *what, int status)
{
    fprintf(stderr, "soulbox: %s: %s%s%s\n", what, sb_strerror(status),
            c->reply.error[0] ? ": " : "", c->reply.error);
}

/* cli_opt finds --name VALUE or --name=VALUE in argv; NULL if absent. */
static const char *
cli_opt(int argc, char **argv, const char *name)
{
    size_t n = strlen(name);
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], name, n) != 0)
            continue;
        if (argv[i][n] == '=')
            return argv[i] + n + 1;
        if (argv[i][n] == 0 && i + 1 < argc)
            return argv[i + 1];
    }
    return NULL;
}

static int
cli_flag(int argc, char **argv, const char *name)
{
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return 1;
    return 0;
}

/* cli_check_args: every argument from index `from` is one of the options allowed (with a
 * value) or flags allowed; else prints the stray one. */
static int
cli_check_args(int argc, char **argv, int from, const char *const *opts, const char *const *flags)
{
    for (int i = from; i < argc; i++) {
        int ok = 0;
        for (const char *const *o = opts; o && *o && !ok; o++) {
            size_t n = strlen(*o);
            if (strcmp(argv[i], *o) == 0 && i + 1 < argc) {
                ok = 1;
                i++;
            } else if (strncmp(argv[i], *o, n) == 0 && argv[i][n] == '=') {
                ok = 1;
            }
        }
        for (const char *const *f = flags; f && *f && !ok; f++)
            ok = strcmp(argv[i], *f) == 0;
        if (!ok) {
            fprintf(stderr, "soulbox: unexpected argument '%s'\n", argv[i]);
            return 0;
        }
    }
    return 1;
}

static void
cli_time(json_t *v, char *out, size_t cap)
{
    if (!json_is_integer(v) || json_integer_value(v) <= 0) {
        snprintf(out, cap, "-");
        return;
    }
    time_t t = (time_t)(json_integer_value(v) / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- keys ------------------------------------------------------------------------------ */

static int
keys_usage(void)
{
    fprintf(stderr,
            "usage: soulbox keys create --role admin|user|viewer [--name N] [--owner O] [--json]\n"
            "       soulbox keys list [--json]\n"
            "       soulbox keys revoke ID\n"
            "  (plus --data-dir DIR / --storage-backend ..., as for serve)\n");
    return 2;
}

static int
keys_create(cli_t *c, int argc, char **argv)
{
    static const char *const opts[] = {"--role", "--name", "--owner", NULL};
    static const char *const flags[] = {"--json", NULL};
    const char *role = cli_opt(argc, argv, "--role"), *name = cli_opt(argc, argv, "--name"),
               *owner = cli_opt(argc, argv, "--owner");
    char key[SB_AUTH_KEY_LEN + 1], hash[65], id[32], own[160];
    uint8_t rid[8];

    if (!cli_check_args(argc, argv, 1, opts, flags))
        return keys_usage();
    if (!role || sb_role_parse(role, strlen(role)) == SB_ROLE_NONE) {
        fprintf(stderr, "soulbox keys create: --role must be admin, user or viewer\n");
        return 2;
    }
    if (name && strlen(name) > 128) {
        fprintf(stderr, "soulbox keys create: --name is longer than 128 bytes\n");
        return 2;
    }
    if (sb_random_bytes(rid, sizeof rid) || sb_auth_token_make(SB_AUTH_KEY_PREFIX, key)) {
        fprintf(stderr, "soulbox keys create: no randomness\n");
        return 1;
    }
    snprintf(id, sizeof id, "k_%02x%02x%02x%02x%02x%02x%02x%02x", rid[0], rid[1], rid[2], rid[3],
             rid[4], rid[5], rid[6], rid[7]);
    sb_sha256_hex(key, strlen(key), hash);
    snprintf(own, sizeof own, "%s", owner ? owner : "");
    if (!owner)
        snprintf(own, sizeof own, "key:%s", id);
    json_int_t now = (json_int_t)sb_now_real_ms();
    json_t *rec = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I}", "id", id, "key_hash", hash, "owner",
                            own, "role", role, "name", name ? name : "", "created", now);
    int r = cli_put(c, "api_key", rec, 1);
    json_decref(rec);
    if (r) {
        cli_fail(c, "cannot store the key", r);
        OPENSSL_cleanse(key, sizeof key);
        return 1;
    }
    if (cli_flag(argc, argv, "--json")) {
        json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I}", "id", id, "key", key, "role", role,
                              "name", name ? name : "", "owner", own, "created", now);
        char *s = json_dumps(j, JSON_COMPACT);
        printf("%s\n", s);
        OPENSSL_cleanse(s, strlen(s));
        free(s);
        json_decref(j);
    } else {
        printf("%s\n", key);
        fprintf(stderr, "created API key id=%s role=%s owner=%s%s%s -- shown only this once\n", id,
                role, own, name ? " name=" : "", name ? name : "");
    }
    fflush(stdout);
    OPENSSL_cleanse(key, sizeof key);
    return 0;
}

static int
keys_list(cli_t *c, int argc, char **argv)
{
    static const char *const flags[] = {"--json", NULL};
    int st;
    if (!cli_check_args(argc, argv, 1, NULL, flags))
        return keys_usage();
    json_t *arr = cli_list(c, "api_key", &st), *r;
    size_t i;
    if (!arr) {
        cli_fail(c, "cannot list keys", st ? st : SB_EBADMSG);
        return 1;
    }
    json_array_foreach(arr, i, r) json_object_del(r, "key_hash"); /* never shown */
    if (cli_flag(argc, argv, "--json")) {
        char *s = json_dumps(arr, JSON_COMPACT);
        printf("%s\n", s);
        free(s);
    } else {
        printf("%-20s %-7s %-24s %-20s %-20s %s\n", "ID", "ROLE", "OWNER", "CREATED", "REVOKED",
               "NAME");
        json_array_foreach(arr, i, r) {
            char created[32], revoked[32];
            cli_time(json_object_get(r, "created"), created, sizeof created);
            cli_time(json_object_get(r, "revoked"), revoked, sizeof revoked);
            const char *nm = json_string_value(json_object_get(r, "name"));
            printf("%-20s %-7s %-24s %-20s %-20s %s\n",
                   json_string_value(json_object_get(r, "id")),
                   json_string_value(json_object_get(r, "role")),
                   json_string_value(json_object_get(r, "owner")), created, revoked,
                   nm ? nm : "");
        }
    }
    json_decref(arr);
    return 0;
}

static int
keys_revoke(cli_t *c, int argc, char **argv)
{
    int st;
    if (argc != 2)
        return keys_usage();
    json_t *rec = cli_get(c, "api_key", argv[1], &st);
    if (!rec) {
        if (st == SB_ENOTFOUND)
            fprintf(stderr, "soulbox keys revoke: no key with id '%s'\n", argv[1]);
        else
            cli_fail(c, "cannot read the key", st ? st : SB_EBADMSG);
        return 1;
    }
    json_t *rv = json_object_get(rec, "revoked");
    if (json_is_integer(rv) && json_integer_value(rv) > 0) {
        printf("key %s was already revoked\n", argv[1]);
        json_decref(rec);
        return 0;
    }
    json_object_set_new(rec, "revoked", json_integer((json_int_t)sb_now_real_ms()));
    st = cli_put(c, "api_key", rec, 0);
    json_decref(rec);
    if (st) {
        cli_fail(c, "cannot revoke the key", st);
        return 1;
    }
    printf("revoked key %s (running gateways stop accepting it within %d s)\n", argv[1],
           SB_AUTH_CACHE_TTL_MS / 1000);
    return 0;
}

int
sb_cmd_keys(int argc, char **argv, const sb_config_t *cfg)
{
    cli_t c;
    int rc;
    if (argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)
        return argc < 1 ? keys_usage() : (keys_usage(), 0);
    if (strcmp(argv[0], "create") && strcmp(argv[0], "list") && strcmp(argv[0], "revoke")) {
        fprintf(stderr, "soulbox keys: unknown action '%s'\n", argv[0]);
        return keys_usage();
    }
    if (cli_open(&c, cfg) != 0) {
        cli_close(&c);
        return 1;
    }
    if (strcmp(argv[0], "create") == 0)
        rc = keys_create(&c, argc, argv);
    else if (strcmp(argv[0], "list") == 0)
        rc = keys_list(&c, argc, argv);
    else
        rc = keys_revoke(&c, argc, argv);
    cli_close(&c);
    return rc;
}

/* ---- users ----------------------------------------------------------------------------- */

static int
users_usage(void)
{
    fprintf(stderr,
            "usage: soulbox users add NAME --role admin|user|viewer [--password-stdin]\n"
            "       soulbox users passwd NAME [--password-stdin]\n"
            "       soulbox users list\n"
            "       soulbox users del NAME\n"
            "  The password is read from stdin (one line), never from the command line.\n");
    return 2;
}

/* users_password reads one line from stdin (echo off on a terminal) into buf; its length, or
 * -1 if empty, too short or too long. */
static int
users_password(char *buf, size_t cap)
{
    struct termios old, quiet;
    int tty = isatty(0) && tcgetattr(0, &old) == 0;
    if (tty) {
        fprintf(stderr, "password: ");
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(0, TCSAFLUSH, &quiet);
    }
    char *got = fgets(buf, (int)cap, stdin);
    if (tty) {
        tcsetattr(0, TCSAFLUSH, &old);
        fprintf(stderr, "\n");
    }
    if (!got)
        return -1;
    size_t n = strlen(buf);
    if (n == cap - 1 && buf[n - 1] != '\n') {
        fprintf(stderr, "soulbox users: the password is longer than %zu bytes\n", cap - 2);
        return -1;
    }
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = 0;
    if (n < 8) {
        fprintf(stderr, "soulbox users: the password must be at least 8 bytes\n");
        return -1;
    }
    return (int)n;
}

static int
users_set(cli_t *c, const char *user, const char *role, int create)
{
    char pw[1026], hash[256];
    int n = users_password(pw, sizeof pw);
    if (n < 0)
        return 1;
    int r = sb_password_hash(pw, (size_t)n, SB_PBKDF2_ITER, hash, sizeof hash);
    OPENSSL_cleanse(pw, sizeof pw);
    if (r) {
        fprintf(stderr, "soulbox users: cannot hash the password: %s\n", sb_strerror(r));
        return 1;
    }
    json_t *rec;
    json_int_t now = (json_int_t)sb_now_real_ms();
    if (create) {
        rec = json_pack("{s:s, s:s, s:s, s:I}", "username", user, "password_hash", hash, "role",
                        role, "created", now);
    } else {
        int st;
        rec = cli_get(c, "user", user, &st);
        if (!rec) {
            if (st == SB_ENOTFOUND)
                fprintf(stderr, "soulbox users passwd: no user '%s'\n", user);
            else
                cli_fail(c, "cannot read the user", st ? st : SB_EBADMSG);
            return 1;
        }
        json_object_set_new(rec, "password_hash", json_string(hash));
        json_object_set_new(rec, "updated", json_integer(now));
    }
    r = cli_put(c, "user", rec, create);
    json_decref(rec);
    if (r == SB_EEXIST) {
        fprintf(stderr, "soulbox users add: user '%s' exists (soulbox users passwd to change the "
                "password)\n", user);
        return 1;
    }
    if (r) {
        cli_fail(c, "cannot store the user", r);
        return 1;
    }
    printf("%s user %s%s%s\n", create ? "added" : "changed the password of", user,
           create ? " with role " : "", create ? role : "");
    return 0;
}

int
sb_cmd_users(int argc, char **argv, const sb_config_t *cfg)
{
    static const char *const opts[] = {"--role", NULL};
    static const char *const flags[] = {"--password-stdin", NULL};
    cli_t c;
    int rc = 0, st;
    const char *act = argc > 0 ? argv[0] : "";

    if (argc < 1 || strcmp(act, "--help") == 0 || strcmp(act, "-h") == 0)
        return argc < 1 ? users_usage() : (users_usage(), 0);
    if (!strcmp(act, "add") || !strcmp(act, "passwd") || !strcmp(act, "del")) {
        if (argc < 2 || !sb_auth_username_ok(argv[1], strlen(argv[1]))) {
            fprintf(stderr, "soulbox users %s: NAME must be 1-64 of A-Z a-z 0-9 . _ -\n", act);
            return 2;
        }
        if (!cli_check_args(argc, argv, 2, strcmp(act, "add") ? NULL : opts,
                            strcmp(act, "del") ? flags : NULL))
            return users_usage();
    } else if (!strcmp(act, "list")) {
        if (argc != 1)
            return users_usage();
    } else {
        fprintf(stderr, "soulbox users: unknown action '%s'\n", act);
        return users_usage();
    }
    const char *role = cli_opt(argc, argv, "--role");
    if (!strcmp(act, "add") && (!role || sb_role_parse(role, strlen(role)) == SB_ROLE_NONE)) {
        fprintf(stderr, "soulbox users add: --role must be admin, user or viewer\n");
        return 2;
    }
    if (cli_open(&c, cfg) != 0) {
        cli_close(&c);
        return 1;
    }
    if (!strcmp(act, "add") || !strcmp(act, "passwd")) {
        rc = users_set(&c, argv[1], role, !strcmp(act, "add"));
    } else if (!strcmp(act, "del")) {
        sb_store_del_t d = {.kind = SB_STR("user"), .key = sb_str(argv[1])};
        st = cli_call(&c, SB_MSG_STORE_DEL, &sb_store_del_def, &d);
        sb_store_ack_t ack = {0};
        sb_msg_t m = cli_reply(&c);
        if (st || sb_store_ack_decode(&m, &ack) != 0) {
            cli_fail(&c, "cannot delete the user", st ? st : SB_EBADMSG);
            rc = 1;
        } else if (!ack.changed) {
            fprintf(stderr, "soulbox users del: no user '%s'\n", argv[1]);
            rc = 1;
        } else {
            printf("deleted user %s (access tokens already issued expire on their own)\n",
                   argv[1]);
        }
    } else {
        json_t *arr = cli_list(&c, "user", &st), *r;
        size_t i;
        if (!arr) {
            cli_fail(&c, "cannot list users", st ? st : SB_EBADMSG);
            rc = 1;
        } else {
            printf("%-24s %-7s %-20s %s\n", "USER", "ROLE", "CREATED", "DISABLED");
            json_array_foreach(arr, i, r) {
                char created[32];
                cli_time(json_object_get(r, "created"), created, sizeof created);
                json_t *dis = json_object_get(r, "disabled");
                printf("%-24s %-7s %-20s %s\n", json_string_value(json_object_get(r, "username")),
                       json_string_value(json_object_get(r, "role")), created,
                       json_is_integer(dis) && json_integer_value(dis) ? "yes" : "no");
            }
            json_decref(arr);
        }
    }
    cli_close(&c);
    return rc;
}
