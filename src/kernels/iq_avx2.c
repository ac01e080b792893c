// AVX2 dots of IQ4_NL and IQ4_XS: the 16 levels looked up with pshufb, products summed exactly as integers
// (sign moved onto the activation so maddubs takes |level| <= 127 unsigned, pairs never saturate), then the same
// float steps in the same order as the scalar reference, so the result is its bits.
#include <immintrin.h>

#include "quants_iq.h"

#define AI __attribute__((always_inline)) static inline

// Exact sum of the 8 int32 lanes.
AI int hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

// The 32 levels of one group (16 nibble bytes: elements 0..15 low, 16..31 high) times 32 activations, as 8
// partial int32 sums.
AI __m256i group_dot(const uint8_t *qs, const int8_t *q8, __m128i table) {
    __m128i b = _mm_loadu_si128((const __m128i *)qs), m = _mm_set1_epi8(0x0F);
    __m128i lo = _mm_shuffle_epi8(table, _mm_and_si128(b, m));
    __m128i hi = _mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16(b, 4), m));
    __m256i w = _mm256_set_m128i(hi, lo);
    __m256i a = _mm256_loadu_si256((const __m256i *)q8);
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

static float dot_iq4_nl_avx2(int64_t n, const void *vw, const void *va) {
    const aero_block_iq4_nl *w = vw;
    const aero_block_q8_0 *a = va;
    const __m128i table = _mm_loadu_si128((const __m128i *)aero_kvalues_iq4nl);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / AERO_QK; i++) {
        int isum = hsum_i32(group_dot(w[i].qs, a[i].qs, table));
        sum += (_cvtsh_ss(w[i].d) * _cvtsh_ss(a[i].d)) * (float)isum;
    }
    return sum;
}

static float dot_mxfp4_avx2(int64_t n, const void *vw, const void *va) {
    const aero_block_mxfp4 *w = vw;
    const aero_block_q8_0 *a = va;
    const __m128i table = _mm_loadu_si128((const __m128i *)aero_kvalues_mxfp4);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / AERO_QK; i++) {
        int isum = hsum_i32(group_dot(w[i].qs, a[i].qs, table));
        sum += (_cvtsh_ss(a[i].d) * aero_e8m0_half(w[i].e)) * (float)isum;
    }
    return sum;
}

static float dot_iq4_xs_avx2(int64_t n, const void *vw, const void *va) {
    const aero_block_iq4_xs *w = vw;
    const aero_block_q8_K *a = va;
    const __m128i table = _mm_loadu_si128((const __m128i *)aero_kvalues_iq4nl);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / AERO_QK_K; i++) {
        __m256i acc = _mm256_setzero_si256();
        for (int ib = 0; ib < 8; ib++) {
            __m256i g = group_dot(w[i].qs + 16 * ib, a[i].qs + 32 * ib, table);
            acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(g, _mm256_set1_epi32(aero_iq4xs_scale(&w[i], ib) - 32)));
        }
        sum += (_cvtsh_ss(w[i].d) * a[i].d) * (float)hsum_i32(acc);
    }
    return sum;
}

// Grid types: the block decoded once (as the scalar reference decodes it), then each 32 weights' exact products
// in 8 lanes, lanes 0-3 from weights 0..15 and 4-7 from 16..31, times their halves' integer scales.
AI float dot_grid_avx2(aero_dtype t, int64_t n, const void *vw, const void *va) {
    const uint8_t *w = vw;
    const aero_block_q8_K *a = va;
    size_t bb = aero_dtype_get(t)->block_bytes;
    aero_iq_grid_block blk;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / AERO_QK_K; i++, w += bb) {
        aero_iq_grid_decode(t, w, &blk);
        __m256i acc = _mm256_setzero_si256();
        for (int g = 0; g < 8; g++) {
            __m256i wv = _mm256_loadu_si256((const __m256i *)(blk.w + 32 * g));
            __m256i av = _mm256_loadu_si256((const __m256i *)(a[i].qs + 32 * g));
            __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(av, wv)),
                                          _mm256_set1_epi16(1));
            __m256i sc = _mm256_setr_epi32(blk.ls[2 * g], blk.ls[2 * g], blk.ls[2 * g], blk.ls[2 * g],
                                           blk.ls[2 * g + 1], blk.ls[2 * g + 1], blk.ls[2 * g + 1], blk.ls[2 * g + 1]);
            acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(p, sc));
        }
        sum += (blk.d * a[i].d) * (float)hsum_i32(acc);
    }
    return sum * aero_iq_grid_unit(t);
}

static float dot_iq2_xxs_avx2(int64_t n, const void *w, const void *a) {
    return dot_grid_avx2(AERO_DT_IQ2_XXS, n, w, a);
}
static float dot_iq2_xs_avx2(int64_t n, const void *w, const void *a) { return dot_grid_avx2(AERO_DT_IQ2_XS, n, w, a); }
static float dot_iq3_xxs_avx2(int64_t n, const void *w, const void *a) {
    return dot_grid_avx2(AERO_DT_IQ3_XXS, n, w, a);
}
static float dot_iq3_s_avx2(int64_t n, const void *w, const void *a) { return dot_grid_avx2(AERO_DT_IQ3_S, n, w, a); }

void aero_iq_fill_avx2(aero_kernel_ops *ops) {
    ops->dot[AERO_DT_IQ2_XXS] = ops->mm_dot[AERO_DT_IQ2_XXS] = dot_iq2_xxs_avx2;
    ops->dot[AERO_DT_IQ2_XS] = ops->mm_dot[AERO_DT_IQ2_XS] = dot_iq2_xs_avx2;
    ops->dot[AERO_DT_IQ3_XXS] = ops->mm_dot[AERO_DT_IQ3_XXS] = dot_iq3_xxs_avx2;
    ops->dot[AERO_DT_IQ3_S] = ops->mm_dot[AERO_DT_IQ3_S] = dot_iq3_s_avx2;
    ops->dot[AERO_DT_IQ4_NL] = ops->mm_dot[AERO_DT_IQ4_NL] = dot_iq4_nl_avx2;
    ops->dot[AERO_DT_IQ4_XS] = ops->mm_dot[AERO_DT_IQ4_XS] = dot_iq4_xs_avx2;
    ops->dot[AERO_DT_MXFP4] = ops->mm_dot[AERO_DT_MXFP4] = dot_mxfp4_avx2;
    ops->mm_dot_multi[AERO_DT_IQ4_NL] = ops->mm_dot_multi[AERO_DT_IQ4_XS] = ops->mm_dot_multi[AERO_DT_MXFP4] = NULL;
}
