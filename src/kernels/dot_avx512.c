// AVX-512 (F, BW, VL, DQ) kernels: f32/f16/bf16 dots, row conversions and the activation quantizers.
// Compiled with per-file ISA flags; only called when the CPU has them. The quantized dots are the AVX2
// table's (see below), so the VNNI and non-VNNI tables are the same there.
#include <immintrin.h>

#include "quants.h"

#define AI __attribute__((always_inline)) static inline

// Weights stream from DRAM once per pass: prefetching a few KB ahead into L1 keeps more lines in flight
// than the hardware prefetcher alone (measured: +10-20 % single-thread DRAM throughput for Q8_0/Q4_0).
#define PREFETCH_AHEAD 4096
// Prefetches `lines` cache lines PREFETCH_AHEAD bytes past p (never faults).
AI void prefetch_ahead(const void *p, int lines) {
    for (int l = 0; l < lines; l++)
        _mm_prefetch((const char *)((uintptr_t)p + PREFETCH_AHEAD + 64u * (unsigned)l), _MM_HINT_T0);
}

AI float h2f(uint16_t h) { return _cvtsh_ss(h); }

// acc + sum of 4 adjacent u8*s8 products per int32 lane. Without VNNI: maddubs never saturates here
// because every u8 operand is at most 128 and every s8 at most 127 in magnitude.
AI __m512i dp(__m512i acc, __m512i u, __m512i s, const bool vnni) {
    if (vnni) return _mm512_dpbusd_epi32(acc, u, s);
    return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1)));
}

// Two 256-bit halves as one vector.
AI __m512i join256(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); }
// Fixed-order horizontal sum of 8 floats.
AI float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
AI __m512 join_ps(float lo, float hi) { return _mm512_insertf32x8(_mm512_set1_ps(lo), _mm256_set1_ps(hi), 1); }

// ---- f32 / f16 / bf16 -----------------------------------------------------------------------------------

// 16-lane f32 accumulation with separate multiply and add, lane-for-lane the scalar order.
static void dot_f32_acc16_avx512(float acc[16], const float *a, const float *b, int64_t n) {
    __m512 s = _mm512_loadu_ps(acc);
    for (int64_t i = 0; i < n; i += 16)
        s = _mm512_add_ps(s, _mm512_mul_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i)));
    _mm512_storeu_ps(acc, s);
}

// Lane k accumulates elements i = k (mod 16); the tail goes to lanes 0.. (masked), as in the scalar kernel.
static float dot_f32(int64_t n, const void *vw, const void *va) {
    const float *w = vw, *a = va;
    __m512 s = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) s = _mm512_add_ps(s, _mm512_mul_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(a + i)));
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        s = _mm512_mask_add_ps(s, k, s,
                               _mm512_mul_ps(_mm512_maskz_loadu_ps(k, w + i), _mm512_maskz_loadu_ps(k, a + i)));
    }
    float acc[16];
    _mm512_storeu_ps(acc, s);
    return aero_reduce16(acc);
}

// Products of two halves (or two bfloat16) are exact in f32, so fused multiply-add equals the scalar order.
static float dot_f16(int64_t n, const void *vw, const void *va) {
    const uint16_t *w = vw, *a = va;
    __m512 s = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        s = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const void *)(w + i))),
                            _mm512_cvtph_ps(_mm256_loadu_si256((const void *)(a + i))), s);
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        s = _mm512_mask3_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, w + i)),
                                  _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, a + i)), s, k);
    }
    float acc[16];
    _mm512_storeu_ps(acc, s);
    return aero_reduce16(acc);
}

// 16 bfloat16 widened to f32 (a shift).
AI __m512 bf16x16(const uint16_t *p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const void *)p)), 16));
}
// The same for a tail, lanes outside k zero.
AI __m512 bf16x16_mask(__mmask16 k, const uint16_t *p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, p)), 16));
}

// BF16 x BF16 in the fixed 16-lane order (products are exact).
static float dot_bf16(int64_t n, const void *vw, const void *va) {
    const uint16_t *w = vw, *a = va;
    __m512 s = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) s = _mm512_fmadd_ps(bf16x16(w + i), bf16x16(a + i), s);
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        s = _mm512_mask3_fmadd_ps(bf16x16_mask(k, w + i), bf16x16_mask(k, a + i), s, k);
    }
    float acc[16];
    _mm512_storeu_ps(acc, s);
    return aero_reduce16(acc);
}

// F16C widening; exact, so equal to the scalar conversion.
static void f16_to_f32_row(const uint16_t *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_cvtph_ps(_mm256_loadu_si256((const void *)(x + i))));
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, k, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, x + i)));
    }
}

// F16C narrowing with round-to-nearest-even, equal to the scalar conversion.
static void f32_to_f16_row(const float *x, uint16_t *y, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((void *)(y + i),
                            _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        _mm256_mask_storeu_epi16(
            y + i, k, _mm512_cvtps_ph(_mm512_maskz_loadu_ps(k, x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
}

// bfloat16 widening (a shift).
static void bf16_to_f32_row(const uint16_t *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, bf16x16(x + i));
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, k, bf16x16_mask(k, x + i));
    }
}

// ---- activation quantizers (bitwise equal to the scalar ones) ------------------------------------------

// Rounds x * id to nearest even after clamping to [-127, 127], as nearest_clamped() in the scalar file.
AI __m512i q8_round(__m512 x, __m512 id) {
    __m512 v = _mm512_mul_ps(x, id);
    v = _mm512_max_ps(v, _mm512_set1_ps(-127.0f)); // NaN -> -127, like fmaxf
    v = _mm512_min_ps(v, _mm512_set1_ps(127.0f));
    return _mm512_cvtps_epi32(v);
}

AI __m512 abs_ps(__m512 x) {
    return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(0x7fffffff)));
}

// SIMD Q8_0 activation quantizer, byte-identical to the scalar one.
static void quantize_q8_0(const float *x, void *vy, int64_t n) {
    aero_block_q8_0 *y = vy;
    for (int64_t i = 0; i < n / AERO_QK; i++, x += AERO_QK) {
        __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        // max(abs, acc) keeps acc when abs is NaN, as fmaxf does
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(abs_ps(v1), _mm512_max_ps(abs_ps(v0), _mm512_setzero_ps())));
        float id;
        y[i].d = aero_q8_0_scale(amax, &id);
        __m512 vid = _mm512_set1_ps(id);
        _mm_storeu_si128((void *)y[i].qs, _mm512_cvtsepi32_epi8(q8_round(v0, vid)));
        _mm_storeu_si128((void *)(y[i].qs + 16), _mm512_cvtsepi32_epi8(q8_round(v1, vid)));
    }
}

// SIMD Q8_K activation quantizer, byte-identical to the scalar one.
static void quantize_q8_K(const float *x, void *vy, int64_t n) {
    aero_block_q8_K *y = vy;
    for (int64_t i = 0; i < n / AERO_QK_K; i++, x += AERO_QK_K) {
        __m512 m = _mm512_setzero_ps();
        for (int j = 0; j < AERO_QK_K; j += 16) m = _mm512_max_ps(abs_ps(_mm512_loadu_ps(x + j)), m);
        float id;
        y[i].d = aero_q8_K_scale(aero_q8_K_signed_max(x, AERO_QK_K, _mm512_reduce_max_ps(m)), &id);
        __m512 vid = _mm512_set1_ps(id);
        for (int g = 0; g < 16; g++) {
            __m512i q = q8_round(_mm512_loadu_ps(x + 16 * g), vid);
            _mm_storeu_si128((void *)(y[i].qs + 16 * g), _mm512_cvtsepi32_epi8(q));
            y[i].bsums[g] = (int16_t)_mm512_reduce_add_epi32(q);
        }
    }
}

// ---- quantized dots ----------------------------------------------------------------------------------
//
// The quantized dots take the AVX2 table's row-lane kernels (8 weight rows in the lanes of a vector, each
// lane its row's one-row float steps; quants_ref.c's order). The AVX-512 kernels of the previous order (16
// lanes of one row, then a horizontal sum) were removed with that order; a 16-row port of the AVX2 tiles
// (one row per lane of a 512-bit vector, vpdpbusd for the integer sums) is what would bring them back.

// Installs the AVX-512 kernels over a copy of the AVX2 table; vnni picks the vpdpbusd instances.
void aero_kernels_fill_avx512(aero_kernel_ops *ops, bool vnni) {
    ops->dot[AERO_DT_F32] = dot_f32;
    ops->dot[AERO_DT_F16] = dot_f16;
    ops->dot[AERO_DT_BF16] = dot_bf16;
    (void)vnni; // the quantized dots (where VNNI mattered) are the AVX2 table's
    ops->f16_to_f32_row = f16_to_f32_row;
    ops->f32_to_f16_row = f32_to_f16_row;
    ops->bf16_to_f32_row = bf16_to_f32_row;
    ops->quantize_q8_0 = quantize_q8_0;
    ops->quantize_q8_K = quantize_q8_K;
    ops->dot_f32_acc16 = dot_f32_acc16_avx512;
    ops->name = vnni ? "avx512-vnni" : "avx512";
}
