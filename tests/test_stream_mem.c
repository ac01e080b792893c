// The memory budget under real memory pressure: a synthetic model more than 4x the budget runs inside
// ../shared/tools/memlimit with a limit of budget + KV cache + 128 MiB (page cache included) and completes, and
// the engine's peak RSS stays under budget + KV + activations + 64 MiB. Skipped where memlimit cannot make a
// memory cgroup. The model is written here; the run happens in a child process (this binary with --child).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "modules.h" // the module headers: a white-box test

#include "check.h"
#include "helpers.h"

#define MEMLIMIT "../shared/tools/memlimit"

enum { DIM = 1024, HEADS = 16, KV_HEADS = 8, HD = 64, FF = 2816, LAYERS = 13, N_CTX = 64, N_PROMPT = 12, N_GEN = 4 };

static uint64_t rng = 0x2545F4914F6CDD1Dull;

// Rows of random F16 values in [-0.03, 0.03] (exact halves, no quantizer needed: fast for 300 MB).
static bool fill_f16(void *ctx, void *dst, uint64_t row0, uint64_t n_rows, aero_error *err) {
    uint64_t cols = (uint64_t)(uintptr_t)ctx;
    uint16_t *h = dst;
    for (uint64_t i = 0; i < n_rows * cols; i++)
        h[i] = (uint16_t)(0x2000 | (test_xorshift64(&rng) & 0x83ff)); // sign, mantissa; exponent 2^-7
    (void)row0, (void)err;
    return true;
}

static bool fill_norm(void *ctx, void *dst, uint64_t nbytes, aero_error *err) {
    float *f = dst;
    for (uint64_t i = 0; i < nbytes / 4; i++) f[i] = 1.0f;
    (void)ctx, (void)err;
    return true;
}

static bool add(aero_gguf_writer *w, const char *name, int rows, int cols) {
    aero_error err = {0};
    uint64_t ne[2] = {(uint64_t)cols, (uint64_t)rows};
    aero_status st =
        rows == 1 ? aero_gguf_add_tensor_fill(w, name, AERO_DT_F32, 1, ne, fill_norm, NULL, &err)
                  : aero_gguf_add_tensor_rows(w, name, AERO_DT_F16, 2, ne, fill_f16, (void *)(uintptr_t)cols, &err);
    if (st) fprintf(stderr, "%s: %s\n", name, err.msg);
    return !st;
}

static bool write_model(const char *path) {
    aero_error err = {0};
    aero_gguf_writer *w = aero_gguf_writer_new(0);
    const test_llama hp = {LAYERS, DIM, FF, HEADS, KV_HEADS, 256, 1e-5f, 10000.0f};
    int vocab = test_llama_header(w, &hp, SHARED_DATA "/models/stories260K.gguf");
    bool ok = vocab > 0 && add(w, "token_embd.weight", vocab, DIM) && add(w, "output_norm.weight", 1, DIM) &&
              add(w, "output.weight", vocab, DIM);
    for (int l = 0; l < LAYERS && ok; l++) {
        char n[64];
#define ADD(suffix, r, c) (snprintf(n, sizeof n, "blk.%d." suffix, l), add(w, n, r, c))
        ok = ADD("attn_norm.weight", 1, DIM) && ADD("attn_q.weight", HEADS * HD, DIM) &&
             ADD("attn_k.weight", KV_HEADS * HD, DIM) && ADD("attn_v.weight", KV_HEADS * HD, DIM) &&
             ADD("attn_output.weight", DIM, HEADS * HD) && ADD("ffn_norm.weight", 1, DIM) &&
             ADD("ffn_gate.weight", FF, DIM) && ADD("ffn_up.weight", FF, DIM) && ADD("ffn_down.weight", DIM, FF);
    }
    if (ok && aero_gguf_write(w, path, &err)) {
        fprintf(stderr, "write %s: %s\n", path, err.msg);
        ok = false;
    }
    aero_gguf_writer_free(w);
    return ok;
}

// KV cache bytes of the child's context (F16 keys and values) and a generous bound on its activations
// (the forward's per-chunk buffers for 512 tokens, the caller's logits, attention scores).
static uint64_t kv_bytes(void) { return 2ull * LAYERS * N_CTX * KV_HEADS * HD * 2; }
static uint64_t act_bytes(int vocab) {
    return 4ull * 512 * (4 * DIM + 2 * HEADS * HD + 2 * KV_HEADS * HD + 2 * FF) + 4ull * vocab * (N_PROMPT + 1) +
           4ull * 2 * (N_CTX + 512) + (8ull << 20); // + per-thread matmul scratch
}

// The child: load under the budget, prefill, decode, report peak RSS against the bound.
static int child(const char *path, uint64_t budget) {
    aero_model_params p;
    aero_model_params_default(&p);
    p.path = path;
    p.n_threads = 2;
    p.mem_budget = budget;
    aero_model *m;
    aero_ctx *c;
    aero_error err = {0};
    if (aero_model_load(&m, &p, &err)) {
        fprintf(stderr, "child: load: %s\n", err.msg);
        return 1;
    }
    aero_ctx_params cp = {.n_ctx = N_CTX};
    if (aero_ctx_new(&c, m, &cp, &err)) {
        fprintf(stderr, "child: ctx: %s\n", err.msg);
        return 1;
    }
    int nv = aero_model_hparams(m)->n_vocab;
    float *logits = malloc(sizeof(float) * nv * N_PROMPT);
    int32_t tok[N_PROMPT], pos[N_PROMPT];
    for (int i = 0; i < N_PROMPT; i++) tok[i] = 3 + i * 17, pos[i] = i;
    aero_batch b = {.n = N_PROMPT, .tokens = tok, .pos = pos};
    if (aero_decode(c, &b, logits, &err)) {
        fprintf(stderr, "child: prefill: %s\n", err.msg);
        return 1;
    }
    int32_t t = aero_argmax(logits + (size_t)(N_PROMPT - 1) * nv, nv);
    for (int i = 0; i < N_GEN; i++) {
        int32_t ps = N_PROMPT + i;
        aero_batch one = {.n = 1, .tokens = &t, .pos = &ps};
        if (aero_decode(c, &one, logits, &err)) {
            fprintf(stderr, "child: decode: %s\n", err.msg);
            return 1;
        }
        t = aero_argmax(logits, nv);
    }
    aero_stream *s = aero_model_stream(m);
    const aero_stream_plan *pl = aero_stream_get_plan(s);
    aero_stream_stats st;
    aero_stream_get_stats(s, &st);
    uint64_t peak = aero_peak_rss(), held = aero_stream_weight_bytes_held(s);
    uint64_t bound = budget + kv_bytes() + act_bytes(nv) + (64ull << 20);
    printf("child: model %.1f MB, budget %.1f MB, held %.1f MB (%d pinned, %d streamed, window %.1f MB, %s), "
           "%llu passes, %.1f MB read, peak RSS %.1f MB, bound %.1f MB\n",
           aero_model_weight_bytes(m) / 1e6, budget / 1e6, held / 1e6, pl->n_pinned, pl->n_streamed,
           pl->window_bytes / 1e6, pl->direct ? "O_DIRECT" : "buffered", (unsigned long long)st.passes,
           st.bytes_streamed / 1e6, peak / 1e6, bound / 1e6);
    CHECKF(aero_model_weight_bytes(m) >= 4 * budget, "model %llu is at least 4x the budget",
           (unsigned long long)aero_model_weight_bytes(m));
    CHECKF(held <= budget, "held %llu <= budget", (unsigned long long)held);
    CHECKF(peak <= bound, "peak RSS %llu <= bound %llu", (unsigned long long)peak, (unsigned long long)bound);
    CHECK(st.passes == 1 + N_GEN && pl->n_streamed > 0);
    free(logits);
    aero_ctx_free(c);
    aero_model_free(m);
    return check_done("test_stream_mem child");
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "--child")) return child(argv[2], strtoull(argv[3], NULL, 10));
    require_shared_data();
    if (access(MEMLIMIT, X_OK)) {
        printf("skipped: %s not found\n", MEMLIMIT);
        return 77;
    }
    int probe = system(MEMLIMIT " 64M true 2>/dev/null");
    if (!WIFEXITED(probe) || WEXITSTATUS(probe) != 0) {
        printf("skipped: memlimit cannot make a memory cgroup here (exit %d)\n",
               WIFEXITED(probe) ? WEXITSTATUS(probe) : -1);
        return 77;
    }
    char path[64];
    snprintf(path, sizeof path, "/tmp/aero_test_stream_mem_%d.gguf", (int)getpid());
    if (!write_model(path)) {
        unlink(path);
        CHECK(0);
        return check_done("test_stream_mem");
    }
    // the smallest legal budget plus a little: the model is more than 4x larger
    aero_gguf g;
    aero_error err = {0};
    CHECK(!aero_gguf_open(&g, path, &err));
    aero_stream_params sp = {.output_tensor = "output.weight", .embd_tensor = "token_embd.weight", .plan_only = true};
    aero_stream *s;
    CHECK(!aero_stream_open(&s, &g, LAYERS, &sp, &err));
    uint64_t budget = aero_stream_get_plan(s)->min_budget + (2u << 20);
    aero_stream_close(s);
    aero_gguf_free(&g);
    uint64_t limit = budget + kv_bytes() + (128ull << 20);
    char cmd[512];
    snprintf(cmd, sizeof cmd, MEMLIMIT " %llu %s --child %s %llu", (unsigned long long)limit, argv[0], path,
             (unsigned long long)budget);
    printf("%s\n", cmd);
    fflush(stdout);
    int rc = system(cmd);
    CHECKF(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "the run under memlimit completes (status %d)",
           WIFEXITED(rc) ? WEXITSTATUS(rc) : -1);
    unlink(path);
    return check_done("test_stream_mem");
}
