// Server counters for /metrics in Prometheus text format: requests by outcome, tokens in and out, decode
// throughput, queue depth, and the weight-stream figures (bytes streamed, IO stall time, passes) that say
// whether batching is paying for the reads.
#ifndef AERO_SERVER_METRICS_H
#define AERO_SERVER_METRICS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/util.h"

#define AERO_METRICS_WINDOW 10 // seconds of history behind the tok/s gauge

// What the scheduler's backend (the model's forward pass) reports after each step: its weight-stream figures and
// the speculative drafter's.
typedef struct {
    uint64_t bytes_streamed, passes;
    double io_wait_s, io_busy_s;
    uint64_t draft_tokens, draft_accepted;
} aero_backend_stats;

typedef struct {
    pthread_mutex_t mu;
    double t_start;       // monotonic seconds at init
    uint64_t requests[6]; // by status class: [2] 2xx, [4] 4xx, [5] 5xx
    uint64_t cancelled;   // client went away before the end
    uint64_t prompt_tokens, gen_tokens;
    uint64_t prompt_cached; // prompt tokens reused from a sequence's KV cache
    uint64_t steps, batch_tokens; // forward passes and the tokens they carried
    double decode_s;              // wall time inside the forward pass
    int active, queued, n_seq;    // sequences generating, requests waiting, KV sequences (--parallel)
    aero_backend_stats backend;
    uint64_t draft_tokens, draft_accepted; // speculation: nodes drafted and accepted over every request
    uint64_t window_tokens[AERO_METRICS_WINDOW]; // generated tokens per second, ring indexed by second
    int64_t window_sec[AERO_METRICS_WINDOW];
} aero_metrics;

void aero_metrics_init(aero_metrics *m);
void aero_metrics_destroy(aero_metrics *m);
void aero_metrics_request(aero_metrics *m, int status);
void aero_metrics_cancelled(aero_metrics *m);
void aero_metrics_prompt(aero_metrics *m, int n_tokens);
void aero_metrics_prompt_cached(aero_metrics *m, int n_tokens);
// One forward pass of n_tokens in secs.
void aero_metrics_step(aero_metrics *m, int n_tokens, double secs, const aero_backend_stats *bs);
// One sequence's draft-and-verify round: n_draft nodes proposed, n_accepted of them kept.
void aero_metrics_draft(aero_metrics *m, int n_draft, int n_accepted);
// n tokens generated (counted before the client can see them, so /metrics never lags a response).
void aero_metrics_generated(aero_metrics *m, int n);
void aero_metrics_load(aero_metrics *m, int active, int queued, int n_seq);
// Generated tokens per second over the last AERO_METRICS_WINDOW seconds.
double aero_metrics_rate(aero_metrics *m);
// Prometheus exposition text (malloc'ed).
char *aero_metrics_render(aero_metrics *m, size_t *len);

#endif
