// Thread pool and batched matmul: the pool runs every share exactly once; matmul matches a double-precision
// reference; and batch invariance: every token's outputs are bitwise identical for n in {1,2,3,7,16,33} and
// 1 or 2 threads, for every weight type. The test re-runs itself under each ISA the CPU has (AERO_ISA).
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "helpers.h"
#include "core/cpu.h"
#include "kernels/kernels.h"
#include "kernels/quants.h"

static uint64_t rng_state = 0x243f6a8885a308d3ull;

// splitmix64: deterministic test data.
static uint64_t rng_next(void) { return test_splitmix64(&rng_state); }
static float rng_sym(void) { return 2.0f * (float)(rng_next() >> 40) / (float)(1 << 24) - 1.0f; }

// ---- thread pool ------------------------------------------------------------------------------------------

typedef struct {
    _Atomic long calls;
    _Atomic long mask;
    _Atomic long sum;
    int nth_seen;
} pool_probe;

static void probe_fn(void *ctx, int ith, int nth) {
    pool_probe *p = ctx;
    atomic_fetch_add(&p->calls, 1);
    atomic_fetch_or(&p->mask, 1L << ith);
    long b, e;
    aero_pool_split(1000003, ith, nth, &b, &e);
    long s = 0;
    for (long i = b; i < e; i++) s += i;
    atomic_fetch_add(&p->sum, s);
    p->nth_seen = nth;
}

static void test_pool(void) {
    // split: contiguous, covering, balanced
    for (int nth = 1; nth <= 9; nth++) {
        long prev = 0;
        for (int i = 0; i < nth; i++) {
            long b, e;
            aero_pool_split(103, i, nth, &b, &e);
            CHECK(b == prev && e >= b && e - b <= 103 / nth + 1);
            prev = e;
        }
        CHECK(prev == 103);
    }
    aero_pool *p0 = aero_pool_new(0);
    CHECK(p0 && aero_pool_size(p0) == aero_cpu_count());
    aero_pool_free(p0);
    CHECK(aero_pool_size(NULL) == 1);

    const long want = 1000003L * 1000002L / 2;
    for (int n = 1; n <= 4; n++) {
        aero_pool *p = aero_pool_new(n);
        CHECK(p != NULL);
        if (!p) continue;
        int bad = 0;
        int reps = n <= aero_cpu_count() ? 2000 : 200; // oversubscribed pools are slow by nature
        for (int rep = 0; rep < reps; rep++) {         // back-to-back jobs: the spin/sleep hand-off must never lose one
            pool_probe pr = {0};
            aero_pool_run(p, probe_fn, &pr);
            if (pr.calls != n || pr.mask != (1L << n) - 1 || pr.sum != want || pr.nth_seen != n) bad++;
            if (rep % 100 == 99) usleep(2000); // let workers fall asleep, then wake them
        }
        CHECKF(bad == 0, "pool of %d: %d bad jobs", n, bad);
        aero_pool_free(p);
    }
    pool_probe pr = {0};
    aero_pool_run(NULL, probe_fn, &pr);
    CHECK(pr.calls == 1 && pr.sum == want);
}

// ---- matmul ---------------------------------------------------------------------------------------------

static const aero_dtype types[] = {AERO_DT_F32,  AERO_DT_F16,  AERO_DT_BF16, AERO_DT_Q4_0, AERO_DT_Q4_1,
                                   AERO_DT_Q5_0, AERO_DT_Q5_1, AERO_DT_Q8_0, AERO_DT_Q2_K, AERO_DT_Q3_K,
                                   AERO_DT_Q4_K, AERO_DT_Q5_K, AERO_DT_Q6_K};

typedef struct {
    aero_wmat w;
    uint8_t *data;
    float *deq; // rows x cols, dequantized
} test_mat;

static void mat_make(test_mat *m, aero_dtype t, int64_t rows, int64_t cols) {
    size_t rb = aero_dtype_row_bytes(t, (uint64_t)cols);
    m->data = malloc(rb * (size_t)rows);
    m->deq = malloc(sizeof(float) * (size_t)(rows * cols));
    float *tmp = malloc(sizeof(float) * (size_t)cols);
    for (int64_t r = 0; r < rows; r++) {
        float scale = 0.1f + (float)(r % 5);
        for (int64_t c = 0; c < cols; c++) tmp[c] = rng_sym() * scale;
        aero_quantize_row(t, tmp, m->data + (size_t)r * rb, cols);
        aero_dequantize_row(t, m->data + (size_t)r * rb, m->deq + r * cols, cols);
    }
    free(tmp);
    m->w = (aero_wmat){.data = m->data, .type = t, .cols = cols, .rows = rows, .row_bytes = rb};
}

static void mat_free(test_mat *m) {
    free(m->data);
    free(m->deq);
}

static bool same_bits(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

static void test_matmul_type(aero_dtype t, int64_t rows, int64_t cols, aero_pool **pools) {
    static const int ns[] = {1, 2, 3, 7, 16, 33};
    const int nmax = 33;
    test_mat m;
    mat_make(&m, t, rows, cols);
    float *x = malloc(sizeof(float) * (size_t)(nmax * cols));
    for (int64_t i = 0; i < nmax * cols; i++) x[i] = rng_sym() * (1.0f + (float)((i / cols) % 3));
    float *solo = malloc(sizeof(float) * (size_t)(nmax * rows)),
          *solo32 = malloc(sizeof(float) * (size_t)(nmax * rows));
    float *y = malloc(sizeof(float) * (size_t)(nmax * rows));
    // Reference: each token alone, one thread.
    for (int tk = 0; tk < nmax; tk++) {
        aero_matmul(NULL, &m.w, x + tk * cols, 1, solo + tk * rows);
        aero_matmul_f32(NULL, &m.w, x + tk * cols, 1, solo32 + tk * rows);
    }
    // The matmul (whatever activation layout its ISA uses) gives the bits of aero_vec_dot on standard blocks.
    aero_dtype vt = aero_vec_dot_type(t);
    if (vt != AERO_DT_F32) {
        void *a = malloc(aero_dtype_row_bytes(vt, (uint64_t)cols) + 64);
        int bad_dot = 0;
        for (int tk = 0; tk < nmax; tk += 5) {
            aero_quantize_row(vt, x + tk * cols, a, cols);
            for (int64_t r = 0; r < rows; r++) {
                float v = aero_vec_dot(t, cols, m.data + (size_t)r * m.w.row_bytes, a);
                if (memcmp(&v, &solo[tk * rows + r], 4)) bad_dot++;
            }
        }
        CHECKF(bad_dot == 0, "%s %lldx%lld: %d matmul outputs not bitwise aero_vec_dot", aero_dtype_name(t),
               (long long)rows, (long long)cols, bad_dot);
        free(a);
    }
    // Against double precision: exact-f32 path tightly, quantized activations within their rounding.
    int bad_ref = 0, bad_ref32 = 0;
    for (int tk = 0; tk < nmax; tk++) {
        const float *xt = x + tk * cols;
        float amax = 0.0f;
        for (int64_t c = 0; c < cols; c++) amax = fmaxf(amax, fabsf(xt[c]));
        for (int64_t r = 0; r < rows; r++) {
            const float *wr = m.deq + r * cols;
            double ref = 0.0, mag = 0.0, wabs = 0.0;
            for (int64_t c = 0; c < cols; c++)
                ref += (double)wr[c] * xt[c], mag += fabs((double)wr[c] * xt[c]), wabs += fabs(wr[c]);
            double qerr = (t == AERO_DT_F32)    ? 0.0
                          : (t == AERO_DT_F16)  ? wabs * amax * 0x1p-11
                          : (t == AERO_DT_BF16) ? wabs * amax * 0x1p-8
                                                : wabs * amax / 254.0 * 1.01;
            double tol = qerr + 3e-6 * mag + 1e-30;
            if (fabs(solo[tk * rows + r] - ref) > tol) {
                if (bad_ref < 3)
                    fprintf(stderr, "%s token %d row %lld: %.9g vs %.9g (tol %.3g)\n", aero_dtype_name(t), tk,
                            (long long)r, solo[tk * rows + r], ref, tol);
                bad_ref++;
            }
            if (fabs(solo32[tk * rows + r] - ref) > 3e-6 * mag + 1e-30) bad_ref32++;
            float direct = aero_vec_dot_f32(t, cols, m.data + (size_t)r * m.w.row_bytes, xt);
            if (memcmp(&direct, &solo32[tk * rows + r], 4)) bad_ref32++;
        }
    }
    CHECKF(bad_ref == 0, "%s %lldx%lld: %d outputs off the double reference", aero_dtype_name(t), (long long)rows,
           (long long)cols, bad_ref);
    CHECKF(bad_ref32 == 0, "%s %lldx%lld: %d exact-f32 outputs off the reference", aero_dtype_name(t), (long long)rows,
           (long long)cols, bad_ref32);
    // Batch invariance: every n, every thread count, bitwise equal to the solo result.
    for (int pi = 0; pi < 3; pi++) {
        for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
            int n = ns[k];
            for (int off = 0; off + n <= nmax; off += (n == 1 ? 11 : nmax)) { // a few different tokens for n = 1
                memset(y, 0xff, sizeof(float) * (size_t)(n * rows));
                aero_matmul(pools[pi], &m.w, x + off * cols, n, y);
                CHECKF(same_bits(y, solo + off * rows, (size_t)(n * rows)),
                       "%s %lldx%lld n=%d threads=%d: not bitwise equal to solo", aero_dtype_name(t), (long long)rows,
                       (long long)cols, n, aero_pool_size(pools[pi]));
                memset(y, 0xff, sizeof(float) * (size_t)(n * rows));
                aero_matmul_f32(pools[pi], &m.w, x + off * cols, n, y);
                CHECKF(same_bits(y, solo32 + off * rows, (size_t)(n * rows)),
                       "%s %lldx%lld n=%d threads=%d: f32 path not bitwise equal to solo", aero_dtype_name(t),
                       (long long)rows, (long long)cols, n, aero_pool_size(pools[pi]));
            }
        }
    }
    free(x), free(solo), free(solo32), free(y);
    mat_free(&m);
}

typedef struct {
    const aero_wmat *w;
    const float *x;
    float *y;
    int n;
    aero_pool *pool;
} mm_thread_arg;

static void *mm_thread(void *v) {
    mm_thread_arg *a = v;
    for (int i = 0; i < 20; i++) aero_matmul(a->pool, a->w, a->x, a->n, a->y);
    return NULL;
}

// Two callers at once (own pools, and a shared one): scratch is per caller, so results are unchanged.
static void test_reentrant(aero_pool *shared) {
    test_mat m;
    mat_make(&m, AERO_DT_Q4_K, 64, 1024);
    float *x = malloc(sizeof(float) * 4 * 1024), *want = malloc(sizeof(float) * 4 * 64);
    float *y[4];
    for (int i = 0; i < 4 * 1024; i++) x[i] = rng_sym();
    aero_matmul(NULL, &m.w, x, 4, want);
    aero_pool *own = aero_pool_new(2);
    pthread_t th[4];
    mm_thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        y[i] = malloc(sizeof(float) * 4 * 64);
        args[i] = (mm_thread_arg){&m.w, x, y[i], 4, i == 0 ? own : i == 1 ? NULL : shared};
        pthread_create(&th[i], NULL, mm_thread, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECKF(same_bits(y[i], want, 4 * 64), "concurrent caller %d got different results", i);
        free(y[i]);
    }
    aero_pool_free(own);
    free(x), free(want);
    mat_free(&m);
}

// Several weights on one input (aero_matmul_many: one quantization shared where the activation rows agree) and
// a block of rows into a wider output (aero_matmul_ld): bitwise what separate aero_matmul calls give.
static void test_many(aero_pool **pools) {
    const aero_dtype sets[][3] = {{AERO_DT_Q4_K, AERO_DT_Q4_K, AERO_DT_Q6_K}, // Q4_K_M-like q/k/v
                                  {AERO_DT_Q4_0, AERO_DT_Q8_0, AERO_DT_Q4_0},
                                  {AERO_DT_F16, AERO_DT_Q4_0, AERO_DT_Q5_K}}; // nothing shared
    const int64_t rows[3] = {96, 32, 48}, cols = 512;
    const int ns[] = {1, 3, 7, 16};
    float *x = malloc(sizeof(float) * 16 * cols);
    for (int i = 0; i < 16 * cols; i++) x[i] = rng_sym();
    for (size_t si = 0; si < sizeof sets / sizeof sets[0]; si++) {
        test_mat m[3];
        float *want[3], *got[3];
        const aero_wmat *ws[3];
        for (int k = 0; k < 3; k++) {
            mat_make(&m[k], sets[si][k], rows[k], cols);
            ws[k] = &m[k].w;
            want[k] = malloc(sizeof(float) * 16 * rows[k]);
            got[k] = malloc(sizeof(float) * 16 * rows[k]);
        }
        for (int pi = 0; pi < 3; pi++)
            for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
                int n = ns[ni];
                for (int k = 0; k < 3; k++) {
                    aero_matmul(pools[pi], ws[k], x, n, want[k]);
                    memset(got[k], 0xff, sizeof(float) * n * rows[k]);
                }
                aero_matmul_many(pools[pi], ws, 3, x, n, got);
                for (int k = 0; k < 3; k++)
                    CHECKF(same_bits(got[k], want[k], (size_t)n * rows[k]), "matmul_many set %zu matrix %d n=%d", si, k,
                           n);
                // the first matrix in two row blocks written into its full-width output
                aero_wmat top = m[0].w, bottom = m[0].w;
                top.rows = rows[0] / 3;
                bottom.rows = rows[0] - top.rows;
                bottom.data = (const uint8_t *)m[0].w.data + (size_t)top.rows * m[0].w.row_bytes;
                memset(got[0], 0xff, sizeof(float) * n * rows[0]);
                aero_matmul_ld(pools[pi], &top, x, n, got[0], rows[0]);
                aero_matmul_ld(pools[pi], &bottom, x, n, got[0] + top.rows, rows[0]);
                CHECKF(same_bits(got[0], want[0], (size_t)n * rows[0]), "matmul_ld set %zu n=%d", si, n);
            }
        for (int k = 0; k < 3; k++) free(want[k]), free(got[k]), mat_free(&m[k]);
    }
    free(x);
}

static void test_bad_input(aero_pool *pool) {
    uint8_t data[4096] = {0};
    float x[512], y[8];
    for (int i = 0; i < 512; i++) x[i] = 1.0f;
    aero_error err = {0};
    aero_wmat w = {.data = data, .type = AERO_DT_Q4_0, .cols = 48, .rows = 2, .row_bytes = 36};
    CHECK(aero_wmat_check(&w, &err) == AERO_ERR_INVALID && strstr(err.msg, "multiple"));
    w = (aero_wmat){.data = data, .type = AERO_DT_IQ1_S, .cols = 256, .rows = 2, .row_bytes = 50};
    CHECK(aero_wmat_check(&w, &err) == AERO_ERR_UNSUPPORTED && strstr(err.msg, "IQ1_S"));
    w = (aero_wmat){.data = NULL, .type = AERO_DT_Q8_0, .cols = 64, .rows = 2, .row_bytes = 68};
    CHECK(aero_wmat_check(&w, &err) == AERO_OK); // at load a streamed weight has no data yet
    w = (aero_wmat){.data = data, .type = AERO_DT_Q8_0, .cols = 64, .rows = 2, .row_bytes = 60};
    CHECK(aero_wmat_check(&w, &err) == AERO_ERR_INVALID && strstr(err.msg, "stride"));
    w.row_bytes = 68;
    CHECK(aero_wmat_check(&w, &err) == AERO_OK);
    aero_matmul(pool, &w, x, 0, y); // n = 0: nothing
}

// Runs this binary again under every other ISA the CPU has (and AVX-512 without VNNI), so each table's
// matmul is checked.
static int run_other_isas(const char *self) {
    static const char *caps[] = {"scalar", "avx2", "avx512-plain"};
    int failed = 0;
    for (int i = 0; i < 3; i++) {
        if (i == 1 && !aero_isa_available(AERO_ISA_AVX2)) {
            printf("note: avx2 not available, its matmul is not tested\n");
            continue;
        }
        // plain AVX-512 (no VNNI) only needs its own run where the default is AVX-512 with VNNI
        if (i == 2 && strcmp(aero_isa_name(aero_kernels_isa()), "avx512-vnni") != 0) continue;
        if (i < 2 && aero_kernels_isa() == (aero_isa)i) continue;
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            setenv("AERO_ISA", caps[i], 1);
            execl(self, self, "--child", (char *)NULL);
            _exit(127);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "test_matmul under AERO_ISA=%s failed\n", caps[i]);
            failed++;
        }
    }
    return failed;
}

// The table's contract behind the row-lane tiles, checked directly (matmul takes only the tiles): every lane
// of a tile (R = 1..8 rows, T = 1..8 tokens) and matmul's one-row dot on its own activation rows have the bits
// of the dot table's one-row kernel on standard blocks.
static void test_tile_contract(aero_dtype t) {
    const aero_kernel_ops *ops = aero_kernels_selected();
    if (!ops->mm_tile8[t]) return;
    const int64_t cols = 768, rows = 8;
    test_mat m;
    mat_make(&m, t, rows, cols);
    aero_dtype vt = aero_vec_dot_type(t);
    size_t pb = ops->act_bytes ? ops->act_bytes(t, cols) : 0, sb = aero_dtype_row_bytes(vt, (uint64_t)cols);
    size_t ab = pb ? pb : sb;
    uint8_t *act = malloc(8 * ab), *std = malloc(8 * sb);
    float *x = malloc(sizeof(float) * 8 * cols);
    for (int64_t i = 0; i < 8 * cols; i++) x[i] = rng_sym() * 2.0f;
    const void *a[8];
    for (int k = 0; k < 8; k++) {
        aero_quantize_row(vt, x + k * cols, std + k * sb, cols);
        if (pb) ops->act_quantize(t, x + k * cols, act + k * ab, cols);
        else memcpy(act + k * ab, std + k * sb, sb);
        a[k] = act + k * ab;
    }
    int bad = 0;
    for (int R = 1; R <= 8; R++)
        for (int T = 1; T <= 8; T++) {
            float out[64];
            ops->mm_tile8[t](cols, m.data, m.w.row_bytes, R, a, T, out);
            for (int k = 0; k < T; k++)
                for (int r = 0; r < R; r++) {
                    float want = ops->dot[t](cols, m.data + (size_t)r * m.w.row_bytes, std + k * sb);
                    if (memcmp(&want, &out[8 * k + r], 4)) bad++;
                }
        }
    for (int k = 0; k < 8; k++)
        for (int r = 0; r < rows; r++) {
            float one = ops->mm_dot[t](cols, m.data + (size_t)r * m.w.row_bytes, a[k]);
            float want = ops->dot[t](cols, m.data + (size_t)r * m.w.row_bytes, std + k * sb);
            if (memcmp(&want, &one, 4)) bad++;
        }
    CHECKF(bad == 0, "%s: %d tile / mm_dot outputs not bitwise the one-row dot", aero_dtype_name(t), bad);
    free(act), free(std), free(x);
    mat_free(&m);
}

// The packed tiles' contract: for R = 1..8 rows and T = 1..4 tokens, every lane of a packed tile (rows unpacked
// once, then multiplied) has the bits of the dot table's one-row kernel on standard blocks, which test_kernels
// holds to the scalar reference (row-lane order).
static void test_packed_contract(aero_dtype t) {
    const aero_kernel_ops *ops = aero_kernels_selected();
    if (!ops->mm_packed[t]) return;
    const int64_t cols = 1024, rows = 8;
    test_mat m;
    mat_make(&m, t, rows, cols);
    aero_dtype vt = aero_vec_dot_type(t);
    size_t pb = ops->act_bytes ? ops->act_bytes(t, cols) : 0, sb = aero_dtype_row_bytes(vt, (uint64_t)cols);
    size_t ab = pb ? pb : sb;
    uint8_t *act = malloc(4 * ab), *std = malloc(4 * sb), *packed = NULL;
    CHECK(posix_memalign((void **)&packed, 64, ops->pack_bytes[t](cols)) == 0);
    float *x = malloc(sizeof(float) * 4 * cols);
    for (int64_t i = 0; i < 4 * cols; i++) x[i] = rng_sym() * (i % 97 == 0 ? 40.0f : 2.0f); // some large codes
    const void *a[4];
    for (int k = 0; k < 4; k++) {
        aero_quantize_row(vt, x + k * cols, std + k * sb, cols);
        if (pb) ops->act_quantize(t, x + k * cols, act + k * ab, cols);
        else memcpy(act + k * ab, std + k * sb, sb);
        a[k] = act + k * ab;
    }
    const aero_kernel_ops *ref = aero_kernels_ops(AERO_ISA_SCALAR, false);
    int bad = 0;
    for (int R = 1; R <= 8; R++) {
        ops->mm_pack8[t](cols, m.data, m.w.row_bytes, R, packed);
        for (int T = 1; T <= 4; T++) {
            float out[32];
            ops->mm_packed[t](cols, packed, a, T, out);
            for (int k = 0; k < T; k++)
                for (int r = 0; r < R; r++) {
                    float want = ref->dot[t](cols, m.data + (size_t)r * m.w.row_bytes, std + k * sb);
                    if (memcmp(&want, &out[8 * k + r], 4)) bad++;
                }
        }
    }
    CHECKF(bad == 0, "%s: %d packed tile outputs not bitwise the scalar one-row dot", aero_dtype_name(t), bad);
    free(act), free(std), free(x), free(packed);
    mat_free(&m);
}

int main(int argc, char **argv) {
    bool child = argc > 1 && !strcmp(argv[1], "--child");
    aero_kernels_init();
    printf("matmul with ISA %s\n", aero_isa_name(aero_kernels_isa()));
    if (!child) test_pool();
    aero_pool *pools[3] = {NULL, aero_pool_new(1), aero_pool_new(2)};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        aero_dtype t = types[k];
        bool blocky = aero_dtype_get(t)->block > 1;
        test_tile_contract(t);
        test_packed_contract(t);
        test_matmul_type(t, 67, blocky ? 512 : 517, pools);
        if (aero_dtype_get(t)->block < 256) test_matmul_type(t, 19, blocky ? 224 : 223, pools); // odd block count
        test_matmul_type(t, 96, blocky ? 1280 : 1281, pools);
        if (t == AERO_DT_F32 || t == AERO_DT_Q4_0 || t == AERO_DT_Q4_K || t == AERO_DT_Q6_K)
            test_matmul_type(t, 24, 8192, pools); // long rows: the batch is split into token tiles
    }
    test_reentrant(pools[2]);
    test_many(pools);
    test_bad_input(pools[2]);
    aero_pool_free(pools[1]);
    aero_pool_free(pools[2]);
    if (!child) check_failures += run_other_isas(argv[0]);
    return check_done(child ? "test_matmul (child)" : "test_matmul");
}
