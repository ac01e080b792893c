// `aerollm run`: load a model (streamed under --mem), prefill the prompt in passes, generate and stream the
// text to stdout, timings to stderr.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common.h"

// Prints the help.
static void usage(void) {
    printf("usage: aerollm run [-m MODEL] [-p PROMPT | -f FILE] [-n N] [options]\n"
           "  -m MODEL            GGUF file (default: the bundled model)\n"
           "  -p PROMPT / -f FILE prompt text (default: empty, generation starts from BOS)\n"
           "  -n N                tokens to generate (default 128)\n"
           "  --ignore-eos        keep generating past end-of-generation tokens\n"
           "  --no-bos            do not prepend BOS\n"
           "  --stats             print streaming and speculation statistics\n");
    cli_common_usage();
}

// Entry point: flags, a session, one generation (cli_generate).
int aero_cmd_run(int argc, char **argv) {
    cli_opts o;
    cli_opts_default(&o);
    for (int i = 1; i < argc; i++) {
        int used = cli_opts_parse(&o, "run", argc, argv, i);
        if (used < 0) return 1;
        if (used > 0) {
            i += used - 1;
            continue;
        }
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage();
            return 0;
        }
        return cli_fail("run", "unknown argument '%s' (see aerollm run --help)", argv[i]);
    }
    cli_session e;
    if (cli_session_open(&e, &o, "run")) return 1;
    int rc = cli_generate(&e, &o, stdout);
    cli_session_close(&e);
    return rc;
}
