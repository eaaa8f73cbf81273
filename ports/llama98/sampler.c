/* sampler.c - see sampler.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "fmath.h"
#include "sampler.h"
#include "util.h"

/* 0x2545F4914F6CDD1D, the xorshift64* multiplier, as two halves. */
#define MULT_HI 0x2545F491UL
#define MULT_LO 0x4F6CDD1DUL

unsigned long random_u32(u64 *s)
{
    unsigned long hi = s->hi, lo = s->lo;
    u64 p;
    unsigned long top;
    /* state ^= state >> 12 */
    lo ^= ((lo >> 12) | (hi << 20)) & U32_MASK;
    hi ^= hi >> 12;
    /* state ^= state << 25 */
    hi ^= ((hi << 25) | (lo >> 7)) & U32_MASK;
    lo ^= (lo << 25) & U32_MASK;
    /* state ^= state >> 27 */
    lo ^= ((lo >> 27) | (hi << 5)) & U32_MASK;
    hi ^= hi >> 27;
    s->hi = hi & U32_MASK;
    s->lo = lo & U32_MASK;
    /* bits 32..63 of state * multiplier (mod 2^64) */
    u64_mul32(s->lo, MULT_LO, &p);
    top = p.hi + ((s->lo * MULT_HI) & U32_MASK) + ((s->hi * MULT_LO) & U32_MASK);
    return top & U32_MASK;
}

/* A float in [0, 1) from the top 24 bits. */
static float random_f32(u64 *s)
{
    return (float)(random_u32(s) >> 8) / 16777216.0f;
}

void sampler_init(Sampler *s, int vocab_size, float temperature, float topp, const u64 *seed)
{
    s->vocab_size = vocab_size;
    s->temperature = temperature;
    s->topp = topp;
    s->rng_state = *seed;
    s->probindex = (ProbIndex *)xmalloc((double)vocab_size * sizeof(ProbIndex), "top-p sampling");
    s->scratch = (ProbIndex *)xmalloc((double)vocab_size * sizeof(ProbIndex), "top-p sampling");
}

void sampler_free(Sampler *s)
{
    xfree(s->probindex);
    xfree(s->scratch);
    s->probindex = NULL;
    s->scratch = NULL;
}

/* llama2.c's softmax; it lives here, in a file always compiled with strict
 * float rounding, because the sampler's decisions depend on its sums. */
void softmax(float *x, int size)
{
    float max_val = x[0];
    float sum = 0.0f;
    int i;
    for (i = 1; i < size; i++) {
        if (x[i] > max_val) {
            max_val = x[i];
        }
    }
    for (i = 0; i < size; i++) {
        x[i] = F_EXP(x[i] - max_val);
        sum += x[i];
    }
    for (i = 0; i < size; i++) {
        x[i] /= sum;
    }
}

static int argmax(const float *p, int n)
{
    int best = 0, i;
    float max_p = p[0];
    for (i = 1; i < n; i++) {
        if (p[i] > max_p) {
            best = i;
            max_p = p[i];
        }
    }
    return best;
}

static int sample_mult(const float *p, int n, float coin)
{
    float cdf = 0.0f;
    int i;
    for (i = 0; i < n; i++) {
        cdf += p[i];
        if (coin < cdf) {
            return i;
        }
    }
    return n - 1;
}

static int prob_before(const ProbIndex *a, const ProbIndex *b)
{
    return a->prob > b->prob || (a->prob == b->prob && a->index < b->index);
}

/* Our own stable merge sort by (prob descending, index ascending): qsort
 * is not stable and C libraries order equal probabilities differently,
 * which would make the sampled text depend on the platform. */
static void sort_probs(ProbIndex *a, ProbIndex *b, int n)
{
    int width, i;
    for (width = 1; width < n; width *= 2) {
        for (i = 0; i < n; i += 2 * width) {
            int mid = i + width < n ? i + width : n;
            int hi = i + 2 * width < n ? i + 2 * width : n;
            int p = i, q = mid, o = i;
            while (p < mid && q < hi) {
                b[o++] = prob_before(&a[q], &a[p]) ? a[q++] : a[p++];
            }
            while (p < mid) {
                b[o++] = a[p++];
            }
            while (q < hi) {
                b[o++] = a[q++];
            }
        }
        memcpy(a, b, (size_t)n * sizeof(ProbIndex));
    }
}

static int sample_topp(Sampler *s, const float *p, float coin)
{
    int n = s->vocab_size;
    ProbIndex *pi = s->probindex;
    int n0 = 0, last, i;
    float cumulative = 0.0f, r, cdf = 0.0f;
    /* candidates below (1 - topp) / (n - 1) cannot be in the nucleus */
    float cutoff = n > 1 ? (1.0f - s->topp) / (float)(n - 1) : 0.0f;
    for (i = 0; i < n; i++) {
        if (p[i] >= cutoff) {
            pi[n0].index = i;
            pi[n0].prob = p[i];
            n0++;
        }
    }
    if (n0 == 0) {
        /* only NaN probabilities are left; llama2.c would read out of
         * bounds here */
        return n - 1;
    }
    sort_probs(pi, s->scratch, n0);
    last = n0 - 1;
    for (i = 0; i < n0; i++) {
        cumulative += pi[i].prob;
        if (cumulative > s->topp) {
            last = i;
            break;
        }
    }
    r = coin * cumulative;
    for (i = 0; i <= last; i++) {
        cdf += pi[i].prob;
        if (r < cdf) {
            return pi[i].index;
        }
    }
    return pi[last].index;
}

int sampler_sample(Sampler *s, float *logits)
{
    int q;
    float coin;
    if (s->temperature == 0.0f) {
        return argmax(logits, s->vocab_size);
    }
    for (q = 0; q < s->vocab_size; q++) {
        logits[q] /= s->temperature;
    }
    softmax(logits, s->vocab_size);
    coin = random_f32(&s->rng_state);
    if (s->topp <= 0.0f || s->topp >= 1.0f) {
        return sample_mult(logits, s->vocab_size, coin);
    }
    return sample_topp(s, logits, coin);
}
