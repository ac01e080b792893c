// GPU benchmarks, each printed against its floor measured in the same run: HBM read bandwidth (a plain
// streaming-read kernel), pinned and pageable host->device copy bandwidth, the decode matvec of every type as
// a fraction of HBM bandwidth (weights larger than L2), 8B-shape layer matrices, the batched matmul cost
// curve c(k) = t(k) / t(1), copy/compute overlap of the slot pipeline, and attention at long context (both
// kernels), and the on-device argmax of logits rows. `--quick`: fewer batch sizes; `--attention`: the floors and
// the attention (and the argmax) only.
// No GPU: prints "skipped: no CUDA device" and exits 77.
#include <cuda_runtime.h>
#include <math.h>

#include "cuda_test_util.h"

static aero_error err;
#define OK(call)                                                                                               \
    do {                                                                                                       \
        if ((call) != AERO_OK) {                                                                               \
            printf("FATAL %s:%d: %s: %s\n", __FILE__, __LINE__, #call, err.msg);                               \
            exit(1);                                                                                           \
        }                                                                                                      \
    } while (0)
#define CK(call)                                                                                               \
    do {                                                                                                       \
        cudaError_t e_ = (call);                                                                               \
        if (e_ != cudaSuccess) {                                                                               \
            printf("FATAL %s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e_));                           \
            exit(1);                                                                                           \
        }                                                                                                      \
    } while (0)

static aero_cuda *cu;
static aero_cuda_event *ev0, *ev1;

// Reads every byte once (float4 loads, grid-stride), so the time is the HBM read floor.
__global__ void k_read(const float4 *p, size_t n4, float *sink) {
    float4 acc = make_float4(0, 0, 0, 0);
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += (size_t)gridDim.x * blockDim.x) {
        float4 v = __ldg(p + i);
        acc.x += v.x, acc.y += v.y, acc.z += v.z, acc.w += v.w;
    }
    if (acc.x + acc.y + acc.z + acc.w == 12345.678f) *sink = acc.x;
}

static void *dalloc(size_t bytes) {
    void *p;
    OK(aero_cuda_alloc(cu, bytes, &p, &err));
    return p;
}

// Milliseconds per call of fn over `iters` calls on the compute stream, best of `reps` runs.
template <typename F> static double time_ms(int reps, int iters, F fn) {
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        OK(aero_cuda_record(cu, AERO_CUDA_STREAM_COMPUTE, ev0, &err));
        for (int i = 0; i < iters; i++) fn(i);
        OK(aero_cuda_record(cu, AERO_CUDA_STREAM_COMPUTE, ev1, &err));
        OK(aero_cuda_sync(cu, &err));
        double ms = aero_cuda_event_ms(ev0, ev1) / iters;
        if (ms < best) best = ms;
    }
    return best;
}

static cudaStream_t compute_stream(void) {
    // the backend's compute stream is internal; record-to-record timing on a kernel launched on the legacy
    // stream would not be ordered with it, so benchmark kernels go through a stream we make and sync it
    static cudaStream_t s;
    if (!s) CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    return s;
}

int main(int argc, char **argv) {
    ct_require_gpu();
    bool quick = argc > 1 && !strcmp(argv[1], "--quick");
    bool attn_only = argc > 1 && !strcmp(argv[1], "--attention"); // the floors and the attention only
    aero_cuda_info info;
    OK(aero_cuda_device_info(0, &info, &err));
    printf("device: %s (sm_%d%d, %d SMs), %.1f GiB free; bus-width x clock figure %.0f GB/s\n", info.name,
           info.cc_major, info.cc_minor, info.n_sm, info.free_vram / 1073741824.0, info.mem_bus_gbs);
    OK(aero_cuda_init(&cu, 0, (size_t)24 << 30, &err));
    OK(aero_cuda_event_new(cu, &ev0, &err));
    OK(aero_cuda_event_new(cu, &ev1, &err));
    uint64_t rng = 12345;

    // ---- floors -------------------------------------------------------------------------------------------
    size_t hbm_bytes = (size_t)2 << 30;
    float *big = (float *)dalloc(hbm_bytes), *sink = (float *)dalloc(256);
    OK(aero_cuda_memset0(cu, big, hbm_bytes, &err));
    OK(aero_cuda_sync(cu, &err));
    cudaStream_t s = compute_stream();
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        CK(cudaEventRecord(a, s));
        k_read<<<info.n_sm * 8, 512, 0, s>>>((const float4 *)big, hbm_bytes / 16, sink);
        CK(cudaEventRecord(b, s));
        CK(cudaEventSynchronize(b));
        float ms;
        CK(cudaEventElapsedTime(&ms, a, b));
        if (ms < best) best = ms;
    }
    double hbm = hbm_bytes / (best * 1e-3) / 1e9;
    best = 1e30;
    for (int r = 0; r < 3; r++) {
        CK(cudaEventRecord(a, s));
        CK(cudaMemcpyAsync(big, (char *)big + hbm_bytes / 2, hbm_bytes / 2, cudaMemcpyDeviceToDevice, s));
        CK(cudaEventRecord(b, s));
        CK(cudaEventSynchronize(b));
        float ms;
        CK(cudaEventElapsedTime(&ms, a, b));
        if (ms < best) best = ms;
    }
    double d2d = hbm_bytes / (best * 1e-3) / 1e9; // read + write of half the buffer each
    printf("floor  HBM read (streaming kernel, 2 GiB): %.0f GB/s; device-to-device copy (read+write): %.0f GB/s\n", hbm, d2d);

    size_t h2d_bytes = (size_t)1 << 30;
    void *pinned;
    OK(aero_cuda_host_alloc(h2d_bytes, &pinned, &err));
    memset(pinned, 1, h2d_bytes);
    best = 1e30;
    for (int r = 0; r < 3; r++) {
        OK(aero_cuda_record(cu, AERO_CUDA_STREAM_COPY, ev0, &err));
        OK(aero_cuda_copy_h2d_async(cu, AERO_CUDA_STREAM_COPY, big, pinned, h2d_bytes, &err));
        OK(aero_cuda_record(cu, AERO_CUDA_STREAM_COPY, ev1, &err));
        OK(aero_cuda_sync(cu, &err));
        double ms = aero_cuda_event_ms(ev0, ev1);
        if (ms < best) best = ms;
    }
    double pcie = h2d_bytes / (best * 1e-3) / 1e9;
    size_t pg_bytes = (size_t)256 << 20;
    char *pageable = (char *)malloc(pg_bytes);
    memset(pageable, 1, pg_bytes);
    best = 1e30;
    for (int r = 0; r < 3; r++) {
        OK(aero_cuda_record(cu, AERO_CUDA_STREAM_COPY, ev0, &err));
        OK(aero_cuda_copy_h2d_async(cu, AERO_CUDA_STREAM_COPY, big, pageable, pg_bytes, &err));
        OK(aero_cuda_record(cu, AERO_CUDA_STREAM_COPY, ev1, &err));
        OK(aero_cuda_sync(cu, &err));
        double ms = aero_cuda_event_ms(ev0, ev1);
        if (ms < best) best = ms;
    }
    printf("floor  host->device: pinned %.1f GB/s (1 GiB), pageable %.1f GB/s (256 MiB)\n", pcie,
           pg_bytes / (best * 1e-3) / 1e9);
    free(pageable);
    aero_cuda_arena_reset(cu, 0);

    // ---- decode matvec per type ---------------------------------------------------------------------------
    static const aero_dtype types[] = {AERO_DT_F32,  AERO_DT_F16,  AERO_DT_BF16, AERO_DT_Q8_0,
                                       AERO_DT_Q4_0, AERO_DT_Q4_K, AERO_DT_Q5_K, AERO_DT_Q6_K};
    if (!attn_only) printf("\nmatvec (one token), 16384 x 8192 weights (larger than L2), GB/s of weights and fraction of HBM read %.0f GB/s\n", hbm);
    if (!attn_only) {
        // which kernels the quantized types take (AERO_CUDA_MM: default int8, f16, v1), so A/B runs say what they ran
        const char *mm = getenv("AERO_CUDA_MM");
        printf("  matmul path: %s (AERO_CUDA_MM=%s); R=1: the decode tile, R>=2: 2 tiles of 16 rows\n",
               aero_cuda_matmul_int8(AERO_DT_Q4_K) ? "int8 tensor cores for the quantized types, f16 for F16"
               : aero_cuda_matmul_f16(AERO_DT_Q4_K) ? "f16 tensor cores for F16 and the quantized types"
                                                    : "f32 kernels",
               mm ? mm : "unset");
        printf("  type  bytes      R=1            R=2            R=4            R=8\n");
    }
    int rows = 16384, cols = 8192;
    float *x = (float *)dalloc(sizeof(float) * 16384 * 512), *y = (float *)dalloc(sizeof(float) * rows * 512);
    {
        float *xh = (float *)malloc(sizeof(float) * 16384 * 512);
        for (size_t i = 0; i < (size_t)16384 * 512; i++) xh[i] = ct_unif(&rng);
        OK(aero_cuda_copy_h2d_async(cu, AERO_CUDA_STREAM_COMPUTE, x, xh, sizeof(float) * 16384 * 512, &err));
        OK(aero_cuda_sync(cu, &err));
        free(xh);
    }
    size_t after_xy = aero_cuda_arena_mark(cu);
    for (int k = 0; k < (attn_only ? 0 : 8); k++) {
        aero_dtype t = types[k];
        size_t rb;
        uint8_t *w = ct_random_weights(t, 64, cols, &rng, &rb); // 64 random rows, tiled (content does not matter)
        uint8_t *dw = (uint8_t *)dalloc(rb * rows);
        for (int r = 0; r < rows; r += 64) OK(aero_cuda_copy_h2d_async(cu, AERO_CUDA_STREAM_COMPUTE, dw + rb * r, w, rb * 64, &err));
        OK(aero_cuda_sync(cu, &err));
        aero_cuda_wmat W = {dw, t, cols, rows, rb};
        printf("  %-4s %6.0f MB", aero_dtype_name(t), rb * rows / 1e6);
        aero_cuda_act act;
        OK(aero_cuda_act_prepare(cu, x, 1, cols, &act, &err));
        for (int R = 1; R <= 8; R *= 2) {
            double ms = time_ms(3, 20, [&](int) { OK(aero_cuda_matmul_shape(cu, &W, &act, y, R, 1, &err)); });
            double gbs = rb * rows / (ms * 1e-3) / 1e9;
            printf("   %5.0f (%.2f)", gbs, gbs / hbm);
        }
        printf("\n");
        free(w);
        aero_cuda_arena_reset(cu, after_xy);
    }

    // ---- 8B-shape layer: the 7 matrices of a Llama-3-8B layer, Q4_K, cycled over 8 layers (> L2) ----------
    if (!attn_only) {
        struct { int rows, cols; } shp[] = {{4096, 4096}, {1024, 4096}, {1024, 4096}, {4096, 4096},
                                             {14336, 4096}, {14336, 4096}, {4096, 14336}};
        aero_dtype lt[] = {AERO_DT_Q4_K, AERO_DT_Q4_0, AERO_DT_Q8_0};
        for (int ti = 0; ti < 3; ti++) {
            aero_dtype t = lt[ti];
            const int L = 8;
            aero_cuda_wmat W[8][7];
            size_t layer_bytes = 0;
            for (int m = 0; m < 7; m++) {
                size_t rb = aero_dtype_row_bytes(t, shp[m].cols);
                uint8_t *w = ct_random_weights(t, 16, shp[m].cols, &rng, &rb);
                for (int l = 0; l < L; l++) {
                    uint8_t *dw = (uint8_t *)dalloc(rb * shp[m].rows);
                    for (int r = 0; r < shp[m].rows; r += 16)
                        OK(aero_cuda_copy_h2d_async(cu, AERO_CUDA_STREAM_COMPUTE, dw + rb * r, w, rb * 16, &err));
                    W[l][m] = aero_cuda_wmat{dw, t, shp[m].cols, shp[m].rows, rb};
                }
                layer_bytes += rb * shp[m].rows;
                free(w);
            }
            OK(aero_cuda_sync(cu, &err));
            aero_cuda_act a4096, a14336;
            for (int R = 1; R <= 8; R *= 2) {
                // activations prepared once per input, as the forward pass does (q/k/v, gate/up share theirs)
                double ms = time_ms(3, 4, [&](int) {
                    for (int l = 0; l < L; l++)
                        for (int m = 0; m < 7; m++) {
                            if (m == 0 || m == 3 || m == 4) OK(aero_cuda_act_prepare(cu, x, 1, 4096, &a4096, &err));
                            if (m == 6) OK(aero_cuda_act_prepare(cu, x, 1, 14336, &a14336, &err));
                            OK(aero_cuda_matmul_shape(cu, &W[l][m], m == 6 ? &a14336 : &a4096, y, R, 1, &err));
                        }
                });
                double gbs = layer_bytes * L / (ms * 1e-3) / 1e9;
                printf("8B-shape %s layers (7 matvecs each, %.0f MB/layer), R=%d: %.3f ms/layer, %.0f GB/s = %.2f of HBM\n",
                       aero_dtype_name(t), layer_bytes / 1e6, R, ms / L, gbs, gbs / hbm);
            }
            {
                // as the forward pass launches one token's layer: q/k/v and gate/up each in one launch (4 launches)
                double ms = time_ms(3, 4, [&](int) {
                    for (int l = 0; l < L; l++) {
                        const aero_cuda_wmat *qkv[3] = {&W[l][0], &W[l][1], &W[l][2]}, *gu[2] = {&W[l][4], &W[l][5]};
                        float *yq[3] = {y, y + 4096, y + 5120}, *yg[2] = {y, y + 14336};
                        OK(aero_cuda_act_prepare(cu, x, 1, 4096, &a4096, &err));
                        OK(aero_cuda_matmul_many(cu, qkv, yq, 3, &a4096, &err));
                        OK(aero_cuda_act_prepare(cu, x, 1, 4096, &a4096, &err));
                        OK(aero_cuda_matmul_act(cu, &W[l][3], &a4096, y, &err));
                        OK(aero_cuda_act_prepare(cu, x, 1, 4096, &a4096, &err));
                        OK(aero_cuda_matmul_many(cu, gu, yg, 2, &a4096, &err));
                        OK(aero_cuda_act_prepare(cu, x, 1, 14336, &a14336, &err));
                        OK(aero_cuda_matmul_act(cu, &W[l][6], &a14336, y, &err));
                    }
                });
                double gbs = layer_bytes * L / (ms * 1e-3) / 1e9;
                printf("8B-shape %s layers, one token as the forward pass launches it (q/k/v, gate/up one launch each): "
                       "%.3f ms/layer, %.0f GB/s = %.2f of HBM\n",
                       aero_dtype_name(t), ms / L, gbs, gbs / hbm);
            }
            // batched: the cost curve of verification / prefill on the same layers
            if (t == AERO_DT_Q4_K) {
                double t1 = 0;
                int ks[] = {1, 2, 4, 8, 16, 64, 32, 128, 512};
                for (int ki = 0; ki < (quick ? 6 : 9); ki++) {
                    int kk = ks[ki];
                    double ms = time_ms(2, 2, [&](int) {
                        for (int l = 0; l < L; l++)
                            for (int m = 0; m < 7; m++) {
                                if (m == 0 || m == 3 || m == 4) OK(aero_cuda_act_prepare(cu, x, kk, 4096, &a4096, &err));
                                if (m == 6) OK(aero_cuda_act_prepare(cu, x, kk, 14336, &a14336, &err));
                                OK(aero_cuda_matmul_act(cu, &W[l][m], m == 6 ? &a14336 : &a4096, y, &err));
                            }
                    });
                    ms /= L;
                    if (kk == 1) t1 = ms;
                    double flops = 2.0 * kk * (layer_bytes / 0.5625); // Q4_K: 4.5 bits per weight
                    printf("  batched k=%-3d %.3f ms/layer  c(k)=%.2f  %.1f TFLOP/s  %.0f tokens/s/layer-pass\n", kk, ms,
                           ms / t1, flops / (ms * 1e-3) / 1e12, kk / (ms * 1e-3));
                }
                // the other block shapes (rows x tokens) at k = 16 and 64: which one the dispatcher should take
                int shapes[][2] = {{4, 8}, {8, 8}, {2, 16}, {4, 16}, {1, 32}, {2, 32}};
                for (int kk : {16, 64})
                    for (auto &sh : shapes) {
                        double ms = time_ms(2, 2, [&](int) {
                            for (int l = 0; l < L; l++)
                                for (int m = 0; m < 7; m++) {
                                    if (m == 0 || m == 3 || m == 4) OK(aero_cuda_act_prepare(cu, x, kk, 4096, &a4096, &err));
                                    if (m == 6) OK(aero_cuda_act_prepare(cu, x, kk, 14336, &a14336, &err));
                                    OK(aero_cuda_matmul_shape(cu, &W[l][m], m == 6 ? &a14336 : &a4096, y, sh[0], sh[1], &err));
                                }
                        });
                        ms /= L;
                        double flops = 2.0 * kk * (layer_bytes / 0.5625);
                        printf("  shape %dx%-2d k=%-3d %.3f ms/layer  c(k)=%.2f  %.1f TFLOP/s\n", sh[0], sh[1], kk, ms,
                               ms / t1, flops / (ms * 1e-3) / 1e12);
                    }
            }
            aero_cuda_arena_reset(cu, after_xy);
        }
    }

    // ---- overlap: units streamed through 2 VRAM slots while the previous one computes ---------------------
    if (!attn_only) {
        int urows = 14336, ucols = 4096, U = 12;
        size_t rb = aero_dtype_row_bytes(AERO_DT_Q4_K, ucols), ub = rb * urows; // 33 MB, like one 8B FFN matrix
        uint8_t *host;
        OK(aero_cuda_host_alloc(ub * 2, (void **)&host, &err));
        uint8_t *w = ct_random_weights(AERO_DT_Q4_K, 16, ucols, &rng, &rb);
        for (int r = 0; r < urows * 2; r += 16) memcpy(host + rb * r, w, rb * 16);
        free(w);
        uint8_t *slot[2] = {(uint8_t *)dalloc(ub), (uint8_t *)dalloc(ub)};
        aero_cuda_event *copied[2], *used[2];
        for (int i = 0; i < 2; i++) {
            OK(aero_cuda_event_new(cu, &copied[i], &err));
            OK(aero_cuda_event_new(cu, &used[i], &err));
        }
        // compute per unit: enough matvec passes over the slot to take about as long as its copy
        int passes = 1;
        double t_copy = 0, t_comp = 0;
        {
            OK(aero_cuda_record(cu, AERO_CUDA_STREAM_COPY, ev0, &err));
            OK(aero_cuda_copy_h2d_async(cu, AERO_CUDA_STREAM_COPY, slot[0], host, ub, &err));
            OK(aero_cuda_record(cu, AERO_CUDA_STREAM_COPY, ev1, &err));
            OK(aero_cuda_sync(cu, &err));
            t_copy = aero_cuda_event_ms(ev0, ev1);
            aero_cuda_wmat W = {slot[0], AERO_DT_Q4_K, ucols, urows, rb};
            double one = time_ms(3, 5, [&](int) { OK(aero_cuda_matmul(cu, &W, x, 64, y, &err)); });
            passes = (int)fmax(1.0, round(t_copy / one));
            t_comp = one * passes;
        }
        OK(aero_cuda_record(cu, AERO_CUDA_STREAM_COMPUTE, ev0, &err));
        for (int u = 0; u < U; u++) {
            int sl = u % 2;
            if (u >= 2) OK(aero_cuda_wait(cu, AERO_CUDA_STREAM_COPY, used[sl], &err));
            OK(aero_cuda_copy_h2d_async(cu, AERO_CUDA_STREAM_COPY, slot[sl], host + ub * sl, ub, &err));
            OK(aero_cuda_record(cu, AERO_CUDA_STREAM_COPY, copied[sl], &err));
            OK(aero_cuda_wait(cu, AERO_CUDA_STREAM_COMPUTE, copied[sl], &err));
            aero_cuda_wmat W = {slot[sl], AERO_DT_Q4_K, ucols, urows, rb};
            for (int p = 0; p < passes; p++) OK(aero_cuda_matmul(cu, &W, x, 64, y, &err));
            OK(aero_cuda_record(cu, AERO_CUDA_STREAM_COMPUTE, used[sl], &err));
        }
        OK(aero_cuda_record(cu, AERO_CUDA_STREAM_COMPUTE, ev1, &err));
        OK(aero_cuda_sync(cu, &err));
        double total = aero_cuda_event_ms(ev0, ev1);
        double floor_ms = U * fmax(t_copy, t_comp) + fmin(t_copy, t_comp);
        printf("\noverlap: %d units of %.0f MB Q4_K through 2 VRAM slots: copy %.2f ms/unit (%.1f GB/s), compute %.2f ms/unit\n"
               "  total %.2f ms; serial would be %.2f ms; floor U*max+min %.2f ms; ratio to floor %.2f\n",
               U, ub / 1e6, t_copy, ub / (t_copy * 1e-3) / 1e9, t_comp, total, U * (t_copy + t_comp), floor_ms,
               total / floor_ms);
        for (int i = 0; i < 2; i++) aero_cuda_event_free(copied[i]), aero_cuda_event_free(used[i]);
        aero_cuda_host_free(host);
        aero_cuda_arena_reset(cu, after_xy);
    }

    // ---- attention: decode and a 64-token verification at long context, 8B shape (32/8 heads x 128) -----
    {
        int nh = 32, nkv = 8, hd = 128, n_ctx = 8192;
        size_t cache = (size_t)n_ctx * nkv * hd * 2;
        uint16_t *kc = (uint16_t *)dalloc(cache), *vc = (uint16_t *)dalloc(cache);
        OK(aero_cuda_memset0(cu, kc, cache, &err));
        OK(aero_cuda_memset0(cu, vc, cache, &err));
        aero_cuda_batch *bt;
        OK(aero_cuda_batch_new(cu, 64, 1, n_ctx, nh, hd, &bt, &err));
        float *q = (float *)dalloc(sizeof(float) * 64 * nh * hd), *o = (float *)dalloc(sizeof(float) * 64 * nh * hd);
        OK(aero_cuda_memset0(cu, q, sizeof(float) * 64 * nh * hd, &err));
        // v1 (one warp per token, head and segment) and v2 (a block per GQA group; goal: decode <= 0.015 ms at
        // 512 keys and <= 0.03 ms at 8000, k=64 <= 0.15 ms at 4096); v2's k=64 also with forced token tiles
        printf("\nattention, 32/8 heads x 128, F16 cache, per layer; floor: the KV bytes at HBM read %.0f GB/s\n", hbm);
        int ctxs[] = {512, 4096, 8000};
        const char *versions[] = {"v1", "v2"};
        for (int vi = 0; vi < 2; vi++) {
            setenv("AERO_CUDA_ATTN", versions[vi], 1);
            for (int ci = 0; ci < 3; ci++) {
                for (int kk = 1; kk <= 64; kk *= 64) {
                    int32_t pos[64], sl[64], base = ctxs[ci] - kk;
                    for (int i = 0; i < kk; i++) pos[i] = sl[i] = base + i;
                    OK(aero_cuda_batch_set(bt, kk, pos, NULL, sl, NULL, &base, &err));
                    const char *tiles[] = {NULL, "1", "4", "16"};
                    for (int ti = 0; ti < (vi == 1 && kk == 64 ? 4 : 1); ti++) {
                        if (tiles[ti]) setenv("AERO_CUDA_ATTN_TOKENS", tiles[ti], 1);
                        double ms =
                            time_ms(3, 20, [&](int) { OK(aero_cuda_attention(bt, q, kc, vc, nh, nkv, hd, o, &err)); });
                        unsetenv("AERO_CUDA_ATTN_TOKENS");
                        double kv_bytes = 2.0 * ctxs[ci] * nkv * hd * 2;
                        printf("attention %s ctx %-5d k=%-2d%s%-2s: %.4f ms per layer (KV %.1f MB: %.0f GB/s; floor %.4f ms)\n",
                               versions[vi], ctxs[ci], kk, tiles[ti] ? " tile " : "", tiles[ti] ? tiles[ti] : "", ms,
                               kv_bytes / 1e6, kv_bytes / (ms * 1e-3) / 1e9, kv_bytes / (hbm * 1e9) * 1e3);
                    }
                }
            }
        }
        unsetenv("AERO_CUDA_ATTN");
        aero_cuda_batch_free(bt);
    }
    // ---- on-device drafting: the argmax a draft head's chain runs after every drafted token -----------------
    {
        size_t mark = aero_cuda_arena_mark(cu);
        static const int vocabs[] = {8192, 128256};
        float *lg = (float *)dalloc(sizeof(float) * 8 * 128256);
        OK(aero_cuda_memset0(cu, lg, sizeof(float) * 8 * 128256, &err));
        int32_t *ids = (int32_t *)dalloc(4 * 8);
        float *pr = (float *)dalloc(4 * 8);
        printf("\nargmax of logits rows (aero_cuda_argmax: the pick and its probability; 2 reads of a row)\n");
        for (int v = 0; v < 2; v++)
            for (int rows = 1; rows <= 8; rows += 7) {
                double ms = time_ms(3, 50, [&](int) { OK(aero_cuda_argmax(cu, lg, rows, vocabs[v], ids, pr, &err)); });
                printf("argmax vocab %-6d rows %d: %.4f ms per call (%.0f GB/s of logits)\n", vocabs[v], rows, ms,
                       2.0 * rows * vocabs[v] * 4 / (ms * 1e-3) / 1e9);
            }
        aero_cuda_arena_reset(cu, mark);
    }
    aero_cuda_host_free(pinned);
    aero_cuda_free(cu);
    return 0;
}
