// IQ2_XXS, IQ2_XS, IQ3_XXS and IQ3_S: groups of 8 weights drawn from a lattice grid (one 8-entry for IQ2, two
// 4-entries for IQ3) with sign bits (7 stored plus even parity, except IQ3_S's 8) and a 4-bit scale per 32 (per 16
// for IQ2_XS). Decoding follows ggml's definition; dequantization reproduces its float steps exactly; the dots sum
// exact integers per block and take one float step per block, which the SIMD kernels repeat bit for bit; the
// quantizer searches the grid (a plain nearest-entry search per group under a few candidate scales).
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "quants_iq.h"

// Sign byte of a 7-bit sign index: bit 7 makes the count of negative weights even (ggml's ksigns_iq2xs).
static inline uint8_t ksign(unsigned v) { return (uint8_t)(v | ((unsigned)__builtin_parity(v) << 7)); }

static inline uint32_t rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline uint16_t rd16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

bool aero_iq_grid_type(aero_dtype t) {
    return t == AERO_DT_IQ2_XXS || t == AERO_DT_IQ2_XS || t == AERO_DT_IQ3_XXS || t == AERO_DT_IQ3_S;
}

float aero_iq_grid_unit(aero_dtype t) { return t == AERO_DT_IQ3_S ? 1.0f : t == AERO_DT_IQ3_XXS ? 0.25f : 0.125f; }

// 8 signed magnitudes from an 8-entry (or two 4-entries) and a sign byte.
static void put8(int8_t *w, const uint8_t *g, uint8_t signs) {
    for (int j = 0; j < 8; j++) w[j] = (int8_t)((signs >> j) & 1 ? -(int)g[j] : (int)g[j]);
}

void aero_iq_grid_decode(aero_dtype t, const void *block, aero_iq_grid_block *o) {
    const uint8_t *b = block;
    o->d = aero_fp16_to_fp32_inl(rd16(b));
    uint8_t g[8];
    if (t == AERO_DT_IQ2_XXS) {
        for (int ib = 0; ib < 8; ib++) {
            uint32_t a0 = rd32(b + 2 + 8 * ib), a1 = rd32(b + 6 + 8 * ib);
            o->ls[2 * ib] = o->ls[2 * ib + 1] = 2 * (int)(a1 >> 28) + 1;
            for (int l = 0; l < 4; l++) {
                uint64_t e = aero_iq2xxs_grid[(a0 >> (8 * l)) & 255];
                memcpy(g, &e, 8);
                put8(o->w + 32 * ib + 8 * l, g, ksign((a1 >> (7 * l)) & 127));
            }
        }
    } else if (t == AERO_DT_IQ2_XS) {
        for (int ib = 0; ib < 8; ib++) {
            uint8_t sc = b[66 + ib];
            o->ls[2 * ib] = 2 * (sc & 15) + 1;
            o->ls[2 * ib + 1] = 2 * (sc >> 4) + 1;
            for (int l = 0; l < 4; l++) {
                uint16_t q = rd16(b + 2 + 2 * (4 * ib + l));
                uint64_t e = aero_iq2xs_grid[q & 511];
                memcpy(g, &e, 8);
                put8(o->w + 32 * ib + 8 * l, g, ksign(q >> 9));
            }
        }
    } else if (t == AERO_DT_IQ3_XXS) {
        const uint8_t *qs = b + 2, *sas = b + 2 + 64;
        for (int ib = 0; ib < 8; ib++) {
            uint32_t a = rd32(sas + 4 * ib);
            o->ls[2 * ib] = o->ls[2 * ib + 1] = 2 * (int)(a >> 28) + 1;
            for (int l = 0; l < 4; l++) {
                uint32_t e1 = aero_iq3xxs_grid[qs[8 * ib + 2 * l]], e2 = aero_iq3xxs_grid[qs[8 * ib + 2 * l + 1]];
                memcpy(g, &e1, 4);
                memcpy(g + 4, &e2, 4);
                put8(o->w + 32 * ib + 8 * l, g, ksign((a >> (7 * l)) & 127));
            }
        }
    } else { // IQ3_S
        const uint8_t *qs = b + 2, *qh = b + 66, *signs = b + 74, *scales = b + 106;
        for (int ib = 0; ib < 8; ib++) {
            int s = ib % 2 ? scales[ib / 2] >> 4 : scales[ib / 2] & 15;
            o->ls[2 * ib] = o->ls[2 * ib + 1] = 2 * s + 1;
            for (int l = 0; l < 4; l++) {
                unsigned i1 = qs[8 * ib + 2 * l] | ((qh[ib] << (8 - 2 * l)) & 256);
                unsigned i2 = qs[8 * ib + 2 * l + 1] | ((qh[ib] << (7 - 2 * l)) & 256);
                uint32_t e1 = aero_iq3s_grid[i1], e2 = aero_iq3s_grid[i2];
                memcpy(g, &e1, 4);
                memcpy(g + 4, &e2, 4);
                put8(o->w + 32 * ib + 8 * l, g, signs[4 * ib + l]);
            }
        }
    }
}

// ggml's dequantize_row_iq2_xxs / iq2_xs / iq3_xxs / iq3_s: the float steps are its steps (a group's scale
// d * (0.5 + s) * 0.25, * 0.5 for IQ3_XXS, d * (1 + 2 s) for IQ3_S; then times the magnitude, then the sign).
void aero_iq_grid_dequantize(aero_dtype t, const void *vx, float *y, int64_t n) {
    const uint8_t *x = vx;
    size_t bb = aero_dtype_get(t)->block_bytes;
    aero_iq_grid_block blk;
    for (int64_t i = 0; i < n / AERO_QK_K; i++, x += bb, y += AERO_QK_K) {
        aero_iq_grid_decode(t, x, &blk);
        for (int h = 0; h < 16; h++) {
            int s = (blk.ls[h] - 1) / 2;
            float db = t == AERO_DT_IQ3_S     ? blk.d * (float)(1 + 2 * s)
                       : t == AERO_DT_IQ3_XXS ? blk.d * (0.5f + (float)s) * 0.5f
                                              : blk.d * (0.5f + (float)s) * 0.25f;
            for (int j = 0; j < 16; j++) {
                int w = blk.w[16 * h + j];
                y[16 * h + j] = w < 0 ? -(db * (float)-w) : db * (float)w;
            }
        }
    }
}

// Grid x Q8_K: sum over halves of 16 of ls * (exact integer dot), one float step per block, the unit at the end.
static float dot_grid(aero_dtype t, int64_t n, const void *vw, const void *va) {
    const uint8_t *w = vw;
    const aero_block_q8_K *a = va;
    size_t bb = aero_dtype_get(t)->block_bytes;
    aero_iq_grid_block blk;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / AERO_QK_K; i++, w += bb) {
        aero_iq_grid_decode(t, w, &blk);
        int isum = 0;
        for (int h = 0; h < 16; h++) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += blk.w[16 * h + j] * a[i].qs[16 * h + j];
            isum += blk.ls[h] * s;
        }
        sum += (blk.d * a[i].d) * (float)isum;
    }
    return sum * aero_iq_grid_unit(t);
}

static float dot_iq2_xxs(int64_t n, const void *w, const void *a) { return dot_grid(AERO_DT_IQ2_XXS, n, w, a); }
static float dot_iq2_xs(int64_t n, const void *w, const void *a) { return dot_grid(AERO_DT_IQ2_XS, n, w, a); }
static float dot_iq3_xxs(int64_t n, const void *w, const void *a) { return dot_grid(AERO_DT_IQ3_XXS, n, w, a); }
static float dot_iq3_s(int64_t n, const void *w, const void *a) { return dot_grid(AERO_DT_IQ3_S, n, w, a); }

void aero_iq_grid_fill_scalar(aero_kernel_ops *ops) {
    ops->dot[AERO_DT_IQ2_XXS] = ops->mm_dot[AERO_DT_IQ2_XXS] = dot_iq2_xxs;
    ops->dot[AERO_DT_IQ2_XS] = ops->mm_dot[AERO_DT_IQ2_XS] = dot_iq2_xs;
    ops->dot[AERO_DT_IQ3_XXS] = ops->mm_dot[AERO_DT_IQ3_XXS] = dot_iq3_xxs;
    ops->dot[AERO_DT_IQ3_S] = ops->mm_dot[AERO_DT_IQ3_S] = dot_iq3_s;
}

// ---- quantizer ---------------------------------------------------------------------------------------------

typedef struct {
    bool iq2;         // 8-entries (else pairs of 4-entries)
    bool parity;      // 7 sign bits stored, the 8th even parity (all but IQ3_S)
    int n_grid;       // entries
    const void *grid; // uint64_t[] or uint32_t[]
    float unit;       // group scale = d * unit * (2 s + 1)
    int scale_span;   // weights per 4-bit scale: 32, or 16 (IQ2_XS)
    int max_level;    // largest magnitude in the grid
} grid_kind;

static grid_kind kind_of(aero_dtype t) {
    switch (t) {
    case AERO_DT_IQ2_XXS: return (grid_kind){true, true, 256, aero_iq2xxs_grid, 0.125f, 32, 43};
    case AERO_DT_IQ2_XS: return (grid_kind){true, true, 512, aero_iq2xs_grid, 0.125f, 16, 43};
    case AERO_DT_IQ3_XXS: return (grid_kind){false, true, 256, aero_iq3xxs_grid, 0.25f, 32, 62};
    default: return (grid_kind){false, false, 512, aero_iq3s_grid, 1.0f, 32, 15};
    }
}

// The grids as floats, made once, for the quantizer's searches.
static float fgrid_2xxs[256][8], fgrid_2xs[512][8], fgrid_3xxs[256][4], fgrid_3s[512][4];
static pthread_once_t fgrid_once = PTHREAD_ONCE_INIT;

static void fgrid_init(void) {
    for (int e = 0; e < 512; e++)
        for (int j = 0; j < 8; j++) {
            if (e < 256) fgrid_2xxs[e][j] = (float)((aero_iq2xxs_grid[e] >> (8 * j)) & 255);
            fgrid_2xs[e][j] = (float)((aero_iq2xs_grid[e] >> (8 * j)) & 255);
            if (j < 4 && e < 256) fgrid_3xxs[e][j] = (float)((aero_iq3xxs_grid[e] >> (8 * j)) & 255);
            if (j < 4) fgrid_3s[e][j] = (float)((aero_iq3s_grid[e] >> (8 * j)) & 255);
        }
}

// The entry nearest the target magnitudes m (n = 8 or 4 per entry), by squared error (ties to the first).
static int nearest_entry(const grid_kind *k, const float *m, int n) {
    pthread_once(&fgrid_once, fgrid_init);
    const float *g = k->grid == (const void *)aero_iq2xxs_grid   ? &fgrid_2xxs[0][0]
                     : k->grid == (const void *)aero_iq2xs_grid  ? &fgrid_2xs[0][0]
                     : k->grid == (const void *)aero_iq3xxs_grid ? &fgrid_3xxs[0][0]
                                                                 : &fgrid_3s[0][0];
    int best = 0;
    float best_e = INFINITY;
    for (int e = 0; e < k->n_grid; e++, g += n) {
        float err = 0;
        for (int j = 0; j < n; j++) err += (m[j] - g[j]) * (m[j] - g[j]);
        if (err < best_e) best_e = err, best = e;
    }
    return best;
}

// One group of 8 under scale gs: the sign byte (even parity where required: the smallest weight takes the wrong
// sign) and the entry indices (one for IQ2, two for IQ3); returns the decoded signed magnitudes in q.
static uint8_t encode8(const grid_kind *k, const float *x, float gs, int idx[2], int8_t q[8]) {
    uint8_t signs = 0;
    int n_neg = 0, smallest = 0;
    for (int j = 0; j < 8; j++) {
        if (x[j] < 0) signs |= (uint8_t)(1u << j), n_neg++;
        if (fabsf(x[j]) < fabsf(x[smallest])) smallest = j;
    }
    if (k->parity && n_neg % 2) signs ^= (uint8_t)(1u << smallest);
    float m[8];
    for (int j = 0; j < 8; j++) {
        float a = gs > 0 ? fabsf(x[j]) / gs : 0.0f;
        m[j] = ((signs >> j) & 1) == (x[j] < 0) ? a : -a; // a forced wrong sign wants the smallest magnitude
    }
    uint8_t g[8];
    if (k->iq2) {
        idx[0] = nearest_entry(k, m, 8);
        memcpy(g, &((const uint64_t *)k->grid)[idx[0]], 8);
    } else {
        idx[0] = nearest_entry(k, m, 4);
        idx[1] = nearest_entry(k, m + 4, 4);
        memcpy(g, &((const uint32_t *)k->grid)[idx[0]], 4);
        memcpy(g + 4, &((const uint32_t *)k->grid)[idx[1]], 4);
    }
    for (int j = 0; j < 8; j++) q[j] = (int8_t)((signs >> j) & 1 ? -(int)g[j] : (int)g[j]);
    return signs;
}

// The best scale of a span of weights: candidates around the one that maps the largest magnitude to the grid's
// largest level, each refit by least squares over its choices.
static float fit_span(const grid_kind *k, const float *x, int n) {
    float amax = 0;
    for (int j = 0; j < n; j++) amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
    if (amax < 1e-30f) return 0.0f;
    float best = amax / (float)k->max_level, best_err = INFINITY;
    static const float f[4] = {0.6f, 0.8f, 1.0f, 1.2f};
    for (int c = 0; c < 4; c++) {
        float gs = amax / (float)k->max_level * f[c], sxq = 0, sqq = 0;
        int8_t q[32];
        int idx[2];
        for (int o = 0; o < n; o += 8) encode8(k, x + o, gs, idx, q + o);
        for (int j = 0; j < n; j++) sxq += x[j] * q[j], sqq += (float)q[j] * q[j];
        if (!(sqq > 0)) continue;
        float g = sxq / sqq, err = 0;
        for (int j = 0; j < n; j++) err += (x[j] - g * q[j]) * (x[j] - g * q[j]);
        if (err < best_err) best_err = err, best = g;
    }
    return best;
}

static void quantize_block(aero_dtype t, const float *x, uint8_t *b) {
    grid_kind k = kind_of(t);
    int n_span = 256 / k.scale_span;
    float g[16], gmax = 0;
    for (int s = 0; s < n_span; s++) {
        g[s] = fit_span(&k, x + s * k.scale_span, k.scale_span);
        gmax = g[s] > gmax ? g[s] : gmax;
    }
    memset(b, 0, aero_dtype_get(t)->block_bytes);
    uint16_t dh = aero_f32_to_f16(gmax > 0 ? gmax / (k.unit * 31.0f) : 0.0f);
    memcpy(b, &dh, 2);
    float d = aero_f16_to_f32(dh);
    int sc[16];
    for (int s = 0; s < n_span; s++) {
        int v = d > 0 ? (int)lrintf((g[s] / (d * k.unit) - 1.0f) / 2.0f) : 0;
        sc[s] = v < 0 ? 0 : v > 15 ? 15 : v;
    }
    for (int ib = 0; ib < 8; ib++) {
        uint32_t signs7 = 0;
        for (int l = 0; l < 4; l++) {
            int span = (32 * ib + 8 * l) / k.scale_span;
            float gs = d * k.unit * (float)(2 * sc[span] + 1);
            int idx[2];
            int8_t q[8];
            uint8_t signs = encode8(&k, x + 32 * ib + 8 * l, gs, idx, q);
            if (t == AERO_DT_IQ2_XXS) {
                b[2 + 8 * ib + l] = (uint8_t)idx[0];
                signs7 |= (uint32_t)(signs & 127) << (7 * l);
            } else if (t == AERO_DT_IQ2_XS) {
                uint16_t v = (uint16_t)(idx[0] | ((signs & 127) << 9));
                memcpy(b + 2 + 2 * (4 * ib + l), &v, 2);
            } else if (t == AERO_DT_IQ3_XXS) {
                b[2 + 8 * ib + 2 * l] = (uint8_t)idx[0];
                b[2 + 8 * ib + 2 * l + 1] = (uint8_t)idx[1];
                signs7 |= (uint32_t)(signs & 127) << (7 * l);
            } else { // IQ3_S: 9-bit indices, their top bits in qh; full sign bytes
                b[2 + 8 * ib + 2 * l] = (uint8_t)(idx[0] & 255);
                b[2 + 8 * ib + 2 * l + 1] = (uint8_t)(idx[1] & 255);
                b[66 + ib] |= (uint8_t)(((idx[0] >> 8) << (2 * l)) | ((idx[1] >> 8) << (2 * l + 1)));
                b[74 + 4 * ib + l] = signs;
            }
        }
        if (t == AERO_DT_IQ2_XXS) {
            uint32_t a1 = signs7 | ((uint32_t)sc[ib] << 28);
            memcpy(b + 6 + 8 * ib, &a1, 4);
        } else if (t == AERO_DT_IQ2_XS) {
            b[66 + ib] = (uint8_t)(sc[2 * ib] | (sc[2 * ib + 1] << 4));
        } else if (t == AERO_DT_IQ3_XXS) {
            uint32_t a = signs7 | ((uint32_t)sc[ib] << 28);
            memcpy(b + 2 + 64 + 4 * ib, &a, 4);
        } else {
            b[106 + ib / 2] |= (uint8_t)(sc[ib] << (4 * (ib % 2)));
        }
    }
}

void aero_iq_grid_quantize(aero_dtype t, const float *x, void *y, int64_t n) {
    size_t bb = aero_dtype_get(t)->block_bytes;
    for (int64_t i = 0; i < n / AERO_QK_K; i++) quantize_block(t, x + i * AERO_QK_K, (uint8_t *)y + i * bb);
}
