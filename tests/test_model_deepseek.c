// deepseek2 (DeepSeek-V2/V3, Kimi K2) end to end on the tiny synth presets (F32): logits against a plain
// double-precision forward pass written here in the decompressed form (every head's keys and values rebuilt
// from the latent, standard attention: the engine's absorbed attention is another computation of the same
// thing), with llama.cpp's routing (sigmoid + selection bias + groups, or softmax; normalisation; scale);
// batch invariance of the latent attention (one batch, one token at a time, tiles of 2); the latent cache's
// size; greedy text and logits identical between resident and expert-streamed runs at several budgets, with
// the predictor, and speculative greedy (n-gram drafter) identical to plain greedy.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include <aerollm.h>

#include "check.h"
#include "helpers.h"
#include "model/model_internal.h"
#include "speculative/spec.h"
#include "synth/synth.h"

// ---- the double-precision reference ---------------------------------------------------------------------------

static aero_gguf G;
static int fd_file = -1;

// A tensor of the F32 file as doubles (n elements), or NULL when absent.
static double *tensor(const char *fmt, int l, size_t *n_out) {
    char name[128];
    snprintf(name, sizeof name, fmt, l);
    const aero_tensor_info *t = aero_gguf_tensor(&G, name);
    if (!t) return NULL;
    CHECKF(t->type == AERO_DT_F32, "%s is F32", name);
    size_t n = (size_t)t->n_elements;
    float *f = malloc(sizeof(float) * n);
    double *d = malloc(sizeof(double) * n);
    CHECK(pread(fd_file, f, sizeof(float) * n, (off_t)t->offset) == (ssize_t)(sizeof(float) * n));
    for (size_t i = 0; i < n; i++) d[i] = f[i];
    free(f);
    if (n_out) *n_out = n;
    return d;
}

static double *need(const char *fmt, int l) {
    double *t = tensor(fmt, l, NULL);
    CHECKF(t != NULL, "tensor %s (layer %d)", fmt, l);
    return t;
}

static int64_t key(const char *suffix, int64_t dflt) {
    char k[128];
    int64_t v;
    snprintf(k, sizeof k, "deepseek2.%s", suffix);
    return aero_gguf_get_i64(&G, k, &v) ? v : dflt;
}

static double keyf(const char *suffix, double dflt) {
    char k[128];
    double v;
    snprintf(k, sizeof k, "deepseek2.%s", suffix);
    return aero_gguf_get_f64(&G, k, &v) ? v : dflt;
}

// y = W x, W rows x cols row-major (a GGUF matrix {cols, rows}).
static void mv(double *y, const double *w, const double *x, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        double s = 0;
        for (int c = 0; c < cols; c++) s += w[(size_t)r * cols + c] * x[c];
        y[r] = s;
    }
}

static void rms(double *o, const double *x, const double *w, int n, double eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double k = 1 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) o[i] = x[i] * k * w[i];
}

// Adjacent pairs (llama.cpp's NORM rope for deepseek2), frequency base^(-2i/n).
static void rope(double *v, int n, int pos, double base) {
    for (int i = 0; i < n / 2; i++) {
        double a = pos * pow(base, -2.0 * i / n), c = cos(a), s = sin(a);
        double x0 = v[2 * i], x1 = v[2 * i + 1];
        v[2 * i] = x0 * c - x1 * s;
        v[2 * i + 1] = x0 * s + x1 * c;
    }
}

static double silu(double g) { return g / (1 + exp(-g)); }

// down(silu(gate x) * up x) for a slice of f rows of merged tensors (expert e) or whole ones (e = 0).
static void swiglu_ffn(double *out, const double *x, const double *g, const double *u, const double *dn, int d, int f,
                       int e) {
    double *hg = malloc(sizeof(double) * f), *hu = malloc(sizeof(double) * f);
    mv(hg, g + (size_t)e * f * d, x, f, d);
    mv(hu, u + (size_t)e * f * d, x, f, d);
    for (int i = 0; i < f; i++) hg[i] = silu(hg[i]) * hu[i];
    mv(out, dn + (size_t)e * d * f, hg, d, f);
    free(hg);
    free(hu);
}

// Logits of every position of tok (one sequence from position 0) into logits (n x vocab).
static void reference(const int32_t *tok, int n, int vocab, double *logits) {
    int d = (int)key("embedding_length", 0), L_n = (int)key("block_count", 0), H = (int)key("attention.head_count", 0);
    int Q = (int)key("attention.q_lora_rank", 0), L = (int)key("attention.kv_lora_rank", 0);
    int R = (int)key("rope.dimension_count", 0), lead = (int)key("leading_dense_block_count", 0);
    bool split = key("attention.key_length_mla", 0) > 0;
    int kq = (int)(split ? key("attention.key_length_mla", 0) : key("attention.key_length", 0));
    int V = (int)(split ? key("attention.value_length_mla", 0) : key("attention.value_length", 0)), nope = kq - R;
    int NE = (int)key("expert_count", 0), K = (int)key("expert_used_count", 0);
    int FE = (int)key("expert_feed_forward_length", 0), FF = (int)key("feed_forward_length", 0);
    int FS = FE * (int)key("expert_shared_count", 0), NG = (int)key("expert_group_count", 0);
    int NGU = (int)key("expert_group_used_count", 0);
    bool sigmoid = key("expert_gating_func", 1) == 2, norm_w = false;
    aero_gguf_get_bool(&G, "deepseek2.expert_weights_norm", &norm_w);
    double eps = keyf("attention.layer_norm_rms_epsilon", 1e-6), base = keyf("rope.freq_base", 10000);
    double w_scale = keyf("expert_weights_scale", 0), kq_scale = 1 / sqrt((double)kq);
    double *x = malloc(sizeof(double) * n * d), *emb = need("token_embd.weight", 0);
    for (int i = 0; i < n; i++) memcpy(x + (size_t)i * d, emb + (size_t)tok[i] * d, sizeof(double) * d);
    double *xb = malloc(sizeof(double) * d), *t1 = malloc(sizeof(double) * (Q > d ? Q : d) * 2);
    double *q = malloc(sizeof(double) * n * H * kq), *knope = malloc(sizeof(double) * n * H * nope);
    double *val = malloc(sizeof(double) * n * H * V), *kpe = malloc(sizeof(double) * n * R);
    double *lat = malloc(sizeof(double) * (L + R)), *att = malloc(sizeof(double) * H * V);
    double *o = malloc(sizeof(double) * d), *y = malloc(sizeof(double) * d), *sc = malloc(sizeof(double) * n);
    for (int l = 0; l < L_n; l++) {
        double *an = need("blk.%d.attn_norm.weight", l), *kva = need("blk.%d.attn_kv_a_mqa.weight", l);
        double *kvn = need("blk.%d.attn_kv_a_norm.weight", l), *wo = need("blk.%d.attn_output.weight", l);
        double *wq = Q ? NULL : need("blk.%d.attn_q.weight", l), *qa = Q ? need("blk.%d.attn_q_a.weight", l) : NULL;
        double *qan = Q ? need("blk.%d.attn_q_a_norm.weight", l) : NULL, *qb = Q ? need("blk.%d.attn_q_b.weight", l) : NULL;
        double *kb = split ? need("blk.%d.attn_k_b.weight", l) : NULL, *vb = split ? need("blk.%d.attn_v_b.weight", l) : NULL;
        double *kvb = split ? NULL : need("blk.%d.attn_kv_b.weight", l);
        for (int i = 0; i < n; i++) {
            rms(xb, x + (size_t)i * d, an, d, eps);
            double *qi = q + (size_t)i * H * kq;
            if (Q) {
                mv(t1, qa, xb, Q, d);
                rms(t1, t1, qan, Q, eps);
                mv(qi, qb, t1, H * kq, Q);
            } else {
                mv(qi, wq, xb, H * kq, d);
            }
            for (int h = 0; h < H; h++) rope(qi + (size_t)h * kq + nope, R, i, base);
            mv(lat, kva, xb, L + R, d);
            memcpy(kpe + (size_t)i * R, lat + L, sizeof(double) * R);
            rope(kpe + (size_t)i * R, R, i, base);
            rms(lat, lat, kvn, L, eps);
            // decompression: k_nope and v of every head from the latent
            for (int h = 0; h < H; h++) {
                for (int j = 0; j < nope; j++) {
                    double s = 0;
                    for (int c = 0; c < L; c++)
                        s += lat[c] * (split ? kb[((size_t)h * L + c) * nope + j] : kvb[((size_t)h * (nope + V) + j) * L + c]);
                    knope[((size_t)i * H + h) * nope + j] = s;
                }
                for (int j = 0; j < V; j++) {
                    double s = 0;
                    for (int c = 0; c < L; c++)
                        s += lat[c] * (split ? vb[((size_t)h * V + j) * L + c] : kvb[((size_t)h * (nope + V) + nope + j) * L + c]);
                    val[((size_t)i * H + h) * V + j] = s;
                }
            }
        }
        for (int i = 0; i < n; i++) {
            for (int h = 0; h < H; h++) {
                const double *qi = q + ((size_t)i * H + h) * kq;
                double mx = -1e300, sum = 0;
                for (int t = 0; t <= i; t++) {
                    double s = 0;
                    for (int j = 0; j < nope; j++) s += qi[j] * knope[((size_t)t * H + h) * nope + j];
                    for (int j = 0; j < R; j++) s += qi[nope + j] * kpe[(size_t)t * R + j];
                    sc[t] = s * kq_scale;
                    mx = fmax(mx, sc[t]);
                }
                for (int t = 0; t <= i; t++) sum += sc[t] = exp(sc[t] - mx);
                for (int j = 0; j < V; j++) {
                    double s = 0;
                    for (int t = 0; t <= i; t++) s += sc[t] / sum * val[((size_t)t * H + h) * V + j];
                    att[h * V + j] = s;
                }
            }
            mv(o, wo, att, d, H * V);
            for (int j = 0; j < d; j++) x[(size_t)i * d + j] += o[j];
        }
        double *fn = need("blk.%d.ffn_norm.weight", l);
        for (int i = 0; i < n; i++) {
            double *xi = x + (size_t)i * d;
            rms(xb, xi, fn, d, eps);
            if (l < lead) {
                double *g = need("blk.%d.ffn_gate.weight", l), *u = need("blk.%d.ffn_up.weight", l);
                double *dn = need("blk.%d.ffn_down.weight", l);
                swiglu_ffn(y, xb, g, u, dn, d, FF, 0);
                for (int j = 0; j < d; j++) xi[j] += y[j];
                free(g), free(u), free(dn);
                continue;
            }
            double *router = need("blk.%d.ffn_gate_inp.weight", l), *bias = tensor("blk.%d.exp_probs_b.bias", l, NULL);
            double *g = need("blk.%d.ffn_gate_exps.weight", l), *u = need("blk.%d.ffn_up_exps.weight", l);
            double *dn = need("blk.%d.ffn_down_exps.weight", l);
            double lg[256], p[256], sel[256], mx = -1e300, sum = 0;
            mv(lg, router, xb, NE, d);
            for (int e = 0; e < NE; e++) mx = fmax(mx, lg[e]);
            for (int e = 0; e < NE; e++) sum += p[e] = sigmoid ? 1 / (1 + exp(-lg[e])) : exp(lg[e] - mx);
            for (int e = 0; e < NE && !sigmoid; e++) p[e] /= sum;
            for (int e = 0; e < NE; e++) sel[e] = p[e] + (bias ? bias[e] : 0);
            if (NG > 1) { // groups ranked by the sum of their two best scores; the NGU best kept
                int per = NE / NG;
                double gs[64];
                bool keep[64] = {false};
                for (int gi = 0; gi < NG; gi++) {
                    double a = -1e300, b = -1e300;
                    for (int e = gi * per; e < (gi + 1) * per; e++)
                        if (sel[e] > a) b = a, a = sel[e];
                        else if (sel[e] > b) b = sel[e];
                    gs[gi] = a + b;
                }
                for (int r = 0; r < NGU; r++) {
                    int best = -1;
                    for (int gi = 0; gi < NG; gi++)
                        if (!keep[gi] && (best < 0 || gs[gi] > gs[best])) best = gi;
                    keep[best] = true;
                }
                for (int e = 0; e < NE; e++)
                    if (!keep[e / per]) sel[e] = -1e300;
            }
            int ids[64];
            double w[64], wsum = 0;
            for (int r = 0; r < K; r++) {
                int best = 0;
                for (int e = 1; e < NE; e++)
                    if (sel[e] > sel[best]) best = e;
                ids[r] = best, w[r] = p[best], wsum += p[best];
                sel[best] = -1e301;
            }
            for (int r = 0; r < K; r++) {
                double wr = (norm_w ? w[r] / wsum : w[r]) * (w_scale != 0 ? w_scale : 1);
                swiglu_ffn(y, xb, g, u, dn, d, FE, ids[r]);
                for (int j = 0; j < d; j++) xi[j] += wr * y[j];
            }
            if (FS > 0) {
                double *sg = need("blk.%d.ffn_gate_shexp.weight", l), *su = need("blk.%d.ffn_up_shexp.weight", l);
                double *sd = need("blk.%d.ffn_down_shexp.weight", l);
                swiglu_ffn(y, xb, sg, su, sd, d, FS, 0);
                for (int j = 0; j < d; j++) xi[j] += y[j];
                free(sg), free(su), free(sd);
            }
            free(router), free(bias), free(g), free(u), free(dn);
        }
        free(an), free(kva), free(kvn), free(wo), free(wq), free(qa), free(qan), free(qb), free(kb), free(vb), free(kvb);
        free(fn);
    }
    double *on = need("output_norm.weight", 0), *out = tensor("output.weight", 0, NULL);
    for (int i = 0; i < n; i++) {
        rms(xb, x + (size_t)i * d, on, d, eps);
        mv(logits + (size_t)i * vocab, out ? out : emb, xb, vocab, d);
    }
    free(on), free(out), free(emb), free(x), free(xb), free(t1), free(q), free(knope), free(val), free(kpe);
    free(lat), free(att), free(o), free(y), free(sc);
}

// ---- the engine ------------------------------------------------------------------------------------------------

// Logits of every prompt position (n x vocab), the prompt fed in batches of `step` tokens, tiles of n_batch.
static bool decode_all(aero_model *m, const int32_t *tok, int n, int step, int n_batch, float *logits) {
    int nv = aero_model_hparams(m)->n_vocab;
    aero_ctx *c;
    aero_error err = {0};
    aero_ctx_params cp = {.n_ctx = 64, .kv_f32 = true, .n_batch = n_batch};
    if (aero_ctx_new(&c, m, &cp, &err)) {
        CHECKF(0, "ctx: %s", err.msg);
        return false;
    }
    int32_t pos[64];
    for (int i = 0; i < 64; i++) pos[i] = i;
    bool ok = true;
    for (int i = 0; ok && i < n; i += step) {
        aero_batch b = {.n = n - i < step ? n - i : step, .tokens = tok + i, .pos = pos + i};
        ok = !aero_decode(c, &b, logits + (size_t)i * nv, &err);
    }
    CHECKF(ok, "decode: %s", err.msg);
    aero_ctx_free(c);
    return ok;
}

// Greedy continuation of prompt: n tokens into out, every step's logits into logits (n x vocab).
static bool greedy(aero_model *m, const int32_t *prompt, int np, int n, int32_t *out, float *logits) {
    int nv = aero_model_hparams(m)->n_vocab;
    aero_ctx *c;
    aero_error err = {0};
    aero_ctx_params cp = {.n_ctx = 256, .kv_f32 = true};
    if (aero_ctx_new(&c, m, &cp, &err)) {
        CHECKF(0, "ctx: %s", err.msg);
        return false;
    }
    float *lg = malloc(sizeof(float) * nv * np);
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
        memcpy(logits + (size_t)t * nv, last, sizeof(float) * nv);
        aero_batch one = {.n = 1, .tokens = &out[t], .pos = &pos[np + t]};
        ok = !aero_decode(c, &one, lg, &err);
        last = lg;
    }
    CHECKF(ok, "decode: %s", err.msg);
    free(lg);
    aero_ctx_free(c);
    return ok;
}

// The same greedy continuation through the speculative decoder with the n-gram drafter (tree/chain
// verification batches go through the latent attention's masks and sequences).
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

// Greedy text and logits at streamed budgets (the minimum, a third of the experts cached) equal the resident
// run's bit for bit; with the predictor too; and speculative greedy equals plain greedy.
static void check_budgets(const char *what, const char *path, const int32_t *prompt, int np, int n) {
    aero_model *m = test_load_model(path, 2, 0);
    CHECKF(m != NULL, "%s: load", what);
    if (!m) return;
    int nv = aero_model_hparams(m)->n_vocab;
    int32_t *want = malloc(sizeof(int32_t) * n), *got = malloc(sizeof(int32_t) * n);
    float *lw = malloc(sizeof(float) * n * nv), *lg = malloc(sizeof(float) * n * nv);
    const aero_stream_plan *p0 = aero_stream_get_plan(aero_model_stream(m));
    CHECK(p0->experts_resident);
    uint64_t budgets[2] = {p0->min_budget,
                           p0->min_budget + p0->expert_span * (uint64_t)(p0->n_expert * p0->n_moe_layers / 3)};
    greedy(m, prompt, np, n, want, lw);
    aero_model_free(m);
    for (int i = 0; i < 2; i++) {
        for (int pf = 0; pf < 2; pf++) {
            aero_model_params mp;
            aero_model_params_default(&mp);
            mp.path = path;
            mp.n_threads = 2;
            mp.mem_budget = budgets[i];
            mp.expert_prefetch = pf;
            aero_model *s = NULL;
            aero_error err = {0};
            CHECKF(!aero_model_load(&s, &mp, &err), "%s: %s", what, err.msg);
            if (!s) continue;
            const aero_stream_plan *p = aero_stream_get_plan(aero_model_stream(s));
            CHECKF(!p->experts_resident, "%s: experts streamed under %llu", what, (unsigned long long)budgets[i]);
            memset(got, 0xff, sizeof(int32_t) * n);
            greedy(s, prompt, np, n, got, lg);
            aero_expert_cache_stats cs = {0};
            aero_model_expert_stats(s, &cs);
            printf("%s: --mem %llu%s: expert cache %llu B, %llu lookups, hit rate %.2f, %llu prefetched\n", what,
                   (unsigned long long)budgets[i], pf ? " (predictor)" : "", (unsigned long long)p->expert_budget,
                   (unsigned long long)cs.lookups, cs.lookups ? (double)cs.hits / cs.lookups : 0,
                   (unsigned long long)cs.prefetch_issued);
            CHECKF(cs.misses > 0 && cs.peak_bytes <= p->expert_budget, "%s: the expert cache read within its budget",
                   what);
            CHECKF(!memcmp(want, got, sizeof(int32_t) * n) && !memcmp(lw, lg, sizeof(float) * n * nv),
                   "%s: greedy tokens and logits under --mem %llu%s equal the resident run's", what,
                   (unsigned long long)budgets[i], pf ? " with the predictor" : "");
            if (i == 0 && !pf) {
                double acc = 0;
                memset(got, 0xff, sizeof(int32_t) * n);
                greedy_spec(s, prompt, np, n, got, &acc);
                printf("%s: speculative (n-gram) acceptance %.2f\n", what, acc);
                CHECKF(!memcmp(want, got, sizeof(int32_t) * n), "%s: speculative greedy equals plain greedy", what);
            }
            aero_model_free(s);
        }
    }
    free(want);
    free(got);
    free(lw);
    free(lg);
}

// A copy of the file as a real DeepSeek-V3/R1 GGUF carries its multi-token-prediction block: block_count + 1,
// nextn_predict_layers = 1, and a last layer blk.L (a copy of blk.L-1, so it is a complete decoder layer with
// routed experts) plus the MTP-only tensors blk.L.nextn.* (llama.cpp's names). False when it cannot be written.
static bool write_with_mtp(const char *src, const char *dst) {
    aero_gguf g;
    aero_error err = {0};
    if (aero_gguf_open(&g, src, &err)) return false;
    const char *arch = aero_gguf_get_str(&g, "general.architecture");
    int64_t n_layer = 0;
    aero_gguf_block_count(&g, &n_layer);
    int fd = open(src, O_RDONLY);
    aero_gguf_writer *w = aero_gguf_writer_new(0);
    bool ok = fd >= 0 && w && arch && n_layer > 0;
    for (uint64_t i = 0; ok && i < g.n_kv; i++) aero_gguf_set_value(w, g.kv[i].key.ptr, &g.kv[i].value);
    char key[160], name[160];
    snprintf(key, sizeof key, "%s.block_count", arch ? arch : "");
    if (ok) aero_gguf_set_u32(w, key, (uint32_t)n_layer + 1);
    snprintf(key, sizeof key, "%s.nextn_predict_layers", arch ? arch : "");
    if (ok) aero_gguf_set_u32(w, key, 1);
    int64_t d = 0;
    snprintf(key, sizeof key, "%s.embedding_length", arch ? arch : "");
    aero_gguf_get_i64(&g, key, &d);
    for (int pass = 0; pass < 2; pass++) // every tensor, then the MTP block at the end of the file (as converted)
        for (uint64_t i = 0; ok && i < g.n_tensors; i++) {
            const aero_tensor_info *t = &g.tensors[i];
            if (pass && aero_gguf_tensor_layer(t->name) != n_layer - 1) continue;
            void *buf = malloc(t->nbytes ? t->nbytes : 1);
            ok = buf && pread(fd, buf, t->nbytes, (off_t)t->offset) == (ssize_t)t->nbytes;
            if (pass) // the MTP block repeats the last layer's tensors under blk.L
                snprintf(name, sizeof name, "blk.%lld.%s", (long long)n_layer, strchr(t->name + 4, '.') + 1);
            ok = ok && !aero_gguf_add_tensor(w, pass ? name : t->name, t->type, t->n_dims, t->ne, buf, &err);
            free(buf);
        }
    // its own tensors: eh_proj {2 n_embd, n_embd}, enorm/hnorm/shared_head_norm {n_embd}
    static const char *const norms[] = {"enorm", "hnorm", "shared_head_norm"};
    float *v = calloc((size_t)(2 * d * d), sizeof(float));
    ok = ok && v && d > 0;
    for (int i = 0; ok && i < 2 * d * d; i++) v[i] = (float)((i % 7) - 3) * 0.01f;
    uint64_t ne_eh[2] = {(uint64_t)(2 * d), (uint64_t)d}, ne_n[1] = {(uint64_t)d};
    snprintf(name, sizeof name, "blk.%lld.nextn.eh_proj.weight", (long long)n_layer);
    ok = ok && !aero_gguf_add_tensor(w, name, AERO_DT_F32, 2, ne_eh, v, &err);
    for (int k = 0; ok && k < 3; k++) {
        snprintf(name, sizeof name, "blk.%lld.nextn.%s.weight", (long long)n_layer, norms[k]);
        ok = !aero_gguf_add_tensor(w, name, AERO_DT_F32, 1, ne_n, v, &err);
    }
    ok = ok && !aero_gguf_write(w, dst, &err);
    CHECKF(ok, "write %s: %s", dst, err.msg);
    free(v);
    aero_gguf_writer_free(w);
    if (fd >= 0) close(fd);
    aero_gguf_free(&g);
    return ok;
}

// Plain decoding skips the MTP block, as llama.cpp does: the same layers, the same plan (nothing of blk.L is held
// or read), and greedy text and logits bitwise those of the file without it, resident and expert-streamed.
static void check_mtp(const char *what, const char *path, const int32_t *prompt, int np, int n) {
    char mtp[300];
    snprintf(mtp, sizeof mtp, "%s.mtp.gguf", path);
    if (!write_with_mtp(path, mtp)) return;
    aero_model *a = test_load_model(path, 2, 0), *b = test_load_model(mtp, 2, 0);
    CHECKF(a && b, "%s: the file with an MTP block loads", what);
    if (a && b) {
        CHECKF(aero_model_hparams(b)->n_layer == aero_model_hparams(a)->n_layer, "%s: MTP: %d layers run (%d)", what,
               aero_model_hparams(b)->n_layer, aero_model_hparams(a)->n_layer);
        const aero_stream_plan *pa = aero_stream_get_plan(aero_model_stream(a));
        const aero_stream_plan *pb = aero_stream_get_plan(aero_model_stream(b));
        // the resident bytes may differ by the pages the aligned reads straddle (the tensors sit at other offsets)
        uint64_t diff = pa->resident_bytes > pb->resident_bytes ? pa->resident_bytes - pb->resident_bytes
                                                                : pb->resident_bytes - pa->resident_bytes;
        CHECKF(diff <= 16 * 4096 && pa->expert_bytes == pb->expert_bytes && pa->n_units == pb->n_units,
               "%s: MTP: the plan holds nothing of the MTP block (%llu / %llu resident bytes, %d / %d units)", what,
               (unsigned long long)pb->resident_bytes, (unsigned long long)pa->resident_bytes, pb->n_units,
               pa->n_units);
        int nv = aero_model_hparams(a)->n_vocab;
        int32_t *ta = malloc(sizeof(int32_t) * n), *tb = malloc(sizeof(int32_t) * n);
        float *la = malloc(sizeof(float) * n * nv), *lb = malloc(sizeof(float) * n * nv);
        greedy(a, prompt, np, n, ta, la);
        greedy(b, prompt, np, n, tb, lb);
        CHECKF(!memcmp(ta, tb, sizeof(int32_t) * n) && !memcmp(la, lb, sizeof(float) * n * nv),
               "%s: MTP: greedy tokens and logits equal the file's without the block", what);
        uint64_t budget = pb->min_budget; // experts streamed: the expert cache must not know layer L either
        aero_model_free(b);
        b = test_load_model(mtp, 2, budget);
        CHECKF(b != NULL, "%s: MTP: loads under --mem %llu", what, (unsigned long long)budget);
        if (b) {
            CHECK(!aero_stream_get_plan(aero_model_stream(b))->experts_resident);
            memset(tb, 0xff, sizeof(int32_t) * n);
            greedy(b, prompt, np, n, tb, lb);
            CHECKF(!memcmp(ta, tb, sizeof(int32_t) * n) && !memcmp(la, lb, sizeof(float) * n * nv),
                   "%s: MTP: expert-streamed greedy tokens and logits equal the resident run's", what);
        }
        free(ta), free(tb), free(la), free(lb);
    }
    aero_model_free(a);
    aero_model_free(b);
    unlink(mtp);
}

static void run_preset(const char *preset) {
    char path[256];
    test_tmp_path(path, sizeof path, preset);
    strcat(path, ".gguf");
    aero_synth_params sp;
    CHECK(aero_synth_preset(preset, &sp));
    sp.type = AERO_DT_F32;
    sp.n_threads = 2;
    aero_error err = {0};
    CHECKF(!aero_synth_write(&sp, path, NULL, &err), "%s: %s", preset, err.msg);
    aero_model *m = test_load_model(path, 2, 0);
    CHECKF(m != NULL, "%s: load", preset);
    if (!m) return;
    const aero_hparams *hp = aero_model_hparams(m);
    int nv = hp->n_vocab;
    // the cache holds the latent and the rotary key only: (kv_lora_rank + qk_rope) F16 values a token and layer
    aero_ctx_params kp = {.n_ctx = 100};
    uint64_t want_kv = (uint64_t)hp->n_layer * 100 * (sp.ds.kv_lora_rank + sp.ds.qk_rope) * 2;
    CHECKF(aero_kv_bytes(hp, &kp) == want_kv, "%s: latent KV cache of %llu bytes (%llu)", preset,
           (unsigned long long)want_kv, (unsigned long long)aero_kv_bytes(hp, &kp));
    enum { NP = 12 };
    int32_t tok[NP];
    for (int i = 0; i < NP; i++) tok[i] = (int32_t)(3 + i * 37 % (nv - 3));
    float *got = malloc(sizeof(float) * NP * nv), *one = malloc(sizeof(float) * NP * nv);
    float *tile = malloc(sizeof(float) * NP * nv);
    double *want = malloc(sizeof(double) * NP * nv);
    decode_all(m, tok, NP, NP, 0, got);
    decode_all(m, tok, NP, 1, 0, one);
    decode_all(m, tok, NP, NP, 2, tile);
    CHECKF(!memcmp(got, one, sizeof(float) * NP * nv) && !memcmp(got, tile, sizeof(float) * NP * nv),
           "%s: one batch, one token at a time and tiles of 2 give the same logits bitwise", preset);
    CHECK(aero_gguf_open(&G, path, &err) == AERO_OK);
    fd_file = open(path, O_RDONLY);
    reference(tok, NP, nv, want);
    close(fd_file);
    aero_gguf_free(&G);
    double worst = 0, scale = 0;
    for (int i = 0; i < NP * nv; i++) scale = fmax(scale, fabs(want[i]));
    for (int i = 0; i < NP * nv; i++) worst = fmax(worst, fabs(got[i] - want[i]) / scale);
    printf("%s: max |logit error| / max |logit| = %.2e against the double reference\n", preset, worst);
    CHECKF(worst < 1e-4, "%s logits within 1e-4 relative of the double reference (%.2e)", preset, worst);
    free(got);
    free(one);
    free(tile);
    free(want);
    aero_model_free(m);
    int32_t prompt[6] = {1, 300, 301, 302, 300, 301};
    check_budgets(preset, path, prompt, 6, 24);
    check_mtp(preset, path, prompt, 6, 24);
    unlink(path);
}

int main(void) {
    run_preset("deepseek2-tiny");      // V3's features: q_lora, sigmoid + bias + groups, attn_k_b/attn_v_b
    run_preset("deepseek2-tiny-lite"); // V2-Lite's: attn_q, softmax, the older attn_kv_b
    return check_done("test_model_deepseek");
}
