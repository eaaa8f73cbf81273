/* wfile.h - a checkpoint read as one logical file over its parts.
 *
 * C89's fseek and ftell take a long, so Windows 98's C runtime cannot
 * address a file of 2 GB or more, and FAT32 stops at 4 GB.  A bigger
 * checkpoint is stored as parts below 2 GB each with 8.3-safe names: the
 * first keeps its name (MODEL.BIN), the next ones replace the extension with
 * B01, B02, ... (b01 when the extension has a lowercase letter; ".B01" is
 * appended to a name without one).  Parts are found by trying those names
 * in order until one is missing; the logical file is their concatenation.
 *
 * Only one part is open at a time (OpenWatcom's runtime allows 20 open
 * files), and every byte read is counted for the report.
 */
#ifndef LLAMA98_WFILE_H
#define LLAMA98_WFILE_H

#include <stdio.h>

#define WFILE_MAX_PARTS 100 /* the first file and B01..B99 */

typedef struct {
    const char *path;                   /* the first part's name */
    char *name;                         /* room for any part's name */
    double start[WFILE_MAX_PARTS + 1];  /* logical offset of each part; start[parts] = size */
    int parts;
    FILE *f;                            /* the open part, or NULL */
    int open_part;
    double pos;                         /* logical position of the next read */
    double size;                        /* logical size: all parts */
    double bytes_read;                  /* every byte wfile_read returned */
} WFile;

/* Opens the checkpoint and finds its parts; any problem ends in fatal(). */
void wfile_open(WFile *w, const char *path);
/* The logical position of the next read (no I/O until then). */
void wfile_seek(WFile *w, double offset);
/* Reads n bytes (across parts) into dst, updating *crc when crc is not
 * NULL; fatal() when the file ends first or a read fails. */
void wfile_read(WFile *w, unsigned char *dst, double n, unsigned long *crc);
void wfile_close(WFile *w);

#endif
