// The scheduler against a deterministic fake engine: continuous batching must be invisible (every request's
// output alone equals its output among others, with prompts longer than a pass), stop strings, max_tokens, the context
// limit, logprobs, logit bias, seeds, cancellation freeing the sequence, the bounded queue and shutdown; prompt
// reuse (a request decodes only what its sequence's cache lacks, on the sequence holding the longest prefix).
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>

#include "check.h"
#include "helpers.h"
#include "server/sched.h"

#define V 32
#define MAXSEQ 8
static const char ALPHA[] = "abcdefghijklmnopqrstuvwxyz .,!?"; // token v >= 1 prints ALPHA[v-1]

typedef struct {
    int n_ctx;
    uint64_t h[MAXSEQ];
    int len[MAXSEQ];
    int32_t tok[MAXSEQ][512]; // what each sequence's cache holds, so truncation can rebuild its hash
    long decoded;             // tokens through the forward pass
    int drops[MAXSEQ];
    int max_batch, bad_pos, calls;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool gate_closed;
    int in_decode;
    int32_t last_tok[512], last_pos[512]; // the last batch, for the hidden states of embeddings
} fake;

static uint64_t mix(uint64_t x) { return test_splitmix64(&x); }

#define F_LAST(f, i, b) ((f)->last_tok[i] = (b)->tokens[i], (f)->last_pos[i] = (b)->pos[i])
#define EMBD 8

// A hidden state that depends on the token and its position, so a missed or repeated token changes the mean.
static float fake_hidden_value(int32_t tok, int32_t pos, int j) {
    return (float)((tok * 7 + pos * 3 + j * 5) % 11) - 5.0f;
}
static aero_status fake_hidden(void *self, int i, float *out, aero_error *err) {
    fake *f = self;
    for (int j = 0; j < EMBD; j++) out[j] = fake_hidden_value(f->last_tok[i], f->last_pos[i], j);
    return AERO_OK;
}

// Logits depend on the whole history of the sequence, so any mix-up of sequences or positions shows.
static aero_status fake_decode(void *self, const aero_batch *b, float *logits, aero_error *err) {
    fake *f = self;
    pthread_mutex_lock(&f->mu);
    f->in_decode++;
    pthread_cond_broadcast(&f->cv);
    while (f->gate_closed) pthread_cond_wait(&f->cv, &f->mu);
    f->in_decode--;
    if (b->n > f->max_batch) f->max_batch = b->n;
    f->calls++;
    pthread_mutex_unlock(&f->mu);
    int row = 0;
    for (int i = 0; i < b->n && i < 512; i++) {
        F_LAST(f, i, b);
    }
    for (int i = 0; i < b->n; i++) {
        int s = b->seq[i];
        if (b->pos[i] != f->len[s]) {
            f->bad_pos++;
            return aero_fail(err, AERO_ERR_INVALID, "seq %d: pos %d but %d cached", s, b->pos[i], f->len[s]);
        }
        if (f->len[s] >= f->n_ctx) return aero_fail(err, AERO_ERR_RANGE, "context full");
        f->h[s] = mix(f->h[s] ^ (uint64_t)b->tokens[i]);
        if (f->len[s] < 512) f->tok[s][f->len[s]] = b->tokens[i];
        f->len[s]++;
        f->decoded++;
        if (!b->want_logits[i]) continue;
        float *l = logits + (size_t)row++ * V;
        for (int v = 0; v < V; v++) l[v] = (float)(mix(f->h[s] + (uint64_t)v) % 10000) / 1000.0f;
        l[0] -= 2.0f; // end-of-generation is rarer
    }
    return AERO_OK;
}
static void fake_drop(void *self, int seq) {
    fake *f = self;
    f->h[seq] = 0;
    f->len[seq] = 0;
    f->drops[seq]++;
}
static void fake_truncate(void *self, int seq, int len) {
    fake *f = self;
    if (len > f->len[seq]) len = f->len[seq];
    f->h[seq] = 0;
    for (int i = 0; i < len; i++) f->h[seq] = mix(f->h[seq] ^ (uint64_t)f->tok[seq][i]);
    f->len[seq] = len;
}
static bool fake_eog(void *self, int32_t t) { return t == 0; }
static void fake_detok_init(void *self, aero_detok *d, bool first) { memset(d, 0, sizeof *d); }
static size_t fake_push(void *self, aero_detok *d, int32_t t, char *out, size_t cap) {
    if (t <= 0 || t >= V) return 0;
    out[0] = ALPHA[t - 1];
    return 1;
}
static size_t fake_flush(void *self, aero_detok *d, char *out, size_t cap) { return 0; }

static fake F;
static aero_metrics M;

static bool REUSE; // the backend offers kv_truncate
static bool EMBED; // the backend offers hidden states

static aero_sched *start(int n_seq, int n_ctx, int n_pass, int max_queue) {
    memset(&F, 0, sizeof F);
    pthread_mutex_init(&F.mu, NULL);
    pthread_cond_init(&F.cv, NULL);
    F.n_ctx = n_ctx;
    aero_sched_backend e = {.self = &F,
                            .n_vocab = V,
                            .n_ctx = n_ctx,
                            .n_seq = n_seq,
                            .n_pass = n_pass,
                            .decode = fake_decode,
                            .kv_drop = fake_drop,
                            .kv_truncate = REUSE ? fake_truncate : NULL,
                            .hidden = EMBED ? fake_hidden : NULL,
                            .n_embd = EMBED ? EMBD : 0,
                            .vocab = {.self = &F,
                                      .is_eog = fake_eog,
                                      .detok_init = fake_detok_init,
                                      .detok_push = fake_push,
                                      .detok_flush = fake_flush}};
    aero_sched *s;
    aero_error err = {0};
    CHECK(aero_sched_new(&s, &e, max_queue, &M, &err) == AERO_OK);
    return s;
}

static void gate(bool closed) {
    pthread_mutex_lock(&F.mu);
    F.gate_closed = closed;
    pthread_cond_broadcast(&F.cv);
    pthread_mutex_unlock(&F.mu);
}

// Lets the held forward pass finish once the scheduler is stopping, so the loop ends after that pass.
static void *open_gate_when_stopping(void *arg) {
    aero_sched *s = arg;
    while (!aero_sched_stopping(s)) sched_yield();
    gate(false);
    return NULL;
}

static void wait_in_decode(void) {
    pthread_mutex_lock(&F.mu);
    while (F.in_decode == 0) pthread_cond_wait(&F.cv, &F.mu);
    pthread_mutex_unlock(&F.mu);
}

typedef struct {
    int n_prompt, max_tokens, seed_tok, n_stop, top;
    float temp;
    uint64_t seed;
    const char *stop;
    bool ignore_eos, logprobs, fresh_kv;
    int bias_tok;
} spec;

static aero_gen *make(const spec *sp) {
    aero_gen_params p = {0};
    p.n_prompt = sp->n_prompt;
    p.prompt = malloc(sizeof(int32_t) * (size_t)sp->n_prompt);
    for (int i = 0; i < sp->n_prompt; i++) p.prompt[i] = 1 + (sp->seed_tok * 7 + i * 3) % (V - 1);
    p.max_tokens = sp->max_tokens;
    p.sp.temp = sp->temp;
    p.sp.top_p = 1.0f;
    p.sp.repeat_penalty = 1.0f;
    p.sp.seed = sp->seed;
    p.ignore_eos = sp->ignore_eos;
    p.fresh_kv = sp->fresh_kv;
    p.logprobs = sp->logprobs;
    p.top_logprobs = sp->top;
    if (sp->stop) {
        p.stop = malloc(sizeof(char *));
        p.stop[0] = strdup(sp->stop);
        p.n_stop = 1;
    }
    if (sp->bias_tok) {
        p.n_bias = 1;
        p.bias_id = malloc(sizeof(int32_t));
        p.bias = malloc(sizeof(float));
        p.bias_id[0] = sp->bias_tok;
        p.bias[0] = 100.0f;
    }
    return aero_gen_new(&p);
}

typedef struct {
    char text[4096];
    size_t len;
    aero_finish finish;
    int n_gen, n_lp, n_cached;
    aero_oai_logprob lp[512];
} result;

// Reads a generation to its end the way an HTTP thread does.
static void collect(aero_gen *g, result *r) {
    memset(r, 0, sizeof *r);
    aero_gen_cursor cur = {0};
    for (int spins = 0; spins < 2000; spins++) {
        aero_gen_delta d;
        aero_gen_next(g, &cur, 100, &d);
        if (d.len && r->len + d.len < sizeof r->text) {
            memcpy(r->text + r->len, d.text, d.len);
            r->len += d.len;
        }
        for (int i = 0; i < d.n_lp && r->n_lp < 512; i++) r->lp[r->n_lp++] = d.lp[i];
        bool done = d.done;
        r->finish = d.finish;
        r->n_gen = d.n_gen;
        r->n_cached = d.n_cached;
        aero_gen_delta_free(&d);
        if (done) return;
    }
    CHECKF(0, "generation did not finish");
}

static void run_one(aero_sched *s, const spec *sp, result *r) {
    aero_gen *g = make(sp);
    aero_error err = {0};
    CHECK(aero_sched_submit(s, g, &err) == AERO_OK);
    collect(g, r);
    aero_gen_unref(g);
}

static void test_batch_invariance(void) {
    aero_sched *s = start(4, 256, 8, 16);
    spec specs[8];
    result solo[8], batched[8];
    for (int i = 0; i < 8; i++) {
        specs[i] = (spec){.n_prompt = 3 + i * 5, .max_tokens = 20 + i, .seed_tok = i, .temp = 0};
        run_one(s, &specs[i], &solo[i]);
        CHECK(solo[i].len > 0);
    }
    aero_gen *g[8];
    aero_error err = {0};
    for (int i = 0; i < 8; i++) {
        g[i] = make(&specs[i]);
        CHECK(aero_sched_submit(s, g[i], &err) == AERO_OK);
    }
    for (int i = 7; i >= 0; i--) collect(g[i], &batched[i]); // read in another order than submitted
    int distinct = 0;
    for (int i = 0; i < 8; i++) {
        CHECKF(batched[i].len == solo[i].len && !memcmp(batched[i].text, solo[i].text, solo[i].len),
               "request %d: solo '%.*s' vs batched '%.*s'", i, (int)solo[i].len, solo[i].text, (int)batched[i].len,
               batched[i].text);
        CHECK(batched[i].finish == solo[i].finish);
        CHECK(batched[i].finish == AERO_FINISH_STOP || batched[i].n_gen == specs[i].max_tokens);
        distinct += i > 0 && strcmp(solo[i].text, solo[i - 1].text) != 0;
        aero_gen_unref(g[i]);
    }
    CHECK(distinct >= 6);
    CHECK(F.bad_pos == 0);
    CHECK(F.max_batch <= 8 && F.max_batch >= 4); // several sequences shared passes, within n_pass
    aero_sched_free(s);
}

static void test_limits(void) {
    aero_sched *s = start(2, 64, 16, 4);
    result r;
    // max_tokens
    run_one(s, &(spec){.n_prompt = 4, .max_tokens = 7, .ignore_eos = true}, &r);
    CHECK(r.finish == AERO_FINISH_LENGTH && r.n_gen == 7);
    // a prompt within the pass bound is one forward pass (its one token comes from the prompt's logits)
    int calls = F.calls;
    run_one(s, &(spec){.n_prompt = 16, .max_tokens = 1, .ignore_eos = true}, &r);
    CHECK(r.n_gen == 1 && F.calls == calls + 1);
    // context: 60 prompt tokens in a 64-token context leave room for 5 generated tokens
    run_one(s, &(spec){.n_prompt = 60, .max_tokens = 100, .ignore_eos = true}, &r);
    CHECK(r.finish == AERO_FINISH_LENGTH && r.n_gen == 5);
    // prompt that does not fit is refused at submit
    aero_gen *g = make(&(spec){.n_prompt = 64, .max_tokens = 1});
    aero_error err = {0};
    CHECK(aero_sched_submit(s, g, &err) == AERO_ERR_INVALID && strstr(err.msg, "64 tokens"));
    aero_gen_unref(g);
    // stop string: output is the solo text cut before the first occurrence
    result base;
    spec sp = {.n_prompt = 5, .max_tokens = 40, .ignore_eos = true, .seed_tok = 3};
    run_one(s, &sp, &base);
    CHECK(base.len == 40);
    char stop[4];
    memcpy(stop, base.text + 20, 3);
    stop[3] = 0;
    size_t at = (size_t)(strstr(base.text, stop) - base.text);
    sp.stop = stop;
    run_one(s, &sp, &r);
    CHECKF(r.finish == AERO_FINISH_STOP && r.len == at && !memcmp(r.text, base.text, at),
           "stop '%s': got '%.*s' want '%.*s'", stop, (int)r.len, r.text, (int)at, base.text);
    // logprobs: greedy picks the most likely token; entries match the text
    run_one(s, &(spec){.n_prompt = 5, .max_tokens = 12, .ignore_eos = true, .logprobs = true, .top = 5}, &r);
    CHECK(r.n_lp == 12);
    for (int i = 0; i < r.n_lp; i++) {
        CHECK(r.lp[i].n_top == 5 && r.lp[i].top_id[0] == r.lp[i].id && r.lp[i].logprob <= 0.0f);
        CHECK(r.lp[i].top_lp[0] >= r.lp[i].top_lp[1] && r.lp[i].top_lp[3] >= r.lp[i].top_lp[4]);
        CHECK(ALPHA[r.lp[i].id - 1] == r.text[i]);
    }
    // logit bias forces a token
    run_one(s, &(spec){.n_prompt = 5, .max_tokens = 10, .bias_tok = 5, .temp = 1.0f, .seed = 3}, &r);
    CHECK(r.len == 10 && !strcmp(r.text, "eeeeeeeeee"));
    // seeds: same seed, same text; another seed, other text
    result a, b, c;
    run_one(s, &(spec){.n_prompt = 5, .max_tokens = 30, .ignore_eos = true, .temp = 1.0f, .seed = 7}, &a);
    run_one(s, &(spec){.n_prompt = 5, .max_tokens = 30, .ignore_eos = true, .temp = 1.0f, .seed = 7}, &b);
    run_one(s, &(spec){.n_prompt = 5, .max_tokens = 30, .ignore_eos = true, .temp = 1.0f, .seed = 8}, &c);
    CHECK(!strcmp(a.text, b.text) && strcmp(a.text, c.text) != 0);
    aero_sched_free(s);
}

static void test_cancel_queue_shutdown(void) {
    aero_sched *s = start(1, 4096, 16, 2);
    aero_error err = {0};
    // a cancelled generation frees its sequence at once and the next request runs (the gate holds the
    // scheduler inside the prompt's forward pass, so the cancellation lands mid-generation)
    gate(true);
    aero_gen *g = make(&(spec){.n_prompt = 4, .max_tokens = 4000, .ignore_eos = true});
    CHECK(aero_sched_submit(s, g, &err) == AERO_OK);
    wait_in_decode();
    int drops = F.drops[0];
    aero_gen_cancel(g);
    aero_sched_poke(s);
    gate(false);
    result r;
    collect(g, &r);
    CHECKF(r.finish == AERO_FINISH_CANCELLED && r.n_gen <= 1, "finish %d n_gen %d", r.finish, r.n_gen);
    CHECK(F.drops[0] > drops);
    aero_gen_unref(g);
    run_one(s, &(spec){.n_prompt = 4, .max_tokens = 3, .ignore_eos = true}, &r);
    CHECK(r.finish == AERO_FINISH_LENGTH && r.len == 3);

    // bounded queue: one running (held in the forward pass), two waiting, the fourth refused
    gate(true);
    aero_gen *q[4];
    for (int i = 0; i < 4; i++) q[i] = make(&(spec){.n_prompt = 4, .max_tokens = 3, .ignore_eos = true});
    CHECK(aero_sched_submit(s, q[0], &err) == AERO_OK);
    wait_in_decode();
    CHECK(aero_sched_submit(s, q[1], &err) == AERO_OK);
    CHECK(aero_sched_submit(s, q[2], &err) == AERO_OK);
    CHECK(aero_sched_submit(s, q[3], &err) == AERO_ERR_RANGE && strstr(err.msg, "busy"));
    aero_gen_cancel(q[2]); // a queued request whose client left never runs
    gate(false);
    for (int i = 0; i < 3; i++) {
        collect(q[i], &r);
        CHECK(r.finish == (i == 2 ? AERO_FINISH_CANCELLED : AERO_FINISH_LENGTH));
        CHECK(i == 2 ? r.n_gen == 0 : r.len == 3);
    }
    for (int i = 0; i < 4; i++) aero_gen_unref(q[i]);

    // shutdown ends a running generation with an error, and the reader still gets its end
    gate(true);
    g = make(&(spec){.n_prompt = 4, .max_tokens = 4000, .ignore_eos = true});
    CHECK(aero_sched_submit(s, g, &err) == AERO_OK);
    wait_in_decode();
    pthread_t opener;
    pthread_create(&opener, NULL, open_gate_when_stopping, s);
    aero_sched_free(s); // stops the loop, then waits for the pass held by the gate
    pthread_join(opener, NULL);
    collect(g, &r);
    CHECKF(r.finish == AERO_FINISH_ERROR && r.n_gen < 100, "finish %d n_gen %d", r.finish, r.n_gen);
    aero_gen_unref(g);
}

// Prompt reuse: a request whose prompt extends what a sequence holds decodes only the new tokens, on the free
// sequence with the longest common prefix, and its output equals the output without reuse.
static void test_reuse(void) {
    // A prompt of seed_tok k and n tokens is a prefix of the one of seed_tok k and more tokens.
    spec a = {.n_prompt = 40, .max_tokens = 5, .seed_tok = 1, .ignore_eos = true};
    spec b = {.n_prompt = 50, .max_tokens = 6, .seed_tok = 1, .ignore_eos = true};
    spec c = {.n_prompt = 30, .max_tokens = 4, .seed_tok = 2, .ignore_eos = true};
    spec d = {.n_prompt = 35, .max_tokens = 4, .seed_tok = 2, .ignore_eos = true};
    result base_b, base_d, r;
    REUSE = false;
    aero_sched *s = start(2, 256, 64, 4);
    run_one(s, &b, &base_b);
    run_one(s, &d, &base_d);
    CHECK(base_b.n_cached == 0 && base_d.n_cached == 0);
    aero_sched_free(s);

    REUSE = true;
    s = start(2, 256, 64, 4);
    uint64_t cached0 = M.prompt_cached;
    run_one(s, &a, &r); // sequence X
    CHECK(r.n_cached == 0 && r.n_gen == 5);
    run_one(s, &c, &r); // shares nothing with X: the other (least recently used) sequence Y
    CHECK(r.n_cached == 0);
    long dec = F.decoded;
    run_one(s, &b, &r); // X holds a's 40 prompt tokens: only b's 10 new ones and its 5 next tokens are decoded
    CHECKF(r.n_cached >= 40 && F.decoded - dec == (50 - r.n_cached) + 5, "cached %d decoded %ld", r.n_cached,
           F.decoded - dec);
    CHECKF(r.len == base_b.len && !memcmp(r.text, base_b.text, r.len), "reused '%.*s' vs fresh '%.*s'", (int)r.len,
           r.text, (int)base_b.len, base_b.text);
    run_one(s, &d, &r); // Y (c's 30 tokens), though X was used more recently
    CHECKF(r.n_cached >= 30, "cached %d", r.n_cached);
    CHECK(r.len == base_d.len && !memcmp(r.text, base_d.text, r.len));
    // the same prompt again: all of it but the last token, decoded again for its logits
    dec = F.decoded;
    run_one(s, &d, &r);
    CHECK(r.n_cached == 34 && F.decoded - dec == 1 + 3);
    CHECK(r.len == base_d.len && !memcmp(r.text, base_d.text, r.len));
    // cache_prompt false: nothing reused, same output
    b.fresh_kv = true;
    run_one(s, &b, &r);
    CHECK(r.n_cached == 0 && r.len == base_b.len && !memcmp(r.text, base_b.text, r.len));
    CHECK(M.prompt_cached > cached0);
    CHECK(F.bad_pos == 0);
    aero_sched_free(s);
    REUSE = false;
}

// Embeddings: the prompt's hidden states mean-pooled and normalized, whatever the batch (generations beside it,
// a prompt longer than a pass); a backend without hidden states refuses them.
static void test_embeddings(void) {
    EMBED = true;
    aero_sched *s = start(3, 256, 8, 16);
    EMBED = false;
    spec es = {.n_prompt = 21, .max_tokens = 1, .seed_tok = 5};
    aero_gen *g[3];
    aero_error err = {0};
    for (int k = 0; k < 3; k += 2) { // two generations around the embedding
        spec gs = {.n_prompt = 4 + k, .max_tokens = 12, .seed_tok = k + 1, .ignore_eos = true};
        g[k] = make(&gs);
    }
    aero_gen_params p = {0};
    p.n_prompt = es.n_prompt;
    p.prompt = malloc(sizeof(int32_t) * (size_t)es.n_prompt);
    for (int i = 0; i < es.n_prompt; i++) p.prompt[i] = 1 + (es.seed_tok * 7 + i * 3) % (V - 1);
    p.max_tokens = 1;
    p.embed = true;
    p.fresh_kv = true;
    g[1] = aero_gen_new(&p);
    for (int k = 0; k < 3; k++) CHECK(aero_sched_submit(s, g[k], &err) == AERO_OK);
    result r[3];
    for (int k = 0; k < 3; k++) collect(g[k], &r[k]);
    CHECK(r[0].n_gen == 12 && r[2].n_gen == 12);
    CHECK(r[1].finish == AERO_FINISH_STOP && r[1].len == 0);
    float got[EMBD], want[EMBD];
    CHECK(aero_gen_embedding(g[1], got, EMBD));
    double sum[EMBD] = {0}, norm = 0;
    for (int i = 0; i < es.n_prompt; i++)
        for (int j = 0; j < EMBD; j++) sum[j] += fake_hidden_value(1 + (es.seed_tok * 7 + i * 3) % (V - 1), i, j);
    for (int j = 0; j < EMBD; j++) norm += (sum[j] / es.n_prompt) * (sum[j] / es.n_prompt);
    for (int j = 0; j < EMBD; j++) want[j] = (float)(sum[j] / es.n_prompt / sqrt(norm));
    for (int j = 0; j < EMBD; j++) CHECKF(fabsf(got[j] - want[j]) < 1e-6f, "dim %d: %g vs %g", j, got[j], want[j]);
    CHECK(!aero_gen_embedding(g[0], got, EMBD)); // a generation has none
    for (int k = 0; k < 3; k++) aero_gen_unref(g[k]);
    aero_sched_free(s);

    s = start(1, 64, 8, 4); // no hidden states: refused at submission
    p = (aero_gen_params){0};
    p.n_prompt = 2;
    p.prompt = calloc(2, sizeof(int32_t));
    p.max_tokens = 1;
    p.embed = true;
    aero_gen *e = aero_gen_new(&p);
    CHECK(aero_sched_submit(s, e, &err) == AERO_ERR_UNSUPPORTED);
    aero_gen_unref(e);
    aero_sched_free(s);
}

int main(void) {
    aero_metrics_init(&M);
    test_embeddings();
    test_batch_invariance();
    test_limits();
    test_cancel_queue_shutdown();
    test_reuse();
    size_t len;
    char *txt = aero_metrics_render(&M, &len);
    CHECK(txt && strstr(txt, "aerollm_generation_tokens_total ") &&
          strstr(txt, "# TYPE aerollm_requests_active gauge") && strstr(txt, "aerollm_prompt_tokens_cached_total "));
    CHECK(M.gen_tokens > 100 && M.cancelled >= 2);
    free(txt);
    aero_metrics_destroy(&M);
    return check_done("test_server_sched");
}
