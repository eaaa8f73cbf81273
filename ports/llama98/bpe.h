/* bpe.h - byte-level BPE tokenizer files (FORMATS.md, "BPE tokenizer"):
 * Llama 3 regex pre-tokenization, merges by rank (tiktoken semantics),
 * special tokens, and the ids that begin and end a run. */
#ifndef LLAMA98_BPE_H
#define LLAMA98_BPE_H

#define BPE_SPECIAL (-1L)   /* rank of a special token: matched as text only */
#define BPE_UNUSED (-2L)    /* rank of an id with no token */

typedef struct {
    long n_tokens;           /* ids are 0..n_tokens-1 */
    long max_token_bytes;
    long pretokenizer;       /* 1: the Llama 3 regex */
    long flags;              /* bit 0: a whole piece in the vocabulary is one token */
    long bos_id;             /* -1 when there is none */
    long eos_id;
    long n_stop;
    long *stop_ids;
    long *rank;              /* per id: >= 0 ordinary, BPE_SPECIAL, BPE_UNUSED */
    long *length;            /* per id: bytes of the token */
    const unsigned char **bytes; /* per id: into data */
    long *table;             /* open-addressed hash of ordinary ids, -1 = empty */
    unsigned long table_mask;
    long *specials;          /* special ids, longest first */
    long n_specials;
    unsigned char *data;     /* the whole file */
    long file_bytes;
    unsigned long crc32;
} Bpe;

#define BPE_FLAG_WHOLE_PIECE 1L

/* Loads a tokenizer file; any fault is a fatal() one-line error. */
void bpe_load(Bpe *b, const char *path);
void bpe_free(Bpe *b);
/* Room for the ids of len bytes of text: an invalid byte becomes U+FFFD,
 * three bytes, and every byte is at most one token. */
long bpe_max_ids(long len);
/* Encodes len bytes of text (any bytes; invalid UTF-8 becomes U+FFFD the
 * way Python's errors="replace" does) into ids, which has room for
 * bpe_max_ids(len) ids, and returns how many were written.  With
 * with_specials, the text of a special token is that token. No BOS added. */
long bpe_encode(const Bpe *b, const unsigned char *text, long len, int with_specials, long *ids);
/* Encodes like bpe_encode, and writes to ends (room for bpe_max_ids(len))
 * the end offset of every piece in the text after U+FFFD replacement;
 * returns the number of pieces.  For tests of the pre-tokenizer. */
long bpe_pieces(const Bpe *b, const unsigned char *text, long len, int with_specials, long *ids,
                long *ends);
/* The bytes of a token (length 0 for an unused or out-of-range id). */
const unsigned char *bpe_token(const Bpe *b, long id, long *len);
/* True when id ends a run (the eos id or one of the stop ids). */
int bpe_is_stop(const Bpe *b, long id);

#endif
