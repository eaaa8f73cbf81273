/* header.c - the checkpoint header: reads and validates it, checks the
 * file's size against it, then lets weights.c find where every tensor lies
 * (model.h, model_int.h). */
#include <string.h>
#include "model_int.h"
#include "util.h"
#include "variants.h"

#define V0_HEADER_BYTES 28
#define AK42_HEADER_BYTES 256
#define AK42_MAGIC 0x616B3432L
#define L98M_HEADER_BYTES 256
#define L98M_FLAG_SHARED 1L

static const char *const field_names[7] = {
    "dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"
};

/* Upper bounds that no real model reaches but that keep every size below
 * the limits checked later; they turn garbage headers into clear errors. */
static const long field_limits[7] = {
    65536L, 1048576L, 1024L, 65536L, 65536L, 1048576L, 1048576L
};

const char *weight_type_name(int type)
{
    return type == WT_Q8_0 ? "q8_0" : type == WT_TERNARY ? "ternary" : "fp32";
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
    m->config.rope_theta = LLAMA98_ROPE_BASE; /* llama2.c's 10000 (variants.h) */
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
