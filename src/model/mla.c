// Multi-head latent attention of deepseek2 models (mla.h): hyperparameters, the latent KV cache, YaRN
// frequencies, and the attention block of one tile. Every per-token result is computed in a fixed order
// (row-wise batch-invariant matmuls, keys visited in ascending cell order), so a token's output does not
// depend on its batch, its tile or the thread count, as forward.c's attention guarantees for the others.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"

// Reads "<arch>.<suffix>" as a non-negative integer; absent gives dflt (or fails when required).
static aero_status key_int(const aero_gguf *g, const char *suffix, bool required, int64_t dflt, int64_t *out,
                           aero_error *err) {
    char key[160];
    snprintf(key, sizeof key, "deepseek2.%s", suffix);
    if (aero_gguf_get_i64(g, key, out)) {
        if (*out < 0 || *out > (1 << 20))
            return aero_fail(err, AERO_ERR_FORMAT, "metadata %s = %lld is out of range", key, (long long)*out);
        return AERO_OK;
    }
    if (aero_gguf_get(g, key)) return aero_fail(err, AERO_ERR_FORMAT, "metadata %s has the wrong type", key);
    if (required) return aero_fail(err, AERO_ERR_FORMAT, "metadata %s is missing", key);
    *out = dflt;
    return AERO_OK;
}

static aero_status key_float(const aero_gguf *g, const char *suffix, double dflt, double *out, aero_error *err) {
    char key[160];
    snprintf(key, sizeof key, "deepseek2.%s", suffix);
    if (aero_gguf_get_f64(g, key, out)) return AERO_OK;
    if (aero_gguf_get(g, key)) return aero_fail(err, AERO_ERR_FORMAT, "metadata %s has the wrong type", key);
    *out = dflt;
    return AERO_OK;
}

aero_status aero_mla_hparams_read(const aero_gguf *g, aero_hparams *hp, aero_mla_params *p, aero_error *err) {
    memset(p, 0, sizeof *p);
    int64_t q_lora, kv_lora, k_mla, v_mla, key_len, val_len, rope, lead, orig, nextn;
    double log_mul, beta_fast, beta_slow;
    if (key_int(g, "attention.q_lora_rank", false, 0, &q_lora, err) ||
        key_int(g, "attention.kv_lora_rank", true, 0, &kv_lora, err) ||
        key_int(g, "attention.key_length_mla", false, 0, &k_mla, err) ||
        key_int(g, "attention.value_length_mla", false, 0, &v_mla, err) ||
        key_int(g, "attention.key_length", false, hp->n_embd / hp->n_head, &key_len, err) ||
        key_int(g, "attention.value_length", false, key_len, &val_len, err) ||
        key_int(g, "rope.dimension_count", true, 0, &rope, err) ||
        key_int(g, "leading_dense_block_count", false, 0, &lead, err) ||
        key_int(g, "rope.scaling.original_context_length", false, hp->n_ctx_train, &orig, err) ||
        key_float(g, "rope.scaling.yarn_log_multiplier", 0.0, &log_mul, err) ||
        key_float(g, "rope.scaling.yarn_beta_fast", 32.0, &beta_fast, err) ||
        key_float(g, "rope.scaling.yarn_beta_slow", 1.0, &beta_slow, err) ||
        key_int(g, "nextn_predict_layers", false, 0, &nextn, err))
        return err->code;
    // The multi-token-prediction blocks (DeepSeek-V3/R1's blk.61) are stored as the last nextn layers counted in
    // block_count. Plain decoding does not run them (llama.cpp builds n_layer - nextn_predict_layers layers), so
    // the model is the layers before them; the planner never reads a tensor of a layer past n_layer. Set from
    // block_count, not from hp->n_layer, so that reading twice gives the same count.
    int64_t n_block;
    if (key_int(g, "block_count", true, 0, &n_block, err)) return err->code;
    if (nextn < 0 || nextn >= n_block)
        return aero_fail(err, AERO_ERR_FORMAT, "deepseek2: nextn_predict_layers %lld of %lld blocks", (long long)nextn,
                         (long long)n_block);
    hp->n_layer = (int)(n_block - nextn);
    p->n_nextn = (int)nextn;
    // llama.cpp reads no q_lora_rank for the "lite" layer counts (V2-Lite, GigaChat3): their query is attn_q
    if (n_block == 26 || n_block == 27) q_lora = 0;
    // files written since llama.cpp's MLA cache carry the decompressed head sizes in *_mla keys (key_length is
    // then the cache row, value_length the latent) and attn_k_b/attn_v_b; older ones attn_kv_b
    if ((k_mla != 0) != (v_mla != 0))
        return aero_fail(err, AERO_ERR_FORMAT, "deepseek2.attention.key_length_mla and value_length_mla come together");
    p->split_kv_b = k_mla != 0;
    int64_t kq = p->split_kv_b ? k_mla : key_len, v = p->split_kv_b ? v_mla : val_len;
    if (kv_lora < 1 || rope < 2 || rope % 2 || kq <= rope || v < 1 || lead > hp->n_layer)
        return aero_fail(err, AERO_ERR_FORMAT,
                         "deepseek2: kv_lora_rank %lld, rope.dimension_count %lld, key length %lld, value length "
                         "%lld, leading_dense_block_count %lld are inconsistent",
                         (long long)kv_lora, (long long)rope, (long long)kq, (long long)v, (long long)lead);
    if (hp->rope_scaling == AERO_ROPE_SCALING_LINEAR || hp->rope_scaling == AERO_ROPE_SCALING_LLAMA3)
        return aero_fail(err, AERO_ERR_UNSUPPORTED, "deepseek2: rope scaling other than yarn is not supported");
    p->q_lora_rank = (int)q_lora;
    p->kv_lora_rank = (int)kv_lora;
    p->qk_rope = (int)rope;
    p->qk_nope = (int)(kq - rope);
    p->v_head = (int)v;
    p->n_dense_lead = (int)lead;
    // llama.cpp's kq_scale: the YaRN magnitude (1 + 0.1 * mscale_all_dim * ln(factor), the converter storing
    // 0.1 * mscale_all_dim as the log multiplier) squared, over sqrt of the decompressed query head size
    float mscale = 1.0f;
    if (hp->rope_scaling == AERO_ROPE_SCALING_YARN) {
        if (!(hp->rope_scale_factor >= 1))
            return aero_fail(err, AERO_ERR_FORMAT, "deepseek2.rope.scaling.factor %g is invalid for yarn",
                             hp->rope_scale_factor);
        float freq_scale = 1.0f / hp->rope_scale_factor, lm = (float)log_mul / 0.1f;
        mscale = 1.0f + 0.1f * lm * logf(1.0f / freq_scale);
        hp->rope_orig_ctx = (int)orig;
        hp->rope_yarn_beta_fast = (float)beta_fast;
        hp->rope_yarn_beta_slow = (float)beta_slow;
    }
    p->kq_scale = mscale * mscale / sqrtf((float)kq);
    // the cache: one head of the latent and the rotary key, no V
    hp->n_head_kv = 1;
    hp->head_dim = (int)(kv_lora + rope);
    hp->rope_dim = (int)rope;
    hp->kv_lora_rank = (int)kv_lora;
    return AERO_OK;
}

// Scratch of one context: per tile, and per thread for the per-head projections and attention.
struct aero_mla_work {
    float *qa;    // n x q_lora_rank
    float *q;     // n x n_head x (qk_nope + qk_rope)
    float *kvp;   // n x (kv_lora_rank + qk_rope): the latent and the rotary key of each token
    float *vout;  // n x n_head x v_head
    float *gin;   // per thread: n x max(qk_nope, kv_lora_rank)
    float *gout;  // per thread: n x max(kv_lora_rank, v_head)
    float *deq;   // per thread: one kv_lora_rank row of attn_kv_b (older files)
    size_t g_in, g_out;
};

void aero_mla_ctx_free(aero_ctx *c) {
    struct aero_mla_work *w = c->mla;
    if (!w) return;
    free(w->qa);
    free(w->q);
    free(w->kvp);
    free(w->vout);
    free(w->gin);
    free(w->gout);
    free(w->deq);
    free(w);
    c->mla = NULL;
}

aero_status aero_mla_ctx_init(aero_ctx *c, const aero_ctx_params *p, aero_error *err) {
    const aero_model *m = c->m;
    const aero_hparams *hp = &m->hp;
    const aero_mla_params *a = &m->mla;
    aero_kv_cache *kv = &c->kv;
    memset(kv, 0, sizeof *kv);
    if (p->kv_recent > 0)
        return aero_fail(err, AERO_ERR_UNSUPPORTED, "--kv-recent: deepseek2's latent cache keeps no F16 copies");
    aero_dtype tk = aero_kv_type_dtype(p->type_k, p->kv_f32);
    int W = hp->head_dim; // kv_lora_rank + qk_rope
    kv->n_layer = hp->n_layer;
    kv->n_seq = c->n_seq;
    kv->n_ctx = c->n_ctx;
    kv->head_dim = kv->kv_dim = W;
    kv->type_k = kv->type_v = tk; // -ctv has nothing to store: the values are the latent part of K
    kv->row_k = aero_dtype_row_bytes(tk, (uint64_t)W);
    kv->row_v = 0;
    size_t cells = (size_t)c->n_seq * c->n_ctx;
    kv->k = calloc(hp->n_layer, sizeof *kv->k);
    kv->v = calloc(hp->n_layer, sizeof *kv->v);
    kv->len = calloc(c->n_seq, sizeof *kv->len);
    struct aero_mla_work *w = c->mla = calloc(1, sizeof *w);
    if (!kv->k || !kv->v || !kv->len || !w) goto oom;
    for (int l = 0; l < hp->n_layer; l++) {
        kv->k[l] = aero_alloc_aligned(64, cells * kv->row_k);
        kv->v[l] = aero_alloc_aligned(64, 64); // rows of 0 bytes: cell moves are no-ops, never a NULL pointer
        if (!kv->k[l] || !kv->v[l]) goto oom;
    }
    size_t n = (size_t)c->n_tile, H = (size_t)hp->n_head, nt = (size_t)m->n_threads;
    size_t kq = (size_t)a->qk_nope + a->qk_rope, L = (size_t)a->kv_lora_rank;
    w->g_in = n * (L > (size_t)a->qk_nope ? L : (size_t)a->qk_nope);
    w->g_out = n * (L > (size_t)a->v_head ? L : (size_t)a->v_head);
    w->qa = malloc(sizeof(float) * n * (a->q_lora_rank > 0 ? a->q_lora_rank : 1));
    w->q = malloc(sizeof(float) * n * H * kq);
    w->kvp = malloc(sizeof(float) * n * W);
    w->vout = malloc(sizeof(float) * n * H * a->v_head);
    w->gin = malloc(sizeof(float) * nt * w->g_in);
    w->gout = malloc(sizeof(float) * nt * w->g_out);
    w->deq = malloc(sizeof(float) * nt * L);
    if (!w->qa || !w->q || !w->kvp || !w->vout || !w->gin || !w->gout || !w->deq) goto oom;
    return AERO_OK;
oom:
    aero_mla_ctx_free(c);
    aero_kv_cache_free(kv);
    return aero_fail(err, AERO_ERR_NOMEM, "cannot allocate the latent KV cache (%d layers x %d sequences x %d tokens)",
                     hp->n_layer, c->n_seq, c->n_ctx);
}

// A matrix of an acquired unit (a 2-D tensor, or the whole of a 3-D one as its first two dimensions).
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

// A norm vector: small tensors are always resident.
static const float *vec(aero_model *m, int64_t t) {
    const float *p = aero_stream_global(m->stream, t);
    return p ? p : aero_stream_tensor(m->stream, t);
}

// Rows [r0, r0 + rows) of a matrix, a matrix of their own (one head's slice).
static aero_wmat rows_of(const aero_wmat *w, int64_t r0, int64_t rows) {
    aero_wmat s = *w;
    s.data = (const uint8_t *)w->data + (size_t)r0 * w->row_bytes;
    s.rows = rows;
    return s;
}

// What the per-head jobs share.
typedef struct {
    aero_ctx *c;
    int n, layer;
    aero_wmat kb, vb, kvb; // attn_k_b / attn_v_b whole (rows kv_lora x n_head / v_head x n_head), or attn_kv_b
    bool split;
    const aero_batch *b;
    int first;
    const int *cell, *base;
    int n_blocks, *block_start, chunk; // attention: blocks of queries x chunks of heads
} mla_job;

// Absorbs each head's q_nope into the latent space: qcat[t][h][0, kv_lora) = W_k(h) q_nope(t, h), W_k(h) the
// head's kv_lora x qk_nope slice of attn_k_b (or, in older files, the transpose of its k rows of attn_kv_b).
static void absorb_worker(void *arg, int ith, int nth) {
    mla_job *j = arg;
    aero_ctx *c = j->c;
    const aero_model *m = c->m;
    const aero_mla_params *a = &m->mla;
    struct aero_mla_work *w = c->mla;
    int H = m->hp.n_head, nope = a->qk_nope, kq = nope + a->qk_rope, L = a->kv_lora_rank, W = L + a->qk_rope;
    float *gin = w->gin + (size_t)ith * w->g_in, *gout = w->gout + (size_t)ith * w->g_out;
    float *deq = w->deq + (size_t)ith * L;
    long h0, h1;
    aero_pool_split(H, ith, nth, &h0, &h1);
    for (int h = (int)h0; h < h1; h++) {
        if (j->split) {
            for (int t = 0; t < j->n; t++)
                memcpy(gin + (size_t)t * nope, w->q + ((size_t)t * H + h) * kq, sizeof(float) * nope);
            aero_wmat wk = rows_of(&j->kb, (int64_t)h * L, L);
            aero_matmul(m->pool, &wk, gin, j->n, gout); // inside a job of the same pool: runs on this thread
        } else {
            // gout[t] = sum_i q_nope(t, h)[i] * row (h * (nope + v) + i) of attn_kv_b, rows in ascending i
            memset(gout, 0, sizeof(float) * (size_t)j->n * L);
            for (int i = 0; i < nope; i++) {
                const uint8_t *row = (const uint8_t *)j->kvb.data + (size_t)((int64_t)h * (nope + a->v_head) + i) *
                                                                        j->kvb.row_bytes;
                aero_dequantize_row(j->kvb.type, row, deq, L);
                for (int t = 0; t < j->n; t++) {
                    float s = w->q[((size_t)t * H + h) * kq + i];
                    float *o = gout + (size_t)t * L;
                    for (int e = 0; e < L; e++) o[e] += s * deq[e];
                }
            }
        }
        for (int t = 0; t < j->n; t++)
            memcpy(c->q + ((size_t)t * H + h) * W, gout + (size_t)t * L, sizeof(float) * L);
    }
}

// Whether batch token i may attend to batch token j (same sequence, causal or per the tree mask).
static bool visible(const aero_batch *b, int i, int j) {
    if (j > i) return false;
    if (b->seq && b->seq[i] != b->seq[j]) return false;
    return b->mask ? b->mask[(size_t)i * b->n + j] != 0 : true;
}

#define MLA_BLOCK 32 // queries of one sequence sharing one conversion of the latent rows

// Work items are (block of same-sequence queries, chunk of heads): one conversion of the block's latent rows
// to f32 serves every head of the chunk; each head's scores and sum are those of aero_attention, in ascending
// cell order, whatever the split.
static void attn_worker(void *arg, int ith, int nth) {
    mla_job *j = arg;
    aero_ctx *c = j->c;
    const aero_model *m = c->m;
    int H = m->hp.n_head, W = m->hp.head_dim, n_chunks = (H + j->chunk - 1) / j->chunk;
    float *scores = c->scores + (size_t)ith * c->n_ctx, *kf = c->kf + (size_t)ith * c->n_ctx * W;
    int *rows = c->rows + (size_t)ith * c->n_ctx;
    long begin, end;
    aero_pool_split((long)j->n_blocks * n_chunks, ith, nth, &begin, &end);
    int converted = -1; // the block whose rows are in kf
    for (long it = begin; it < end; it++) {
        int blk = (int)(it / n_chunks), ch = (int)(it % n_chunks);
        int b0 = j->block_start[blk], b1 = j->block_start[blk + 1];
        int seq = j->b->seq ? j->b->seq[j->first + b0] : 0;
        if (converted != blk) {
            aero_kv_head_f32(&c->kv, false, j->layer, seq, 0, j->cell[j->first + b1 - 1] + 1, kf);
            converted = blk;
        }
        for (int ci = b0; ci < b1; ci++) {
            int i = j->first + ci, nb = j->base[seq], ns = 0;
            for (int t = 0; t < nb; t++) rows[ns++] = t;
            for (int t = 0; t <= i; t++)
                if (visible(j->b, i, t)) rows[ns++] = j->cell[t];
            for (int h = ch * j->chunk; h < (ch + 1) * j->chunk && h < H; h++) {
                size_t at = ((size_t)ci * H + h) * W;
                // the value of a cached row is its latent part: out[kv_lora..W) (the weighted rotary keys) is unused
                aero_attention(c->att + at, c->q + at, kf, kf, rows, ns, W, m->mla.kq_scale, scores);
            }
        }
    }
}

// Each head's value: W_v(h) o_lat(t, h), the head's v_head x kv_lora slice of attn_v_b (or of attn_kv_b's v rows).
static void value_worker(void *arg, int ith, int nth) {
    mla_job *j = arg;
    aero_ctx *c = j->c;
    const aero_model *m = c->m;
    const aero_mla_params *a = &m->mla;
    struct aero_mla_work *w = c->mla;
    int H = m->hp.n_head, L = a->kv_lora_rank, W = L + a->qk_rope, V = a->v_head;
    float *gin = w->gin + (size_t)ith * w->g_in, *gout = w->gout + (size_t)ith * w->g_out;
    long h0, h1;
    aero_pool_split(H, ith, nth, &h0, &h1);
    for (int h = (int)h0; h < h1; h++) {
        for (int t = 0; t < j->n; t++)
            memcpy(gin + (size_t)t * L, c->att + ((size_t)t * H + h) * W, sizeof(float) * L);
        aero_wmat wv = j->split ? rows_of(&j->vb, (int64_t)h * V, V)
                                : rows_of(&j->kvb, (int64_t)h * (a->qk_nope + V) + a->qk_nope, V);
        aero_matmul(m->pool, &wv, gin, j->n, gout);
        for (int t = 0; t < j->n; t++)
            memcpy(w->vout + ((size_t)t * H + h) * V, gout + (size_t)t * V, sizeof(float) * V);
    }
}

// Writes one token's cache row (latent then rotary key) in the cache type.
static void store(aero_kv_cache *kv, int layer, int seq, int cell, const float *row) {
    void *dst = aero_kv_cell(kv, false, layer, seq, cell);
    if (kv->type_k == AERO_DT_F32) memcpy(dst, row, sizeof(float) * kv->kv_dim);
    else if (kv->type_k == AERO_DT_F16) aero_f32_to_f16_row(row, dst, kv->kv_dim);
    else aero_quantize_row(kv->type_k, row, dst, kv->kv_dim);
}

aero_status aero_mla_attention(aero_ctx *c, int l, const aero_batch *b, int first, int n, const int *cell,
                               const int *base, aero_error *err) {
    aero_model *m = c->m;
    const aero_hparams *hp = &m->hp;
    const aero_mla_params *a = &m->mla;
    const aero_layer_weights *lw = &m->layers[l];
    struct aero_mla_work *w = c->mla;
    int d = hp->n_embd, H = hp->n_head, nope = a->qk_nope, R = a->qk_rope, kq = nope + R, L = a->kv_lora_rank;
    int W = L + R;
    float *x = c->x + (size_t)first * d;
    mla_job job = {.c = c, .n = n, .layer = l, .split = a->split_kv_b, .b = b, .first = first, .cell = cell,
                   .base = base, .block_start = c->block_start};
    aero_wmat wq, wqa, wqb, wkva, wo;
    if (wmat(m, lw->wkv_a, &wkva, err) || wmat(m, lw->wo, &wo, err)) return err->code;
    if (a->split_kv_b ? (wmat(m, lw->wk_b, &job.kb, err) || wmat(m, lw->wv_b, &job.vb, err))
                      : wmat(m, lw->wkv_b, &job.kvb, err))
        return err->code;
    const float *an = vec(m, lw->attn_norm), *kvn = vec(m, lw->kv_a_norm);
    for (int i = 0; i < n; i++) aero_rmsnorm(c->xb + (size_t)i * d, x + (size_t)i * d, an, d, hp->norm_eps);
    if (a->q_lora_rank > 0) {
        if (wmat(m, lw->wq_a, &wqa, err) || wmat(m, lw->wq_b, &wqb, err)) return err->code;
        const float *qan = vec(m, lw->q_a_norm);
        int Q = a->q_lora_rank;
        aero_matmul(m->pool, &wqa, c->xb, n, w->qa);
        for (int i = 0; i < n; i++) aero_rmsnorm(w->qa + (size_t)i * Q, w->qa + (size_t)i * Q, qan, Q, hp->norm_eps);
        aero_matmul(m->pool, &wqb, w->qa, n, w->q);
    } else {
        if (wmat(m, lw->wq, &wq, err)) return err->code;
        aero_matmul(m->pool, &wq, c->xb, n, w->q);
    }
    aero_matmul(m->pool, &wkva, c->xb, n, w->kvp);
    for (int ci = 0; ci < n; ci++) {
        int i = first + ci, pos = b->pos[i];
        float *row = w->kvp + (size_t)ci * W;
        aero_rope(row + L, pos, R, m->rope_inv_freq, false);
        aero_rmsnorm(row, row, kvn, L, hp->norm_eps);
        store(&c->kv, l, b->seq ? b->seq[i] : 0, cell[i], row);
        for (int h = 0; h < H; h++) { // the query's rotary part goes after its absorbed latent part, as in the row
            float *qp = w->q + ((size_t)ci * H + h) * kq + nope;
            aero_rope(qp, pos, R, m->rope_inv_freq, false);
            memcpy(c->q + ((size_t)ci * H + h) * W + L, qp, sizeof(float) * R);
        }
    }
    aero_pool_run(m->pool, absorb_worker, &job);
    // blocks of consecutive same-sequence queries, and chunks of heads so that a single query uses every thread
    int nb = 0;
    job.block_start[0] = 0;
    for (int ci = 1; ci <= n; ci++) {
        bool cut = ci == n || ci - job.block_start[nb] >= MLA_BLOCK;
        if (!cut && b->seq) cut = b->seq[first + ci] != b->seq[first + ci - 1];
        if (cut) job.block_start[++nb] = ci;
    }
    job.n_blocks = nb;
    int nt = m->n_threads, per = (nt + nb - 1) / nb; // chunks per block to give every thread work
    job.chunk = (H + per - 1) / per;
    aero_pool_run(m->pool, attn_worker, &job);
    aero_pool_run(m->pool, value_worker, &job);
    aero_matmul(m->pool, &wo, w->vout, n, c->xb);
    for (size_t i = 0; i < (size_t)n * d; i++) x[i] += c->xb[i];
    return AERO_OK;
}
