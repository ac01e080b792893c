// A growing byte buffer: the one way the code builds text of unknown length (HTTP bodies, SSE events,
// Prometheus output, rendered prompts). The bytes stay NUL-terminated so a buffer can be used as a C string.
#ifndef AERO_CORE_BUF_H
#define AERO_CORE_BUF_H

#include <stdbool.h>
#include <stddef.h>

#include "../../include/aerollm.h" // aero_buf

// Appends n bytes (s may be NULL when n is 0); false (and b->oom set) when memory runs out.
bool aero_buf_append(aero_buf *b, const void *s, size_t n);
// Appends a NUL-terminated string.
bool aero_buf_puts(aero_buf *b, const char *s);
// Appends printf-formatted text.
bool aero_buf_printf(aero_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// Grows the allocation to hold at least `extra` more bytes (and the terminator) without appending.
bool aero_buf_reserve(aero_buf *b, size_t extra);
// Hands the bytes to the caller (free() them; never NULL unless out of memory) and empties the buffer.
char *aero_buf_take(aero_buf *b, size_t *len);
// Empties the buffer but keeps its allocation, for reuse.
void aero_buf_clear(aero_buf *b);
// Frees the bytes and resets the buffer to empty.
void aero_buf_free(aero_buf *b);

#endif
