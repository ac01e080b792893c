// Pieces shared by the server's files: the model adapter (engine.c) and the server state (server.c, api.c).
#ifndef AERO_SERVER_INTERNAL_H
#define AERO_SERVER_INTERNAL_H

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>

#include "../chat/chat.h"
#include "../core/buf.h"
#include "../tokenizer/tokenizer.h"
#include "batches.h"
#include "files.h"
#include "metrics.h"
#include "request.h"
#include "sched.h"
#include "server.h"
#include "tools.h"

// The loaded model seen through what the server needs: the scheduler's aero_sched_backend plus prompt building.
typedef struct {
    aero_model *model;
    aero_ctx *ctx;
    const aero_tokenizer *tok;
    aero_chat_template *tmpl; // the model's (or --chat-template-file's) template; NULL: ChatML fallback
    const char *tmpl_name;    // "model", "file" or "chatml fallback"
    char note[600];           // why the model's template is not used, when it is not
    char *tmpl_src;           // the template's text (NULL: the ChatML fallback)
    aero_tool_style tools;    // the tool-call format its text shows (AERO_TOOLS_UNSUPPORTED: none)
    pthread_mutex_t render_mu;
    bool render_mu_ok;
    char bos_str[64], eos_str[64];
    aero_sched_backend backend; // the scheduler's view: forward pass, KV drop, end-of-generation and text
    aero_model *draft;          // --draft MODEL (resident), or NULL
    aero_spec *spec_proto;      // --draft-head: the decoder that loaded the head; every request's shares its weights
    uint64_t head_bytes;        // --draft-head: its weights and every decoder's cells and scratch, inside --mem
    bool spec_on;               // --draft or --draft-head given: requests speculate (draft model, head or n-grams)
    aero_spec_params spec;      // drafting settings
    char spec_desc[160];        // what /props and the start line say of the drafter
} aero_srv_model;

aero_status aero_srv_model_open(aero_srv_model *x, const aero_server_params *p, aero_error *err);
void aero_srv_model_close(aero_srv_model *x);
// Renders chat messages into the prompt text (malloc'ed).
aero_status aero_srv_model_render(aero_srv_model *x, const json_t *messages, const json_t *tools, char **out,
                                  size_t *len, aero_error *err);
// Tokenizes a prompt; add_special adds BOS unless the text already starts with the BOS string.
aero_status aero_srv_model_tokenize(aero_srv_model *x, const char *text, size_t len, bool add_special,
                                    bool parse_special, int32_t **ids, size_t *n, aero_error *err);
// Bytes of one token for logprobs and /tokenize pieces (aero_oai_piece_fn).
size_t aero_srv_model_piece(void *x, int32_t id, char *buf, size_t cap);

struct aero_server {
    aero_server_params p;
    char model_id[256];
    struct MHD_Daemon *daemon;
    int port;
    atomic_int state;     // 0 loading, 1 ready, -1 load failed
    aero_srv_model model; // the loaded model and its context, tokenizer and chat template
    aero_sched *sched;
    aero_metrics metrics;
    atomic_ullong next_id;
    pthread_mutex_t log_mu;
    long long t_created; // unix seconds at start: /v1/models' "created" stays put
    // Open connections and the watchdog that enforces --timeout on receiving each whole request (server.c).
    struct aero_conn *conns;
    pthread_mutex_t conn_mu;
    pthread_cond_t conn_cv;
    pthread_t watchdog;
    bool watchdog_on, watchdog_stop;
    // Requests holding a generation: /slots reads them, the shutdown drain waits for them.
    struct aero_http_req *active;
    int n_active;
    pthread_mutex_t active_mu;
    pthread_cond_t active_cv;
    // Token bytes for constrained output, built on the first request that needs them.
    aero_grammar_vocab *gvocab;
    pthread_mutex_t gvocab_mu;
    atomic_int n_viewers; // live-view event streams open (web.c): the stop lets them end before closing sockets
    aero_files *files;     // /v1/files
    aero_batches *batches; // /v1/batches: jobs sent through this server's own port
};

// One HTTP request in flight.
typedef struct aero_http_req {
    aero_server *srv;
    struct MHD_Connection *conn;
    struct aero_conn *sock;                    // its connection's deadline entry (NULL if unknown)
    struct aero_http_req *act_prev, *act_next; // in srv->active while it holds a generation
    bool in_active;
    int fd;
    char method[8];
    aero_buf body; // the request body as it arrives
    bool too_large;
    double t0;
    int status; // what was answered (for the log and metrics)
    // streamed generation
    aero_gen *gen;
    aero_gen_cursor cur;
    aero_oai_meta meta;
    char id[48];
    bool include_usage, logprobs, sent_head, finished;
    int top_logprobs;
    size_t text_sent; // for completions' text_offset
    char *echo;       // text to send before the output (completions echo)
    size_t echo_len;
    aero_buf out;   // formatted bytes not yet handed to MHD
    size_t out_off; // how much of out MHD has taken
    int n_prompt, n_gen;
    int n_drafted, n_accepted; // speculation (n_drafted -1: the request did not speculate), for the log line
    struct {                   // what /slots shows of the request
        aero_sampler_params sp;
        int max_tokens;
        bool stream, ignore_eos;
        unsigned long long task;
    } shown;
    const char *finish_name;
    char path[64];
    aero_grammar *grammar;               // response_format's grammar and the sampler's constraint over it:
    aero_sampler_constraint *constraint; // owned here, freed once the scheduler is done with the generation
    // tool calls: the format the output is parsed in (AERO_TOOLS_UNSUPPORTED: plain text), the request's tools,
    // and for a stream what was sent of the output: its text so far, content bytes, calls and argument bytes
    aero_tool_format tool_fmt;
    json_t *tools;
    bool parallel_tools;
    aero_buf tacc;
    size_t t_content_sent;
    int t_calls_sent;
    size_t t_args_sent[AERO_TOOL_MAX_CALLS];
    char t_ids[AERO_TOOL_MAX_CALLS][40];
    bool tool_called; // the output was tool calls (finish_reason "tool_calls")
} aero_http_req;

// Links a request that now holds a generation into srv->active (api.c calls it after submitting).
void aero_http_active_add(aero_http_req *r);
// Answers a request whose body is complete (api.c). Returns the MHD result.
enum MHD_Result aero_api_handle(aero_http_req *r, const char *url);
// Queues a JSON response (takes ownership of j) with the given status.
enum MHD_Result aero_http_json(aero_http_req *r, int status, json_t *j);
// Queues a 200 response built by a handler (common headers added, status logged) and lets go of it.
enum MHD_Result aero_http_answer_200(aero_http_req *r, struct MHD_Response *resp);
// Queues an OpenAI error response.
enum MHD_Result aero_http_error(aero_http_req *r, int status, const char *message, const char *param, const char *code);
// Headers every response carries: CORS for browser UIs, and Keep-Alive with the idle timeout so clients
// retire pooled connections before the server closes them (no request is written into a dying socket).
void aero_http_common_headers(aero_server *s, struct MHD_Response *resp);
// Records the status a request is answered with (and counts it in /metrics at once, so a client that reads
// /metrics right after its response already sees it).
void aero_http_status(aero_http_req *r, int status);
// True when the client closed its side of the connection.
bool aero_http_client_gone(const aero_http_req *r);
// One log line on stderr.
void aero_server_log(aero_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
