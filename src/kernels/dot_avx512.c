// AVX-512 (F, BW, VL, DQ; VNNI when present) kernels. Compiled with per-file ISA flags; only called when
// the CPU has them. Each quantized dot computes exact integer sums (vpdpbusd, or maddubs+madd without VNNI:
// the same integers), then accumulates one float step per block in 16 lanes; so the VNNI and non-VNNI
// tables give bitwise-identical results. Weight codes are made unsigned (the u8 side of vpdpbusd) and
// their offset is removed with the activation sums.
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

// ---- 32-element blocks with Q8_0 activations -------------------------------------------------------------
//
// Activations are first laid out per pair of blocks (q8p): codes in the order the weight codes come out of
// one byte permute, the scale of each int32 lane, and the sum of the 4 activations of each lane (to remove
// the weights' code offset). Matmul prepares each token once; the standard-layout dot prepares 64 blocks at
// a time on the stack and runs the same kernel, so both give the same bits. Pairs alternate between two
// accumulators (two fma chains in flight); the reduction at the end is fixed.

typedef struct {
    int8_t q[64];    // [b0 0-15 | b1 0-15 | b0 16-31 | b1 16-31]
    int16_t s8n[16]; // -8 * (sum of the 4 activations feeding each int32 lane): removes the weights' code offset
    uint16_t d[16];  // the (f16) scale of the block feeding each lane
} q8p;               // 2 bytes per element: 4 tokens of a 4096-wide row (32 KB) stay in L1
_Static_assert(sizeof(q8p) == 128, "prepared pair size");

#define PREP_CHUNK 64 // blocks prepared at a time by the standard-layout dots (an even number of pairs)

// The 32-element block types, which share the prepared Q8_0 layout.
static bool is32(aero_dtype w) {
    return w == AERO_DT_Q4_0 || w == AERO_DT_Q4_1 || w == AERO_DT_Q5_0 || w == AERO_DT_Q5_1 || w == AERO_DT_Q8_0;
}

// Prepared Q8_K activations for Q4_K / Q5_K: codes in the order the weight nibbles come out of a 64-byte
// load ([0-31 | 64-95], [32-63 | 96-127], ...: no shuffles in the kernel), and the sum of each group of 32.
typedef struct {
    int8_t q[256];
    float d;
    int16_t gsum[8];
    uint8_t pad[44]; // keeps q of the next block 64-byte aligned
} q8kp;
_Static_assert(sizeof(q8kp) == 320, "prepared Q8_K block size");

// Bytes of a prepared activation row for weights of type w (0: standard blocks).
static size_t act_bytes(aero_dtype w, int64_t n) {
    if (is32(w)) return (size_t)((n / AERO_QK + 1) / 2) * sizeof(q8p);
    if (w == AERO_DT_Q4_K || w == AERO_DT_Q5_K) return (size_t)(n / AERO_QK_K) * sizeof(q8kp);
    return 0;
}

// Lays out blocks b0 and b1 (b1 NULL: zeros) as one prepared pair.
AI void prep_pair(const aero_block_q8_0 *b0, const aero_block_q8_0 *b1, q8p *p) {
    __m256i a0 = _mm256_loadu_si256((const void *)b0->qs);
    __m256i a1 = b1 ? _mm256_loadu_si256((const void *)b1->qs) : _mm256_setzero_si256();
    __m512i z = join256(a0, a1);
    z = _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));
    _mm512_storeu_si512(p->q, z);
    __m512i sum = _mm512_madd_epi16(_mm512_maddubs_epi16(_mm512_set1_epi8(1), z), _mm512_set1_epi16(1));
    _mm256_storeu_si256((void *)p->s8n,
                        _mm512_cvtepi32_epi16(_mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sum, 3))));
    uint32_t hh = (uint32_t)b0->d | (uint32_t)(b1 ? b1->d : 0) << 16;
    __m256i d = _mm256_permutexvar_epi16(_mm256_setr_epi16(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1),
                                         _mm256_castsi128_si256(_mm_cvtsi32_si128((int)hh)));
    _mm256_storeu_si256((void *)p->d, d);
}

// Prepares nb standard Q8_0 blocks (pairs; an odd last block pairs with zeros).
static void prep_blocks(const aero_block_q8_0 *a, q8p *p, int64_t nb) {
    for (int64_t i = 0; i < nb; i += 2) prep_pair(&a[i], i + 1 < nb ? &a[i + 1] : NULL, &p[i / 2]);
}

// Prepares one Q8_K block for the Q4_K/Q5_K kernel.
static void prep_k(const aero_block_q8_K *a, q8kp *p) {
    for (int h = 0; h < 2; h++) {
        __m512i A0 = _mm512_loadu_si512(a->qs + 128 * h), A1 = _mm512_loadu_si512(a->qs + 128 * h + 64);
        _mm512_storeu_si512(p->q + 128 * h, _mm512_shuffle_i64x2(A0, A1, 0x44));
        _mm512_storeu_si512(p->q + 128 * h + 64, _mm512_shuffle_i64x2(A0, A1, 0xEE));
    }
    p->d = a->d;
    __m256i pairs = _mm256_madd_epi16(_mm256_loadu_si256((const void *)a->bsums), _mm256_set1_epi16(1));
    _mm_storeu_si128((void *)p->gsum, _mm256_cvtepi32_epi16(pairs)); // |sum of 32 codes| <= 4064
    memset(p->pad, 0, sizeof p->pad);
}

// Matmul's activation rows: quantized exactly like the standard ones, then laid out for the kernel.
static void act_quantize(aero_dtype w, const float *x, void *vp, int64_t n) {
    if (is32(w)) {
        aero_block_q8_0 tmp[PREP_CHUNK];
        q8p *p = vp;
        for (int64_t b = 0; b < n / AERO_QK; b += PREP_CHUNK) {
            int64_t nb = n / AERO_QK - b < PREP_CHUNK ? n / AERO_QK - b : PREP_CHUNK;
            quantize_q8_0(x + b * AERO_QK, tmp, nb * AERO_QK);
            prep_blocks(tmp, p + b / 2, nb);
        }
    } else { // Q4_K, Q5_K
        aero_block_q8_K tmp;
        q8kp *p = vp;
        for (int64_t b = 0; b < n / AERO_QK_K; b++) {
            quantize_q8_K(x + b * AERO_QK_K, &tmp, AERO_QK_K);
            prep_k(&tmp, p + b);
        }
    }
}

// Block bytes of a 32-element type, as a compile-time constant in each kernel instance.
AI size_t bytes32(const aero_dtype t) {
    return t == AERO_DT_Q4_0 ? 18 : t == AERO_DT_Q4_1 ? 20 : t == AERO_DT_Q5_0 ? 22 : t == AERO_DT_Q5_1 ? 24 : 34;
}

// Word permute gathering 8 words from w0, w1, w2, w3 into the four 128-bit lanes (block sizes are even, so
// every field of a pair of blocks is word aligned: AVX512BW's vpermw does it, no VBMI needed).
AI __m512i widx4(int w0, int w1, int w2, int w3) {
    __m512i iota = _mm512_broadcast_i32x4(_mm_setr_epi16(0, 1, 2, 3, 4, 5, 6, 7));
    int a = w0 * 0x10001, b = w1 * 0x10001, c = w2 * 0x10001, d = w3 * 0x10001;
    return _mm512_add_epi16(iota, _mm512_setr_epi32(a, a, a, a, b, b, b, b, c, c, c, c, d, d, d, d));
}

// Word permute giving 16 halves: word h0 for lanes 0-3 and 8-11, word h1 for lanes 4-7 and 12-15.
AI __m512i widx_h(int h0, int h1) {
    int a = h0 * 0x10001, b = h1 * 0x10001;
    return _mm512_setr_epi32(a, a, b, b, a, a, b, b, 0, 0, 0, 0, 0, 0, 0, 0);
}

// Two f16 scales of a loaded pair of blocks as per-lane f32 scales.
AI __m512 halves(__m512i z, int h0, int h1) {
    return _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(widx_h(h0, h1), z)));
}

// One pair of weight blocks (p) against T prepared activation rows, into accumulator `ai` of each token.
// Loads never read past the row: near its end they are masked.
AI void pair32(const aero_dtype t, const int T, const bool vnni, const uint8_t *w, int64_t nb, int64_t p,
               const q8p *const *a, int64_t pbase, __m512 acc[][2], const int ai) {
    const int bb = (int)bytes32(t), hb = bb / 2; // block size in bytes and words
    const bool has_min = t == AERO_DT_Q4_1 || t == AERO_DT_Q5_1, five = t == AERO_DT_Q5_0 || t == AERO_DT_Q5_1;
    const __m512i zero = _mm512_setzero_si512();
    const uint8_t *w0 = w + (size_t)(2 * p) * (size_t)bb;
    const bool two = 2 * p + 1 < nb;
    const int64_t rem = (nb - 2 * p) * bb; // bytes left in the row
    prefetch_ahead(w0, 1);
    __m512i z0 = rem >= 64 ? _mm512_loadu_si512(w0) : _mm512_maskz_loadu_epi8(_cvtu64_mask64((1ull << rem) - 1), w0);
    __m512i u = zero, uabs = zero;
    __mmask64 neg = 0;
    __m512 dw = halves(z0, 0, hb), mw = _mm512_setzero_ps();
    if (t == AERO_DT_Q8_0) {
        __m512i z1 = two ? _mm512_maskz_loadu_epi8(0xF, w0 + 64) : zero;
        __m512i wv = _mm512_permutex2var_epi16(z0, widx4(1, hb + 1, 9, hb + 9), z1);
        neg = _mm512_movepi8_mask(wv);
        uabs = _mm512_abs_epi8(wv);
    } else {
        const int qh_off = has_min ? 4 : 2, qs_w = (qh_off + (five ? 4 : 0)) / 2;
        __m512i q = _mm512_permutexvar_epi16(widx4(qs_w, hb + qs_w, qs_w, hb + qs_w), z0);
        u = _mm512_and_si512(_mm512_srlv_epi16(q, join256(_mm256_setzero_si256(), _mm256_set1_epi16(4))),
                             _mm512_set1_epi8(0x0F)); // [b0 lo | b1 lo | b0 hi | b1 hi]
        if (five) {
            uint32_t h0, h1 = 0;
            memcpy(&h0, w0 + qh_off, 4);
            if (two) memcpy(&h1, w0 + bb + qh_off, 4);
            uint64_t m = (uint64_t)(h0 & 0xFFFF) | (uint64_t)(h1 & 0xFFFF) << 16 | (uint64_t)(h0 >> 16) << 32 |
                         (uint64_t)(h1 >> 16) << 48;
            u = _mm512_mask_add_epi8(u, _cvtu64_mask64(m), u, _mm512_set1_epi8(16));
        }
        if (has_min) mw = halves(z0, 1, hb + 1);
    }
#pragma GCC unroll 4
    for (int k = 0; k < T; k++) {
        const q8p *ap = a[k] + (p - pbase);
        __m512i av = _mm512_loadu_si512(ap->q);
        __m512 ad = _mm512_cvtph_ps(_mm256_loadu_si256((const void *)ap->d));
        __m512i isum, s8n = zero;
        if (t != AERO_DT_Q8_0) s8n = _mm512_cvtepi16_epi32(_mm256_loadu_si256((const void *)ap->s8n));
        if (t == AERO_DT_Q8_0) isum = dp(zero, uabs, _mm512_mask_sub_epi8(av, neg, zero, av), vnni);
        else if (has_min) isum = dp(zero, u, av, vnni);
        else if (five) isum = dp(_mm512_slli_epi32(s8n, 1), u, av, vnni); // offset 16
        else isum = dp(s8n, u, av, vnni);                                 // offset 8
        acc[k][ai] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(dw, ad), acc[k][ai]);
        if (has_min) { // m * d * (sum of the lane's activations)
            __m512 sum = _mm512_cvtepi32_ps(_mm512_sub_epi32(zero, _mm512_srai_epi32(s8n, 3)));
            acc[k][ai] = _mm512_fmadd_ps(mw, _mm512_mul_ps(ad, sum), acc[k][ai]);
        }
    }
}

// Pairs [p0, p1) of a row of nb blocks, activation pair p at a[k][p - p0] (p0 even, so the accumulator of a
// pair is fixed by its index).
AI void run32(const aero_dtype t, const int T, const bool vnni, const uint8_t *w, int64_t nb, int64_t p0, int64_t p1,
              const q8p *const *a, __m512 acc[][2]) {
    int64_t p = p0;
    for (; p + 2 <= p1; p += 2) {
        pair32(t, T, vnni, w, nb, p, a, p0, acc, 0);
        pair32(t, T, vnni, w, nb, p + 1, a, p0, acc, 1);
    }
    if (p < p1) pair32(t, T, vnni, w, nb, p, a, p0, acc, 0);
}

// Matmul entry: T prepared rows at once.
AI void mm32(const aero_dtype t, const int T, const bool vnni, int64_t n, const void *w, const void *const *a,
             float *out) {
    __m512 acc[4][2];
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) acc[k][0] = acc[k][1] = _mm512_setzero_ps();
    const int64_t nb = n / AERO_QK;
    run32(t, T, vnni, w, nb, 0, (nb + 1) / 2, (const q8p *const *)a, acc);
#pragma GCC unroll 4
    for (int k = 0; k < T; k++) out[k] = _mm512_reduce_add_ps(_mm512_add_ps(acc[k][0], acc[k][1]));
}

// Standard-layout entry: prepares 64 blocks at a time; pair indices, and so accumulators, stay global.
AI float std32(const aero_dtype t, const bool vnni, int64_t n, const void *w, const void *va) {
    q8p buf[PREP_CHUNK / 2];
    const aero_block_q8_0 *a = va;
    const int64_t nb = n / AERO_QK;
    __m512 acc[1][2] = {{_mm512_setzero_ps(), _mm512_setzero_ps()}};
    for (int64_t b = 0; b < nb; b += PREP_CHUNK) {
        int64_t len = nb - b < PREP_CHUNK ? nb - b : PREP_CHUNK;
        prep_blocks(a + b, buf, len);
        const q8p *rows[1] = {buf};
        run32(t, 1, vnni, w, nb, b / 2, b / 2 + (len + 1) / 2, rows, acc);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc[0][0], acc[0][1]));
}

// ---- K-quants with Q8_K activations -------------------------------------------------------------------
//
// Each super-block is unpacked once (codes, lane scales) and dotted with T activation rows (T = 1 for a
// plain dot; up to 4 in matmul): every token gets the same integer sums and the same float steps either way.
// Integer sums per super-block: vpdpbusd lanes times the group scale of the lane (vpmulld), plus the code
// offset or the mins through the activation group sums (bsums), then one fma per super-block.

// acc + products of adjacent int16 pairs (vpdpwssd; pmaddwd + add without VNNI: the same integers).
AI __m512i dpw(__m512i acc, __m512i a, __m512i b, const bool vnni) {
    if (vnni) return _mm512_dpwssd_epi32(acc, a, b);
    return _mm512_add_epi32(acc, _mm512_madd_epi16(a, b));
}

// Group scales for two vpdpbusd results packed to int16 (vpackssdw: per 128-bit lane L, 4 lanes of the
// first then 4 of the second): a[L] / b[L] is the group of the first / second vector's lanes in lane L.
// Gathers the int16 scales s16[g] so that vpdpwssd multiplies every lane by its group's scale.
AI __m512i group_scales(__m512i s16, int a0, int a1, int a2, int a3, int b0, int b1, int b2, int b3) {
    const int X = 0x10001;
    __m512i idx = _mm512_setr_epi32(a0 * X, a0 * X, b0 * X, b0 * X, a1 * X, a1 * X, b1 * X, b1 * X, a2 * X, a2 * X,
                                    b2 * X, b2 * X, a3 * X, a3 * X, b3 * X, b3 * X);
    return _mm512_permutexvar_epi16(idx, s16);
}

// Scale vectors of the 16-element-group types: vector v covers groups 4v..4v+3, one per 128-bit lane.
AI void scales16_g16(__m256i s16, __m512i out[2]) {
    __m512i z = _mm512_castsi256_si512(s16);
    out[0] = group_scales(z, 0, 1, 2, 3, 4, 5, 6, 7);
    out[1] = group_scales(z, 8, 9, 10, 11, 12, 13, 14, 15);
}

// The 6-bit scales (bytes 0-7) and mins (bytes 8-15) of a Q4_K/Q5_K block, built in registers.
AI __m128i q4k_scales(const uint8_t *sc) {
    const uint32_t k1 = 0x3f3f3f3f, k2 = 0x0f0f0f0f, k3 = 0x03030303;
    uint32_t u[3];
    memcpy(u, sc, 12);
    uint32_t o0 = u[0] & k1, o1 = (u[2] & k2) | (((u[0] >> 6) & k3) << 4);
    uint32_t o2 = u[1] & k1, o3 = ((u[2] >> 4) & k2) | (((u[1] >> 6) & k3) << 4);
    return _mm_set_epi64x((long long)((uint64_t)o3 << 32 | o2), (long long)((uint64_t)o1 << 32 | o0));
}

// The 16 signed scales (value - 32) of a Q3_K block, built in registers.
AI __m128i q3k_scales(const uint8_t *sc) {
    const uint32_t k1 = 0x03030303, k2 = 0x0f0f0f0f;
    uint32_t s3[3];
    memcpy(s3, sc, 12);
    uint32_t a0 = (s3[0] & k2) | (((s3[2] >> 0) & k1) << 4), a1 = (s3[1] & k2) | (((s3[2] >> 2) & k1) << 4);
    uint32_t a2 = ((s3[0] >> 4) & k2) | (((s3[2] >> 4) & k1) << 4),
             a3 = ((s3[1] >> 4) & k2) | (((s3[2] >> 6) & k1) << 4);
    __m128i v = _mm_set_epi64x((long long)((uint64_t)a3 << 32 | a2), (long long)((uint64_t)a1 << 32 | a0));
    return _mm_sub_epi8(v, _mm_set1_epi8(32));
}

// 2-bit codes of 128 elements from 32 bytes: (q >> 2k) & 3 gives elements 32k..32k+31 in order.
AI void twobit(__m256i q32, __m512i *lo, __m512i *hi) {
    const __m512i qq = _mm512_broadcast_i64x4(q32), m3 = _mm512_set1_epi8(3);
    *lo = _mm512_and_si512(_mm512_srlv_epi16(qq, join256(_mm256_set1_epi16(0), _mm256_set1_epi16(2))), m3);
    *hi = _mm512_and_si512(_mm512_srlv_epi16(qq, join256(_mm256_set1_epi16(4), _mm256_set1_epi16(6))), m3);
}

// Integer sum over a super-block of four unsigned code vectors (64 activation codes each, in the order of
// aq: natural for Q2_K/Q3_K/Q6_K, prepared for Q4_K/Q5_K) with their int16 group scales: every vpdpbusd lane is below 2^15 (4 products
// of codes <= 63 by |a| <= 128), so two results pack to int16 exactly and vpdpwssd applies the scales.
AI __m512i ksum4(const __m512i u[4], const __m512i sc[2], const int8_t *aq, const bool vnni) {
    const __m512i zero = _mm512_setzero_si512();
    __m512i d[4];
#pragma GCC unroll 4
    for (int v = 0; v < 4; v++) {
        __m512i av;
        av = _mm512_loadu_si512(aq + 64 * v);
        d[v] = dp(zero, u[v], av, vnni);
    }
    __m512i isum = dpw(zero, _mm512_packs_epi32(d[0], d[1]), sc[0], vnni);
    return dpw(isum, _mm512_packs_epi32(d[2], d[3]), sc[1], vnni);
}

// Q4_K and Q5_K: 8 groups of 32; a 64-byte load of qs gives groups (g, g+2) in its low nibbles, (g+1, g+3)
// high, which is the order of prepared activations. prepared = false: va are standard Q8_K rows (T = 1),
// prepared here one block at a time, so both entry points compute the same bits.
AI void kq45(const bool five, const int T, const bool vnni, const bool prepared, int64_t n, const void *vw,
             const void *const *va, float *out) {
    const uint8_t *wb = vw;
    const size_t bb = five ? sizeof(aero_block_q5_K) : sizeof(aero_block_q4_K);
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512 acc[4];
    __m128 accm[4];
    q8kp tmp;
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) acc[k] = _mm512_setzero_ps(), accm[k] = _mm_setzero_ps();
    for (int64_t i = 0; i < n / AERO_QK_K; i++, wb += bb) {
        prefetch_ahead(wb, five ? 3 : 2);
        const uint8_t *qs, *scales, *qh = NULL;
        uint16_t d, dmin;
        if (five) {
            const aero_block_q5_K *x = (const void *)wb;
            qs = x->qs, scales = x->scales, qh = x->qh, d = x->d, dmin = x->dmin;
        } else {
            const aero_block_q4_K *x = (const void *)wb;
            qs = x->qs, scales = x->scales, d = x->d, dmin = x->dmin;
        }
        __m128i sm8 = q4k_scales(scales); // bytes 0-7 scales, 8-15 mins
        __m512i s16 = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(sm8));
        // vectors 0..3 hold groups (0,2), (1,3), (4,6), (5,7) in their low / high 256 bits
        __m512i sc[2] = {group_scales(s16, 0, 0, 2, 2, 1, 1, 3, 3), group_scales(s16, 4, 4, 6, 6, 5, 5, 7, 7)};
        __m128i mins16 = _mm_cvtepu8_epi16(_mm_srli_si128(sm8, 8));
        __m512i u[4];
        __m512i hh = five ? _mm512_broadcast_i64x4(_mm256_loadu_si256((const void *)qh)) : _mm512_setzero_si512();
        for (int half = 0; half < 2; half++) {
            __m512i q = _mm512_loadu_si512(qs + 64 * half);
            u[2 * half] = _mm512_and_si512(q, m4);
            u[2 * half + 1] = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
            if (five) {
                int b = 4 * half; // groups 4h, 4h+2 (low nibbles) use qh bits 4h, 4h+2; the others 4h+1, 4h+3
                __m512i blo = join256(_mm256_set1_epi8((char)(1 << b)), _mm256_set1_epi8((char)(1 << (b + 2))));
                __m512i bhi = join256(_mm256_set1_epi8((char)(1 << (b + 1))), _mm256_set1_epi8((char)(1 << (b + 3))));
                const __m512i sixteen = _mm512_set1_epi8(16);
                u[2 * half] = _mm512_mask_add_epi8(u[2 * half], _mm512_test_epi8_mask(hh, blo), u[2 * half], sixteen);
                u[2 * half + 1] =
                    _mm512_mask_add_epi8(u[2 * half + 1], _mm512_test_epi8_mask(hh, bhi), u[2 * half + 1], sixteen);
            }
        }
        float fd = h2f(d), fdmin = h2f(dmin);
#pragma GCC unroll 4
        for (int k = 0; k < T; k++) {
            const q8kp *a;
            if (prepared) {
                a = (const q8kp *)va[k] + i;
            } else {
                prep_k((const aero_block_q8_K *)va[k] + i, &tmp);
                a = &tmp;
            }
            __m512i isum = ksum4(u, sc, a->q, vnni);
            __m128i msum = _mm_madd_epi16(_mm_loadu_si128((const void *)a->gsum), mins16);
            acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(fd * a->d), acc[k]);
            accm[k] = _mm_fmadd_ps(_mm_cvtepi32_ps(msum), _mm_set1_ps(fdmin * a->d), accm[k]);
        }
    }
#pragma GCC unroll 4
    for (int k = 0; k < T; k++) {
        __m128 m = _mm_add_ps(accm[k], _mm_movehl_ps(accm[k], accm[k]));
        m = _mm_add_ss(m, _mm_movehdup_ps(m));
        out[k] = _mm512_reduce_add_ps(acc[k]) - _mm_cvtss_f32(m);
    }
}

// Q6_K: per half, 64 bytes of ql give elements 0-63 (low nibbles) and 64-127 (high) in order; qh adds 2 bits.
AI void kq6(const int T, const bool vnni, int64_t n, const void *vw, const void *const *va, float *out) {
    const aero_block_q6_K *x = vw;
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    const __m512i sh_lo = join256(_mm256_set1_epi16(4), _mm256_set1_epi16(2));
    const __m512i sh_hi = join256(_mm256_set1_epi16(0), _mm256_set1_epi16(2));
    __m512 acc[4];
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) acc[k] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / AERO_QK_K; i++) {
        prefetch_ahead(&x[i], 3);
        __m128i sc8 = _mm_loadu_si128((const void *)x[i].scales);
        __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
        __m512i u[4], sc[2];
        scales16_g16(sc16, sc);
        for (int h = 0; h < 2; h++) {
            __m512i l = _mm512_loadu_si512(x[i].ql + 64 * h);
            __m512i hh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const void *)(x[i].qh + 32 * h)));
            u[2 * h] = _mm512_or_si512(_mm512_and_si512(l, m4), _mm512_and_si512(_mm512_sllv_epi16(hh, sh_lo), m30));
            u[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                                           _mm512_and_si512(_mm512_srlv_epi16(hh, sh_hi), m30));
        }
        float fd = h2f(x[i].d);
#pragma GCC unroll 4
        for (int k = 0; k < T; k++) {
            const aero_block_q8_K *a = (const aero_block_q8_K *)va[k] + i;
            __m512i isum = ksum4(u, sc, a->qs, vnni);
            // codes are offset by 32: subtract 32 * sum over groups of scale * bsum
            __m256i corr = _mm256_madd_epi16(_mm256_loadu_si256((const void *)a->bsums), sc16);
            isum = _mm512_sub_epi32(isum, _mm512_zextsi256_si512(_mm256_slli_epi32(corr, 5)));
            acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(fd * a->d), acc[k]);
        }
    }
#pragma GCC unroll 4
    for (int k = 0; k < T; k++) out[k] = _mm512_reduce_add_ps(acc[k]);
}

// Q3_K (three = true): 2 low bits plus the hmask bit, signed 6-bit scales, offset 4. Q2_K: 2 bits, 4-bit
// scales and mins.
AI void kq23(const bool three, const int T, const bool vnni, int64_t n, const void *vw, const void *const *va,
             float *out) {
    const uint8_t *wb = vw;
    const size_t bb = three ? sizeof(aero_block_q3_K) : sizeof(aero_block_q2_K);
    const __m512i four = _mm512_set1_epi8(4);
    __m512 acc[4];
    __m256 accm[4];
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) acc[k] = _mm512_setzero_ps(), accm[k] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / AERO_QK_K; i++, wb += bb) {
        prefetch_ahead(wb, 2);
        const uint8_t *qs;
        __m128i sc8, m8 = _mm_setzero_si128();
        __m512i hm = _mm512_setzero_si512();
        float fd, fdmin = 0.0f;
        if (three) {
            const aero_block_q3_K *x = (const void *)wb;
            qs = x->qs;
            sc8 = q3k_scales(x->scales);
            hm = _mm512_broadcast_i64x4(_mm256_loadu_si256((const void *)x->hmask));
            fd = h2f(x->d);
        } else {
            const aero_block_q2_K *x = (const void *)wb;
            qs = x->qs;
            __m128i raw = _mm_loadu_si128((const void *)x->scales);
            sc8 = _mm_and_si128(raw, _mm_set1_epi8(0x0F));
            m8 = _mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0x0F));
            fd = h2f(x->d), fdmin = h2f(x->dmin);
        }
        __m512i u[4], sc[2];
        scales16_g16(three ? _mm256_cvtepi8_epi16(sc8) : _mm256_cvtepu8_epi16(sc8), sc);
        for (int h = 0; h < 2; h++) {
            twobit(_mm256_loadu_si256((const void *)(qs + 32 * h)), &u[2 * h], &u[2 * h + 1]);
            if (three) {
                __m512i blo =
                    join256(_mm256_set1_epi8((char)(1 << (4 * h))), _mm256_set1_epi8((char)(1 << (4 * h + 1))));
                __m512i bhi =
                    join256(_mm256_set1_epi8((char)(1 << (4 * h + 2))), _mm256_set1_epi8((char)(1 << (4 * h + 3))));
                u[2 * h] = _mm512_mask_add_epi8(u[2 * h], _mm512_test_epi8_mask(hm, blo), u[2 * h], four);
                u[2 * h + 1] = _mm512_mask_add_epi8(u[2 * h + 1], _mm512_test_epi8_mask(hm, bhi), u[2 * h + 1], four);
            }
        }
        __m256i c16 = three ? _mm256_cvtepi8_epi16(sc8) : _mm256_cvtepu8_epi16(m8);
#pragma GCC unroll 4
        for (int k = 0; k < T; k++) {
            const aero_block_q8_K *a = (const aero_block_q8_K *)va[k] + i;
            __m512i isum = ksum4(u, sc, a->qs, vnni);
            __m256i c = _mm256_madd_epi16(_mm256_loadu_si256((const void *)a->bsums), c16);
            if (three) { // codes are offset by 4
                isum = _mm512_sub_epi32(isum, _mm512_zextsi256_si512(_mm256_slli_epi32(c, 2)));
            } else { // mins
                accm[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(c), _mm256_set1_ps(fdmin * a->d), accm[k]);
            }
            acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(fd * a->d), acc[k]);
        }
    }
#pragma GCC unroll 4
    for (int k = 0; k < T; k++) out[k] = _mm512_reduce_add_ps(acc[k]) - (three ? 0.0f : hsum256(accm[k]));
}

// ---- instances: VNNI and plain AVX-512 ----------------------------------------------------------------

#define T32(name, TYPE, sfx, V)                                                                            \
    static float name##_##sfx(int64_t n, const void *w, const void *a) { return std32(TYPE, V, n, w, a); } \
    static float name##_mm_##sfx(int64_t n, const void *w, const void *a) {                                \
        float out;                                                                                         \
        mm32(TYPE, 1, V, n, w, &a, &out);                                                                  \
        return out;                                                                                        \
    }                                                                                                      \
    static void name##_multi_##sfx(int64_t n, const void *w, const void *const *a, int T, float *out) {    \
        switch (T) {                                                                                       \
        case 1: mm32(TYPE, 1, V, n, w, a, out); break;                                                     \
        case 2: mm32(TYPE, 2, V, n, w, a, out); break;                                                     \
        case 3: mm32(TYPE, 3, V, n, w, a, out); break;                                                     \
        default: mm32(TYPE, 4, V, n, w, a, out); break;                                                    \
        }                                                                                                  \
    }

#define TK(name, CALL, sfx, V)                                                                          \
    static float name##_##sfx(int64_t n, const void *w, const void *a) {                                \
        float out;                                                                                      \
        CALL(1, V, n, w, &a, &out);                                                                     \
        return out;                                                                                     \
    }                                                                                                   \
    static void name##_multi_##sfx(int64_t n, const void *w, const void *const *a, int T, float *out) { \
        switch (T) {                                                                                    \
        case 1: CALL(1, V, n, w, a, out); break;                                                        \
        case 2: CALL(2, V, n, w, a, out); break;                                                        \
        case 3: CALL(3, V, n, w, a, out); break;                                                        \
        default: CALL(4, V, n, w, a, out); break;                                                       \
        }                                                                                               \
    }
#define KQ2(T, V, n, w, a, out) kq23(false, T, V, n, w, a, out)
#define KQ3(T, V, n, w, a, out) kq23(true, T, V, n, w, a, out)
#define KQ6(T, V, n, w, a, out) kq6(T, V, n, w, a, out)

// Q4_K / Q5_K, named as the 32-blocks are: name_sfx (dot) takes standard Q8_K rows, name_mm_sfx (mm_dot)
// and name_multi_sfx (mm_dot_multi) the prepared ones.
#define TKP(name, FIVE, sfx, V)                                                                         \
    static float name##_##sfx(int64_t n, const void *w, const void *a) {                                \
        float out;                                                                                      \
        kq45(FIVE, 1, V, false, n, w, &a, &out);                                                        \
        return out;                                                                                     \
    }                                                                                                   \
    static float name##_mm_##sfx(int64_t n, const void *w, const void *a) {                             \
        float out;                                                                                      \
        kq45(FIVE, 1, V, true, n, w, &a, &out);                                                         \
        return out;                                                                                     \
    }                                                                                                   \
    static void name##_multi_##sfx(int64_t n, const void *w, const void *const *a, int T, float *out) { \
        switch (T) {                                                                                    \
        case 1: kq45(FIVE, 1, V, true, n, w, a, out); break;                                            \
        case 2: kq45(FIVE, 2, V, true, n, w, a, out); break;                                            \
        case 3: kq45(FIVE, 3, V, true, n, w, a, out); break;                                            \
        default: kq45(FIVE, 4, V, true, n, w, a, out); break;                                           \
        }                                                                                               \
    }

#define INSTANCES(sfx, V)               \
    T32(dot_q4_0, AERO_DT_Q4_0, sfx, V) \
    T32(dot_q4_1, AERO_DT_Q4_1, sfx, V) \
    T32(dot_q5_0, AERO_DT_Q5_0, sfx, V) \
    T32(dot_q5_1, AERO_DT_Q5_1, sfx, V) \
    T32(dot_q8_0, AERO_DT_Q8_0, sfx, V) \
    TK(dot_q2_K, KQ2, sfx, V)           \
    TK(dot_q3_K, KQ3, sfx, V)           \
    TKP(dot_q4_K, false, sfx, V)        \
    TKP(dot_q5_K, true, sfx, V)         \
    TK(dot_q6_K, KQ6, sfx, V)

INSTANCES(vnni, true)
INSTANCES(plain, false)

// Installs the AVX-512 kernels over a copy of the AVX2 table; vnni picks the vpdpbusd instances.
void aero_kernels_fill_avx512(aero_kernel_ops *ops, bool vnni) {
    ops->dot[AERO_DT_F32] = dot_f32;
    ops->dot[AERO_DT_F16] = dot_f16;
    ops->dot[AERO_DT_BF16] = dot_bf16;
#define SET32(T, name, sfx)           \
    ops->dot[T] = name##_##sfx;       \
    ops->mm_dot[T] = name##_mm_##sfx; \
    ops->mm_dot_multi[T] = name##_multi_##sfx;
#define SETK(T, name, sfx)      \
    ops->dot[T] = name##_##sfx; \
    ops->mm_dot_multi[T] = name##_multi_##sfx;
#define SET(sfx)                       \
    SET32(AERO_DT_Q4_0, dot_q4_0, sfx) \
    SET32(AERO_DT_Q4_1, dot_q4_1, sfx) \
    SET32(AERO_DT_Q5_0, dot_q5_0, sfx) \
    SET32(AERO_DT_Q5_1, dot_q5_1, sfx) \
    SET32(AERO_DT_Q8_0, dot_q8_0, sfx) \
    SETK(AERO_DT_Q2_K, dot_q2_K, sfx)  \
    SETK(AERO_DT_Q3_K, dot_q3_K, sfx)  \
    SET32(AERO_DT_Q4_K, dot_q4_K, sfx) \
    SET32(AERO_DT_Q5_K, dot_q5_K, sfx) \
    SETK(AERO_DT_Q6_K, dot_q6_K, sfx)
    for (int t = 0; t < AERO_DT_COUNT; t++) ops->mm_dot_multi[t] = NULL;
    if (vnni) {
        SET(vnni)
    } else {
        SET(plain)
    }
#undef SET
#undef SET32
#undef SETK
    for (int t = 0; t < AERO_DT_COUNT; t++)
        if (!is32((aero_dtype)t) && t != AERO_DT_Q4_K && t != AERO_DT_Q5_K) ops->mm_dot[t] = ops->dot[t];
    ops->act_bytes = act_bytes;
    ops->act_quantize = act_quantize;
    ops->f16_to_f32_row = f16_to_f32_row;
    ops->f32_to_f16_row = f32_to_f16_row;
    ops->bf16_to_f32_row = bf16_to_f32_row;
    ops->quantize_q8_0 = quantize_q8_0;
    ops->quantize_q8_K = quantize_q8_K;
    ops->dot_f32_acc16 = dot_f32_acc16_avx512;
    ops->name = vnni ? "avx512-vnni" : "avx512";
}
