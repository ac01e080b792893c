// Weight access under a memory budget. Tensors are grouped into units: layer unit l (0 <= l < n_layer) holds the
// tensors named "blk.<l>.*" (aero_gguf_tensor_layer); the head unit, aero_stream_head_unit(s) (the last, after
// the layer units), holds the output head (output.weight, or token_embd.weight when tied). A planner decides
// once which units stay resident and which are streamed through a ring of slots (a slot: one streamed unit's
// place in the ring) by IO threads that read ahead cyclically. Everything the model reads goes through here
// (invariant 1).
#ifndef AERO_STREAM_H
#define AERO_STREAM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "../core/status.h"
#include "../core/threadpool.h"
#include "../core/util.h"
#include "../format/gguf.h"

typedef struct aero_stream aero_stream;

typedef struct {
    uint64_t mem_budget;       // 0 = no limit
    int prefetch;              // units read ahead; <= 0: 2
    int io_threads;            // reads in flight (one per IO thread); <= 0: 4
    const char *output_tensor; // name of the output head tensor (the head unit's)
    const char *embd_tensor;   // name of the token embedding (read by rows)
    bool plan_only;            // decide the plan and stop: no files opened, nothing read (aerollm info)
    bool no_direct;            // buffered reads + POSIX_FADV_DONTNEED even where O_DIRECT works (tests, benchmarks)
    uint64_t chunk_bytes;      // bytes per read request; 0: 8 MiB (rounded to 4 KiB)
    // per unit (n_layer + 1), or NULL: units the caller holds elsewhere (the GPU's VRAM-resident units). They
    // are neither kept in memory nor read per pass; acquiring one holds no data; aero_stream_load_unit reads
    // one once. The budget goes to the other units.
    const bool *external;
    // The caller reads the output head in row blocks (aero_stream_acquire_head_part): a head larger than a layer
    // unit may then be streamed in layer-sized blocks instead of held resident, which lowers the minimum budget.
    bool head_in_parts;
    // The head unit is read more than once a pass (a draft head's projection): keep it resident whenever a plan
    // with it resident fits, even where streaming it would free room for more layers.
    bool head_hot;
} aero_stream_params;

#include "../../include/aerollm.h" // aero_stream_stats, aero_stream_plan

// Whether a tensor name is a routed expert's (llama.cpp names): blk.N.ffn_{gate,up,down,gate_up}_exps.weight
// (merged, expert index outermost) or blk.N.ffn_{gate,up,down}.E.weight (the older one tensor per expert).
// Such tensors are never part of a layer unit. *expert gets E for the per-expert form, -1 for merged.
bool aero_stream_is_expert_tensor(const char *name, int *expert);

// n_layer: the model's layer count, so the layer units are 0..n_layer-1; the head unit (aero_stream_head_unit)
// follows them.
aero_status aero_stream_open(aero_stream **out, const aero_gguf *g, int n_layer, const aero_stream_params *p,
                             aero_error *err);

// Reads an external unit once into a buffer of its own (the caller copies it out, e.g. to VRAM): its tensors are
// readable with aero_stream_tensor until aero_stream_unload_unit frees it. Held beyond the budget meanwhile.
aero_status aero_stream_load_unit(aero_stream *s, int unit, aero_error *err);
void aero_stream_unload_unit(aero_stream *s, int unit);
// The same stream planned again with other external units (NULL: none); *s is replaced, the old one closed
// first so that the resident units are never held twice. On failure (a budget too small for the new plan) *s
// is the old plan reopened (NULL only if that fails too).
// head_in_parts as in aero_stream_params (the GPU reads the head whole, the CPU in row blocks).
aero_status aero_stream_reopen(aero_stream **s, const bool *external, bool head_in_parts, aero_error *err);
// Whether unit u is external in this stream's plan.
bool aero_stream_unit_external(const aero_stream *s, int unit);

// Data of an always-resident tensor (not part of any unit, or a small one of a unit: norms, biases). NULL for a
// tensor that lives in a unit's memory (use aero_stream_tensor while the unit is acquired).
const void *aero_stream_global(aero_stream *s, int64_t tensor);
// Data of a tensor of an acquired (or resident) unit, or of an always-resident tensor. Asking for any other
// (its unit not acquired, an index out of range) is a bug of the caller's acquire/release cycle: an assertion
// fails (NULL when assertions are compiled out), so that it never becomes wrong text downstream.
const void *aero_stream_tensor(aero_stream *s, int64_t tensor);
// The same with a status for callers that cannot know the tensor is held: AERO_ERR_INVALID naming the tensor and
// why (not acquired, read by row, planning only, no such tensor), *data NULL.
aero_status aero_stream_tensor_checked(aero_stream *s, int64_t tensor, const void **data, aero_error *err);
// Raw rows of the embedding tensor (n rows of its row bytes, packed in out), read from memory or disk.
aero_status aero_stream_read_rows(aero_stream *s, const int32_t *rows, int n, void *out, aero_error *err);

uint64_t aero_stream_weight_bytes_held(const aero_stream *s); // current bytes of weights in RAM

// MoE: each pass of the --stats report also records this expert cache's reads (experts looked up, hits, bytes,
// the predictor's prefetches); NULL detaches. The cache must outlive the stream's reports.
struct aero_expert_cache;
void aero_stream_attach_experts(aero_stream *s, const struct aero_expert_cache *c);

#endif
