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

#endif
