/* util.h - error exit, checked allocation and chunked file reading.
 *
 * Every failure a user can cause ends in fatal(): one line on stderr that
 * starts with "llama98: error: " and exit code 1, never a crash.
 */
#ifndef LLAMA98_UTIL_H
#define LLAMA98_UTIL_H

#include <stdio.h>
#include <stddef.h>
#include "crc32.h"

/* The largest single allocation or file we accept: it keeps every element
 * count below 2^31 so int indexes never overflow on any target. */
#define LLAMA98_MAX_BYTES 2147483647.0

void fatal(const char *fmt, ...);
/* bytes is a double so callers can pass sizes computed without overflow.
 * Every block is counted (alloc_current, alloc_peak) so the report can say
 * how much memory the run took; give it back with xfree(), never free(). */
void *xmalloc(double bytes, const char *what);
void xfree(void *p);
/* Bytes held in xmalloc blocks now, and the most ever held at once. */
double alloc_current(void);
double alloc_peak(void);

/* Size of an open binary file in bytes, or -1 when it cannot be found. */
long file_size(FILE *f);
/* Reads exactly n bytes in 64 KB chunks, updating *crc (unless crc is
 * NULL: streamed weights were checked once at the start); returns the number
 * of bytes actually read (less than n at end of file or on error). */
double read_chunks(FILE *f, unsigned char *dst, double n, unsigned long *crc);

/* Little-endian int32 from 4 bytes, independent of host byte order. */
long read_le32(const unsigned char *p);

/* True when float is a 4-byte little-endian IEEE single, which the weight
 * files store verbatim. */
int host_float_ok(void);

#endif
