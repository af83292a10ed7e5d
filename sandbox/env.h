/*
 * env.h: the environment of processes in a sandbox, defined once.  Every process a sandbox
 * runs starts from sb_env_default (or the sandbox's own environment, built from it when the
 * sandbox was created), overlaid with its runtime plugin's entries and then the request's.
 * Pure functions; any thread.
 */
#ifndef SB_SANDBOX_ENV_H
#define SB_SANDBOX_ENV_H

#include "core/plugin.h"

#include <stddef.h>

/* PATH, HOME=/home/user, USER, LOGNAME, LANG=C.UTF-8, SHELL=/bin/bash; NULL-terminated. */
extern const char *const sb_env_default[];
/* The same and TERM=xterm-256color, for processes on a terminal. */
extern const char *const sb_env_default_pty[];
#define SB_ENV_TERM "TERM=xterm-256color"

/* sb_env_merge returns in *out base overlaid with each of the n layers' "K=V" entries, in
 * order (a later entry replaces an earlier one of the same name); base and layers may be
 * NULL.  SB_EBADMSG (and *out untouched) when an entry has no '=' or an empty name.  Free
 * with sb_strv_free. */
int sb_env_merge(char ***out, const char *const *base, const char *const *const *layers,
                 size_t n);

/* sb_env_build is the environment of one process: base (the sandbox's own environment, or
 * NULL for sb_env_default), TERM when pty, then plugin p's entries with placeholders filled
 * for its source file (p may be NULL: base already holds them), then extra. */
int sb_env_build(char ***out, const char *const *base, bool pty, const sb_plugin_t *p,
                 const char *const *extra);

void sb_strv_free(char **v);

#endif
