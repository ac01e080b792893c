// Weight access under a memory budget: open (plan, load what stays resident, start the IO threads), and the
// acquire/release cycle that hands the model one unit at a time while the IO threads fill the ring ahead of it.
#include "stream.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../kernels/kernels.h"
#include "stream_internal.h"

#define OCC(s, seq) (&(s)->occ[(seq) % ((s)->depth + 1)])

// Reads the small tensors into one arena with buffered reads (they are scattered and tiny).
static aero_status load_small(aero_stream *s, aero_error *err) {
    const aero_gguf *g = s->g;
    if (!s->small_bytes) return AERO_OK;
    s->small_mem = aero_alloc_aligned(64, s->small_bytes);
    if (!s->small_mem)
        return aero_fail(err, AERO_ERR_NOMEM, "stream: cannot allocate %llu bytes for small tensors",
                         (unsigned long long)s->small_bytes);
    s->held += s->small_bytes;
    uint64_t at = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        if (s->kind[i] != ST_T_SMALL) continue;
        const aero_tensor_info *t = &g->tensors[i];
        st_file *f = &s->files[t->file];
        char *dst = (char *)s->small_mem + at;
        uint64_t done = 0;
        while (done < t->nbytes) {
            ssize_t n = pread(f->fd, dst + done, t->nbytes - done, (off_t)(t->offset + done));
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0)
                return aero_fail(err, AERO_ERR_IO, "%s: reading tensor '%s' at offset %llu: %s", f->path, t->name,
                                 (unsigned long long)(t->offset + done),
                                 n < 0 ? strerror(errno) : "the file is shorter");
            done += (uint64_t)n;
        }
        st_drop_cache(s, t->file, t->offset, t->nbytes);
        s->ptr[i] = dst;
        at += (t->nbytes + 63) & ~(uint64_t)63;
    }
    return AERO_OK;
}

// Allocates the pinned units (and the resident embedding) and reads them with all IO threads at once.
static aero_status load_resident(aero_stream *s, aero_error *err) {
    int n_jobs = 0;
    st_job *jobs = calloc(s->n_units + 2, sizeof *jobs);
    if (!jobs) return aero_fail(err, AERO_ERR_NOMEM, "stream: out of memory");
    aero_status st = AERO_OK;
    for (int u = 0; u < s->n_units; u++) {
        st_unit *un = &s->units[u];
        if (!un->resident || !un->bytes || un->external) continue;
        un->mem = aero_alloc_aligned(ST_ALIGN, un->bytes);
        if (!un->mem) {
            st = aero_fail(err, AERO_ERR_NOMEM, "stream: cannot allocate %llu bytes for unit %d",
                           (unsigned long long)un->bytes, u);
            goto out;
        }
        s->held += un->bytes;
        for (int i = 0; i < un->n_places; i++) {
            const st_place *pl = &s->places[un->first_place + i];
            s->ptr[pl->tensor] = (char *)un->mem + pl->mem_off;
        }
        jobs[n_jobs++] = (st_job){.ranges = s->ranges + un->first_range, .n_ranges = un->n_ranges, .mem = un->mem};
    }
    if (s->plan.embd_resident && !s->embd_in_head) {
        s->embd_mem = aero_alloc_aligned(ST_ALIGN, s->embd_bytes);
        if (!s->embd_mem) {
            st = aero_fail(err, AERO_ERR_NOMEM, "stream: cannot allocate %llu bytes for the token embedding",
                           (unsigned long long)s->embd_bytes);
            goto out;
        }
        s->held += s->embd_bytes;
        s->ptr[s->embd] = (char *)s->embd_mem + (s->g->tensors[s->embd].offset - s->embd_ranges[0].off);
        jobs[n_jobs++] = (st_job){.ranges = s->embd_ranges, .n_ranges = s->n_embd_ranges, .mem = s->embd_mem};
    }
    if (s->plan.experts_resident && s->exp_mem_bytes) {
        s->exp_mem = aero_alloc_aligned(ST_ALIGN, s->exp_mem_bytes);
        if (!s->exp_mem) {
            st = aero_fail(err, AERO_ERR_NOMEM, "stream: cannot allocate %llu bytes for the experts",
                           (unsigned long long)s->exp_mem_bytes);
            goto out;
        }
        s->held += s->exp_mem_bytes;
        for (int i = 0; i < s->n_exp_places; i++)
            s->ptr[s->exp_places[i].tensor] = (char *)s->exp_mem + s->exp_places[i].mem_off;
        jobs[n_jobs++] = (st_job){.ranges = s->exp_ranges, .n_ranges = s->n_exp_ranges, .mem = s->exp_mem};
    }
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < n_jobs; i++) st_job_enqueue(s, &jobs[i]);
    for (int i = 0; i < n_jobs; i++) {
        while (!jobs[i].complete) pthread_cond_wait(&s->cv_done, &s->mu);
        if (jobs[i].failed && !st) st = aero_fail(err, AERO_ERR_IO, "%s", jobs[i].errmsg);
    }
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < n_jobs; i++)
        for (int r = 0; r < jobs[i].n_ranges; r++)
            st_drop_cache(s, jobs[i].ranges[r].file, jobs[i].ranges[r].off, jobs[i].ranges[r].len);
out:
    if (st) { // the queue must not keep pointers into jobs freed below
        pthread_mutex_lock(&s->mu);
        st_io_cancel_all(s);
        pthread_mutex_unlock(&s->mu);
    }
    free(jobs);
    return st;
}

// Keeps the IO threads `depth` occurrences ahead of the compute, as far as the ring has room (lock held).
void st_schedule(aero_stream *s) {
    if (!s->n_streamed || s->window_lent) return;
    int64_t cur = s->held_seq >= 0 ? s->held_seq : s->next_seq;
    while (s->occ_end <= cur + s->depth) {
        int n_live = (int)(s->occ_end - s->occ_first);
        int u = s->streamed[s->occ_end % s->n_streamed];
        const st_unit *un = &s->units[u];
        uint64_t at;
        if (!st_ring_place(s->ring_bytes, n_live, n_live ? OCC(s, s->occ_first)->ring_off : 0, s->alloc_off,
                           s->slot_bytes, &at))
            break;
        st_occ *o = OCC(s, s->occ_end);
        o->seq = s->occ_end;
        o->unit = u;
        o->ring_off = at;
        o->bytes = un->bytes;
        o->job = (st_job){.ranges = s->ranges + un->first_range, .n_ranges = un->n_ranges, .mem = s->ring + at};
        st_job_enqueue(s, &o->job);
        s->alloc_off = at + s->slot_bytes;
        s->occ_end++;
    }
}

// Forgets the ring contents so that the cyclic schedule can restart at any unit (lock held).
void st_ring_restart(aero_stream *s, int64_t seq) {
    st_io_cancel_all(s);
    s->occ_first = s->occ_end = s->next_seq = seq;
    s->alloc_off = 0;
}

// Lends the ring to a measurement while no unit is held (lock held): the ring is emptied (reads in flight
// finish first) and nothing is scheduled into it until st_window_return. NULL when there is no ring or a unit
// is in it.
void *st_window_borrow(aero_stream *s, uint64_t *bytes) {
    *bytes = 0;
    if (!s->ring || s->held_seq >= 0) return NULL;
    st_ring_restart(s, s->next_seq);
    s->window_lent = true;
    *bytes = s->ring_bytes;
    return s->ring;
}

// Takes the ring back after a measurement and starts the reads of the next units again (lock held).
void st_window_return(aero_stream *s) {
    s->window_lent = false;
    st_schedule(s);
}

// Starts the record of a pass at its first stream call (embedding rows or layer unit 0).
void st_pass_begin(aero_stream *s, double now) {
    memset(&s->cur, 0, sizeof s->cur);
    s->cur.start = now;
    s->cur.io_busy = st_io_busy_now(s, now); // the busy clock at the start; the pass's share at the end
    s->cur.io_bytes = s->bytes_read_total;   // likewise the IO threads' byte count
    st_expert_counters(s, s->exp_at_begin);
    s->in_pass = true;
    s->stats.passes++;
}

// Closes the record of a pass at the release of its head unit (or when the next pass starts early).
void st_pass_end(aero_stream *s, double now) {
    if (!s->in_pass) return;
    s->cur.end = now;
    s->cur.io_busy = st_io_busy_now(s, now) - s->cur.io_busy;
    s->cur.io_bytes = s->bytes_read_total - s->cur.io_bytes;
    uint64_t ex[ST_EXP_COUNTERS];
    st_expert_counters(s, ex);
    uint64_t *d[ST_EXP_COUNTERS] = {&s->cur.exp_lookups,   &s->cur.exp_hits,    &s->cur.exp_bytes,
                                    &s->cur.exp_pf_issued, &s->cur.exp_pf_used, &s->cur.exp_wait_us};
    for (int i = 0; i < ST_EXP_COUNTERS; i++) // a counter below its start was reset during the pass
        *d[i] = ex[i] >= s->exp_at_begin[i] ? ex[i] - s->exp_at_begin[i] : ex[i];
    s->run_bytes += s->cur.io_bytes;
    s->run_busy += s->cur.io_busy;
    if (s->run_bytes >= st_rate_min_bytes(s) && s->run_busy > 0) {
        if (s->run_bytes / s->run_busy > s->io_rate_best) s->io_rate_best = s->run_bytes / s->run_busy;
        s->run_bytes = 0, s->run_busy = 0;
    }
    s->stats.io_busy_s += s->cur.io_busy;
    s->stats.wall_s += now - s->cur.start;
    s->log[s->n_logged % ST_PASS_LOG] = s->cur;
    s->n_logged++;
    s->in_pass = false;
}

// Separates phases (prefill, decode) in a benchmark.
void aero_stream_reset_stats(aero_stream *s) {
    if (s->mutex_ready) pthread_mutex_lock(&s->mu);
    memset(&s->stats, 0, sizeof s->stats);
    s->n_logged = 0;
    s->in_pass = false;
    if (s->mutex_ready) pthread_mutex_unlock(&s->mu);
}

// Plans, loads what stays resident, starts the IO threads and the first reads of the first pass.
aero_status aero_stream_open(aero_stream **out, const aero_gguf *g, int n_layer, const aero_stream_params *p,
                             aero_error *err) {
    *out = NULL;
    if (n_layer < 0) return aero_fail(err, AERO_ERR_INVALID, "stream: negative layer unit count %d", n_layer);
    aero_stream *s = calloc(1, sizeof *s);
    if (!s) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    s->g = g;
    s->head_unit = n_layer;
    s->n_units = n_layer + 1;
    s->params = *p;
    s->prefetch = p->prefetch > 0 ? p->prefetch : 2;
    if (s->prefetch > ST_MAX_PREFETCH) s->prefetch = ST_MAX_PREFETCH;
    s->io_threads = p->io_threads > 0 ? p->io_threads : 4;
    if (s->io_threads > ST_MAX_IO_THREADS) s->io_threads = ST_MAX_IO_THREADS;
    s->chunk = p->chunk_bytes ? (p->chunk_bytes + ST_ALIGN - 1) & ~(uint64_t)(ST_ALIGN - 1) : ST_CHUNK_DEFAULT;
    s->held_seq = -1;
    s->held_unit = -1;
    s->held_part = -1;
    if (st_build_tables(s, err) || st_plan(s, err)) goto fail;
    if (p->plan_only) {
        *out = s;
        return AERO_OK;
    }
    if (s->depth_lowered) // slower than asked, but the budget holds: say why
        fprintf(stderr,
                "stream: --mem %.1f MiB is below the %.1f MiB that prefetch %d needs (%d ring slots): streaming with "
                "prefetch %d (%d slots)\n",
                p->mem_budget / 1048576.0, s->min_budget_asked / 1048576.0, s->prefetch, s->prefetch + 1,
                s->plan.prefetch, s->plan.n_slots);
    if (pthread_mutex_init(&s->mu, NULL) || pthread_cond_init(&s->cv_work, NULL) ||
        pthread_cond_init(&s->cv_done, NULL)) {
        aero_fail(err, AERO_ERR_NOMEM, "stream: cannot create locks");
        goto fail;
    }
    s->mutex_ready = true;
    s->log = calloc(ST_PASS_LOG, sizeof *s->log);
    s->occ = calloc(s->depth + 1, sizeof *s->occ);
    if (!s->log || !s->occ) {
        aero_fail(err, AERO_ERR_NOMEM, "stream: out of memory");
        goto fail;
    }
    if (st_files_open(s, err) || load_small(s, err) || st_io_start(s, err) || load_resident(s, err)) goto fail;
    if (s->row_buf_bytes) {
        s->row_buf = aero_alloc_aligned(ST_ALIGN, s->row_buf_bytes);
        if (!s->row_buf) {
            aero_fail(err, AERO_ERR_NOMEM, "stream: out of memory");
            goto fail;
        }
        s->held += s->row_buf_bytes;
    }
    if (s->ring_bytes) {
        s->ring = aero_alloc_aligned(ST_ALIGN, s->ring_bytes);
        if (!s->ring) {
            aero_fail(err, AERO_ERR_NOMEM, "stream: cannot allocate the %llu-byte streaming window",
                      (unsigned long long)s->ring_bytes);
            goto fail;
        }
        s->held += s->ring_bytes;
    }
    if (p->mem_budget && s->held > p->mem_budget) { // the planner's arithmetic and the allocations disagree
        aero_fail(err, AERO_ERR_NOMEM, "stream: internal error: %llu bytes held exceed the budget of %llu",
                  (unsigned long long)s->held, (unsigned long long)p->mem_budget);
        goto fail;
    }
    bool any_external = false;
    for (int u = 0; u < s->n_units; u++) any_external |= s->units[u].external;
    if (!s->n_streamed && !any_external) { // everything is in memory: the IO threads have nothing more to do
        st_io_stop(s);
    } else { // the first units of the first pass start reading now, while the caller finishes loading
        pthread_mutex_lock(&s->mu);
        st_schedule(s);
        pthread_mutex_unlock(&s->mu);
    }
    *out = s;
    return AERO_OK;
fail:
    aero_stream_close(s);
    return err->code;
}

// Stops the IO threads before freeing the memory they write into.
void aero_stream_close(aero_stream *s) {
    if (!s) return;
    st_io_stop(s);
    st_files_close(s);
    if (s->units)
        for (int u = 0; u < s->n_units; u++) free(s->units[u].mem);
    free(s->ring);
    free(s->embd_mem);
    free(s->small_mem);
    free(s->row_buf);
    free(s->occ);
    free(s->log);
    free(s->kind);
    free(s->unit_of);
    free(s->ptr);
    free(s->units);
    free(s->ranges);
    free(s->places);
    free(s->embd_ranges);
    free(s->exp_ranges);
    free(s->exp_places);
    free(s->exp_mem);
    free(s->streamed);
    free(s->plan.unit_resident);
    if (s->mutex_ready) {
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv_work);
        pthread_cond_destroy(&s->cv_done);
    }
    free(s);
}

// The output head's unit, so that no caller spells it as the bare layer count.
int aero_stream_head_unit(const aero_stream *s) { return s->head_unit; }

// The plan, for aerollm info and bench.
const aero_stream_plan *aero_stream_get_plan(const aero_stream *s) { return &s->plan; }

// Always-resident tensors (the model reads norms through here, acquired or not).
const void *aero_stream_global(aero_stream *s, int64_t tensor) {
    if (tensor < 0 || (uint64_t)tensor >= s->g->n_tensors) return NULL;
    st_tensor_kind k = s->kind[tensor];
    return k == ST_T_SMALL || k == ST_T_EMBD || k == ST_T_EXPERT ? s->ptr[tensor] : NULL;
}

// Why a tensor's data is not in memory now (into msg), or NULL when it is: the one rule behind both the
// assertion of aero_stream_tensor and the status of aero_stream_tensor_checked.
static const char *tensor_absent(const aero_stream *s, int64_t tensor, char *msg, size_t cap) {
    if (tensor < 0 || (uint64_t)tensor >= s->g->n_tensors) {
        snprintf(msg, cap, "stream: no tensor %lld", (long long)tensor);
        return msg;
    }
    const char *name = s->g->tensors[tensor].name;
    if (!s->mutex_ready) {
        snprintf(msg, cap, "stream: tensor '%s' read from a stream opened for planning only", name);
        return msg;
    }
    int u = s->unit_of[tensor];
    if (s->kind[tensor] == ST_T_UNIT && !s->units[u].resident && s->held_unit != u) {
        snprintf(msg, cap, "stream: tensor '%s' of unit %d read while %s", name, u,
                 s->held_unit < 0 ? "no unit is acquired" : "another unit is acquired");
        return msg;
    }
    if (s->kind[tensor] == ST_T_UNIT && s->units[u].external && !s->units[u].mem) {
        snprintf(msg, cap, "stream: tensor '%s' is of unit %d, which the caller holds (external)", name, u);
        return msg;
    }
    if (s->kind[tensor] == ST_T_EXPERT && !s->plan.experts_resident) {
        snprintf(msg, cap, "stream: tensor '%s' is a routed expert's, served by the expert cache", name);
        return msg;
    }
    if (s->kind[tensor] == ST_T_EMBD && !s->plan.embd_resident) {
        snprintf(msg, cap, "stream: tensor '%s' is read by row (aero_stream_embed_rows), not held", name);
        return msg;
    }
    return NULL;
}

// Tensor data for the model while its unit is acquired (or resident); reading any other is a streaming bug.
const void *aero_stream_tensor(aero_stream *s, int64_t tensor) {
#ifndef NDEBUG
    char msg[256];
    const char *why = tensor_absent(s, tensor, msg, sizeof msg);
    if (why) fprintf(stderr, "%s\n", why);
    assert(!why && "aero_stream_tensor: the tensor's unit is not acquired");
#endif
    if (tensor < 0 || (uint64_t)tensor >= s->g->n_tensors) return NULL;
    return s->ptr[tensor];
}

// The same for a caller that cannot know the tensor is held (a tensor index from outside, a tool).
aero_status aero_stream_tensor_checked(aero_stream *s, int64_t tensor, const void **data, aero_error *err) {
    char msg[256];
    *data = NULL;
    if (tensor_absent(s, tensor, msg, sizeof msg)) return aero_fail(err, AERO_ERR_INVALID, "%s", msg);
    *data = s->ptr[tensor];
    return AERO_OK;
}

// Position of a streamed unit in the cyclic order, -1 when it is pinned.
static int streamed_pos(const aero_stream *s, int unit) {
    for (int i = 0; i < s->n_streamed; i++)
        if (s->streamed[i] == unit) return i;
    return -1;
}

static aero_status acquire_unit(aero_stream *s, int unit, int iu, int part, aero_error *err);

// Hands the model a unit, waiting for its read when streamed; out of order restarts the cycle there.
aero_status aero_stream_acquire(aero_stream *s, int unit, aero_error *err) {
    if (unit < 0 || unit >= s->n_units) return aero_fail(err, AERO_ERR_INVALID, "stream: no unit %d", unit);
    if (!s->mutex_ready) return aero_fail(err, AERO_ERR_INVALID, "stream: opened for planning only");
    if (unit == s->head_unit && s->n_parts)
        return aero_fail(err, AERO_ERR_INVALID,
                         "stream: the output head is streamed in %d row blocks: acquire them with "
                         "aero_stream_acquire_head_part",
                         s->n_parts);
    return acquire_unit(s, unit, unit, -1, err);
}

// Row blocks of the head: 1 unless the plan streams it in blocks.
int aero_stream_head_parts(const aero_stream *s) { return s->n_parts ? s->n_parts : 1; }

// One row block of the head (or the whole head when it is not split), with the rows it holds.
aero_status aero_stream_acquire_head_part(aero_stream *s, int part, int64_t *row0, int64_t *rows, aero_error *err) {
    int n = aero_stream_head_parts(s);
    if (part < 0 || part >= n) return aero_fail(err, AERO_ERR_INVALID, "stream: no head block %d of %d", part, n);
    if (!s->mutex_ready) return aero_fail(err, AERO_ERR_INVALID, "stream: opened for planning only");
    int64_t out = s->params.output_tensor ? aero_gguf_tensor_index(s->g, s->params.output_tensor) : -1, total = 0;
    if (out >= 0) {
        const aero_tensor_info *t = &s->g->tensors[out];
        total = t->n_dims >= 2 ? (int64_t)t->ne[1] : 1;
    }
    *row0 = s->n_parts ? part * s->part_rows : 0;
    *rows = s->n_parts ? (*row0 + s->part_rows < total ? s->part_rows : total - *row0) : total;
    return acquire_unit(s, s->head_unit, s->n_parts ? s->n_units + part : s->head_unit, s->n_parts ? part : -1, err);
}

// The acquire of unit `unit` through its stored unit iu (itself, or a head block), part the head block or -1.
static aero_status acquire_unit(aero_stream *s, int unit, int iu, int part, aero_error *err) {
    pthread_mutex_lock(&s->mu);
    if (s->held_unit >= 0) {
        int h = s->held_unit;
        pthread_mutex_unlock(&s->mu);
        return aero_fail(err, AERO_ERR_INVALID, "stream: unit %d acquired while unit %d is still held", unit, h);
    }
    double now = aero_now();
    if (unit == 0 && s->in_pass && s->cur.units > 0) st_pass_end(s, now); // the previous pass was abandoned
    if (!s->in_pass) st_pass_begin(s, now);
    s->cur.units++;
    s->held_part = part;
    if (s->units[iu].resident) {
        s->held_unit = unit;
        s->acquired_at = aero_now();
        pthread_mutex_unlock(&s->mu);
        return AERO_OK;
    }
    int pos = streamed_pos(s, iu), k = s->n_streamed;
    int want = (int)(s->next_seq % k);
    if (pos != want) // out of the cyclic order (a pass abandoned after an error): read from this unit on
        st_ring_restart(s, s->next_seq + (pos - want + k) % k);
    st_schedule(s);
    st_occ *o = OCC(s, s->next_seq);
    double t0 = aero_now();
    while (!o->job.complete) pthread_cond_wait(&s->cv_done, &s->mu);
    double waited = aero_now() - t0;
    s->cur.wait += waited;
    s->stats.wait_s += waited;
    if (o->job.failed) {
        aero_fail(err, AERO_ERR_IO, "%s", o->job.errmsg);
        st_ring_restart(s, s->next_seq); // a later acquire of this unit reads it again
        pthread_mutex_unlock(&s->mu);
        return err->code;
    }
    const st_unit *un = &s->units[iu];
    for (int i = 0; i < un->n_places; i++) {
        const st_place *pl = &s->places[un->first_place + i];
        s->ptr[pl->tensor] = s->ring + o->ring_off + pl->mem_off;
    }
    s->held_seq = s->next_seq;
    s->held_unit = unit;
    s->cur.bytes += o->bytes;
    s->stats.bytes_streamed += o->bytes;
    s->acquired_at = aero_now();
    pthread_mutex_unlock(&s->mu);
    return AERO_OK;
}

// Frees the unit's ring slot for the read `prefetch` units ahead, and ends the pass after the head unit.
void aero_stream_release(aero_stream *s, int unit) {
    if (!s->mutex_ready) return;
    pthread_mutex_lock(&s->mu);
    if (unit != s->held_unit) { // a release without its acquire changes nothing
        pthread_mutex_unlock(&s->mu);
        return;
    }
    double now = aero_now();
    s->cur.compute += now - s->acquired_at;
    s->stats.compute_s += now - s->acquired_at;
    if (s->held_seq >= 0) {
        const st_unit *un = &s->units[OCC(s, s->held_seq)->unit];
        for (int i = 0; i < un->n_places; i++) s->ptr[s->places[un->first_place + i].tensor] = NULL;
        for (int i = 0; i < un->n_ranges; i++) { // buffered reads: nothing of the unit may stay in the page cache
            const st_range *r = &s->ranges[un->first_range + i];
            st_drop_cache(s, r->file, r->off, r->len);
        }
        s->next_seq = s->held_seq + 1;
        s->occ_first = s->next_seq;
        if (s->occ_first == s->occ_end) s->alloc_off = 0;
        s->held_seq = -1;
        st_schedule(s);
    }
    s->held_unit = -1;
    if (unit == s->head_unit && (s->held_part < 0 || s->held_part == s->n_parts - 1)) st_pass_end(s, now);
    s->held_part = -1;
    pthread_mutex_unlock(&s->mu);
}

// Raw rows of the token embedding: from memory when resident, else one aligned read per row. Dequantizing
// them is the model's business.
aero_status aero_stream_read_rows(aero_stream *s, const int32_t *rows, int n, void *out, aero_error *err) {
    if (s->embd < 0) return aero_fail(err, AERO_ERR_INVALID, "stream: no token embedding tensor");
    if (!s->mutex_ready) return aero_fail(err, AERO_ERR_INVALID, "stream: opened for planning only");
    const aero_tensor_info *t = &s->g->tensors[s->embd];
    size_t row_bytes = aero_dtype_row_bytes(t->type, t->ne[0]);
    for (int i = 0; i < n; i++)
        if (rows[i] < 0 || (uint64_t)rows[i] >= t->ne[1])
            return aero_fail(err, AERO_ERR_INVALID, "token id %d out of range [0, %llu)", rows[i],
                             (unsigned long long)t->ne[1]);
    pthread_mutex_lock(&s->mu);
    double t0 = aero_now();
    if (!s->in_pass) st_pass_begin(s, t0);
    pthread_mutex_unlock(&s->mu);
    if (s->plan.embd_resident) {
        const char *base = s->ptr[s->embd];
        for (int i = 0; i < n; i++)
            memcpy((char *)out + (size_t)i * row_bytes, base + (size_t)rows[i] * row_bytes, row_bytes);
        return AERO_OK;
    }
    uint64_t bytes = 0;
    aero_status st = AERO_OK;
    for (int i = 0; i < n && !st; i++) {
        uint64_t off = t->offset + (uint64_t)rows[i] * row_bytes, end = off + row_bytes;
        uint64_t a = off & ~(uint64_t)(ST_ALIGN - 1), len = ((end + ST_ALIGN - 1) & ~(uint64_t)(ST_ALIGN - 1)) - a;
        st = st_read_sync(s, t->file, a, len, end - a, s->row_buf, err);
        if (!st) memcpy((char *)out + (size_t)i * row_bytes, (const char *)s->row_buf + (off - a), row_bytes);
        bytes += len;
    }
    pthread_mutex_lock(&s->mu);
    double dt = aero_now() - t0;
    s->cur.wait += dt;
    s->stats.wait_s += dt;
    s->cur.bytes += bytes;
    s->stats.bytes_streamed += bytes;
    pthread_mutex_unlock(&s->mu);
    return st;
}

// The GPU copies a VRAM-resident unit out of this buffer once; streaming it every pass would waste the disk.
aero_status aero_stream_load_unit(aero_stream *s, int unit, aero_error *err) {
    if (unit < 0 || unit >= s->n_units || !s->units[unit].external)
        return aero_fail(err, AERO_ERR_INVALID, "stream: unit %d is not external", unit);
    if (!s->mutex_ready) return aero_fail(err, AERO_ERR_INVALID, "stream: opened for planning only");
    st_unit *un = &s->units[unit];
    if (un->mem) return AERO_OK;
    if (!(un->mem = aero_alloc_aligned(ST_ALIGN, un->bytes ? un->bytes : ST_ALIGN)))
        return aero_fail(err, AERO_ERR_NOMEM, "stream: cannot allocate %llu bytes for unit %d",
                         (unsigned long long)un->bytes, unit);
    st_job job = {.ranges = s->ranges + un->first_range, .n_ranges = un->n_ranges, .mem = un->mem};
    pthread_mutex_lock(&s->mu);
    st_job_enqueue(s, &job);
    while (!job.complete) pthread_cond_wait(&s->cv_done, &s->mu);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < un->n_ranges; i++) {
        const st_range *r = &s->ranges[un->first_range + i];
        st_drop_cache(s, r->file, r->off, r->len);
    }
    if (job.failed) {
        aero_fail(err, AERO_ERR_IO, "%s", job.errmsg);
        aero_stream_unload_unit(s, unit);
        return err->code;
    }
    for (int i = 0; i < un->n_places; i++) {
        const st_place *pl = &s->places[un->first_place + i];
        s->ptr[pl->tensor] = (char *)un->mem + pl->mem_off;
    }
    return AERO_OK;
}

// Frees what aero_stream_load_unit read: the caller has its copy.
void aero_stream_unload_unit(aero_stream *s, int unit) {
    if (unit < 0 || unit >= s->n_units || !s->units[unit].external) return;
    st_unit *un = &s->units[unit];
    for (int i = 0; i < un->n_places; i++) s->ptr[s->places[un->first_place + i].tensor] = NULL;
    free(un->mem);
    un->mem = NULL;
}

// A GPU context decides which units live in VRAM after the model (and its stream) was opened: the stream is
// planned again so that host memory holds the others.
aero_status aero_stream_reopen(aero_stream **sp, const bool *external, bool head_in_parts, aero_error *err) {
    aero_stream *old = *sp;
    const aero_gguf *g = old->g;
    int n_layer = old->head_unit;
    aero_stream_params p = old->params;
    bool *was = malloc(sizeof *was * old->n_units);
    if (!was) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    for (int u = 0; u < old->n_units; u++) was[u] = old->units[u].external;
    p.external = external;
    bool parts_was = p.head_in_parts;
    p.head_in_parts = head_in_parts;
    const struct aero_expert_cache *experts = old->experts; // the new stream reports the same cache
    aero_stream_close(old);
    *sp = NULL;
    aero_status st = aero_stream_open(sp, g, n_layer, &p, err);
    if (st) { // the old plan back, so that the model keeps a working stream
        aero_error ignored = {0};
        p.external = was;
        p.head_in_parts = parts_was;
        aero_stream_open(sp, g, n_layer, &p, &ignored);
    }
    if (*sp) (*sp)->experts = experts;
    free(was);
    return st;
}

// Whether the caller holds this unit (for the GPU's plan and for tests).
bool aero_stream_unit_external(const aero_stream *s, int unit) {
    return unit >= 0 && unit < s->n_units && s->units[unit].external;
}

// Weight bytes allocated (resident + window): what invariant 5 bounds.
uint64_t aero_stream_weight_bytes_held(const aero_stream *s) { return s->held; }
