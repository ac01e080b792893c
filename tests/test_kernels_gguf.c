// Kernels against files no one here wrote: stories260K in F16, Q8_0 and Q4_0 (made with llama.cpp's tools /
// ggml's reference formulas) dequantized by our kernels and compared with the F32 original: F16 must be the
// round-to-nearest-even of every value, Q8_0 / Q4_0 within ggml's quantization error of each block, and
// re-quantizing the F32 values with ggml's reference formulas must reproduce the file's bytes.
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "format/gguf.h"
#include "kernels/kernels.h"
#include "kernels/quants.h"

// Reads a tensor's bytes from its file; NULL on failure.
static uint8_t *read_tensor(const aero_gguf *g, const aero_tensor_info *t) {
    uint8_t *buf = malloc(t->nbytes ? t->nbytes : 1);
    int fd = open(g->files[t->file].path, O_RDONLY);
    bool ok = buf && fd >= 0 && pread(fd, buf, t->nbytes, (off_t)t->offset) == (ssize_t)t->nbytes;
    if (fd >= 0) close(fd);
    if (!ok) {
        free(buf);
        return NULL;
    }
    return buf;
}

// ggml's quantize_row_q8_0_ref: d = amax / 127, q = roundf(x / d).
static void ggml_q8_0(const float *x, aero_block_q8_0 *y) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
    y->d = aero_f32_to_f16(d);
    for (int j = 0; j < 32; j++) y->qs[j] = (int8_t)roundf(x[j] * id);
}

// ggml's quantize_row_q4_0_ref: d = (signed max) / -8, q = min(15, (int8)(x / d + 8.5)).
static void ggml_q4_0(const float *x, aero_block_q4_0 *y) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; j++)
        if (amax < fabsf(x[j])) amax = fabsf(x[j]), max = x[j];
    float d = max / -8.0f, id = d ? 1.0f / d : 0.0f;
    y->d = aero_f32_to_f16(d);
    for (int j = 0; j < 16; j++) {
        int a = (int8_t)(x[j] * id + 8.5f), b = (int8_t)(x[16 + j] * id + 8.5f);
        a = a < 15 ? a : 15, b = b < 15 ? b : 15;
        y->qs[j] = (uint8_t)(a | (b << 4));
    }
}

typedef struct {
    int tensors, elements, bad, bytes_differ;
} tally;

// Compares one tensor of a derived file with its F32 original.
static void compare_tensor(const char *file, const aero_tensor_info *q, const uint8_t *qd, const float *ref,
                           tally *tl) {
    int64_t cols = (int64_t)q->ne[0], rows = (int64_t)(q->n_elements / q->ne[0]);
    size_t rb = aero_dtype_row_bytes(q->type, (uint64_t)cols);
    float *row = malloc(sizeof(float) * (size_t)cols);
    tl->tensors++;
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *src = qd + (size_t)r * rb;
        const float *x = ref + r * cols;
        aero_dequantize_row(q->type, src, row, cols);
        for (int64_t c = 0; c < cols; c++) {
            float bound = 0.0f;
            if (q->type == AERO_DT_Q8_0 || q->type == AERO_DT_Q4_0) {
                size_t bb = aero_dtype_get(q->type)->block_bytes;
                float d = fabsf(aero_f16_to_f32(*(const uint16_t *)(src + (size_t)(c / 32) * bb)));
                // half a step (Q8_0) or a whole step at the far end (Q4_0), plus the f16 rounding of d
                bound = q->type == AERO_DT_Q8_0 ? d * (0.5f + 127.0f * 0x1p-10f) : d * (1.0f + 8.0f * 0x1p-10f);
                bound += 1e-7f;
            } else if (q->type == AERO_DT_F16) {
                bound = 0.0f; // checked bitwise below
            }
            tl->elements++;
            if (q->type == AERO_DT_F16) {
                uint16_t want = aero_f32_to_f16(x[c]), got = ((const uint16_t *)src)[c];
                if (want != got) tl->bad++;
            } else if (!(fabsf(row[c] - x[c]) <= bound)) {
                if (tl->bad < 3)
                    fprintf(stderr, "%s %s row %lld col %lld: %g vs %g (bound %g)\n", file, q->name, (long long)r,
                            (long long)c, row[c], x[c], bound);
                tl->bad++;
            }
        }
        // ggml's reference quantizers reproduce the file's blocks byte for byte
        if (q->type == AERO_DT_Q8_0 || q->type == AERO_DT_Q4_0) {
            uint8_t blk[34];
            size_t bb = aero_dtype_get(q->type)->block_bytes;
            for (int64_t b = 0; b < cols / 32; b++) {
                if (q->type == AERO_DT_Q8_0) ggml_q8_0(x + b * 32, (aero_block_q8_0 *)blk);
                else ggml_q4_0(x + b * 32, (aero_block_q4_0 *)blk);
                if (memcmp(blk, src + (size_t)b * bb, bb)) tl->bytes_differ++;
            }
        }
    }
    free(row);
}

int main(void) {
    require_shared_data();
    aero_kernels_init();
    aero_gguf ref;
    aero_error err = {0};
    if (aero_gguf_open(&ref, SHARED_DATA "/models/stories260K.gguf", &err) != AERO_OK) {
        fprintf(stderr, "open stories260K.gguf: %s\n", err.msg);
        return 1;
    }
    static const char *files[] = {"stories260K-F16.gguf", "stories260K-Q8_0.gguf", "stories260K-Q4_0.gguf"};
    for (int f = 0; f < 3; f++) {
        char path[256];
        snprintf(path, sizeof path, SHARED_DATA "/models/%s", files[f]);
        aero_gguf g;
        if (aero_gguf_open(&g, path, &err) != AERO_OK) {
            CHECKF(0, "open %s: %s", path, err.msg);
            continue;
        }
        tally per_type[AERO_DT_COUNT] = {{0}};
        for (uint64_t i = 0; i < g.n_tensors; i++) {
            const aero_tensor_info *q = &g.tensors[i], *r = aero_gguf_tensor(&ref, q->name);
            if (!r || r->type != AERO_DT_F32 || r->n_elements != q->n_elements || q->type >= AERO_DT_COUNT) {
                CHECKF(r != NULL, "%s: tensor %s missing from the F32 file", files[f], q->name);
                continue;
            }
            uint8_t *qd = read_tensor(&g, q), *rd = read_tensor(&ref, r);
            CHECKF(qd && rd, "%s: cannot read %s", files[f], q->name);
            if (qd && rd) compare_tensor(files[f], q, qd, (const float *)rd, &per_type[q->type]);
            free(qd);
            free(rd);
        }
        for (int t = 0; t < AERO_DT_COUNT; t++) {
            tally *tl = &per_type[t];
            if (!tl->tensors) continue;
            printf("%-22s %-5s %3d tensors %8d elements: %d outside the bound, %d blocks differ from ggml's\n",
                   files[f], aero_dtype_name(t), tl->tensors, tl->elements, tl->bad, tl->bytes_differ);
            CHECKF(tl->bad == 0, "%s %s: %d elements outside the bound", files[f], aero_dtype_name(t), tl->bad);
            CHECKF(tl->bytes_differ == 0, "%s %s: %d blocks differ from ggml's reference quantizer", files[f],
                   aero_dtype_name(t), tl->bytes_differ);
        }
        // The quantized types must actually be present (the test is about them).
        if (f == 1) CHECK(per_type[AERO_DT_Q8_0].tensors > 0);
        if (f == 2) CHECK(per_type[AERO_DT_Q4_0].tensors > 0);
        if (f == 0) CHECK(per_type[AERO_DT_F16].tensors > 0);
        aero_gguf_free(&g);
    }
    aero_gguf_free(&ref);
    return check_done("test_kernels_gguf");
}
