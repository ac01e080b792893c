// The expert cache: a direct-mapped index over (layer, expert), entries each holding one expert's three
// parts in one aligned buffer, and a small pool of IO threads that serve a batch of pread requests at a
// time. See expert_cache.h for the contract.
#include "expert_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/util.h"

#define EC_ALIGN 4096u               // O_DIRECT alignment of offsets, sizes and buffers
#define EC_CHUNK (4u << 20)          // a part larger than this is read as several requests

typedef struct {
    int key;          // layer * n_expert + expert; -1 when the slot is free
    uint8_t *buf;
    uint64_t bytes;   // allocated (sum of the aligned spans)
    uint64_t part_off[3];
    int pins;
    uint64_t last_use;
} ec_entry;

typedef struct {
    int file;
    uint64_t off;     // aligned file offset
    uint8_t *dst;
    uint64_t len;     // aligned length asked
    uint64_t need;    // bytes that must arrive (the rest may lie past the end of the file)
    int entry;
} ec_req;

struct aero_expert_cache {
    aero_expert_cache_config cfg;
    int n_keys;
    int *slot;          // [n_keys] entry index or -1
    uint32_t *freq;     // [n_keys] use counts for LFU, kept across evictions
    uint64_t freq_ops;  // lookups since the counts were last halved
    ec_entry *ent;
    int n_ent, cap_ent;
    uint64_t tick;
    uint64_t n_acquires, n_lookups; // never reset: the mean experts per acquire
    aero_expert_cache_stats st;
    int *fd_direct, *fd_buf;

    // IO threads: one batch of requests at a time.
    pthread_t *threads;
    int n_threads;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    ec_req *req;
    int n_req, next_req, done_req;
    uint64_t batch_id;
    bool stop;
    int err_req;        // first failed request, -1 when none
    int err_errno;
};

const char *aero_expert_evict_name(aero_expert_evict p) {
    return p == AERO_EXPERT_EVICT_LRU ? "LRU" : p == AERO_EXPERT_EVICT_LFU_RECENT ? "LFU+recent" : "LFU";
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
    if (fd == c->fd_buf[r->file] && !c->cfg.page_cache) posix_fadvise(fd, (off_t)r->off, (off_t)r->len, POSIX_FADV_DONTNEED);
    return got >= r->need ? 0 : EIO;
}

// An IO thread: takes requests of the current batch until none are left.
static void *ec_worker(void *arg) {
    aero_expert_cache *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->stop && c->next_req >= c->n_req) pthread_cond_wait(&c->cv_work, &c->mu);
        if (c->stop) break;
        int i = c->next_req++;
        pthread_mutex_unlock(&c->mu);
        int e = ec_read(c, &c->req[i]);
        pthread_mutex_lock(&c->mu);
        if (e && c->err_req < 0) {
            c->err_req = i;
            c->err_errno = e;
        }
        if (++c->done_req == c->n_req) pthread_cond_broadcast(&c->cv_done);
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
    free(c->fd_direct); free(c->fd_buf);
    free(c->slot); free(c->freq); free(c->ent); free(c->req);
    free(c);
}

aero_expert_cache *aero_expert_cache_new(const aero_expert_cache_config *cfg, aero_error *err) {
    if (!cfg || !cfg->paths || cfg->n_files <= 0 || cfg->n_layer <= 0 || cfg->n_expert <= 0 || !cfg->locate ||
        (int64_t)cfg->n_layer * cfg->n_expert > (1 << 24)) {
        aero_fail(err, AERO_ERR_INVALID, "expert cache: bad configuration");
        return NULL;
    }
    aero_expert_cache *c = calloc(1, sizeof *c);
    if (!c) { aero_fail(err, AERO_ERR_NOMEM, "expert cache: out of memory"); return NULL; }
    c->cfg = *cfg;
    c->n_keys = cfg->n_layer * cfg->n_expert;
    c->err_req = -1;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv_work, NULL);
    pthread_cond_init(&c->cv_done, NULL);
    c->slot = malloc(sizeof(int) * (size_t)c->n_keys);
    c->freq = calloc((size_t)c->n_keys, sizeof(uint32_t));
    c->fd_direct = malloc(sizeof(int) * (size_t)cfg->n_files);
    c->fd_buf = malloc(sizeof(int) * (size_t)cfg->n_files);
    if (!c->slot || !c->freq || !c->fd_direct || !c->fd_buf) {
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
    return e->buf + e->part_off[part];
}

// Frees an entry's buffer and its slot; the entry array keeps a hole that the next insert reuses.
static void ec_drop(aero_expert_cache *c, int i) {
    ec_entry *e = &c->ent[i];
    c->slot[e->key] = -1;
    c->st.held_bytes -= e->bytes;
    c->st.entries--;
    free(e->buf);
    *e = (ec_entry){.key = -1};
}

// The unpinned entry the policy values least: LRU the oldest use; LFU the fewest uses, then the oldest;
// LFU_RECENT the same as LFU among entries not used in the last n_layer acquires (the previous token's
// experts), falling back to plain LFU when every unpinned entry is that recent. The guard only pays when
// the cache holds two tokens' worth of experts: a smaller one would protect everything and become LRU.
static int ec_victim(const aero_expert_cache *c) {
    int best = -1;
    double per_acquire = c->n_acquires ? (double)c->n_lookups / (double)c->n_acquires : 1.0;
    if (c->cfg.policy == AERO_EXPERT_EVICT_LFU_RECENT &&
        (double)c->st.entries >= 2.0 * per_acquire * c->cfg.n_layer) {
        uint64_t window = (uint64_t)c->cfg.n_layer;
        for (int i = 0; i < c->n_ent; i++) {
            const ec_entry *e = &c->ent[i];
            if (e->key < 0 || e->pins > 0 || e->last_use + window >= c->tick) continue;
            if (best < 0 || c->freq[e->key] < c->freq[c->ent[best].key] ||
                (c->freq[e->key] == c->freq[c->ent[best].key] && e->last_use < c->ent[best].last_use))
                best = i;
        }
        if (best >= 0) return best;
    }
    for (int i = 0; i < c->n_ent; i++) {
        const ec_entry *e = &c->ent[i];
        if (e->key < 0 || e->pins > 0) continue;
        if (best < 0) { best = i; continue; }
        const ec_entry *b = &c->ent[best];
        if (c->cfg.policy != AERO_EXPERT_EVICT_LRU && c->freq[e->key] != c->freq[b->key]) {
            if (c->freq[e->key] < c->freq[b->key]) best = i;
        } else if (e->last_use < b->last_use) {
            best = i;
        }
    }
    return best;
}

// A free entry index, growing the array when there is no hole.
static int ec_new_entry(aero_expert_cache *c) {
    for (int i = 0; i < c->n_ent; i++)
        if (c->ent[i].key < 0) return i;
    if (c->n_ent == c->cap_ent) {
        int cap = c->cap_ent ? c->cap_ent * 2 : 64;
        ec_entry *n = realloc(c->ent, sizeof(ec_entry) * (size_t)cap);
        if (!n) return -1;
        c->ent = n;
        c->cap_ent = cap;
    }
    c->ent[c->n_ent] = (ec_entry){.key = -1};
    return c->n_ent++;
}

// Ages the LFU counts so experts that were hot long ago do not stay forever.
static void ec_count(aero_expert_cache *c, int key) {
    if (++c->freq[key] == UINT32_MAX || ++c->freq_ops >= (uint64_t)c->n_keys * 16) {
        for (int i = 0; i < c->n_keys; i++) c->freq[i] >>= 1;
        c->freq_ops = 0;
    }
}

// Runs a batch of requests on the IO threads and waits; 0 or the errno of the first failure.
static int ec_run_batch(aero_expert_cache *c, int n_req, int *failed) {
    pthread_mutex_lock(&c->mu);
    c->n_req = n_req;
    c->next_req = 0;
    c->done_req = 0;
    c->err_req = -1;
    c->batch_id++;
    if (n_req > 1) pthread_cond_broadcast(&c->cv_work);
    // The caller reads too: a batch of one small request needs no thread handoff at all.
    while (c->next_req < c->n_req) {
        int i = c->next_req++;
        pthread_mutex_unlock(&c->mu);
        int e = ec_read(c, &c->req[i]);
        pthread_mutex_lock(&c->mu);
        if (e && c->err_req < 0) {
            c->err_req = i;
            c->err_errno = e;
        }
        c->done_req++;
    }
    while (c->done_req < c->n_req) pthread_cond_wait(&c->cv_done, &c->mu);
    int e = c->err_req >= 0 ? c->err_errno : 0;
    *failed = c->err_req;
    c->n_req = 0;
    c->next_req = 0;
    pthread_mutex_unlock(&c->mu);
    return e;
}

aero_status aero_expert_cache_acquire(aero_expert_cache *c, int layer, const int *experts, int n, int *n_ready,
                                      aero_error *err) {
    *n_ready = 0;
    if (n <= 0) return AERO_OK;
    c->tick++;
    c->n_acquires++;
    c->n_lookups += (uint64_t)n;
    int ready = 0, n_new = 0, n_hit = 0, n_req = 0;
    int *fresh = malloc(sizeof(int) * (size_t)n * 2); // entries inserted by this call, then keys it pinned
    if (!fresh) return aero_fail(err, AERO_ERR_NOMEM, "expert cache: out of memory");
    int *hit = fresh + n;
    aero_status st = AERO_OK;
    for (int i = 0; i < n; i++) {
        int key = ec_key(c, layer, experts[i]);
        if (key < 0) {
            st = aero_fail(err, AERO_ERR_INVALID, "layer %d expert %d: not in the model", layer, experts[i]);
            goto undo;
        }
        if (c->slot[key] >= 0) {
            ec_entry *e = &c->ent[c->slot[key]];
            e->pins++;
            e->last_use = c->tick;
            c->st.hits++;
            c->st.lookups++;
            ec_count(c, key);
            hit[n_hit++] = key;
            ready++;
            continue;
        }
        aero_expert_extent ext[3];
        st = c->cfg.locate(c->cfg.locate_ctx, layer, experts[i], ext, err);
        if (st != AERO_OK) goto undo;
        uint64_t bytes = 0, span[3], a0[3];
        for (int p = 0; p < 3; p++) {
            if (ext[p].file < 0 || ext[p].file >= c->cfg.n_files || ext[p].size == 0) {
                st = aero_fail(err, AERO_ERR_FORMAT, "layer %d expert %d: bad extent of part %d", layer, experts[i], p);
                goto undo;
            }
            a0[p] = ext[p].offset & ~(uint64_t)(EC_ALIGN - 1);
            uint64_t a1 = (ext[p].offset + ext[p].size + EC_ALIGN - 1) & ~(uint64_t)(EC_ALIGN - 1);
            span[p] = a1 - a0[p];
            bytes += span[p];
        }
        while (c->st.held_bytes + bytes > c->cfg.budget) {
            int v = ec_victim(c);
            if (v < 0) break;
            ec_drop(c, v);
            c->st.evictions++;
        }
        if (c->st.held_bytes + bytes > c->cfg.budget) break; // the rest does not fit beside what is pinned
        int ei = ec_new_entry(c);
        void *bp = NULL; // not zero-filled: the read overwrites every byte that is used
        uint8_t *buf = ei >= 0 && posix_memalign(&bp, EC_ALIGN, (size_t)bytes) == 0 ? bp : NULL;
        if (!buf) {
            st = aero_fail(err, AERO_ERR_NOMEM, "layer %d expert %d: cannot allocate %llu bytes", layer, experts[i],
                           (unsigned long long)bytes);
            goto undo;
        }
        ec_entry *e = &c->ent[ei];
        *e = (ec_entry){.key = key, .buf = buf, .bytes = bytes, .pins = 1, .last_use = c->tick};
        c->slot[key] = ei;
        c->st.held_bytes += bytes;
        if (c->st.held_bytes > c->st.peak_bytes) c->st.peak_bytes = c->st.held_bytes;
        c->st.entries++;
        uint64_t pos = 0;
        for (int p = 0; p < 3; p++) {
            e->part_off[p] = pos + (ext[p].offset - a0[p]);
            for (uint64_t o = 0; o < span[p]; o += EC_CHUNK) {
                if (n_req % 64 == 0) {
                    ec_req *nr = realloc(c->req, sizeof(ec_req) * (size_t)(n_req + 64));
                    if (!nr) {
                        st = aero_fail(err, AERO_ERR_NOMEM, "expert cache: out of memory");
                        fresh[n_new++] = ei;
                        goto undo;
                    }
                    c->req = nr;
                }
                uint64_t len = span[p] - o < EC_CHUNK ? span[p] - o : EC_CHUNK;
                uint64_t end_need = ext[p].offset + ext[p].size - a0[p]; // bytes of this span that must arrive
                uint64_t need = end_need <= o ? 0 : (end_need - o < len ? end_need - o : len);
                c->req[n_req++] = (ec_req){.file = ext[p].file, .off = a0[p] + o, .dst = buf + pos + o, .len = len,
                                           .need = need, .entry = ei};
            }
            pos += span[p];
        }
        fresh[n_new++] = ei;
        c->st.misses++;
        c->st.lookups++;
        c->st.bytes_read += bytes;
        ec_count(c, key);
        ready++;
    }
    if (ready == 0) {
        st = aero_fail(err, AERO_ERR_NOMEM, "layer %d: expert cache budget %llu bytes cannot hold expert %d beside "
                       "%llu pinned bytes", layer, (unsigned long long)c->cfg.budget, experts[0],
                       (unsigned long long)c->st.held_bytes);
        goto undo;
    }
    if (n_req > 0) {
        double t0 = aero_now();
        int failed = -1;
        int e = ec_run_batch(c, n_req, &failed);
        c->st.io_seconds += aero_now() - t0;
        c->st.batches++;
        if (e) {
            int bad = c->ent[c->req[failed].entry].key;
            st = aero_fail(err, AERO_ERR_IO, "layer %d expert %d: read of %s at %llu failed: %s", layer,
                           bad % c->cfg.n_expert, c->cfg.paths[c->req[failed].file],
                           (unsigned long long)c->req[failed].off, e == EIO ? "short read" : strerror(e));
            goto undo;
        }
    }
    free(fresh);
    *n_ready = ready;
    return AERO_OK;
undo:
    // Nothing of this call stays pinned: fresh entries go away, hits are unpinned.
    for (int j = 0; j < n_new; j++) ec_drop(c, fresh[j]);
    for (int j = 0; j < n_hit; j++) c->ent[c->slot[hit[j]]].pins--;
    free(fresh);
    return st;
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
