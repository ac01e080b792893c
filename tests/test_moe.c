// MoE FFN: every routing function against a double-precision reference written here (no shared kernels),
// tie-breaking, batch invariance (bitwise, any batch order, any thread count, quantized weights too), a
// source that can ready only a few experts at a time, and a clean error when an expert cannot be read.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kernels/kernels.h"
#include "model/moe.h"
#include "stream/expert_cache.h"

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static uint64_t rng_next(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static float rng_sym(void) { return 2.0f * (float)(rng_next() >> 40) / (float)(1 << 24) - 1.0f; }

// A random MoE layer in F32 (merged expert tensors as GGUF lays them out) and its shape.
typedef struct {
    aero_moe_params p;
    float *router;             // [E][D]
    float *bias;               // [E] or NULL
    float *gate, *up, *down;   // [E][F][D], [E][F][D], [E][D][F]
    float *sg, *su, *sd, *sgi; // shared: [FS][D], [FS][D], [D][FS], [D] (sgi NULL: ungated)
} layer_f32;

static float *rnd(size_t n, float scale) {
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = rng_sym() * scale;
    return x;
}

static layer_f32 make_layer(aero_moe_params p, bool bias, bool shared_gate) {
    layer_f32 L = {.p = p};
    size_t D = p.n_embd, F = p.n_ff_exp, E = p.n_expert, FS = p.n_ff_shexp;
    L.router = rnd(E * D, 0.5f);
    L.bias = bias ? rnd(E, 0.05f) : NULL;
    L.gate = rnd(E * F * D, 0.2f);
    L.up = rnd(E * F * D, 0.2f);
    L.down = rnd(E * D * F, 0.2f);
    if (FS) {
        L.sg = rnd(FS * D, 0.2f);
        L.su = rnd(FS * D, 0.2f);
        L.sd = rnd(D * FS, 0.2f);
        L.sgi = shared_gate ? rnd(D, 0.3f) : NULL;
    }
    return L;
}

static void free_layer(layer_f32 *L) {
    free(L->router);
    free(L->bias);
    free(L->gate);
    free(L->up);
    free(L->down);
    free(L->sg);
    free(L->su);
    free(L->sd);
    free(L->sgi);
}

// ---- the double-precision reference (llama.cpp's build_moe_ffn, written out plainly) ----

typedef struct {
    double v;
    int id;
} scored;
static int by_score_desc(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return x->id - y->id;
}

// Routes one token; returns the smallest gap between the k-th and the (k+1)-th candidate so the caller can
// skip tokens whose choice float rounding could flip.
static double ref_route(const layer_f32 *L, const double *logit, int *ids, double *wts) {
    const aero_moe_params *p = &L->p;
    int E = p->n_expert, K = p->n_expert_used;
    double prob[4096], sel[4096];
    if (p->gating == AERO_MOE_GATING_SOFTMAX) {
        double mx = logit[0], s = 0;
        for (int e = 1; e < E; e++) mx = fmax(mx, logit[e]);
        for (int e = 0; e < E; e++) s += exp(logit[e] - mx);
        for (int e = 0; e < E; e++) prob[e] = exp(logit[e] - mx) / s;
    } else if (p->gating == AERO_MOE_GATING_SIGMOID) {
        for (int e = 0; e < E; e++) prob[e] = 1.0 / (1.0 + exp(-logit[e]));
    } else {
        for (int e = 0; e < E; e++) prob[e] = logit[e];
    }
    for (int e = 0; e < E; e++) sel[e] = prob[e] + (L->bias ? L->bias[e] : 0.0);
    double gap = INFINITY;
    bool allowed[4096];
    for (int e = 0; e < E; e++) allowed[e] = true;
    if (p->n_group > 1) {
        int per = E / p->n_group;
        scored g[256];
        for (int gi = 0; gi < p->n_group; gi++) {
            scored m[4096];
            for (int j = 0; j < per; j++) m[j] = (scored){sel[gi * per + j], gi * per + j};
            qsort(m, per, sizeof *m, by_score_desc);
            g[gi] = (scored){m[0].v + m[1].v, gi};
        }
        qsort(g, p->n_group, sizeof *g, by_score_desc);
        gap = fmin(gap, g[p->n_group_used - 1].v - g[p->n_group_used].v);
        for (int e = 0; e < E; e++) allowed[e] = false;
        for (int r = 0; r < p->n_group_used; r++)
            for (int j = 0; j < per; j++) allowed[g[r].id * per + j] = true;
    }
    scored c[4096];
    int nc = 0;
    for (int e = 0; e < E; e++)
        if (allowed[e]) c[nc++] = (scored){sel[e], e};
    qsort(c, nc, sizeof *c, by_score_desc);
    if (K < nc) gap = fmin(gap, c[K - 1].v - c[K].v);
    for (int r = 0; r < K; r++) {
        ids[r] = c[r].id;
        wts[r] = prob[c[r].id];
    }
    if (p->gating == AERO_MOE_GATING_SOFTMAX_WEIGHT) {
        double mx = wts[0], s = 0;
        for (int r = 1; r < K; r++) mx = fmax(mx, wts[r]);
        for (int r = 0; r < K; r++) s += exp(wts[r] - mx);
        for (int r = 0; r < K; r++) wts[r] = exp(wts[r] - mx) / s;
    }
    if (p->norm_w) {
        double s = 0;
        for (int r = 0; r < K; r++) s += wts[r];
        for (int r = 0; r < K; r++) wts[r] /= s;
    }
    if (p->w_scale != 0.0f && p->w_scale != 1.0f)
        for (int r = 0; r < K; r++) wts[r] *= p->w_scale;
    return gap;
}

static double silu(double v) { return v / (1.0 + exp(-v)); }

// SwiGLU FFN in double: down(silu(gate x) * up x), rows of F (gate/up) and D (down).
static void ref_ffn(const float *g, const float *u, const float *dn, int D, int F, const float *x, double *out) {
    double h[4096];
    for (int f = 0; f < F; f++) {
        double a = 0, b = 0;
        for (int d = 0; d < D; d++) {
            a += (double)g[(size_t)f * D + d] * x[d];
            b += (double)u[(size_t)f * D + d] * x[d];
        }
        h[f] = silu(a) * b;
    }
    for (int d = 0; d < D; d++) {
        double s = 0;
        for (int f = 0; f < F; f++) s += (double)dn[(size_t)d * F + f] * h[f];
        out[d] = s;
    }
}

// The reference output of one token; false when its routing is too close to a tie to compare.
static bool ref_token(const layer_f32 *L, const float *x, double *out, int *ids) {
    const aero_moe_params *p = &L->p;
    int D = p->n_embd, F = p->n_ff_exp, E = p->n_expert, K = p->n_expert_used;
    double logit[4096], wts[64], tmp[4096];
    for (int e = 0; e < E; e++) {
        double s = 0;
        for (int d = 0; d < D; d++) s += (double)L->router[(size_t)e * D + d] * x[d];
        logit[e] = s;
    }
    double gap = ref_route(L, logit, ids, wts);
    for (int d = 0; d < D; d++) out[d] = 0;
    for (int r = 0; r < K; r++) {
        int e = ids[r];
        ref_ffn(L->gate + (size_t)e * F * D, L->up + (size_t)e * F * D, L->down + (size_t)e * D * F, D, F, x, tmp);
        for (int d = 0; d < D; d++) out[d] += wts[r] * tmp[d];
    }
    if (p->n_ff_shexp) {
        ref_ffn(L->sg, L->su, L->sd, D, p->n_ff_shexp, x, tmp);
        double s = 1.0;
        if (L->sgi) {
            double g = 0;
            for (int d = 0; d < D; d++) g += (double)L->sgi[d] * x[d];
            s = 1.0 / (1.0 + exp(-g));
        }
        for (int d = 0; d < D; d++) out[d] += s * tmp[d];
    }
    return gap > 1e-5;
}

// ---- the engine side: wmats over the same arrays, optionally re-quantized ----

typedef struct {
    aero_moe_layer layer;
    aero_moe_merged merged;
    aero_wmat sg, su, sd, sgi;
    void *bufs[8];
} engine_layer;

// Stores a [rows][cols] F32 matrix as type t (row by row) and returns its wmat.
static aero_wmat as_type(const float *src, int64_t cols, int64_t rows, aero_dtype t, void **keep) {
    size_t rb = aero_dtype_row_bytes(t, (uint64_t)cols);
    uint8_t *buf = malloc(rb * (size_t)rows);
    for (int64_t r = 0; r < rows; r++) {
        if (t == AERO_DT_F32) memcpy(buf + (size_t)r * rb, src + (size_t)r * cols, rb);
        else aero_quantize_row(t, src + (size_t)r * cols, buf + (size_t)r * rb, cols);
    }
    *keep = buf;
    return (aero_wmat){.data = buf, .type = t, .cols = cols, .rows = rows, .row_bytes = rb};
}

static void engine_init(engine_layer *el, const layer_f32 *L, aero_dtype t) {
    memset(el, 0, sizeof *el);
    const aero_moe_params *p = &L->p;
    int D = p->n_embd, F = p->n_ff_exp, E = p->n_expert, FS = p->n_ff_shexp;
    el->layer.router = as_type(L->router, D, E, AERO_DT_F32, &el->bufs[0]); // routers stay F32 in GGUFs
    el->layer.probs_bias = L->bias;
    aero_wmat g = as_type(L->gate, D, (int64_t)E * F, t, &el->bufs[1]);
    aero_wmat u = as_type(L->up, D, (int64_t)E * F, t, &el->bufs[2]);
    aero_wmat d = as_type(L->down, F, (int64_t)E * D, t, &el->bufs[3]);
    el->merged = (aero_moe_merged){.data = {g.data, u.data, d.data}, .type = {t, t, t}, .n_embd = D, .n_ff_exp = F};
    if (FS) {
        el->sg = as_type(L->sg, D, FS, t, &el->bufs[4]);
        el->su = as_type(L->su, D, FS, t, &el->bufs[5]);
        el->sd = as_type(L->sd, FS, D, t, &el->bufs[6]);
        el->layer.sh_gate = &el->sg;
        el->layer.sh_up = &el->su;
        el->layer.sh_down = &el->sd;
        if (L->sgi) {
            el->sgi = as_type(L->sgi, D, 1, AERO_DT_F32, &el->bufs[7]);
            el->layer.sh_gate_inp = &el->sgi;
        }
    }
}

static void engine_free(engine_layer *el) {
    for (int i = 0; i < 8; i++) free(el->bufs[i]);
}

// A source over the merged tensors that readies at most `limit` experts per prepare and can fail one expert.
typedef struct {
    aero_moe_merged *merged;
    int limit, fail_expert, prepares, outstanding;
} limited_src;

static aero_status lim_prepare(void *ctx, int layer, const int *ex, int n, int *n_ready, aero_error *err) {
    limited_src *s = ctx;
    s->prepares++;
    *n_ready = n < s->limit ? n : s->limit;
    s->outstanding += *n_ready;
    return AERO_OK;
}
static aero_status lim_get(void *ctx, int layer, int expert, aero_wmat w[3], aero_error *err) {
    limited_src *s = ctx;
    if (expert == s->fail_expert)
        return aero_fail(err, AERO_ERR_IO, "read of layer %d expert %d failed", layer, expert);
    return aero_moe_merged_get(s->merged, 0, expert, w, err);
}
static void lim_release(void *ctx, int layer, const int *ex, int n) { ((limited_src *)ctx)->outstanding -= n; }

// The wiring to come: routed experts read from a file by the expert cache, not resident. The file holds
// the three merged tensors at unaligned offsets, as in a GGUF.
typedef struct {
    aero_expert_cache *cache;
    uint64_t off[3], slice[3];
    int n_embd, n_ff;
    aero_dtype type;
} cache_src;

static aero_status cs_locate(void *ctx, int layer, int expert, aero_expert_extent ext[3], aero_error *err) {
    const cache_src *s = ctx;
    for (int p = 0; p < 3; p++)
        ext[p] =
            (aero_expert_extent){.file = 0, .offset = s->off[p] + (uint64_t)expert * s->slice[p], .size = s->slice[p]};
    return AERO_OK;
}
static aero_status cs_prepare(void *ctx, int layer, const int *ex, int n, int *n_ready, aero_error *err) {
    return aero_expert_cache_acquire(((cache_src *)ctx)->cache, layer, ex, n, n_ready, err);
}
static aero_status cs_get(void *ctx, int layer, int expert, aero_wmat w[3], aero_error *err) {
    const cache_src *s = ctx;
    for (int p = 0; p < 3; p++) {
        const void *d = aero_expert_cache_part(s->cache, layer, expert, p);
        if (!d) return aero_fail(err, AERO_ERR_INVALID, "layer %d expert %d not acquired", layer, expert);
        int64_t cols = p == AERO_MOE_DOWN ? s->n_ff : s->n_embd, rows = p == AERO_MOE_DOWN ? s->n_embd : s->n_ff;
        w[p] = aero_moe_slice(d, s->type, cols, rows, 0);
    }
    return AERO_OK;
}
static void cs_release(void *ctx, int layer, const int *ex, int n) {
    aero_expert_cache_release(((cache_src *)ctx)->cache, layer, ex, n);
}

static aero_status run(aero_pool *pool, engine_layer *el, const aero_moe_params *p, const aero_moe_source *src,
                       const float *x, int n, float *y, aero_error *err) {
    aero_moe_work *w = aero_moe_work_new(p, 64);
    aero_status st = aero_moe_forward(pool, p, &el->layer, 0, src, x, n, y, w, err);
    aero_moe_work_free(w);
    return st;
}

// One configuration: reference agreement (F32), batch invariance (F32 and Q8_0), limited source, errors.
static void test_config(const char *name, aero_moe_params p, bool bias, bool shared_gate) {
    aero_error err = {0};
    CHECKF(aero_moe_params_check(&p, &err) == AERO_OK, "%s: %s", name, err.msg);
    layer_f32 L = make_layer(p, bias, shared_gate);
    enum { N = 23 };
    int D = p.n_embd, K = p.n_expert_used;
    float *x = rnd((size_t)N * D, 1.0f);
    float *y = malloc(sizeof(float) * N * D), *y1 = malloc(sizeof(float) * N * D), *y2 = malloc(sizeof(float) * N * D);
    aero_pool *pool1 = aero_pool_new(1), *pool3 = aero_pool_new(3);

    for (int ti = 0; ti < 2; ti++) {
        aero_dtype t = ti == 0 ? AERO_DT_F32 : AERO_DT_Q8_0;
        engine_layer el;
        engine_init(&el, &L, t);
        aero_moe_source src = {.ctx = &el.merged, .get = aero_moe_merged_get};
        CHECKF(run(pool3, &el, &p, &src, x, N, y, &err) == AERO_OK, "%s: %s", name, err.msg);

        if (t == AERO_DT_F32) { // against the reference
            aero_moe_work *w = aero_moe_work_new(&p, N);
            CHECK(aero_moe_route(pool1, &p, &el.layer, x, N, w, &err) == AERO_OK);
            int compared = 0;
            double worst = 0;
            for (int i = 0; i < N; i++) {
                double ref[4096];
                int ids[64];
                if (!ref_token(&L, x + (size_t)i * D, ref, ids)) continue;
                compared++;
                for (int r = 0; r < K; r++)
                    CHECKF(aero_moe_work_ids(w)[i * K + r] == ids[r], "%s: token %d rank %d: expert %d, reference %d",
                           name, i, r, aero_moe_work_ids(w)[i * K + r], ids[r]);
                double mx = 1e-3;
                for (int d = 0; d < D; d++) mx = fmax(mx, fabs(ref[d]));
                for (int d = 0; d < D; d++) worst = fmax(worst, fabs(y[(size_t)i * D + d] - ref[d]) / mx);
            }
            CHECKF(compared >= N / 2, "%s: only %d tokens comparable", name, compared);
            CHECKF(worst < 2e-5, "%s: relative error %.3g", name, worst);
            printf("  %-22s %2d/%d tokens vs double reference, max rel err %.2e\n", name, compared, N, worst);
            aero_moe_work_free(w);
        }

        // Batch invariance: alone, reversed, at 1 and 3 threads: bitwise equal.
        for (int i = 0; i < N; i++) {
            CHECK(run(pool1, &el, &p, &src, x + (size_t)i * D, 1, y1 + (size_t)i * D, &err) == AERO_OK);
        }
        CHECKF(memcmp(y, y1, sizeof(float) * N * D) == 0, "%s %s: one token at a time differs from the batch", name,
               aero_dtype_name(t));
        float *xr = malloc(sizeof(float) * N * D);
        for (int i = 0; i < N; i++) memcpy(xr + (size_t)i * D, x + (size_t)(N - 1 - i) * D, sizeof(float) * D);
        CHECK(run(pool3, &el, &p, &src, xr, N, y2, &err) == AERO_OK);
        bool same = true;
        for (int i = 0; i < N; i++)
            same &= memcmp(y2 + (size_t)i * D, y + (size_t)(N - 1 - i) * D, sizeof(float) * D) == 0;
        CHECKF(same, "%s %s: reversed batch differs", name, aero_dtype_name(t));
        free(xr);

        // A source that readies two experts at a time gives the same bits and releases everything.
        limited_src ls = {.merged = &el.merged, .limit = 2, .fail_expert = -1};
        aero_moe_source lsrc = {.ctx = &ls, .prepare = lim_prepare, .get = lim_get, .release = lim_release};
        CHECK(run(pool3, &el, &p, &lsrc, x, N, y2, &err) == AERO_OK);
        CHECKF(memcmp(y, y2, sizeof(float) * N * D) == 0, "%s: limited source differs", name);
        CHECK(ls.prepares > 1 && ls.outstanding == 0);

        // Experts read by the expert cache from a file, with a budget of 3 experts (smaller than the union):
        // the same bits as resident weights.
        {
            const aero_moe_params *pp = &p;
            char path[] = "/tmp/aero_test_moe_XXXXXX";
            int fd = mkstemp(path);
            CHECK(fd >= 0);
            cache_src cs = {.n_embd = pp->n_embd, .n_ff = pp->n_ff_exp, .type = t};
            uint64_t pos = 1234;
            for (int q = 0; q < 3; q++) {
                int64_t cols = q == AERO_MOE_DOWN ? pp->n_ff_exp : pp->n_embd;
                int64_t rows = q == AERO_MOE_DOWN ? pp->n_embd : pp->n_ff_exp;
                cs.slice[q] = aero_dtype_row_bytes(t, (uint64_t)cols) * (uint64_t)rows;
                cs.off[q] = pos;
                size_t bytes = (size_t)(cs.slice[q] * (uint64_t)pp->n_expert);
                CHECK(pwrite(fd, el.merged.data[q], bytes, (off_t)pos) == (ssize_t)bytes);
                pos += bytes + 100;
            }
            close(fd);
            const char *paths[1] = {path};
            uint64_t span = 0;
            for (int q = 0; q < 3; q++) span += cs.slice[q] + 8192;
            aero_expert_cache_config cc = {.paths = paths,
                                           .n_files = 1,
                                           .n_layer = 1,
                                           .n_expert = pp->n_expert,
                                           .budget = 3 * span,
                                           .policy = AERO_EXPERT_EVICT_LFU_RECENT,
                                           .n_io_threads = 2,
                                           .locate = cs_locate,
                                           .locate_ctx = &cs};
            cs.cache = aero_expert_cache_new(&cc, &err);
            CHECKF(cs.cache != NULL, "%s", err.msg);
            aero_moe_source csrc = {.ctx = &cs, .prepare = cs_prepare, .get = cs_get, .release = cs_release};
            memset(y2, 0, sizeof(float) * N * D);
            CHECKF(cs.cache && run(pool3, &el, &p, &csrc, x, N, y2, &err) == AERO_OK, "%s: %s", name, err.msg);
            CHECKF(memcmp(y, y2, sizeof(float) * N * D) == 0, "%s %s: cache-backed experts differ", name,
                   aero_dtype_name(t));
            aero_expert_cache_stats cst;
            if (cs.cache) {
                aero_expert_cache_stats_get(cs.cache, &cst);
                CHECK(cst.misses > 3 && cst.evictions > 0 && cst.peak_bytes <= cc.budget);
            }
            aero_expert_cache_free(cs.cache);
            unlink(path);
        }

        // An expert that cannot be read is a clean error naming it, with nothing left pinned.
        aero_moe_work *w = aero_moe_work_new(&p, N);
        CHECK(aero_moe_route(pool1, &p, &el.layer, x, N, w, &err) == AERO_OK);
        ls = (limited_src){.merged = &el.merged, .limit = 3, .fail_expert = aero_moe_work_ids(w)[0]};
        aero_moe_work_free(w);
        memset(&err, 0, sizeof err);
        aero_status st = run(pool3, &el, &p, &lsrc, x, N, y2, &err);
        char want[64];
        snprintf(want, sizeof want, "expert %d", ls.fail_expert);
        CHECKF(st == AERO_ERR_IO && strstr(err.msg, want), "%s: error %d '%s'", name, (int)st, err.msg);
        CHECK(ls.outstanding == 0);
        engine_free(&el);
    }
    aero_pool_free(pool1);
    aero_pool_free(pool3);
    free(x);
    free(y);
    free(y1);
    free(y2);
    free_layer(&L);
}

// Ties go to the lower expert id (and the lower group id), the documented deterministic choice.
static void test_ties(void) {
    aero_moe_params p = {.n_embd = 32,
                         .n_ff_exp = 32,
                         .n_expert = 8,
                         .n_expert_used = 3,
                         .gating = AERO_MOE_GATING_SOFTMAX,
                         .norm_w = true};
    float scratch[64], w[8];
    int ids[8];
    float zeros[8] = {0};
    aero_moe_route_one(&p, zeros, NULL, scratch, ids, w);
    CHECK(ids[0] == 0 && ids[1] == 1 && ids[2] == 2);
    CHECK(fabsf(w[0] - 1.0f / 3) < 1e-6f && w[0] == w[1] && w[1] == w[2]);
    float l2[8] = {1, 3, 3, 2, 3, 0, 2, 3};
    aero_moe_route_one(&p, l2, NULL, scratch, ids, w);
    CHECK(ids[0] == 1 && ids[1] == 2 && ids[2] == 4);
    // Sigmoid with a bias that creates a tie in the selection scores only.
    p.gating = AERO_MOE_GATING_SIGMOID;
    p.n_expert_used = 2;
    float l3[8] = {0, 0, 0, 0, 0, 0, 0, 0}, b3[8] = {0, 0.5f, 0, 0.5f, 0, 0, 0, 0.5f};
    aero_moe_route_one(&p, l3, b3, scratch, ids, w);
    CHECK(ids[0] == 1 && ids[1] == 3);
    CHECK(w[0] == 0.5f && w[1] == 0.5f); // weights are the unbiased sigmoid, normalised
    // Grouped: 4 groups of 2, one group kept; groups 1 and 2 tie, the lower (1) wins.
    p.n_group = 4;
    p.n_group_used = 1;
    float l4[8] = {-5, -5, 1, 1, 1, 1, 3, -9};
    aero_moe_route_one(&p, l4, NULL, scratch, ids, w);
    // group scores: g0 ~ 0.013, g1 = g2 = 2*sigmoid(1), g3 = sigmoid(3)+sigmoid(-9) ~ 0.953
    CHECK(ids[0] == 2 && ids[1] == 3);
    // NaN logits never win over real ones.
    p.n_group = 0;
    float l5[8] = {NAN, 0.1f, NAN, 0.2f, 0, 0, 0, 0};
    aero_moe_route_one(&p, l5, NULL, scratch, ids, w);
    CHECK(ids[0] == 3 && ids[1] == 1);
}

static void test_params(void) {
    aero_error err;
    aero_moe_params p = {
        .n_embd = 32, .n_ff_exp = 32, .n_expert = 8, .n_expert_used = 9, .gating = AERO_MOE_GATING_SOFTMAX};
    CHECK(aero_moe_params_check(&p, &err) == AERO_ERR_FORMAT);
    p.n_expert_used = 2;
    p.n_group = 3;
    p.n_group_used = 1;
    CHECK(aero_moe_params_check(&p, &err) == AERO_ERR_FORMAT); // 8 experts in 3 groups
    p.n_group = 4;
    p.n_expert_used = 3;
    CHECK(aero_moe_params_check(&p, &err) == AERO_ERR_FORMAT); // one group of 2 cannot hold 3
    p.n_group_used = 2;
    CHECK(aero_moe_params_check(&p, &err) == AERO_OK);
    p.gating = 7;
    CHECK(aero_moe_params_check(&p, &err) == AERO_ERR_UNSUPPORTED);
    CHECK(aero_moe_work_new(&p, 4) == NULL);
}

int main(void) {
    aero_kernels_init();
    test_params();
    test_ties();
    // qwen3moe / Mixtral: softmax over all experts, top-k renormalised.
    test_config("qwen3moe (softmax,norm)",
                (aero_moe_params){.n_embd = 64,
                                  .n_ff_exp = 32,
                                  .n_expert = 16,
                                  .n_expert_used = 4,
                                  .gating = AERO_MOE_GATING_SOFTMAX,
                                  .norm_w = true},
                false, false);
    // qwen2moe: softmax, not renormalised, a shared expert gated by sigmoid(ffn_gate_inp_shexp . x).
    test_config("qwen2moe (shexp gate)",
                (aero_moe_params){.n_embd = 64,
                                  .n_ff_exp = 32,
                                  .n_ff_shexp = 64,
                                  .n_expert = 12,
                                  .n_expert_used = 4,
                                  .gating = AERO_MOE_GATING_SOFTMAX,
                                  .norm_w = false},
                false, true);
    // DeepSeek-V3: sigmoid, selection bias, 4 groups keep 2, renormalised, scaled, an ungated shared expert.
    test_config("deepseek-v3 (grouped)",
                (aero_moe_params){.n_embd = 64,
                                  .n_ff_exp = 32,
                                  .n_ff_shexp = 64,
                                  .n_expert = 32,
                                  .n_expert_used = 4,
                                  .gating = AERO_MOE_GATING_SIGMOID,
                                  .norm_w = true,
                                  .w_scale = 2.5f,
                                  .n_group = 4,
                                  .n_group_used = 2},
                true, false);
    // DeepSeek-V2: softmax, no renormalisation, scale.
    test_config("deepseek-v2 (scale)",
                (aero_moe_params){.n_embd = 64,
                                  .n_ff_exp = 32,
                                  .n_ff_shexp = 32,
                                  .n_expert = 16,
                                  .n_expert_used = 6,
                                  .gating = AERO_MOE_GATING_SOFTMAX,
                                  .w_scale = 16.0f},
                false, false);
    // softmax over the selected weights (gating 3).
    test_config(
        "softmax_weight",
        (aero_moe_params){
            .n_embd = 64, .n_ff_exp = 64, .n_expert = 8, .n_expert_used = 2, .gating = AERO_MOE_GATING_SOFTMAX_WEIGHT},
        false, false);
    return check_done("test_moe");
}
