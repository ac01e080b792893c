// The generation layer: greedy output equal to a plain loop written here on aero_decode alone; the stopping
// rules (end-of-generation token sampled but never emitted, max_tokens, context full, stop strings cut before
// the string); speculative generation token-identical to plain; several sequences advanced in ONE batch per
// forward pass equal to each sequence generated alone; a chat-style second prompt reusing the KV cache; a
// prompt of several compute tiles prefilled in ONE pass over streamed weights, with and without a drafter.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modules.h" // the module headers: a white-box test

#include "check.h"
#include "helpers.h"
#include "model/generate.h"

#define MODELS SHARED_DATA "/models/"

static aero_sampler *greedy(int nv) {
    aero_sampler_params sp;
    aero_sampler_params_default(&sp);
    sp.temp = 0;
    return aero_sampler_new(&sp, nv);
}

static int tokenize(aero_model *m, const char *text, int32_t *out, int cap) {
    int32_t *ids = NULL;
    size_t n = 0;
    aero_error err = {0};
    const aero_tokenizer *t = aero_model_tokenizer(m);
    if (aero_tokenize(t, text, strlen(text), aero_tokenizer_add_bos(t), true, &ids, &n, &err)) return -1;
    if ((int)n > cap) n = (size_t)cap;
    memcpy(out, ids, n * sizeof *ids);
    free(ids);
    return (int)n;
}

// The oracle: a plain greedy loop on aero_decode, n tokens, no stopping rule.
static int oracle(aero_model *m, const int32_t *prompt, int np, int n, int32_t *out) {
    aero_ctx *c;
    aero_error err = {0};
    aero_ctx_params cp = {.n_ctx = 256};
    if (aero_ctx_new(&c, m, &cp, &err)) return -1;
    int nv = aero_model_hparams(m)->n_vocab;
    float *logits = malloc(sizeof(float) * nv * np);
    int32_t *pos = malloc(sizeof(int32_t) * np);
    for (int i = 0; i < np; i++) pos[i] = i;
    aero_batch b = {.n = np, .tokens = prompt, .pos = pos};
    int got = 0;
    if (!aero_decode(c, &b, logits, &err)) {
        const float *last = logits + (size_t)(np - 1) * nv;
        for (; got < n; got++) {
            out[got] = aero_argmax(last, nv);
            int32_t p = np + got;
            aero_batch one = {.n = 1, .tokens = &out[got], .pos = &p};
            if (aero_decode(c, &one, logits, &err)) break;
            last = logits;
        }
    }
    free(pos);
    free(logits);
    aero_ctx_free(c);
    return got;
}

typedef struct {
    int n_ctx, max_tokens, n_batch;
    bool ignore_eos;
    const char *stop;
    int32_t bias_tok;
    aero_model *draft;
} run_opts;

typedef struct {
    int32_t tok[512];
    int n_tok;
    char text[4096];
    aero_end end;
} result;

// Generates alone through aero_generator_step and collects tokens and visible text.
static void solo(aero_model *m, const int32_t *prompt, int np, const run_opts *o, result *r) {
    memset(r, 0, sizeof *r);
    aero_ctx *c;
    aero_error err = {0};
    aero_ctx_params cp = {.n_ctx = o->n_ctx};
    CHECK(aero_ctx_new(&c, m, &cp, &err) == AERO_OK);
    int nv = aero_model_hparams(m)->n_vocab;
    aero_sampler *s = greedy(nv);
    aero_spec *spec = NULL;
    if (o->draft) {
        aero_spec_params sp;
        aero_spec_params_default(&sp);
        sp.sampling.temp = 0;
        CHECK(aero_spec_new(&spec, c, 0, o->draft, &sp, &err) == AERO_OK);
    }
    float bias = 100;
    const char *stops[1] = {o->stop};
    aero_generator_params gp;
    aero_generator_params_default(&gp);
    gp.ctx = c;
    gp.tok = aero_model_tokenizer(m);
    gp.max_tokens = o->max_tokens;
    gp.n_batch = o->n_batch;
    gp.ignore_eos = o->ignore_eos;
    gp.stop = stops;
    gp.n_stop = o->stop ? 1 : 0;
    gp.bias_id = &o->bias_tok;
    gp.bias = &bias;
    gp.n_bias = o->bias_tok >= 0 ? 1 : 0;
    gp.spec = spec;
    aero_generator *g;
    CHECK(aero_generator_new(&g, &gp, s, &err) == AERO_OK);
    CHECKF(aero_generator_begin(g, prompt, np, &err) == AERO_OK, "%s", err.msg);
    CHECK(aero_generator_prefill(g, &err) == AERO_OK);
    for (;;) {
        int k;
        const int32_t *t = aero_generator_new_tokens(g, &k);
        for (int i = 0; i < k && r->n_tok < 512; i++) r->tok[r->n_tok++] = t[i];
        if (aero_generator_end(g) != AERO_END_NONE) break;
        CHECKF(aero_generator_step(g, &err) == AERO_OK, "%s", err.msg);
    }
    size_t len;
    const char *text = aero_generator_text(g, &len);
    CHECK(aero_generator_visible(g) == len);
    snprintf(r->text, sizeof r->text, "%.*s", (int)len, text);
    r->end = aero_generator_end(g);
    CHECK(aero_generator_n_generated(g) == r->n_tok);
    aero_generator_free(g);
    aero_spec_free(spec);
    aero_sampler_free(s);
    aero_ctx_free(c);
}

static run_opts base(void) { return (run_opts){.n_ctx = 256, .max_tokens = 40, .bias_tok = -1}; }

static void test_rules(aero_model *m, const int32_t *p, int np) {
    int32_t want[64];
    CHECK(oracle(m, p, np, 40, want) == 40);
    run_opts o = base();
    o.ignore_eos = true;
    result r;
    solo(m, p, np, &o, &r);
    CHECK(r.end == AERO_END_MAX_TOKENS && r.n_tok == 40);
    CHECK(!memcmp(r.tok, want, sizeof(int32_t) * 40));
    // prompt chunks of 2 tokens change nothing
    o.n_batch = 2;
    result r2;
    solo(m, p, np, &o, &r2);
    CHECK(r2.n_tok == 40 && !memcmp(r2.tok, want, sizeof(int32_t) * 40) && !strcmp(r.text, r2.text));
    // the end-of-generation token, forced by a bias: sampled, not emitted, no text
    o = base();
    o.bias_tok = aero_tokenizer_eos(aero_model_tokenizer(m));
    solo(m, p, np, &o, &r2);
    CHECK(r2.end == AERO_END_EOG && r2.n_tok == 0 && r2.text[0] == 0);
    // context full: the token sampled from the last cache position is the last
    o = base();
    o.ignore_eos = true;
    o.max_tokens = -1;
    o.n_ctx = np + 10;
    solo(m, p, np, &o, &r2);
    CHECKF(r2.end == AERO_END_CONTEXT && r2.n_tok == 11, "end %d, %d tokens", r2.end, r2.n_tok);
    CHECK(!memcmp(r2.tok, want, sizeof(int32_t) * 11));
    // max_tokens 0: nothing
    o = base();
    o.max_tokens = 0;
    solo(m, p, np, &o, &r2);
    CHECK(r2.end == AERO_END_MAX_TOKENS && r2.n_tok == 0);
    // a stop string from the middle of the text: cut before it
    size_t L = strlen(r.text);
    CHECK(L > 20);
    char stop[8];
    snprintf(stop, sizeof stop, "%.5s", r.text + L / 2);
    const char *at = strstr(r.text, stop);
    o = base();
    o.ignore_eos = true;
    o.stop = stop;
    solo(m, p, np, &o, &r2);
    CHECKF(r2.end == AERO_END_STOP_STRING && strlen(r2.text) == (size_t)(at - r.text) &&
               !strncmp(r2.text, r.text, at - r.text),
           "stop '%s': '%s'", stop, r2.text);
}

static void test_spec_equal(aero_model *m, aero_model *d, const int32_t *p, int np) {
    run_opts o = base();
    o.ignore_eos = true;
    o.max_tokens = 60;
    result a, b;
    solo(m, p, np, &o, &a);
    o.draft = d;
    solo(m, p, np, &o, &b);
    CHECK(a.n_tok == 60 && b.n_tok == 60 && !memcmp(a.tok, b.tok, sizeof(int32_t) * 60) && !strcmp(a.text, b.text));
    // the context filling up ends both at the same token
    o.n_ctx = np + 20;
    o.max_tokens = -1;
    solo(m, p, np, &o, &b);
    o.draft = NULL;
    solo(m, p, np, &o, &a);
    CHECK(a.end == AERO_END_CONTEXT && b.end == AERO_END_CONTEXT && a.n_tok == b.n_tok &&
          !memcmp(a.tok, b.tok, sizeof(int32_t) * a.n_tok));
}

// Three sequences, ONE forward pass per step for all of them (prompt chunks mixed with next tokens).
static void test_batch(aero_model *m, int32_t prompts[3][64], const int np[3]) {
    aero_ctx *c;
    aero_error err = {0};
    aero_ctx_params cp = {.n_ctx = 256, .n_seq = 3};
    CHECK(aero_ctx_new(&c, m, &cp, &err) == AERO_OK);
    int nv = aero_model_hparams(m)->n_vocab;
    aero_sampler *s[3];
    aero_generator *g[3];
    int max[3] = {30, 17, 25};
    for (int i = 0; i < 3; i++) {
        s[i] = greedy(nv);
        aero_generator_params gp;
        aero_generator_params_default(&gp);
        gp.tok = aero_model_tokenizer(m);
        gp.seq = i;
        gp.n_ctx = 256;
        gp.n_vocab = nv;
        gp.max_tokens = max[i];
        gp.ignore_eos = true;
        CHECK(aero_generator_new(&g[i], &gp, s[i], &err) == AERO_OK);
        CHECK(aero_generator_begin(g[i], prompts[i], np[i], &err) == AERO_OK);
    }
    aero_batch_buf *b = aero_batch_buf_new(8);
    float *logits = malloc(sizeof(float) * nv * 3);
    int passes = 0;
    for (;;) {
        aero_batch_buf_clear(b);
        bool fed[3] = {0};
        for (int i = 0; i < 3; i++)
            if (aero_generator_end(g[i]) == AERO_END_NONE) fed[i] = aero_generator_feed(g[i], b, 3) > 0;
        if (aero_batch_buf_len(b) == 0) break;
        CHECK(aero_decode(c, aero_batch_buf_get(b), logits, &err) == AERO_OK);
        passes++;
        for (int i = 0; i < 3; i++)
            if (fed[i]) aero_generator_advance(g[i], logits);
    }
    for (int i = 0; i < 3; i++) {
        run_opts o = base();
        o.ignore_eos = true;
        o.max_tokens = max[i];
        result r;
        solo(m, prompts[i], np[i], &o, &r);
        size_t len;
        const char *text = aero_generator_text(g[i], &len);
        CHECKF(len == strlen(r.text) && !memcmp(text, r.text, len), "sequence %d: batched '%.*s' vs solo '%s'", i,
               (int)len, text, r.text);
        CHECK(aero_generator_n_generated(g[i]) == max[i]);
        aero_generator_free(g[i]);
        aero_sampler_free(s[i]);
    }
    CHECK(passes < 30 + 17 + 25);
    free(logits);
    aero_batch_buf_free(b);
    aero_ctx_free(c);
}

// A second prompt that extends the first reuses the cached prefix and generates as a fresh run would.
static void test_reuse(aero_model *m, const int32_t *p, int np) {
    aero_ctx *c;
    aero_error err = {0};
    aero_ctx_params cp = {.n_ctx = 256};
    CHECK(aero_ctx_new(&c, m, &cp, &err) == AERO_OK);
    aero_sampler *s = greedy(aero_model_hparams(m)->n_vocab);
    aero_generator_params gp;
    aero_generator_params_default(&gp);
    gp.ctx = c;
    gp.tok = aero_model_tokenizer(m);
    gp.max_tokens = 10;
    gp.ignore_eos = true;
    aero_generator *g;
    CHECK(aero_generator_new(&g, &gp, s, &err) == AERO_OK);
    CHECK(aero_generator_begin(g, p, np - 2, &err) == AERO_OK && aero_generator_prefill(g, &err) == AERO_OK);
    while (aero_generator_end(g) == AERO_END_NONE) CHECK(aero_generator_step(g, &err) == AERO_OK);
    CHECK(aero_generator_begin(g, p, np, &err) == AERO_OK && aero_generator_prefill(g, &err) == AERO_OK);
    CHECK(aero_generator_n_reused(g) >= np - 2); // more when the model continued the prompt as it goes on
    while (aero_generator_end(g) == AERO_END_NONE) CHECK(aero_generator_step(g, &err) == AERO_OK);
    size_t len;
    const char *text = aero_generator_text(g, &len);
    run_opts o = base();
    o.ignore_eos = true;
    o.max_tokens = 10;
    result r;
    solo(m, p, np, &o, &r);
    CHECK(len == strlen(r.text) && !memcmp(text, r.text, len));
    aero_generator_free(g);
    aero_sampler_free(s);
    aero_ctx_free(c);
}

// With every layer streamed and a compute tile of a third of the prompt, the generator's prefill and the
// speculative decoder's (all but the prompt's last tile) each read the weights once, and the greedy tokens are
// those of the resident model.
static void test_prompt_pass(const int32_t *p, int np) {
    aero_model *res = test_load_model(MODELS "stories260K.gguf", 2, 0);
    CHECK(res != NULL);
    if (!res) return;
    uint64_t budget = aero_stream_get_plan(aero_model_stream(res))->min_budget;
    aero_model *m = test_load_model(MODELS "stories260K.gguf", 2, budget);
    CHECK(m && aero_stream_get_plan(aero_model_stream(m))->n_streamed > 0);
    if (!m) {
        aero_model_free(res);
        return;
    }
    int tile = np / 3;
    run_opts o = base();
    o.ignore_eos = true;
    o.max_tokens = 8;
    result want;
    solo(res, p, np, &o, &want);
    for (int with_spec = 0; with_spec < 2; with_spec++) {
        aero_error err = {0};
        aero_ctx *c;
        aero_ctx_params cp = {.n_ctx = 256, .n_batch = tile};
        CHECK(aero_ctx_new(&c, m, &cp, &err) == AERO_OK);
        aero_sampler *s = greedy(aero_model_hparams(m)->n_vocab);
        aero_spec *spec = NULL;
        if (with_spec) {
            aero_spec_params sp;
            aero_spec_params_default(&sp);
            sp.sampling.temp = 0;
            sp.n_batch = tile;
            CHECK(aero_spec_new(&spec, c, 0, NULL, &sp, &err) == AERO_OK);
        }
        aero_generator_params gp;
        aero_generator_params_default(&gp);
        gp.ctx = c;
        gp.tok = aero_model_tokenizer(m);
        gp.max_tokens = o.max_tokens;
        gp.ignore_eos = true;
        gp.spec = spec;
        aero_generator *g;
        CHECK(aero_generator_new(&g, &gp, s, &err) == AERO_OK);
        aero_stream *st = aero_model_stream(m);
        aero_stream_reset_stats(st);
        CHECK(aero_generator_begin(g, p, np, &err) == AERO_OK && aero_generator_prefill(g, &err) == AERO_OK);
        aero_stream_stats ss;
        aero_stream_get_stats(st, &ss);
        CHECKF(ss.passes == 1, "%s: a %d-token prompt, tile %d: %llu passes", with_spec ? "spec" : "plain", np, tile,
               (unsigned long long)ss.passes);
        int n = 0, k;
        int32_t got[64];
        for (;;) {
            const int32_t *t = aero_generator_new_tokens(g, &k);
            for (int i = 0; i < k && n < 64; i++) got[n++] = t[i];
            if (aero_generator_end(g) != AERO_END_NONE) break;
            CHECKF(aero_generator_step(g, &err) == AERO_OK, "%s", err.msg);
        }
        CHECK(n == want.n_tok && !memcmp(got, want.tok, sizeof(int32_t) * n));
        if (spec) {
            aero_spec_stats sst;
            aero_spec_get_stats(spec, &sst);
            CHECK(sst.prefill_passes == 1);
        }
        aero_generator_free(g);
        aero_spec_free(spec);
        aero_sampler_free(s);
        aero_ctx_free(c);
    }
    aero_model_free(m);
    aero_model_free(res);
}

int main(void) {
    require_shared_data();
    aero_model *m = test_load_model(MODELS "stories260K.gguf", 2, 0);
    aero_model *d = test_load_model(MODELS "stories260K-Q4_0.gguf", 2, 0);
    CHECK(m && d);
    if (!m || !d) return check_done("test_generate");
    const char *texts[3] = {"Once upon a time", "Tom and Lily went to the park. Tom said", "Lily wanted to"};
    int32_t prompts[3][64];
    int np[3];
    for (int i = 0; i < 3; i++) CHECK((np[i] = tokenize(m, texts[i], prompts[i], 64)) > 2);
    test_rules(m, prompts[0], np[0]);
    test_rules(m, prompts[1], np[1]);
    test_spec_equal(m, d, prompts[0], np[0]);
    test_spec_equal(m, d, prompts[2], np[2]);
    test_batch(m, prompts, np);
    test_reuse(m, prompts[1], np[1]);
    test_prompt_pass(prompts[1], np[1]);
    aero_model_free(m);
    aero_model_free(d);
    return check_done("test_generate");
}
