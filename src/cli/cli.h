// Subcommands of the `aerollm` binary; each parses its own flags and returns the process exit code.
#ifndef AERO_CLI_H
#define AERO_CLI_H

#include <aerollm.h>

int aero_cmd_run(int argc, char **argv);
int aero_cmd_bench(int argc, char **argv);
int aero_cmd_info(int argc, char **argv);
int aero_cmd_synth(int argc, char **argv);
int aero_cmd_tokenize(int argc, char **argv);
int aero_cmd_detokenize(int argc, char **argv);
int aero_cmd_serve(int argc, char **argv);
int aero_cmd_template(int argc, char **argv);
int aero_cmd_chat(int argc, char **argv);
int aero_cmd_perplexity(int argc, char **argv);
int aero_cmd_repack(int argc, char **argv);
int aero_cmd_convert(int argc, char **argv);
int aero_cmd_batch(int argc, char **argv);

// Prints "aerollm <cmd>: <msg>" to stderr and returns 1 (for `return cli_fail(...)`).
int cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// A progress bar on stderr for long file writers (convert, repack): pass cli_progress_show as the writer's
// callback with a cli_progress whose start is aero_now().
typedef struct {
    double start, last;
} cli_progress;
void cli_progress_show(void *ctx, uint64_t done, uint64_t total);

#endif
