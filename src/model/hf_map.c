// A Hugging Face directory mapped onto llama.cpp's architecture names, metadata keys and tensor names: one table
// from the HF architecture to the GGUF one, config.json keys to the keys hparams.c reads, and HF tensor names to
// the names map_weights looks up. Facts follow llama.cpp's convert_hf_to_gguf.py: Q/K rows of the llama family
// permuted from rotate-halves into adjacent pairs, Gemma norms stored as weight - 1, Llama 3 rope scaling as a
// rope_freqs tensor.
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/dtype.h"
#include "../kernels/kernels.h"
#include "hf_internal.h"

struct hf_arch {
    const char *hf;   // config.json architectures[0]
    const char *gguf; // general.architecture
    bool perm;        // llama.cpp's LlamaModel (and subclasses) permutes q_proj/k_proj rows
    bool add_one;     // Gemma: every *norm.weight + 1
    bool post_norms;  // post_attention_layernorm is a post-norm (not the FFN's pre-norm)
};

static const hf_arch ARCHS[] = {
    {"LlamaForCausalLM", "llama", true, false, false},     {"MistralForCausalLM", "llama", true, false, false},
    {"MixtralForCausalLM", "llama", true, false, false},   {"GraniteForCausalLM", "granite", true, false, false},
    {"Qwen2ForCausalLM", "qwen2", false, false, false},    {"Qwen3ForCausalLM", "qwen3", false, false, false},
    {"Qwen3MoeForCausalLM", "qwen3moe", false, false, false}, {"Gemma2ForCausalLM", "gemma2", false, true, true},
    {"Gemma3ForCausalLM", "gemma3", false, true, true},    {"Phi3ForCausalLM", "phi3", false, false, false},
    {"Olmo2ForCausalLM", "olmo2", false, false, true},
};
#define SUPPORTED_LIST                                                                                             \
    "LlamaForCausalLM, MistralForCausalLM, MixtralForCausalLM, GraniteForCausalLM, Qwen2ForCausalLM, "            \
    "Qwen3ForCausalLM, Qwen3MoeForCausalLM, Gemma2ForCausalLM, Gemma3ForCausalLM, Phi3ForCausalLM, "              \
    "Olmo2ForCausalLM"

// ---- config.json ----

// An integer config key (a JSON integer, or a real that is one); dflt when absent or null.
static aero_status cfg_int(const hf_model *m, const char *key, bool required, int64_t dflt, int64_t *out,
                           aero_error *err) {
    const json_t *v = json_object_get(m->cfg, key);
    if (!v || json_is_null(v)) {
        if (required) return aero_fail(err, AERO_ERR_FORMAT, "%s/config.json: '%s' is missing", m->dir, key);
        *out = dflt;
        return AERO_OK;
    }
    double d = json_number_value(v);
    if (!json_is_number(v) || d != floor(d) || d < 0 || d > (double)(1ll << 31))
        return aero_fail(err, AERO_ERR_FORMAT, "%s/config.json: '%s' is not a size", m->dir, key);
    *out = (int64_t)d;
    return AERO_OK;
}

// A number config key; dflt when absent or null.
static aero_status cfg_num(const hf_model *m, const json_t *o, const char *key, double dflt, double *out,
                           aero_error *err) {
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return AERO_OK;
    }
    if (!json_is_number(v)) return aero_fail(err, AERO_ERR_FORMAT, "%s/config.json: '%s' is not a number", m->dir, key);
    *out = json_number_value(v);
    return AERO_OK;
}

// "<arch>.<suffix>" for the writer.
static const char *akey(const hf_model *m, const char *suffix) {
    static __thread char key[160];
    snprintf(key, sizeof key, "%s.%s", m->gguf_arch, suffix);
    return key;
}

// The rope_freqs.weight llama.cpp's converter computes for rope_type "llama3": per pair, 1 (short wavelengths),
// factor (long ones) or the smooth blend between.
static aero_status llama3_freqs(hf_model *m, const json_t *rs, double base, aero_error *err) {
    double factor, low, high, orig;
    if (cfg_num(m, rs, "factor", 8.0, &factor, err) || cfg_num(m, rs, "low_freq_factor", 1.0, &low, err) ||
        cfg_num(m, rs, "high_freq_factor", 4.0, &high, err) ||
        cfg_num(m, rs, "original_max_position_embeddings", 8192, &orig, err))
        return err->code;
    if (!(factor > 0) || !(high > low) || !(orig > 0))
        return aero_fail(err, AERO_ERR_FORMAT, "%s/config.json: rope_scaling (llama3) has invalid factors", m->dir);
    int half = m->rope_dim / 2;
    hf_tensor *t = &m->t[m->n_t];
    memset(t, 0, sizeof *t);
    if (!(t->data = malloc(sizeof(float) * (size_t)half)))
        return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    double low_wl = orig / low, high_wl = orig / high;
    for (int i = 0; i < half; i++) {
        float freq = (float)(1.0 / pow(base, (double)(2 * i) / m->rope_dim)); // float32, as torch computes it
        double wl = 2 * M_PI / freq, f;
        if (wl < high_wl) f = 1;
        else if (wl > low_wl) f = factor;
        else {
            double smooth = (orig / wl - low) / (high - low);
            f = 1 / ((1 - smooth) / factor + smooth);
        }
        t->data[i] = (float)f;
    }
    snprintf(t->name, sizeof t->name, "rope_freqs.weight");
    t->n_dims = 1;
    t->ne[0] = (uint64_t)half;
    t->ne[1] = t->ne[2] = t->ne[3] = 1;
    m->n_t++;
    return AERO_OK;
}

// LongRoPE (Phi-3): the long and short per-pair divisors as rope_factors_long/short.weight, plus the attention
// factor llama.cpp's converter derives when the config gives none.
static aero_status longrope(hf_model *m, const json_t *rs, int64_t n_ctx, aero_error *err) {
    int64_t orig;
    if (cfg_int(m, "original_max_position_embeddings", true, 0, &orig, err)) return err->code;
    static const char *const keys[2] = {"long_factor", "short_factor"};
    static const char *const names[2] = {"rope_factors_long.weight", "rope_factors_short.weight"};
    int half = m->rope_dim / 2;
    for (int k = 0; k < 2; k++) {
        const json_t *a = json_object_get(rs, keys[k]);
        if (!json_is_array(a) || json_array_size(a) != (size_t)half)
            return aero_fail(err, AERO_ERR_FORMAT, "%s/config.json: rope_scaling.%s must hold %d numbers", m->dir,
                             keys[k], half);
        hf_tensor *t = &m->t[m->n_t];
        memset(t, 0, sizeof *t);
        if (!(t->data = malloc(sizeof(float) * (size_t)half))) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
        m->n_t++;
        for (int i = 0; i < half; i++) t->data[i] = (float)json_number_value(json_array_get(a, (size_t)i));
        snprintf(t->name, sizeof t->name, "%s", names[k]);
        t->n_dims = 1;
        t->ne[0] = (uint64_t)half;
        t->ne[1] = t->ne[2] = t->ne[3] = 1;
    }
    double scale = (double)n_ctx / (double)orig, attn;
    if (cfg_num(m, rs, "attention_factor", scale <= 1.0 ? 1.0 : sqrt(1 + log(scale) / log((double)orig)), &attn, err))
        return err->code;
    aero_gguf_set_u32(m->w, akey(m, "rope.scaling.original_context_length"), (uint32_t)orig);
    aero_gguf_set_f32(m->w, akey(m, "rope.scaling.attn_factor"), (float)attn);
    aero_gguf_set_str(m->w, akey(m, "rope.scaling.type"), "longrope");
    return AERO_OK;
}

// The rope settings: rope_scaling, or transformers 5's rope_parameters (per layer type for Gemma 3: which = 
// "full_attention" or "sliding_attention"); NULL when none.
static const json_t *rope_params(const hf_model *m, const char *which) {
    const json_t *rs = json_object_get(m->cfg, "rope_scaling");
    if (rs && !json_is_null(rs)) return rs;
    rs = json_object_get(m->cfg, "rope_parameters");
    const json_t *per = json_object_get(rs, which);
    return json_is_object(per) ? per : json_is_object(rs) && !json_object_get(rs, "sliding_attention") ? rs : NULL;
}

// rope_theta at the top of config.json, else in rope_parameters (transformers 5).
static aero_status rope_theta(const hf_model *m, const char *which, double dflt, double *out, aero_error *err) {
    const json_t *v = json_object_get(m->cfg, "rope_theta");
    if (v && !json_is_null(v)) return cfg_num(m, m->cfg, "rope_theta", dflt, out, err);
    const json_t *rp = json_object_get(m->cfg, "rope_parameters"), *per = json_object_get(rp, which);
    return cfg_num(m, json_is_object(per) ? per : rp, "rope_theta", dflt, out, err);
}

// rope_scaling of config.json as llama.cpp's keys (or tensors, for llama3 and longrope).
static aero_status rope_keys(hf_model *m, double base, int64_t n_ctx, aero_error *err) {
    const json_t *rs = rope_params(m, "full_attention");
    if (!rs || json_is_null(rs)) return AERO_OK;
    if (!json_is_object(rs))
        return aero_fail(err, AERO_ERR_FORMAT, "%s/config.json: rope_scaling is not an object", m->dir);
    const json_t *tv = json_object_get(rs, "rope_type");
    if (!json_is_string(tv)) tv = json_object_get(rs, "type");
    const char *type = json_is_string(tv) ? json_string_value(tv) : "default";
    double factor, orig;
    if (cfg_num(m, rs, "factor", 1.0, &factor, err) ||
        cfg_num(m, rs, "original_max_position_embeddings", 0, &orig, err))
        return err->code;
    if (!strcmp(type, "default")) return AERO_OK;
    if (!strcmp(type, "llama3")) return llama3_freqs(m, rs, base, err);
    if (!strcmp(type, "longrope")) return longrope(m, rs, n_ctx, err);
    if (!strcmp(type, "linear") || !strcmp(type, "yarn")) {
        aero_gguf_set_str(m->w, akey(m, "rope.scaling.type"), type);
        aero_gguf_set_f32(m->w, akey(m, "rope.scaling.factor"), (float)factor);
        if (orig > 0) aero_gguf_set_u32(m->w, akey(m, "rope.scaling.original_context_length"), (uint32_t)orig);
        return AERO_OK;
    }
    return aero_fail(err, AERO_ERR_UNSUPPORTED,
                     "%s/config.json: rope_scaling type '%s' is not supported (linear, yarn, llama3, longrope)", m->dir,
                     type);
}

// The checks and keys of one architecture beyond the common ones.
static aero_status arch_keys(hf_model *m, aero_error *err) {
    const char *a = m->gguf_arch;
    double v;
    if (!strcmp(a, "gemma2") || !strcmp(a, "gemma3")) {
        bool g2 = !strcmp(a, "gemma2");
        int64_t swa, qpas, pattern;
        if (cfg_int(m, "sliding_window", false, 0, &swa, err) ||
            cfg_int(m, "query_pre_attn_scalar", false, m->head_dim, &qpas, err) ||
            cfg_int(m, "sliding_window_pattern", false, 6, &pattern, err))
            return err->code;
        bool big = m->n_layer == (g2 ? 46 : 62);
        int64_t want = big ? m->n_embd / m->n_head : m->head_dim;
        if (qpas != want)
            return aero_fail(err, AERO_ERR_UNSUPPORTED,
                             "%s/config.json: query_pre_attn_scalar %lld (llama.cpp's %s uses %lld) is not supported",
                             m->dir, (long long)qpas, a, (long long)want);
        if (swa > 0) aero_gguf_set_u32(m->w, akey(m, "attention.sliding_window"), (uint32_t)swa);
        if (g2) {
            if (cfg_num(m, m->cfg, "attn_logit_softcapping", 0, &v, err)) return err->code;
            if (v > 0) aero_gguf_set_f32(m->w, akey(m, "attn_logit_softcapping"), (float)v);
            if (cfg_num(m, m->cfg, "final_logit_softcapping", 0, &v, err)) return err->code;
            if (v > 0) aero_gguf_set_f32(m->w, akey(m, "final_logit_softcapping"), (float)v);
        } else {
            const json_t *lt = json_object_get(m->cfg, "layer_types"); // newer configs: one entry per layer
            for (size_t l = 0; swa > 0 && l < json_array_size(lt); l++) {
                const char *ty = json_string_value(json_array_get(lt, l));
                bool sliding = ty && !strcmp(ty, "sliding_attention");
                if (sliding != (l % 6 < 5))
                    return aero_fail(err, AERO_ERR_UNSUPPORTED,
                                     "%s/config.json: layer_types[%zu] = %s; gemma3 layers are supported as five "
                                     "sliding in six",
                                     m->dir, l, ty ? ty : "?");
            }
            if (swa > 0 && pattern != 6)
                return aero_fail(err, AERO_ERR_UNSUPPORTED,
                                 "%s/config.json: sliding_window_pattern %lld is not supported (6)", m->dir,
                                 (long long)pattern);
            if (json_object_get(m->cfg, "rope_local_base_freq")) {
                if (cfg_num(m, m->cfg, "rope_local_base_freq", 10000.0, &v, err)) return err->code;
            } else if (rope_theta(m, "sliding_attention", 10000.0, &v, err)) {
                return err->code;
            }
            if (v != 10000.0)
                return aero_fail(err, AERO_ERR_UNSUPPORTED,
                                 "%s/config.json: rope_local_base_freq %g is not supported (10000)", m->dir, v);
            const json_t *acap = json_object_get(m->cfg, "attn_logit_softcapping");
            if (acap && !json_is_null(acap))
                return aero_fail(err, AERO_ERR_UNSUPPORTED, "%s/config.json: gemma3 with attn_logit_softcapping",
                                 m->dir);
        }
    } else if (!strcmp(a, "qwen2") || !strcmp(a, "qwen3") || !strcmp(a, "qwen3moe")) {
        if (json_is_true(json_object_get(m->cfg, "use_sliding_window")))
            return aero_fail(err, AERO_ERR_UNSUPPORTED, "%s/config.json: use_sliding_window true is not supported",
                             m->dir);
    }
    if (!strcmp(a, "granite")) {
        static const char *const from[4] = {"embedding_multiplier", "residual_multiplier", "attention_multiplier",
                                            "logits_scaling"};
        static const char *const to[4] = {"embedding_scale", "residual_scale", "attention.scale", "logit_scale"};
        for (int k = 0; k < 4; k++) {
            if (cfg_num(m, m->cfg, from[k], 0, &v, err)) return err->code;
            if (v != 0) aero_gguf_set_f32(m->w, akey(m, to[k]), (float)v);
        }
    }
    if (!strcmp(a, "qwen3moe")) {
        int64_t ffe, k, sparse;
        if (cfg_int(m, "moe_intermediate_size", true, 0, &ffe, err) ||
            cfg_int(m, "num_experts_per_tok", true, 0, &k, err) ||
            cfg_int(m, "decoder_sparse_step", false, 1, &sparse, err))
            return err->code;
        const json_t *norm = json_object_get(m->cfg, "norm_topk_prob"), *dense = json_object_get(m->cfg, "mlp_only_layers");
        if (json_is_false(norm))
            return aero_fail(err, AERO_ERR_UNSUPPORTED, "%s/config.json: norm_topk_prob false is not supported", m->dir);
        if (sparse != 1 || json_array_size(dense) > 0)
            return aero_fail(err, AERO_ERR_UNSUPPORTED, "%s/config.json: dense layers between MoE ones are not supported",
                             m->dir);
        aero_gguf_set_u32(m->w, akey(m, "expert_count"), (uint32_t)m->n_expert);
        aero_gguf_set_u32(m->w, akey(m, "expert_used_count"), (uint32_t)k);
        aero_gguf_set_u32(m->w, akey(m, "expert_feed_forward_length"), (uint32_t)ffe);
    }
    if (!strcmp(m->arch->hf, "MixtralForCausalLM")) {
        int64_t k;
        if (cfg_int(m, "num_experts_per_tok", true, 0, &k, err)) return err->code;
        aero_gguf_set_u32(m->w, akey(m, "expert_count"), (uint32_t)m->n_expert);
        aero_gguf_set_u32(m->w, akey(m, "expert_used_count"), (uint32_t)k);
    }
    return AERO_OK;
}

// Common keys, as LlamaModel/TextModel.set_gguf_parameters writes them.
static aero_status config_keys(hf_model *m, aero_error *err) {
    int64_t n_ctx, n_ff;
    double eps, base;
    if (cfg_int(m, "max_position_embeddings", true, 0, &n_ctx, err) ||
        cfg_int(m, "intermediate_size", true, 0, &n_ff, err) ||
        cfg_num(m, m->cfg, "rms_norm_eps", 1e-6, &eps, err) || rope_theta(m, "full_attention", 10000.0, &base, err))
        return err->code;
    aero_gguf_writer *w = m->w;
    aero_gguf_set_str(w, "general.architecture", m->gguf_arch);
    const char *slash = strrchr(m->dir, '/');
    aero_gguf_set_str(w, "general.name", slash && slash[1] ? slash + 1 : m->dir);
    aero_gguf_set_u32(w, akey(m, "context_length"), (uint32_t)n_ctx);
    aero_gguf_set_u32(w, akey(m, "embedding_length"), (uint32_t)m->n_embd);
    aero_gguf_set_u32(w, akey(m, "feed_forward_length"), (uint32_t)n_ff);
    aero_gguf_set_u32(w, akey(m, "block_count"), (uint32_t)m->n_layer);
    aero_gguf_set_u32(w, akey(m, "attention.head_count"), (uint32_t)m->n_head);
    aero_gguf_set_u32(w, akey(m, "attention.head_count_kv"), (uint32_t)m->n_head_kv);
    aero_gguf_set_f32(w, akey(m, "attention.layer_norm_rms_epsilon"), (float)eps);
    aero_gguf_set_f32(w, akey(m, "rope.freq_base"), (float)base);
    aero_gguf_set_u32(w, akey(m, "vocab_size"), (uint32_t)m->n_vocab);
    if (m->head_dim != m->n_embd / m->n_head) {
        aero_gguf_set_u32(w, akey(m, "attention.key_length"), (uint32_t)m->head_dim);
        aero_gguf_set_u32(w, akey(m, "attention.value_length"), (uint32_t)m->head_dim);
    }
    double rot;
    if (cfg_num(m, m->cfg, "partial_rotary_factor", 1.0, &rot, err)) return err->code;
    int rope_dim = (int)(rot * m->head_dim) / 2 * 2; // Phi-4-mini and others rotate a part of each head
    if (rope_dim < 2 || rope_dim > m->head_dim)
        return aero_fail(err, AERO_ERR_FORMAT, "%s/config.json: partial_rotary_factor %g is invalid", m->dir, rot);
    aero_gguf_set_u32(w, akey(m, "rope.dimension_count"), (uint32_t)rope_dim);
    m->rope_dim = rope_dim;
    if (rope_keys(m, base, n_ctx, err) || arch_keys(m, err)) return err->code;
    return AERO_OK;
}

// ---- tensor names ----

typedef struct {
    const char *hf, *gguf; // suffix after "model.layers.N."
    int kind;              // for the shape check (below)
} name_map;

enum { K_Q, K_KV, K_O, K_QKV, K_QB, K_KVB, K_OB, K_NORM, K_HEADNORM, K_GATE, K_DOWN, K_GATEUP, K_ROUTER, K_EXP, K_EXPD };

static const name_map LAYER_NAMES[] = {
    {"self_attn.q_proj.weight", "attn_q.weight", K_Q},
    {"self_attn.k_proj.weight", "attn_k.weight", K_KV},
    {"self_attn.v_proj.weight", "attn_v.weight", K_KV},
    {"self_attn.o_proj.weight", "attn_output.weight", K_O},
    {"self_attn.q_proj.bias", "attn_q.bias", K_QB},
    {"self_attn.k_proj.bias", "attn_k.bias", K_KVB},
    {"self_attn.v_proj.bias", "attn_v.bias", K_KVB},
    {"self_attn.o_proj.bias", "attn_output.bias", K_OB},
    {"self_attn.qkv_proj.weight", "attn_qkv.weight", K_QKV},
    {"self_attn.q_norm.weight", "attn_q_norm.weight", K_HEADNORM},
    {"self_attn.k_norm.weight", "attn_k_norm.weight", K_HEADNORM},
    {"input_layernorm.weight", "attn_norm.weight", K_NORM},
    {"post_attention_layernorm.weight", "ffn_norm.weight", K_NORM}, // post_norms archs: post_attention_norm
    {"pre_feedforward_layernorm.weight", "ffn_norm.weight", K_NORM},
    {"post_feedforward_layernorm.weight", "post_ffw_norm.weight", K_NORM},
    {"mlp.gate_proj.weight", "ffn_gate.weight", K_GATE},
    {"mlp.up_proj.weight", "ffn_up.weight", K_GATE},
    {"mlp.down_proj.weight", "ffn_down.weight", K_DOWN},
    {"mlp.gate_up_proj.weight", "ffn_up.weight", K_GATEUP},
    {"mlp.gate.weight", "ffn_gate_inp.weight", K_ROUTER},
    {"block_sparse_moe.gate.weight", "ffn_gate_inp.weight", K_ROUTER},
};

// Expert tensors: "<prefix>.E.<part>.weight" -> blk.L.ffn_<gguf>.E.weight (merged into _exps by the converter).
static const struct {
    const char *prefix, *part, *gguf;
    int kind;
} EXPERT_NAMES[] = {
    {"mlp.experts.", "gate_proj.weight", "gate", K_EXP},
    {"mlp.experts.", "up_proj.weight", "up", K_EXP},
    {"mlp.experts.", "down_proj.weight", "down", K_EXPD},
    {"block_sparse_moe.experts.", "w1.weight", "gate", K_EXP},
    {"block_sparse_moe.experts.", "w3.weight", "up", K_EXP},
    {"block_sparse_moe.experts.", "w2.weight", "down", K_EXPD},
};

// The HF shape ([out, in], outermost first) config.json implies for a tensor kind.
static int expected_shape(const hf_model *m, int kind, uint64_t s[2]) {
    int64_t qd = (int64_t)m->n_head * m->head_dim, kvd = (int64_t)m->n_head_kv * m->head_dim, d = m->n_embd;
    // config.json is read with integers as reals (huge ones appear); the sizes were checked in config_keys
    int64_t ff = (int64_t)json_number_value(json_object_get(m->cfg, "intermediate_size"));
    const json_t *e = json_object_get(m->cfg, "moe_intermediate_size");
    int64_t ffe = json_is_number(e) ? (int64_t)json_number_value(e) : ff;
    bool olmo2 = !strcmp(m->gguf_arch, "olmo2");
    switch (kind) {
    case K_Q: s[0] = qd, s[1] = d; return 2;
    case K_KV: s[0] = kvd, s[1] = d; return 2;
    case K_O: s[0] = d, s[1] = qd; return 2;
    case K_QKV: s[0] = qd + 2 * kvd, s[1] = d; return 2;
    case K_QB: s[0] = qd; return 1;
    case K_KVB: s[0] = kvd; return 1;
    case K_OB: s[0] = d; return 1;
    case K_NORM: s[0] = d; return 1;
    case K_HEADNORM: s[0] = olmo2 ? 0 : m->head_dim; return 1; // OLMo 2: checked by the caller (q vs k)
    case K_GATE: s[0] = ff, s[1] = d; return 2;
    case K_DOWN: s[0] = d, s[1] = ff; return 2;
    case K_GATEUP: s[0] = 2 * ff, s[1] = d; return 2;
    case K_ROUTER: s[0] = m->n_expert, s[1] = d; return 2;
    case K_EXP: s[0] = ffe, s[1] = d; return 2;
    case K_EXPD: s[0] = d, s[1] = ffe; return 2;
    }
    return 0;
}

// Refuses a tensor whose shape is not the one config.json implies, naming both.
static aero_status check_shape(const hf_model *m, const hf_tensor *t, const char *hf_name, int kind, aero_error *err) {
    uint64_t s[2] = {0, 0};
    int nd = expected_shape(m, kind, s);
    const aero_st_tensor *st = t->st;
    if (kind == K_HEADNORM && s[0] == 0) // OLMo 2: the whole projection
        s[0] = (uint64_t)(strstr(hf_name, "q_norm") ? m->n_head : m->n_head_kv) * (uint64_t)m->head_dim;
    bool ok = (int)st->n_dims == nd && st->shape[0] == s[0] && (nd < 2 || st->shape[1] == s[1]);
    if (ok) return AERO_OK;
    char got[96] = "", want[64];
    for (uint32_t i = 0, n = 0; i < st->n_dims; i++)
        n += (uint32_t)snprintf(got + n, sizeof got - n, "%s%llu", i ? ", " : "", (unsigned long long)st->shape[i]);
    if (nd == 2) snprintf(want, sizeof want, "%llu, %llu", (unsigned long long)s[0], (unsigned long long)s[1]);
    else snprintf(want, sizeof want, "%llu", (unsigned long long)s[0]);
    return aero_fail(err, AERO_ERR_FORMAT, "%s: tensor '%s' has shape [%s], config.json implies [%s]",
                     m->shards[t->shard].path, hf_name, got, want);
}

// Experts fused in one tensor per layer (transformers 5: experts.gate_up_proj [E, 2 ff, d] with gate rows first,
// experts.down_proj [E, d, ff]): each expert's part is a contiguous byte range of it, mapped as that expert's own
// tensor blk.L.ffn_{gate,up,down}.E.weight, so nothing is copied.
static aero_status map_fused(hf_model *m, uint32_t shard, const aero_st_tensor *st, long l, bool gate_up,
                             aero_error *err) {
    const json_t *e = json_object_get(m->cfg, "moe_intermediate_size");
    uint64_t d = (uint64_t)m->n_embd, E = (uint64_t)m->n_expert, es = st->type == AERO_DT_F32 ? 4 : 2;
    uint64_t ff = json_is_number(e) ? (uint64_t)json_number_value(e)
                                    : (uint64_t)json_number_value(json_object_get(m->cfg, "intermediate_size"));
    uint64_t rows = gate_up ? 2 * ff : d, cols = gate_up ? d : ff;
    if (st->n_dims != 3 || st->shape[0] != E || st->shape[1] != rows || st->shape[2] != cols)
        return aero_fail(err, AERO_ERR_FORMAT, "%s: tensor '%s' must have shape [%llu, %llu, %llu] (config.json)",
                         m->shards[shard].path, st->name, (unsigned long long)E, (unsigned long long)rows,
                         (unsigned long long)cols);
    for (uint64_t x = 0; x < E; x++)
        for (int part = 0; part < (gate_up ? 2 : 1); part++) {
            hf_tensor *t = &m->t[m->n_t++];
            memset(t, 0, sizeof *t);
            t->shard = shard;
            t->st = st;
            t->n_dims = 2;
            t->ne[0] = cols;
            t->ne[1] = gate_up ? ff : d;
            t->ne[2] = t->ne[3] = 1;
            t->nbytes = t->ne[0] * t->ne[1] * es;
            t->part_off = (x * rows + (uint64_t)part * ff) * cols * es;
            snprintf(t->name, sizeof t->name, "blk.%ld.ffn_%s.%llu.weight", l,
                     gate_up ? (part ? "up" : "gate") : "down", (unsigned long long)x);
        }
    return AERO_OK;
}

// Maps one HF tensor into m->t (or skips it); unknown names are refused so nothing is silently dropped.
static aero_status map_one(hf_model *m, uint32_t shard, const aero_st_tensor *st, aero_error *err) {
    const char *n = st->name, *file = m->shards[shard].path;
    if (strstr(n, "rotary_emb.inv_freq")) return AERO_OK; // old checkpoints' cached buffer, recomputed
    if (st->type < 0)
        return aero_fail(err, AERO_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s (supported: F32, F16, BF16)", file,
                         n, st->dtype);
    hf_tensor *t = &m->t[m->n_t];
    memset(t, 0, sizeof *t);
    t->shard = shard;
    t->st = st;
    t->nbytes = st->nbytes;
    t->n_dims = st->n_dims;
    for (int i = 0; i < AERO_GGUF_MAX_DIMS; i++) t->ne[i] = 1;
    for (uint32_t i = 0; i < st->n_dims; i++) t->ne[i] = st->shape[st->n_dims - 1 - i];
    int kind = -1;
    if (!strcmp(n, "model.embed_tokens.weight") || !strcmp(n, "lm_head.weight")) {
        bool head = n[0] == 'l';
        if (head && json_is_true(json_object_get(m->cfg, "tie_word_embeddings"))) return AERO_OK;
        snprintf(t->name, sizeof t->name, head ? "output.weight" : "token_embd.weight");
        if (st->n_dims != 2 || st->shape[0] != (uint64_t)m->n_vocab || st->shape[1] != (uint64_t)m->n_embd)
            return aero_fail(err, AERO_ERR_FORMAT, "%s: tensor '%s' must have shape [%d, %d] (vocab_size, hidden_size)",
                             file, n, m->n_vocab, m->n_embd);
    } else if (!strcmp(n, "model.norm.weight")) {
        snprintf(t->name, sizeof t->name, "output_norm.weight");
        kind = K_NORM;
    } else if (!strncmp(n, "model.layers.", 13)) {
        char *end;
        long l = strtol(n + 13, &end, 10);
        if (end == n + 13 || *end != '.' || l < 0 || l >= m->n_layer)
            return aero_fail(err, AERO_ERR_FORMAT, "%s: tensor '%s': layer out of range (num_hidden_layers %d)", file, n,
                             m->n_layer);
        const char *rest = end + 1;
        const char *fx = strstr(rest, "experts.gate_up_proj") ? "gate_up_proj" : strstr(rest, "experts.down_proj") ? "down_proj" : NULL;
        if (fx && (!strcmp(rest, "mlp.experts.gate_up_proj") || !strcmp(rest, "mlp.experts.down_proj") ||
                   !strcmp(rest, "mlp.experts.gate_up_proj.weight") || !strcmp(rest, "mlp.experts.down_proj.weight") ||
                   !strncmp(rest, "block_sparse_moe.experts.", 25)) && !strstr(rest, "bias"))
            return map_fused(m, shard, st, l, fx[0] == 'g', err);
        for (size_t i = 0; i < sizeof LAYER_NAMES / sizeof LAYER_NAMES[0] && kind < 0; i++) {
            if (strcmp(rest, LAYER_NAMES[i].hf)) continue;
            const char *g = LAYER_NAMES[i].gguf;
            if (m->arch->post_norms && !strcmp(rest, "post_attention_layernorm.weight")) g = "post_attention_norm.weight";
            snprintf(t->name, sizeof t->name, "blk.%ld.%s", l, g);
            kind = LAYER_NAMES[i].kind;
        }
        for (size_t i = 0; i < sizeof EXPERT_NAMES / sizeof EXPERT_NAMES[0] && kind < 0; i++) {
            size_t pl = strlen(EXPERT_NAMES[i].prefix);
            if (strncmp(rest, EXPERT_NAMES[i].prefix, pl)) continue;
            long e = strtol(rest + pl, &end, 10);
            if (end == rest + pl || *end != '.' || strcmp(end + 1, EXPERT_NAMES[i].part)) continue;
            if (e < 0 || e >= m->n_expert)
                return aero_fail(err, AERO_ERR_FORMAT, "%s: tensor '%s': expert out of range (%d experts)", file, n,
                                 m->n_expert);
            snprintf(t->name, sizeof t->name, "blk.%ld.ffn_%s.%ld.weight", l, EXPERT_NAMES[i].gguf, e);
            kind = EXPERT_NAMES[i].kind;
        }
        if (kind < 0)
            return aero_fail(err, AERO_ERR_UNSUPPORTED, "%s: tensor '%s' is not one %s uses", file, n, m->arch->hf);
        if (m->perm_qk && (kind == K_Q || kind == K_QB || kind == K_KV || kind == K_KVB) &&
            (strstr(rest, "q_proj") || strstr(rest, "k_proj"))) {
            t->flags |= HF_PERM;
            t->perm_heads = strstr(rest, "q_proj") ? m->n_head : m->n_head_kv;
        }
    } else {
        return aero_fail(err, AERO_ERR_UNSUPPORTED, "%s: tensor '%s' is not one %s uses", file, n, m->arch->hf);
    }
    if (kind >= 0 && check_shape(m, t, n, kind, err)) return err->code;
    if (m->arch->add_one && st->n_dims == 1 && strlen(n) >= 11 && !strcmp(n + strlen(n) - 11, "norm.weight"))
        t->flags |= HF_ADD_ONE;
    m->n_t++;
    return AERO_OK;
}

// ---- shards ----

// The shard files: model.safetensors.index.json's weight_map values, or model.safetensors alone.
static aero_status open_shards(hf_model *m, aero_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", m->dir);
    json_error_t je;
    json_t *idx = NULL;
    aero_status st = AERO_OK;
    const char **names = NULL;
    size_t n_names = 0;
    if (access(path, F_OK) == 0) {
        idx = json_load_file(path, 0, &je);
        const json_t *wm = idx ? json_object_get(idx, "weight_map") : NULL;
        if (!json_is_object(wm)) {
            st = aero_fail(err, AERO_ERR_FORMAT, "%s: %s", path, idx ? "no weight_map object" : je.text);
            goto done;
        }
        names = calloc(json_object_size(wm) + 1, sizeof *names);
        if (!names) {
            st = aero_fail(err, AERO_ERR_NOMEM, "out of memory");
            goto done;
        }
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)wm, k, v) {
            const char *f = json_string_value(v);
            if (!f || !f[0] || strchr(f, '/') || !strcmp(f, "..")) {
                st = aero_fail(err, AERO_ERR_FORMAT, "%s: tensor '%s': shard name must be a file name in the directory",
                               path, k);
                goto done;
            }
            size_t j = 0;
            while (j < n_names && strcmp(names[j], f)) j++;
            if (j == n_names) names[n_names++] = f;
        }
    } else {
        static const char *single = "model.safetensors";
        names = calloc(1, sizeof *names);
        if (!names) {
            st = aero_fail(err, AERO_ERR_NOMEM, "out of memory");
            goto done;
        }
        names[n_names++] = single;
    }
    if (!(m->fds = malloc(sizeof *m->fds * (n_names ? n_names : 1)))) {
        st = aero_fail(err, AERO_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n_names; i++) m->fds[i] = -1;
    if (!(m->shards = calloc(n_names ? n_names : 1, sizeof *m->shards))) {
        st = aero_fail(err, AERO_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n_names; i++) {
        snprintf(path, sizeof path, "%s/%s", m->dir, names[i]);
        if ((st = aero_st_open(&m->shards[i], path, err))) {
            if (idx) aero_error_prefix(err, "shard listed in model.safetensors.index.json: ");
            goto done;
        }
        m->n_shards++;
    }
    if (idx) { // every listed tensor must be in the shard the index names
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(idx, "weight_map"), k, v) {
            size_t j = 0;
            while (strcmp(names[j], json_string_value(v))) j++;
            if (!aero_st_find(&m->shards[j], k)) {
                st = aero_fail(err, AERO_ERR_FORMAT, "%s: tensor '%s' (listed in model.safetensors.index.json) is missing",
                               m->shards[j].path, k);
                goto done;
            }
        }
    }
done:
    free(names);
    json_decref(idx);
    return st;
}

// The table row of an HF architecture name, NULL when unsupported.
static const hf_arch *find_arch(const char *name) {
    for (size_t i = 0; i < sizeof ARCHS / sizeof ARCHS[0]; i++)
        if (!strcmp(ARCHS[i].hf, name)) return &ARCHS[i];
    return NULL;
}

// config.json first (its sizes check every tensor's shape), then the shards, the keys, the names.
aero_status hf_model_open(hf_model *m, const char *dir, aero_error *err) {
    memset(m, 0, sizeof *m);
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/') dl--;
    char path[4096];
    json_error_t je;
    const json_t *archs;
    const char *an;
    int64_t v[6];
    if (!(m->dir = strndup(dir, dl))) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    snprintf(path, sizeof path, "%s/config.json", m->dir);
    if (!(m->cfg = json_load_file(path, JSON_DECODE_INT_AS_REAL, &je))) {
        aero_fail(err, je.line < 0 ? AERO_ERR_IO : AERO_ERR_FORMAT, "%s: %s", path, je.text);
        goto fail;
    }
    archs = json_object_get(m->cfg, "architectures");
    an = json_string_value(json_array_get(archs, 0));
    if (!an) {
        aero_fail(err, AERO_ERR_FORMAT, "%s: no architectures list", path);
        goto fail;
    }
    if (!(m->arch = find_arch(an))) {
        aero_fail(err, AERO_ERR_UNSUPPORTED, "%s: architecture '%s' is not supported (supported: %s)", path, an,
                  SUPPORTED_LIST);
        goto fail;
    }
    m->gguf_arch = m->arch->gguf;
    m->perm_qk = m->arch->perm;
    if (cfg_int(m, "num_hidden_layers", true, 0, &v[0], err) || cfg_int(m, "hidden_size", true, 0, &v[1], err) ||
        cfg_int(m, "num_attention_heads", true, 0, &v[2], err) || cfg_int(m, "vocab_size", true, 0, &v[4], err))
        goto fail;
    if (cfg_int(m, "num_key_value_heads", false, v[2], &v[3], err) ||
        cfg_int(m, "head_dim", false, v[2] ? v[1] / v[2] : 0, &v[5], err))
        goto fail;
    m->n_layer = (int)v[0], m->n_embd = (int)v[1], m->n_head = (int)v[2], m->n_head_kv = (int)v[3];
    m->n_vocab = (int)v[4], m->head_dim = (int)v[5];
    if (m->n_layer < 1 || m->n_embd < 1 || m->n_head < 1 || m->n_head_kv < 1 || m->n_vocab < 1 || m->head_dim < 2 ||
        m->head_dim % 2 || m->head_dim > 1024) {
        aero_fail(err, AERO_ERR_FORMAT, "%s: sizes out of range (layers %d, hidden %d, heads %d/%d, head_dim %d)", path,
                  m->n_layer, m->n_embd, m->n_head, m->n_head_kv, m->head_dim);
        goto fail;
    }
    {
        int64_t ne;
        if (cfg_int(m, "num_local_experts", false, 0, &ne, err)) goto fail;
        if (ne == 0 && cfg_int(m, "num_experts", false, 0, &ne, err)) goto fail;
        m->n_expert = (int)ne;
    }
    if (!(m->w = aero_gguf_writer_new(0))) {
        aero_fail(err, AERO_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (open_shards(m, err)) goto fail;
    uint64_t total = 3; // generated tensors
    for (uint32_t s = 0; s < m->n_shards; s++)
        for (uint64_t i = 0; i < m->shards[s].n_tensors; i++) // fused experts become one tensor per expert and part
            total += strstr(m->shards[s].tensors[i].name, "experts.gate_up_proj") ? 2 * (uint64_t)m->n_expert
                     : strstr(m->shards[s].tensors[i].name, "experts.down_proj")  ? (uint64_t)m->n_expert
                                                                                  : 1;
    if (!(m->t = calloc(total, sizeof *m->t))) {
        aero_fail(err, AERO_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (config_keys(m, err)) goto fail;
    for (uint32_t s = 0; s < m->n_shards; s++)
        for (uint64_t i = 0; i < m->shards[s].n_tensors; i++)
            if (map_one(m, s, &m->shards[s].tensors[i], err)) goto fail;
    for (uint64_t i = 0; i < m->n_t; i++) // two HF names for one GGUF name (or the same tensor in two shards)
        for (uint64_t j = i + 1; j < m->n_t; j++)
            if (!strcmp(m->t[i].name, m->t[j].name)) {
                aero_fail(err, AERO_ERR_FORMAT, "%s: tensor '%s' given twice (as '%s')",
                          m->t[j].st ? m->shards[m->t[j].shard].path : m->dir, m->t[j].st ? m->t[j].st->name : "",
                          m->t[j].name);
                goto fail;
            }
    return AERO_OK;
fail:
    hf_model_free(m);
    return err->code;
}

// Frees the mapping and closes the shard descriptors it opened.
void hf_model_free(hf_model *m) {
    if (!m) return;
    for (uint64_t i = 0; i < m->n_t; i++) free(m->t[i].data);
    free(m->t);
    for (uint32_t s = 0; s < m->n_shards; s++) {
        aero_st_free(&m->shards[s]);
        if (m->fds && m->fds[s] >= 0) close(m->fds[s]);
    }
    free(m->fds);
    free(m->shards);
    aero_gguf_writer_free(m->w);
    json_decref(m->cfg);
    free(m->dir);
    memset(m, 0, sizeof *m);
}

// What the engine cannot read from the shard as stored (see hf_internal.h).
bool hf_needs_side(const hf_tensor *t) {
    return !t->st || (t->flags & HF_ADD_ONE) || (t->n_dims == 1 && t->st->type != AERO_DT_F32);
}

// The shard's descriptor, opened on first use and kept until hf_model_free.
static aero_status shard_fd(const hf_model *m, uint32_t shard, int *fd, aero_error *err) {
    if (m->fds[shard] < 0) {
        m->fds[shard] = open(m->shards[shard].path, O_RDONLY | O_CLOEXEC);
        if (m->fds[shard] < 0)
            return aero_fail(err, AERO_ERR_IO, "%s: cannot open: %s", m->shards[shard].path, strerror(errno));
    }
    *fd = m->fds[shard];
    return AERO_OK;
}

// Reads the bytes of source rows [r0, r0 + n) of t (a shard tensor, or a part of one).
static aero_status pread_rows(const hf_model *m, const hf_tensor *t, uint64_t r0, uint64_t n, void *dst,
                              aero_error *err) {
    int fd = -1;
    if (shard_fd(m, t->shard, &fd, err)) return err->code;
    size_t es = t->st->type == AERO_DT_F32 ? 4 : 2;
    uint64_t rb = t->ne[0] * es, off = t->st->offset + t->part_off + r0 * rb, len = n * rb, done = 0;
    while (done < len) {
        ssize_t got = pread(fd, (char *)dst + done, len - done, (off_t)(off + done));
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0)
            return aero_fail(err, AERO_ERR_IO, "%s: tensor '%s': cannot read %llu bytes at %llu%s%s",
                             m->shards[t->shard].path, t->st->name, (unsigned long long)(len - done),
                             (unsigned long long)(off + done), got < 0 ? ": " : " (file truncated?)",
                             got < 0 ? strerror(errno) : "");
        done += (uint64_t)got;
    }
    return AERO_OK;
}

// The one reader of shard data as values: the side file and the converter both go through it.
aero_status hf_read_rows(const hf_model *m, const hf_tensor *t, uint64_t row0, uint64_t n, bool permute, float *out,
                         aero_error *err) {
    uint64_t row = t->ne[0];
    if (!t->st) { // generated
        memcpy(out, t->data + row0 * row, (size_t)(n * row) * sizeof *out);
        return AERO_OK;
    }
    // HF_PERM: GGUF row h*hd + 2i + j is HF row h*hd + j*hd/2 + i (llama.cpp's permute). A 1-D bias is one row of
    // ne[0] elements permuted the same way, element-wise.
    uint64_t rows_total = t->n_dims >= 2 ? t->ne[1] : 1;
    bool perm = permute && (t->flags & HF_PERM), perm_el = perm && t->n_dims == 1;
    uint64_t hd = perm ? (perm_el ? t->ne[0] : rows_total) / (uint64_t)t->perm_heads : 0;
    size_t es = t->st->type == AERO_DT_F32 ? 4 : 2;
    aero_status st = AERO_OK;
    float *tmp = NULL;
    if (perm && !perm_el) { // row by row from their source rows
        for (uint64_t r = 0; r < n && !st; r++) {
            uint64_t dst = row0 + r, h = dst / hd, k = dst % hd;
            st = pread_rows(m, t, h * hd + (k % 2) * (hd / 2) + k / 2, 1, (char *)out + r * row * es, err);
        }
    } else {
        st = pread_rows(m, t, row0, n, out, err);
    }
    if (st) return st;
    if (t->st->type != AERO_DT_F32) // widen in place, from the end (the raw rows fill the first half)
        for (uint64_t r = n; r-- > 0;) {
            const void *raw = (const char *)out + r * row * es;
            float *o = out + r * row;
            if (!tmp && !(tmp = malloc((size_t)row * sizeof *tmp))) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
            aero_dequantize_row((aero_dtype)t->st->type, raw, tmp, (int64_t)row);
            memcpy(o, tmp, (size_t)row * sizeof *tmp);
        }
    if (perm_el) {
        if (!tmp && !(tmp = malloc((size_t)row * sizeof *tmp))) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
        for (uint64_t k = 0; k < row; k++) tmp[k] = out[(k / hd) * hd + (k % hd % 2) * (hd / 2) + (k % hd) / 2];
        memcpy(out, tmp, (size_t)row * sizeof *tmp);
    }
    if (t->flags & HF_ADD_ONE)
        for (uint64_t k = 0; k < n * row; k++) out[k] += 1.0f;
    free(tmp);
    return AERO_OK;
}
