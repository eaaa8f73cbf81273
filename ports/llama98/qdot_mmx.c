/* qdot_mmx.c - the integer dot products with MMX (see qdot.h), for the
 * Pentium MMX and Pentium II (no SSE).  Built instead of qdot.c when the
 * makefile is given QDOT=mmx (gcc.mk tiny686, mingw.mk and watcom.mk do).
 *
 * The activations arrive widened to int16 (once per matrix, in model.c),
 * so each row only unpacks its own int8 weights, 16 per loop step, into
 * the high bytes of int16 lanes (see block_sum_x256) and multiplies and
 * pair-sums them with pmaddwd into int32 lanes.  Ternary rows take their int16 lanes {-1, 0, +1} for
 * each packed byte from a 256-entry table.  The int32 sums are exact (no
 * lane can overflow below 2^16 products), so the result equals qdot.c's.
 *
 * Inline assembly for GCC (AT&T syntax, i386) and OpenWatcom (_asm
 * blocks); the ragged ends (n % 16) are summed in C.
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

/* Sum of x[i] * w[i] over blocks * 16 values.  Each weight byte is
 * unpacked into the high byte of an int16 lane (punpcklbw with a zero
 * register), i.e. 256 * w: no sign extension needed, and the lanes stay
 * exact while |sum| * 256 < 2^31, i.e. for blocks * 16 <= 512 values of
 * at most 128 * 127 each (qdot_i8_groups() only calls it that way). */
static long block_sum_x256(const short *x, const signed char *w, int blocks)
{
    long sum;
#if defined(__GNUC__)
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
#else
    long s32;
    _asm {
        mov esi, w
        mov edi, x
        mov ecx, blocks
        pxor mm7, mm7
    next16:
        pxor mm0, mm0
        pxor mm1, mm1
        punpcklbw mm0, [esi]
        punpcklbw mm1, [esi + 4]
        pmaddwd mm0, [edi]
        pmaddwd mm1, [edi + 8]
        paddd mm7, mm0
        paddd mm7, mm1
        pxor mm0, mm0
        pxor mm1, mm1
        punpcklbw mm0, [esi + 8]
        punpcklbw mm1, [esi + 12]
        pmaddwd mm0, [edi + 16]
        pmaddwd mm1, [edi + 24]
        paddd mm7, mm0
        paddd mm7, mm1
        add esi, 16
        add edi, 32
        dec ecx
        jnz next16
        movq mm0, mm7
        psrlq mm0, 32
        paddd mm7, mm0
        movd s32, mm7
        emms
    }
    sum = s32;
#endif
    /* arithmetic shift of a multiple of 256, written without >> on a
     * negative number (implementation-defined in C89) */
    return sum >= 0 ? sum / 256 : -((-sum) / 256);
}

#define MAX_X256 512 /* values per block_sum_x256() call */

/* All groups of a row in one loop, for group sizes that are multiples of
 * 16 up to MAX_X256: each group's lanes are summed, shifted back by 8
 * (psrad: exact, the sum is a multiple of 256) and stored to sums[]. */
static void row_groups_x256(const short *x, const signed char *w, int groups, int group, long *sums)
{
#if defined(__GNUC__)
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
#else
    long s32;
    int g;
    for (g = 0; g < groups; g++) {
        const short *xg = x + (long)g * group;
        const signed char *wg = w + (long)g * group;
        int blocks = group / 16;
        _asm {
            mov esi, wg
            mov edi, xg
            mov ecx, blocks
            pxor mm7, mm7
        next16:
            pxor mm0, mm0
            pxor mm1, mm1
            punpcklbw mm0, [esi]
            punpcklbw mm1, [esi + 4]
            pmaddwd mm0, [edi]
            pmaddwd mm1, [edi + 8]
            paddd mm7, mm0
            paddd mm7, mm1
            pxor mm0, mm0
            pxor mm1, mm1
            punpcklbw mm0, [esi + 8]
            punpcklbw mm1, [esi + 12]
            pmaddwd mm0, [edi + 16]
            pmaddwd mm1, [edi + 24]
            paddd mm7, mm0
            paddd mm7, mm1
            add esi, 16
            add edi, 32
            dec ecx
            jnz next16
            movq mm0, mm7
            psrlq mm0, 32
            paddd mm7, mm0
            psrad mm7, 8
            movd s32, mm7
            emms
        }
        sums[g] = s32;
    }
#endif
}

void qdot_i8_groups(const short *x, const signed char *w, int n, int group, long *sums)
{
    int g, j;
    if (group % 16 == 0 && group <= MAX_X256) {
        row_groups_x256(x, w, n / group, group, sums);
        return;
    }
    for (g = 0; g < n; g += group) {
        long sum = 0;
        int done = 0;
        while (group - done >= 16) {
            int count = group - done > MAX_X256 ? MAX_X256 : group - done;
            int blocks = count / 16;
            sum += block_sum_x256(x + g + done, w + g + done, blocks);
            done += blocks * 16;
        }
        for (j = g + done; j < g + group; j++) {
            sum += (long)x[j] * w[j];
        }
        *sums++ = sum;
    }
}

long qdot_t2(const short *x, const unsigned char *packed, int n)
{
    long sum = 0;
    int quads = n / 32, j;
    if (!t2_ready) {
        t2_init();
    }
    if (quads > 0) {
#if defined(__GNUC__)
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
            : [p] "r"(pend), [x] "r"(xend), [t] "r"(t2_lanes)
            : "memory", "cc" MMX_CLOBBERS);
#else
        long s32;
        short *table = &t2_lanes[0][0];
        _asm {
            mov esi, packed
            mov edi, x
            mov ecx, quads
            mov edx, table
            pxor mm7, mm7
        next8:
            movzx eax, byte ptr [esi]
            movzx ebx, byte ptr [esi + 1]
            movq mm0, [edx + eax * 8]
            movq mm1, [edx + ebx * 8]
            pmaddwd mm0, [edi]
            pmaddwd mm1, [edi + 8]
            paddd mm7, mm0
            paddd mm7, mm1
            movzx eax, byte ptr [esi + 2]
            movzx ebx, byte ptr [esi + 3]
            movq mm0, [edx + eax * 8]
            movq mm1, [edx + ebx * 8]
            pmaddwd mm0, [edi + 16]
            pmaddwd mm1, [edi + 24]
            paddd mm7, mm0
            paddd mm7, mm1
            movzx eax, byte ptr [esi + 4]
            movzx ebx, byte ptr [esi + 5]
            movq mm0, [edx + eax * 8]
            movq mm1, [edx + ebx * 8]
            pmaddwd mm0, [edi + 32]
            pmaddwd mm1, [edi + 40]
            paddd mm7, mm0
            paddd mm7, mm1
            movzx eax, byte ptr [esi + 6]
            movzx ebx, byte ptr [esi + 7]
            movq mm0, [edx + eax * 8]
            movq mm1, [edx + ebx * 8]
            pmaddwd mm0, [edi + 48]
            pmaddwd mm1, [edi + 56]
            paddd mm7, mm0
            paddd mm7, mm1
            add esi, 8
            add edi, 64
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
    for (j = quads * 32; j < n; j += 4) {
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
