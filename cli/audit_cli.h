/*
 * auditor_cli.h: `soulbox audit verify` and `soulbox audit tail`.  Main thread; blocking.
 */
#ifndef SB_AUDITOR_CLI_H
#define SB_AUDITOR_CLI_H

#include "core/config.h"

/* sb_cmd_audit: argv[0] is "verify" or "tail" ([-n N], default 20), optionally with
 * --data-dir DIR (else cfg->data_dir).  Exit status: verify 0 intact, 1 tampered (the first
 * bad line and why on stdout), 2 usage or unreadable files; tail 0, or 2. */
int sb_cmd_audit(int argc, char **argv, const sb_config_t *cfg);

#endif
