// The GPU weight decoders (cuda_decode.cuh) compiled for the CPU and checked against the scalar reference on
// machines without a GPU: every type's chunk scales and codes give aero_dequantize_row's floats bitwise, and
// a row dot product walked in the matmul kernel's chunk order and activation layout (xpos) matches the
// double-precision reference. Runs in plain CI (no CUDA needed).
#define AERO_CUDA_HOST_EMU 1
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

extern "C" {
#include "kernels/kernels.h"
void aero_dequantize_row_ref(aero_dtype t, const void *x, float *y, int64_t n);
}
#include "kernels/cuda/cuda_decode.cuh"

static uint64_t rng = 88172645463325252ull;
static float unif() {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

// Dequantizes piece p of chunk c with the decoder, as k_get_rows does.
template <int TY> static void deq_piece(const uint8_t *row, int c, int p, float out[8]) {
    typedef Dec<TY> D;
    float v[8], dl[2] = {1.0f, 1.0f}, ml[2] = {0.0f, 0.0f};
    D::decode8(row, c, p, 32 * c + 8 * p, 32 * c + 8 * p + 4, v);
    D::scales(row, c, dl, ml);
    float d = dl[p >> 1], mn = ml[p >> 1];
    for (int j = 0; j < 8; j++) {
        if (D::DENSE) out[j] = v[j];
        else if (TY == AERO_DT_Q4_0 || TY == AERO_DT_Q8_0) out[j] = v[j] * d;
        else out[j] = d * v[j] - mn;
    }
}

// The kernel's sum for one row and one token, walked serially in its chunk order (no warp folding).
template <int TY> static double row_dot(const uint8_t *row, int cols, const float *x) {
    typedef Dec<TY> D;
    int nchunks = cols / 32;
    // the permuted activations, as k_permute writes them
    float *xp = (float *)malloc(sizeof(float) * cols);
    for (int f = 0; f < cols / 4; f++) {
        int c = f / 8, q = f % 8, k = c / 128, t = c % 128, m = nchunks - 128 * k < 128 ? nchunks - 128 * k : 128;
        memcpy(xp + 4 * (1024 * k + m * q + t), x + 4 * f, 16);
    }
    const float *xs = D::DENSE ? x : xp;
    double total = 0;
    for (int k = 0; 128 * k < nchunks; k++) {
        int m = nchunks - 128 * k < 128 ? nchunks - 128 * k : 128;
        for (int t = 0; t < m; t++) {
            int c = 128 * k + t;
            float dl[2] = {1, 1}, ml[2] = {0, 0};
            D::scales(row, c, dl, ml);
            for (int h = 0; h < 2; h++) {
                double s = 0, sx = 0;
                for (int pp = 0; pp < 2; pp++) {
                    int p = 2 * h + pp, pa = xpos(k, m, t, 2 * p), pb = pa + 4 * m;
                    float q[8];
                    D::decode8(row, c, p, pa, pb, q);
                    for (int j = 0; j < 8; j++) {
                        float xv = j < 4 ? xs[pa + j] : xs[pb + j - 4];
                        s += (double)q[j] * xv, sx += xv;
                    }
                }
                total += D::DENSE ? s : (double)dl[h] * s - (D::MIN ? (double)ml[h] * sx : 0.0);
            }
        }
    }
    free(xp);
    return total;
}

static int fails;

template <int TY> static void check(int cols) {
    aero_dtype t = (aero_dtype)TY;
    size_t rb = aero_dtype_row_bytes(t, cols);
    uint8_t *w = (uint8_t *)malloc(rb);
    float *src = (float *)malloc(sizeof(float) * cols), *ref = (float *)malloc(sizeof(float) * cols),
          *x = (float *)malloc(sizeof(float) * cols);
    for (int i = 0; i < cols; i++) src[i] = 2.0f * unif(), x[i] = unif();
    aero_quantize_row(t, src, w, cols);
    aero_dequantize_row_ref(t, w, ref, cols);
    int bad = 0;
    for (int c = 0; c < cols / 32; c++)
        for (int p = 0; p < 4; p++) {
            float o[8];
            deq_piece<TY>(w, c, p, o);
            bad += memcmp(o, ref + 32 * c + 8 * p, sizeof o) != 0;
        }
    double want = 0, mag = 0;
    for (int i = 0; i < cols; i++) want += (double)ref[i] * x[i], mag += fabs((double)ref[i] * x[i]);
    double got = row_dot<TY>(w, cols, x), e = fabs(got - want) / mag;
    bool ok = bad == 0 && e < 1e-6;
    fails += !ok;
    printf("%s decode %-4s cols %-5d: pieces differing from aero_dequantize_row %d; kernel-order dot error %.1e of sum|wx|\n",
           ok ? "ok  " : "FAIL", aero_dtype_name(t), cols, bad, e);
    free(w), free(src), free(ref), free(x);
}

template <int TY> static void check_all() {
    check<TY>(256);
    check<TY>(4096);
    check<TY>(14336);   // 3.5 groups of 128 chunks: a partial last group
    check<TY>(4096 + 256);
}

int main() {
    check_all<AERO_DT_F32>();
    check_all<AERO_DT_F16>();
    check_all<AERO_DT_BF16>();
    check_all<AERO_DT_Q8_0>();
    check_all<AERO_DT_Q4_0>();
    check_all<AERO_DT_Q4_K>();
    check_all<AERO_DT_Q5_K>();
    check_all<AERO_DT_Q6_K>();
    printf("%s: %d failed\n", fails ? "FAIL" : "PASS", fails);
    return fails ? 1 : 0;
}
