/* sampler.h - llama2.c's sampler: argmax at temperature 0, otherwise
 * softmax and a coin from xorshift64*: multinomial, or top-p. */
#ifndef LLAMA98_SAMPLER_H
#define LLAMA98_SAMPLER_H

#include "u64.h"

typedef struct {
    float prob;
    int index;
} ProbIndex;

typedef struct {
    int vocab_size;
    float temperature;
    float topp;
    u64 rng_state;
    ProbIndex *probindex;  /* vocab_size candidates */
    ProbIndex *scratch;    /* vocab_size, for the merge sort */
} Sampler;

void sampler_init(Sampler *s, int vocab_size, float temperature, float topp, const u64 *seed);
void sampler_free(Sampler *s);
/* Picks the next token; may scale and softmax the logits in place. */
int sampler_sample(Sampler *s, float *logits);

/* In place, as llama2.c: used for attention weights and probabilities. */
void softmax(float *x, int size);

/* Exposed for tests of the 64-bit emulation. */
unsigned long random_u32(u64 *state);

#endif
