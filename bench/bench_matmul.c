// Matrix-vector and batched matmul throughput against the memory bandwidth measured in the same run.
// Prints, per weight type and thread count, GB/s of weight bytes read and the ratio to two floors:
// the read bandwidth (vector loads, the floor a matvec is bound by) and memcpy bandwidth counting
// read + write bytes. Weights are cycled over several copies so each pass reads them from DRAM, as a
// decode step does. Then the batched (prefill) side: the row-lane tiles (8 rows x 4 tokens) against one-row dots,
// one-thread prefill and matrix-vector CPU times, and
// q/k/v through one shared activation quantization (aero_matmul_many) against three matmuls.
// Usage: bench_matmul [seconds per case, default 0.25] [batch: only the batched-side sections]. Figures are only figures on a quiet machine: the load
// average is printed at the start and the end.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/cpu.h"
#include "kernels/kernels.h"
#include "kernels/quants.h"

#define COLD_BYTES (192u << 20) // cycle weights over at least this much memory: well past any L3

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

// CPU time of the process: with a one-thread pool (which runs inline) the time the kernels themselves took.
static double cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t rng = 0x853c49e6748fea9bull;
static uint64_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

// ---- memory floors ----------------------------------------------------------------------------------

typedef struct {
    const uint8_t *src;
    uint8_t *dst;
    size_t bytes;
    volatile uint64_t sink[64];
} bw_job;

static void memcpy_task(void *ctx, int ith, int nth) {
    bw_job *j = ctx;
    long b, e;
    aero_pool_split((long)(j->bytes / 4096), ith, nth, &b, &e);
    memcpy(j->dst + (size_t)b * 4096, j->src + (size_t)b * 4096, (size_t)(e - b) * 4096);
}

// Sums 64-bit words with 4 independent chains: enough loads in flight to saturate DRAM.
__attribute__((target("avx2"))) static uint64_t read_avx2(const uint8_t *p, size_t n) {
    typedef long long v4 __attribute__((vector_size(32)));
    v4 s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
    for (size_t i = 0; i + 128 <= n; i += 128) {
        v4 a, b, c, d;
        memcpy(&a, p + i, 32), memcpy(&b, p + i + 32, 32), memcpy(&c, p + i + 64, 32), memcpy(&d, p + i + 96, 32);
        s0 += a, s1 += b, s2 += c, s3 += d;
    }
    v4 s = s0 + s1 + s2 + s3;
    return (uint64_t)(s[0] + s[1] + s[2] + s[3]);
}

static uint64_t read_plain(const uint8_t *p, size_t n) {
    uint64_t s0 = 0, s1 = 0;
    for (size_t i = 0; i + 16 <= n; i += 16) {
        uint64_t a, b;
        memcpy(&a, p + i, 8), memcpy(&b, p + i + 8, 8);
        s0 += a, s1 += b;
    }
    return s0 + s1;
}

static void read_task(void *ctx, int ith, int nth) {
    bw_job *j = ctx;
    long b, e;
    aero_pool_split((long)(j->bytes / 4096), ith, nth, &b, &e);
    const uint8_t *p = j->src + (size_t)b * 4096;
    size_t n = (size_t)(e - b) * 4096;
    j->sink[ith & 63] = aero_isa_available(AERO_ISA_AVX2) ? read_avx2(p, n) : read_plain(p, n);
}

// Best of several passes (least disturbed by other processes), in GB/s.
static double measure_bw(aero_pool *pool, bw_job *j, bool copy) {
    double best = 0.0;
    for (int rep = 0; rep < 5; rep++) {
        double t = now_s();
        aero_pool_run(pool, copy ? memcpy_task : read_task, j);
        t = now_s() - t;
        double gbs = (copy ? 2.0 : 1.0) * (double)j->bytes / t / 1e9;
        if (gbs > best) best = gbs;
    }
    return best;
}

// ---- weights ------------------------------------------------------------------------------------------

// Random weights of type t: random code bytes with every scale field set to a finite half, and f16/bf16
// elements in [-1, 1). Much faster than quantizing, and the kernels do the same work either way.
static void fill_weights(aero_dtype t, uint8_t *p, size_t bytes) {
    for (size_t i = 0; i + 8 <= bytes; i += 8) {
        uint64_t r = rnd();
        memcpy(p + i, &r, 8);
    }
    const aero_dtype_info *info = aero_dtype_get(t);
    size_t bb = info->block_bytes;
    for (size_t b = 0; b + bb <= bytes; b += bb) {
        uint16_t h = aero_f32_to_f16(((float)(rnd() % 1000) + 1.0f) * 1e-5f);
        switch (t) {
        case AERO_DT_F16:
            memcpy(p + b, &(uint16_t){aero_f32_to_f16((float)((int)(rnd() % 2001) - 1000) * 1e-3f)}, 2);
            break;
        case AERO_DT_BF16:
            memcpy(p + b, &(uint16_t){aero_f32_to_bf16((float)((int)(rnd() % 2001) - 1000) * 1e-3f)}, 2);
            break;
        case AERO_DT_Q4_0:
        case AERO_DT_Q8_0:
        case AERO_DT_Q5_0: memcpy(p + b, &h, 2); break;
        case AERO_DT_Q4_K:
        case AERO_DT_Q5_K:
        case AERO_DT_Q4_1:
        case AERO_DT_Q5_1: memcpy(p + b, &h, 2), memcpy(p + b + 2, &h, 2); break;
        case AERO_DT_Q6_K: memcpy(p + b + 208, &h, 2); break;
        case AERO_DT_Q3_K: memcpy(p + b + 108, &h, 2); break;
        case AERO_DT_Q2_K: memcpy(p + b + 80, &h, 2), memcpy(p + b + 82, &h, 2); break;
        default: break;
        }
    }
}

typedef struct {
    uint8_t *mem;
    int copies;
    aero_wmat w[64];
    size_t bytes; // of one copy
} wset;

static bool wset_make(wset *s, aero_dtype t, int64_t rows, int64_t cols, size_t cold) {
    size_t rb = aero_dtype_row_bytes(t, (uint64_t)cols);
    s->bytes = rb * (size_t)rows;
    s->copies = (int)((cold + s->bytes - 1) / s->bytes);
    if (s->copies < 1) s->copies = 1;
    if (s->copies > 64) s->copies = 64;
    s->mem = aligned_alloc(64, (s->bytes * (size_t)s->copies + 63) & ~(size_t)63);
    if (!s->mem) return false;
    fill_weights(t, s->mem, s->bytes * (size_t)s->copies);
    for (int c = 0; c < s->copies; c++)
        s->w[c] =
            (aero_wmat){.data = s->mem + (size_t)c * s->bytes, .type = t, .cols = cols, .rows = rows, .row_bytes = rb};
    return true;
}

// Seconds per matmul of n tokens (best of passes over the copies, at least `secs` in total).
static double time_matmul(aero_pool *pool, wset *s, const float *x, int n, float *y, double secs) {
    double best = 1e30, start = now_s();
    int passes = 0;
    aero_matmul(pool, &s->w[0], x, n, y); // warm-up (scratch, workers)
    while (passes < 3 || now_s() - start < secs) {
        double t = now_s();
        for (int c = 0; c < s->copies; c++) aero_matmul(pool, &s->w[c], x, n, y);
        t = (now_s() - t) / s->copies;
        if (t < best) best = t;
        passes++;
    }
    return best;
}

// The load average, so a reader can tell a quiet run from one that shared the CPUs.
static const char *loadavg(void) {
    static char buf[128];
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f || !fgets(buf, sizeof buf, f)) snprintf(buf, sizeof buf, "unknown\n");
    if (f) fclose(f);
    return buf;
}

int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 0.25;
    bool batch_only = argc > 2 && !strcmp(argv[2], "batch");
    if (!(secs > 0.0)) secs = 0.25;
    aero_kernels_init();
    aero_pool *pools[2] = {aero_pool_new(1), aero_pool_new(2)};
    if (!pools[0] || !pools[1]) {
        fprintf(stderr, "bench_matmul: cannot start threads\n");
        return 1;
    }
    printf("bench_matmul: ISA %s, %d CPUs, load average %s", aero_isa_name(aero_kernels_isa()), aero_cpu_count(),
           loadavg());

    // Floors, measured now on the same machine.
    bw_job bj = {.bytes = 256u << 20};
    uint8_t *src = aligned_alloc(64, bj.bytes), *dst = aligned_alloc(64, bj.bytes);
    if (!src || !dst) return 1;
    memset(src, 1, bj.bytes), memset(dst, 2, bj.bytes);
    bj.src = src, bj.dst = dst;
    double rd[2], cp[2];
    for (int p = 0; p < 2; p++) rd[p] = measure_bw(pools[p], &bj, false), cp[p] = measure_bw(pools[p], &bj, true);
    free(dst);
    free(src);
    printf(
        "floor: read bandwidth %.1f GB/s (1 thread), %.1f GB/s (2 threads); memcpy %.1f / %.1f GB/s counting read+write\n",
        rd[0], rd[1], cp[0], cp[1]);

    static const aero_dtype types[] = {AERO_DT_F16,  AERO_DT_Q8_0, AERO_DT_Q4_0, AERO_DT_Q4_K,
                                       AERO_DT_Q5_K, AERO_DT_Q6_K, AERO_DT_Q3_K, AERO_DT_Q2_K};
    static const int64_t shapes[][2] = {{4096, 4096}, {14336, 4096}};
    const int64_t cols = 4096;
    float *x = malloc(sizeof(float) * 64 * cols), *y = malloc(sizeof(float) * 64 * 14336);
    for (int64_t i = 0; i < 64 * cols; i++) x[i] = (float)((int)(rnd() % 2001) - 1000) * 1e-3f;

    if (batch_only) goto batched;
    printf("\nmatrix-vector (n=1), weights from DRAM; ratio = weight GB/s / floor of the same thread count\n");
    printf("%-5s %-11s %7s | %9s %9s %6s %6s | %9s %9s %6s %6s\n", "type", "shape", "MB", "1T us", "1T GB/s", "/read",
           "/mcpy", "2T us", "2T GB/s", "/read", "/mcpy");
    for (size_t s = 0; s < 2; s++) {
        for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
            wset ws;
            if (!wset_make(&ws, types[k], shapes[s][0], shapes[s][1], COLD_BYTES)) return 1;
            double t1 = time_matmul(pools[0], &ws, x, 1, y, secs), t2 = time_matmul(pools[1], &ws, x, 1, y, secs);
            double g1 = (double)ws.bytes / t1 / 1e9, g2 = (double)ws.bytes / t2 / 1e9;
            char shape[32];
            snprintf(shape, sizeof shape, "%lldx%lld", (long long)shapes[s][0], (long long)shapes[s][1]);
            printf("%-5s %-11s %7.1f | %9.0f %9.1f %6.2f %6.2f | %9.0f %9.1f %6.2f %6.2f\n", aero_dtype_name(types[k]),
                   shape, (double)ws.bytes / 1e6, t1 * 1e6, g1, g1 / rd[0], g1 / cp[0], t2 * 1e6, g2, g2 / rd[1],
                   g2 / cp[1]);
            free(ws.mem);
        }
    }

    // Compute speed with the weights in L2 (one 256-row slice, reused): the kernel's own ceiling.
    printf("\nkernel ceiling: 256x4096 slice resident in cache, 1 thread\n");
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        wset ws;
        if (!wset_make(&ws, types[k], 256, cols, 0)) return 1;
        double t = time_matmul(pools[0], &ws, x, 1, y, secs / 2);
        printf("%-5s %9.1f GB/s of weights\n", aero_dtype_name(types[k]), (double)ws.bytes / t / 1e9);
        free(ws.mem);
    }

    // Batches: one pass over the weights serves n tokens.
    printf("\nbatched (weights reused from cache for every token), 4096x4096, 2 threads\n");
    printf("%-5s %12s %12s %12s %10s\n", "type", "n=1 tok/s", "n=16 tok/s", "n=64 tok/s", "64 vs 1");
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        wset ws;
        if (!wset_make(&ws, types[k], 4096, cols, COLD_BYTES / 2)) return 1;
        double r1 = 1.0 / time_matmul(pools[1], &ws, x, 1, y, secs / 2);
        double r16 = 16.0 / time_matmul(pools[1], &ws, x, 16, y, secs / 2);
        double r64 = 64.0 / time_matmul(pools[1], &ws, x, 64, y, secs / 2);
        printf("%-5s %12.0f %12.0f %12.0f %9.1fx\n", aero_dtype_name(types[k]), r1, r16, r64, r64 / r1);
        free(ws.mem);
    }
batched:;
    // Row-lane tiles: 8 weight rows x 4 tokens per call (mm_tile8: rows in the vector lanes, each weight block
    // unpacked once for the 4 tokens) against 32 one-row dots, 1 thread, a 256-row slice in cache: the compute
    // side of prefill and verification. Same bits either way (test_matmul).
    const aero_kernel_ops *ops = aero_kernels_selected();
    printf("\nrow-lane tiles (%s): 4 tokens x 256x4096 in cache, 1 thread; tokens x rows per second\n", ops->name);
    printf("%-5s %12s %12s %8s\n", "type", "1-row dot", "8x4 tile", "gain");
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        aero_dtype t = types[k], vt = aero_vec_dot_type(t);
        if (!ops->mm_tile8[t] || vt == AERO_DT_F32) continue;
        wset ws;
        if (!wset_make(&ws, t, 256, cols, 0)) return 1;
        size_t ab = ops->act_bytes ? ops->act_bytes(t, cols) : 0;
        bool prep = ab > 0;
        if (!prep) ab = aero_dtype_row_bytes(vt, (uint64_t)cols);
        uint8_t *act = aligned_alloc(64, (4 * ab + 63) & ~(size_t)63);
        const void *a[4];
        for (int i = 0; i < 4; i++) {
            a[i] = act + (size_t)i * ab;
            if (prep) ops->act_quantize(t, x + i * cols, act + (size_t)i * ab, cols);
            else aero_quantize_row(vt, x + i * cols, act + (size_t)i * ab, cols);
        }
        double best1 = 1e30, best4 = 1e30;
        volatile float sink = 0;
        const size_t rb = ws.w[0].row_bytes;
        for (int rep = 0; rep < 5; rep++) {
            double t0 = now_s();
            for (int64_t r = 0; r < 256; r++)
                for (int i = 0; i < 4; i++) sink += ops->mm_dot[t](cols, (const uint8_t *)ws.w[0].data + r * rb, a[i]);
            double t1 = now_s() - t0;
            t0 = now_s();
            float out[32];
            for (int64_t r = 0; r < 256; r += 8) {
                ops->mm_tile8[t](cols, (const uint8_t *)ws.w[0].data + r * rb, rb, 8, a, 4, out);
                sink += out[0];
            }
            double t4 = now_s() - t0;
            if (t1 < best1) best1 = t1;
            if (t4 < best4) best4 = t4;
        }
        printf("%-5s %12.3g %12.3g %7.2fx\n", aero_dtype_name(t), 1024 / best1, 1024 / best4, best1 / best4);
        free(act);
        free(ws.mem);
    }

    // Packed tiles (8 rows unpacked once, then groups of 4 tokens) against the row-lane tiles (8 rows x 8
    // tokens) over 64 tokens, 1 thread, a 256-row slice in cache, thread CPU time: prefill's kernel. Same bits.
    printf("\npacked tiles (%s): 64 tokens x 256x4096 in cache, 1 thread, CPU time; GMAC/s\n", ops->name);
    printf("%-5s %12s %12s %8s\n", "type", "8x8 tile", "packed", "gain");
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        aero_dtype t = types[k], vt = aero_vec_dot_type(t);
        if (!ops->mm_tile8[t] || !ops->mm_packed[t]) continue;
        enum { NT = 64, ROWS = 256 };
        wset ws;
        if (!wset_make(&ws, t, ROWS, cols, 0)) return 1;
        size_t ab = ops->act_bytes ? ops->act_bytes(t, cols) : 0;
        bool prep = ab > 0;
        if (!prep) ab = aero_dtype_row_bytes(vt, (uint64_t)cols);
        ab = (ab + 63) & ~(size_t)63;
        float *xs = malloc(sizeof(float) * NT * (size_t)cols);
        uint8_t *act = aligned_alloc(64, NT * ab), *pk = aligned_alloc(64, (ops->pack_bytes[t](cols) + 63) & ~(size_t)63);
        for (int i = 0; i < NT; i++) {
            memcpy(xs + (size_t)i * cols, x + (size_t)(i % 4) * cols, sizeof(float) * cols);
            xs[(size_t)i * cols + i] += 0.5f; // distinct tokens
            if (prep) ops->act_quantize(t, xs + (size_t)i * cols, act + (size_t)i * ab, cols);
            else aero_quantize_row(vt, xs + (size_t)i * cols, act + (size_t)i * ab, cols);
        }
        double b8 = 1e30, bp = 1e30;
        volatile float sink = 0;
        const size_t rb = ws.w[0].row_bytes;
        const uint8_t *wd = ws.w[0].data;
        for (int rep = 0; rep < 5; rep++) {
            float out[64];
            const void *a[8];
            double t0 = cpu_s();
            for (int r = 0; r < ROWS; r += 8)
                for (int tk = 0; tk < NT; tk += 8) {
                    for (int q = 0; q < 8; q++) a[q] = act + (size_t)(tk + q) * ab;
                    ops->mm_tile8[t](cols, wd + (size_t)r * rb, rb, 8, a, 8, out);
                    sink += out[3];
                }
            double t1 = cpu_s();
            for (int r = 0; r < ROWS; r += 8) {
                ops->mm_pack8[t](cols, wd + (size_t)r * rb, rb, 8, pk);
                for (int tk = 0; tk < NT; tk += 4) {
                    for (int q = 0; q < 4; q++) a[q] = act + (size_t)(tk + q) * ab;
                    ops->mm_packed[t](cols, pk, a, 4, out);
                    sink += out[3];
                }
            }
            double t2 = cpu_s();
            if (t1 - t0 < b8) b8 = t1 - t0;
            if (t2 - t1 < bp) bp = t2 - t1;
        }
        double macs = (double)ROWS * NT * (double)cols;
        printf("%-5s %12.1f %12.1f %7.2fx\n", aero_dtype_name(t), macs / b8 / 1e9, macs / bp / 1e9, b8 / bp);
        free(xs), free(act), free(pk), free(ws.mem);
    }

    // Prefill on one thread (weights from cache, 1024x4096, 64 tokens) and the one-token product from cache
    // (256x4096): process CPU time, which neighbours on a shared machine disturb less than wall time.
    printf("\none thread, CPU time: n=64 on 1024x4096 (tokens x rows per us) and n=1 on 256x4096 (GB/s of weights)\n");
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        wset ws;
        if (!wset_make(&ws, types[k], 1024, cols, 0)) return 1;
        aero_wmat w1 = ws.w[0];
        w1.rows = 256;
        double best64 = 1e30, best1 = 1e30;
        for (int rep = 0; rep < 5; rep++) {
            double t0 = cpu_s();
            aero_matmul(pools[0], &ws.w[0], x, 64, y);
            double t1 = cpu_s();
            for (int i = 0; i < 16; i++) aero_matmul(pools[0], &w1, x, 1, y);
            double t2 = cpu_s();
            if (t1 - t0 < best64) best64 = t1 - t0;
            if ((t2 - t1) / 16 < best1) best1 = (t2 - t1) / 16;
        }
        printf("%-5s n=64 %8.1f tok*rows/us   n=1 %6.1f GB/s\n", aero_dtype_name(types[k]), 64.0 * 1024 / best64 / 1e6,
               (double)w1.rows * (double)w1.row_bytes / best1 / 1e9);
        free(ws.mem);
    }

    // q/k/v of a Llama-3-8B layer (4096 -> 4096, 1024, 1024) on 16 tokens: one shared quantization and pool
    // start (aero_matmul_many) against three aero_matmul calls; 2 threads, weights cycled from DRAM.
    printf("\nq/k/v on 16 tokens, 2 threads: aero_matmul_many vs 3 x aero_matmul (ms per layer)\n");
    static const aero_dtype qkv_types[] = {AERO_DT_Q4_0, AERO_DT_Q8_0, AERO_DT_Q4_K};
    for (size_t k = 0; k < sizeof qkv_types / sizeof qkv_types[0]; k++) {
        wset q, kk, v;
        aero_dtype t = qkv_types[k];
        if (!wset_make(&q, t, 4096, cols, COLD_BYTES / 4) || !wset_make(&kk, t, 1024, cols, 0) ||
            !wset_make(&v, t, 1024, cols, 0))
            return 1;
        float *yq = malloc(sizeof(float) * 16 * 4096), *yk = malloc(sizeof(float) * 16 * 1024),
              *yv = malloc(sizeof(float) * 16 * 1024);
        double sep = 1e30, many = 1e30;
        for (int rep = 0; rep < 5; rep++) {
            double t0 = now_s();
            for (int c = 0; c < q.copies; c++) {
                aero_matmul(pools[1], &q.w[c], x, 16, yq);
                aero_matmul(pools[1], &kk.w[0], x, 16, yk);
                aero_matmul(pools[1], &v.w[0], x, 16, yv);
            }
            double ts = (now_s() - t0) / q.copies;
            t0 = now_s();
            for (int c = 0; c < q.copies; c++)
                aero_matmul_many(pools[1], (const aero_wmat *[]){&q.w[c], &kk.w[0], &v.w[0]}, 3, x, 16,
                                 (float *[]){yq, yk, yv});
            double tm = (now_s() - t0) / q.copies;
            if (ts < sep) sep = ts;
            if (tm < many) many = tm;
        }
        printf("%-5s separate %8.3f  shared %8.3f  gain %.2fx\n", aero_dtype_name(t), sep * 1e3, many * 1e3,
               sep / many);
        free(yq), free(yk), free(yv), free(q.mem), free(kk.mem), free(v.mem);
    }
    printf("load average at the end: %s", loadavg());
    free(x), free(y);
    aero_pool_free(pools[0]);
    aero_pool_free(pools[1]);
    return 0;
}
