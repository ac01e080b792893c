#include <math.h>
#include "oai.h"

#include <stdlib.h>
#include <string.h>

// Length of the valid UTF-8 sequence at s (1..4), or 0 when the bytes there are not one.
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t need;
    unsigned min;
    if (c >= 0xC2 && c <= 0xDF) need = 2, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) need = 3, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) need = 4, min = 0x10000;
    else return 0;
    if (n < need) return 0;
    unsigned cp = c & (0x7F >> need);
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return need;
}

// Request bodies and generated text are checked with this before they reach jansson, which rejects bad UTF-8.
bool aero_oai_utf8_valid(const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_seq(u + i, len - i);
        if (!k) return false;
        i += k;
    }
    return true;
}

// A token can end inside a multi-byte character (byte-fallback pieces); its "token" field must still be JSON.
json_t *aero_oai_string(const char *s, size_t len) {
    if (aero_oai_utf8_valid(s, len)) return json_stringn(s, len);
    char *buf = malloc(len * 3 + 1);
    if (!buf) return NULL;
    const unsigned char *u = (const unsigned char *)s;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_seq(u + i, len - i);
        if (k) {
            memcpy(buf + o, s + i, k);
            o += k;
            i += k;
        } else {
            memcpy(buf + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    json_t *j = json_stringn(buf, o);
    free(buf);
    return j;
}

// OpenAI clients pick their exception class from the status; the type string is what their users log.
const char *aero_oai_error_type(int status) {
    switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    case 503: return "unavailable_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

// Builds the error envelope every failing endpoint returns.
json_t *aero_oai_error(int status, const char *message, const char *param, const char *code) {
    json_t *e = json_object();
    json_object_set_new(e, "message", aero_oai_string(message, strlen(message)));
    json_object_set_new(e, "type", json_string(aero_oai_error_type(status)));
    json_object_set_new(e, "param", param ? json_string(param) : json_null());
    json_object_set_new(e, "code", code ? json_string(code) : json_null());
    json_t *root = json_object();
    json_object_set_new(root, "error", e);
    return root;
}

// Token counts the client bills and logs by.
json_t *aero_oai_usage(int prompt_tokens, int completion_tokens) {
    return json_pack("{s:i, s:i, s:i}", "prompt_tokens", prompt_tokens, "completion_tokens", completion_tokens,
                     "total_tokens", prompt_tokens + completion_tokens);
}

// OpenAI's usage.prompt_tokens_details.cached_tokens: how much of the prompt came from the KV cache.
void aero_oai_usage_cached(json_t *obj, int cached_tokens) {
    json_t *u = json_object_get(obj, "usage");
    if (!json_is_object(u)) return;
    json_object_set_new(u, "prompt_tokens_details", json_pack("{s:i}", "cached_tokens", cached_tokens));
}

// Extension fields usage.draft_tokens / usage.draft_accepted: how much of a speculative request's drafts the
// model accepted (llama-server reports the same in its timings).
void aero_oai_usage_draft(json_t *obj, int drafted, int accepted) {
    json_t *u = json_object_get(obj, "usage");
    if (!json_is_object(u)) return;
    json_object_set_new(u, "draft_tokens", json_integer(drafted));
    json_object_set_new(u, "draft_accepted", json_integer(accepted));
}

// The raw bytes of a token as an array of integers (the chat logprobs "bytes" field).
static json_t *bytes_array(const char *b, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_integer((unsigned char)b[i]));
    return a;
}

// Fills buf with the piece of id; returns its length clipped to the buffer.
static size_t piece_of(aero_oai_piece_fn piece, void *ctx, int32_t id, char *buf, size_t cap) {
    size_t n = piece(ctx, id, buf, cap);
    return n < cap ? n : cap;
}

// Both logprobs dialects: chat's list of objects and the legacy parallel arrays.
json_t *aero_oai_logprobs(bool chat, const aero_oai_logprob *lp, int n, int n_top, aero_oai_piece_fn piece,
                          void *piece_ctx, size_t text_base) {
    char buf[256];
    if (n_top > AERO_OAI_MAX_TOP) n_top = AERO_OAI_MAX_TOP;
    if (chat) {
        json_t *content = json_array();
        for (int i = 0; i < n; i++) {
            size_t len = piece_of(piece, piece_ctx, lp[i].id, buf, sizeof buf);
            json_t *e = json_object();
            json_object_set_new(e, "token", aero_oai_string(buf, len));
            json_object_set_new(e, "logprob", json_real(lp[i].logprob));
            json_object_set_new(e, "bytes", bytes_array(buf, len));
            json_t *top = json_array();
            for (int k = 0; k < lp[i].n_top && k < n_top; k++) {
                size_t tl = piece_of(piece, piece_ctx, lp[i].top_id[k], buf, sizeof buf);
                json_t *t = json_object();
                json_object_set_new(t, "token", aero_oai_string(buf, tl));
                json_object_set_new(t, "logprob", json_real(lp[i].top_lp[k]));
                json_object_set_new(t, "bytes", bytes_array(buf, tl));
                json_array_append_new(top, t);
            }
            json_object_set_new(e, "top_logprobs", top);
            json_array_append_new(content, e);
        }
        json_t *root = json_object();
        json_object_set_new(root, "content", content);
        json_object_set_new(root, "refusal", json_null());
        return root;
    }
    json_t *tokens = json_array(), *token_lp = json_array(), *tops = json_array(), *offs = json_array();
    size_t off = text_base;
    for (int i = 0; i < n; i++) {
        size_t len = piece_of(piece, piece_ctx, lp[i].id, buf, sizeof buf);
        json_array_append_new(tokens, aero_oai_string(buf, len));
        json_array_append_new(token_lp, json_real(lp[i].logprob));
        json_array_append_new(offs, json_integer((json_int_t)off));
        off += len;
        json_t *t = json_object();
        for (int k = 0; k < lp[i].n_top && k < n_top; k++) {
            size_t tl = piece_of(piece, piece_ctx, lp[i].top_id[k], buf, sizeof buf);
            json_t *key = aero_oai_string(buf, tl);
            // Two ids can print alike; the first (most likely) wins, as in OpenAI's dict.
            if (key && !json_object_get(t, json_string_value(key)))
                json_object_set_new(t, json_string_value(key), json_real(lp[i].top_lp[k]));
            json_decref(key);
        }
        json_array_append_new(tops, t);
    }
    return json_pack("{s:o, s:o, s:o, s:o}", "tokens", tokens, "token_logprobs", token_lp, "top_logprobs", tops,
                     "text_offset", offs);
}

// Fields every response object and chunk starts with.
static json_t *envelope(const aero_oai_meta *m, const char *object) {
    json_t *r = json_object();
    json_object_set_new(r, "id", json_string(m->id));
    json_object_set_new(r, "object", json_string(object));
    json_object_set_new(r, "created", json_integer(m->created));
    json_object_set_new(r, "model", json_string(m->model));
    json_object_set_new(r, "system_fingerprint", json_string("aerollm"));
    return r;
}

// The non-streamed chat.completion / text_completion object.
json_t *aero_oai_response(const aero_oai_meta *m, const char *text, size_t len, const char *finish, json_t *logprobs,
                          int prompt_tokens, int completion_tokens) {
    json_t *r = envelope(m, m->chat ? "chat.completion" : "text_completion");
    json_t *choice = json_object();
    json_object_set_new(choice, "index", json_integer(0));
    if (m->chat) {
        json_t *msg = json_object();
        json_object_set_new(msg, "role", json_string("assistant"));
        json_object_set_new(msg, "content", aero_oai_string(text, len));
        json_object_set_new(msg, "refusal", json_null());
        json_object_set_new(choice, "message", msg);
    } else {
        json_object_set_new(choice, "text", aero_oai_string(text, len));
    }
    json_object_set_new(choice, "logprobs", logprobs ? logprobs : json_null());
    json_object_set_new(choice, "finish_reason", finish ? json_string(finish) : json_null());
    json_t *choices = json_array();
    json_array_append_new(choices, choice);
    json_object_set_new(r, "choices", choices);
    json_object_set_new(r, "usage", aero_oai_usage(prompt_tokens, completion_tokens));
    return r;
}

// One chat.completion.chunk (delta) or streamed text_completion chunk.
json_t *aero_oai_chunk(const aero_oai_meta *m, bool role, const char *text, size_t len, const char *finish,
                       json_t *logprobs, bool with_usage) {
    json_t *r = envelope(m, m->chat ? "chat.completion.chunk" : "text_completion");
    json_t *choice = json_object();
    json_object_set_new(choice, "index", json_integer(0));
    if (m->chat) {
        json_t *delta = json_object();
        if (role) json_object_set_new(delta, "role", json_string("assistant"));
        if (text) json_object_set_new(delta, "content", aero_oai_string(text, len));
        json_object_set_new(choice, "delta", delta);
    } else {
        json_object_set_new(choice, "text", text ? aero_oai_string(text, len) : json_string(""));
    }
    json_object_set_new(choice, "logprobs", logprobs ? logprobs : json_null());
    json_object_set_new(choice, "finish_reason", finish ? json_string(finish) : json_null());
    json_t *choices = json_array();
    json_array_append_new(choices, choice);
    json_object_set_new(r, "choices", choices);
    if (with_usage) json_object_set_new(r, "usage", json_null());
    return r;
}

// The usage-only chunk sent before [DONE] when stream_options.include_usage is set.
json_t *aero_oai_usage_chunk(const aero_oai_meta *m, int prompt_tokens, int completion_tokens) {
    json_t *r = envelope(m, m->chat ? "chat.completion.chunk" : "text_completion");
    json_object_set_new(r, "choices", json_array());
    json_object_set_new(r, "usage", aero_oai_usage(prompt_tokens, completion_tokens));
    return r;
}

// Frames one event the way OpenAI's stream parser expects: a single data line and a blank line.
char *aero_oai_sse(const json_t *j, size_t *len) {
    char *body = json_dumps(j, JSON_COMPACT);
    if (!body) return NULL;
    size_t n = strlen(body);
    char *out = malloc(n + 9);
    if (out) {
        memcpy(out, "data: ", 6);
        memcpy(out + 6, body, n);
        memcpy(out + 6 + n, "\n\n", 3);
        *len = n + 8;
    }
    free(body);
    return out;
}

// Response bodies end with a newline so that curl output stays readable.
char *aero_oai_dump(const json_t *j, size_t *len) {
    char *body = json_dumps(j, JSON_COMPACT);
    if (!body) return NULL;
    size_t n = strlen(body);
    char *out = realloc(body, n + 2);
    if (!out) {
        free(body);
        return NULL;
    }
    out[n] = '\n';
    out[n + 1] = 0;
    *len = n + 1;
    return out;
}

// An embedding as OpenAI sends it: an array of floats, or with encoding_format "base64" the little-endian
// float32 bytes in base64 (what the official clients ask for by default, a quarter of the JSON size).
json_t *aero_oai_embedding_value(const float *v, int n, bool base64) {
    if (!base64) {
        json_t *a = json_array();
        for (int i = 0; a && i < n; i++) json_array_append_new(a, json_real(v[i]));
        return a;
    }
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t nb = (size_t)n * 4, no = (nb + 2) / 3 * 4;
    unsigned char *b = malloc(nb ? nb : 1);
    char *o = malloc(no + 1);
    json_t *j = NULL;
    if (!b || !o) goto done;
    for (int i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        for (int k = 0; k < 4; k++) b[(size_t)i * 4 + k] = (unsigned char)(u >> (8 * k));
    }
    size_t w = 0;
    for (size_t i = 0; i < nb; i += 3) {
        uint32_t x = (uint32_t)b[i] << 16 | (i + 1 < nb ? (uint32_t)b[i + 1] << 8 : 0) | (i + 2 < nb ? b[i + 2] : 0);
        o[w++] = tab[x >> 18 & 63];
        o[w++] = tab[x >> 12 & 63];
        o[w++] = i + 1 < nb ? tab[x >> 6 & 63] : '=';
        o[w++] = i + 2 < nb ? tab[x & 63] : '=';
    }
    o[w] = 0;
    j = json_stringn(o, w);
done:
    free(b);
    free(o);
    return j;
}

// One token's log-probability and its n_top most likely alternatives from a row of logits: the scheduler's
// and the batch job's scoring use this one computation, so the same token gets the same numbers.
void aero_oai_logprob_fill(const float *logits, int n_vocab, int32_t tok, int n_top, aero_oai_logprob *out) {
    float mx = -INFINITY;
    for (int i = 0; i < n_vocab; i++)
        if (logits[i] > mx) mx = logits[i];
    double sum = 0;
    for (int i = 0; i < n_vocab; i++) sum += exp((double)(logits[i] - mx));
    double lse = (double)mx + log(sum);
    out->id = tok;
    out->logprob = (float)((double)logits[tok] - lse);
    out->n_top = 0;
    for (int i = 0; i < n_vocab && n_top > 0; i++) {
        float v = logits[i];
        int k = out->n_top;
        if (k == n_top && v <= logits[out->top_id[k - 1]]) continue;
        if (k < n_top) out->n_top++;
        else k--;
        while (k > 0 && logits[out->top_id[k - 1]] < v) {
            out->top_id[k] = out->top_id[k - 1];
            k--;
        }
        out->top_id[k] = i;
    }
    for (int k = 0; k < out->n_top; k++) out->top_lp[k] = (float)((double)logits[out->top_id[k]] - lse);
}
