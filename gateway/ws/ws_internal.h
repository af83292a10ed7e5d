/*
 * ws_internal.h: what the two halves of the WebSocket endpoint share.  ws.c is the transport
 * (the upgrade hand-over to libwebsockets, frames, limits, heartbeats, the bounded output
 * queue); ws_session.c is the protocol (JSON messages, sessions, executions, terminals).
 * Loop thread only.
 */
#ifndef SB_GW_WS_INTERNAL_H
#define SB_GW_WS_INTERNAL_H

#include "ws.h"

#include <jansson.h>

typedef struct ws_conn ws_conn_t;
typedef struct wss_sessions wss_sessions_t;

/* ---- transport -> protocol (ws_session.c) ------------------------------------------------ */

wss_sessions_t *sb__wss_alloc(gw_ctx_t *ctx);
/* The connection is open; session_id is the ?session_id= query parameter, or NULL. */
void sb__wss_on_open(wss_sessions_t *ss, ws_conn_t *c, const char *session_id);
/* One complete text message (not NUL-terminated). */
void sb__wss_on_message(wss_sessions_t *ss, ws_conn_t *c, const char *data, size_t len);
/* The connection is gone: after this, c must not be used. */
void sb__wss_on_closed(wss_sessions_t *ss, ws_conn_t *c);
/* sb__wss_stop forgets every session (kernel executions cancelled, requests dropped). */
void sb__wss_stop(wss_sessions_t *ss);
void sb__wss_free(wss_sessions_t *ss);
/* Attached to a session: extends its sandbox's idle life (heartbeat sweep). */
void sb__wss_touch(wss_sessions_t *ss, ws_conn_t *c);

/* ---- protocol -> transport (ws.c) ------------------------------------------------------- */

/* sb__ws_send queues one JSON text message (obj is consumed).  0, or SB_ECLOSED when the
 * connection is closing (dropped), or SB_ELIMIT when the queue passed ws.max_output_bytes:
 * the connection is then being closed with 1008 "slow reader". */
int sb__ws_send(ws_conn_t *c, json_t *obj);
/* sb__ws_close sends a close frame (code, reason) after what is queued, then closes. */
void sb__ws_close(ws_conn_t *c, int code, const char *reason);
const gw_principal_t *sb__ws_principal(const ws_conn_t *c);
void sb__ws_set_data(ws_conn_t *c, void *data);
void *sb__ws_get_data(const ws_conn_t *c);
/* sb__ws_session_id_ok: 1..64 of [A-Za-z0-9._-]. */
int sb__ws_session_id_ok(const char *s, size_t n);

#endif
