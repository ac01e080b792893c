// Internals shared by the stream module's files: the tensor/unit tables the planner builds, the read jobs the
// IO threads serve, the ring of streamed units and the per-pass statistics.
#ifndef AERO_STREAM_INTERNAL_H
#define AERO_STREAM_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "stream.h"

#define ST_ALIGN 4096u              // O_DIRECT alignment of file offsets, lengths and buffers
#define ST_GAP_MERGE (256u << 10)   // tensors of a unit closer than this are read as one range
#define ST_CHUNK_DEFAULT (8u << 20) // one read request (several are in flight, one per IO thread)
#define ST_MAX_IO_THREADS 32
#define ST_MAX_PREFETCH 16
#define ST_PASS_LOG 4096 // per-pass records kept for the --stats report
#define ST_EXP_COUNTERS 6 // st_pass's exp_* fields

typedef enum {
    ST_T_SMALL,  // always resident, copied into the small-tensor arena (norms, biases, non-unit tensors)
    ST_T_UNIT,   // lives in its unit's memory (pinned buffer or a ring region while acquired)
    ST_T_EMBD,   // the untied token embedding: resident buffer or read by row
    ST_T_EXPERT, // a routed expert tensor: resident when the budget holds everything, else the expert cache's
    ST_T_SKIP,   // a tensor of a layer past n_layer (DeepSeek's multi-token-prediction blocks): never read
} st_tensor_kind;

// One contiguous read: [off, off + len) of a file, both ST_ALIGN-aligned, landing at mem_off of its buffer;
// bytes up to need_end must exist in the file (the aligned tail past the last tensor may lie past EOF).
typedef struct {
    uint32_t file;
    uint64_t off, len, need_end;
    uint64_t mem_off;
} st_range;

// A tensor of a unit (or of the embedding buffer) and where its data sits in that buffer.
typedef struct {
    int64_t tensor;
    uint64_t mem_off;
} st_place;

typedef struct {
    int first_range, n_ranges; // into stream.ranges
    int first_place, n_places; // into stream.places
    uint64_t bytes;            // buffer size: the sum of its aligned ranges
    uint64_t tensor_bytes;     // bytes of the tensors it serves
    bool resident;
    bool external; // held by the caller (aero_stream_params.external): never read per pass nor kept here
    void *mem;     // pinned buffer when resident
} st_unit;

// A read job: a list of ranges into one buffer, split into chunks that the IO threads take in queue order.
typedef struct st_job {
    const st_range *ranges;
    int n_ranges;
    char *mem;
    int cur_range; // next chunk to issue: range index and offset inside it
    uint64_t cur_off;
    int inflight;  // chunks being read now
    bool queued;   // in the queue (chunks left to issue)
    bool complete; // every chunk issued and finished (or the job failed and drained)
    bool failed;
    char errmsg[400];
    struct st_job *next;
} st_job;

// An occurrence of a streamed unit in the cyclic schedule: the seq-th streamed acquire since the start.
typedef struct {
    int64_t seq;
    int unit;
    uint64_t ring_off, bytes;
    st_job job;
} st_occ;

typedef struct {
    double start, end; // wall clock of the pass (first stream call .. release of the last unit)
    uint64_t bytes;    // bytes read from disk for it (streamed units + embedding rows)
    double io_busy, compute, wait;
    uint64_t io_bytes; // bytes the IO threads finished during the pass (whichever pass they serve)
    int units;         // units acquired so far
    // the expert cache's counters over the pass (aero_stream_attach_experts): experts looked up, of which hits,
    // bytes read for the misses, the predictor's prefetches issued and used, microseconds waited for expert reads
    uint64_t exp_lookups, exp_hits, exp_bytes, exp_pf_issued, exp_pf_used, exp_wait_us;
} st_pass;

// The IO threads' own rate (io_bytes / io_busy) counts for the floor over runs of consecutive passes that read
// enough (64 MiB and 16 requests; one pass where a pass reads that much) that the requests in flight at the ends
// (busy time without their bytes, or bytes without all their time) stay small.
#define ST_RATE_MIN_BYTES (64ull << 20)

typedef struct {
    char *path;
    int fd_direct; // O_DIRECT descriptor, -1 when the file system refuses it
    int fd;        // buffered descriptor (small tensors, fallback)
    uint64_t size;
} st_file;

struct aero_stream {
    const aero_gguf *g;
    int n_units;   // the layer units 0..head_unit-1, then the head unit
    int head_unit; // the output head's unit: n_units - 1
    aero_stream_params params;
    int prefetch, io_threads;
    uint64_t chunk;

    // tables built by the planner
    st_tensor_kind *kind; // per tensor
    int *unit_of;         // per tensor: its unit, or -1
    void **ptr;           // per tensor: data now (resident, or the acquired unit's ring region), else NULL
    st_unit *units;
    st_range *ranges;
    int n_ranges;
    st_place *places;
    int n_places;
    int64_t embd;          // tensor index of the token embedding, -1 when absent
    bool embd_in_head;     // tied: the embedding is the head unit's tensor
    st_range *embd_ranges; // untied embedding read whole (when resident)
    int n_embd_ranges;
    uint64_t embd_bytes; // its buffer size
    void *embd_mem;
    uint64_t small_bytes; // arena for the small tensors
    void *small_mem;
    st_range *exp_ranges; // every routed expert tensor, read into one buffer when the plan keeps them resident
    st_place *exp_places;
    int n_exp_ranges, n_exp_places;
    uint64_t exp_mem_bytes; // that buffer's size
    void *exp_mem;
    uint64_t row_buf_bytes; // staging buffer for embedding rows read from disk
    void *row_buf;
    int *streamed;             // streamed units in cyclic order (the head's row blocks in place of the head unit)
    int n_parts;               // row blocks of the head: units n_units .. n_units + n_parts - 1 (0: none built)
    int64_t part_rows;         // rows per block (the last may hold fewer)
    int held_part;             // the block acquired now, -1 when none
    bool depth_lowered;        // the budget held fewer ring slots than the prefetch asked for
    uint64_t min_budget_asked; // the minimum budget at the prefetch asked for
    int n_streamed;
    aero_stream_plan plan;

    st_file *files;
    uint32_t n_files;

    // ring of streamed units, served by the IO threads
    char *ring;
    uint64_t ring_bytes;
    uint64_t slot_bytes; // each streamed unit's share of the ring: the largest streamed unit
    int depth;           // effective prefetch (occurrences ahead of the one in use)
    st_occ *occ;         // depth + 1 records, indexed by seq % (depth + 1)
    int64_t occ_first;   // oldest occurrence still in the ring (not released)
    int64_t occ_end;     // next occurrence to schedule
    int64_t next_seq;    // occurrence the compute acquires next
    int64_t held_seq;    // occurrence acquired now, -1 when none
    bool window_lent;    // the ring serves a measurement (stats.c): nothing is scheduled into it
    uint64_t alloc_off;  // ring allocation cursor

    pthread_mutex_t mu;
    pthread_cond_t cv_work; // IO threads wait for chunks
    pthread_cond_t cv_done; // compute waits for jobs
    pthread_t threads[ST_MAX_IO_THREADS];
    int n_threads_started;
    bool stopping, mutex_ready;
    st_job *q_head, *q_tail;
    int inflight;         // chunks being read, all jobs
    double busy_since;    // when inflight last became non-zero
    double io_busy_total; // seconds with at least one read in flight (up to busy_since)
    uint64_t bytes_read_total;

    // statistics, kept by stream.c, reported by stats.c
    aero_stream_stats stats;
    st_pass *log;      // last ST_PASS_LOG passes (ring by pass number)
    uint64_t n_logged; // passes recorded since the last reset
    st_pass cur;       // the pass in progress
    bool in_pass;
    double acquired_at;  // when the unit now held was handed out
    int held_unit;       // unit acquired now, -1 when none
    double disk_bw;      // stats.c: the probe's disk bandwidth, measured or set; 0 = not yet measured
    double io_rate_best; // the best IO rate of a run of passes since open (never reset): part of the floor
    uint64_t run_bytes;  // the run of passes being summed for it
    double run_busy;
    uint64_t held; // weight bytes allocated
    const struct aero_expert_cache *experts; // MoE: the model's expert cache, whose counters each pass records
    uint64_t exp_at_begin[ST_EXP_COUNTERS];  // its counters when the pass began (st_pass's exp_* order)
};

// plan.c
aero_status st_build_tables(aero_stream *s, aero_error *err);
aero_status st_plan(aero_stream *s, aero_error *err);
// Where `size` bytes go in a FIFO ring of cap bytes holding n_live regions from first_off (the oldest) to
// alloc_off (the end of the newest); false when they do not fit until older regions are released.
bool st_ring_place(uint64_t cap, int n_live, uint64_t first_off, uint64_t alloc_off, uint64_t size, uint64_t *at);

// io.c
aero_status st_files_open(aero_stream *s, aero_error *err);
void st_files_close(aero_stream *s);
aero_status st_io_start(aero_stream *s, aero_error *err);
void st_io_stop(aero_stream *s);
// Appends a job to the queue (lock held).
void st_job_enqueue(aero_stream *s, st_job *j);
// Drops queued chunks and waits for the in-flight ones (lock held).
void st_io_cancel_all(aero_stream *s);
// Reads [off, off + len) of file into buf (aligned), directly when possible; bytes up to need must exist.
aero_status st_read_sync(aero_stream *s, uint32_t file, uint64_t off, uint64_t len, uint64_t need, void *buf,
                         aero_error *err);
// Drops [off, off + len) of a file (len 0: to its end), widened to whole folios, from the page cache after
// buffered reads; nothing under O_DIRECT.
void st_drop_cache(aero_stream *s, uint32_t file, uint64_t off, uint64_t len);
// Seconds the IO threads have had at least one read in flight, up to now (lock held).
double st_io_busy_now(const aero_stream *s, double now);

// stream.c (stats.c builds on these; stream.c never calls into stats.c)
// Schedules ring occurrences up to the prefetch depth ahead of the unit in use (lock held).
void st_schedule(aero_stream *s);
// Empties the ring (waiting for reads in flight) and restarts the cyclic schedule at occurrence seq (lock held).
void st_ring_restart(aero_stream *s, int64_t seq);
// Lends the idle ring (bytes long) to a measurement, NULL when a unit is in it; st_window_return ends the loan
// and schedules the next reads (lock held for both).
void *st_window_borrow(aero_stream *s, uint64_t *bytes);
void st_window_return(aero_stream *s);
// Open and close the record of a pass in the per-pass log (lock held).
void st_pass_begin(aero_stream *s, double now);
void st_pass_end(aero_stream *s, double now);
// stats.c: the expert cache's counters now (st_pass's exp_* order); zeros without an attached cache.
void st_expert_counters(const aero_stream *s, uint64_t out[ST_EXP_COUNTERS]);
// Bytes a run of passes must read for its IO rate to count (ST_RATE_MIN_BYTES, 16 requests).
static inline uint64_t st_rate_min_bytes(const aero_stream *s) {
    return 16 * s->chunk > ST_RATE_MIN_BYTES ? 16 * s->chunk : ST_RATE_MIN_BYTES;
}

#endif
