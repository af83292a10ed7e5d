/* monitor.h: the monitor actor -- metrics and health: per-sandbox cgroup samples, node capacity, Prometheus. */
#ifndef SB_MONITOR_H
#define SB_MONITOR_H

#include "core/actor.h"

extern const sb_actor_ops_t sb_monitor_actor;

#endif
