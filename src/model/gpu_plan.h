// The VRAM plan of a GPU context: which units (layers, output head) stay resident in VRAM under --gpu-mem, the
// two slots the others stream through, and what the context needs besides weights. Kept apart from the CUDA
// code so that `aerollm info --gpu-mem` prints the plan the GPU forward pass will make, on any build.
#ifndef AERO_MODEL_GPU_PLAN_H
#define AERO_MODEL_GPU_PLAN_H

#include "model.h"

#define AERO_GPU_SLOTS 2      // VRAM slots of streamed units: copy l + 1 while l computes
#define AERO_GPU_HEAD_ROWS 64 // logits rows computed (and copied back) at once
#define AERO_GPU_MAX_PASS 512 // tokens per device pass (longer causal batches run in chunks)

typedef struct {
    int n_units;
    uint64_t *unit_bytes; // per unit: its matrices' VRAM size (each rounded to 256)
    bool *vram;           // per unit: uploaded once
    bool *host_ffn;       // per unit, or NULL: an MoE layer, whose FFN runs on the host: never VRAM-resident (its
                          // attention is copied each pass, its unit stays readable in host memory)
    bool head_first;      // the output head (the last unit) is chosen before the layers: a draft head projects
                          // through it every drafted token (aero_stream_params.head_hot)
    uint64_t fixed;       // KV cache, activations, batch buffers, scratch, small tensors
    uint64_t total;       // all units' bytes
    uint64_t slot_bytes;  // 0 when everything is resident
    uint64_t min_need;    // the smallest budget: fixed + two slots of the largest unit
    uint64_t budget;
} aero_gpu_plan;

// Tokens per device pass for a context computing n_tile tokens at once.
int aero_gpu_pass_cap(const aero_hparams *hp, int n_tile);
// VRAM besides the weights for a context of n_ctx x n_seq, cap tokens a pass; small: the small tensors' bytes.
uint64_t aero_gpu_fixed_bytes(const aero_hparams *hp, int n_vocab, int n_ctx, int n_seq, int cap, uint64_t small);
// VRAM of an aero_cuda_batch_new(max_tokens, n_seq, n_ctx, n_head, head_dim): a context's batch, a draft head's.
uint64_t aero_gpu_batch_bytes(int max_tokens, int n_seq, int n_ctx, int n_head, int head_dim);
// The token embedding's VRAM planned beside a draft head's layer (the head looks up the rows of the tokens it drafts
// on the device, so a whole chain is drafted without the host): its bytes when the GPU can look its rows up (a type
// with a kernel, cols a multiple of 32 unless dense), 0 when it is the tied output head (in VRAM with the head).
uint64_t aero_gpu_head_embd_bytes(aero_dtype type, int64_t cols, uint64_t nbytes, bool tied);
// What a plan needs: p->total and p->min_need (fixed + two slots of the largest unit) are set, *all gets the VRAM
// that holds every unit it may hold (fixed + all units, plus the two slots when a host_ffn unit streams), *slot
// (may be NULL) the largest unit.
void aero_gpu_plan_needs(aero_gpu_plan *p, uint64_t *all, uint64_t *slot);
// Fills p->vram for a budget: all units when they fit (and none is host_ffn), else two slots of the largest and
// then the units in layer order that still fit (the head first with head_first), host_ffn units excepted. p->n_units, unit_bytes and fixed are the caller's; a budget below p->min_need is
// refused with the numbers.
aero_status aero_gpu_plan_choose(aero_gpu_plan *p, uint64_t gpu_mem, aero_error *err);
// The plan from the file alone (units by tensor names, as the stream groups them), for `aerollm info`; head_vram:
// a draft head's layer beside the model (aero_ctx_params.gpu_head_vram; the token embedding is then planned too,
// aero_gpu_head_embd_bytes); head_hot (or a head's layer): the output head chosen first.
aero_status aero_gpu_plan_from_gguf(const aero_gguf *g, int n_ctx, int n_seq, int n_tile, uint64_t gpu_mem,
                                    uint64_t head_vram, bool head_hot, aero_gpu_plan *p, aero_error *err);
// Where each unit lives beside that plan under a host budget --mem (0: no limit): tier[u] = 'V' VRAM, 'H' host
// memory, 'D' disk (read each pass), as the stream plans the units that are not in VRAM (the output head kept
// resident when the plan puts it first: a draft head reads it). Opens nothing.
aero_status aero_gpu_plan_tiers(const aero_gguf *g, const aero_gpu_plan *p, uint64_t mem_budget, char *tier,
                                aero_error *err);
void aero_gpu_plan_free(aero_gpu_plan *p);

#endif
