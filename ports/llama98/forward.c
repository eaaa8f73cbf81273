/* forward.c - the run state and the Llama forward pass (model.h,
 * model_int.h).
 *
 * The x87 builds (gcc.mk tiny686, mingw.mk) compile this file, and only
 * this one, with -fexcess-precision=fast: the float steps keep excess
 * precision in registers instead of being stored and reloaded to round
 * them; the values that must round (the RoPE tables, the quantized
 * activations) go through round_float() explicitly. */
#include <math.h>
#include <string.h>
#include "fmath.h"
#include "model_int.h"
#include "qdot.h"
#include "sampler.h"
#include "util.h"


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
/* ---- the run state ------------------------------------------------------ */

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

void run_state_alloc(Model *m, int positions)
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

void run_state_free(RunState *s)
{
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
