// The generation layer: the one loop every caller (run, chat, bench, perplexity, the speculative decoder's
// prompt, the server's scheduler) goes through. It prefills a prompt in one forward pass (aero_decode tiles it
// inside each layer, so a streamed model is read once per prompt), samples,
// applies the stopping rules, and turns tokens into streaming-safe text, for one sequence (aero_generator_step)
// or for many sequences that share one forward pass (aero_generator_feed + aero_decode + aero_generator_advance).
//
// The rules, the same for every caller:
// - End of generation: the end-of-generation token is sampled and accepted into the sampler's history, then
//   ends the generation (AERO_END_EOG). It is never emitted: no text, not counted in aero_generator_n_generated.
// - max_tokens counts emitted tokens; reaching it ends the generation (AERO_END_MAX_TOKENS).
// - Context full: a sequence generates until its KV cache is full; the token sampled from the last cache
//   position's logits is the last one emitted (AERO_END_CONTEXT). It is never decoded.
// - Stop strings: the text is cut before the earliest occurrence of any of them (AERO_END_STOP_STRING); text
//   that could begin a stop string is held back until it cannot.
// - Checks in that order: EOG, then stop strings, then max_tokens, then the context.
// - The prompt tokens a generation decodes are accepted into the sampler's history (penalties see the prompt).
#ifndef AERO_MODEL_GENERATE_H
#define AERO_MODEL_GENERATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"
#include "../sample/sample.h"
#include "../tokenizer/tokenizer.h"
#include "model.h"

typedef struct aero_spec aero_spec;

// ---- batches ----

// A growing aero_batch with its own token, position, sequence and want-logits arrays, so that no caller
// builds them by hand.
typedef struct aero_batch_buf aero_batch_buf;

int32_t aero_batch_buf_seq(const aero_batch_buf *b, int i); // sequence of token i

// ---- generations ----

typedef struct aero_generator aero_generator;

#include "../../include/aerollm.h" // aero_end, aero_generator_params

// How a generation recognises its end and makes text, when not through a tokenizer (tests, fake models).
typedef struct aero_generator_vocab {
    void *self;
    bool (*is_eog)(void *self, int32_t tok);
    // first: the output starts right after BOS (SPM drops the leading space of the first piece)
    void (*detok_init)(void *self, aero_detok *d, bool first);
    size_t (*detok_push)(void *self, aero_detok *d, int32_t tok, char *out, size_t cap);
    size_t (*detok_flush)(void *self, aero_detok *d, char *out, size_t cap);
} aero_generator_vocab;

// The callbacks of a tokenizer (what the generator uses when given tok): for callers that pass them on.
void aero_generator_vocab_of(aero_generator_vocab *v, const aero_tokenizer *t);

// aero_generator_params is public: include/aerollm.h.

// aero_generator_begin for a caller that runs the forward passes (no ctx) and kept the KV entries of the prompt's
// first keep tokens in the sequence (the server's prompt reuse): only the rest is decoded (at least the last
// token, for its logits); aero_generator_n_reused tells how many were kept. The caller accepts the kept tokens
// into the sampler's history when penalties must see them.
aero_status aero_generator_begin_kept(aero_generator *g, const int32_t *prompt, int n, int keep, aero_error *err);

// Tokens a caller's own verification decided, already accepted into the sampler (the server's speculation: a
// draft-and-verify round over a pass shared by many sequences): the pending token and toks[0..n-1) are now in
// the sequence's cache, and each token goes through the rules like a sampled one; the last is fed next.
void aero_generator_push(aero_generator *g, const int32_t *toks, int n);

// Tokens emitted by the last step/advance, and the logits row the last of them was sampled from (with the
// logit bias applied; valid until the next step/advance and while the caller's logits buffer is).
const int32_t *aero_generator_new_tokens(const aero_generator *g, int *n);

#endif
