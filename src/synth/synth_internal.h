// Internals shared by the synth module's files: the tokenizer section is written by tokenizer.c for synth.c.
#ifndef AERO_SYNTH_INTERNAL_H
#define AERO_SYNTH_INTERNAL_H

#include "../format/gguf.h"
#include "synth.h"

// Writes the built-in tokenizer (n_vocab tokens); stats gets its vocabulary and merge counts (may be NULL);
// n_real gets the number of tokens before the padding ones.
aero_status synth_write_tokenizer(aero_gguf_writer *w, const aero_synth_params *p, aero_synth_stats *stats, int *n_real,
                                  aero_error *err);
// Copies every tokenizer.* key of the GGUF at path; n_vocab gets the size of its token list.
aero_status synth_copy_tokenizer(aero_gguf_writer *w, const char *path, int *n_vocab, aero_error *err);

#endif
