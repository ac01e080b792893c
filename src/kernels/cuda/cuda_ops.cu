// The element-wise and per-token ops of a layer (RMSNorm, RoPE, SwiGLU, residual adds) and the F16 KV cache
// store (the attention over it is in cuda_attention.cu). Compiled with --fmad=false, so each expression rounds
// as the CPU's does.
#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>

#include "cuda_internal.cuh"
#include "cuda_mma.cuh"
#include "cuda_mma_kernel.cuh"
#include "cuda_q8_kernel.cuh"

#define ROW_THREADS 1024 // the most threads of the per-row kernels (aero_row_threads)

// ---- RMSNorm ---------------------------------------------------------------------------------------------

// One block of aero_row_threads(dim) = T threads per row: thread t sums squares of elements t, t + T, ...; lanes
// fold by xor butterfly, warps in index order. The order depends on dim only. With `add`, the row is first
// updated in place (x += add, the residual add, each element by the thread that then squares it); with xp, the
// output is also written in the matmul layout (the prepared activations). Plain rmsnorm is this kernel with
// neither, so fused and unfused give the same bits by construction.
// With xh (the tensor-core kernels' input), the f16 copy of the output row is written by the same block, from
// the largest magnitude each thread saw while writing its elements; with xq, the int8 form too, each warp
// quantizing the 32-element block it just wrote (aero_q8_quant; dim % 32 == 0, so whole warps take a block).
__global__ void __launch_bounds__(ROW_THREADS) k_rmsnorm(float *out, float *x, const float *add, const float *w,
                                                         int dim, float eps, float *xp, __half *xh, float *xs,
                                                         int8_t *xq, float2 *xd) {
    __shared__ float red[ROW_THREADS / 32];
    __shared__ float scale;
    float *xr = x + (size_t)blockIdx.x * dim;
    const float *ar = add ? add + (size_t)blockIdx.x * dim : NULL;
    float *o = out + (size_t)blockIdx.x * dim;
    float ss = 0.0f;
#pragma unroll 4
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        float v = xr[i];
        if (ar) {
            v = v + ar[i];
            xr[i] = v;
        }
        ss = ss + v * v;
    }
    for (int k = 16; k >= 1; k >>= 1) ss = ss + __shfl_xor_sync(0xffffffffu, ss, k);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
    __syncthreads();
    if (threadIdx.x == 0) {
        float t = red[0];
        for (int k = 1; k < (int)(blockDim.x >> 5); k++) t = t + red[k];
        scale = 1.0f / sqrtf(t / (float)dim + eps);
    }
    __syncthreads();
    float sc = scale, mx = 0.0f;
    float *xpr = xp ? xp + (size_t)blockIdx.x * dim : NULL;
    int8_t *xqr = xq ? xq + (size_t)blockIdx.x * dim : NULL;
    float2 *xdr = xq ? xd + (size_t)blockIdx.x * (dim / 32) : NULL;
#pragma unroll 4
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        float y = xr[i] * sc * w[i];
        o[i] = y;
        mx = fmaxf(mx, fabsf(y));
        if (xpr) xpr[act_perm(dim, i)] = y;
        if (xqr) aero_q8_quant(y, i, xqr, xdr);
    }
    if (xh) aero_prep_row_f16_max(o, dim, mx, xh + (size_t)blockIdx.x * dim, xs + blockIdx.x);
}

extern "C" aero_status aero_cuda_rmsnorm(aero_cuda *cu, float *out, const float *x, const float *w, int n_rows, int dim,
                                         float eps, aero_error *err) {
    if (n_rows < 0 || dim <= 0) return aero_fail(err, AERO_ERR_INVALID, "CUDA rmsnorm of %d x %d", n_rows, dim);
    if (n_rows == 0) return AERO_OK;
    k_rmsnorm<<<n_rows, aero_row_threads(dim), 0, cu->compute>>>(out, (float *)x, NULL, w, dim, eps, NULL, NULL, NULL, NULL,
                                                                 NULL);
    CU_LAUNCHED("rmsnorm launch");
    return AERO_OK;
}

// Where a fused op writes the matmul input of n rows of cols: the backend's scratch, as aero_cuda_act_prepare
// (the permuted f32 copy, or with the tensor-core kernels the f16 copy and its factors where wanted, and the int8
// form unless AERO_CUDA_MM=f16); act holds only the natural rows when cols is not a multiple of 32 (dense weights read those).
struct act_out {
    float *xp, *xs;
    __half *xh;
    int8_t *xq;
    float2 *xd;
};
static aero_status act_target(aero_cuda *cu, float *out, int n, int cols, aero_cuda_act *act, act_out *o,
                              aero_error *err) {
    *o = act_out{NULL, NULL, NULL, NULL, NULL};
    if (!act) return AERO_OK;
    *act = aero_cuda_act{out, NULL, n, cols, NULL, NULL, NULL, NULL};
    if (cols % 32) return AERO_OK;
    if ((size_t)n * cols > cu->scratch_floats || (aero_mma_enabled() && aero_mma_act_floats(n, cols) > cu->scratch_floats))
        return aero_fail(err, AERO_ERR_RANGE, "CUDA activations %d x %d exceed the scratch of %zu floats", n, cols,
                         cu->scratch_floats);
    float **xp = &o->xp;
    if (aero_mma_enabled()) {
        if (aero_cuda_act_f16_wanted(cu)) {
            aero_mma_act_slots(cu->scratch, n, cols, &o->xh, &o->xs);
            act->xh = o->xh, act->xs = o->xs;
        }
        if (aero_mma_int8_enabled()) {
            aero_q8_act_slots(cu->scratch, n, cols, &o->xq, &o->xd);
            act->xq = o->xq, act->xd = (const float *)o->xd;
        }
    } else {
        *xp = cu->scratch;
        act->xp = cu->scratch;
    }
    return AERO_OK;
}

extern "C" aero_status aero_cuda_rmsnorm_act(aero_cuda *cu, float *out, float *x, const float *add, const float *w,
                                             int n_rows, int dim, float eps, aero_cuda_act *act, aero_error *err) {
    if (n_rows < 0 || dim <= 0) return aero_fail(err, AERO_ERR_INVALID, "CUDA rmsnorm of %d x %d", n_rows, dim);
    act_out o;
    aero_status st = act_target(cu, out, n_rows, dim, act, &o, err);
    if (st || n_rows == 0) return st;
    k_rmsnorm<<<n_rows, aero_row_threads(dim), 0, cu->compute>>>(out, x, add, w, dim, eps, o.xp, o.xh, o.xs, o.xq,
                                                                  o.xd);
    CU_LAUNCHED("rmsnorm launch");
    return AERO_OK;
}

// ---- RoPE ------------------------------------------------------------------------------------------------

// Rotates one pair by pos * inv_freq: the CPU's expressions (forward.c), shared by every kernel that ropes.
__device__ __forceinline__ void rope_pair(float &x0, float &x1, int pos, float inv_freq) {
    float theta = (float)pos * inv_freq;
    float c = cosf(theta), s = sinf(theta);
    float a = x0 * c - x1 * s, b = x0 * s + x1 * c;
    x0 = a;
    x1 = b;
}

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
    int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
    float x0 = v[a], x1 = v[b];
    rope_pair(x0, x1, pos[t], inv_freq[i]);
    v[a] = x0;
    v[b] = x1;
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

// With xp, the output is also written in the matmul layout of rows of cols (the down projection's input).
__global__ void k_swiglu(float *out, const float *gate, const float *up, size_t count, int cols, float *xp) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    float g = gate[i];
    float y = g / (1.0f + expf(-g)) * up[i];
    out[i] = y;
    if (xp) {
        size_t row = i / cols;
        xp[row * cols + act_perm(cols, (int)(i - row * cols))] = y;
    }
}

// One block (aero_row_threads) per row when the f16 copy is wanted: the products, then that row's f16 activations
// from the largest magnitude each thread saw (one launch, where k_swiglu and aero_mma_prepare take two); with xq
// the int8 form of each 32-element block as its warp writes it (aero_q8_quant; cols % 32 == 0).
__global__ void __launch_bounds__(ROW_THREADS) k_swiglu_f16(float *out, const float *gate, const float *up, int cols,
                                                            __half *xh, float *xs, int8_t *xq, float2 *xd) {
    const size_t base = (size_t)blockIdx.x * cols;
    int8_t *xqr = xq ? xq + base : NULL;
    float2 *xdr = xq ? xd + (size_t)blockIdx.x * (cols / 32) : NULL;
    float mx = 0.0f;
#pragma unroll 4
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        float g = gate[base + j];
        float y = g / (1.0f + expf(-g)) * up[base + j];
        out[base + j] = y;
        mx = fmaxf(mx, fabsf(y));
        if (xqr) aero_q8_quant(y, j, xqr, xdr);
    }
    aero_prep_row_f16_max(out + base, cols, mx, xh + base, xs + blockIdx.x);
}

// The int8 form alone (no f16 copy wanted): one element per thread over the whole batch, so a one-token row of
// n_ff spreads over many blocks (k_swiglu_f16 puts it on one SM); each warp quantizes the 32-element block it
// wrote (cols % 32 == 0, so a warp never straddles rows), the bytes k_swiglu_f16 writes.
__global__ void k_swiglu_q8(float *out, const float *gate, const float *up, size_t count, int8_t *xq, float2 *xd) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return; // count % 32 == 0: whole warps leave together (the quantization shuffles)
    float g = gate[i];
    float y = g / (1.0f + expf(-g)) * up[i];
    out[i] = y;
    aero_q8_quant(y, (int)i, xq, xd);
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
    k_swiglu<<<(unsigned)((count + 255) / 256), 256, 0, cu->compute>>>(out, gate, up, count, 1, NULL);
    CU_LAUNCHED("swiglu launch");
    return AERO_OK;
}

extern "C" aero_status aero_cuda_swiglu_act(aero_cuda *cu, float *out, const float *gate, const float *up, int n,
                                            int cols, aero_cuda_act *act, aero_error *err) {
    if (n < 0 || cols <= 0) return aero_fail(err, AERO_ERR_INVALID, "CUDA swiglu of %d x %d", n, cols);
    act_out o;
    aero_status st = act_target(cu, out, n, cols, act, &o, err);
    size_t count = (size_t)n * cols;
    if (st || count == 0) return st;
    if (o.xh) k_swiglu_f16<<<n, aero_row_threads(cols), 0, cu->compute>>>(out, gate, up, cols, o.xh, o.xs, o.xq, o.xd);
    else if (o.xq) k_swiglu_q8<<<(unsigned)((count + 255) / 256), 256, 0, cu->compute>>>(out, gate, up, count, o.xq, o.xd);
    else k_swiglu<<<(unsigned)((count + 255) / 256), 256, 0, cu->compute>>>(out, gate, up, count, cols, o.xp);
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

// F32 -> F16 cache element, rounding to nearest even like aero_f32_to_f16 (the expression of k_kv_store).
__device__ __forceinline__ uint16_t to_f16(float x) { return __half_as_ushort(__float2half_rn(x)); }

// One thread per pair of dims of a head of q, k or v (q's heads first, then k's, then v's): the bias adds, the
// rotation (q and k, dims under rope_dim) and the cache store (k and v), each with the unfused ops' expressions.
// Pair j < rope_dim / 2 is the rotated pair (adjacent or halves); pair j beyond covers dims rope_dim + 2 (j - half)
// and the next, which only get their bias and their store.
__global__ void k_rope_kv(float *q, float *k, float *v, const float *bq, const float *bk, const float *bv, int n,
                          int n_head, int n_kv, int hd, int rope_dim, const int32_t *pos, const float *inv_freq,
                          int neox, uint16_t *kc, uint16_t *vc, int n_ctx, const int32_t *seq, const int32_t *slot) {
    const int pairs = hd / 2, half = rope_dim / 2;
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t nq = (size_t)n * n_head * pairs, nk = (size_t)n * n_kv * pairs;
    if (idx >= nq + 2 * nk) return;
    int part = idx < nq ? 0 : idx < nq + nk ? 1 : 2;
    size_t r = part == 0 ? idx : part == 1 ? idx - nq : idx - nq - nk;
    int heads = part == 0 ? n_head : n_kv;
    int j = (int)(r % pairs);
    size_t th = r / pairs;
    int h = (int)(th % heads), t = (int)(th / heads);
    int a, b;
    if (j < half) a = neox ? j : 2 * j, b = neox ? j + half : 2 * j + 1;
    else a = rope_dim + 2 * (j - half), b = a + 1;
    float *row = (part == 0 ? q : part == 1 ? k : v) + ((size_t)t * heads + h) * hd;
    const float *bias = part == 0 ? bq : part == 1 ? bk : bv;
    bool rotate = part < 2 && j < half;
    float x0 = row[a], x1 = row[b];
    if (bias) x0 = x0 + bias[(size_t)h * hd + a], x1 = x1 + bias[(size_t)h * hd + b];
    if (rotate) rope_pair(x0, x1, pos[t], inv_freq[j]);
    if (bias || rotate) row[a] = x0, row[b] = x1;
    if (part > 0) {
        uint16_t *cache = (part == 1 ? kc : vc) + ((size_t)seq[t] * n_ctx + slot[t]) * ((size_t)n_kv * hd) +
                          (size_t)h * hd;
        cache[a] = to_f16(x0);
        cache[b] = to_f16(x1);
    }
}

extern "C" aero_status aero_cuda_rope_kv_store(aero_cuda_batch *b, const aero_cuda_qkv *a, aero_error *err) {
    int hd = a->head_dim;
    if (a->n_head <= 0 || a->n_head_kv <= 0 || hd <= 0 || hd % 2 || a->rope_dim < 0 || a->rope_dim > hd ||
        a->rope_dim % 2 || !a->q || !a->k || !a->v || !a->k_cache || !a->v_cache || (a->rope_dim && !a->inv_freq))
        return aero_fail(err, AERO_ERR_INVALID, "CUDA rope_kv_store: %d/%d heads of %d, rope_dim %d", a->n_head,
                         a->n_head_kv, hd, a->rope_dim);
    if (b->n <= 0) return aero_fail(err, AERO_ERR_INVALID, "CUDA rope_kv_store without a batch");
    size_t total = (size_t)b->n * (a->n_head + 2 * (size_t)a->n_head_kv) * (hd / 2);
    k_rope_kv<<<(unsigned)((total + 255) / 256), 256, 0, b->cu->compute>>>(
        a->q, a->k, a->v, a->bq, a->bk, a->bv, b->n, a->n_head, a->n_head_kv, hd, a->rope_dim, b->d_pos, a->inv_freq,
        a->neox ? 1 : 0, a->k_cache, a->v_cache, b->n_ctx, b->d_seq, b->d_slot);
    CU_LAUNCHED("rope_kv_store launch");
    return AERO_OK;
}

