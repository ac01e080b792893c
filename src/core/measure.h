// Floors for benchmarks, measured in the same run: memory read bandwidth and O_DIRECT disk read bandwidth.
#ifndef AERO_CORE_MEASURE_H
#define AERO_CORE_MEASURE_H

#include <stdint.h>

#include "threadpool.h"

// Read bandwidth (bytes/s) of summing a buffer of `bytes` (far larger than the caches) on all pool threads.
double aero_measure_mem_bw(aero_pool *pool, uint64_t bytes);
// The same, summing a caller's buffer (a weight buffer already in memory, so that nothing more is allocated).
double aero_measure_mem_bw_buf(aero_pool *pool, const void *buf, uint64_t bytes);
// Read bandwidth (bytes/s) of O_DIRECT reads of up to max_bytes of the file, 8 MiB requests, `inflight` threads
// (the way the streamer reads); buffered reads with FADV_DONTNEED when O_DIRECT is refused. 0 on failure.
double aero_measure_disk_bw(const char *path, uint64_t max_bytes, int inflight);
// The same over [offset, offset + span) of the file with requests of req bytes: the whole span when it is at most
// max_bytes, else max_bytes of requests spread evenly over it. buf (4 KiB aligned, buf_bytes long) when not
// NULL holds the requests in flight, so that a streamer can measure with its idle window and allocate nothing.
double aero_measure_disk_bw_at(const char *path, uint64_t offset, uint64_t span, uint64_t max_bytes, int inflight,
                               uint64_t req, void *buf, uint64_t buf_bytes);

#endif
