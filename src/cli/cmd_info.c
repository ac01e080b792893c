// `aerollm info MODEL [--mem SIZE] [--no-tensors]`: what is in a GGUF file (metadata with long arrays
// abbreviated, the tensor table, totals by type, bytes per layer) and what would be resident under a budget.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define STR_MAX 120     // bytes of a string value shown
#define ELEM_STR_MAX 40 // bytes of a string array element shown
#define ARR_SHOW 8      // elements of an array shown

// Length of a prefix of s of at most max bytes that does not cut a UTF-8 sequence.
static size_t utf8_prefix(const char *s, size_t len, size_t max) {
    if (len <= max) return len;
    size_t n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    return n;
}

// Prints a string quoted, escaping quotes, backslashes and control bytes so that every value stays on one line.
static void print_quoted(const char *s, size_t len, size_t max) {
    size_t n = utf8_prefix(s, len, max);
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
        else putchar(c);
    }
    putchar('"');
    if (n < len) printf("...(%zu bytes)", len);
}

// Prints one metadata value; arrays longer than a few elements are abbreviated.
static void print_value(const aero_gguf_value *v, int depth) {
    uint64_t len;
    switch (aero_gguf_value_type(v)) {
    case AERO_GGUF_STRING: {
        const char *s = aero_gguf_value_str(v, &len);
        print_quoted(s, len, STR_MAX);
        break;
    }
    case AERO_GGUF_ARRAY: {
        aero_gguf_type elem = aero_gguf_value_arr_type(v);
        uint64_t n = aero_gguf_value_arr_n(v);
        printf("[%s x %llu]", aero_gguf_type_name(elem), (unsigned long long)n);
        if (n == 0) break;
        uint64_t show = n < ARR_SHOW ? n : ARR_SHOW;
        if (depth > 0 && show > 3) show = 3;
        printf(" [");
        for (uint64_t i = 0; i < show; i++) {
            if (i) printf(", ");
            if (elem == AERO_GGUF_STRING) {
                const char *s = aero_gguf_arr_string(v, i, &len);
                print_quoted(s, len, ELEM_STR_MAX);
            } else if (elem == AERO_GGUF_ARRAY) {
                print_value(aero_gguf_value_arr_at(v, i), depth + 1);
            } else if (elem == AERO_GGUF_FLOAT32 || elem == AERO_GGUF_FLOAT64) {
                double d = 0;
                aero_gguf_arr_f64(v, i, &d);
                printf("%g", d);
            } else if (elem == AERO_GGUF_UINT64) {
                uint64_t x = 0;
                aero_gguf_arr_u64(v, i, &x);
                printf("%llu", (unsigned long long)x);
            } else {
                int64_t x = 0;
                aero_gguf_arr_i64(v, i, &x);
                if (elem == AERO_GGUF_BOOL) fputs(x ? "true" : "false", stdout);
                else printf("%lld", (long long)x);
            }
        }
        printf(n > show ? ", ...]" : "]");
        break;
    }
    case AERO_GGUF_FLOAT32:
    case AERO_GGUF_FLOAT64: printf("%g", aero_gguf_value_f64(v)); break;
    case AERO_GGUF_BOOL: printf(aero_gguf_value_u64(v) ? "true" : "false"); break;
    case AERO_GGUF_INT8:
    case AERO_GGUF_INT16:
    case AERO_GGUF_INT32:
    case AERO_GGUF_INT64: printf("%lld", (long long)aero_gguf_value_i64(v)); break;
    default: printf("%llu", (unsigned long long)aero_gguf_value_u64(v)); break;
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

// Human-readable element count ("8.03 B", "512.0 K").
static const char *fmt_count(uint64_t n, char *buf, size_t cap) {
    if (n >= 1000000000ull) snprintf(buf, cap, "%.2f B", n / 1e9);
    else if (n >= 1000000ull) snprintf(buf, cap, "%.2f M", n / 1e6);
    else if (n >= 1000ull) snprintf(buf, cap, "%.1f K", n / 1e3);
    else snprintf(buf, cap, "%llu", (unsigned long long)n);
    return buf;
}

// The layer count from metadata, or from the highest blk.N in the tensor names; -1 if neither.
static int64_t layer_count(const aero_gguf *g, int64_t from_names) {
    int64_t n;
    if (aero_gguf_block_count(g, &n) && n > 0 && n < (1 << 20)) return n;
    return from_names;
}

// Prints the residency plan the streamer would choose under the budget (plan only: nothing is read).
static int print_plan(const aero_gguf *g, int64_t n_layer, uint64_t budget) {
    aero_error err = {0};
    if (n_layer < 1) return cli_fail("info", "no layer count (block_count metadata or blk.N tensors): cannot plan");
    aero_stream *s;
    char a[32], b[32], c[32], d[32];
    if (aero_stream_open_plan(&s, g, (int)n_layer, budget, &err))
        return cli_fail("info", "no plan under --mem %s: %s", fmt_bytes(budget, a, sizeof a), err.msg);
    const aero_stream_plan *p = aero_stream_get_plan(s);
    printf("\nplan under --mem %s:\n", fmt_bytes(budget, a, sizeof a));
    printf("  resident %s, streamed per pass %s, window %s (%d slots), minimum budget %s\n",
           fmt_bytes(p->resident_bytes, a, sizeof a), fmt_bytes(p->streamed_bytes, b, sizeof b),
           fmt_bytes(p->window_bytes, c, sizeof c), p->n_slots, fmt_bytes(p->min_budget, d, sizeof d));
    printf("  units: %d (%d layers + output head), pinned %d, streamed %d; output head %s; token embeddings %s\n",
           p->n_units, p->n_units - 1, p->n_pinned, p->n_streamed, p->head_resident ? "resident" : "streamed",
           p->embd_resident ? "resident" : "read by row");
    printf("  per unit: ");
    for (int u = 0; u < p->n_units; u++) putchar(p->unit_resident[u] ? 'R' : 's');
    printf("   (R resident, s streamed; the last is the output head)\n");
    aero_stream_print_expert_plan(p, stdout);
    aero_stream_close(s);
    return 0;
}

// Prints bytes per layer, folding runs of equal layers into one line (an 80-layer model takes a few lines).
static void print_layers(const aero_gguf *g, int64_t n_layer) {
    uint64_t *bytes = calloc((size_t)n_layer, sizeof *bytes);
    if (!bytes) return;
    uint64_t outside = 0;
    for (uint64_t i = 0; i < aero_gguf_n_tensors(g); i++) {
        int l = aero_gguf_tensor_layer(aero_gguf_tensor_name(g, i));
        if (l >= 0 && l < n_layer) bytes[l] += aero_gguf_tensor_nbytes(g, i);
        else outside += aero_gguf_tensor_nbytes(g, i);
    }
    char a[32];
    printf("\nbytes per layer:\n");
    for (int64_t l = 0; l < n_layer;) {
        int64_t e = l;
        while (e + 1 < n_layer && bytes[e + 1] == bytes[l]) e++;
        if (e == l) printf("  blk.%-12lld %s\n", (long long)l, fmt_bytes(bytes[l], a, sizeof a));
        else {
            char range[48];
            snprintf(range, sizeof range, "%lld-%lld", (long long)l, (long long)e);
            printf("  blk.%-12s %s each (%lld layers)\n", range, fmt_bytes(bytes[l], a, sizeof a),
                   (long long)(e - l + 1));
        }
        l = e + 1;
    }
    printf("  outside layers    %s (embeddings, output head, final norm, ...)\n", fmt_bytes(outside, a, sizeof a));
    free(bytes);
}

// Entry point: parse, then metadata, tensors, totals, layers and (with --mem) the plan.
int aero_cmd_info(int argc, char **argv) {
    const char *path = NULL;
    bool tensors = true;
    uint64_t budget = 0;
    const char *draft = NULL, *draft_head = NULL;
    int draft_nodes[2] = {16, 0}; // --draft-max (run's default), --draft-tree: the head's nodes a step
    aero_ctx_params kvp = {0}; // the KV cache counted inside --mem, as run and serve count it
    uint64_t gpu_mem = 0;
    int n_tile = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--gpu-mem")) {
            if (i + 1 >= argc || !aero_parse_size(argv[i + 1], &gpu_mem) || !gpu_mem)
                return cli_fail("info", "--gpu-mem needs a size (e.g. 8G)");
            i++;
        } else if (!strcmp(argv[i], "-b") || !strcmp(argv[i], "--batch-size")) {
            char *end;
            long v = i + 1 < argc ? strtol(argv[i + 1], &end, 10) : -1;
            if (v < 1 || v > (1 << 16) || *end) return cli_fail("info", "%s needs a positive integer", argv[i]);
            n_tile = (int)v;
            i++;
        } else if (!strcmp(argv[i], "--mem")) {
            if (i + 1 >= argc) return cli_fail("info", "--mem needs a size (e.g. 512M, 8G)");
            if (!aero_parse_size(argv[++i], &budget)) return cli_fail("info", "bad size '%s' for --mem", argv[i]);
        } else if (!strcmp(argv[i], "--draft") && i + 1 < argc) {
            draft = argv[++i];
        } else if (!strcmp(argv[i], "--draft-head") && i + 1 < argc) {
            draft_head = argv[++i];
        } else if (!strcmp(argv[i], "--draft-max") || !strcmp(argv[i], "--draft-tree")) {
            char *end;
            long v = i + 1 < argc ? strtol(argv[i + 1], &end, 10) : -1;
            if (v < 0 || v > 4096 || *end) return cli_fail("info", "%s needs a count", argv[i]);
            draft_nodes[argv[i][8] == 't'] = (int)v;
            i++;
        } else if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--ctx-size") || !strcmp(argv[i], "-np") ||
                   !strcmp(argv[i], "--parallel")) {
            char *end;
            long v = i + 1 < argc ? strtol(argv[i + 1], &end, 10) : -1;
            if (v < 1 || v > (1 << 24) || *end) return cli_fail("info", "%s needs a positive integer", argv[i]);
            *(argv[i][1] == 'c' || argv[i][2] == 'c' ? &kvp.n_ctx : &kvp.n_seq) = (int)v;
            i++;
        } else if (!strcmp(argv[i], "-ctk") || !strcmp(argv[i], "--cache-type-k") || !strcmp(argv[i], "-ctv") ||
                   !strcmp(argv[i], "--cache-type-v")) {
            int t = i + 1 < argc ? aero_kv_type_parse(argv[i + 1]) : -1;
            if (t < 0)
                return cli_fail("info", "%s expects one of f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1", argv[i]);
            bool is_k = !strcmp(argv[i], "-ctk") || !strcmp(argv[i], "--cache-type-k");
            *(is_k ? &kvp.type_k : &kvp.type_v) = (aero_kv_type)t;
            i++;
        } else if (!strcmp(argv[i], "--no-tensors")) {
            tensors = false;
        } else if (!strcmp(argv[i], "--tensors")) {
            tensors = true;
        } else if (!strcmp(argv[i], "-m")) {
            if (i + 1 >= argc) return cli_fail("info", "-m needs a model file");
            path = argv[++i];
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf(
                "usage: aerollm info MODEL.gguf [--mem SIZE] [--gpu-mem SIZE] [--no-tensors] [-c N] [-np N] [-b N]\n"
                "                         [-ctk T] [-ctv T]\n"
                "  metadata (long arrays abbreviated), tensor table, totals by type, bytes per layer;\n"
                "  --mem SIZE also prints what would be resident and what streamed under that budget\n"
                "  --gpu-mem SIZE the VRAM plan of --device cuda (VRAM-resident units, copy slots) and, with --mem,\n"
                "               which of the others come from host memory and which from disk (-b: tokens a pass)\n"
                "  --draft FILE the plan leaves room for this resident draft model inside --mem (as run does)\n"
                "  --draft-head FILE  the same for a draft head (weights, cache cells, scratch; with -np N the server's\n"
                "               N decoders and the one holding its weights), and with --gpu-mem the VRAM of its layer\n"
                "               on the GPU (--draft-max N, --draft-tree N: the drafted tokens a step it is sized for)\n"
                "  -c N, -np N, -ctk T, -ctv T  the KV cache (context, sequences, cache types) counted inside --mem\n");
            return 0;
        } else if (argv[i][0] != '-' && !path) {
            path = argv[i];
        } else {
            return cli_fail("info", "unknown argument '%s' (aerollm info --help)", argv[i]);
        }
    }
    if (!path) return cli_fail("info", "no model file given (aerollm info MODEL.gguf)");
    aero_gguf *g = NULL;
    aero_error err = {0};
    if (aero_model_file_load(&g, path, &err)) return cli_fail("info", "%s", err.msg);
    uint32_t n_files = aero_gguf_n_files(g);
    uint64_t n_tensors = aero_gguf_n_tensors(g), n_kv = aero_gguf_n_kv(g);
    uint64_t file_bytes = 0;
    for (uint32_t f = 0; f < n_files; f++) file_bytes += aero_gguf_file_size(g, f);
    char a[32], b[32];
    printf("file: %s (GGUF v%u, %u file%s, %s, alignment %llu)\n", path, aero_gguf_version(g), n_files,
           n_files > 1 ? "s" : "", fmt_bytes(file_bytes, a, sizeof a), (unsigned long long)aero_gguf_alignment(g));
    printf("\nmetadata (%llu keys):\n", (unsigned long long)n_kv);
    for (uint64_t i = 0; i < n_kv; i++) {
        const aero_gguf_value *v = aero_gguf_kv_value(g, i);
        printf("  %-40s %-8s ", aero_gguf_kv_key(g, i), aero_gguf_type_name(aero_gguf_value_type(v)));
        print_value(v, 0);
        putchar('\n');
    }
    uint64_t by_type[AERO_DT_COUNT] = {0}, count_type[AERO_DT_COUNT] = {0}, total = 0, params = 0;
    int64_t max_blk = -1;
    for (uint64_t i = 0; i < n_tensors; i++) {
        uint32_t type = aero_gguf_tensor_type(g, i);
        uint64_t nbytes = aero_gguf_tensor_nbytes(g, i);
        by_type[type] += nbytes;
        count_type[type]++;
        total += nbytes;
        params += aero_gguf_tensor_n_elements(g, i);
        int l = aero_gguf_tensor_layer(aero_gguf_tensor_name(g, i));
        if (l > max_blk && l < (1 << 20)) max_blk = l;
    }
    if (tensors && n_tensors) {
        printf("\ntensors (%llu):\n", (unsigned long long)n_tensors);
        printf("  %-32s %-6s %-24s %-4s %-14s %s\n", "name", "type", "shape (ne0 first)", "file", "offset", "size");
        for (uint64_t i = 0; i < n_tensors; i++) {
            const uint64_t *ne = aero_gguf_tensor_shape(g, i);
            char shape[96] = "";
            for (uint32_t d = 0; d < aero_gguf_tensor_n_dims(g, i); d++)
                snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%llu", d ? " x " : "",
                         (unsigned long long)ne[d]);
            printf("  %-32s %-6s %-24s %-4u %-14llu %s\n", aero_gguf_tensor_name(g, i),
                   aero_dtype_name(aero_gguf_tensor_type(g, i)), shape, aero_gguf_tensor_file(g, i),
                   (unsigned long long)aero_gguf_tensor_offset(g, i),
                   fmt_bytes(aero_gguf_tensor_nbytes(g, i), a, sizeof a));
        }
    }
    printf("\ntotals by type:\n");
    for (int t = 0; t < AERO_DT_COUNT; t++)
        if (count_type[t])
            printf("  %-7s %5llu tensors  %12s  %5.1f%%\n", aero_dtype_name(t), (unsigned long long)count_type[t],
                   fmt_bytes(by_type[t], a, sizeof a), total ? 100.0 * by_type[t] / total : 0.0);
    printf("  %-7s %5llu tensors  %12s  %s parameters\n", "all", (unsigned long long)n_tensors,
           fmt_bytes(total, a, sizeof a), fmt_count(params, b, sizeof b));
    int64_t n_layer = layer_count(g, max_blk + 1);
    if (n_layer > 0 && max_blk >= 0) print_layers(g, n_layer);
    if (budget && draft) { // the drafter is resident and counted inside --mem, as cli_session_open does
        aero_gguf *dg = NULL;
        aero_error derr = {0};
        if (aero_model_file_load(&dg, draft, &derr)) {
            aero_gguf_close(g);
            return cli_fail("info", "--draft %s: %s", draft, derr.msg);
        }
        uint64_t db = 0;
        for (uint64_t i = 0; i < aero_gguf_n_tensors(dg); i++) db += aero_gguf_tensor_nbytes(dg, i);
        aero_gguf_close(dg);
        printf("\ndraft model %s: %s resident, counted inside --mem %s\n", draft, fmt_bytes(db, a, sizeof a),
               fmt_bytes(budget, b, sizeof b));
        if (db >= budget) {
            aero_gguf_close(g);
            return cli_fail("info", "the draft model alone takes all of --mem");
        }
        budget -= db;
    }
    uint64_t kvb = 0;
    int n_ctx = 0;
    aero_error kerr = {0};
    if (aero_gguf_kv_bytes(g, &kvp, &kvb, &n_ctx, &kerr)) {
        aero_gguf_close(g);
        return cli_fail("info", "%s", kerr.msg);
    }
    if (kvb) { // a model (not a vocabulary-only file): its KV cache
        printf("\nKV cache: %s for %d tokens x %d sequence%s (K %s, V %s: %.1f KiB per token)%s\n",
               fmt_bytes(kvb, a, sizeof a), n_ctx, kvp.n_seq > 1 ? kvp.n_seq : 1, kvp.n_seq > 1 ? "s" : "",
               aero_dtype_name(aero_kv_type_dtype(kvp.type_k, false)),
               aero_dtype_name(aero_kv_type_dtype(kvp.type_v, false)),
               kvb / 1024.0 / n_ctx / (kvp.n_seq > 1 ? kvp.n_seq : 1), budget ? ", counted inside --mem" : "");
        if (budget && kvb >= budget) {
            aero_gguf_close(g);
            return cli_fail("info",
                            "the KV cache (%s) takes all of --mem %s: no budget is left for the weights "
                            "(lower -c or quantize the cache with -ctk/-ctv)",
                            fmt_bytes(kvb, a, sizeof a), fmt_bytes(budget, b, sizeof b));
        }
        if (budget) budget -= kvb;
    }
    if (draft_head) { // as run and serve count it: host bytes inside --mem, its layer's VRAM inside --gpu-mem
        uint64_t hb = 0, hv = 0;
        int nodes = draft_nodes[0] > draft_nodes[1] ? draft_nodes[0] : draft_nodes[1];
        int seqs = kvp.n_seq > 0 ? kvp.n_seq + 1 : 1;
        aero_error herr = {0};
        if (aero_spec_head_mem(draft_head, n_ctx, seqs, nodes, n_tile, gpu_mem != 0, &hb, &hv, &herr)) {
            aero_gguf_close(g);
            return cli_fail("info", "--draft-head %s: %s", draft_head, herr.msg);
        }
        printf("\ndraft head %s: %s in host memory (weights, cache cells, scratch of %d decoder%s)%s", draft_head,
               fmt_bytes(hb, a, sizeof a), seqs, seqs > 1 ? "s" : "", budget ? ", counted inside --mem" : "");
        if (hv) printf("; its layer on the GPU: %s of VRAM inside --gpu-mem", fmt_bytes(hv, b, sizeof b));
        printf("\n");
        if (budget && hb >= budget) {
            aero_gguf_close(g);
            return cli_fail("info", "the draft head alone takes all of --mem");
        }
        if (budget) budget -= hb;
        kvp.gpu_head_vram = hv;
    }
    // multi-token-prediction blocks (DeepSeek's nextn_predict_layers) are counted in block_count but never run
    char nkey[160];
    int64_t n_nextn = 0;
    const char *arch_name = aero_gguf_get_str(g, "general.architecture");
    snprintf(nkey, sizeof nkey, "%s.nextn_predict_layers", arch_name ? arch_name : "");
    if (aero_gguf_get_i64(g, nkey, &n_nextn) && n_nextn > 0 && n_nextn < n_layer) n_layer -= n_nextn;
    int rc = budget && !gpu_mem ? print_plan(g, n_layer, budget) : 0;
    aero_error gerr = {0};
    if (!rc && gpu_mem && aero_gpu_plan_print(g, &kvp, n_tile, gpu_mem, budget, draft_head != NULL, stdout, &gerr))
        rc = cli_fail("info", "%s", gerr.msg);
    aero_gguf_close(g);
    return rc;
}
