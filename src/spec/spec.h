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

// How a drafted token is accepted. Only LOSSLESS is correct; the other exists so that tests can show their
// distribution check detects a wrong rule.
typedef enum {
    AERO_SPEC_RULE_LOSSLESS = 0,   // min(1, p/q), then the residual norm(max(0, p - q)) (see accept.c)
    AERO_SPEC_RULE_WRONG_RESAMPLE, // WRONG: after a rejection, draws from p itself instead of the residual
} aero_spec_rule;

typedef struct {
    int draft_max;     // longest chain, deepest tree path (>= 1)
    int draft_min;     // p_min never stops a draft shorter than this; the adaptive length is at least this
    float p_min;       // stop drafting when the drafter's top probability (chain) or the best branch's path
                       // probability (tree) falls below this; 0: off
    int tree_nodes;    // > 0: draft a tree of up to this many nodes; 0: a chain
    bool adaptive;     // chain: choose the length from measured acceptance and pass costs (else draft_max);
                       // tree: verify the most promising prefix of the nodes by the same costs
    int ngram_min, ngram_max; // n-gram drafter: context suffix lengths tried, longest first (<= 0: 1 and 4)
    int n_batch;       // -b (<= 0: 512): the drafter context's compute tile, and the prompt's last chunk
                       // (1..n_batch tokens) that the first verify pass takes; the rest is prefilled in one pass
    aero_sampler_params sampling; // the target's sampling settings: drafts are drawn with the same temperature and
                                  // truncation (penalties aside) so they are accepted often; any choice is lossless
    aero_spec_rule rule;
} aero_spec_params;

typedef struct {
    uint64_t prefill_passes;   // target passes over the prompt but its last chunk (0 or 1)
    uint64_t verify_passes;    // target passes that checked a draft (each yields >= 1 token)
    uint64_t drafted;          // tokens proposed (tree: nodes)
    uint64_t accepted;         // proposed tokens the target kept
    uint64_t generated;        // tokens produced by verify passes (accepted + one per pass)
    uint64_t draft_calls;      // drafter forward passes
    uint64_t verify_tokens;    // tokens fed to the target by verify passes (pending + drafted)
    double prefill_s, draft_s, verify_s, accept_s;
    double alpha;              // current acceptance-rate estimate (chain, adaptive)
    double pass_a, pass_b;     // fitted target pass cost: a + b * tokens (seconds)
    double draft_call_s;       // mean drafter call time
    int draft_len;             // chain length (tree: nodes) chosen by the last step
} aero_spec_stats;

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
