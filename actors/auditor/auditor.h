/* auditor.h: the auditor actor -- the audit trail: append-only, HMAC-chained, verifiable. */
#ifndef SB_AUDITOR_H
#define SB_AUDITOR_H

#include "core/actor.h"

extern const sb_actor_ops_t sb_auditor_actor;

#endif
