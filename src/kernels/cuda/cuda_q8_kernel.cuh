// The integer tensor-core matmul of the quantized weight types (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K): activations
// quantized per 32-element block to int8 (Q8_1 style: a scale d and d * sum of the codes), weight codes fed as
// they are into the A fragments of mma.m16n8k32.s8 (int32 sums, exact), and per 32-element chunk one short,
// fixed sequence of float operations per output. The host side is in cuda_mma.cu; a header of its own so that
// tests/cuda/test_mma_host.cpp runs the very same kernels on the CPU under the SIMT emulation, with the s8 mma
// emulated from the PTX ISA's fragment layout.
//
// Fragments (the k slots are a fixed permutation of a chunk, the same for weights and activations): thread
// (g = lane / 4, t = lane % 4) holds elements 8t .. 8t + 3 of a chunk in k slots 4t .. 4t + 3 (registers a0 for
// row g, a1 for row g + 8, b0 for token g) and elements 8t + 4 .. 8t + 7 in k slots 16 + 4t .. 16 + 4t + 3 (a2,
// a3, b1); the int32 results c0, c1 are row g, tokens 2t, 2t + 1 and c2, c3 row g + 8.
//
// The float operations per output (row r, token i) and chunk c, in this order (s: the int32 sum of the chunk's
// code products; f = (float)s exactly, through the accumulator's bias below; da, das = the token's block
// scale and scale times code sum; acc: the warp's running sum):
//   Q8_0, Q4_0:  acc = fmaf(d * da, f, acc)                          d: the block's f16 scale (Q4_0 codes q - 8)
//   Q4_K, Q5_K:  acc = fmaf(dl * da, f, acc); acc = fmaf(-ml, das, acc)   dl = d * sc, -ml = (-dmin) * m (the
//                values of Dec's q4k_dl_ml_h)
//   Q6_K:        f = fmaf(sc0, f0, sc1 * f1) (exact: the integer sc0 s0 + sc1 s1 < 2^24, halves of 16 elements);
//                acc = fmaf(d * da, f, acc)                          codes q - 32
// Reduction order (batch invariance): a row's chunks are cut into units (two chunks for Q4_K/Q5_K, whose
// low and high nibbles share bytes; one chunk otherwise); warp w of MMA_WARPS takes the w-th contiguous run of
// ceil(units / MMA_WARPS) units, sums its chunks in order as above, and the warps are summed by the fixed
// pairwise tree of k_mma. Nothing depends on the number of tokens or on the tile shape (MT, NT), and an mma's
// output depends only on its own row of A and column of B, so a token gets the same bits alone or in any batch.
#ifndef AERO_KERNELS_CUDA_Q8_KERNEL_CUH
#define AERO_KERNELS_CUDA_Q8_KERNEL_CUH

#include "cuda_mma_kernel.cuh"

// The int32 accumulators start at 2^23 + 2^22 (as float bits): after the mma they hold that plus the chunk's
// sum s (|s| < 2^22 for every type here), whose float is 12582912 + s exactly, so one subtraction is (float)s.
#define Q8_BIAS 0x4B400000
#define Q8_BIAS_F 12582912.0f

#ifndef AERO_CUDA_HOST_EMU
// c += A (16 x 32 s8, fragment a0..a3) x B (32 x 8 s8, fragment b0, b1), int32 accumulators.
__device__ __forceinline__ void mma_s8(int c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%0, %1, %2, %3};\n"
                 : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
#else
// The PTX ISA's fragments of mma.m16n8k32 with .s8 A and B and .s32 C: lane = 4 g + t holds A row g (a0, a2)
// and g + 8 (a1, a3) at k = 4t .. 4t + 3 (a0, a1) and 16 + 4t .. 16 + 4t + 3 (a2, a3), byte i of a register
// at k + i; B column g at k = 4t .. (b0) and 16 + 4t .. (b1); C rows g (c0, c1) and g + 8 (c2, c3) at columns
// 2t, 2t + 1. Integer products and sums: exact in any order.
static inline int s8_at(uint32_t w, int i) { return (int)(int8_t)(uint8_t)(w >> (8 * i)); }
static inline void mma_s8(int c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    uint32_t A[4][32], B[2][32];
    for (int r = 0; r < 4; r++) memcpy(A[r], emu_exchange(a[r]), sizeof A[r]);
    memcpy(B[0], emu_exchange(b0), sizeof B[0]);
    memcpy(B[1], emu_exchange(b1), sizeof B[1]);
    const int lane = (int)(threadIdx.x & 31), g = lane >> 2, t = lane & 3;
    for (int i = 0; i < 4; i++) {
        const int row8 = i >> 1, col = 2 * t + (i & 1);
        int s = 0;
        for (int k = 0; k < 32; k++) {
            const int hi = k >= 16, tk = (k & 15) >> 2, byte = k & 3;
            s += s8_at(A[row8 + 2 * hi][4 * g + tk], byte) * s8_at(B[hi][4 * col + tk], byte);
        }
        c[i] += s;
    }
}
#endif

// ---- activations -------------------------------------------------------------------------------------------

// One element of a 32-element block of an activation row, called by all 32 lanes of a warp with j = 32 b + lane
// (the block's elements in lane order): the block's int8 codes q = round-to-nearest-even(v * 127 / amax) and,
// from lane 0, xd[b] = {d = amax / 127, d * sum q}. A block whose amax is below 1e-30 is all zeros. A pure
// function of the block's values (max and integer sum are exact in any order), so the fused ops (rmsnorm,
// swiglu) that call it on the elements they write produce the bytes of the prepare kernel.
__device__ __forceinline__ void aero_q8_quant(float v, int j, int8_t *xq, float2 *xd) {
    float amax = fabsf(v);
    for (int o = 16; o >= 1; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    const bool live = amax >= 1e-30f;
    const float d = live ? amax / 127.0f : 0.0f, id = live ? 127.0f / amax : 0.0f;
    const int q = __float2int_rn(v * id);
    int s = q;
    for (int o = 16; o >= 1; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    xq[j] = (int8_t)q;
    if ((j & 31) == 0) xd[j >> 5] = make_float2(d, d * (float)s);
}

// A whole row of cols (a multiple of 32) by a block of a multiple of 32 threads: thread k takes j = k, k + T, ..
__device__ __forceinline__ void aero_q8_row(const float *row, int cols, int8_t *xq, float2 *xd) {
#pragma unroll 4
    for (int j = threadIdx.x; j < cols; j += blockDim.x) aero_q8_quant(row[j], j, xq, xd);
}

// ---- a lane's weights: bytes loaded apart from their unpacking -----------------------------------------------
// W8<TY>::load gathers the bytes behind a lane's 8 elements of each chunk of unit u of a row (codes and scales);
// codes(k) gives chunk k of the unit as two words of s8 (elements 8t .. 8t + 3, 8t + 4 .. 8t + 7); unit_scales(u)
// the float scales of the unit's chunks. U: chunks per unit; RING: units whose loads the decode tile keeps in flight.

template <int TY> struct W8;

// The nibbles of a word minus 8 (Q4_0), or 6-bit codes minus 32 (Q6_K), as s8: a bytewise add that cannot carry
// (n + 0x78 <= 0x87, q + 0x60 <= 0x9f) then the sign bit flipped.
__device__ __forceinline__ uint32_t s8_less8(uint32_t n) { return (n + 0x78787878u) ^ 0x80808080u; }
__device__ __forceinline__ uint32_t s8_less32(uint32_t q) { return (q + 0x60606060u) ^ 0x80808080u; }

struct ScD { // a chunk's scale
    float d;
};
struct ScDM { // scale and negated min (Q4_K, Q5_K): dl and -ml
    float d, m;
};
struct ScD2 { // super-block scale and the two int8 scales of the halves (Q6_K)
    float d, s0, s1;
};

template <> struct W8<AERO_DT_Q8_0> {
    static constexpr int U = 1, RING = 6;
    typedef ScD Sc;
    unsigned short d;
    uint2 q;
    __device__ static W8 load(const uint8_t *row, int u, int t) {
        const uint8_t *blk = row + 34 * (size_t)u;
        return W8{__ldg((const unsigned short *)blk), ld8_a2(blk + 2 + 8 * t)};
    }
    __device__ void codes(int, int, uint32_t &x, uint32_t &y) const { x = q.x, y = q.y; }
    __device__ void unit_scales(int, Sc s[U]) const { s[0] = Sc{__half2float(__ushort_as_half(d))}; }
};

template <> struct W8<AERO_DT_Q4_0> {
    static constexpr int U = 1, RING = 6;
    typedef ScD Sc;
    unsigned short d;
    uint2 q;
    __device__ static W8 load(const uint8_t *row, int u, int t) {
        const uint8_t *blk = row + 18 * (size_t)u;
        return W8{__ldg((const unsigned short *)blk), ld8_a2(blk + 2 + 8 * (t & 1))};
    }
    // elements 8t.. are the low nibbles of qs[8t..] for t < 2, the high nibbles of qs[8 (t - 2)..] beyond
    __device__ void codes(int, int t, uint32_t &x, uint32_t &y) const {
        const int sh = 4 * (t >> 1);
        x = s8_less8((q.x >> sh) & 0x0F0F0F0Fu), y = s8_less8((q.y >> sh) & 0x0F0F0F0Fu);
    }
    __device__ void unit_scales(int, Sc s[U]) const { s[0] = Sc{__half2float(__ushort_as_half(d))}; }
};

// The scales and negated mins of the two groups 2p, 2p + 1 (chunks of unit p of a super-block) of a Q4_K/Q5_K
// header: dl = d * sc and -ml = (-dmin) * m, the values of q4k_dl_ml_h (ggml's get_scale_min_k4) for both groups
// at once. Bytes 2p, 2p + 1 of the 12 scale bytes give both groups' 6-bit sc and m in two bytes of a word.
__device__ __forceinline__ void q4k_pair_scales(int p, uint4 h, ScDM s[2]) {
    const uint32_t w0 = h.y, w1 = h.z, w2 = h.w, sh = 16 * (p & 1);
    uint32_t sc, m;
    if (p < 2) {
        sc = (w0 >> sh) & 0x3F3Fu;
        m = (w1 >> sh) & 0x3F3Fu;
    } else { // groups 4..7: low 4 bits from bytes 8..11, high 2 from the top bits of bytes 0..3 (sc) and 4..7 (m)
        sc = ((w2 >> sh) & 0x0F0Fu) | ((w0 >> (sh + 2)) & 0x3030u);
        m = ((w2 >> (sh + 4)) & 0x0F0Fu) | ((w1 >> (sh + 2)) & 0x3030u);
    }
    const float d = __half2float(__ushort_as_half((unsigned short)(h.x & 0xffff)));
    const float ndmin = -__half2float(__ushort_as_half((unsigned short)(h.x >> 16)));
#pragma unroll
    for (int k = 0; k < 2; k++) s[k] = ScDM{d * byte_f(sc, k, 0.0f), ndmin * byte_f(m, k, 0.0f)};
}

template <> struct W8<AERO_DT_Q4_K> {
    static constexpr int U = 2, RING = 3;
    typedef ScDM Sc;
    uint4 h; // d, dmin, the 12 scale bytes
    uint2 q; // the codes of both chunks of the unit (low nibbles: the even chunk)
    __device__ static W8 load(const uint8_t *row, int u, int t) {
        const uint8_t *blk = row + 144 * (size_t)(u >> 2);
        return W8{__ldg((const uint4 *)blk), ld8_a8(blk + 16 + 32 * (u & 3) + 8 * t)};
    }
    __device__ void codes(int k, int, uint32_t &x, uint32_t &y) const {
        x = (q.x >> (4 * k)) & 0x0F0F0F0Fu, y = (q.y >> (4 * k)) & 0x0F0F0F0Fu;
    }
    __device__ void unit_scales(int u, Sc s[U]) const { q4k_pair_scales(u & 3, h, s); }
};

template <> struct W8<AERO_DT_Q5_K> {
    static constexpr int U = 2, RING = 2;
    typedef ScDM Sc;
    uint4 h;
    uint2 q, qh; // codes of both chunks; the fifth bits of the whole super-block (bit g for group g)
    __device__ static W8 load(const uint8_t *row, int u, int t) {
        const uint8_t *blk = row + 176 * (size_t)(u >> 2);
        return W8{__ldg((const uint4 *)blk), ld8_a8(blk + 48 + 32 * (u & 3) + 8 * t), ld8_a8(blk + 16 + 8 * t)};
    }
    // chunk k of unit u is group g = 2 (u % 4) + k of the super-block; c = U u + k, so g = c % 8
    __device__ void codes(int k, int, uint32_t &x, uint32_t &y, int g) const {
        x = ((q.x >> (4 * k)) & 0x0F0F0F0Fu) | (((qh.x >> g) & 0x01010101u) << 4);
        y = ((q.y >> (4 * k)) & 0x0F0F0F0Fu) | (((qh.y >> g) & 0x01010101u) << 4);
    }
    __device__ void unit_scales(int u, Sc s[U]) const { q4k_pair_scales(u & 3, h, s); }
};

template <> struct W8<AERO_DT_Q6_K> {
    static constexpr int U = 1, RING = 3;
    typedef ScD2 Sc;
    unsigned short d, s2; // the super-block scale; the chunk's two int8 scales (one per 16 elements)
    uint2 lo, hi;
    unsigned char sl, shh; // the shifts of chunk c's codes in its ql and qh bytes
    __device__ static W8 load(const uint8_t *row, int u, int t) {
        const uint8_t *blk = row + 210 * (size_t)(u >> 3);
        const int cc = u & 7, hh = cc >> 2, k = cc & 3;
        return W8{__ldg((const unsigned short *)(blk + 208)),
                  __ldg((const unsigned short *)(blk + 192 + 8 * hh + 2 * k)),
                  ld8_a2(blk + 64 * hh + 32 * (k & 1) + 8 * t),
                  ld8_a2(blk + 128 + 32 * hh + 8 * t),
                  (unsigned char)(4 * (k >> 1)),
                  (unsigned char)(2 * k)};
    }
    __device__ void codes(int, int, uint32_t &x, uint32_t &y) const {
        x = s8_less32(((lo.x >> sl) & 0x0F0F0F0Fu) | (((hi.x >> shh) & 0x03030303u) << 4));
        y = s8_less32(((lo.y >> sl) & 0x0F0F0F0Fu) | (((hi.y >> shh) & 0x03030303u) << 4));
    }
    __device__ void unit_scales(int, Sc s[U]) const {
        // the int8 scales as exact floats: the biased byte through the 2^23 mantissa trick
        const float s0 = __int_as_float(0x4B000000 | ((s2 & 0xff) ^ 0x80)) - 8388736.0f;
        const float s1 = __int_as_float(0x4B000000 | ((s2 >> 8) ^ 0x80)) - 8388736.0f;
        s[0] = Sc{__half2float(__ushort_as_half(d)), s0, s1};
    }
};

// The A fragment of chunk k of a unit (rows g and g + 8 of a tile) and the two rows' scales (W8::unit_scales).
template <int TY> struct A8 {
    uint32_t a[4];
    typename W8<TY>::Sc s[2];
};

template <int TY>
__device__ __forceinline__ A8<TY> frag8(const W8<TY> &ra, const W8<TY> &rb, const typename W8<TY>::Sc sa[],
                                        const typename W8<TY>::Sc sb[], int k, int c, int t) {
    A8<TY> f;
    if constexpr (TY == AERO_DT_Q5_K) {
        ra.codes(k, t, f.a[0], f.a[2], c & 7);
        rb.codes(k, t, f.a[1], f.a[3], c & 7);
    } else {
        ra.codes(k, t, f.a[0], f.a[2]);
        rb.codes(k, t, f.a[1], f.a[3]);
    }
    f.s[0] = sa[k];
    f.s[1] = sb[k];
    return f;
}

// One chunk of one 16-row x 8-token tile: the mma (two for Q6_K, one per half: B masked to the lanes that hold
// that half, t < 2 for elements 0..15) and the float epilogue of the header's table. b: token g's codes;
// xd[j]: {da, das} of token 2t + j (zeros past the batch).
template <int TY>
__device__ __forceinline__ void chunk8(const A8<TY> &f, uint2 b, const float2 xd[2], int t, float acc[4]) {
    if constexpr (TY == AERO_DT_Q6_K) {
        int s0[4] = {Q8_BIAS, Q8_BIAS, Q8_BIAS, Q8_BIAS}, s1[4] = {Q8_BIAS, Q8_BIAS, Q8_BIAS, Q8_BIAS};
        const bool first = t < 2;
        mma_s8(s0, f.a, first ? b.x : 0u, first ? b.y : 0u);
        mma_s8(s1, f.a, first ? 0u : b.x, first ? 0u : b.y);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int h = i >> 1, j = i & 1;
            const float f0 = __int_as_float(s0[i]) - Q8_BIAS_F, f1 = __int_as_float(s1[i]) - Q8_BIAS_F;
            const float q = fmaf(f.s[h].s0, f0, f.s[h].s1 * f1);
            acc[i] = fmaf(f.s[h].d * xd[j].x, q, acc[i]);
        }
    } else {
        int s[4] = {Q8_BIAS, Q8_BIAS, Q8_BIAS, Q8_BIAS};
        mma_s8(s, f.a, b.x, b.y);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int h = i >> 1, j = i & 1;
            acc[i] = fmaf(f.s[h].d * xd[j].x, __int_as_float(s[i]) - Q8_BIAS_F, acc[i]);
            if constexpr (TY == AERO_DT_Q4_K || TY == AERO_DT_Q5_K) acc[i] = fmaf(f.s[h].m, xd[j].y, acc[i]);
        }
    }
}

// One block's work: row tile bx (MT tiles of 16 rows) x token tile blockIdx.y (NT tiles of 8 tokens) of
// Y = W x, MMA_WARPS warps. XQ: [n][cols] int8 activations, XD: [n][cols / 32] {d, d * sum} (aero_q8_quant).
template <int TY, int MT, int NT>
__device__ __forceinline__ void q8_tile(const uint8_t *__restrict__ W, size_t row_bytes, int rows, int cols,
                                        const int8_t *__restrict__ XQ, const float2 *__restrict__ XD, int n,
                                        float *__restrict__ Y, int bx) {
    typedef W8<TY> R;
    constexpr int U = R::U;
    __shared__ float red[MMA_WARPS / 2][MT * NT * 4][32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int r0 = bx * 16 * MT, t0 = blockIdx.y * 8 * NT;
    const int nchunks = cols >> 5, nunits = nchunks / U;
    const uint8_t *rp[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int h = 0; h < 2; h++) rp[mt][h] = W + (size_t)min(r0 + 16 * mt + g + 8 * h, rows - 1) * row_bytes;
    // token g's codes (the B fragment, from element 8t) and the block scales of tokens 2t, 2t + 1 (the
    // accumulators' columns) of token tile j; zeros past the batch
    auto codes = [&](int j, int c) {
        const int tok = t0 + 8 * j + g;
        return tok < n ? __ldg((const uint2 *)(XQ + (size_t)tok * cols + 32 * c + 8 * t)) : make_uint2(0, 0);
    };
    auto scales = [&](int j, int c, float2 xd[2]) {
#pragma unroll
        for (int e = 0; e < 2; e++) {
            const int tok = t0 + 8 * j + 2 * t + e;
            xd[e] = tok < n ? __ldg(XD + (size_t)tok * nchunks + c) : make_float2(0.0f, 0.0f);
        }
    };
    float acc[MT][NT][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int j = 0; j < NT; j++)
#pragma unroll
            for (int i = 0; i < 4; i++) acc[mt][j][i] = 0.0f;

    // warp w: the contiguous units [u0, u1)
    const int per = (nunits + MMA_WARPS - 1) / MMA_WARPS, u0 = min(warp * per, nunits), u1 = min(u0 + per, nunits);
    if constexpr (MT == 1 && NT == 1) {
        // the decode tile (up to 8 tokens): a ring of RING units whose loads are in flight, each unit's bytes
        // loaded RING units before its mma; the chunks still enter the accumulators in order
        constexpr int DEPTH = R::RING;
        R ra[DEPTH], rb[DEPTH];
        uint2 xb[DEPTH][U];
        float2 xd[DEPTH][U][2];
        // the activation rows of this lane's tokens, out of the loop (a token past the batch reads zeros)
        const bool ok_b = t0 + g < n, ok_s0 = t0 + 2 * t < n, ok_s1 = t0 + 2 * t + 1 < n;
        const int8_t *xq_b = XQ + (size_t)min(t0 + g, n - 1) * cols + 8 * t;
        const float2 *xd_s0 = XD + (size_t)min(t0 + 2 * t, n - 1) * nchunks;
        const float2 *xd_s1 = XD + (size_t)min(t0 + 2 * t + 1, n - 1) * nchunks;
        auto fetch = [&](int s, int u) {
            ra[s] = R::load(rp[0][0], u, t);
            rb[s] = R::load(rp[0][1], u, t);
#pragma unroll
            for (int k = 0; k < U; k++) {
                const int c = U * u + k;
                xb[s][k] = ok_b ? __ldg((const uint2 *)(xq_b + 32 * c)) : make_uint2(0, 0);
                xd[s][k][0] = ok_s0 ? __ldg(xd_s0 + c) : make_float2(0.0f, 0.0f);
                xd[s][k][1] = ok_s1 ? __ldg(xd_s1 + c) : make_float2(0.0f, 0.0f);
            }
        };
#pragma unroll
        for (int s = 0; s < DEPTH; s++)
            if (u0 + s < u1) fetch(s, u0 + s);
        for (int u = u0; u < u1; u += DEPTH) {
#pragma unroll
            for (int s = 0; s < DEPTH; s++) {
                if (u + s >= u1) break;
                typename R::Sc sa[U], sb[U];
                ra[s].unit_scales(u + s, sa);
                rb[s].unit_scales(u + s, sb);
#pragma unroll
                for (int k = 0; k < U; k++) {
                    const int c = U * (u + s) + k;
                    chunk8<TY>(frag8<TY>(ra[s], rb[s], sa, sb, k, c, t), xb[s][k], xd[s][k], t, acc[0][0]);
                }
                if (u + s + DEPTH < u1) fetch(s, u + s + DEPTH);
            }
        }
    } else {
#pragma unroll 1
        for (int u = u0; u < u1; u++) {
            R ra[MT], rb[MT];
            typename R::Sc sa[MT][U], sb[MT][U];
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                ra[mt] = R::load(rp[mt][0], u, t), rb[mt] = R::load(rp[mt][1], u, t);
                ra[mt].unit_scales(u, sa[mt]), rb[mt].unit_scales(u, sb[mt]);
            }
#pragma unroll
            for (int k = 0; k < U; k++) {
                const int c = U * u + k;
                A8<TY> f[MT]; // each row tile's fragment, decoded once for the NT token tiles
#pragma unroll
                for (int mt = 0; mt < MT; mt++) f[mt] = frag8<TY>(ra[mt], rb[mt], sa[mt], sb[mt], k, c, t);
#pragma unroll
                for (int j = 0; j < NT; j++) {
                    const uint2 b = codes(j, c);
                    float2 xd[2];
                    scales(j, c, xd);
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) chunk8<TY>(f[mt], b, xd, t, acc[mt][j]);
                }
            }
        }
    }

    tile_reduce_store<MT, NT>(acc, red, warp, lane, r0, t0, rows, n, nullptr, Y);
}

// One matrix: grid (ceil(rows / 16 MT), ceil(n / 8 NT)). The decode tile is bounded to 128 registers: two blocks
// (16 warps) per SM, each warp with RING units in flight.
template <int TY, int MT, int NT>
__global__ void __launch_bounds__(MMA_THREADS, MT *NT == 1 ? 2 : 1)
    k_q8(const uint8_t *__restrict__ W, size_t row_bytes, int rows, int cols, const int8_t *__restrict__ XQ,
         const float2 *__restrict__ XD, int n, float *__restrict__ Y) {
    q8_tile<TY, MT, NT>(W, row_bytes, rows, cols, XQ, XD, n, Y, blockIdx.x);
}

// Up to Q8_MANY matrices of one type and width that share their input (q/k/v, gate/up), in one launch: block
// x of the grid is row tile x - first[i] of matrix i (first[i] <= x < first[i + 1]). Each output gets the bits
// of its own matrix's launch, and the small matrices (an 8B's 1024-row K and V) share the GPU with the others.
#define Q8_MANY 3
struct Q8Many {
    const uint8_t *W[Q8_MANY];
    size_t row_bytes[Q8_MANY];
    int rows[Q8_MANY];
    float *Y[Q8_MANY];
    int first[Q8_MANY + 1];
};

// The matrix of block x of a Q8Many grid and x's block index within it.
struct Q8One {
    const uint8_t *W;
    size_t row_bytes;
    int rows;
    float *Y;
    int bx;
};
__device__ __forceinline__ Q8One q8_many_pick(const Q8Many &m, int x) {
    // constant indices, not a dynamic one into the parameter struct (which would copy it to local memory)
    if (x < m.first[1]) return Q8One{m.W[0], m.row_bytes[0], m.rows[0], m.Y[0], x};
    if (x < m.first[2]) return Q8One{m.W[1], m.row_bytes[1], m.rows[1], m.Y[1], x - m.first[1]};
    return Q8One{m.W[2], m.row_bytes[2], m.rows[2], m.Y[2], x - m.first[2]};
}

template <int TY, int MT, int NT>
__global__ void __launch_bounds__(MMA_THREADS, MT *NT == 1 ? 2 : 1)
    k_q8_many(Q8Many m, int cols, const int8_t *__restrict__ XQ, const float2 *__restrict__ XD, int n) {
    const Q8One o = q8_many_pick(m, blockIdx.x);
    q8_tile<TY, MT, NT>(o.W, o.row_bytes, o.rows, cols, XQ, XD, n, o.Y, o.bx);
}

// ---- one token: a matrix-vector kernel with a lane per row (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K) ------------------
// The decode tile above computes 8 token columns per mma and decodes each row's scales in all four lanes that
// hold it; for one token that is 8x the epilogue and 4x the scale work it needs, and its loads take 8 bytes per
// lane from 8 rows at once. This kernel computes the same bits for n = 1 with the same reduction order: lane r
// of warp w owns row r of a 32-row block and warp w's contiguous run of units (the tile's split), sums each
// chunk's codes with dp4a (an exact int32, as the mma's), applies the header's float operations in chunk order,
// and the warps are summed by the tile's pairwise tree. The weights travel by cp.async: each warp copies one
// group (a Q4_K/Q5_K/Q6_K super-block, 8 Q8_0 or Q4_0 blocks; for Q6_K the 16-byte aligned window around it)
// of each of its 32 rows per step into shared memory (32 lanes x 16 B of consecutive bytes per copy, so each
// copy covers a few whole cache lines), two steps ahead of the one it computes. Activations are read through L1
// (every lane of a warp reads the same chunk: one broadcast).

#define Q8V_ROWS 32 // rows per block: one per lane
// Buffers per warp: two steps in flight while one computes (a 4096-row matrix has one block per SM, whose 8 warps
// alone must keep ~40 KB in flight).
#define Q8V_STAGES 3

#ifndef AERO_CUDA_HOST_EMU
// 16 bytes global -> shared without a register round trip; completes at cp_async_wait.
__device__ __forceinline__ void cp_async16(void *dst, const void *src) {
    const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(d), "l"(src));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
// Waits until at most N of this thread's committed groups are still in flight.
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }
#else
static inline void cp_async16(void *dst, const void *src) { memcpy(dst, src, 16); }
static inline void cp_async_commit() {}
template <int N> static inline void cp_async_wait() {}
static inline void __syncwarp() { emu_wait(EMU_WARP_WAIT); }
static inline int __dp4a(int a, int b, int c) {
    for (int i = 0; i < 4; i++) c += s8_at((uint32_t)a, i) * s8_at((uint32_t)b, i);
    return c;
}
static inline uint32_t __funnelshift_r(uint32_t lo, uint32_t hi, int sh) {
    return (uint32_t)((((uint64_t)hi << 32) | lo) >> (sh & 31));
}
#endif

// The group bytes of the types this kernel takes (0: not taken): a Q4_K/Q5_K/Q6_K super-block, 8 Q8_0 or Q4_0
// blocks. Every group but Q6_K's (210 bytes) is a multiple of 16 bytes.
__host__ __device__ constexpr int q8v_block_bytes(int ty) {
    return ty == AERO_DT_Q4_K   ? 144
           : ty == AERO_DT_Q5_K ? 176
           : ty == AERO_DT_Q6_K ? 210
           : ty == AERO_DT_Q8_0 ? 8 * 34
           : ty == AERO_DT_Q4_0 ? 8 * 18
                                : 0;
}
// The bytes copied per row and step: the group, or for Q6_K the 16-byte aligned window around it (with rows
// 16-byte aligned, a super-block starts 0..14 bytes into a 224-byte window that ends inside the row).
__host__ __device__ constexpr int q8v_window(int ty) { return ty == AERO_DT_Q6_K ? 224 : q8v_block_bytes(ty); }
// A row's bytes in shared memory: the window, rounded to an odd number of 16-byte bank groups so that the lanes'
// 16-byte reads do not conflict (144, 176, 272 already are; Q6_K's 224 becomes 240).
__host__ __device__ constexpr int q8v_stride(int ty) {
    return q8v_window(ty) / 16 % 2 ? q8v_window(ty) : q8v_window(ty) + 16;
}
// Dynamic shared memory of a block: MMA_WARPS warps x Q8V_STAGES buffers x 32 rows, and 16 bytes that the last
// row's word reads may reach past it (Q8_0, Q4_0).
__host__ __device__ constexpr int q8v_smem_bytes(int ty) {
    return MMA_WARPS * Q8V_STAGES * Q8V_ROWS * q8v_stride(ty) + 16;
}

// A group's layout per type: GB bytes, UPG units of U chunks; Q8V<TY>::unit adds unit p of the group at g (a
// row's copy in shared memory) to acc, as the decode tile's chunk8 does for that row.
template <int TY> struct Q8V { static constexpr int GB = 0; };

// The integer dot of N words of s8 codes with N words of s8 activation codes (exact in any order).
template <int N> __device__ __forceinline__ int q8v_dp4a(const uint32_t *code, const uint32_t *act) {
    int sum = 0;
#pragma unroll
    for (int j = 0; j < N; j++) sum = __dp4a((int)code[j], (int)act[j], sum);
    return sum;
}

// The chunk sum of 8 code words against chunk c's activation codes (32 int8: one broadcast load pair).
__device__ __forceinline__ int q8v_dot(const uint32_t code[8], const int8_t *__restrict__ XQ, int c) {
    const uint4 a0 = __ldg((const uint4 *)(XQ + 32 * (size_t)c)), a1 = __ldg((const uint4 *)(XQ + 32 * (size_t)c + 16));
    const uint32_t aw[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
    return q8v_dp4a<8>(code, aw);
}

// Words of shared memory from a 2-byte aligned block: w[0..n) from the word holding byte 0, sh = 16 when the
// block starts mid-word (then byte k of the block is byte k + 2 of the words).
template <int N> __device__ __forceinline__ int q8v_words(const uint8_t *p, uint32_t w[N]) {
    const uint32_t *a = (const uint32_t *)((uintptr_t)p & ~(uintptr_t)3);
#pragma unroll
    for (int i = 0; i < N; i++) w[i] = a[i];
    return (int)((uintptr_t)p & 3) * 8;
}

template <> struct Q8V<AERO_DT_Q4_K> {
    static constexpr int GB = q8v_block_bytes(AERO_DT_Q4_K), UPG = 4, U = 2;
    __device__ static void unit(const uint8_t *g, int p, int u, const int8_t *XQ, const float2 *XD, float &acc) {
        const uint4 h = *(const uint4 *)g, q0 = *(const uint4 *)(g + 16 + 32 * p),
                    q1 = *(const uint4 *)(g + 32 + 32 * p);
        const uint32_t qw[8] = {q0.x, q0.y, q0.z, q0.w, q1.x, q1.y, q1.z, q1.w};
        ScDM sc[2];
        q4k_pair_scales(p, h, sc);
#pragma unroll
        for (int k = 0; k < 2; k++) { // low nibbles: chunk 2u (group 2p), high: chunk 2u + 1
            uint32_t code[8];
#pragma unroll
            for (int j = 0; j < 8; j++) code[j] = (qw[j] >> (4 * k)) & 0x0F0F0F0Fu;
            const float2 xd = __ldg(XD + 2 * u + k);
            acc = fmaf(sc[k].d * xd.x, (float)q8v_dot(code, XQ, 2 * u + k), acc);
            acc = fmaf(sc[k].m, xd.y, acc);
        }
    }
};

template <> struct Q8V<AERO_DT_Q5_K> {
    static constexpr int GB = q8v_block_bytes(AERO_DT_Q5_K), UPG = 4, U = 2;
    __device__ static void unit(const uint8_t *g, int p, int u, const int8_t *XQ, const float2 *XD, float &acc) {
        const uint4 h = *(const uint4 *)g, qh0 = *(const uint4 *)(g + 16), qh1 = *(const uint4 *)(g + 32);
        const uint4 q0 = *(const uint4 *)(g + 48 + 32 * p), q1 = *(const uint4 *)(g + 64 + 32 * p);
        const uint32_t qw[8] = {q0.x, q0.y, q0.z, q0.w, q1.x, q1.y, q1.z, q1.w};
        const uint32_t hw[8] = {qh0.x, qh0.y, qh0.z, qh0.w, qh1.x, qh1.y, qh1.z, qh1.w};
        ScDM sc[2];
        q4k_pair_scales(p, h, sc);
#pragma unroll
        for (int k = 0; k < 2; k++) { // the fifth bit of element j of group gi is bit gi of qh[j]
            const int gi = 2 * p + k;
            uint32_t code[8];
#pragma unroll
            for (int j = 0; j < 8; j++)
                code[j] = ((qw[j] >> (4 * k)) & 0x0F0F0F0Fu) | (((hw[j] >> gi) & 0x01010101u) << 4);
            const float2 xd = __ldg(XD + 2 * u + k);
            acc = fmaf(sc[k].d * xd.x, (float)q8v_dot(code, XQ, 2 * u + k), acc);
            acc = fmaf(sc[k].m, xd.y, acc);
        }
    }
};

template <> struct Q8V<AERO_DT_Q8_0> {
    static constexpr int GB = q8v_block_bytes(AERO_DT_Q8_0), UPG = 8,
                         U = 1; // 8 blocks of 34 bytes: f16 d, 32 int8 codes
    __device__ static void unit(const uint8_t *g, int p, int u, const int8_t *XQ, const float2 *XD, float &acc) {
        uint32_t w[10], code[8];
        const int sh = q8v_words<10>(g + 34 * p, w); // the codes start at byte 2: mid-word unless the block does
#pragma unroll
        for (int j = 0; j < 8; j++) code[j] = sh ? w[j + 1] : __funnelshift_r(w[j], w[j + 1], 16);
        const float d = __half2float(__ushort_as_half((unsigned short)((w[0] >> sh) & 0xffff)));
        acc = fmaf(d * __ldg(XD + u).x, (float)q8v_dot(code, XQ, u), acc);
    }
};

template <> struct Q8V<AERO_DT_Q4_0> {
    static constexpr int GB = q8v_block_bytes(AERO_DT_Q4_0), UPG = 8,
                         U = 1; // 8 blocks of 18 bytes: f16 d, 16 bytes of nibbles
    __device__ static void unit(const uint8_t *g, int p, int u, const int8_t *XQ, const float2 *XD, float &acc) {
        uint32_t w[6], q[4], code[8];
        const int sh = q8v_words<6>(g + 18 * p, w);
#pragma unroll
        for (int j = 0; j < 4; j++) q[j] = sh ? w[j + 1] : __funnelshift_r(w[j], w[j + 1], 16);
#pragma unroll
        for (int j = 0; j < 4; j++) // elements 0..15: low nibbles of bytes 0..15; 16..31: high nibbles; minus 8
            code[j] = s8_less8(q[j] & 0x0F0F0F0Fu), code[4 + j] = s8_less8((q[j] >> 4) & 0x0F0F0F0Fu);
        const float d = __half2float(__ushort_as_half((unsigned short)((w[0] >> sh) & 0xffff)));
        acc = fmaf(d * __ldg(XD + u).x, (float)q8v_dot(code, XQ, u), acc);
    }
};

// 32 bytes from a 2-byte aligned place in shared memory, as 8 words.
__device__ __forceinline__ void q8v_bytes32(const uint8_t *p, uint32_t out[8]) {
    uint32_t w[9];
    const int sh = q8v_words<9>(p, w);
#pragma unroll
    for (int j = 0; j < 8; j++) out[j] = sh ? __funnelshift_r(w[j], w[j + 1], 16) : w[j];
}

template <> struct Q8V<AERO_DT_Q6_K> {
    static constexpr int GB = q8v_block_bytes(AERO_DT_Q6_K), UPG = 8, U = 1; // ql[128] qh[64] scales[16] d
    // chunk p: 4-bit parts at ql[64 hh + 32 (p & 1)..] (high nibbles for p % 4 >= 2), 2-bit parts at qh[32 hh..]
    // (shift 2 (p % 4)), codes minus 32; two int8 scales, one per 16 elements; f = fmaf(sc0, s0, sc1 * s1)
    __device__ static void unit(const uint8_t *g, int p, int u, const int8_t *XQ, const float2 *XD, float &acc) {
        const int hh = p >> 2, k = p & 3;
        uint32_t lo[8], hi[8], code[8];
        q8v_bytes32(g + 64 * hh + 32 * (k & 1), lo);
        q8v_bytes32(g + 128 + 32 * hh, hi);
#pragma unroll
        for (int j = 0; j < 8; j++)
            code[j] = s8_less32(((lo[j] >> (4 * (k >> 1))) & 0x0F0F0F0Fu) | (((hi[j] >> (2 * k)) & 0x03030303u) << 4));
        const uint4 a0 = __ldg((const uint4 *)(XQ + 32 * (size_t)u)),
                    a1 = __ldg((const uint4 *)(XQ + 32 * (size_t)u + 16));
        const uint32_t aw[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
        const int s0 = q8v_dp4a<4>(code, aw), s1 = q8v_dp4a<4>(code + 4, aw + 4); // elements 0..15, 16..31
        const unsigned short s2 = *(const unsigned short *)(g + 192 + 8 * hh + 2 * k);
        const float sc0 = __int_as_float(0x4B000000 | ((s2 & 0xff) ^ 0x80)) - 8388736.0f;
        const float sc1 = __int_as_float(0x4B000000 | ((s2 >> 8) ^ 0x80)) - 8388736.0f;
        const float d = __half2float(__ushort_as_half(*(const unsigned short *)(g + 208)));
        const float q = fmaf(sc0, (float)s0, sc1 * (float)s1);
        acc = fmaf(d * __ldg(XD + u).x, q, acc);
    }
};

// Row r's output over the units [u0, u1) of lane r (this warp's run), as the decode tile's warp accumulates it
// (Q8V<TY>::unit in unit order). buf: this warp's two buffers of 32 groups (row r's at r * GB).
template <int TY>
__device__ __forceinline__ float q8v_run(const uint8_t *W, size_t row_bytes, int rows, int r0, int u0, int u1,
                                         const int8_t *__restrict__ XQ, const float2 *__restrict__ XD, uint8_t *buf) {
    typedef Q8V<TY> V;
    constexpr int PIECES = q8v_window(TY) / 16, STRIDE = q8v_stride(TY); // 16-byte pieces of a row's window
    const int lane = threadIdx.x & 31;
    float acc = 0.0f;
    if (u0 >= u1) return acc;
    const int b0 = u0 / V::UPG, nb = (u1 - 1) / V::UPG - b0 + 1; // the groups the run touches
    // step i: the window of group b0 + i (from its byte offset rounded down to 16) of the 32 rows into buffer
    // i % Q8V_STAGES; piece p is row p / PIECES, bytes 16 (p % PIECES)
    auto issue = [&](int i) {
        uint8_t *dst = buf + (size_t)(i % Q8V_STAGES) * Q8V_ROWS * STRIDE;
        const size_t off = ((size_t)V::GB * (b0 + i)) & ~(size_t)15;
#pragma unroll
        for (int k = 0; k < PIECES; k++) {
            const int p = lane + 32 * k, row = p / PIECES, part = p - row * PIECES;
            cp_async16(dst + (size_t)row * STRIDE + 16 * part,
                       W + (size_t)min(r0 + row, rows - 1) * row_bytes + off + 16 * part);
        }
        cp_async_commit();
    };
    issue(0);
    if (nb > 1) issue(1);
    for (int i = 0; i < nb; i++) { // steps i + 1 and i + 2 in flight while step i computes
        if (i + 2 < nb) {
            issue(i + 2);
            cp_async_wait<2>();
        } else if (i + 1 < nb) {
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncwarp(); // every lane's copies of step i are in
        const uint8_t *g =
            buf + (size_t)(i % Q8V_STAGES) * Q8V_ROWS * STRIDE + (size_t)lane * STRIDE + ((V::GB * (b0 + i)) & 15);
        const int ub = V::UPG * (b0 + i), ua = max(u0, ub), uz = min(u1, ub + V::UPG);
        for (int u = ua; u < uz; u++) V::unit(g, u - ub, u, XQ, XD, acc);
        __syncwarp(); // every lane is done with buffer i % Q8V_STAGES before step i + Q8V_STAGES refills it
    }
    return acc;
}

// Rows 32 bx .. 32 bx + 31 of y = W x for one token: warp w runs the tile's w-th run of units, then the tile's
// tree ((w0 + w1) + (w2 + w3)) + ((w4 + w5) + (w6 + w7)).
template <int TY>
__device__ __forceinline__ void q8v_rows(const uint8_t *__restrict__ W, size_t row_bytes, int rows, int cols,
                                         const int8_t *__restrict__ XQ, const float2 *__restrict__ XD,
                                         float *__restrict__ Y, int bx) {
#ifndef AERO_CUDA_HOST_EMU
    extern __shared__ uint4 q8v_smem[];
#else
    __shared__ uint4 q8v_smem[q8v_smem_bytes(AERO_DT_Q8_0) / 16]; // the largest
#endif
    __shared__ float part[MMA_WARPS][32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, r0 = bx * Q8V_ROWS;
    const int nunits = (cols >> 5) / Q8V<TY>::U, per = (nunits + MMA_WARPS - 1) / MMA_WARPS;
    const int u0 = min(warp * per, nunits), u1 = min(u0 + per, nunits);
    uint8_t *buf = (uint8_t *)q8v_smem + (size_t)warp * Q8V_STAGES * Q8V_ROWS * q8v_stride(TY);
    part[warp][lane] = q8v_run<TY>(W, row_bytes, rows, r0, u0, u1, XQ, XD, buf);
    __syncthreads();
    if (warp) return;
    float w[MMA_WARPS];
#pragma unroll
    for (int i = 0; i < MMA_WARPS; i++) w[i] = part[i][lane];
#pragma unroll
    for (int step = 1; step < MMA_WARPS; step <<= 1)
#pragma unroll
        for (int i = 0; i < MMA_WARPS; i += 2 * step) w[i] = w[i] + w[i + step];
    if (r0 + lane < rows) Y[r0 + lane] = w[0];
}

// One matrix, one token: grid ceil(rows / 32), MMA_THREADS threads, q8v_smem_bytes(TY) of dynamic shared memory.
template <int TY>
__global__ void __launch_bounds__(MMA_THREADS, 1)
    k_q8v(const uint8_t *__restrict__ W, size_t row_bytes, int rows, int cols, const int8_t *__restrict__ XQ,
          const float2 *__restrict__ XD, float *__restrict__ Y) {
    q8v_rows<TY>(W, row_bytes, rows, cols, XQ, XD, Y, blockIdx.x);
}

// Up to Q8_MANY matrices sharing one token's input, as k_q8_many with 32-row blocks (first[] counts those).
template <int TY>
__global__ void __launch_bounds__(MMA_THREADS, 1)
    k_q8v_many(Q8Many m, int cols, const int8_t *__restrict__ XQ, const float2 *__restrict__ XD) {
    const Q8One o = q8_many_pick(m, blockIdx.x);
    q8v_rows<TY>(o.W, o.row_bytes, o.rows, cols, XQ, XD, o.Y, o.bx);
}

#endif
