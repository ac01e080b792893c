// Matrix-vector and batched matmul over weights in their GGUF layout, dequantized in registers, and the
// embedding row lookup. Compiled with --fmad=false: every multiply-add below is an explicit fmaf, so the
// compiler cannot fuse differently in the one-token and the many-token instantiations.
//
// Reduction order (batch invariance): a row of `cols` elements is cut into chunks of 32 (a Q4_0/Q8_0 block,
// one 32-group of a K-quant super-block, or 32 dense elements). Thread t of the 128 of a block takes chunks
// t, t + 128, ... in that order; inside a chunk, each half of 16 elements is summed in element order
// (s = fma(q, x, s)) and folded into the thread's accumulator as acc = fma(scale, s, acc) (and, for Q4_K/Q5_K,
// acc = fma(-min, sum of x, acc)). The 32 lanes of a warp are then folded by an xor butterfly and the 4 warps
// as (w0 + w1) + (w2 + w3). Nothing here depends on how many rows (R) or tokens (T) a block holds, so every
// kernel shape, and every batch size, gives the same bits.
#include <cuda_fp16.h>
#include <stdint.h>

#include "cuda_internal.cuh"

#define MM_THREADS 128

// ---- loads -------------------------------------------------------------------------------------------------

__device__ __forceinline__ float f16_at(const uint8_t *p) { return __half2float(__ushort_as_half(__ldg((const unsigned short *)p))); }

// 8 bytes from a 2-byte aligned address (Q4_0, Q8_0, Q6_K blocks are not 4-aligned).
__device__ __forceinline__ void ld8_a2(const uint8_t *p, uint8_t b[8]) {
    const unsigned short *q = (const unsigned short *)p;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        unsigned short v = __ldg(q + i);
        b[2 * i] = (uint8_t)(v & 0xff);
        b[2 * i + 1] = (uint8_t)(v >> 8);
    }
}

// 8 bytes from an 8-byte aligned address (Q4_K, Q5_K blocks are 16-aligned).
__device__ __forceinline__ void ld8_a8(const uint8_t *p, uint8_t b[8]) {
    uint2 v = __ldg((const uint2 *)p);
#pragma unroll
    for (int i = 0; i < 4; i++) b[i] = (uint8_t)(v.x >> (8 * i)), b[4 + i] = (uint8_t)(v.y >> (8 * i));
}

// The 6-bit scale and min of group j of a Q4_K/Q5_K block (ggml's get_scale_min_k4).
__device__ __forceinline__ void q4k_scale_min(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = __ldg(q + j) & 63;
        *m = __ldg(q + j + 4) & 63;
    } else {
        *sc = (__ldg(q + j + 4) & 0xF) | ((__ldg(q + j - 4) >> 6) << 4);
        *m = (__ldg(q + j + 4) >> 4) | ((__ldg(q + j) >> 6) << 4);
    }
}

// ---- per-type decoders: chunk c of a row, half h (16 elements), piece p (8 elements, 0..3) ---------------
// scales(): the half's scale dl and min ml, so element = dl * q - ml (as the CPU's aero_dequantize_row).
// decode8(): the 8 integer codes (or dense values) of the piece, as floats.

template <int TY> struct Dec;

template <> struct Dec<AERO_DT_F32> {
    static constexpr bool MIN = false, DENSE = true;
    __device__ static void scales(const uint8_t *, int, int, float *dl, float *ml) { *dl = 1.0f, *ml = 0.0f; }
    __device__ static void decode8(const uint8_t *row, int c, int p, float v[8]) {
        const float4 *q = (const float4 *)row + (c * 32 + 8 * p) / 4;
        float4 a = __ldg(q), b = __ldg(q + 1);
        v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
    }
};

template <> struct Dec<AERO_DT_F16> {
    static constexpr bool MIN = false, DENSE = true;
    __device__ static void scales(const uint8_t *, int, int, float *dl, float *ml) { *dl = 1.0f, *ml = 0.0f; }
    __device__ static void decode8(const uint8_t *row, int c, int p, float v[8]) {
        uint4 u = __ldg((const uint4 *)(row + 2 * (c * 32 + 8 * p)));
        uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            v[2 * i] = __half2float(__ushort_as_half((unsigned short)(w[i] & 0xffff)));
            v[2 * i + 1] = __half2float(__ushort_as_half((unsigned short)(w[i] >> 16)));
        }
    }
};

template <> struct Dec<AERO_DT_BF16> {
    static constexpr bool MIN = false, DENSE = true;
    __device__ static void scales(const uint8_t *, int, int, float *dl, float *ml) { *dl = 1.0f, *ml = 0.0f; }
    __device__ static void decode8(const uint8_t *row, int c, int p, float v[8]) {
        uint4 u = __ldg((const uint4 *)(row + 2 * (c * 32 + 8 * p)));
        uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            v[2 * i] = __uint_as_float(w[i] << 16);
            v[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
        }
    }
};

// x = d * q, 34-byte blocks of 32.
template <> struct Dec<AERO_DT_Q8_0> {
    static constexpr bool MIN = false, DENSE = false;
    __device__ static void scales(const uint8_t *row, int c, int, float *dl, float *ml) {
        *dl = f16_at(row + 34 * (size_t)c), *ml = 0.0f;
    }
    __device__ static void decode8(const uint8_t *row, int c, int p, float v[8]) {
        uint8_t b[8];
        ld8_a2(row + 34 * (size_t)c + 2 + 8 * p, b);
#pragma unroll
        for (int j = 0; j < 8; j++) v[j] = (float)(int8_t)b[j];
    }
};

// x = d * (q - 8); qs[j] holds element j (low nibble) and j + 16 (high nibble).
template <> struct Dec<AERO_DT_Q4_0> {
    static constexpr bool MIN = false, DENSE = false;
    __device__ static void scales(const uint8_t *row, int c, int, float *dl, float *ml) {
        *dl = f16_at(row + 18 * (size_t)c), *ml = 0.0f;
    }
    __device__ static void decode8(const uint8_t *row, int c, int p, float v[8]) {
        uint8_t b[8];
        ld8_a2(row + 18 * (size_t)c + 2 + 8 * (p & 1), b);
        int sh = 4 * (p >> 1);
#pragma unroll
        for (int j = 0; j < 8; j++) v[j] = (float)(((b[j] >> sh) & 15) - 8);
    }
};

// Group g = c % 8 of super-block c / 8: x = d * sc * q - dmin * m, q = (qs[32 (g/2) + l] >> 4 (g%2)) & 15.
template <> struct Dec<AERO_DT_Q4_K> {
    static constexpr bool MIN = true, DENSE = false;
    __device__ static void scales(const uint8_t *row, int c, int, float *dl, float *ml) {
        const uint8_t *blk = row + 144 * (size_t)(c >> 3);
        int sc, m;
        q4k_scale_min(c & 7, blk + 4, &sc, &m);
        *dl = f16_at(blk) * (float)sc;
        *ml = f16_at(blk + 2) * (float)m;
    }
    __device__ static void decode8(const uint8_t *row, int c, int p, float v[8]) {
        const uint8_t *blk = row + 144 * (size_t)(c >> 3);
        int g = c & 7;
        uint8_t b[8];
        ld8_a8(blk + 16 + 32 * (g >> 1) + 8 * p, b);
        int sh = 4 * (g & 1);
#pragma unroll
        for (int j = 0; j < 8; j++) v[j] = (float)((b[j] >> sh) & 15);
    }
};

// As Q4_K with a fifth bit: bit (2 (g/2) + g%2) of qh[l].
template <> struct Dec<AERO_DT_Q5_K> {
    static constexpr bool MIN = true, DENSE = false;
    __device__ static void scales(const uint8_t *row, int c, int, float *dl, float *ml) {
        const uint8_t *blk = row + 176 * (size_t)(c >> 3);
        int sc, m;
        q4k_scale_min(c & 7, blk + 4, &sc, &m);
        *dl = f16_at(blk) * (float)sc;
        *ml = f16_at(blk + 2) * (float)m;
    }
    __device__ static void decode8(const uint8_t *row, int c, int p, float v[8]) {
        const uint8_t *blk = row + 176 * (size_t)(c >> 3);
        int g = c & 7;
        uint8_t b[8], h[8];
        ld8_a8(blk + 48 + 32 * (g >> 1) + 8 * p, b);
        ld8_a8(blk + 16 + 8 * p, h);
        int sh = 4 * (g & 1), hb = g; // 2 (g / 2) + g % 2 == g
#pragma unroll
        for (int j = 0; j < 8; j++) v[j] = (float)(((b[j] >> sh) & 15) | (((h[j] >> hb) & 1) << 4));
    }
};

// Chunk cc = c % 8 of super-block c / 8 is elements 128 hh + 32 k + l (hh = cc / 4, k = cc % 4): x = d * sc * (q - 32),
// 4 low bits in ql, 2 high bits in qh, one int8 scale per 16 elements.
template <> struct Dec<AERO_DT_Q6_K> {
    static constexpr bool MIN = false, DENSE = false;
    __device__ static void scales(const uint8_t *row, int c, int h, float *dl, float *ml) {
        const uint8_t *blk = row + 210 * (size_t)(c >> 3);
        int cc = c & 7;
        int sc = (int8_t)__ldg(blk + 192 + 8 * (cc >> 2) + 2 * (cc & 3) + h);
        *dl = f16_at(blk + 208) * (float)sc;
        *ml = 0.0f;
    }
    __device__ static void decode8(const uint8_t *row, int c, int p, float v[8]) {
        const uint8_t *blk = row + 210 * (size_t)(c >> 3);
        int cc = c & 7, hh = cc >> 2, k = cc & 3;
        uint8_t lo[8], hi[8];
        ld8_a2(blk + 64 * hh + 32 * (k & 1) + 8 * p, lo);
        ld8_a2(blk + 128 + 32 * hh + 8 * p, hi);
        int sl = 4 * (k >> 1), shh = 2 * k;
#pragma unroll
        for (int j = 0; j < 8; j++) v[j] = (float)((((lo[j] >> sl) & 15) | (((hi[j] >> shh) & 3) << 4)) - 32);
    }
};

// ---- the matmul kernel -----------------------------------------------------------------------------------

// R rows x T tokens per block of 128 threads; grid (ceil(rows / R), ceil(n / T)).
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

    for (int c = tid; c < nchunks; c += MM_THREADS) {
#pragma unroll
        for (int h = 0; h < 2; h++) {
            float dl[R], ml[R];
#pragma unroll
            for (int r = 0; r < R; r++) D::scales(rowp[r], c, h, &dl[r], &ml[r]);
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
                float q[R][8];
#pragma unroll
                for (int r = 0; r < R; r++) D::decode8(rowp[r], c, p, q[r]);
#pragma unroll
                for (int t = 0; t < T; t++) {
                    if (t < nt) {
                        const float4 *xp = (const float4 *)(xb + (size_t)t * cols + c * 32 + 8 * p);
                        float4 a = __ldg(xp), b = __ldg(xp + 1);
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
                    else acc[r][t] = fmaf(dl[r], s[r][t], acc[r][t]);
                    if (D::MIN) acc[r][t] = fmaf(-ml[r], sx[t], acc[r][t]);
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

// ---- embedding rows --------------------------------------------------------------------------------------

// One thread per 8 outputs: element = dl * q - ml, the CPU reference's expression (q * d for the 32-blocks).
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
    float v[8], dl, ml;
    D::decode8(row, c, p, v);
    D::scales(row, c, p >> 1, &dl, &ml);
#pragma unroll
    for (int j = 0; j < 8; j++) {
        float y;
        if (D::DENSE) y = v[j];
        else if (TY == AERO_DT_Q4_0 || TY == AERO_DT_Q8_0) y = v[j] * dl;
        else y = dl * v[j] - ml;
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
    if (w->cols <= 0 || w->rows <= 0 || w->cols % 32 || w->cols > (1 << 30) || w->rows > INT32_MAX)
        return aero_fail(err, AERO_ERR_UNSUPPORTED, "CUDA weight matrix %lld x %lld (cols must be a multiple of 32)",
                         (long long)w->rows, (long long)w->cols);
    size_t rb = aero_dtype_row_bytes(w->type, (uint64_t)w->cols), al = row_align(w->type);
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
        else return false;
    } else if (T == 8) {
        if (R == 1) launch_mm<TY, 1, 8>(w, x, n, y, s);
        else if (R == 2) launch_mm<TY, 2, 8>(w, x, n, y, s);
        else if (R == 4) launch_mm<TY, 4, 8>(w, x, n, y, s);
        else return false;
    } else {
        return false;
    }
    return true;
}

// The decode shape (rows per block for one token), chosen by the bandwidth benchmark.
#ifndef AERO_CUDA_MV_ROWS
#define AERO_CUDA_MV_ROWS 2
#endif

extern "C" aero_status aero_cuda_matmul_shape(aero_cuda *cu, const aero_cuda_wmat *w, const float *x, int n, float *y,
                                              int R, int T, aero_error *err) {
    aero_status st = aero_cuda_wmat_check(w, err);
    if (st) return st;
    if (n <= 0) return n == 0 ? AERO_OK : aero_fail(err, AERO_ERR_INVALID, "CUDA matmul over %d tokens", n);
    if (!x || !y || (uintptr_t)x % 16) return aero_fail(err, AERO_ERR_INVALID, "CUDA matmul: activations must be 16-byte aligned");
    if ((n + T - 1) / (T > 0 ? T : 1) > 65535)
        return aero_fail(err, AERO_ERR_RANGE, "CUDA matmul of %d tokens (at most %d per call)", n, 65535 * T);
    cudaStream_t s = cu->compute;
    bool ok = false;
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

// One token: the decode shape; more: 4 rows x 8 tokens per block (each weight chunk decoded once for 8 tokens).
extern "C" aero_status aero_cuda_matmul(aero_cuda *cu, const aero_cuda_wmat *w, const float *x, int n, float *y,
                                        aero_error *err) {
    return n == 1 ? aero_cuda_matmul_shape(cu, w, x, n, y, AERO_CUDA_MV_ROWS, 1, err)
                  : aero_cuda_matmul_shape(cu, w, x, n, y, 4, 8, err);
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
