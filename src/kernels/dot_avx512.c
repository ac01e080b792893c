// AVX-512 (F, BW, VL, DQ; VNNI when present) kernels. Compiled with per-file ISA flags; only called when
// the CPU has them. Each quantized dot computes exact integer sums (vpdpbusd, or maddubs+madd without VNNI:
// the same integers), then accumulates one float step per block in 16 lanes; so the VNNI and non-VNNI
// tables give bitwise-identical results. Weight codes are made unsigned (the u8 side of vpdpbusd) and
// their offset is removed with the activation sums.
#include <immintrin.h>

#include "quants.h"

#define AI __attribute__((always_inline)) static inline

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
        s = _mm512_mask_add_ps(s, k, s, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, w + i), _mm512_maskz_loadu_ps(k, a + i)));
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

AI __m512 bf16x16(const uint16_t *p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const void *)p)), 16));
}
AI __m512 bf16x16_mask(__mmask16 k, const uint16_t *p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, p)), 16));
}

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

static void f16_to_f32_row(const uint16_t *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_cvtph_ps(_mm256_loadu_si256((const void *)(x + i))));
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, k, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, x + i)));
    }
}

static void f32_to_f16_row(const float *x, uint16_t *y, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((void *)(y + i), _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        _mm256_mask_storeu_epi16(y + i, k,
                                 _mm512_cvtps_ph(_mm512_maskz_loadu_ps(k, x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
}

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

AI __m512 abs_ps(__m512 x) { return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(0x7fffffff))); }

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

static void quantize_q8_K(const float *x, void *vy, int64_t n) {
    aero_block_q8_K *y = vy;
    for (int64_t i = 0; i < n / AERO_QK_K; i++, x += AERO_QK_K) {
        __m512 m = _mm512_setzero_ps();
        for (int j = 0; j < AERO_QK_K; j += 16) m = _mm512_max_ps(abs_ps(_mm512_loadu_ps(x + j)), m);
        float id;
        y[i].d = aero_q8_K_scale(_mm512_reduce_max_ps(m), &id);
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
    float d[16];     // scale of the block feeding each int32 lane of vpdpbusd
    int32_t s8n[16]; // -8 * (sum of the 4 activations feeding each lane): removes the weights' code offset
    float ds[16];    // d * (that sum): the min term of Q4_1 / Q5_1
} q8p;
_Static_assert(sizeof(q8p) == 256, "prepared pair size");

#define PREP_CHUNK 64 // blocks prepared at a time by the standard-layout dots (an even number of pairs)

static size_t act_bytes(aero_dtype vt, int64_t n) {
    if (vt != AERO_DT_Q8_0) return 0;
    return (size_t)((n / AERO_QK + 1) / 2) * sizeof(q8p);
}

// Lays out blocks b0 and b1 (b1 NULL: zeros) as one prepared pair.
AI void prep_pair(const aero_block_q8_0 *b0, const aero_block_q8_0 *b1, q8p *p) {
    __m256i a0 = _mm256_loadu_si256((const void *)b0->qs);
    __m256i a1 = b1 ? _mm256_loadu_si256((const void *)b1->qs) : _mm256_setzero_si256();
    __m512i z = join256(a0, a1);
    z = _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));
    _mm512_storeu_si512(p->q, z);
    __m512i sum = _mm512_madd_epi16(_mm512_maddubs_epi16(_mm512_set1_epi8(1), z), _mm512_set1_epi16(1));
    float d0 = h2f(b0->d), d1 = b1 ? h2f(b1->d) : 0.0f;
    __m512 d = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1),
                                     _mm512_castps128_ps512(_mm_setr_ps(d0, d1, 0.0f, 0.0f)));
    _mm512_storeu_ps(p->d, d);
    _mm512_storeu_si512(p->s8n, _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sum, 3)));
    _mm512_storeu_ps(p->ds, _mm512_mul_ps(d, _mm512_cvtepi32_ps(sum)));
}

static void prep_blocks(const aero_block_q8_0 *a, q8p *p, int64_t nb) {
    for (int64_t i = 0; i < nb; i += 2) prep_pair(&a[i], i + 1 < nb ? &a[i + 1] : NULL, &p[i / 2]);
}

static void act_quantize(aero_dtype vt, const float *x, void *vp, int64_t n) {
    aero_block_q8_0 tmp[PREP_CHUNK];
    q8p *p = vp;
    for (int64_t b = 0; b < n / AERO_QK; b += PREP_CHUNK) {
        int64_t nb = n / AERO_QK - b < PREP_CHUNK ? n / AERO_QK - b : PREP_CHUNK;
        quantize_q8_0(x + b * AERO_QK, tmp, nb * AERO_QK);
        prep_blocks(tmp, p + b / 2, nb);
    }
    (void)vt;
}

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

AI __m512 halves(__m512i z, int h0, int h1) {
    return _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(widx_h(h0, h1), z)));
}

// One pair of weight blocks (p) against T prepared activation rows, into accumulator `slot` of each token.
// Loads never read past the row: near its end they are masked.
AI void pair32(const aero_dtype t, const int T, const bool vnni, const uint8_t *w, int64_t nb, int64_t p,
               const q8p *const *a, int64_t pbase, __m512 acc[][2], const int slot) {
    const int bb = (int)bytes32(t), hb = bb / 2; // block size in bytes and words
    const bool has_min = t == AERO_DT_Q4_1 || t == AERO_DT_Q5_1, five = t == AERO_DT_Q5_0 || t == AERO_DT_Q5_1;
    const __m512i zero = _mm512_setzero_si512();
    const uint8_t *w0 = w + (size_t)(2 * p) * (size_t)bb;
    const bool two = 2 * p + 1 < nb;
    const int64_t rem = (nb - 2 * p) * bb; // bytes left in the row
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
    for (int k = 0; k < T; k++) {
        const q8p *ap = a[k] + (p - pbase);
        __m512i av = _mm512_loadu_si512(ap->q);
        __m512 ad = _mm512_loadu_ps(ap->d);
        __m512i isum;
        if (t == AERO_DT_Q8_0) isum = dp(zero, uabs, _mm512_mask_sub_epi8(av, neg, zero, av), vnni);
        else if (has_min) isum = dp(zero, u, av, vnni);
        else if (five) isum = dp(_mm512_slli_epi32(_mm512_loadu_si512(ap->s8n), 1), u, av, vnni); // offset 16
        else isum = dp(_mm512_loadu_si512(ap->s8n), u, av, vnni);                                // offset 8
        acc[k][slot] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(dw, ad), acc[k][slot]);
        if (has_min) acc[k][slot] = _mm512_fmadd_ps(mw, _mm512_loadu_ps(ap->ds), acc[k][slot]);
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
AI void mm32(const aero_dtype t, const int T, const bool vnni, int64_t n, const void *w, const void *const *a, float *out) {
    __m512 acc[4][2];
    for (int k = 0; k < T; k++) acc[k][0] = acc[k][1] = _mm512_setzero_ps();
    const int64_t nb = n / AERO_QK;
    run32(t, T, vnni, w, nb, 0, (nb + 1) / 2, (const q8p *const *)a, acc);
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

// Scales of the int32 lanes of a vpdpbusd result (4 elements per lane): lane l gets s32[idx[l]].
AI __m512i lane_scales(__m512i s32, const int first, const int per) {
    // per = lanes per group (4 for 16-element groups); groups first, first+1, ... in lane order
    __m512i idx;
    if (per == 4)
        idx = _mm512_setr_epi32(first, first, first, first, first + 1, first + 1, first + 1, first + 1, first + 2,
                                first + 2, first + 2, first + 2, first + 3, first + 3, first + 3, first + 3);
    else // 8 lanes of group `first`, then 8 lanes of group first + 2 (Q4_K/Q5_K nibble vectors)
        idx = _mm512_setr_epi32(first, first, first, first, first, first, first, first, first + 2, first + 2,
                                first + 2, first + 2, first + 2, first + 2, first + 2, first + 2);
    return _mm512_permutexvar_epi32(idx, s32);
}

// Unpacks the 6-bit scales (bytes 0-7) and mins (bytes 8-15) of a Q4_K/Q5_K block.
AI void q4k_unpack(const uint8_t *sc, uint32_t out[4]) {
    const uint32_t k1 = 0x3f3f3f3f, k2 = 0x0f0f0f0f, k3 = 0x03030303;
    uint32_t u[3];
    memcpy(u, sc, 12);
    out[0] = u[0] & k1;
    out[1] = (u[2] & k2) | (((u[0] >> 6) & k3) << 4);
    out[2] = u[1] & k1;
    out[3] = ((u[2] >> 4) & k2) | (((u[1] >> 6) & k3) << 4);
}

// Q4_K and Q5_K: 8 groups of 32; a 64-byte load of qs gives groups (g, g+2) in its low nibbles, (g+1, g+3) high.
AI float dot_q45k(const bool five, int64_t n, const void *vw, const void *va, const bool vnni) {
    const aero_block_q8_K *a = va;
    const uint8_t *wb = vw;
    const size_t bb = five ? sizeof(aero_block_q5_K) : sizeof(aero_block_q4_K);
    const __m512i zero = _mm512_setzero_si512(), m4 = _mm512_set1_epi8(0x0F);
    __m512 acc = _mm512_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / AERO_QK_K; i++, wb += bb) {
        const uint8_t *qs, *scales, *qh = NULL;
        uint16_t d, dmin;
        if (five) {
            const aero_block_q5_K *x = (const void *)wb;
            qs = x->qs, scales = x->scales, qh = x->qh, d = x->d, dmin = x->dmin;
        } else {
            const aero_block_q4_K *x = (const void *)wb;
            qs = x->qs, scales = x->scales, d = x->d, dmin = x->dmin;
        }
        uint32_t sm[4];
        q4k_unpack(scales, sm);
        __m128i sm8 = _mm_loadu_si128((const void *)sm);
        __m512i s32 = _mm512_cvtepu8_epi32(sm8); // lanes 0-7 scales, 8-15 mins
        const int8_t *aq = a[i].qs;
        __m512i isum = zero;
        __m512i hh = five ? _mm512_broadcast_i64x4(_mm256_loadu_si256((const void *)qh)) : zero;
        for (int half = 0; half < 2; half++) {
            __m512i q = _mm512_loadu_si512(qs + 64 * half);
            __m512i A0 = _mm512_loadu_si512(aq + 128 * half), A1 = _mm512_loadu_si512(aq + 128 * half + 64);
            __m512i alo = _mm512_shuffle_i64x2(A0, A1, 0x44), ahi = _mm512_shuffle_i64x2(A0, A1, 0xEE);
            __m512i lo = _mm512_and_si512(q, m4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
            if (five) {
                int b = 4 * half; // groups 4h, 4h+2 (low) use qh bits 4h, 4h+2; groups 4h+1, 4h+3 bits 4h+1, 4h+3
                __m512i blo = join256(_mm256_set1_epi8((char)(1 << b)), _mm256_set1_epi8((char)(1 << (b + 2))));
                __m512i bhi = join256(_mm256_set1_epi8((char)(1 << (b + 1))), _mm256_set1_epi8((char)(1 << (b + 3))));
                const __m512i sixteen = _mm512_set1_epi8(16);
                lo = _mm512_mask_add_epi8(lo, _mm512_test_epi8_mask(hh, blo), lo, sixteen);
                hi = _mm512_mask_add_epi8(hi, _mm512_test_epi8_mask(hh, bhi), hi, sixteen);
            }
            __m512i plo = dp(zero, lo, alo, vnni), phi = dp(zero, hi, ahi, vnni);
            isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(plo, lane_scales(s32, 4 * half, 8)));
            isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(phi, lane_scales(s32, 4 * half + 1, 8)));
        }
        // mins: sum over groups of m[g] * (bsums[2g] + bsums[2g+1])
        __m256i bs = _mm256_loadu_si256((const void *)a[i].bsums);
        __m256i mins16 = _mm256_cvtepu8_epi16(_mm_srli_si128(sm8, 8));            // 8 mins in 16-bit lanes 0-7
        __m256i mdup = _mm256_permutexvar_epi16(
            _mm256_setr_epi16(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7), mins16); // each min for its 2 bsums
        __m256i msum = _mm256_madd_epi16(bs, mdup);
        float ad = a[i].d;
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(h2f(d) * ad), acc);
        accm = _mm256_fmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_set1_ps(h2f(dmin) * ad), accm);
    }
    return _mm512_reduce_add_ps(acc) - hsum256(accm);
}

// Q6_K: per half, 64 bytes of ql give elements 0-63 (low nibbles) and 64-127 (high) in order; qh adds 2 bits.
AI float dot_q6k(int64_t n, const void *vw, const void *va, const bool vnni) {
    const aero_block_q8_K *a = va;
    const aero_block_q6_K *x = vw;
    const __m512i zero = _mm512_setzero_si512(), m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    const __m512i sh_lo = join256(_mm256_set1_epi16(4), _mm256_set1_epi16(2));
    const __m512i sh_hi = join256(_mm256_set1_epi16(0), _mm256_set1_epi16(2));
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / AERO_QK_K; i++) {
        __m128i sc8 = _mm_loadu_si128((const void *)x[i].scales);
        __m512i s32 = _mm512_cvtepi8_epi32(sc8);
        const int8_t *aq = a[i].qs;
        __m512i isum = zero;
        for (int h = 0; h < 2; h++) {
            __m512i l = _mm512_loadu_si512(x[i].ql + 64 * h);
            __m512i hh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const void *)(x[i].qh + 32 * h)));
            __m512i ulo = _mm512_or_si512(_mm512_and_si512(l, m4), _mm512_and_si512(_mm512_sllv_epi16(hh, sh_lo), m30));
            __m512i uhi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                                          _mm512_and_si512(_mm512_srlv_epi16(hh, sh_hi), m30));
            __m512i plo = dp(zero, ulo, _mm512_loadu_si512(aq + 128 * h), vnni);
            __m512i phi = dp(zero, uhi, _mm512_loadu_si512(aq + 128 * h + 64), vnni);
            isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(plo, lane_scales(s32, 8 * h, 4)));
            isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(phi, lane_scales(s32, 8 * h + 4, 4)));
        }
        // codes are offset by 32: subtract 32 * sum over groups of scale * bsum
        __m256i corr = _mm256_madd_epi16(_mm256_loadu_si256((const void *)a[i].bsums), _mm256_cvtepi8_epi16(sc8));
        isum = _mm512_sub_epi32(isum, _mm512_zextsi256_si512(_mm256_slli_epi32(corr, 5)));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(h2f(x[i].d) * a[i].d), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

// 2-bit codes of 128 elements from 32 bytes: (q >> 2k) & 3 gives elements 32k..32k+31 in order.
AI void twobit(__m256i q32, __m512i *lo, __m512i *hi) {
    const __m512i qq = _mm512_broadcast_i64x4(q32), m3 = _mm512_set1_epi8(3);
    *lo = _mm512_and_si512(_mm512_srlv_epi16(qq, join256(_mm256_set1_epi16(0), _mm256_set1_epi16(2))), m3);
    *hi = _mm512_and_si512(_mm512_srlv_epi16(qq, join256(_mm256_set1_epi16(4), _mm256_set1_epi16(6))), m3);
}

// Q3_K: 2 low bits like Q2_K plus a high bit from hmask; signed 6-bit scales; codes offset by 4.
AI float dot_q3k(int64_t n, const void *vw, const void *va, const bool vnni) {
    const aero_block_q8_K *a = va;
    const aero_block_q3_K *x = vw;
    const __m512i zero = _mm512_setzero_si512(), four = _mm512_set1_epi8(4);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / AERO_QK_K; i++) {
        const uint32_t k1 = 0x03030303, k2 = 0x0f0f0f0f;
        uint32_t aux[4], s[3];
        memcpy(s, x[i].scales, 12);
        aux[0] = (s[0] & k2) | (((s[2] >> 0) & k1) << 4);
        aux[1] = (s[1] & k2) | (((s[2] >> 2) & k1) << 4);
        aux[2] = ((s[0] >> 4) & k2) | (((s[2] >> 4) & k1) << 4);
        aux[3] = ((s[1] >> 4) & k2) | (((s[2] >> 6) & k1) << 4);
        __m128i sc8 = _mm_sub_epi8(_mm_loadu_si128((const void *)aux), _mm_set1_epi8(32));
        __m512i s32 = _mm512_cvtepi8_epi32(sc8);
        __m512i hm = _mm512_broadcast_i64x4(_mm256_loadu_si256((const void *)x[i].hmask));
        const int8_t *aq = a[i].qs;
        __m512i isum = zero;
        for (int h = 0; h < 2; h++) {
            __m512i lo, hi;
            twobit(_mm256_loadu_si256((const void *)(x[i].qs + 32 * h)), &lo, &hi);
            __m512i blo = join256(_mm256_set1_epi8((char)(1 << (4 * h))), _mm256_set1_epi8((char)(1 << (4 * h + 1))));
            __m512i bhi = join256(_mm256_set1_epi8((char)(1 << (4 * h + 2))), _mm256_set1_epi8((char)(1 << (4 * h + 3))));
            lo = _mm512_mask_add_epi8(lo, _mm512_test_epi8_mask(hm, blo), lo, four);
            hi = _mm512_mask_add_epi8(hi, _mm512_test_epi8_mask(hm, bhi), hi, four);
            __m512i plo = dp(zero, lo, _mm512_loadu_si512(aq + 128 * h), vnni);
            __m512i phi = dp(zero, hi, _mm512_loadu_si512(aq + 128 * h + 64), vnni);
            isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(plo, lane_scales(s32, 8 * h, 4)));
            isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(phi, lane_scales(s32, 8 * h + 4, 4)));
        }
        __m256i corr = _mm256_madd_epi16(_mm256_loadu_si256((const void *)a[i].bsums), _mm256_cvtepi8_epi16(sc8));
        isum = _mm512_sub_epi32(isum, _mm512_zextsi256_si512(_mm256_slli_epi32(corr, 2)));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(h2f(x[i].d) * a[i].d), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

// Q2_K: 4-bit scales and mins per group of 16.
AI float dot_q2k(int64_t n, const void *vw, const void *va, const bool vnni) {
    const aero_block_q8_K *a = va;
    const aero_block_q2_K *x = vw;
    const __m512i zero = _mm512_setzero_si512();
    __m512 acc = _mm512_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / AERO_QK_K; i++) {
        __m128i raw = _mm_loadu_si128((const void *)x[i].scales);
        __m128i sc8 = _mm_and_si128(raw, _mm_set1_epi8(0x0F)), m8 = _mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0x0F));
        __m512i s32 = _mm512_cvtepu8_epi32(sc8);
        const int8_t *aq = a[i].qs;
        __m512i isum = zero;
        for (int h = 0; h < 2; h++) {
            __m512i lo, hi;
            twobit(_mm256_loadu_si256((const void *)(x[i].qs + 32 * h)), &lo, &hi);
            __m512i plo = dp(zero, lo, _mm512_loadu_si512(aq + 128 * h), vnni);
            __m512i phi = dp(zero, hi, _mm512_loadu_si512(aq + 128 * h + 64), vnni);
            isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(plo, lane_scales(s32, 8 * h, 4)));
            isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(phi, lane_scales(s32, 8 * h + 4, 4)));
        }
        __m256i msum = _mm256_madd_epi16(_mm256_loadu_si256((const void *)a[i].bsums), _mm256_cvtepu8_epi16(m8));
        float ad = a[i].d;
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(h2f(x[i].d) * ad), acc);
        accm = _mm256_fmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_set1_ps(h2f(x[i].dmin) * ad), accm);
    }
    return _mm512_reduce_add_ps(acc) - hsum256(accm);
}

// ---- instances: VNNI and plain AVX-512 ----------------------------------------------------------------

#define T32(name, TYPE, sfx, V)                                                                                 \
    static float name##_##sfx(int64_t n, const void *w, const void *a) { return std32(TYPE, V, n, w, a); }      \
    static float name##_mm_##sfx(int64_t n, const void *w, const void *a) {                                     \
        float out;                                                                                              \
        mm32(TYPE, 1, V, n, w, &a, &out);                                                                       \
        return out;                                                                                             \
    }                                                                                                           \
    static void name##_multi_##sfx(int64_t n, const void *w, const void *const *a, int T, float *out) {         \
        switch (T) {                                                                                            \
        case 1: mm32(TYPE, 1, V, n, w, a, out); break;                                                          \
        case 2: mm32(TYPE, 2, V, n, w, a, out); break;                                                          \
        case 3: mm32(TYPE, 3, V, n, w, a, out); break;                                                          \
        default: mm32(TYPE, 4, V, n, w, a, out); break;                                                         \
        }                                                                                                       \
    }

#define INSTANCES(sfx, V)                                                                                        \
    T32(dot_q4_0, AERO_DT_Q4_0, sfx, V)                                                                          \
    T32(dot_q4_1, AERO_DT_Q4_1, sfx, V)                                                                          \
    T32(dot_q5_0, AERO_DT_Q5_0, sfx, V)                                                                          \
    T32(dot_q5_1, AERO_DT_Q5_1, sfx, V)                                                                          \
    T32(dot_q8_0, AERO_DT_Q8_0, sfx, V)                                                                          \
    static float dot_q2_K_##sfx(int64_t n, const void *w, const void *a) { return dot_q2k(n, w, a, V); }            \
    static float dot_q3_K_##sfx(int64_t n, const void *w, const void *a) { return dot_q3k(n, w, a, V); }            \
    static float dot_q4_K_##sfx(int64_t n, const void *w, const void *a) { return dot_q45k(false, n, w, a, V); }    \
    static float dot_q5_K_##sfx(int64_t n, const void *w, const void *a) { return dot_q45k(true, n, w, a, V); }     \
    static float dot_q6_K_##sfx(int64_t n, const void *w, const void *a) { return dot_q6k(n, w, a, V); }

INSTANCES(vnni, true)
INSTANCES(plain, false)

// Installs the AVX-512 kernels over a copy of the AVX2 table; vnni picks the vpdpbusd instances.
void aero_kernels_fill_avx512(aero_kernel_ops *ops, bool vnni) {
    ops->dot[AERO_DT_F32] = dot_f32;
    ops->dot[AERO_DT_F16] = dot_f16;
    ops->dot[AERO_DT_BF16] = dot_bf16;
#define SET32(T, name, sfx)                  \
    ops->dot[T] = name##_##sfx;              \
    ops->mm_dot[T] = name##_mm_##sfx;        \
    ops->mm_dot_multi[T] = name##_multi_##sfx;
#define SET(sfx)                                \
    SET32(AERO_DT_Q4_0, dot_q4_0, sfx)          \
    SET32(AERO_DT_Q4_1, dot_q4_1, sfx)          \
    SET32(AERO_DT_Q5_0, dot_q5_0, sfx)          \
    SET32(AERO_DT_Q5_1, dot_q5_1, sfx)          \
    SET32(AERO_DT_Q8_0, dot_q8_0, sfx)          \
    ops->dot[AERO_DT_Q2_K] = dot_q2_K_##sfx;    \
    ops->dot[AERO_DT_Q3_K] = dot_q3_K_##sfx;    \
    ops->dot[AERO_DT_Q4_K] = dot_q4_K_##sfx;    \
    ops->dot[AERO_DT_Q5_K] = dot_q5_K_##sfx;    \
    ops->dot[AERO_DT_Q6_K] = dot_q6_K_##sfx;
    for (int t = 0; t < AERO_DT_COUNT; t++) ops->mm_dot_multi[t] = NULL;
    if (vnni) {
        SET(vnni)
    } else {
        SET(plain)
    }
#undef SET
#undef SET32
    for (int t = 0; t < AERO_DT_COUNT; t++)
        if (t < AERO_DT_Q4_0 || t > AERO_DT_Q8_0) ops->mm_dot[t] = ops->dot[t];
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
