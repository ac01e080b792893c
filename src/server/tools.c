// Tool calls (see tools.h): format detection from a template's markers, the forcing grammar, and the parser.
#include "tools.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../sample/json_grammar.h"

#define HERMES_OPEN "<tool_call>"
#define HERMES_CLOSE "</tool_call>"
#define MISTRAL_TAG "[TOOL_CALLS]"
#define LLAMA_TAG "<|python_tag|>"
#define DS_CALLS_BEGIN              \
    "<\xef\xbd\x9ctool\xe2\x96\x81" \
    "calls\xe2\x96\x81"             \
    "begin\xef\xbd\x9c>"
#define DS_CALLS_END                \
    "<\xef\xbd\x9ctool\xe2\x96\x81" \
    "calls\xe2\x96\x81"             \
    "end\xef\xbd\x9c>"
#define DS_CALL_BEGIN               \
    "<\xef\xbd\x9ctool\xe2\x96\x81" \
    "call\xe2\x96\x81"              \
    "begin\xef\xbd\x9c>"
#define DS_CALL_END                 \
    "<\xef\xbd\x9ctool\xe2\x96\x81" \
    "call\xe2\x96\x81"              \
    "end\xef\xbd\x9c>"
#define DS_SEP                      \
    "<\xef\xbd\x9ctool\xe2\x96\x81" \
    "sep\xef\xbd\x9c>"

enum { INCOMPLETE = -1, INVALID = -2 };

aero_tool_style aero_tool_style_detect(const char *src) {
    aero_tool_style st = {AERO_TOOLS_UNSUPPORTED, false};
    if (!src) return st;
    st.renders_tools = strstr(src, "tools") != NULL;
    if (!st.renders_tools && !strstr(src, "tool_calls")) return st;
    // the markers a template writes for calls in the history are the ones its model writes
    if (strstr(src, MISTRAL_TAG)) st.format = AERO_TOOLS_MISTRAL;
    else if (strstr(src, "tool\xe2\x96\x81"
                         "calls\xe2\x96\x81"
                         "begin"))
        st.format = strstr(src, "```json") ? AERO_TOOLS_DEEPSEEK : AERO_TOOLS_DEEPSEEK_V31;
    else if (strstr(src, HERMES_OPEN)) st.format = AERO_TOOLS_HERMES;
    else if (strstr(src, LLAMA_TAG) || strstr(src, "ipython")) st.format = AERO_TOOLS_LLAMA3;
    else st.format = AERO_TOOLS_GENERIC;
    return st;
}

const char *aero_tool_format_name(aero_tool_format f) {
    switch (f) {
    case AERO_TOOLS_GENERIC: return "generic";
    case AERO_TOOLS_HERMES: return "hermes";
    case AERO_TOOLS_LLAMA3: return "llama3";
    case AERO_TOOLS_MISTRAL: return "mistral";
    case AERO_TOOLS_DEEPSEEK: return "deepseek";
    case AERO_TOOLS_DEEPSEEK_V31: return "deepseek-v3.1";
    default: return "none";
    }
}

// ---- parsing ----

static long skip_ws(const char *s, long n, long i) {
    while (i < n && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r')) i++;
    return i;
}

static bool starts(const char *s, long n, long i, const char *m) {
    long k = (long)strlen(m);
    return n - i >= k && !memcmp(s + i, m, (size_t)k);
}

// Whether s[i..n) is a proper start of m (the rest may still come).
static bool starts_partial(const char *s, long n, long i, const char *m) {
    long k = (long)strlen(m);
    return n - i < k && !memcmp(s + i, m, (size_t)(n - i));
}

static long find(const char *s, long n, long from, const char *m) {
    long k = (long)strlen(m);
    for (long i = from; i + k <= n; i++)
        if (!memcmp(s + i, m, (size_t)k)) return i;
    return -1;
}

// Bytes at the end of s that could begin m: held back from a stream until the next bytes decide.
static long held_prefix(const char *s, long n, const char *m) {
    long k = (long)strlen(m);
    for (long l = k - 1 < n ? k - 1 : n; l > 0; l--)
        if (!memcmp(s + n - l, m, (size_t)l)) return l;
    return 0;
}

// The end of the JSON value starting at s[i]: past its last byte, INCOMPLETE when the text stops inside it,
// INVALID when it cannot be JSON. Brackets are matched; scalars end at a delimiter.
static long value_end(const char *s, long n, long i) {
    if (i >= n) return INCOMPLETE;
    char stack[64];
    int depth = 0;
    bool in_str = false;
    for (long j = i; j < n; j++) {
        char c = s[j];
        if (in_str) {
            if (c == '\\') j++;
            else if (c == '"') {
                in_str = false;
                if (depth == 0) return j + 1;
            }
            continue;
        }
        if (c == '"') in_str = true;
        else if (c == '{' || c == '[') {
            if (depth == (int)sizeof stack) return INVALID;
            stack[depth++] = c == '{' ? '}' : ']';
        } else if (c == '}' || c == ']') {
            if (depth == 0 || stack[depth - 1] != c) return j > i && depth == 0 ? j : INVALID;
            if (--depth == 0) return j + 1;
        } else if (depth == 0) {
            if (j == i && !strchr("-0123456789tfn", c)) return INVALID;
            if (c == ',' || c == ' ' || c == '\n' || c == '\t' || c == '\r') return j > i ? j : INVALID;
        }
    }
    return INCOMPLETE;
}

// Copies a JSON string's body (escapes kept as written but for \" and \\) into out.
static void copy_name(const char *s, long from, long to, char *out, size_t cap) {
    size_t o = 0;
    for (long j = from; j < to && o + 1 < cap; j++) {
        if (s[j] == '\\' && j + 1 < to) j++;
        out[o++] = s[j];
    }
    out[o] = 0;
}

// {"name": "N", "arguments": {...}} (args_key2 accepted too, e.g. Llama's "parameters"); returns the index past
// the object, INCOMPLETE (c holds what was read) or INVALID.
static long parse_call_object(const char *s, long n, long i, aero_tool_call *c) {
    if (i >= n) return INCOMPLETE;
    if (s[i] != '{') return INVALID;
    i++;
    for (;;) {
        i = skip_ws(s, n, i);
        if (i >= n) return INCOMPLETE;
        if (s[i] == '}') return i + 1;
        if (s[i] != '"') return INVALID;
        long ke = value_end(s, n, i);
        if (ke < 0) return ke;
        char key[32];
        copy_name(s, i + 1, ke - 1, key, sizeof key);
        i = skip_ws(s, n, ke);
        if (i >= n) return INCOMPLETE;
        if (s[i] != ':') return INVALID;
        i = skip_ws(s, n, i + 1);
        if (i >= n) return INCOMPLETE;
        long ve = value_end(s, n, i);
        if (!strcmp(key, "name")) {
            if (s[i] != '"') return INVALID;
            if (ve == INVALID) return INVALID;
            if (ve == INCOMPLETE) return INCOMPLETE; // the name is sent whole
            copy_name(s, i + 1, ve - 1, c->name, sizeof c->name);
            c->name_done = true;
        } else if (!strcmp(key, "arguments") || !strcmp(key, "parameters")) {
            c->args_off = (size_t)i;
            if (ve == INVALID) return INVALID;
            c->args_len = (size_t)((ve == INCOMPLETE ? n : ve) - i);
            if (ve == INCOMPLETE) return INCOMPLETE;
            c->args_done = true;
        } else if (ve < 0) {
            return ve;
        }
        i = skip_ws(s, n, ve);
        if (i >= n) return INCOMPLETE;
        if (s[i] == ',') {
            i++;
            continue;
        }
        if (s[i] == '}') return i + 1;
        return INVALID;
    }
}

// Takes a new call slot; NULL when full.
static aero_tool_call *new_call(aero_tool_parse *p) {
    if (p->n_calls == AERO_TOOL_MAX_CALLS) return NULL;
    aero_tool_call *c = &p->calls[p->n_calls++];
    memset(c, 0, sizeof *c);
    return c;
}

// Whether a call names one of the request's tools.
static bool known_tool(const json_t *tools, const char *name) {
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) {
        const char *n = json_string_value(json_object_get(json_object_get(t, "function"), "name"));
        if (n && !strcmp(n, name)) return true;
    }
    return false;
}

// Marker formats: content until the marker (holding back what may begin it), then calls.
static long content_until(const char *s, long n, bool partial, const char *marker, aero_tool_parse *p) {
    long m = find(s, n, 0, marker);
    if (m < 0) {
        p->content_len = (size_t)(partial ? n - held_prefix(s, n, marker) : n);
        return -1;
    }
    p->content_len = (size_t)m;
    return m + (long)strlen(marker);
}

// Hermes: <tool_call> {json} </tool_call>, repeated.
static bool parse_hermes(const char *s, long n, bool partial, aero_tool_parse *p) {
    long i = find(s, n, 0, HERMES_OPEN);
    if (content_until(s, n, partial, HERMES_OPEN, p) < 0) return false;
    for (;;) {
        i = skip_ws(s, n, i);
        if (i >= n || starts_partial(s, n, i, HERMES_OPEN)) return p->n_calls > 0;
        if (!starts(s, n, i, HERMES_OPEN)) return p->n_calls > 0; // text after the calls is dropped
        i = skip_ws(s, n, i + (long)strlen(HERMES_OPEN));
        aero_tool_call *c = new_call(p);
        if (!c) return true;
        long e = parse_call_object(s, n, i, c);
        if (e < 0) return false;
        i = skip_ws(s, n, e);
        if (i >= n || starts_partial(s, n, i, HERMES_CLOSE)) return false;
        if (!starts(s, n, i, HERMES_CLOSE)) return false;
        i += (long)strlen(HERMES_CLOSE);
    }
}

// Mistral: [TOOL_CALLS] [ {json}, ... ]
static bool parse_mistral(const char *s, long n, bool partial, aero_tool_parse *p) {
    long i = content_until(s, n, partial, MISTRAL_TAG, p);
    if (i < 0) return false;
    i = skip_ws(s, n, i);
    if (i >= n || s[i] != '[') return false;
    i++;
    for (;;) {
        i = skip_ws(s, n, i);
        aero_tool_call *c = new_call(p);
        if (!c) return true;
        long e = parse_call_object(s, n, i, c);
        if (e < 0) return false;
        i = skip_ws(s, n, e);
        if (i >= n) return false;
        if (s[i] == ']') return true;
        if (s[i] != ',') return false;
        i++;
    }
}

// A Python literal of a builtin call's argument as JSON, or NULL.
static json_t *py_literal(const char *s, long n, long *i) {
    long j = *i;
    if (j < n && (s[j] == '"' || s[j] == '\'')) {
        char q = s[j++];
        char *buf = malloc((size_t)(n - j) + 1);
        size_t o = 0;
        while (buf && j < n && s[j] != q) {
            if (s[j] == '\\' && j + 1 < n) j++;
            buf[o++] = s[j++];
        }
        if (!buf || j >= n) {
            free(buf);
            return NULL;
        }
        json_t *v = json_stringn(buf, o);
        free(buf);
        *i = j + 1;
        return v;
    }
    long k = j;
    while (k < n && s[k] != ',' && s[k] != ')' && s[k] != ' ') k++;
    char tok[64];
    if (k == j || k - j >= (long)sizeof tok) return NULL;
    memcpy(tok, s + j, (size_t)(k - j));
    tok[k - j] = 0;
    *i = k;
    if (!strcmp(tok, "True")) return json_true();
    if (!strcmp(tok, "False")) return json_false();
    if (!strcmp(tok, "None")) return json_null();
    char *end;
    double d = strtod(tok, &end);
    if (*end) return NULL;
    return strchr(tok, '.') || strchr(tok, 'e') ? json_real(d) : json_integer((json_int_t)d);
}

// Llama's built-in tools: NAME.call(key="value", ...) after <|python_tag|>.
static bool parse_python_call(const char *s, long n, long i, aero_tool_parse *p) {
    long j = i;
    while (j < n && (s[j] == '_' || (s[j] >= 'a' && s[j] <= 'z') || (s[j] >= 'A' && s[j] <= 'Z') ||
                     (j > i && s[j] >= '0' && s[j] <= '9')))
        j++;
    if (j == i || j - i >= 127) return false;
    aero_tool_call *c = new_call(p);
    if (!c) return false;
    memcpy(c->name, s + i, (size_t)(j - i));
    c->name[j - i] = 0;
    c->name_done = true;
    if (starts(s, n, j, ".call")) j += 5;
    if (j >= n || s[j] != '(') return false;
    j++;
    json_t *args = json_object();
    for (;;) {
        j = skip_ws(s, n, j);
        if (j < n && s[j] == ')') break;
        long k = j;
        while (k < n && s[k] != '=' && s[k] != ')') k++;
        if (k >= n || s[k] != '=') goto bad;
        char key[128];
        long kl = k - j;
        while (kl > 0 && s[j + kl - 1] == ' ') kl--;
        if (kl <= 0 || kl >= (long)sizeof key) goto bad;
        memcpy(key, s + j, (size_t)kl);
        key[kl] = 0;
        j = skip_ws(s, n, k + 1);
        json_t *v = py_literal(s, n, &j);
        if (!v) goto bad;
        json_object_set_new(args, key, v);
        j = skip_ws(s, n, j);
        if (j < n && s[j] == ',') j++;
    }
    c->args_owned = json_dumps(args, JSON_COMPACT);
    json_decref(args);
    c->args_done = c->args_owned != NULL;
    return c->args_done;
bad:
    json_decref(args);
    return false;
}

// JSON calls without a marker (Llama 3, generic): the output is a call object (or several, ';'-separated, or an
// array of them) naming a known tool; anything else is text. Llama's <|python_tag|> may lead.
static bool parse_bare(const char *s, long n, bool partial, bool llama, const json_t *tools, aero_tool_parse *p) {
    long i = skip_ws(s, n, 0);
    bool tag = false;
    if (llama && starts(s, n, i, LLAMA_TAG)) {
        i = skip_ws(s, n, i + (long)strlen(LLAMA_TAG));
        tag = true;
    }
    if (partial && (i >= n || (llama && !tag && starts_partial(s, n, i, LLAMA_TAG)))) {
        p->content_len = 0; // not yet known whether a call starts
        return false;
    }
    if (i >= n || (s[i] != '{' && s[i] != '[')) {
        if (tag && !partial && parse_python_call(s, n, i, p)) return true;
        p->content_len = tag ? 0 : (size_t)n;
        p->n_calls = 0;
        return false;
    }
    p->content_len = 0;
    bool array = s[i] == '[';
    if (array) i++;
    for (;;) {
        i = skip_ws(s, n, i);
        aero_tool_call *c = new_call(p);
        if (!c) return true;
        long e = parse_call_object(s, n, i, c);
        if (c->name_done && !known_tool(tools, c->name)) e = INVALID;
        if (e == INVALID) {
            p->n_calls = 0;
            p->content_len = partial ? 0 : (size_t)n; // at the end it is shown as text
            return false;
        }
        if (e < 0) return false;
        i = skip_ws(s, n, e);
        if (i >= n) return !array;
        if (array && s[i] == ']') return true;
        if (s[i] == ',' || s[i] == ';') {
            i++;
            continue;
        }
        return p->n_calls > 0; // text after the calls is dropped
    }
}

// DeepSeek: <｜tool▁calls▁begin｜> (<｜tool▁call▁begin｜> ... <｜tool▁call▁end｜>)+ <｜tool▁calls▁end｜>
static bool parse_deepseek(const char *s, long n, bool partial, aero_tool_parse *p) {
    long i = content_until(s, n, partial, DS_CALLS_BEGIN, p);
    if (i < 0) return false;
    for (;;) {
        i = skip_ws(s, n, i);
        if (i >= n || starts_partial(s, n, i, DS_CALLS_END) || starts(s, n, i, DS_CALLS_END))
            return p->n_calls > 0 && (!partial || i < n);
        if (!starts(s, n, i, DS_CALL_BEGIN)) return false;
        i += (long)strlen(DS_CALL_BEGIN);
        long sep = find(s, n, i, DS_SEP);
        if (sep < 0) return false;
        aero_tool_call *c = new_call(p);
        if (!c) return true;
        long a;
        if (sep - i == 8 && !memcmp(s + i, "function", 8)) { // V3/R1: the name, then a ```json block
            long nl = find(s, n, sep, "\n");
            if (nl < 0) return false;
            long from = sep + (long)strlen(DS_SEP);
            copy_name(s, from, nl, c->name, sizeof c->name);
            c->name_done = true;
            a = skip_ws(s, n, nl);
            if (starts_partial(s, n, a, "```json")) return false;
            if (!starts(s, n, a, "```json")) return false;
            a = skip_ws(s, n, a + 7);
        } else { // V3.1: the name before the separator
            copy_name(s, i, sep, c->name, sizeof c->name);
            c->name_done = true;
            a = skip_ws(s, n, sep + (long)strlen(DS_SEP));
        }
        if (a >= n) return false;
        long e = value_end(s, n, a);
        c->args_off = (size_t)a;
        if (e == INVALID) return false;
        c->args_len = (size_t)((e == INCOMPLETE ? n : e) - a);
        if (e == INCOMPLETE) return false;
        c->args_done = true;
        i = skip_ws(s, n, e);
        if (starts(s, n, i, "```")) i = skip_ws(s, n, i + 3);
        if (!starts(s, n, i, DS_CALL_END)) return false;
        i += (long)strlen(DS_CALL_END);
    }
}

void aero_tool_parse_output(aero_tool_format f, const char *text, size_t len, bool partial, const json_t *tools,
                            aero_tool_parse *out) {
    memset(out, 0, sizeof *out);
    long n = (long)len;
    bool ok = false;
    switch (f) {
    case AERO_TOOLS_HERMES: ok = parse_hermes(text, n, partial, out); break;
    case AERO_TOOLS_MISTRAL: ok = parse_mistral(text, n, partial, out); break;
    case AERO_TOOLS_LLAMA3: ok = parse_bare(text, n, partial, true, tools, out); break;
    case AERO_TOOLS_GENERIC: ok = parse_bare(text, n, partial, false, tools, out); break;
    case AERO_TOOLS_DEEPSEEK:
    case AERO_TOOLS_DEEPSEEK_V31: ok = parse_deepseek(text, n, partial, out); break;
    default: out->content_len = len; return;
    }
    int whole = 0; // leading complete calls
    while (whole < out->n_calls && out->calls[whole].name_done && out->calls[whole].args_done) whole++;
    if (!partial && !ok && whole > 0 && out->content_len < len) { // cut short (length) after complete calls
        for (int i = whole; i < out->n_calls; i++) free(out->calls[i].args_owned);
        out->n_calls = whole;
        ok = true;
    }
    out->calls_ok = ok && whole == out->n_calls && out->n_calls > 0;
    if (!partial && !out->calls_ok) { // a final output that is not a complete call is text
        aero_tool_parse_free(out);
        out->content_len = len;
    }
}

void aero_tool_parse_free(aero_tool_parse *p) {
    for (int i = 0; i < p->n_calls; i++) free(p->calls[i].args_owned);
    memset(p, 0, sizeof *p);
}

char *aero_tool_call_arguments(const aero_tool_parse *p, int i, const char *text) {
    const aero_tool_call *c = &p->calls[i];
    if (c->args_owned) return strdup(c->args_owned);
    const char *a = text + c->args_off;
    size_t n = c->args_len;
    if (n && a[0] == '"') { // a model that wrote the arguments as a JSON string: OpenAI's value is that string
        json_t *v = json_loadb(a, n, JSON_DECODE_ANY, NULL);
        char *s = json_is_string(v) ? strdup(json_string_value(v)) : NULL;
        json_decref(v);
        if (s) return s;
    }
    char *s = malloc(n + 1);
    if (!s) return NULL;
    memcpy(s, a, n);
    s[n] = 0;
    return s;
}

// ---- the forcing grammar ----

// A rule matching the literal bytes of s.
static int lit_rule(aero_grammar *g, const char *s) {
    int r = aero_grammar_add_rule(g);
    if (r < 0) return -1;
    size_t n = strlen(s);
    aero_gel *els = malloc(sizeof *els * (n ? n : 1));
    if (!els) return -1;
    for (size_t i = 0; i < n; i++) {
        aero_cset c = {{0}};
        aero_cset_add(&c, (unsigned char)s[i]);
        els[i] = (aero_gel){AERO_GEL_CHARS, aero_grammar_cset(g, &c)};
        if (els[i].arg < 0) {
            free(els);
            return -1;
        }
    }
    bool ok = aero_grammar_add_alt(g, r, els, (int)n);
    free(els);
    return ok ? r : -1;
}

// A rule that is the sequence of the given rules.
static int seq_rule(aero_grammar *g, const int *rules, int n) {
    int r = aero_grammar_add_rule(g);
    aero_gel els[16];
    for (int i = 0; i < n; i++) {
        if (rules[i] < 0) return -1;
        els[i] = (aero_gel){AERO_GEL_RULE, rules[i]};
    }
    return r >= 0 && aero_grammar_add_alt(g, r, els, n) ? r : -1;
}

// one (sep one)*: a rule for one or more items.
static int repeat_rule(aero_grammar *g, int one, int sep) {
    int r = aero_grammar_add_rule(g);
    if (r < 0 || one < 0 || sep < 0) return -1;
    aero_gel a[] = {{AERO_GEL_RULE, one}};
    aero_gel b[] = {{AERO_GEL_RULE, one}, {AERO_GEL_RULE, sep}, {AERO_GEL_RULE, r}};
    return aero_grammar_add_alt(g, r, a, 1) && aero_grammar_add_alt(g, r, b, 3) ? r : -1;
}

// A tool's parameters schema ({} when absent: any object).
static json_t *params_of(const json_t *tool) {
    json_t *p = json_object_get(json_object_get(tool, "function"), "parameters");
    return p ? json_incref(p) : json_pack("{s:s}", "type", "object");
}

static const char *name_of(const json_t *tool) {
    return json_string_value(json_object_get(json_object_get(tool, "function"), "name"));
}

aero_status aero_tool_grammar(aero_grammar **out, aero_tool_format f, const json_t *tools, const char *name,
                              bool parallel, char *keyword, aero_error *err) {
    *out = NULL;
    bool ds = f == AERO_TOOLS_DEEPSEEK || f == AERO_TOOLS_DEEPSEEK_V31;
    const char *args_key = f == AERO_TOOLS_LLAMA3 ? "parameters" : "arguments";
    // the call as a JSON schema: {"name": const, ARGS: parameters} per tool. DeepSeek writes the name outside
    // the JSON: there each tool's parameters are compiled apart and joined with its name, so a call's arguments
    // always match its own tool.
    json_t *alts = json_array();
    size_t i;
    json_t *t;
    int n_tools = 0;
    aero_grammar *g = ds ? aero_grammar_new() : NULL;
    int ds_one = g ? aero_grammar_add_rule(g) : -1;
    aero_status st = AERO_OK;
    json_array_foreach(tools, i, t) {
        const char *n = name_of(t);
        if (!n || (name && strcmp(n, name))) continue;
        n_tools++;
        if (!ds) {
            json_array_append_new(alts,
                                  json_pack("{s:s, s:{s:{s:s}, s:o}, s:[s, s]}", "type", "object", "properties", "name",
                                            "const", n, args_key, params_of(t), "required", "name", args_key));
            continue;
        }
        json_t *ps = params_of(t);
        aero_grammar *pg = NULL;
        st = g ? aero_json_grammar_compile(&pg, ps, keyword, err) : aero_fail(err, AERO_ERR_NOMEM, "out of memory");
        json_decref(ps);
        if (st) break;
        int args = aero_grammar_import(g, pg);
        aero_grammar_free(pg);
        int one = f == AERO_TOOLS_DEEPSEEK
                      ? seq_rule(g,
                                 (int[]){lit_rule(g, DS_CALL_BEGIN "function" DS_SEP), lit_rule(g, n),
                                         lit_rule(g, "\n```json\n"), args, lit_rule(g, "\n```" DS_CALL_END)},
                                 5)
                      : seq_rule(g,
                                 (int[]){lit_rule(g, DS_CALL_BEGIN), lit_rule(g, n), lit_rule(g, DS_SEP), args,
                                         lit_rule(g, DS_CALL_END)},
                                 5);
        aero_gel e[] = {{AERO_GEL_RULE, one}};
        if (one < 0 || ds_one < 0 || !aero_grammar_add_alt(g, ds_one, e, 1)) {
            st = aero_fail(err, AERO_ERR_NOMEM, "out of memory building the tool-call grammar");
            break;
        }
    }
    if (!st && n_tools == 0)
        st = aero_fail(err, AERO_ERR_INVALID, "tool_choice names '%s', which is not in 'tools'", name ? name : "");
    if (!st && !ds) {
        json_t *schema =
            json_array_size(alts) == 1 ? json_incref(json_array_get(alts, 0)) : json_pack("{s:O}", "anyOf", alts);
        st = aero_json_grammar_compile(&g, schema, keyword, err);
        json_decref(schema);
    }
    json_decref(alts);
    if (st) {
        aero_grammar_free(g);
        return st;
    }
    int call = ds ? -1 : aero_grammar_root(g), root = -1;
    switch (f) {
    case AERO_TOOLS_HERMES: {
        int one = seq_rule(g, (int[]){lit_rule(g, HERMES_OPEN "\n"), call, lit_rule(g, "\n" HERMES_CLOSE)}, 3);
        root = parallel ? repeat_rule(g, one, lit_rule(g, "\n")) : one;
        break;
    }
    case AERO_TOOLS_MISTRAL: {
        int body = parallel ? repeat_rule(g, call, lit_rule(g, ", ")) : call;
        root = seq_rule(g, (int[]){lit_rule(g, MISTRAL_TAG "["), body, lit_rule(g, "]")}, 3);
        break;
    }
    case AERO_TOOLS_LLAMA3: root = parallel ? repeat_rule(g, call, lit_rule(g, "; ")) : call; break;
    case AERO_TOOLS_DEEPSEEK:
    case AERO_TOOLS_DEEPSEEK_V31: {
        int body = parallel ? repeat_rule(g, ds_one, lit_rule(g, "\n")) : ds_one;
        root = seq_rule(g, (int[]){lit_rule(g, DS_CALLS_BEGIN), body, lit_rule(g, DS_CALLS_END)}, 3);
        break;
    }
    default: // generic
        root =
            parallel
                ? seq_rule(g, (int[]){lit_rule(g, "["), repeat_rule(g, call, lit_rule(g, ", ")), lit_rule(g, "]")}, 3)
                : call;
    }
    if (root < 0) {
        aero_grammar_free(g);
        return aero_fail(err, AERO_ERR_NOMEM, "out of memory building the tool-call grammar");
    }
    aero_grammar_set_root(g, root);
    if ((st = aero_grammar_check(g, err))) {
        aero_grammar_free(g);
        return st;
    }
    *out = g;
    return AERO_OK;
}

char *aero_tool_system_text(const json_t *tools, aero_tool_format f) {
    (void)f;
    char *list = json_dumps(tools, JSON_COMPACT);
    if (!list) return NULL;
    const char *head = "You can call the following tools (OpenAI function definitions). To call one, write the tool "
                       "call in your usual format with the function's name and its arguments as JSON.\n";
    size_t n = strlen(head) + strlen(list) + 1;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s%s", head, list);
    free(list);
    return s;
}
