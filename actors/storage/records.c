/*
 * records.c: the record kinds storage keeps and the validation every record passes before
 * either backend sees it.
 *
 * The field lists are the contract with the rest of SoulBox (gateway, scheduler, executor):
 * a record is one JSON object holding exactly these fields.  A record with an unknown field,
 * a wrong type, an oversized value or a missing required field is refused as a whole, so
 * nothing half-valid is ever stored.  API keys and users carry only hashes: key_hash must be a
 * sha256 in hex, which also keeps a raw key from being stored by mistake.
 *
 * The SQLite tables (sqlite.c migrations) have one column per field, named like the field.
 */
#include "store.h"

#include "base/err.h"
#include "base/str.h"

#include <stdio.h>
#include <string.h>

static const sb__field_t rec_user[] = {
    {"username", SB__F_STR, 64, SB__F_REQ | SB__F_PK | SB__F_ID},
    {"password_hash", SB__F_STR, 256, SB__F_REQ},
    {"role", SB__F_STR, 16, SB__F_REQ | SB__F_ROLE},
    {"created", SB__F_INT, 0, SB__F_CREATED},
    {"updated", SB__F_INT, 0, 0},
    {"disabled", SB__F_INT, 0, 0},
};

static const sb__field_t rec_api_key[] = {
    {"id", SB__F_STR, 64, SB__F_REQ | SB__F_PK | SB__F_ID},
    {"key_hash", SB__F_STR, 64, SB__F_REQ | SB__F_UNIQUE | SB__F_SHA256},
    {"owner", SB__F_STR, 128, SB__F_REQ | SB__F_OWNER | SB__F_ID},
    {"role", SB__F_STR, 16, SB__F_REQ | SB__F_ROLE},
    {"name", SB__F_STR, 128, 0},
    {"created", SB__F_INT, 0, SB__F_CREATED},
    {"revoked", SB__F_INT, 0, 0}, /* ms when revoked; absent or 0: active */
    {"expires", SB__F_INT, 0, 0},
    {"last_used", SB__F_INT, 0, 0},
};

static const sb__field_t rec_sandbox[] = {
    {"id", SB__F_STR, 128, SB__F_REQ | SB__F_PK | SB__F_ID},
    {"owner", SB__F_STR, 128, SB__F_REQ | SB__F_OWNER | SB__F_ID},
    {"runtime", SB__F_STR, 64, SB__F_REQ},
    {"state", SB__F_STR, 32, SB__F_REQ | SB__F_STATE},
    {"limits", SB__F_JSON, 8192, 0},
    {"node", SB__F_STR, 128, 0},
    {"created", SB__F_INT, 0, SB__F_CREATED},
    {"ended", SB__F_INT, 0, 0},
    {"end_reason", SB__F_STR, 64, 0},
    {"metadata", SB__F_JSON, 16384, 0}, /* schema v2 */
};

static const sb__field_t rec_execution[] = {
    {"id", SB__F_STR, 128, SB__F_REQ | SB__F_PK | SB__F_ID},
    {"owner", SB__F_STR, 128, SB__F_REQ | SB__F_OWNER | SB__F_ID},
    {"runtime", SB__F_STR, 64, SB__F_REQ},
    {"code_sha256", SB__F_STR, 64, SB__F_REQ | SB__F_SHA256},
    {"status", SB__F_STR, 32, SB__F_REQ | SB__F_STATE},
    {"exit_code", SB__F_INT, 0, SB__F_SIGNED},
    {"sandbox_id", SB__F_STR, 128, 0},
    {"created", SB__F_INT, 0, SB__F_CREATED},
    {"started", SB__F_INT, 0, 0},
    {"ended", SB__F_INT, 0, 0},
    {"wall_ms", SB__F_INT, 0, 0},
    {"cpu_ms", SB__F_INT, 0, 0},
    {"memory_peak", SB__F_INT, 0, 0},
};

static const sb__field_t rec_session[] = {
    {"id", SB__F_STR, 128, SB__F_REQ | SB__F_PK | SB__F_ID},
    {"owner", SB__F_STR, 128, SB__F_REQ | SB__F_OWNER | SB__F_ID},
    {"sandbox_id", SB__F_STR, 128, 0},
    {"created", SB__F_INT, 0, SB__F_CREATED},
    {"last_seen", SB__F_INT, 0, 0},
    {"expires", SB__F_INT, 0, 0},
};

#define REC_KIND(name, table, arr, pk, owner, state, created)                                      \
    {name, table, arr, sizeof arr / sizeof arr[0], pk, owner, state, created}

static const sb__kind_t rec_kinds[] = {
    REC_KIND("user", "users", rec_user, 0, -1, -1, 3),
    REC_KIND("api_key", "api_keys", rec_api_key, 0, 2, -1, 5),
    REC_KIND("sandbox", "sandboxes", rec_sandbox, 0, 1, 3, 6),
    REC_KIND("execution", "executions", rec_execution, 0, 1, 4, 7),
    REC_KIND("session", "sessions", rec_session, 0, 1, -1, 3),
};

const sb__kind_t *
sb__kind_find(sb_str_t name)
{
    for (size_t i = 0; i < sizeof rec_kinds / sizeof rec_kinds[0]; i++)
        if (sb_str_eq(name, rec_kinds[i].kind))
            return &rec_kinds[i];
    return NULL;
}

int
sb__kind_field(const sb__kind_t *k, sb_str_t name)
{
    for (size_t i = 0; i < k->nf; i++)
        if (sb_str_eq(name, k->f[i].name))
            return (int)i;
    return -1;
}

int
sb__id_ok(sb_str_t s, size_t max)
{
    if (s.len == 0 || s.len > max)
        return 0;
    for (uint32_t i = 0; i < s.len; i++)
        if ((unsigned char)s.ptr[i] <= 0x20 || (unsigned char)s.ptr[i] >= 0x7f)
            return 0;
    return 1;
}

static int
rec_hex64(const char *s, size_t n)
{
    if (n != 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

static int
rec_check_field(const sb__field_t *f, json_t *v, char *err, size_t errcap)
{
    switch (f->type) {
    case SB__F_STR: {
        if (!json_is_string(v)) {
            snprintf(err, errcap, "field '%s' must be a string", f->name);
            return SB_EINVAL;
        }
        sb_str_t s = {json_string_value(v), (uint32_t)json_string_length(v)};
        if (s.len > f->max) {
            snprintf(err, errcap, "field '%s' is longer than %u bytes", f->name, f->max);
            return SB_EINVAL;
        }
        if ((f->flags & (SB__F_ID | SB__F_PK)) && !sb__id_ok(s, f->max)) {
            snprintf(err, errcap, "field '%s' must be 1-%u printable characters without spaces",
                     f->name, f->max);
            return SB_EINVAL;
        }
        if ((f->flags & SB__F_REQ) && s.len == 0) {
            snprintf(err, errcap, "field '%s' must not be empty", f->name);
            return SB_EINVAL;
        }
        if ((f->flags & SB__F_SHA256) && !rec_hex64(s.ptr, s.len)) {
            snprintf(err, errcap, "field '%s' must be a sha256 as 64 lowercase hex digits",
                     f->name);
            return SB_EINVAL;
        }
        if ((f->flags & SB__F_ROLE) && !sb_str_eq(s, "admin") && !sb_str_eq(s, "user") &&
            !sb_str_eq(s, "viewer")) {
            snprintf(err, errcap, "field '%s' must be admin, user or viewer", f->name);
            return SB_EINVAL;
        }
        return 0;
    }
    case SB__F_INT:
        if (!json_is_integer(v)) {
            snprintf(err, errcap, "field '%s' must be an integer", f->name);
            return SB_EINVAL;
        }
        if (!(f->flags & SB__F_SIGNED) && json_integer_value(v) < 0) {
            snprintf(err, errcap, "field '%s' must not be negative", f->name);
            return SB_EINVAL;
        }
        return 0;
    default: { /* SB__F_JSON: an object, bounded in size */
        if (!json_is_object(v)) {
            snprintf(err, errcap, "field '%s' must be a JSON object", f->name);
            return SB_EINVAL;
        }
        size_t n = json_dumpb(v, NULL, 0, SB__JSON_FLAGS);
        if (n > f->max) {
            snprintf(err, errcap, "field '%s' is larger than %u bytes", f->name, f->max);
            return SB_EINVAL;
        }
        return 0;
    }
    }
}

int
sb__record_check(const sb__kind_t *k, sb_str_t text, size_t max_bytes, json_t **out, char *err,
                 size_t errcap)
{
    json_error_t je;
    const char *key;
    json_t *v;
    int r;

    if (text.len > max_bytes) {
        snprintf(err, errcap, "%s record of %u bytes is over the %zu-byte limit", k->kind,
                 text.len, max_bytes);
        return SB_ETOOBIG;
    }
    /* Duplicate keys are refused: two values for one field make "which one counts" ambiguous. */
    json_t *doc = json_loadb(text.ptr, text.len, JSON_REJECT_DUPLICATES, &je);
    if (!doc) {
        snprintf(err, errcap, "%s record is not valid JSON: %s (at byte %d)", k->kind, je.text,
                 je.position);
        return SB_EBADMSG;
    }
    if (!json_is_object(doc)) {
        snprintf(err, errcap, "%s record must be a JSON object", k->kind);
        json_decref(doc);
        return SB_EBADMSG;
    }
    json_object_foreach(doc, key, v) {
        int i = sb__kind_field(k, sb_str(key));
        if (i < 0) {
            snprintf(err, errcap, "%s record has an unknown field '%.64s'", k->kind, key);
            json_decref(doc);
            return SB_EINVAL;
        }
        if (json_is_null(v))
            continue; /* null = absent */
        if ((r = rec_check_field(&k->f[i], v, err, errcap)) != 0) {
            json_decref(doc);
            return r;
        }
    }
    for (size_t i = 0; i < k->nf; i++) {
        json_t *fv = json_object_get(doc, k->f[i].name);
        if ((k->f[i].flags & SB__F_REQ) && (!fv || json_is_null(fv))) {
            snprintf(err, errcap, "%s record lacks the required field '%s'", k->kind,
                     k->f[i].name);
            json_decref(doc);
            return SB_EINVAL;
        }
        if (fv && json_is_null(fv))
            json_object_del(doc, k->f[i].name);
    }
    *out = doc;
    return 0;
}
