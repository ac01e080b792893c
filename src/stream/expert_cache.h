// Cache of routed experts under a byte budget, keyed by (layer, expert). An expert is a unit of its own:
// its slices of the gate, up and down tensors (each contiguous in the file because the expert index is the
// outermost dimension). A layer's compute acquires the experts its tokens were routed to: those present are
// pinned (hits), the missing ones are read all at once by several IO threads (misses), and the unpinned
// experts the policy values least are evicted to make room. prefetch() queues reads of experts a predictor
// expects next, so they arrive while the current layer computes. Unlike the cyclic layer scan, expert use is
// skewed (a few experts hot), so a cache that keeps frequent experts pays.
#ifndef AERO_STREAM_EXPERT_CACHE_H
#define AERO_STREAM_EXPERT_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"

typedef enum {
    AERO_EXPERT_EVICT_LFU = 0,        // least frequently used (use counts kept across evictions, halved as they age)
    AERO_EXPERT_EVICT_LRU = 1,        // least recently used
    AERO_EXPERT_EVICT_LFU_RECENT = 2, // LFU that spares the experts of the last n_layer acquires (one token)
    AERO_EXPERT_EVICT_RATE = 3,       // lowest estimated use rate per pass (frequency over the time an expert
                                      // has been seen, plus a recency term; docs/perf/moe.md)
} aero_expert_evict;

// Where one part (gate, up or down slice) of an expert lies: file index, byte offset and size.
typedef struct {
    int file;
    uint64_t offset;
    uint64_t size;
} aero_expert_extent;

// Fills ext[0..3) (gate, up, down) for (layer, expert); an error for an expert the model does not have.
typedef aero_status (*aero_expert_locate_fn)(void *ctx, int layer, int expert, aero_expert_extent ext[3],
                                             aero_error *err);

typedef struct {
    const char *const *paths; // the model files, indexed by aero_expert_extent.file
    int n_files;
    int n_layer, n_expert;
    uint64_t budget; // bytes of expert buffers held at most (aligned spans included)
    aero_expert_evict policy;
    int n_io_threads; // parallel reads (<= 0: 4)
    bool buffered;    // never O_DIRECT (tests, file systems without it)
    bool page_cache;  // buffered reads keep their pages (tests); else POSIX_FADV_DONTNEED after use
    aero_expert_locate_fn locate;
    void *locate_ctx;
} aero_expert_cache_config;

typedef struct {
    uint64_t lookups;    // experts acquired
    uint64_t hits;       // of which already resident
    uint64_t misses;     // of which read
    uint64_t bytes_read; // from disk, aligned spans included
    uint64_t evictions;
    uint64_t batches;         // acquires that read at least one expert
    double io_seconds;        // wall time spent waiting for reads
    uint64_t held_bytes;      // now
    uint64_t peak_bytes;      // most ever held
    int entries;              // experts resident now
    uint64_t prefetch_issued; // experts read by prefetch()
    uint64_t prefetch_used;   // of which acquired later (the predictor's hits)
    uint64_t prefetch_wasted; // of which evicted before any acquire
} aero_expert_cache_stats;

typedef struct aero_expert_cache aero_expert_cache;

// Opens the files and starts the IO threads; NULL with err set on failure.
aero_expert_cache *aero_expert_cache_new(const aero_expert_cache_config *cfg, aero_error *err);
void aero_expert_cache_free(aero_expert_cache *c);

// Pins experts[0..n) of a layer (distinct ids), reading every missing one in parallel. When the budget
// cannot hold them all beside what is pinned, pins the longest prefix that fits and says how many in
// *n_ready (so a caller can compute those, release them and go on); AERO_ERR_NOMEM when not even one fits.
// On a read error nothing of this call stays pinned and the message names the layer and expert.
aero_status aero_expert_cache_acquire(aero_expert_cache *c, int layer, const int *experts, int n, int *n_ready,
                                      aero_error *err);
// Starts reading the listed experts of a layer that are not resident (the next layer's likely experts),
// without waiting and without pinning: a later acquire finds them (waiting for reads still in flight).
// Room is made only from experts the policy values less than the guess; an expert that does not fit, or
// whose read fails, is simply not prefetched (the acquire reads it again and reports the error).
void aero_expert_cache_prefetch(aero_expert_cache *c, int layer, const int *experts, int n);
// Waits until no read is in flight (prefetches included); benchmarks and tests that need a settled cache.
void aero_expert_cache_wait_idle(aero_expert_cache *c);
// Unpins experts acquired earlier.
void aero_expert_cache_release(aero_expert_cache *c, int layer, const int *experts, int n);
// The bytes of one part (0 gate, 1 up, 2 down) of a pinned expert; NULL when it is not pinned.
const void *aero_expert_cache_part(const aero_expert_cache *c, int layer, int expert, int part);
// Whether (layer, expert) is resident, without counting a lookup (predictors, tests).
bool aero_expert_cache_contains(const aero_expert_cache *c, int layer, int expert);

void aero_expert_cache_stats_get(const aero_expert_cache *c, aero_expert_cache_stats *out);
// Zeroes the counters (not the contents); benchmarks call it after warm-up.
void aero_expert_cache_stats_reset(aero_expert_cache *c);
const char *aero_expert_evict_name(aero_expert_evict p);

#endif
