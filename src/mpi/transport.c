// MPI point-to-point with deadlines (transport.h). Every wait polls (MPI_Test / MPI_Improbe) instead of blocking,
// so rank 0 can notice between polls that a rank stopped sending heartbeats: Open MPI reports no error for a
// peer that died on shared memory, and a blocking call would wait forever.
#include "transport.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/util.h"

static int g_rank = 0, g_size = 1;
static double g_wait_s;
static unsigned long long g_bytes, g_recv, g_msgs;

int aero_mpi_rank(void) { return g_rank; }
int aero_mpi_size(void) { return g_size; }

void aero_mpi_counters(double *wait_s, unsigned long long *bytes_sent, unsigned long long *bytes_recv,
                       unsigned long long *messages) {
    if (wait_s) *wait_s = g_wait_s;
    if (bytes_sent) *bytes_sent = g_bytes;
    if (bytes_recv) *bytes_recv = g_recv;
    if (messages) *messages = g_msgs;
}

void aero_mpi_counters_reset(void) {
    g_wait_s = 0;
    g_bytes = g_recv = g_msgs = 0;
}

double aero_mpi_dead_after(void) {
    const char *e = getenv("AERO_MPI_TIMEOUT");
    double t = e ? atof(e) : 0;
    return t > 0 ? t : 3.0;
}

#ifdef AERO_MPI
#include <mpi.h>

#define TAG_DATA 1
#define TAG_HB 2
#define PIECE ((size_t)1 << 30)

static MPI_Comm g_comm = MPI_COMM_NULL;
static bool g_joined, g_heartbeats;
static double *g_last;       // rank 0: when each rank was last heard from (under g_last_mu)
static pthread_mutex_t g_last_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_t g_hb_thread;   // workers: the heartbeat sender; rank 0: the drain
static volatile int g_hb_stop;
static bool g_hb_running;
static void *drain_loop(void *arg);

bool aero_mpi_built(void) { return true; }

// Whether mpirun (Open MPI, MPICH, or a PMIx launcher) started this process: only then is MPI_Init worth its
// cost and its side effects, so a plain `aerollm run` stays a plain process.
static bool launched_by_mpirun(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

aero_status aero_mpi_init(int *argc, char ***argv, aero_error *err) {
    if (g_joined || !launched_by_mpirun()) return AERO_OK;
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS)
        return aero_fail(err, AERO_ERR_IO, "MPI_Init_thread failed");
    g_joined = true;
    MPI_Comm_dup(MPI_COMM_WORLD, &g_comm);
    MPI_Comm_set_errhandler(g_comm, MPI_ERRORS_RETURN); // a broken link is a status, not an abort
    MPI_Comm_rank(g_comm, &g_rank);
    MPI_Comm_size(g_comm, &g_size);
    // the workers' heartbeat thread needs MPI from two threads at once; without it a dead rank is left to mpirun
    g_heartbeats = provided >= MPI_THREAD_MULTIPLE;
    if (g_size > 1) { // rank 0 watches every worker, a worker watches rank 0
        g_last = calloc((size_t)g_size, sizeof *g_last);
        if (!g_last) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
        for (int r = 0; r < g_size; r++) g_last[r] = aero_now();
    }
    if (g_rank == 0 && g_size > 1) {
        // heartbeats are drained all the time, so an idle server neither queues them without end nor mistakes a
        // long pass of its own for a silent rank
        if (g_heartbeats) {
            g_hb_stop = 0;
            if (pthread_create(&g_hb_thread, NULL, drain_loop, NULL))
                return aero_fail(err, AERO_ERR_IO, "pipeline: cannot start the heartbeat thread");
            g_hb_running = true;
        }
    }
    return AERO_OK;
}

void aero_mpi_finalize(void) {
    if (!g_joined) return;
    aero_mpi_heartbeat_stop();
    MPI_Comm_free(&g_comm);
    MPI_Finalize();
    free(g_last);
    g_last = NULL;
    g_joined = false;
}

void aero_mpi_abort(int code) {
    if (g_joined) MPI_Abort(MPI_COMM_WORLD, code);
}

// The text of an MPI error code, in a status.
static aero_status mpi_fail(aero_error *err, int rc, const char *what, int peer) {
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return aero_fail(err, AERO_ERR_IO, "pipeline: %s rank %d failed: %s", what, peer, msg);
}

// Takes the heartbeats that arrived: rank 0 the workers', a worker rank 0's (matched probes: rank 0's drain
// thread and a wait may both call this).
static void drain(void) {
    for (;;) {
        int flag = 0;
        MPI_Message msg;
        MPI_Status st;
        if (MPI_Improbe(MPI_ANY_SOURCE, TAG_HB, g_comm, &flag, &msg, &st) != MPI_SUCCESS || !flag) break;
        MPI_Mrecv(NULL, 0, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
        pthread_mutex_lock(&g_last_mu);
        g_last[st.MPI_SOURCE] = aero_now();
        pthread_mutex_unlock(&g_last_mu);
    }
}

// Rank 0's heartbeat thread: every period, whatever the main thread does, it takes the workers' heartbeats and
// sends its own (a worker left waiting by a rank 0 that died ends instead of hanging).
static void *drain_loop(void *arg) {
    (void)arg;
    while (!g_hb_stop) {
        drain();
        for (int r = 1; r < g_size; r++) MPI_Send(NULL, 0, MPI_BYTE, r, TAG_HB, g_comm);
        struct timespec ts = {0, (long)(AERO_MPI_HEARTBEAT_S * 1e9)};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

// Fails a wait when a rank it watches has been silent too long (rank 0: any worker; a worker: rank 0).
static aero_status watch(aero_error *err) {
    if (!g_heartbeats || g_size < 2) return AERO_OK;
    drain();
    double now = aero_now(), limit = aero_mpi_dead_after();
    pthread_mutex_lock(&g_last_mu);
    int dead = -1;
    for (int r = g_rank ? 0 : 1; r < (g_rank ? 1 : g_size) && dead < 0; r++)
        if (now - g_last[r] > limit) dead = r;
    double silent = dead >= 0 ? now - g_last[dead] : 0;
    pthread_mutex_unlock(&g_last_mu);
    if (dead >= 0)
        return aero_fail(err, AERO_ERR_IO, "pipeline: rank %d sent no heartbeat for %.1f s: it died or its link broke",
                         dead, silent);
    return AERO_OK;
}

void aero_mpi_watch_reset(void) {
    if (g_rank != 0 || !g_last) return;
    if (g_hb_running) { // the drain thread keeps the times: only the start needs setting
        drain();
        return;
    }
    pthread_mutex_lock(&g_last_mu);
    for (int r = 0; r < g_size; r++) g_last[r] = aero_now();
    pthread_mutex_unlock(&g_last_mu);
}

// Between polls: spin briefly (a reply within microseconds on one machine), then sleep in steps that grow to 1 ms
// (an idle worker waiting for the next request wakes 1000 times a second at most).
static void backoff(int *polls) {
    if (*polls < 1 << 30) ++*polls;
    if (*polls < 2000) return;
    struct timespec ts = {0, *polls < 4000 ? 20000 : *polls < 20000 ? 200000 : 1000000};
    nanosleep(&ts, NULL);
}

// Waits for a request, watching the heartbeats.
static aero_status wait_req(MPI_Request *r, const char *what, int peer, aero_error *err) {
    double t0 = aero_now();
    int polls = 0;
    for (;;) {
        int done = 0, rc = MPI_Test(r, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_fail(err, rc, what, peer);
        if (done) break;
        if (watch(err)) {
            g_wait_s += aero_now() - t0;
            return err->code;
        }
        backoff(&polls);
    }
    g_wait_s += aero_now() - t0;
    return AERO_OK;
}

typedef struct {
    MPI_Request req;
    uint64_t total; // the header piece's payload
    int to;
} pending;
static pending g_pending[AERO_MPI_MAX_PENDING];
static int g_n_pending;

// Posts the header (the total size) and the pieces of one message.
static aero_status post(int to, const void *buf, size_t n, aero_error *err) {
    size_t pieces = (n + PIECE - 1) / PIECE;
    if (g_n_pending + 1 + (int)pieces > AERO_MPI_MAX_PENDING)
        return aero_fail(err, AERO_ERR_INVALID, "pipeline: too many sends in flight");
    pending *h = &g_pending[g_n_pending++];
    h->total = n;
    h->to = to;
    int rc = MPI_Isend(&h->total, 8, MPI_BYTE, to, TAG_DATA, g_comm, &h->req);
    if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "send to", to);
    for (size_t off = 0; off < n; off += PIECE) {
        pending *p = &g_pending[g_n_pending++];
        p->to = to;
        int len = (int)(n - off < PIECE ? n - off : PIECE);
        rc = MPI_Isend((const char *)buf + off, len, MPI_BYTE, to, TAG_DATA, g_comm, &p->req);
        if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "send to", to);
    }
    g_bytes += n;
    g_msgs++;
    return AERO_OK;
}

aero_status aero_mpi_send_start(int to, const void *buf, size_t n, aero_error *err) {
    if (!g_joined) return aero_fail(err, AERO_ERR_INVALID, "pipeline: not in an MPI job");
    return post(to, buf, n, err);
}

aero_status aero_mpi_wait_sends(aero_error *err) {
    aero_status st = AERO_OK;
    for (int i = 0; i < g_n_pending && !st; i++) st = wait_req(&g_pending[i].req, "send to", g_pending[i].to, err);
    g_n_pending = 0; // after a failure the job is over: the requests are abandoned with it
    return st;
}

aero_status aero_mpi_send(int to, const void *buf, size_t n, aero_error *err) {
    if (aero_mpi_send_start(to, buf, n, err)) return err->code;
    return aero_mpi_wait_sends(err);
}

// Receives one piece of known source into buf (cap bytes), polling with the heartbeat watch.
static aero_status recv_piece(int from, void *buf, size_t cap, size_t *got, aero_error *err) {
    double t0 = aero_now();
    int polls = 0;
    for (;;) {
        int flag = 0;
        MPI_Message msg;
        MPI_Status st;
        int rc = MPI_Improbe(from, TAG_DATA, g_comm, &flag, &msg, &st);
        if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "receive from", from);
        if (flag) {
            int count = 0;
            MPI_Get_count(&st, MPI_BYTE, &count);
            if ((size_t)count > cap) {
                MPI_Mrecv(NULL, 0, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
                return aero_fail(err, AERO_ERR_FORMAT, "pipeline: a piece of %d bytes from rank %d exceeds %zu", count,
                                 from, cap);
            }
            rc = MPI_Mrecv(buf, count, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
            g_wait_s += aero_now() - t0;
            if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "receive from", from);
            *got = (size_t)count;
            return AERO_OK;
        }
        if (watch(err)) {
            g_wait_s += aero_now() - t0;
            return err->code;
        }
        backoff(&polls);
    }
}

aero_status aero_mpi_recv(int from, void **buf, size_t *n, aero_error *err) {
    *buf = NULL;
    *n = 0;
    if (!g_joined) return aero_fail(err, AERO_ERR_INVALID, "pipeline: not in an MPI job");
    uint64_t total = 0;
    size_t got = 0;
    if (recv_piece(from, &total, 8, &got, err)) return err->code;
    if (got != 8) return aero_fail(err, AERO_ERR_FORMAT, "pipeline: a message header of %zu bytes from rank %d", got, from);
    char *b = malloc(total ? total : 1);
    if (!b) return aero_fail(err, AERO_ERR_NOMEM, "pipeline: out of memory for a message of %llu bytes",
                             (unsigned long long)total);
    for (size_t off = 0; off < total; off += got) {
        if (recv_piece(from, b + off, total - off < PIECE ? total - off : PIECE, &got, err)) {
            free(b);
            return err->code;
        }
    }
    *buf = b;
    *n = total;
    g_recv += total;
    return AERO_OK;
}

// The heartbeat thread's loop.
static void *heartbeat(void *arg) {
    (void)arg;
    while (!g_hb_stop) {
        MPI_Send(NULL, 0, MPI_BYTE, 0, TAG_HB, g_comm);
        struct timespec ts = {0, (long)(AERO_MPI_HEARTBEAT_S * 1e9)};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

aero_status aero_mpi_heartbeat_start(aero_error *err) {
    if (!g_joined || g_rank == 0 || !g_heartbeats || g_hb_running) return AERO_OK; // rank 0's drain starts at init
    g_hb_stop = 0;
    if (pthread_create(&g_hb_thread, NULL, heartbeat, NULL))
        return aero_fail(err, AERO_ERR_IO, "pipeline: cannot start the heartbeat thread");
    g_hb_running = true;
    return AERO_OK;
}

void aero_mpi_heartbeat_stop(void) {
    if (!g_hb_running) return;
    g_hb_stop = 1;
    pthread_join(g_hb_thread, NULL);
    g_hb_running = false;
}

#else // built without MPI: a job of one rank

bool aero_mpi_built(void) { return false; }
// Started by mpirun with several ranks, every rank would run the whole command on its own: refused instead.
aero_status aero_mpi_init(int *argc, char ***argv, aero_error *err) {
    const char *n = getenv("OMPI_COMM_WORLD_SIZE");
    if (!n) n = getenv("PMI_SIZE");
    if (n && atoi(n) > 1)
        return aero_fail(err, AERO_ERR_UNSUPPORTED, "started by mpirun with %s ranks, but built without MPI (make MPI=1)",
                         n);
    return AERO_OK;
}
void aero_mpi_finalize(void) {}
void aero_mpi_abort(int code) { (void)code; }
aero_status aero_mpi_send(int to, const void *buf, size_t n, aero_error *err) {
    return aero_fail(err, AERO_ERR_UNSUPPORTED, "pipeline: built without MPI (make MPI=1)");
}
aero_status aero_mpi_send_start(int to, const void *buf, size_t n, aero_error *err) {
    return aero_mpi_send(to, buf, n, err);
}
aero_status aero_mpi_wait_sends(aero_error *err) { return AERO_OK; }
aero_status aero_mpi_recv(int from, void **buf, size_t *n, aero_error *err) {
    *buf = NULL;
    *n = 0;
    return aero_mpi_send(from, NULL, 0, err);
}
aero_status aero_mpi_heartbeat_start(aero_error *err) { return AERO_OK; }
void aero_mpi_heartbeat_stop(void) {}
void aero_mpi_watch_reset(void) {}

#endif
