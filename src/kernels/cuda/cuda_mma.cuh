// The tensor-core matmul (cuda_mma.cu) as cuda_matmul.cu's dispatch sees it.
#ifndef AERO_KERNELS_CUDA_MMA_CUH
#define AERO_KERNELS_CUDA_MMA_CUH

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "cuda_backend.h"

// Whether the tensor-core kernels are on (the default; AERO_CUDA_MM=v1 keeps every type on the f32 kernels).
bool aero_mma_enabled(void);
// Whether the quantized types take the int8 kernels (cuda_q8_kernel.cuh: the default with the tensor cores on;
// AERO_CUDA_MM=f16 keeps them on the f16 tensor-core kernels, for A/B runs).
bool aero_mma_int8_enabled(void);
// Whether a weight type has an int8 kernel (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K).
bool aero_q8_type(aero_dtype t);

// Whether a weight type has a tensor-core kernel (F16 and the quantized types; F32/BF16 keep the f32 kernel).
bool aero_mma_type(aero_dtype t);
// Where the f16 copy of n rows of cols and the per-token factors sit in the backend's scratch.
static inline void aero_mma_act_slots(float *scratch, int n, int cols, __half **xh, float **xs) {
    *xh = (__half *)scratch;
    *xs = scratch + (((size_t)n * cols / 2 + 63) & ~(size_t)63);
}

// Where the int8 codes [n][cols] and the block scales [n][cols / 32] {d, d * sum} sit, after the f16 slots.
static inline void aero_q8_act_slots(float *scratch, int n, int cols, int8_t **xq, float2 **xd) {
    const size_t nc = (size_t)n * cols, f16 = ((nc / 2 + 63) & ~(size_t)63) + (((size_t)n + 63) & ~(size_t)63);
    *xq = (int8_t *)(scratch + f16);
    *xd = (float2 *)(scratch + f16 + ((nc / 4 + 63) & ~(size_t)63));
}
// The floats of scratch the prepared activations of n rows of cols take (f16 copy and factors, int8 form).
static inline size_t aero_mma_act_floats(int n, int cols) {
    const size_t nc = (size_t)n * cols;
    return ((nc / 2 + 63) & ~(size_t)63) + (((size_t)n + 63) & ~(size_t)63) + ((nc / 4 + 63) & ~(size_t)63) + nc / 16;
}

// Queues the f16 copy of x [n][cols] and the per-token output factors into scratch, and with xq the int8 form
// (aero_q8_act_slots) from the same launch.
void aero_mma_prepare(const float *x, int n, int cols, float *scratch, const void **xh, const float **xs,
                      const void **xq, const float **xd, cudaStream_t s);
// Queues the int8 form of x [n][cols] alone (cols % 32 == 0) into the slots of aero_q8_act_slots.
void aero_q8_prepare(const float *x, int n, int cols, float *scratch, const void **xq, const float **xd, cudaStream_t s);
// Queues y = W x on the int8 kernels, tiles as aero_mma_launch; false for a type or shape without a kernel.
bool aero_q8_launch(const aero_cuda_wmat *w, const void *xq, const float *xd, int n, float *y, int mt, int nt,
                    cudaStream_t s);
// Queues y = W x with mt tiles of 16 rows and nt tiles of 8 tokens per block; false for a shape or type
// without a kernel. Every (mt, nt) gives the same bits.
bool aero_mma_launch(const aero_cuda_wmat *w, const void *xh, const float *xs, int n, float *y, int mt, int nt,
                     cudaStream_t s);
// Queues y[i] = W[i] x for count <= 3 matrices of one int8 type and width sharing x, n <= 8 tokens (the decode
// tile), as one launch whose blocks cover every matrix; false when they do not qualify (the caller loops).
bool aero_q8_launch_many(const aero_cuda_wmat *const w[], float *const y[], int count, const void *xq,
                         const float *xd, int n, cudaStream_t s);
// The tile shape for n tokens.
void aero_mma_tiles_for(int n, int *mt, int *nt);

#endif
