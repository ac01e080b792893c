// The OpenAI endpoints: models, completions and chat completions (whole or streamed as Server-Sent Events,
// optionally constrained to JSON by response_format), plus health, metrics, tokenize, detokenize and
// llama-server's props and slots. Requests are validated and tokenized here, on the connection's thread; only
// token work reaches the scheduler.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_files.h"
#include "internal.h"
#include "web.h"

// Status for a failed parse: bad input is the client's fault, running out of memory is ours.
static int status_of(aero_status st) { return st == AERO_ERR_NOMEM ? 500 : 400; }

// The model names a request may use: the id we list, the file name with or without .gguf, or the path given.
static bool model_ok(aero_server *s, const char *name) {
    if (!name || !*name || !strcmp(name, s->model_id)) return true;
    const char *path = s->p.model.path ? s->p.model.path : "";
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (!strcmp(name, path) || !strcmp(name, base)) return true;
    size_t bl = strlen(base);
    return bl > 5 && !strcmp(base + bl - 5, ".gguf") && strlen(name) == bl - 5 && !strncmp(name, base, bl - 5);
}

// The one model this server serves, with its shape once it is loaded (clients size prompts by n_ctx).
static json_t *model_object(aero_server *s) {
    json_t *m = json_pack("{s:s, s:s, s:I, s:s}", "id", s->model_id, "object", "model", "created",
                          (json_int_t)s->t_created, "owned_by", "aerollm");
    if (atomic_load(&s->state) == 1) {
        const aero_sched_backend *e = &s->model.backend;
        json_object_set_new(m, "meta",
                            json_pack("{s:i, s:i, s:i, s:s, s:I}", "n_ctx", e->n_ctx, "n_vocab", e->n_vocab,
                                      "n_parallel", e->n_seq, "chat_template", s->model.tmpl_name, "weight_bytes",
                                      (json_int_t)aero_model_weight_bytes(s->model.model)));
    }
    return m;
}

// GET /v1/models and /v1/models/{id}: the list clients call first, and the lookup that 404s a wrong id.
static enum MHD_Result handle_models(aero_http_req *r, const char *id) {
    aero_server *s = r->srv;
    if (id) {
        if (!model_ok(s, id)) {
            char msg[400];
            snprintf(msg, sizeof msg, "The model '%.200s' does not exist; this server serves '%.100s'", id,
                     s->model_id);
            return aero_http_error(r, 404, msg, "model", "model_not_found");
        }
        return aero_http_json(r, 200, model_object(s));
    }
    json_t *data = json_array();
    json_array_append_new(data, model_object(s));
    return aero_http_json(r, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

// GET /health: 503 while loading, so orchestrators wait before sending traffic.
static enum MHD_Result handle_health(aero_http_req *r) {
    int st = atomic_load(&r->srv->state);
    if (st == 1 && aero_pipeline_failure()) // a rank of the pipeline died: nothing can be generated any more
        return aero_http_error(r, 503, aero_pipeline_failure(), NULL, "pipeline_failed");
    if (st == 1) return aero_http_json(r, 200, json_pack("{s:s}", "status", "ok"));
    if (st == 0) return aero_http_error(r, 503, "Loading model", NULL, "model_loading");
    if (st == -1) return aero_http_error(r, 500, "The model failed to load", NULL, NULL);
    return aero_http_error(r, 503, "The server is shutting down", NULL, NULL);
}

// The one way a handler queues a 200 response it built (internal.h).
enum MHD_Result aero_http_answer_200(aero_http_req *r, struct MHD_Response *resp) {
    aero_http_common_headers(r->srv, resp);
    enum MHD_Result ret = MHD_queue_response(r->conn, 200, resp);
    MHD_destroy_response(resp);
    aero_http_status(r, 200);
    return ret;
}

// GET /metrics in Prometheus text format for scrapers.
static enum MHD_Result handle_metrics(aero_http_req *r) {
    size_t len;
    char *txt = aero_metrics_render(&r->srv->metrics, &len);
    if (!txt) return aero_http_error(r, 500, "out of memory rendering metrics", NULL, NULL);
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, txt, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(txt);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
    return aero_http_answer_200(r, resp);
}

// POST /tokenize (llama.cpp's shape): lets clients count tokens exactly as the server will.
static enum MHD_Result handle_tokenize(aero_http_req *r) {
    aero_srv_model *x = &r->srv->model;
    aero_tokenize_req q;
    aero_error err = {0};
    aero_status st = aero_req_parse_tokenize(&q, r->body.p, r->body.len, &err);
    if (st) return aero_http_error(r, status_of(st), err.msg, q.err_param[0] ? q.err_param : NULL, NULL);
    int32_t *ids = NULL;
    size_t n = 0;
    st = aero_srv_model_tokenize(x, q.content, q.content_len, q.add_special, q.parse_special, &ids, &n, &err);
    bool pieces = q.with_pieces;
    json_decref(q.root);
    if (st) return aero_http_error(r, status_of(st), err.msg, "content", NULL);
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        if (!pieces) {
            json_array_append_new(a, json_integer(ids[i]));
            continue;
        }
        char buf[256];
        size_t len = aero_srv_model_piece(x, ids[i], buf, sizeof buf);
        if (len > sizeof buf) len = sizeof buf;
        json_array_append_new(a, json_pack("{s:i, s:o}", "id", ids[i], "piece", aero_oai_string(buf, len)));
    }
    free(ids);
    return aero_http_json(r, 200, json_pack("{s:o}", "tokens", a));
}

// POST /detokenize: the inverse, for clients that hold token ids.
static enum MHD_Result handle_detokenize(aero_http_req *r) {
    aero_srv_model *x = &r->srv->model;
    aero_detokenize_req q;
    aero_error err = {0};
    aero_status st = aero_req_parse_detokenize(&q, r->body.p, r->body.len, x->backend.n_vocab, &err);
    if (st) return aero_http_error(r, status_of(st), err.msg, q.err_param[0] ? q.err_param : NULL, NULL);
    char *text = NULL;
    size_t len = 0;
    st = aero_detokenize(x->tok, q.ids, q.n, false, &text, &len, &err);
    free(q.ids);
    if (st) return aero_http_error(r, 500, err.msg, NULL, NULL);
    json_t *j = json_pack("{s:o}", "content", aero_oai_string(text, len));
    free(text);
    return aero_http_json(r, 200, j);
}

// The sampling settings as llama-server names them (/props' defaults, /slots' per-request params).
static json_t *params_object(const aero_sampler_params *sp, int n_predict, bool stream, bool ignore_eos) {
    return json_pack("{s:i, s:I, s:f, s:i, s:f, s:f, s:i, s:f, s:f, s:f, s:b, s:b}", "n_predict", n_predict, "seed",
                     (json_int_t)sp->seed, "temperature", (double)sp->temp, "top_k", sp->top_k, "top_p",
                     (double)sp->top_p, "min_p", (double)sp->min_p, "repeat_last_n", sp->repeat_last_n,
                     "repeat_penalty", (double)sp->repeat_penalty, "presence_penalty", (double)sp->presence_penalty,
                     "frequency_penalty", (double)sp->frequency_penalty, "ignore_eos", ignore_eos, "stream", stream);
}

// The chat template's text as /props shows it: the model's, the --chat-template-file's, or "" for the
// ChatML fallback (chat_template_source says which).
static json_t *template_text(aero_server *s) {
    const char *src = s->model.tmpl_src;
    return src ? aero_oai_string(src, strlen(src)) : json_string("");
}

// /props' "draft": the drafter and its settings, or null without --draft.
static json_t *draft_object(aero_server *s) {
    const aero_srv_model *x = &s->model;
    if (!x->spec_on) return json_null();
    return json_pack("{s:s, s:s, s:i, s:i, s:i, s:b}", "model", s->p.draft ? s->p.draft : s->p.spec.draft_head, "description", x->spec_desc, "draft_max",
                     x->spec.draft_max, "draft_min", x->spec.draft_min, "tree_nodes", x->spec.tree_nodes, "adaptive",
                     x->spec.adaptive);
}

// GET /props (llama-server's shape): what scripts read to size prompts and pick templates.
static enum MHD_Result handle_props(aero_http_req *r) {
    aero_server *s = r->srv;
    const aero_sched_backend *e = &s->model.backend;
    json_t *gen = json_pack("{s:i, s:b, s:o}", "n_ctx", e->n_ctx, "speculative", s->model.spec_on, "params",
                            params_object(&s->p.defaults, -1, false, false));
    json_t *j = json_pack("{s:o, s:i, s:s, s:s, s:o, s:s, s:s, s:s, s:o, s:{s:b, s:b}, s:i, s:i}",
                          "default_generation_settings", gen, "total_slots", e->n_seq, "model_alias", s->model_id,
                          "model_path", s->p.model.path ? s->p.model.path : "", "chat_template", template_text(s),
                          "chat_template_source", s->model.tmpl_name, "bos_token", s->model.bos_str, "eos_token",
                          s->model.eos_str, "draft", draft_object(s), "modalities", "vision", false, "audio", false,
                          "n_vocab", e->n_vocab, "n_batch", e->n_pass);
    json_object_set_new(j, "build_info", json_string("aerollm"));
    return aero_http_json(r, 200, j);
}

// GET /slots (llama-server's shape): one entry per sequence the scheduler runs at once. Busy entries are the
// requests holding a sequence, in the order they started (ids are positions in this list, not KV sequence
// numbers); tokens_cached and tokens_per_second are extensions.
static enum MHD_Result handle_slots(aero_http_req *r) {
    aero_server *s = r->srv;
    const aero_sched_backend *e = &s->model.backend;
    json_t *a = json_array();
    double now = aero_now();
    int used = 0;
    pthread_mutex_lock(&s->active_mu);
    for (aero_http_req *q = s->active; q && used < e->n_seq; q = q->act_next) {
        aero_gen_cursor peek = {.text = SIZE_MAX, .lp = INT32_MAX}; // reads the counters, takes no output
        aero_gen_delta d;
        aero_gen_next(q->gen, &peek, 0, &d);
        aero_gen_delta_free(&d);
        if (d.t_start == 0 || d.t_end != 0) continue; // still queued, or already finished
        bool gen_phase = d.t_first != 0;
        double speed = gen_phase && now > d.t_first ? d.n_gen / (now - d.t_first) : 0;
        int remain = q->shown.max_tokens - d.n_gen;
        json_t *slot = json_pack("{s:i, s:I, s:i, s:b, s:b, s:o, s:{s:b, s:i, s:i}, s:s, s:s, s:i, s:i, s:f}", "id",
                                 used, "id_task", (json_int_t)q->shown.task, "n_ctx", e->n_ctx, "speculative", false,
                                 "is_processing", true, "params",
                                 params_object(&q->shown.sp, q->shown.max_tokens, q->shown.stream, q->shown.ignore_eos),
                                 "next_token", "has_next_token", true, "n_remain", remain, "n_decoded", d.n_gen,
                                 "state", gen_phase ? "generating" : "prompt", "request_id", q->id, "n_prompt_tokens",
                                 d.n_prompt, "tokens_cached", d.n_prompt + d.n_gen, "tokens_per_second", speed);
        json_array_append_new(a, slot);
        used++;
    }
    pthread_mutex_unlock(&s->active_mu);
    for (int i = used; i < e->n_seq; i++)
        json_array_append_new(a, json_pack("{s:i, s:i, s:i, s:b, s:b, s:o, s:{s:b, s:i, s:i}, s:s, s:i, s:f}", "id", i,
                                           "id_task", -1, "n_ctx", e->n_ctx, "speculative", false, "is_processing",
                                           false, "params", params_object(&s->p.defaults, -1, false, false),
                                           "next_token", "has_next_token", false, "n_remain", -1, "n_decoded", 0,
                                           "state", "idle", "tokens_cached", 0, "tokens_per_second", 0.0));
    return aero_http_json(r, 200, a);
}

// Random-looking ids so that logs of several servers do not collide.
static void make_id(aero_server *s, const char *prefix, char *out, size_t cap) {
    unsigned long long n = atomic_fetch_add(&s->next_id, 1);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned long long x = ((unsigned long long)ts.tv_sec * 1000000007ull) ^ (unsigned long long)ts.tv_nsec ^ (n << 40);
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    snprintf(out, cap, "%s-%016llx%04llx", prefix, x, n & 0xffff);
}

// POST /slots/ID?action=save|restore|erase (llama-server's): a sequence's KV cache to or from a file in
// --slot-save-path, run by the scheduler between steps; a restored prefix is reused by the next request sharing it.
static enum MHD_Result handle_slot_action(aero_http_req *r, const char *id_str) {
    char *end;
    long id = strtol(id_str, &end, 10);
    if (!*id_str || *end || id < 0 || id > 1 << 20)
        return aero_http_error(r, 400, "the slot id must be a non-negative integer", "id_slot", NULL);
    const char *action = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "action");
    aero_slot_action a;
    if (action && !strcmp(action, "save")) a = AERO_SLOT_SAVE;
    else if (action && !strcmp(action, "restore")) a = AERO_SLOT_RESTORE;
    else if (action && !strcmp(action, "erase")) a = AERO_SLOT_ERASE;
    else return aero_http_error(r, 400, "action must be save, restore or erase", "action", NULL);
    char path[4096] = "";
    const char *fname = NULL;
    json_t *body = NULL;
    aero_error err = {0};
    if (a != AERO_SLOT_ERASE) {
        json_error_t je;
        body = r->body.len ? json_loadb(r->body.p, r->body.len, 0, &je) : NULL;
        json_t *f = body ? json_object_get(body, "filename") : NULL;
        fname = json_is_string(f) ? json_string_value(f) : NULL;
        if (!fname) {
            json_decref(body);
            return aero_http_error(r, 400, "the body must be a JSON object with a string \"filename\"", "filename",
                                   NULL);
        }
        aero_status st = aero_kv_slot_path(r->srv->p.slot_save_path, fname, path, sizeof path, &err);
        if (st) {
            json_decref(body);
            return aero_http_error(r, st == AERO_ERR_UNSUPPORTED ? 501 : 400,
                                   st == AERO_ERR_UNSUPPORTED ? "slot files are off (start the server with "
                                                                "--slot-save-path DIR)"
                                                              : err.msg,
                                   "filename", NULL);
        }
    }
    int n = 0;
    double t0 = aero_now();
    aero_status st = aero_sched_slot(r->srv->sched, (int)id, a, path, &n, &err);
    double ms = (aero_now() - t0) * 1e3;
    if (st) {
        json_decref(body);
        int code = st == AERO_ERR_RANGE ? 409 : st == AERO_ERR_UNSUPPORTED ? 501 : st == AERO_ERR_IO ? 500 : 400;
        return aero_http_error(r, code, err.msg, NULL, NULL);
    }
    json_t *j = a == AERO_SLOT_ERASE ? json_pack("{s:i, s:i}", "id_slot", (int)id, "n_erased", n)
                : a == AERO_SLOT_SAVE
                    ? json_pack("{s:i, s:s, s:i, s:{s:f}}", "id_slot", (int)id, "filename", fname, "n_saved", n,
                                "timings", "save_ms", ms)
                    : json_pack("{s:i, s:s, s:i, s:{s:f}}", "id_slot", (int)id, "filename", fname, "n_restored", n,
                                "timings", "restore_ms", ms);
    json_decref(body);
    return aero_http_json(r, 200, j);
}

// Copies stop strings out of the request JSON, which dies before the generation does; extra slots stay free.
static char **dup_strings(const char *const *src, int n, int extra) {
    char **a = calloc((size_t)(n + extra) + 1, sizeof *a);
    if (!a) return NULL;
    for (int i = 0; i < n; i++)
        if (!(a[i] = strdup(src[i]))) {
            for (int k = 0; k < i; k++) free(a[k]);
            free(a);
            return NULL;
        }
    return a;
}

// ---- streaming ----

// Appends bytes to the request's output buffer (handed to MHD by the reader callback).
static bool out_add(aero_http_req *r, const char *s, size_t n) { return aero_buf_append(&r->out, s, n); }

// Frames one JSON value as an SSE event into the output buffer.
static bool out_event(aero_http_req *r, json_t *j) {
    size_t len;
    char *ev = j ? aero_oai_sse(j, &len) : NULL;
    json_decref(j);
    if (!ev) return false;
    bool ok = out_add(r, ev, len);
    free(ev);
    return ok;
}

// Turns new output of the generation into SSE events: text/logprob deltas, then the finish chunk, the usage
// A tool call id: 9 letters and digits for Mistral's template (which refuses any other length), else OpenAI's
// "call_" and 24 of them.
static void make_tool_id(aero_http_req *r, int i) {
    static const char al[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    uint64_t x = atomic_fetch_add(&r->srv->next_id, 1) * 0x9e3779b97f4a7c15ull ^ (uint64_t)(aero_now() * 1e9);
    bool mistral = r->tool_fmt == AERO_TOOLS_MISTRAL;
    char *o = r->t_ids[i];
    int k = 0, n = mistral ? 9 : 24;
    if (!mistral) k = snprintf(o, sizeof r->t_ids[i], "call_");
    for (int j = 0; j < n; j++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        o[k++] = al[x % (sizeof al - 1)];
    }
    o[k] = 0;
}

// A chunk carrying one tool_calls delta: the first of a call has its id, type and name, later ones argument bytes.
static json_t *tool_chunk(aero_http_req *r, int index, bool head, const char *name, const char *args, size_t n) {
    json_t *c = aero_oai_chunk(&r->meta, false, NULL, 0, NULL, NULL, r->include_usage);
    json_t *delta = json_object_get(json_array_get(json_object_get(c, "choices"), 0), "delta");
    json_t *fn = json_object();
    if (head) json_object_set_new(fn, "name", json_string(name));
    json_object_set_new(fn, "arguments", aero_oai_string(args, n));
    json_t *tc = json_pack("{s:i}", "index", index);
    if (head) {
        json_object_set_new(tc, "id", json_string(r->t_ids[index]));
        json_object_set_new(tc, "type", json_string("function"));
    }
    json_object_set_new(tc, "function", fn);
    json_object_set_new(delta, "tool_calls", json_pack("[o]", tc));
    return c;
}

// Leading content of a parse, without the whitespace that separated it from the calls.
static size_t content_end(const aero_tool_parse *p, const char *t) {
    size_t n = p->content_len;
    if (p->calls_ok)
        while (n > 0 && (t[n - 1] == ' ' || t[n - 1] == '\n' || t[n - 1] == '\t' || t[n - 1] == '\r')) n--;
    return n;
}

// A stream with tools: the output so far is parsed again at every delta (it is short); text that cannot be part
// of a call goes out as content, a call's id and name as soon as the name is complete, then its arguments' bytes
// as they are generated, as OpenAI streams them.
static bool tool_stream(aero_http_req *r, const aero_gen_delta *d) {
    if (d->len && !aero_buf_append(&r->tacc, d->text, d->len)) return false;
    const char *t = r->tacc.p ? r->tacc.p : "";
    aero_tool_parse p;
    aero_tool_parse_output(r->tool_fmt, t, r->tacc.len, !d->done, r->tools, &p);
    if (!r->parallel_tools && p.n_calls > 1) p.n_calls = 1;
    bool ok = true;
    size_t content = content_end(&p, t);
    if (content > r->t_content_sent) {
        ok = out_event(r, aero_oai_chunk(&r->meta, false, t + r->t_content_sent, content - r->t_content_sent, NULL,
                                         NULL, r->include_usage));
        r->t_content_sent = content;
    }
    for (int i = 0; ok && i < p.n_calls; i++) {
        const aero_tool_call *c = &p.calls[i];
        if (!c->name_done) break;
        if (i >= r->t_calls_sent) {
            make_tool_id(r, i);
            ok = out_event(r, tool_chunk(r, i, true, c->name, "", 0));
            r->t_calls_sent = i + 1;
            r->t_args_sent[i] = 0;
        }
        bool raw = !c->args_owned && !(c->args_len && t[c->args_off] == '"');
        if (ok && raw && c->args_len > r->t_args_sent[i]) {
            ok = out_event(
                r, tool_chunk(r, i, false, NULL, t + c->args_off + r->t_args_sent[i], c->args_len - r->t_args_sent[i]));
            r->t_args_sent[i] = c->args_len;
        } else if (ok && !raw && c->args_done && d->done && !r->t_args_sent[i]) {
            char *a = aero_tool_call_arguments(&p, i, t);
            if (a) ok = out_event(r, tool_chunk(r, i, false, NULL, a, strlen(a)));
            r->t_args_sent[i] = 1;
            free(a);
        }
    }
    if (d->done) r->tool_called = p.calls_ok && r->t_calls_sent > 0;
    aero_tool_parse_free(&p);
    return ok;
}

// A whole chat response with tools: the output parsed into message.tool_calls (and the content before them),
// finish_reason "tool_calls"; an output that is not a call stays text.
static void tool_response(aero_http_req *r, json_t *resp, const char *text, size_t len) {
    aero_tool_parse p;
    aero_tool_parse_output(r->tool_fmt, text, len, false, r->tools, &p);
    if (!p.calls_ok) return;
    if (!r->parallel_tools && p.n_calls > 1) p.n_calls = 1;
    json_t *choice = json_array_get(json_object_get(resp, "choices"), 0);
    json_t *msg = json_object_get(choice, "message");
    size_t content = content_end(&p, text);
    json_object_set_new(msg, "content", content ? aero_oai_string(text, content) : json_null());
    json_t *calls = json_array();
    for (int i = 0; i < p.n_calls; i++) {
        make_tool_id(r, i);
        char *a = aero_tool_call_arguments(&p, i, text);
        json_array_append_new(calls, json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", r->t_ids[i], "type", "function",
                                               "function", "name", p.calls[i].name, "arguments", a ? a : "{}"));
        free(a);
    }
    json_object_set_new(msg, "tool_calls", calls);
    json_object_set_new(choice, "finish_reason", json_string("tool_calls"));
    r->tool_called = true;
    aero_tool_parse_free(&p);
}

// chunk when asked, and [DONE]; an error becomes a data: {"error": ...} event.
static bool emit_delta(aero_http_req *r, const aero_gen_delta *d) {
    aero_srv_model *x = &r->srv->model;
    bool ok = true;
    if (r->tool_fmt && r->meta.chat) {
        ok = tool_stream(r, d);
    } else if (d->len || d->n_lp) {
        json_t *lp = NULL;
        if (r->logprobs && d->n_lp)
            lp =
                aero_oai_logprobs(r->meta.chat, d->lp, d->n_lp, r->top_logprobs, aero_srv_model_piece, x, r->text_sent);
        ok = out_event(r, aero_oai_chunk(&r->meta, false, d->text ? d->text : "", d->len, NULL, lp, r->include_usage));
        r->text_sent += d->len;
    }
    if (!d->done) return ok;
    r->finished = true;
    r->n_gen = d->n_gen;
    r->n_drafted = d->speculative ? d->n_drafted : -1;
    r->n_accepted = d->n_accepted;
    r->finish_name = aero_finish_name(d->finish);
    if (d->finish == AERO_FINISH_ERROR) { // still a complete stream: clients waiting for [DONE] stop cleanly
        ok = ok && out_event(r, aero_oai_error(aero_pipeline_failure() ? 503 : 500,
                                               d->error[0] ? d->error : "generation failed", NULL, NULL));
        return ok && out_add(r, "data: [DONE]\n\n", 14);
    }
    const char *fin = r->tool_called ? "tool_calls" : d->finish == AERO_FINISH_LENGTH ? "length" : "stop";
    ok = ok && out_event(r, aero_oai_chunk(&r->meta, false, NULL, 0, fin, NULL, r->include_usage));
    if (r->include_usage) {
        json_t *u = aero_oai_usage_chunk(&r->meta, d->n_prompt, d->n_gen);
        if (u) aero_oai_usage_cached(u, d->n_cached);
        if (u && d->speculative) aero_oai_usage_draft(u, d->n_drafted, d->n_accepted);
        ok = ok && out_event(r, u);
    }
    ok = ok && out_add(r, "data: [DONE]\n\n", 14);
    return ok;
}

// MHD pulls the stream through here on the connection's own thread; blocking is fine (one thread per
// connection). While waiting, the socket is checked so a vanished client frees its sequence at once.
static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max) {
    aero_http_req *r = cls;
    (void)pos;
    for (;;) {
        if (r->out_off < r->out.len) {
            size_t n = r->out.len - r->out_off;
            if (n > max) n = max;
            memcpy(buf, r->out.p + r->out_off, n);
            r->out_off += n;
            return (ssize_t)n;
        }
        aero_buf_clear(&r->out);
        r->out_off = 0;
        if (r->finished) return MHD_CONTENT_READER_END_OF_STREAM;
        if (!r->sent_head) {
            r->sent_head = true;
            bool ok = true;
            if (r->meta.chat) ok = out_event(r, aero_oai_chunk(&r->meta, true, "", 0, NULL, NULL, r->include_usage));
            else if (r->echo_len) {
                ok = out_event(r, aero_oai_chunk(&r->meta, false, r->echo, r->echo_len, NULL, NULL, r->include_usage));
                r->text_sent += r->echo_len;
            }
            if (!ok) return MHD_CONTENT_READER_END_WITH_ERROR;
            continue;
        }
        aero_gen_delta d;
        bool fresh = aero_gen_next(r->gen, &r->cur, 200, &d);
        bool ok = !fresh || emit_delta(r, &d);
        aero_gen_delta_free(&d);
        if (!ok) return MHD_CONTENT_READER_END_WITH_ERROR;
        if (!fresh && aero_http_client_gone(r)) {
            aero_gen_cancel(r->gen);
            aero_sched_poke(r->srv->sched);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
}

// Waits for a whole generation (non-streamed request), appending its text to `text` and its logprob
// entries to *lp; false when the client left meanwhile.
static bool wait_all(aero_http_req *r, aero_buf *text, aero_oai_logprob **lp, int *n_lp, aero_gen_delta *last) {
    int lp_cap = 0;
    *lp = NULL;
    *n_lp = 0;
    double checked = aero_now();
    for (;;) {
        aero_gen_delta d;
        bool fresh = aero_gen_next(r->gen, &r->cur, 200, &d);
        if (d.len && !aero_buf_append(text, d.text, d.len)) goto oom;
        if (d.n_lp) {
            if (*n_lp + d.n_lp > lp_cap) {
                lp_cap = (*n_lp + d.n_lp) * 2;
                aero_oai_logprob *a = realloc(*lp, (size_t)lp_cap * sizeof *a);
                if (!a) goto oom;
                *lp = a;
            }
            memcpy(*lp + *n_lp, d.lp, (size_t)d.n_lp * sizeof *d.lp);
            *n_lp += d.n_lp;
        }
        if (d.done) {
            *last = d;
            last->text = NULL;
            last->lp = NULL;
            aero_gen_delta_free(&d);
            return true;
        }
        aero_gen_delta_free(&d);
        // Tokens may arrive faster than the timeout, so the socket is checked by the clock, not only when idle.
        double now = aero_now();
        if (!fresh || now - checked > 0.1) {
            checked = now;
            if (aero_http_client_gone(r)) return false;
        }
        continue;
    oom:
        aero_gen_delta_free(&d);
        memset(last, 0, sizeof *last);
        last->done = true;
        last->finish = AERO_FINISH_ERROR;
        snprintf(last->error, sizeof last->error, "out of memory collecting the output");
        return true;
    }
}

// A generation request on its way from the parsed body to the scheduler.
typedef struct {
    aero_req q;
    aero_req_kind kind;
    char *text; // the rendered chat prompt
    size_t text_len;
    int32_t *ids; // the prompt's tokens
    size_t n_ids;
    int max_tokens; // resolved against the context left after the prompt
} gen_request;

// The chat prompt: messages (and tools, unless tool_choice is "none") through the model's template; a
// template that only renders tool calls gets the definitions in a system message. Sets up the request's tool
// parsing. False when the request was answered with an error (in *ret).
static bool render_chat(aero_http_req *r, aero_req *q, char **text, size_t *len, enum MHD_Result *ret) {
    aero_srv_model *x = &r->srv->model;
    aero_error err = {0};
    aero_status st;
    const json_t *tools = q->tool_choice == AERO_TOOL_NONE ? NULL : q->tools;
    json_t *messages = q->messages;
    if (tools && x->tools.format == AERO_TOOLS_UNSUPPORTED) {
        char msg[400];
        snprintf(msg, sizeof msg,
                 "This model's chat template (%s) has no tool support: it renders neither 'tools' nor tool "
                 "calls. Start the server with a --chat-template-file that does, or send the request without "
                 "'tools'.",
                 x->tmpl_name);
        *ret = aero_http_error(r, 400, msg, "tools", NULL);
        return false;
    }
    if (tools && !x->tools.renders_tools) { // the template knows calls, not definitions: list them first
        char *sys = aero_tool_system_text(tools, x->tools.format);
        messages = json_copy(q->messages);
        if (sys && messages) {
            json_t *m0 = json_array_get(messages, 0);
            const char *role = json_string_value(json_object_get(m0, "role"));
            const char *c0 = json_string_value(json_object_get(m0, "content"));
            if (role && !strcmp(role, "system") && c0) {
                size_t n = strlen(c0) + strlen(sys) + 3;
                char *both = malloc(n);
                if (both) snprintf(both, n, "%s\n\n%s", c0, sys);
                if (both) json_object_set_new(m0, "content", json_string(both));
                free(both);
            } else {
                json_array_insert_new(messages, 0, json_pack("{s:s, s:s}", "role", "system", "content", sys));
            }
        }
        free(sys);
        if (!messages) messages = json_incref(q->messages);
        tools = NULL;
    } else {
        json_incref(messages);
    }
    if (tools || messages != q->messages) {
        r->tool_fmt = x->tools.format;
        r->tools = json_incref(q->tools);
        r->parallel_tools = q->parallel_tool_calls;
    }
    st = aero_srv_model_render(x, messages, tools, text, len, &err);
    json_decref(messages);
    if (st) {
        *ret = aero_http_error(r, status_of(st), err.msg, "messages", NULL);
        return false;
    }
    return true;
}

// POST /apply-template (llama-server's): the prompt a chat request would be generated from, for checking what
// a template makes of messages, tools and tool results.
static enum MHD_Result handle_apply_template(aero_http_req *r) {
    aero_server *s = r->srv;
    aero_req q;
    aero_error err = {0};
    aero_status st =
        aero_req_parse(&q, AERO_REQ_CHAT, r->body.p, r->body.len, s->model.backend.n_vocab, &s->p.defaults, &err);
    if (st) return aero_http_error(r, status_of(st), err.msg, q.err_param[0] ? q.err_param : NULL, NULL);
    char *text = NULL;
    size_t len = 0;
    enum MHD_Result ret;
    if (render_chat(r, &q, &text, &len, &ret))
        ret = aero_http_json(r, 200, json_pack("{s:o}", "prompt", aero_oai_string(text, len)));
    free(text);
    aero_req_free(&q);
    return ret;
}

// The prompt as tokens: the chat template rendered and tokenized, token ids as given, or the text tokenized.
// False when the request was answered with an error (in *ret).
static bool gen_prompt(aero_http_req *r, gen_request *g, enum MHD_Result *ret) {
    aero_server *s = r->srv;
    aero_srv_model *x = &s->model;
    aero_req *q = &g->q;
    aero_error err = {0};
    aero_status st = AERO_OK;
    const char *pparam = g->kind == AERO_REQ_CHAT ? "messages" : "prompt";
    if (!model_ok(s, q->model)) {
        char msg[400];
        snprintf(msg, sizeof msg, "The model '%.200s' does not exist; this server serves '%.100s'", q->model,
                 s->model_id);
        *ret = aero_http_error(r, 404, msg, "model", "model_not_found");
        return false;
    }
    if (g->kind == AERO_REQ_CHAT) {
        if (!render_chat(r, q, &g->text, &g->text_len, ret)) return false;
        st = aero_srv_model_tokenize(x, g->text, g->text_len, true, true, &g->ids, &g->n_ids, &err);
    } else if (q->prompt_ids) {
        g->ids = q->prompt_ids;
        g->n_ids = q->n_prompt_ids;
        q->prompt_ids = NULL;
    } else {
        st = aero_srv_model_tokenize(x, q->prompt, q->prompt_len, true, true, &g->ids, &g->n_ids, &err);
    }
    if (st) {
        *ret = aero_http_error(r, status_of(st), err.msg, pparam, NULL);
        return false;
    }
    if (g->n_ids == 0) {
        *ret =
            aero_http_error(r, 400, "The prompt is empty and this model has no BOS token to start from", pparam, NULL);
        return false;
    }
    return true;
}

// max_tokens against the context: the prompt must leave room, and an explicit max_tokens must fit in it
// (OpenAI's errors); an absent one is the room left (16 for completions, OpenAI's default).
static bool gen_max_tokens(aero_http_req *r, gen_request *g, enum MHD_Result *ret) {
    int n_ctx = r->srv->model.backend.n_ctx;
    const char *what = g->kind == AERO_REQ_CHAT ? "messages" : "prompt";
    if (g->n_ids >= (size_t)n_ctx) {
        char msg[256];
        snprintf(msg, sizeof msg, "This model's maximum context length is %d tokens. However, your %s has %zu tokens.",
                 n_ctx, what, g->n_ids);
        *ret = aero_http_error(r, 400, msg, what, "context_length_exceeded");
        return false;
    }
    int room = n_ctx - (int)g->n_ids;
    int max_tokens = g->q.max_tokens;
    if (max_tokens < 0) {
        max_tokens = g->kind == AERO_REQ_COMPLETION ? 16 : room;
        if (max_tokens > room) max_tokens = room;
    } else if (max_tokens > room) {
        char msg[400];
        snprintf(msg, sizeof msg,
                 "This model's maximum context length is %d tokens. However, you requested %lld tokens (%zu in the "
                 "%s, %d in the completion). Please reduce the length of the %s or the completion.",
                 n_ctx, (long long)g->n_ids + max_tokens, g->n_ids, what, max_tokens, what);
        *ret = aero_http_error(r, 400, msg, g->q.max_tokens == max_tokens ? "max_tokens" : NULL,
                               "context_length_exceeded");
        return false;
    }
    g->max_tokens = max_tokens;
    return true;
}

// Completions' echo: the prompt text (or the detokenized prompt ids) sent before the output.
static void gen_echo(aero_http_req *r, const gen_request *g) {
    if (g->q.prompt) {
        r->echo = malloc(g->q.prompt_len + 1);
        if (r->echo) {
            memcpy(r->echo, g->q.prompt, g->q.prompt_len);
            r->echo_len = g->q.prompt_len;
        }
    } else {
        aero_error err = {0};
        if (aero_detokenize(r->srv->model.tok, g->ids, g->n_ids, false, &r->echo, &r->echo_len, &err)) {
            r->echo = NULL;
            r->echo_len = 0;
        }
    }
}

// The scheduler's parameters for the request (taking its prompt ids); false when out of memory.
static bool gen_params(aero_http_req *r, gen_request *g, aero_gen_params *gp) {
    aero_server *s = r->srv;
    aero_srv_model *x = &s->model;
    const aero_req *q = &g->q;
    bool fallback = g->kind == AERO_REQ_CHAT && !x->tmpl;
    gp->stop = dup_strings(q->stop, q->n_stop, fallback ? 1 : 0);
    gp->n_stop = q->n_stop;
    if (gp->stop && fallback) { // ChatML turns end at <|im_end|>, even where the vocabulary lacks the token
        gp->stop[gp->n_stop] = strdup("<|im_end|>");
        if (gp->stop[gp->n_stop]) gp->n_stop++;
    }
    if (q->n_bias) {
        gp->bias_id = malloc((size_t)q->n_bias * sizeof *gp->bias_id);
        gp->bias = malloc((size_t)q->n_bias * sizeof *gp->bias);
        if (gp->bias_id && gp->bias) {
            memcpy(gp->bias_id, q->bias_id, (size_t)q->n_bias * sizeof *gp->bias_id);
            memcpy(gp->bias, q->bias, (size_t)q->n_bias * sizeof *gp->bias);
            gp->n_bias = q->n_bias;
        }
    }
    gp->detok_first = g->n_ids == 1 && g->ids[0] == aero_tokenizer_bos(x->tok);
    gp->prompt = g->ids;
    gp->n_prompt = (int)g->n_ids;
    g->ids = NULL;
    gp->max_tokens = g->max_tokens;
    gp->sp = q->sp;
    if (!q->has_seed) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        gp->sp.seed = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^
                      atomic_fetch_add(&s->next_id, 1) * 0x9e3779b97f4a7c15ull;
    }
    gp->logprobs = q->logprobs;
    gp->top_logprobs = q->top_logprobs;
    gp->ignore_eos = q->ignore_eos;
    gp->fresh_kv = !q->cache_prompt;
    return gp->stop && !(q->n_bias && !gp->n_bias);
}

// Token bytes and kinds for the grammar vocabulary: what the detokenizer emits for each token.
static size_t gv_piece(void *ctx, int32_t id, char *buf, size_t cap) {
    return aero_token_to_bytes(((aero_srv_model *)ctx)->tok, id, false, buf, cap);
}

// End-of-generation ids end a constrained output; other control tokens never appear in it.
static int gv_kind(void *ctx, int32_t id) {
    const aero_tokenizer *t = ((aero_srv_model *)ctx)->tok;
    if (aero_tokenizer_is_eog(t, id)) return 2;
    return aero_tokenizer_is_control(t, id) ? 1 : 0;
}

// The model's token trie for constrained output, built once (about 0.1 s for a 100k vocabulary).
static aero_grammar_vocab *grammar_vocab(aero_server *s) {
    pthread_mutex_lock(&s->gvocab_mu);
    if (!s->gvocab) s->gvocab = aero_grammar_vocab_new(s->model.backend.n_vocab, gv_piece, gv_kind, &s->model);
    aero_grammar_vocab *v = s->gvocab;
    pthread_mutex_unlock(&s->gvocab_mu);
    return v;
}

// Builds the generation and queues it; on success r->gen holds it and the response metadata is set.
static bool gen_submit(aero_http_req *r, gen_request *g, enum MHD_Result *ret) {
    aero_server *s = r->srv;
    aero_req *q = &g->q;
    if (r->tool_fmt && (q->tool_choice == AERO_TOOL_REQUIRED || q->tool_choice == AERO_TOOL_NAMED)) {
        // a call is required: the grammar of the template's call format over the tools' parameter schemas
        if (q->grammar) {
            *ret = aero_http_error(r, 400, "give either 'tool_choice' requiring a call or 'response_format'/'grammar'",
                                   "tool_choice", NULL);
            return false;
        }
        aero_error err = {0};
        char kw[64] = "";
        if (aero_tool_grammar(&q->grammar, r->tool_fmt, q->tools,
                              q->tool_choice == AERO_TOOL_NAMED ? q->tool_name : NULL, q->parallel_tool_calls, kw,
                              &err)) {
            *ret = aero_http_error(r, status_of(err.code), err.msg, "tools", NULL);
            return false;
        }
    }
    aero_gen_params gp = {0};
    bool ok = gen_params(r, g, &gp);
    gp.render_special = r->tool_fmt != AERO_TOOLS_UNSUPPORTED;
    r->n_prompt = gp.n_prompt;
    r->shown.sp = gp.sp; // aero_gen_new takes gp over
    r->shown.max_tokens = gp.max_tokens;
    r->shown.stream = g->q.stream;
    r->shown.ignore_eos = g->q.ignore_eos;
    r->shown.task = atomic_fetch_add(&s->next_id, 1);
    if (g->q.grammar) { // response_format: the sampler masks every step with the request's own constraint
        aero_grammar_vocab *v = grammar_vocab(s);
        r->constraint = v ? aero_grammar_constraint_new(g->q.grammar, v) : NULL;
        r->grammar = g->q.grammar;
        g->q.grammar = NULL;
        gp.sp.constraint = r->constraint;
        ok &= r->constraint != NULL;
    }
    aero_gen *gen = aero_gen_new(&gp);
    aero_error err = {0};
    aero_status st;
    if (!gen || !ok) {
        *ret = aero_http_error(r, 500, "out of memory queueing the request", NULL, NULL);
        aero_gen_unref(gen);
        return false;
    }
    if ((st = aero_sched_submit(s->sched, gen, &err))) {
        int code = st == AERO_ERR_INVALID ? 400 : 503;
        *ret = aero_http_error(r, code, err.msg, NULL, st == AERO_ERR_RANGE ? "queue_full" : NULL);
        aero_gen_unref(gen);
        return false;
    }
    r->gen = gen;
    aero_http_active_add(r);
    make_id(s, g->kind == AERO_REQ_CHAT ? "chatcmpl" : "cmpl", r->id, sizeof r->id);
    r->meta = (aero_oai_meta){
        .chat = g->kind == AERO_REQ_CHAT, .id = r->id, .model = s->model_id, .created = (long long)time(NULL)};
    r->logprobs = g->q.logprobs;
    r->top_logprobs = g->q.top_logprobs;
    r->include_usage = g->q.include_usage;
    return true;
}

// A streamed response: server-sent events that sse_read produces as the generation advances.
static enum MHD_Result respond_streamed(aero_http_req *r) {
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, sse_read, r, NULL);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream; charset=utf-8");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    return aero_http_answer_200(r, resp);
}

// A whole response: waits for the end, then answers with the text (after the echo) in one JSON body. The
// connection's idle timeout is off while the model works, then restored.
static enum MHD_Result respond_whole(aero_http_req *r) {
    aero_server *s = r->srv;
    MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
    aero_buf out = {0};
    if (r->echo_len) aero_buf_append(&out, r->echo, r->echo_len);
    aero_oai_logprob *lps = NULL;
    int n_lp = 0;
    aero_gen_delta last;
    bool present = wait_all(r, &out, &lps, &n_lp, &last);
    MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT,
                              (unsigned)(s->p.timeout_s > 0 ? s->p.timeout_s : 0));
    enum MHD_Result ret;
    if (!present) { // the client is gone: free the sequence now and drop the connection
        aero_gen_cancel(r->gen);
        aero_sched_poke(s->sched);
        ret = MHD_NO;
        goto done;
    }
    r->finished = true;
    r->n_gen = last.n_gen;
    r->n_drafted = last.speculative ? last.n_drafted : -1;
    r->n_accepted = last.n_accepted;
    r->finish_name = aero_finish_name(last.finish);
    if (last.finish == AERO_FINISH_ERROR) {
        ret = aero_http_error(r, aero_pipeline_failure() ? 503 : 500, // 503: a rank of the pipeline died
                              last.error[0] ? last.error : "generation failed", NULL, NULL);
        goto done;
    }
    json_t *lpj = r->logprobs
                      ? aero_oai_logprobs(r->meta.chat, lps, n_lp, r->top_logprobs, aero_srv_model_piece, &s->model, 0)
                      : NULL;
    const char *fin = last.finish == AERO_FINISH_LENGTH ? "length" : "stop";
    json_t *resp = aero_oai_response(&r->meta, out.p ? out.p : "", out.len, fin, lpj, last.n_prompt, last.n_gen);
    if (resp) aero_oai_usage_cached(resp, last.n_cached);
    if (resp && r->tool_fmt && r->meta.chat) tool_response(r, resp, out.p ? out.p : "", out.len);
    if (resp && last.speculative) aero_oai_usage_draft(resp, last.n_drafted, last.n_accepted);
    ret = aero_http_json(r, 200, resp);
done:
    aero_buf_free(&out);
    free(lps);
    return ret;
}

// Completions and chat completions: validate, build the prompt, check the context, queue, answer.
static enum MHD_Result handle_generate(aero_http_req *r, aero_req_kind kind) {
    aero_server *s = r->srv;
    gen_request g = {.kind = kind};
    aero_error err = {0};
    aero_status st = aero_req_parse(&g.q, kind, r->body.p, r->body.len, s->model.backend.n_vocab, &s->p.defaults, &err);
    if (st) return aero_http_error(r, status_of(st), err.msg, g.q.err_param[0] ? g.q.err_param : NULL, NULL);
    enum MHD_Result ret;
    if (gen_prompt(r, &g, &ret) && gen_max_tokens(r, &g, &ret)) {
        if (g.q.echo) gen_echo(r, &g); // completions only (the parser accepts echo there)
        if (gen_submit(r, &g, &ret)) ret = g.q.stream ? respond_streamed(r) : respond_whole(r);
    }
    free(g.ids);
    free(g.text);
    aero_req_free(&g.q);
    return ret;
}

// POST /v1/embeddings (with --embeddings): each input is tokenized as a completion prompt is (BOS added), run
// through the model in the scheduler's batches on a sequence of its own, and its last hidden states (after the
// output norm) are mean-pooled and L2-normalized; llama-server's --embeddings default (mean pooling, normalized).
static enum MHD_Result handle_embeddings(aero_http_req *r) {
    aero_server *s = r->srv;
    aero_srv_model *x = &s->model;
    if (!s->p.embeddings)
        return aero_http_error(r, 501, "This server does not serve embeddings; start it with --embeddings", NULL,
                               "not_supported");
    aero_embed_req q;
    aero_error err = {0};
    aero_status st = aero_req_parse_embeddings(&q, r->body.p, r->body.len, x->backend.n_vocab, &err);
    if (st) return aero_http_error(r, status_of(st), err.msg, q.err_param[0] ? q.err_param : NULL, NULL);
    enum MHD_Result ret = MHD_NO;
    aero_gen **gens = calloc((size_t)q.n, sizeof *gens);
    int n_embd = x->backend.n_embd, n_tokens = 0, n_sub = 0;
    float *vec = malloc(sizeof(float) * (size_t)(n_embd > 0 ? n_embd : 1));
    json_t *data = json_array();
    if (!gens || !vec || !data) {
        ret = aero_http_error(r, 500, "out of memory", NULL, NULL);
        goto done;
    }
    if (!model_ok(s, q.model)) {
        char msg[400];
        snprintf(msg, sizeof msg, "The model '%.200s' does not exist; this server serves '%.100s'", q.model,
                 s->model_id);
        ret = aero_http_error(r, 404, msg, "model", "model_not_found");
        goto done;
    }
    for (int i = 0; i < q.n; i++) { // all queued first, so the scheduler batches them together
        aero_gen_params gp = {0};
        size_t n = 0;
        int32_t *ids = NULL;
        if (q.in[i].ids) {
            ids = q.in[i].ids;
            n = q.in[i].n_ids;
            q.in[i].ids = NULL;
        } else if ((st = aero_srv_model_tokenize(x, q.in[i].text, q.in[i].len, true, true, &ids, &n, &err))) {
            ret = aero_http_error(r, status_of(st), err.msg, "input", NULL);
            goto done;
        }
        if (n == 0 || n >= (size_t)x->backend.n_ctx) {
            free(ids);
            char msg[256];
            snprintf(msg, sizeof msg, "input %d has %zu tokens; this model's context holds %d (at least 1)", i, n,
                     x->backend.n_ctx - 1);
            ret = aero_http_error(r, 400, msg, "input", n ? "context_length_exceeded" : NULL);
            goto done;
        }
        n_tokens += (int)n;
        gp.prompt = ids;
        gp.n_prompt = (int)n;
        gp.max_tokens = 1;
        aero_sampler_params_default(&gp.sp);
        gp.sp.temp = 0;
        gp.embed = true;
        gp.fresh_kv = true;
        gens[i] = aero_gen_new(&gp);
        if (!gens[i]) {
            ret = aero_http_error(r, 500, "out of memory queueing the input", NULL, NULL);
            goto done;
        }
        if ((st = aero_sched_submit(s->sched, gens[i], &err))) {
            ret = aero_http_error(r,
                                  st == AERO_ERR_INVALID       ? 400
                                  : st == AERO_ERR_UNSUPPORTED ? 501
                                                               : 503,
                                  err.msg, NULL, st == AERO_ERR_RANGE ? "queue_full" : NULL);
            goto done;
        }
        n_sub = i + 1;
    }
    MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
    for (int i = 0; i < q.n; i++) {
        aero_gen_cursor cur = {0};
        aero_gen_delta d;
        for (;;) {
            aero_gen_next(gens[i], &cur, 200, &d);
            bool done = d.done;
            aero_finish fin = d.finish;
            char msg[256];
            memcpy(msg, d.error, sizeof msg);
            aero_gen_delta_free(&d);
            if (done) {
                if (fin != AERO_FINISH_STOP || !aero_gen_embedding(gens[i], vec, n_embd)) {
                    ret = aero_http_error(r, 500, msg[0] ? msg : "the embedding failed", NULL, NULL);
                    goto restore;
                }
                break;
            }
            if (aero_http_client_gone(r)) goto restore; // MHD_NO: drop the connection; done cancels the rest
        }
        json_array_append_new(data, json_pack("{s:s, s:i, s:o}", "object", "embedding", "index", i, "embedding",
                                              aero_oai_embedding_value(vec, n_embd, q.base64)));
    }
    ret = aero_http_json(r, 200,
                         json_pack("{s:s, s:O, s:s, s:{s:i, s:i}}", "object", "list", "data", data, "model",
                                   s->model_id, "usage", "prompt_tokens", n_tokens, "total_tokens", n_tokens));
restore:
    MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT,
                              (unsigned)(s->p.timeout_s > 0 ? s->p.timeout_s : 0));
done:
    for (int i = 0; gens && i < q.n; i++) {
        if (!gens[i]) continue;
        if (i < n_sub) aero_gen_cancel(gens[i]); // no-op once done; frees the sequences of abandoned ones
        aero_gen_unref(gens[i]);
    }
    if (n_sub) aero_sched_poke(s->sched);
    free(gens);
    free(vec);
    json_decref(data);
    aero_req_embed_free(&q);
    return ret;
}

typedef enum {
    R_HEALTH,
    R_METRICS,
    R_MODELS,
    R_MODEL,
    R_COMPLETIONS,
    R_CHAT,
    R_TOKENIZE,
    R_DETOKENIZE,
    R_PROPS,
    R_SLOTS,
    R_EMBEDDINGS,
    R_APPLY_TEMPLATE,
    R_WEB,
    R_EVENTS,
    R_SLOT_ACTION,
    R_FILES
} route;

static const struct {
    const char *path;
    const char *method;
    route id;
    bool prefix;
} routes[] = {
    {"/health", "GET", R_HEALTH, false},
    {"/v1/health", "GET", R_HEALTH, false},
    {"/metrics", "GET", R_METRICS, false},
    {"/v1/models", "GET", R_MODELS, false},
    {"/models", "GET", R_MODELS, false},
    {"/v1/models/", "GET", R_MODEL, true},
    {"/v1/completions", "POST", R_COMPLETIONS, false},
    {"/completions", "POST", R_COMPLETIONS, false},
    {"/v1/chat/completions", "POST", R_CHAT, false},
    {"/chat/completions", "POST", R_CHAT, false},
    {"/tokenize", "POST", R_TOKENIZE, false},
    {"/detokenize", "POST", R_DETOKENIZE, false},
    {"/props", "GET", R_PROPS, false},
    {"/slots", "GET", R_SLOTS, false},
    {"/slots/", "POST", R_SLOT_ACTION, true},
    {"/v1/embeddings", "POST", R_EMBEDDINGS, false},
    {"/embeddings", "POST", R_EMBEDDINGS, false},
    {"/apply-template", "POST", R_APPLY_TEMPLATE, false},
    {"/", "GET", R_WEB, false},
    {"/index.html", "GET", R_WEB, false},
    {"/web/", "GET", R_WEB, true},
    {"/v1/engine/events", "GET", R_EVENTS, false},
    {"/v1/files", "POST", R_FILES, false},
    {"/v1/files", "GET", R_FILES, false},
    {"/v1/files/", "GET", R_FILES, true},
    {"/v1/files/", "DELETE", R_FILES, true},
    {"/v1/batches", "POST", R_FILES, false},
    {"/v1/batches", "GET", R_FILES, false},
    {"/v1/batches/", "GET", R_FILES, true},
    {"/v1/batches/", "POST", R_FILES, true},
};

// Routes a request: known path with the wrong method is 405, unknown path 404, model endpoints 503 until loaded.
enum MHD_Result aero_api_handle(aero_http_req *r, const char *url) {
    bool path_known = false;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        size_t pl = strlen(routes[i].path);
        bool match = routes[i].prefix ? !strncmp(url, routes[i].path, pl) && url[pl] : !strcmp(url, routes[i].path);
        if (!match) continue;
        path_known = true;
        bool head = !strcmp(r->method, "HEAD") && !strcmp(routes[i].method, "GET");
        if (strcmp(r->method, routes[i].method) != 0 && !head) continue;
        route id = routes[i].id;
        if (id == R_HEALTH) return handle_health(r);
        if (id == R_METRICS) return handle_metrics(r);
        if (id == R_MODELS) return handle_models(r, NULL);
        if (id == R_MODEL) return handle_models(r, url + pl);
        if (id == R_WEB) return aero_web_asset(r, url);
        if (id == R_FILES && !strncmp(url, "/v1/files", 9)) return aero_api_files(r, url); // needs no model
        int st = atomic_load(&r->srv->state);
        if (st != 1)
            return aero_http_error(r, 503,
                                   st == 0 ? "The model is still loading; retry when /health answers 200"
                                           : "The server is not serving (model failed to load or shutting down)",
                                   NULL, st == 0 ? "model_loading" : NULL);
        if (aero_pipeline_failure()) return aero_http_error(r, 503, aero_pipeline_failure(), NULL, "pipeline_failed");
        if (id == R_COMPLETIONS) return handle_generate(r, AERO_REQ_COMPLETION);
        if (id == R_CHAT) return handle_generate(r, AERO_REQ_CHAT);
        if (id == R_TOKENIZE) return handle_tokenize(r);
        if (id == R_PROPS) return handle_props(r);
        if (id == R_SLOTS) return handle_slots(r);
        if (id == R_SLOT_ACTION) return handle_slot_action(r, url + pl);
        if (id == R_EMBEDDINGS) return handle_embeddings(r);
        if (id == R_APPLY_TEMPLATE) return handle_apply_template(r);
        if (id == R_EVENTS) return aero_web_events(r);
        if (id == R_FILES) return aero_api_files(r, url);
        return handle_detokenize(r);
    }
    char msg[160];
    if (path_known) {
        snprintf(msg, sizeof msg, "Method %s is not allowed on %.100s", r->method, url);
        return aero_http_error(r, 405, msg, NULL, "method_not_allowed");
    }
    snprintf(msg, sizeof msg, "Unknown endpoint: %s %.100s", r->method, url);
    return aero_http_error(r, 404, msg, NULL, "unknown_url");
}
