// IQ4_NL, IQ4_XS, MXFP4 and the grid types IQ2_XXS, IQ2_XS, IQ3_XXS, IQ3_S (grids checked for the structure their
// definition gives them): dequantization bitwise against ggml's definition written out here, the quantizer's error
// bounded (and the scale of an all-zero block zero), every ISA's dot bitwise equal to the scalar reference on
// random and quantized blocks, the scalar dot close to the double-precision dot of the dequantized rows, and
// matmul rows equal to the dots.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "helpers.h"
#include "kernels/kernels.h"
#include "kernels/quants.h"
#include "kernels/quants_iq.h"

static const int kv[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}
static float gauss(void) {
    float s = 0;
    for (int k = 0; k < 4; k++) s += (float)(rnd() & 0xFFFF) / 65536.0f;
    return (s - 2.0f) * 1.7320508f;
}

static bool same(float a, float b) { return !memcmp(&a, &b, 4); }

// Random block bytes with a finite, moderate scale (every nibble and scale pattern occurs).
static void random_blocks(aero_dtype t, uint8_t *w, int64_t n) {
    size_t bytes = aero_dtype_row_bytes(t, (uint64_t)n);
    for (size_t i = 0; i < bytes; i++) w[i] = (uint8_t)rnd();
    size_t bb = aero_dtype_get(t)->block_bytes;
    for (size_t o = 0; o < bytes && t == AERO_DT_MXFP4; o += bb) w[o] = (uint8_t)(110 + rnd() % 30); // 2^-18..2^11
    for (size_t o = 0; o < bytes && t != AERO_DT_MXFP4; o += bb) {
        uint16_t d = aero_f32_to_f16(((float)(rnd() % 2000) - 1000.0f) * 1e-5f);
        memcpy(w + o, &d, 2);
    }
}

static int bit(unsigned v, int j) { return (v >> j) & 1; }
static unsigned parity7(unsigned v) { return v | ((unsigned)__builtin_parity(v) << 7); }

// The grid types per ggml's dequantize_row_*, written from the definition (the grids themselves from iq_grids.c).
static void ref_dequant_grid(aero_dtype t, const uint8_t *w, float *y, int64_t n) {
    size_t bb = aero_dtype_get(t)->block_bytes;
    for (int64_t b = 0; b < n / 256; b++, w += bb) {
        uint16_t h;
        memcpy(&h, w, 2);
        float d = aero_f16_to_f32(h);
        for (int ib = 0; ib < 8; ib++)
            for (int l = 0; l < 4; l++, y += 8) {
                uint8_t g[8];
                unsigned signs;
                float db;
                if (t == AERO_DT_IQ2_XXS) {
                    uint32_t a1;
                    memcpy(&a1, w + 2 + 8 * ib + 4, 4);
                    uint64_t e = aero_iq2xxs_grid[w[2 + 8 * ib + l]];
                    memcpy(g, &e, 8);
                    signs = parity7((a1 >> 7 * l) & 127);
                    db = d * (0.5f + (a1 >> 28)) * 0.25f;
                } else if (t == AERO_DT_IQ2_XS) {
                    uint16_t q;
                    memcpy(&q, w + 2 + 2 * (4 * ib + l), 2);
                    uint64_t e = aero_iq2xs_grid[q & 511];
                    memcpy(g, &e, 8);
                    signs = parity7(q >> 9);
                    int s = l < 2 ? w[66 + ib] & 0xf : w[66 + ib] >> 4;
                    db = d * (0.5f + s) * 0.25f;
                } else if (t == AERO_DT_IQ3_XXS) {
                    uint32_t a;
                    memcpy(&a, w + 66 + 4 * ib, 4);
                    uint32_t e1 = aero_iq3xxs_grid[w[2 + 8 * ib + 2 * l]],
                             e2 = aero_iq3xxs_grid[w[2 + 8 * ib + 2 * l + 1]];
                    memcpy(g, &e1, 4), memcpy(g + 4, &e2, 4);
                    signs = parity7((a >> 7 * l) & 127);
                    db = d * (0.5f + (a >> 28)) * 0.5f;
                } else {
                    uint8_t qh = w[66 + ib];
                    uint32_t e1 = aero_iq3s_grid[w[2 + 8 * ib + 2 * l] | ((qh << (8 - 2 * l)) & 256)];
                    uint32_t e2 = aero_iq3s_grid[w[2 + 8 * ib + 2 * l + 1] | ((qh << (7 - 2 * l)) & 256)];
                    memcpy(g, &e1, 4), memcpy(g + 4, &e2, 4);
                    signs = w[74 + 4 * ib + l];
                    int s = ib % 2 ? w[106 + ib / 2] >> 4 : w[106 + ib / 2] & 0xf;
                    db = d * (1 + 2 * s);
                }
                for (int j = 0; j < 8; j++) y[j] = db * g[j] * (bit(signs, j) ? -1.f : 1.f);
            }
    }
}

// Every entry of a grid is made of the type's levels, and no entry repeats.
static void check_grid(const char *name, const void *grid, int n, int width, const int *levels, int n_levels) {
    bool ok = true, unique = true;
    for (int e = 0; e < n; e++) {
        uint8_t g[8];
        memcpy(g, (const uint8_t *)grid + (size_t)e * width, width);
        for (int j = 0; j < width; j++) {
            bool in = false;
            for (int k = 0; k < n_levels; k++) in = in || g[j] == levels[k];
            ok = ok && in;
        }
        for (int f = 0; f < e && unique; f++)
            unique =
                memcmp((const uint8_t *)grid + (size_t)e * width, (const uint8_t *)grid + (size_t)f * width, width);
    }
    CHECKF(ok && unique, "%s: entries outside the levels (%d) or repeated (%d)", name, !ok, !unique);
}

// ggml's dequantize_row_iq4_nl / _iq4_xs, written from the definition.
static void ref_dequant(aero_dtype t, const uint8_t *w, float *y, int64_t n) {
    if (aero_iq_grid_type(t)) {
        ref_dequant_grid(t, w, y, n);
        return;
    }
    if (t == AERO_DT_MXFP4) { // levels twice E2M1; scale 2^(e - 128)
        static const int fp4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
        for (int64_t b = 0; b < n / 32; b++, w += 17, y += 32) {
            float d = ldexpf(1.0f, (int)w[0] - 128);
            for (int j = 0; j < 16; j++) y[j] = fp4[w[1 + j] & 15] * d, y[j + 16] = fp4[w[1 + j] >> 4] * d;
        }
        return;
    }
    if (t == AERO_DT_IQ4_NL) {
        for (int64_t b = 0; b < n / 32; b++, w += 18, y += 32) {
            uint16_t h;
            memcpy(&h, w, 2);
            float d = aero_f16_to_f32(h);
            for (int j = 0; j < 16; j++) y[j] = d * kv[w[2 + j] & 15], y[j + 16] = d * kv[w[2 + j] >> 4];
        }
        return;
    }
    for (int64_t b = 0; b < n / 256; b++, w += 136) {
        uint16_t h, sh;
        memcpy(&h, w, 2);
        memcpy(&sh, w + 2, 2);
        float d = aero_f16_to_f32(h);
        const uint8_t *sl = w + 4, *qs = w + 8;
        for (int ib = 0; ib < 8; ib++, qs += 16, y += 32) {
            int ls = ((sl[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((sh >> 2 * ib) & 3) << 4);
            float dl = d * (ls - 32);
            for (int j = 0; j < 16; j++) y[j] = dl * kv[qs[j] & 0xf], y[j + 16] = dl * kv[qs[j] >> 4];
        }
    }
}

static void test_type(aero_dtype t) {
    const char *name = aero_dtype_name(t);
    aero_dtype vt = aero_vec_dot_type(t);
    bool k = aero_dtype_get(t)->block == 256;
    CHECKF(vt == (k ? AERO_DT_Q8_K : AERO_DT_Q8_0), "%s vec-dot type %s", name, aero_dtype_name(vt));
    CHECK(aero_dtype_get(t)->computable);
    const int64_t lens[] = {256, 512, 2816};
    float *x = malloc(2816 * 4), *y = malloc(2816 * 4), *r = malloc(2816 * 4), *xa = malloc(2816 * 4),
          *ya = malloc(2816 * 4);
    uint8_t *w = malloc(2816 * 2), *a = malloc(2816 * 2);
    const aero_kernel_ops *isa[3] = {aero_kernels_ops(AERO_ISA_SCALAR, false), aero_kernels_ops(AERO_ISA_AVX2, false),
                                     aero_kernels_ops(AERO_ISA_AVX512, false)};
    for (int li = 0; li < 3; li++) {
        int64_t n = lens[li];
        for (int rep = 0; rep < 20; rep++) {
            bool random = rep % 2;
            for (int64_t i = 0; i < n; i++) x[i] = gauss() * (rep % 3 ? 1.0f : 0.01f), xa[i] = gauss();
            if (rep == 2) memset(x, 0, 64 * 4); // an all-zero group
            if (random) random_blocks(t, w, n);
            else aero_quantize_row(t, x, w, n);
            // dequantization: the public (SIMD-dispatched) one and the reference, bitwise the definition's
            aero_dequantize_row(t, w, y, n);
            ref_dequant(t, w, r, n);
            bool eq = true;
            for (int64_t i = 0; i < n; i++) eq = eq && same(y[i], r[i]);
            CHECKF(eq, "%s n=%lld rep %d: dequantization differs from the definition", name, (long long)n, rep);
            if (!random) { // the quantizer: error well under a 4-bit uniform grid's
                double e2 = 0, x2 = 0;
                for (int64_t i = 0; i < n; i++) e2 += (double)(x[i] - y[i]) * (x[i] - y[i]), x2 += (double)x[i] * x[i];
                double bound = t == AERO_DT_MXFP4                            ? 0.05
                               : t == AERO_DT_IQ2_XXS || t == AERO_DT_IQ2_XS ? 0.25
                               : t == AERO_DT_IQ3_XXS || t == AERO_DT_IQ3_S  ? 0.1
                                                                             : 0.01;
                CHECKF(e2 <= bound * x2 + 1e-20, "%s n=%lld: relative squared error %.4g", name, (long long)n, e2 / x2);
                if (rep == 2 && !aero_iq_grid_type(t)) // grid types have no zero level
                    for (int i = 0; i < 64; i++) CHECKF(y[i] == 0.0f, "%s: zero group dequantizes to %g", name, y[i]);
            }
            aero_quantize_row(vt, xa, a, n);
            aero_dequantize_row(vt, a, ya, n);
            double ref = 0, mag = 0;
            for (int64_t i = 0; i < n; i++) ref += (double)y[i] * ya[i], mag += fabs((double)y[i] * ya[i]);
            float s = isa[0]->dot[t](n, w, a);
            CHECKF(fabs(s - ref) <= 3e-6 * mag + 1e-30, "%s n=%lld scalar dot %.9g vs %.9g", name, (long long)n, s,
                   ref);
            for (int k = 1; k < 3; k++) {
                if (!isa[k]) continue;
                float v = isa[k]->dot[t](n, w, a);
                CHECKF(same(v, s), "%s n=%lld %s dot %.9g != scalar %.9g", name, (long long)n, isa[k]->name, v, s);
                CHECKF(isa[k]->mm_dot[t] == isa[k]->dot[t], "%s %s: matmul takes another kernel", name, isa[k]->name);
            }
            CHECK(same(aero_vec_dot(t, n, w, a), aero_vec_dot_isa(aero_kernels_isa(), t, n, w, a)));
        }
    }
    // matmul: each output the dot of its row (3 rows, 2 tokens), and the exact-f32 path the dequantized dot
    int64_t n = 512;
    size_t rb = aero_dtype_row_bytes(t, (uint64_t)n);
    uint8_t *W = malloc(3 * rb);
    for (int rrow = 0; rrow < 3; rrow++) {
        for (int64_t i = 0; i < n; i++) x[i] = gauss();
        aero_quantize_row(t, x, W + rrow * rb, n);
    }
    for (int64_t i = 0; i < 2 * n; i++) xa[i] = gauss(); // xa holds 2816 floats
    aero_wmat m = {.data = W, .type = t, .cols = n, .rows = 3, .row_bytes = rb};
    aero_error err = {0};
    CHECKF(aero_wmat_check(&m, &err) == AERO_OK, "%s: %s", name, err.msg);
    float out[6];
    aero_matmul(NULL, &m, xa, 2, out);
    for (int tok = 0; tok < 2; tok++) {
        aero_quantize_row(vt, xa + tok * n, a, n);
        for (int rrow = 0; rrow < 3; rrow++)
            CHECKF(same(out[tok * 3 + rrow], aero_vec_dot(t, n, W + rrow * rb, a)), "%s matmul row %d token %d", name,
                   rrow, tok);
    }
    free(W);
    free(x), free(y), free(r), free(xa), free(ya), free(w), free(a);
}

int main(void) {
    aero_kernels_init();
    test_type(AERO_DT_IQ4_NL);
    test_type(AERO_DT_IQ4_XS);
    test_type(AERO_DT_MXFP4);
    static const int l2[] = {8, 25, 43}, l3[] = {4, 12, 20, 28, 36, 44, 52, 62}, l3s[] = {1, 3, 5, 7, 9, 11, 13, 15};
    check_grid("iq2xxs_grid", aero_iq2xxs_grid, 256, 8, l2, 3);
    check_grid("iq2xs_grid", aero_iq2xs_grid, 512, 8, l2, 3);
    check_grid("iq3xxs_grid", aero_iq3xxs_grid, 256, 4, l3, 8);
    check_grid("iq3s_grid", aero_iq3s_grid, 512, 4, l3s, 8);
    // first and last entries as published (ggml-common.h)
    CHECK(aero_iq2xxs_grid[0] == 0x0808080808080808ull && aero_iq2xxs_grid[255] == 0x2b2b2b1908081908ull);
    for (aero_dtype t = AERO_DT_IQ2_XXS; t <= AERO_DT_IQ3_XXS; t++) test_type(t);
    test_type(AERO_DT_IQ3_S);
    return check_done("test_quants_iq");
}
