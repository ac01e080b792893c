// Weight access (bring-up version): groups tensors into units and loads everything resident. The streaming
// planner and IO threads replace the loading part; the interface stays.
#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../kernels/kernels.h"

struct aero_stream {
    const aero_gguf *g;
    int n_layer;
    int n_units;
    int *unit_of;            // per tensor: unit index, or -1 for globals
    void **data;             // per tensor: resident bytes
    int64_t embd;            // tensor index of the token embedding
    aero_stream_plan plan;
    aero_stream_stats stats;
    uint64_t held;
};

// Which unit a tensor belongs to: its layer for "blk.N.*", n_layer for the output head, -1 otherwise.
static int tensor_unit(const char *name, int n_layer, const char *output) {
    int l;
    char dot;
    if (sscanf(name, "blk.%d%c", &l, &dot) == 2 && dot == '.' && l >= 0 && l < n_layer) return l;
    if (output && !strcmp(name, output)) return n_layer;
    return -1;
}

// Reads a tensor's bytes from its file into dst.
static aero_status read_tensor(const aero_gguf *g, const aero_tensor_info *t, void *dst, aero_error *err) {
    const char *path = g->files[t->file].path;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return aero_fail(err, AERO_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    uint64_t done = 0;
    while (done < t->nbytes) {
        ssize_t n = pread(fd, (char *)dst + done, t->nbytes - done, (off_t)(t->offset + done));
        if (n <= 0) {
            close(fd);
            return aero_fail(err, AERO_ERR_IO, "%s: reading tensor '%s' at offset %llu: %s", path, t->name,
                             (unsigned long long)(t->offset + done), n < 0 ? strerror(errno) : "file is shorter");
        }
        done += (uint64_t)n;
    }
    close(fd);
    return AERO_OK;
}

aero_status aero_stream_open(aero_stream **out, const aero_gguf *g, int n_layer, const aero_stream_params *p,
                             aero_error *err) {
    aero_stream *s = calloc(1, sizeof *s);
    if (!s) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    s->g = g;
    s->n_layer = n_layer;
    s->n_units = n_layer + 1;
    s->unit_of = calloc(g->n_tensors + 1, sizeof *s->unit_of);
    s->data = calloc(g->n_tensors + 1, sizeof *s->data);
    s->plan.unit_resident = calloc(s->n_units, sizeof(bool));
    if (!s->unit_of || !s->data || !s->plan.unit_resident) {
        aero_stream_close(s);
        return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    }
    s->embd = p->embd_tensor ? aero_gguf_tensor_index(g, p->embd_tensor) : -1;
    uint64_t total = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        s->unit_of[i] = tensor_unit(g->tensors[i].name, n_layer, p->output_tensor);
        total += g->tensors[i].nbytes;
    }
    if (p->mem_budget && p->mem_budget < total) {
        aero_stream_close(s);
        return aero_fail(err, AERO_ERR_UNSUPPORTED, "--mem below the model size (%llu bytes) needs the streaming "
                         "engine, which this build does not have yet", (unsigned long long)total);
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const aero_tensor_info *t = &g->tensors[i];
        s->data[i] = aero_alloc_aligned(64, t->nbytes);
        if (!s->data[i]) {
            aero_stream_close(s);
            return aero_fail(err, AERO_ERR_NOMEM, "tensor '%s': cannot allocate %llu bytes", t->name,
                             (unsigned long long)t->nbytes);
        }
        if (read_tensor(g, t, s->data[i], err)) {
            aero_stream_close(s);
            return err->code;
        }
        s->held += t->nbytes;
    }
    s->plan.resident_bytes = total;
    s->plan.n_units = s->n_units;
    s->plan.n_pinned = s->n_units;
    s->plan.head_resident = s->plan.embd_resident = true;
    for (int u = 0; u < s->n_units; u++) s->plan.unit_resident[u] = true;
    *out = s;
    return AERO_OK;
}

void aero_stream_close(aero_stream *s) {
    if (!s) return;
    if (s->data)
        for (uint64_t i = 0; i < s->g->n_tensors; i++) free(s->data[i]);
    free(s->data);
    free(s->unit_of);
    free(s->plan.unit_resident);
    free(s);
}

const aero_stream_plan *aero_stream_get_plan(const aero_stream *s) { return &s->plan; }

const void *aero_stream_global(aero_stream *s, int64_t tensor) {
    return s->unit_of[tensor] < 0 ? s->data[tensor] : NULL;
}

aero_status aero_stream_acquire(aero_stream *s, int unit, aero_error *err) {
    if (unit < 0 || unit >= s->n_units) return aero_fail(err, AERO_ERR_INVALID, "stream: no unit %d", unit);
    if (unit == 0) s->stats.passes++;
    return AERO_OK;
}

const void *aero_stream_tensor(aero_stream *s, int64_t tensor) { return s->data[tensor]; }

void aero_stream_release(aero_stream *s, int unit) { (void)s, (void)unit; }

aero_status aero_stream_embed_rows(aero_stream *s, const int32_t *rows, int n, float *out, aero_error *err) {
    if (s->embd < 0) return aero_fail(err, AERO_ERR_INVALID, "stream: no token embedding tensor");
    const aero_tensor_info *t = &s->g->tensors[s->embd];
    size_t row_bytes = aero_dtype_row_bytes(t->type, t->ne[0]);
    for (int i = 0; i < n; i++) {
        if (rows[i] < 0 || (uint64_t)rows[i] >= t->ne[1])
            return aero_fail(err, AERO_ERR_INVALID, "token id %d out of range [0, %llu)", rows[i],
                             (unsigned long long)t->ne[1]);
        aero_dequantize_row(t->type, (const char *)s->data[s->embd] + (size_t)rows[i] * row_bytes,
                            out + (size_t)i * t->ne[0], (int64_t)t->ne[0]);
    }
    return AERO_OK;
}

void aero_stream_get_stats(const aero_stream *s, aero_stream_stats *out) { *out = s->stats; }
void aero_stream_reset_stats(aero_stream *s) { memset(&s->stats, 0, sizeof s->stats); }
uint64_t aero_stream_weight_bytes_held(const aero_stream *s) { return s->held; }

void aero_stream_print_stats(aero_stream *s, FILE *f) {
    fprintf(f, "stream: %llu passes, all weights resident (%.1f MB)\n", (unsigned long long)s->stats.passes,
            s->held / 1e6);
}
