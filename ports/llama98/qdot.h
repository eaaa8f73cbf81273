/* qdot.h - integer dot products of the quantized matmuls.
 *
 * Two implementations with one interface, chosen at build time: qdot.c
 * (portable C89) and qdot_mmx.c (MMX: pmaddwd on int16 lanes, for the
 * Pentium MMX and Pentium II).  Both return the exact integer sum, so the
 * output of the port does not depend on which one was built in.
 */
#ifndef LLAMA98_QDOT_H
#define LLAMA98_QDOT_H

/* sums[g] = sum of x[i] * w[i] over group g (i from g * group, group
 * values) for the n / group groups of one row: x the int8 activations
 * widened to int16 (once per matrix: MMX multiplies int16 lanes), w the
 * row's int8 weights (|w| <= 128); each |sum| < 2^31. */
void qdot_i8_groups(const short *x, const signed char *w, int n, int group, long *sums);

/* sum of x[i] * t[i] for i < n (n a multiple of 4), where t[i] is the
 * ternary weight in packed (4 per byte, FORMATS.md): code 0 -> 0,
 * 1 -> +1, 2 -> -1 (3 never reaches here: the loader refuses it). */
long qdot_t2(const short *x, const unsigned char *packed, int n);

/* "c89" or "mmx": which implementation this build has (for -r reports). */
const char *qdot_kernel(void);

#endif
