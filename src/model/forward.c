// The forward pass over a batch (prefill, decoding, speculative verification and server batching are all
// this one call) and the KV cache it appends to. Every per-token result is computed in a fixed order, so a
// token's logits do not depend on what else is in its batch (invariant 3).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"

#define MAX_CHUNK 512     // tokens per internal pass: bounds activation memory

struct aero_ctx {
    aero_model *m;
    int n_ctx, n_seq, kv_dim;
    bool kv_f32;
    void **k, **v;          // [layer][seq][slot][kv_dim], F16 or F32
    int *len;               // per seq: slots in use
    // activations for one chunk
    float *x, *xb, *q, *kb, *vb, *att, *hb, *hb2, *logit_in;
    float *scores;          // per thread: n_ctx + MAX_CHUNK attention scores
    float *kf, *vf;         // per thread: one KV head of a sequence's cache in f32 (n_ctx x head_dim each)
};

// Bytes of one cached K or V row.
static size_t kv_row_bytes(const aero_ctx *c) { return (size_t)c->kv_dim * (c->kv_f32 ? 4 : 2); }

static void *kv_row(const aero_ctx *c, void **base, int layer, int seq, int slot) {
    return (char *)base[layer] + ((size_t)seq * c->n_ctx + slot) * kv_row_bytes(c);
}

aero_status aero_ctx_new(aero_ctx **out, aero_model *m, const aero_ctx_params *p, aero_error *err) {
    *out = NULL;
    const aero_hparams *hp = &m->hp;
    aero_ctx *c = calloc(1, sizeof *c);
    if (!c) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    c->m = m;
    c->n_ctx = p->n_ctx > 0 ? p->n_ctx : (hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096);
    c->n_seq = p->n_seq > 0 ? p->n_seq : 1;
    c->kv_f32 = p->kv_f32;
    c->kv_dim = hp->n_head_kv * hp->head_dim;
    if (c->n_ctx > (1 << 24) || c->n_seq > 4096) {
        int n_ctx = c->n_ctx, n_seq = c->n_seq;
        free(c);
        return aero_fail(err, AERO_ERR_INVALID, "context %d x %d sequences is too large", n_ctx, n_seq);
    }
    size_t per_layer = (size_t)c->n_seq * c->n_ctx * kv_row_bytes(c);
    c->k = calloc(hp->n_layer, sizeof *c->k);
    c->v = calloc(hp->n_layer, sizeof *c->v);
    c->len = calloc(c->n_seq, sizeof *c->len);
    if (!c->k || !c->v || !c->len) goto oom;
    for (int l = 0; l < hp->n_layer; l++) {
        c->k[l] = aero_alloc_aligned(64, per_layer);
        c->v[l] = aero_alloc_aligned(64, per_layer);
        if (!c->k[l] || !c->v[l]) goto oom;
    }
    size_t n = MAX_CHUNK, d = hp->n_embd, qd = (size_t)hp->n_head * hp->head_dim, nt = m->n_threads;
    c->x = malloc(sizeof(float) * n * d);
    c->xb = malloc(sizeof(float) * n * (d > qd ? d : qd));
    c->q = malloc(sizeof(float) * n * qd);
    c->kb = malloc(sizeof(float) * n * c->kv_dim);
    c->vb = malloc(sizeof(float) * n * c->kv_dim);
    c->att = malloc(sizeof(float) * n * qd);
    c->hb = malloc(sizeof(float) * n * hp->n_ff);
    c->hb2 = malloc(sizeof(float) * n * hp->n_ff);
    c->logit_in = malloc(sizeof(float) * n * d);
    c->scores = malloc(sizeof(float) * nt * (c->n_ctx + MAX_CHUNK));
    c->kf = malloc(sizeof(float) * nt * c->n_ctx * hp->head_dim);
    c->vf = malloc(sizeof(float) * nt * c->n_ctx * hp->head_dim);
    if (!c->x || !c->xb || !c->q || !c->kb || !c->vb || !c->att || !c->hb || !c->hb2 || !c->logit_in || !c->scores ||
        !c->kf || !c->vf)
        goto oom;
    *out = c;
    return AERO_OK;
oom:
    aero_ctx_free(c);
    return aero_fail(err, AERO_ERR_NOMEM, "cannot allocate the KV cache (%d layers x %d sequences x %d tokens)",
                     hp->n_layer, p->n_seq > 0 ? p->n_seq : 1, p->n_ctx);
}

void aero_ctx_free(aero_ctx *c) {
    if (!c) return;
    for (int l = 0; c->k && l < c->m->hp.n_layer; l++) free(c->k[l]);
    for (int l = 0; c->v && l < c->m->hp.n_layer; l++) free(c->v[l]);
    free(c->k);
    free(c->v);
    free(c->len);
    free(c->x);
    free(c->xb);
    free(c->q);
    free(c->kb);
    free(c->vb);
    free(c->att);
    free(c->hb);
    free(c->hb2);
    free(c->logit_in);
    free(c->scores);
    free(c->kf);
    free(c->vf);
    free(c);
}

int aero_ctx_n_ctx(const aero_ctx *c) { return c->n_ctx; }
int aero_ctx_n_seq(const aero_ctx *c) { return c->n_seq; }
aero_model *aero_ctx_model(aero_ctx *c) { return c->m; }

int aero_kv_len(const aero_ctx *c, int seq) { return seq >= 0 && seq < c->n_seq ? c->len[seq] : 0; }

void aero_kv_truncate(aero_ctx *c, int seq, int len) {
    if (seq < 0 || seq >= c->n_seq || len < 0) return;
    if (len < c->len[seq]) c->len[seq] = len;
}

void aero_kv_drop(aero_ctx *c, int seq) { aero_kv_truncate(c, seq, 0); }

void aero_kv_keep(aero_ctx *c, int seq, int base, const int *keep, int n_keep) {
    if (seq < 0 || seq >= c->n_seq || base < 0 || base > c->len[seq]) return;
    size_t rb = kv_row_bytes(c);
    int kept = 0;
    for (int i = 0; i < n_keep; i++) {
        int from = base + keep[i];
        if (from >= c->len[seq] || (i > 0 && keep[i] <= keep[i - 1])) break;
        int to = base + kept;
        if (from != to)
            for (int l = 0; l < c->m->hp.n_layer; l++) {
                memmove(kv_row(c, c->k, l, seq, to), kv_row(c, c->k, l, seq, from), rb);
                memmove(kv_row(c, c->v, l, seq, to), kv_row(c, c->v, l, seq, from), rb);
            }
        kept++;
    }
    c->len[seq] = base + kept;
}

// x = x / rms(x) * w, in a fixed order.
static void rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    float ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    ss = 1.0f / sqrtf(ss / n + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * ss * w[i];
}

// Rotates one head's vector by its position: adjacent pairs (llama) or the two halves (NeoX/qwen).
static void rope(float *v, int pos, int rope_dim, int head_dim, const float *inv_freq, bool neox) {
    int half = rope_dim / 2;
    for (int i = 0; i < half; i++) {
        float theta = (float)pos * inv_freq[i];
        float c = cosf(theta), s = sinf(theta);
        int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
        float x0 = v[a], x1 = v[b];
        v[a] = x0 * c - x1 * s;
        v[b] = x0 * s + x1 * c;
    }
    (void)head_dim;
}

static aero_wmat wmat(aero_model *m, int64_t t) {
    const aero_tensor_info *ti = &m->gguf.tensors[t];
    return (aero_wmat){
        .data = aero_stream_tensor(m->stream, t),
        .type = ti->type,
        .cols = (int64_t)ti->ne[0],
        .rows = (int64_t)ti->ne[1],
        .row_bytes = aero_dtype_row_bytes(ti->type, ti->ne[0]),
    };
}

static const float *vec(aero_model *m, int64_t t) {
    const float *p = aero_stream_global(m->stream, t);
    return p ? p : aero_stream_tensor(m->stream, t);
}

// One chunk of the batch, with what attention needs to find each token's keys.
typedef struct {
    aero_ctx *c;
    int layer;
    int n;               // tokens in this chunk
    int first;           // index of the chunk's first token in the whole batch
    const aero_batch *b;
    const int *slot;     // per batch token: its cache slot
    const int *base;     // per sequence: cache length before this batch
    int n_blocks;
    int block_start[MAX_CHUNK + 1]; // attention blocks of the chunk: [block_start[k], block_start[k+1])
} attn_job;

// Whether batch token i may attend to batch token j (same sequence, causal or per the tree mask).
static bool batch_visible(const aero_batch *b, int i, int j) {
    if (j > i) return false;
    if (b->seq && b->seq[i] != b->seq[j]) return false;
    return b->mask ? b->mask[(size_t)i * b->n + j] != 0 : true;
}

// Dot product in a fixed order (16 running lanes, then a fixed fold), so the compiler can vectorise it and
// the result never depends on where the vectors sit or what else is in the batch.
static float dot_fixed(const float *a, const float *b, int n) {
    float acc[16] = {0};
    int d = 0;
    for (; d + 16 <= n; d += 16)
        for (int j = 0; j < 16; j++) acc[j] += a[d + j] * b[d + j];
    for (int j = 0; d < n; d++, j++) acc[j] += a[d] * b[d];
    for (int w = 8; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) acc[j] += acc[j + w];
    return acc[0];
}

// Copies one KV head's rows [0, n_slots) of a sequence into f32 (converting once per block, not per query).
static void kv_head_f32(const aero_ctx *c, void **base, int layer, int seq, int kvh, int n_slots, int hd, float *out) {
    for (int t = 0; t < n_slots; t++) {
        const char *r = kv_row(c, base, layer, seq, t);
        if (c->kv_f32) memcpy(out + (size_t)t * hd, (const float *)r + (size_t)kvh * hd, sizeof(float) * hd);
        else aero_f16_to_f32_row((const uint16_t *)r + (size_t)kvh * hd, out + (size_t)t * hd, hd);
    }
}

#define ATTN_BLOCK 32  // queries of one sequence sharing one conversion of their keys

// Work items are (block of consecutive same-sequence queries of the chunk, KV head). Each query's keys are
// visited in ascending slot order with the same arithmetic whatever the block, so results are batch invariant.
static void attn_worker(void *arg, int ith, int nth) {
    attn_job *job = arg;
    aero_ctx *c = job->c;
    const aero_hparams *hp = &c->m->hp;
    int hd = hp->head_dim, group = hp->n_head / hp->n_head_kv;
    float *scores = c->scores + (size_t)ith * (c->n_ctx + MAX_CHUNK);
    float *kf = c->kf + (size_t)ith * c->n_ctx * hd, *vf = c->vf + (size_t)ith * c->n_ctx * hd;
    float scale = 1.0f / sqrtf((float)hd);
    long begin, end;
    aero_pool_split((long)job->n_blocks * hp->n_head_kv, ith, nth, &begin, &end);
    for (long w = begin; w < end; w++) {
        int blk = (int)(w / hp->n_head_kv), kvh = (int)(w % hp->n_head_kv);
        int b0 = job->block_start[blk], b1 = job->block_start[blk + 1];
        int seq = job->b->seq ? job->b->seq[job->first + b0] : 0;
        int n_slots = job->slot[job->first + b1 - 1] + 1; // the block's last query sees the highest slot
        kv_head_f32(c, c->k, job->layer, seq, kvh, n_slots, hd, kf);
        kv_head_f32(c, c->v, job->layer, seq, kvh, n_slots, hd, vf);
        for (int ci = b0; ci < b1; ci++) {
            int i = job->first + ci, nb = job->base[seq];
            for (int h = kvh * group; h < (kvh + 1) * group; h++) {
                const float *q = c->q + ((size_t)ci * hp->n_head + h) * hd;
                float *out = c->att + ((size_t)ci * hp->n_head + h) * hd;
                int ns = 0;
                float maxs = -INFINITY;
                // scores over the committed cache, then over the visible tokens of this batch
                for (int t = 0; t < nb; t++) {
                    float sc = dot_fixed(q, kf + (size_t)t * hd, hd) * scale;
                    scores[ns++] = sc;
                    if (sc > maxs) maxs = sc;
                }
                for (int t = 0; t <= i; t++) {
                    if (!batch_visible(job->b, i, t)) continue;
                    float sc = dot_fixed(q, kf + (size_t)job->slot[t] * hd, hd) * scale;
                    scores[ns++] = sc;
                    if (sc > maxs) maxs = sc;
                }
                float sum = 0;
                for (int t = 0; t < ns; t++) {
                    scores[t] = expf(scores[t] - maxs);
                    sum += scores[t];
                }
                memset(out, 0, sizeof(float) * hd);
                ns = 0;
                for (int t = 0; t < nb + i + 1; t++) {
                    int slot = t;
                    if (t >= nb) {
                        if (!batch_visible(job->b, i, t - nb)) continue;
                        slot = job->slot[t - nb];
                    }
                    const float *v = vf + (size_t)slot * hd;
                    float p = scores[ns++] / sum;
                    for (int d = 0; d < hd; d++) out[d] += p * v[d];
                }
            }
        }
    }
}

// Splits the chunk into blocks of consecutive same-sequence queries (at most ATTN_BLOCK each).
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

// Writes this chunk's K and V rows into their cache slots.
static void kv_store(aero_ctx *c, int layer, const attn_job *job) {
    for (int ci = 0; ci < job->n; ci++) {
        int i = job->first + ci;
        int seq = job->b->seq ? job->b->seq[i] : 0;
        const float *k = c->kb + (size_t)ci * c->kv_dim, *v = c->vb + (size_t)ci * c->kv_dim;
        void *kd = kv_row(c, c->k, layer, seq, job->slot[i]), *vd = kv_row(c, c->v, layer, seq, job->slot[i]);
        if (c->kv_f32) {
            memcpy(kd, k, sizeof(float) * c->kv_dim);
            memcpy(vd, v, sizeof(float) * c->kv_dim);
        } else {
            aero_f32_to_f16_row(k, kd, c->kv_dim);
            aero_f32_to_f16_row(v, vd, c->kv_dim);
        }
    }
}

// One transformer layer over the chunk: attention block then SwiGLU feed-forward, both residual.
static aero_status layer_forward(aero_ctx *c, int l, attn_job *job, aero_error *err) {
    aero_model *m = c->m;
    const aero_hparams *hp = &m->hp;
    const aero_layer_weights *w = &m->layers[l];
    int n = job->n, d = hp->n_embd, hd = hp->head_dim, qd = hp->n_head * hd, kvd = c->kv_dim;
    if (aero_stream_acquire(m->stream, l, err)) return err->code;
    const float *an = vec(m, w->attn_norm);
    for (int i = 0; i < n; i++) rmsnorm(c->xb + (size_t)i * d, c->x + (size_t)i * d, an, d, hp->norm_eps);
    aero_wmat wq = wmat(m, w->wq), wk = wmat(m, w->wk), wv = wmat(m, w->wv);
    aero_matmul(m->pool, &wq, c->xb, n, c->q);
    aero_matmul(m->pool, &wk, c->xb, n, c->kb);
    aero_matmul(m->pool, &wv, c->xb, n, c->vb);
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
    const float *qn = w->q_norm >= 0 ? vec(m, w->q_norm) : NULL, *kn = w->k_norm >= 0 ? vec(m, w->k_norm) : NULL;
    for (int i = 0; i < n; i++) {
        int pos = job->b->pos[job->first + i];
        for (int h = 0; h < hp->n_head; h++) {
            float *q = c->q + (size_t)i * qd + (size_t)h * hd;
            if (qn) rmsnorm(q, q, qn, hd, hp->norm_eps);
            rope(q, pos, hp->rope_dim, hd, m->rope_inv_freq, m->rope_neox);
        }
        for (int h = 0; h < hp->n_head_kv; h++) {
            float *k = c->kb + (size_t)i * kvd + (size_t)h * hd;
            if (kn) rmsnorm(k, k, kn, hd, hp->norm_eps);
            rope(k, pos, hp->rope_dim, hd, m->rope_inv_freq, m->rope_neox);
        }
    }
    job->layer = l;
    kv_store(c, l, job);
    attn_blocks(job);
    aero_pool_run(m->pool, attn_worker, job);
    aero_wmat wo = wmat(m, w->wo);
    aero_matmul(m->pool, &wo, c->att, n, c->xb);
    for (size_t i = 0; i < (size_t)n * d; i++) c->x[i] += c->xb[i];

    const float *fn = vec(m, w->ffn_norm);
    for (int i = 0; i < n; i++) rmsnorm(c->xb + (size_t)i * d, c->x + (size_t)i * d, fn, d, hp->norm_eps);
    aero_wmat wg = wmat(m, w->w_gate), wu = wmat(m, w->w_up), wd = wmat(m, w->w_down);
    aero_matmul(m->pool, &wg, c->xb, n, c->hb);
    aero_matmul(m->pool, &wu, c->xb, n, c->hb2);
    for (size_t i = 0; i < (size_t)n * hp->n_ff; i++) {
        float g = c->hb[i];
        c->hb[i] = g / (1.0f + expf(-g)) * c->hb2[i];
    }
    aero_matmul(m->pool, &wd, c->hb, n, c->xb);
    for (size_t i = 0; i < (size_t)n * d; i++) c->x[i] += c->xb[i];
    aero_stream_release(m->stream, l);
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
        if (added[s] && c->len[s] + added[s] > c->n_ctx)
            return aero_fail(err, AERO_ERR_RANGE, "context overflow: sequence %d holds %d tokens, %d more exceed the "
                             "context size %d", s, c->len[s], added[s], c->n_ctx);
    return AERO_OK;
}

aero_status aero_decode(aero_ctx *c, const aero_batch *b, float *logits, aero_error *err) {
    aero_model *m = c->m;
    const aero_hparams *hp = &m->hp;
    int *added = malloc(sizeof(int) * c->n_seq), *base = malloc(sizeof(int) * c->n_seq);
    int *slot = malloc(sizeof(int) * (b->n > 0 ? b->n : 1));
    aero_status st = AERO_OK;
    if (!added || !base || !slot) {
        st = aero_fail(err, AERO_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((st = validate_batch(c, b, added, err))) goto done;
    memcpy(base, c->len, sizeof(int) * c->n_seq);
    for (int s = 0; s < c->n_seq; s++) added[s] = 0;
    for (int i = 0; i < b->n; i++) {
        int seq = b->seq ? b->seq[i] : 0;
        slot[i] = base[seq] + added[seq]++;
    }
    int d = hp->n_embd;
    size_t out_row = 0;
    for (int first = 0; first < b->n; first += MAX_CHUNK) {
        int n = b->n - first < MAX_CHUNK ? b->n - first : MAX_CHUNK;
        attn_job job = {.c = c, .n = n, .first = first, .b = b, .slot = slot, .base = base};
        if ((st = aero_stream_embed_rows(m->stream, b->tokens + first, n, c->x, err))) goto rollback;
        for (int l = 0; l < hp->n_layer; l++)
            if ((st = layer_forward(c, l, &job, err))) goto rollback;
        // output head: final norm of the wanted rows, then the vocabulary projection
        int nw = 0;
        const float *on = vec(m, m->out_norm);
        for (int i = 0; i < n; i++)
            if (!b->want_logits || b->want_logits[first + i])
                rmsnorm(c->logit_in + (size_t)nw++ * d, c->x + (size_t)i * d, on, d, hp->norm_eps);
        if ((st = aero_stream_acquire(m->stream, hp->n_layer, err))) goto rollback;
        if (nw && logits) {
            aero_wmat wo = wmat(m, m->output);
            aero_matmul(m->pool, &wo, c->logit_in, nw, logits + out_row * hp->n_vocab);
        }
        aero_stream_release(m->stream, hp->n_layer);
        out_row += nw;
    }
    for (int s = 0; s < c->n_seq; s++) c->len[s] = base[s] + added[s];
    goto done;
rollback:
    memcpy(c->len, base, sizeof(int) * c->n_seq); // entries written past the old lengths are simply unused
done:
    free(added);
    free(base);
    free(slot);
    return st;
}
