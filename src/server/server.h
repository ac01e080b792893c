// The OpenAI-compatible HTTP server behind `aerollm serve`: /v1/models, /v1/completions, /v1/chat/completions
// (streamed as Server-Sent Events), /health, /metrics, /tokenize, /detokenize. It listens before the model is
// loaded (/health answers 503 until then) and serves many clients from one weight stream through the
// continuous-batching scheduler. Its entry points (aero_server_params, aero_server_start/load/port/stop) are
// public and declared in include/aerollm.h; this header is what the server's own files include.
#ifndef AERO_SERVER_H
#define AERO_SERVER_H

#include "../../include/aerollm.h"

#endif
