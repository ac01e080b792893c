// Persistent pthread workers with low-latency dispatch: a decode step calls matmul hundreds of times per
// token, so workers spin briefly on a generation counter before sleeping on a condition variable. A job is
// n shares that any thread claims from one ticket counter, the caller included: when a worker is descheduled
// (a busy machine: another program, a build), the threads that do run take its shares instead of waiting for it
// to be scheduled, once per job. A share's result does not depend on the thread that runs it.
#include "threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "cpu.h"
#include "util.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#define POOL_MAX_THREADS 512
#define POOL_SPIN_S 0.0003 // how long an idle worker spins before sleeping (0.3 ms)

struct aero_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t run_lock; // one job at a time, even when several threads share the pool
    pthread_mutex_t lock;     // guards sleeping
    pthread_cond_t wake;
    _Atomic uint64_t ticket; // job generation (high 32 bits) and the next unclaimed share (low 32 bits)
    _Atomic int done;        // shares of the current job finished
    _Atomic int stop;
    int sleepers; // workers blocked on `wake` (under lock)
    aero_pool_fn fn;
    void *ctx;
};

// The pool whose job this thread is running (NULL outside jobs): a job that calls aero_pool_run on its own pool
// would wait forever for workers that are busy running it, so that call runs inline instead.
static _Thread_local const aero_pool *tl_in_job;

// The generation of a ticket: bumped once per job.
static uint32_t ticket_gen(uint64_t t) { return (uint32_t)(t >> 32); }

// Waits for a new generation: spin (cheap wake-up for back-to-back jobs), then block on the condvar.
static uint32_t wait_for_job(aero_pool *p, uint32_t seen) {
    uint32_t g;
    double deadline = 0; // spinning is bounded by time (the one clock), not by a CPU-dependent loop count
    for (int spins = 0;; spins++) {
        g = ticket_gen(atomic_load_explicit(&p->ticket, memory_order_acquire));
        if (g != seen || atomic_load_explicit(&p->stop, memory_order_acquire)) return g;
        if (spins < 64) { // pause is ~60 ns on this CPU: spin ~4 us, then yield
            cpu_relax();
            continue;
        }
        sched_yield(); // still waiting: let a thread that has work (ours or another program's) run
        double t = aero_now();
        if (!deadline) deadline = t + POOL_SPIN_S;
        else if (t > deadline) break;
    }
    pthread_mutex_lock(&p->lock);
    p->sleepers++;
    while ((g = ticket_gen(atomic_load_explicit(&p->ticket, memory_order_acquire))) == seen &&
           !atomic_load_explicit(&p->stop, memory_order_acquire))
        pthread_cond_wait(&p->wake, &p->lock);
    p->sleepers--;
    pthread_mutex_unlock(&p->lock);
    return g;
}

// Claims and runs shares of job generation g until none is left or a newer job has begun. The claim (a CAS on
// the ticket, which carries the generation) orders the reads of fn and ctx after the caller published them, and
// the caller does not replace them before every claimed share is done.
static void run_shares(aero_pool *p, uint32_t g) {
    uint64_t t = atomic_load_explicit(&p->ticket, memory_order_acquire);
    for (;;) {
        if (ticket_gen(t) != g || (uint32_t)t >= (uint32_t)p->n) return;
        if (!atomic_compare_exchange_weak_explicit(&p->ticket, &t, t + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue; // t was reloaded
        p->fn(p->ctx, (int)(uint32_t)t, p->n);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_acq_rel);
        t = atomic_load_explicit(&p->ticket, memory_order_acquire);
    }
}

// Worker body: take part in each new job, then wait for the next.
static void *pool_worker(void *varg) {
    aero_pool *p = varg;
    tl_in_job = p; // a worker only ever runs this pool's jobs
    uint32_t seen = 0;
    for (;;) {
        seen = wait_for_job(p, seen);
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) break;
        run_shares(p, seen);
    }
    return NULL;
}

// Starts the workers once; they live as long as the pool, so a job costs no thread creation.
aero_pool *aero_pool_new(int n_threads) {
    if (n_threads <= 0) n_threads = aero_cpu_count();
    if (n_threads > POOL_MAX_THREADS) n_threads = POOL_MAX_THREADS;
    aero_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    atomic_init(&p->ticket, 0);
    atomic_init(&p->done, 0);
    atomic_init(&p->stop, 0);
    if (pthread_mutex_init(&p->run_lock, NULL)) goto fail_run_lock;
    if (pthread_mutex_init(&p->lock, NULL)) goto fail_lock;
    if (pthread_cond_init(&p->wake, NULL)) goto fail_cond;
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) goto fail_threads;
    int started = 0;
    // The shares of a job run only after aero_pool_run published it; until then the claim fails (no share of
    // generation 0 exists: the ticket's share count starts at n).
    atomic_store_explicit(&p->ticket, (uint64_t)(uint32_t)n_threads, memory_order_relaxed);
    for (int i = 1; i < n_threads; i++) {
        if (pthread_create(&p->threads[i], NULL, pool_worker, p)) break;
        started++;
    }
    if (started != n_threads - 1) {
        // Could not start them all: stop the ones that run and report failure.
        p->n = started + 1;
        aero_pool_free(p);
        return NULL;
    }
    return p;
fail_threads:
    pthread_cond_destroy(&p->wake);
fail_cond:
    pthread_mutex_destroy(&p->lock);
fail_lock:
    pthread_mutex_destroy(&p->run_lock);
fail_run_lock:
    free(p);
    return NULL;
}

// Wakes every worker with the stop flag and joins them.
void aero_pool_free(aero_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    atomic_store_explicit(&p->stop, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->run_lock);
    free(p->threads);
    free(p);
}

// Thread count, 1 for no pool (callers size per-thread scratch with it).
int aero_pool_size(const aero_pool *p) { return p ? p->n : 1; }

// One job of n shares; the caller claims shares like the workers and returns when every share is done. Called
// from inside a job of the same pool (any thread), it runs the whole job inline on the calling thread as
// fn(ctx, 0, 1): the other threads are busy with the outer job. Jobs of different pools may nest, but not in a
// cycle (A's job runs B's job which runs A's).
void aero_pool_run(aero_pool *p, aero_pool_fn fn, void *ctx) {
    if (!p || p->n == 1 || tl_in_job == p) {
        fn(ctx, 0, 1);
        return;
    }
    pthread_mutex_lock(&p->run_lock);
    const aero_pool *outer = tl_in_job;
    tl_in_job = p;
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    // Publishing under the lock means a worker that checks the ticket and then sleeps cannot miss the new job.
    pthread_mutex_lock(&p->lock);
    uint32_t g = ticket_gen(atomic_load_explicit(&p->ticket, memory_order_relaxed)) + 1;
    atomic_store_explicit(&p->ticket, (uint64_t)g << 32, memory_order_release);
    if (p->sleepers) pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    run_shares(p, g);
    tl_in_job = outer;
    // Every share is claimed: wait only for those still running on a worker.
    for (int spins = 0; atomic_load_explicit(&p->done, memory_order_acquire) < p->n; spins++) {
        if (spins < 64) cpu_relax();
        else sched_yield(); // a worker was descheduled mid-share (busy machine): give it the core
    }
    pthread_mutex_unlock(&p->run_lock);
}

// Contiguous, balanced ranges: the first n % nth threads get one extra item.
void aero_pool_split(long n, int ith, int nth, long *begin, long *end) {
    if (nth < 1) nth = 1;
    if (n < 0) n = 0;
    long base = n / nth, rem = n % nth;
    *begin = ith * base + (ith < rem ? ith : rem);
    *end = *begin + base + (ith < rem ? 1 : 0);
}
