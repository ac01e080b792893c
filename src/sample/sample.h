// Token sampling: greedy, temperature, top-k, top-p, min-p, repetition/presence/frequency penalties, seeded RNG.
#ifndef AERO_SAMPLE_H
#define AERO_SAMPLE_H

#include <stdbool.h>
#include <stdint.h>

// A constraint on what may be sampled next (a grammar, a JSON schema): before each draw it sets the logits of
// forbidden tokens to -INFINITY (leaving at least one token allowed), and it advances past each token the
// sampler draws. Only drawn tokens advance it: prompt tokens passed to aero_sampler_accept do not.
typedef struct aero_sampler_constraint aero_sampler_constraint;
struct aero_sampler_constraint {
    void (*mask)(aero_sampler_constraint *c, float *logits, int n_vocab);
    void (*accept)(aero_sampler_constraint *c, int32_t token);
};

typedef struct {
    float temp;              // <= 0: greedy
    int top_k;               // <= 0: off
    float top_p;             // >= 1: off
    float min_p;             // <= 0: off
    float repeat_penalty;    // 1: off (llama.cpp semantics over the last repeat_last_n tokens)
    int repeat_last_n;
    float presence_penalty;  // OpenAI semantics
    float frequency_penalty;
    uint64_t seed;
    aero_sampler_constraint *constraint; // NULL: none; borrowed (must outlive the sampler), state is per request
} aero_sampler_params;

typedef struct aero_sampler aero_sampler;

void aero_sampler_params_default(aero_sampler_params *p);
aero_sampler *aero_sampler_new(const aero_sampler_params *p, int n_vocab);
void aero_sampler_free(aero_sampler *s);
void aero_sampler_reset(aero_sampler *s);             // forgets history; reseeds
// Sets (or with NULL clears) the constraint applied to every later draw; same as params.constraint.
void aero_sampler_set_constraint(aero_sampler *s, aero_sampler_constraint *c);
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
