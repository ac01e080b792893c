// A prompt longer than the compute tile (n_batch) costs one pass over streamed weights: each layer computes
// every tile while it is held. Its logits are bitwise those of feeding the tiles as separate decode calls
// (three passes), and of another tile size.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "modules.h" // the module headers: a white-box test

#include "check.h"
#include "helpers.h"

#define MODEL SHARED_DATA "/models/stories260K.gguf"
enum { TILE = 16, NP = 3 * TILE };

typedef struct {
    float *logits;           // NP rows
    aero_stream_stats stats; // of the prompt alone
    aero_stream_plan plan;
} result;

// Loads under the budget, decodes the prompt with tile n_batch in calls of `per_call` tokens.
static bool run(uint64_t budget, int n_batch, int per_call, const int32_t *prompt, result *r) {
    aero_ctx *c = NULL;
    aero_error err = {0};
    bool ok = false;
    memset(r, 0, sizeof *r);
    aero_model *m = test_load_model(MODEL, 2, budget);
    if (!m) goto out;
    aero_ctx_params cp = {.n_ctx = NP + 1, .n_batch = n_batch};
    if (aero_ctx_new(&c, m, &cp, &err)) goto out;
    int nv = aero_model_hparams(m)->n_vocab;
    r->logits = malloc(sizeof(float) * nv * NP);
    int32_t pos[NP];
    for (int i = 0; i < NP; i++) pos[i] = i;
    aero_stream *s = aero_model_stream(m);
    aero_stream_reset_stats(s);
    for (int first = 0; first < NP; first += per_call) {
        int n = NP - first < per_call ? NP - first : per_call;
        aero_batch b = {.n = n, .tokens = prompt + first, .pos = pos + first};
        if (aero_decode(c, &b, r->logits + (size_t)first * nv, &err)) goto out;
    }
    aero_stream_get_stats(s, &r->stats);
    r->plan = *aero_stream_get_plan(s);
    r->plan.unit_resident = NULL;
    ok = true;
out:
    if (!ok) fprintf(stderr, "--mem %llu tile %d: %s\n", (unsigned long long)budget, n_batch, err.msg);
    aero_ctx_free(c);
    aero_model_free(m);
    return ok;
}

int main(void) {
    require_shared_data();
    alarm(120);
    int32_t prompt[NP] = {1};
    for (int i = 1; i < NP; i++) prompt[i] = (int32_t)(3 + (i * 37) % 500);
    result res, one, tiles, other;
    if (!run(0, TILE, NP, prompt, &res)) return check_done("test_model_prompt_pass") | 1;
    uint64_t budget = res.plan.min_budget;
    bool ok = run(budget, TILE, NP, prompt, &one) && run(budget, TILE, TILE, prompt, &tiles) &&
              run(budget, 7, NP, prompt, &other);
    CHECK(ok);
    if (ok) {
        uint64_t pass = one.plan.streamed_bytes;
        printf("--mem %llu: %d streamed units, %llu bytes a pass; %d-token prompt, tile %d: one call %llu passes "
               "%llu bytes, %d calls %llu passes %llu bytes\n",
               (unsigned long long)budget, one.plan.n_streamed, (unsigned long long)pass, NP, TILE,
               (unsigned long long)one.stats.passes, (unsigned long long)one.stats.bytes_streamed, NP / TILE,
               (unsigned long long)tiles.stats.passes, (unsigned long long)tiles.stats.bytes_streamed);
        CHECK(one.plan.n_streamed > 0 && pass > 0);
        CHECKF(one.stats.passes == 1, "one call: %llu passes", (unsigned long long)one.stats.passes);
        CHECKF(tiles.stats.passes == NP / TILE, "tile calls: %llu passes", (unsigned long long)tiles.stats.passes);
        // both runs read the same embedding rows; beyond them, the tiled calls read the units once per call
        uint64_t rows = tiles.stats.bytes_streamed - (uint64_t)(NP / TILE) * pass;
        CHECKF(one.stats.bytes_streamed == pass + rows, "one call read %llu bytes, one pass is %llu (+%llu of rows)",
               (unsigned long long)one.stats.bytes_streamed, (unsigned long long)pass, (unsigned long long)rows);
    }
    int nv = 0;
    {
        aero_gguf g;
        aero_error err = {0};
        CHECK(!aero_gguf_open(&g, MODEL, &err));
        nv = (int)aero_gguf_tensor(&g, "token_embd.weight")->ne[1];
        aero_gguf_free(&g);
    }
    size_t bytes = sizeof(float) * (size_t)nv * NP;
    if (ok) {
        CHECKF(!memcmp(one.logits, res.logits, bytes), "streamed logits differ from resident");
        CHECKF(!memcmp(one.logits, tiles.logits, bytes), "one call differs from one call per tile");
        CHECKF(!memcmp(one.logits, other.logits, bytes), "tile 7 differs from tile %d", TILE);
    }
    free(res.logits), free(one.logits), free(tiles.logits), free(other.logits);
    return check_done("test_model_prompt_pass");
}
