// The aerollm command: dispatches to a subcommand.
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} command;

static const command commands[] = {
    {"run", aero_cmd_run, "generate text from a model (streamed under --mem, speculative with --draft)"},
    {"chat", aero_cmd_chat, "interactive chat with the model's chat template"},
    {"serve", aero_cmd_serve, "OpenAI-compatible HTTP server"},
    {"bench", aero_cmd_bench, "prefill/decode speed against the memory and disk floors"},
    {"info", aero_cmd_info, "metadata, tensor table and residency plan of a GGUF file"},
    {"synth", aero_cmd_synth, "write a random-weight GGUF of a real architecture and shape"},
    {"tokenize", aero_cmd_tokenize, "text -> token ids"},
    {"detokenize", aero_cmd_detokenize, "token ids -> text"},
    {"template", aero_cmd_template, "render a chat template for a messages file"},
    {"perplexity", aero_cmd_perplexity, "perplexity of a model on a text file"},
    {"repack", aero_cmd_repack, "rewrite a GGUF with each layer contiguous and 4 KiB aligned"},
};

int cli_fail(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "aerollm %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

static void usage(FILE *f) {
    fprintf(f, "usage: aerollm <command> [options]   (aerollm <command> --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "aerollm: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 1;
}
