// `aerollm synth`: writes a random-weight GGUF of a real architecture and shape (a preset, or explicit
// dimensions), with a real-looking tokenizer, deterministic from --seed. For tests and benchmarks of models too
// large to ship.
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

// Prints the help (stdout for --help, stderr after a mistake).
static void usage(FILE *f) {
    fprintf(f,
            "usage: aerollm synth (--preset NAME | --arch A --dim N --layers N --heads N --ffn N --vocab N)\n"
            "                     [--kv-heads N] [--head-dim N] [--ctx N] [--layers N] [--vocab N] [--rope-base F]\n"
            "                     [--tied | --untied] [--type T] [--seed S] [--tokenizer-from FILE.gguf] [--exact]\n"
            "                     [--kv KEY=TYPE:VALUE]...\n"
            "                     [-t THREADS] [--quiet] -o FILE.gguf\n"
            "  presets: %s (real dimensions; flags given with a preset override it,\n"
            "           e.g. --layers 4 to shorten)\n"
            "  --arch   llama | qwen2 (Q/K/V biases) | qwen3 (per-head Q/K norms)\n"
            "  --type   matrix type: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K Q4_K Q5_K Q6_K IQ2_XXS IQ2_XS IQ3_XXS\n"
            "           IQ3_S IQ4_NL IQ4_XS MXFP4\n"
            "           (default F16),\n"
            "           or a mix as llama.cpp's quantizer makes it: Q4_K_M, Q5_K_M (Q6_K for the head and for\n"
            "           attn_v/ffn_down of some layers);\n"
            "           norms and biases are F32; rows that do not fit a type's block get a smaller-block type\n"
            "  --tokenizer-from  copy every tokenizer.* key of another GGUF (the vocabulary size follows it)\n"
            "  --kv KEY=TYPE:VALUE  set a metadata key last (TYPE u32 i32 f32 bool str); --kv KEY= removes it\n"
            "  --exact  quantize every row from fresh random floats (slow) instead of drawing pre-quantized blocks\n"
            "The weights are random: the model's output is gibberish by design.\n",
            aero_synth_preset_names());
}

// Parses a positive decimal integer no larger than max; false on anything else.
static bool parse_int(const char *s, long max, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > max) return false;
    *out = (int)v;
    return true;
}

typedef struct {
    double start, last;
    bool on;
} progress_state;

// Prints progress to stderr at most once a second (only for large files).
static void progress(void *ctx, uint64_t done, uint64_t total) {
    progress_state *ps = ctx;
    double now = aero_now();
    if (!ps->on || (now - ps->last < 1.0 && done < total)) return;
    ps->last = now;
    double mb = done / 1e6, dt = now - ps->start;
    fprintf(stderr, "\rsynth: %.0f / %.0f MB (%.0f%%), %.0f MB/s   ", mb, total / 1e6,
            total ? 100.0 * done / total : 100.0, dt > 0 ? mb / dt : 0.0);
    if (done >= total) fputc('\n', stderr);
}

// Entry point: preset or explicit shape, overrides, then the writer with a progress line.
int aero_cmd_synth(int argc, char **argv) {
    aero_synth_params p;
    memset(&p, 0, sizeof p);
    const char *preset = NULL, *out = NULL, *arch = NULL;
    // Explicit dimensions, applied after the preset; -1 = not given.
    int dim = -1, layers = -1, heads = -1, kv = -1, ffn = -1, vocab = -1, ctx = -1, hd = -1, threads = 0;
    int tied = -1, type = AERO_DT_F16;
    aero_synth_mix mix = AERO_SYNTH_MIX_NONE;
    double rope_base = 0;
    unsigned long long seed = 0;
    bool quiet = false, exact = false;
    const char *tok_from = NULL;
    const char *kv_edits[64];
    int n_kv = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        struct {
            const char *flag;
            int *dst;
            long max;
        } ints[] = {{"--dim", &dim, 1 << 17},  {"--layers", &layers, 4096}, {"--heads", &heads, 4096},
                    {"--kv-heads", &kv, 4096}, {"--ffn", &ffn, 1 << 20},    {"--vocab", &vocab, 1 << 22},
                    {"--ctx", &ctx, 1 << 24},  {"--head-dim", &hd, 1024},   {"-t", &threads, 1024}};
        bool done = false;
        for (size_t k = 0; k < sizeof ints / sizeof *ints && !done; k++) {
            if (strcmp(a, ints[k].flag)) continue;
            if (!v) return cli_fail("synth", "%s needs a value", a);
            if (!parse_int(v, ints[k].max, ints[k].dst))
                return cli_fail("synth", "%s: '%s' is not an integer in [1, %ld]", a, v, ints[k].max);
            i++;
            done = true;
        }
        if (done) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--tied") || !strcmp(a, "--untied")) {
            tied = !strcmp(a, "--tied");
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            quiet = true;
        } else if (!strcmp(a, "--exact")) {
            exact = true;
        } else if (!v &&
                   (!strcmp(a, "--preset") || !strcmp(a, "--arch") || !strcmp(a, "--type") || !strcmp(a, "--seed") ||
                    !strcmp(a, "-o") || !strcmp(a, "--rope-base") || !strcmp(a, "--tokenizer-from") ||
                    !strcmp(a, "--kv"))) {
            return cli_fail("synth", "%s needs a value", a);
        } else if (!strcmp(a, "--kv")) {
            if (n_kv == 64) return cli_fail("synth", "too many --kv edits (64 at most)");
            kv_edits[n_kv++] = argv[++i];
        } else if (!strcmp(a, "--preset")) {
            preset = argv[++i];
        } else if (!strcmp(a, "--arch")) {
            arch = argv[++i];
        } else if (!strcmp(a, "-o")) {
            out = argv[++i];
        } else if (!strcmp(a, "--tokenizer-from")) {
            tok_from = argv[++i];
        } else if (!strcmp(a, "--type")) {
            aero_dtype base;
            if (aero_synth_mix_parse(argv[++i], &mix, &base)) type = base;
            else type = aero_dtype_parse(argv[i]), mix = AERO_SYNTH_MIX_NONE;
            if (type < 0) return cli_fail("synth", "unknown type '%s' (see aerollm synth --help)", argv[i]);
        } else if (!strcmp(a, "--seed")) {
            char *end;
            errno = 0;
            seed = strtoull(argv[++i], &end, 0);
            if (errno || end == argv[i] || *end || argv[i][0] == '-')
                return cli_fail("synth", "--seed: '%s' is not a non-negative integer", argv[i]);
        } else if (!strcmp(a, "--rope-base")) {
            char *end;
            rope_base = strtod(argv[++i], &end);
            if (end == argv[i] || *end || !(rope_base > 1))
                return cli_fail("synth", "--rope-base: '%s' is not a number > 1", argv[i]);
        } else {
            return cli_fail("synth", "unknown argument '%s' (aerollm synth --help)", a);
        }
    }
    if (!out) return cli_fail("synth", "no output file given (-o FILE.gguf)");
    if (preset) {
        if (!aero_synth_preset(preset, &p))
            return cli_fail("synth", "unknown preset '%s' (%s)", preset, aero_synth_preset_names());
        if (arch && strcmp(arch, p.arch))
            return cli_fail("synth", "--arch %s contradicts preset %s (%s)", arch, preset, p.arch);
    } else {
        if (!arch) return cli_fail("synth", "give --preset NAME or --arch with its dimensions (aerollm synth --help)");
        const char *missing = dim < 0                  ? "--dim"
                              : layers < 0             ? "--layers"
                              : heads < 0              ? "--heads"
                              : ffn < 0                ? "--ffn"
                              : vocab < 0 && !tok_from ? "--vocab"
                                                       : NULL;
        if (missing) return cli_fail("synth", "--arch %s needs %s", arch, missing);
        snprintf(p.arch, sizeof p.arch, "%s", arch);
        snprintf(p.name, sizeof p.name, "synthetic %s", arch);
        p.n_ctx = 4096;
        p.rope_base = strcmp(arch, "llama") ? 1000000.f : 10000.f;
        p.norm_eps = strcmp(arch, "llama") ? 1e-6f : 1e-5f;
        p.tied = false;
    }
    if (strlen(arch ? arch : p.arch) >= sizeof p.arch) return cli_fail("synth", "unknown architecture '%s'", arch);
    if (dim > 0) p.n_embd = dim;
    if (layers > 0) p.n_layer = layers;
    if (heads > 0) p.n_head = heads;
    if (kv > 0) p.n_head_kv = kv;
    else if (!preset || heads > 0) p.n_head_kv = p.n_head;
    if (ffn > 0) p.n_ff = ffn;
    if (vocab > 0) p.n_vocab = vocab;
    if (ctx > 0) p.n_ctx = ctx;
    if (hd > 0) p.head_dim = hd;
    else if (dim > 0 || heads > 0) p.head_dim = 0; // derived again from the new dimensions
    if (rope_base > 0) p.rope_base = (float)rope_base;
    if (tied >= 0) p.tied = tied;
    p.type = (aero_dtype)type;
    p.mix = mix;
    p.seed = seed;
    p.exact = exact;
    p.n_threads = threads;
    p.tokenizer_from = tok_from;
    p.kv = kv_edits;
    p.n_kv = n_kv;
    aero_error err = {0};
    if (aero_synth_check(&p, &err)) return cli_fail("synth", "%s", err.msg);
    progress_state ps = {.start = aero_now(), .on = !quiet && isatty(2)};
    p.progress = progress;
    p.progress_ctx = &ps;
    aero_synth_stats st;
    double t0 = aero_now();
    if (aero_synth_write(&p, out, &st, &err)) return cli_fail("synth", "%s", err.msg);
    double dt = aero_now() - t0;
    if (!quiet) {
        int hdim = p.head_dim ? p.head_dim : p.n_embd / p.n_head;
        printf("wrote %s: %s, %d layers, dim %d, %d heads (%d KV, head size %d), ffn %d, vocab %d, %s%s, seed %llu\n",
               out, p.arch, p.n_layer, p.n_embd, p.n_head, p.n_head_kv, hdim, p.n_ff, st.n_vocab,
               p.mix ? aero_synth_mix_name(p.mix) : aero_dtype_name(p.type), p.tied ? ", tied output" : "", seed);
        printf("  %llu tensors, %.1f MB of weights in %.2f s (%.0f MB/s)", (unsigned long long)st.n_tensors,
               st.tensor_bytes / 1e6, dt, dt > 0 ? st.tensor_bytes / 1e6 / dt : 0.0);
        if (st.n_fallback)
            printf("; %d matri%s with rows not a multiple of the %s block written in a smaller-block "
                   "type",
                   st.n_fallback, st.n_fallback == 1 ? "x" : "ces", aero_dtype_name(p.type));
        printf("\n  random weights: output text is gibberish by design\n");
    }
    return 0;
}
