// Block layouts of the GGUF quantized types, bit-exact to ggml's ggml-common.h, plus the internal table of
// kernels that each ISA file (scalar, AVX2, AVX-512) fills. Internal to kernels/ (and its tests).
#ifndef AERO_KERNELS_QUANTS_H
#define AERO_KERNELS_QUANTS_H

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"

#define AERO_QK 32    // elements per block of Q4_0, Q4_1, Q5_0, Q5_1, Q8_0
#define AERO_QK_K 256 // elements per super-block of the K-quants

// x = d * (q - 8); qs[j] holds element j (low nibble) and element j + 16 (high nibble).
typedef struct {
    uint16_t d;
    uint8_t qs[AERO_QK / 2];
} aero_block_q4_0;
// x = d * q + m.
typedef struct {
    uint16_t d;
    uint16_t m;
    uint8_t qs[AERO_QK / 2];
} aero_block_q4_1;
// x = d * ((nibble | bit << 4) - 16); bit j of qh is the fifth bit of element j.
typedef struct {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[AERO_QK / 2];
} aero_block_q5_0;
// x = d * (nibble | bit << 4) + m.
typedef struct {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[AERO_QK / 2];
} aero_block_q5_1;
// x = d * q.
typedef struct {
    uint16_t d;
    int8_t qs[AERO_QK];
} aero_block_q8_0;
// 16 groups of 16: x = d * (scales & 15) * q - dmin * (scales >> 4), q in 0..3.
typedef struct {
    uint8_t scales[AERO_QK_K / 16];
    uint8_t qs[AERO_QK_K / 4];
    uint16_t d;
    uint16_t dmin;
} aero_block_q2_K;
// 16 groups of 16: x = d * (scale - 32) * q, q = 2 low bits - (high bit ? 0 : 4); 6-bit scales packed in 12 bytes.
typedef struct {
    uint8_t hmask[AERO_QK_K / 8];
    uint8_t qs[AERO_QK_K / 4];
    uint8_t scales[12];
    uint16_t d;
} aero_block_q3_K;
// 8 groups of 32: x = d * sc * q - dmin * m, 6-bit sc and m packed in 12 bytes (get_scale_min_k4).
typedef struct {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qs[AERO_QK_K / 2];
} aero_block_q4_K;
// As Q4_K with a fifth bit per element in qh.
typedef struct {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qh[AERO_QK_K / 8];
    uint8_t qs[AERO_QK_K / 2];
} aero_block_q5_K;
// 16 groups of 16: x = d * scales[g] * (q - 32), q = 4 low bits in ql, 2 high bits in qh.
typedef struct {
    uint8_t ql[AERO_QK_K / 2];
    uint8_t qh[AERO_QK_K / 4];
    int8_t scales[AERO_QK_K / 16];
    uint16_t d;
} aero_block_q6_K;
// Activation type of the K-quant dot products: f32 scale, and the sum of each group of 16 quants.
typedef struct {
    float d;
    int8_t qs[AERO_QK_K];
    int16_t bsums[AERO_QK_K / 16];
} aero_block_q8_K;

_Static_assert(sizeof(aero_block_q4_0) == 18, "Q4_0 block size");
_Static_assert(sizeof(aero_block_q4_1) == 20, "Q4_1 block size");
_Static_assert(sizeof(aero_block_q5_0) == 22, "Q5_0 block size");
_Static_assert(sizeof(aero_block_q5_1) == 24, "Q5_1 block size");
_Static_assert(sizeof(aero_block_q8_0) == 34, "Q8_0 block size");
_Static_assert(sizeof(aero_block_q2_K) == 84, "Q2_K block size");
_Static_assert(sizeof(aero_block_q3_K) == 110, "Q3_K block size");
_Static_assert(sizeof(aero_block_q4_K) == 144, "Q4_K block size");
_Static_assert(sizeof(aero_block_q5_K) == 176, "Q5_K block size");
_Static_assert(sizeof(aero_block_q6_K) == 210, "Q6_K block size");
_Static_assert(sizeof(aero_block_q8_K) == 292, "Q8_K block size");

// Portable scalar f16 -> f32 (exact), inlined into every kernel file.
static inline float aero_fp16_to_fp32_inl(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0) {
        float v = (float)mant * 0x1p-24f; // subnormal or zero: exact
        memcpy(&bits, &v, 4);
        bits |= sign;
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13) | (mant ? 0x400000u : 0); // NaNs come out quiet, like F16C
    } else {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

// Unpacks the 6-bit scale and min of group j (0..7) of a Q4_K/Q5_K block (ggml's get_scale_min_k4).
static inline void aero_q4k_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// Unpacks the 16 6-bit scales of a Q3_K block, already minus 32.
static inline void aero_q3k_scales(const uint8_t *b, int8_t out[16]) {
    for (int j = 0; j < 16; j++) {
        int lo = j < 8 ? (b[j] & 0xF) : (b[j - 8] >> 4);
        int hi = (b[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
        out[j] = (int8_t)((lo | (hi << 4)) - 32);
    }
}

// Dot product of a weight row with an activation row already in the weight type's vec-dot type.
typedef float (*aero_dot_fn)(int64_t n, const void *w, const void *a);

// The kernels of one ISA. Entries an ISA does not implement are the scalar ones.
typedef struct {
    aero_dot_fn dot[AERO_DT_COUNT];
    void (*f16_to_f32_row)(const uint16_t *x, float *y, int64_t n);
    void (*f32_to_f16_row)(const float *x, uint16_t *y, int64_t n);
    void (*bf16_to_f32_row)(const uint16_t *x, float *y, int64_t n);
    // Activation quantizers; their output is bitwise identical to the scalar ones.
    void (*quantize_q8_0)(const float *x, void *y, int64_t n);
    void (*quantize_q8_K)(const float *x, void *y, int64_t n);
    // acc[k] += sum of a[i] * b[i] over i = k (mod 16), with separate multiply and add, for n a multiple of 16:
    // the fixed lane order of every f32 dot, so all ISAs give bitwise-identical f32 dots.
    void (*dot_f32_acc16)(float acc[16], const float *a, const float *b, int64_t n);
    // Matmul's activation rows for weights of type w. An ISA may use its own layout (act_bytes returns its
    // size, act_quantize writes it); otherwise (act_bytes NULL or 0) rows are standard blocks of the vec-dot
    // type and mm_dot = dot.
    // mm_dot must give the same bits as dot on the same activations, and mm_dot_multi (T <= 4 tokens at
    // once, reusing the unpacked weights; NULL: T calls of mm_dot) the same bits as T calls of mm_dot.
    size_t (*act_bytes)(aero_dtype w, int64_t n);
    void (*act_quantize)(aero_dtype w, const float *x, void *a, int64_t n);
    aero_dot_fn mm_dot[AERO_DT_COUNT];
    void (*mm_dot_multi[AERO_DT_COUNT])(int64_t n, const void *w, const void *const *a, int T, float *out);
    // Row-lane tiles (NULL: none): out[k * 8 + r] for R (1..8) weight rows at w + r * row_bytes and T (1..8)
    // tokens a[k] in matmul's activation rows, each with the bits of mm_dot (rows are vector lanes, each lane
    // its row's one-row float steps); matmul prefers them for any n, decode included.
    void (*mm_tile8[AERO_DT_COUNT])(int64_t n, const void *w, size_t row_bytes, int R, const void *const *a, int T,
                                    float *out);
    // Packed tiles (NULL: none), for batches: mm_pack8 unpacks R (1..8) weight rows of n elements at w +
    // r * row_bytes once into pack_bytes(n) bytes (64-aligned; rows past R repeat the last), then mm_packed
    // multiplies that buffer by T (1..4) tokens in matmul's activation rows, out[k * 8 + r], each with the bits
    // of mm_tile8 (the same exact integers, the same float steps): unpacking is paid once per tile of tokens.
    size_t (*pack_bytes[AERO_DT_COUNT])(int64_t n);
    void (*mm_pack8[AERO_DT_COUNT])(int64_t n, const void *w, size_t row_bytes, int R, void *packed);
    void (*mm_packed[AERO_DT_COUNT])(int64_t n, const void *packed, const void *const *a, int T, float *out);
    const char *name;
} aero_kernel_ops;

// Fillers, one per ISA file; the AVX ones start from the scalar table. vnni selects dpbusd on AVX-512.
void aero_kernels_fill_scalar(aero_kernel_ops *ops);
void aero_kernels_fill_avx2(aero_kernel_ops *ops);
void aero_kernels_fill_avx512(aero_kernel_ops *ops, bool vnni);

// The table of one ISA (vnni: whether AVX-512 uses dpbusd); NULL when not available. For tests.
const aero_kernel_ops *aero_kernels_ops(aero_isa isa, bool vnni);
// The selected table (initializes on first use).
const aero_kernel_ops *aero_kernels_selected(void);

// Reduces the 16 lane sums of dot_f32_acc16 in a fixed tree, so every ISA ends with the same float.
static inline float aero_reduce16(const float acc[16]) {
    float s[8];
    for (int k = 0; k < 8; k++) s[k] = acc[k] + acc[k + 8];
    for (int k = 0; k < 4; k++) s[k] = s[k] + s[k + 4];
    for (int k = 0; k < 2; k++) s[k] = s[k] + s[k + 2];
    return s[0] + s[1];
}

// Scalar reference dequantizer (aero_dequantize_row is the public, SIMD-dispatched one).
void aero_dequantize_row_ref(aero_dtype t, const void *x, float *y, int64_t n);

// aero_vec_dot_f32 with a given table (tests compare ISAs; all give the same bits).
float aero_vec_dot_f32_with(const aero_kernel_ops *ops, aero_dtype t, int64_t n, const void *w, const float *x);

// Scalar reference entry points shared with the SIMD files (tails, fallbacks).
float aero_dot_f32_ref(int64_t n, const float *a, const float *b);
void aero_dot_f32_acc16_ref(float acc[16], const float *a, const float *b, int64_t n);
void aero_quantize_q8_0_ref(const float *x, void *y, int64_t n);
void aero_quantize_q8_K_ref(const float *x, void *y, int64_t n);
// The Q8_0 scale of a block with absolute maximum amax (f16) and the multiplier of the codes; shared with SIMD
// so every ISA quantizes activations to the same bytes.
uint16_t aero_q8_0_scale(float amax, float *inv);
// The Q8_K scale of a block whose first element of largest magnitude is smax, and the code multiplier.
float aero_q8_K_scale(float smax, float *inv);
// That element, given the block's absolute maximum.
float aero_q8_K_signed_max(const float *x, int n, float amax);

#endif
