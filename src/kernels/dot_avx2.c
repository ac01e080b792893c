// AVX2 + FMA + F16C kernels. Compiled with per-file ISA flags; only called when the CPU has them.
#include <immintrin.h>

#include "quants.h"

// 16-lane f32 accumulation with separate multiply and add, lane-for-lane the scalar order.
static void dot_f32_acc16_avx2(float acc[16], const float *a, const float *b, int64_t n) {
    __m256 s0 = _mm256_loadu_ps(acc), s1 = _mm256_loadu_ps(acc + 8);
    for (int64_t i = 0; i < n; i += 16) {
        s0 = _mm256_add_ps(s0, _mm256_mul_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
        s1 = _mm256_add_ps(s1, _mm256_mul_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8)));
    }
    _mm256_storeu_ps(acc, s0);
    _mm256_storeu_ps(acc + 8, s1);
}

// Installs the AVX2 kernels over a copy of the scalar table.
void aero_kernels_fill_avx2(aero_kernel_ops *ops) {
    ops->dot_f32_acc16 = dot_f32_acc16_avx2;
    ops->name = "avx2";
}
