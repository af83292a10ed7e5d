/*
 * auditor.h: the auditor actor -- the audit trail: append-only, HMAC-chained, verifiable
 * (format in audit_log.h; `soulbox audit` in auditor_cli.h).
 *
 * Senders: send AUDIT_EVENT as a request (sb_actor_request) and treat the AUDIT_ACK as "on
 * disk".  If sb_actor_request returns SB_EAGAIN the auditor is behind and its bounded queue
 * is full: back off and retry, or fail the operation being audited -- never drop the event.
 * An error reply (SB_EIO) means the event could not be written; it was logged.
 *
 * Its spawn argument is the process's const sb_config_t * (data_dir), borrowed for its life.
 */
#ifndef SB_AUDITOR_H
#define SB_AUDITOR_H

#include "core/actor.h"

extern const sb_actor_ops_t sb_auditor_actor;

#endif
