// The forward pass on a CUDA GPU: the same batch semantics as forward.c's, layer by layer over the same
// stream/ units (invariant 1). Units that fit the VRAM budget are uploaded once and stay resident (the first
// in layer order); the others are acquired from stream/ each pass and copied from page-locked host memory into
// one of two VRAM slots on the copy stream, events ordering copy -> compute -> slot reuse, so the copy of unit
// l+1 runs while unit l computes. Every kernel is batch invariant (cuda_backend.h), so speculative greedy
// output equals plain greedy output; against the CPU the logits agree to a tolerance, not bitwise.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../kernels/cuda/cuda_backend.h"
#include "../stream/stream_internal.h"
#include "forward_cuda.h"
#include "gpu_prof.h"
#include "gpu_plan.h"

#define N_SLOTS AERO_GPU_SLOTS
#define HEAD_ROWS AERO_GPU_HEAD_ROWS
#define MAX_MATS 8

typedef struct {
    int64_t mats[MAX_MATS]; // the unit's weight matrices (tensor indices)
    int n_mats;
    uint64_t bytes; // their VRAM size, each rounded to 256
    bool vram;      // uploaded once
    bool host_ffn;  // an MoE layer: attention here, the FFN on the host (aero_ctx_moe_ffn_host)
} gpu_unit;

typedef struct aero_gpu {
    aero_cuda *cu;
    aero_cuda_batch *batch;
    int cap; // tokens per device pass (longer causal batches run in chunks)
    gpu_unit *units;
    int n_units;
    void **tdev;    // per tensor: its VRAM copy (resident units, norms, biases), else NULL
    uint64_t *toff; // per tensor of a streamed unit: offset inside a slot
    void *slot[N_SLOTS];
    uint64_t slot_bytes;
    aero_cuda_event *copied[N_SLOTS], *freed[N_SLOTS];
    bool slot_busy[N_SLOTS];
    int next_slot;
    uint16_t **kc, **vc; // per layer: [n_seq][n_ctx][kv_dim] F16
    float *x, *xb, *q, *k, *v, *att, *hb, *hb2, *lin, *logits, *inv_freq;
    float *h_x;              // pinned staging of the embedded rows (host path)
    int32_t *h_ids, *d_ids;  // pinned staging and device copy of the batch's token ids (GPU path)
    const void *embd_dev;    // the token embedding in VRAM (rows looked up on the GPU), or NULL
    aero_cuda_event *staged; // the last upload from h_x / h_ids is done: the next pass may refill them
    bool staged_pending;
    bool pending_add;       // xb holds a layer's last output not yet added to x (fused into the next norm)
    bool graphs;            // every unit resident (and not AERO_CUDA_GRAPHS=0): one-token passes replay a graph
    aero_cuda_graph *graph; // the layers and head of a one-token pass, for the batch shape graph_key
    uint64_t graph_key;
    gpu_prof prof;
    float *h_moe; // pinned staging of the residual rows an MoE layer's host FFN updates
    void *embd_raw;
    void **reg; // host buffers this context page-locked
    int n_reg;
    bool counted;     // in the model's n_gpu_ctx
    int head_users;   // draft heads holding VRAM above head_mark (aero_gpu_head_enter)
    size_t head_mark; // the arena's mark when the first of them entered
    char desc[320];
} aero_gpu;

static uint64_t r256(uint64_t b) { return (b + 255) & ~(uint64_t)255; }

static uint64_t tbytes(const aero_model *m, int64_t t) { return m->gguf.tensors[t].nbytes; }

// The unit's matrices the GPU computes with: a layer's seven (an MoE layer's four of attention), or the head.
static int unit_mats(const aero_model *m, int u, int64_t *out) {
    if (u == m->hp.n_layer) {
        out[0] = m->output;
        return 1;
    }
    const aero_layer_weights *w = &m->layers[u];
    int64_t t[7] = {w->wq, w->wk, w->wv, w->wo, w->w_gate, w->w_up, w->w_down};
    memcpy(out, t, sizeof t);
    return w->moe ? 4 : 7;
}

static aero_cuda_wmat wm(const aero_model *m, int64_t t, const void *data) {
    const aero_tensor_info *ti = &m->gguf.tensors[t];
    return (aero_cuda_wmat){.data = data,
                            .type = ti->type,
                            .cols = (int64_t)ti->ne[0],
                            .rows = (int64_t)ti->ne[1],
                            .row_bytes = aero_dtype_row_bytes(ti->type, ti->ne[0])};
}

// The small tensors a layer reads (norms, biases), -1 where absent.
static int small_tensors(const aero_model *m, int l, int64_t *out) {
    const aero_layer_weights *w = &m->layers[l];
    int64_t t[7] = {w->attn_norm, w->ffn_norm, w->bq, w->bk, w->bv, w->q_norm, w->k_norm};
    memcpy(out, t, sizeof t);
    return 7;
}

// Checks that every tensor has a GPU kernel before anything is allocated: a refusal names the tensor.
static aero_status check_model(const aero_model *m, aero_error *err) {
    for (int u = 0; u <= m->hp.n_layer; u++) {
        int64_t mats[MAX_MATS];
        int n = unit_mats(m, u, mats);
        for (int i = 0; i < n; i++) {
            if (mats[i] < 0)
                return aero_fail(err, AERO_ERR_UNSUPPORTED, "--device cuda: layer %d is not a llama/qwen2/qwen3 layer",
                                 u);
            aero_cuda_wmat w = wm(m, mats[i], (const void *)(uintptr_t)256);
            if (aero_cuda_wmat_check(&w, err))
                return aero_error_prefix(err, "--device cuda: tensor '%s': ", m->gguf.tensors[mats[i]].name);
        }
    }
    for (int l = 0; l <= m->hp.n_layer; l++) {
        int64_t t[7];
        int n = l < m->hp.n_layer ? small_tensors(m, l, t) : (t[0] = m->out_norm, 1);
        for (int i = 0; i < n; i++)
            if (t[i] >= 0 && m->gguf.tensors[t[i]].type != AERO_DT_F32)
                return aero_fail(err, AERO_ERR_UNSUPPORTED, "--device cuda: tensor '%s' is %s (F32 expected)",
                                 m->gguf.tensors[t[i]].name, aero_dtype_name(m->gguf.tensors[t[i]].type));
    }
    return AERO_OK;
}

// The small tensors' VRAM (norms, biases): part of the fixed bytes.
static uint64_t small_bytes(const aero_model *m) {
    uint64_t b = r256(tbytes(m, m->out_norm));
    for (int l = 0; l < m->hp.n_layer; l++) {
        int64_t t[7];
        int k = small_tensors(m, l, t);
        for (int i = 0; i < k; i++)
            if (t[i] >= 0) b += r256(tbytes(m, t[i]));
    }
    return b;
}

static aero_status dalloc(aero_gpu *g, uint64_t bytes, void *out, aero_error *err) {
    return aero_cuda_alloc(g->cu, bytes ? bytes : 1, (void **)out, err);
}

// Copies one host tensor into VRAM now (loading: resident units and small tensors).
static aero_status upload(aero_gpu *g, void *dev, const void *host, uint64_t bytes, aero_error *err) {
    if (aero_cuda_copy_h2d_async(g->cu, AERO_CUDA_STREAM_COPY, dev, host, bytes, err)) return err->code;
    return aero_cuda_sync(g->cu, err);
}

// Page-locks the host memory a streamed unit is copied from (a resident unit's buffer, or the ring) so that
// its copies are asynchronous; a failure only costs speed (pageable copies), so it is not an error.
static void pin(aero_gpu *g, void *p, uint64_t bytes) {
    aero_error e = {0};
    if (!p || !bytes) return;
    for (int i = 0; i < g->n_reg; i++)
        if (g->reg[i] == p) return;
    if (aero_cuda_host_register(p, bytes, &e)) return;
    g->reg[g->n_reg++] = p;
}

// VRAM the embedding leaves free in the arena (the plan's fixed bytes carry a reserve of this size; the
// embedding takes room beyond it, so a budget at the plan's minimum keeps the host path).
#define EMBD_RESERVE ((uint64_t)1 << 20)

// The token embedding's VRAM if the GPU can look its rows up (0 when it cannot, or when it is the tied head,
// which is in VRAM whenever the head is).
static uint64_t embd_vram_bytes(const aero_model *m) {
    aero_error e = {0};
    if (m->tok_embd < 0 || m->tok_embd == m->output) return 0;
    aero_cuda_wmat w = wm(m, m->tok_embd, (const void *)(uintptr_t)256);
    if (aero_cuda_wmat_check(&w, &e)) return 0;
    return r256(tbytes(m, m->tok_embd));
}

// The embedding's VRAM a context plans beside a draft head's layer (aero_gpu_head_embd_bytes), 0 without one.
static uint64_t head_embd_bytes(const aero_ctx *c) {
    const aero_model *m = c->m;
    if (!c->gpu_head_vram || m->tok_embd < 0) return 0;
    const aero_tensor_info *te = &m->gguf.tensors[m->tok_embd];
    return aero_gpu_head_embd_bytes(te->type, (int64_t)te->ne[0], te->nbytes, m->tok_embd == m->output);
}

// Puts the token embedding in VRAM when the budget has room left after the plan (the default budget makes room
// when every unit is resident), read by rows from stream/ in blocks; a tied head in VRAM is used as it is.
// Without room the rows stay on the host path (not an error); AERO_CUDA_HOST_EMBD=1 keeps them there (A/B runs).
static aero_status load_embedding(aero_ctx *c, aero_gpu *g, aero_error *err) {
    aero_model *m = c->m;
    const char *host = getenv("AERO_CUDA_HOST_EMBD");
    if (host && atoi(host)) return AERO_OK;
    if (g->tdev[m->tok_embd]) {
        g->embd_dev = g->tdev[m->tok_embd];
        return AERO_OK;
    }
    uint64_t bytes = embd_vram_bytes(m);
    uint64_t room = aero_cuda_arena_budget(g->cu) - aero_cuda_arena_mark(g->cu);
    // the draft head's room stays free; beside a head's layer the plan counted the embedding (head_embd_bytes)
    uint64_t reserve = head_embd_bytes(c) ? 0 : EMBD_RESERVE;
    if (!bytes || bytes + reserve + c->gpu_head_vram > room) return AERO_OK;
    const aero_tensor_info *te = &m->gguf.tensors[m->tok_embd];
    size_t rb = aero_dtype_row_bytes(te->type, te->ne[0]);
    int block = (int)((16u << 20) / rb) > 1 ? (int)((16u << 20) / rb) : 1, rows = (int)te->ne[1];
    char *buf = malloc((size_t)block * rb);
    int32_t *ids = malloc(sizeof(int32_t) * block);
    void *dev = NULL;
    aero_status st = !buf || !ids ? aero_fail(err, AERO_ERR_NOMEM, "out of memory") : dalloc(g, bytes, &dev, err);
    for (int r = 0; r < rows && !st; r += block) {
        int k = rows - r < block ? rows - r : block;
        for (int i = 0; i < k; i++) ids[i] = r + i;
        if (!(st = aero_stream_read_rows(m->stream, ids, k, buf, err)))
            st = upload(g, (char *)dev + (size_t)r * rb, buf, (size_t)k * rb, err);
    }
    free(buf);
    free(ids);
    if (!st) g->embd_dev = dev;
    return st;
}

// Chooses the VRAM-resident units (gpu_plan.c); gpu_mem 0: what the model needs, at most the free VRAM less 5%.
static aero_status plan(aero_ctx *c, aero_gpu *g, uint64_t gpu_mem, uint64_t *budget, aero_error *err) {
    aero_model *m = c->m;
    aero_gpu_plan p = {.n_units = g->n_units, .head_first = m->stream->params.head_hot || c->gpu_head_vram};
    p.unit_bytes = calloc(g->n_units, sizeof *p.unit_bytes);
    p.vram = calloc(g->n_units, sizeof *p.vram);
    p.host_ffn = calloc(g->n_units, sizeof *p.host_ffn);
    if (!p.unit_bytes || !p.vram || !p.host_ffn) {
        aero_gpu_plan_free(&p);
        return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    }
    for (int u = 0; u < g->n_units; u++) {
        gpu_unit *un = &g->units[u];
        un->n_mats = unit_mats(m, u, un->mats);
        un->host_ffn = p.host_ffn[u] = u < m->hp.n_layer && m->layers[u].moe;
        un->bytes = 0;
        for (int i = 0; i < un->n_mats; i++) un->bytes += r256(tbytes(m, un->mats[i]));
        p.unit_bytes[u] = un->bytes;
    }
    // a draft head's layer on the GPU (its weights, KV cells, activations) is planned like the context's own buffers
    p.fixed = aero_gpu_fixed_bytes(&m->hp, m->hp.n_vocab, c->n_ctx, c->n_seq, g->cap, small_bytes(m)) +
              c->gpu_head_vram + head_embd_bytes(c);
    aero_status st = AERO_OK;
    if (!gpu_mem) {
        aero_cuda_info info;
        uint64_t want;
        aero_gpu_plan_needs(&p, &want, NULL);
        if ((st = aero_cuda_device_info(0, &info, err))) {
            aero_error_prefix(err, "--device cuda: ");
            goto done;
        }
        uint64_t margin = info.free_vram / 20 > ((uint64_t)512 << 20) ? info.free_vram / 20 : ((uint64_t)512 << 20);
        uint64_t avail = info.free_vram > margin ? info.free_vram - margin : 0;
        gpu_mem = want < avail ? want : avail;
        uint64_t embd = embd_vram_bytes(m);
        // every unit resident: room for the embedding too (beside a head's layer the plan counted it already)
        if (embd && !head_embd_bytes(c) && want + embd + EMBD_RESERVE <= avail) gpu_mem = want + embd + EMBD_RESERVE;
        if (gpu_mem < p.min_need) {
            st = aero_fail(err, AERO_ERR_NOMEM,
                           "--device cuda: %s has %llu MiB free; this model and context need at "
                           "least %llu bytes on the GPU (KV cache, activations and two weight slots)",
                           info.name, (unsigned long long)(info.free_vram >> 20), (unsigned long long)p.min_need);
            goto done;
        }
    }
    if ((st = aero_gpu_plan_choose(&p, gpu_mem, err))) goto done;
    for (int u = 0; u < g->n_units; u++) g->units[u].vram = p.vram[u];
    g->slot_bytes = p.slot_bytes;
    *budget = p.budget;
done:
    if (st == AERO_ERR_NOMEM && c->gpu_head_vram)
        aero_error_prefix(err,
                          "with a draft head's layer on the GPU (%.1f MB of the VRAM; AERO_DRAFT_HEAD_HOST=1 "
                          "keeps it on the host): ",
                          c->gpu_head_vram / 1e6);
    aero_gpu_plan_free(&p);
    return st;
}

// The VRAM-resident units become external to stream/ (neither held in host memory nor read per pass), so that
// --mem holds the units the GPU streams: three tiers, VRAM, pinned host memory, disk, from one plan. One GPU plan
// per model: a second context must plan the same units.
static aero_status share_plan_with_stream(aero_ctx *c, aero_gpu *g, aero_error *err) {
    aero_model *m = c->m;
    bool *ext = calloc(g->n_units, sizeof *ext), same = true, any = false;
    if (!ext) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    for (int u = 0; u < g->n_units; u++) {
        ext[u] = g->units[u].vram;
        same &= ext[u] == aero_stream_unit_external(m->stream, u);
        any |= aero_stream_unit_external(m->stream, u);
    }
    aero_status st = AERO_OK;
    if (!same && any && m->n_gpu_ctx > 0)
        st = aero_fail(err, AERO_ERR_INVALID,
                       "--device cuda: another context of this model planned other VRAM-resident layers "
                       "(give every context of a model the same --gpu-mem and context size)");
    else if (!same && aero_stream_reopen(&m->stream, ext, false, err))
        st = aero_error_prefix(err, "--device cuda: host plan beside the VRAM plan: ");
    free(ext);
    return st;
}

// Uploads the resident units (read once from the file) and the small tensors, lays out the
// streamed units' tensors inside a slot, and page-locks the host memory they are copied from.
static aero_status load_weights(aero_ctx *c, aero_gpu *g, aero_error *err) {
    aero_model *m = c->m;
    aero_stream *s = m->stream;
    for (int l = 0; l <= m->hp.n_layer; l++) {
        int64_t t[7];
        int k = l < m->hp.n_layer ? small_tensors(m, l, t) : (t[0] = m->out_norm, 1);
        for (int i = 0; i < k; i++) {
            if (t[i] < 0 || g->tdev[t[i]]) continue;
            const void *h = aero_stream_global(s, t[i]);
            if (!h) return aero_fail(err, AERO_ERR_INVALID, "tensor '%s' is not resident", m->gguf.tensors[t[i]].name);
            if (dalloc(g, tbytes(m, t[i]), &g->tdev[t[i]], err) || upload(g, g->tdev[t[i]], h, tbytes(m, t[i]), err))
                return err->code;
        }
    }
    for (int u = 0; u < g->n_units; u++) {
        gpu_unit *un = &g->units[u];
        if (!un->vram) {
            uint64_t off = 0;
            for (int i = 0; i < un->n_mats; i++) {
                g->toff[un->mats[i]] = off;
                off += r256(tbytes(m, un->mats[i]));
            }
            if (s->units[u].resident) pin(g, s->units[u].mem, s->units[u].bytes);
            else pin(g, s->ring, s->ring_bytes);
            continue;
        }
        if (aero_stream_load_unit(s, u, err)) return err->code; // external to stream/: read once, here
        aero_status st = AERO_OK;
        for (int i = 0; i < un->n_mats && !st; i++) {
            int64_t t = un->mats[i];
            if (g->tdev[t]) continue; // tied: the same tensor twice
            const void *h;
            if (!(st = aero_stream_tensor_checked(s, t, &h, err)) && !(st = dalloc(g, tbytes(m, t), &g->tdev[t], err)))
                st = upload(g, g->tdev[t], h, tbytes(m, t), err);
        }
        aero_stream_unload_unit(s, u);
        if (st) return st;
    }
    return AERO_OK;
}

aero_status aero_gpu_ctx_init(aero_ctx *c, uint64_t gpu_mem, aero_error *err) {
    aero_model *m = c->m;
    const aero_hparams *hp = &m->hp;
    if (aero_cuda_device_count() <= 0)
        return aero_fail(err, AERO_ERR_UNSUPPORTED, "--device cuda: no CUDA device found (use --device cpu)");
    if (check_model(m, err)) return err->code;
    if (c->kv.type_k != AERO_DT_F16 || c->kv.type_v != AERO_DT_F16)
        return aero_fail(err, AERO_ERR_UNSUPPORTED,
                         "--device cuda keeps the KV cache in F16 in VRAM: K %s / V %s caches (-ctk/-ctv, --kv-f32) "
                         "run on the CPU only (--device cpu)",
                         aero_dtype_name(c->kv.type_k), aero_dtype_name(c->kv.type_v));
    aero_gpu *g = calloc(1, sizeof *g);
    if (!g) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    c->gpu = g;
    g->cap = aero_gpu_pass_cap(hp, c->n_tile);
    g->n_units = hp->n_layer + 1;
    size_t nt = m->gguf.n_tensors;
    g->units = calloc(g->n_units, sizeof *g->units);
    g->tdev = calloc(nt, sizeof *g->tdev);
    g->toff = calloc(nt, sizeof *g->toff);
    g->reg = calloc(g->n_units + 1, sizeof *g->reg);
    g->kc = calloc(hp->n_layer, sizeof *g->kc);
    g->vc = calloc(hp->n_layer, sizeof *g->vc);
    const aero_tensor_info *te = &m->gguf.tensors[m->tok_embd];
    g->embd_raw = malloc((size_t)g->cap * aero_dtype_row_bytes(te->type, te->ne[0]));
    if (!g->units || !g->tdev || !g->toff || !g->reg || !g->kc || !g->vc || !g->embd_raw) {
        aero_fail(err, AERO_ERR_NOMEM, "out of memory");
        goto fail;
    }
    uint64_t budget = 0;
    if (plan(c, g, gpu_mem, &budget, err) || share_plan_with_stream(c, g, err) ||
        aero_cuda_init(&g->cu, 0, budget, err))
        goto fail;
    for (int u = 0; u < g->n_units; u++) // which activation forms the matmuls read
        for (int i = 0; i < g->units[u].n_mats; i++)
            aero_cuda_act_f16_note(g->cu, m->gguf.tensors[g->units[u].mats[i]].type);
    uint64_t d = hp->n_embd, qd = (uint64_t)hp->n_head * hp->head_dim, kvd = c->kv_dim, n = g->cap;
    uint64_t ff = hp->n_ff > 0 ? hp->n_ff : 1; // an MoE model's FFN may be all experts (on the host)
    uint64_t kv_bytes = (uint64_t)c->n_seq * c->n_ctx * kvd * 2;
    for (int l = 0; l < hp->n_layer; l++)
        if (dalloc(g, kv_bytes, &g->kc[l], err) || dalloc(g, kv_bytes, &g->vc[l], err)) goto fail;
    if (dalloc(g, n * d * 4, &g->x, err) || dalloc(g, n * (d > qd ? d : qd) * 4, &g->xb, err) ||
        dalloc(g, n * qd * 4, &g->q, err) || dalloc(g, n * kvd * 4, &g->k, err) || dalloc(g, n * kvd * 4, &g->v, err) ||
        dalloc(g, n * qd * 4, &g->att, err) || dalloc(g, n * ff * 4, &g->hb, err) ||
        dalloc(g, n * ff * 4, &g->hb2, err) || dalloc(g, n * d * 4, &g->lin, err) ||
        dalloc(g, (uint64_t)HEAD_ROWS * hp->n_vocab * 4, &g->logits, err) ||
        dalloc(g, (uint64_t)hp->rope_dim / 2 * 4 + 4, &g->inv_freq, err) ||
        aero_cuda_batch_new(g->cu, g->cap, c->n_seq, c->n_ctx, hp->n_head, hp->head_dim, &g->batch, err) ||
        aero_cuda_host_alloc(n * d * 4, (void **)&g->h_x, err) ||
        aero_cuda_host_alloc(n * d * 4, (void **)&g->h_moe, err) ||
        aero_cuda_host_alloc(n * 4, (void **)&g->h_ids, err) || dalloc(g, n * 4, &g->d_ids, err) ||
        aero_cuda_event_new(g->cu, &g->staged, err))
        goto fail;
    if (hp->rope_dim >= 2 && upload(g, g->inv_freq, m->rope_inv_freq, (uint64_t)hp->rope_dim / 2 * 4, err)) goto fail;
    for (int k = 0; k < N_SLOTS && g->slot_bytes; k++)
        if (dalloc(g, g->slot_bytes, &g->slot[k], err) || aero_cuda_event_new(g->cu, &g->copied[k], err) ||
            aero_cuda_event_new(g->cu, &g->freed[k], err))
            goto fail;
    if (load_weights(c, g, err) || load_embedding(c, g, err)) goto fail;
    prof_init(&g->prof, g->cu);
    const char *graphs = getenv("AERO_CUDA_GRAPHS"); // on unless AERO_CUDA_GRAPHS=0
    g->graphs = !(graphs && !strcmp(graphs, "0"));
    for (int u = 0; u < g->n_units; u++) g->graphs &= g->units[u].vram && !g->units[u].host_ffn;
    m->n_gpu_ctx++;
    g->counted = true;
    int n_vram = 0;
    uint64_t vram_w = 0;
    for (int u = 0; u < g->n_units; u++)
        if (g->units[u].vram) n_vram++, vram_w += g->units[u].bytes;
    const aero_cuda_info *info = aero_cuda_get_info(g->cu);
    int len = snprintf(g->desc, sizeof g->desc,
                       "device: %s (%.1f GB free), VRAM budget %.1f MB: %d of %d units "
                       "resident (%.1f MB of weights)",
                       info->name, info->free_vram / 1e9, budget / 1e6, n_vram, g->n_units, vram_w / 1e6);
    if (g->slot_bytes && len > 0 && len < (int)sizeof g->desc)
        snprintf(g->desc + len, sizeof g->desc - len,
                 ", %d streamed through 2 slots of %.1f MB from %d pinned host "
                 "buffers",
                 g->n_units - n_vram, g->slot_bytes / 1e6, g->n_reg);
    len = (int)strlen(g->desc);
    if (g->embd_dev && len < (int)sizeof g->desc)
        snprintf(g->desc + len, sizeof g->desc - len, ", embedding rows looked up on the GPU");
    len = (int)strlen(g->desc);
    if (c->gpu_head_vram && len < (int)sizeof g->desc)
        snprintf(g->desc + len, sizeof g->desc - len, ", %.1f MB kept for a draft head's layer",
                 c->gpu_head_vram / 1e6);
    return AERO_OK;
fail:
    aero_gpu_ctx_free(c);
    return err->code;
}

void aero_gpu_ctx_free(aero_ctx *c) {
    aero_gpu *g = c->gpu;
    if (!g) return;
    if (g->counted) c->m->n_gpu_ctx--;
    if (g->cu) {
        aero_error e = {0};
        aero_cuda_sync(g->cu, &e);
    }
    prof_free(&g->prof);
    aero_cuda_graph_free(g->graph);
    aero_cuda_event_free(g->staged);
    aero_cuda_host_free(g->h_ids);
    for (int i = 0; i < g->n_reg; i++) aero_cuda_host_unregister(g->reg[i]);
    for (int k = 0; k < N_SLOTS; k++) {
        aero_cuda_event_free(g->copied[k]);
        aero_cuda_event_free(g->freed[k]);
    }
    aero_cuda_batch_free(g->batch);
    aero_cuda_host_free(g->h_x);
    aero_cuda_host_free(g->h_moe);
    aero_cuda_free(g->cu);
    free(g->units);
    free(g->tdev);
    free(g->toff);
    free(g->reg);
    free(g->kc);
    free(g->vc);
    free(g->embd_raw);
    free(g);
    c->gpu = NULL;
}

const char *aero_gpu_describe(const aero_ctx *c) { return c->gpu ? ((const aero_gpu *)c->gpu)->desc : "device: cpu"; }

// Activations for the matmuls of one input (the attention output; the norms and swiglu prepare their own).
static aero_status prep(aero_gpu *g, const float *x, int n, int cols, aero_cuda_act *a, aero_error *err) {
    if (cols % 32) { // only dense weights have such rows; they read x itself
        *a = (aero_cuda_act){.x = x, .n = n, .cols = cols};
        return AERO_OK;
    }
    prof_op(&g->prof, OP_PREP);
    return aero_cuda_act_prepare(g->cu, x, n, cols, a, err);
}

// cls: the matrix's role for AERO_CUDA_PROFILE (OP_MM_*, OP_MATMUL for the others).
static aero_status matmul(aero_gpu *g, int cls, const aero_cuda_wmat *w, const aero_cuda_act *a, float *y,
                          aero_error *err) {
    prof_op(&g->prof, cls);
    return aero_cuda_matmul_act(g->cu, w, a, y, err);
}

// Several matrices of one input (q/k/v, gate/up): one launch for all when the backend can (same bits as apart).
static aero_status matmul_many(aero_gpu *g, int cls, const aero_cuda_wmat *const w[], float *const y[], int count,
                               const aero_cuda_act *a, aero_error *err) {
    prof_op(&g->prof, cls);
    return aero_cuda_matmul_many(g->cu, w, y, count, a, err);
}

// The residual add a layer left pending (x += xb), alone: before an MoE layer's host FFN and before the head.
static aero_status flush_add(aero_gpu *g, int n, int d, aero_error *err) {
    if (!g->pending_add) return AERO_OK;
    g->pending_add = false;
    prof_op(&g->prof, OP_ELEM);
    return aero_cuda_add(g->cu, g->x, g->xb, (size_t)n * d, err);
}

// xb = rmsnorm(x) with the pending residual add folded in (x += xb first) and the matmul input prepared.
static aero_status norm_in(aero_gpu *g, const float *w, int n, int d, float eps, aero_cuda_act *a, aero_error *err) {
    prof_op(&g->prof, OP_NORM);
    const float *add = g->pending_add ? g->xb : NULL;
    g->pending_add = false;
    return aero_cuda_rmsnorm_act(g->cu, g->xb, g->x, add, w, n, d, eps, a, err);
}

// Where a unit's matrices are this pass: resident copies, or a slot that the copy stream fills now.
static aero_status unit_in(aero_ctx *c, aero_gpu *g, int u, int *slot, aero_error *err) {
    gpu_unit *un = &g->units[u];
    *slot = -1;
    if (un->vram) return AERO_OK;
    aero_stream *s = c->m->stream;
    int k = g->next_slot;
    g->next_slot = (k + 1) % N_SLOTS;
    if (g->slot_busy[k] && aero_cuda_wait(g->cu, AERO_CUDA_STREAM_COPY, g->freed[k], err)) return err->code;
    for (int i = 0; i < un->n_mats; i++) {
        int64_t t = un->mats[i];
        const void *h;
        if (aero_stream_tensor_checked(s, t, &h, err) ||
            aero_cuda_copy_h2d_async(g->cu, AERO_CUDA_STREAM_COPY, (char *)g->slot[k] + g->toff[t], h, tbytes(c->m, t),
                                     err))
            return err->code;
    }
    prof_op(&g->prof, OP_WAIT);
    if (aero_cuda_record(g->cu, AERO_CUDA_STREAM_COPY, g->copied[k], err) ||
        aero_cuda_wait(g->cu, AERO_CUDA_STREAM_COMPUTE, g->copied[k], err))
        return err->code;
    *slot = k;
    return AERO_OK;
}

// After the unit's kernels are queued: the slot is free once they ran; the host buffer once the copy ran
// (stream/ may refill it after release).
static aero_status unit_out(aero_gpu *g, int slot, aero_error *err) {
    if (slot < 0) return AERO_OK;
    if (aero_cuda_record(g->cu, AERO_CUDA_STREAM_COMPUTE, g->freed[slot], err)) return err->code;
    g->slot_busy[slot] = true;
    return aero_cuda_event_sync(g->copied[slot], err);
}

static aero_cuda_wmat mat(aero_ctx *c, aero_gpu *g, int64_t t, int slot) {
    return wm(c->m, t, slot < 0 ? g->tdev[t] : (const void *)((char *)g->slot[slot] + g->toff[t]));
}

// An MoE layer's FFN runs on the host, where its experts are (resident, or read by the expert cache): the
// residual rows go down and come back, n x n_embd floats each way, and the routing is the CPU's own.
static aero_status moe_on_host(aero_ctx *c, aero_gpu *g, int l, int n, aero_error *err) {
    size_t bytes = sizeof(float) * (size_t)n * c->m->hp.n_embd;
    prof_op(&g->prof, OP_COPY);
    if (aero_cuda_copy_d2h(g->cu, g->h_moe, g->x, bytes, err) || aero_ctx_moe_ffn_host(c, l, g->h_moe, n, err) ||
        aero_cuda_copy_h2d_async(g->cu, AERO_CUDA_STREAM_COMPUTE, g->x, g->h_moe, bytes, err))
        return err->code;
    return AERO_OK;
}

// q/k/v after their matmuls: biases, per-head norms (qwen3), rope, and the K/V rows into the layer's cache. Without
// per-head norms the biases, the rope and the store are one launch; with them the ops run one by one.
static aero_status attn_inputs(aero_ctx *c, aero_gpu *g, int l, int n, aero_error *err) {
    const aero_model *m = c->m;
    const aero_hparams *hp = &m->hp;
    const aero_layer_weights *w = &m->layers[l];
    aero_cuda *cu = g->cu;
    int hd = hp->head_dim, qd = hp->n_head * hd, kvd = c->kv_dim;
    bool norms = w->q_norm >= 0 || w->k_norm >= 0, bias = w->bq >= 0;
    prof_op(&g->prof, OP_ROPE);
    if (norms) {
        if (bias && (aero_cuda_add_bias(cu, g->q, g->tdev[w->bq], n, qd, err) ||
                     aero_cuda_add_bias(cu, g->k, g->tdev[w->bk], n, kvd, err) ||
                     aero_cuda_add_bias(cu, g->v, g->tdev[w->bv], n, kvd, err)))
            return err->code;
        if (w->q_norm >= 0 &&
            aero_cuda_rmsnorm(cu, g->q, g->q, g->tdev[w->q_norm], n * hp->n_head, hd, hp->norm_eps, err))
            return err->code;
        if (w->k_norm >= 0 &&
            aero_cuda_rmsnorm(cu, g->k, g->k, g->tdev[w->k_norm], n * hp->n_head_kv, hd, hp->norm_eps, err))
            return err->code;
    }
    aero_cuda_qkv a = {.q = g->q,
                       .k = g->k,
                       .v = g->v,
                       .bq = bias && !norms ? g->tdev[w->bq] : NULL,
                       .bk = bias && !norms ? g->tdev[w->bk] : NULL,
                       .bv = bias && !norms ? g->tdev[w->bv] : NULL,
                       .n_head = hp->n_head,
                       .n_head_kv = hp->n_head_kv,
                       .head_dim = hd,
                       .rope_dim = hp->rope_dim,
                       .inv_freq = g->inv_freq,
                       .neox = m->rope_neox,
                       .k_cache = g->kc[l],
                       .v_cache = g->vc[l]};
    return aero_cuda_rope_kv_store(g->batch, &a, err);
}

// One layer over the n tokens of the device batch. Its last output stays in xb (pending_add): the next layer's
// first norm adds it to x in the same launch.
static aero_status layer(aero_ctx *c, aero_gpu *g, int l, int slot, int n, aero_error *err) {
    aero_model *m = c->m;
    const aero_hparams *hp = &m->hp;
    const aero_layer_weights *w = &m->layers[l];
    int d = hp->n_embd, qd = hp->n_head * hp->head_dim;
    aero_cuda_wmat wq = mat(c, g, w->wq, slot), wk = mat(c, g, w->wk, slot), wv = mat(c, g, w->wv, slot),
                   wo = mat(c, g, w->wo, slot);
    aero_cuda_act a;
    const aero_cuda_wmat *qkv[3] = {&wq, &wk, &wv};
    float *const qkv_out[3] = {g->q, g->k, g->v};
    if (norm_in(g, g->tdev[w->attn_norm], n, d, hp->norm_eps, &a, err) ||
        matmul_many(g, OP_MM_QKV, qkv, qkv_out, 3, &a, err) || attn_inputs(c, g, l, n, err))
        return err->code;
    prof_op(&g->prof, OP_ATTN);
    if (aero_cuda_attention(g->batch, g->q, g->kc[l], g->vc[l], hp->n_head, hp->n_head_kv, hp->head_dim, g->att, err) ||
        prep(g, g->att, n, qd, &a, err) || matmul(g, OP_MM_O, &wo, &a, g->xb, err))
        return err->code;
    g->pending_add = true;
    if (w->moe) return flush_add(g, n, d, err) || moe_on_host(c, g, l, n, err) ? err->code : AERO_OK;
    aero_cuda_wmat wg = mat(c, g, w->w_gate, slot), wu = mat(c, g, w->w_up, slot), wd = mat(c, g, w->w_down, slot);
    const aero_cuda_wmat *gu[2] = {&wg, &wu};
    float *const gu_out[2] = {g->hb, g->hb2};
    if (norm_in(g, g->tdev[w->ffn_norm], n, d, hp->norm_eps, &a, err) ||
        matmul_many(g, OP_MM_GU, gu, gu_out, 2, &a, err))
        return err->code;
    prof_op(&g->prof, OP_ACT);
    if (aero_cuda_swiglu_act(g->cu, g->hb, g->hb, g->hb2, n, hp->n_ff, &a, err) ||
        matmul(g, OP_MM_DOWN, &wd, &a, g->xb, err))
        return err->code;
    g->pending_add = true;
    return AERO_OK;
}

// Final norm of the wanted rows and the vocabulary projection, HEAD_ROWS rows at a time, logits to the host
// (to_host false: the first block's logits stay in g->logits).
static aero_status head(aero_ctx *c, aero_gpu *g, int slot, int n, const uint8_t *want, float *logits, bool to_host,
                        aero_error *err) {
    aero_model *m = c->m;
    const aero_hparams *hp = &m->hp;
    int d = hp->n_embd, nw = 0;
    if (flush_add(g, n, d, err)) return err->code;
    float *src = g->x;
    if (want) {
        for (int i = 0; i < n; i++) nw += want[i] != 0;
        if (nw == n) want = NULL; // every row: no gather
    }
    if (want) {
        nw = 0;
        prof_op(&g->prof, OP_COPY);
        for (int i = 0; i < n; i++)
            if (want[i] &&
                aero_cuda_copy_d2d(g->cu, g->lin + (size_t)nw++ * d, g->x + (size_t)i * d, sizeof(float) * d, err))
                return err->code;
        src = g->lin;
    } else {
        nw = n;
    }
    if (!nw) return AERO_OK;
    aero_cuda_wmat wo = mat(c, g, m->output, slot);
    aero_cuda_act a;
    prof_op(&g->prof, OP_ELEM);
    // one block of rows: the norm prepares the matmul input itself
    if (aero_cuda_rmsnorm_act(g->cu, g->lin, src, NULL, g->tdev[m->out_norm], nw, d, hp->norm_eps,
                              nw <= HEAD_ROWS ? &a : NULL, err))
        return err->code;
    for (int r = 0; r < nw; r += HEAD_ROWS) {
        int k = nw - r < HEAD_ROWS ? nw - r : HEAD_ROWS;
        if ((nw > HEAD_ROWS && prep(g, g->lin + (size_t)r * d, k, d, &a, err)) ||
            matmul(g, OP_MATMUL, &wo, &a, g->logits, err))
            return err->code;
        if (!to_host) break; // a graph capture: one block of rows, copied out after the replay
        prof_op(&g->prof, OP_COPY);
        if (aero_cuda_copy_d2h(g->cu, logits + (size_t)r * hp->n_vocab, g->logits, sizeof(float) * k * hp->n_vocab,
                               err))
            return err->code;
    }
    return AERO_OK;
}

// The batch's embedded rows into x: looked up on the GPU when the embedding is in VRAM (only the token ids
// cross PCIe), else read by stream/ and dequantized on the host as on the CPU. The staging buffers are refilled
// once the previous pass's upload from them is done (an event, not a full sync).
static aero_status embed(aero_ctx *c, aero_gpu *g, const int32_t *tokens, int n, aero_error *err) {
    aero_model *m = c->m;
    const aero_tensor_info *te = &m->gguf.tensors[m->tok_embd];
    int d = m->hp.n_embd;
    if (g->staged_pending && aero_cuda_event_sync(g->staged, err)) return err->code;
    g->staged_pending = false;
    if (g->embd_dev) {
        for (int i = 0; i < n; i++) {
            if (tokens[i] < 0 || (uint64_t)tokens[i] >= te->ne[1])
                return aero_fail(err, AERO_ERR_INVALID, "token id %d out of range [0, %llu)", tokens[i],
                                 (unsigned long long)te->ne[1]);
            g->h_ids[i] = tokens[i];
        }
        aero_cuda_wmat w = wm(m, m->tok_embd, g->embd_dev);
        prof_op(&g->prof, OP_COPY);
        if (aero_cuda_copy_h2d_async(g->cu, AERO_CUDA_STREAM_COMPUTE, g->d_ids, g->h_ids, sizeof(int32_t) * n, err))
            return err->code;
        prof_op(&g->prof, OP_ELEM);
        if (aero_cuda_get_rows(g->cu, &w, g->d_ids, n, g->x, err)) return err->code;
    } else {
        size_t rb = aero_dtype_row_bytes(te->type, te->ne[0]);
        if (aero_stream_read_rows(m->stream, tokens, n, g->embd_raw, err)) return err->code;
        for (int i = 0; i < n; i++)
            aero_dequantize_row(te->type, (const char *)g->embd_raw + (size_t)i * rb, g->h_x + (size_t)i * d, d);
        prof_op(&g->prof, OP_COPY);
        if (aero_cuda_copy_h2d_async(g->cu, AERO_CUDA_STREAM_COMPUTE, g->x, g->h_x, sizeof(float) * n * d, err))
            return err->code;
    }
    if (aero_cuda_record(g->cu, AERO_CUDA_STREAM_COMPUTE, g->staged, err)) return err->code;
    g->staged_pending = true;
    return AERO_OK;
}

// The units of a pass in order: each layer, then the head (when there are logits).
static aero_status units(aero_ctx *c, aero_gpu *g, int n, const uint8_t *want, float *logits, bool to_host,
                         aero_error *err) {
    aero_stream *s = c->m->stream;
    int n_layer = c->m->hp.n_layer;
    for (int u = 0; u < g->n_units; u++) {
        int slot;
        if (aero_stream_acquire(s, u, err)) return err->code;
        aero_status st = unit_in(c, g, u, &slot, err);
        if (!st)
            st = u < n_layer ? layer(c, g, u, slot, n, err)
                             : (logits ? head(c, g, slot, n, want, logits, to_host, err) : AERO_OK);
        if (!st) st = unit_out(g, slot, err);
        aero_stream_release(s, u);
        if (st) return st;
        prof_phase(&g->prof, u < n_layer ? PH_LAYERS : PH_HEAD);
    }
    return AERO_OK;
}

// A one-token pass of an all-resident model as a CUDA graph: the layers and the head are recorded once and
// replayed (captured again when the batch's host-side shape changes: its attention segments, every 256 keys);
// the embedding, the batch upload and the logits copy stay outside, and every kernel reads positions, slots
// and lengths from device memory. A capture that fails turns graphs off and runs the pass plainly.
static aero_status graph_pass(aero_ctx *c, aero_gpu *g, float *logits, aero_error *err) {
    uint64_t key = aero_cuda_batch_shape_key(g->batch);
    if (!g->graph || key != g->graph_key) {
        aero_cuda_graph_free(g->graph);
        g->graph = NULL;
        aero_error e = {0};
        aero_status st = aero_cuda_capture_begin(g->cu, &e), st_end = AERO_OK;
        if (!st) {
            st = units(c, g, 1, NULL, logits, false, err);
            st_end = aero_cuda_capture_end(g->cu, &g->graph, &e);
            if (st) return st;
        }
        if (st || st_end) { // nothing recorded ran: the plain pass, now and from now on
            fprintf(stderr, "cuda: no graph (%s): plain launches\n", e.msg);
            g->graphs = false;
            g->pending_add = false;
            return units(c, g, 1, NULL, logits, true, err);
        }
        g->graph_key = key;
    } else {
        for (int u = 0; u < g->n_units; u++) { // stream/'s pass accounting, as a plain pass does it
            if (aero_stream_acquire(c->m->stream, u, err)) return err->code;
            aero_stream_release(c->m->stream, u);
        }
    }
    if (aero_cuda_graph_launch(g->cu, g->graph, err)) return err->code;
    return aero_cuda_copy_d2h(g->cu, logits, g->logits, sizeof(float) * c->m->hp.n_vocab, err);
}

// One device pass over tokens [first, first + n) of the batch: embeddings, every layer, the head. A pass with
// logits waits for them (and reports any device error); one without returns once queued, so the next pass's host
// work overlaps this one's kernels (errors surface at the next wait). *out_rows: logits rows written.
static aero_status pass(aero_ctx *c, aero_gpu *g, const aero_batch *b, int first, int n, const int *cell,
                        const int32_t *base, float *logits, int *out_rows, aero_error *err) {
    const uint8_t *want = b->want_logits ? b->want_logits + first : NULL;
    *out_rows = 0;
    g->pending_add = false;
    prof_pass_begin(&g->prof);
    if (embed(c, g, b->tokens + first, n, err)) return err->code;
    prof_phase(&g->prof, PH_EMBED);
    prof_op(&g->prof, OP_COPY);
    if (aero_cuda_batch_set(g->batch, n, b->pos + first, b->seq ? b->seq + first : NULL, cell + first, b->mask, base,
                            err))
        return err->code;
    prof_phase(&g->prof, PH_BATCH);
    bool graph = g->graphs && n == 1 && logits && (!want || want[0]) && !g->prof.every;
    aero_status st = graph ? graph_pass(c, g, logits, err) : units(c, g, n, want, logits, true, err);
    if (st) return st;
    if (logits) {
        int nw = n;
        if (want) {
            nw = 0;
            for (int i = 0; i < n; i++) nw += want[i] != 0;
        }
        *out_rows = nw;
    }
    prof_mark_end(&g->prof);
    st = logits || g->prof.every ? aero_cuda_sync(g->cu, err) : AERO_OK;
    prof_phase(&g->prof, PH_SYNC);
    if (!st) prof_pass_end(&g->prof, n);
    return st;
}

aero_status aero_gpu_decode(aero_ctx *c, const aero_batch *b, const int *cell, const int *base, float *logits,
                            aero_error *err) {
    aero_gpu *g = c->gpu;
    if (b->mask && b->n > g->cap)
        return aero_fail(err, AERO_ERR_RANGE, "--device cuda: a masked batch of %d tokens exceeds %d", b->n, g->cap);
    int32_t *cbase = malloc(sizeof(int32_t) * c->n_seq);
    if (!cbase) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    for (int s = 0; s < c->n_seq; s++) cbase[s] = base[s];
    aero_status st = AERO_OK;
    size_t row = 0;
    // a long causal batch runs in chunks: each chunk sees the cache the earlier chunks wrote
    for (int first = 0; first < b->n && !st; first += g->cap) {
        int n = b->n - first < g->cap ? b->n - first : g->cap, rows = 0;
        st = pass(c, g, b, first, n, cell, cbase, logits ? logits + row * c->m->hp.n_vocab : NULL, &rows, err);
        if (!st && c->hidden_users > 0) st = aero_gpu_keep_hidden(c, first, n, err);
        row += rows;
        for (int i = first; i < first + n; i++) cbase[b->seq ? b->seq[i] : 0]++;
    }
    free(cbase);
    return st;
}

void aero_gpu_kv_keep(aero_ctx *c, int seq, int base, const int *keep, int n_keep) {
    aero_gpu *g = c->gpu;
    if (seq < 0 || seq >= c->n_seq || base < 0 || base > c->kv.len[seq]) return;
    size_t rb = (size_t)c->kv_dim * 2;
    aero_error e = {0};
    int kept = 0;
    for (int i = 0; i < n_keep; i++) {
        int from = base + keep[i];
        if (from >= c->kv.len[seq] || (i > 0 && keep[i] <= keep[i - 1])) break;
        int to = base + kept;
        if (from != to)
            for (int l = 0; l < c->m->hp.n_layer; l++) {
                size_t f = ((size_t)seq * c->n_ctx + from) * rb, t = ((size_t)seq * c->n_ctx + to) * rb;
                aero_cuda_copy_d2d(g->cu, (char *)g->kc[l] + t, (char *)g->kc[l] + f, rb, &e);
                aero_cuda_copy_d2d(g->cu, (char *)g->vc[l] + t, (char *)g->vc[l] + f, rb, &e);
            }
        kept++;
    }
}

// Residual rows back to the host for a draft head (forward_cuda.h).
aero_status aero_gpu_keep_hidden(aero_ctx *c, int first, int n, aero_error *err) {
    aero_gpu *g = c->gpu;
    size_t d = (size_t)c->m->hp.n_embd;
    if (first + n > c->cap)
        return aero_fail(err, AERO_ERR_RANGE, "hidden states: %d rows exceed %d", first + n, c->cap);
    return aero_cuda_copy_d2h(g->cu, c->x + (size_t)first * d, g->x, sizeof(float) * n * d, err);
}

// The output head over k <= cap host rows already in g->lin, HEAD_ROWS rows at a time, logits to the host.
static aero_status project_rows(aero_ctx *c, aero_gpu *g, const aero_cuda_wmat *wo, int k, float *logits,
                                aero_error *err) {
    int d = c->m->hp.n_embd, nv = c->m->hp.n_vocab;
    for (int r = 0; r < k; r += HEAD_ROWS) {
        int rows = k - r < HEAD_ROWS ? k - r : HEAD_ROWS;
        aero_cuda_act a;
        if (prep(g, g->lin + (size_t)r * d, rows, d, &a, err) || aero_cuda_matmul_act(g->cu, wo, &a, g->logits, err) ||
            aero_cuda_copy_d2h(g->cu, logits + (size_t)r * nv, g->logits, sizeof(float) * rows * nv, err))
            return err->code;
    }
    return AERO_OK;
}

// Gives back the output head unit a draft head's projection took as a pass takes it (stream acquire, unit_in),
// whatever st the work ended with; the first error wins.
static aero_status out_head_leave(aero_ctx *c, aero_gpu *g, int slot, aero_status st, aero_error *err) {
    aero_error e2 = {0};
    aero_status st2 = slot >= 0 ? unit_out(g, slot, &e2) : AERO_OK;
    aero_stream_release(c->m->stream, c->m->hp.n_layer);
    if (!st && st2) {
        *err = e2;
        st = st2;
    }
    return st;
}

// A draft head's logits through the device's output head (forward_cuda.h).
aero_status aero_gpu_project(aero_ctx *c, const float *h, int n, float *logits, aero_error *err) {
    aero_gpu *g = c->gpu;
    int d = c->m->hp.n_embd, u = c->m->hp.n_layer, slot = -1;
    if (n <= 0) return AERO_OK;
    // after the sync g->h_x and g->lin are free
    if (aero_cuda_sync(g->cu, err) || aero_stream_acquire(c->m->stream, u, err)) return err->code;
    aero_status st = unit_in(c, g, u, &slot, err);
    aero_cuda_wmat wo = mat(c, g, c->m->output, slot);
    for (int r = 0; r < n && !st; r += g->cap) { // the staging buffers hold cap rows
        int k = n - r < g->cap ? n - r : g->cap;
        memcpy(g->h_x, h + (size_t)r * d, sizeof(float) * k * d);
        st = aero_cuda_copy_h2d_async(g->cu, AERO_CUDA_STREAM_COMPUTE, g->lin, g->h_x, sizeof(float) * k * d, err);
        if (!st) st = project_rows(c, g, &wo, k, logits + (size_t)r * c->m->hp.n_vocab, err); // its copies wait
    }
    st = out_head_leave(c, g, slot, st, err);
    return st ? st : aero_cuda_sync(g->cu, err);
}

// The backend of a GPU context, for a draft head's layer (forward_cuda.h).
aero_cuda *aero_gpu_cuda(aero_ctx *c) { return ((aero_gpu *)c->gpu)->cu; }

// The token embedding as the device looks its rows up (forward_cuda.h).
bool aero_gpu_embd(aero_ctx *c, aero_cuda_wmat *w) {
    aero_gpu *g = c->gpu;
    if (!g->embd_dev) return false;
    *w = wm(c->m, c->m->tok_embd, g->embd_dev);
    return true;
}

// A draft head's rows on the device through the output head into device logits (forward_cuda.h): the head unit
// is acquired as a pass acquires it; the caller's copy of the logits waits for the matmuls.
aero_status aero_gpu_project_dev(aero_ctx *c, const float *x, int n, float *logits, aero_error *err) {
    aero_gpu *g = c->gpu;
    int d = c->m->hp.n_embd, u = c->m->hp.n_layer, slot = -1;
    if (n <= 0) return AERO_OK;
    if (aero_stream_acquire(c->m->stream, u, err)) return err->code;
    aero_status st = unit_in(c, g, u, &slot, err);
    aero_cuda_wmat wo = mat(c, g, c->m->output, slot);
    for (int r = 0; r < n && !st; r += HEAD_ROWS) {
        int k = n - r < HEAD_ROWS ? n - r : HEAD_ROWS;
        aero_cuda_act a;
        if (!(st = prep(g, x + (size_t)r * d, k, d, &a, err)))
            st = matmul(g, OP_MATMUL, &wo, &a, logits + (size_t)r * c->m->hp.n_vocab, err);
    }
    return out_head_leave(c, g, slot, st, err);
}

// Whether the output head is VRAM-resident (forward_cuda.h): a draft head's projection then copies nothing.
bool aero_gpu_output_resident(aero_ctx *c) {
    aero_gpu *g = c->gpu;
    return g->units[c->m->hp.n_layer].vram;
}

// A draft head's VRAM lies above everything the context holds (forward_cuda.h): the arena's mark is taken when
// the first head enters and the arena goes back to it when the last leaves.
void aero_gpu_head_enter(aero_ctx *c) {
    aero_gpu *g = c->gpu;
    if (g->head_users++ == 0) g->head_mark = aero_cuda_arena_mark(g->cu);
}

void aero_gpu_head_leave(aero_ctx *c) {
    aero_gpu *g = c->gpu;
    if (g->head_users <= 0 || --g->head_users > 0) return;
    aero_error e = {0};
    aero_cuda_sync(g->cu, &e); // no kernel still reads the memory given back
    aero_cuda_arena_reset(g->cu, g->head_mark);
}
