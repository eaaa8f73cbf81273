/* qdot.c - the portable C89 integer dot products (see qdot.h). */
#include "qdot.h"

long qdot_i8(const short *a, const signed char *b, int n)
{
    long sum = 0;
    int j;
    for (j = 0; j + 4 <= n; j += 4) {
        sum += (long)a[j] * b[j] + (long)a[j + 1] * b[j + 1] +
               (long)a[j + 2] * b[j + 2] + (long)a[j + 3] * b[j + 3];
    }
    for (; j < n; j++) {
        sum += (long)a[j] * b[j];
    }
    return sum;
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
