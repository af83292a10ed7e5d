/*
 * auth.c: authentication, authorization, login, refresh tokens, API keys and the rate limits
 * in front of them (auth.h).
 *
 * Invariants:
 *   - No secret is ever stored, logged or audited: API keys and refresh tokens exist in clear
 *     only in the response that hands them out; storage and the cache hold sha256 hashes;
 *     audit events carry key ids and 12-hex-digit hash prefixes; passwords are wiped from
 *     memory once hashed.
 *   - A JWT is accepted only with header alg exactly "HS256", checked by us before libjwt
 *     sees the token and again on what libjwt decoded (libjwt 1.10 skips the signature check
 *     for alg "none", and would verify HS512 with our key).
 *   - Password hashing never runs on the loop: it goes to the libuv threadpool, at most
 *     AUTH_HASH_INFLIGHT at once (the pool is shared with storage's SQLite commits, which must
 *     not starve), the rest queued up to AUTH_HASH_QUEUE, beyond that refused with 429.
 *   - Every map is bounded: the key cache (AUTH_CACHE_MAX entries, oldest evicted), the rate
 *     limit tables (ratelimit.h).
 *
 * Key cache entry states: PENDING (lookup in flight, waiters queued) -> VALID | INVALID (with
 * an expiry); a revoke through this gateway removes the entry, or marks a PENDING one so its
 * answer is not cached.  Login: PARSED -> USER_FETCHED -> HASHING -> answered.  Refresh:
 * GET session -> PUT spent marker (create_only: the atomic single-use step) -> GET user ->
 * PUT new session -> answered.
 */
#include "auth.h"
#include "ratelimit.h"

#include "base/buf.h"
#include "base/str.h"
#include "base/clock.h"
#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"
#include "protocols/msgs.h"
#include "base/base64.h"
#include "base/id.h"
#include "base/sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <jwt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define AUTH_TOKEN_MAX 4096       /* longest credential we look at */
#define AUTH_CACHE_MAX 16384      /* cached key hashes */
#define AUTH_HASH_INFLIGHT 2      /* concurrent password hashes on the threadpool */
#define AUTH_HASH_QUEUE 256       /* waiting for a hashing slot, beyond: 429 */
#define AUTH_STORE_TIMEOUT_MS 5000
#define AUTH_LOGIN_TABLE_MAX 65536 /* login limit buckets (users, IPs) */
#define AUTH_KEY_TABLE_MAX 65536   /* per-principal buckets */
#define AUTH_SWEEP_MS 1000
#define AUTH_BODY_MAX 16384
#define AUTH_PASSWORD_MAX 1024

/* ---- pure helpers ---------------------------------------------------------------------- */

const char *
sb_role_name(sb_role_t r)
{
    switch (r) {
    case SB_ROLE_ADMIN:
        return "admin";
    case SB_ROLE_USER:
        return "user";
    case SB_ROLE_VIEWER:
        return "viewer";
    default:
        return "none";
    }
}

sb_role_t
sb_role_parse(const char *s, size_t n)
{
    if (n == 5 && memcmp(s, "admin", 5) == 0)
        return SB_ROLE_ADMIN;
    if (n == 4 && memcmp(s, "user", 4) == 0)
        return SB_ROLE_USER;
    if (n == 6 && memcmp(s, "viewer", 6) == 0)
        return SB_ROLE_VIEWER;
    return SB_ROLE_NONE;
}

int
sb_auth_username_ok(const char *s, size_t n)
{
    if (n == 0 || n > 64 || s[0] == '.' || s[0] == '-')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

int
sb_auth_token_make(const char *prefix, char out[SB_AUTH_KEY_LEN + 1])
{
    uint8_t raw[32];
    size_t pl = strlen(prefix);
    SB_ASSERT(pl == 4);
    if (sb_random_bytes(raw, sizeof raw))
        return SB_EIO;
    memcpy(out, prefix, pl);
    sb_base64url_encode(raw, sizeof raw, out + pl);
    OPENSSL_cleanse(raw, sizeof raw);
    return 0;
}

int
sb_auth_token_ok(const char *prefix, const char *s, size_t n)
{
    uint8_t raw[40];
    if (n != SB_AUTH_KEY_LEN || memcmp(s, prefix, 4) != 0)
        return 0;
    return sb_base64url_decode(s + 4, n - 4, raw, sizeof raw) == 32;
}

/* ---- passwords ------------------------------------------------------------------------- */

int
sb_password_hash(const char *pw, size_t n, uint32_t iter, char *out, size_t cap)
{
    uint8_t salt[16], dk[32];
    char s64[32], d64[48];
    if (cap < 128)
        return SB_ETOOBIG;
    if (sb_random_bytes(salt, sizeof salt))
        return SB_EIO;
    if (PKCS5_PBKDF2_HMAC(pw, (int)n, salt, sizeof salt, (int)iter, EVP_sha256(), sizeof dk,
                          dk) != 1)
        return SB_EIO;
    sb_base64url_encode(salt, sizeof salt, s64);
    sb_base64url_encode(dk, sizeof dk, d64);
    OPENSSL_cleanse(dk, sizeof dk);
    snprintf(out, cap, "pbkdf2-sha256$%u$%s$%s", iter, s64, d64);
    return 0;
}

int
sb_password_verify(const char *pw, size_t n, const char *stored)
{
    const char *p = stored, *salt, *hash;
    uint8_t sbin[64], want[64], got[64];
    char *end;
    int sl, hl;

    if (strncmp(p, "pbkdf2-sha256$", 14) != 0)
        return SB_EINVAL;
    p += 14;
    errno = 0;
    unsigned long iter = strtoul(p, &end, 10);
    if (errno || end == p || *end != '$' || iter < 1000 || iter > 10000000)
        return SB_EINVAL;
    salt = end + 1;
    hash = strchr(salt, '$');
    if (!hash)
        return SB_EINVAL;
    sl = sb_base64url_decode(salt, (size_t)(hash - salt), sbin, sizeof sbin);
    hash++;
    hl = sb_base64url_decode(hash, strlen(hash), want, sizeof want);
    if (sl < 8 || hl < 16)
        return SB_EINVAL;
    if (PKCS5_PBKDF2_HMAC(pw, (int)n, sbin, sl, (int)iter, EVP_sha256(), hl, got) != 1)
        return SB_EIO;
    int eq = CRYPTO_memcmp(got, want, (size_t)hl) == 0;
    OPENSSL_cleanse(got, sizeof got);
    return eq ? 0 : SB_EAUTH;
}

/* ---- JWT ------------------------------------------------------------------------------- */

int
sb_jwt_issue(const uint8_t *secret, size_t slen, const char *sub, sb_role_t role, int64_t now_s,
             int64_t ttl_s, char **out)
{
    jwt_t *jwt = NULL;
    uint8_t jr[12];
    char jti[20];
    int rc = SB_EINTERNAL;

    if (slen < SB_JWT_MIN_SECRET || !sb_auth_username_ok(sub, strlen(sub)) ||
        role == SB_ROLE_NONE)
        return SB_EINVAL;
    if (sb_random_bytes(jr, sizeof jr))
        return SB_EIO;
    sb_base64url_encode(jr, sizeof jr, jti);
    if (jwt_new(&jwt) != 0)
        return SB_ENOMEM;
    if (jwt_add_grant(jwt, "iss", "soulbox") || jwt_add_grant(jwt, "sub", sub) ||
        jwt_add_grant(jwt, "role", sb_role_name(role)) || jwt_add_grant(jwt, "jti", jti) ||
        jwt_add_grant_int(jwt, "iat", (long)now_s) || jwt_add_grant_int(jwt, "nbf", (long)now_s) ||
        jwt_add_grant_int(jwt, "exp", (long)(now_s + ttl_s)) ||
        jwt_set_alg(jwt, JWT_ALG_HS256, secret, (int)slen))
        goto out;
    char *s = jwt_encode_str(jwt);
    if (!s)
        goto out;
    *out = s;
    rc = 0;
out:
    jwt_free(jwt);
    return rc;
}

/* jwt_header_ok decodes the first segment ourselves and insists on {"alg":"HS256"} (typ, if
 * present, "JWT"; no "crit" we would have to understand).  This is the check that does not
 * depend on what libjwt does with odd headers. */
static int
jwt_header_ok(const char *seg, size_t n, const char **why)
{
    uint8_t buf[1024];
    json_error_t je;
    int l = sb_base64url_decode(seg, n, buf, sizeof buf);
    if (l <= 0) {
        *why = "header is not base64url";
        return 0;
    }
    json_t *h = json_loadb((const char *)buf, (size_t)l, JSON_REJECT_DUPLICATES, &je);
    if (!h || !json_is_object(h)) {
        json_decref(h);
        *why = "header is not a JSON object";
        return 0;
    }
    json_t *alg = json_object_get(h, "alg"), *typ = json_object_get(h, "typ");
    int ok = json_is_string(alg) && strcmp(json_string_value(alg), "HS256") == 0 &&
             json_string_length(alg) == 5;
    if (!ok)
        *why = "header alg is not HS256";
    else if (typ && !(json_is_string(typ) && strcasecmp(json_string_value(typ), "JWT") == 0)) {
        ok = 0;
        *why = "header typ is not JWT";
    } else if (json_object_get(h, "crit")) {
        ok = 0;
        *why = "header has crit";
    }
    json_decref(h);
    return ok;
}

int
sb_jwt_verify(const uint8_t *secret, size_t slen, const char *token, size_t tlen, int64_t now_s,
              sb_principal_t *out, const char **why)
{
    const char *dummy, *d1, *d2;
    jwt_t *jwt = NULL;
    json_t *claims = NULL;
    char *tok = NULL, *cj = NULL;
    int rc = SB_EAUTH;

    if (!why)
        why = &dummy;
    *why = "malformed";
    if (slen < SB_JWT_MIN_SECRET || tlen == 0 || tlen > AUTH_TOKEN_MAX)
        return SB_EAUTH;
    for (size_t i = 0; i < tlen; i++)
        if (token[i] != '.' && !sb_base64url_char(token[i]))
            return SB_EAUTH;
    d1 = memchr(token, '.', tlen);
    d2 = d1 ? memchr(d1 + 1, '.', tlen - (size_t)(d1 + 1 - token)) : NULL;
    /* Exactly three segments, and a signature. */
    if (!d1 || !d2 || memchr(d2 + 1, '.', tlen - (size_t)(d2 + 1 - token)) ||
        d2 + 1 == token + tlen)
        return SB_EAUTH;
    if (!jwt_header_ok(token, (size_t)(d1 - token), why))
        return SB_EAUTH;
    /* libjwt 1.10 writes past a zero-byte buffer when a segment decodes to nothing (found by
     * valgrind on "header..sig"), so it only ever sees tokens whose payload decodes, by our
     * decoder, to a JSON object and whose signature is exactly an HMAC-SHA256 (43 chars). */
    {
        size_t plen = (size_t)(d2 - d1 - 1);
        uint8_t *pb = sb_xmalloc(plen + 1);
        int pl = sb_base64url_decode(d1 + 1, plen, pb, plen + 1);
        json_t *pj = pl > 1 ? json_loadb((const char *)pb, (size_t)pl, 0, NULL) : NULL;
        int ok = json_is_object(pj);
        json_decref(pj);
        free(pb);
        if (!ok) {
            *why = "payload is not a base64url JSON object";
            return SB_EAUTH;
        }
        if (tlen - (size_t)(d2 + 1 - token) != 43) {
            *why = "signature is not an HMAC-SHA256";
            return SB_EAUTH;
        }
    }

    tok = sb_xmalloc(tlen + 1);
    memcpy(tok, token, tlen);
    tok[tlen] = 0;
    if (jwt_decode(&jwt, tok, secret, (int)slen) != 0 || !jwt) {
        *why = "bad signature or undecodable";
        goto out;
    }
    if (jwt_get_alg(jwt) != JWT_ALG_HS256) {
        *why = "decoded alg is not HS256";
        goto out;
    }
    cj = jwt_get_grants_json(jwt, NULL);
    claims = cj ? json_loads(cj, JSON_REJECT_DUPLICATES, NULL) : NULL;
    if (!json_is_object(claims)) {
        *why = "claims are not an object";
        goto out;
    }
    json_t *exp = json_object_get(claims, "exp"), *nbf = json_object_get(claims, "nbf"),
           *iat = json_object_get(claims, "iat"), *sub = json_object_get(claims, "sub"),
           *role = json_object_get(claims, "role");
    if (!json_is_integer(exp)) {
        *why = "no exp";
        goto out;
    }
    if (now_s > json_integer_value(exp) + SB_JWT_LEEWAY_S) {
        *why = "expired";
        goto out;
    }
    if (nbf && (!json_is_integer(nbf) || json_integer_value(nbf) > now_s + SB_JWT_LEEWAY_S)) {
        *why = "not yet valid (nbf)";
        goto out;
    }
    if (iat && (!json_is_integer(iat) || json_integer_value(iat) > now_s + SB_JWT_LEEWAY_S)) {
        *why = "issued in the future (iat)";
        goto out;
    }
    if (!json_is_string(sub) ||
        !sb_auth_username_ok(json_string_value(sub), json_string_length(sub))) {
        *why = "bad sub";
        goto out;
    }
    sb_role_t r = json_is_string(role)
                      ? sb_role_parse(json_string_value(role), json_string_length(role))
                      : SB_ROLE_NONE;
    if (r == SB_ROLE_NONE) {
        *why = "bad role";
        goto out;
    }
    memset(out, 0, sizeof *out);
    snprintf(out->id, sizeof out->id, "%s", json_string_value(sub));
    snprintf(out->name, sizeof out->name, "%s", json_string_value(sub));
    out->role = r;
    out->kind = SB_PRINCIPAL_JWT;
    *why = "ok";
    rc = 0;
out:
    json_decref(claims);
    free(cj);
    if (jwt)
        jwt_free(jwt);
    free(tok);
    return rc;
}

/* ---- the JWT secret -------------------------------------------------------------------- */

static int
auth_mkdirs(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

int
sb_auth_secret_load(const sb_config_t *cfg, uint8_t **out, size_t *len, char *err, size_t errcap)
{
    const char *s = cfg->auth_jwt_secret;
    const char *src = "auth.jwt_secret";
    char path[4096];
    uint8_t buf[4097];

    if (!s[0] && getenv("JWT_SECRET") && getenv("JWT_SECRET")[0]) {
        s = getenv("JWT_SECRET");
        src = "JWT_SECRET";
    }
    if (s[0]) {
        size_t n = strlen(s);
        if (n < SB_JWT_MIN_SECRET) {
            snprintf(err, errcap, "%s is %zu bytes; a JWT secret must be at least %d bytes", src,
                     n, SB_JWT_MIN_SECRET);
            return SB_ECONFIG;
        }
        *out = sb_xmalloc(n);
        memcpy(*out, s, n);
        *len = n;
        return 0;
    }
    /* No secret configured: the data directory keeps one, made once, so tokens survive a
     * restart.  O_EXCL makes two processes starting at once agree on one file. */
    snprintf(path, sizeof path, "%s/jwt.key", cfg->data_dir);
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd >= 0) {
            struct stat st;
            ssize_t n = 0;
            if (fstat(fd, &st) == 0 && (st.st_mode & 077))
                sb_log_warn("SB-AUTH-KEYFILE-MODE", "%s is readable by others (mode %o); it "
                            "should be 0600", path, (unsigned)(st.st_mode & 0777));
            for (;;) {
                ssize_t r = read(fd, buf + n, sizeof buf - 1 - (size_t)n);
                if (r < 0 && errno == EINTR)
                    continue;
                if (r <= 0)
                    break;
                n += r;
                if ((size_t)n >= sizeof buf - 1)
                    break;
            }
            close(fd);
            if (n < SB_JWT_MIN_SECRET) {
                snprintf(err, errcap, "%s holds %zd bytes; a JWT secret must be at least %d",
                         path, n, SB_JWT_MIN_SECRET);
                return SB_ECONFIG;
            }
            *out = sb_xmalloc((size_t)n);
            memcpy(*out, buf, (size_t)n);
            *len = (size_t)n;
            OPENSSL_cleanse(buf, sizeof buf);
            return 0;
        }
        if (errno != ENOENT) {
            snprintf(err, errcap, "cannot read %s: %s", path, strerror(errno));
            return SB_EIO;
        }
        if (auth_mkdirs(cfg->data_dir) != 0) {
            snprintf(err, errcap, "cannot create %s: %s", cfg->data_dir, strerror(errno));
            return SB_EIO;
        }
        uint8_t raw[48];
        char text[65];
        if (sb_random_bytes(raw, sizeof raw))
            return SB_EIO;
        sb_base64url_encode(raw, sizeof raw, text); /* 64 printable bytes */
        OPENSSL_cleanse(raw, sizeof raw);
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid());
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
            snprintf(err, errcap, "cannot create %s: %s", tmp, strerror(errno));
            return SB_EIO;
        }
        int ok = write(fd, text, 64) == 64 && fsync(fd) == 0;
        close(fd);
        OPENSSL_cleanse(text, sizeof text);
        /* link() fails if another process made the file first: then we read theirs. */
        if (ok && link(tmp, path) != 0 && errno != EEXIST)
            ok = 0;
        unlink(tmp);
        if (!ok) {
            snprintf(err, errcap, "cannot write %s: %s", path, strerror(errno));
            return SB_EIO;
        }
        sb_log_info("SB-AUTH-JWT-KEY-CREATED", "created a JWT signing secret in %s (mode 0600)",
                    path);
    }
    snprintf(err, errcap, "cannot read %s", path);
    return SB_EIO;
}

/* ---- the gateway side ------------------------------------------------------------------ */

enum { CE_PENDING, CE_VALID, CE_INVALID };

typedef struct auth_waiter {
    struct auth_waiter *next;
    sb_http_req_t *req;
    sb_auth_cb cb;
    void *ud;
} auth_waiter_t;

typedef struct cache_ent {
    struct cache_ent *hnext;       /* hash chain */
    struct cache_ent *prev, *next; /* insertion order (oldest at head): eviction */
    uint8_t hash[32];
    int state;
    int stale; /* revoked while its lookup was in flight: do not cache the answer */
    uint64_t expires_us;
    sb_principal_t p;
    auth_waiter_t *waiters, **wtail;
} cache_ent_t;

#define CACHE_SLOTS 4096

typedef struct login_job login_job_t;

struct sb_auth {
    sb_actor_t *actor;
    const sb_config_t *cfg;
    uint8_t *secret;
    size_t secret_len;
    uint8_t admin_hash[32]; /* sha256(auth.admin_key) */
    int have_admin_key;
    /* key cache */
    cache_ent_t *slots[CACHE_SLOTS];
    cache_ent_t *oldest, *newest;
    size_t ncache;
    /* rate limits */
    sb_bucket_t global;
    sb_ratelimit_t *per_key;
    sb_ratelimit_t *login_user, *login_ip;
    sb_ratelimit_t *audit_rl; /* at most one rate-limit audit event per second per key */
    uint64_t audit_suppressed;
    /* password hashing */
    login_job_t *hq_head, *hq_tail;
    size_t hq_len, hashing;
    /* lifecycle */
    uv_timer_t sweep;
    int timer_open;
    int bootstrap; /* 0 to do, 1 in flight, 2 done */
    uint64_t ticks;
    int warned_no_storage;
};

static uint64_t
auth_now_us(void)
{
    return sb_now_mono_us();
}

static int64_t
auth_now_s(void)
{
    return (int64_t)(sb_now_real_ms() / 1000);
}

void
sb_principal_audit_name(const sb_principal_t *p, char *out, size_t cap)
{
    if (p->kind == SB_PRINCIPAL_KEY)
        snprintf(out, cap, "key:%s", p->key_id);
    else
        snprintf(out, cap, "%s", p->id);
}

/* ---- audit ----------------------------------------------------------------------------- */

static void
auth_on_audit_ack(sb_actor_t *a, int status, const sb_msg_t *reply, void *ud)
{
    (void)a;
    (void)reply;
    (void)ud;
    if (status != 0)
        sb_log_warn("SB-AUTH-AUDIT-FAIL", "the auditor did not take an auth event: %s",
                    sb_strerror(status));
}

void
sb_auth_audit(sb_auth_t *auth, const char *type, const char *principal, json_t *fields)
{
    char *fj = fields ? json_dumps(fields, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    sb_audit_event_t ev = {.type = sb_str(type), .actor = SB_STR("gateway"),
                           .principal = sb_str(principal ? principal : ""),
                           .fields = sb_str(fj ? fj : "{}"), .ts_ms = sb_now_real_ms()};
    sb_buf_t *b = sb_actor_scratch(auth->actor);
    int r = sb_audit_event_encode(&ev, b);
    if (r == 0)
        r = sb_actor_request(auth->actor, sb_addr(SB_ACTOR_AUDITOR), SB_MSG_AUDIT_EVENT, b->data,
                             b->len, AUTH_STORE_TIMEOUT_MS, auth_on_audit_ack, NULL, NULL);
    if (r != 0)
        sb_log_warn("SB-AUTH-AUDIT-FAIL", "cannot send audit event %s: %s", type,
                    sb_strerror(r));
    free(fj);
    json_decref(fields);
}

/* auth_audit_limited: a rate-limit hit.  Audited at most once a second per limited key, so a
 * flood of refused requests cannot become a flood of fsync'd audit writes; the hits left out
 * are counted and reported with the next event ("suppressed"). */
static void
auth_audit_limited(sb_auth_t *auth, const char *scope, const char *key, const char *principal,
                   uint32_t retry_s)
{
    char k[300];
    snprintf(k, sizeof k, "%s|%s", scope, key);
    if (sb_ratelimit_take(auth->audit_rl, k, 1, auth_now_us(), NULL) != 0) {
        auth->audit_suppressed++;
        return;
    }
    json_t *f = json_pack("{s:s, s:i}", "scope", scope, "retry_after_s", (json_int_t)retry_s);
    if (auth->audit_suppressed)
        json_object_set_new(f, "suppressed", json_integer((json_int_t)auth->audit_suppressed));
    auth->audit_suppressed = 0;
    sb_auth_audit(auth, "ratelimit.hit", principal, f);
}

/* ---- storage requests ------------------------------------------------------------------ */

/* What a storage reply carries, as text: the record (GET), the JSON array (LIST), or nothing
 * (PUT/DEL ack; changed is set). */
typedef void (*auth_store_cb)(sb_auth_t *auth, int status, const char *text, size_t len,
                              uint64_t changed, void *ud);

typedef struct {
    sb_auth_t *auth;
    auth_store_cb cb;
    void *ud;
} store_ctx_t;

static void
auth_on_store_reply(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    store_ctx_t *c = ud;
    (void)a;
    const char *text = NULL;
    size_t len = 0;
    uint64_t changed = 0;
    if (status == 0) {
        if (m->type == SB_MSG_STORE_RECORD) {
            sb_store_record_t r;
            if (sb_store_record_decode(m, &r) == 0) {
                text = r.record.ptr;
                len = r.record.len;
            } else {
                status = SB_EBADMSG;
            }
        } else if (m->type == SB_MSG_STORE_RECORDS) {
            sb_store_records_t r;
            if (sb_store_records_decode(m, &r) == 0) {
                text = r.records.ptr;
                len = r.records.len;
            } else {
                status = SB_EBADMSG;
            }
        } else if (m->type == SB_MSG_STORE_ACK) {
            sb_store_ack_t r;
            if (sb_store_ack_decode(m, &r) == 0)
                changed = r.changed;
            else
                status = SB_EBADMSG;
        } else {
            status = SB_EBADMSG;
        }
    }
    c->cb(c->auth, status, text, len, changed, c->ud);
    free(c);
}

/* auth_store sends one STORE_* request; cb runs exactly once, before this returns if the
 * request could not be sent. */
static void
auth_store(sb_auth_t *auth, uint16_t type, const sb_msgdef_t *def, const void *req,
           auth_store_cb cb, void *ud)
{
    sb_buf_t *b = sb_actor_scratch(auth->actor);
    store_ctx_t *c = sb_xcalloc(1, sizeof *c);
    int r;
    c->auth = auth;
    c->cb = cb;
    c->ud = ud;
    r = sb_codec_encode(def, req, b);
    if (r == 0)
        r = sb_actor_request(auth->actor, sb_addr(SB_ACTOR_STORAGE), type, b->data, b->len,
                             AUTH_STORE_TIMEOUT_MS, auth_on_store_reply, c, NULL);
    if (r != 0) {
        free(c);
        cb(auth, r, NULL, 0, 0, ud);
    }
}

static void
auth_store_get(sb_auth_t *auth, const char *kind, const char *key, const char *by,
               auth_store_cb cb, void *ud)
{
    sb_store_get_t g = {.kind = sb_str(kind), .key = sb_str(key), .by = sb_str(by)};
    auth_store(auth, SB_MSG_STORE_GET, &sb_store_get_def, &g, cb, ud);
}

/* auth_store_put consumes rec. */
static void
auth_store_put(sb_auth_t *auth, const char *kind, json_t *rec, int create_only, auth_store_cb cb,
               void *ud)
{
    char *text = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(rec);
    sb_store_put_t p = {.kind = sb_str(kind), .record = sb_str(text), .create_only = create_only};
    auth_store(auth, SB_MSG_STORE_PUT, &sb_store_put_def, &p, cb, ud);
    free(text);
}

static void
auth_store_list(sb_auth_t *auth, const char *kind, const char *owner, uint64_t limit,
                auth_store_cb cb, void *ud)
{
    sb_store_list_t l = {.kind = sb_str(kind), .owner = sb_str(owner), .limit = limit};
    auth_store(auth, SB_MSG_STORE_LIST, &sb_store_list_def, &l, cb, ud);
}

/* auth_store_status maps a storage failure to what a client is told. */
static int
auth_store_unavailable(int status)
{
    return status == SB_ENOTFOUND ? SB_EAUTH : SB_EUNAVAILABLE;
}

/* ---- the key cache --------------------------------------------------------------------- */

static size_t
cache_slot(const uint8_t h[32])
{
    size_t v;
    memcpy(&v, h, sizeof v);
    return v & (CACHE_SLOTS - 1);
}

static cache_ent_t *
cache_find(sb_auth_t *auth, const uint8_t h[32])
{
    for (cache_ent_t *e = auth->slots[cache_slot(h)]; e; e = e->hnext)
        if (memcmp(e->hash, h, 32) == 0)
            return e;
    return NULL;
}

static void
cache_remove(sb_auth_t *auth, cache_ent_t *e)
{
    cache_ent_t **pp = &auth->slots[cache_slot(e->hash)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    if (e->prev)
        e->prev->next = e->next;
    else
        auth->oldest = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        auth->newest = e->prev;
    auth->ncache--;
    SB_ASSERT(e->waiters == NULL);
    free(e);
}

static cache_ent_t *
cache_add(sb_auth_t *auth, const uint8_t h[32])
{
    if (auth->ncache >= AUTH_CACHE_MAX) {
        /* Evict the oldest answered entry; pending ones have requests waiting on them. */
        for (cache_ent_t *e = auth->oldest; e; e = e->next)
            if (e->state != CE_PENDING) {
                cache_remove(auth, e);
                break;
            }
    }
    cache_ent_t *e = sb_xcalloc(1, sizeof *e);
    memcpy(e->hash, h, 32);
    e->state = CE_PENDING;
    e->wtail = &e->waiters;
    size_t s = cache_slot(h);
    e->hnext = auth->slots[s];
    auth->slots[s] = e;
    e->prev = auth->newest;
    if (auth->newest)
        auth->newest->next = e;
    else
        auth->oldest = e;
    auth->newest = e;
    auth->ncache++;
    return e;
}

/* auth_invalidate_hash drops what this gateway knows about a key (revoked). */
static void
auth_invalidate_hash(sb_auth_t *auth, const char *hex)
{
    uint8_t h[32];
    for (int i = 0; i < 32; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return;
        h[i] = (uint8_t)v;
    }
    cache_ent_t *e = cache_find(auth, h);
    if (!e)
        return;
    if (e->state == CE_PENDING)
        e->stale = 1;
    else
        cache_remove(auth, e);
}

static void
cache_sweep(sb_auth_t *auth, uint64_t now)
{
    cache_ent_t *e = auth->oldest;
    while (e) {
        cache_ent_t *n = e->next;
        if (e->state != CE_PENDING && e->expires_us <= now)
            cache_remove(auth, e);
        e = n;
    }
}

/* ---- checking a request ---------------------------------------------------------------- */

static void
auth_retry_after(sb_http_req_t *req, uint32_t s)
{
    char v[16];
    snprintf(v, sizeof v, "%u", s ? s : 1);
    sb_http_add_header(req, "Retry-After", v);
}

/* auth_global_take takes one token of the gateway-wide bucket; on a refusal it sets
 * Retry-After, audits, and returns SB_ELIMIT. */
static int
auth_global_take(sb_auth_t *auth, sb_http_req_t *req)
{
    uint32_t retry = 0;
    if (sb_bucket_take(&auth->global, 1, auth_now_us(), &retry) == 0)
        return 0;
    auth_audit_limited(auth, "global", "", "", retry);
    auth_retry_after(req, retry);
    return SB_ELIMIT;
}

/* auth_finish applies the per-principal limit and answers. */
static void
auth_finish(sb_auth_t *auth, sb_http_req_t *req, const sb_principal_t *p, sb_auth_cb cb,
            void *ud)
{
    char k[200], who[200];
    uint32_t retry = 0;
    if (p->kind == SB_PRINCIPAL_KEY)
        snprintf(k, sizeof k, "k:%s", p->key_id);
    else
        snprintf(k, sizeof k, "u:%s", p->id);
    if (sb_ratelimit_take(auth->per_key, k, 1, auth_now_us(), &retry) != 0) {
        sb_principal_audit_name(p, who, sizeof who);
        auth_audit_limited(auth, "key", k, who, retry);
        auth_retry_after(req, retry);
        cb(req, NULL, SB_ELIMIT, ud);
        return;
    }
    cb(req, p, 0, ud);
}

static void
auth_on_key_record(sb_auth_t *auth, int status, const char *text, size_t len, uint64_t changed,
                   void *ud)
{
    cache_ent_t *e = ud;
    uint64_t now = auth_now_us();
    int err = 0;
    (void)changed;

    if (status == 0) {
        json_t *r = json_loadb(text, len, 0, NULL);
        const char *id = NULL, *owner = NULL, *role = NULL, *name = NULL;
        json_int_t revoked = 0, expires = 0;
        if (!r || json_unpack(r, "{s:s, s:s, s:s, s?s, s?I, s?I}", "id", &id, "owner", &owner,
                              "role", &role, "name", &name, "revoked", &revoked, "expires",
                              &expires) != 0) {
            sb_log_warn("SB-AUTH-BAD-RECORD", "an api_key record does not parse; refusing it");
            err = SB_EAUTH;
        } else if (revoked > 0 ||
                   (expires > 0 && (uint64_t)expires <= sb_now_real_ms()) ||
                   sb_role_parse(role, strlen(role)) == SB_ROLE_NONE) {
            err = SB_EAUTH;
        } else {
            memset(&e->p, 0, sizeof e->p);
            snprintf(e->p.id, sizeof e->p.id, "%s", owner);
            snprintf(e->p.name, sizeof e->p.name, "%s", name ? name : "");
            snprintf(e->p.key_id, sizeof e->p.key_id, "%s", id);
            e->p.role = sb_role_parse(role, strlen(role));
            e->p.kind = SB_PRINCIPAL_KEY;
        }
        json_decref(r);
    } else {
        err = auth_store_unavailable(status);
        if (err != SB_EAUTH)
            sb_log_warn("SB-AUTH-LOOKUP-FAIL", "API key lookup failed: %s", sb_strerror(status));
    }

    auth_waiter_t *w = e->waiters;
    e->waiters = NULL;
    e->wtail = &e->waiters;
    sb_principal_t p = e->p;
    if (e->stale || err == SB_EUNAVAILABLE) {
        cache_remove(auth, e); /* nothing worth remembering */
    } else {
        e->state = err ? CE_INVALID : CE_VALID;
        e->expires_us = now + 1000ull * (err ? SB_AUTH_NEG_CACHE_TTL_MS : SB_AUTH_CACHE_TTL_MS);
    }
    while (w) {
        auth_waiter_t *n = w->next;
        if (err)
            w->cb(w->req, NULL, err, w->ud);
        else
            auth_finish(auth, w->req, &p, w->cb, w->ud);
        free(w);
        w = n;
    }
}

/* auth_credential finds the presented credential: Authorization: Bearer X, else X-API-Key. */
static sb_str_t
auth_credential(sb_http_req_t *req)
{
    sb_str_t h = sb_http_header(req, "Authorization");
    if (h.len) {
        if (h.len < 7 || strncasecmp(h.ptr, "Bearer ", 7) != 0)
            return (sb_str_t){0};
        sb_str_t t = {h.ptr + 7, h.len - 7};
        while (t.len && (t.ptr[0] == ' ' || t.ptr[0] == '\t'))
            t.ptr++, t.len--;
        while (t.len && (t.ptr[t.len - 1] == ' ' || t.ptr[t.len - 1] == '\t'))
            t.len--;
        return t;
    }
    return sb_http_header(req, "X-API-Key");
}

static void auth_check_token(sb_auth_t *auth, sb_http_req_t *req, sb_str_t t, sb_auth_cb cb,
                             void *ud);

void
sb_auth_check(sb_auth_t *auth, sb_http_req_t *req, sb_auth_cb cb, void *ud)
{
    if (auth_global_take(auth, req) != 0) {
        cb(req, NULL, SB_ELIMIT, ud);
        return;
    }
    auth_check_token(auth, req, auth_credential(req), cb, ud);
}

void
sb_auth_check_query(sb_auth_t *auth, sb_http_req_t *req, const char *param, sb_auth_cb cb,
                    void *ud)
{
    /* The token is only read while auth_check_token runs (hashed, or verified as a JWT), so a
     * stack copy is enough even when the answer comes later from storage. */
    char tok[AUTH_TOKEN_MAX + 2];
    sb_str_t t;
    if (auth_global_take(auth, req) != 0) {
        cb(req, NULL, SB_ELIMIT, ud);
        return;
    }
    t = auth_credential(req);
    if (t.len == 0 && sb_http_header(req, "Authorization").len == 0) {
        int n = sb_http_query(req, param, tok, sizeof tok);
        t = n > 0 ? (sb_str_t){tok, (size_t)n} : (sb_str_t){0};
    }
    auth_check_token(auth, req, t, cb, ud);
}

static void
auth_check_token(sb_auth_t *auth, sb_http_req_t *req, sb_str_t t, sb_auth_cb cb, void *ud)
{
    uint8_t h[32];
    const char *why = NULL;
    sb_principal_t p;

    if (t.len == 0 || t.len > AUTH_TOKEN_MAX) {
        cb(req, NULL, SB_EAUTH, ud);
        return;
    }
    SHA256((const uint8_t *)t.ptr, t.len, h);
    if (auth->have_admin_key && CRYPTO_memcmp(h, auth->admin_hash, 32) == 0) {
        memset(&p, 0, sizeof p);
        snprintf(p.id, sizeof p.id, "admin");
        snprintf(p.name, sizeof p.name, "auth.admin_key");
        snprintf(p.key_id, sizeof p.key_id, "config");
        p.role = SB_ROLE_ADMIN;
        p.kind = SB_PRINCIPAL_KEY;
        auth_finish(auth, req, &p, cb, ud);
        return;
    }
    if (sb_auth_token_ok(SB_AUTH_KEY_PREFIX, t.ptr, t.len)) {
        cache_ent_t *e = cache_find(auth, h);
        if (e && e->state != CE_PENDING && e->expires_us <= auth_now_us()) {
            cache_remove(auth, e);
            e = NULL;
        }
        if (e && e->state == CE_VALID) {
            p = e->p;
            auth_finish(auth, req, &p, cb, ud);
            return;
        }
        if (e && e->state == CE_INVALID) {
            cb(req, NULL, SB_EAUTH, ud);
            return;
        }
        auth_waiter_t *w = sb_xcalloc(1, sizeof *w);
        w->req = req;
        w->cb = cb;
        w->ud = ud;
        if (e) { /* a lookup of this key is in flight: wait for it */
            *e->wtail = w;
            e->wtail = &w->next;
            return;
        }
        e = cache_add(auth, h);
        *e->wtail = w;
        e->wtail = &w->next;
        char hex[65];
        sb_sha256_hex(t.ptr, t.len, hex);
        auth_store_get(auth, "api_key", hex, "key_hash", auth_on_key_record, e);
        return;
    }
    if (memchr(t.ptr, '.', t.len) &&
        sb_jwt_verify(auth->secret, auth->secret_len, t.ptr, t.len, auth_now_s(), &p, &why) == 0) {
        auth_finish(auth, req, &p, cb, ud);
        return;
    }
    if (why)
        sb_log_debug("SB-AUTH-JWT-REFUSED", "refused a bearer token: %s", why);
    cb(req, NULL, SB_EAUTH, ud);
}

int
sb_auth_require_role(const sb_principal_t *p, sb_role_t min)
{
    return p && p->role >= min ? 0 : SB_EPERM;
}

void
sb_auth_respond_error(sb_http_req_t *req, int err)
{
    switch (err) {
    case SB_EAUTH:
        sb_http_add_header(req, "WWW-Authenticate",
                           "Bearer realm=\"soulbox\", error=\"invalid_token\"");
        sb_http_respond_error(req, 401, "unauthorized",
                              "missing or invalid credentials: send 'Authorization: Bearer "
                              "<API key or access token>' or 'X-API-Key: <API key>'");
        break;
    case SB_EPERM:
        sb_http_respond_error(req, 403, "forbidden", "your role may not do this");
        break;
    case SB_ELIMIT:
        sb_http_respond_error(req, 429, "rate_limited", "too many requests; retry later");
        break;
    default:
        sb_http_add_header(req, "Retry-After", "1");
        sb_http_respond_error(req, 503, "unavailable",
                              "credentials cannot be checked right now: %s", sb_strerror(err));
        break;
    }
}

/* ---- request bodies -------------------------------------------------------------------- */

/* auth_body parses the request body as a JSON object; on failure answers 400 and returns NULL. */
static json_t *
auth_body(sb_http_req_t *req)
{
    sb_str_t b = sb_http_body(req);
    json_error_t je;
    json_t *o = json_loadb(b.ptr ? b.ptr : "", b.len, JSON_REJECT_DUPLICATES, &je);
    if (!o) {
        sb_http_respond_error(req, 400, "bad_request", "malformed JSON body: %s (at byte %d)",
                              je.text, je.position);
        return NULL;
    }
    if (!json_is_object(o)) {
        json_decref(o);
        sb_http_respond_error(req, 400, "bad_request", "the body must be a JSON object");
        return NULL;
    }
    return o;
}

/* auth_field gets string field name of o: 0 (and *out, *len; NULL if absent and optional), or
 * -1 after answering 400 naming the field. */
static int
auth_field(sb_http_req_t *req, json_t *o, const char *name, int required, size_t max,
           const char **out, size_t *len)
{
    json_t *v = json_object_get(o, name);
    *out = NULL;
    *len = 0;
    if (!v || json_is_null(v)) {
        if (!required)
            return 0;
        sb_http_respond_error(req, 400, "bad_request", "missing field '%s'", name);
        return -1;
    }
    if (!json_is_string(v)) {
        sb_http_respond_error(req, 400, "bad_request", "field '%s' must be a string", name);
        return -1;
    }
    *len = json_string_length(v);
    if (*len == 0 && required) {
        sb_http_respond_error(req, 400, "bad_request", "field '%s' must not be empty", name);
        return -1;
    }
    if (*len > max) {
        sb_http_respond_error(req, 400, "bad_request", "field '%s' is longer than %zu bytes",
                              name, max);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

/* auth_client_ip writes the client's address without the port. */
static void
auth_client_ip(sb_http_req_t *req, char *out, size_t cap)
{
    char peer[64];
    sb_http_peer(req, peer, sizeof peer);
    char *colon = strrchr(peer, ':');
    if (colon && colon != peer)
        *colon = 0;
    char *p = peer;
    if (*p == '[') {
        p++;
        size_t l = strlen(p);
        if (l && p[l - 1] == ']')
            p[l - 1] = 0;
    }
    snprintf(out, cap, "%.63s", p);
}

static void
auth_hash_prefix(const char *hex, char out[13])
{
    memcpy(out, hex, 12);
    out[12] = 0;
}

/* ---- issuing a token pair -------------------------------------------------------------- */

typedef struct {
    sb_http_req_t *req;
    char *access;
    char refresh[SB_AUTH_REFRESH_LEN + 1];
    char user[65];
    char ip[64];
    char event[32];
    int64_t expires_in;
} pair_ctx_t;

static void
auth_on_session_put(sb_auth_t *auth, int status, const char *text, size_t len, uint64_t changed,
                    void *ud)
{
    pair_ctx_t *c = ud;
    (void)text;
    (void)len;
    (void)changed;
    if (status != 0) {
        sb_log_warn("SB-AUTH-SESSION-FAIL", "cannot store a refresh token for %s: %s", c->user,
                    sb_strerror(status));
        sb_auth_respond_error(c->req, SB_EUNAVAILABLE);
    } else {
        json_t *j = json_pack("{s:s, s:s, s:I, s:s, s:I}", "access_token", c->access,
                              "token_type", "Bearer", "expires_in", (json_int_t)c->expires_in,
                              "refresh_token", c->refresh, "refresh_expires_in",
                              (json_int_t)auth->cfg->auth_refresh_ttl_s);
        sb_http_add_header(c->req, "Cache-Control", "no-store");
        sb_http_respond_json(c->req, 200, j);
        sb_auth_audit(auth, c->event, c->user, json_pack("{s:s}", "ip", c->ip));
    }
    OPENSSL_cleanse(c->refresh, sizeof c->refresh);
    free(c->access);
    free(c);
}

/* auth_issue_pair makes an access token and a refresh token for user, stores the refresh
 * token's hash as a "session" record ("rt_" + sha256) and answers 200 once it is durable. */
static void
auth_issue_pair(sb_auth_t *auth, sb_http_req_t *req, const char *user, sb_role_t role,
                const char *ip, const char *event)
{
    pair_ctx_t *c = sb_xcalloc(1, sizeof *c);
    char hex[65], id[80];
    int64_t now = auth_now_s();
    c->req = req;
    snprintf(c->user, sizeof c->user, "%s", user);
    snprintf(c->ip, sizeof c->ip, "%s", ip);
    snprintf(c->event, sizeof c->event, "%s", event);
    c->expires_in = auth->cfg->auth_jwt_ttl_s;
    if (sb_jwt_issue(auth->secret, auth->secret_len, user, role, now, c->expires_in,
                     &c->access) != 0 ||
        sb_auth_token_make(SB_AUTH_REFRESH_PREFIX, c->refresh) != 0) {
        free(c->access);
        free(c);
        sb_http_respond_error(req, 500, "internal", "cannot issue tokens");
        return;
    }
    sb_sha256_hex(c->refresh, strlen(c->refresh), hex);
    snprintf(id, sizeof id, "rt_%s", hex);
    json_t *rec = json_pack("{s:s, s:s, s:I, s:I}", "id", id, "owner", user, "created",
                            (json_int_t)sb_now_real_ms(), "expires",
                            (json_int_t)(sb_now_real_ms() +
                                         1000ull * (uint64_t)auth->cfg->auth_refresh_ttl_s));
    auth_store_put(auth, "session", rec, 1, auth_on_session_put, c);
}

/* ---- POST /api/v1/auth/login ----------------------------------------------------------- */

/* A valid hash of a random password nobody knows: an unknown user name costs the same
 * PBKDF2 work as a known one, so timing does not tell which names exist. */
static const char auth_dummy_hash[] =
    "pbkdf2-sha256$210000$VHdxBAOC0JcsLUWaC8PGTw$dkXwlpHgCrNkgC1udQEHaPLAykwna5fZV9Hc915-cN4";

struct login_job {
    uv_work_t work;
    login_job_t *next;
    sb_auth_t *auth;
    sb_http_req_t *req;
    char user[65];
    char ip[64];
    char *pw;
    size_t pwlen;
    char stored[257];
    sb_role_t role;
    int user_ok;
    int result;
};

static void login_next(sb_auth_t *auth);

static void
login_free(login_job_t *j)
{
    if (j->pw) {
        OPENSSL_cleanse(j->pw, j->pwlen);
        free(j->pw);
    }
    free(j);
}

static void
login_work(uv_work_t *w)
{
    login_job_t *j = w->data;
    j->result = sb_password_verify(j->pw, j->pwlen, j->stored);
}

static void
login_refuse(sb_auth_t *auth, login_job_t *j, const char *reason)
{
    uint64_t now = auth_now_us();
    char k[80];
    snprintf(k, sizeof k, "u:%s", j->user);
    sb_ratelimit_take(auth->login_user, k, 1, now, NULL);
    snprintf(k, sizeof k, "i:%s", j->ip);
    sb_ratelimit_take(auth->login_ip, k, 1, now, NULL);
    sb_auth_audit(auth, "login.failure", j->ip,
                  json_pack("{s:s, s:s, s:s}", "username", j->user, "ip", j->ip, "reason",
                            reason));
    sb_http_add_header(j->req, "WWW-Authenticate", "Bearer realm=\"soulbox\"");
    sb_http_respond_error(j->req, 401, "unauthorized", "invalid username or password");
}

static void
login_after(uv_work_t *w, int status)
{
    login_job_t *j = w->data;
    sb_auth_t *auth = j->auth;
    auth->hashing--;
    if (status == 0 && j->result == 0 && j->user_ok) {
        auth_issue_pair(auth, j->req, j->user, j->role, j->ip, "login.success");
    } else if (status == 0 && j->result == SB_EINVAL && j->user_ok) {
        sb_log_error("SB-AUTH-BAD-HASH", "user %s has a password_hash in an unknown format",
                     j->user);
        login_refuse(auth, j, "unusable password hash");
    } else {
        login_refuse(auth, j, j->user_ok ? "wrong password" : "unknown or disabled user");
    }
    login_free(j);
    login_next(auth);
}

/* login_next starts queued hashes while slots are free. */
static void
login_next(sb_auth_t *auth)
{
    while (auth->hashing < AUTH_HASH_INFLIGHT && auth->hq_head) {
        login_job_t *j = auth->hq_head;
        auth->hq_head = j->next;
        if (!auth->hq_head)
            auth->hq_tail = NULL;
        auth->hq_len--;
        j->work.data = j;
        int r = uv_queue_work(sb_actor_loop(auth->actor), &j->work, login_work, login_after);
        if (r != 0) {
            sb_http_respond_error(j->req, 503, "unavailable", "cannot check passwords now");
            login_free(j);
            continue;
        }
        auth->hashing++;
    }
}

static void
login_on_user(sb_auth_t *auth, int status, const char *text, size_t len, uint64_t changed,
              void *ud)
{
    login_job_t *j = ud;
    (void)changed;
    snprintf(j->stored, sizeof j->stored, "%s", auth_dummy_hash);
    if (status == 0) {
        json_t *r = json_loadb(text, len, 0, NULL);
        const char *ph = NULL, *role = NULL;
        json_int_t disabled = 0;
        if (r && json_unpack(r, "{s:s, s:s, s?I}", "password_hash", &ph, "role", &role,
                             "disabled", &disabled) == 0 && !disabled &&
            strlen(ph) < sizeof j->stored) {
            j->role = sb_role_parse(role, strlen(role));
            j->user_ok = j->role != SB_ROLE_NONE;
            if (j->user_ok)
                snprintf(j->stored, sizeof j->stored, "%s", ph);
        }
        json_decref(r);
    } else if (status != SB_ENOTFOUND) {
        sb_log_warn("SB-AUTH-LOOKUP-FAIL", "user lookup failed: %s", sb_strerror(status));
        sb_auth_respond_error(j->req, SB_EUNAVAILABLE);
        login_free(j);
        return;
    }
    if (auth->hq_len >= AUTH_HASH_QUEUE) {
        auth_retry_after(j->req, 1);
        sb_http_respond_error(j->req, 429, "rate_limited", "too many logins in progress");
        login_free(j);
        return;
    }
    if (auth->hq_tail)
        auth->hq_tail->next = j;
    else
        auth->hq_head = j;
    auth->hq_tail = j;
    auth->hq_len++;
    login_next(auth);
}

static void
auth_on_login(sb_http_req_t *req, void *ud)
{
    sb_auth_t *auth = ud;
    const char *user, *pw;
    size_t ul, pl;
    uint32_t r1 = 0, r2 = 0;
    char ip[64], k[96];

    if (auth_global_take(auth, req) != 0) {
        sb_auth_respond_error(req, SB_ELIMIT);
        return;
    }
    json_t *o = auth_body(req);
    if (!o)
        return;
    if (auth_field(req, o, "username", 1, 64, &user, &ul) ||
        auth_field(req, o, "password", 1, AUTH_PASSWORD_MAX, &pw, &pl)) {
        json_decref(o);
        return;
    }
    if (!sb_auth_username_ok(user, ul)) {
        json_decref(o);
        sb_http_respond_error(req, 400, "bad_request",
                              "field 'username' must be 1-64 of A-Z a-z 0-9 . _ -");
        return;
    }
    auth_client_ip(req, ip, sizeof ip);
    uint64_t now = auth_now_us();
    snprintf(k, sizeof k, "u:%s", user);
    int lu = sb_ratelimit_peek(auth->login_user, k, 1, now, &r1);
    snprintf(k, sizeof k, "i:%s", ip);
    int li = sb_ratelimit_peek(auth->login_ip, k, 1, now, &r2);
    if (lu || li) {
        uint32_t retry = r1 > r2 ? r1 : r2;
        auth_audit_limited(auth, lu ? "login_user" : "login_ip", lu ? user : ip, ip, retry);
        sb_auth_audit(auth, "login.rate_limited", ip,
                      json_pack("{s:s, s:s, s:i}", "username", user, "ip", ip, "retry_after_s",
                                (json_int_t)retry));
        json_decref(o);
        auth_retry_after(req, retry);
        sb_http_respond_error(req, 429, "rate_limited",
                              "too many failed logins; retry in %u s", retry);
        return;
    }
    login_job_t *j = sb_xcalloc(1, sizeof *j);
    j->auth = auth;
    j->req = req;
    snprintf(j->user, sizeof j->user, "%.*s", (int)ul, user);
    snprintf(j->ip, sizeof j->ip, "%s", ip);
    j->pw = sb_xmalloc(pl + 1);
    memcpy(j->pw, pw, pl);
    j->pw[pl] = 0;
    j->pwlen = pl;
    /* jansson keeps its own copy of the password: wipe it before letting go. */
    OPENSSL_cleanse((char *)pw, pl);
    json_decref(o);
    auth_store_get(auth, "user", j->user, "", login_on_user, j);
}

/* ---- POST /api/v1/auth/refresh --------------------------------------------------------- */

static void
refresh_refuse(sb_http_req_t *req)
{
    sb_http_add_header(req, "WWW-Authenticate", "Bearer realm=\"soulbox\"");
    sb_http_respond_error(req, 401, "unauthorized",
                          "invalid, expired or already used refresh token: log in again");
}

typedef struct {
    sb_auth_t *auth;
    sb_http_req_t *req;
    char hex[65];
    char owner[129];
    char ip[64];
    json_int_t expires;
} refresh_ctx_t;

static void
refresh_ignore(sb_auth_t *auth, int status, const char *text, size_t len, uint64_t changed,
               void *ud)
{
    (void)auth;
    (void)status;
    (void)text;
    (void)len;
    (void)changed;
    (void)ud;
}

/* refresh_on_family: a reused refresh token suggests it was stolen, so every refresh token of
 * that user is spent (marked as the rotation does); they log in again. */
static void
refresh_on_family(sb_auth_t *auth, int status, const char *text, size_t len, uint64_t changed,
                  void *ud)
{
    (void)changed;
    (void)ud;
    if (status != 0)
        return;
    json_t *arr = json_loadb(text, len, 0, NULL);
    size_t i;
    json_t *r;
    json_array_foreach(arr, i, r) {
        const char *id = json_string_value(json_object_get(r, "id"));
        const char *owner = json_string_value(json_object_get(r, "owner"));
        json_t *exp = json_object_get(r, "expires");
        if (!id || !owner || strncmp(id, "rt_", 3) != 0 || strlen(id) != 67)
            continue;
        char mid[80];
        snprintf(mid, sizeof mid, "rtu_%s", id + 3);
        json_t *m = json_pack("{s:s, s:s, s:I, s:I}", "id", mid, "owner", owner, "created",
                              (json_int_t)sb_now_real_ms(), "expires",
                              json_is_integer(exp) ? json_integer_value(exp) : 0);
        auth_store_put(auth, "session", m, 1, refresh_ignore, NULL);
    }
    json_decref(arr);
}

static void
refresh_on_user(sb_auth_t *auth, int status, const char *text, size_t len, uint64_t changed,
                void *ud)
{
    refresh_ctx_t *c = ud;
    (void)changed;
    if (status != 0 && status != SB_ENOTFOUND) {
        sb_auth_respond_error(c->req, SB_EUNAVAILABLE);
        free(c);
        return;
    }
    sb_role_t role = SB_ROLE_NONE;
    if (status == 0) {
        json_t *r = json_loadb(text, len, 0, NULL);
        const char *rs = NULL;
        json_int_t disabled = 0;
        if (r && json_unpack(r, "{s:s, s?I}", "role", &rs, "disabled", &disabled) == 0 &&
            !disabled)
            role = sb_role_parse(rs, strlen(rs));
        json_decref(r);
    }
    if (role == SB_ROLE_NONE) {
        refresh_refuse(c->req);
        free(c);
        return;
    }
    auth_issue_pair(auth, c->req, c->owner, role, c->ip, "auth.refresh");
    free(c);
}

static void
refresh_on_spent(sb_auth_t *auth, int status, const char *text, size_t len, uint64_t changed,
                 void *ud)
{
    refresh_ctx_t *c = ud;
    char pfx[13];
    (void)text;
    (void)len;
    (void)changed;
    if (status == SB_EEXIST) {
        /* Spent before: someone presents a refresh token that was already rotated. */
        auth_hash_prefix(c->hex, pfx);
        sb_log_warn("SB-AUTH-REFRESH-REUSE", "a spent refresh token of %s was presented again "
                    "from %s; all of that user's refresh tokens are revoked", c->owner, c->ip);
        sb_auth_audit(auth, "auth.refresh_reuse", c->owner,
                      json_pack("{s:s, s:s}", "token_sha256_prefix", pfx, "ip", c->ip));
        auth_store_list(auth, "session", c->owner, 1000, refresh_on_family, NULL);
        refresh_refuse(c->req);
        free(c);
        return;
    }
    if (status != 0) {
        sb_auth_respond_error(c->req, SB_EUNAVAILABLE);
        free(c);
        return;
    }
    auth_store_get(auth, "user", c->owner, "", refresh_on_user, c);
}

static void
refresh_on_session(sb_auth_t *auth, int status, const char *text, size_t len, uint64_t changed,
                   void *ud)
{
    refresh_ctx_t *c = ud;
    (void)changed;
    if (status != 0) {
        if (status == SB_ENOTFOUND)
            refresh_refuse(c->req);
        else
            sb_auth_respond_error(c->req, SB_EUNAVAILABLE);
        free(c);
        return;
    }
    json_t *r = json_loadb(text, len, 0, NULL);
    const char *owner = NULL;
    json_int_t expires = 0;
    int ok = r && json_unpack(r, "{s:s, s?I}", "owner", &owner, "expires", &expires) == 0 &&
             expires > 0 && (uint64_t)expires > sb_now_real_ms();
    if (ok) {
        snprintf(c->owner, sizeof c->owner, "%s", owner);
        c->expires = expires;
    }
    json_decref(r);
    if (!ok) {
        refresh_refuse(c->req);
        free(c);
        return;
    }
    /* The single-use step: creating the spent marker succeeds exactly once per token, also
     * when two gateways race on the same token. */
    char mid[80];
    snprintf(mid, sizeof mid, "rtu_%s", c->hex);
    json_t *m = json_pack("{s:s, s:s, s:I, s:I}", "id", mid, "owner", c->owner, "created",
                          (json_int_t)sb_now_real_ms(), "expires", c->expires);
    auth_store_put(auth, "session", m, 1, refresh_on_spent, c);
}

static void
auth_on_refresh(sb_http_req_t *req, void *ud)
{
    sb_auth_t *auth = ud;
    const char *tok;
    size_t tl;
    if (auth_global_take(auth, req) != 0) {
        sb_auth_respond_error(req, SB_ELIMIT);
        return;
    }
    json_t *o = auth_body(req);
    if (!o)
        return;
    if (auth_field(req, o, "refresh_token", 1, 256, &tok, &tl)) {
        json_decref(o);
        return;
    }
    if (!sb_auth_token_ok(SB_AUTH_REFRESH_PREFIX, tok, tl)) {
        json_decref(o);
        refresh_refuse(req);
        return;
    }
    refresh_ctx_t *c = sb_xcalloc(1, sizeof *c);
    c->auth = auth;
    c->req = req;
    auth_client_ip(req, c->ip, sizeof c->ip);
    sb_sha256_hex(tok, tl, c->hex);
    json_decref(o);
    char id[80];
    snprintf(id, sizeof id, "rt_%s", c->hex);
    auth_store_get(auth, "session", id, "", refresh_on_session, c);
}

/* ---- /api/v1/keys (admin) -------------------------------------------------------------- */

typedef struct {
    sb_auth_t *auth;
    sb_http_req_t *req;
    sb_principal_t by;
    json_t *out; /* POST: the response being built */
    char id[65];
    char key_hash[65];
} keys_ctx_t;

static keys_ctx_t *
keys_ctx(sb_auth_t *auth, sb_http_req_t *req, const sb_principal_t *p)
{
    keys_ctx_t *c = sb_xcalloc(1, sizeof *c);
    c->auth = auth;
    c->req = req;
    c->by = *p;
    return c;
}

/* keys_admin: the common prologue of the key routes; 0 if p may go on. */
static int
keys_admin(sb_http_req_t *req, const sb_principal_t *p, int err)
{
    if (!err)
        err = sb_auth_require_role(p, SB_ROLE_ADMIN);
    if (err)
        sb_auth_respond_error(req, err);
    return err;
}

static void
keys_on_created(sb_auth_t *auth, int status, const char *text, size_t len, uint64_t changed,
                void *ud)
{
    keys_ctx_t *c = ud;
    char who[200], pfx[13];
    (void)text;
    (void)len;
    (void)changed;
    if (status != 0) {
        json_decref(c->out);
        if (status == SB_EEXIST)
            sb_http_respond_error(c->req, 409, "conflict", "key id collision; try again");
        else
            sb_auth_respond_error(c->req, SB_EUNAVAILABLE);
    } else {
        sb_principal_audit_name(&c->by, who, sizeof who);
        auth_hash_prefix(c->key_hash, pfx);
        json_t *f = json_pack("{s:s, s:O, s:O, s:s}", "id", c->id, "role",
                              json_object_get(c->out, "role"), "owner",
                              json_object_get(c->out, "owner"), "key_sha256_prefix", pfx);
        sb_http_add_header(c->req, "Cache-Control", "no-store");
        sb_http_respond_json(c->req, 201, c->out);
        sb_auth_audit(auth, "api_key.created", who, f);
    }
    free(c);
}

static void
keys_post_authed(sb_http_req_t *req, const sb_principal_t *p, int err, void *ud)
{
    sb_auth_t *auth = ud;
    const char *name, *role, *owner;
    size_t nl, rl, ol;
    if (keys_admin(req, p, err))
        return;
    json_t *o = auth_body(req);
    if (!o)
        return;
    if (auth_field(req, o, "name", 0, 128, &name, &nl) ||
        auth_field(req, o, "role", 1, 16, &role, &rl) ||
        auth_field(req, o, "owner", 0, 128, &owner, &ol)) {
        json_decref(o);
        return;
    }
    sb_role_t r = sb_role_parse(role, rl);
    if (r == SB_ROLE_NONE) {
        json_decref(o);
        sb_http_respond_error(req, 400, "bad_request",
                              "field 'role' must be admin, user or viewer");
        return;
    }
    if (owner) {
        int ok = ol > 0;
        for (size_t i = 0; i < ol; i++)
            ok &= (unsigned char)owner[i] > 0x20 && (unsigned char)owner[i] < 0x7f;
        if (!ok) {
            json_decref(o);
            sb_http_respond_error(req, 400, "bad_request",
                                  "field 'owner' must be 1-128 printable characters without "
                                  "spaces");
            return;
        }
    }
    keys_ctx_t *c = keys_ctx(auth, req, p);
    uint8_t rid[8];
    char key[SB_AUTH_KEY_LEN + 1], ownbuf[140];
    if (sb_random_bytes(rid, sizeof rid) || sb_auth_token_make(SB_AUTH_KEY_PREFIX, key)) {
        json_decref(o);
        free(c);
        sb_http_respond_error(req, 500, "internal", "no randomness");
        return;
    }
    snprintf(c->id, sizeof c->id, "k_%02x%02x%02x%02x%02x%02x%02x%02x", rid[0], rid[1], rid[2],
             rid[3], rid[4], rid[5], rid[6], rid[7]);
    sb_sha256_hex(key, strlen(key), c->key_hash);
    if (owner)
        snprintf(ownbuf, sizeof ownbuf, "%.*s", (int)ol, owner);
    else
        snprintf(ownbuf, sizeof ownbuf, "key:%s", c->id);
    json_int_t now = (json_int_t)sb_now_real_ms();
    json_t *rec = json_pack("{s:s, s:s, s:s, s:s, s:s#, s:I}", "id", c->id, "key_hash",
                            c->key_hash, "owner", ownbuf, "role", sb_role_name(r), "name",
                            name ? name : "", name ? nl : 0, "created", now);
    c->out = json_pack("{s:s, s:s, s:s, s:s#, s:s, s:I}", "id", c->id, "key", key, "role",
                       sb_role_name(r), "name", name ? name : "", name ? nl : 0, "owner", ownbuf,
                       "created", now);
    OPENSSL_cleanse(key, sizeof key);
    json_decref(o);
    auth_store_put(auth, "api_key", rec, 1, keys_on_created, c);
}

static void
keys_on_list(sb_auth_t *auth, int status, const char *text, size_t len, uint64_t changed,
             void *ud)
{
    keys_ctx_t *c = ud;
    (void)auth;
    (void)changed;
    if (status != 0) {
        sb_auth_respond_error(c->req, SB_EUNAVAILABLE);
        free(c);
        return;
    }
    json_t *arr = json_loadb(text, len, 0, NULL), *out = json_array(), *r;
    size_t i;
    json_array_foreach(arr, i, r) {
        json_t *k = json_object();
        static const char *const keep[] = {"id", "name", "role", "owner", "created", "expires",
                                           "last_used"};
        for (size_t f = 0; f < sizeof keep / sizeof keep[0]; f++) {
            json_t *v = json_object_get(r, keep[f]);
            if (v)
                json_object_set(k, keep[f], v);
        }
        json_t *rv = json_object_get(r, "revoked");
        json_int_t revoked = json_is_integer(rv) ? json_integer_value(rv) : 0;
        json_object_set_new(k, "revoked", json_boolean(revoked > 0));
        if (revoked > 0)
            json_object_set_new(k, "revoked_at", json_integer(revoked));
        json_array_append_new(out, k);
    }
    json_decref(arr);
    sb_http_respond_json(c->req, 200, json_pack("{s:o}", "keys", out));
    free(c);
}

static void
keys_get_authed(sb_http_req_t *req, const sb_principal_t *p, int err, void *ud)
{
    sb_auth_t *auth = ud;
    if (keys_admin(req, p, err))
        return;
    auth_store_list(auth, "api_key", "", 1000, keys_on_list, keys_ctx(auth, req, p));
}

static void
keys_on_revoked(sb_auth_t *auth, int status, const char *text, size_t len, uint64_t changed,
                void *ud)
{
    keys_ctx_t *c = ud;
    char who[200], pfx[13];
    (void)text;
    (void)len;
    (void)changed;
    if (status != 0) {
        sb_auth_respond_error(c->req, SB_EUNAVAILABLE);
    } else {
        auth_invalidate_hash(auth, c->key_hash);
        sb_principal_audit_name(&c->by, who, sizeof who);
        auth_hash_prefix(c->key_hash, pfx);
        sb_auth_audit(auth, "api_key.revoked", who,
                      json_pack("{s:s, s:s}", "id", c->id, "key_sha256_prefix", pfx));
        sb_http_respond(c->req, 204, NULL, NULL, 0);
    }
    free(c);
}

static void
keys_on_fetched(sb_auth_t *auth, int status, const char *text, size_t len, uint64_t changed,
                void *ud)
{
    keys_ctx_t *c = ud;
    (void)changed;
    if (status == SB_ENOTFOUND) {
        sb_http_respond_error(c->req, 404, "not_found", "no API key with id '%s'", c->id);
        free(c);
        return;
    }
    if (status != 0) {
        sb_auth_respond_error(c->req, SB_EUNAVAILABLE);
        free(c);
        return;
    }
    json_t *r = json_loadb(text, len, 0, NULL);
    const char *kh = json_string_value(json_object_get(r, "key_hash"));
    if (!r || !kh || strlen(kh) != 64) {
        json_decref(r);
        sb_http_respond_error(c->req, 500, "internal", "the key record is unreadable");
        free(c);
        return;
    }
    snprintf(c->key_hash, sizeof c->key_hash, "%s", kh);
    json_t *rv = json_object_get(r, "revoked");
    if (json_is_integer(rv) && json_integer_value(rv) > 0) {
        /* Already revoked: idempotent, but make sure this gateway forgets it too. */
        auth_invalidate_hash(auth, c->key_hash);
        json_decref(r);
        sb_http_respond(c->req, 204, NULL, NULL, 0);
        free(c);
        return;
    }
    json_object_set_new(r, "revoked", json_integer((json_int_t)sb_now_real_ms()));
    /* Drop the cached entry now, not only once storage acks: from here on this gateway
     * refuses the key (a PENDING lookup's answer is not cached either). */
    auth_invalidate_hash(auth, c->key_hash);
    auth_store_put(auth, "api_key", r, 0, keys_on_revoked, c);
}

static void
keys_del_authed(sb_http_req_t *req, const sb_principal_t *p, int err, void *ud)
{
    sb_auth_t *auth = ud;
    if (keys_admin(req, p, err))
        return;
    sb_str_t id = sb_http_param(req, "id");
    int ok = id.len > 0 && id.len <= 64;
    for (uint32_t i = 0; ok && i < id.len; i++)
        ok = (unsigned char)id.ptr[i] > 0x20 && (unsigned char)id.ptr[i] < 0x7f;
    if (!ok) {
        sb_http_respond_error(req, 404, "not_found", "no API key with that id");
        return;
    }
    keys_ctx_t *c = keys_ctx(auth, req, p);
    sb_str_copy(c->id, sizeof c->id, id);
    auth_store_get(auth, "api_key", c->id, "", keys_on_fetched, c);
}

static void
auth_on_keys_post(sb_http_req_t *req, void *ud)
{
    sb_auth_check(ud, req, keys_post_authed, ud);
}

static void
auth_on_keys_get(sb_http_req_t *req, void *ud)
{
    sb_auth_check(ud, req, keys_get_authed, ud);
}

static void
auth_on_keys_del(sb_http_req_t *req, void *ud)
{
    sb_auth_check(ud, req, keys_del_authed, ud);
}

void
sb_auth_routes(sb_auth_t *auth, sb_http_server_t *srv)
{
    sb_http_route(srv, "POST", "/api/v1/auth/login", auth_on_login, auth, AUTH_BODY_MAX);
    sb_http_route(srv, "POST", "/api/v1/auth/refresh", auth_on_refresh, auth, AUTH_BODY_MAX);
    sb_http_route(srv, "POST", "/api/v1/keys", auth_on_keys_post, auth, AUTH_BODY_MAX);
    sb_http_route(srv, "GET", "/api/v1/keys", auth_on_keys_get, auth, 0);
    sb_http_route(srv, "DELETE", "/api/v1/keys/{id}", auth_on_keys_del, auth, 0);
}

/* ---- first start ----------------------------------------------------------------------- */

typedef struct {
    char key[SB_AUTH_KEY_LEN + 1];
    char hash[65];
} boot_ctx_t;

static void
boot_on_put(sb_auth_t *auth, int status, const char *text, size_t len, uint64_t changed,
            void *ud)
{
    boot_ctx_t *c = ud;
    char pfx[13];
    (void)text;
    (void)len;
    (void)changed;
    if (status == 0) {
        /* The one and only time this key exists in clear outside the operator's hands. */
        fprintf(stdout,
                "\nSoulBox: no credentials were configured, so an admin API key was created.\n"
                "It is shown only this once -- store it now:\n\n    %s\n\n"
                "Use it as 'Authorization: Bearer <key>'.  More: soulbox keys create --role "
                "user\n\n",
                c->key);
        fflush(stdout);
        auth_hash_prefix(c->hash, pfx);
        sb_log_warn("SB-AUTH-BOOTSTRAP-KEY", "no credentials were configured: created admin API "
                    "key id=bootstrap (sha256 %s...) and printed it once to stdout", pfx);
        sb_auth_audit(auth, "api_key.created", "system",
                      json_pack("{s:s, s:s, s:s, s:s}", "id", "bootstrap", "role", "admin",
                                "owner", "admin", "key_sha256_prefix", pfx));
        auth->bootstrap = 2;
    } else if (status == SB_EEXIST) {
        sb_log_info("SB-AUTH-CREDENTIALS-PRESENT", "another gateway created the first admin "
                    "key; no key is generated here");
        auth->bootstrap = 2;
    } else {
        sb_log_warn("SB-AUTH-BOOTSTRAP-RETRY", "cannot store the first admin key yet: %s",
                    sb_strerror(status));
        auth->bootstrap = 0;
    }
    OPENSSL_cleanse(c->key, sizeof c->key);
    free(c);
}

static void
boot_create(sb_auth_t *auth)
{
    boot_ctx_t *c = sb_xcalloc(1, sizeof *c);
    if (sb_auth_token_make(SB_AUTH_KEY_PREFIX, c->key) != 0) {
        free(c);
        auth->bootstrap = 0;
        return;
    }
    sb_sha256_hex(c->key, strlen(c->key), c->hash);
    json_t *rec = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I}", "id", "bootstrap", "key_hash",
                            c->hash, "owner", "admin", "role", "admin", "name",
                            "bootstrap admin key", "created", (json_int_t)sb_now_real_ms());
    auth_store_put(auth, "api_key", rec, 1, boot_on_put, c);
}

static void
boot_on_users(sb_auth_t *auth, int status, const char *text, size_t len, uint64_t changed,
              void *ud)
{
    (void)text;
    (void)len;
    (void)ud;
    (void)changed;
    if (status != 0) {
        auth->bootstrap = 0;
        return;
    }
    json_t *arr = json_loadb(text, len, 0, NULL);
    size_t n = json_array_size(arr);
    json_decref(arr);
    if (n > 0) {
        sb_log_info("SB-AUTH-CREDENTIALS-PRESENT", "users exist in storage; no admin key is "
                    "generated");
        auth->bootstrap = 2;
        return;
    }
    boot_create(auth);
}

static void
boot_on_keys(sb_auth_t *auth, int status, const char *text, size_t len, uint64_t changed,
             void *ud)
{
    (void)ud;
    (void)changed;
    if (status != 0) {
        if (!auth->warned_no_storage++)
            sb_log_warn("SB-AUTH-BOOTSTRAP-RETRY", "cannot ask storage for credentials yet (%s); "
                        "retrying", sb_strerror(status));
        auth->bootstrap = 0;
        return;
    }
    json_t *arr = json_loadb(text, len, 0, NULL);
    size_t n = json_array_size(arr);
    json_decref(arr);
    if (n > 0) {
        sb_log_info("SB-AUTH-CREDENTIALS-PRESENT", "API keys exist in storage; no admin key is "
                    "generated");
        auth->bootstrap = 2;
        return;
    }
    auth_store_list(auth, "user", "", 1, boot_on_users, NULL);
}

static void
boot_step(sb_auth_t *auth)
{
    if (auth->bootstrap != 0)
        return;
    auth->bootstrap = 1;
    auth_store_list(auth, "api_key", "", 1, boot_on_keys, NULL);
}

/* ---- lifecycle ------------------------------------------------------------------------- */

static void
auth_on_sweep(uv_timer_t *t)
{
    sb_auth_t *auth = t->data;
    uint64_t now = auth_now_us();
    boot_step(auth);
    if (++auth->ticks % 10 == 0) {
        cache_sweep(auth, now);
        sb_ratelimit_sweep(auth->per_key, now);
        sb_ratelimit_sweep(auth->login_user, now);
        sb_ratelimit_sweep(auth->login_ip, now);
        sb_ratelimit_sweep(auth->audit_rl, now);
    }
}

int
sb_auth_alloc(sb_actor_t *a, const sb_config_t *cfg, sb_auth_t **out)
{
    char err[512];
    uint8_t *secret = NULL;
    size_t slen = 0;
    int r;

    if ((r = sb_auth_secret_load(cfg, &secret, &slen, err, sizeof err)) != 0) {
        sb_log_error("SB-AUTH-SECRET", "%s", err);
        return r;
    }
    if (cfg->auth_admin_key[0] && strlen(cfg->auth_admin_key) < 32) {
        sb_log_error("SB-AUTH-ADMIN-KEY", "auth.admin_key is %zu bytes; it must be at least 32",
                     strlen(cfg->auth_admin_key));
        OPENSSL_cleanse(secret, slen);
        free(secret);
        return SB_ECONFIG;
    }
    sb_auth_t *auth = sb_xcalloc(1, sizeof *auth);
    auth->actor = a;
    auth->cfg = cfg;
    auth->secret = secret;
    auth->secret_len = slen;
    if (cfg->auth_admin_key[0]) {
        SHA256((const uint8_t *)cfg->auth_admin_key, strlen(cfg->auth_admin_key),
               auth->admin_hash);
        auth->have_admin_key = 1;
        auth->bootstrap = 2;
    }
    uint64_t now = auth_now_us();
    double g = (double)cfg->ratelimit_global_per_second;
    sb_bucket_init(&auth->global, g, g, now);
    double pk = (double)cfg->ratelimit_per_key_per_minute;
    auth->per_key = sb_ratelimit_alloc(pk / 60.0, pk, AUTH_KEY_TABLE_MAX);
    double la = (double)cfg->auth_login_attempts_per_minute;
    auth->login_user = sb_ratelimit_alloc(la / 60.0, la, AUTH_LOGIN_TABLE_MAX);
    auth->login_ip = sb_ratelimit_alloc(la / 60.0, la, AUTH_LOGIN_TABLE_MAX);
    auth->audit_rl = sb_ratelimit_alloc(1.0, 1.0, 4096);
    *out = auth;
    return 0;
}

void
sb_auth_start(sb_auth_t *auth)
{
    uv_timer_init(sb_actor_loop(auth->actor), &auth->sweep);
    auth->sweep.data = auth;
    auth->timer_open = 1;
    uv_timer_start(&auth->sweep, auth_on_sweep, AUTH_SWEEP_MS, AUTH_SWEEP_MS);
    if (auth->have_admin_key)
        sb_log_info("SB-AUTH-CREDENTIALS-PRESENT", "auth.admin_key is configured; no admin key "
                    "is generated");
    boot_step(auth);
}

void
sb_auth_stop(sb_auth_t *auth)
{
    if (auth && auth->timer_open) {
        auth->timer_open = 0;
        uv_close((uv_handle_t *)&auth->sweep, NULL);
    }
}

void
sb_auth_free(sb_auth_t *auth)
{
    if (!auth)
        return;
    while (auth->oldest) {
        cache_ent_t *e = auth->oldest;
        auth_waiter_t *w = e->waiters;
        while (w) { /* only after a forced stop; their requests are gone with the server */
            auth_waiter_t *n = w->next;
            free(w);
            w = n;
        }
        e->waiters = NULL;
        cache_remove(auth, e);
    }
    while (auth->hq_head) {
        login_job_t *j = auth->hq_head;
        auth->hq_head = j->next;
        login_free(j);
    }
    sb_ratelimit_free(auth->per_key);
    sb_ratelimit_free(auth->login_user);
    sb_ratelimit_free(auth->login_ip);
    sb_ratelimit_free(auth->audit_rl);
    OPENSSL_cleanse(auth->secret, auth->secret_len);
    free(auth->secret);
    free(auth);
}
