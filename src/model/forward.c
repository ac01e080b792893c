// The forward pass over a batch (prefill, decoding, speculative verification and server batching are all
// this one call), appending to the KV cache (kv.c). Every per-token result is computed in a fixed order, so a
// token's logits do not depend on what else is in its batch nor on the tile size (invariant 3).
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"
#ifdef AERO_CUDA
#include "forward_cuda.h"
#endif

#define DEFAULT_TILE 512     // tokens computed at once inside a layer when the context does not say
#define PREDICT_MAX_TOKENS 8 // passes up to this long (decode, short verifications) prefetch predicted experts

// Grows the whole-batch buffers to hold n tokens.
static aero_status ensure_cap(aero_ctx *c, int n, aero_error *err) {
    if (n <= c->cap) return AERO_OK;
    float *x = realloc(c->x, sizeof(float) * (size_t)n * c->m->hp.n_embd);
    if (!x) return aero_fail(err, AERO_ERR_NOMEM, "out of memory for the activations of %d tokens", n);
    c->x = x;
    c->cap = n;
    return AERO_OK;
}

// A CPU context reads every unit through the stream: units a GPU context made external (its VRAM-resident
// ones) come back into the host plan once no GPU context of the model is left.
static aero_status cpu_stream(aero_model *m, aero_error *err) {
    if (m->pipe) return AERO_OK; // a pipeline rank's units outside its layer range stay external
    bool any = false;
    for (int u = 0; u <= m->hp.n_layer; u++) any |= aero_stream_unit_external(m->stream, u);
    if (!any) return AERO_OK;
    if (m->n_gpu_ctx > 0)
        return aero_fail(err, AERO_ERR_INVALID, "a CPU context beside a GPU context of the same model is not supported");
    return aero_stream_reopen(&m->stream, NULL, true, err);
}

// What of the model the GPU forward pass (forward_cuda.c) does not compute, or NULL when it computes all of it:
// a context on the GPU is refused with this named rather than computing something else.
static const char *gpu_missing(const aero_model *m) {
    if (m->rope_mscale != 1.0f) return "rope with scaled cos/sin (YaRN, rope.scaling.attn_factor)";
    if (m->rope_inv_freq_long) return "LongRoPE";
    if (m->hp.qk_halves) return "a Hugging Face directory's Q/K row order (convert it to GGUF)";
    if (m->kind != AERO_ARCH_LLAMA && m->kind != AERO_ARCH_QWEN2 && m->kind != AERO_ARCH_QWEN3) return m->hp.arch;
    return NULL;
}

aero_status aero_ctx_new(aero_ctx **out, aero_model *m, const aero_ctx_params *p, aero_error *err) {
    *out = NULL;
    aero_status st_cpu;
    const aero_hparams *hp = &m->hp;
    aero_ctx *c = calloc(1, sizeof *c);
    if (!c) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    c->m = m;
    c->pipe_id = -1;
    c->n_ctx = aero_ctx_params_n_ctx(hp, p);
    c->n_seq = p->n_seq > 0 ? p->n_seq : 1;
    c->n_tile = p->n_batch > 0 ? p->n_batch : DEFAULT_TILE;
    c->gpu_head_vram = p->gpu_head_vram;
    c->kv_dim = hp->n_head_kv * hp->head_dim;
    // LongRoPE: llama.cpp rotates with the long factors when a sequence's context exceeds the original one
    int orig = hp->rope_orig_ctx > 0 ? hp->rope_orig_ctx : hp->n_ctx_train;
    c->rope_inv_freq = m->rope_inv_freq_long && c->n_ctx / c->n_seq > orig ? m->rope_inv_freq_long : m->rope_inv_freq;
    if (c->n_ctx > (1 << 24) || c->n_seq > 4096 || c->n_tile > (1 << 16)) {
        int n_ctx = c->n_ctx, n_seq = c->n_seq, n_tile = c->n_tile;
        free(c);
        return aero_fail(err, AERO_ERR_INVALID, "context %d x %d sequences (tile %d) is too large", n_ctx, n_seq,
                         n_tile);
    }
    if (p->kv_recent > 0 && hp->attn_softcap > 0) {
        free(c);
        return aero_fail(err, AERO_ERR_UNSUPPORTED, "--kv-recent is not supported for %s (soft-capped attention)",
                         hp->arch);
    }
    if (aero_kv_check(hp, p, err) ||
        (m->kind == AERO_ARCH_DEEPSEEK2
             ? aero_mla_ctx_init(c, p, err) // the latent cache (mla.c)
             : aero_kv_cache_init_range(&c->kv, hp->n_layer, m->layer_first, m->layer_last, c->n_seq, c->n_ctx,
                                        hp->n_head_kv, hp->head_dim, aero_kv_type_dtype(p->type_k, p->kv_f32),
                                        aero_kv_type_dtype(p->type_v, p->kv_f32), p->kv_recent,
                                        aero_kv_ring_cells(hp, p), err))) {
        free(c);
        return err->code;
    }
    size_t n = (size_t)c->n_tile, d = hp->n_embd, qd = (size_t)hp->n_head * hp->head_dim, nt = m->n_threads;
    const aero_tensor_info *te = &m->gguf.tensors[m->tok_embd];
    c->embd_raw = malloc(n * aero_dtype_row_bytes(te->type, te->ne[0]));
    c->xb = malloc(sizeof(float) * n * (d > qd ? d : qd));
    c->q = malloc(sizeof(float) * n * qd);
    c->kb = malloc(sizeof(float) * n * c->kv_dim);
    c->vb = malloc(sizeof(float) * n * c->kv_dim);
    c->att = malloc(sizeof(float) * n * qd);
    c->hb = malloc(sizeof(float) * n * hp->n_ff);
    c->hb2 = malloc(sizeof(float) * n * hp->n_ff);
    c->logit_in = malloc(sizeof(float) * n * d);
    c->block_start = malloc(sizeof(int) * (n + 1));
    c->scores = malloc(sizeof(float) * nt * c->n_ctx);
    c->rows = malloc(sizeof(int) * nt * c->n_ctx);
    c->kf = malloc(sizeof(float) * nt * c->n_ctx * hp->head_dim);
    c->vf = malloc(sizeof(float) * nt * c->n_ctx * hp->head_dim);
    c->qq_bytes = (aero_attention_kq_scratch(c->kv.type_k, hp->head_dim) + 63) & ~(size_t)63;
    c->qq = aero_alloc_aligned(64, nt * c->qq_bytes);
    c->rtmp = malloc(sizeof(float) * nt * hp->head_dim);
    if (!c->embd_raw || !c->xb || !c->q || !c->kb || !c->vb || !c->att || !c->hb || !c->hb2 || !c->logit_in ||
        !c->block_start || !c->scores || !c->rows || !c->kf || !c->vf || !c->qq || !c->rtmp ||
        ensure_cap(c, c->n_tile, err))
        goto oom;
    if (m->moe) {
        c->moe_work = aero_moe_work_new(&m->moe_p, (int)n);
        c->moe_y = malloc(sizeof(float) * n * d);
        c->moe_ids = malloc(sizeof(int) * m->moe_p.n_expert);
        c->pf_ids = malloc(sizeof(int) * m->moe_p.n_expert);
        c->moe_next = aero_moe_work_new(&m->moe_p, PREDICT_MAX_TOKENS);
        if (!c->moe_work || !c->moe_y || !c->moe_ids || !c->pf_ids || !c->moe_next) goto oom;
    }
    const char *dev = p->device ? p->device : m->device;
    if ((!*dev || !strcmp(dev, "cpu")) && (st_cpu = cpu_stream(m, err))) {
        aero_ctx_free(c);
        return st_cpu;
    }
    if (*dev && strcmp(dev, "cpu")) {
        const char *why = gpu_missing(m);
        aero_status st = strcmp(dev, "cuda")
                             ? aero_fail(err, AERO_ERR_INVALID, "unknown device '%s' (cpu or cuda)", dev)
                         : why ? aero_fail(err, AERO_ERR_UNSUPPORTED, "--device cuda: %s is not computed on the GPU yet "
                                                                      "(use --device cpu)", why)
#ifdef AERO_CUDA
                             : aero_gpu_ctx_init(c, p->gpu_mem ? p->gpu_mem : m->gpu_mem, err);
#else
                             : aero_fail(err, AERO_ERR_UNSUPPORTED, "--device cuda: built without CUDA (make CUDA=1)");
#endif
        if (st) {
            aero_ctx_free(c);
            return st;
        }
    }
    if (m->pipe && (*dev && strcmp(dev, "cpu") ? aero_fail(err, AERO_ERR_UNSUPPORTED, "pipeline: --device %s", dev)
                                               : aero_pipe_ctx_new(c, p, err))) {
        c->pipe_id = -1; // no context on the other ranks to free
        aero_ctx_free(c);
        return err->code;
    }
    *out = c;
    return AERO_OK;
oom:
    aero_ctx_free(c);
    return aero_fail(err, AERO_ERR_NOMEM, "cannot allocate the activations of a %d-token tile", (int)n);
}

void aero_ctx_free(aero_ctx *c) {
    if (!c) return;
    if (c->m->pipe && c->pipe_id >= 0) aero_pipe_ctx_free(c);
#ifdef AERO_CUDA
    aero_gpu_ctx_free(c);
#endif
    aero_kv_cache_free(&c->kv);
    aero_mla_ctx_free(c);
    free(c->x);
    free(c->embd_raw);
    free(c->xb);
    free(c->q);
    free(c->kb);
    free(c->vb);
    free(c->att);
    free(c->hb);
    free(c->hb2);
    free(c->logit_in);
    free(c->block_start);
    free(c->scores);
    free(c->rows);
    free(c->kf);
    free(c->vf);
    free(c->qq);
    free(c->rtmp);
    aero_moe_work_free(c->moe_work);
    free(c->moe_y);
    free(c->moe_ids);
    free(c->pf_ids);
    aero_moe_work_free(c->moe_next);
    free(c);
}

int aero_ctx_n_ctx(const aero_ctx *c) { return c->n_ctx; }
int aero_ctx_n_seq(const aero_ctx *c) { return c->n_seq; }
aero_model *aero_ctx_model(aero_ctx *c) { return c->m; }

const char *aero_ctx_device(const aero_ctx *c) {
#ifdef AERO_CUDA
    if (c->gpu) return aero_gpu_describe(c);
#endif
    return "device: cpu";
}

// A weight matrix of an acquired unit; a tensor the stream cannot give (a unit not held) is a status, not zeros.
static aero_status wmat(aero_model *m, int64_t t, aero_wmat *out, aero_error *err) {
    const aero_tensor_info *ti = &m->gguf.tensors[t];
    *out = (aero_wmat){
        .data = aero_stream_tensor(m->stream, t),
        .type = ti->type,
        .cols = (int64_t)ti->ne[0],
        .rows = (int64_t)ti->ne[1],
        .row_bytes = aero_dtype_row_bytes(ti->type, ti->ne[0]),
    };
    if (!out->data) return aero_fail(err, AERO_ERR_INVALID, "tensor '%s' is not in memory", ti->name);
    return AERO_OK;
}

// Rows [row0, row0 + rows) of a matrix, as a matrix of their own (a fused tensor's parts).
static aero_status wmat_rows(aero_model *m, int64_t t, int64_t row0, int64_t rows, aero_wmat *out, aero_error *err) {
    if (wmat(m, t, out, err)) return err->code;
    out->data = (const char *)out->data + (size_t)row0 * out->row_bytes;
    out->rows = rows;
    return AERO_OK;
}

// A norm or bias vector: always resident (stream/ keeps small tensors), so a missing one is a bug.
static const float *vec(aero_model *m, int64_t t) {
    const float *p = aero_stream_global(m->stream, t);
    if (!p) p = aero_stream_tensor(m->stream, t);
    assert(p && "a norm or bias tensor is not in memory");
    return p;
}

// One tile of the batch, with what attention needs to find each token's keys.
typedef struct {
    aero_ctx *c;
    int layer;
    int n;     // tokens in this tile
    int first; // index of the tile's first token in the whole batch
    const aero_batch *b;
    const int *cell; // per batch token: its cache cell
    const int *base; // per sequence: cache length before this batch
    int n_blocks;
    int *block_start; // attention blocks of the tile: [block_start[k], block_start[k+1])
    int window;       // > 0: a query sees only keys fewer than this many positions back (sliding-window layer)
} attn_job;

// Whether batch token i may attend to batch token j (same sequence, causal or per the tree mask).
static bool batch_visible(const aero_batch *b, int i, int j) {
    if (j > i) return false;
    if (b->seq && b->seq[i] != b->seq[j]) return false;
    return b->mask ? b->mask[(size_t)i * b->n + j] != 0 : true;
}

// aero_attention with the scores soft-capped (Gemma 2: cap * tanh(score / cap) before the softmax), in the same
// reduction order as aero_attention.
static void attention_softcap(float *out, const float *q, const float *k, const float *v, const int *rows, int n,
                              int hd, float scale, float cap, float *scores) {
    float maxs = -INFINITY, inv = 1.0f / cap, sum = 0;
    for (int t = 0; t < n; t++) {
        float sc = cap * tanhf(aero_dot_fixed(q, k + (size_t)rows[t] * hd, hd) * scale * inv);
        scores[t] = sc;
        if (sc > maxs) maxs = sc;
    }
    for (int t = 0; t < n; t++) {
        scores[t] = expf(scores[t] - maxs);
        sum += scores[t];
    }
    memset(out, 0, sizeof(float) * hd);
    for (int t = 0; t < n; t++) {
        const float *vr = v + (size_t)rows[t] * hd;
        aero_axpy_fixed(out, scores[t] / sum, vr, hd);
    }
}

#define ATTN_BLOCK 32 // queries of one sequence sharing one conversion of their keys

// Work items are (block of consecutive same-sequence queries of the tile, KV head). Each query's keys are
// visited in ascending cell order with the same arithmetic whatever the block, so results are batch invariant.
static void attn_worker(void *arg, int ith, int nth) {
    attn_job *job = arg;
    aero_ctx *c = job->c;
    const aero_hparams *hp = &c->m->hp;
    int hd = hp->head_dim, group = hp->n_head / hp->n_head_kv;
    float *scores = c->scores + (size_t)ith * c->n_ctx;
    int *rows = c->rows + (size_t)ith * c->n_ctx;
    float *kf = c->kf + (size_t)ith * c->n_ctx * hd, *vf = c->vf + (size_t)ith * c->n_ctx * hd;
    float scale = hp->attn_scale > 0 ? hp->attn_scale : 1.0f / sqrtf((float)hd), cap = hp->attn_softcap;
    bool kq = aero_kv_k_quantized(&c->kv) && !(cap > 0); // scores from the stored K blocks, not f32 copies
    int window = job->window;
    size_t k_head_bytes = aero_dtype_row_bytes(c->kv.type_k, (uint64_t)hd);
    void *qq = (char *)c->qq + (size_t)ith * c->qq_bytes;
    float *rtmp = c->rtmp + (size_t)ith * hd;
    long begin, end;
    aero_pool_split((long)job->n_blocks * hp->n_head_kv, ith, nth, &begin, &end);
    for (long w = begin; w < end; w++) {
        int blk = (int)(w / hp->n_head_kv), kvh = (int)(w % hp->n_head_kv);
        int b0 = job->block_start[blk], b1 = job->block_start[blk + 1];
        int seq = job->b->seq ? job->b->seq[job->first + b0] : 0;
        int n_cells = job->cell[job->first + b1 - 1] + 1; // the block's last query sees the highest cell
        if (!kq) aero_kv_head_f32(&c->kv, false, job->layer, seq, kvh, n_cells, kf);
        aero_kv_head_f32(&c->kv, true, job->layer, seq, kvh, n_cells, vf);
        const char *khead = (const char *)aero_kv_cell(&c->kv, false, job->layer, seq, 0) + k_head_bytes * kvh;
        for (int ci = b0; ci < b1; ci++) {
            int i = job->first + ci, nb = job->base[seq], ns = 0;
            // the committed cache, then the visible tokens of this batch; with --kv-recent, rows from `first` on
            // are the positions within `recent` of this query's (by position, so a tree node and the same token
            // decoded alone read the same rows from the same copies)
            int qpos = job->b->pos[i], pos_old = qpos - c->kv.recent, first = -1;
            for (int t = 0; t < nb; t++) {
                if (window && qpos - t >= window) continue; // committed cell t holds position t
                if (first < 0 && t > pos_old) first = ns;
                rows[ns++] = t;
            }
            for (int t = 0; t <= i; t++)
                if (batch_visible(job->b, i, t) && !(window && qpos - job->b->pos[t] >= window)) {
                    if (first < 0 && job->b->pos[t] > pos_old) first = ns;
                    rows[ns++] = job->cell[t];
                }
            aero_attn_recent rc = {
                .first = first < 0 ? ns : first, .stride = (size_t)c->kv_dim, .ring = c->kv.ring, .tmp = rtmp};
            if (c->kv.recent) {
                rc.k = c->kv.rk ? aero_kv_recent_row(&c->kv, false, job->layer, seq, 0) + (size_t)kvh * hd : NULL;
                rc.v = c->kv.rv ? aero_kv_recent_row(&c->kv, true, job->layer, seq, 0) + (size_t)kvh * hd : NULL;
            }
            for (int h = kvh * group; h < (kvh + 1) * group; h++) {
                float *out = c->att + ((size_t)ci * hp->n_head + h) * hd;
                const float *q = c->q + ((size_t)ci * hp->n_head + h) * hd;
                if (cap > 0)
                    attention_softcap(out, q, kf, vf, rows, ns, hd, scale, cap, scores);
                else if (kq || c->kv.recent)
                    aero_attention_kq(out, q, kq ? c->kv.type_k : AERO_DT_F32, kq ? (const void *)khead : kf,
                                      kq ? c->kv.row_k : sizeof(float) * hd, vf, rows, ns, hd, scale, scores, qq,
                                      c->kv.recent ? &rc : NULL);
                else aero_attention(out, q, kf, vf, rows, ns, hd, scale, scores);
            }
        }
    }
}

// Splits the tile into blocks of consecutive same-sequence queries (at most ATTN_BLOCK each).
static void attn_blocks(attn_job *job) {
    int nb = 0;
    job->block_start[0] = 0;
    for (int ci = 1; ci <= job->n; ci++) {
        bool cut = ci == job->n || ci - job->block_start[nb] >= ATTN_BLOCK;
        if (!cut && job->b->seq) cut = job->b->seq[job->first + ci] != job->b->seq[job->first + ci - 1];
        if (cut) job->block_start[++nb] = ci;
    }
    job->n_blocks = nb;
}

// The predictor: layer l+1's router applied to layer l's FFN input guesses the next layer's experts, whose
// reads then overlap this layer's compute and the next attention. Only for short passes (a long prompt uses
// nearly every expert anyway) and when the next layer's router is in memory without acquiring its unit.
static void predict_next(aero_ctx *c, int l, int n) {
    aero_model *m = c->m;
    c->pf_n = 0;
    if (!m->expert_prefetch || n > PREDICT_MAX_TOKENS || l + 1 >= m->hp.n_layer || !m->layers[l + 1].moe) return;
    const aero_stream_plan *plan = aero_stream_get_plan(m->stream);
    if (!plan->unit_resident[l + 1]) return;
    const aero_layer_weights *nw = &m->layers[l + 1];
    aero_moe_layer L = {0};
    aero_error err = {0};
    if (wmat(m, nw->router, &L.router, &err) || aero_moe_route(m->pool, &m->moe_p, &L, c->xb, n, c->moe_next, &err))
        return; // a guess that cannot be made is no error
    c->pf_n = aero_moe_work_union(c->moe_next, c->pf_ids);
    c->pf_layer = l + 1;
}

// The mixture-of-experts FFN of one tile (c->xb, already normalised) added to the residual x: the router,
// shared expert and dense parts come from the layer's acquired unit, the routed experts from the model's
// source (resident tensors or the expert cache), so a resident model is the case where all experts fit.
static aero_status moe_ffn(aero_ctx *c, int l, float *x, int n, aero_error *err) {
    aero_model *m = c->m;
    const aero_layer_weights *w = &m->layers[l];
    int d = m->hp.n_embd;
    aero_moe_layer L = {0};
    aero_wmat sg, su, sd, sgi;
    if (wmat(m, w->router, &L.router, err)) return err->code;
    if (w->probs_b >= 0) L.probs_bias = vec(m, w->probs_b);
    if (w->sh_gate >= 0) {
        if (wmat(m, w->sh_gate, &sg, err) || wmat(m, w->sh_up, &su, err) || wmat(m, w->sh_down, &sd, err))
            return err->code;
        L.sh_gate = &sg, L.sh_up = &su, L.sh_down = &sd;
        if (w->sh_gate_inp >= 0) {
            sgi = (aero_wmat){.data = vec(m, w->sh_gate_inp),
                              .type = AERO_DT_F32,
                              .cols = d,
                              .rows = 1,
                              .row_bytes = sizeof(float) * (size_t)d};
            L.sh_gate_inp = &sgi;
        }
    }
    predict_next(c, l, n);
    aero_moe_source src = aero_ctx_moe_source(c);
    aero_status st = aero_moe_forward(m->pool, &m->moe_p, &L, l, &src, c->xb, n, c->moe_y, c->moe_work, err);
    c->pf_n = 0;
    if (st) return st;
    int nu = aero_moe_work_union(c->moe_work, c->moe_ids); // the use counts behind the bench's floor
    for (int i = 0; i < nu; i++) m->expert_uses[(size_t)l * m->moe_p.n_expert + c->moe_ids[i]]++;
    for (size_t i = 0; i < (size_t)n * d; i++) x[i] += c->moe_y[i];
    return AERO_OK;
}

// The FFN of MoE layer l on the host for the GPU forward pass, which computes attention on the device and hands
// the residual stream x (n rows in host memory) here, where the experts live (resident or in the expert cache).
aero_status aero_ctx_moe_ffn_host(aero_ctx *c, int l, float *x, int n, aero_error *err) {
    const aero_hparams *hp = &c->m->hp;
    const aero_layer_weights *w = &c->m->layers[l];
    for (int i = 0; i < n; i++) aero_rmsnorm(c->xb + (size_t)i * hp->n_embd, x + (size_t)i * hp->n_embd,
                                             vec(c->m, w->ffn_norm), hp->n_embd, hp->norm_eps);
    return moe_ffn(c, l, x, n, err);
}

// llama.cpp scales cos and sin (YaRN's magnitude correction, LongRoPE's attn_factor): the rotated part of a head
// comes out that much longer, the rest is passed through.
static void rope_mscale(float *v, int rope_dim, float mscale) {
    for (int i = 0; i < rope_dim; i++) v[i] *= mscale;
}

// The sublayer's input: the RMS norm of the residual stream, or (OLMo 2, no pre-norm) the stream itself.
static void pre_norm(float *xb, const float *x, int n, int d, const float *w, float eps) {
    if (!w) {
        memcpy(xb, x, sizeof(float) * (size_t)n * d);
        return;
    }
    for (int i = 0; i < n; i++) aero_rmsnorm(xb + (size_t)i * d, x + (size_t)i * d, w, d, eps);
}

// x += y, or x += y * scale where Granite scales its sublayers' outputs.
static void residual_add(float *x, const float *y, size_t n, float scale) {
    if (scale != 0.0f)
        for (size_t i = 0; i < n; i++) x[i] += y[i] * scale;
    else
        for (size_t i = 0; i < n; i++) x[i] += y[i];
}

// Gemma's norms of a sublayer's output before it joins the residual stream (n rows of d); nothing when w is NULL.
static void post_norm(float *y, int n, int d, const float *w, float eps) {
    if (!w) return;
    for (int i = 0; i < n; i++) aero_rmsnorm(y + (size_t)i * d, y + (size_t)i * d, w, d, eps);
}

// gate[i] = gelu(gate[i]) * up[i], GELU in its tanh form (Gemma's gelu_pytorch_tanh, llama.cpp's ggml_gelu).
static void geglu(float *gate, const float *up, int64_t n) {
    const float k0 = 0.7978845608028654f, k1 = 0.044715f; // sqrt(2 / pi)
    for (int64_t i = 0; i < n; i++) {
        float x = gate[i];
        gate[i] = 0.5f * x * (1.0f + tanhf(k0 * x * (1.0f + k1 * x * x))) * up[i];
    }
}

// Reorders each head of Q and K from Hugging Face's rotate-halves order (i, i + hd/2) into GGUF's adjacent pairs
// (2i, 2i + 1): the same values llama.cpp's converter gets by permuting the weight rows, so the bits match.
static void qk_to_pairs(aero_ctx *c, int n, int qd, int kvd, int hd) {
    float tmp[1024];
    int half = hd / 2;
    for (int i = 0; i < n; i++)
        for (int which = 0; which < 2; which++) {
            int dim = which ? kvd : qd;
            float *row = (which ? c->kb + (size_t)i * kvd : c->q + (size_t)i * qd);
            for (int h = 0; h < dim / hd; h++) {
                float *v = row + (size_t)h * hd;
                for (int j = 0; j < half; j++) {
                    tmp[2 * j] = v[j];
                    tmp[2 * j + 1] = v[half + j];
                }
                memcpy(v, tmp, (size_t)hd * sizeof *v);
            }
        }
}

// One transformer layer over one tile: attention block then SwiGLU feed-forward, both residual. The caller
// holds the layer's unit; the tile's K/V rows are cached before its attention, so later tiles see them.
static aero_status layer_tile(aero_ctx *c, int l, attn_job *job, aero_error *err) {
    aero_model *m = c->m;
    const aero_hparams *hp = &m->hp;
    const aero_layer_weights *w = &m->layers[l];
    int n = job->n, d = hp->n_embd, hd = hp->head_dim, qd = hp->n_head * hd, kvd = c->kv_dim;
    float *x = c->x + (size_t)job->first * d;
    if (m->kind == AERO_ARCH_DEEPSEEK2) { // multi-head latent attention (mla.c), then the FFN below
        if (aero_mla_attention(c, l, job->b, job->first, n, job->cell, job->base, err)) return err->code;
        goto ffn;
    }
    aero_wmat wq, wk, wv, wo;
    if (w->wqkv >= 0) { // fused: Q, K and V are row ranges of one matrix, each output row the same dot as alone
        if (wmat_rows(m, w->wqkv, 0, qd, &wq, err) || wmat_rows(m, w->wqkv, qd, kvd, &wk, err) ||
            wmat_rows(m, w->wqkv, qd + kvd, kvd, &wv, err))
            return err->code;
    } else if (wmat(m, w->wq, &wq, err) || wmat(m, w->wk, &wk, err) || wmat(m, w->wv, &wv, err)) {
        return err->code;
    }
    if (wmat(m, w->wo, &wo, err)) return err->code;
    pre_norm(c->xb, x, n, d, w->attn_norm >= 0 ? vec(m, w->attn_norm) : NULL, hp->norm_eps);
    // one quantization of the normed input for q, k and v (and one pool start)
    aero_matmul_many(m->pool, (const aero_wmat *[]){&wq, &wk, &wv}, 3, c->xb, n, (float *[]){c->q, c->kb, c->vb});
    if (w->bq >= 0) {
        const float *bq = vec(m, w->bq), *bk = vec(m, w->bk), *bv = vec(m, w->bv);
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < qd; j++) c->q[(size_t)i * qd + j] += bq[j];
            for (int j = 0; j < kvd; j++) {
                c->kb[(size_t)i * kvd + j] += bk[j];
                c->vb[(size_t)i * kvd + j] += bv[j];
            }
        }
    }
    if (hp->qk_halves) qk_to_pairs(c, n, qd, kvd, hd);
    const float *qn = w->q_norm >= 0 ? vec(m, w->q_norm) : NULL, *kn = w->k_norm >= 0 ? vec(m, w->k_norm) : NULL;
    bool swa = aero_hparams_swa_layer(hp, l);
    const float *inv_freq = swa && m->rope_inv_freq_swa ? m->rope_inv_freq_swa : c->rope_inv_freq;
    job->window = swa ? hp->n_swa : 0;
    if (hp->qk_norm_full) { // OLMo 2: one norm over each token's whole Q and whole K
        for (int i = 0; i < n; i++) {
            aero_rmsnorm(c->q + (size_t)i * qd, c->q + (size_t)i * qd, qn, qd, hp->norm_eps);
            aero_rmsnorm(c->kb + (size_t)i * kvd, c->kb + (size_t)i * kvd, kn, kvd, hp->norm_eps);
        }
        qn = kn = NULL;
    }
    for (int i = 0; i < n && !hp->no_rope; i++) {
        int pos = job->b->pos[job->first + i];
        for (int h = 0; h < hp->n_head; h++) {
            float *q = c->q + (size_t)i * qd + (size_t)h * hd;
            if (qn) aero_rmsnorm(q, q, qn, hd, hp->norm_eps);
            aero_rope(q, pos, hp->rope_dim, inv_freq, m->rope_neox);
            if (m->rope_mscale != 1.0f) rope_mscale(q, hp->rope_dim, m->rope_mscale);
        }
        for (int h = 0; h < hp->n_head_kv; h++) {
            float *k = c->kb + (size_t)i * kvd + (size_t)h * hd;
            if (kn) aero_rmsnorm(k, k, kn, hd, hp->norm_eps);
            aero_rope(k, pos, hp->rope_dim, inv_freq, m->rope_neox);
            if (m->rope_mscale != 1.0f) rope_mscale(k, hp->rope_dim, m->rope_mscale);
        }
    }
    for (int i = 0; i < n && hp->attn_temp_scale != 0.0f; i++) { // mistral3: Llama 4's query temperature
        float pos = (float)job->b->pos[job->first + i];
        float t = (float)(log(floor(pos / (float)hp->attn_temp_floor) + 1.0) * hp->attn_temp_scale + 1.0);
        for (int j = 0; j < qd; j++) c->q[(size_t)i * qd + j] *= t;
    }
    job->layer = l;
    for (int ci = 0; ci < n; ci++) {
        int i = job->first + ci;
        aero_kv_store(&c->kv, l, job->b->seq ? job->b->seq[i] : 0, job->cell[i], c->kb + (size_t)ci * kvd,
                      c->vb + (size_t)ci * kvd);
    }
    attn_blocks(job);
    aero_pool_run(m->pool, attn_worker, job);
    aero_matmul(m->pool, &wo, c->att, n, c->xb);
    post_norm(c->xb, n, d, w->attn_post_norm >= 0 ? vec(m, w->attn_post_norm) : NULL, hp->norm_eps);
    residual_add(x, c->xb, (size_t)n * d, hp->residual_scale);

ffn:;
    pre_norm(c->xb, x, n, d, w->ffn_norm >= 0 ? vec(m, w->ffn_norm) : NULL, hp->norm_eps);
    if (w->moe) return moe_ffn(c, l, x, n, err);
    aero_wmat wg, wu, wd;
    if (w->w_gate < 0) { // phi3: gate and up fused, gate first
        if (wmat_rows(m, w->w_up, 0, hp->n_ff, &wg, err) || wmat_rows(m, w->w_up, hp->n_ff, hp->n_ff, &wu, err))
            return err->code;
    } else if (wmat(m, w->w_gate, &wg, err) || wmat(m, w->w_up, &wu, err)) {
        return err->code;
    }
    if (wmat(m, w->w_down, &wd, err)) return err->code;
    aero_matmul_many(m->pool, (const aero_wmat *[]){&wg, &wu}, 2, c->xb, n, (float *[]){c->hb, c->hb2});
    if (hp->ffn_gelu) geglu(c->hb, c->hb2, (int64_t)n * hp->n_ff);
    else aero_swiglu(c->hb, c->hb2, (int64_t)n * hp->n_ff);
    aero_matmul(m->pool, &wd, c->hb, n, c->xb);
    post_norm(c->xb, n, d, w->ffn_post_norm >= 0 ? vec(m, w->ffn_post_norm) : NULL, hp->norm_eps);
    residual_add(x, c->xb, (size_t)n * d, hp->residual_scale);
    return AERO_OK;
}

// Token embeddings of the whole batch: stream/ gives the raw rows, dequantized here tile by tile.
static aero_status embed(aero_ctx *c, const aero_batch *b, aero_error *err) {
    aero_model *m = c->m;
    const aero_tensor_info *te = &m->gguf.tensors[m->tok_embd];
    size_t rb = aero_dtype_row_bytes(te->type, te->ne[0]);
    int d = m->hp.n_embd;
    for (int first = 0; first < b->n; first += c->n_tile) {
        int n = b->n - first < c->n_tile ? b->n - first : c->n_tile;
        if (aero_stream_read_rows(m->stream, b->tokens + first, n, c->embd_raw, err)) return err->code;
        for (int i = 0; i < n; i++)
            aero_dequantize_row(te->type, (const char *)c->embd_raw + (size_t)i * rb, c->x + (size_t)(first + i) * d,
                                d);
        if (m->hp.embd_scale > 0) // Gemma: the embedding scaled by sqrt(n_embd)
            for (size_t i = 0; i < (size_t)n * d; i++) c->x[(size_t)first * d + i] *= m->hp.embd_scale;
    }
    return AERO_OK;
}

// Output head over the whole batch: final norm of the wanted rows, then the vocabulary projection, per tile.
// A head streamed in row blocks (rows [row0, row0 + rows) held now) fills those columns of the logits.
static aero_status head(aero_ctx *c, const aero_batch *b, float *logits, int64_t row0, int64_t rows, aero_error *err) {
    aero_model *m = c->m;
    const aero_hparams *hp = &m->hp;
    int d = hp->n_embd;
    aero_wmat wo;
    if (logits && wmat(m, m->output, &wo, err)) return err->code;
    wo.rows = rows;
    const float *on = vec(m, m->out_norm);
    size_t out_row = 0;
    for (int first = 0; first < b->n && logits; first += c->n_tile) {
        int n = b->n - first < c->n_tile ? b->n - first : c->n_tile, nw = 0;
        for (int i = 0; i < n; i++)
            if (!b->want_logits || b->want_logits[first + i])
                aero_rmsnorm(c->logit_in + (size_t)nw++ * d, c->x + (size_t)(first + i) * d, on, d, hp->norm_eps);
        if (nw) aero_matmul_ld(m->pool, &wo, c->logit_in, nw, logits + out_row * hp->n_vocab + row0, hp->n_vocab);
        // on the columns this part of the head filled: Granite divides by its logit scale, Gemma 2 soft-caps
        for (int i = 0; i < nw && (hp->logit_scale != 0.0f || hp->final_softcap > 0); i++) {
            float *lg = logits + (out_row + i) * hp->n_vocab + row0;
            if (hp->logit_scale != 0.0f)
                for (int64_t j = 0; j < rows; j++) lg[j] *= 1.0f / hp->logit_scale;
            if (hp->final_softcap > 0)
                for (int64_t j = 0; j < rows; j++) lg[j] = tanhf(lg[j] * (1.0f / hp->final_softcap)) * hp->final_softcap;
        }
        out_row += nw;
    }
    return AERO_OK;
}

// A draft head (speculative/head.c) drafts in the target's feature space and shares its embeddings: the
// target's token embeddings of n tokens, dequantized (and scaled as the forward pass scales them), into out.
aero_status aero_ctx_embed_rows(aero_ctx *c, const int32_t *tok, int n, float *out, aero_error *err) {
    aero_model *m = c->m;
    const aero_tensor_info *te = &m->gguf.tensors[m->tok_embd];
    size_t rb = aero_dtype_row_bytes(te->type, te->ne[0]);
    int d = m->hp.n_embd;
    for (int i = 0; i < n; i++)
        if (tok[i] < 0 || tok[i] >= m->hp.n_vocab)
            return aero_fail(err, AERO_ERR_INVALID, "token id %d not in the vocabulary [0, %d)", tok[i], m->hp.n_vocab);
    for (int first = 0; first < n; first += c->n_tile) {
        int k = n - first < c->n_tile ? n - first : c->n_tile;
        if (aero_stream_read_rows(m->stream, tok + first, k, c->embd_raw, err)) return err->code;
        for (int i = 0; i < k; i++)
            aero_dequantize_row(te->type, (const char *)c->embd_raw + (size_t)i * rb, out + (size_t)(first + i) * d,
                                d);
        if (m->hp.embd_scale > 0)
            for (size_t i = 0; i < (size_t)k * d; i++) out[(size_t)first * d + i] *= m->hp.embd_scale;
    }
    return AERO_OK;
}

// A draft head predicts the target's normed last hidden state (what aero_ctx_hidden gives): this turns n such
// rows into logits with the target's own vocabulary projection, read through the stream like the forward
// pass's head (a head streamed in row blocks is read block by block).
aero_status aero_ctx_project(aero_ctx *c, const float *h, int n, float *logits, aero_error *err) {
    aero_model *m = c->m;
    const aero_hparams *hp = &m->hp;
#ifdef AERO_CUDA
    if (c->gpu) return aero_gpu_project(c, h, n, logits, err);
#endif
    for (int part = 0; part < aero_stream_head_parts(m->stream); part++) {
        int64_t row0, rows;
        aero_wmat wo;
        if (aero_stream_acquire_head_part(m->stream, part, &row0, &rows, err)) return err->code;
        aero_status st = wmat(m, m->output, &wo, err);
        if (!st) {
            wo.rows = rows;
            aero_matmul_ld(m->pool, &wo, h, n, logits + row0, hp->n_vocab);
            for (int i = 0; i < n && (hp->logit_scale != 0.0f || hp->final_softcap > 0); i++) {
                float *lg = logits + (size_t)i * hp->n_vocab + row0;
                if (hp->logit_scale != 0.0f)
                    for (int64_t j = 0; j < rows; j++) lg[j] *= 1.0f / hp->logit_scale;
                if (hp->final_softcap > 0)
                    for (int64_t j = 0; j < rows; j++)
                        lg[j] = tanhf(lg[j] * (1.0f / hp->final_softcap)) * hp->final_softcap;
            }
        }
        aero_stream_release(m->stream, aero_stream_head_unit(m->stream));
        if (st) return st;
    }
    return AERO_OK;
}

// Checks a batch completely before anything is written, so a bad batch changes nothing.
static aero_status validate_batch(const aero_ctx *c, const aero_batch *b, int *added, aero_error *err) {
    if (b->n <= 0 || !b->tokens || !b->pos) return aero_fail(err, AERO_ERR_INVALID, "empty batch");
    memset(added, 0, sizeof(int) * c->n_seq);
    for (int i = 0; i < b->n; i++) {
        int seq = b->seq ? b->seq[i] : 0;
        if (seq < 0 || seq >= c->n_seq)
            return aero_fail(err, AERO_ERR_INVALID, "batch token %d: sequence %d not in [0, %d)", i, seq, c->n_seq);
        if (b->tokens[i] < 0 || b->tokens[i] >= c->m->hp.n_vocab)
            return aero_fail(err, AERO_ERR_INVALID, "batch token %d: id %d not in the vocabulary [0, %d)", i,
                             b->tokens[i], c->m->hp.n_vocab);
        if (b->pos[i] < 0) return aero_fail(err, AERO_ERR_INVALID, "batch token %d: negative position", i);
        if (b->mask)
            for (int j = i + 1; j < b->n; j++)
                if (b->mask[(size_t)i * b->n + j])
                    return aero_fail(err, AERO_ERR_INVALID, "batch mask: token %d attends to later token %d", i, j);
        added[seq]++;
    }
    for (int s = 0; s < c->n_seq; s++)
        if (added[s] && c->kv.len[s] + added[s] > c->n_ctx)
            return aero_fail(err, AERO_ERR_RANGE,
                             "context overflow: sequence %d holds %d tokens, %d more exceed the "
                             "context size %d",
                             s, c->kv.len[s], added[s], c->n_ctx);
    return AERO_OK;
}

// Checks the batch, grows the buffers and gives each token its cache cell (base: the sequences' lengths before
// the batch, added: the batch's tokens per sequence); the first step of aero_decode and of a pipeline rank's pass.
aero_status aero_forward_begin(aero_ctx *c, const aero_batch *b, int *cell, int *base, int *added, aero_error *err) {
    aero_status st = validate_batch(c, b, added, err);
    if (st || (st = ensure_cap(c, b->n, err))) return st;
    memcpy(base, c->kv.len, sizeof(int) * c->n_seq);
    for (int s = 0; s < c->n_seq; s++) added[s] = 0;
    for (int i = 0; i < b->n; i++) {
        int seq = b->seq ? b->seq[i] : 0;
        cell[i] = base[seq] + added[seq]++;
    }
    return AERO_OK;
}

// Rank 0 of a pipeline embeds the whole batch before cutting it into micro-batches.
aero_status aero_forward_embed(aero_ctx *c, const aero_batch *b, aero_error *err) { return embed(c, b, err); }

// Layers [l0, l1) over batch tokens [t0, t1) of c->x: each layer acquired once, every tile of the range computed
// while it is held. A pipeline rank runs its own layer range; one process runs them all.
aero_status aero_forward_layers(aero_ctx *c, const aero_batch *b, const int *cell, const int *base, int t0, int t1,
                                int l0, int l1, aero_error *err) {
    aero_model *m = c->m;
    aero_status st = AERO_OK;
    for (int l = l0; l < l1; l++) {
        if ((st = aero_stream_acquire(m->stream, l, err))) return st;
        for (int first = t0; first < t1 && !st; first += c->n_tile) {
            attn_job job = {.c = c,
                            .n = t1 - first < c->n_tile ? t1 - first : c->n_tile,
                            .first = first,
                            .b = b,
                            .cell = cell,
                            .base = base,
                            .block_start = c->block_start};
            st = layer_tile(c, l, &job, err);
        }
        aero_stream_release(m->stream, l);
        if (st) return st;
    }
    return AERO_OK;
}

// The output head over the whole batch, part by part when the head is streamed in row blocks.
aero_status aero_forward_head(aero_ctx *c, const aero_batch *b, float *logits, aero_error *err) {
    aero_model *m = c->m;
    aero_status st = AERO_OK;
    for (int part = 0; part < aero_stream_head_parts(m->stream); part++) {
        int64_t row0, rows;
        if ((st = aero_stream_acquire_head_part(m->stream, part, &row0, &rows, err))) return st;
        st = head(c, b, logits, row0, rows, err);
        aero_stream_release(m->stream, aero_stream_head_unit(m->stream));
        if (st) return st;
    }
    return AERO_OK;
}

// Layer by layer, every tile of the batch: a streamed layer is read once per call whatever the batch length
// (a long prompt costs one pass over the weights), while -b bounds the activations computed at once.
aero_status aero_decode(aero_ctx *c, const aero_batch *b, float *logits, aero_error *err) {
    aero_model *m = c->m;
    const aero_hparams *hp = &m->hp;
    int *added = malloc(sizeof(int) * c->n_seq), *base = malloc(sizeof(int) * c->n_seq);
    int *cell = malloc(sizeof(int) * (b->n > 0 ? b->n : 1));
    aero_status st = AERO_OK;
    if (!added || !base || !cell) {
        st = aero_fail(err, AERO_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((st = aero_forward_begin(c, b, cell, base, added, err))) goto done;
#ifdef AERO_CUDA
    if (c->gpu) {
        if ((st = aero_gpu_decode(c, b, cell, base, logits, err))) goto rollback;
        for (int s = 0; s < c->n_seq; s++) c->kv.len[s] = base[s] + added[s];
        goto done;
    }
#endif
    if (m->pipe) { // rank 0 of a pipeline: its layers here, the others on the other ranks (src/mpi/pipeline.c)
        if ((st = aero_pipe_decode(c, b, cell, base, logits, err))) goto rollback;
    } else if ((st = embed(c, b, err)) || (st = aero_forward_layers(c, b, cell, base, 0, b->n, 0, hp->n_layer, err)) ||
               (st = aero_forward_head(c, b, logits, err))) {
        goto rollback;
    }
    for (int s = 0; s < c->n_seq; s++) c->kv.len[s] = base[s] + added[s];
    goto done;
rollback:
    memcpy(c->kv.len, base, sizeof(int) * c->n_seq); // entries written past the old lengths are simply unused
done:
    free(added);
    free(base);
    free(cell);
    return st;
}
