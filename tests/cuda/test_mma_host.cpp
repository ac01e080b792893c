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
#include "kernels/cuda/cuda_q8_kernel.cuh"

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

// ---- the int8 path (cuda_q8_kernel.cuh) ------------------------------------------------------------------

// Tolerances of k_q8 against two double-precision references: with the int8 activations dequantized (d * q),
// only the f32 epilogue's rounding remains (a few 2^-24 per chunk); with the exact activations, the int8
// rounding of each element (at most d / 2 = amax / 254 of its block) adds at most ~1/127 of sum |w x| for
// uniform data and ~1e-3 in practice, as the CPU's Q8_0 / Q8_K activations.
#define TOL_Q8_EXACT 2e-5
#define TOL_Q8 4e-3

// The prepare kernel (aero_q8_prepare): one block per token.
static void prepare_q8(const float *x, int n, int cols, std::vector<int8_t> &xq, std::vector<float2> &xd) {
    xq.assign((size_t)n * cols, 0);
    xd.assign((size_t)n * cols / 32, float2{NAN, NAN});
    emu_launch(emu_dim3{(unsigned)n, 1, 1}, 128, [&] {
        const size_t i = blockIdx.x;
        aero_q8_row(x + i * cols, cols, xq.data() + i * cols, xd.data() + i * cols / 32);
    });
}

template <int TY, int MT, int NT>
static void launch_q8(const uint8_t *w, size_t rb, int rows, int cols, const int8_t *xq, const float2 *xd, int n,
                      float *y) {
    emu_dim3 grid{(unsigned)((rows + 16 * MT - 1) / (16 * MT)), (unsigned)((n + 8 * NT - 1) / (8 * NT)), 1};
    emu_launch(grid, MMA_THREADS, [&] { k_q8<TY, MT, NT>(w, rb, rows, cols, xq, xd, n, y); });
}

// Tile shape s (0: the decode tile 1 x 1, then 1 x 2, 2 x 1, 2 x 4, 2 x 8, 4 x 4), as aero_q8_launch.
template <int TY> static void run_q8(int s, const uint8_t *w, size_t rb, int rows, int cols, const int8_t *xq,
                                     const float2 *xd, int n, float *y) {
    switch (s) {
    case 0: launch_q8<TY, 1, 1>(w, rb, rows, cols, xq, xd, n, y); break;
    case 1: launch_q8<TY, 1, 2>(w, rb, rows, cols, xq, xd, n, y); break;
    case 2: launch_q8<TY, 2, 1>(w, rb, rows, cols, xq, xd, n, y); break;
    case 3: launch_q8<TY, 2, 4>(w, rb, rows, cols, xq, xd, n, y); break;
    case 5: launch_q8<TY, 4, 4>(w, rb, rows, cols, xq, xd, n, y); break;
    default: launch_q8<TY, 2, 8>(w, rb, rows, cols, xq, xd, n, y); break;
    }
}

// k_q8_many over three matrices of one type and width (as aero_q8_launch_many lays out its grid) against each
// matrix's own decode-tile launch: bitwise.
template <int TY> static void test_q8_many(int cols, int n) {
    const aero_dtype ty = (aero_dtype)TY;
    const size_t rb = aero_dtype_row_bytes(ty, cols);
    const int rows[3] = {40, 17, 16};
    std::vector<uint8_t> w[3];
    std::vector<float> x((size_t)n * cols), src(cols), y[3], ys[3];
    Q8Many m = {};
    for (int i = 0; i < 3; i++) {
        w[i].resize(rb * rows[i]);
        for (int r = 0; r < rows[i]; r++) {
            for (int c = 0; c < cols; c++) src[c] = unif();
            aero_quantize_row(ty, src.data(), w[i].data() + rb * r, cols);
        }
        y[i].assign((size_t)n * rows[i], NAN), ys[i].assign((size_t)n * rows[i], NAN);
        m.W[i] = w[i].data(), m.row_bytes[i] = rb, m.rows[i] = rows[i], m.Y[i] = y[i].data();
        m.first[i + 1] = m.first[i] + (rows[i] + 15) / 16;
    }
    for (auto &v : x) v = unif();
    std::vector<int8_t> xq;
    std::vector<float2> xd;
    prepare_q8(x.data(), n, cols, xq, xd);
    emu_launch(emu_dim3{(unsigned)m.first[3], (unsigned)((n + 7) / 8), 1}, MMA_THREADS,
               [&] { k_q8_many<TY, 1, 1>(m, cols, xq.data(), xd.data(), n); });
    int bad = 0;
    for (int i = 0; i < 3; i++) {
        launch_q8<TY, 1, 1>(w[i].data(), rb, rows[i], cols, xq.data(), xd.data(), n, ys[i].data());
        bad += memcmp(y[i].data(), ys[i].data(), sizeof(float) * n * rows[i]) != 0;
    }
    EXPECT(bad == 0, "q8 many %s: %d of 3 matrices differ from their own launch", aero_dtype_name(ty), bad);
    printf("%s q8 many %-4s 3 matrices (40, 17, 16 rows) x %d, n=%d: %s\n", bad ? "FAIL" : "ok  ", aero_dtype_name(ty),
           cols, n, bad ? "DIFFER" : "bitwise their own launches");
}

// k_q8v (one token, a lane per row) against the decode tile k_q8<TY, 1, 1> on the same token: bitwise, for
// partial 32-row blocks and runs of units that start and end inside super-blocks; and k_q8v_many against each
// matrix's own k_q8v launch, with first[] in 32-row blocks as aero_q8_launch_many lays it out.
template <int TY> static void test_q8v(int rows, int cols) {
    const aero_dtype ty = (aero_dtype)TY;
    const size_t rb = aero_dtype_row_bytes(ty, cols);
    std::vector<uint8_t> w(rb * rows);
    std::vector<float> src(cols), x(cols), yt(rows, NAN), yv(rows, NAN);
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < cols; c++) src[c] = unif();
        aero_quantize_row(ty, src.data(), w.data() + rb * r, cols);
    }
    for (auto &v : x) v = unif();
    std::vector<int8_t> xq;
    std::vector<float2> xd;
    prepare_q8(x.data(), 1, cols, xq, xd);
    launch_q8<TY, 1, 1>(w.data(), rb, rows, cols, xq.data(), xd.data(), 1, yt.data());
    emu_launch(emu_dim3{(unsigned)((rows + Q8V_ROWS - 1) / Q8V_ROWS), 1, 1}, MMA_THREADS,
               [&] { k_q8v<TY>(w.data(), rb, rows, cols, xq.data(), xd.data(), yv.data()); });
    int bad = 0;
    for (int r = 0; r < rows; r++) bad += memcmp(&yt[r], &yv[r], 4) != 0;
    // three matrices in one k_q8v_many launch: the first two of `rows` and 7 rows (a lone partial block)
    const int mr[3] = {rows, rows, 7};
    std::vector<float> ym[3];
    Q8Many m = {};
    for (int i = 0; i < 3; i++) {
        ym[i].assign(mr[i], NAN);
        m.W[i] = w.data(), m.row_bytes[i] = rb, m.rows[i] = mr[i], m.Y[i] = ym[i].data();
        m.first[i + 1] = m.first[i] + (mr[i] + Q8V_ROWS - 1) / Q8V_ROWS;
    }
    emu_launch(emu_dim3{(unsigned)m.first[3], 1, 1}, MMA_THREADS, [&] { k_q8v_many<TY>(m, cols, xq.data(), xd.data()); });
    int many_bad = 0;
    for (int i = 0; i < 3; i++) many_bad += memcmp(ym[i].data(), yv.data(), 4 * (size_t)mr[i]) != 0;
    EXPECT(bad == 0, "q8v %s %dx%d: %d rows differ from the decode tile", aero_dtype_name(ty), rows, cols, bad);
    EXPECT(many_bad == 0, "q8v many %s %dx%d: %d of 3 matrices differ", aero_dtype_name(ty), rows, cols, many_bad);
    printf("%s q8v %-4s %3d x %-5d one token: %s the decode tile; many: %s\n", bad || many_bad ? "FAIL" : "ok  ",
           aero_dtype_name(ty), rows, cols, bad ? "DIFFERS from" : "bitwise", many_bad ? "DIFFER" : "bitwise");
}

// The shape aero_mma_tiles_for picks for n tokens, as an index of run_q8.
static int shape_for(int n) { return n <= 8 ? 0 : n <= 16 ? 1 : n <= 32 ? 3 : 4; }

// The block scales are a pure function of the block: the CPU recomputes them from the same rule.
static bool prepare_matches(const float *x, int n, int cols, const std::vector<int8_t> &xq,
                            const std::vector<float2> &xd) {
    for (int b = 0; b < n * cols / 32; b++) {
        const float *v = x + 32 * (size_t)b;
        float amax = 0;
        for (int k = 0; k < 32; k++) amax = fmaxf(amax, fabsf(v[k]));
        const bool live = amax >= 1e-30f;
        const float d = live ? amax / 127.0f : 0.0f, id = live ? 127.0f / amax : 0.0f;
        int s = 0;
        for (int k = 0; k < 32; k++) {
            const int q = (int)nearbyintf(v[k] * id);
            if (q != xq[32 * (size_t)b + k] || q > 127 || q < -127) return false;
            s += q;
        }
        if (memcmp(&xd[b].x, &d, 4) || xd[b].y != d * (float)s) return false;
    }
    return true;
}

// q4k_pair_scales (both groups of a unit at once) against Dec's q4k_dl_ml_h, bitwise, over random headers.
static void test_pair_scales() {
    int bad = 0;
    for (int trial = 0; trial < 4000; trial++) {
        uint32_t w[4];
        for (auto &x : w) x = (uint32_t)(unif() * 2147483648.0f) ^ ((uint32_t)(unif() * 65536.0f) << 16);
        w[0] = (w[0] & 0x3fff3fffu) | 0x34003400u; // finite f16 d, dmin of modest size
        const uint4 h{w[0], w[1], w[2], w[3]};
        for (int p = 0; p < 4; p++) {
            ScDM s[2];
            q4k_pair_scales(p, h, s);
            for (int k = 0; k < 2; k++) {
                float dl, ml;
                q4k_dl_ml_h(2 * p + k, h, &dl, &ml);
                const float nml = -ml;
                bad += memcmp(&s[k].d, &dl, 4) != 0 || memcmp(&s[k].m, &nml, 4) != 0;
            }
        }
    }
    EXPECT(bad == 0, "q4k_pair_scales: %d of 32000 groups differ from q4k_dl_ml_h", bad);
    printf("%s q4k_pair_scales == q4k_dl_ml_h (negated min), 32000 groups: %s\n", bad ? "FAIL" : "ok  ",
           bad ? "NO" : "bitwise");
}

// One type: the prepared activations, both references, alone == batch, every tile shape, and every token count
// 1 .. n_max with the shape the dispatcher picks for it, bitwise the same as in the full batch.
template <int TY> static void test_q8(int rows, int cols, int n, int n_max) {
    const aero_dtype ty = (aero_dtype)TY;
    const size_t rb = aero_dtype_row_bytes(ty, cols);
    const int nn = n > n_max ? n : n_max;
    std::vector<uint8_t> w(rb * rows);
    std::vector<float> src(cols), deq(cols), x((size_t)nn * cols);
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < cols; c++) src[c] = unif();
        aero_quantize_row(ty, src.data(), w.data() + rb * r, cols);
    }
    for (auto &v : x) v = unif();
    for (int c = 0; c < cols && n >= 3; c++) x[cols + c] *= 3e5f; // token 1 far from 1: scales are per block
    for (int c = 0; c < 32 && n >= 3; c++) x[2 * (size_t)cols + c] = 0.0f; // an all-zero block
    std::vector<int8_t> xq;
    std::vector<float2> xd;
    prepare_q8(x.data(), nn, cols, xq, xd);
    const bool prep_ok = prepare_matches(x.data(), nn, cols, xq, xd);
    EXPECT(prep_ok, "q8 prepare %d x %d: codes or block scales differ from the rule", nn, cols);
    std::vector<float> y((size_t)n * rows, NAN);
    run_q8<TY>(4, w.data(), rb, rows, cols, xq.data(), xd.data(), n, y.data());
    double worst = 0, worst_exact = 0;
    for (int r = 0; r < rows; r++) {
        aero_dequantize_row_ref(ty, w.data() + rb * r, deq.data(), cols);
        for (int i = 0; i < n; i++) {
            double s = 0, a = 0, sq = 0, aq = 0;
            for (int c = 0; c < cols; c++) {
                const size_t k = (size_t)i * cols + c;
                const double p = (double)deq[c] * x[k], pq = (double)deq[c] * ((double)xd[k / 32].x * xq[k]);
                s += p, a += fabs(p), sq += pq, aq += fabs(pq);
            }
            const double yv = y[(size_t)i * rows + r];
            const double e = fabs(yv - s) / (a + 1e-30), eq = fabs(yv - sq) / (aq + 1e-30);
            if (!(e <= worst)) worst = std::isnan(e) ? INFINITY : e;
            if (!(eq <= worst_exact)) worst_exact = std::isnan(eq) ? INFINITY : eq;
        }
    }
    EXPECT(worst_exact <= TOL_Q8_EXACT, "q8 %s %dx%d n=%d: error %.3g against the int8 activations", aero_dtype_name(ty),
           rows, cols, n, worst_exact);
    EXPECT(worst <= TOL_Q8, "q8 %s %dx%d n=%d: error %.3g of sum|wx|", aero_dtype_name(ty), rows, cols, n, worst);
    int alone_bad = 0;
    for (int i = 0; i < n; i++) {
        std::vector<float> y1(rows);
        run_q8<TY>(0, w.data(), rb, rows, cols, xq.data() + (size_t)i * cols, xd.data() + (size_t)i * cols / 32, 1,
                   y1.data());
        alone_bad += memcmp(y1.data(), y.data() + (size_t)i * rows, sizeof(float) * rows) != 0;
    }
    EXPECT(alone_bad == 0, "q8 %s: %d of %d tokens differ alone vs in the batch", aero_dtype_name(ty), alone_bad, n);
    int shape_bad = 0;
    for (int s : {0, 1, 2, 3, 5}) {
        std::vector<float> ys((size_t)n * rows, NAN);
        run_q8<TY>(s, w.data(), rb, rows, cols, xq.data(), xd.data(), n, ys.data());
        shape_bad += memcmp(ys.data(), y.data(), sizeof(float) * n * rows) != 0;
    }
    EXPECT(shape_bad == 0, "q8 %s: %d of 5 tile shapes differ", aero_dtype_name(ty), shape_bad);
    int count_bad = 0;
    if (n_max) {
        std::vector<float> yall((size_t)n_max * rows, NAN);
        run_q8<TY>(4, w.data(), rb, rows, cols, xq.data(), xd.data(), n_max, yall.data());
        for (int k = 1; k <= n_max; k++) {
            std::vector<float> yk((size_t)k * rows, NAN);
            run_q8<TY>(shape_for(k), w.data(), rb, rows, cols, xq.data(), xd.data(), k, yk.data());
            count_bad += memcmp(yk.data(), yall.data(), sizeof(float) * k * rows) != 0;
        }
        EXPECT(count_bad == 0, "q8 %s: %d of %d token counts differ from the batch of %d", aero_dtype_name(ty),
               count_bad, n_max, n_max);
    }
    const bool ok = prep_ok && worst_exact <= TOL_Q8_EXACT && worst <= TOL_Q8 && !alone_bad && !shape_bad && !count_bad;
    printf("%s q8  %-4s %3d x %-4d n=%-2d  err %.2e of sum|wx| (tol %.0e), %.2e vs int8 x (tol %.0e)  alone==batch: %s"
           "  shapes: %s%s\n",
           ok ? "ok  " : "FAIL", aero_dtype_name(ty), rows, cols, n, worst, TOL_Q8, worst_exact, TOL_Q8_EXACT,
           alone_bad ? "NO" : "bitwise", shape_bad ? "NO" : "bitwise",
           n_max ? (count_bad ? "  counts 1..n: NO" : "  counts 1..n: bitwise") : "");
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
    // the int8 path: every type, partial row and token tiles, runs that wrap the decode ring, every token count
    // 1..70 with its dispatched shape (Q4_K and Q8_0), odd chunk counts for the 32-element types
    test_pair_scales();
    test_q8<AERO_DT_Q8_0>(40, 512, 11, 70);
    test_q8<AERO_DT_Q4_0>(40, 512, 11, 0);
    test_q8<AERO_DT_Q4_K>(40, 512, 11, 70);
    test_q8<AERO_DT_Q5_K>(24, 768, 9, 0);   // 12 units: two per warp, the last warps none
    test_q8<AERO_DT_Q6_K>(17, 256, 10, 0);  // 8 chunks: one per warp
    test_q8<AERO_DT_Q4_0>(16, 96, 3, 0);    // 3 chunks: five warps without any
    test_q8<AERO_DT_Q8_0>(16, 2720, 3, 0);  // 85 chunks: runs of 11 wrap the ring of 6, the last warp 8
    test_q8<AERO_DT_Q4_K>(20, 2816, 5, 0);  // 44 units: runs of 6, two turns of the ring of 3, the last warp 2
    test_q8<AERO_DT_Q4_K>(16, 2560, 3, 0);  // 40 units: runs of 5 wrap the ring of 3 with 2 left
    test_q8<AERO_DT_Q5_K>(16, 2560, 2, 0);  // runs of 5 units wrap the ring of 2 with 1 left
    test_q8<AERO_DT_Q6_K>(16, 2816, 2, 0);  // 88 chunks: runs of 11 wrap the ring of 3 with 2 left
    test_q8<AERO_DT_Q4_0>(16, 2720, 2, 0);  // runs of 11 wrap the ring of 6
    test_q8<AERO_DT_Q6_K>(16, 512, 3, 40);
    test_q8<AERO_DT_Q5_K>(16, 256, 3, 40);
    test_q8<AERO_DT_Q4_0>(16, 160, 3, 40); // 5 chunks
    test_q8_many<AERO_DT_Q4_K>(512, 3);
    test_q8_many<AERO_DT_Q6_K>(256, 9);  // two token tiles
    test_q8_many<AERO_DT_Q8_0>(96, 1);
    // the one-token kernel: runs of whole groups (512, 4096), runs starting and ending inside them (2816: 44
    // units, runs of 6; 2560: runs of 5), warps without units (768 for Q5_K: 12 units, runs of 2); Q8_0 and Q4_0
    // blocks at both word alignments in shared memory
    test_q8v<AERO_DT_Q4_K>(40, 512);
    test_q8v<AERO_DT_Q4_K>(33, 2816);
    test_q8v<AERO_DT_Q4_K>(64, 4096);
    test_q8v<AERO_DT_Q5_K>(40, 768);
    test_q8v<AERO_DT_Q5_K>(20, 2560);
    test_q8v<AERO_DT_Q8_0>(40, 256);  // 8 blocks: one per warp, one group
    test_q8v<AERO_DT_Q8_0>(33, 2816); // 88 blocks: runs of 11 start and end inside groups of 8
    test_q8v<AERO_DT_Q4_0>(40, 2816);
    test_q8v<AERO_DT_Q4_0>(32, 4096);
    // Q6_K (rows of a multiple of 2048 columns, so 16-byte aligned): super-block s starts 2 s % 16 bytes into
    // its window, every even offset; runs of 1, 3 and 2 super-blocks per warp
    test_q8v<AERO_DT_Q6_K>(40, 2048);
    test_q8v<AERO_DT_Q6_K>(33, 6144);
    test_q8v<AERO_DT_Q6_K>(20, 4096);
    printf("PASS: %d checks passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
