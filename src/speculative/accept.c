// The lossless acceptance rule for sampled speculation, for one node of a draft chain or tree.
//
// Candidates x_1..x_m (the node's children, in order) are tested one after another against the target
// distribution p at the node. Candidate i was drawn from q_i given the earlier candidates; it is accepted with
// probability min(1, p_i(x_i) / q_i(x_i)), and on rejection p_{i+1} = norm(max(0, p_i - q_i)). If every
// candidate is rejected, the token is drawn from the last residual. Each step outputs x with probability
// min(p_i, q_i)(x) and otherwise continues with exactly the residual mass, so the token's law is p whatever
// the q_i are (Leviathan et al., "Fast Inference from Transformers via Speculative Decoding", ICML 2023, for
// one candidate; SpecInfer's multi-step speculative sampling, Miao et al., ASPLOS 2024, Algorithm 2 and
// Theorem 4.2, for several; Jeon et al., "Recursive Speculative Decoding", 2024, for candidates that depend on
// the earlier ones). A candidate picked deterministically (the drafter's top-ranked tokens, as SpecExec builds
// its trees, Svirschevski et al. 2024; n-gram continuations) is the case q_i = delta(x_i): accepted with
// probability p_i(x_i), and on rejection x_i is removed from p, which is renormalised.
#include <string.h>

#include "spec_internal.h"

// Scales p to sum 1; false when nothing is left.
static bool normalize(float *p, int n) {
    double sum = 0;
    for (int i = 0; i < n; i++) sum += p[i];
    if (!(sum > 1e-30)) return false;
    float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) p[i] *= inv;
    return true;
}

int aero_spec_accept(float *p, int n_vocab, const spec_node *nodes, const int *children, int n_children,
                     aero_spec_rule rule, aero_sampler *smp, int32_t *token) {
    for (int c = 0; c < n_children; c++) {
        const spec_node *nd = &nodes[children[c]];
        int32_t x = nd->token;
        double px = p[x], qx = nd->q ? nd->q[x] : 1.0;
        double u = aero_sampler_uniform(smp);
        if (qx > 0 && u < px / qx) return c; // u < min(1, p/q)
        if (rule == AERO_SPEC_RULE_WRONG_RESAMPLE) continue;
        // rejected: continue with the residual norm(max(0, p - q))
        if (nd->q)
            for (int i = 0; i < n_vocab; i++) p[i] = p[i] > nd->q[i] ? p[i] - nd->q[i] : 0.0f;
        else p[x] = 0;
        // An empty residual means p <= q everywhere, i.e. p == q: the rejection had probability zero and only
        // rounding got here; acceptance is the exact outcome.
        if (!normalize(p, n_vocab)) return c;
    }
    *token = aero_sampler_draw(smp, p);
    return -1;
}
