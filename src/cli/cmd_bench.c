// `aerollm bench`: prefill and decode speed of a model, each set against its floor (memory bandwidth measured
// in the same run for resident weights; disk bandwidth for streamed ones), as ratios rather than raw times.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common.h"

// Prints the help.
static void usage(void) {
    printf("usage: aerollm bench [-m MODEL] [-p N_PROMPT] [-n N_GEN] [--mem SIZE] [--json] [options]\n"
           "  -p N    prompt tokens for the prefill measurement (default 512)\n"
           "  -n N    decoded tokens for the decode measurement (default 32)\n"
           "  --json  print one JSON object instead of text\n");
    cli_common_usage();
}

// Prefills n synthetic tokens (one pass) through a greedy generation and returns the seconds taken.
static int run_prefill(cli_session *e, aero_generator *g, int n, double *secs, aero_error *err) {
    int n_vocab = aero_model_n_vocab(e->model);
    int32_t *tok = malloc(sizeof(int32_t) * n);
    if (!tok) return aero_fail(err, AERO_ERR_NOMEM, "out of memory"), 1;
    for (int i = 0; i < n; i++) tok[i] = (int32_t)((i * 7919u + 13) % (unsigned)n_vocab);
    double t0 = aero_now();
    int rc = aero_generator_begin(g, tok, n, err) || aero_generator_prefill(g, err);
    *secs = aero_now() - t0;
    free(tok);
    return rc;
}

// Decodes n more tokens one pass each (greedy); returns seconds per token.
static int run_decode(aero_generator *g, int n, double *per_token, aero_error *err) {
    double t0 = aero_now();
    for (int i = 0; i < n; i++) {
        if (aero_generator_end(g) != AERO_END_NONE)
            return aero_fail(err, AERO_ERR_RANGE, "the context (-c) is full after %d decoded tokens", i), 1;
        if (aero_generator_step(g, err)) return 1;
    }
    *per_token = (aero_now() - t0) / n;
    return 0;
}

// Passes over the model with no compute (acquire and release each unit in order): what the streamer alone
// achieves against the disk floor, whatever the speed of the kernels. Returns seconds per pass, not counting
// a first pass whose first units were read ahead before it started.
static int run_io_passes(aero_stream *s, int n_layer, int passes, double *per_pass, aero_error *err) {
    double t0 = 0;
    for (int p = 0; p <= passes; p++) {
        if (p == 1) t0 = aero_now();
        for (int u = 0; u < n_layer; u++) {
            if (aero_stream_acquire(s, u, err)) return 1;
            aero_stream_release(s, u);
        }
        for (int part = 0; part < aero_stream_head_parts(s); part++) { // the head, whole or in row blocks
            int64_t row0, rows;
            if (aero_stream_acquire_head_part(s, part, &row0, &rows, err)) return 1;
            aero_stream_release(s, aero_stream_head_unit(s));
        }
    }
    *per_pass = (aero_now() - t0) / passes;
    return 0;
}

// Disk bandwidth for the floor: O_DIRECT reads of all the streamed data of the model file (the bytes a pass
// reads, where the host may cache differently than elsewhere), through the engine's idle window so that a run
// under a memory limit allocates nothing more.
static double measure_disk(aero_stream *s) { return aero_stream_measure_disk_bw(s, UINT64_MAX); }

// Entry point: prefill, decode and IO-only passes, each against the floor measured in the same run.
int aero_cmd_bench(int argc, char **argv) {
    cli_opts o;
    cli_opts_default(&o);
    int n_prompt = 512, n_gen = 32;
    bool n_predict_given = false;
    for (int i = 1; i < argc; i++) {
        n_predict_given |= !strcmp(argv[i], "-n") || !strcmp(argv[i], "--n-predict");
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
    n_gen = n_predict_given ? o.n_predict : n_gen;
    if (n_gen < 1) return cli_fail("bench", "-n expects a positive token count");
    if (o.draft || o.draft_head) return cli_bench_spec(&o, n_prompt, n_gen);
    if (o.n_ctx == 0) o.n_ctx = n_prompt + n_gen + 8;
    o.sp.temp = 0; // decode speed of greedy decoding
    cli_session e;
    if (cli_session_open(&e, &o, "bench")) return 1;
    aero_error err = {0};
    aero_generator_params gp;
    aero_generator_params_default(&gp);
    gp.ctx = e.ctx;
    gp.tok = aero_model_tokenizer(e.model);
    gp.ignore_eos = true; // measure every pass asked for
    aero_generator *g = NULL;
    if (aero_generator_new(&g, &gp, e.sampler, &err)) {
        cli_session_close(&e);
        return cli_fail("bench", "%s", err.msg);
    }
    const char *arch = aero_model_arch(e.model);
    int n_layer = aero_model_n_layer(e.model), n_embd = aero_model_n_embd(e.model);
    aero_stream *s = aero_model_stream(e.model);
    const aero_stream_plan *plan = aero_stream_get_plan(s);
    const char *path = aero_model_path(e.model);
    bool streamed = plan->streamed_bytes > 0;
    int threads = aero_model_n_threads(e.model);
    double prefill_s = 0, decode_s = 0;
    aero_stream_reset_stats(s);
    if (run_prefill(&e, g, n_prompt, &prefill_s, &err)) {
        aero_generator_free(g);
        cli_session_close(&e);
        return cli_fail("bench", "prefill: %s", err.msg[0] ? err.msg : "out of memory");
    }
    aero_stream_stats pre;
    aero_stream_get_stats(s, &pre);
    // the disk is shared and drifts: measure it just before and just after the decode, use the mean
    double disk_before = streamed ? measure_disk(s) : 0;
    // one token first, not counted: the probe leaves the window refilling, a head start no pass gets later
    double warm_s;
    if (run_decode(g, 1, &warm_s, &err)) {
        aero_generator_free(g);
        cli_session_close(&e);
        return cli_fail("bench", "decode: %s", err.msg[0] ? err.msg : "out of memory");
    }
    aero_stream_reset_stats(s);
    aero_model_expert_stats_reset(e.model);
    aero_pipeline_reset_stats();
    if (run_decode(g, n_gen, &decode_s, &err)) {
        aero_generator_free(g);
        cli_session_close(&e);
        return cli_fail("bench", "decode: %s", err.msg[0] ? err.msg : "out of memory");
    }
    aero_stream_stats dec;
    aero_stream_get_stats(s, &dec);
    double io_pass = 0;
    if (streamed && run_io_passes(s, n_layer, 3, &io_pass, &err)) {
        aero_generator_free(g);
        cli_session_close(&e);
        return cli_fail("bench", "IO-only passes: %s", err.msg);
    }
    double disk_after = streamed ? measure_disk(s) : 0;
    double disk_probe = disk_before > 0 && disk_after > 0 ? (disk_before + disk_after) / 2 : disk_before + disk_after;
    aero_stream_set_disk_bw(s, disk_probe);
    // the floor: the best of the probes and of the passes' own IO rates, so that no pass beats it
    aero_stream_disk_spread dsp = {0};
    double disk_bw = streamed ? aero_stream_disk_floor_bw(s, &dsp) : 0;
    uint64_t peak_rss = aero_peak_rss(); // of the runs, before any measurement buffer
    // memory bandwidth: over the engine's own largest buffer when under a budget, else a fresh 512 MB
    aero_pool *mpool = aero_pool_new(threads);
    double mem_bw = 0;
    if (mpool) {
        if (o.mem) mem_bw = aero_stream_measure_mem_bw(s, mpool);
        if (mem_bw <= 0) mem_bw = aero_measure_mem_bw(mpool, o.mem ? 64ull << 20 : 512ull << 20);
    }
    aero_pool_free(mpool);
    uint64_t model_bytes = aero_model_weight_bytes(e.model);
    // decode reads every resident weight once per token from memory (not the embedding rows held for lookups)
    // and every streamed weight from disk
    uint64_t pass_resident = plan->resident_bytes - plan->embd_bytes;
    double mem_floor = mem_bw > 0 ? (double)pass_resident / mem_bw : 0;
    double disk_floor = disk_bw > 0 ? (double)plan->streamed_bytes / disk_bw : 0;
    double floor = mem_floor > disk_floor ? mem_floor : disk_floor;
    // a pass cannot be faster than its IO or its compute: how well the two overlap
    double dec_pass = dec.passes ? dec.wall_s / dec.passes : decode_s;
    double dec_compute = dec.passes ? dec.compute_s / dec.passes : 0;
    double bound = dec_compute > disk_floor ? dec_compute : disk_floor;
    double pre_floor = disk_bw > 0 ? (double)pre.passes * plan->streamed_bytes / disk_bw : 0;
    if (o.json) {
        printf(
            "{\"model\":\"%s\",\"arch\":\"%s\",\"n_layer\":%d,\"n_embd\":%d,\"model_bytes\":%llu,"
            "\"threads\":%d,\"isa\":\"%s\",\"mem_budget\":%llu,\"resident_bytes\":%llu,\"streamed_bytes_per_pass\":%llu,"
            "\"window_bytes\":%llu,\"prefetch\":%d,\"io_threads\":%d,\"direct\":%s,\"pinned_units\":%d,"
            "\"streamed_units\":%d,\"mem_bw_gbs\":%.3f,\"disk_bw_gbs\":%.3f,\"disk_bw_before_gbs\":%.3f,"
            "\"disk_bw_after_gbs\":%.3f,\"disk_bw_probe_gbs\":%.3f,\"io_rate_passes\":%d,\"io_rate_min_gbs\":%.3f,"
            "\"io_rate_median_gbs\":%.3f,\"io_rate_max_gbs\":%.3f,\"prefill_tokens\":%d,\"prefill_s\":%.6f,"
            "\"prefill_tok_s\":%.3f,\"prefill_passes\":%llu,\"prefill_io_wait_s\":%.6f,\"prefill_disk_floor_s\":%.6f,"
            "\"decode_tokens\":%d,\"decode_s_per_token\":%.6f,"
            "\"decode_tok_s\":%.3f,\"decode_floor_s\":%.6f,\"decode_over_floor\":%.3f,\"decode_disk_floor_s\":%.6f,"
            "\"decode_pass_s\":%.6f,\"decode_pass_over_disk_floor\":%.3f,\"decode_compute_s\":%.6f,"
            "\"decode_pass_over_max_io_compute\":%.3f,\"io_only_pass_s\":%.6f,\"io_only_over_disk_floor\":%.3f,"
            "\"decode_io_wait_s\":%.6f,\"decode_io_busy_s\":%.6f,\"decode_bytes_streamed\":%llu,\"peak_rss\":%llu",
            path, arch, n_layer, n_embd, (unsigned long long)model_bytes, threads, aero_kernels_isa_name(),
            (unsigned long long)o.mem, (unsigned long long)plan->resident_bytes,
            (unsigned long long)plan->streamed_bytes, (unsigned long long)plan->window_bytes, plan->prefetch,
            plan->io_threads, plan->direct ? "true" : "false", plan->n_pinned, plan->n_streamed, mem_bw / 1e9,
            disk_bw / 1e9, disk_before / 1e9, disk_after / 1e9, disk_probe / 1e9, dsp.n_passes, dsp.min / 1e9,
            dsp.median / 1e9, dsp.max / 1e9, n_prompt, prefill_s, n_prompt / prefill_s, (unsigned long long)pre.passes,
            pre.wait_s, pre_floor, n_gen, decode_s, 1 / decode_s, floor, floor > 0 ? decode_s / floor : 0, disk_floor,
            dec_pass, disk_floor > 0 ? dec_pass / disk_floor : 0, dec_compute, bound > 0 ? dec_pass / bound : 0,
            io_pass, disk_floor > 0 ? io_pass / disk_floor : 0, dec.wait_s / n_gen, dec.io_busy_s / n_gen,
            (unsigned long long)dec.bytes_streamed, (unsigned long long)peak_rss);
        aero_pipeline_stats ps;
        if (aero_pipeline_get_stats(e.model, &ps)) // the decode's figures under mpirun (rank 0's side)
            printf(",\"pipe_ranks\":%d,\"pipe_rank0_layers\":%d,\"pipe_sent_bytes_per_token\":%.1f,"
                   "\"pipe_recv_bytes_per_token\":%.1f,\"pipe_messages_per_token\":%.2f,\"pipe_mpi_wait_s_per_token\":%.6f",
                   ps.ranks, ps.layer_last - ps.layer_first, (double)ps.bytes_sent / n_gen, (double)ps.bytes_recv / n_gen,
                   (double)ps.messages / n_gen, ps.mpi_wait_s / n_gen);
        printf("}\n");
    } else {
        printf("model      %s (%s, %d layers, dim %d, %.1f MB of weights)\n", path, arch, n_layer, n_embd,
               model_bytes / 1e6);
        printf("threads    %d (%s)\n", threads, aero_kernels_isa_name());
        printf("plan       resident %.1f MB, streamed %.1f MB per pass%s\n", plan->resident_bytes / 1e6,
               plan->streamed_bytes / 1e6, o.mem ? "" : " (no --mem: all resident)");
        if (streamed)
            printf(
                "stream     %d units pinned, %d streamed through a %.1f MB window (prefetch %d), %d IO threads, %s\n",
                plan->n_pinned, plan->n_streamed, plan->window_bytes / 1e6, plan->prefetch, plan->io_threads,
                plan->direct ? "O_DIRECT" : "buffered + FADV_DONTNEED");
        printf("memory bw  %.2f GB/s (read, measured now)\n", mem_bw / 1e9);
        if (disk_bw > 0)
            printf(
                "disk bw    %.2f GB/s for the floor: the best of the probe (O_DIRECT reads of the streamed data: %.2f "
                "before decode, %.2f after) and the IO threads' rate over %d passes (min %.2f, median %.2f, max %.2f)\n",
                disk_bw / 1e9, disk_before / 1e9, disk_after / 1e9, dsp.n_passes, dsp.min / 1e9, dsp.median / 1e9,
                dsp.max / 1e9);
        printf("prefill    %d tokens in %.3f s = %.1f tok/s (%llu passes", n_prompt, prefill_s, n_prompt / prefill_s,
               (unsigned long long)pre.passes);
        if (streamed) printf(", disk floor %.3f s, waited for IO %.3f s", pre_floor, pre.wait_s);
        printf(")\n");
        printf("decode     %.2f ms/token = %.2f tok/s\n", decode_s * 1e3, 1 / decode_s);
        printf("floor      %.2f ms/token (resident bytes / memory bw %.2f ms, streamed bytes / disk bw %.2f ms)\n",
               floor * 1e3, mem_floor * 1e3, disk_floor * 1e3);
        printf("ratio      decode / floor = %.2f\n", floor > 0 ? decode_s / floor : 0);
        if (streamed) {
            printf("pass       %.2f ms per decode pass = %.2f x the disk floor; compute %.2f ms per pass, so "
                   "pass / max(disk floor, compute) = %.2f\n",
                   dec_pass * 1e3, disk_floor > 0 ? dec_pass / disk_floor : 0, dec_compute * 1e3,
                   bound > 0 ? dec_pass / bound : 0);
            printf("io only    %.2f ms per pass with no compute = %.2f x the disk floor (the streamer alone)\n",
                   io_pass * 1e3, disk_floor > 0 ? io_pass / disk_floor : 0);
            printf("stream     %.1f MB streamed per token, waited for IO %.2f ms/token, IO busy %.2f ms/token\n",
                   dec.bytes_streamed / 1e6 / n_gen, dec.wait_s * 1e3 / n_gen, dec.io_busy_s * 1e3 / n_gen);
        }
        aero_model_print_expert_stats(e.model, n_gen, stdout);
        aero_pipeline_print_stats(e.model, n_gen, stdout);
        printf("peak RSS   %.1f MB (prefill and decode)\n", peak_rss / 1e6);
        if (o.stats) aero_stream_print_stats(s, stdout);
    }
    aero_generator_free(g);
    cli_session_close(&e);
    return 0;
}
