// The speculative decoder: draft, verify every drafted token in one target pass (a chain causally, a tree under
// a tree mask), walk the drafted tokens from the root keeping those the acceptance rule allows, and remove the
// rest from both KV caches. The last committed token is never in the target cache: each verify pass starts
// with it (the first pass with the prompt's last chunk), so its output row gives the distribution of the first
// drafted token.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../model/generate.h"
#include "spec_internal.h"

#define MAX_TREE_NODES 1024
#define FIT_DECAY 0.95 // pass-cost samples weigh 0.95^age
#define ACC_DECAY 0.9  // acceptance samples weigh 0.9^age
#define TOP_B 16       // candidates kept per tree node
#define PROBE_EVERY 8  // adaptive: while drafting does not pay, draft on one step in this many

void aero_spec_params_default(aero_spec_params *p) {
    memset(p, 0, sizeof *p);
    p->draft_max = 16;
    p->adaptive = true;
    p->ngram_min = 1;
    p->ngram_max = 4;
    p->n_batch = 512;
    aero_sampler_params_default(&p->sampling);
}

// Adds a (tokens, seconds) sample to a decayed cost fit, recent samples weighing most.
void aero_spec_fit_add(spec_fit *f, double n, double t) {
    f->w = f->w * FIT_DECAY + 1;
    f->sn = f->sn * FIT_DECAY + n;
    f->st = f->st * FIT_DECAY + t;
    f->snn = f->snn * FIT_DECAY + n * n;
    f->snt = f->snt * FIT_DECAY + n * t;
}

// t(n) = a + b n by weighted least squares, with b >= 0 and a >= 0; a constant when all n were equal.
void aero_spec_fit_get(const spec_fit *f, double *a, double *b) {
    if (f->w <= 0) {
        *a = 1, *b = 0;
        return;
    }
    double mn = f->sn / f->w, mt = f->st / f->w, var = f->snn / f->w - mn * mn;
    *b = var > 1e-6 ? (f->snt / f->w - mn * mt) / var : 0;
    if (*b < 0) *b = 0;
    *a = mt - *b * mn;
    if (*a < 0) *a = 0, *b = mn > 0 ? mt / mn : 0;
}

// Default costs of the COST policy before anything was measured (units of a one-token pass): a small tree
// first, whose pass then calibrates the curve.
#define COST_VERIFY_DEFAULT 0.05
#define COST_DRAFT_DEFAULT 0.05
#define CURVE_DECAY 0.8 // a bucket's samples weigh 0.8^age

// Files a verify pass's time under its token count's power-of-two bucket.
static void curve_add(spec_curve *c, int n, double t) {
    int b = 0;
    while (b + 1 < CURVE_BUCKETS && (2 << b) <= n) b++;
    c->w[b] = c->w[b] * CURVE_DECAY + 1;
    c->n[b] = c->n[b] * CURVE_DECAY + n;
    c->t[b] = c->t[b] * CURVE_DECAY + t;
    if (n > c->n_max) c->n_max = n;
}

// The COST policy's price of a verify pass of n tokens: fixed, or read off the measured curve.
double aero_spec_verify_cost(const aero_spec *s, int n) {
    if (s->p.cost_fixed) return 1 + s->p.cost_verify_token * (n - 1);
    const spec_curve *c = &s->curve;
    // the buckets' mean points, made non-decreasing (a larger pass never costs less)
    double pn[CURVE_BUCKETS], pt[CURVE_BUCKETS];
    int k = 0;
    for (int b = 0; b < CURVE_BUCKETS; b++) {
        if (c->w[b] <= 0) continue;
        pn[k] = c->n[b] / c->w[b];
        pt[k] = c->t[b] / c->w[b];
        if (k > 0 && pt[k] < pt[k - 1]) pt[k] = pt[k - 1];
        k++;
    }
    if (k == 0) return 1 + COST_VERIFY_DEFAULT * (n - 1);
    if (n <= pn[0]) return pt[0];
    for (int i = 1; i < k; i++)
        if (n <= pn[i]) return pt[i - 1] + (pt[i] - pt[i - 1]) * (n - pn[i - 1]) / (pn[i] - pn[i - 1]);
    // beyond the largest pass timed: its cost plus the steeper of the fitted line's slope and the last segment's
    double a, slope;
    aero_spec_fit_get(&s->fit, &a, &slope);
    if (k > 1 && pn[k - 1] > pn[k - 2]) {
        double seg = (pt[k - 1] - pt[k - 2]) / (pn[k - 1] - pn[k - 2]);
        if (seg > slope) slope = seg;
    }
    return pt[k - 1] + slope * (n - pn[k - 1]);
}

// The COST policy's price of a drafter call fed n tokens: fixed, or the fitted line of its timed calls.
double aero_spec_draft_call_cost(const aero_spec *s, int n) {
    if (s->p.cost_fixed) return s->p.cost_draft_token * n;
    if (s->curve.n_max == 0) return COST_DRAFT_DEFAULT * n; // in the default units, as the verify cost is
    double a, b;
    aero_spec_fit_get(&s->dfit, &a, &b);
    return s->dfit.w > 0 ? a + b * n : 0;
}

// A drafted path's chance of acceptance: its drafter probability, calibrated by what verification measured.
double aero_spec_path_accept(const aero_spec *s, double logp) {
    double c = (s->tree_acc_w + 1) / (s->tree_p_w + 1), a = c * exp(logp);
    return a < 1 ? a : 1;
}

// After a verify pass of a model-drafted tree: how often a node the target reached, whose children were
// drafted, had one of them accepted (what evaluating a node with the drafter is worth).
static void count_expansions(aero_spec *s, int m) {
    s->expand_hit *= ACC_DECAY, s->expand_try *= ACC_DECAY;
    for (int j = 0; j <= m; j++) {
        int node = j == 0 ? -1 : s->keep[j - 1];
        if ((node < 0 ? s->root_child : s->nodes[node].first_child) < 0) continue;
        s->expand_try += 1, s->expand_hit += j < m;
    }
}

// aero_spec_new, a draft head's weights borrowed from like_head when given (aero_spec_new_like).
static aero_status spec_new(aero_spec **out, aero_ctx *target, int seq, aero_model *draft, const aero_spec_params *p,
                            const aero_spec_head *like_head, aero_error *err) {
    *out = NULL;
    if (p->draft_max < 1)
        return aero_fail(err, AERO_ERR_INVALID, "draft length (--draft-max) must be at least 1, got %d", p->draft_max);
    if (p->draft_min < 0 || p->draft_min > p->draft_max)
        return aero_fail(err, AERO_ERR_INVALID, "--draft-min %d must lie in [0, --draft-max %d]", p->draft_min,
                         p->draft_max);
    if (p->tree_nodes < 0 || p->tree_nodes > MAX_TREE_NODES)
        return aero_fail(err, AERO_ERR_INVALID, "tree size (--draft-tree) must lie in [0, %d], got %d", MAX_TREE_NODES,
                         p->tree_nodes);
    if (!(p->p_min >= 0 && p->p_min <= 1))
        return aero_fail(err, AERO_ERR_INVALID, "--draft-p-min must lie in [0, 1], got %g", p->p_min);
    if (p->tree_policy != AERO_SPEC_TREE_BEST_FIRST && p->tree_policy != AERO_SPEC_TREE_COST)
        return aero_fail(err, AERO_ERR_INVALID, "unknown tree policy %d", (int)p->tree_policy);
    if (p->cost_fixed && !(p->cost_verify_token >= 0 && p->cost_draft_token >= 0))
        return aero_fail(err, AERO_ERR_INVALID, "--draft-costs must be non-negative, got %g,%g", p->cost_verify_token,
                         p->cost_draft_token);
    if (seq < 0 || seq >= aero_ctx_n_seq(target))
        return aero_fail(err, AERO_ERR_INVALID, "sequence %d not in the target context", seq);
    aero_model *tm = aero_ctx_model(target);
    if (draft && p->draft_head)
        return aero_fail(err, AERO_ERR_INVALID, "a draft model and a draft head cannot be used together");
    if (draft) {
        aero_status st = aero_spec_check_vocab(tm, draft, err);
        if (st) return st;
    }
    aero_spec *s = calloc(1, sizeof *s);
    if (!s) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    s->p = *p;
    if (s->p.ngram_min <= 0) s->p.ngram_min = 1;
    if (s->p.ngram_max < s->p.ngram_min) s->p.ngram_max = s->p.ngram_min > 4 ? s->p.ngram_min : 4;
    if (s->p.n_batch <= 0) s->p.n_batch = 512;
    s->sp = p->sampling;
    s->tctx = target;
    s->tmodel = tm;
    s->seq = seq;
    s->n_vocab = aero_model_hparams(tm)->n_vocab;
    s->n_ctx = aero_ctx_n_ctx(target);
    s->max_nodes = p->tree_nodes > 0 ? p->tree_nodes : p->draft_max;
    s->top_b = s->max_nodes < TOP_B ? s->max_nodes : TOP_B;
    s->acc_w = 1, s->rej_w = 1;
    s->d_vocab = s->n_shared = s->n_vocab;
    int nm = s->max_nodes + 1, nb = nm + s->p.n_batch;
    if (p->draft_head) {
        // the head drafts over the target's own vocabulary, with the drafter's ranking buffers
        int d = aero_model_n_embd(tm);
        int cells = aero_spec_head_cells(s->n_ctx, s->max_nodes),
            rows = aero_spec_head_rows(s->max_nodes, s->p.n_batch);
        if (like_head ? aero_spec_head_load_like(&s->head, like_head, cells, rows, s->max_nodes, err)
                      : aero_spec_head_load(&s->head, p->draft_head, target, cells, rows, s->max_nodes, err))
            goto fail;
        aero_sampler_params dp = p->sampling;
        dp.repeat_penalty = 1, dp.presence_penalty = 0, dp.frequency_penalty = 0;
        s->dsmp = aero_sampler_new(&dp, s->n_vocab);
        s->dlogits = malloc(sizeof(float) * (size_t)(nm > 8 ? nm : 8) * s->n_vocab);
        s->qtmp = malloc(sizeof(float) * s->n_vocab);
        s->top_tok = malloc(sizeof(int32_t) * (size_t)nm * s->top_b);
        s->top_q = malloc(sizeof(float) * (size_t)nm * s->top_b);
        s->n_top = calloc(nm, sizeof(int));
        s->hfeat = calloc((size_t)(s->n_ctx + nm + 2) * d, sizeof(float)); // unseen positions: zero features
        s->hroot = malloc(sizeof(float) * d);
        s->nfeat = malloc(sizeof(float) * (size_t)nm * d);
        s->ncell = malloc(sizeof(int) * nm);
        if (!s->dsmp || !s->dlogits || !s->qtmp || !s->top_tok || !s->top_q || !s->n_top || !s->hfeat || !s->hroot ||
            !s->nfeat || !s->ncell)
            goto oom;
    }
    if (draft) {
        s->dmodel = draft;
        s->d_vocab = aero_model_hparams(draft)->n_vocab;
        int32_t tv = aero_tokenizer_n_vocab(aero_model_tokenizer(tm)),
                dv = aero_tokenizer_n_vocab(aero_model_tokenizer(draft));
        s->n_shared = tv < dv ? tv : dv;
        if (s->d_vocab < s->n_shared) s->n_shared = s->d_vocab;
        if (s->n_vocab < s->n_shared) s->n_shared = s->n_vocab;
        aero_ctx_params cp = {.n_ctx = s->n_ctx + nm + 1, .n_seq = 1, .n_batch = s->p.n_batch};
        if (aero_ctx_new(&s->dctx, draft, &cp, err)) {
            aero_error_prefix(err, "draft model: ");
            goto fail;
        }
        aero_sampler_params dp = p->sampling;
        dp.repeat_penalty = 1, dp.presence_penalty = 0, dp.frequency_penalty = 0;
        dp.seed = p->sampling.seed * 0x9e3779b97f4a7c15ull + 0x5bd1e995; // a stream apart from the target's
        s->dsmp = aero_sampler_new(&dp, s->n_shared);
        s->dlogits = malloc(sizeof(float) * (size_t)nm * s->d_vocab);
        s->qtmp = malloc(sizeof(float) * s->n_vocab);
        s->top_tok = malloc(sizeof(int32_t) * (size_t)nm * s->top_b);
        s->top_q = malloc(sizeof(float) * (size_t)nm * s->top_b);
        s->n_top = calloc(nm, sizeof(int));
        if (p->tree_nodes == 0) s->qbuf = malloc(sizeof(float) * (size_t)p->draft_max * s->n_vocab);
        if (!s->dsmp || !s->dlogits || !s->qtmp || !s->top_tok || !s->top_q || !s->n_top ||
            (p->tree_nodes == 0 && !s->qbuf))
            goto oom;
    }
    s->nodes = calloc(nm, sizeof *s->nodes);
    s->tlogits = malloc(sizeof(float) * (size_t)nm * s->n_vocab);
    s->pdist = malloc(sizeof(float) * s->n_vocab);
    s->btok = malloc(sizeof(int32_t) * nb);
    s->bpos = malloc(sizeof(int32_t) * nb);
    s->bwant = malloc(nb);
    s->bmask = malloc((size_t)nb * nb);
    s->keep = malloc(sizeof(int) * nm);
    s->fed = malloc(sizeof(int) * nm);
    s->cap_tok = s->n_ctx + nm + 2;
    s->toks = malloc(sizeof(int32_t) * s->cap_tok);
    if (!s->nodes || !s->tlogits || !s->pdist || !s->btok || !s->bpos || !s->bwant || !s->bmask || !s->keep ||
        !s->fed || !s->toks)
        goto oom;
    *out = s;
    return AERO_OK;
oom:
    aero_fail(err, AERO_ERR_NOMEM, "out of memory for the speculative decoder (%d draft nodes, vocabulary %d)",
              s->max_nodes, s->n_vocab);
fail:
    aero_spec_free(s);
    return err->code;
}

aero_status aero_spec_new(aero_spec **out, aero_ctx *target, int seq, aero_model *draft, const aero_spec_params *p,
                          aero_error *err) {
    return spec_new(out, target, seq, draft, p, NULL, err);
}

aero_status aero_spec_new_like(aero_spec **out, const aero_spec *like, int seq, const aero_spec_params *p,
                               aero_error *err) {
    return spec_new(out, like->tctx, seq, like->dmodel, p, p->draft_head ? like->head : NULL, err);
}

void aero_spec_free(aero_spec *s) {
    if (!s) return;
    aero_ctx_free(s->dctx);
    aero_spec_head_free(s->head);
    free(s->hfeat);
    free(s->hroot);
    free(s->nfeat);
    free(s->ncell);
    aero_sampler_free(s->dsmp);
    free(s->toks);
    free(s->nodes);
    free(s->qbuf);
    free(s->qtmp);
    free(s->dlogits);
    free(s->top_tok);
    free(s->top_q);
    free(s->n_top);
    free(s->tlogits);
    free(s->pdist);
    free(s->btok);
    free(s->bpos);
    free(s->bmask);
    free(s->bwant);
    free(s->keep);
    free(s->fed);
    free(s);
}

// Feeds toks[*len, upto) to a context in one pass without logits (one read of a streamed target, whatever
// the prompt's length); counts it and its cost.
static aero_status prefill(aero_spec *s, aero_ctx *c, int seq, int *len, int upto, bool target, aero_error *err) {
    int n = upto - *len;
    if (n <= 0) return AERO_OK;
    int nv = aero_model_hparams(aero_ctx_model(c))->n_vocab;
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)n);
    if (!tok) return aero_fail(err, AERO_ERR_NOMEM, "out of memory for a prompt of %d tokens", n);
    for (int i = 0; i < n; i++) tok[i] = s->toks[*len + i] < nv ? s->toks[*len + i] : 0;
    double t0 = aero_now();
    aero_status st = aero_prefill(c, seq, tok, n, *len, 0, NULL, err);
    double dt = aero_now() - t0;
    free(tok);
    if (st) return target ? st : aero_error_prefix(err, "draft model: ");
    if (target) {
        s->st.prefill_passes++;
        if (n <= 4 * (s->max_nodes + 1)) aero_spec_fit_add(&s->fit, n, dt);
    }
    *len += n;
    return AERO_OK;
}

// Copies the target's last hidden states of batch rows [row0, row0 + n) of the pass just run to committed
// positions pos0.. (the draft head's inputs).
static aero_status keep_hidden(aero_spec *s, int row0, int pos0, int n, aero_error *err) {
    int d = aero_model_n_embd(s->tmodel);
    for (int i = 0; i < n; i++)
        if (aero_ctx_hidden(s->tctx, row0 + i, s->hfeat + (size_t)(pos0 + i) * d, err))
            return aero_error_prefix(err, "draft head: ");
    return AERO_OK;
}

aero_status aero_spec_begin(aero_spec *s, const int32_t *prompt, int n, int n_predict, aero_error *err) {
    if (n < 1) return aero_fail(err, AERO_ERR_INVALID, "speculative decoding needs at least one prompt token");
    if (n > s->n_ctx)
        return aero_fail(err, AERO_ERR_RANGE, "the prompt has %d tokens, more than the context size %d", n, s->n_ctx);
    for (int i = 0; i < n; i++)
        if (prompt[i] < 0 || prompt[i] >= s->n_vocab)
            return aero_fail(err, AERO_ERR_INVALID, "prompt token %d: id %d not in the vocabulary [0, %d)", i,
                             prompt[i], s->n_vocab);
    if (s->dmodel) {
        long need = (long)n + (n_predict > 0 ? n_predict : 0);
        if (need > s->n_ctx) need = s->n_ctx;
        int have = aero_model_hparams(s->dmodel)->n_ctx_train;
        if (have < need)
            return aero_fail(
                err, AERO_ERR_INVALID,
                "draft model: its context is %d tokens, shorter than the %ld this request needs (%d prompt "
                "+ %d to generate, target context %d)",
                have, need, n, n_predict, s->n_ctx);
    }
    memset(&s->st, 0, sizeof s->st);
    memcpy(s->toks, prompt, sizeof(int32_t) * n);
    s->n_tok = n;
    s->t_len = s->d_len = s->n_fed = 0;
    aero_kv_drop(s->tctx, s->seq);
    if (s->dctx) aero_kv_drop(s->dctx, 0);
    if (s->head) aero_spec_head_truncate(s->head, 0);
    double t0 = aero_now();
    // the prompt's last chunk (1..n_batch tokens) goes with the first draft: that pass also verifies it. A draft
    // head needs the target's hidden states of every committed token but the last before it can draft, so with
    // one the prompt but its last token is prefilled and its hidden states kept.
    int upto = s->head ? n - 1 : n - 1 - (n - 1) % s->p.n_batch;
    aero_status st = prefill(s, s->tctx, s->seq, &s->t_len, upto, true, err);
    if (!st && s->head) st = keep_hidden(s, 0, 0, upto, err);
    if (!st && s->dctx) st = prefill(s, s->dctx, 0, &s->d_len, n - 1, false, err);
    s->st.prefill_s = aero_now() - t0;
    if (st) {
        aero_kv_drop(s->tctx, s->seq);
        if (s->dctx) aero_kv_drop(s->dctx, 0);
        s->n_tok = s->t_len = s->d_len = 0;
    }
    return st;
}

// Expected tokens a verify pass yields when each drafted token survives with probability alpha: 1 + a + ... + a^k.
static double expected_tokens(double alpha, int k) {
    double e = 0, t = 1;
    for (int i = 0; i <= k; i++, t *= alpha) e += t;
    return e;
}

// The chain length with the most tokens per second under the measured costs: a verify pass of n tokens takes
// a + b n (fitted), a drafter step d (a model drafter runs k steps for k tokens; n-grams cost ~nothing). Zero
// (plain decoding) wins when drafts are rarely accepted; then every PROBE_EVERY-th step still drafts, so the
// acceptance estimate can recover when the text becomes predictable.
static int choose_length(aero_spec *s) {
    int kmax = s->p.draft_max, kmin = s->p.draft_min;
    if (!s->p.adaptive || s->fit.w <= 0) return kmax;
    double a, b, alpha = s->acc_w / (s->acc_w + s->rej_w), d = s->dmodel ? s->draft_call_ema : 0;
    if (alpha > 0.99) alpha = 0.99;
    aero_spec_fit_get(&s->fit, &a, &b);
    int best = kmin, best_drafting = kmin > 1 ? kmin : 1;
    double best_rate = -1, best_drafting_rate = -1;
    for (int k = kmin; k <= kmax; k++) {
        double rate = expected_tokens(alpha, k) / (a + b * (k + 1) + d * k + 1e-9);
        if (rate > best_rate * (1 + 1e-9)) best_rate = rate, best = k;
        if (k > 0 && rate > best_drafting_rate * (1 + 1e-9)) best_drafting_rate = rate, best_drafting = k;
    }
    if (best > 0) {
        s->skipped = 0;
        return best;
    }
    if (++s->skipped < PROBE_EVERY) return 0;
    s->skipped = 0;
    return best_drafting;
}

// Adaptive trees: keeps the prefix of the drafted nodes (parents come first, so any prefix is a tree) with the
// most expected tokens per second. Node i is accepted with probability about c * P_i, P_i the drafter's path
// probability and c its measured calibration (accepted nodes / summed P of verified nodes); a pass of n tokens
// costs a + b n. Sets the next tree's size to twice what was kept, so drafting effort follows what pays.
static void prune_tree(aero_spec *s) {
    if (!s->p.adaptive || s->fit.w <= 0 || s->n_nodes == 0) return;
    double a, b, c = (s->tree_acc_w + 1) / (s->tree_p_w + 1), e = 1, best_rate = 0;
    aero_spec_fit_get(&s->fit, &a, &b);
    int best = 0;
    for (int m = 0; m <= s->n_nodes; m++) {
        if (m > 0) e += c * exp(s->nodes[m - 1].logp);
        double rate = e / (a + b * (m + 1) + 1e-9);
        if (rate > best_rate * (1 + 1e-9)) best_rate = rate, best = m;
    }
    s->n_nodes = best;
    s->tree_cap = 2 * best > 8 ? 2 * best : 8;
}

// The COST policy with a draft head, which drafts its tree in a few cheap waves: keeps the prefix of the nodes
// (best first, so every prefix is a tree) with the most expected tokens per unit of cost, the verify pass priced
// by the measured curve and the step's drafting time added.
static void prune_cost(aero_spec *s, double draft_time) {
    double e = 1, best_e = 1, best_rate = -1;
    int best = 0;
    for (int m = 0; m <= s->n_nodes; m++) {
        if (m > 0) e += aero_spec_path_accept(s, s->nodes[m - 1].logp);
        double rate = e / (aero_spec_verify_cost(s, m + 1) + draft_time + 1e-12);
        if (rate > best_rate * (1 + 1e-9)) best_rate = rate, best = m, best_e = e;
    }
    s->n_nodes = best;
    s->st.tree_expected = best_e;
}

// Counts a target pass that verified a draft: its tokens and time, and a sample of the pass-cost fit.
static void count_pass(aero_spec *s, int n, double dt, bool fit) {
    s->st.verify_s += dt;
    s->st.verify_passes++;
    s->st.verify_tokens += n;
    if (fit) {
        aero_spec_fit_add(&s->fit, n, dt);
        curve_add(&s->curve, n, dt);
    }
}

// Walks the drafted nodes from the root over the target's rows tl (the root's, then one per node), keeping
// those the acceptance rule allows; removes the rest from both caches and commits the output.
static void walk(aero_spec *s, aero_sampler *smp, const float *tl, int32_t *out, int *n_out) {
    bool greedy = aero_sampler_is_greedy(smp);
    double t0 = aero_now();
    int m = 0, cur = -1, children[MAX_TREE_NODES];
    for (;;) {
        const float *lg = tl + (size_t)(cur + 1) * s->n_vocab;
        int nc = 0;
        for (int c = cur < 0 ? s->root_child : s->nodes[cur].first_child; c >= 0; c = s->nodes[c].next_sibling)
            children[nc++] = c;
        int pick = -1;
        int32_t tok;
        if (greedy) {
            tok = aero_sampler_sample(smp, lg);
            for (int i = 0; i < nc && pick < 0; i++)
                if (s->nodes[children[i]].token == tok) pick = i;
        } else {
            aero_sampler_probs(smp, lg, s->pdist);
            pick = aero_spec_accept(s->pdist, s->n_vocab, s->nodes, children, nc, s->p.rule, smp, &tok);
        }
        if (pick >= 0) tok = s->nodes[children[pick]].token;
        aero_sampler_accept(smp, tok);
        out[m] = tok;
        if (pick < 0) break;
        cur = children[pick];
        s->keep[m++] = cur;
    }
    s->st.accept_s += aero_now() - t0;
    *n_out = m + 1;
    // the accepted path stays in the target cache, right after the root; the rest goes
    aero_kv_keep(s->tctx, s->seq, s->n_tok, s->keep, m);
    if (s->dctx) {
        // the drafter cached some drafted nodes in order (a chain, a tree's spine): those on the accepted path
        // stay valid
        int valid = 0;
        while (valid < s->n_fed && valid < m && s->fed[valid] == s->keep[valid]) valid++;
        s->d_len = s->n_tok + valid;
        aero_kv_truncate(s->dctx, 0, s->d_len);
        s->n_fed = 0;
    } else if (s->head) {
        // the head's entries of drafted tokens were computed from its own predicted features: the accepted ones
        // are fed again with the target's hidden states
        if (s->d_len > s->n_tok) s->d_len = s->n_tok;
        aero_spec_head_truncate(s->head, s->d_len - 1);
    }
    if (s->p.tree_nodes > 0 && s->dmodel) count_expansions(s, m);
    if (s->p.tree_nodes > 0) {
        double psum = 0;
        for (int i = 0; i < s->n_nodes; i++) psum += exp(s->nodes[i].logp);
        s->tree_acc_w = s->tree_acc_w * ACC_DECAY + m;
        s->tree_p_w = s->tree_p_w * ACC_DECAY + psum;
    } else {
        s->acc_w = s->acc_w * ACC_DECAY + m;
        s->rej_w = s->rej_w * ACC_DECAY + (m < s->n_nodes ? 1 : 0);
    }
    s->st.drafted += s->n_nodes;
    s->st.accepted += m;
    s->st.generated += m + 1;
    memcpy(s->toks + s->n_tok, out, sizeof(int32_t) * (m + 1));
    s->n_tok += m + 1;
    s->t_len = s->n_tok - 1;
}

// Verifies the drafted nodes in one target pass and walks them; returns the tokens produced.
static aero_status verify(aero_spec *s, aero_sampler *smp, int32_t *out, int *n_out, aero_error *err) {
    // the batch: the committed tokens the target has not seen (the last one; after begin, the prompt's last
    // chunk), then the drafted nodes
    int np = s->n_tok - s->t_len, n = np + s->n_nodes;
    bool linear = true;
    for (int i = 0; i < np; i++) {
        s->btok[i] = s->toks[s->t_len + i];
        s->bpos[i] = s->t_len + i;
        s->bwant[i] = i == np - 1;
    }
    for (int i = 0; i < s->n_nodes; i++) {
        s->btok[np + i] = s->nodes[i].token;
        s->bpos[np + i] = s->n_tok - 1 + s->nodes[i].depth;
        s->bwant[np + i] = 1;
        linear &= s->nodes[i].parent == i - 1;
    }
    if (!linear) {
        memset(s->bmask, 0, (size_t)n * n);
        for (int i = 0; i < n; i++) {
            uint8_t *row = s->bmask + (size_t)i * n;
            for (int j = 0; j < np && j <= i; j++) row[j] = 1;
            if (i >= np)
                for (int j = i - np; j >= 0; j = s->nodes[j].parent) row[np + j] = 1;
        }
    }
    aero_batch b = {
        .n = n, .tokens = s->btok, .pos = s->bpos, .mask = linear ? NULL : s->bmask, .want_logits = s->bwant};
    double t0 = aero_now();
    aero_status st = aero_decode(s->tctx, &b, s->tlogits, err);
    double dt = aero_now() - t0;
    if (st) return st;
    count_pass(s, n, dt, n <= 4 * (s->max_nodes + 1));
    int t_len = s->t_len, n_tok = s->n_tok;
    walk(s, smp, s->tlogits, out, n_out);
    if (s->head) {
        // the hidden states of the tokens now committed: the pass's committed rows, then the accepted nodes'
        if ((st = keep_hidden(s, 0, t_len, np, err))) return st;
        for (int j = 0; j < *n_out - 1; j++)
            if ((st = keep_hidden(s, np + s->keep[j], n_tok + j, 1, err))) return st;
    }
    return AERO_OK;
}

// Drafts the next round's nodes (a chain or a tree within the context and max_new - 1 tokens).
static aero_status draft_round(aero_spec *s, aero_sampler *smp, int max_new, aero_error *err) {
    s->n_nodes = 0;
    s->root_child = -1;
    if (s->n_tok < 1) return aero_fail(err, AERO_ERR_INVALID, "speculative decoding: aero_spec_begin was not called");
    if (s->n_tok > s->n_ctx)
        return aero_fail(err, AERO_ERR_RANGE, "context full: %d tokens fill the context size %d", s->n_tok - 1,
                         s->n_ctx);
    if (max_new < 1) return aero_fail(err, AERO_ERR_INVALID, "speculative step asked for %d tokens", max_new);
    bool greedy = aero_sampler_is_greedy(smp);
    // drafted tokens occupy target slots n_tok .. and are at most max_new - 1 (the pass adds one of its own)
    int budget = s->n_ctx - s->n_tok;
    if (budget > max_new - 1) budget = max_new - 1;
    int depth = s->p.draft_max < budget ? s->p.draft_max : budget;
    int tree = s->p.tree_nodes < budget ? s->p.tree_nodes : budget;
    if (s->p.adaptive && s->tree_cap > 0 && s->tree_cap < tree) tree = s->tree_cap;
    double t0 = aero_now();
    aero_status st = AERO_OK;
    if (s->head && s->p.tree_nodes == 0) {
        int k = choose_length(s);
        s->st.draft_len = k;
        if (k > budget) k = budget;
        st = aero_spec_draft_head(s, greedy, k, k, 1, err);
    } else if (s->head) {
        bool cost = s->p.tree_policy == AERO_SPEC_TREE_COST;
        int cap = tree;
        if (cost) { // as for a draft model: the budget, within twice the largest pass timed
            int known = 2 * s->curve.n_max;
            cap = s->p.tree_nodes < budget ? s->p.tree_nodes : budget;
            if (!s->p.cost_fixed && cap > known) cap = known > (cap < 16 ? cap : 16) ? known : (cap < 16 ? cap : 16);
        }
        st = aero_spec_draft_head(s, greedy, cap, depth, s->top_b, err);
        if (!st && cost) prune_cost(s, s->p.cost_fixed ? s->p.cost_draft_token * s->n_nodes : aero_now() - t0);
        else if (!st) prune_tree(s);
        s->st.draft_len = s->n_nodes;
    } else if (s->p.tree_nodes > 0 && s->dmodel && s->p.tree_policy == AERO_SPEC_TREE_COST) {
        // the whole budget, but not beyond twice the largest pass timed: the curve is known only that far
        int cap = s->p.tree_nodes < budget ? s->p.tree_nodes : budget, known = 2 * s->curve.n_max,
            least = cap < 16 ? cap : 16;
        if (!s->p.cost_fixed && cap > known) cap = known > least ? known : least;
        st = aero_spec_draft_tree_cost(s, greedy, cap, depth, err);
        s->st.draft_len = s->n_nodes;
    } else if (s->p.tree_nodes > 0) {
        if (s->dmodel) st = aero_spec_draft_tree(s, greedy, tree, depth, err);
        else aero_spec_draft_ngram(s, true, tree, depth);
        if (!st) prune_tree(s);
        s->st.draft_len = s->n_nodes;
    } else {
        int k = choose_length(s);
        s->st.draft_len = k;
        if (k > budget) k = budget;
        if (s->dmodel) st = aero_spec_draft_chain(s, greedy, k, err);
        else aero_spec_draft_ngram(s, false, k, k);
    }
    s->st.draft_s += aero_now() - t0;
    if (st) {
        // a failed drafter pass leaves its cache unknown: start it again from the committed tokens
        if (s->dctx) aero_kv_drop(s->dctx, 0);
        if (s->head) aero_spec_head_truncate(s->head, 0);
        s->d_len = s->n_fed = 0;
        return st;
    }
    aero_spec_link_children(s);
    return AERO_OK;
}

aero_status aero_spec_step(aero_spec *s, aero_sampler *smp, int max_new, int32_t *out, int *n_out, aero_error *err) {
    *n_out = 0;
    aero_status st = draft_round(s, smp, max_new, err);
    return st ? st : verify(s, smp, out, n_out, err);
}

aero_status aero_spec_resume(aero_spec *s, const int32_t *toks, int n, aero_error *err) {
    if (n < 1 || n > s->n_ctx)
        return aero_fail(err, AERO_ERR_RANGE, "speculative resume: %d tokens for a context of %d", n, s->n_ctx);
    for (int i = 0; i < n; i++)
        if (toks[i] < 0 || toks[i] >= s->n_vocab)
            return aero_fail(err, AERO_ERR_INVALID, "token %d: id %d not in the vocabulary [0, %d)", i, toks[i],
                             s->n_vocab);
    if (s->dmodel && aero_model_hparams(s->dmodel)->n_ctx_train < s->n_ctx)
        return aero_fail(err, AERO_ERR_INVALID, "draft model: its context is %d tokens, shorter than the target's %d",
                         aero_model_hparams(s->dmodel)->n_ctx_train, s->n_ctx);
    // a draft head keeps its cells of the tokens still committed (catch_up refeeds the rest); its features are
    // those aero_spec_observe and aero_spec_commit recorded by position
    int same = 0;
    while (s->head && same < s->n_tok && same < n && s->toks[same] == toks[same]) same++;
    memset(&s->st, 0, sizeof s->st);
    memcpy(s->toks, toks, sizeof(int32_t) * n);
    s->n_tok = n;
    s->t_len = n - 1;
    s->d_len = s->head && s->d_len < same ? s->d_len : s->head ? same : 0;
    s->n_fed = s->n_nodes = 0;
    if (s->dctx) aero_kv_drop(s->dctx, 0);
    return AERO_OK;
}

void aero_spec_observe(aero_spec *s, int row, int pos, int n) {
    if (!s->head || pos < 0 || pos + n > s->cap_tok) return;
    aero_error err = {0};
    // a failure leaves that position's feature as it was: the drafts get worse, the output stays the target's
    keep_hidden(s, row, pos, n, &err);
}

aero_status aero_spec_draft(aero_spec *s, aero_sampler *smp, int max_new, int *n_nodes, aero_error *err) {
    *n_nodes = 0;
    if (s->n_tok < 1 || s->t_len != s->n_tok - 1)
        return aero_fail(err, AERO_ERR_INVALID, "speculative draft: aero_spec_resume was not called");
    aero_status st = draft_round(s, smp, max_new, err);
    if (!st) *n_nodes = s->n_nodes;
    return st;
}

void aero_spec_node(const aero_spec *s, int i, int32_t *token, int *parent, int *depth) {
    *token = s->nodes[i].token;
    *parent = s->nodes[i].parent;
    *depth = s->nodes[i].depth;
}

void aero_spec_commit(aero_spec *s, aero_sampler *smp, const float *rows, int root_row, double fit_tokens,
                      double fit_s, int32_t *out, int *n_out) {
    count_pass(s, 1 + s->n_nodes, fit_s, false);
    if (fit_tokens > 0) {
        aero_spec_fit_add(&s->fit, fit_tokens, fit_s);
        curve_add(&s->curve, fit_tokens, fit_s);
    }
    int root_pos = s->n_tok - 1;
    walk(s, smp, rows, out, n_out);
    // a draft head's features of the tokens now committed: the root's row, then the accepted nodes'
    aero_spec_observe(s, root_row, root_pos, 1);
    for (int j = 0; j < *n_out - 1; j++) aero_spec_observe(s, root_row + 1 + s->keep[j], root_pos + 1 + j, 1);
}

int aero_spec_n_tokens(const aero_spec *s) { return s->n_tok; }

int aero_spec_max_step_tokens(const aero_spec *s) {
    return (s->p.tree_nodes > s->p.draft_max ? s->p.tree_nodes : s->p.draft_max) + 1;
}

void aero_spec_get_stats(const aero_spec *s, aero_spec_stats *st) {
    *st = s->st;
    st->alpha = s->acc_w / (s->acc_w + s->rej_w);
    aero_spec_fit_get(&s->fit, &st->pass_a, &st->pass_b);
    st->draft_call_s = s->draft_call_ema;
}

aero_status aero_spec_time_pass(aero_spec *s, int n, double *secs, aero_error *err) {
    if (s->n_tok < 1) return aero_fail(err, AERO_ERR_INVALID, "speculative decoding: aero_spec_begin was not called");
    if (n < 1 || s->t_len + n > s->n_ctx)
        return aero_fail(err, AERO_ERR_RANGE,
                         "a timing pass of %d tokens does not fit: %d of %d context slots are used", n, s->t_len,
                         s->n_ctx);
    int32_t *tok = malloc(sizeof(int32_t) * n), *pos = malloc(sizeof(int32_t) * n);
    uint8_t *want = calloc(n, 1);
    float *logits = malloc(sizeof(float) * s->n_vocab);
    aero_status st = AERO_OK;
    if (!tok || !pos || !want || !logits) {
        st = aero_fail(err, AERO_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) tok[i] = s->toks[s->n_tok - 1], pos[i] = s->t_len + i;
    want[n - 1] = 1;
    aero_batch b = {.n = n, .tokens = tok, .pos = pos, .want_logits = want};
    double t0 = aero_now();
    st = aero_decode(s->tctx, &b, logits, err);
    *secs = aero_now() - t0;
    aero_kv_truncate(s->tctx, s->seq, s->t_len);
done:
    free(tok);
    free(pos);
    free(want);
    free(logits);
    return st;
}

void aero_spec_describe(const aero_spec *s, char *buf, int cap) {
    const char *who = aero_spec_head_on_gpu(s->head) ? "draft head (layer on the GPU)"
                      : s->head                      ? "draft head"
                      : s->dmodel                    ? "draft model"
                                                     : "n-gram prompt lookup";
    if (s->p.tree_nodes > 0 && (s->dmodel || s->head) && s->p.tree_policy == AERO_SPEC_TREE_COST)
        snprintf(buf, cap, "%s, tree grown by cost (up to %d nodes, depth <= %d, %s costs)", who, s->p.tree_nodes,
                 s->p.draft_max, s->p.cost_fixed ? "fixed" : "measured");
    else if (s->p.tree_nodes > 0)
        snprintf(buf, cap, "%s, tree of up to %d nodes%s, depth <= %d", who, s->p.tree_nodes,
                 s->p.adaptive ? " (adaptive)" : "", s->p.draft_max);
    else {
        const char *dev = s->head && aero_spec_head_devchain(s, !(s->sp.temp > 0)) ? ", drafted on the device" : "";
        if (s->p.adaptive)
            snprintf(buf, cap, "%s, chain, adaptive length %d..%d%s", who, s->p.draft_min, s->p.draft_max, dev);
        else snprintf(buf, cap, "%s, chain of %d%s", who, s->p.draft_max, dev);
    }
}
