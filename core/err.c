/* err.c: the error table's strings, and the always-on assertion. */
#include "err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

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
    if (err < 0 && err > -4100)
        return uv_strerror(err);
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
    if (err < 0 && err > -4100)
        return uv_err_name(err);
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
