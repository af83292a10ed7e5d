/*
 * codec.h: the generic table-driven codec behind every message.  A body is a msgpack map from
 * field number to value.  Encoding skips zero values (they decode as the default anyway).
 * Decoding checks each known field's msgpack type and size cap and ignores unknown fields.
 * Thread-safe (pure functions over constant tables).
 */
#ifndef SB_CODEC_H
#define SB_CODEC_H

#include "base/buf.h"
#include "base/str.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Field kinds.  STR, BIN, RAW and PATH (a STR without NUL bytes: file names) decode to
 * views (sb_str_t) and carry a size cap. */
typedef enum {
    SB_FK_U64, SB_FK_I64, SB_FK_BOOL, SB_FK_F64, SB_FK_STR, SB_FK_BIN, SB_FK_RAW, SB_FK_PATH,
} sb_fkind_t;

/* The C type of each kind, for structs derived from the registries (msgs.h, frame.h). */
#define SB__CTYPE_U64 uint64_t
#define SB__CTYPE_I64 int64_t
#define SB__CTYPE_BOOL bool
#define SB__CTYPE_F64 double
#define SB__CTYPE_STR sb_str_t
#define SB__CTYPE_BIN sb_str_t
#define SB__CTYPE_RAW sb_str_t
#define SB__CTYPE_PATH sb_str_t
#define SB__STRUCT_FIELD(T, no, kind, fname, max) SB__CTYPE_##kind fname;
/* One descriptor line per field (X carries the struct type into each line). */
#define SB__FIELD_DESC(T, no, kind, fname, max)                                                    \
    {(no), SB_FK_##kind, (max), (uint32_t)offsetof(T, fname), #fname},

typedef struct {
    uint16_t no;
    uint8_t kind;
    uint32_t max; /* bytes, for STR/BIN/RAW */
    uint32_t offset;
    const char *name;
} sb_field_t;

typedef struct {
    uint16_t type;
    const char *name;
    size_t size;
    const sb_field_t *fields;
    uint16_t nfields;
} sb_msgdef_t;

#define SB_MSG_MAX_FIELDS 64

/* sb_codec_encode appends s (a struct described by d) to out as msgpack. */
int sb_codec_encode(const sb_msgdef_t *d, const void *s, sb_buf_t *out);
/* sb_codec_decode zeroes s, then fills it from p[n].  On failure returns SB_EBADMSG or
 * SB_ETOOBIG and, if bad_field is not NULL, sets it to the offending field's name. */
int sb_codec_decode(const sb_msgdef_t *d, const void *p, size_t n, void *s, const char **bad_field);
/* sb_codec_packer readies a msgpack-c packer that appends to out, for building RAW field
 * values (arrays, maps) with msgpack_pack_* calls.  pk is a msgpack_packer *. */
void sb_codec_packer(void *pk, sb_buf_t *out);

/* sb_msgdef_lookup finds a registered message by type number; NULL if unknown. */
const sb_msgdef_t *sb_msgdef_lookup(uint16_t type);
/* sb_msg_type_name returns the registered name or "unknown". */
const char *sb_msg_type_name(uint16_t type);

#endif
