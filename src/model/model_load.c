// Model loading: GGUF -> hyperparameters, weight tensor table checked by name, type and shape at once,
// RoPE frequencies, tokenizer, weight streamer and thread pool.
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"
#ifdef AERO_CUDA
#include "../kernels/cuda/cuda_backend.h"
#endif

void aero_model_params_default(aero_model_params *p) {
    memset(p, 0, sizeof *p);
}

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
    bool qwen2 = m->kind == AERO_ARCH_QWEN2, qwen3 = m->kind == AERO_ARCH_QWEN3;
    for (int l = 0; l < hp->n_layer; l++) {
        aero_layer_weights *w = &m->layers[l];
        if (find_tensor(g, &w->attn_norm, true, d, 0, err, "blk.%d.attn_norm.weight", l) ||
            find_tensor(g, &w->wq, true, d, qd, err, "blk.%d.attn_q.weight", l) ||
            find_tensor(g, &w->wk, true, d, kvd, err, "blk.%d.attn_k.weight", l) ||
            find_tensor(g, &w->wv, true, d, kvd, err, "blk.%d.attn_v.weight", l) ||
            find_tensor(g, &w->wo, true, qd, d, err, "blk.%d.attn_output.weight", l) ||
            find_tensor(g, &w->bq, qwen2, qd, 0, err, "blk.%d.attn_q.bias", l) ||
            find_tensor(g, &w->bk, qwen2, kvd, 0, err, "blk.%d.attn_k.bias", l) ||
            find_tensor(g, &w->bv, qwen2, kvd, 0, err, "blk.%d.attn_v.bias", l) ||
            find_tensor(g, &w->q_norm, qwen3, hp->head_dim, 0, err, "blk.%d.attn_q_norm.weight", l) ||
            find_tensor(g, &w->k_norm, qwen3, hp->head_dim, 0, err, "blk.%d.attn_k_norm.weight", l) ||
            find_tensor(g, &w->ffn_norm, true, d, 0, err, "blk.%d.ffn_norm.weight", l) ||
            find_tensor(g, &w->w_gate, true, d, hp->n_ff, err, "blk.%d.ffn_gate.weight", l) ||
            find_tensor(g, &w->w_up, true, d, hp->n_ff, err, "blk.%d.ffn_up.weight", l) ||
            find_tensor(g, &w->w_down, true, hp->n_ff, d, err, "blk.%d.ffn_down.weight", l))
            return err->code;
    }
    return AERO_OK;
}

// Precomputes the per-pair rotation speed, with linear or Llama 3 scaling or a rope_freqs tensor folded in.
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
    for (int i = 0; i < half; i++) {
        double f = pow(hp->rope_base, -2.0 * i / hp->rope_dim);
        if (freq_factors) {
            f /= freq_factors[i];
        } else if (hp->rope_scaling == AERO_ROPE_SCALING_LINEAR) {
            f /= hp->rope_scale_factor;
        } else if (hp->rope_scaling == AERO_ROPE_SCALING_LLAMA3) {
            // Meta's Llama 3.1 rule: long wavelengths slowed by factor, short kept, smooth blend between.
            double wavelen = 2 * M_PI / f;
            double low_wl = hp->rope_orig_ctx / hp->rope_low_freq, high_wl = hp->rope_orig_ctx / hp->rope_high_freq;
            if (wavelen > low_wl) {
                f /= hp->rope_scale_factor;
            } else if (wavelen >= high_wl) {
                double smooth = (hp->rope_orig_ctx / wavelen - hp->rope_low_freq) / (hp->rope_high_freq - hp->rope_low_freq);
                f = (1 - smooth) * f / hp->rope_scale_factor + smooth * f;
            }
        }
        m->rope_inv_freq[i] = (float)f;
    }
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
    if (aero_gguf_open(&m->gguf, p->path, err)) {
        free(m);
        return err->code;
    }
    const aero_gguf *g = &m->gguf;
    if (aero_hparams_read(g, &m->hp, &m->kind, err)) goto fail;
    m->rope_neox = m->kind != AERO_ARCH_LLAMA;
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
    if (aero_tokenizer_from_gguf(&m->tok, g, err)) {
        aero_error_prefix(err, "%s: tokenizer: ", p->path);
        goto fail;
    }
    if (aero_tokenizer_n_vocab(m->tok) > m->hp.n_vocab) {
        aero_fail(err, AERO_ERR_FORMAT, "%s: tokenizer has %d tokens but token_embd.weight only %d rows", p->path,
                  aero_tokenizer_n_vocab(m->tok), m->hp.n_vocab);
        goto fail;
    }
    aero_stream_params sp = {
        .mem_budget = p->mem_budget,
        .prefetch = p->prefetch,
        .io_threads = p->io_threads,
        .output_tensor = g->tensors[m->output].name,
        .embd_tensor = "token_embd.weight",
    };
    if (aero_stream_open(&m->stream, g, m->hp.n_layer, &sp, err)) goto fail;
    if (rope_setup(m, err)) goto fail;
    m->pool = aero_pool_new(p->n_threads);
    if (!m->pool) {
        aero_fail(err, AERO_ERR_NOMEM, "cannot start the thread pool");
        goto fail;
    }
    m->n_threads = aero_pool_size(m->pool);
    snprintf(m->device, sizeof m->device, "%s", p->device ? p->device : "");
    m->gpu_mem = p->gpu_mem;
    *out = m;
    return AERO_OK;
fail:
    aero_model_free(m);
    return err->code;
}

void aero_model_free(aero_model *m) {
    if (!m) return;
    aero_pool_free(m->pool);
    aero_stream_close(m->stream);
    aero_tokenizer_free(m->tok);
    free(m->rope_inv_freq);
    free(m->layers);
    aero_gguf_free(&m->gguf);
    free(m);
}

const aero_hparams *aero_model_hparams(const aero_model *m) { return &m->hp; }
const aero_tokenizer *aero_model_tokenizer(const aero_model *m) { return m->tok; }
const aero_gguf *aero_model_gguf(const aero_model *m) { return &m->gguf; }
struct aero_stream *aero_model_stream(aero_model *m) { return m->stream; }
uint64_t aero_model_weight_bytes(const aero_model *m) { return m->weight_bytes; }
int aero_model_n_threads(const aero_model *m) { return m->n_threads; }
