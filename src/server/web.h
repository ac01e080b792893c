// The browser side of the server: the chat page built into the binary (web/, embedded at build time) and the
// live view's event stream of the engine's state (GET /v1/engine/events).
#ifndef AERO_SERVER_WEB_H
#define AERO_SERVER_WEB_H

#include <stdbool.h>

#include "internal.h"

// Whether url is one of the page's static files ("/", "/index.html", "/web/..."): served without the API key,
// so that the page can load and then ask for it.
bool aero_web_public(const char *url);
// Answers GET of a static file of the page (404 for an unknown one).
enum MHD_Result aero_web_asset(aero_http_req *r, const char *url);
// Answers GET /v1/engine/events: server-sent events, one JSON sample of the engine's state per interval
// (?interval_ms=, default 250), until the client leaves or the server stops.
enum MHD_Result aero_web_events(aero_http_req *r);
// Waits up to timeout_s for the open event streams to end (they end on their own once the server stops
// serving), so that the daemon's stop does not cut them mid-stream.
void aero_web_drain(aero_server *s, double timeout_s);

#endif
