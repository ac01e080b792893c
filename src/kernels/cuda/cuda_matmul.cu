// Matrix-vector and batched matmul over weights in their GGUF layout, dequantized in registers, and the
// embedding row lookup. Compiled with --fmad=false: every multiply-add below is an explicit fmaf, so the
// compiler cannot fuse differently in the one-token and the many-token instantiations.
//
// Reduction order (batch invariance): a row of `cols` elements is cut into chunks of 32 (a Q4_0/Q8_0 block,
// one 32-group of a K-quant super-block, or, for dense types, 32 elements at fixed permuted positions, see
// xpos). Thread t of the 128 of a block takes chunks t, t + 128, ... in that order; inside a chunk, each
// half of 16 elements is summed in element order (s = fma(q, x, s)) and folded into the thread's
// accumulator as acc = fma(scale, s, acc) (and, for Q4_K/Q5_K, acc = fma(-min, sum of x, acc)). The 32
// lanes of a warp are then folded by an xor butterfly and the 4 warps as (w0 + w1) + (w2 + w3). Nothing
// here depends on how many rows (R) or tokens (T) a block holds, so every kernel shape, and every batch
// size, gives the same bits. Codes become floats exactly (byte permute into 2^23 + q, then subtract).
#include <cuda_fp16.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.cuh"
#include "cuda_mma.cuh"

#define MM_THREADS 128

#include "cuda_decode.cuh"

// ---- the matmul kernel -----------------------------------------------------------------------------------

// R rows x T tokens per block of 128 threads; grid (ceil(rows / R), ceil(n / T)). X is [n][cols] in the layout
// above (natural for dense weights, the permuted copy for quantized ones).
template <int TY, int R, int T>
__global__ void __launch_bounds__(MM_THREADS) k_matmul(const uint8_t *__restrict__ W, size_t row_bytes, int rows,
                                                       int cols, const float *__restrict__ X, int n,
                                                       float *__restrict__ Y) {
    typedef Dec<TY> D;
    __shared__ float red[MM_THREADS / 32][R][T];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int r0 = blockIdx.x * R, t0 = blockIdx.y * T;
    const int nt = min(T, n - t0);
    const int nchunks = cols / 32;
    const uint8_t *rowp[R];
#pragma unroll
    for (int r = 0; r < R; r++) rowp[r] = W + (size_t)min(r0 + r, rows - 1) * row_bytes;
    const float *xb = X + (size_t)t0 * cols;

    float acc[R][T];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < T; t++) acc[r][t] = 0.0f;

    for (int k = 0; 128 * k < nchunks; k++) {
        const int m = min(MM_THREADS, nchunks - 128 * k);
        if (tid >= m) break;
        const int c = 128 * k + tid;
        float dl[R][2], ml[R][2];
#pragma unroll
        for (int r = 0; r < R; r++) D::scales(rowp[r], c, dl[r], ml[r]);
#pragma unroll
        for (int h = 0; h < 2; h++) {
            float s[R][T], sx[T];
#pragma unroll
            for (int t = 0; t < T; t++) {
                sx[t] = 0.0f;
#pragma unroll
                for (int r = 0; r < R; r++) s[r][t] = 0.0f;
            }
#pragma unroll
            for (int pp = 0; pp < 2; pp++) {
                const int p = 2 * h + pp;
                const int pa = xpos(k, m, tid, 2 * p), pb = pa + 4 * m;
                float q[R][8];
#pragma unroll
                for (int r = 0; r < R; r++) D::decode8(rowp[r], c, p, pa, pb, q[r]);
#pragma unroll
                for (int t = 0; t < T; t++) {
                    if (t < nt) {
                        const float *xt = xb + (size_t)t * cols;
                        float4 a = __ldg((const float4 *)(xt + pa)), b = __ldg((const float4 *)(xt + pb));
                        float xv[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
                        for (int j = 0; j < 8; j++) {
#pragma unroll
                            for (int r = 0; r < R; r++) s[r][t] = fmaf(q[r][j], xv[j], s[r][t]);
                            if (D::MIN) sx[t] = sx[t] + xv[j];
                        }
                    }
                }
            }
#pragma unroll
            for (int r = 0; r < R; r++)
#pragma unroll
                for (int t = 0; t < T; t++) {
                    if (D::DENSE) acc[r][t] = acc[r][t] + s[r][t];
                    else acc[r][t] = fmaf(dl[r][h], s[r][t], acc[r][t]);
                    if (D::MIN) acc[r][t] = fmaf(-ml[r][h], sx[t], acc[r][t]);
                }
        }
    }
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < T; t++) {
            float v = acc[r][t];
#pragma unroll
            for (int o = 16; o >= 1; o >>= 1) v = v + __shfl_xor_sync(0xffffffffu, v, o);
            if (lane == 0) red[warp][r][t] = v;
        }
    __syncthreads();
    if (tid < R * T) {
        int r = tid / T, t = tid % T;
        if (r0 + r < rows && t < nt) {
            float v = (red[0][r][t] + red[1][r][t]) + (red[2][r][t] + red[3][r][t]);
            Y[(size_t)(t0 + t) * rows + r0 + r] = v;
        }
    }
}

// Dense weights whose rows are not a whole number of 32-chunks: one warp per (row, token), lane j sums
// elements j, j + 32, ... in order, then the xor butterfly. The order depends on cols only (batch invariant).
template <int TY>
__global__ void k_matmul_dense_any(const uint8_t *__restrict__ W, size_t row_bytes, int rows, int cols,
                                   const float *__restrict__ X, int n, float *__restrict__ Y) {
    const int lane = threadIdx.x & 31, r = blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5), t = blockIdx.y;
    if (r >= rows || t >= n) return;
    const uint8_t *row = W + (size_t)r * row_bytes;
    const float *x = X + (size_t)t * cols;
    float s = 0.0f;
    for (int j = lane; j < cols; j += 32) {
        float w;
        if (TY == AERO_DT_F32) w = ((const float *)row)[j];
        else if (TY == AERO_DT_F16) w = __half2float(((const __half *)row)[j]);
        else w = __uint_as_float((uint32_t)((const uint16_t *)row)[j] << 16);
        s = fmaf(w, x[j], s);
    }
    for (int o = 16; o >= 1; o >>= 1) s = s + __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) Y[(size_t)t * rows + r] = s;
}

// Permutes activation rows into the chunk layout of k_matmul (act_perm). One thread per float4; an exact copy.
__global__ void k_permute(const float4 *__restrict__ x, float4 *__restrict__ xp, int n, int cols) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t per = (size_t)cols / 4;
    if (idx >= per * n) return;
    size_t i = idx / per;
    int f = (int)(idx % per);
    xp[i * per + act_perm(cols, 4 * f) / 4] = x[idx];
}

// ---- embedding rows --------------------------------------------------------------------------------------

// One thread per 8 outputs: element = dl * q - ml, the CPU reference's expression (q * d for the 32-blocks).
// Dense types read their natural positions (pa, pb = the two float4 of the piece).
template <int TY>
__global__ void k_get_rows(const uint8_t *__restrict__ W, size_t row_bytes, int rows, int cols,
                           const int32_t *__restrict__ ids, int n, float *__restrict__ out) {
    typedef Dec<TY> D;
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t per_row = (size_t)cols / 8;
    if (idx >= per_row * n) return;
    int i = (int)(idx / per_row), e8 = (int)(idx % per_row);
    int c = e8 / 4, p = e8 % 4;
    float *o = out + (size_t)i * cols + (size_t)e8 * 8;
    int id = ids[i];
    if (id < 0 || id >= rows) {
        for (int j = 0; j < 8; j++) o[j] = 0.0f;
        return;
    }
    const uint8_t *row = W + (size_t)id * row_bytes;
    float v[8], dl[2] = {1.0f, 1.0f}, ml[2] = {0.0f, 0.0f};
    D::decode8(row, c, p, e8 * 8, e8 * 8 + 4, v);
    D::scales(row, c, dl, ml);
    float d = dl[p >> 1], mn = ml[p >> 1];
#pragma unroll
    for (int j = 0; j < 8; j++) {
        float y;
        if (D::DENSE) y = v[j];
        else if (TY == AERO_DT_Q4_0 || TY == AERO_DT_Q8_0) y = v[j] * d;
        else y = d * v[j] - mn;
        o[j] = y;
    }
}

// ---- host side -------------------------------------------------------------------------------------------

extern "C" bool aero_cuda_type_supported(aero_dtype t) {
    switch (t) {
    case AERO_DT_F32:
    case AERO_DT_F16:
    case AERO_DT_BF16:
    case AERO_DT_Q8_0:
    case AERO_DT_Q4_0:
    case AERO_DT_Q4_K:
    case AERO_DT_Q5_K:
    case AERO_DT_Q6_K: return true;
    default: return false;
    }
}

// The alignment each decoder's loads need from a row start.
static size_t row_align(aero_dtype t) {
    switch (t) {
    case AERO_DT_F32:
    case AERO_DT_F16:
    case AERO_DT_BF16:
    case AERO_DT_Q4_K:
    case AERO_DT_Q5_K: return 16;
    default: return 2;
    }
}

extern "C" aero_status aero_cuda_wmat_check(const aero_cuda_wmat *w, aero_error *err) {
    if (!w || !w->data) return aero_fail(err, AERO_ERR_INVALID, "CUDA weight matrix without data");
    if (!aero_cuda_type_supported(w->type))
        return aero_fail(err, AERO_ERR_UNSUPPORTED, "no CUDA kernel for weight type %s", aero_dtype_name(w->type));
    bool any_width = w->type == AERO_DT_F32 || w->type == AERO_DT_F16 || w->type == AERO_DT_BF16;
    if (w->cols <= 0 || w->rows <= 0 || (w->cols % 32 && !any_width) || w->cols > (1 << 30) || w->rows > INT32_MAX)
        return aero_fail(err, AERO_ERR_UNSUPPORTED, "CUDA weight matrix %lld x %lld (cols must be a multiple of 32)",
                         (long long)w->rows, (long long)w->cols);
    size_t rb = aero_dtype_row_bytes(w->type, (uint64_t)w->cols), al = row_align(w->type);
    if (w->cols % 32) al = w->type == AERO_DT_F32 ? 4 : 2; // the plain kernel reads single elements
    if (w->row_bytes < rb || w->row_bytes % al || (uintptr_t)w->data % al)
        return aero_fail(err, AERO_ERR_INVALID, "CUDA %s matrix: row stride %zu (rows of %zu bytes, alignment %zu)",
                         aero_dtype_name(w->type), w->row_bytes, rb, al);
    return AERO_OK;
}

template <int TY, int R, int T> static void launch_mm(const aero_cuda_wmat *w, const float *x, int n, float *y, cudaStream_t s) {
    dim3 grid((unsigned)((w->rows + R - 1) / R), (unsigned)((n + T - 1) / T));
    k_matmul<TY, R, T><<<grid, MM_THREADS, 0, s>>>((const uint8_t *)w->data, w->row_bytes, (int)w->rows, (int)w->cols,
                                                     x, n, y);
}

template <int TY> static bool launch_shape(const aero_cuda_wmat *w, const float *x, int n, float *y, int R, int T, cudaStream_t s) {
    if (T == 1) {
        if (R == 1) launch_mm<TY, 1, 1>(w, x, n, y, s);
        else if (R == 2) launch_mm<TY, 2, 1>(w, x, n, y, s);
        else if (R == 4) launch_mm<TY, 4, 1>(w, x, n, y, s);
        else if (R == 8) launch_mm<TY, 8, 1>(w, x, n, y, s);
        else return false;
    } else if (T == 8) {
        if (R == 1) launch_mm<TY, 1, 8>(w, x, n, y, s);
        else if (R == 2) launch_mm<TY, 2, 8>(w, x, n, y, s);
        else if (R == 4) launch_mm<TY, 4, 8>(w, x, n, y, s);
        else if (R == 8) launch_mm<TY, 8, 8>(w, x, n, y, s);
        else return false;
    } else if (T == 16) {
        if (R == 1) launch_mm<TY, 1, 16>(w, x, n, y, s);
        else if (R == 2) launch_mm<TY, 2, 16>(w, x, n, y, s);
        else if (R == 4) launch_mm<TY, 4, 16>(w, x, n, y, s);
        else return false;
    } else if (T == 32) {
        if (R == 1) launch_mm<TY, 1, 32>(w, x, n, y, s);
        else if (R == 2) launch_mm<TY, 2, 32>(w, x, n, y, s);
        else return false;
    } else {
        return false;
    }
    return true;
}

// The decode shape (rows per block for one token), chosen by the bandwidth benchmark.
#ifndef AERO_CUDA_MV_ROWS
#define AERO_CUDA_MV_ROWS 4
#endif

static bool is_dense(aero_dtype t) { return t == AERO_DT_F32 || t == AERO_DT_F16 || t == AERO_DT_BF16; }

// The tensor-core tile (mt tiles of 16 rows x nt tiles of 8 tokens) nearest to a requested shape of R rows x T
// tokens per block, among those instantiated: 1 x {1, 2}, 2 x {1, 4, 8}, and 4 x 4 for the int8 kernels (q8).
static void mma_tile(int R, int T, bool q8, int *mt, int *nt) {
    *mt = q8 && R >= 4 ? 4 : R >= 2 ? 2 : 1;
    *nt = *mt == 4 ? 4 : *mt == 1 ? (T >= 16 ? 2 : 1) : (T >= 64 ? 8 : T >= 16 ? 4 : 1);
}

extern "C" void aero_cuda_act_f16_note(aero_cuda *cu, aero_dtype t) { cu->act_f16 |= aero_cuda_matmul_f16(t); }

bool aero_cuda_act_f16_wanted(const aero_cuda *cu) { return !aero_mma_int8_enabled() || cu->act_f16; }

// The path of a type under AERO_CUDA_MM (cuda_mma.cu): int8 for the quantized types by default, f16 for F16.
extern "C" bool aero_cuda_matmul_int8(aero_dtype t) {
    return aero_mma_enabled() && aero_mma_int8_enabled() && aero_q8_type(t);
}
extern "C" bool aero_cuda_matmul_f16(aero_dtype t) {
    return aero_mma_enabled() && aero_mma_type(t) && !aero_cuda_matmul_int8(t);
}

// Whether a type's matmul reads prepared activations (f16 or int8 tensor-core copies, or the permuted f32 copy)
// for rows of cols; dense f32 kernels and rows that are not whole 32-chunks read x itself.
static bool reads_prepared(aero_dtype t, int cols) {
    return aero_cuda_matmul_f16(t) || aero_cuda_matmul_int8(t) ? cols % 32 == 0 : !is_dense(t);
}

extern "C" aero_status aero_cuda_act_prepare(aero_cuda *cu, const float *x, int n, int cols, aero_cuda_act *out,
                                             aero_error *err) {
    *out = aero_cuda_act{x, NULL, n, cols, NULL, NULL, NULL, NULL};
    if (n <= 0 || cols <= 0 || cols % 32 || !x || (uintptr_t)x % 16)
        return aero_fail(err, AERO_ERR_INVALID, "CUDA activations %d x %d (cols a multiple of 32, 16-byte aligned)", n, cols);
    if ((size_t)n * cols > cu->scratch_floats || (aero_mma_enabled() && aero_mma_act_floats(n, cols) > cu->scratch_floats))
        return aero_fail(err, AERO_ERR_RANGE, "CUDA activations %d x %d exceed the scratch of %zu floats", n, cols,
                         cu->scratch_floats);
    if (aero_mma_enabled()) { // the f16 copy where wanted, and the int8 form unless AERO_CUDA_MM=f16
        const bool q8 = aero_mma_int8_enabled();
        if (aero_cuda_act_f16_wanted(cu))
            aero_mma_prepare(x, n, cols, cu->scratch, &out->xh, &out->xs, q8 ? &out->xq : NULL, q8 ? &out->xd : NULL,
                             cu->compute);
        else
            aero_q8_prepare(x, n, cols, cu->scratch, &out->xq, &out->xd, cu->compute);
        CU_LAUNCHED("activations launch");
        return AERO_OK;
    }
    size_t total = (size_t)n * cols / 4;
    k_permute<<<(unsigned)((total + 255) / 256), 256, 0, cu->compute>>>((const float4 *)x, (float4 *)cu->scratch, n, cols);
    CU_LAUNCHED("permute launch");
    out->xp = cu->scratch;
    return AERO_OK;
}

extern "C" aero_status aero_cuda_matmul_shape(aero_cuda *cu, const aero_cuda_wmat *w, const aero_cuda_act *a, float *y,
                                              int R, int T, aero_error *err) {
    aero_status st = aero_cuda_wmat_check(w, err);
    if (st) return st;
    int n = a->n;
    if (n <= 0) return n == 0 ? AERO_OK : aero_fail(err, AERO_ERR_INVALID, "CUDA matmul over %d tokens", n);
    if (a->cols != w->cols)
        return aero_fail(err, AERO_ERR_INVALID, "CUDA matmul: activations of %d for a matrix of %lld columns", a->cols,
                         (long long)w->cols);
    const float *x = is_dense(w->type) ? a->x : a->xp;
    if ((!x && !aero_cuda_matmul_f16(w->type) && !aero_cuda_matmul_int8(w->type)) || !y) return aero_fail(err, AERO_ERR_INVALID, "CUDA matmul: %s activations missing",
                                   is_dense(w->type) ? "natural" : "prepared");
    if ((n + T - 1) / (T > 0 ? T : 1) > 65535)
        return aero_fail(err, AERO_ERR_RANGE, "CUDA matmul of %d tokens (at most %d per call)", n, 65535 * T);
    cudaStream_t s = cu->compute;
    bool ok = false;
    if (aero_cuda_matmul_int8(w->type)) { // cols % 32 == 0 (wmat_check); the f16 kernels' tiles and 4 x 4
        if (!a->xq || !a->xd) return aero_fail(err, AERO_ERR_INVALID, "CUDA matmul: int8 activations missing");
        int mt, nt;
        mma_tile(R, T, true, &mt, &nt);
        if (!aero_q8_launch(w, a->xq, a->xd, n, y, mt, nt, s))
            return aero_fail(err, AERO_ERR_INVALID, "CUDA int8 matmul: no %d x %d tile kernel", mt, nt);
        CU_LAUNCHED("int8 tensor-core matmul launch");
        return AERO_OK;
    }
    if (aero_cuda_matmul_f16(w->type) && w->cols % 32 == 0) {
        const void *xh = a->xh;
        const float *xs = a->xs;
        if (!xh && a->x) { // prepared for the int8 kernels only (aero_cuda_act_f16_note): the f16 copy now
            aero_mma_prepare(a->x, n, a->cols, cu->scratch, &xh, &xs, NULL, NULL, s);
            CU_LAUNCHED("f16 activations launch");
        }
        if (!xh || !xs || !y) return aero_fail(err, AERO_ERR_INVALID, "CUDA matmul: f16 activations missing");
        int mt, nt;
        mma_tile(R, T, false, &mt, &nt);
        if (!aero_mma_launch(w, xh, xs, n, y, mt, nt, s))
            return aero_fail(err, AERO_ERR_INVALID, "CUDA tensor-core matmul: no %d x %d tile kernel", mt, nt);
        CU_LAUNCHED("tensor-core matmul launch");
        return AERO_OK;
    }
    if (w->cols % 32) { // dense only (wmat_check): the plain kernel, whatever the shape asked
        if (n > 65535) return aero_fail(err, AERO_ERR_RANGE, "CUDA matmul of %d tokens (at most 65535 per call)", n);
        dim3 grid((unsigned)((w->rows + 3) / 4), (unsigned)n);
        const uint8_t *wd = (const uint8_t *)w->data;
        if (w->type == AERO_DT_F32) k_matmul_dense_any<AERO_DT_F32><<<grid, 128, 0, s>>>(wd, w->row_bytes, (int)w->rows, (int)w->cols, a->x, n, y);
        else if (w->type == AERO_DT_F16) k_matmul_dense_any<AERO_DT_F16><<<grid, 128, 0, s>>>(wd, w->row_bytes, (int)w->rows, (int)w->cols, a->x, n, y);
        else k_matmul_dense_any<AERO_DT_BF16><<<grid, 128, 0, s>>>(wd, w->row_bytes, (int)w->rows, (int)w->cols, a->x, n, y);
        CU_LAUNCHED("matmul launch");
        return AERO_OK;
    }
    switch (w->type) {
    case AERO_DT_F32: ok = launch_shape<AERO_DT_F32>(w, x, n, y, R, T, s); break;
    case AERO_DT_F16: ok = launch_shape<AERO_DT_F16>(w, x, n, y, R, T, s); break;
    case AERO_DT_BF16: ok = launch_shape<AERO_DT_BF16>(w, x, n, y, R, T, s); break;
    case AERO_DT_Q8_0: ok = launch_shape<AERO_DT_Q8_0>(w, x, n, y, R, T, s); break;
    case AERO_DT_Q4_0: ok = launch_shape<AERO_DT_Q4_0>(w, x, n, y, R, T, s); break;
    case AERO_DT_Q4_K: ok = launch_shape<AERO_DT_Q4_K>(w, x, n, y, R, T, s); break;
    case AERO_DT_Q5_K: ok = launch_shape<AERO_DT_Q5_K>(w, x, n, y, R, T, s); break;
    case AERO_DT_Q6_K: ok = launch_shape<AERO_DT_Q6_K>(w, x, n, y, R, T, s); break;
    default: break;
    }
    if (!ok) return aero_fail(err, AERO_ERR_INVALID, "CUDA matmul shape %d rows x %d tokens per block", R, T);
    CU_LAUNCHED("matmul launch");
    return AERO_OK;
}

// The batched shape, rows x tokens per block: 4 x 8 unless AERO_CUDA_MM_SHAPE (e.g. "2x16") names another
// that exists (benchmarks compare them; every shape gives the same bits).
static void batched_shape(int *R, int *T) {
    static int r = 0, t = 0;
    if (!r) {
        const char *e = getenv("AERO_CUDA_MM_SHAPE");
        int a = 0, b = 0;
        bool ok = e && sscanf(e, "%dx%d", &a, &b) == 2 &&
                  ((b == 8 && (a == 1 || a == 2 || a == 4 || a == 8)) || (b == 16 && (a == 1 || a == 2 || a == 4)) ||
                   (b == 32 && (a == 1 || a == 2)));
        r = ok ? a : 4;
        t = ok ? b : 8;
    }
    *R = r;
    *T = t;
}

// One token: the decode shape; more: the batched shape (each weight chunk decoded once for T tokens).
extern "C" aero_status aero_cuda_matmul_act(aero_cuda *cu, const aero_cuda_wmat *w, const aero_cuda_act *a, float *y,
                                            aero_error *err) {
    int R, T;
    if ((aero_cuda_matmul_f16(w->type) || aero_cuda_matmul_int8(w->type)) && w->cols % 32 == 0) {
        int mt, nt;
        aero_mma_tiles_for(a->n, &mt, &nt);
        return aero_cuda_matmul_shape(cu, w, a, y, mt, 8 * nt, err);
    }
    batched_shape(&R, &T);
    return a->n == 1 ? aero_cuda_matmul_shape(cu, w, a, y, AERO_CUDA_MV_ROWS, 1, err)
                     : aero_cuda_matmul_shape(cu, w, a, y, R, T, err);
}

// One launch when every matrix qualifies for k_q8_many, else aero_cuda_matmul_act per matrix (same bits).
extern "C" aero_status aero_cuda_matmul_many(aero_cuda *cu, const aero_cuda_wmat *const w[], float *const y[],
                                             int count, const aero_cuda_act *a, aero_error *err) {
    if (count < 1) return AERO_OK;
    bool one = count <= 3 && a->n >= 1 && a->n <= 8 && a->xq && a->xd;
    for (int i = 0; i < count && one; i++) {
        if (aero_cuda_wmat_check(w[i], err)) return err->code;
        one = y[i] && aero_cuda_matmul_int8(w[i]->type) && w[i]->type == w[0]->type && w[i]->cols == a->cols;
    }
    if (one && aero_q8_launch_many(w, y, count, a->xq, a->xd, a->n, cu->compute)) {
        CU_LAUNCHED("int8 tensor-core matmul launch (several matrices)");
        return AERO_OK;
    }
    for (int i = 0; i < count; i++) {
        aero_status st = aero_cuda_matmul_act(cu, w[i], a, y[i], err);
        if (st) return st;
    }
    return AERO_OK;
}

// Prepares and multiplies, in groups of tokens that fit the scratch (tokens are independent: same bits).
extern "C" aero_status aero_cuda_matmul(aero_cuda *cu, const aero_cuda_wmat *w, const float *x, int n, float *y,
                                        aero_error *err) {
    aero_status st = aero_cuda_wmat_check(w, err);
    if (st) return st;
    if (n <= 0) return n == 0 ? AERO_OK : aero_fail(err, AERO_ERR_INVALID, "CUDA matmul over %d tokens", n);
    aero_cuda_act_f16_note(cu, w->type); // its activations prepared with the f16 copy it reads
    int cols = (int)w->cols, group = (int)(cu->scratch_floats / (size_t)cols);
    bool prepared = reads_prepared(w->type, cols);
    if (aero_mma_enabled()) // the tensor-core copies: ~0.81 n cols + n + 256 floats (aero_mma_act_floats)
        group = (int)((cu->scratch_floats - 256) / ((size_t)cols + 1));
    if (!prepared) group = n; // dense f32 kernels read x itself: no scratch
    if (group < 1) return aero_fail(err, AERO_ERR_RANGE, "CUDA matmul: rows of %d exceed the scratch", cols);
    for (int i = 0; i < n; i += group) {
        int k = n - i < group ? n - i : group;
        aero_cuda_act a = {x + (size_t)i * cols, NULL, k, cols, NULL, NULL, NULL, NULL};
        if (prepared && (st = aero_cuda_act_prepare(cu, a.x, k, cols, &a, err))) return st;
        if ((st = aero_cuda_matmul_act(cu, w, &a, y + (size_t)i * w->rows, err))) return st;
    }
    return AERO_OK;
}

template <int TY> static void launch_rows(const aero_cuda_wmat *w, const int32_t *ids, int n, float *out, cudaStream_t s) {
    size_t total = (size_t)n * (w->cols / 8);
    unsigned blocks = (unsigned)((total + 255) / 256);
    k_get_rows<TY><<<blocks, 256, 0, s>>>((const uint8_t *)w->data, w->row_bytes, (int)w->rows, (int)w->cols, ids, n, out);
}

extern "C" aero_status aero_cuda_get_rows(aero_cuda *cu, const aero_cuda_wmat *w, const int32_t *ids, int n, float *out,
                                          aero_error *err) {
    aero_status st = aero_cuda_wmat_check(w, err);
    if (st) return st;
    if (n <= 0) return n == 0 ? AERO_OK : aero_fail(err, AERO_ERR_INVALID, "CUDA get_rows of %d ids", n);
    cudaStream_t s = cu->compute;
    switch (w->type) {
    case AERO_DT_F32: launch_rows<AERO_DT_F32>(w, ids, n, out, s); break;
    case AERO_DT_F16: launch_rows<AERO_DT_F16>(w, ids, n, out, s); break;
    case AERO_DT_BF16: launch_rows<AERO_DT_BF16>(w, ids, n, out, s); break;
    case AERO_DT_Q8_0: launch_rows<AERO_DT_Q8_0>(w, ids, n, out, s); break;
    case AERO_DT_Q4_0: launch_rows<AERO_DT_Q4_0>(w, ids, n, out, s); break;
    case AERO_DT_Q4_K: launch_rows<AERO_DT_Q4_K>(w, ids, n, out, s); break;
    case AERO_DT_Q5_K: launch_rows<AERO_DT_Q5_K>(w, ids, n, out, s); break;
    case AERO_DT_Q6_K: launch_rows<AERO_DT_Q6_K>(w, ids, n, out, s); break;
    default: return aero_fail(err, AERO_ERR_UNSUPPORTED, "no CUDA kernel for %s", aero_dtype_name(w->type));
    }
    CU_LAUNCHED("get_rows launch");
    return AERO_OK;
}
