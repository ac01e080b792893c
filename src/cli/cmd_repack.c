// `aerollm repack IN.gguf OUT.gguf`: rewrites a model so that each layer is one contiguous, 4 KiB-aligned range
// of the file (non-layer tensors first, then layer 0..L-1, then the output head), with every tensor 4 KiB
// aligned. The streamer then reads a layer as one request with no aligned-superset waste. The output is a plain
// GGUF (general.alignment = 4096) that other readers load; it is written to a temporary file and renamed.
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

typedef struct {
    int fd;
    const char *path;
    const char *name; // the tensor's
    uint64_t offset;  // of its data in the file
    size_t row_bytes;
} row_src;

// Copies rows of a tensor from the input file (buffered, dropped from the page cache after use).
static bool copy_rows(void *ctx, void *dst, uint64_t row0, uint64_t n_rows, aero_error *err) {
    row_src *r = ctx;
    uint64_t off = r->offset + row0 * r->row_bytes, len = n_rows * r->row_bytes, done = 0;
    while (done < len) {
        ssize_t n = pread(r->fd, (char *)dst + done, len - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            aero_fail(err, AERO_ERR_IO, "%s: reading tensor '%s' at offset %llu: %s", r->path, r->name,
                      (unsigned long long)(off + done), n < 0 ? strerror(errno) : "the file is shorter");
            return false;
        }
        done += (uint64_t)n;
    }
    posix_fadvise(r->fd, (off_t)off, (off_t)len, POSIX_FADV_DONTNEED);
    return true;
}

// The order of a tensor in the output: non-layer tensors, then layer by layer, then the output head.
static int64_t rank(const aero_gguf *g, uint64_t i, int64_t n_layer, const char *head) {
    const char *name = aero_gguf_tensor_name(g, i);
    int l = aero_gguf_tensor_layer(name);
    if (l >= 0 && l < n_layer) return ((int64_t)(l + 1) << 32) + (int64_t)i;
    if (head && !strcmp(name, head) && strcmp(name, "token_embd.weight")) return ((n_layer + 1) << 32) + (int64_t)i;
    return (int64_t)i;
}

static const aero_gguf *rank_g;
static int64_t rank_layers;
static const char *rank_head;

// qsort order of the output tensors (see rank).
static int cmp_rank(const void *a, const void *b) {
    int64_t x = rank(rank_g, *(const uint64_t *)a, rank_layers, rank_head);
    int64_t y = rank(rank_g, *(const uint64_t *)b, rank_layers, rank_head);
    return x < y ? -1 : x > y;
}

// NULL when every layer's tensors form one 4 KiB-aligned range holding nothing else, else what is wrong.
static const char *layers_contiguous(const aero_gguf *o, int64_t n_layer) {
    static char why[256];
    uint64_t n = aero_gguf_n_tensors(o);
    for (int64_t l = 0; l < n_layer; l++) {
        uint64_t lo = UINT64_MAX, hi = 0;
        uint32_t file = 0;
        for (uint64_t i = 0; i < n; i++) {
            const char *name = aero_gguf_tensor_name(o, i);
            uint64_t off = aero_gguf_tensor_offset(o, i), end = off + aero_gguf_tensor_nbytes(o, i);
            if (aero_gguf_tensor_layer(name) != l) continue;
            if (off % 4096) {
                snprintf(why, sizeof why, "tensor '%s' is not 4 KiB aligned", name);
                return why;
            }
            if (off < lo) lo = off;
            if (end > hi) hi = end;
            file = aero_gguf_tensor_file(o, i);
        }
        for (uint64_t i = 0; lo < hi && i < n; i++) {
            const char *name = aero_gguf_tensor_name(o, i);
            uint64_t off = aero_gguf_tensor_offset(o, i), end = off + aero_gguf_tensor_nbytes(o, i);
            if (aero_gguf_tensor_layer(name) == l || aero_gguf_tensor_file(o, i) != file) continue;
            if (off < hi && end > lo) {
                snprintf(why, sizeof why, "tensor '%s' lies inside layer %lld", name, (long long)l);
                return why;
            }
        }
    }
    return NULL;
}

// Prints the help.
static void usage(void) {
    printf("usage: aerollm repack IN.gguf OUT.gguf\n"
           "  rewrites IN so that every layer is one contiguous 4 KiB-aligned range (faster streaming reads);\n"
           "  OUT is a standard GGUF with general.alignment = 4096, written via a temporary file\n");
}

// Entry point: parse, order tensors by unit, write via the GGUF writer, read back and check the layout.
int aero_cmd_repack(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage();
            return 0;
        }
        if (argv[i][0] == '-') return cli_fail("repack", "unknown option '%s' (see aerollm repack --help)", argv[i]);
        if (!in) in = argv[i];
        else if (!out) out = argv[i];
        else return cli_fail("repack", "unexpected argument '%s'", argv[i]);
    }
    if (!in || !out) {
        usage();
        return 1;
    }
    aero_gguf *g = NULL;
    aero_error err = {0};
    if (aero_gguf_load(&g, in, &err)) return cli_fail("repack", "%s", err.msg);
    int rc = 1;
    aero_gguf_writer *w = NULL;
    uint64_t n_tensors = aero_gguf_n_tensors(g);
    uint32_t n_files = aero_gguf_n_files(g);
    row_src *src = calloc(n_tensors + 1, sizeof *src);
    uint64_t *order = malloc(sizeof *order * (n_tensors + 1));
    int *fds = calloc(n_files, sizeof *fds);
    if (!src || !order || !fds) {
        cli_fail("repack", "out of memory");
        goto done;
    }
    for (uint32_t f = 0; f < n_files; f++) fds[f] = -1;
    for (uint32_t f = 0; f < n_files; f++) {
        fds[f] = open(aero_gguf_file_path(g, f), O_RDONLY | O_CLOEXEC);
        if (fds[f] < 0) {
            cli_fail("repack", "%s: %s", aero_gguf_file_path(g, f), strerror(errno));
            goto done;
        }
    }
    int64_t n_layer = 0;
    if (!aero_gguf_block_count(g, &n_layer) || n_layer < 0 || n_layer > 100000) n_layer = 0;
    w = aero_gguf_writer_new(4096);
    if (!w) {
        cli_fail("repack", "out of memory");
        goto done;
    }
    for (uint64_t i = 0; i < aero_gguf_n_kv(g); i++) { // split-file bookkeeping does not apply to the single output
        const char *k = aero_gguf_kv_key(g, i);
        if (!strcmp(k, "general.alignment") || !strncmp(k, "split.", 6)) continue;
        aero_gguf_set_value(w, k, aero_gguf_kv_value(g, i));
    }
    for (uint64_t i = 0; i < n_tensors; i++) order[i] = i;
    rank_g = g;
    rank_layers = n_layer;
    rank_head = aero_gguf_tensor_index(g, "output.weight") >= 0 ? "output.weight" : NULL;
    qsort(order, n_tensors, sizeof *order, cmp_rank);
    uint64_t total = 0;
    for (uint64_t k = 0; k < n_tensors; k++) {
        uint64_t i = order[k];
        const char *name = aero_gguf_tensor_name(g, i);
        uint32_t type = aero_gguf_tensor_type(g, i), file = aero_gguf_tensor_file(g, i);
        const uint64_t *ne = aero_gguf_tensor_shape(g, i);
        uint64_t nbytes = aero_gguf_tensor_nbytes(g, i);
        row_src *r = &src[k];
        *r = (row_src){.fd = fds[file],
                       .path = aero_gguf_file_path(g, file),
                       .name = name,
                       .offset = aero_gguf_tensor_offset(g, i),
                       .row_bytes = aero_dtype_row_bytes(type, ne[0])};
        if (!r->row_bytes || r->row_bytes * (aero_gguf_tensor_n_elements(g, i) / ne[0]) != nbytes) {
            cli_fail("repack", "%s: tensor '%s' has rows that do not divide its %llu bytes", in, name,
                     (unsigned long long)nbytes);
            goto done;
        }
        if (aero_gguf_add_tensor_rows(w, name, (aero_dtype)type, aero_gguf_tensor_n_dims(g, i), ne, copy_rows, r,
                                      &err)) {
            cli_fail("repack", "%s", err.msg);
            goto done;
        }
        total += nbytes;
    }
    cli_progress pr = {.start = aero_now()};
    aero_gguf_writer_progress(w, cli_progress_show, &pr);
    fprintf(stderr, "repack: %s -> %s: %llu tensors, %.1f MB, %lld layers\n", in, out, (unsigned long long)n_tensors,
            total / 1e6, (long long)n_layer);
    if (aero_gguf_write(w, out, &err)) {
        fputc('\n', stderr);
        cli_fail("repack", "%s", err.msg);
        goto done;
    }
    // read back what was written: every layer one contiguous, aligned range
    aero_gguf *o = NULL;
    if (aero_gguf_load(&o, out, &err)) {
        cli_fail("repack", "the output does not read back: %s", err.msg);
        goto done;
    }
    const char *bad = layers_contiguous(o, n_layer);
    fprintf(stderr, "repack: done in %.1f s; %s: alignment %llu, %llu tensors, %s\n", aero_now() - pr.start, out,
            (unsigned long long)aero_gguf_alignment(o), (unsigned long long)aero_gguf_n_tensors(o),
            bad ? bad : "each layer one contiguous 4 KiB-aligned range");
    aero_gguf_close(o);
    rc = bad ? 1 : 0;
done:
    for (uint32_t f = 0; fds && f < n_files; f++)
        if (fds[f] >= 0) close(fds[f]);
    aero_gguf_writer_free(w);
    free(fds);
    free(order);
    free(src);
    aero_gguf_close(g);
    return rc;
}
