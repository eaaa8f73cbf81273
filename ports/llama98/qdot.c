/* qdot.c - the portable C89 integer dot products (see qdot.h). */
#include "qdot.h"

void qdot_i8_groups(const short *x, const signed char *w, int n, int group, long *sums)
{
    int g, j;
    for (g = 0; g < n; g += group) {
        const short *a = x + g;
        const signed char *b = w + g;
        long sum = 0;
        for (j = 0; j + 4 <= group; j += 4) {
            sum += (long)a[j] * b[j] + (long)a[j + 1] * b[j + 1] +
                   (long)a[j + 2] * b[j + 2] + (long)a[j + 3] * b[j + 3];
        }
        for (; j < group; j++) {
            sum += (long)a[j] * b[j];
        }
        *sums++ = sum;
    }
}

/* Each code is a sign: add the activation for +1, subtract it for -1. */
long qdot_t2(const short *x, const unsigned char *packed, int n)
{
    long plus = 0, minus = 0;
    int j;
    for (j = 0; j < n; j += 4) {
        unsigned int b = *packed++;
        if (b != 0) {
            if (b & 0x01) plus += x[j];
            if (b & 0x02) minus += x[j];
            if (b & 0x04) plus += x[j + 1];
            if (b & 0x08) minus += x[j + 1];
            if (b & 0x10) plus += x[j + 2];
            if (b & 0x20) minus += x[j + 2];
            if (b & 0x40) plus += x[j + 3];
            if (b & 0x80) minus += x[j + 3];
        }
    }
    return plus - minus;
}

const char *qdot_kernel(void)
{
    return "c89";
}
