// TEMPORARY during bring-up: weak placeholders so the binary links while subcommands are being written.
// Each subcommand's own file defines the strong symbol. This file is deleted before landing.
#include <stdio.h>

#include "cli.h"
#include "common.h"

#define PENDING(fn, name)                                                                       \
    __attribute__((weak)) int fn(int argc, char **argv) {                                       \
        (void)argc; (void)argv;                                                                 \
        fprintf(stderr, "aerollm %s: not built yet\n", name);                                   \
        return 1;                                                                               \
    }
PENDING(aero_cmd_run, "run")
PENDING(aero_cmd_bench, "bench")
PENDING(aero_cmd_info, "info")
PENDING(aero_cmd_synth, "synth")
PENDING(aero_cmd_tokenize, "tokenize")
PENDING(aero_cmd_detokenize, "detokenize")
PENDING(aero_cmd_serve, "serve")
PENDING(aero_cmd_template, "template")
PENDING(aero_cmd_chat, "chat")
PENDING(aero_cmd_perplexity, "perplexity")
PENDING(aero_cmd_repack, "repack")
__attribute__((weak)) int cli_bench_spec(const cli_opts *o, int n_prompt, int n_gen) {
    (void)o, (void)n_prompt, (void)n_gen;
    fprintf(stderr, "aerollm bench: --draft not built yet\n");
    return 1;
}
