// The expert cache: a direct-mapped index over (layer, expert), entries each holding one expert's three
// parts in one aligned buffer, and IO threads that serve a queue of pread requests. acquire() waits for
// its experts (and reads along with the threads); prefetch() only queues. See expert_cache.h.
//
// Threads: every field is the caller's except the request queue and each entry's IO state (io_pending,
// failed, ...), which the IO threads update under `mu`. The entry array is only grown under `mu`, and an
// entry with IO in flight is never evicted, so a thread's destination buffer stays valid.
#include "expert_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/util.h"

#define EC_ALIGN 4096u      // O_DIRECT alignment of offsets, sizes and buffers
#define EC_CHUNK (4u << 20) // a part larger than this is read as several requests

typedef struct {
    int key; // layer * n_expert + expert; -1 when the slot is free
    uint8_t *buf;
    uint64_t bytes; // allocated (sum of the aligned spans)
    uint64_t part_off[3];
    int pins;
    uint64_t last_use;
    bool prefetched; // read by prefetch() and not acquired since
    // IO state, under mu
    int io_pending; // requests not finished
    bool failed;
    int fail_errno, fail_file;
    uint64_t fail_off;
} ec_entry;

typedef struct {
    int file;
    uint64_t off; // aligned file offset
    uint8_t *dst;
    uint64_t len;  // aligned length asked
    uint64_t need; // bytes that must arrive (the rest may lie past the end of the file)
    int entry;
} ec_req;

struct aero_expert_cache {
    aero_expert_cache_config cfg;
    int n_keys;
    int *slot;         // [n_keys] entry index or -1
    uint32_t *freq;    // [n_keys] use counts for LFU, kept across evictions
    uint32_t *first;   // [n_keys] pass of the first use (RATE), moved forward as the counts age
    uint32_t *lastp;   // [n_keys] pass of the last use (RATE)
    uint32_t pass;     // passes seen: an acquire of a lower layer than the previous one starts a new one
    int last_layer;
    uint64_t freq_ops; // lookups since the counts were last halved
    ec_entry *ent;
    int n_ent, cap_ent;
    uint64_t tick;
    uint64_t n_acquires, n_lookups; // never reset: the mean experts per acquire
    aero_expert_cache_stats st;
    int *fd_direct, *fd_buf;

    pthread_t *threads;
    int n_threads;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    ec_req *q; // queue [q_head, q_tail)
    int q_head, q_tail, q_cap;
    bool stop;
};

const char *aero_expert_evict_name(aero_expert_evict p) {
    return p == AERO_EXPERT_EVICT_LRU           ? "LRU"
           : p == AERO_EXPERT_EVICT_LFU_RECENT ? "LFU+recent"
           : p == AERO_EXPERT_EVICT_RATE       ? "rate"
                                                : "LFU";
}

// Reads one request, O_DIRECT when the file has it; a refused O_DIRECT read falls back to buffered reads
// that drop their pages after use, so streaming experts never fills the page cache.
static int ec_read(aero_expert_cache *c, const ec_req *r) {
    uint64_t got = 0;
    int fd = c->fd_direct[r->file] >= 0 ? c->fd_direct[r->file] : c->fd_buf[r->file];
    while (got < r->len) {
        ssize_t k = pread(fd, r->dst + got, (size_t)(r->len - got), (off_t)(r->off + got));
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && errno == EINVAL && fd == c->fd_direct[r->file]) {
            fd = c->fd_buf[r->file];
            continue;
        }
        if (k < 0) return errno ? errno : EIO;
        if (k == 0) break;
        got += (uint64_t)k;
        if (fd == c->fd_direct[r->file] && (got % EC_ALIGN) != 0) break; // short O_DIRECT read: end of file
    }
    if (fd == c->fd_buf[r->file] && !c->cfg.page_cache)
        posix_fadvise(fd, (off_t)r->off, (off_t)r->len, POSIX_FADV_DONTNEED);
    return got >= r->need ? 0 : EIO;
}

// Takes the next queued request and runs it; called with mu held, returns with mu held. False when the
// queue is empty.
static bool ec_run_one(aero_expert_cache *c) {
    if (c->q_head == c->q_tail) return false;
    ec_req r = c->q[c->q_head++];
    if (c->q_head == c->q_tail) c->q_head = c->q_tail = 0;
    pthread_mutex_unlock(&c->mu);
    int e = ec_read(c, &r);
    pthread_mutex_lock(&c->mu);
    ec_entry *en = &c->ent[r.entry];
    if (e && !en->failed) {
        en->failed = true;
        en->fail_errno = e;
        en->fail_file = r.file;
        en->fail_off = r.off;
    }
    if (--en->io_pending == 0) pthread_cond_broadcast(&c->cv_done);
    return true;
}

// An IO thread: serves the queue until the cache is freed.
static void *ec_worker(void *arg) {
    aero_expert_cache *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->stop && c->q_head == c->q_tail) pthread_cond_wait(&c->cv_work, &c->mu);
        if (c->stop) break;
        ec_run_one(c);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

void aero_expert_cache_free(aero_expert_cache *c) {
    if (!c) return;
    if (c->threads) {
        pthread_mutex_lock(&c->mu);
        c->stop = true;
        pthread_cond_broadcast(&c->cv_work);
        pthread_mutex_unlock(&c->mu);
        for (int i = 0; i < c->n_threads; i++) pthread_join(c->threads[i], NULL);
        free(c->threads);
    }
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv_work);
    pthread_cond_destroy(&c->cv_done);
    for (int i = 0; i < c->n_ent; i++) free(c->ent[i].buf);
    for (int f = 0; c->fd_buf && f < c->cfg.n_files; f++) {
        if (c->fd_direct[f] >= 0) close(c->fd_direct[f]);
        if (c->fd_buf[f] >= 0) close(c->fd_buf[f]);
    }
    free(c->fd_direct);
    free(c->fd_buf);
    free(c->slot);
    free(c->freq);
    free(c->first);
    free(c->lastp);
    free(c->ent);
    free(c->q);
    free(c);
}

aero_expert_cache *aero_expert_cache_new(const aero_expert_cache_config *cfg, aero_error *err) {
    if (!cfg || !cfg->paths || cfg->n_files <= 0 || cfg->n_layer <= 0 || cfg->n_expert <= 0 || !cfg->locate ||
        (int64_t)cfg->n_layer * cfg->n_expert > (1 << 24)) {
        aero_fail(err, AERO_ERR_INVALID, "expert cache: bad configuration");
        return NULL;
    }
    aero_expert_cache *c = calloc(1, sizeof *c);
    if (!c) {
        aero_fail(err, AERO_ERR_NOMEM, "expert cache: out of memory");
        return NULL;
    }
    c->cfg = *cfg;
    c->n_keys = cfg->n_layer * cfg->n_expert;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv_work, NULL);
    pthread_cond_init(&c->cv_done, NULL);
    c->slot = malloc(sizeof(int) * (size_t)c->n_keys);
    c->freq = calloc((size_t)c->n_keys, sizeof(uint32_t));
    c->first = calloc((size_t)c->n_keys, sizeof(uint32_t));
    c->lastp = calloc((size_t)c->n_keys, sizeof(uint32_t));
    c->last_layer = -1;
    c->fd_direct = malloc(sizeof(int) * (size_t)cfg->n_files);
    c->fd_buf = malloc(sizeof(int) * (size_t)cfg->n_files);
    if (!c->slot || !c->freq || !c->first || !c->lastp || !c->fd_direct || !c->fd_buf) {
        aero_fail(err, AERO_ERR_NOMEM, "expert cache: out of memory");
        goto fail;
    }
    for (int i = 0; i < c->n_keys; i++) c->slot[i] = -1;
    for (int f = 0; f < cfg->n_files; f++) c->fd_direct[f] = c->fd_buf[f] = -1;
    for (int f = 0; f < cfg->n_files; f++) {
        c->fd_buf[f] = open(cfg->paths[f], O_RDONLY | O_CLOEXEC);
        if (c->fd_buf[f] < 0) {
            aero_fail(err, AERO_ERR_IO, "%s: %s", cfg->paths[f], strerror(errno));
            goto fail;
        }
        if (!cfg->buffered) c->fd_direct[f] = open(cfg->paths[f], O_RDONLY | O_CLOEXEC | O_DIRECT);
    }
    c->n_threads = cfg->n_io_threads > 0 ? cfg->n_io_threads : 4;
    c->threads = calloc((size_t)c->n_threads, sizeof(pthread_t));
    if (!c->threads) {
        aero_fail(err, AERO_ERR_NOMEM, "expert cache: out of memory");
        goto fail;
    }
    for (int i = 0; i < c->n_threads; i++)
        if (pthread_create(&c->threads[i], NULL, ec_worker, c) != 0) {
            c->n_threads = i;
            aero_fail(err, AERO_ERR_NOMEM, "expert cache: cannot start IO thread %d", i);
            goto fail;
        }
    return c;
fail:
    aero_expert_cache_free(c);
    return NULL;
}

static int ec_key(const aero_expert_cache *c, int layer, int expert) {
    if (layer < 0 || layer >= c->cfg.n_layer || expert < 0 || expert >= c->cfg.n_expert) return -1;
    return layer * c->cfg.n_expert + expert;
}

bool aero_expert_cache_contains(const aero_expert_cache *c, int layer, int expert) {
    int k = ec_key(c, layer, expert);
    return k >= 0 && c->slot[k] >= 0;
}

const void *aero_expert_cache_part(const aero_expert_cache *c, int layer, int expert, int part) {
    int k = ec_key(c, layer, expert);
    if (k < 0 || part < 0 || part > 2 || c->slot[k] < 0) return NULL;
    const ec_entry *e = &c->ent[c->slot[k]];
    if (e->pins <= 0) return NULL; // only pinned experts: their reads are complete and checked
    return e->buf + e->part_off[part];
}

// Frees an entry's buffer and its slot (its IO must be finished); the hole is reused by the next insert.
static void ec_drop(aero_expert_cache *c, int i) {
    ec_entry *e = &c->ent[i];
    if (e->prefetched) c->st.prefetch_wasted++;
    c->slot[e->key] = -1;
    c->st.held_bytes -= e->bytes;
    c->st.entries--;
    free(e->buf);
    *e = (ec_entry){.key = -1};
}

// Whether an entry may be evicted: not pinned and no read in flight into its buffer.
static bool ec_evictable(aero_expert_cache *c, const ec_entry *e) {
    if (e->key < 0 || e->pins > 0) return false;
    pthread_mutex_lock(&c->mu);
    bool idle = e->io_pending == 0;
    pthread_mutex_unlock(&c->mu);
    return idle;
}

// The evictable entry the policy values least: LRU the oldest use; LFU the fewest uses, then the oldest;
// LFU_RECENT the same as LFU among entries not used in the last n_layer acquires (the previous token's
// experts), falling back to plain LFU when every evictable entry is that recent. The guard only pays when
// the cache holds two tokens' worth of experts: a smaller one would protect everything and become LRU.
// A failed prefetch goes first.
static int ec_victim_locked(aero_expert_cache *c);
static int ec_victim(aero_expert_cache *c) {
    pthread_mutex_lock(&c->mu);
    int v = ec_victim_locked(c);
    pthread_mutex_unlock(&c->mu);
    return v;
}

// Whether an entry may be evicted, with mu held.
static bool ec_idle_locked(const ec_entry *e) { return e->key >= 0 && e->pins == 0 && e->io_pending == 0; }

// RATE's value of an expert: its estimated uses per pass, the uses over the passes since its first use plus a
// prior of b passes (b = n_expert / experts per acquire, the mean gap between uses under uniform routing, so
// one lucky use of a newcomer does not outrank a steady expert), plus 1 / (passes since its last use + b) for
// the locality between neighbouring tokens. Plain LFU ranks an expert seen twice in the last few passes
// below one seen three times since the start; the rate does not (measured on routing traces: docs/perf/moe.md).
static double ec_score(const aero_expert_cache *c, int key) {
    double per_acquire = c->n_acquires ? (double)c->n_lookups / (double)c->n_acquires : 1.0;
    double b = (double)c->cfg.n_expert / (per_acquire > 1.0 ? per_acquire : 1.0);
    double age = (double)(c->pass - c->first[key]), rec = (double)(c->pass - c->lastp[key]);
    return (double)c->freq[key] / (age + b) + 1.0 / (rec + b);
}

static int ec_victim_locked(aero_expert_cache *c) {
    int best = -1;
    for (int i = 0; i < c->n_ent; i++)
        if (ec_idle_locked(&c->ent[i]) && c->ent[i].failed) return i;
    double per_acquire = c->n_acquires ? (double)c->n_lookups / (double)c->n_acquires : 1.0;
    if (c->cfg.policy == AERO_EXPERT_EVICT_RATE) {
        // LFU+recent's guard too: the previous pass's experts go last while the cache holds two passes' worth
        bool guard = (double)c->st.entries >= 2.0 * per_acquire * c->cfg.n_layer;
        uint64_t window = (uint64_t)c->cfg.n_layer;
        for (int pass = guard ? 0 : 1; pass < 2 && best < 0; pass++) {
            double best_s = 0;
            for (int i = 0; i < c->n_ent; i++) {
                const ec_entry *e = &c->ent[i];
                if (!ec_idle_locked(e) || (pass == 0 && e->last_use + window >= c->tick)) continue;
                double sc = ec_score(c, e->key);
                if (best < 0 || sc < best_s || (sc == best_s && e->last_use < c->ent[best].last_use)) best = i, best_s = sc;
            }
        }
        return best;
    }
    if (c->cfg.policy == AERO_EXPERT_EVICT_LFU_RECENT && (double)c->st.entries >= 2.0 * per_acquire * c->cfg.n_layer) {
        uint64_t window = (uint64_t)c->cfg.n_layer;
        for (int i = 0; i < c->n_ent; i++) {
            const ec_entry *e = &c->ent[i];
            if (e->last_use + window >= c->tick || !ec_idle_locked(e)) continue;
            if (best < 0 || c->freq[e->key] < c->freq[c->ent[best].key] ||
                (c->freq[e->key] == c->freq[c->ent[best].key] && e->last_use < c->ent[best].last_use))
                best = i;
        }
        if (best >= 0) return best;
    }
    for (int i = 0; i < c->n_ent; i++) {
        const ec_entry *e = &c->ent[i];
        if (!ec_idle_locked(e)) continue;
        if (best < 0) {
            best = i;
            continue;
        }
        const ec_entry *b = &c->ent[best];
        if (c->cfg.policy != AERO_EXPERT_EVICT_LRU && c->freq[e->key] != c->freq[b->key]) {
            if (c->freq[e->key] < c->freq[b->key]) best = i;
        } else if (e->last_use < b->last_use) {
            best = i;
        }
    }
    return best;
}

// A free entry index, growing the array (under mu: IO threads index it) when there is no hole.
static int ec_new_entry(aero_expert_cache *c) {
    for (int i = 0; i < c->n_ent; i++)
        if (c->ent[i].key < 0) return i;
    int idx = -1;
    pthread_mutex_lock(&c->mu);
    if (c->n_ent == c->cap_ent) {
        int cap = c->cap_ent ? c->cap_ent * 2 : 64;
        ec_entry *n = realloc(c->ent, sizeof(ec_entry) * (size_t)cap);
        if (n) {
            c->ent = n;
            c->cap_ent = cap;
        }
    }
    if (c->n_ent < c->cap_ent) {
        c->ent[c->n_ent] = (ec_entry){.key = -1};
        idx = c->n_ent++;
    }
    pthread_mutex_unlock(&c->mu);
    return idx;
}

// Counts a use. Ages the counts so experts that were hot long ago do not stay forever: halving a count
// halves the time it was gathered over too, so RATE's estimate stays the same until new uses move it.
static void ec_count(aero_expert_cache *c, int key) {
    if (c->freq[key] == 0) c->first[key] = c->pass;
    c->lastp[key] = c->pass;
    if (++c->freq[key] == UINT32_MAX || ++c->freq_ops >= (uint64_t)c->n_keys * 16) {
        for (int i = 0; i < c->n_keys; i++) {
            c->freq[i] >>= 1;
            c->first[i] = c->pass - (c->pass - c->first[i]) / 2;
        }
        c->freq_ops = 0;
    }
}

// Bytes an expert takes in the cache (each part's 4 KiB-aligned span) and where its parts start.
static aero_status ec_extents(aero_expert_cache *c, int layer, int expert, aero_expert_extent ext[3], uint64_t a0[3],
                              uint64_t span[3], uint64_t *bytes, aero_error *err) {
    aero_status st = c->cfg.locate(c->cfg.locate_ctx, layer, expert, ext, err);
    if (st != AERO_OK) return st;
    *bytes = 0;
    for (int p = 0; p < 3; p++) {
        if (ext[p].file < 0 || ext[p].file >= c->cfg.n_files || ext[p].size == 0)
            return aero_fail(err, AERO_ERR_FORMAT, "layer %d expert %d: bad extent of part %d", layer, expert, p);
        a0[p] = ext[p].offset & ~(uint64_t)(EC_ALIGN - 1);
        uint64_t a1 = (ext[p].offset + ext[p].size + EC_ALIGN - 1) & ~(uint64_t)(EC_ALIGN - 1);
        span[p] = a1 - a0[p];
        *bytes += span[p];
    }
    return AERO_OK;
}

// Inserts an entry for (key) with its buffer and queues its reads (the caller wakes the IO threads); -1
// when out of memory.
static int ec_insert(aero_expert_cache *c, int key, const aero_expert_extent ext[3], const uint64_t a0[3],
                     const uint64_t span[3], uint64_t bytes, int pins) {
    int ei = ec_new_entry(c);
    void *bp = NULL; // not zero-filled: the read overwrites every byte that is used
    if (ei < 0 || posix_memalign(&bp, EC_ALIGN, (size_t)bytes) != 0) return -1;
    int n_req = 0;
    for (int p = 0; p < 3; p++) n_req += (int)((span[p] + EC_CHUNK - 1) / EC_CHUNK);
    pthread_mutex_lock(&c->mu);
    if (c->q_tail + n_req > c->q_cap) {
        int cap = c->q_cap ? c->q_cap : 64;
        while (cap < c->q_tail + n_req) cap *= 2;
        ec_req *nq = realloc(c->q, sizeof(ec_req) * (size_t)cap);
        if (!nq) {
            pthread_mutex_unlock(&c->mu);
            free(bp);
            return -1;
        }
        c->q = nq;
        c->q_cap = cap;
    }
    ec_entry *e = &c->ent[ei];
    *e = (ec_entry){.key = key, .buf = bp, .bytes = bytes, .pins = pins, .last_use = c->tick, .io_pending = n_req};
    uint64_t pos = 0;
    for (int p = 0; p < 3; p++) {
        e->part_off[p] = pos + (ext[p].offset - a0[p]);
        uint64_t end_need = ext[p].offset + ext[p].size - a0[p]; // bytes of this span that must arrive
        for (uint64_t o = 0; o < span[p]; o += EC_CHUNK) {
            uint64_t len = span[p] - o < EC_CHUNK ? span[p] - o : EC_CHUNK;
            uint64_t need = end_need <= o ? 0 : (end_need - o < len ? end_need - o : len);
            c->q[c->q_tail++] = (ec_req){
                .file = ext[p].file, .off = a0[p] + o, .dst = e->buf + pos + o, .len = len, .need = need, .entry = ei};
        }
        pos += span[p];
    }
    pthread_mutex_unlock(&c->mu);
    c->slot[key] = ei;
    c->st.held_bytes += bytes;
    if (c->st.held_bytes > c->st.peak_bytes) c->st.peak_bytes = c->st.held_bytes;
    c->st.entries++;
    c->st.bytes_read += bytes;
    return ei;
}

// Waits until the listed entries have no read in flight, reading queued requests meanwhile (the caller's
// core would idle otherwise, and a small batch then needs no thread handoff at all).
static void ec_wait(aero_expert_cache *c, const int *ents, int n) {
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < n; i++)
        while (c->ent[ents[i]].io_pending > 0)
            if (!ec_run_one(c)) pthread_cond_wait(&c->cv_done, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

aero_status aero_expert_cache_acquire(aero_expert_cache *c, int layer, const int *experts, int n, int *n_ready,
                                      aero_error *err) {
    *n_ready = 0;
    if (n <= 0) return AERO_OK;
    if (layer < c->last_layer) c->pass++; // layers come in order within a pass (prefix rounds repeat one)
    c->last_layer = layer;
    c->tick++;
    c->n_acquires++;
    c->n_lookups += (uint64_t)n;
    int ready = 0, n_new = 0, n_hit = 0;
    int *fresh = malloc(sizeof(int) * (size_t)n * 3); // entries inserted, entries hit, then all of them
    if (!fresh) return aero_fail(err, AERO_ERR_NOMEM, "expert cache: out of memory");
    int *hit = fresh + n, *all = fresh + 2 * n;
    aero_status st = AERO_OK;
    bool waited = false;
    for (int i = 0; i < n; i++) {
        int key = ec_key(c, layer, experts[i]);
        if (key < 0) {
            st = aero_fail(err, AERO_ERR_INVALID, "layer %d expert %d: not in the model", layer, experts[i]);
            goto undo;
        }
        if (c->slot[key] >= 0 && ec_evictable(c, &c->ent[c->slot[key]]) && c->ent[c->slot[key]].failed)
            ec_drop(c, c->slot[key]); // a failed prefetch: read it again
        if (c->slot[key] >= 0) {
            ec_entry *e = &c->ent[c->slot[key]];
            e->pins++;
            e->last_use = c->tick;
            if (e->prefetched) {
                e->prefetched = false;
                c->st.prefetch_used++;
            }
            c->st.hits++;
            c->st.lookups++;
            ec_count(c, key);
            hit[n_hit++] = c->slot[key];
            all[ready++] = c->slot[key];
            continue;
        }
        aero_expert_extent ext[3];
        uint64_t a0[3], span[3], bytes;
        st = ec_extents(c, layer, experts[i], ext, a0, span, &bytes, err);
        if (st != AERO_OK) goto undo;
        while (c->st.held_bytes + bytes > c->cfg.budget) {
            int v = ec_victim(c);
            if (v < 0) break;
            ec_drop(c, v);
            c->st.evictions++;
        }
        if (c->st.held_bytes + bytes > c->cfg.budget) break; // the rest does not fit beside what is pinned
        int ei = ec_insert(c, key, ext, a0, span, bytes, 1);
        if (ei < 0) {
            st = aero_fail(err, AERO_ERR_NOMEM, "layer %d expert %d: cannot allocate %llu bytes", layer, experts[i],
                           (unsigned long long)bytes);
            goto undo;
        }
        fresh[n_new++] = ei;
        all[ready++] = ei;
        c->st.misses++;
        c->st.lookups++;
        ec_count(c, key);
    }
    if (ready == 0) {
        st = aero_fail(err, AERO_ERR_NOMEM,
                       "layer %d: expert cache budget %llu bytes cannot hold expert %d beside "
                       "%llu pinned bytes",
                       layer, (unsigned long long)c->cfg.budget, experts[0], (unsigned long long)c->st.held_bytes);
        goto undo;
    }
    double t0 = aero_now();
    pthread_mutex_lock(&c->mu);
    if (c->q_tail - c->q_head > 1) pthread_cond_broadcast(&c->cv_work); // one request: this thread reads it
    pthread_mutex_unlock(&c->mu);
    ec_wait(c, all, ready);
    waited = true;
    c->st.io_seconds += aero_now() - t0;
    if (n_new) c->st.batches++;
    for (int i = 0; i < ready; i++) {
        const ec_entry *e = &c->ent[all[i]];
        if (e->failed) {
            st = aero_fail(err, AERO_ERR_IO, "layer %d expert %d: read of %s at %llu failed: %s", layer,
                           e->key % c->cfg.n_expert, c->cfg.paths[e->fail_file], (unsigned long long)e->fail_off,
                           e->fail_errno == EIO ? "short read" : strerror(e->fail_errno));
            goto undo;
        }
    }
    free(fresh);
    *n_ready = ready;
    return AERO_OK;
undo:
    // Nothing of this call stays pinned: its reads finish, fresh entries go away, hits are unpinned (and
    // dropped when their prefetched bytes failed).
    if (!waited) ec_wait(c, fresh, n_new);
    for (int j = 0; j < n_new; j++) ec_drop(c, fresh[j]);
    for (int j = 0; j < n_hit; j++) {
        ec_entry *e = &c->ent[hit[j]];
        e->pins--;
        if (e->pins == 0 && ec_evictable(c, e) && e->failed) ec_drop(c, hit[j]);
    }
    free(fresh);
    return st;
}

// Queues one expert's reads unless it is resident or unknown; false when the cache has no room for it.
static bool ec_prefetch_one(aero_expert_cache *c, int layer, int expert, int *issued) {
    int key = ec_key(c, layer, expert);
    if (key < 0 || c->slot[key] >= 0) return true;
    aero_expert_extent ext[3];
    uint64_t a0[3], span[3], bytes;
    aero_error err;
    if (ec_extents(c, layer, expert, ext, a0, span, &bytes, &err) != AERO_OK) return true;
    // Make room only from experts the policy values less than this guess (under LFU: used strictly less
    // often, so one guess never displaces another).
    while (c->st.held_bytes + bytes > c->cfg.budget) {
        int v = ec_victim(c);
        if (v < 0) break;
        if (c->cfg.policy == AERO_EXPERT_EVICT_RATE && ec_score(c, c->ent[v].key) >= ec_score(c, key)) break;
        if (c->cfg.policy != AERO_EXPERT_EVICT_LRU && c->cfg.policy != AERO_EXPERT_EVICT_RATE &&
            c->freq[c->ent[v].key] >= c->freq[key])
            break;
        ec_drop(c, v);
        c->st.evictions++;
    }
    if (c->st.held_bytes + bytes > c->cfg.budget) return false;
    int ei = ec_insert(c, key, ext, a0, span, bytes, 0);
    if (ei < 0) return false;
    c->ent[ei].prefetched = true;
    c->st.prefetch_issued++;
    (*issued)++;
    return true;
}

void aero_expert_cache_prefetch(aero_expert_cache *c, int layer, const int *experts, int n) {
    int issued = 0;
    for (int i = 0; i < n; i++)
        if (!ec_prefetch_one(c, layer, experts[i], &issued)) break;
    if (issued) {
        pthread_mutex_lock(&c->mu);
        pthread_cond_broadcast(&c->cv_work);
        pthread_mutex_unlock(&c->mu);
    }
}

void aero_expert_cache_wait_idle(aero_expert_cache *c) {
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < c->n_ent; i++)
        while (c->ent[i].key >= 0 && c->ent[i].io_pending > 0)
            if (!ec_run_one(c)) pthread_cond_wait(&c->cv_done, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

void aero_expert_cache_release(aero_expert_cache *c, int layer, const int *experts, int n) {
    for (int i = 0; i < n; i++) {
        int key = ec_key(c, layer, experts[i]);
        if (key >= 0 && c->slot[key] >= 0 && c->ent[c->slot[key]].pins > 0) c->ent[c->slot[key]].pins--;
    }
}

void aero_expert_cache_stats_get(const aero_expert_cache *c, aero_expert_cache_stats *out) { *out = c->st; }

void aero_expert_cache_stats_reset(aero_expert_cache *c) {
    uint64_t held = c->st.held_bytes;
    int entries = c->st.entries;
    memset(&c->st, 0, sizeof c->st);
    c->st.held_bytes = c->st.peak_bytes = held;
    c->st.entries = entries;
}
