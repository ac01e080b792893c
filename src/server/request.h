// Parsing and validation of OpenAI request bodies (completions, chat completions, tokenize, detokenize) into
// plain C values. Every malformed field becomes AERO_ERR_INVALID with a message that names the field, and
// param says which one, so the HTTP layer can answer 400 in OpenAI's shape. Unknown fields are ignored.
#ifndef AERO_SERVER_REQUEST_H
#define AERO_SERVER_REQUEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"
#include "../sample/grammar.h"
#include "../sample/sample.h"

#define AERO_REQ_MAX_STOP 16
#define AERO_REQ_MAX_STOP_LEN 512
#define AERO_REQ_MAX_BIAS 1024

typedef enum { AERO_REQ_COMPLETION = 1, AERO_REQ_CHAT = 2 } aero_req_kind;
// tool_choice: "auto" (the default with tools), "none", "required", or {"type": "function", "function": {"name"}}
typedef enum { AERO_TOOL_AUTO = 0, AERO_TOOL_NONE, AERO_TOOL_REQUIRED, AERO_TOOL_NAMED } aero_req_tool_choice;

typedef struct {
    aero_req_kind kind;
    json_t *root;      // the parsed body; the strings below point into it
    const char *model; // NULL when absent
    // completions: a text prompt, or token ids
    const char *prompt;
    size_t prompt_len;
    int32_t *prompt_ids; // malloc'ed; NULL for a text prompt
    size_t n_prompt_ids;
    // chat: messages normalised to [{"role", "content": string|null, ...}] (owned); tools borrowed or NULL
    json_t *messages;
    json_t *tools; // validated: [{"type": "function", "function": {"name", "description"?, "parameters"?}}]
    aero_req_tool_choice tool_choice;
    const char *tool_name;    // tool_choice naming a function (into root)
    bool parallel_tool_calls; // default true
    int max_tokens;           // -1: not given
    aero_sampler_params sp;   // temp, top_p, top_k, min_p, penalties, seed
    bool has_seed;
    const char *stop[AERO_REQ_MAX_STOP];
    int n_stop;
    bool stream, include_usage;
    bool logprobs; // chat: logprobs true; completions: logprobs given (an integer)
    int top_logprobs;
    bool echo;
    bool ignore_eos;   // llama.cpp extension
    bool cache_prompt; // llama.cpp extension (default true): false starts on an emptied KV sequence
    int n_bias;
    int32_t bias_id[AERO_REQ_MAX_BIAS];
    float bias[AERO_REQ_MAX_BIAS];
    aero_grammar *grammar; // response_format's JSON grammar or the GBNF 'grammar' (owned; take it by setting NULL)
    char err_param[64];    // the offending field after a failure
} aero_req;

// Parses a request body of the given kind. n_vocab bounds logit_bias and token-id prompts (0: unchecked).
// defaults gives the sampling values of fields the request leaves out (NULL: OpenAI's: temperature 1, top_p 1,
// no top_k / min_p). On failure r holds nothing to free and err / r->err_param describe the problem.
aero_status aero_req_parse(aero_req *r, aero_req_kind kind, const char *body, size_t len, int n_vocab,
                           const aero_sampler_params *defaults, aero_error *err);
void aero_req_free(aero_req *r);

// /tokenize: {"content": string, "add_special": bool, "parse_special": bool, "with_pieces": bool}
typedef struct {
    json_t *root;
    const char *content;
    size_t content_len;
    bool add_special, parse_special, with_pieces;
    char err_param[64];
} aero_tokenize_req;
aero_status aero_req_parse_tokenize(aero_tokenize_req *r, const char *body, size_t len, aero_error *err);

// /detokenize: {"tokens": [int, ...]} with every id in [0, n_vocab)
typedef struct {
    int32_t *ids;
    size_t n;
    char err_param[64];
} aero_detokenize_req;
aero_status aero_req_parse_detokenize(aero_detokenize_req *r, const char *body, size_t len, int n_vocab,
                                      aero_error *err);

// /v1/embeddings: {"input": string | [string, ...] | [id, ...] | [[id, ...], ...], "model"?, "encoding_format"?:
// "float" | "base64"}; empty inputs, ids outside the vocabulary and "dimensions" are refused.
#define AERO_REQ_MAX_EMBED 2048
typedef struct {
    const char *text; // into root; NULL for token ids
    size_t len;
    int32_t *ids; // malloc'ed token ids, or NULL
    size_t n_ids;
} aero_embed_input;
typedef struct {
    json_t *root;
    const char *model;
    bool base64;
    aero_embed_input *in;
    int n;
    char err_param[64];
} aero_embed_req;
aero_status aero_req_parse_embeddings(aero_embed_req *r, const char *body, size_t len, int n_vocab, aero_error *err);
void aero_req_embed_free(aero_embed_req *r);

// Parses a body as a JSON object (shared by every endpoint): invalid JSON, bad UTF-8 and non-objects fail.
aero_status aero_req_load_object(json_t **out, const char *body, size_t len, aero_error *err);

#endif
