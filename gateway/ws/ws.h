/*
 * ws.h: the WebSocket endpoint `/ws` of the gateway (interactive REPL sessions and terminals;
 * protocol in docs/api.md "WebSocket /ws").  One instance per gateway, on the gateway actor's
 * loop; every function here runs on that loop's thread.
 */
#ifndef SB_GW_WS_H
#define SB_GW_WS_H

#include "gateway/api.h"
#include "gateway/http/http.h"

typedef struct sb_ws sb_ws_t;

/* sb__gw_ws_alloc registers GET /ws on srv and starts libwebsockets on the actor's loop
 * (ctx->actor) for the connections it upgrades.  NULL (logged) if lws cannot start: the
 * route then answers 503.  ctx and srv outlive it until sb__gw_ws_stop. */
sb_ws_t *sb__gw_ws_alloc(gw_ctx_t *ctx, sb_http_server_t *srv);
/* sb__gw_ws_stop closes every connection (1001 "server shutting down"), forgets every
 * session (their sandboxes are left to sb__gw_sandboxes_stop, which records the shutdown),
 * and destroys the lws context; its handles finish closing as the loop runs.  Idempotent.
 * Call from the actor's stop, before sb__gw_sandboxes_stop. */
void sb__gw_ws_stop(sb_ws_t *ws);
/* sb__gw_ws_free frees what is left; from the actor's fini (after the loop closed). */
void sb__gw_ws_free(sb_ws_t *ws);

#endif
