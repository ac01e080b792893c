// Helpers of the GPU tests and benchmarks: a seeded RNG, random weights quantized by the CPU reference, and
// the "no GPU: skip" rule (exit status 77, which make and the test scripts count as skipped).
#ifndef AERO_TESTS_CUDA_TEST_UTIL_H
#define AERO_TESTS_CUDA_TEST_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_backend.h"
#ifdef __cplusplus
extern "C" {
#endif
#include "kernels/kernels.h"
// The scalar reference dequantizer (kernels/quants.h, which is C-only): the GPU is checked against it.
void aero_dequantize_row_ref(aero_dtype t, const void *x, float *y, int64_t n);
#ifdef __cplusplus
}
#endif

#define CT_SKIP 77

// xorshift64*: the same stream on every machine.
static inline uint64_t ct_next(uint64_t *s) {
    *s ^= *s >> 12, *s ^= *s << 25, *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}
// Uniform in [-1, 1).
static inline float ct_unif(uint64_t *s) { return (float)((ct_next(s) >> 40) * (1.0 / 8388608.0)) - 1.0f; }

// Exits with 77 when there is no device, so the suite reports a skip instead of a failure.
static inline void ct_require_gpu(void) {
    if (aero_cuda_device_count() <= 0) {
        printf("skipped: no CUDA device\n");
        exit(CT_SKIP);
    }
}

// Random rows quantized with the CPU reference quantizer; returns the bytes (rows * row_bytes).
static inline uint8_t *ct_random_weights(aero_dtype t, int64_t rows, int64_t cols, uint64_t *rng, size_t *row_bytes) {
    size_t rb = aero_dtype_row_bytes(t, (uint64_t)cols);
    uint8_t *w = (uint8_t *)malloc(rb * rows);
    float *tmp = (float *)malloc(sizeof(float) * cols);
    for (int64_t r = 0; r < rows; r++) {
        float amp = 0.5f + 0.5f * (ct_unif(rng) + 1.0f); // rows of different magnitude
        for (int64_t c = 0; c < cols; c++) tmp[c] = amp * ct_unif(rng);
        aero_quantize_row(t, tmp, w + rb * r, cols);
    }
    free(tmp);
    *row_bytes = rb;
    return w;
}

#endif
