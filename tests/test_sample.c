// The sampler on its own: each truncation and penalty against distributions computed by hand (softmax of the
// adjusted logits written out below), greedy ties, and seed determinism of the draws.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "sample/sample.h"

#define N 5
// Sorted by logit: ids 1, 2, 0, 3, 4.
static const float L[N] = {1.0f, 3.0f, 2.0f, 0.0f, -1.0f};

// Truncation off, temperature 1, no penalties: each case turns on what it tests.
static aero_sampler_params plain(void) {
    aero_sampler_params p;
    aero_sampler_params_default(&p);
    p.temp = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0;
    return p;
}

// Checks the sampler's distribution for L after accepting history[] against want[] (to 1e-6).
static void expect_probs(const char *what, const aero_sampler_params *p, const int32_t *history, int n_history,
                         const double *want) {
    aero_sampler *s = aero_sampler_new(p, N);
    CHECK(s != NULL);
    if (!s) return;
    for (int i = 0; i < n_history; i++) aero_sampler_accept(s, history[i]);
    float probs[N];
    aero_sampler_probs(s, L, probs);
    for (int i = 0; i < N; i++)
        CHECKF(fabs(probs[i] - want[i]) < 1e-6, "%s: p[%d] = %.9f, want %.9f", what, i, probs[i], want[i]);
    aero_sampler_free(s);
}

static void test_temperature(void) {
    aero_sampler_params p = plain();
    const double t1[N] = {0.086128544, 0.636408647, 0.234121657, 0.031684921, 0.011656231}; // softmax(L)
    expect_probs("temp 1", &p, NULL, 0, t1);
    p.temp = 0.5f;
    const double t05[N] = {0.015837606, 0.864703974, 0.117024957, 0.002143387, 0.000290076}; // softmax(2 L)
    expect_probs("temp 0.5", &p, NULL, 0, t05);
}

static void test_truncation(void) {
    aero_sampler_params p = plain();
    const double top2[N] = {0, 0.731058579, 0.268941421, 0, 0}; // softmax(3, 2)
    p.top_k = 2;
    expect_probs("top-k 2", &p, NULL, 0, top2);
    p.top_k = N + 3; // more than the vocabulary: off
    const double all[N] = {0.086128544, 0.636408647, 0.234121657, 0.031684921, 0.011656231};
    expect_probs("top-k > n_vocab", &p, NULL, 0, all);

    // top-p keeps the smallest prefix whose mass reaches p: 0.636 for id 1, 0.871 with id 2.
    p = plain();
    p.top_p = 0.7f;
    expect_probs("top-p 0.7", &p, NULL, 0, top2);
    p.top_p = 0.6f;
    const double only1[N] = {0, 1, 0, 0, 0};
    expect_probs("top-p 0.6", &p, NULL, 0, only1);

    // min-p keeps ids whose probability is at least min_p times the top one's: e^-1 = 0.37 for id 2, e^-2 for id 0.
    p = plain();
    p.min_p = 0.3f;
    expect_probs("min-p 0.3", &p, NULL, 0, top2);
    p.min_p = 0.4f;
    expect_probs("min-p 0.4", &p, NULL, 0, only1);

    // Together, at temperature 2: top-k 3 keeps ids 1, 2, 0 (weights 1, e^-0.5, e^-1), min-p 0.5 drops id 0.
    p = plain();
    p.temp = 2.0f;
    p.top_k = 3;
    p.min_p = 0.5f;
    const double comb[N] = {0, 0.622459331, 0.377540669, 0, 0}; // softmax((3, 2) / 2)
    expect_probs("temp 2 + top-k 3 + min-p 0.5", &p, NULL, 0, comb);
}

static void test_penalties(void) {
    // Repeat penalty 2 (llama.cpp): a positive logit is divided, a non-positive one multiplied, each distinct token
    // of the window once: id 1 (seen twice) 3 -> 1.5, id 3: 0 -> 0.
    aero_sampler_params p = plain();
    p.repeat_penalty = 2.0f;
    const int32_t h1[] = {1, 3, 1};
    const double pen[N] = {0.170351430, 0.280862026, 0.463063196, 0.062668789, 0.023054559}; // softmax(1,1.5,2,0,-1)
    expect_probs("repeat penalty", &p, h1, 3, pen);
    // The window is the last repeat_last_n tokens: id 4 (-1 -> -2) only when the window reaches it.
    const int32_t h2[] = {4, 1, 3};
    p.repeat_last_n = 2;
    expect_probs("repeat window 2", &p, h2, 3, pen);
    p.repeat_last_n = 3;
    const double pen4[N] = {0.172870720, 0.285015633, 0.469911337, 0.063595584, 0.008606726}; // (1,1.5,2,0,-2)
    expect_probs("repeat window 3", &p, h2, 3, pen4);

    // Presence 0.5 and frequency 0.25 (OpenAI): l -= 0.5 + 0.25 * count. id 0 (twice): 1 -> 0; id 2 (once): 2 -> 1.25.
    p = plain();
    p.presence_penalty = 0.5f;
    p.frequency_penalty = 0.25f;
    const int32_t h3[] = {0, 0, 2};
    const double pres[N] = {0.038544915, 0.774195315, 0.134534973, 0.038544915, 0.014179882}; // (0,3,1.25,0,-1)
    expect_probs("presence + frequency", &p, h3, 3, pres);

    // Tokens outside the vocabulary are ignored; reset forgets the history.
    aero_sampler *s = aero_sampler_new(&p, N);
    aero_sampler_accept(s, -1);
    aero_sampler_accept(s, N);
    aero_sampler_accept(s, 0);
    aero_sampler_reset(s);
    float probs[N];
    aero_sampler_probs(s, L, probs);
    const double t1[N] = {0.086128544, 0.636408647, 0.234121657, 0.031684921, 0.011656231};
    for (int i = 0; i < N; i++) CHECKF(fabs(probs[i] - t1[i]) < 1e-6, "after reset p[%d] = %f", i, probs[i]);
    aero_sampler_free(s);
}

static void test_greedy(void) {
    aero_sampler_params p = plain();
    p.temp = 0;
    aero_sampler *s = aero_sampler_new(&p, N);
    CHECK(aero_sampler_is_greedy(s));
    CHECK(aero_sampler_sample(s, L) == 1);
    float probs[N];
    aero_sampler_probs(s, L, probs);
    for (int i = 0; i < N; i++) CHECK(probs[i] == (i == 1 ? 1.0f : 0.0f));
    const float tie[N] = {0.5f, 2.0f, 1.0f, 2.0f, 2.0f};
    CHECK(aero_sampler_sample(s, tie) == 1); // lowest id among equal logits
    CHECK(aero_argmax(tie, N) == 1);
    aero_sampler_free(s);

    // Greedy still sees the penalties: id 1 falls to 1.5 under repeat penalty 2, so id 2 wins.
    p.repeat_penalty = 2.0f;
    s = aero_sampler_new(&p, N);
    aero_sampler_accept(s, 1);
    CHECK(aero_sampler_sample(s, L) == 2);
    aero_sampler_free(s);

    CHECK(aero_sampler_new(&p, 0) == NULL);
}

// The same seed gives the same draws (also after reset); another seed other draws; frequencies follow probs.
static void test_seed(void) {
    aero_sampler_params p = plain();
    p.seed = 42;
    aero_sampler *a = aero_sampler_new(&p, N), *b = aero_sampler_new(&p, N);
    p.seed = 43;
    aero_sampler *c = aero_sampler_new(&p, N);
    int32_t first[200];
    int same_ab = 0, same_ac = 0;
    for (int i = 0; i < 200; i++) {
        first[i] = aero_sampler_sample(a, L);
        int32_t tb = aero_sampler_sample(b, L), tc = aero_sampler_sample(c, L);
        same_ab += first[i] == tb;
        same_ac += first[i] == tc;
    }
    CHECK(same_ab == 200);
    CHECKF(same_ac < 200, "seeds 42 and 43 drew the same 200 tokens");
    aero_sampler_reset(a);
    int again = 0;
    for (int i = 0; i < 200; i++) again += aero_sampler_sample(a, L) == first[i];
    CHECK(again == 200);

    for (int i = 0; i < 1000; i++) {
        double u = aero_sampler_uniform(b);
        CHECK(u >= 0 && u < 1);
    }
    // 20000 draws from {0: 0.25, 3: 0.75}: never an id of probability 0; the share of id 3 within 0.02.
    const float probs[N] = {0.25f, 0, 0, 0.75f, 0};
    int count[N] = {0};
    for (int i = 0; i < 20000; i++) count[aero_sampler_draw(c, probs)]++;
    CHECK(count[1] == 0 && count[2] == 0 && count[4] == 0);
    CHECKF(fabs(count[3] / 20000.0 - 0.75) < 0.02, "id 3 drawn %d times in 20000", count[3]);
    aero_sampler_free(a);
    aero_sampler_free(b);
    aero_sampler_free(c);
}

int main(void) {
    test_temperature();
    test_truncation();
    test_penalties();
    test_greedy();
    test_seed();
    return check_done("test_sample");
}
