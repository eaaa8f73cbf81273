/* qdot_mmx.c - the integer dot products with MMX (see qdot.h), for the
 * Pentium MMX and Pentium II (no SSE).  Built instead of qdot.c when the
 * makefile is given QDOT=mmx (gcc.mk tiny686, mingw.mk and watcom.mk do).
 *
 * The activations arrive widened to int16 (once per matrix, in forward.c),
 * so each row only unpacks its own int8 weights, 16 per loop step, into
 * the high bytes of int16 lanes (see block_sum_x256) and multiplies and
 * pair-sums them with pmaddwd into int32 lanes.  Ternary rows take their
 * int16 lanes {-1, 0, +1} for each packed byte from a 256-entry table.  The int32 sums are exact (no
 * lane can overflow below 2^16 products), so the result equals qdot.c's.
 *
 * The assembly lives in one file per compiler behind qdot_mmx.h:
 * qdot_mmx_gcc.c (GCC, i386) and qdot_mmx_wat.c (OpenWatcom); this file
 * is portable C89 (tables, dispatch and the ragged ends, n % 16).
 */
#include "qdot.h"

#include "qdot_mmx.h"

/* qdot_t2_lanes[b] = the four int16 weights of packed byte b (code 3 -> 0). */
short qdot_t2_lanes[256][4];
static int t2_ready = 0;

static void t2_init(void)
{
    int b, k;
    for (b = 0; b < 256; b++) {
        for (k = 0; k < 4; k++) {
            int code = (b >> (2 * k)) & 3;
            qdot_t2_lanes[b][k] = (short)(code == 1 ? 1 : code == 2 ? -1 : 0);
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
    long sum = mmx_block_sum_x256(x, w, blocks);
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
    mmx_row_groups_x256(x, w, groups, group, sums);
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
        sum = mmx_t2_quads(x, packed, quads);
    }
    for (j = quads * 32; j < n; j += 4) {
        const short *lanes = qdot_t2_lanes[packed[j / 4]];
        sum += (long)x[j] * lanes[0] + (long)x[j + 1] * lanes[1] + (long)x[j + 2] * lanes[2] +
               (long)x[j + 3] * lanes[3];
    }
    return sum;
}

const char *qdot_kernel(void)
{
    return "mmx";
}
