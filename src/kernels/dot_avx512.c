// AVX-512 (F, BW, VL, DQ; VNNI when present) kernels. Compiled with per-file ISA flags; only called when
// the CPU has them.
#include <immintrin.h>

#include "quants.h"

// 16-lane f32 accumulation with separate multiply and add, lane-for-lane the scalar order.
static void dot_f32_acc16_avx512(float acc[16], const float *a, const float *b, int64_t n) {
    __m512 s = _mm512_loadu_ps(acc);
    for (int64_t i = 0; i < n; i += 16) s = _mm512_add_ps(s, _mm512_mul_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i)));
    _mm512_storeu_ps(acc, s);
}

// Installs the AVX-512 kernels over a copy of the AVX2 table.
void aero_kernels_fill_avx512(aero_kernel_ops *ops, bool vnni) {
    ops->dot_f32_acc16 = dot_f32_acc16_avx512;
    ops->name = vnni ? "avx512-vnni" : "avx512";
}
