// The request scheduler (see sched.h): the queue, the step loop on its own thread, and what readers take.
#include "sched.h"

#include "../core/buf.h"
#include "../core/util.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <time.h>

enum { GEN_QUEUED, GEN_PREFILL, GEN_DECODE, GEN_DONE };

struct aero_gen {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_int refs;
    atomic_bool cancel;
    aero_gen_params p;
    // Published to readers under mu.
    aero_buf text;   // the generation's text so far
    size_t released; // bytes of text readers may take
    aero_oai_logprob *lp;
    size_t *lp_end; // text offset where each token's bytes end
    int n_lp, lp_cap, lp_released;
    int n_gen;
    int n_cached;
    int n_drafted, n_accepted;
    bool speculative; // a decoder was made for it (it may still have drafted nothing)
    float *embd;      // an embedding's pooled vector, once done
    bool done;
    aero_finish finish;
    char error[256];
    double t_submit, t_start, t_first, t_end;
    // Scheduler thread only.
    aero_gen *next;
    int state, seq;
    uint64_t admit_order;
    bool in_batch; // fed to the batch being built
    aero_sampler *sampler;
    aero_generator *gen; // the generation layer's state of this request
    // speculation: the decoder (NULL: plain steps), whether it has started, the token to feed next, and this
    // step's root row in the batch (-1: plain) and logits row, and its drafted nodes
    aero_spec *spec;
    bool spec_live;
    int32_t pending;
    int spec_bidx, spec_row, spec_n;
    // embedding: the sum of the hidden states so far, prompt tokens fed, this step's rows in the batch
    double *embd_sum;
    int embd_fed, embd_bidx, embd_n;
};

struct aero_sched {
    aero_sched_backend backend;
    aero_metrics *metrics;
    pthread_t th;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    aero_gen *qhead, *qtail;
    int n_queued, max_queue;
    // Scheduler thread only.
    aero_gen **seqs; // the request on each KV sequence, or NULL
    int32_t **hist;  // the tokens in each sequence's KV cache, kept after its request ends (prompt reuse)
    int *n_hist;
    uint64_t *used; // when each sequence last ended a request: ties go to the least recently used
    uint64_t n_ended;
    int n_active;
    uint64_t admitted;
    aero_batch_buf *batch;
    float *logits;
    uint8_t *mask; // the batch's attention mask when a sequence drafted a tree (n_pass^2, made on first use)
    int32_t *spec_out;
    float *hidden; // one hidden state (n_embd)
    // a slot action waiting for the scheduler thread (under mu), done when its status is set
    struct slot_task *slot_task;
    pthread_cond_t slot_cv;
    pthread_mutex_t slot_mu; // one action at a time
};

typedef struct slot_task {
    int seq;
    aero_slot_action action;
    const char *path;
    int n_tokens;
    aero_status st;
    aero_error err;
    bool done;
} slot_task;

// Finish reasons as logged and as OpenAI spells the two it knows.
const char *aero_finish_name(aero_finish f) {
    switch (f) {
    case AERO_FINISH_STOP: return "stop";
    case AERO_FINISH_LENGTH: return "length";
    case AERO_FINISH_CANCELLED: return "cancelled";
    case AERO_FINISH_ERROR: return "error";
    default: return "none";
    }
}

// Frees what a generation's parameters own (used on every path that drops them).
static void params_free(aero_gen_params *p) {
    free(p->prompt);
    for (int i = 0; i < p->n_stop; i++) free(p->stop[i]);
    free(p->stop);
    free(p->bias_id);
    free(p->bias);
    memset(p, 0, sizeof *p);
}

// Condition variables use the monotonic clock so waits survive wall-clock jumps.
static void cond_init_mono(pthread_cond_t *cv) {
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
}

// A generation is shared by an HTTP thread and the scheduler, hence the reference count.
aero_gen *aero_gen_new(aero_gen_params *p) {
    aero_gen *g = calloc(1, sizeof *g);
    if (!g) {
        params_free(p);
        return NULL;
    }
    g->p = *p;
    memset(p, 0, sizeof *p);
    if (g->p.top_logprobs > AERO_OAI_MAX_TOP) g->p.top_logprobs = AERO_OAI_MAX_TOP;
    if (g->p.top_logprobs < 0) g->p.top_logprobs = 0;
    pthread_mutex_init(&g->mu, NULL);
    cond_init_mono(&g->cv);
    atomic_init(&g->refs, 1);
    atomic_init(&g->cancel, false);
    g->seq = -1;
    g->spec_bidx = -1;
    return g;
}

// The last of the HTTP thread and the scheduler to let go frees the generation.
void aero_gen_unref(aero_gen *g) {
    if (!g || atomic_fetch_sub(&g->refs, 1) != 1) return;
    params_free(&g->p);
    aero_sampler_free(g->sampler);
    aero_generator_free(g->gen);
    aero_spec_free(g->spec);
    free(g->embd);
    free(g->embd_sum);
    aero_buf_free(&g->text);
    free(g->lp);
    free(g->lp_end);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g);
}

void aero_gen_cancel(aero_gen *g) { atomic_store(&g->cancel, true); }

bool aero_gen_embedding(aero_gen *g, float *out, int n_embd) {
    pthread_mutex_lock(&g->mu);
    bool ok = g->done && g->embd;
    if (ok) memcpy(out, g->embd, sizeof(float) * (size_t)n_embd);
    pthread_mutex_unlock(&g->mu);
    return ok;
}

// Absolute monotonic deadline timeout_ms from now.
static struct timespec deadline_in(int timeout_ms) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

// The reader side: blocks with a timeout so the HTTP thread can also watch its socket.
bool aero_gen_next(aero_gen *g, aero_gen_cursor *cur, int timeout_ms, aero_gen_delta *d) {
    memset(d, 0, sizeof *d);
    struct timespec dl = deadline_in(timeout_ms);
    pthread_mutex_lock(&g->mu);
    while (g->released <= cur->text && g->lp_released <= cur->lp && !g->done)
        if (pthread_cond_timedwait(&g->cv, &g->mu, &dl) == ETIMEDOUT) break;
    bool fresh = false;
    if (g->released > cur->text) {
        d->len = g->released - cur->text;
        d->text = malloc(d->len + 1);
        if (d->text) {
            memcpy(d->text, g->text.p + cur->text, d->len);
            d->text[d->len] = 0;
            cur->text = g->released;
            fresh = true;
        } else {
            d->len = 0;
        }
    }
    if (g->lp_released > cur->lp) {
        d->n_lp = g->lp_released - cur->lp;
        d->lp = malloc((size_t)d->n_lp * sizeof *d->lp);
        if (d->lp) {
            memcpy(d->lp, g->lp + cur->lp, (size_t)d->n_lp * sizeof *d->lp);
            cur->lp = g->lp_released;
            fresh = true;
        } else {
            d->n_lp = 0;
        }
    }
    // "done" only once everything has been taken, so a reader never drops the tail.
    d->done = g->done && cur->text == g->released && cur->lp == g->lp_released;
    fresh |= d->done;
    d->finish = g->finish;
    memcpy(d->error, g->error, sizeof d->error);
    d->n_prompt = g->p.n_prompt;
    d->n_gen = g->n_gen;
    d->n_cached = g->n_cached;
    d->n_drafted = g->n_drafted;
    d->n_accepted = g->n_accepted;
    d->speculative = g->speculative;
    d->t_submit = g->t_submit;
    d->t_start = g->t_start;
    d->t_first = g->t_first;
    d->t_end = g->t_end;
    pthread_mutex_unlock(&g->mu);
    return fresh;
}

// Frees the copies aero_gen_next handed out.
void aero_gen_delta_free(aero_gen_delta *d) {
    free(d->text);
    free(d->lp);
    d->text = NULL;
    d->lp = NULL;
}

// ---- scheduler thread ----

// Appends token bytes (and the token's logprob entry) to the published text; called with g->mu held.
static bool append_locked(aero_gen *g, const char *bytes, size_t n, const aero_oai_logprob *lp) {
    if (!aero_buf_append(&g->text, bytes, n)) return false;
    if (lp) {
        if (g->n_lp == g->lp_cap) {
            int cap = g->lp_cap ? g->lp_cap * 2 : 64;
            aero_oai_logprob *a = realloc(g->lp, (size_t)cap * sizeof *a);
            if (!a) return false;
            g->lp = a;
            size_t *e = realloc(g->lp_end, (size_t)cap * sizeof *e);
            if (!e) return false;
            g->lp_end = e;
            g->lp_cap = cap;
        }
        g->lp[g->n_lp] = *lp;
        g->lp_end[g->n_lp] = g->text.len;
        g->n_lp++;
    }
    return true;
}

// Cuts the text at a stop string (text held back, never released); called with g->mu held.
static void cut_locked(aero_gen *g, size_t len) {
    if (len >= g->text.len) return;
    g->text.len = len;
    g->text.p[len] = 0;
}

// Makes text up to `upto` visible to readers, with the logprob entries of the tokens it completes.
static void release_locked(aero_gen *g, size_t upto) {
    if (upto > g->released) g->released = upto;
    while (g->lp_released < g->n_lp && g->lp_end[g->lp_released] <= g->released) g->lp_released++;
}

// Publishes the active/queued gauges; the scheduler thread calls it whenever they change.
static void publish_load(aero_sched *s) {
    if (!s->metrics) return;
    pthread_mutex_lock(&s->mu);
    aero_metrics_load(s->metrics, s->n_active, s->n_queued, s->backend.n_seq);
    pthread_mutex_unlock(&s->mu);
}

// Ends a generation: frees its sequence at once, publishes the tail and wakes its reader. A generation that
// ended by its own rules has already published its final text; a cancelled or failed one keeps what was shown.
static void finish_gen(aero_sched *s, aero_gen *g, aero_finish f, const char *msg) {
    if (g->seq >= 0) {
        // a failed pass leaves the cache unknown; otherwise what it holds is in hist, for the next request
        if (!s->backend.kv_truncate || f == AERO_FINISH_ERROR) {
            s->backend.kv_drop(s->backend.self, g->seq);
            s->n_hist[g->seq] = 0;
        }
        s->used[g->seq] = ++s->n_ended;
        s->seqs[g->seq] = NULL;
        s->n_active--;
        g->seq = -1;
        publish_load(s);
    }
    if (f == AERO_FINISH_CANCELLED && s->metrics) aero_metrics_cancelled(s->metrics);
    g->state = GEN_DONE;
    aero_sampler_free(g->sampler);
    g->sampler = NULL;
    aero_generator_free(g->gen);
    g->gen = NULL;
    aero_spec_free(g->spec);
    g->spec = NULL;
    pthread_mutex_lock(&g->mu);
    size_t cut = f == AERO_FINISH_STOP || f == AERO_FINISH_LENGTH ? g->text.len : g->released;
    cut_locked(g, cut);
    release_locked(g, cut);
    g->n_lp = g->lp_released;
    g->done = true;
    g->finish = f;
    if (msg) snprintf(g->error, sizeof g->error, "%s", msg);
    g->t_end = aero_now();
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    aero_gen_unref(g);
}

// Publishes the text the generation layer added after a pass (byte for byte from the layer's text) and the
// logprob entry of a single sampled token; may finish g.
static void publish(aero_sched *s, aero_gen *g) {
    if (g->t_first == 0) {
        pthread_mutex_lock(&g->mu);
        g->t_first = aero_now();
        pthread_mutex_unlock(&g->mu);
    }
    int n_new;
    const int32_t *tok = aero_generator_new_tokens(g->gen, &n_new);
    aero_end end = aero_generator_end(g->gen);
    if (s->metrics && n_new) aero_metrics_generated(s->metrics, n_new);
    if (n_new) g->pending = tok[n_new - 1];
    aero_oai_logprob lp;
    bool with_lp = g->p.logprobs && n_new == 1 && aero_generator_last_logits(g->gen);
    if (with_lp) aero_oai_logprob_fill(aero_generator_last_logits(g->gen), s->backend.n_vocab, tok[0], g->p.top_logprobs, &lp);
    size_t len, vis = aero_generator_visible(g->gen);
    const char *text = aero_generator_text(g->gen, &len);
    pthread_mutex_lock(&g->mu);
    g->n_gen = aero_generator_n_generated(g->gen);
    bool ok = true;
    if (len < g->text.len) cut_locked(g, len); // a stop string began in text held back earlier
    if (len > g->text.len || with_lp)
        ok = append_locked(g, text + g->text.len, len - g->text.len, with_lp ? &lp : NULL);
    // the token that completed a stop string ends past the cut: its logprob is never released
    if (ok && with_lp && end == AERO_END_STOP_STRING) g->lp_end[g->n_lp - 1] = SIZE_MAX;
    if (ok) release_locked(g, vis);
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    if (!ok || end == AERO_END_INTERRUPTED) finish_gen(s, g, AERO_FINISH_ERROR, "out of memory while generating");
    else if (end == AERO_END_EOG || end == AERO_END_STOP_STRING) finish_gen(s, g, AERO_FINISH_STOP, NULL);
    else if (end == AERO_END_MAX_TOKENS || end == AERO_END_CONTEXT) finish_gen(s, g, AERO_FINISH_LENGTH, NULL);
    else g->state = GEN_DECODE;
}

// After a forward pass: the generation layer samples g's next token (when its row was wanted); may finish g.
static void advance(aero_sched *s, aero_gen *g) {
    bool was_prefilling = aero_generator_prefilling(g->gen);
    aero_generator_advance(g->gen, s->logits);
    if (was_prefilling && aero_generator_prefilling(g->gen)) return; // a middle prompt chunk
    publish(s, g);
}

// Gives up speculation for g (its decoder failed or cannot start): it goes on with plain steps, losing nothing,
// since a round changes the caches only once its pass is done.
static void spec_drop(aero_gen *g) {
    aero_spec_free(g->spec);
    g->spec = NULL;
    g->spec_live = false;
}

// Adds g's speculative round to the batch: the pending token (the root) and the nodes drafted after it, within
// room tokens. False when g cannot draft now (it is then fed plainly).
static bool spec_feed(aero_sched *s, aero_gen *g, aero_batch_buf *b, int room) {
    aero_error err = {0};
    int seq = g->seq, P = s->n_hist[seq];
    if (!g->spec_live) { // the committed tokens: what the sequence caches, then the pending token
        if (P + 1 > s->backend.n_ctx) return false;
        s->hist[seq][P] = g->pending;
        if (aero_spec_resume(g->spec, s->hist[seq], P + 1, &err)) {
            spec_drop(g);
            return false;
        }
        g->spec_live = true;
    }
    int max_new = g->p.max_tokens - aero_generator_n_generated(g->gen);
    if (max_new > room) max_new = room;
    if (max_new < 1) return false; // no room in this pass: a plain step, drafting again later
    int nn = 0;
    if (aero_spec_draft(g->spec, g->sampler, max_new, &nn, &err)) {
        spec_drop(g);
        return false;
    }
    if (nn > s->backend.spec_nodes) nn = s->backend.spec_nodes; // never: the decoder was made with this bound
    g->spec_bidx = aero_batch_buf_len(b);
    g->spec_row = aero_batch_buf_add(b, g->pending, P, seq, true);
    for (int k = 0; k < nn; k++) {
        int32_t tok;
        int parent, depth;
        aero_spec_node(g->spec, k, &tok, &parent, &depth);
        aero_batch_buf_add(b, tok, P + depth, seq, true);
    }
    g->spec_n = nn;
    return true;
}

// The batch's attention mask when some sequence drafted a tree: causal everywhere (the forward pass keeps
// sequences apart), except that a drafted node sees only its own ancestors among its sequence's nodes.
static const uint8_t *spec_mask(aero_sched *s, const aero_batch_buf *b) {
    int n = aero_batch_buf_len(b);
    bool tree = false;
    for (int i = 0; i < s->backend.n_seq && !tree; i++) {
        aero_gen *g = s->seqs[i];
        if (!g || g->spec_bidx < 0) continue;
        for (int k = 0; k < g->spec_n && !tree; k++) {
            int32_t tok;
            int parent, depth;
            aero_spec_node(g->spec, k, &tok, &parent, &depth);
            tree = parent != k - 1;
        }
    }
    if (!tree) return NULL;
    if (!s->mask) s->mask = malloc((size_t)s->backend.n_pass * (size_t)s->backend.n_pass);
    if (!s->mask) return NULL;
    for (int i = 0; i < n; i++) {
        uint8_t *row = s->mask + (size_t)i * n;
        memset(row, 1, (size_t)i + 1);
        memset(row + i + 1, 0, (size_t)(n - i - 1));
    }
    for (int i = 0; i < s->backend.n_seq; i++) {
        aero_gen *g = s->seqs[i];
        if (!g || g->spec_bidx < 0) continue;
        int r = g->spec_bidx;
        for (int k = 0; k < g->spec_n; k++) {
            uint8_t *row = s->mask + (size_t)(r + 1 + k) * n;
            memset(row + r + 1, 0, (size_t)k + 1);
            for (int j = k; j >= 0;) {
                row[r + 1 + j] = 1;
                int32_t tok;
                int depth;
                aero_spec_node(g->spec, j, &tok, &j, &depth);
            }
        }
    }
    return s->mask;
}

// After the pass: the decoder walks g's rows, the accepted path stays cached (the rest is removed), and the
// tokens go through the generation layer's rules; fit_tokens > 0: g's share of a pass of decoding tokens only.
static void spec_advance(aero_sched *s, aero_gen *g, double fit_tokens, double fit_s) {
    int n_out = 0, seq = g->seq, P = s->n_hist[seq];
    aero_spec_commit(g->spec, g->sampler, s->logits + (size_t)g->spec_row * s->backend.n_vocab, g->spec_bidx,
                     fit_tokens, fit_s, s->spec_out, &n_out);
    s->hist[seq][P] = g->pending;
    for (int j = 0; j + 1 < n_out && P + 1 + j < s->backend.n_ctx; j++) s->hist[seq][P + 1 + j] = s->spec_out[j];
    s->n_hist[seq] = P + n_out <= s->backend.n_ctx ? P + n_out : s->backend.n_ctx;
    pthread_mutex_lock(&g->mu);
    g->n_drafted += g->spec_n;
    g->n_accepted += n_out - 1;
    pthread_mutex_unlock(&g->mu);
    if (s->metrics) aero_metrics_draft(s->metrics, g->spec_n, n_out - 1);
    g->spec_bidx = -1;
    aero_generator_push(g->gen, s->spec_out, n_out);
    publish(s, g);
}

// Prompt tokens the KV cache of seq already holds.
static int common_prefix(const aero_sched *s, int seq, const aero_gen *g) {
    int n = 0, m = s->n_hist[seq] < g->p.n_prompt ? s->n_hist[seq] : g->p.n_prompt;
    while (n < m && s->hist[seq][n] == g->p.prompt[n]) n++;
    return n;
}

// The free sequence whose cache holds the longest prefix of g's prompt (ties, and requests that reuse nothing:
// the least recently used one), so a shared system prompt or a growing chat costs only its new tokens.
static int pick_seq(const aero_sched *s, const aero_gen *g) {
    int best = -1, best_n = -1;
    for (int i = 0; i < s->backend.n_seq; i++) {
        if (s->seqs[i]) continue;
        int n = g->p.fresh_kv || !s->backend.kv_truncate ? 0 : common_prefix(s, i, g);
        if (n > best_n || (n == best_n && s->used[i] < s->used[best])) {
            best = i;
            best_n = n;
        }
    }
    return best;
}

// Moves queued requests onto free sequences (oldest first) and drops queued ones whose client left.
static void admit(aero_sched *s) {
    aero_gen *dropped = NULL;
    pthread_mutex_lock(&s->mu);
    aero_gen **pp = &s->qhead;
    s->qtail = NULL;
    while (*pp) {
        aero_gen *g = *pp;
        if (atomic_load(&g->cancel)) {
            *pp = g->next;
            s->n_queued--;
            g->next = dropped;
            dropped = g;
            continue;
        }
        if (s->n_active < s->backend.n_seq) {
            *pp = g->next;
            s->n_queued--;
            int seq = pick_seq(s, g);
            s->seqs[seq] = g;
            s->n_active++;
            g->seq = seq;
            g->state = GEN_PREFILL;
            g->admit_order = s->admitted++;
            g->next = NULL;
            continue;
        }
        s->qtail = g;
        pp = &g->next;
    }
    if (s->metrics) aero_metrics_load(s->metrics, s->n_active, s->n_queued, s->backend.n_seq);
    pthread_mutex_unlock(&s->mu);
    while (dropped) {
        aero_gen *g = dropped;
        dropped = g->next;
        finish_gen(s, g, AERO_FINISH_CANCELLED, NULL);
    }
    // Set up the newly admitted outside the queue lock.
    for (int i = 0; i < s->backend.n_seq; i++) {
        aero_gen *g = s->seqs[i];
        if (!g || g->state != GEN_PREFILL || g->sampler) continue;
        g->sampler = aero_sampler_new(&g->p.sp, s->backend.n_vocab);
        int keep = g->p.fresh_kv || !s->backend.kv_truncate ? 0 : common_prefix(s, i, g);
        if (keep >= g->p.n_prompt) keep = g->p.n_prompt - 1; // the last prompt token is decoded for its logits
        if (keep > 0) s->backend.kv_truncate(s->backend.self, i, keep);
        else s->backend.kv_drop(s->backend.self, i);
        s->n_hist[i] = keep;
        // penalties see the whole prompt, as without reuse
        for (int k = 0; k < keep && g->sampler; k++) aero_sampler_accept(g->sampler, g->p.prompt[k]);
        pthread_mutex_lock(&g->mu);
        g->t_start = aero_now();
        pthread_mutex_unlock(&g->mu);
        aero_generator_params gp;
        aero_generator_params_default(&gp);
        gp.vocab =
            g->p.render_special && s->backend.vocab_special.detok_init ? &s->backend.vocab_special : &s->backend.vocab;
        gp.seq = i;
        gp.n_ctx = s->backend.n_ctx;
        gp.n_vocab = s->backend.n_vocab;
        gp.max_tokens = g->p.max_tokens;
        gp.ignore_eos = g->p.ignore_eos;
        gp.text_starts_document = g->p.detok_first;
        gp.stop = (const char *const *)g->p.stop;
        gp.n_stop = g->p.n_stop;
        gp.bias_id = g->p.bias_id;
        gp.bias = g->p.bias;
        gp.n_bias = g->p.n_bias;
        aero_error err = {0};
        if (!g->sampler) finish_gen(s, g, AERO_FINISH_ERROR, "out of memory creating the sampler");
        else if (aero_generator_new(&g->gen, &gp, g->sampler, &err) ||
                 aero_generator_begin_kept(g->gen, g->p.prompt, g->p.n_prompt, keep, &err))
            finish_gen(s, g, AERO_FINISH_ERROR, err.msg);
        else {
            // speculation where it cannot change the output's form: no logprobs (one row per token), no logit
            // bias and no constraint (the drafts would need them too)
            if (s->backend.spec_new && !g->p.embed && !g->p.logprobs && !g->p.n_bias && !g->p.sp.constraint)
                g->spec = s->backend.spec_new(s->backend.self, i, &g->p.sp);
            pthread_mutex_lock(&g->mu);
            g->speculative = g->spec != NULL;
            g->n_cached = aero_generator_n_reused(g->gen);
            pthread_mutex_unlock(&g->mu);
            if (s->metrics) {
                aero_metrics_prompt(s->metrics, g->p.n_prompt);
                aero_metrics_prompt_cached(s->metrics, g->n_cached);
            }
        }
    }
}

// Adds the next chunk of an embedding's prompt to the batch (no logits: the hidden states are read instead).
static bool embed_feed(aero_sched *s, aero_gen *g, aero_batch_buf *b, int room) {
    int c = g->p.n_prompt - g->embd_fed;
    if (c > room) c = room;
    if (c <= 0) return false;
    g->embd_bidx = aero_batch_buf_len(b);
    for (int k = 0; k < c; k++) aero_batch_buf_add(b, g->p.prompt[g->embd_fed + k], g->embd_fed + k, g->seq, false);
    g->embd_n = c;
    return true;
}

// After the pass: adds the chunk's hidden states to the sum; at the prompt's end, the mean, L2-normalized (so a
// dot product is the cosine similarity), is published and the request ends.
static void embed_advance(aero_sched *s, aero_gen *g) {
    const aero_sched_backend *e = &s->backend;
    aero_error err = {0};
    if (!g->embd_sum && !(g->embd_sum = calloc((size_t)e->n_embd, sizeof *g->embd_sum))) {
        finish_gen(s, g, AERO_FINISH_ERROR, "out of memory for an embedding");
        return;
    }
    for (int k = 0; k < g->embd_n; k++) {
        if (e->hidden(e->self, g->embd_bidx + k, s->hidden, &err)) {
            finish_gen(s, g, AERO_FINISH_ERROR, err.msg);
            return;
        }
        for (int j = 0; j < e->n_embd; j++) g->embd_sum[j] += s->hidden[j];
    }
    g->embd_fed += g->embd_n;
    g->embd_n = 0;
    if (g->embd_fed < g->p.n_prompt) return;
    float *v = malloc(sizeof(float) * (size_t)e->n_embd);
    if (!v) {
        finish_gen(s, g, AERO_FINISH_ERROR, "out of memory for an embedding");
        return;
    }
    double norm = 0;
    for (int j = 0; j < e->n_embd; j++) {
        double x = g->embd_sum[j] / g->p.n_prompt;
        g->embd_sum[j] = x;
        norm += x * x;
    }
    norm = norm > 0 ? sqrt(norm) : 1;
    for (int j = 0; j < e->n_embd; j++) v[j] = (float)(g->embd_sum[j] / norm);
    pthread_mutex_lock(&g->mu);
    g->embd = v;
    pthread_mutex_unlock(&g->mu);
    finish_gen(s, g, AERO_FINISH_STOP, NULL);
}

// One step: every decoding sequence contributes its next token (a speculating one, its draft too), prefills
// fill the rest of the batch.
static void step(aero_sched *s) {
    const aero_sched_backend *e = &s->backend;
    for (int i = 0; i < e->n_seq; i++) {
        aero_gen *g = s->seqs[i];
        if (g && atomic_load(&g->cancel)) finish_gen(s, g, AERO_FINISH_CANCELLED, NULL);
    }
    aero_batch_buf *b = s->batch;
    aero_batch_buf_clear(b);
    int n_dec = 0;
    for (int i = 0; i < e->n_seq; i++) n_dec += s->seqs[i] && s->seqs[i]->state == GEN_DECODE;
    for (int i = 0; i < e->n_seq; i++) {
        aero_gen *g = s->seqs[i];
        if (!g) continue;
        g->spec_bidx = -1;
        g->in_batch = false;
        if (g->state != GEN_DECODE) continue;
        n_dec--; // every later decoding sequence keeps one token of room
        if (g->spec && spec_feed(s, g, b, aero_batch_buf_room(b) - n_dec)) {
            g->in_batch = true;
        } else {
            g->spec_live = false; // a plain step: the decoder starts again from the sequence's tokens next time
            g->in_batch = aero_generator_feed(g->gen, b, 1) > 0;
        }
    }
    int n_decoding = aero_batch_buf_len(b);
    for (;;) { // prompts, oldest request first, as far as the pass bound allows
        aero_gen *best = NULL;
        for (int i = 0; i < e->n_seq; i++) {
            aero_gen *g = s->seqs[i];
            if (g && g->state == GEN_PREFILL && !g->in_batch && (!best || g->admit_order < best->admit_order)) best = g;
        }
        int budget = aero_batch_buf_room(b);
        if (!best || budget <= 0) break;
        best->in_batch = best->p.embed ? embed_feed(s, best, b, budget) : aero_generator_feed(best->gen, b, budget) > 0;
        if (!best->in_batch) break;
    }
    int n = aero_batch_buf_len(b);
    if (n == 0) return;
    aero_error err = {0};
    aero_batch ab = *aero_batch_buf_get(b);
    ab.mask = spec_mask(s, b);
    double t0 = aero_now();
    aero_status st = e->decode(e->self, &ab, s->logits, &err);
    double dt = aero_now() - t0;
    if (s->metrics) {
        aero_backend_stats bs = {0};
        if (e->stats) e->stats(e->self, &bs);
        aero_metrics_step(s->metrics, n, dt, e->stats ? &bs : NULL);
    }
    if (st != AERO_OK) {
        char msg[600];
        snprintf(msg, sizeof msg, "forward pass failed: %s", err.msg);
        for (int i = 0; i < n; i++) {
            aero_gen *g = s->seqs[aero_batch_buf_seq(b, i)];
            if (g) finish_gen(s, g, AERO_FINISH_ERROR, msg);
        }
        return;
    }
    for (int i = 0; i < n; i++) { // what each sequence's cache now holds (a speculating one's: after its walk)
        int q = ab.seq[i], pos = ab.pos[i];
        if (s->seqs[q] && s->seqs[q]->spec_bidx >= 0) continue;
        if (s->seqs[q] && s->seqs[q]->spec) aero_spec_observe(s->seqs[q]->spec, i, pos, 1); // a draft head's features
        if (pos < e->n_ctx) {
            s->hist[q][pos] = ab.tokens[i];
            if (s->n_hist[q] < pos + 1) s->n_hist[q] = pos + 1;
        }
    }
    int n_dec_seqs = 0; // the sequences that share the pass's fixed cost
    for (int i = 0; i < e->n_seq; i++)
        n_dec_seqs += s->seqs[i] && s->seqs[i]->in_batch && s->seqs[i]->state == GEN_DECODE;
    double share = n == n_decoding && n_dec_seqs ? 1.0 / n_dec_seqs : 0;
    for (int i = 0; i < e->n_seq; i++) {
        aero_gen *g = s->seqs[i];
        if (g && g->in_batch) {
            g->in_batch = false;
            if (g->spec_bidx >= 0) spec_advance(s, g, n * share, dt * share);
            else if (g->p.embed) embed_advance(s, g);
            else advance(s, g);
        }
    }
}

// The scheduler thread: sleeps while idle, otherwise admits and steps.
// The slot action posted by aero_sched_slot, run between steps (the sequences are the scheduler thread's).
static void run_slot_task(aero_sched *s) {
    pthread_mutex_lock(&s->mu);
    slot_task *t = s->slot_task;
    pthread_mutex_unlock(&s->mu);
    if (!t) return;
    const aero_sched_backend *e = &s->backend;
    int q = t->seq;
    aero_status st = AERO_OK;
    if (q < 0 || q >= e->n_seq) st = aero_fail(&t->err, AERO_ERR_INVALID, "no slot %d (0..%d)", q, e->n_seq - 1);
    else if (s->seqs[q]) st = aero_fail(&t->err, AERO_ERR_RANGE, "slot %d is busy with a request", q);
    else if (!e->kv_save || !e->kv_load)
        st = aero_fail(&t->err, AERO_ERR_UNSUPPORTED, "slot files are not supported by this model's context");
    else if (t->action == AERO_SLOT_SAVE) {
        st = e->kv_save(e->self, q, s->hist[q], s->n_hist[q], t->path, &t->err);
        t->n_tokens = s->n_hist[q];
    } else if (t->action == AERO_SLOT_RESTORE) {
        int32_t *tok = NULL;
        int n = 0;
        st = e->kv_load(e->self, q, t->path, &tok, &n, &t->err);
        if (!st && n > e->n_ctx) st = aero_fail(&t->err, AERO_ERR_RANGE, "the file holds %d tokens", n);
        if (!st) {
            memcpy(s->hist[q], tok, sizeof *tok * (size_t)n);
            s->n_hist[q] = n;
            s->used[q] = ++s->n_ended; // the most recently used: a request sharing its prefix picks it
            t->n_tokens = n;
        } else {
            e->kv_drop(e->self, q); // a failed read leaves nothing half-known in the sequence
            s->n_hist[q] = 0;
        }
        free(tok);
    } else {
        e->kv_drop(e->self, q);
        t->n_tokens = s->n_hist[q];
        s->n_hist[q] = 0;
    }
    pthread_mutex_lock(&s->mu);
    t->st = st;
    t->done = true;
    s->slot_task = NULL;
    pthread_cond_broadcast(&s->slot_cv);
    pthread_mutex_unlock(&s->mu);
}

aero_status aero_sched_slot(aero_sched *s, int seq, aero_slot_action action, const char *path, int *n_tokens,
                            aero_error *err) {
    slot_task t = {.seq = seq, .action = action, .path = path};
    pthread_mutex_lock(&s->slot_mu);
    pthread_mutex_lock(&s->mu);
    if (s->stop) {
        pthread_mutex_unlock(&s->mu);
        pthread_mutex_unlock(&s->slot_mu);
        return aero_fail(err, AERO_ERR_RANGE, "the server is shutting down");
    }
    s->slot_task = &t;
    pthread_cond_signal(&s->cv);
    while (!t.done && !s->stop) pthread_cond_wait(&s->slot_cv, &s->mu);
    if (!t.done) { // stopped before the action ran
        s->slot_task = NULL;
        t.st = aero_fail(&t.err, AERO_ERR_RANGE, "the server is shutting down");
    }
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_unlock(&s->slot_mu);
    if (t.st) *err = t.err;
    *n_tokens = t.n_tokens;
    return t.st;
}

static void *sched_main(void *arg) {
    aero_sched *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->stop && s->n_active == 0 && !s->qhead && !s->slot_task) pthread_cond_wait(&s->cv, &s->mu);
        bool stop = s->stop;
        pthread_mutex_unlock(&s->mu);
        if (stop) break;
        run_slot_task(s);
        admit(s);
        step(s);
    }
    return NULL;
}

aero_status aero_sched_new(aero_sched **out, const aero_sched_backend *e, int max_queue, aero_metrics *metrics,
                           aero_error *err) {
    *out = NULL;
    if (e->n_seq < 1 || e->n_vocab < 1 || e->n_ctx < 2)
        return aero_fail(err, AERO_ERR_INVALID, "scheduler: bad engine shape (n_seq %d, n_vocab %d, n_ctx %d)",
                         e->n_seq, e->n_vocab, e->n_ctx);
    aero_sched *s = calloc(1, sizeof *s);
    if (!s) return aero_fail(err, AERO_ERR_NOMEM, "scheduler: out of memory");
    s->backend = *e;
    if (s->backend.spec_nodes < 0 || !s->backend.spec_new) s->backend.spec_nodes = 0;
    if (s->backend.n_pass < s->backend.n_seq * (1 + s->backend.spec_nodes))
        s->backend.n_pass = s->backend.n_seq * (1 + s->backend.spec_nodes);
    s->metrics = metrics;
    s->max_queue = max_queue < 0 ? 0 : max_queue;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_cond_init(&s->slot_cv, NULL);
    pthread_mutex_init(&s->slot_mu, NULL);
    s->seqs = calloc((size_t)e->n_seq, sizeof *s->seqs);
    s->hist = calloc((size_t)e->n_seq, sizeof *s->hist);
    s->n_hist = calloc((size_t)e->n_seq, sizeof *s->n_hist);
    s->used = calloc((size_t)e->n_seq, sizeof *s->used);
    bool hist_ok = s->hist && s->n_hist && s->used;
    for (int i = 0; hist_ok && i < e->n_seq; i++)
        hist_ok = (s->hist[i] = malloc((size_t)e->n_ctx * sizeof **s->hist)) != NULL;
    s->batch = aero_batch_buf_new(s->backend.n_pass);
    // a speculating sequence wants a row for its root and each node
    s->logits = malloc((size_t)e->n_seq * (size_t)(1 + s->backend.spec_nodes) * (size_t)e->n_vocab * sizeof *s->logits);
    s->spec_out = malloc((size_t)(2 + s->backend.spec_nodes) * sizeof *s->spec_out);
    s->hidden = malloc((size_t)(s->backend.n_embd > 0 ? s->backend.n_embd : 1) * sizeof *s->hidden);
    if (!s->seqs || !hist_ok || !s->batch || !s->logits || !s->spec_out || !s->hidden) {
        aero_sched_free(s);
        return aero_fail(err, AERO_ERR_NOMEM, "scheduler: out of memory for batch buffers (%d x %d logits)", e->n_seq,
                         e->n_vocab);
    }
    if (pthread_create(&s->th, NULL, sched_main, s) != 0) {
        aero_sched_free(s);
        return aero_fail(err, AERO_ERR_NOMEM, "scheduler: cannot start its thread");
    }
    s->started = true;
    if (metrics) aero_metrics_load(metrics, 0, 0, e->n_seq);
    *out = s;
    return AERO_OK;
}

// Stops the loop first, then ends every generation, so no reader waits forever.
void aero_sched_shutdown(aero_sched *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_broadcast(&s->cv);
    pthread_cond_broadcast(&s->slot_cv); // a slot action waiting for the thread is answered "shutting down"
    aero_gen *q = s->qhead;
    s->qhead = s->qtail = NULL;
    s->n_queued = 0;
    pthread_mutex_unlock(&s->mu);
    if (s->started) pthread_join(s->th, NULL);
    s->started = false;
    while (q) {
        aero_gen *g = q;
        q = g->next;
        finish_gen(s, g, AERO_FINISH_ERROR, "the server is shutting down");
    }
    for (int i = 0; s->seqs && i < s->backend.n_seq; i++)
        if (s->seqs[i]) finish_gen(s, s->seqs[i], AERO_FINISH_ERROR, "the server is shutting down");
}

// Frees the scheduler after the HTTP threads that used it are gone.
void aero_sched_free(aero_sched *s) {
    if (!s) return;
    aero_sched_shutdown(s);
    free(s->seqs);
    for (int i = 0; s->hist && i < s->backend.n_seq; i++) free(s->hist[i]);
    free(s->hist);
    free(s->n_hist);
    free(s->used);
    aero_batch_buf_free(s->batch);
    free(s->logits);
    free(s->mask);
    free(s->spec_out);
    free(s->hidden);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    pthread_cond_destroy(&s->slot_cv);
    pthread_mutex_destroy(&s->slot_mu);
    free(s);
}

// Queues a request, refusing it when the queue is full (the HTTP layer answers 503).
aero_status aero_sched_submit(aero_sched *s, aero_gen *g, aero_error *err) {
    if (g->p.n_prompt < 1 || g->p.n_prompt >= s->backend.n_ctx)
        return aero_fail(err, AERO_ERR_INVALID, "the prompt has %d tokens; this context holds %d (prompt + output)",
                         g->p.n_prompt, s->backend.n_ctx);
    if (g->p.max_tokens < 1) return aero_fail(err, AERO_ERR_INVALID, "max_tokens must be at least 1");
    if (g->p.embed && (!s->backend.hidden || s->backend.n_embd < 1))
        return aero_fail(err, AERO_ERR_UNSUPPORTED, "this backend gives no hidden states (embeddings)");
    pthread_mutex_lock(&s->mu);
    if (s->stop) {
        pthread_mutex_unlock(&s->mu);
        return aero_fail(err, AERO_ERR_IO, "the server is shutting down");
    }
    if (s->n_queued >= s->max_queue) {
        int q = s->n_queued;
        pthread_mutex_unlock(&s->mu);
        return aero_fail(err, AERO_ERR_RANGE, "the server is busy: %d requests are already waiting; retry later", q);
    }
    atomic_fetch_add(&g->refs, 1);
    g->state = GEN_QUEUED;
    g->next = NULL;
    g->t_submit = aero_now();
    if (s->qtail) s->qtail->next = g;
    else s->qhead = g;
    s->qtail = g;
    s->n_queued++;
    if (s->metrics) aero_metrics_load(s->metrics, s->n_active, s->n_queued, s->backend.n_seq);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return AERO_OK;
}

// Wakes the scheduler after a cancellation.
void aero_sched_poke(aero_sched *s) {
    pthread_mutex_lock(&s->mu);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

bool aero_sched_stopping(aero_sched *s) {
    pthread_mutex_lock(&s->mu);
    bool stop = s->stop;
    pthread_mutex_unlock(&s->mu);
    return stop;
}

const aero_sched_backend *aero_sched_backend_of(const aero_sched *s) { return &s->backend; }
