/*
 * auth.h: authentication, authorization and rate limits for the gateway.
 *
 * Credentials: `Authorization: Bearer <API key | JWT>` or `X-API-Key: <API key>`.
 *   - API key: "sbk_" + 43 base64url characters (32 random bytes).  Storage keeps only
 *     sha256(key) in an "api_key" record (id, key_hash, owner, role, name, created, revoked).
 *     A validated key is cached in memory for SB_AUTH_CACHE_TTL_MS keyed by its sha256, so
 *     the hot path does not ask storage on every request; revoking through this gateway drops
 *     the entry at once (other gateways notice within the TTL).  An unknown key is cached as
 *     invalid for a shorter time, so a flood of bad keys does not become a flood of lookups.
 *   - JWT access token: HS256 only, verified by libjwt with the configured secret, after our
 *     own check that the header's alg is exactly "HS256" (alg "none", HS384/HS512, RS256... are
 *     refused whatever libjwt would do); exp, nbf and iat are checked with a small leeway; sub
 *     and role claims are required.  Issued by POST /api/v1/auth/login and /auth/refresh.
 *   - auth.admin_key, if configured, is an admin credential compared in constant time.
 *
 * Principal: who a request acts as.  `id` is the owner identity resources belong to (a user
 * name for a JWT, the key record's owner for a key -- "key:<id>" unless given), so a user's
 * keys and tokens see the same sandboxes.
 *
 * Threading: everything here runs on the gateway actor's loop thread, except the pure helpers
 * at the end (any thread).  Password hashing (PBKDF2-HMAC-SHA256, 210000 iterations) runs on
 * the libuv threadpool, never on the loop.
 */
#ifndef SB_AUTH_H
#define SB_AUTH_H

#include "core/actor.h"
#include "core/config.h"
#include "gateway/http/http.h"

#include <stddef.h>
#include <stdint.h>

typedef enum { SB_ROLE_NONE = 0, SB_ROLE_VIEWER = 1, SB_ROLE_USER = 2, SB_ROLE_ADMIN = 3 } sb_role_t;
typedef enum { SB_PRINCIPAL_KEY = 1, SB_PRINCIPAL_JWT = 2 } sb_principal_kind_t;

typedef struct {
    char id[129];    /* owner identity: user name (JWT) or the key's owner ("key:<key id>") */
    char name[129];  /* the key's name, or the user name */
    char key_id[65]; /* API key id; "" for a JWT; "config" for auth.admin_key */
    sb_role_t role;
    sb_principal_kind_t kind;
} sb_principal_t;

#define SB_AUTH_CACHE_TTL_MS 30000
#define SB_AUTH_NEG_CACHE_TTL_MS 5000

typedef struct sb_auth sb_auth_t;

/* sb_auth_alloc prepares authentication for actor a (the gateway; cfg borrowed for its life):
 * loads the JWT secret -- auth.jwt_secret, else $JWT_SECRET, else data_dir/jwt.key, which is
 * created (64 random bytes, mode 0600) if absent -- and refuses one shorter than 64 bytes,
 * and an auth.admin_key shorter than 32.  Blocks briefly (file I/O): call from the actor's
 * init.  0 and *out, or SB_ECONFIG / SB_EIO (logged with the reason). */
int sb_auth_alloc(sb_actor_t *a, const sb_config_t *cfg, sb_auth_t **out);
/* sb_auth_start begins work that needs the bus: the first-start check (no API key and no user
 * in storage and no auth.admin_key -> create an admin key, store its hash, print it once on
 * stdout), retried until storage answers; and the periodic sweep of caches and buckets. */
void sb_auth_start(sb_auth_t *auth);
/* sb_auth_stop closes the sweep timer (once hashing in flight has finished); idempotent.  Call
 * from the actor's stop.  sb_auth_free (from fini, after the loop closed) frees the rest. */
void sb_auth_stop(sb_auth_t *auth);
void sb_auth_free(sb_auth_t *auth);

/* Callback of sb_auth_check: err 0 and p (borrowed for the call; copy the struct to keep it),
 * or p NULL and err SB_EAUTH (missing/bad/revoked credentials -> 401), SB_ELIMIT (rate limit;
 * Retry-After is already on req -> 429), SB_EUNAVAILABLE (storage did not answer -> 503). */
typedef void (*sb_auth_cb)(sb_http_req_t *req, const sb_principal_t *p, int err, void *ud);

/* sb_auth_check authenticates req and applies the global and per-principal rate limits.  cb
 * runs exactly once: before sb_auth_check returns when the answer is known (a cached key, a
 * JWT, a refusal), else later on this loop after a storage lookup.  req stays valid until the
 * caller responds (http.h), so cb may always respond.  Typical use:
 *
 *     static void on_authed(sb_http_req_t *req, const sb_principal_t *p, int err, void *ud) {
 *         if (err) { sb_auth_respond_error(req, err); return; }
 *         if (sb_auth_require_role(p, SB_ROLE_USER)) { sb_auth_respond_error(req, SB_EPERM); return; }
 *         ... handle the request as p->id ...
 *     }
 *     static void on_route(sb_http_req_t *req, void *ud) { sb_auth_check(auth, req, on_authed, ud); }
 */
void sb_auth_check(sb_auth_t *auth, sb_http_req_t *req, sb_auth_cb cb, void *ud);
/* sb_auth_check_query is sb_auth_check for clients that cannot set headers (a browser's
 * WebSocket): without an Authorization or X-API-Key header, the credential is read from the
 * query parameter `param` (e.g. "token").  Same callback contract.  Only for routes that need
 * it -- a token in a URL ends up in places headers do not (history, proxies' logs). */
void sb_auth_check_query(sb_auth_t *auth, sb_http_req_t *req, const char *param, sb_auth_cb cb,
                         void *ud);
/* sb_auth_require_role: 0 if p's role is at least min (viewer < user < admin), else SB_EPERM. */
int sb_auth_require_role(const sb_principal_t *p, sb_role_t min);
/* sb_auth_respond_error answers req for an auth error: SB_EAUTH -> 401 "unauthorized" with
 * WWW-Authenticate, SB_EPERM -> 403 "forbidden", SB_ELIMIT -> 429 "rate_limited" (with the
 * Retry-After sb_auth_check set, else 1), anything else -> 503 "unavailable". */
void sb_auth_respond_error(sb_http_req_t *req, int err);
/* sb_auth_routes registers POST /api/v1/auth/login, POST /api/v1/auth/refresh, and POST, GET
 * /api/v1/keys, DELETE /api/v1/keys/{id} (admin) on srv.  auth must outlive srv's requests. */
void sb_auth_routes(sb_auth_t *auth, sb_http_server_t *srv);
/* sb_auth_audit sends one audit event (type e.g. "sandbox.created", principal as in
 * auditor.def, fields a JSON object that is consumed; NULL for none).  Never blocks; a failure
 * is logged (SB-AUTH-AUDIT-FAIL), never returned. */
void sb_auth_audit(sb_auth_t *auth, const char *type, const char *principal, json_t *fields);
/* sb_principal_audit_name writes "key:<id>" or the user name: who did it, for audit events. */
void sb_principal_audit_name(const sb_principal_t *p, char *out, size_t cap);

/* ---- pure helpers (any thread; unit-tested) -------------------------------------------- */

#define SB_AUTH_KEY_PREFIX "sbk_"
#define SB_AUTH_KEY_LEN 47      /* "sbk_" + 43 base64url characters */
#define SB_AUTH_REFRESH_PREFIX "sbr_"
#define SB_AUTH_REFRESH_LEN 47  /* "sbr_" + 43 */
#define SB_JWT_MIN_SECRET 64
#define SB_JWT_LEEWAY_S 10
#define SB_PBKDF2_ITER 210000

const char *sb_role_name(sb_role_t r);
/* sb_role_parse: the role named by s[0..n), or SB_ROLE_NONE. */
sb_role_t sb_role_parse(const char *s, size_t n);
/* sb_auth_username_ok: 1..64 of [A-Za-z0-9._-], not starting with '.' or '-'. */
int sb_auth_username_ok(const char *s, size_t n);

/* sb_auth_token_make writes prefix + base64url(32 random bytes) + NUL into out[48]. */
int sb_auth_token_make(const char *prefix, char out[SB_AUTH_KEY_LEN + 1]);
/* sb_auth_token_ok: 1 if s[0..n) has the shape prefix + 43 base64url characters. */
int sb_auth_token_ok(const char *prefix, const char *s, size_t n);

/* sb_password_hash writes "pbkdf2-sha256$<iter>$<salt b64url>$<hash b64url>" (16-byte random
 * salt, 32-byte hash) into out; SB_ETOOBIG if cap < 128, SB_EIO if no randomness.  Takes
 * ~100 ms at 210000 iterations: never on a loop thread. */
int sb_password_hash(const char *pw, size_t n, uint32_t iter, char *out, size_t cap);
/* sb_password_verify: 0 if pw matches stored (constant-time compare), SB_EAUTH if not,
 * SB_EINVAL if stored is malformed (iterations outside 1000..10000000 included). */
int sb_password_verify(const char *pw, size_t n, const char *stored);

/* sb_jwt_issue makes an HS256 token {iss:"soulbox", sub, role, iat, nbf, exp = now+ttl, jti};
 * *out is malloc'd.  SB_EINVAL for a secret under 64 bytes. */
int sb_jwt_issue(const uint8_t *secret, size_t slen, const char *sub, sb_role_t role,
                 int64_t now_s, int64_t ttl_s, char **out);
/* sb_jwt_verify checks token (shape, header alg exactly HS256, signature by libjwt, exp, nbf,
 * iat with SB_JWT_LEEWAY_S, sub a user name, role known) and fills *out (kind JWT).  0 or
 * SB_EAUTH; *why (if not NULL) gets a static reason for logs, never for clients. */
int sb_jwt_verify(const uint8_t *secret, size_t slen, const char *token, size_t tlen,
                  int64_t now_s, sb_principal_t *out, const char **why);

/* sb_auth_secret_load resolves the JWT secret as sb_auth_alloc does; *out is malloc'd.
 * Exposed for tests and the CLI. */
int sb_auth_secret_load(const sb_config_t *cfg, uint8_t **out, size_t *len, char *err,
                        size_t errcap);

#endif
