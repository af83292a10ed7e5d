/* clock.h: the clocks.  Thread-safe; never blocks. */
#ifndef SB_CLOCK_H
#define SB_CLOCK_H

#include <stdint.h>

/* Clocks: monotonic for durations and timers, realtime for deadlines that cross hosts. */
uint64_t sb_now_mono_us(void);
uint64_t sb_now_real_ms(void);

#endif
