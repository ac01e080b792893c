// The OpenAI-compatible HTTP server behind `aerollm serve`: /v1/models, /v1/completions, /v1/chat/completions
// (streamed as Server-Sent Events), /health, /metrics, /tokenize, /detokenize. It listens before the model is
// loaded (/health answers 503 until then) and serves many clients from one weight stream through the
// continuous-batching scheduler.
#ifndef AERO_SERVER_H
#define AERO_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "../core/status.h"
#include "../model/model.h"
#include "../sample/sample.h"

typedef struct {
    const char *host;            // default "127.0.0.1"
    int port;                    // default 8080; 0 picks a free port (see aero_server_port)
    int parallel;                // sequences generated at once (default 4)
    int max_queue;               // requests waiting for a sequence before 503 (default 64)
    size_t max_body;             // request body limit in bytes before 413 (default 8 MiB)
    const char *api_key;         // NULL: no authentication; else "Authorization: Bearer KEY" required
    const char *alias;           // model id in the API (default: the model file's name)
    int timeout_s;               // idle connection timeout in seconds (default 600)
    const char *chat_template_file; // overrides the model's chat template
    aero_model_params model;     // path, memory budget, threads, prefetch
    int n_ctx;                   // KV capacity per sequence (<= 0: the model's, at most 4096)
    int n_batch;                 // most tokens per forward pass (default 512)
    bool kv_f32;
    aero_kv_type type_k, type_v; // KV cache types (AERO_KV_DEFAULT: F16, or F32 with kv_f32); counted inside --mem
    int kv_recent;               // --kv-recent N: F16 copies of each query's last N positions (quantized cache)
    aero_sampler_params defaults; // sampling for fields a request leaves out
    bool quiet;                  // no per-request log lines
} aero_server_params;

typedef struct aero_server aero_server;

void aero_server_params_default(aero_server_params *p);
// Starts listening (health: loading). The parameters' strings must outlive the server.
aero_status aero_server_start(aero_server **out, const aero_server_params *p, aero_error *err);
// The port actually bound (useful with port 0).
int aero_server_port(const aero_server *s);
// Loads the model, creates the context and starts the scheduler; afterwards /health answers 200.
aero_status aero_server_load(aero_server *s, aero_error *err);
// Stops accepting, ends running generations, frees everything.
void aero_server_stop(aero_server *s);

#endif
