// Token sampling: greedy, temperature, top-k, top-p, min-p, repetition/presence/frequency penalties, seeded RNG.
#ifndef AERO_SAMPLE_H
#define AERO_SAMPLE_H

#include <stdbool.h>
#include <stdint.h>

#include "../../include/aerollm.h" // aero_sampler_params

typedef struct aero_sampler aero_sampler;

void aero_sampler_params_default(aero_sampler_params *p);
aero_sampler *aero_sampler_new(const aero_sampler_params *p, int n_vocab);
void aero_sampler_free(aero_sampler *s);
void aero_sampler_reset(aero_sampler *s);             // forgets history; reseeds
bool aero_sampler_is_greedy(const aero_sampler *s);
// Records a token of the context (prompt or generated) for penalties.
void aero_sampler_accept(aero_sampler *s, int32_t token);
// Final distribution over the vocabulary after penalties, temperature and truncation (zeros outside the kept set);
// greedy gives a one-hot. logits is not modified. probs has n_vocab entries.
void aero_sampler_probs(const aero_sampler *s, const float *logits, float *probs);
// Draws a token from probs with the sampler's RNG (does not accept it).
int32_t aero_sampler_draw(aero_sampler *s, const float *probs);
// probs + draw; argmax (lowest id on ties) when greedy.
int32_t aero_sampler_sample(aero_sampler *s, const float *logits);
// Uniform [0,1) from the sampler's RNG (speculative acceptance tests).
double aero_sampler_uniform(aero_sampler *s);
int32_t aero_argmax(const float *x, int n);

#endif
