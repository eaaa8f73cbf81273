/* bpetool.c - a test driver for bpe.c.
 *
 *   bpetool TOKENIZER [-s]   encode: stdin holds strings separated by NUL
 *                            bytes; prints one line of space-separated ids
 *                            per string (-s: special tokens' text is theirs)
 *   bpetool TOKENIZER -p     pieces: like encode, but prints the end offset
 *                            of every pre-tokenizer piece (in the text after
 *                            invalid UTF-8 became U+FFFD)
 *   bpetool TOKENIZER -d     decode: stdin holds ids; writes their bytes
 *   bpetool TOKENIZER -i     prints the header: tokens, BOS, EOS, stop ids
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bpe.h"
#include "util.h"

#ifdef _WIN32
#include <fcntl.h>
#include <io.h>
#endif

static unsigned char *read_stdin(long *len)
{
    long cap = 65536L, n = 0;
    unsigned char *buf = (unsigned char *)malloc((size_t)cap);
    size_t got;
    if (buf == NULL) {
        fatal("out of memory reading stdin");
    }
    while ((got = fread(buf + n, 1, (size_t)(cap - n), stdin)) > 0) {
        n += (long)got;
        if (n == cap) {
            unsigned char *bigger;
            if (cap > 134217728L) {
                fatal("stdin is longer than %ld bytes", cap);
            }
            bigger = (unsigned char *)realloc(buf, (size_t)cap * 2);
            if (bigger == NULL) {
                fatal("out of memory reading stdin");
            }
            buf = bigger;
            cap *= 2;
        }
    }
    if (ferror(stdin)) {
        fatal("cannot read stdin");
    }
    *len = n;
    return buf;
}

static void encode_all(const Bpe *b, int with_specials, int pieces)
{
    long len, pos = 0;
    unsigned char *text = read_stdin(&len);
    while (pos < len || (pos == 0 && len == 0)) {
        long end = pos, count, i;
        long *ids;
        unsigned char *one;
        while (end < len && text[end] != 0) {
            end++;
        }
        /* Each string gets a buffer of exactly its size, so a sanitizer sees
         * any read past its end. */
        one = (unsigned char *)xmalloc((double)(end - pos), "a string");
        memcpy(one, text + pos, (size_t)(end - pos));
        ids = (long *)xmalloc((double)bpe_max_ids(end - pos) * sizeof(long), "the ids");
        if (pieces) {
            long *ends = (long *)xmalloc((double)bpe_max_ids(end - pos) * sizeof(long), "the pieces");
            count = bpe_pieces(b, one, end - pos, with_specials, ids, ends);
            memcpy(ids, ends, (size_t)count * sizeof(long));
            xfree(ends);
        } else {
            count = bpe_encode(b, one, end - pos, with_specials, ids);
        }
        for (i = 0; i < count; i++) {
            printf(i ? " %ld" : "%ld", ids[i]);
        }
        printf("\n");
        xfree(ids);
        xfree(one);
        pos = end + 1;
        if (len == 0) {
            break;
        }
    }
    free(text); /* from read_stdin: malloc and realloc */
}

static void decode_all(const Bpe *b)
{
    long id;
    int got;
    while ((got = scanf("%ld", &id)) == 1) {
        long n;
        const unsigned char *p;
        if (id < 0 || id >= b->n_tokens) {
            fatal("id %ld is outside 0..%ld", id, b->n_tokens - 1);
        }
        p = bpe_token(b, id, &n);
        fwrite(p, 1, (size_t)n, stdout);
    }
    if (got != EOF) {
        fatal("stdin holds something that is not an id");
    }
}

int main(int argc, char **argv)
{
    Bpe b;
    const char *mode = argc > 2 ? argv[2] : "";
    long i;
    if (argc < 2 || argc > 3 || (argc == 3 && strcmp(mode, "-s") != 0 && strcmp(mode, "-d") != 0
                                 && strcmp(mode, "-i") != 0 && strcmp(mode, "-p") != 0)) {
        fatal("usage: bpetool TOKENIZER [-s | -p | -d | -i]");
    }
#ifdef _WIN32
    _setmode(_fileno(stdin), _O_BINARY);
    _setmode(_fileno(stdout), _O_BINARY);
#endif
    bpe_load(&b, argv[1]);
    if (strcmp(mode, "-d") == 0) {
        decode_all(&b);
    } else if (strcmp(mode, "-i") == 0) {
        printf("tokens %ld\nbos %ld\neos %ld\nstop", b.n_tokens, b.bos_id, b.eos_id);
        for (i = 0; i < b.n_stop; i++) {
            printf(" %ld", b.stop_ids[i]);
        }
        printf("\nspecials %ld\ncrc32 %08lX\n", b.n_specials, b.crc32);
    } else {
        encode_all(&b, strcmp(mode, "-s") == 0, strcmp(mode, "-p") == 0);
    }
    bpe_free(&b);
    return 0;
}
