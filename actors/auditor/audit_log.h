/*
 * audit_log.h: internal to actors/auditor -- the on-disk format of the audit trail, shared by
 * the actor (writing) and `soulbox audit` (verifying, tailing).
 *
 * Files in the data directory:
 *   audit.key   64 hex digits (a 256-bit HMAC key) + newline; mode 0600; made at first start.
 *   audit.log   one JSON object per line, in seq order:
 *                 {"seq":1,"ts":"2026-11-22T20:40:01.123Z","ts_ms":...,"actor":"gateway",
 *                  "principal":"alice","type":"login.success","fields":{...},
 *                  "prev_mac":"<hex>","mac":"<hex>"}
 *               mac = HMAC-SHA256(key, the line's bytes up to prev_mac's closing quote, then
 *               "}") -- i.e. the record without its mac field, exactly as written; prev_mac is
 *               the previous record's mac (64 zeros for seq 1).  Editing any byte breaks the
 *               record's mac; deleting, inserting or reordering breaks seq or the chain.
 *   audit.head  "<seq, 20 digits> <mac>\n": the last record written, rewritten in place after
 *               every batch, so deleting records from the END of the log is detected too.
 */
#ifndef SB_AUDITOR_AUDIT_LOG_H
#define SB_AUDITOR_AUDIT_LOG_H

#include "base/buf.h"

#include <stddef.h>
#include <stdint.h>

#define SB__AUDIT_KEY_LEN 32
#define SB__AUDIT_HEX 64
#define SB__AUDIT_HEAD_LEN (20 + 1 + SB__AUDIT_HEX + 1)
#define SB__AUDIT_MAC_TAIL 74 /* strlen(",\"mac\":\"") + 64 + strlen("\"}") */

/* sb__audit_key loads dir/audit.key, creating it (0600, fsync'd) if create and it is absent.
 * Refuses a key file readable by group or others (SB_EPERM).  0, SB_ENOTFOUND, SB_EIO. */
int sb__audit_key(const char *dir, int create, uint8_t key[SB__AUDIT_KEY_LEN], char *err,
                  size_t errcap);
/* sb__audit_mac writes the hex HMAC-SHA256 of p[n] (65 bytes with NUL). */
void sb__audit_mac(const uint8_t key[SB__AUDIT_KEY_LEN], const void *p, size_t n, char *hex);
/* sb__audit_line appends one complete record line (with '\n') to out and its mac to mac_out.
 * fields_json: a JSON object's text, or NULL for {}.  SB_EINVAL if it is not an object. */
int sb__audit_line(sb_buf_t *out, const uint8_t key[SB__AUDIT_KEY_LEN], uint64_t seq,
                   uint64_t ts_ms, const char *actor, const char *principal, const char *type,
                   const char *fields_json, size_t fields_len, const char *prev_mac,
                   char *mac_out);
/* sb__audit_split checks a line's shape (without '\n') and finds the signed part: the body
 * is line[0..*body_len) followed by '}', the mac the 64 hex digits at *mac.  0 or -1. */
int sb__audit_split(const char *line, size_t len, size_t *body_len, const char **mac);

typedef struct {
    uint64_t records;   /* complete records read */
    uint64_t last_seq;
    char last_mac[SB__AUDIT_HEX + 1];
    uint64_t bad_line;  /* 0: intact */
    char reason[512];
    int partial_tail;   /* the last line has no newline (a write cut by a crash) */
} sb__audit_report_t;

/* sb__audit_verify checks dir's audit.log against audit.key and audit.head.  Returns 0 intact,
 * 1 tampered (bad_line and reason say where and why; bad_line may be records+1 for "the end"),
 * or a negative SB_E* if the files cannot be read (reason says which). */
int sb__audit_verify(const char *dir, sb__audit_report_t *rep);

#endif
