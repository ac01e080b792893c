// Speculative decoding: a drafter (a small resident model, or prompt-lookup n-grams) proposes a chain or a
// tree of tokens, the target model checks them all in one batched forward pass (one read of its streamed
// weights), and an acceptance rule keeps the output exactly the target's: token-identical in greedy mode
// (batch invariance, DESIGN invariant 3), the same distribution when sampling (invariant 4).
#ifndef AERO_SPEC_H
#define AERO_SPEC_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/status.h"
#include "../model/model.h"
#include "../sample/sample.h"

typedef struct aero_spec aero_spec;

#include "../../include/aerollm.h" // aero_spec_rule, aero_spec_params, aero_spec_stats

void aero_spec_params_default(aero_spec_params *p);

// Whether draft can propose tokens for target: same tokenizer type, BOS/EOS, the same token string for every
// id both vocabularies hold, and sizes within 128 ids of each other. The error names the first differing id.
aero_status aero_spec_check_vocab(const aero_model *target, const aero_model *draft, aero_error *err);

// Creates a speculative decoder for sequence seq of target (whose context it uses, not owns). draft: a
// loaded drafter model (not owned; it gets its own context here), or NULL for prompt-lookup n-grams.
aero_status aero_spec_new(aero_spec **out, aero_ctx *target, int seq, aero_model *draft, const aero_spec_params *p,
                          aero_error *err);
void aero_spec_free(aero_spec *s);

// Starts generation after prompt (n >= 1 tokens): empties both caches and prefills the prompt but its last
// chunk of n_batch tokens or fewer in one pass (one read of a streamed target); the first step's pass verifies
// that chunk together with the first draft. n_predict: tokens the caller means to generate, for the drafter's
// context check (its training context must cover min(target context, n + n_predict)).
aero_status aero_spec_begin(aero_spec *s, const int32_t *prompt, int n, int n_predict, aero_error *err);

// One draft-and-verify round: writes 1..max_new tokens to out (*n_out), each also passed to
// aero_sampler_accept(smp). The caller has accepted the prompt tokens into smp. Greedy when smp is greedy.
// AERO_ERR_RANGE when the target context is full.
aero_status aero_spec_step(aero_spec *s, aero_sampler *smp, int max_new, int32_t *out, int *n_out, aero_error *err);

// Tokens committed so far (prompt + generated) and the target context size.
int aero_spec_n_tokens(const aero_spec *s);
// The most tokens one aero_spec_step can produce (the longest draft plus the target's own token).
int aero_spec_max_step_tokens(const aero_spec *s);
void aero_spec_get_stats(const aero_spec *s, aero_spec_stats *st);
// Times one target pass of n tokens appended after the committed ones, then removes them (for the speedup
// estimate in --stats and the verify-cost curve in bench). Needs n free context slots.
aero_status aero_spec_time_pass(aero_spec *s, int n, double *secs, aero_error *err);
// "chain (adaptive, <= 16)", "tree (64 nodes)", "n-gram chain (8)", ...
void aero_spec_describe(const aero_spec *s, char *buf, int cap);

#endif
