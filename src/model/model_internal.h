// Internals shared by the model's files (hyperparameters, weights, KV cache, forward pass).
#ifndef AERO_MODEL_INTERNAL_H
#define AERO_MODEL_INTERNAL_H

#include "../core/threadpool.h"
#include "../kernels/kernels.h"
#include "../kernels/ops.h"
#include "../stream/expert_cache.h"
#include "../stream/stream.h"
#include "model.h"
#include "mla.h"
#include "moe.h"
#include "../mpi/pipeline.h"

typedef enum {
    AERO_ARCH_LLAMA,
    AERO_ARCH_QWEN2,
    AERO_ARCH_QWEN3,
    AERO_ARCH_GEMMA2,
    AERO_ARCH_GEMMA3,
    AERO_ARCH_PHI3,
    AERO_ARCH_DEEPSEEK2,
    AERO_ARCH_GRANITE,
    AERO_ARCH_OLMO2,
    AERO_ARCH_MISTRAL3
} aero_arch_kind;

// Tensor indices (into the GGUF tensor table) of one layer's weights; -1 when absent (optional ones).
typedef struct {
    int64_t attn_norm;      // (n_embd)
    int64_t wqkv;           // phi3: Q, K and V fused by rows (n_embd, qd + 2 kvd); wq/wk/wv -1 then
    int64_t wq;             // (n_head * head_dim, n_embd)
    int64_t wk;             // (n_head_kv * head_dim, n_embd)
    int64_t wv;             // (n_head_kv * head_dim, n_embd)
    int64_t wo;             // (n_embd, n_head * head_dim)
    int64_t bq, bk, bv;     // qwen2 biases (n_head * head_dim) / (n_head_kv * head_dim)
    int64_t q_norm, k_norm; // qwen3 / gemma3 per-head RMSNorm (head_dim)
    int64_t attn_post_norm; // gemma: RMSNorm of the attention output before the residual add (n_embd); -1 absent
    int64_t ffn_norm;       // (n_embd)
    int64_t ffn_post_norm;  // gemma: RMSNorm of the FFN output before the residual add (n_embd); -1 absent
    int64_t w_gate;         // (n_ff, n_embd)
    int64_t w_up;           // (n_ff, n_embd); phi3: gate and up fused (2 n_ff, n_embd), w_gate -1
    int64_t w_down;         // (n_embd, n_ff)
    // mixture of experts (w_gate/w_up/w_down are -1 then): the router and shared expert live in the layer's
    // unit; the routed experts are outside every unit (resident when all fits, else in the expert cache)
    bool moe;
    int64_t router;                               // ffn_gate_inp (n_expert, n_embd)
    int64_t sh_gate, sh_up, sh_down, sh_gate_inp; // qwen2moe shared expert; -1 when absent
    int64_t exps[3];     // merged ffn_{gate,up,down}_exps (expert index outermost); -1 in the per-expert layout
    int64_t *per_expert; // per-expert layout: ffn_{gate,up,down}.E at [E * 3 + part]; NULL when merged
    aero_dtype exp_type[3];
    uint64_t exp_slice[3]; // bytes of one expert's part (rows x row bytes)
    // deepseek2 (mla.c): wq is -1 when the query is compressed (q_a, its norm, q_b); wk/wv are -1
    int64_t wq_a, q_a_norm, wq_b, wkv_a, kv_a_norm; // attn_q_a, attn_q_a_norm, attn_q_b, attn_kv_a_mqa, attn_kv_a_norm
    int64_t wk_b, wv_b, wkv_b; // attn_k_b {nope, kv_lora, n_head} + attn_v_b, or the older attn_kv_b (-1: absent)
    int64_t probs_b;           // exp_probs_b.bias: the routing's selection bias (V3); -1 when absent
} aero_layer_weights;

struct aero_model {
    aero_gguf gguf;
    aero_hparams hp;
    aero_arch_kind kind;
    bool rope_neox;       // rotate halves (qwen) instead of adjacent pairs (llama)
    float *rope_inv_freq; // (rope_dim / 2) angle per position per pair, scaling included
    float rope_mscale;    // cos and sin scaled by this (YaRN, rope.scaling.attn_factor); 1 for most models
    float *rope_inv_freq_swa; // sliding-window layers' speeds when their base differs (gemma3: 10000); else NULL
    float *rope_inv_freq_long; // LongRoPE: speeds with rope_factors_long (rope_inv_freq has the short ones)
    aero_tokenizer *tok;
    aero_stream *stream;
    aero_pool *pool;
    int n_threads;
    int64_t tok_embd, out_norm, output;
    aero_layer_weights *layers;
    uint64_t weight_bytes;
    bool moe; // the layers' FFN is a mixture of experts
    aero_moe_params moe_p;
    aero_mla_params mla; // deepseek2 only
    aero_expert_cache *experts; // NULL when the experts are resident
    uint64_t *expert_uses;      // [layer * n_expert + e]: passes whose tokens used the expert (since the reset)
    bool *expert_warm;          // [layer * n_expert + e]: in the expert cache at the reset
    bool expert_prefetch;       // predict and prefetch the next layer's experts (decode passes, expert cache)
    char device[8];             // aero_model_params.device ("" = cpu)
    uint64_t gpu_mem;
    int n_gpu_ctx; // live GPU contexts: their VRAM-resident units are external to the stream
    struct aero_pipe *pipe;      // this process is a rank of a pipeline (src/mpi/pipeline.c); NULL: all layers here
    int layer_first, layer_last; // the layers this process computes: [first, last) ([0, n_layer) without a pipeline)
};

aero_status aero_hparams_read(const aero_gguf *g, aero_hparams *hp, aero_arch_kind *kind, aero_error *err);
// The mixture-of-experts keys with llama.cpp's defaults (docs/moe.md); *moe false for a dense model.
aero_status aero_moe_hparams_read(const aero_gguf *g, const aero_hparams *hp, bool *moe, aero_moe_params *p,
                                  aero_error *err);
// The expert source of a context's forward pass: resident expert tensors or the expert cache, whichever the
// plan chose; with the cache, its first prepare of a layer also issues the context's pending prefetch.
aero_moe_source aero_ctx_moe_source(aero_ctx *c);
// The FFN of MoE layer l (ffn_norm, router, experts, shared expert) added to the residual rows x on the host: the
// GPU forward pass computes MoE layers' attention on the device and their FFN here.
aero_status aero_ctx_moe_ffn_host(aero_ctx *c, int l, float *x, int n, aero_error *err);
// The expert cache's counters (hits, misses, bytes read, prefetches); false (and zeros) when the model has no
// expert cache (dense, or every expert resident).
bool aero_model_expert_stats(const aero_model *m, aero_expert_cache_stats *out);

// The KV cache: per layer, per sequence, n_ctx cells of one K row and one V row (kv_dim elements each, of
// type_k / type_v; quantized types in blocks along each head, so a head's part of a row is whole blocks).
// A cell is a position of a sequence's cache; cells [0, len[seq]) are in use.
typedef struct {
    int n_layer, n_seq, n_ctx, kv_dim, head_dim;
    aero_dtype type_k, type_v;
    size_t row_k, row_v; // bytes of one cell's K row / V row
    void **k, **v;       // [layer] -> [seq][cell][row]
    int *len;            // per seq: cells in use
    int recent;          // --kv-recent: positions read from the F16 copies (0: none)
    int ring;            // cells of each sequence's F16 copy: cell c at slot c % ring
    uint16_t **rk, **rv; // [layer] -> [seq][slot][kv_dim] F16 copies of quantized K / V (NULL: none)
} aero_kv_cache;

// recent > 0 keeps F16 copies of the quantized sides in a ring of `ring` cells (recent + the compute tile).
// The cells of layers [first, last) only (a pipeline rank's; the others stay NULL): init is [0, n_layer).
aero_status aero_kv_cache_init_range(aero_kv_cache *kv, int n_layer, int first, int last, int n_seq, int n_ctx,
                                     int n_head_kv, int head_dim, aero_dtype type_k, aero_dtype type_v, int recent,
                                     int ring, aero_error *err);
aero_status aero_kv_cache_init(aero_kv_cache *kv, int n_layer, int n_seq, int n_ctx, int n_head_kv, int head_dim,
                               aero_dtype type_k, aero_dtype type_v, int recent, int ring, aero_error *err);
// Cells of the F16 ring for p (0 when p keeps none): what init is given and aero_kv_bytes counts.
int aero_kv_ring_cells(const aero_hparams *hp, const aero_ctx_params *p);
// The F16 copy of a cell's K (v false) or V row, or NULL when that side keeps none.
uint16_t *aero_kv_recent_row(const aero_kv_cache *kv, bool v, int layer, int seq, int cell);
void aero_kv_cache_free(aero_kv_cache *kv);
// The K (v false) or V (v true) row of a cell.
void *aero_kv_cell(const aero_kv_cache *kv, bool v, int layer, int seq, int cell);
// Writes one token's K and V rows (kv_dim floats each) into a cell, converting to the cache types.
void aero_kv_store(aero_kv_cache *kv, int layer, int seq, int cell, const float *k, const float *v);
// Copies one KV head of cells [0, n_cells) of a sequence into f32 rows of head_dim (K or V), dequantizing.
void aero_kv_head_f32(const aero_kv_cache *kv, bool v, int layer, int seq, int kvh, int n_cells, float *out);
// Whether attention dots the query with the stored K blocks (quantized K) instead of f32 rows.
bool aero_kv_k_quantized(const aero_kv_cache *kv);

// A context: the KV cache and the activation buffers of the forward pass.
struct aero_ctx {
    aero_model *m;
    aero_kv_cache kv;
    int n_ctx, n_seq, kv_dim;
    int n_tile;     // tokens computed at once inside a layer (the -b tile)
    int cap;        // tokens the whole-batch buffers hold (grown by aero_decode)
    float *x;       // cap rows of n_embd: the residual stream of every token of the batch
    void *embd_raw; // n_tile raw embedding rows
    // activations of one tile
    float *xb, *q, *kb, *vb, *att, *hb, *hb2, *logit_in;
    int *block_start;            // n_tile + 1: attention blocks of the tile
    float *scores;               // per thread: n_ctx attention scores
    int *rows;                   // per thread: n_ctx visible cache rows of one query
    float *kf, *vf;              // per thread: one KV head of a sequence's cache in f32 (n_ctx x head_dim each)
    void *qq;                    // per thread: one query head quantized for the K type's dot (quantized K only)
    size_t qq_bytes;             // bytes of one thread's qq
    float *rtmp;                 // per thread: one F16 copy row in f32 (--kv-recent)
    aero_moe_work *moe_work;     // MoE models: routing scratch of one tile
    float *moe_y;                // MoE models: the FFN output of one tile (n_tile x n_embd)
    int *moe_ids;                // MoE models: the experts one tile used (n_expert)
    aero_moe_work *moe_next;     // the predictor's routing: the next layer's router on this layer's FFN input
    int *pf_ids, pf_n, pf_layer; // experts to prefetch once the current layer's are acquired (pf_n 0: none)
    void *gpu;                   // the CUDA state (forward_cuda.c) when the context computes on the GPU, else NULL
    const float *rope_inv_freq;  // the model's speeds this context rotates with (LongRoPE: long or short by n_ctx)
    struct aero_mla_work *mla;   // deepseek2: the latent attention's scratch (mla.c)
    int pipe_id;                 // a pipeline's contexts: this one's id on every rank
    int hidden_users;            // draft heads reading hidden states: a GPU context copies its residual rows back
    uint64_t gpu_head_vram;      // VRAM planned for draft heads' layers (aero_ctx_params.gpu_head_vram)
};

// The forward pass in the steps a pipeline rank runs separately (src/mpi/pipeline.c); aero_decode is them in
// order. begin: checks and cells (cell per token; base and added per sequence); layers: [l0, l1) over batch
// tokens [t0, t1) of c->x; head: the logits of the wanted rows of the whole batch.
aero_status aero_forward_begin(aero_ctx *c, const aero_batch *b, int *cell, int *base, int *added, aero_error *err);
aero_status aero_forward_embed(aero_ctx *c, const aero_batch *b, aero_error *err);
aero_status aero_forward_layers(aero_ctx *c, const aero_batch *b, const int *cell, const int *base, int t0, int t1,
                                int l0, int l1, aero_error *err);
aero_status aero_forward_head(aero_ctx *c, const aero_batch *b, float *logits, aero_error *err);

// deepseek2: the latent KV cache (one row of kv_lora_rank + qk_rope values per cell, no V rows) and the
// attention scratch of a context whose n_tile and n_seq are set.
aero_status aero_mla_ctx_init(aero_ctx *c, const aero_ctx_params *p, aero_error *err);
void aero_mla_ctx_free(aero_ctx *c);
// One tile's attention block of a deepseek2 layer, residual added into c->x rows [first, first + n); the
// batch's cells and per-sequence bases as forward.c computed them.
aero_status aero_mla_attention(aero_ctx *c, int l, const aero_batch *b, int first, int n, const int *cell,
                               const int *base, aero_error *err);

#endif
