// Per-pass statistics of the streamer and the floors they are judged against: a pass should cost about
// streamed_bytes / disk_bw, with disk_bw measured on the same file in the same run.
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/measure.h"
#include "stream_internal.h"

// Starts the record of a pass at its first stream call (embedding rows or unit 0).
void st_pass_begin(aero_stream *s, double now) {
    memset(&s->cur, 0, sizeof s->cur);
    s->cur.start = now;
    s->cur.io_busy = st_io_busy_now(s, now); // the busy clock at the start; the pass's share at the end
    s->in_pass = true;
    s->stats.passes++;
}

// Closes the record of a pass at the release of its last unit (or when the next pass starts early).
void st_pass_end(aero_stream *s, double now) {
    if (!s->in_pass) return;
    s->cur.end = now;
    s->cur.io_busy = st_io_busy_now(s, now) - s->cur.io_busy;
    s->stats.io_busy_s += s->cur.io_busy;
    s->stats.wall_s += now - s->cur.start;
    s->log[s->n_logged % ST_PASS_LOG] = s->cur;
    s->n_logged++;
    s->in_pass = false;
}

// Totals since the last reset, for aerollm bench.
void aero_stream_get_stats(const aero_stream *s, aero_stream_stats *out) { *out = s->stats; }

// Separates phases (prefill, decode) in a benchmark.
void aero_stream_reset_stats(aero_stream *s) {
    if (s->mutex_ready) pthread_mutex_lock(&s->mu);
    memset(&s->stats, 0, sizeof s->stats);
    s->n_logged = 0;
    s->in_pass = false;
    if (s->mutex_ready) pthread_mutex_unlock(&s->mu);
}

// Lets a benchmark reuse its own measurement for the --stats floor.
void aero_stream_set_disk_bw(aero_stream *s, double bw) { s->disk_bw = bw; }

typedef struct {
    int fd;
    uint64_t off, len;
} disk_req;

typedef struct {
    const disk_req *reqs;
    int n, next;
    pthread_mutex_t mu;
    char *buf;
    uint64_t slice;
    bool failed;
} disk_probe;

typedef struct {
    disk_probe *p;
    int index;
} disk_probe_arg;

// One reader of the probe: takes the next request, reads it into its slice of the window.
static void *probe_worker(void *arg) {
    disk_probe_arg *a = arg;
    disk_probe *p = a->p;
    char *buf = p->buf + (uint64_t)a->index * p->slice;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        int i = p->next++;
        pthread_mutex_unlock(&p->mu);
        if (i >= p->n) break;
        uint64_t done = 0;
        while (done < p->reqs[i].len) {
            ssize_t got = pread(p->reqs[i].fd, buf + done, p->reqs[i].len - done, (off_t)(p->reqs[i].off + done));
            if (got <= 0) break;
            done += (uint64_t)got;
            if (got & (ST_ALIGN - 1)) break;
        }
        if (!done) p->failed = true;
    }
    return NULL;
}

// The floor's disk bandwidth, measured on the bytes a pass streams (see stream.h).
double aero_stream_measure_disk_bw(aero_stream *s, uint64_t max_bytes) {
    if (!s->ring_bytes || !s->ring || !s->mutex_ready) return 0;
    // the requests a pass makes: every streamed range in chunks, or max_bytes of them spread over the pass
    int n = 0, cap = 0;
    uint64_t total = 0;
    for (int i = 0; i < s->n_streamed; i++) {
        const st_unit *u = &s->units[s->streamed[i]];
        for (int r = 0; r < u->n_ranges; r++) cap += (int)((s->ranges[u->first_range + r].len + s->chunk - 1) / s->chunk);
    }
    disk_req *reqs = calloc(cap ? cap : 1, sizeof *reqs);
    int *fds = calloc(s->n_files ? s->n_files : 1, sizeof *fds);
    if (!reqs || !fds) {
        free(reqs);
        free(fds);
        return 0;
    }
    for (uint32_t f = 0; f < s->n_files; f++) { // a reader of its own, O_DIRECT as the floor is defined
        fds[f] = open(s->files[f].path, O_RDONLY | O_CLOEXEC | O_DIRECT);
        if (fds[f] < 0) fds[f] = open(s->files[f].path, O_RDONLY | O_CLOEXEC);
    }
    for (int i = 0; i < s->n_streamed; i++) {
        const st_unit *u = &s->units[s->streamed[i]];
        for (int r = 0; r < u->n_ranges; r++) {
            const st_range *rg = &s->ranges[u->first_range + r];
            for (uint64_t o = 0; o < rg->len; o += s->chunk) {
                uint64_t len = rg->len - o < s->chunk ? rg->len - o : s->chunk;
                reqs[n++] = (disk_req){.fd = fds[rg->file], .off = rg->off + o, .len = len};
                total += len;
            }
        }
    }
    if (max_bytes < total) { // keep every k-th request
        int k = (int)((total + max_bytes - 1) / max_bytes), m = 0;
        total = 0;
        for (int i = 0; i < n; i += k) reqs[m++] = reqs[i], total += reqs[i].len;
        n = m;
    }
    int threads = s->io_threads;
    if ((uint64_t)threads * s->chunk > s->ring_bytes) threads = (int)(s->ring_bytes / s->chunk);
    if (threads < 1) threads = 1;
    double bw = 0;
    pthread_mutex_lock(&s->mu);
    if (s->held_seq < 0) { // the window is the probe's buffer: empty it first
        st_ring_restart(s, s->next_seq);
        disk_probe p = {.reqs = reqs, .n = n, .buf = s->ring, .slice = s->chunk};
        pthread_mutex_init(&p.mu, NULL);
        pthread_t th[ST_MAX_IO_THREADS];
        disk_probe_arg args[ST_MAX_IO_THREADS];
        int started = 0;
        double t0 = aero_now();
        for (int i = 0; i < threads; i++) {
            args[i] = (disk_probe_arg){.p = &p, .index = started};
            if (!pthread_create(&th[started], NULL, probe_worker, &args[i])) started++;
        }
        for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
        double t = aero_now() - t0;
        pthread_mutex_destroy(&p.mu);
        if (started && !p.failed && t > 0) bw = total / t;
        st_schedule(s); // the next pass's first units read again
    }
    pthread_mutex_unlock(&s->mu);
    for (uint32_t f = 0; f < s->n_files; f++)
        if (fds[f] >= 0) close(fds[f]);
    free(fds);
    free(reqs);
    if (bw > 0) s->disk_bw = bw;
    return bw;
}

// The resident floor's memory bandwidth without allocating under a memory limit (see stream.h).
double aero_stream_measure_mem_bw(aero_stream *s, aero_pool *pool) {
    const uint64_t min_bytes = 64ull << 20; // well past the caches
    if (!s->mutex_ready) return 0;
    pthread_mutex_lock(&s->mu);
    const void *buf = NULL;
    uint64_t bytes = 0;
    if (s->ring && s->held_seq < 0) {
        st_ring_restart(s, s->next_seq);
        buf = s->ring, bytes = s->ring_bytes;
    }
    for (int u = 0; u < s->n_units; u++)
        if (s->units[u].mem && s->units[u].bytes > bytes) buf = s->units[u].mem, bytes = s->units[u].bytes;
    if (s->embd_mem && s->embd_bytes > bytes) buf = s->embd_mem, bytes = s->embd_bytes;
    double bw = bytes >= min_bytes ? aero_measure_mem_bw_buf(pool, buf, bytes) : 0;
    st_schedule(s);
    pthread_mutex_unlock(&s->mu);
    return bw;
}

// One row of the per-pass table.
static void print_pass(FILE *f, const char *label, const st_pass *p, double disk_bw) {
    double wall = p->end - p->start, floor = disk_bw > 0 ? p->bytes / disk_bw : 0;
    fprintf(f, "  %-6s %9.1f %9.1f %9.1f %9.1f %9.1f %7.2f %9.1f %7.2f\n", label, p->bytes / 1e6, wall * 1e3,
            p->io_busy * 1e3, p->compute * 1e3, p->wait * 1e3, wall > 0 ? p->bytes / wall / 1e9 : 0, floor * 1e3,
            floor > 0 ? wall / floor : 0);
}

// The --stats report: the plan, then per-pass figures against the disk floor.
void aero_stream_print_stats(aero_stream *s, FILE *f) {
    const aero_stream_plan *p = &s->plan;
    char unit_map[p->n_units + 1];
    for (int u = 0; u < p->n_units; u++) unit_map[u] = p->unit_resident[u] ? 'R' : 's';
    unit_map[p->n_units] = 0;
    fprintf(f, "stream: budget %.1f MB: resident %.1f MB (%d of %d units pinned, output head %s, token embeddings %s), "
            "window %.1f MB (%d units, prefetch %d), %d IO threads x %.0f KiB requests, %s\n",
            p->budget / 1e6, p->resident_bytes / 1e6, p->n_pinned, p->n_units, p->head_resident ? "resident" : "streamed",
            p->embd_resident ? "resident" : "read by row", p->window_bytes / 1e6, p->n_slots, p->prefetch, p->io_threads,
            s->chunk / 1024.0, p->direct ? "O_DIRECT" : "buffered + FADV_DONTNEED");
    fprintf(f, "stream: units %s (R resident, s streamed), %.1f MB streamed per pass, %.1f MB of weights held\n", unit_map,
            p->streamed_bytes / 1e6, s->held / 1e6);
    if (!s->mutex_ready) return;
    pthread_mutex_lock(&s->mu);
    aero_stream_stats st = s->stats;
    uint64_t n = s->n_logged;
    uint64_t kept = n < ST_PASS_LOG ? n : ST_PASS_LOG;
    st_pass *log = malloc(sizeof *log * (kept ? kept : 1));
    for (uint64_t i = 0; log && i < kept; i++) log[i] = s->log[(n - kept + i) % ST_PASS_LOG];
    pthread_mutex_unlock(&s->mu);
    if (!log) return;
    double disk_bw = s->disk_bw;
    bool measured_now = false;
    if (disk_bw <= 0 && p->streamed_bytes) {
        disk_bw = aero_stream_measure_disk_bw(s, 1ull << 30);
        measured_now = true;
    }
    fprintf(f, "stream: %llu passes, %.1f MB read from disk, IO busy %.3f s, compute %.3f s, waited for IO %.3f s, "
            "wall %.3f s\n", (unsigned long long)st.passes, st.bytes_streamed / 1e6, st.io_busy_s, st.compute_s, st.wait_s,
            st.wall_s);
    if (disk_bw > 0)
        fprintf(f, "stream: disk bw %.2f GB/s (O_DIRECT reads of the model file, %d in flight, %s)\n", disk_bw / 1e9,
                s->io_threads, measured_now ? "measured now" : "measured in this run");
    else if (p->streamed_bytes)
        fprintf(f, "stream: disk bw not measured (window in use or the read failed): no floor\n");
    if (kept) {
        fprintf(f, "  %-6s %9s %9s %9s %9s %9s %7s %9s %7s\n", "pass", "MB read", "wall ms", "IO ms", "comp ms", "wait ms",
                "GB/s", "floor ms", "x floor");
        uint64_t first = n - kept;
        for (uint64_t i = 0; i < kept; i++) {
            if (kept > 24 && i == 8) {
                fprintf(f, "  ... %llu passes ...\n", (unsigned long long)(kept - 16));
                i = kept - 8;
            }
            char label[24];
            snprintf(label, sizeof label, "%llu", (unsigned long long)(first + i + 1));
            print_pass(f, label, &log[i], disk_bw);
        }
        // means over the passes kept, and without the first one (it starts with an empty window)
        for (int skip = 0; skip < 2 && (uint64_t)skip < kept; skip++) {
            st_pass m = {0};
            uint64_t cnt = kept - skip;
            if (skip && cnt < 2) break;
            for (uint64_t i = skip; i < kept; i++) {
                m.bytes += log[i].bytes;
                m.end += log[i].end - log[i].start;
                m.io_busy += log[i].io_busy;
                m.compute += log[i].compute;
                m.wait += log[i].wait;
            }
            m.bytes /= cnt;
            m.end /= cnt;
            m.io_busy /= cnt;
            m.compute /= cnt;
            m.wait /= cnt;
            print_pass(f, skip ? "mean>1" : "mean", &m, disk_bw);
        }
    }
    free(log);
}
