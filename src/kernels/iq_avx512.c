// AVX-512 dots of IQ4_NL, IQ4_XS, MXFP4 and the grid types: two groups at once in 512-bit registers, the same exact integer sums and
// the same float steps in the same order as the scalar reference (its bits).
#include <immintrin.h>

#include "quants_iq.h"

#define AI __attribute__((always_inline)) static inline

// Levels of one group's 16 nibble bytes (elements 0..15 low, 16..31 high) as 32 int8.
AI __m256i group_levels(const uint8_t *qs, __m128i table) {
    __m128i b = _mm_loadu_si128((const __m128i *)qs), m = _mm_set1_epi8(0x0F);
    __m128i lo = _mm_shuffle_epi8(table, _mm_and_si128(b, m));
    __m128i hi = _mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16(b, 4), m));
    return _mm256_set_m128i(hi, lo);
}

// 16 int32 partial sums of two groups' products (group 0 in the low half).
AI __m512i pair_dot(__m256i w0, __m256i w1, const int8_t *q8) {
    __m512i w = _mm512_inserti64x4(_mm512_castsi256_si512(w0), w1, 1);
    __m512i a = _mm512_loadu_si512(q8);
    __mmask64 neg = _mm512_movepi8_mask(w);
    __m512i aw = _mm512_mask_sub_epi8(a, neg, _mm512_setzero_si512(), a); // activation with the level's sign
    __m512i p = _mm512_maddubs_epi16(_mm512_abs_epi8(w), aw);
    return _mm512_madd_epi16(p, _mm512_set1_epi16(1));
}

static float dot_iq4_nl_avx512(int64_t n, const void *vw, const void *va) {
    const aero_block_iq4_nl *w = vw;
    const aero_block_q8_0 *a = va;
    const __m128i table = _mm_loadu_si128((const __m128i *)aero_kvalues_iq4nl);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / AERO_QK; i++) {
        __m256i lv = group_levels(w[i].qs, table), av = _mm256_loadu_si256((const __m256i *)a[i].qs);
        __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(lv), _mm256_sign_epi8(av, lv));
        __m256i s = _mm256_madd_epi16(p, _mm256_set1_epi16(1));
        __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, _MM_SHUFFLE(1, 0, 3, 2)));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, _MM_SHUFFLE(2, 3, 0, 1)));
        int isum = _mm_cvtsi128_si32(t);
        sum += (_cvtsh_ss(w[i].d) * _cvtsh_ss(a[i].d)) * (float)isum;
    }
    return sum;
}

static float dot_iq4_xs_avx512(int64_t n, const void *vw, const void *va) {
    const aero_block_iq4_xs *w = vw;
    const aero_block_q8_K *a = va;
    const __m128i table = _mm_loadu_si128((const __m128i *)aero_kvalues_iq4nl);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / AERO_QK_K; i++) {
        __m512i acc = _mm512_setzero_si512();
        for (int ib = 0; ib < 8; ib += 2) {
            __m512i g = pair_dot(group_levels(w[i].qs + 16 * ib, table), group_levels(w[i].qs + 16 * ib + 16, table),
                                 a[i].qs + 32 * ib);
            __m512i sc = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32(aero_iq4xs_scale(&w[i], ib) - 32)),
                                            _mm256_set1_epi32(aero_iq4xs_scale(&w[i], ib + 1) - 32), 1);
            acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(g, sc));
        }
        sum += (_cvtsh_ss(w[i].d) * a[i].d) * (float)_mm512_reduce_add_epi32(acc);
    }
    return sum;
}

static float dot_mxfp4_avx512(int64_t n, const void *vw, const void *va) {
    const aero_block_mxfp4 *w = vw;
    const aero_block_q8_0 *a = va;
    const __m128i table = _mm_loadu_si128((const __m128i *)aero_kvalues_mxfp4);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / AERO_QK; i++) {
        __m256i lv = group_levels(w[i].qs, table), av = _mm256_loadu_si256((const __m256i *)a[i].qs);
        __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(lv), _mm256_sign_epi8(av, lv));
        __m256i s = _mm256_madd_epi16(p, _mm256_set1_epi16(1));
        __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, _MM_SHUFFLE(1, 0, 3, 2)));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, _MM_SHUFFLE(2, 3, 0, 1)));
        sum += (_cvtsh_ss(a[i].d) * aero_e8m0_half(w[i].e)) * (float)_mm_cvtsi128_si32(t);
    }
    return sum;
}

// Grid types: the block decoded as the scalar reference decodes it, then two groups of 32 per 512-bit step, each
// 16 weights' exact sum times its integer scale.
static float dot_grid_avx512(aero_dtype t, int64_t n, const void *vw, const void *va) {
    const uint8_t *w = vw;
    const aero_block_q8_K *a = va;
    size_t bb = aero_dtype_get(t)->block_bytes;
    aero_iq_grid_block blk;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / AERO_QK_K; i++, w += bb) {
        aero_iq_grid_decode(t, w, &blk);
        __m512i acc = _mm512_setzero_si512();
        for (int g = 0; g < 8; g += 2) {
            __m512i p = pair_dot(_mm256_loadu_si256((const __m256i *)(blk.w + 32 * g)),
                                 _mm256_loadu_si256((const __m256i *)(blk.w + 32 * g + 32)), a[i].qs + 32 * g);
            // lanes 0-3: weights 0..15 of group g, 4-7: 16..31, 8-11 and 12-15 the same of group g + 1
            __m512i sc = _mm512_setr_epi32(blk.ls[2 * g], blk.ls[2 * g], blk.ls[2 * g], blk.ls[2 * g],
                                           blk.ls[2 * g + 1], blk.ls[2 * g + 1], blk.ls[2 * g + 1], blk.ls[2 * g + 1],
                                           blk.ls[2 * g + 2], blk.ls[2 * g + 2], blk.ls[2 * g + 2], blk.ls[2 * g + 2],
                                           blk.ls[2 * g + 3], blk.ls[2 * g + 3], blk.ls[2 * g + 3], blk.ls[2 * g + 3]);
            acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(p, sc));
        }
        sum += (blk.d * a[i].d) * (float)_mm512_reduce_add_epi32(acc);
    }
    return sum * aero_iq_grid_unit(t);
}

static float dot_iq2_xxs_avx512(int64_t n, const void *w, const void *a) {
    return dot_grid_avx512(AERO_DT_IQ2_XXS, n, w, a);
}
static float dot_iq2_xs_avx512(int64_t n, const void *w, const void *a) {
    return dot_grid_avx512(AERO_DT_IQ2_XS, n, w, a);
}
static float dot_iq3_xxs_avx512(int64_t n, const void *w, const void *a) {
    return dot_grid_avx512(AERO_DT_IQ3_XXS, n, w, a);
}
static float dot_iq3_s_avx512(int64_t n, const void *w, const void *a) {
    return dot_grid_avx512(AERO_DT_IQ3_S, n, w, a);
}

void aero_iq_fill_avx512(aero_kernel_ops *ops) {
    ops->dot[AERO_DT_MXFP4] = ops->mm_dot[AERO_DT_MXFP4] = dot_mxfp4_avx512;
    ops->dot[AERO_DT_IQ2_XXS] = ops->mm_dot[AERO_DT_IQ2_XXS] = dot_iq2_xxs_avx512;
    ops->dot[AERO_DT_IQ2_XS] = ops->mm_dot[AERO_DT_IQ2_XS] = dot_iq2_xs_avx512;
    ops->dot[AERO_DT_IQ3_XXS] = ops->mm_dot[AERO_DT_IQ3_XXS] = dot_iq3_xxs_avx512;
    ops->dot[AERO_DT_IQ3_S] = ops->mm_dot[AERO_DT_IQ3_S] = dot_iq3_s_avx512;
    ops->dot[AERO_DT_IQ4_NL] = ops->mm_dot[AERO_DT_IQ4_NL] = dot_iq4_nl_avx512;
    ops->dot[AERO_DT_IQ4_XS] = ops->mm_dot[AERO_DT_IQ4_XS] = dot_iq4_xs_avx512;
    ops->mm_dot_multi[AERO_DT_IQ4_NL] = ops->mm_dot_multi[AERO_DT_IQ4_XS] = NULL;
}
