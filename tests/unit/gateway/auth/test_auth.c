/*
 * test_auth: the pure parts of gateway/auth -- JWT issue/verify and every refusal (wrong key,
 * alg none, HS384/HS512/RS256 when HS256 is configured, expired, nbf/iat in the future,
 * malformed, short secret), password hash/verify, key and refresh token shapes, and the JWT
 * secret's resolution (short refused, jwt.key made 0600 once and reused).
 */
#include "core/config.h"
#include "base/err.h"
#include "gateway/auth/auth.h"
#include "test.h"
#include "base/base64.h"
#include "base/id.h"
#include "base/sha256.h"

#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char SECRET[] =
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef-test";
#define SLEN (sizeof SECRET - 1)
static const char OTHER[] =
    "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210-other";

static int64_t NOW;

static int
verify(const char *tok, sb_principal_t *p, const char **why)
{
    return sb_jwt_verify((const uint8_t *)SECRET, SLEN, tok, strlen(tok), NOW, p, why);
}

/* forge builds a token with libjwt: any alg and key, any claims. */
static char *
forge(jwt_alg_t alg, const char *key, long iat, long nbf, long exp, const char *sub,
      const char *role)
{
    jwt_t *j;
    CHECK(jwt_new(&j) == 0);
    if (sub)
        jwt_add_grant(j, "sub", sub);
    if (role)
        jwt_add_grant(j, "role", role);
    if (iat)
        jwt_add_grant_int(j, "iat", iat);
    if (nbf)
        jwt_add_grant_int(j, "nbf", nbf);
    if (exp)
        jwt_add_grant_int(j, "exp", exp);
    CHECK(jwt_set_alg(j, alg, (const unsigned char *)key, key ? (int)strlen(key) : 0) == 0);
    char *s = jwt_encode_str(j);
    CHECK(s);
    jwt_free(j);
    return s;
}

/* raw builds header.payload.signature by hand, signing with HMAC-SHA256 over the first two
 * segments when sign is set (so the signature is right and only the header is hostile). */
static char *
raw(const char *header, const char *payload, int sign, const char *sig)
{
    char h[1024], p[1024], *out = malloc(4096);
    sb_base64url_encode(header, strlen(header), h);
    sb_base64url_encode(payload, strlen(payload), p);
    int n = snprintf(out, 4096, "%s.%s", h, p);
    if (sign) {
        uint8_t mac[32];
        unsigned ml = 0;
        HMAC(EVP_sha256(), SECRET, (int)SLEN, (const uint8_t *)out, (size_t)n, mac, &ml);
        char m64[64];
        sb_base64url_encode(mac, ml, m64);
        snprintf(out + n, 4096 - (size_t)n, ".%s", m64);
    } else {
        snprintf(out + n, 4096 - (size_t)n, ".%s", sig);
    }
    return out;
}

static void
test_jwt_roundtrip(void)
{
    char *tok;
    sb_principal_t p;
    const char *why;
    CHECK_EQ(sb_jwt_issue((const uint8_t *)SECRET, SLEN, "alice", SB_ROLE_USER, NOW, 900, &tok),
             0);
    CHECK_EQ(verify(tok, &p, &why), 0);
    CHECK(strcmp(p.id, "alice") == 0);
    CHECK_EQ(p.role, SB_ROLE_USER);
    CHECK_EQ(p.kind, SB_PRINCIPAL_JWT);
    CHECK(p.key_id[0] == 0);
    /* Within the leeway after exp: still fine; beyond: expired. */
    CHECK_EQ(sb_jwt_verify((const uint8_t *)SECRET, SLEN, tok, strlen(tok), NOW + 900 + 5, &p,
                           &why), 0);
    CHECK_EQ(sb_jwt_verify((const uint8_t *)SECRET, SLEN, tok, strlen(tok), NOW + 901 + 60, &p,
                           &why), SB_EAUTH);
    CHECK(strcmp(why, "expired") == 0);
    free(tok);
    /* Issuing refuses a short secret, a bad subject, no role. */
    CHECK_EQ(sb_jwt_issue((const uint8_t *)"short", 5, "alice", SB_ROLE_USER, NOW, 900, &tok),
             SB_EINVAL);
    CHECK_EQ(sb_jwt_issue((const uint8_t *)SECRET, SLEN, "a b", SB_ROLE_USER, NOW, 900, &tok),
             SB_EINVAL);
    CHECK_EQ(sb_jwt_issue((const uint8_t *)SECRET, SLEN, "a", SB_ROLE_NONE, NOW, 900, &tok),
             SB_EINVAL);
    sb_test_ok("jwt_roundtrip");
}

static void
test_jwt_refusals(void)
{
    sb_principal_t p;
    const char *why;
    char *t;

    /* Signed with another key. */
    t = forge(JWT_ALG_HS256, OTHER, NOW, NOW, NOW + 900, "alice", "admin");
    CHECK_EQ(verify(t, &p, &why), SB_EAUTH);
    free(t);
    /* The right key, but HS384 / HS512: a different algorithm than the configured one. */
    t = forge(JWT_ALG_HS512, SECRET, NOW, NOW, NOW + 900, "alice", "admin");
    CHECK_EQ(verify(t, &p, &why), SB_EAUTH);
    CHECK(strstr(why, "alg"));
    free(t);
    t = forge(JWT_ALG_HS384, SECRET, NOW, NOW, NOW + 900, "alice", "admin");
    CHECK_EQ(verify(t, &p, &why), SB_EAUTH);
    free(t);
    /* alg none, as libjwt makes it (no signature) and with a fake signature appended. */
    t = forge(JWT_ALG_NONE, NULL, NOW, NOW, NOW + 900, "alice", "admin");
    CHECK_EQ(verify(t, &p, &why), SB_EAUTH);
    char buf[4096];
    snprintf(buf, sizeof buf, "%s%s", t, t[strlen(t) - 1] == '.' ? "AAAA" : ".AAAA");
    CHECK_EQ(verify(buf, &p, &why), SB_EAUTH);
    free(t);
    char payload[256];
    snprintf(payload, sizeof payload,
             "{\"sub\":\"alice\",\"role\":\"admin\",\"iat\":%lld,\"exp\":%lld}", (long long)NOW,
             (long long)NOW + 900);
    static const char *const bad_headers[] = {
        "{\"alg\":\"none\",\"typ\":\"JWT\"}",    "{\"alg\":\"None\"}",
        "{\"alg\":\"hs256\"}",                   "{\"alg\":\"HS256 \"}",
        "{\"alg\":\"RS256\",\"typ\":\"JWT\"}",   "{\"alg\":\"ES256\"}",
        "{\"typ\":\"JWT\"}",                     "{\"alg\":[\"HS256\"]}",
        "{\"alg\":\"HS256\",\"alg\":\"none\"}",  "{\"alg\":\"HS256\",\"crit\":[\"x\"]}",
        "{\"alg\":\"HS256\",\"typ\":\"JWE\"}",   "[\"HS256\"]",
        "not json",
    };
    for (size_t i = 0; i < sizeof bad_headers / sizeof bad_headers[0]; i++) {
        /* Correct HMAC-SHA256 signature over the hostile header: only the header is wrong. */
        t = raw(bad_headers[i], payload, 1, NULL);
        if (verify(t, &p, &why) != SB_EAUTH) {
            fprintf(stderr, "accepted header %s\n", bad_headers[i]);
            CHECK(0);
        }
        free(t);
        t = raw(bad_headers[i], payload, 0, "");
        CHECK_EQ(verify(t, &p, &why), SB_EAUTH);
        free(t);
    }
    /* The control: the same construction with a good header passes. */
    t = raw("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", payload, 1, NULL);
    CHECK_EQ(verify(t, &p, &why), 0);
    CHECK_EQ(p.role, SB_ROLE_ADMIN);
    /* ... and flipping one signature character breaks it. */
    t[strlen(t) - 2] = t[strlen(t) - 2] == 'A' ? 'B' : 'A';
    CHECK_EQ(verify(t, &p, &why), SB_EAUTH);
    free(t);
    /* Expired, not yet valid, issued in the future. */
    t = forge(JWT_ALG_HS256, SECRET, NOW - 7200, NOW - 7200, NOW - 3600, "alice", "user");
    CHECK_EQ(verify(t, &p, &why), SB_EAUTH);
    CHECK(strcmp(why, "expired") == 0);
    free(t);
    t = forge(JWT_ALG_HS256, SECRET, NOW, NOW + 3600, NOW + 7200, "alice", "user");
    CHECK_EQ(verify(t, &p, &why), SB_EAUTH);
    CHECK(strstr(why, "nbf"));
    free(t);
    t = forge(JWT_ALG_HS256, SECRET, NOW + 3600, 0, NOW + 7200, "alice", "user");
    CHECK_EQ(verify(t, &p, &why), SB_EAUTH);
    free(t);
    /* Missing exp, missing/bad sub, missing/unknown role, exp of the wrong type. */
    t = forge(JWT_ALG_HS256, SECRET, NOW, NOW, 0, "alice", "user");
    CHECK_EQ(verify(t, &p, &why), SB_EAUTH);
    free(t);
    t = forge(JWT_ALG_HS256, SECRET, NOW, NOW, NOW + 900, NULL, "user");
    CHECK_EQ(verify(t, &p, &why), SB_EAUTH);
    free(t);
    t = forge(JWT_ALG_HS256, SECRET, NOW, NOW, NOW + 900, "../etc", "user");
    CHECK_EQ(verify(t, &p, &why), SB_EAUTH);
    free(t);
    t = forge(JWT_ALG_HS256, SECRET, NOW, NOW, NOW + 900, "alice", "root");
    CHECK_EQ(verify(t, &p, &why), SB_EAUTH);
    free(t);
    t = forge(JWT_ALG_HS256, SECRET, NOW, NOW, NOW + 900, "alice", NULL);
    CHECK_EQ(verify(t, &p, &why), SB_EAUTH);
    free(t);
    snprintf(payload, sizeof payload, "{\"sub\":\"alice\",\"role\":\"user\",\"exp\":\"%lld\"}",
             (long long)NOW + 900);
    t = raw("{\"alg\":\"HS256\"}", payload, 1, NULL);
    CHECK_EQ(verify(t, &p, &why), SB_EAUTH);
    free(t);
    /* Malformed shapes. */
    static const char *const junk[] = {
        "", ".", "..", "a.b", "a.b.c.d", "a.b.", "!!!.???.***", "eyJhbGciOiJIUzI1NiJ9..sig",
        "eyJhbGciOiJIUzI1NiJ9.e30.", "sbk_notajwt", "Bearer x.y.z",
        /* Regression: an empty payload made libjwt 1.10 write past a 0-byte buffer. */
        "eyJhbGciOiJIUzI1NiJ9..AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "eyJhbGciOiJIUzI1NiJ9.e30.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "eyJhbGciOiJIUzI1NiJ9.A.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "eyJhbGciOiJIUzI1NiJ9.W10.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    };
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++)
        CHECK_EQ(verify(junk[i], &p, &why), SB_EAUTH);
    char *huge = malloc(10000);
    memset(huge, 'a', 9999);
    huge[9999] = 0;
    huge[10] = huge[20] = '.';
    CHECK_EQ(verify(huge, &p, &why), SB_EAUTH);
    free(huge);
    /* A verifier given a short secret refuses everything. */
    CHECK_EQ(sb_jwt_issue((const uint8_t *)SECRET, SLEN, "alice", SB_ROLE_USER, NOW, 900, &t), 0);
    CHECK_EQ(sb_jwt_verify((const uint8_t *)SECRET, 32, t, strlen(t), NOW, &p, &why), SB_EAUTH);
    free(t);
    sb_test_ok("jwt_refusals");
}

static void
test_passwords(void)
{
    char h[256], h2[256];
    CHECK_EQ(sb_password_hash("correct horse", 13, 1000, h, 10), SB_ETOOBIG);
    CHECK_EQ(sb_password_hash("correct horse", 13, SB_PBKDF2_ITER, h, sizeof h), 0);
    CHECK(strncmp(h, "pbkdf2-sha256$210000$", 21) == 0);
    CHECK(!strstr(h, "correct"));
    CHECK_EQ(sb_password_verify("correct horse", 13, h), 0);
    CHECK_EQ(sb_password_verify("correct horsf", 13, h), SB_EAUTH);
    CHECK_EQ(sb_password_verify("correct hors", 12, h), SB_EAUTH);
    CHECK_EQ(sb_password_verify("", 0, h), SB_EAUTH);
    /* Fresh salt each time. */
    CHECK_EQ(sb_password_hash("correct horse", 13, 1000, h2, sizeof h2), 0);
    CHECK(strcmp(h, h2) != 0);
    CHECK_EQ(sb_password_verify("correct horse", 13, h2), 0);
    /* Malformed stored hashes are refused, not crashed on; silly iteration counts too. */
    static const char *const bad[] = {
        "", "plain", "pbkdf2-sha256$", "pbkdf2-sha256$x$a$b", "pbkdf2-sha256$210000$",
        "pbkdf2-sha256$210000$!!!$AAAA", "pbkdf2-sha256$999$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",
        "pbkdf2-sha256$99999999999$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",
        "scrypt$1$2$3",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ(sb_password_verify("x", 1, bad[i]), SB_EINVAL);
    sb_test_ok("passwords");
}

static void
test_keys(void)
{
    char k1[SB_AUTH_KEY_LEN + 1], k2[SB_AUTH_KEY_LEN + 1], hex[65];
    CHECK_EQ(sb_auth_token_make(SB_AUTH_KEY_PREFIX, k1), 0);
    CHECK_EQ(sb_auth_token_make(SB_AUTH_KEY_PREFIX, k2), 0);
    CHECK_EQ(strlen(k1), SB_AUTH_KEY_LEN);
    CHECK(strncmp(k1, "sbk_", 4) == 0);
    CHECK(strcmp(k1, k2) != 0);
    CHECK(sb_auth_token_ok(SB_AUTH_KEY_PREFIX, k1, strlen(k1)));
    CHECK(!sb_auth_token_ok(SB_AUTH_REFRESH_PREFIX, k1, strlen(k1)));
    CHECK(!sb_auth_token_ok(SB_AUTH_KEY_PREFIX, k1, strlen(k1) - 1));
    k2[10] = '+';
    CHECK(!sb_auth_token_ok(SB_AUTH_KEY_PREFIX, k2, strlen(k2)));
    /* sha256 as 64 lowercase hex (the storage record format). */
    sb_sha256_hex("abc", 3, hex);
    CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
    /* base64url round trip and refusals. */
    uint8_t raw[40], back[40];
    char enc[64];
    for (int i = 0; i < 40; i++)
        raw[i] = (uint8_t)(i * 37 + 250);
    for (size_t n = 0; n <= 40; n++) {
        size_t el = sb_base64url_encode(raw, n, enc);
        CHECK_EQ(sb_base64url_decode(enc, el, back, sizeof back), (int)n);
        CHECK(memcmp(raw, back, n) == 0);
    }
    CHECK_EQ(sb_base64url_decode("ab+/", 4, back, sizeof back), SB_EINVAL);
    CHECK_EQ(sb_base64url_decode("abcde", 5, back, sizeof back), SB_EINVAL);
    CHECK_EQ(sb_base64url_decode("AAAAAAAA", 8, back, 2), SB_ETOOBIG);
    /* roles and user names */
    CHECK_EQ(sb_role_parse("admin", 5), SB_ROLE_ADMIN);
    CHECK_EQ(sb_role_parse("viewer", 6), SB_ROLE_VIEWER);
    CHECK_EQ(sb_role_parse("Admin", 5), SB_ROLE_NONE);
    sb_principal_t p = {.role = SB_ROLE_USER};
    CHECK_EQ(sb_auth_require_role(&p, SB_ROLE_VIEWER), 0);
    CHECK_EQ(sb_auth_require_role(&p, SB_ROLE_USER), 0);
    CHECK_EQ(sb_auth_require_role(&p, SB_ROLE_ADMIN), SB_EPERM);
    CHECK_EQ(sb_auth_require_role(NULL, SB_ROLE_VIEWER), SB_EPERM);
    CHECK(sb_auth_username_ok("alice.b-c_1", 11));
    CHECK(!sb_auth_username_ok("", 0));
    CHECK(!sb_auth_username_ok("-x", 2));
    CHECK(!sb_auth_username_ok("a:b", 3));
    CHECK(!sb_auth_username_ok("a b", 3));
    sb_test_ok("keys_and_shapes");
}

static void
test_secret(void)
{
    sb_config_t cfg;
    char err[512], dir[256];
    uint8_t *s = NULL, *s2 = NULL;
    size_t n = 0, n2 = 0;
    memset(&cfg, 0, sizeof cfg);
    unsetenv("JWT_SECRET");
    snprintf(dir, sizeof dir, "%s/sbauth-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    CHECK(mkdtemp(dir));
    char sub[300];
    snprintf(sub, sizeof sub, "%s/data", dir);
    cfg.data_dir = sub;
    /* A configured secret under 64 bytes is refused, naming the minimum. */
    cfg.auth_jwt_secret = "too-short-secret";
    CHECK_EQ(sb_auth_secret_load(&cfg, &s, &n, err, sizeof err), SB_ECONFIG);
    CHECK(strstr(err, "64"));
    setenv("JWT_SECRET", "short", 1);
    cfg.auth_jwt_secret = "";
    CHECK_EQ(sb_auth_secret_load(&cfg, &s, &n, err, sizeof err), SB_ECONFIG);
    CHECK(strstr(err, "JWT_SECRET"));
    unsetenv("JWT_SECRET");
    cfg.auth_jwt_secret = (char *)SECRET;
    CHECK_EQ(sb_auth_secret_load(&cfg, &s, &n, err, sizeof err), 0);
    CHECK_EQ(n, SLEN);
    free(s);
    /* None configured: jwt.key is made (0600, 64 bytes) and the same one read back. */
    cfg.auth_jwt_secret = "";
    CHECK_EQ(sb_auth_secret_load(&cfg, &s, &n, err, sizeof err), 0);
    CHECK_EQ(n, 64);
    char path[400];
    snprintf(path, sizeof path, "%s/jwt.key", sub);
    struct stat st;
    CHECK(stat(path, &st) == 0);
    CHECK_EQ(st.st_mode & 0777, 0600);
    CHECK_EQ(sb_auth_secret_load(&cfg, &s2, &n2, err, sizeof err), 0);
    CHECK(n == n2 && memcmp(s, s2, n) == 0);
    free(s);
    free(s2);
    /* A truncated key file is refused, not padded. */
    FILE *f = fopen(path, "w");
    fputs("short", f);
    fclose(f);
    CHECK_EQ(sb_auth_secret_load(&cfg, &s, &n, err, sizeof err), SB_ECONFIG);
    unlink(path);
    rmdir(sub);
    rmdir(dir);
    sb_test_ok("jwt_secret");
}

int
main(void)
{
    NOW = (int64_t)time(NULL);
    test_jwt_roundtrip();
    test_jwt_refusals();
    test_passwords();
    test_keys();
    test_secret();
    return sb_test_done();
}
