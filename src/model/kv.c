// The KV cache of a context: the K and V rows of every cached position (cell) of every sequence, per layer,
// and the operations callers use to roll a sequence back or keep the accepted path of a verified tree.
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"
#ifdef AERO_CUDA
#include "forward_cuda.h"
#endif

// Allocates every layer's cells up front, so a decode never allocates cache memory.
aero_status aero_kv_cache_init(aero_kv_cache *kv, int n_layer, int n_seq, int n_ctx, int kv_dim, bool f32,
                               aero_error *err) {
    memset(kv, 0, sizeof *kv);
    kv->n_layer = n_layer;
    kv->n_seq = n_seq;
    kv->n_ctx = n_ctx;
    kv->kv_dim = kv_dim;
    kv->f32 = f32;
    size_t per_layer = (size_t)n_seq * n_ctx * aero_kv_row_bytes(kv);
    kv->k = calloc(n_layer, sizeof *kv->k);
    kv->v = calloc(n_layer, sizeof *kv->v);
    kv->len = calloc(n_seq, sizeof *kv->len);
    if (!kv->k || !kv->v || !kv->len) goto oom;
    for (int l = 0; l < n_layer; l++) {
        kv->k[l] = aero_alloc_aligned(64, per_layer);
        kv->v[l] = aero_alloc_aligned(64, per_layer);
        if (!kv->k[l] || !kv->v[l]) goto oom;
    }
    return AERO_OK;
oom:
    aero_kv_cache_free(kv);
    return aero_fail(err, AERO_ERR_NOMEM, "cannot allocate the KV cache (%d layers x %d sequences x %d tokens)",
                     n_layer, n_seq, n_ctx);
}

// Frees what init allocated (safe on a partly initialized cache).
void aero_kv_cache_free(aero_kv_cache *kv) {
    for (int l = 0; kv->k && l < kv->n_layer; l++) free(kv->k[l]);
    for (int l = 0; kv->v && l < kv->n_layer; l++) free(kv->v[l]);
    free(kv->k);
    free(kv->v);
    free(kv->len);
    memset(kv, 0, sizeof *kv);
}

// The cache type sets the row size (F16 halves the cache).
size_t aero_kv_row_bytes(const aero_kv_cache *kv) { return (size_t)kv->kv_dim * (kv->f32 ? 4 : 2); }

// Address of a cell's row: the one place that knows the cache layout.
void *aero_kv_cell(const aero_kv_cache *kv, void *const *base, int layer, int seq, int cell) {
    return (char *)base[layer] + ((size_t)seq * kv->n_ctx + cell) * aero_kv_row_bytes(kv);
}

// Caches one token's K and V of a layer, converting once at write time.
void aero_kv_store(aero_kv_cache *kv, int layer, int seq, int cell, const float *k, const float *v) {
    void *kd = aero_kv_cell(kv, kv->k, layer, seq, cell), *vd = aero_kv_cell(kv, kv->v, layer, seq, cell);
    if (kv->f32) {
        memcpy(kd, k, sizeof(float) * kv->kv_dim);
        memcpy(vd, v, sizeof(float) * kv->kv_dim);
    } else {
        aero_f32_to_f16_row(k, kd, kv->kv_dim);
        aero_f32_to_f16_row(v, vd, kv->kv_dim);
    }
}

// Attention reads a head's rows in f32: converting once per block of queries, not once per query.
void aero_kv_head_f32(const aero_kv_cache *kv, void *const *base, int layer, int seq, int kvh, int n_cells, int hd,
                      float *out) {
    for (int t = 0; t < n_cells; t++) {
        const char *r = aero_kv_cell(kv, base, layer, seq, t);
        if (kv->f32) memcpy(out + (size_t)t * hd, (const float *)r + (size_t)kvh * hd, sizeof(float) * hd);
        else aero_f16_to_f32_row((const uint16_t *)r + (size_t)kvh * hd, out + (size_t)t * hd, hd);
    }
}

int aero_kv_len(const aero_ctx *c, int seq) { return seq >= 0 && seq < c->kv.n_seq ? c->kv.len[seq] : 0; }

void aero_kv_truncate(aero_ctx *c, int seq, int len) {
    if (seq < 0 || seq >= c->kv.n_seq || len < 0) return;
    if (len < c->kv.len[seq]) c->kv.len[seq] = len;
}

void aero_kv_drop(aero_ctx *c, int seq) { aero_kv_truncate(c, seq, 0); }

void aero_kv_keep(aero_ctx *c, int seq, int base, const int *keep, int n_keep) {
    aero_kv_cache *kv = &c->kv;
#ifdef AERO_CUDA
    if (c->gpu) aero_gpu_kv_keep(c, seq, base, keep, n_keep); // the device cache first: it reads the length
#endif
    if (seq < 0 || seq >= kv->n_seq || base < 0 || base > kv->len[seq]) return;
    size_t rb = aero_kv_row_bytes(kv);
    int kept = 0;
    for (int i = 0; i < n_keep; i++) {
        int from = base + keep[i];
        if (from >= kv->len[seq] || (i > 0 && keep[i] <= keep[i - 1])) break;
        int to = base + kept;
        if (from != to)
            for (int l = 0; l < kv->n_layer; l++) {
                memmove(aero_kv_cell(kv, kv->k, l, seq, to), aero_kv_cell(kv, kv->k, l, seq, from), rb);
                memmove(aero_kv_cell(kv, kv->v, l, seq, to), aero_kv_cell(kv, kv->v, l, seq, from), rb);
            }
        kept++;
    }
    kv->len[seq] = base + kept;
}
