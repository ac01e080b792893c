// The loopback HTTP client (loopback.h).
#include "loopback.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

// Connects to host:port; a wildcard address (what a server listens on, not where a client connects) becomes
// the loopback address of its family.
static int connect_to(const char *host, int port, aero_error *err) {
    if (!host || !*host || !strcmp(host, "0.0.0.0")) host = "127.0.0.1";
    else if (!strcmp(host, "::") || !strcmp(host, "[::]")) host = "::1";
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int rc = getaddrinfo(host, ps, &hints, &ai);
    if (rc) {
        aero_fail(err, AERO_ERR_IO, "cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen)) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0) aero_fail(err, AERO_ERR_IO, "cannot connect to %s:%d: %s", host, port, strerror(errno));
    return fd;
}

static bool send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

aero_status aero_http_dechunk(char *body, size_t *len, aero_error *err) {
    size_t in = 0, out = 0, n = *len;
    for (;;) {
        size_t size = 0;
        int digits = 0;
        for (; in < n; in++, digits++) {
            char c = body[in];
            int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
            if (v < 0) break;
            if (size > ((size_t)1 << 40)) return aero_fail(err, AERO_ERR_FORMAT, "chunk size too large");
            size = size * 16 + (size_t)v;
        }
        if (!digits) return aero_fail(err, AERO_ERR_FORMAT, "malformed chunk size");
        const char *eol = memmem(body + in, n - in, "\r\n", 2); // chunk extensions are skipped
        if (!eol) return aero_fail(err, AERO_ERR_FORMAT, "chunk header never ends");
        in = (size_t)(eol - body) + 2;
        if (size == 0) break;
        if (size > n - in || n - in - size < 2 || body[in + size] != '\r' || body[in + size + 1] != '\n')
            return aero_fail(err, AERO_ERR_FORMAT, "chunk of %zu bytes overruns the body", size);
        memmove(body + out, body + in, size);
        out += size;
        in += size + 2;
    }
    *len = out;
    return AERO_OK;
}

aero_status aero_loopback_post(const char *host, int port, const char *api_key, const char *path, const char *body,
                               size_t len, int *status, aero_buf *resp, aero_error *err) {
    *status = 0;
    int fd = connect_to(host, port, err);
    if (fd < 0) return err->code;
    char head[1024];
    int hl = snprintf(head, sizeof head,
                      "POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n%s%s%s\r\n",
                      path, len, api_key ? "Authorization: Bearer " : "", api_key ? api_key : "", api_key ? "\r\n" : "");
    aero_buf raw = {0};
    aero_status st = AERO_OK;
    if (hl <= 0 || hl >= (int)sizeof head) st = aero_fail(err, AERO_ERR_INVALID, "request line too long");
    else if (!send_all(fd, head, (size_t)hl) || !send_all(fd, body, len))
        st = aero_fail(err, AERO_ERR_IO, "sending to the server: %s", strerror(errno));
    char chunk[16384];
    while (!st) {
        ssize_t r = recv(fd, chunk, sizeof chunk, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) st = aero_fail(err, AERO_ERR_IO, "reading the answer: %s", strerror(errno));
        if (r <= 0) break;
        if (!aero_buf_append(&raw, chunk, (size_t)r)) st = aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    }
    close(fd);
    const char *hend = st ? NULL : memmem(raw.p, raw.len, "\r\n\r\n", 4);
    if (!st && (!hend || raw.len < 12 || strncmp(raw.p, "HTTP/1.", 7)))
        st = aero_fail(err, AERO_ERR_FORMAT, "malformed HTTP answer from the server (%zu bytes)", raw.len);
    if (!st) {
        *status = atoi(raw.p + 9);
        size_t hlen = (size_t)(hend - raw.p);
        bool chunked = false;
        for (const char *h = raw.p; h < hend;) { // Transfer-Encoding: chunked
            const char *eol = memmem(h, (size_t)(hend - h) + 2, "\r\n", 2);
            if (!eol) break;
            if (!strncasecmp(h, "transfer-encoding:", 18) && memmem(h, (size_t)(eol - h), "chunked", 7)) chunked = true;
            h = eol + 2;
        }
        size_t blen = raw.len - hlen - 4;
        char *b = raw.p + hlen + 4;
        if (chunked && aero_http_dechunk(b, &blen, err)) st = err->code;
        else if (!aero_buf_append(resp, b, blen)) st = aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    }
    aero_buf_free(&raw);
    return st;
}
