// Floors for benchmarks, measured in the same run: memory read bandwidth and disk read bandwidth.
#ifndef AERO_CORE_MEASURE_H
#define AERO_CORE_MEASURE_H

#include <stdbool.h>
#include <stdint.h>

#include "threadpool.h"

// Read bandwidth (bytes/s) of summing a buffer of `bytes` (far larger than the caches) on all pool threads.
double aero_measure_mem_bw(aero_pool *pool, uint64_t bytes);
// The same, summing a caller's buffer (a weight buffer already in memory, so that nothing more is allocated).
double aero_measure_mem_bw_buf(aero_pool *pool, const void *buf, uint64_t bytes);
// One byte range of a disk probe: [off, off + len) of file `file` (an index into the probe's paths). With
// O_DIRECT, off should be 4 KiB aligned; len may run past the end of the file (the read stops there).
typedef struct {
    uint32_t file;
    uint64_t off, len;
} aero_disk_range;

// A disk read-bandwidth probe, shaped like the reader it is the floor of: the same request size, as many
// requests in flight, O_DIRECT or not, the same byte ranges.
typedef struct {
    const char *const *paths; // the files read
    uint32_t n_paths;
    const aero_disk_range *ranges; // the bytes read, in request order; NULL: every file whole
    int n_ranges;
    uint64_t max_bytes; // read about this much at most: every k-th request, spread evenly; 0: no limit
    uint64_t req_bytes; // bytes per request (rounded up to 4 KiB); 0: 8 MiB
    int inflight;       // requests in flight, one reader thread each (at most 32); <= 0: 4
    bool buffered;      // buffered reads with FADV_DONTNEED instead of O_DIRECT (also the fallback
                        // where the file system refuses O_DIRECT)
    void *buf;          // 4 KiB-aligned buffer of buf_bytes holding the requests in flight, so that a
    uint64_t buf_bytes; // streamer measures with its idle window and allocates nothing; NULL: allocated
} aero_disk_probe;

// Read bandwidth (bytes/s) of the probe's reads; 0 when nothing was read or a read failed. The one disk probe:
// the streamer's --stats floor, `aerollm bench` and `bench --draft` all measure through it.
double aero_measure_disk(const aero_disk_probe *p);
// The probe over the whole file at path: up to max_bytes in 8 MiB O_DIRECT requests, `inflight` in flight.
double aero_measure_disk_bw(const char *path, uint64_t max_bytes, int inflight);

#endif
