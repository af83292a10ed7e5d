/*
 * test_migrate.c: a schema-version-1 database (built from SQL text in
 * tests/fixtures/storage/v1.sql) upgrades in place -- once by `soulbox migrate`'s function,
 * then the storage actor serves its old records and the version-2 features (sandbox metadata,
 * sessions).  Also: migrate is idempotent, and a database from a newer version is refused.
 */
#include "sbclient.h"

#include "actors/storage/storage.h"
#include "cli/migrate_cli.h"
#include "base/err.h"
#include "base/log.h"
#include "test.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char *
slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    CHECK(f);
    char *buf = malloc(1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

static void
make_db(const char *dir, const char *sql)
{
    char path[4200];
    sqlite3 *db;
    char *err = NULL;
    snprintf(path, sizeof path, "%s/soulbox.db", dir);
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "fixture: %s\n", err);
        exit(1);
    }
    sqlite3_close(db);
}

static int
db_version(const char *dir)
{
    char path[4200];
    sqlite3 *db;
    sqlite3_stmt *s;
    int v = -1;
    snprintf(path, sizeof path, "%s/soulbox.db", dir);
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL) == SQLITE_OK);
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

int
main(void)
{
    sb_config_t cfg;
    sb_bus_t *bus;
    sb_actor_t *store;
    sbc_t c;
    char *out;
    uint64_t n;
    int more;
    struct stat st;

    sb_log_setup(SB_LOG_WARN, 0);
    char *base = sbc_tmpdir("migrate");
    char dir[4200];
    /* A nested data_dir that does not exist yet: migrate creates it, mode 0700. */
    snprintf(dir, sizeof dir, "%s/fresh/data", base);
    const char *fresh[] = {"--data-dir", dir, NULL};
    sb_test_config(&cfg, fresh);
    CHECK_EQ(sb_cmd_migrate(0, NULL, &cfg), 0);
    CHECK(stat(dir, &st) == 0 && (st.st_mode & 0777) == 0700);
    CHECK_EQ(db_version(dir), 2);
    sb_config_fini(&cfg);
    sb_test_ok("migrate creates a fresh database at the current version, data_dir 0700");

    char *sql = slurp(SB_FIXTURES "/v1.sql");
    snprintf(dir, sizeof dir, "%s/v1", base);
    CHECK(mkdir(dir, 0700) == 0);
    make_db(dir, sql);
    free(sql);
    CHECK_EQ(db_version(dir), 1);
    const char *flags[] = {"--data-dir", dir, NULL};
    sb_test_config(&cfg, flags);
    CHECK_EQ(sb_cmd_migrate(0, NULL, &cfg), 0);
    CHECK_EQ(db_version(dir), 2);
    CHECK_EQ(sb_cmd_migrate(0, NULL, &cfg), 0); /* idempotent */
    CHECK_EQ(db_version(dir), 2);
    sb_test_ok("a v1 database upgrades in place to v2; migrate twice is a no-op");

    sb_bus_opts_t bo = {0};
    CHECK(sb_bus_alloc(&bo, &bus) == 0);
    CHECK(sb_actor_spawn(bus, &sb_storage_actor, &cfg, &store) == 0);
    sbc_start(&c, bus);
    CHECK_EQ(st_get(&c, "user", "admin", NULL, &out), 0);
    CHECK(strstr(out, "\"role\":\"admin\""));
    free(out);
    CHECK_EQ(st_get(&c, "api_key",
                    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "key_hash",
                    &out), 0);
    CHECK(strstr(out, "\"name\":\"bootstrap\""));
    free(out);
    CHECK_EQ(st_get(&c, "sandbox", "sbx-old", NULL, &out), 0);
    CHECK(strcmp(out, "{\"created\":1690000000002,\"end_reason\":\"timeout\",\"ended\":"
                      "1690000000003,\"id\":\"sbx-old\",\"limits\":{\"memory_mb\":128},"
                      "\"node\":\"node-a\",\"owner\":\"admin\",\"runtime\":\"python\","
                      "\"state\":\"ended\"}") == 0);
    free(out);
    CHECK_EQ(st_get(&c, "execution", "exe-old", NULL, &out), 0);
    CHECK(strstr(out, "\"memory_peak\":2097152"));
    free(out);
    /* v2 features on the upgraded database. */
    CHECK_EQ(st_put(&c, "sandbox", "{\"id\":\"sbx-new\",\"owner\":\"admin\",\"runtime\":\"python\","
                                   "\"state\":\"running\",\"metadata\":{\"a\":\"b\"},"
                                   "\"created\":1690000000009}", 1), 0);
    CHECK_EQ(st_put(&c, "session", "{\"id\":\"ses-1\",\"owner\":\"admin\"}", 1), 0);
    CHECK_EQ(st_list(&c, "sandbox", "admin", "", 0, &out, &n, &more), 0);
    CHECK_EQ(n, 2);
    CHECK(strstr(out, "sbx-new") < strstr(out, "sbx-old"));
    free(out);
    CHECK_EQ(sbc_stop(&c), 0);
    sb_actor_stop(store, 2000);
    CHECK_EQ(sb_actor_join(store), 0);
    sb_actor_free(store);
    sb_bus_free(bus);
    sb_test_ok("the upgraded database serves old records and v2 features");

    /* A database from a newer soulbox is refused, unchanged. */
    make_db(dir, "PRAGMA user_version=99;");
    CHECK_EQ(sb_cmd_migrate(0, NULL, &cfg), 1);
    CHECK_EQ(db_version(dir), 99);
    sb_config_fini(&cfg);
    sb_test_ok("a newer schema is refused");
    sbc_rmrf(base);
    free(base);
    return sb_test_done();
}
