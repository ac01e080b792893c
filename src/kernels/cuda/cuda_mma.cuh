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
// Where the f16 copy of n rows of cols and the per-token factors sit in the backend's scratch.
static inline void aero_mma_act_slots(float *scratch, int n, int cols, __half **xh, float **xs) {
    *xh = (__half *)scratch;
    *xs = scratch + (((size_t)n * cols / 2 + 63) & ~(size_t)63);
}

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
