// Mixture-of-experts feed-forward of a chunk of tokens: router logits, the routing function (softmax or
// sigmoid, selection bias, grouped top-k, normalisation, scale), each selected expert's SwiGLU FFN run on
// just the tokens routed to it, the weighted sum, and the shared expert(s). Conventions (names, shapes,
// routing math) follow llama.cpp's GGUF models; docs/moe.md lists each with its source.
//
// Expert weights come through an aero_moe_source, so the forward pass does not know whether an expert is
// resident or read from disk by the expert cache. Batch invariance: a token's output does not depend on
// which other tokens share its chunk, because every matmul is row-wise batch invariant and the experts of
// a token are summed in ascending expert id, never in arrival order.
#ifndef AERO_MODEL_MOE_H
#define AERO_MODEL_MOE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"
#include "../core/threadpool.h"
#include "../kernels/kernels.h"

// Router probability function; the values are llama.cpp's `%s.expert_gating_func` (0 = absent: softmax).
typedef enum {
    AERO_MOE_GATING_SOFTMAX = 1,        // p = softmax(logits) over all experts
    AERO_MOE_GATING_SIGMOID = 2,        // p = sigmoid(logits) (DeepSeek-V3)
    AERO_MOE_GATING_SOFTMAX_WEIGHT = 3, // select on raw logits, weights = softmax over the selected
} aero_moe_gating;

// The three matrices of one expert's SwiGLU FFN: down(silu(gate x) * up x).
enum { AERO_MOE_GATE = 0, AERO_MOE_UP = 1, AERO_MOE_DOWN = 2 };

// Shape and routing of one MoE layer type (identical for every MoE layer of a model).
typedef struct {
    int n_embd;
    int n_ff_exp;      // rows of one routed expert's gate/up (`%s.expert_feed_forward_length`)
    int n_ff_shexp;    // rows of the shared expert's gate/up (all shared experts merged); 0: none
    int n_expert;      // `%s.expert_count`
    int n_expert_used; // `%s.expert_used_count` (k)
    aero_moe_gating gating;
    bool norm_w;      // divide the k weights by their sum (clamped below at 2^-14)
    float w_scale;    // multiply the weights (`%s.expert_weights_scale`); 0 or 1: no scaling
    int n_group;      // `%s.expert_group_count`; <= 1: no grouped routing
    int n_group_used; // `%s.expert_group_used_count`
} aero_moe_params;

// The dense part of an MoE layer's FFN: everything except the routed experts.
typedef struct {
    aero_wmat router;             // ffn_gate_inp: cols n_embd, rows n_expert
    const float *probs_bias;      // exp_probs_b.bias [n_expert] (selection only), or NULL
    const aero_wmat *sh_gate;     // ffn_gate_shexp: cols n_embd, rows n_ff_shexp; NULL when no shared expert
    const aero_wmat *sh_up;       // ffn_up_shexp:   cols n_embd, rows n_ff_shexp
    const aero_wmat *sh_down;     // ffn_down_shexp: cols n_ff_shexp, rows n_embd
    const aero_wmat *sh_gate_inp; // ffn_gate_inp_shexp (qwen2moe): cols n_embd, rows 1; NULL: shared output ungated
} aero_moe_layer;

// Where routed experts' weights come from. prepare and release may be NULL (all experts always ready).
typedef struct {
    void *ctx;
    // Makes experts[0..n) (ascending ids) ready for get(). A source whose memory cannot hold them all may
    // ready only a prefix: *n_ready (1..n) says how many; the forward pass computes those, releases them and
    // asks again for the rest.
    aero_status (*prepare)(void *ctx, int layer, const int *experts, int n, int *n_ready, aero_error *err);
    // The expert's gate, up and down matrices (w[AERO_MOE_GATE..AERO_MOE_DOWN]), valid until release.
    aero_status (*get)(void *ctx, int layer, int expert, aero_wmat w[3], aero_error *err);
    // The forward pass is done with experts[0..n) of this layer.
    void (*release)(void *ctx, int layer, const int *experts, int n);
} aero_moe_source;

// One expert's slice of a merged tensor (`blk.N.ffn_{gate,up,down}_exps`, ggml ne = {cols, rows, n_expert}):
// the expert index is the outermost dimension, so the slice is rows_per_expert rows at a fixed stride.
aero_wmat aero_moe_slice(const void *merged, aero_dtype type, int64_t cols, int64_t rows_per_expert, int expert);

// A ready-made source for resident merged tensors: ctx points to an array of these, one per layer.
typedef struct {
    const void *data[3]; // ffn_gate_exps, ffn_up_exps, ffn_down_exps
    aero_dtype type[3];
    int n_embd, n_ff_exp;
} aero_moe_merged;
aero_status aero_moe_merged_get(void *ctx, int layer, int expert, aero_wmat w[3], aero_error *err);

// Scratch space of one MoE layer computation for up to max_tokens tokens; reused across layers and calls.
typedef struct aero_moe_work aero_moe_work;
aero_moe_work *aero_moe_work_new(const aero_moe_params *p, int max_tokens);
void aero_moe_work_free(aero_moe_work *w);
// The last routing computed with this work: per token t, its k experts ids[t*k + r] in rank order (best
// first) and their weights; valid until the next call. For traces, the expert cache and the predictor.
const int *aero_moe_work_ids(const aero_moe_work *w);
const float *aero_moe_work_weights(const aero_moe_work *w);

// Checks a parameter set (counts, groups, k <= n_expert) before any layer is built.
aero_status aero_moe_params_check(const aero_moe_params *p, aero_error *err);

// Routes one token from its router logits: ids[0..k) best first (ties: the lower expert id wins) and
// their weights. scratch holds 2 * n_expert floats. Exposed so tests and predictors route exactly as the
// forward pass does.
void aero_moe_route_one(const aero_moe_params *p, const float *logits, const float *probs_bias, float *scratch,
                        int *ids, float *weights);

// Routes n tokens (x: n rows of n_embd, already normalised by ffn_norm) into the work's ids/weights.
aero_status aero_moe_route(aero_pool *pool, const aero_moe_params *p, const aero_moe_layer *L, const float *x, int n,
                           aero_moe_work *w, aero_error *err);

// The union of the experts of the last routing, ascending; returns its size (experts must hold n_expert).
int aero_moe_work_union(const aero_moe_work *w, int *experts);

// y[t] = sum over the token's experts (ascending id) of weight * expert(x[t]), plus the shared expert;
// n <= the work's max_tokens. y must not alias x. The residual is not added. On an error (a source that
// cannot produce an expert) y is unspecified and the message names the layer and the expert.
aero_status aero_moe_forward(aero_pool *pool, const aero_moe_params *p, const aero_moe_layer *L, int layer,
                             const aero_moe_source *src, const float *x, int n, float *y, aero_moe_work *w,
                             aero_error *err);

#endif
