// The quantized KV cache (-ctk/-ctv): for every cache type, one head's attention read from the cache (keys and
// values quantized as they are written, the query quantized for the key type's dot) against a double-precision
// attention over the exact vectors, within a stated bound per type; the bundled teacher's logits bitwise
// identical for a token alone, in a prompt batch, in a two-sequence batch and at another thread count, for every
// cache type; speculative greedy == plain greedy with q8_0 and q4_0 caches; q8_0 greedy text equal to F16's for
// 64 tokens; the budget arithmetic (aero_kv_bytes, aero_mem_split_plan) and the refusals (a head size that is
// not whole blocks, a --mem that cannot hold the cache), each naming the numbers.
#include <math.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include <aerollm.h>

#include "check.h"
#include "helpers.h"
#include "model/model_internal.h"

#define TEACHER "models/aero-teacher-34M-Q8_0.gguf"
#define DRAFTER "models/aero-drafter-3M-F16.gguf"
#define STORIES SHARED_DATA "/models/stories260K.gguf"

static const aero_kv_type all_types[] = {AERO_KV_F32,  AERO_KV_F16,  AERO_KV_BF16, AERO_KV_Q8_0,
                                         AERO_KV_Q4_0, AERO_KV_Q4_1, AERO_KV_Q5_0, AERO_KV_Q5_1};
#define N_TYPES ((int)(sizeof all_types / sizeof all_types[0]))

// Bound on the RMS of (out - exact) / rms(V) over a head's outputs, K and V both of the type, against attention in
// double over the exact f32 vectors. It is the values' own rounding (2^-11 relative for F16, 2^-8 for BF16; for the
// quants half a step of each 32-block's range, and one value in 64 here is an outlier 4x the others, as real keys
// have, so a block's step is set by it) carried through the softmax average, plus the score error of the rounded
// keys (and of the Q8_0 query for the quantized keys); a one-row or sharp attention passes a V row's rounding
// straight through. Set at ~2x the largest error seen over the cases below (measured: f16 4.0e-4, bf16 2.7e-3,
// q8_0 1.2e-2, q5_1 7.9e-2, q5_0 9.2e-2, q4_1 1.8e-1, q4_0 2.5e-1), so that a wrong block layout or scale fails
// while the rounding itself passes; KERNEL_BOUND below is the tight check of the arithmetic.
static double type_bound(aero_kv_type t) {
    switch (t) {
    case AERO_KV_F32: return 1e-6;
    case AERO_KV_F16: return 1e-3;
    case AERO_KV_BF16: return 6e-3;
    case AERO_KV_Q8_0: return 2.5e-2;
    case AERO_KV_Q5_0:
    case AERO_KV_Q5_1: return 2e-1;
    case AERO_KV_Q4_0:
    case AERO_KV_Q4_1: return 5e-1;
    default: return 0;
    }
}
// The kernels against attention in double over the very values they read (the dequantized cache, and the query
// as quantized for the key dot): only f32 rounding of the sums is left.
#define KERNEL_BOUND 2e-5

// Gaussian-ish (sum of uniforms) test values, with a few large ones as real keys have.
static float rnd(uint64_t *s) {
    double x = 0;
    for (int i = 0; i < 4; i++) x += test_xorshift_sym(s);
    if ((test_xorshift64(s) & 63) == 0) x *= 4;
    return (float)(x * 0.8);
}

// softmax(q . K * scale) . V in double over the exact vectors.
static void ref_attention(double *out, const float *q, const float *k, const float *v, int n, int hd, double scale) {
    double *sc = malloc(sizeof(double) * n), mx = -INFINITY, sum = 0;
    for (int t = 0; t < n; t++) {
        double d = 0;
        for (int j = 0; j < hd; j++) d += (double)q[j] * k[(size_t)t * hd + j];
        sc[t] = d * scale;
        if (sc[t] > mx) mx = sc[t];
    }
    for (int t = 0; t < n; t++) sum += sc[t] = exp(sc[t] - mx);
    for (int j = 0; j < hd; j++) out[j] = 0;
    for (int t = 0; t < n; t++)
        for (int j = 0; j < hd; j++) out[j] += sc[t] / sum * v[(size_t)t * hd + j];
    free(sc);
}

// One cache type: rows written through aero_kv_store, read back the way forward.c's attention reads them.
static void attention_error(aero_kv_type type, int hd, int n, int n_head_kv, uint64_t seed, double *kern,
                            double *quant) {
    aero_dtype dt = aero_kv_type_dtype(type, false);
    aero_kv_cache kv;
    aero_error err = {0};
    if (aero_kv_cache_init(&kv, 1, 2, n, n_head_kv, hd, dt, dt, 0, 0, &err)) {
        fprintf(stderr, "kv init: %s\n", err.msg);
        *kern = *quant = INFINITY;
        return;
    }
    int kvd = n_head_kv * hd;
    float *k = malloc(sizeof(float) * n * kvd), *v = malloc(sizeof(float) * n * kvd), *q = malloc(sizeof(float) * hd);
    float *kh = malloc(sizeof(float) * n * hd), *vh = malloc(sizeof(float) * n * hd);
    float *kf = malloc(sizeof(float) * n * hd), *vf = malloc(sizeof(float) * n * hd),
          *scores = malloc(sizeof(float) * n);
    float *out = malloc(sizeof(float) * hd);
    double *ref = malloc(sizeof(double) * hd), *ref_read = malloc(sizeof(double) * hd);
    float *kd = malloc(sizeof(float) * n * hd), *qd = malloc(sizeof(float) * hd);
    int *rows = malloc(sizeof(int) * n);
    void *qq = malloc(aero_attention_kq_scratch(dt, hd) + 64);
    uint64_t s = seed;
    for (int i = 0; i < n * kvd; i++) k[i] = rnd(&s), v[i] = rnd(&s);
    for (int j = 0; j < hd; j++) q[j] = rnd(&s) * 2; // sharp enough that a few keys dominate
    for (int t = 0; t < n; t++) aero_kv_store(&kv, 0, 1, t, k + (size_t)t * kvd, v + (size_t)t * kvd); // sequence 1
    *kern = *quant = 0;
    for (int h = 0; h < n_head_kv; h++) {
        for (int t = 0; t < n; t++) {
            memcpy(kh + (size_t)t * hd, k + (size_t)t * kvd + (size_t)h * hd, sizeof(float) * hd);
            memcpy(vh + (size_t)t * hd, v + (size_t)t * kvd + (size_t)h * hd, sizeof(float) * hd);
            rows[t] = t;
        }
        float scale = 1.0f / sqrtf((float)hd);
        ref_attention(ref, q, kh, vh, n, hd, scale);
        aero_kv_head_f32(&kv, true, 0, 1, h, n, vf);
        aero_kv_head_f32(&kv, false, 0, 1, h, n, kf); // what the K blocks hold, for the reference
        memcpy(qd, q, sizeof(float) * hd);
        if (aero_kv_k_quantized(&kv)) {
            const char *khead =
                (const char *)aero_kv_cell(&kv, false, 0, 1, 0) + aero_dtype_row_bytes(dt, (uint64_t)h * hd);
            aero_attention_kq(out, q, dt, khead, kv.row_k, vf, rows, n, hd, scale, scores, qq, NULL);
            aero_dequantize_row(aero_vec_dot_type(dt), qq, qd, hd); // the query the dot saw
        } else {
            aero_attention(out, q, kf, vf, rows, n, hd, scale, scores);
        }
        ref_attention(ref_read, qd, kf, vf, n, hd, scale);
        double rms = 0, e = 0, e2 = 0;
        for (int i = 0; i < n * hd; i++) rms += (double)vh[i] * vh[i];
        rms = sqrt(rms / (n * hd));
        for (int j = 0; j < hd; j++) {
            e = fmax(e, fabs(out[j] - ref_read[j]) / rms);
            e2 += (out[j] - ref[j]) * (out[j] - ref[j]);
        }
        *kern = fmax(*kern, e);
        *quant = fmax(*quant, sqrt(e2 / hd) / rms);
    }
    aero_kv_cache_free(&kv);
    free(k), free(v), free(q), free(kh), free(vh), free(kf), free(vf), free(scores), free(out), free(ref), free(rows);
    free(qq), free(ref_read), free(kd), free(qd);
}

static void test_attention_vs_double(void) {
    static const int hds[] = {32, 64, 128}, ns[] = {1, 7, 100, 333};
    for (int ti = 0; ti < N_TYPES; ti++) {
        double kern = 0, quant = 0, k1, q1;
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 4; b++)
                for (uint64_t seed = 1; seed <= 3; seed++) {
                    attention_error(all_types[ti], hds[a], ns[b], 2, seed * 7919 + a * 31 + b, &k1, &q1);
                    kern = fmax(kern, k1), quant = fmax(quant, q1);
                }
        const char *name = aero_kv_type_name(all_types[ti]);
        printf("attention %-5s kernel error %.2e (bound %.0e), rms error vs exact f32 %.2e (bound %.1e)\n", name, kern,
               KERNEL_BOUND, quant, type_bound(all_types[ti]));
        CHECKF(kern <= KERNEL_BOUND, "%s attention equals double attention over the values it reads: %.3e", name, kern);
        CHECKF(quant <= type_bound(all_types[ti]), "%s attention within its type's bound: %.3e <= %.1e", name, quant,
               type_bound(all_types[ti]));
    }
}

// Names, resolution of the default and the byte count against the allocation.
static void test_types_and_bytes(void) {
    CHECK(aero_kv_type_parse("q8_0") == AERO_KV_Q8_0 && aero_kv_type_parse("F16") == AERO_KV_F16);
    CHECK(aero_kv_type_parse("q4_k") == -1 && aero_kv_type_parse("default") == -1 && aero_kv_type_parse(NULL) == -1);
    CHECK(!strcmp(aero_kv_type_name(AERO_KV_Q5_1), "q5_1"));
    CHECK(aero_kv_type_dtype(AERO_KV_DEFAULT, false) == AERO_DT_F16 &&
          aero_kv_type_dtype(AERO_KV_DEFAULT, true) == AERO_DT_F32);
    CHECK(aero_kv_type_dtype(AERO_KV_Q4_0, true) == AERO_DT_Q4_0); // an explicit type wins over --kv-f32
    aero_hparams hp = {.n_layer = 32, .n_head = 32, .n_head_kv = 8, .head_dim = 128, .n_ctx_train = 8192};
    aero_ctx_params p = {.n_ctx = 0, .n_seq = 0};
    // Llama-3-8B shape: 32 layers x 8 KV heads x 128 x (K + V) = 128 KiB per token in F16, at most 4096 by default
    CHECK(aero_kv_bytes(&hp, &p) == 4096ull * 32 * 1024 * 2 * 2);
    p.type_k = p.type_v = AERO_KV_Q8_0, p.n_ctx = 1000, p.n_seq = 3;
    CHECK(aero_kv_bytes(&hp, &p) == 3ull * 1000 * 32 * (1024 / 32 * 34) * 2);
    p.type_k = AERO_KV_Q4_0, p.type_v = AERO_KV_F32;
    CHECK(aero_kv_bytes(&hp, &p) == 3ull * 1000 * 32 * (1024 / 32 * 18 + 4096));
    aero_error err = {0};
    p.kv_recent = 100, p.n_batch = 28; // F16 copies of the quantized K only: a ring of 100 + 28 cells
    CHECK(aero_kv_bytes(&hp, &p) == 3ull * 32 * (1000 * (1024 / 32 * 18 + 4096) + 128 * 1024 * 2));
    p.kv_recent = -1;
    CHECK(aero_kv_check(&hp, &p, &err) != AERO_OK);
    p.kv_recent = 0;
    hp.head_dim = 8; // stories260K's head: not one whole block
    CHECK(aero_kv_check(&hp, &p, &err) != AERO_OK && strstr(err.msg, "head size is 8") && strstr(err.msg, "32"));
    CHECK(aero_kv_bytes(&hp, &p) == 0);
}

// The KV cache of a real model, and the refusals with their numbers.
static void test_budget(void) {
    if (access(STORIES, R_OK) != 0) {
        printf("skipped the budget checks: %s not found\n", STORIES);
        return;
    }
    aero_model *m = test_load_model(STORIES, 1, 0);
    CHECK(m != NULL);
    if (!m) return;
    aero_error err = {0};
    aero_ctx *c = NULL;
    aero_ctx_params cp = {.n_ctx = 64, .type_k = AERO_KV_Q8_0};
    CHECK(aero_ctx_new(&c, m, &cp, &err) != AERO_OK);
    CHECKF(strstr(err.msg, "K cache type Q8_0") && strstr(err.msg, "head size is 8"), "refusal names the sizes: %s",
           err.msg);
    cp.type_k = AERO_KV_BF16, cp.type_v = AERO_KV_F32; // float types take any head size
    CHECK(aero_ctx_new(&c, m, &cp, &err) == AERO_OK);
    aero_ctx_free(c);
    aero_model_free(m);

    aero_model_params mp;
    aero_model_params_default(&mp);
    mp.path = TEACHER;
    aero_mem_split ms;
    aero_ctx_params tp = {.n_ctx = 512};
    CHECK(aero_mem_split_plan(&ms, &mp, &tp, 0, &err) == AERO_OK && ms.weight_budget == 0);
    CHECK(ms.kv_bytes == 8ull * 512 * 512 * 2 * 2 && ms.n_ctx == 512); // 8 layers, 512 KV dims, F16 K + V
    mp.mem_budget = 64ull << 20;
    CHECK(aero_mem_split_plan(&ms, &mp, &tp, 1000, &err) == AERO_OK);
    CHECK(ms.weight_budget == (64ull << 20) - ms.kv_bytes - 1000 && ms.min_mem > ms.kv_bytes);
    uint64_t min_f16 = ms.min_mem;
    tp.type_k = tp.type_v = AERO_KV_Q4_0; // a smaller cache lowers the minimum by the bytes it saves
    CHECK(aero_mem_split_plan(&ms, &mp, &tp, 1000, &err) == AERO_OK);
    CHECK(min_f16 - ms.min_mem == 8ull * 512 * 512 * 2 * 2 - 8ull * 512 * (512 / 32 * 18) * 2);
    mp.mem_budget = ms.min_mem - 1;
    CHECK(aero_mem_split_plan(&ms, &mp, &tp, 1000, &err) != AERO_OK);
    char want[64];
    snprintf(want, sizeof want, "(%llu bytes)", (unsigned long long)(mp.mem_budget + 1));
    CHECKF(strstr(err.msg, "below the minimum") && strstr(err.msg, want) && strstr(err.msg, "KV cache") &&
               strstr(err.msg, "512 tokens"),
           "refusal gives the minimum and the cache: %s", err.msg);
}

// Logits of every token of a prompt, computed in several batchings; each must equal the one-token-at-a-time run.
static void test_batch_invariance(aero_model *m1, aero_model *m2) {
    const aero_tokenizer *tok = aero_model_tokenizer(m1);
    const char *text = "Tom and Lily went to the park. Tom said that he saw a big dog";
    int32_t *ids = NULL;
    size_t n = 0;
    aero_error err = {0};
    CHECK(!aero_tokenize(tok, text, strlen(text), true, false, &ids, &n, &err) && n > 8);
    int nv = aero_model_hparams(m1)->n_vocab;
    float *one = malloc(sizeof(float) * nv * n), *got = malloc(sizeof(float) * nv * 2 * n);
    int32_t *pos = malloc(sizeof(int32_t) * 2 * n), *seq = malloc(sizeof(int32_t) * 2 * n),
            *tk = malloc(sizeof(int32_t) * 2 * n);
    for (int ti = 0; ti < N_TYPES + 2; ti++) { // then q4_0 and q5_1 with F16 copies of each query's last 4 positions
        aero_kv_type type = ti < N_TYPES ? all_types[ti] : ti == N_TYPES ? AERO_KV_Q4_0 : AERO_KV_Q5_1;
        aero_ctx_params cp = {
            .n_ctx = 64, .n_seq = 2, .type_k = type, .type_v = type, .n_batch = 5, .kv_recent = ti < N_TYPES ? 0 : 4};
        aero_ctx *c;
        CHECK(!aero_ctx_new(&c, m1, &cp, &err));
        for (size_t i = 0; i < n; i++) { // alone
            int32_t p = (int32_t)i;
            aero_batch b = {.n = 1, .tokens = &ids[i], .pos = &p};
            CHECK(!aero_decode(c, &b, one + i * nv, &err));
        }
        bool same_prompt = true, same_pair = true, same_threads = true;
        aero_kv_drop(c, 0);
        for (size_t i = 0; i < n; i++) pos[i] = (int32_t)i;
        aero_batch b = {.n = (int)n, .tokens = ids, .pos = pos}; // one prompt batch, in tiles of 5
        CHECK(!aero_decode(c, &b, got, &err));
        same_prompt = !memcmp(one, got, sizeof(float) * nv * n);
        aero_kv_drop(c, 0);
        // two sequences interleaved: the prompt in sequence 1, another text in sequence 0
        for (size_t i = 0; i < n; i++) {
            tk[2 * i] = ids[(i + 3) % n], pos[2 * i] = (int32_t)i, seq[2 * i] = 0;
            tk[2 * i + 1] = ids[i], pos[2 * i + 1] = (int32_t)i, seq[2 * i + 1] = 1;
        }
        aero_batch b2 = {.n = (int)(2 * n), .tokens = tk, .pos = pos, .seq = seq};
        CHECK(!aero_decode(c, &b2, got, &err));
        for (size_t i = 0; i < n; i++) same_pair &= !memcmp(one + i * nv, got + (2 * i + 1) * nv, sizeof(float) * nv);
        aero_ctx_free(c);
        // another thread count
        CHECK(!aero_ctx_new(&c, m2, &cp, &err));
        for (size_t i = 0; i < n; i++) pos[i] = (int32_t)i;
        aero_batch b3 = {.n = (int)n, .tokens = ids, .pos = pos};
        CHECK(!aero_decode(c, &b3, got, &err));
        same_threads = !memcmp(one, got, sizeof(float) * nv * n);
        aero_ctx_free(c);
        char name[32];
        snprintf(name, sizeof name, "%s%s", aero_kv_type_name(type), cp.kv_recent ? " --kv-recent 4" : "");
        CHECKF(same_prompt, "%s: prompt-batch logits == one token at a time", name);
        CHECKF(same_pair, "%s: two-sequence batch logits == one token at a time", name);
        CHECKF(same_threads, "%s: logits at another thread count identical", name);
    }
    free(one), free(got), free(pos), free(seq), free(tk), free(ids);
}

// --kv-recent covering the whole context reads every row from the F16 copies: the F16 cache's very logits.
static void test_recent_whole_context(aero_model *m) {
    const char *text = "Tom and Lily went to the park. Tom said that he saw a big dog";
    int32_t *ids = NULL, pos[64];
    size_t n = 0;
    aero_error err = {0};
    CHECK(!aero_tokenize(aero_model_tokenizer(m), text, strlen(text), true, false, &ids, &n, &err) && n < 64);
    int nv = aero_model_hparams(m)->n_vocab;
    float *a = malloc(sizeof(float) * nv * n), *b = malloc(sizeof(float) * nv * n);
    for (size_t i = 0; i < n; i++) pos[i] = (int32_t)i;
    aero_batch batch = {.n = (int)n, .tokens = ids, .pos = pos};
    aero_ctx_params pf = {.n_ctx = 64},
                    pq = {.n_ctx = 64, .type_k = AERO_KV_Q4_0, .type_v = AERO_KV_Q8_0, .kv_recent = 64};
    aero_ctx *cf, *cq;
    CHECK(!aero_ctx_new(&cf, m, &pf, &err) && !aero_ctx_new(&cq, m, &pq, &err));
    CHECK(!aero_decode(cf, &batch, a, &err) && !aero_decode(cq, &batch, b, &err));
    CHECK(!memcmp(a, b, sizeof(float) * nv * n));
    aero_ctx_free(cf);
    aero_ctx_free(cq);
    free(a), free(b), free(ids);
}

static aero_sampler *greedy_sampler(int n_vocab) {
    aero_sampler_params sp;
    aero_sampler_params_default(&sp);
    sp.temp = 0;
    return aero_sampler_new(&sp, n_vocab);
}

// Plain greedy decoding on aero_decode alone, with the given cache types.
static int plain(aero_model *m, aero_kv_type t, int recent, const int32_t *prompt, int np, int n, int32_t *out) {
    aero_ctx *c;
    aero_error err = {0};
    aero_ctx_params cp = {.n_ctx = 512, .type_k = t, .type_v = t, .kv_recent = recent};
    if (aero_ctx_new(&c, m, &cp, &err)) return -1;
    int nv = aero_model_hparams(m)->n_vocab;
    float *logits = malloc(sizeof(float) * nv * np);
    int32_t *pos = malloc(sizeof(int32_t) * np);
    for (int i = 0; i < np; i++) pos[i] = i;
    aero_sampler *s = greedy_sampler(nv);
    aero_batch b = {.n = np, .tokens = prompt, .pos = pos};
    int got = -1;
    if (aero_decode(c, &b, logits, &err)) goto done;
    const float *last = logits + (size_t)(np - 1) * nv;
    for (got = 0; got < n;) {
        int32_t t1 = aero_sampler_sample(s, last);
        aero_sampler_accept(s, t1);
        out[got++] = t1;
        int32_t p = np + got - 1;
        if (got >= n) break;
        aero_batch one = {.n = 1, .tokens = &t1, .pos = &p};
        if (aero_decode(c, &one, logits, &err)) break;
        last = logits;
    }
done:
    aero_sampler_free(s);
    free(pos);
    free(logits);
    aero_ctx_free(c);
    return got;
}

// Speculative greedy decoding (draft NULL: n-grams) with the target's cache of the given types.
static int spec(aero_model *m, aero_model *d, aero_kv_type t, int recent, int tree, const int32_t *prompt, int np,
                int n, int32_t *out) {
    aero_ctx *c;
    aero_error err = {0};
    aero_ctx_params cp = {.n_ctx = 512, .type_k = t, .type_v = t, .kv_recent = recent};
    if (aero_ctx_new(&c, m, &cp, &err)) return -1;
    aero_spec_params sp;
    aero_spec_params_default(&sp);
    sp.draft_max = 6;
    sp.tree_nodes = tree;
    sp.sampling.temp = 0;
    aero_spec *s = NULL;
    aero_sampler *smp = greedy_sampler(aero_model_hparams(m)->n_vocab);
    int got = -1;
    if (aero_spec_new(&s, c, 0, d, &sp, &err) || aero_spec_begin(s, prompt, np, n, &err)) {
        fprintf(stderr, "spec: %s\n", err.msg);
        goto done;
    }
    got = 0;
    int32_t buf[600];
    while (got < n) {
        int k = 0;
        if (aero_spec_step(s, smp, n - got, buf, &k, &err)) {
            fprintf(stderr, "step: %s\n", err.msg);
            got = -1;
            break;
        }
        memcpy(out + got, buf, sizeof(int32_t) * k);
        got += k;
    }
done:
    aero_sampler_free(smp);
    aero_spec_free(s);
    aero_ctx_free(c);
    return got;
}

// The F16-cache run's logit of token `want` minus that of `other` after the prompt and ref[0, k): how close
// a tie a quantized cache broke where its greedy text first differs.
static float f16_margin(aero_model *m, const int32_t *prompt, int np, const int32_t *ref, int k, int32_t want,
                        int32_t other) {
    aero_ctx *c;
    aero_error err = {0};
    aero_ctx_params cp = {.n_ctx = 512, .type_k = AERO_KV_F16, .type_v = AERO_KV_F16};
    if (aero_ctx_new(&c, m, &cp, &err)) return -1.0f;
    int n = np + k, nv = aero_model_hparams(m)->n_vocab;
    int32_t *toks = malloc(sizeof(int32_t) * n), *pos = malloc(sizeof(int32_t) * n);
    float *logits = malloc(sizeof(float) * (size_t)nv * n);
    memcpy(toks, prompt, sizeof(int32_t) * np);
    memcpy(toks + np, ref, sizeof(int32_t) * k);
    for (int i = 0; i < n; i++) pos[i] = i;
    aero_batch b = {.n = n, .tokens = toks, .pos = pos};
    float margin = -1.0f;
    if (!aero_decode(c, &b, logits, &err)) {
        const float *last = logits + (size_t)(n - 1) * nv;
        margin = last[want] - last[other];
    }
    free(toks), free(pos), free(logits);
    aero_ctx_free(c);
    return margin;
}

static void test_greedy(aero_model *m, aero_model *d) {
    const char *text = "Once upon a time, there was a little girl named";
    int32_t *ids = NULL;
    size_t np = 0;
    aero_error err = {0};
    CHECK(!aero_tokenize(aero_model_tokenizer(m), text, strlen(text), true, false, &ids, &np, &err));
    enum { N = 64 };
    int32_t ref[N], a[N], b[N];
    CHECK(plain(m, AERO_KV_F16, 0, ids, (int)np, N, ref) == N);
    CHECK(plain(m, AERO_KV_Q8_0, 0, ids, (int)np, N, a) == N);
    int same = 0;
    while (same < N && a[same] == ref[same]) same++;
    printf("teacher greedy: q8_0 cache equals f16 for %d of %d tokens\n", same, N);
    // The texts may part only at a near-tie of the F16 run (top two logits within 0.05), which the q8_0 cache's
    // rounding can break either way.
    float margin = same < N ? f16_margin(m, ids, (int)np, ref, same, ref[same], a[same]) : 0.0f;
    if (same < N) printf("teacher greedy: first difference at %d, a tie of margin %.4f in the f16 run\n", same, margin);
    CHECKF(same == N || (margin >= 0.0f && margin < 0.05f),
           "q8_0 greedy text == f16 for the first %d tokens (first difference at %d, f16 margin %.4f)", N, same, margin);
    // q8_0, q4_0, and q4_0 with its last 16 positions read from F16 copies (positions age out as the text grows)
    static const struct {
        aero_kv_type t;
        int recent;
    } spec_types[] = {{AERO_KV_Q8_0, 0}, {AERO_KV_Q4_0, 0}, {AERO_KV_Q4_0, 16}};
    for (int ti = 0; ti < 3; ti++) {
        aero_kv_type t = spec_types[ti].t;
        int recent = spec_types[ti].recent;
        CHECK(plain(m, t, recent, ids, (int)np, N, a) == N);
        for (int mode = 0; mode < 3; mode++) { // drafter chain, drafter tree, n-grams
            int got = spec(m, mode < 2 ? d : NULL, t, recent, mode == 1 ? 12 : 0, ids, (int)np, N, b);
            int i = 0;
            while (i < N && i < got && a[i] == b[i]) i++;
            CHECKF(got == N && i == N,
                   "%s cache (recent %d): speculative greedy (%s) == plain greedy (first difference at %d)",
                   aero_kv_type_name(t), recent,
                   mode == 0   ? "draft chain"
                   : mode == 1 ? "draft tree"
                               : "n-grams",
                   i);
        }
    }
    free(ids);
}

int main(int argc, char **argv) {
    aero_kernels_init();
    printf("kernels: %s\n", aero_isa_name(aero_kernels_isa()));
    test_attention_vs_double();
    if (argc > 1 && !strcmp(argv[1], "--attention-only")) return check_done("test_kv_quant (attention)");
    // the scalar reference kernels too: the ISA is chosen once per process, so in a child
    char exe[1024], cmd[1100];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0 && !getenv("AERO_ISA") && aero_kernels_isa() != AERO_ISA_SCALAR) {
        exe[len] = 0;
        snprintf(cmd, sizeof cmd, "AERO_ISA=scalar '%s' --attention-only", exe);
        fflush(stdout);
        CHECKF(system(cmd) == 0, "attention with the scalar kernels");
    }
    test_types_and_bytes();
    FILE *f = fopen(TEACHER, "rb");
    if (!f) {
        printf("skipped the model checks: %s not found\n", TEACHER);
        return check_done("test_kv_quant");
    }
    fclose(f);
    test_budget();
    aero_model *m1 = test_load_model(TEACHER, 1, 0), *m2 = test_load_model(TEACHER, 2, 0);
    aero_model *d = test_load_model(DRAFTER, 1, 0);
    CHECK(m1 && m2 && d);
    if (m1 && m2 && d) {
        test_batch_invariance(m1, m2);
        test_recent_whole_context(m1);
        test_greedy(m2, d);
    }
    aero_model_free(m1);
    aero_model_free(m2);
    aero_model_free(d);
    return check_done("test_kv_quant");
}
