// Scalar layer math shared by every ISA: these ops are a small part of a pass next to the matmuls, and one
// fixed-order implementation keeps them bit-identical everywhere. Attention's two inner loops (the score dot
// and the V sum), a quarter of a 512-token prefill, also have AVX2 versions that do the same arithmetic lane
// for lane, so they keep those bits. The one exception is attention over a
// quantized K cache, whose scores come from the selected ISA's dot kernels (fixed per row, so still batch
// invariant).
#include "ops.h"

#include <assert.h>
#include <math.h>
#include <string.h>

#include "kernels.h"
#include "quants.h"

// The normalization before attention, before the feed-forward, of q/k heads (qwen3) and before the head.
void aero_rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    float ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    ss = 1.0f / sqrtf(ss / n + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * ss * w[i];
}

// Position information for attention, applied to q and k before the k row is cached.
void aero_rope(float *v, int pos, int rope_dim, const float *inv_freq, bool neox) {
    int half = rope_dim / 2;
    for (int i = 0; i < half; i++) {
        float theta = (float)pos * inv_freq[i];
        float c = cosf(theta), s = sinf(theta);
        int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
        float x0 = v[a], x1 = v[b];
        v[a] = x0 * c - x1 * s;
        v[b] = x0 * s + x1 * c;
    }
}

// The feed-forward's gated activation.
void aero_swiglu(float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

// Attention scores need a dot whose bits do not depend on alignment or batch; see ops.h.
static float dot_fixed_scalar(const float *a, const float *b, int n) {
    float acc[16] = {0};
    int d = 0;
    for (; d + 16 <= n; d += 16)
        for (int j = 0; j < 16; j++) acc[j] += a[d + j] * b[d + j];
    for (int j = 0; d < n; d++, j++) acc[j] += a[d] * b[d];
    for (int w = 8; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) acc[j] += acc[j + w];
    return acc[0];
}

// out += p * v over n floats, one rounding per multiply and per add (no fused multiply-add: the same bits on
// every ISA).
static void axpy_scalar(float *out, float p, const float *v, int n) {
    for (int d = 0; d < n; d++) out[d] += p * v[d];
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
// The same sixteen accumulators as dot_fixed_scalar, two AVX registers of eight: each lane adds the same
// products in the same order with separate multiply and add roundings, so the result is bitwise the scalar's.
__attribute__((target("avx2"))) static float dot_fixed_avx2(const float *a, const float *b, int n) {
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    int d = 0;
    for (; d + 16 <= n; d += 16) {
        lo = _mm256_add_ps(lo, _mm256_mul_ps(_mm256_loadu_ps(a + d), _mm256_loadu_ps(b + d)));
        hi = _mm256_add_ps(hi, _mm256_mul_ps(_mm256_loadu_ps(a + d + 8), _mm256_loadu_ps(b + d + 8)));
    }
    float acc[16];
    _mm256_storeu_ps(acc, lo);
    _mm256_storeu_ps(acc + 8, hi);
    for (int j = 0; d < n; d++, j++) {
        float prod = a[d] * b[d];
        acc[j] += prod;
    }
    for (int w = 8; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) acc[j] += acc[j + w];
    return acc[0];
}

// axpy_scalar eight lanes at a time: each element gets the same multiply, then the same add.
__attribute__((target("avx2"))) static void axpy_avx2(float *out, float p, const float *v, int n) {
    __m256 pv = _mm256_set1_ps(p);
    int d = 0;
    for (; d + 8 <= n; d += 8)
        _mm256_storeu_ps(out + d, _mm256_add_ps(_mm256_loadu_ps(out + d), _mm256_mul_ps(pv, _mm256_loadu_ps(v + d))));
    for (; d < n; d++) {
        float prod = p * v[d];
        out[d] += prod;
    }
}

// Four keys' scores at once (n a multiple of 16): each key has dot_fixed's 16 lanes and fold, the folds of
// the four taken side by side (the same additions of the same pairs), so each is bitwise aero_dot_fixed.
__attribute__((target("avx2"))) static void dot_fixed4_avx2(const float *q, const float *const k[4], int n,
                                                             float out[4]) {
    __m256 lo[4], hi[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) lo[j] = hi[j] = _mm256_setzero_ps();
    for (int d = 0; d < n; d += 16) {
        const __m256 qa = _mm256_loadu_ps(q + d), qb = _mm256_loadu_ps(q + d + 8);
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            lo[j] = _mm256_add_ps(lo[j], _mm256_mul_ps(qa, _mm256_loadu_ps(k[j] + d)));
            hi[j] = _mm256_add_ps(hi[j], _mm256_mul_ps(qb, _mm256_loadu_ps(k[j] + d + 8)));
        }
    }
    __m128 u[4]; // the fold's first two steps: lanes j + 8, then j + 4
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        __m256 s8 = _mm256_add_ps(lo[j], hi[j]);
        u[j] = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    }
    _MM_TRANSPOSE4_PS(u[0], u[1], u[2], u[3]); // u[i]: lane i of the four keys
    _mm_storeu_ps(out, _mm_add_ps(_mm_add_ps(u[0], u[2]), _mm_add_ps(u[1], u[3])));
}

// out += p[t] * v[t] for count rows in row order (axpy_scalar's steps per element), out held in registers
// 64 columns at a time instead of loaded and stored per row (a fixed width: a variable one left o[] in memory);
// the last n % 64 columns 8 at a time. n a multiple of 8.
__attribute__((target("avx2"))) static void axpy_rows_avx2(float *out, const float *p, const float *const *v,
                                                            int count, int n) {
    int c = 0;
    for (; c + 64 <= n; c += 64) {
        __m256 o[8];
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) o[i] = _mm256_loadu_ps(out + c + 8 * i);
        for (int t = 0; t < count; t++) {
            const __m256 pv = _mm256_set1_ps(p[t]);
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) o[i] = _mm256_add_ps(o[i], _mm256_mul_ps(pv, _mm256_loadu_ps(v[t] + c + 8 * i)));
        }
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) _mm256_storeu_ps(out + c + 8 * i, o[i]);
    }
    for (; c < n; c += 8) {
        __m256 o = _mm256_loadu_ps(out + c);
        for (int t = 0; t < count; t++) o = _mm256_add_ps(o, _mm256_mul_ps(_mm256_set1_ps(p[t]), _mm256_loadu_ps(v[t] + c)));
        _mm256_storeu_ps(out + c, o);
    }
}

// x[t] /= d for n floats, 8 at a time (a correctly rounded division either way: the scalar bits).
__attribute__((target("avx2"))) static void div_all_avx2(float *x, int n, float d) {
    const __m256 dv = _mm256_set1_ps(d);
    int t = 0;
    for (; t + 8 <= n; t += 8) _mm256_storeu_ps(x + t, _mm256_div_ps(_mm256_loadu_ps(x + t), dv));
    for (; t < n; t++) x[t] = x[t] / d;
}

static bool have_avx2(void) {
    static int cached = -1;
    if (cached < 0) cached = __builtin_cpu_supports("avx2") ? 1 : 0;
    return cached;
}
#else
static bool have_avx2(void) { return false; }
#define dot_fixed_avx2 dot_fixed_scalar
#define axpy_avx2 axpy_scalar
// Never called without AVX2 (have_avx2 is false).
static void dot_fixed4_avx2(const float *q, const float *const k[4], int n, float out[4]) {
    for (int j = 0; j < 4; j++) out[j] = dot_fixed_scalar(q, k[j], n);
}
static void axpy_rows_avx2(float *out, const float *p, const float *const *v, int count, int n) {
    for (int t = 0; t < count; t++) axpy_scalar(out, p[t], v[t], n);
}
static void div_all_avx2(float *x, int n, float d) {
    for (int t = 0; t < n; t++) x[t] = x[t] / d;
}
#endif

#define ATTN_ROWS 32 // V rows summed per pass over the output in registers

float aero_dot_fixed(const float *a, const float *b, int n) { return aero_dot_fixed_isa(a, b, n, 1); }

// The weighted sum of V rows: one of the two inner loops of attention.
void aero_axpy_fixed(float *out, float p, const float *v, int n) { aero_axpy_fixed_isa(out, p, v, n, 1); }

// Either version on request (1: the AVX2 one, when the CPU has it); the test checks they agree bitwise.
float aero_dot_fixed_isa(const float *a, const float *b, int n, int avx2) {
    return avx2 && have_avx2() ? dot_fixed_avx2(a, b, n) : dot_fixed_scalar(a, b, n);
}

// The same choice for the V sum.
void aero_axpy_fixed_isa(float *out, float p, const float *v, int n, int avx2) {
    if (avx2 && have_avx2()) axpy_avx2(out, p, v, n);
    else axpy_scalar(out, p, v, n);
}

// The softmax of the scores and the weighted sum of the V rows, shared by both K layouts so their V side is one
// order.
static void softmax_v(float *out, const float *v, const int *rows, int n, int hd, float *scores, float maxs,
                      const aero_attn_recent *rc) {
    float sum = 0;
    for (int t = 0; t < n; t++) {
        scores[t] = expf(scores[t] - maxs);
        sum += scores[t];
    }
    memset(out, 0, sizeof(float) * hd);
    if (!(rc && rc->v) && hd % 8 == 0 && have_avx2()) { // the same weights and steps, rows in batches
        div_all_avx2(scores, n, sum);
        for (int t0 = 0; t0 < n; t0 += ATTN_ROWS) {
            const float *vr[ATTN_ROWS];
            int cnt = n - t0 < ATTN_ROWS ? n - t0 : ATTN_ROWS;
            for (int i = 0; i < cnt; i++) vr[i] = v + (size_t)rows[t0 + i] * hd;
            axpy_rows_avx2(out, scores + t0, vr, cnt, hd);
        }
        return;
    }
    for (int t = 0; t < n; t++) {
        const float *vr = v + (size_t)rows[t] * hd;
        if (rc && rc->v && t >= rc->first) {
            aero_f16_to_f32_row(rc->v + (size_t)(rows[t] % rc->ring) * rc->stride, rc->tmp, hd);
            vr = rc->tmp;
        }
        aero_axpy_fixed(out, scores[t] / sum, vr, hd);
    }
}

// One query head's attention; the caller lists the visible rows so that causal, multi-sequence and tree masks
// all reduce through this one order.
void aero_attention(float *out, const float *q, const float *k, const float *v, const int *rows, int n, int hd,
                    float scale, float *scores) {
    float maxs = -INFINITY;
    int t = 0;
    if (hd % 16 == 0 && have_avx2())
        for (; t + 4 <= n; t += 4) { // four keys at a time, each bitwise aero_dot_fixed
            const float *kr[4] = {k + (size_t)rows[t] * hd, k + (size_t)rows[t + 1] * hd, k + (size_t)rows[t + 2] * hd,
                                  k + (size_t)rows[t + 3] * hd};
            float s4[4];
            dot_fixed4_avx2(q, kr, hd, s4);
            for (int j = 0; j < 4; j++) {
                float sc = s4[j] * scale;
                scores[t + j] = sc;
                if (sc > maxs) maxs = sc;
            }
        }
    for (; t < n; t++) {
        float sc = aero_dot_fixed(q, k + (size_t)rows[t] * hd, hd) * scale;
        scores[t] = sc;
        if (sc > maxs) maxs = sc;
    }
    softmax_v(out, v, rows, n, hd, scores, maxs, NULL);
}

size_t aero_attention_kq_scratch(aero_dtype kt, int hd) {
    return aero_dtype_row_bytes(aero_vec_dot_type(kt), (uint64_t)hd);
}

// A quantized K cache is read in its own blocks: the query is quantized once, as the matmuls quantize
// activations, and each score is the type's integer dot (same kernel, same bits for a row whatever the batch).
void aero_attention_kq(float *out, const float *q, aero_dtype kt, const void *k, size_t k_stride, const float *v,
                       const int *rows, int n, int hd, float scale, float *scores, void *qa,
                       const aero_attn_recent *rc) {
    const aero_kernel_ops *ops = aero_kernels_selected();
    aero_dot_fn dot = NULL;
    if (kt != AERO_DT_F32) {
        aero_dtype at = aero_vec_dot_type(kt);
        if (at == AERO_DT_Q8_0) ops->quantize_q8_0(q, qa, hd);
        else aero_quantize_row(at, q, qa, hd);
        dot = ops->dot[kt];
        assert(dot && "aero_attention_kq: K type without a dot kernel");
    }
    const char *kb = k;
    float maxs = -INFINITY;
    for (int t = 0; t < n; t++) {
        float sc;
        if (rc && rc->k && t >= rc->first) {
            aero_f16_to_f32_row(rc->k + (size_t)(rows[t] % rc->ring) * rc->stride, rc->tmp, hd);
            sc = aero_dot_fixed(q, rc->tmp, hd) * scale;
        } else if (dot) {
            sc = dot(hd, kb + (size_t)rows[t] * k_stride, qa) * scale;
        } else {
            sc = aero_dot_fixed(q, (const float *)(kb + (size_t)rows[t] * k_stride), hd) * scale;
        }
        scores[t] = sc;
        if (sc > maxs) maxs = sc;
    }
    softmax_v(out, v, rows, n, hd, scores, maxs, rc);
}
