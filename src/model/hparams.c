// Hyperparameters from GGUF metadata: read, defaulted where the format allows, and checked for consistency,
// so a bad file fails at load with the key named rather than producing garbage later.
#include <stdio.h>
#include <string.h>

#include "model_internal.h"

// Reads "<arch>.<suffix>" as an integer; required keys fail with the key named.
static aero_status get_int(const aero_gguf *g, const char *arch, const char *suffix, bool required, int64_t dflt,
                           int64_t *out, aero_error *err) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (aero_gguf_get_i64(g, key, out)) {
        if (*out < 0 || *out > (1ll << 31))
            return aero_fail(err, AERO_ERR_FORMAT, "metadata %s = %lld is out of range", key, (long long)*out);
        return AERO_OK;
    }
    if (aero_gguf_get(g, key)) return aero_fail(err, AERO_ERR_FORMAT, "metadata %s has the wrong type", key);
    if (required) return aero_fail(err, AERO_ERR_FORMAT, "metadata %s is missing", key);
    *out = dflt;
    return AERO_OK;
}

static aero_status get_float(const aero_gguf *g, const char *arch, const char *suffix, double dflt, double *out,
                             aero_error *err) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (aero_gguf_get_f64(g, key, out)) return AERO_OK;
    if (aero_gguf_get(g, key)) return aero_fail(err, AERO_ERR_FORMAT, "metadata %s has the wrong type", key);
    *out = dflt;
    return AERO_OK;
}

aero_status aero_hparams_read(const aero_gguf *g, aero_hparams *hp, aero_arch_kind *kind, aero_error *err) {
    memset(hp, 0, sizeof *hp);
    const char *arch = aero_gguf_get_str(g, "general.architecture");
    if (!arch) return aero_fail(err, AERO_ERR_FORMAT, "metadata general.architecture is missing");
    if (!strcmp(arch, "llama")) *kind = AERO_ARCH_LLAMA;
    else if (!strcmp(arch, "qwen2")) *kind = AERO_ARCH_QWEN2;
    else if (!strcmp(arch, "qwen3")) *kind = AERO_ARCH_QWEN3;
    else if (!strcmp(arch, "qwen2moe")) *kind = AERO_ARCH_QWEN2; // qwen2 attention (biases) + MoE FFN
    else if (!strcmp(arch, "qwen3moe")) *kind = AERO_ARCH_QWEN3; // qwen3 attention (Q/K norms) + MoE FFN
    else if (!strcmp(arch, "deepseek2")) *kind = AERO_ARCH_DEEPSEEK2; // latent attention (mla.c) + MoE FFN
    else
        return aero_fail(err, AERO_ERR_UNSUPPORTED,
                         "unsupported architecture '%s' (supported: llama (and Mixtral), "
                         "qwen2, qwen3, qwen2moe, qwen3moe, deepseek2)",
                         arch);
    snprintf(hp->arch, sizeof hp->arch, "%s", arch);
    int64_t n_layer, n_embd, n_ff, n_head, n_head_kv, n_ctx, key_len, rope_dim, orig_ctx;
    double eps, base, factor, low, high;
    if (get_int(g, arch, "block_count", true, 0, &n_layer, err) ||
        get_int(g, arch, "embedding_length", true, 0, &n_embd, err) ||
        get_int(g, arch, "feed_forward_length", true, 0, &n_ff, err) ||
        get_int(g, arch, "attention.head_count", true, 0, &n_head, err) ||
        get_int(g, arch, "attention.head_count_kv", false, n_head, &n_head_kv, err) ||
        get_int(g, arch, "context_length", true, 0, &n_ctx, err))
        return err->code;
    if (n_layer < 1 || n_embd < 1 || n_ff < 1 || n_head < 1 || n_head_kv < 1 || n_ctx < 1)
        return aero_fail(err, AERO_ERR_FORMAT,
                         "%s hyperparameters must be positive (block_count %lld, embedding_length "
                         "%lld, feed_forward_length %lld, head_count %lld, head_count_kv %lld, context_length %lld)",
                         arch, (long long)n_layer, (long long)n_embd, (long long)n_ff, (long long)n_head,
                         (long long)n_head_kv, (long long)n_ctx);
    if (n_head % n_head_kv)
        return aero_fail(err, AERO_ERR_FORMAT, "%s.attention.head_count %lld is not a multiple of head_count_kv %lld",
                         arch, (long long)n_head, (long long)n_head_kv);
    if (get_int(g, arch, "attention.key_length", false, n_embd / n_head, &key_len, err) ||
        get_int(g, arch, "rope.dimension_count", false, key_len, &rope_dim, err))
        return err->code;
    if (key_len < 2 || key_len % 2 || rope_dim > key_len || rope_dim % 2)
        return aero_fail(err, AERO_ERR_FORMAT, "%s head size %lld / rope.dimension_count %lld are inconsistent", arch,
                         (long long)key_len, (long long)rope_dim);
    if (*kind == AERO_ARCH_LLAMA && key_len * n_head != n_embd)
        return aero_fail(err, AERO_ERR_FORMAT, "%s.embedding_length %lld != head_count %lld x head size %lld", arch,
                         (long long)n_embd, (long long)n_head, (long long)key_len);
    if (get_float(g, arch, "attention.layer_norm_rms_epsilon", *kind == AERO_ARCH_LLAMA ? 1e-5 : 1e-6, &eps, err) ||
        get_float(g, arch, "rope.freq_base", 10000.0, &base, err) ||
        get_float(g, arch, "rope.scaling.factor", 0.0, &factor, err) ||
        get_float(g, arch, "rope.scaling.low_freq_factor", 1.0, &low, err) ||
        get_float(g, arch, "rope.scaling.high_freq_factor", 4.0, &high, err) ||
        get_int(g, arch, "rope.scaling.original_context_length", false, 8192, &orig_ctx, err))
        return err->code;
    if (!(eps > 0 && eps < 1))
        return aero_fail(err, AERO_ERR_FORMAT, "%s.attention.layer_norm_rms_epsilon = %g is invalid", arch, eps);
    if (!(base > 1)) return aero_fail(err, AERO_ERR_FORMAT, "%s.rope.freq_base = %g is invalid", arch, base);
    char key[160];
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    const char *stype = aero_gguf_get_str(g, key);
    hp->rope_scaling = AERO_ROPE_SCALING_NONE;
    if (stype && strcmp(stype, "none")) {
        if (!strcmp(stype, "linear")) hp->rope_scaling = AERO_ROPE_SCALING_LINEAR;
        else if (!strcmp(stype, "llama3")) hp->rope_scaling = AERO_ROPE_SCALING_LLAMA3;
        else if (!strcmp(stype, "yarn") && *kind == AERO_ARCH_DEEPSEEK2) hp->rope_scaling = AERO_ROPE_SCALING_YARN;
        else
            return aero_fail(err, AERO_ERR_UNSUPPORTED, "%s = '%s' is not supported (none, linear, llama3)", key,
                             stype);
        if (!(factor > 0)) return aero_fail(err, AERO_ERR_FORMAT, "%s.rope.scaling.factor is missing or invalid", arch);
    }
    hp->n_layer = (int)n_layer;
    hp->n_embd = (int)n_embd;
    hp->n_ff = (int)n_ff;
    hp->n_head = (int)n_head;
    hp->n_head_kv = (int)n_head_kv;
    hp->head_dim = (int)key_len;
    hp->rope_dim = (int)rope_dim;
    hp->n_ctx_train = (int)n_ctx;
    hp->norm_eps = (float)eps;
    hp->rope_base = (float)base;
    hp->rope_scale_factor = (float)factor;
    hp->rope_low_freq = (float)low;
    hp->rope_high_freq = (float)high;
    hp->rope_orig_ctx = (int)orig_ctx;
    if (*kind == AERO_ARCH_DEEPSEEK2) {
        aero_mla_params mla;
        return aero_mla_hparams_read(g, hp, &mla, err);
    }
    return AERO_OK;
}

// Reads the MoE keys apart from the dense ones, so that a dense model's hyperparameters stay as they were.
aero_status aero_moe_hparams_read(const aero_gguf *g, const aero_hparams *hp, bool *moe, aero_moe_params *p,
                                  aero_error *err) {
    const char *arch = hp->arch;
    bool q2 = !strcmp(arch, "qwen2moe"), q3 = !strcmp(arch, "qwen3moe"), ds2 = !strcmp(arch, "deepseek2");
    memset(p, 0, sizeof *p);
    int64_t n_expert, k, n_ff_exp, n_ff_sh, n_group, n_group_used, gating, n_shared = 0, norm = 0;
    double scale;
    if (get_int(g, arch, "expert_count", false, 0, &n_expert, err) ||
        get_int(g, arch, "expert_used_count", false, 0, &k, err))
        return err->code;
    *moe = n_expert > 0;
    if (!*moe) {
        if (q2 || q3 || ds2) return aero_fail(err, AERO_ERR_FORMAT, "metadata %s.expert_count is missing or 0", arch);
        return AERO_OK;
    }
    if (k < 1) return aero_fail(err, AERO_ERR_FORMAT, "metadata %s.expert_used_count is missing or 0", arch);
    // qwen2moe/qwen3moe: n_ff_exp falls back to n_ff / k; Mixtral's experts are n_ff wide
    if (get_int(g, arch, "expert_feed_forward_length", false, (q2 || q3) ? hp->n_ff / k : hp->n_ff, &n_ff_exp, err) ||
        get_int(g, arch, "expert_shared_feed_forward_length", false, q2 ? hp->n_ff : 0, &n_ff_sh, err) ||
        get_int(g, arch, "expert_group_count", false, 0, &n_group, err) ||
        get_int(g, arch, "expert_group_used_count", false, 0, &n_group_used, err) ||
        get_int(g, arch, "expert_gating_func", false, AERO_MOE_GATING_SOFTMAX, &gating, err) ||
        get_float(g, arch, "expert_weights_scale", 0.0, &scale, err))
        return err->code;
    if (gating == 0) gating = AERO_MOE_GATING_SOFTMAX;
    if (ds2) { // shared experts of the routed experts' width; sigmoid routing (V3) and weight normalisation keyed
        if (get_int(g, arch, "expert_feed_forward_length", true, 0, &n_ff_exp, err) ||
            get_int(g, arch, "expert_shared_count", true, 0, &n_shared, err))
            return err->code;
        char key[160];
        bool nb = false;
        snprintf(key, sizeof key, "%s.expert_weights_norm", arch);
        if (aero_gguf_get_bool(g, key, &nb)) norm = nb;
        else if (aero_gguf_get(g, key)) return aero_fail(err, AERO_ERR_FORMAT, "metadata %s is not a bool", key);
        if (gating != AERO_MOE_GATING_SOFTMAX && gating != AERO_MOE_GATING_SIGMOID)
            return aero_fail(err, AERO_ERR_UNSUPPORTED,
                             "%s.expert_gating_func = %lld is not supported (1 softmax, 2 sigmoid)", arch,
                             (long long)gating);
        n_ff_sh = n_ff_exp * n_shared;
    } else if (gating != AERO_MOE_GATING_SOFTMAX)
        return aero_fail(err, AERO_ERR_UNSUPPORTED, "%s.expert_gating_func = %lld is not supported for %s (softmax)",
                         arch, (long long)gating, arch);
    p->n_embd = hp->n_embd;
    p->n_ff_exp = (int)n_ff_exp;
    p->n_ff_shexp = (int)n_ff_sh;
    p->n_expert = (int)n_expert;
    p->n_expert_used = (int)k;
    p->gating = (aero_moe_gating)gating;
    p->norm_w = ds2 ? norm != 0 : !q2; // build_moe_ffn's norm_w: qwen3moe and Mixtral true, qwen2moe false
    p->w_scale = (float)scale;
    p->n_group = (int)n_group;
    p->n_group_used = (int)n_group_used;
    if (aero_moe_params_check(p, err)) {
        aero_error_prefix(err, "%s: ", arch);
        return err->code;
    }
    return AERO_OK;
}
