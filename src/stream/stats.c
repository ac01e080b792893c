// Reports of the streamer's per-pass statistics and the floors they are judged against: a pass should cost
// about streamed_bytes / disk_bw, with disk_bw measured on the same file in the same run. This file only reads
// the counters stream.c keeps and borrows its idle window for the floors; stream.c never calls into it.
#include <stdlib.h>
#include <string.h>

#include "../core/measure.h"
#include "expert_cache.h"
#include "stream_internal.h"

// The model opens its expert cache after the stream: from then on each pass records the cache's reads too.
void aero_stream_attach_experts(aero_stream *s, const aero_expert_cache *c) { s->experts = c; }

void st_expert_counters(const aero_stream *s, uint64_t out[ST_EXP_COUNTERS]) {
    aero_expert_cache_stats st = {0};
    if (s->experts) aero_expert_cache_stats_get(s->experts, &st);
    out[0] = st.lookups, out[1] = st.hits, out[2] = st.bytes_read, out[3] = st.prefetch_issued;
    out[4] = st.prefetch_used, out[5] = (uint64_t)(st.io_seconds * 1e6);
}

// Totals since the last reset, for aerollm bench.
void aero_stream_get_stats(const aero_stream *s, aero_stream_stats *out) { *out = s->stats; }

// Lets a benchmark reuse its own measurement for the --stats floor.
void aero_stream_set_disk_bw(aero_stream *s, double bw) { s->disk_bw = bw; }

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// A short probe varies from run to run (1-3 GB/s seen on one disk) while the passes themselves sustain their
// own rate: the floor takes the best of both, so that no pass beats it, and says how far apart they were.
double aero_stream_disk_floor_bw(aero_stream *s, aero_stream_disk_spread *sp) {
    aero_stream_disk_spread d = {.probe = s->disk_bw, .best = s->io_rate_best};
    if (s->mutex_ready) pthread_mutex_lock(&s->mu);
    uint64_t n = s->n_logged, kept = n < ST_PASS_LOG ? n : ST_PASS_LOG;
    double *r = malloc(sizeof *r * (kept ? kept : 1));
    int m = 0;
    uint64_t bytes = 0, min = st_rate_min_bytes(s);
    double busy = 0;
    for (uint64_t i = 0; r && i < kept; i++) { // runs of consecutive passes, as st_pass_end sums them
        const st_pass *p = &s->log[(n - kept + i) % ST_PASS_LOG];
        bytes += p->io_bytes, busy += p->io_busy;
        if (bytes >= min && busy > 0) r[m++] = bytes / busy, bytes = 0, busy = 0;
    }
    if (s->mutex_ready) pthread_mutex_unlock(&s->mu);
    if (m) {
        qsort(r, m, sizeof *r, cmp_double);
        d.n_passes = m;
        d.min = r[0];
        d.median = m % 2 ? r[m / 2] : (r[m / 2 - 1] + r[m / 2]) / 2;
        d.max = r[m - 1];
    }
    free(r);
    if (sp) *sp = d;
    return d.probe > d.best ? d.probe : d.best;
}

// The floor's disk bandwidth, measured on the bytes a pass streams (see stream.h).
double aero_stream_measure_disk_bw(aero_stream *s, uint64_t max_bytes) {
    if (!s->ring_bytes || !s->ring || !s->mutex_ready) return 0;
    int n = 0;
    for (int i = 0; i < s->n_streamed; i++) n += s->units[s->streamed[i]].n_ranges;
    aero_disk_range *ranges = calloc(n ? n : 1, sizeof *ranges);
    const char **paths = calloc(s->n_files ? s->n_files : 1, sizeof *paths);
    if (!ranges || !paths) {
        free(ranges);
        free(paths);
        return 0;
    }
    n = 0;
    for (int i = 0; i < s->n_streamed; i++) { // the pass's reads, in the order the pass makes them
        const st_unit *u = &s->units[s->streamed[i]];
        for (int r = 0; r < u->n_ranges; r++) {
            const st_range *rg = &s->ranges[u->first_range + r];
            ranges[n++] = (aero_disk_range){.file = rg->file, .off = rg->off, .len = rg->len};
        }
    }
    for (uint32_t f = 0; f < s->n_files; f++) paths[f] = s->files[f].path;
    // O_DIRECT whatever the streamer uses: the floor is the disk, not the page cache
    aero_disk_probe probe = {.paths = paths,
                             .n_paths = s->n_files,
                             .ranges = ranges,
                             .n_ranges = n,
                             .max_bytes = max_bytes == UINT64_MAX ? 0 : max_bytes,
                             .req_bytes = s->chunk,
                             .inflight = s->io_threads};
    double bw = 0;
    pthread_mutex_lock(&s->mu);
    uint64_t window_bytes;
    void *window = st_window_borrow(s, &window_bytes);
    if (window) { // the idle window holds the requests in flight
        probe.buf = window;
        probe.buf_bytes = window_bytes;
        bw = aero_measure_disk(&probe);
        st_window_return(s);
    }
    pthread_mutex_unlock(&s->mu);
    free(paths);
    free(ranges);
    if (bw > 0) s->disk_bw = bw;
    return bw;
}

// The resident floor's memory bandwidth without allocating under a memory limit (see stream.h).
double aero_stream_measure_mem_bw(aero_stream *s, aero_pool *pool) {
    const uint64_t min_bytes = 64ull << 20; // well past the caches
    if (!s->mutex_ready) return 0;
    pthread_mutex_lock(&s->mu);
    uint64_t bytes = 0;
    const void *window = st_window_borrow(s, &bytes), *buf = window;
    for (int u = 0; u < s->n_units; u++)
        if (s->units[u].mem && s->units[u].bytes > bytes) buf = s->units[u].mem, bytes = s->units[u].bytes;
    if (s->embd_mem && s->embd_bytes > bytes) buf = s->embd_mem, bytes = s->embd_bytes;
    double bw = bytes >= min_bytes ? aero_measure_mem_bw_buf(pool, buf, bytes) : 0;
    if (window) st_window_return(s);
    pthread_mutex_unlock(&s->mu);
    return bw;
}

// One row of the per-pass table: IO GB/s is the IO threads' own rate while they had a read in flight. With an
// expert cache, the pass's expert lookups, the misses read, the hit rate, the bytes read for them, the ms
// waited for them (inside "comp ms": experts are read while their layer is held) and the predictor's
// prefetches used of those issued follow; the dense columns count the layer stream only. `per` divides the
// expert sums (1 for a pass, the count of passes for a mean row).
static void print_pass(FILE *f, const char *label, const st_pass *p, double disk_bw, bool experts, double per) {
    double wall = p->end - p->start, floor = disk_bw > 0 ? p->bytes / disk_bw : 0;
    char io[16] = "-";
    if (p->io_busy > 0 && p->io_bytes) snprintf(io, sizeof io, "%.2f", p->io_bytes / p->io_busy / 1e9);
    fprintf(f, "  %-6s %9.1f %9.1f %9.1f %9.1f %9.1f %7.2f %7s %9.1f %7.2f", label, p->bytes / 1e6, wall * 1e3,
            p->io_busy * 1e3, p->compute * 1e3, p->wait * 1e3, wall > 0 ? p->bytes / wall / 1e9 : 0, io, floor * 1e3,
            floor > 0 ? wall / floor : 0);
    if (experts) {
        char hit[16] = "-", pf[32] = "-";
        if (p->exp_lookups) snprintf(hit, sizeof hit, "%.3f", (double)p->exp_hits / p->exp_lookups);
        if (p->exp_pf_issued || p->exp_pf_used)
            snprintf(pf, sizeof pf, "%llu/%llu", (unsigned long long)p->exp_pf_used,
                     (unsigned long long)p->exp_pf_issued);
        fprintf(f, " %7.1f %7.1f %6s %9.1f %9.1f %9s", (double)p->exp_lookups / per,
                (p->exp_lookups - p->exp_hits) / per, hit, p->exp_bytes / per / 1e6, p->exp_wait_us / per / 1e3, pf);
    }
    fputc('\n', f);
}

// The --stats report: the plan, then per-pass figures against the disk floor.
void aero_stream_print_stats(aero_stream *s, FILE *f) {
    const aero_stream_plan *p = &s->plan;
    char unit_map[p->n_units + 1];
    for (int u = 0; u < p->n_units; u++) unit_map[u] = s->units[u].external ? 'V' : p->unit_resident[u] ? 'R' : 's';
    unit_map[p->n_units] = 0;
    char head[48], pf[48] = "";
    snprintf(head, sizeof head, "%s", p->head_resident ? "resident" : "streamed");
    if (!p->head_resident && p->head_parts > 1) snprintf(head, sizeof head, "streamed in %d row blocks", p->head_parts);
    if (p->prefetch_asked > p->prefetch && p->n_streamed > p->prefetch)
        snprintf(pf, sizeof pf, ", lowered from %d by the budget", p->prefetch_asked);
    fprintf(f,
            "stream: budget %.1f MB: resident %.1f MB (%d of %d units pinned, output head %s, token embeddings %s), "
            "window %.1f MB (%d units, prefetch %d%s), %d IO threads x %.0f KiB requests, %s\n",
            p->budget / 1e6, p->resident_bytes / 1e6, p->n_pinned, p->n_units, head,
            p->embd_resident ? "resident" : "read by row", p->window_bytes / 1e6, p->n_slots, p->prefetch, pf,
            p->io_threads, s->chunk / 1024.0, p->direct ? "O_DIRECT" : "buffered + FADV_DONTNEED");
    fprintf(f,
            "stream: units %s (R resident, s streamed, V held by the GPU), %.1f MB streamed per pass, %.1f MB of "
            "weights held\n",
            unit_map, p->streamed_bytes / 1e6, s->held / 1e6);
    if (!s->mutex_ready) return;
    pthread_mutex_lock(&s->mu);
    aero_stream_stats st = s->stats;
    uint64_t n = s->n_logged;
    uint64_t kept = n < ST_PASS_LOG ? n : ST_PASS_LOG;
    st_pass *log = malloc(sizeof *log * (kept ? kept : 1));
    for (uint64_t i = 0; log && i < kept; i++) log[i] = s->log[(n - kept + i) % ST_PASS_LOG];
    pthread_mutex_unlock(&s->mu);
    if (!log) return;
    bool measured_now = false;
    if (s->disk_bw <= 0 && p->streamed_bytes) {
        aero_stream_measure_disk_bw(s, 1ull << 30);
        measured_now = true;
    }
    aero_stream_disk_spread sp;
    double disk_bw = aero_stream_disk_floor_bw(s, &sp);
    fprintf(f,
            "stream: %llu passes, %.1f MB read from disk, IO busy %.3f s, compute %.3f s, waited for IO %.3f s, "
            "wall %.3f s\n",
            (unsigned long long)st.passes, st.bytes_streamed / 1e6, st.io_busy_s, st.compute_s, st.wait_s, st.wall_s);
    if (disk_bw > 0) {
        fprintf(f,
                "stream: disk bw %.2f GB/s for the floor: the best of a probe (O_DIRECT reads of the model file, %d in "
                "flight, %s) at %.2f GB/s and the IO threads' own rate at %.2f GB/s (best run of passes since start)\n",
                disk_bw / 1e9, s->io_threads, measured_now ? "measured now" : "measured in this run", sp.probe / 1e9,
                sp.best / 1e9);
        if (sp.n_passes)
            fprintf(
                f,
                "stream: IO rate over %d runs of the passes below (each run >= %.0f MB read): min %.2f, median %.2f, "
                "max %.2f GB/s (spread %.0f%%)\n",
                sp.n_passes, st_rate_min_bytes(s) / 1e6, sp.min / 1e9, sp.median / 1e9, sp.max / 1e9,
                sp.median > 0 ? 100 * (sp.max - sp.min) / sp.median : 0);
    } else if (p->streamed_bytes)
        fprintf(f, "stream: disk bw not measured (window in use or the read failed): no floor\n");
    if (kept) {
        bool ex = s->experts != NULL;
        fprintf(f, "  %-6s %9s %9s %9s %9s %9s %7s %7s %9s %7s", "pass", "MB read", "wall ms", "IO ms", "comp ms",
                "wait ms", "GB/s", "IO GB/s", "floor ms", "x floor");
        if (ex) fprintf(f, " %7s %7s %6s %9s %9s %9s", "experts", "read", "hit", "exp MB", "exp wait", "pf used");
        fputc('\n', f);
        uint64_t first = n - kept;
        for (uint64_t i = 0; i < kept; i++) {
            if (kept > 24 && i == 8) {
                fprintf(f, "  ... %llu passes ...\n", (unsigned long long)(kept - 16));
                i = kept - 8;
            }
            char label[24];
            snprintf(label, sizeof label, "%llu", (unsigned long long)(first + i + 1));
            print_pass(f, label, &log[i], disk_bw, ex, 1);
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
                m.io_bytes += log[i].io_bytes;
                m.exp_lookups += log[i].exp_lookups, m.exp_hits += log[i].exp_hits, m.exp_bytes += log[i].exp_bytes;
                m.exp_pf_issued += log[i].exp_pf_issued, m.exp_pf_used += log[i].exp_pf_used;
                m.exp_wait_us += log[i].exp_wait_us;
            }
            m.bytes /= cnt;
            m.end /= cnt;
            m.io_busy /= cnt;
            m.compute /= cnt;
            m.wait /= cnt;
            m.io_bytes /= cnt;
            print_pass(f, skip ? "mean>1" : "mean", &m, disk_bw, ex, (double)cnt); // expert sums: print_pass divides
        }
    }
    free(log);
}

_Static_assert(AERO_STREAM_MAX_SLOTS >= ST_MAX_PREFETCH + 2, "the ring fits the viewer's slots");

// The viewer's snapshot (aerollm.h): the web page's live view reads the ring through this, not its internals.
int aero_stream_unit_states(aero_stream *s, char *out, int cap, int *slot_unit, char *slot_state, int *n_slots,
                            aero_stream_stats *stats) {
    *n_slots = 0;
    if (!s || !s->mutex_ready || !s->units) {
        if (s) aero_stream_get_stats(s, stats);
        return 0;
    }
    int n = s->n_units < cap - 1 ? s->n_units : cap - 1;
    int n_slot = 0;
    pthread_mutex_lock(&s->mu);
    for (int u = 0; u < n; u++) out[u] = s->units[u].resident || s->units[u].external ? 'p' : 'd';
    if (s->n_streamed && s->occ)
        for (int64_t q = s->occ_first; q < s->occ_end && n_slot < AERO_STREAM_MAX_SLOTS; q++) {
            const st_occ *o = &s->occ[q % (s->depth + 1)];
            int u = o->unit >= s->n_units ? s->head_unit : o->unit; // a block of the head shows as the head
            char c = q == s->held_seq ? 'c' : o->job.complete ? 'w' : 'r';
            if (u >= 0 && u < n && out[u] != 'c') out[u] = c;
            slot_unit[n_slot] = u;
            slot_state[n_slot++] = c;
        }
    int held = s->held_unit;
    *stats = s->stats;
    if (held >= 0 && held < n) out[held] = out[held] == 'p' ? 'P' : 'c';
    pthread_mutex_unlock(&s->mu);
    out[n] = 0;
    *n_slots = n_slot;
    return n;
}
