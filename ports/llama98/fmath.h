/* fmath.h - the float functions of llama2.c (expf, cosf, sinf, powf).
 *
 * C89 has only the double versions, and (float)exp((double)x) is not always
 * the float glibc's expf returns: they differ in the last bit now and then.
 * For fp32 weights that never shows in the text, but a Q8_0 model
 * quantizes activations, and one flipped int8 rounding changes the logits
 * enough to change a sampled token.  Builds against a C library that has
 * the C99 float functions (gcc.mk: glibc) define LLAMA98_FLOAT_LIBM and call
 * them, so their output is byte for byte llama2.c's; the others (MinGW's
 * msvcrt, OpenWatcom) keep the C89 double path.
 */
#ifndef LLAMA98_FMATH_H
#define LLAMA98_FMATH_H

#include <math.h>

#ifdef LLAMA98_FLOAT_LIBM
float expf(float x);
float cosf(float x);
float sinf(float x);
float powf(float x, float y);
#define F_EXP(x) expf(x)
#define F_COS(x) cosf(x)
#define F_SIN(x) sinf(x)
#define F_POW(x, y) powf((x), (y))
#else
#define F_EXP(x) ((float)exp((double)(x)))
#define F_COS(x) ((float)cos((double)(x)))
#define F_SIN(x) ((float)sin((double)(x)))
#define F_POW(x, y) ((float)pow((double)(x), (double)(y)))
#endif

#endif
