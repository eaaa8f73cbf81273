/* u64.h - unsigned 64-bit arithmetic on two 32-bit halves.
 *
 * C89 has no 64-bit integer type, yet the sampler's xorshift64* state and
 * the timer's tick counts are 64-bit quantities.  Each half is kept in an
 * unsigned long masked to 32 bits, so the results are the same whether
 * unsigned long has 32 bits (Win32, i386) or 64 bits (x86_64 Linux).
 */
#ifndef LLAMA98_U64_H
#define LLAMA98_U64_H

#define U32_MASK 0xFFFFFFFFUL

typedef struct {
    unsigned long hi;
    unsigned long lo;
} u64;

void u64_set(u64 *r, unsigned long hi, unsigned long lo);
void u64_add(u64 *r, const u64 *a, const u64 *b);
void u64_sub(u64 *r, const u64 *a, const u64 *b);
int u64_is_zero(const u64 *a);
void u64_mul32(unsigned long a, unsigned long b, u64 *r);
void u64_mul_small(u64 *r, const u64 *a, unsigned long m);
double u64_to_double(const u64 *a);
/* Writes the decimal form into buf (at least 21 bytes) and returns buf. */
char *u64_to_dec(const u64 *a, char *buf);

#endif
