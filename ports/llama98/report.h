/* report.h - the -r run report (its format: REPORT.md).
 *
 * A report to a file (or a device such as COM2) gets its header when the
 * run starts and each token line as the token is made; a report to stdout
 * (-r -) keeps the step records and prints everything after the text.
 */
#ifndef LLAMA98_REPORT_H
#define LLAMA98_REPORT_H

#include <stdio.h>
#include "bpe.h"
#include "model.h"
#include "tokenizer.h"
#include "u64.h"

/* One generation step: its `token` line. */
typedef struct {
    int pos;
    int id;
    u64 ticks;
    double read; /* checkpoint bytes read during the step (streamed weights) */
    u64 io;      /* ticks of the step spent reading them */
} StepRecord;

/* What the header lines record besides the model. */
typedef struct {
    float temperature;
    float topp;
    const u64 *seed;
    int steps;
    const char *prompt;       /* NULL or "": no prompt */
    const Tokenizer *tok;     /* the run's tokenizer: a llama2.c file, */
    const Bpe *bpe;           /* or a BPE file (then not NULL) */
    const int *prompt_tokens;
    int n_prompt;
} ReportRun;

typedef struct {
    const char *path;      /* -r's value; NULL: no report */
    FILE *file;            /* where the lines go, once open */
    int to_stdout;         /* -r -: the records wait until after the text */
    StepRecord *records;   /* -r - only */
    int n_records;         /* steps made (counted with or without a report) */
} Report;

/* Before the model places its weights: allocates the step records of a
 * report to stdout (steps of them), so they count against the memory
 * budget like everything else.  path NULL: no report. */
void report_init(Report *r, const char *path, int steps);
/* A report to a file: opens it and writes the header now. */
void report_open(Report *r, const ReportRun *run, const Model *m);
/* Records one step: written at once to a file, kept for stdout. */
void report_step(Report *r, const StepRecord *rec);
/* The report's end: for stdout the header and the records, then the `done`
 * line (`ticks` the run's, `hz` the timer's, `read` the checkpoint bytes
 * read during the steps); a failed write ends the program. */
void report_finish(Report *r, const ReportRun *run, const Model *m, const u64 *ticks, const u64 *hz,
                   double read);
void report_free(Report *r);

#endif
