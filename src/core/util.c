#include "util.h"

#include "buf.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *aero_format_size(uint64_t b, char *buf, size_t cap) {
    if (b >= (1ull << 30)) snprintf(buf, cap, "%.2f GiB", b / (double)(1ull << 30));
    else if (b >= (1ull << 20)) snprintf(buf, cap, "%.1f MiB", b / (double)(1ull << 20));
    else snprintf(buf, cap, "%.1f KiB", b / 1024.0);
    return buf;
}

bool aero_parse_size(const char *s, uint64_t *out) {
    if (!s || !*s) return false;
    char *end;
    double v = strtod(s, &end);
    if (end == s || !(v > 0) || !isfinite(v)) return false;
    double mul = 1;
    switch (toupper((unsigned char)*end)) {
    case 0: break;
    case 'K':
        mul = 1024.0;
        end++;
        break;
    case 'M':
        mul = 1024.0 * 1024;
        end++;
        break;
    case 'G':
        mul = 1024.0 * 1024 * 1024;
        end++;
        break;
    case 'T':
        mul = 1024.0 * 1024 * 1024 * 1024;
        end++;
        break;
    default: return false;
    }
    if (toupper((unsigned char)*end) == 'I') end++;
    if (toupper((unsigned char)*end) == 'B') end++;
    if (*end) return false;
    double bytes = v * mul;
    if (bytes >= 1.8e19 || bytes < 1) return false;
    *out = (uint64_t)bytes;
    return true;
}

double aero_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void *aero_alloc_aligned(size_t align, size_t size) {
    void *p = NULL;
    size_t rounded = (size + align - 1) / align * align;
    if (posix_memalign(&p, align, rounded ? rounded : align)) return NULL;
    memset(p, 0, rounded ? rounded : align);
    return p;
}

// Reads one "Key:   N kB" line of /proc/self/status.
static uint64_t proc_status_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    size_t kl = strlen(key);
    uint64_t kb = 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl) && line[kl] == ':') {
            kb = strtoull(line + kl + 1, NULL, 10);
            break;
        }
    fclose(f);
    return kb * 1024;
}

uint64_t aero_peak_rss(void) { return proc_status_kb("VmHWM"); }
uint64_t aero_current_rss(void) { return proc_status_kb("VmRSS"); }

// One reader for prompts, templates and stdin, so size limits and error messages agree everywhere.
aero_status aero_read_stream(FILE *f, const char *name, size_t max, char **out, size_t *len, aero_error *err) {
    *out = NULL;
    if (len) *len = 0;
    aero_buf b = {0};
    for (;;) {
        if (!aero_buf_reserve(&b, 65536)) {
            aero_buf_free(&b);
            return aero_fail(err, AERO_ERR_NOMEM, "%s: out of memory", name);
        }
        size_t r = fread(b.p + b.len, 1, b.cap - b.len - 1, f);
        b.len += r;
        b.p[b.len] = 0;
        if (max && b.len > max) {
            aero_buf_free(&b);
            return aero_fail(err, AERO_ERR_RANGE, "%s: larger than the %zu-byte limit", name, max);
        }
        if (r == 0) break;
    }
    if (ferror(f)) {
        aero_buf_free(&b);
        return aero_fail(err, AERO_ERR_IO, "%s: read error", name);
    }
    *out = aero_buf_take(&b, len);
    return AERO_OK;
}

// Opening is the only difference from aero_read_stream; the message carries the system's reason.
aero_status aero_read_file(const char *path, size_t max, char **out, size_t *len, aero_error *err) {
    *out = NULL;
    if (len) *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return aero_fail(err, AERO_ERR_IO, "%s: %s", path, strerror(errno));
    aero_status st = aero_read_stream(f, path, max, out, len, err);
    fclose(f);
    return st;
}
