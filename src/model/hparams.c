// Hyperparameters from GGUF metadata: read, defaulted where the format allows, and checked for consistency,
// so a bad file fails at load with the key named rather than producing garbage later.
#include <math.h>
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

// Gemma 2 and 3 as llama.cpp's loader sets them up (llama_model::load_hparams): the embedding scaled by
// sqrt(n_embd); queries by 1/sqrt(head size), or 1/sqrt(n_embd / n_head) for the 27B models (told apart by their
// layer count, 46 and 62); Gemma 2: every other layer (even ones) slides over 4096 positions unless the file says,
// scores capped at 50 and logits at 30 unless it says; Gemma 3: five layers in six slide when the file gives a
// window, their rope base 10000 unscaled, and no capping unless a window-less file names a final cap.
static aero_status gemma_read(const aero_gguf *g, const char *arch, aero_arch_kind kind, aero_hparams *hp,
                              aero_error *err) {
    int64_t n_swa;
    double acap, fcap;
    bool g2 = kind == AERO_ARCH_GEMMA2;
    if (get_int(g, arch, "attention.sliding_window", false, g2 ? 4096 : 0, &n_swa, err) ||
        get_float(g, arch, "attn_logit_softcapping", g2 ? 50.0 : 0.0, &acap, err) ||
        get_float(g, arch, "final_logit_softcapping", g2 ? 30.0 : 0.0, &fcap, err))
        return err->code;
    if (acap < 0 || fcap < 0)
        return aero_fail(err, AERO_ERR_FORMAT, "%s soft-capping %g / %g is invalid", arch, acap, fcap);
    hp->embd_scale = sqrtf((float)hp->n_embd);
    bool big = hp->n_layer == (g2 ? 46 : 62);
    hp->attn_scale = big ? 1.0f / sqrtf((float)(hp->n_embd / hp->n_head)) : 1.0f / sqrtf((float)hp->head_dim);
    hp->ffn_gelu = true;
    hp->post_norms = true;
    hp->n_swa = (int)n_swa;
    if (g2) {
        hp->swa_pattern = 2;
        hp->attn_softcap = (float)acap;
        hp->final_softcap = (float)fcap;
    } else if (n_swa > 0) {
        hp->swa_pattern = 6;
        hp->rope_base_swa = 10000.0f;
    } else {
        hp->final_softcap = (float)fcap;
    }
    return AERO_OK;
}

// Granite's multipliers as llama.cpp reads them: logit_scale required, the others optional (0: not applied); the
// attention scale replaces 1/sqrt(head size); rope.scaling.finetuned false turns rotation off.
static aero_status granite_read(const aero_gguf *g, const char *arch, aero_hparams *hp, aero_error *err) {
    double logit, resid, embd, attn;
    char key[160];
    snprintf(key, sizeof key, "%s.logit_scale", arch);
    if (!aero_gguf_get_f64(g, key, &logit)) return aero_fail(err, AERO_ERR_FORMAT, "metadata %s is missing", key);
    if (get_float(g, arch, "residual_scale", 0.0, &resid, err) ||
        get_float(g, arch, "embedding_scale", 0.0, &embd, err) ||
        get_float(g, arch, "attention.scale", 0.0, &attn, err))
        return err->code;
    if (!(logit != 0) || resid < 0 || embd < 0 || attn < 0)
        return aero_fail(err, AERO_ERR_FORMAT, "%s scales (logit %g, residual %g, embedding %g, attention %g) are invalid",
                         arch, logit, resid, embd, attn);
    hp->logit_scale = (float)logit;
    hp->residual_scale = (float)resid;
    hp->embd_scale = (float)embd;
    hp->attn_scale = (float)attn;
    bool finetuned = true;
    snprintf(key, sizeof key, "%s.rope.scaling.finetuned", arch);
    aero_gguf_get_bool(g, key, &finetuned);
    hp->no_rope = !finetuned;
    int64_t n_expert;
    if (get_int(g, arch, "expert_count", false, 0, &n_expert, err)) return err->code;
    if (n_expert > 0) return aero_fail(err, AERO_ERR_UNSUPPORTED, "%s with experts is not supported", arch);
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
    else if (!strcmp(arch, "gemma2")) *kind = AERO_ARCH_GEMMA2;
    else if (!strcmp(arch, "gemma3")) *kind = AERO_ARCH_GEMMA3;
    else if (!strcmp(arch, "phi3")) *kind = AERO_ARCH_PHI3;
    else if (!strcmp(arch, "granite")) *kind = AERO_ARCH_GRANITE;
    else if (!strcmp(arch, "olmo2")) *kind = AERO_ARCH_OLMO2;
    else if (!strcmp(arch, "mistral3")) *kind = AERO_ARCH_MISTRAL3;
    else if (!strcmp(arch, "deepseek2")) *kind = AERO_ARCH_DEEPSEEK2; // latent attention (mla.c) + MoE FFN
    else
        return aero_fail(err, AERO_ERR_UNSUPPORTED,
                         "unsupported architecture '%s' (supported: llama (and Mixtral, Mistral), qwen2, qwen3, "
                         "qwen2moe, qwen3moe, gemma2, gemma3, phi3, granite, olmo2, mistral3, deepseek2)",
                         arch);
    snprintf(hp->arch, sizeof hp->arch, "%s", arch);
    int64_t n_layer, n_embd, n_ff, n_head, n_head_kv, n_ctx, key_len, rope_dim, orig_ctx;
    double eps, base, factor, low, high, attn_factor, log_mul;
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
    // key_length may differ from embedding_length / head_count (Mistral Nemo, Qwen3): the projections take their
    // shapes from it. A value head of another size (DeepSeek's MLA) is not computed here.
    int64_t val_len;
    if (get_int(g, arch, "attention.value_length", false, key_len, &val_len, err)) return err->code;
    if (val_len != key_len && *kind != AERO_ARCH_DEEPSEEK2) // MLA: its own head sizes (mla.c)
        return aero_fail(err, AERO_ERR_UNSUPPORTED,
                         "%s.attention.value_length %lld != key_length %lld is not supported", arch,
                         (long long)val_len, (long long)key_len);
    if (get_float(g, arch, "attention.layer_norm_rms_epsilon", *kind == AERO_ARCH_LLAMA ? 1e-5 : 1e-6, &eps, err) ||
        get_float(g, arch, "rope.freq_base", 10000.0, &base, err) ||
        get_float(g, arch, "rope.scaling.factor", 0.0, &factor, err) ||
        get_float(g, arch, "rope.scaling.low_freq_factor", 1.0, &low, err) ||
        get_float(g, arch, "rope.scaling.high_freq_factor", 4.0, &high, err) ||
        get_int(g, arch, "rope.scaling.original_context_length", false, 0, &orig_ctx, err) ||
        get_float(g, arch, "rope.scaling.attn_factor", 1.0, &attn_factor, err) ||
        get_float(g, arch, "rope.scaling.yarn_log_multiplier", 0.0, &log_mul, err))
        return err->code;
    if (factor == 0) // llama.cpp's older key for the same divisor
        if (get_float(g, arch, "rope.scale_linear", 0.0, &factor, err)) return err->code;
    if (!(eps > 0 && eps < 1))
        return aero_fail(err, AERO_ERR_FORMAT, "%s.attention.layer_norm_rms_epsilon = %g is invalid", arch, eps);
    if (!(base > 1)) return aero_fail(err, AERO_ERR_FORMAT, "%s.rope.freq_base = %g is invalid", arch, base);
    char key[160];
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    const char *stype = aero_gguf_get_str(g, key);
    // As llama.cpp: a factor divides every rotation speed whatever the type (a factor without a type is linear
    // scaling); YaRN then blends the divided and undivided speeds per pair and scales cos and sin; LongRoPE's
    // per-pair divisors are tensors (rope_factors_long/short) picked by the context length.
    hp->rope_scaling = factor > 0 && factor != 1 ? AERO_ROPE_SCALING_LINEAR : AERO_ROPE_SCALING_NONE;
    if (stype && !strcmp(stype, "none")) hp->rope_scaling = AERO_ROPE_SCALING_NONE; // llama.cpp: never scaled
    if (stype && strcmp(stype, "none")) {
        if (!strcmp(stype, "linear")) hp->rope_scaling = AERO_ROPE_SCALING_LINEAR;
        else if (!strcmp(stype, "llama3")) hp->rope_scaling = AERO_ROPE_SCALING_LLAMA3;
        else if (!strcmp(stype, "yarn")) hp->rope_scaling = AERO_ROPE_SCALING_YARN;
        else if (!strcmp(stype, "longrope")) hp->rope_scaling = AERO_ROPE_SCALING_LONGROPE;
        else
            return aero_fail(err, AERO_ERR_UNSUPPORTED,
                             "%s = '%s' is not supported (none, linear, yarn, longrope, llama3)", key, stype);
        if (!(factor > 0) && hp->rope_scaling != AERO_ROPE_SCALING_LONGROPE)
            return aero_fail(err, AERO_ERR_FORMAT, "%s.rope.scaling.factor is missing or invalid", arch);
    }
    // llama.cpp reads the YaRN log multiplier for mistral3 and deepseek2 (mla.c's attention scale) only
    if (log_mul != 0 && *kind != AERO_ARCH_MISTRAL3 && *kind != AERO_ARCH_DEEPSEEK2) log_mul = 0;
    if (!(attn_factor > 0))
        return aero_fail(err, AERO_ERR_FORMAT, "%s.rope.scaling.attn_factor = %g is invalid", arch, attn_factor);
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
    hp->rope_yarn_beta_fast = 32.0f; // llama.cpp reads yarn_beta_* keys for a few other architectures only
    hp->rope_yarn_beta_slow = 1.0f;
    hp->rope_attn_factor = (float)attn_factor;
    aero_gguf_get_bool(g, "aerollm.hf.qk_halves", &hp->qk_halves); // set only by model/hf_load.c
    if (hp->qk_halves && (hp->head_dim > 1024 || hp->rope_dim != hp->head_dim))
        return aero_fail(err, AERO_ERR_UNSUPPORTED, "aerollm.hf.qk_halves with head size %d (rope %d) is not supported",
                         hp->head_dim, hp->rope_dim);
    if (*kind == AERO_ARCH_DEEPSEEK2) {
        aero_mla_params mla;
        return aero_mla_hparams_read(g, hp, &mla, err);
    }
    if (*kind == AERO_ARCH_GEMMA2 || *kind == AERO_ARCH_GEMMA3) return gemma_read(g, arch, *kind, hp, err);
    if (*kind == AERO_ARCH_GRANITE) return granite_read(g, arch, hp, err);
    if (*kind == AERO_ARCH_MISTRAL3) { // llama with the YaRN keys read and Llama 4's query temperature
        double bf, bs, temp;
        if (get_float(g, arch, "rope.scaling.yarn_beta_fast", 32.0, &bf, err) ||
            get_float(g, arch, "rope.scaling.yarn_beta_slow", 1.0, &bs, err) ||
            get_float(g, arch, "attention.temperature_scale", 0.0, &temp, err))
            return err->code;
        hp->rope_yarn_beta_fast = (float)bf;
        hp->rope_yarn_beta_slow = (float)bs;
        hp->rope_yarn_log_mul = (float)log_mul;
        hp->attn_temp_scale = (float)temp;
        hp->attn_temp_floor = hp->rope_orig_ctx > 0 ? hp->rope_orig_ctx : hp->n_ctx_train;
    }
    if (*kind == AERO_ARCH_OLMO2) {
        int64_t n_swa;
        if (get_int(g, arch, "attention.sliding_window", false, 0, &n_swa, err)) return err->code;
        if (n_swa > 0)
            return aero_fail(err, AERO_ERR_UNSUPPORTED, "%s with a sliding window (OLMo 3) is not supported", arch);
        hp->post_norms = hp->qk_norm_full = true;
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
