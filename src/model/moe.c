// Mixture-of-experts FFN over a chunk of tokens; see moe.h for the contract and docs/moe.md for the
// reference conventions (llama.cpp's build_moe_ffn) it follows.
#include "moe.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct aero_moe_work {
    aero_moe_params p;
    int max_tokens;
    int n;          // tokens of the last routing
    float *logits;  // [max_tokens][n_expert]
    int *ids;       // [max_tokens][k], rank order
    float *wts;     // [max_tokens][k]
    float *scratch; // [2 * n_expert]
    int *count;     // [n_expert]: tokens routed to each expert
    int *offs;      // [n_expert + 1]: start of each expert's token list in tok/tokw
    int *tok;       // [max_tokens * k]: token indices grouped by expert, ascending within a group
    float *tokw;    // [max_tokens * k]: the matching weights
    int *used;      // [n_expert]: experts with at least one token, ascending
    float *xg;      // [max_tokens][n_embd]: gathered inputs of one expert
    float *hg, *hu; // [max_tokens][max(n_ff_exp, n_ff_shexp)]
    float *yd;      // [max_tokens][n_embd]: one expert's outputs
    float *sg;      // [max_tokens]: shared-expert gate logits
};

aero_wmat aero_moe_slice(const void *merged, aero_dtype type, int64_t cols, int64_t rows_per_expert, int expert) {
    size_t rb = aero_dtype_row_bytes(type, (uint64_t)cols);
    return (aero_wmat){
        .data = (const uint8_t *)merged + (size_t)expert * (size_t)rows_per_expert * rb,
        .type = type,
        .cols = cols,
        .rows = rows_per_expert,
        .row_bytes = rb,
    };
}

// Resident merged tensors need no IO: an expert is three pointer offsets.
aero_status aero_moe_merged_get(void *ctx, int layer, int expert, aero_wmat w[3], aero_error *err) {
    const aero_moe_merged *m = (const aero_moe_merged *)ctx + layer;
    if (!m->data[0] || !m->data[1] || !m->data[2])
        return aero_fail(err, AERO_ERR_INVALID, "layer %d: no merged expert tensors", layer);
    w[AERO_MOE_GATE] = aero_moe_slice(m->data[0], m->type[0], m->n_embd, m->n_ff_exp, expert);
    w[AERO_MOE_UP] = aero_moe_slice(m->data[1], m->type[1], m->n_embd, m->n_ff_exp, expert);
    w[AERO_MOE_DOWN] = aero_moe_slice(m->data[2], m->type[2], m->n_ff_exp, m->n_embd, expert);
    return AERO_OK;
}

// Rejects parameter sets the routing cannot satisfy, so a malformed GGUF fails at load, not mid-pass.
aero_status aero_moe_params_check(const aero_moe_params *p, aero_error *err) {
    if (p->n_embd <= 0 || p->n_ff_exp <= 0 || p->n_ff_shexp < 0)
        return aero_fail(err, AERO_ERR_FORMAT, "moe: bad sizes (n_embd %d, n_ff_exp %d, n_ff_shexp %d)", p->n_embd,
                         p->n_ff_exp, p->n_ff_shexp);
    if (p->n_expert <= 0 || p->n_expert > 4096 || p->n_expert_used <= 0 || p->n_expert_used > p->n_expert)
        return aero_fail(err, AERO_ERR_FORMAT, "moe: expert_used_count %d with expert_count %d", p->n_expert_used,
                         p->n_expert);
    if (p->gating != AERO_MOE_GATING_SOFTMAX && p->gating != AERO_MOE_GATING_SIGMOID &&
        p->gating != AERO_MOE_GATING_SOFTMAX_WEIGHT)
        return aero_fail(err, AERO_ERR_UNSUPPORTED, "moe: expert_gating_func %d", (int)p->gating);
    if (!isfinite(p->w_scale)) return aero_fail(err, AERO_ERR_FORMAT, "moe: expert_weights_scale is not finite");
    if (p->n_group > 1) {
        if (p->n_group > 256)
            return aero_fail(err, AERO_ERR_UNSUPPORTED, "moe: %d expert groups (at most 256)", p->n_group);
        if (p->n_expert % p->n_group != 0)
            return aero_fail(err, AERO_ERR_FORMAT, "moe: %d experts do not split into %d groups", p->n_expert,
                             p->n_group);
        int per = p->n_expert / p->n_group;
        if (p->n_group_used <= 0 || p->n_group_used > p->n_group || p->n_expert_used > p->n_group_used * per)
            return aero_fail(err, AERO_ERR_FORMAT,
                             "moe: expert_group_used_count %d of %d groups cannot hold %d experts", p->n_group_used,
                             p->n_group, p->n_expert_used);
    }
    return AERO_OK;
}

void aero_moe_work_free(aero_moe_work *w) {
    if (!w) return;
    free(w->logits);
    free(w->ids);
    free(w->wts);
    free(w->scratch);
    free(w->count);
    free(w->offs);
    free(w->tok);
    free(w->tokw);
    free(w->used);
    free(w->xg);
    free(w->hg);
    free(w->hu);
    free(w->yd);
    free(w->sg);
    free(w);
}

aero_moe_work *aero_moe_work_new(const aero_moe_params *p, int max_tokens) {
    aero_error e;
    if (max_tokens <= 0 || aero_moe_params_check(p, &e) != AERO_OK) return NULL;
    aero_moe_work *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->p = *p;
    w->max_tokens = max_tokens;
    size_t T = (size_t)max_tokens, E = (size_t)p->n_expert, K = (size_t)p->n_expert_used, D = (size_t)p->n_embd;
    size_t F = (size_t)(p->n_ff_exp > p->n_ff_shexp ? p->n_ff_exp : p->n_ff_shexp);
    w->logits = malloc(T * E * sizeof(float));
    w->ids = malloc(T * K * sizeof(int));
    w->wts = malloc(T * K * sizeof(float));
    w->scratch = malloc(2 * E * sizeof(float));
    w->count = malloc(E * sizeof(int));
    w->offs = malloc((E + 1) * sizeof(int));
    w->tok = malloc(T * K * sizeof(int));
    w->tokw = malloc(T * K * sizeof(float));
    w->used = malloc(E * sizeof(int));
    w->xg = malloc(T * D * sizeof(float));
    w->hg = malloc(T * F * sizeof(float));
    w->hu = malloc(T * F * sizeof(float));
    w->yd = malloc(T * D * sizeof(float));
    w->sg = malloc(T * sizeof(float));
    if (!w->logits || !w->ids || !w->wts || !w->scratch || !w->count || !w->offs || !w->tok || !w->tokw || !w->used ||
        !w->xg || !w->hg || !w->hu || !w->yd || !w->sg) {
        aero_moe_work_free(w);
        return NULL;
    }
    return w;
}

const int *aero_moe_work_ids(const aero_moe_work *w) { return w->ids; }
const float *aero_moe_work_weights(const aero_moe_work *w) { return w->wts; }

// Index of the best candidate: highest value, the lower id on ties (the scan is ascending, so only a
// strictly greater value replaces the current best). NaN marks an excluded candidate.
static int argmax_first(const float *v, int begin, int end) {
    int best = -1;
    for (int e = begin; e < end; e++) {
        if (isnan(v[e])) continue;
        if (best < 0 || v[e] > v[best]) best = e;
    }
    return best;
}

// The routing of llama.cpp's build_moe_ffn for one token: probabilities, biased selection scores, group
// mask, top-k, then weights from the unbiased probabilities, optionally normalised and scaled.
void aero_moe_route_one(const aero_moe_params *p, const float *logits, const float *probs_bias, float *scratch,
                        int *ids, float *weights) {
    int E = p->n_expert, K = p->n_expert_used;
    float *prob = scratch, *sel = scratch + E;
    switch (p->gating) {
    case AERO_MOE_GATING_SIGMOID:
        for (int e = 0; e < E; e++) prob[e] = 1.0f / (1.0f + expf(-logits[e]));
        break;
    case AERO_MOE_GATING_SOFTMAX_WEIGHT:
        for (int e = 0; e < E; e++) prob[e] = logits[e];
        break;
    default: { // softmax, the sum in double as ggml's soft_max does
        float mx = -INFINITY;
        for (int e = 0; e < E; e++)
            if (logits[e] > mx) mx = logits[e];
        double sum = 0;
        for (int e = 0; e < E; e++) {
            prob[e] = expf(logits[e] - mx);
            sum += prob[e];
        }
        float inv = (float)(1.0 / sum);
        for (int e = 0; e < E; e++) prob[e] *= inv;
    }
    }
    for (int e = 0; e < E; e++) {
        float s = prob[e] + (probs_bias ? probs_bias[e] : 0.0f);
        sel[e] = isnan(s) ? -INFINITY : s;
    }
    if (p->n_group > 1) {
        // A group's score is the sum of its two best selection scores; the n_group_used best groups stay.
        int per = E / p->n_group;
        float gscore[256];
        int G = p->n_group; // <= 256 (aero_moe_params_check)
        for (int g = 0; g < G; g++) {
            int a = argmax_first(sel, g * per, (g + 1) * per);
            float sa = sel[a], s2 = 0.0f;
            if (per >= 2) {
                sel[a] = NAN;
                int b = argmax_first(sel, g * per, (g + 1) * per);
                s2 = sel[b];
                sel[a] = sa;
            }
            gscore[g] = sa + s2;
        }
        bool keep[256] = {false};
        for (int r = 0; r < p->n_group_used; r++) {
            int g = argmax_first(gscore, 0, G);
            keep[g] = true;
            gscore[g] = NAN;
        }
        for (int g = 0; g < G; g++)
            if (!keep[g])
                for (int e = g * per; e < (g + 1) * per; e++) sel[e] = NAN;
    }
    for (int r = 0; r < K; r++) {
        int e = argmax_first(sel, 0, E);
        if (e < 0) e = 0; // unreachable after aero_moe_params_check
        ids[r] = e;
        weights[r] = prob[e];
        sel[e] = NAN;
    }
    if (p->gating == AERO_MOE_GATING_SOFTMAX_WEIGHT) {
        float mx = weights[0];
        for (int r = 1; r < K; r++)
            if (weights[r] > mx) mx = weights[r];
        double sum = 0;
        for (int r = 0; r < K; r++) {
            weights[r] = expf(weights[r] - mx);
            sum += weights[r];
        }
        float inv = (float)(1.0 / sum);
        for (int r = 0; r < K; r++) weights[r] *= inv;
    }
    if (p->norm_w) {
        float sum = 0;
        for (int r = 0; r < K; r++) sum += weights[r];
        if (!(sum >= 6.103515625e-5f)) sum = 6.103515625e-5f; // llama.cpp clamps to the smallest normal f16
        for (int r = 0; r < K; r++) weights[r] /= sum;
    }
    if (p->w_scale != 0.0f && p->w_scale != 1.0f)
        for (int r = 0; r < K; r++) weights[r] *= p->w_scale;
}

aero_status aero_moe_route(aero_pool *pool, const aero_moe_params *p, const aero_moe_layer *L, const float *x, int n,
                           aero_moe_work *w, aero_error *err) {
    if (n <= 0 || n > w->max_tokens)
        return aero_fail(err, AERO_ERR_INVALID, "moe: %d tokens for a work sized %d", n, w->max_tokens);
    if (L->router.cols != p->n_embd || L->router.rows != p->n_expert)
        return aero_fail(err, AERO_ERR_FORMAT, "moe: router is %lldx%lld, expected %dx%d", (long long)L->router.cols,
                         (long long)L->router.rows, p->n_embd, p->n_expert);
    aero_matmul(pool, &L->router, x, n, w->logits);
    int K = p->n_expert_used;
    for (int t = 0; t < n; t++)
        aero_moe_route_one(p, w->logits + (size_t)t * p->n_expert, L->probs_bias, w->scratch, w->ids + (size_t)t * K,
                           w->wts + (size_t)t * K);
    w->n = n;
    return AERO_OK;
}

int aero_moe_work_union(const aero_moe_work *w, int *experts) {
    int E = w->p.n_expert, K = w->p.n_expert_used, nu = 0;
    memset(w->count, 0, sizeof(int) * (size_t)E);
    for (int i = 0; i < w->n * K; i++) w->count[w->ids[i]]++;
    for (int e = 0; e < E; e++)
        if (w->count[e]) experts[nu++] = e;
    return nu;
}

// silu(g) * u in place into g, the same expression as the dense FFN of forward.c.
static void swiglu(float *g, const float *u, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v = g[i];
        g[i] = v / (1.0f + expf(-v)) * u[i];
    }
}

// Checks that a source's expert has the shapes the layer needs, so a wrong tensor is an error, not zeros.
static aero_status check_expert(const aero_moe_params *p, int layer, int e, const aero_wmat w[3], aero_error *err) {
    if (w[AERO_MOE_GATE].cols != p->n_embd || w[AERO_MOE_GATE].rows != p->n_ff_exp ||
        w[AERO_MOE_UP].cols != p->n_embd || w[AERO_MOE_UP].rows != p->n_ff_exp ||
        w[AERO_MOE_DOWN].cols != p->n_ff_exp || w[AERO_MOE_DOWN].rows != p->n_embd || !w[0].data || !w[1].data ||
        !w[2].data)
        return aero_fail(err, AERO_ERR_FORMAT, "layer %d expert %d: weights missing or of the wrong shape", layer, e);
    return AERO_OK;
}

aero_status aero_moe_forward(aero_pool *pool, const aero_moe_params *p, const aero_moe_layer *L, int layer,
                             const aero_moe_source *src, const float *x, int n, float *y, aero_moe_work *w,
                             aero_error *err) {
    aero_status st = aero_moe_route(pool, p, L, x, n, w, err);
    if (st != AERO_OK) return st;
    int E = p->n_expert, K = p->n_expert_used, D = p->n_embd, F = p->n_ff_exp;

    // Group the (token, weight) pairs by expert; tokens stay ascending inside a group.
    int n_used = aero_moe_work_union(w, w->used);
    w->offs[0] = 0;
    for (int e = 0; e < E; e++) w->offs[e + 1] = w->offs[e] + w->count[e];
    memset(w->count, 0, sizeof(int) * (size_t)E);
    for (int t = 0; t < n; t++)
        for (int r = 0; r < K; r++) {
            int e = w->ids[(size_t)t * K + r];
            int at = w->offs[e] + w->count[e]++;
            w->tok[at] = t;
            w->tokw[at] = w->wts[(size_t)t * K + r];
        }

    memset(y, 0, sizeof(float) * (size_t)n * D);
    for (int done = 0; done < n_used;) {
        int n_ready = n_used - done;
        if (src->prepare) {
            st = src->prepare(src->ctx, layer, w->used + done, n_used - done, &n_ready, err);
            if (st != AERO_OK) return aero_error_prefix(err, "layer %d experts", layer);
            if (n_ready < 1 || n_ready > n_used - done)
                return aero_fail(err, AERO_ERR_INVALID, "layer %d: expert source readied %d of %d experts", layer,
                                 n_ready, n_used - done);
        }
        for (int i = done; i < done + n_ready; i++) {
            int e = w->used[i];
            aero_wmat ew[3];
            st = src->get(src->ctx, layer, e, ew, err);
            if (st == AERO_OK) st = check_expert(p, layer, e, ew, err);
            if (st != AERO_OK) {
                if (src->release) src->release(src->ctx, layer, w->used + done, n_ready);
                return st;
            }
            int m = w->offs[e + 1] - w->offs[e];
            const int *tk = w->tok + w->offs[e];
            const float *tw = w->tokw + w->offs[e];
            for (int j = 0; j < m; j++) memcpy(w->xg + (size_t)j * D, x + (size_t)tk[j] * D, sizeof(float) * D);
            aero_matmul(pool, &ew[AERO_MOE_GATE], w->xg, m, w->hg);
            aero_matmul(pool, &ew[AERO_MOE_UP], w->xg, m, w->hu);
            swiglu(w->hg, w->hu, (size_t)m * F);
            aero_matmul(pool, &ew[AERO_MOE_DOWN], w->hg, m, w->yd);
            // Experts are visited in ascending id, so each token's sum has a fixed order whatever its batch.
            for (int j = 0; j < m; j++) {
                float *yt = y + (size_t)tk[j] * D;
                const float *od = w->yd + (size_t)j * D;
                for (int d = 0; d < D; d++) yt[d] += tw[j] * od[d];
            }
        }
        if (src->release) src->release(src->ctx, layer, w->used + done, n_ready);
        done += n_ready;
    }

    if (L->sh_gate && L->sh_up && L->sh_down) {
        int FS = p->n_ff_shexp;
        if (L->sh_gate->cols != D || L->sh_gate->rows != FS || L->sh_up->cols != D || L->sh_up->rows != FS ||
            L->sh_down->cols != FS || L->sh_down->rows != D)
            return aero_fail(err, AERO_ERR_FORMAT, "layer %d: shared expert is not %dx%d", layer, D, FS);
        if (L->sh_gate_inp && (L->sh_gate_inp->cols != D || L->sh_gate_inp->rows != 1))
            return aero_fail(err, AERO_ERR_FORMAT, "layer %d: ffn_gate_inp_shexp is not %d wide", layer, D);
        aero_matmul(pool, L->sh_gate, x, n, w->hg);
        aero_matmul(pool, L->sh_up, x, n, w->hu);
        swiglu(w->hg, w->hu, (size_t)n * FS);
        aero_matmul(pool, L->sh_down, w->hg, n, w->yd);
        if (L->sh_gate_inp) aero_matmul(pool, L->sh_gate_inp, x, n, w->sg);
        for (int t = 0; t < n; t++) {
            // qwen2moe scales the shared expert by sigmoid(ffn_gate_inp_shexp . x); others add it as is.
            float s = L->sh_gate_inp ? 1.0f / (1.0f + expf(-w->sg[t])) : 1.0f;
            float *yt = y + (size_t)t * D;
            const float *od = w->yd + (size_t)t * D;
            if (L->sh_gate_inp)
                for (int d = 0; d < D; d++) yt[d] += od[d] * s;
            else
                for (int d = 0; d < D; d++) yt[d] += od[d];
        }
    }
    return AERO_OK;
}
