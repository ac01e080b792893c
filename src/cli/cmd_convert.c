// `aerollm convert DIR -o OUT.gguf [--type T]`: a Hugging Face model directory written as a GGUF file that
// llama.cpp (and this engine) loads, with a progress bar when stderr is a terminal.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

// The command's help text.
static void usage(FILE *f) {
    fprintf(f, "usage: aerollm convert DIR -o OUT.gguf [--type F32|F16|BF16|Q8_0|Q4_0|Q4_K|Q6_K|...] [--quiet]\n"
               "  DIR holds config.json, model.safetensors (or shards and model.safetensors.index.json),\n"
               "  tokenizer.json and tokenizer_config.json (Llama, Mistral, Mixtral, Qwen2/3, Qwen3-MoE, Gemma 2/3,\n"
               "  Phi-3, Granite, OLMo 2). --type sets the matrices' type (default: as stored); norms, biases and\n"
               "  routers stay F32. The file is written under a temporary name and renamed when complete.\n");
}

// Parses the flags and runs aero_hf_convert.
int aero_cmd_convert(int argc, char **argv) {
    const char *dir = NULL, *out = NULL;
    int type = -1;
    bool quiet = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "-o") && i + 1 < argc) {
            out = argv[++i];
        } else if (!strcmp(argv[i], "--type") && i + 1 < argc) {
            type = aero_dtype_parse(argv[++i]);
            if (type < 0) return cli_fail("convert", "unknown type '%s'", argv[i]);
        } else if (!strcmp(argv[i], "--quiet")) {
            quiet = true;
        } else if (argv[i][0] != '-' && !dir) {
            dir = argv[i];
        } else {
            usage(stderr);
            return cli_fail("convert", "unexpected argument '%s'", argv[i]);
        }
    }
    if (!dir || !out) {
        usage(stderr);
        return 1;
    }
    cli_progress pr = {.start = aero_now()};
    aero_hf_convert_params p = {.dir = dir, .out = out, .type = type};
    if (!quiet && isatty(2)) {
        p.progress = cli_progress_show;
        p.progress_ctx = &pr;
    }
    aero_error err = {0};
    if (aero_hf_convert(&p, &err)) return cli_fail("convert", "%s", err.msg);
    if (!quiet) fprintf(stderr, "wrote %s (%.1f s)\n", out, aero_now() - pr.start);
    return 0;
}
