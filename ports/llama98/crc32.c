/* crc32.c - see crc32.h. */
#include "crc32.h"

static unsigned long crc_table[256];

void crc32_init(void)
{
    unsigned long c;
    int n, k;
    for (n = 0; n < 256; n++) {
        c = (unsigned long)n;
        for (k = 0; k < 8; k++) {
            c = (c & 1UL) ? (0xEDB88320UL ^ (c >> 1)) : (c >> 1);
        }
        crc_table[n] = c;
    }
}

unsigned long crc32_update(unsigned long crc, const unsigned char *p, size_t n)
{
    size_t i;
    crc = crc ^ 0xFFFFFFFFUL;
    for (i = 0; i < n; i++) {
        crc = crc_table[(crc ^ p[i]) & 0xFFUL] ^ (crc >> 8);
    }
    return (crc ^ 0xFFFFFFFFUL) & 0xFFFFFFFFUL;
}
