// Mixture-of-experts decoding under a memory budget, in counts that do not depend on how busy the machine is:
// bytes read per decoded token against the floor (an oracle expert cache of the same size that keeps the
// experts this run used most), the expert cache's hit rate, the predictor's hit rate; then the verification
// cost curve c(k): a pass of k tokens computes the union of their experts, so its experts, bytes and time grow
// with k (docs/perf/moe.md). Times are printed too, but only mean something on a quiet machine.
//
// Usage: bench_moe MODEL [--mem SIZE] [-c N] [-n N] [-t THREADS] [--seed S] [--prefetch] [--ck K,K,...] [--rounds R]
//   --mem      the whole budget as `aerollm run --mem` takes it (the KV cache of -c tokens, default the CLI's,
//              comes out of it first, so the expert cache is the one `aerollm run --mem` gets); absent: all resident
//   -n         tokens decoded, sampled at temperature 1 (a random model's greedy text repeats one token)
//   --prefetch the next-layer expert predictor on (aero_model_params.expert_prefetch)
//   --ck       pass sizes of the c(k) curve (default 1,2,4,8,16; none with --ck 0); R rounds each, best time kept
// Without MODEL (`make bench`): the synth preset qwen3moe-tiny (Q8_0) under --mem 4M with -c 256, a smoke run.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <aerollm.h>

#include "model/model_internal.h"
#include "synth/synth.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
// xorshift64*: the same text for the same seed on every machine
static double rnd(void) {
    rng_state ^= rng_state >> 12, rng_state ^= rng_state << 25, rng_state ^= rng_state >> 27;
    return (double)((rng_state * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

// A token drawn from softmax(logits) (temperature 1).
static int32_t sample(const float *logits, int nv) {
    float mx = logits[0];
    for (int i = 1; i < nv; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0;
    for (int i = 0; i < nv; i++) sum += exp((double)logits[i] - mx);
    double r = rnd() * sum, acc = 0;
    for (int i = 0; i < nv; i++) {
        acc += exp((double)logits[i] - mx);
        if (acc >= r) return i;
    }
    return nv - 1;
}

// Experts computed so far (the model's per-expert use counts: one per expert per pass that routed to it).
static uint64_t experts_used(const aero_model *m) {
    if (!m->moe) return 0;
    uint64_t s = 0;
    for (size_t i = 0; i < (size_t)m->hp.n_layer * m->moe_p.n_expert; i++) s += m->expert_uses[i];
    return s;
}

int main(int argc, char **argv) {
    const char *path = NULL, *ck = "1,2,4,8,16";
    uint64_t mem = 0;
    int n_gen = 96, threads = 0, rounds = 3, n_ctx = 0;
    bool prefetch = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--mem") && i + 1 < argc) {
            if (!aero_parse_size(argv[++i], &mem)) return fprintf(stderr, "bad --mem %s\n", argv[i]), 2;
        } else if (!strcmp(argv[i], "-n") && i + 1 < argc) n_gen = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-c") && i + 1 < argc) n_ctx = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) rng_state ^= (uint64_t)strtoull(argv[++i], NULL, 10) * 0x100000001B3ull;
        else if (!strcmp(argv[i], "--ck") && i + 1 < argc) ck = argv[++i];
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--prefetch")) prefetch = true;
        else if (argv[i][0] != '-' && !path) path = argv[i];
        else return fprintf(stderr, "usage: bench_moe MODEL [--mem SIZE] [-c N] [-n N] [-t T] [--seed S] [--prefetch] "
                                    "[--ck K,K,...] [--rounds R]\n"), 2;
    }
    if (n_gen < 1 || rounds < 1) return fprintf(stderr, "bench_moe: -n and --rounds must be >= 1\n"), 2;
    char tmp[64] = "";
    if (!path) { // a tiny MoE of its own, experts streamed through the cache
        aero_synth_params sp;
        aero_error serr = {0};
        snprintf(tmp, sizeof tmp, "/tmp/aero_bench_moe_%d.gguf", (int)getpid());
        if (!aero_synth_preset("qwen3moe-tiny", &sp)) return fprintf(stderr, "bench_moe: no qwen3moe-tiny preset\n"), 1;
        sp.type = AERO_DT_Q8_0;
        sp.n_threads = 1;
        if (aero_synth_write(&sp, tmp, NULL, &serr)) return fprintf(stderr, "bench_moe: synth: %s\n", serr.msg), 1;
        path = tmp;
        if (!mem) mem = 4u << 20;
        if (!n_ctx) n_ctx = 256;
    }
    int ks[32], n_k = 0, max_k = 0;
    for (const char *p = ck; *p && n_k < 32;) {
        int k = atoi(p);
        if (k > 0) ks[n_k++] = k, max_k = k > max_k ? k : max_k;
        p = strchr(p, ',');
        if (!p) break;
        p++;
    }
    aero_error err = {0};
    aero_model_params mp;
    aero_model_params_default(&mp);
    mp.path = path;
    mp.n_threads = threads;
    mp.expert_prefetch = prefetch;
    aero_ctx_params cp = {.n_ctx = n_ctx}; // 0: the CLI's default context
    if (mem) { // as the CLI splits --mem: the KV cache first, the weights the rest
        aero_mem_split sp;
        mp.mem_budget = mem;
        if (aero_mem_split_plan(&sp, &mp, &cp, 0, &err)) return fprintf(stderr, "bench_moe: %s\n", err.msg), 1;
        mp.mem_budget = sp.weight_budget;
    }
    aero_model *m = NULL;
    aero_ctx *c = NULL;
    if (aero_model_load(&m, &mp, &err) || aero_ctx_new(&c, m, &cp, &err))
        return fprintf(stderr, "bench_moe: %s\n", err.msg), 1;
    if (aero_ctx_n_ctx(c) < 4 + n_gen + max_k) return fprintf(stderr, "bench_moe: -c is too small for -n and --ck\n"), 2;
    int nv = aero_model_n_vocab(m);
    float *logits = malloc(sizeof(float) * (size_t)nv * (max_k > 4 ? max_k : 4));
    int32_t tok[64], pos[64];
    int n_past = 0;
    // prompt: BOS and two fixed tokens, one pass
    int32_t prompt[3] = {1, 300 % nv, 301 % nv};
    for (int i = 0; i < 3; i++) pos[i] = i;
    aero_batch b = {.n = 3, .tokens = prompt, .pos = pos};
    if (aero_decode(c, &b, logits, &err)) return fprintf(stderr, "bench_moe: prompt: %s\n", err.msg), 1;
    n_past = 3;
    int32_t next = sample(logits + (size_t)2 * nv, nv);
    aero_model_expert_stats_reset(m);
    double t0 = now();
    for (int i = 0; i < n_gen; i++) {
        tok[0] = next, pos[0] = n_past;
        b = (aero_batch){.n = 1, .tokens = tok, .pos = pos};
        if (aero_decode(c, &b, logits, &err)) return fprintf(stderr, "bench_moe: decode: %s\n", err.msg), 1;
        n_past++;
        next = sample(logits, nv);
    }
    double dt = now() - t0;
    const aero_stream_plan *plan = aero_stream_get_plan(aero_model_stream(m));
    printf("model      %s, %s, %d layers; --mem %.1f MB (weights %.1f MB), %s, %d threads\n", path, aero_model_arch(m),
           aero_model_n_layer(m), mem / 1e6, mp.mem_budget / 1e6,
           !m->moe ? "dense" : plan->experts_resident ? "experts resident" : "experts in the expert cache",
           aero_model_n_threads(m));
    printf("decode     %d sampled tokens in %.2f s = %.3f tok/s (time: a quiet machine only)\n", n_gen, dt, n_gen / dt);
    aero_model_print_expert_stats(m, n_gen, stdout);
    if (!m->moe || !n_k) goto done;
    // c(k): k tokens drawn at random from the vocabulary (independent: the worst case for the union; a draft's
    // tokens share more experts) decoded as one pass after the text above, then rolled back
    printf("c(k)       %-4s %12s %14s %12s %10s %10s\n", "k", "experts/pass", "read MB/pass", "best ms/pass",
           "c(k)/c(1)", "per token");
    double c1 = 0;
    for (int ki = 0; ki < n_k; ki++) {
        int k = ks[ki] > 64 ? 64 : ks[ki];
        double best = 0, ex_sum = 0, rd_sum = 0;
        for (int r = 0; r < rounds; r++) {
            for (int j = 0; j < k; j++) tok[j] = (int32_t)(rnd() * nv), pos[j] = n_past + j;
            aero_expert_cache_stats s0 = {0}, s1 = {0};
            aero_model_expert_stats(m, &s0);
            uint64_t u0 = experts_used(m);
            b = (aero_batch){.n = k, .tokens = tok, .pos = pos};
            double a = now();
            if (aero_decode(c, &b, logits, &err)) return fprintf(stderr, "bench_moe: c(%d): %s\n", k, err.msg), 1;
            double t = now() - a;
            aero_model_expert_stats(m, &s1);
            ex_sum += (double)(experts_used(m) - u0);
            rd_sum += (double)(s1.bytes_read - s0.bytes_read);
            aero_kv_truncate(c, 0, n_past);
            if (r == 0 || t < best) best = t;
        }
        if (ki == 0) c1 = best / 1;
        printf("c(k)       %-4d %12.1f %14.1f %12.1f %10.2f %10.2f\n", k, ex_sum / rounds, rd_sum / rounds / 1e6,
               best * 1e3, c1 > 0 ? best / c1 : 0, c1 > 0 ? best / c1 / k : 0);
    }
done:
    if (tmp[0]) unlink(tmp);
    free(logits);
    aero_ctx_free(c);
    aero_model_free(m);
    return 0;
}
