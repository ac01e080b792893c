// The scheduler with speculation over a real model (the server's own model adapter, engine.c): every sequence
// drafts and one pass verifies every sequence's draft, so concurrent speculative greedy generations must equal
// solo plain greedy ones token for token, with n-gram chains, n-gram trees (each sequence's own tree mask) and
// the bundled draft model and the bundled draft head (its features taken from the server's passes); and the
// drafts are counted per request.
#include <string.h>

#include "check.h"
#include "helpers.h"
#include "server/internal.h"

#define N_REQ 6
#define N_GEN 48
static const char *PROMPTS[N_REQ] = {
    "Once upon a time, there was a little dog. The dog liked to play. The dog",
    "Lily and Tom went to the park. Lily said",
    "The sun was hot. The sun was big. The sun",
    "One day, a girl named Sue found a box",
    "Ben had a red ball. He liked the ball. He",
    "The cat sat on the mat. The cat",
};

typedef struct {
    char text[2048];
    int n_gen, drafted, accepted;
} out_t;

static aero_gen *make_gen(aero_srv_model *x, const char *prompt) {
    aero_gen_params p = {0};
    int32_t *ids = NULL;
    size_t n = 0;
    aero_error err = {0};
    CHECK(aero_srv_model_tokenize(x, prompt, strlen(prompt), true, false, &ids, &n, &err) == AERO_OK);
    p.prompt = ids;
    p.n_prompt = (int)n;
    p.max_tokens = N_GEN;
    aero_sampler_params_default(&p.sp);
    p.sp.temp = 0;
    p.ignore_eos = true;
    return aero_gen_new(&p);
}

static void collect(aero_gen *g, out_t *o) {
    memset(o, 0, sizeof *o);
    aero_gen_cursor cur = {0};
    size_t len = 0;
    for (;;) {
        aero_gen_delta d;
        aero_gen_next(g, &cur, 200, &d);
        if (d.len && len + d.len < sizeof o->text) {
            memcpy(o->text + len, d.text, d.len);
            len += d.len;
        }
        bool done = d.done;
        o->n_gen = d.n_gen;
        o->drafted = d.n_drafted;
        o->accepted = d.n_accepted;
        CHECKF(!done || d.finish == AERO_FINISH_LENGTH, "finish %s: %s", aero_finish_name(d.finish), d.error);
        aero_gen_delta_free(&d);
        if (done) return;
    }
}

// Opens the model (with draft: speculation) and runs the requests: one at a time, or all at once.
static bool run_with(const char *model, const char *draft, const char *head, int tree, bool together, out_t *out) {
    aero_server_params p;
    aero_server_params_default(&p);
    p.model.path = model;
    p.model.n_threads = 2;
    p.parallel = N_REQ;
    p.n_ctx = 256;
    p.draft = draft;
    p.spec.draft_head = head;
    p.spec.tree_nodes = tree;
    p.spec.draft_max = tree ? 6 : 8;
    aero_srv_model x;
    aero_error err = {0};
    if (aero_srv_model_open(&x, &p, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return false;
    }
    CHECK(!(draft || head) || x.backend.spec_new);
    CHECK(!head || x.head_bytes > 0); // counted inside --mem
    aero_sched *s = NULL;
    CHECK(aero_sched_new(&s, &x.backend, 16, NULL, &err) == AERO_OK);
    aero_gen *g[N_REQ];
    for (int i = 0; i < N_REQ; i++) {
        g[i] = make_gen(&x, PROMPTS[i]);
        CHECK(aero_sched_submit(s, g[i], &err) == AERO_OK);
        if (!together) collect(g[i], &out[i]);
    }
    for (int i = 0; together && i < N_REQ; i++) collect(g[i], &out[i]);
    for (int i = 0; i < N_REQ; i++) aero_gen_unref(g[i]);
    aero_sched_free(s);
    aero_srv_model_close(&x);
    return true;
}

// run_with without a draft head.
static bool run(const char *model, const char *draft, int tree, bool together, out_t *out) {
    return run_with(model, draft, NULL, tree, together, out);
}

static void check_same(const char *what, const out_t *solo, const out_t *spec, bool expect_accepts) {
    int drafted = 0, accepted = 0;
    for (int i = 0; i < N_REQ; i++) {
        CHECKF(!strcmp(solo[i].text, spec[i].text), "%s, request %d:\n  plain: %s\n  spec:  %s", what, i, solo[i].text,
               spec[i].text);
        CHECK(spec[i].n_gen == N_GEN);
        CHECK(spec[i].accepted <= spec[i].drafted);
        drafted += spec[i].drafted;
        accepted += spec[i].accepted;
    }
    CHECKF(drafted > 0, "%s: nothing drafted", what);
    if (expect_accepts) CHECKF(accepted > 0, "%s: nothing accepted", what);
}

int main(void) {
    require_shared_data();
    const char *small = SHARED_DATA "/models/stories260K.gguf";
    out_t solo[N_REQ], spec[N_REQ];
    if (!run(small, NULL, 0, false, solo)) return 1;
    CHECK(run(small, "ngram", 0, true, spec));
    check_same("n-gram chain", solo, spec, true);
    CHECK(run(small, "ngram", 8, true, spec));
    check_same("n-gram tree", solo, spec, true);
    const char *teacher = "models/aero-teacher-34M-Q8_0.gguf", *drafter = "models/aero-drafter-3M-F16.gguf";
    if (access(teacher, R_OK) == 0 && access(drafter, R_OK) == 0) {
        CHECK(run(teacher, NULL, 0, false, solo));
        CHECK(run(teacher, drafter, 0, true, spec));
        check_same("draft model chain", solo, spec, true);
        CHECK(run(teacher, drafter, 10, true, spec));
        check_same("draft model tree", solo, spec, true);
        const char *head = "models/aero-draft-head-4M-F16.gguf";
        if (access(head, R_OK) == 0) {
            // the trained head drafts from the hidden states of the server's own passes: most drafts accepted
            CHECK(run_with(teacher, NULL, head, 0, true, spec));
            check_same("draft head chain", solo, spec, true);
            int drafted = 0, accepted = 0;
            for (int i = 0; i < N_REQ; i++) drafted += spec[i].drafted, accepted += spec[i].accepted;
            printf("draft head chain in the server: %d of %d drafts accepted\n", accepted, drafted);
            CHECKF(accepted * 2 > drafted, "draft head chain: %d of %d drafts accepted (features not recorded?)",
                   accepted, drafted);
            CHECK(run_with(teacher, NULL, head, 10, true, spec));
            check_same("draft head tree", solo, spec, true);
        }
    }
    return check_done("test_server_spec");
}
