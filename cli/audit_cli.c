/*
 * auditor_cli.c: `soulbox audit verify|tail`.  verify walks the whole log with the verifier of
 * audit_log.c (the same code the tests use) and names the first bad line and the reason;
 * tail prints the last N records as they are on disk.
 */
#include "audit_cli.h"

#include "actors/auditor/audit_log.h"

#include "base/err.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
audit_usage(void)
{
    fprintf(stderr, "usage: soulbox audit verify [--data-dir DIR]\n"
                    "       soulbox audit tail [-n N] [--data-dir DIR]\n");
    return 2;
}

static int
audit_verify_cmd(const char *dir)
{
    sb__audit_report_t rep;
    int r = sb__audit_verify(dir, &rep);
    if (r < 0) {
        fprintf(stderr, "soulbox audit verify: %s\n", rep.reason);
        return 2;
    }
    if (r == 1) {
        printf("TAMPERED: %s/audit.log line %" PRIu64 ": %s\n", dir, rep.bad_line, rep.reason);
        return 1;
    }
    printf("OK: %" PRIu64 " records, chain intact (last seq %" PRIu64 ")%s\n", rep.records,
           rep.last_seq, rep.partial_tail ? "; the last line is an incomplete, unacknowledged "
           "write cut by a crash (dropped at next start)" : "");
    return 0;
}

static int
audit_tail_cmd(const char *dir, long n)
{
    char path[PATH_MAX], *line = NULL;
    size_t cap = 0;
    ssize_t len;
    char **ring = calloc((size_t)n, sizeof *ring);
    long count = 0;

    snprintf(path, sizeof path, "%s/audit.log", dir);
    FILE *f = fopen(path, "re");
    if (!f) {
        fprintf(stderr, "soulbox audit tail: cannot open %s\n", path);
        free(ring);
        return 2;
    }
    while ((len = getline(&line, &cap, f)) > 0) {
        if (line[len - 1] != '\n')
            break;
        free(ring[count % n]);
        ring[count % n] = strdup(line);
        count++;
    }
    fclose(f);
    free(line);
    for (long i = count > n ? count - n : 0; i < count; i++)
        fputs(ring[i % n], stdout);
    for (long i = 0; i < n; i++)
        free(ring[i]);
    free(ring);
    return 0;
}

int
sb_cmd_audit(int argc, char **argv, const sb_config_t *cfg)
{
    const char *dir = cfg ? cfg->data_dir : NULL;
    long n = 20;

    if (argc < 1)
        return audit_usage();
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--data-dir") == 0 && i + 1 < argc) {
            dir = argv[++i];
        } else if (strncmp(argv[i], "--data-dir=", 11) == 0) {
            dir = argv[i] + 11;
        } else if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
            char *end;
            n = strtol(argv[++i], &end, 10);
            if (*end || n < 1 || n > 1000000)
                return audit_usage();
        } else {
            return audit_usage();
        }
    }
    if (!dir || !*dir)
        return audit_usage();
    if (strcmp(argv[0], "verify") == 0)
        return audit_verify_cmd(dir);
    if (strcmp(argv[0], "tail") == 0)
        return audit_tail_cmd(dir, n);
    return audit_usage();
}
