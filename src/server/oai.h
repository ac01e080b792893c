// OpenAI wire format: completion and chat.completion objects, their streaming chunks, usage, logprobs, the
// error object, and Server-Sent-Events framing. Pure functions over jansson values, so they are unit-tested
// without a model or a socket.
#ifndef AERO_SERVER_OAI_H
#define AERO_SERVER_OAI_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AERO_OAI_MAX_TOP 20

// One generated token with its log-probability and the most likely alternatives.
typedef struct {
    int32_t id;
    float logprob;
    int n_top;
    int32_t top_id[AERO_OAI_MAX_TOP];
    float top_lp[AERO_OAI_MAX_TOP];
} aero_oai_logprob;

// Writes the bytes of token id (up to cap) and returns their full length.
typedef size_t (*aero_oai_piece_fn)(void *ctx, int32_t id, char *buf, size_t cap);

typedef struct {
    bool chat;      // chat.completion vs text_completion
    const char *id; // "chatcmpl-..." / "cmpl-..."
    const char *model;
    long long created; // unix seconds
} aero_oai_meta;

// A JSON string from arbitrary bytes: invalid UTF-8 becomes U+FFFD, so a response is never dropped.
json_t *aero_oai_string(const char *s, size_t len);
// True when len bytes are valid UTF-8 (no overlongs, no surrogates).
bool aero_oai_utf8_valid(const char *s, size_t len);

// The OpenAI error type for an HTTP status ("invalid_request_error", "authentication_error", ...).
const char *aero_oai_error_type(int status);
// {"error": {"message", "type", "param", "code"}}; param and code may be NULL (JSON null).
json_t *aero_oai_error(int status, const char *message, const char *param, const char *code);

json_t *aero_oai_usage(int prompt_tokens, int completion_tokens);
// Adds "prompt_tokens_details": {"cached_tokens": n} to obj's usage object (a response or the usage chunk).
void aero_oai_usage_cached(json_t *obj, int cached_tokens);
// One embedding's value: an array of floats, or base64 of its little-endian float32 bytes.
json_t *aero_oai_embedding_value(const float *v, int n, bool base64);
// usage.draft_tokens and usage.draft_accepted (extensions) of a speculative request.
void aero_oai_usage_draft(json_t *obj, int drafted, int accepted);
// Logprobs of n tokens in the chat shape ({"content": [...]}) or the legacy completions shape
// ({"tokens", "token_logprobs", "top_logprobs", "text_offset"}; text_offset counts from text_base).
// Log-probability of tok and the n_top (<= AERO_OAI_MAX_TOP) most likely tokens under one row of logits.
void aero_oai_logprob_fill(const float *logits, int n_vocab, int32_t tok, int n_top, aero_oai_logprob *out);
json_t *aero_oai_logprobs(bool chat, const aero_oai_logprob *lp, int n, int n_top, aero_oai_piece_fn piece,
                          void *piece_ctx, size_t text_base);

// A whole non-streamed response. finish: "stop" / "length". logprobs: stolen reference, or NULL.
json_t *aero_oai_response(const aero_oai_meta *m, const char *text, size_t len, const char *finish, json_t *logprobs,
                          int prompt_tokens, int completion_tokens);
// One streamed chunk. role: put "role": "assistant" in the delta (first chat chunk). text may be NULL (no
// content key). finish may be NULL. with_usage: add "usage": null as OpenAI does when usage was asked for.
json_t *aero_oai_chunk(const aero_oai_meta *m, bool role, const char *text, size_t len, const char *finish,
                       json_t *logprobs, bool with_usage);
// The last chunk when stream_options.include_usage: "choices": [] and the usage.
json_t *aero_oai_usage_chunk(const aero_oai_meta *m, int prompt_tokens, int completion_tokens);

// "data: <compact json>\n\n", malloc'ed; NULL when out of memory. Does not free j.
char *aero_oai_sse(const json_t *j, size_t *len);
// Compact JSON text of j followed by a newline, malloc'ed.
char *aero_oai_dump(const json_t *j, size_t *len);

#endif
