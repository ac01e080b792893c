// `aerollm perplexity -m MODEL -f FILE [-c N] [--mem SIZE]`: perplexity exactly as llama.cpp's perplexity tool
// computes it, so figures compare across engines: the text is tokenized without BOS and cut into consecutive
// chunks of n_ctx tokens (the remainder dropped); each chunk is evaluated from position 0 with its first token
// replaced by BOS, in one pass, and the second half is scored: NLL of token j+1 from the logits at j, for
// j in [n_ctx/2, n_ctx-1).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common.h"

// Prints the help.
static void usage(void) {
    printf("usage: aerollm perplexity -m MODEL -f FILE [-c N_CTX (default 512)] [--chunks N] [--mem SIZE] [options]\n");
    cli_common_usage();
}

// Log of the softmax probability of `target` under logits, in double for a stable sum over many tokens.
static double log_prob(const float *logits, int n, int target) {
    double mx = logits[0];
    for (int i = 1; i < n; i++) mx = logits[i] > mx ? logits[i] : mx;
    double z = 0;
    for (int i = 0; i < n; i++) z += exp(logits[i] - mx);
    return logits[target] - mx - log(z);
}

// Entry point: the text in windows of -c tokens, each scored on its second half.
int aero_cmd_perplexity(int argc, char **argv) {
    cli_opts o;
    cli_opts_default(&o);
    o.n_ctx = 512;
    int max_chunks = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage();
            return 0;
        }
        if (!strcmp(argv[i], "--chunks") && i + 1 < argc) {
            max_chunks = atoi(argv[++i]);
            if (max_chunks < 1) return cli_fail("perplexity", "--chunks expects a positive number");
            continue;
        }
        int used = cli_opts_parse(&o, "perplexity", argc, argv, i);
        if (used < 0) return 1;
        if (used == 0) return cli_fail("perplexity", "unknown argument '%s' (see --help)", argv[i]);
        i += used - 1;
    }
    if (!o.prompt_file && !o.prompt) return cli_fail("perplexity", "give the text with -f FILE");
    if (o.n_ctx < 8) return cli_fail("perplexity", "-c must be at least 8");
    char *text = cli_read_prompt(&o, "perplexity");
    if (!text) return 1;
    cli_session e;
    if (cli_session_open(&e, &o, "perplexity")) {
        free(text);
        return 1;
    }
    const aero_tokenizer *tok = aero_model_tokenizer(e.model);
    int nv = aero_model_n_vocab(e.model), n_ctx = o.n_ctx;
    aero_error err = {0};
    int32_t *ids = NULL;
    size_t n_ids = 0;
    int rc = 1;
    float *logits = NULL;
    int32_t *chunk = NULL;
    aero_batch_buf *batch = NULL;
    if (aero_tokenize(tok, text, strlen(text), false, false, &ids, &n_ids, &err)) {
        cli_fail("perplexity", "%s", err.msg);
        goto done;
    }
    long n_chunks = (long)(n_ids / n_ctx);
    if (max_chunks > 0 && n_chunks > max_chunks) n_chunks = max_chunks;
    if (n_chunks < 1) {
        cli_fail("perplexity", "the text has %zu tokens, fewer than one chunk of %d (-c)", n_ids, n_ctx);
        goto done;
    }
    int first = n_ctx / 2;
    logits = malloc(sizeof(float) * nv * (size_t)(n_ctx - first));
    chunk = malloc(sizeof(int32_t) * n_ctx);
    batch = aero_batch_buf_new(n_ctx);
    if (!logits || !chunk || !batch) {
        cli_fail("perplexity", "out of memory");
        goto done;
    }
    int32_t bos = aero_tokenizer_bos(tok);
    bool add_bos = aero_tokenizer_add_bos(tok) && bos >= 0;
    fprintf(stderr, "perplexity: %zu tokens, %ld chunks of %d, scoring %d tokens per chunk%s\n", n_ids, n_chunks, n_ctx,
            n_ctx - 1 - first, add_bos ? " (first token of each chunk replaced by BOS)" : "");
    double nll = 0, nll2 = 0, t0 = aero_now();
    long count = 0;
    for (long c = 0; c < n_chunks; c++) {
        memcpy(chunk, ids + c * n_ctx, sizeof(int32_t) * n_ctx);
        if (add_bos) chunk[0] = bos;
        aero_kv_drop(e.ctx, 0);
        aero_batch_buf_clear(batch);
        for (int j = 0; j < n_ctx; j++) aero_batch_buf_add(batch, chunk[j], j, 0, j >= first && j < n_ctx - 1);
        if (aero_decode(e.ctx, aero_batch_buf_get(batch), logits, &err)) {
            cli_fail("perplexity", "%s", err.msg);
            goto done;
        }
        for (int j = first; j < n_ctx - 1; j++) {
            double l = -log_prob(logits + (size_t)(j - first) * nv, nv, chunk[j + 1]);
            nll += l;
            nll2 += l * l;
            count++;
        }
        printf("[%ld]%.4f,", c + 1, exp(nll / count));
        fflush(stdout);
    }
    double mean = nll / count, var = nll2 / count - mean * mean;
    double ppl = exp(mean), ppl_err = ppl * sqrt(var > 0 ? var / (count - 1 > 0 ? count - 1 : 1) : 0);
    printf("\nFinal estimate: PPL = %.4f +/- %.5f (%ld chunks, %ld scored tokens, %.1f s)\n", ppl, ppl_err, n_chunks,
           count, aero_now() - t0);
    if (o.stats) {
        cli_print_budget(&e, &o, stderr);
        aero_stream_print_stats(aero_model_stream(e.model), stderr);
    }
    rc = 0;
done:
    free(logits);
    free(chunk);
    aero_batch_buf_free(batch);
    free(ids);
    free(text);
    cli_session_close(&e);
    return rc;
}
