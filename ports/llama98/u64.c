/* u64.c - see u64.h. */
#include "u64.h"

void u64_set(u64 *r, unsigned long hi, unsigned long lo)
{
    r->hi = hi & U32_MASK;
    r->lo = lo & U32_MASK;
}

void u64_add(u64 *r, const u64 *a, const u64 *b)
{
    unsigned long lo = (a->lo + b->lo) & U32_MASK;
    unsigned long carry = lo < a->lo ? 1UL : 0UL;
    r->hi = (a->hi + b->hi + carry) & U32_MASK;
    r->lo = lo;
}

void u64_sub(u64 *r, const u64 *a, const u64 *b)
{
    unsigned long borrow = a->lo < b->lo ? 1UL : 0UL;
    unsigned long lo = (a->lo - b->lo) & U32_MASK;
    r->hi = (a->hi - b->hi - borrow) & U32_MASK;
    r->lo = lo;
}

int u64_is_zero(const u64 *a)
{
    return a->hi == 0 && a->lo == 0;
}

/* Full 32x32 -> 64 bit product built from 16-bit pieces, none of which can
 * overflow a 32-bit unsigned long. */
void u64_mul32(unsigned long a, unsigned long b, u64 *r)
{
    unsigned long a0 = a & 0xFFFFUL, a1 = (a >> 16) & 0xFFFFUL;
    unsigned long b0 = b & 0xFFFFUL, b1 = (b >> 16) & 0xFFFFUL;
    unsigned long p00 = a0 * b0;
    unsigned long p01 = a0 * b1;
    unsigned long p10 = a1 * b0;
    unsigned long p11 = a1 * b1;
    unsigned long mid = (p00 >> 16) + (p01 & 0xFFFFUL) + (p10 & 0xFFFFUL);
    r->lo = (((mid & 0xFFFFUL) << 16) | (p00 & 0xFFFFUL)) & U32_MASK;
    r->hi = (p11 + (p01 >> 16) + (p10 >> 16) + (mid >> 16)) & U32_MASK;
}

/* r = a * m (mod 2^64) for a 32-bit multiplier m. */
void u64_mul_small(u64 *r, const u64 *a, unsigned long m)
{
    u64 low, high;
    u64_mul32(a->lo, m, &low);
    u64_mul32(a->hi, m, &high);
    r->lo = low.lo;
    r->hi = (low.hi + high.lo) & U32_MASK;
}

double u64_to_double(const u64 *a)
{
    return (double)a->hi * 4294967296.0 + (double)a->lo;
}

char *u64_to_dec(const u64 *a, char *buf)
{
    char tmp[21];
    int n = 0, i;
    unsigned long hi = a->hi, lo = a->lo;
    do {
        unsigned long r, t, q1, q2;
        r = hi % 10UL;
        hi = hi / 10UL;
        t = (r << 16) | (lo >> 16);
        q1 = t / 10UL;
        r = t % 10UL;
        t = (r << 16) | (lo & 0xFFFFUL);
        q2 = t / 10UL;
        r = t % 10UL;
        lo = ((q1 << 16) | q2) & U32_MASK;
        tmp[n++] = (char)('0' + (int)r);
    } while (hi != 0 || lo != 0);
    for (i = 0; i < n; i++) {
        buf[i] = tmp[n - 1 - i];
    }
    buf[n] = '\0';
    return buf;
}
