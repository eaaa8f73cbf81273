/* crc32.h - CRC-32 (IEEE 802.3, the zip/PNG polynomial) of byte buffers.
 *
 * Shared by llama98 (the checksums in its report) and agent98 (its !crc32
 * built-in): both must agree with the host's zlib.crc32, so there is one
 * table and one loop.  crc32_update() chains: start with 0 and feed each
 * piece; the result is the CRC of all the bytes so far.
 */
#ifndef LLAMA98_CRC32_H
#define LLAMA98_CRC32_H

#include <stddef.h>

/* Fills the table; call once before crc32_update(). */
void crc32_init(void);
unsigned long crc32_update(unsigned long crc, const unsigned char *p, size_t n);

#endif
