#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Doubling keeps appends amortized O(1); 256 bytes covers most single events without a second allocation.
bool aero_buf_reserve(aero_buf *b, size_t extra) {
    if (extra > (size_t)-1 / 2 - b->len) {
        b->oom = true;
        return false;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    b->p[b->len] = 0;
    return true;
}

// The single growth path every appender goes through, so the terminator invariant holds everywhere.
bool aero_buf_append(aero_buf *b, const void *s, size_t n) {
    if (!aero_buf_reserve(b, n)) return false;
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return true;
}

// Strings are the common case; saves callers a strlen at each site.
bool aero_buf_puts(aero_buf *b, const char *s) { return aero_buf_append(b, s, strlen(s)); }

// Formats straight into the spare capacity, retrying once with the exact size when it does not fit.
bool aero_buf_printf(aero_buf *b, const char *fmt, ...) {
    if (!aero_buf_reserve(b, 0)) return false;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) return false;
    if ((size_t)n >= b->cap - b->len) {
        if (!aero_buf_reserve(b, (size_t)n)) return false;
        va_start(ap, fmt);
        vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
    return true;
}

// Ownership transfer for results returned to callers (an empty buffer still gives a valid "" string).
char *aero_buf_take(aero_buf *b, size_t *len) {
    if (!b->oom && !b->p) aero_buf_reserve(b, 0);
    char *p = b->oom ? NULL : b->p;
    if (len) *len = p ? b->len : 0;
    if (!p) free(b->p);
    memset(b, 0, sizeof *b);
    return p;
}

// Reuse avoids reallocating for each event of a long stream.
void aero_buf_clear(aero_buf *b) {
    b->len = 0;
    b->oom = false;
    if (b->p) b->p[0] = 0;
}

// Frees the bytes and resets the buffer to empty.
void aero_buf_free(aero_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}
