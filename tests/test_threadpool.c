// The thread pool on its own: every thread runs each job once, jobs never get lost between spinning and sleeping
// workers, several callers share one pool, a job may call aero_pool_run on its own pool (runs inline) or another,
// and a job finishes while a worker is frozen (descheduled on a busy machine): the running threads take its share.
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "core/cpu.h"
#include "core/threadpool.h"

#define MAXT 64

// One job's record: which (ith, nth) pairs ran.
typedef struct {
    _Atomic int calls[MAXT];
    _Atomic int bad_nth;
    int want_nth;
} tally;

static void tally_fn(void *ctx, int ith, int nth) {
    tally *t = ctx;
    if (nth != t->want_nth || ith < 0 || ith >= nth || ith >= MAXT) {
        atomic_fetch_add(&t->bad_nth, 1);
        return;
    }
    atomic_fetch_add(&t->calls[ith], 1);
}

// Runs one job and checks each of the nth shares ran exactly once.
static bool run_and_check(aero_pool *p, int nth) {
    tally t;
    memset(&t, 0, sizeof t);
    t.want_nth = nth;
    aero_pool_run(p, tally_fn, &t);
    bool ok = atomic_load(&t.bad_nth) == 0;
    for (int i = 0; i < MAXT; i++) ok = ok && atomic_load(&t.calls[i]) == (i < nth ? 1 : 0);
    return ok;
}

static void test_split(void) {
    for (long n = 0; n <= 100; n++)
        for (int nth = 1; nth <= 9; nth++) {
            long next = 0, lo = n, hi = 0;
            for (int i = 0; i < nth; i++) {
                long b, e;
                aero_pool_split(n, i, nth, &b, &e);
                CHECK(b == next && e >= b);
                next = e;
                if (e - b < lo) lo = e - b;
                if (e - b > hi) hi = e - b;
            }
            CHECKF(next == n && hi - lo <= 1, "split %ld over %d", n, nth);
        }
    long b, e;
    aero_pool_split(10, 0, 0, &b, &e); // nth < 1 counts as one thread
    CHECK(b == 0 && e == 10);
}

static void test_sizes(void) {
    CHECK(run_and_check(NULL, 1));
    CHECK(aero_pool_size(NULL) == 1);
    aero_pool *one = aero_pool_new(1);
    CHECK(one && aero_pool_size(one) == 1 && run_and_check(one, 1));
    aero_pool_free(one);
    aero_pool *all = aero_pool_new(0);
    CHECK(all && aero_pool_size(all) == aero_cpu_count());
    aero_pool_free(all);
}

// Back-to-back jobs (workers still spinning) and jobs after a pause (workers asleep on the condition variable):
// the pause is what this covers, not a wait for a state.
static void test_many_jobs(void) {
    for (int n = 2; n <= 8; n *= 2) {
        aero_pool *p = aero_pool_new(n);
        CHECK(p != NULL);
        if (!p) continue;
        int bad = 0;
        for (int rep = 0; rep < 3000; rep++) {
            if (!run_and_check(p, n)) bad++;
            if (rep % 500 == 499) usleep(5000);
        }
        CHECKF(bad == 0, "%d of 3000 jobs on %d threads lost or repeated a share", bad, n);
        aero_pool_free(p);
    }
}

typedef struct {
    aero_pool *pool;
    int nth, bad;
} caller_arg;

static void *caller(void *v) {
    caller_arg *a = v;
    for (int i = 0; i < 500; i++)
        if (!run_and_check(a->pool, a->nth)) a->bad++;
    return NULL;
}

// Several threads calling aero_pool_run on one pool: the jobs run one after another, each complete.
static void test_shared_callers(void) {
    aero_pool *p = aero_pool_new(3);
    pthread_t th[4];
    caller_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (caller_arg){p, 3, 0};
        pthread_create(&th[i], NULL, caller, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECKF(args[i].bad == 0, "caller %d: %d incomplete jobs", i, args[i].bad);
    }
    aero_pool_free(p);
}

typedef struct {
    aero_pool *outer, *other;
    _Atomic int inner_ok, inner_bad;
} nest;

static void inner_fn(void *ctx, int ith, int nth) {
    nest *n = ctx;
    if (ith == 0 && nth == 1) atomic_fetch_add(&n->inner_ok, 1);
    else atomic_fetch_add(&n->inner_bad, 1);
}

// Every share of the outer job runs a job on the same pool: it must run inline as (0, 1), not deadlock.
static void same_pool_fn(void *ctx, int ith, int nth) {
    nest *n = ctx;
    aero_pool_run(n->outer, inner_fn, n);
}

// Share 0 of the outer job runs a job on another pool, which gets all of that pool's threads.
static void other_pool_fn(void *ctx, int ith, int nth) {
    nest *n = ctx;
    if (ith == 0 && !run_and_check(n->other, aero_pool_size(n->other))) atomic_fetch_add(&n->inner_bad, 1);
}

static void test_reentrant(void) {
    alarm(120); // a deadlock fails the test instead of hanging the suite
    for (int threads = 2; threads <= 4; threads++) {
        nest n;
        memset(&n, 0, sizeof n);
        n.outer = aero_pool_new(threads);
        n.other = aero_pool_new(3);
        for (int rep = 0; rep < 200; rep++) aero_pool_run(n.outer, same_pool_fn, &n);
        CHECKF(atomic_load(&n.inner_ok) == 200 * threads && atomic_load(&n.inner_bad) == 0,
               "nested on the same pool of %d: %d inline runs (want %d), %d wrong", threads, atomic_load(&n.inner_ok),
               200 * threads, atomic_load(&n.inner_bad));
        for (int rep = 0; rep < 200; rep++) aero_pool_run(n.outer, other_pool_fn, &n);
        CHECK(atomic_load(&n.inner_bad) == 0);
        CHECK(run_and_check(n.outer, threads)); // the pool is still usable after nested calls
        aero_pool_free(n.other);
        aero_pool_free(n.outer);
    }
    alarm(0);
}

// The worker the frozen-worker test stops: who it is, and the semaphores its signal handler waits on.
static struct {
    _Atomic pthread_t thread;
    _Atomic int tid, set;
    pthread_t caller;
    sem_t frozen, release;
} g_worker;

// Records the first thread other than the caller that runs a share. The caller's share waits (up to 0.1 s) for
// that, or it would take the other share too before the worker wakes.
static void find_worker_fn(void *ctx, int ith, int nth) {
    (void)ctx, (void)ith, (void)nth;
    if (pthread_equal(pthread_self(), g_worker.caller)) {
        for (int i = 0; i < 100 && !atomic_load(&g_worker.set); i++) usleep(1000);
        return;
    }
    int expect = 0;
    if (atomic_compare_exchange_strong(&g_worker.set, &expect, 1)) {
        atomic_store(&g_worker.thread, pthread_self());
        atomic_store(&g_worker.tid, (int)syscall(SYS_gettid));
    }
}

// SIGUSR1 on the worker: it stays in the handler until released, as if the scheduler never ran it.
static void freeze_handler(int sig) {
    (void)sig;
    sem_post(&g_worker.frozen);
    while (sem_wait(&g_worker.release) != 0) {
    }
}

// The scheduler state of one thread of this process ('S': asleep in a wait; '?' unknown).
static char thread_state(int tid) {
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
    FILE *f = fopen(path, "r");
    if (!f) return '?';
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *r = strrchr(buf, ')'); // the name may hold spaces: the state follows the last ')'
    return r && r[1] == ' ' ? r[2] : '?';
}

// Counts which thread ran each share of the job run while the worker is frozen.
typedef struct {
    _Atomic int calls[2];
    _Atomic int on_caller;
} frozen_tally;

static void frozen_fn(void *ctx, int ith, int nth) {
    frozen_tally *t = ctx;
    if (nth != 2 || ith < 0 || ith > 1) return;
    atomic_fetch_add(&t->calls[ith], 1);
    if (pthread_equal(pthread_self(), g_worker.caller)) atomic_fetch_add(&t->on_caller, 1);
}

// A two-thread pool whose worker is stopped while asleep (never holding the pool's lock): the next job must run both
// shares on the caller and return, where a pool that waits for every thread to check in would wait forever (the
// alarm ends such a run as a failure). Released, the worker takes part in later jobs again.
static void test_frozen_worker(void) {
    aero_pool *p = aero_pool_new(2);
    CHECK(p);
    if (!p) return;
    g_worker.caller = pthread_self();
    sem_init(&g_worker.frozen, 0, 0);
    sem_init(&g_worker.release, 0, 0);
    for (int i = 0; i < 100 && !atomic_load(&g_worker.set); i++) aero_pool_run(p, find_worker_fn, NULL);
    CHECK(atomic_load(&g_worker.set));
    if (!atomic_load(&g_worker.set)) return;
    int tid = atomic_load(&g_worker.tid);
    char st = '?';
    for (int i = 0; i < 2000 && (st = thread_state(tid)) != 'S'; i++) usleep(5000); // past its spin, asleep
    CHECKF(st == 'S', "the worker never went to sleep (state %c)", st);
    if (st != 'S') return;
    struct sigaction sa = {.sa_handler = freeze_handler};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    pthread_kill(atomic_load(&g_worker.thread), SIGUSR1);
    while (sem_wait(&g_worker.frozen) != 0) {
    }
    alarm(30);
    frozen_tally t;
    memset(&t, 0, sizeof t);
    for (int rep = 0; rep < 3; rep++) aero_pool_run(p, frozen_fn, &t);
    alarm(0);
    CHECKF(atomic_load(&t.calls[0]) == 3 && atomic_load(&t.calls[1]) == 3 && atomic_load(&t.on_caller) == 6,
           "shares with the worker frozen: %d %d, %d on the caller", atomic_load(&t.calls[0]),
           atomic_load(&t.calls[1]), atomic_load(&t.on_caller));
    sem_post(&g_worker.release);
    for (int i = 0; i < 100; i++) CHECK(run_and_check(p, 2));
    aero_pool_free(p);
    sem_destroy(&g_worker.frozen);
    sem_destroy(&g_worker.release);
}

int main(void) {
    test_split();
    test_sizes();
    test_many_jobs();
    test_shared_callers();
    test_reentrant();
    test_frozen_worker();
    return check_done("test_threadpool");
}
