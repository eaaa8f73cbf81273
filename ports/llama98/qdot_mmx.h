/* qdot_mmx.h - the MMX kernels of qdot_mmx.c, one implementation per
 * compiler: qdot_mmx_gcc.c (GCC inline assembly, i386) and qdot_mmx_wat.c
 * (OpenWatcom _asm blocks).  Each returns exact int32 sums. */
#ifndef LLAMA98_QDOT_MMX_H
#define LLAMA98_QDOT_MMX_H

/* The four int16 weights {-1, 0, +1} of each packed ternary byte. */
extern short qdot_t2_lanes[256][4];

/* 256 * (sum of x[i] * w[i]) over blocks * 16 values (blocks * 16 <= 512). */
long mmx_block_sum_x256(const short *x, const signed char *w, int blocks);

/* sums[g] = sum over group g of x[i] * w[i], for `groups` groups of
 * `group` values (group a multiple of 16, at most 512). */
void mmx_row_groups_x256(const short *x, const signed char *w, int groups, int group, long *sums);

/* sum of x[i] * t[i] over quads * 32 values of packed ternary weights. */
long mmx_t2_quads(const short *x, const unsigned char *packed, int quads);

#endif
