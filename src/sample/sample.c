// Samplers: penalties, temperature, top-k, top-p and min-p turn logits into a distribution; a seeded
// xoshiro256** RNG draws from it, so the same seed gives the same text.
#include "sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define HISTORY_MAX 4096

struct aero_sampler {
    aero_sampler_params p;
    int n_vocab;
    uint64_t rng[4];
    int32_t *history; // ring of recent tokens (repeat penalty window)
    int n_history, history_at;
    uint32_t *counts; // occurrences of each token in the whole context (presence/frequency)
    int *order;       // scratch: token ids sorted by logit
    float *scratch;
    aero_sampler_constraint *constraint;
    int32_t drawn; // the last token drawn under the constraint, until it is accepted
};

void aero_sampler_params_default(aero_sampler_params *p) {
    memset(p, 0, sizeof *p);
    p->temp = 0.8f;
    p->top_k = 40;
    p->top_p = 0.95f;
    p->min_p = 0.05f;
    p->repeat_penalty = 1.0f;
    p->repeat_last_n = 64;
    p->seed = 0x5eed;
}

// splitmix64, to expand the user's seed into the RNG state.
static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// xoshiro256**: fast, good quality, fully determined by the seed.
static uint64_t rng_next(uint64_t *s) {
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

void aero_sampler_reset(aero_sampler *s) {
    uint64_t x = s->p.seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
    s->n_history = s->history_at = 0;
    memset(s->counts, 0, sizeof(uint32_t) * s->n_vocab);
}

aero_sampler *aero_sampler_new(const aero_sampler_params *p, int n_vocab) {
    if (n_vocab <= 0) return NULL;
    aero_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = *p;
    if (s->p.repeat_last_n < 0) s->p.repeat_last_n = 0;
    if (s->p.repeat_last_n > HISTORY_MAX) s->p.repeat_last_n = HISTORY_MAX;
    s->n_vocab = n_vocab;
    s->constraint = p->constraint;
    s->drawn = -1;
    s->history = malloc(sizeof(int32_t) * HISTORY_MAX);
    s->counts = calloc(n_vocab, sizeof(uint32_t));
    s->order = malloc(sizeof(int) * n_vocab);
    s->scratch = malloc(sizeof(float) * n_vocab);
    if (!s->history || !s->counts || !s->order || !s->scratch) {
        aero_sampler_free(s);
        return NULL;
    }
    aero_sampler_reset(s);
    return s;
}

void aero_sampler_free(aero_sampler *s) {
    if (!s) return;
    free(s->history);
    free(s->counts);
    free(s->order);
    free(s->scratch);
    free(s);
}

bool aero_sampler_is_greedy(const aero_sampler *s) { return !(s->p.temp > 0); }

void aero_sampler_set_constraint(aero_sampler *s, aero_sampler_constraint *c) {
    s->constraint = c;
    s->p.constraint = c;
    s->drawn = -1;
}

void aero_sampler_accept(aero_sampler *s, int32_t token) {
    if (token < 0 || token >= s->n_vocab) return;
    if (s->constraint && token == s->drawn) { // a generated token, not context
        s->constraint->accept(s->constraint, token);
        s->drawn = -1;
    }
    s->history[s->history_at] = token;
    s->history_at = (s->history_at + 1) % HISTORY_MAX;
    if (s->n_history < HISTORY_MAX) s->n_history++;
    if (s->counts[token] < UINT32_MAX) s->counts[token]++;
}

int32_t aero_argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

// Applies llama.cpp's repeat penalty over the last window and OpenAI's presence/frequency penalties.
static void apply_penalties(const aero_sampler *s, float *l) {
    const aero_sampler_params *p = &s->p;
    if (p->repeat_penalty != 1.0f && p->repeat_penalty > 0 && p->repeat_last_n > 0) {
        int n = s->n_history < p->repeat_last_n ? s->n_history : p->repeat_last_n;
        // Penalise each distinct token once, as llama.cpp does.
        for (int i = 0; i < n; i++) {
            int32_t t = s->history[(s->history_at - 1 - i + HISTORY_MAX) % HISTORY_MAX];
            bool seen = false;
            for (int j = 0; j < i && !seen; j++)
                seen = s->history[(s->history_at - 1 - j + HISTORY_MAX) % HISTORY_MAX] == t;
            if (seen) continue;
            l[t] = l[t] > 0 ? l[t] / p->repeat_penalty : l[t] * p->repeat_penalty;
        }
    }
    if (p->presence_penalty != 0 || p->frequency_penalty != 0)
        for (int t = 0; t < s->n_vocab; t++)
            if (s->counts[t]) l[t] -= p->presence_penalty + p->frequency_penalty * (float)s->counts[t];
}

static __thread const float *sort_keys; // qsort has no context argument
static int cmp_desc(const void *a, const void *b) {
    float x = sort_keys[*(const int *)a], y = sort_keys[*(const int *)b];
    if (x != y) return x < y ? 1 : -1;
    return *(const int *)a - *(const int *)b;
}

// Sorts ids by descending value (ties by id), for the truncation samplers.
static void sort_desc(const float *v, int *order, int n) {
    for (int i = 0; i < n; i++) order[i] = i;
    sort_keys = v;
    qsort(order, n, sizeof *order, cmp_desc);
}

void aero_sampler_probs(const aero_sampler *s, const float *logits, float *probs) {
    int n = s->n_vocab;
    float *l = s->scratch;
    memcpy(l, logits, sizeof(float) * n);
    apply_penalties(s, l);
    if (s->constraint) s->constraint->mask(s->constraint, l, n);
    if (aero_sampler_is_greedy(s)) {
        memset(probs, 0, sizeof(float) * n);
        probs[aero_argmax(l, n)] = 1.0f;
        return;
    }
    const aero_sampler_params *p = &s->p;
    int *order = s->order;
    sort_desc(l, order, n);
    int keep = n;
    if (p->top_k > 0 && p->top_k < keep) keep = p->top_k;
    // softmax over the kept candidates at temperature
    double maxl = l[order[0]], sum = 0;
    for (int i = 0; i < keep; i++) sum += exp((l[order[i]] - maxl) / p->temp);
    if (p->top_p < 1.0f && p->top_p > 0) {
        double cum = 0;
        for (int i = 0; i < keep; i++) {
            cum += exp((l[order[i]] - maxl) / p->temp) / sum;
            if (cum >= p->top_p) {
                keep = i + 1;
                break;
            }
        }
    }
    if (p->min_p > 0) {
        // min-p: drop candidates whose probability is below min_p times the top one's
        double floor_w = p->min_p; // relative to exp(0) of the max
        int k = 1;
        while (k < keep && exp((l[order[k]] - maxl) / p->temp) >= floor_w) k++;
        keep = k;
    }
    memset(probs, 0, sizeof(float) * n);
    double z = 0;
    for (int i = 0; i < keep; i++) z += exp((l[order[i]] - maxl) / p->temp);
    for (int i = 0; i < keep; i++) probs[order[i]] = (float)(exp((l[order[i]] - maxl) / p->temp) / z);
}

double aero_sampler_uniform(aero_sampler *s) { return (rng_next(s->rng) >> 11) * (1.0 / 9007199254740992.0); }

// The token drawn from probs (the sampler's RNG).
static int32_t draw(aero_sampler *s, const float *probs) {
    double u = aero_sampler_uniform(s), cum = 0;
    int last = -1;
    for (int i = 0; i < s->n_vocab; i++) {
        if (probs[i] <= 0) continue;
        cum += probs[i];
        last = i;
        if (u < cum) return i;
    }
    return last >= 0 ? last : 0;
}

int32_t aero_sampler_draw(aero_sampler *s, const float *probs) {
    int32_t t = draw(s, probs);
    s->drawn = t;
    return t;
}

int32_t aero_sampler_sample(aero_sampler *s, const float *logits) {
    if (aero_sampler_is_greedy(s) && !s->constraint) {
        if (s->p.repeat_penalty == 1.0f && s->p.presence_penalty == 0 && s->p.frequency_penalty == 0)
            return aero_argmax(logits, s->n_vocab);
    }
    float *probs = malloc(sizeof(float) * s->n_vocab);
    if (!probs) return aero_argmax(logits, s->n_vocab);
    aero_sampler_probs(s, logits, probs);
    int32_t t = aero_sampler_is_greedy(s) ? aero_argmax(probs, s->n_vocab) : draw(s, probs);
    free(probs);
    s->drawn = t;
    return t;
}
