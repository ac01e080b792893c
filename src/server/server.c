// HTTP plumbing on libmicrohttpd: one thread per connection (a blocked reader never stalls another client),
// bodies gathered under a size limit, API-key check, CORS, JSON and error responses, the loading state, the
// request log, and the server's start/load/stop life cycle.
#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "internal.h"

// Defaults that match llama.cpp's server where it has the same option.
void aero_server_params_default(aero_server_params *p) {
    memset(p, 0, sizeof *p);
    p->host = "127.0.0.1";
    p->port = 8080;
    p->parallel = 4;
    p->max_queue = 64;
    p->max_body = 8u << 20;
    p->timeout_s = 600;
    p->n_batch = 512;
    aero_sampler_params_default(&p->defaults);
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
        snprintf(r->method, sizeof r->method, "%s", method);
        snprintf(r->path, sizeof r->path, "%s", url);
        *con_cls = r;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        // A body far beyond the limit is refused before it is read; one near it is drained, then refused,
        // so the client reliably sees the 413.
        if (cl && strtoull(cl, NULL, 10) > (unsigned long long)s->p.max_body * 16 + (64u << 20)) {
            char msg[160];
            snprintf(msg, sizeof msg, "request body is %s bytes; the limit is %zu bytes", cl, s->p.max_body);
            return aero_http_error(r, 413, msg, NULL, "request_too_large");
        }
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (r->too_large || r->body.len + n > s->p.max_body) {
            r->too_large = true;
            aero_buf_free(&r->body);
            return MHD_YES;
        }
        if (!aero_buf_append(&r->body, upload, n)) return MHD_NO;
        return MHD_YES;
    }
    if (r->status) return MHD_YES; // already answered
    if (r->too_large) {
        char msg[128];
        snprintf(msg, sizeof msg, "request body exceeds the limit of %zu bytes", s->p.max_body);
        return aero_http_error(r, 413, msg, NULL, "request_too_large");
    }
    if (!strcmp(method, "OPTIONS")) {
        struct MHD_Response *resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
        if (!resp) return MHD_NO;
        aero_http_common_headers(s, resp);
        MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        MHD_add_response_header(resp, "Access-Control-Allow-Headers", "Authorization, Content-Type");
        MHD_add_response_header(resp, "Access-Control-Max-Age", "86400");
        enum MHD_Result ret = MHD_queue_response(conn, 204, resp);
        MHD_destroy_response(resp);
        aero_http_status(r, 204);
        return ret;
    }
    bool open_path = !strcmp(url, "/health") || !strcmp(url, "/v1/health") || !strcmp(url, "/metrics");
    if (!open_path && !authorized(r))
        return aero_http_error(r, 401, "Invalid or missing API key: send 'Authorization: Bearer <key>'", NULL,
                               "invalid_api_key");
    (void)version;
    return aero_api_handle(r, url);
}

// Frees a request once its response is done or its connection died; a generation still running is cancelled
// so its sequence is freed at the next step.
static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    aero_server *s = cls;
    aero_http_req *r = *con_cls;
    (void)conn;
    if (!r) return;
    *con_cls = NULL;
    bool broken = toe != MHD_REQUEST_TERMINATED_COMPLETED_OK;
    if (r->gen) {
        if (!r->finished || broken) {
            aero_gen_cancel(r->gen);
            if (s->sched) aero_sched_poke(s->sched);
        }
        aero_gen_unref(r->gen);
    }
    if (r->status) {
        bool gen_path = strstr(r->path, "completions") != NULL;
        if (!s->p.quiet && (gen_path || r->status >= 400)) {
            char extra[96] = "";
            if (r->n_prompt)
                snprintf(extra, sizeof extra, " prompt=%d gen=%d finish=%s", r->n_prompt, r->n_gen,
                         r->finish_name ? r->finish_name : "none");
            aero_server_log(s, "%s %s %d %.3fs%s%s", r->method, r->path, r->status, aero_now() - r->t0, extra,
                            broken ? " (connection closed early)" : "");
        }
    }
    aero_buf_free(&r->body);
    free(r->echo);
    aero_buf_free(&r->out);
    free(r);
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
    struct sockaddr_storage ss;
    bool v6 = false;
    aero_status st = resolve(p->host ? p->host : "127.0.0.1", p->port, &ss, &v6, err);
    if (st) goto fail;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
                     MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
    s->daemon = MHD_start_daemon(flags, (uint16_t)p->port, NULL, NULL, on_request, s,
                                 MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(p->timeout_s > 0 ? p->timeout_s : 0),
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned)1024,
                                 MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(128 * 1024),
                                 MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1,
                                 MHD_OPTION_END);
    if (!s->daemon) {
        st = aero_fail(err, AERO_ERR_IO, "cannot listen on %s:%d (address in use or not permitted?)",
                       p->host ? p->host : "127.0.0.1", p->port);
        goto fail;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : p->port;
    *out = s;
    return AERO_OK;
fail:
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

// Ends generations, then joins the connection threads, then frees the model.
void aero_server_stop(aero_server *s) {
    if (!s) return;
    int was = atomic_exchange(&s->state, 2);
    if (s->sched) aero_sched_shutdown(s->sched); // running requests end now, new ones are refused
    MHD_stop_daemon(s->daemon);                  // joins every connection thread
    aero_sched_free(s->sched);
    if (was == 1 || s->model.model) aero_srv_model_close(&s->model);
    aero_metrics_destroy(&s->metrics);
    pthread_mutex_destroy(&s->log_mu);
    free(s);
}
