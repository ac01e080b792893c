// Chooses the kernels once at start from CPU detection (capped by env AERO_ISA), and routes the public
// dot-product and row-conversion calls to the selected table.
#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../core/cpu.h"
#include "quants.h"
#include "quants_iq.h"

static aero_kernel_ops ops_scalar, ops_avx2, ops_avx512, ops_avx512_vnni;
static bool have_avx2, have_avx512, have_vnni, use_vnni;
static const aero_kernel_ops *ops_selected;
static aero_isa isa_selected;
static pthread_once_t kernels_once = PTHREAD_ONCE_INIT;

// Builds every table this CPU can run and picks the best one allowed by AERO_ISA.
static void kernels_setup(void) {
    const aero_cpu_features *f = aero_cpu_get();
    aero_kernels_fill_scalar(&ops_scalar);
    have_avx2 = f->avx2 && f->fma && f->f16c;
    have_avx512 = have_avx2 && f->avx512f && f->avx512bw && f->avx512vl && f->avx512dq;
    have_vnni = have_avx512 && f->avx512vnni;
    if (have_avx2) {
        ops_avx2 = ops_scalar;
        aero_kernels_fill_avx2(&ops_avx2);
        aero_iq_fill_avx2(&ops_avx2);
    }
    if (have_avx512) {
        ops_avx512 = ops_avx2;
        aero_kernels_fill_avx512(&ops_avx512, false);
        aero_iq_fill_avx512(&ops_avx512);
    }
    if (have_vnni) {
        ops_avx512_vnni = ops_avx2;
        aero_kernels_fill_avx512(&ops_avx512_vnni, true);
        aero_iq_fill_avx512(&ops_avx512_vnni);
    }
    aero_isa best = have_avx512 ? AERO_ISA_AVX512 : have_avx2 ? AERO_ISA_AVX2 : AERO_ISA_SCALAR;
    use_vnni = have_vnni;
    const char *cap = getenv("AERO_ISA");
    if (cap) { // "avx512-plain": AVX-512 without VNNI, so tests can run that table on a VNNI CPU
        aero_isa c = best;
        if (!strcmp(cap, "scalar")) c = AERO_ISA_SCALAR;
        else if (!strcmp(cap, "avx2")) c = AERO_ISA_AVX2;
        else if (!strcmp(cap, "avx512") || !strcmp(cap, "avx512-vnni")) c = AERO_ISA_AVX512;
        else if (!strcmp(cap, "avx512-plain")) c = AERO_ISA_AVX512, use_vnni = false;
        if (c < best) best = c;
    }
    isa_selected = best;
    ops_selected = best == AERO_ISA_AVX512 ? (use_vnni ? &ops_avx512_vnni : &ops_avx512)
                   : best == AERO_ISA_AVX2 ? &ops_avx2
                                           : &ops_scalar;
}

void aero_kernels_init(void) { pthread_once(&kernels_once, kernels_setup); }

// The ISA the kernels run with, for logs and benchmarks.
aero_isa aero_kernels_isa(void) {
    aero_kernels_init();
    return isa_selected;
}

// Printable ISA name; AVX-512 says whether VNNI is in use.
const char *aero_isa_name(aero_isa isa) {
    aero_kernels_init();
    switch (isa) {
    case AERO_ISA_SCALAR: return "scalar";
    case AERO_ISA_AVX2: return "avx2";
    case AERO_ISA_AVX512: return use_vnni ? "avx512-vnni" : "avx512";
    }
    return "unknown";
}

// Lets tests and benchmarks skip an ISA this CPU (or OS) cannot run.
bool aero_isa_available(aero_isa isa) {
    aero_kernels_init();
    switch (isa) {
    case AERO_ISA_SCALAR: return true;
    case AERO_ISA_AVX2: return have_avx2;
    case AERO_ISA_AVX512: return have_avx512;
    }
    return false;
}

// The table of one ISA, so tests can compare ISAs inside one process.
const aero_kernel_ops *aero_kernels_ops(aero_isa isa, bool vnni) {
    aero_kernels_init();
    switch (isa) {
    case AERO_ISA_SCALAR: return &ops_scalar;
    case AERO_ISA_AVX2: return have_avx2 ? &ops_avx2 : NULL;
    case AERO_ISA_AVX512:
        if (vnni) return have_vnni ? &ops_avx512_vnni : NULL;
        return have_avx512 ? &ops_avx512 : NULL;
    }
    return NULL;
}

// The table chosen at start; every public entry point goes through it.
const aero_kernel_ops *aero_kernels_selected(void) {
    aero_kernels_init();
    return ops_selected;
}

// Which activation format each weight type is dotted with (llama.cpp's choice).
aero_dtype aero_vec_dot_type(aero_dtype w) {
    switch (w) {
    case AERO_DT_Q4_0:
    case AERO_DT_Q4_1:
    case AERO_DT_Q5_0:
    case AERO_DT_Q5_1:
    case AERO_DT_Q8_0:
    case AERO_DT_IQ4_NL:
    case AERO_DT_MXFP4: return AERO_DT_Q8_0;
    case AERO_DT_Q2_K:
    case AERO_DT_Q3_K:
    case AERO_DT_Q4_K:
    case AERO_DT_Q5_K:
    case AERO_DT_Q6_K:
    case AERO_DT_Q8_K:
    case AERO_DT_IQ2_XXS:
    case AERO_DT_IQ2_XS:
    case AERO_DT_IQ3_XXS:
    case AERO_DT_IQ3_S:
    case AERO_DT_IQ4_XS: return AERO_DT_Q8_K;
    case AERO_DT_F16: return AERO_DT_F16;
    case AERO_DT_BF16: return AERO_DT_BF16;
    default: return AERO_DT_F32;
    }
}

// Callers check types and lengths once (aero_wmat_check); a dot the kernels cannot compute is a bug.
static float dot_with(const aero_kernel_ops *ops, aero_dtype t, int64_t n, const void *w, const void *a) {
    const aero_dtype_info *info = (unsigned)t < AERO_DT_COUNT ? aero_dtype_get((uint32_t)t) : NULL;
    bool ok = ops && info && ops->dot[t] && n > 0 && n % info->block == 0;
    assert(ok && "vec_dot: type without kernels, ragged length or ISA not available");
    return ok ? ops->dot[t](n, w, a) : 0.0f;
}

// Public dot with the selected ISA.
float aero_vec_dot(aero_dtype t, int64_t n, const void *w, const void *a) {
    return dot_with(aero_kernels_selected(), t, n, w, a);
}

// Public dot with a chosen ISA (tests), which must be available.
float aero_vec_dot_isa(aero_isa isa, aero_dtype t, int64_t n, const void *w, const void *a) {
    aero_kernels_init();
    return dot_with(aero_kernels_ops(isa, use_vnni), t, n, w, a);
}

// Dequantizes with the SIMD row conversions where there are some (their values equal the scalar ones).
void aero_dequantize_row(aero_dtype t, const void *x, float *y, int64_t n) {
    const aero_kernel_ops *ops = aero_kernels_selected();
    if (t == AERO_DT_F16 && n > 0) ops->f16_to_f32_row(x, y, n);
    else if (t == AERO_DT_BF16 && n > 0) ops->bf16_to_f32_row(x, y, n);
    else aero_dequantize_row_ref(t, x, y, n);
}

// Exact-f32 activations with a given table: dequantize 256 elements at a time and accumulate them in the
// fixed 16-lane order, so the result is the same for every ISA.
float aero_vec_dot_f32_with(const aero_kernel_ops *ops, aero_dtype t, int64_t n, const void *w, const float *x) {
    const aero_dtype_info *info = aero_dtype_get((uint32_t)t);
    bool ok = ops && info && info->computable && n > 0 && n % info->block == 0;
    assert(ok && "vec_dot_f32: type without kernels or ragged length");
    if (!ok) return 0.0f;
    float buf[AERO_QK_K], acc[16] = {0};
    const uint8_t *wb = w;
    for (int64_t i = 0; i < n; i += AERO_QK_K) { // a multiple of every block size
        int64_t len = n - i < AERO_QK_K ? n - i : AERO_QK_K;
        const void *src = wb + (size_t)(i / info->block) * info->block_bytes;
        const float *wf = buf;
        if (t == AERO_DT_F32) wf = (const float *)src;
        else if (t == AERO_DT_F16) ops->f16_to_f32_row(src, buf, len);
        else if (t == AERO_DT_BF16) ops->bf16_to_f32_row(src, buf, len);
        else aero_dequantize_row_ref(t, src, buf, len);
        int64_t l16 = len & ~(int64_t)15;
        ops->dot_f32_acc16(acc, wf, x + i, l16);
        for (int64_t k = l16; k < len; k++) acc[k - l16] = acc[k - l16] + wf[k] * x[i + k];
    }
    return aero_reduce16(acc);
}

// Public exact-f32 dot with the selected ISA.
float aero_vec_dot_f32(aero_dtype t, int64_t n, const void *w, const float *x) {
    return aero_vec_dot_f32_with(aero_kernels_selected(), t, n, w, x);
}

// Row conversions go through the selected ISA (exact, so identical on every ISA).
void aero_f16_to_f32_row(const uint16_t *x, float *y, int64_t n) {
    if (n > 0) aero_kernels_selected()->f16_to_f32_row(x, y, n);
}

// Round-to-nearest-even on every ISA (F16C and the scalar code agree).
void aero_f32_to_f16_row(const float *x, uint16_t *y, int64_t n) {
    if (n > 0) aero_kernels_selected()->f32_to_f16_row(x, y, n);
}

// bfloat16 widening through the selected ISA.
void aero_bf16_to_f32_row(const uint16_t *x, float *y, int64_t n) {
    if (n > 0) aero_kernels_selected()->bf16_to_f32_row(x, y, n);
}
