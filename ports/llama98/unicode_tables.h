/* unicode_tables.h - code point classes for the Llama 3 pre-tokenizer,
 * generated from Python's unicodedata (see unicode_tables.c). */
#ifndef LLAMA98_UNICODE_TABLES_H
#define LLAMA98_UNICODE_TABLES_H

#define UNI_OTHER 0
#define UNI_LETTER 1   /* \p{L}: Lu Ll Lt Lm Lo */
#define UNI_NUMBER 2   /* \p{N}: Nd Nl No */
#define UNI_SPACE 3    /* \s: the White_Space property */

typedef struct {
    unsigned long first;
    unsigned long last;
    int cls;
} UnicodeRange;

extern const char unicode_tables_version[];
extern const long unicode_range_count;
extern const UnicodeRange unicode_ranges[];

#endif
