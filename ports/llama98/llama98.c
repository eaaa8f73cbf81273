/* llama98.c - command line and generation loop (the -r report: report.c).
 *
 * llama98 CHECKPOINT [-t T] [-p P] [-s SEED] [-n STEPS] [-i PROMPT]
 *                    [-z TOKENIZER] [-m generate] [-r REPORT] [-c CONTEXT]
 *                    [-M MEGABYTES]
 *
 * Behaves like llama2.c's `run` in generate mode (same clamping, sampler and
 * text), and can write the line-oriented report described in REPORT.md.
 * With a BPE tokenizer file (L98B, the Llama 3 family) the prompt is the
 * file's BOS then the BPE encoding of the prompt, a sampled EOS or stop id
 * ends the run unprinted, and every other token prints as its bytes
 * (README.md, "Llama 3 runs").  -c caps the positions a run takes (prompt
 * and generated tokens), which size the KV cache.  -M is the memory budget:
 * weights that do not fit it are read from the checkpoint for every token
 * (default: what the system says is available; README.md, "Memory budget").
 *
 * The test-only build variants (LLAMA98_FORK_STYLE) are in variants.h.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _WIN32
#include <fcntl.h>
#include <io.h>
#endif
#include "bpe.h"
#include "model.h"
#include "report.h"
#include "sampler.h"
#include "sysmem.h"
#include "timer.h"
#include "tokenizer.h"
#include "u64.h"
#include "util.h"
#include "variants.h"

/* LLAMA98_FORK_STYLE (variants.h): llama2.c's usage text. */
#ifdef LLAMA98_FORK_STYLE
#define USAGE "Usage:   run <checkpoint> [options]\nExample: run model.bin -n 256 -i \"Once upon a time\""
#else
#define USAGE "usage: llama98 CHECKPOINT [-t T] [-p P] [-s SEED] [-n STEPS] [-i PROMPT] " \
              "[-z TOKENIZER] [-m generate] [-r REPORT] [-c CONTEXT] [-M MEGABYTES]"
#endif

typedef struct {
    const char *checkpoint;
    const char *tokenizer;
    const char *prompt;
    const char *mode;
    const char *report;
    float temperature;
    float topp;
    int seed;
    int steps;
    int context; /* -c: at most this many positions (0: the model's seq_len) */
    double budget_mb; /* -M: the memory budget in MiB (0: what the system says) */
} Args;

/* The run's tokenizer: a llama2.c file, or a BPE file (then bpe != NULL). */
typedef struct {
    Tokenizer *tok;
    Bpe *bpe;
} Vocab;

/* True when the file starts with the BPE tokenizer magic "L98B" (a llama2.c
 * tokenizer starts with max_token_length, a small int32). */
static int is_bpe_file(const char *path)
{
    unsigned char magic[4];
    int bpe = 0;
    FILE *f = fopen(path, "rb");
    if (f != NULL) {
        bpe = fread(magic, 1, 4, f) == 4 && memcmp(magic, "L98B", 4) == 0;
        fclose(f);
    }
    return bpe;
}

/* atoi() without its undefined behaviour on overflow: out-of-range values
 * saturate, as they do with a 32-bit long. */
static int parse_int(const char *s)
{
    long v = strtol(s, NULL, 10);
#if LONG_MAX > INT_MAX
    /* only where long is wider than int: elsewhere strtol has saturated
     * already and the comparisons would always be false (OpenWatcom W124) */
    if (v > INT_MAX) {
        return INT_MAX;
    }
    if (v < INT_MIN) {
        return INT_MIN;
    }
#endif
    return (int)v;
}

static void parse_args(int argc, char **argv, Args *a)
{
    int i;
    a->checkpoint = NULL;
    a->tokenizer = "tokenizer.bin";
    a->prompt = NULL;
    a->mode = "generate";
    a->report = NULL;
    a->temperature = 1.0f;
    a->topp = 0.9f;
    a->seed = 0;
    a->steps = 256;
    a->context = 0;
    a->budget_mb = 0.0;
    if (argc < 2) {
        fatal("missing CHECKPOINT; " USAGE);
    }
    a->checkpoint = argv[1];
    for (i = 2; i < argc; i += 2) {
        const char *flag = argv[i];
        const char *value;
        if (flag[0] != '-' || strlen(flag) != 2) {
            fatal("unknown option '%s'; " USAGE, flag);
        }
        if (strchr("tpsnizmrycM", flag[1]) == NULL) {
            fatal("unknown option '%s'; " USAGE, flag);
        }
        if (i + 1 >= argc) {
            fatal("option %s needs a value; " USAGE, flag);
        }
        value = argv[i + 1];
        switch (flag[1]) {
        case 't':
            a->temperature = (float)strtod(value, NULL);
            break;
        case 'p':
            a->topp = (float)strtod(value, NULL);
            break;
        case 's':
            a->seed = parse_int(value);
            break;
        case 'n':
            a->steps = parse_int(value);
            break;
        case 'i':
            a->prompt = value;
            break;
        case 'z':
            a->tokenizer = value;
            break;
        case 'c':
#ifdef LLAMA98_FORK_STYLE
            fatal("%s", USAGE); /* llama2.c has no -c */
#endif
            a->context = parse_int(value);
            if (a->context <= 0) {
                fatal("-c %s: the context must be a positive number of positions", value);
            }
            break;
        case 'm':
            a->mode = value;
            break;
        case 'M':
#ifdef LLAMA98_FORK_STYLE
            fatal("%s", USAGE); /* llama2.c has no -M */
#endif
            a->budget_mb = strtod(value, NULL);
            if (!(a->budget_mb > 0.0 && a->budget_mb <= 4194304.0)) {
                fatal("-M %s: the memory budget must be a positive number of megabytes (MiB, at most 4194304)",
                      value);
            }
            break;
        case 'r':
#ifdef LLAMA98_FORK_STYLE
            fatal("%s", USAGE);
#else
            a->report = value;
#endif
            break;
        default:
            /* -y: llama2.c's system prompt, used only in chat mode */
            break;
        }
    }
    if (strcmp(a->mode, "generate") != 0) {
        fatal("unknown mode '%s': only -m generate is supported", a->mode);
    }
    /* llama2.c's clamping of out-of-range values */
    if (a->temperature < 0.0) {
        a->temperature = 0.0f;
    }
    if (a->topp < 0.0 || 1.0 < a->topp) {
        a->topp = 0.9f;
    }
    if (a->steps < 0) {
        a->steps = 0;
    }
}

/* llama2.c stores the int seed in an unsigned 64-bit variable (negative
 * seeds sign-extend) and replaces 0 with the current time. */
static void seed_value(int seed, u64 *out)
{
    if (seed == 0) {
        u64_set(out, 0UL, (unsigned long)time(NULL));
    } else if (seed < 0) {
        u64_set(out, U32_MASK, (unsigned long)(long)seed);
    } else {
        u64_set(out, 0UL, (unsigned long)seed);
    }
}

/* What one run needs between parsing and freeing: its report, the prompt
 * and the timings. */
typedef struct {
    Report report;
    ReportRun head; /* what the report's header records */
    int *prompt_tokens;
    int n_prompt;
    int pos;
    double read; /* checkpoint bytes read during the steps */
    u64 hz, run_start, first_done, end;
} Run;

/* Prints the token `next` (after `prev`) and says whether it ends the run:
 * llama2.c's rule (a BOS ends it; pieces printed as llama2.c prints them),
 * or with a BPE tokenizer Llama 3's (a sampled EOS or stop id ends it and is
 * not printed; any other token is its bytes, written as they are). */
static int emit(const Vocab *vocab, int prev, int next, int sampled)
{
    if (vocab->bpe != NULL) {
        const unsigned char *bytes;
        long len;
        if (sampled && bpe_is_stop(vocab->bpe, next)) {
            return 1;
        }
        bytes = bpe_token(vocab->bpe, next, &len);
        if (len > 0) {
            fwrite(bytes, 1, (size_t)len, stdout);
            fflush(stdout);
        }
        return 0;
    }
    if (next == 1) {
        return 1; /* BOS delimits sequences */
    }
    print_piece(tokenizer_decode(vocab->tok, prev, next), stdout);
    fflush(stdout);
    return 0;
}

/* llama2.c's generate(): the prompt is forced, then the sampler picks; the
 * text streams to stdout and each step's ticks go to the report. */
static void generate(Run *run, const Args *a, Model *model, const Vocab *vocab, Sampler *sampler)
{
    u64 t0, t1;
    int token = run->prompt_tokens[0], next, started = 0, sampled, stop;
    double read_start = model->file.bytes_read;
    run->pos = 0;
    u64_set(&run->first_done, 0UL, 0UL);
    timer_now(&run->run_start);
    t1 = run->run_start;
    while (run->pos < a->steps) {
        StepRecord rec;
        float *logits;
        double read_before = model->file.bytes_read;
        u64 io_before = model->io_ticks;
        timer_now(&t0);
        logits = model_forward(model, token, run->pos);
        sampled = run->pos >= run->n_prompt - 1;
        if (!sampled) {
            next = run->prompt_tokens[run->pos + 1];
        } else {
            next = sampler_sample(sampler, logits);
        }
        run->pos++;
        stop = emit(vocab, token, next, sampled);
        timer_now(&t1);
        rec.pos = run->pos - 1;
        rec.id = next;
        rec.read = model->file.bytes_read - read_before;
        u64_sub(&rec.io, &model->io_ticks, &io_before);
        u64_sub(&rec.ticks, &t1, &t0);
        report_step(&run->report, &rec);
        if (stop) {
            break;
        }
        token = next;
        if (!started) {
            run->first_done = t1;
            started = 1;
        }
    }
    run->end = t1;
    run->read = model->file.bytes_read - read_start;
    printf("\n");
    fflush(stdout);
}

/* The tok/s line on stderr (as llama2.c prints it) and the report's end. */
static void finish_report(Run *run, const Model *m)
{
    u64 total;
    u64_sub(&total, &run->end, &run->run_start);
    if (run->pos > 1) {
        u64 now, elapsed;
        double ticks;
        timer_now(&now);
        u64_sub(&elapsed, &now, &run->first_done);
        ticks = u64_to_double(&elapsed);
        if (ticks < 1.0) {
            ticks = 1.0; /* a clock too coarse for the run: avoid 1/0 */
        }
        fprintf(stderr, "achieved tok/s: %f\n", (run->pos - 1) * u64_to_double(&run->hz) / ticks);
        /* msvcrt buffers stderr when it is a pipe (agent98): flush so the line precedes a -r - report */
        fflush(stderr);
    }
    report_finish(&run->report, &run->head, m, &total, &run->hz, run->read);
}

/* BOS (when the file has one) then the BPE ids of the prompt, without
 * special-token parsing (the oracle's rule); returns the count. */
static int encode_bpe(const Bpe *b, const char *prompt, int **out)
{
    long len = (long)strlen(prompt), n, i, first = b->bos_id >= 0 ? 1 : 0;
    long *ids = (long *)xmalloc(((double)bpe_max_ids(len) + 1.0) * sizeof(long), "the prompt");
    int *tokens;
    if (first) {
        ids[0] = b->bos_id;
    }
    n = first + bpe_encode(b, (const unsigned char *)prompt, len, 0, ids + first);
    if (n == 0) {
        fatal("expected at least 1 prompt token (the tokenizer has no BOS and the prompt is empty)");
    }
    tokens = (int *)xmalloc((double)n * sizeof(int), "the prompt");
    for (i = 0; i < n; i++) {
        tokens[i] = (int)ids[i];
    }
    xfree(ids);
    *out = tokens;
    return (int)n;
}

/* Allocates the run state and keeps the weights resident within the
 * memory budget: -M, else what the system says is available less an eighth
 * (at least 8 MB) left to its file cache, which streamed weights are read
 * through (with none left, a 128 MB guest's reads of 110M-shape grew from 3
 * to 19 s per token), else everything. */
static void start_model(Model *model, const Args *a)
{
    double budget = a->budget_mb * 1048576.0, margin;
    int source = BUDGET_OPTION;
    if (a->budget_mb == 0.0) {
        budget = sysmem_available();
        source = budget > 0.0 ? BUDGET_OS : BUDGET_NONE;
    }
    if (source == BUDGET_OS) {
        margin = budget / 8.0 > 8388608.0 ? budget / 8.0 : 8388608.0;
        budget = budget - margin > 1048576.0 ? budget - margin : 1048576.0;
    }
    model_start(model, a->steps, budget, source);
}

int main(int argc, char **argv)
{
    Args args;
    u64 seed;
    Model model;
    Tokenizer tok;
    Bpe bpe;
    Vocab vocab;
    Sampler sampler;
    Run run;
    const char *prompt;
    int limit;

#ifdef _WIN32
    /* the text is bytes: no "\r\n" translation, same output as Linux */
    _setmode(_fileno(stdout), _O_BINARY);
    _setmode(_fileno(stderr), _O_BINARY);
#endif
    if (!host_float_ok()) {
        fatal("this build needs 4-byte little-endian IEEE floats");
    }
    crc32_init();
    parse_args(argc, argv, &args);
    seed_value(args.seed, &seed);

    model_load(&model, args.checkpoint);
    /* llama2.c's rule (0 or more than seq_len -> seq_len), with -c lowering the limit */
    limit = model.config.seq_len;
    if (args.context > 0 && args.context < limit) {
        limit = args.context;
    }
    if (args.steps == 0 || args.steps > limit) {
        args.steps = limit;
    }
    prompt = args.prompt != NULL ? args.prompt : "";
    vocab.tok = NULL;
    vocab.bpe = NULL;
    if (is_bpe_file(args.tokenizer)) {
        bpe_load(&bpe, args.tokenizer);
        vocab.bpe = &bpe;
        if (bpe.n_tokens > model.config.vocab_size) {
            fatal("tokenizer %s has %ld token ids but checkpoint %s has a vocabulary of %d: not its tokenizer",
                  args.tokenizer, bpe.n_tokens, args.checkpoint, model.config.vocab_size);
        }
        run.n_prompt = encode_bpe(&bpe, prompt, &run.prompt_tokens);
    } else {
        tokenizer_load(&tok, args.tokenizer, model.config.vocab_size);
        vocab.tok = &tok;
        run.prompt_tokens = (int *)xmalloc(((double)strlen(prompt) + 3.0) * sizeof(int), "the prompt");
        run.n_prompt = tokenizer_encode(&tok, prompt, run.prompt_tokens);
    }
    if (args.context > 0 && run.n_prompt > args.context) {
        fatal("the prompt is %d tokens, more than the context -c %d", run.n_prompt, args.context);
    }
    sampler_init(&sampler, model.config.vocab_size, args.temperature, args.topp, &seed);
    /* the step records of -r - count against the memory budget like everything else */
    report_init(&run.report, args.report, args.steps);
    start_model(&model, &args);

    timer_init();
    timer_hz(&run.hz);
#ifdef LLAMA98_FORK_STYLE
    printf("llama2.c for Windows 98 (test fork)\nModel: dim=%d n_layers=%d n_heads=%d vocab=%d seq_len=%d\n"
           "Prompt: %s\n", model.config.dim, model.config.n_layers, model.config.n_heads,
           model.config.vocab_size, model.config.seq_len, prompt);
#endif
    run.head.temperature = args.temperature;
    run.head.topp = args.topp;
    run.head.seed = &seed;
    run.head.steps = args.steps;
    run.head.prompt = args.prompt;
    run.head.tok = vocab.tok;
    run.head.bpe = vocab.bpe;
    run.head.prompt_tokens = run.prompt_tokens;
    run.head.n_prompt = run.n_prompt;
    report_open(&run.report, &run.head, &model);
    generate(&run, &args, &model, &vocab, &sampler);
    finish_report(&run, &model);
#ifdef LLAMA98_FORK_STYLE
    printf("Freeing memory... done.\n");
#endif

    report_free(&run.report);
    xfree(run.prompt_tokens);
    sampler_free(&sampler);
    if (vocab.bpe != NULL) {
        bpe_free(&bpe);
    } else {
        tokenizer_free(&tok);
    }
    model_free(&model);
    return 0;
}
