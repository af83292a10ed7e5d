/*
 * audit_log.c: the audit trail's file format (see audit_log.h): key handling, record lines
 * and their MACs, and the verifier behind `soulbox audit verify`.
 *
 * The MAC covers the exact bytes written rather than a re-serialisation, so verification
 * never depends on how a JSON library orders keys or formats numbers: the verifier cuts the
 * mac field off the line it read and recomputes the HMAC over what is left.
 */
#include "audit_log.h"

#include "base/err.h"
#include "base/hex.h"
#include "base/id.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char audit_zero_mac[] =
    "0000000000000000000000000000000000000000000000000000000000000000";

static int
audit_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int r = fsync(fd);
    close(fd);
    return r;
}

int
sb__audit_key(const char *dir, int create, uint8_t key[SB__AUDIT_KEY_LEN], char *err,
              size_t errcap)
{
    char path[PATH_MAX], text[SB__AUDIT_HEX + 2];
    struct stat st;
    int fd;

    snprintf(path, sizeof path, "%s/audit.key", dir);
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT && create) {
        uint8_t k[SB__AUDIT_KEY_LEN];
        if (sb_random_bytes(k, sizeof k) != 0) {
            snprintf(err, errcap, "no randomness for a new audit key");
            return SB_EIO;
        }
        sb_hex_encode(k, sizeof k, text);
        text[SB__AUDIT_HEX] = '\n';
        /* O_EXCL: two processes starting at once never both write a key. */
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) {
            snprintf(err, errcap, "cannot create %s: %s", path, strerror(errno));
            return SB_EIO;
        }
        if (write(fd, text, SB__AUDIT_HEX + 1) != SB__AUDIT_HEX + 1 || fsync(fd) != 0) {
            snprintf(err, errcap, "cannot write %s: %s", path, strerror(errno));
            close(fd);
            unlink(path);
            return SB_EIO;
        }
        close(fd);
        audit_fsync_dir(dir);
        memcpy(key, k, sizeof k);
        return 0;
    }
    if (fd < 0) {
        snprintf(err, errcap, "cannot open %.400s: %s", path, strerror(errno));
        return errno == ENOENT ? SB_ENOTFOUND : SB_EIO;
    }
    if (fstat(fd, &st) == 0 && (st.st_mode & 077)) {
        snprintf(err, errcap, "%s is readable by others (mode %o): chmod 600 it", path,
                 (unsigned)(st.st_mode & 0777));
        close(fd);
        return SB_EPERM;
    }
    ssize_t n = read(fd, text, sizeof text);
    close(fd);
    if (n < SB__AUDIT_HEX || sb_hex_decode(text, key, SB__AUDIT_KEY_LEN) != 0) {
        snprintf(err, errcap, "%s is not a 64-hex-digit key", path);
        return SB_EIO;
    }
    return 0;
}

void
sb__audit_mac(const uint8_t key[SB__AUDIT_KEY_LEN], const void *p, size_t n, char *hex)
{
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), key, SB__AUDIT_KEY_LEN, p, n, mac, &len);
    sb_hex_encode(mac, len, hex);
}

int
sb__audit_line(sb_buf_t *out, const uint8_t key[SB__AUDIT_KEY_LEN], uint64_t seq,
               uint64_t ts_ms, const char *actor, const char *principal, const char *type,
               const char *fields_json, size_t fields_len, const char *prev_mac, char *mac_out)
{
    json_t *fields = fields_json && fields_len ? json_loadb(fields_json, fields_len,
                                                            JSON_REJECT_DUPLICATES, NULL)
                                               : json_object();
    char ts[80];
    struct tm tm;
    time_t secs = (time_t)(ts_ms / 1000);

    if (!fields || !json_is_object(fields)) {
        json_decref(fields);
        return SB_EINVAL;
    }
    gmtime_r(&secs, &tm);
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ts_ms % 1000));
    json_t *rec = json_pack("{s:I,s:s,s:I,s:s,s:s,s:s,s:o,s:s}", "seq", (json_int_t)seq, "ts",
                            ts, "ts_ms", (json_int_t)ts_ms, "actor", actor, "principal",
                            principal, "type", type, "fields", fields, "prev_mac", prev_mac);
    if (!rec)
        return SB_EINVAL;
    char *body = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(rec);
    if (!body)
        return SB_EINVAL;
    size_t n = strlen(body);
    SB_ASSERT(n > 2 && body[n - 1] == '}');
    sb__audit_mac(key, body, n, mac_out);
    size_t before = out->len;
    int r = sb_buf_append(out, body, n - 1);
    if (!r)
        r = sb_buf_appendf(out, ",\"mac\":\"%s\"}\n", mac_out);
    if (r)
        out->len = before;
    free(body);
    return r;
}

int
sb__audit_split(const char *line, size_t len, size_t *body_len, const char **mac)
{
    if (len < SB__AUDIT_MAC_TAIL + 2 || line[0] != '{' || line[len - 1] != '}' ||
        line[len - 2] != '"' || memcmp(line + len - SB__AUDIT_MAC_TAIL, ",\"mac\":\"", 8) != 0)
        return -1;
    *body_len = len - SB__AUDIT_MAC_TAIL;
    *mac = line + len - SB__AUDIT_MAC_TAIL + 8;
    for (int i = 0; i < SB__AUDIT_HEX; i++)
        if (!((*mac)[i] >= '0' && (*mac)[i] <= '9') && !((*mac)[i] >= 'a' && (*mac)[i] <= 'f'))
            return -1;
    return 0;
}

/* audit_check_line verifies one line's mac and reads its seq and prev_mac.  0 or -1 (reason). */
static int
audit_check_line(const uint8_t *key, char *line, size_t len, uint64_t *seq, char *prev,
                 char *mac, char *reason, size_t cap)
{
    size_t blen;
    const char *m;
    char want[SB__AUDIT_HEX + 1];

    if (sb__audit_split(line, len, &blen, &m) != 0) {
        snprintf(reason, cap, "not an audit record (malformed or without a mac): edited");
        return -1;
    }
    memcpy(mac, m, SB__AUDIT_HEX);
    mac[SB__AUDIT_HEX] = 0;
    /* The signed bytes: the body and a closing brace in place of the mac field. */
    char saved = line[blen];
    line[blen] = '}';
    sb__audit_mac(key, line, blen + 1, want);
    json_t *o = json_loadb(line, blen + 1, 0, NULL);
    line[blen] = saved;
    if (CRYPTO_memcmp(want, mac, SB__AUDIT_HEX) != 0) {
        json_decref(o);
        snprintf(reason, cap, "MAC mismatch: the record was edited or forged");
        return -1;
    }
    json_t *js = json_object_get(o, "seq"), *jp = json_object_get(o, "prev_mac");
    if (!json_is_integer(js) || !json_is_string(jp) || json_string_length(jp) != SB__AUDIT_HEX) {
        json_decref(o);
        snprintf(reason, cap, "record lacks seq or prev_mac");
        return -1;
    }
    *seq = (uint64_t)json_integer_value(js);
    memcpy(prev, json_string_value(jp), SB__AUDIT_HEX + 1);
    json_decref(o);
    return 0;
}

/* audit_find_seq: does a record with this seq (and a valid mac) appear later in f? */
static uint64_t
audit_find_seq(FILE *f, const uint8_t *key, uint64_t want, uint64_t lineno)
{
    char *line = NULL, prev[SB__AUDIT_HEX + 1], mac[SB__AUDIT_HEX + 1], why[64];
    size_t cap = 0;
    ssize_t n;
    uint64_t seq, found = 0;
    while ((n = getline(&line, &cap, f)) > 0) {
        lineno++;
        if (line[n - 1] == '\n')
            line[--n] = 0;
        if (audit_check_line(key, line, (size_t)n, &seq, prev, mac, why, sizeof why) == 0 &&
            seq == want) {
            found = lineno;
            break;
        }
    }
    free(line);
    return found;
}

int
sb__audit_verify(const char *dir, sb__audit_report_t *rep)
{
    uint8_t key[SB__AUDIT_KEY_LEN];
    char path[PATH_MAX], prev_mac[SB__AUDIT_HEX + 1], mac[SB__AUDIT_HEX + 1];
    char head_mac[SB__AUDIT_HEX + 1] = "", head_text[SB__AUDIT_HEAD_LEN + 1];
    uint64_t head_seq = 0, seq, lineno = 0;
    int have_head = 0, head_checked = 0, r;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    FILE *f;

    memset(rep, 0, sizeof *rep);
    strcpy(rep->last_mac, audit_zero_mac);
    if ((r = sb__audit_key(dir, 0, key, rep->reason, sizeof rep->reason)) != 0)
        return r;
    snprintf(path, sizeof path, "%s/audit.head", dir);
    if ((f = fopen(path, "re"))) {
        size_t got = fread(head_text, 1, SB__AUDIT_HEAD_LEN, f);
        fclose(f);
        head_text[got] = 0;
        if (got == SB__AUDIT_HEAD_LEN && sscanf(head_text, "%20" SCNu64 " %64s", &head_seq,
                                                head_mac) == 2)
            have_head = 1;
    }
    snprintf(path, sizeof path, "%s/audit.log", dir);
    if (!(f = fopen(path, "re"))) {
        if (errno == ENOENT && have_head && head_seq > 0) {
            rep->bad_line = 1;
            snprintf(rep->reason, sizeof rep->reason, "audit.log is missing but audit.head "
                     "records %" PRIu64 " records: the log was deleted", head_seq);
            return 1;
        }
        snprintf(rep->reason, sizeof rep->reason, "cannot open %.400s: %s", path, strerror(errno));
        return errno == ENOENT ? SB_ENOTFOUND : SB_EIO;
    }
    strcpy(prev_mac, audit_zero_mac);
    while ((n = getline(&line, &cap, f)) > 0) {
        lineno++;
        if (line[n - 1] != '\n') {
            /* A write cut short by a crash is never acknowledged; the auditor drops it at
             * its next start.  It is not evidence of tampering by itself. */
            rep->partial_tail = 1;
            break;
        }
        line[--n] = 0;
        char prev[SB__AUDIT_HEX + 1];
        if (audit_check_line(key, line, (size_t)n, &seq, prev, mac, rep->reason,
                             sizeof rep->reason) != 0)
            goto tampered;
        uint64_t expect = rep->last_seq + 1;
        if (seq > expect) {
            uint64_t at = audit_find_seq(f, key, expect, lineno);
            if (at)
                snprintf(rep->reason, sizeof rep->reason, "out of order: seq %" PRIu64 " where "
                         "%" PRIu64 " belongs (that record is at line %" PRIu64 "): reordered",
                         seq, expect, at);
            else
                snprintf(rep->reason, sizeof rep->reason, "seq jumps from %" PRIu64 " to %"
                         PRIu64 ": %" PRIu64 " record(s) deleted before this line",
                         rep->last_seq, seq, seq - expect);
            goto tampered;
        }
        if (seq < expect) {
            snprintf(rep->reason, sizeof rep->reason, "seq %" PRIu64 " after %" PRIu64 ": record "
                     "inserted (a copy or replay of an earlier one) or reordered", seq,
                     rep->last_seq);
            goto tampered;
        }
        if (strcmp(prev, prev_mac) != 0) {
            snprintf(rep->reason, sizeof rep->reason, "chain broken: prev_mac does not match "
                     "the previous record's mac (record inserted, deleted or reordered)");
            goto tampered;
        }
        if (have_head && seq == head_seq) {
            head_checked = 1;
            if (strcmp(mac, head_mac) != 0) {
                snprintf(rep->reason, sizeof rep->reason, "audit.head names a different record "
                         "%" PRIu64 ": the log was rewritten", seq);
                goto tampered;
            }
        }
        memcpy(prev_mac, mac, sizeof mac);
        rep->last_seq = seq;
        rep->records++;
    }
    free(line);
    fclose(f);
    memcpy(rep->last_mac, prev_mac, sizeof prev_mac);
    if (!have_head && rep->records > 0) {
        rep->bad_line = rep->records + 1;
        snprintf(rep->reason, sizeof rep->reason, "audit.head is missing or malformed: the end "
                 "of the log cannot be vouched for");
        return 1;
    }
    if (have_head && head_seq > rep->last_seq) {
        rep->bad_line = lineno + 1 - (uint64_t)rep->partial_tail;
        snprintf(rep->reason, sizeof rep->reason, "the log ends at seq %" PRIu64 " but audit.head "
                 "records seq %" PRIu64 ": %" PRIu64 " record(s) deleted from the end",
                 rep->last_seq, head_seq, head_seq - rep->last_seq);
        return 1;
    }
    (void)head_checked;
    return 0;

tampered:
    rep->bad_line = lineno;
    free(line);
    fclose(f);
    return 1;
}
