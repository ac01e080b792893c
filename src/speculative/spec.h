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

// Many sequences verified in one target pass (the server's scheduler): the caller runs the pass. resume starts
// after tokens the caller decoded itself (toks[0..n), the target caching all but the last); each round, draft
// proposes nodes, the caller adds the last committed token (at position n_tokens - 1, its logits wanted) then
// every node (at position n_tokens - 1 + depth, logits wanted; a node attends to its ancestors and the root) to
// its pass, and commit walks the rows (the root's, then one per node, contiguous) like aero_spec_step:
// 1..max_new tokens in out, accepted into smp, the rejected nodes removed from the target cache.
// fit_tokens > 0: this sequence's share of a pass of decoding tokens only (the pass's tokens and seconds over
// the sequences it advanced), a sample of the cost the adaptive length weighs: the fixed cost of a pass is
// shared, each token drafted is not.
// With a draft head, the hidden states of the pass's rows come from the target context: commit reads those of the
// rows it commits (root_row: the root's batch index, its nodes after it), and aero_spec_observe records the rows
// of this sequence the caller decoded without a draft (prompt chunks, plain steps: batch rows [row, row + n) are
// positions [pos, pos + n)), after the pass and before the next; positions never observed (a reused cached
// prefix) have zero features, which only makes the head's drafts worse.
aero_status aero_spec_resume(aero_spec *s, const int32_t *toks, int n, aero_error *err);
aero_status aero_spec_draft(aero_spec *s, aero_sampler *smp, int max_new, int *n_nodes, aero_error *err);
void aero_spec_node(const aero_spec *s, int i, int32_t *token, int *parent, int *depth);
void aero_spec_commit(aero_spec *s, aero_sampler *smp, const float *rows, int root_row, double fit_tokens,
                      double fit_s, int32_t *out, int *n_out);
void aero_spec_observe(aero_spec *s, int row, int pos, int n);
// A decoder for another sequence of like's target with like's drafter (a draft head: its weights shared, so
// like must outlive it), settings p (p->draft_head: whether to draft with the head). The server makes one per
// request.
aero_status aero_spec_new_like(aero_spec **out, const aero_spec *like, int seq, const aero_spec_params *p,
                               aero_error *err);

// The draft head's file format (head.c): FNV-1a 64 of the teacher's token strings, recorded in a head so that a
// head for another teacher is refused; and a head of random weights for teacher (tests), recording teacher_name
// (NULL: the teacher's general.name) as the teacher it was made for; echo: a head that mostly passes the
// feature through (proposes what the teacher predicted one position earlier).
uint64_t aero_spec_head_vocab_hash(const aero_model *m);
aero_status aero_spec_head_write_random(const char *path, const aero_model *teacher, int n_head, int n_ff,
                                        uint64_t seed, const char *teacher_name, bool echo, aero_error *err);

// The draft head's depth-1 prediction at every committed position after aero_spec_begin: out[p - 1] = argmax of
// the head's logits at token p (p = 1 .. n - 1) from the target's hidden state at p - 1, for comparing the
// engine's head with train/train_head.py's head_reference.txt.
aero_status aero_spec_head_argmax(aero_spec *s, int32_t *out, aero_error *err);

#endif
