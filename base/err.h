/*
 * err.h: SoulBox error codes.  Every function that can fail returns int: 0 on success, a
 * negative SB_E* on failure.  Our range starts at -10000 so a libuv error (a negated errno,
 * > -4100) can be returned unchanged and told apart.  One X-macro table yields the enum, the
 * names and the messages.
 */
#ifndef SB_ERR_H
#define SB_ERR_H

#define SB_ERRORS(X)                                                                               \
    X(SB_EINVAL, -10001, "invalid argument")                                                      \
    X(SB_ENOMEM, -10002, "out of memory")                                                         \
    X(SB_ETOOBIG, -10003, "too big")                                                               \
    X(SB_EBADMSG, -10004, "malformed message")                                                    \
    X(SB_EUNKNOWN_TYPE, -10005, "unknown message type")                                           \
    X(SB_ETIMEDOUT, -10006, "timed out")                                                          \
    X(SB_EAGAIN, -10007, "peer is full, try again")                                               \
    X(SB_ECLOSED, -10008, "closed or shutting down")                                              \
    X(SB_ENOTFOUND, -10009, "not found")                                                          \
    X(SB_EAUTH, -10010, "authentication failed")                                                  \
    X(SB_EIO, -10011, "I/O error")                                                                \
    X(SB_EUNAVAILABLE, -10012, "unavailable")                                                     \
    X(SB_ENOROUTE, -10013, "no route to actor")                                                   \
    X(SB_EEXIST, -10014, "already exists")                                                        \
    X(SB_EPERM, -10015, "permission denied")                                                      \
    X(SB_ECONFIG, -10016, "invalid configuration")                                                \
    X(SB_EUNSUPPORTED, -10017, "not supported")                                                   \
    X(SB_EINTERNAL, -10018, "internal error")                                                     \
    X(SB_ECANCELED, -10019, "canceled")                                                           \
    X(SB_ELIMIT, -10020, "limit reached")

enum {
#define SB__ERR_ENUM(name, val, msg) name = (val),
    SB_ERRORS(SB__ERR_ENUM)
#undef SB__ERR_ENUM
};

/* sb_strerror returns a static message for an SB_E*, a libuv error or a negated errno. */
const char *sb_strerror(int err);
/* sb_err_name returns "SB_ETIMEDOUT"-style names (libuv's name for libuv errors). */
const char *sb_err_name(int err);
/* sb_err_from_name maps a name back to its code; 0 if unknown. */
int sb_err_from_name(const char *name);

/* SB_ASSERT stays on in release builds: a broken invariant aborts with file and line. */
void sb_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));
#define SB_ASSERT(e) ((e) ? (void)0 : sb_assert_fail(#e, __FILE__, __LINE__))

#endif
