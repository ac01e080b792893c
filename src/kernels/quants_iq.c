// IQ4_NL and IQ4_XS: scalar dequantization (ggml's definition), a quantizer (a scale search per block: the
// levels are fixed, so the best scale is found by trying a few and refitting by least squares), and the scalar
// dots the SIMD kernels reproduce bit for bit.
#include <math.h>
#include <string.h>

#include "quants_iq.h"

const int8_t aero_kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

const int8_t aero_kvalues_mxfp4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

bool aero_iq_type(aero_dtype t) {
    return t == AERO_DT_IQ4_NL || t == AERO_DT_IQ4_XS || t == AERO_DT_MXFP4 || aero_iq_grid_type(t);
}

// MXFP4 as its definition gives it: the block's exponent puts the largest magnitude in the top binade of the
// levels (2^(floor(log2 amax) - 2) per doubled unit), then each value takes its nearest level (ties to the first
// in table order).
static void quantize_mxfp4(const float *x, aero_block_mxfp4 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += AERO_QK) {
        float amax = 0;
        for (int j = 0; j < AERO_QK; j++) amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
        int e = amax > 0 ? (int)floorf(log2f(amax)) - 2 + 127 : 0;
        e = e < 0 ? 0 : e > 255 ? 255 : e;
        y[i].e = (uint8_t)e;
        float d = aero_e8m0_half((uint8_t)e);
        uint8_t L[32];
        for (int j = 0; j < AERO_QK; j++) {
            int best = 0;
            float err = fabsf(aero_kvalues_mxfp4[0] * d - x[j]);
            for (int k = 1; k < 16; k++) {
                float ek = fabsf(aero_kvalues_mxfp4[k] * d - x[j]);
                if (ek < err) err = ek, best = k;
            }
            L[j] = (uint8_t)best;
        }
        for (int j = 0; j < 16; j++) y[i].qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
    }
}

// Index of the level nearest v (levels ascending; ties to the lower one).
static int nearest_level(float v) {
    int lo = 0, hi = 15;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (v < aero_kvalues_iq4nl[mid]) hi = mid;
        else lo = mid;
    }
    return v - aero_kvalues_iq4nl[lo] <= aero_kvalues_iq4nl[hi] - v ? lo : hi;
}

// The scale of one group of n values that fits them best to the levels: candidate scales around the one that maps
// the largest magnitude to the extreme level, each refit by least squares over its level choice. Writes the
// chosen level indices to L and returns the scale (0 for an all-zero group).
static float fit_group(const float *x, int n, uint8_t *L) {
    float amax = 0, max = 0;
    for (int j = 0; j < n; j++)
        if (fabsf(x[j]) > amax) amax = fabsf(x[j]), max = x[j];
    if (amax < 1e-30f) {
        for (int j = 0; j < n; j++) L[j] = 8; // level 1 times a zero scale
        return 0.0f;
    }
    float best_d = 0, best_err = INFINITY;
    uint8_t tmp[32];
    for (int k = -7; k <= 7; k++) {
        float d = max / ((float)aero_kvalues_iq4nl[0] + 1.5f * (float)k), id = 1.0f / d;
        float sxq = 0, sqq = 0;
        for (int j = 0; j < n; j++) {
            tmp[j] = (uint8_t)nearest_level(x[j] * id);
            float q = aero_kvalues_iq4nl[tmp[j]];
            sxq += x[j] * q, sqq += q * q;
        }
        if (!(sqq > 0)) continue;
        float dl = sxq / sqq, err = 0;
        for (int j = 0; j < n; j++) {
            float e = x[j] - dl * (float)aero_kvalues_iq4nl[tmp[j]];
            err += e * e;
        }
        if (err < best_err) {
            best_err = err, best_d = dl;
            memcpy(L, tmp, (size_t)n);
        }
    }
    return best_d;
}

// Re-picks the level of each value for the scale actually stored (after its rounding).
static void requantize(const float *x, int n, float d, uint8_t *L) {
    float id = d != 0 ? 1.0f / d : 0.0f;
    for (int j = 0; j < n; j++) L[j] = (uint8_t)(d != 0 ? nearest_level(x[j] * id) : 8);
}

static void pack_nibbles(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
}

static void quantize_iq4_nl(const float *x, aero_block_iq4_nl *y, int64_t nb) {
    uint8_t L[32];
    for (int64_t i = 0; i < nb; i++, x += AERO_QK) {
        float d = fit_group(x, AERO_QK, L);
        y[i].d = aero_f32_to_f16(d);
        requantize(x, AERO_QK, aero_f16_to_f32(y[i].d), L);
        pack_nibbles(L, y[i].qs);
    }
}

static void quantize_iq4_xs(const float *x, aero_block_iq4_xs *y, int64_t nb) {
    uint8_t L[32];
    float s[8];
    for (int64_t i = 0; i < nb; i++, x += AERO_QK_K) {
        float smax = 0, samax = 0;
        for (int ib = 0; ib < 8; ib++) {
            s[ib] = fit_group(x + 32 * ib, 32, L);
            if (fabsf(s[ib]) > samax) samax = fabsf(s[ib]), smax = s[ib];
        }
        memset(&y[i], 0, sizeof y[i]);
        // the group scale of largest magnitude becomes -32 steps (the 6-bit range is -32..31)
        float d = samax > 0 ? smax / -32.0f : 0.0f;
        y[i].d = aero_f32_to_f16(d);
        d = aero_f16_to_f32(y[i].d);
        float id = d != 0 ? 1.0f / d : 0.0f;
        for (int ib = 0; ib < 8; ib++) {
            int l = (int)lrintf(s[ib] * id);
            l = l < -32 ? -32 : l > 31 ? 31 : l;
            int ls = l + 32;
            y[i].scales_l[ib / 2] |= (uint8_t)((ls & 0xF) << (4 * (ib % 2)));
            y[i].scales_h |= (uint16_t)((ls >> 4) << (2 * ib));
            requantize(x + 32 * ib, 32, d * (float)l, L);
            pack_nibbles(L, y[i].qs + 16 * ib);
        }
    }
}

void aero_iq_quantize_row(aero_dtype t, const float *x, void *y, int64_t n) {
    if (t == AERO_DT_IQ4_NL) quantize_iq4_nl(x, y, n / AERO_QK);
    else if (t == AERO_DT_IQ4_XS) quantize_iq4_xs(x, y, n / AERO_QK_K);
    else if (t == AERO_DT_MXFP4) quantize_mxfp4(x, y, n / AERO_QK);
    else if (aero_iq_grid_type(t)) aero_iq_grid_quantize(t, x, y, n);
}

// ggml's dequantize_row_iq4_nl / dequantize_row_iq4_xs / dequantize_row_mxfp4.
void aero_iq_dequantize_row(aero_dtype t, const void *vx, float *y, int64_t n) {
    if (aero_iq_grid_type(t)) {
        aero_iq_grid_dequantize(t, vx, y, n);
    } else if (t == AERO_DT_MXFP4) {
        const aero_block_mxfp4 *x = vx;
        for (int64_t i = 0; i < n / AERO_QK; i++, y += AERO_QK) {
            float d = aero_e8m0_half(x[i].e);
            for (int j = 0; j < 16; j++) {
                y[j] = (float)aero_kvalues_mxfp4[x[i].qs[j] & 0xF] * d;
                y[j + 16] = (float)aero_kvalues_mxfp4[x[i].qs[j] >> 4] * d;
            }
        }
    } else if (t == AERO_DT_IQ4_NL) {
        const aero_block_iq4_nl *x = vx;
        for (int64_t i = 0; i < n / AERO_QK; i++, y += AERO_QK) {
            float d = aero_fp16_to_fp32_inl(x[i].d);
            for (int j = 0; j < 16; j++) {
                y[j] = d * (float)aero_kvalues_iq4nl[x[i].qs[j] & 0xF];
                y[j + 16] = d * (float)aero_kvalues_iq4nl[x[i].qs[j] >> 4];
            }
        }
    } else if (t == AERO_DT_IQ4_XS) {
        const aero_block_iq4_xs *x = vx;
        for (int64_t i = 0; i < n / AERO_QK_K; i++) {
            float d = aero_fp16_to_fp32_inl(x[i].d);
            const uint8_t *qs = x[i].qs;
            for (int ib = 0; ib < 8; ib++, y += 32, qs += 16) {
                float dl = d * (float)(aero_iq4xs_scale(&x[i], ib) - 32);
                for (int j = 0; j < 16; j++) {
                    y[j] = dl * (float)aero_kvalues_iq4nl[qs[j] & 0xF];
                    y[j + 16] = dl * (float)aero_kvalues_iq4nl[qs[j] >> 4];
                }
            }
        }
    }
}

// IQ4_NL x Q8_0: the exact integer sum of each block, then sum += (d_w * d_a) * isum in block order.
static float dot_iq4_nl(int64_t n, const void *vw, const void *va) {
    const aero_block_iq4_nl *w = vw;
    const aero_block_q8_0 *a = va;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / AERO_QK; i++) {
        int isum = 0;
        for (int j = 0; j < 16; j++)
            isum += a[i].qs[j] * aero_kvalues_iq4nl[w[i].qs[j] & 0xF] +
                    a[i].qs[j + 16] * aero_kvalues_iq4nl[w[i].qs[j] >> 4];
        sum += (aero_fp16_to_fp32_inl(w[i].d) * aero_fp16_to_fp32_inl(a[i].d)) * (float)isum;
    }
    return sum;
}

// MXFP4 x Q8_0, as IQ4_NL with the block's E8M0 scale.
static float dot_mxfp4(int64_t n, const void *vw, const void *va) {
    const aero_block_mxfp4 *w = vw;
    const aero_block_q8_0 *a = va;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / AERO_QK; i++) {
        int isum = 0;
        for (int j = 0; j < 16; j++)
            isum += a[i].qs[j] * aero_kvalues_mxfp4[w[i].qs[j] & 0xF] +
                    a[i].qs[j + 16] * aero_kvalues_mxfp4[w[i].qs[j] >> 4];
        sum += (aero_fp16_to_fp32_inl(a[i].d) * aero_e8m0_half(w[i].e)) * (float)isum;
    }
    return sum;
}

// IQ4_XS x Q8_K: each group's exact sum times its integer scale, summed exactly over the block, then one float
// step per block.
static float dot_iq4_xs(int64_t n, const void *vw, const void *va) {
    const aero_block_iq4_xs *w = vw;
    const aero_block_q8_K *a = va;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / AERO_QK_K; i++) {
        const uint8_t *qs = w[i].qs;
        const int8_t *q8 = a[i].qs;
        int isum = 0;
        for (int ib = 0; ib < 8; ib++, qs += 16, q8 += 32) {
            int s = 0;
            for (int j = 0; j < 16; j++)
                s += q8[j] * aero_kvalues_iq4nl[qs[j] & 0xF] + q8[j + 16] * aero_kvalues_iq4nl[qs[j] >> 4];
            isum += (aero_iq4xs_scale(&w[i], ib) - 32) * s;
        }
        sum += (aero_fp16_to_fp32_inl(w[i].d) * a[i].d) * (float)isum;
    }
    return sum;
}

void aero_iq_fill_scalar(aero_kernel_ops *ops) {
    ops->dot[AERO_DT_IQ4_NL] = ops->mm_dot[AERO_DT_IQ4_NL] = dot_iq4_nl;
    ops->dot[AERO_DT_IQ4_XS] = ops->mm_dot[AERO_DT_IQ4_XS] = dot_iq4_xs;
    ops->dot[AERO_DT_MXFP4] = ops->mm_dot[AERO_DT_MXFP4] = dot_mxfp4;
    aero_iq_grid_fill_scalar(ops);
}
