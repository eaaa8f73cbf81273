/* tokenizer.h - llama2.c tokenizer files: BPE encoding by merge score with
 * a dummy-prefix space and UTF-8 byte fallback, and piece decoding. */
#ifndef LLAMA98_TOKENIZER_H
#define LLAMA98_TOKENIZER_H

#include <stdio.h>

typedef struct {
    char **vocab;            /* vocab_size NUL-terminated pieces */
    float *scores;
    int *sorted;             /* token ids ordered by (piece, id) */
    char *pieces;            /* storage behind vocab */
    int vocab_size;
    long max_token_length;
    long file_bytes;
    unsigned long crc32;
    char byte_pieces[512];   /* "\xNN\0" for every byte value */
} Tokenizer;

void tokenizer_load(Tokenizer *t, const char *path, int vocab_size);
void tokenizer_free(Tokenizer *t);
/* Encodes text with a leading BOS into tokens (room for strlen(text) + 3
 * ids) and returns how many were written. */
int tokenizer_encode(Tokenizer *t, const char *text, int *tokens);
/* The piece to print when next follows prev (llama2.c decode()). */
const char *tokenizer_decode(const Tokenizer *t, int prev, int next);
/* Prints a piece unless it is a lone unprintable byte (llama2.c safe_printf). */
void print_piece(const char *piece, FILE *out);

#endif
