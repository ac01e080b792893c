// The KV cache of a context: the K and V rows of every cached position (cell) of every sequence, per layer,
// and the operations callers use to roll a sequence back or keep the accepted path of a verified tree. Rows are
// stored in the cache types (-ctk/-ctv: F32, F16, BF16 or a 32-block quant), converted once as they are
// written; the byte count every budget uses (aero_kv_bytes) is computed here beside the layout it describes.
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "model_internal.h"
#ifdef AERO_CUDA
#include "forward_cuda.h"
#endif

// The cache types -ctk/-ctv accept, in aero_kv_type order (llama.cpp's names).
static const struct {
    const char *name;
    aero_dtype type;
} kv_types[] = {
    [AERO_KV_DEFAULT] = {"default", AERO_DT_F16}, [AERO_KV_F32] = {"f32", AERO_DT_F32},
    [AERO_KV_F16] = {"f16", AERO_DT_F16},         [AERO_KV_BF16] = {"bf16", AERO_DT_BF16},
    [AERO_KV_Q8_0] = {"q8_0", AERO_DT_Q8_0},      [AERO_KV_Q4_0] = {"q4_0", AERO_DT_Q4_0},
    [AERO_KV_Q4_1] = {"q4_1", AERO_DT_Q4_1},      [AERO_KV_Q5_0] = {"q5_0", AERO_DT_Q5_0},
    [AERO_KV_Q5_1] = {"q5_1", AERO_DT_Q5_1},
};
#define N_KV_TYPES ((int)(sizeof kv_types / sizeof kv_types[0]))

// Command lines and requests name cache types as llama.cpp does.
int aero_kv_type_parse(const char *name) {
    for (int t = AERO_KV_F32; name && t < N_KV_TYPES; t++)
        if (!strcasecmp(name, kv_types[t].name)) return t;
    return -1;
}

// Names for messages and --stats.
const char *aero_kv_type_name(aero_kv_type t) {
    return (unsigned)t < (unsigned)N_KV_TYPES ? kv_types[t].name : "unknown";
}

// --kv-f32 predates -ctk/-ctv and stays their default.
aero_dtype aero_kv_type_dtype(aero_kv_type t, bool kv_f32) {
    if (t == AERO_KV_DEFAULT || (unsigned)t >= (unsigned)N_KV_TYPES) return kv_f32 ? AERO_DT_F32 : AERO_DT_F16;
    return kv_types[t].type;
}

// One rule for the default context, shared by aero_ctx_new and every budget.
int aero_ctx_params_n_ctx(const aero_hparams *hp, const aero_ctx_params *p) {
    return p->n_ctx > 0 ? p->n_ctx : (hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096);
}

// Quantized types hold whole blocks of one head, so a head that is not whole blocks cannot be cached in them.
static aero_status kv_type_check(int head_dim, aero_dtype t, const char *which, aero_error *err) {
    const aero_dtype_info *info = aero_dtype_get((uint32_t)t);
    if (!info) return aero_fail(err, AERO_ERR_INVALID, "%s cache type %d is unknown", which, (int)t);
    if (head_dim <= 0 || head_dim % (int)info->block)
        return aero_fail(err, AERO_ERR_UNSUPPORTED,
                         "%s cache type %s stores blocks of %u values along the head, but "
                         "this model's head size is %d (not a multiple of %u): use f16, bf16 or f32",
                         which, aero_dtype_name(t), info->block, head_dim, info->block);
    return AERO_OK;
}

aero_status aero_kv_check(const aero_hparams *hp, const aero_ctx_params *p, aero_error *err) {
    if ((unsigned)p->type_k >= (unsigned)N_KV_TYPES || (unsigned)p->type_v >= (unsigned)N_KV_TYPES)
        return aero_fail(err, AERO_ERR_INVALID, "unknown KV cache type (K %d, V %d)", (int)p->type_k, (int)p->type_v);
    if (p->kv_recent < 0) return aero_fail(err, AERO_ERR_INVALID, "--kv-recent %d is negative", p->kv_recent);
    if (kv_type_check(hp->head_dim, aero_kv_type_dtype(p->type_k, p->kv_f32), "K", err) ||
        kv_type_check(hp->head_dim, aero_kv_type_dtype(p->type_v, p->kv_f32), "V", err))
        return err->code;
    return AERO_OK;
}

// Float types are read exactly; only a quantized side has anything to gain from an F16 copy.
static bool is_float(aero_dtype t) { return t == AERO_DT_F32 || t == AERO_DT_F16 || t == AERO_DT_BF16; }

int aero_kv_ring_cells(const aero_hparams *hp, const aero_ctx_params *p) {
    if (p->kv_recent <= 0) return 0;
    if (is_float(aero_kv_type_dtype(p->type_k, p->kv_f32)) && is_float(aero_kv_type_dtype(p->type_v, p->kv_f32)))
        return 0;
    // a tile's queries reach back `recent` cells before its first one, and a tile writes n_batch cells at most
    int64_t cells = (int64_t)p->kv_recent + (p->n_batch > 0 ? p->n_batch : 512);
    int n_ctx = aero_ctx_params_n_ctx(hp, p);
    return cells < n_ctx ? (int)cells : n_ctx;
}

uint64_t aero_kv_bytes(const aero_hparams *hp, const aero_ctx_params *p) {
    aero_error err = {0};
    if (aero_kv_check(hp, p, &err)) return 0;
    uint64_t kv_dim = (uint64_t)hp->n_head_kv * hp->head_dim;
    aero_dtype tk = aero_kv_type_dtype(p->type_k, p->kv_f32), tv = aero_kv_type_dtype(p->type_v, p->kv_f32);
    uint64_t row = aero_dtype_row_bytes(tk, kv_dim) + aero_dtype_row_bytes(tv, kv_dim);
    uint64_t ring_row = (is_float(tk) ? 0 : 2 * kv_dim) + (is_float(tv) ? 0 : 2 * kv_dim);
    if (hp->kv_lora_rank > 0) row = aero_dtype_row_bytes(tk, kv_dim), ring_row = 0; // deepseek2: K rows only (mla.c)
    uint64_t n_seq = p->n_seq > 0 ? (uint64_t)p->n_seq : 1;
    return (uint64_t)hp->n_layer * n_seq *
           ((uint64_t)aero_ctx_params_n_ctx(hp, p) * row + (uint64_t)aero_kv_ring_cells(hp, p) * ring_row);
}

// Allocates every layer's cells up front, so a decode never allocates cache memory.
aero_status aero_kv_cache_init(aero_kv_cache *kv, int n_layer, int n_seq, int n_ctx, int n_head_kv, int head_dim,
                               aero_dtype type_k, aero_dtype type_v, int recent, int ring, aero_error *err) {
    return aero_kv_cache_init_range(kv, n_layer, 0, n_layer, n_seq, n_ctx, n_head_kv, head_dim, type_k, type_v, recent,
                                    ring, err);
}

aero_status aero_kv_cache_init_range(aero_kv_cache *kv, int n_layer, int first, int last, int n_seq, int n_ctx,
                                     int n_head_kv, int head_dim, aero_dtype type_k, aero_dtype type_v, int recent,
                                     int ring, aero_error *err) {
    memset(kv, 0, sizeof *kv);
    if (kv_type_check(head_dim, type_k, "K", err) || kv_type_check(head_dim, type_v, "V", err)) return err->code;
    kv->n_layer = n_layer;
    kv->n_seq = n_seq;
    kv->n_ctx = n_ctx;
    kv->head_dim = head_dim;
    kv->kv_dim = n_head_kv * head_dim;
    kv->type_k = type_k;
    kv->type_v = type_v;
    kv->row_k = aero_dtype_row_bytes(type_k, (uint64_t)kv->kv_dim);
    kv->row_v = aero_dtype_row_bytes(type_v, (uint64_t)kv->kv_dim);
    size_t cells = (size_t)n_seq * n_ctx;
    kv->k = calloc(n_layer, sizeof *kv->k);
    kv->v = calloc(n_layer, sizeof *kv->v);
    kv->len = calloc(n_seq, sizeof *kv->len);
    if (!kv->k || !kv->v || !kv->len) goto oom;
    for (int l = first; l < last; l++) {
        kv->k[l] = aero_alloc_aligned(64, cells * kv->row_k);
        kv->v[l] = aero_alloc_aligned(64, cells * kv->row_v);
        if (!kv->k[l] || !kv->v[l]) goto oom;
    }
    if (recent > 0 && ring > 0 && (!is_float(type_k) || !is_float(type_v))) {
        kv->recent = recent;
        kv->ring = ring;
        size_t ring_bytes = (size_t)n_seq * ring * kv->kv_dim * sizeof(uint16_t);
        if (!is_float(type_k) && !(kv->rk = calloc(n_layer, sizeof *kv->rk))) goto oom;
        if (!is_float(type_v) && !(kv->rv = calloc(n_layer, sizeof *kv->rv))) goto oom;
        for (int l = first; l < last; l++) {
            if (kv->rk && !(kv->rk[l] = aero_alloc_aligned(64, ring_bytes))) goto oom;
            if (kv->rv && !(kv->rv[l] = aero_alloc_aligned(64, ring_bytes))) goto oom;
        }
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
    for (int l = 0; kv->rk && l < kv->n_layer; l++) free(kv->rk[l]);
    for (int l = 0; kv->rv && l < kv->n_layer; l++) free(kv->rv[l]);
    free(kv->rk);
    free(kv->rv);
    free(kv->k);
    free(kv->v);
    free(kv->len);
    memset(kv, 0, sizeof *kv);
}

// Address of a cell's row: the one place that knows the cache layout.
void *aero_kv_cell(const aero_kv_cache *kv, bool v, int layer, int seq, int cell) {
    size_t rb = v ? kv->row_v : kv->row_k;
    return (char *)(v ? kv->v : kv->k)[layer] + ((size_t)seq * kv->n_ctx + cell) * rb;
}

// The ring slot of a cell: the one place that knows the F16 copies' layout.
uint16_t *aero_kv_recent_row(const aero_kv_cache *kv, bool v, int layer, int seq, int cell) {
    uint16_t **base = v ? kv->rv : kv->rk;
    if (!base) return NULL;
    return base[layer] + ((size_t)seq * kv->ring + (size_t)(cell % kv->ring)) * kv->kv_dim;
}

// F32 and F16 keep their exact conversions (the default cache's bits do not change); other types go through the
// scalar reference quantizer, whose blocks never straddle two heads (head_dim is whole blocks).
static void store_row(aero_dtype t, const float *x, void *dst, int n) {
    if (t == AERO_DT_F32) memcpy(dst, x, sizeof(float) * n);
    else if (t == AERO_DT_F16) aero_f32_to_f16_row(x, dst, n);
    else aero_quantize_row(t, x, dst, n);
}

// Caches one token's K and V of a layer, converting once at write time.
void aero_kv_store(aero_kv_cache *kv, int layer, int seq, int cell, const float *k, const float *v) {
    store_row(kv->type_k, k, aero_kv_cell(kv, false, layer, seq, cell), kv->kv_dim);
    store_row(kv->type_v, v, aero_kv_cell(kv, true, layer, seq, cell), kv->kv_dim);
    uint16_t *rk = aero_kv_recent_row(kv, false, layer, seq, cell),
             *rv = aero_kv_recent_row(kv, true, layer, seq, cell);
    if (rk) aero_f32_to_f16_row(k, rk, kv->kv_dim);
    if (rv) aero_f32_to_f16_row(v, rv, kv->kv_dim);
}

// Attention reads a head's rows in f32: converting once per block of queries, not once per query.
void aero_kv_head_f32(const aero_kv_cache *kv, bool v, int layer, int seq, int kvh, int n_cells, float *out) {
    aero_dtype t = v ? kv->type_v : kv->type_k;
    int hd = kv->head_dim;
    size_t off = aero_dtype_row_bytes(t, (uint64_t)kvh * hd); // whole blocks: checked at init
    for (int c = 0; c < n_cells; c++) {
        const char *r = (const char *)aero_kv_cell(kv, v, layer, seq, c) + off;
        if (t == AERO_DT_F32) memcpy(out + (size_t)c * hd, r, sizeof(float) * hd);
        else aero_dequantize_row(t, r, out + (size_t)c * hd, hd);
    }
}

// F32/F16/BF16 keys convert exactly to f32 and keep the f32 dot; quantized keys are dotted in their blocks.
bool aero_kv_k_quantized(const aero_kv_cache *kv) {
    return kv->type_k != AERO_DT_F32 && kv->type_k != AERO_DT_F16 && kv->type_k != AERO_DT_BF16;
}

int aero_kv_len(const aero_ctx *c, int seq) { return seq >= 0 && seq < c->kv.n_seq ? c->kv.len[seq] : 0; }

void aero_kv_truncate(aero_ctx *c, int seq, int len) {
    if (seq < 0 || seq >= c->kv.n_seq || len < 0) return;
    if (len < c->kv.len[seq]) c->kv.len[seq] = len;
}

void aero_kv_drop(aero_ctx *c, int seq) { aero_kv_truncate(c, seq, 0); }

void aero_kv_keep(aero_ctx *c, int seq, int base, const int *keep, int n_keep) {
    aero_kv_cache *kv = &c->kv;
    if (c->m->pipe) aero_pipe_kv_keep(c, seq, base, keep, n_keep); // the other ranks' layers move the same cells
#ifdef AERO_CUDA
    if (c->gpu) aero_gpu_kv_keep(c, seq, base, keep, n_keep); // the device cache first: it reads the length
#endif
    if (seq < 0 || seq >= kv->n_seq || base < 0 || base > kv->len[seq]) return;
    int kept = 0;
    for (int i = 0; i < n_keep; i++) {
        int from = base + keep[i];
        if (from >= kv->len[seq] || (i > 0 && keep[i] <= keep[i - 1])) break;
        int to = base + kept;
        if (from != to)
            for (int l = 0; l < kv->n_layer; l++) {
                if (!kv->k[l]) continue; // another pipeline rank's layer
                memmove(aero_kv_cell(kv, false, l, seq, to), aero_kv_cell(kv, false, l, seq, from), kv->row_k);
                memmove(aero_kv_cell(kv, true, l, seq, to), aero_kv_cell(kv, true, l, seq, from), kv->row_v);
                for (int side = 0; side < 2; side++) { // the F16 copies move with their cells
                    uint16_t *dst = aero_kv_recent_row(kv, side, l, seq, to);
                    if (dst) memmove(dst, aero_kv_recent_row(kv, side, l, seq, from), sizeof(uint16_t) * kv->kv_dim);
                }
            }
        kept++;
    }
    kv->len[seq] = base + kept;
}
