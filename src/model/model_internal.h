// Internals shared by the model's files (hyperparameters, weights, KV cache, forward pass).
#ifndef AERO_MODEL_INTERNAL_H
#define AERO_MODEL_INTERNAL_H

#include "../core/threadpool.h"
#include "../kernels/kernels.h"
#include "../kernels/ops.h"
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
    char device[8];            // aero_model_params.device ("" = cpu)
    uint64_t gpu_mem;
};

aero_status aero_hparams_read(const aero_gguf *g, aero_hparams *hp, aero_arch_kind *kind, aero_error *err);

// The KV cache: per layer, per sequence, n_ctx cells of one K row and one V row (kv_dim elements, F16 or F32).
// A cell is a position of a sequence's cache; cells [0, len[seq]) are in use.
typedef struct {
    int n_layer, n_seq, n_ctx, kv_dim;
    bool f32;
    void **k, **v;          // [layer] -> [seq][cell][kv_dim]
    int *len;               // per seq: cells in use
} aero_kv_cache;

aero_status aero_kv_cache_init(aero_kv_cache *kv, int n_layer, int n_seq, int n_ctx, int kv_dim, bool f32,
                               aero_error *err);
void aero_kv_cache_free(aero_kv_cache *kv);
// Bytes of one cached K or V row.
size_t aero_kv_row_bytes(const aero_kv_cache *kv);
// The K (or V) row of a cell.
void *aero_kv_cell(const aero_kv_cache *kv, void *const *base, int layer, int seq, int cell);
// Writes one token's K and V rows (kv_dim floats each) into a cell, converting to the cache type.
void aero_kv_store(aero_kv_cache *kv, int layer, int seq, int cell, const float *k, const float *v);
// Copies one KV head of cells [0, n_cells) of a sequence into f32 rows of hd (K or V: base is kv->k or kv->v).
void aero_kv_head_f32(const aero_kv_cache *kv, void *const *base, int layer, int seq, int kvh, int n_cells, int hd,
                      float *out);

// A context: the KV cache and the activation buffers of the forward pass.
struct aero_ctx {
    aero_model *m;
    aero_kv_cache kv;
    int n_ctx, n_seq, kv_dim;
    int n_tile;             // tokens computed at once inside a layer (the -b tile)
    int cap;                // tokens the whole-batch buffers hold (grown by aero_decode)
    float *x;               // cap rows of n_embd: the residual stream of every token of the batch
    void *embd_raw;         // n_tile raw embedding rows
    // activations of one tile
    float *xb, *q, *kb, *vb, *att, *hb, *hb2, *logit_in;
    int *block_start;       // n_tile + 1: attention blocks of the tile
    float *scores;          // per thread: n_ctx attention scores
    int *rows;              // per thread: n_ctx visible cache rows of one query
    float *kf, *vf;         // per thread: one KV head of a sequence's cache in f32 (n_ctx x head_dim each)
    void *gpu;              // the CUDA state (forward_cuda.c) when the context computes on the GPU, else NULL
};

#endif
