// Scalar reference kernels: element conversions, quantize and dequantize of every type, and the dot products
// with quantized activations. These define the formats; the SIMD files are checked against them.
#include <math.h>
#include <string.h>

#include "quants.h"
#include "quants_iq.h"

// ---- element conversions -------------------------------------------------------------------------------

// Exposes the exact f16 decode for callers outside the kernels.
float aero_f16_to_f32(uint16_t h) { return aero_fp16_to_fp32_inl(h); }

// Rounds to the nearest half, ties to even, as F16C's vcvtps2ph with round-to-nearest does.
uint16_t aero_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    x &= 0x7fffffffu;
    if (x > 0x7f800000u) return sign | 0x7e00 | (uint16_t)((x >> 13) & 0x3ff); // NaN stays NaN, quiet
    if (x >= 0x477ff000u) return sign | 0x7c00;                                // rounds past 65504: inf
    if (x < 0x38800000u) {                                                     // below 2^-14: subnormal
        uint32_t e = x >> 23;
        if (e < 102) return sign; // below 2^-25 (or exactly it, tie to even) rounds to zero
        uint32_t m = (x & 0x7fffffu) | 0x800000u, shift = 126 - e;
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return sign | (uint16_t)r;
    }
    uint32_t h = (x - 0x38000000u) >> 13, rem = x & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return sign | (uint16_t)h;
}

// bfloat16 is the top half of an f32.
float aero_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

// Rounds to the nearest bfloat16, ties to even; NaNs stay NaN.
uint16_t aero_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

// Next half towards +inf / -inf (for scales that must not round below / above a bound).
static uint16_t f16_next_up(uint16_t h) { return h == 0x8000 ? 1 : (h & 0x8000) ? h - 1 : h + 1; }
static uint16_t f16_next_down(uint16_t h) { return h == 0 ? 0x8001 : (h & 0x8000) ? h + 1 : h - 1; }

// The smallest half >= v: a scale rounded up keeps every element inside the code range.
static uint16_t f16_ceil(float v) {
    uint16_t h = aero_f32_to_f16(v);
    if (aero_fp16_to_fp32_inl(h) < v && (h & 0x7fff) < 0x7c00) h = f16_next_up(h);
    return h;
}

// The largest half <= v: an offset rounded down keeps the block minimum inside the code range.
static uint16_t f16_floor(float v) {
    uint16_t h = aero_f32_to_f16(v);
    if (aero_fp16_to_fp32_inl(h) > v && (h & 0x7fff) < 0x7c00) h = f16_next_down(h);
    return h;
}

// Rounds to nearest (ties to even) after clamping to [lo, hi]; NaN becomes lo. Never undefined behaviour.
static inline int nearest_clamped(float v, int lo, int hi) {
    v = fmaxf(v, (float)lo);
    v = fminf(v, (float)hi);
    return (int)lrintf(v);
}

// Smallest integer >= v, clamped to [lo, hi]; NaN becomes lo.
static inline int ceil_clamped(float v, int lo, int hi) {
    v = fmaxf(v, (float)lo);
    v = fminf(v, (float)hi);
    return (int)ceilf(v);
}

// Largest magnitude of a block (NaN ignored), the basis of every symmetric scale.
static float block_amax(const float *x, int n) {
    float amax = 0.0f;
    for (int i = 0; i < n; i++) amax = fmaxf(amax, fabsf(x[i]));
    return amax;
}

// ---- 32-element block types --------------------------------------------------------------------------------

// Q8_0 activations exactly as llama.cpp quantizes them at run time on x86 (d = amax / 127 rounded to the
// nearest half, codes round(x * 127 / amax) to even), so quantized dots see the same activation codes.
uint16_t aero_q8_0_scale(float amax, float *inv) {
    *inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    return aero_f32_to_f16(amax / 127.0f);
}

// Q8_K as ggml's quantize_row_q8_K: the scale comes from the first element of largest magnitude, signed
// (smax), iscale = -127 / smax, d = 1 / iscale; zero blocks get d = 0.
float aero_q8_K_scale(float smax, float *inv) {
    if (!(smax != 0.0f) || isnan(smax)) {
        *inv = 0.0f;
        return 0.0f;
    }
    *inv = -127.0f / smax;
    return 1.0f / *inv;
}

// The first element of largest magnitude (NaNs ignored), with its sign: what ggml bases the Q8_K scale on.
float aero_q8_K_signed_max(const float *x, int n, float amax) {
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) == amax) return x[i];
    return 0.0f;
}

// Symmetric codes: the scale is rounded up so x / d stays in [-levels - 0.5, levels + 0.5], error <= d / 2.
static void quantize_q4_0(const float *x, aero_block_q4_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += AERO_QK) {
        uint16_t d = f16_ceil(block_amax(x, AERO_QK) / 7.5f);
        float df = aero_fp16_to_fp32_inl(d), id = df > 0.0f ? 1.0f / df : 0.0f;
        y[i].d = d;
        for (int j = 0; j < 16; j++) {
            int q0 = nearest_clamped(x[j] * id, -8, 7) + 8, q1 = nearest_clamped(x[j + 16] * id, -8, 7) + 8;
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

// Asymmetric codes: the offset is rounded down and the scale up, so every element is inside the range.
static void quantize_q4_1(const float *x, aero_block_q4_1 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += AERO_QK) {
        float mn = x[0], mx = x[0];
        for (int j = 1; j < AERO_QK; j++) mn = fminf(mn, x[j]), mx = fmaxf(mx, x[j]);
        uint16_t m = f16_floor(mn);
        float mf = aero_fp16_to_fp32_inl(m);
        uint16_t d = f16_ceil((mx - mf) / 15.0f);
        float df = aero_fp16_to_fp32_inl(d), id = df > 0.0f ? 1.0f / df : 0.0f;
        y[i].d = d;
        y[i].m = m;
        for (int j = 0; j < 16; j++) {
            int q0 = nearest_clamped((x[j] - mf) * id, 0, 15), q1 = nearest_clamped((x[j + 16] - mf) * id, 0, 15);
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

// Symmetric 5-bit codes, the fifth bit of element j in bit j of qh.
static void quantize_q5_0(const float *x, aero_block_q5_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += AERO_QK) {
        uint16_t d = f16_ceil(block_amax(x, AERO_QK) / 15.5f);
        float df = aero_fp16_to_fp32_inl(d), id = df > 0.0f ? 1.0f / df : 0.0f;
        uint32_t qh = 0;
        y[i].d = d;
        for (int j = 0; j < 16; j++) {
            int q0 = nearest_clamped(x[j] * id, -16, 15) + 16, q1 = nearest_clamped(x[j + 16] * id, -16, 15) + 16;
            y[i].qs[j] = (uint8_t)((q0 & 15) | ((q1 & 15) << 4));
            qh |= (uint32_t)(q0 >> 4) << j;
            qh |= (uint32_t)(q1 >> 4) << (j + 16);
        }
        memcpy(y[i].qh, &qh, 4);
    }
}

// Asymmetric 5-bit codes (offset rounded down, scale up).
static void quantize_q5_1(const float *x, aero_block_q5_1 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += AERO_QK) {
        float mn = x[0], mx = x[0];
        for (int j = 1; j < AERO_QK; j++) mn = fminf(mn, x[j]), mx = fmaxf(mx, x[j]);
        uint16_t m = f16_floor(mn);
        float mf = aero_fp16_to_fp32_inl(m);
        uint16_t d = f16_ceil((mx - mf) / 31.0f);
        float df = aero_fp16_to_fp32_inl(d), id = df > 0.0f ? 1.0f / df : 0.0f;
        uint32_t qh = 0;
        y[i].d = d;
        y[i].m = m;
        for (int j = 0; j < 16; j++) {
            int q0 = nearest_clamped((x[j] - mf) * id, 0, 31), q1 = nearest_clamped((x[j + 16] - mf) * id, 0, 31);
            y[i].qs[j] = (uint8_t)((q0 & 15) | ((q1 & 15) << 4));
            qh |= (uint32_t)(q0 >> 4) << j;
            qh |= (uint32_t)(q1 >> 4) << (j + 16);
        }
        memcpy(y[i].qh, &qh, 4);
    }
}

// Q8_0 as llama.cpp quantizes activations (also used for Q8_0 weights).
void aero_quantize_q8_0_ref(const float *x, void *vy, int64_t n) {
    aero_block_q8_0 *y = vy;
    for (int64_t i = 0; i < n / AERO_QK; i++, x += AERO_QK) {
        float id;
        y[i].d = aero_q8_0_scale(block_amax(x, AERO_QK), &id);
        for (int j = 0; j < AERO_QK; j++) y[i].qs[j] = (int8_t)nearest_clamped(x[j] * id, -127, 127);
    }
}

// ---- K-quants ------------------------------------------------------------------------------------------

// Asymmetric K-quant super-block: per group g of gs elements, x ~ d * sc[g] * q - dmin * m[g] with q in
// [0, qmax] and sc, m in [0, smax]. Mins are rounded up and scales up, so every element lies in its group's
// range and the error is at most half the group's step.
static void kquant_asym(const float *x, int ngroups, int gs, int qmax, int smax, uint16_t *d_out, uint16_t *dmin_out,
                        uint8_t *sc, uint8_t *m, uint8_t *q) {
    float need_m[16], need_s[16], max_m = 0.0f, max_s = 0.0f;
    for (int g = 0; g < ngroups; g++) {
        float mn = 0.0f;
        for (int l = 0; l < gs; l++) mn = fminf(mn, x[g * gs + l]);
        need_m[g] = -mn;
        max_m = fmaxf(max_m, need_m[g]);
    }
    uint16_t dmin = f16_ceil(max_m / (float)smax);
    float dminf = aero_fp16_to_fp32_inl(dmin);
    for (int g = 0; g < ngroups; g++) {
        m[g] = (uint8_t)(dminf > 0.0f ? ceil_clamped(need_m[g] / dminf, 0, smax) : 0);
        float off = dminf * (float)m[g], mx = -off;
        for (int l = 0; l < gs; l++) mx = fmaxf(mx, x[g * gs + l]);
        need_s[g] = (mx + off) / (float)qmax;
        max_s = fmaxf(max_s, need_s[g]);
    }
    uint16_t d = f16_ceil(max_s / (float)smax);
    float df = aero_fp16_to_fp32_inl(d);
    for (int g = 0; g < ngroups; g++) {
        sc[g] = (uint8_t)(df > 0.0f ? ceil_clamped(need_s[g] / df, 0, smax) : 0);
        float step = df * (float)sc[g], off = dminf * (float)m[g], id = step > 0.0f ? 1.0f / step : 0.0f;
        for (int l = 0; l < gs; l++) q[g * gs + l] = (uint8_t)nearest_clamped((x[g * gs + l] + off) * id, 0, qmax);
    }
    *d_out = d;
    *dmin_out = dmin;
}

// Symmetric K-quant super-block: x ~ d * sc[g] * q with q in [-qneg, qneg - 1] and sc in [0, smax].
static void kquant_sym(const float *x, int ngroups, int gs, int qneg, int smax, uint16_t *d_out, uint8_t *sc,
                       int8_t *q) {
    float need_s[16], max_s = 0.0f;
    for (int g = 0; g < ngroups; g++) {
        need_s[g] = block_amax(x + g * gs, gs) / ((float)qneg - 0.5f);
        max_s = fmaxf(max_s, need_s[g]);
    }
    uint16_t d = f16_ceil(max_s / (float)smax);
    float df = aero_fp16_to_fp32_inl(d);
    for (int g = 0; g < ngroups; g++) {
        sc[g] = (uint8_t)(df > 0.0f ? ceil_clamped(need_s[g] / df, 0, smax) : 0);
        float step = df * (float)sc[g], id = step > 0.0f ? 1.0f / step : 0.0f;
        for (int l = 0; l < gs; l++) q[g * gs + l] = (int8_t)nearest_clamped(x[g * gs + l] * id, -qneg, qneg - 1);
    }
    *d_out = d;
}

// 2-bit codes in 16 groups of 16 with 4-bit scales and mins.
static void quantize_q2_K(const float *x, aero_block_q2_K *y, int64_t nb) {
    uint8_t sc[16], m[16], q[256];
    for (int64_t i = 0; i < nb; i++, x += AERO_QK_K) {
        kquant_asym(x, 16, 16, 3, 15, &y[i].d, &y[i].dmin, sc, m, q);
        for (int g = 0; g < 16; g++) y[i].scales[g] = (uint8_t)(sc[g] | (m[g] << 4));
        memset(y[i].qs, 0, sizeof y[i].qs);
        for (int e = 0; e < 256; e++) {
            int h = e >> 7, k = (e >> 5) & 3, l = e & 31;
            y[i].qs[32 * h + l] |= (uint8_t)(q[e] << (2 * k));
        }
    }
}

// 3-bit codes (2 bits in qs, 1 in hmask) with 6-bit signed scales packed in 12 bytes.
static void quantize_q3_K(const float *x, aero_block_q3_K *y, int64_t nb) {
    uint8_t sc[16];
    int8_t q[256];
    for (int64_t i = 0; i < nb; i++, x += AERO_QK_K) {
        kquant_sym(x, 16, 16, 4, 31, &y[i].d, sc, q);
        memset(y[i].scales, 0, sizeof y[i].scales);
        for (int j = 0; j < 16; j++) {
            int v = sc[j] + 32; // stored biased by 32
            if (j < 8) y[i].scales[j] |= (uint8_t)(v & 0xF);
            else y[i].scales[j - 8] |= (uint8_t)((v & 0xF) << 4);
            y[i].scales[8 + (j & 3)] |= (uint8_t)(((v >> 4) & 3) << (2 * (j >> 2)));
        }
        memset(y[i].qs, 0, sizeof y[i].qs);
        memset(y[i].hmask, 0, sizeof y[i].hmask);
        for (int e = 0; e < 256; e++) {
            int h = e >> 7, k = (e >> 5) & 3, l = e & 31, u = q[e] + 4; // u in 0..7: high bit set means q >= 0
            y[i].qs[32 * h + l] |= (uint8_t)((u & 3) << (2 * k));
            if (u & 4) y[i].hmask[l] |= (uint8_t)(1 << (4 * h + k));
        }
    }
}

// Packs the 6-bit scales and mins of a Q4_K/Q5_K block (inverse of aero_q4k_scale_min).
static void pack_q4k_scales(const uint8_t *sc, const uint8_t *m, uint8_t *out) {
    for (int j = 0; j < 4; j++) {
        out[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
        out[j + 4] = (uint8_t)(m[j] | ((m[j + 4] >> 4) << 6));
        out[j + 8] = (uint8_t)((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
    }
}

// 4-bit codes in 8 groups of 32 with 6-bit scales and mins.
static void quantize_q4_K(const float *x, aero_block_q4_K *y, int64_t nb) {
    uint8_t sc[8], m[8], q[256];
    for (int64_t i = 0; i < nb; i++, x += AERO_QK_K) {
        kquant_asym(x, 8, 32, 15, 63, &y[i].d, &y[i].dmin, sc, m, q);
        pack_q4k_scales(sc, m, y[i].scales);
        for (int p = 0; p < 4; p++)
            for (int l = 0; l < 32; l++) y[i].qs[32 * p + l] = (uint8_t)(q[64 * p + l] | (q[64 * p + 32 + l] << 4));
    }
}

// As Q4_K with a fifth bit per element in qh.
static void quantize_q5_K(const float *x, aero_block_q5_K *y, int64_t nb) {
    uint8_t sc[8], m[8], q[256];
    for (int64_t i = 0; i < nb; i++, x += AERO_QK_K) {
        kquant_asym(x, 8, 32, 31, 63, &y[i].d, &y[i].dmin, sc, m, q);
        pack_q4k_scales(sc, m, y[i].scales);
        memset(y[i].qh, 0, sizeof y[i].qh);
        for (int p = 0; p < 4; p++)
            for (int l = 0; l < 32; l++) {
                int a = q[64 * p + l], b = q[64 * p + 32 + l];
                y[i].qs[32 * p + l] = (uint8_t)((a & 15) | ((b & 15) << 4));
                y[i].qh[l] |= (uint8_t)(((a >> 4) << (2 * p)) | ((b >> 4) << (2 * p + 1)));
            }
    }
}

// 6-bit codes (4 in ql, 2 in qh) in 16 groups of 16 with 8-bit scales.
static void quantize_q6_K(const float *x, aero_block_q6_K *y, int64_t nb) {
    uint8_t sc[16];
    int8_t q[256];
    for (int64_t i = 0; i < nb; i++, x += AERO_QK_K) {
        kquant_sym(x, 16, 16, 32, 127, &y[i].d, sc, q);
        for (int g = 0; g < 16; g++) y[i].scales[g] = (int8_t)sc[g];
        memset(y[i].qh, 0, sizeof y[i].qh);
        for (int e = 0; e < 256; e++) {
            int h = e >> 7, k = (e >> 5) & 3, l = e & 31, u = q[e] + 32;
            uint8_t *ql = &y[i].ql[64 * h + l + 32 * (k & 1)];
            if (k < 2) *ql = (uint8_t)((*ql & 0xF0) | (u & 15));
            else *ql = (uint8_t)((*ql & 0x0F) | ((u & 15) << 4));
            y[i].qh[32 * h + l] |= (uint8_t)((u >> 4) << (2 * k));
        }
    }
}

// Q8_K as ggml's quantize_row_q8_K, with the group sums the K-quant dots use for mins and offsets.
void aero_quantize_q8_K_ref(const float *x, void *vy, int64_t n) {
    aero_block_q8_K *y = vy;
    for (int64_t i = 0; i < n / AERO_QK_K; i++, x += AERO_QK_K) {
        float id;
        float amax = block_amax(x, AERO_QK_K);
        y[i].d = aero_q8_K_scale(aero_q8_K_signed_max(x, AERO_QK_K, amax), &id);
        for (int j = 0; j < AERO_QK_K; j++) y[i].qs[j] = (int8_t)nearest_clamped(x[j] * id, -127, 127);
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += y[i].qs[16 * g + l];
            y[i].bsums[g] = (int16_t)s;
        }
    }
}

// ---- unpacking (shared by dequantize and the scalar dots) ---------------------------------------------

// Integer codes of one 32-block: x[j] = d * q[j] + m (m = 0 for the symmetric types).
static void unpack32(aero_dtype t, const uint8_t *b, int8_t q[32], float *d, float *m) {
    *m = 0.0f;
    switch (t) {
    case AERO_DT_Q4_0: {
        const aero_block_q4_0 *x = (const void *)b;
        *d = aero_fp16_to_fp32_inl(x->d);
        for (int j = 0; j < 16; j++) q[j] = (int8_t)((x->qs[j] & 15) - 8), q[j + 16] = (int8_t)((x->qs[j] >> 4) - 8);
        break;
    }
    case AERO_DT_Q4_1: {
        const aero_block_q4_1 *x = (const void *)b;
        *d = aero_fp16_to_fp32_inl(x->d);
        *m = aero_fp16_to_fp32_inl(x->m);
        for (int j = 0; j < 16; j++) q[j] = (int8_t)(x->qs[j] & 15), q[j + 16] = (int8_t)(x->qs[j] >> 4);
        break;
    }
    case AERO_DT_Q5_0: {
        const aero_block_q5_0 *x = (const void *)b;
        uint32_t qh;
        memcpy(&qh, x->qh, 4);
        *d = aero_fp16_to_fp32_inl(x->d);
        for (int j = 0; j < 16; j++) {
            q[j] = (int8_t)(((x->qs[j] & 15) | (((qh >> j) & 1) << 4)) - 16);
            q[j + 16] = (int8_t)(((x->qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16);
        }
        break;
    }
    case AERO_DT_Q5_1: {
        const aero_block_q5_1 *x = (const void *)b;
        uint32_t qh;
        memcpy(&qh, x->qh, 4);
        *d = aero_fp16_to_fp32_inl(x->d);
        *m = aero_fp16_to_fp32_inl(x->m);
        for (int j = 0; j < 16; j++) {
            q[j] = (int8_t)((x->qs[j] & 15) | (((qh >> j) & 1) << 4));
            q[j + 16] = (int8_t)((x->qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
        }
        break;
    }
    default: { // Q8_0
        const aero_block_q8_0 *x = (const void *)b;
        *d = aero_fp16_to_fp32_inl(x->d);
        memcpy(q, x->qs, 32);
        break;
    }
    }
}

// Integer codes of one K-quant super-block: x[e] = d * sc[g] * q[e] - dmin * mn[g] with g = e / gs.
// Returns gs (16 or 32).
static int unpack_k(aero_dtype t, const uint8_t *b, int8_t q[256], int sc[16], int mn[16], float *d, float *dmin) {
    *dmin = 0.0f;
    switch (t) {
    case AERO_DT_Q2_K: {
        const aero_block_q2_K *x = (const void *)b;
        *d = aero_fp16_to_fp32_inl(x->d);
        *dmin = aero_fp16_to_fp32_inl(x->dmin);
        for (int g = 0; g < 16; g++) sc[g] = x->scales[g] & 15, mn[g] = x->scales[g] >> 4;
        for (int e = 0; e < 256; e++) {
            int h = e >> 7, k = (e >> 5) & 3, l = e & 31;
            q[e] = (int8_t)((x->qs[32 * h + l] >> (2 * k)) & 3);
        }
        return 16;
    }
    case AERO_DT_Q3_K: {
        const aero_block_q3_K *x = (const void *)b;
        int8_t s[16];
        aero_q3k_scales(x->scales, s);
        *d = aero_fp16_to_fp32_inl(x->d);
        for (int g = 0; g < 16; g++) sc[g] = s[g], mn[g] = 0;
        for (int e = 0; e < 256; e++) {
            int h = e >> 7, k = (e >> 5) & 3, l = e & 31;
            int lo = (x->qs[32 * h + l] >> (2 * k)) & 3, hi = (x->hmask[l] >> (4 * h + k)) & 1;
            q[e] = (int8_t)(lo - (hi ? 0 : 4));
        }
        return 16;
    }
    case AERO_DT_Q4_K:
    case AERO_DT_Q5_K: {
        const uint8_t *scales, *qs, *qh = NULL;
        if (t == AERO_DT_Q4_K) {
            const aero_block_q4_K *x = (const void *)b;
            *d = aero_fp16_to_fp32_inl(x->d);
            *dmin = aero_fp16_to_fp32_inl(x->dmin);
            scales = x->scales, qs = x->qs;
        } else {
            const aero_block_q5_K *x = (const void *)b;
            *d = aero_fp16_to_fp32_inl(x->d);
            *dmin = aero_fp16_to_fp32_inl(x->dmin);
            scales = x->scales, qs = x->qs, qh = x->qh;
        }
        for (int g = 0; g < 8; g++) {
            uint8_t s, m;
            aero_q4k_scale_min(g, scales, &s, &m);
            sc[g] = s, mn[g] = m;
        }
        for (int e = 0; e < 256; e++) {
            int p = e >> 6, s = (e >> 5) & 1, l = e & 31;
            int v = (qs[32 * p + l] >> (4 * s)) & 15;
            if (qh) v |= ((qh[l] >> (2 * p + s)) & 1) << 4;
            q[e] = (int8_t)v;
        }
        return 32;
    }
    case AERO_DT_Q6_K: {
        const aero_block_q6_K *x = (const void *)b;
        *d = aero_fp16_to_fp32_inl(x->d);
        for (int g = 0; g < 16; g++) sc[g] = x->scales[g], mn[g] = 0;
        for (int e = 0; e < 256; e++) {
            int h = e >> 7, k = (e >> 5) & 3, l = e & 31;
            int lo = (x->ql[64 * h + l + 32 * (k & 1)] >> (4 * (k >> 1))) & 15;
            int hi = (x->qh[32 * h + l] >> (2 * k)) & 3;
            q[e] = (int8_t)((lo | (hi << 4)) - 32);
        }
        return 16;
    }
    default: { // Q8_K
        const aero_block_q8_K *x = (const void *)b;
        *d = x->d;
        for (int g = 0; g < 16; g++) sc[g] = 1, mn[g] = 0;
        memcpy(q, x->qs, 256);
        return 16;
    }
    }
}

// Types with 256-element super-blocks.
static bool is_k_quant(aero_dtype t) {
    return t == AERO_DT_Q2_K || t == AERO_DT_Q3_K || t == AERO_DT_Q4_K || t == AERO_DT_Q5_K || t == AERO_DT_Q6_K ||
           t == AERO_DT_Q8_K;
}

// Types with 32-element blocks.
static bool is_32_quant(aero_dtype t) {
    return t == AERO_DT_Q4_0 || t == AERO_DT_Q4_1 || t == AERO_DT_Q5_0 || t == AERO_DT_Q5_1 || t == AERO_DT_Q8_0;
}

// ---- public quantize / dequantize ---------------------------------------------------------------------

// True when the kernels handle type t with rows of n elements.
static bool row_ok(aero_dtype t, int64_t n) {
    const aero_dtype_info *info = aero_dtype_get((uint32_t)t);
    return info && info->computable && n >= 0 && n % info->block == 0;
}

// Quantizes a row with the scalar reference rounding; does nothing for a type or length it cannot handle.
void aero_quantize_row(aero_dtype t, const float *x, void *y, int64_t n) {
    if (!row_ok(t, n)) return;
    switch (t) {
    case AERO_DT_F32: memmove(y, x, (size_t)n * 4); break;
    case AERO_DT_F16:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)y)[i] = aero_f32_to_f16(x[i]);
        break;
    case AERO_DT_BF16:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)y)[i] = aero_f32_to_bf16(x[i]);
        break;
    case AERO_DT_Q4_0: quantize_q4_0(x, y, n / AERO_QK); break;
    case AERO_DT_Q4_1: quantize_q4_1(x, y, n / AERO_QK); break;
    case AERO_DT_Q5_0: quantize_q5_0(x, y, n / AERO_QK); break;
    case AERO_DT_Q5_1: quantize_q5_1(x, y, n / AERO_QK); break;
    case AERO_DT_Q8_0: aero_quantize_q8_0_ref(x, y, n); break;
    case AERO_DT_Q2_K: quantize_q2_K(x, y, n / AERO_QK_K); break;
    case AERO_DT_Q3_K: quantize_q3_K(x, y, n / AERO_QK_K); break;
    case AERO_DT_Q4_K: quantize_q4_K(x, y, n / AERO_QK_K); break;
    case AERO_DT_Q5_K: quantize_q5_K(x, y, n / AERO_QK_K); break;
    case AERO_DT_Q6_K: quantize_q6_K(x, y, n / AERO_QK_K); break;
    case AERO_DT_Q8_K: aero_quantize_q8_K_ref(x, y, n); break;
    default: aero_iq_quantize_row(t, x, y, n); break;
    }
}

// Dequantizes a row; a type or length the kernels cannot handle gives zeros (when n is usable).
void aero_dequantize_row_ref(aero_dtype t, const void *vx, float *y, int64_t n) {
    if (!row_ok(t, n)) {
        if (n > 0) memset(y, 0, (size_t)n * sizeof *y);
        return;
    }
    const uint8_t *x = vx;
    if (t == AERO_DT_F32) {
        memmove(y, x, (size_t)n * 4);
    } else if (t == AERO_DT_F16) {
        for (int64_t i = 0; i < n; i++) y[i] = aero_fp16_to_fp32_inl(((const uint16_t *)x)[i]);
    } else if (t == AERO_DT_BF16) {
        for (int64_t i = 0; i < n; i++) y[i] = aero_bf16_to_f32(((const uint16_t *)x)[i]);
    } else if (is_32_quant(t)) {
        size_t bb = aero_dtype_get(t)->block_bytes;
        int8_t q[32];
        float d, m;
        for (int64_t i = 0; i < n / AERO_QK; i++, x += bb, y += AERO_QK) {
            unpack32(t, x, q, &d, &m);
            if (t == AERO_DT_Q4_1 || t == AERO_DT_Q5_1)
                for (int j = 0; j < AERO_QK; j++) y[j] = (float)q[j] * d + m;
            else // no offset: adding +0 would turn ggml's -0 into +0
                for (int j = 0; j < AERO_QK; j++) y[j] = (float)q[j] * d;
        }
    } else if (aero_iq_type(t)) {
        aero_iq_dequantize_row(t, x, y, n);
    } else if (is_k_quant(t)) {
        size_t bb = aero_dtype_get(t)->block_bytes;
        int8_t q[256];
        int sc[16], mn[16];
        float d, dmin;
        for (int64_t i = 0; i < n / AERO_QK_K; i++, x += bb, y += AERO_QK_K) {
            int gs = unpack_k(t, x, q, sc, mn, &d, &dmin);
            for (int g = 0; g < AERO_QK_K / gs; g++) {
                float dl = d * (float)sc[g], ml = dmin * (float)mn[g];
                for (int l = 0; l < gs; l++) y[g * gs + l] = dl * (float)q[g * gs + l] - ml;
            }
        }
    }
}

// ---- scalar dot products -------------------------------------------------------------------------------

// The reference 16-lane accumulation that every ISA reproduces bit for bit.
void aero_dot_f32_acc16_ref(float acc[16], const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i += 16)
        for (int k = 0; k < 16; k++) acc[k] = acc[k] + a[i + k] * b[i + k];
}

// The fixed-order f32 dot: 16 lanes, then the tail into lanes 0.., then a fixed reduction tree.
float aero_dot_f32_ref(int64_t n, const float *a, const float *b) {
    float acc[16] = {0};
    int64_t n16 = n & ~(int64_t)15;
    aero_dot_f32_acc16_ref(acc, a, b, n16);
    for (int64_t i = n16; i < n; i++) acc[i - n16] = acc[i - n16] + a[i] * b[i];
    return aero_reduce16(acc);
}

static float dot_f32(int64_t n, const void *w, const void *a) { return aero_dot_f32_ref(n, w, a); }

// F16 x F16 and BF16 x BF16: products of halves are exact in f32, so the 16-lane order fixes the result.
static float dot_f16(int64_t n, const void *vw, const void *va) {
    const uint16_t *w = vw, *a = va;
    float acc[16] = {0};
    int64_t n16 = n & ~(int64_t)15;
    for (int64_t i = 0; i < n16; i += 16)
        for (int k = 0; k < 16; k++)
            acc[k] = acc[k] + aero_fp16_to_fp32_inl(w[i + k]) * aero_fp16_to_fp32_inl(a[i + k]);
    for (int64_t i = n16; i < n; i++)
        acc[i - n16] = acc[i - n16] + aero_fp16_to_fp32_inl(w[i]) * aero_fp16_to_fp32_inl(a[i]);
    return aero_reduce16(acc);
}

// BF16 x BF16 in the fixed 16-lane order (products are exact).
static float dot_bf16(int64_t n, const void *vw, const void *va) {
    const uint16_t *w = vw, *a = va;
    float acc[16] = {0};
    int64_t n16 = n & ~(int64_t)15;
    for (int64_t i = 0; i < n16; i += 16)
        for (int k = 0; k < 16; k++) acc[k] = acc[k] + aero_bf16_to_f32(w[i + k]) * aero_bf16_to_f32(a[i + k]);
    for (int64_t i = n16; i < n; i++) acc[i - n16] = acc[i - n16] + aero_bf16_to_f32(w[i]) * aero_bf16_to_f32(a[i]);
    return aero_reduce16(acc);
}

// 32-block weights with Q8_0 activations: exact integer sums per block, then the row-lane order every ISA
// reproduces bit for bit: one fused multiply-add per block into one accumulator per row (a second one for the
// min of Q4_1/Q5_1), blocks in order. A SIMD tile then holds 8 rows in 8 lanes, each lane this exact sequence.
static float dot_32(aero_dtype t, int64_t n, const void *vw, const void *va) {
    const uint8_t *w = vw;
    const aero_block_q8_0 *a = va;
    size_t bb = aero_dtype_get(t)->block_bytes;
    const bool has_min = t == AERO_DT_Q4_1 || t == AERO_DT_Q5_1;
    float sum = 0.0f;
    int8_t q[32];
    for (int64_t i = 0; i < n / AERO_QK; i++, w += bb) {
        float d, m;
        unpack32(t, w, q, &d, &m);
        int isum = 0, asum = 0;
        for (int j = 0; j < 32; j++) isum += q[j] * a[i].qs[j], asum += a[i].qs[j];
        float da = aero_fp16_to_fp32_inl(a[i].d);
        sum = fmaf((float)isum, d * da, sum);
        if (has_min) sum = fmaf((float)asum, m * da, sum);
    }
    return sum;
}

static float dot_q4_0(int64_t n, const void *w, const void *a) { return dot_32(AERO_DT_Q4_0, n, w, a); }
static float dot_q4_1(int64_t n, const void *w, const void *a) { return dot_32(AERO_DT_Q4_1, n, w, a); }
static float dot_q5_0(int64_t n, const void *w, const void *a) { return dot_32(AERO_DT_Q5_0, n, w, a); }
static float dot_q5_1(int64_t n, const void *w, const void *a) { return dot_32(AERO_DT_Q5_1, n, w, a); }
static float dot_q8_0(int64_t n, const void *w, const void *a) { return dot_32(AERO_DT_Q8_0, n, w, a); }

// K-quant weights with Q8_K activations: integer sums per block (groups scaled, mins through the activation
// group sums), then the row-lane order: one fused multiply-add per block into the row's sum and one into its
// min sum, blocks in order, the difference at the end (the order every ISA's 8-row tiles keep per lane).
static float dot_k(aero_dtype t, int64_t n, const void *vw, const void *va) {
    const uint8_t *w = vw;
    const aero_block_q8_K *a = va;
    size_t bb = aero_dtype_get(t)->block_bytes;
    float sum = 0.0f, msum_f = 0.0f;
    int8_t q[256];
    int sc[16], mn[16];
    for (int64_t i = 0; i < n / AERO_QK_K; i++, w += bb) {
        float d, dmin;
        int gs = unpack_k(t, w, q, sc, mn, &d, &dmin);
        int isum = 0, msum = 0;
        for (int g = 0; g < AERO_QK_K / gs; g++) {
            int s = 0;
            for (int l = 0; l < gs; l++) s += q[g * gs + l] * a[i].qs[g * gs + l];
            isum += sc[g] * s;
            int bs = gs == 16 ? a[i].bsums[g] : a[i].bsums[2 * g] + a[i].bsums[2 * g + 1];
            msum += mn[g] * bs;
        }
        sum = fmaf((float)isum, d * a[i].d, sum);
        msum_f = fmaf((float)msum, dmin * a[i].d, msum_f);
    }
    return sum - msum_f;
}

static float dot_q2_K(int64_t n, const void *w, const void *a) { return dot_k(AERO_DT_Q2_K, n, w, a); }
static float dot_q3_K(int64_t n, const void *w, const void *a) { return dot_k(AERO_DT_Q3_K, n, w, a); }
static float dot_q4_K(int64_t n, const void *w, const void *a) { return dot_k(AERO_DT_Q4_K, n, w, a); }
static float dot_q5_K(int64_t n, const void *w, const void *a) { return dot_k(AERO_DT_Q5_K, n, w, a); }
static float dot_q6_K(int64_t n, const void *w, const void *a) { return dot_k(AERO_DT_Q6_K, n, w, a); }
static float dot_q8_K(int64_t n, const void *w, const void *a) { return dot_k(AERO_DT_Q8_K, n, w, a); }

// Scalar row conversions for the scalar table.
static void f16_to_f32_row_ref(const uint16_t *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = aero_fp16_to_fp32_inl(x[i]);
}
// Round-to-nearest-even, element by element.
static void f32_to_f16_row_ref(const float *x, uint16_t *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = aero_f32_to_f16(x[i]);
}
// bfloat16 widening, element by element.
static void bf16_to_f32_row_ref(const uint16_t *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = aero_bf16_to_f32(x[i]);
}

// The scalar table; SIMD tables start from a copy of it.
void aero_kernels_fill_scalar(aero_kernel_ops *ops) {
    memset(ops, 0, sizeof *ops);
    ops->dot[AERO_DT_F32] = dot_f32;
    ops->dot[AERO_DT_F16] = dot_f16;
    ops->dot[AERO_DT_BF16] = dot_bf16;
    ops->dot[AERO_DT_Q4_0] = dot_q4_0;
    ops->dot[AERO_DT_Q4_1] = dot_q4_1;
    ops->dot[AERO_DT_Q5_0] = dot_q5_0;
    ops->dot[AERO_DT_Q5_1] = dot_q5_1;
    ops->dot[AERO_DT_Q8_0] = dot_q8_0;
    ops->dot[AERO_DT_Q2_K] = dot_q2_K;
    ops->dot[AERO_DT_Q3_K] = dot_q3_K;
    ops->dot[AERO_DT_Q4_K] = dot_q4_K;
    ops->dot[AERO_DT_Q5_K] = dot_q5_K;
    ops->dot[AERO_DT_Q6_K] = dot_q6_K;
    ops->dot[AERO_DT_Q8_K] = dot_q8_K;
    ops->f16_to_f32_row = f16_to_f32_row_ref;
    ops->f32_to_f16_row = f32_to_f16_row_ref;
    ops->bf16_to_f32_row = bf16_to_f32_row_ref;
    ops->quantize_q8_0 = aero_quantize_q8_0_ref;
    ops->quantize_q8_K = aero_quantize_q8_K_ref;
    ops->dot_f32_acc16 = aero_dot_f32_acc16_ref;
    aero_iq_fill_scalar(ops);
    for (int t = 0; t < AERO_DT_COUNT; t++) ops->mm_dot[t] = ops->dot[t];
    ops->name = "scalar";
}
