// Shared CLI plumbing: flag parsing, opening a model, the plain generation loop.
#include "common.h"

#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

void cli_opts_default(cli_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_predict = 128;
    o->n_batch = 512;
    aero_sampler_params_default(&o->sp);
    o->draft_max = 16;
    o->draft_min = 0;
    o->draft_p_min = 0.0f;
}

void cli_common_usage(void) {
    printf("common options:\n"
           "  -t N                compute threads (default: all CPUs)\n"
           "  -c N                context size (default: the model's, at most 4096)\n"
           "  -b N                prompt tokens per pass (default 512)\n"
           "  --mem SIZE          weight memory budget (e.g. 512M, 8G); layers beyond it are streamed from disk\n"
           "  --prefetch N        layers read ahead when streaming (default 2)\n"
           "  --io-threads N      IO threads when streaming\n"
           "  --temp T --top-k K --top-p P --min-p P --repeat-penalty R --repeat-last-n N\n"
           "  --presence-penalty P --frequency-penalty P --seed S     sampling (--temp 0: greedy)\n"
           "  --kv-f32            F32 KV cache (default F16)\n"
           "  --draft MODEL|ngram speculative decoding with a draft model or prompt-lookup n-grams\n"
           "  --draft-max K       longest draft (default 16); the length adapts to measured acceptance and costs\n"
           "  --draft-min K       shortest draft --draft-p-min may cut (and the least the adaptive length picks)\n"
           "  --draft-p-min P     stop drafting when the drafter's confidence falls below P\n"
           "  --draft-fixed       always draft --draft-max tokens (no adaptive length)\n"
           "  --draft-tree N      draft a tree of up to N nodes (depth <= --draft-max), verified in one pass\n"
           "  --draft-threads N   drafter compute threads (default: as -t)\n");
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

int cli_opts_parse(cli_opts *o, const char *cmd, int argc, char **argv, int i) {
    const char *f = argv[i];
    // flags without a value
    if (!strcmp(f, "--stats")) return o->stats = true, 1;
    if (!strcmp(f, "--no-bos")) return o->no_bos = true, 1;
    if (!strcmp(f, "--ignore-eos")) return o->ignore_eos = true, 1;
    if (!strcmp(f, "--kv-f32")) return o->kv_f32 = true, 1;
    if (!strcmp(f, "--json")) return o->json = true, 1;
    if (!strcmp(f, "--draft-fixed")) return o->draft_fixed = true, 1;
    static const char *with_value[] = {"-m", "--model", "-p", "--prompt", "-f", "--file", "-n", "--n-predict", "-t",
                                       "--threads", "-c", "--ctx-size", "-b", "--batch-size", "--mem", "--prefetch",
                                       "--io-threads", "--temp", "--top-k", "--top-p", "--min-p", "--repeat-penalty",
                                       "--repeat-last-n", "--presence-penalty", "--frequency-penalty", "--seed",
                                       "--draft", "-md", "--model-draft", "--draft-max", "--draft-min", "--draft-p-min",
                                       "--draft-tree", "--draft-threads", "-td", NULL};
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
    } else if (!strcmp(f, "--prefetch")) ok = parse_int(cmd, f, v, 1, 64, &o->prefetch);
    else if (!strcmp(f, "--io-threads")) ok = parse_int(cmd, f, v, 1, 64, &o->io_threads);
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
    else if (!strcmp(f, "--draft-max")) ok = parse_int(cmd, f, v, 1, 256, &o->draft_max);
    else if (!strcmp(f, "--draft-min")) ok = parse_int(cmd, f, v, 0, 256, &o->draft_min);
    else if (!strcmp(f, "--draft-p-min")) ok = parse_float(cmd, f, v, 0, 1, &o->draft_p_min);
    else if (!strcmp(f, "--draft-tree")) ok = parse_int(cmd, f, v, 2, 1024, &o->draft_tree);
    else if (!strcmp(f, "--draft-threads") || !strcmp(f, "-td")) ok = parse_int(cmd, f, v, 1, 1024, &o->draft_threads);
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

void cli_spec_params(const cli_opts *o, aero_spec_params *p) {
    aero_spec_params_default(p);
    p->draft_max = o->draft_max;
    p->draft_min = o->draft_min;
    p->p_min = o->draft_p_min;
    p->tree_nodes = o->draft_tree;
    p->adaptive = !o->draft_fixed;
    p->n_batch = o->n_batch;
    p->sampling = o->sp;
}

int cli_engine_open(cli_engine *e, const cli_opts *o, const char *cmd) {
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
    aero_error err = {0};
    double t0 = aero_now();
    if (aero_model_load(&e->model, &mp, &err)) return cli_fail(cmd, "%s", err.msg);
    aero_ctx_params cp = {.n_ctx = o->n_ctx, .n_seq = 1, .kv_f32 = o->kv_f32};
    if (aero_ctx_new(&e->ctx, e->model, &cp, &err)) {
        cli_engine_close(e);
        return cli_fail(cmd, "%s", err.msg);
    }
    e->sampler = aero_sampler_new(&o->sp, aero_model_hparams(e->model)->n_vocab);
    if (!e->sampler) {
        cli_engine_close(e);
        return cli_fail(cmd, "out of memory");
    }
    if (o->draft) {
        if (o->draft_min > o->draft_max) {
            cli_engine_close(e);
            return cli_fail(cmd, "--draft-min %d exceeds --draft-max %d", o->draft_min, o->draft_max);
        }
        if (strcmp(o->draft, "ngram")) {
            // the drafter is small and read every step: fully resident, with its own threads
            aero_model_params dp;
            aero_model_params_default(&dp);
            dp.path = o->draft;
            dp.n_threads = o->draft_threads > 0 ? o->draft_threads : o->n_threads;
            if (aero_model_load(&e->draft, &dp, &err)) {
                cli_engine_close(e);
                return cli_fail(cmd, "draft model %s: %s", o->draft, err.msg);
            }
        }
        aero_spec_params sp;
        cli_spec_params(o, &sp);
        if (aero_spec_new(&e->spec, e->ctx, 0, e->draft, &sp, &err)) {
            cli_engine_close(e);
            return cli_fail(cmd, "%s: %s", o->draft, err.msg);
        }
    }
    e->load_s = aero_now() - t0;
    return 0;
}

void cli_engine_close(cli_engine *e) {
    aero_spec_free(e->spec);
    aero_model_free(e->draft);
    aero_sampler_free(e->sampler);
    aero_ctx_free(e->ctx);
    aero_model_free(e->model);
    memset(e, 0, sizeof *e);
}

char *cli_read_prompt(const cli_opts *o, const char *cmd) {
    if (o->prompt && o->prompt_file) return cli_fail(cmd, "give -p or -f, not both"), NULL;
    if (!o->prompt_file) return strdup(o->prompt ? o->prompt : "");
    FILE *f = fopen(o->prompt_file, "rb");
    if (!f) return cli_fail(cmd, "%s: cannot open: %s", o->prompt_file, strerror(errno)), NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len - 1 == 0) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    bool bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        return cli_fail(cmd, "%s: read failed", o->prompt_file), NULL;
    }
    buf[len] = 0;
    return buf;
}

// Streams a token's text through the incremental decoder.
static void emit(aero_detok *d, int32_t tok, FILE *out) {
    char buf[512];
    size_t n = aero_detok_push(d, tok, buf, sizeof buf);
    fwrite(buf, 1, n, out);
    fflush(out);
}

// Prefills the prompt in passes of -b tokens, keeping the last token's logits.
static int prefill_plain(cli_engine *e, const cli_opts *o, const int32_t *ids, size_t n_ids, float *logits) {
    aero_error err = {0};
    for (size_t first = 0; first < n_ids; first += o->n_batch) {
        int n = (int)(n_ids - first < (size_t)o->n_batch ? n_ids - first : (size_t)o->n_batch);
        int32_t *pos = malloc(sizeof(int32_t) * n);
        uint8_t *want = calloc(n, 1);
        if (!pos || !want) {
            free(pos);
            free(want);
            return cli_fail("run", "out of memory");
        }
        for (int i = 0; i < n; i++) pos[i] = (int32_t)(first + i);
        want[n - 1] = 1;
        aero_batch b = {.n = n, .tokens = ids + first, .pos = pos, .want_logits = want};
        aero_status st = aero_decode(e->ctx, &b, logits, &err);
        free(pos);
        free(want);
        if (st) return cli_fail("run", "%s", err.msg);
    }
    return 0;
}

// Plain decoding: one target pass per token.
static int generate_plain(cli_engine *e, const cli_opts *o, aero_detok *d, float *logits, size_t n_ids, int *n_gen,
                          const char **stop_reason, FILE *out) {
    const aero_tokenizer *tok = aero_model_tokenizer(e->model);
    int n_ctx = aero_ctx_n_ctx(e->ctx), pos = (int)n_ids;
    aero_error err = {0};
    while (*n_gen < o->n_predict) {
        int32_t t = aero_sampler_sample(e->sampler, logits);
        aero_sampler_accept(e->sampler, t);
        (*n_gen)++;
        if (!o->ignore_eos && aero_tokenizer_is_eog(tok, t)) {
            *stop_reason = "end of text";
            break;
        }
        emit(d, t, out);
        if (*n_gen >= o->n_predict) break;
        if (pos >= n_ctx) {
            *stop_reason = "context full";
            break;
        }
        aero_batch b = {.n = 1, .tokens = &t, .pos = &pos};
        if (aero_decode(e->ctx, &b, logits, &err)) return cli_fail("run", "%s", err.msg);
        pos++;
    }
    return 0;
}

// Speculative decoding: each step yields the accepted drafts plus one token of the target's own; the same
// stopping rules as the plain loop, so greedy output is identical.
static int generate_spec(cli_engine *e, const cli_opts *o, aero_detok *d, int *n_gen, const char **stop_reason,
                         FILE *out) {
    const aero_tokenizer *tok = aero_model_tokenizer(e->model);
    int n_ctx = aero_ctx_n_ctx(e->ctx);
    int cap = (o->draft_tree > o->draft_max ? o->draft_tree : o->draft_max) + 1;
    int32_t *buf = malloc(sizeof(int32_t) * cap);
    aero_error err = {0};
    if (!buf) return cli_fail("run", "out of memory");
    while (*n_gen < o->n_predict) {
        if (aero_spec_n_tokens(e->spec) > n_ctx) {
            *stop_reason = "context full";
            break;
        }
        int got = 0, want = o->n_predict - *n_gen;
        if (aero_spec_step(e->spec, e->sampler, want < cap ? want : cap, buf, &got, &err)) {
            free(buf);
            return cli_fail("run", "%s", err.msg);
        }
        for (int i = 0; i < got; i++) {
            (*n_gen)++;
            if (!o->ignore_eos && aero_tokenizer_is_eog(tok, buf[i])) {
                *stop_reason = "end of text";
                free(buf);
                return 0;
            }
            emit(d, buf[i], out);
        }
    }
    free(buf);
    return 0;
}

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
    fprintf(f, "  time              draft %.3f s (%.2f ms/pass, %llu drafter passes), verify %.3f s (%.2f ms/pass), "
               "accept %.3f s, prefill %.3f s\n",
            st.draft_s, st.draft_s * 1e3 / passes, (unsigned long long)st.draft_calls, st.verify_s,
            st.verify_s * 1e3 / passes, st.accept_s, st.prefill_s);
    fprintf(f, "  cost model        target pass %.3f ms + %.4f ms/token, drafter step %.3f ms, acceptance estimate %.2f, "
               "last draft size %d\n",
            st.pass_a * 1e3, st.pass_b * 1e3, st.draft_call_s * 1e3, st.alpha, st.draft_len);
    if (t1_pass > 0 && gen_s > 0)
        fprintf(f, "  speedup           %.2fx over plain decoding (%.2f ms per token vs a 1-token target pass of %.2f ms, "
                   "measured after generation)\n",
                t1_pass * st.generated / gen_s, gen_s * 1e3 / (st.generated ? st.generated : 1), t1_pass * 1e3);
}

int cli_generate(cli_engine *e, const cli_opts *o, FILE *out) {
    const char *cmd = "run";
    char *prompt = cli_read_prompt(o, cmd);
    if (!prompt) return 1;
    const aero_tokenizer *tok = aero_model_tokenizer(e->model);
    const aero_hparams *hp = aero_model_hparams(e->model);
    aero_error err = {0};
    int32_t *ids = NULL;
    size_t n_ids = 0;
    bool add_bos = !o->no_bos && aero_tokenizer_add_bos(tok) && aero_tokenizer_bos(tok) >= 0;
    int rc = 1;
    float *logits = malloc(sizeof(float) * hp->n_vocab);
    if (!logits) {
        cli_fail(cmd, "out of memory");
        goto done;
    }
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
    // the speculative decoder checks its drafter against the request before any output
    if (e->spec && aero_spec_begin(e->spec, ids, (int)n_ids, o->n_predict, &err)) {
        cli_fail(cmd, "%s", err.msg);
        goto done;
    }
    fputs(prompt, out);
    fflush(out);
    for (size_t i = 0; i < n_ids; i++) aero_sampler_accept(e->sampler, ids[i]);
    double t0 = aero_now();
    aero_spec_stats sst;
    if (e->spec) {
        aero_spec_get_stats(e->spec, &sst);
        t0 -= sst.prefill_s; // begin() above prefilled the prompt
    } else if (prefill_plain(e, o, ids, n_ids, logits)) {
        goto done;
    }
    double t1 = aero_now();
    aero_detok d;
    aero_detok_init(&d, tok, false);
    if (n_ids == 1 && add_bos) d.first = true;
    else d.first = false;
    int n_gen = 0;
    const char *stop_reason = "length";
    if (e->spec ? generate_spec(e, o, &d, &n_gen, &stop_reason, out)
                : generate_plain(e, o, &d, logits, n_ids, &n_gen, &stop_reason, out))
        goto done;
    char tail[64];
    size_t nt = aero_detok_flush(&d, tail, sizeof tail);
    fwrite(tail, 1, nt, out);
    fputc('\n', out);
    fflush(out);
    double t2 = aero_now();
    if (e->spec) // the prompt's last chunk went through the first verify pass: its time is in "generated"
        fprintf(stderr, "\nload %.2f s | prompt %zu tokens in %.3f s (the last %zu verified with the first draft) | "
                "generated %d tokens in %.3f s (%.2f tok/s) | stop: %s\n",
                e->load_s, n_ids, t1 - t0, (n_ids - 1) % o->n_batch + 1, n_gen, t2 - t1,
                n_gen / (t2 - t1 > 0 ? t2 - t1 : 1e-9), stop_reason);
    else
        fprintf(stderr, "\nload %.2f s | prompt %zu tokens in %.3f s (%.1f tok/s) | generated %d tokens in %.3f s (%.2f tok/s)"
                " | stop: %s\n",
                e->load_s, n_ids, t1 - t0, n_ids / (t1 - t0 > 0 ? t1 - t0 : 1e-9), n_gen, t2 - t1,
                n_gen / (t2 - t1 > 0 ? t2 - t1 : 1e-9), stop_reason);
    if (o->stats) {
        aero_stream_print_stats(aero_model_stream(e->model), stderr);
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
    free(logits);
    free(ids);
    free(prompt);
    return rc;
}
