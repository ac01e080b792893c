// Disk side of the streamer: the model files (O_DIRECT where the file system allows it, else buffered reads
// followed by POSIX_FADV_DONTNEED so that streamed bytes do not fill the page cache), and IO threads that serve
// read jobs chunk by chunk in queue order, so that several large requests are in flight at once.
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stream_internal.h"

// Opens every model file twice: O_DIRECT for streaming (when the file system takes it), buffered for the rest.
aero_status st_files_open(aero_stream *s, aero_error *err) {
    const aero_gguf *g = s->g;
    s->files = calloc(g->n_files ? g->n_files : 1, sizeof *s->files);
    if (!s->files) return aero_fail(err, AERO_ERR_NOMEM, "stream: out of memory");
    s->n_files = g->n_files;
    void *probe = aero_alloc_aligned(ST_ALIGN, ST_ALIGN);
    if (!probe) return aero_fail(err, AERO_ERR_NOMEM, "stream: out of memory");
    for (uint32_t i = 0; i < g->n_files; i++) {
        st_file *f = &s->files[i];
        f->fd = f->fd_direct = -1;
        f->path = g->files[i].path;
        f->size = g->files[i].size;
        f->fd = open(f->path, O_RDONLY | O_CLOEXEC);
        if (f->fd < 0) {
            free(probe);
            return aero_fail(err, AERO_ERR_IO, "%s: cannot open for reading: %s", f->path, strerror(errno));
        }
        // buffered reads are exactly the requests: kernel readahead would cache pages past what is dropped after use
        posix_fadvise(f->fd, 0, 0, POSIX_FADV_RANDOM);
        if (s->params.no_direct) continue;
        f->fd_direct = open(f->path, O_RDONLY | O_CLOEXEC | O_DIRECT);
        // some file systems accept the flag at open and refuse the reads: probe once
        if (f->fd_direct >= 0 && pread(f->fd_direct, probe, ST_ALIGN, 0) < 0 && errno == EINVAL) {
            close(f->fd_direct);
            f->fd_direct = -1;
        }
    }
    free(probe);
    s->plan.direct = s->n_files > 0;
    for (uint32_t i = 0; i < s->n_files; i++)
        if (s->files[i].fd_direct < 0) s->plan.direct = false;
    return AERO_OK;
}

// Closes the files, leaving nothing of them in the page cache after buffered reads.
void st_files_close(aero_stream *s) {
    for (uint32_t i = 0; s->files && i < s->n_files; i++) st_drop_cache(s, i, 0, 0);
    for (uint32_t i = 0; s->files && i < s->n_files; i++) {
        if (s->files[i].fd >= 0) close(s->files[i].fd);
        if (s->files[i].fd_direct >= 0) close(s->files[i].fd_direct);
    }
    free(s->files);
    s->files = NULL;
}

// Reads [off, off + len) (aligned) into dst; a short read is an error only when it ends before `need` bytes.
static aero_status read_chunk(aero_stream *s, uint32_t file, uint64_t off, uint64_t len, uint64_t need, char *dst,
                              aero_error *err) {
    st_file *f = &s->files[file];
    bool direct = f->fd_direct >= 0;
    int fd = direct ? f->fd_direct : f->fd;
    uint64_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, dst + done, len - done, (off_t)(off + done));
        if (n < 0) {
            if (errno == EINTR) continue;
            return aero_fail(err, AERO_ERR_IO, "%s: reading %llu bytes at offset %llu: %s", f->path,
                             (unsigned long long)(len - done), (unsigned long long)(off + done), strerror(errno));
        }
        if (n == 0) break;
        done += (uint64_t)n;
        if (direct && (n & (ST_ALIGN - 1))) break; // the end of the file inside this request
    }
    if (!direct && done) posix_fadvise(fd, (off_t)off, (off_t)done, POSIX_FADV_DONTNEED);
    if (done < need)
        return aero_fail(err, AERO_ERR_IO,
                         "%s: the file ends at byte %llu but tensor data runs to byte %llu "
                         "(was the file truncated while in use?)",
                         f->path, (unsigned long long)(off + done), (unsigned long long)(off + need));
    return AERO_OK;
}

// Keeps buffered streaming out of the page cache, including folios a single request covered only in part.
void st_drop_cache(aero_stream *s, uint32_t file, uint64_t off, uint64_t len) {
    const uint64_t huge = 2u << 20; // the largest page-cache folio: DONTNEED skips folios it covers only in part
    st_file *f = &s->files[file];
    if (f->fd < 0 || f->fd_direct >= 0) return;
    uint64_t a = off / huge * huge, b = len ? (off + len + huge - 1) / huge * huge : 0;
    posix_fadvise(f->fd, (off_t)a, b ? (off_t)(b - a) : 0, POSIX_FADV_DONTNEED);
}

aero_status st_read_sync(aero_stream *s, uint32_t file, uint64_t off, uint64_t len, uint64_t need, void *buf,
                         aero_error *err) {
    return read_chunk(s, file, off, len, need, buf, err);
}

// The IO busy clock including the interval running now, for per-pass figures.
double st_io_busy_now(const aero_stream *s, double now) {
    return s->io_busy_total + (s->inflight > 0 ? now - s->busy_since : 0);
}

// Unlinks a job from the queue (lock held).
static void dequeue(aero_stream *s, st_job *j) {
    st_job **pp = &s->q_head, *prev = NULL;
    while (*pp && *pp != j) prev = *pp, pp = &(*pp)->next;
    if (!*pp) return;
    *pp = j->next;
    if (s->q_tail == j) s->q_tail = prev;
    j->next = NULL;
    j->queued = false;
}

// Hands a job to the IO threads; a job with nothing to read is complete at once.
void st_job_enqueue(aero_stream *s, st_job *j) {
    j->cur_range = 0;
    j->cur_off = 0;
    j->inflight = 0;
    j->failed = false;
    j->errmsg[0] = 0;
    j->next = NULL;
    j->complete = j->n_ranges == 0;
    j->queued = !j->complete;
    if (!j->queued) return;
    if (s->q_tail) s->q_tail->next = j;
    else s->q_head = j;
    s->q_tail = j;
    pthread_cond_broadcast(&s->cv_work);
}

// Makes ring memory reusable: no queued chunk will start and none is still being read.
void st_io_cancel_all(aero_stream *s) {
    while (s->q_head) {
        st_job *j = s->q_head;
        dequeue(s, j);
        if (j->inflight == 0) j->complete = true;
    }
    while (s->inflight > 0) pthread_cond_wait(&s->cv_done, &s->mu);
}

// An IO thread: takes the next chunk of the first queued job, reads it without the lock, reports back.
static void *io_main(void *arg) {
    aero_stream *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stopping && !s->q_head) pthread_cond_wait(&s->cv_work, &s->mu);
        if (s->stopping) break;
        st_job *j = s->q_head;
        const st_range *r = &j->ranges[j->cur_range];
        uint64_t off = r->off + j->cur_off;
        uint64_t len = r->len - j->cur_off < s->chunk ? r->len - j->cur_off : s->chunk;
        uint64_t need = r->need_end > off ? r->need_end - off : 0;
        if (need > len) need = len;
        char *dst = j->mem + r->mem_off + j->cur_off;
        uint32_t file = r->file;
        j->cur_off += len;
        if (j->cur_off >= r->len) j->cur_range++, j->cur_off = 0;
        if (j->cur_range >= j->n_ranges) dequeue(s, j);
        j->inflight++;
        if (s->inflight++ == 0) s->busy_since = aero_now();
        pthread_mutex_unlock(&s->mu);

        aero_error e = {0};
        aero_status st = read_chunk(s, file, off, len, need, dst, &e);

        pthread_mutex_lock(&s->mu);
        if (--s->inflight == 0) s->io_busy_total += aero_now() - s->busy_since;
        s->bytes_read_total += len;
        j->inflight--;
        if (st && !j->failed) {
            j->failed = true;
            snprintf(j->errmsg, sizeof j->errmsg, "%s", e.msg);
            dequeue(s, j); // the rest of a failed job is not worth reading
        }
        if (!j->queued && j->inflight == 0) j->complete = true;
        pthread_cond_broadcast(&s->cv_done);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

// Starts the IO threads: one blocking request in flight each.
aero_status st_io_start(aero_stream *s, aero_error *err) {
    for (int i = 0; i < s->io_threads; i++) {
        int rc = pthread_create(&s->threads[i], NULL, io_main, s);
        if (rc) return aero_fail(err, AERO_ERR_NOMEM, "stream: cannot start IO thread %d: %s", i, strerror(rc));
        s->n_threads_started++;
    }
    return AERO_OK;
}

// Stops the IO threads after the reads in flight finish (close, or nothing left to stream).
void st_io_stop(aero_stream *s) {
    if (!s->mutex_ready) return;
    pthread_mutex_lock(&s->mu);
    st_io_cancel_all(s);
    s->stopping = true;
    pthread_cond_broadcast(&s->cv_work);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->n_threads_started; i++) pthread_join(s->threads[i], NULL);
    s->n_threads_started = 0;
}
