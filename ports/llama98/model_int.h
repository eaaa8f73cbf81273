/* model_int.h - what the three files of the model share; private to them
 * (model.h is the API the rest of the port uses).
 *
 *   header.c   the checkpoint header: reading and validating it
 *              (model_load, weight_type_name)
 *   weights.c  where every tensor lies in the file, which stay in memory
 *              within the budget, the one read of the whole file at start,
 *              streaming the others' rows (model_start, model_free)
 *   forward.c  the run state and the forward pass (model_forward,
 *              model_kv_bytes); the only file the x87 builds compile with
 *              -fexcess-precision=fast (gcc.mk says why)
 */
#ifndef LLAMA98_MODEL_INT_H
#define LLAMA98_MODEL_INT_H

#include "model.h"

/* The L98M checkpoint version (FORMATS.md): its own header and layout. */
#define L98M_VERSION 3

/* ---- weights.c ---------------------------------------------------------- */

/* Finds where every tensor and norm lies (the only format-specific part of
 * loading); returns where the layout ends.  model_load calls it once the
 * header is validated. */
double layout_weights(Model *m);
/* xmalloc for `count` floats. */
float *alloc_floats(double count, const char *what);
/* Rows r0..r1-1 of streamed tensor t, read into the stream buffer; `view`
 * is t with those rows resident.  The time it takes goes to m->io_ticks. */
void stream_rows(Model *m, const Tensor *t, int r0, int r1, Tensor *view);
/* Rows of streamed tensor t per stream_rows(): what the buffer holds, an
 * even number so that matmul() pairs rows as it does for a resident tensor. */
int chunk_rows(const Model *m, const Tensor *t);

/* ---- forward.c ---------------------------------------------------------- */

/* Allocates the run state for positions 0..positions-1 (model_start) and
 * computes the RoPE frequencies; run_state_free() gives it back. */
void run_state_alloc(Model *m, int positions);
void run_state_free(RunState *s);

#endif
