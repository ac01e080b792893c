#include "request.h"

#include "../sample/gbnf.h"
#include "../sample/json_grammar.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOKENS_LIMIT (1 << 30)

// Records the offending field beside the message so the HTTP layer can fill the "param" of the error.
static aero_status bad(char *param_out, const char *param, aero_error *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static aero_status bad(char *param_out, const char *param, aero_error *err, const char *fmt, ...) {
    snprintf(param_out, 64, "%s", param ? param : "");
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = AERO_ERR_INVALID;
    }
    return AERO_ERR_INVALID;
}

// A field that is absent or JSON null counts as not given, as in OpenAI's API.
static json_t *opt(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return v && !json_is_null(v) ? v : NULL;
}

static const char *type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a value";
}

// Every endpoint's body must be one JSON object; jansson also rejects bad UTF-8 and deep nesting. An escaped
// \u0000 is valid JSON, so it is accepted: text fields are read with their lengths, and the few fields used as
// C strings (model, role, stop) check for an embedded NUL themselves.
aero_status aero_req_load_object(json_t **out, const char *body, size_t len, aero_error *err) {
    *out = NULL;
    if (len == 0) return aero_fail(err, AERO_ERR_INVALID, "request body is empty: expected a JSON object");
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!root)
        return aero_fail(err, AERO_ERR_INVALID, "request body is not valid JSON: %s (line %d, column %d)", je.text,
                         je.line, je.column);
    if (!json_is_object(root)) {
        aero_status st =
            aero_fail(err, AERO_ERR_INVALID, "request body must be a JSON object, not %s", type_name(root));
        json_decref(root);
        return st;
    }
    *out = root;
    return AERO_OK;
}

// True when a JSON string has no embedded NUL, i.e. it can be used as a C string without losing its tail.
static bool c_string(const json_t *v) { return strlen(json_string_value(v)) == json_string_length(v); }

// Optional boolean field.
static aero_status get_bool(json_t *o, const char *key, bool *out, char *param, aero_error *err) {
    json_t *v = opt(o, key);
    if (!v) return AERO_OK;
    if (!json_is_boolean(v)) return bad(param, key, err, "'%s' must be a boolean, not %s", key, type_name(v));
    *out = json_is_true(v);
    return AERO_OK;
}

// Optional integer field within [lo, hi].
static aero_status get_int(json_t *o, const char *key, long long lo, long long hi, long long *out, bool *given,
                           char *param, aero_error *err) {
    json_t *v = opt(o, key);
    if (given) *given = v != NULL;
    if (!v) return AERO_OK;
    // 5.0 is an integer to a JavaScript client (JSON has one number type), so integral reals are accepted.
    double d = json_is_real(v) ? json_real_value(v) : 0;
    bool integral = json_is_real(v) && isfinite(d) && d == floor(d) && fabs(d) < 9.0e15;
    if (!json_is_integer(v) && !integral)
        return bad(param, key, err, "'%s' must be an integer, not %s", key, type_name(v));
    long long x = json_is_integer(v) ? json_integer_value(v) : (long long)d;
    if (x < lo || x > hi) return bad(param, key, err, "'%s' is %lld; it must be between %lld and %lld", key, x, lo, hi);
    *out = x;
    return AERO_OK;
}

// Optional number field within [lo, hi].
static aero_status get_num(json_t *o, const char *key, double lo, double hi, float *out, char *param, aero_error *err) {
    json_t *v = opt(o, key);
    if (!v) return AERO_OK;
    if (!json_is_number(v)) return bad(param, key, err, "'%s' must be a number, not %s", key, type_name(v));
    double x = json_number_value(v);
    if (!isfinite(x) || x < lo || x > hi)
        return bad(param, key, err, "'%s' is %g; it must be between %g and %g", key, x, lo, hi);
    *out = (float)x;
    return AERO_OK;
}

// "stop": a string or an array of strings; empty strings are dropped as OpenAI does.
static aero_status parse_stop(aero_req *r, aero_error *err) {
    json_t *v = opt(r->root, "stop");
    if (!v) return AERO_OK;
    if (json_is_string(v)) {
        if (json_string_length(v) > AERO_REQ_MAX_STOP_LEN)
            return bad(r->err_param, "stop", err, "'stop' is longer than %d bytes", AERO_REQ_MAX_STOP_LEN);
        if (!c_string(v)) return bad(r->err_param, "stop", err, "'stop' cannot contain a NUL character");
        if (json_string_length(v)) r->stop[r->n_stop++] = json_string_value(v);
        return AERO_OK;
    }
    if (!json_is_array(v))
        return bad(r->err_param, "stop", err, "'stop' must be a string or an array of strings, not %s", type_name(v));
    if (json_array_size(v) > AERO_REQ_MAX_STOP)
        return bad(r->err_param, "stop", err, "'stop' has %zu entries; at most %d are allowed", json_array_size(v),
                   AERO_REQ_MAX_STOP);
    size_t i;
    json_t *s;
    json_array_foreach(v, i, s) {
        if (!json_is_string(s))
            return bad(r->err_param, "stop", err, "'stop[%zu]' must be a string, not %s", i, type_name(s));
        if (json_string_length(s) > AERO_REQ_MAX_STOP_LEN)
            return bad(r->err_param, "stop", err, "'stop[%zu]' is longer than %d bytes", i, AERO_REQ_MAX_STOP_LEN);
        if (!c_string(s)) return bad(r->err_param, "stop", err, "'stop[%zu]' cannot contain a NUL character", i);
        if (json_string_length(s)) r->stop[r->n_stop++] = json_string_value(s);
    }
    return AERO_OK;
}

// "logit_bias": {"<token id>": bias in [-100, 100]}.
static aero_status parse_bias(aero_req *r, int n_vocab, aero_error *err) {
    json_t *v = opt(r->root, "logit_bias");
    if (!v) return AERO_OK;
    if (!json_is_object(v))
        return bad(r->err_param, "logit_bias", err, "'logit_bias' must be an object, not %s", type_name(v));
    if (json_object_size(v) > AERO_REQ_MAX_BIAS)
        return bad(r->err_param, "logit_bias", err, "'logit_bias' has %zu entries; at most %d are allowed",
                   json_object_size(v), AERO_REQ_MAX_BIAS);
    const char *key;
    json_t *b;
    json_object_foreach(v, key, b) {
        char *end;
        errno = 0;
        long id = strtol(key, &end, 10);
        if (!*key || *end || errno || id < 0 || id > INT32_MAX || (n_vocab > 0 && id >= n_vocab))
            return bad(r->err_param, "logit_bias", err,
                       "'logit_bias' key '%.64s' is not a token id of this model (0..%d)", key, n_vocab - 1);
        if (!json_is_number(b) || !isfinite(json_number_value(b)) || fabs(json_number_value(b)) > 100)
            return bad(r->err_param, "logit_bias", err,
                       "'logit_bias' value for token %ld must be a number in [-100, 100]", id);
        r->bias_id[r->n_bias] = (int32_t)id;
        r->bias[r->n_bias] = (float)json_number_value(b);
        r->n_bias++;
    }
    return AERO_OK;
}

// Reads an array of token ids (a pre-tokenized prompt).
static aero_status parse_ids(aero_req *r, json_t *a, int n_vocab, aero_error *err) {
    size_t n = json_array_size(a);
    if (n == 0) return bad(r->err_param, "prompt", err, "'prompt' token array is empty");
    r->prompt_ids = malloc(n * sizeof *r->prompt_ids);
    if (!r->prompt_ids) return aero_fail(err, AERO_ERR_NOMEM, "out of memory reading the prompt");
    size_t i;
    json_t *t;
    json_array_foreach(a, i, t) {
        if (!json_is_integer(t))
            return bad(r->err_param, "prompt", err, "'prompt[%zu]' must be a token id (integer), not %s", i,
                       type_name(t));
        long long id = json_integer_value(t);
        if (id < 0 || id > INT32_MAX || (n_vocab > 0 && id >= n_vocab))
            return bad(r->err_param, "prompt", err, "'prompt[%zu]' = %lld is not a token id of this model (0..%d)", i,
                       id, n_vocab - 1);
        r->prompt_ids[i] = (int32_t)id;
    }
    r->n_prompt_ids = n;
    return AERO_OK;
}

// "prompt": a string, or one prompt given as [string], [ids] or [[ids]]; several prompts would mean several
// choices, which this server does not produce.
static aero_status parse_prompt(aero_req *r, int n_vocab, aero_error *err) {
    json_t *p = opt(r->root, "prompt");
    if (!p) return bad(r->err_param, "prompt", err, "'prompt' is required");
    if (json_is_string(p)) {
        r->prompt = json_string_value(p);
        r->prompt_len = json_string_length(p);
        return AERO_OK;
    }
    if (!json_is_array(p))
        return bad(r->err_param, "prompt", err, "'prompt' must be a string or an array, not %s", type_name(p));
    if (json_array_size(p) == 0) return bad(r->err_param, "prompt", err, "'prompt' is an empty array");
    json_t *first = json_array_get(p, 0);
    if (json_is_integer(first)) return parse_ids(r, p, n_vocab, err);
    if (json_array_size(p) > 1)
        return bad(r->err_param, "prompt", err,
                   "'prompt' holds %zu prompts; this server completes one prompt per request", json_array_size(p));
    if (json_is_string(first)) {
        r->prompt = json_string_value(first);
        r->prompt_len = json_string_length(first);
        return AERO_OK;
    }
    if (json_is_array(first)) return parse_ids(r, first, n_vocab, err);
    return bad(r->err_param, "prompt", err, "'prompt[0]' must be a string or token ids, not %s", type_name(first));
}

// Flattens message content (a string, or an array of text parts) into one string; NULL content stays null.
static aero_status message_text(aero_req *r, size_t i, json_t *content, json_t **out, aero_error *err) {
    *out = NULL;
    if (json_is_string(content)) {
        *out = json_incref(content);
        return AERO_OK;
    }
    if (!json_is_array(content))
        return bad(r->err_param, "messages", err,
                   "'messages[%zu].content' must be a string or an array of parts, not %s", i, type_name(content));
    size_t total = 0, k;
    json_t *part;
    json_array_foreach(content, k, part) {
        json_t *type = json_object_get(part, "type");
        if (!json_is_object(part) || !json_is_string(type))
            return bad(r->err_param, "messages", err, "'messages[%zu].content[%zu]' must be an object with a 'type'", i,
                       k);
        const char *ts = json_string_value(type);
        if (strcmp(ts, "text") != 0)
            return bad(r->err_param, "messages", err,
                       "'messages[%zu].content[%zu]' has type '%.32s'; only 'text' parts are supported", i, k, ts);
        json_t *text = json_object_get(part, "text");
        if (!json_is_string(text))
            return bad(r->err_param, "messages", err, "'messages[%zu].content[%zu].text' must be a string", i, k);
        total += json_string_length(text);
    }
    char *buf = malloc(total + 1);
    if (!buf) return aero_fail(err, AERO_ERR_NOMEM, "out of memory reading messages");
    size_t o = 0;
    json_array_foreach(content, k, part) {
        json_t *text = json_object_get(part, "text");
        memcpy(buf + o, json_string_value(text), json_string_length(text));
        o += json_string_length(text);
    }
    *out = json_stringn_nocheck(buf, o);
    free(buf);
    return *out ? AERO_OK : aero_fail(err, AERO_ERR_NOMEM, "out of memory reading messages");
}

// An assistant message's tool_calls as templates read them: each {"id", "type": "function", "function": {"name",
// "arguments"}} with the arguments parsed from OpenAI's JSON string into an object (templates write them with
// tojson; a string would come out quoted twice). NULL with err set on a malformed call.
static json_t *normal_tool_calls(aero_req *r, size_t i, json_t *calls, aero_error *err) {
    json_t *out = json_array();
    size_t k;
    json_t *c;
    json_array_foreach(calls, k, c) {
        json_t *fn = json_object_get(c, "function");
        json_t *name = json_object_get(fn, "name"), *args = json_object_get(fn, "arguments");
        json_t *id = json_object_get(c, "id");
        if (!json_is_object(c) || !json_is_object(fn) || !json_is_string(name) || (id && !json_is_string(id))) {
            json_decref(out);
            bad(r->err_param, "messages", err,
                "'messages[%zu].tool_calls[%zu]' must be {\"id\", \"type\": \"function\", \"function\": {\"name\", "
                "\"arguments\"}}",
                i, k);
            return NULL;
        }
        json_t *a = NULL;
        if (json_is_string(args)) {
            a = json_loads(json_string_value(args), JSON_DECODE_ANY, NULL);
            if (!a) a = json_incref(args); // not JSON: passed as written
        } else {
            a = args ? json_incref(args) : json_object();
        }
        json_t *nf = json_pack("{s:O, s:o}", "name", name, "arguments", a);
        json_t *nc = json_pack("{s:s, s:o}", "type", "function", "function", nf);
        if (id) json_object_set(nc, "id", id);
        json_array_append_new(out, nc);
    }
    return out;
}

// "tools" (function definitions), "tool_choice" and "parallel_tool_calls".
static aero_status parse_tools(aero_req *r, aero_error *err) {
    json_t *tools = opt(r->root, "tools");
    r->parallel_tool_calls = true;
    aero_status st = get_bool(r->root, "parallel_tool_calls", &r->parallel_tool_calls, r->err_param, err);
    if (st) return st;
    if (tools && !json_is_array(tools))
        return bad(r->err_param, "tools", err, "'tools' must be an array, not %s", type_name(tools));
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) {
        json_t *type = json_object_get(t, "type"), *fn = json_object_get(t, "function");
        if (!json_is_object(t) || !json_is_string(type) || strcmp(json_string_value(type), "function"))
            return bad(r->err_param, "tools", err, "'tools[%zu].type' must be \"function\"", i);
        json_t *name = json_object_get(fn, "name"), *params = opt(fn, "parameters");
        if (!json_is_object(fn) || !json_is_string(name) || json_string_length(name) == 0 ||
            json_string_length(name) > 64)
            return bad(r->err_param, "tools", err, "'tools[%zu].function.name' must be a string of 1 to 64 characters",
                       i);
        if (params && !json_is_object(params))
            return bad(r->err_param, "tools", err, "'tools[%zu].function.parameters' must be a JSON schema object", i);
    }
    r->tools = tools && json_array_size(tools) ? tools : NULL;
    json_t *tc = opt(r->root, "tool_choice");
    r->tool_choice = AERO_TOOL_AUTO;
    if (json_is_string(tc)) {
        const char *v = json_string_value(tc);
        if (!strcmp(v, "none")) r->tool_choice = AERO_TOOL_NONE;
        else if (!strcmp(v, "required")) r->tool_choice = AERO_TOOL_REQUIRED;
        else if (strcmp(v, "auto"))
            return bad(r->err_param, "tool_choice", err,
                       "'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", "
                       "\"function\": {\"name\": ...}}");
    } else if (tc) {
        json_t *name = json_object_get(json_object_get(tc, "function"), "name");
        if (!json_is_object(tc) || !json_is_string(name))
            return bad(r->err_param, "tool_choice", err,
                       "'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", "
                       "\"function\": {\"name\": ...}}");
        r->tool_choice = AERO_TOOL_NAMED;
        r->tool_name = json_string_value(name);
    }
    if (r->tool_choice >= AERO_TOOL_REQUIRED && !r->tools)
        return bad(r->err_param, "tool_choice", err, "'tool_choice' requires a tool call but 'tools' is empty");
    if (r->tool_choice == AERO_TOOL_NAMED) {
        bool found = false;
        json_array_foreach(r->tools, i, t) found |=
            !strcmp(json_string_value(json_object_get(json_object_get(t, "function"), "name")), r->tool_name);
        if (!found)
            return bad(r->err_param, "tool_choice", err, "'tool_choice' names '%.64s', which is not in 'tools'",
                       r->tool_name);
    }
    return AERO_OK;
}

// "messages": a non-empty array of {role, content}; roles are OpenAI's; content parts are text only.
static aero_status parse_messages(aero_req *r, aero_error *err) {
    static const char *roles[] = {"system", "developer", "user", "assistant", "tool", "function"};
    json_t *m = opt(r->root, "messages");
    if (!m) return bad(r->err_param, "messages", err, "'messages' is required");
    if (!json_is_array(m))
        return bad(r->err_param, "messages", err, "'messages' must be an array, not %s", type_name(m));
    if (json_array_size(m) == 0)
        return bad(r->err_param, "messages", err, "'messages' is empty: give at least one message");
    r->messages = json_array();
    size_t i;
    json_t *msg;
    json_array_foreach(m, i, msg) {
        if (!json_is_object(msg))
            return bad(r->err_param, "messages", err, "'messages[%zu]' must be an object, not %s", i, type_name(msg));
        json_t *role = json_object_get(msg, "role");
        if (!json_is_string(role))
            return bad(r->err_param, "messages", err, "'messages[%zu].role' must be a string", i);
        const char *rs = json_string_value(role);
        bool known = false;
        for (size_t k = 0; k < sizeof roles / sizeof roles[0]; k++) known |= !strcmp(rs, roles[k]) && c_string(role);
        if (!known)
            return bad(r->err_param, "messages", err,
                       "'messages[%zu].role' is '%.32s'; expected system, developer, user, assistant or tool", i, rs);
        json_t *content = opt(msg, "content");
        json_t *tool_calls = opt(msg, "tool_calls");
        if (tool_calls && !json_is_array(tool_calls))
            return bad(r->err_param, "messages", err, "'messages[%zu].tool_calls' must be an array", i);
        if (!content && !(strcmp(rs, "assistant") == 0))
            return bad(r->err_param, "messages", err, "'messages[%zu].content' is required for role '%s'", i, rs);
        json_t *norm = json_object();
        json_array_append_new(r->messages, norm);
        json_object_set(norm, "role", role);
        if (content) {
            json_t *text;
            aero_status st = message_text(r, i, content, &text, err);
            if (st) return st;
            json_object_set_new(norm, "content", text);
        } else {
            json_object_set_new(norm, "content", json_null());
        }
        static const char *strs[] = {"name", "tool_call_id", "reasoning_content"};
        for (size_t k = 0; k < sizeof strs / sizeof strs[0]; k++) {
            json_t *v = opt(msg, strs[k]);
            if (!v) continue;
            if (!json_is_string(v))
                return bad(r->err_param, "messages", err, "'messages[%zu].%s' must be a string", i, strs[k]);
            json_object_set(norm, strs[k], v);
        }
        if (tool_calls) {
            json_t *calls = normal_tool_calls(r, i, tool_calls, err);
            if (!calls) return err->code;
            json_object_set_new(norm, "tool_calls", calls);
        }
    }
    return parse_tools(r, err);
}

// Sampling: the server's defaults (or OpenAI's), overridden field by field, each within OpenAI's range.
static aero_status parse_sampling(aero_req *r, const aero_sampler_params *defaults, aero_error *err) {
    json_t *root = r->root;
    aero_sampler_params *sp = &r->sp;
    aero_status st;
    if (defaults) {
        *sp = *defaults;
    } else {
        sp->temp = 1.0f;
        sp->top_p = 1.0f;
        sp->top_k = 0;
        sp->min_p = 0.0f;
        sp->repeat_penalty = 1.0f;
        sp->repeat_last_n = 64;
        sp->presence_penalty = 0.0f;
        sp->frequency_penalty = 0.0f;
    }
    if ((st = get_num(root, "temperature", 0, 2, &sp->temp, r->err_param, err))) return st;
    if ((st = get_num(root, "top_p", 0, 1, &sp->top_p, r->err_param, err))) return st;
    if ((st = get_num(root, "min_p", 0, 1, &sp->min_p, r->err_param, err))) return st;
    if ((st = get_num(root, "presence_penalty", -2, 2, &sp->presence_penalty, r->err_param, err))) return st;
    if ((st = get_num(root, "frequency_penalty", -2, 2, &sp->frequency_penalty, r->err_param, err))) return st;
    if ((st = get_num(root, "repeat_penalty", 0.01, 10, &sp->repeat_penalty, r->err_param, err))) return st;
    long long k = 0;
    if ((st = get_int(root, "top_k", -1, INT32_MAX, &k, NULL, r->err_param, err))) return st;
    sp->top_k = k < 0 ? 0 : (int)k;
    long long seed = 0;
    if ((st = get_int(root, "seed", LLONG_MIN, LLONG_MAX, &seed, &r->has_seed, r->err_param, err))) return st;
    sp->seed = (uint64_t)seed;
    return AERO_OK;
}

// stream and stream_options (allowed only with stream: true, as OpenAI answers).
static aero_status parse_streaming(aero_req *r, aero_error *err) {
    aero_status st = get_bool(r->root, "stream", &r->stream, r->err_param, err);
    if (st) return st;
    json_t *so = opt(r->root, "stream_options");
    if (!so) return AERO_OK;
    if (!json_is_object(so))
        return bad(r->err_param, "stream_options", err, "'stream_options' must be an object, not %s", type_name(so));
    if (!r->stream)
        return bad(r->err_param, "stream_options", err, "'stream_options' is only allowed when 'stream' is true");
    return get_bool(so, "include_usage", &r->include_usage, r->err_param, err);
}

// logprobs in both dialects: chat's logprobs + top_logprobs, completions' logprobs count (and echo).
static aero_status parse_logprobs(aero_req *r, aero_req_kind kind, aero_error *err) {
    json_t *root = r->root;
    aero_status st;
    long long top = 0;
    if (kind == AERO_REQ_CHAT) {
        bool given;
        if ((st = get_bool(root, "logprobs", &r->logprobs, r->err_param, err))) return st;
        if ((st = get_int(root, "top_logprobs", 0, 20, &top, &given, r->err_param, err))) return st;
        if (given && !r->logprobs)
            return bad(r->err_param, "top_logprobs", err, "'top_logprobs' requires 'logprobs' to be true");
        r->top_logprobs = (int)top;
        return AERO_OK;
    }
    if ((st = get_int(root, "logprobs", 0, 5, &top, &r->logprobs, r->err_param, err))) return st;
    r->top_logprobs = (int)top;
    if ((st = get_bool(root, "echo", &r->echo, r->err_param, err))) return st;
    if (r->echo && r->logprobs)
        return bad(r->err_param, "echo", err, "'echo' together with 'logprobs' is not supported");
    return AERO_OK;
}

// Rejects features that would silently change the meaning of a request if ignored.
static aero_status reject_unsupported(aero_req *r, aero_error *err) {
    long long n = 1;
    aero_status st;
    if ((st = get_int(r->root, "n", LLONG_MIN, LLONG_MAX, &n, NULL, r->err_param, err))) return st;
    if (n != 1)
        return bad(r->err_param, "n", err, "'n' is %lld; this server generates exactly one choice per request (n = 1)",
                   n);
    long long best_of = 1;
    if ((st = get_int(r->root, "best_of", LLONG_MIN, LLONG_MAX, &best_of, NULL, r->err_param, err))) return st;
    if (best_of != 1) return bad(r->err_param, "best_of", err, "'best_of' must be 1 on this server");
    json_t *suffix = opt(r->root, "suffix");
    if (suffix && (!json_is_string(suffix) || json_string_length(suffix)))
        return bad(r->err_param, "suffix", err, "'suffix' (insertion) is not supported");
    return AERO_OK;
}

// "response_format": text, json_object (any JSON object) or json_schema ({"json_schema": {"name", "schema",
// "strict", "description"}}), the last two compiled into the grammar the sampler enforces; or llama-server's
// "grammar" (GBNF). A schema keyword the compiler cannot enforce is a 400 that names it.
static aero_status parse_response_format(aero_req *r, aero_error *err) {
    json_t *rf = opt(r->root, "response_format");
    json_t *gbnf = opt(r->root, "grammar"); // llama-server's extension: a GBNF grammar
    if (gbnf) {
        if (!json_is_string(gbnf)) return bad(r->err_param, "grammar", err, "'grammar' must be a GBNF string");
        json_t *t = json_object_get(rf, "type");
        if (rf && !(json_is_string(t) && !strcmp(json_string_value(t), "text")))
            return bad(r->err_param, "grammar", err, "give either 'grammar' or 'response_format', not both");
        aero_error gerr = {0};
        aero_status st = aero_gbnf_compile(&r->grammar, json_string_value(gbnf), json_string_length(gbnf), &gerr);
        if (st == AERO_ERR_NOMEM) return aero_fail(err, st, "%s", gerr.msg);
        if (st) return bad(r->err_param, "grammar", err, "%s", gerr.msg);
        return AERO_OK;
    }
    if (!rf) return AERO_OK;
    json_t *t = json_object_get(rf, "type");
    if (!json_is_object(rf) || !json_is_string(t))
        return bad(r->err_param, "response_format", err, "'response_format' must be an object with a 'type'");
    const char *ts = json_string_value(t);
    if (!strcmp(ts, "text")) return AERO_OK;
    const json_t *schema = NULL;
    if (!strcmp(ts, "json_schema")) {
        json_t *js = json_object_get(rf, "json_schema");
        if (!json_is_object(js))
            return bad(r->err_param, "response_format", err,
                       "'response_format.json_schema' must be an object with a 'schema' (and a 'name')");
        schema = json_object_get(js, "schema");
        if (!schema)
            return bad(r->err_param, "response_format", err, "'response_format.json_schema.schema' is required");
        if (!json_is_object(schema) && !json_is_boolean(schema))
            return bad(r->err_param, "response_format", err, "'response_format.json_schema.schema' must be an object");
    } else if (strcmp(ts, "json_object") != 0) {
        return bad(r->err_param, "response_format", err,
                   "'response_format' type '%.32s' is not supported (text, json_object and json_schema are)", ts);
    }
    aero_error cerr = {0};
    char kw[64];
    aero_status st = aero_json_grammar_compile(&r->grammar, schema, kw, &cerr);
    if (st == AERO_ERR_NOMEM) return aero_fail(err, st, "%s", cerr.msg);
    if (st) return bad(r->err_param, "response_format", err, "response_format: %s", cerr.msg);
    return AERO_OK;
}

aero_status aero_req_parse(aero_req *r, aero_req_kind kind, const char *body, size_t len, int n_vocab,
                           const aero_sampler_params *defaults, aero_error *err) {
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->max_tokens = -1;
    r->cache_prompt = true;
    aero_status st = aero_req_load_object(&r->root, body, len, err);
    if (st) return st;
    json_t *root = r->root;

    json_t *model = opt(root, "model");
    if (model && !json_is_string(model)) {
        st = bad(r->err_param, "model", err, "'model' must be a string, not %s", type_name(model));
        goto fail;
    }
    if (model && !c_string(model)) { // would otherwise match the served model by its prefix
        st = bad(r->err_param, "model", err, "'model' cannot contain a NUL character");
        goto fail;
    }
    r->model = model ? json_string_value(model) : NULL;

    if ((st = reject_unsupported(r, err))) goto fail;
    if ((st = kind == AERO_REQ_CHAT ? parse_messages(r, err) : parse_prompt(r, n_vocab, err))) goto fail;

    long long v = -1;
    bool given;
    if ((st = get_int(root, "max_tokens", 1, MAX_TOKENS_LIMIT, &v, &given, r->err_param, err))) goto fail;
    if (given) r->max_tokens = (int)v;
    if ((st = get_int(root, "max_completion_tokens", 1, MAX_TOKENS_LIMIT, &v, &given, r->err_param, err))) goto fail;
    if (given) r->max_tokens = (int)v;

    if ((st = parse_sampling(r, defaults, err))) goto fail;
    if ((st = parse_stop(r, err))) goto fail;
    if ((st = parse_streaming(r, err))) goto fail;
    if ((st = parse_logprobs(r, kind, err))) goto fail;
    if ((st = get_bool(root, "ignore_eos", &r->ignore_eos, r->err_param, err))) goto fail;
    if ((st = get_bool(root, "cache_prompt", &r->cache_prompt, r->err_param, err))) goto fail;
    if ((st = parse_bias(r, n_vocab, err))) goto fail;
    if ((st = parse_response_format(r, err))) goto fail;
    return AERO_OK;
fail : {
    char param[64];
    memcpy(param, r->err_param, sizeof param);
    aero_req_free(r);
    memcpy(r->err_param, param, sizeof param);
}
    return st;
}

// Frees the parsed body and what was copied out of it.
void aero_req_free(aero_req *r) {
    free(r->prompt_ids);
    aero_grammar_free(r->grammar);
    json_decref(r->messages);
    json_decref(r->root);
    memset(r, 0, sizeof *r);
}

// Validates a /tokenize body (llama.cpp's fields and defaults).
aero_status aero_req_parse_tokenize(aero_tokenize_req *r, const char *body, size_t len, aero_error *err) {
    memset(r, 0, sizeof *r);
    r->add_special = false; // llama-server's default: /tokenize counts the text's own tokens
    r->parse_special = true;
    aero_status st = aero_req_load_object(&r->root, body, len, err);
    if (st) return st;
    json_t *c = opt(r->root, "content");
    if (!c || !json_is_string(c)) {
        st = bad(r->err_param, "content", err, "'content' must be a string");
        goto fail;
    }
    r->content = json_string_value(c);
    r->content_len = json_string_length(c);
    if ((st = get_bool(r->root, "add_special", &r->add_special, r->err_param, err))) goto fail;
    if ((st = get_bool(r->root, "parse_special", &r->parse_special, r->err_param, err))) goto fail;
    if ((st = get_bool(r->root, "with_pieces", &r->with_pieces, r->err_param, err))) goto fail;
    return AERO_OK;
fail:
    json_decref(r->root);
    r->root = NULL;
    return st;
}

aero_status aero_req_parse_detokenize(aero_detokenize_req *r, const char *body, size_t len, int n_vocab,
                                      aero_error *err) {
    memset(r, 0, sizeof *r);
    json_t *root;
    aero_status st = aero_req_load_object(&root, body, len, err);
    if (st) return st;
    json_t *a = opt(root, "tokens");
    if (!a || !json_is_array(a)) {
        st = bad(r->err_param, "tokens", err, "'tokens' must be an array of token ids");
        goto fail;
    }
    r->n = json_array_size(a);
    r->ids = malloc((r->n ? r->n : 1) * sizeof *r->ids);
    if (!r->ids) {
        st = aero_fail(err, AERO_ERR_NOMEM, "out of memory reading tokens");
        goto fail;
    }
    size_t i;
    json_t *t;
    json_array_foreach(a, i, t) {
        long long id = json_is_integer(t) ? json_integer_value(t) : -1;
        if (!json_is_integer(t) || id < 0 || (n_vocab > 0 && id >= n_vocab)) {
            st = bad(r->err_param, "tokens", err, "'tokens[%zu]' is not a token id of this model (0..%d)", i,
                     n_vocab - 1);
            goto fail;
        }
        r->ids[i] = (int32_t)id;
    }
    json_decref(root);
    return AERO_OK;
fail:
    free(r->ids);
    r->ids = NULL;
    r->n = 0;
    json_decref(root);
    return st;
}

// One token-id array of an embeddings input, checked against the vocabulary.
static aero_status embed_ids(aero_embed_input *in, json_t *a, const char *where, int n_vocab, char *param,
                             aero_error *err) {
    in->n_ids = json_array_size(a);
    if (in->n_ids == 0) return bad(param, "input", err, "'%s' is empty: an embedding needs at least one token", where);
    in->ids = malloc(in->n_ids * sizeof *in->ids);
    if (!in->ids) return aero_fail(err, AERO_ERR_NOMEM, "out of memory reading input");
    size_t i;
    json_t *t;
    json_array_foreach(a, i, t) {
        long long id = json_is_integer(t) ? json_integer_value(t) : -1;
        if (id < 0 || (n_vocab > 0 && id >= n_vocab))
            return bad(param, "input", err, "'%s[%zu]' is not a token id of this model (0..%d)", where, i, n_vocab - 1);
        in->ids[i] = (int32_t)id;
    }
    return AERO_OK;
}

aero_status aero_req_parse_embeddings(aero_embed_req *r, const char *body, size_t len, int n_vocab, aero_error *err) {
    memset(r, 0, sizeof *r);
    aero_status st = aero_req_load_object(&r->root, body, len, err);
    if (st) return st;
    json_t *m = opt(r->root, "model");
    if (m && !json_is_string(m)) {
        st = bad(r->err_param, "model", err, "'model' must be a string");
        goto fail;
    }
    r->model = m ? json_string_value(m) : NULL;
    json_t *f = opt(r->root, "encoding_format");
    if (f &&
        (!json_is_string(f) || (strcmp(json_string_value(f), "float") && strcmp(json_string_value(f), "base64")))) {
        st = bad(r->err_param, "encoding_format", err, "'encoding_format' must be \"float\" or \"base64\"");
        goto fail;
    }
    r->base64 = f && !strcmp(json_string_value(f), "base64");
    if (opt(r->root, "dimensions")) {
        st = bad(r->err_param, "dimensions", err,
                 "'dimensions' is not supported: this model's embeddings have a fixed width (its hidden size)");
        goto fail;
    }
    json_t *in = opt(r->root, "input");
    if (!in) {
        st = bad(r->err_param, "input", err, "'input' is required: a string, an array of strings, or token ids");
        goto fail;
    }
    // a string, an array of token ids (one input), or an array of strings / token-id arrays (several)
    bool one =
        json_is_string(in) || (json_is_array(in) && json_array_size(in) && json_is_integer(json_array_get(in, 0)));
    if (!one && !json_is_array(in)) {
        st = bad(r->err_param, "input", err, "'input' must be a string, an array of strings, or token ids");
        goto fail;
    }
    size_t n = one ? 1 : json_array_size(in);
    if (n == 0) {
        st = bad(r->err_param, "input", err, "'input' is an empty array");
        goto fail;
    }
    if (n > AERO_REQ_MAX_EMBED) {
        st = bad(r->err_param, "input", err, "'input' has %zu entries; at most %d per request", n, AERO_REQ_MAX_EMBED);
        goto fail;
    }
    r->in = calloc(n, sizeof *r->in);
    if (!r->in) {
        st = aero_fail(err, AERO_ERR_NOMEM, "out of memory reading input");
        goto fail;
    }
    r->n = (int)n;
    for (size_t i = 0; i < n; i++) {
        json_t *e = one ? in : json_array_get(in, i);
        char where[48];
        snprintf(where, sizeof where, one ? "input" : "input[%zu]", i);
        if (json_is_string(e)) {
            r->in[i].text = json_string_value(e);
            r->in[i].len = json_string_length(e);
            if (r->in[i].len == 0) {
                st = bad(r->err_param, "input", err, "'%s' is an empty string", where);
                goto fail;
            }
        } else if (json_is_array(e) && (one || json_array_size(e) == 0 || json_is_integer(json_array_get(e, 0)))) {
            if ((st = embed_ids(&r->in[i], e, where, n_vocab, r->err_param, err))) goto fail;
        } else {
            st = bad(r->err_param, "input", err, "'%s' must be a string or an array of token ids", where);
            goto fail;
        }
    }
    return AERO_OK;
fail:
    aero_req_embed_free(r);
    return st;
}

void aero_req_embed_free(aero_embed_req *r) {
    for (int i = 0; r->in && i < r->n; i++) free(r->in[i].ids);
    free(r->in);
    json_decref(r->root);
    char param[64];
    memcpy(param, r->err_param, sizeof param);
    memset(r, 0, sizeof *r);
    memcpy(r->err_param, param, sizeof param);
}
