// Small helpers every module uses: sizes from the command line, a monotonic clock, aligned allocation.
#ifndef AERO_CORE_UTIL_H
#define AERO_CORE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "status.h"

// Parses "512M", "8G", "1.5G", "64K", "100000" (binary units) into bytes; false when malformed or zero.
bool aero_parse_size(const char *s, uint64_t *out);
// Formats a byte count for messages and plans ("35.2 MiB", "1.25 GiB"), the inverse of aero_parse_size.
const char *aero_format_size(uint64_t bytes, char *buf, size_t cap);
// Seconds from a monotonic clock.
double aero_now(void);
// Zero-filled memory aligned to `align` (a power of two >= sizeof(void*)); free with free(). NULL on failure.
void *aero_alloc_aligned(size_t align, size_t size);
// Peak resident set size of this process in bytes (from /proc/self/status VmHWM), 0 if unknown.
uint64_t aero_peak_rss(void);
// Current resident set size in bytes (VmRSS), 0 if unknown.
uint64_t aero_current_rss(void);

// Reads a whole stream into a NUL-terminated buffer (free() it). max bounds the size (0: no bound); a longer
// stream fails with AERO_ERR_RANGE. `name` prefixes the error messages.
aero_status aero_read_stream(FILE *f, const char *name, size_t max, char **out, size_t *len, aero_error *err);
// aero_read_stream on a file opened by path (AERO_ERR_IO when it cannot be opened).
aero_status aero_read_file(const char *path, size_t max, char **out, size_t *len, aero_error *err);

// Mixes a 64-bit key into a well-spread hash (murmur3's finalizer), for open-addressing tables and state hashes.
static inline uint64_t aero_hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

#endif
