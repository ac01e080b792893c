// The tensor-core matmul (src/kernels/cuda/cuda_mma_kernel.cuh) run on the CPU under the SIMT emulation
// (simt_host_emu.h), with mma.m16n8k16 emulated from the PTX ISA's fragment layout: the kernel's fragment
// assembly, chunk split over warps, warp tree, tile shapes, output mapping and per-token scaling are checked
// where there is no GPU. Each output against a double-precision dot of the CPU reference's dequantized row
// (f16 rounding tolerance), every token alone == in the batch, and every tile shape, bitwise. The launch
// arithmetic mirrors aero_mma_launch and aero_mma_prepare in cuda_mma.cu.
#define AERO_CUDA_HOST_EMU 1
#include <algorithm>

#include "simt_host_emu.h"

extern "C" {
#include "kernels/kernels.h"
void aero_dequantize_row_ref(aero_dtype t, const void *x, float *y, int64_t n);
}
#include "kernels/cuda/cuda_mma_kernel.cuh"

#include <vector>

#define HOST_CHECK_SEED 0x452821E638D01377ull
#include "host_check.h"

#define TOL 1.5e-3 // weights and activations rounded to f16: at most ~1e-3 of sum |w x|

// aero_mma_prepare: one block per token.
static void prepare(const float *x, int n, int cols, std::vector<__half> &xh, std::vector<float> &xs) {
    xh.assign((size_t)n * cols, __half{0});
    xs.assign(n, 0.0f);
    emu_launch(emu_dim3{(unsigned)n, 1, 1}, 256, [&] {
        const size_t i = blockIdx.x;
        aero_prep_row_f16(x + i * cols, cols, xh.data() + i * cols, xs.data() + i);
    });
}

// aero_mma_launch for one tile shape.
template <int TY, int MT, int NT>
static void launch(const uint8_t *w, size_t rb, int rows, int cols, const __half *xh, const float *xs, int n, float *y) {
    emu_dim3 grid{(unsigned)((rows + 16 * MT - 1) / (16 * MT)), (unsigned)((n + 8 * NT - 1) / (8 * NT)), 1};
    emu_launch(grid, MMA_THREADS, [&] { k_mma<TY, MT, NT>(w, rb, rows, cols, xh, xs, n, y); });
}

template <int TY> static void run_shape(int s, const uint8_t *w, size_t rb, int rows, int cols, const __half *xh,
                                        const float *xs, int n, float *y) {
    switch (s) {
    case 0: launch<TY, 1, 1>(w, rb, rows, cols, xh, xs, n, y); break;
    case 1: launch<TY, 1, 2>(w, rb, rows, cols, xh, xs, n, y); break;
    case 2: launch<TY, 2, 1>(w, rb, rows, cols, xh, xs, n, y); break;
    case 3: launch<TY, 2, 4>(w, rb, rows, cols, xh, xs, n, y); break;
    default: launch<TY, 2, 8>(w, rb, rows, cols, xh, xs, n, y); break;
    }
}

// One type: reference, alone == batch, every tile shape.
template <int TY> static void test_type(int rows, int cols, int n) {
    const aero_dtype t = (aero_dtype)TY;
    const size_t rb = aero_dtype_row_bytes(t, cols);
    std::vector<uint8_t> w(rb * rows);
    std::vector<float> src(cols), deq(cols), x((size_t)n * cols);
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < cols; c++) src[c] = unif();
        aero_quantize_row(t, src.data(), w.data() + rb * r, cols);
    }
    for (auto &v : x) v = unif();
    for (int c = 0; c < cols && n >= 3; c++) x[cols + c] *= 3e5f; // token 1 beyond the f16 range: scaled
    std::vector<__half> xh;
    std::vector<float> xs;
    prepare(x.data(), n, cols, xh, xs);
    std::vector<float> y((size_t)n * rows, NAN);
    run_shape<TY>(4, w.data(), rb, rows, cols, xh.data(), xs.data(), n, y.data());
    double worst = 0;
    for (int r = 0; r < rows; r++) {
        aero_dequantize_row_ref(t, w.data() + rb * r, deq.data(), cols);
        for (int i = 0; i < n; i++) {
            double s = 0, a = 0;
            for (int c = 0; c < cols; c++) {
                double p = (double)deq[c] * x[(size_t)i * cols + c];
                s += p, a += fabs(p);
            }
            double e = fabs(y[(size_t)i * rows + r] - s) / (a + 1e-30);
            if (!(e <= worst)) worst = std::isnan(e) ? INFINITY : e;
        }
    }
    EXPECT(worst <= TOL, "mma %s %dx%d n=%d: error %.3g of sum|wx|", aero_dtype_name(t), rows, cols, n, worst);
    // alone: the decode tile over one token (its own prepared row)
    int alone_bad = 0;
    for (int i = 0; i < n; i++) {
        std::vector<__half> h1;
        std::vector<float> s1, y1(rows);
        prepare(x.data() + (size_t)i * cols, 1, cols, h1, s1);
        run_shape<TY>(0, w.data(), rb, rows, cols, h1.data(), s1.data(), 1, y1.data());
        alone_bad += memcmp(y1.data(), y.data() + (size_t)i * rows, sizeof(float) * rows) != 0;
    }
    EXPECT(alone_bad == 0, "mma %s: %d of %d tokens differ alone vs in the batch", aero_dtype_name(t), alone_bad, n);
    int shape_bad = 0;
    for (int s = 0; s < 4; s++) {
        std::vector<float> ys((size_t)n * rows, NAN);
        run_shape<TY>(s, w.data(), rb, rows, cols, xh.data(), xs.data(), n, ys.data());
        shape_bad += memcmp(ys.data(), y.data(), sizeof(float) * n * rows) != 0;
    }
    EXPECT(shape_bad == 0, "mma %s: %d of 4 tile shapes differ", aero_dtype_name(t), shape_bad);
    printf("%s mma %-4s %3d x %-4d n=%-2d  max err %.2e of sum|wx| (tol %.1e)  alone==batch: %s  tile shapes: %s\n",
           worst <= TOL && !alone_bad && !shape_bad ? "ok  " : "FAIL", aero_dtype_name(t), rows, cols, n, worst, TOL,
           alone_bad ? "NO" : "bitwise", shape_bad ? "NO" : "bitwise");
}

int main(void) {
    // 40 rows: a partial 16-row tile; 512 columns: 16 chunks, two per warp; 11 tokens: a partial 8-token tile
    test_type<AERO_DT_F16>(40, 512, 11);
    test_type<AERO_DT_Q8_0>(40, 512, 11);
    test_type<AERO_DT_Q4_0>(40, 512, 11);
    test_type<AERO_DT_Q4_K>(40, 512, 11);
    test_type<AERO_DT_Q5_K>(24, 768, 9);  // 24 chunks: three per warp
    test_type<AERO_DT_Q6_K>(17, 256, 10); // 8 chunks: one per warp
    test_type<AERO_DT_Q4_0>(16, 96, 3);   // 3 chunks: five warps without any
    // the decode tile's ring of loads wraps: 11 chunks per warp (two full turns of 4 and a part), the last warp 8
    test_type<AERO_DT_Q4_K>(20, 2816, 5);
    test_type<AERO_DT_Q6_K>(16, 2816, 2);
    test_type<AERO_DT_Q8_0>(16, 2720, 3); // 85 chunks: the last warp 8, a run not a multiple of the ring
    printf("PASS: %d checks passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
