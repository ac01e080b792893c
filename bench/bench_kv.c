// Attention time per decoded token against a long cache, per KV cache type: one layer of an 8B-shape model
// (8 KV heads of 128, 4 query heads per KV head) at a 4096-token context, computed the way forward.c's attention
// worker does for a one-token block (the V head dequantized to f32, K dotted in its stored blocks or converted),
// on one thread. Types are timed in alternating rounds and the best round kept, so a busy machine slows all alike.
// Also prints KV bytes per token and the longest context a budget leaves room for. Usage: bench_kv [N_CTX [ROUNDS]]
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <aerollm.h>

#include "model/model_internal.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

enum { N_KV = 8, HD = 128, GROUP = 4, N_LAYER = 32 };

typedef struct {
    aero_kv_type type;
    aero_kv_cache kv;
    double best;
} bench_type;

// One token's attention over n cells of one layer: every KV head, GROUP query heads each.
static void one_token(aero_kv_cache *kv, int n, const float *q, float *kf, float *vf, int *rows, float *scores,
                      float *out, void *qq) {
    float scale = 1.0f / sqrtf((float)HD);
    bool kq = aero_kv_k_quantized(kv);
    for (int t = 0; t < n; t++) rows[t] = t;
    for (int h = 0; h < N_KV; h++) {
        if (!kq) aero_kv_head_f32(kv, false, 0, 0, h, n, kf);
        aero_kv_head_f32(kv, true, 0, 0, h, n, vf);
        const char *khead =
            (const char *)aero_kv_cell(kv, false, 0, 0, 0) + aero_dtype_row_bytes(kv->type_k, (uint64_t)h * HD);
        for (int g = 0; g < GROUP; g++) {
            const float *qh = q + (size_t)(h * GROUP + g) * HD;
            if (kq) aero_attention_kq(out, qh, kv->type_k, khead, kv->row_k, vf, rows, n, HD, scale, scores, qq, NULL);
            else aero_attention(out, qh, kf, vf, rows, n, HD, scale, scores);
        }
    }
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 4096, rounds = argc > 2 ? atoi(argv[2]) : 5;
    if (n < 1) n = 4096;
    aero_kernels_init();
    bench_type types[] = {{AERO_KV_F16},  {AERO_KV_Q8_0}, {AERO_KV_Q4_0}, {AERO_KV_F32},
                          {AERO_KV_BF16}, {AERO_KV_Q4_1}, {AERO_KV_Q5_0}, {AERO_KV_Q5_1}};
    int nt = (int)(sizeof types / sizeof types[0]);
    int kvd = N_KV * HD;
    float *row = malloc(sizeof(float) * kvd * 2), *q = malloc(sizeof(float) * N_KV * GROUP * HD);
    float *kf = malloc(sizeof(float) * n * HD), *vf = malloc(sizeof(float) * n * HD),
          *scores = malloc(sizeof(float) * n);
    float *out = malloc(sizeof(float) * HD);
    int *rows = malloc(sizeof(int) * n);
    void *qq = malloc(4096);
    uint64_t s = 0x1234567;
    for (int i = 0; i < N_KV * GROUP * HD; i++)
        q[i] = (float)((s = s * 6364136223846793005ull + 1) >> 40) / (1 << 24) - 0.5f;
    aero_error err = {0};
    for (int k = 0; k < nt; k++) {
        aero_dtype dt = aero_kv_type_dtype(types[k].type, false);
        if (aero_kv_cache_init(&types[k].kv, 1, 1, n, N_KV, HD, dt, dt, 0, 0, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        for (int t = 0; t < n; t++) {
            for (int i = 0; i < 2 * kvd; i++)
                row[i] = (float)((s = s * 6364136223846793005ull + 1) >> 40) / (1 << 23) - 1.0f;
            aero_kv_store(&types[k].kv, 0, 0, t, row, row + kvd);
        }
        types[k].best = INFINITY;
    }
    printf(
        "attention per token, one layer (8 KV heads x 128, 32 query heads), %d-token context, 1 thread, %s kernels\n",
        n, aero_isa_name(aero_kernels_isa()));
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < nt; k++) {
            int reps = 4;
            double t0 = now();
            for (int i = 0; i < reps; i++) one_token(&types[k].kv, n, q, kf, vf, rows, scores, out, qq);
            double dt = (now() - t0) / reps;
            if (dt < types[k].best) types[k].best = dt;
        }
    aero_hparams hp = {
        .n_layer = N_LAYER, .n_head = N_KV * GROUP, .n_head_kv = N_KV, .head_dim = HD, .n_ctx_train = 8192};
    printf("%-6s %12s %14s %16s %14s %22s\n", "type", "ms/layer", "ms/token (x32)", "vs f16", "KiB/token",
           "tokens in 1 GiB of KV");
    for (int k = 0; k < nt; k++) {
        aero_ctx_params cp = {.n_ctx = 1, .type_k = types[k].type, .type_v = types[k].type};
        uint64_t per_token = aero_kv_bytes(&hp, &cp);
        printf("%-6s %12.3f %14.2f %15.2fx %14.1f %22llu\n", aero_kv_type_name(types[k].type), types[k].best * 1e3,
               types[k].best * 1e3 * N_LAYER, types[k].best / types[0].best, per_token / 1024.0,
               (unsigned long long)((1ull << 30) / per_token));
        aero_kv_cache_free(&types[k].kv);
    }
    free(row), free(q), free(kf), free(vf), free(scores), free(out), free(rows), free(qq);
    return 0;
}
