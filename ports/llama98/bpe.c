/* bpe.c - see bpe.h.  The pre-tokenizer is the Llama 3 regex
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *    ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * written out as a hand-made matcher with the same leftmost-first,
 * greedy-with-backtracking result as the regex engines, over code points
 * classified by the generated tables in unicode_tables.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bpe.h"
#include "unicode_tables.h"
#include "util.h"

#define BPE_MAGIC "L98B"
#define BPE_VERSION 1L
#define BPE_MAX_FILE_BYTES 268435456L
#define BPE_MAX_TOKENS 16777216L
#define BPE_MAX_TOKEN_BYTES 65536L
#define BPE_MAX_TEXT 178956970L      /* 3 * this fits in a long */
#define REPLACEMENT 0xFFFDUL

/* ---- code point classes ---- */

static int uni_class(unsigned long cp)
{
    long lo = 0, hi = unicode_range_count - 1;
    while (lo <= hi) {
        long mid = lo + (hi - lo) / 2;
        if (cp < unicode_ranges[mid].first) {
            hi = mid - 1;
        } else if (cp > unicode_ranges[mid].last) {
            lo = mid + 1;
        } else {
            return unicode_ranges[mid].cls;
        }
    }
    return UNI_OTHER;
}

/* ---- UTF-8 ---- */

/* Decodes one code point from s[0..n) (n >= 1), never reading past n.  An
 * invalid sequence yields U+FFFD for its maximal valid prefix (at least one
 * byte), which is what Python's decode(errors="replace") does. */
static long utf8_next(const unsigned char *s, long n, unsigned long *cp)
{
    unsigned int b0 = s[0];
    unsigned int lo = 0x80, hi = 0xBF;
    long need, i;
    unsigned long v;

    if (b0 < 0x80) {
        *cp = b0;
        return 1;
    }
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        need = 1;
        v = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 2;
        v = b0 & 0x0F;
        if (b0 == 0xE0) {
            lo = 0xA0;
        } else if (b0 == 0xED) {
            hi = 0x9F;
        }
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 3;
        v = b0 & 0x07;
        if (b0 == 0xF0) {
            lo = 0x90;
        } else if (b0 == 0xF4) {
            hi = 0x8F;
        }
    } else {
        *cp = REPLACEMENT;
        return 1;
    }
    for (i = 1; i <= need; i++) {
        unsigned int c;
        if (i >= n) {
            *cp = REPLACEMENT;
            return i;
        }
        c = s[i];
        if (c < lo || c > hi) {
            *cp = REPLACEMENT;
            return i;
        }
        v = (v << 6) | (c & 0x3F);
        lo = 0x80;
        hi = 0xBF;
    }
    *cp = v;
    return need + 1;
}

static long utf8_put(unsigned long cp, unsigned char *out)
{
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000UL) {
        out[0] = (unsigned char)(0xE0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---- the vocabulary hash ---- */

static unsigned long hash_bytes(const unsigned char *p, long n)
{
    unsigned long h = 2166136261UL;
    long i;
    for (i = 0; i < n; i++) {
        h = ((h ^ p[i]) * 16777619UL) & 0xFFFFFFFFUL;
    }
    return h;
}

/* The ordinary id whose bytes are p[0..n), or -1. */
static long lookup(const Bpe *b, const unsigned char *p, long n)
{
    unsigned long slot = hash_bytes(p, n) & b->table_mask;
    for (;;) {
        long id = b->table[slot];
        if (id < 0) {
            return -1;
        }
        if (b->length[id] == n && memcmp(b->bytes[id], p, (size_t)n) == 0) {
            return id;
        }
        slot = (slot + 1) & b->table_mask;
    }
}

/* ---- loading ---- */

static long field(const Bpe *b, long *off, const char *path, const char *what)
{
    long v;
    if (b->file_bytes - *off < 4) {
        fatal("BPE tokenizer %s is truncated in %s", path, what);
    }
    v = read_le32(b->data + *off);
    *off += 4;
    return v;
}

static void check_id(const Bpe *b, long id, const char *path, const char *what)
{
    if (id < -1 || id >= b->n_tokens) {
        fatal("BPE tokenizer %s: %s id %ld is outside -1..%ld", path, what, id, b->n_tokens - 1);
    }
}

static void build_table(Bpe *b, const char *path)
{
    unsigned long size = 1;
    long id, n_ordinary = 0;
    for (id = 0; id < b->n_tokens; id++) {
        if (b->rank[id] >= 0) {
            n_ordinary++;
        }
    }
    while (size < (unsigned long)n_ordinary * 2UL) {
        size <<= 1;
    }
    b->table = (long *)xmalloc((double)size * sizeof(long), "the vocabulary hash");
    b->table_mask = size - 1;
    memset(b->table, 0xFF, (size_t)size * sizeof(long));
    for (id = 0; id < b->n_tokens; id++) {
        unsigned long slot;
        if (b->rank[id] < 0) {
            continue;
        }
        if (lookup(b, b->bytes[id], b->length[id]) >= 0) {
            fatal("BPE tokenizer %s: tokens %ld and %ld have the same bytes", path,
                  lookup(b, b->bytes[id], b->length[id]), id);
        }
        slot = hash_bytes(b->bytes[id], b->length[id]) & b->table_mask;
        while (b->table[slot] >= 0) {
            slot = (slot + 1) & b->table_mask;
        }
        b->table[slot] = id;
    }
    for (id = 0; id < 256; id++) {
        unsigned char c = (unsigned char)id;
        if (lookup(b, &c, 1) < 0) {
            fatal("BPE tokenizer %s has no token for the byte 0x%02lX", path, id);
        }
    }
}

static void collect_specials(Bpe *b)
{
    long id, i, j;
    b->specials = (long *)xmalloc((double)b->n_tokens * sizeof(long) + 1.0, "the special tokens");
    b->n_specials = 0;
    for (id = 0; id < b->n_tokens; id++) {
        if (b->rank[id] == BPE_SPECIAL) {
            b->specials[b->n_specials++] = id;
        }
    }
    /* Insertion sort, longest first, then lowest id: a stable order on
     * every C library, so at one position the longest special wins. */
    for (i = 1; i < b->n_specials; i++) {
        long v = b->specials[i];
        for (j = i; j > 0 && b->length[b->specials[j - 1]] < b->length[v]; j--) {
            b->specials[j] = b->specials[j - 1];
        }
        b->specials[j] = v;
    }
}

void bpe_load(Bpe *b, const char *path)
{
    FILE *f;
    long size, off, id, i;
    double got;

    memset(b, 0, sizeof(*b));
    f = fopen(path, "rb");
    if (f == NULL) {
        fatal("cannot open BPE tokenizer %s", path);
    }
    size = file_size(f);
    if (size < 0) {
        fclose(f);
        fatal("cannot determine the size of BPE tokenizer %s", path);
    }
    if (size > BPE_MAX_FILE_BYTES) {
        fclose(f);
        fatal("BPE tokenizer %s is %ld bytes, more than the limit %ld", path, size, BPE_MAX_FILE_BYTES);
    }
    if (size < 40) {
        fclose(f);
        fatal("BPE tokenizer %s is %ld bytes, too short for its header", path, size);
    }
    b->data = (unsigned char *)xmalloc((double)size, "the BPE tokenizer file");
    crc32_init();
    got = read_chunks(f, b->data, (double)size, &b->crc32);
    if (got != (double)size || fgetc(f) != EOF) {
        fclose(f);
        fatal("BPE tokenizer %s: read %.0f bytes, expected %ld", path, got, size);
    }
    fclose(f);
    b->file_bytes = size;
    if (memcmp(b->data, BPE_MAGIC, 4) != 0) {
        fatal("%s is not a BPE tokenizer (no L98B magic)", path);
    }
    off = 4;
    if (field(b, &off, path, "the header") != BPE_VERSION) {
        fatal("BPE tokenizer %s has version %ld, this program reads version %ld", path,
              read_le32(b->data + 4), BPE_VERSION);
    }
    b->n_tokens = field(b, &off, path, "the header");
    b->max_token_bytes = field(b, &off, path, "the header");
    b->pretokenizer = field(b, &off, path, "the header");
    b->flags = field(b, &off, path, "the header");
    b->bos_id = field(b, &off, path, "the header");
    b->eos_id = field(b, &off, path, "the header");
    b->n_stop = field(b, &off, path, "the header");
    if (b->n_tokens < 256 || b->n_tokens > BPE_MAX_TOKENS) {
        fatal("BPE tokenizer %s: %ld tokens is outside 256..%ld", path, b->n_tokens, BPE_MAX_TOKENS);
    }
    if (b->max_token_bytes < 1 || b->max_token_bytes > BPE_MAX_TOKEN_BYTES) {
        fatal("BPE tokenizer %s: max_token_bytes %ld is outside 1..%ld", path, b->max_token_bytes,
              BPE_MAX_TOKEN_BYTES);
    }
    if (b->pretokenizer != 1) {
        fatal("BPE tokenizer %s: pre-tokenizer %ld is unknown (1 = Llama 3)", path, b->pretokenizer);
    }
    if ((b->flags & ~BPE_FLAG_WHOLE_PIECE) != 0) {
        fatal("BPE tokenizer %s: unknown flags 0x%lX", path, b->flags);
    }
    check_id(b, b->bos_id, path, "BOS");
    check_id(b, b->eos_id, path, "EOS");
    if (b->n_stop < 0 || b->n_stop > b->n_tokens) {
        fatal("BPE tokenizer %s: %ld stop ids is outside 0..%ld", path, b->n_stop, b->n_tokens);
    }
    b->stop_ids = (long *)xmalloc((double)b->n_stop * sizeof(long) + 1.0, "the stop ids");
    for (i = 0; i < b->n_stop; i++) {
        b->stop_ids[i] = field(b, &off, path, "the stop ids");
        if (b->stop_ids[i] < 0 || b->stop_ids[i] >= b->n_tokens) {
            fatal("BPE tokenizer %s: stop id %ld is outside 0..%ld", path, b->stop_ids[i], b->n_tokens - 1);
        }
    }
    b->rank = (long *)xmalloc((double)b->n_tokens * sizeof(long), "the token ranks");
    b->length = (long *)xmalloc((double)b->n_tokens * sizeof(long), "the token lengths");
    b->bytes = (const unsigned char **)xmalloc((double)b->n_tokens * sizeof(unsigned char *),
                                               "the token table");
    for (id = 0; id < b->n_tokens; id++) {
        long rank = field(b, &off, path, "the tokens");
        long len = field(b, &off, path, "the tokens");
        long min_len = rank == BPE_UNUSED ? 0 : 1;
        long max_len = rank == BPE_UNUSED ? 0 : b->max_token_bytes;
        if (rank < BPE_UNUSED) {
            fatal("BPE tokenizer %s: token %ld has rank %ld", path, id, rank);
        }
        if (len < min_len || len > max_len) {
            fatal("BPE tokenizer %s: token %ld has length %ld, outside %ld..%ld", path, id, len,
                  min_len, max_len);
        }
        if (b->file_bytes - off < len) {
            fatal("BPE tokenizer %s is truncated inside token %ld", path, id);
        }
        b->rank[id] = rank;
        b->length[id] = len;
        b->bytes[id] = b->data + off;
        off += len;
    }
    if (off != b->file_bytes) {
        fatal("BPE tokenizer %s has %ld bytes after its last token", path, b->file_bytes - off);
    }
    build_table(b, path);
    collect_specials(b);
}

void bpe_free(Bpe *b)
{
    xfree(b->stop_ids);
    xfree(b->rank);
    xfree(b->length);
    xfree((void *)b->bytes);
    xfree(b->table);
    xfree(b->specials);
    xfree(b->data);
    memset(b, 0, sizeof(*b));
}

/* ---- the pre-tokenizer ---- */

static int is_letter(unsigned long c)
{
    return c >= 0x80 ? uni_class(c) == UNI_LETTER : ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
}

static int is_number(unsigned long c)
{
    return c >= 0x80 ? uni_class(c) == UNI_NUMBER : (c >= '0' && c <= '9');
}

static int is_space(unsigned long c)
{
    return c >= 0x80 ? uni_class(c) == UNI_SPACE : (c == ' ' || (c >= 0x09 && c <= 0x0D));
}

static int is_crlf(unsigned long c)
{
    return c == '\r' || c == '\n';
}

/* [^\s\p{L}\p{N}] */
static int is_other(unsigned long c)
{
    int k = uni_class(c);
    return k == UNI_OTHER;
}

/* The letter a code point matches case-insensitively in (?i:...), for the
 * letters of the contractions: ASCII case, and U+017F LONG S folds to s. */
static unsigned long fold(unsigned long c)
{
    if (c >= 'A' && c <= 'Z') {
        return c + 32;
    }
    if (c == 0x17FUL) {
        return 's';
    }
    return c;
}

/* The end of the match that starts at i < n (there always is one). */
static long match_at(const unsigned long *cp, long i, long n)
{
    unsigned long c = cp[i];
    long j, k;

    /* (?i:'s|'t|'re|'ve|'m|'ll|'d) */
    if (c == '\'' && i + 1 < n) {
        unsigned long d = fold(cp[i + 1]);
        if (d == 's' || d == 't' || d == 'm' || d == 'd') {
            return i + 2;
        }
        if (i + 2 < n) {
            unsigned long e = fold(cp[i + 2]);
            if ((d == 'r' && e == 'e') || (d == 'v' && e == 'e') || (d == 'l' && e == 'l')) {
                return i + 3;
            }
        }
    }
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    j = -1;
    if (is_letter(c)) {
        j = i;
    } else if (!is_crlf(c) && !is_number(c) && i + 1 < n && is_letter(cp[i + 1])) {
        j = i + 1;
    }
    if (j >= 0) {
        while (j < n && is_letter(cp[j])) {
            j++;
        }
        return j;
    }
    /* \p{N}{1,3} */
    if (is_number(c)) {
        for (j = i + 1; j < n && j < i + 3 && is_number(cp[j]); j++) {
        }
        return j;
    }
    /* ' ?[^\s\p{L}\p{N}]+[\r\n]*' */
    k = (c == ' ' && i + 1 < n) ? i + 1 : i;
    if (is_other(cp[k])) {
        for (j = k + 1; j < n && is_other(cp[j]); j++) {
        }
        while (j < n && is_crlf(cp[j])) {
            j++;
        }
        return j;
    }
    /* What is left starts with white space. */
    for (j = i + 1; j < n && is_space(cp[j]); j++) {
    }
    /* \s*[\r\n]+ ends after the last CR or LF of the run */
    for (k = j - 1; k >= i; k--) {
        if (is_crlf(cp[k])) {
            return k + 1;
        }
    }
    /* \s+(?!\S), else \s+ */
    if (j < n && j - 1 > i) {
        return j - 1;
    }
    return j;
}

/* ---- merging ---- */

/* Scratch for merging one piece of up to cap bytes.  Parts are named by
 * the offset of their first byte, which a merge keeps for the left part. */
typedef struct {
    long rank;
    long at;       /* the left part of the pair */
    long stamp;    /* the left part's stamp when the entry was made */
} HeapEntry;

typedef struct {
    long *next;    /* offset of the next part (n at the end) */
    long *prev;    /* offset of the previous part (-1 at the start) */
    long *stamp;   /* changes whenever the pair starting here changes; -1 = merged away */
    HeapEntry *heap;
    long count;
} MergeScratch;

static int entry_before(const HeapEntry *a, const HeapEntry *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->at < b->at);
}

static void heap_push(MergeScratch *m, long rank, long at, long stamp)
{
    long i = m->count++;
    HeapEntry e;
    e.rank = rank;
    e.at = at;
    e.stamp = stamp;
    while (i > 0 && entry_before(&e, &m->heap[(i - 1) / 2])) {
        m->heap[i] = m->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    m->heap[i] = e;
}

static HeapEntry heap_pop(MergeScratch *m)
{
    HeapEntry top = m->heap[0];
    HeapEntry last = m->heap[--m->count];
    long i = 0;
    for (;;) {
        long c = 2 * i + 1;
        if (c >= m->count) {
            break;
        }
        if (c + 1 < m->count && entry_before(&m->heap[c + 1], &m->heap[c])) {
            c++;
        }
        if (!entry_before(&m->heap[c], &last)) {
            break;
        }
        m->heap[i] = m->heap[c];
        i = c;
    }
    if (m->count > 0) {
        m->heap[i] = last;
    }
    return top;
}

/* Queues the pair that starts at part a when its bytes are a token. */
static void queue_pair(const Bpe *b, const unsigned char *p, long n, MergeScratch *m, long a)
{
    long end, id;
    if (a < 0 || m->next[a] >= n) {
        return;
    }
    end = m->next[m->next[a]];
    id = lookup(b, p + a, end - a);
    if (id >= 0) {
        heap_push(m, b->rank[id], a, m->stamp[a]);
    }
}

/* Byte-pair merges of piece p[0..n) by rank, lowest first, leftmost on a
 * tie (tiktoken's rule), in O(n log n) with a heap of candidate pairs whose
 * stale entries are skipped; writes the ids and returns how many. */
static long merge_piece(const Bpe *b, const unsigned char *p, long n, long *ids, MergeScratch *m)
{
    long i, out = 0;
    if (n == 1 || ((b->flags & BPE_FLAG_WHOLE_PIECE) && lookup(b, p, n) >= 0)) {
        ids[0] = lookup(b, p, n);
        return 1;
    }
    for (i = 0; i < n; i++) {
        m->next[i] = i + 1;
        m->prev[i] = i - 1;
        m->stamp[i] = 0;
    }
    m->count = 0;
    for (i = 0; i + 1 < n; i++) {
        queue_pair(b, p, n, m, i);
    }
    while (m->count > 0) {
        HeapEntry e = heap_pop(m);
        long a = e.at, j, k;
        if (m->stamp[a] != e.stamp) {
            continue;
        }
        j = m->next[a];
        k = m->next[j];
        m->next[a] = k;
        if (k < n) {
            m->prev[k] = a;
        }
        m->stamp[j] = -1;
        m->stamp[a]++;
        queue_pair(b, p, n, m, a);
        if (m->prev[a] >= 0) {
            m->stamp[m->prev[a]]++;
            queue_pair(b, p, n, m, m->prev[a]);
        }
    }
    for (i = 0; i < n; i = m->next[i]) {
        ids[out++] = lookup(b, p + i, m->next[i] - i);
    }
    return out;
}

/* ---- encoding ---- */

long bpe_max_ids(long len)
{
    return 3 * len + 1;
}

/* The special token that starts at s[0..n), longest first, or -1. */
static long special_at(const Bpe *b, const unsigned char *s, long n)
{
    long i;
    for (i = 0; i < b->n_specials; i++) {
        long id = b->specials[i];
        if (b->length[id] <= n && memcmp(b->bytes[id], s, (size_t)b->length[id]) == 0) {
            return id;
        }
    }
    return -1;
}

/* Splits and merges the code points cp[a..z) whose UTF-8 starts at
 * clean[off[a]]; returns the number of ids written. */
typedef struct {
    long *ends;        /* when not NULL, receives the end offset of every piece */
    long count;
} PieceLog;

static void log_piece(PieceLog *log, long end)
{
    if (log->ends != NULL) {
        log->ends[log->count] = end;
    }
    log->count++;
}

static long encode_span(const Bpe *b, const unsigned long *cp, const long *off,
                        const unsigned char *clean, long a, long z, long *ids, MergeScratch *m,
                        PieceLog *log)
{
    long i = a, out = 0;
    while (i < z) {
        long e = match_at(cp, i, z);
        out += merge_piece(b, clean + off[i], off[e] - off[i], ids + out, m);
        log_piece(log, off[e]);
        i = e;
    }
    return out;
}

static long encode_text(const Bpe *b, const unsigned char *text, long len, int with_specials, long *ids,
                        PieceLog *log)
{
    unsigned long *cp;
    long *off;
    unsigned char *clean;
    MergeScratch m;
    long n = 0, pos = 0, bytes = 0, out = 0, seg, i;

    if (len < 0 || len > BPE_MAX_TEXT) {
        fatal("a text of %ld bytes is too long to encode", len);
    }
    cp = (unsigned long *)xmalloc((double)len * sizeof(unsigned long) + 1.0, "encoding text");
    off = (long *)xmalloc(((double)len + 1.0) * sizeof(long), "encoding text");
    clean = (unsigned char *)xmalloc(3.0 * (double)len + 1.0, "encoding text");
    m.next = (long *)xmalloc((3.0 * (double)len + 1.0) * sizeof(long), "encoding text");
    m.prev = (long *)xmalloc((3.0 * (double)len + 1.0) * sizeof(long), "encoding text");
    m.stamp = (long *)xmalloc((3.0 * (double)len + 1.0) * sizeof(long), "encoding text");
    /* n - 1 first pairs, then at most two per merge, and at most n - 1 merges */
    m.heap = (HeapEntry *)xmalloc((9.0 * (double)len + 1.0) * sizeof(HeapEntry), "encoding text");
    while (pos < len) {
        pos += utf8_next(text + pos, len - pos, &cp[n]);
        off[n] = bytes;
        bytes += utf8_put(cp[n], clean + bytes);
        n++;
    }
    off[n] = bytes;
    /* Special tokens cut the text into spans that are split separately. */
    seg = 0;
    for (i = 0; i < n; i++) {
        long id = with_specials ? special_at(b, clean + off[i], bytes - off[i]) : -1;
        long e;
        if (id < 0) {
            continue;
        }
        out += encode_span(b, cp, off, clean, seg, i, ids + out, &m, log);
        ids[out++] = id;
        for (e = i; off[e] < off[i] + b->length[id]; e++) {
        }
        log_piece(log, off[e]);
        seg = e;
        i = e - 1;
    }
    out += encode_span(b, cp, off, clean, seg, n, ids + out, &m, log);
    xfree(cp);
    xfree(off);
    xfree(clean);
    xfree(m.next);
    xfree(m.prev);
    xfree(m.stamp);
    xfree(m.heap);
    return out;
}

long bpe_encode(const Bpe *b, const unsigned char *text, long len, int with_specials, long *ids)
{
    PieceLog log;
    log.ends = NULL;
    log.count = 0;
    return encode_text(b, text, len, with_specials, ids, &log);
}

long bpe_pieces(const Bpe *b, const unsigned char *text, long len, int with_specials, long *ids,
                long *ends)
{
    PieceLog log;
    log.ends = ends;
    log.count = 0;
    encode_text(b, text, len, with_specials, ids, &log);
    return log.count;
}

const unsigned char *bpe_token(const Bpe *b, long id, long *len)
{
    if (id < 0 || id >= b->n_tokens) {
        *len = 0;
        return (const unsigned char *)"";
    }
    *len = b->length[id];
    return b->bytes[id];
}

int bpe_is_stop(const Bpe *b, long id)
{
    long i;
    if (id >= 0 && id == b->eos_id) {
        return 1;
    }
    for (i = 0; i < b->n_stop; i++) {
        if (b->stop_ids[i] == id) {
            return 1;
        }
    }
    return 0;
}
