// Floors for benchmarks, measured in the same run: memory read bandwidth and O_DIRECT disk read bandwidth.
#ifndef AERO_CORE_MEASURE_H
#define AERO_CORE_MEASURE_H

#include <stdint.h>

#include "threadpool.h"

// Read bandwidth (bytes/s) of summing a buffer of `bytes` (far larger than the caches) on all pool threads.
double aero_measure_mem_bw(aero_pool *pool, uint64_t bytes);
// Read bandwidth (bytes/s) of O_DIRECT reads of up to max_bytes of the file, 8 MiB requests, `inflight` threads
// (the way the streamer reads); buffered reads with FADV_DONTNEED when O_DIRECT is refused. 0 on failure.
double aero_measure_disk_bw(const char *path, uint64_t max_bytes, int inflight);

#endif
