/* model.h - llama2.c checkpoints (legacy v0 fp32, v2 Q8_0), the llama98
 * ternary format (version 98) and the Llama 3 family's L98M version 3 (see
 * FORMATS.md): validated loading and the Llama forward pass.
 *
 * The float operations run in exactly the order llama2.c's run.c (fp32) and
 * runq.c (Q8_0) use, so an IEEE single-precision build prints the same text
 * as llama2.c.  Every weight matrix is a Tensor and every product goes
 * through one dispatch (linear() in forward.c), whatever the file stored.
 *
 * Three files implement it (model_int.h is what they share): header.c reads
 * and validates the header, weights.c places, keeps and streams the
 * weights, forward.c holds the run state and the forward pass.
 */
#ifndef LLAMA98_MODEL_H
#define LLAMA98_MODEL_H

#include "u64.h"
#include "wfile.h"

/* Weight types: the values of the weight-type byte of a version 98 header
 * (FORMATS.md); fp32 and Q8_0 are also what v0 and v2 files hold. */
#define WT_F32 0
#define WT_Q8_0 1
#define WT_TERNARY 2

/* Feed-forward variants (version 98 header byte "ffn"). */
#define FFN_SILU 0   /* w2(silu(w1 x) * w3 x), Llama */
#define FFN_RELU2 1  /* w2(relu(w1 x)^2 * w3 x), BitNet b1.58 2B4T */

typedef struct {
    int dim;
    int hidden_dim;
    int n_layers;
    int n_heads;
    int n_kv_heads;
    int vocab_size; /* always positive here; see shared */
    int seq_len;
    int shared;     /* 1 when the classifier is the embedding table */
    int version;    /* 0, 2 or 98: the file format */
    int weight_type;     /* WT_*: the type of wq..w3 */
    int group_size;      /* Q8_0 group size (version 2) */
    int ffn;             /* FFN_* */
    int sub_norms;       /* 1: RMSNorm before wo and before w2 (BitNet) */
    int classifier_type; /* WT_F32 or WT_Q8_0 (version 98) */
    float rope_theta;    /* RoPE base: 10000 (llama2.c) or the v3 header's */
    float norm_eps;      /* RMSNorm epsilon: 1e-5 (llama2.c) or the v3 header's */
    int rope_scaling;    /* ROPE_SCALING_*: v3 only */
    float rope_factor, rope_low, rope_high; /* llama3 scaling parameters */
    long rope_original;  /* original_max_position_embeddings */
} Config;

#define ROPE_SCALING_NONE 0
#define ROPE_SCALING_LLAMA3 1

/* One weight matrix (rows, cols), row-major, in one of the weight types.
 * Where it lies in the checkpoint is the same for every format: fp32
 * values at `offset`; Q8_0 int8 values at `offset`, then one float scale
 * per group; ternary, a float scale at `offset`, then the packed rows.  A
 * resident tensor has its data pointers set; a streamed one (resident 0)
 * is read from the file, a few rows at a time, each time it is used. */
typedef struct {
    int type;                     /* WT_* */
    int group;                    /* WT_Q8_0: values per scale */
    int rows, cols;
    double offset;                /* in the logical file (all parts) */
    int resident;
    const float *f;               /* WT_F32 */
    const signed char *q;         /* WT_Q8_0: int8 values */
    const float *s;               /* WT_Q8_0: one scale per group */
    const unsigned char *packed;  /* WT_TERNARY: 4 weights per byte */
    float scale;                  /* WT_TERNARY: mean |W|, always in memory */
} Tensor;

typedef struct {
    Tensor token_embedding;  /* (vocab, dim); WT_F32 or WT_Q8_0 */
    const float *rms_att;    /* (layer, dim) */
    const float *rms_ffn;    /* (layer, dim) */
    const float *rms_final;  /* (dim) */
    const float *sub_att;    /* (layer, dim) or NULL */
    const float *sub_ffn;    /* (layer, hidden) or NULL */
    Tensor *wq, *wk, *wv, *wo, *w1, *w2, *w3; /* one per layer */
    Tensor wcls;             /* (vocab, dim) */
} Weights;

typedef struct {
    float *x, *xb, *xb2, *hb, *hb2, *q;
    int positions;       /* what the KV cache holds: the run's, not seq_len */
    float *att;          /* (n_heads, positions) */
    float *logits;       /* (vocab) */
    float *key_cache;    /* (layer, positions, kv_dim) */
    float *value_cache;  /* (layer, positions, kv_dim) */
    float *rope_freq;    /* (head_size / 2), fixed for the model */
    float *rope_cos;     /* (head_size / 2), for the current position */
    float *rope_sin;
    signed char *aq;     /* quantized activation (max(dim, hidden)) */
    float *as;           /* its scales */
    short *a16;          /* aq widened to int16, for qdot.h */
    long *sums;          /* one row's integer group sums */
    float sqrt_head_size;
} RunState;

/* Where the memory budget came from. */
#define BUDGET_NONE 0   /* the system does not say: everything resident */
#define BUDGET_OS 1     /* the memory the system says is available */
#define BUDGET_OPTION 2 /* -M */

typedef struct {
    Config config;
    Weights weights;
    RunState state;
    WFile file;            /* the checkpoint, kept open while tensors stream */
    int header_bytes;
    float *norms;          /* every RMSNorm weight */
    struct Span *norm_spans; /* where the norms lie in the file (weights.c) */
    int n_norm_spans;
    Tensor *layer_tensors; /* 7 * n_layers */
    unsigned char *stream; /* the buffer streamed rows are read into */
    double stream_bytes;
    double file_bytes;     /* all parts */
    unsigned long crc32;   /* of every byte of the file, read once at start */
    double budget;         /* bytes the run may allocate (model_start) */
    int budget_source;     /* BUDGET_* */
    double resident_bytes; /* weights kept in memory */
    double streamed_bytes; /* weights read from the file for each token */
    u64 io_ticks;          /* timer ticks spent reading streamed weights */
    int head_size;
    int kv_dim;
} Model;

/* Reads and validates the checkpoint's header and finds where every tensor
 * lies; any problem ends the program through fatal(). */
void model_load(Model *m, const char *path);
/* Allocates the run state for positions 0..positions-1 (1..seq_len): the
 * KV cache holds what the run needs, never what the header allows.  Then
 * keeps as many weights in memory as `budget` bytes allow (everything
 * allocated counts; budget_source BUDGET_NONE: all of them), reads the file
 * once (CRC, checks) and leaves the rest to be streamed for each token. */
void model_start(Model *m, int positions, double budget, int budget_source);
/* Bytes the KV cache of `positions` positions takes (keys and values). */
double model_kv_bytes(const Model *m, int positions);
/* Runs one position (< the positions of model_start) and returns the
 * logits (vocab_size floats). */
float *model_forward(Model *m, int token, int pos);
void model_free(Model *m);
/* "fp32", "q8_0" or "ternary": the weight type's name. */
const char *weight_type_name(int type);

#endif
