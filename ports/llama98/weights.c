/* weights.c - where every tensor lies in the checkpoint, which of them
 * stay in memory within the budget, the one read of the whole file at
 * start, and reading the others' rows as the forward pass needs them
 * (model.h, model_int.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "model_int.h"
#include "timer.h"
#include "util.h"

static const char *const tensor_names[7] = { "wq", "wk", "wv", "wo", "w1", "w2", "w3" };

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
double layout_weights(Model *m)
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

float *alloc_floats(double count, const char *what)
{
    return (float *)xmalloc(count * (double)sizeof(float), what);
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
    run_state_alloc(m, positions);
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

/* ---- streamed rows, read as the forward pass needs them ----------------- */

/* Rows r0..r1-1 of streamed tensor t, read into the stream buffer; `view`
 * is t with those rows resident (the Q8_0 scales follow the values, on an
 * aligned byte).  The time it takes goes to m->io_ticks. */
void stream_rows(Model *m, const Tensor *t, int r0, int r1, Tensor *view)
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
int chunk_rows(const Model *m, const Tensor *t)
{
    double fit = (m->stream_bytes - STREAM_PAD) / row_bytes(t);
    int rows = fit >= (double)t->rows ? t->rows : (int)fit;
    if (rows < t->rows && rows > 1) {
        rows &= ~1;
    }
    return rows;
}

/* ---- freeing ------------------------------------------------------------ */

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
    int i;
    run_state_free(&m->state);
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
