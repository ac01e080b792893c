// Drafters: a small resident model proposing a chain (one token per drafter step) or a best-first tree, and
// prompt lookup proposing continuations of earlier occurrences of the context's last n tokens.
#include <math.h>
#include <string.h>

#include "spec_internal.h"

// Runs one drafter batch, timing it for the adaptive cost model.
static aero_status draft_decode(aero_spec *s, const aero_batch *b, float *logits, aero_error *err) {
    double t0 = aero_now();
    aero_status st = aero_decode(s->dctx, b, logits, err);
    double dt = aero_now() - t0;
    s->st.draft_calls++;
    if (b->n <= s->max_nodes + 1) aero_spec_fit_add(&s->dfit, b->n, dt);
    if (b->n <= 2) s->draft_call_ema = s->draft_call_ema > 0 ? 0.9 * s->draft_call_ema + 0.1 * dt : dt;
    if (st) return aero_error_prefix(err, "draft model: ");
    return AERO_OK;
}

// A committed token as the drafter sees it: ids beyond its vocabulary (a target's padding rows) become 0.
static int32_t draft_id(const aero_spec *s, int32_t t) { return t < s->d_vocab ? t : 0; }

aero_status aero_spec_draft_catch_up(aero_spec *s, aero_error *err) {
    int nb = s->p.n_batch;
    s->n_fed = 0;
    while (s->d_len < s->n_tok) {
        int n = s->n_tok - s->d_len < nb ? s->n_tok - s->d_len : nb;
        for (int i = 0; i < n; i++) {
            s->btok[i] = draft_id(s, s->toks[s->d_len + i]);
            s->bpos[i] = s->d_len + i;
            s->bwant[i] = i == n - 1;
        }
        aero_batch b = {.n = n, .tokens = s->btok, .pos = s->bpos, .want_logits = s->bwant};
        aero_status st = draft_decode(s, &b, s->dlogits, err);
        if (st) return st;
        s->d_len += n;
    }
    return AERO_OK;
}

// The drafter's distribution over the shared ids at one position, zero elsewhere: a softmax at temperature 1
// when the target is greedy (only the ranking matters), else the target's sampling transform without penalties.
static void draft_dist(aero_spec *s, bool greedy, const float *logits, float *q) {
    int n = s->n_shared;
    if (greedy) {
        float mx = logits[aero_argmax(logits, n)];
        double sum = 0;
        for (int i = 0; i < n; i++) sum += q[i] = expf(logits[i] - mx);
        float inv = (float)(1 / sum);
        for (int i = 0; i < n; i++) q[i] *= inv;
    } else {
        aero_sampler_probs(s->dsmp, logits, q);
    }
    for (int i = n; i < s->n_vocab; i++) q[i] = 0;
}

// Appends a node; returns its index.
static int add_node(aero_spec *s, int32_t tok, int parent, double logp, const float *q) {
    spec_node *nd = &s->nodes[s->n_nodes];
    *nd = (spec_node){.token = tok,
                      .parent = parent,
                      .depth = parent < 0 ? 1 : s->nodes[parent].depth + 1,
                      .logp = logp,
                      .q = q,
                      .first_child = -1,
                      .next_sibling = -1,
                      .rank = 0};
    return s->n_nodes++;
}

static bool is_eog(const aero_spec *s, int32_t t) { return aero_tokenizer_is_eog(aero_model_tokenizer(s->tmodel), t); }

// Feeds a drafted node to the drafter after the committed tokens and the nodes fed before it (its ancestors),
// leaving its logits in dlogits; records it so that the accepted ones stay cached after verification.
static aero_status feed_node(aero_spec *s, int node, aero_error *err) {
    int32_t tok = s->nodes[node].token, pos = s->n_tok + s->nodes[node].depth - 1;
    aero_batch b = {.n = 1, .tokens = &tok, .pos = &pos};
    aero_status st = draft_decode(s, &b, s->dlogits, err);
    if (st) return st;
    s->fed[s->n_fed++] = node;
    s->d_len++;
    return AERO_OK;
}

aero_status aero_spec_draft_chain(aero_spec *s, bool greedy, int k, aero_error *err) {
    s->n_nodes = 0;
    if (k <= 0) return AERO_OK;
    aero_status st = aero_spec_draft_catch_up(s, err);
    if (st) return st;
    double logp = 0;
    for (int i = 0; i < k; i++) {
        float *q = s->qbuf + (size_t)i * s->n_vocab;
        draft_dist(s, greedy, s->dlogits, q);
        int32_t best = aero_argmax(q, s->n_shared);
        if (s->p.p_min > 0 && i >= s->p.draft_min && q[best] < s->p.p_min) break;
        int32_t x = greedy ? best : aero_sampler_draw(s->dsmp, q);
        logp += log(q[x] > 0 ? q[x] : 1e-30);
        int id = add_node(s, x, i - 1, logp, greedy ? NULL : q);
        if (i + 1 == k || is_eog(s, x)) break;
        if ((st = feed_node(s, id, err))) return st;
    }
    return AERO_OK;
}

// Whether candidate (q, logit) ranks before (q2, logit2): the larger probability, then the larger logit (q rounds
// logits a few ulps apart to the same float; the logit keeps the ranking the logits' own, so the top candidate is
// the first largest logit, as the device's argmax picks it), then the earlier id (the caller's scan order).
static bool ranks_before(float q, float logit, float q2, float logit2) { return q > q2 || (q == q2 && logit > logit2); }

void aero_spec_rank_children(aero_spec *s, bool greedy, const float *logits, int slot) {
    draft_dist(s, greedy, logits, s->qtmp);
    int32_t *tt = s->top_tok + (size_t)slot * s->top_b;
    float *tq = s->top_q + (size_t)slot * s->top_b;
    int n = 0;
    for (int i = 0; i < s->n_shared; i++) {
        float v = s->qtmp[i], lv = logits[i];
        if (!(v > 0) || (n == s->top_b && !ranks_before(v, lv, tq[n - 1], logits[tt[n - 1]]))) continue;
        int j = n < s->top_b ? n++ : n - 1;
        while (j > 0 && ranks_before(v, lv, tq[j - 1], logits[tt[j - 1]])) {
            tq[j] = tq[j - 1];
            tt[j] = tt[j - 1];
            j--;
        }
        tq[j] = v;
        tt[j] = i;
    }
    s->n_top[slot] = n;
}

// Evaluates the pending tree nodes in one drafter batch. The drafter's cache cannot hide entries it holds, so
// the batch starts again after the committed tokens: the spine (nodes already fed, in order), then next_spine
// (the tip's first-ranked child, or -1), then every other node in node order, under a tree mask; logits come
// back for the pending nodes (rows in batch order). Afterwards the cache keeps the committed tokens and the
// spine, extended by next_spine.
static aero_status refeed(aero_spec *s, const bool *pending, int next_spine, aero_error *err) {
    int n = s->n_nodes, order[n], bidx[n], k = 0;
    for (int i = 0; i < n; i++) bidx[i] = -1;
    for (int i = 0; i < s->n_fed; i++) bidx[s->fed[i]] = k, order[k++] = s->fed[i];
    if (next_spine >= 0) bidx[next_spine] = k, order[k++] = next_spine;
    for (int i = 0; i < n; i++)
        if (bidx[i] < 0) bidx[i] = k, order[k++] = i;
    memset(s->bmask, 0, (size_t)n * n);
    for (int b = 0; b < n; b++) {
        const spec_node *nd = &s->nodes[order[b]];
        s->btok[b] = nd->token;
        s->bpos[b] = s->n_tok + nd->depth - 1;
        s->bwant[b] = pending[order[b]];
        for (int j = order[b]; j >= 0; j = s->nodes[j].parent) s->bmask[(size_t)b * n + bidx[j]] = 1;
    }
    aero_kv_truncate(s->dctx, 0, s->n_tok);
    aero_batch batch = {.n = n, .tokens = s->btok, .pos = s->bpos, .mask = s->bmask, .want_logits = s->bwant};
    aero_status st = draft_decode(s, &batch, s->dlogits, err);
    if (next_spine >= 0 && !st) s->fed[s->n_fed++] = next_spine;
    s->d_len = s->n_tok + (st ? 0 : s->n_fed);
    if (st) s->n_fed = 0;
    aero_kv_truncate(s->dctx, 0, s->d_len);
    // rows of the pending nodes, in batch order: remember which row is whose
    for (int b = 0, row = 0; b < n; b++)
        if (s->bwant[b]) s->keep[row++] = order[b];
    return st;
}

// Best-first tree, as SpecExec (Svirschevski et al. 2024) builds them: nodes are added in decreasing drafter
// path probability, each candidate being the next most probable child of a node already evaluated. A node's
// children are known once the drafter has seen it, so nodes are added while the best known candidate beats
// every unevaluated node (whose children cannot be more probable than itself); then the most probable
// unevaluated node is evaluated. When that node continues the spine (the chain of first-ranked children the
// drafter's cache holds), that is one cheap drafter step; otherwise all unevaluated nodes go through the
// drafter in one batch (refeed). A drafter that is usually right thus pays about what a chain costs.
aero_status aero_spec_draft_tree(aero_spec *s, bool greedy, int max_nodes, int max_depth, aero_error *err) {
    s->n_nodes = 0;
    if (max_nodes <= 0 || max_depth <= 0) return AERO_OK;
    aero_status st = aero_spec_draft_catch_up(s, err);
    if (st) return st;
    aero_spec_rank_children(s, greedy, s->dlogits, 0);
    // live candidates (parent, rank): at most one per evaluated node plus the root
    int c_parent[max_nodes + 1], c_rank[max_nodes + 1], n_cand = 0, tip = -1, rank_of[max_nodes];
    double c_logp[max_nodes + 1];
    bool pending[max_nodes];
    int n_pend = 0;
    if (s->n_top[0] > 0) c_parent[0] = -1, c_rank[0] = 0, c_logp[0] = log(s->top_q[0]), n_cand = 1;
    for (;;) {
        while (n_cand > 0 && s->n_nodes < max_nodes) {
            int best = 0;
            for (int i = 1; i < n_cand; i++)
                if (c_logp[i] > c_logp[best]) best = i;
            double bound = -INFINITY;
            for (int i = 0; i < s->n_nodes; i++)
                if (pending[i] && s->nodes[i].logp > bound) bound = s->nodes[i].logp;
            if (n_pend > 0 && c_logp[best] < bound) break;
            if (s->p.p_min > 0 && s->n_nodes >= s->p.draft_min && c_logp[best] < log(s->p.p_min)) {
                n_cand = n_pend = 0; // every branch not yet in the tree is less probable still
                break;
            }
            int parent = c_parent[best], slot = parent + 1, rank = c_rank[best];
            double lp = c_logp[best];
            int32_t tok = s->top_tok[(size_t)slot * s->top_b + rank];
            if (rank + 1 < s->n_top[slot]) {
                c_rank[best] = rank + 1;
                c_logp[best] =
                    (parent < 0 ? 0 : s->nodes[parent].logp) + log(s->top_q[(size_t)slot * s->top_b + rank + 1]);
            } else {
                n_cand--;
                c_parent[best] = c_parent[n_cand], c_rank[best] = c_rank[n_cand], c_logp[best] = c_logp[n_cand];
            }
            int id = add_node(s, tok, parent, lp, NULL);
            rank_of[id] = rank;
            pending[id] = s->nodes[id].depth < max_depth && !is_eog(s, tok);
            n_pend += pending[id];
        }
        if (s->n_nodes >= max_nodes || n_pend == 0) break;
        int v = -1;
        for (int i = 0; i < s->n_nodes; i++)
            if (pending[i] && (v < 0 || s->nodes[i].logp > s->nodes[v].logp)) v = i;
        bool extends = s->nodes[v].parent == tip && rank_of[v] == 0;
        int n_eval = 1;
        if (extends) {
            if ((st = feed_node(s, v, err))) return st;
            s->keep[0] = v;
        } else {
            int next = -1; // the spine's continuation, if pending, joins the spine on the way
            for (int i = 0; i < s->n_nodes && next < 0; i++)
                if (pending[i] && s->nodes[i].parent == tip && rank_of[i] == 0) next = i;
            if ((st = refeed(s, pending, next, err))) return st;
            n_eval = n_pend;
        }
        if (extends || (s->n_fed > 0 && s->fed[s->n_fed - 1] != tip)) tip = s->fed[s->n_fed - 1];
        for (int r = 0; r < n_eval; r++) {
            int id = s->keep[r];
            pending[id] = false;
            n_pend--;
            aero_spec_rank_children(s, greedy, s->dlogits + (size_t)r * s->d_vocab, id + 1);
            if (s->n_top[id + 1] > 0) {
                c_parent[n_cand] = id, c_rank[n_cand] = 0;
                c_logp[n_cand++] = s->nodes[id].logp + log(s->top_q[(size_t)(id + 1) * s->top_b]);
            }
        }
    }
    return AERO_OK;
}

// Finds the child of parent (-1: root) holding tok, or -1.
static int find_child(const aero_spec *s, int parent, int32_t tok) {
    for (int i = 0; i < s->n_nodes; i++)
        if (s->nodes[i].parent == parent && s->nodes[i].token == tok) return i;
    return -1;
}

// Prompt lookup: the context's last n tokens (n from ngram_max down to ngram_min) are searched for earlier in
// the context, most recent first, and what followed them is proposed. A continuation that reaches the end of the
// context goes on with its own tokens (a loop of period n_tok - from repeats), so greedy repetition is drafted in
// full. A chain takes the first match; a tree merges the continuations of several matches into a trie, longer
// suffix matches first.
void aero_spec_draft_ngram(aero_spec *s, bool tree, int max_nodes, int max_depth) {
    s->n_nodes = 0;
    if (max_nodes <= 0 || max_depth <= 0) return;
    int matches = 0;
    for (int n = s->p.ngram_max; n >= s->p.ngram_min; n--) {
        if (n >= s->n_tok) continue;
        const int32_t *suf = s->toks + s->n_tok - n;
        for (int start = s->n_tok - n - 1; start >= 0; start--) {
            if (memcmp(s->toks + start, suf, sizeof(int32_t) * n)) continue;
            int from = start + n, period = s->n_tok - from, cur = -1;
            for (int i = 0; i < max_depth && s->n_nodes < max_nodes; i++) {
                int32_t t = s->toks[from + i % period];
                int c = find_child(s, cur, t);
                cur = c >= 0 ? c : add_node(s, t, cur, 0, NULL);
            }
            if (!tree || s->n_nodes >= max_nodes || ++matches >= max_nodes) return;
        }
    }
}

void aero_spec_link_children(aero_spec *s) {
    s->root_child = -1;
    for (int i = 0; i < s->n_nodes; i++) s->nodes[i].first_child = -1;
    for (int i = s->n_nodes - 1; i >= 0; i--) {
        spec_node *nd = &s->nodes[i];
        int *head = nd->parent < 0 ? &s->root_child : &s->nodes[nd->parent].first_child;
        nd->next_sibling = *head;
        *head = i;
    }
}

#define WAVE_SHARE 0.25 // a drafter wave also evaluates the pending nodes worth at least this share of the best

// Whether the COST policy works in modelled cost units rather than measured seconds.
static bool modelled(const aero_spec *s) { return s->p.cost_fixed || s->curve.n_max == 0; }

// Evaluates the chosen nodes (want) in one drafter batch, feeding only what they attend to: the committed
// tokens stay cached, then the spine (nodes already fed, in order), next_spine (the tip's first-ranked child,
// or -1: it joins the spine), then the chosen nodes' other ancestors and the nodes themselves in node order,
// under a tree mask. Rows come back for the chosen nodes in batch order (their ids in s->keep).
static aero_status wave(aero_spec *s, const bool *want, int next_spine, int *n_rows, aero_error *err) {
    int n = s->n_nodes, order[n], bidx[n], k = 0;
    bool need[n];
    for (int i = 0; i < n; i++) bidx[i] = -1, need[i] = false;
    for (int i = n - 1; i >= 0; i--)
        if (want[i] || need[i])
            for (int j = i; j >= 0 && !need[j]; j = s->nodes[j].parent) need[j] = true;
    for (int i = 0; i < s->n_fed; i++) bidx[s->fed[i]] = k, order[k++] = s->fed[i];
    if (next_spine >= 0 && bidx[next_spine] < 0) bidx[next_spine] = k, order[k++] = next_spine;
    for (int i = 0; i < n; i++)
        if (need[i] && bidx[i] < 0) bidx[i] = k, order[k++] = i;
    memset(s->bmask, 0, (size_t)k * k);
    for (int b = 0; b < k; b++) {
        const spec_node *nd = &s->nodes[order[b]];
        s->btok[b] = nd->token;
        s->bpos[b] = s->n_tok + nd->depth - 1;
        s->bwant[b] = want[order[b]];
        for (int j = order[b]; j >= 0; j = s->nodes[j].parent) s->bmask[(size_t)b * k + bidx[j]] = 1;
    }
    aero_kv_truncate(s->dctx, 0, s->n_tok);
    aero_batch batch = {.n = k, .tokens = s->btok, .pos = s->bpos, .mask = s->bmask, .want_logits = s->bwant};
    aero_status st = draft_decode(s, &batch, s->dlogits, err);
    if (modelled(s)) s->draft_cost += aero_spec_draft_call_cost(s, k);
    if (next_spine >= 0 && !st) s->fed[s->n_fed++] = next_spine;
    if (st) s->n_fed = 0;
    s->d_len = s->n_tok + s->n_fed;
    aero_kv_truncate(s->dctx, 0, s->d_len);
    *n_rows = 0;
    for (int b = 0; b < k; b++)
        if (s->bwant[b]) s->keep[(*n_rows)++] = order[b];
    return st;
}

// Drafting time of the current step so far: measured, or modelled (fixed costs, or nothing timed yet).
static double draft_spent(const aero_spec *s, double t_start) {
    return modelled(s) ? s->draft_cost : aero_now() - t_start;
}

// Keeps the subset of the drafted nodes with the most expected tokens per unit of time: nodes sorted by
// estimated path acceptance (a child never ranks above its parent, so every prefix of that order is a tree),
// the best prefix under the verify curve and the drafting time already spent; the kept nodes are compacted in
// node order (parents first) and the drafter's spine is cut where it leaves them. Returns the expected tokens.
static double keep_best_subtree(aero_spec *s, int np, double spent) {
    if (s->n_nodes == 0) return 1;
    int n = s->n_nodes, by_p[n], newidx[n];
    for (int i = 0; i < n; i++) by_p[i] = i;
    for (int i = 1; i < n; i++) { // insertion sort: nodes arrive nearly sorted
        int v = by_p[i], j = i;
        while (j > 0 && s->nodes[by_p[j - 1]].logp < s->nodes[v].logp) by_p[j] = by_p[j - 1], j--;
        by_p[j] = v;
    }
    double e = 1, best_e = 1, best_rate = 1 / (aero_spec_verify_cost(s, np) + spent + 1e-12);
    int best = 0;
    for (int m = 1; m <= n; m++) {
        e += aero_spec_path_accept(s, s->nodes[by_p[m - 1]].logp);
        double rate = e / (aero_spec_verify_cost(s, np + m) + spent + 1e-12);
        if (rate > best_rate * (1 + 1e-9)) best_rate = rate, best = m, best_e = e;
    }
    for (int i = 0; i < n; i++) newidx[i] = -1;
    for (int m = 0; m < best; m++) newidx[by_p[m]] = 0;
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (newidx[i] < 0) continue;
        spec_node nd = s->nodes[i];
        nd.parent = nd.parent < 0 ? -1 : newidx[nd.parent];
        newidx[i] = k;
        s->nodes[k++] = nd;
    }
    s->n_nodes = k;
    int f = 0;
    while (f < s->n_fed && newidx[s->fed[f]] >= 0) s->fed[f] = newidx[s->fed[f]], f++;
    if (f < s->n_fed) {
        s->n_fed = f;
        s->d_len = s->n_tok + f;
        aero_kv_truncate(s->dctx, 0, s->d_len);
    }
    return best_e;
}

// The COST policy, SpecExec's search (Svirschevski et al. 2024) with Sequoia's measured acceptance (Chen et
// al. 2024). A node's value is the estimated probability that the target accepts its whole path: the product
// of its ancestors' acceptance estimates, each the drafter's probability calibrated by what was measured for
// nodes of that rank and probability. Adding a node costs the verify curve's slope at the tree's size, so
// every known candidate whose value beats that cost (at the step's best tokens-per-time rate) is added, best
// first. Unevaluated nodes get children only through the drafter: either one cheap step extending the spine
// the drafter's cache holds, or a wave that evaluates every pending node worth it in one batch; the one with
// the larger net gain is taken, and growth stops when neither repays its drafter call. When a pass is IO-bound
// the slope is near zero and the tree grows to whatever the drafter can still usefully fill.
aero_status aero_spec_draft_tree_cost(aero_spec *s, bool greedy, int max_nodes, int max_depth, aero_error *err) {
    s->n_nodes = 0;
    s->draft_cost = 0;
    s->st.tree_expected = 1;
    if (max_nodes <= 0 || max_depth <= 0) return AERO_OK;
    double t_start = aero_now();
    int before = s->d_len;
    aero_status st = aero_spec_draft_catch_up(s, err);
    if (st) return st;
    if (modelled(s)) s->draft_cost += aero_spec_draft_call_cost(s, s->n_tok - before);
    aero_spec_rank_children(s, greedy, s->dlogits, 0);
    int np = s->n_tok - s->t_len;
    double h = (s->expand_hit + 1) / (s->expand_try + 2); // chance a reached node's drafted child is accepted
    int c_parent[max_nodes + 1], c_rank[max_nodes + 1], n_cand = 0;
    double c_logp[max_nodes + 1];
    bool pending[max_nodes], want[max_nodes];
    // the root's and each evaluated node's next candidate: its next-ranked child, never valued above the previous
#define PUSH_FIRST(node)                                                                                               \
    do {                                                                                                               \
        int slot_ = (node) + 1;                                                                                        \
        if (s->n_top[slot_] > 0) {                                                                                     \
            c_parent[n_cand] = (node), c_rank[n_cand] = 0;                                                             \
            c_logp[n_cand++] = ((node) < 0 ? 0 : s->nodes[node].logp) + log(s->top_q[(size_t)slot_ * s->top_b]);        \
        }                                                                                                              \
    } while (0)
    PUSH_FIRST(-1);
    double e = 1, best_rate = 1 / (aero_spec_verify_cost(s, np) + draft_spent(s, t_start) + 1e-12);
    bool declined = false; // no pending node is worth a drafter call any more
    for (;;) {
        // known candidates that pay for their place in the verify pass, best first; while some unevaluated node
        // could still have better children, only those at least as good as it (so a full tree is the best one)
        while (n_cand > 0 && s->n_nodes < max_nodes) {
            int b = 0, n = s->n_nodes;
            for (int i = 1; i < n_cand; i++)
                if (c_logp[i] > c_logp[b]) b = i;
            double value = aero_spec_path_accept(s, c_logp[b]),
                   marginal = aero_spec_verify_cost(s, np + n + 1) - aero_spec_verify_cost(s, np + n);
            if (value < best_rate * marginal || value < 1e-4) break;
            bool beaten = false;
            for (int i = 0; i < n && !declined && !beaten; i++) beaten = pending[i] && s->nodes[i].logp > c_logp[b];
            if (beaten) break;
            int parent = c_parent[b], slot = parent + 1, rank = c_rank[b];
            double logp = c_logp[b];
            if (s->p.p_min > 0 && n >= s->p.draft_min && logp < log(s->p.p_min)) {
                n_cand = 0; // every branch not yet in the tree is less probable still
                break;
            }
            int id = add_node(s, s->top_tok[(size_t)slot * s->top_b + rank], parent, logp, NULL);
            s->nodes[id].rank = rank;
            pending[id] = s->nodes[id].depth < max_depth && !is_eog(s, s->nodes[id].token);
            if (rank + 1 < s->n_top[slot]) {
                c_rank[b] = rank + 1;
                c_logp[b] = (parent < 0 ? 0 : s->nodes[parent].logp) + log(s->top_q[(size_t)slot * s->top_b + rank + 1]);
            } else {
                n_cand--;
                c_parent[b] = c_parent[n_cand], c_rank[b] = c_rank[n_cand], c_logp[b] = c_logp[n_cand];
            }
            e += value;
            double rate = e / (aero_spec_verify_cost(s, np + n + 1) + draft_spent(s, t_start) + 1e-12);
            if (rate > best_rate) best_rate = rate;
        }
        int n = s->n_nodes;
        if (n >= max_nodes || declined) break;
        // the best pending node, and every pending node nearly as good (a wave shares one drafter call), each
        // valued as the accepted tokens its children would add less their verify cost
        double tau = best_rate * (aero_spec_verify_cost(s, np + n + 1) - aero_spec_verify_cost(s, np + n));
        int tip = s->n_fed > 0 ? s->fed[s->n_fed - 1] : -1, v = -1, n_want = 0, n_feed = s->n_fed;
        for (int i = 0; i < n; i++)
            if (pending[i] && (v < 0 || s->nodes[i].logp > s->nodes[v].logp)) v = i;
        double gain = v >= 0 ? h * aero_spec_path_accept(s, s->nodes[v].logp) - tau : 0, cost;
        bool extends = v >= 0 && s->nodes[v].parent == tip && s->nodes[v].rank == 0;
        if (extends) {
            cost = aero_spec_draft_call_cost(s, 1);
        } else if (v >= 0) {
            bool in[n];
            gain = 0;
            for (int i = 0; i < n; i++) {
                in[i] = false;
                want[i] = pending[i] && s->nodes[i].logp >= s->nodes[v].logp + log(WAVE_SHARE);
                double g = h * aero_spec_path_accept(s, s->nodes[i].logp) - tau;
                if (want[i] && g > 0) n_want++, gain += g;
                else want[i] = false;
            }
            for (int i = 0; i < s->n_fed; i++) in[s->fed[i]] = true;
            for (int i = n - 1; i >= 0; i--)
                if (want[i])
                    for (int j = i; j >= 0 && !in[j]; j = s->nodes[j].parent) in[j] = true, n_feed++;
            cost = aero_spec_draft_call_cost(s, n_feed);
        }
        if (v < 0 || gain <= 0 || gain <= best_rate * cost) {
            declined = true; // the candidates left that pay for their verification still go in
            continue;
        }
        int n_rows = 1;
        if (extends) {
            if ((st = feed_node(s, v, err))) return st;
            if (modelled(s)) s->draft_cost += aero_spec_draft_call_cost(s, 1);
            s->keep[0] = v;
        } else {
            int next = -1; // the spine's continuation, when in the wave, joins the spine on the way
            for (int i = 0; i < n && next < 0; i++)
                if (want[i] && s->nodes[i].parent == tip && s->nodes[i].rank == 0) next = i;
            if ((st = wave(s, want, next, &n_rows, err))) return st;
        }
        for (int r = 0; r < n_rows; r++) {
            int id = s->keep[r];
            pending[id] = false;
            aero_spec_rank_children(s, greedy, s->dlogits + (size_t)r * s->d_vocab, id + 1);
            PUSH_FIRST(id);
        }
    }
#undef PUSH_FIRST
    s->st.tree_expected = keep_best_subtree(s, np, draft_spent(s, t_start));
    return AERO_OK;
}
