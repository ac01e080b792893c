// Internals shared by the speculative decoder's files: the draft tree, the decoder state, the drafters and the
// acceptance rule.
#ifndef AERO_SPEC_INTERNAL_H
#define AERO_SPEC_INTERNAL_H

#include "../core/util.h"
#include "spec.h"

// One drafted token. Nodes are stored parents first; the root (the last committed token, whose target
// distribution the verify pass computes first) is index -1. A chain is the tree where every node has one child.
typedef struct {
    int32_t token;
    int parent;     // node index, -1: a child of the root
    int depth;      // 1 for the root's children
    double logp;    // drafter log-probability of the path from the root to here (ranking)
    const float *q; // distribution the token was drawn from (sampled chain drafts); NULL: chosen deterministically
    int first_child, next_sibling; // -1 terminated, in node order
    int rank;       // among its siblings in the drafter's ranking (0: most probable)
} spec_node;

// Decayed least-squares fit of a cost t(n) = a + b n (target pass time against tokens in the pass).
typedef struct {
    double w, sn, st, snn, snt;
} spec_fit;

// A verify pass's cost against its token count, for the COST tree policy: decayed means per power-of-two bucket
// of the count, so the curve's shape (flat while a streamed pass is IO-bound, rising once compute dominates)
// is seen rather than forced onto a line.
#define CURVE_BUCKETS 12
typedef struct {
    double w[CURVE_BUCKETS], n[CURVE_BUCKETS], t[CURVE_BUCKETS];
    int n_max; // the largest pass measured: trees grow at most to twice this until larger passes are timed
} spec_curve;

// The feature-level draft head (head.c).
typedef struct aero_spec_head aero_spec_head;

struct aero_spec {
    aero_spec_params p;
    aero_sampler_params sp; // the target's sampling settings (the drafter's q uses them, penalties aside)
    aero_ctx *tctx;
    aero_model *tmodel;
    int seq, n_vocab, n_ctx;
    // drafter (NULL model: n-grams)
    aero_model *dmodel;
    aero_ctx *dctx;
    int d_vocab, n_shared; // ids both vocabularies hold: [0, n_shared)
    aero_sampler *dsmp;    // drafter distribution and draws (sampling mode)
    // committed tokens (prompt + generated); the target caches t_len of them (all but the last; after begin, all
    // but the prompt's last chunk), the drafter d_len
    int32_t *toks;
    int n_tok, cap_tok, t_len, d_len;
    // draft
    int max_nodes, n_nodes, root_child; // root_child: first child of the root (-1: none)
    spec_node *nodes;
    float *qbuf;      // per chain node: the drafter distribution it was drawn from (n_vocab each)
    float *qtmp;      // a drafter distribution being ranked (n_vocab)
    float *dlogits;   // drafter logits: one row per node evaluated at once (d_vocab each)
    int32_t *top_tok; // per evaluated tree node (+1 for the root): its top candidates
    float *top_q;
    int *n_top;
    int top_b;
    // verify
    float *tlogits;         // target logits: root row then one per node (n_vocab each)
    float *pdist;           // target distribution at a node (n_vocab)
    int32_t *btok, *bpos;   // batch scratch (max_nodes + 1, or n_batch)
    uint8_t *bmask, *bwant; // (max_nodes + 1)^2, max(max_nodes + 1, n_batch)
    int *keep;              // accepted path (verify); nodes whose drafter rows came back (tree drafting)
    int *fed, n_fed;        // drafted nodes fed to the drafter after the committed tokens, in order
    // adaptive chain length
    double acc_w, rej_w; // decayed accepted-token and rejection counts
    spec_fit fit;
    double draft_call_ema;
    int skipped;                 // steps since the adaptive length last drafted
    double tree_acc_w, tree_p_w; // decayed accepted nodes and summed drafter path probabilities of verified nodes
    int tree_cap;                // adaptive tree: nodes to draft next (<= tree_nodes)
    // COST tree policy: the worth of a drafter evaluation, the verify-cost curve, drafter call costs
    double expand_hit, expand_try; // reached nodes with drafted children: how often one child was accepted
    spec_curve curve;
    spec_fit dfit;     // drafter call time against tokens fed
    double draft_cost; // fixed costs: modelled drafting time of the current step
    // draft head (NULL: none): the target's last hidden state per committed position (n_embd each, the head's
    // input), the head's output feature at the root and per evaluated node, and each node's head cache cell
    aero_spec_head *head;
    float *hfeat, *hroot, *nfeat;
    int *ncell;
    aero_spec_stats st;
};

// Adds a sample (n tokens took t seconds) to a decayed cost fit; reads the fit as t(n) = a + b n.
void aero_spec_fit_add(spec_fit *f, double n, double t);
void aero_spec_fit_get(const spec_fit *f, double *a, double *b);

// Runs the drafter over toks[d_len, n_tok) and leaves the last token's logits in s->dlogits (row 0).
aero_status aero_spec_draft_catch_up(aero_spec *s, aero_error *err);
// Fills s->nodes with a chain of at most k tokens (model drafter; greedy: argmax, else drawn from q).
aero_status aero_spec_draft_chain(aero_spec *s, bool greedy, int k, aero_error *err);
// Fills s->nodes with a best-first tree of at most max_nodes nodes and depth max_depth (model drafter): the
// drafter's greedy spine with the other candidates of each spine node as leaves.
aero_status aero_spec_draft_tree(aero_spec *s, bool greedy, int max_nodes, int max_depth, aero_error *err);
// Fills s->nodes with a tree grown by the COST policy (model drafter): best-first by estimated acceptance, in
// drafter waves, while a node's expected accepted tokens beat its marginal cost; then keeps the best subtree.
aero_status aero_spec_draft_tree_cost(aero_spec *s, bool greedy, int max_nodes, int max_depth, aero_error *err);
// COST policy helpers (spec.c): a verify pass of n tokens and a drafter call of n tokens, in seconds (or the
// fixed cost units); a verify time < 0 when nothing was measured yet.
double aero_spec_verify_cost(const aero_spec *s, int n);
double aero_spec_draft_call_cost(const aero_spec *s, int n);
// The estimated probability that the target accepts a drafted path of drafter log-probability logp: the
// drafter's probability scaled by the measured ratio of accepted nodes to summed path probabilities.
double aero_spec_path_accept(const aero_spec *s, double logp);
// Fills s->nodes from earlier occurrences of the context's suffix (chain: one, tree: a trie of several).
void aero_spec_draft_ngram(aero_spec *s, bool tree, int max_nodes, int max_depth);
// Ranks the drafter's candidates after one node (slot = node + 1; 0: the root): the top_b most probable ids.
void aero_spec_rank_children(aero_spec *s, bool greedy, const float *logits, int slot);

// The draft head: loads path for the target context (refused when it was trained for another teacher), with
// cells cache cells, at most rows tokens a call and up to nodes drafted tokens a step; its layer runs on the
// target's GPU when the target computes there (aero_ctx_params.gpu_head_vram planned room for it), else on the
// host. Its weight bytes; cache truncation to a committed prefix.
aero_status aero_spec_head_load(aero_spec_head **out, const char *path, aero_ctx *target, int cells, int rows,
                                int nodes, aero_error *err);
void aero_spec_head_free(aero_spec_head *h);
// A head for another sequence of the same target sharing like's weights (like must outlive it): the server loads
// the file once for all its sequences.
aero_status aero_spec_head_load_like(aero_spec_head **out, const aero_spec_head *like, int cells, int rows, int nodes,
                                     aero_error *err);
// The cache cells and the rows a call computes of a head for a context of n_ctx tokens drafting up to nodes
// tokens a step, prefilling n_batch tokens a pass (what aero_spec_new gives aero_spec_head_load, and
// aero_spec_head_mem counts).
int aero_spec_head_cells(int n_ctx, int nodes);
int aero_spec_head_rows(int nodes, int n_batch);
// Whether the head's layer runs on the GPU.
bool aero_spec_head_on_gpu(const aero_spec_head *h);
// Whether s's head drafts its chains on the device (its layer on the GPU with the target's embedding in VRAM;
// greedy, or T > 0 without --draft-p-min and a constraint; AERO_DRAFT_HEAD_DEVCHAIN=0 turns it off).
bool aero_spec_head_devchain(const aero_spec *s, bool greedy);
uint64_t aero_spec_head_bytes(const aero_spec_head *h);
void aero_spec_head_truncate(aero_spec_head *h, int n_commit);
// Fills s->nodes from the draft head: best-first by path probability, evaluating the most probable
// unexpanded nodes in waves (one head call each); branch children ranked per node (1: a chain).
aero_status aero_spec_draft_head(aero_spec *s, bool greedy, int max_nodes, int max_depth, int branch,
                                 aero_error *err);

// Links first_child/next_sibling in node order.
void aero_spec_link_children(aero_spec *s);

// The next token at a node whose children were drafted: p is the target distribution there (overwritten).
// Returns the index into children[] of the accepted child, or -1 with *token drawn from what remains of p.
int aero_spec_accept(float *p, int n_vocab, const spec_node *nodes, const int *children, int n_children,
                     aero_spec_rule rule, aero_sampler *smp, int32_t *token);

#endif
