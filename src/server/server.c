// HTTP plumbing on libmicrohttpd: one thread per connection (a blocked reader never stalls another client),
// bodies gathered under a size limit, API-key check, CORS, JSON and error responses, the loading state, the
// request log, the per-request receive deadline, and the server's start/load/stop life cycle (a stop drains
// the requests in flight before it ends them).
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "web.h"

// One open connection as the request deadline sees it: while a request is still being received (headers or
// body), it must be complete within --timeout of t0, however slowly its bytes trickle in.
struct aero_conn {
    struct aero_conn *prev, *next;
    int fd;
    double t0;
    bool receiving;
    bool cut;
};

// Defaults that match llama.cpp's server where it has the same option.
void aero_server_params_default(aero_server_params *p) {
    memset(p, 0, sizeof *p);
    p->host = "127.0.0.1";
    p->port = 8080;
    p->parallel = 4;
    p->max_queue = 64;
    p->max_body = 8u << 20;
    p->max_file = 256u << 20;
    p->timeout_s = 600;
    p->shutdown_timeout_s = 30;
    p->n_batch = 512;
    aero_sampler_params_default(&p->defaults);
    aero_spec_params_default(&p->spec);
}

// Timestamped log lines on stderr, one writer at a time.
void aero_server_log(aero_server *s, const char *fmt, ...) {
    char ts[32];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(ts, sizeof ts, "%H:%M:%S", &tm);
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&s->log_mu);
    fprintf(stderr, "[%s] ", ts);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    fflush(stderr);
    pthread_mutex_unlock(&s->log_mu);
    va_end(ap);
}

// CORS and the Keep-Alive timeout on every response (see internal.h).
void aero_http_common_headers(aero_server *s, struct MHD_Response *resp) {
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", "*");
    if (s->p.timeout_s > 0) {
        char ka[32];
        snprintf(ka, sizeof ka, "timeout=%d", s->p.timeout_s);
        MHD_add_response_header(resp, "Keep-Alive", ka);
    }
}

// Counted when decided, not when the connection closes, so /metrics never lags behind a response.
void aero_http_status(aero_http_req *r, int status) {
    r->status = status;
    aero_metrics_request(&r->srv->metrics, status);
}

// Queues a whole response with the common headers.
static enum MHD_Result queue(aero_http_req *r, int status, char *body, size_t len, const char *type) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    aero_http_common_headers(r->srv, resp);
    if (status == 401) MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (status == 405) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, POST, OPTIONS");
    // A full queue drains in seconds; a loading or stopping server takes longer to be worth retrying.
    if (status == 503)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, atomic_load(&r->srv->state) == 1 ? "1" : "5");
    if (atomic_load(&r->srv->state) == 2) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    aero_http_status(r, status);
    return ret;
}

// JSON responses; an encoding failure still answers (500) rather than dropping the connection.
enum MHD_Result aero_http_json(aero_http_req *r, int status, json_t *j) {
    size_t len = 0;
    char *body = j ? aero_oai_dump(j, &len) : NULL;
    json_decref(j);
    if (!body) {
        static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,"
                                  "\"code\":null}}\n";
        body = strdup(oom);
        if (!body) return MHD_NO;
        len = strlen(body);
        status = 500;
    }
    return queue(r, status, body, len, "application/json");
}

enum MHD_Result aero_http_error(aero_http_req *r, int status, const char *message, const char *param,
                                const char *code) {
    return aero_http_json(r, status, aero_oai_error(status, message, param, code));
}

// A peer that closed its side shows POLLRDHUP without anything being written to it.
bool aero_http_client_gone(const aero_http_req *r) {
    if (r->fd < 0) return false;
    struct pollfd p = {.fd = r->fd, .events = POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return false;
    return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

// Constant-time comparison so the key cannot be guessed byte by byte from response times.
static bool key_equal(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < la; i++) diff |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
    return diff == 0;
}

// --api-key: OpenAI clients send 'Authorization: Bearer KEY'.
static bool authorized(aero_http_req *r) {
    const char *key = r->srv->p.api_key;
    if (!key || !*key) return true;
    const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return false;
    h += 7;
    while (*h == ' ') h++;
    return key_equal(h, key);
}

// File uploads (POST /v1/files) may be far larger than a request body (--max-file-size against --max-body).
static size_t body_limit(const aero_server *s, const char *method, const char *url) {
    return !strcmp(method, "POST") && !strcmp(url, "/v1/files") ? s->p.max_file : s->p.max_body;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    aero_server *s = cls;
    aero_http_req *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        r->srv = s;
        r->conn = conn;
        r->t0 = aero_now();
        r->fd = -1;
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci) r->fd = ci->connect_fd;
        ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        if (ci) r->sock = ci->socket_context;
        snprintf(r->method, sizeof r->method, "%s", method);
        snprintf(r->path, sizeof r->path, "%s", url);
        *con_cls = r;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        // A body far beyond the limit is refused before it is read; one near it is drained, then refused,
        // so the client reliably sees the 413.
        if (cl && strtoull(cl, NULL, 10) > (unsigned long long)body_limit(s, method, url) * 16 + (64u << 20)) {
            char msg[160];
            snprintf(msg, sizeof msg, "request body is %s bytes; the limit is %zu bytes", cl, body_limit(s, method, url));
            return aero_http_error(r, 413, msg, NULL, "request_too_large");
        }
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (r->too_large || r->body.len + n > body_limit(s, method, url)) {
            r->too_large = true;
            aero_buf_free(&r->body);
            return MHD_YES;
        }
        if (!aero_buf_append(&r->body, upload, n)) return MHD_NO;
        return MHD_YES;
    }
    if (r->status) return MHD_YES; // already answered
    if (r->sock) {                 // the whole request is in: from here on the model's time is not the client's
        pthread_mutex_lock(&s->conn_mu);
        r->sock->receiving = false;
        pthread_mutex_unlock(&s->conn_mu);
    }
    if (r->too_large) {
        char msg[128];
        snprintf(msg, sizeof msg, "request body exceeds the limit of %zu bytes", body_limit(s, method, url));
        return aero_http_error(r, 413, msg, NULL, "request_too_large");
    }
    if (!strcmp(method, "OPTIONS")) {
        struct MHD_Response *resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
        if (!resp) return MHD_NO;
        aero_http_common_headers(s, resp);
        MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
        MHD_add_response_header(resp, "Access-Control-Allow-Headers", "Authorization, Content-Type");
        MHD_add_response_header(resp, "Access-Control-Max-Age", "86400");
        enum MHD_Result ret = MHD_queue_response(conn, 204, resp);
        MHD_destroy_response(resp);
        aero_http_status(r, 204);
        return ret;
    }
    bool open_path = !strcmp(url, "/health") || !strcmp(url, "/v1/health") || !strcmp(url, "/metrics") ||
                     ((!strcmp(method, "GET") || !strcmp(method, "HEAD")) && aero_web_public(url));
    if (!open_path && !authorized(r))
        return aero_http_error(r, 401, "Invalid or missing API key: send 'Authorization: Bearer <key>'", NULL,
                               "invalid_api_key");
    (void)version;
    return aero_api_handle(r, url);
}

// Frees a request once its response is done or its connection died; a generation still running is cancelled
// so its sequence is freed at the next step.
static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
    aero_server *s = cls;
    aero_http_req *r = *con_cls;
    (void)conn;
    if (!r) return;
    *con_cls = NULL;
    bool broken = toe != MHD_REQUEST_TERMINATED_COMPLETED_OK;
    if (r->sock) { // the next request on this connection has its own deadline, counted from now
        pthread_mutex_lock(&s->conn_mu);
        r->sock->receiving = true;
        r->sock->t0 = aero_now();
        pthread_mutex_unlock(&s->conn_mu);
    }
    if (r->in_active) {
        pthread_mutex_lock(&s->active_mu);
        if (r->act_prev) r->act_prev->act_next = r->act_next;
        else s->active = r->act_next;
        if (r->act_next) r->act_next->act_prev = r->act_prev;
        s->n_active--;
        pthread_cond_broadcast(&s->active_cv);
        pthread_mutex_unlock(&s->active_mu);
    }
    if (r->gen) {
        if (!r->finished || broken) {
            // What was generated before the client left still counts in the log line.
            aero_gen_delta d;
            aero_gen_next(r->gen, &r->cur, 0, &d);
            r->n_gen = d.n_gen;
            if (!r->finish_name) r->finish_name = "cancelled";
            aero_gen_delta_free(&d);
            aero_gen_cancel(r->gen);
            if (s->sched) aero_sched_poke(s->sched);
        }
    }
    char mask_note[64] = "";
    if (r->constraint) {
        // The scheduler's sampler uses the constraint until the generation is done (a cancelled one ends at
        // the next step); only then can it go. Past a minute, leaking it beats a use after free.
        bool done = !r->gen;
        for (int i = 0; i < 300 && !done; i++) {
            aero_gen_delta d;
            aero_gen_cursor peek = {.text = SIZE_MAX, .lp = INT32_MAX};
            aero_gen_next(r->gen, &peek, 200, &d);
            done = d.t_end != 0;
            aero_gen_delta_free(&d);
        }
        if (done) {
            aero_grammar_stats gs;
            aero_grammar_constraint_stats(r->constraint, &gs);
            if (gs.masks)
                snprintf(mask_note, sizeof mask_note, " mask=%.3fms/token", gs.seconds * 1e3 / (double)gs.masks);
            aero_grammar_constraint_free(r->constraint);
            aero_grammar_free(r->grammar);
        }
    }
    if (r->gen) aero_gen_unref(r->gen);
    if (r->status) {
        bool gen_path = strstr(r->path, "completions") != NULL;
        if (!s->p.quiet && (gen_path || r->status >= 400)) {
            char extra[160] = "";
            if (r->n_prompt)
                snprintf(extra, sizeof extra, " prompt=%d gen=%d finish=%s", r->n_prompt, r->n_gen,
                         r->finish_name ? r->finish_name : "none");
            if (r->n_prompt && r->n_drafted > 0) // how much of its drafts the model kept
                snprintf(extra + strlen(extra), sizeof extra - strlen(extra), " draft=%d/%d", r->n_accepted,
                         r->n_drafted);
            aero_server_log(s, "%s %s %d %.3fs%s%s%s", r->method, r->path, r->status, aero_now() - r->t0, extra,
                            mask_note, broken ? " (connection closed early)" : "");
        }
    }
    aero_buf_free(&r->body);
    free(r->echo);
    aero_buf_free(&r->out);
    aero_buf_free(&r->tacc);
    json_decref(r->tools);
    free(r);
}

// Requests with a generation are listed for /slots and counted for the shutdown drain.
void aero_http_active_add(aero_http_req *r) {
    aero_server *s = r->srv;
    pthread_mutex_lock(&s->active_mu);
    r->act_prev = NULL;
    r->act_next = s->active;
    if (s->active) s->active->act_prev = r;
    s->active = r;
    r->in_active = true;
    s->n_active++;
    pthread_mutex_unlock(&s->active_mu);
}

// Tracks each connection from accept to close so the watchdog can find those that take too long to send a
// request; the entry is unlinked before MHD closes the socket, so the watchdog never touches a reused fd.
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
    aero_server *s = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        struct aero_conn *c = calloc(1, sizeof *c);
        *socket_context = c;
        if (!c) return;
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        c->fd = ci ? ci->connect_fd : -1;
        c->t0 = aero_now();
        c->receiving = true;
        pthread_mutex_lock(&s->conn_mu);
        c->next = s->conns;
        if (s->conns) s->conns->prev = c;
        s->conns = c;
        pthread_mutex_unlock(&s->conn_mu);
        return;
    }
    struct aero_conn *c = *socket_context;
    if (!c) return;
    pthread_mutex_lock(&s->conn_mu);
    if (c->prev) c->prev->next = c->next;
    else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    pthread_mutex_unlock(&s->conn_mu);
    free(c);
    *socket_context = NULL;
}

// MHD's timeout restarts with every byte, so a client sending one byte a second would hold a connection
// (and its thread) forever; this cuts any connection whose request is not fully received within --timeout.
static void *watchdog_main(void *arg) {
    aero_server *s = arg;
    pthread_mutex_lock(&s->conn_mu);
    while (!s->watchdog_stop) {
        double now = aero_now();
        for (struct aero_conn *c = s->conns; c; c = c->next) {
            if (!c->receiving || c->cut || c->fd < 0 || now - c->t0 <= s->p.timeout_s) continue;
            c->cut = true; // shutdown wakes the connection's thread, which then closes it
            shutdown(c->fd, SHUT_RDWR);
            if (!s->p.quiet) {
                pthread_mutex_unlock(&s->conn_mu);
                aero_server_log(s, "connection closed: request not received within --timeout %ds", s->p.timeout_s);
                pthread_mutex_lock(&s->conn_mu);
                break; // the list may have changed meanwhile; look again at the next tick
            }
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->conn_cv, &s->conn_mu, &ts);
    }
    pthread_mutex_unlock(&s->conn_mu);
    return NULL;
}

// Resolves --host into a socket address (IPv4 or IPv6).
static aero_status resolve(const char *host, int port, struct sockaddr_storage *ss, bool *v6, aero_error *err) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int rc = getaddrinfo(host, ps, &hints, &res);
    if (rc || !res) return aero_fail(err, AERO_ERR_INVALID, "--host '%s': %s", host, gai_strerror(rc));
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *v6 = res->ai_family == AF_INET6;
    freeaddrinfo(res);
    return AERO_OK;
}

// Binds the listening socket ourselves: without SO_REUSEPORT a second server on the same port fails here
// with a message that says so, instead of starting and splitting the requests with the first one.
// SO_REUSEADDR only lets a restarted server take over a port whose old connections linger in TIME_WAIT.
static aero_status listen_on(const char *host, int port, int *fd_out, aero_error *err) {
    *fd_out = -1;
    struct sockaddr_storage ss;
    bool v6 = false;
    aero_status st = resolve(host, port, &ss, &v6, err);
    if (st) return st;
    int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return aero_fail(err, AERO_ERR_IO, "cannot create a socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    socklen_t sl = v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (bind(fd, (struct sockaddr *)&ss, sl) != 0) {
        int e = errno;
        close(fd);
        if (e == EADDRINUSE)
            return aero_fail(err, AERO_ERR_IO, "port %d on %s is already in use (another server is listening there)",
                             port, host);
        return aero_fail(err, AERO_ERR_IO, "cannot listen on %s:%d: %s", host, port, strerror(e));
    }
    if (listen(fd, 512) != 0) {
        int e = errno;
        close(fd);
        return aero_fail(err, AERO_ERR_IO, "cannot listen on %s:%d: %s", host, port, strerror(e));
    }
    *fd_out = fd;
    return AERO_OK;
}

// Listens before the model loads so /health can say 503 meanwhile.
aero_status aero_server_start(aero_server **out, const aero_server_params *p, aero_error *err) {
    *out = NULL;
    if (p->parallel < 1 || p->parallel > 256)
        return aero_fail(err, AERO_ERR_INVALID, "--parallel must be between 1 and 256, not %d", p->parallel);
    if (p->port < 0 || p->port > 65535)
        return aero_fail(err, AERO_ERR_INVALID, "--port must be between 0 and 65535, not %d", p->port);
    aero_server *s = calloc(1, sizeof *s);
    if (!s) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    s->p = *p;
    pthread_mutex_init(&s->log_mu, NULL);
    aero_metrics_init(&s->metrics);
    atomic_init(&s->state, 0);
    atomic_init(&s->next_id, 1);
    const char *name = p->alias;
    if (!name) {
        const char *path = p->model.path ? p->model.path : "model";
        const char *slash = strrchr(path, '/');
        name = slash ? slash + 1 : path;
    }
    snprintf(s->model_id, sizeof s->model_id, "%s", name);
    s->t_created = (long long)time(NULL);
    pthread_mutex_init(&s->conn_mu, NULL);
    pthread_cond_init(&s->conn_cv, NULL);
    pthread_mutex_init(&s->active_mu, NULL);
    pthread_cond_init(&s->active_cv, NULL);
    pthread_mutex_init(&s->gvocab_mu, NULL);
    const char *host = p->host ? p->host : "127.0.0.1";
    int lfd = -1;
    aero_status st = listen_on(host, p->port, &lfd, err);
    if (st) goto fail;
    // ITC lets aero_server_stop quiesce the daemon (stop accepting) while requests in flight finish.
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
                     MHD_USE_ERROR_LOG | MHD_USE_ITC;
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)lfd, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, s, MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)(p->timeout_s > 0 ? p->timeout_s : 0), MHD_OPTION_CONNECTION_LIMIT, (unsigned)1024,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(128 * 1024), MHD_OPTION_END);
    if (!s->daemon) {
        close(lfd);
        st = aero_fail(err, AERO_ERR_IO, "cannot start the HTTP server on %s:%d", host, p->port);
        goto fail;
    }
    struct sockaddr_storage bound;
    socklen_t bl = sizeof bound;
    s->port = p->port;
    if (getsockname(lfd, (struct sockaddr *)&bound, &bl) == 0)
        s->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                    : ((struct sockaddr_in *)&bound)->sin_port);
    aero_batches_target bt = {.host = host, .port = s->port, .api_key = p->api_key, .parallel = p->parallel,
                              .max_file = p->max_file};
    if ((st = aero_files_open(&s->files, p->files_dir, err)) ||
        (st = aero_batches_new(&s->batches, s->files, &bt, err))) {
        MHD_stop_daemon(s->daemon);
        aero_files_close(s->files);
        goto fail;
    }
    if (p->timeout_s > 0) s->watchdog_on = pthread_create(&s->watchdog, NULL, watchdog_main, s) == 0;
    *out = s;
    return AERO_OK;
fail:
    pthread_mutex_destroy(&s->gvocab_mu);
    pthread_cond_destroy(&s->active_cv);
    pthread_mutex_destroy(&s->active_mu);
    pthread_cond_destroy(&s->conn_cv);
    pthread_mutex_destroy(&s->conn_mu);
    aero_metrics_destroy(&s->metrics);
    pthread_mutex_destroy(&s->log_mu);
    free(s);
    return st;
}

int aero_server_port(const aero_server *s) { return s->port; }

// The slow part (model, KV cache, scheduler), run off the main thread by `serve`.
aero_status aero_server_load(aero_server *s, aero_error *err) {
    aero_status st = aero_srv_model_open(&s->model, &s->p, err);
    if (st) {
        atomic_store(&s->state, -1);
        return st;
    }
    st = aero_sched_new(&s->sched, &s->model.backend, s->p.max_queue, &s->metrics, err);
    if (st) {
        aero_srv_model_close(&s->model);
        atomic_store(&s->state, -1);
        return st;
    }
    if (s->model.note[0]) aero_server_log(s, "%s", s->model.note);
    atomic_store(&s->state, 1);
    return AERO_OK;
}

// Waits until no request holds a generation or the monotonic deadline passes; true when none is left.
static bool wait_active(aero_server *s, double deadline) {
    pthread_mutex_lock(&s->active_mu);
    while (s->n_active > 0 && aero_now() < deadline) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->active_cv, &s->active_mu, &ts);
    }
    bool idle = s->n_active == 0;
    pthread_mutex_unlock(&s->active_mu);
    return idle;
}

// A clean stop: stop accepting, let requests in flight finish for up to --shutdown-timeout, then end the rest
// with an error (streams still get their error event and [DONE], a complete body) before the connection
// threads are joined and the model is freed.
void aero_server_stop(aero_server *s) {
    if (!s) return;
    aero_batches_stop(s->batches);           // batches start no more requests; those running finish below
    int was = atomic_exchange(&s->state, 2); // new requests on open connections now get 503
    MHD_socket lfd = MHD_quiesce_daemon(s->daemon);
    if (lfd != MHD_INVALID_SOCKET) close(lfd);
    if (was == 1 && s->sched) {
        pthread_mutex_lock(&s->active_mu);
        int n = s->n_active;
        pthread_mutex_unlock(&s->active_mu);
        if (n && !s->p.quiet)
            aero_server_log(s, "waiting up to %ds for %d request%s in flight", s->p.shutdown_timeout_s, n,
                            n == 1 ? "" : "s");
        bool idle = wait_active(s, aero_now() + (s->p.shutdown_timeout_s > 0 ? s->p.shutdown_timeout_s : 0));
        if (!idle && !s->p.quiet) aero_server_log(s, "--shutdown-timeout reached: ending the requests left");
    }
    if (s->sched) aero_sched_shutdown(s->sched); // what still runs ends now, with an error
    wait_active(s, aero_now() + 5.0);            // their threads write the last events and [DONE]
    aero_web_drain(s, 2.0);                      // live views send their last event
    MHD_stop_daemon(s->daemon);                  // joins every connection thread
    aero_batches_free(s->batches);               // their runners saw their last answers
    aero_files_close(s->files);
    if (s->watchdog_on) {
        pthread_mutex_lock(&s->conn_mu);
        s->watchdog_stop = true;
        pthread_cond_broadcast(&s->conn_cv);
        pthread_mutex_unlock(&s->conn_mu);
        pthread_join(s->watchdog, NULL);
    }
    aero_sched_free(s->sched);
    if (was == 1 || s->model.model) aero_srv_model_close(&s->model);
    aero_metrics_destroy(&s->metrics);
    aero_grammar_vocab_free(s->gvocab);
    pthread_mutex_destroy(&s->gvocab_mu);
    pthread_cond_destroy(&s->active_cv);
    pthread_mutex_destroy(&s->active_mu);
    pthread_cond_destroy(&s->conn_cv);
    pthread_mutex_destroy(&s->conn_mu);
    pthread_mutex_destroy(&s->log_mu);
    free(s);
}
