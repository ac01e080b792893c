// The draft head's layer on the GPU (head_gpu.c): when the target context computes on the GPU, head.c's passes
// run here through the CUDA backend (cuda_backend.h) instead of on the host. Weights, KV cells and activations are
// in VRAM; the target's hidden states (the head's input features) and its token ids go up each call (n_embd floats
// a token), the output features and the logits come back (one copy). The target's embedding and output head are
// the context's own (aero_gpu_embd, aero_gpu_project_dev). The sizes below are plain arithmetic, on every build,
// so that run, serve and info plan the same VRAM; the rest exists only with AERO_CUDA.
#ifndef AERO_SPEC_HEAD_GPU_H
#define AERO_SPEC_HEAD_GPU_H

#include <stdbool.h>
#include <stdint.h>

#include "../kernels/kernels.h"
#include "../model/model.h"

enum { HEAD_W_FC, HEAD_W_Q, HEAD_W_K, HEAD_W_V, HEAD_W_O, HEAD_W_GATE, HEAD_W_UP, HEAD_W_DOWN, HEAD_W_COUNT };
enum { HEAD_N_H, HEAD_N_E, HEAD_N_ATTN, HEAD_N_FFN, HEAD_N_COUNT };

#define HEAD_GPU_MIN_ROWS 64  // tokens a device call computes at least (committed tokens go in chunks of this)
#define HEAD_GPU_LOGIT_ROWS 8 // logits rows copied back at once (a wave of drafted tokens)

// The head's shape: width, heads, KV heads, head size, FFN width, and the target's vocabulary.
typedef struct {
    int d, n_head, n_head_kv, hd, n_ff, n_vocab;
} head_dims;

// The head's layer as head.c holds it in host memory.
typedef struct {
    head_dims dm;
    float eps;
    const float *inv_freq;    // hd / 2 rotation speeds (adjacent pairs)
    const aero_wmat *w;       // HEAD_W_COUNT matrices
    const float *const *norm; // HEAD_N_COUNT vectors of d
} head_layer;

// Tokens one device call computes: at least HEAD_GPU_MIN_ROWS, and every drafted node of a step (a wave's attention
// batch holds the drafted ancestors of its nodes beside them).
int head_gpu_rows(int nodes);
// VRAM of what every head of one file on one context shares: the weights (mat_bytes: the HEAD_W_COUNT matrices'
// bytes), the activations and attention batches of one call over KV caches of `cells` cells.
uint64_t head_gpu_shared_bytes(const head_dims *dm, const uint64_t *mat_bytes, int cells, int nodes);
// VRAM of one head's KV cells (F16 keys and values).
uint64_t head_gpu_kv_bytes(const head_dims *dm, int cells);
// Pinned host memory of the shared staging (inputs up, outputs down).
uint64_t head_gpu_host_bytes(const head_dims *dm, int nodes);

typedef struct head_gpu head_gpu;       // one head file's layer on one GPU context (shared by the heads that use it)
typedef struct head_gpu_kv head_gpu_kv; // one head's KV cells in VRAM

// One head pass (head.c's head_forward): n tokens at positions pos with input features feat (host rows). parent
// NULL: committed tokens, causal after the cells [0, base); else per token the cell of the drafted token before it
// (-1: none), each token seeing the committed cells [0, n_commit), its drafted ancestors (cell_parent, host) and
// itself. The new tokens take cells base, base + 1, ...; the output features of every token go to x (host rows of
// d), and the logits of the last n_logits tokens to logits (n_logits x n_vocab).
typedef struct {
    int n;
    const int32_t *tok, *pos;
    const float *const *feat;
    const int *parent;
    const int *cell_parent;
    int base, n_commit;
    float *x;
    float *logits;
    int n_logits;
} head_gpu_call;

#ifdef AERO_CUDA
// Uploads the head's layer for GPU context c (which must outlive it), with activations for `nodes` drafted nodes and
// KV caches of `cells` cells; fails (AERO_ERR_NOMEM naming the sizes, AERO_ERR_UNSUPPORTED for a weight without a
// kernel) when the context's VRAM has no room: the caller keeps the layer on the host.
aero_status head_gpu_new(aero_ctx *c, const head_layer *L, int cells, int nodes, head_gpu **out, aero_error *err);
// Frees it (and every KV state given back); the heads that used it are freed first.
void head_gpu_free(head_gpu *g);
// A KV state for one head of `cells` cells drafting up to `nodes` nodes a step: one given back earlier, or new
// VRAM; refused when g was made for fewer cells or nodes, or the VRAM is used up.
aero_status head_gpu_kv_take(head_gpu *g, int cells, int nodes, head_gpu_kv **out, aero_error *err);
// Gives a head's KV state back for the next head to reuse.
void head_gpu_kv_give(head_gpu_kv *kv);
// One head pass (head_gpu_call) on the device, waited for.
aero_status head_gpu_forward(head_gpu *g, head_gpu_kv *kv, const head_gpu_call *call, aero_error *err);
// Whether g can draft a chain on the device (the target's embedding rows are in VRAM, where drafted ids are looked
// up without the host).
bool head_gpu_chain_ok(const head_gpu *g);
// A chain drafted on the device: the committed tokens of call (parent NULL, at most one call's rows; no output
// features or logits come back), then k - 1 drafted tokens, token j being the device's argmax after token j - 1
// (aero_cuda_argmax: the first largest logit) fed with the head's own output feature, at position pos[n - 1] + j and
// cell base + n + j - 1, seeing every cell before it. ids[0..k) and prob[0..k) come back in one copy: the picked
// token after the last committed one and after each drafted one, with its softmax probability at temperature 1
// (-1 and 0: the row had no candidate). No host round trip between the tokens; waited for at the end.
aero_status head_gpu_chain(head_gpu *g, head_gpu_kv *kv, const head_gpu_call *call, int k, int32_t *ids, float *prob,
                           aero_error *err);
#endif

#endif
