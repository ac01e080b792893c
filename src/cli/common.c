// Shared CLI plumbing: flag parsing, opening a model, the plain generation loop.
#include "common.h"

#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

// The defaults every command starts from before its own flags (and its own defaults, e.g. chat's -n 512).
void cli_opts_default(cli_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_predict = 128;
    o->n_batch = 512;
    aero_sampler_params_default(&o->sp);
    o->draft_max = 16;
    o->draft_min = 0;
    o->draft_p_min = 0.0f;
}

// The help lines of the flags cli_opts_parse knows, printed under each command's own usage.
void cli_common_usage(void) {
    printf("common options:\n"
           "  -t N                compute threads (default: all CPUs)\n"
           "  -c N                context size (default: the model's, at most 4096)\n"
           "  -b N                tokens computed at once in a layer (default 512); a prompt is prefilled in one\n"
           "                      pass over the weights (serve: up to 4 x N prompt tokens a pass)\n"
           "  --mem SIZE          weight memory budget (e.g. 512M, 8G); layers beyond it are streamed from disk\n"
           "  --device cpu|cuda   where to compute (default: cuda when built with it and a GPU is present)\n"
           "  --gpu-mem SIZE      VRAM budget; layers beyond it are streamed from host memory over PCIe\n"
           "  --prefetch N        layers read ahead when streaming (default 2)\n"
           "  --io-threads N      IO threads when streaming (default 4)\n"
           "  --temp T --top-k K --top-p P --min-p P --repeat-penalty R --repeat-last-n N\n"
           "  --presence-penalty P --frequency-penalty P --seed S     sampling (--temp 0: greedy)\n"
           "  --kv-f32            F32 KV cache (default F16)\n"
           "  -ctk, --cache-type-k T, -ctv, --cache-type-v T   KV cache types: f32, f16 (default), bf16, q8_0, q4_0,\n"
           "                      q4_1, q5_0, q5_1; the cache is counted inside --mem\n"
           "  --kv-recent N       a quantized cache keeps F16 copies of each query's last N positions\n"
           "  --draft MODEL|ngram speculative decoding with a draft model or prompt-lookup n-grams\n"
           "  --draft-head FILE   speculative decoding with a draft head trained for the model (train/train_head.py):\n"
           "                      one layer drafting from the model's own hidden states\n"
           "  --draft-max K       longest draft (default 16); the length adapts to measured acceptance and costs\n"
           "  --draft-min K       shortest draft --draft-p-min may cut (and the least the adaptive length picks)\n"
           "  --draft-p-min P     stop drafting when the drafter's confidence falls below P\n"
           "  --draft-fixed       always draft --draft-max tokens (no adaptive length)\n"
           "  --draft-tree N      draft a tree of up to N nodes (depth <= --draft-max), verified in one pass\n"
           "  --draft-policy P    trees: best-first (default: the N most probable nodes) or cost (grown while a\n"
           "                      node's estimated acceptance beats its measured cost; N defaults to 128)\n"
           "  --draft-costs V,D   cost policy: fixed costs instead of measured ones, in one-token target passes:\n"
           "                      V per extra verified token, D per token fed to the drafter (reproducible)\n"
           "  --draft-threads N   drafter compute threads (default: as -t)\n"
           "  --prompt-cache FILE run/chat: save the prompt's KV cache after prefill; a later run whose prompt starts\n"
           "                      with the saved tokens loads it and prefills only the rest (same model, -ctk/-ctv)\n"
           "  --prompt-cache-ro   use the --prompt-cache file but never write it\n"
           "  --split A,B,...     under mpirun -np N: each rank's share of the layers' bytes (default: equal)\n"
           "  --pipe-micro N      under mpirun: micro-batches a pass is cut into (default: the ranks when rank 0's\n"
           "                      layers are resident, else 1)\n");
}

// Parses an int flag value within [lo, hi].
static bool parse_int(const char *cmd, const char *flag, const char *s, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        cli_fail(cmd, "%s expects an integer in [%d, %d], got '%s'", flag, lo, hi, s);
        return false;
    }
    *out = (int)v;
    return true;
}

// Parses a float flag value within [lo, hi].
static bool parse_float(const char *cmd, const char *flag, const char *s, float lo, float hi, float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        cli_fail(cmd, "%s expects a number in [%g, %g], got '%s'", flag, lo, hi, s);
        return false;
    }
    *out = (float)v;
    return true;
}

// One parser for the llama.cpp-style flags run, chat, bench and perplexity share.
int cli_opts_parse(cli_opts *o, const char *cmd, int argc, char **argv, int i) {
    const char *f = argv[i];
    // flags without a value
    if (!strcmp(f, "--stats")) return o->stats = true, 1;
    if (!strcmp(f, "--no-bos")) return o->no_bos = true, 1;
    if (!strcmp(f, "--ignore-eos")) return o->ignore_eos = true, 1;
    if (!strcmp(f, "--kv-f32")) return o->kv_f32 = true, 1;
    if (!strcmp(f, "--json")) return o->json = true, 1;
    if (!strcmp(f, "--draft-fixed")) return o->draft_fixed = true, 1;
    if (!strcmp(f, "--prompt-cache-ro")) return o->prompt_cache_ro = true, 1;
    static const char *with_value[] = {"-m",
                                       "--model",
                                       "-p",
                                       "--prompt",
                                       "-f",
                                       "--file",
                                       "-n",
                                       "--n-predict",
                                       "-t",
                                       "--threads",
                                       "-c",
                                       "--ctx-size",
                                       "-b",
                                       "--batch-size",
                                       "--mem",
                                       "--prefetch",
                                       "--io-threads",
                                       "--temp",
                                       "--top-k",
                                       "--top-p",
                                       "--min-p",
                                       "--repeat-penalty",
                                       "--repeat-last-n",
                                       "--presence-penalty",
                                       "--frequency-penalty",
                                       "--seed",
                                       "--draft",
                                       "-md",
                                       "--model-draft",
                                       "--draft-max",
                                       "--draft-head",
                                       "--draft-min",
                                       "--draft-p-min",
                                       "--draft-tree",
                                       "--draft-threads",
                                       "--draft-policy",
                                       "--draft-costs",
                                       "-td",
                                       "-ctk",
                                       "--cache-type-k",
                                       "-ctv",
                                       "--cache-type-v",
                                       "--kv-recent",
                                       "--device",
                                       "--gpu-mem",
                                       "--prompt-cache",
                                       "--split",
                                       "--pipe-micro",
                                       NULL};
    bool known = false;
    for (int k = 0; with_value[k]; k++) known |= !strcmp(f, with_value[k]);
    if (!known) return 0;
    if (i + 1 >= argc) return cli_fail(cmd, "%s needs a value", f), -1;
    const char *v = argv[i + 1];
    bool ok = true;
    int tmp;
    if (!strcmp(f, "-m") || !strcmp(f, "--model")) o->model = v;
    else if (!strcmp(f, "-p") || !strcmp(f, "--prompt")) o->prompt = v;
    else if (!strcmp(f, "-f") || !strcmp(f, "--file")) o->prompt_file = v;
    else if (!strcmp(f, "-n") || !strcmp(f, "--n-predict")) ok = parse_int(cmd, f, v, 0, 1 << 24, &o->n_predict);
    else if (!strcmp(f, "-t") || !strcmp(f, "--threads")) ok = parse_int(cmd, f, v, 1, 1024, &o->n_threads);
    else if (!strcmp(f, "-c") || !strcmp(f, "--ctx-size")) ok = parse_int(cmd, f, v, 0, 1 << 24, &o->n_ctx);
    else if (!strcmp(f, "-b") || !strcmp(f, "--batch-size")) ok = parse_int(cmd, f, v, 1, 1 << 16, &o->n_batch);
    else if (!strcmp(f, "--mem")) {
        if (!(ok = aero_parse_size(v, &o->mem))) cli_fail(cmd, "--mem expects a size like 512M or 8G, got '%s'", v);
    } else if (!strcmp(f, "--gpu-mem")) {
        if (!(ok = aero_parse_size(v, &o->gpu_mem))) cli_fail(cmd, "--gpu-mem expects a size like 8G, got '%s'", v);
    } else if (!strcmp(f, "--device")) {
        if (!(ok = !strcmp(v, "cpu") || !strcmp(v, "cuda"))) cli_fail(cmd, "--device expects cpu or cuda, got '%s'", v);
        o->device = v;
    } else if (!strcmp(f, "--prefetch")) ok = parse_int(cmd, f, v, 1, 64, &o->prefetch);
    else if (!strcmp(f, "--io-threads")) ok = parse_int(cmd, f, v, 1, 64, &o->io_threads);
    else if (!strcmp(f, "--split")) o->pipe_split = v;
    else if (!strcmp(f, "--pipe-micro")) ok = parse_int(cmd, f, v, 1, 31, &o->pipe_micro);
    else if (!strcmp(f, "--temp")) ok = parse_float(cmd, f, v, 0, 100, &o->sp.temp);
    else if (!strcmp(f, "--top-k")) ok = parse_int(cmd, f, v, 0, INT_MAX, &o->sp.top_k);
    else if (!strcmp(f, "--top-p")) ok = parse_float(cmd, f, v, 0, 1, &o->sp.top_p);
    else if (!strcmp(f, "--min-p")) ok = parse_float(cmd, f, v, 0, 1, &o->sp.min_p);
    else if (!strcmp(f, "--repeat-penalty")) ok = parse_float(cmd, f, v, 0, 100, &o->sp.repeat_penalty);
    else if (!strcmp(f, "--repeat-last-n")) ok = parse_int(cmd, f, v, 0, 4096, &o->sp.repeat_last_n);
    else if (!strcmp(f, "--presence-penalty")) ok = parse_float(cmd, f, v, -2, 2, &o->sp.presence_penalty);
    else if (!strcmp(f, "--frequency-penalty")) ok = parse_float(cmd, f, v, -2, 2, &o->sp.frequency_penalty);
    else if (!strcmp(f, "--seed")) {
        char *end;
        errno = 0;
        unsigned long long s = strtoull(v, &end, 10);
        if ((ok = !errno && end != v && !*end && v[0] != '-')) o->sp.seed = s;
        else cli_fail(cmd, "--seed expects a non-negative integer, got '%s'", v);
    } else if (!strcmp(f, "--draft") || !strcmp(f, "-md") || !strcmp(f, "--model-draft")) o->draft = v;
    else if (!strcmp(f, "--draft-head")) o->draft_head = v;
    else if (!strcmp(f, "--draft-max")) ok = parse_int(cmd, f, v, 1, 256, &o->draft_max);
    else if (!strcmp(f, "--draft-min")) ok = parse_int(cmd, f, v, 0, 256, &o->draft_min);
    else if (!strcmp(f, "--draft-p-min")) ok = parse_float(cmd, f, v, 0, 1, &o->draft_p_min);
    else if (!strcmp(f, "--draft-tree")) ok = parse_int(cmd, f, v, 2, 1024, &o->draft_tree);
    else if (!strcmp(f, "--draft-policy")) {
        if ((ok = !strcmp(v, "cost") || !strcmp(v, "best-first"))) o->draft_cost = !strcmp(v, "cost");
        else cli_fail(cmd, "--draft-policy expects best-first or cost, got '%s'", v);
    } else if (!strcmp(f, "--draft-costs")) {
        char *end;
        double cv = strtod(v, &end), cd = -1;
        if (*end == ',') cd = strtod(end + 1, &end);
        if ((ok = !*end && cv >= 0 && cd >= 0 && cv < 1e6 && cd < 1e6))
            o->draft_costs_fixed = true, o->draft_cost_v = (float)cv, o->draft_cost_d = (float)cd;
        else cli_fail(cmd, "--draft-costs expects V,D (two non-negative numbers, e.g. 0.02,0.05), got '%s'", v);
    } else if (!strcmp(f, "--draft-threads") || !strcmp(f, "-td")) ok = parse_int(cmd, f, v, 1, 1024, &o->draft_threads);
    else if (!strcmp(f, "--prompt-cache")) o->prompt_cache = v;
    else if (!strcmp(f, "--kv-recent")) ok = parse_int(cmd, f, v, 0, 1 << 20, &o->kv_recent);
    else if (!strcmp(f, "-ctk") || !strcmp(f, "--cache-type-k") || !strcmp(f, "-ctv") || !strcmp(f, "--cache-type-v")) {
        int t = aero_kv_type_parse(v);
        bool is_k = !strcmp(f, "-ctk") || !strcmp(f, "--cache-type-k");
        if ((ok = t > 0)) *(is_k ? &o->type_k : &o->type_v) = t;
        else cli_fail(cmd, "%s expects one of f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, got '%s'", f, v);
    }
    (void)tmp;
    return ok ? 2 : -1;
}

// Looks for models/*teacher*.gguf beside the executable, then where `make install` puts it (../share/aerollm
// from the executable), then in the working directory.
const char *cli_default_model(void) {
    static char found[PATH_MAX];
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char installed[PATH_MAX + 32]; // `make install` puts the models in PREFIX/share/aerollm, the binary in PREFIX/bin
    const char *dirs[3] = {NULL, NULL, "."};
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        dirs[0] = exe;
        snprintf(installed, sizeof installed, "%s/../share/aerollm", exe);
        dirs[1] = installed;
    }
    for (int d = 0; d < 3; d++) {
        if (!dirs[d]) continue;
        char pattern[PATH_MAX + 64];
        snprintf(pattern, sizeof pattern, "%s/models/*teacher*.gguf", dirs[d]);
        glob_t g;
        if (glob(pattern, 0, NULL, &g) == 0 && g.gl_pathc > 0) {
            snprintf(found, sizeof found, "%s", g.gl_pathv[0]);
            globfree(&g);
            return found;
        }
        globfree(&g);
    }
    return NULL;
}

// The --draft-* flags as the speculative decoder's parameters (sampling follows the target's).
void cli_spec_params(const cli_opts *o, aero_spec_params *p) {
    aero_spec_params_default(p);
    p->draft_max = o->draft_max;
    p->draft_min = o->draft_min;
    p->p_min = o->draft_p_min;
    p->tree_nodes = o->draft_tree > 0 || !o->draft_cost ? o->draft_tree : CLI_COST_TREE_DEFAULT;
    p->tree_policy = o->draft_cost ? AERO_SPEC_TREE_COST : AERO_SPEC_TREE_BEST_FIRST;
    p->cost_fixed = o->draft_costs_fixed;
    p->cost_verify_token = o->draft_cost_v;
    p->cost_draft_token = o->draft_cost_d;
    p->adaptive = !o->draft_fixed;
    p->n_batch = o->n_batch;
    p->sampling = o->sp;
}

int cli_draft_nodes(const cli_opts *o) {
    int tree = o->draft_tree > 0 || !o->draft_cost ? o->draft_tree : CLI_COST_TREE_DEFAULT;
    return tree > o->draft_max ? tree : o->draft_max;
}

// A draft head's memory beside the model of mp under context cp: host bytes (its weights, cache cells and scratch:
// inside --mem) and, when the model computes on the GPU, the VRAM its layer takes there (inside --gpu-mem).
static int head_mem(const cli_opts *o, const aero_model_params *mp, const aero_ctx_params *cp, uint64_t *host,
                    uint64_t *vram, const char *cmd) {
    aero_model_params probe = *mp; // no budget: only the context length is resolved
    probe.mem_budget = 0;
    aero_mem_split ms;
    aero_error err = {0};
    if (aero_mem_split_plan(&ms, &probe, cp, 0, &err) ||
        aero_spec_head_mem(o->draft_head, ms.n_ctx, 1, cli_draft_nodes(o), o->n_batch, !strcmp(mp->device, "cuda"),
                           host, vram, &err))
        return cli_fail(cmd, "%s", err.msg);
    return 0;
}

// Loads what a command generates with, the drafter's bytes taken out of --mem first so --mem bounds the process.
int cli_session_open(cli_session *e, const cli_opts *o, const char *cmd) {
    memset(e, 0, sizeof *e);
    const char *path = o->model ? o->model : cli_default_model();
    if (!path) return cli_fail(cmd, "no model given (-m MODEL.gguf) and no bundled model found under models/");
    aero_model_params mp;
    aero_model_params_default(&mp);
    mp.path = path;
    mp.mem_budget = o->mem;
    mp.n_threads = o->n_threads;
    mp.prefetch = o->prefetch;
    mp.io_threads = o->io_threads;
    mp.device = o->device ? o->device : aero_default_device();
    mp.gpu_mem = o->gpu_mem;
    mp.head_hot = o->draft_head != NULL; // the draft head projects through the output head every drafted token
    mp.pipeline = true; // split across the ranks when mpirun started several (the drafter stays on rank 0)
    mp.pipe_split = o->pipe_split;
    mp.pipe_micro = o->pipe_micro;
    aero_error err = {0};
    double t0 = aero_now();
    if ((o->draft || o->draft_head) && o->draft_min > o->draft_max)
        return cli_fail(cmd, "--draft-min %d exceeds --draft-max %d", o->draft_min, o->draft_max);
    if (o->draft && o->draft_head) return cli_fail(cmd, "--draft and --draft-head exclude each other");
    if (o->draft && strcmp(o->draft, "ngram")) {
        // the drafter is small and read every step: fully resident, with its own threads, and inside --mem
        aero_model_params dp;
        aero_model_params_default(&dp);
        dp.path = o->draft;
        dp.n_threads = o->draft_threads > 0 ? o->draft_threads : o->n_threads;
        dp.device = mp.device;
        if (aero_model_load(&e->draft, &dp, &err)) return cli_fail(cmd, "draft model %s: %s", o->draft, err.msg);
        e->draft_bytes = aero_model_weight_bytes(e->draft);
        if (o->mem && e->draft_bytes >= o->mem) {
            cli_session_close(e);
            return cli_fail(cmd,
                            "the draft model's weights take %.1f MB, all of --mem %.1f MB: nothing is left for "
                            "the model (raise --mem or use --draft ngram)",
                            e->draft_bytes / 1e6, o->mem / 1e6);
        }
    }
    aero_ctx_params cp = {.n_ctx = o->n_ctx,
                          .n_seq = 1,
                          .kv_f32 = o->kv_f32,
                          .type_k = (aero_kv_type)o->type_k,
                          .type_v = (aero_kv_type)o->type_v,
                          .kv_recent = o->kv_recent,
                          .n_batch = o->n_batch};
    if (o->draft_head) { // read every drafted token: resident, inside --mem like a drafter (and its layer's VRAM)
        if (head_mem(o, &mp, &cp, &e->draft_bytes, &cp.gpu_head_vram, cmd)) return 1;
        if (o->mem && e->draft_bytes >= o->mem)
            return cli_fail(cmd,
                            "the draft head takes %.1f MB (weights, cache cells, scratch), all of --mem %.1f MB: "
                            "nothing is left for the model (raise --mem or lower -c)",
                            e->draft_bytes / 1e6, o->mem / 1e6);
    }
    // the KV cache is allocated whole at start: inside --mem it comes out of the weights' share, as the drafter does
    aero_mem_split ms;
    if (aero_mem_split_plan_named(&ms, &mp, &cp, e->draft_bytes, o->draft_head ? "draft head" : "draft model", &err)) {
        cli_session_close(e);
        return cli_fail(cmd, "%s", err.msg);
    }
    e->kv_bytes = ms.kv_bytes;
    mp.mem_budget = ms.weight_budget;
    if (aero_model_load(&e->model, &mp, &err)) {
        cli_session_close(e);
        return cli_fail(cmd, "%s", err.msg);
    }
    if (aero_ctx_new(&e->ctx, e->model, &cp, &err)) {
        cli_session_close(e);
        return cli_fail(cmd, "%s", err.msg);
    }
    if (strcmp(mp.device, "cpu")) fprintf(stderr, "%s\n", aero_ctx_device(e->ctx));
    e->sampler = aero_sampler_new(&o->sp, aero_model_n_vocab(e->model));
    if (!e->sampler) {
        cli_session_close(e);
        return cli_fail(cmd, "out of memory");
    }
    if (o->draft || o->draft_head) {
        aero_spec_params sp;
        cli_spec_params(o, &sp);
        sp.draft_head = o->draft_head;
        if (aero_spec_new(&e->spec, e->ctx, 0, e->draft, &sp, &err)) {
            cli_session_close(e);
            return cli_fail(cmd, "%s: %s", o->draft ? o->draft : o->draft_head, err.msg);
        }
    }
    e->load_s = aero_now() - t0;
    return 0;
}

// Tells a --stats reader how --mem was split between the drafter and the model.
void cli_print_budget(const cli_session *e, const cli_opts *o, FILE *f) {
    char kv[128], draft[96] = "";
    int n_ctx = aero_ctx_n_ctx(e->ctx);
    snprintf(kv, sizeof kv, "KV cache %.1f MB (%d tokens, K %s, V %s: %.1f KB/token)", e->kv_bytes / 1e6, n_ctx,
             aero_dtype_name(aero_kv_type_dtype(o->type_k, o->kv_f32)),
             aero_dtype_name(aero_kv_type_dtype(o->type_v, o->kv_f32)), n_ctx ? e->kv_bytes / 1e3 / n_ctx : 0.0);
    if (e->draft || o->draft_head)
        snprintf(draft, sizeof draft, " + %s %.1f MB (resident)", e->draft ? "draft model" : "draft head",
                 e->draft_bytes / 1e6);
    if (o->mem)
        fprintf(f, "memory budget: --mem %.1f MB = %s%s + %.1f MB for the model's weights\n", o->mem / 1e6, kv, draft,
                (o->mem - e->draft_bytes - e->kv_bytes) / 1e6);
    else fprintf(f, "memory budget: no --mem; %s%s\n", kv, draft);
}

// Frees a session in the reverse order of opening (the drafter before the models it reads).
void cli_session_close(cli_session *e) {
    aero_spec_free(e->spec);
    aero_model_free(e->draft);
    aero_sampler_free(e->sampler);
    aero_ctx_free(e->ctx);
    aero_model_free(e->model);
    memset(e, 0, sizeof *e);
}

// One reader for -p and -f (run, bench --draft): core's whole-file reader, so the CLI keeps no reader of its own.
char *cli_read_prompt(const cli_opts *o, const char *cmd) {
    if (o->prompt && o->prompt_file) return cli_fail(cmd, "give -p or -f, not both"), NULL;
    if (!o->prompt_file) return strdup(o->prompt ? o->prompt : "");
    char *text = NULL;
    aero_error err = {0};
    if (aero_read_file(o->prompt_file, 0, &text, NULL, &err)) return cli_fail(cmd, "%s", err.msg), NULL;
    return text;
}

// The --stats block of speculative decoding, shared by run and bench --draft.
void cli_spec_print_stats(aero_spec *s, double gen_s, double t1_pass, FILE *f) {
    aero_spec_stats st;
    aero_spec_get_stats(s, &st);
    char what[160];
    aero_spec_describe(s, what, sizeof what);
    double passes = st.verify_passes ? (double)st.verify_passes : 1;
    fprintf(f, "speculative decoding: %s\n", what);
    fprintf(f, "  target passes     %llu prefill + %llu verify; %.2f tokens per verify pass (%llu tokens)\n",
            (unsigned long long)st.prefill_passes, (unsigned long long)st.verify_passes, st.generated / passes,
            (unsigned long long)st.generated);
    fprintf(f, "  drafted           %llu, accepted %llu: acceptance rate %.1f%%, %.2f accepted per pass\n",
            (unsigned long long)st.drafted, (unsigned long long)st.accepted,
            st.drafted ? 100.0 * st.accepted / st.drafted : 0.0, st.accepted / passes);
    fprintf(f,
            "  time              draft %.3f s (%.2f ms/pass, %llu drafter passes), verify %.3f s (%.2f ms/pass), "
            "accept %.3f s, prefill %.3f s\n",
            st.draft_s, st.draft_s * 1e3 / passes, (unsigned long long)st.draft_calls, st.verify_s,
            st.verify_s * 1e3 / passes, st.accept_s, st.prefill_s);
    fprintf(f,
            "  cost model        target pass %.3f ms + %.4f ms/token, drafter step %.3f ms, acceptance estimate %.2f, "
            "last draft size %d\n",
            st.pass_a * 1e3, st.pass_b * 1e3, st.draft_call_s * 1e3, st.alpha, st.draft_len);
    if (st.tree_expected > 0)
        fprintf(f, "  tree by cost      the last tree was expected to yield %.2f tokens\n", st.tree_expected);
    if (t1_pass > 0 && gen_s > 0)
        fprintf(f,
                "  speedup           %.2fx over plain decoding (%.2f ms per token vs a 1-token target pass of %.2f ms, "
                "measured after generation)\n",
                t1_pass * st.generated / gen_s, gen_s * 1e3 / (st.generated ? st.generated : 1), t1_pass * 1e3);
}

int cli_prompt_cache_load(cli_session *e, const cli_opts *o, aero_generator *g, const int32_t *ids, int n,
                          cli_prompt_cache *state, const char *cmd) {
    memset(state, 0, sizeof *state);
    if (!o->prompt_cache) return 0;
    if (e->spec) return cli_fail(cmd, "--prompt-cache is not supported with --draft");
    const char *dev = o->device ? o->device : aero_default_device();
    if (!strcmp(dev, "cuda")) // refused before any output, not after the prefill
        return cli_fail(cmd, "--prompt-cache is not supported with --device cuda yet (the KV cache lives on the GPU); "
                             "use --device cpu");
    if (access(o->prompt_cache, F_OK) != 0) {
        if (o->prompt_cache_ro)
            fprintf(stderr, "%s: prompt cache %s does not exist (read-only: it will not be written)\n", cmd,
                    o->prompt_cache);
        return 0; // the first run makes it
    }
    aero_error err = {0};
    int32_t *toks = NULL;
    int nt = 0;
    if (aero_kv_load(e->ctx, 0, o->prompt_cache, &toks, &nt, &err)) return cli_fail(cmd, "%s", err.msg);
    int k = 0;
    while (k < nt && k < n && toks[k] == ids[k]) k++;
    free(toks);
    aero_kv_truncate(e->ctx, 0, k);
    aero_generator_set_history(g, ids, k);
    state->loaded = true;
    state->n_file = nt;
    state->n_matched = k;
    state->same = k == nt && nt == n;
    return 0;
}

int cli_prompt_cache_save(cli_session *e, const cli_opts *o, const int32_t *ids, int n, const cli_prompt_cache *state,
                          const char *cmd) {
    if (!o->prompt_cache || o->prompt_cache_ro || state->same) return 0;
    aero_error err = {0};
    if (aero_kv_save(e->ctx, 0, ids, n, o->prompt_cache, &err)) return cli_fail(cmd, "%s", err.msg);
    return 0;
}

// Writes the text the generation made visible since the last call.
static void emit(aero_generator *g, size_t *shown, FILE *out) {
    size_t len, vis = aero_generator_visible(g);
    const char *text = aero_generator_text(g, &len);
    if (vis > *shown) {
        fwrite(text + *shown, 1, vis - *shown, out);
        fflush(out);
        *shown = vis;
    }
}

// `aerollm run`'s generation: prompt, stream of text, timings; the loop itself is the generation layer's.
int cli_generate(cli_session *e, const cli_opts *o, FILE *out) {
    const char *cmd = "run";
    char *prompt = cli_read_prompt(o, cmd);
    if (!prompt) return 1;
    const aero_tokenizer *tok = aero_model_tokenizer(e->model);
    aero_error err = {0};
    int32_t *ids = NULL;
    size_t n_ids = 0;
    bool add_bos = !o->no_bos && aero_tokenizer_add_bos(tok) && aero_tokenizer_bos(tok) >= 0;
    int rc = 1;
    aero_generator *g = NULL;
    if (aero_tokenize(tok, prompt, strlen(prompt), add_bos, true, &ids, &n_ids, &err)) {
        cli_fail(cmd, "%s", err.msg);
        goto done;
    }
    if (n_ids == 0) {
        cli_fail(cmd, "the prompt is empty and the model has no BOS token to start from");
        goto done;
    }
    int n_ctx = aero_ctx_n_ctx(e->ctx);
    if (n_ids >= (size_t)n_ctx) {
        cli_fail(cmd, "the prompt has %zu tokens, more than the context size %d allows (-c)", n_ids, n_ctx);
        goto done;
    }
    aero_generator_params gp;
    aero_generator_params_default(&gp);
    gp.ctx = e->ctx;
    gp.tok = tok;
    gp.max_tokens = o->n_predict;
    gp.ignore_eos = o->ignore_eos;
    gp.text_starts_document = n_ids == 1 && add_bos;
    gp.spec = e->spec;
    if (aero_generator_new(&g, &gp, e->sampler, &err)) {
        cli_fail(cmd, "%s", err.msg);
        goto done;
    }
    double t0 = aero_now();
    cli_prompt_cache pc;
    if (cli_prompt_cache_load(e, o, g, ids, (int)n_ids, &pc, cmd)) goto done;
    // the speculative decoder checks its drafter against the request before any output
    if (aero_generator_begin(g, ids, (int)n_ids, &err)) {
        cli_fail(cmd, "%s", err.msg);
        goto done;
    }
    if (o->prompt_cache) { // before any output, so that the line does not land inside the text
        int reused = aero_generator_n_reused(g);
        fprintf(stderr, "prompt cache: %s: %d of %zu prompt tokens reused, %zu to prefill\n", o->prompt_cache, reused,
                n_ids, n_ids - (size_t)reused);
        if (pc.loaded && pc.n_matched < pc.n_file)
            fprintf(stderr, "prompt cache: the file holds %d tokens; the prompt differs from token %d on\n",
                    pc.n_file, pc.n_matched);
    }
    fputs(prompt, out);
    fflush(out);
    if (aero_generator_prefill(g, &err)) {
        cli_fail(cmd, "%s", err.msg);
        goto done;
    }
    double t1 = aero_now();
    if (cli_prompt_cache_save(e, o, ids, (int)n_ids, &pc, cmd)) goto done;
    aero_model_expert_stats_reset(e->model); // --stats: the expert cache over the generated tokens only
    size_t shown = 0;
    emit(g, &shown, out);
    while (aero_generator_end(g) == AERO_END_NONE) {
        if (aero_generator_step(g, &err)) {
            cli_fail(cmd, "%s", err.msg);
            goto done;
        }
        emit(g, &shown, out);
    }
    fputc('\n', out);
    fflush(out);
    double t2 = aero_now();
    int n_gen = aero_generator_n_generated(g);
    const char *stop_reason = aero_end_name(aero_generator_end(g));
    if (e->spec) // the prompt's last chunk (a draft head: its last token) went through the first verify pass
        fprintf(stderr,
                "\nload %.2f s | prompt %zu tokens in %.3f s (the last %zu verified with the first draft) | "
                "generated %d tokens in %.3f s (%.2f tok/s) | stop: %s\n",
                e->load_s, n_ids, t1 - t0, o->draft_head ? 1 : (n_ids - 1) % o->n_batch + 1, n_gen, t2 - t1,
                n_gen / (t2 - t1 > 0 ? t2 - t1 : 1e-9), stop_reason);
    else
        fprintf(stderr,
                "\nload %.2f s | prompt %zu tokens in %.3f s (%.1f tok/s) | generated %d tokens in %.3f s (%.2f tok/s)"
                " | stop: %s\n",
                e->load_s, n_ids, t1 - t0, n_ids / (t1 - t0 > 0 ? t1 - t0 : 1e-9), n_gen, t2 - t1,
                n_gen / (t2 - t1 > 0 ? t2 - t1 : 1e-9), stop_reason);
    if (o->stats) {
        cli_print_budget(e, o, stderr);
        aero_stream_print_stats(aero_model_stream(e->model), stderr);
        aero_model_print_expert_stats(e->model, n_gen, stderr);
        aero_pipeline_print_stats(e->model, n_gen, stderr);
        if (e->spec) {
            // plain decoding costs one 1-token target pass per token: time one now (cache permitting)
            double t1_pass = 0, t;
            for (int r = 0; r < 3 && t1_pass < 0.2; r++) { // one is enough for a streamed (slow) pass
                if (aero_spec_time_pass(e->spec, 1, &t, &err)) break;
                if (t1_pass == 0 || t < t1_pass) t1_pass = t;
            }
            cli_spec_print_stats(e->spec, t2 - t1, t1_pass, stderr);
        }
    }
    rc = 0;
done:
    aero_generator_free(g);
    free(ids);
    free(prompt);
    return rc;
}

// Redrawn a few times a second, and once at the end (a newline then).
void cli_progress_show(void *ctx, uint64_t done, uint64_t total) {
    cli_progress *p = ctx;
    double now = aero_now();
    if (done < total && now - p->last < 0.2) return;
    p->last = now;
    int width = 40, fill = total ? (int)(width * done / total) : width;
    double secs = now - p->start;
    fprintf(stderr, "\r[%.*s%*s] %5.1f%% %8.1f MB %6.1f MB/s", fill, "########################################",
            width - fill, "", total ? 100.0 * done / total : 100.0, done / 1e6, secs > 0 ? done / 1e6 / secs : 0.0);
    if (done >= total) fputc('\n', stderr);
    fflush(stderr);
}
