// The draft head's layer on the GPU (head_gpu.h): the same pass as head.c's head_forward, op by op on the CUDA
// backend. The fc of [norm_h(f) ; norm_e(E(t))] runs as two matmuls over the two column halves of fc.weight
// (a strided view: no interleaved input buffer), their sum folded into the attention norm's residual add. The
// head's KV cells are an F16 cache of one sequence; committed tokens attend causally through the batch's base,
// a drafted token sees the committed cells, its drafted ancestors and itself: a wave's ancestors enter the
// attention batch as tokens of their own (their cells already hold their keys, so only the new tokens are stored,
// through a second batch) and a mask gives each new token its own chain. A chain's drafted token sees every cell
// before it, which the plain causal batch expresses. GPU against the host head is a tolerance (F16 cache and
// tensor-core matmuls), so drafts may differ in a close call; verification keeps the output the target's.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../model/gpu_plan.h"
#include "head_gpu.h"
#ifdef AERO_CUDA
#include "../model/forward_cuda.h"
#include "../model/gpu_prof.h"
#endif

static uint64_t r256(uint64_t b) { return (b + 255) & ~(uint64_t)255; }

int head_gpu_rows(int nodes) { return nodes + 1 > HEAD_GPU_MIN_ROWS ? nodes + 1 : HEAD_GPU_MIN_ROWS; }

// Bytes of the inputs staged for T tokens: features, token ids, embeddings.
static uint64_t in_bytes(const head_dims *dm, uint64_t T) { return 2 * r256(T * dm->d * 4) + r256(T * 4); }

// Bytes of the outputs copied back at once: T output features, then HEAD_GPU_LOGIT_ROWS rows of logits.
static uint64_t out_bytes(const head_dims *dm, uint64_t T) {
    return r256(T * dm->d * 4) + r256((uint64_t)HEAD_GPU_LOGIT_ROWS * dm->n_vocab * 4);
}

// VRAM of the device chain (aero_cuda_chain_new for T one-token batches over cells, and the picked ids and
// probabilities of T tokens).
static uint64_t chain_bytes(const head_dims *dm, uint64_t T, int cells) {
    uint64_t segs = ((uint64_t)cells + 1 + 255) / 256;
    return r256(4 * T * 4) + r256((uint64_t)dm->n_head * segs * (2 + (uint64_t)dm->hd) * 4) + r256(2 * T * 4);
}

uint64_t head_gpu_shared_bytes(const head_dims *dm, const uint64_t *mat_bytes, int cells, int nodes) {
    uint64_t T = (uint64_t)head_gpu_rows(nodes), d = dm->d, kvd = (uint64_t)dm->n_head_kv * dm->hd;
    uint64_t b = r256((uint64_t)dm->hd / 2 * 4) + HEAD_N_COUNT * r256(d * 4);
    for (int i = 0; i < HEAD_W_COUNT; i++) b += r256(mat_bytes[i]);
    b += in_bytes(dm, T) + out_bytes(dm, T);
    b += 5 * r256(T * d * 4) + 2 * r256(T * kvd * 4) + 2 * r256(T * dm->n_ff * 4); // x xn tmp q att; k v; gate up
    b += r256((d + 2 * kvd) * 4) + r256(2 * (uint64_t)dm->n_ff * 4);               // one token's q|k|v and gate|up
    b += chain_bytes(dm, T, cells);
    return b + 2 * aero_gpu_batch_bytes((int)T, 1, cells, dm->n_head, dm->hd);
}

uint64_t head_gpu_kv_bytes(const head_dims *dm, int cells) {
    return 2 * r256((uint64_t)cells * dm->n_head_kv * dm->hd * 2);
}

uint64_t head_gpu_host_bytes(const head_dims *dm, int nodes) {
    uint64_t T = (uint64_t)head_gpu_rows(nodes);
    return in_bytes(dm, T) + out_bytes(dm, T) + 3 * T * 4; // and the chain's pinned staging
}

#ifdef AERO_CUDA

struct head_gpu_kv {
    head_gpu *g;
    uint16_t *kc, *vc;       // cells x (n_head_kv x hd) F16 each
    head_gpu_kv *next_spare; // given back: the next one to reuse
    head_gpu_kv *next_all;   // every state of g (freed with it)
};

struct head_gpu {
    aero_ctx *c;
    aero_cuda *cu;
    head_dims dm;
    float eps;
    int cells, rows;                // KV cells a state holds; tokens one device call computes
    aero_cuda_wmat w[HEAD_W_COUNT]; // w[HEAD_W_FC] is used through fc_h and fc_e
    aero_cuda_wmat fc_h, fc_e;      // fc's columns over the normed feature, over the normed embedding
    aero_cuda_wmat qkv, gate_up;    // [q; k; v] and [gate; up] as one matrix each (data NULL: types differ)
    float *qkv1, *gu1;              // their outputs for one token (d + 2 kvd, 2 n_ff)
    float *norm[HEAD_N_COUNT], *inv_freq;
    aero_cuda_wmat embd; // the target's embedding in VRAM (embd_dev), else rows come from the host
    bool embd_dev;
    char *in, *in_host;    // staged inputs: device, pinned host
    float *out, *out_host; // outputs copied back at once: device, pinned host
    float *x, *xn, *tmp, *q, *att, *k, *v, *gate, *up;
    aero_cuda_batch *store, *attn; // the new tokens (rope, cache store); a wave's ancestors and new tokens
    int32_t *aslot, *apos;         // host: the attention batch's cells and positions (rows)
    int *anc;                      // host: a wave's ancestor cells (rows)
    uint8_t *mask, *seen;          // host: the attention mask (rows x rows); ancestors met (cells)
    head_gpu_kv *spare, *all;
    bool graphs;            // AERO_CUDA_GRAPHS=1 and the output head in VRAM: a chain's call is a graph
    aero_cuda_graph *graph; // that call, for the batch shape and KV state graph_key
    uint64_t graph_key;
    // a chain drafted on the device (head_gpu_chain): its one-token batches, the picked ids [rows] then their
    // probabilities [rows] (device), the batches' host arrays, and its graph (AERO_CUDA_GRAPHS=1)
    aero_cuda_chain *chain;
    int32_t *pick;
    int32_t *cpos, *cslot, *cbase;
    aero_cuda_graph *cgraph;
    uint64_t cgraph_key;
    gpu_prof prof;
    bool entered; // holds VRAM of the context (aero_gpu_head_enter)
};

static aero_status dalloc(head_gpu *g, uint64_t bytes, void *out, aero_error *err) {
    return aero_cuda_alloc(g->cu, bytes ? bytes : 1, (void **)out, err);
}

// Copies host data into new VRAM now (loading).
static aero_status upload_new(head_gpu *g, const void *host, uint64_t bytes, void *out, aero_error *err) {
    void **dev = out;
    if (dalloc(g, bytes, dev, err) || aero_cuda_copy_h2d_async(g->cu, AERO_CUDA_STREAM_COMPUTE, *dev, host, bytes, err))
        return err->code;
    return aero_cuda_sync(g->cu, err);
}

// Matrices of one group (-1 ends a list of up to 3) into one VRAM block, each one's rows after the previous one's:
// *fused (when asked and the members share type and stride) is the block as one matrix.
static aero_status upload_group(head_gpu *g, const head_layer *L, const int *members, aero_cuda_wmat *fused,
                                aero_error *err) {
    int n = 0;
    uint64_t bytes = 0, rows = 0;
    bool same = true;
    for (; n < 3 && members[n] >= 0; n++) {
        const aero_wmat *w = &L->w[members[n]];
        rows += (uint64_t)w->rows;
        same &=
            w->type == L->w[members[0]].type && w->row_bytes == L->w[members[0]].row_bytes && w->row_bytes % 16 == 0;
    }
    for (int i = 0; i < n; i++) { // adjacent rows when fusable, else each matrix on its own 256-byte boundary
        uint64_t b = (uint64_t)L->w[members[i]].rows * L->w[members[i]].row_bytes;
        bytes += same ? b : r256(b);
    }
    char *dev;
    if (dalloc(g, bytes, &dev, err)) return err->code;
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        const aero_wmat *w = &L->w[members[i]];
        uint64_t b = (uint64_t)w->rows * w->row_bytes;
        if (aero_cuda_copy_h2d_async(g->cu, AERO_CUDA_STREAM_COMPUTE, dev + off, w->data, b, err)) return err->code;
        g->w[members[i]].data = dev + off;
        off += same ? b : r256(b);
    }
    if (fused && same && n > 1)
        *fused = (aero_cuda_wmat){.data = dev,
                                  .type = g->w[members[0]].type,
                                  .cols = g->w[members[0]].cols,
                                  .rows = (int64_t)rows,
                                  .row_bytes = g->w[members[0]].row_bytes};
    return aero_cuda_sync(g->cu, err);
}

// The head's matrices in VRAM, fc also as its two column halves; each checked for a kernel first.
static aero_status upload_weights(head_gpu *g, const head_layer *L, aero_error *err) {
    static const char *const names[HEAD_W_COUNT] = {"fc",          "attn_q",   "attn_k", "attn_v",
                                                    "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    int d = g->dm.d;
    for (int i = 0; i < HEAD_W_COUNT; i++) {
        const aero_wmat *h = &L->w[i];
        g->w[i] = (aero_cuda_wmat){.type = h->type, .cols = h->cols, .rows = h->rows, .row_bytes = h->row_bytes};
        g->w[i].data = (const void *)(uintptr_t)256; // checked before any VRAM is taken
        if (aero_cuda_wmat_check(&g->w[i], err)) return aero_error_prefix(err, "tensor %s: ", names[i]);
    }
    size_t half = aero_dtype_row_bytes(g->w[HEAD_W_FC].type, d);
    g->fc_h =
        (aero_cuda_wmat){.type = g->w[HEAD_W_FC].type, .cols = d, .rows = d, .row_bytes = g->w[HEAD_W_FC].row_bytes};
    g->fc_e = g->fc_h;
    g->fc_h.data = (const void *)(uintptr_t)256;
    g->fc_e.data = (const void *)(uintptr_t)(256 + half);
    if (aero_cuda_wmat_check(&g->fc_h, err) || aero_cuda_wmat_check(&g->fc_e, err))
        return aero_error_prefix(err, "fc halves (%zu bytes into a row): ", half);
    // q, k, v (and gate, up) as adjacent rows of one matrix too: one matmul each for a one-token call
    static const int group[][3] = {{HEAD_W_FC, -1},
                                   {HEAD_W_Q, HEAD_W_K, HEAD_W_V},
                                   {HEAD_W_O, -1},
                                   {HEAD_W_GATE, HEAD_W_UP, -1},
                                   {HEAD_W_DOWN, -1}};
    aero_cuda_wmat *fused[] = {NULL, &g->qkv, NULL, &g->gate_up, NULL};
    for (size_t k = 0; k < sizeof group / sizeof group[0]; k++)
        if (upload_group(g, L, group[k], fused[k], err)) return err->code;
    g->fc_h.data = g->w[HEAD_W_FC].data;
    g->fc_e.data = (const char *)g->w[HEAD_W_FC].data + half;
    for (int i = 0; i < HEAD_N_COUNT; i++)
        if (upload_new(g, L->norm[i], (uint64_t)d * 4, &g->norm[i], err)) return err->code;
    return upload_new(g, L->inv_freq, (uint64_t)g->dm.hd / 2 * 4, &g->inv_freq, err);
}

// The activations of one call, its two batches, the staging and the host scratch of a wave's attention batch.
static aero_status alloc_work(head_gpu *g, aero_error *err) {
    const head_dims *dm = &g->dm;
    uint64_t T = (uint64_t)g->rows, d = dm->d, kvd = (uint64_t)dm->n_head_kv * dm->hd, ff = dm->n_ff;
    if (dalloc(g, in_bytes(dm, T), &g->in, err) || dalloc(g, out_bytes(dm, T), &g->out, err) ||
        dalloc(g, T * d * 4, &g->x, err) || dalloc(g, T * d * 4, &g->xn, err) || dalloc(g, T * d * 4, &g->tmp, err) ||
        dalloc(g, T * d * 4, &g->q, err) || dalloc(g, T * d * 4, &g->att, err) || dalloc(g, T * kvd * 4, &g->k, err) ||
        dalloc(g, T * kvd * 4, &g->v, err) || dalloc(g, T * ff * 4, &g->gate, err) ||
        dalloc(g, T * ff * 4, &g->up, err) || dalloc(g, (d + 2 * kvd) * 4, &g->qkv1, err) ||
        dalloc(g, 2 * ff * 4, &g->gu1, err) ||
        aero_cuda_batch_new(g->cu, g->rows, 1, g->cells, dm->n_head, dm->hd, &g->store, err) ||
        aero_cuda_batch_new(g->cu, g->rows, 1, g->cells, dm->n_head, dm->hd, &g->attn, err) ||
        aero_cuda_host_alloc(in_bytes(dm, T), (void **)&g->in_host, err) ||
        aero_cuda_host_alloc(out_bytes(dm, T), (void **)&g->out_host, err) ||
        aero_cuda_chain_new(g->cu, g->rows, g->cells, dm->n_head, dm->hd, &g->chain, err) ||
        dalloc(g, 2 * T * 4, &g->pick, err))
        return err->code;
    // a wave's ancestor rows of q keep the attention batch's shape only: finite values, never read back
    if (aero_cuda_memset0(g->cu, g->q, T * d * 4, err)) return err->code;
    g->aslot = malloc(sizeof(int32_t) * T);
    g->apos = malloc(sizeof(int32_t) * T);
    g->anc = malloc(sizeof(int) * T);
    g->mask = malloc(T * T);
    g->seen = calloc(g->cells, 1);
    g->cpos = malloc(sizeof(int32_t) * 3 * T);
    if (g->cpos) g->cslot = g->cpos + T, g->cbase = g->cpos + 2 * T;
    if (!g->aslot || !g->apos || !g->anc || !g->mask || !g->seen || !g->cpos)
        return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    return AERO_OK;
}

aero_status head_gpu_new(aero_ctx *c, const head_layer *L, int cells, int nodes, head_gpu **out, aero_error *err) {
    *out = NULL;
    head_gpu *g = calloc(1, sizeof *g);
    if (!g) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    g->c = c;
    g->cu = aero_gpu_cuda(c);
    g->dm = L->dm;
    g->eps = L->eps;
    g->cells = cells;
    g->rows = head_gpu_rows(nodes);
    aero_gpu_head_enter(c);
    g->entered = true;
    if (upload_weights(g, L, err) || alloc_work(g, err)) {
        head_gpu_free(g);
        return err->code;
    }
    for (int i = 0; i < HEAD_W_COUNT; i++) aero_cuda_act_f16_note(g->cu, g->w[i].type); // before any capture
    // rows looked up on the device unless the forward pass scales them (aero_ctx_embed_rows does)
    g->embd_dev = !(aero_model_hparams(aero_ctx_model(c))->embd_scale > 0) && aero_gpu_embd(c, &g->embd);
    prof_init(&g->prof, g->cu);
    g->prof.name = "cuda draft head profile";
    const char *graphs = getenv("AERO_CUDA_GRAPHS");
    g->graphs = graphs && atoi(graphs) > 0 && aero_gpu_output_resident(c) && !g->prof.every;
    *out = g;
    return AERO_OK;
}

void head_gpu_free(head_gpu *g) {
    if (!g) return;
    if (g->cu) {
        aero_error e = {0};
        aero_cuda_sync(g->cu, &e);
    }
    prof_free(&g->prof);
    aero_cuda_graph_free(g->graph);
    aero_cuda_graph_free(g->cgraph);
    aero_cuda_chain_free(g->chain);
    aero_cuda_batch_free(g->store);
    aero_cuda_batch_free(g->attn);
    aero_cuda_host_free(g->in_host);
    aero_cuda_host_free(g->out_host);
    for (head_gpu_kv *kv = g->all, *next; kv; kv = next) {
        next = kv->next_all;
        free(kv);
    }
    free(g->aslot);
    free(g->apos);
    free(g->anc);
    free(g->mask);
    free(g->seen);
    free(g->cpos);
    if (g->entered) aero_gpu_head_leave(g->c); // the arena goes back once no head holds VRAM
    free(g);
}

aero_status head_gpu_kv_take(head_gpu *g, int cells, int nodes, head_gpu_kv **out, aero_error *err) {
    *out = NULL;
    if (cells > g->cells || head_gpu_rows(nodes) > g->rows)
        return aero_fail(err, AERO_ERR_RANGE,
                         "a head of %d cells and %d nodes beside one made for %d cells and %d rows", cells, nodes,
                         g->cells, g->rows);
    head_gpu_kv *kv = g->spare;
    if (kv) {
        g->spare = kv->next_spare;
        *out = kv;
        return AERO_OK;
    }
    kv = calloc(1, sizeof *kv);
    if (!kv) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    uint64_t bytes = (uint64_t)g->cells * g->dm.n_head_kv * g->dm.hd * 2;
    if (dalloc(g, bytes, &kv->kc, err) || dalloc(g, bytes, &kv->vc, err)) {
        free(kv);
        return err->code;
    }
    kv->g = g;
    kv->next_all = g->all;
    g->all = kv;
    *out = kv;
    return AERO_OK;
}

void head_gpu_kv_give(head_gpu_kv *kv) {
    if (!kv) return;
    kv->next_spare = kv->g->spare;
    kv->g->spare = kv;
}

// Token i of the call sees its ancestors through a mask (a wave, or drafted tokens beside others) unless it is one
// drafted token whose ancestors are every drafted cell before it (a chain): then the causal batch says the same.
static bool chain_covers(const head_gpu *g, const head_gpu_call *call) {
    if (call->n != 1) return false;
    int steps = 0;
    for (int p = call->parent[0]; p >= 0 && steps <= call->base; p = call->cell_parent[p]) steps++;
    return steps == call->base - call->n_commit;
}

// The attention batch of drafted tokens: their drafted ancestors in cell order (tokens of the batch whose keys
// are already cached), then the new tokens, each new token seeing its own chain and itself. *n_anc: ancestors.
static aero_status wave_batch(head_gpu *g, const head_gpu_call *call, int *n_anc, aero_error *err) {
    int n = call->n, na = 0;
    aero_status st = AERO_OK;
    for (int i = 0; i < n && !st; i++)
        for (int p = call->parent[i]; p >= 0 && !st; p = call->cell_parent[p]) {
            if (p < call->n_commit || p >= call->base)
                st = aero_fail(err, AERO_ERR_INVALID, "draft head: token %d's ancestor cell %d is not a drafted cell",
                               i, p);
            else if (!g->seen[p] && na + n >= g->rows)
                st = aero_fail(err, AERO_ERR_RANGE, "draft head: %d drafted tokens with more than %d ancestors", n,
                               g->rows - n);
            else if (!g->seen[p]) g->seen[p] = 1, g->anc[na++] = p;
            else break; // the rest of this chain is already in
        }
    for (int i = 0; i < na; i++) g->seen[g->anc[i]] = 0;
    if (st) return st;
    for (int i = 1; i < na; i++) // cell order: an ancestor before its descendants, as the mask needs
        for (int j = i; j > 0 && g->anc[j - 1] > g->anc[j]; j--) {
            int t = g->anc[j];
            g->anc[j] = g->anc[j - 1];
            g->anc[j - 1] = t;
        }
    int nb = na + n;
    memset(g->mask, 0, (size_t)nb * nb);
    for (int j = 0; j < na; j++) {
        g->aslot[j] = g->anc[j];
        g->apos[j] = 0; // positions are the rope's, which these tokens do not go through
        g->mask[(size_t)j * nb + j] = 1;
    }
    for (int i = 0; i < n; i++) {
        int row = na + i;
        g->aslot[row] = call->base + i;
        g->apos[row] = call->pos[i];
        g->mask[(size_t)row * nb + row] = 1;
        for (int p = call->parent[i]; p >= 0; p = call->cell_parent[p]) {
            int lo = 0, hi = na - 1; // binary search of p among the sorted ancestors
            while (lo < hi) {
                int mid = (lo + hi) / 2;
                if (g->anc[mid] < p) lo = mid + 1;
                else hi = mid;
            }
            g->mask[(size_t)row * nb + lo] = 1;
        }
    }
    *n_anc = na;
    int32_t base = call->n_commit;
    return aero_cuda_batch_set(g->attn, nb, g->apos, NULL, g->aslot, g->mask, &base, err);
}

// The inputs of tokens [r, r + k) into the staging buffer and up in one copy: features, ids, embeddings (unless
// looked up on the device, which writes them there). Sets the device pointers of each.
static aero_status stage(head_gpu *g, const head_gpu_call *call, int r, int k, float **feat, float **emb, int32_t **ids,
                         aero_error *err) {
    int d = g->dm.d;
    size_t rows = (size_t)k * d * 4, off_i = r256(rows), off_e = off_i + r256((size_t)k * 4);
    size_t up = g->embd_dev ? off_i + (size_t)k * 4 : off_e + rows;
    for (int i = 0; i < k; i++) {
        int32_t t = call->tok[r + i];
        if (t < 0 || t >= g->dm.n_vocab)
            return aero_fail(err, AERO_ERR_INVALID, "token id %d not in the vocabulary [0, %d)", t, g->dm.n_vocab);
        memcpy(g->in_host + (size_t)i * d * 4, call->feat[r + i], (size_t)d * 4);
        ((int32_t *)(g->in_host + off_i))[i] = t;
    }
    if (!g->embd_dev && aero_ctx_embed_rows(g->c, call->tok + r, k, (float *)(g->in_host + off_e), err))
        return err->code;
    prof_op(&g->prof, OP_COPY);
    if (aero_cuda_copy_h2d_async(g->cu, AERO_CUDA_STREAM_COMPUTE, g->in, g->in_host, up, err)) return err->code;
    *feat = (float *)g->in;
    *emb = (float *)(g->in + off_e);
    *ids = (int32_t *)(g->in + off_i);
    return AERO_OK;
}

static aero_status matmul(head_gpu *g, const aero_cuda_wmat *w, const aero_cuda_act *a, float *y, aero_error *err) {
    prof_op(&g->prof, OP_MATMUL);
    return aero_cuda_matmul_act(g->cu, w, a, y, err);
}

// out = rmsnorm(x [+= add]) * w with the matmul input prepared (the fused op of the forward pass).
static aero_status norm(head_gpu *g, float *x, const float *add, int which, int k, aero_cuda_act *a, aero_error *err) {
    prof_op(&g->prof, OP_ELEM);
    return aero_cuda_rmsnorm_act(g->cu, g->xn, x, add, g->norm[which], k, g->dm.d, g->eps, a, err);
}

// The layer over k tokens staged at feat/emb/ids: x = the output features. q rows of the new tokens start at row
// n_anc (the attention batch's ancestors come first); store: the new tokens' batch (rope, cache store), attn: the
// batch the attention reads.
static aero_status layer(head_gpu *g, head_gpu_kv *kv, int k, int n_anc, aero_cuda_batch *store, aero_cuda_batch *attn,
                         float *feat, float *emb, const int32_t *ids, aero_error *err) {
    const head_dims *dm = &g->dm;
    int d = dm->d;
    aero_cuda_act a;
    if (g->embd_dev) {
        prof_op(&g->prof, OP_ELEM);
        if (aero_cuda_get_rows(g->cu, &g->embd, ids, k, emb, err)) return err->code;
    }
    int kvd = dm->n_head_kv * dm->hd;
    // one token alone in the attention batch: q, k, v from one matmul, adjacent in qkv1
    bool one = k == 1 && n_anc == 0 && g->qkv.data && d % 4 == 0 && kvd % 4 == 0;
    float *q = one ? g->qkv1 : g->q + (size_t)n_anc * d, *kk = one ? g->qkv1 + d : g->k,
          *vv = one ? g->qkv1 + d + kvd : g->v;
    if (norm(g, feat, NULL, HEAD_N_H, k, &a, err) || matmul(g, &g->fc_h, &a, g->x, err) ||
        norm(g, emb, NULL, HEAD_N_E, k, &a, err) || matmul(g, &g->fc_e, &a, g->tmp, err) ||
        norm(g, g->x, g->tmp, HEAD_N_ATTN, k, &a, err))
        return err->code;
    if (one ? matmul(g, &g->qkv, &a, g->qkv1, err)
            : matmul(g, &g->w[HEAD_W_Q], &a, q, err) || matmul(g, &g->w[HEAD_W_K], &a, kk, err) ||
                  matmul(g, &g->w[HEAD_W_V], &a, vv, err))
        return err->code;
    aero_cuda_qkv qkv = {.q = q,
                         .k = kk,
                         .v = vv,
                         .n_head = dm->n_head,
                         .n_head_kv = dm->n_head_kv,
                         .head_dim = dm->hd,
                         .rope_dim = dm->hd,
                         .inv_freq = g->inv_freq,
                         .neox = false,
                         .k_cache = kv->kc,
                         .v_cache = kv->vc};
    prof_op(&g->prof, OP_ELEM);
    if (aero_cuda_rope_kv_store(store, &qkv, err)) return err->code;
    prof_op(&g->prof, OP_ATTN);
    if (aero_cuda_attention(attn, one ? q : g->q, kv->kc, kv->vc, dm->n_head, dm->n_head_kv, dm->hd, g->att, err))
        return err->code;
    const float *att = g->att + (size_t)n_anc * d;
    if (d % 32) a = (aero_cuda_act){.x = att, .n = k, .cols = d};
    else {
        prof_op(&g->prof, OP_ELEM);
        if (aero_cuda_act_prepare(g->cu, att, k, d, &a, err)) return err->code;
    }
    bool one_ff = k == 1 && g->gate_up.data && dm->n_ff % 4 == 0; // gate and up from one matmul, adjacent in gu1
    float *gate = one_ff ? g->gu1 : g->gate, *up = one_ff ? g->gu1 + dm->n_ff : g->up;
    if (matmul(g, &g->w[HEAD_W_O], &a, g->tmp, err) || norm(g, g->x, g->tmp, HEAD_N_FFN, k, &a, err)) return err->code;
    if (one_ff ? matmul(g, &g->gate_up, &a, g->gu1, err)
               : matmul(g, &g->w[HEAD_W_GATE], &a, gate, err) || matmul(g, &g->w[HEAD_W_UP], &a, up, err))
        return err->code;
    prof_op(&g->prof, OP_ELEM);
    if (aero_cuda_swiglu_act(g->cu, gate, gate, up, k, dm->n_ff, &a, err) ||
        matmul(g, &g->w[HEAD_W_DOWN], &a, g->tmp, err))
        return err->code;
    prof_op(&g->prof, OP_ELEM);
    return aero_cuda_add(g->cu, g->x, g->tmp, (size_t)k * d, err);
}

// The device side of a call's outputs: the k output features, then the logits of tokens [l0, l0 + nb) after them
// (the projection through the context's output head), so that one copy brings both back.
static aero_status queue_outputs(head_gpu *g, int k, int l0, int nb, aero_error *err) {
    int d = g->dm.d;
    size_t xb = (size_t)k * d * 4, off_l = r256(xb) / 4;
    prof_op(&g->prof, OP_COPY);
    if (aero_cuda_copy_d2d(g->cu, g->out, g->x, xb, err)) return err->code;
    return nb > 0 ? aero_gpu_project_dev(g->c, g->x + (size_t)l0 * d, nb, g->out + off_l, err) : AERO_OK;
}

// The outputs to the host: features and the first nb logits rows in one copy (waited for), the logits of tokens
// [l0 + nb, k) a block of HEAD_GPU_LOGIT_ROWS at a time.
static aero_status fetch_outputs(head_gpu *g, const head_gpu_call *call, int r, int k, int l0, int nb,
                                 aero_error *err) {
    int d = g->dm.d, nv = g->dm.n_vocab;
    size_t xb = (size_t)k * d * 4, off_l = r256(xb) / 4; // logits rows after the features, in floats
    int first_logit = call->n - call->n_logits;          // the call's first token with logits
    prof_op(&g->prof, OP_COPY);
    if (aero_cuda_copy_d2h(g->cu, g->out_host, g->out, nb > 0 ? (off_l + (size_t)nb * nv) * 4 : xb, err))
        return err->code;
    memcpy(call->x + (size_t)r * d, g->out_host, xb);
    for (int b = l0; nb > 0;) {
        memcpy(call->logits + (size_t)(r + b - first_logit) * nv, g->out_host + off_l, (size_t)nb * nv * 4);
        b += nb;
        nb = k - b < HEAD_GPU_LOGIT_ROWS ? k - b : HEAD_GPU_LOGIT_ROWS;
        if (nb > 0 && (aero_gpu_project_dev(g->c, g->x + (size_t)b * d, nb, g->out + off_l, err) ||
                       aero_cuda_copy_d2h(g->cu, g->out_host + off_l, g->out + off_l, (size_t)nb * nv * 4, err)))
            return err->code;
    }
    return AERO_OK;
}

// A chain's drafted token (one token, causal, its logits) as a CUDA graph (AERO_CUDA_GRAPHS=1, the output head
// VRAM-resident): the layer and the projection recorded once per batch shape and KV state and replayed; the inputs'
// copy and the batch upload before it, the outputs' copy after it stay outside, and every kernel reads positions,
// slots and lengths from device memory. A capture that fails turns graphs off and runs the call plainly.
static aero_status graph_layer(head_gpu *g, head_gpu_kv *kv, float *feat, float *emb, const int32_t *ids,
                               aero_error *err) {
    uint64_t key = aero_cuda_batch_shape_key(g->store) * 1099511628211ull ^ (uint64_t)(uintptr_t)kv;
    if (!g->graph || key != g->graph_key) {
        aero_cuda_graph_free(g->graph);
        g->graph = NULL;
        aero_error e = {0};
        aero_status st = aero_cuda_capture_begin(g->cu, &e), st_end = AERO_OK;
        if (!st) {
            st = layer(g, kv, 1, 0, g->store, g->store, feat, emb, ids, err);
            if (!st) st = queue_outputs(g, 1, 0, 1, err);
            st_end = aero_cuda_capture_end(g->cu, &g->graph, &e);
            if (st) return st;
        }
        if (st || st_end) { // nothing recorded ran: the plain call, now and from now on
            fprintf(stderr, "cuda: no graph for the draft head (%s): plain launches\n", e.msg);
            g->graphs = false;
            return layer(g, kv, 1, 0, g->store, g->store, feat, emb, ids, err) || queue_outputs(g, 1, 0, 1, err)
                       ? err->code
                       : AERO_OK;
        }
        g->graph_key = key;
    }
    return aero_cuda_graph_launch(g->cu, g->graph, err);
}

// Tokens [r, r + k) of the call: one device pass, waited for.
static aero_status chunk(head_gpu *g, head_gpu_kv *kv, const head_gpu_call *call, int r, int k, aero_error *err) {
    prof_pass_begin(&g->prof);
    int n_anc = 0;
    bool masked = call->parent && !chain_covers(g, call);
    int32_t base = masked ? call->n_commit : call->base + r; // causal: every cell before the chunk, then its own
    for (int i = 0; i < k; i++) g->aslot[i] = call->base + r + i;
    aero_status st = aero_cuda_batch_set(g->store, k, call->pos + r, NULL, g->aslot, NULL, &base, err);
    if (!st && masked) st = wave_batch(g, call, &n_anc, err);
    prof_phase(&g->prof, PH_BATCH);
    float *feat = NULL, *emb = NULL;
    int32_t *ids = NULL;
    if (!st) st = stage(g, call, r, k, &feat, &emb, &ids, err);
    prof_phase(&g->prof, PH_EMBED);
    int first_logit = call->logits ? call->n - call->n_logits : call->n;
    int l0 = first_logit > r ? (first_logit - r < k ? first_logit - r : k) : 0; // the chunk's first logits row
    int nb = k - l0 < HEAD_GPU_LOGIT_ROWS ? k - l0 : HEAD_GPU_LOGIT_ROWS;
    if (!st && g->graphs && k == 1 && !masked && nb == 1) st = graph_layer(g, kv, feat, emb, ids, err);
    else if (!st && !(st = layer(g, kv, k, n_anc, g->store, masked ? g->attn : g->store, feat, emb, ids, err)))
        st = queue_outputs(g, k, l0, nb, err);
    prof_phase(&g->prof, PH_LAYERS);
    if (!st) st = fetch_outputs(g, call, r, k, l0, nb, err);
    prof_phase(&g->prof, PH_HEAD);
    prof_mark_end(&g->prof);
    if (!st) prof_pass_end(&g->prof, k);
    return st;
}

aero_status head_gpu_forward(head_gpu *g, head_gpu_kv *kv, const head_gpu_call *call, aero_error *err) {
    if (call->n <= 0) return AERO_OK;
    if (call->parent && call->n > g->rows)
        return aero_fail(err, AERO_ERR_RANGE, "draft head: %d drafted tokens in one call exceed %d", call->n, g->rows);
    if (call->base + call->n > g->cells)
        return aero_fail(err, AERO_ERR_RANGE, "draft head: %d tokens after %d cells exceed %d", call->n, call->base,
                         g->cells);
    if (call->logits && (call->n_logits < 1 || call->n_logits > call->n))
        return aero_fail(err, AERO_ERR_INVALID, "draft head: logits of %d of %d tokens", call->n_logits, call->n);
    for (int r = 0; r < call->n; r += g->rows) { // committed tokens in chunks, each seeing the cells before it
        int k = call->n - r < g->rows ? call->n - r : g->rows;
        aero_status st = chunk(g, kv, call, r, k, err);
        if (st) return st;
    }
    return AERO_OK;
}

// ---- a chain drafted on the device ----------------------------------------------------------------------------

bool head_gpu_chain_ok(const head_gpu *g) { return g && g->embd_dev && g->chain; }

// The device logits row of a chain's projection: the outputs buffer's logits area (nothing else is copied back
// from it during a chain).
static float *chain_logits(head_gpu *g) { return g->out + r256((uint64_t)g->rows * g->dm.d * 4) / 4; }

// The chain's tokens 1 .. k - 1: token j's id is pick[j - 1] (the argmax after token j - 1), its input feature
// the output feature of the call before it (row 0 of x), its embedding looked up on the device into the staging
// buffer (whose inputs the catch-up's layer has read); its argmax goes to pick[j], its probability after the ids.
static aero_status chain_calls(head_gpu *g, head_gpu_kv *kv, int k, aero_error *err) {
    float *emb = (float *)g->in, *lg = chain_logits(g), *prob = (float *)(g->pick + g->rows);
    for (int j = 1; j < k; j++) {
        aero_cuda_batch *b = aero_cuda_chain_batch(g->chain, j - 1);
        if (layer(g, kv, 1, 0, b, b, g->x, emb, g->pick + j - 1, err) || aero_gpu_project_dev(g->c, g->x, 1, lg, err))
            return err->code;
        prof_op(&g->prof, OP_ELEM);
        if (aero_cuda_argmax(g->cu, lg, 1, g->dm.n_vocab, g->pick + j, prob + j, err)) return err->code;
    }
    return AERO_OK;
}

// The chain's tokens 1 .. k - 1 as one CUDA graph (AERO_CUDA_GRAPHS=1, the output head VRAM-resident): recorded
// once per chain length, batch shapes (attention segments) and KV state, replayed with the batches uploaded before
// it. Every pointer it reads is fixed (x, pick, the staging, the chain's batches). A capture that fails turns
// graphs off and runs the calls plainly, as graph_layer does.
static aero_status chain_graph(head_gpu *g, head_gpu_kv *kv, int k, aero_error *err) {
    uint64_t key = (uint64_t)(uintptr_t)kv * 1099511628211ull ^ (uint64_t)k;
    for (int j = 0; j + 1 < k; j++)
        key = key * 1099511628211ull ^ aero_cuda_batch_shape_key(aero_cuda_chain_batch(g->chain, j));
    if (!g->cgraph || key != g->cgraph_key) {
        aero_cuda_graph_free(g->cgraph);
        g->cgraph = NULL;
        aero_error e = {0};
        aero_status st = aero_cuda_capture_begin(g->cu, &e), st_end = AERO_OK;
        if (!st) {
            st = chain_calls(g, kv, k, err);
            st_end = aero_cuda_capture_end(g->cu, &g->cgraph, &e);
            if (st) return st;
        }
        if (st || st_end) {
            fprintf(stderr, "cuda: no graph for the draft head (%s): plain launches\n", e.msg);
            g->graphs = false;
            return chain_calls(g, kv, k, err);
        }
        g->cgraph_key = key;
    }
    return aero_cuda_graph_launch(g->cu, g->cgraph, err);
}

aero_status head_gpu_chain(head_gpu *g, head_gpu_kv *kv, const head_gpu_call *call, int k, int32_t *ids, float *prob,
                           aero_error *err) {
    int n = call->n, d = g->dm.d;
    if (!head_gpu_chain_ok(g))
        return aero_fail(err, AERO_ERR_UNSUPPORTED, "draft head: a chain on the device needs the embedding in VRAM");
    if (call->parent || n < 1 || n > g->rows || k < 1 || k > g->rows)
        return aero_fail(err, AERO_ERR_INVALID, "draft head chain: %d committed tokens and %d drafted (1..%d)", n, k,
                         g->rows);
    if (call->base + n + k - 1 > g->cells)
        return aero_fail(err, AERO_ERR_RANGE, "draft head chain: %d + %d tokens after %d cells exceed %d", n, k - 1,
                         call->base, g->cells);
    prof_pass_begin(&g->prof);
    // the committed tokens after the cells before them; drafted token j at the next cell, seeing every cell before
    for (int i = 0; i < n; i++) g->aslot[i] = call->base + i;
    int32_t base = call->base;
    aero_status st = aero_cuda_batch_set(g->store, n, call->pos, NULL, g->aslot, NULL, &base, err);
    for (int j = 0; j + 1 < k; j++) {
        g->cpos[j] = call->pos[n - 1] + 1 + j;
        g->cslot[j] = g->cbase[j] = call->base + n + j;
    }
    if (!st && k > 1) st = aero_cuda_chain_set(g->chain, k - 1, g->cpos, g->cslot, g->cbase, err);
    prof_phase(&g->prof, PH_BATCH);
    float *feat = NULL, *emb = NULL;
    int32_t *tok = NULL;
    if (!st) st = stage(g, call, 0, n, &feat, &emb, &tok, err);
    prof_phase(&g->prof, PH_EMBED);
    float *lg = chain_logits(g), *xl = g->x + (size_t)(n - 1) * d;
    if (!st) st = layer(g, kv, n, 0, g->store, g->store, feat, emb, tok, err);
    if (!st) st = aero_gpu_project_dev(g->c, xl, 1, lg, err);
    if (!st) {
        prof_op(&g->prof, OP_ELEM);
        st = aero_cuda_argmax(g->cu, lg, 1, g->dm.n_vocab, g->pick, (float *)(g->pick + g->rows), err);
    }
    if (!st && k > 1 && n > 1) { // the chain starts from row 0 of x, whatever the catch-up's length
        prof_op(&g->prof, OP_COPY);
        st = aero_cuda_copy_d2d(g->cu, g->x, xl, (size_t)d * 4, err);
    }
    if (!st && k > 1) st = g->graphs ? chain_graph(g, kv, k, err) : chain_calls(g, kv, k, err);
    prof_phase(&g->prof, PH_LAYERS);
    if (!st) { // one copy back: the ids, then the probabilities
        prof_op(&g->prof, OP_COPY);
        st = aero_cuda_copy_d2h(g->cu, g->out_host, g->pick, (size_t)2 * g->rows * 4, err);
    }
    if (!st) {
        memcpy(ids, g->out_host, (size_t)k * 4);
        memcpy(prob, (const int32_t *)g->out_host + g->rows, (size_t)k * 4);
    }
    prof_phase(&g->prof, PH_HEAD);
    prof_mark_end(&g->prof);
    if (!st) prof_pass_end(&g->prof, n + k - 1);
    return st;
}

#endif
