/*
 * test.h: the tiny harness every C test links.  CHECK aborts the test with file/line and the
 * failing expression; tests print "ok NAME" lines and end with sb_test_done().  Helpers start
 * the real soulbox binary on free ports and wait on events with deadlines (never sleeps).
 */
#ifndef SB_TEST_H
#define SB_TEST_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

#include "core/config.h"

extern int sb_test_failures;

#define CHECK(e)                                                                                   \
    do {                                                                                           \
        if (!(e)) {                                                                                \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #e);                           \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)
#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        long long _a = (long long)(a), _b = (long long)(b);                                        \
        if (_a != _b) {                                                                            \
            fprintf(stderr, "FAIL %s:%d: %s == %s (%lld != %lld)\n", __FILE__, __LINE__, #a, #b,   \
                    _a, _b);                                                                       \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* The exit status ctest reports as skipped (SKIP_RETURN_CODE in cmake/SbTest.cmake). */
#define SB_TEST_SKIP_CODE 77

void sb_test_ok(const char *name);
/* sb_test_skip records a case that cannot run here (and why); the test then ends skipped. */
void sb_test_skip(const char *name, const char *why);
/* sb_test_done: 1 after a failure, SB_TEST_SKIP_CODE after a skip, else 0. */
int sb_test_done(void);

/* sb_test_config loads a configuration from flags alone (no environment, no config file);
 * fails the test with the reason if they are refused.  Release with sb_config_fini. */
void sb_test_config(sb_config_t *cfg, const char *const *flags);

/* A free TCP port on 127.0.0.1 (bound then released; race-tolerant for tests). */
int sb_test_free_port(void);

/* Start the real soulbox binary with args (NULL-terminated, without argv[0]) plus
 * --ready-fd; its stdout and stderr go to log_path.  Waits (up to timeout_ms) for the READY
 * line soulbox writes once every actor runs and the API listens, and returns the pid with the
 * HTTP port in *port (the line's port=).  Returns -1 if it exited or timed out. */
pid_t sb_test_start_soulbox(const char *const *args, const char *log_path, int timeout_ms,
                            int *port);
/* Wait until GET http://127.0.0.1:port/path answers with any status, up to timeout_ms.
 * Returns the status or -1. */
int sb_test_wait_http(int port, const char *path, int timeout_ms);
/* One HTTP/1.1 request on a fresh connection; fills body (malloc'd, NUL-terminated).
 * Returns the status or -1. */
int sb_test_http(int port, const char *method, const char *path, const char *headers,
                 const char *body, char **resp_body);
/* Wait for pid to exit, up to timeout_ms; returns its wait status or -1 on timeout. */
int sb_test_wait_exit(pid_t pid, int timeout_ms);
/* Wait until the file at path contains needle, up to timeout_ms; 1 if found. */
int sb_test_wait_file_contains(const char *path, const char *needle, int timeout_ms);

#endif
