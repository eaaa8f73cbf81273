/* qdot_mmx.c - the integer dot products with MMX (see qdot.h), for the
 * Pentium MMX and Pentium II (no SSE).  Built instead of qdot.c when the
 * makefile is given QDOT=mmx (gcc.mk tiny686, mingw.mk and watcom.mk do).
 *
 * The activations arrive widened to int16 (once per matrix, in model.c),
 * so each row only widens its own int8 weights: 8 weights per step are
 * sign-extended into two registers of four int16 (punpck[lh]bw with
 * themselves, then psraw 8) and multiplied and pair-summed with pmaddwd
 * into int32 lanes.  Ternary rows take their int16 lanes {-1, 0, +1} for
 * each packed byte from a 256-entry table.  The int32 sums are exact (no
 * lane can overflow below 2^16 products), so the result equals qdot.c's.
 *
 * Inline assembly for GCC (AT&T syntax, i386) and OpenWatcom (_asm
 * blocks); the ragged end (n % 8, n % 4) is summed in C.
 */
#include "qdot.h"

#if !defined(__WATCOMC__) && !(defined(__GNUC__) && defined(__i386__))
#error "qdot_mmx.c needs GCC for i386 or OpenWatcom; build qdot.c instead (QDOT=c)"
#endif

#if defined(__GNUC__) && defined(__MMX__)
#define MMX_CLOBBERS , "mm0", "mm1", "mm7"
#else
#define MMX_CLOBBERS /* GCC knows no mm registers without -mmmx */
#endif

/* t2_lanes[b] = the four int16 weights of packed byte b (code 3 -> 0). */
static short t2_lanes[256][4];
static int t2_ready = 0;

static void t2_init(void)
{
    int b, k;
    for (b = 0; b < 256; b++) {
        for (k = 0; k < 4; k++) {
            int code = (b >> (2 * k)) & 3;
            t2_lanes[b][k] = (short)(code == 1 ? 1 : code == 2 ? -1 : 0);
        }
    }
    t2_ready = 1;
}

long qdot_i8(const short *x, const signed char *w, int n)
{
    long sum = 0;
    int blocks = n / 8, j;
    if (blocks > 0) {
#if defined(__GNUC__)
        const short *xp = x;
        const signed char *wp = w;
        int k = blocks;
        __asm__ __volatile__(
            "pxor %%mm7, %%mm7\n\t"
            "1:\n\t"
            "movq (%[w]), %%mm0\n\t"
            "movq %%mm0, %%mm1\n\t"
            "punpcklbw %%mm0, %%mm0\n\t"
            "punpckhbw %%mm1, %%mm1\n\t"
            "psraw $8, %%mm0\n\t"
            "psraw $8, %%mm1\n\t"
            "pmaddwd (%[x]), %%mm0\n\t"
            "pmaddwd 8(%[x]), %%mm1\n\t"
            "paddd %%mm0, %%mm7\n\t"
            "paddd %%mm1, %%mm7\n\t"
            "addl $8, %[w]\n\t"
            "addl $16, %[x]\n\t"
            "decl %[k]\n\t"
            "jnz 1b\n\t"
            "movq %%mm7, %%mm0\n\t"
            "psrlq $32, %%mm0\n\t"
            "paddd %%mm0, %%mm7\n\t"
            "movd %%mm7, %[s]\n\t"
            "emms\n\t"
            : [s] "=&r"(sum), [w] "+r"(wp), [x] "+r"(xp), [k] "+r"(k)
            :
            : "memory", "cc" MMX_CLOBBERS);
#else
        long s32;
        _asm {
            mov esi, w
            mov edi, x
            mov ecx, blocks
            pxor mm7, mm7
        next8:
            movq mm0, [esi]
            movq mm1, mm0
            punpcklbw mm0, mm0
            punpckhbw mm1, mm1
            psraw mm0, 8
            psraw mm1, 8
            pmaddwd mm0, [edi]
            pmaddwd mm1, [edi + 8]
            paddd mm7, mm0
            paddd mm7, mm1
            add esi, 8
            add edi, 16
            dec ecx
            jnz next8
            movq mm0, mm7
            psrlq mm0, 32
            paddd mm7, mm0
            movd s32, mm7
            emms
        }
        sum = s32;
#endif
    }
    for (j = blocks * 8; j < n; j++) {
        sum += (long)x[j] * w[j];
    }
    return sum;
}

long qdot_t2(const short *x, const unsigned char *packed, int n)
{
    long sum = 0;
    int pairs = n / 8, j;
    if (!t2_ready) {
        t2_init();
    }
    if (pairs > 0) {
#if defined(__GNUC__)
        const short *xp = x;
        const unsigned char *pp = packed;
        int k = pairs;
        long b0, b1;
        __asm__ __volatile__(
            "pxor %%mm7, %%mm7\n\t"
            "1:\n\t"
            "movzbl (%[p]), %[b0]\n\t"
            "movzbl 1(%[p]), %[b1]\n\t"
            "movq (%[t],%[b0],8), %%mm0\n\t"
            "movq (%[t],%[b1],8), %%mm1\n\t"
            "pmaddwd (%[x]), %%mm0\n\t"
            "pmaddwd 8(%[x]), %%mm1\n\t"
            "paddd %%mm0, %%mm7\n\t"
            "paddd %%mm1, %%mm7\n\t"
            "addl $2, %[p]\n\t"
            "addl $16, %[x]\n\t"
            "decl %[k]\n\t"
            "jnz 1b\n\t"
            "movq %%mm7, %%mm0\n\t"
            "psrlq $32, %%mm0\n\t"
            "paddd %%mm0, %%mm7\n\t"
            "movd %%mm7, %[s]\n\t"
            "emms\n\t"
            : [s] "=&r"(sum), [p] "+r"(pp), [x] "+r"(xp), [k] "+r"(k), [b0] "=&r"(b0), [b1] "=&r"(b1)
            : [t] "r"(t2_lanes)
            : "memory", "cc" MMX_CLOBBERS);
#else
        long s32;
        short *table = &t2_lanes[0][0];
        _asm {
            mov esi, packed
            mov edi, x
            mov ecx, pairs
            mov edx, table
            pxor mm7, mm7
        next2:
            movzx eax, byte ptr [esi]
            movzx ebx, byte ptr [esi + 1]
            movq mm0, [edx + eax * 8]
            movq mm1, [edx + ebx * 8]
            pmaddwd mm0, [edi]
            pmaddwd mm1, [edi + 8]
            paddd mm7, mm0
            paddd mm7, mm1
            add esi, 2
            add edi, 16
            dec ecx
            jnz next2
            movq mm0, mm7
            psrlq mm0, 32
            paddd mm7, mm0
            movd s32, mm7
            emms
        }
        sum = s32;
#endif
    }
    for (j = pairs * 8; j < n; j += 4) {
        const short *lanes = t2_lanes[packed[j / 4]];
        sum += (long)x[j] * lanes[0] + (long)x[j + 1] * lanes[1] + (long)x[j + 2] * lanes[2] +
               (long)x[j + 3] * lanes[3];
    }
    return sum;
}

const char *qdot_kernel(void)
{
    return "mmx";
}
