/*
 * log.c: formats one line per call into a stack buffer and writes it with a single write(2).
 * Context (actor, correlation id) is thread-local, set by the actor runtime around handlers.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

volatile int sb_log_level = SB_LOG_INFO;
static int log_json;
static int log_fd = 2;
static _Thread_local const char *log_actor = "main";
static _Thread_local uint64_t log_cid;

static const char *const log_names[] = {"error", "warn", "info", "debug"};

void
sb_log_setup(sb_log_level_t level, int json)
{
    sb_log_level = (int)level;
    log_json = json;
}

int
sb_log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, log_names[i]) == 0)
            return i;
    return -1;
}

void
sb_log_set_fd(int fd)
{
    log_fd = fd;
}

void
sb_log_set_actor(const char *actor)
{
    log_actor = actor ? actor : "main";
}

void
sb_log_set_cid(uint64_t cid)
{
    log_cid = cid;
}

uint64_t
sb_log_get_cid(void)
{
    return log_cid;
}

/* log_json_escape appends s to out as JSON string content; returns the new length. */
static size_t
log_json_escape(char *out, size_t len, size_t cap, const char *s)
{
    for (; *s && len + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[len++] = '\\';
            out[len++] = (char)c;
        } else if (c < 0x20) {
            len += (size_t)snprintf(out + len, cap - len, "\\u%04x", c);
        } else {
            out[len++] = (char)c;
        }
    }
    return len;
}

void
sb_log_emit(sb_log_level_t level, const char *id, const char *fmt, ...)
{
    char msg[2048], line[4096], ts[64];
    struct timespec now;
    struct tm tm;
    va_list ap;
    size_t len;
    int saved = errno;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", (tm.tm_year + 1900) % 10000,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             now.tv_nsec / 1000000);
    if (log_json) {
        len = (size_t)snprintf(line, sizeof line,
                               "{\"ts\":\"%s\",\"level\":\"%s\",\"actor\":\"%s\",\"id\":\"%s\","
                               "\"cid\":%llu,\"msg\":\"",
                               ts, log_names[level], log_actor, id, (unsigned long long)log_cid);
        if (len >= sizeof line)
            len = sizeof line - 1;
        len = log_json_escape(line, len, sizeof line - 4, msg);
        memcpy(line + len, "\"}\n", 3);
        len += 3;
    } else {
        len = (size_t)snprintf(line, sizeof line, "%s %-5s %-9s %s cid=%llu %s\n", ts,
                               log_names[level], log_actor, id, (unsigned long long)log_cid, msg);
        if (len >= sizeof line) {
            len = sizeof line;
            line[len - 1] = '\n';
        }
    }
    /* One write per line; a short write to stderr is not worth retrying at the cost of a stall. */
    ssize_t r = write(log_fd, line, len);
    (void)r;
    errno = saved;
}
