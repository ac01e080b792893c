// The GPU forward pass (forward_cuda.c, built with AERO_CUDA): what forward.c and kv.c call when a context
// was created for the CUDA device. The batch semantics are aero_decode's; the host keeps the KV lengths.
#ifndef AERO_MODEL_FORWARD_CUDA_H
#define AERO_MODEL_FORWARD_CUDA_H

#include "../kernels/cuda/cuda_backend.h"
#include "model_internal.h"

// Opens the device for a context: VRAM budget gpu_mem (0: what the model and context need, capped at the free
// VRAM less a margin), the first units that fit uploaded once, the rest streamed through two VRAM slots.
aero_status aero_gpu_ctx_init(aero_ctx *c, uint64_t gpu_mem, aero_error *err);
void aero_gpu_ctx_free(aero_ctx *c);
// aero_decode on the GPU after the batch was validated: cell[i] is token i's cache cell, base[s] the length of
// sequence s before the batch. The caller commits or rolls back the lengths.
aero_status aero_gpu_decode(aero_ctx *c, const aero_batch *b, const int *cell, const int *base, float *logits,
                            aero_error *err);
// aero_kv_keep's moves on the device cache (before the host updates the length).
void aero_gpu_kv_keep(aero_ctx *c, int seq, int base, const int *keep, int n_keep);
// aero_ctx_project on the GPU: n host rows (normed hidden states) through the output head into n x n_vocab host
// logits; the head unit is acquired as a pass acquires it (VRAM-resident, or copied into a slot).
aero_status aero_gpu_project(aero_ctx *c, const float *h, int n, float *logits, aero_error *err);
// After the device pass over batch tokens [first, first + n): their residual rows into c->x (host), as the CPU
// pass leaves them, for aero_ctx_hidden (only while a draft head reads them: c->hidden_users).
aero_status aero_gpu_keep_hidden(aero_ctx *c, int first, int n, aero_error *err);
// For a draft head's layer on the GPU (speculative/head_gpu.c), which runs on the context's backend and shares its
// embedding and output head: the backend; the token embedding as a device matrix (false: its rows are not in VRAM);
// n rows of normed hidden states already in VRAM through the output head into n x n_vocab device logits (queued,
// not waited for); and the VRAM heads take above the context's own (enter before a head's first allocation, leave
// after its last use: the arena is reset when the last head leaves).
aero_cuda *aero_gpu_cuda(aero_ctx *c);
bool aero_gpu_embd(aero_ctx *c, aero_cuda_wmat *w);
aero_status aero_gpu_project_dev(aero_ctx *c, const float *x, int n, float *logits, aero_error *err);
bool aero_gpu_output_resident(aero_ctx *c); // the projection copies no weights (a head's graph may record it)
void aero_gpu_head_enter(aero_ctx *c);
void aero_gpu_head_leave(aero_ctx *c);
// One line on the device, the budget and the plan.
const char *aero_gpu_describe(const aero_ctx *c);

#endif
