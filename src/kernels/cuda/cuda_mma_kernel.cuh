// The device code of the tensor-core matmul (see cuda_mma.cu for the design), in a header of its own so that
// tests/cuda/test_mma_host.cpp can run the very same kernel on the CPU under the SIMT emulation
// (tests/cuda/simt_host_emu.h, included first with AERO_CUDA_HOST_EMU), where mma.m16n8k16 is emulated from
// its documented fragment layout.
#ifndef AERO_KERNELS_CUDA_MMA_KERNEL_CUH
#define AERO_KERNELS_CUDA_MMA_KERNEL_CUH

#include <math.h>
#include <stdint.h>

#include "cuda_decode.cuh"

#ifdef AERO_CUDA_HOST_EMU
extern "C" uint16_t aero_f32_to_f16(float f);
static inline __half __float2half_rn(float f) { return __half{aero_f32_to_f16(f)}; }
#endif

#define MMA_WARPS 8
#define MMA_THREADS (32 * MMA_WARPS)

#ifndef AERO_CUDA_HOST_EMU
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
#else
static inline uint32_t pack_h2(float lo, float hi) {
    return (uint32_t)aero_f32_to_f16(lo) | ((uint32_t)aero_f32_to_f16(hi) << 16);
}
static inline float h_lo(uint32_t w, int j) { return aero_f16_to_f32((uint16_t)(j ? w >> 16 : w & 0xffff)); }

// The PTX ISA's fragments of mma.m16n8k16 (f16 A row-major, B column-major, f32 C): lane = 4 g + t holds
// A rows g (a0, a2) and g + 8 (a1, a3) at k = 2t, 2t + 1 (a0, a1) and 2t + 8, 2t + 9 (a2, a3); B column g at
// k = 2t, 2t + 1 (b0) and 2t + 8, 2t + 9 (b1); C rows g (c0, c1) and g + 8 (c2, c3) at columns 2t, 2t + 1.
// Each lane gathers its peers' registers through the warp exchange and sums its four outputs in k order.
static inline void mma_16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    uint32_t A[4][32], B[2][32];
    for (int r = 0; r < 4; r++) memcpy(A[r], emu_exchange(a[r]), sizeof A[r]);
    memcpy(B[0], emu_exchange(b0), sizeof B[0]);
    memcpy(B[1], emu_exchange(b1), sizeof B[1]);
    const int lane = (int)(threadIdx.x & 31), g = lane >> 2, t = lane & 3;
    for (int i = 0; i < 4; i++) {
        const int row8 = i >> 1, col = 2 * t + (i & 1); // row g + 8 row8
        float s = 0.0f;
        for (int k = 0; k < 16; k++) {
            const int tk = (k & 7) >> 1, j = k & 1, hi = k >= 8;
            const float av = h_lo(A[row8 + 2 * hi][4 * g + tk], j), bv = h_lo(B[hi][4 * col + tk], j);
            s = s + av * bv;
        }
        c[i] = c[i] + s;
    }
}
#endif

// ---- a lane's weights, loaded apart from their decoding ------------------------------------------------
// Raw<TY>::load gathers the bytes behind elements 8p .. 8p + 7 of chunk c of a row (codes and scales) into
// registers; Raw<TY>::decode turns them into f32 weights (dl * q - ml, or the dense values themselves), with the
// arithmetic of Dec<TY>'s scales and decode8. Split so that the decode tile can keep several chunks' loads in
// flight before it decodes the first (a lone load per chunk left each warp waiting one memory latency per chunk).

template <int TY> struct Raw;

// The q codes of Dec's bytes8 times the scale, less the min: the decode of every block type below.
template <bool MIN> __device__ __forceinline__ void scale8(float w[8], float d, float m) {
#pragma unroll
    for (int j = 0; j < 8; j++) w[j] = MIN ? fmaf(d, w[j], -m) : d * w[j];
}

template <> struct Raw<AERO_DT_F16> {
    uint2 a, b;
    __device__ static Raw load(const uint8_t *row, int c, int p) {
        const size_t pa = 32 * (size_t)c + 8 * p;
        return Raw{__ldg((const uint2 *)(row + 2 * pa)), __ldg((const uint2 *)(row + 2 * (pa + 4)))};
    }
    __device__ void decode(int, int, float v[8]) const {
        const uint32_t w[4] = {a.x, a.y, b.x, b.y};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            v[2 * i] = __half2float(__ushort_as_half((unsigned short)(w[i] & 0xffff)));
            v[2 * i + 1] = __half2float(__ushort_as_half((unsigned short)(w[i] >> 16)));
        }
    }
};

template <> struct Raw<AERO_DT_Q8_0> {
    unsigned short d;
    uint2 q;
    __device__ static Raw load(const uint8_t *row, int c, int p) {
        const uint8_t *blk = row + 34 * (size_t)c;
        return Raw{__ldg((const unsigned short *)blk), ld8_a2(blk + 2 + 8 * p)};
    }
    __device__ void decode(int, int, float v[8]) const {
        bytes8(q.x ^ 0x80808080u, q.y ^ 0x80808080u, 128.0f, v);
        scale8<false>(v, __half2float(__ushort_as_half(d)), 0.0f);
    }
};

template <> struct Raw<AERO_DT_Q4_0> {
    unsigned short d;
    uint2 q;
    __device__ static Raw load(const uint8_t *row, int c, int p) {
        const uint8_t *blk = row + 18 * (size_t)c;
        return Raw{__ldg((const unsigned short *)blk), ld8_a2(blk + 2 + 8 * (p & 1))};
    }
    __device__ void decode(int, int p, float v[8]) const {
        const int sh = 4 * (p >> 1);
        bytes8((q.x >> sh) & 0x0F0F0F0Fu, (q.y >> sh) & 0x0F0F0F0Fu, 8.0f, v);
        scale8<false>(v, __half2float(__ushort_as_half(d)), 0.0f);
    }
};

template <> struct Raw<AERO_DT_Q4_K> {
    uint4 h; // d, dmin, the 12 scale bytes
    uint2 q;
    __device__ static Raw load(const uint8_t *row, int c, int p) {
        const uint8_t *blk = row + 144 * (size_t)(c >> 3);
        return Raw{__ldg((const uint4 *)blk), ld8_a8(blk + 16 + 32 * ((c & 7) >> 1) + 8 * p)};
    }
    __device__ void decode(int c, int, float v[8]) const {
        const int sh = 4 * (c & 1);
        float d, m;
        q4k_dl_ml_h(c & 7, h, &d, &m);
        bytes8((q.x >> sh) & 0x0F0F0F0Fu, (q.y >> sh) & 0x0F0F0F0Fu, 0.0f, v);
        scale8<true>(v, d, m);
    }
};

template <> struct Raw<AERO_DT_Q5_K> {
    uint4 h;
    uint2 q, qh;
    __device__ static Raw load(const uint8_t *row, int c, int p) {
        const uint8_t *blk = row + 176 * (size_t)(c >> 3);
        return Raw{__ldg((const uint4 *)blk), ld8_a8(blk + 48 + 32 * ((c & 7) >> 1) + 8 * p), ld8_a8(blk + 16 + 8 * p)};
    }
    __device__ void decode(int c, int, float v[8]) const {
        const int g = c & 7, sh = 4 * (g & 1);
        float d, m;
        q4k_dl_ml_h(g, h, &d, &m);
        const uint32_t a = ((q.x >> sh) & 0x0F0F0F0Fu) | (((qh.x >> g) & 0x01010101u) << 4);
        const uint32_t b = ((q.y >> sh) & 0x0F0F0F0Fu) | (((qh.y >> g) & 0x01010101u) << 4);
        bytes8(a, b, 0.0f, v);
        scale8<true>(v, d, m);
    }
};

template <> struct Raw<AERO_DT_Q6_K> {
    unsigned short d, s2; // the super-block scale; the chunk's two int8 scales (one per 16 elements)
    uint2 lo, hi;
    __device__ static Raw load(const uint8_t *row, int c, int p) {
        const uint8_t *blk = row + 210 * (size_t)(c >> 3);
        const int cc = c & 7, hh = cc >> 2, k = cc & 3;
        return Raw{__ldg((const unsigned short *)(blk + 208)),
                   __ldg((const unsigned short *)(blk + 192 + 8 * hh + 2 * k)),
                   ld8_a2(blk + 64 * hh + 32 * (k & 1) + 8 * p), ld8_a2(blk + 128 + 32 * hh + 8 * p)};
    }
    __device__ void decode(int c, int p, float v[8]) const {
        const int k = c & 3, sl = 4 * (k >> 1), shh = 2 * k;
        const uint32_t a = ((lo.x >> sl) & 0x0F0F0F0Fu) | (((hi.x >> shh) & 0x03030303u) << 4);
        const uint32_t b = ((lo.y >> sl) & 0x0F0F0F0Fu) | (((hi.y >> shh) & 0x03030303u) << 4);
        bytes8(a, b, 32.0f, v);
        const int sc = (int)(int8_t)(p >> 1 ? s2 >> 8 : s2 & 0xff);
        scale8<false>(v, __half2float(__ushort_as_half(d)) * (float)sc, 0.0f);
    }
};

// The 16 x 16 A fragments of one chunk (two k16 steps) for rows g (wa) and g + 8 (wb) of a tile: lane t's
// elements 8t .. 8t + 7, in the k slots 2t, 2t + 1, 2t + 8, 2t + 9 of each step.
__device__ __forceinline__ void frag_a(const float wa[8], const float wb[8], uint32_t a[2][4]) {
#pragma unroll
    for (int s = 0; s < 2; s++) {
        a[s][0] = pack_h2(wa[4 * s], wa[4 * s + 1]);
        a[s][1] = pack_h2(wb[4 * s], wb[4 * s + 1]);
        a[s][2] = pack_h2(wa[4 * s + 2], wa[4 * s + 3]);
        a[s][3] = pack_h2(wb[4 * s + 2], wb[4 * s + 3]);
    }
}

// One chunk of the decode tile (16 rows, up to 8 tokens): decode the two rows' raw bytes, two mma steps.
template <int TY>
__device__ __forceinline__ void chunk_mma(const Raw<TY> &ra, const Raw<TY> &rb, uint4 b, int c, int t, float acc[4]) {
    uint32_t a[2][4];
    float wa[8], wb[8];
    ra.decode(c, t, wa);
    rb.decode(c, t, wb);
    frag_a(wa, wb, a);
    mma_16816(acc, a[0], b.x, b.y);
    mma_16816(acc, a[1], b.z, b.w);
}

// The warps' partial sums of a tile as a fixed pairwise tree (step 1 adds w+1 into each even w, step 2 w+2 into
// w % 4 == 0, step 4 w+4 into w0), then warp 0 stores the tile: accumulator i is row g + 8 (i / 2), token
// 2t + i % 2, times xs[token] where xs is given. The one reduction order of the tensor-core kernels (k_mma, k_q8).
template <int MT, int NT>
__device__ __forceinline__ void tile_reduce_store(float acc[MT][NT][4], float red[][MT * NT * 4][32], int warp,
                                                  int lane, int r0, int t0, int rows, int n, const float *xs,
                                                  float *Y) {
    const int g = lane >> 2, t = lane & 3;
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
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int j = 0; j < NT; j++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int row = r0 + 16 * mt + g + 8 * (i >> 1), tok = t0 + 8 * j + 2 * t + (i & 1);
                if (row < rows && tok < n) Y[(size_t)tok * rows + row] = xs ? acc[mt][j][i] * xs[tok] : acc[mt][j][i];
            }
}

// MT tiles of 16 rows x NT tiles of 8 tokens per block of MMA_WARPS warps; grid (ceil(rows / 16 MT),
// ceil(n / 8 NT)). X: [n][cols] f16 activations, xs[i]: the factor that undoes token i's scaling.
template <int TY, int MT, int NT>
__global__ void __launch_bounds__(MMA_THREADS)
    k_mma(const uint8_t *__restrict__ W, size_t row_bytes, int rows, int cols, const __half *__restrict__ X,
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

    // warp w: the contiguous chunks [c0, c1), so its loads walk each row's bytes in order (whole cache lines)
    const int per = (nchunks + MMA_WARPS - 1) / MMA_WARPS, c0 = min(warp * per, nchunks), c1 = min(c0 + per, nchunks);
    if constexpr (MT == 1 && NT == 1) {
        // the decode tile (up to 8 tokens): a ring of DEPTH chunks whose loads are in flight, each chunk's bytes
        // loaded DEPTH chunks before its mma; the chunks still go into the accumulators in order c0, c0 + 1, ..
        constexpr int DEPTH = 4;
        Raw<TY> ra[DEPTH], rb[DEPTH];
        uint4 xb[DEPTH];
        auto fetch = [&](int s, int c) {
            ra[s] = Raw<TY>::load(rp[0][0], c, t);
            rb[s] = Raw<TY>::load(rp[0][1], c, t);
            xb[s] = tok_ok[0] ? __ldg((const uint4 *)(xp[0] + 32 * c)) : make_uint4(0, 0, 0, 0);
        };
#pragma unroll
        for (int s = 0; s < DEPTH; s++)
            if (c0 + s < c1) fetch(s, c0 + s);
        for (int c = c0; c < c1; c += DEPTH) {
#pragma unroll
            for (int s = 0; s < DEPTH; s++) {
                if (c + s >= c1) break;
                chunk_mma<TY>(ra[s], rb[s], xb[s], c + s, t, acc[0][0]);
                if (c + s + DEPTH < c1) fetch(s, c + s + DEPTH);
            }
        }
    } else {
#pragma unroll 2
        for (int c = c0; c < c1; c++) {
            uint32_t a[MT][2][4]; // [row tile][k16 step][register]
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                float wa[8], wb[8]; // rows g and g + 8 of the tile
                Raw<TY>::load(rp[mt][0], c, t).decode(c, t, wa);
                Raw<TY>::load(rp[mt][1], c, t).decode(c, t, wb);
                frag_a(wa, wb, a[mt]);
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
    }

    tile_reduce_store<MT, NT>(acc, red, warp, lane, r0, t0, rows, n, xs, Y);
}

// The f16 activations of a row of cols, from each thread's largest magnitude over its elements j = threadIdx.x,
// threadIdx.x + blockDim.x, ... (mx): the row's largest magnitude (max is exact in any order), the power-of-two
// factor that keeps it within 2^15, then the scaled row rounded to f16; *xs = the inverse factor, applied to the
// matmul's outputs. Every thread of the block must call it; each converts the elements it wrote itself, so the ops
// that produce a row (rmsnorm, swiglu) call it right after and their fused output is bitwise aero_mma_prepare's.
__device__ __forceinline__ void aero_prep_row_f16_max(const float *row, int cols, float mx, __half *xh, float *xs) {
    __shared__ float wmax[32];
    for (int o = 16; o >= 1; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    __syncthreads(); // wmax is free (a previous call's readers are done)
    if ((threadIdx.x & 31) == 0) wmax[threadIdx.x >> 5] = mx;
    __syncthreads();
    mx = 0.0f;
    for (int w = 0; w < (int)((blockDim.x + 31) >> 5); w++) mx = fmaxf(mx, wmax[w]);
    int e = 0;                                                     // mx <= 2^15 * 2^e
    if (mx > 32768.0f && mx <= 3.0e38f) frexpf(mx / 32768.0f, &e); // mx / 2^15 = f * 2^e, f in [0.5, 1)
    const float down = ldexpf(1.0f, -e);
#pragma unroll 4
    for (int j = threadIdx.x; j < cols; j += blockDim.x) xh[j] = __float2half_rn(row[j] * down);
    if (threadIdx.x == 0) *xs = ldexpf(1.0f, e);
}

// The same for a row this block wrote with any thread layout: the largest magnitudes first.
__device__ __forceinline__ void aero_prep_row_f16(const float *row, int cols, __half *xh, float *xs) {
    __syncthreads(); // the row written by this block is visible
    float mx = 0.0f;
#pragma unroll 4
    for (int j = threadIdx.x; j < cols; j += blockDim.x) mx = fmaxf(mx, fabsf(row[j]));
    aero_prep_row_f16_max(row, cols, mx, xh, xs);
}

#endif
