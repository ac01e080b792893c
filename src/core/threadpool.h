// A fixed pool of pthreads that runs one parallel job at a time; the caller takes part like a worker.
#ifndef AERO_CORE_THREADPOOL_H
#define AERO_CORE_THREADPOOL_H

typedef struct aero_pool aero_pool;

// Work item: called once for each share ith in [0, nth), nth being the pool size. Each share runs on one thread,
// which may be any of the pool's (one thread can run several shares of a job when the others are descheduled):
// per-share scratch indexed by ith is safe; waiting inside a share for another share to begin is not.
typedef void (*aero_pool_fn)(void *ctx, int ith, int nth);

// Starts n_threads-1 workers (n_threads <= 0 means the number of online CPUs). NULL when out of memory.
aero_pool *aero_pool_new(int n_threads);
void aero_pool_free(aero_pool *p);
int aero_pool_size(const aero_pool *p);

// Runs fn for every share and returns when all have finished. p may be NULL (runs fn(ctx, 0, 1)).
// Reentrant: called from inside one of p's jobs, it runs fn(ctx, 0, 1) on the calling thread. Several threads may
// call it on one pool: their jobs run one after another.
void aero_pool_run(aero_pool *p, aero_pool_fn fn, void *ctx);

// Splits [0, n) into nth nearly equal contiguous ranges; returns the range of thread ith.
void aero_pool_split(long n, int ith, int nth, long *begin, long *end);

#endif
