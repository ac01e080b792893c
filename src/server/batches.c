// Batch jobs (batches.h): validation of the input file, the runner and its workers, the output and error files.
#include "batches.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/buf.h"
#include "../core/util.h"
#include "loopback.h"

#define MAX_ERRORS 100 // validation errors reported per batch

typedef struct batch {
    struct batch *next; // newer batches first
    char id[48], endpoint[32], input_file_id[32], output_file_id[32], error_file_id[32];
    json_t *metadata;
    json_t *errors; // validation errors: an array, or NULL
    const char *status;
    long long created_at, in_progress_at, finalizing_at, completed_at, failed_at, cancelling_at, cancelled_at;
    int total, completed, failed;
    atomic_bool cancel;
    pthread_t thread;
    bool started;
    // the runner's state
    struct aero_batches *owner;
    char *input;     // the input file's bytes, until they are parsed
    json_t **reqs;   // its request lines, parsed once (owned)
    int n_reqs;
    atomic_int next_line;
    aero_files_writer out, errs;
    bool out_open, errs_open;
} batch;

struct aero_batches {
    aero_files *files;
    aero_batches_target t;
    char host[256], key[512];
    pthread_mutex_t mu; // the list and every batch's fields the API reads
    batch *list;
    unsigned long long seq;
};

aero_status aero_batches_new(aero_batches **out, aero_files *files, const aero_batches_target *t, aero_error *err) {
    aero_batches *b = calloc(1, sizeof *b);
    if (!b) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    b->files = files;
    b->t = *t;
    snprintf(b->host, sizeof b->host, "%s", t->host ? t->host : "127.0.0.1");
    b->t.host = b->host;
    if (t->api_key) {
        snprintf(b->key, sizeof b->key, "%s", t->api_key);
        b->t.api_key = b->key;
    }
    if (b->t.parallel < 1) b->t.parallel = 1;
    pthread_mutex_init(&b->mu, NULL);
    *out = b;
    return AERO_OK;
}

void aero_batches_stop(aero_batches *b) {
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    for (batch *x = b->list; x; x = x->next) atomic_store(&x->cancel, true);
    pthread_mutex_unlock(&b->mu);
}

void aero_batches_free(aero_batches *b) {
    if (!b) return;
    aero_batches_stop(b);
    for (batch *x = b->list, *nx; x; x = nx) {
        nx = x->next;
        if (x->started) pthread_join(x->thread, NULL);
        json_decref(x->metadata);
        json_decref(x->errors);
        free(x);
    }
    pthread_mutex_destroy(&b->mu);
    free(b);
}

// Seconds since the epoch, as the API's timestamps are.
static long long now_s(void) { return (long long)time(NULL); }

static json_t *ts(long long t) { return t ? json_integer(t) : json_null(); }

static json_t *opt_id(const char *id) { return id[0] ? json_string(id) : json_null(); }

// The batch object as OpenAI returns it (the caller holds the lock).
static json_t *batch_object(const batch *x) {
    json_t *errors = json_null();
    if (x->errors) errors = json_pack("{s:s, s:O}", "object", "list", "data", x->errors);
    return json_pack("{s:s, s:s, s:s, s:o, s:s, s:s, s:s, s:o, s:o, s:I, s:o, s:I, s:o, s:o, s:o, s:o, s:o, s:o, "
                     "s:{s:i, s:i, s:i}, s:O}",
                     "id", x->id, "object", "batch", "endpoint", x->endpoint, "errors", errors, "input_file_id",
                     x->input_file_id, "completion_window", "24h", "status", x->status, "output_file_id",
                     opt_id(x->output_file_id), "error_file_id", opt_id(x->error_file_id), "created_at",
                     (json_int_t)x->created_at, "in_progress_at", ts(x->in_progress_at), "expires_at",
                     (json_int_t)(x->created_at + 86400), "finalizing_at", ts(x->finalizing_at), "completed_at",
                     ts(x->completed_at), "failed_at", ts(x->failed_at), "expired_at", json_null(), "cancelling_at",
                     ts(x->cancelling_at), "cancelled_at", ts(x->cancelled_at), "request_counts", "total", x->total,
                     "completed", x->completed, "failed", x->failed, "metadata",
                     x->metadata ? x->metadata : json_null());
}

// One validation error of the input file (line numbers from 1), up to MAX_ERRORS.
static void add_error(json_t **errors, int line, const char *code, const char *msg) {
    if (!*errors) *errors = json_array();
    if (*errors && json_array_size(*errors) < MAX_ERRORS)
        json_array_append_new(*errors, json_pack("{s:s, s:s, s:n, s:i}", "code", code, "message", msg, "param",
                                                   "line", line));
}

// Splits the input into request lines and checks each one as the Batch API does: a JSON object with a unique
// string custom_id, method POST, the batch's endpoint as url and an object body. Returns the number of lines,
// -1 when any is wrong (*errors gets them).
static int validate(batch *x, json_t **errors) {
    int n = 0, cap = 0, bad = 0;
    json_t *seen = json_object();
    char *p = x->input;
    for (int line = 1; p && *p; line++) {
        char *eol = strchr(p, '\n');
        if (eol) *eol = 0;
        char *l = p;
        p = eol ? eol + 1 : NULL;
        size_t ll = strlen(l);
        if (ll && l[ll - 1] == '\r') l[--ll] = 0;
        if (!ll) continue;
        json_error_t je;
        json_t *j = json_loads(l, JSON_REJECT_DUPLICATES, &je);
        const char *cid = json_string_value(json_object_get(j, "custom_id"));
        const char *method = json_string_value(json_object_get(j, "method"));
        const char *url = json_string_value(json_object_get(j, "url"));
        char msg[300];
        const char *code = "invalid_request";
        msg[0] = 0;
        if (!json_is_object(j)) snprintf(msg, sizeof msg, "line is not a JSON object: %s", j ? "" : je.text);
        else if (!cid || !*cid) snprintf(msg, sizeof msg, "custom_id must be a non-empty string");
        else if (json_object_get(seen, cid)) snprintf(msg, sizeof msg, "custom_id '%.200s' is used twice", cid), code = "duplicate_custom_id";
        else if (!method || strcmp(method, "POST")) snprintf(msg, sizeof msg, "method must be \"POST\"");
        else if (!url || strcmp(url, x->endpoint))
            snprintf(msg, sizeof msg, "url must be the batch's endpoint %s", x->endpoint), code = "mismatched_endpoint";
        else if (!json_is_object(json_object_get(j, "body"))) snprintf(msg, sizeof msg, "body must be a JSON object");
        if (msg[0]) {
            add_error(errors, line, code, msg);
            bad++;
        } else {
            json_object_set_new(seen, cid, json_true());
            if (n + 1 >= cap) {
                cap = cap ? cap * 2 : 64;
                json_t **nl = realloc(x->reqs, sizeof *nl * (size_t)cap);
                if (!nl) {
                    add_error(errors, line, "server_error", "out of memory");
                    json_decref(j);
                    bad++;
                    break;
                }
                x->reqs = nl;
            }
            x->reqs[n++] = j; // kept: the workers send its body
            x->n_reqs = n;
            j = NULL;
        }
        json_decref(j);
    }
    json_decref(seen);
    if (!bad && !n) add_error(errors, 0, "empty_file", "the input file has no requests");
    return bad || !n ? -1 : n;
}

// Appends one result line to the output or error file (under the lock, flushed: what is written stays).
static void write_result(batch *x, bool ok, json_t *line) {
    aero_batches *b = x->owner;
    aero_error err = {0};
    char *txt = json_dumps(line, JSON_COMPACT);
    pthread_mutex_lock(&b->mu);
    aero_files_writer *w = ok ? &x->out : &x->errs;
    bool *open = ok ? &x->out_open : &x->errs_open;
    if (!*open && !aero_files_begin(b->files, w, &err)) *open = true;
    if (*open && txt) {
        size_t n = strlen(txt);
        if (fwrite(txt, 1, n, w->fp) == n && fputc('\n', w->fp) != EOF) w->bytes += n + 1;
        fflush(w->fp);
    }
    if (ok) x->completed++;
    else x->failed++;
    pthread_mutex_unlock(&b->mu);
    free(txt);
}

// One request of the batch through the server's endpoint; its answer becomes a result line.
static void run_one(batch *x, int index) {
    aero_batches *b = x->owner;
    json_t *j = x->reqs[index], *body = json_object_get(j, "body");
    const char *cid = json_string_value(json_object_get(j, "custom_id"));
    char rid[80];
    snprintf(rid, sizeof rid, "batch_req_%s_%d", x->id + 6, index + 1); // unique: the batch's id and the line
    json_t *res = NULL, *error = json_null();
    int status = 0;
    if (json_is_true(json_object_get(body, "stream"))) {
        status = 400;
        res = json_pack("{s:{s:s, s:s, s:s, s:n}}", "error", "message", "stream is not supported in a batch", "type",
                        "invalid_request_error", "param", "stream", "code");
    } else {
        char *txt = json_dumps(body, JSON_COMPACT);
        aero_buf resp = {0};
        aero_error err = {0};
        if (!txt) {
            error = json_pack("{s:s, s:s}", "code", "server_error", "message", "out of memory");
        } else if (aero_loopback_post(b->t.host, b->t.port, b->t.api_key, x->endpoint, txt, strlen(txt), &status,
                                      &resp, &err)) {
            error = json_pack("{s:s, s:s}", "code", "server_error", "message", err.msg);
        } else {
            res = json_loadb(resp.p ? resp.p : "", resp.len, 0, NULL);
            if (!res) res = json_stringn(resp.p ? resp.p : "", resp.len);
        }
        free(txt);
        aero_buf_free(&resp);
    }
    json_t *out = json_pack("{s:s, s:s, s:o, s:o}", "id", rid, "custom_id", cid ? cid : "", "response",
                            res ? json_pack("{s:i, s:s, s:o}", "status_code", status, "request_id", rid, "body", res)
                                : json_null(),
                            "error", error);
    write_result(x, res && status == 200, out);
    json_decref(out);
}

static void *worker_main(void *arg) {
    batch *x = arg;
    for (;;) {
        if (atomic_load(&x->cancel)) break;
        int i = atomic_fetch_add(&x->next_line, 1);
        if (i >= x->total) break;
        run_one(x, i);
    }
    return NULL;
}

// Commits a result file, or removes it when it failed; *id gets the file's id.
static void finish_file(aero_batches *b, aero_files_writer *w, bool open, const char *name, const char *purpose,
                        char *id) {
    if (!open) return;
    aero_error err = {0};
    json_t *obj = NULL;
    if (!aero_files_commit(b->files, w, name, purpose, &obj, &err)) snprintf(id, 32, "%s", w->id);
    json_decref(obj);
}

// The batch's life: read and validate the input, run the requests with t.parallel workers, then publish the
// output and error files and the final status.
static void *runner_main(void *arg) {
    batch *x = arg;
    aero_batches *b = x->owner;
    aero_error err = {0};
    size_t len = 0;
    int n = -1;
    json_t *errors = NULL;
    if (aero_files_read(b->files, x->input_file_id, b->t.max_file, &x->input, &len, &err))
        add_error(&errors, 0, "invalid_file", err.msg);
    else n = validate(x, &errors);
    free(x->input); // the requests are parsed now
    x->input = NULL;
    pthread_mutex_lock(&b->mu);
    x->errors = errors;
    if (n < 0) {
        x->status = "failed";
        x->failed_at = now_s();
    } else {
        x->total = n;
        x->status = atomic_load(&x->cancel) ? "cancelling" : "in_progress";
        x->in_progress_at = now_s();
    }
    pthread_mutex_unlock(&b->mu);
    if (n > 0) {
        int nw = b->t.parallel < n ? b->t.parallel : n;
        pthread_t *w = calloc((size_t)nw, sizeof *w);
        int started = 0;
        for (int i = 0; w && i < nw; i++)
            if (!pthread_create(&w[i], NULL, worker_main, x)) started++;
        if (!started) worker_main(x); // no thread to spare: run them here, one at a time
        for (int i = 0; i < started; i++) pthread_join(w[i], NULL);
        free(w);
        pthread_mutex_lock(&b->mu);
        x->finalizing_at = now_s();
        x->status = "finalizing";
        pthread_mutex_unlock(&b->mu);
        char oid[32] = "", eid[32] = "";
        finish_file(b, &x->out, x->out_open, "batch_output.jsonl", "batch_output", oid);
        finish_file(b, &x->errs, x->errs_open, "batch_errors.jsonl", "batch_output", eid);
        pthread_mutex_lock(&b->mu);
        snprintf(x->output_file_id, sizeof x->output_file_id, "%s", oid);
        snprintf(x->error_file_id, sizeof x->error_file_id, "%s", eid);
        if (atomic_load(&x->cancel)) {
            x->status = "cancelled";
            x->cancelled_at = now_s();
        } else {
            x->status = "completed";
            x->completed_at = now_s();
        }
        pthread_mutex_unlock(&b->mu);
    }
    for (int i = 0; i < x->n_reqs; i++) json_decref(x->reqs[i]);
    free(x->reqs);
    x->reqs = NULL;
    return NULL;
}

aero_status aero_batches_create(aero_batches *b, const char *input_file_id, const char *endpoint, const char *window,
                                json_t *metadata, json_t **obj, aero_error *err) {
    static const char *const endpoints[] = {"/v1/chat/completions", "/v1/completions", "/v1/embeddings"};
    bool known = false;
    for (size_t i = 0; endpoint && i < sizeof endpoints / sizeof endpoints[0]; i++) known |= !strcmp(endpoint, endpoints[i]);
    if (!known)
        return aero_fail(err, AERO_ERR_INVALID, "endpoint must be /v1/chat/completions, /v1/completions or "
                                                "/v1/embeddings");
    if (!window || strcmp(window, "24h"))
        return aero_fail(err, AERO_ERR_INVALID, "completion_window must be \"24h\"");
    if (metadata && !json_is_object(metadata) && !json_is_null(metadata))
        return aero_fail(err, AERO_ERR_INVALID, "metadata must be an object");
    json_t *f = aero_files_get(b->files, input_file_id);
    if (!f) return aero_fail(err, AERO_ERR_INVALID, "no file '%s' (upload it with POST /v1/files)", input_file_id);
    json_decref(f);
    batch *x = calloc(1, sizeof *x);
    if (!x) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    x->owner = b;
    snprintf(x->endpoint, sizeof x->endpoint, "%s", endpoint);
    snprintf(x->input_file_id, sizeof x->input_file_id, "%s", input_file_id);
    if (json_is_object(metadata)) x->metadata = json_incref(metadata);
    x->status = "validating";
    x->created_at = now_s();
    pthread_mutex_lock(&b->mu);
    unsigned long long h = aero_hash_u64(++b->seq ^ ((unsigned long long)x->created_at << 24) ^ (uintptr_t)x);
    snprintf(x->id, sizeof x->id, "batch_%016llx%04llx", h, b->seq & 0xffff);
    x->next = b->list;
    b->list = x;
    x->started = pthread_create(&x->thread, NULL, runner_main, x) == 0;
    if (!x->started) {
        x->status = "failed";
        x->failed_at = now_s();
        add_error(&x->errors, 0, "server_error", "cannot start the batch's thread");
    }
    *obj = batch_object(x);
    pthread_mutex_unlock(&b->mu);
    return AERO_OK;
}

// The batch named id (the caller holds the lock).
static batch *find(aero_batches *b, const char *id) {
    for (batch *x = b->list; id && x; x = x->next)
        if (!strcmp(x->id, id)) return x;
    return NULL;
}

json_t *aero_batches_get(aero_batches *b, const char *id) {
    pthread_mutex_lock(&b->mu);
    batch *x = find(b, id);
    json_t *o = x ? batch_object(x) : NULL;
    pthread_mutex_unlock(&b->mu);
    return o;
}

json_t *aero_batches_list(aero_batches *b, const char *after, int limit) {
    json_t *data = json_array();
    if (limit < 1 || limit > 100) limit = 20;
    pthread_mutex_lock(&b->mu);
    batch *x = b->list;
    if (after) {
        batch *a = find(b, after);
        x = a ? a->next : NULL;
    }
    for (; x && (int)json_array_size(data) < limit; x = x->next) json_array_append_new(data, batch_object(x));
    bool more = x != NULL;
    pthread_mutex_unlock(&b->mu);
    size_t n = json_array_size(data);
    json_t *first = n ? json_object_get(json_array_get(data, 0), "id") : json_null();
    json_t *last = n ? json_object_get(json_array_get(data, n - 1), "id") : json_null();
    return json_pack("{s:s, s:o, s:O, s:O, s:b}", "object", "list", "data", data, "first_id", first, "last_id", last,
                     "has_more", more);
}

json_t *aero_batches_cancel(aero_batches *b, const char *id) {
    pthread_mutex_lock(&b->mu);
    batch *x = find(b, id);
    json_t *o = NULL;
    if (x) {
        if (!strcmp(x->status, "validating") || !strcmp(x->status, "in_progress")) {
            atomic_store(&x->cancel, true);
            x->status = "cancelling";
            x->cancelling_at = now_s();
        }
        o = batch_object(x);
    }
    pthread_mutex_unlock(&b->mu);
    return o;
}
