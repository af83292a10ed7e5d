/*
 * storage_cli.c: `soulbox migrate`.  SQLite: opens data_dir/soulbox.db and runs the migrations
 * of sqlite.c (the same code the actor runs at start, so the two can never disagree).  Redis:
 * records need no reshaping up to this version, so migrating means checking and setting
 * <prefix>schema; a store written by a newer soulbox is refused.
 */
#include "migrate_cli.h"

#include "actors/storage/store.h"

#include "base/err.h"

#include <hiredis/hiredis.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
migrate_redis(const sb_config_t *cfg)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout(cfg->storage_redis_host,
                                              (int)cfg->storage_redis_port, tv);
    redisReply *rep = NULL;
    char key[300];
    int from = 0, rc = 1;

    if (!c || c->err) {
        fprintf(stderr, "soulbox migrate: cannot connect to redis at %s:%lld: %s\n",
                cfg->storage_redis_host, (long long)cfg->storage_redis_port,
                c ? c->errstr : "out of memory");
        goto out;
    }
    if (*cfg->storage_redis_password) {
        rep = redisCommand(c, "AUTH %s", cfg->storage_redis_password);
        if (!rep || rep->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "soulbox migrate: redis AUTH failed\n");
            goto out;
        }
        freeReplyObject(rep);
    }
    rep = redisCommand(c, "SELECT %lld", (long long)cfg->storage_redis_db);
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "soulbox migrate: redis SELECT failed\n");
        goto out;
    }
    freeReplyObject(rep);
    snprintf(key, sizeof key, "%sschema", cfg->storage_redis_prefix);
    rep = redisCommand(c, "GET %s", key);
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "soulbox migrate: redis GET %s failed\n", key);
        goto out;
    }
    if (rep->type == REDIS_REPLY_STRING)
        from = atoi(rep->str);
    freeReplyObject(rep);
    rep = NULL;
    if (from > SB__SCHEMA_VERSION) {
        fprintf(stderr, "soulbox migrate: redis schema version %d is newer than this soulbox "
                "(%d)\n", from, SB__SCHEMA_VERSION);
        goto out;
    }
    rep = redisCommand(c, "SET %s %d", key, SB__SCHEMA_VERSION);
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "soulbox migrate: redis SET %s failed\n", key);
        goto out;
    }
    printf("redis %s:%lld: schema version %d -> %d\n", cfg->storage_redis_host,
           (long long)cfg->storage_redis_port, from, SB__SCHEMA_VERSION);
    rc = 0;
out:
    if (rep)
        freeReplyObject(rep);
    if (c)
        redisFree(c);
    return rc;
}

int
sb_cmd_migrate(int argc, char **argv, const sb_config_t *cfg)
{
    char err[512];
    sqlite3 *db;
    int from, to, r;

    if (argc > 0) {
        fprintf(stderr, "usage: soulbox migrate [--data-dir DIR] [--storage-backend sqlite|redis]"
                "\n  runs the storage schema migrations and exits\n");
        return strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0 ? 0 : 2;
    }
    if (strcmp(cfg->storage_backend, "redis") == 0)
        return migrate_redis(cfg);
    if (strcmp(cfg->storage_backend, "sqlite") != 0) {
        fprintf(stderr, "soulbox migrate: storage.backend '%s' is not sqlite or redis\n",
                cfg->storage_backend);
        return 2;
    }
    if ((r = sb__sqlite_open(cfg->data_dir, &db, &from, &to, err, sizeof err)) != 0) {
        fprintf(stderr, "soulbox migrate: %s\n", err);
        return 1;
    }
    sqlite3_close(db);
    printf("%s/soulbox.db: schema version %d -> %d%s\n", cfg->data_dir, from, to,
           from == to ? " (already current)" : "");
    return 0;
}
