// The element-wise and per-token ops of a layer (RMSNorm, RoPE, SwiGLU, residual adds) and the F16 KV cache
// store (the attention over it is in cuda_attention.cu). Compiled with --fmad=false, so each expression rounds
// as the CPU's does.
#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>

#include "cuda_internal.cuh"

#define NORM_THREADS 256

// ---- RMSNorm ---------------------------------------------------------------------------------------------

// One block per row: thread t sums squares of elements t, t + 256, ...; lanes fold by xor butterfly, warps in
// index order. The order depends on dim only.
__global__ void k_rmsnorm(float *out, const float *x, const float *w, int dim, float eps) {
    __shared__ float red[NORM_THREADS / 32];
    __shared__ float scale;
    const float *xr = x + (size_t)blockIdx.x * dim;
    float *o = out + (size_t)blockIdx.x * dim;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < dim; i += NORM_THREADS) ss = ss + xr[i] * xr[i];
    for (int k = 16; k >= 1; k >>= 1) ss = ss + __shfl_xor_sync(0xffffffffu, ss, k);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
    __syncthreads();
    if (threadIdx.x == 0) {
        float t = red[0];
        for (int k = 1; k < NORM_THREADS / 32; k++) t = t + red[k];
        scale = 1.0f / sqrtf(t / (float)dim + eps);
    }
    __syncthreads();
    float sc = scale;
    for (int i = threadIdx.x; i < dim; i += NORM_THREADS) o[i] = xr[i] * sc * w[i];
}

extern "C" aero_status aero_cuda_rmsnorm(aero_cuda *cu, float *out, const float *x, const float *w, int n_rows, int dim,
                                         float eps, aero_error *err) {
    if (n_rows < 0 || dim <= 0) return aero_fail(err, AERO_ERR_INVALID, "CUDA rmsnorm of %d x %d", n_rows, dim);
    if (n_rows == 0) return AERO_OK;
    k_rmsnorm<<<n_rows, NORM_THREADS, 0, cu->compute>>>(out, x, w, dim, eps);
    CU_LAUNCHED("rmsnorm launch");
    return AERO_OK;
}

// ---- RoPE ------------------------------------------------------------------------------------------------

// One thread per rotated pair.
__global__ void k_rope(float *x, int n, int n_heads, int head_dim, int rope_dim, const int32_t *pos,
                       const float *inv_freq, int neox) {
    int half = rope_dim / 2;
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t total = (size_t)n * n_heads * half;
    if (idx >= total) return;
    int i = (int)(idx % half);
    size_t th = idx / half;
    int h = (int)(th % n_heads), t = (int)(th / n_heads);
    float *v = x + ((size_t)t * n_heads + h) * head_dim;
    float theta = (float)pos[t] * inv_freq[i];
    float c = cosf(theta), s = sinf(theta);
    int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
    float x0 = v[a], x1 = v[b];
    v[a] = x0 * c - x1 * s;
    v[b] = x0 * s + x1 * c;
}

extern "C" aero_status aero_cuda_rope(aero_cuda *cu, float *x, int n, int n_heads, int head_dim, int rope_dim,
                                      const int32_t *pos, const float *inv_freq, bool neox, aero_error *err) {
    if (n < 0 || n_heads <= 0 || head_dim <= 0 || rope_dim < 0 || rope_dim > head_dim || rope_dim % 2)
        return aero_fail(err, AERO_ERR_INVALID, "CUDA rope: %d heads of %d, rope_dim %d", n_heads, head_dim, rope_dim);
    size_t total = (size_t)n * n_heads * (rope_dim / 2);
    if (total == 0) return AERO_OK;
    k_rope<<<(unsigned)((total + 255) / 256), 256, 0, cu->compute>>>(x, n, n_heads, head_dim, rope_dim, pos, inv_freq,
                                                                      neox ? 1 : 0);
    CU_LAUNCHED("rope launch");
    return AERO_OK;
}

// ---- element-wise ----------------------------------------------------------------------------------------

__global__ void k_swiglu(float *out, const float *gate, const float *up, size_t count) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
}

__global__ void k_add(float *y, const float *x, size_t count) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) y[i] = y[i] + x[i];
}

__global__ void k_add_bias(float *y, const float *b, size_t count, int dim) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) y[i] = y[i] + b[i % dim];
}

extern "C" aero_status aero_cuda_swiglu(aero_cuda *cu, float *out, const float *gate, const float *up, size_t count,
                                        aero_error *err) {
    if (count == 0) return AERO_OK;
    k_swiglu<<<(unsigned)((count + 255) / 256), 256, 0, cu->compute>>>(out, gate, up, count);
    CU_LAUNCHED("swiglu launch");
    return AERO_OK;
}

extern "C" aero_status aero_cuda_add(aero_cuda *cu, float *y, const float *x, size_t count, aero_error *err) {
    if (count == 0) return AERO_OK;
    k_add<<<(unsigned)((count + 255) / 256), 256, 0, cu->compute>>>(y, x, count);
    CU_LAUNCHED("add launch");
    return AERO_OK;
}

extern "C" aero_status aero_cuda_add_bias(aero_cuda *cu, float *y, const float *b, int n, int dim, aero_error *err) {
    if (n < 0 || dim <= 0) return aero_fail(err, AERO_ERR_INVALID, "CUDA add_bias %d x %d", n, dim);
    size_t count = (size_t)n * dim;
    if (count == 0) return AERO_OK;
    k_add_bias<<<(unsigned)((count + 255) / 256), 256, 0, cu->compute>>>(y, b, count, dim);
    CU_LAUNCHED("add_bias launch");
    return AERO_OK;
}

// ---- KV cache --------------------------------------------------------------------------------------------

// One thread per cached element; __float2half_rn rounds to nearest even like aero_f32_to_f16.
__global__ void k_kv_store(uint16_t *kc, uint16_t *vc, const float *k, const float *v, int n, int kv_dim, int n_ctx,
                           const int32_t *seq, const int32_t *slot) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)n * kv_dim) return;
    int i = (int)(idx / kv_dim), d = (int)(idx % kv_dim);
    size_t dst = ((size_t)seq[i] * n_ctx + slot[i]) * kv_dim + d;
    kc[dst] = __half_as_ushort(__float2half_rn(k[idx]));
    vc[dst] = __half_as_ushort(__float2half_rn(v[idx]));
}

extern "C" aero_status aero_cuda_kv_store(aero_cuda_batch *b, uint16_t *k_cache, uint16_t *v_cache, const float *k,
                                          const float *v, int kv_dim, aero_error *err) {
    if (kv_dim <= 0) return aero_fail(err, AERO_ERR_INVALID, "CUDA kv_store: kv_dim %d", kv_dim);
    size_t total = (size_t)b->n * kv_dim;
    k_kv_store<<<(unsigned)((total + 255) / 256), 256, 0, b->cu->compute>>>(k_cache, v_cache, k, v, b->n, kv_dim,
                                                                             b->n_ctx, b->d_seq, b->d_slot);
    CU_LAUNCHED("kv_store launch");
    return AERO_OK;
}
