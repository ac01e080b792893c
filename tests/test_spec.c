// Speculative decoding, greedy: the output is token-identical to plain greedy decoding (a loop written here on
// aero_decode alone) for stories260K with a real imperfect drafter (stories260K-Q4_0), a perfect one (the
// teacher itself) and prompt-lookup n-grams; chains (fixed, adaptive, cut by p_min) and trees; several prompts
// and lengths, the context filling up, repetition penalties, resident and streamed teachers; trees of both
// policies (best-first, and grown by cost with measured or fixed costs). After every step
// the target cache holds exactly the committed tokens but the last (rollback). Plus the refusals: a drafter
// with another vocabulary, a zero draft length, a drafter whose context is too short. The same for a draft head
// (random weights, written here): every configuration identical to plain greedy, and a head made for another
// teacher refused.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modules.h" // the module headers: a white-box test
#include "speculative/spec_internal.h" // the decoders' recorded features

#include "check.h"
#include "helpers.h"

#define MODELS SHARED_DATA "/models/"

static const char *g_head; // a draft head file: compare() drafts with it (the drafter argument NULL)

static aero_model *load(const char *path, int threads, uint64_t mem) { return test_load_model(path, threads, mem); }

static aero_sampler *greedy_sampler(int n_vocab, float repeat_penalty) {
    aero_sampler_params sp;
    aero_sampler_params_default(&sp);
    sp.temp = 0;
    sp.repeat_penalty = repeat_penalty;
    sp.repeat_last_n = 16;
    return aero_sampler_new(&sp, n_vocab);
}

// Plain greedy decoding with the CLI's stopping rule: n tokens, or until the context is full.
static int plain(aero_model *m, const int32_t *prompt, int np, int n, int n_ctx, float rp, int32_t *out) {
    aero_ctx *c;
    aero_error err = {0};
    aero_ctx_params cp = {.n_ctx = n_ctx};
    if (aero_ctx_new(&c, m, &cp, &err)) return -1;
    int nv = aero_model_hparams(m)->n_vocab;
    float *logits = malloc(sizeof(float) * nv * np);
    int32_t *pos = malloc(sizeof(int32_t) * np);
    for (int i = 0; i < np; i++) pos[i] = i;
    aero_sampler *s = greedy_sampler(nv, rp);
    for (int i = 0; i < np; i++) aero_sampler_accept(s, prompt[i]);
    aero_batch b = {.n = np, .tokens = prompt, .pos = pos};
    int got = -1;
    if (aero_decode(c, &b, logits, &err)) goto done;
    const float *last = logits + (size_t)(np - 1) * nv;
    for (got = 0; got < n;) {
        int32_t t = aero_sampler_sample(s, last);
        aero_sampler_accept(s, t);
        out[got++] = t;
        int32_t p = np + got - 1;
        if (got >= n || p >= n_ctx) break;
        aero_batch one = {.n = 1, .tokens = &t, .pos = &p};
        if (aero_decode(c, &one, logits, &err)) break;
        last = logits;
    }
done:
    aero_sampler_free(s);
    free(pos);
    free(logits);
    aero_ctx_free(c);
    return got;
}

// Speculative greedy decoding of up to n tokens; checks the target cache length after every step.
static int spec(aero_model *t, aero_model *d, const aero_spec_params *sp, const int32_t *prompt, int np, int n,
                int n_ctx, float rp, int32_t *out, aero_spec_stats *stats) {
    aero_ctx *c;
    aero_error err = {0};
    aero_ctx_params cp = {.n_ctx = n_ctx};
    if (aero_ctx_new(&c, t, &cp, &err)) return -1;
    aero_spec *s = NULL;
    int got = -1;
    aero_sampler *smp = greedy_sampler(aero_model_hparams(t)->n_vocab, rp);
    if (aero_spec_new(&s, c, 0, d, sp, &err) || aero_spec_begin(s, prompt, np, n, &err)) {
        fprintf(stderr, "spec: %s\n", err.msg);
        goto done;
    }
    for (int i = 0; i < np; i++) aero_sampler_accept(smp, prompt[i]);
    got = 0;
    int32_t buf[1100];
    while (got < n && aero_spec_n_tokens(s) <= n_ctx) {
        int k = 0;
        if (aero_spec_step(s, smp, n - got, buf, &k, &err)) {
            fprintf(stderr, "step: %s\n", err.msg);
            got = -1;
            break;
        }
        CHECKF(k >= 1 && k <= n - got, "step yields 1..%d tokens, got %d", n - got, k);
        memcpy(out + got, buf, sizeof(int32_t) * k);
        got += k;
        CHECKF(aero_kv_len(c, 0) == aero_spec_n_tokens(s) - 1, "target cache %d == committed %d - 1", aero_kv_len(c, 0),
               aero_spec_n_tokens(s));
    }
    if (stats) aero_spec_get_stats(s, stats);
done:
    aero_sampler_free(smp);
    aero_spec_free(s);
    aero_ctx_free(c);
    return got;
}

static int tokenize(aero_model *m, const char *text, int32_t *out, int cap) {
    int32_t *ids = NULL;
    size_t n = 0;
    aero_error err = {0};
    if (aero_tokenize(aero_model_tokenizer(m), text, strlen(text), true, false, &ids, &n, &err)) return 0;
    int k = (int)n < cap ? (int)n : cap;
    memcpy(out, ids, sizeof(int32_t) * k);
    free(ids);
    return k;
}

typedef struct {
    const char *name;
    int draft_max, tree;
    bool adaptive;
    float p_min;
    int n_batch; // prompt tokens per prefill pass (0: default): small ones leave a long last chunk to verify
    bool cost;   // the COST tree policy
    bool fixed_costs;
    float cost_v, cost_d; // its fixed costs
} config;

static const config configs[] = {
    {"chain 1", 1, 0, false, 0},
    {"chain 4", 4, 0, false, 0},
    {"chain adaptive", 16, 0, true, 0},
    {"chain 8 p_min 0.6", 8, 0, false, 0.6f},
    {"tree 8", 4, 8, false, 0},
    {"tree 48", 12, 48, false, 0},
    {"tree 32 p_min 0.05", 16, 32, false, 0.05f},
    {"tree 24 adaptive", 10, 24, true, 0},
    {"chain 6, prompt in passes of 5", 6, 0, false, 0, 5},
    {"tree 12, prompt in passes of 7", 6, 12, false, 0, 7},
    {"tree cost 64, measured costs", 12, 64, true, 0, 0, true},
    {"tree cost 128, free", 16, 128, true, 0, 0, true, true, 0, 0},
    {"tree cost 32, fixed costs", 8, 32, true, 0, 0, true, true, 0.02f, 0.05f},
    {"tree cost 48 p_min 0.05, prompt in passes of 3", 12, 48, true, 0.05f, 3, true, true, 0.005f, 0.01f},
};
static const char *prompts[] = {"", "Once upon a time", "Tom and Lily went to the park. Tom said"};

// One comparison: plain vs speculative, same prompt, length, context and penalty.
static void compare(const char *what, aero_model *t, aero_model *d, const config *cf, const int32_t *prompt, int np,
                    int n, int n_ctx, float rp, aero_spec_stats *stats) {
    int32_t *a = malloc(sizeof(int32_t) * (n + 1)), *b = malloc(sizeof(int32_t) * (n + 1));
    aero_spec_params sp;
    aero_spec_params_default(&sp);
    sp.draft_max = cf->draft_max;
    sp.tree_nodes = cf->tree;
    sp.adaptive = cf->adaptive;
    sp.p_min = cf->p_min;
    sp.n_batch = cf->n_batch;
    sp.tree_policy = cf->cost ? AERO_SPEC_TREE_COST : AERO_SPEC_TREE_BEST_FIRST;
    sp.cost_fixed = cf->fixed_costs;
    sp.cost_verify_token = cf->cost_v;
    sp.cost_draft_token = cf->cost_d;
    sp.sampling.temp = 0;
    sp.draft_head = g_head;
    int na = plain(t, prompt, np, n, n_ctx, rp, a);
    int nb = spec(t, d, &sp, prompt, np, n, n_ctx, rp, b, stats);
    bool same = na == nb && na > 0 && !memcmp(a, b, sizeof(int32_t) * na);
    if (!same) {
        int i = 0;
        while (i < na && i < nb && a[i] == b[i]) i++;
        fprintf(stderr,
                "%s, %s, %d prompt tokens, n %d, ctx %d, rp %.1f: plain %d tokens, speculative %d, first "
                "difference at %d\n",
                what, cf->name, np, n, n_ctx, rp, na, nb, i);
    }
    CHECKF(same, "%s (%s) greedy output identical", what, cf->name);
    free(a);
    free(b);
}

// Every configuration against one drafter (NULL: n-grams) over prompts, lengths, context end and penalties.
static void run_drafter(const char *what, aero_model *t, aero_model *d) {
    int32_t prompt[3][64];
    int np[3];
    for (int i = 0; i < 3; i++) np[i] = tokenize(t, prompts[i], prompt[i], 64);
    double acc = 0, passes = 0, gen = 0;
    for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++) {
        aero_spec_stats st = {0};
        compare(what, t, d, &configs[c], prompt[c % 3], np[c % 3], 120, 512, 1.0f, &st);
        passes += st.verify_passes, gen += st.generated, acc += st.accepted;
        compare(what, t, d, &configs[c], prompt[(c + 1) % 3], np[(c + 1) % 3], c % 2 ? 1 : 9, 512, 1.0f, NULL);
        if (c % 2 == 0) compare(what, t, d, &configs[c], prompt[2], np[2], 100, 48, 1.0f, NULL); // context fills up
        if (c % 3 == 1) compare(what, t, d, &configs[c], prompt[1], np[1], 60, 512, 1.3f, NULL); // penalties
    }
    printf("%s: %.2f tokens per verify pass over the 120-token runs\n", what, passes ? gen / passes : 0);
}

// The refusals, each with a message naming the problem.
static void test_bad_input(aero_model *t, aero_model *q4) {
    aero_error err = {0};
    aero_model *other = load(MODELS "llama-2-tiny-random.gguf", 1, 0);
    CHECK(other != NULL);
    if (other) {
        CHECK(aero_spec_check_vocab(t, other, &err) == AERO_ERR_INVALID);
        printf("different vocabulary: %s\n", err.msg);
        CHECKF(strstr(err.msg, "token id") != NULL, "message names the id: %s", err.msg);
        aero_ctx *c;
        aero_ctx_params cp = {.n_ctx = 64};
        CHECK(!aero_ctx_new(&c, t, &cp, &err));
        aero_spec_params sp;
        aero_spec_params_default(&sp);
        aero_spec *s = NULL;
        CHECK(aero_spec_new(&s, c, 0, other, &sp, &err) == AERO_ERR_INVALID && s == NULL);
        sp.draft_max = 0;
        CHECK(aero_spec_new(&s, c, 0, q4, &sp, &err) == AERO_ERR_INVALID && s == NULL);
        printf("draft length 0: %s\n", err.msg);
        CHECK(strstr(err.msg, "draft-max") != NULL);
        sp.draft_max = 4;
        sp.tree_nodes = 5000;
        CHECK(aero_spec_new(&s, c, 0, q4, &sp, &err) == AERO_ERR_INVALID && s == NULL);
        CHECK(strstr(err.msg, "draft-tree") != NULL);
        aero_ctx_free(c);
        aero_model_free(other);
    }
    CHECK(aero_spec_check_vocab(t, q4, &err) == AERO_OK);
    // stories260K's file declares 2048 positions: a 4096-token context with 3000 tokens to generate is refused
    aero_ctx *c;
    aero_ctx_params cp = {.n_ctx = 4096};
    CHECK(!aero_ctx_new(&c, t, &cp, &err));
    aero_spec_params sp;
    aero_spec_params_default(&sp);
    aero_spec *s = NULL;
    CHECK(!aero_spec_new(&s, c, 0, q4, &sp, &err));
    int32_t prompt[2] = {1, 403};
    CHECK(aero_spec_begin(s, prompt, 2, 3000, &err) == AERO_ERR_INVALID);
    printf("drafter context too short: %s\n", err.msg);
    CHECK(strstr(err.msg, "context") != NULL);
    CHECK(aero_spec_begin(s, prompt, 2, 2000, &err) == AERO_OK); // 2002 tokens fit in 2048
    aero_spec_free(s);
    aero_ctx_free(c);
}

// The project's own pair (models/, trained by train/train.sh): the 34M teacher resident and streamed, its 3M
// drafter (a different architecture size, tied output, same 8192-token vocabulary).
static void test_bundled(void) {
    const char *tp = "models/aero-teacher-34M-Q8_0.gguf", *dp = "models/aero-drafter-3M-F16.gguf";
    if (access(tp, R_OK) || access(dp, R_OK)) {
        printf("bundled pair: not in models/, not checked\n");
        return;
    }
    aero_model *d = load(dp, 1, 0);
    CHECK(d != NULL);
    for (int streamed = 0; streamed < 2 && d; streamed++) {
        aero_model *t = load(tp, 2, streamed ? 16u << 20 : 0);
        CHECK(t != NULL);
        if (!t) break;
        CHECK(!streamed || aero_stream_get_plan(aero_model_stream(t))->streamed_bytes > 0);
        int32_t prompt[64];
        int np = tokenize(t, prompts[1 + streamed], prompt, 64);
        const char *what = streamed ? "bundled pair, streamed teacher" : "bundled pair";
        compare(what, t, d, &configs[2], prompt, np, 60, 512, 1.0f, NULL);    // chain, adaptive
        compare(what, t, d, &configs[5], prompt, np, 40, 512, 1.0f, NULL);    // tree 48
        compare(what, t, d, &configs[10], prompt, np, 40, 512, 1.0f, NULL);   // tree cost, measured
        compare(what, t, d, &configs[12], prompt, np, 40, 512, 1.0f, NULL);   // tree cost, fixed costs
        compare(what, t, NULL, &configs[1], prompt, np, 30, 512, 1.0f, NULL); // n-grams
        aero_model_free(t);
        printf("%s: chain, tree and n-gram outputs compared\n", what);
    }
    aero_model_free(d);
}

// Greedy identity with a draft head of random weights (it drafts poorly, so rejections and rollbacks are
// exercised on every path), resident and streamed teachers; then the refusals of heads made for other teachers.
static void test_head(aero_model *t, aero_model *ts) {
    char path[64], other[64];
    snprintf(path, sizeof path, "/tmp/aero_spec_head_%d.gguf", (int)getpid());
    snprintf(other, sizeof other, "/tmp/aero_spec_head_other_%d.gguf", (int)getpid());
    aero_error err = {0};
    CHECKF(!aero_spec_head_write_random(path, t, 4, 96, 7, NULL, false, &err), "%s", err.msg);
    g_head = path;
    run_drafter("random draft head", t, NULL);
    if (ts) {
        int32_t prompt[64];
        int np = tokenize(ts, prompts[1], prompt, 64);
        static const int streamed_configs[] = {0, 2, 4, 6, 10, 12};
        for (int k = 0; k < 6; k++)
            compare("streamed teacher, random draft head", ts, NULL, &configs[streamed_configs[k]], prompt, np, 60, 512,
                    1.0f, NULL);
    }
    g_head = NULL;
    // refusals: another teacher's name, another width, a model file given as a head, head and drafter together
    aero_ctx *c;
    aero_ctx_params cp = {.n_ctx = 64};
    CHECK(!aero_ctx_new(&c, t, &cp, &err));
    aero_spec_params sp;
    aero_spec_params_default(&sp);
    aero_spec *s = NULL;
    CHECKF(!aero_spec_head_write_random(other, t, 4, 96, 7, "some other teacher", false, &err), "%s", err.msg);
    sp.draft_head = other;
    CHECK(aero_spec_new(&s, c, 0, NULL, &sp, &err) == AERO_ERR_INVALID && s == NULL);
    printf("head for another teacher: %s\n", err.msg);
    CHECK(strstr(err.msg, "some other teacher") != NULL);
    sp.draft_head = MODELS "stories260K-Q4_0.gguf";
    CHECK(aero_spec_new(&s, c, 0, NULL, &sp, &err) == AERO_ERR_INVALID && s == NULL);
    printf("a model as head: %s\n", err.msg);
    sp.draft_head = path;
    CHECK(aero_spec_new(&s, c, 0, t, &sp, &err) == AERO_ERR_INVALID && s == NULL);
    CHECK(!aero_spec_new(&s, c, 0, NULL, &sp, &err));
    int32_t toks[3] = {1, 403, 407};
    CHECK(s && aero_spec_resume(s, toks, 3, &err) == AERO_OK); // the server's path (test_server_spec drafts on it)
    aero_spec *s2 = NULL; // another sequence's decoder sharing the head's weights
    CHECKF(!aero_spec_new_like(&s2, s, 0, &sp, &err) && s2, "%s", err.msg);
    CHECK(s2 && aero_spec_resume(s2, toks, 3, &err) == AERO_OK);
    aero_spec_free(s2);
    aero_spec_free(s);
    aero_ctx_free(c);
    const char *tp = "models/aero-teacher-34M-Q8_0.gguf";
    aero_model *big = access(tp, R_OK) ? NULL : load(tp, 2, 0);
    if (big) { // a head for stories260K (width 64) on the 34M teacher (width 512, another vocabulary)
        CHECK(!aero_ctx_new(&c, big, &cp, &err));
        CHECK(aero_spec_new(&s, c, 0, NULL, &sp, &err) == AERO_ERR_INVALID && s == NULL);
        printf("head for a narrower teacher: %s\n", err.msg);
        CHECK(strstr(err.msg, "width") != NULL);
        aero_ctx_free(c);
        aero_model_free(big);
    }
    unlink(path);
    unlink(other);
}

// Reads "KEY id id ..." from a reference file into out (at most cap ids); returns the count, -1 when absent.
static int read_ids(const char *path, const char *key, int32_t *out, int cap) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[65536];
    int n = -1;
    size_t kl = strlen(key);
    while (n < 0 && fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl) && line[kl] == ' ') {
            n = 0;
            for (char *p = line + kl, *e; n < cap; p = e) {
                long v = strtol(p, &e, 10);
                if (e == p) break;
                out[n++] = (int32_t)v;
            }
        }
    fclose(f);
    return n;
}

// The server's path with a draft head: resume, draft, a pass the caller runs (its hidden states read by commit
// and aero_spec_observe), commit. Its drafts must equal those of aero_spec_begin/step, whose own passes keep the
// features, round for round: zero or stale features would change them.
static void test_head_caller_run(aero_model *t, const char *hp) {
    int nv = aero_model_hparams(t)->n_vocab;
    int32_t toks[256], outa[32], outb[32], pos[32];
    int np = tokenize(t, prompts[2], toks, 64);
    aero_ctx *ca = NULL, *cb = NULL;
    aero_error err = {0};
    aero_ctx_params cp = {.n_ctx = 256};
    aero_spec_params sp;
    aero_spec_params_default(&sp);
    sp.draft_head = hp;
    sp.draft_max = 6;
    sp.adaptive = false;
    aero_spec *sa = NULL, *sb = NULL;
    aero_sampler *ga = greedy_sampler(nv, 1.0f), *gb = greedy_sampler(nv, 1.0f);
    float *logits = malloc(sizeof(float) * nv * 32), *plog = malloc(sizeof(float) * nv);
    uint8_t *want = calloc(np, 1);
    for (int i = 0; i < np; i++) pos[i] = i;
    want[np - 1] = 1;
    CHECK(!aero_ctx_new(&ca, t, &cp, &err) && !aero_ctx_new(&cb, t, &cp, &err));
    CHECKF(!aero_spec_new(&sa, ca, 0, NULL, &sp, &err) && !aero_spec_new(&sb, cb, 0, NULL, &sp, &err), "%s", err.msg);
    // the caller's prompt pass and its first token, then both decoders start after prompt + that token
    aero_batch b = {.n = np, .tokens = toks, .pos = pos, .want_logits = want};
    CHECK(!aero_decode(cb, &b, plog, &err));
    aero_spec_observe(sb, 0, 0, np);
    toks[np] = aero_sampler_sample(gb, plog);
    CHECKF(!aero_spec_begin(sa, toks, np + 1, 0, &err) && !aero_spec_resume(sb, toks, np + 1, &err), "%s", err.msg);
    int same_rounds = 0, rounds = 4;
    int32_t root = toks[np]; // the last committed token: each round's pass starts with it
    uint64_t drafted_before = 0;
    for (int r = 0; r < rounds; r++) {
        int na = 0, nb = 0, nn = 0;
        if (aero_spec_step(sa, ga, 16, outa, &na, &err) || aero_spec_draft(sb, gb, 16, &nn, &err)) break;
        aero_spec_stats st;
        aero_spec_get_stats(sa, &st);
        bool same = (uint64_t)nn == st.drafted - drafted_before; // a's nodes stay until its next round
        drafted_before = st.drafted;
        int32_t bt[32], bp[32];
        int n_tok = aero_spec_n_tokens(sb);
        bt[0] = root, bp[0] = n_tok - 1;
        for (int k = 0; k < nn; k++) {
            int32_t tb, ta;
            int parent, depth;
            aero_spec_node(sa, k, &ta, &parent, &depth);
            aero_spec_node(sb, k, &tb, &parent, &depth);
            same &= ta == tb;
            bt[1 + k] = tb, bp[1 + k] = n_tok - 1 + depth;
        }
        aero_batch vb = {.n = 1 + nn, .tokens = bt, .pos = bp}; // a chain: causal
        if (aero_decode(cb, &vb, logits, &err)) break;
        aero_spec_commit(sb, gb, logits, 0, 0, 0, outb, &nb);
        same &= na == nb && !memcmp(outa, outb, sizeof(int32_t) * na);
        // the features of every committed position but the last: bitwise those a's own passes kept
        int d = aero_model_n_embd(t), nf = aero_spec_n_tokens(sb) - 1;
        same &= aero_spec_n_tokens(sa) - 1 == nf && !memcmp(sa->hfeat, sb->hfeat, sizeof(float) * (size_t)nf * d);
        same_rounds += same;
        root = outb[nb - 1];
    }
    CHECKF(same_rounds == rounds, "draft head, caller-run pass: %d of %d rounds drafted and committed as "
                                  "aero_spec_step did (%s)", same_rounds, rounds, err.msg);
    printf("draft head, caller-run pass (the server's): %d of %d rounds equal to aero_spec_step's\n", same_rounds, rounds);
    aero_spec_free(sa);
    aero_spec_free(sb);
    aero_sampler_free(ga);
    aero_sampler_free(gb);
    aero_ctx_free(ca);
    aero_ctx_free(cb);
    free(logits);
    free(plog);
    free(want);
}

// A trained head (train/train_head.sh's output beside the teacher in models/; AERO_TEST_HEAD and
// AERO_TEST_HEAD_REF override the paths): the engine's head predicts what PyTorch's does at depth 1
// (head_reference.txt; >= 90 % of positions, since the two round weights and activations differently), greedy
// speculation with it is identical to plain decoding, and its tokens per pass are printed.
static void test_head_trained(void) {
    const char *tp = "models/aero-teacher-34M-Q8_0.gguf";
    const char *hp = getenv("AERO_TEST_HEAD") ? getenv("AERO_TEST_HEAD") : "models/aero-draft-head-4M-F16.gguf";
    const char *rp = getenv("AERO_TEST_HEAD_REF") ? getenv("AERO_TEST_HEAD_REF") : "train/head_reference.txt";
    if (access(tp, R_OK) || access(hp, R_OK)) {
        printf("trained draft head: %s not found, not checked\n", hp);
        return;
    }
    aero_model *t = load(tp, 2, 0);
    CHECK(t != NULL);
    if (!t) return;
    int32_t ids[600], want[600], got[600];
    int n = read_ids(rp, "ids", ids, 600), nw = read_ids(rp, "head_depth1_argmax", want, 600);
    if (n > 1 && nw == n - 1) {
        aero_ctx *c;
        aero_error err = {0};
        aero_ctx_params cp = {.n_ctx = 512};
        aero_spec_params sp;
        aero_spec_params_default(&sp);
        sp.draft_head = hp;
        aero_spec *s = NULL;
        CHECK(!aero_ctx_new(&c, t, &cp, &err));
        CHECKF(!aero_spec_new(&s, c, 0, NULL, &sp, &err) && !aero_spec_begin(s, ids, n, 0, &err) &&
                   !aero_spec_head_argmax(s, got, &err),
               "%s", err.msg);
        int same = 0;
        for (int i = 0; i < n - 1; i++) same += got[i] == want[i];
        printf("trained draft head: depth-1 argmax equal to PyTorch's at %d of %d positions\n", same, n - 1);
        CHECKF(same >= 0.9 * (n - 1), "engine and PyTorch heads agree (%d of %d)", same, n - 1);
        aero_spec_free(s);
        aero_ctx_free(c);
    } else {
        printf("trained draft head: no reference %s\n", rp);
    }
    int32_t prompt[64];
    int np = tokenize(t, prompts[1], prompt, 64);
    g_head = hp;
    static const int cfg[] = {2, 5, 10, 12}; // chain adaptive, tree 48, tree cost measured, tree cost fixed
    for (int k = 0; k < 4; k++) {
        aero_spec_stats st = {0};
        compare("trained draft head", t, NULL, &configs[cfg[k]], prompt, np, 100, 512, 1.0f, &st);
        printf("trained draft head, %s: %.2f tokens per verify pass\n", configs[cfg[k]].name,
               st.verify_passes ? (double)st.generated / st.verify_passes : 0);
    }
    g_head = NULL;
    test_head_caller_run(t, hp);
    aero_model_free(t);
}

int main(void) {
    require_shared_data();
    aero_model *t = load(MODELS "stories260K.gguf", 2, 0);
    aero_model *q4 = load(MODELS "stories260K-Q4_0.gguf", 1, 0);
    aero_model *self = load(MODELS "stories260K.gguf", 1, 0);
    CHECK(t && q4 && self);
    if (!t || !q4 || !self) return check_done("test_spec");
    test_bad_input(t, q4);
    run_drafter("stories260K-Q4_0 drafter", t, q4);
    run_drafter("n-gram drafter", t, NULL);
    run_drafter("stories260K drafting for itself", t, self);
    // streamed teacher: the smallest budget the planner allows streams most layers
    aero_model *ts = load(MODELS "stories260K.gguf", 2, 900 << 10);
    CHECK(ts != NULL);
    test_head(t, ts);
    if (ts) {
        const aero_stream_plan *plan = aero_stream_get_plan(aero_model_stream(ts));
        CHECKF(plan->streamed_bytes > 0, "the teacher is streamed (%llu bytes per pass)",
               (unsigned long long)plan->streamed_bytes);
        int32_t prompt[64];
        int np = tokenize(ts, prompts[1], prompt, 64);
        static const int streamed_configs[] = {0, 2, 4, 6, 10, 12};
        for (int k = 0; k < 6; k++) {
            int c = streamed_configs[k];
            compare("streamed teacher, Q4_0 drafter", ts, q4, &configs[c], prompt, np, 80, 512, 1.0f, NULL);
            compare("streamed teacher, n-grams", ts, NULL, &configs[c], prompt, np, 40, 512, 1.0f, NULL);
        }
        aero_model_free(ts);
    }
    aero_model_free(self);
    aero_model_free(q4);
    aero_model_free(t);
    test_bundled();
    test_head_trained();
    return check_done("test_spec");
}
