/* timer.c - see timer.h.  This is the only file that asks for POSIX
 * declarations (clock_gettime), so the rest stays strict C89. */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 199309L
#endif

#include <time.h>
#ifdef _WIN32
#include <windows.h>
#endif
#include "timer.h"

#define SRC_CLOCK 0
#define SRC_QPC 1
#define SRC_TICKCOUNT 2
#define SRC_GETTIME 3

static int source = SRC_CLOCK;
#ifndef _WIN32
static unsigned long clock_base;
#if defined(CLOCK_MONOTONIC)
static struct timespec base_ts;
#endif
#endif
static u64 hz_value;

#ifdef _WIN32
static u64 base_ticks;
static unsigned long tick_base;

static void read_qpc(u64 *r)
{
    LARGE_INTEGER li;
    QueryPerformanceCounter(&li);
    u64_set(r, (unsigned long)li.u.HighPart, (unsigned long)li.u.LowPart);
}
#endif

void timer_init(void)
{
#ifdef _WIN32
    LARGE_INTEGER f;
    if (QueryPerformanceFrequency(&f) && (f.u.LowPart != 0 || f.u.HighPart != 0)) {
        source = SRC_QPC;
        u64_set(&hz_value, (unsigned long)f.u.HighPart, (unsigned long)f.u.LowPart);
        read_qpc(&base_ticks);
        return;
    }
    source = SRC_TICKCOUNT;
    u64_set(&hz_value, 0UL, 1000UL);
    tick_base = (unsigned long)GetTickCount();
    return;
#else
#if defined(CLOCK_MONOTONIC)
    if (clock_gettime(CLOCK_MONOTONIC, &base_ts) == 0) {
        source = SRC_GETTIME;
        u64_set(&hz_value, 0UL, 1000000UL);
        return;
    }
#endif
    source = SRC_CLOCK;
    u64_set(&hz_value, 0UL, (unsigned long)CLOCKS_PER_SEC);
    clock_base = (unsigned long)clock();
#endif
}

void timer_now(u64 *ticks)
{
#ifdef _WIN32
    if (source == SRC_QPC) {
        u64 now;
        read_qpc(&now);
        u64_sub(ticks, &now, &base_ticks);
        return;
    }
    u64_set(ticks, 0UL, ((unsigned long)GetTickCount() - tick_base) & U32_MASK);
#else
#if defined(CLOCK_MONOTONIC)
    if (source == SRC_GETTIME) {
        struct timespec now;
        long sec, nsec;
        u64 us;
        clock_gettime(CLOCK_MONOTONIC, &now);
        sec = (long)(now.tv_sec - base_ts.tv_sec);
        nsec = (long)(now.tv_nsec - base_ts.tv_nsec);
        if (nsec < 0) {
            nsec += 1000000000L;
            sec -= 1;
        }
        if (sec < 0) {
            sec = 0;
            nsec = 0;
        }
        u64_set(&us, 0UL, (unsigned long)sec);
        u64_mul_small(&us, &us, 1000000UL);
        u64_set(ticks, 0UL, (unsigned long)(nsec / 1000L));
        u64_add(ticks, ticks, &us);
        return;
    }
#endif
    u64_set(ticks, 0UL, ((unsigned long)clock() - clock_base) & U32_MASK);
#endif
}

void timer_hz(u64 *hz)
{
    *hz = hz_value;
}

const char *timer_source(void)
{
    switch (source) {
    case SRC_QPC:
        return "QueryPerformanceCounter";
    case SRC_TICKCOUNT:
        return "GetTickCount";
    case SRC_GETTIME:
        return "clock_gettime";
    default:
        return "clock";
    }
}
