// GPU kernels against the CPU scalar reference (a stated tolerance each) and batch invariance (bitwise): a
// token's result alone equals its result inside any batch and under every kernel shape. Also the arena
// budget, the refusal of a type without a kernel, and a copy-stream pipeline ordered by events.
// No GPU: prints "skipped: no CUDA device" and exits 77.
#include <math.h>

#include "cuda_test_util.h"

static int n_fail, n_pass;
static aero_cuda *cu;
static aero_error err;

#define EXPECT(cond, ...)                               \
    do {                                                \
        if (cond) {                                     \
            n_pass++;                                   \
        } else {                                        \
            n_fail++;                                   \
            printf("FAIL %s:%d: ", __FILE__, __LINE__); \
            printf(__VA_ARGS__);                        \
            printf("\n");                               \
        }                                               \
    } while (0)

#define OK(call)                                                                 \
    do {                                                                         \
        if ((call) != AERO_OK) {                                                 \
            printf("FATAL %s:%d: %s: %s\n", __FILE__, __LINE__, #call, err.msg); \
            exit(1);                                                             \
        }                                                                        \
    } while (0)

static void *dalloc(size_t bytes) {
    void *p;
    OK(aero_cuda_alloc(cu, bytes, &p, &err));
    return p;
}

static void *up(const void *h, size_t bytes) {
    void *d = dalloc(bytes);
    OK(aero_cuda_copy_h2d_async(cu, AERO_CUDA_STREAM_COMPUTE, d, h, bytes, &err));
    OK(aero_cuda_sync(cu, &err));
    return d;
}

static void down(void *h, const void *d, size_t bytes) {
    OK(aero_cuda_sync(cu, &err));
    OK(aero_cuda_copy_d2h(cu, h, d, bytes, &err));
}

static const aero_dtype TYPES[] = {AERO_DT_F32,  AERO_DT_F16,  AERO_DT_BF16, AERO_DT_Q8_0,
                                   AERO_DT_Q4_0, AERO_DT_Q4_K, AERO_DT_Q5_K, AERO_DT_Q6_K};
#define N_TYPES (int)(sizeof TYPES / sizeof TYPES[0])

#define MM_TOL 1e-5 // |gpu - ref| <= MM_TOL * sum |w_i x_i|
// The tensor-core types round each weight and activation to f16 (relative 2^-11 each, so at most ~1e-3 of
// sum |w_i x_i| in all); a wrong fragment layout gives errors of the order of the sum itself.
#define MM_TOL_F16 1.5e-3
// The int8 kernels (quantized types by default) round each activation to int8 per 32-element block (at most
// amax / 254 per element: ~1/127 of sum |w_i x_i| at worst for this data, 2-15e-4 observed on the CPU
// emulation); weights are exact and the f32 epilogue adds ~1e-8.
#define MM_TOL_INT8 4e-3

// ---- matmul --------------------------------------------------------------------------------------------

// One type and shape: GPU against dequantize + double dot, then alone == batch == every kernel shape, bitwise.
static void test_matmul(aero_dtype t, int rows, int cols, int n, uint64_t *rng) {
    size_t mark = aero_cuda_arena_mark(cu);
    size_t rb;
    uint8_t *w = ct_random_weights(t, rows, cols, rng, &rb);
    float *x = malloc(sizeof(float) * n * cols), *deq = malloc(sizeof(float) * cols);
    double *ref = malloc(sizeof(double) * n * rows), *mag = malloc(sizeof(double) * n * rows);
    for (size_t i = 0; i < (size_t)n * cols; i++) x[i] = ct_unif(rng);
    // token 1 beyond the f16 range (the tensor-core kernels scale it by a power of two, then back)
    if (n >= 3)
        for (int c = 0; c < cols; c++) x[cols + c] *= 3e5f;
    const bool int8 = aero_cuda_matmul_int8(t);
    const bool mma = (aero_cuda_matmul_f16(t) && cols % 32 == 0) || int8; // else the plain f32 kernel
    const double tol = int8 ? MM_TOL_INT8 : mma ? MM_TOL_F16 : MM_TOL;
    for (int r = 0; r < rows; r++) {
        aero_dequantize_row_ref(t, w + rb * r, deq, cols);
        for (int i = 0; i < n; i++) {
            double s = 0, a = 0;
            for (int c = 0; c < cols; c++) {
                double p = (double)deq[c] * x[(size_t)i * cols + c];
                s += p, a += fabs(p);
            }
            ref[(size_t)i * rows + r] = s, mag[(size_t)i * rows + r] = a;
        }
    }
    aero_cuda_wmat W = {up(w, rb * rows), t, cols, rows, rb};
    float *dx = up(x, sizeof(float) * n * cols);
    float *dy = dalloc(sizeof(float) * n * rows), *dy1 = dalloc(sizeof(float) * n * rows);
    float *yb = malloc(sizeof(float) * n * rows), *y1 = malloc(sizeof(float) * n * rows);
    OK(aero_cuda_matmul(cu, &W, dx, n, dy, &err));
    down(yb, dy, sizeof(float) * n * rows);
    double worst = 0;
    for (size_t k = 0; k < (size_t)n * rows; k++) {
        double e = fabs(yb[k] - ref[k]) / (mag[k] + 1e-30);
        if (e > worst || isnan(yb[k])) worst = isnan(yb[k]) ? INFINITY : e;
    }
    EXPECT(worst <= tol, "matmul %s %dx%d n=%d: error %.3g of sum|wx| > %.1e", aero_dtype_name(t), rows, cols, n,
           worst, tol);
    // alone, token by token (the decode matvec)
    for (int i = 0; i < n; i++) OK(aero_cuda_matmul(cu, &W, dx + (size_t)i * cols, 1, dy1 + (size_t)i * rows, &err));
    down(y1, dy1, sizeof(float) * n * rows);
    int bad = 0;
    for (int i = 0; i < n; i++) bad += memcmp(yb + (size_t)i * rows, y1 + (size_t)i * rows, sizeof(float) * rows) != 0;
    EXPECT(bad == 0, "matmul %s %dx%d: %d of %d tokens differ alone vs in a batch of %d", aero_dtype_name(t), rows,
           cols, bad, n, n);
    // every kernel shape
    static const int shapes[][2] = {{1, 1}, {2, 1}, {4, 1}, {8, 1},  {1, 8},  {2, 8},  {4, 8},
                                    {8, 8}, {1, 16}, {2, 16}, {4, 16}, {1, 32}, {2, 32}, {2, 64}};
    // {2, 64}: the tensor-core kernel's prefill tile (the f32 kernels have no such shape)
    const int n_shapes = (int)(sizeof shapes / sizeof shapes[0]) - !mma;
    int bad_shapes = 0;
    aero_cuda_act act = {.x = dx, .n = n, .cols = cols}; // rows not a whole number of 32-chunks: dense, one plain kernel
    if (cols % 32 == 0) OK(aero_cuda_act_prepare(cu, dx, n, cols, &act, &err));
    for (int s = 0; s < n_shapes; s++) {
        OK(aero_cuda_memset0(cu, dy, sizeof(float) * n * rows, &err));
        OK(aero_cuda_matmul_shape(cu, &W, &act, dy, shapes[s][0], shapes[s][1], &err));
        down(yb, dy, sizeof(float) * n * rows);
        bad_shapes += memcmp(yb, y1, sizeof(float) * n * rows) != 0;
    }
    EXPECT(bad_shapes == 0, "matmul %s %dx%d n=%d: %d of %d kernel shapes differ from the matvec", aero_dtype_name(t),
           rows, cols, n, bad_shapes, n_shapes);
    printf("  matmul %-4s %5d x %-5d n=%-3d %s max err %.2e of sum|wx| (tol %.1e)  alone==batch: %s  %d shapes: %s\n",
           aero_dtype_name(t), rows, cols, n, int8 ? "int8" : mma ? "mma" : "f32", worst, tol, bad ? "NO" : "bitwise", n_shapes,
           bad_shapes ? "NO" : "bitwise");
    free(w), free(x), free(deq), free(ref), free(mag), free(yb), free(y1);
    aero_cuda_arena_reset(cu, mark);
}

// The int8 activations (aero_cuda_act_prepare with the int8 kernels on) against the rule on the CPU: per
// 32-element block, amax, d = amax / 127, codes round-to-nearest-even(x * (127 / amax)), d * sum of the codes;
// bitwise (a block below 1e-30 is zeros). Also rows scaled far from 1 and an all-zero block.
static void test_q8_prepare(int n, int cols, uint64_t *rng) {
    if (!aero_cuda_matmul_int8(AERO_DT_Q4_K)) return;
    size_t mark = aero_cuda_arena_mark(cu), cnt = (size_t)n * cols;
    float *x = malloc(sizeof(float) * cnt);
    for (size_t i = 0; i < cnt; i++) x[i] = ct_unif(rng) * (i / cols == 1 ? 3e5f : i / cols == 2 ? 1e-20f : 1.0f);
    for (int c = 0; c < 32; c++) x[c] = 0.0f;
    float *dx = up(x, sizeof(float) * cnt);
    aero_cuda_act a;
    OK(aero_cuda_act_prepare(cu, dx, n, cols, &a, &err));
    int8_t *q = malloc(cnt);
    float *d = malloc(sizeof(float) * cnt / 16);
    down(q, a.xq, cnt);
    down(d, a.xd, sizeof(float) * cnt / 16);
    int bad = 0;
    for (size_t b = 0; b < cnt / 32; b++) {
        const float *v = x + 32 * b;
        float amax = 0;
        for (int k = 0; k < 32; k++) amax = fmaxf(amax, fabsf(v[k]));
        const int live = amax >= 1e-30f;
        const float db = live ? amax / 127.0f : 0.0f, id = live ? 127.0f / amax : 0.0f;
        int sum = 0, codes_bad = 0;
        for (int k = 0; k < 32; k++) {
            const int qk = (int)nearbyintf(v[k] * id);
            codes_bad += qk != q[32 * b + k];
            sum += qk;
        }
        const float ds = db * (float)sum;
        bad += codes_bad || memcmp(&d[2 * b], &db, 4) || memcmp(&d[2 * b + 1], &ds, 4);
    }
    EXPECT(bad == 0, "int8 activations %d x %d: %d blocks differ from the CPU rule", n, cols, bad);
    printf("  int8 activations %d x %-5d codes and block scales: %s\n", n, cols, bad ? "DIFFER" : "bitwise the CPU rule");
    free(x), free(q), free(d);
    aero_cuda_arena_reset(cu, mark);
}

static bool same_dev(const void *a, const void *b, size_t bytes);

// aero_cuda_matmul_many (q/k/v and gate/up in one launch on the int8 path) against one aero_cuda_matmul_act per
// matrix, bitwise, for 1..8 tokens; also a mix of types (which falls back to one launch each).
static void test_matmul_many(aero_dtype t, int cols, uint64_t *rng) {
    size_t mark = aero_cuda_arena_mark(cu);
    const int rows[3] = {512, 128, 100}, n = 8;
    aero_cuda_wmat W[3];
    const aero_cuda_wmat *wp[3];
    float *y[3], *ys[3];
    for (int i = 0; i < 3; i++) {
        aero_dtype ti = i == 2 && t == AERO_DT_F16 ? AERO_DT_Q4_K : t; // F16: a mixed set
        size_t rb;
        uint8_t *w = ct_random_weights(ti, rows[i], cols, rng, &rb);
        W[i] = (aero_cuda_wmat){up(w, rb * rows[i]), ti, cols, rows[i], rb};
        wp[i] = &W[i];
        y[i] = dalloc(sizeof(float) * n * rows[i]), ys[i] = dalloc(sizeof(float) * n * rows[i]);
        free(w);
    }
    float *x = malloc(sizeof(float) * n * cols);
    for (int i = 0; i < n * cols; i++) x[i] = ct_unif(rng);
    float *dx = up(x, sizeof(float) * n * cols);
    int bad = 0;
    for (int k = 1; k <= n; k++) {
        aero_cuda_act a;
        OK(aero_cuda_act_prepare(cu, dx, k, cols, &a, &err));
        OK(aero_cuda_matmul_many(cu, wp, y, 3, &a, &err));
        for (int i = 0; i < 3; i++) OK(aero_cuda_matmul_act(cu, wp[i], &a, ys[i], &err));
        for (int i = 0; i < 3; i++) bad += !same_dev(y[i], ys[i], sizeof(float) * k * rows[i]);
    }
    EXPECT(bad == 0, "matmul_many %s x %d: %d of 24 outputs differ from one launch per matrix", aero_dtype_name(t), cols,
           bad);
    printf("  matmul_many %-4s 512/128/100 rows x %d, 1..8 tokens: %s\n", aero_dtype_name(t), cols,
           bad ? "DIFFERS" : "bitwise one launch per matrix");
    free(x);
    aero_cuda_arena_reset(cu, mark);
}

// ---- embedding rows ------------------------------------------------------------------------------------

// Dequantized rows bitwise equal to the CPU reference; ids out of range give zeros.
static void test_get_rows(aero_dtype t, int cols, uint64_t *rng) {
    size_t mark = aero_cuda_arena_mark(cu);
    int rows = 50;
    size_t rb;
    uint8_t *w = ct_random_weights(t, rows, cols, rng, &rb);
    int32_t ids[] = {3, 49, 0, 7, -1, 50, 3};
    int n = (int)(sizeof ids / sizeof ids[0]);
    aero_cuda_wmat W = {up(w, rb * rows), t, cols, rows, rb};
    int32_t *dids = up(ids, sizeof ids);
    float *dout = dalloc(sizeof(float) * n * cols), *out = malloc(sizeof(float) * n * cols),
          *ref = malloc(sizeof(float) * cols);
    OK(aero_cuda_get_rows(cu, &W, dids, n, dout, &err));
    down(out, dout, sizeof(float) * n * cols);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        if (ids[i] >= 0 && ids[i] < rows) aero_dequantize_row_ref(t, w + rb * ids[i], ref, cols);
        else memset(ref, 0, sizeof(float) * cols);
        bad += memcmp(ref, out + (size_t)i * cols, sizeof(float) * cols) != 0;
    }
    EXPECT(bad == 0, "get_rows %s cols %d: %d of %d rows differ from aero_dequantize_row", aero_dtype_name(t), cols,
           bad, n);
    printf("  get_rows %-4s cols %-4d  %s\n", aero_dtype_name(t), cols,
           bad ? "DIFFERS" : "bitwise equal to the CPU reference");
    free(w), free(out), free(ref);
    aero_cuda_arena_reset(cu, mark);
}

// ---- RMSNorm, RoPE, SwiGLU -------------------------------------------------------------------------------

// The CPU forward pass's rmsnorm (model/forward.c).
static void rmsnorm_cpu(float *out, const float *x, const float *w, int n, float eps) {
    float ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    ss = 1.0f / sqrtf(ss / n + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * ss * w[i];
}

#define NORM_TOL 1e-5 // relative to the row's largest output

static void test_rmsnorm(int n, int dim, uint64_t *rng) {
    size_t mark = aero_cuda_arena_mark(cu);
    float *x = malloc(sizeof(float) * n * dim), *w = malloc(sizeof(float) * dim), *y = malloc(sizeof(float) * n * dim),
          *r = malloc(sizeof(float) * dim), *y1 = malloc(sizeof(float) * dim);
    for (size_t i = 0; i < (size_t)n * dim; i++) x[i] = 3.0f * ct_unif(rng);
    for (int i = 0; i < dim; i++) w[i] = 1.0f + 0.5f * ct_unif(rng);
    float *dx = up(x, sizeof(float) * n * dim), *dw = up(w, sizeof(float) * dim), *dy = dalloc(sizeof(float) * n * dim);
    OK(aero_cuda_rmsnorm(cu, dy, dx, dw, n, dim, 1e-5f, &err));
    down(y, dy, sizeof(float) * n * dim);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        rmsnorm_cpu(r, x + (size_t)i * dim, w, dim, 1e-5f);
        float mx = 0;
        for (int k = 0; k < dim; k++) mx = fmaxf(mx, fabsf(r[k]));
        for (int k = 0; k < dim; k++) worst = fmax(worst, fabs(y[(size_t)i * dim + k] - r[k]) / mx);
    }
    int last = n - 1;
    OK(aero_cuda_rmsnorm(cu, dy, dx + (size_t)last * dim, dw, 1, dim, 1e-5f, &err));
    down(y1, dy, sizeof(float) * dim);
    bool same = memcmp(y1, y + (size_t)last * dim, sizeof(float) * dim) == 0;
    EXPECT(worst <= NORM_TOL, "rmsnorm dim %d: error %.3g", dim, worst);
    EXPECT(same, "rmsnorm dim %d: a row alone differs from the same row in a batch", dim);
    printf("  rmsnorm n=%d dim=%-5d max err %.2e of max|y| (tol %.0e)  alone==batch: %s\n", n, dim, worst, NORM_TOL,
           same ? "bitwise" : "NO");
    free(x), free(w), free(y), free(r), free(y1);
    aero_cuda_arena_reset(cu, mark);
}

// The CPU forward pass's rope (model/forward.c).
static void rope_cpu(float *v, int pos, int rope_dim, const float *inv_freq, bool neox) {
    int half = rope_dim / 2;
    for (int i = 0; i < half; i++) {
        float theta = (float)pos * inv_freq[i];
        float c = cosf(theta), s = sinf(theta);
        int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
        float x0 = v[a], x1 = v[b];
        v[a] = x0 * c - x1 * s;
        v[b] = x0 * s + x1 * c;
    }
}

// Llama 3.1 frequencies (factor 8, low 1, high 4, original context 8192, base 500000), as model_load.c folds them.
static void llama3_inv_freq(float *f, int rope_dim) {
    double base = 500000, factor = 8, low = 1, high = 4, orig = 8192;
    for (int i = 0; i < rope_dim / 2; i++) {
        double v = pow(base, -2.0 * i / rope_dim), wl = 2 * M_PI / v;
        if (wl > orig / low) v /= factor;
        else if (wl >= orig / high) {
            double smooth = (orig / wl - low) / (high - low);
            v = (1 - smooth) * v / factor + smooth * v;
        }
        f[i] = (float)v;
    }
}

#define ROPE_TOL 1e-6 // |gpu - cpu| <= ROPE_TOL * (|x0| + |x1|): cosf/sinf within 2 ulp on both sides

static void test_rope(bool neox, int rope_dim, uint64_t *rng) {
    size_t mark = aero_cuda_arena_mark(cu);
    int n = 13, nh = 4, hd = 128;
    size_t cnt = (size_t)n * nh * hd;
    float *x = malloc(sizeof(float) * cnt), *y = malloc(sizeof(float) * cnt), *r = malloc(sizeof(float) * cnt),
          *y1 = malloc(sizeof(float) * nh * hd), freq[128];
    int32_t pos[13];
    for (size_t i = 0; i < cnt; i++) x[i] = ct_unif(rng);
    for (int i = 0; i < n; i++) pos[i] = i < 3 ? i : (int32_t)(ct_next(rng) % 131072);
    llama3_inv_freq(freq, rope_dim);
    memcpy(r, x, sizeof(float) * cnt);
    for (int t = 0; t < n; t++)
        for (int h = 0; h < nh; h++) rope_cpu(r + ((size_t)t * nh + h) * hd, pos[t], rope_dim, freq, neox);
    float *dx = up(x, sizeof(float) * cnt), *df = up(freq, sizeof(float) * rope_dim / 2);
    int32_t *dp = up(pos, sizeof pos);
    OK(aero_cuda_rope(cu, dx, n, nh, hd, rope_dim, dp, df, neox, &err));
    down(y, dx, sizeof(float) * cnt);
    double worst = 0;
    for (int t = 0; t < n; t++)
        for (int h = 0; h < nh; h++)
            for (int i = 0; i < rope_dim / 2; i++) {
                size_t o = ((size_t)t * nh + h) * hd;
                int a = neox ? i : 2 * i, b = neox ? i + rope_dim / 2 : 2 * i + 1;
                double m = fabs(x[o + a]) + fabs(x[o + b]);
                worst = fmax(worst, fmax(fabs(y[o + a] - r[o + a]), fabs(y[o + b] - r[o + b])) / m);
            }
    bool tail_ok = true; // dims past rope_dim are untouched
    for (int t = 0; t < n; t++)
        for (int h = 0; h < nh; h++)
            for (int d = rope_dim; d < hd; d++)
                tail_ok &= y[((size_t)t * nh + h) * hd + d] == x[((size_t)t * nh + h) * hd + d];
    int last = n - 1; // alone
    float *dx1 = up(x + (size_t)last * nh * hd, sizeof(float) * nh * hd);
    OK(aero_cuda_rope(cu, dx1, 1, nh, hd, rope_dim, dp + last, df, neox, &err));
    down(y1, dx1, sizeof(float) * nh * hd);
    bool same = memcmp(y1, y + (size_t)last * nh * hd, sizeof(float) * nh * hd) == 0;
    EXPECT(worst <= ROPE_TOL && tail_ok, "rope %s rope_dim %d: error %.3g, tail %d", neox ? "neox" : "normal", rope_dim,
           worst, tail_ok);
    EXPECT(same, "rope: a token alone differs from the same token in a batch");
    printf(
        "  rope %-6s rope_dim=%-3d llama3 freqs, pos < 131072  max err %.2e of |x0|+|x1| (tol %.0e)  alone==batch: %s\n",
        neox ? "neox" : "normal", rope_dim, worst, ROPE_TOL, same ? "bitwise" : "NO");
    free(x), free(y), free(r), free(y1);
    aero_cuda_arena_reset(cu, mark);
}

#define SWIGLU_TOL 2e-6 // relative: expf within 2 ulp

static void test_swiglu(uint64_t *rng) {
    size_t mark = aero_cuda_arena_mark(cu);
    size_t n = 100003;
    float *g = malloc(sizeof(float) * n), *u = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) g[i] = 12.0f * ct_unif(rng), u[i] = 4.0f * ct_unif(rng);
    float *dg = up(g, sizeof(float) * n), *du = up(u, sizeof(float) * n), *dy = dalloc(sizeof(float) * n);
    OK(aero_cuda_swiglu(cu, dy, dg, du, n, &err));
    down(y, dy, sizeof(float) * n);
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        float r = g[i] / (1.0f + expf(-g[i])) * u[i];
        worst = fmax(worst, fabs(y[i] - r) / (fabs(r) + 1e-30));
    }
    // residual add and bias: exact
    OK(aero_cuda_add(cu, dy, dg, n, &err));
    float *y2 = malloc(sizeof(float) * n);
    down(y2, dy, sizeof(float) * n);
    int add_bad = 0;
    for (size_t i = 0; i < n; i++) add_bad += y2[i] != y[i] + g[i];
    EXPECT(worst <= SWIGLU_TOL, "swiglu: error %.3g", worst);
    EXPECT(add_bad == 0, "add: %d elements differ from the CPU sum", add_bad);
    printf("  swiglu n=%zu  max rel err %.2e (tol %.0e); add: %s\n", n, worst, SWIGLU_TOL,
           add_bad ? "DIFFERS" : "exact");
    free(g), free(u), free(y), free(y2);
    aero_cuda_arena_reset(cu, mark);
}

// ---- fused ops: bitwise equal to the unfused sequences ------------------------------------------------------

static float *rand_dev(int count, float scale, uint64_t *rng, float **host) {
    float *h = malloc(sizeof(float) * count);
    for (int i = 0; i < count; i++) h[i] = scale * ct_unif(rng);
    float *d = up(h, sizeof(float) * count);
    if (host) *host = h;
    else free(h);
    return d;
}

static bool same_dev(const void *a, const void *b, size_t bytes) {
    void *ha = malloc(bytes), *hb = malloc(bytes);
    down(ha, a, bytes);
    down(hb, b, bytes);
    bool same = memcmp(ha, hb, bytes) == 0;
    free(ha), free(hb);
    return same;
}

// The prepared form of activations (the permuted f32 copy, or the tensor-core kernels' f16 copy and per-token
// factors, and the int8 codes and block scales when the int8 kernels are on) copied out of the shared scratch into
// device memory `keep` (room for n * cols floats + n); its bytes.
static size_t keep_prepared(const aero_cuda_act *a, char *keep) {
    size_t cnt = (size_t)a->n * a->cols;
    if (a->xp) {
        OK(aero_cuda_copy_d2d(cu, keep, a->xp, sizeof(float) * cnt, &err));
        return sizeof(float) * cnt;
    }
    size_t b = 0;
    if (a->xh) { // absent when only int8 kernels read this backend's activations (aero_cuda_act_f16_note)
        OK(aero_cuda_copy_d2d(cu, keep, a->xh, 2 * cnt, &err));
        OK(aero_cuda_copy_d2d(cu, keep + 2 * cnt, a->xs, sizeof(float) * a->n, &err));
        b = 2 * cnt + sizeof(float) * a->n;
    }
    if (!a->xq) return b;
    OK(aero_cuda_copy_d2d(cu, keep + b, a->xq, cnt, &err));                        // int8 codes
    OK(aero_cuda_copy_d2d(cu, keep + b + cnt, a->xd, sizeof(float) * cnt / 16, &err)); // {d, d * sum} per block
    return b + cnt + sizeof(float) * cnt / 16;
}

// Whether a fused op's prepared activations equal the unfused ones kept in `kept` (pb bytes).
static bool same_prepared(const aero_cuda_act *a, const char *kept, size_t pb, int n, int cols) {
    char *tmp = dalloc(sizeof(float) * ((size_t)n * cols + n));
    size_t b = keep_prepared(a, tmp);
    return b == pb && (pb == 0 || same_dev(kept, tmp, pb));
}

// An f16-path matrix given activations prepared without the f16 copy (no such matrix noted on the backend yet)
// prepares the copy itself: the bits of aero_cuda_matmul, which notes the type first. Leaves the note behind.
static void test_f16_unnoted(uint64_t *rng) {
    if (!aero_cuda_matmul_int8(AERO_DT_Q4_K) || !aero_cuda_matmul_f16(AERO_DT_F16)) return;
    const int rows = 256, cols = 1024, n = 3;
    size_t mark = aero_cuda_arena_mark(cu), rb;
    uint8_t *w = ct_random_weights(AERO_DT_F16, rows, cols, rng, &rb);
    float *x = malloc(sizeof(float) * n * cols), *y1 = malloc(sizeof(float) * n * rows),
          *y2 = malloc(sizeof(float) * n * rows);
    for (int i = 0; i < n * cols; i++) x[i] = ct_unif(rng);
    aero_cuda_wmat W = {up(w, rb * rows), AERO_DT_F16, cols, rows, rb};
    float *dx = up(x, sizeof(float) * n * cols), *dy = dalloc(sizeof(float) * n * rows);
    aero_cuda_act a;
    OK(aero_cuda_act_prepare(cu, dx, n, cols, &a, &err));
    EXPECT(!a.xh && a.xq, "before any f16 note: activations with%s the f16 copy, with%s the int8 form",
           a.xh ? "" : "out", a.xq ? "" : "out");
    OK(aero_cuda_matmul_act(cu, &W, &a, dy, &err));
    down(y1, dy, sizeof(float) * n * rows);
    OK(aero_cuda_matmul(cu, &W, dx, n, dy, &err));
    down(y2, dy, sizeof(float) * n * rows);
    const bool same = !memcmp(y1, y2, sizeof(float) * n * rows);
    EXPECT(same, "F16 matmul from int8-only activations differs from aero_cuda_matmul");
    printf("  F16 matmul from int8-only activations == noted: %s\n", same ? "bitwise" : "NO");
    free(w), free(x), free(y1), free(y2);
    aero_cuda_arena_reset(cu, mark);
}

// x += add; rmsnorm; prepare (three launches) against aero_cuda_rmsnorm_act (one), also with out aliasing add as
// the forward pass calls it: x, out and the prepared activations bitwise equal.
static void test_fused_norm(int n, int dim, uint64_t *rng) {
    size_t mark = aero_cuda_arena_mark(cu), cnt = (size_t)n * dim, bytes = sizeof(float) * cnt;
    float *hx, *hadd;
    float *x1 = rand_dev((int)cnt, 3.0f, rng, &hx), *add = rand_dev((int)cnt, 1.0f, rng, &hadd);
    float *w = rand_dev(dim, 1.0f, rng, NULL);
    float *x2 = up(hx, bytes), *x3 = up(hx, bytes), *add3 = up(hadd, bytes);
    float *o1 = dalloc(bytes), *o2 = dalloc(bytes);
    char *xp1 = dalloc(bytes + sizeof(float) * n);
    aero_cuda_act a1, a2, a3;
    OK(aero_cuda_add(cu, x1, add, cnt, &err));
    OK(aero_cuda_rmsnorm(cu, o1, x1, w, n, dim, 1e-5f, &err));
    bool aligned = dim % 32 == 0;
    size_t pb = 0;
    if (aligned) { // the scratch is shared: keep the prepared form
        OK(aero_cuda_act_prepare(cu, o1, n, dim, &a1, &err));
        pb = keep_prepared(&a1, xp1);
    }
    OK(aero_cuda_rmsnorm_act(cu, o2, x2, add, w, n, dim, 1e-5f, &a2, &err));
    bool ok = same_dev(x1, x2, bytes) && same_dev(o1, o2, bytes) && a2.x == o2 && a2.n == n && a2.cols == dim;
    bool act_ok = (pb > 0) == aligned && same_prepared(&a2, xp1, pb, n, dim);
    OK(aero_cuda_rmsnorm_act(cu, add3, x3, add3, w, n, dim, 1e-5f, &a3, &err)); // out == add
    bool alias_ok = same_dev(x1, x3, bytes) && same_dev(o1, add3, bytes) && same_prepared(&a3, xp1, pb, n, dim);
    // no add, no act: plain rmsnorm
    OK(aero_cuda_rmsnorm_act(cu, o2, x1, NULL, w, n, dim, 1e-5f, NULL, &err));
    OK(aero_cuda_rmsnorm(cu, o1, x1, w, n, dim, 1e-5f, &err));
    bool plain_ok = same_dev(o1, o2, bytes);
    EXPECT(ok && act_ok && alias_ok && plain_ok, "rmsnorm_act %d x %d: x/out %d, act %d, out==add %d, no add %d", n,
           dim, ok, act_ok, alias_ok, plain_ok);
    printf("  add + rmsnorm + prepare %d x %-5d fused == unfused: %s\n", n, dim,
           ok && act_ok && alias_ok && plain_ok ? "bitwise" : "NO");
    free(hx), free(hadd);
    aero_cuda_arena_reset(cu, mark);
}

// swiglu then prepare against aero_cuda_swiglu_act, out aliasing gate as in the forward pass.
static void test_fused_swiglu(int n, int cols, uint64_t *rng) {
    size_t mark = aero_cuda_arena_mark(cu), cnt = (size_t)n * cols, bytes = sizeof(float) * cnt;
    float *hg;
    float *g1 = rand_dev((int)cnt, 12.0f, rng, &hg), *u = rand_dev((int)cnt, 4.0f, rng, NULL);
    float *g2 = up(hg, bytes);
    char *xp1 = dalloc(bytes + sizeof(float) * n);
    aero_cuda_act a1, a2;
    OK(aero_cuda_swiglu(cu, g1, g1, u, cnt, &err));
    bool aligned = cols % 32 == 0;
    size_t pb = 0;
    if (aligned) {
        OK(aero_cuda_act_prepare(cu, g1, n, cols, &a1, &err));
        pb = keep_prepared(&a1, xp1);
    }
    OK(aero_cuda_swiglu_act(cu, g2, g2, u, n, cols, &a2, &err));
    bool ok = same_dev(g1, g2, bytes) && a2.x == g2;
    bool act_ok = (pb > 0) == aligned && same_prepared(&a2, xp1, pb, n, cols);
    EXPECT(ok && act_ok, "swiglu_act %d x %d: out %d, act %d", n, cols, ok, act_ok);
    printf("  swiglu + prepare %d x %-5d fused == unfused: %s\n", n, cols, ok && act_ok ? "bitwise" : "NO");
    free(hg);
    aero_cuda_arena_reset(cu, mark);
}

// add_bias x 3, rope q, rope k, kv_store against aero_cuda_rope_kv_store: q, k, v and both caches bitwise equal.
static void test_fused_rope_kv(bool neox, int rope_dim, bool bias, uint64_t *rng) {
    size_t mark = aero_cuda_arena_mark(cu);
    int n = 11, nh = 8, nkv = 2, hd = 64, n_ctx = 40, n_seq = 2, qd = nh * hd, kvd = nkv * hd;
    size_t qb = sizeof(float) * n * qd, kb = sizeof(float) * n * kvd, cache = (size_t)n_seq * n_ctx * kvd * 2;
    aero_cuda_batch *b;
    OK(aero_cuda_batch_new(cu, 16, n_seq, n_ctx, nh, hd, &b, &err));
    int32_t pos[11], seq[11], slot[11], base[2] = {0, 0};
    for (int i = 0; i < n; i++) seq[i] = i % 2, slot[i] = 3 + i, pos[i] = (int32_t)(ct_next(rng) % 131072);
    OK(aero_cuda_batch_set(b, n, pos, seq, slot, NULL, base, &err));
    float freq[64], *hq, *hk, *hv;
    llama3_inv_freq(freq, rope_dim);
    float *df = up(freq, sizeof(float) * (rope_dim / 2 + 1));
    float *q1 = rand_dev(n * qd, 2.0f, rng, &hq), *k1 = rand_dev(n * kvd, 2.0f, rng, &hk),
          *v1 = rand_dev(n * kvd, 1.0f, rng, &hv);
    float *q2 = up(hq, qb), *k2 = up(hk, kb), *v2 = up(hv, kb);
    float *bq = bias ? rand_dev(qd, 1.0f, rng, NULL) : NULL, *bk = bias ? rand_dev(kvd, 1.0f, rng, NULL) : NULL,
          *bv = bias ? rand_dev(kvd, 1.0f, rng, NULL) : NULL;
    uint16_t *kc1 = dalloc(cache), *vc1 = dalloc(cache), *kc2 = dalloc(cache), *vc2 = dalloc(cache);
    OK(aero_cuda_memset0(cu, kc1, cache, &err));
    OK(aero_cuda_memset0(cu, vc1, cache, &err));
    OK(aero_cuda_memset0(cu, kc2, cache, &err));
    OK(aero_cuda_memset0(cu, vc2, cache, &err));
    if (bias) {
        OK(aero_cuda_add_bias(cu, q1, bq, n, qd, &err));
        OK(aero_cuda_add_bias(cu, k1, bk, n, kvd, &err));
        OK(aero_cuda_add_bias(cu, v1, bv, n, kvd, &err));
    }
    const int32_t *dpos = aero_cuda_batch_pos(b);
    OK(aero_cuda_rope(cu, q1, n, nh, hd, rope_dim, dpos, df, neox, &err));
    OK(aero_cuda_rope(cu, k1, n, nkv, hd, rope_dim, dpos, df, neox, &err));
    OK(aero_cuda_kv_store(b, kc1, vc1, k1, v1, kvd, &err));
    aero_cuda_qkv a = {.q = q2,
                       .k = k2,
                       .v = v2,
                       .bq = bq,
                       .bk = bk,
                       .bv = bv,
                       .n_head = nh,
                       .n_head_kv = nkv,
                       .head_dim = hd,
                       .rope_dim = rope_dim,
                       .inv_freq = df,
                       .neox = neox,
                       .k_cache = kc2,
                       .v_cache = vc2};
    OK(aero_cuda_rope_kv_store(b, &a, &err));
    bool ok = same_dev(q1, q2, qb) && same_dev(k1, k2, kb) && same_dev(v1, v2, kb) && same_dev(kc1, kc2, cache) &&
              same_dev(vc1, vc2, cache);
    EXPECT(ok, "rope_kv_store %s rope_dim %d bias %d differs from the unfused ops", neox ? "neox" : "normal", rope_dim,
           bias);
    printf("  bias + rope q,k + kv_store (%s, rope_dim %d%s) fused == unfused: %s\n", neox ? "neox" : "normal",
           rope_dim, bias ? ", biases" : "", ok ? "bitwise" : "NO");
    aero_cuda_batch_free(b);
    free(hq), free(hk), free(hv);
    aero_cuda_arena_reset(cu, mark);
}

// ---- KV cache and attention ----------------------------------------------------------------------------

#define ATTN_TOL 2e-5 // absolute, for values in [-1, 1]

typedef struct {
    int n_head, n_kv, hd, n_ctx, n_seq, kv_dim;
    uint16_t *dk, *dv; // device caches [n_seq][n_ctx][kv_dim]
    aero_cuda_batch *b;
} attn_env;

// Double-precision attention of one query over explicit slots of one sequence (host copy of the cache).
static void attn_ref(const attn_env *e, const uint16_t *hk, const uint16_t *hv, int seq, const float *q, int h,
                     const int *slots, int ns, double *out) {
    int kvh = h / (e->n_head / e->n_kv);
    double *sc = malloc(sizeof(double) * ns), mx = -INFINITY, sum = 0;
    for (int t = 0; t < ns; t++) {
        const uint16_t *kr = hk + ((size_t)seq * e->n_ctx + slots[t]) * e->kv_dim + (size_t)kvh * e->hd;
        double d = 0;
        for (int k = 0; k < e->hd; k++) d += (double)q[k] * aero_f16_to_f32(kr[k]);
        sc[t] = d / sqrt((double)e->hd);
        mx = fmax(mx, sc[t]);
    }
    for (int t = 0; t < ns; t++) sc[t] = exp(sc[t] - mx), sum += sc[t];
    for (int k = 0; k < e->hd; k++) out[k] = 0;
    for (int t = 0; t < ns; t++) {
        const uint16_t *vr = hv + ((size_t)seq * e->n_ctx + slots[t]) * e->kv_dim + (size_t)kvh * e->hd;
        for (int k = 0; k < e->hd; k++) out[k] += sc[t] / sum * aero_f16_to_f32(vr[k]);
    }
    free(sc);
}

// Stores f32 K/V rows of n tokens of one sequence at the given slots (through a batch).
static void store_rows(attn_env *e, int seq, const int32_t *slots, int n, const float *k, const float *v) {
    int32_t *pos = malloc(sizeof(int32_t) * n), *sq = malloc(sizeof(int32_t) * n), base[4] = {0};
    for (int i = 0; i < n; i++) pos[i] = slots[i], sq[i] = seq;
    OK(aero_cuda_batch_set(e->b, n, pos, sq, slots, NULL, base, &err));
    float *dk = up(k, sizeof(float) * n * e->kv_dim), *dv = up(v, sizeof(float) * n * e->kv_dim);
    OK(aero_cuda_kv_store(e->b, e->dk, e->dv, dk, dv, e->kv_dim, &err));
    OK(aero_cuda_sync(cu, &err));
    free(pos), free(sq);
}

// Runs the attention of a batch and returns its output on the host.
static void run_attn(attn_env *e, int n, const int32_t *seq, const int32_t *slot, const uint8_t *mask,
                     const int32_t *base, const float *q, float *out) {
    int32_t pos[1024];
    for (int i = 0; i < n; i++) pos[i] = slot[i];
    OK(aero_cuda_batch_set(e->b, n, pos, seq, slot, mask, base, &err));
    size_t qn = (size_t)n * e->n_head * e->hd;
    size_t mark = aero_cuda_arena_mark(cu);
    float *dq = up(q, sizeof(float) * qn), *dout = dalloc(sizeof(float) * qn);
    OK(aero_cuda_attention(e->b, dq, e->dk, e->dv, e->n_head, e->n_kv, e->hd, dout, &err));
    down(out, dout, sizeof(float) * qn);
    aero_cuda_arena_reset(cu, mark);
}

// The attention kernel under test: AERO_CUDA_ATTN as main sets it (v2 when unset).
static const char *attn_version(void) {
    const char *v = getenv("AERO_CUDA_ATTN");
    return v ? v : "v2";
}

// Runs a batch again with each forced token tile of v2 (AERO_CUDA_ATTN_TOKENS); returns how many runs differ
// from `want` (bitwise). v1 ignores the tile, so it must give the same bits too.
static int attn_tile_runs(attn_env *e, int n, const int32_t *seq, const int32_t *slot, const uint8_t *mask,
                          const int32_t *base, const float *q, const float *want) {
    static const char *tiles[] = {"1", "2", "3", "16", "64"};
    size_t bytes = sizeof(float) * n * e->n_head * e->hd;
    float *o = malloc(bytes);
    int bad = 0;
    for (int t = 0; t < (int)(sizeof tiles / sizeof tiles[0]); t++) {
        setenv("AERO_CUDA_ATTN_TOKENS", tiles[t], 1);
        run_attn(e, n, seq, slot, mask, base, q, o);
        bad += memcmp(o, want, bytes) != 0;
    }
    unsetenv("AERO_CUDA_ATTN_TOKENS");
    free(o);
    return bad;
}

// Causal prefill after a long committed prefix, a speculative tree, both in one mixed batch (under every token
// tile), and every token alone (its ancestors compacted to consecutive slots, as after acceptance): all bitwise
// equal.
static void test_attention(int n_head, int n_kv, int hd, uint64_t *rng) {
    size_t mark = aero_cuda_arena_mark(cu);
    attn_env e = {n_head, n_kv, hd, 1200, 3, n_kv * hd, NULL, NULL, NULL};
    size_t cache = (size_t)e.n_seq * e.n_ctx * e.kv_dim * 2;
    e.dk = dalloc(cache), e.dv = dalloc(cache);
    OK(aero_cuda_memset0(cu, e.dk, cache, &err));
    OK(aero_cuda_memset0(cu, e.dv, cache, &err));
    OK(aero_cuda_batch_new(cu, 1024, e.n_seq, e.n_ctx, n_head, hd, &e.b, &err));
    int nb = 700, np = 40, nt = 7;
    // committed prefix of sequences 0 and 1 (same rows), and kv_store against aero_f32_to_f16
    float *k = malloc(sizeof(float) * nb * e.kv_dim), *v = malloc(sizeof(float) * nb * e.kv_dim);
    int32_t *slots = malloc(sizeof(int32_t) * 1024);
    for (size_t i = 0; i < (size_t)nb * e.kv_dim; i++) k[i] = 2.0f * ct_unif(rng), v[i] = ct_unif(rng);
    for (int i = 0; i < nb; i++) slots[i] = i;
    store_rows(&e, 0, slots, nb, k, v);
    store_rows(&e, 1, slots, nb, k, v);
    store_rows(&e, 2, slots, nb, k, v);
    uint16_t *hk = malloc(cache), *hv = malloc(cache);
    down(hk, e.dk, cache);
    down(hv, e.dv, cache);
    int kv_bad = 0;
    for (size_t i = 0; i < (size_t)nb * e.kv_dim; i++)
        kv_bad += hk[i] != aero_f32_to_f16(k[i]) || hv[i] != aero_f32_to_f16(v[i]);
    EXPECT(kv_bad == 0, "kv_store: %d halves differ from aero_f32_to_f16", kv_bad);
    // the new tokens: np causal in sequence 0, a tree of nt in sequence 1 (parents), with their own K/V
    int parent[7] = {-1, 0, 0, 1, 1, 2, 5}, depth[7];
    int nn = np + nt, qd = n_head * hd;
    float *q = malloc(sizeof(float) * nn * qd), *kn = malloc(sizeof(float) * nn * e.kv_dim),
          *vn = malloc(sizeof(float) * nn * e.kv_dim);
    for (size_t i = 0; i < (size_t)nn * qd; i++) q[i] = 2.0f * ct_unif(rng);
    for (size_t i = 0; i < (size_t)nn * e.kv_dim; i++) kn[i] = 2.0f * ct_unif(rng), vn[i] = ct_unif(rng);
    for (int i = 0; i < np; i++) slots[i] = nb + i;
    store_rows(&e, 0, slots, np, kn, vn);
    store_rows(&e, 1, slots, nt, kn + (size_t)np * e.kv_dim, vn + (size_t)np * e.kv_dim);
    down(hk, e.dk, cache);
    down(hv, e.dv, cache);
    // causal batch
    int32_t seq[1024], slot[1024], base[3] = {nb, nb, 0};
    for (int i = 0; i < np; i++) seq[i] = 0, slot[i] = nb + i;
    float *o_causal = malloc(sizeof(float) * np * qd), *o_tree = malloc(sizeof(float) * nt * qd),
          *o_mix = malloc(sizeof(float) * nn * qd), *o1 = malloc(sizeof(float) * qd);
    run_attn(&e, np, seq, slot, NULL, base, q, o_causal);
    // tree batch
    uint8_t tmask[7 * 7] = {0};
    for (int i = 0; i < nt; i++) {
        depth[i] = 0;
        for (int a = i; a >= 0; a = parent[a]) tmask[i * nt + a] = 1, depth[i] += a != i;
        seq[i] = 1, slot[i] = nb + i;
    }
    run_attn(&e, nt, seq, slot, tmask, base, q + (size_t)np * qd, o_tree);
    // reference
    double worst = 0, *ro = malloc(sizeof(double) * hd);
    int *vis = malloc(sizeof(int) * (nb + nn));
    for (int i = 0; i < nn; i++) {
        int ns = 0, sq = i < np ? 0 : 1;
        for (int t = 0; t < nb; t++) vis[ns++] = t;
        if (sq == 0)
            for (int t = 0; t <= i; t++) vis[ns++] = nb + t;
        else
            for (int t = 0; t < nt; t++)
                if (tmask[(i - np) * nt + t]) vis[ns++] = nb + t;
        for (int h = 0; h < n_head; h++) {
            attn_ref(&e, hk, hv, sq, q + (size_t)i * qd + (size_t)h * hd, h, vis, ns, ro);
            const float *g = sq == 0 ? o_causal + (size_t)i * qd : o_tree + (size_t)(i - np) * qd;
            for (int d = 0; d < hd; d++) worst = fmax(worst, fabs(g[(size_t)h * hd + d] - ro[d]));
        }
    }
    EXPECT(worst <= ATTN_TOL, "attention %s %dx%d/%d: error %.3g", attn_version(), n_head, hd, n_kv, worst);
    // mixed batch: causal tokens of sequence 0 and the tree of sequence 1 interleaved, one mask
    int order[64], m = 0;
    for (int i = 0, j = 0; i < np || j < nt;) {
        if (i < np) order[m++] = i++;
        if (j < nt && (i % 6 == 0 || i >= np)) order[m++] = np + j++;
    }
    uint8_t *mmask = calloc((size_t)nn * nn, 1);
    float *qm = malloc(sizeof(float) * nn * qd);
    for (int a = 0; a < nn; a++) {
        int i = order[a];
        seq[a] = i < np ? 0 : 1, slot[a] = i < np ? nb + i : nb + (i - np);
        memcpy(qm + (size_t)a * qd, q + (size_t)i * qd, sizeof(float) * qd);
        for (int c = 0; c <= a; c++) {
            int j = order[c];
            if (i < np) mmask[(size_t)a * nn + c] = j < np && j <= i;
            else mmask[(size_t)a * nn + c] = j >= np && tmask[(i - np) * nt + (j - np)];
        }
    }
    run_attn(&e, nn, seq, slot, mmask, base, qm, o_mix);
    int mix_bad = 0;
    for (int a = 0; a < nn; a++) {
        int i = order[a];
        const float *g = i < np ? o_causal + (size_t)i * qd : o_tree + (size_t)(i - np) * qd;
        mix_bad += memcmp(g, o_mix + (size_t)a * qd, sizeof(float) * qd) != 0;
    }
    EXPECT(mix_bad == 0, "attention %s: %d tokens differ in the mixed batch", attn_version(), mix_bad);
    int tile_bad = attn_tile_runs(&e, nn, seq, slot, mmask, base, qm, o_mix);
    EXPECT(tile_bad == 0, "attention %s: %d token tiles change the mixed batch's bits", attn_version(), tile_bad);
    // alone: causal token i sees [0, nb + i]
    int alone_bad = 0;
    for (int i = 0; i < np; i++) {
        int32_t s0 = 0, sl = nb + i, bs[3] = {nb + i, 0, 0};
        run_attn(&e, 1, &s0, &sl, NULL, bs, q + (size_t)i * qd, o1);
        alone_bad += memcmp(o1, o_causal + (size_t)i * qd, sizeof(float) * qd) != 0;
    }
    // alone: tree token i after its ancestors were accepted, compacted into sequence 2 at nb, nb + 1, ...
    for (int i = 0; i < nt; i++) {
        int chain[8], len = 0;
        for (int a = i; a >= 0; a = parent[a]) chain[len++] = a;
        float ck[8 * 256 * 8], cv[8 * 256 * 8];
        int32_t cs[8];
        for (int c = 0; c < len; c++) {
            int tok = chain[len - 1 - c];
            memcpy(ck + (size_t)c * e.kv_dim, kn + (size_t)(np + tok) * e.kv_dim, sizeof(float) * e.kv_dim);
            memcpy(cv + (size_t)c * e.kv_dim, vn + (size_t)(np + tok) * e.kv_dim, sizeof(float) * e.kv_dim);
            cs[c] = nb + c;
        }
        store_rows(&e, 2, cs, len, ck, cv);
        int32_t s2 = 2, sl = nb + len - 1, bs[3] = {0, 0, nb + len - 1};
        run_attn(&e, 1, &s2, &sl, NULL, bs, q + (size_t)(np + i) * qd, o1);
        alone_bad += memcmp(o1, o_tree + (size_t)i * qd, sizeof(float) * qd) != 0;
    }
    EXPECT(alone_bad == 0, "attention %s: %d tokens differ alone vs in their batch", attn_version(), alone_bad);
    printf("  attention %s heads %d/%d x %d, %d committed (3 segments) + %d causal + tree of %d  max err %.2e (tol "
           "%.0e)\n    kv_store: %s  mixed batch: %s  token tiles: %s  alone==batch (causal and accepted tree paths): %s\n",
           attn_version(), n_head, n_kv, hd, nb, np, nt, worst, ATTN_TOL,
           kv_bad ? "DIFFERS" : "bitwise = aero_f32_to_f16", mix_bad ? "NO" : "bitwise", tile_bad ? "NO" : "bitwise",
           alone_bad ? "NO" : "bitwise");
    aero_cuda_batch_free(e.b);
    free(k), free(v), free(slots), free(hk), free(hv), free(q), free(kn), free(vn), free(o_causal), free(o_tree);
    free(o_mix), free(o1), free(ro), free(vis), free(mmask), free(qm);
    aero_cuda_arena_reset(cu, mark);
}

// Short contexts: two sequences (500 and 100 committed keys) with 4 causal tokens each, interleaved in one
// batch (2 segments: partials and the merge); each token alone (the second sequence's: one segment, which v2
// writes without the merge) must give the same bits, and all must match the reference.
static void test_attention_short(int n_head, int n_kv, int hd, uint64_t *rng) {
    size_t mark = aero_cuda_arena_mark(cu);
    enum { NEW = 4 };
    attn_env e = {n_head, n_kv, hd, 600, 2, n_kv * hd, NULL, NULL, NULL};
    size_t cache = (size_t)e.n_seq * e.n_ctx * e.kv_dim * 2;
    e.dk = dalloc(cache), e.dv = dalloc(cache);
    OK(aero_cuda_memset0(cu, e.dk, cache, &err));
    OK(aero_cuda_memset0(cu, e.dv, cache, &err));
    OK(aero_cuda_batch_new(cu, 1024, e.n_seq, e.n_ctx, n_head, hd, &e.b, &err));
    const int nb[2] = {500, 100}, rows = 500 + NEW, qd = n_head * hd, n = 2 * NEW;
    float *k = malloc(sizeof(float) * rows * e.kv_dim), *v = malloc(sizeof(float) * rows * e.kv_dim);
    float *q = malloc(sizeof(float) * n * qd), *ob = malloc(sizeof(float) * n * qd), *o1 = malloc(sizeof(float) * qd);
    int32_t *slots = malloc(sizeof(int32_t) * rows);
    for (int sq = 0; sq < 2; sq++) {
        for (size_t i = 0; i < (size_t)rows * e.kv_dim; i++) k[i] = 2.0f * ct_unif(rng), v[i] = ct_unif(rng);
        for (int i = 0; i < nb[sq] + NEW; i++) slots[i] = i;
        store_rows(&e, sq, slots, nb[sq] + NEW, k, v);
    }
    for (size_t i = 0; i < (size_t)n * qd; i++) q[i] = 2.0f * ct_unif(rng);
    int32_t seq[2 * NEW], slot[2 * NEW], base[2] = {nb[0], nb[1]};
    for (int a = 0; a < n; a++) seq[a] = a % 2, slot[a] = nb[a % 2] + a / 2;
    run_attn(&e, n, seq, slot, NULL, base, q, ob);
    uint16_t *hk = malloc(cache), *hv = malloc(cache);
    down(hk, e.dk, cache);
    down(hv, e.dv, cache);
    double worst = 0, *ro = malloc(sizeof(double) * hd);
    int *vis = malloc(sizeof(int) * rows), alone_bad = 0;
    for (int a = 0; a < n; a++) {
        int ns = slot[a] + 1;
        for (int t = 0; t < ns; t++) vis[t] = t;
        for (int h = 0; h < n_head; h++) {
            attn_ref(&e, hk, hv, seq[a], q + (size_t)a * qd + (size_t)h * hd, h, vis, ns, ro);
            for (int d = 0; d < hd; d++) worst = fmax(worst, fabs(ob[(size_t)a * qd + (size_t)h * hd + d] - ro[d]));
        }
        int32_t bs[2] = {0, 0};
        bs[seq[a]] = slot[a];
        run_attn(&e, 1, seq + a, slot + a, NULL, bs, q + (size_t)a * qd, o1);
        alone_bad += memcmp(o1, ob + (size_t)a * qd, sizeof(float) * qd) != 0;
    }
    EXPECT(worst <= ATTN_TOL, "attention %s short %dx%d/%d: error %.3g", attn_version(), n_head, hd, n_kv, worst);
    EXPECT(alone_bad == 0, "attention %s short: %d tokens differ alone (one segment) vs in a 2-segment batch",
           attn_version(), alone_bad);
    printf("  attention %s heads %d/%d x %d, short contexts (101..504 keys)  max err %.2e (tol %.0e)  "
           "alone (1 segment) == batch (2 segments): %s\n",
           attn_version(), n_head, n_kv, hd, worst, ATTN_TOL, alone_bad ? "NO" : "bitwise");
    aero_cuda_batch_free(e.b);
    free(k), free(v), free(q), free(ob), free(o1), free(slots), free(hk), free(hv), free(ro), free(vis);
    aero_cuda_arena_reset(cu, mark);
}

// ---- on-device drafting: argmax and chains of one-token batches -------------------------------------------

// The host's draft ranking at temperature 1 (draft.c): the first largest logit among non-NaN values, no
// candidate when the row holds a NaN or +inf or its largest value is -inf; probability 1 / sum expf(l - max)
// summed in double in index order.
static int32_t pick_ref(const float *l, int nv, double *prob) {
    int best = -1;
    for (int j = 0; j < nv; j++) {
        if (isnan(l[j]) || l[j] == INFINITY) return *prob = 0, -1;
        if (best < 0 ? l[j] > -INFINITY : l[j] > l[best]) best = j;
    }
    if (best < 0) return *prob = 0, -1;
    double sum = 0;
    for (int j = 0; j < nv; j++) sum += expf(l[j] - l[best]);
    *prob = 1 / sum;
    return best;
}

// Rows of random logits and the special rows the ranking must agree on: exact ties at the maximum (the first
// wins), -inf entries, only -inf, NaN (first or later), +inf, a maximum at either end. ids exact; probabilities
// within 2e-6 relative (GPU expf is within 2 ulp); every row's bits the same alone and in the batch, and twice.
static void test_argmax(int nv, uint64_t *rng) {
    size_t mark = aero_cuda_arena_mark(cu);
    enum { ROWS = 12 };
    float *l = malloc(sizeof(float) * ROWS * nv);
    for (int r = 0; r < ROWS; r++)
        for (int j = 0; j < nv; j++) l[(size_t)r * nv + j] = (r % 3 + 1) * 8.0f * ct_unif(rng);
    float *row;
    int a = nv > 3 ? nv / 3 : 0, b = nv > 3 ? 2 * nv / 3 : nv - 1;
    row = l + 1 * (size_t)nv; // ties: the same maximum at b and a (a < b): a wins
    row[a] = row[b] = 40.0f;
    if (nv > 3) row[nv - 1] = 40.0f;
    row = l + 2 * (size_t)nv; // -inf entries beside a finite maximum
    for (int j = 0; j < nv; j += 3) row[j] = -INFINITY;
    row = l + 3 * (size_t)nv; // only -inf: no candidate
    for (int j = 0; j < nv; j++) row[j] = -INFINITY;
    l[4 * (size_t)nv] = NAN;            // NaN first
    l[5 * (size_t)nv + b] = NAN;        // NaN later
    l[6 * (size_t)nv + a] = INFINITY;   // +inf
    l[7 * (size_t)nv] = 50.0f;          // the maximum first
    l[8 * (size_t)nv + nv - 1] = 50.0f; // the maximum last
    row = l + 9 * (size_t)nv;           // logits a few ulps apart around 0.5: their q merge, the logit decides
    for (int j = 0; j < nv; j++) row[j] = nextafterf(0.5f, 0.0f) - (j % 7) * 1e-8f;
    row[b] = 0.5f;
    float *dl = up(l, sizeof(float) * ROWS * nv);
    int32_t *ids = dalloc(4 * ROWS), *ids1 = dalloc(4);
    float *pr = dalloc(4 * ROWS), *pr1 = dalloc(4);
    int32_t hid[ROWS], hid2[ROWS], one_id;
    float hp[ROWS], hp2[ROWS], one_p;
    OK(aero_cuda_argmax(cu, dl, ROWS, nv, ids, pr, &err));
    down(hid, ids, sizeof hid);
    down(hp, pr, sizeof hp);
    OK(aero_cuda_argmax(cu, dl, ROWS, nv, ids, pr, &err));
    down(hid2, ids, sizeof hid2);
    down(hp2, pr, sizeof hp2);
    int bad_id = 0, alone_bad = 0;
    double worst = 0;
    for (int r = 0; r < ROWS; r++) {
        double ref;
        int32_t want = pick_ref(l + (size_t)r * nv, nv, &ref);
        if (hid[r] != want) {
            bad_id++;
            printf("    row %d: id %d, host %d\n", r, hid[r], want);
        }
        if (want >= 0) worst = fmax(worst, fabs(hp[r] - ref) / ref);
        else if (hp[r] != 0) bad_id++;
        OK(aero_cuda_argmax(cu, dl + (size_t)r * nv, 1, nv, ids1, pr1, &err));
        down(&one_id, ids1, 4);
        down(&one_p, pr1, 4);
        alone_bad += one_id != hid[r] || memcmp(&one_p, &hp[r], 4) != 0;
    }
    bool again = !memcmp(hid, hid2, sizeof hid) && !memcmp(hp, hp2, sizeof hp);
    EXPECT(bad_id == 0, "argmax over %d: %d rows differ from the host's pick", nv, bad_id);
    EXPECT(worst <= 2e-6, "argmax over %d: probability error %.3g", nv, worst);
    EXPECT(alone_bad == 0 && again, "argmax over %d: %d rows differ alone; repeatable %d", nv, alone_bad, again);
    printf("  argmax over %d logits (ties, -inf, NaN, +inf, merged q): ids %s, probability err %.2e (tol 2e-6), "
           "alone == batch, repeated: %s\n",
           nv, bad_id ? "WRONG" : "== host", worst, alone_bad || !again ? "NO" : "bitwise");
    free(l);
    aero_cuda_arena_reset(cu, mark);
}

// A chain's one-token batches (aero_cuda_chain, one upload) against the same tokens through aero_cuda_batch_set
// one at a time: rope_kv_store and attention give the same bits, the cache the same rows.
static void test_chain_batches(uint64_t *rng) {
    size_t mark = aero_cuda_arena_mark(cu);
    enum { NH = 8, NKV = 4, HD = 64, CTX = 700, K = 9, BASE = 250 };
    int qd = NH * HD, kvd = NKV * HD;
    size_t cache = (size_t)CTX * kvd * 2;
    uint16_t *hc = malloc(cache);
    for (size_t i = 0; i < cache / 2; i++) hc[i] = aero_f32_to_f16(ct_unif(rng));
    uint16_t *kc[2] = {up(hc, cache), up(hc, cache)}, *vc[2] = {up(hc, cache), up(hc, cache)};
    float inv[HD / 2];
    for (int i = 0; i < HD / 2; i++) inv[i] = powf(10000.0f, -2.0f * i / HD);
    float *dinv = up(inv, sizeof inv);
    size_t tok = (size_t)(qd + 2 * kvd);
    float *h = malloc(sizeof(float) * K * tok);
    for (size_t i = 0; i < K * tok; i++) h[i] = ct_unif(rng);
    float *in[2] = {up(h, sizeof(float) * K * tok), up(h, sizeof(float) * K * tok)};
    float *out[2] = {dalloc(sizeof(float) * K * qd), dalloc(sizeof(float) * K * qd)};
    aero_cuda_chain *ch;
    aero_cuda_batch *b1;
    OK(aero_cuda_chain_new(cu, K + 3, CTX, NH, HD, &ch, &err));
    OK(aero_cuda_batch_new(cu, 1, 1, CTX, NH, HD, &b1, &err));
    int32_t pos[K], slot[K], base[K];
    for (int j = 0; j < K; j++) pos[j] = BASE + 3 + j, slot[j] = base[j] = BASE + j; // crosses 256 keys
    OK(aero_cuda_chain_set(ch, K, pos, slot, base, &err));
    for (int v = 0; v < 2; v++)
        for (int j = 0; j < K; j++) {
            aero_cuda_batch *b = v ? aero_cuda_chain_batch(ch, j) : b1;
            if (!v) OK(aero_cuda_batch_set(b1, 1, pos + j, NULL, slot + j, NULL, base + j, &err));
            float *t = in[v] + j * tok;
            aero_cuda_qkv a = {.q = t,
                               .k = t + qd,
                               .v = t + qd + kvd,
                               .n_head = NH,
                               .n_head_kv = NKV,
                               .head_dim = HD,
                               .rope_dim = HD,
                               .inv_freq = dinv,
                               .k_cache = kc[v],
                               .v_cache = vc[v]};
            OK(aero_cuda_rope_kv_store(b, &a, &err));
            OK(aero_cuda_attention(b, t, kc[v], vc[v], NH, NKV, HD, out[v] + (size_t)j * qd, &err));
        }
    float *o[2] = {malloc(sizeof(float) * K * qd), malloc(sizeof(float) * K * qd)};
    uint16_t *c2[2] = {malloc(cache), malloc(cache)};
    for (int v = 0; v < 2; v++) down(o[v], out[v], sizeof(float) * K * qd), down(c2[v], kc[v], cache);
    bool same = !memcmp(o[0], o[1], sizeof(float) * K * qd) && !memcmp(c2[0], c2[1], cache);
    aero_error e2 = {0};
    int32_t far = CTX;
    bool refused = aero_cuda_chain_set(ch, 1, pos, &far, base, &e2) == AERO_ERR_RANGE &&
                   aero_cuda_chain_set(ch, K + 4, pos, slot, base, &e2) == AERO_ERR_INVALID;
    EXPECT(same, "chain batches differ from batch_set one token at a time");
    EXPECT(refused, "chain: a slot past the context or too many tokens accepted");
    printf("  chain of %d one-token batches in one upload == batch_set per token (rope, cache, attention): %s\n", K,
           same ? "bitwise" : "DIFFERENT");
    aero_cuda_chain_free(ch);
    aero_cuda_batch_free(b1);
    free(hc), free(h), free(o[0]), free(o[1]), free(c2[0]), free(c2[1]);
    aero_cuda_arena_reset(cu, mark);
}

// ---- errors and the copy pipeline ----------------------------------------------------------------------

static void test_errors(void) {
    size_t mark = aero_cuda_arena_mark(cu);
    void *p = NULL;
    aero_error e2 = {0};
    aero_status st = aero_cuda_alloc(cu, aero_cuda_arena_budget(cu) + 1, &p, &e2);
    EXPECT(st == AERO_ERR_NOMEM && p == NULL && strstr(e2.msg, "budget"), "over-budget alloc: %d '%s'", st, e2.msg);
    printf("  over budget: '%s'\n", e2.msg);
    uint8_t *w = dalloc(84 * 64);
    aero_cuda_wmat W = {w, AERO_DT_Q2_K, 256, 64, 84};
    float *x = dalloc(4096), *y = dalloc(4096);
    st = aero_cuda_matmul(cu, &W, x, 1, y, &e2);
    EXPECT(st == AERO_ERR_UNSUPPORTED && strstr(e2.msg, "Q2_K"), "Q2_K matmul: %d '%s'", st, e2.msg);
    printf("  missing kernel: '%s'\n", e2.msg);
    aero_cuda_wmat W2 = {w, AERO_DT_Q4_0, 100, 4, 18 * 4};
    st = aero_cuda_matmul(cu, &W2, x, 1, y, &e2);
    EXPECT(st == AERO_ERR_UNSUPPORTED, "cols 100: %d '%s'", st, e2.msg);
    aero_cuda_arena_reset(cu, mark);
}

// Units copied from pinned host memory into a ring of 2 VRAM slots on the copy stream while the compute stream
// multiplies the previous unit; events order copy -> compute -> slot reuse. Each result must equal the matvec
// of the same weights uploaded plainly (a missing wait would let a copy overwrite a slot in use).
static void test_pipeline(uint64_t *rng) {
    size_t mark = aero_cuda_arena_mark(cu);
    enum { UNITS = 6, ROWS = 1024, COLS = 4096 };
    size_t rb, bytes = aero_dtype_row_bytes(AERO_DT_Q4_K, COLS) * ROWS;
    uint8_t *host;
    OK(aero_cuda_host_alloc(bytes * UNITS, (void **)&host, &err));
    for (int u = 0; u < UNITS; u++) {
        uint8_t *w = ct_random_weights(AERO_DT_Q4_K, ROWS, COLS, rng, &rb);
        memcpy(host + bytes * u, w, bytes);
        free(w);
    }
    float xh[COLS];
    for (int i = 0; i < COLS; i++) xh[i] = ct_unif(rng);
    float *x = up(xh, sizeof xh), *y = dalloc(sizeof(float) * ROWS * UNITS), *yr = dalloc(sizeof(float) * ROWS);
    uint8_t *slot[2] = {dalloc(bytes), dalloc(bytes)};
    aero_cuda_event *copied[2], *used[2];
    for (int s = 0; s < 2; s++) {
        OK(aero_cuda_event_new(cu, &copied[s], &err));
        OK(aero_cuda_event_new(cu, &used[s], &err));
    }
    for (int u = 0; u < UNITS; u++) {
        int s = u % 2;
        if (u >= 2) OK(aero_cuda_wait(cu, AERO_CUDA_STREAM_COPY, used[s], &err));
        OK(aero_cuda_copy_h2d_async(cu, AERO_CUDA_STREAM_COPY, slot[s], host + bytes * u, bytes, &err));
        OK(aero_cuda_record(cu, AERO_CUDA_STREAM_COPY, copied[s], &err));
        OK(aero_cuda_wait(cu, AERO_CUDA_STREAM_COMPUTE, copied[s], &err));
        aero_cuda_wmat W = {slot[s], AERO_DT_Q4_K, COLS, ROWS, rb};
        OK(aero_cuda_matmul(cu, &W, x, 1, y + (size_t)u * ROWS, &err));
        OK(aero_cuda_record(cu, AERO_CUDA_STREAM_COMPUTE, used[s], &err));
    }
    OK(aero_cuda_sync(cu, &err));
    float *a = malloc(sizeof(float) * ROWS * UNITS), *b = malloc(sizeof(float) * ROWS);
    down(a, y, sizeof(float) * ROWS * UNITS);
    int bad = 0;
    uint8_t *plain = dalloc(bytes);
    for (int u = 0; u < UNITS; u++) {
        OK(aero_cuda_copy_h2d_async(cu, AERO_CUDA_STREAM_COMPUTE, plain, host + bytes * u, bytes, &err));
        aero_cuda_wmat W = {plain, AERO_DT_Q4_K, COLS, ROWS, rb};
        OK(aero_cuda_matmul(cu, &W, x, 1, yr, &err));
        down(b, yr, sizeof(float) * ROWS);
        bad += memcmp(a + (size_t)u * ROWS, b, sizeof(float) * ROWS) != 0;
    }
    EXPECT(bad == 0, "pipeline: %d of %d units differ", bad, UNITS);
    printf("  copy-stream pipeline, %d units through 2 VRAM slots: %s\n", UNITS, bad ? "WRONG" : "ordered, bitwise");
    for (int s = 0; s < 2; s++) aero_cuda_event_free(copied[s]), aero_cuda_event_free(used[s]);
    aero_cuda_host_free(host);
    free(a), free(b);
    aero_cuda_arena_reset(cu, mark);
}

int main(void) {
    ct_require_gpu();
    aero_cuda_info info;
    OK(aero_cuda_device_info(0, &info, &err));
    printf("device: %s (sm_%d%d, %d SMs), %.1f of %.1f GiB free\n", info.name, info.cc_major, info.cc_minor, info.n_sm,
           info.free_vram / 1073741824.0, info.total_vram / 1073741824.0);
    OK(aero_cuda_init(&cu, 0, (size_t)4 << 30, &err));
    uint64_t rng = 0x9E3779B97F4A7C15ull;

    // before any matrix of an f16-path type is noted (aero_cuda_matmul notes its type), the int8 default
    // prepares the int8 form alone, with the many-block kernels; the same checks run later with the f16 copy
    printf("activations in the int8 form only\n");
    test_q8_prepare(5, 4096, &rng);
    test_fused_norm(1, 4096, &rng);
    test_fused_norm(19, 4096, &rng);
    test_fused_swiglu(1, 14336, &rng);
    test_fused_swiglu(7, 14336 + 160, &rng);
    test_fused_swiglu(3, 172, &rng);
    test_f16_unnoted(&rng);

    printf("matmul (reference: CPU scalar dequantize, double dot with the same f32 activations)\n");
    for (int k = 0; k < N_TYPES; k++) {
        aero_dtype t = TYPES[k];
        test_matmul(t, 512, 4096, 37, &rng);
        test_matmul(t, 67, 768, 5, &rng);
        if (aero_dtype_get(t)->block < 256) test_matmul(t, 33, 96, 9, &rng);
    }
    test_matmul(AERO_DT_Q4_K, 256, 2048, 512, &rng);
    test_q8_prepare(5, 4096, &rng);
    test_matmul_many(AERO_DT_Q4_K, 4096, &rng);
    test_matmul_many(AERO_DT_Q6_K, 1024, &rng);
    test_matmul_many(AERO_DT_Q8_0, 96, &rng);
    test_matmul_many(AERO_DT_F16, 256, &rng); // F16, F16, Q4_K: one launch each
    test_q8_prepare(3, 14336 + 160, &rng);
    test_matmul(AERO_DT_Q6_K, 128, 14336, 64, &rng);
    test_matmul(AERO_DT_F32, 64, 172, 9, &rng); // stories260K's ffn_down: dense rows of any width
    test_matmul(AERO_DT_F16, 40, 100, 5, &rng);
    printf("embedding rows\n");
    for (int k = 0; k < N_TYPES; k++) {
        test_get_rows(TYPES[k], 512, &rng);
        if (aero_dtype_get(TYPES[k])->block < 256) test_get_rows(TYPES[k], 96, &rng);
    }
    printf("rmsnorm, rope, swiglu\n");
    test_rmsnorm(19, 4096, &rng);
    test_rmsnorm(40, 8, &rng);
    test_rmsnorm(40, 128, &rng);
    test_rope(false, 128, &rng);
    test_rope(true, 128, &rng);
    test_rope(false, 64, &rng);
    test_rope(true, 32, &rng);
    test_swiglu(&rng);
    printf("fused ops against the unfused sequences\n");
    test_fused_norm(1, 4096, &rng);
    test_fused_norm(19, 4096, &rng);
    test_fused_norm(5, 8192 + 96, &rng); // a last 32-chunk group of fewer than 128
    test_fused_norm(40, 8, &rng);        // not a multiple of 32: natural rows only
    test_fused_swiglu(1, 14336, &rng);
    test_fused_swiglu(7, 14336 + 160, &rng);
    test_fused_swiglu(3, 172, &rng);
    test_fused_rope_kv(false, 64, false, &rng);
    test_fused_rope_kv(true, 64, true, &rng);
    test_fused_rope_kv(false, 32, true, &rng);
    test_fused_rope_kv(true, 16, false, &rng);
    // both kernels: v1 (one warp per token, head and segment) and v2 (a block per GQA group); GQA groups of 1,
    // 2, 4, 8 and 12 (two chunks of heads), head_dim 8, 64, 80 (lanes past the dims), 128, 256, and 12 (v2 falls
    // back to v1: not a multiple of 8)
    static const char *versions[] = {"v1", "v2"};
    for (int vi = 0; vi < 2; vi++) {
        setenv("AERO_CUDA_ATTN", versions[vi], 1);
        printf("attention over the F16 KV cache, %s\n", versions[vi]);
        test_attention(32, 8, 128, &rng);
        test_attention(8, 4, 8, &rng);
        test_attention(4, 4, 256, &rng);
        test_attention(8, 1, 64, &rng);
        test_attention(16, 2, 256, &rng);
        test_attention(12, 1, 80, &rng);
        test_attention(4, 2, 12, &rng);
        test_attention_short(32, 8, 128, &rng);
        test_attention_short(8, 1, 64, &rng);
    }
    unsetenv("AERO_CUDA_ATTN");
    printf("on-device drafting\n");
    test_argmax(8192, &rng);
    test_argmax(128256, &rng);
    test_argmax(1000, &rng);
    test_argmax(3, &rng);
    test_chain_batches(&rng);
    printf("errors, copy pipeline\n");
    test_errors();
    test_pipeline(&rng);

    aero_cuda_free(cu);
    printf("%s: %d checks passed, %d failed\n", n_fail ? "FAIL" : "PASS", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
