// Synthetic models: a random-weight GGUF of a real architecture and shape (llama, qwen2, qwen3, and the
// mixture-of-experts qwen2moe, qwen3moe and Mixtral) with a
// byte-level BPE tokenizer section, deterministic from a seed and written tensor by tensor in row chunks, so
// that a 70B-shape file needs no more memory than a few chunks. For tests and benchmarks of models too large
// to ship (`aerollm synth`). A tool module: it builds on format/ and kernels/, and only the CLI and tests use it.
#ifndef AERO_SYNTH_H
#define AERO_SYNTH_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/dtype.h"
#include "../core/status.h"

// A file type that mixes tensor types per tensor, as llama.cpp's quantizer makes it (llama_tensor_get_type):
// Q4_K_M / Q5_K_M are Q4_K / Q5_K with Q6_K for the output head, and for attn_v and ffn_down of the first and
// last eighth of the layers and every third layer between.
typedef enum { AERO_SYNTH_MIX_NONE = 0, AERO_SYNTH_MIX_Q4_K_M, AERO_SYNTH_MIX_Q5_K_M } aero_synth_mix;

typedef struct {
    char arch[16]; // "llama", "qwen2" (Q/K/V biases), "qwen3" (per-head Q/K RMSNorm), "qwen2moe",
                   // "qwen3moe", "gemma2", "gemma3", "phi3" (fused QKV and gate/up), "granite", "olmo2",
                   // "deepseek2"
    char name[64]; // general.name ("synthetic llama-8b")
    int n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab, n_ctx;
    int head_dim; // 0: n_embd / n_head
    float rope_base, norm_eps;
    float rope_llama3_factor; // > 0: Llama 3.1 rope scaling, written as a rope_freqs.weight tensor
    bool tied;                // no output.weight: the head reuses token_embd.weight
    int n_swa;                // gemma2/gemma3: attention.sliding_window (0: gemma2 writes none, gemma3 none)
    float rope_linear_factor; // > 0: rope.scaling.type linear with this factor (Gemma 3 4B and larger)
    int longrope_orig_ctx;    // phi3 > 0: LongRoPE with rope_factors_long/short tensors, this original context
    float granite_scales[4];  // granite: embedding, attention, residual and logit scales (0: not written)
    // mixture of experts ("qwen3moe", "qwen2moe", or "llama" with experts = Mixtral); n_expert 0: dense
    int n_expert, n_expert_used;
    int n_ff_exp;      // rows of one routed expert (qwen*moe: expert_feed_forward_length; llama: n_ff)
    int n_ff_shexp;    // qwen2moe shared expert rows (0: none)
    bool per_expert;   // write ffn_{gate,up,down}.E tensors (older Mixtral files) instead of merged *_exps;
                       // the bytes are those of the merged layout, so both files compute the same
    float router_skew; // > 0: router rows of a few experts per layer scaled up (hot experts, as trained)
    // "deepseek2" (llama.cpp's names and keys): multi-head latent attention, shared experts, leading dense layers
    struct {
        int q_lora_rank;  // 0: one attn_q (V2-Lite)
        int kv_lora_rank; // the cached latent
        int qk_nope, qk_rope, v_head;
        int n_dense_lead;    // leading_dense_block_count (clamped to the layer count)
        int n_expert_shared; // shared experts of n_ff_exp rows each
        bool sigmoid;        // expert_gating_func 2 (V3), with an exp_probs_b.bias selection bias; else softmax
        bool norm_w;         // expert_weights_norm
        float w_scale;       // expert_weights_scale
        int n_group, n_group_used;
        bool legacy_kv_b;  // one attn_kv_b (files before llama.cpp's MLA cache) instead of attn_k_b + attn_v_b
        float yarn_factor; // > 0: rope.scaling.type yarn, with yarn_orig_ctx and yarn_log_mul
        int yarn_orig_ctx;
        float yarn_log_mul;
    } ds;
    aero_dtype type;   // of the matrices; norms, biases and rope_freqs are F32
    aero_synth_mix mix; // NONE: every matrix of `type`; else llama.cpp's quantizer mix (type is its base type)
    uint64_t seed;
    const char *tokenizer_from; // copy every tokenizer.* key of this GGUF (n_vocab then follows it); NULL: built in
    const char *const *kv; // metadata edits applied last, each "KEY=TYPE:VALUE" (TYPE u32, i32, f32, bool, str)
    int n_kv;              // or "KEY=" to remove a key (tests of llama.cpp's defaults for absent keys)
    bool exact;                 // quantize every row from fresh Gaussian floats (slow) instead of drawing
                                // pre-quantized blocks of the same distribution
    int n_threads;              // <= 0: all CPUs
    void (*progress)(void *ctx, uint64_t done, uint64_t total); // bytes of tensor data written
    void *progress_ctx;
} aero_synth_params;

typedef struct {
    uint64_t n_tensors;
    uint64_t tensor_bytes; // sum of tensor data
    int n_fallback;        // matrices whose rows do not fit the type's block: written as a smaller-block type
    int n_vocab;           // the vocabulary written (from tokenizer_from when given)
    int n_merges;          // merges of the built-in tokenizer
} aero_synth_stats;

// Fills p with a preset's architecture and real dimensions (and defaults: seed 0, type F16). False if unknown.
bool aero_synth_preset(const char *name, aero_synth_params *p);
// The preset names, "|"-separated, for usage messages.
const char *aero_synth_preset_names(void);
// Parses a mix name ("Q4_K_M", "q5_k_m"): sets *mix and *base (its base type); false when not a mix.
bool aero_synth_mix_parse(const char *name, aero_synth_mix *mix, aero_dtype *base);
// The mix's name ("Q4_K_M"), or NULL for AERO_SYNTH_MIX_NONE.
const char *aero_synth_mix_name(aero_synth_mix mix);
// Checks a parameter set (shape consistency, supported type, vocabulary room for the tokenizer).
aero_status aero_synth_check(const aero_synth_params *p, aero_error *err);
// Writes the model to path (via a temporary file and rename). stats may be NULL.
aero_status aero_synth_write(const aero_synth_params *p, const char *path, aero_synth_stats *stats, aero_error *err);

#endif
