/* timer.h - raw monotonic ticks for the -r report and the tok/s line.
 *
 * The host recomputes tok/s from raw ticks and hz, so the port reports the
 * counter it used instead of converting to milliseconds (which would lose
 * resolution on a 1998 machine).
 */
#ifndef LLAMA98_TIMER_H
#define LLAMA98_TIMER_H

#include "u64.h"

/* Picks the best source; call once before timer_now. */
void timer_init(void);
/* Ticks elapsed since timer_init. */
void timer_now(u64 *ticks);
void timer_hz(u64 *hz);
/* One of QueryPerformanceCounter, GetTickCount, clock_gettime, clock. */
const char *timer_source(void);

#endif
