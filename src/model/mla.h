// Multi-head latent attention: llama.cpp's `deepseek2` architecture (DeepSeek-V2, V2-Lite, V3, R1; Kimi K2).
// Keys, tensor names and the attention math follow llama.cpp (docs/moe.md, section deepseek2).
//
// Each token's keys and values are compressed into one latent row of kv_lora_rank values (normalised by
// attn_kv_a_norm) plus a shared rotary key of qk_rope values; the cache holds that row and nothing else
// (576 values a token and layer for V3, against 2 x 128 x 192 for the decompressed heads). Attention never
// decompresses the cache: each head's query is absorbed into the latent space (q_nope through the head's slice
// of attn_k_b), so the scores are one dot with the cached row, the output is a weighted sum of latent rows, and
// attn_v_b maps it to the head's value. That is MQA with one 576-wide key head whose value is its first 512.
#ifndef AERO_MODEL_MLA_H
#define AERO_MODEL_MLA_H

#include <stdbool.h>

#include "model.h"

typedef struct {
    int q_lora_rank;  // `attention.q_lora_rank`; 0: one attn_q matrix (V2-Lite)
    int kv_lora_rank; // `attention.kv_lora_rank`
    int qk_nope;      // query/key head size without the rotary part
    int qk_rope;      // `rope.dimension_count`
    int v_head;       // value head size
    int n_dense_lead; // `leading_dense_block_count`: layers [0, n) have a dense FFN
    bool split_kv_b;  // attn_k_b + attn_v_b (files written since llama.cpp's MLA cache) rather than attn_kv_b
    float kq_scale;   // mscale^2 / sqrt(qk_nope + qk_rope) (mscale from YaRN's log multiplier, 1 without)
    int n_nextn;      // `nextn_predict_layers`: MTP blocks after the n_layer layers, never run nor read
} aero_mla_params;

// Reads the deepseek2 keys, and sets the hyperparameters the KV cache is sized from: one "KV head" of
// kv_lora_rank + qk_rope values and no V row (hp->kv_lora_rank > 0). Reads only g, so it may run twice.
aero_status aero_mla_hparams_read(const aero_gguf *g, aero_hparams *hp, aero_mla_params *p, aero_error *err);

#endif
