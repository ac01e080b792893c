// Batched matmul y = W x for n activation rows, split across the pool. Activations are quantized once to the
// weight type's vec-dot type, then each thread takes chunks of output rows; tiles of weight rows are reused from
// cache for every token. Where the ISA has row-lane tiles (8 rows in the lanes of a vector, each lane its row's
// one-row float steps) every n takes them, decode included; otherwise each output comes from the per-(row,
// token) dot kernel. Either way a result is bitwise independent of n and of the thread count (DESIGN.md
// invariant 3).
#include <assert.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "quants.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#ifndef MM_TILE_BYTES
#define MM_TILE_BYTES (24 * 1024)
#endif                              // weight bytes of a tile reused across the tokens of a batch (fits L1)
#define MM_TOKEN_BYTES (384 * 1024) // activation bytes of a token tile that stays in L2 while weights pass
#define MM_CHUNKS_PER_THREAD 4      // dynamic chunks per thread: absorbs a thread slowed by a busy machine
#define MM_PACK_MIN_TOKENS 8        // tokens of a token tile from which a packed tile pays for its unpacking
#define MM_PACK_TILE_TOKENS 256     // least tokens per token tile when every matrix of a job has packed tiles

// ---- per-thread scratch (reentrant: each calling thread owns its buffer) ------------------------------

typedef struct {
    void *p;
    size_t cap;
} mm_scratch;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static bool scratch_key_ok;

// Frees a thread's scratch when the thread exits.
static void scratch_destroy(void *v) {
    mm_scratch *s = v;
    free(s->p);
    free(s);
}

static void scratch_key_init(void) { scratch_key_ok = pthread_key_create(&scratch_key, scratch_destroy) == 0; }

// A 64-byte aligned buffer of at least `bytes`, cached per calling thread; NULL when out of memory.
static void *scratch_get(size_t bytes) {
    pthread_once(&scratch_once, scratch_key_init);
    if (!scratch_key_ok) return NULL;
    mm_scratch *s = pthread_getspecific(scratch_key);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s) return NULL;
        if (pthread_setspecific(scratch_key, s)) {
            free(s);
            return NULL;
        }
    }
    if (s->cap < bytes) {
        size_t cap = bytes + bytes / 4 + 4096;
        void *p = NULL;
        if (posix_memalign(&p, 64, cap)) return NULL;
        free(s->p);
        s->p = p;
        s->cap = cap;
    }
    return s->p;
}

// ---- the job ----------------------------------------------------------------------------------------------

#define MM_MAX_MATS 4 // matrices sharing one input (q/k/v, gate/up)

// One matrix of a job: its output and how its rows are cut into tiles and claimed chunks.
typedef struct {
    const aero_wmat *w;
    float *y;
    int64_t ldy;     // output row stride (w->rows, or wider when W is a block of a larger matrix's rows)
    long tile_rows;  // weight rows reused across the tokens of a batch
    long chunk_rows; // rows per dynamically claimed chunk (a multiple of tile_rows)
    long first_chunk, n_chunks;
} mm_mat;

typedef struct {
    mm_mat mats[MM_MAX_MATS];
    int n_mats;
    const aero_wmat *w; // mats[0].w: the input's shape and activation layout
    const float *x;
    int n;
    bool exact_f32; // aero_matmul_f32: dequantized weights times f32 activations
    const aero_kernel_ops *ops;
    aero_dtype vt; // activation type of the dot
    bool prepared; // activation rows in the ISA's own layout (ops->act_quantize)
    uint8_t *act;  // n quantized activation rows (NULL when the dot takes f32 directly)
    size_t act_row_bytes;
    int64_t act_unit; // elements per quantization unit (a run of whole activation blocks)
    float *deq;       // exact_f32: one dequantized weight row per thread
    int tile_tokens;  // tokens whose activations stay in cache while a chunk of weights passes
    uint8_t *pack;    // per thread, pack_stride bytes: one packed 8-row tile (NULL: no packed kernels used)
    size_t pack_stride;
    long n_chunks;    // all matrices
    _Atomic long next_chunk;
    _Atomic int quant_next; // the next of the nth parts of the activation quantization to claim
    _Atomic int quant_done; // parts quantized
} mm_job;

// Quantizes this thread's share of the activation units (whole blocks, so the split never changes a bit).
static void mm_quantize(mm_job *j, int ith, int nth) {
    int64_t cols = j->w->cols, per_row = cols / j->act_unit;
    if (j->prepared) { // whole rows: the layout may group blocks
        long b, e;
        aero_pool_split(j->n, ith, nth, &b, &e);
        for (long t = b; t < e; t++)
            j->ops->act_quantize(j->w->type, j->x + t * cols, j->act + t * j->act_row_bytes, cols);
        return;
    }
    long b, e;
    aero_pool_split((long)(per_row * j->n), ith, nth, &b, &e);
    while (b < e) {
        int64_t t = b / per_row, u = b % per_row, take = per_row - u;
        if (take > e - b) take = e - b;
        const float *src = j->x + t * cols + u * j->act_unit;
        uint8_t *dst = j->act + t * j->act_row_bytes + aero_dtype_row_bytes(j->vt, (uint64_t)(u * j->act_unit));
        int64_t len = take * j->act_unit;
        switch (j->vt) {
        case AERO_DT_Q8_0: j->ops->quantize_q8_0(src, dst, len); break;
        case AERO_DT_Q8_K: j->ops->quantize_q8_K(src, dst, len); break;
        case AERO_DT_F16: j->ops->f32_to_f16_row(src, (uint16_t *)dst, len); break;
        default: aero_quantize_row(j->vt, src, dst, len); break; // BF16
        }
        b += take;
    }
}

// The f32 dot of a dequantized weight row with an activation row, in the fixed 16-lane order.
static float mm_dot_f32(const aero_kernel_ops *ops, const float *w, const float *x, int64_t n) {
    float acc[16] = {0};
    int64_t n16 = n & ~(int64_t)15;
    ops->dot_f32_acc16(acc, w, x, n16);
    for (int64_t i = n16; i < n; i++) acc[i - n16] = acc[i - n16] + w[i] * x[i];
    return aero_reduce16(acc);
}

// Weight rows [r0, r1) of matrix m times tokens [t0, t1) through packed tiles: each 8 rows are unpacked once
// into the thread's buffer, then every group of 4 tokens multiplies it (the bits of the row-lane tiles).
static void mm_tile_packed(const mm_job *j, const mm_mat *m, int ith, int t0, int t1, long r0, long r1) {
    const aero_wmat *w = m->w;
    uint8_t *pk = j->pack + (size_t)ith * j->pack_stride;
    void (*packed)(int64_t, const void *, const void *const *, int, float *) = j->ops->mm_packed[w->type];
    for (long r = r0; r < r1; r += 8) {
        int R = r1 - r < 8 ? (int)(r1 - r) : 8;
        j->ops->mm_pack8[w->type](w->cols, (const uint8_t *)w->data + (size_t)r * w->row_bytes, w->row_bytes, R, pk);
        for (int t = t0; t < t1; t += 4) {
            int T = t1 - t < 4 ? t1 - t : 4;
            const void *a[4];
            float out[32];
            for (int k = 0; k < T; k++) a[k] = j->act + (size_t)(t + k) * j->act_row_bytes;
            packed(w->cols, pk, a, T, out);
            for (int k = 0; k < T; k++) memcpy(m->y + (size_t)(t + k) * m->ldy + r, out + 8 * k, sizeof(float) * (size_t)R);
        }
    }
}

// Weight rows [r0, r1) of matrix m times tokens [t0, t1), in groups of up to 4 tokens (8 rows x 8 tokens where
// the ISA has row-lane tiles for the type; packed tiles when the ISA has them and the tokens are many).
static void mm_tile(const mm_job *j, const mm_mat *m, int ith, int t0, int t1, long r0, long r1) {
    const aero_wmat *w = m->w;
    const uint8_t *wd = w->data;
    int64_t cols = w->cols;
    if (j->pack && j->ops->mm_packed[w->type] && t1 - t0 >= MM_PACK_MIN_TOKENS) {
        mm_tile_packed(j, m, ith, t0, t1, r0, r1);
        return;
    }
    aero_dot_fn dot = j->ops->mm_dot[w->type];
    void (*multi)(int64_t, const void *, const void *const *, int, float *) = j->ops->mm_dot_multi[w->type];
    void (*tile8)(int64_t, const void *, size_t, int, const void *const *, int, float *) = j->ops->mm_tile8[w->type];
    const int group = tile8 ? 8 : 4; // tokens per call
    for (int t = t0; t < t1; t += group) {
        int T = t1 - t < group ? t1 - t : group;
        const void *a[8];
        for (int k = 0; k < T; k++)
            a[k] = j->act ? (const void *)(j->act + (size_t)(t + k) * j->act_row_bytes)
                          : (const void *)(j->x + (size_t)(t + k) * cols);
        if (tile8) { // 8 rows in the lanes: each output has its row's one-row bits
            float out[64];
            for (long r = r0; r < r1; r += 8) {
                int R = r1 - r < 8 ? (int)(r1 - r) : 8;
                tile8(cols, wd + (size_t)r * w->row_bytes, w->row_bytes, R, a, T, out);
                for (int k = 0; k < T; k++)
                    for (int q = 0; q < R; q++) m->y[(size_t)(t + k) * m->ldy + r + q] = out[8 * k + q];
            }
        } else if (multi && T > 1) { // same bits as T single dots
            float out[4];
            for (long r = r0; r < r1; r++) {
                multi(cols, wd + (size_t)r * w->row_bytes, a, T, out);
                for (int k = 0; k < T; k++) m->y[(size_t)(t + k) * m->ldy + r] = out[k];
            }
        } else {
            for (int k = 0; k < T; k++) {
                float *yt = m->y + (size_t)(t + k) * m->ldy;
                for (long r = r0; r < r1; r++) yt[r] = dot(cols, wd + (size_t)r * w->row_bytes, a[k]);
            }
        }
    }
}

// Output rows [r0, r1) of matrix m for every token: tiles of weight rows stay in cache while all tokens pass.
static void mm_rows(mm_job *j, const mm_mat *m, int ith, long r0, long r1) {
    const aero_wmat *w = m->w;
    const uint8_t *wd = w->data;
    int64_t cols = w->cols;
    int n = j->n;
    if (j->exact_f32 && w->type != AERO_DT_F32) {
        float *deq = j->deq + (size_t)ith * (size_t)cols;
        for (long r = r0; r < r1; r++) {
            aero_dequantize_row(w->type, wd + (size_t)r * w->row_bytes, deq, cols);
            for (int t = 0; t < n; t++)
                m->y[(size_t)t * m->ldy + r] = mm_dot_f32(j->ops, deq, j->x + (size_t)t * cols, cols);
        }
        return;
    }
    // Token tiles stay in L2 while the thread's rows pass; within them, weight tiles stay in L1 while groups
    // of up to 4 tokens pass (the multi-token kernels unpack each weight block once per group).
    for (int tt = 0; tt < n; tt += j->tile_tokens) {
        int tend = tt + j->tile_tokens < n ? tt + j->tile_tokens : n;
        for (long tr = r0; tr < r1; tr += m->tile_rows)
            mm_tile(j, m, ith, tt, tend, tr, tr + m->tile_rows < r1 ? tr + m->tile_rows : r1);
    }
}

// Pool entry: quantize a share of the activations, wait for all shares, then claim chunks of rows (of any of
// the job's matrices, in order).
static void mm_task(void *ctx, int ith, int nth) {
    mm_job *j = ctx;
    if (j->act) { // parts claimed like the chunks: a share never waits for a share that no thread has begun
        for (int q; (q = atomic_fetch_add_explicit(&j->quant_next, 1, memory_order_relaxed)) < nth;) {
            mm_quantize(j, q, nth);
            atomic_fetch_add_explicit(&j->quant_done, 1, memory_order_acq_rel);
        }
        for (int spins = 0; atomic_load_explicit(&j->quant_done, memory_order_acquire) < nth; spins++) {
            if (spins < 64) cpu_relax();
            else sched_yield();
        }
    }
    for (;;) {
        long c = atomic_fetch_add_explicit(&j->next_chunk, 1, memory_order_relaxed);
        if (c >= j->n_chunks) break;
        int k = 0;
        while (c >= j->mats[k].first_chunk + j->mats[k].n_chunks) k++;
        const mm_mat *m = &j->mats[k];
        long r0 = (c - m->first_chunk) * m->chunk_rows, r1 = r0 + m->chunk_rows;
        if (r1 > m->w->rows) r1 = m->w->rows;
        mm_rows(j, m, ith, r0, r1);
    }
}

// True when W can be multiplied: a computable type, whole blocks, rows long enough.
static bool wmat_ok(const aero_wmat *w) {
    const aero_dtype_info *info = aero_dtype_get((uint32_t)w->type);
    if (!w->data || !info || !info->computable || w->cols <= 0 || w->rows <= 0 || w->cols % info->block) return false;
    return w->row_bytes >= aero_dtype_row_bytes(w->type, (uint64_t)w->cols);
}

// Load-time check with a message: the matmuls assume it passed (the weight's data, which a streamed tensor
// only has while its unit is held, is not looked at).
aero_status aero_wmat_check(const aero_wmat *w, aero_error *err) {
    const aero_dtype_info *info = aero_dtype_get((uint32_t)w->type);
    if (!info || !info->computable)
        return aero_fail(err, AERO_ERR_UNSUPPORTED, "matmul: weight type %s has no kernels", aero_dtype_name(w->type));
    if (w->cols <= 0 || w->rows <= 0)
        return aero_fail(err, AERO_ERR_INVALID, "matmul: bad shape %lld x %lld", (long long)w->rows,
                         (long long)w->cols);
    if (w->cols % info->block)
        return aero_fail(err, AERO_ERR_INVALID, "matmul: %s row of %lld elements is not a multiple of the block (%u)",
                         info->name, (long long)w->cols, info->block);
    if (w->row_bytes < aero_dtype_row_bytes(w->type, (uint64_t)w->cols))
        return aero_fail(err, AERO_ERR_INVALID, "matmul: row stride %zu below the %zu bytes of a %s row", w->row_bytes,
                         aero_dtype_row_bytes(w->type, (uint64_t)w->cols), info->name);
    return AERO_OK;
}

// Sets up the job (scratch, tiles, chunks) and runs it on the pool: nw matrices of the same input shape and
// activation layout (checked by the caller), one quantization of x for all of them.
static void matmul_run(aero_pool *pool, const aero_wmat *const *ws, int nw, const float *x, int n, float *const *ys,
                       const int64_t *ldys, bool exact_f32) {
    if (n <= 0 || nw <= 0) return;
    for (int k = 0; k < nw; k++)
        if (!wmat_ok(ws[k])) { // the caller skipped aero_wmat_check (or has no data): a bug, never a zero result
            assert(!"matmul: weight not checked with aero_wmat_check, or without data");
            return;
        }
    const aero_wmat *w = ws[0];
    int nth = aero_pool_size(pool);
    mm_job j = {.n_mats = nw, .w = w, .x = x, .n = n, .exact_f32 = exact_f32, .ops = aero_kernels_selected()};
    j.vt = exact_f32 ? AERO_DT_F32 : aero_vec_dot_type(w->type);
    size_t need = 0;
    if (j.vt != AERO_DT_F32) {
        size_t prep = j.ops->act_bytes ? j.ops->act_bytes(w->type, w->cols) : 0;
        j.prepared = prep > 0;
        j.act_row_bytes = ((prep ? prep : aero_dtype_row_bytes(j.vt, (uint64_t)w->cols)) + 63) & ~(size_t)63;
        j.act_unit = j.vt == AERO_DT_Q8_0 ? AERO_QK : j.vt == AERO_DT_Q8_K ? AERO_QK_K : w->cols;
        need = j.act_row_bytes * (size_t)n;
        if (n >= MM_PACK_MIN_TOKENS) // one packed tile per thread, for the weights that have packed kernels
            for (int k = 0; k < nw; k++)
                if (j.ops->mm_packed[ws[k]->type]) {
                    size_t pb = (j.ops->pack_bytes[ws[k]->type](ws[k]->cols) + 63) & ~(size_t)63;
                    if (pb > j.pack_stride) j.pack_stride = pb;
                }
        need += j.pack_stride * (size_t)nth;
    } else if (exact_f32 && w->type != AERO_DT_F32) {
        need = (size_t)nth * (size_t)w->cols * sizeof(float);
    }
    if (need) {
        uint8_t *s = scratch_get(need);
        if (!s) { // out of memory: the exact-f32 path needs no heap when run one row at a time
            for (int k = 0; k < nw; k++)
                for (int t = 0; t < n; t++)
                    for (int64_t r = 0; r < ws[k]->rows; r++)
                        ys[k][(size_t)t * ldys[k] + r] = aero_vec_dot_f32(
                            ws[k]->type, ws[k]->cols, (const uint8_t *)ws[k]->data + (size_t)r * ws[k]->row_bytes,
                            x + (size_t)t * ws[k]->cols);
            return;
        }
        if (j.vt != AERO_DT_F32) j.act = s;
        else j.deq = (float *)s;
        if (j.pack_stride) j.pack = s + j.act_row_bytes * (size_t)n;
    }
    size_t ab = j.act ? j.act_row_bytes : (size_t)w->cols * sizeof(float);
    j.tile_tokens = (int)(MM_TOKEN_BYTES / (ab ? ab : 1)) & ~7;
    if (j.tile_tokens < 8) j.tile_tokens = 8;
    bool all_packed = j.pack_stride > 0;
    for (int k = 0; k < nw; k++) all_packed = all_packed && j.ops->mm_packed[ws[k]->type];
    // A packed tile keeps its 8 rows in cache while groups of 4 tokens pass, so the activations may come from
    // L3: larger token tiles unpack each row fewer times (an 8192-wide Q4_K row fits 40 tokens in L2).
    if (all_packed && j.tile_tokens < MM_PACK_TILE_TOKENS) j.tile_tokens = MM_PACK_TILE_TOKENS;
    long all_rows = 0;
    for (int k = 0; k < nw; k++) all_rows += ws[k]->rows;
    long want = all_rows / ((long)nth * MM_CHUNKS_PER_THREAD);
    if (want < 16) want = 16;
    for (int k = 0; k < nw; k++) {
        mm_mat *m = &j.mats[k];
        *m = (mm_mat){.w = ws[k], .y = ys[k], .ldy = ldys[k], .first_chunk = j.n_chunks};
        size_t rb = ws[k]->row_bytes ? ws[k]->row_bytes : 1;
        m->tile_rows = n > 1 ? (long)(MM_TILE_BYTES / rb) : 1;
        if (j.ops->mm_tile8[ws[k]->type] && !exact_f32) // whole 8-row tiles, decode included
            m->tile_rows = m->tile_rows < 8 ? 8 : m->tile_rows & ~7L;
        if (m->tile_rows < 1) m->tile_rows = 1;
        m->chunk_rows = (want + m->tile_rows - 1) / m->tile_rows * m->tile_rows;
        m->n_chunks = (ws[k]->rows + m->chunk_rows - 1) / m->chunk_rows;
        j.n_chunks += m->n_chunks;
    }
    atomic_init(&j.next_chunk, 0);
    atomic_init(&j.quant_next, 0);
    atomic_init(&j.quant_done, 0);
    aero_pool_run(pool, mm_task, &j);
}

// Quantized-activation matmul: the fast path of every forward pass.
void aero_matmul(aero_pool *pool, const aero_wmat *w, const float *x, int n, float *y) {
    int64_t ld = w->rows;
    matmul_run(pool, &w, 1, x, n, &y, &ld, false);
}

// The same into a wider output: a block of rows of a larger matrix (the streamed head) writes its columns of y.
void aero_matmul_ld(aero_pool *pool, const aero_wmat *w, const float *x, int n, float *y, int64_t ldy) {
    assert(ldy >= w->rows);
    matmul_run(pool, &w, 1, x, n, &y, &ldy, false);
}

// Whether two weights can share one quantization of their input: the same row length and activation rows.
static bool same_input(const aero_kernel_ops *ops, const aero_wmat *a, const aero_wmat *b) {
    if (a->cols != b->cols || aero_vec_dot_type(a->type) != aero_vec_dot_type(b->type)) return false;
    size_t pa = ops->act_bytes ? ops->act_bytes(a->type, a->cols) : 0;
    size_t pb = ops->act_bytes ? ops->act_bytes(b->type, b->cols) : 0;
    return pa == 0 && pb == 0 ? true : a->type == b->type; // an ISA's own layout is per weight type
}

// Several weights on one input (q/k/v, gate/up): its activations are quantized once per token for all of them
// and the pool is started once; the outputs have the bits of separate aero_matmul calls (same quantized rows,
// same per-(row, token) dots).
void aero_matmul_many(aero_pool *pool, const aero_wmat *const *w, int nw, const float *x, int n, float *const *y) {
    const aero_kernel_ops *ops = aero_kernels_selected();
    int64_t ld[MM_MAX_MATS];
    int first = 0;
    while (first < nw) { // runs of weights that can share, MM_MAX_MATS at most
        int end = first + 1;
        while (end < nw && end - first < MM_MAX_MATS && same_input(ops, w[first], w[end])) end++;
        for (int k = first; k < end; k++) ld[k - first] = w[k]->rows;
        matmul_run(pool, w + first, end - first, x, n, y + first, ld, false);
        first = end;
    }
}

// Exact-f32 matmul, for callers that must not quantize activations.
void aero_matmul_f32(aero_pool *pool, const aero_wmat *w, const float *x, int n, float *y) {
    int64_t ld = w->rows;
    matmul_run(pool, &w, 1, x, n, &y, &ld, true);
}
