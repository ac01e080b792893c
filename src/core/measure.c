#include "measure.h"

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

typedef struct {
    int fd;
    bool direct;
    uint64_t start, end, next, req, stride; // requests at start, start + stride, ... below end
    char *buf;               // caller's buffer (one request per thread), or NULL: each thread allocates
    pthread_mutex_t mu;
    bool failed;
} disk_job;

typedef struct {
    disk_job *j;
    int index;
} disk_worker_arg;

// Reads requests from a shared cursor until the range is done.
static void *disk_worker(void *arg) {
    disk_worker_arg *a = arg;
    disk_job *j = a->j;
    void *own = j->buf ? NULL : aero_alloc_aligned(4096, j->req);
    char *buf = j->buf ? j->buf + (size_t)a->index * j->req : own;
    if (!buf) {
        j->failed = true;
        return NULL;
    }
    for (;;) {
        pthread_mutex_lock(&j->mu);
        uint64_t off = j->next;
        j->next += j->stride;
        pthread_mutex_unlock(&j->mu);
        if (off >= j->end) break;
        size_t len = j->end - off < j->req ? (size_t)(j->end - off) : j->req;
        if (j->direct) len = (len + 4095) & ~(size_t)4095;
        ssize_t got = pread(j->fd, buf, len, (off_t)off);
        if (got <= 0) {
            j->failed = true;
            break;
        }
        if (!j->direct) posix_fadvise(j->fd, (off_t)off, got, POSIX_FADV_DONTNEED);
    }
    free(own);
    return NULL;
}

double aero_measure_disk_bw(const char *path, uint64_t max_bytes, int inflight) {
    return aero_measure_disk_bw_at(path, 0, UINT64_MAX, max_bytes, inflight, DISK_REQ, NULL, 0);
}

double aero_measure_disk_bw_at(const char *path, uint64_t offset, uint64_t span, uint64_t max_bytes, int inflight,
                               uint64_t req, void *buf, uint64_t buf_bytes) {
    req = (req + 4095) & ~(uint64_t)4095;
    if (!req) req = DISK_REQ;
    if (inflight < 1) inflight = 1;
    if (inflight > 16) inflight = 16;
    if (buf) { // the requests in flight share the caller's buffer
        if ((uintptr_t)buf & 4095) return 0;
        if (buf_bytes < req) req = buf_bytes & ~(uint64_t)4095;
        if (!req) return 0;
        if ((uint64_t)inflight * req > buf_bytes) inflight = (int)(buf_bytes / req);
    }
    int fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
    bool direct = fd >= 0;
    if (fd < 0) fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return 0;
    }
    offset &= ~(uint64_t)4095;
    uint64_t size = (uint64_t)st.st_size;
    uint64_t end = offset < size && size - offset > span ? offset + span : size;
    if (direct) end &= ~(uint64_t)4095;
    if (end <= offset || max_bytes < req) {
        close(fd);
        return 0;
    }
    // the whole span, or max_bytes of requests spread evenly over it
    uint64_t n_req = (end - offset + req - 1) / req, stride = req, total = end - offset;
    if (max_bytes < end - offset) {
        n_req = max_bytes / req;
        stride = ((end - offset) / n_req) & ~(uint64_t)4095;
        if (stride < req) stride = req;
        total = 0;
        for (uint64_t o = offset; o < end && o < offset + n_req * stride; o += stride) total += end - o < req ? end - o : req;
    }
    if (!direct) posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    disk_job j = {.fd = fd, .direct = direct, .start = offset, .end = end, .next = offset, .req = req, .stride = stride,
                  .buf = buf};
    if (stride > req) j.end = offset + n_req * stride < end ? offset + n_req * stride : end;
    pthread_mutex_init(&j.mu, NULL);
    pthread_t th[16];
    disk_worker_arg args[16];
    double t0 = aero_now();
    int started = 0;
    for (int i = 0; i < inflight; i++) {
        args[i] = (disk_worker_arg){.j = &j, .index = started};
        if (pthread_create(&th[started], NULL, disk_worker, &args[i]) == 0) started++;
    }
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    double t = aero_now() - t0;
    pthread_mutex_destroy(&j.mu);
    close(fd);
    return j.failed || t <= 0 || !started ? 0 : total / t;
}
