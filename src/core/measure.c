#include "measure.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

typedef struct {
    const uint64_t *buf;
    uint64_t n;
    uint64_t sums[64];
} sum_job;

// Sums this thread's share of the buffer (the sum keeps the compiler from dropping the reads).
static void sum_worker(void *arg, int ith, int nth) {
    sum_job *j = arg;
    long b, e;
    aero_pool_split((long)j->n, ith, nth, &b, &e);
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    long i = b;
    for (; i + 4 <= e; i += 4) {
        s0 += j->buf[i];
        s1 += j->buf[i + 1];
        s2 += j->buf[i + 2];
        s3 += j->buf[i + 3];
    }
    for (; i < e; i++) s0 += j->buf[i];
    if (ith < 64) j->sums[ith] = s0 + s1 + s2 + s3;
}

double aero_measure_mem_bw(aero_pool *pool, uint64_t bytes) {
    uint64_t n = bytes / 8;
    uint64_t *buf = aero_alloc_aligned(64, n * 8);
    if (!buf) return 0;
    for (uint64_t i = 0; i < n; i++) buf[i] = i;
    double bw = aero_measure_mem_bw_buf(pool, buf, n * 8);
    free(buf);
    return bw;
}

double aero_measure_mem_bw_buf(aero_pool *pool, const void *buffer, uint64_t bytes) {
    uint64_t n = bytes / 8;
    if (!n || ((uintptr_t)buffer & 7)) return 0;
    sum_job j = {.buf = buffer, .n = n};
    aero_pool_run(pool, sum_worker, &j); // warm up
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = aero_now();
        aero_pool_run(pool, sum_worker, &j);
        double t = aero_now() - t0;
        if (t > 0 && n * 8 / t > best) best = n * 8 / t;
    }
    volatile uint64_t sink = j.sums[0];
    (void)sink;
    return best;
}

#define DISK_REQ (8u << 20)
#define DISK_MAX_INFLIGHT 32

// One request of a probe: [off, off + len) of fds[file].
typedef struct {
    uint32_t file;
    uint64_t off, len;
} disk_req;

typedef struct {
    const disk_req *reqs;
    int n, next; // requests, and the next one to take
    const int *fds;
    const bool *direct; // per file: opened with O_DIRECT
    uint64_t req;       // the largest request: each reader's share of the buffer
    char *buf;          // caller's buffer (one request per reader), or NULL: each reader allocates
    pthread_mutex_t mu;
    uint64_t bytes; // read so far
    bool failed;
} disk_job;

typedef struct {
    disk_job *j;
    int index;
} disk_worker_arg;

// One reader of the probe: takes the next request from a shared cursor and reads it whole (or up to EOF).
static void *disk_worker(void *arg) {
    disk_worker_arg *a = arg;
    disk_job *j = a->j;
    void *own = j->buf ? NULL : aero_alloc_aligned(4096, j->req);
    char *buf = j->buf ? j->buf + (size_t)a->index * j->req : own;
    if (!buf) {
        pthread_mutex_lock(&j->mu);
        j->failed = true;
        pthread_mutex_unlock(&j->mu);
        return NULL;
    }
    for (;;) {
        pthread_mutex_lock(&j->mu);
        int i = j->failed ? j->n : j->next++;
        pthread_mutex_unlock(&j->mu);
        if (i >= j->n) break;
        const disk_req *r = &j->reqs[i];
        int fd = j->fds[r->file];
        bool direct = j->direct[r->file];
        uint64_t len = direct ? (r->len + 4095) & ~(uint64_t)4095 : r->len, done = 0;
        bool bad = false;
        while (done < len) {
            ssize_t got = pread(fd, buf + done, len - done, (off_t)(r->off + done));
            if (got < 0 && errno == EINTR) continue;
            if (got < 0) bad = true;
            if (got <= 0) break;
            done += (uint64_t)got;
            if (direct && (got & 4095)) break; // a short O_DIRECT read: the end of the file
        }
        if (!direct && done) posix_fadvise(fd, (off_t)r->off, (off_t)done, POSIX_FADV_DONTNEED);
        pthread_mutex_lock(&j->mu);
        if (bad || !done) j->failed = true;
        j->bytes += done < r->len ? done : r->len;
        pthread_mutex_unlock(&j->mu);
    }
    free(own);
    return NULL;
}

double aero_measure_disk(const aero_disk_probe *p) {
    uint64_t req = p->req_bytes ? (p->req_bytes + 4095) & ~(uint64_t)4095 : DISK_REQ;
    int inflight = p->inflight > 0 ? p->inflight : 4;
    if (inflight > DISK_MAX_INFLIGHT) inflight = DISK_MAX_INFLIGHT;
    if (p->buf) { // the requests in flight share the caller's buffer
        if ((uintptr_t)p->buf & 4095) return 0;
        if (p->buf_bytes < req) req = p->buf_bytes & ~(uint64_t)4095;
        if (!req) return 0;
        if ((uint64_t)inflight * req > p->buf_bytes) inflight = (int)(p->buf_bytes / req);
    }
    if (!p->n_paths) return 0;
    double bw = 0;
    int *fds = malloc(p->n_paths * sizeof *fds);
    bool *direct = calloc(p->n_paths, sizeof *direct);
    uint64_t *size = calloc(p->n_paths, sizeof *size);
    disk_req *reqs = NULL;
    uint32_t n_open = 0;
    if (!fds || !direct || !size) goto done;
    for (; n_open < p->n_paths; n_open++) { // a reader of its own, apart from the page cache where it can be
        uint32_t f = n_open;
        fds[f] = p->buffered ? -1 : open(p->paths[f], O_RDONLY | O_DIRECT | O_CLOEXEC);
        direct[f] = fds[f] >= 0;
        if (fds[f] < 0) fds[f] = open(p->paths[f], O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fds[f] < 0 || fstat(fds[f], &st)) {
            if (fds[f] >= 0) close(fds[f]);
            goto done;
        }
        size[f] = (uint64_t)st.st_size;
        if (!direct[f]) posix_fadvise(fds[f], 0, 0, POSIX_FADV_DONTNEED);
    }
    // the ranges (or the files whole) cut into requests
    aero_disk_range whole = {0};
    int n_ranges = p->ranges ? p->n_ranges : (int)p->n_paths;
    uint64_t n_all = 0, total = 0;
    for (int i = 0; i < n_ranges; i++) {
        const aero_disk_range *r = p->ranges ? &p->ranges[i] : (whole = (aero_disk_range){i, 0, size[i]}, &whole);
        if (r->file >= p->n_paths) goto done;
        n_all += (r->len + req - 1) / req;
    }
    if (!n_all || n_all > INT32_MAX) goto done;
    reqs = malloc(n_all * sizeof *reqs);
    if (!reqs) goto done;
    int n = 0;
    for (int i = 0; i < n_ranges; i++) {
        const aero_disk_range *r = p->ranges ? &p->ranges[i] : (whole = (aero_disk_range){i, 0, size[i]}, &whole);
        for (uint64_t o = 0; o < r->len; o += req) {
            uint64_t len = r->len - o < req ? r->len - o : req;
            reqs[n++] = (disk_req){.file = r->file, .off = r->off + o, .len = len};
            total += len;
        }
    }
    if (p->max_bytes && p->max_bytes < total) { // keep every k-th request: spread evenly over the ranges
        int k = (int)((total + p->max_bytes - 1) / p->max_bytes), m = 0;
        for (int i = 0; i < n; i += k) reqs[m++] = reqs[i];
        n = m;
    }
    disk_job j = {.reqs = reqs, .n = n, .fds = fds, .direct = direct, .req = req, .buf = p->buf};
    pthread_mutex_init(&j.mu, NULL);
    pthread_t th[DISK_MAX_INFLIGHT];
    disk_worker_arg args[DISK_MAX_INFLIGHT];
    int started = 0;
    double t0 = aero_now();
    for (int i = 0; i < inflight; i++) {
        args[i] = (disk_worker_arg){.j = &j, .index = started};
        if (pthread_create(&th[started], NULL, disk_worker, &args[i]) == 0) started++;
    }
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    double t = aero_now() - t0;
    pthread_mutex_destroy(&j.mu);
    if (started && !j.failed && t > 0) bw = j.bytes / t;
done:
    for (uint32_t f = 0; f < n_open; f++) close(fds[f]);
    free(reqs);
    free(size);
    free(direct);
    free(fds);
    return bw;
}

double aero_measure_disk_bw(const char *path, uint64_t max_bytes, int inflight) {
    aero_disk_probe p = {.paths = &path, .n_paths = 1, .max_bytes = max_bytes, .inflight = inflight};
    return aero_measure_disk(&p);
}
