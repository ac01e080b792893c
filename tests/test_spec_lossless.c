// Speculative sampling is lossless: on a small synthetic teacher (random weights, stories260K's tokenizer) with a
// synthetic drafter that disagrees with it (the teacher's weights with noise on the output head), the joint
// distribution of the first two generated tokens over many seeded runs matches the teacher's own, computed
// exactly here from its logits. Chain drafts (drawn from the drafter's q, accepted with min(1, p/q)) and tree
// drafts (the drafter's top-ranked tokens, multi-draft rule; best-first trees and trees grown by cost) are
// checked with a chi-square test; a deliberately
// wrong rule (after a rejection, draw from p instead of the residual) must fail the same test. The same check
// for a draft head (random weights, written here), whose drafts are its top-ranked tokens, chain and trees.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "modules.h" // the module headers: a white-box test

#include "check.h"
#include "helpers.h"

enum { DIM = 32, HEADS = 2, KV_HEADS = 1, HD = 16, FF = 48, LAYERS = 1, TOP_K = 6, RUNS = 6000 };

static uint64_t rng_state;
static double urand(void) { return test_xorshift_sym(&rng_state); }

// Adds an F32 tensor of rows x cols uniform values offset + scale * [-1, 1) (+ noise * [-1, 1) on top).
static void add(aero_gguf_writer *wr, const char *name, int rows, int cols, double scale, double offset, double noise,
                uint64_t noise_seed) {
    float *w = malloc(sizeof(float) * rows * cols);
    for (int i = 0; i < rows * cols; i++) w[i] = (float)(offset + scale * urand());
    if (noise > 0) {
        uint64_t keep = rng_state;
        rng_state = noise_seed;
        for (int i = 0; i < rows * cols; i++) w[i] += (float)(noise * urand());
        rng_state = keep;
    }
    test_add_tensor(wr, name, AERO_DT_F32, rows, cols, w);
    free(w);
}

// A one-layer llama with stories260K's tokenizer; output_noise > 0 perturbs the output head (the drafter).
static bool write_model(const char *path, double output_noise) {
    aero_error err = {0};
    aero_gguf_writer *wr = aero_gguf_writer_new(0);
    const test_llama hp = {LAYERS, DIM, FF, HEADS, KV_HEADS, 64, 1e-5f, 0};
    int vocab = test_llama_header(wr, &hp, SHARED_DATA "/models/stories260K.gguf");
    if (vocab < 0) {
        aero_gguf_writer_free(wr);
        return false;
    }
    rng_state = 0x9e3779b97f4a7c15ull; // the same base weights for teacher and drafter
    add(wr, "token_embd.weight", vocab, DIM, 1.0, 0, 0, 0);
    add(wr, "output_norm.weight", 1, DIM, 0.1, 1.0, 0, 0);
    add(wr, "output.weight", vocab, DIM, 0.45, 0, output_noise, 12345);
    for (int l = 0; l < LAYERS; l++) {
        char n[64];
#define ADD(suffix, r, c, s, off) (snprintf(n, sizeof n, "blk.%d." suffix, l), add(wr, n, r, c, s, off, 0, 0))
        ADD("attn_norm.weight", 1, DIM, 0.1, 1.0);
        ADD("attn_q.weight", HEADS * HD, DIM, 0.3, 0);
        ADD("attn_k.weight", KV_HEADS * HD, DIM, 0.3, 0);
        ADD("attn_v.weight", KV_HEADS * HD, DIM, 0.3, 0);
        ADD("attn_output.weight", DIM, HEADS * HD, 0.3, 0);
        ADD("ffn_norm.weight", 1, DIM, 0.1, 1.0);
        ADD("ffn_gate.weight", FF, DIM, 0.3, 0);
        ADD("ffn_up.weight", FF, DIM, 0.3, 0);
        ADD("ffn_down.weight", DIM, FF, 0.3, 0);
    }
    bool ok = !aero_gguf_write(wr, path, &err);
    CHECKF(ok, "%s", err.msg);
    aero_gguf_writer_free(wr);
    return ok;
}

static const char *g_head; // a draft head file: sample_runs drafts with it (the drafter argument NULL)

static aero_model *load(const char *path) { return test_load_model(path, 1, 0); }

static aero_sampler_params sampling(uint64_t seed) {
    aero_sampler_params sp;
    aero_sampler_params_default(&sp);
    sp.temp = 1.0f;
    sp.top_k = TOP_K;
    sp.top_p = 1.0f;
    sp.min_p = 0;
    sp.seed = seed;
    return sp;
}

static const int32_t PROMPT[3] = {1, 403, 407};

// The teacher's exact joint law of the first two sampled tokens: want[a * nv + b].
static void exact(aero_model *m, double *want) {
    int nv = aero_model_hparams(m)->n_vocab;
    aero_ctx *c;
    aero_error err = {0};
    aero_ctx_params cp = {.n_ctx = 16};
    CHECK(!aero_ctx_new(&c, m, &cp, &err));
    aero_sampler_params sp = sampling(0);
    aero_sampler *s = aero_sampler_new(&sp, nv);
    float *logits = malloc(sizeof(float) * nv * 3), *p1 = malloc(sizeof(float) * nv), *p2 = malloc(sizeof(float) * nv);
    int32_t pos[3] = {0, 1, 2};
    aero_batch b = {.n = 3, .tokens = PROMPT, .pos = pos};
    CHECK(!aero_decode(c, &b, logits, &err));
    aero_sampler_probs(s, logits + 2 * nv, p1);
    memset(want, 0, sizeof(double) * nv * nv);
    for (int32_t a = 0; a < nv; a++) {
        if (p1[a] <= 0) continue;
        aero_kv_truncate(c, 0, 3);
        int32_t p = 3;
        aero_batch one = {.n = 1, .tokens = &a, .pos = &p};
        CHECK(!aero_decode(c, &one, logits, &err));
        aero_sampler_probs(s, logits, p2);
        for (int32_t t = 0; t < nv; t++) want[(size_t)a * nv + t] = (double)p1[a] * p2[t];
    }
    free(logits);
    free(p1);
    free(p2);
    aero_sampler_free(s);
    aero_ctx_free(c);
}

// Counts the first two tokens of RUNS speculative generations (5 tokens each, so drafts go deeper than two).
// policy: the tree policy; for COST, fixed_costs picks fixed costs (reproducible) or measured ones.
static double sample_runs(aero_model *t, aero_model *d, int tree, aero_spec_tree_policy policy, bool fixed_costs,
                          aero_spec_rule rule, double *count) {
    int nv = aero_model_hparams(t)->n_vocab;
    aero_ctx *c;
    aero_error err = {0};
    aero_ctx_params cp = {.n_ctx = 32};
    CHECK(!aero_ctx_new(&c, t, &cp, &err));
    aero_spec_params sp;
    aero_spec_params_default(&sp);
    sp.draft_max = tree ? 3 : 4;
    sp.tree_nodes = tree;
    sp.adaptive = false;
    sp.sampling = sampling(777);
    sp.rule = rule;
    sp.tree_policy = policy;
    sp.cost_fixed = fixed_costs;
    sp.cost_verify_token = 0.05f; // trees of a few nodes, pruned to what pays
    sp.cost_draft_token = 0.02f;
    sp.draft_head = g_head;
    aero_spec *s = NULL;
    CHECKF(!aero_spec_new(&s, c, 0, d, &sp, &err), "%s", err.msg);
    memset(count, 0, sizeof(double) * nv * nv);
    double passes = 0, gen = 0;
    for (int r = 0; s && r < RUNS; r++) {
        aero_sampler_params smp_p = sampling(1000 + r);
        aero_sampler *smp = aero_sampler_new(&smp_p, nv);
        for (int i = 0; i < 3; i++) aero_sampler_accept(smp, PROMPT[i]);
        int32_t out[16];
        int got = 0;
        CHECKF(!aero_spec_begin(s, PROMPT, 3, 5, &err), "%s", err.msg);
        while (got < 2) {
            int k = 0;
            if (aero_spec_step(s, smp, 5 - got, out + got, &k, &err)) {
                CHECKF(0, "step: %s", err.msg);
                break;
            }
            got += k;
        }
        if (got >= 2) count[(size_t)out[0] * nv + out[1]] += 1;
        aero_spec_stats st;
        aero_spec_get_stats(s, &st);
        passes += st.verify_passes, gen += st.generated;
        aero_sampler_free(smp);
    }
    aero_spec_free(s);
    aero_ctx_free(c);
    return passes ? gen / passes : 0;
}

// Pearson chi-square of counts against want (cells with expected count < 5 pooled); *df set. Counts in cells of
// probability zero make it infinite.
static double chi_square(const double *want, const double *count, int n, int *df) {
    double stat = 0, pool_e = 0, pool_o = 0;
    int cells = 0;
    *df = 0;
    for (int i = 0; i < n; i++) {
        double e = want[i] * RUNS, o = count[i];
        if (want[i] <= 0) {
            if (o > 0) return INFINITY;
            continue;
        }
        if (e < 5) {
            pool_e += e, pool_o += o;
            continue;
        }
        stat += (o - e) * (o - e) / e;
        cells++;
    }
    if (pool_e > 0) stat += (pool_o - pool_e) * (pool_o - pool_e) / pool_e, cells++;
    *df = cells - 1;
    return stat;
}

// Upper 1e-4 quantile of chi-square with df degrees of freedom (Wilson-Hilferty; z = 3.719).
static double chi2_threshold(int df) {
    double k = df, z = 3.719;
    double t = 1 - 2 / (9 * k) + z * sqrt(2 / (9 * k));
    return k * t * t * t;
}

// Total variation distance between the counts' empirical law and want.
static double total_variation(const double *want, const double *count, int n) {
    double tv = 0;
    for (int i = 0; i < n; i++) tv += fabs(count[i] / RUNS - want[i]);
    return tv / 2;
}

// Runs one configuration and reports whether its counts pass the test.
static bool passes(const char *what, aero_model *t, aero_model *d, int tree, aero_spec_tree_policy policy,
                   bool fixed_costs, aero_spec_rule rule, const double *want, double *count, int nv) {
    double tpp = sample_runs(t, d, tree, policy, fixed_costs, rule, count);
    int df;
    double chi = chi_square(want, count, nv * nv, &df), thr = chi2_threshold(df);
    printf("%-32s chi-square %7.1f (df %d, threshold %.1f at p = 1e-4), TV %.4f, %.2f tokens/pass\n", what, chi, df,
           thr, total_variation(want, count, nv * nv), tpp);
    return chi < thr;
}

int main(void) {
    require_shared_data();
    char tpath[64], dpath[64];
    snprintf(tpath, sizeof tpath, "/tmp/aero_spec_teacher_%d.gguf", (int)getpid());
    snprintf(dpath, sizeof dpath, "/tmp/aero_spec_drafter_%d.gguf", (int)getpid());
    bool ok = write_model(tpath, 0) && write_model(dpath, 0.3);
    aero_model *t = ok ? load(tpath) : NULL, *d = ok ? load(dpath) : NULL;
    unlink(tpath);
    unlink(dpath);
    CHECK(t && d);
    if (!t || !d) return check_done("test_spec_lossless");
    int nv = aero_model_hparams(t)->n_vocab;
    double *want = malloc(sizeof(double) * nv * nv), *count = malloc(sizeof(double) * nv * nv);
    exact(t, want);
    // how much the drafter disagrees at the first position: TV(p, q)
    {
        aero_ctx *c1, *c2;
        aero_error err = {0};
        aero_ctx_params cp = {.n_ctx = 8};
        CHECK(!aero_ctx_new(&c1, t, &cp, &err) && !aero_ctx_new(&c2, d, &cp, &err));
        aero_sampler_params sp = sampling(0);
        aero_sampler *s = aero_sampler_new(&sp, nv);
        float *l = malloc(sizeof(float) * nv * 3), *p = malloc(sizeof(float) * nv), *q = malloc(sizeof(float) * nv);
        int32_t pos[3] = {0, 1, 2};
        aero_batch b = {.n = 3, .tokens = PROMPT, .pos = pos};
        CHECK(!aero_decode(c1, &b, l, &err));
        aero_sampler_probs(s, l + 2 * nv, p);
        CHECK(!aero_decode(c2, &b, l, &err));
        aero_sampler_probs(s, l + 2 * nv, q);
        double tv = 0, pmax = 0;
        for (int i = 0; i < nv; i++) tv += fabs(p[i] - q[i]) / 2, pmax = fmax(pmax, p[i]);
        printf("first position: TV(teacher, drafter) = %.3f, teacher's top probability %.3f\n", tv, pmax);
        CHECKF(tv > 0.15 && pmax < 0.8, "the drafter disagrees enough for the wrong rule to show (TV %.3f)", tv);
        free(l), free(p), free(q);
        aero_sampler_free(s);
        aero_ctx_free(c1);
        aero_ctx_free(c2);
    }
    const aero_spec_tree_policy BF = AERO_SPEC_TREE_BEST_FIRST, COST = AERO_SPEC_TREE_COST;
    const aero_spec_rule OK = AERO_SPEC_RULE_LOSSLESS, WRONG = AERO_SPEC_RULE_WRONG_RESAMPLE;
    CHECK(passes("chain (q-sampled drafts)", t, d, 0, BF, false, OK, want, count, nv));
    CHECK(passes("tree (top-ranked drafts)", t, d, 8, BF, false, OK, want, count, nv));
    CHECK(passes("tree by cost, fixed costs", t, d, 16, COST, true, OK, want, count, nv));
    CHECK(passes("tree by cost, measured costs", t, d, 16, COST, false, OK, want, count, nv));
    CHECK(passes("chain, drafter = teacher", t, t, 0, BF, false, OK, want, count, nv));
    CHECKF(!passes("chain, WRONG rule (must fail)", t, d, 0, BF, false, WRONG, want, count, nv),
           "the test detects a wrong acceptance rule (chain)");
    CHECKF(!passes("tree, WRONG rule (must fail)", t, d, 8, BF, false, WRONG, want, count, nv),
           "the test detects a wrong acceptance rule (tree)");
    CHECKF(!passes("tree by cost, WRONG rule (must fail)", t, d, 16, COST, true, WRONG, want, count, nv),
           "the test detects a wrong acceptance rule (tree by cost)");
    char hpath[64];
    snprintf(hpath, sizeof hpath, "/tmp/aero_spec_head_%d.gguf", (int)getpid());
    aero_error err = {0};
    CHECKF(!aero_spec_head_write_random(hpath, t, HEADS, FF, 3, NULL, true, &err), "%s", err.msg);
    g_head = hpath;
    CHECK(passes("draft head, chain", t, NULL, 0, BF, false, OK, want, count, nv));
    CHECK(passes("draft head, tree", t, NULL, 8, BF, false, OK, want, count, nv));
    CHECK(passes("draft head, tree by cost", t, NULL, 16, COST, true, OK, want, count, nv));
    CHECKF(!passes("draft head, tree, WRONG rule (must fail)", t, NULL, 8, BF, false, WRONG, want, count, nv),
           "the test detects a wrong acceptance rule (draft head)");
    g_head = NULL;
    unlink(hpath);
    free(want);
    free(count);
    aero_model_free(t);
    aero_model_free(d);
    return check_done("test_spec_lossless");
}
