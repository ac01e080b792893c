// Block layouts and kernels of the non-linear GGUF types (IQ4_NL, IQ4_XS, MXFP4), bit-exact to ggml's ggml-common.h
// layouts, kept apart from quants.h so the older types' tables stay as they are. Internal to kernels/ (and tests).
#ifndef AERO_KERNELS_QUANTS_IQ_H
#define AERO_KERNELS_QUANTS_IQ_H

#include <stdbool.h>
#include <stdint.h>

#include "quants.h"

// The 16 levels of IQ4_NL and IQ4_XS (ggml's kvalues_iq4nl): a nibble indexes this table.
extern const int8_t aero_kvalues_iq4nl[16];

// 32 weights: x = d * kvalues[nibble]; qs[j] holds element j (low nibble) and element j + 16 (high nibble).
typedef struct {
    uint16_t d;
    uint8_t qs[AERO_QK / 2];
} aero_block_iq4_nl;
// 256 weights in 8 groups of 32: x = d * (ls - 32) * kvalues[nibble], ls the group's 6-bit scale (4 low bits in
// scales_l, 2 high bits in scales_h); nibbles of each group as in IQ4_NL.
typedef struct {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[AERO_QK_K / 64];
    uint8_t qs[AERO_QK_K / 2];
} aero_block_iq4_xs;

// 32 weights (gpt-oss's type): x = 2^(e - 128) * kvalues_mxfp4[nibble], the levels being twice FP4 (E2M1) and
// e an E8M0 exponent; nibbles as in IQ4_NL.
typedef struct {
    uint8_t e;
    uint8_t qs[AERO_QK / 2];
} aero_block_mxfp4;
extern const int8_t aero_kvalues_mxfp4[16];

// 2^(e - 128): half the E8M0 scale, for the doubled FP4 levels (ggml's ggml_e8m0_to_fp32_half).
static inline float aero_e8m0_half(uint8_t e) {
    uint32_t bits = e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

_Static_assert(sizeof(aero_block_mxfp4) == 17, "MXFP4 block size");
_Static_assert(sizeof(aero_block_iq4_nl) == 18, "IQ4_NL block size");
_Static_assert(sizeof(aero_block_iq4_xs) == 136, "IQ4_XS block size");

// The 6-bit scale of group ib (0..7) of an IQ4_XS block.
static inline int aero_iq4xs_scale(const aero_block_iq4_xs *b, int ib) {
    return ((b->scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((b->scales_h >> (2 * ib)) & 3) << 4);
}

// The lattice grids (iq_grids.c, generated from the published definition): each entry packs 8 (IQ2) or 4 (IQ3)
// magnitudes, one per byte.
extern const uint64_t aero_iq2xxs_grid[256];
extern const uint64_t aero_iq2xs_grid[512];
extern const uint32_t aero_iq3xxs_grid[256];
extern const uint32_t aero_iq3s_grid[512];

// Block bytes: IQ2_XXS {f16 d; u16 qs[32]} 66, IQ2_XS {f16 d; u16 qs[32]; u8 scales[8]} 74, IQ3_XXS {f16 d;
// u8 qs[96]} 98, IQ3_S {f16 d; u8 qs[64]; u8 qh[8]; u8 signs[32]; u8 scales[4]} 110.
// One super-block of a grid type, decoded: w = signed grid magnitudes, ls = the odd integer scale of each 16
// weights, the value of weight k being d * unit * ls[k / 16] * w[k] with unit 1/8 (IQ2), 1/4 (IQ3_XXS), 1 (IQ3_S).
typedef struct {
    float d;
    int8_t w[256];
    int ls[16];
} aero_iq_grid_block;
bool aero_iq_grid_type(aero_dtype t);
void aero_iq_grid_decode(aero_dtype t, const void *block, aero_iq_grid_block *out);
// The power-of-two unit of a grid type's scales (0.125, 0.25 or 1).
float aero_iq_grid_unit(aero_dtype t);
void aero_iq_grid_dequantize(aero_dtype t, const void *x, float *y, int64_t n);
void aero_iq_grid_quantize(aero_dtype t, const float *x, void *y, int64_t n);
void aero_iq_grid_fill_scalar(aero_kernel_ops *ops);

// Whether these kernels handle type t.
bool aero_iq_type(aero_dtype t);
// Scalar reference quantizer and dequantizer of a row (n a multiple of the block).
void aero_iq_quantize_row(aero_dtype t, const float *x, void *y, int64_t n);
void aero_iq_dequantize_row(aero_dtype t, const void *x, float *y, int64_t n);
// Table fillers: the scalar dots, and the SIMD ones (each the scalar result bit for bit: exact integer sums,
// then one float step per block in block order).
void aero_iq_fill_scalar(aero_kernel_ops *ops);
void aero_iq_fill_avx2(aero_kernel_ops *ops);
void aero_iq_fill_avx512(aero_kernel_ops *ops);

#endif
