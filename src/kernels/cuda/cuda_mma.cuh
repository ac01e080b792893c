// The tensor-core matmul (cuda_mma.cu) as cuda_matmul.cu's dispatch sees it.
#ifndef AERO_KERNELS_CUDA_MMA_CUH
#define AERO_KERNELS_CUDA_MMA_CUH

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "cuda_backend.h"

// Whether the tensor-core kernels are on (the default; AERO_CUDA_MM=v1 keeps every type on the f32 kernels).
bool aero_mma_enabled(void);

// Whether a weight type has a tensor-core kernel (F16 and the quantized types; F32/BF16 keep the f32 kernel).
bool aero_mma_type(aero_dtype t);
// Scratch floats aero_mma_prepare needs for n rows of cols activations.
size_t aero_mma_prep_floats(int n, int cols);
// Where the f16 copy of n rows of cols and the per-token factors sit in the backend's scratch.
static inline void aero_mma_act_slots(float *scratch, int n, int cols, __half **xh, float **xs) {
    *xh = (__half *)scratch;
    *xs = scratch + (((size_t)n * cols / 2 + 63) & ~(size_t)63);
}

#ifdef __CUDACC__
// One block's part of the f16 activations for the row it just wrote (row, cols): the largest magnitude (max is
// exact in any order), the power-of-two factor that keeps it within 2^15, then the scaled row rounded to f16;
// *xs = the inverse factor, applied to the matmul's outputs. Every thread of the block must call it; the ops
// that write a row (rmsnorm) call it after, so their fused output is bitwise aero_mma_prepare's.
__device__ __forceinline__ void aero_prep_row_f16(const float *row, int cols, __half *xh, float *xs) {
    __shared__ float wmax[32];
    __syncthreads(); // the row written by this block is visible; wmax is free
    float mx = 0.0f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) mx = fmaxf(mx, fabsf(row[j]));
    for (int o = 16; o >= 1; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    if ((threadIdx.x & 31) == 0) wmax[threadIdx.x >> 5] = mx;
    __syncthreads();
    mx = 0.0f;
    for (int w = 0; w < (int)((blockDim.x + 31) >> 5); w++) mx = fmaxf(mx, wmax[w]);
    int e = 0; // mx <= 2^15 * 2^e
    if (mx > 32768.0f && mx <= 3.0e38f) frexpf(mx / 32768.0f, &e); // mx / 2^15 = f * 2^e, f in [0.5, 1)
    const float down = ldexpf(1.0f, -e);
    for (int j = threadIdx.x; j < cols; j += blockDim.x) xh[j] = __float2half_rn(row[j] * down);
    if (threadIdx.x == 0) *xs = ldexpf(1.0f, e);
}
#endif

// Queues the f16 copy of x [n][cols] and the per-token output factors into scratch.
void aero_mma_prepare(const float *x, int n, int cols, float *scratch, const void **xh, const float **xs,
                      cudaStream_t s);
// Queues y = W x with mt tiles of 16 rows and nt tiles of 8 tokens per block; false for a shape or type
// without a kernel. Every (mt, nt) gives the same bits.
bool aero_mma_launch(const aero_cuda_wmat *w, const void *xh, const float *xs, int n, float *y, int mt, int nt,
                     cudaStream_t s);
// The tile shape for n tokens.
void aero_mma_tiles_for(int n, int *mt, int *nt);

#endif
