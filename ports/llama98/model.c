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

/* ---- reading v2 / v98 bodies tensor by tensor ---------------------------- */

typedef struct {
    FILE *f;
    const char *path;
    unsigned long *crc;
    float *floats;          /* next free float */
    unsigned char *bytes;   /* next free byte */
} Reader;

static void read_exact(Reader *r, unsigned char *dst, double n)
{
    double got = read_chunks(r->f, dst, n, r->crc);
    if (got != n) {
        fatal("checkpoint %s: truncated while reading weights", r->path);
    }
}

/* Reads count floats to dst (not the next free float). */
static void read_floats_to(Reader *r, float *dst, double count)
{
    read_exact(r, (unsigned char *)dst, 4.0 * count);
}

static const float *take_floats(Reader *r, double count)
{
    float *p = r->floats;
    read_exact(r, (unsigned char *)p, 4.0 * count);
    r->floats += (size_t)count;
    return p;
}

static void read_tensor(Reader *r, Tensor *t, int type, int group, double count, const char *what, int layer)
{
    memset(t, 0, sizeof(*t));
    t->type = type;
    t->group = group;
    if (type == WT_F32) {
        t->f = take_floats(r, count);
    } else if (type == WT_Q8_0) {
        t->q = (const signed char *)r->bytes;
        read_exact(r, r->bytes, count);
        r->bytes += (size_t)count;
        t->s = take_floats(r, count / group);
    } else {
        const unsigned char *p, *end;
        t->scale = *take_floats(r, 1.0);
        r->floats--; /* the scale lives in the Tensor */
        t->packed = r->bytes;
        read_exact(r, r->bytes, count / 4.0);
        end = r->bytes + (size_t)(count / 4.0);
        for (p = r->bytes; p < end; p++) {
            if (*p & (*p >> 1) & 0x55) {
                fatal("checkpoint %s: ternary tensor %s of layer %d has the invalid 2-bit code 3 in byte %ld: "
                      "wrong packing", r->path, what, layer, (long)(p - t->packed));
            }
        }
        r->bytes += (size_t)(count / 4.0);
        if (!(t->scale >= 0.0f) || t->scale > 1e30f) {
            fatal("checkpoint %s: ternary tensor %s of layer %d has the scale %g", r->path, what, layer,
                  (double)t->scale);
        }
    }
}

/* Space the floats and the int8/packed values of a v2/v98 body need. */
static void body_space(const Config *c, int kv_dim, double *floats, double *bytes)
{
    double D = c->dim, H = c->hidden_dim, L = c->n_layers, V = c->vocab_size, K = kv_dim;
    double layer_weights = 2.0 * D * D + 2.0 * K * D + 3.0 * D * H;
    *floats = 2.0 * L * D + D + (c->sub_norms ? L * (D + H) : 0.0);
    *bytes = 0.0;
    if (c->version == 2) {
        *bytes = V * D + L * layer_weights;
        *floats += (V * D + L * layer_weights) / c->group_size;
        if (!c->shared) {
            *bytes += V * D;
            *floats += V * D / c->group_size;
        }
        return;
    }
    *floats += V * D + 1.0; /* embedding, and the ternary scale's landing place */
    *bytes = L * layer_weights / 4.0;
    if (!c->shared) {
        if (c->classifier_type == WT_Q8_0) {
            *bytes += V * D;
            *floats += V;
        } else {
            *floats += V * D;
        }
    }
}


/* Elements of layer matrix k (wq, wk, wv, wo, w1, w2, w3: rows x columns). */
static double layer_matrix_size(const Model *m, int k)
{
    double D = m->config.dim, H = m->config.hidden_dim, K = m->kv_dim;
    switch (k) {
    case 1: case 2: return K * D; /* wk, wv */
    case 4: case 6: return H * D; /* w1, w3 */
    case 5: return D * H;         /* w2 */
    default: return D * D;        /* wq, wo */
    }
}

static void read_ak42_body(Model *m, FILE *f, const char *path)
{
    const Config *c = &m->config;
    Weights *w = &m->weights;
    Reader r;
    double nf, nb;
    int L = c->n_layers, D = c->dim, H = c->hidden_dim, K = m->kv_dim;
    int k, l, wt = c->weight_type, gs = c->group_size;

    body_space(c, K, &nf, &nb);
    m->floats = (float *)xmalloc(4.0 * nf, "the checkpoint weights");
    m->bytes = (unsigned char *)xmalloc(nb, "the checkpoint weights");
    m->layer_tensors = (Tensor *)xmalloc(7.0 * L * sizeof(Tensor), "the weight table");
    r.f = f;
    r.path = path;
    r.crc = &m->crc32;
    r.floats = m->floats;
    r.bytes = m->bytes;

    w->rms_att = take_floats(&r, (double)L * D);
    w->rms_ffn = take_floats(&r, (double)L * D);
    w->rms_final = take_floats(&r, D);
    w->sub_att = NULL;
    w->sub_ffn = NULL;
    if (c->sub_norms) {
        w->sub_att = take_floats(&r, (double)L * D);
        w->sub_ffn = take_floats(&r, (double)L * H);
    }
    read_tensor(&r, &w->token_embedding, c->version == 2 ? WT_Q8_0 : WT_F32, gs, (double)c->vocab_size * D,
                "embedding", 0);
    w->wq = m->layer_tensors;
    w->wk = w->wq + L;
    w->wv = w->wk + L;
    w->wo = w->wv + L;
    w->w1 = w->wo + L;
    w->w2 = w->w1 + L;
    w->w3 = w->w2 + L;
    for (k = 0; k < 7; k++) {
        for (l = 0; l < L; l++) {
            read_tensor(&r, m->layer_tensors + k * L + l, wt, gs, layer_matrix_size(m, k), tensor_names[k], l);
        }
    }
    if (c->shared) {
        w->wcls = w->token_embedding;
    } else {
        read_tensor(&r, &w->wcls, c->classifier_type, c->classifier_type == wt ? gs : D,
                    (double)c->vocab_size * D, "classifier", 0);
    }
}

/* Version 3: the file keeps each layer's tensors together (rms_att, wq, wk,
 * wv, wo, rms_ffn, w1, w2, w3); the norms go to their (layer, dim) arrays so
 * the forward pass indexes them as it does for every format, and each matrix
 * is a Tensor read by read_tensor(), as v2 and v98 tensors are. */
static void read_v3_body(Model *m, FILE *f, const char *path)
{
    const Config *c = &m->config;
    Weights *w = &m->weights;
    Reader r;
    double L = c->n_layers, D = c->dim, H = c->hidden_dim, K = m->kv_dim, V = c->vocab_size;
    double norms = 2.0 * L * D + D;
    double n = norms + V * D + L * (2.0 * D * D + 2.0 * K * D + 3.0 * D * H) + (c->shared ? 0.0 : V * D);
    int l, k, nl = c->n_layers, wt = c->weight_type;
    float *rms_att, *rms_ffn, *rms_final;

    m->floats = (float *)xmalloc(4.0 * n, "the checkpoint weights");
    m->layer_tensors = (Tensor *)xmalloc(7.0 * L * sizeof(Tensor), "the weight table");
    rms_att = m->floats;
    rms_ffn = rms_att + (size_t)nl * (size_t)c->dim;
    rms_final = rms_ffn + (size_t)nl * (size_t)c->dim;
    r.f = f;
    r.path = path;
    r.crc = &m->crc32;
    r.floats = rms_final + c->dim;
    r.bytes = NULL;
    read_tensor(&r, &w->token_embedding, WT_F32, 0, V * D, "embedding", 0);
    for (l = 0; l < nl; l++) {
        read_floats_to(&r, rms_att + (size_t)l * (size_t)c->dim, D);
        for (k = 0; k < 4; k++) {
            read_tensor(&r, m->layer_tensors + k * nl + l, wt, 0, layer_matrix_size(m, k), tensor_names[k], l);
        }
        read_floats_to(&r, rms_ffn + (size_t)l * (size_t)c->dim, D);
        for (k = 4; k < 7; k++) {
            read_tensor(&r, m->layer_tensors + k * nl + l, wt, 0, layer_matrix_size(m, k), tensor_names[k], l);
        }
    }
    read_floats_to(&r, rms_final, D);
    w->rms_att = rms_att;
    w->rms_ffn = rms_ffn;
    w->rms_final = rms_final;
    w->sub_att = NULL;
    w->sub_ffn = NULL;
    w->wq = m->layer_tensors;
    w->wk = m->layer_tensors + nl;
    w->wv = m->layer_tensors + 2 * nl;
    w->wo = m->layer_tensors + 3 * nl;
    w->w1 = m->layer_tensors + 4 * nl;
    w->w2 = m->layer_tensors + 5 * nl;
    w->w3 = m->layer_tensors + 6 * nl;
    if (c->shared) {
        w->wcls = w->token_embedding;
    } else {
        read_tensor(&r, &w->wcls, WT_F32, 0, V * D, "classifier", 0);
    }
}

static void map_v0_weights(Model *m)
{
    const Config *c = &m->config;
    Weights *w = &m->weights;
    const float *p = (const float *)m->data;
    const float *wq, *wk, *wv, *wo, *w1, *w2, *w3;
    size_t D = (size_t)c->dim, H = (size_t)c->hidden_dim, L = (size_t)c->n_layers;
    size_t kvd = (size_t)m->kv_dim, l;
    Tensor *t;
    memset(&w->token_embedding, 0, sizeof(Tensor));
    w->token_embedding.type = WT_F32;
    w->token_embedding.f = p;
    p += (size_t)c->vocab_size * D;
    w->rms_att = p;
    p += L * D;
    wq = p;
    p += L * D * D;
    wk = p;
    p += L * D * kvd;
    wv = p;
    p += L * D * kvd;
    wo = p;
    p += L * D * D;
    w->rms_ffn = p;
    p += L * D;
    w1 = p;
    p += L * D * H;
    w2 = p;
    p += L * H * D;
    w3 = p;
    p += L * D * H;
    w->rms_final = p;
    p += D;
    p += (size_t)c->seq_len * (size_t)m->head_size; /* skip freq_cis tables */
    w->wcls = w->token_embedding;
    if (!c->shared) {
        w->wcls.f = p;
    }
    w->sub_att = NULL;
    w->sub_ffn = NULL;
    m->layer_tensors = (Tensor *)xmalloc(7.0 * (double)L * sizeof(Tensor), "the weight table");
    memset(m->layer_tensors, 0, 7 * L * sizeof(Tensor));
    t = m->layer_tensors;
    w->wq = t;
    w->wk = t + L;
    w->wv = t + 2 * L;
    w->wo = t + 3 * L;
    w->w1 = t + 4 * L;
    w->w2 = t + 5 * L;
    w->w3 = t + 6 * L;
    for (l = 0; l < L; l++) {
        w->wq[l].f = wq + l * D * D;
        w->wk[l].f = wk + l * D * kvd;
        w->wv[l].f = wv + l * D * kvd;
        w->wo[l].f = wo + l * D * D;
        w->w1[l].f = w1 + l * D * H;
        w->w2[l].f = w2 + l * D * H;
        w->w3[l].f = w3 + l * D * H;
    }
    for (l = 0; l < 7 * L; l++) {
        t[l].type = WT_F32;
    }
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

void model_start(Model *m, int positions)
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

/* Bytes of weights one token's forward pass reads: every matrix once, one
 * embedding row, the norms. */
static double tensor_read_bytes(const Config *c, const Tensor *t, double rows, double cols)
{
    (void)c;
    if (t->type == WT_Q8_0) {
        return rows * cols * (1.0 + 4.0 / t->group);
    }
    if (t->type == WT_TERNARY) {
        return 4.0 + rows * cols / 4.0;
    }
    return 4.0 * rows * cols;
}

static double weight_bytes_per_token(const Model *m)
{
    const Config *c = &m->config;
    const Weights *w = &m->weights;
    double D = c->dim, H = c->hidden_dim, L = c->n_layers, K = m->kv_dim, V = c->vocab_size;
    double n = tensor_read_bytes(c, &w->token_embedding, 1.0, D);
    n += 4.0 * (2.0 * L * D + D + (c->sub_norms ? L * (D + H) : 0.0));
    n += L * (2.0 * tensor_read_bytes(c, w->wq, D, D) + 2.0 * tensor_read_bytes(c, w->wk, K, D) +
              3.0 * tensor_read_bytes(c, w->w1, H, D));
    n += tensor_read_bytes(c, &w->wcls, V, D);
    return n;
}

void model_load(Model *m, const char *path)
{
    FILE *f;
    unsigned char header[AK42_HEADER_BYTES];
    long v[7];
    long size;
    double expected, body, got;
    int i, header_bytes = V0_HEADER_BYTES;

    memset(m, 0, sizeof(*m));
    f = fopen(path, "rb");
    if (f == NULL) {
        fatal("cannot open checkpoint %s", path);
    }
    size = file_size(f);
    if (size < 0) {
        fclose(f);
        fatal("cannot determine the size of checkpoint %s", path);
    }
    if (size < V0_HEADER_BYTES || fread(header, 1, V0_HEADER_BYTES, f) != V0_HEADER_BYTES) {
        fclose(f);
        fatal("checkpoint %s is %ld bytes, shorter than the %d-byte header",
              path, size, V0_HEADER_BYTES);
    }
    if (read_le32(header) == AK42_MAGIC || memcmp(header, "L98M", 4) == 0) {
        header_bytes = AK42_HEADER_BYTES;
        if (size < AK42_HEADER_BYTES ||
            fread(header + V0_HEADER_BYTES, 1, AK42_HEADER_BYTES - V0_HEADER_BYTES, f) !=
                AK42_HEADER_BYTES - V0_HEADER_BYTES) {
            fclose(f);
            fatal("checkpoint %s is %ld bytes, shorter than the %d-byte %s header", path, size,
                  AK42_HEADER_BYTES, header[0] == 'L' ? "L98M" : "ak42");
        }
    }
    m->crc32 = crc32_update(0UL, header, (size_t)header_bytes);
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
    if (expected != (double)size) {
        fclose(f);
        fatal("checkpoint %s: its header implies %.0f bytes but the file has %ld bytes%s",
              path, expected, size, expected > (double)size ? " (truncated?)" : "");
    }
    body = (double)size - header_bytes;
    if (m->config.version == 0) {
        m->data = (unsigned char *)xmalloc(body, "the checkpoint weights");
        got = read_chunks(f, m->data, body, &m->crc32);
        if (got != body) {
            fclose(f);
            fatal("checkpoint %s: read only %.0f of %.0f weight bytes", path, got, body);
        }
        map_v0_weights(m);
    } else if (m->config.version == L98M_VERSION) {
        read_v3_body(m, f, path);
    } else {
        read_ak42_body(m, f, path);
    }
    if (fgetc(f) != EOF) {
        fclose(f);
        fatal("checkpoint %s: file is longer than its %ld bytes", path, size);
    }
    fclose(f);
    m->file_bytes = size;
    m->weight_bytes_per_token = weight_bytes_per_token(m);
}

void model_free(Model *m)
{
    RunState *s = &m->state;
    free(s->x);
    free(s->xb);
    free(s->xb2);
    free(s->hb);
    free(s->hb2);
    free(s->q);
    free(s->att);
    free(s->logits);
    free(s->key_cache);
    free(s->value_cache);
    free(s->rope_freq);
    free(s->rope_cos);
    free(s->rope_sin);
    free(s->aq);
    free(s->as);
    free(s->a16);
    free(s->sums);
    free(m->data);
    free(m->floats);
    free(m->bytes);
    free(m->layer_tensors);
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

/* The one matmul dispatch: W (d, n) @ x (n) -> xout (d), in W's type.
 * Quantized types quantize x first (as runq does before each product). */
static void linear(RunState *s, float *xout, const float *x, const Tensor *w, int n, int d)
{
    if (w->type == WT_F32) {
        matmul(xout, x, w->f, n, d);
    } else if (w->type == WT_Q8_0) {
        quantize(s->aq, s->as, x, n, w->group);
        widen(s->a16, s->aq, n);
        matmul_q8(xout, s->a16, s->as, w, n, d, s->sums);
    } else {
        quantize(s->aq, s->as, x, n, n);
        widen(s->a16, s->aq, n);
        matmul_ternary(xout, s->a16, s->as[0], w, n, d);
    }
}

/* Row `token` of the embedding, dequantized as runq does (q * scale). */
static void embed(float *x, const Tensor *e, int token, int dim)
{
    size_t off = (size_t)token * (size_t)dim;
    int i;
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

    embed(x, &w->token_embedding, token, dim);

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
        linear(s, s->q, s->xb, &w->wq[l], dim, dim);
        linear(s, k, s->xb, &w->wk[l], dim, kv_dim);
        linear(s, v, s->xb, &w->wv[l], dim, kv_dim);
        rope_rotate(s->q, dim, s, m->head_size);
        rope_rotate(k, kv_dim, s, m->head_size);

        attention(m, l, pos);

        if (w->sub_att != NULL) {
            rmsnorm(s->xb, s->xb, w->sub_att + (size_t)l * dim, dim, c->norm_eps);
        }
        linear(s, s->xb2, s->xb, &w->wo[l], dim, dim);
        for (i = 0; i < dim; i++) {
            x[i] += s->xb2[i];
        }

        rmsnorm(s->xb, x, w->rms_ffn + (size_t)l * dim, dim, c->norm_eps);
        linear(s, s->hb, s->xb, &w->w1[l], dim, hidden);
        linear(s, s->hb2, s->xb, &w->w3[l], dim, hidden);
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
        linear(s, s->xb, s->hb, &w->w2[l], hidden, dim);
        for (i = 0; i < dim; i++) {
            x[i] += s->xb[i];
        }
    }

    rmsnorm(x, x, w->rms_final, dim, c->norm_eps);
    linear(s, s->logits, x, &w->wcls, dim, c->vocab_size);
    return s->logits;
}
