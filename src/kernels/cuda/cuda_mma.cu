// Matrix products on the tensor cores: weights dequantized in registers straight into the A fragments of
// mma.m16n8k16 (f16 inputs, f32 accumulation), activations rounded to f16 once per matmul input. Used for
// every token count (decode, verification, prefill) of the F16 and quantized types, so a token's outputs are
// the same bits alone or in any batch.
//
// Reduction order (batch invariance): a row is cut into 32-element chunks (as in cuda_matmul.cu); warp w of
// the MMA_WARPS of a block takes chunks w, w + MMA_WARPS, ... in order, each as two k16 steps of one mma into
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
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.cuh"
#include "cuda_decode.cuh"
#include "cuda_mma.cuh"

#define MMA_WARPS 8
#define MMA_THREADS (32 * MMA_WARPS)

// Two floats as one f16x2 register (lo in the low half: the lower k slot), rounded to nearest even.
__device__ __forceinline__ uint32_t pack_h2(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&h);
}

// c += A (16 x 16, row-major fragment a0..a3) x B (16 x 8, column fragment b0, b1), f32 accumulators.
__device__ __forceinline__ void mma_16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Elements 8p .. 8p + 7 of chunk c of a row as f32 weights (dl * q - ml, or the dense values themselves).
template <int TY> __device__ __forceinline__ void weights8(const uint8_t *row, int c, int p, float w[8]) {
    typedef Dec<TY> D;
    const int pa = 32 * c + 8 * p; // natural positions: dense rows are read as they are stored
    D::decode8(row, c, p, pa, pa + 4, w);
    if (!D::DENSE) {
        float dl[2], ml[2];
        D::scales(row, c, dl, ml);
        const float d = dl[p >> 1], m = ml[p >> 1];
#pragma unroll
        for (int j = 0; j < 8; j++) w[j] = D::MIN ? fmaf(d, w[j], -m) : d * w[j];
    }
}

// MT tiles of 16 rows x NT tiles of 8 tokens per block of MMA_WARPS warps; grid (ceil(rows / 16 MT),
// ceil(n / 8 NT)). X: [n][cols] f16 activations, xs[i]: the factor that undoes token i's scaling.
template <int TY, int MT, int NT>
__global__ void __launch_bounds__(MMA_THREADS) k_mma(const uint8_t *__restrict__ W, size_t row_bytes, int rows,
                                                     int cols, const __half *__restrict__ X,
                                                     const float *__restrict__ xs, int n, float *__restrict__ Y) {
    __shared__ float red[MMA_WARPS / 2][MT * NT * 4][32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int r0 = blockIdx.x * 16 * MT, t0 = blockIdx.y * 8 * NT;
    const int nchunks = cols >> 5;
    const uint8_t *rp[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int h = 0; h < 2; h++) rp[mt][h] = W + (size_t)min(r0 + 16 * mt + g + 8 * h, rows - 1) * row_bytes;
    const __half *xp[NT];
    bool tok_ok[NT];
#pragma unroll
    for (int j = 0; j < NT; j++) {
        const int tok = t0 + 8 * j + g;
        tok_ok[j] = tok < n;
        xp[j] = X + (size_t)min(tok, n - 1) * cols + 8 * t;
    }
    float acc[MT][NT][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int j = 0; j < NT; j++)
#pragma unroll
            for (int i = 0; i < 4; i++) acc[mt][j][i] = 0.0f;

#pragma unroll 2
    for (int c = warp; c < nchunks; c += MMA_WARPS) {
        uint32_t a[MT][2][4]; // [row tile][k16 step][register]
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            float wa[8], wb[8]; // rows g and g + 8 of the tile
            weights8<TY>(rp[mt][0], c, t, wa);
            weights8<TY>(rp[mt][1], c, t, wb);
#pragma unroll
            for (int s = 0; s < 2; s++) {
                a[mt][s][0] = pack_h2(wa[4 * s], wa[4 * s + 1]);
                a[mt][s][1] = pack_h2(wb[4 * s], wb[4 * s + 1]);
                a[mt][s][2] = pack_h2(wa[4 * s + 2], wa[4 * s + 3]);
                a[mt][s][3] = pack_h2(wb[4 * s + 2], wb[4 * s + 3]);
            }
        }
#pragma unroll
        for (int j = 0; j < NT; j++) {
            const uint4 b = tok_ok[j] ? __ldg((const uint4 *)(xp[j] + 32 * c)) : make_uint4(0, 0, 0, 0);
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                mma_16816(acc[mt][j], a[mt][0], b.x, b.y);
                mma_16816(acc[mt][j], a[mt][1], b.z, b.w);
            }
        }
    }

    // the warps' partial sums as a fixed pairwise tree: step 1 adds w+1 into each even w, step 2 w+2 into
    // w % 4 == 0, step 4 w+4 into w0
#pragma unroll
    for (int step = 1; step < MMA_WARPS; step <<= 1) {
        __syncthreads();
        if ((warp & (2 * step - 1)) == step)
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int j = 0; j < NT; j++)
#pragma unroll
                    for (int i = 0; i < 4; i++) red[warp / (2 * step)][(mt * NT + j) * 4 + i][lane] = acc[mt][j][i];
        __syncthreads();
        if ((warp & (2 * step - 1)) == 0)
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int j = 0; j < NT; j++)
#pragma unroll
                    for (int i = 0; i < 4; i++)
                        acc[mt][j][i] = acc[mt][j][i] + red[warp / (2 * step)][(mt * NT + j) * 4 + i][lane];
    }
    if (warp) return;
    // accumulator i of a tile: row g + 8 (i / 2), token 2t + i % 2
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int j = 0; j < NT; j++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int row = r0 + 16 * mt + g + 8 * (i >> 1), tok = t0 + 8 * j + 2 * t + (i & 1);
                if (row < rows && tok < n) Y[(size_t)tok * rows + row] = acc[mt][j][i] * xs[tok];
            }
}

// One block per token (aero_prep_row_f16).
__global__ void k_prep_f16(const float *__restrict__ x, __half *__restrict__ xh, float *__restrict__ xs, int cols) {
    const size_t i = blockIdx.x;
    aero_prep_row_f16(x + i * cols, cols, xh + i * cols, xs + i);
}

bool aero_mma_enabled(void) {
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("AERO_CUDA_MM");
        on = !(e && !strcmp(e, "v1"));
    }
    return on;
}

bool aero_mma_type(aero_dtype t) {
    switch (t) {
    case AERO_DT_F16:
    case AERO_DT_Q8_0:
    case AERO_DT_Q4_0:
    case AERO_DT_Q4_K:
    case AERO_DT_Q5_K:
    case AERO_DT_Q6_K: return true;
    default: return false;
    }
}

size_t aero_mma_prep_floats(int n, int cols) { return (size_t)n * cols / 2 + (size_t)n + 64; }

void aero_mma_prepare(const float *x, int n, int cols, float *scratch, const void **xh, const float **xs,
                      cudaStream_t s) {
    __half *h;
    float *scale;
    aero_mma_act_slots(scratch, n, cols, &h, &scale);
    k_prep_f16<<<n, 256, 0, s>>>(x, h, scale, cols);
    *xh = h;
    *xs = scale;
}

template <int TY, int MT, int NT>
static void launch(const aero_cuda_wmat *w, const void *xh, const float *xs, int n, float *y, cudaStream_t s) {
    dim3 grid((unsigned)((w->rows + 16 * MT - 1) / (16 * MT)), (unsigned)((n + 8 * NT - 1) / (8 * NT)));
    k_mma<TY, MT, NT><<<grid, MMA_THREADS, 0, s>>>((const uint8_t *)w->data, w->row_bytes, (int)w->rows, (int)w->cols,
                                                   (const __half *)xh, xs, n, y);
}

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

void aero_mma_tiles_for(int n, int *mt, int *nt) {
    if (n <= 8) *mt = 1, *nt = 1;       // decode and short verifications: the most blocks
    else if (n <= 16) *mt = 1, *nt = 2;
    else if (n <= 32) *mt = 2, *nt = 4;
    else *mt = 2, *nt = 8;              // prefill: each decoded weight used by 64 tokens
}
