// Offline batch jobs in the OpenAI Batch format (`aerollm batch`): each input line is a request the server would
// take, answered with the body the server would send, through the server's own parts: the request parser
// (request.c), the model adapter (engine.c: chat template, tokenization), the scheduler (sched.c) driven in
// process, which puts every running request's next token and the waiting prompts into one forward pass and
// refills a sequence as soon as its request ends, and the response builders (oai.c).
//
// Nothing is lost: an output line is appended and flushed as each request ends; a rerun with resume keeps the
// complete lines of the output (dropping a half-written last one) and skips their custom_ids. A malformed line
// gets an error line and the job goes on.
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../server/internal.h"

// A request handed to the scheduler, and what has come back of it.
typedef struct {
    aero_gen *gen;
    aero_gen_cursor cur;
    char *custom_id;
    char id[48];
    aero_oai_meta meta;
    bool logprobs;
    int top_logprobs;
    aero_buf text; // the echo (completions' echo), then the output
    aero_oai_logprob *lp;
    int n_lp, lp_cap;
    aero_grammar *grammar;
    aero_sampler_constraint *constraint;
} job_item;

// A teacher-forcing request (completions with echo and logprobs): its prompt is scored, token by token, after
// the generation requests (it uses the context directly, so only while the scheduler is idle).
typedef struct {
    char *custom_id;
    int32_t *ids;
    int n_ids;
    int n_top;
    char *echo; // the prompt text as the response echoes it
    size_t echo_len;
} score_item;

typedef struct {
    const aero_batch_job_params *p;
    aero_srv_model x;
    bool model_open;
    aero_sched *sched;
    aero_grammar_vocab *gvocab;
    char model_id[256];
    FILE *out;
    json_t *done; // custom_ids answered (as keys), from the output file and this run
    json_t *seen; // custom_ids met in this run's input: a second one is an error
    job_item *items;
    int n_items, cap_items;
    score_item *scores;
    int n_scores, cap_scores;
    unsigned long long next_id;
    aero_batch_job_stats *st;
    int total; // requests in the input (non-blank lines)
    double t0, t_progress;
    bool io_failed;
    char io_err[256];
} job;

// Ids unique across runs (a resumed job must not repeat the first run's), as the server makes them.
static void make_id(job *j, const char *prefix, char *out, size_t cap) {
    unsigned long long n = ++j->next_id;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned long long x = ((unsigned long long)ts.tv_sec * 1000000007ull) ^ (unsigned long long)ts.tv_nsec ^
                           (n << 40) ^ ((unsigned long long)getpid() << 20);
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    snprintf(out, cap, "%s-%016llx%04llx", prefix, x, n & 0xffff);
}

// Appends one output line and flushes it, so that a killed job keeps every answer it wrote.
static void write_line(job *j, const char *custom_id, int status, const char *request_id, json_t *body,
                       json_t *error) {
    char id[64];
    make_id(j, "batch_req", id, sizeof id);
    json_t *line = json_object();
    json_object_set_new(line, "id", json_string(id));
    json_object_set_new(line, "custom_id", aero_oai_string(custom_id, strlen(custom_id)));
    if (body) {
        json_t *resp = json_object();
        json_object_set_new(resp, "status_code", json_integer(status));
        json_object_set_new(resp, "request_id", request_id ? json_string(request_id) : json_null());
        json_object_set_new(resp, "body", body);
        json_object_set_new(line, "response", resp);
    } else {
        json_object_set_new(line, "response", json_null());
    }
    json_object_set_new(line, "error", error ? error : json_null());
    char *s = json_dumps(line, JSON_COMPACT);
    json_decref(line);
    if (!s || fputs(s, j->out) < 0 || fputc('\n', j->out) < 0 || fflush(j->out) != 0) {
        if (!j->io_failed) snprintf(j->io_err, sizeof j->io_err, "%s: write failed: %s", j->p->output, strerror(errno));
        j->io_failed = true;
    }
    free(s);
    json_object_set_new(j->done, custom_id, json_true());
    j->st->n_done++;
    if (status != 200) j->st->n_errors++;
}

// A line that is not a request at all: no response, an error object naming the line.
static void write_line_error(job *j, const char *custom_id, int line, const char *code, const char *msg) {
    char text[600];
    snprintf(text, sizeof text, "line %d: %s", line, msg);
    write_line(j, custom_id, 0, NULL, NULL, json_pack("{s:s,s:s,s:i}", "code", code, "message", text, "line", line));
}

// A request the server would refuse: the status and error body it would answer with.
static void write_http_error(job *j, const char *custom_id, int status, const char *msg, const char *param,
                             const char *code) {
    write_line(j, custom_id, status, NULL, aero_oai_error(status, msg, param, code), NULL);
}

// The model names a request may use, as the server accepts them.
static bool model_ok(job *j, const char *name) {
    if (!name || !*name || !strcmp(name, j->model_id)) return true;
    const char *path = j->p->server.model.path ? j->p->server.model.path : "";
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (!strcmp(name, path) || !strcmp(name, base)) return true;
    size_t bl = strlen(base);
    return bl > 5 && !strcmp(base + bl - 5, ".gguf") && strlen(name) == bl - 5 && !strncmp(name, base, bl - 5);
}

static int status_of(aero_status st) { return st == AERO_ERR_NOMEM ? 500 : 400; }

// Token bytes and kinds for constrained output (response_format), as the server builds its grammar vocabulary.
static size_t gv_piece(void *ctx, int32_t id, char *buf, size_t cap) {
    return aero_token_to_bytes(((aero_srv_model *)ctx)->tok, id, false, buf, cap);
}
static int gv_kind(void *ctx, int32_t id) {
    const aero_tokenizer *t = ((aero_srv_model *)ctx)->tok;
    if (aero_tokenizer_is_eog(t, id)) return 2;
    return aero_tokenizer_is_control(t, id) ? 1 : 0;
}

// Copies stop strings out of the request JSON (freed before the generation ends); extra slots stay free.
static char **dup_strings(const char *const *src, int n, int extra) {
    char **a = calloc((size_t)(n + extra + 1), sizeof *a);
    for (int i = 0; a && i < n; i++)
        if (!(a[i] = strdup(src[i]))) {
            for (int k = 0; k < i; k++) free(a[k]);
            free(a);
            return NULL;
        }
    return a;
}

// One parsed request body on its way to the scheduler, the same steps in the same order as the server's
// handle_generate: the model name, the prompt, max_tokens against the context, echo, the generation's parameters.
// Returns false when the request was answered (with the error the server would give).
static bool submit(job *j, const char *custom_id, aero_req_kind kind, aero_req *q) {
    aero_srv_model *x = &j->x;
    aero_error err = {0};
    aero_status st = AERO_OK;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    char *text = NULL;
    size_t text_len = 0;
    const char *pparam = kind == AERO_REQ_CHAT ? "messages" : "prompt";
    job_item it = {0};
    aero_gen_params gp = {0};
    if (!model_ok(j, q->model)) {
        char msg[400];
        snprintf(msg, sizeof msg, "The model '%.200s' does not exist; this server serves '%.100s'", q->model,
                 j->model_id);
        write_http_error(j, custom_id, 404, msg, "model", "model_not_found");
        return false;
    }
    if (kind == AERO_REQ_CHAT) {
        if ((st = aero_srv_model_render(x, q->messages, q->tools, &text, &text_len, &err))) {
            write_http_error(j, custom_id, status_of(st), err.msg, "messages", NULL);
            return false;
        }
        st = aero_srv_model_tokenize(x, text, text_len, true, true, &ids, &n_ids, &err);
        free(text);
    } else if (q->prompt_ids) {
        ids = q->prompt_ids;
        n_ids = q->n_prompt_ids;
        q->prompt_ids = NULL;
    } else {
        st = aero_srv_model_tokenize(x, q->prompt, q->prompt_len, true, true, &ids, &n_ids, &err);
    }
    if (st) {
        write_http_error(j, custom_id, status_of(st), err.msg, pparam, NULL);
        goto fail;
    }
    if (n_ids == 0) {
        write_http_error(j, custom_id, 400, "The prompt is empty and this model has no BOS token to start from",
                         pparam, NULL);
        goto fail;
    }
    // max_tokens against the context (OpenAI's errors; an absent one is the room left, 16 for completions)
    int n_ctx = x->backend.n_ctx;
    if (n_ids >= (size_t)n_ctx) {
        char msg[256];
        snprintf(msg, sizeof msg, "This model's maximum context length is %d tokens. However, your %s has %zu tokens.",
                 n_ctx, pparam, n_ids);
        write_http_error(j, custom_id, 400, msg, pparam, "context_length_exceeded");
        goto fail;
    }
    int room = n_ctx - (int)n_ids, max_tokens = q->max_tokens;
    if (max_tokens < 0) {
        max_tokens = kind == AERO_REQ_COMPLETION ? 16 : room;
        if (max_tokens > room) max_tokens = room;
    } else if (max_tokens > room) {
        char msg[400];
        snprintf(msg, sizeof msg,
                 "This model's maximum context length is %d tokens. However, you requested %lld tokens (%zu in the "
                 "%s, %d in the completion). Please reduce the length of the %s or the completion.",
                 n_ctx, (long long)n_ids + max_tokens, n_ids, pparam, max_tokens, pparam);
        write_http_error(j, custom_id, 400, msg, q->max_tokens == max_tokens ? "max_tokens" : NULL,
                         "context_length_exceeded");
        goto fail;
    }
    if (q->echo) { // completions: the prompt text (or the detokenized ids) before the output
        if (q->prompt) aero_buf_append(&it.text, q->prompt, q->prompt_len);
        else {
            char *e = NULL;
            size_t el = 0;
            if (!aero_detokenize(x->tok, ids, n_ids, false, &e, &el, &err)) aero_buf_append(&it.text, e, el);
            free(e);
        }
    }
    bool fallback = kind == AERO_REQ_CHAT && !x->tmpl;
    gp.stop = dup_strings(q->stop, q->n_stop, fallback ? 1 : 0);
    gp.n_stop = q->n_stop;
    if (gp.stop && fallback) { // ChatML turns end at <|im_end|>, even where the vocabulary lacks the token
        gp.stop[gp.n_stop] = strdup("<|im_end|>");
        if (gp.stop[gp.n_stop]) gp.n_stop++;
    }
    bool ok = gp.stop != NULL;
    if (q->n_bias) {
        gp.bias_id = malloc((size_t)q->n_bias * sizeof *gp.bias_id);
        gp.bias = malloc((size_t)q->n_bias * sizeof *gp.bias);
        if ((ok &= gp.bias_id && gp.bias)) {
            memcpy(gp.bias_id, q->bias_id, (size_t)q->n_bias * sizeof *gp.bias_id);
            memcpy(gp.bias, q->bias, (size_t)q->n_bias * sizeof *gp.bias);
            gp.n_bias = q->n_bias;
        }
    }
    gp.detok_first = n_ids == 1 && ids[0] == aero_tokenizer_bos(x->tok);
    gp.prompt = ids;
    gp.n_prompt = (int)n_ids;
    ids = NULL;
    gp.max_tokens = max_tokens;
    gp.sp = q->sp;
    if (!q->has_seed) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        gp.sp.seed = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (++j->next_id) * 0x9e3779b97f4a7c15ull;
    }
    gp.logprobs = q->logprobs;
    gp.top_logprobs = q->top_logprobs;
    gp.ignore_eos = q->ignore_eos;
    gp.fresh_kv = !q->cache_prompt;
    if (q->grammar) {
        if (!j->gvocab) j->gvocab = aero_grammar_vocab_new(x->backend.n_vocab, gv_piece, gv_kind, x);
        it.constraint = j->gvocab ? aero_grammar_constraint_new(q->grammar, j->gvocab) : NULL;
        it.grammar = q->grammar;
        q->grammar = NULL;
        gp.sp.constraint = it.constraint;
        ok &= it.constraint != NULL;
    }
    aero_gen *gen = aero_gen_new(&gp);
    if (!gen || !ok) {
        aero_gen_unref(gen);
        write_http_error(j, custom_id, 500, "out of memory queueing the request", NULL, NULL);
        goto fail;
    }
    if ((st = aero_sched_submit(j->sched, gen, &err))) {
        aero_gen_unref(gen);
        write_http_error(j, custom_id, st == AERO_ERR_INVALID ? 400 : 503, err.msg, NULL,
                         st == AERO_ERR_RANGE ? "queue_full" : NULL);
        goto fail;
    }
    it.gen = gen;
    it.custom_id = strdup(custom_id);
    make_id(j, kind == AERO_REQ_CHAT ? "chatcmpl" : "cmpl", it.id, sizeof it.id);
    it.meta = (aero_oai_meta){.chat = kind == AERO_REQ_CHAT, .model = j->model_id, .created = (long long)time(NULL)};
    it.logprobs = q->logprobs;
    it.top_logprobs = q->top_logprobs;
    if (j->n_items == j->cap_items) {
        int cap = j->cap_items ? j->cap_items * 2 : 16;
        job_item *a = realloc(j->items, (size_t)cap * sizeof *a);
        if (!a) {
            aero_gen_cancel(gen);
            aero_gen_unref(gen);
            write_http_error(j, custom_id, 500, "out of memory queueing the request", NULL, NULL);
            goto fail;
        }
        j->items = a;
        j->cap_items = cap;
    }
    j->items[j->n_items++] = it; // meta.id is set at use: the item moves with the array
    return true;
fail:
    free(ids);
    aero_buf_free(&it.text);
    free(it.custom_id);
    aero_grammar_constraint_free(it.constraint);
    aero_grammar_free(it.grammar);
    return false;
}

// Frees what an item holds once its generation is over.
static void item_free(job_item *it) {
    aero_gen_unref(it->gen);
    aero_grammar_constraint_free(it->constraint);
    aero_grammar_free(it->grammar);
    aero_buf_free(&it->text);
    free(it->lp);
    free(it->custom_id);
}

// Takes what is new of an item's generation; at its end writes the response the server would send. True when
// the item ended (answered).
static bool collect(job *j, job_item *it, int timeout_ms) {
    for (;;) {
        aero_gen_delta d;
        bool fresh = aero_gen_next(it->gen, &it->cur, timeout_ms, &d);
        if (d.len) aero_buf_append(&it->text, d.text, d.len);
        if (d.n_lp) {
            if (it->n_lp + d.n_lp > it->lp_cap) {
                int cap = (it->n_lp + d.n_lp) * 2;
                aero_oai_logprob *a = realloc(it->lp, (size_t)cap * sizeof *a);
                if (a) {
                    it->lp = a;
                    it->lp_cap = cap;
                }
            }
            if (it->n_lp + d.n_lp <= it->lp_cap) {
                memcpy(it->lp + it->n_lp, d.lp, (size_t)d.n_lp * sizeof *d.lp);
                it->n_lp += d.n_lp;
            }
        }
        aero_gen_delta_free(&d);
        if (d.done) {
            j->st->prompt_tokens += (uint64_t)d.n_prompt;
            j->st->completion_tokens += (uint64_t)d.n_gen;
            if (d.finish == AERO_FINISH_ERROR || it->text.oom) {
                write_http_error(j, it->custom_id, 500,
                                 d.error[0] ? d.error : it->text.oom ? "out of memory collecting the output"
                                                                     : "generation failed",
                                 NULL, NULL);
                return true;
            }
            json_t *lpj = it->logprobs ? aero_oai_logprobs(it->meta.chat, it->lp, it->n_lp, it->top_logprobs,
                                                           aero_srv_model_piece, &j->x, 0)
                                       : NULL;
            const char *fin = d.finish == AERO_FINISH_LENGTH ? "length" : "stop";
            it->meta.id = it->id;
            json_t *resp = aero_oai_response(&it->meta, it->text.p ? it->text.p : "", it->text.len, fin, lpj,
                                             d.n_prompt, d.n_gen);
            if (resp) aero_oai_usage_cached(resp, d.n_cached);
            if (resp) write_line(j, it->custom_id, 200, it->id, resp, NULL);
            else write_http_error(j, it->custom_id, 500, "out of memory building the response", NULL, NULL);
            return true;
        }
        if (!fresh) return false;
        timeout_ms = 0; // take what is already there, never wait twice
    }
}

// The progress line: requests done, tokens/s, ETA; at most twice a second (and once at the end).
static void progress(job *j, bool last) {
    if (!j->p->progress) return;
    double now = aero_now();
    if (!last && now - j->t_progress < 0.5) return;
    j->t_progress = now;
    double el = now - j->t0;
    int answered = j->st->n_done, todo = j->total - j->st->n_skipped;
    double tps = el > 0 ? j->st->completion_tokens / el : 0;
    double rate = el > 0 ? answered / el : 0;
    int left = todo - answered;
    char eta[32] = "?";
    if (rate > 0 && left >= 0) snprintf(eta, sizeof eta, "%.0f s", left / rate);
    fprintf(stderr, "\rbatch: %d/%d requests (%d errors, %d skipped as done), %.1f tok/s, %d running, ETA %s   %s",
            answered, todo, j->st->n_errors, j->st->n_skipped, tps, j->n_items, eta, last ? "\n" : "");
    fflush(stderr);
}

// Waits until at most `keep` requests are in flight, writing each one that ends.
static void drain(job *j, int keep) {
    while (j->n_items > keep) {
        bool any = false;
        for (int i = 0; i < j->n_items; i++) {
            if (collect(j, &j->items[i], 0)) {
                item_free(&j->items[i]);
                j->items[i] = j->items[--j->n_items];
                i--;
                any = true;
            }
        }
        progress(j, false);
        // nothing ended: sleep on the oldest until it has news (any request's news wakes only its own reader,
        // so the wait is short and the others are looked at again)
        if (!any && j->n_items > keep && collect(j, &j->items[0], 50)) {
            item_free(&j->items[0]);
            j->items[0] = j->items[--j->n_items];
        }
    }
}

// Resume: keeps the output's complete, parseable lines (their custom_ids are done) and cuts the file after the
// last of them, so a line half-written by a killed job is dropped and redone.
static aero_status load_done(job *j, aero_error *err) {
    const char *path = j->p->output;
    struct stat sb;
    if (stat(path, &sb) != 0) return AERO_OK; // nothing yet
    if (!j->p->resume && sb.st_size > 0)
        return aero_fail(err, AERO_ERR_INVALID,
                         "%s exists and is not empty: pass --resume to continue that job (its answered custom_ids "
                         "are skipped), or remove it",
                         path);
    char *buf = NULL;
    size_t len = 0;
    aero_status st = aero_read_file(path, 0, &buf, &len, err);
    if (st) return st;
    size_t keep = 0, pos = 0;
    while (pos < len) {
        char *nl = memchr(buf + pos, '\n', len - pos);
        if (!nl) break; // a half-written last line
        size_t n = (size_t)(nl - (buf + pos));
        json_t *line = n ? json_loadb(buf + pos, n, 0, NULL) : NULL;
        const char *cid = json_string_value(json_object_get(line, "custom_id"));
        if (!cid) { // not a line of ours: keep nothing from here on, its requests are redone
            json_decref(line);
            break;
        }
        json_object_set_new(j->done, cid, json_true());
        json_decref(line);
        pos += n + 1;
        keep = pos;
    }
    free(buf);
    if (keep < len && truncate(path, (off_t)keep) != 0)
        return aero_fail(err, AERO_ERR_IO, "%s: cannot cut the half-written last line: %s", path, strerror(errno));
    if (keep < len && j->p->progress)
        fprintf(stderr, "batch: %s: dropped %zu bytes of an incomplete last line (its request is redone)\n", path,
                len - keep);
    return AERO_OK;
}

// Counts the input's requests (non-blank lines) for the progress line.
static int count_lines(FILE *f) {
    int n = 0, c, blank = 1;
    while ((c = getc(f)) != EOF) {
        if (c == '\n') {
            n += !blank;
            blank = 1;
        } else if (c != ' ' && c != '\t' && c != '\r') blank = 0;
    }
    n += !blank;
    rewind(f);
    return n;
}

void aero_batch_job_params_default(aero_batch_job_params *p) {
    memset(p, 0, sizeof *p);
    aero_server_params_default(&p->server);
    p->server.parallel = 8;
    p->progress = true;
}

// Teacher forcing: `echo` with `logprobs` on /v1/completions (which the server refuses) scores the prompt: every
// token's log-probability given the ones before it, with the `logprobs` most likely alternatives (up to 20
// here, an extension of the API's 5). max_tokens must be 0 or absent: nothing is generated. Returns false when
// the line is not such a request (the normal path takes it).
static bool score_take(job *j, const char *custom_id, json_t *body) {
    json_t *lpv = json_object_get(body, "logprobs");
    if (!json_is_true(json_object_get(body, "echo")) || !json_is_integer(lpv)) return false;
    json_int_t n_top = json_integer_value(lpv);
    json_t *mt = json_object_get(body, "max_tokens");
    if (n_top < 0 || n_top > AERO_OAI_MAX_TOP) {
        char msg[160];
        snprintf(msg, sizeof msg, "'logprobs' is %lld; with 'echo' (scoring the prompt) it must be between 0 and %d",
                 (long long)n_top, AERO_OAI_MAX_TOP);
        write_http_error(j, custom_id, 400, msg, "logprobs", NULL);
        return true;
    }
    if (mt && !json_is_null(mt) && !(json_is_integer(mt) && json_integer_value(mt) == 0)) {
        write_http_error(j, custom_id, 400,
                         "'echo' with 'logprobs' scores the prompt and generates nothing: 'max_tokens' must be 0 or "
                         "absent",
                         "max_tokens", NULL);
        return true;
    }
    // the rest of the body goes through the server's parser, without the fields it refuses in this combination
    json_t *copy = json_deep_copy(body);
    json_object_del(copy, "echo");
    json_object_del(copy, "logprobs");
    json_object_del(copy, "max_tokens");
    char *text = copy ? json_dumps(copy, JSON_COMPACT) : NULL;
    json_decref(copy);
    aero_req q;
    aero_error err = {0};
    aero_status st = text ? aero_req_parse(&q, AERO_REQ_COMPLETION, text, strlen(text), j->x.backend.n_vocab,
                                           &j->p->server.defaults, &err)
                          : aero_fail(&err, AERO_ERR_NOMEM, "out of memory");
    free(text);
    if (st) {
        write_http_error(j, custom_id, status_of(st), err.msg, q.err_param[0] ? q.err_param : NULL, NULL);
        return true;
    }
    score_item sc = {.n_top = (int)n_top};
    size_t n_ids = 0;
    if (!model_ok(j, q.model)) {
        char msg[400];
        snprintf(msg, sizeof msg, "The model '%.200s' does not exist; this server serves '%.100s'", q.model,
                 j->model_id);
        write_http_error(j, custom_id, 404, msg, "model", "model_not_found");
        goto fail;
    }
    if (q.prompt_ids) {
        sc.ids = q.prompt_ids;
        n_ids = q.n_prompt_ids;
        q.prompt_ids = NULL;
    } else if ((st = aero_srv_model_tokenize(&j->x, q.prompt, q.prompt_len, true, true, &sc.ids, &n_ids, &err))) {
        write_http_error(j, custom_id, status_of(st), err.msg, "prompt", NULL);
        goto fail;
    }
    if (n_ids == 0) {
        write_http_error(j, custom_id, 400, "The prompt is empty and this model has no BOS token to start from",
                         "prompt", NULL);
        goto fail;
    }
    if (n_ids > (size_t)j->x.backend.n_ctx) {
        char msg[256];
        snprintf(msg, sizeof msg, "This model's maximum context length is %d tokens. However, your prompt has %zu "
                 "tokens.", j->x.backend.n_ctx, n_ids);
        write_http_error(j, custom_id, 400, msg, "prompt", "context_length_exceeded");
        goto fail;
    }
    sc.n_ids = (int)n_ids;
    if (q.prompt) {
        sc.echo = malloc(q.prompt_len + 1);
        if (sc.echo) memcpy(sc.echo, q.prompt, q.prompt_len), sc.echo_len = q.prompt_len;
    } else if (aero_detokenize(j->x.tok, sc.ids, n_ids, false, &sc.echo, &sc.echo_len, &err)) {
        sc.echo = NULL;
    }
    sc.custom_id = strdup(custom_id);
    if (j->n_scores == j->cap_scores) {
        int cap = j->cap_scores ? 2 * j->cap_scores : 16;
        score_item *a = realloc(j->scores, (size_t)cap * sizeof *a);
        if (a) j->scores = a, j->cap_scores = cap;
    }
    if (!sc.custom_id || j->n_scores == j->cap_scores) {
        write_http_error(j, custom_id, 500, "out of memory queueing the request", NULL, NULL);
        free(sc.custom_id);
        free(sc.echo);
        goto fail;
    }
    j->scores[j->n_scores++] = sc;
    aero_req_free(&q);
    return true;
fail:
    free(sc.ids);
    aero_req_free(&q);
    return true;
}

// Writes one scored prompt's response: the completions shape with the prompt echoed as the text, its tokens'
// logprobs (the first token, which nothing predicts, null as in the API), no completion tokens.
static void score_answer(job *j, score_item *sc, const aero_oai_logprob *lp) {
    char id[48];
    make_id(j, "cmpl", id, sizeof id);
    aero_oai_meta meta = {.chat = false, .id = id, .model = j->model_id, .created = (long long)time(NULL)};
    json_t *lpj = aero_oai_logprobs(false, lp, sc->n_ids, sc->n_top, aero_srv_model_piece, &j->x, 0);
    json_t *tl = json_object_get(lpj, "token_logprobs"), *tt = json_object_get(lpj, "top_logprobs");
    if (json_array_size(tl)) json_array_set_new(tl, 0, json_null());
    if (json_array_size(tt)) json_array_set_new(tt, 0, json_null());
    // a leading BOS is not in the echoed text: offsets count from the text's first byte
    json_t *to = json_object_get(lpj, "text_offset");
    if (aero_tokenizer_is_control(j->x.tok, sc->ids[0]) && json_array_size(to) > 1) {
        json_int_t shift = json_integer_value(json_array_get(to, 1));
        for (size_t i = 0; i < json_array_size(to); i++) {
            json_int_t v = json_integer_value(json_array_get(to, i)) - shift;
            json_array_set_new(to, i, json_integer(v > 0 ? v : 0));
        }
    }
    json_t *resp = aero_oai_response(&meta, sc->echo ? sc->echo : "", sc->echo_len, "length", lpj, sc->n_ids, 0);
    if (resp) aero_oai_usage_cached(resp, 0);
    if (resp) write_line(j, sc->custom_id, 200, id, resp, NULL);
    else write_http_error(j, sc->custom_id, 500, "out of memory building the response", NULL, NULL);
    j->st->prompt_tokens += (uint64_t)sc->n_ids;
}

// Scores the queued prompts, as many sequences per forward pass as the context has and logits rows as 64 MiB
// hold, so that one read of streamed weights serves many prompts. Runs once every generation has ended: the
// scheduler is idle and the context is free; nothing is scheduled after it (its prompt reuse would not know
// what these passes left in the cache).
static aero_status score_run(job *j, aero_error *err) {
    if (!j->n_scores) return AERO_OK;
    aero_ctx *ctx = j->x.ctx;
    int n_vocab = j->x.backend.n_vocab, n_seq = aero_ctx_n_seq(ctx);
    size_t rows = ((size_t)64 << 20) / ((size_t)n_vocab * sizeof(float));
    if (rows < 1) rows = 1;
    aero_status st = AERO_OK;
    float *logits = malloc(rows * (size_t)n_vocab * sizeof(float));
    aero_batch_buf *b = aero_batch_buf_new((int)rows);
    aero_oai_logprob **lp = calloc((size_t)n_seq, sizeof *lp);
    if (!logits || !b || !lp) {
        st = aero_fail(err, AERO_ERR_NOMEM, "out of memory for scoring");
        goto done;
    }
    int next = 0;
    while (next < j->n_scores) {
        // one pass: whole prompts on free sequences while their tokens fit; a longer prompt alone, in chunks
        int first = next, n_in = 0;
        size_t used = 0;
        while (next < j->n_scores && n_in < n_seq && (n_in == 0 || used + (size_t)j->scores[next].n_ids <= rows))
            used += (size_t)j->scores[next++].n_ids, n_in++;
        for (int k = 0; k < n_in; k++) {
            score_item *sc = &j->scores[first + k];
            aero_kv_drop(ctx, k);
            free(lp[k]);
            if (!(lp[k] = calloc((size_t)sc->n_ids, sizeof **lp))) {
                st = aero_fail(err, AERO_ERR_NOMEM, "out of memory for scoring");
                goto done;
            }
            lp[k][0].id = sc->ids[0];
        }
        int done_tok[n_in > 0 ? n_in : 1];
        memset(done_tok, 0, sizeof done_tok);
        for (bool more = true; more;) {
            aero_batch_buf_clear(b);
            more = false;
            int n_this[n_in > 0 ? n_in : 1]; // tokens of each prompt in this pass
            for (int k = 0; k < n_in; k++) {
                score_item *sc = &j->scores[first + k];
                int c = sc->n_ids - done_tok[k], room = aero_batch_buf_room(b);
                if (c > room) c = room, more = true;
                for (int t = 0; t < c; t++) {
                    int pos = done_tok[k] + t;
                    // the logits at pos predict the token at pos + 1
                    aero_batch_buf_add(b, sc->ids[pos], pos, k, pos + 1 < sc->n_ids);
                }
                n_this[k] = c;
            }
            if ((st = aero_decode(ctx, aero_batch_buf_get(b), logits, err))) goto done;
            int row = 0;
            for (int k = 0; k < n_in; k++) {
                score_item *sc = &j->scores[first + k];
                for (int t = 0; t < n_this[k]; t++) {
                    int pos = done_tok[k] + t;
                    if (pos + 1 < sc->n_ids) {
                        aero_oai_logprob_fill(logits + (size_t)row * n_vocab, n_vocab, sc->ids[pos + 1], sc->n_top,
                                     &lp[k][pos + 1]);
                        row++;
                    }
                }
                done_tok[k] += n_this[k];
            }
        }
        for (int k = 0; k < n_in; k++) {
            score_answer(j, &j->scores[first + k], lp[k]);
            aero_kv_drop(ctx, k);
        }
        progress(j, false);
    }
done:
    for (int k = 0; lp && k < n_seq; k++) free(lp[k]);
    free(lp);
    aero_batch_buf_free(b);
    free(logits);
    return st;
}

// One input line: checks its envelope (custom_id, method, url, body), then parses the body as the server does.
static void handle_line(job *j, char *line, size_t n, int lineno) {
    char key[32];
    snprintf(key, sizeof key, "line-%d", lineno);
    json_error_t je;
    json_t *root = json_loadb(line, n, 0, &je);
    if (!root || !json_is_object(root)) {
        char msg[300];
        snprintf(msg, sizeof msg, "not a JSON object: %s", root ? "another JSON value" : je.text);
        if (!json_object_get(j->done, key)) write_line_error(j, key, lineno, "invalid_json", msg);
        json_decref(root);
        return;
    }
    json_t *cidj = json_object_get(root, "custom_id");
    const char *cid = json_string_value(cidj);
    if (!cid || !*cid) {
        if (!json_object_get(j->done, key))
            write_line_error(j, key, lineno, "missing_custom_id", "custom_id must be a non-empty string");
        json_decref(root);
        return;
    }
    if (json_object_get(j->seen, cid)) { // a repeat in the input: answered under its line number
        if (!json_object_get(j->done, key))
            write_line_error(j, key, lineno, "duplicate_custom_id", "this custom_id was already used in the input");
        json_decref(root);
        return;
    }
    json_object_set_new(j->seen, cid, json_true());
    if (json_object_get(j->done, cid)) { // answered by an earlier run of the job (resume)
        j->st->n_skipped++;
        json_decref(root);
        return;
    }
    const char *method = json_string_value(json_object_get(root, "method"));
    const char *url = json_string_value(json_object_get(root, "url"));
    json_t *body = json_object_get(root, "body");
    aero_req_kind kind = 0;
    if (url && (!strcmp(url, "/v1/chat/completions") || !strcmp(url, "/chat/completions"))) kind = AERO_REQ_CHAT;
    else if (url && (!strcmp(url, "/v1/completions") || !strcmp(url, "/completions"))) kind = AERO_REQ_COMPLETION;
    if (!method || strcmp(method, "POST")) {
        write_line_error(j, cid, lineno, "invalid_method", "method must be \"POST\"");
    } else if (!kind) {
        write_line_error(j, cid, lineno, "invalid_url", "url must be /v1/chat/completions or /v1/completions");
    } else if (!json_is_object(body)) {
        write_line_error(j, cid, lineno, "invalid_body", "body must be a JSON object");
    } else if (kind == AERO_REQ_COMPLETION && score_take(j, cid, body)) {
        // scored after the generations (teacher forcing)
    } else {
        char *text = json_dumps(body, JSON_COMPACT);
        aero_req q;
        aero_error err = {0};
        aero_status st = text ? aero_req_parse(&q, kind, text, strlen(text), j->x.backend.n_vocab,
                                               &j->p->server.defaults, &err)
                              : aero_fail(&err, AERO_ERR_NOMEM, "out of memory");
        free(text);
        if (st) write_http_error(j, cid, status_of(st), err.msg, q.err_param[0] ? q.err_param : NULL, NULL);
        else {
            submit(j, cid, kind, &q);
            aero_req_free(&q);
        }
    }
    json_decref(root);
}

aero_status aero_batch_job_run(const aero_batch_job_params *p, aero_batch_job_stats *stats, aero_error *err) {
    aero_batch_job_stats st_local;
    aero_batch_job_stats *st = stats ? stats : &st_local;
    memset(st, 0, sizeof *st);
    job j = {.p = p, .st = st};
    aero_status rc = AERO_OK;
    FILE *in = NULL;
    char *line = NULL;
    size_t cap = 0;
    j.done = json_object();
    j.seen = json_object();
    if (!j.done || !j.seen) {
        rc = aero_fail(err, AERO_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (!p->input || !p->output) {
        rc = aero_fail(err, AERO_ERR_INVALID, "batch: an input and an output file are needed");
        goto done;
    }
    if (!(in = fopen(p->input, "rb"))) {
        rc = aero_fail(err, AERO_ERR_IO, "%s: cannot open: %s", p->input, strerror(errno));
        goto done;
    }
    if ((rc = load_done(&j, err))) goto done;
    int already = (int)json_object_size(j.done);
    if (!(j.out = fopen(p->output, "ab"))) {
        rc = aero_fail(err, AERO_ERR_IO, "%s: cannot open for appending: %s", p->output, strerror(errno));
        goto done;
    }
    j.total = count_lines(in);
    const char *name = p->server.alias;
    if (!name) {
        const char *path = p->server.model.path ? p->server.model.path : "model";
        const char *slash = strrchr(path, '/');
        name = slash ? slash + 1 : path;
    }
    snprintf(j.model_id, sizeof j.model_id, "%s", name);
    if ((rc = aero_srv_model_open(&j.x, &p->server, err))) goto done;
    j.model_open = true;
    int parallel = j.x.backend.n_seq;
    // requests in flight: the running ones plus as many waiting, so a sequence that frees is refilled at once
    if ((rc = aero_sched_new(&j.sched, &j.x.backend, 2 * parallel + 1, NULL, err))) goto done;
    if (p->progress)
        fprintf(stderr, "batch: %d requests in %s (%d already answered in %s), %d sequences per pass, context %d\n",
                j.total, p->input, already, p->output, parallel, j.x.backend.n_ctx);
    j.t0 = aero_now();
    ssize_t n;
    int lineno = 0;
    while ((n = getline(&line, &cap, in)) >= 0) {
        lineno++;
        size_t len = (size_t)n;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
        size_t k = 0;
        while (k < len && (line[k] == ' ' || line[k] == '\t')) k++;
        if (k == len) continue;
        handle_line(&j, line, len, lineno);
        if (j.io_failed) break;
        drain(&j, 2 * parallel);
    }
    drain(&j, 0);
    if (!j.io_failed && (rc = score_run(&j, err))) goto done;
    progress(&j, true);
    st->seconds = aero_now() - j.t0;
    if (j.io_failed) rc = aero_fail(err, AERO_ERR_IO, "%s", j.io_err);
    else if (ferror(in)) rc = aero_fail(err, AERO_ERR_IO, "%s: read failed", p->input);
done:
    aero_sched_free(j.sched); // ends whatever still runs (only after a failure)
    for (int i = 0; i < j.n_items; i++) item_free(&j.items[i]);
    free(j.items);
    for (int i = 0; i < j.n_scores; i++) {
        free(j.scores[i].custom_id);
        free(j.scores[i].ids);
        free(j.scores[i].echo);
    }
    free(j.scores);
    if (j.model_open) aero_srv_model_close(&j.x);
    aero_grammar_vocab_free(j.gvocab);
    if (j.out && fclose(j.out) != 0 && !rc) rc = aero_fail(err, AERO_ERR_IO, "%s: close failed", p->output);
    if (in) fclose(in);
    free(line);
    json_decref(j.done);
    json_decref(j.seen);
    return rc;
}
