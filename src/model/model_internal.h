// Internals shared by the model's files (hyperparameters, weights, KV cache, forward pass).
#ifndef AERO_MODEL_INTERNAL_H
#define AERO_MODEL_INTERNAL_H

#include "../core/threadpool.h"
#include "../kernels/kernels.h"
#include "../stream/stream.h"
#include "model.h"

typedef enum { AERO_ARCH_LLAMA, AERO_ARCH_QWEN2, AERO_ARCH_QWEN3 } aero_arch_kind;

// Tensor indices (into the GGUF tensor table) of one layer's weights; -1 when absent (optional ones).
typedef struct {
    int64_t attn_norm;   // (n_embd)
    int64_t wq;          // (n_head * head_dim, n_embd)
    int64_t wk;          // (n_head_kv * head_dim, n_embd)
    int64_t wv;          // (n_head_kv * head_dim, n_embd)
    int64_t wo;          // (n_embd, n_head * head_dim)
    int64_t bq, bk, bv;  // qwen2 biases (n_head * head_dim) / (n_head_kv * head_dim)
    int64_t q_norm, k_norm; // qwen3 per-head RMSNorm (head_dim)
    int64_t ffn_norm;    // (n_embd)
    int64_t w_gate;      // (n_ff, n_embd)
    int64_t w_up;        // (n_ff, n_embd)
    int64_t w_down;      // (n_embd, n_ff)
} aero_layer_weights;

struct aero_model {
    aero_gguf gguf;
    aero_hparams hp;
    aero_arch_kind kind;
    bool rope_neox;            // rotate halves (qwen) instead of adjacent pairs (llama)
    float *rope_inv_freq;      // (rope_dim / 2) angle per position per pair, scaling included
    aero_tokenizer *tok;
    aero_stream *stream;
    aero_pool *pool;
    int n_threads;
    int64_t tok_embd, out_norm, output;
    aero_layer_weights *layers;
    uint64_t weight_bytes;
};

aero_status aero_hparams_read(const aero_gguf *g, aero_hparams *hp, aero_arch_kind *kind, aero_error *err);

#endif
