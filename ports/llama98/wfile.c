/* wfile.c - see wfile.h. */
#include <stdlib.h>
#include <string.h>
#include "util.h"
#include "wfile.h"

/* The name of part `index` (0: the path itself) into w->name. */
static void part_name(WFile *w, int index)
{
    const char *path = w->path;
    size_t len = strlen(path), base = 0, dot = 0, i;
    int lower = 0;
    strcpy(w->name, path);
    if (index == 0) {
        return;
    }
    for (i = 0; i < len; i++) {
        if (path[i] == '/' || path[i] == '\\' || path[i] == ':') {
            base = i + 1;
        }
    }
    for (i = base; i < len; i++) {
        if (path[i] == '.') {
            dot = i + 1;
        }
    }
    if (dot == 0) {
        dot = len + 1;
        w->name[len] = '.';
    }
    for (i = dot; i < len; i++) {
        if (path[i] >= 'a' && path[i] <= 'z') {
            lower = 1;
        }
    }
    w->name[dot] = (char)(lower ? 'b' : 'B');
    w->name[dot + 1] = (char)('0' + index / 10);
    w->name[dot + 2] = (char)('0' + index % 10);
    w->name[dot + 3] = '\0';
}

void wfile_open(WFile *w, const char *path)
{
    int i;
    memset(w, 0, sizeof(*w));
    w->path = path;
    w->name = (char *)xmalloc((double)strlen(path) + 5.0, "the checkpoint's part names");
    w->open_part = -1;
    for (i = 0; i < WFILE_MAX_PARTS; i++) {
        FILE *f;
        long size;
        part_name(w, i);
        f = fopen(w->name, "rb");
        if (f == NULL) {
            if (i == 0) {
                fatal("cannot open checkpoint %s", path);
            }
            break;
        }
        size = file_size(f);
        fclose(f);
        if (size < 0) {
            fatal("cannot determine the size of checkpoint %s: a file or part of 2 GB or more? "
                  "(split it into parts: FORMATS.md, \"Split checkpoints\")", w->name);
        }
        if (size == 0 && i > 0) {
            fatal("checkpoint part %s is empty", w->name);
        }
        w->start[i + 1] = w->start[i] + (double)size;
        w->parts = i + 1;
    }
    w->size = w->start[w->parts];
}

void wfile_seek(WFile *w, double offset)
{
    w->pos = offset;
}

/* Opens the part holding w->pos and positions it there. */
static void enter_part(WFile *w)
{
    int p = 0;
    while (p + 1 < w->parts && w->start[p + 1] <= w->pos) {
        p++;
    }
    if (p != w->open_part) {
        if (w->f != NULL) {
            fclose(w->f);
        }
        part_name(w, p);
        w->f = fopen(w->name, "rb");
        if (w->f == NULL) {
            fatal("cannot open checkpoint part %s", w->name);
        }
        w->open_part = p;
    }
    if (fseek(w->f, (long)(w->pos - w->start[p]), SEEK_SET) != 0) {
        part_name(w, p);
        fatal("cannot seek to byte %.0f of checkpoint part %s", w->pos - w->start[p], w->name);
    }
}

void wfile_read(WFile *w, unsigned char *dst, double n, unsigned long *crc)
{
    while (n > 0.0) {
        double in_part, take, got;
        if (w->pos + n > w->size) {
            fatal("checkpoint %s: truncated while reading weights (byte %.0f of %.0f)", w->path, w->pos + n,
                  w->size);
        }
        enter_part(w);
        in_part = w->start[w->open_part + 1] - w->pos;
        take = n < in_part ? n : in_part;
        got = read_chunks(w->f, dst, take, crc);
        if (got != take) {
            part_name(w, w->open_part);
            fatal("checkpoint %s: reading %s failed after %.0f of %.0f bytes", w->path, w->name, got, take);
        }
        w->pos += take;
        w->bytes_read += take;
        dst += (size_t)take;
        n -= take;
    }
}

void wfile_close(WFile *w)
{
    if (w->f != NULL) {
        fclose(w->f);
    }
    xfree(w->name);
    w->f = NULL;
    w->name = NULL;
    w->open_part = -1;
}
