// Mixture-of-experts models end to end: tiny qwen3moe, qwen2moe (gated shared expert) and Mixtral (merged
// *_exps and the older per-expert ffn_gate.E layout) written with the GGUF writer, checked against a plain
// double-precision forward pass written here from llama.cpp's definitions (docs/moe.md); then greedy text
// identical between resident and expert-streamed runs at several budgets, the two Mixtral layouts identical,
// and speculative greedy (n-gram drafter) identical to plain greedy.
//
// `test_model_moe --greedy MODEL TOKENS N TOP [MEM]` prints the greedy continuation of the comma-separated
// prompt TOKENS with the TOP logits of each step as JSON (the AeroLLM side of tests/node/moe_llamacpp.test.mjs).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <aerollm.h>

#include "check.h"
#include "helpers.h"
#include "model/model_internal.h"
#include "speculative/spec.h"
#include "synth/synth.h"

enum { DIM = 48, HEADS = 4, KV_HEADS = 2, HD = 12, FF = 64, LAYERS = 2, NPROMPT = 9 };
enum { NE = 6, K = 2, FE = 32, FSH = 40 };

typedef struct {
    const char *name, *arch;
    bool bias, qk_norm, neox, shared, norm_w, per_expert;
    double eps, base;
} variant;

static uint64_t rng = 88172645463325252ull;
static double urand(void) { return test_xorshift_sym(&rng); }

typedef struct {
    char name[64];
    int rows, cols; // cols = ne[0]; merged expert tensors: rows of all experts, expert e's at [e * rows / NE, ...)
    float *w;
} tensor;

static tensor T[256];
static int nT;

static float *make(const char *name, int rows, int cols, double scale, double offset) {
    tensor *t = &T[nT++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->rows = rows;
    t->cols = cols;
    t->w = malloc(sizeof(float) * rows * cols);
    for (int i = 0; i < rows * cols; i++) t->w[i] = (float)(offset + scale * urand());
    return t->w;
}

static float *add(aero_gguf_writer *wr, const char *name, int rows, int cols, double scale, double offset) {
    float *w = make(name, rows, cols, scale, offset);
    test_add_tensor(wr, name, AERO_DT_F32, rows, cols, w);
    return w;
}

static const float *get(const char *fmt, int l) {
    char name[64];
    snprintf(name, sizeof name, fmt, l);
    for (int i = 0; i < nT; i++)
        if (!strcmp(T[i].name, name)) return T[i].w;
    return NULL;
}

static void mv(double *y, const float *w, const double *x, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        double s = 0;
        for (int c = 0; c < cols; c++) s += (double)w[(size_t)r * cols + c] * x[c];
        y[r] = s;
    }
}

static void rms(double *o, const double *x, const float *w, int n, double eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double k = 1 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) o[i] = x[i] * k * w[i];
}

static void rot(const variant *v, double *x, int pos) {
    for (int i = 0; i < HD / 2; i++) {
        double th = pos * pow(v->base, -2.0 * i / HD), c = cos(th), s = sin(th);
        int a = v->neox ? i : 2 * i, b = v->neox ? i + HD / 2 : 2 * i + 1;
        double x0 = x[a], x1 = x[b];
        x[a] = x0 * c - x1 * s;
        x[b] = x0 * s + x1 * c;
    }
}

static double silu(double g) { return g / (1 + exp(-g)); }

// llama.cpp's build_moe_ffn with softmax gating: top-k of the probabilities, weights renormalised (norm_w),
// each expert's SwiGLU, plus qwen2moe's shared expert gated by sigmoid(ffn_gate_inp_shexp . x).
static void moe_ref(const variant *v, int l, const double *xb, double *out) {
    double logit[NE], p[NE], mx = -1e300, z = 0;
    mv(logit, get("blk.%d.ffn_gate_inp.weight", l), xb, NE, DIM);
    for (int e = 0; e < NE; e++) mx = fmax(mx, logit[e]);
    for (int e = 0; e < NE; e++) z += (p[e] = exp(logit[e] - mx));
    for (int e = 0; e < NE; e++) p[e] /= z;
    int sel[K];
    bool used[NE] = {0};
    double wsum = 0, wt[K];
    for (int r = 0; r < K; r++) {
        int best = -1;
        for (int e = 0; e < NE; e++)
            if (!used[e] && (best < 0 || p[e] > p[best])) best = e;
        used[best] = true;
        sel[r] = best;
        wsum += (wt[r] = p[best]);
    }
    for (int d = 0; d < DIM; d++) out[d] = 0;
    const float *G = get("blk.%d.ffn_gate_exps.weight", l), *U = get("blk.%d.ffn_up_exps.weight", l),
                *D = get("blk.%d.ffn_down_exps.weight", l);
    for (int r = 0; r < K; r++) {
        int e = sel[r];
        double g[FE], u[FE], o[DIM], w = v->norm_w ? wt[r] / wsum : wt[r];
        mv(g, G + (size_t)e * FE * DIM, xb, FE, DIM);
        mv(u, U + (size_t)e * FE * DIM, xb, FE, DIM);
        for (int j = 0; j < FE; j++) g[j] = silu(g[j]) * u[j];
        mv(o, D + (size_t)e * DIM * FE, g, DIM, FE);
        for (int d = 0; d < DIM; d++) out[d] += w * o[d];
    }
    if (v->shared) {
        double g[FSH], u[FSH], o[DIM], gate;
        mv(g, get("blk.%d.ffn_gate_shexp.weight", l), xb, FSH, DIM);
        mv(u, get("blk.%d.ffn_up_shexp.weight", l), xb, FSH, DIM);
        for (int j = 0; j < FSH; j++) g[j] = silu(g[j]) * u[j];
        mv(o, get("blk.%d.ffn_down_shexp.weight", l), g, DIM, FSH);
        mv(&gate, get("blk.%d.ffn_gate_inp_shexp.weight", l), xb, 1, DIM);
        gate = 1 / (1 + exp(-gate));
        for (int d = 0; d < DIM; d++) out[d] += gate * o[d];
    }
}

// The whole model in doubles for a causal prompt; writes logits (NPROMPT x vocab).
static void reference(const variant *v, const int32_t *tok, int vocab, double *logits) {
    static double x[NPROMPT][DIM], k[LAYERS][NPROMPT][KV_HEADS * HD], vv[LAYERS][NPROMPT][KV_HEADS * HD];
    const float *emb = get("token_embd.weight", 0);
    for (int i = 0; i < NPROMPT; i++)
        for (int d = 0; d < DIM; d++) x[i][d] = emb[(size_t)tok[i] * DIM + d];
    for (int l = 0; l < LAYERS; l++) {
        for (int i = 0; i < NPROMPT; i++) {
            double xb[DIM], q[HEADS * HD], att[HEADS * HD], o[DIM];
            rms(xb, x[i], get("blk.%d.attn_norm.weight", l), DIM, v->eps);
            mv(q, get("blk.%d.attn_q.weight", l), xb, HEADS * HD, DIM);
            mv(k[l][i], get("blk.%d.attn_k.weight", l), xb, KV_HEADS * HD, DIM);
            mv(vv[l][i], get("blk.%d.attn_v.weight", l), xb, KV_HEADS * HD, DIM);
            if (v->bias) {
                for (int j = 0; j < HEADS * HD; j++) q[j] += get("blk.%d.attn_q.bias", l)[j];
                for (int j = 0; j < KV_HEADS * HD; j++) {
                    k[l][i][j] += get("blk.%d.attn_k.bias", l)[j];
                    vv[l][i][j] += get("blk.%d.attn_v.bias", l)[j];
                }
            }
            for (int h = 0; h < HEADS; h++) {
                if (v->qk_norm) rms(q + h * HD, q + h * HD, get("blk.%d.attn_q_norm.weight", l), HD, v->eps);
                rot(v, q + h * HD, i);
            }
            for (int h = 0; h < KV_HEADS; h++) {
                if (v->qk_norm)
                    rms(k[l][i] + h * HD, k[l][i] + h * HD, get("blk.%d.attn_k_norm.weight", l), HD, v->eps);
                rot(v, k[l][i] + h * HD, i);
            }
            for (int h = 0; h < HEADS; h++) {
                int kh = h / (HEADS / KV_HEADS);
                double s[NPROMPT], mx = -1e300, z = 0;
                for (int j = 0; j <= i; j++) {
                    s[j] = 0;
                    for (int d = 0; d < HD; d++) s[j] += q[h * HD + d] * k[l][j][kh * HD + d];
                    s[j] /= sqrt(HD);
                    if (s[j] > mx) mx = s[j];
                }
                for (int j = 0; j <= i; j++) z += (s[j] = exp(s[j] - mx));
                for (int d = 0; d < HD; d++) {
                    att[h * HD + d] = 0;
                    for (int j = 0; j <= i; j++) att[h * HD + d] += s[j] / z * vv[l][j][kh * HD + d];
                }
            }
            mv(o, get("blk.%d.attn_output.weight", l), att, DIM, HEADS * HD);
            for (int d = 0; d < DIM; d++) x[i][d] += o[d];
            rms(xb, x[i], get("blk.%d.ffn_norm.weight", l), DIM, v->eps);
            moe_ref(v, l, xb, o);
            for (int d = 0; d < DIM; d++) x[i][d] += o[d];
        }
    }
    for (int i = 0; i < NPROMPT; i++) {
        double xb[DIM];
        rms(xb, x[i], get("output_norm.weight", 0), DIM, v->eps);
        mv(logits + (size_t)i * vocab, get("output.weight", 0), xb, vocab, DIM);
    }
}

// A merged expert tensor {cols, rows, NE} (F32), or its NE per-expert tensors blk.N.ffn_<part>.E.weight.
static void add_experts(aero_gguf_writer *wr, const variant *v, int l, const char *part, int rows, int cols,
                        double scale) {
    char n[64];
    snprintf(n, sizeof n, "blk.%d.ffn_%s_exps.weight", l, part);
    float *w = make(n, rows * NE, cols, scale, 0);
    aero_error err = {0};
    if (!v->per_expert) {
        uint64_t ne[3] = {(uint64_t)cols, (uint64_t)rows, NE};
        CHECKF(!aero_gguf_add_tensor(wr, n, AERO_DT_F32, 3, ne, w, &err), "%s", err.msg);
        return;
    }
    for (int e = 0; e < NE; e++) {
        snprintf(n, sizeof n, "blk.%d.ffn_%s.%d.weight", l, part, e);
        test_add_tensor(wr, n, AERO_DT_F32, rows, cols, w + (size_t)e * rows * cols);
    }
}

// Writes the synthetic model with the tokenizer metadata of stories260K and llama.cpp's MoE keys.
static void write_model(const variant *v, const char *path, int vocab) {
    aero_gguf tok;
    aero_error err = {0};
    CHECK(!aero_gguf_open(&tok, SHARED_DATA "/models/stories260K.gguf", &err));
    aero_gguf_writer *wr = aero_gguf_writer_new(0);
    aero_gguf_set_str(wr, "general.architecture", v->arch);
    char key[96];
#define SETU(suffix, val) (snprintf(key, sizeof key, "%s." suffix, v->arch), aero_gguf_set_u32(wr, key, val))
#define SETF(suffix, val) (snprintf(key, sizeof key, "%s." suffix, v->arch), aero_gguf_set_f32(wr, key, val))
    SETU("block_count", LAYERS);
    SETU("embedding_length", DIM);
    SETU("feed_forward_length", strcmp(v->arch, "llama") ? FF : FE); // Mixtral: experts are n_ff wide
    SETU("attention.head_count", HEADS);
    SETU("attention.head_count_kv", KV_HEADS);
    SETU("attention.key_length", HD);
    SETU("context_length", 256);
    SETF("attention.layer_norm_rms_epsilon", (float)v->eps);
    SETF("rope.freq_base", (float)v->base);
    SETU("expert_count", NE);
    SETU("expert_used_count", K);
    if (strcmp(v->arch, "llama")) SETU("expert_feed_forward_length", FE);
    if (v->shared) SETU("expert_shared_feed_forward_length", FSH);
    for (uint64_t i = 0; i < tok.n_kv; i++)
        if (!strncmp(tok.kv[i].key.ptr, "tokenizer.", 10)) aero_gguf_set_value(wr, tok.kv[i].key.ptr, &tok.kv[i].value);
    aero_gguf_free(&tok);
    nT = 0;
    double ws = 0.25;
    add(wr, "token_embd.weight", vocab, DIM, 1.0, 0);
    add(wr, "output_norm.weight", 1, DIM, 0.2, 1.0);
    add(wr, "output.weight", vocab, DIM, ws, 0);
    for (int l = 0; l < LAYERS; l++) {
        char n[64];
#define ADD(suffix, r, c, s, off) (snprintf(n, sizeof n, "blk.%d." suffix, l), add(wr, n, r, c, s, off))
        ADD("attn_norm.weight", 1, DIM, 0.2, 1.0);
        ADD("attn_q.weight", HEADS * HD, DIM, ws, 0);
        ADD("attn_k.weight", KV_HEADS * HD, DIM, ws, 0);
        ADD("attn_v.weight", KV_HEADS * HD, DIM, ws, 0);
        ADD("attn_output.weight", DIM, HEADS * HD, ws, 0);
        if (v->bias) {
            ADD("attn_q.bias", 1, HEADS * HD, 0.5, 0);
            ADD("attn_k.bias", 1, KV_HEADS * HD, 0.5, 0);
            ADD("attn_v.bias", 1, KV_HEADS * HD, 0.5, 0);
        }
        if (v->qk_norm) {
            ADD("attn_q_norm.weight", 1, HD, 0.2, 1.0);
            ADD("attn_k_norm.weight", 1, HD, 0.2, 1.0);
        }
        ADD("ffn_norm.weight", 1, DIM, 0.2, 1.0);
        ADD("ffn_gate_inp.weight", NE, DIM, 1.0, 0);
        add_experts(wr, v, l, "gate", FE, DIM, ws);
        add_experts(wr, v, l, "up", FE, DIM, ws);
        add_experts(wr, v, l, "down", DIM, FE, ws);
        if (v->shared) {
            ADD("ffn_gate_inp_shexp.weight", 1, DIM, 0.5, 0);
            ADD("ffn_gate_shexp.weight", FSH, DIM, ws, 0);
            ADD("ffn_up_shexp.weight", FSH, DIM, ws, 0);
            ADD("ffn_down_shexp.weight", DIM, FSH, ws, 0);
        }
#undef ADD
    }
    CHECKF(!aero_gguf_write(wr, path, &err), "%s", err.msg);
    aero_gguf_writer_free(wr);
}

// Greedy continuation of prompt: n tokens into out; logits of every step into logits (n x vocab) when given.
static bool kv_f16; // --greedy: the F16 KV cache both engines default to
static bool greedy(aero_model *m, const int32_t *prompt, int np, int n, int32_t *out, float *logits) {
    int nv = aero_model_hparams(m)->n_vocab;
    aero_ctx *c;
    aero_error err = {0};
    aero_ctx_params cp = {.n_ctx = 256, .kv_f32 = !kv_f16};
    if (aero_ctx_new(&c, m, &cp, &err)) {
        CHECKF(0, "ctx: %s", err.msg);
        return false;
    }
    float *lg = malloc(sizeof(float) * nv * (np > 1 ? np : 1));
    int32_t pos[256];
    for (int i = 0; i < 256; i++) pos[i] = i;
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

// The same greedy continuation through the speculative decoder with the n-gram drafter.
static bool greedy_spec(aero_model *m, const int32_t *prompt, int np, int n, int32_t *out, double *accept) {
    int nv = aero_model_hparams(m)->n_vocab;
    aero_ctx *c;
    aero_error err = {0};
    aero_ctx_params cp = {.n_ctx = 256, .kv_f32 = true};
    CHECK(!aero_ctx_new(&c, m, &cp, &err));
    aero_spec_params sp;
    aero_spec_params_default(&sp);
    sp.draft_max = 6;
    aero_spec *s = NULL;
    bool ok = !aero_spec_new(&s, c, 0, NULL, &sp, &err);
    aero_sampler_params smp_p;
    aero_sampler_params_default(&smp_p);
    smp_p.temp = 0;
    aero_sampler *smp = aero_sampler_new(&smp_p, nv);
    for (int i = 0; i < np; i++) aero_sampler_accept(smp, prompt[i]);
    ok = ok && !aero_spec_begin(s, prompt, np, n, &err);
    int got = 0;
    while (ok && got < n) {
        int32_t buf[64];
        int k = 0;
        ok = !aero_spec_step(s, smp, n - got < 64 ? n - got : 64, buf, &k, &err);
        for (int i = 0; ok && i < k && got < n; i++) out[got++] = buf[i];
    }
    CHECKF(ok, "speculative: %s", err.msg);
    aero_spec_stats st;
    if (s) aero_spec_get_stats(s, &st);
    *accept = s && st.drafted ? (double)st.accepted / st.drafted : 0;
    aero_sampler_free(smp);
    aero_spec_free(s);
    aero_ctx_free(c);
    return ok;
}

// Budgets that stream the experts: the minimum, a third of the experts cached, all but one byte of the model
// (when that is above the others).
static int streamed_budgets(aero_model *resident, uint64_t *budgets) {
    const aero_stream_plan *p = aero_stream_get_plan(aero_model_stream(resident));
    uint64_t all = aero_model_weight_bytes(resident);
    budgets[0] = p->min_budget;
    budgets[1] = p->min_budget + p->expert_span * (uint64_t)(p->n_expert * p->n_moe_layers / 3);
    if (all - 1 <= budgets[1]) return 2; // a model smaller than its streaming window: two budgets are all there is
    budgets[2] = all - 1;
    return 3;
}

// Greedy text and logits at streamed budgets equal the resident run's bit for bit; the expert cache read.
static void check_budgets(const char *what, const char *path, const int32_t *prompt, int np, int n) {
    aero_model *m = test_load_model(path, 2, 0);
    CHECKF(m != NULL, "%s: load", what);
    if (!m) return;
    int nv = aero_model_hparams(m)->n_vocab;
    int32_t *want = malloc(sizeof(int32_t) * n), *got = malloc(sizeof(int32_t) * n);
    float *lw = malloc(sizeof(float) * n * nv), *lg = malloc(sizeof(float) * n * nv);
    CHECK(aero_stream_get_plan(aero_model_stream(m))->experts_resident);
    greedy(m, prompt, np, n, want, lw);
    uint64_t budgets[3];
    int nb = streamed_budgets(m, budgets);
    aero_model_free(m);
    for (int i = 0; i < nb; i++) {
        aero_model *s = test_load_model(path, 2, budgets[i]);
        CHECKF(s != NULL, "%s: load under %llu bytes", what, (unsigned long long)budgets[i]);
        if (!s) continue;
        const aero_stream_plan *p = aero_stream_get_plan(aero_model_stream(s));
        CHECKF(!p->experts_resident && p->expert_budget >= p->expert_min, "%s: experts streamed under %llu", what,
               (unsigned long long)budgets[i]);
        memset(got, 0xff, sizeof(int32_t) * n);
        greedy(s, prompt, np, n, got, lg);
        aero_expert_cache_stats cs = {0};
        aero_model_expert_stats(s, &cs);
        printf("%s: --mem %llu: dense resident %llu, window %llu, expert cache %llu: %llu lookups, hit rate %.2f, "
               "%.1f KiB read\n",
               what, (unsigned long long)budgets[i], (unsigned long long)p->resident_bytes,
               (unsigned long long)p->window_bytes, (unsigned long long)p->expert_budget,
               (unsigned long long)cs.lookups, cs.lookups ? (double)cs.hits / cs.lookups : 0, cs.bytes_read / 1024.0);
        CHECKF(cs.misses > 0 && cs.peak_bytes <= p->expert_budget, "%s: the expert cache read within its budget", what);
        CHECKF(!memcmp(want, got, sizeof(int32_t) * n), "%s: greedy tokens under --mem %llu equal the resident run's",
               what, (unsigned long long)budgets[i]);
        CHECKF(!memcmp(lw, lg, sizeof(float) * n * nv), "%s: logits under --mem %llu equal the resident run's bitwise",
               what, (unsigned long long)budgets[i]);
        if (i == 1) { // the predictor's prefetches change what is cached, never the results
            aero_model_params mp;
            aero_model_params_default(&mp);
            mp.path = path;
            mp.n_threads = 2;
            mp.mem_budget = budgets[i];
            mp.expert_prefetch = true;
            aero_model *pm = NULL;
            aero_error err = {0};
            CHECKF(!aero_model_load(&pm, &mp, &err), "%s: %s", what, err.msg);
            if (pm) {
                memset(got, 0xff, sizeof(int32_t) * n);
                greedy(pm, prompt, np, n, got, lg);
                aero_model_expert_stats(pm, &cs);
                printf("%s: with the predictor: %llu prefetched, %llu used\n", what,
                       (unsigned long long)cs.prefetch_issued, (unsigned long long)cs.prefetch_used);
                CHECKF(!memcmp(want, got, sizeof(int32_t) * n) && !memcmp(lw, lg, sizeof(float) * n * nv),
                       "%s: greedy tokens and logits with expert prefetch equal the resident run's", what);
                aero_model_free(pm);
            }
        }
        if (i == 0) { // speculation with experts: the same greedy text
            double acc = 0;
            memset(got, 0xff, sizeof(int32_t) * n);
            greedy_spec(s, prompt, np, n, got, &acc);
            printf("%s: speculative (n-gram) acceptance %.2f\n", what, acc);
            CHECKF(!memcmp(want, got, sizeof(int32_t) * n), "%s: speculative greedy equals plain greedy", what);
        }
        aero_model_free(s);
    }
    free(want);
    free(got);
    free(lw);
    free(lg);
}

static void run_variant(const variant *v) {
    char path[256];
    test_tmp_path(path, sizeof path, v->name);
    strcat(path, ".gguf");
    const int vocab = 512;
    write_model(v, path, vocab);
    aero_model *m = test_load_model(path, 2, 0);
    CHECKF(m != NULL, "%s: load", v->name);
    if (!m) return;
    aero_ctx *c;
    aero_error err = {0};
    aero_ctx_params cp = {.n_ctx = 64, .kv_f32 = true};
    CHECK(!aero_ctx_new(&c, m, &cp, &err));
    int32_t tok[NPROMPT], pos[NPROMPT];
    for (int i = 0; i < NPROMPT; i++) tok[i] = (int32_t)(3 + i * 37 % (vocab - 3)), pos[i] = i;
    float *got = malloc(sizeof(float) * NPROMPT * vocab);
    double *want = malloc(sizeof(double) * NPROMPT * vocab);
    aero_batch b = {.n = NPROMPT, .tokens = tok, .pos = pos};
    CHECKF(!aero_decode(c, &b, got, &err), "%s", err.msg);
    reference(v, tok, vocab, want);
    double worst = 0, scale = 0;
    for (int i = 0; i < NPROMPT * vocab; i++) scale = fmax(scale, fabs(want[i]));
    for (int i = 0; i < NPROMPT * vocab; i++) worst = fmax(worst, fabs(got[i] - want[i]) / scale);
    printf("%s: max |logit error| / max |logit| = %.2e\n", v->name, worst);
    CHECKF(worst < 1e-4, "%s logits within 1e-4 relative of the double reference (%.2e)", v->name, worst);
    free(got);
    free(want);
    aero_ctx_free(c);
    aero_model_free(m);
    int32_t prompt[6] = {1, 300, 301, 302, 300, 301};
    check_budgets(v->name, path, prompt, 6, 24);
    for (int i = 0; i < nT; i++) free(T[i].w);
    unlink(path);
}

// The synth presets: the merged and per-expert Mixtral files hold the same weights, so their greedy text and
// logits are identical; each also streams its experts like the resident run.
static void run_synth(void) {
    char a[256], b[256];
    test_tmp_path(a, sizeof a, "moe_mixtral_merged.gguf");
    test_tmp_path(b, sizeof b, "moe_mixtral_split.gguf");
    aero_synth_params p;
    aero_error err = {0};
    CHECK(aero_synth_preset("mixtral-tiny", &p));
    p.type = AERO_DT_Q8_0;
    p.n_threads = 2;
    CHECKF(!aero_synth_write(&p, a, NULL, &err), "%s", err.msg);
    CHECK(aero_synth_preset("mixtral-tiny-split", &p));
    p.type = AERO_DT_Q8_0;
    p.n_threads = 2;
    CHECKF(!aero_synth_write(&p, b, NULL, &err), "%s", err.msg);
    aero_model *ma = test_load_model(a, 2, 0), *mb = test_load_model(b, 2, 0);
    CHECK(ma && mb);
    if (ma && mb) {
        enum { N = 16 };
        int nv = aero_model_hparams(ma)->n_vocab;
        int32_t prompt[4] = {1, 300, 301, 302}, ta[N], tb[N];
        float *la = malloc(sizeof(float) * N * nv), *lb = malloc(sizeof(float) * N * nv);
        greedy(ma, prompt, 4, N, ta, la);
        greedy(mb, prompt, 4, N, tb, lb);
        CHECK(!memcmp(ta, tb, sizeof ta) && !memcmp(la, lb, sizeof(float) * N * nv));
        printf("mixtral-tiny: merged and per-expert layouts give identical logits\n");
        free(la);
        free(lb);
    }
    aero_model_free(ma);
    aero_model_free(mb);
    int32_t prompt[5] = {1, 300, 301, 302, 303};
    check_budgets("mixtral-tiny-split Q8_0", b, prompt, 5, 20);
    CHECK(aero_synth_preset("qwen3moe-tiny", &p));
    p.type = AERO_DT_Q4_K;
    p.n_threads = 2;
    CHECKF(!aero_synth_write(&p, a, NULL, &err), "%s", err.msg);
    check_budgets("qwen3moe-tiny Q4_K", a, prompt, 5, 20);
    unlink(a);
    unlink(b);
}

// The AeroLLM side of the llama.cpp comparison (tests/node/moe_llamacpp.test.mjs).
static int dump_greedy(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: test_model_moe --greedy MODEL TOKENS N TOP [MEM_BYTES]\n");
        return 2;
    }
    int32_t prompt[256];
    int np = test_parse_tokens(argv[3], prompt, 256);
    int n = atoi(argv[4]), top = atoi(argv[5]);
    kv_f16 = true;
    aero_model *m = test_load_model(argv[2], 2, argc > 6 ? strtoull(argv[6], NULL, 10) : 0);
    if (!m || n < 1 || n > 200 || top < 1) return 1;
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

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--greedy")) return dump_greedy(argc, argv);
    require_shared_data();
    const variant variants[] = {
        {"qwen3moe", "qwen3moe", false, true, true, false, true, false, 1e-6, 1000000},
        {"qwen2moe", "qwen2moe", true, false, true, true, false, false, 1e-6, 1000000},
        {"mixtral", "llama", false, false, false, false, true, false, 1e-5, 1000000},
        {"mixtral_split", "llama", false, false, false, false, true, true, 1e-5, 1000000},
    };
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) run_variant(&variants[i]);
    run_synth();
    return check_done("test_model_moe");
}
