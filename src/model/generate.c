// The generation layer (see generate.h for the rules): batches, prompt prefill, sampling with the stopping
// rules, streaming text with stop strings, with or without a speculative drafter.
#include "generate.h"

#include <stdlib.h>
#include <string.h>

#include "../speculative/spec.h"
#include "stop.h"

struct aero_batch_buf {
    int cap, n, n_logits;
    int32_t *tok, *pos, *seq;
    uint8_t *want;
    aero_batch b;
};

// One allocation-checked batch so callers never build position arrays themselves.
aero_batch_buf *aero_batch_buf_new(int cap) {
    if (cap < 1) cap = 1;
    aero_batch_buf *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->cap = cap;
    b->tok = malloc(sizeof(int32_t) * (size_t)cap);
    b->pos = malloc(sizeof(int32_t) * (size_t)cap);
    b->seq = malloc(sizeof(int32_t) * (size_t)cap);
    b->want = malloc((size_t)cap);
    if (!b->tok || !b->pos || !b->seq || !b->want) {
        aero_batch_buf_free(b);
        return NULL;
    }
    return b;
}

void aero_batch_buf_free(aero_batch_buf *b) {
    if (!b) return;
    free(b->tok);
    free(b->pos);
    free(b->seq);
    free(b->want);
    free(b);
}

void aero_batch_buf_clear(aero_batch_buf *b) { b->n = b->n_logits = 0; }
int aero_batch_buf_len(const aero_batch_buf *b) { return b->n; }
int aero_batch_buf_room(const aero_batch_buf *b) { return b->cap - b->n; }
int32_t aero_batch_buf_seq(const aero_batch_buf *b, int i) { return b->seq[i]; }

// Appends one token; the logits row it will own is the count of wanted tokens before it.
int aero_batch_buf_add(aero_batch_buf *b, int32_t tok, int32_t pos, int32_t seq, bool want_logits) {
    if (b->n >= b->cap) return -1;
    b->tok[b->n] = tok;
    b->pos[b->n] = pos;
    b->seq[b->n] = seq;
    b->want[b->n] = want_logits;
    b->n++;
    return want_logits ? b->n_logits++ : -1;
}

// The aero_batch view of the arrays, refreshed because they are only read at decode time.
const aero_batch *aero_batch_buf_get(aero_batch_buf *b) {
    b->b =
        (aero_batch){.n = b->n, .tokens = b->tok, .pos = b->pos, .seq = b->seq, .mask = NULL, .want_logits = b->want};
    return &b->b;
}

// Prompt decoding shared by every caller that feeds known tokens (prompts, drafters): one pass unless the
// caller bounds it, because each pass reads the streamed weights once.
aero_status aero_prefill(aero_ctx *c, int seq, const int32_t *toks, int n, int pos0, int n_batch, float *last_logits,
                         aero_error *err) {
    if (n_batch <= 0 || n_batch > n) n_batch = n > 0 ? n : 1;
    int cap = n < n_batch ? n : n_batch;
    aero_batch_buf *b = aero_batch_buf_new(cap);
    if (!b) return aero_fail(err, AERO_ERR_NOMEM, "out of memory for a batch of %d tokens", cap);
    aero_status st = AERO_OK;
    for (int first = 0; first < n && !st; first += n_batch) {
        int k = n - first < n_batch ? n - first : n_batch;
        aero_batch_buf_clear(b);
        for (int i = 0; i < k; i++)
            aero_batch_buf_add(b, toks[first + i], pos0 + first + i, seq, last_logits && first + i == n - 1);
        st = aero_decode(c, aero_batch_buf_get(b), last_logits, err);
    }
    aero_batch_buf_free(b);
    return st;
}

// ---- generations ----

struct aero_generator {
    aero_generator_params p;
    aero_generator_vocab vocab;
    bool own_vocab; // vocab calls the tokenizer
    aero_sampler *smp;
    aero_end end;
    int32_t *prompt;
    int n_prompt, n_fed, n_reused, n_past, n_gen;
    int32_t *hist; // tokens in the KV cache of the sequence (with ctx, no drafter)
    int n_hist;
    int32_t next_tok;
    bool has_next;
    int fed, row;                // tokens added by the last feed, their logits row (-1: none)
    int32_t *new_tok, *spec_tok; // tokens emitted by the last step; a drafter round's output
    int n_new, cap_new;
    const float *last_logits;
    float *scratch, *logits; // biased row; the step's own logits
    aero_batch_buf *bb;      // the step's own batch
    aero_detok detok;
    char *text;
    size_t len, cap, visible;
    aero_stop stop; // the stop strings' matcher over text
};

const char *aero_end_name(aero_end e) {
    switch (e) {
    case AERO_END_EOG: return "end of text";
    case AERO_END_STOP_STRING: return "stop string";
    case AERO_END_MAX_TOKENS: return "length";
    case AERO_END_CONTEXT: return "context full";
    case AERO_END_INTERRUPTED: return "interrupted";
    default: return "none";
    }
}

void aero_generator_params_default(aero_generator_params *p) {
    memset(p, 0, sizeof *p);
    p->max_tokens = -1;
}

// The tokenizer behind the vocabulary callbacks, for the usual case of a real model.
static bool tok_eog(void *self, int32_t t) { return aero_tokenizer_is_eog(self, t); }
static void tok_detok_init(void *self, aero_detok *d, bool first) {
    aero_detok_init(d, self, false);
    d->first = first;
}
static size_t tok_push(void *self, aero_detok *d, int32_t t, char *out, size_t cap) {
    (void)self;
    return aero_detok_push(d, t, out, cap);
}
static size_t tok_flush(void *self, aero_detok *d, char *out, size_t cap) {
    (void)self;
    return aero_detok_flush(d, out, cap);
}

void aero_generator_vocab_of(aero_generator_vocab *v, const aero_tokenizer *t) {
    *v = (aero_generator_vocab){(void *)t, tok_eog, tok_detok_init, tok_push, tok_flush};
}

aero_status aero_generator_new(aero_generator **out, const aero_generator_params *p, aero_sampler *smp,
                               aero_error *err) {
    *out = NULL;
    if (!p->tok && !p->vocab) return aero_fail(err, AERO_ERR_INVALID, "generator: no tokenizer and no vocabulary");
    aero_generator *g = calloc(1, sizeof *g);
    if (!g) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    g->p = *p;
    g->smp = smp;
    if (p->ctx) {
        g->p.n_ctx = aero_ctx_n_ctx(p->ctx);
        g->p.n_vocab = aero_model_hparams(aero_ctx_model(p->ctx))->n_vocab;
    }
    if (p->vocab) g->vocab = *p->vocab;
    else aero_generator_vocab_of(&g->vocab, p->tok);
    g->cap_new = p->spec ? aero_spec_max_step_tokens(p->spec) : 1;
    if (p->spec && p->n_bias) {
        free(g);
        return aero_fail(err, AERO_ERR_INVALID, "logit bias is not supported with speculative decoding");
    }
    g->new_tok = malloc(sizeof(int32_t) * (size_t)g->cap_new);
    bool ok = g->new_tok != NULL;
    if (p->spec) ok &= (g->spec_tok = malloc(sizeof(int32_t) * (size_t)g->cap_new)) != NULL;
    if (p->n_bias) ok &= (g->scratch = malloc(sizeof(float) * (size_t)g->p.n_vocab)) != NULL;
    if (p->ctx && !p->spec) {
        ok &= (g->hist = malloc(sizeof(int32_t) * ((size_t)g->p.n_ctx + 1))) != NULL;
        ok &= (g->logits = malloc(sizeof(float) * (size_t)g->p.n_vocab)) != NULL;
        ok &= (g->bb = aero_batch_buf_new(g->p.n_batch > 0 ? g->p.n_batch : 1)) != NULL;
    }
    aero_stop_init(&g->stop, p->stop, p->n_stop);
    if (!ok) {
        aero_generator_free(g);
        return aero_fail(err, AERO_ERR_NOMEM, "out of memory for a generation (vocabulary %d)", p->n_vocab);
    }
    *out = g;
    return AERO_OK;
}

void aero_generator_free(aero_generator *g) {
    if (!g) return;
    free(g->prompt);
    free(g->hist);
    free(g->new_tok);
    free(g->spec_tok);
    free(g->scratch);
    free(g->logits);
    aero_batch_buf_free(g->bb);
    free(g->text);
    free(g);
}

// The tokens of one step's pass: the prompt's remaining tokens (at most n_batch when set), else one.
static int pass_tokens(const aero_generator *g) {
    int n = g->n_prompt - g->n_fed;
    if (g->p.n_batch > 0 && n > g->p.n_batch) n = g->p.n_batch;
    return n > 1 ? n : 1;
}

// Grows the step's batch so the prompt goes in one pass.
static aero_status size_batch(aero_generator *g, aero_error *err) {
    int need = pass_tokens(g);
    if (aero_batch_buf_len(g->bb) + aero_batch_buf_room(g->bb) >= need) return AERO_OK;
    aero_batch_buf *b = aero_batch_buf_new(need);
    if (!b) return aero_fail(err, AERO_ERR_NOMEM, "out of memory for a batch of %d prompt tokens", need);
    aero_batch_buf_free(g->bb);
    g->bb = b;
    return AERO_OK;
}

aero_status aero_generator_begin(aero_generator *g, const int32_t *prompt, int n, aero_error *err) {
    if (n < 1) return aero_fail(err, AERO_ERR_INVALID, "the prompt is empty");
    if (n >= g->p.n_ctx)
        return aero_fail(err, AERO_ERR_RANGE, "the prompt has %d tokens, more than the context size %d allows", n,
                         g->p.n_ctx);
    int32_t *copy = malloc(sizeof(int32_t) * (size_t)n);
    if (!copy) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    memcpy(copy, prompt, sizeof(int32_t) * (size_t)n);
    free(g->prompt);
    g->prompt = copy;
    g->n_prompt = n;
    g->n_gen = g->n_new = g->fed = 0;
    g->row = -1;
    g->has_next = false;
    g->last_logits = NULL;
    g->len = g->visible = 0;
    aero_stop_init(&g->stop, g->p.stop, g->p.n_stop);
    g->end = g->p.max_tokens == 0 ? AERO_END_MAX_TOKENS : AERO_END_NONE;
    g->vocab.detok_init(g->vocab.self, &g->detok, g->p.text_starts_document);
    int keep = 0;
    if (g->p.spec) {
        aero_status st = aero_spec_begin(g->p.spec, prompt, n, g->p.max_tokens, err);
        if (st) return st;
        g->n_fed = g->n_past = n; // the drafter verifies the last chunk with its first draft
        for (int i = 0; i < n; i++) aero_sampler_accept(g->smp, prompt[i]);
        return AERO_OK;
    }
    if (g->hist) {
        while (keep < g->n_hist && keep < n && g->hist[keep] == prompt[keep]) keep++;
        if (keep == n) keep = n - 1; // the last prompt token is decoded again for its logits
        aero_kv_truncate(g->p.ctx, g->p.seq, keep);
        g->n_hist = keep;
    }
    g->n_reused = keep;
    g->n_fed = g->n_past = keep;
    return g->bb ? size_batch(g, err) : AERO_OK;
}

// For a caller that runs the passes itself (no ctx) and kept the sequence's KV entries of the prompt's first
// keep tokens: the generation decodes only the rest, as begin does with ctx.
aero_status aero_generator_begin_kept(aero_generator *g, const int32_t *prompt, int n, int keep, aero_error *err) {
    aero_status st = aero_generator_begin(g, prompt, n, err);
    if (st || g->p.ctx || g->p.spec || keep <= 0) return st;
    if (keep > n - 1) keep = n - 1; // the last prompt token is decoded again for its logits
    g->n_reused = keep;
    g->n_fed = g->n_past = keep;
    return AERO_OK;
}

int aero_generator_feed(aero_generator *g, aero_batch_buf *b, int room) {
    g->fed = 0;
    g->row = -1;
    int r = aero_batch_buf_room(b);
    if (room > r) room = r;
    if (room <= 0) return 0;
    if (g->n_fed < g->n_prompt) {
        int c = g->n_prompt - g->n_fed;
        if (c > room) c = room;
        for (int k = 0; k < c; k++) {
            bool last = g->n_fed + k == g->n_prompt - 1;
            int row = aero_batch_buf_add(b, g->prompt[g->n_fed + k], g->n_fed + k, g->p.seq, last);
            if (last) g->row = row;
        }
        g->fed = c;
    } else if (g->has_next && g->end == AERO_END_NONE) {
        g->row = aero_batch_buf_add(b, g->next_tok, g->n_past, g->p.seq, true);
        g->fed = 1;
    }
    return g->fed;
}

// Appends bytes to the text, growing it.
static bool text_add(aero_generator *g, const char *s, size_t n) {
    if (g->len + n + 1 > g->cap) {
        size_t cap = g->cap ? g->cap : 256;
        while (cap < g->len + n + 1) cap *= 2;
        char *t = realloc(g->text, cap);
        if (!t) return false;
        g->text = t;
        g->cap = cap;
    }
    memcpy(g->text + g->len, s, n);
    g->len += n;
    g->text[g->len] = 0;
    return true;
}

// Finds the earliest stop string in the text (true: *cut is its offset) or else sets what may be shown.
static bool stop_scan(aero_generator *g, size_t *cut) {
    return aero_stop_scan(&g->stop, g->text, g->len, cut, &g->visible);
}

// Ends the generation: the detokenizer's tail joins the text, which may then complete a stop string.
static void finish(aero_generator *g, aero_end e) {
    g->end = e;
    if (e == AERO_END_STOP_STRING) return;
    char tail[64];
    size_t n = g->vocab.detok_flush(g->vocab.self, &g->detok, tail, sizeof tail);
    if (n) text_add(g, tail, n);
    size_t cut;
    if (stop_scan(g, &cut)) {
        g->len = cut;
        g->end = AERO_END_STOP_STRING;
    }
    g->visible = g->len;
    if (g->text) g->text[g->len] = 0;
}

// One sampled (and accepted) token through the rules; false when it ended the generation.
static bool take(aero_generator *g, int32_t t) {
    if (!g->p.ignore_eos && g->vocab.is_eog(g->vocab.self, t)) {
        finish(g, AERO_END_EOG);
        return false;
    }
    g->new_tok[g->n_new++] = t;
    g->n_gen++;
    char piece[1024];
    size_t n = g->vocab.detok_push(g->vocab.self, &g->detok, t, piece, sizeof piece);
    if (n > sizeof piece) n = sizeof piece;
    if (!text_add(g, piece, n)) {
        finish(g, AERO_END_INTERRUPTED);
        return false;
    }
    size_t cut;
    if (stop_scan(g, &cut)) {
        g->len = cut;
        g->text[cut] = 0;
        finish(g, AERO_END_STOP_STRING);
        return false;
    }
    if (g->p.max_tokens >= 0 && g->n_gen >= g->p.max_tokens) {
        finish(g, AERO_END_MAX_TOKENS);
        return false;
    }
    return true;
}

void aero_generator_advance(aero_generator *g, const float *logits) {
    g->n_new = 0;
    int fed = g->fed;
    g->fed = 0;
    if (fed == 0) return;
    if (g->n_fed < g->n_prompt) {
        for (int k = 0; k < fed; k++) {
            aero_sampler_accept(g->smp, g->prompt[g->n_fed + k]);
            if (g->hist) g->hist[g->n_hist++] = g->prompt[g->n_fed + k];
        }
        g->n_fed += fed;
        g->n_past += fed;
    } else {
        if (g->hist) g->hist[g->n_hist++] = g->next_tok;
        g->n_past++;
        g->has_next = false;
    }
    if (g->row < 0 || g->end != AERO_END_NONE) return;
    const float *lg = logits + (size_t)g->row * g->p.n_vocab;
    if (g->p.n_bias) {
        memcpy(g->scratch, lg, sizeof(float) * (size_t)g->p.n_vocab);
        for (int i = 0; i < g->p.n_bias; i++)
            if (g->p.bias_id[i] >= 0 && g->p.bias_id[i] < g->p.n_vocab) g->scratch[g->p.bias_id[i]] += g->p.bias[i];
        lg = g->scratch;
    }
    g->last_logits = lg;
    int32_t t = aero_sampler_sample(g->smp, lg);
    aero_sampler_accept(g->smp, t);
    if (!take(g, t)) return;
    if (g->n_past >= g->p.n_ctx) {
        finish(g, AERO_END_CONTEXT);
        return;
    }
    g->next_tok = t;
    g->has_next = true;
}

void aero_generator_push(aero_generator *g, const int32_t *toks, int n) {
    g->n_new = 0;
    g->fed = 0;
    g->row = -1;
    g->last_logits = NULL;
    if (g->end != AERO_END_NONE || n < 1) return;
    if (n > g->cap_new) {
        int32_t *t = realloc(g->new_tok, sizeof(int32_t) * (size_t)n);
        if (!t) {
            finish(g, AERO_END_INTERRUPTED);
            return;
        }
        g->new_tok = t;
        g->cap_new = n;
    }
    if (g->has_next) { // the pending token went in with the caller's pass
        if (g->hist) g->hist[g->n_hist++] = g->next_tok;
        g->n_past++;
        g->has_next = false;
    }
    for (int i = 0; i < n; i++) {
        if (!take(g, toks[i])) return;
        if (g->n_past >= g->p.n_ctx) {
            finish(g, AERO_END_CONTEXT);
            return;
        }
        if (i == n - 1) break;
        if (g->hist) g->hist[g->n_hist++] = toks[i];
        g->n_past++;
    }
    g->next_tok = toks[n - 1];
    g->has_next = true;
}

// One draft-and-verify round of the speculative decoder, its tokens through the same rules.
static aero_status spec_step(aero_generator *g, aero_error *err) {
    aero_spec *s = g->p.spec;
    g->n_new = 0;
    if (aero_spec_n_tokens(s) > g->p.n_ctx) {
        finish(g, AERO_END_CONTEXT);
        return AERO_OK;
    }
    int want = g->cap_new;
    if (g->p.max_tokens >= 0 && g->p.max_tokens - g->n_gen < want) want = g->p.max_tokens - g->n_gen;
    int got = 0;
    aero_status st = aero_spec_step(s, g->smp, want, g->spec_tok, &got, err);
    if (st) return st;
    for (int i = 0; i < got; i++)
        if (!take(g, g->spec_tok[i])) return AERO_OK;
    if (aero_spec_n_tokens(s) > g->p.n_ctx) finish(g, AERO_END_CONTEXT);
    return AERO_OK;
}

aero_status aero_generator_step(aero_generator *g, aero_error *err) {
    g->n_new = 0;
    if (g->p.spec) return g->end ? AERO_OK : spec_step(g, err);
    if (!g->p.ctx) return aero_fail(err, AERO_ERR_INVALID, "generator: step needs a context");
    aero_batch_buf_clear(g->bb);
    if (aero_generator_feed(g, g->bb, pass_tokens(g)) == 0) return AERO_OK;
    aero_status st = aero_decode(g->p.ctx, aero_batch_buf_get(g->bb), g->logits, err);
    if (st) {
        g->fed = 0;
        return st;
    }
    aero_generator_advance(g, g->logits);
    return AERO_OK;
}

aero_status aero_generator_prefill(aero_generator *g, aero_error *err) {
    while (!g->p.spec && g->n_fed < g->n_prompt) {
        aero_status st = aero_generator_step(g, err);
        if (st) return st;
    }
    return AERO_OK;
}

void aero_generator_interrupt(aero_generator *g) {
    if (g->end == AERO_END_NONE) finish(g, AERO_END_INTERRUPTED);
}

aero_end aero_generator_end(const aero_generator *g) { return g->end; }
bool aero_generator_prefilling(const aero_generator *g) { return g->n_fed < g->n_prompt; }
int aero_generator_n_prompt(const aero_generator *g) { return g->n_prompt; }
int aero_generator_n_reused(const aero_generator *g) { return g->n_reused; }

// A saved prompt is loaded into the cache outside the generator: its tokens become the history begin matches.
void aero_generator_set_history(aero_generator *g, const int32_t *toks, int n) {
    if (!g->hist || n < 0) return;
    if (n > g->p.n_ctx) n = g->p.n_ctx;
    memcpy(g->hist, toks, sizeof(int32_t) * (size_t)n);
    g->n_hist = n;
}
int aero_generator_n_generated(const aero_generator *g) { return g->n_gen; }
const float *aero_generator_last_logits(const aero_generator *g) { return g->last_logits; }
size_t aero_generator_visible(const aero_generator *g) { return g->visible; }

const int32_t *aero_generator_new_tokens(const aero_generator *g, int *n) {
    *n = g->n_new;
    return g->new_tok;
}

const char *aero_generator_text(const aero_generator *g, size_t *len) {
    *len = g->len;
    return g->text ? g->text : "";
}
