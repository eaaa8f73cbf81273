/* model.c - see model.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fmath.h"
#include "model.h"

/* The RoPE base of llama2.c's models. Overridable only so that the harness's tests can build a deliberately
 * wrong binary (another base) and prove the judge names where its text diverges. */
#ifndef LLAMA98_ROPE_BASE
#define LLAMA98_ROPE_BASE 10000.0f
#endif
#include "qdot.h"
#include "sampler.h"
#include "timer.h"
#include "util.h"

#define V0_HEADER_BYTES 28
#define AK42_HEADER_BYTES 256
#define AK42_MAGIC 0x616B3432L
#define L98M_HEADER_BYTES 256
#define L98M_VERSION 3
#define L98M_FLAG_SHARED 1L

static const char *const field_names[7] = {
    "dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"
};

/* Upper bounds that no real model reaches but that keep every size below
 * the limits checked later; they turn garbage headers into clear errors. */
static const long field_limits[7] = {
    65536L, 1048576L, 1024L, 65536L, 65536L, 1048576L, 1048576L
};

static const char *const tensor_names[7] = { "wq", "wk", "wv", "wo", "w1", "w2", "w3" };

const char *weight_type_name(int type)
{
    return type == WT_Q8_0 ? "q8_0" : type == WT_TERNARY ? "ternary" : "fp32";
}

/* Forces a value through a 32-bit float in memory.  With x87 excess
 * precision a product could otherwise reach cos() or pow() unrounded and
 * the RoPE table would differ from an SSE build. */
static float round_float(float value)
{
    volatile float stored = value;
    return stored;
}

/* The same for a double: x87 keeps 80-bit intermediates, SSE2 rounds each
 * step to 64 bits as the oracle's numpy does. */
static double round_double(double value)
{
    volatile double stored = value;
    return stored;
}

static void validate_header(const char *path, long v[7], Config *c)
{
    int i;
    long head_size;
    c->shared = 1;
    if (v[5] < 0) {
        if (v[5] < -field_limits[5]) {
            fatal("checkpoint %s: vocab_size %ld is out of range (at most %ld tokens)",
                  path, v[5], field_limits[5]);
        }
        v[5] = -v[5];
        c->shared = 0;
    }
    for (i = 0; i < 7; i++) {
        if (v[i] <= 0) {
            fatal("checkpoint %s: header field %s is %ld, it must be positive",
                  path, field_names[i], v[i]);
        }
        if (v[i] > field_limits[i]) {
            fatal("checkpoint %s: header field %s is %ld, more than the limit %ld",
                  path, field_names[i], v[i], field_limits[i]);
        }
    }
    if (v[5] < 2) {
        fatal("checkpoint %s: vocab_size %ld is too small, token 1 (BOS) must exist", path, v[5]);
    }
    if (v[0] % v[3] != 0) {
        fatal("checkpoint %s: dim %ld is not divisible by n_heads %ld", path, v[0], v[3]);
    }
    if (v[3] % v[4] != 0) {
        fatal("checkpoint %s: n_heads %ld is not divisible by n_kv_heads %ld", path, v[3], v[4]);
    }
    head_size = v[0] / v[3];
    if (head_size % 2 != 0) {
        fatal("checkpoint %s: head size %ld (dim / n_heads) is odd, RoPE needs pairs",
              path, head_size);
    }
    c->dim = (int)v[0];
    c->hidden_dim = (int)v[1];
    c->n_layers = (int)v[2];
    c->n_heads = (int)v[3];
    c->n_kv_heads = (int)v[4];
    c->vocab_size = (int)v[5];
    c->seq_len = (int)v[6];
}

/* Reads the ak42 header's format fields (version 2: llama2.c's Q8_0 export;
 * version 98: ours, FORMATS.md) after the seven dimensions. */
static void read_ak42_flags(const char *path, const unsigned char *h, Config *c)
{
    int i;
    long gs;
    c->version = (int)read_le32(h + 4);
    if (c->version != 2 && c->version != 98) {
        fatal("checkpoint %s: ak42 format version %d is not supported (legacy v0, v2 Q8_0 and 98 ternary are)",
              path, c->version);
    }
    if (h[36] > 1) {
        fatal("checkpoint %s: shared-classifier byte is %d, expected 0 or 1", path, (int)h[36]);
    }
    c->shared = h[36];
    c->ffn = FFN_SILU;
    c->sub_norms = 0;
    c->classifier_type = WT_F32;
    if (c->version == 2) {
        gs = read_le32(h + 37);
        c->weight_type = WT_Q8_0;
        if (gs <= 0 || gs > 65536L) {
            fatal("checkpoint %s: group size %ld is out of range", path, gs);
        }
        if (c->dim % gs != 0) {
            fatal("checkpoint %s: group size %ld does not divide dim %d", path, gs, c->dim);
        }
        if (c->hidden_dim % gs != 0) {
            fatal("checkpoint %s: group size %ld does not divide hidden_dim %d", path, gs, c->hidden_dim);
        }
        c->group_size = (int)gs;
        c->classifier_type = WT_Q8_0;
        return;
    }
    c->weight_type = h[37];
    c->ffn = h[38];
    c->sub_norms = h[39];
    c->classifier_type = h[40];
    c->group_size = c->dim;
    if (c->weight_type != WT_TERNARY) {
        fatal("checkpoint %s: weight type %d is not supported in version 98 (2 = ternary)", path,
              c->weight_type);
    }
    if (c->ffn > FFN_RELU2 || c->sub_norms > 1 || c->classifier_type > WT_Q8_0) {
        fatal("checkpoint %s: bad version 98 flags ffn=%d sub_norms=%d classifier=%d", path, c->ffn,
              c->sub_norms, c->classifier_type);
    }
    if (c->classifier_type == WT_Q8_0 && c->shared) {
        fatal("checkpoint %s: an int8 classifier is stored on its own, the shared byte must be 0", path);
    }
    for (i = 41; i < AK42_HEADER_BYTES; i++) {
        if (h[i] != 0) {
            fatal("checkpoint %s: reserved header byte %d is %d, not 0", path, i, (int)h[i]);
        }
    }
    if (c->dim % 4 != 0 || c->hidden_dim % 4 != 0) {
        fatal("checkpoint %s: ternary rows pack 4 weights per byte: dim %d and hidden_dim %d must be "
              "multiples of 4", path, c->dim, c->hidden_dim);
    }
}

/* A little-endian IEEE single (host_float_ok() has checked the host's). */
static float read_f32(const unsigned char *p)
{
    float value;
    memcpy(&value, p, sizeof(value));
    return value;
}

/* A float that is a number and below 1e30 (C89 has no isfinite). */
static int finite_float(float x)
{
    return x == x && x > -1e30f && x < 1e30f;
}

/* Reads the L98M version 3 header's fields after the seven dimensions
 * (FORMATS.md, "Checkpoint version 3"). */
static void read_l98m_fields(const char *path, const unsigned char *h, Config *c)
{
    long flags, original;
    int i;
    c->version = (int)read_le32(h + 4);
    if (c->version != L98M_VERSION) {
        fatal("checkpoint %s: L98M checkpoint version %d is not supported (only 3)", path, c->version);
    }
    c->weight_type = (int)read_le32(h + 36);
    if (c->weight_type != WT_F32) {
        fatal("checkpoint %s: weight type %d is not supported in version 3 (0 = float32)", path, c->weight_type);
    }
    flags = read_le32(h + 40);
    if ((flags & ~L98M_FLAG_SHARED) != 0) {
        fatal("checkpoint %s: unknown flags %ld in the version 3 header", path, flags);
    }
    c->shared = (int)(flags & L98M_FLAG_SHARED);
    c->classifier_type = WT_F32;
    c->rope_theta = read_f32(h + 44);
    c->norm_eps = read_f32(h + 48);
    if (!finite_float(c->rope_theta) || !(c->rope_theta > 1.0f) || !finite_float(c->norm_eps) ||
        !(c->norm_eps > 0.0f && c->norm_eps < 1.0f)) {
        fatal("checkpoint %s: impossible rope_theta=%g or norm_eps=%g", path, (double)c->rope_theta,
              (double)c->norm_eps);
    }
    c->rope_scaling = (int)read_le32(h + 52);
    c->rope_factor = read_f32(h + 56);
    c->rope_low = read_f32(h + 60);
    c->rope_high = read_f32(h + 64);
    original = read_le32(h + 68);
    c->rope_original = original;
    if (c->rope_scaling == ROPE_SCALING_LLAMA3) {
        if (!finite_float(c->rope_factor) || !finite_float(c->rope_low) || !finite_float(c->rope_high) ||
            !(c->rope_factor >= 1.0f) || !(c->rope_low > 0.0f) || !(c->rope_low < c->rope_high) ||
            original <= 0) {
            fatal("checkpoint %s: impossible llama3 rope scaling factor=%g low=%g high=%g original=%ld", path,
                  (double)c->rope_factor, (double)c->rope_low, (double)c->rope_high, original);
        }
    } else if (c->rope_scaling != ROPE_SCALING_NONE || c->rope_factor != 0.0f || c->rope_low != 0.0f ||
               c->rope_high != 0.0f || original != 0) {
        fatal("checkpoint %s: rope scaling type %d is not supported (0 none, 1 llama3)", path, c->rope_scaling);
    }
    for (i = 72; i < L98M_HEADER_BYTES; i++) {
        if (h[i] != 0) {
            fatal("checkpoint %s: reserved header byte %d is %d, not 0", path, i, (int)h[i]);
        }
    }
}

/* Bytes one tensor of `count` weights takes in the file. */
static double tensor_bytes(const Config *c, int type, double count)
{
    if (type == WT_Q8_0) {
        return count + 4.0 * count / (type == c->weight_type ? c->group_size : c->dim);
    }
    if (type == WT_TERNARY) {
        return 4.0 + count / 4.0;
    }
    return 4.0 * count;
}

/* Number of bytes the file must hold after the header, in double so that
 * no header can overflow the computation. */
static double expected_bytes(const Config *c)
{
    double D = c->dim, H = c->hidden_dim, L = c->n_layers, V = c->vocab_size;
    double hs = (double)(c->dim / c->n_heads);
    double kvd = hs * c->n_kv_heads;
    int wt = c->weight_type;
    double n;
    if (c->version == L98M_VERSION) {
        n = V * D + L * (2.0 * D + 2.0 * D * D + 2.0 * D * kvd + 3.0 * D * H) + D + (c->shared ? 0.0 : V * D);
        return 4.0 * n;
    }
    if (c->version == 0) {
        n = V * D + 2.0 * L * D + 2.0 * L * D * D + 2.0 * L * D * kvd + 3.0 * L * D * H + D;
        n += (double)c->seq_len * hs; /* legacy freq_cis real and imaginary tables */
        if (!c->shared) {
            n += V * D;
        }
        return 4.0 * n;
    }
    n = 4.0 * (2.0 * L * D + D);                                  /* norms */
    if (c->sub_norms) {
        n += 4.0 * L * (D + H);
    }
    n += tensor_bytes(c, c->version == 2 ? WT_Q8_0 : WT_F32, V * D);  /* embedding */
    n += L * (2.0 * tensor_bytes(c, wt, D * D) + 2.0 * tensor_bytes(c, wt, kvd * D) +
              3.0 * tensor_bytes(c, wt, D * H));
    if (!c->shared) {
        n += tensor_bytes(c, c->classifier_type, V * D);
    }
    return n;
}

/* ---- where every tensor lies in the file -------------------------------- */

/* A stretch of the file the start-up pass reads into memory: an RMSNorm
 * weight, a resident tensor's values or scales, a ternary scale.  Packed
 * ternary values that stream are listed too (dst NULL) so they are still
 * checked once. */
struct Span {
    double offset;
    double bytes;
    unsigned char *dst;   /* NULL: read for the CRC and the checks only */
    const Tensor *tensor; /* packed ternary values to check, else NULL */
};

/* Walks the file front to back as a format's layout places things in it. */
typedef struct {
    Model *m;
    double at;
    float *norm; /* next free float of m->norms */
} Layout;

/* Rows and columns of layer matrix k (wq, wk, wv, wo, w1, w2, w3). */
static void layer_matrix_shape(const Model *m, int k, int *rows, int *cols)
{
    int D = m->config.dim, H = m->config.hidden_dim, K = m->kv_dim;
    static const int row_kind[7] = { 0, 1, 1, 0, 2, 0, 2 }; /* 0: dim, 1: kv_dim, 2: hidden */
    *rows = row_kind[k] == 0 ? D : row_kind[k] == 1 ? K : H;
    *cols = k == 5 ? H : D;
}

/* Bytes tensor t takes in the file. */
static double tensor_file_bytes(const Tensor *t)
{
    double count = (double)t->rows * (double)t->cols;
    if (t->type == WT_Q8_0) {
        return count + 4.0 * count / t->group;
    }
    if (t->type == WT_TERNARY) {
        return 4.0 + count / 4.0;
    }
    return 4.0 * count;
}

/* Bytes tensor t takes in memory when resident (a ternary scale lives in
 * the Tensor). */
static double tensor_memory_bytes(const Tensor *t)
{
    return tensor_file_bytes(t) - (t->type == WT_TERNARY ? 4.0 : 0.0);
}

static void place_tensor(Layout *y, Tensor *t, int type, int group, int rows, int cols)
{
    memset(t, 0, sizeof(*t));
    t->type = type;
    t->group = group;
    t->rows = rows;
    t->cols = cols;
    t->offset = y->at;
    y->at += tensor_file_bytes(t);
}

static void place_layer_tensor(Layout *y, int k, int layer, int type, int group)
{
    int rows, cols;
    Model *m = y->m;
    layer_matrix_shape(m, k, &rows, &cols);
    place_tensor(y, m->layer_tensors + k * m->config.n_layers + layer, type, group, rows, cols);
}

/* `count` RMSNorm floats at the current place, read to `dst`. */
static void place_norm_to(Layout *y, float *dst, double count)
{
    Model *m = y->m;
    struct Span *span = m->norm_spans + m->n_norm_spans++;
    span->offset = y->at;
    span->bytes = 4.0 * count;
    span->dst = (unsigned char *)dst;
    span->tensor = NULL;
    y->at += 4.0 * count;
}

/* The same into the next free floats of m->norms; returns where. */
static const float *place_norm(Layout *y, double count)
{
    float *dst = y->norm;
    place_norm_to(y, dst, count);
    y->norm += (size_t)count;
    return dst;
}

/* Legacy v0: embedding, then each kind of weight for all layers. */
static void layout_v0(Layout *y)
{
    Model *m = y->m;
    const Config *c = &m->config;
    Weights *w = &m->weights;
    int k, l, L = c->n_layers;
    place_tensor(y, &w->token_embedding, WT_F32, 0, c->vocab_size, c->dim);
    w->rms_att = place_norm(y, (double)L * c->dim);
    for (k = 0; k < 4; k++) {
        for (l = 0; l < L; l++) {
            place_layer_tensor(y, k, l, WT_F32, 0);
        }
    }
    w->rms_ffn = place_norm(y, (double)L * c->dim);
    for (k = 4; k < 7; k++) {
        for (l = 0; l < L; l++) {
            place_layer_tensor(y, k, l, WT_F32, 0);
        }
    }
    w->rms_final = place_norm(y, c->dim);
    y->at += 4.0 * (double)c->seq_len * (double)m->head_size; /* legacy freq_cis tables, unused */
    if (!c->shared) {
        place_tensor(y, &w->wcls, WT_F32, 0, c->vocab_size, c->dim);
    }
}

/* Versions 2 and 98: the norms first, the embedding, each kind of matrix for
 * all layers, the classifier. */
static void layout_ak42(Layout *y)
{
    Model *m = y->m;
    const Config *c = &m->config;
    Weights *w = &m->weights;
    int k, l, L = c->n_layers, gs = c->group_size;
    w->rms_att = place_norm(y, (double)L * c->dim);
    w->rms_ffn = place_norm(y, (double)L * c->dim);
    w->rms_final = place_norm(y, c->dim);
    if (c->sub_norms) {
        w->sub_att = place_norm(y, (double)L * c->dim);
        w->sub_ffn = place_norm(y, (double)L * c->hidden_dim);
    }
    place_tensor(y, &w->token_embedding, c->version == 2 ? WT_Q8_0 : WT_F32, gs, c->vocab_size, c->dim);
    for (k = 0; k < 7; k++) {
        for (l = 0; l < L; l++) {
            place_layer_tensor(y, k, l, c->weight_type, gs);
        }
    }
    if (!c->shared) {
        place_tensor(y, &w->wcls, c->classifier_type, c->classifier_type == c->weight_type ? gs : c->dim,
                     c->vocab_size, c->dim);
    }
}

/* Version 3: each layer's tensors together (rms_att, wq, wk, wv, wo,
 * rms_ffn, w1, w2, w3); the norms go to the same (layer, dim) arrays as in
 * every other format. */
static void layout_v3(Layout *y)
{
    Model *m = y->m;
    const Config *c = &m->config;
    Weights *w = &m->weights;
    int k, l, L = c->n_layers;
    float *rms_att = y->norm, *rms_ffn = rms_att + (size_t)L * (size_t)c->dim;
    float *rms_final = rms_ffn + (size_t)L * (size_t)c->dim;
    place_tensor(y, &w->token_embedding, WT_F32, 0, c->vocab_size, c->dim);
    for (l = 0; l < L; l++) {
        place_norm_to(y, rms_att + (size_t)l * (size_t)c->dim, c->dim);
        for (k = 0; k < 4; k++) {
            place_layer_tensor(y, k, l, c->weight_type, 0);
        }
        place_norm_to(y, rms_ffn + (size_t)l * (size_t)c->dim, c->dim);
        for (k = 4; k < 7; k++) {
            place_layer_tensor(y, k, l, c->weight_type, 0);
        }
    }
    place_norm_to(y, rms_final, c->dim);
    w->rms_att = rms_att;
    w->rms_ffn = rms_ffn;
    w->rms_final = rms_final;
    if (!c->shared) {
        place_tensor(y, &w->wcls, WT_F32, 0, c->vocab_size, c->dim);
    }
}

/* Finds where every tensor and norm lies (the only format-specific part of
 * loading); returns where the layout ends. */
static double layout_weights(Model *m)
{
    const Config *c = &m->config;
    Weights *w = &m->weights;
    double L = c->n_layers, D = c->dim, H = c->hidden_dim;
    double norm_floats = 2.0 * L * D + D + (c->sub_norms ? L * (D + H) : 0.0);
    Layout y;
    m->norms = (float *)xmalloc(4.0 * norm_floats, "the RMSNorm weights");
    m->norm_spans = (struct Span *)xmalloc((2.0 * L + 6.0) * sizeof(struct Span), "the weight table");
    m->n_norm_spans = 0;
    m->layer_tensors = (Tensor *)xmalloc(7.0 * L * sizeof(Tensor), "the weight table");
    memset(&w->wcls, 0, sizeof(Tensor));
    w->sub_att = NULL;
    w->sub_ffn = NULL;
    w->wq = m->layer_tensors;
    w->wk = w->wq + c->n_layers;
    w->wv = w->wk + c->n_layers;
    w->wo = w->wv + c->n_layers;
    w->w1 = w->wo + c->n_layers;
    w->w2 = w->w1 + c->n_layers;
    w->w3 = w->w2 + c->n_layers;
    y.m = m;
    y.at = m->header_bytes;
    y.norm = m->norms;
    if (c->version == 0) {
        layout_v0(&y);
    } else if (c->version == L98M_VERSION) {
        layout_v3(&y);
    } else {
        layout_ak42(&y);
    }
    return y.at;
}

static float *alloc_floats(double count, const char *what)
{
    return (float *)xmalloc(count * (double)sizeof(float), what);
}

double model_kv_bytes(const Model *m, int positions)
{
    return 2.0 * 4.0 * (double)m->config.n_layers * (double)positions * (double)m->kv_dim;
}

/* llama3 RoPE frequency scaling (FORMATS.md), in double and rounded to
 * float, in the oracle's order of operations. */
static float llama3_scaled(const Config *c, float freq)
{
    double f = (double)freq, factor = (double)c->rope_factor;
    double low = (double)c->rope_low, high = (double)c->rope_high, original = (double)c->rope_original;
    double wavelength = round_double(2.0 * 3.14159265358979323846 / f);
    double smooth;
    if (wavelength < round_double(original / high)) {
        return freq;
    }
    if (wavelength > round_double(original / low)) {
        return round_float((float)round_double(f / factor));
    }
    smooth = round_double(round_double(original / wavelength - low) / (high - low));
    return round_float((float)round_double(round_double(round_double((1.0 - smooth) * f) / factor) +
                                           round_double(smooth * f)));
}

static void alloc_run_state(Model *m, int positions)
{
    const Config *c = &m->config;
    RunState *s = &m->state;
    double kv;
    int half = m->head_size / 2;
    int widest = c->hidden_dim > c->dim ? c->hidden_dim : c->dim;
    int i;
    if (positions < 1 || positions > c->seq_len) {
        fatal("a run of %d positions does not fit the model's seq_len %d", positions, c->seq_len);
    }
    s->positions = positions;
    kv = (double)c->n_layers * positions * m->kv_dim;
    s->x = alloc_floats(c->dim, "activations");
    s->xb = alloc_floats(c->dim, "activations");
    s->xb2 = alloc_floats(c->dim, "activations");
    s->hb = alloc_floats(c->hidden_dim, "activations");
    s->hb2 = alloc_floats(c->hidden_dim, "activations");
    s->q = alloc_floats(c->dim, "activations");
    s->att = alloc_floats((double)c->n_heads * positions, "attention scores");
    s->logits = alloc_floats(c->vocab_size, "logits");
    s->key_cache = alloc_floats(kv, "the key cache");
    s->value_cache = alloc_floats(kv, "the value cache");
    s->rope_freq = alloc_floats(half, "RoPE tables");
    s->rope_cos = alloc_floats(half, "RoPE tables");
    s->rope_sin = alloc_floats(half, "RoPE tables");
    s->aq = (signed char *)xmalloc(widest, "activations");
    s->as = alloc_floats(widest, "activations");
    s->a16 = (short *)xmalloc((double)widest * sizeof(short), "activations");
    s->sums = (long *)xmalloc((double)widest * sizeof(long), "activations");
    /* llama2.c: freq = 1.0f / powf(10000.0f, head_dim / (float)head_size),
     * each step rounded to float as IEEE single arithmetic would; version 3
     * takes the base from the header and may scale the result (llama3). */
    for (i = 0; i < half; i++) {
        float exponent = round_float((float)(2 * i) / (float)m->head_size);
        float power = round_float(F_POW(c->rope_theta, exponent));
        s->rope_freq[i] = round_float(1.0f / power);
        if (c->rope_scaling == ROPE_SCALING_LLAMA3) {
            s->rope_freq[i] = llama3_scaled(c, s->rope_freq[i]);
        }
    }
    s->sqrt_head_size = round_float((float)sqrt((double)m->head_size));
}

/* ---- keeping weights in memory or streaming them ------------------------ */

#define STREAM_BUFFER_BYTES 4194304.0 /* rows are read in chunks up to this size */
#define STREAM_PAD 16.0               /* Q8_0: the scales start on an aligned byte */
#define LATER_BYTES 65536.0           /* allocations after model_start (stdio, the timer), with room */

/* Bytes one row of t takes in the stream buffer. */
static double row_bytes(const Tensor *t)
{
    if (t->type == WT_Q8_0) {
        return t->cols + 4.0 * t->cols / t->group;
    }
    if (t->type == WT_TERNARY) {
        return t->cols / 4.0;
    }
    return 4.0 * t->cols;
}

/* All weight tensors, in the order they are kept resident: layer by layer,
 * then the classifier, then the embedding (one row per token when it is
 * streamed; it is the classifier too when shared).  Returns the count. */
static int tensors_by_priority(Model *m, Tensor **order)
{
    int k, l, n = 0, L = m->config.n_layers;
    for (l = 0; l < L; l++) {
        for (k = 0; k < 7; k++) {
            order[n++] = m->layer_tensors + k * L + l;
        }
    }
    if (!m->config.shared) {
        order[n++] = &m->weights.wcls;
    }
    order[n++] = &m->weights.token_embedding;
    return n;
}

/* Bytes a token reads from the file for streamed tensor t: every row; for
 * the embedding one row, and every row again when it is the classifier. */
static double streamed_per_token(const Model *m, const Tensor *t)
{
    if (t != &m->weights.token_embedding) {
        return tensor_memory_bytes(t); /* a ternary scale is read once, at the start */
    }
    return row_bytes(t) + (m->config.shared ? tensor_memory_bytes(t) : 0.0);
}

/* Decides which tensors stay in memory within the budget and allocates
 * them and the stream buffer. */
static void place_weights(Model *m, Tensor **order, int n)
{
    double total = 0.0, widest = 0.0, largest = 0.0, room, buffer;
    int i;
    for (i = 0; i < n; i++) {
        double bytes = tensor_memory_bytes(order[i]);
        total += bytes;
        if (bytes > largest) {
            largest = bytes;
        }
        if (row_bytes(order[i]) > widest) {
            widest = row_bytes(order[i]);
        }
    }
    room = m->budget - alloc_current() - LATER_BYTES;
    for (i = 0; i < n; i++) {
        order[i]->resident = 1;
    }
    if (m->budget_source == BUDGET_NONE || total <= room) {
        return;
    }
    /* A quarter of what is left (the rest keeps tensors resident), within
     * two of the widest rows and STREAM_BUFFER_BYTES or the largest tensor. */
    buffer = room / 4.0;
    if (buffer > STREAM_BUFFER_BYTES) {
        buffer = STREAM_BUFFER_BYTES;
    }
    if (buffer > largest + STREAM_PAD) {
        buffer = largest + STREAM_PAD;
    }
    if (buffer < 2.0 * widest + STREAM_PAD) {
        buffer = 2.0 * widest + STREAM_PAD;
    }
    buffer = floor(buffer);
    if (room < buffer) {
        fatal("a memory budget of %.0f bytes is too small for this model: the run state, norms and tokenizer "
              "take %.0f bytes and streaming the weights needs a buffer of %.0f more", m->budget,
              alloc_current() + LATER_BYTES, buffer);
    }
    room -= buffer;
    m->stream = (unsigned char *)xmalloc(buffer, "the stream buffer");
    m->stream_bytes = buffer;
    for (i = 0; i < n; i++) {
        double bytes = tensor_memory_bytes(order[i]);
        order[i]->resident = bytes <= room;
        if (order[i]->resident) {
            room -= bytes;
        }
    }
}

static void add_span(struct Span *spans, int *n, double offset, double bytes, void *dst, const Tensor *t)
{
    spans[*n].offset = offset;
    spans[*n].bytes = bytes;
    spans[*n].dst = (unsigned char *)dst;
    spans[*n].tensor = t;
    (*n)++;
}

/* Allocates resident tensor t and lists the spans that fill it (a ternary
 * tensor's scale always; its packed values, resident or not, for the check). */
static void tensor_spans(Tensor *t, struct Span *spans, int *n)
{
    double count = (double)t->rows * (double)t->cols;
    if (t->type == WT_TERNARY) {
        unsigned char *packed = NULL;
        add_span(spans, n, t->offset, 4.0, &t->scale, NULL);
        if (t->resident) {
            packed = (unsigned char *)xmalloc(count / 4.0, "the resident weights");
            t->packed = packed;
        }
        add_span(spans, n, t->offset + 4.0, count / 4.0, packed, t);
    } else if (!t->resident) {
        return;
    } else if (t->type == WT_Q8_0) {
        signed char *q = (signed char *)xmalloc(count, "the resident weights");
        float *s = alloc_floats(count / t->group, "the resident weights");
        t->q = q;
        t->s = s;
        add_span(spans, n, t->offset, count, q, NULL);
        add_span(spans, n, t->offset + count, 4.0 * count / t->group, s, NULL);
    } else {
        float *f = alloc_floats(count, "the resident weights");
        t->f = f;
        add_span(spans, n, t->offset, 4.0 * count, f, NULL);
    }
}

static int span_order(const void *a, const void *b)
{
    double x = ((const struct Span *)a)->offset, y = ((const struct Span *)b)->offset;
    return x < y ? -1 : x > y ? 1 : 0;
}

/* The name of tensor t for error messages, and its layer. */
static const char *tensor_name(const Model *m, const Tensor *t, int *layer)
{
    int index = (int)(t - m->layer_tensors);
    *layer = 0;
    if (t >= m->layer_tensors && index < 7 * m->config.n_layers) {
        *layer = index % m->config.n_layers;
        return tensor_names[index / m->config.n_layers];
    }
    return t == &m->weights.wcls ? "classifier" : "embedding";
}

/* Packed ternary bytes p[0..n) (bytes first.. of tensor t): code 3 is not
 * a weight, so a file that has it was packed wrongly. */
static void check_ternary(const Model *m, const Tensor *t, const unsigned char *p, double n, double first)
{
    double i;
    for (i = 0.0; i < n; i += 1.0) {
        unsigned char b = p[(size_t)i];
        if (b & (b >> 1) & 0x55) {
            int layer;
            const char *name = tensor_name(m, t, &layer);
            fatal("checkpoint %s: ternary tensor %s of layer %d has the invalid 2-bit code 3 in byte %.0f: "
                  "wrong packing", m->file.path, name, layer, first + i);
        }
    }
}

/* Reads span->bytes at the file's position without keeping them (the CRC
 * and, for packed ternary values, the check still see every byte). */
static void read_through(Model *m, double bytes, const Tensor *ternary, unsigned char *scratch, double room)
{
    double done = 0.0;
    while (done < bytes) {
        double take = bytes - done < room ? bytes - done : room;
        wfile_read(&m->file, scratch, take, &m->crc32);
        if (ternary != NULL) {
            check_ternary(m, ternary, scratch, take, done);
        }
        done += take;
    }
}

/* One pass over the whole file, front to back: resident tensors and norms
 * are filled, everything is in the CRC, packed ternary values are checked. */
static void read_file_once(Model *m, Tensor **order, int n)
{
    struct Span *spans = (struct Span *)xmalloc((2.0 * n + m->n_norm_spans) * sizeof(struct Span),
                                                "the weight table");
    unsigned char *scratch = m->stream;
    double room = m->stream_bytes, pos = m->header_bytes;
    int count = 0, i;
    for (i = 0; i < m->n_norm_spans; i++) {
        spans[count++] = m->norm_spans[i];
    }
    for (i = 0; i < n; i++) {
        tensor_spans(order[i], spans, &count);
    }
    qsort(spans, (size_t)count, sizeof(struct Span), span_order);
    if (scratch == NULL) {
        room = 65536.0;
        scratch = (unsigned char *)xmalloc(room, "the read buffer");
    }
    wfile_seek(&m->file, pos);
    for (i = 0; i < count; i++) {
        const struct Span *sp = spans + i;
        read_through(m, sp->offset - pos, NULL, scratch, room);
        if (sp->dst != NULL) {
            wfile_read(&m->file, sp->dst, sp->bytes, &m->crc32);
            if (sp->tensor != NULL) {
                check_ternary(m, sp->tensor, sp->dst, sp->bytes, 0.0);
            }
        } else {
            read_through(m, sp->bytes, sp->tensor, scratch, room);
        }
        pos = sp->offset + sp->bytes;
    }
    read_through(m, m->file_bytes - pos, NULL, scratch, room);
    if (scratch != m->stream) {
        xfree(scratch);
    }
    xfree(spans);
    for (i = 0; i < n; i++) {
        const Tensor *t = order[i];
        if (t->type == WT_TERNARY && (!(t->scale >= 0.0f) || t->scale > 1e30f)) {
            int layer;
            const char *name = tensor_name(m, t, &layer);
            fatal("checkpoint %s: ternary tensor %s of layer %d has the scale %g", m->file.path, name, layer,
                  (double)t->scale);
        }
    }
}

void model_start(Model *m, int positions, double budget, int budget_source)
{
    Tensor **order;
    int n, i;
    alloc_run_state(m, positions);
    m->budget = budget;
    m->budget_source = budget_source;
    order = (Tensor **)xmalloc((7.0 * m->config.n_layers + 2.0) * sizeof(Tensor *), "the weight table");
    n = tensors_by_priority(m, order);
    place_weights(m, order, n);
    read_file_once(m, order, n);
    m->resident_bytes = 0.0;
    m->streamed_bytes = 0.0;
    for (i = 0; i < n; i++) {
        if (order[i]->resident) {
            m->resident_bytes += tensor_memory_bytes(order[i]);
        } else {
            m->streamed_bytes += streamed_per_token(m, order[i]);
        }
    }
    xfree(order);
    if (m->config.shared) {
        m->weights.wcls = m->weights.token_embedding;
    }
    if (m->streamed_bytes == 0.0) {
        wfile_close(&m->file); /* nothing streams: the file is not needed any more */
    }
}

void model_load(Model *m, const char *path)
{
    unsigned char header[AK42_HEADER_BYTES];
    long v[7];
    double size, expected, end;
    int i, header_bytes = V0_HEADER_BYTES;

    memset(m, 0, sizeof(*m));
    wfile_open(&m->file, path);
    size = m->file.size;
    if (size < V0_HEADER_BYTES) {
        fatal("checkpoint %s is %.0f bytes, shorter than the %d-byte header", path, size, V0_HEADER_BYTES);
    }
    wfile_read(&m->file, header, V0_HEADER_BYTES, &m->crc32);
    if (read_le32(header) == AK42_MAGIC || memcmp(header, "L98M", 4) == 0) {
        header_bytes = AK42_HEADER_BYTES;
        if (size < AK42_HEADER_BYTES) {
            fatal("checkpoint %s is %.0f bytes, shorter than the %d-byte %s header", path, size,
                  AK42_HEADER_BYTES, header[0] == 'L' ? "L98M" : "ak42");
        }
        wfile_read(&m->file, header + V0_HEADER_BYTES, AK42_HEADER_BYTES - V0_HEADER_BYTES, &m->crc32);
    }
    m->header_bytes = header_bytes;
    for (i = 0; i < 7; i++) {
        v[i] = read_le32(header + 4 * i + (header_bytes == V0_HEADER_BYTES ? 0 : 8));
    }
    if (v[5] < 0 && memcmp(header, "L98M", 4) == 0) {
        fatal("checkpoint %s: vocab_size %ld must be positive in an L98M header", path, v[5]);
    }
    validate_header(path, v, &m->config);
    m->config.version = 0;
    m->config.weight_type = WT_F32;
    m->config.classifier_type = WT_F32;
    m->config.rope_theta = LLAMA98_ROPE_BASE;
    m->config.norm_eps = 1e-5f;
    m->config.rope_scaling = ROPE_SCALING_NONE;
    if (memcmp(header, "L98M", 4) == 0) {
        read_l98m_fields(path, header, &m->config);
    } else if (header_bytes == AK42_HEADER_BYTES) {
        if (!m->config.shared) {
            fatal("checkpoint %s: vocab_size must be positive in an ak42 header", path);
        }
        read_ak42_flags(path, header, &m->config);
    }
    m->head_size = m->config.dim / m->config.n_heads;
    m->kv_dim = m->head_size * m->config.n_kv_heads;
    expected = header_bytes + expected_bytes(&m->config);
    if (expected != size) {
        fatal("checkpoint %s: its header implies %.0f bytes but the file%s %.0f bytes%s", path, expected,
              m->file.parts > 1 ? "'s parts have" : " has", size, expected > size ? " (truncated?)" : "");
    }
    end = layout_weights(m);
    if (end != size) {
        fatal("checkpoint %s: the weights end at byte %.0f, not at the file's end %.0f", path, end, size);
    }
    m->file_bytes = size;
}

/* Frees what a resident tensor holds. */
static void free_tensor(Tensor *t)
{
    if (t->resident) {
        xfree((void *)t->f);
        xfree((void *)t->q);
        xfree((void *)t->s);
        xfree((void *)t->packed);
    }
}

void model_free(Model *m)
{
    RunState *s = &m->state;
    int i;
    xfree(s->x);
    xfree(s->xb);
    xfree(s->xb2);
    xfree(s->hb);
    xfree(s->hb2);
    xfree(s->q);
    xfree(s->att);
    xfree(s->logits);
    xfree(s->key_cache);
    xfree(s->value_cache);
    xfree(s->rope_freq);
    xfree(s->rope_cos);
    xfree(s->rope_sin);
    xfree(s->aq);
    xfree(s->as);
    xfree(s->a16);
    xfree(s->sums);
    for (i = 0; i < 7 * m->config.n_layers; i++) {
        free_tensor(m->layer_tensors + i);
    }
    free_tensor(&m->weights.token_embedding);
    if (!m->config.shared) {
        free_tensor(&m->weights.wcls);
    }
    xfree(m->layer_tensors);
    xfree(m->norms);
    xfree(m->norm_spans);
    xfree(m->stream);
    if (m->file.name != NULL) {
        wfile_close(&m->file);
    }
    memset(m, 0, sizeof(*m));
}

/* ---- forward pass ---------------------------------------------------- */

/* Dot product summed strictly left to right into one accumulator (the
 * order llama2.c uses), unrolled so the loop overhead is paid once per
 * four products. */
static float dot(const float *a, const float *b, int n)
{
    float val = 0.0f;
    int j = 0;
    for (; j + 4 <= n; j += 4) {
        val += a[j] * b[j];
        val += a[j + 1] * b[j + 1];
        val += a[j + 2] * b[j + 2];
        val += a[j + 3] * b[j + 3];
    }
    for (; j < n; j++) {
        val += a[j] * b[j];
    }
    return val;
}

/* Two dot products against the same x at once: each x[j] is loaded once
 * for both rows, and each row still sums strictly left to right. */
static void dot2(const float *a, const float *b, const float *x, int n, float *out)
{
    float va = 0.0f, vb = 0.0f;
    int j = 0;
    for (; j + 4 <= n; j += 4) {
        va += a[j] * x[j];
        vb += b[j] * x[j];
        va += a[j + 1] * x[j + 1];
        vb += b[j + 1] * x[j + 1];
        va += a[j + 2] * x[j + 2];
        vb += b[j + 2] * x[j + 2];
        va += a[j + 3] * x[j + 3];
        vb += b[j + 3] * x[j + 3];
    }
    for (; j < n; j++) {
        va += a[j] * x[j];
        vb += b[j] * x[j];
    }
    out[0] = va;
    out[1] = vb;
}

/* W (d, n) @ x (n) -> xout (d), fp32 */
static void matmul(float *xout, const float *x, const float *w, int n, int d)
{
    int i = 0;
    for (; i + 2 <= d; i += 2) {
        dot2(w, w + n, x, n, xout + i);
        w += 2 * n;
    }
    for (; i < d; i++) {
        xout[i] = dot(w, x, n);
        w += n;
    }
}

/* llama2.c runq's quantize(): symmetric int8 in groups, scale = max|x| /
 * 127, value = round(x / scale) with halves away from zero.  The scale and
 * the quotient are rounded to float as an SSE build rounds them. */
static void quantize(signed char *q, float *s, const float *x, int n, int group)
{
    int g, i;
    for (g = 0; g < n; g += group) {
        float wmax = 0.0f, scale;
        for (i = 0; i < group; i++) {
            float a = (float)fabs((double)x[g + i]);
            if (a > wmax) {
                wmax = a;
            }
        }
        scale = round_float(wmax / 127.0f);
        s[g / group] = scale;
        for (i = 0; i < group; i++) {
            long r = 0;
            if (scale != 0.0f) {
                double v = (double)round_float(x[g + i] / scale);
                r = v >= 0.0 ? (long)(v + 0.5) : -(long)(-v + 0.5);
            }
            q[g + i] = (signed char)r;
        }
    }
}

/* The quantized activation widened to int16 once per matrix (qdot.h). */
static void widen(short *x16, const signed char *xq, int n)
{
    int i;
    for (i = 0; i < n; i++) {
        x16[i] = xq[i];
    }
}

/* runq's matmul: an exact integer sum per group, then
 * val += ((float)sum * w_scale) * x_scale, group after group. */
static void matmul_q8(float *xout, const short *xq, const float *xs, const Tensor *w, int n, int d,
                      long *sums)
{
    int i, g, groups = n / w->group;
    const signed char *row = w->q;
    const float *ws = w->s;
    for (i = 0; i < d; i++) {
        float val = 0.0f;
        qdot_i8_groups(xq, row, n, w->group, sums);
        for (g = 0; g < groups; g++) {
            val += ((float)sums[g] * ws[g]) * xs[g];
        }
        xout[i] = val;
        row += n;
        ws += groups;
    }
}

/* Ternary (BitNet b1.58): the activation is one int8 group (absmax per
 * token), each row an exact integer sum, then ((float)sum * mean|W|) * x_scale. */
static void matmul_ternary(float *xout, const short *xq, float xs, const Tensor *w, int n, int d)
{
    int i;
    const unsigned char *row = w->packed;
    for (i = 0; i < d; i++) {
        long ival = qdot_t2(xq, row, n);
        xout[i] = ((float)ival * w->scale) * xs;
        row += n / 4;
    }
}

/* Rows r0..r1-1 of streamed tensor t, read into the stream buffer; `view`
 * is t with those rows resident (the Q8_0 scales follow the values, on an
 * aligned byte).  The time it takes goes to m->io_ticks. */
static void stream_rows(Model *m, const Tensor *t, int r0, int r1, Tensor *view)
{
    double first = (double)r0 * t->cols, n = (double)(r1 - r0) * t->cols;
    unsigned char *buffer = m->stream;
    u64 t0, t1, spent;
    timer_now(&t0);
    *view = *t;
    view->rows = r1 - r0;
    view->resident = 1;
    if (t->type == WT_F32) {
        wfile_seek(&m->file, t->offset + 4.0 * first);
        wfile_read(&m->file, buffer, 4.0 * n, NULL);
        view->f = (const float *)(void *)buffer;
    } else if (t->type == WT_Q8_0) {
        size_t scales_at = ((size_t)n + (size_t)STREAM_PAD - 1) / (size_t)STREAM_PAD * (size_t)STREAM_PAD;
        double count = (double)t->rows * t->cols;
        wfile_seek(&m->file, t->offset + first);
        wfile_read(&m->file, buffer, n, NULL);
        wfile_seek(&m->file, t->offset + count + 4.0 * first / t->group);
        wfile_read(&m->file, buffer + scales_at, 4.0 * n / t->group, NULL);
        view->q = (const signed char *)buffer;
        view->s = (const float *)(void *)(buffer + scales_at);
    } else {
        wfile_seek(&m->file, t->offset + 4.0 + first / 4.0);
        wfile_read(&m->file, buffer, n / 4.0, NULL);
        view->packed = buffer;
    }
    timer_now(&t1);
    u64_sub(&spent, &t1, &t0);
    u64_add(&m->io_ticks, &m->io_ticks, &spent);
}

/* Rows of streamed tensor t per read: what the buffer holds, an even
 * number so that matmul() pairs rows as it does for a resident tensor. */
static int chunk_rows(const Model *m, const Tensor *t)
{
    double fit = (m->stream_bytes - STREAM_PAD) / row_bytes(t);
    int rows = fit >= (double)t->rows ? t->rows : (int)fit;
    if (rows < t->rows && rows > 1) {
        rows &= ~1;
    }
    return rows;
}

/* The product on rows already in memory, the activation prepared. */
static void matmul_rows(RunState *s, float *xout, const float *x, const Tensor *w, int n, int d)
{
    if (w->type == WT_F32) {
        matmul(xout, x, w->f, n, d);
    } else if (w->type == WT_Q8_0) {
        matmul_q8(xout, s->a16, s->as, w, n, d, s->sums);
    } else {
        matmul_ternary(xout, s->a16, s->as[0], w, n, d);
    }
}

/* The one matmul dispatch: W (d, n) @ x (n) -> xout (d), in W's type.
 * Quantized types quantize x first (as runq does before each product).  A
 * streamed W is read a chunk of rows at a time; every row's sum is the
 * same as from memory, so streamed and resident runs print the same text. */
static void linear(Model *m, float *xout, const float *x, const Tensor *w, int n, int d)
{
    RunState *s = &m->state;
    int r0, step;
    if (w->type != WT_F32) {
        quantize(s->aq, s->as, x, n, w->type == WT_Q8_0 ? w->group : n);
        widen(s->a16, s->aq, n);
    }
    if (w->resident) {
        matmul_rows(s, xout, x, w, n, d);
        return;
    }
    step = chunk_rows(m, w);
    for (r0 = 0; r0 < d; r0 += step) {
        Tensor view;
        int r1 = d - r0 > step ? r0 + step : d;
        stream_rows(m, w, r0, r1, &view);
        matmul_rows(s, xout + r0, x, &view, n, r1 - r0);
    }
}

/* Row `token` of the embedding, dequantized as runq does (q * scale); a
 * streamed embedding reads just that row. */
static void embed(Model *m, float *x, const Tensor *e, int token, int dim)
{
    size_t off = (size_t)token * (size_t)dim;
    Tensor row;
    int i;
    if (!e->resident) {
        stream_rows(m, e, token, token + 1, &row);
        e = &row;
        off = 0;
    }
    if (e->type == WT_F32) {
        memcpy(x, e->f + off, (size_t)dim * sizeof(float));
        return;
    }
    for (i = 0; i < dim; i++) {
        x[i] = (float)e->q[off + i] * e->s[(off + i) / e->group];
    }
}

static void rmsnorm(float *o, const float *x, const float *weight, int size, float eps)
{
    float ss = 0.0f;
    int j;
    for (j = 0; j < size; j++) {
        ss += x[j] * x[j];
    }
    ss /= (float)size;
    ss += eps;
    ss = 1.0f / (float)sqrt((double)ss);
    for (j = 0; j < size; j++) {
        o[j] = weight[j] * (ss * x[j]);
    }
}

/* Rotates consecutive pairs of vec (n floats, whole heads) by the current
 * position's angles. */
static void rope_rotate(float *vec, int n, const RunState *s, int head_size)
{
    int i, k;
    for (i = 0; i < n; i += head_size) {
        float *v = vec + i;
        for (k = 0; k < head_size; k += 2) {
            float fcr = s->rope_cos[k / 2];
            float fci = s->rope_sin[k / 2];
            float v0 = v[k];
            float v1 = v[k + 1];
            v[k] = v0 * fcr - v1 * fci;
            v[k + 1] = v0 * fci + v1 * fcr;
        }
    }
}

static void attention(Model *m, int layer, int pos)
{
    const Config *c = &m->config;
    RunState *s = &m->state;
    int head_size = m->head_size;
    int kv_dim = m->kv_dim;
    int kv_mul = c->n_heads / c->n_kv_heads;
    size_t loff = (size_t)layer * (size_t)s->positions * (size_t)kv_dim;
    int h, t, i;
    for (h = 0; h < c->n_heads; h++) {
        const float *q = s->q + h * head_size;
        float *att = s->att + (size_t)h * (size_t)s->positions;
        size_t head_off = loff + (size_t)((h / kv_mul) * head_size);
        const float *k = s->key_cache + head_off;
        const float *v = s->value_cache + head_off;
        float *xb = s->xb + h * head_size;
        for (t = 0; t <= pos; t++) {
            float score = dot(q, k, head_size);
            score /= s->sqrt_head_size;
            att[t] = score;
            k += kv_dim;
        }
        softmax(att, pos + 1);
        for (i = 0; i < head_size; i++) {
            xb[i] = 0.0f;
        }
        for (t = 0; t <= pos; t++) {
            float a = att[t];
            for (i = 0; i < head_size; i++) {
                xb[i] += a * v[i];
            }
            v += kv_dim;
        }
    }
}

float *model_forward(Model *m, int token, int pos)
{
    const Config *c = &m->config;
    const Weights *w = &m->weights;
    RunState *s = &m->state;
    int dim = c->dim;
    int hidden = c->hidden_dim;
    int kv_dim = m->kv_dim;
    int half = m->head_size / 2;
    float *x = s->x;
    int l, i;

    embed(m, x, &w->token_embedding, token, dim);

    /* The rotation angles depend only on the position: llama2.c recomputes
     * them for every pair of every layer, the results are the same. */
    for (i = 0; i < half; i++) {
        float val = round_float((float)pos * s->rope_freq[i]);
        s->rope_cos[i] = round_float(F_COS(val));
        s->rope_sin[i] = round_float(F_SIN(val));
    }

    for (l = 0; l < c->n_layers; l++) {
        size_t loff = (size_t)l * (size_t)s->positions * (size_t)kv_dim;
        float *k = s->key_cache + loff + (size_t)pos * (size_t)kv_dim;
        float *v = s->value_cache + loff + (size_t)pos * (size_t)kv_dim;

        rmsnorm(s->xb, x, w->rms_att + (size_t)l * dim, dim, c->norm_eps);
        linear(m, s->q, s->xb, &w->wq[l], dim, dim);
        linear(m, k, s->xb, &w->wk[l], dim, kv_dim);
        linear(m, v, s->xb, &w->wv[l], dim, kv_dim);
        rope_rotate(s->q, dim, s, m->head_size);
        rope_rotate(k, kv_dim, s, m->head_size);

        attention(m, l, pos);

        if (w->sub_att != NULL) {
            rmsnorm(s->xb, s->xb, w->sub_att + (size_t)l * dim, dim, c->norm_eps);
        }
        linear(m, s->xb2, s->xb, &w->wo[l], dim, dim);
        for (i = 0; i < dim; i++) {
            x[i] += s->xb2[i];
        }

        rmsnorm(s->xb, x, w->rms_ffn + (size_t)l * dim, dim, c->norm_eps);
        linear(m, s->hb, s->xb, &w->w1[l], dim, hidden);
        linear(m, s->hb2, s->xb, &w->w3[l], dim, hidden);
        if (c->ffn == FFN_RELU2) {
            for (i = 0; i < hidden; i++) {
                float val = s->hb[i] > 0.0f ? s->hb[i] : 0.0f;
                val *= val;
                val *= s->hb2[i];
                s->hb[i] = val;
            }
        } else {
            for (i = 0; i < hidden; i++) {
                float val = s->hb[i];
                val *= (1.0f / (1.0f + F_EXP(-val)));
                val *= s->hb2[i];
                s->hb[i] = val;
            }
        }
        if (w->sub_ffn != NULL) {
            rmsnorm(s->hb, s->hb, w->sub_ffn + (size_t)l * hidden, hidden, c->norm_eps);
        }
        linear(m, s->xb, s->hb, &w->w2[l], hidden, dim);
        for (i = 0; i < dim; i++) {
            x[i] += s->xb[i];
        }
    }

    rmsnorm(x, x, w->rms_final, dim, c->norm_eps);
    linear(m, s->logits, x, &w->wcls, dim, c->vocab_size);
    return s->logits;
}
