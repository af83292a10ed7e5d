/*
 * msg.h: the bus envelope and the batch that carries envelopes between threads and hosts.
 *
 * One NNG message is a batch: a 24-byte header, then frames, then (across hosts) a 32-byte
 * HMAC-SHA256 trailer.  Batching is how the bus reaches tens of thousands of messages per
 * second on a VM where each cross-thread wake-up costs tens of microseconds: everything an
 * actor sends to one peer during one loop iteration travels in one NNG message.
 *
 *   batch header  0 'S' 'B'  2 version=1  3 flags (SB_BATCH_AUTH)  4 u32 count
 *                 8 u64 src_node  16 u64 sent_ms (realtime, for the replay window)
 *   frame         0 u32 body_len  4 u16 type  6 u8 flags  7 u8 src_actor  8 u8 dst_actor
 *                 9 u8 schema version  10 u16 reserved  12 u64 corr  20 u64 deadline_ms
 *                 28 u64 dst_node  36 body (msgpack, see protocols/)
 *
 * All integers little-endian.  Decoding treats every byte as hostile: lengths are checked
 * against the batch and against SB_MSG_MAX_BODY before anything is used.
 */
#ifndef SB_MSG_H
#define SB_MSG_H

#include "base/buf.h"

#include <stdint.h>

#define SB_BATCH_HDR 24
#define SB_FRAME_HDR 36
#define SB_BATCH_MAC 32
#define SB_MSG_MAX_BODY (4u << 20)  /* one message body */
#define SB_BATCH_MAX (16u << 20)    /* one NNG message on the wire */
#define SB_BATCH_AUTH 0x01

/* Message flags. */
enum {
    SB_MF_REQ = 0x01,    /* expects a reply with the same corr */
    SB_MF_REPLY = 0x02,  /* answers a request */
    SB_MF_STREAM = 0x04, /* a stream chunk: more replies follow */
    SB_MF_FINAL = 0x08,  /* last reply of a stream (a plain reply is final by itself) */
    SB_MF_ERROR = 0x10,  /* the body is an sb_error message */
};

/* Actor kinds: the address space of the bus.  Append-only. */
typedef enum {
    SB_ACTOR_NONE = 0, /* the bus itself (HELLO) */
    SB_ACTOR_GATEWAY = 1,
    SB_ACTOR_SCHEDULER = 2,
    SB_ACTOR_POOL = 3,
    SB_ACTOR_EXECUTOR = 4,
    SB_ACTOR_MONITOR = 5,
    SB_ACTOR_AUDITOR = 6,
    SB_ACTOR_STORAGE = 7,
    SB_ACTOR_CLIENT = 8, /* tests, benchmarks and CLI tools that talk to the bus */
    SB_ACTOR_KINDS = 9,
} sb_actor_kind_t;

const char *sb_actor_kind_name(int kind);
/* sb_actor_kind_parse returns the kind for "gateway".."storage", or -1. */
int sb_actor_kind_parse(const char *name, size_t len);

/* A received message: a view into the batch that carried it, valid while it is handled. */
typedef struct {
    uint16_t type;
    uint8_t flags;
    uint8_t src_actor;
    uint8_t dst_actor;
    uint8_t version;
    uint64_t src_node;
    uint64_t dst_node;
    uint64_t corr;
    uint64_t deadline_ms; /* realtime ms; 0 = none */
    const uint8_t *body;
    uint32_t body_len;
} sb_msg_t;

/* sb_batch_begin starts a batch in b (reset first). */
int sb_batch_begin(sb_buf_t *b, uint64_t src_node);
/* sb_batch_add appends one frame; SB_ETOOBIG if body_len > SB_MSG_MAX_BODY or the batch is full.
 * On failure the batch is unchanged. */
int sb_batch_add(sb_buf_t *b, const sb_msg_t *m);
/* sb_batch_count returns how many frames b holds. */
uint32_t sb_batch_count(const sb_buf_t *b);
/* sb_batch_seal stamps sent_ms and, with a key, appends the HMAC trailer. */
int sb_batch_seal(sb_buf_t *b, const uint8_t *key, size_t keylen);

/* A cursor over a received batch. */
typedef struct {
    const uint8_t *p, *end;
    uint32_t left;
    uint64_t src_node;
    uint64_t sent_ms;
    uint8_t flags;
} sb_batch_iter_t;

/* sb_batch_open checks the header (and, with a key, the HMAC trailer and that sent_ms lies
 * within max_skew_ms of now) and readies it.  SB_EBADMSG / SB_EAUTH on failure. */
int sb_batch_open(sb_batch_iter_t *it, const uint8_t *data, size_t len, const uint8_t *key,
                  size_t keylen, uint64_t max_skew_ms);
/* sb_batch_next yields the next frame: 1 with *m filled, 0 at the end, SB_EBADMSG if a frame
 * is truncated or oversized (the rest of the batch must then be dropped). */
int sb_batch_next(sb_batch_iter_t *it, sb_msg_t *m);

#endif
