// Matrix products on the tensor cores: weights dequantized in registers straight into the A fragments of
// mma.m16n8k16 (f16 inputs, f32 accumulation), activations rounded to f16 once per matmul input. Used for
// every token count (decode, verification, prefill) of the F16 and quantized types, so a token's outputs are
// the same bits alone or in any batch. The quantized types take the int8 kernels of cuda_q8_kernel.cuh by
// default (integer activations per 32-element block, mma.m16n8k32.s8; its header states the float operations
// and the reduction order); AERO_CUDA_MM=f16 keeps them here, on the f16 kernels below.
//
// Reduction order (batch invariance): a row is cut into 32-element chunks (as in cuda_matmul.cu); warp w of
// the MMA_WARPS of a block takes the w-th contiguous run of ceil(chunks / MMA_WARPS) chunks in order (so its
// loads walk whole cache lines of each row), each as two k16 steps of one mma into
// its f32 accumulators; the warps are then summed as a fixed pairwise tree ((w0 + w1) + (w2 + w3)) + (...).
// An mma computes each output element from its own row of A and column of B only, so how many tokens share
// the tile (or in which column a token sits) does not change its bits; nothing above depends on the number of
// tokens or rows a block holds (MT, NT). Within a chunk, thread (g = lane / 4, t = lane % 4) holds elements
// 8t .. 8t + 7 of rows g and g + 8 and the same elements of token g's activations: the k slots of the mma
// are a fixed permutation of the chunk's elements, the same for weights and activations.
//
// Range: activations are scaled per token by a power of two when their largest magnitude exceeds 2^15 (so the
// f16 copy cannot overflow) and the outputs scaled back: exact, and a function of the token's own values.
#include <cuda_fp16.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.cuh"
#include "cuda_mma.cuh"
#include "cuda_mma_kernel.cuh"
#include "cuda_q8_kernel.cuh"

// One block per token (aero_prep_row_f16), aero_row_threads(cols) threads: a row's loads all in flight at once.
// With xq, the row's int8 form too (aero_q8_row: the fused ops write the same bytes).
__global__ void __launch_bounds__(1024)
    k_prep_f16(const float *__restrict__ x, __half *__restrict__ xh, float *__restrict__ xs, int8_t *__restrict__ xq,
               float2 *__restrict__ xd, int cols) {
    const size_t i = blockIdx.x;
    aero_prep_row_f16(x + i * cols, cols, xh + i * cols, xs + i);
    if (xq) aero_q8_row(x + i * cols, cols, xq + i * cols, xd + i * (cols / 32));
}

// The int8 form alone (no f16 copy, so no row-wide maximum): one element per thread over the whole batch, each
// warp one 32-element block (count % 32 == 0), the bytes of aero_q8_row.
__global__ void k_prep_q8(const float *__restrict__ x, int8_t *__restrict__ xq, float2 *__restrict__ xd, size_t count) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return; // count % 32 == 0: whole warps leave together (the quantization shuffles)
    aero_q8_quant(x[i], (int)i, xq, xd);
}

// AERO_CUDA_MM, read once: "v1" the f32 kernels for every type, "f16" the f16 tensor-core kernels for the
// quantized types too, else (the default) the int8 kernels for the quantized types and f16 for F16.
static const char *mm_mode(void) {
    static const char *mode = NULL;
    if (!mode) {
        const char *e = getenv("AERO_CUDA_MM");
        mode = e && !strcmp(e, "v1") ? "v1" : e && !strcmp(e, "f16") ? "f16" : "int8";
    }
    return mode;
}

// The switches of cuda_mma.cuh, from mm_mode.
bool aero_mma_enabled(void) { return strcmp(mm_mode(), "v1") != 0; }
bool aero_mma_int8_enabled(void) { return !strcmp(mm_mode(), "int8"); }

// The block types whose codes fit s8 fragments as they are (after a fixed offset).
bool aero_q8_type(aero_dtype t) {
    return t == AERO_DT_Q8_0 || t == AERO_DT_Q4_0 || t == AERO_DT_Q4_K || t == AERO_DT_Q5_K || t == AERO_DT_Q6_K;
}

// The types whose decoders feed the mma fragments (F32/BF16 would lose range or precision in f16).
bool aero_mma_type(aero_dtype t) { return aero_cuda_type_supported(t) && t != AERO_DT_F32 && t != AERO_DT_BF16; }

// One block per token into the scratch slots of aero_mma_act_slots.
void aero_mma_prepare(const float *x, int n, int cols, float *scratch, const void **xh, const float **xs,
                      const void **xq, const float **xd, cudaStream_t s) {
    __half *h;
    float *scale;
    int8_t *q = NULL;
    float2 *qd = NULL;
    aero_mma_act_slots(scratch, n, cols, &h, &scale);
    if (xq) aero_q8_act_slots(scratch, n, cols, &q, &qd);
    k_prep_f16<<<n, aero_row_threads(cols), 0, s>>>(x, h, scale, q, qd, cols);
    *xh = h;
    *xs = scale;
    if (xq) *xq = q, *xd = (const float *)qd;
}

// The int8 form only, into the slots of aero_q8_act_slots.
void aero_q8_prepare(const float *x, int n, int cols, float *scratch, const void **xq, const float **xd, cudaStream_t s) {
    int8_t *q;
    float2 *qd;
    aero_q8_act_slots(scratch, n, cols, &q, &qd);
    const size_t count = (size_t)n * cols;
    k_prep_q8<<<(unsigned)((count + 255) / 256), 256, 0, s>>>(x, q, qd, count);
    *xq = q;
    *xd = (const float *)qd;
}

// One tile kernel over the whole matrix and token range.
template <int TY, int MT, int NT>
static void launch(const aero_cuda_wmat *w, const void *xh, const float *xs, int n, float *y, cudaStream_t s) {
    dim3 grid((unsigned)((w->rows + 16 * MT - 1) / (16 * MT)), (unsigned)((n + 8 * NT - 1) / (8 * NT)));
    k_mma<TY, MT, NT><<<grid, MMA_THREADS, 0, s>>>((const uint8_t *)w->data, w->row_bytes, (int)w->rows, (int)w->cols,
                                                   (const __half *)xh, xs, n, y);
}

// The tile shapes that are instantiated: 1 x {1, 2} and 2 x {1, 4, 8}.
template <int TY>
static bool launch_tiles(const aero_cuda_wmat *w, const void *xh, const float *xs, int n, float *y, int mt, int nt,
                         cudaStream_t s) {
    if (mt == 1 && nt == 1) launch<TY, 1, 1>(w, xh, xs, n, y, s);
    else if (mt == 1 && nt == 2) launch<TY, 1, 2>(w, xh, xs, n, y, s);
    else if (mt == 2 && nt == 4) launch<TY, 2, 4>(w, xh, xs, n, y, s);
    else if (mt == 2 && nt == 8) launch<TY, 2, 8>(w, xh, xs, n, y, s);
    else if (mt == 2 && nt == 1) launch<TY, 2, 1>(w, xh, xs, n, y, s);
    else return false;
    return true;
}

// Dispatch by weight type to the tile kernels.
bool aero_mma_launch(const aero_cuda_wmat *w, const void *xh, const float *xs, int n, float *y, int mt, int nt,
                     cudaStream_t s) {
    switch (w->type) {
    case AERO_DT_F16: return launch_tiles<AERO_DT_F16>(w, xh, xs, n, y, mt, nt, s);
    case AERO_DT_Q8_0: return launch_tiles<AERO_DT_Q8_0>(w, xh, xs, n, y, mt, nt, s);
    case AERO_DT_Q4_0: return launch_tiles<AERO_DT_Q4_0>(w, xh, xs, n, y, mt, nt, s);
    case AERO_DT_Q4_K: return launch_tiles<AERO_DT_Q4_K>(w, xh, xs, n, y, mt, nt, s);
    case AERO_DT_Q5_K: return launch_tiles<AERO_DT_Q5_K>(w, xh, xs, n, y, mt, nt, s);
    case AERO_DT_Q6_K: return launch_tiles<AERO_DT_Q6_K>(w, xh, xs, n, y, mt, nt, s);
    default: return false;
    }
}

// Whether one token takes the matrix-vector kernel k_q8v (its types) instead of the decode tile: read once. Opt-in
// with AERO_CUDA_VEC=1 until a GPU run has measured it (it is bitwise the tile under the SIMT emulation).
// Its groups must tile the rows (Q8_0, Q4_0: a multiple of 256 columns) and the rows start 16-byte aligned (Q6_K:
// a multiple of 2048 columns), and the device must grant its shared memory (q8v_smem_bytes: 110-209 KB, more than
// GPUs before the A100 / H100 class allow).
static bool q8v_wanted(const aero_cuda_wmat *w, int n) {
    static int on = -1, smem_max = 0;
    if (on < 0) {
        const char *e = getenv("AERO_CUDA_VEC");
        int dev = 0;
        on = e && !strcmp(e, "1");
        if (on && (cudaGetDevice(&dev) != cudaSuccess ||
                   cudaDeviceGetAttribute(&smem_max, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess))
            smem_max = 0;
    }
    const int gb = q8v_block_bytes(w->type);
    return on && n == 1 && gb > 0 && q8v_smem_bytes(w->type) + 1024 <= smem_max && w->row_bytes % gb == 0 &&
           w->row_bytes % 16 == 0 && ((uintptr_t)w->data & 15) == 0;
}

// Lets kernel k use q8v_smem_bytes(TY) of dynamic shared memory (above the 48 KB default), once per kernel.
template <int TY> static void q8v_allow_smem(const void *k) {
    static bool done = false;
    if (!done) cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, q8v_smem_bytes(TY));
    done = true;
}

// One token through k_q8v.
template <int TY>
static void launch_q8v(const aero_cuda_wmat *w, const void *xq, const float *xd, float *y, cudaStream_t s) {
    if constexpr (q8v_block_bytes(TY) > 0) {
        q8v_allow_smem<TY>((const void *)k_q8v<TY>);
        k_q8v<TY><<<(unsigned)((w->rows + Q8V_ROWS - 1) / Q8V_ROWS), MMA_THREADS, q8v_smem_bytes(TY), s>>>(
            (const uint8_t *)w->data, w->row_bytes, (int)w->rows, (int)w->cols, (const int8_t *)xq, (const float2 *)xd, y);
    }
}

// One int8 tile kernel over the whole matrix and token range (one token: k_q8v, the same bits).
template <int TY, int MT, int NT>
static void launch_q8(const aero_cuda_wmat *w, const void *xq, const float *xd, int n, float *y, cudaStream_t s) {
    if (MT == 1 && NT == 1 && q8v_wanted(w, n)) return launch_q8v<TY>(w, xq, xd, y, s);
    dim3 grid((unsigned)((w->rows + 16 * MT - 1) / (16 * MT)), (unsigned)((n + 8 * NT - 1) / (8 * NT)));
    k_q8<TY, MT, NT><<<grid, MMA_THREADS, 0, s>>>((const uint8_t *)w->data, w->row_bytes, (int)w->rows, (int)w->cols,
                                                  (const int8_t *)xq, (const float2 *)xd, n, y);
}

// The int8 tile shapes: those of the f16 kernels, and 4 x 4 (64 rows share each token tile's activations, which a
// 2 x 8 block reads for only 32 rows: half the activation reads from L2 at 64 tokens, for twice the weight reads).
template <int TY>
static bool launch_q8_tiles(const aero_cuda_wmat *w, const void *xq, const float *xd, int n, float *y, int mt, int nt,
                            cudaStream_t s) {
    if (mt == 1 && nt == 1) launch_q8<TY, 1, 1>(w, xq, xd, n, y, s);
    else if (mt == 4 && nt == 4) launch_q8<TY, 4, 4>(w, xq, xd, n, y, s);
    else if (mt == 1 && nt == 2) launch_q8<TY, 1, 2>(w, xq, xd, n, y, s);
    else if (mt == 2 && nt == 4) launch_q8<TY, 2, 4>(w, xq, xd, n, y, s);
    else if (mt == 2 && nt == 8) launch_q8<TY, 2, 8>(w, xq, xd, n, y, s);
    else if (mt == 2 && nt == 1) launch_q8<TY, 2, 1>(w, xq, xd, n, y, s);
    else return false;
    return true;
}

// Dispatch by weight type to the int8 tile kernels (K-quants need cols % 256 == 0, as their blocks do).
bool aero_q8_launch(const aero_cuda_wmat *w, const void *xq, const float *xd, int n, float *y, int mt, int nt,
                    cudaStream_t s) {
    switch (w->type) {
    case AERO_DT_Q8_0: return launch_q8_tiles<AERO_DT_Q8_0>(w, xq, xd, n, y, mt, nt, s);
    case AERO_DT_Q4_0: return launch_q8_tiles<AERO_DT_Q4_0>(w, xq, xd, n, y, mt, nt, s);
    case AERO_DT_Q4_K: return launch_q8_tiles<AERO_DT_Q4_K>(w, xq, xd, n, y, mt, nt, s);
    case AERO_DT_Q5_K: return launch_q8_tiles<AERO_DT_Q5_K>(w, xq, xd, n, y, mt, nt, s);
    case AERO_DT_Q6_K: return launch_q8_tiles<AERO_DT_Q6_K>(w, xq, xd, n, y, mt, nt, s);
    default: return false;
    }
}

// One k_q8_many launch: the blocks of every matrix in x, token tiles of 8 in y (one token: k_q8v_many, whose
// blocks hold 32 rows).
template <int TY>
static void launch_q8_many(const Q8Many &m, int cols, const void *xq, const float *xd, int n, bool vec, cudaStream_t s) {
    if constexpr (q8v_block_bytes(TY) > 0) {
        if (vec) {
            q8v_allow_smem<TY>((const void *)k_q8v_many<TY>);
            k_q8v_many<TY><<<(unsigned)m.first[Q8_MANY], MMA_THREADS, q8v_smem_bytes(TY), s>>>(
                m, cols, (const int8_t *)xq, (const float2 *)xd);
            return;
        }
    }
    dim3 grid((unsigned)m.first[Q8_MANY], (unsigned)((n + 7) / 8));
    k_q8_many<TY, 1, 1><<<grid, MMA_THREADS, 0, s>>>(m, cols, (const int8_t *)xq, (const float2 *)xd, n);
}

// Lays the matrices' row tiles end to end (first[]: tiles of 16 rows, or 32 for k_q8v_many); unused slots repeat
// the last matrix with no blocks.
bool aero_q8_launch_many(const aero_cuda_wmat *const w[], float *const y[], int count, const void *xq, const float *xd,
                         int n, cudaStream_t s) {
    if (count < 1 || count > Q8_MANY || n < 1 || n > 8) return false;
    Q8Many m = {};
    bool vec = true;
    for (int i = 0; i < count; i++) vec &= q8v_wanted(w[i], n);
    const int tile = vec ? Q8V_ROWS : 16;
    for (int i = 0; i < Q8_MANY; i++) {
        const aero_cuda_wmat *wi = w[i < count ? i : count - 1];
        if (wi->type != w[0]->type || wi->cols != w[0]->cols) return false;
        m.W[i] = (const uint8_t *)wi->data, m.row_bytes[i] = wi->row_bytes, m.rows[i] = (int)wi->rows;
        m.Y[i] = y[i < count ? i : count - 1];
        m.first[i + 1] = m.first[i] + (i < count ? (int)((wi->rows + tile - 1) / tile) : 0);
    }
    const int cols = (int)w[0]->cols;
    switch (w[0]->type) {
    case AERO_DT_Q8_0: launch_q8_many<AERO_DT_Q8_0>(m, cols, xq, xd, n, vec, s); break;
    case AERO_DT_Q4_0: launch_q8_many<AERO_DT_Q4_0>(m, cols, xq, xd, n, vec, s); break;
    case AERO_DT_Q4_K: launch_q8_many<AERO_DT_Q4_K>(m, cols, xq, xd, n, vec, s); break;
    case AERO_DT_Q5_K: launch_q8_many<AERO_DT_Q5_K>(m, cols, xq, xd, n, vec, s); break;
    case AERO_DT_Q6_K: launch_q8_many<AERO_DT_Q6_K>(m, cols, xq, xd, n, vec, s); break;
    default: return false;
    }
    return true;
}

// AERO_CUDA_TILE=MxN (1x2, 2x1, 2x4, 2x8, or 4x4 for the int8 kernels; the f16 ones take 2x4 for it), read once:
// that tile for every batch of more than 8 tokens, to compare the batched shapes on one binary (every shape gives
// the same bits); unset or other values: none.
static bool forced_tile(int *mt, int *nt) {
    static int fm = -1, fn = 0;
    if (fm < 0) {
        const char *e = getenv("AERO_CUDA_TILE");
        int m = 0, k = 0;
        fm = 0;
        if (e && sscanf(e, "%dx%d", &m, &k) == 2 &&
            ((m == 1 && k == 2) || (m == 2 && k == 1) || (m == 2 && k == 4) || (m == 2 && k == 8) || (m == 4 && k == 4)))
            fm = m, fn = k;
    }
    if (!fm) return false;
    *mt = fm, *nt = fn;
    return true;
}

// Few tokens: small tiles, the most blocks; many: each decoded weight reused by 64 tokens.
void aero_mma_tiles_for(int n, int *mt, int *nt) {
    if (n > 8 && forced_tile(mt, nt)) return;
    if (n <= 8) *mt = 1, *nt = 1; // decode and short verifications: the most blocks
    else if (n <= 16) *mt = 1, *nt = 2;
    else if (n <= 32) *mt = 2, *nt = 4;
    else *mt = 2, *nt = 8; // prefill: each decoded weight used by 64 tokens
}
