/*
 * log.h: structured logging.  Every line carries time, level, actor, a stable message id and
 * the correlation id of the work in hand, so one grep follows a request through all actors:
 *
 *   2026-11-22T20:40:01.123Z info  gateway  SB-GW-LISTEN cid=0 listening on 127.0.0.1:3000
 *
 * or the same fields as one JSON object per line (log.format = "json").  The level is checked
 * before the arguments are evaluated.  A line is written with one write(2) so lines from
 * different threads never interleave.  Thread-safe; callable from any thread.
 */
#ifndef SB_LOG_H
#define SB_LOG_H

#include <stdint.h>

typedef enum { SB_LOG_ERROR = 0, SB_LOG_WARN, SB_LOG_INFO, SB_LOG_DEBUG } sb_log_level_t;

extern volatile int sb_log_level;

/* sb_log_setup sets the threshold and the format ("text" or "json"); call before threads. */
void sb_log_setup(sb_log_level_t level, int json);
/* sb_log_level_parse maps "error".."debug" to a level; -1 if unknown. */
int sb_log_level_parse(const char *s);
/* sb_log_fd redirects output (default 2); for tests. */
void sb_log_set_fd(int fd);

/* Per-thread context: the actor name (static string) and the current correlation id. */
void sb_log_set_actor(const char *actor);
void sb_log_set_cid(uint64_t cid);
uint64_t sb_log_get_cid(void);

void sb_log_emit(sb_log_level_t level, const char *id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define SB__LOG(lvl, id, ...)                                                                      \
    do {                                                                                           \
        if (sb_log_level >= (lvl))                                                                 \
            sb_log_emit((lvl), (id), __VA_ARGS__);                                                 \
    } while (0)
#define sb_log_error(id, ...) SB__LOG(SB_LOG_ERROR, id, __VA_ARGS__)
#define sb_log_warn(id, ...) SB__LOG(SB_LOG_WARN, id, __VA_ARGS__)
#define sb_log_info(id, ...) SB__LOG(SB_LOG_INFO, id, __VA_ARGS__)
#define sb_log_debug(id, ...) SB__LOG(SB_LOG_DEBUG, id, __VA_ARGS__)

#endif
