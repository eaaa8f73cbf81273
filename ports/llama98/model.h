/* model.h - llama2.c legacy (v0) checkpoints: validated loading and the
 * Llama-2 forward pass.
 *
 * The float operations run in exactly the order llama2.c's run.c uses, so
 * an IEEE single-precision build prints the same text as llama2.c.
 */
#ifndef LLAMA98_MODEL_H
#define LLAMA98_MODEL_H

typedef struct {
    int dim;
    int hidden_dim;
    int n_layers;
    int n_heads;
    int n_kv_heads;
    int vocab_size; /* always positive here; see shared */
    int seq_len;
    int shared;     /* 1 when the classifier is the embedding table */
} Config;

typedef struct {
    const float *token_embedding;  /* (vocab, dim) */
    const float *rms_att;          /* (layer, dim) */
    const float *wq;               /* (layer, dim, dim) */
    const float *wk;               /* (layer, kv_dim, dim) */
    const float *wv;               /* (layer, kv_dim, dim) */
    const float *wo;               /* (layer, dim, dim) */
    const float *rms_ffn;          /* (layer, dim) */
    const float *w1;               /* (layer, hidden, dim) */
    const float *w2;               /* (layer, dim, hidden) */
    const float *w3;               /* (layer, hidden, dim) */
    const float *rms_final;        /* (dim) */
    const float *wcls;             /* (vocab, dim) */
} Weights;

typedef struct {
    float *x, *xb, *xb2, *hb, *hb2, *q;
    float *att;          /* (n_heads, seq_len) */
    float *logits;       /* (vocab) */
    float *key_cache;    /* (layer, seq_len, kv_dim) */
    float *value_cache;  /* (layer, seq_len, kv_dim) */
    float *rope_freq;    /* (head_size / 2), fixed for the model */
    float *rope_cos;     /* (head_size / 2), for the current position */
    float *rope_sin;
    float sqrt_head_size;
} RunState;

typedef struct {
    Config config;
    Weights weights;
    RunState state;
    float *data;           /* everything after the header, as read */
    long file_bytes;
    unsigned long crc32;   /* of every byte read from the file */
    int head_size;
    int kv_dim;
} Model;

/* Loads and validates the checkpoint, then allocates the run state; any
 * problem ends the program through fatal(). */
void model_load(Model *m, const char *path);
/* Runs one position and returns the logits (vocab_size floats). */
float *model_forward(Model *m, int token, int pos);
void model_free(Model *m);

#endif
