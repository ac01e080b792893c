// An HTTP/1.1 client for the server's own port: a batch runs each of its requests through the same endpoint a
// client would call, so its answers are the server's answers, byte for byte, and it shares the scheduler's
// batches with live traffic.
#ifndef AERO_SERVER_LOOPBACK_H
#define AERO_SERVER_LOOPBACK_H

#include <stddef.h>

#include "../core/buf.h"
#include "../core/status.h"

// POSTs a JSON body to path on host:port (a wildcard listen address is reached through loopback) and reads the
// whole answer: *status its HTTP status, resp its body (Content-Length or chunked). api_key may be NULL.
aero_status aero_loopback_post(const char *host, int port, const char *api_key, const char *path, const char *body,
                               size_t len, int *status, aero_buf *resp, aero_error *err);
// Decodes a chunked transfer-encoded body in place; false when it is malformed. Exposed for the tests.
aero_status aero_http_dechunk(char *body, size_t *len, aero_error *err);

#endif
