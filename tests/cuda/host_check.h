// The check counters and the seeded uniform stream of the GPU kernels' CPU-side tests (test_attn_host.cpp,
// test_mma_host.cpp). Define HOST_CHECK_SEED before including it: each test keeps its own stream.
#ifndef AERO_TESTS_CUDA_HOST_CHECK_H
#define AERO_TESTS_CUDA_HOST_CHECK_H

#include <stdint.h>
#include <stdio.h>

static int n_fail, n_pass;
#define EXPECT(cond, ...)                                                                                      \
    do {                                                                                                       \
        if (cond) n_pass++;                                                                                    \
        else {                                                                                                 \
            n_fail++;                                                                                          \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                                        \
            printf(__VA_ARGS__);                                                                               \
            printf("\n");                                                                                      \
        }                                                                                                      \
    } while (0)

static uint64_t rng = HOST_CHECK_SEED;
// Uniform in [-1, 1) from a xorshift stream: the same data on every machine.
static float unif() {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

#endif
