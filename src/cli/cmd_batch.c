// `aerollm batch -m MODEL IN.jsonl -o OUT.jsonl`: an OpenAI Batch input answered offline, many requests decoded
// together in each pass over the weights; the job itself is the library's (aero_batch_job_run).
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common.h"

// Prints the help.
static void usage(void) {
    printf("usage: aerollm batch [-m MODEL] IN.jsonl -o OUT.jsonl [options]\n"
           "  IN.jsonl            OpenAI Batch input: one {\"custom_id\", \"method\": \"POST\", \"url\":\n"
           "                      \"/v1/chat/completions\" | \"/v1/completions\", \"body\"} per line\n"
           "  -o OUT.jsonl        OpenAI Batch output: one {\"id\", \"custom_id\", \"response\": {\"status_code\",\n"
           "                      \"request_id\", \"body\"}, \"error\"} per request, appended and flushed as each ends\n"
           "  --resume            continue an interrupted job: keep OUT's complete lines, skip their custom_ids\n"
           "  -np, --parallel N   requests decoded together in each pass (default: as many as --mem leaves room\n"
           "                      for, at most 64; 16 without --mem); each holds a KV sequence of -c tokens\n"
           "  --alias NAME        the model name in the responses (default: the model file's name)\n"
           "  --chat-template-file FILE   chat template (default: the model's own)\n"
           "  --quiet             no progress line on stderr\n");
    cli_common_usage();
}

// The largest number of sequences (at most 64) whose KV caches take at most half of --mem and leave the
// weights a share the streamer accepts: throughput grows with the sequences each pass carries.
static int auto_parallel(const cli_opts *o, const aero_model_params *mp, const aero_ctx_params *cp0) {
    if (!o->mem) return 16;
    int best = 1;
    for (int n = 1; n <= 64; n++) {
        aero_ctx_params cp = *cp0;
        cp.n_seq = n;
        aero_mem_split ms;
        aero_error err = {0};
        if (aero_mem_split_plan(&ms, mp, &cp, 0, &err) || ms.kv_bytes > o->mem / 2) break;
        best = n;
    }
    return best;
}

// Entry point: flags, then the job.
int aero_cmd_batch(int argc, char **argv) {
    cli_opts o;
    cli_opts_default(&o);
    aero_batch_job_params p;
    aero_batch_job_params_default(&p);
    int parallel = 0;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            usage();
            return 0;
        }
        if (!strcmp(f, "--resume")) {
            p.resume = true;
            continue;
        }
        if (!strcmp(f, "--quiet")) {
            p.progress = false;
            continue;
        }
        if (!strcmp(f, "-o") || !strcmp(f, "--output") || !strcmp(f, "-np") || !strcmp(f, "--parallel") ||
            !strcmp(f, "--alias") || !strcmp(f, "--chat-template-file")) {
            if (i + 1 >= argc) return cli_fail("batch", "%s needs a value", f);
            const char *v = argv[++i];
            if (!strcmp(f, "-o") || !strcmp(f, "--output")) p.output = v;
            else if (!strcmp(f, "--alias")) p.server.alias = v;
            else if (!strcmp(f, "--chat-template-file")) p.server.chat_template_file = v;
            else {
                char *end;
                errno = 0;
                long n = strtol(v, &end, 10);
                if (errno || end == v || *end || n < 1 || n > 256)
                    return cli_fail("batch", "%s expects an integer in [1, 256], got '%s'", f, v);
                parallel = (int)n;
            }
            continue;
        }
        int used = cli_opts_parse(&o, "batch", argc, argv, i);
        if (used < 0) return 1;
        if (used > 0) {
            i += used - 1;
            continue;
        }
        if (f[0] == '-' && f[1]) return cli_fail("batch", "unknown argument '%s' (see aerollm batch --help)", f);
        if (p.input) return cli_fail("batch", "one input file, got '%s' and '%s'", p.input, f);
        p.input = f;
    }
    if (!p.input) return cli_fail("batch", "no input file (aerollm batch -m MODEL IN.jsonl -o OUT.jsonl)");
    if (!p.output) return cli_fail("batch", "no output file (-o OUT.jsonl)");
    if (o.prompt || o.prompt_file) return cli_fail("batch", "-p/-f do not apply to batch: prompts come in IN.jsonl");
    if (o.draft || o.draft_head) return cli_fail("batch", "--draft is not supported by batch yet");
    if (o.prompt_cache) return cli_fail("batch", "--prompt-cache does not apply to batch");
    const char *path = o.model ? o.model : cli_default_model();
    if (!path) return cli_fail("batch", "no model given (-m MODEL.gguf)");
    aero_server_params *sp = &p.server;
    sp->model.path = path;
    sp->model.mem_budget = o.mem;
    sp->model.n_threads = o.n_threads;
    sp->model.prefetch = o.prefetch;
    sp->model.io_threads = o.io_threads;
    sp->model.device = o.device ? o.device : aero_default_device();
    sp->model.gpu_mem = o.gpu_mem;
    sp->model.pipeline = true; // split across the ranks under mpirun
    sp->model.pipe_split = o.pipe_split;
    sp->model.pipe_micro = o.pipe_micro;
    sp->n_ctx = o.n_ctx;
    sp->n_batch = o.n_batch;
    sp->kv_f32 = o.kv_f32;
    sp->type_k = (aero_kv_type)o.type_k;
    sp->type_v = (aero_kv_type)o.type_v;
    sp->kv_recent = o.kv_recent;
    sp->defaults = o.sp;
    sp->quiet = true;
    if (!parallel) {
        aero_ctx_params cp = {.n_ctx = o.n_ctx,
                              .n_seq = 1,
                              .kv_f32 = o.kv_f32,
                              .type_k = (aero_kv_type)o.type_k,
                              .type_v = (aero_kv_type)o.type_v,
                              .kv_recent = o.kv_recent,
                              .n_batch = o.n_batch};
        parallel = auto_parallel(&o, &sp->model, &cp);
    }
    sp->parallel = parallel;
    aero_batch_job_stats st;
    aero_error err = {0};
    if (aero_batch_job_run(&p, &st, &err)) return cli_fail("batch", "%s", err.msg);
    if (p.progress)
        fprintf(stderr,
                "batch: %d answered (%d errors), %d skipped as already answered; %llu prompt + %llu generated tokens "
                "in %.2f s (%.1f generated tok/s)\n",
                st.n_done, st.n_errors, st.n_skipped, (unsigned long long)st.prompt_tokens,
                (unsigned long long)st.completion_tokens, st.seconds,
                st.seconds > 0 ? st.completion_tokens / st.seconds : 0.0);
    return 0;
}
