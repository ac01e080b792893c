// Helpers shared by the C tests: deterministic random numbers, opening a model, writing a synthetic llama GGUF,
// temporary paths. Each test used to carry its own copy; a fix here reaches all of them.
#ifndef AERO_TESTS_HELPERS_H
#define AERO_TESTS_HELPERS_H

#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "modules.h" // the module headers: a white-box test

#include "check.h"
#include "format/gguf.h"

// ---- random numbers: fixed generators so test data (and the tolerances tuned on it) never changes -----------

// splitmix64: one step of the sequence in *state. Also a good 64-bit hash: test_splitmix64(&(uint64_t){x}).
static inline uint64_t test_splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// xorshift64 (13, 7, 17): one step of the sequence in *state (state must not be 0).
static inline uint64_t test_xorshift64(uint64_t *state) {
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

// Uniform in [-1, 1) from the top 53 bits of the next xorshift64 value.
static inline double test_xorshift_sym(uint64_t *state) {
    return (test_xorshift64(state) >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}

// ---- models ----------------------------------------------------------------------------------------------------

// Loads a model with n_threads compute threads under mem_budget bytes (0: no budget); NULL (and the reason on
// stderr) when it cannot.
static inline aero_model *test_load_model(const char *path, int n_threads, uint64_t mem_budget) {
    aero_model_params p;
    aero_model_params_default(&p);
    p.path = path;
    p.n_threads = n_threads;
    p.mem_budget = mem_budget;
    aero_model *m = NULL;
    aero_error err = {0};
    if (aero_model_load(&m, &p, &err)) fprintf(stderr, "load %s: %s\n", path, err.msg);
    return m;
}

// Shape of a synthetic llama; fields left 0 are not written (the loader's defaults apply).
typedef struct {
    int n_layer, n_embd, n_ff, n_head, n_head_kv, n_ctx;
    float rms_eps, rope_base;
} test_llama;

// Writes the llama hyperparameters of hp and copies every tokenizer.* key of tokenizer_gguf into w.
// Returns the vocabulary size (the tokenizer's token count), -1 when tokenizer_gguf cannot be read.
static inline int test_llama_header(aero_gguf_writer *w, const test_llama *hp, const char *tokenizer_gguf) {
    aero_gguf tok;
    aero_error err = {0};
    if (aero_gguf_open(&tok, tokenizer_gguf, &err)) {
        fprintf(stderr, "%s: %s\n", tokenizer_gguf, err.msg);
        return -1;
    }
    aero_gguf_set_str(w, "general.architecture", "llama");
    aero_gguf_set_u32(w, "llama.block_count", (uint32_t)hp->n_layer);
    aero_gguf_set_u32(w, "llama.embedding_length", (uint32_t)hp->n_embd);
    aero_gguf_set_u32(w, "llama.feed_forward_length", (uint32_t)hp->n_ff);
    aero_gguf_set_u32(w, "llama.attention.head_count", (uint32_t)hp->n_head);
    aero_gguf_set_u32(w, "llama.attention.head_count_kv", (uint32_t)hp->n_head_kv);
    if (hp->n_ctx) aero_gguf_set_u32(w, "llama.context_length", (uint32_t)hp->n_ctx);
    if (hp->rms_eps) aero_gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", hp->rms_eps);
    if (hp->rope_base) aero_gguf_set_f32(w, "llama.rope.freq_base", hp->rope_base);
    int vocab = -1;
    for (uint64_t i = 0; i < tok.n_kv; i++) {
        if (strncmp(tok.kv[i].key.ptr, "tokenizer.", 10)) continue;
        aero_gguf_set_value(w, tok.kv[i].key.ptr, &tok.kv[i].value);
        if (!strcmp(tok.kv[i].key.ptr, "tokenizer.ggml.tokens")) vocab = (int)tok.kv[i].value.arr.n;
    }
    aero_gguf_free(&tok);
    return vocab;
}

// Adds a (rows, cols) tensor (1-D when rows is 1) of type t from data (rows * row bytes); a failure is a CHECK.
static inline bool test_add_tensor(aero_gguf_writer *w, const char *name, aero_dtype t, int rows, int cols,
                                   const void *data) {
    uint64_t ne[2] = {(uint64_t)cols, (uint64_t)rows};
    aero_error err = {0};
    bool ok = !aero_gguf_add_tensor(w, name, t, rows > 1 ? 2 : 1, ne, data, &err);
    CHECKF(ok, "%s: %s", name, err.msg);
    return ok;
}

// ---- files and time --------------------------------------------------------------------------------------------

// The whole file as a NUL-terminated malloc'ed string (its length in *len when len is not NULL); NULL when it
// cannot be read.
static inline char *test_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *p = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    if (n >= 0 && fseek(f, 0, SEEK_SET) == 0) p = malloc((size_t)n + 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    if (p) {
        p[n] = 0;
        if (len) *len = (size_t)n;
    }
    return p;
}

// Parses a comma-separated token list ("1,300,301") for the --greedy dump modes; returns the count.
static inline int test_parse_tokens(const char *list, int32_t *out, int cap) {
    int n = 0;
    for (char *s = (char *)list; *s && n < cap; s++) {
        out[n++] = (int32_t)strtol(s, &s, 10);
        if (!*s) break;
    }
    return n;
}

// Prints greedy tokens and each step's top logits as the JSON the llama.cpp comparisons read
// (tests/node/llamacpp_util.mjs): {"tokens":[...],"steps":[{"top":[[id,logit],...]},...]}. Clobbers lg.
static inline void test_print_greedy_json(const int32_t *out, float *lg, int n, int nv, int top) {
    printf("{\"tokens\":[");
    for (int i = 0; i < n; i++) printf("%s%d", i ? "," : "", out[i]);
    printf("],\"steps\":[");
    for (int i = 0; i < n; i++) {
        float *l = lg + (size_t)i * nv;
        printf("%s{\"top\":[", i ? "," : "");
        for (int t = 0; t < top; t++) {
            int best = -1;
            for (int j = 0; j < nv; j++)
                if (l[j] == l[j] && (best < 0 || l[j] > l[best])) best = j; // NaN marks those printed
            printf("%s[%d,%.6f]", t ? "," : "", best, l[best]);
            l[best] = 0.0f / 0.0f;
        }
        printf("]}");
    }
    printf("]}\n");
}

// Monotonic seconds, for the tests that bound how long something takes.
static inline double test_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

// ---- temporary files -------------------------------------------------------------------------------------------

// The folder for temporary files: $TMPDIR, else /tmp.
static inline const char *test_tmp_base(void) {
    const char *t = getenv("TMPDIR");
    return t && *t ? t : "/tmp";
}

// A path TMP/aero_<name>_<pid>: unique per test process, so suites running side by side do not collide.
static inline const char *test_tmp_path(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/aero_%s_%d", test_tmp_base(), name, (int)getpid());
    return buf;
}

// Creates a private folder TMP/aero_<name>_XXXXXX in buf; false (with the reason on stderr) when it cannot.
static inline bool test_tmp_dir(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/aero_%s_XXXXXX", test_tmp_base(), name);
    if (mkdtemp(buf)) return true;
    perror("mkdtemp");
    return false;
}

#endif
