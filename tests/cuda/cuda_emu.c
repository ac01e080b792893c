// The CUDA backend's API (cuda_backend.h) emulated on the CPU in plain C: "device" memory is host memory and
// every op runs at once. Linked instead of the .cu objects it lets the GPU forward pass (forward_cuda.c: unit
// planning, VRAM slots, chunking, heads, KV moves) run without a GPU, against the CPU forward pass
// (tests/sh/test_cuda_emu.sh). It checks the wiring, not the kernels (test_cuda does that on a GPU).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/kernels.h"

struct aero_cuda {
    aero_cuda_info info;
    char *arena;
    size_t budget, used;
};
struct aero_cuda_event {
    int dummy;
};
struct aero_cuda_batch {
    int max_tokens, n_seq, n_ctx, n_head, head_dim, n;
    int32_t *pos, *seq, *slot, *base;
    uint8_t *mask;
    bool has_mask;
};

int aero_cuda_device_count(void) { return getenv("AERO_CUDA_EMU_NODEV") ? 0 : 1; }

aero_status aero_cuda_device_info(int device, aero_cuda_info *info, aero_error *err) {
    memset(info, 0, sizeof *info);
    snprintf(info->name, sizeof info->name, "CPU emulation");
    info->total_vram = info->free_vram = (size_t)8 << 30;
    return AERO_OK;
}

aero_status aero_cuda_init(aero_cuda **out, int device, size_t vram_budget, aero_error *err) {
    aero_cuda *cu = calloc(1, sizeof *cu);
    if (!cu || !(cu->arena = aligned_alloc(256, (vram_budget + 255) & ~(size_t)255)))
        return free(cu), aero_fail(err, AERO_ERR_NOMEM, "emu: budget %zu", vram_budget);
    aero_cuda_device_info(device, &cu->info, err);
    cu->budget = vram_budget;
    cu->used = (size_t)64 << 20; // the real backend's scratch
    if (cu->used > cu->budget) return aero_fail(err, AERO_ERR_NOMEM, "emu: no room for the scratch");
    *out = cu;
    return AERO_OK;
}
void aero_cuda_free(aero_cuda *cu) {
    if (cu) free(cu->arena);
    free(cu);
}
const aero_cuda_info *aero_cuda_get_info(const aero_cuda *cu) { return &cu->info; }

aero_status aero_cuda_alloc(aero_cuda *cu, size_t bytes, void **dev, aero_error *err) {
    size_t need = (bytes + 255) & ~(size_t)255;
    if (need > cu->budget - cu->used)
        return aero_fail(err, AERO_ERR_NOMEM, "VRAM budget exceeded: %zu bytes asked, %zu of %zu in use", bytes,
                         cu->used, cu->budget);
    *dev = cu->arena + cu->used;
    cu->used += need;
    return AERO_OK;
}
size_t aero_cuda_arena_mark(const aero_cuda *cu) { return cu->used; }
void aero_cuda_arena_reset(aero_cuda *cu, size_t mark) {
    if (mark < cu->used) cu->used = mark;
}
size_t aero_cuda_arena_budget(const aero_cuda *cu) { return cu->budget; }
aero_status aero_cuda_host_alloc(size_t bytes, void **host, aero_error *err) {
    *host = malloc(bytes ? bytes : 1);
    return *host ? AERO_OK : aero_fail(err, AERO_ERR_NOMEM, "emu host");
}
void aero_cuda_host_free(void *host) { free(host); }
aero_status aero_cuda_host_register(void *host, size_t bytes, aero_error *err) { return AERO_OK; }
void aero_cuda_host_unregister(void *host) {}

aero_status aero_cuda_copy_h2d_async(aero_cuda *cu, aero_cuda_stream s, void *dev, const void *host, size_t bytes,
                                     aero_error *err) {
    memcpy(dev, host, bytes);
    return AERO_OK;
}
aero_status aero_cuda_copy_d2h(aero_cuda *cu, void *host, const void *dev, size_t bytes, aero_error *err) {
    memcpy(host, dev, bytes);
    return AERO_OK;
}
aero_status aero_cuda_copy_d2d(aero_cuda *cu, void *dst, const void *src, size_t bytes, aero_error *err) {
    memmove(dst, src, bytes);
    return AERO_OK;
}
aero_status aero_cuda_memset0(aero_cuda *cu, void *dev, size_t bytes, aero_error *err) {
    memset(dev, 0, bytes);
    return AERO_OK;
}
aero_status aero_cuda_event_new(aero_cuda *cu, aero_cuda_event **ev, aero_error *err) {
    *ev = calloc(1, sizeof **ev);
    return AERO_OK;
}
void aero_cuda_event_free(aero_cuda_event *ev) { free(ev); }
aero_status aero_cuda_record(aero_cuda *cu, aero_cuda_stream s, aero_cuda_event *ev, aero_error *err) {
    return AERO_OK;
}
aero_status aero_cuda_wait(aero_cuda *cu, aero_cuda_stream s, aero_cuda_event *ev, aero_error *err) { return AERO_OK; }
aero_status aero_cuda_event_sync(aero_cuda_event *ev, aero_error *err) { return AERO_OK; }
aero_status aero_cuda_sync(aero_cuda *cu, aero_error *err) { return AERO_OK; }
float aero_cuda_event_ms(aero_cuda_event *a, aero_cuda_event *b) { return 0.0f; }

bool aero_cuda_type_supported(aero_dtype t) {
    return t == AERO_DT_F32 || t == AERO_DT_F16 || t == AERO_DT_BF16 || t == AERO_DT_Q8_0 || t == AERO_DT_Q4_0 ||
           t == AERO_DT_Q4_K || t == AERO_DT_Q5_K || t == AERO_DT_Q6_K;
}
aero_status aero_cuda_wmat_check(const aero_cuda_wmat *w, aero_error *err) {
    if (!aero_cuda_type_supported(w->type))
        return aero_fail(err, AERO_ERR_UNSUPPORTED, "no CUDA kernel for weight type %s", aero_dtype_name(w->type));
    bool dense = w->type == AERO_DT_F32 || w->type == AERO_DT_F16 || w->type == AERO_DT_BF16;
    if (w->cols % 32 && !dense) return aero_fail(err, AERO_ERR_UNSUPPORTED, "cols must be a multiple of 32");
    return AERO_OK;
}
// The emulation prepares one activation form (the exact f32 rows) whatever the matrices read.
void aero_cuda_act_f16_note(aero_cuda *cu, aero_dtype t) { (void)cu, (void)t; }
aero_status aero_cuda_act_prepare(aero_cuda *cu, const float *x, int n, int cols, aero_cuda_act *out, aero_error *err) {
    if (cols % 32 || (uintptr_t)x % 16) return aero_fail(err, AERO_ERR_INVALID, "emu: activations %d x %d", n, cols);
    *out = (aero_cuda_act){.x = x, .xp = x, .n = n, .cols = cols};
    return AERO_OK;
}
// Exact f32 activations, dequantized weights, a fixed order per output: batch invariant like the kernels.
aero_status aero_cuda_matmul_act(aero_cuda *cu, const aero_cuda_wmat *w, const aero_cuda_act *a, float *y,
                                 aero_error *err) {
    if (aero_cuda_wmat_check(w, err)) return err->code;
    if (a->cols != w->cols)
        return aero_fail(err, AERO_ERR_INVALID, "emu matmul: %d vs %lld cols", a->cols, (long long)w->cols);
    float *row = malloc(sizeof(float) * w->cols);
    for (int64_t r = 0; r < w->rows; r++) {
        aero_dequantize_row(w->type, (const char *)w->data + r * w->row_bytes, row, w->cols);
        for (int i = 0; i < a->n; i++) {
            const float *x = a->x + (size_t)i * a->cols;
            float s = 0;
            for (int64_t c = 0; c < w->cols; c++) s += row[c] * x[c];
            y[(size_t)i * w->rows + r] = s;
        }
    }
    free(row);
    return AERO_OK;
}
aero_status aero_cuda_matmul_many(aero_cuda *cu, const aero_cuda_wmat *const w[], float *const y[], int count,
                                  const aero_cuda_act *a, aero_error *err) {
    for (int i = 0; i < count; i++)
        if (aero_cuda_matmul_act(cu, w[i], a, y[i], err)) return err->code;
    return AERO_OK;
}
aero_status aero_cuda_rmsnorm(aero_cuda *cu, float *out, const float *x, const float *w, int n_rows, int dim, float eps,
                              aero_error *err) {
    for (int i = 0; i < n_rows; i++) {
        const float *xi = x + (size_t)i * dim;
        float *o = out + (size_t)i * dim;
        float ss = 0;
        for (int j = 0; j < dim; j++) ss += xi[j] * xi[j];
        float sc = 1.0f / sqrtf(ss / dim + eps);
        for (int j = 0; j < dim; j++) o[j] = xi[j] * sc * w[j];
    }
    return AERO_OK;
}
aero_status aero_cuda_rope(aero_cuda *cu, float *x, int n, int n_heads, int head_dim, int rope_dim, const int32_t *pos,
                           const float *inv_freq, bool neox, aero_error *err) {
    int half = rope_dim / 2;
    for (int t = 0; t < n; t++)
        for (int h = 0; h < n_heads; h++) {
            float *v = x + ((size_t)t * n_heads + h) * head_dim;
            for (int i = 0; i < half; i++) {
                float th = (float)pos[t] * inv_freq[i], c = cosf(th), s = sinf(th);
                int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
                float x0 = v[a], x1 = v[b];
                v[a] = x0 * c - x1 * s;
                v[b] = x0 * s + x1 * c;
            }
        }
    return AERO_OK;
}
aero_status aero_cuda_swiglu(aero_cuda *cu, float *out, const float *gate, const float *up, size_t count,
                             aero_error *err) {
    for (size_t i = 0; i < count; i++) out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
    return AERO_OK;
}
aero_status aero_cuda_add(aero_cuda *cu, float *y, const float *x, size_t count, aero_error *err) {
    for (size_t i = 0; i < count; i++) y[i] += x[i];
    return AERO_OK;
}
aero_status aero_cuda_add_bias(aero_cuda *cu, float *y, const float *b, int n, int dim, aero_error *err) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < dim; j++) y[(size_t)i * dim + j] += b[j];
    return AERO_OK;
}

aero_status aero_cuda_get_rows(aero_cuda *cu, const aero_cuda_wmat *w, const int32_t *ids, int n, float *out,
                               aero_error *err) {
    if (aero_cuda_wmat_check(w, err)) return err->code;
    for (int i = 0; i < n; i++) {
        float *o = out + (size_t)i * w->cols;
        if (ids[i] < 0 || ids[i] >= w->rows) memset(o, 0, sizeof(float) * w->cols);
        else aero_dequantize_row(w->type, (const char *)w->data + (size_t)ids[i] * w->row_bytes, o, w->cols);
    }
    return AERO_OK;
}

// The fused ops as the unfused sequences they stand for (the GPU's are checked bitwise against those by test_cuda).
aero_status aero_cuda_rmsnorm_act(aero_cuda *cu, float *out, float *x, const float *add, const float *w, int n_rows,
                                  int dim, float eps, aero_cuda_act *act, aero_error *err) {
    if (add) aero_cuda_add(cu, x, add, (size_t)n_rows * dim, err);
    aero_cuda_rmsnorm(cu, out, x, w, n_rows, dim, eps, err);
    if (act) *act = (aero_cuda_act){out, dim % 32 ? NULL : out, n_rows, dim};
    return AERO_OK;
}
aero_status aero_cuda_swiglu_act(aero_cuda *cu, float *out, const float *gate, const float *up, int n, int cols,
                                 aero_cuda_act *act, aero_error *err) {
    aero_cuda_swiglu(cu, out, gate, up, (size_t)n * cols, err);
    if (act) *act = (aero_cuda_act){out, cols % 32 ? NULL : out, n, cols};
    return AERO_OK;
}

aero_status aero_cuda_batch_new(aero_cuda *cu, int max_tokens, int n_seq, int n_ctx, int n_head, int head_dim,
                                aero_cuda_batch **out, aero_error *err) {
    aero_cuda_batch *b = calloc(1, sizeof *b);
    b->max_tokens = max_tokens, b->n_seq = n_seq, b->n_ctx = n_ctx, b->n_head = n_head, b->head_dim = head_dim;
    b->pos = malloc(4 * max_tokens), b->seq = malloc(4 * max_tokens), b->slot = malloc(4 * max_tokens);
    b->base = malloc(4 * n_seq), b->mask = malloc((size_t)max_tokens * max_tokens);
    *out = b;
    return AERO_OK;
}
void aero_cuda_batch_free(aero_cuda_batch *b) {
    if (!b) return;
    free(b->pos), free(b->seq), free(b->slot), free(b->base), free(b->mask), free(b);
}
aero_status aero_cuda_batch_set(aero_cuda_batch *b, int n, const int32_t *pos, const int32_t *seq, const int32_t *slot,
                                const uint8_t *mask, const int32_t *base, aero_error *err) {
    if (n <= 0 || n > b->max_tokens) return aero_fail(err, AERO_ERR_INVALID, "CUDA batch of %d tokens", n);
    for (int i = 0; i < n; i++) {
        b->pos[i] = pos[i], b->seq[i] = seq ? seq[i] : 0, b->slot[i] = slot[i];
        if (slot[i] < 0 || slot[i] >= b->n_ctx) return aero_fail(err, AERO_ERR_RANGE, "emu: slot %d", slot[i]);
    }
    memcpy(b->base, base, 4 * b->n_seq);
    b->has_mask = mask != NULL;
    if (mask) memcpy(b->mask, mask, (size_t)n * n);
    b->n = n;
    return AERO_OK;
}
const int32_t *aero_cuda_batch_pos(const aero_cuda_batch *b) { return b->pos; }

aero_status aero_cuda_kv_store(aero_cuda_batch *b, uint16_t *kc, uint16_t *vc, const float *k, const float *v,
                               int kv_dim, aero_error *err) {
    for (int i = 0; i < b->n; i++) {
        size_t dst = ((size_t)b->seq[i] * b->n_ctx + b->slot[i]) * kv_dim;
        aero_f32_to_f16_row(k + (size_t)i * kv_dim, kc + dst, kv_dim);
        aero_f32_to_f16_row(v + (size_t)i * kv_dim, vc + dst, kv_dim);
    }
    return AERO_OK;
}
aero_status aero_cuda_rope_kv_store(aero_cuda_batch *b, const aero_cuda_qkv *a, aero_error *err) {
    int qd = a->n_head * a->head_dim, kvd = a->n_head_kv * a->head_dim;
    if (a->head_dim % 2) return aero_fail(err, AERO_ERR_INVALID, "emu rope_kv_store: head_dim %d", a->head_dim);
    if (a->bq) aero_cuda_add_bias(NULL, a->q, a->bq, b->n, qd, err);
    if (a->bk) aero_cuda_add_bias(NULL, a->k, a->bk, b->n, kvd, err);
    if (a->bv) aero_cuda_add_bias(NULL, a->v, a->bv, b->n, kvd, err);
    aero_cuda_rope(NULL, a->q, b->n, a->n_head, a->head_dim, a->rope_dim, b->pos, a->inv_freq, a->neox, err);
    aero_cuda_rope(NULL, a->k, b->n, a->n_head_kv, a->head_dim, a->rope_dim, b->pos, a->inv_freq, a->neox, err);
    return aero_cuda_kv_store(b, a->k_cache, a->v_cache, a->k, a->v, kvd, err);
}
aero_status aero_cuda_attention(aero_cuda_batch *b, const float *q, const uint16_t *kc, const uint16_t *vc, int n_head,
                                int n_head_kv, int hd, float *out, aero_error *err) {
    int kvd = n_head_kv * hd, group = n_head / n_head_kv;
    int *rows = malloc(sizeof(int) * (b->n_ctx + b->n));
    float *sc = malloc(sizeof(float) * (b->n_ctx + b->n));
    for (int i = 0; i < b->n; i++) {
        int s = b->seq[i], ns = 0;
        for (int t = 0; t < b->base[s]; t++) rows[ns++] = t;
        for (int j = 0; j <= i; j++)
            if (b->seq[j] == s && (!b->has_mask || b->mask[(size_t)i * b->n + j])) rows[ns++] = b->slot[j];
        for (int h = 0; h < n_head; h++) {
            const float *qh = q + ((size_t)i * n_head + h) * hd;
            int kvh = h / group;
            float mx = -INFINITY;
            for (int r = 0; r < ns; r++) {
                const uint16_t *kr = kc + ((size_t)s * b->n_ctx + rows[r]) * kvd + (size_t)kvh * hd;
                float d = 0;
                for (int e = 0; e < hd; e++) d += qh[e] * aero_f16_to_f32(kr[e]);
                sc[r] = d / sqrtf((float)hd);
                if (sc[r] > mx) mx = sc[r];
            }
            float sum = 0;
            for (int r = 0; r < ns; r++) sum += sc[r] = expf(sc[r] - mx);
            float *o = out + ((size_t)i * n_head + h) * hd;
            for (int e = 0; e < hd; e++) o[e] = 0;
            for (int r = 0; r < ns; r++) {
                const uint16_t *vr = vc + ((size_t)s * b->n_ctx + rows[r]) * kvd + (size_t)kvh * hd;
                for (int e = 0; e < hd; e++) o[e] += sc[r] / sum * aero_f16_to_f32(vr[e]);
            }
        }
    }
    free(rows), free(sc);
    return AERO_OK;
}

// No graphs in the emulation: the forward pass falls back to plain launches (its fallback path is what runs here).
aero_status aero_cuda_capture_begin(aero_cuda *cu, aero_error *err) {
    return aero_fail(err, AERO_ERR_UNSUPPORTED, "emu: no CUDA graphs");
}
aero_status aero_cuda_capture_end(aero_cuda *cu, aero_cuda_graph **g, aero_error *err) {
    *g = NULL;
    return aero_fail(err, AERO_ERR_UNSUPPORTED, "emu: no CUDA graphs");
}
aero_status aero_cuda_graph_launch(aero_cuda *cu, aero_cuda_graph *g, aero_error *err) {
    return aero_fail(err, AERO_ERR_UNSUPPORTED, "emu: no CUDA graphs");
}
void aero_cuda_graph_free(aero_cuda_graph *g) {}
uint64_t aero_cuda_batch_shape_key(const aero_cuda_batch *b) { return (uint64_t)b->n; }

// On-device drafting: the argmax and the probability exactly as the host's ranking computes them (draft.c's
// draft_dist at temperature 1: the first maximum, expf(l - max) summed in double in index order), so that drafts
// from the device's picks equal the host-ranked ones bitwise here.
aero_status aero_cuda_argmax(aero_cuda *cu, const float *logits, int n, int n_vocab, int32_t *ids, float *prob,
                             aero_error *err) {
    if (n <= 0 || n_vocab <= 0) return aero_fail(err, AERO_ERR_INVALID, "emu argmax: %d rows of %d", n, n_vocab);
    for (int r = 0; r < n; r++) {
        const float *l = logits + (size_t)r * n_vocab;
        int best = -1;
        bool bad = false;
        for (int j = 0; j < n_vocab; j++) {
            if (isnan(l[j]) || l[j] == INFINITY) bad = true;
            else if (best < 0 ? l[j] > -INFINITY : l[j] > l[best]) best = j;
        }
        double sum = 0;
        for (int j = 0; !bad && best >= 0 && j < n_vocab; j++) sum += expf(l[j] - l[best]);
        ids[r] = bad || best < 0 ? -1 : best;
        prob[r] = ids[r] < 0 ? 0.0f : (float)(1 / sum);
    }
    return AERO_OK;
}

struct aero_cuda_chain {
    int max_k;
    aero_cuda_batch *views;
    int32_t *arr; // pos, slot, base, seq (zeros): max_k each
};

aero_status aero_cuda_chain_new(aero_cuda *cu, int max_k, int n_ctx, int n_head, int head_dim, aero_cuda_chain **out,
                                aero_error *err) {
    if (max_k <= 0) return aero_fail(err, AERO_ERR_INVALID, "emu chain of %d", max_k);
    aero_cuda_chain *c = calloc(1, sizeof *c);
    c->max_k = max_k;
    c->views = calloc((size_t)max_k, sizeof *c->views);
    c->arr = calloc((size_t)4 * max_k, 4);
    for (int j = 0; j < max_k; j++)
        c->views[j] = (aero_cuda_batch){.max_tokens = 1,
                                        .n_seq = 1,
                                        .n_ctx = n_ctx,
                                        .n_head = n_head,
                                        .head_dim = head_dim,
                                        .pos = c->arr + j,
                                        .slot = c->arr + max_k + j,
                                        .base = c->arr + 2 * max_k + j,
                                        .seq = c->arr + 3 * max_k + j};
    *out = c;
    return AERO_OK;
}
void aero_cuda_chain_free(aero_cuda_chain *c) {
    if (c) free(c->views), free(c->arr);
    free(c);
}
aero_status aero_cuda_chain_set(aero_cuda_chain *c, int k, const int32_t *pos, const int32_t *slot, const int32_t *base,
                                aero_error *err) {
    if (k <= 0 || k > c->max_k) return aero_fail(err, AERO_ERR_INVALID, "emu chain of %d tokens", k);
    for (int j = 0; j < k; j++) {
        if (slot[j] < 0 || slot[j] >= c->views[j].n_ctx || base[j] < 0 || base[j] > c->views[j].n_ctx)
            return aero_fail(err, AERO_ERR_RANGE, "emu chain: slot %d base %d", slot[j], base[j]);
        c->arr[j] = pos[j], c->arr[c->max_k + j] = slot[j], c->arr[2 * c->max_k + j] = base[j];
        c->views[j].n = 1;
    }
    return AERO_OK;
}
aero_cuda_batch *aero_cuda_chain_batch(aero_cuda_chain *c, int j) {
    return j >= 0 && j < c->max_k ? &c->views[j] : NULL;
}
