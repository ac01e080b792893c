// `aerollm bench --draft ...`: what speculative decoding buys on this teacher. It measures the cost of one
// target pass verifying k = 1..64 tokens (relative to k = 1), plain greedy decoding, and speculative greedy
// decoding (acceptance, tokens per pass, draft time), then sets the speedup predicted from those parts beside
// the measured one. Greedy throughout, so the two outputs must also be identical.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli.h"
#include "common.h"

static const int curve_k[] = {1, 4, 8, 16, 32, 64};
#define N_CURVE (int)(sizeof curve_k / sizeof curve_k[0])

// qsort order for the medians of repeated timings.
static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

// CPU seconds (user + system, all threads) this process has used: on a shared machine the wall time of a
// compute-bound pass depends on the neighbours, its CPU time much less.
static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

// Median wall time and CPU time of a k-token target pass after n_prompt cached tokens.
static int time_curve(cli_session *e, int n_prompt, double *secs, double *cpu, aero_error *err) {
    int n_vocab = aero_model_n_vocab(e->model);
    int32_t *tok = malloc(sizeof(int32_t) * n_prompt);
    if (!tok) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n_prompt; i++) tok[i] = (int32_t)((i * 7919u + 13) % (unsigned)n_vocab);
    aero_status st = aero_spec_begin(e->spec, tok, n_prompt, 0, err);
    free(tok);
    if (st) return st;
    double warm;
    if ((st = aero_spec_time_pass(e->spec, 1, &warm, err))) return st;
    int reps = warm < 0.05 ? 7 : warm < 1 ? 3 : 1; // a streamed pass of an 8B model: seconds each
    for (int c = 0; c < N_CURVE; c++) {
        double t[7], u[7];
        for (int r = 0; r < reps; r++) {
            double c0 = cpu_seconds();
            if ((st = aero_spec_time_pass(e->spec, curve_k[c], &t[r], err))) return st;
            u[r] = cpu_seconds() - c0;
        }
        qsort(t, reps, sizeof *t, cmp_double);
        qsort(u, reps, sizeof *u, cmp_double);
        secs[c] = t[reps / 2];
        cpu[c] = u[reps / 2];
    }
    return AERO_OK;
}

// The curve at a fractional k, by linear interpolation (flat beyond its ends).
static double curve_at(const double *secs, double k) {
    if (k <= curve_k[0]) return secs[0];
    for (int c = 1; c < N_CURVE; c++)
        if (k <= curve_k[c])
            return secs[c - 1] + (secs[c] - secs[c - 1]) * (k - curve_k[c - 1]) / (curve_k[c] - curve_k[c - 1]);
    return secs[N_CURVE - 1];
}

// Greedy decoding of n tokens after the prompt through the generation layer, with the drafter when spec is
// set: tokens to out, seconds (prefill excluded; with a drafter, all but the prompt's last chunk).
static int decode(cli_session *e, aero_spec *spec, const int32_t *ids, int n_ids, int n, int32_t *out, double *secs,
                  aero_error *err) {
    aero_generator_params gp;
    aero_generator_params_default(&gp);
    gp.ctx = e->ctx;
    gp.tok = aero_model_tokenizer(e->model);
    gp.max_tokens = n;
    gp.ignore_eos = true; // as many tokens as asked, to compare
    gp.spec = spec;
    aero_generator *g = NULL;
    aero_status st = aero_generator_new(&g, &gp, e->sampler, err);
    if (st) return st;
    aero_sampler_reset(e->sampler);
    aero_kv_drop(e->ctx, 0);
    if ((st = aero_generator_begin(g, ids, n_ids, err)) || (st = aero_generator_prefill(g, err))) goto done;
    double t0 = aero_now();
    int got = 0, k;
    const int32_t *t = aero_generator_new_tokens(g, &k);
    for (;;) {
        memcpy(out + got, t, sizeof(int32_t) * k);
        got += k;
        if (aero_generator_end(g) != AERO_END_NONE) break;
        if ((st = aero_generator_step(g, err))) goto done;
        t = aero_generator_new_tokens(g, &k);
    }
    *secs = aero_now() - t0;
    if (got < n)
        st = aero_fail(err, AERO_ERR_RANGE, "generation ended (%s) after %d of %d tokens",
                       aero_end_name(aero_generator_end(g)), got, n);
done:
    aero_generator_free(g);
    return st;
}

// Entry point of `bench --draft`: the verify-cost curve, plain and speculative decoding, predicted vs measured.
int cli_bench_spec(const cli_opts *opts, int n_prompt, int n_gen) {
    const char *cmd = "bench";
    cli_opts o = *opts;
    o.sp.temp = 0; // greedy: the speculative output must equal the plain one
    int nodes = cli_draft_nodes(&o);
    char *text = NULL;
    int32_t *ids = NULL, *plain = NULL, *spec = NULL;
    size_t n_ids = 0;
    aero_error err = {0};
    cli_session e;
    int rc = 1;
    if (!o.prompt_file) o.prompt = "Once upon a time";
    if (!(text = cli_read_prompt(&o, cmd))) return 1;
    if (o.n_ctx == 0) {
        size_t need = strlen(text) + (size_t)n_gen + nodes + 8; // a token holds at least one byte of text
        o.n_ctx = (int)(need > (size_t)n_prompt + 72 ? need : (size_t)n_prompt + 72);
    }
    if (cli_session_open(&e, &o, cmd)) {
        free(text);
        return 1;
    }
    const aero_tokenizer *tok = aero_model_tokenizer(e.model);
    bool bos = !o.no_bos && aero_tokenizer_add_bos(tok) && aero_tokenizer_bos(tok) >= 0;
    if (aero_tokenize(tok, text, strlen(text), bos, true, &ids, &n_ids, &err)) {
        cli_fail(cmd, "%s", err.msg);
        goto done;
    }
    if (n_ids == 0) {
        cli_fail(cmd, "the prompt is empty");
        goto done;
    }
    plain = malloc(sizeof(int32_t) * n_gen);
    spec = malloc(sizeof(int32_t) * (n_gen + nodes + 1));
    if (!plain || !spec) {
        cli_fail(cmd, "out of memory");
        goto done;
    }
    aero_stream *s = aero_model_stream(e.model);
    const aero_stream_plan *plan = aero_stream_get_plan(s);
    aero_pool *mpool = aero_pool_new(aero_model_n_threads(e.model));
    // under --mem (a memory limit, perhaps) over the engine's own buffers, as aerollm bench does: a fresh
    // 512 MB buffer would not fit beside the model
    double mem_bw = mpool && o.mem ? aero_stream_measure_mem_bw(s, mpool) : 0;
    if (mpool && mem_bw <= 0) mem_bw = aero_measure_mem_bw(mpool, o.mem ? 64ull << 20 : 512ull << 20);
    aero_pool_free(mpool);
    double disk_bw = plan->streamed_bytes ? aero_stream_measure_disk_bw(s, 2ull << 30) : 0;
    double curve[N_CURVE], curve_cpu[N_CURVE], plain_tok = 0, spec_s = 0;
    if (time_curve(&e, n_prompt, curve, curve_cpu, &err)) {
        cli_fail(cmd, "verify-cost curve: %s", err.msg);
        goto done;
    }
    if (decode(&e, NULL, ids, (int)n_ids, n_gen, plain, &plain_tok, &err)) {
        cli_fail(cmd, "plain decoding: %s", err.msg);
        goto done;
    }
    aero_stream_reset_stats(s);
    plain_tok /= n_gen;
    if (decode(&e, e.spec, ids, (int)n_ids, n_gen, spec, &spec_s, &err)) {
        cli_fail(cmd, "speculative decoding: %s", err.msg);
        goto done;
    }
    aero_stream_stats ss;
    aero_stream_get_stats(s, &ss);
    aero_spec_stats st;
    aero_spec_get_stats(e.spec, &st);
    bool same = !memcmp(plain, spec, sizeof(int32_t) * n_gen);
    double passes = st.verify_passes ? (double)st.verify_passes : 1;
    double tau = st.generated / passes, kbar = st.verify_tokens / passes;
    double other = (st.draft_s + st.accept_s) / passes;
    double predicted = tau * curve[0] / (curve_at(curve, kbar) + other);
    double measured = plain_tok / (spec_s / n_gen);
    double mem_floor = mem_bw > 0 ? plan->resident_bytes / mem_bw : 0,
           disk_floor = disk_bw > 0 ? plan->streamed_bytes / disk_bw : 0;
    char what[160];
    aero_spec_describe(e.spec, what, sizeof what);
    const char *tpath = aero_model_path(e.model);
    if (o.json) {
        printf(
            "{\"model\":\"%s\",\"draft\":\"%s\",\"mode\":\"%s\",\"mem_budget\":%llu,\"streamed_bytes_per_pass\":%llu,"
            "\"mem_bw_gbs\":%.3f,\"disk_bw_gbs\":%.3f,\"floor_s\":%.6f,\"verify_k\":[",
            tpath, o.draft ? o.draft : o.draft_head, what, (unsigned long long)o.mem, (unsigned long long)plan->streamed_bytes, mem_bw / 1e9,
            disk_bw / 1e9, mem_floor > disk_floor ? mem_floor : disk_floor);
        for (int c = 0; c < N_CURVE; c++) printf("%s%d", c ? "," : "", curve_k[c]);
        printf("],\"verify_s\":[");
        for (int c = 0; c < N_CURVE; c++) printf("%s%.6f", c ? "," : "", curve[c]);
        printf("],\"verify_cpu_s\":[");
        for (int c = 0; c < N_CURVE; c++) printf("%s%.6f", c ? "," : "", curve_cpu[c]);
        printf("],\"plain_s_per_token\":%.6f,\"spec_s_per_token\":%.6f,\"tokens\":%d,\"verify_passes\":%llu,"
               "\"tokens_per_pass\":%.4f,\"mean_pass_tokens\":%.3f,\"drafted\":%llu,\"accepted\":%llu,"
               "\"acceptance_rate\":%.4f,\"draft_s\":%.6f,\"verify_s_total\":%.6f,\"accept_s\":%.6f,"
               "\"predicted_speedup\":%.3f,\"measured_speedup\":%.3f,\"identical\":%s,\"io_wait_s\":%.6f}\n",
               plain_tok, spec_s / n_gen, n_gen, (unsigned long long)st.verify_passes, tau, kbar,
               (unsigned long long)st.drafted, (unsigned long long)st.accepted,
               st.drafted ? (double)st.accepted / st.drafted : 0, st.draft_s, st.verify_s, st.accept_s, predicted,
               measured, same ? "true" : "false", ss.wait_s);
    } else {
        printf("teacher    %s (%.1f MB of weights, %d threads)\n", tpath, aero_model_weight_bytes(e.model) / 1e6,
               aero_model_n_threads(e.model));
        printf("drafter    %s: %s\n", o.draft ? o.draft : o.draft_head, what);
        printf("plan       resident %.1f MB, streamed %.1f MB per pass%s\n", plan->resident_bytes / 1e6,
               plan->streamed_bytes / 1e6, o.mem ? "" : " (no --mem: all resident)");
        printf("floors     memory bw %.2f GB/s, disk bw %.2f GB/s (measured now): a pass >= %.2f ms\n", mem_bw / 1e9,
               disk_bw / 1e9, (mem_floor > disk_floor ? mem_floor : disk_floor) * 1e3);
        printf("verify     cost of one pass of k tokens after %d cached, relative to k = 1 (%.2f ms):\n          ",
               n_prompt, curve[0] * 1e3);
        for (int c = 0; c < N_CURVE; c++) printf(" k=%d %.2fx", curve_k[c], curve[c] / curve[0]);
        printf("\n           CPU seconds per pass (all threads):");
        for (int c = 0; c < N_CURVE; c++) printf(" k=%d %.3f", curve_k[c], curve_cpu[c]);
        printf("\nplain      %d tokens, %.2f ms/token (%.2f tok/s)\n", n_gen, plain_tok * 1e3, 1 / plain_tok);
        printf("spec       %d tokens in %.3f s = %.2f ms/token (%.2f tok/s)\n", n_gen, spec_s, spec_s * 1e3 / n_gen,
               n_gen / spec_s);
        printf("           %llu verify passes, %.2f tokens per pass, %.1f tokens per pass fed; drafted %llu, accepted "
               "%llu: acceptance rate %.1f%%\n",
               (unsigned long long)st.verify_passes, tau, kbar, (unsigned long long)st.drafted,
               (unsigned long long)st.accepted, st.drafted ? 100.0 * st.accepted / st.drafted : 0.0);
        printf("           per pass: verify %.2f ms, draft %.2f ms (%llu drafter passes in all), accept %.2f ms\n",
               st.verify_s * 1e3 / passes, st.draft_s * 1e3 / passes, (unsigned long long)st.draft_calls,
               st.accept_s * 1e3 / passes);
        printf("identical  %s (greedy speculative tokens vs plain)\n", same ? "yes" : "NO");
        printf("speedup    predicted %.2fx = %.2f tokens/pass x t(1) %.2f ms / (t(%.1f) %.2f ms + draft and accept "
               "%.2f ms); measured %.2fx\n",
               predicted, tau, curve[0] * 1e3, kbar, curve_at(curve, kbar) * 1e3, other * 1e3, measured);
    }
    if (!same) {
        cli_fail(cmd, "greedy speculative output differs from plain greedy output");
        goto done;
    }
    rc = 0;
done:
    cli_session_close(&e);
    free(text);
    free(ids);
    free(plain);
    free(spec);
    return rc;
}
