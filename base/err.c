/*
 * err.c: the error table's strings, and the always-on assertion.  Codes above our range are
 * negated errnos (libuv's codes are too, on Unix, but for a few of its own: UV_EOF and the
 * getaddrinfo family), so this file needs no library but libc.
 */
#include "err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* libuv's own codes (uv/errno.h): UV_EOF, and UV_EAI_ADDRFAMILY .. UV_EAI_SOCKTYPE. */
#define SB__UV_EOF (-4095)
#define SB__UV_EAI_FIRST (-3000)
#define SB__UV_EAI_LAST (-3014)

const char *
sb_strerror(int err)
{
    switch (err) {
#define SB__ERR_MSG(name, val, msg)                                                                \
    case name:                                                                                     \
        return msg;
        SB_ERRORS(SB__ERR_MSG)
#undef SB__ERR_MSG
    case 0:
        return "success";
    default:
        break;
    }
    if (err == SB__UV_EOF)
        return "end of file";
    if (err <= SB__UV_EAI_FIRST && err >= SB__UV_EAI_LAST)
        return "name resolution failed";
    if (err < 0 && err > -4100) {
        const char *s = strerrordesc_np(-err);
        return s ? s : "unknown system error";
    }
    return "unknown error";
}

const char *
sb_err_name(int err)
{
    switch (err) {
#define SB__ERR_NAME(name, val, msg)                                                               \
    case name:                                                                                     \
        return #name;
        SB_ERRORS(SB__ERR_NAME)
#undef SB__ERR_NAME
    case 0:
        return "OK";
    default:
        break;
    }
    if (err == SB__UV_EOF)
        return "EOF";
    if (err <= SB__UV_EAI_FIRST && err >= SB__UV_EAI_LAST)
        return "EAI";
    if (err < 0 && err > -4100) {
        const char *s = strerrorname_np(-err);
        return s ? s : "EUNKNOWN";
    }
    return "SB_EUNKNOWN";
}

int
sb_err_from_name(const char *name)
{
#define SB__ERR_FROM(n, val, msg)                                                                  \
    if (strcmp(name, #n) == 0)                                                                     \
        return n;
    SB_ERRORS(SB__ERR_FROM)
#undef SB__ERR_FROM
    return 0;
}

void
sb_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "SB_ASSERT failed: %s at %s:%d\n", expr, file, line);
    abort();
}
