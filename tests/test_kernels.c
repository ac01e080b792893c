// Kernels: block sizes, f16/bf16 conversions (exhaustive), layouts against ggml-style loops written here,
// quantize->dequantize error bounds, dot products of every ISA against a double-precision reference and
// against the scalar kernel.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "helpers.h"
#include "kernels/kernels.h"
#include "kernels/quants.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

// splitmix64: deterministic test data.
static uint64_t rng_next(void) { return test_splitmix64(&rng_state); }
static float rng_unit(void) { return (float)(rng_next() >> 40) / (float)(1 << 24); } // [0, 1)
static float rng_sym(void) { return 2.0f * rng_unit() - 1.0f; }                      // [-1, 1)

// Fills x with one of several distributions that stress scales and offsets differently.
static void fill_data(float *x, int64_t n, int kind) {
    for (int64_t i = 0; i < n; i++) {
        float v = rng_sym();
        switch (kind) {
        case 0: x[i] = v; break;                                                // uniform
        case 1: x[i] = v * v * v * 3.0f; break;                                 // heavy centre
        case 2: x[i] = (rng_next() % 97 == 0) ? v * 40.0f : v * 0.1f; break;    // outliers
        case 3: x[i] = 0.5f + 0.25f * v; break;                                 // all positive, offset
        case 4: x[i] = -2.0f + 0.01f * v; break;                                // narrow, far from zero
        case 5: x[i] = 1e-6f * v; break;                                        // tiny (f16 subnormal scales)
        default: x[i] = ((i / 16) % 3 == 0) ? 0.0f : v * (float)((i / 16) % 5); // groups of very different size
        }
    }
}

static const aero_dtype all_types[] = {AERO_DT_F32,  AERO_DT_F16,  AERO_DT_BF16, AERO_DT_Q4_0, AERO_DT_Q4_1,
                                       AERO_DT_Q5_0, AERO_DT_Q5_1, AERO_DT_Q8_0, AERO_DT_Q2_K, AERO_DT_Q3_K,
                                       AERO_DT_Q4_K, AERO_DT_Q5_K, AERO_DT_Q6_K, AERO_DT_Q8_K};
#define N_TYPES (int)(sizeof all_types / sizeof all_types[0])

static bool is_k(aero_dtype t) { return aero_dtype_get(t)->block == 256; }

// ---- conversions ----------------------------------------------------------------------------------------

// Independent f16 decode through ldexp.
static float f16_ref(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 0) v = ldexp(m, -24);
    else if (e == 31) v = m ? NAN : INFINITY;
    else v = ldexp(1024 + m, e - 25);
    return (float)(s ? -v : v);
}

static bool same_float(float a, float b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    return memcmp(&a, &b, 4) == 0;
}

static void test_conversions(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = aero_f16_to_f32((uint16_t)h);
        if (!same_float(f, f16_ref((uint16_t)h))) bad++;
        // every half survives the round trip (NaNs stay NaN)
        uint16_t back = aero_f32_to_f16(f);
        if (isnan(f) ? !isnan(aero_f16_to_f32(back)) : back != h) bad++;
        // bf16 is exact both ways
        float b = aero_bf16_to_f32((uint16_t)h);
        uint16_t bb = aero_f32_to_bf16(b);
        if (isnan(b) ? !isnan(aero_bf16_to_f32(bb)) : bb != h) bad++;
    }
    CHECKF(bad == 0, "%d f16/bf16 exhaustive conversion mismatches", bad);

    // f32 -> f16 rounding: nearest, ties to even, against a double-precision search over neighbours
    bad = 0;
    for (int i = 0; i < 200000; i++) {
        uint32_t bits = (uint32_t)rng_next();
        if (i % 2) bits = (bits & 0x80000000u) | (0x33000000u + (bits % (0x47800000u - 0x33000000u)));
        if (i % 7 == 0) bits = (bits & 0xffffe000u) | 0x1000u; // exact ties of normal halves
        float f;
        memcpy(&f, &bits, 4);
        if (isnan(f)) continue;
        uint16_t h = aero_f32_to_f16(f);
        double err = fabs((double)aero_f16_to_f32(h) - f);
        if (isinf(aero_f16_to_f32(h))) {
            if (fabs(f) < 65520.0f) bad++;
            continue;
        }
        for (int dlt = -1; dlt <= 1; dlt += 2) {
            uint16_t o = (uint16_t)(h + dlt);
            if (((o ^ h) & 0x8000) || ((o & 0x7c00) == 0x7c00)) continue;
            double e2 = fabs((double)aero_f16_to_f32(o) - f);
            if (e2 < err || (e2 == err && (h & 1))) bad++;
        }
    }
    CHECKF(bad == 0, "%d f32->f16 rounding errors", bad);

    // bf16 rounding ties to even
    CHECK(aero_f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80);            // tie, even stays
    CHECK(aero_f32_to_bf16(1.0f + 0x1p-7f + 0x1p-8f) == 0x3f82);  // tie, odd rounds up
    CHECK(aero_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f) == 0x3f81); // above tie

    // Row conversions of every ISA against the scalar ones, all 65536 inputs, bitwise (NaNs as NaN)
    uint16_t *h = malloc(65536 * 2), *h2 = malloc(65536 * 2);
    float *f = malloc(65537 * 4), *g = malloc(65537 * 4);
    for (uint32_t i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    for (int isa = 0; isa <= 2; isa++) {
        for (int vnni = 0; vnni <= 1; vnni++) {
            const aero_kernel_ops *ops = aero_kernels_ops((aero_isa)isa, vnni);
            if (!ops || (isa < 2 && vnni)) continue;
            for (int len = 65536; len >= 65536 - 37; len -= 37) { // odd lengths exercise the tails
                memset(f, 0, 65537 * 4);
                ops->f16_to_f32_row(h, f, len);
                bad = 0;
                for (int i = 0; i < len; i++)
                    if (!same_float(f[i], aero_f16_to_f32(h[i]))) bad++;
                CHECKF(bad == 0 && f[len] == 0.0f, "%s f16->f32 row: %d mismatches", ops->name, bad);
                ops->bf16_to_f32_row(h, f, len);
                bad = 0;
                for (int i = 0; i < len; i++)
                    if (!same_float(f[i], aero_bf16_to_f32(h[i]))) bad++;
                CHECKF(bad == 0, "%s bf16->f32 row: %d mismatches", ops->name, bad);
            }
            // f32 -> f16 on random floats (incl. ties, subnormals, overflow)
            for (int i = 0; i < 65536; i++) {
                uint32_t bits = (uint32_t)rng_next();
                if (i % 3 == 0) bits = (bits & 0x80000000u) | (0x33000000u + (bits % (0x47800000u - 0x33000000u)));
                if (i % 5 == 0) bits = (bits & 0xffffe000u) | 0x1000u;
                memcpy(&g[i], &bits, 4);
            }
            ops->f32_to_f16_row(g, h2, 65536 - 5);
            bad = 0;
            for (int i = 0; i < 65536 - 5; i++) {
                uint16_t r = aero_f32_to_f16(g[i]);
                if (isnan(g[i]) ? !isnan(aero_f16_to_f32(h2[i])) : h2[i] != r) bad++;
            }
            CHECKF(bad == 0, "%s f32->f16 row: %d mismatches", ops->name, bad);
        }
    }
    free(h), free(h2), free(f), free(g);
}

// ---- layouts: ggml-style loops written independently of the library's index formulas -----------------

// A random but finite half in [2^-10, 2^-2) of either sign (when sign is true).
static uint16_t rand_half(bool sign) {
    uint16_t e = (uint16_t)(5 + rng_next() % 8), m = (uint16_t)(rng_next() % 1024);
    return (uint16_t)((sign && (rng_next() & 1) ? 0x8000 : 0) | (e << 10) | m);
}

// A block of type t of random bytes (every code and packed-scale pattern) whose f16 scale fields are finite.
static void random_block(aero_dtype t, uint8_t *blk) {
    for (uint32_t i = 0; i < aero_dtype_get(t)->block_bytes; i++) blk[i] = (uint8_t)rng_next();
    uint16_t h0 = rand_half(true), h1 = rand_half(true);
    switch (t) { // scale fields
    case AERO_DT_Q4_1:
    case AERO_DT_Q5_1: memcpy(blk + 2, &h1, 2); /* fallthrough */
    case AERO_DT_Q4_0:
    case AERO_DT_Q5_0:
    case AERO_DT_Q8_0: memcpy(blk, &h0, 2); break;
    case AERO_DT_Q2_K: memcpy(blk + 80, &h0, 2), memcpy(blk + 82, &h1, 2); break;
    case AERO_DT_Q3_K: memcpy(blk + 108, &h0, 2); break;
    case AERO_DT_Q4_K:
    case AERO_DT_Q5_K: memcpy(blk, &h0, 2), memcpy(blk + 2, &h1, 2); break;
    case AERO_DT_Q6_K: memcpy(blk + 208, &h0, 2); break;
    default: break;
    }
}

static void ggml_style_dequant(aero_dtype t, const uint8_t *b, float *y) {
    switch (t) {
    case AERO_DT_Q4_0: {
        float d = f16_ref(*(const uint16_t *)b);
        for (int j = 0; j < 16; j++) {
            y[j] = ((b[2 + j] & 0x0F) - 8) * d;
            y[j + 16] = ((b[2 + j] >> 4) - 8) * d;
        }
        break;
    }
    case AERO_DT_Q4_1: {
        float d = f16_ref(*(const uint16_t *)b), m = f16_ref(*(const uint16_t *)(b + 2));
        for (int j = 0; j < 16; j++) {
            y[j] = (b[4 + j] & 0x0F) * d + m;
            y[j + 16] = (b[4 + j] >> 4) * d + m;
        }
        break;
    }
    case AERO_DT_Q5_0:
    case AERO_DT_Q5_1: {
        bool one = t == AERO_DT_Q5_1;
        float d = f16_ref(*(const uint16_t *)b), m = one ? f16_ref(*(const uint16_t *)(b + 2)) : 0.0f;
        const uint8_t *qhp = b + (one ? 4 : 2), *qs = qhp + 4;
        uint32_t qh = (uint32_t)qhp[0] | (uint32_t)qhp[1] << 8 | (uint32_t)qhp[2] << 16 | (uint32_t)qhp[3] << 24;
        for (int j = 0; j < 16; j++) {
            int xh0 = ((qh >> j) << 4) & 0x10, xh1 = (qh >> (j + 12)) & 0x10;
            int x0 = (qs[j] & 0x0F) | xh0, x1 = (qs[j] >> 4) | xh1;
            if (!one) x0 -= 16, x1 -= 16;
            y[j] = one ? x0 * d + m : x0 * d;
            y[j + 16] = one ? x1 * d + m : x1 * d;
        }
        break;
    }
    case AERO_DT_Q8_0: {
        float d = f16_ref(*(const uint16_t *)b);
        for (int j = 0; j < 32; j++) y[j] = (int8_t)b[2 + j] * d;
        break;
    }
    case AERO_DT_Q2_K: {
        const uint8_t *scales = b, *q = b + 16;
        float d = f16_ref(*(const uint16_t *)(b + 80)), dmin = f16_ref(*(const uint16_t *)(b + 82));
        int is = 0;
        for (int n = 0; n < 256; n += 128) {
            int shift = 0;
            for (int j = 0; j < 4; j++) {
                int sc = scales[is++];
                float dl = d * (sc & 0xF), ml = dmin * (sc >> 4);
                for (int l = 0; l < 16; l++) *y++ = dl * ((q[l] >> shift) & 3) - ml;
                sc = scales[is++];
                dl = d * (sc & 0xF), ml = dmin * (sc >> 4);
                for (int l = 0; l < 16; l++) *y++ = dl * ((q[l + 16] >> shift) & 3) - ml;
                shift += 2;
            }
            q += 32;
        }
        break;
    }
    case AERO_DT_Q3_K: {
        const uint8_t *hm = b, *q = b + 32, *sb = b + 96;
        float d = f16_ref(*(const uint16_t *)(b + 108));
        uint32_t aux[4];
        memcpy(aux, sb, 12);
        uint32_t tmp = aux[2];
        aux[2] = ((aux[0] >> 4) & 0x0f0f0f0f) | (((tmp >> 4) & 0x03030303) << 4);
        aux[3] = ((aux[1] >> 4) & 0x0f0f0f0f) | (((tmp >> 6) & 0x03030303) << 4);
        aux[0] = (aux[0] & 0x0f0f0f0f) | (((tmp >> 0) & 0x03030303) << 4);
        aux[1] = (aux[1] & 0x0f0f0f0f) | (((tmp >> 2) & 0x03030303) << 4);
        const int8_t *scales = (const int8_t *)aux;
        int is = 0;
        uint8_t m = 1;
        for (int n = 0; n < 256; n += 128) {
            int shift = 0;
            for (int j = 0; j < 4; j++) {
                float dl = d * (scales[is++] - 32);
                for (int l = 0; l < 16; l++) *y++ = dl * (((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
                dl = d * (scales[is++] - 32);
                for (int l = 0; l < 16; l++) *y++ = dl * (((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4));
                shift += 2;
                m <<= 1;
            }
            q += 32;
        }
        break;
    }
    case AERO_DT_Q4_K:
    case AERO_DT_Q5_K: {
        bool five = t == AERO_DT_Q5_K;
        float d = f16_ref(*(const uint16_t *)b), dmin = f16_ref(*(const uint16_t *)(b + 2));
        const uint8_t *sc = b + 4, *qh = b + 16, *q = b + (five ? 48 : 16);
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0, is = 0; j < 256; j += 64, is += 2) {
            int s[2], mm[2];
            for (int k = 0; k < 2; k++) {
                int jj = is + k;
                if (jj < 4) s[k] = sc[jj] & 63, mm[k] = sc[jj + 4] & 63;
                else
                    s[k] = (sc[jj + 4] & 0xF) | ((sc[jj - 4] >> 6) << 4),
                    mm[k] = (sc[jj + 4] >> 4) | ((sc[jj] >> 6) << 4);
            }
            for (int l = 0; l < 32; l++)
                *y++ = d * s[0] * ((q[l] & 0xF) + (five && (qh[l] & u1) ? 16 : 0)) - dmin * mm[0];
            for (int l = 0; l < 32; l++)
                *y++ = d * s[1] * ((q[l] >> 4) + (five && (qh[l] & u2) ? 16 : 0)) - dmin * mm[1];
            q += 32;
            u1 <<= 2, u2 <<= 2;
        }
        break;
    }
    case AERO_DT_Q6_K: {
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        float d = f16_ref(*(const uint16_t *)(b + 208));
        for (int n = 0; n < 256; n += 128) {
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * sc[is] * q1;
                y[l + 32] = d * sc[is + 2] * q2;
                y[l + 64] = d * sc[is + 4] * q3;
                y[l + 96] = d * sc[is + 6] * q4;
            }
            y += 128, ql += 64, qh += 32, sc += 8;
        }
        break;
    }
    default: break;
    }
}

static void test_layouts(void) {
    struct {
        aero_dtype t;
        size_t size;
    } sizes[] = {{AERO_DT_Q4_0, sizeof(aero_block_q4_0)}, {AERO_DT_Q4_1, sizeof(aero_block_q4_1)},
                 {AERO_DT_Q5_0, sizeof(aero_block_q5_0)}, {AERO_DT_Q5_1, sizeof(aero_block_q5_1)},
                 {AERO_DT_Q8_0, sizeof(aero_block_q8_0)}, {AERO_DT_Q2_K, sizeof(aero_block_q2_K)},
                 {AERO_DT_Q3_K, sizeof(aero_block_q3_K)}, {AERO_DT_Q4_K, sizeof(aero_block_q4_K)},
                 {AERO_DT_Q5_K, sizeof(aero_block_q5_K)}, {AERO_DT_Q6_K, sizeof(aero_block_q6_K)},
                 {AERO_DT_Q8_K, sizeof(aero_block_q8_K)}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        CHECKF(aero_dtype_get(sizes[i].t)->block_bytes == sizes[i].size, "%s block size", aero_dtype_name(sizes[i].t));

    // Random bytes with finite scales: the library's dequantize equals the ggml-style loops exactly.
    const aero_dtype qt[] = {AERO_DT_Q4_0, AERO_DT_Q4_1, AERO_DT_Q5_0, AERO_DT_Q5_1, AERO_DT_Q8_0,
                             AERO_DT_Q2_K, AERO_DT_Q3_K, AERO_DT_Q4_K, AERO_DT_Q5_K, AERO_DT_Q6_K};
    for (size_t k = 0; k < sizeof qt / sizeof qt[0]; k++) {
        aero_dtype t = qt[k];
        const aero_dtype_info *info = aero_dtype_get(t);
        uint8_t blk[256];
        float a[256], b[256];
        int bad = 0;
        for (int rep = 0; rep < 200; rep++) {
            random_block(t, blk);
            aero_dequantize_row(t, blk, a, info->block);
            ggml_style_dequant(t, blk, b);
            for (uint32_t i = 0; i < info->block; i++)
                if (!same_float(a[i], b[i])) bad++;
        }
        CHECKF(bad == 0, "%s: %d elements differ from the ggml-style dequantize", info->name, bad);
    }
}

// ---- quantization error bounds -------------------------------------------------------------------------

#define UP (1.0f + 0x1p-10f) // a half rounded up exceeds its target by at most this factor (+ one subnormal step)
#define SUB 0x1p-24f

// Per-element error bound of our quantizer for one block of raw data (see quants_ref.c: scales and offsets are
// rounded so every element stays inside its code range, so the error is half a step of its group).
static void block_bounds(aero_dtype t, const float *x, float *bound) {
    const aero_dtype_info *info = aero_dtype_get(t);
    int n = (int)info->block;
    float amax = 0.0f, mn = x[0], mx = x[0];
    for (int i = 0; i < n; i++) amax = fmaxf(amax, fabsf(x[i])), mn = fminf(mn, x[i]), mx = fmaxf(mx, x[i]);
    float eps = amax * 4e-6f + 1e-30f;
    float b = 0.0f;
    switch (t) {
    case AERO_DT_F32: b = 0.0f; break;
    case AERO_DT_Q8_0: { // ggml's: d = amax / 127 rounded to the nearest half (spacing 2^-24 when subnormal)
        float d = amax / 127.0f, dd = fmaxf(d * 0x1p-11f, 0x1p-25f);
        b = 0.5f * (d + dd) + 127.0f * dd;
        break;
    }
    case AERO_DT_Q4_0: b = 0.5f * (amax / 7.5f * UP + SUB); break;
    case AERO_DT_Q5_0: b = 0.5f * (amax / 15.5f * UP + SUB); break;
    case AERO_DT_Q4_1:
    case AERO_DT_Q5_1: {
        float lo = mn - fabsf(mn) * 0x1p-10f - SUB, L = t == AERO_DT_Q4_1 ? 15.0f : 31.0f;
        b = 0.5f * ((mx - lo) / L * UP + SUB);
        break;
    }
    case AERO_DT_Q8_K: b = 0.5f * amax / 127.0f; break;
    default: break;
    }
    if (t == AERO_DT_F16 || t == AERO_DT_BF16) {
        for (int i = 0; i < n; i++) bound[i] = fabsf(x[i]) * (t == AERO_DT_F16 ? 0x1p-11f : 0x1p-8f) + 0x1p-25f;
        return;
    }
    if (!is_k(t) || t == AERO_DT_Q8_K) {
        for (int i = 0; i < n; i++) bound[i] = b + eps;
        return;
    }
    bool asym = t == AERO_DT_Q2_K || t == AERO_DT_Q4_K || t == AERO_DT_Q5_K;
    int gs = (t == AERO_DT_Q4_K || t == AERO_DT_Q5_K) ? 32 : 16, ng = 256 / gs;
    float qmax = t == AERO_DT_Q2_K ? 3.0f : t == AERO_DT_Q4_K ? 15.0f : t == AERO_DT_Q5_K ? 31.0f : 0.0f;
    float smax = t == AERO_DT_Q2_K ? 15.0f : t == AERO_DT_Q3_K ? 31.0f : t == AERO_DT_Q6_K ? 127.0f : 63.0f;
    float qneg = t == AERO_DT_Q3_K ? 4.0f : 32.0f;
    float s_up[16], max_s = 0.0f;
    if (asym) {
        float needm[16], max_m = 0.0f;
        for (int g = 0; g < ng; g++) {
            float gmin = 0.0f;
            for (int l = 0; l < gs; l++) gmin = fminf(gmin, x[g * gs + l]);
            needm[g] = -gmin;
            max_m = fmaxf(max_m, needm[g]);
        }
        float dmin = max_m / smax * UP + SUB;
        for (int g = 0; g < ng; g++) {
            float gmax = 0.0f;
            for (int l = 0; l < gs; l++) gmax = fmaxf(gmax, x[g * gs + l]);
            s_up[g] = (gmax + needm[g] + dmin) / qmax;
            max_s = fmaxf(max_s, s_up[g]);
        }
    } else {
        for (int g = 0; g < ng; g++) {
            float ga = 0.0f;
            for (int l = 0; l < gs; l++) ga = fmaxf(ga, fabsf(x[g * gs + l]));
            s_up[g] = ga / (qneg - 0.5f);
            max_s = fmaxf(max_s, s_up[g]);
        }
    }
    float d = max_s / smax * UP + SUB;
    for (int g = 0; g < ng; g++)
        for (int l = 0; l < gs; l++) bound[g * gs + l] = 0.5f * (s_up[g] + d) + eps;
}

static void test_quantize_bounds(void) {
    const int64_t n = 256 * 12;
    float *x = malloc(n * 4), *y = malloc(n * 4), *bound = malloc(256 * 4);
    uint8_t *q = malloc(n * 4 + 64);
    for (int k = 0; k < N_TYPES; k++) {
        aero_dtype t = all_types[k];
        const aero_dtype_info *info = aero_dtype_get(t);
        double worst = 0.0; // largest err / bound
        int bad = 0;
        for (int kind = 0; kind < 7; kind++) {
            fill_data(x, n, kind);
            aero_quantize_row(t, x, q, n);
            aero_dequantize_row(t, q, y, n);
            for (int64_t b0 = 0; b0 < n; b0 += info->block) {
                if (info->block == 1) {
                    block_bounds(t, x + b0, bound);
                } else {
                    block_bounds(t, x + b0, bound);
                }
                for (uint32_t i = 0; i < info->block; i++) {
                    float err = fabsf(y[b0 + i] - x[b0 + i]);
                    if (!(err <= bound[i])) {
                        if (bad < 3)
                            fprintf(stderr, "%s kind %d elem %lld: x %g y %g err %g bound %g\n", info->name, kind,
                                    (long long)(b0 + i), x[b0 + i], y[b0 + i], err, bound[i]);
                        bad++;
                    }
                    if (bound[i] > 0) worst = fmax(worst, err / bound[i]);
                }
            }
        }
        CHECKF(bad == 0, "%s: %d elements outside the error bound", info->name, bad);
        // zeros come back as zeros, and NaN/inf input does not crash
        memset(x, 0, n * 4);
        aero_quantize_row(t, x, q, n);
        aero_dequantize_row(t, q, y, n);
        int nz = 0;
        for (int64_t i = 0; i < n; i++) nz += y[i] != 0.0f;
        CHECKF(nz == 0, "%s: zeros do not round-trip", info->name);
        x[3] = NAN, x[40] = INFINITY, x[300] = -INFINITY;
        aero_quantize_row(t, x, q, n);
        aero_dequantize_row(t, q, y, n);
        printf("%-5s worst err/bound %.3f\n", info->name, worst);
    }
    // Bad arguments are ignored (dequantize gives zeros), never a crash.
    float z[31];
    for (int i = 0; i < 31; i++) z[i] = 1.0f;
    aero_dequantize_row(AERO_DT_Q4_0, q, z, 31);
    CHECK(z[0] == 0.0f && z[30] == 0.0f);
    aero_dequantize_row(AERO_DT_IQ1_S, q, z, 31);
    aero_quantize_row(AERO_DT_Q4_K, x, q, 255);
    free(x), free(y), free(bound), free(q);
}

// ---- dot products ---------------------------------------------------------------------------------------

static const aero_kernel_ops *isa_ops[4];
static const char *isa_label[4];
static int n_isa;

static void collect_isas(void) {
    const aero_kernel_ops *o;
    isa_ops[n_isa] = aero_kernels_ops(AERO_ISA_SCALAR, false), isa_label[n_isa++] = "scalar";
    if ((o = aero_kernels_ops(AERO_ISA_AVX2, false))) isa_ops[n_isa] = o, isa_label[n_isa++] = "avx2";
    else printf("note: avx2 not available on this CPU, its kernels are not tested\n");
    if ((o = aero_kernels_ops(AERO_ISA_AVX512, false))) isa_ops[n_isa] = o, isa_label[n_isa++] = "avx512";
    else printf("note: avx512 not available on this CPU, its kernels are not tested\n");
    if ((o = aero_kernels_ops(AERO_ISA_AVX512, true))) isa_ops[n_isa] = o, isa_label[n_isa++] = "avx512-vnni";
    else printf("note: avx512-vnni not available on this CPU, its kernels are not tested\n");
}

static void test_dots(void) {
    static const int64_t len32[] = {32, 96, 224, 1056};
    static const int64_t len256[] = {256, 512, 1280, 2816};
    static const int64_t lenf[] = {1, 7, 15, 16, 17, 33, 100, 1000, 4103};
    const int64_t maxn = 4103;
    float *xw = malloc(maxn * 4), *xa = malloc(maxn * 4), *dw = malloc(maxn * 4), *da = malloc(maxn * 4);
    uint8_t *w = malloc(maxn * 4 + 64), *a = malloc(maxn * 4 + 64);
    for (int k = 0; k < N_TYPES; k++) {
        aero_dtype t = all_types[k], vt = aero_vec_dot_type(t);
        const aero_dtype_info *info = aero_dtype_get(t);
        const int64_t *lens = info->block == 32 ? len32 : info->block == 256 ? len256 : lenf;
        int nl = info->block == 1 ? 9 : 4;
        // fixed 16-lane order (f32, f16, bf16) or the row-lane order (exact block integers, one fused
        // multiply-add per block per row) of the 32-block types and the K-quants
        bool exact_order = t == AERO_DT_F32 || t == AERO_DT_F16 || t == AERO_DT_BF16 || t == AERO_DT_Q4_0 ||
                           t == AERO_DT_Q4_1 || t == AERO_DT_Q5_0 || t == AERO_DT_Q5_1 || t == AERO_DT_Q8_0 ||
                           t == AERO_DT_Q2_K || t == AERO_DT_Q3_K || t == AERO_DT_Q4_K || t == AERO_DT_Q5_K ||
                           t == AERO_DT_Q6_K;
        for (int li = 0; li < nl; li++) {
            int64_t n = lens[li];
            for (int rep = 0; rep < 6; rep++) {
                fill_data(xw, n, rep);
                fill_data(xa, n, (rep + 2) % 6);
                aero_quantize_row(t, xw, w, n);
                aero_quantize_row(vt, xa, a, n);
                aero_dequantize_row(t, w, dw, n);
                aero_dequantize_row(vt, a, da, n);
                double ref = 0.0, mag = 0.0, ref_f32 = 0.0, mag_f32 = 0.0;
                for (int64_t i = 0; i < n; i++) {
                    ref += (double)dw[i] * da[i], mag += fabs((double)dw[i] * da[i]);
                    ref_f32 += (double)dw[i] * xa[i], mag_f32 += fabs((double)dw[i] * xa[i]);
                }
                // Integer block sums are exact; only the per-block float steps round: 3e-6 relative to the sum of
                // absolute products covers 11..33 blocks (and the K-quant min terms) with margin.
                double tol = 3e-6 * mag + 1e-30, tol_f32 = 3e-6 * mag_f32 + 1e-30;
                float scalar = isa_ops[0]->dot[t](n, w, a);
                CHECKF(fabs(scalar - ref) <= tol, "%s n=%lld scalar dot %.9g vs %.9g (tol %.3g)", info->name,
                       (long long)n, scalar, ref, tol);
                float exact_ref = aero_vec_dot_f32_with(isa_ops[0], t, n, w, xa);
                CHECKF(fabs(exact_ref - ref_f32) <= tol_f32, "%s n=%lld f32 dot %.9g vs %.9g", info->name, (long long)n,
                       exact_ref, ref_f32);
                for (int s = 1; s < n_isa; s++) {
                    float v = isa_ops[s]->dot[t](n, w, a);
                    CHECKF(fabs(v - ref) <= tol, "%s n=%lld %s dot %.9g vs ref %.9g (tol %.3g)", info->name,
                           (long long)n, isa_label[s], v, ref, tol);
                    // SIMD vs scalar: both within tol of ref, so within 2 tol of each other; bitwise where the
                    // reduction order is the same by construction
                    if (exact_order)
                        CHECKF(same_float(v, scalar), "%s n=%lld %s dot %.9g != scalar %.9g", info->name, (long long)n,
                               isa_label[s], v, scalar);
                    else
                        CHECKF(fabs(v - scalar) <= 2 * tol, "%s n=%lld %s vs scalar", info->name, (long long)n,
                               isa_label[s]);
                    float e = aero_vec_dot_f32_with(isa_ops[s], t, n, w, xa);
                    CHECKF(same_float(e, exact_ref), "%s n=%lld %s exact-f32 dot %.9g != scalar %.9g", info->name,
                           (long long)n, isa_label[s], e, exact_ref);
                }
                // VNNI and plain AVX-512 compute the same integers and the same float steps: bitwise equal
                const aero_kernel_ops *plain = aero_kernels_ops(AERO_ISA_AVX512, false),
                                      *vnni = aero_kernels_ops(AERO_ISA_AVX512, true);
                if (plain && vnni) {
                    float p = plain->dot[t](n, w, a), v = vnni->dot[t](n, w, a);
                    CHECKF(same_float(p, v), "%s n=%lld avx512 %.9g != avx512-vnni %.9g", info->name, (long long)n, p,
                           v);
                }
                // public entry points agree with their tables
                CHECK(same_float(aero_vec_dot_isa(AERO_ISA_SCALAR, t, n, w, a), scalar));
                CHECK(same_float(aero_vec_dot_f32(t, n, w, xa), exact_ref));
            }
        }
    }
    // Activation quantizers: every ISA gives the scalar bytes.
    for (int rep = 0; rep < 7; rep++) {
        fill_data(xa, 2816, rep);
        for (int s = 1; s < n_isa; s++) {
            memset(w, 0, 2816 * 2), memset(a, 1, 2816 * 2);
            isa_ops[0]->quantize_q8_0(xa, w, 2816);
            isa_ops[s]->quantize_q8_0(xa, a, 2816);
            CHECKF(!memcmp(w, a, 2816 / 32 * 34), "%s Q8_0 activation quantizer differs from scalar", isa_label[s]);
            isa_ops[0]->quantize_q8_K(xa, w, 2816);
            isa_ops[s]->quantize_q8_K(xa, a, 2816);
            CHECKF(!memcmp(w, a, 2816 / 256 * 292), "%s Q8_K activation quantizer differs from scalar", isa_label[s]);
        }
    }
    // What the dots refuse (an assertion) aero_wmat_check reports at load.
    aero_error err = {0};
    aero_wmat bad = {.data = w, .type = AERO_DT_Q4_0, .cols = 33, .rows = 1, .row_bytes = 36};
    CHECK(aero_wmat_check(&bad, &err) == AERO_ERR_INVALID);
    bad = (aero_wmat){.data = w, .type = AERO_DT_IQ1_S, .cols = 256, .rows = 1, .row_bytes = 50}; // no kernels
    CHECK(aero_wmat_check(&bad, &err) == AERO_ERR_UNSUPPORTED);
    free(xw), free(xa), free(dw), free(da), free(w), free(a);
}

// The SIMD integer sums keep 16-bit partial sums and scale products close to their limits: random weight bytes
// (every code, scale and high-bit pattern) against activations whose codes are all -127, nearly all +127 or
// pairs of each (the largest magnitudes the quantizer makes) must still give the scalar dot's bits.
static void test_extreme_dots(void) {
    static const aero_dtype qt[] = {AERO_DT_Q4_0, AERO_DT_Q4_1, AERO_DT_Q5_0, AERO_DT_Q5_1, AERO_DT_Q8_0,
                                    AERO_DT_Q2_K, AERO_DT_Q3_K, AERO_DT_Q4_K, AERO_DT_Q5_K, AERO_DT_Q6_K};
    const int64_t n = 1024;
    float *x = malloc(sizeof(float) * n);
    uint8_t *w = malloc((size_t)n * 2), *a = malloc((size_t)n * 2);
    for (size_t k = 0; k < sizeof qt / sizeof qt[0]; k++) {
        aero_dtype t = qt[k];
        const aero_dtype_info *info = aero_dtype_get(t);
        int bad = 0;
        for (int rep = 0; rep < 40; rep++) {
            for (int64_t b = 0; b < n / info->block; b++) random_block(t, w + b * info->block_bytes);
            // Q8_K gives its block's first largest value -127, the others of that magnitude +-127: all 1 makes every
            // code -127, a first -1 then 1 makes the rest +127, sign pairs mix them
            for (int64_t i = 0; i < n; i++)
                x[i] = rep % 3 == 0 ? 1.0f : rep % 3 == 1 ? (i % 256 == 0 ? -1.0f : 1.0f) : (i & 2 ? -1.0f : 1.0f);
            aero_quantize_row(aero_vec_dot_type(t), x, a, n);
            float scalar = isa_ops[0]->dot[t](n, w, a);
            for (int s = 1; s < n_isa; s++) {
                float v = isa_ops[s]->dot[t](n, w, a);
                if (!same_float(v, scalar)) bad++;
            }
        }
        CHECKF(bad == 0, "%s: %d dots at activation codes +-127 differ from the scalar dot", info->name, bad);
    }
    free(x), free(w), free(a);
}

static void test_dispatch(void) {
    aero_kernels_init();
    aero_isa isa = aero_kernels_isa();
    CHECK(aero_isa_available(isa));
    CHECK(aero_isa_available(AERO_ISA_SCALAR));
    CHECK(aero_vec_dot_type(AERO_DT_Q4_0) == AERO_DT_Q8_0 && aero_vec_dot_type(AERO_DT_Q6_K) == AERO_DT_Q8_K);
    CHECK(aero_vec_dot_type(AERO_DT_F16) == AERO_DT_F16 && aero_vec_dot_type(AERO_DT_F32) == AERO_DT_F32);
    printf("selected ISA: %s\n", aero_isa_name(isa));
}

int main(void) {
    collect_isas();
    test_dispatch();
    test_conversions();
    test_layouts();
    test_quantize_bounds();
    test_dots();
    test_extreme_dots();
    return check_done("test_kernels");
}
