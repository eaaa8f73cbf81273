/* util.c - see util.h. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "util.h"

#define CHUNK_BYTES 65536UL

/* Each block starts with its size, in a union as wide as the strictest
 * alignment malloc gives, so the caller's part stays aligned. */
typedef union {
    double size;
    long align_long;
    void *align_ptr;
} BlockHead;

static double held_bytes = 0.0;
static double peak_bytes = 0.0;

void fatal(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fputs("llama98: error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    exit(1);
}

void *xmalloc(double bytes, const char *what)
{
    BlockHead *p;
    if (bytes < 1.0) {
        bytes = 1.0;
    }
    if (bytes > LLAMA98_MAX_BYTES - sizeof(BlockHead) || bytes > (double)((size_t)-1 - sizeof(BlockHead))) {
        fatal("out of memory: need %.0f bytes for %s", bytes, what);
    }
    p = (BlockHead *)malloc((size_t)bytes + sizeof(BlockHead));
    if (p == NULL) {
        fatal("out of memory: need %.0f bytes for %s (%.0f bytes already held)", bytes, what, held_bytes);
    }
    p->size = bytes;
    held_bytes += bytes;
    if (held_bytes > peak_bytes) {
        peak_bytes = held_bytes;
    }
    return p + 1;
}

void xfree(void *p)
{
    BlockHead *head;
    if (p == NULL) {
        return;
    }
    head = (BlockHead *)p - 1;
    held_bytes -= head->size;
    free(head);
}

double alloc_current(void)
{
    return held_bytes;
}

double alloc_peak(void)
{
    return peak_bytes;
}

long file_size(FILE *f)
{
    long here = ftell(f);
    long end;
    if (here < 0 || fseek(f, 0L, SEEK_END) != 0) {
        return -1L;
    }
    end = ftell(f);
    if (fseek(f, here, SEEK_SET) != 0) {
        return -1L;
    }
    return end;
}

double read_chunks(FILE *f, unsigned char *dst, double n, unsigned long *crc)
{
    double done = 0.0;
    while (done < n) {
        double left = n - done;
        size_t want = left > (double)CHUNK_BYTES ? (size_t)CHUNK_BYTES : (size_t)left;
        size_t got = fread(dst, 1, want, f);
        if (crc != NULL) {
            *crc = crc32_update(*crc, dst, got);
        }
        done += (double)got;
        dst += got;
        if (got != want) {
            break;
        }
    }
    return done;
}

long read_le32(const unsigned char *p)
{
    unsigned long u = (unsigned long)p[0] | ((unsigned long)p[1] << 8) |
                      ((unsigned long)p[2] << 16) | ((unsigned long)p[3] << 24);
    if (u & 0x80000000UL) {
        /* two's complement value of a negative int32, without overflow */
        return -(long)((~u & 0x7FFFFFFFUL)) - 1L;
    }
    return (long)u;
}

int host_float_ok(void)
{
    float one = 1.0f;
    unsigned char b[4];
    if (sizeof(float) != 4) {
        return 0;
    }
    memcpy(b, &one, 4);
    return b[0] == 0x00 && b[1] == 0x00 && b[2] == 0x80 && b[3] == 0x3F;
}
