// `aerollm bench`: prefill and decode speed of a model, each set against its floor (memory bandwidth measured
// in the same run for resident weights; disk bandwidth for streamed ones), as ratios rather than raw times.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common.h"

static void usage(void) {
    printf("usage: aerollm bench [-m MODEL] [-p N_PROMPT] [-n N_GEN] [--mem SIZE] [--json] [options]\n"
           "  -p N    prompt tokens for the prefill measurement (default 512)\n"
           "  -n N    decoded tokens for the decode measurement (default 32)\n"
           "  --json  print one JSON object instead of text\n");
    cli_common_usage();
}

// Feeds n tokens in passes of n_batch and returns the seconds taken.
static int run_prefill(cli_engine *e, int n, int n_batch, double *secs, aero_error *err) {
    const aero_hparams *hp = aero_model_hparams(e->model);
    int32_t *tok = malloc(sizeof(int32_t) * n), *pos = malloc(sizeof(int32_t) * n);
    uint8_t *want = calloc(n, 1);
    float *logits = malloc(sizeof(float) * hp->n_vocab);
    int rc = 1;
    if (!tok || !pos || !want || !logits) goto done;
    for (int i = 0; i < n; i++) {
        tok[i] = (int32_t)((i * 7919u + 13) % (unsigned)hp->n_vocab);
        pos[i] = i;
    }
    double t0 = aero_now();
    for (int first = 0; first < n; first += n_batch) {
        int k = n - first < n_batch ? n - first : n_batch;
        memset(want + first, 0, k);
        want[first + k - 1] = 1;
        aero_batch b = {.n = k, .tokens = tok + first, .pos = pos + first, .want_logits = want + first};
        if (aero_decode(e->ctx, &b, logits, err)) goto done;
    }
    *secs = aero_now() - t0;
    rc = 0;
done:
    free(tok);
    free(pos);
    free(want);
    free(logits);
    return rc;
}

// Decodes n tokens one at a time (greedy) after the current cache; returns seconds per token.
static int run_decode(cli_engine *e, int n, double *per_token, aero_error *err) {
    const aero_hparams *hp = aero_model_hparams(e->model);
    float *logits = malloc(sizeof(float) * hp->n_vocab);
    if (!logits) return 1;
    int32_t t = 1, pos = aero_kv_len(e->ctx, 0);
    double t0 = aero_now();
    for (int i = 0; i < n; i++, pos++) {
        aero_batch b = {.n = 1, .tokens = &t, .pos = &pos};
        if (aero_decode(e->ctx, &b, logits, err)) {
            free(logits);
            return 1;
        }
        t = aero_argmax(logits, hp->n_vocab);
    }
    *per_token = (aero_now() - t0) / n;
    free(logits);
    return 0;
}

int aero_cmd_bench(int argc, char **argv) {
    cli_opts o;
    cli_opts_default(&o);
    int n_prompt = 512, n_gen = 32;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-p") && i + 1 < argc) {
            n_prompt = atoi(argv[++i]);
            if (n_prompt < 1) return cli_fail("bench", "-p expects a positive token count");
            continue;
        }
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage();
            return 0;
        }
        int used = cli_opts_parse(&o, "bench", argc, argv, i);
        if (used < 0) return 1;
        if (used == 0) return cli_fail("bench", "unknown argument '%s' (see aerollm bench --help)", argv[i]);
        i += used - 1;
    }
    n_gen = o.n_predict == 128 ? n_gen : o.n_predict;
    if (n_gen < 1) return cli_fail("bench", "-n expects a positive token count");
    if (o.draft) return cli_bench_spec(&o, n_prompt, n_gen);
    if (o.n_ctx == 0) o.n_ctx = n_prompt + n_gen + 8;
    cli_engine e;
    if (cli_engine_open(&e, &o, "bench")) return 1;
    aero_error err = {0};
    const aero_hparams *hp = aero_model_hparams(e.model);
    aero_stream *s = aero_model_stream(e.model);
    const aero_stream_plan *plan = aero_stream_get_plan(s);
    int threads = aero_model_n_threads(e.model);
    aero_pool *mpool = aero_pool_new(threads);
    double mem_bw = mpool ? aero_measure_mem_bw(mpool, 512ull << 20) : 0;
    aero_pool_free(mpool);
    double disk_bw = plan->streamed_bytes ? aero_measure_disk_bw(aero_model_gguf(e.model)->files[0].path, 2ull << 30, 4) : 0;
    double prefill_s = 0, decode_s = 0;
    aero_stream_reset_stats(s);
    if (run_prefill(&e, n_prompt, o.n_batch, &prefill_s, &err)) {
        cli_engine_close(&e);
        return cli_fail("bench", "prefill: %s", err.msg[0] ? err.msg : "out of memory");
    }
    aero_stream_stats prefill_stats;
    aero_stream_get_stats(s, &prefill_stats);
    aero_stream_reset_stats(s);
    if (run_decode(&e, n_gen, &decode_s, &err)) {
        cli_engine_close(&e);
        return cli_fail("bench", "decode: %s", err.msg[0] ? err.msg : "out of memory");
    }
    aero_stream_stats dec;
    aero_stream_get_stats(s, &dec);
    uint64_t model_bytes = aero_model_weight_bytes(e.model);
    // Decode reads every resident weight once per token from memory and every streamed weight from disk.
    double mem_floor = mem_bw > 0 ? (double)plan->resident_bytes / mem_bw : 0;
    double disk_floor = disk_bw > 0 ? (double)plan->streamed_bytes / disk_bw : 0;
    double floor = mem_floor > disk_floor ? mem_floor : disk_floor;
    const char *path = aero_model_gguf(e.model)->files[0].path;
    if (o.json) {
        printf("{\"model\":\"%s\",\"arch\":\"%s\",\"n_layer\":%d,\"n_embd\":%d,\"model_bytes\":%llu,"
               "\"threads\":%d,\"isa\":\"%s\",\"mem_budget\":%llu,\"resident_bytes\":%llu,\"streamed_bytes_per_pass\":%llu,"
               "\"mem_bw_gbs\":%.3f,\"disk_bw_gbs\":%.3f,\"prefill_tokens\":%d,\"prefill_s\":%.6f,"
               "\"prefill_tok_s\":%.3f,\"prefill_passes\":%llu,\"decode_tokens\":%d,\"decode_s_per_token\":%.6f,"
               "\"decode_tok_s\":%.3f,\"decode_floor_s\":%.6f,\"decode_over_floor\":%.3f,"
               "\"decode_io_wait_s\":%.6f,\"decode_bytes_streamed\":%llu,\"peak_rss\":%llu}\n",
               path, hp->arch, hp->n_layer, hp->n_embd, (unsigned long long)model_bytes, threads,
               aero_isa_name(aero_kernels_isa()), (unsigned long long)o.mem, (unsigned long long)plan->resident_bytes,
               (unsigned long long)plan->streamed_bytes, mem_bw / 1e9, disk_bw / 1e9, n_prompt, prefill_s,
               n_prompt / prefill_s, (unsigned long long)prefill_stats.passes, n_gen, decode_s, 1 / decode_s, floor,
               floor > 0 ? decode_s / floor : 0, dec.wait_s / n_gen, (unsigned long long)dec.bytes_streamed,
               (unsigned long long)aero_peak_rss());
    } else {
        printf("model      %s (%s, %d layers, dim %d, %.1f MB of weights)\n", path, hp->arch, hp->n_layer, hp->n_embd,
               model_bytes / 1e6);
        printf("threads    %d (%s)\n", threads, aero_isa_name(aero_kernels_isa()));
        printf("plan       resident %.1f MB, streamed %.1f MB per pass%s\n", plan->resident_bytes / 1e6,
               plan->streamed_bytes / 1e6, o.mem ? "" : " (no --mem: all resident)");
        printf("memory bw  %.2f GB/s (read, measured now)\n", mem_bw / 1e9);
        if (disk_bw > 0) printf("disk bw    %.2f GB/s (O_DIRECT reads of the model file, measured now)\n", disk_bw / 1e9);
        printf("prefill    %d tokens in %.3f s = %.1f tok/s (%llu passes)\n", n_prompt, prefill_s, n_prompt / prefill_s,
               (unsigned long long)prefill_stats.passes);
        printf("decode     %.2f ms/token = %.2f tok/s\n", decode_s * 1e3, 1 / decode_s);
        printf("floor      %.2f ms/token (resident bytes / memory bw %.2f ms, streamed bytes / disk bw %.2f ms)\n",
               floor * 1e3, mem_floor * 1e3, disk_floor * 1e3);
        printf("ratio      decode / floor = %.2f\n", floor > 0 ? decode_s / floor : 0);
        if (plan->streamed_bytes)
            printf("stream     %.1f MB streamed per token, waited for IO %.2f ms/token, IO busy %.2f ms/token\n",
                   dec.bytes_streamed / 1e6 / n_gen, dec.wait_s * 1e3 / n_gen, dec.io_busy_s * 1e3 / n_gen);
        printf("peak RSS   %.1f MB\n", aero_peak_rss() / 1e6);
    }
    cli_engine_close(&e);
    return 0;
}
