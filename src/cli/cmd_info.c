// `aerollm info MODEL [--mem SIZE] [--tensors]`: what is in a GGUF file and what would be resident under a budget.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

// Prints one metadata value; arrays longer than a few elements are abbreviated.
static void print_value(const aero_gguf_value *v) {
    switch (v->type) {
    case AERO_GGUF_STRING: {
        const char *s = v->str.ptr;
        size_t n = v->str.len;
        putchar('"');
        for (size_t i = 0; i < n && i < 120; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c == '\n') fputs("\\n", stdout);
            else if (c < 0x20) printf("\\x%02x", c);
            else putchar(c);
        }
        if (n > 120) printf("...\" (%zu bytes)", n);
        else putchar('"');
        break;
    }
    case AERO_GGUF_ARRAY: {
        printf("[%s x %llu]", aero_gguf_type_name(v->arr.elem), (unsigned long long)v->arr.n);
        uint64_t show = v->arr.n < 8 ? v->arr.n : 8;
        printf(" [");
        for (uint64_t i = 0; i < show; i++) {
            if (i) printf(", ");
            if (v->arr.elem == AERO_GGUF_STRING) {
                const aero_gguf_str *s = aero_gguf_arr_str(v, i);
                printf("\"%.*s\"", (int)(s->len < 40 ? s->len : 40), s->ptr);
            } else if (v->arr.elem == AERO_GGUF_ARRAY) {
                printf("[...]");
            } else if (v->arr.elem == AERO_GGUF_FLOAT32 || v->arr.elem == AERO_GGUF_FLOAT64) {
                double d;
                aero_gguf_arr_f64(v, i, &d);
                printf("%g", d);
            } else {
                int64_t x;
                if (aero_gguf_arr_i64(v, i, &x)) printf("%lld", (long long)x);
                else printf("?");
            }
        }
        printf(v->arr.n > show ? ", ...]" : "]");
        break;
    }
    case AERO_GGUF_FLOAT32: case AERO_GGUF_FLOAT64: printf("%g", v->f64); break;
    case AERO_GGUF_BOOL: printf(v->u64 ? "true" : "false"); break;
    case AERO_GGUF_INT8: case AERO_GGUF_INT16: case AERO_GGUF_INT32: case AERO_GGUF_INT64:
        printf("%lld", (long long)v->i64);
        break;
    default: printf("%llu", (unsigned long long)v->u64); break;
    }
}

// Human-readable byte count.
static const char *fmt_bytes(uint64_t b, char *buf, size_t cap) {
    if (b >= (1ull << 30)) snprintf(buf, cap, "%.2f GiB", b / (double)(1ull << 30));
    else if (b >= (1ull << 20)) snprintf(buf, cap, "%.2f MiB", b / (double)(1ull << 20));
    else if (b >= 1024) snprintf(buf, cap, "%.1f KiB", b / 1024.0);
    else snprintf(buf, cap, "%llu B", (unsigned long long)b);
    return buf;
}

// Prints the residency plan the streamer would choose under the budget.
static int print_plan(const aero_gguf *g, uint64_t budget) {
    aero_error err = {0};
    int64_t n_layer = 0;
    const char *arch = aero_gguf_get_str(g, "general.architecture");
    char key[128];
    snprintf(key, sizeof key, "%s.block_count", arch ? arch : "llama");
    if (!aero_gguf_get_i64(g, key, &n_layer)) return cli_fail("info", "%s missing: cannot plan", key);
    aero_stream_params sp = {.mem_budget = budget, .output_tensor = aero_gguf_tensor(g, "output.weight") ? "output.weight" : "token_embd.weight",
                             .embd_tensor = "token_embd.weight"};
    aero_stream *s;
    if (aero_stream_open(&s, g, (int)n_layer, &sp, &err)) return cli_fail("info", "%s", err.msg);
    const aero_stream_plan *p = aero_stream_get_plan(s);
    char a[32], b[32], c[32], d[32];
    printf("\nplan under --mem %s:\n", fmt_bytes(budget, a, sizeof a));
    printf("  resident %s, streamed per pass %s, window %s (%d slots), minimum budget %s\n",
           fmt_bytes(p->resident_bytes, a, sizeof a), fmt_bytes(p->streamed_bytes, b, sizeof b),
           fmt_bytes(p->window_bytes, c, sizeof c), p->n_slots, fmt_bytes(p->min_budget, d, sizeof d));
    printf("  units: %d (%d layers + output head), pinned %d, streamed %d; output head %s; token embeddings %s\n",
           p->n_units, p->n_units - 1, p->n_pinned, p->n_streamed, p->head_resident ? "resident" : "streamed",
           p->embd_resident ? "resident" : "read by row");
    printf("  per unit: ");
    for (int u = 0; u < p->n_units; u++) putchar(p->unit_resident[u] ? 'R' : 's');
    printf("   (R resident, s streamed)\n");
    aero_stream_close(s);
    return 0;
}

int aero_cmd_info(int argc, char **argv) {
    const char *path = NULL;
    bool tensors = true;
    uint64_t budget = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--mem") && i + 1 < argc) {
            if (!aero_parse_size(argv[++i], &budget)) return cli_fail("info", "bad size '%s' for --mem", argv[i]);
        } else if (!strcmp(argv[i], "--no-tensors")) {
            tensors = false;
        } else if (!strcmp(argv[i], "-m") && i + 1 < argc) {
            path = argv[++i];
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: aerollm info MODEL.gguf [--mem SIZE] [--no-tensors]\n");
            return 0;
        } else if (argv[i][0] != '-' && !path) {
            path = argv[i];
        } else {
            return cli_fail("info", "unknown argument '%s'", argv[i]);
        }
    }
    if (!path) return cli_fail("info", "no model file given (aerollm info MODEL.gguf)");
    aero_gguf g;
    aero_error err = {0};
    if (aero_gguf_open(&g, path, &err)) return cli_fail("info", "%s", err.msg);
    printf("file: %s (GGUF v%u, %u file%s, alignment %llu)\n", path, g.version, g.n_files, g.n_files > 1 ? "s" : "",
           (unsigned long long)g.alignment);
    printf("\nmetadata (%llu keys):\n", (unsigned long long)g.n_kv);
    for (uint64_t i = 0; i < g.n_kv; i++) {
        printf("  %-40s %-8s ", g.kv[i].key.ptr, aero_gguf_type_name(g.kv[i].value.type));
        print_value(&g.kv[i].value);
        putchar('\n');
    }
    uint64_t by_type[AERO_DT_COUNT] = {0}, count_type[AERO_DT_COUNT] = {0}, total = 0;
    int64_t n_layer = -1;
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const aero_tensor_info *t = &g.tensors[i];
        by_type[t->type] += t->nbytes;
        count_type[t->type]++;
        total += t->nbytes;
        int l;
        if (sscanf(t->name, "blk.%d.", &l) == 1 && l > n_layer) n_layer = l;
    }
    char a[32];
    if (tensors) {
        printf("\ntensors (%llu):\n", (unsigned long long)g.n_tensors);
        for (uint64_t i = 0; i < g.n_tensors; i++) {
            const aero_tensor_info *t = &g.tensors[i];
            char shape[96] = "";
            for (uint32_t d = 0; d < t->n_dims; d++)
                snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%llu", d ? " x " : "",
                         (unsigned long long)t->ne[d]);
            printf("  %-32s %-6s %-22s file %u offset %-12llu %s\n", t->name, aero_dtype_name(t->type), shape, t->file,
                   (unsigned long long)t->offset, fmt_bytes(t->nbytes, a, sizeof a));
        }
    }
    printf("\ntotals by type:\n");
    for (int t = 0; t < AERO_DT_COUNT; t++)
        if (count_type[t])
            printf("  %-6s %5llu tensors  %s\n", aero_dtype_name(t), (unsigned long long)count_type[t],
                   fmt_bytes(by_type[t], a, sizeof a));
    printf("  all    %5llu tensors  %s\n", (unsigned long long)g.n_tensors, fmt_bytes(total, a, sizeof a));
    if (n_layer >= 0) {
        printf("\nbytes per layer:\n");
        for (int64_t l = 0; l <= n_layer; l++) {
            uint64_t bytes = 0;
            char prefix[32];
            int plen = snprintf(prefix, sizeof prefix, "blk.%lld.", (long long)l);
            for (uint64_t i = 0; i < g.n_tensors; i++)
                if (!strncmp(g.tensors[i].name, prefix, plen)) bytes += g.tensors[i].nbytes;
            printf("  blk.%-4lld %s\n", (long long)l, fmt_bytes(bytes, a, sizeof a));
        }
    }
    int rc = budget ? print_plan(&g, budget) : 0;
    aero_gguf_free(&g);
    return rc;
}
