/*
 * msg.c: batch framing.  Writers append frames into one buffer; readers walk them with
 * bounds checks on every length.  The HMAC trailer (OpenSSL HMAC-SHA256) covers header and
 * frames; it is compared in constant time.
 */
#include "msg.h"

#include "base/err.h"
#include "base/clock.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <strings.h>

static const char *const msg_kind_names[SB_ACTOR_KINDS] = {
    "bus", "gateway", "scheduler", "pool", "executor", "monitor", "auditor", "storage", "client",
};

const char *
sb_actor_kind_name(int kind)
{
    return kind >= 0 && kind < SB_ACTOR_KINDS ? msg_kind_names[kind] : "?";
}

int
sb_actor_kind_parse(const char *name, size_t len)
{
    for (int k = 1; k < SB_ACTOR_KINDS; k++)
        if (strlen(msg_kind_names[k]) == len && strncasecmp(msg_kind_names[k], name, len) == 0)
            return k;
    return -1;
}

int
sb_batch_begin(sb_buf_t *b, uint64_t src_node)
{
    uint8_t h[SB_BATCH_HDR] = {'S', 'B', 1, 0};
    sb_put_u64(h + 8, src_node);
    sb_buf_reset(b);
    return sb_buf_append(b, h, sizeof h);
}

uint32_t
sb_batch_count(const sb_buf_t *b)
{
    return b->len >= SB_BATCH_HDR ? sb_get_u32(b->data + 4) : 0;
}

int
sb_batch_add(sb_buf_t *b, const sb_msg_t *m)
{
    uint8_t f[SB_FRAME_HDR];
    if (m->body_len > SB_MSG_MAX_BODY || b->len < SB_BATCH_HDR)
        return SB_ETOOBIG;
    if (b->len + SB_FRAME_HDR + m->body_len + SB_BATCH_MAC > SB_BATCH_MAX)
        return SB_ETOOBIG;
    sb_put_u32(f, m->body_len);
    sb_put_u16(f + 4, m->type);
    f[6] = m->flags;
    f[7] = m->src_actor;
    f[8] = m->dst_actor;
    f[9] = m->version;
    sb_put_u16(f + 10, 0);
    sb_put_u64(f + 12, m->corr);
    sb_put_u64(f + 20, m->deadline_ms);
    sb_put_u64(f + 28, m->dst_node);
    int r = sb_buf_reserve(b, SB_FRAME_HDR + (size_t)m->body_len);
    if (r)
        return r;
    sb_buf_append(b, f, sizeof f);
    sb_buf_append(b, m->body, m->body_len);
    sb_put_u32(b->data + 4, sb_get_u32(b->data + 4) + 1);
    return 0;
}

static void
msg_mac(const uint8_t *key, size_t keylen, const uint8_t *data, size_t len, uint8_t out[32])
{
    unsigned int n = 32;
    HMAC(EVP_sha256(), key, (int)keylen, data, len, out, &n);
}

int
sb_batch_seal(sb_buf_t *b, const uint8_t *key, size_t keylen)
{
    uint8_t mac[SB_BATCH_MAC];
    sb_put_u64(b->data + 16, sb_now_real_ms());
    if (!key)
        return 0;
    b->data[3] |= SB_BATCH_AUTH;
    msg_mac(key, keylen, b->data, b->len, mac);
    return sb_buf_append(b, mac, sizeof mac);
}

int
sb_batch_open(sb_batch_iter_t *it, const uint8_t *data, size_t len, const uint8_t *key,
              size_t keylen, uint64_t max_skew_ms)
{
    if (len < SB_BATCH_HDR || data[0] != 'S' || data[1] != 'B' || data[2] != 1)
        return SB_EBADMSG;
    it->flags = data[3];
    if (key) {
        uint8_t mac[SB_BATCH_MAC];
        if (!(it->flags & SB_BATCH_AUTH) || len < SB_BATCH_HDR + SB_BATCH_MAC)
            return SB_EAUTH;
        len -= SB_BATCH_MAC;
        msg_mac(key, keylen, data, len, mac);
        if (CRYPTO_memcmp(mac, data + len, SB_BATCH_MAC) != 0)
            return SB_EAUTH;
        uint64_t sent = sb_get_u64(data + 16), now = sb_now_real_ms();
        if ((sent > now ? sent - now : now - sent) > max_skew_ms)
            return SB_EAUTH;
    } else if (it->flags & SB_BATCH_AUTH) {
        if (len < SB_BATCH_HDR + SB_BATCH_MAC)
            return SB_EBADMSG;
        len -= SB_BATCH_MAC;
    }
    it->left = sb_get_u32(data + 4);
    it->src_node = sb_get_u64(data + 8);
    it->sent_ms = sb_get_u64(data + 16);
    it->p = data + SB_BATCH_HDR;
    it->end = data + len;
    return 0;
}

int
sb_batch_next(sb_batch_iter_t *it, sb_msg_t *m)
{
    if (it->left == 0)
        return it->p == it->end ? 0 : SB_EBADMSG;
    if ((size_t)(it->end - it->p) < SB_FRAME_HDR)
        return SB_EBADMSG;
    const uint8_t *f = it->p;
    uint32_t blen = sb_get_u32(f);
    if (blen > SB_MSG_MAX_BODY || (size_t)(it->end - it->p) - SB_FRAME_HDR < blen)
        return SB_EBADMSG;
    m->body_len = blen;
    m->type = sb_get_u16(f + 4);
    m->flags = f[6];
    m->src_actor = f[7];
    m->dst_actor = f[8];
    m->version = f[9];
    m->corr = sb_get_u64(f + 12);
    m->deadline_ms = sb_get_u64(f + 20);
    m->dst_node = sb_get_u64(f + 28);
    m->src_node = it->src_node;
    m->body = f + SB_FRAME_HDR;
    it->p += SB_FRAME_HDR + blen;
    it->left--;
    return 1;
}
