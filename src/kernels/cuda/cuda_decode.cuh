// The weight decoders of the CUDA matmul and get_rows kernels: per type, the scales of a 32-element chunk and
// its codes as exact floats. A header of its own so that tests/cuda/test_decode_host.cpp can compile the very
// same code on the CPU (AERO_CUDA_HOST_EMU supplies host versions of the few intrinsics) and check it against
// the scalar reference on machines without a GPU.
#ifndef AERO_KERNELS_CUDA_DECODE_CUH
#define AERO_KERNELS_CUDA_DECODE_CUH

#include <stdint.h>

#ifdef AERO_CUDA_HOST_EMU
#include "cuda_host_emu.h"
#else
#include <cuda_fp16.h>
#endif

#include "../../core/dtype.h"

// ---- loads and conversions -------------------------------------------------------------------------------

__device__ __forceinline__ float f16_at(const uint8_t *p) { return __half2float(__ushort_as_half(__ldg((const unsigned short *)p))); }

// 8 bytes from a 2-byte aligned address (Q4_0, Q8_0, Q6_K blocks are not 4-aligned), as two words.
__device__ __forceinline__ uint2 ld8_a2(const uint8_t *p) {
    const unsigned short *q = (const unsigned short *)p;
    uint2 r;
    r.x = (uint32_t)__ldg(q) | ((uint32_t)__ldg(q + 1) << 16);
    r.y = (uint32_t)__ldg(q + 2) | ((uint32_t)__ldg(q + 3) << 16);
    return r;
}

// 8 bytes from an 8-byte aligned address (Q4_K, Q5_K blocks are 16-aligned).
__device__ __forceinline__ uint2 ld8_a8(const uint8_t *p) { return __ldg((const uint2 *)p); }

// Byte i of w (an integer 0..255) as a float, exactly, minus `bias`: 0x4B0000XX is 2^23 + XX, so one byte
// permute and one add replace an integer-to-float conversion (a quarter-rate instruction).
__device__ __forceinline__ float byte_f(uint32_t w, int i, float bias) {
    return __int_as_float((int)__byte_perm(w, 0x4B000000u, 0x7440 + i)) - (8388608.0f + bias);
}

// The 8 bytes of two words as floats minus bias.
__device__ __forceinline__ void bytes8(uint32_t a, uint32_t b, float bias, float v[8]) {
#pragma unroll
    for (int j = 0; j < 4; j++) v[j] = byte_f(a, j, bias), v[4 + j] = byte_f(b, j, bias);
}

// The scale and min of group j of a Q4_K/Q5_K block as floats: d * sc and dmin * m (ggml's get_scale_min_k4),
// from the block's first 16 bytes (d, dmin, the 12 scale bytes) read as one aligned 16-byte load.
__device__ __forceinline__ void q4k_dl_ml_h(int j, uint4 h, float *dl, float *ml) {
    const uint32_t w0 = h.y, w1 = h.z, w2 = h.w; // scale bytes 0-3, 4-7, 8-11
    int jj = j & 3, sh = 8 * jj, sc, m;
    uint32_t b0 = (w0 >> sh) & 0xff, b4 = (w1 >> sh) & 0xff, b8 = (w2 >> sh) & 0xff; // q[jj], q[jj + 4], q[jj + 8]
    if (j < 4) {
        sc = (int)(b0 & 63);
        m = (int)(b4 & 63);
    } else {
        sc = (int)((b8 & 0xF) | ((b0 >> 6) << 4));
        m = (int)((b8 >> 4) | ((b4 >> 6) << 4));
    }
    // sc, m < 64 as floats through the 2^23 mantissa trick of byte_f (exact, no conversion instruction)
    const float scf = __int_as_float(0x4B000000 | sc) - 8388608.0f, mf = __int_as_float(0x4B000000 | m) - 8388608.0f;
    *dl = __half2float(__ushort_as_half((unsigned short)(h.x & 0xffff))) * scf;
    *ml = __half2float(__ushort_as_half((unsigned short)(h.x >> 16))) * mf;
}

// The same, loading the header (the tensor-core decode tile passes headers it loaded ahead to q4k_dl_ml_h).
__device__ __forceinline__ void q4k_dl_ml(int j, const uint8_t *blk, float *dl, float *ml) {
    q4k_dl_ml_h(j, __ldg((const uint4 *)blk), dl, ml);
}

// ---- per-type decoders -------------------------------------------------------------------------------------
// A thread's unit is chunk c (32 elements) of a row. scales(): the scale dl[h] and min ml[h] of each half h,
// so element = dl * q - ml (as the CPU's aero_dequantize_row). decode8(): the 8 codes of piece p (elements
// 8p..8p+7 of the chunk) as floats. Dense types have no blocks: their chunk is the permuted set of positions
// pa.. pa+3 and pb.. pb+3 (see k_matmul), the same positions the activations are read from.

template <int TY> struct Dec;

template <> struct Dec<AERO_DT_F32> {
    static constexpr bool MIN = false, DENSE = true;
    __device__ static void scales(const uint8_t *, int, float dl[2], float ml[2]) {}
    __device__ static void decode8(const uint8_t *row, int, int, int pa, int pb, float v[8]) {
        float4 a = __ldg((const float4 *)row + pa / 4), b = __ldg((const float4 *)row + pb / 4);
        v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
    }
};

template <> struct Dec<AERO_DT_F16> {
    static constexpr bool MIN = false, DENSE = true;
    __device__ static void scales(const uint8_t *, int, float dl[2], float ml[2]) {}
    __device__ static void decode8(const uint8_t *row, int, int, int pa, int pb, float v[8]) {
        uint2 a = __ldg((const uint2 *)(row + 2 * (size_t)pa)), b = __ldg((const uint2 *)(row + 2 * (size_t)pb));
        uint32_t w[4] = {a.x, a.y, b.x, b.y};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            v[2 * i] = __half2float(__ushort_as_half((unsigned short)(w[i] & 0xffff)));
            v[2 * i + 1] = __half2float(__ushort_as_half((unsigned short)(w[i] >> 16)));
        }
    }
};

template <> struct Dec<AERO_DT_BF16> {
    static constexpr bool MIN = false, DENSE = true;
    __device__ static void scales(const uint8_t *, int, float dl[2], float ml[2]) {}
    __device__ static void decode8(const uint8_t *row, int, int, int pa, int pb, float v[8]) {
        uint2 a = __ldg((const uint2 *)(row + 2 * (size_t)pa)), b = __ldg((const uint2 *)(row + 2 * (size_t)pb));
        uint32_t w[4] = {a.x, a.y, b.x, b.y};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            v[2 * i] = __uint_as_float(w[i] << 16);
            v[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
        }
    }
};

// x = d * q, 34-byte blocks of 32 signed bytes.
template <> struct Dec<AERO_DT_Q8_0> {
    static constexpr bool MIN = false, DENSE = false;
    __device__ static void scales(const uint8_t *row, int c, float dl[2], float ml[2]) {
        dl[0] = dl[1] = f16_at(row + 34 * (size_t)c);
        ml[0] = ml[1] = 0.0f;
    }
    __device__ static void decode8(const uint8_t *row, int c, int p, int, int, float v[8]) {
        uint2 w = ld8_a2(row + 34 * (size_t)c + 2 + 8 * p);
        bytes8(w.x ^ 0x80808080u, w.y ^ 0x80808080u, 128.0f, v); // signed byte b as (b + 128) - 128
    }
};

// x = d * (q - 8); qs[j] holds element j (low nibble) and j + 16 (high nibble).
template <> struct Dec<AERO_DT_Q4_0> {
    static constexpr bool MIN = false, DENSE = false;
    __device__ static void scales(const uint8_t *row, int c, float dl[2], float ml[2]) {
        dl[0] = dl[1] = f16_at(row + 18 * (size_t)c);
        ml[0] = ml[1] = 0.0f;
    }
    __device__ static void decode8(const uint8_t *row, int c, int p, int, int, float v[8]) {
        uint2 w = ld8_a2(row + 18 * (size_t)c + 2 + 8 * (p & 1));
        int sh = 4 * (p >> 1);
        bytes8((w.x >> sh) & 0x0F0F0F0Fu, (w.y >> sh) & 0x0F0F0F0Fu, 8.0f, v);
    }
};

// Group g = c % 8 of super-block c / 8: x = d * sc * q - dmin * m, q = (qs[32 (g/2) + l] >> 4 (g%2)) & 15.
template <> struct Dec<AERO_DT_Q4_K> {
    static constexpr bool MIN = true, DENSE = false;
    __device__ static void scales(const uint8_t *row, int c, float dl[2], float ml[2]) {
        q4k_dl_ml(c & 7, row + 144 * (size_t)(c >> 3), &dl[0], &ml[0]);
        dl[1] = dl[0];
        ml[1] = ml[0];
    }
    __device__ static void decode8(const uint8_t *row, int c, int p, int, int, float v[8]) {
        const uint8_t *blk = row + 144 * (size_t)(c >> 3);
        int g = c & 7, sh = 4 * (g & 1);
        uint2 w = ld8_a8(blk + 16 + 32 * (g >> 1) + 8 * p);
        bytes8((w.x >> sh) & 0x0F0F0F0Fu, (w.y >> sh) & 0x0F0F0F0Fu, 0.0f, v);
    }
};

// As Q4_K with a fifth bit: bit g (= 2 (g/2) + g%2) of qh[l].
template <> struct Dec<AERO_DT_Q5_K> {
    static constexpr bool MIN = true, DENSE = false;
    __device__ static void scales(const uint8_t *row, int c, float dl[2], float ml[2]) {
        q4k_dl_ml(c & 7, row + 176 * (size_t)(c >> 3), &dl[0], &ml[0]);
        dl[1] = dl[0];
        ml[1] = ml[0];
    }
    __device__ static void decode8(const uint8_t *row, int c, int p, int, int, float v[8]) {
        const uint8_t *blk = row + 176 * (size_t)(c >> 3);
        int g = c & 7, sh = 4 * (g & 1);
        uint2 w = ld8_a8(blk + 48 + 32 * (g >> 1) + 8 * p), h = ld8_a8(blk + 16 + 8 * p);
        uint32_t a = ((w.x >> sh) & 0x0F0F0F0Fu) | (((h.x >> g) & 0x01010101u) << 4);
        uint32_t b = ((w.y >> sh) & 0x0F0F0F0Fu) | (((h.y >> g) & 0x01010101u) << 4);
        bytes8(a, b, 0.0f, v);
    }
};

// Chunk cc = c % 8 of super-block c / 8 is elements 128 hh + 32 k + l (hh = cc / 4, k = cc % 4): x = d * sc * (q - 32),
// 4 low bits in ql, 2 high bits in qh, one int8 scale per 16 elements (one per half).
template <> struct Dec<AERO_DT_Q6_K> {
    static constexpr bool MIN = false, DENSE = false;
    __device__ static void scales(const uint8_t *row, int c, float dl[2], float ml[2]) {
        const uint8_t *blk = row + 210 * (size_t)(c >> 3);
        int cc = c & 7;
        float d = f16_at(blk + 208);
        unsigned short s2 = __ldg((const unsigned short *)(blk + 192 + 8 * (cc >> 2) + 2 * (cc & 3)));
        dl[0] = d * (float)(int)(int8_t)(s2 & 0xff);
        dl[1] = d * (float)(int)(int8_t)(s2 >> 8);
        ml[0] = ml[1] = 0.0f;
    }
    __device__ static void decode8(const uint8_t *row, int c, int p, int, int, float v[8]) {
        const uint8_t *blk = row + 210 * (size_t)(c >> 3);
        int cc = c & 7, hh = cc >> 2, k = cc & 3, sl = 4 * (k >> 1), shh = 2 * k;
        uint2 lo = ld8_a2(blk + 64 * hh + 32 * (k & 1) + 8 * p), hi = ld8_a2(blk + 128 + 32 * hh + 8 * p);
        uint32_t a = ((lo.x >> sl) & 0x0F0F0F0Fu) | (((hi.x >> shh) & 0x03030303u) << 4);
        uint32_t b = ((lo.y >> sl) & 0x0F0F0F0Fu) | (((hi.y >> shh) & 0x03030303u) << 4);
        bytes8(a, b, 32.0f, v);
    }
};

// Where the activations of chunk c sit. Chunks go to the 128 threads in groups: group k holds chunks
// 128k .. 128k + m - 1 (m = 128 but for the last group), thread t takes chunk 128k + t, and float4 q (elements
// 4q..4q+3) of its chunk sits at float position 4096k + 4mq + 4t: a warp's loads are contiguous. For dense
// weights these positions are the weight elements themselves; for quantized ones x is permuted to match.
__device__ __forceinline__ int xpos(int k, int m, int t, int q) { return 4096 * k + 4 * m * q + 4 * t; }

#endif
