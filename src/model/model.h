// Transformer models (llama, qwen2, qwen3) read from GGUF: hyperparameters, weights reached through
// stream/, a KV cache with several sequences, and a forward pass over a batch of tokens.
#ifndef AERO_MODEL_H
#define AERO_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"
#include "../format/gguf.h"
#include "../tokenizer/tokenizer.h"

typedef struct aero_model aero_model;
typedef struct aero_ctx aero_ctx;

typedef struct {
    const char *path;
    uint64_t mem_budget;   // weight bytes the engine may hold in RAM; 0 = no limit (all resident)
    int n_threads;         // compute threads; <= 0: number of CPUs
    int prefetch;          // layers read ahead when streaming; <= 0: default (2)
    int io_threads;        // <= 0: default
    const char *device;    // "cpu" (NULL) or "cuda": where its contexts compute unless they say otherwise
    uint64_t gpu_mem;      // VRAM budget of a CUDA context; 0: what it needs, at most the free VRAM less a margin
} aero_model_params;

typedef enum { AERO_ROPE_SCALING_NONE, AERO_ROPE_SCALING_LINEAR, AERO_ROPE_SCALING_LLAMA3 } aero_rope_scaling;

typedef struct {
    char arch[32];
    int n_layer, n_embd, n_head, n_head_kv, head_dim, rope_dim, n_ff, n_vocab, n_ctx_train;
    float norm_eps, rope_base;
    aero_rope_scaling rope_scaling;
    float rope_scale_factor, rope_low_freq, rope_high_freq; // linear: factor; llama3: all four
    int rope_orig_ctx;
    bool tied_output;
} aero_hparams;

void aero_model_params_default(aero_model_params *p);
aero_status aero_model_load(aero_model **out, const aero_model_params *p, aero_error *err);
void aero_model_free(aero_model *m);
const aero_hparams *aero_model_hparams(const aero_model *m);
const aero_tokenizer *aero_model_tokenizer(const aero_model *m);
const aero_gguf *aero_model_gguf(const aero_model *m);
struct aero_stream *aero_model_stream(aero_model *m);
uint64_t aero_model_weight_bytes(const aero_model *m); // bytes of all weight tensors in the file(s)
int aero_model_n_threads(const aero_model *m);

typedef struct {
    int n_ctx;      // KV capacity per sequence; <= 0: model's training context capped at 4096
    int n_seq;      // sequences the cache holds at once (server sequences); <= 0: 1
    bool kv_f32;    // F32 cache instead of F16
    int n_batch;    // tokens computed at once inside a layer (-b, the compute tile); <= 0: 512. A longer batch
                    // is computed tile by tile within each layer, so it still reads the weights once.
    const char *device; // NULL: the model's (aero_model_params.device); "cpu" or "cuda"
    uint64_t gpu_mem;   // 0: the model's
} aero_ctx_params;

aero_status aero_ctx_new(aero_ctx **out, aero_model *m, const aero_ctx_params *p, aero_error *err);
void aero_ctx_free(aero_ctx *c);
int aero_ctx_n_ctx(const aero_ctx *c);
int aero_ctx_n_seq(const aero_ctx *c);
// "cuda" when built with the CUDA backend and a GPU is present, else "cpu" (the CLI's --device default).
const char *aero_default_device(void);
// One line on where the context computes (device, VRAM budget, resident and streamed units).
const char *aero_ctx_device(const aero_ctx *c);
aero_model *aero_ctx_model(aero_ctx *c);

// A batch: token i has a position, a sequence and (optionally) a mask row. Without mask, token i attends to
// its sequence's cached tokens and to the earlier tokens of the same sequence in this batch (causal). With
// mask (n*n bytes, row i), token i attends to its sequence's cache and to batch token j iff mask[i*n+j] (tree
// verification). Each token is appended to its sequence's cache at the next cell (position), in batch order.
typedef struct {
    int n;
    const int32_t *tokens;
    const int32_t *pos;
    const int32_t *seq;            // NULL: all sequence 0
    const uint8_t *mask;           // NULL: causal
    const uint8_t *want_logits;    // NULL: logits for every token; else only where nonzero (rows packed in order)
} aero_batch;

// Runs the model over the batch, appending K/V to the cache; writes n_vocab logits per wanted token.
// Each layer computes every tile (n_batch tokens) of the batch while it is held, so a whole prompt passed in
// one call reads streamed weights once. Context overflow is AERO_ERR_RANGE and changes nothing.
aero_status aero_decode(aero_ctx *c, const aero_batch *b, float *logits, aero_error *err);

int aero_kv_len(const aero_ctx *c, int seq);                 // tokens cached for seq
void aero_kv_truncate(aero_ctx *c, int seq, int len);       // keeps the first len entries (rollback)
void aero_kv_drop(aero_ctx *c, int seq);                    // empties seq
// Keeps, after the first `base` entries, only the entries base+keep[0], base+keep[1], ... (ascending), moved
// down to base, base+1, ...: the accepted path of a verified tree.
void aero_kv_keep(aero_ctx *c, int seq, int base, const int *keep, int n_keep);

#endif
