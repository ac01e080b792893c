// Pipeline parallelism: the ranks of an MPI job each compute a contiguous range of a model's layers. Rank 0
// holds the embeddings, tokenizer, sampler, drafter and server and computes the first range; each pass sends the
// hidden states with the batch's description down the ranks, and the last rank, which holds the output head,
// returns the logits to rank 0. The model's code calls these few functions where a pipeline changes something.
#ifndef AERO_MPI_PIPELINE_H
#define AERO_MPI_PIPELINE_H

#include <stdbool.h>

#include "../../include/aerollm.h"
#include "../core/status.h"

struct aero_pipe;

// Whether a model load with these parameters is split across ranks: p->pipeline under an MPI job of 2 ranks or
// more. Then the rank's layer range [*first, *last) and the units it leaves out (*external, n_layer + 1 flags,
// malloc'ed: the other ranks' layers, and the head unless it is the last rank).
aero_status aero_pipe_plan(const aero_gguf *g, int n_layer, const aero_model_params *p, int *first, int *last,
                           bool **external, aero_error *err);
// After the rank's part is loaded: rank 0 has every other rank load its range (and waits for them); a worker only
// records its role. Sets m->pipe.
aero_status aero_pipe_open(aero_model *m, const aero_model_params *p, aero_error *err);
// Rank 0: the other ranks drop their part; frees m->pipe.
void aero_pipe_close(aero_model *m);
// Rank 0: the same context on every rank (its KV cache holds the rank's layers).
aero_status aero_pipe_ctx_new(aero_ctx *c, const aero_ctx_params *p, aero_error *err);
void aero_pipe_ctx_free(aero_ctx *c);
// Rank 0: aero_kv_keep's cell moves on every rank (a tree's accepted path).
void aero_pipe_kv_keep(aero_ctx *c, int seq, int base, const int *keep, int n_keep);
// Rank 0's part of aero_decode once the batch is checked and its cells known: embeddings, its layers, then the
// other ranks, micro-batch by micro-batch; the logits of the wanted rows back in logits (may be NULL).
aero_status aero_pipe_decode(aero_ctx *c, const aero_batch *b, const int *cell, const int *base, float *logits,
                             aero_error *err);
// The layer boundaries of n ranks (first[0..n], first[0] = 0, first[n] = n_layer): equal shares of the layers'
// bytes, or the shares of split ("0.4,0.6": one per rank); every rank gets at least one layer.
aero_status aero_pipe_split(const aero_gguf *g, int n_layer, int n, const char *split, int *first, aero_error *err);

#endif
