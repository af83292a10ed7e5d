/*
 * test_plugin.c: the runtime plugin loader (core/plugin.h): good manifests from
 * tests/fixtures/plugins, every kind of bad manifest with its line-numbered error, lookup by
 * name and alias, argv expansion with {args} splicing, the host probe of a real binary, and
 * that every shipped manifest under plugins/ validates strictly.
 */
#include "base/err.h"
#include "base/log.h"
#include "core/plugin.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIX SB_SOURCE_DIR "/tests/fixtures/plugins"

static int
argv_eq(char **got, const char *const *want)
{
    size_t i = 0;
    for (; want[i]; i++)
        if (!got[i] || strcmp(got[i], want[i]) != 0) {
            fprintf(stderr, "argv[%zu]: got \"%s\", want \"%s\"\n", i, got[i] ? got[i] : "(null)",
                    want[i]);
            return 0;
        }
    return got[i] == NULL;
}

static void
test_good(void)
{
    sb_plugins_t *ps = NULL;
    char err[1024] = "";
    CHECK_EQ(sb_plugins_load(FIX "/good", true, true, &ps, err, sizeof err), 0);
    CHECK_EQ(sb_plugins_count(ps), 2);
    const sb_plugin_t *a = sb_plugins_at(ps, 0), *b = sb_plugins_at(ps, 1);
    CHECK(!strcmp(a->name, "alpha") && !strcmp(b->name, "beta"));
    CHECK(!strcmp(a->display, "Alpha Lang") && !strcmp(b->display, "beta"));
    CHECK(!strcmp(a->source_file, "main.al"));
    CHECK(!strcmp(a->hello, "echo \"Hello, \xc3\xa9!\"\n"));
    CHECK(!strcmp(a->hello_expect, "Hello, \xc3\xa9!\n"));
    CHECK(a->run_timeout_ms == 5000 && a->run_memory_mb == 256 && a->compile_timeout_ms == 0);
    CHECK(b->compile_timeout_ms == 30000 && b->compile_memory_mb == 1024 && b->compile_cpu_ms == 60000);
    CHECK(a->compile_cmd == NULL && b->compile_cmd != NULL && b->kernel_cmd == NULL);
    CHECK(a->dir[0] == '/' && strstr(a->dir, "/good/alpha"));
    CHECK(b->aliases && b->aliases[0] == NULL && b->env && b->env[0] == NULL);
    /* The probe: sh exists and exits 0, first line kept; a missing program is not installed. */
    CHECK(a->installed && !strcmp(a->version, "alpha 1.2.3"));
    CHECK(!b->installed && !strcmp(b->version, ""));
    sb_test_ok("good manifests load with every key");

    CHECK(sb_plugins_find(ps, "alpha") == a && sb_plugins_find(ps, "AL") == a);
    CHECK(sb_plugins_find(ps, "ALPHA1") == a && sb_plugins_find(ps, "Beta") == b);
    CHECK(sb_plugins_find(ps, "gamma") == NULL && sb_plugins_find(ps, NULL) == NULL);
    sb_test_ok("find by name and alias, case-insensitively");

    const char *args[] = {"one", "two words", "{file}"};
    char **v = sb_plugin_expand(a, a->run_cmd, "/home/user/main.al", args, 3);
    CHECK(argv_eq(v, (const char *const[]){"sh", "/home/user/main.al", "--dir=/home/user", "one",
                                           "two words", "{file}", "--end", NULL}));
    sb_plugin_argv_free(v);
    v = sb_plugin_expand(a, a->run_cmd, "/home/user/main.al", NULL, 0);
    CHECK(argv_eq(v, (const char *const[]){"sh", "/home/user/main.al", "--dir=/home/user", "--end", NULL}));
    sb_plugin_argv_free(v);
    v = sb_plugin_expand(b, b->compile_cmd, "/home/user/prog.b", NULL, 0);
    CHECK(argv_eq(v, (const char *const[]){"cc", "-o", "/home/user/prog", "/home/user/prog.b",
                                           "{literal}", NULL}));
    sb_plugin_argv_free(v);
    v = sb_plugin_expand(b, b->run_cmd, "/home/user/prog.b", args, 2);
    CHECK(argv_eq(v, (const char *const[]){"/home/user/prog", "one", "two words", NULL}));
    sb_plugin_argv_free(v);
    v = sb_plugin_expand(a, a->env, "/home/user/main.al", NULL, 0);
    CHECK(argv_eq(v, (const char *const[]){"ALPHA_HOME=/home/user/.alpha", "X=1", NULL}));
    sb_plugin_argv_free(v);
    char kcmd[4200];
    snprintf(kcmd, sizeof kcmd, "%s/kernel.sh", a->dir);
    v = sb_plugin_expand(a, a->kernel_cmd, NULL, NULL, 0);
    CHECK(argv_eq(v, (const char *const[]){"sh", kcmd, NULL}));
    sb_plugin_argv_free(v);
    /* A source without an extension: {name} is the file, {bin} gets ".bin". */
    v = sb_plugin_expand(b, b->compile_cmd, "/w/prog", NULL, 0);
    CHECK(argv_eq(v, (const char *const[]){"cc", "-o", "/w/prog.bin", "/w/prog", "{literal}", NULL}));
    sb_plugin_argv_free(v);
    sb_test_ok("expand fills placeholders and splices {args}");
    sb_plugins_free(ps);

    CHECK_EQ(sb_plugins_load_one(FIX "/good/beta", false, &ps, err, sizeof err), 0);
    CHECK(sb_plugins_count(ps) == 1 && !strcmp(sb_plugins_at(ps, 0)->name, "beta"));
    sb_plugins_free(ps);
    CHECK_EQ(sb_plugins_load_one(FIX "/good", false, &ps, err, sizeof err), SB_ENOTFOUND);
    sb_test_ok("load_one reads one folder");
}

/* Each bad manifest, written to a temporary plugin folder, with the error it must give. */
static const struct {
    const char *text, *want;
} bad[] = {
    {"name = \"x\"\nsource_file = \"m\"\nrun_cmd = [\"a\"]\nhello = \"\"\nhello_expect = \"\"\ncolour = \"red\"\n",
     "line 6: unknown key 'colour'"},
    {"name = 5\n", "line 1: 'name' must be a string, not an integer"},
    {"name = \"x\"\nrun_cmd = \"python3 {file}\"\n", "line 2: 'run_cmd' must be an array of strings, not a string"},
    {"name = \"x\"\nrun_cmd = [\"a\", 1]\n", "line 2: 'run_cmd' must be an array of strings (element 2 is an integer)"},
    {"name = \"x\"\nrun_cmd = []\n", "line 2: 'run_cmd' needs at least a program"},
    {"name = \"x\"\nsource_file = \"m\"\nhello = \"\"\nhello_expect = \"\"\n", "missing required key 'run_cmd'"},
    {"name = \"x\"\nrun_cmd = [\"a\"]\nhello = \"\"\nhello_expect = \"\"\n", "missing required key 'source_file'"},
    {"source_file = \"m\"\nrun_cmd = [\"a\"]\nhello = \"\"\nhello_expect = \"\"\n", "missing required key 'name'"},
    {"name = \"x\"\nsource_file = \"m\"\nrun_cmd = [\"a\"]\nhello = \"\"\n", "missing required key 'hello_expect'"},
    {"name = \"x\"\n\nrun_cmd = [\"a\", \"{source}\"]\n",
     "line 3: run_cmd: unknown placeholder {source} (known: {file} {dir} {name} {bin} {args} {plugin})"},
    {"name = \"x\"\nrun_cmd = [\"a\", \"--x={args}\"]\n", "line 2: run_cmd: {args} must be a whole element"},
    {"name = \"x\"\ncompile_cmd = [\"a\", \"{file\"]\n", "line 2: compile_cmd: unclosed '{'"},
    {"name = \"x\"\nenv = [\"NOEQUALS\"]\n", "line 2: env: \"NOEQUALS\" is not NAME=value"},
    {"name = \"x\"\nenv = [\"A={args}\"]\n", "line 2: env: {args} is not allowed in env"},
    {"name = \"x\"\nname = \"y\"\n", "line 2: duplicate key 'name' (first on line 1)"},
    {"[compile]\ntimeout_ms = -5\n", "line 2: 'compile.timeout_ms' must be between 1 and 3600000"},
    {"[run]\nmemory_mb = \"512\"\n", "line 2: 'run.memory_mb' must be an integer, not a string"},
    {"[run]\nmemory_mb = 99999999\n", "line 2: 'run.memory_mb' must be between 1 and 65536"},
    {"[run]\ncpu_ms = 5\n", "line 2: unknown key 'run.cpu_ms'"},
    {"name = \"Bad Name\"\nsource_file = \"m\"\nrun_cmd = [\"a\"]\nhello = \"\"\nhello_expect = \"\"\n",
     "line 1: name \"Bad Name\" must be"},
    {"name = \"x\"\nsource_file = \"../etc/passwd\"\nrun_cmd = [\"a\"]\nhello = \"\"\nhello_expect = \"\"\n",
     "line 2: source_file \"../etc/passwd\" must be a plain file name"},
    {"name = \"x\"\naliases = [\"ok\", \"no/slash\"]\n", "line 2: alias \"no/slash\" must be"},
    {"name = \"x\"\naliases = [\"x\"]\nsource_file = \"m\"\nrun_cmd = [\"a\"]\nhello = \"\"\nhello_expect = \"\"\n",
     "alias \"x\" repeats the name"},
    {"name = \"x\"\nhello = '''\nunterminated\n", "unterminated multi-line string"},
    {"name = \"x\"\nhello = \"\\q\"\n", "line 2: unsupported escape in string"},
    {"name = {a = 1}\n", "line 1: inline tables are not supported"},
};

static void
test_bad(void)
{
    char dir[] = "/tmp/sb-plugin-test-XXXXXX", sub[128], mf[160], err[2048];
    CHECK(mkdtemp(dir) != NULL);
    sb_log_level = -1; /* the lenient loads log every skipped manifest */
    snprintf(sub, sizeof sub, "%s/p", dir);
    snprintf(mf, sizeof mf, "%s/manifest.toml", sub);
    CHECK(mkdir(sub, 0755) == 0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *want = bad[i].want;
        FILE *f = fopen(mf, "w");
        CHECK(f != NULL);
        fputs(bad[i].text, f);
        fclose(f);
        sb_plugins_t *ps = NULL;
        err[0] = 0;
        int rc = sb_plugins_load_one(sub, false, &ps, err, sizeof err);
        if (rc != SB_ECONFIG || !strstr(err, want) || !strstr(err, "manifest.toml: ")) {
            fprintf(stderr, "case %zu: rc %d err \"%s\", want \"%s\"\n", i, rc, err, want);
            CHECK(0);
        }
        /* Strict load of the folder fails the same way; lenient load skips it. */
        CHECK_EQ(sb_plugins_load(dir, true, false, &ps, err, sizeof err), SB_ECONFIG);
        CHECK_EQ(sb_plugins_load(dir, false, false, &ps, err, sizeof err), 0);
        CHECK_EQ(sb_plugins_count(ps), 0);
        sb_plugins_free(ps);
    }
    unlink(mf);
    rmdir(sub);
    rmdir(dir);
    sb_test_ok("bad manifests refused with line-numbered errors");

    sb_plugins_t *ps = NULL;
    CHECK_EQ(sb_plugins_load(FIX "/clash", true, false, &ps, err, sizeof err), SB_ECONFIG);
    CHECK(strstr(err, "\"same\" is already taken by plugin a"));
    CHECK_EQ(sb_plugins_load(FIX "/clash", false, false, &ps, err, sizeof err), 0);
    CHECK(sb_plugins_count(ps) == 1 && sb_plugins_find(ps, "same") == sb_plugins_at(ps, 0));
    sb_plugins_free(ps);
    CHECK_EQ(sb_plugins_load(FIX "/no-such-dir", false, false, &ps, err, sizeof err), SB_ENOTFOUND);
    sb_test_ok("name clashes and a missing folder");
}

static void
test_shipped(void)
{
    sb_plugins_t *ps = NULL;
    char err[2048] = "";
    int rc = sb_plugins_load(SB_SOURCE_DIR "/plugins", true, false, &ps, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "%s\n", err);
    CHECK_EQ(rc, 0);
    CHECK(sb_plugins_count(ps) >= 20);
    CHECK(sb_plugins_find(ps, "py") && sb_plugins_find(ps, "js") && sb_plugins_find(ps, "c++"));
    for (size_t i = 0; i < sb_plugins_count(ps); i++) {
        const sb_plugin_t *p = sb_plugins_at(ps, i);
        CHECK(p->hello[0] && p->hello_expect[0] && p->packages[0]);
    }
    sb_plugins_free(ps);
    setenv("SOULBOX_PLUGINS", "/x/y", 1);
    CHECK(!strcmp(sb_plugins_default_dir(), "/x/y"));
    unsetenv("SOULBOX_PLUGINS");
    CHECK(!strcmp(sb_plugins_default_dir(), SB_SOURCE_DIR "/plugins"));
    sb_test_ok("every shipped manifest validates strictly; default dir");
}

int
main(void)
{
    test_good();
    test_bad();
    test_shipped();
    return sb_test_done();
}
