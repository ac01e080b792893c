// Streaming end to end through the model: the logits of a prompt and of greedy decoding are bitwise identical
// with --mem at the smallest legal budget (2 ring slots), between the 2-slot and 3-slot minimums (prefetch
// lowered), at a middle budget and fully resident, for stories260K, for the bundled teacher (whose output head,
// larger than a layer, is then streamed in row blocks) and for a synthetic model of mixed tensor types whose
// 600-token prompt (two tiles of 512) takes one pass.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "modules.h" // the module headers: a white-box test

#include "check.h"
#include "helpers.h"

typedef struct {
    float *logits; // (n_prompt + n_gen) rows of n_vocab
    int32_t *ids;  // n_gen greedy tokens
    aero_stream_plan plan;
    aero_stream_stats stats;
    uint64_t held;
} outcome;

// Loads the model under the budget, prefills the prompt (logits of every token) and greedy-decodes n_gen tokens.
static bool run(const char *path, uint64_t budget, const int32_t *prompt, int n_prompt, int n_gen, outcome *o) {
    aero_model_params p;
    aero_model_params_default(&p);
    p.path = path;
    p.n_threads = 2;
    p.mem_budget = budget;
    aero_model *m = NULL;
    aero_ctx *c = NULL;
    aero_error err = {0};
    bool ok = false;
    memset(o, 0, sizeof *o);
    if (aero_model_load(&m, &p, &err)) {
        fprintf(stderr, "load %s --mem %llu: %s\n", path, (unsigned long long)budget, err.msg);
        return false;
    }
    aero_ctx_params cp = {.n_ctx = n_prompt + n_gen + 1};
    if (aero_ctx_new(&c, m, &cp, &err)) goto out;
    int nv = aero_model_hparams(m)->n_vocab;
    o->logits = malloc(sizeof(float) * nv * (n_prompt + n_gen));
    o->ids = malloc(sizeof(int32_t) * n_gen);
    int32_t *pos = malloc(sizeof(int32_t) * n_prompt);
    for (int i = 0; i < n_prompt; i++) pos[i] = i;
    aero_batch b = {.n = n_prompt, .tokens = prompt, .pos = pos};
    aero_status st = aero_decode(c, &b, o->logits, &err);
    free(pos);
    if (st) goto out;
    int32_t t = aero_argmax(o->logits + (size_t)(n_prompt - 1) * nv, nv);
    for (int i = 0; i < n_gen; i++) {
        o->ids[i] = t;
        int32_t ps = n_prompt + i;
        aero_batch one = {.n = 1, .tokens = &t, .pos = &ps};
        float *row = o->logits + (size_t)(n_prompt + i) * nv;
        if (aero_decode(c, &one, row, &err)) goto out;
        t = aero_argmax(row, nv);
    }
    aero_stream *s = aero_model_stream(m);
    o->plan = *aero_stream_get_plan(s);
    o->plan.unit_resident = NULL;
    aero_stream_get_stats(s, &o->stats);
    o->held = aero_stream_weight_bytes_held(s);
    ok = true;
out:
    if (!ok) fprintf(stderr, "%s --mem %llu: %s\n", path, (unsigned long long)budget, err.msg);
    aero_ctx_free(c);
    aero_model_free(m);
    return ok;
}

// Runs the three budgets and compares logits and tokens bit for bit.
static void check_identity(const char *name, const char *path, const int32_t *prompt, int n_prompt, int n_gen,
                           bool want_parts) {
    outcome res, lo, mid;
    if (!run(path, 0, prompt, n_prompt, n_gen, &res)) {
        CHECKF(0, "%s resident run", name);
        return;
    }
    uint64_t min = res.plan.min_budget, all = res.plan.resident_bytes;
    uint64_t budgets[3] = {min, 0, (min + all) / 2}; // [1]: half a slot over the minimum, set after the first run
    outcome low2, *outs[3] = {&lo, &low2, &mid};
    aero_model_params pp;
    aero_model_params_default(&pp);
    int nv = 0;
    {
        aero_gguf g;
        aero_error err = {0};
        CHECK(!aero_gguf_open(&g, path, &err));
        nv = (int)aero_gguf_tensor(&g, "token_embd.weight")->ne[1];
        aero_gguf_free(&g);
    }
    size_t nbytes = sizeof(float) * nv * (n_prompt + n_gen);
    for (int k = 0; k < 3; k++) {
        outcome *o = outs[k];
        if (k == 1) {
            if (lo.plan.n_slots != 2 || lo.plan.prefetch_asked != 2) {
                CHECKF(0, "%s: %d slots at the minimum (prefetch asked %d), want 2", name, lo.plan.n_slots,
                       lo.plan.prefetch_asked);
                continue;
            }
            budgets[1] = min + lo.plan.window_bytes / 4; // below the 3-slot minimum, min + one slot
        }
        if (!run(path, budgets[k], prompt, n_prompt, n_gen, o)) {
            CHECKF(0, "%s run at --mem %llu", name, (unsigned long long)budgets[k]);
            continue;
        }
        printf("%s --mem %llu: %d pinned, %d streamed, head %s (%d blocks), window %llu (%d slots), %llu passes, "
               "%.2f MB read, held %llu\n",
               name, (unsigned long long)budgets[k], o->plan.n_pinned, o->plan.n_streamed,
               o->plan.head_resident ? "resident" : "streamed", o->plan.head_parts,
               (unsigned long long)o->plan.window_bytes, o->plan.n_slots, (unsigned long long)o->stats.passes,
               o->stats.bytes_streamed / 1e6, (unsigned long long)o->held);
        if (k < 2) // the smallest budgets: two ring slots (prefetch lowered from the default 2)
            CHECKF(o->plan.n_slots == 2 && o->plan.prefetch == 1, "%s: %d slots at --mem %llu", name, o->plan.n_slots,
                   (unsigned long long)budgets[k]);
        CHECKF(o->plan.n_streamed > 0, "%s: something is streamed at --mem %llu", name, (unsigned long long)budgets[k]);
        CHECKF(o->held <= budgets[k], "%s: %llu bytes held over the budget %llu", name, (unsigned long long)o->held,
               (unsigned long long)budgets[k]);
        CHECKF(o->stats.bytes_streamed >= o->stats.passes * o->plan.streamed_bytes, "%s: every pass reads its units",
               name);
        CHECKF(!memcmp(o->logits, res.logits, nbytes), "%s: logits at --mem %llu differ from resident", name,
               (unsigned long long)budgets[k]);
        CHECKF(!memcmp(o->ids, res.ids, sizeof(int32_t) * n_gen), "%s: greedy tokens at --mem %llu differ", name,
               (unsigned long long)budgets[k]);
        free(o->logits);
        free(o->ids);
    }
    if (want_parts) CHECKF(lo.plan.head_parts > 1, "%s: the head is streamed in row blocks at the minimum", name);
    CHECKF(lo.plan.n_pinned < mid.plan.n_pinned || lo.plan.head_resident != mid.plan.head_resident,
           "%s: the middle budget pins more than the smallest", name);
    // passes: one for the whole prompt (however many 512-token tiles it has) plus one per generated token
    CHECKF(res.stats.passes == (uint64_t)(1 + n_gen), "%s: %llu passes", name, (unsigned long long)res.stats.passes);
    free(res.logits);
    free(res.ids);
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(void) { return (float)test_xorshift_sym(&rng); }

// Adds a (rows, cols) tensor of type t holding random values of the given scale (offset for norms).
static void add(aero_gguf_writer *w, const char *name, aero_dtype t, int rows, int cols, float scale, float offset) {
    float *x = malloc(sizeof(float) * cols);
    size_t rb = aero_dtype_row_bytes(t, cols);
    char *data = malloc(rb * rows);
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < cols; c++) x[c] = offset + scale * frand();
        if (t == AERO_DT_F32) memcpy(data + rb * r, x, rb);
        else aero_quantize_row(t, x, data + rb * r, cols);
    }
    test_add_tensor(w, name, t, rows, cols, data);
    free(data);
    free(x);
}

enum { DIM = 256, HEADS = 8, KV_HEADS = 4, HD = 32, FF = 512, LAYERS = 5 };

// A llama model with the stories260K tokenizer and tensors of several types (rows not 4 KiB multiples; the
// types with fast kernels, so that the 600-token prompt stays quick).
static bool write_synthetic(const char *path, int *vocab) {
    aero_error err = {0};
    aero_gguf_writer *w = aero_gguf_writer_new(0);
    const test_llama hp = {LAYERS, DIM, FF, HEADS, KV_HEADS, 1024, 1e-5f, 10000.0f};
    *vocab = test_llama_header(w, &hp, SHARED_DATA "/models/stories260K.gguf");
    if (*vocab < 0) {
        aero_gguf_writer_free(w);
        return false;
    }
    add(w, "token_embd.weight", AERO_DT_Q4_0, *vocab, DIM, 1.0f, 0);
    add(w, "output_norm.weight", AERO_DT_F32, 1, DIM, 0.2f, 1.0f);
    add(w, "output.weight", AERO_DT_Q8_0, *vocab, DIM, 0.1f, 0);
    for (int l = 0; l < LAYERS; l++) {
        char n[64];
#define ADD(suffix, t, r, c, s, o) (snprintf(n, sizeof n, "blk.%d." suffix, l), add(w, n, t, r, c, s, o))
        ADD("attn_norm.weight", AERO_DT_F32, 1, DIM, 0.2f, 1.0f);
        ADD("attn_q.weight", AERO_DT_Q8_0, HEADS * HD, DIM, 0.1f, 0);
        ADD("attn_k.weight", AERO_DT_Q8_0, KV_HEADS * HD, DIM, 0.1f, 0);
        ADD("attn_v.weight", AERO_DT_Q4_0, KV_HEADS * HD, DIM, 0.1f, 0);
        ADD("attn_output.weight", AERO_DT_Q8_0, DIM, HEADS * HD, 0.1f, 0);
        ADD("ffn_norm.weight", AERO_DT_F32, 1, DIM, 0.2f, 1.0f);
        ADD("ffn_gate.weight", AERO_DT_Q4_0, FF, DIM, 0.1f, 0);
        ADD("ffn_up.weight", AERO_DT_Q4_0, FF, DIM, 0.1f, 0);
        ADD("ffn_down.weight", AERO_DT_Q8_0, DIM, FF, 0.1f, 0);
    }
    bool ok = !aero_gguf_write(w, path, &err);
    if (!ok) fprintf(stderr, "write %s: %s\n", path, err.msg);
    aero_gguf_writer_free(w);
    return ok;
}

int main(void) {
    require_shared_data();
    alarm(300);
    int32_t story[24] = {1, 403, 407, 261, 378};
    for (int i = 5; i < 24; i++) story[i] = (int32_t)(3 + (i * 37) % 500);
    check_identity("stories260K", SHARED_DATA "/models/stories260K.gguf", story, 24, 16, false);
    int32_t once[8] = {1, 9038, 2501, 263, 931, 29892, 727, 471}; // ids below the teacher's vocabulary
    for (int i = 0; i < 8; i++) once[i] %= 8192;
    check_identity("teacher", "models/aero-teacher-34M-Q8_0.gguf", once, 8, 12, true);

    char path[64];
    snprintf(path, sizeof path, "/tmp/aero_test_stream_model_%d.gguf", (int)getpid());
    int vocab = 0;
    if (!write_synthetic(path, &vocab)) {
        CHECKF(0, "cannot write %s", path);
    } else {
        enum { NP = 600 };
        int32_t *prompt = malloc(sizeof(int32_t) * NP);
        prompt[0] = 1;
        for (int i = 1; i < NP; i++) prompt[i] = (int32_t)(3 + (i * 7919) % (vocab - 3));
        check_identity("synthetic", path, prompt, NP, 6, false);
        free(prompt);
    }
    unlink(path);
    return check_done("test_stream_model");
}
