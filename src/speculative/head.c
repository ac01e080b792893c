// The feature-level draft head (EAGLE, Li et al. 2024): one decoder layer that drafts in the target's own
// feature space. Its input at the token of position p is fc([norm(f) ; norm(E(t_p))]), f the target's last
// hidden state at position p - 1 (aero_ctx_hidden: after the output norm) where the target computed it, else
// the head's own prediction for that position; its output predicts the target's hidden state at p, and the
// target's own vocabulary projection (aero_ctx_project) turns that into the next token's logits. Embeddings and
// projection are the target's, so the file holds only the fc and the layer. The hidden states come free with
// every verification pass, which is what makes the head cheap and well informed.
//
// File (GGUF, general.architecture = "aero-draft-head"): tensors fc.weight {2 n_embd, n_embd} (input rows: the
// normed feature, then the normed embedding), fc_norm_h.weight, fc_norm_e.weight {n_embd}, and blk.0.* as a
// llama layer (attn_norm, attn_q/k/v/output, ffn_norm, ffn_gate/up/down; RoPE on adjacent pairs). Metadata
// aero-draft-head.{head_count, head_count_kv, feed_forward_length, rope.freq_base,
// attention.layer_norm_rms_epsilon} and the teacher it was trained for: aero-draft-head.teacher.{name, n_embd,
// n_vocab, vocab_hash}, vocab_hash being FNV-1a 64 over every token string followed by a zero byte.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/kernels.h"
#include "../kernels/ops.h"
#include "head_gpu.h"
#include "spec_internal.h"

#define HEAD_ARCH "aero-draft-head"
#define WAVE_MAX 8 // tree drafting: unexpanded nodes evaluated in one head call, the most probable first

// The head's matrices in the file, in HEAD_W_* order.
static const char *const wname[HEAD_W_COUNT] = {
    "fc.weight",           "blk.0.attn_q.weight",      "blk.0.attn_k.weight",
    "blk.0.attn_v.weight", "blk.0.attn_output.weight", "blk.0.ffn_gate.weight",
    "blk.0.ffn_up.weight", "blk.0.ffn_down.weight"};

struct aero_spec_head {
    aero_ctx *tctx;        // the target context whose embeddings and projection the head shares
    struct aero_pool *pool; // the target's compute threads, idle while the head runs (between its passes)
    int d, n_head, n_head_kv, hd, n_ff, n_vocab;
    float eps;
    float *inv_freq;       // hd / 2
    aero_wmat w[HEAD_W_COUNT]; // data owned (malloc)
    float *norm[HEAD_N_COUNT]; // d each
    int cap, rows;         // cache cells, rows one call computes at most
    float *kc, *vc;        // per KV head: cap x hd (keys rotated); with the layer on the GPU, NULL
    int n_commit, n_cells; // cells of committed tokens (a prefix), cells in use
    int *cell_parent;      // per cell: the previous visible drafted cell (-1: only the committed prefix before it)
    float *x;              // rows x d: the output features of the last call
    float *e, *in2, *xn, *q, *k, *v, *att, *g, *u, *tmp, *scores; // the host layer's scratch
    int *vis;
    uint64_t bytes;
    head_gpu *gpu;     // the layer on the target's GPU (its weights shared with the borrowers), or NULL: on the host
    head_gpu_kv *gkv;  // this head's KV cells in VRAM
    bool wants_hidden; // registered with tctx (aero_ctx_want_hidden)
    bool borrowed;     // w, norm, inv_freq and gpu belong to another head (aero_spec_head_load_like)
};

// The memory of one head's state, as (buffer, bytes) pairs: the output features and the cells' parents, and with
// the layer on the host its cache and scratch. One list for allocating and for aero_spec_head_mem.
typedef struct {
    void **p;
    size_t bytes;
} state_buf;
#define STATE_BUFS 16

static int state_layout(aero_spec_head *h, int d, int kvd, int n_ff, int cells, int rows, bool gpu, state_buf *b) {
    size_t R = (size_t)rows, C = (size_t)cells, f = sizeof(float);
    int n = 0;
    b[n++] = (state_buf){(void **)&h->x, f * R * d};
    b[n++] = (state_buf){(void **)&h->cell_parent, sizeof(int) * C};
    if (gpu) return n;
    b[n++] = (state_buf){(void **)&h->kc, f * C * kvd};
    b[n++] = (state_buf){(void **)&h->vc, f * C * kvd};
    b[n++] = (state_buf){(void **)&h->e, f * R * d};
    b[n++] = (state_buf){(void **)&h->in2, f * R * 2 * d};
    b[n++] = (state_buf){(void **)&h->xn, f * R * d};
    b[n++] = (state_buf){(void **)&h->q, f * R * d};
    b[n++] = (state_buf){(void **)&h->k, f * R * kvd};
    b[n++] = (state_buf){(void **)&h->v, f * R * kvd};
    b[n++] = (state_buf){(void **)&h->att, f * R * d};
    b[n++] = (state_buf){(void **)&h->g, f * R * n_ff};
    b[n++] = (state_buf){(void **)&h->u, f * R * n_ff};
    b[n++] = (state_buf){(void **)&h->tmp, f * R * d};
    b[n++] = (state_buf){(void **)&h->scores, f * C};
    b[n++] = (state_buf){(void **)&h->vis, sizeof(int) * C};
    return n;
}

int aero_spec_head_cells(int n_ctx, int nodes) { return n_ctx + nodes + 3; }

// A step's drafted nodes at once, and committed tokens in chunks of at most 64 (the batch scratch of the decoder
// holds nodes + 1 + n_batch tokens): each token's bits are the same in any chunking (batch invariance).
int aero_spec_head_rows(int nodes, int n_batch) {
    int chunk = n_batch < HEAD_GPU_MIN_ROWS ? n_batch : HEAD_GPU_MIN_ROWS;
    return nodes + 1 > chunk ? nodes + 1 : chunk;
}

// FNV-1a 64 over every token string and a zero byte after each: the teacher's vocabulary in one number.
uint64_t aero_spec_head_vocab_hash(const aero_model *m) {
    const aero_tokenizer *t = aero_model_tokenizer((aero_model *)m);
    uint64_t h = 1469598103934665603ull;
    int32_t n = aero_tokenizer_n_vocab(t);
    for (int32_t i = 0; i < n; i++) {
        const char *s = aero_tokenizer_token_str(t, i);
        for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) h = (h ^ *p) * 1099511628211ull;
        h = (h ^ 0) * 1099511628211ull;
    }
    return h;
}

void aero_spec_head_free(aero_spec_head *h) {
    if (!h) return;
    if (h->wants_hidden) aero_ctx_want_hidden(h->tctx, false);
    for (int i = 0; i < HEAD_W_COUNT && !h->borrowed; i++) free((void *)h->w[i].data);
    for (int i = 0; i < HEAD_N_COUNT && !h->borrowed; i++) free(h->norm[i]);
    if (!h->borrowed) free(h->inv_freq);
    state_buf b[STATE_BUFS];
    int n = state_layout(h, 0, 0, 0, 0, 0, false, b);
    for (int i = 0; i < n; i++) free(*b[i].p);
#ifdef AERO_CUDA
    head_gpu_kv_give(h->gkv);
    if (!h->borrowed) head_gpu_free(h->gpu); // after every head that borrowed it
#endif
    free(h);
}

// Reads one tensor of the head file whole, checking its shape (ne0 x ne1; ne1 0: a vector).
static aero_status read_tensor(const aero_gguf *g, FILE *f, const char *path, const char *name, uint64_t ne0,
                               uint64_t ne1, void **out, aero_dtype *type, aero_error *err) {
    int64_t i = aero_gguf_tensor_index(g, name);
    if (i < 0) return aero_fail(err, AERO_ERR_INVALID, "draft head %s: tensor '%s' missing", path, name);
    const uint64_t *ne = aero_gguf_tensor_shape(g, (uint64_t)i);
    uint32_t nd = aero_gguf_tensor_n_dims(g, (uint64_t)i);
    if (ne[0] != ne0 || (ne1 ? nd != 2 || ne[1] != ne1 : nd != 1))
        return aero_fail(err, AERO_ERR_INVALID, "draft head %s: tensor '%s' has shape %llu x %llu, expected %llu x %llu",
                         path, name, (unsigned long long)ne[0], (unsigned long long)(nd > 1 ? ne[1] : 0),
                         (unsigned long long)ne0, (unsigned long long)ne1);
    *type = (aero_dtype)aero_gguf_tensor_type(g, (uint64_t)i);
    if (!ne1 && *type != AERO_DT_F32)
        return aero_fail(err, AERO_ERR_INVALID, "draft head %s: norm '%s' must be F32", path, name);
    uint64_t nb = aero_gguf_tensor_nbytes(g, (uint64_t)i);
    *out = malloc(nb ? nb : 1);
    if (!*out) return aero_fail(err, AERO_ERR_NOMEM, "out of memory for draft head tensor '%s'", name);
    if (fseeko(f, (off_t)aero_gguf_tensor_offset(g, (uint64_t)i), SEEK_SET) || fread(*out, 1, nb, f) != nb) {
        free(*out);
        *out = NULL;
        return aero_fail(err, AERO_ERR_IO, "draft head %s: cannot read tensor '%s'", path, name);
    }
    return AERO_OK;
}

static uint64_t meta_u64(const aero_gguf *g, const char *key, bool *ok) {
    uint64_t v = 0;
    if (!aero_gguf_get_u64(g, key, &v)) *ok = false;
    return v;
}

// The refusal of a head trained for another teacher: every recorded property must match the target's.
static aero_status check_teacher(const aero_gguf *g, const char *path, aero_model *target, aero_error *err) {
    bool ok = true;
    uint64_t n_embd = meta_u64(g, HEAD_ARCH ".teacher.n_embd", &ok), n_vocab = meta_u64(g, HEAD_ARCH ".teacher.n_vocab", &ok),
             hash = meta_u64(g, HEAD_ARCH ".teacher.vocab_hash", &ok);
    if (!ok) return aero_fail(err, AERO_ERR_INVALID, "draft head %s: the teacher it was trained for is not recorded", path);
    const char *want = aero_gguf_get_str(g, HEAD_ARCH ".teacher.name");
    const char *have = aero_gguf_get_str(aero_model_gguf(target), "general.name");
    int tv = aero_tokenizer_n_vocab(aero_model_tokenizer(target));
    if (n_embd != (uint64_t)aero_model_n_embd(target))
        return aero_fail(err, AERO_ERR_INVALID, "draft head %s was trained for a teacher of width %llu, this model has %d",
                         path, (unsigned long long)n_embd, aero_model_n_embd(target));
    if (n_vocab != (uint64_t)tv || hash != aero_spec_head_vocab_hash(target))
        return aero_fail(err, AERO_ERR_INVALID,
                         "draft head %s was trained for a teacher with another vocabulary (%llu tokens, hash %016llx)",
                         path, (unsigned long long)n_vocab, (unsigned long long)hash);
    if (want && *want && (!have || strcmp(want, have)))
        return aero_fail(err, AERO_ERR_INVALID, "draft head %s was trained for teacher '%s', this model is '%s'", path,
                         want, have ? have : "(unnamed)");
    return AERO_OK;
}

static aero_status alloc_state(aero_spec_head *h, aero_ctx *target, int cells, int rows, int nodes, aero_error *err);

// AERO_DRAFT_HEAD_HOST=1 keeps the head's layer on the host beside a GPU target (A/B runs); nothing is planned
// for it in VRAM then.
static bool host_forced(void) {
    const char *e = getenv("AERO_DRAFT_HEAD_HOST");
    return e && atoi(e) > 0;
}

#ifdef AERO_CUDA
// Says why a head's layer stays on the host of a GPU target (no room planned in VRAM, a weight without a kernel).
static void host_note(const char *why) { fprintf(stderr, "draft head: its layer runs on the host (%s)\n", why); }

// With the target on the GPU, the layer's weights go there once for the heads that share them; failing that, the
// layer stays on the host, which computes the same drafts (to a tolerance) more slowly.
static void gpu_open(aero_spec_head *h, aero_ctx *target, int cells, int nodes) {
    if (!aero_ctx_on_gpu(target) || host_forced()) return;
    head_layer L = {.dm = {h->d, h->n_head, h->n_head_kv, h->hd, h->n_ff, h->n_vocab},
                    .eps = h->eps,
                    .inv_freq = h->inv_freq,
                    .w = h->w,
                    .norm = (const float *const *)h->norm};
    aero_error e = {0};
    if (head_gpu_new(target, &L, cells, nodes, &h->gpu, &e)) host_note(e.msg);
}
#endif

aero_status aero_spec_head_load(aero_spec_head **out, const char *path, aero_ctx *target, int cells, int rows,
                                int nodes, aero_error *err) {
    *out = NULL;
    aero_model *tm = aero_ctx_model(target);
    aero_gguf *g = NULL;
    FILE *f = NULL;
    aero_spec_head *h = NULL;
    if (aero_gguf_load(&g, path, err)) return aero_error_prefix(err, "draft head: ");
    const char *arch = aero_gguf_get_str(g, "general.architecture");
    if (!arch || strcmp(arch, HEAD_ARCH)) {
        aero_fail(err, AERO_ERR_INVALID, "%s is not a draft head (general.architecture '%s', expected '%s')", path,
                  arch ? arch : "", HEAD_ARCH);
        goto fail;
    }
    if (check_teacher(g, path, tm, err)) goto fail;
    h = calloc(1, sizeof *h);
    if (!h) goto oom;
    h->tctx = target;
    h->d = aero_model_n_embd(tm);
    h->n_vocab = aero_model_n_vocab(tm);
    bool ok = true;
    h->n_head = (int)meta_u64(g, HEAD_ARCH ".head_count", &ok);
    h->n_head_kv = (int)meta_u64(g, HEAD_ARCH ".head_count_kv", &ok);
    h->n_ff = (int)meta_u64(g, HEAD_ARCH ".feed_forward_length", &ok);
    double base = 10000, eps = 1e-5;
    aero_gguf_get_f64(g, HEAD_ARCH ".rope.freq_base", &base);
    aero_gguf_get_f64(g, HEAD_ARCH ".attention.layer_norm_rms_epsilon", &eps);
    if (!ok || h->n_head <= 0 || h->n_head_kv <= 0 || h->n_head % h->n_head_kv || h->d % h->n_head ||
        (h->d / h->n_head) % 2 || h->n_ff <= 0 || h->n_ff > (1 << 20)) {
        aero_fail(err, AERO_ERR_INVALID, "draft head %s: bad or missing head_count/head_count_kv/feed_forward_length",
                  path);
        goto fail;
    }
    h->hd = h->d / h->n_head;
    h->eps = (float)eps;
    f = fopen(aero_gguf_file_path(g, 0), "rb");
    if (!f) {
        aero_fail(err, AERO_ERR_IO, "draft head %s: cannot open", path);
        goto fail;
    }
    int d = h->d, kvd = h->n_head_kv * h->hd;
    uint64_t wcols[HEAD_W_COUNT] = {2 * (uint64_t)d, d, d, d, d, d, d, h->n_ff},
             wrows[HEAD_W_COUNT] = {d, d, kvd, kvd, d, h->n_ff, h->n_ff, d};
    for (int i = 0; i < HEAD_W_COUNT; i++) {
        void *data;
        aero_dtype t;
        if (read_tensor(g, f, path, wname[i], wcols[i], wrows[i], &data, &t, err)) goto fail;
        h->w[i] = (aero_wmat){.data = data,
                              .type = t,
                              .cols = (int64_t)wcols[i],
                              .rows = (int64_t)wrows[i],
                              .row_bytes = aero_dtype_row_bytes(t, (int64_t)wcols[i])};
        h->bytes += aero_gguf_tensor_nbytes(g, (uint64_t)aero_gguf_tensor_index(g, wname[i]));
        if (aero_wmat_check(&h->w[i], err)) {
            aero_error_prefix(err, "draft head: ");
            goto fail;
        }
    }
    static const char *nname[HEAD_N_COUNT] = {"fc_norm_h.weight", "fc_norm_e.weight", "blk.0.attn_norm.weight",
                                              "blk.0.ffn_norm.weight"};
    for (int i = 0; i < HEAD_N_COUNT; i++) {
        aero_dtype t;
        if (read_tensor(g, f, path, nname[i], d, 0, (void **)&h->norm[i], &t, err)) goto fail;
    }
    fclose(f);
    f = NULL;
    aero_gguf_close(g);
    g = NULL;
    h->inv_freq = malloc(sizeof(float) * h->hd / 2);
    if (!h->inv_freq) goto oom;
    for (int i = 0; i < h->hd / 2; i++) h->inv_freq[i] = (float)pow(base, -2.0 * i / h->hd);
#ifdef AERO_CUDA
    gpu_open(h, target, cells, nodes);
#endif
    if (alloc_state(h, target, cells, rows, nodes, err)) goto fail;
    *out = h;
    return AERO_OK;
oom:
    aero_fail(err, AERO_ERR_NOMEM, "out of memory for the draft head");
fail:
    if (f) fclose(f);
    aero_gguf_close(g);
    aero_spec_head_free(h);
    return err->code;
}

aero_status aero_spec_head_load_like(aero_spec_head **out, const aero_spec_head *like, int cells, int rows, int nodes,
                                     aero_error *err) {
    *out = NULL;
    aero_spec_head *h = malloc(sizeof *h);
    if (!h) return aero_fail(err, AERO_ERR_NOMEM, "out of memory for the draft head");
    *h = (aero_spec_head){.tctx = like->tctx,
                          .d = like->d,
                          .n_head = like->n_head,
                          .n_head_kv = like->n_head_kv,
                          .hd = like->hd,
                          .n_ff = like->n_ff,
                          .n_vocab = like->n_vocab,
                          .eps = like->eps,
                          .inv_freq = like->inv_freq,
                          .bytes = like->bytes,
                          .gpu = like->gpu,
                          .borrowed = true};
    memcpy(h->w, like->w, sizeof h->w);
    memcpy(h->norm, like->norm, sizeof h->norm);
    if (alloc_state(h, like->tctx, cells, rows, nodes, err)) {
        aero_spec_head_free(h);
        return err->code;
    }
    *out = h;
    return AERO_OK;
}

// A head's own state (its cache of cells cells, scratch of rows tokens a call: in VRAM when its layer is on the
// GPU, else on the host), and its registration as a reader of the target's hidden states.
static aero_status alloc_state(aero_spec_head *h, aero_ctx *target, int cells, int rows, int nodes, aero_error *err) {
    h->pool = aero_model_pool(aero_ctx_model(target));
    h->cap = cells;
    h->rows = rows;
#ifdef AERO_CUDA
    aero_error e = {0};
    if (h->gpu && head_gpu_kv_take(h->gpu, cells, nodes, &h->gkv, &e)) {
        host_note(e.msg);
        if (!h->borrowed) head_gpu_free(h->gpu);
        h->gpu = NULL;
    }
#endif
    state_buf b[STATE_BUFS];
    int n = state_layout(h, h->d, h->n_head_kv * h->hd, h->n_ff, cells, rows, h->gpu != NULL, b);
    for (int i = 0; i < n; i++)
        if (!(*b[i].p = malloc(b[i].bytes)))
            return aero_fail(err, AERO_ERR_NOMEM, "out of memory for the draft head's cache of %d cells", cells);
    aero_ctx_want_hidden(target, true); // a GPU context copies its hidden states back from now on
    h->wants_hidden = true;
    return AERO_OK;
}

uint64_t aero_spec_head_bytes(const aero_spec_head *h) { return h ? h->bytes : 0; }

bool aero_spec_head_on_gpu(const aero_spec_head *h) { return h && h->gpu; }

aero_status aero_spec_head_file_bytes(const char *path, uint64_t *bytes, aero_error *err) {
    *bytes = 0;
    aero_gguf *g = NULL;
    if (aero_gguf_load(&g, path, err)) return aero_error_prefix(err, "draft head: ");
    const char *arch = aero_gguf_get_str(g, "general.architecture");
    aero_status st = AERO_OK;
    if (!arch || strcmp(arch, HEAD_ARCH))
        st = aero_fail(err, AERO_ERR_INVALID, "%s is not a draft head (general.architecture '%s', expected '%s')", path,
                       arch ? arch : "", HEAD_ARCH);
    for (uint64_t i = 0; !st && i < g->n_tensors; i++) *bytes += aero_gguf_tensor_nbytes(g, i);
    aero_gguf_close(g);
    return st;
}

// The head's shape and matrix bytes from its file (what aero_spec_head_load reads, without the weights).
static aero_status file_dims(const aero_gguf *g, const char *path, head_dims *dm, uint64_t *mat_bytes,
                             aero_error *err) {
    bool ok = true;
    *dm = (head_dims){.d = (int)meta_u64(g, HEAD_ARCH ".teacher.n_embd", &ok),
                      .n_head = (int)meta_u64(g, HEAD_ARCH ".head_count", &ok),
                      .n_head_kv = (int)meta_u64(g, HEAD_ARCH ".head_count_kv", &ok),
                      .n_ff = (int)meta_u64(g, HEAD_ARCH ".feed_forward_length", &ok),
                      .n_vocab = (int)meta_u64(g, HEAD_ARCH ".teacher.n_vocab", &ok)};
    if (!ok || dm->d <= 0 || dm->n_head <= 0 || dm->n_head_kv <= 0 || dm->d % dm->n_head || dm->n_ff <= 0 ||
        dm->n_vocab <= 0)
        return aero_fail(err, AERO_ERR_INVALID, "draft head %s: bad or missing shape metadata", path);
    dm->hd = dm->d / dm->n_head;
    for (int i = 0; i < HEAD_W_COUNT; i++) {
        int64_t t = aero_gguf_tensor_index(g, wname[i]);
        if (t < 0) return aero_fail(err, AERO_ERR_INVALID, "draft head %s: tensor '%s' missing", path, wname[i]);
        mat_bytes[i] = aero_gguf_tensor_nbytes(g, (uint64_t)t);
    }
    return AERO_OK;
}

aero_status aero_spec_head_mem(const char *path, int n_ctx, int n_seq, int nodes, int n_batch, bool gpu, uint64_t *host,
                               uint64_t *vram, aero_error *err) {
    *host = *vram = 0;
    uint64_t weights = 0, mat_bytes[HEAD_W_COUNT];
    head_dims dm;
    aero_gguf *g = NULL;
    if (aero_spec_head_file_bytes(path, &weights, err) || aero_gguf_load(&g, path, err))
        return aero_error_prefix(err, "draft head: ");
    aero_status st = file_dims(g, path, &dm, mat_bytes, err);
    aero_gguf_close(g);
    if (st) return st;
    if (n_seq < 1) n_seq = 1;
    bool on_gpu = gpu && !host_forced();
    int cells = aero_spec_head_cells(n_ctx, nodes), rows = aero_spec_head_rows(nodes, n_batch > 0 ? n_batch : 512);
    aero_spec_head dummy = {0};
    state_buf b[STATE_BUFS];
    uint64_t state = 0;
    int nb = state_layout(&dummy, dm.d, dm.n_head_kv * dm.hd, dm.n_ff, cells, rows, on_gpu, b);
    for (int i = 0; i < nb; i++) state += b[i].bytes;
    // and the decoder's own buffers for a head (spec.c): features by position, logits and features of a step
    uint64_t nm = (uint64_t)nodes + 1, lrows = nm > 8 ? nm : 8;
    state += 4 * ((uint64_t)cells * dm.d + lrows * dm.n_vocab + nm * dm.d + dm.n_vocab);
    *host = weights + (uint64_t)n_seq * state + (on_gpu ? head_gpu_host_bytes(&dm, nodes) : 0);
    if (on_gpu)
        *vram = head_gpu_shared_bytes(&dm, mat_bytes, cells, nodes) + (uint64_t)n_seq * head_gpu_kv_bytes(&dm, cells);
    return AERO_OK;
}

// Drops drafted cells and committed cells beyond n_commit (positions 1..n_commit are cells 0..n_commit-1).
void aero_spec_head_truncate(aero_spec_head *h, int n_commit) {
    if (n_commit < 0) n_commit = 0;
    if (n_commit < h->n_commit) h->n_commit = n_commit;
    h->n_cells = h->n_commit;
}

// One head pass over n tokens. Committed tokens (parent == NULL) extend the committed prefix causally; drafted
// tokens (parent[i]: the cell of the drafted token before it, -1 when it follows the committed prefix) each see
// the committed prefix, their drafted ancestors and themselves. feat[i]: the input feature of token i. Writes
// the output features (the predicted hidden states) to h->x and the logits of the rows asked for to logits:
// every row, or (last_only) the last one.
static aero_status head_forward(aero_spec_head *h, int n, const int32_t *tok, const int32_t *pos,
                                const float *const *feat, const int *parent, float *logits, bool last_only,
                                aero_error *err) {
    int d = h->d, kvd = h->n_head_kv * h->hd, hd = h->hd;
    if (n > h->rows || h->n_cells + n > h->cap)
        return aero_fail(err, AERO_ERR_RANGE, "draft head: %d tokens do not fit (%d of %d cells used)", n, h->n_cells,
                         h->cap);
    for (int i = 0; i < n; i++) h->cell_parent[h->n_cells + i] = parent ? parent[i] : -1;
#ifdef AERO_CUDA
    if (h->gpu) {
        head_gpu_call call = {.n = n,
                              .tok = tok,
                              .pos = pos,
                              .feat = feat,
                              .parent = parent,
                              .cell_parent = h->cell_parent,
                              .base = h->n_cells,
                              .n_commit = h->n_commit,
                              .x = h->x,
                              .logits = logits,
                              .n_logits = !logits     ? 0
                                          : last_only ? 1
                                                      : n};
        if (head_gpu_forward(h->gpu, h->gkv, &call, err)) return aero_error_prefix(err, "draft head on the GPU: ");
        h->n_cells += n;
        if (!parent) h->n_commit = h->n_cells;
        return AERO_OK;
    }
#endif
    aero_status st = aero_ctx_embed_rows(h->tctx, tok, n, h->e, err);
    if (st) return aero_error_prefix(err, "draft head: ");
    for (int i = 0; i < n; i++) {
        aero_rmsnorm(h->in2 + (size_t)i * 2 * d, feat[i], h->norm[HEAD_N_H], d, h->eps);
        aero_rmsnorm(h->in2 + (size_t)i * 2 * d + d, h->e + (size_t)i * d, h->norm[HEAD_N_E], d, h->eps);
    }
    aero_matmul(h->pool, &h->w[HEAD_W_FC], h->in2, n, h->x);
    for (int i = 0; i < n; i++)
        aero_rmsnorm(h->xn + (size_t)i * d, h->x + (size_t)i * d, h->norm[HEAD_N_ATTN], d, h->eps);
    const aero_wmat *qkv[3] = {&h->w[HEAD_W_Q], &h->w[HEAD_W_K], &h->w[HEAD_W_V]};
    float *qkv_out[3] = {h->q, h->k, h->v};
    aero_matmul_many(h->pool, qkv, 3, h->xn, n, qkv_out);
    int base = h->n_cells;
    for (int i = 0; i < n; i++) {
        for (int hh = 0; hh < h->n_head; hh++) aero_rope(h->q + (size_t)i * d + hh * hd, pos[i], hd, h->inv_freq, false);
        int cell = base + i;
        for (int kh = 0; kh < h->n_head_kv; kh++) {
            float *kr = h->k + (size_t)i * kvd + kh * hd;
            aero_rope(kr, pos[i], hd, h->inv_freq, false);
            memcpy(h->kc + ((size_t)kh * h->cap + cell) * hd, kr, sizeof(float) * hd);
            memcpy(h->vc + ((size_t)kh * h->cap + cell) * hd, h->v + (size_t)i * kvd + kh * hd, sizeof(float) * hd);
        }
    }
    float scale = 1.0f / sqrtf((float)hd);
    for (int i = 0; i < n; i++) {
        int cell = base + i, nv = 0;
        if (!parent) {
            for (int c = 0; c <= cell; c++) h->vis[nv++] = c; // the committed prefix is cells [0, cell]
        } else {
            for (int c = 0; c < h->n_commit; c++) h->vis[nv++] = c;
            int first = nv;
            for (int c = cell; c >= 0; c = h->cell_parent[c]) h->vis[nv++] = c;
            for (int a = first, b = nv - 1; a < b; a++, b--) { // ancestors in increasing order
                int t = h->vis[a];
                h->vis[a] = h->vis[b];
                h->vis[b] = t;
            }
        }
        for (int hh = 0; hh < h->n_head; hh++) {
            int kh = hh / (h->n_head / h->n_head_kv);
            aero_attention(h->att + (size_t)i * d + hh * hd, h->q + (size_t)i * d + hh * hd,
                           h->kc + (size_t)kh * h->cap * hd, h->vc + (size_t)kh * h->cap * hd, h->vis, nv, hd, scale,
                           h->scores);
        }
    }
    h->n_cells += n;
    if (!parent) h->n_commit = h->n_cells;
    aero_matmul(h->pool, &h->w[HEAD_W_O], h->att, n, h->tmp);
    for (size_t i = 0; i < (size_t)n * d; i++) h->x[i] += h->tmp[i];
    for (int i = 0; i < n; i++)
        aero_rmsnorm(h->xn + (size_t)i * d, h->x + (size_t)i * d, h->norm[HEAD_N_FFN], d, h->eps);
    const aero_wmat *gu[2] = {&h->w[HEAD_W_GATE], &h->w[HEAD_W_UP]};
    float *gu_out[2] = {h->g, h->u};
    aero_matmul_many(h->pool, gu, 2, h->xn, n, gu_out);
    aero_swiglu(h->g, h->u, (int64_t)n * h->n_ff);
    aero_matmul(h->pool, &h->w[HEAD_W_DOWN], h->g, n, h->tmp);
    for (size_t i = 0; i < (size_t)n * d; i++) h->x[i] += h->tmp[i];
    if (!logits) return AERO_OK;
    st = last_only ? aero_ctx_project(h->tctx, h->x + (size_t)(n - 1) * d, 1, logits, err)
                   : aero_ctx_project(h->tctx, h->x, n, logits, err);
    return st ? aero_error_prefix(err, "draft head: ") : AERO_OK;
}

#ifdef AERO_CUDA
// AERO_DRAFT_HEAD_DEVCHAIN=0 drafts chains with the host ranking each head call's logits (A/B runs); default on.
static bool devchain_allowed(void) {
    const char *e = getenv("AERO_DRAFT_HEAD_DEVCHAIN");
    return !e || atoi(e) != 0;
}
#endif

bool aero_spec_head_devchain(const aero_spec *s, bool greedy) {
    // the device picks the first largest logit and its softmax probability at temperature 1: the host's chain
    // drafts the same token from the same logits (greedy, and at T > 0 the sampler keeps the largest logit), and
    // the same probability only at temperature 0, so at T > 0 only without --draft-p-min's cut; a constraint
    // (grammar) on the drafter's sampler masks logits the device does not see
    bool same = greedy || (!(s->p.p_min > 0) && !s->p.sampling.constraint);
#ifdef AERO_CUDA
    return s->head && s->head->gpu && head_gpu_chain_ok(s->head->gpu) && same && devchain_allowed();
#else
    (void)same;
    return false;
#endif
}

#ifdef AERO_CUDA
// head_forward's committed call with a chain of k drafted tokens after it, all on the device (head_gpu_chain):
// the committed tokens extend the prefix, the drafted ones take the k - 1 cells after it, each the child of the
// one before; ids and prob get the k picks (no features or logits come back).
static aero_status head_chain(aero_spec_head *h, int n, const int32_t *tok, const int32_t *pos,
                              const float *const *feat, int k, int32_t *ids, float *prob, aero_error *err) {
    if (n > h->rows || h->n_cells + n + k - 1 > h->cap)
        return aero_fail(err, AERO_ERR_RANGE, "draft head: %d + %d tokens do not fit (%d of %d cells used)", n, k - 1,
                         h->n_cells, h->cap);
    head_gpu_call call = {.n = n, .tok = tok, .pos = pos, .feat = feat, .base = h->n_cells, .n_commit = h->n_commit};
    if (head_gpu_chain(h->gpu, h->gkv, &call, k, ids, prob, err))
        return aero_error_prefix(err, "draft head chain on the GPU: ");
    for (int i = 0; i < n; i++) h->cell_parent[h->n_cells + i] = -1;
    h->n_cells += n;
    h->n_commit = h->n_cells;
    for (int j = 0; j + 1 < k; j++) h->cell_parent[h->n_cells + j] = j ? h->n_cells + j - 1 : -1;
    h->n_cells += k - 1;
    return AERO_OK;
}
#endif

// Times a head call for the adaptive length and the COST policy's drafter cost.
static void count_call(aero_spec *s, int n, double dt) {
    s->st.draft_calls++;
    if (n <= s->max_nodes + 1) aero_spec_fit_add(&s->dfit, n, dt);
    if (n <= 2) s->draft_call_ema = s->draft_call_ema > 0 ? 0.9 * s->draft_call_ema + 0.1 * dt : dt;
}

// Feeds the committed tokens the head has not seen, each with the target's hidden state at the position before
// it, leaving the last one's logits in s->dlogits and its output feature in s->hroot. The last committed token
// is always fed again (the previous round's output was computed before the verify pass ended). chain_k > 0: the
// last call drafts a chain of chain_k tokens after it on the device instead (ids, prob: head_gpu_chain's picks).
static aero_status catch_up(aero_spec *s, int chain_k, int32_t *ids, float *prob, aero_error *err) {
    aero_spec_head *h = s->head;
    int d = h->d;
    if (s->d_len > s->n_tok - 1) s->d_len = s->n_tok - 1;
    if (s->d_len < 1) s->d_len = 1; // position 0 has no feature before it: no cell
    aero_spec_head_truncate(h, s->d_len - 1);
    while (s->d_len < s->n_tok) {
        int n = s->n_tok - s->d_len < h->rows ? s->n_tok - s->d_len : h->rows;
        const float *feat[n];
        for (int i = 0; i < n; i++) {
            int p = s->d_len + i;
            s->btok[i] = s->toks[p];
            s->bpos[i] = p;
            feat[i] = s->hfeat + (size_t)(p - 1) * d;
        }
        double t0 = aero_now();
        bool last = s->d_len + n == s->n_tok;
        aero_status st;
#ifdef AERO_CUDA
        if (last && chain_k > 0) {
            st = head_chain(h, n, s->btok, s->bpos, feat, chain_k, ids, prob, err);
            count_call(s, n, aero_now() - t0);
            s->st.draft_calls += chain_k - 1; // the chain's head calls, in the same device pass
            if (st) return st;
            s->d_len += n;
            break;
        }
#else
        if (chain_k > 0)
            return aero_fail(err, AERO_ERR_UNSUPPORTED, "draft head: a chain on the device without the CUDA backend");
        (void)ids, (void)prob;
#endif
        st = head_forward(h, n, s->btok, s->bpos, feat, NULL, last ? s->dlogits : NULL, true, err);
        count_call(s, n, aero_now() - t0);
        if (st) return st;
        s->d_len += n;
        if (last) memcpy(s->hroot, h->x + (size_t)(n - 1) * d, sizeof(float) * d);
    }
    return AERO_OK;
}

// The next candidate after slot (node + 1; 0 the root): rank r of its ranked children, path logp.
static double cand_logp(const aero_spec *s, int slot, int r) {
    return (slot == 0 ? 0 : s->nodes[slot - 1].logp) + log(s->top_q[(size_t)slot * s->top_b + r]);
}

// A chain of at most k tokens drafted on the device (aero_spec_head_devchain): the device drafts k picks in one
// pass, then the host keeps them by the host chain's rules: a row without a candidate ends it, --draft-p-min's cut
// on the path probability (after draft_min tokens), and an end-of-generation token is the last. The same nodes as
// the host-ranked chain given the same logits; the picks after the cut cost device time only.
static aero_status draft_chain_dev(aero_spec *s, int k, aero_error *err) {
    int32_t ids[k];
    float prob[k];
    aero_status st = catch_up(s, k, ids, prob, err);
    if (st) return st;
    int base = s->head->n_cells - (k - 1); // the drafted tokens' first cell
    double logp = 0;
    for (int i = 0; i < k && ids[i] >= 0; i++) {
        double lp = logp + log(prob[i]);
        if (s->p.p_min > 0 && i >= s->p.draft_min && lp < log(s->p.p_min)) break;
        s->nodes[s->n_nodes++] = (spec_node){.token = ids[i],
                                             .parent = i - 1,
                                             .depth = i + 1,
                                             .logp = lp,
                                             .q = NULL,
                                             .first_child = -1,
                                             .next_sibling = -1,
                                             .rank = 0};
        if (i + 1 < k) s->ncell[i] = base + i;
        logp = lp;
        if (aero_tokenizer_is_eog(aero_model_tokenizer(s->tmodel), ids[i])) break;
    }
    return AERO_OK;
}

aero_status aero_spec_draft_head(aero_spec *s, bool greedy, int max_nodes, int max_depth, int branch,
                                 aero_error *err) {
    s->n_nodes = 0;
    if (max_nodes <= 0 || max_depth <= 0) return AERO_OK;
    if (s->n_tok < 2) return AERO_OK; // only the first token: no hidden state to draft from yet
    if (branch == 1 && max_depth >= max_nodes && aero_spec_head_devchain(s, greedy))
        return draft_chain_dev(s, max_nodes, err);
    aero_spec_head *h = s->head;
    int d = h->d, top_b = s->top_b;
    aero_status st = catch_up(s, 0, NULL, NULL, err);
    if (st) return st;
    if (branch > top_b) branch = top_b;
    s->top_b = branch; // this round ranks at most branch children per node (the stride of top_tok/top_q)
    aero_spec_rank_children(s, greedy, s->dlogits, 0);
    // per slot (node + 1): the rank of its next candidate, or n_top when none is left
    int next[max_nodes + 1];
    bool pending[max_nodes];
    for (int i = 0; i <= max_nodes; i++) next[i] = 0;
    for (;;) {
        // the best candidate, and the best unexpanded node (whose children could beat it)
        int best = -1, bestp = -1;
        double blp = -INFINITY, plp = -INFINITY;
        for (int slot = 0; slot <= s->n_nodes; slot++) {
            if (slot > 0 && pending[slot - 1] && s->nodes[slot - 1].logp > plp) plp = s->nodes[slot - 1].logp, bestp = slot - 1;
            bool expanded = slot == 0 || (!pending[slot - 1] && s->n_top[slot] > 0);
            if (!expanded || next[slot] >= s->n_top[slot]) continue;
            double lp = cand_logp(s, slot, next[slot]);
            if (lp > blp) blp = lp, best = slot;
        }
        if (s->n_nodes >= max_nodes || (best < 0 && bestp < 0)) break;
        if (best >= 0 && (bestp < 0 || blp >= plp)) {
            if (s->p.p_min > 0 && s->n_nodes >= s->p.draft_min && blp < log(s->p.p_min)) break;
            int r = next[best]++, parent = best - 1, id = s->n_nodes++;
            int32_t tok = s->top_tok[(size_t)best * s->top_b + r];
            s->nodes[id] = (spec_node){.token = tok,
                                       .parent = parent,
                                       .depth = parent < 0 ? 1 : s->nodes[parent].depth + 1,
                                       .logp = blp,
                                       .q = NULL,
                                       .first_child = -1,
                                       .next_sibling = -1,
                                       .rank = r};
            s->n_top[id + 1] = 0;
            pending[id] = s->nodes[id].depth < max_depth && !aero_tokenizer_is_eog(aero_model_tokenizer(s->tmodel), tok);
            continue;
        }
        // evaluate a wave: the most probable unexpanded nodes, at most WAVE_MAX, in one head call
        int wave[WAVE_MAX], nw = 0;
        while (nw < WAVE_MAX) {
            int pick = -1;
            for (int i = 0; i < s->n_nodes; i++) {
                bool in = false;
                for (int j = 0; j < nw; j++) in |= wave[j] == i;
                if (pending[i] && !in && (pick < 0 || s->nodes[i].logp > s->nodes[pick].logp)) pick = i;
            }
            if (pick < 0 || (nw > 0 && s->nodes[pick].logp < plp + log(0.25))) break;
            wave[nw++] = pick;
        }
        const float *feat[nw];
        int par[nw];
        for (int j = 0; j < nw; j++) {
            const spec_node *nd = &s->nodes[wave[j]];
            s->btok[j] = nd->token;
            s->bpos[j] = s->n_tok - 1 + nd->depth;
            feat[j] = nd->parent < 0 ? s->hroot : s->nfeat + (size_t)nd->parent * d;
            par[j] = nd->parent < 0 ? -1 : s->ncell[nd->parent];
        }
        int base = h->n_cells;
        double t0 = aero_now();
        st = head_forward(h, nw, s->btok, s->bpos, feat, par, s->dlogits, false, err);
        count_call(s, nw, aero_now() - t0);
        if (st) break;
        for (int j = 0; j < nw; j++) {
            int id = wave[j];
            s->ncell[id] = base + j;
            memcpy(s->nfeat + (size_t)id * d, h->x + (size_t)j * d, sizeof(float) * d);
            aero_spec_rank_children(s, greedy, s->dlogits + (size_t)j * s->n_vocab, id + 1);
            pending[id] = false;
        }
    }
    s->top_b = top_b;
    return st;
}

aero_status aero_spec_head_argmax(aero_spec *s, int32_t *out, aero_error *err) {
    aero_spec_head *h = s->head;
    if (!h || s->t_len != s->n_tok - 1) return aero_fail(err, AERO_ERR_INVALID, "head check: call aero_spec_begin first");
    aero_spec_head_truncate(h, 0);
    s->d_len = 1;
    float *lg = malloc(sizeof(float) * s->n_vocab);
    if (!lg) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    aero_status st = AERO_OK;
    for (int p = 1; p < s->n_tok && !st; p++) { // one token a call: every row's logits
        const float *feat = s->hfeat + (size_t)(p - 1) * h->d;
        int32_t pos = p;
        st = head_forward(h, 1, &s->toks[p], &pos, &feat, NULL, lg, true, err);
        out[p - 1] = aero_argmax(lg, s->n_vocab);
    }
    free(lg);
    s->d_len = s->n_tok; // the head's cache holds every committed token: the next catch-up refeeds only the last
    return st;
}

// Writes a draft head for teacher with random weights (tests: greedy identity and lossless sampling hold
// whatever the head drafts; a head for another teacher is refused). teacher_name NULL: the teacher's own. echo:
// the fc passes the feature through and the layer adds little, so the head proposes what the teacher predicted
// one position earlier (often accepted on a small synthetic teacher: the sampling test's rejections and
// acceptances both happen).
aero_status aero_spec_head_write_random(const char *path, const aero_model *teacher, int n_head, int n_ff,
                                        uint64_t seed, const char *teacher_name, bool echo, aero_error *err) {
    aero_model *tm = (aero_model *)teacher;
    int d = aero_model_n_embd(tm);
    if (n_head <= 0 || d % n_head || (d / n_head) % 2 || n_ff <= 0)
        return aero_fail(err, AERO_ERR_INVALID, "draft head: %d heads do not divide width %d", n_head, d);
    aero_gguf_writer *w = aero_gguf_writer_new(0);
    if (!w) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    const char *name = teacher_name ? teacher_name : aero_gguf_get_str(aero_model_gguf(tm), "general.name");
    aero_gguf_set_str(w, "general.architecture", HEAD_ARCH);
    aero_gguf_set_str(w, "general.name", "random draft head");
    aero_gguf_set_str(w, HEAD_ARCH ".teacher.name", name ? name : "");
    aero_gguf_set_u64(w, HEAD_ARCH ".teacher.n_embd", (uint64_t)d);
    aero_gguf_set_u64(w, HEAD_ARCH ".teacher.n_vocab", (uint64_t)aero_tokenizer_n_vocab(aero_model_tokenizer(tm)));
    aero_gguf_set_u64(w, HEAD_ARCH ".teacher.vocab_hash", aero_spec_head_vocab_hash(tm));
    aero_gguf_set_u32(w, HEAD_ARCH ".head_count", (uint32_t)n_head);
    aero_gguf_set_u32(w, HEAD_ARCH ".head_count_kv", (uint32_t)n_head);
    aero_gguf_set_u32(w, HEAD_ARCH ".feed_forward_length", (uint32_t)n_ff);
    aero_gguf_set_f32(w, HEAD_ARCH ".rope.freq_base", 10000.0f);
    aero_gguf_set_f32(w, HEAD_ARCH ".attention.layer_norm_rms_epsilon", 1e-5f);
    struct {
        const char *name;
        uint64_t ne0, ne1;
        float scale; // 0: a norm of ones
    } t[] = {{"fc.weight", 2 * (uint64_t)d, d, (echo ? 0.05f : 1.0f) / sqrtf(2.0f * d)},
             {"fc_norm_h.weight", d, 0, 0},
             {"fc_norm_e.weight", d, 0, 0},
             {"blk.0.attn_norm.weight", d, 0, 0},
             {"blk.0.attn_q.weight", d, d, 1.0f / sqrtf((float)d)},
             {"blk.0.attn_k.weight", d, d, 1.0f / sqrtf((float)d)},
             {"blk.0.attn_v.weight", d, d, 1.0f / sqrtf((float)d)},
             {"blk.0.attn_output.weight", d, d, (echo ? 0.01f : 0.5f) / sqrtf((float)d)},
             {"blk.0.ffn_norm.weight", d, 0, 0},
             {"blk.0.ffn_gate.weight", d, (uint64_t)n_ff, 1.0f / sqrtf((float)d)},
             {"blk.0.ffn_up.weight", d, (uint64_t)n_ff, 1.0f / sqrtf((float)d)},
             {"blk.0.ffn_down.weight", (uint64_t)n_ff, d, (echo ? 0.01f : 0.5f) / sqrtf((float)n_ff)}};
    aero_status st = AERO_OK;
    uint64_t rng = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < sizeof t / sizeof t[0] && !st; i++) {
        uint64_t n = t[i].ne0 * (t[i].ne1 ? t[i].ne1 : 1), ne[2] = {t[i].ne0, t[i].ne1};
        float *v = malloc(sizeof(float) * n);
        if (!v) {
            st = aero_fail(err, AERO_ERR_NOMEM, "out of memory");
            break;
        }
        for (uint64_t j = 0; j < n; j++) {
            if (t[i].scale == 0) {
                v[j] = 1;
                continue;
            }
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            v[j] = t[i].scale * (float)(((double)(rng >> 11) / 9007199254740992.0) * 2 - 1) * 1.7320508f;
        }
        if (echo && i == 0)
            for (int r = 0; r < d; r++) v[(size_t)r * 2 * d + r] += 1; // output r reads feature r
        st = aero_gguf_add_tensor(w, t[i].name, AERO_DT_F32, t[i].ne1 ? 2 : 1, ne, v, err);
        free(v);
    }
    if (!st) st = aero_gguf_write(w, path, err);
    aero_gguf_writer_free(w);
    return st;
}
