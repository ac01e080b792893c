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
    sum_job j = {.buf = buf, .n = n};
    aero_pool_run(pool, sum_worker, &j); // warm up
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = aero_now();
        aero_pool_run(pool, sum_worker, &j);
        double t = aero_now() - t0;
        if (t > 0 && bytes / t > best) best = bytes / t;
    }
    volatile uint64_t sink = j.sums[0];
    (void)sink;
    free(buf);
    return best;
}

typedef struct {
    int fd;
    bool direct;
    uint64_t size, next;
    pthread_mutex_t mu;
    bool failed;
} disk_job;

#define DISK_REQ (8u << 20)

// Reads 8 MiB requests from a shared cursor until the range is done.
static void *disk_worker(void *arg) {
    disk_job *j = arg;
    void *buf = aero_alloc_aligned(4096, DISK_REQ);
    if (!buf) {
        j->failed = true;
        return NULL;
    }
    for (;;) {
        pthread_mutex_lock(&j->mu);
        uint64_t off = j->next;
        j->next += DISK_REQ;
        pthread_mutex_unlock(&j->mu);
        if (off >= j->size) break;
        size_t len = j->size - off < DISK_REQ ? (size_t)(j->size - off) : DISK_REQ;
        if (j->direct) len = (len + 4095) & ~(size_t)4095;
        ssize_t got = pread(j->fd, buf, len, (off_t)off);
        if (got <= 0) {
            j->failed = true;
            break;
        }
        if (!j->direct) posix_fadvise(j->fd, (off_t)off, got, POSIX_FADV_DONTNEED);
    }
    free(buf);
    return NULL;
}

double aero_measure_disk_bw(const char *path, uint64_t max_bytes, int inflight) {
    int fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
    bool direct = fd >= 0;
    if (fd < 0) fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return 0;
    }
    uint64_t size = (uint64_t)st.st_size < max_bytes ? (uint64_t)st.st_size : max_bytes;
    if (direct) size &= ~(uint64_t)4095;
    if (!direct) posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    if (inflight < 1) inflight = 1;
    if (inflight > 16) inflight = 16;
    disk_job j = {.fd = fd, .direct = direct, .size = size};
    pthread_mutex_init(&j.mu, NULL);
    pthread_t th[16];
    double t0 = aero_now();
    int started = 0;
    for (int i = 0; i < inflight; i++)
        if (pthread_create(&th[i], NULL, disk_worker, &j) == 0) started++;
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    double t = aero_now() - t0;
    pthread_mutex_destroy(&j.mu);
    close(fd);
    return j.failed || t <= 0 || size == 0 ? 0 : size / t;
}
