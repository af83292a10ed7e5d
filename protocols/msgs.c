/*
 * msgs.c: the bus registry -- one descriptor per message of messages.def (and the .def files
 * it includes), derived from its lines, and the lookup by type number.
 */
#include "msgs.h"

#include <stddef.h>

/* One descriptor table per message; X carries the struct type into each field line. */
#define SB__ENTRY_FOR(no, UP, low)                                                                 \
    static const sb_field_t low##_fields[] = {SB_FIELDS_##low(SB__FIELD_DESC, sb_##low##_t)};            \
    const sb_msgdef_t sb_##low##_def = {(no), #low, sizeof(sb_##low##_t), low##_fields,            \
                                        (uint16_t)(sizeof low##_fields / sizeof low##_fields[0])};
SB_MESSAGES(SB__ENTRY_FOR)

static const sb_msgdef_t *const codec_all[] = {
#define SB__PTR(no, UP, low) &sb_##low##_def,
    SB_MESSAGES(SB__PTR)
#undef SB__PTR
};

const sb_msgdef_t *
sb_msgdef_lookup(uint16_t type)
{
    for (size_t i = 0; i < sizeof codec_all / sizeof codec_all[0]; i++)
        if (codec_all[i]->type == type)
            return codec_all[i];
    return NULL;
}

const char *
sb_msg_type_name(uint16_t type)
{
    const sb_msgdef_t *d = sb_msgdef_lookup(type);
    return d ? d->name : "unknown";
}
