// Token sampling: greedy, temperature, top-k, top-p, min-p, repetition/presence/frequency penalties, seeded RNG.
#ifndef AERO_SAMPLE_H
#define AERO_SAMPLE_H

#include <stdbool.h>
#include <stdint.h>

// aero_sampler_params and the sampler's public functions (new, free, reset, is_greedy, accept, sample) are
// declared in include/aerollm.h; these are the parts the speculative decoder and the tests use beyond them.
#include "../../include/aerollm.h"

// The layout of a sampling constraint (a grammar, a JSON schema): before each draw it sets the logits of
// forbidden tokens to -INFINITY (leaving at least one token allowed), and it advances past each token the
// sampler draws. Only drawn tokens advance it: prompt tokens passed to aero_sampler_accept do not.
struct aero_sampler_constraint {
    void (*mask)(aero_sampler_constraint *c, float *logits, int n_vocab);
    void (*accept)(aero_sampler_constraint *c, int32_t token);
};

// Final distribution over the vocabulary after penalties, temperature and truncation (zeros outside the kept set);
// greedy gives a one-hot. logits is not modified. probs has n_vocab entries.
void aero_sampler_probs(const aero_sampler *s, const float *logits, float *probs);
// Draws a token from probs with the sampler's RNG (does not accept it).
int32_t aero_sampler_draw(aero_sampler *s, const float *probs);
// Uniform [0,1) from the sampler's RNG (speculative acceptance tests).
double aero_sampler_uniform(aero_sampler *s);
int32_t aero_argmax(const float *x, int n);

#endif
