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

aero_batch_buf *aero_batch_buf_new(int cap);
void aero_batch_buf_free(aero_batch_buf *b);
void aero_batch_buf_clear(aero_batch_buf *b);
int aero_batch_buf_len(const aero_batch_buf *b);
int aero_batch_buf_room(const aero_batch_buf *b); // tokens that can still be added
// Adds a token; returns its row in the packed logits output when want_logits, else -1. -1 too when full.
int aero_batch_buf_add(aero_batch_buf *b, int32_t tok, int32_t pos, int32_t seq, bool want_logits);
int32_t aero_batch_buf_seq(const aero_batch_buf *b, int i); // sequence of token i
// The batch to pass to aero_decode; valid until the next change.
const aero_batch *aero_batch_buf_get(aero_batch_buf *b);

// Decodes toks[0..n) as positions pos0.. of sequence seq in passes of at most n_batch tokens; <= 0: all n in
// one pass, which reads streamed weights once (the context's tile, aero_ctx_params.n_batch, bounds the
// compute; the pass holds n x n_embd floats of activations). last_logits (n_vocab floats, or NULL) receives the
// logits of the last token.
aero_status aero_prefill(aero_ctx *c, int seq, const int32_t *toks, int n, int pos0, int n_batch, float *last_logits,
                         aero_error *err);

// ---- generations ----

typedef struct aero_generator aero_generator;

#include "../../include/aerollm.h" // aero_end, aero_generator_params

const char *aero_end_name(aero_end e); // "end of text", "stop string", "length", "context full", "interrupted"

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
void aero_generator_params_default(aero_generator_params *p);
// smp is borrowed: the generation samples with it and accepts tokens into its history.
aero_status aero_generator_new(aero_generator **out, const aero_generator_params *p, aero_sampler *smp,
                               aero_error *err);
void aero_generator_free(aero_generator *g);

// Starts a generation after prompt (n >= 1 tokens, fewer than the context). With ctx, the KV entries of the
// sequence that equal a prefix of the prompt are kept (all but the prompt's last token) and the rest removed;
// only the tokens decoded anew are accepted into the sampler. With a drafter, this also checks the drafter
// against the request and prefills all but the prompt's last chunk.
aero_status aero_generator_begin(aero_generator *g, const int32_t *prompt, int n, aero_error *err);
// Decodes what remains of the prompt (needs ctx). When it is not called, the first step does it (or the first
// steps, one pass of n_batch tokens each, when n_batch is set).
aero_status aero_generator_prefill(aero_generator *g, aero_error *err);
// One forward pass of the sequence (needs ctx): the prompt (or its next n_batch tokens), or the next token;
// with a drafter, one draft-and-verify round. Afterwards the new tokens and text are available, and
// aero_generator_end tells whether the generation ended.
aero_status aero_generator_step(aero_generator *g, aero_error *err);

// Multi-sequence form. feed: adds what the sequence needs next to b (its last token, or a prompt chunk of at
// most room tokens); returns the number of tokens added (0 when it needs nothing). After aero_decode of the
// batch into logits (packed rows), advance reads the sequence's row, if any, and samples.
int aero_generator_feed(aero_generator *g, aero_batch_buf *b, int room);
void aero_generator_advance(aero_generator *g, const float *logits);

// Ends the generation now (a user's Ctrl-C), keeping the text so far with the detokenizer's tail.
void aero_generator_interrupt(aero_generator *g);

aero_end aero_generator_end(const aero_generator *g);
bool aero_generator_prefilling(const aero_generator *g); // prompt tokens remain to decode
int aero_generator_n_prompt(const aero_generator *g);
int aero_generator_n_reused(const aero_generator *g);    // prompt tokens found in the KV cache by begin
int aero_generator_n_generated(const aero_generator *g); // tokens emitted
// Tokens emitted by the last step/advance, and the logits row the last of them was sampled from (with the
// logit bias applied; valid until the next step/advance and while the caller's logits buffer is).
const int32_t *aero_generator_new_tokens(const aero_generator *g, int *n);
const float *aero_generator_last_logits(const aero_generator *g);
// All text made so far (*len bytes, including text held back), and how many leading bytes of it may be shown:
// complete characters, never a stop string nor the start of one. At the end, the final length of the text.
const char *aero_generator_text(const aero_generator *g, size_t *len);
size_t aero_generator_visible(const aero_generator *g);

#endif
