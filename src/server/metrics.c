// Server counters (see metrics.h), one mutex for all: updates are rare next to a forward pass.
#include "metrics.h"

#include "../core/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// Zeroes the counters and starts the uptime clock.
void aero_metrics_init(aero_metrics *m) {
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    m->t_start = aero_now();
    for (int i = 0; i < AERO_METRICS_WINDOW; i++) m->window_sec[i] = -1;
}

void aero_metrics_destroy(aero_metrics *m) { pthread_mutex_destroy(&m->mu); }

// Counted once per HTTP response, by status class, so error rates show on a dashboard.
void aero_metrics_request(aero_metrics *m, int status) {
    int cls = status / 100;
    if (cls < 0 || cls > 5) cls = 5;
    pthread_mutex_lock(&m->mu);
    m->requests[cls]++;
    pthread_mutex_unlock(&m->mu);
}

// Counts generations stopped because their client left.
void aero_metrics_cancelled(aero_metrics *m) {
    pthread_mutex_lock(&m->mu);
    m->cancelled++;
    pthread_mutex_unlock(&m->mu);
}

// Counts prompt tokens when a request is admitted.
void aero_metrics_prompt(aero_metrics *m, int n_tokens) {
    pthread_mutex_lock(&m->mu);
    m->prompt_tokens += (uint64_t)n_tokens;
    pthread_mutex_unlock(&m->mu);
}

// Counts the prompt tokens a request found in its sequence's KV cache (not decoded again).
void aero_metrics_prompt_cached(aero_metrics *m, int n_tokens) {
    pthread_mutex_lock(&m->mu);
    m->prompt_cached += (uint64_t)n_tokens;
    pthread_mutex_unlock(&m->mu);
}

// Adds n to the bucket of the current second, recycling buckets older than the window.
static void window_add(aero_metrics *m, uint64_t n) {
    int64_t sec = (int64_t)(aero_now() - m->t_start);
    int i = (int)(sec % AERO_METRICS_WINDOW);
    if (m->window_sec[i] != sec) {
        m->window_sec[i] = sec;
        m->window_tokens[i] = 0;
    }
    m->window_tokens[i] += n;
}

// Records one forward pass and the latest weight-stream statistics.
void aero_metrics_step(aero_metrics *m, int n_tokens, double secs, const aero_backend_stats *bs) {
    pthread_mutex_lock(&m->mu);
    m->steps++;
    m->batch_tokens += (uint64_t)n_tokens;
    m->decode_s += secs;
    if (bs) m->backend = *bs;
    pthread_mutex_unlock(&m->mu);
}

// Counts a speculative round; the totals give the acceptance ratio on a dashboard.
void aero_metrics_draft(aero_metrics *m, int n_draft, int n_accepted) {
    pthread_mutex_lock(&m->mu);
    m->draft_tokens += (uint64_t)n_draft;
    m->draft_accepted += (uint64_t)n_accepted;
    pthread_mutex_unlock(&m->mu);
}

// Counts generated tokens (also into the tok/s window) before they are published.
void aero_metrics_generated(aero_metrics *m, int n) {
    pthread_mutex_lock(&m->mu);
    m->gen_tokens += (uint64_t)n;
    window_add(m, (uint64_t)n);
    pthread_mutex_unlock(&m->mu);
}

// Gauges of the scheduler: sequences running, requests waiting, KV sequences.
void aero_metrics_load(aero_metrics *m, int active, int queued, int n_seq) {
    pthread_mutex_lock(&m->mu);
    m->active = active;
    m->queued = queued;
    m->n_seq = n_seq;
    pthread_mutex_unlock(&m->mu);
}

// Rate over the completed seconds of the window (the current, partial second is left out).
static double rate_locked(aero_metrics *m) {
    double now = aero_now() - m->t_start;
    int64_t sec = (int64_t)now;
    uint64_t sum = 0;
    for (int i = 0; i < AERO_METRICS_WINDOW; i++)
        if (m->window_sec[i] >= 0 && m->window_sec[i] < sec && m->window_sec[i] >= sec - (AERO_METRICS_WINDOW - 1))
            sum += m->window_tokens[i];
    double span = now < AERO_METRICS_WINDOW - 1 ? (double)sec : AERO_METRICS_WINDOW - 1;
    return span > 0 ? (double)sum / span : 0.0;
}

// Recent tok/s for the gauge.
double aero_metrics_rate(aero_metrics *m) {
    pthread_mutex_lock(&m->mu);
    double r = rate_locked(m);
    pthread_mutex_unlock(&m->mu);
    return r;
}

// One metric with its HELP and TYPE lines.
static void metric(aero_buf *b, const char *name, const char *type, const char *help, double v) {
    aero_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

// Prometheus exposition of a consistent snapshot of the counters.
char *aero_metrics_render(aero_metrics *m, size_t *len) {
    aero_buf b = {0};
    if (!aero_buf_reserve(&b, 4096)) return NULL;
    pthread_mutex_lock(&m->mu);
    aero_metrics c = *m; // consistent snapshot
    double rate = rate_locked(m);
    pthread_mutex_unlock(&m->mu);
    aero_buf_printf(&b, "# HELP aerollm_requests_total HTTP responses by status class.\n"
                        "# TYPE aerollm_requests_total counter\n");
    static const char *cls[] = {"", "1xx", "2xx", "3xx", "4xx", "5xx"};
    for (int i = 2; i <= 5; i++)
        aero_buf_printf(&b, "aerollm_requests_total{status=\"%s\"} %llu\n", cls[i], (unsigned long long)c.requests[i]);
    metric(&b, "aerollm_requests_cancelled_total", "counter", "Generations stopped because the client went away.",
           (double)c.cancelled);
    metric(&b, "aerollm_requests_active", "gauge", "Sequences being generated now.", c.active);
    metric(&b, "aerollm_requests_queued", "gauge", "Requests waiting for a free sequence.", c.queued);
    metric(&b, "aerollm_slots", "gauge", "KV sequences, requests generated at once (--parallel).", c.n_seq);
    metric(&b, "aerollm_prompt_tokens_total", "counter", "Prompt tokens processed.", (double)c.prompt_tokens);
    metric(&b, "aerollm_prompt_tokens_cached_total", "counter",
           "Prompt tokens found in a sequence's KV cache and not decoded again.", (double)c.prompt_cached);
    metric(&b, "aerollm_generation_tokens_total", "counter", "Tokens generated.", (double)c.gen_tokens);
    metric(&b, "aerollm_tokens_per_second", "gauge", "Generated tokens per second over the last 10 seconds.", rate);
    metric(&b, "aerollm_decode_steps_total", "counter", "Forward passes (each advances every active sequence).",
           (double)c.steps);
    metric(&b, "aerollm_batch_tokens_total", "counter", "Tokens carried by all forward passes.",
           (double)c.batch_tokens);
    metric(&b, "aerollm_decode_seconds_total", "counter", "Wall time spent in forward passes.", c.decode_s);
    metric(&b, "aerollm_stream_bytes_total", "counter", "Weight bytes read from disk by the streamer.",
           (double)c.backend.bytes_streamed);
    metric(&b, "aerollm_stream_passes_total", "counter", "Passes over the weights.", (double)c.backend.passes);
    metric(&b, "aerollm_stream_io_wait_seconds_total", "counter", "Time compute waited for weights (IO stall).",
           c.backend.io_wait_s);
    metric(&b, "aerollm_stream_io_busy_seconds_total", "counter", "Time IO threads spent reading weights.",
           c.backend.io_busy_s);
    metric(&b, "aerollm_draft_tokens_total", "counter", "Tokens proposed by the speculative drafter.",
           (double)c.draft_tokens);
    metric(&b, "aerollm_draft_accepted_total", "counter", "Drafted tokens accepted by the target model.",
           (double)c.draft_accepted);
    metric(&b, "aerollm_draft_acceptance_ratio", "gauge", "Accepted over proposed draft tokens.",
           c.draft_tokens ? (double)c.draft_accepted / (double)c.draft_tokens : 0.0);
    metric(&b, "aerollm_uptime_seconds", "gauge", "Seconds since the server started.", aero_now() - c.t_start);
    return aero_buf_take(&b, len);
}
