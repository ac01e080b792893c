// Model loading: GGUF -> hyperparameters, weight tensor table checked by name, type and shape at once,
// RoPE frequencies, tokenizer, weight streamer and thread pool.
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hf.h"
#include "model_internal.h"
#ifdef AERO_CUDA
#include "../kernels/cuda/cuda_backend.h"
#endif

void aero_model_params_default(aero_model_params *p) { memset(p, 0, sizeof *p); }

const char *aero_default_device(void) {
#ifdef AERO_CUDA
    return aero_cuda_device_count() > 0 ? "cuda" : "cpu";
#else
    return "cpu";
#endif
}

// Finds a tensor by formatted name and checks its type is computable and its shape is exactly (ne0, ne1).
// ne1 = 0 means a 1-D tensor. Optional tensors that are absent give -1.
static aero_status find_tensor(const aero_gguf *g, int64_t *out, bool required, int64_t ne0, int64_t ne1,
                               aero_error *err, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static aero_status find_tensor(const aero_gguf *g, int64_t *out, bool required, int64_t ne0, int64_t ne1,
                               aero_error *err, const char *fmt, ...) {
    char name[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    *out = aero_gguf_tensor_index(g, name);
    if (*out < 0) return required ? aero_fail(err, AERO_ERR_FORMAT, "tensor '%s' is missing", name) : AERO_OK;
    const aero_tensor_info *t = &g->tensors[*out];
    const aero_dtype_info *di = aero_dtype_get(t->type);
    if (!di || !di->computable || t->type == AERO_DT_Q8_K)
        return aero_fail(err, AERO_ERR_UNSUPPORTED, "tensor '%s' has type %s, which this engine cannot compute with",
                         name, aero_dtype_name(t->type));
    bool ok = ne1 ? (t->n_dims == 2 && t->ne[0] == (uint64_t)ne0 && t->ne[1] == (uint64_t)ne1)
                  : (t->n_dims == 1 && t->ne[0] == (uint64_t)ne0);
    if (!ok)
        return aero_fail(err, AERO_ERR_FORMAT, "tensor '%s' has shape [%llu, %llu], expected [%lld, %lld]", name,
                         (unsigned long long)t->ne[0], (unsigned long long)(t->n_dims > 1 ? t->ne[1] : 0),
                         (long long)ne0, (long long)ne1);
    if (!ne1 && t->type != AERO_DT_F32)
        return aero_fail(err, AERO_ERR_UNSUPPORTED, "tensor '%s' (a norm or bias) must be F32, not %s", name,
                         aero_dtype_name(t->type));
    if (ne1) { // a matrix: the matmuls assume what aero_wmat_check checks, once here
        aero_wmat w = {.type = t->type, .cols = ne0, .rows = ne1, .row_bytes = aero_dtype_row_bytes(t->type, ne0)};
        if (aero_wmat_check(&w, err)) {
            aero_error_prefix(err, "tensor '%s': ", name);
            return err->code;
        }
    }
    return AERO_OK;
}

// Checks one expert's slice of an expert tensor as a matrix (cols, rows), once at load, as find_tensor does.
static aero_status check_slice(const aero_tensor_info *t, int64_t cols, int64_t rows, aero_error *err) {
    const aero_dtype_info *di = aero_dtype_get(t->type);
    if (!di || !di->computable || t->type == AERO_DT_Q8_K)
        return aero_fail(err, AERO_ERR_UNSUPPORTED, "tensor '%s' has type %s, which this engine cannot compute with",
                         t->name, aero_dtype_name(t->type));
    aero_wmat w = {.type = t->type, .cols = cols, .rows = rows, .row_bytes = aero_dtype_row_bytes(t->type, cols)};
    if (aero_wmat_check(&w, err)) {
        aero_error_prefix(err, "tensor '%s': ", t->name);
        return err->code;
    }
    return AERO_OK;
}

// The router, the shared expert and the routed experts of MoE layer l, merged (`ffn_gate_exps` {n_embd,
// n_ff_exp, n_expert}) or one tensor per expert (`ffn_gate.E` {n_embd, n_ff_exp}), checked by name, type, shape.
static aero_status map_moe(aero_model *m, int l, aero_layer_weights *w, aero_error *err) {
    const aero_gguf *g = &m->gguf;
    const aero_moe_params *p = &m->moe_p;
    int64_t d = p->n_embd, ff = p->n_ff_exp, ne = p->n_expert, sh = p->n_ff_shexp;
    w->moe = true;
    if (find_tensor(g, &w->router, true, d, ne, err, "blk.%d.ffn_gate_inp.weight", l)) return err->code;
    if (sh > 0) {
        bool q2 = !strcmp(m->hp.arch, "qwen2moe");
        if (find_tensor(g, &w->sh_gate, true, d, sh, err, "blk.%d.ffn_gate_shexp.weight", l) ||
            find_tensor(g, &w->sh_up, true, d, sh, err, "blk.%d.ffn_up_shexp.weight", l) ||
            find_tensor(g, &w->sh_down, true, sh, d, err, "blk.%d.ffn_down_shexp.weight", l) ||
            find_tensor(g, &w->sh_gate_inp, q2, d, 0, err, "blk.%d.ffn_gate_inp_shexp.weight", l))
            return err->code;
    }
    static const char *const part[3] = {"gate", "up", "down"};
    const int64_t cols[3] = {d, d, ff}, rows[3] = {ff, ff, d};
    char name[128];
    snprintf(name, sizeof name, "blk.%d.ffn_gate_exps.weight", l);
    bool merged = aero_gguf_tensor_index(g, name) >= 0;
    if (merged) {
        for (int q = 0; q < 3; q++) {
            snprintf(name, sizeof name, "blk.%d.ffn_%s_exps.weight", l, part[q]);
            int64_t i = aero_gguf_tensor_index(g, name);
            if (i < 0) return aero_fail(err, AERO_ERR_FORMAT, "tensor '%s' is missing", name);
            const aero_tensor_info *t = &g->tensors[i];
            if (t->n_dims != 3 || t->ne[0] != (uint64_t)cols[q] || t->ne[1] != (uint64_t)rows[q] ||
                t->ne[2] != (uint64_t)ne)
                return aero_fail(err, AERO_ERR_FORMAT,
                                 "tensor '%s' has shape [%llu, %llu, %llu], expected [%lld, "
                                 "%lld, %lld]",
                                 name, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                                 (unsigned long long)(t->n_dims > 2 ? t->ne[2] : 1), (long long)cols[q],
                                 (long long)rows[q], (long long)ne);
            if (check_slice(t, cols[q], rows[q], err)) return err->code;
            w->exps[q] = i;
            w->exp_type[q] = t->type;
            w->exp_slice[q] = aero_dtype_row_bytes(t->type, cols[q]) * (uint64_t)rows[q];
        }
        return AERO_OK;
    }
    w->per_expert = malloc(sizeof(int64_t) * 3 * ne);
    if (!w->per_expert) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    for (int64_t e = 0; e < ne; e++)
        for (int q = 0; q < 3; q++) {
            int64_t i;
            if (find_tensor(g, &i, true, cols[q], rows[q], err, "blk.%d.ffn_%s.%lld.weight", l, part[q],
                            (long long)e)) {
                if (e == 0 && q == 0)
                    aero_error_prefix(
                        err, "layer %d has neither blk.%d.ffn_gate_exps.weight nor per-expert tensors: ", l, l);
                return err->code;
            }
            const aero_tensor_info *t = &g->tensors[i];
            if (e == 0) {
                w->exp_type[q] = t->type;
                w->exp_slice[q] = aero_dtype_row_bytes(t->type, cols[q]) * (uint64_t)rows[q];
            } else if (t->type != w->exp_type[q]) {
                return aero_fail(err, AERO_ERR_FORMAT, "tensor '%s' has type %s, expert 0's has %s", t->name,
                                 aero_dtype_name(t->type), aero_dtype_name(w->exp_type[q]));
            }
            w->per_expert[e * 3 + q] = i;
        }
    return AERO_OK;
}

// The tensor and byte offset of one expert's part: a slice of the merged tensor or the expert's own tensor.
static const aero_tensor_info *expert_part(const aero_model *m, int layer, int expert, int q, uint64_t *off) {
    const aero_layer_weights *w = &m->layers[layer];
    if (w->per_expert) {
        *off = 0;
        return &m->gguf.tensors[w->per_expert[(int64_t)expert * 3 + q]];
    }
    *off = (uint64_t)expert * w->exp_slice[q];
    return &m->gguf.tensors[w->exps[q]];
}

// The expert cache's map from (layer, expert) to the file bytes of its three parts.
static aero_status locate_expert(void *ctx, int layer, int expert, aero_expert_extent ext[3], aero_error *err) {
    const aero_model *m = ctx;
    if (layer < 0 || layer >= m->hp.n_layer || !m->layers[layer].moe || expert < 0 || expert >= m->moe_p.n_expert)
        return aero_fail(err, AERO_ERR_INVALID, "no expert %d in layer %d", expert, layer);
    for (int q = 0; q < 3; q++) {
        uint64_t off;
        const aero_tensor_info *t = expert_part(m, layer, expert, q, &off);
        ext[q] = (aero_expert_extent){
            .file = (int)t->file, .offset = t->offset + off, .size = m->layers[layer].exp_slice[q]};
    }
    return AERO_OK;
}

// Readies a layer's experts: pinned in the expert cache (read if missing), or nothing to do when resident.
static aero_status src_prepare(void *ctx, int layer, const int *experts, int n, int *n_ready, aero_error *err) {
    aero_ctx *c = ctx;
    aero_model *m = c->m;
    if (!m->experts) {
        *n_ready = n;
        return AERO_OK;
    }
    aero_status st = aero_expert_cache_acquire(m->experts, layer, experts, n, n_ready, err);
    if (c->pf_n) { // after this layer's own reads, so that they never queue behind a guess
        aero_expert_cache_prefetch(m->experts, c->pf_layer, c->pf_ids, c->pf_n);
        c->pf_n = 0;
    }
    return st;
}

// One expert's three matrices: slices of the resident tensors or the cache's buffers.
static aero_status src_get(void *ctx, int layer, int expert, aero_wmat w[3], aero_error *err) {
    aero_model *m = ((aero_ctx *)ctx)->m;
    const aero_layer_weights *lw = &m->layers[layer];
    int64_t d = m->moe_p.n_embd, ff = m->moe_p.n_ff_exp;
    for (int q = 0; q < 3; q++) {
        const char *data;
        if (m->experts) {
            data = aero_expert_cache_part(m->experts, layer, expert, q);
        } else {
            uint64_t off;
            const aero_tensor_info *t = expert_part(m, layer, expert, q, &off);
            data = aero_stream_global(m->stream, t - m->gguf.tensors);
            if (data) data += off;
        }
        if (!data) return aero_fail(err, AERO_ERR_INVALID, "layer %d expert %d is not in memory", layer, expert);
        w[q] = aero_moe_slice(data, lw->exp_type[q], q == AERO_MOE_DOWN ? ff : d, q == AERO_MOE_DOWN ? d : ff, 0);
    }
    return AERO_OK;
}

// Unpins what prepare pinned, so that the cache may evict it for the next layer.
static void src_release(void *ctx, int layer, const int *experts, int n) {
    aero_model *m = ((aero_ctx *)ctx)->m;
    if (m->experts) aero_expert_cache_release(m->experts, layer, experts, n);
}

// The one source every MoE layer of a context computes through, resident or streamed alike.
aero_moe_source aero_ctx_moe_source(aero_ctx *c) {
    return (aero_moe_source){.ctx = c, .prepare = src_prepare, .get = src_get, .release = src_release};
}

// Opens the expert cache under the plan's share of the budget when the experts are not resident.
static aero_status open_experts(aero_model *m, const aero_model_params *p, aero_error *err) {
    const aero_stream_plan *plan = aero_stream_get_plan(m->stream);
    if (!m->moe || plan->experts_resident) return AERO_OK;
    const aero_gguf *g = &m->gguf;
    const char **paths = malloc(sizeof *paths * g->n_files);
    if (!paths) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    for (uint32_t i = 0; i < g->n_files; i++) paths[i] = g->files[i].path;
    aero_expert_cache_config cc = {
        .paths = paths,
        .n_files = (int)g->n_files,
        .n_layer = m->hp.n_layer,
        .n_expert = m->moe_p.n_expert,
        .budget = plan->expert_budget,
        .policy = AERO_EXPERT_EVICT_RATE,
        .n_io_threads = p->io_threads > 0 ? p->io_threads : 4,
        .locate = locate_expert,
        .locate_ctx = m,
    };
    m->experts = aero_expert_cache_new(&cc, err);
    free(paths);
    if (m->experts) aero_stream_attach_experts(m->stream, m->experts); // per-pass expert reads in --stats
    if (!m->experts) aero_error_prefix(err, "expert cache: ");
    return m->experts ? AERO_OK : err->code;
}

// A 3-D tensor {ne0, ne1, ne2} whose ne2 slices are matrices of ne1 rows (attn_k_b, attn_v_b: one per head).
static aero_status find_tensor3(const aero_gguf *g, int64_t *out, int64_t ne0, int64_t ne1, int64_t ne2,
                                aero_error *err, const char *name) {
    *out = aero_gguf_tensor_index(g, name);
    if (*out < 0) return aero_fail(err, AERO_ERR_FORMAT, "tensor '%s' is missing", name);
    const aero_tensor_info *t = &g->tensors[*out];
    uint64_t e2 = t->n_dims > 2 ? t->ne[2] : 1;
    if (t->n_dims < 2 || t->n_dims > 3 || t->ne[0] != (uint64_t)ne0 || t->ne[1] * e2 != (uint64_t)(ne1 * ne2))
        return aero_fail(err, AERO_ERR_FORMAT, "tensor '%s' has shape [%llu, %llu, %llu], expected [%lld, %lld, %lld]",
                         name, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1], (unsigned long long)e2,
                         (long long)ne0, (long long)ne1, (long long)ne2);
    return check_slice(t, ne0, ne1 * ne2, err);
}

// One deepseek2 layer (llama.cpp's load_arch_tensors): the latent attention's projections, then a dense FFN
// (the leading layers) or the routed experts with the shared ones and the routing bias.
static aero_status map_mla_layer(aero_model *m, int l, aero_layer_weights *w, aero_error *err) {
    const aero_gguf *g = &m->gguf;
    const aero_mla_params *a = &m->mla;
    int64_t d = m->hp.n_embd, H = m->hp.n_head, kq = a->qk_nope + a->qk_rope, L = a->kv_lora_rank;
    w->wq = w->wk = w->wv = w->bq = w->bk = w->bv = w->q_norm = w->k_norm = -1;
    w->wq_a = w->q_a_norm = w->wq_b = w->wk_b = w->wv_b = w->wkv_b = w->probs_b = -1;
    w->w_gate = w->w_up = w->w_down = w->router = w->sh_gate = w->sh_up = w->sh_down = w->sh_gate_inp = -1;
    w->exps[0] = w->exps[1] = w->exps[2] = -1;
    w->wqkv = w->attn_post_norm = w->ffn_post_norm = -1; // other architectures' tensors
    if (find_tensor(g, &w->attn_norm, true, d, 0, err, "blk.%d.attn_norm.weight", l) ||
        (a->q_lora_rank > 0
             ? (find_tensor(g, &w->q_a_norm, true, a->q_lora_rank, 0, err, "blk.%d.attn_q_a_norm.weight", l) ||
                find_tensor(g, &w->wq_a, true, d, a->q_lora_rank, err, "blk.%d.attn_q_a.weight", l) ||
                find_tensor(g, &w->wq_b, true, a->q_lora_rank, H * kq, err, "blk.%d.attn_q_b.weight", l))
             : find_tensor(g, &w->wq, true, d, H * kq, err, "blk.%d.attn_q.weight", l)) ||
        find_tensor(g, &w->wkv_a, true, d, L + a->qk_rope, err, "blk.%d.attn_kv_a_mqa.weight", l) ||
        find_tensor(g, &w->kv_a_norm, true, L, 0, err, "blk.%d.attn_kv_a_norm.weight", l) ||
        find_tensor(g, &w->wo, true, H * a->v_head, d, err, "blk.%d.attn_output.weight", l) ||
        find_tensor(g, &w->ffn_norm, true, d, 0, err, "blk.%d.ffn_norm.weight", l))
        return err->code;
    char name[128];
    if (a->split_kv_b) {
        snprintf(name, sizeof name, "blk.%d.attn_k_b.weight", l);
        if (find_tensor3(g, &w->wk_b, a->qk_nope, L, H, err, name)) return err->code;
        snprintf(name, sizeof name, "blk.%d.attn_v_b.weight", l);
        if (find_tensor3(g, &w->wv_b, L, a->v_head, H, err, name)) return err->code;
    } else if (find_tensor(g, &w->wkv_b, true, L, H * (a->qk_nope + a->v_head), err, "blk.%d.attn_kv_b.weight", l)) {
        return err->code;
    }
    if (l < a->n_dense_lead)
        return find_tensor(g, &w->w_gate, true, d, m->hp.n_ff, err, "blk.%d.ffn_gate.weight", l) ||
                       find_tensor(g, &w->w_up, true, d, m->hp.n_ff, err, "blk.%d.ffn_up.weight", l) ||
                       find_tensor(g, &w->w_down, true, m->hp.n_ff, d, err, "blk.%d.ffn_down.weight", l)
                   ? err->code
                   : AERO_OK;
    if (find_tensor(g, &w->probs_b, false, m->moe_p.n_expert, 0, err, "blk.%d.exp_probs_b.bias", l)) return err->code;
    return map_moe(m, l, w, err);
}

// Resolves every weight the architecture needs.
static aero_status map_weights(aero_model *m, aero_error *err) {
    const aero_gguf *g = &m->gguf;
    const aero_hparams *hp = &m->hp;
    int64_t d = hp->n_embd, qd = (int64_t)hp->n_head * hp->head_dim, kvd = (int64_t)hp->n_head_kv * hp->head_dim;
    int64_t v = hp->n_vocab;
    if (find_tensor(g, &m->tok_embd, true, d, v, err, "token_embd.weight") ||
        find_tensor(g, &m->out_norm, true, d, 0, err, "output_norm.weight") ||
        find_tensor(g, &m->output, false, d, v, err, "output.weight"))
        return err->code;
    m->hp.tied_output = m->output < 0;
    if (m->output < 0) m->output = m->tok_embd;
    m->layers = calloc(hp->n_layer, sizeof *m->layers);
    if (!m->layers) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    for (int l = 0; m->kind == AERO_ARCH_DEEPSEEK2 && l < hp->n_layer; l++)
        if (map_mla_layer(m, l, &m->layers[l], err)) return err->code;
    if (m->kind == AERO_ARCH_DEEPSEEK2) return AERO_OK;
    bool qwen2 = m->kind == AERO_ARCH_QWEN2, qknorm = m->kind == AERO_ARCH_QWEN3 || m->kind == AERO_ARCH_GEMMA3;
    bool post = hp->post_norms, olmo2 = m->kind == AERO_ARCH_OLMO2;
    int64_t qn_len = olmo2 ? qd : hp->head_dim, kn_len = olmo2 ? kvd : hp->head_dim; // OLMo 2: whole projections
    for (int l = 0; l < hp->n_layer; l++) {
        aero_layer_weights *w = &m->layers[l];
        // phi3 fuses Q, K and V into one matrix (row slices of it are computed as three matrices)
        if (find_tensor(g, &w->wqkv, false, d, qd + 2 * kvd, err, "blk.%d.attn_qkv.weight", l)) return err->code;
        bool sep = w->wqkv < 0;
        w->wq = w->wk = w->wv = -1;
        if (find_tensor(g, &w->attn_norm, !olmo2, d, 0, err, "blk.%d.attn_norm.weight", l) ||
            (sep && find_tensor(g, &w->wq, true, d, qd, err, "blk.%d.attn_q.weight", l)) ||
            (sep && find_tensor(g, &w->wk, true, d, kvd, err, "blk.%d.attn_k.weight", l)) ||
            (sep && find_tensor(g, &w->wv, true, d, kvd, err, "blk.%d.attn_v.weight", l)) ||
            find_tensor(g, &w->wo, true, qd, d, err, "blk.%d.attn_output.weight", l) ||
            find_tensor(g, &w->bq, qwen2, qd, 0, err, "blk.%d.attn_q.bias", l) ||
            find_tensor(g, &w->bk, qwen2, kvd, 0, err, "blk.%d.attn_k.bias", l) ||
            find_tensor(g, &w->bv, qwen2, kvd, 0, err, "blk.%d.attn_v.bias", l) ||
            find_tensor(g, &w->q_norm, qknorm || olmo2, qn_len, 0, err, "blk.%d.attn_q_norm.weight", l) ||
            find_tensor(g, &w->k_norm, qknorm || olmo2, kn_len, 0, err, "blk.%d.attn_k_norm.weight", l) ||
            find_tensor(g, &w->ffn_norm, !olmo2, d, 0, err, "blk.%d.ffn_norm.weight", l))
            return err->code;
        if (m->kind == AERO_ARCH_GRANITE || m->kind == AERO_ARCH_MISTRAL3) { // biases are not computed: refused
            static const char *const biases[] = {"attn_output", "ffn_gate", "ffn_up", "ffn_down"};
            for (int k = 0; k < 4; k++) {
                char name[96];
                snprintf(name, sizeof name, "blk.%d.%s.bias", l, biases[k]);
                if (aero_gguf_tensor_index(g, name) >= 0)
                    return aero_fail(err, AERO_ERR_UNSUPPORTED, "%s: tensor '%s' (a bias) is not supported",
                                     hp->arch, name);
            }
        }
        w->attn_post_norm = w->ffn_post_norm = -1;
        if (post && (find_tensor(g, &w->attn_post_norm, true, d, 0, err, "blk.%d.post_attention_norm.weight", l) ||
                     find_tensor(g, &w->ffn_post_norm, true, d, 0, err, "blk.%d.post_ffw_norm.weight", l)))
            return err->code;
        w->w_gate = w->w_up = w->w_down = -1;
        w->router = w->sh_gate = w->sh_up = w->sh_down = w->sh_gate_inp = w->probs_b = -1;
        w->exps[0] = w->exps[1] = w->exps[2] = -1;
        if (m->moe) {
            if (map_moe(m, l, w, err)) return err->code;
        } else if (m->kind == AERO_ARCH_PHI3) { // gate and up fused: rows [0, n_ff) gate, [n_ff, 2 n_ff) up
            if (find_tensor(g, &w->w_up, true, d, 2 * (int64_t)hp->n_ff, err, "blk.%d.ffn_up.weight", l) ||
                find_tensor(g, &w->w_down, true, hp->n_ff, d, err, "blk.%d.ffn_down.weight", l))
                return err->code;
        } else if (find_tensor(g, &w->w_gate, true, d, hp->n_ff, err, "blk.%d.ffn_gate.weight", l) ||
                   find_tensor(g, &w->w_up, true, d, hp->n_ff, err, "blk.%d.ffn_up.weight", l) ||
                   find_tensor(g, &w->w_down, true, hp->n_ff, d, err, "blk.%d.ffn_down.weight", l)) {
            return err->code;
        }
    }
    return AERO_OK;
}

// YaRN's correction dimension: the pair index whose wavelength makes n_rot turns over the original context.
static double yarn_corr_dim(int n_dims, int n_ctx_orig, double n_rot, double base) {
    return n_dims * log(n_ctx_orig / (n_rot * 2 * M_PI)) / (2 * log(base));
}

// Precomputes the per-pair rotation speed with the scaling folded in (linear, Llama 3, YaRN, a rope_freqs
// tensor's divisors), and the factor cos and sin are scaled by (YaRN's and rope.scaling.attn_factor), as
// llama.cpp's rope does: theta = pos * speed, whatever the scaling.
static aero_status rope_setup(aero_model *m, aero_error *err) {
    const aero_hparams *hp = &m->hp;
    int half = hp->rope_dim / 2;
    m->rope_inv_freq = malloc(sizeof(float) * half);
    if (!m->rope_inv_freq) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    const float *freq_factors = NULL;
    int64_t ff = aero_gguf_tensor_index(&m->gguf, "rope_freqs.weight");
    if (ff >= 0) {
        const aero_tensor_info *t = &m->gguf.tensors[ff];
        if (t->type != AERO_DT_F32 || t->n_elements != (uint64_t)half)
            return aero_fail(err, AERO_ERR_FORMAT, "tensor 'rope_freqs.weight' must be F32 with %d elements", half);
        freq_factors = aero_stream_global(m->stream, ff);
    }
    bool yarn = hp->rope_scaling == AERO_ROPE_SCALING_YARN;
    double fs = hp->rope_scale_factor > 0 ? 1.0 / hp->rope_scale_factor : 1.0, lo = 0, hi = 0;
    if (yarn) { // ggml_rope_yarn_corr_dims
        int orig = hp->rope_orig_ctx > 0 ? hp->rope_orig_ctx : hp->n_ctx_train;
        lo = floor(yarn_corr_dim(hp->rope_dim, orig, hp->rope_yarn_beta_fast, hp->rope_base));
        hi = ceil(yarn_corr_dim(hp->rope_dim, orig, hp->rope_yarn_beta_slow, hp->rope_base));
        lo = lo > 0 ? lo : 0;
        hi = hi < hp->rope_dim - 1 ? hi : hp->rope_dim - 1;
    }
    m->rope_mscale = hp->rope_attn_factor > 0 ? hp->rope_attn_factor : 1.0f;
    if (yarn && fs < 1) // llama.cpp: get_mscale(factor, 1) / get_mscale(factor, log_mul)
        m->rope_mscale *= (float)((1.0 + 0.1 * log(1.0 / fs)) / (1.0 + 0.1 * hp->rope_yarn_log_mul * log(1.0 / fs)));
    for (int i = 0; i < half; i++) {
        double f = pow(hp->rope_base, -2.0 * i / hp->rope_dim);
        if (freq_factors) f /= freq_factors[i];
        if (hp->rope_scaling == AERO_ROPE_SCALING_LINEAR && !freq_factors) {
            f /= hp->rope_scale_factor;
        } else if (hp->rope_scaling == AERO_ROPE_SCALING_LINEAR) {
            f *= fs;
        } else if (yarn) { // rope_yarn: interpolated and extrapolated speeds blended by a ramp over the pairs
            double y = (i - lo) / (hi - lo > 0.001 ? hi - lo : 0.001);
            double ramp = 1 - (y < 0 ? 0 : y > 1 ? 1 : y);
            f = f * fs * (1 - ramp) + f * ramp;
        } else if (hp->rope_scaling == AERO_ROPE_SCALING_LLAMA3 && !freq_factors) {
            // Meta's Llama 3.1 rule: long wavelengths slowed by factor, short kept, smooth blend between.
            int orig = hp->rope_orig_ctx > 0 ? hp->rope_orig_ctx : 8192;
            double wavelen = 2 * M_PI / f;
            double low_wl = orig / hp->rope_low_freq, high_wl = orig / hp->rope_high_freq;
            if (wavelen > low_wl) {
                f /= hp->rope_scale_factor;
            } else if (wavelen >= high_wl) {
                double smooth = (orig / wavelen - hp->rope_low_freq) / (hp->rope_high_freq - hp->rope_low_freq);
                f = (1 - smooth) * f / hp->rope_scale_factor + smooth * f;
            }
        }
        m->rope_inv_freq[i] = (float)f;
    }
    int64_t fl = aero_gguf_tensor_index(&m->gguf, "rope_factors_long.weight"),
            fsh = aero_gguf_tensor_index(&m->gguf, "rope_factors_short.weight");
    if (fl >= 0 || fsh >= 0) { // LongRoPE (phi3): per-pair divisors, long or short by the context length
        const float *fac[2] = {NULL, NULL};
        int64_t idx[2] = {fsh, fl};
        for (int k = 0; k < 2; k++) {
            if (idx[k] < 0) continue;
            const aero_tensor_info *t = &m->gguf.tensors[idx[k]];
            if (t->type != AERO_DT_F32 || t->n_elements != (uint64_t)half)
                return aero_fail(err, AERO_ERR_FORMAT, "tensor '%s' must be F32 with %d elements", t->name, half);
            fac[k] = aero_stream_global(m->stream, idx[k]);
        }
        m->rope_inv_freq_long = malloc(sizeof(float) * half);
        if (!m->rope_inv_freq_long) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
        for (int i = 0; i < half; i++) {
            double f = m->rope_inv_freq[i]; // any rope_freqs / linear factor already in
            m->rope_inv_freq_long[i] = (float)(fac[1] ? f / fac[1][i] : f);
            m->rope_inv_freq[i] = (float)(fac[0] ? f / fac[0][i] : f);
        }
    }
    if (hp->rope_base_swa > 0 && hp->swa_pattern > 0) { // gemma3's local layers: their own base, no scaling
        m->rope_inv_freq_swa = malloc(sizeof(float) * half);
        if (!m->rope_inv_freq_swa) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
        for (int i = 0; i < half; i++)
            m->rope_inv_freq_swa[i] = (float)pow(hp->rope_base_swa, -2.0 * i / hp->rope_dim);
    }
    if (m->kind == AERO_ARCH_DEEPSEEK2) m->rope_mscale = 1.0f; // llama.cpp cancels YaRN's magnitude in rope: mla.c
                                                              // scales the scores by it instead
    return AERO_OK;
}

aero_status aero_model_load(aero_model **out, const aero_model_params *p, aero_error *err) {
    *out = NULL;
    aero_kernels_init();
    aero_model *m = calloc(1, sizeof *m);
    if (!m) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    if (!p->path) {
        free(m);
        return aero_fail(err, AERO_ERR_INVALID, "no model path given");
    }
    if (aero_model_source_open(&m->gguf, p->path, err)) { // a GGUF file, or a Hugging Face directory (hf_load.c)
        free(m);
        return err->code;
    }
    const aero_gguf *g = &m->gguf;
    if (aero_hparams_read(g, &m->hp, &m->kind, err)) goto fail;
    if (aero_moe_hparams_read(g, &m->hp, &m->moe, &m->moe_p, err)) goto fail;
    if (m->kind == AERO_ARCH_DEEPSEEK2 && aero_mla_hparams_read(g, &m->hp, &m->mla, err)) goto fail;
    // llama.cpp's NORM rope (adjacent pairs) for these, NEOX (halves) for the others
    m->rope_neox = m->kind != AERO_ARCH_LLAMA && m->kind != AERO_ARCH_GRANITE && m->kind != AERO_ARCH_MISTRAL3 &&
                   m->kind != AERO_ARCH_DEEPSEEK2;
    int64_t te = aero_gguf_tensor_index(g, "token_embd.weight");
    if (te < 0) {
        aero_fail(err, AERO_ERR_FORMAT, "tensor 'token_embd.weight' is missing");
        goto fail;
    }
    if (g->tensors[te].n_dims != 2 || g->tensors[te].ne[1] > (1u << 30)) {
        aero_fail(err, AERO_ERR_FORMAT, "tensor 'token_embd.weight' must be 2-D (embedding_length, vocab)");
        goto fail;
    }
    m->hp.n_vocab = (int)g->tensors[te].ne[1];
    if (map_weights(m, err)) goto fail;
    for (uint64_t i = 0; i < g->n_tensors; i++) m->weight_bytes += g->tensors[i].nbytes;
    const char *hf_dir = g->owned_fd > 0 ? aero_gguf_get_str(g, "aerollm.hf.dir") : NULL; // a table aero_hf_open made
    if (hf_dir) { // an HF directory's tokenizer.json, read by the same tokenizer engine
        char tj[4096];
        snprintf(tj, sizeof tj, "%s/tokenizer.json", hf_dir);
        if (aero_tokenizer_from_json(&m->tok, tj, err)) goto fail;
    } else if (aero_tokenizer_from_gguf(&m->tok, g, err)) {
        aero_error_prefix(err, "%s: tokenizer: ", p->path);
        goto fail;
    }
    if (aero_tokenizer_n_vocab(m->tok) > m->hp.n_vocab) {
        aero_fail(err, AERO_ERR_FORMAT, "%s: tokenizer has %d tokens but token_embd.weight only %d rows", p->path,
                  aero_tokenizer_n_vocab(m->tok), m->hp.n_vocab);
        goto fail;
    }
    bool *external = NULL; // under a pipeline: the other ranks' layers (src/mpi/pipeline.c)
    if (aero_pipe_plan(g, m->hp.n_layer, p, &m->layer_first, &m->layer_last, &external, err)) goto fail;
    aero_stream_params sp = {
        .external = external,
        .mem_budget = p->mem_budget,
        .prefetch = p->prefetch,
        .io_threads = p->io_threads,
        .output_tensor = g->tensors[m->output].name,
        .embd_tensor = "token_embd.weight",
        .head_in_parts = !p->device || !p->device[0] || !strcmp(p->device, "cpu"), // forward.c reads head blocks
        .head_hot = p->head_hot,
    };
    aero_status st_open = aero_stream_open(&m->stream, g, m->hp.n_layer, &sp, err);
    free(external);
    if (st_open) goto fail;
    if (rope_setup(m, err)) goto fail;
    if (open_experts(m, p, err)) goto fail;
    m->expert_prefetch = m->experts && p->expert_prefetch;
    if (m->moe && (!(m->expert_uses = calloc((size_t)m->hp.n_layer * m->moe_p.n_expert, sizeof *m->expert_uses)) ||
                   !(m->expert_warm = calloc((size_t)m->hp.n_layer * m->moe_p.n_expert, sizeof *m->expert_warm)))) {
        aero_fail(err, AERO_ERR_NOMEM, "out of memory");
        goto fail;
    }
    m->pool = aero_pool_new(p->n_threads);
    if (!m->pool) {
        aero_fail(err, AERO_ERR_NOMEM, "cannot start the thread pool");
        goto fail;
    }
    m->n_threads = aero_pool_size(m->pool);
    snprintf(m->device, sizeof m->device, "%s", p->device ? p->device : "");
    m->gpu_mem = p->gpu_mem;
    if (aero_pipe_open(m, p, err)) goto fail; // rank 0: the other ranks load their layers
    *out = m;
    return AERO_OK;
fail:
    aero_model_free(m);
    return err->code;
}

void aero_model_free(aero_model *m) {
    if (!m) return;
    aero_pipe_close(m);
    aero_pool_free(m->pool);
    aero_expert_cache_free(m->experts);
    free(m->expert_uses);
    free(m->expert_warm);
    aero_stream_close(m->stream);
    aero_tokenizer_free(m->tok);
    free(m->rope_inv_freq);
    free(m->rope_inv_freq_swa);
    free(m->rope_inv_freq_long);
    if (m->layers)
        for (int l = 0; l < m->hp.n_layer; l++) free(m->layers[l].per_expert);
    free(m->layers);
    aero_gguf_free(&m->gguf);
    free(m);
}

const aero_hparams *aero_model_hparams(const aero_model *m) { return &m->hp; }
const aero_tokenizer *aero_model_tokenizer(const aero_model *m) { return m->tok; }
const aero_gguf *aero_model_gguf(const aero_model *m) { return &m->gguf; }
struct aero_stream *aero_model_stream(aero_model *m) {
    return m->stream;
}
uint64_t aero_model_weight_bytes(const aero_model *m) { return m->weight_bytes; }
int aero_model_n_threads(const aero_model *m) { return m->n_threads; }
struct aero_pool *aero_model_pool(aero_model *m) { return m->pool; }

// Tests and tools read the cache's counters without reaching into the model.
bool aero_model_expert_stats(const aero_model *m, aero_expert_cache_stats *out) {
    memset(out, 0, sizeof *out);
    if (!m->experts) return false;
    aero_expert_cache_stats_get(m->experts, out);
    return true;
}

// Starts a measurement after warm-up: counters, use counts, and which experts the cache already holds.
void aero_model_expert_stats_reset(aero_model *m) {
    if (!m->moe) return;
    if (m->experts) aero_expert_cache_stats_reset(m->experts);
    memset(m->expert_uses, 0, sizeof *m->expert_uses * (size_t)m->hp.n_layer * m->moe_p.n_expert);
    for (int l = 0; l < m->hp.n_layer; l++)
        for (int e = 0; e < m->moe_p.n_expert; e++)
            m->expert_warm[(size_t)l * m->moe_p.n_expert + e] =
                !m->experts || aero_expert_cache_contains(m->experts, l, e);
}

typedef struct {
    uint64_t uses;
    bool warm;
} expert_use;

// Most used first, for the oracle's choice of the experts it keeps.
static int cmp_use_desc(const void *a, const void *b) {
    uint64_t x = ((const expert_use *)a)->uses, y = ((const expert_use *)b)->uses;
    return x < y ? 1 : x > y ? -1 : 0;
}

// The bench's MoE figures: what was read against what had to be read.
void aero_model_print_expert_stats(const aero_model *m, int n_tokens, FILE *f) {
    if (!m->moe || n_tokens < 1) return;
    const aero_stream_plan *plan = aero_stream_get_plan(m->stream);
    size_t n = (size_t)m->hp.n_layer * m->moe_p.n_expert;
    expert_use *u = malloc(sizeof *u * n);
    if (!u) return;
    for (size_t i = 0; i < n; i++) u[i] = (expert_use){m->expert_uses[i], m->expert_warm[i]};
    qsort(u, n, sizeof *u, cmp_use_desc);
    // an expert's bytes on disk (the three parts of the largest layer: every MoE layer is alike)
    uint64_t eb = 0;
    for (int l = 0; l < m->hp.n_layer; l++)
        if (m->layers[l].moe) eb = m->layers[l].exp_slice[0] + m->layers[l].exp_slice[1] + m->layers[l].exp_slice[2];
    uint64_t fit = m->experts && plan->expert_span ? plan->expert_budget / plan->expert_span : n, uses = 0, floor = 0;
    for (size_t i = 0; i < n; i++) {
        uses += u[i].uses;
        // the oracle keeps the `fit` experts used most (read once unless already cached at the reset); every
        // use of another is a read
        if (i >= fit) floor += u[i].uses;
        else if (u[i].uses && !u[i].warm) floor++;
    }
    free(u);
    double per_tok_floor = (double)floor * eb / n_tokens + (double)plan->streamed_bytes;
    fprintf(f, "experts    %.1f experts used per token (%d MoE layers x %d routed, union over the pass), %s\n",
            (double)uses / n_tokens, plan->n_moe_layers, m->moe_p.n_expert_used,
            m->experts ? "expert cache" : "all resident");
    if (!m->experts) return;
    aero_expert_cache_stats st;
    aero_expert_cache_stats_get(m->experts, &st);
    double per_tok = (double)st.bytes_read / n_tokens + (double)plan->streamed_bytes;
    fprintf(
        f, "cache      %.1f MB budget (%llu experts of %.2f MB), hit rate %.3f (%llu of %llu), IO wait %.1f ms/token\n",
        plan->expert_budget / 1e6, (unsigned long long)fit, eb / 1e6, st.lookups ? (double)st.hits / st.lookups : 0,
        (unsigned long long)st.hits, (unsigned long long)st.lookups, st.io_seconds * 1e3 / n_tokens);
    fprintf(f,
            "read/token %.1f MB (experts %.1f + dense streamed %.1f); floor %.1f MB (an oracle cache of the same "
            "size keeping the experts used most in this run, + dense streamed): ratio %.3f\n",
            per_tok / 1e6, st.bytes_read / 1e6 / n_tokens, plan->streamed_bytes / 1e6, per_tok_floor / 1e6,
            per_tok_floor > 0 ? per_tok / per_tok_floor : 0);
    if (st.prefetch_issued)
        fprintf(f, "predictor  %llu prefetched, %llu used (hit rate %.3f), %llu wasted\n",
                (unsigned long long)st.prefetch_issued, (unsigned long long)st.prefetch_used,
                (double)st.prefetch_used / st.prefetch_issued, (unsigned long long)st.prefetch_wasted);
}
