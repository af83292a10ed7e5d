/*
 * ws_kernel_fallback.c: stand-ins for the warm-kernel calls of api.h, linked only while the
 * gateway is built without handlers/kernels.c (gateway/CMakeLists.txt checks the source
 * list).  sb__gw_kernel_execute refuses with SB_EUNSUPPORTED, which /ws takes as "run the code
 * as a process instead"; the other two have nothing to act on.
 */
#include "gateway/api.h"

#include "core/err.h"

int
sb__gw_kernel_execute(gw_ctx_t *ctx, gw_sandbox_t *s, const char *code, size_t len,
                      const char *language, const char *context_id, gw_kernel_cb cb, void *ud,
                      uint64_t *handle)
{
    (void)ctx, (void)s, (void)code, (void)len, (void)language, (void)context_id, (void)cb;
    (void)ud, (void)handle;
    return SB_EUNSUPPORTED;
}

int
sb__gw_kernel_execute_timeout(gw_ctx_t *ctx, gw_sandbox_t *s, const char *code, size_t len,
                              const char *language, const char *context_id, uint64_t timeout_ms,
                              gw_kernel_cb cb, void *ud, uint64_t *handle)
{
    (void)timeout_ms;
    return sb__gw_kernel_execute(ctx, s, code, len, language, context_id, cb, ud, handle);
}

int
sb__gw_kernel_interrupt(gw_ctx_t *ctx, uint64_t handle)
{
    (void)ctx, (void)handle;
    return SB_ENOTFOUND;
}

void
sb__gw_kernel_cancel(gw_ctx_t *ctx, uint64_t handle)
{
    (void)ctx, (void)handle;
}
