/*
 * main.c: the `soulbox` binary -- configuration, the subcommand table, and `serve`, which
 * starts the actors --roles names on one bus and stops them in order on SIGINT/SIGTERM.
 *
 * Start order: storage, auditor, monitor, scheduler, executor, pool, gateway -- so the
 * scheduler hears the executor's first capacity report and the pool's first offers, and the
 * gateway only accepts clients once everything behind it runs.  Stop order is the reverse:
 * the gateway stops accepting first and lets in-flight requests finish within the grace
 * period, then each actor behind it stops in turn; storage stops last so nothing is lost.
 */
#include "core/actor.h"
#include "core/bus.h"
#include "core/config.h"
#include "base/err.h"
#include "base/log.h"
#include "auth_cli.h"
#include "gateway/gateway.h"
#include "actors/auditor/auditor.h"
#include "audit_cli.h"
#include "actors/executor/executor.h"
#include "plugins_cli.h"
#include "run_cli.h"
#include "actors/monitor/monitor.h"
#include "actors/pool/pool.h"
#include "actors/scheduler/scheduler.h"
#include "actors/storage/storage.h"
#include "migrate_cli.h"
#include "base/clock.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

typedef int (*cmd_fn)(int argc, char **argv, const sb_config_t *cfg);

static int cmd_serve(int argc, char **argv, const sb_config_t *cfg);
static int cmd_version(int argc, char **argv, const sb_config_t *cfg);
static int cmd_help(int argc, char **argv, const sb_config_t *cfg);

/* The subcommands.  One line each; areas add theirs here. */
static const struct {
    const char *name;
    cmd_fn fn;
    const char *help;
} commands[] = {
    {"serve", cmd_serve, "run the server (all actors, or --roles a,b,...)"},
    {"version", cmd_version, "print the version"},
    {"help", cmd_help, "this text, and every configuration key"},
    {"run", sb_cmd_run_main, "run a program in a one-shot sandbox (soulbox run -r python FILE|-)"},
    {"migrate", sb_cmd_migrate, "run the storage schema migrations and exit"},
    {"audit", sb_cmd_audit, "audit verify (check the hash chain) | audit tail [-n N]"},
    {"keys", sb_cmd_keys, "API keys: keys create --role R [--name N] | keys list | keys revoke ID"},
    {"users", sb_cmd_users, "users add NAME --role R (password on stdin) | passwd | list | del"},
    {"plugins", sb_cmd_plugins, "plugins list | plugins check DIR|NAME...|--all (runtime plugins)"},
};

/* Start order; stop order is the reverse. */
static const sb_actor_ops_t *const serve_order[] = {
    &sb_storage_actor,  &sb_auditor_actor, &sb_monitor_actor, &sb_scheduler_actor,
    &sb_executor_actor, &sb_pool_actor,    &sb_gateway_actor,
};
#define SERVE_NACTORS (sizeof serve_order / sizeof serve_order[0])

static int
cmd_version(int argc, char **argv, const sb_config_t *cfg)
{
    (void)argc;
    (void)argv;
    (void)cfg;
    printf("soulbox 0.1.0\n");
    return 0;
}

static int
cmd_help(int argc, char **argv, const sb_config_t *cfg)
{
    (void)argc;
    (void)argv;
    (void)cfg;
    printf("usage: soulbox COMMAND [flags]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        printf("  %-10s %s\n", commands[i].name, commands[i].help);
    printf("\nconfiguration (soulbox.toml < SOULBOX_* environment < flags):\n");
    sb_config_usage(stdout);
    printf("  --config FILE            read this TOML file (default ./soulbox.toml if present)\n"
           "  --ready-fd N             (serve) write \"READY port=P\" to fd N once serving\n");
    return 0;
}

/* serve_roles turns cfg->roles into a bitmask of actor kinds (validated by config). */
static uint32_t
serve_roles(const sb_config_t *cfg)
{
    char *copy = strdup(cfg->roles), *parts[16];
    uint32_t mask = 0;
    size_t n = sb_split_list(copy, parts, 16);
    for (size_t i = 0; i < n; i++) {
        int k = sb_actor_kind_parse(parts[i], strlen(parts[i]));
        if (k > 0)
            mask |= 1u << k;
    }
    free(copy);
    return mask;
}

static int
cmd_serve(int argc, char **argv, const sb_config_t *cfg)
{
    sb_bus_opts_t bo = {0};
    sb_bus_t *bus = NULL;
    sb_actor_t *actors[SERVE_NACTORS] = {0};
    sb_gateway_arg_t gw = {.cfg = cfg};
    char *joins[32], *joincopy = strdup(cfg->bus_join);
    int ready_fd = -1, rc = 0, sig = 0;
    sigset_t set;

    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "--ready-fd=", 11) == 0) {
            ready_fd = atoi(argv[i] + 11);
        } else if (strcmp(argv[i], "--ready-fd") == 0 && i + 1 < argc) {
            ready_fd = atoi(argv[++i]);
        } else {
            fprintf(stderr, "soulbox serve: unknown argument '%s' (see soulbox help)\n", argv[i]);
            free(joincopy);
            return 2;
        }
    }

    /* Every thread inherits this mask; only this thread takes the signals, with sigwait. */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    bo.node_name = cfg->node_name;
    bo.listen = cfg->bus_listen;
    bo.advertise = cfg->bus_advertise;
    bo.njoin = sb_split_list(joincopy, joins, 32);
    bo.join = (const char *const *)joins;
    bo.secret = (const uint8_t *)cfg->bus_secret;
    bo.secret_len = strlen(cfg->bus_secret);
    bo.hello_ms = (uint32_t)cfg->bus_hello_ms;
    bo.node_ttl_ms = (uint32_t)cfg->bus_node_ttl_ms;
    if ((rc = sb_bus_alloc(&bo, &bus)) != 0) {
        fprintf(stderr, "soulbox serve: cannot start the bus: %s\n", sb_strerror(rc));
        free(joincopy);
        return 1;
    }

    uint32_t roles = serve_roles(cfg);
    for (size_t i = 0; i < SERVE_NACTORS; i++) {
        const sb_actor_ops_t *ops = serve_order[i];
        if (!(roles & (1u << ops->kind)))
            continue;
        void *arg = ops == &sb_gateway_actor ? (void *)&gw : (void *)cfg;
        if ((rc = sb_actor_spawn(bus, ops, arg, &actors[i])) != 0) {
            sb_log_error("SB-MAIN-SPAWN-FAIL", "%s failed to start: %s", ops->name,
                         sb_strerror(rc));
            actors[i] = NULL;
            rc = 1;
            goto stop;
        }
    }
    if ((rc = sb_bus_start(bus)) != 0) {
        sb_log_error("SB-MAIN-BUS-START", "bus start failed: %s", sb_strerror(rc));
        rc = 1;
        goto stop;
    }
    sb_log_info("SB-MAIN-READY", "soulbox serving: node %s roles %s%s%s", sb_bus_node_name(bus),
                cfg->roles, sb_bus_url(bus) ? " bus " : "", sb_bus_url(bus) ? sb_bus_url(bus) : "");
    if (ready_fd >= 0) {
        char line[256];
        int n = snprintf(line, sizeof line, "READY port=%d node=%s bus=%s\n",
                         atomic_load(&gw.port), sb_bus_node_name(bus),
                         sb_bus_url(bus) ? sb_bus_url(bus) : "-");
        if (write(ready_fd, line, (size_t)n) != n)
            sb_log_warn("SB-MAIN-READY-FD", "could not write to --ready-fd %d", ready_fd);
        close(ready_fd);
    }
    sigwait(&set, &sig);
    sb_log_info("SB-MAIN-SIGNAL", "%s received: shutting down (grace %lld ms)",
                sig == SIGINT ? "SIGINT" : "SIGTERM", (long long)cfg->shutdown_grace_ms);
    rc = 0;

stop:
    /* Reverse order; each actor gets what remains of the grace period, at least 100 ms. */
    {
        uint64_t end = sb_now_mono_us() + (uint64_t)cfg->shutdown_grace_ms * 1000;
        for (size_t i = SERVE_NACTORS; i-- > 0;) {
            if (!actors[i])
                continue;
            uint64_t now = sb_now_mono_us();
            uint32_t left = now < end ? (uint32_t)((end - now) / 1000) : 0;
            sb_actor_stop(actors[i], left < 100 ? 100 : left);
            if (sb_actor_join(actors[i]) != 0) {
                sb_log_error("SB-MAIN-UNCLEAN", "%s: loop did not close cleanly",
                             serve_order[i]->name);
                rc = 1;
            }
            sb_actor_free(actors[i]);
        }
    }
    sb_bus_free(bus);
    free(joincopy);
    sb_log_info("SB-MAIN-EXIT", "soulbox stopped (%s)", rc ? "with errors" : "cleanly");
    return rc;
}

int
main(int argc, char **argv)
{
    sb_config_t cfg;
    char err[1024];
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    int nrest = 0, rc;
    const char *name = argc > 1 ? argv[1] : "help";

    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0)
        name = "help";
    if (strcmp(name, "--version") == 0)
        name = "version";
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(commands[i].name, name) != 0)
            continue;
        if (sb_config_load(&cfg, argc > 2 ? argc - 2 : 0, argv + 2, environ, &nrest, rest, err,
                           sizeof err) != 0) {
            fprintf(stderr, "soulbox: invalid configuration: %s\n", err);
            sb_config_fini(&cfg);
            free(rest);
            return 2;
        }
        sb_log_setup((sb_log_level_t)sb_log_level_parse(cfg.log_level),
                     strcmp(cfg.log_format, "json") == 0);
        rc = commands[i].fn(nrest, rest, &cfg);
        sb_config_fini(&cfg);
        free(rest);
        return rc;
    }
    fprintf(stderr, "soulbox: unknown command '%s' (try: soulbox help)\n", name);
    free(rest);
    return 2;
}
