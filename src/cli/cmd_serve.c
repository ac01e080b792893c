// `aerollm serve`: the OpenAI-compatible server. Listens at once (/health is 503 while the model loads in a
// background thread), then serves until SIGINT/SIGTERM and shuts down cleanly.
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common.h"

// Flags of serve, then the flags shared with run.
static void usage(void) {
    printf("usage: aerollm serve -m MODEL [--host H] [--port P] [--parallel N] [options]\n"
           "  -m MODEL              GGUF file\n"
           "  --host H              address to listen on (default 127.0.0.1)\n"
           "  --port P              port (default 8080; 0 = any free port, printed at start)\n"
           "  -np, --parallel N     sequences generated at once, batched in every pass (default 4)\n"
           "  --queue N             requests waiting for a free sequence before answering 503 (default 64)\n"
           "  --api-key KEY         require 'Authorization: Bearer KEY' (also read from AEROLLM_API_KEY)\n"
           "  --alias NAME          model id reported by /v1/models (default: the file name)\n"
           "  --timeout S           limit on receiving a whole request, and on idle connections (default 600)\n"
           "  --shutdown-timeout S  on SIGTERM/SIGINT, how long requests in flight may finish (default 30)\n"
           "  --slot-save-path DIR  POST /slots/ID?action=save|restore|erase {\"filename\": F}: a sequence's KV\n"
           "                        cache saved to or restored from DIR/F (llama-server's slot files)\n"
           "  --max-body SIZE       request body limit (default 8M)\n"
           "  --files-dir DIR       /v1/files and batch output files live in DIR and outlive the server (default: a\n"
           "                        temporary directory removed at stop); POST /v1/batches runs them\n"
           "  --max-file-size SIZE  upload limit of POST /v1/files (default 256M)\n"
           "  --chat-template-file F  chat template overriding the model's\n"
           "  --quiet               no per-request log lines\n"
           "  --draft MODEL|ngram   speculative decoding for every request (greedy and sampled, lossless); one pass\n"
           "                        verifies every sequence's draft (--draft-max/-min/-tree/-fixed as in run)\n"
           "  --draft-head FILE     the same with a draft head trained for the model (one copy for every sequence)\n"
           "  --embeddings          answer /v1/embeddings (mean-pooled, L2-normalized last hidden state)\n"
           "  -c N                  context per sequence (default: the model's, at most 4096)\n"
           "  sampling flags set the defaults for fields a request leaves out\n");
    cli_common_usage();
}

typedef struct {
    aero_server *srv;
    pthread_t main_thread;
    aero_error err;
    aero_status st;
    volatile int done;
} loader;

// Loads the model off the main thread so the server answers /health (503) meanwhile.
static void *load_main(void *arg) {
    loader *l = arg;
    l->st = aero_server_load(l->srv, &l->err);
    l->done = 1;
    if (l->st) pthread_kill(l->main_thread, SIGUSR1);
    else fprintf(stderr, "aerollm serve: model loaded, ready\n");
    return NULL;
}

// Integer flag values with a range, for serve's own flags.
static bool parse_int(const char *flag, const char *v, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        cli_fail("serve", "%s expects an integer in [%ld, %ld], got '%s'", flag, lo, hi, v);
        return false;
    }
    *out = (int)x;
    return true;
}

// Parses flags, starts listening, loads the model in the background, serves until a signal.
int aero_cmd_serve(int argc, char **argv) {
    cli_opts o;
    cli_opts_default(&o);
    aero_server_params p;
    aero_server_params_default(&p);
    p.api_key = getenv("AEROLLM_API_KEY");
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            usage();
            return 0;
        }
        if (!strcmp(f, "--quiet")) {
            p.quiet = true;
            continue;
        }
        if (!strcmp(f, "--embeddings") || !strcmp(f, "--embedding")) {
            p.embeddings = true;
            continue;
        }
        static const char *own[] = {"--host",
                                    "--port",
                                    "-np",
                                    "--parallel",
                                    "--queue",
                                    "--api-key",
                                    "--alias",
                                    "--timeout",
                                    "--max-body",
                                    "--chat-template-file",
                                    "--shutdown-timeout",
                                    "--slot-save-path",
                                    "--files-dir",
                                    "--max-file-size",
                                    NULL};
        bool mine = false;
        for (int k = 0; own[k]; k++) mine |= !strcmp(f, own[k]);
        if (mine) {
            if (i + 1 >= argc) return cli_fail("serve", "%s needs a value", f);
            const char *v = argv[++i];
            bool ok = true;
            if (!strcmp(f, "--host")) p.host = v;
            else if (!strcmp(f, "--port")) ok = parse_int(f, v, 0, 65535, &p.port);
            else if (!strcmp(f, "-np") || !strcmp(f, "--parallel")) ok = parse_int(f, v, 1, 256, &p.parallel);
            else if (!strcmp(f, "--queue")) ok = parse_int(f, v, 0, 100000, &p.max_queue);
            else if (!strcmp(f, "--api-key")) p.api_key = v;
            else if (!strcmp(f, "--alias")) p.alias = v;
            else if (!strcmp(f, "--timeout")) ok = parse_int(f, v, 0, 86400, &p.timeout_s);
            else if (!strcmp(f, "--shutdown-timeout")) ok = parse_int(f, v, 0, 86400, &p.shutdown_timeout_s);
            else if (!strcmp(f, "--chat-template-file")) p.chat_template_file = v;
            else if (!strcmp(f, "--slot-save-path")) p.slot_save_path = v;
            else if (!strcmp(f, "--files-dir")) p.files_dir = v;
            else if (!strcmp(f, "--max-file-size")) {
                uint64_t sz;
                if (!aero_parse_size(v, &sz) || sz < 1024 || sz > (1ull << 36))
                    return cli_fail("serve", "--max-file-size expects a size between 1K and 64G, got '%s'", v);
                p.max_file = (size_t)sz;
            }
            else if (!strcmp(f, "--max-body")) {
                uint64_t sz;
                if (!aero_parse_size(v, &sz) || sz < 1024 || sz > (1ull << 32))
                    return cli_fail("serve", "--max-body expects a size between 1K and 4G, got '%s'", v);
                p.max_body = (size_t)sz;
            }
            if (!ok) return 1;
            continue;
        }
        if ((!strcmp(f, "-m") || !strcmp(f, "--model")) && o.model) // one server serves one model
            return cli_fail("serve", "-m given twice ('%s', then '%s'): serve takes one model", o.model,
                            i + 1 < argc ? argv[i + 1] : "");
        int used = cli_opts_parse(&o, "serve", argc, argv, i);
        if (used < 0) return 1;
        if (used == 0) return cli_fail("serve", "unknown argument '%s' (see aerollm serve --help)", f);
        i += used - 1;
    }
    if (o.prompt || o.prompt_file) return cli_fail("serve", "-p/-f do not apply to serve: prompts come in requests");
    if (o.draft && o.draft_head) return cli_fail("serve", "--draft and --draft-head exclude each other");
    if ((o.draft || o.draft_head) && o.draft_min > o.draft_max)
        return cli_fail("serve", "--draft-min %d exceeds --draft-max %d", o.draft_min, o.draft_max);
    const char *path = o.model ? o.model : cli_default_model();
    if (!path) return cli_fail("serve", "no model given (-m MODEL.gguf)");
    p.model.path = path;
    p.model.mem_budget = o.mem;
    p.model.n_threads = o.n_threads;
    p.model.prefetch = o.prefetch;
    p.model.io_threads = o.io_threads;
    p.model.device = o.device ? o.device : aero_default_device(); // the server computes where run would
    p.model.gpu_mem = o.gpu_mem;
    p.model.pipeline = true; // split across the ranks under mpirun
    p.model.pipe_split = o.pipe_split;
    p.model.pipe_micro = o.pipe_micro;
    p.n_ctx = o.n_ctx;
    p.n_batch = o.n_batch;
    p.kv_f32 = o.kv_f32;
    p.type_k = (aero_kv_type)o.type_k;
    p.type_v = (aero_kv_type)o.type_v;
    p.kv_recent = o.kv_recent;
    p.defaults = o.sp;
    p.draft = o.draft;
    cli_spec_params(&o, &p.spec);
    p.spec.draft_head = o.draft_head;
    p.draft_threads = o.draft_threads;

    // Signals are taken synchronously by this thread; every other thread inherits the blocked mask.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    aero_error err = {0};
    aero_server *srv;
    if (aero_server_start(&srv, &p, &err)) return cli_fail("serve", "%s", err.msg);
    fprintf(stderr, "aerollm serve: listening on http://%s:%d (model %s loading)\n", p.host, aero_server_port(srv),
            path);
    loader l = {.srv = srv, .main_thread = pthread_self()};
    pthread_t th;
    if (pthread_create(&th, NULL, load_main, &l) != 0) {
        aero_server_stop(srv);
        return cli_fail("serve", "cannot start the loader thread");
    }
    int sig = 0;
    sigwait(&set, &sig);
    if (!l.done) {
        // Loading cannot be interrupted; leave without tearing down what the loader is still using.
        fprintf(stderr, "aerollm serve: interrupted while loading\n");
        return 130;
    }
    pthread_join(th, NULL);
    int rc = 0;
    if (l.st) rc = cli_fail("serve", "%s", l.err.msg);
    else fprintf(stderr, "aerollm serve: %s, shutting down\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    aero_server_stop(srv);
    return rc;
}
