// Architectures and GGUF hyperparameters as llama.cpp reads them: synthetic models of each supported shape
// (`aerollm synth` presets and options) load and decode; head sizes other than embedding / heads, rope scaling
// types and architecture refusals behave as llama.cpp's loader does. The comparison with llama.cpp itself is in
// tests/node/arch_llamacpp.test.mjs, which runs this binary's --greedy mode.
//
// `test_arch --greedy MODEL TOKENS N TOP` prints the greedy continuation of the comma-separated prompt TOKENS
// with the TOP logits of each step as JSON (F16 KV cache, as llama.cpp's default).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <aerollm.h>

#include "check.h"
#include "helpers.h"
#include "model/model_internal.h"
#include "synth/synth.h"

// Greedy decoding of n tokens after the prompt; logits (n x n_vocab) of each step when asked.
static bool greedy(aero_model *m, const int32_t *prompt, int np, int n, int32_t *out, float *logits) {
    int nv = aero_model_hparams(m)->n_vocab;
    aero_ctx *c;
    aero_error err = {0};
    aero_ctx_params cp = {.n_ctx = 512};
    if (aero_ctx_new(&c, m, &cp, &err)) {
        CHECKF(0, "ctx: %s", err.msg);
        return false;
    }
    float *lg = malloc(sizeof(float) * nv * (np > 1 ? np : 1));
    int32_t pos[512];
    for (int i = 0; i < 512; i++) pos[i] = i;
    aero_batch b = {.n = np, .tokens = prompt, .pos = pos};
    bool ok = !aero_decode(c, &b, lg, &err);
    const float *last = lg + (size_t)(np - 1) * nv;
    for (int t = 0; ok && t < n; t++) {
        int best = 0;
        for (int j = 1; j < nv; j++)
            if (last[j] > last[best]) best = j;
        out[t] = best;
        if (logits) memcpy(logits + (size_t)t * nv, last, sizeof(float) * nv);
        aero_batch one = {.n = 1, .tokens = &out[t], .pos = &pos[np + t]};
        ok = !aero_decode(c, &one, lg, &err);
        last = lg;
    }
    CHECKF(ok, "decode: %s", err.msg);
    free(lg);
    aero_ctx_free(c);
    return ok;
}

// The AeroLLM side of the llama.cpp comparison: tokens and each step's top logits as JSON.
static int dump_greedy(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: test_arch --greedy MODEL TOKENS N TOP\n");
        return 2;
    }
    int32_t prompt[256];
    int np = test_parse_tokens(argv[3], prompt, 256);
    int n = atoi(argv[4]), top = atoi(argv[5]);
    aero_model *m = test_load_model(argv[2], 2, 0);
    if (!m || n < 1 || n > 256 || top < 1) return 1;
    int nv = aero_model_hparams(m)->n_vocab;
    int32_t *out = malloc(sizeof(int32_t) * n);
    float *lg = malloc(sizeof(float) * n * nv);
    if (!greedy(m, prompt, np, n, out, lg)) return 1;
    test_print_greedy_json(out, lg, n, nv, top);
    free(out);
    free(lg);
    aero_model_free(m);
    return 0;
}

// Writes a synth model from a preset with tweaks applied by fn; returns the path (static buffer per call site).
static bool write_synth(const char *preset, void (*fn)(aero_synth_params *), const char *path) {
    aero_synth_params p;
    aero_error err = {0};
    CHECK(aero_synth_preset(preset, &p));
    p.n_layer = 2;
    if (fn) fn(&p);
    p.n_threads = 2;
    aero_status st = aero_synth_write(&p, path, NULL, &err);
    CHECKF(!st, "synth %s: %s", preset, err.msg);
    return !st;
}

// Loads a model expecting failure with a message containing want.
static void expect_refused(const char *path, const char *want) {
    aero_model_params mp;
    aero_model_params_default(&mp);
    mp.path = path;
    aero_model *m = NULL;
    aero_error err = {0};
    aero_status st = aero_model_load(&m, &mp, &err);
    CHECKF(st != AERO_OK && strstr(err.msg, want), "%s: expected a refusal with '%s', got '%s'", path, want,
           st ? err.msg : "success");
    aero_model_free(m);
}

// A model loads and decodes a few tokens without error, with finite logits.
static aero_model *load_and_run(const char *path) {
    aero_model *m = test_load_model(path, 2, 0);
    CHECKF(m != NULL, "%s does not load", path);
    if (!m) return NULL;
    int32_t prompt[4] = {1, 300, 301, 302}, out[4];
    int nv = aero_model_hparams(m)->n_vocab;
    float *lg = malloc(sizeof(float) * 4 * nv);
    CHECK(greedy(m, prompt, 4, 4, out, lg));
    bool finite = true;
    for (size_t i = 0; i < (size_t)4 * nv; i++) finite = finite && isfinite(lg[i]);
    CHECKF(finite, "%s: non-finite logits", path);
    free(lg);
    return m;
}

static void nemo(aero_synth_params *p) { p->head_dim = 128; } // 4 heads x 128 = 512 != 256

// Mistral Nemo-style llama: head size from attention.key_length, not embedding / heads.
static void test_head_size(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/nemo.gguf", dir);
    if (!write_synth("tiny", nemo, path)) return;
    aero_model *m = load_and_run(path);
    if (!m) return;
    const aero_hparams *hp = aero_model_hparams(m);
    CHECKF(hp->head_dim == 128 && hp->n_embd == 256 && hp->rope_dim == 128, "head %d embd %d rope %d", hp->head_dim,
           hp->n_embd, hp->rope_dim);
    aero_model_free(m);
}

static const char *kv_falcon[] = {"general.architecture=str:falcon"};
static const char *kv_vlen[] = {"llama.attention.value_length=u32:32"};
static const char *kv_granite[] = {"general.architecture=str:granite"}; // llama keys: no granite.logit_scale
static const char *const *cur_kv;
static int cur_n_kv;
static void with_kv(aero_synth_params *p) {
    p->kv = cur_kv;
    p->n_kv = cur_n_kv;
}

// Refusals at load name what is not supported or missing: the architecture, a value head of another size, a key.
static void test_refusals(const char *dir) {
    struct {
        const char *const *kv;
        int n;
        const char *want;
    } cases[] = {
        {kv_falcon, 1, "unsupported architecture 'falcon'"},
        {kv_vlen, 1, "value_length 32 != key_length 64"},
        {kv_granite, 1, "metadata granite.block_count is missing"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/refuse%zu.gguf", dir, i);
        cur_kv = cases[i].kv;
        cur_n_kv = cases[i].n;
        if (write_synth("tiny", with_kv, path)) expect_refused(path, cases[i].want);
    }
}

static void six_layers(aero_synth_params *p) { p->n_layer = 6; }

// Gemma 2 and 3 read as llama.cpp reads them (values from llama_model::load_hparams).
static void test_gemma_hparams(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/gemma2.gguf", dir);
    if (write_synth("gemma2-tiny", NULL, path)) {
        aero_model *m = load_and_run(path);
        if (m) {
            const aero_hparams *hp = aero_model_hparams(m);
            CHECKF(hp->n_swa == 8 && hp->swa_pattern == 2 && hp->attn_softcap == 50.0f && hp->final_softcap == 30.0f &&
                       hp->embd_scale == 16.0f && hp->ffn_gelu && hp->post_norms && hp->tied_output,
                   "gemma2: window %d pattern %d caps %g %g scale %g", hp->n_swa, hp->swa_pattern, hp->attn_softcap,
                   hp->final_softcap, hp->embd_scale);
            CHECK(aero_hparams_swa_layer(hp, 0) && !aero_hparams_swa_layer(hp, 1));
            CHECK(fabsf(hp->attn_scale - 0.125f) < 1e-7f);
            aero_model_free(m);
        }
    }
    snprintf(path, sizeof path, "%s/gemma3.gguf", dir);
    if (write_synth("gemma3-tiny", six_layers, path)) {
        aero_model *m = load_and_run(path);
        if (m) {
            const aero_hparams *hp = aero_model_hparams(m);
            CHECKF(hp->n_swa == 8 && hp->swa_pattern == 6 && hp->attn_softcap == 0 && hp->final_softcap == 0 &&
                       hp->rope_base_swa == 10000.0f && hp->rope_scaling == AERO_ROPE_SCALING_LINEAR,
                   "gemma3: window %d pattern %d caps %g %g", hp->n_swa, hp->swa_pattern, hp->attn_softcap,
                   hp->final_softcap);
            for (int l = 0; l < 6; l++) CHECKF(aero_hparams_swa_layer(hp, l) == (l != 5), "gemma3 layer %d", l);
            CHECK(m->rope_inv_freq_swa && m->rope_inv_freq_swa[1] != m->rope_inv_freq[1]);
            aero_model_free(m);
        }
    }
}

// phi3, granite and olmo2 read as llama.cpp reads them: fused tensors found, LongRoPE's two speed sets, Granite's
// multipliers, OLMo 2's missing pre-norms.
static void test_other_hparams(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/phi3.gguf", dir);
    if (write_synth("phi3-tiny-longrope", NULL, path)) {
        aero_model *m = load_and_run(path);
        if (m) {
            CHECK(m->layers[0].wqkv >= 0 && m->layers[0].wq < 0 && m->layers[0].w_gate < 0);
            CHECK(m->rope_inv_freq_long && m->rope_inv_freq_long[5] < m->rope_inv_freq[5]);
            CHECKF(fabsf(m->rope_mscale - sqrtf(1 + logf(4096.0f / 32) / logf(32))) < 1e-5f, "mscale %g",
                   m->rope_mscale);
            aero_model_free(m);
        }
    }
    snprintf(path, sizeof path, "%s/granite.gguf", dir);
    if (write_synth("granite-tiny", NULL, path)) {
        aero_model *m = load_and_run(path);
        if (m) {
            const aero_hparams *hp = aero_model_hparams(m);
            CHECKF(hp->embd_scale == 12.0f && hp->attn_scale == 0.015625f &&
                       fabsf(hp->residual_scale - 0.22f) < 1e-7f && hp->logit_scale == 8.0f && !hp->no_rope &&
                       !m->rope_neox,
                   "granite: %g %g %g %g", hp->embd_scale, hp->attn_scale, hp->residual_scale, hp->logit_scale);
            aero_model_free(m);
        }
    }
    snprintf(path, sizeof path, "%s/olmo2.gguf", dir);
    if (write_synth("olmo2-tiny", NULL, path)) {
        aero_model *m = load_and_run(path);
        if (m) {
            CHECK(m->layers[1].attn_norm < 0 && m->layers[1].ffn_norm < 0 && m->layers[1].attn_post_norm >= 0 &&
                  m->hp.qk_norm_full && m->rope_neox);
            aero_model_free(m);
        }
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--greedy")) return dump_greedy(argc, argv);
    char dir[] = "/tmp/aero_test_arch.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    test_head_size(dir);
    test_refusals(dir);
    test_gemma_hparams(dir);
    test_other_hparams(dir);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    return check_done("test_arch");
}
