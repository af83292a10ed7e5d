/* test_config.c: TOML < environment < flags, and refusals naming the key and range. */
#include "core/config.h"
#include "base/err.h"
#include "test.h"

#include <string.h>
#include <unistd.h>

static int
load(sb_config_t *c, const char *toml, char **env, int argc, char **argv, char *err)
{
    char path[] = "/tmp/sbcfgXXXXXX";
    int fd = mkstemp(path);
    char flag[64];
    char *args[32];
    int n = 0, nrest;
    char *rest[32];
    CHECK(fd >= 0);
    CHECK(write(fd, toml, strlen(toml)) == (ssize_t)strlen(toml));
    close(fd);
    snprintf(flag, sizeof flag, "--config=%s", path);
    args[n++] = flag;
    for (int i = 0; i < argc; i++)
        args[n++] = argv[i];
    int r = sb_config_load(c, n, args, env, &nrest, rest, err, 512);
    unlink(path);
    return r;
}

int
main(void)
{
    sb_config_t c;
    char err[512];

    /* defaults */
    {
        char *env[] = {NULL};
        CHECK_EQ(load(&c, "", env, 0, NULL, err), 0);
        CHECK_EQ(c.http_port, 3000);
        CHECK(strcmp(c.http_host, "127.0.0.1") == 0);
        CHECK(strstr(c.roles, "executor") != NULL);
        sb_config_fini(&c);
    }
    /* file < env < flags */
    {
        const char *toml = "# comment\nroles = [\"gateway\", \"storage\"]\n[http]\nport = 4000 # x\n"
                           "host = \"0.0.0.0\"\n[log]\nlevel = 'debug'\n";
        char *env[] = {"SOULBOX_HTTP_PORT=5000", "OTHER=1", NULL};
        char *argv[] = {"--port", "6000", "positional", "--unknown-flag"};
        CHECK_EQ(load(&c, toml, env, 0, NULL, err), 0);
        CHECK_EQ(c.http_port, 5000);
        CHECK(strcmp(c.roles, "gateway,storage") == 0);
        CHECK(strcmp(c.http_host, "0.0.0.0") == 0);
        CHECK(strcmp(c.log_level, "debug") == 0);
        sb_config_fini(&c);
        CHECK_EQ(load(&c, toml, env, 4, argv, err), 0);
        CHECK_EQ(c.http_port, 6000);
        sb_config_fini(&c);
        char *argv2[] = {"--http.port=7000", "--data-dir", "/tmp/x"};
        CHECK_EQ(load(&c, toml, env, 3, argv2, err), 0);
        CHECK_EQ(c.http_port, 7000);
        CHECK(strcmp(c.data_dir, "/tmp/x") == 0);
        sb_config_fini(&c);
    }
    sb_test_ok("config sources and precedence");

    /* refusals name the key and the allowed range */
    {
        char *env[] = {NULL};
        CHECK_EQ(load(&c, "[http]\nport = 70000\n", env, 0, NULL, err), SB_ECONFIG);
        CHECK(strstr(err, "http.port") && strstr(err, "0..65535") && strstr(err, "line 2"));
        sb_config_fini(&c);
        char *bad_env[] = {"SOULBOX_SHUTDOWN_GRACE_MS=-1", NULL};
        CHECK_EQ(load(&c, "", bad_env, 0, NULL, err), SB_ECONFIG);
        CHECK(strstr(err, "shutdown.grace_ms") && strstr(err, "0..600000"));
        sb_config_fini(&c);
        char *argv[] = {"--roles", "gateway,frobnicator"};
        CHECK_EQ(load(&c, "", env, 2, argv, err), SB_ECONFIG);
        CHECK(strstr(err, "roles") && strstr(err, "frobnicator"));
        sb_config_fini(&c);
        CHECK_EQ(load(&c, "nosuchkey = 1\n", env, 0, NULL, err), SB_ECONFIG);
        CHECK(strstr(err, "nosuchkey"));
        sb_config_fini(&c);
        CHECK_EQ(load(&c, "[http]\nport = \"3000\"\n", env, 0, NULL, err), SB_ECONFIG);
        CHECK(strstr(err, "wrong type"));
        sb_config_fini(&c);
        CHECK_EQ(load(&c, "[log]\nlevel = \"loud\"\n", env, 0, NULL, err), SB_ECONFIG);
        CHECK(strstr(err, "log.level"));
        sb_config_fini(&c);
        CHECK_EQ(load(&c, "x = {a = 1}\n", env, 0, NULL, err), SB_ECONFIG);
        sb_config_fini(&c);
        CHECK_EQ(load(&c, "[bus]\nsecret = \"short\"\n", env, 0, NULL, err), SB_ECONFIG);
        CHECK(strstr(err, "bus.secret"));
        sb_config_fini(&c);
        char *argv3[] = {"--port"};
        CHECK_EQ(load(&c, "", env, 1, argv3, err), SB_ECONFIG);
        sb_config_fini(&c);
    }
    sb_test_ok("config refusals name key and range");
    return sb_test_done();
}
