// Host stand-ins for the CUDA types and intrinsics the decoders use, so cuda_decode.cuh compiles with a plain
// C++ compiler for the CPU-side decoder test (tests/cuda/test_decode_host.cpp). Not used by the GPU build.
#ifndef AERO_KERNELS_CUDA_HOST_EMU_H
#define AERO_KERNELS_CUDA_HOST_EMU_H

#include <stdint.h>
#include <string.h>

#define __device__
#define __host__
#define __forceinline__ inline

struct float2 {
    float x, y;
};
struct float4 {
    float x, y, z, w;
};
struct uint2 {
    uint32_t x, y;
};
struct uint4 {
    uint32_t x, y, z, w;
};
struct __half {
    uint16_t u;
};

extern "C" float aero_f16_to_f32(uint16_t h);

template <typename T> static inline T __ldg(const T *p) {
    T v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline float __int_as_float(int i) {
    float f;
    memcpy(&f, &i, 4);
    return f;
}
static inline float __uint_as_float(uint32_t i) {
    float f;
    memcpy(&f, &i, 4);
    return f;
}
static inline __half __ushort_as_half(unsigned short u) { return __half{u}; }
static inline float __half2float(__half h) { return aero_f16_to_f32(h.u); }
// PTX prmt: result byte n is byte (selector nibble n & 7) of the 8 bytes {y:x}.
static inline uint32_t __byte_perm(uint32_t x, uint32_t y, uint32_t s) {
    uint64_t v = ((uint64_t)y << 32) | x;
    uint32_t r = 0;
    for (int n = 0; n < 4; n++) r |= (uint32_t)((v >> (8 * ((s >> (4 * n)) & 7))) & 0xff) << (8 * n);
    return r;
}

#endif
