/* model.c - see model.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model.h"
#include "sampler.h"
#include "util.h"

#define HEADER_BYTES 28

static const char *const field_names[7] = {
    "dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"
};

/* Upper bounds that no real model reaches but that keep every size below
 * the limits checked later; they turn garbage headers into clear errors. */
static const long field_limits[7] = {
    65536L, 1048576L, 1024L, 65536L, 65536L, 1048576L, 1048576L
};

/* Forces a value through a 32-bit float in memory.  With x87 excess
 * precision a product could otherwise reach cos() or pow() unrounded and
 * the RoPE table would differ from an SSE build. */
static float round_float(float value)
{
    volatile float stored = value;
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

/* Number of floats the file must hold after the header, in double so that
 * no header can overflow the computation. */
static double expected_floats(const Config *c)
{
    double D = c->dim, H = c->hidden_dim, L = c->n_layers, V = c->vocab_size;
    double S = c->seq_len;
    double hs = (double)(c->dim / c->n_heads);
    double kvd = hs * c->n_kv_heads;
    double n = V * D;            /* token embedding */
    n += L * D;                  /* rms_att */
    n += L * D * D;              /* wq */
    n += 2.0 * L * D * kvd;      /* wk, wv */
    n += L * D * D;              /* wo */
    n += L * D;                  /* rms_ffn */
    n += 3.0 * L * D * H;        /* w1, w2, w3 */
    n += D;                      /* rms_final */
    n += S * hs;                 /* legacy freq_cis real and imaginary tables */
    if (!c->shared) {
        n += V * D;              /* classifier */
    }
    return n;
}

static void map_weights(Model *m)
{
    const Config *c = &m->config;
    Weights *w = &m->weights;
    const float *p = m->data;
    size_t D = (size_t)c->dim, H = (size_t)c->hidden_dim, L = (size_t)c->n_layers;
    size_t kvd = (size_t)m->kv_dim;
    w->token_embedding = p;
    p += (size_t)c->vocab_size * D;
    w->rms_att = p;
    p += L * D;
    w->wq = p;
    p += L * D * D;
    w->wk = p;
    p += L * D * kvd;
    w->wv = p;
    p += L * D * kvd;
    w->wo = p;
    p += L * D * D;
    w->rms_ffn = p;
    p += L * D;
    w->w1 = p;
    p += L * D * H;
    w->w2 = p;
    p += L * H * D;
    w->w3 = p;
    p += L * D * H;
    w->rms_final = p;
    p += D;
    p += (size_t)c->seq_len * (size_t)m->head_size; /* skip freq_cis tables */
    w->wcls = c->shared ? w->token_embedding : p;
}

static float *alloc_floats(double count, const char *what)
{
    return (float *)xmalloc(count * (double)sizeof(float), what);
}

static void alloc_state(Model *m)
{
    const Config *c = &m->config;
    RunState *s = &m->state;
    double kv = (double)c->n_layers * c->seq_len * m->kv_dim;
    int half = m->head_size / 2;
    int i;
    s->x = alloc_floats(c->dim, "activations");
    s->xb = alloc_floats(c->dim, "activations");
    s->xb2 = alloc_floats(c->dim, "activations");
    s->hb = alloc_floats(c->hidden_dim, "activations");
    s->hb2 = alloc_floats(c->hidden_dim, "activations");
    s->q = alloc_floats(c->dim, "activations");
    s->att = alloc_floats((double)c->n_heads * c->seq_len, "attention scores");
    s->logits = alloc_floats(c->vocab_size, "logits");
    s->key_cache = alloc_floats(kv, "the key cache");
    s->value_cache = alloc_floats(kv, "the value cache");
    s->rope_freq = alloc_floats(half, "RoPE tables");
    s->rope_cos = alloc_floats(half, "RoPE tables");
    s->rope_sin = alloc_floats(half, "RoPE tables");
    /* llama2.c: freq = 1.0f / powf(10000.0f, head_dim / (float)head_size),
     * each step rounded to float as IEEE single arithmetic would. */
    for (i = 0; i < half; i++) {
        float exponent = round_float((float)(2 * i) / (float)m->head_size);
        float power = round_float((float)pow(10000.0, (double)exponent));
        s->rope_freq[i] = round_float(1.0f / power);
    }
    s->sqrt_head_size = round_float((float)sqrt((double)m->head_size));
}

void model_load(Model *m, const char *path)
{
    FILE *f;
    unsigned char header[HEADER_BYTES];
    long v[7];
    long size;
    double expected, body, got;
    int i;

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
    if (size < HEADER_BYTES || fread(header, 1, HEADER_BYTES, f) != HEADER_BYTES) {
        fclose(f);
        fatal("checkpoint %s is %ld bytes, shorter than the %d-byte header",
              path, size, HEADER_BYTES);
    }
    m->crc32 = crc32_update(0UL, header, HEADER_BYTES);
    for (i = 0; i < 7; i++) {
        v[i] = read_le32(header + 4 * i);
    }
    validate_header(path, v, &m->config);
    m->head_size = m->config.dim / m->config.n_heads;
    m->kv_dim = m->head_size * m->config.n_kv_heads;
    expected = HEADER_BYTES + 4.0 * expected_floats(&m->config);
    if (expected != (double)size) {
        fclose(f);
        fatal("checkpoint %s: its header implies %.0f bytes but the file has %ld bytes",
              path, expected, size);
    }
    body = (double)size - HEADER_BYTES;
    m->data = alloc_floats(body / 4.0, "the checkpoint weights");
    got = read_chunks(f, (unsigned char *)m->data, body, &m->crc32);
    if (got != body) {
        fclose(f);
        fatal("checkpoint %s: read only %.0f of %.0f weight bytes", path, got, body);
    }
    if (fgetc(f) != EOF) {
        fclose(f);
        fatal("checkpoint %s: file is longer than its %ld bytes", path, size);
    }
    fclose(f);
    m->file_bytes = size;
    map_weights(m);
    alloc_state(m);
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
    free(m->data);
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

/* W (d, n) @ x (n) -> xout (d) */
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

static void rmsnorm(float *o, const float *x, const float *weight, int size)
{
    float ss = 0.0f;
    int j;
    for (j = 0; j < size; j++) {
        ss += x[j] * x[j];
    }
    ss /= (float)size;
    ss += 1e-5f;
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
    size_t loff = (size_t)layer * (size_t)c->seq_len * (size_t)kv_dim;
    int h, t, i;
    for (h = 0; h < c->n_heads; h++) {
        const float *q = s->q + h * head_size;
        float *att = s->att + (size_t)h * (size_t)c->seq_len;
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

    memcpy(x, w->token_embedding + (size_t)token * (size_t)dim, (size_t)dim * sizeof(float));

    /* The rotation angles depend only on the position: llama2.c recomputes
     * them for every pair of every layer, the results are the same. */
    for (i = 0; i < half; i++) {
        float val = round_float((float)pos * s->rope_freq[i]);
        s->rope_cos[i] = round_float((float)cos((double)val));
        s->rope_sin[i] = round_float((float)sin((double)val));
    }

    for (l = 0; l < c->n_layers; l++) {
        size_t loff = (size_t)l * (size_t)c->seq_len * (size_t)kv_dim;
        float *k = s->key_cache + loff + (size_t)pos * (size_t)kv_dim;
        float *v = s->value_cache + loff + (size_t)pos * (size_t)kv_dim;
        size_t ldd = (size_t)l * (size_t)dim * (size_t)dim;
        size_t ldk = (size_t)l * (size_t)dim * (size_t)kv_dim;
        size_t ldh = (size_t)l * (size_t)dim * (size_t)hidden;

        rmsnorm(s->xb, x, w->rms_att + (size_t)l * dim, dim);
        matmul(s->q, s->xb, w->wq + ldd, dim, dim);
        matmul(k, s->xb, w->wk + ldk, dim, kv_dim);
        matmul(v, s->xb, w->wv + ldk, dim, kv_dim);
        rope_rotate(s->q, dim, s, m->head_size);
        rope_rotate(k, kv_dim, s, m->head_size);

        attention(m, l, pos);

        matmul(s->xb2, s->xb, w->wo + ldd, dim, dim);
        for (i = 0; i < dim; i++) {
            x[i] += s->xb2[i];
        }

        rmsnorm(s->xb, x, w->rms_ffn + (size_t)l * dim, dim);
        matmul(s->hb, s->xb, w->w1 + ldh, dim, hidden);
        matmul(s->hb2, s->xb, w->w3 + ldh, dim, hidden);
        for (i = 0; i < hidden; i++) {
            float val = s->hb[i];
            val *= (1.0f / (1.0f + (float)exp((double)-val)));
            val *= s->hb2[i];
            s->hb[i] = val;
        }
        matmul(s->xb, s->hb, w->w2 + ldh, hidden, dim);
        for (i = 0; i < dim; i++) {
            x[i] += s->xb[i];
        }
    }

    rmsnorm(x, x, w->rms_final, dim);
    matmul(s->logits, x, w->wcls, dim, c->vocab_size);
    return s->logits;
}
