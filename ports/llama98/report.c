/* report.c - the -r run report: see report.h and REPORT.md. */
#include <stdio.h>
#include <string.h>
#include "report.h"
#include "timer.h"
#include "util.h"
#include "variants.h"

/* A fork-style build (variants.h) refuses -r and must not carry the
 * report's header string, by which the harness tells our builds apart. */
#ifdef LLAMA98_FORK_STYLE
#define REPORT_HEADER "fork build: no report\n"
#else
#define REPORT_HEADER "llama98 report 1\n"
#endif

static void write_header(FILE *r, const ReportRun *a, const Model *m)
{
    const Config *c = &m->config;
    char num[24];
    u64 hz;
    int i;
    fputs(REPORT_HEADER, r);
    fprintf(r, "args temperature=%f topp=%f seed=%s steps=%d prompt_hex=", a->temperature,
            a->topp, u64_to_dec(a->seed, num), a->steps);
    if (a->prompt == NULL || a->prompt[0] == '\0') {
        fputc('-', r);
    } else {
        const unsigned char *p;
        for (p = (const unsigned char *)a->prompt; *p != '\0'; p++) {
            fprintf(r, "%02x", (unsigned int)*p);
        }
    }
    fputc('\n', r);
    fprintf(r, "model bytes=%.0f crc32=%08lx dim=%d hidden=%d layers=%d heads=%d kv_heads=%d "
               "vocab=%d seq_len=%d shared=%d parts=%d",
            m->file_bytes, m->crc32, c->dim, c->hidden_dim, c->n_layers, c->n_heads,
            c->n_kv_heads, c->vocab_size, c->seq_len, c->shared, m->file.parts);
    if (c->version == 3) {
        fprintf(r, " version=3 rope_theta=%g norm_eps=%g rope_scaling=%d kv_positions=%d kv_bytes=%.0f",
                (double)c->rope_theta, (double)c->norm_eps, c->rope_scaling, m->state.positions,
                model_kv_bytes(m, m->state.positions));
    }
    fputc('\n', r);
    if (a->bpe != NULL) {
        const Bpe *b = a->bpe;
        fprintf(r, "tokenizer bytes=%ld crc32=%08lx max_token_length=%ld format=bpe tokens=%ld bos=%ld "
                   "eos=%ld stops=%ld\n", b->file_bytes, b->crc32, b->max_token_bytes, b->n_tokens,
                b->bos_id, b->eos_id, b->n_stop);
    } else {
        fprintf(r, "tokenizer bytes=%ld crc32=%08lx max_token_length=%ld\n", a->tok->file_bytes,
                a->tok->crc32, a->tok->max_token_length);
    }
    fprintf(r, "memory budget=%.0f resident=%.0f streamed=%.0f buffer=%.0f source=%s\n",
            m->budget_source == BUDGET_NONE ? 0.0 : m->budget, m->resident_bytes, m->streamed_bytes,
            m->stream_bytes, m->budget_source == BUDGET_OPTION ? "option" :
                             m->budget_source == BUDGET_OS ? "os" : "none");
    timer_hz(&hz);
    fprintf(r, "timer source=%s hz=%s\n", timer_source(), u64_to_dec(&hz, num));
    fprintf(r, "prompt tokens=%d ids=", a->n_prompt);
    for (i = 0; i < a->n_prompt; i++) {
        fprintf(r, i == 0 ? "%d" : ",%d", a->prompt_tokens[i]);
    }
    fputc('\n', r);
}

static void write_token(FILE *r, const StepRecord *s)
{
    char num[24], io[24];
    fprintf(r, "token pos=%d id=%d ticks=%s read=%.0f io=%s\n", s->pos, s->id, u64_to_dec(&s->ticks, num), s->read,
            u64_to_dec(&s->io, io));
}

void report_init(Report *r, const char *path, int steps)
{
    r->path = path;
    r->file = NULL;
    r->to_stdout = path != NULL && strcmp(path, "-") == 0;
    r->records = NULL;
    r->n_records = 0;
    if (r->to_stdout) {
        r->records = (StepRecord *)xmalloc((double)steps * sizeof(StepRecord), "the report");
    }
}

void report_open(Report *r, const ReportRun *run, const Model *m)
{
    r->file = NULL;
    if (r->path == NULL || r->to_stdout) {
        return;
    }
    r->file = fopen(r->path, "wb");
    if (r->file == NULL) {
        fatal("cannot open report %s for writing", r->path);
    }
    write_header(r->file, run, m);
    fflush(r->file);
}

void report_step(Report *r, const StepRecord *rec)
{
    if (r->records != NULL) {
        r->records[r->n_records] = *rec;
    } else if (r->file != NULL) {
        write_token(r->file, rec);
        fflush(r->file);
    }
    r->n_records++;
}

void report_finish(Report *r, const ReportRun *run, const Model *m, const u64 *ticks, const u64 *hz,
                   double read)
{
    char num[24], num2[24];
    int i;
    if (r->to_stdout) {
        r->file = stdout;
        write_header(r->file, run, m);
        for (i = 0; i < r->n_records; i++) {
            write_token(r->file, &r->records[i]);
        }
    }
    if (r->file != NULL) {
        fprintf(r->file, "done tokens=%d ticks=%s hz=%s status=ok peak=%.0f read=%.0f\n", r->n_records,
                u64_to_dec(ticks, num), u64_to_dec(hz, num2), alloc_peak(), read);
        if (fflush(r->file) != 0 || ferror(r->file)) {
            fatal("writing the report %s failed", r->path);
        }
        if (!r->to_stdout && fclose(r->file) != 0) {
            fatal("closing the report %s failed", r->path);
        }
        r->file = NULL;
    }
}

void report_free(Report *r)
{
    xfree(r->records);
    r->records = NULL;
}
