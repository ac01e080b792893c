// Transformer models (llama, qwen2, qwen3) read from GGUF: hyperparameters, weights reached through
// stream/, a KV cache with several sequences, and a forward pass over a batch of tokens.
#ifndef AERO_MODEL_H
#define AERO_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../core/status.h"
#include "../format/gguf.h"
#include "../tokenizer/tokenizer.h"

typedef struct aero_model aero_model;
typedef struct aero_ctx aero_ctx;

#include "../../include/aerollm.h" // aero_model_params, aero_ctx_params

typedef enum {
    AERO_ROPE_SCALING_NONE,
    AERO_ROPE_SCALING_LINEAR,
    AERO_ROPE_SCALING_LLAMA3,
    AERO_ROPE_SCALING_YARN,
    AERO_ROPE_SCALING_LONGROPE
} aero_rope_scaling;

typedef struct {
    char arch[32];
    int n_layer, n_embd, n_head, n_head_kv, head_dim, rope_dim, n_ff, n_vocab, n_ctx_train;
    float norm_eps, rope_base;
    aero_rope_scaling rope_scaling;
    float rope_scale_factor, rope_low_freq, rope_high_freq; // linear: factor; llama3: all four
    int rope_orig_ctx;                                      // 0: absent (llama3 then 8192, YaRN n_ctx_train)
    float rope_yarn_beta_fast, rope_yarn_beta_slow;         // YaRN's correction range (32, 1)
    float rope_attn_factor;                                 // rope.scaling.attn_factor: scales cos and sin (1)
    bool tied_output;
    // Gemma-style blocks (0 / false for llama and qwen): the embedding scaled by embd_scale; queries scaled by
    // attn_scale (0: 1/sqrt(head_dim)); attention scores and final logits soft-capped (cap * tanh(x / cap));
    // post-attention and post-FFN norms; a GELU-gated FFN; layer l attends to the last n_swa positions only when
    // swa_pattern > 0 and l % swa_pattern < swa_pattern - 1, with rope base rope_base_swa there (0: rope_base).
    float embd_scale, attn_scale, attn_softcap, final_softcap, rope_base_swa;
    int n_swa, swa_pattern;
    bool ffn_gelu, post_norms;
    int kv_lora_rank; // deepseek2 (MLA): > 0, the cache row is this latent + the rope part, and there is no V row
    // Granite: sublayer outputs scaled by residual_scale before the residual add (0: not), logits divided by
    // logit_scale (0: not), no rotation at all when no_rope. OLMo 2: no pre-norms (attn_norm/ffn_norm absent),
    // Q/K norms over the whole projection rather than per head (qk_norm_full).
    float residual_scale, logit_scale;
    bool no_rope, qk_norm_full;
    // mistral3: YaRN's magnitude divided by 1 + 0.1 * rope_yarn_log_mul * ln(factor); queries of position p scaled
    // by 1 + attn_temp_scale * ln(floor(p / attn_temp_floor) + 1) (Llama 4's temperature tuning; 0: off).
    float rope_yarn_log_mul, attn_temp_scale;
    int attn_temp_floor;
    // A Hugging Face directory of a llama-family model: its Q/K rows rotate halves (llama.cpp's converter permutes
    // them into adjacent pairs), so the forward pass reorders each head's Q and K outputs into pairs before rope.
    bool qk_halves;
} aero_hparams;

// Whether layer l of a model with these hyperparameters attends through a sliding window.
static inline bool aero_hparams_swa_layer(const aero_hparams *hp, int l) {
    return hp->swa_pattern > 0 && hp->n_swa > 0 && l % hp->swa_pattern < hp->swa_pattern - 1;
}

const aero_hparams *aero_model_hparams(const aero_model *m);
struct aero_stream *aero_model_stream(aero_model *m);
uint64_t aero_model_weight_bytes(const aero_model *m); // bytes of all weight tensors in the file(s)
// The model's compute threads, for work that runs between its passes on the same thread (a draft head's layer).
struct aero_pool *aero_model_pool(aero_model *m);

// aero_ctx_params, the KV cache types and the --mem split are public: include/aerollm.h.

// The context length aero_ctx_new gives for p (its default resolved against the model's training context).
int aero_ctx_params_n_ctx(const aero_hparams *hp, const aero_ctx_params *p);
// Bytes of the KV cache aero_ctx_new allocates for p: n_layer x n_seq x n_ctx x (K row + V row). Every budget
// (run, serve, info) uses this one sum; 0 when the types do not fit the head size (aero_kv_check says why).
uint64_t aero_kv_bytes(const aero_hparams *hp, const aero_ctx_params *p);
// Refuses cache types the model's head size cannot hold (a quantized type needs head_dim % 32 == 0).
aero_status aero_kv_check(const aero_hparams *hp, const aero_ctx_params *p, aero_error *err);
// Hyperparameters of a model file without loading it, so a budget can set aside the KV cache before the weights
// are planned (n_vocab is left 0).
aero_status aero_model_read_hparams(const char *path, aero_hparams *hp, aero_error *err);
aero_status aero_hparams_from_gguf(const aero_gguf *g, aero_hparams *hp, aero_error *err);

// For a draft head (speculative/head.c), which drafts in the target's feature space: the target's token
// embeddings of n tokens (n_embd floats each), and its vocabulary projection of n rows shaped like
// aero_ctx_hidden's (the output norm already applied) into n x n_vocab logits (on a GPU context, the device's
// output head: VRAM-resident or copied into a slot).
aero_status aero_ctx_embed_rows(aero_ctx *c, const int32_t *tok, int n, float *out, aero_error *err);
aero_status aero_ctx_project(aero_ctx *c, const float *h, int n, float *logits, aero_error *err);
// A reader of hidden states (a draft head) registers (on) and leaves (off): while one is registered, a context
// computing on the GPU copies every batch token's residual row back after each pass, so aero_ctx_hidden works
// there too (a CPU context always keeps them).
void aero_ctx_want_hidden(aero_ctx *c, bool on);
// Whether the context computes on the GPU (the server's limits on masked batches differ there).
bool aero_ctx_on_gpu(const aero_ctx *c);

// A batch: token i has a position, a sequence and (optionally) a mask row. Without mask, token i attends to
// its sequence's cached tokens and to the earlier tokens of the same sequence in this batch (causal). With
// mask (n*n bytes, row i), token i attends to its sequence's cache and to batch token j iff mask[i*n+j] (tree
// verification). Each token is appended to its sequence's cache at the next cell (position), in batch order.
typedef struct aero_batch {
    int n;
    const int32_t *tokens;
    const int32_t *pos;
    const int32_t *seq;         // NULL: all sequence 0
    const uint8_t *mask;        // NULL: causal
    const uint8_t *want_logits; // NULL: logits for every token; else only where nonzero (rows packed in order)
} aero_batch;

#endif
