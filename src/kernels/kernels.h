// CPU kernels: element conversions, dequantize/quantize of every GGUF tensor type, dot products of a weight
// row with an activation row, and the batched matmul the forward pass uses. SIMD is chosen once at start
// (aero_kernels_init) from CPU detection; each ISA has its own file compiled with its own flags.
#ifndef AERO_KERNELS_H
#define AERO_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/dtype.h"
#include "../core/status.h"
#include "../core/threadpool.h"

typedef enum { AERO_ISA_SCALAR = 0, AERO_ISA_AVX2 = 1, AERO_ISA_AVX512 = 2 } aero_isa;

// Detects the CPU and selects the best ISA; idempotent and thread-safe. Env AERO_ISA=scalar|avx2|avx512 caps it.
void aero_kernels_init(void);
aero_isa aero_kernels_isa(void);
const char *aero_isa_name(aero_isa isa); // "scalar", "avx2", "avx512", "avx512-vnni"
bool aero_isa_available(aero_isa isa);   // compiled in and supported by this CPU

// Scalar element conversions (IEEE half, bfloat16 with round-to-nearest-even).
float aero_f16_to_f32(uint16_t h);
uint16_t aero_f32_to_f16(float f);
float aero_bf16_to_f32(uint16_t h);
uint16_t aero_f32_to_bf16(float f);
// Row conversions, SIMD-dispatched.
void aero_f16_to_f32_row(const uint16_t *x, float *y, int64_t n);
void aero_f32_to_f16_row(const float *x, uint16_t *y, int64_t n);
void aero_bf16_to_f32_row(const uint16_t *x, float *y, int64_t n);

// The activation type a weight type's quantized dot product takes: Q8_0 for the 32-blocks, Q8_K for the
// K-quants, F16 for F16, BF16 for BF16, F32 for F32.
aero_dtype aero_vec_dot_type(aero_dtype w);

// Scalar reference quantizer (also used for activations); n must be a multiple of the block size.
void aero_quantize_row(aero_dtype t, const float *x, void *y, int64_t n);
// Dequantizes a row of n elements (SIMD F16/BF16 conversions where there are some; the values equal the scalar
// reference's).
void aero_dequantize_row(aero_dtype t, const void *x, float *y, int64_t n);

// dot(w, a) with a already in aero_vec_dot_type(t), with the selected ISA. t must have kernels and n be a
// multiple of its block (aero_wmat_check); anything else is a bug (assertion).
float aero_vec_dot(aero_dtype t, int64_t n, const void *w, const void *a);
// Same with a chosen ISA (tests compare ISAs); the ISA must be available (aero_isa_available).
float aero_vec_dot_isa(aero_isa isa, aero_dtype t, int64_t n, const void *w, const void *a);
// dot(w, x) with exact f32 activations (no activation quantization), with the selected ISA.
float aero_vec_dot_f32(aero_dtype t, int64_t n, const void *w, const float *x);

// A weight matrix as stored: rows of `cols` elements, row r at data + r * row_bytes.
typedef struct {
    const void *data;
    aero_dtype type;
    int64_t cols;
    int64_t rows;
    size_t row_bytes;
} aero_wmat;

// y[i * w->rows + r] = dot(row r of W, x[i * w->cols ...]) for i in [0, n). Rows are split across the
// pool's threads. Batch invariant: every output element is reduced in the same order for any n and any
// thread count, so a token's result does not depend on its batch.
void aero_matmul(aero_pool *pool, const aero_wmat *w, const float *x, int n, float *y);

// Same, writing y[i * ldy + r] (ldy >= w->rows): W is a block of rows of a larger matrix whose outputs are
// ldy wide (a head streamed in row blocks); bitwise the same values as the whole matrix gives for those rows.
void aero_matmul_ld(aero_pool *pool, const aero_wmat *w, const float *x, int n, float *y, int64_t ldy);

// Several weights on one input x (q/k/v, gate/up; nw any, y[k] for w[k]): x is quantized once for the weights
// that share its activation layout, one pool start; each output has the bits aero_matmul gives it.
void aero_matmul_many(aero_pool *pool, const aero_wmat *const *w, int nw, const float *x, int n, float *const *y);

// Same, with exact f32 activations (aero_vec_dot_f32); slower, used where quantizing activations is unwanted.
void aero_matmul_f32(aero_pool *pool, const aero_wmat *w, const float *x, int n, float *y);

// Checks that aero_matmul can use W (type with kernels, whole blocks, row stride; not the data pointer); call
// once at load. The matmuls assume it passed and that data is set: a W that fails it is a bug (assertion).
aero_status aero_wmat_check(const aero_wmat *w, aero_error *err);

#endif
