/* qdot_mmx_gcc.c - the MMX kernels of qdot_mmx.h in GCC inline assembly
 * (AT&T syntax, i386).  Compiled only by GCC for i386 (gcc.mk tiny686,
 * mingw.mk); any other compiler sees an empty unit.  The portable C89
 * path, qdot.c, gives the same integer sums and stays tested. */
#include "qdot_mmx.h"

#if defined(__GNUC__) && defined(__i386__)

#if defined(__MMX__)
#define MMX_CLOBBERS , "mm0", "mm1", "mm7"
#else
#define MMX_CLOBBERS /* GCC knows no mm registers without -mmmx */
#endif

long mmx_block_sum_x256(const short *x, const signed char *w, int blocks)
{
    long sum;
    long i = -16L * blocks;
    const signed char *wend = w + 16L * blocks;
    const short *xend = x + 16L * blocks;
    __asm__ __volatile__(
        "pxor %%mm7, %%mm7\n\t"
        "1:\n\t"
        "pxor %%mm0, %%mm0\n\t"
        "pxor %%mm1, %%mm1\n\t"
        "punpcklbw (%[w],%[i]), %%mm0\n\t"
        "punpcklbw 4(%[w],%[i]), %%mm1\n\t"
        "pmaddwd (%[x],%[i],2), %%mm0\n\t"
        "pmaddwd 8(%[x],%[i],2), %%mm1\n\t"
        "paddd %%mm0, %%mm7\n\t"
        "paddd %%mm1, %%mm7\n\t"
        "pxor %%mm0, %%mm0\n\t"
        "pxor %%mm1, %%mm1\n\t"
        "punpcklbw 8(%[w],%[i]), %%mm0\n\t"
        "punpcklbw 12(%[w],%[i]), %%mm1\n\t"
        "pmaddwd 16(%[x],%[i],2), %%mm0\n\t"
        "pmaddwd 24(%[x],%[i],2), %%mm1\n\t"
        "paddd %%mm0, %%mm7\n\t"
        "paddd %%mm1, %%mm7\n\t"
        "addl $16, %[i]\n\t"
        "jnz 1b\n\t"
        "movq %%mm7, %%mm0\n\t"
        "psrlq $32, %%mm0\n\t"
        "paddd %%mm0, %%mm7\n\t"
        "movd %%mm7, %[s]\n\t"
        "emms\n\t"
        : [s] "=&r"(sum), [i] "+r"(i)
        : [w] "r"(wend), [x] "r"(xend)
        : "memory", "cc" MMX_CLOBBERS);
    return sum;
}

void mmx_row_groups_x256(const short *x, const signed char *w, int groups, int group, long *sums)
{
    long negative = -(long)group, wstep = group, xstep = 2L * group, i;
    const signed char *wp = w + group;
    const short *xp = x + group;
    long *sp = sums;
    long count = groups;
    __asm__ __volatile__(
        "1:\n\t"
        "pxor %%mm7, %%mm7\n\t"
        "movl %[neg], %[i]\n\t"
        "2:\n\t"
        "pxor %%mm0, %%mm0\n\t"
        "pxor %%mm1, %%mm1\n\t"
        "punpcklbw (%[w],%[i]), %%mm0\n\t"
        "punpcklbw 4(%[w],%[i]), %%mm1\n\t"
        "pmaddwd (%[x],%[i],2), %%mm0\n\t"
        "pmaddwd 8(%[x],%[i],2), %%mm1\n\t"
        "paddd %%mm0, %%mm7\n\t"
        "paddd %%mm1, %%mm7\n\t"
        "pxor %%mm0, %%mm0\n\t"
        "pxor %%mm1, %%mm1\n\t"
        "punpcklbw 8(%[w],%[i]), %%mm0\n\t"
        "punpcklbw 12(%[w],%[i]), %%mm1\n\t"
        "pmaddwd 16(%[x],%[i],2), %%mm0\n\t"
        "pmaddwd 24(%[x],%[i],2), %%mm1\n\t"
        "paddd %%mm0, %%mm7\n\t"
        "paddd %%mm1, %%mm7\n\t"
        "addl $16, %[i]\n\t"
        "jnz 2b\n\t"
        "movq %%mm7, %%mm0\n\t"
        "psrlq $32, %%mm0\n\t"
        "paddd %%mm0, %%mm7\n\t"
        "psrad $8, %%mm7\n\t"
        "movd %%mm7, (%[s])\n\t"
        "addl $4, %[s]\n\t"
        "addl %[ws], %[w]\n\t"
        "addl %[xs], %[x]\n\t"
        "decl %[c]\n\t"
        "jnz 1b\n\t"
        "emms\n\t"
        : [w] "+r"(wp), [x] "+r"(xp), [s] "+r"(sp), [c] "+r"(count), [i] "=&r"(i)
        : [neg] "m"(negative), [ws] "m"(wstep), [xs] "m"(xstep)
        : "memory", "cc" MMX_CLOBBERS);
}

long mmx_t2_quads(const short *x, const unsigned char *packed, int quads)
{
    long sum;
    long i = -8L * quads;
    const unsigned char *pend = packed + 8L * quads;
    const short *xend = x + 32L * quads;
    long b0, b1;
    __asm__ __volatile__(
        "pxor %%mm7, %%mm7\n\t"
        "1:\n\t"
        "movzbl (%[p],%[i]), %[b0]\n\t"
        "movzbl 1(%[p],%[i]), %[b1]\n\t"
        "movq (%[t],%[b0],8), %%mm0\n\t"
        "movq (%[t],%[b1],8), %%mm1\n\t"
        "pmaddwd (%[x],%[i],8), %%mm0\n\t"
        "pmaddwd 8(%[x],%[i],8), %%mm1\n\t"
        "paddd %%mm0, %%mm7\n\t"
        "paddd %%mm1, %%mm7\n\t"
        "movzbl 2(%[p],%[i]), %[b0]\n\t"
        "movzbl 3(%[p],%[i]), %[b1]\n\t"
        "movq (%[t],%[b0],8), %%mm0\n\t"
        "movq (%[t],%[b1],8), %%mm1\n\t"
        "pmaddwd 16(%[x],%[i],8), %%mm0\n\t"
        "pmaddwd 24(%[x],%[i],8), %%mm1\n\t"
        "paddd %%mm0, %%mm7\n\t"
        "paddd %%mm1, %%mm7\n\t"
        "movzbl 4(%[p],%[i]), %[b0]\n\t"
        "movzbl 5(%[p],%[i]), %[b1]\n\t"
        "movq (%[t],%[b0],8), %%mm0\n\t"
        "movq (%[t],%[b1],8), %%mm1\n\t"
        "pmaddwd 32(%[x],%[i],8), %%mm0\n\t"
        "pmaddwd 40(%[x],%[i],8), %%mm1\n\t"
        "paddd %%mm0, %%mm7\n\t"
        "paddd %%mm1, %%mm7\n\t"
        "movzbl 6(%[p],%[i]), %[b0]\n\t"
        "movzbl 7(%[p],%[i]), %[b1]\n\t"
        "movq (%[t],%[b0],8), %%mm0\n\t"
        "movq (%[t],%[b1],8), %%mm1\n\t"
        "pmaddwd 48(%[x],%[i],8), %%mm0\n\t"
        "pmaddwd 56(%[x],%[i],8), %%mm1\n\t"
        "paddd %%mm0, %%mm7\n\t"
        "paddd %%mm1, %%mm7\n\t"
        "addl $8, %[i]\n\t"
        "jnz 1b\n\t"
        "movq %%mm7, %%mm0\n\t"
        "psrlq $32, %%mm0\n\t"
        "paddd %%mm0, %%mm7\n\t"
        "movd %%mm7, %[s]\n\t"
        "emms\n\t"
        : [s] "=&r"(sum), [i] "+r"(i), [b0] "=&r"(b0), [b1] "=&r"(b1)
        : [p] "r"(pend), [x] "r"(xend), [t] "r"(qdot_t2_lanes)
        : "memory", "cc" MMX_CLOBBERS);
    return sum;
}

#else
typedef int qdot_mmx_gcc_needs_gcc_for_i386; /* C89 forbids an empty unit */
#endif
