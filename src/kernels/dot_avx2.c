// AVX2 + FMA + F16C kernels. Compiled with per-file ISA flags; only called when the CPU has them.
// Quantized dots: exact integer sums per block (maddubs, which never saturates here because every unsigned
// operand is at most 128 and every signed one at most 127 in magnitude, then madd), then the row-lane order of
// quants_ref.c (one fused multiply-add per block per row), bitwise the scalar reference. Weight codes are made
// unsigned and their offset removed with the activation sums.
#include <immintrin.h>
#include <stddef.h>

#include "quants.h"

#define AI __attribute__((always_inline)) static inline

AI float h2f(uint16_t h) { return _cvtsh_ss(h); }

// Fixed-order horizontal sum of 8 floats.
AI float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AI __m256i madd1(__m256i p16) { return _mm256_madd_epi16(p16, _mm256_set1_epi16(1)); }

// Mask of the first r (< 8) lanes.
AI __m256i first_lanes(int r) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(r), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// ---- f32 / f16 / bf16 -----------------------------------------------------------------------------------

// 16-lane f32 accumulation with separate multiply and add, lane-for-lane the scalar order.
static void dot_f32_acc16_avx2(float acc[16], const float *a, const float *b, int64_t n) {
    __m256 s0 = _mm256_loadu_ps(acc), s1 = _mm256_loadu_ps(acc + 8);
    for (int64_t i = 0; i < n; i += 16) {
        s0 = _mm256_add_ps(s0, _mm256_mul_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
        s1 = _mm256_add_ps(s1, _mm256_mul_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8)));
    }
    _mm256_storeu_ps(acc, s0);
    _mm256_storeu_ps(acc + 8, s1);
}

// Adds the tail (elements n16.., fewer than 16) into lanes 0.. as the scalar kernel does; other lanes untouched.
AI void tail16(__m256 *s0, __m256 *s1, const float *w, const float *a, int r, const bool fused) {
    float wt[16] = {0}, at[16] = {0};
    memcpy(wt, w, (size_t)r * 4);
    memcpy(at, a, (size_t)r * 4);
    __m256 p0 = fused ? _mm256_fmadd_ps(_mm256_loadu_ps(wt), _mm256_loadu_ps(at), *s0)
                      : _mm256_add_ps(*s0, _mm256_mul_ps(_mm256_loadu_ps(wt), _mm256_loadu_ps(at)));
    __m256 p1 = fused ? _mm256_fmadd_ps(_mm256_loadu_ps(wt + 8), _mm256_loadu_ps(at + 8), *s1)
                      : _mm256_add_ps(*s1, _mm256_mul_ps(_mm256_loadu_ps(wt + 8), _mm256_loadu_ps(at + 8)));
    *s0 = _mm256_blendv_ps(*s0, p0, _mm256_castsi256_ps(first_lanes(r < 8 ? r : 8)));
    *s1 = _mm256_blendv_ps(*s1, p1, _mm256_castsi256_ps(first_lanes(r > 8 ? r - 8 : 0)));
}

// The 16 lanes of two vectors reduced in the common fixed tree.
AI float reduce_2x8(__m256 s0, __m256 s1) {
    float acc[16];
    _mm256_storeu_ps(acc, s0);
    _mm256_storeu_ps(acc + 8, s1);
    return aero_reduce16(acc);
}

// F32 x F32 in the fixed 16-lane order, bitwise equal to the scalar kernel.
static float dot_f32(int64_t n, const void *vw, const void *va) {
    const float *w = vw, *a = va;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_add_ps(s0, _mm256_mul_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(a + i)));
        s1 = _mm256_add_ps(s1, _mm256_mul_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(a + i + 8)));
    }
    if (i < n) tail16(&s0, &s1, w + i, a + i, (int)(n - i), false);
    return reduce_2x8(s0, s1);
}

AI __m256 f16x8(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const void *)p)); }
// 8 bfloat16 widened to f32 (a shift).
AI __m256 bf16x8(const uint16_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const void *)p)), 16));
}

// Products of halves (or bfloat16) are exact in f32: fused multiply-add equals the scalar multiply then add.
static float dot_f16(int64_t n, const void *vw, const void *va) {
    const uint16_t *w = vw, *a = va;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(f16x8(w + i), f16x8(a + i), s0);
        s1 = _mm256_fmadd_ps(f16x8(w + i + 8), f16x8(a + i + 8), s1);
    }
    if (i < n) {
        float wt[16], at[16];
        for (int k = 0; k < n - i; k++) wt[k] = _cvtsh_ss(w[i + k]), at[k] = _cvtsh_ss(a[i + k]);
        tail16(&s0, &s1, wt, at, (int)(n - i), true);
    }
    return reduce_2x8(s0, s1);
}

// BF16 x BF16 in the fixed 16-lane order (products are exact).
static float dot_bf16(int64_t n, const void *vw, const void *va) {
    const uint16_t *w = vw, *a = va;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(bf16x8(w + i), bf16x8(a + i), s0);
        s1 = _mm256_fmadd_ps(bf16x8(w + i + 8), bf16x8(a + i + 8), s1);
    }
    if (i < n) {
        float wt[16], at[16];
        for (int k = 0; k < n - i; k++) {
            uint32_t bw = (uint32_t)w[i + k] << 16, ba = (uint32_t)a[i + k] << 16;
            memcpy(&wt[k], &bw, 4);
            memcpy(&at[k], &ba, 4);
        }
        tail16(&s0, &s1, wt, at, (int)(n - i), true);
    }
    return reduce_2x8(s0, s1);
}

// F16C widening; exact, so equal to the scalar conversion.
static void f16_to_f32_row(const uint16_t *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, f16x8(x + i));
    for (; i < n; i++) y[i] = _cvtsh_ss(x[i]);
}

// F16C narrowing with round-to-nearest-even, equal to the scalar conversion.
static void f32_to_f16_row(const float *x, uint16_t *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((void *)(y + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++) y[i] = aero_f32_to_f16(x[i]);
}

// bfloat16 widening (a shift).
static void bf16_to_f32_row(const uint16_t *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, bf16x8(x + i));
    for (; i < n; i++) y[i] = aero_bf16_to_f32(x[i]);
}

// ---- activation quantizers (bitwise equal to the scalar ones) ------------------------------------------

AI __m256 abs8(__m256 x) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x); }

// Rounds x * id to nearest even after clamping to [-127, 127] (NaN -> -127), as the scalar quantizer.
AI __m256i q8_round(__m256 x, __m256 id) {
    __m256 v = _mm256_mul_ps(x, id);
    v = _mm256_max_ps(v, _mm256_set1_ps(-127.0f));
    v = _mm256_min_ps(v, _mm256_set1_ps(127.0f));
    return _mm256_cvtps_epi32(v);
}

// Packs 32 int32 (four vectors, element order) to 32 int8.
AI __m256i pack32(__m256i a, __m256i b, __m256i c, __m256i d) {
    __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    __m256i r = _mm256_packs_epi16(ab, cd);
    return _mm256_permutevar8x32_epi32(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// Largest magnitude of n floats (a multiple of 8); exact, so equal to the scalar one.
AI float amax_n(const float *x, int n) {
    __m256 m = _mm256_setzero_ps();
    for (int j = 0; j < n; j += 8) m = _mm256_max_ps(abs8(_mm256_loadu_ps(x + j)), m); // NaN ignored like fmaxf
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// SIMD Q8_0 activation quantizer, byte-identical to the scalar one.
static void quantize_q8_0(const float *x, void *vy, int64_t n) {
    aero_block_q8_0 *y = vy;
    for (int64_t i = 0; i < n / AERO_QK; i++, x += AERO_QK) {
        float id;
        y[i].d = aero_q8_0_scale(amax_n(x, 32), &id);
        __m256 vid = _mm256_set1_ps(id);
        __m256i q = pack32(q8_round(_mm256_loadu_ps(x), vid), q8_round(_mm256_loadu_ps(x + 8), vid),
                           q8_round(_mm256_loadu_ps(x + 16), vid), q8_round(_mm256_loadu_ps(x + 24), vid));
        _mm256_storeu_si256((void *)y[i].qs, q);
    }
}

// SIMD Q8_K activation quantizer, byte-identical to the scalar one.
static void quantize_q8_K(const float *x, void *vy, int64_t n) {
    aero_block_q8_K *y = vy;
    for (int64_t i = 0; i < n / AERO_QK_K; i++, x += AERO_QK_K) {
        float id;
        y[i].d = aero_q8_K_scale(aero_q8_K_signed_max(x, 256, amax_n(x, 256)), &id);
        __m256 vid = _mm256_set1_ps(id);
        for (int j = 0; j < AERO_QK_K; j += 32) {
            __m256i q0 = q8_round(_mm256_loadu_ps(x + j), vid), q1 = q8_round(_mm256_loadu_ps(x + j + 8), vid);
            __m256i q2 = q8_round(_mm256_loadu_ps(x + j + 16), vid), q3 = q8_round(_mm256_loadu_ps(x + j + 24), vid);
            _mm256_storeu_si256((void *)(y[i].qs + j), pack32(q0, q1, q2, q3));
            __m256i s01 = _mm256_add_epi32(q0, q1), s23 = _mm256_add_epi32(q2, q3);
            int32_t t[8], u[8];
            _mm256_storeu_si256((void *)t, s01);
            _mm256_storeu_si256((void *)u, s23);
            y[i].bsums[j / 16] = (int16_t)(t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7]);
            y[i].bsums[j / 16 + 1] = (int16_t)(u[0] + u[1] + u[2] + u[3] + u[4] + u[5] + u[6] + u[7]);
        }
    }
}

// ---- row-lane order: common pieces ---------------------------------------------------------------------
// Every quantized dot reduces a block's integers exactly, then takes one fused multiply-add per block into one
// float accumulator per row (quants_ref.c's order). A tile holds 8 weight rows in the 8 lanes of a vector, so
// its float steps cost one instruction per 8 rows, and each lane is the one-row sequence: a row's bits do not
// depend on which rows or how many tokens share its tile (batch invariance, resident == streamed).

// One fused multiply-add on scalars (a * b + c rounded once), as the vector lanes do it.
AI float fma1(float a, float b, float c) {
    return _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(b), _mm_set_ss(c)));
}

// Sum of the 8 int32 lanes (exact).
AI int hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

// Lane r = the sum of v[r]'s 8 lanes: the per-row integer totals of 8 rows in row lanes (exact, any order).
AI __m256i reduce8(const __m256i v[8]) {
    __m256i a[4], b[2];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
        a[i] = _mm256_add_epi32(_mm256_unpacklo_epi32(v[2 * i], v[2 * i + 1]), _mm256_unpackhi_epi32(v[2 * i], v[2 * i + 1]));
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++)
        b[i] = _mm256_add_epi32(_mm256_unpacklo_epi64(a[2 * i], a[2 * i + 1]), _mm256_unpackhi_epi64(a[2 * i], a[2 * i + 1]));
    // b[0] = [rows 0-3, low lanes' sums | rows 0-3, high lanes'], b[1] the same for rows 4-7: two blends and one
    // lane swap (lane-crossing shuffles are the slow ones) put rows 0-3 low and 4-7 high in both addends
    const __m256i x = _mm256_blend_epi32(b[0], b[1], 0xF0), y = _mm256_blend_epi32(b[1], b[0], 0xF0);
    return _mm256_add_epi32(x, _mm256_permute2x128_si256(y, y, 0x01));
}

AI uint16_t ld16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

// The f16 at byte offset off of 8 rows, widened, lane r from row r.
AI __m256 f16_rows(const uint8_t *const *rp, size_t off) {
    __m128i v = _mm_cvtsi32_si128(ld16(rp[0] + off));
    v = _mm_insert_epi16(v, ld16(rp[1] + off), 1);
    v = _mm_insert_epi16(v, ld16(rp[2] + off), 2);
    v = _mm_insert_epi16(v, ld16(rp[3] + off), 3);
    v = _mm_insert_epi16(v, ld16(rp[4] + off), 4);
    v = _mm_insert_epi16(v, ld16(rp[5] + off), 5);
    v = _mm_insert_epi16(v, ld16(rp[6] + off), 6);
    v = _mm_insert_epi16(v, ld16(rp[7] + off), 7);
    return _mm256_cvtph_ps(v);
}

// The f16 pair (d, dmin) at byte offset off of 8 rows, widened: d in *dv, dmin in *mv, lane r from row r. One
// 32-bit insert per row instead of two 16-bit ones.
AI void f16x2_rows(const uint8_t *const *rp, size_t off, __m256 *dv, __m256 *mv) {
    int w[8];
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++) memcpy(&w[r], rp[r] + off, 4);
    __m128i a = _mm_setr_epi32(w[0], w[1], w[2], w[3]), b = _mm_setr_epi32(w[4], w[5], w[6], w[7]);
    const __m128i split = _mm_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15); // d's, then dmins
    a = _mm_shuffle_epi8(a, split), b = _mm_shuffle_epi8(b, split);
    *dv = _mm256_cvtph_ps(_mm_unpacklo_epi64(a, b));
    *mv = _mm256_cvtph_ps(_mm_unpackhi_epi64(a, b));
}

// The 8 row pointers of a tile of R (1-8) rows; missing rows repeat the last one (computed, never stored).
AI void tile_rows(const void *w, size_t rb, int R, const uint8_t *rp[8]) {
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++) rp[r] = (const uint8_t *)w + (size_t)(r < R ? r : R - 1) * rb;
}

// A matrix-vector product reads the 8 rows of a tile side by side: 8 short streams, which the hardware
// prefetchers follow worse than the one long stream of a row-by-row product. So while a tile computes its
// block step i, the same share of the next tile's bytes (the rows that follow, rb apart) is fetched into L2:
// the weights stream at the one-row kernel's pace. Only for one token (a matrix-vector product); a batch
// reuses the tile from cache.
AI void prefetch_next(const uint8_t *w0, size_t rb, size_t step, int64_t i) {
    if (!rb) return;
    const uint8_t *p = w0 + 8 * rb + (size_t)i * step;
    for (size_t o = 0; o < step; o += 64) _mm_prefetch((const char *)(p + o), _MM_HINT_T1);
}

// ---- 32-element blocks with Q8_0 activations -------------------------------------------------------------

// 16 bytes of nibbles as 32 unsigned codes in element order (low nibbles then high): the bytes loaded into both
// halves (a load, no shuffle), the high half shifted by 4 (one variable shift), one mask.
AI __m256i nibbles32(const uint8_t *q) {
    const __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const void *)q));
    return _mm256_and_si256(_mm256_srlv_epi32(v, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4)), _mm256_set1_epi8(0x0F));
}

// The fifth bit of each of 32 elements, from 32 bits, as 0 or 16.
AI __m256i fifth_bits(const uint8_t *qh) {
    uint32_t bits;
    memcpy(&bits, qh, 4);
    __m256i v = _mm256_set1_epi32((int)bits);
    v = _mm256_shuffle_epi8(
        v, _mm256_setr_epi64x(0x0000000000000000ll, 0x0101010101010101ll, 0x0202020202020202ll, 0x0303030303030303ll));
    const __m256i bit = _mm256_set1_epi64x(0x8040201008040201ll);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(v, _mm256_set1_epi8(16));
}

AI size_t bytes32(const aero_dtype t) {
    return t == AERO_DT_Q4_0 ? 18 : t == AERO_DT_Q4_1 ? 20 : t == AERO_DT_Q5_0 ? 22 : t == AERO_DT_Q5_1 ? 24 : 34;
}
AI bool min32(const aero_dtype t) { return t == AERO_DT_Q4_1 || t == AERO_DT_Q5_1; }
// The code offset of the symmetric types (Q8_0's codes are signed: none).
AI int off32(const aero_dtype t) { return t == AERO_DT_Q4_0 ? 8 : t == AERO_DT_Q5_0 ? 16 : 0; }

// The 32 codes of a block as unsigned bytes (Q8_0: its signed weights as stored).
AI __m256i codes32(const aero_dtype t, const uint8_t *w) {
    if (t == AERO_DT_Q8_0) return _mm256_loadu_si256((const void *)(w + 2));
    const bool five = t == AERO_DT_Q5_0 || t == AERO_DT_Q5_1;
    const size_t qh_off = min32(t) ? 4 : 2, qs_off = qh_off + (five ? 4 : 0);
    __m256i u = nibbles32(w + qs_off);
    if (five) u = _mm256_or_si256(u, fifth_bits(w + qh_off));
    return u;
}

// A Q8_0 activation block as matmul lays it out: the codes, the weight type's integer correction (offset x code
// sum for Q4_0/Q5_0, the code sum for Q4_1/Q5_1's min, 0 for Q8_0) and the scale as f32, computed once per token
// instead of once per weight row. The integers are exact and the scale is the same float, so a dot over these
// rows has the bits of the dot over standard blocks.
typedef struct {
    int8_t qs[32];
    int32_t s;
    float d;
} q8p;
_Static_assert(sizeof(q8p) == 40, "prepared Q8_0 block size");

static bool is32(aero_dtype t) {
    return t == AERO_DT_Q4_0 || t == AERO_DT_Q4_1 || t == AERO_DT_Q5_0 || t == AERO_DT_Q5_1 || t == AERO_DT_Q8_0;
}

// Bytes of a prepared activation row for weights of type w (0: standard blocks).
static size_t act_bytes(aero_dtype w, int64_t n) { return is32(w) ? (size_t)(n / AERO_QK) * sizeof(q8p) : 0; }

// Matmul's activation rows: quantized exactly like the standard ones, then the correction summed and the scale
// widened.
static void act_quantize(aero_dtype w, const float *x, void *vp, int64_t n) {
    q8p *p = vp;
    const int off = off32(w), mul = min32(w) ? 1 : off;
    for (int64_t b = 0; b < n / AERO_QK; b++) {
        aero_block_q8_0 blk;
        quantize_q8_0(x + b * AERO_QK, &blk, AERO_QK);
        __m256i av = _mm256_loadu_si256((const void *)blk.qs);
        _mm256_storeu_si256((void *)p[b].qs, av);
        p[b].s = mul * hsum_i32(madd1(_mm256_maddubs_epi16(_mm256_set1_epi8(1), av)));
        p[b].d = h2f(blk.d);
    }
}

// One row, one token, standard blocks: the aero_vec_dot of the 32-block types (per block a horizontal integer
// sum, then the row's float steps).
AI float dot32_one(const aero_dtype t, int64_t n, const void *vw, const void *va) {
    const aero_block_q8_0 *a = va;
    const uint8_t *w = vw;
    const size_t bb = bytes32(t);
    float acc = 0.0f;
    for (int64_t i = 0; i < n / AERO_QK; i++, w += bb) {
        __m256i u = codes32(t, w), av = _mm256_loadu_si256((const void *)a[i].qs);
        const float dw = h2f(ld16(w)), da = h2f(a[i].d);
        int isum;
        if (t == AERO_DT_Q8_0) {
            isum = hsum_i32(madd1(_mm256_maddubs_epi16(_mm256_sign_epi8(u, u), _mm256_sign_epi8(av, u))));
        } else {
            isum = hsum_i32(madd1(_mm256_maddubs_epi16(u, av)));
        }
        int asum = t == AERO_DT_Q8_0 ? 0 : hsum_i32(madd1(_mm256_maddubs_epi16(_mm256_set1_epi8(1), av)));
        if (!min32(t)) isum -= off32(t) * asum;
        acc = fma1((float)isum, dw * da, acc);
        if (min32(t)) acc = fma1((float)asum, h2f(ld16(w + 2)) * da, acc);
    }
    return acc;
}

// One row, one token, matmul's activation rows: dot32_one's steps with the correction and scale read, not
// computed (the one-row kernel matmul no longer calls, kept for the table's contract and the benchmarks).
AI float mm32_one(const aero_dtype t, int64_t n, const void *vw, const void *va) {
    const q8p *a = va;
    const uint8_t *w = vw;
    const size_t bb = bytes32(t);
    float acc = 0.0f;
    for (int64_t i = 0; i < n / AERO_QK; i++, w += bb) {
        __m256i u = codes32(t, w), av = _mm256_loadu_si256((const void *)a[i].qs);
        if (t == AERO_DT_Q8_0) av = _mm256_sign_epi8(av, u), u = _mm256_sign_epi8(u, u);
        int isum = hsum_i32(madd1(_mm256_maddubs_epi16(u, av)));
        if (t != AERO_DT_Q8_0 && !min32(t)) isum -= a[i].s;
        acc = fma1((float)isum, h2f(ld16(w)) * a[i].d, acc);
        if (min32(t)) acc = fma1((float)a[i].s, h2f(ld16(w + 2)) * a[i].d, acc);
    }
    return acc;
}

// The 4-bit and 5-bit codes of 8 rows transposed in 4-byte groups: lo[j] holds group j (low 128 bits) and j + 4
// (high) of rows 0-3, one row per 32-bit lane; hi[j] the same for rows 4-7. Multiplied by a token's groups j and
// j + 4 broadcast in the same halves (one in-lane shuffle), every 32-bit lane sums its own row's products: no
// horizontal reduction per token, and 4 products' pairs stay exact in 16 bits (at most 8 x 31 x 127).
AI void transpose32(const __m256i c[8], __m256i lo[4], __m256i hi[4]) {
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        const __m256i *x = c + 4 * h;
        __m256i t0 = _mm256_unpacklo_epi32(x[0], x[1]), t1 = _mm256_unpackhi_epi32(x[0], x[1]);
        __m256i t2 = _mm256_unpacklo_epi32(x[2], x[3]), t3 = _mm256_unpackhi_epi32(x[2], x[3]);
        __m256i *o = h ? hi : lo;
        o[0] = _mm256_unpacklo_epi64(t0, t2), o[1] = _mm256_unpackhi_epi64(t0, t2);
        o[2] = _mm256_unpacklo_epi64(t1, t3), o[3] = _mm256_unpackhi_epi64(t1, t3);
    }
}

// The integer dots of 8 transposed rows with one token's codes av, in row lanes.
AI __m256i tdot32(const __m256i lo[4], const __m256i hi[4], __m256i av) {
    const __m256i a0 = _mm256_shuffle_epi32(av, 0x00), a1 = _mm256_shuffle_epi32(av, 0x55);
    const __m256i a2 = _mm256_shuffle_epi32(av, 0xAA), a3 = _mm256_shuffle_epi32(av, 0xFF);
    __m256i sl = _mm256_add_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(lo[0], a0), _mm256_maddubs_epi16(lo[1], a1)),
                                  _mm256_add_epi16(_mm256_maddubs_epi16(lo[2], a2), _mm256_maddubs_epi16(lo[3], a3)));
    __m256i sh = _mm256_add_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(hi[0], a0), _mm256_maddubs_epi16(hi[1], a1)),
                                  _mm256_add_epi16(_mm256_maddubs_epi16(hi[2], a2), _mm256_maddubs_epi16(hi[3], a3)));
    __m256i ml = madd1(sl), mh = madd1(sh); // [rows 0-3, groups 0-3 | rows 0-3, groups 4-7], rows 4-7
    return _mm256_add_epi32(_mm256_permute2x128_si256(ml, mh, 0x20), _mm256_permute2x128_si256(ml, mh, 0x31));
}

// The tile kernel of the five 32-block types: R (1-8) rows x T (1-4, a compile-time constant) tokens over
// prepared activation rows, out[k * 8 + r]. Each block of the 8 rows is unpacked once for the T tokens; per
// token, the 8 rows' integer dots land in row lanes (transposed codes for a batch of 4- and 5-bit types; per
// row, then a horizontal reduction, for one token and for Q8_0's signed weights), then one correction, one
// conversion and one or two fused multiply-adds for the 8 rows. The integers are the same either way.
AI void tile32(const aero_dtype t, const int T, int64_t n, const void *vw, size_t rb, int R, const void *const *va,
               float *out) {
    const q8p *a[4];
#pragma GCC unroll 8
    for (int k = 0; k < T; k++) a[k] = va[k];
    const uint8_t *rp[8];
    tile_rows(vw, rb, R, rp);
    const size_t bb = bytes32(t);
    const bool q8 = t == AERO_DT_Q8_0, has_min = min32(t), transposed = T > 1 && !q8;
    __m256 acc[4];
#pragma GCC unroll 8
    for (int k = 0; k < T; k++) acc[k] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / AERO_QK; i++) {
        const size_t bo = (size_t)i * bb;
        if (T == 1) prefetch_next(rp[0], rb, 8 * bb, i);
        __m256i u[8], sg[8], lo[4], hi[4];
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) {
            u[r] = codes32(t, rp[r] + bo);
            if (q8) sg[r] = u[r], u[r] = _mm256_sign_epi8(u[r], u[r]);
        }
        if (transposed) transpose32(u, lo, hi);
        const __m256 dv = f16_rows(rp, bo), mv = has_min ? f16_rows(rp, bo + 2) : _mm256_setzero_ps();
#pragma GCC unroll 8
        for (int k = 0; k < T; k++) {
            const q8p *ak = a[k] + i;
            const __m256i av = _mm256_loadu_si256((const void *)ak->qs);
            __m256i is;
            if (transposed) {
                is = tdot32(lo, hi, av);
            } else {
                __m256i p[8];
#pragma GCC unroll 8
                for (int r = 0; r < 8; r++)
                    p[r] = madd1(_mm256_maddubs_epi16(u[r], q8 ? _mm256_sign_epi8(av, sg[r]) : av));
                is = reduce8(p);
            }
            if (!q8 && !has_min) is = _mm256_sub_epi32(is, _mm256_set1_epi32(ak->s));
            const __m256 da = _mm256_broadcast_ss(&ak->d);
            acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is), _mm256_mul_ps(dv, da), acc[k]);
            if (has_min) acc[k] = _mm256_fmadd_ps(_mm256_set1_ps((float)ak->s), _mm256_mul_ps(mv, da), acc[k]);
        }
    }
#pragma GCC unroll 8
    for (int k = 0; k < T; k++) _mm256_storeu_ps(out + 8 * k, acc[k]);
}

// ---- K-quants with Q8_K activations -------------------------------------------------------------------

// The 6-bit scales (bytes 0-7) and mins (8-15) of a Q4_K/Q5_K block, 32 bits at a time.
AI void q4k_unpack(const uint8_t *sc, uint8_t out[16]) {
    const uint32_t k1 = 0x3f3f3f3f, k2 = 0x0f0f0f0f, k3 = 0x03030303;
    uint32_t u[3], o[4];
    memcpy(u, sc, 12);
    o[0] = u[0] & k1;
    o[1] = (u[2] & k2) | (((u[0] >> 6) & k3) << 4);
    o[2] = u[1] & k1;
    o[3] = ((u[2] >> 4) & k2) | (((u[1] >> 6) & k3) << 4);
    memcpy(out, o, 16);
}


// The integer sums of one K-quant block of one row for T tokens (ab[k]: token k's block): isum[k] holds the
// scaled group sums (offsets removed), msum[k] the mins times the activation group sums (types with a dmin),
// 8 lanes each whose total is the row's integer. The same integers as the scalar unpack, in any order.

// The 6-bit scales (bytes 0-7) and mins (8-15) of a Q4_K/Q5_K block in both 128-bit halves, unpacked in
// registers from the block's first 16 bytes loaded into both halves (d, dmin, then the 12 packed bytes b0-b11;
// get_scale_min_k4): scale j < 4 is b[j] & 63, scale j >= 4 is (b[j + 4] & 15) | (b[j - 4] >> 6) << 4; min j < 4
// is b[j + 4] & 63, min j >= 4 is b[j + 4] >> 4 | (b[j] >> 6) << 4. Per 32-bit lane one shift and one mask: 7
// in-lane ops (the lane-crossing widenings and permutes are the slow shuffles on Zen 3).
AI __m256i q4k_scales_mins(const uint8_t *wb) {
    const __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const void *)wb));
    const __m256i lo_idx = _mm256_setr_epi8(4, 5, 6, 7, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15, 4, 5, 6, 7, 12,
                                            13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m256i hi_idx = _mm256_setr_epi8(-1, -1, -1, -1, 4, 5, 6, 7, -1, -1, -1, -1, 8, 9, 10, 11, -1, -1, -1, -1, 4,
                                            5, 6, 7, -1, -1, -1, -1, 8, 9, 10, 11);
    __m256i lo = _mm256_srlv_epi32(_mm256_shuffle_epi8(v, lo_idx), _mm256_setr_epi32(0, 0, 0, 4, 0, 0, 0, 4));
    lo = _mm256_and_si256(lo, _mm256_setr_epi32(0x3F3F3F3F, 0x0F0F0F0F, 0x3F3F3F3F, 0x0F0F0F0F, 0x3F3F3F3F, 0x0F0F0F0F,
                                                0x3F3F3F3F, 0x0F0F0F0F));
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(_mm256_shuffle_epi8(v, hi_idx), 2), _mm256_set1_epi8(0x30));
    return _mm256_or_si256(lo, hi); // (b >> 6) << 4 in hi
}

// A token's 8 group sums of 32 (pairs of bsums, exact in 16 bits) as words 0-3 of each 128-bit half (sums 0-3
// low, 4-7 high), zeros above: one madd with a row's mins laid out the same way (q45k_block) gives their products.
AI __m256i gsums_k4(const aero_block_q8_K *ab) {
    const __m256i s = _mm256_madd_epi16(_mm256_loadu_si256((const void *)ab->bsums), _mm256_set1_epi16(1));
    return _mm256_packs_epi32(s, _mm256_setzero_si256());
}

// The fifth bits of a Q5_K code vector: bit b of qh (b = 2p for the low nibbles of qs bytes 32p.., 2p + 1 for
// the high ones) as 0 or 16. hq_up is qh shifted up 4 bits (for b < 4); and'ing the bit at position >= 4 and
// min(., 16) replaces a compare.
AI __m256i q5k_fifth(__m256i hq, __m256i hq_up, const int b) {
    const __m256i x = b < 4 ? _mm256_and_si256(hq_up, _mm256_set1_epi8((char)(16 << b)))
                            : _mm256_and_si256(hq, _mm256_set1_epi8((char)(1 << b)));
    return b == 0 || b == 4 ? x : _mm256_min_epu8(x, _mm256_set1_epi8(16));
}

// Q4_K / Q5_K: 8 groups of 32; 32 bytes of qs hold group 2p (low nibbles) and 2p+1 (high). The mins against the
// token's group sums (pr: gsums_k4).
AI void q45k_block(const bool five, const int T, const uint8_t *wb, const aero_block_q8_K *const *ab,
                   const __m256i *pr, __m256i *isum, __m256i *msum) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const uint8_t *qs = wb + (five ? offsetof(aero_block_q5_K, qs) : offsetof(aero_block_q4_K, qs));
    const __m256i sm = q4k_scales_mins(wb);
    // the 8 scales as words in both halves (one shuffle broadcasts a scale); mins 0-3 as words 0-3 of the low half,
    // 4-7 of the high half (for gsums_k4)
    const __m256i s16 = _mm256_unpacklo_epi8(sm, _mm256_setzero_si256());
    const __m256i m16 = _mm256_shuffle_epi8(sm, _mm256_setr_epi8(8, -1, 9, -1, 10, -1, 11, -1, -1, -1, -1, -1, -1, -1, -1,
                                                                 -1, 12, -1, 13, -1, 14, -1, 15, -1, -1, -1, -1, -1, -1,
                                                                 -1, -1, -1));
#pragma GCC unroll 8
    for (int k = 0; k < T; k++) isum[k] = _mm256_setzero_si256();
    const __m256i hq = five ? _mm256_loadu_si256((const void *)(wb + offsetof(aero_block_q5_K, qh))) : m4;
    const __m256i hq_up = five ? _mm256_slli_epi16(hq, 4) : m4;
#pragma GCC unroll 4
    for (int p = 0; p < 4; p++) {
        const __m256i q = _mm256_loadu_si256((const void *)(qs + 32 * p));
        __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        if (five) {
            lo = _mm256_or_si256(lo, q5k_fifth(hq, hq_up, 2 * p));
            hi = _mm256_or_si256(hi, q5k_fifth(hq, hq_up, 2 * p + 1));
        }
        const __m256i s_lo = _mm256_shuffle_epi8(s16, _mm256_set1_epi16((short)(0x0100 + 0x0202 * (2 * p)))),
                      s_hi = _mm256_shuffle_epi8(s16, _mm256_set1_epi16((short)(0x0100 + 0x0202 * (2 * p + 1))));
#pragma GCC unroll 8
        for (int k = 0; k < T; k++) {
            const int8_t *aq = ab[k]->qs;
            __m256i plo = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const void *)(aq + 64 * p)));
            __m256i phi = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const void *)(aq + 64 * p + 32)));
            isum[k] = _mm256_add_epi32(isum[k], _mm256_add_epi32(_mm256_madd_epi16(plo, s_lo), _mm256_madd_epi16(phi, s_hi)));
        }
    }
#pragma GCC unroll 8
    for (int k = 0; k < T; k++) msum[k] = _mm256_madd_epi16(m16, pr[k]);
}

// Q3_K's 16 6-bit scales minus 32 as 16-bit words in even/odd order (scales 0, 2, .., 14 in the low half, 1,
// 3, .., 15 in the high one), from the block's bytes 94-109 (inside the block; bytes 2-13 are the packed scales)
// loaded into both halves. Scale j: low 4 bits in byte j (j < 8) or the high nibble of byte j - 8, high 2 bits
// at bit 2(j / 4) of byte 8 + j % 4 (aero_q3k_scales). Each half gathers its 8 scales' bytes with its own
// shuffle; the low nibbles need a per-32-bit shift (0 or 4), the high bits a per-16-bit one (a multiply by 64,
// 16, 4 or 1 then a shift by 2 puts bits 2c.. at bits 4-5). In-lane ops only.
AI __m256i q3k_scales_eo(const uint8_t *wb) {
    const __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const void *)(wb + offsetof(aero_block_q3_K, scales) - 2)));
    const __m256i lo_idx = _mm256_setr_epi8(2, 4, 6, 8, 2, 4, 6, 8, -1, -1, -1, -1, -1, -1, -1, -1, 3, 5, 7, 9, 3, 5, 7, 9,
                                            -1, -1, -1, -1, -1, -1, -1, -1);
    const __m256i hi_idx = _mm256_setr_epi8(10, 12, 10, 12, 10, 12, 10, 12, -1, -1, -1, -1, -1, -1, -1, -1, 11, 13, 11,
                                            13, 11, 13, 11, 13, -1, -1, -1, -1, -1, -1, -1, -1);
    __m256i lo = _mm256_srlv_epi32(_mm256_shuffle_epi8(v, lo_idx), _mm256_setr_epi32(0, 4, 0, 0, 0, 4, 0, 0));
    lo = _mm256_and_si256(lo, _mm256_set1_epi8(0x0F));
    __m256i hi = _mm256_mullo_epi16(_mm256_shuffle_epi8(v, hi_idx),
                                    _mm256_setr_epi16(64, 16, 4, 1, 0, 0, 0, 0, 64, 16, 4, 1, 0, 0, 0, 0));
    hi = _mm256_and_si256(_mm256_srli_epi16(hi, 2), _mm256_set1_epi8(0x30));
    return _mm256_sub_epi16(_mm256_unpacklo_epi8(_mm256_or_si256(lo, hi), _mm256_setzero_si256()), _mm256_set1_epi16(32));
}

// 16 bytes present in both 128-bit halves, as 16-bit words in even/odd order (bytes 0, 2, .., 14 in the low
// half, 1, 3, .., 15 in the high one), zero- or sign-extended: one in-lane shuffle (and a shift for the sign)
// instead of a shuffle and a lane-crossing widening.
AI __m256i eo_words(__m256i v, const bool sign) {
    if (sign) // each byte into the high byte of its word, then an arithmetic shift
        return _mm256_srai_epi16(_mm256_shuffle_epi8(v, _mm256_setr_epi8(-1, 0, -1, 2, -1, 4, -1, 6, -1, 8, -1, 10, -1, 12,
                                                                          -1, 14, -1, 1, -1, 3, -1, 5, -1, 7, -1, 9, -1,
                                                                          11, -1, 13, -1, 15)),
                                 8);
    return _mm256_shuffle_epi8(v, _mm256_setr_epi8(0, -1, 2, -1, 4, -1, 6, -1, 8, -1, 10, -1, 12, -1, 14, -1, 1, -1, 3, -1,
                                                   5, -1, 7, -1, 9, -1, 11, -1, 13, -1, 15, -1));
}

// A token's 16 group sums of 16 in even/odd order (groups 0, 2, .., 14, then 1, 3, .., 15) as 16-bit words.
AI __m256i bsums_eo(const aero_block_q8_K *ab) {
    const __m256i ctl = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15, 0, 1, 4, 5, 8, 9, 12,
                                         13, 2, 3, 6, 7, 10, 11, 14, 15);
    __m256i v = _mm256_shuffle_epi8(_mm256_loadu_si256((const void *)ab->bsums), ctl);
    return _mm256_permute4x64_epi64(v, 0xD8);
}

// Scale pair J (groups 2J, 2J + 1: the 32 elements of code vector J) as 16-bit words, group 2J's in the low 128
// bits and 2J + 1's in the high ones, from the 16 scales widened in even/odd order.
AI __m256i scale_pair_eo(__m256i s16, const int J) {
    return _mm256_shuffle_epi8(s16, _mm256_set1_epi16((short)(0x0100 + 0x0202 * J)));
}

// Q6_K: per half, ql bytes 0-31 / 32-63 give elements 0-31 / 32-63 (low nibbles) and 64-95 / 96-127 (high);
// qh bits 2j.. the high 2 bits of elements 32j.. of the half, moved to bits 4-5 with one shift and one mask.
// Codes are offset by 32 (removed with the token's group sums in even/odd order, pr: bsums_eo); the int8
// scales are taken in even/odd order as Q3_K's.
AI void q6k_block(const int T, const uint8_t *wb, const aero_block_q8_K *const *ab, const __m256i *pr,
                  __m256i *isum, __m256i *msum) {
    const aero_block_q6_K *x = (const void *)wb;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    const __m256i s16 = eo_words(_mm256_broadcastsi128_si256(_mm_loadu_si128((const void *)x->scales)), true);
#pragma GCC unroll 8
    for (int k = 0; k < T; k++) isum[k] = _mm256_setzero_si256();
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        const __m256i l0 = _mm256_loadu_si256((const void *)(x->ql + 64 * h));
        const __m256i l1 = _mm256_loadu_si256((const void *)(x->ql + 64 * h + 32));
        const __m256i hb = _mm256_loadu_si256((const void *)(x->qh + 32 * h));
        __m256i u[4];
        u[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 4), m30));
        u[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 2), m30));
        u[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(hb, m30));
        u[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                               _mm256_and_si256(_mm256_srli_epi16(hb, 2), m30));
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            const __m256i sp = scale_pair_eo(s16, 4 * h + j);
#pragma GCC unroll 8
            for (int k = 0; k < T; k++) {
                __m256i p = _mm256_maddubs_epi16(u[j], _mm256_loadu_si256((const void *)(ab[k]->qs + 128 * h + 32 * j)));
                isum[k] = _mm256_add_epi32(isum[k], _mm256_madd_epi16(p, sp));
            }
        }
    }
#pragma GCC unroll 8
    for (int k = 0; k < T; k++) {
        isum[k] = _mm256_sub_epi32(isum[k], _mm256_slli_epi32(_mm256_madd_epi16(s16, pr[k]), 5));
        msum[k] = _mm256_setzero_si256();
    }
}

// Q3_K: 2 low bits (bits 2j of qs give elements 32j.. of a half) plus the hmask bit as 4; offset 4, removed with
// the token's group sums (pr: bsums_eo x 4). As Q2_K's, the low bits of vector j are masked where they lie (times
// 1, 4, 16; vector 3 shifted to bits 4-5, times 16) and the scales of vector j multiplied to make every product
// 16 times its value (exact: at most 2^28); the high bit of vector (h, j), bit 4h + j of hmask, is put two bits
// above its low bits by one of 6 copies of hmask (5 shifts per block, shared by the two halves), then masked.
AI void q3k_block(const int T, const uint8_t *wb, const aero_block_q8_K *const *ab, const __m256i *pr,
                  __m256i *isum, __m256i *msum) {
    const aero_block_q3_K *x = (const void *)wb;
    const __m256i s16 = q3k_scales_eo(wb);
    const __m256i s16x[3] = {_mm256_slli_epi16(s16, 4), _mm256_slli_epi16(s16, 2), s16}; // for codes x1, x4, x16
#pragma GCC unroll 8
    for (int k = 0; k < T; k++) isum[k] = _mm256_setzero_si256();
    const __m256i hm = _mm256_loadu_si256((const void *)x->hmask);
    // hmask shifted so that bit 4h + j lands at bit 2j + 2 (j < 3) or 6 (j = 3): [h][j]
    const __m256i hl2 = _mm256_slli_epi16(hm, 2), hl3 = _mm256_slli_epi16(hm, 3), hl4 = _mm256_slli_epi16(hm, 4);
    const __m256i hr2 = _mm256_srli_epi16(hm, 2), hr1 = _mm256_srli_epi16(hm, 1);
    const __m256i hs[2][4] = {{hl2, hl3, hl4, hl3}, {hr2, hr1, hm, hr1}};
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        const __m256i q = _mm256_loadu_si256((const void *)(x->qs + 32 * h));
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            const int lo_at = j < 3 ? 2 * j : 4; // bit position of the low 2 bits in u
            const __m256i low = _mm256_and_si256(j < 3 ? q : _mm256_srli_epi16(q, 2), _mm256_set1_epi8((char)(3 << lo_at)));
            const __m256i u = _mm256_or_si256(low, _mm256_and_si256(hs[h][j], _mm256_set1_epi8((char)(4 << lo_at))));
            const __m256i sp = scale_pair_eo(s16x[j < 3 ? j : 2], 4 * h + j);
#pragma GCC unroll 8
            for (int k = 0; k < T; k++) {
                __m256i p = _mm256_maddubs_epi16(u, _mm256_loadu_si256((const void *)(ab[k]->qs + 128 * h + 32 * j)));
                isum[k] = _mm256_add_epi32(isum[k], _mm256_madd_epi16(p, sp));
            }
        }
    }
#pragma GCC unroll 8
    for (int k = 0; k < T; k++) {
        isum[k] = _mm256_sub_epi32(isum[k], _mm256_madd_epi16(s16x[0], pr[k])); // 16 s x 4 B: at most 2^23
        msum[k] = _mm256_setzero_si256();
    }
}

// Q2_K: 4-bit scales and mins per group of 16, taken in even/odd order (one in-lane shuffle per group pair's
// scales; the mins against the token's group sums in the same order, pr: bsums_eo). The 2-bit codes of vector
// j are masked where they lie (bits 2j, j < 3; vector 3 shifted to bits 4-5), i.e. times 1, 4, 16, 16, and
// their scales times 16, 4, 1, 1: isum is 16 times the block's integer (exact: at most 2^26), divided after the
// rows' sums (shiftK). Two shifts of the scales instead of three of the codes per half.
AI void q2k_block(const int T, const uint8_t *wb, const aero_block_q8_K *const *ab, const __m256i *pr,
                  __m256i *isum, __m256i *msum) {
    const aero_block_q2_K *x = (const void *)wb;
    const __m256i w16 = eo_words(_mm256_broadcastsi128_si256(_mm_loadu_si128((const void *)x->scales)), false);
    const __m256i s16 = _mm256_and_si256(w16, _mm256_set1_epi16(0x0F)), m16 = _mm256_srli_epi16(w16, 4);
    const __m256i s16x[3] = {_mm256_slli_epi16(s16, 4), _mm256_slli_epi16(s16, 2), s16}; // for codes x1, x4, x16
#pragma GCC unroll 8
    for (int k = 0; k < T; k++) isum[k] = _mm256_setzero_si256();
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        const __m256i q = _mm256_loadu_si256((const void *)(x->qs + 32 * h));
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            const __m256i u = j < 3 ? _mm256_and_si256(q, _mm256_set1_epi8((char)(3 << (2 * j))))
                                    : _mm256_and_si256(_mm256_srli_epi16(q, 2), _mm256_set1_epi8(0x30));
            const __m256i sp = scale_pair_eo(s16x[j < 3 ? j : 2], 4 * h + j);
#pragma GCC unroll 8
            for (int k = 0; k < T; k++) {
                __m256i p = _mm256_maddubs_epi16(u, _mm256_loadu_si256((const void *)(ab[k]->qs + 128 * h + 32 * j)));
                isum[k] = _mm256_add_epi32(isum[k], _mm256_madd_epi16(p, sp));
            }
        }
    }
#pragma GCC unroll 8
    for (int k = 0; k < T; k++) msum[k] = _mm256_madd_epi16(pr[k], m16);
}

// Block size, and the byte offsets of d and dmin (types without a dmin: 0, unused), of the K-quant weights.
AI size_t bytesK(const aero_dtype t) {
    return t == AERO_DT_Q2_K   ? sizeof(aero_block_q2_K)
           : t == AERO_DT_Q3_K ? sizeof(aero_block_q3_K)
           : t == AERO_DT_Q4_K ? sizeof(aero_block_q4_K)
           : t == AERO_DT_Q5_K ? sizeof(aero_block_q5_K)
                               : sizeof(aero_block_q6_K);
}
AI size_t doffK(const aero_dtype t) {
    return t == AERO_DT_Q2_K   ? offsetof(aero_block_q2_K, d)
           : t == AERO_DT_Q3_K ? offsetof(aero_block_q3_K, d)
           : t == AERO_DT_Q6_K ? offsetof(aero_block_q6_K, d)
                               : 0;
}
// log2 of the factor a type's isum carries (Q2_K, Q3_K: 16), removed from the exact total of each row's lanes.
AI int shiftK(const aero_dtype t) { return t == AERO_DT_Q2_K || t == AERO_DT_Q3_K ? 4 : 0; }
AI bool minK(const aero_dtype t) { return t == AERO_DT_Q2_K || t == AERO_DT_Q4_K || t == AERO_DT_Q5_K; }
AI size_t moffK(const aero_dtype t) { return t == AERO_DT_Q2_K ? offsetof(aero_block_q2_K, dmin) : 2; }

// What a K-quant block needs of a token besides its codes, computed once per block for all the rows of a tile:
// Q3_K the group sums in even/odd order times the code offset 4, Q2_K and Q6_K the same sums (for the mins,
// the offset 32), Q4_K/Q5_K the sums of 32 (for the mins).
AI __m256i prepK(const aero_dtype t, const aero_block_q8_K *ab) {
    if (t == AERO_DT_Q3_K) return _mm256_slli_epi16(bsums_eo(ab), 2);
    if (t == AERO_DT_Q2_K || t == AERO_DT_Q6_K) return bsums_eo(ab);
    if (t == AERO_DT_Q4_K || t == AERO_DT_Q5_K) return gsums_k4(ab);
    return _mm256_setzero_si256();
}

AI void blockK(const aero_dtype t, const int T, const uint8_t *wb, const aero_block_q8_K *const *ab,
               const __m256i *pr, __m256i *isum, __m256i *msum) {
    if (t == AERO_DT_Q4_K) q45k_block(false, T, wb, ab, pr, isum, msum);
    else if (t == AERO_DT_Q5_K) q45k_block(true, T, wb, ab, pr, isum, msum);
    else if (t == AERO_DT_Q6_K) q6k_block(T, wb, ab, pr, isum, msum);
    else if (t == AERO_DT_Q3_K) q3k_block(T, wb, ab, pr, isum, msum);
    else q2k_block(T, wb, ab, pr, isum, msum);
}

// One row, one token: the aero_vec_dot of the K-quants (horizontal integer sums per block, then the row's
// float steps; the min sum subtracted at the end).
AI float dotK_one(const aero_dtype t, int64_t n, const void *vw, const void *va) {
    const aero_block_q8_K *a = va;
    const uint8_t *w = vw;
    const size_t bb = bytesK(t);
    float acc = 0.0f, accm = 0.0f;
    for (int64_t i = 0; i < n / AERO_QK_K; i++, w += bb) {
        const aero_block_q8_K *ab = a + i;
        const __m256i pr = prepK(t, ab);
        __m256i is, ms;
        blockK(t, 1, w, &ab, &pr, &is, &ms);
        acc = fma1((float)(hsum_i32(is) >> shiftK(t)), h2f(ld16(w + doffK(t))) * ab->d, acc);
        if (minK(t)) accm = fma1((float)hsum_i32(ms), h2f(ld16(w + moffK(t))) * ab->d, accm);
    }
    return minK(t) ? acc - accm : acc;
}

// The K-quant tile: R (1-8) rows x T (1-4) tokens, out[k * 8 + r]; each row block is unpacked once for the T
// tokens, the integer sums of 8 rows are reduced into row lanes and take their float steps together.
AI void tileK(const aero_dtype t, const int T, int64_t n, const void *vw, size_t rb, int R, const void *const *va,
              float *out) {
    const uint8_t *rp[8];
    tile_rows(vw, rb, R, rp);
    const size_t bb = bytesK(t);
    const bool has_min = minK(t);
    __m256 acc[8], accm[8];
#pragma GCC unroll 8
    for (int k = 0; k < T; k++) acc[k] = accm[k] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / AERO_QK_K; i++) {
        const size_t bo = (size_t)i * bb;
        if (T == 1) prefetch_next(rp[0], rb, 8 * bb, i);
        const aero_block_q8_K *ab[8];
        __m256i pr[8];
#pragma GCC unroll 8
        for (int k = 0; k < T; k++) ab[k] = (const aero_block_q8_K *)va[k] + i, pr[k] = prepK(t, ab[k]);
        __m256i is[8][8], ms[8][8];
#pragma GCC unroll 1 // one row at a time: the 8-row body unrolled measured slower (its size)
        for (int r = 0; r < 8; r++) {
            __m256i ir[8], mr[8];
            blockK(t, T, rp[r] + bo, ab, pr, ir, mr);
#pragma GCC unroll 8
            for (int k = 0; k < T; k++) is[k][r] = ir[k], ms[k][r] = mr[k];
        }
        __m256 dv, mv = _mm256_setzero_ps();
        if (has_min) f16x2_rows(rp, bo + doffK(t), &dv, &mv); // dmin follows d
        else dv = f16_rows(rp, bo + doffK(t));
#pragma GCC unroll 8
        for (int k = 0; k < T; k++) {
            const __m256 ad = _mm256_broadcast_ss(&ab[k]->d);
            const __m256i total = shiftK(t) ? _mm256_srai_epi32(reduce8(is[k]), shiftK(t)) : reduce8(is[k]);
            acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(total), _mm256_mul_ps(dv, ad), acc[k]);
            if (has_min)
                accm[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(reduce8(ms[k])), _mm256_mul_ps(mv, ad), accm[k]);
        }
    }
#pragma GCC unroll 8
    for (int k = 0; k < T; k++) _mm256_storeu_ps(out + 8 * k, has_min ? _mm256_sub_ps(acc[k], accm[k]) : acc[k]);
}

// ---- packed tiles: 8 rows unpacked once per tile of tokens ---------------------------------------------
// A batch reuses each 8-row tile for many tokens, so the unpacking (nibbles, fifth bits, scales, the transpose
// into row lanes) is paid once per tile: the rows go into a buffer laid out for the multiply, vector c of a
// 32-element group holding its 4-element subgroup c of the 8 rows, one row per 32-bit lane. A token then
// broadcasts its 4 codes of that subgroup (a load, no shuffle) and one maddubs gives the 8 rows' pair sums
// in their lanes: 8 maddubs and 7 16-bit adds per 8 rows x 32 products, no transpose and no horizontal sum.
// The integers are the tiles' exact sums and the float steps the same instructions, so every lane has the
// bits of mm_tile8 (and of the one-row dot).

// The 8 vectors of one 32-element group of 8 rows (u[r]: row r's 32 codes in element order), subgroup order.
AI void pack_group(const __m256i u[8], __m256i *dst) {
    __m256i lo[4], hi[4];
    transpose32(u, lo, hi);
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        _mm256_store_si256(dst + j, _mm256_permute2x128_si256(lo[j], hi[j], 0x20));
        _mm256_store_si256(dst + j + 4, _mm256_permute2x128_si256(lo[j], hi[j], 0x31));
    }
}

// The 4 codes of subgroup j of a token's 32, in every 32-bit lane (a broadcast load).
AI __m256i bcast4(const int8_t *aq, int j) {
    int32_t a4;
    memcpy(&a4, aq + 4 * j, 4);
    return _mm256_set1_epi32(a4);
}

// Subgroups [first, first + count) of a packed group (c: 8 subgroup vectors) times T tokens' 32 codes aq[k],
// added into 16-bit pair sums s16[k] of the 8 rows (exact: at most 8 subgroups x 2 x 15 x 127 for 4-bit codes,
// 4 subgroups for 5-bit). Each weight vector is loaded once for the T tokens.
AI void group16(const int T, const __m256i *c, const int8_t *const *aq, const int first, const int count,
                __m256i *s16) {
#pragma GCC unroll 8
    for (int j = first; j < first + count; j++) {
        const __m256i wv = _mm256_load_si256(c + j);
#pragma GCC unroll 4
        for (int k = 0; k < T; k++) {
            s16[k] = _mm256_add_epi16(s16[k], _mm256_maddubs_epi16(wv, bcast4(aq[k], j)));
            __asm__("" : "+x"(s16[k])); // keeps the chain: GCC's reassociation computes all products first, spilling
        }
    }
}

// 32-element block types: per block the 8 code vectors, then the 8 rows' scales (and mins) as f32.
typedef struct {
    __m256i c[8];
    float d[8], m[8];
} pk32;
_Static_assert(sizeof(pk32) == 320, "packed 32-block size");

static size_t pack_bytes32(int64_t n) { return (size_t)(n / AERO_QK) * sizeof(pk32); }

// Unpacks R (1-8) rows of a 32-block type (not Q8_0, whose signed codes keep the tile) into pk32 blocks.
AI void pack_rows32(const aero_dtype t, int64_t n, const void *vw, size_t rb, int R, void *vp) {
    const uint8_t *rp[8];
    tile_rows(vw, rb, R, rp);
    pk32 *p = vp;
    const size_t bb = bytes32(t);
    for (int64_t i = 0; i < n / AERO_QK; i++, p++) {
        const size_t bo = (size_t)i * bb;
        __m256i u[8];
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) u[r] = codes32(t, rp[r] + bo);
        pack_group(u, p->c);
        _mm256_store_ps(p->d, f16_rows(rp, bo));
        if (min32(t)) _mm256_store_ps(p->m, f16_rows(rp, bo + 2));
    }
}

// T (1-4) tokens over a packed tile of a 32-block type: tile32's integers and float steps, out[k * 8 + r].
AI void packed32(const aero_dtype t, const int T, int64_t n, const void *vp, const void *const *va, float *out) {
    const pk32 *p = vp;
    const q8p *a[4];
#pragma GCC unroll 4
    for (int k = 0; k < T; k++) a[k] = va[k];
    const bool has_min = min32(t), five = t == AERO_DT_Q5_0 || t == AERO_DT_Q5_1;
    __m256 acc[4];
#pragma GCC unroll 4
    for (int k = 0; k < T; k++) acc[k] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / AERO_QK; i++, p++) {
        const __m256 dv = _mm256_load_ps(p->d);
        const int8_t *aq[4];
        __m256i s16[4], is[4];
#pragma GCC unroll 4
        for (int k = 0; k < T; k++) aq[k] = a[k][i].qs, s16[k] = _mm256_setzero_si256();
        if (five) { // 5-bit codes: 16-bit pair sums of 4 subgroups at most
            group16(T, p->c, aq, 0, 4, s16);
#pragma GCC unroll 4
            for (int k = 0; k < T; k++) is[k] = madd1(s16[k]), s16[k] = _mm256_setzero_si256();
            group16(T, p->c, aq, 4, 4, s16);
#pragma GCC unroll 4
            for (int k = 0; k < T; k++) is[k] = _mm256_add_epi32(is[k], madd1(s16[k]));
        } else { // two runs of 4 subgroups (short add chains; GCC spills the 8-deep one), added in 16 bits
            __m256i s2[4];
            group16(T, p->c, aq, 0, 4, s16);
#pragma GCC unroll 4
            for (int k = 0; k < T; k++) s2[k] = _mm256_setzero_si256();
            group16(T, p->c, aq, 4, 4, s2);
#pragma GCC unroll 4
            for (int k = 0; k < T; k++) is[k] = madd1(_mm256_add_epi16(s16[k], s2[k]));
        }
#pragma GCC unroll 4
        for (int k = 0; k < T; k++) {
            const q8p *ak = a[k] + i;
            if (!has_min) is[k] = _mm256_sub_epi32(is[k], _mm256_set1_epi32(ak->s));
            const __m256 da = _mm256_broadcast_ss(&ak->d);
            acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is[k]), _mm256_mul_ps(dv, da), acc[k]);
            if (has_min)
                acc[k] = _mm256_fmadd_ps(_mm256_set1_ps((float)ak->s), _mm256_mul_ps(_mm256_load_ps(p->m), da), acc[k]);
        }
    }
#pragma GCC unroll 4
    for (int k = 0; k < T; k++) _mm256_storeu_ps(out + 8 * k, acc[k]);
}

// Q4_K / Q5_K: per 256-element block the 8 groups' code vectors, each group's scale and min of the 8 rows
// as 16-bit pairs (lane r: row r's value twice, for madd with pair sums), and d and dmin as f32.
typedef struct {
    __m256i c[64];
    __m256i sc[8], mn[8];
    float d[8], dm[8];
} pkK;
_Static_assert(sizeof(pkK) == 2624, "packed K-quant block size");

static size_t pack_bytesK(int64_t n) { return (size_t)(n / AERO_QK_K) * sizeof(pkK); }

// Unpacks R (1-8) rows of Q4_K or Q5_K into pkK blocks.
AI void packK45(const bool five, int64_t n, const void *vw, size_t rb, int R, void *vp) {
    const uint8_t *rp[8];
    tile_rows(vw, rb, R, rp);
    pkK *p = vp;
    const size_t bb = five ? sizeof(aero_block_q5_K) : sizeof(aero_block_q4_K);
    const size_t qs_off = five ? offsetof(aero_block_q5_K, qs) : offsetof(aero_block_q4_K, qs);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int64_t i = 0; i < n / AERO_QK_K; i++, p++) {
        const size_t bo = (size_t)i * bb;
        int32_t sc[8][8], mn[8][8]; // [group][row]
        for (int r = 0; r < 8; r++) {
            uint8_t sm[16];
            q4k_unpack(rp[r] + bo + offsetof(aero_block_q4_K, scales), sm);
            for (int g = 0; g < 8; g++) sc[g][r] = sm[g] * 0x10001, mn[g][r] = sm[8 + g] * 0x10001;
        }
        for (int g = 0; g < 8; g++) {
            _mm256_store_si256(p->sc + g, _mm256_loadu_si256((const void *)sc[g]));
            _mm256_store_si256(p->mn + g, _mm256_loadu_si256((const void *)mn[g]));
        }
        for (int q = 0; q < 4; q++) { // qs bytes 32q.. hold group 2q (low nibbles) and 2q+1 (high)
            __m256i ulo[8], uhi[8];
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++) {
                __m256i v = _mm256_loadu_si256((const void *)(rp[r] + bo + qs_off + 32 * q));
                ulo[r] = _mm256_and_si256(v, m4), uhi[r] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
                if (five) {
                    __m256i hb = _mm256_loadu_si256((const void *)(rp[r] + bo + offsetof(aero_block_q5_K, qh)));
                    const __m256i b0 = _mm256_set1_epi8((char)(1 << (2 * q))), b1 = _mm256_set1_epi8((char)(1 << (2 * q + 1)));
                    ulo[r] = _mm256_or_si256(
                        ulo[r], _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hb, b0), b0), _mm256_set1_epi8(16)));
                    uhi[r] = _mm256_or_si256(
                        uhi[r], _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hb, b1), b1), _mm256_set1_epi8(16)));
                }
            }
            pack_group(ulo, p->c + 8 * (2 * q));
            pack_group(uhi, p->c + 8 * (2 * q + 1));
        }
        _mm256_store_ps(p->d, f16_rows(rp, bo));
        _mm256_store_ps(p->dm, f16_rows(rp, bo + 2));
    }
}

// T (1-4) tokens over a packed Q4_K/Q5_K tile: tileK's integers (scaled group sums; mins times the activation
// group sums) and float steps, out[k * 8 + r].
AI void packedK45(const bool five, const int T, int64_t n, const void *vp, const void *const *va, float *out) {
    const pkK *p = vp;
    __m256 acc[4], accm[4];
#pragma GCC unroll 4
    for (int k = 0; k < T; k++) acc[k] = accm[k] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / AERO_QK_K; i++, p++) {
        const aero_block_q8_K *ab[4];
        __m256i is[4], ms[4];
#pragma GCC unroll 4
        for (int k = 0; k < T; k++) {
            ab[k] = (const aero_block_q8_K *)va[k] + i;
            is[k] = ms[k] = _mm256_setzero_si256();
        }
#pragma GCC unroll 1
        for (int g = 0; g < 8; g++) {
            const __m256i *c = p->c + 8 * g;
            const __m256i sc = _mm256_load_si256(p->sc + g);
            const int8_t *aq[4];
            __m256i s16[4];
#pragma GCC unroll 4
            for (int k = 0; k < T; k++) aq[k] = ab[k]->qs + 32 * g, s16[k] = _mm256_setzero_si256();
            if (five) { // 5-bit codes: 16-bit pair sums of 4 subgroups at most
                group16(T, c, aq, 0, 4, s16);
#pragma GCC unroll 4
                for (int k = 0; k < T; k++)
                    is[k] = _mm256_add_epi32(is[k], _mm256_madd_epi16(s16[k], sc)), s16[k] = _mm256_setzero_si256();
                group16(T, c, aq, 4, 4, s16);
            } else { // two runs of 4 subgroups (short add chains), added in 16 bits
                __m256i s2[4];
                group16(T, c, aq, 0, 4, s16);
#pragma GCC unroll 4
                for (int k = 0; k < T; k++) s2[k] = _mm256_setzero_si256();
                group16(T, c, aq, 4, 4, s2);
#pragma GCC unroll 4
                for (int k = 0; k < T; k++) s16[k] = _mm256_add_epi16(s16[k], s2[k]);
            }
#pragma GCC unroll 4
            for (int k = 0; k < T; k++) is[k] = _mm256_add_epi32(is[k], _mm256_madd_epi16(s16[k], sc));
        }
#pragma GCC unroll 4
        for (int k = 0; k < T; k++) // the mins times the activation group sums (16-bit pairs of bsums)
#pragma GCC unroll 8
            for (int g = 0; g < 8; g++)
                ms[k] = _mm256_add_epi32(ms[k], _mm256_madd_epi16(_mm256_load_si256(p->mn + g),
                                                                  bcast4((const int8_t *)ab[k]->bsums, g)));
        const __m256 dv = _mm256_load_ps(p->d), mv = _mm256_load_ps(p->dm);
#pragma GCC unroll 4
        for (int k = 0; k < T; k++) {
            const __m256 ad = _mm256_broadcast_ss(&ab[k]->d);
            acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is[k]), _mm256_mul_ps(dv, ad), acc[k]);
            accm[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ms[k]), _mm256_mul_ps(mv, ad), accm[k]);
        }
    }
#pragma GCC unroll 4
    for (int k = 0; k < T; k++) _mm256_storeu_ps(out + 8 * k, _mm256_sub_ps(acc[k], accm[k]));
}

// Q6_K: per 256-element block the 8 groups' code vectors (6-bit codes, offset 32), each 16-element group's
// scale of the 8 rows as a 16-bit pair (lane r: row r's scale twice), the scales of groups 2p and 2p+1 as one
// pair (for the offset's correction with the activation sums of 16) and d as f32.
typedef struct {
    __m256i c[64];
    __m256i sc[16], scp[8];
    float d[8];
} pk6;
_Static_assert(sizeof(pk6) == 2848, "packed Q6_K block size");

static size_t pack_bytes6(int64_t n) { return (size_t)(n / AERO_QK_K) * sizeof(pk6); }

// The 32 codes of group G (elements 32G..) of a Q6_K block, in element order (q6k_block's unpack).
AI __m256i q6k_codes(const aero_block_q6_K *x, int G) {
    const int h = G / 4, j = G % 4;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3);
    __m256i l = _mm256_loadu_si256((const void *)(x->ql + 64 * h + 32 * (j & 1)));
    __m256i hb = _mm256_loadu_si256((const void *)(x->qh + 32 * h));
    if (j >= 2) l = _mm256_srli_epi16(l, 4);
    hb = _mm256_srli_epi16(hb, 2 * j);
    return _mm256_or_si256(_mm256_and_si256(l, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m3), 4));
}

// Unpacks R (1-8) rows of Q6_K into pk6 blocks.
static void pack_q6_K(int64_t n, const void *vw, size_t rb, int R, void *vp) {
    const uint8_t *rp[8];
    tile_rows(vw, rb, R, rp);
    pk6 *p = vp;
    for (int64_t i = 0; i < n / AERO_QK_K; i++, p++) {
        const size_t bo = (size_t)i * sizeof(aero_block_q6_K);
        int32_t sc[16][8], scp[8][8]; // [group][row]
        for (int r = 0; r < 8; r++) {
            const int8_t *s = ((const aero_block_q6_K *)(rp[r] + bo))->scales;
            for (int g = 0; g < 16; g++) sc[g][r] = (int32_t)(uint16_t)s[g] * 0x10001;
            for (int q = 0; q < 8; q++) scp[q][r] = (int32_t)((uint32_t)(uint16_t)s[2 * q] | (uint32_t)(uint16_t)s[2 * q + 1] << 16);
        }
        for (int g = 0; g < 16; g++) _mm256_store_si256(p->sc + g, _mm256_loadu_si256((const void *)sc[g]));
        for (int q = 0; q < 8; q++) _mm256_store_si256(p->scp + q, _mm256_loadu_si256((const void *)scp[q]));
        for (int G = 0; G < 8; G++) {
            __m256i u[8];
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++) u[r] = q6k_codes((const aero_block_q6_K *)(rp[r] + bo), G);
            pack_group(u, p->c + 8 * G);
        }
        _mm256_store_ps(p->d, f16_rows(rp, bo + offsetof(aero_block_q6_K, d)));
    }
}

// T (1-4) tokens over a packed Q6_K tile: q6k_block's integers (scaled sums of 16, minus 32 x the scales times
// the activation sums of 16) and tileK's float step, out[k * 8 + r]. 6-bit codes: 16-bit pair sums of 2
// subgroups at most (4 x 63 x 127).
AI void packed6(const int T, int64_t n, const void *vp, const void *const *va, float *out) {
    const pk6 *p = vp;
    __m256 acc[4];
#pragma GCC unroll 4
    for (int k = 0; k < T; k++) acc[k] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / AERO_QK_K; i++, p++) {
        const aero_block_q8_K *ab[4];
        __m256i is[4];
#pragma GCC unroll 4
        for (int k = 0; k < T; k++) ab[k] = (const aero_block_q8_K *)va[k] + i, is[k] = _mm256_setzero_si256();
#pragma GCC unroll 1
        for (int G = 0; G < 8; G++) {
            const int8_t *aq[4];
#pragma GCC unroll 4
            for (int k = 0; k < T; k++) aq[k] = ab[k]->qs + 32 * G;
#pragma GCC unroll 4
            for (int h = 0; h < 4; h++) { // subgroups 2h, 2h+1: group 2G (h < 2) or 2G + 1
                const __m256i sc = _mm256_load_si256(p->sc + 2 * G + h / 2);
                __m256i s16[4];
#pragma GCC unroll 4
                for (int k = 0; k < T; k++) s16[k] = _mm256_setzero_si256();
                group16(T, p->c + 8 * G, aq, 2 * h, 2, s16);
#pragma GCC unroll 4
                for (int k = 0; k < T; k++) is[k] = _mm256_add_epi32(is[k], _mm256_madd_epi16(s16[k], sc));
            }
        }
        const __m256 dv = _mm256_load_ps(p->d);
#pragma GCC unroll 4
        for (int k = 0; k < T; k++) {
            __m256i corr = _mm256_setzero_si256();
#pragma GCC unroll 8
            for (int q = 0; q < 8; q++)
                corr = _mm256_add_epi32(corr, _mm256_madd_epi16(_mm256_load_si256(p->scp + q),
                                                                bcast4((const int8_t *)ab[k]->bsums, q)));
            is[k] = _mm256_sub_epi32(is[k], _mm256_slli_epi32(corr, 5));
            const __m256 ad = _mm256_broadcast_ss(&ab[k]->d);
            acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is[k]), _mm256_mul_ps(dv, ad), acc[k]);
        }
    }
#pragma GCC unroll 4
    for (int k = 0; k < T; k++) _mm256_storeu_ps(out + 8 * k, acc[k]);
}

// Q8_0: signed codes, so per block the 8 rows' magnitudes (maddubs' unsigned side) and the codes themselves
// (whose signs go onto the token's codes, as tile32 does), then d as f32. A pair sum can reach 2 x 128 x 127,
// so every subgroup's pairs are widened to 32 bits at once.
typedef struct {
    __m256i mag[8], sgn[8];
    float d[8];
} pk8;
_Static_assert(sizeof(pk8) == 544, "packed Q8_0 block size");

static size_t pack_bytes8(int64_t n) { return (size_t)(n / AERO_QK) * sizeof(pk8); }

// Unpacks R (1-8) rows of Q8_0 into pk8 blocks.
static void pack_q8_0(int64_t n, const void *vw, size_t rb, int R, void *vp) {
    const uint8_t *rp[8];
    tile_rows(vw, rb, R, rp);
    pk8 *p = vp;
    for (int64_t i = 0; i < n / AERO_QK; i++, p++) {
        const size_t bo = (size_t)i * sizeof(aero_block_q8_0);
        __m256i u[8];
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) u[r] = _mm256_loadu_si256((const void *)(rp[r] + bo + 2));
        pack_group(u, p->sgn);
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            __m256i s = _mm256_load_si256(p->sgn + j);
            _mm256_store_si256(p->mag + j, _mm256_sign_epi8(s, s));
        }
        _mm256_store_ps(p->d, f16_rows(rp, bo));
    }
}

// T (1-4) tokens over a packed Q8_0 tile: tile32's integers and float step, out[k * 8 + r].
AI void packed8(const int T, int64_t n, const void *vp, const void *const *va, float *out) {
    const pk8 *p = vp;
    const q8p *a[4];
    __m256 acc[4];
#pragma GCC unroll 4
    for (int k = 0; k < T; k++) a[k] = va[k], acc[k] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / AERO_QK; i++, p++) {
        __m256i is[4];
#pragma GCC unroll 4
        for (int k = 0; k < T; k++) is[k] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            const __m256i mag = _mm256_load_si256(p->mag + j), sgn = _mm256_load_si256(p->sgn + j);
#pragma GCC unroll 4
            for (int k = 0; k < T; k++) {
                __m256i pr = _mm256_maddubs_epi16(mag, _mm256_sign_epi8(bcast4(a[k][i].qs, j), sgn));
                is[k] = _mm256_add_epi32(is[k], madd1(pr));
                __asm__("" : "+x"(is[k])); // keeps the chain (see group16)
            }
        }
        const __m256 dv = _mm256_load_ps(p->d);
#pragma GCC unroll 4
        for (int k = 0; k < T; k++)
            acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is[k]), _mm256_mul_ps(dv, _mm256_broadcast_ss(&a[k][i].d)), acc[k]);
    }
#pragma GCC unroll 4
    for (int k = 0; k < T; k++) _mm256_storeu_ps(out + 8 * k, acc[k]);
}

// Per type: the packer, and the packed kernel with T a constant per instance.
#define PACKER(sfx, CALL) \
    static void pack_##sfx(int64_t n, const void *w, size_t rb, int R, void *p) { CALL; }
#define PACKED(sfx, KERNEL_CALL)                                                                               \
    static void packed_##sfx(int64_t n, const void *p, const void *const *a, int T, float *out) {              \
        switch (T) {                                                                                           \
        case 1: KERNEL_CALL(1); break;                                                                         \
        case 2: KERNEL_CALL(2); break;                                                                         \
        case 3: KERNEL_CALL(3); break;                                                                         \
        default: KERNEL_CALL(4); break;                                                                        \
        }                                                                                                      \
    }
#define P_Q4_0(T) packed32(AERO_DT_Q4_0, T, n, p, a, out)
#define P_Q4_1(T) packed32(AERO_DT_Q4_1, T, n, p, a, out)
#define P_Q5_0(T) packed32(AERO_DT_Q5_0, T, n, p, a, out)
#define P_Q5_1(T) packed32(AERO_DT_Q5_1, T, n, p, a, out)
#define P_Q4_K(T) packedK45(false, T, n, p, a, out)
#define P_Q5_K(T) packedK45(true, T, n, p, a, out)
#define P_Q6_K(T) packed6(T, n, p, a, out)
#define P_Q8_0(T) packed8(T, n, p, a, out)
PACKER(q4_0, pack_rows32(AERO_DT_Q4_0, n, w, rb, R, p))
PACKER(q4_1, pack_rows32(AERO_DT_Q4_1, n, w, rb, R, p))
PACKER(q5_0, pack_rows32(AERO_DT_Q5_0, n, w, rb, R, p))
PACKER(q5_1, pack_rows32(AERO_DT_Q5_1, n, w, rb, R, p))
PACKER(q4_K, packK45(false, n, w, rb, R, p))
PACKER(q5_K, packK45(true, n, w, rb, R, p))
PACKED(q4_0, P_Q4_0)
PACKED(q4_1, P_Q4_1)
PACKED(q5_0, P_Q5_0)
PACKED(q5_1, P_Q5_1)
PACKED(q4_K, P_Q4_K)
PACKED(q5_K, P_Q5_K)
PACKED(q6_K, P_Q6_K)
PACKED(q8_0, P_Q8_0)
#undef PACKER
#undef PACKED
#undef P_Q4_0
#undef P_Q4_1
#undef P_Q5_0
#undef P_Q5_1
#undef P_Q4_K
#undef P_Q5_K
#undef P_Q6_K
#undef P_Q8_0

// Per type: the dot table's one-row kernel (standard blocks), matmul's one-row dot (its own activation rows,
// the 32-block types) and its tiles (R rows x T tokens, T a constant per instance).
#define INST(sfx, TYPE, ONE_FN, TILE_FN)                                                                       \
    static float dot_##sfx(int64_t n, const void *w, const void *a) { return ONE_FN(TYPE, n, w, a); }        \
    static void tile_##sfx(int64_t n, const void *w, size_t rb, int R, const void *const *a, int T, float *out) { \
        switch (T) {                                                                                           \
        case 1: TILE_FN(TYPE, 1, n, w, rb, R, a, out); break;                                                  \
        case 2: TILE_FN(TYPE, 2, n, w, rb, R, a, out); break;                                                  \
        case 3: TILE_FN(TYPE, 3, n, w, rb, R, a, out); break;                                                  \
        case 4: TILE_FN(TYPE, 4, n, w, rb, R, a, out); break;                                                  \
        case 5: TILE_FN(TYPE, 5, n, w, rb, R, a, out); break;                                                  \
        case 6: TILE_FN(TYPE, 6, n, w, rb, R, a, out); break;                                                  \
        case 7: TILE_FN(TYPE, 7, n, w, rb, R, a, out); break;                                                  \
        default: TILE_FN(TYPE, 8, n, w, rb, R, a, out); break;                                                 \
        }                                                                                                      \
    }
// The 32-block tiles keep 4 tokens in registers; 5-8 tokens are two tiles (the same bits per lane).
#define TILE32(TYPE, T, n, w, rb, R, a, out)                                                 \
    do {                                                                                     \
        if ((T) <= 4) tile32(TYPE, (T) <= 4 ? (T) : 4, n, w, rb, R, a, out);                 \
        else tile32(TYPE, 4, n, w, rb, R, a, out), tile32(TYPE, (T) > 4 ? (T) - 4 : 1, n, w, rb, R, (a) + 4, (out) + 32); \
    } while (0)
static float mm_q4_0(int64_t n, const void *w, const void *a) { return mm32_one(AERO_DT_Q4_0, n, w, a); }
static float mm_q4_1(int64_t n, const void *w, const void *a) { return mm32_one(AERO_DT_Q4_1, n, w, a); }
static float mm_q5_0(int64_t n, const void *w, const void *a) { return mm32_one(AERO_DT_Q5_0, n, w, a); }
static float mm_q5_1(int64_t n, const void *w, const void *a) { return mm32_one(AERO_DT_Q5_1, n, w, a); }
static float mm_q8_0(int64_t n, const void *w, const void *a) { return mm32_one(AERO_DT_Q8_0, n, w, a); }
INST(q4_0, AERO_DT_Q4_0, dot32_one, TILE32)
INST(q4_1, AERO_DT_Q4_1, dot32_one, TILE32)
INST(q5_0, AERO_DT_Q5_0, dot32_one, TILE32)
INST(q5_1, AERO_DT_Q5_1, dot32_one, TILE32)
INST(q8_0, AERO_DT_Q8_0, dot32_one, TILE32)
INST(q2_K, AERO_DT_Q2_K, dotK_one, tileK)
INST(q3_K, AERO_DT_Q3_K, dotK_one, tileK)
INST(q4_K, AERO_DT_Q4_K, dotK_one, tileK)
INST(q5_K, AERO_DT_Q5_K, dotK_one, tileK)
INST(q6_K, AERO_DT_Q6_K, dotK_one, tileK)
#undef INST

// Installs the AVX2 kernels over a copy of the scalar table.
void aero_kernels_fill_avx2(aero_kernel_ops *ops) {
    ops->dot[AERO_DT_F32] = dot_f32;
    ops->dot[AERO_DT_F16] = dot_f16;
    ops->dot[AERO_DT_BF16] = dot_bf16;
    ops->f16_to_f32_row = f16_to_f32_row;
    ops->f32_to_f16_row = f32_to_f16_row;
    ops->bf16_to_f32_row = bf16_to_f32_row;
    ops->quantize_q8_0 = quantize_q8_0;
    ops->quantize_q8_K = quantize_q8_K;
    ops->dot_f32_acc16 = dot_f32_acc16_avx2;
    for (int t = 0; t < AERO_DT_COUNT; t++) ops->mm_dot_multi[t] = NULL, ops->mm_tile8[t] = NULL;
    ops->act_bytes = act_bytes;
    ops->act_quantize = act_quantize;
#define SET(T, sfx, MM) ops->dot[T] = dot_##sfx, ops->mm_dot[T] = MM##_##sfx, ops->mm_tile8[T] = tile_##sfx;
    SET(AERO_DT_Q4_0, q4_0, mm)
    SET(AERO_DT_Q4_1, q4_1, mm)
    SET(AERO_DT_Q5_0, q5_0, mm)
    SET(AERO_DT_Q5_1, q5_1, mm)
    SET(AERO_DT_Q8_0, q8_0, mm)
    SET(AERO_DT_Q2_K, q2_K, dot) // standard Q8_K rows
    SET(AERO_DT_Q3_K, q3_K, dot)
    SET(AERO_DT_Q4_K, q4_K, dot)
    SET(AERO_DT_Q5_K, q5_K, dot)
    SET(AERO_DT_Q6_K, q6_K, dot)
#undef SET
    for (int t = 0; t < AERO_DT_COUNT; t++) ops->pack_bytes[t] = NULL, ops->mm_pack8[t] = NULL, ops->mm_packed[t] = NULL;
#define SETP(T, sfx, BYTES) ops->pack_bytes[T] = BYTES, ops->mm_pack8[T] = pack_##sfx, ops->mm_packed[T] = packed_##sfx;
    SETP(AERO_DT_Q4_0, q4_0, pack_bytes32)
    SETP(AERO_DT_Q4_1, q4_1, pack_bytes32)
    SETP(AERO_DT_Q5_0, q5_0, pack_bytes32)
    SETP(AERO_DT_Q5_1, q5_1, pack_bytes32)
    SETP(AERO_DT_Q4_K, q4_K, pack_bytesK)
    SETP(AERO_DT_Q5_K, q5_K, pack_bytesK)
    SETP(AERO_DT_Q6_K, q6_K, pack_bytes6)
    SETP(AERO_DT_Q8_0, q8_0, pack_bytes8)
#undef SETP
    for (int t = 0; t < AERO_DT_COUNT; t++)
        if (!ops->mm_tile8[t]) ops->mm_dot[t] = ops->dot[t];
    ops->name = "avx2";
}
