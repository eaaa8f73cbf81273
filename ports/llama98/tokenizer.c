/* tokenizer.c - see tokenizer.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tokenizer.h"
#include "util.h"

/* Larger tokenizer files or pieces than these are not tokenizers. */
#define MAX_TOKENIZER_BYTES 67108864L
#define MAX_PIECE_BYTES 65536L

static int piece_before(const Tokenizer *t, int a, int b)
{
    int c = strcmp(t->vocab[a], t->vocab[b]);
    return c < 0 || (c == 0 && a < b);
}

/* Stable bottom-up merge sort of ids by (piece, id): identical on every C
 * library, unlike qsort, so duplicate pieces resolve to the lowest id. */
static void sort_vocab(Tokenizer *t)
{
    int n = t->vocab_size;
    int *a = t->sorted;
    int *b = (int *)xmalloc((double)n * sizeof(int), "sorting the vocabulary");
    int width, i;
    for (i = 0; i < n; i++) {
        a[i] = i;
    }
    for (width = 1; width < n; width *= 2) {
        for (i = 0; i < n; i += 2 * width) {
            int lo = i;
            int mid = i + width < n ? i + width : n;
            int hi = i + 2 * width < n ? i + 2 * width : n;
            int p = lo, q = mid, o = lo;
            while (p < mid && q < hi) {
                b[o++] = piece_before(t, a[q], a[p]) ? a[q++] : a[p++];
            }
            while (p < mid) {
                b[o++] = a[p++];
            }
            while (q < hi) {
                b[o++] = a[q++];
            }
        }
        memcpy(a, b, (size_t)n * sizeof(int));
    }
    xfree(b);
}

static int lookup(const Tokenizer *t, const char *str)
{
    int lo = 0, hi = t->vocab_size;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (strcmp(t->vocab[t->sorted[mid]], str) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo < t->vocab_size && strcmp(t->vocab[t->sorted[lo]], str) == 0) {
        return t->sorted[lo];
    }
    return -1;
}

void tokenizer_load(Tokenizer *t, const char *path, int vocab_size)
{
    FILE *f;
    long size;
    unsigned char *buf;
    double got;
    long off;
    char *out;
    int i;

    memset(t, 0, sizeof(*t));
    for (i = 0; i < 256; i++) {
        t->byte_pieces[2 * i] = (char)i;
        t->byte_pieces[2 * i + 1] = '\0';
    }
    f = fopen(path, "rb");
    if (f == NULL) {
        fatal("cannot open tokenizer %s", path);
    }
    size = file_size(f);
    if (size < 0) {
        fclose(f);
        fatal("cannot determine the size of tokenizer %s", path);
    }
    if (size > MAX_TOKENIZER_BYTES) {
        fclose(f);
        fatal("tokenizer %s is %ld bytes, more than the limit %ld", path, size,
              MAX_TOKENIZER_BYTES);
    }
    if (size < 4) {
        fclose(f);
        fatal("tokenizer %s is %ld bytes, too short for its header", path, size);
    }
    buf = (unsigned char *)xmalloc((double)size, "the tokenizer file");
    got = read_chunks(f, buf, (double)size, &t->crc32);
    if (got != (double)size || fgetc(f) != EOF) {
        fclose(f);
        fatal("tokenizer %s: read %.0f bytes, expected %ld", path, got, size);
    }
    fclose(f);
    t->file_bytes = size;
    t->vocab_size = vocab_size;
    t->max_token_length = read_le32(buf);
    if (t->max_token_length <= 0 || t->max_token_length > MAX_PIECE_BYTES) {
        fatal("tokenizer %s: max_token_length %ld is out of range 1..%ld", path,
              t->max_token_length, MAX_PIECE_BYTES);
    }
    t->vocab = (char **)xmalloc((double)vocab_size * sizeof(char *), "the vocabulary");
    t->scores = (float *)xmalloc((double)vocab_size * sizeof(float), "the vocabulary");
    t->sorted = (int *)xmalloc((double)vocab_size * sizeof(int), "the vocabulary");
    t->pieces = (char *)xmalloc((double)size + (double)vocab_size, "the vocabulary");
    off = 4;
    out = t->pieces;
    for (i = 0; i < vocab_size; i++) {
        long len;
        if (size - off < 8) {
            fatal("tokenizer %s ends after %d tokens, the model needs %d", path, i, vocab_size);
        }
        memcpy(&t->scores[i], buf + off, 4);
        len = read_le32(buf + off + 4);
        off += 8;
        if (len <= 0 || len > t->max_token_length) {
            fatal("tokenizer %s: token %d has length %ld, outside 1..max_token_length %ld",
                  path, i, len, t->max_token_length);
        }
        if (size - off < len) {
            fatal("tokenizer %s is truncated inside token %d (needs %ld more bytes, has %ld)",
                  path, i, len, size - off);
        }
        memcpy(out, buf + off, (size_t)len);
        out[len] = '\0';
        t->vocab[i] = out;
        out += len + 1;
        off += len;
    }
    xfree(buf);
    sort_vocab(t);
}

void tokenizer_free(Tokenizer *t)
{
    xfree(t->vocab);
    xfree(t->scores);
    xfree(t->sorted);
    xfree(t->pieces);
    memset(t, 0, sizeof(*t));
}

int tokenizer_encode(Tokenizer *t, const char *text, int *tokens)
{
    char *buf = (char *)xmalloc((double)t->max_token_length * 2.0 + 3.0, "encoding the prompt");
    size_t buf_len = 0;
    int n = 0;
    const unsigned char *c;

    tokens[n++] = 1; /* BOS */
    if (text[0] != '\0') {
        int space = lookup(t, " ");
        if (space < 0) {
            fatal("the tokenizer has no \" \" piece, cannot encode a prompt");
        }
        tokens[n++] = space;
    }
    /* Whole UTF-8 code points (at most 4 bytes) become their piece when the
     * vocabulary has one, otherwise one byte token each (id = byte + 3). */
    for (c = (const unsigned char *)text; *c != '\0'; c++) {
        int id;
        if ((*c & 0xC0) != 0x80) {
            buf_len = 0;
        }
        buf[buf_len++] = (char)*c;
        buf[buf_len] = '\0';
        if ((c[1] & 0xC0) == 0x80 && buf_len < 4) {
            continue;
        }
        id = lookup(t, buf);
        if (id != -1) {
            tokens[n++] = id;
        } else {
            size_t i;
            for (i = 0; i < buf_len; i++) {
                int byte_id = (int)(unsigned char)buf[i] + 3;
                if (byte_id >= t->vocab_size) {
                    fatal("prompt byte 0x%02X has no token: the vocabulary has only %d tokens",
                          (unsigned int)(unsigned char)buf[i], t->vocab_size);
                }
                tokens[n++] = byte_id;
            }
        }
        buf_len = 0;
    }
    /* Merge the adjacent pair whose merged piece scores best (the first
     * such pair on ties) until no pair merges. */
    for (;;) {
        float best_score = -1e10f;
        int best_id = -1, best_idx = -1;
        int i;
        for (i = 0; i < n - 1; i++) {
            size_t la = strlen(t->vocab[tokens[i]]);
            size_t lb = strlen(t->vocab[tokens[i + 1]]);
            int id;
            memcpy(buf, t->vocab[tokens[i]], la);
            memcpy(buf + la, t->vocab[tokens[i + 1]], lb);
            buf[la + lb] = '\0';
            id = lookup(t, buf);
            if (id != -1 && t->scores[id] > best_score) {
                best_score = t->scores[id];
                best_id = id;
                best_idx = i;
            }
        }
        if (best_idx == -1) {
            break;
        }
        tokens[best_idx] = best_id;
        for (i = best_idx + 1; i < n - 1; i++) {
            tokens[i] = tokens[i + 1];
        }
        n--;
    }
    xfree(buf);
    return n;
}

static int hex_value(int ch)
{
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }
    if (ch >= 'a' && ch <= 'f') {
        return ch - 'a' + 10;
    }
    if (ch >= 'A' && ch <= 'F') {
        return ch - 'A' + 10;
    }
    return -1;
}

static int is_c_space(int ch)
{
    return ch == ' ' || (ch >= '\t' && ch <= '\r');
}

/* Parses what llama2.c's sscanf(piece, "<0x%02hhX>", &b) accepts: "<0x",
 * optional white space, then a hex number of at most two characters
 * (a sign counts as one); the closing '>' is not checked. */
static int parse_byte_piece(const char *piece, unsigned char *out)
{
    const char *p;
    int width = 2, negative = 0, digits = 0;
    long value = 0;
    if (piece[0] != '<' || piece[1] != '0' || piece[2] != 'x') {
        return 0;
    }
    p = piece + 3;
    while (is_c_space((unsigned char)*p)) {
        p++;
    }
    if (*p == '-' || *p == '+') {
        negative = *p == '-';
        p++;
        width--;
    }
    while (width > 0 && hex_value((unsigned char)*p) >= 0) {
        value = value * 16 + hex_value((unsigned char)*p);
        p++;
        width--;
        digits++;
    }
    if (digits == 0) {
        return 0;
    }
    if (negative) {
        value = -value;
    }
    *out = (unsigned char)(value & 0xFF);
    return 1;
}

const char *tokenizer_decode(const Tokenizer *t, int prev, int next)
{
    const char *piece = t->vocab[next];
    unsigned char byte;
    if (prev == 1 && piece[0] == ' ') {
        piece++;
    }
    if (parse_byte_piece(piece, &byte)) {
        piece = t->byte_pieces + 2 * (int)byte;
    }
    return piece;
}

void print_piece(const char *piece, FILE *out)
{
    if (piece[0] == '\0') {
        return;
    }
    if (piece[1] == '\0') {
        /* isprint() || isspace() in the C locale, spelled out so every C
         * library agrees */
        int b = (unsigned char)piece[0];
        if (!((b >= 0x20 && b <= 0x7E) || is_c_space(b))) {
            return;
        }
    }
    fputs(piece, out);
}
