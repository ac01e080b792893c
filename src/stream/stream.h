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
void aero_stream_close(aero_stream *s);
const aero_stream_plan *aero_stream_get_plan(const aero_stream *s);
// The output head's unit (the last unit, after the layer units): what callers acquire for the head.
int aero_stream_head_unit(const aero_stream *s);

// Data of an always-resident tensor (not part of any unit, or a small one of a unit: norms, biases). NULL for a
// tensor that lives in a unit's memory (use aero_stream_tensor while the unit is acquired).
const void *aero_stream_global(aero_stream *s, int64_t tensor);
// Blocks until unit u is in memory; pair with release. Units are acquired in cyclic order: the layer units
// 0..n_layer-1, then the head unit (out of order restarts the cycle there, re-reading).
aero_status aero_stream_acquire(aero_stream *s, int unit, aero_error *err);
// Data of a tensor of an acquired (or resident) unit, or of an always-resident tensor. Asking for any other
// (its unit not acquired, an index out of range) is a bug of the caller's acquire/release cycle: an assertion
// fails (NULL when assertions are compiled out), so that it never becomes wrong text downstream.
const void *aero_stream_tensor(aero_stream *s, int64_t tensor);
// The same with a status for callers that cannot know the tensor is held: AERO_ERR_INVALID naming the tensor and
// why (not acquired, read by row, planning only, no such tensor), *data NULL.
aero_status aero_stream_tensor_checked(aero_stream *s, int64_t tensor, const void **data, aero_error *err);
void aero_stream_release(aero_stream *s, int unit);
// Raw rows of the embedding tensor (n rows of its row bytes, packed in out), read from memory or disk.
aero_status aero_stream_read_rows(aero_stream *s, const int32_t *rows, int n, void *out, aero_error *err);

void aero_stream_get_stats(const aero_stream *s, aero_stream_stats *out);
void aero_stream_reset_stats(aero_stream *s);
uint64_t aero_stream_weight_bytes_held(const aero_stream *s); // current bytes of weights in RAM
// Prints the --stats report (per pass: bytes streamed, IO busy, compute, IO wait, GB/s, disk floor) to f. The
// floor's disk bandwidth is measured now (O_DIRECT reads of the model file into the idle window) unless set.
void aero_stream_print_stats(aero_stream *s, FILE *f);
// Disk read bandwidth (bytes/s) of the bytes a pass streams, read through the one disk probe (aero_measure_disk)
// the way the streamer reads (its request size, as many requests in flight as it has IO threads, O_DIRECT):
// every streamed range, or max_bytes of its requests spread evenly over the pass (0 or UINT64_MAX: no limit). The same bytes, so that a host-side cache favours
// neither side. The streaming window is the buffer, so the measurement adds no memory; the next acquire
// refills the window. 0 when nothing is streamed, the window is in use, or the reads failed.
double aero_stream_measure_disk_bw(aero_stream *s, uint64_t max_bytes);
// Uses bw (bytes/s) as the disk bandwidth of the floor in aero_stream_print_stats instead of measuring.
void aero_stream_set_disk_bw(aero_stream *s, double bw);
// Memory read bandwidth (bytes/s) summing the engine's own largest weight buffer (window or pinned unit) on
// the pool's threads, so that a benchmark under a memory limit allocates nothing more. 0 when too small.
double aero_stream_measure_mem_bw(aero_stream *s, aero_pool *pool);

#endif
