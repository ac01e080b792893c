// The JSON-schema compiler. Each schema becomes a rule matching one JSON value; the shared pieces (strings,
// numbers, whitespace, any value) are built once per grammar. Repetitions with bounds become chains of
// rules, so the recognizer counts without counters.
#include "json_grammar.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64     // nesting of schemas (not of the JSON produced)
#define MAX_REPEAT 10000 // largest explicit bound (maxLength, maxItems)
#define MAX_RANGE 10000  // integer ranges enumerated as digit tries
#define MAX_SEQ 64
#define MAX_REFS 256

typedef struct {
    aero_gel e[MAX_SEQ];
    int n;
} seq;

typedef struct {
    aero_grammar *g;
    const json_t *root;
    aero_error *err;
    char *keyword;
    aero_status st;
    int depth;
    char path[256];
    // shared rules, -1 until built
    int ws, value, object, array, string, strchar, utf8, number, integer, nn_integer, pos_integer, boolean, null,
        digits15, frac, exp, esc;
    struct {
        const json_t *schema;
        int rule;
    } refs[MAX_REFS];
    int n_refs;
} jc;

// Records the first failure (later ones would only describe its consequences).
static int fail(jc *c, aero_status st, const char *kw, const char *fmt, ...) {
    if (c->st) return -1;
    c->st = st;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (kw && c->keyword) snprintf(c->keyword, 64, "%s", kw);
    aero_fail(c->err, st, "%s%s%s", msg, c->path[0] ? " at " : "", c->path);
    return -1;
}

static int oom(jc *c) { return fail(c, AERO_ERR_NOMEM, NULL, "out of memory compiling the JSON schema"); }

// A rule, or -1 once anything failed (later steps then do nothing).
static int new_rule(jc *c) {
    int r = c->st ? -1 : aero_grammar_add_rule(c->g);
    if (r < 0 && !c->st) oom(c);
    return r;
}

static aero_gel R(int rule) { return (aero_gel){AERO_GEL_RULE, rule}; }

// A byte class element from a string of members and ranges written "a-z".
static aero_gel C(jc *c, const char *spec) {
    aero_cset s = {{0}};
    for (const unsigned char *p = (const unsigned char *)spec; *p; p++) {
        if (p[1] == '-' && p[2]) {
            aero_cset_range(&s, p[0], p[2]);
            p += 2;
        } else {
            aero_cset_add(&s, *p);
        }
    }
    int i = aero_grammar_cset(c->g, &s);
    if (i < 0) oom(c);
    return (aero_gel){AERO_GEL_CHARS, i < 0 ? 0 : i};
}

static aero_gel B(jc *c, unsigned char b) {
    aero_cset s = {{0}};
    aero_cset_add(&s, b);
    int i = aero_grammar_cset(c->g, &s);
    if (i < 0) oom(c);
    return (aero_gel){AERO_GEL_CHARS, i < 0 ? 0 : i};
}

// Adds an alternative given as n elements.
static void alt(jc *c, int rule, int n, ...) {
    if (c->st || rule < 0) return;
    seq s = {.n = 0};
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n && i < MAX_SEQ; i++) s.e[s.n++] = va_arg(ap, aero_gel);
    va_end(ap);
    for (int i = 0; i < s.n; i++)
        if (s.e[i].kind == AERO_GEL_RULE && s.e[i].arg < 0) return; // a part failed; the error is recorded
    if (!aero_grammar_add_alt(c->g, rule, s.e, s.n)) oom(c);
}

// A rule matching exactly the given bytes.
static int literal(jc *c, const char *s, size_t n) {
    int r = new_rule(c);
    if (r < 0) return -1;
    aero_gel *e = malloc(sizeof *e * (n ? n : 1));
    if (!e) return oom(c);
    for (size_t i = 0; i < n; i++) e[i] = B(c, (unsigned char)s[i]);
    if (!c->st && !aero_grammar_add_alt(c->g, r, e, (int)n)) oom(c);
    free(e);
    return c->st ? -1 : r;
}

static int literal_z(jc *c, const char *s) { return literal(c, s, strlen(s)); }

// A rule matching the compact JSON text of v.
static int json_literal(jc *c, const json_t *v) {
    char *txt = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!txt) return oom(c);
    int r = literal_z(c, txt);
    free(txt);
    return r;
}

// elem repeated min..max times (max < 0: no limit), as a chain of rules.
static int repeat(jc *c, aero_gel elem, int min, int max) {
    int tail = new_rule(c);
    if (tail < 0) return -1;
    if (max < 0) { // tail ::= elem tail | ε
        alt(c, tail, 2, elem, R(tail));
        alt(c, tail, 0);
    } else { // opt_k ::= elem opt_{k-1} | ε
        alt(c, tail, 0);
        for (int k = 1; k <= max - min && !c->st; k++) {
            int r = new_rule(c);
            alt(c, r, 2, elem, R(tail));
            alt(c, r, 0);
            tail = r;
        }
    }
    for (int k = 0; k < min && !c->st; k++) {
        int r = new_rule(c);
        alt(c, r, 2, elem, R(tail));
        tail = r;
    }
    return c->st ? -1 : tail;
}

// Whitespace between tokens: nothing, a space, or a newline with up to 20 spaces or tabs of indentation (a
// bound, so a model cannot spend its tokens on blank space).
static int ws(jc *c) {
    if (c->ws >= 0) return c->ws;
    int ind = repeat(c, C(c, " \t"), 0, 20);
    int r = new_rule(c);
    alt(c, r, 0);
    alt(c, r, 1, B(c, ' '));
    alt(c, r, 2, B(c, '\n'), R(ind));
    return c->ws = c->st ? -1 : r;
}

// The ASCII bytes that stand for themselves inside a JSON string.
static aero_gel plain(jc *c) { return C(c, " !#-[]-~\x7f"); }

// A character of two to four bytes, exactly as UTF-8 allows (no overlongs, no surrogates, up to U+10FFFF),
// so what the grammar accepts is what JSON parsers accept.
static int utf8_multi(jc *c) {
    if (c->utf8 >= 0) return c->utf8;
    int r = new_rule(c);
    aero_gel k = C(c, "\x80-\xbf");
    alt(c, r, 2, C(c, "\xc2-\xdf"), k);
    alt(c, r, 3, B(c, 0xe0), C(c, "\xa0-\xbf"), k);
    alt(c, r, 3, C(c, "\xe1-\xec\xee\xef"), k, k);
    alt(c, r, 3, B(c, 0xed), C(c, "\x80-\x9f"), k);
    alt(c, r, 4, B(c, 0xf0), C(c, "\x90-\xbf"), k, k);
    alt(c, r, 4, C(c, "\xf1-\xf3"), k, k, k);
    alt(c, r, 4, B(c, 0xf4), C(c, "\x80-\x8f"), k, k);
    return c->utf8 = c->st ? -1 : r;
}

// What follows a backslash: a one-letter escape or \uXXXX, where a surrogate must come as a pair.
static int esc(jc *c) {
    if (c->esc >= 0) return c->esc;
    int r = new_rule(c);
    aero_gel hex = C(c, "0-9a-fA-F");
    alt(c, r, 1, C(c, "\"\\/bfnrt"));
    alt(c, r, 5, B(c, 'u'), C(c, "0-9a-cA-Ce-fE-F"), hex, hex, hex);
    alt(c, r, 5, B(c, 'u'), C(c, "dD"), C(c, "0-7"), hex, hex);
    alt(c, r, 11, B(c, 'u'), C(c, "dD"), C(c, "89abAB"), hex, hex, B(c, '\\'), B(c, 'u'), C(c, "dD"), C(c, "c-fC-F"),
        hex, hex);
    return c->esc = c->st ? -1 : r;
}

// Any JSON string: the body rule loops on itself, which the mask recognizes as a looping state.
static int string(jc *c) {
    if (c->string >= 0) return c->string;
    int body = new_rule(c), r = new_rule(c);
    alt(c, body, 2, plain(c), R(body));
    alt(c, body, 3, B(c, '\\'), R(esc(c)), R(body));
    alt(c, body, 2, R(utf8_multi(c)), R(body));
    alt(c, body, 1, B(c, '"'));
    alt(c, r, 2, B(c, '"'), R(body));
    return c->string = c->st ? -1 : r;
}

// One character of a string, as minLength and maxLength count them.
static int strchar(jc *c) {
    if (c->strchar >= 0) return c->strchar;
    int r = new_rule(c);
    alt(c, r, 1, plain(c));
    alt(c, r, 2, B(c, '\\'), R(esc(c)));
    alt(c, r, 1, R(utf8_multi(c)));
    return c->strchar = c->st ? -1 : r;
}

// A string of min..max characters (max < 0: no limit).
static int string_bounded(jc *c, int min, int max) {
    int req = min > 0 ? repeat(c, R(strchar(c)), min, min) : -1;
    int opt = repeat(c, R(strchar(c)), 0, max < 0 ? -1 : max - min);
    int r = new_rule(c);
    if (min > 0) alt(c, r, 4, B(c, '"'), R(req), R(opt), B(c, '"'));
    else alt(c, r, 3, B(c, '"'), R(opt), B(c, '"'));
    return c->st ? -1 : r;
}

// Up to 15 more digits: numbers stay within what a double holds, and a model cannot count forever.
static int digits15(jc *c) {
    if (c->digits15 < 0) c->digits15 = repeat(c, C(c, "0-9"), 0, 15);
    return c->digits15;
}

static int nn_integer(jc *c) { // 0 | [1-9][0-9]{0,15}
    if (c->nn_integer >= 0) return c->nn_integer;
    int r = new_rule(c);
    alt(c, r, 1, B(c, '0'));
    alt(c, r, 2, C(c, "1-9"), R(digits15(c)));
    return c->nn_integer = c->st ? -1 : r;
}

// Integers from 1 up (minimum 1).
static int pos_integer(jc *c) {
    if (c->pos_integer >= 0) return c->pos_integer;
    int r = new_rule(c);
    alt(c, r, 2, C(c, "1-9"), R(digits15(c)));
    return c->pos_integer = c->st ? -1 : r;
}

// Any integer, within 16 digits.
static int integer(jc *c) {
    if (c->integer >= 0) return c->integer;
    int r = new_rule(c);
    alt(c, r, 1, R(nn_integer(c)));
    alt(c, r, 2, B(c, '-'), R(nn_integer(c)));
    return c->integer = c->st ? -1 : r;
}

// Optional fraction and exponent after an integer part.
static int frac_exp(jc *c) {
    if (c->frac >= 0) return c->frac;
    int frac = new_rule(c), exp = new_rule(c), r = new_rule(c);
    int fd = repeat(c, C(c, "0-9"), 1, 15), ed = repeat(c, C(c, "0-9"), 1, 3);
    alt(c, frac, 0);
    alt(c, frac, 2, B(c, '.'), R(fd));
    alt(c, exp, 0);
    alt(c, exp, 2, C(c, "eE"), R(ed));
    alt(c, exp, 3, C(c, "eE"), C(c, "+-"), R(ed));
    alt(c, r, 2, R(frac), R(exp));
    return c->frac = c->st ? -1 : r;
}

// Any JSON number, within bounded digit counts.
static int number(jc *c) {
    if (c->number >= 0) return c->number;
    int r = new_rule(c);
    alt(c, r, 2, R(integer(c)), R(frac_exp(c)));
    return c->number = c->st ? -1 : r;
}

static int value(jc *c);

// Any JSON object (the rule exists before its alternatives, so values nested in it can refer back).
static int object_any(jc *c) {
    if (c->object >= 0) return c->object;
    int r = c->object = new_rule(c);
    int kv = new_rule(c), more = new_rule(c), w = ws(c);
    alt(c, kv, 5, R(string(c)), R(w), B(c, ':'), R(w), R(value(c)));
    alt(c, more, 0);
    alt(c, more, 5, R(w), B(c, ','), R(w), R(kv), R(more));
    alt(c, r, 6, B(c, '{'), R(w), R(kv), R(more), R(w), B(c, '}'));
    alt(c, r, 3, B(c, '{'), R(w), B(c, '}'));
    return c->st ? -1 : r;
}

static int array_of(jc *c, int item, int min, int max);

// Any JSON array (for values without a schema).
static int array_any(jc *c) {
    if (c->array >= 0) return c->array;
    c->array = new_rule(c); // placeholder so value() can refer to it while it is built
    int a = array_of(c, value(c), 0, -1);
    alt(c, c->array, 1, R(a));
    return c->st ? -1 : c->array;
}

// Any JSON value (json_object's members, schemas that say nothing).
static int value(jc *c) {
    if (c->value >= 0) return c->value;
    int r = c->value = new_rule(c);
    alt(c, r, 1, R(object_any(c)));
    alt(c, r, 1, R(array_any(c)));
    alt(c, r, 1, R(string(c)));
    alt(c, r, 1, R(number(c)));
    alt(c, r, 1, R(literal_z(c, "true")));
    alt(c, r, 1, R(literal_z(c, "false")));
    alt(c, r, 1, R(literal_z(c, "null")));
    return c->st ? -1 : r;
}

// "[" items "]" with min..max items (max < 0: no limit).
static int array_of(jc *c, int item, int min, int max) {
    int w = ws(c), r = new_rule(c);
    if (min == 0) alt(c, r, 3, B(c, '['), R(w), B(c, ']'));
    if (max != 0) {
        int sep_item = new_rule(c);
        alt(c, sep_item, 4, R(w), B(c, ','), R(w), R(item));
        int rest = repeat(c, R(sep_item), min > 0 ? min - 1 : 0, max < 0 ? -1 : max - 1);
        alt(c, r, 6, B(c, '['), R(w), R(item), R(rest), R(w), B(c, ']'));
    }
    return c->st ? -1 : r;
}

// Integers lo..hi as a trie of their decimal texts (each node a rule: deterministic for the recognizer).
static int int_range(jc *c, long long lo, long long hi) {
    // Build the trie over the strings level by level: node rules keyed by prefix would need a map; instead
    // recurse on digit prefixes with the range they cover.
    int r = new_rule(c);
    if (lo < 0) {
        long long nlo = hi < 0 ? -hi : 1, nhi = -lo; // negatives: "-" then the magnitudes
        int neg = int_range(c, nlo, nhi);
        alt(c, r, 2, B(c, '-'), R(neg));
        if (hi >= 0) alt(c, r, 1, R(int_range(c, 0, hi)));
        return c->st ? -1 : r;
    }
    // Non-negative: enumerate the numbers' texts, add each as an alternative through a shared-prefix trie.
    typedef struct node {
        int rule;
        bool end;
        int child[10];
    } node;
    int cap = 16, n = 1;
    node *t = calloc((size_t)cap, sizeof *t);
    if (!t) return oom(c);
    for (int i = 0; i < 10; i++) t[0].child[i] = -1;
    t[0].end = false;
    for (long long v = lo; v <= hi && !c->st; v++) {
        char buf[24];
        int len = snprintf(buf, sizeof buf, "%lld", v), at = 0;
        for (int k = 0; k < len; k++) {
            int d = buf[k] - '0';
            if (t[at].child[d] < 0) {
                if (n == cap) {
                    node *nt = realloc(t, sizeof *t * (size_t)(cap *= 2));
                    if (!nt) {
                        free(t);
                        return oom(c);
                    }
                    t = nt;
                }
                memset(&t[n], 0, sizeof t[n]);
                for (int i = 0; i < 10; i++) t[n].child[i] = -1;
                t[at].child[d] = n++;
            }
            at = t[at].child[d];
        }
        t[at].end = true;
    }
    for (int i = 0; i < n; i++) t[i].rule = i == 0 ? r : new_rule(c);
    for (int i = 0; i < n && !c->st; i++) {
        if (t[i].end) alt(c, t[i].rule, 0);
        for (int d = 0; d < 10; d++)
            if (t[i].child[d] >= 0) alt(c, t[i].rule, 2, B(c, (unsigned char)('0' + d)), R(t[t[i].child[d]].rule));
    }
    free(t);
    return c->st ? -1 : r;
}

// Keywords that describe but do not constrain: ignored.
static bool is_annotation(const char *k) {
    static const char *a[] = {"title",      "description", "default",   "examples", "$schema",     "$id", "$comment",
                              "deprecated", "readOnly",    "writeOnly", "$defs",    "definitions", NULL};
    for (int i = 0; a[i]; i++)
        if (!strcmp(k, a[i])) return true;
    return false;
}

// Keywords the compiler enforces; any other is refused by name.
static bool is_supported(const char *k) {
    static const char *s[] = {"type",
                              "properties",
                              "required",
                              "additionalProperties",
                              "items",
                              "minItems",
                              "maxItems",
                              "enum",
                              "const",
                              "anyOf",
                              "oneOf",
                              "allOf",
                              "$ref",
                              "minLength",
                              "maxLength",
                              "format",
                              "minimum",
                              "maximum",
                              "exclusiveMinimum",
                              "exclusiveMaximum",
                              "uniqueItems",
                              NULL};
    for (int i = 0; s[i]; i++)
        if (!strcmp(k, s[i])) return true;
    return false;
}

// Reads an optional non-negative integer keyword bounded by MAX_REPEAT; -1 when absent.
static int get_count(jc *c, const json_t *s, const char *key, int *out) {
    json_t *v = json_object_get(s, key);
    *out = -1;
    if (!v) return 0;
    double d = json_is_integer(v) ? (double)json_integer_value(v) : json_is_real(v) ? json_real_value(v) : -1;
    if (d < 0 || d != floor(d)) return fail(c, AERO_ERR_INVALID, key, "'%s' must be a non-negative integer", key);
    if (d > MAX_REPEAT)
        return fail(c, AERO_ERR_INVALID, key, "'%s' above %d is not supported in constrained output", key, MAX_REPEAT);
    *out = (int)d;
    return 0;
}

static int schema(jc *c, const json_t *s, const char *where);

// Resolves "#", "#/a/b" (JSON pointer) against the root schema.
static const json_t *resolve_ref(jc *c, const char *ref) {
    if (ref[0] != '#') return NULL;
    const json_t *at = c->root;
    const char *p = ref + 1;
    while (*p == '/' && at) {
        p++;
        char tok[256];
        size_t n = 0;
        while (*p && *p != '/' && n + 1 < sizeof tok) {
            if (p[0] == '~' && p[1] == '1') tok[n++] = '/', p += 2;
            else if (p[0] == '~' && p[1] == '0') tok[n++] = '~', p += 2;
            else tok[n++] = *p++;
        }
        tok[n] = 0;
        if (json_is_object(at)) at = json_object_get(at, tok);
        else if (json_is_array(at)) at = json_array_get(at, (size_t)strtoul(tok, NULL, 10));
        else at = NULL;
    }
    return *p ? NULL : at;
}

// A $ref becomes a rule created before its body, so recursive schemas terminate.
static int ref_rule(jc *c, const char *ref) {
    const json_t *target = resolve_ref(c, ref);
    if (!target) return fail(c, AERO_ERR_INVALID, "$ref", "'$ref' '%.100s' does not resolve within the schema", ref);
    for (int i = 0; i < c->n_refs; i++)
        if (c->refs[i].schema == target) return c->refs[i].rule;
    if (c->n_refs == MAX_REFS) return fail(c, AERO_ERR_INVALID, "$ref", "too many distinct '$ref' targets");
    int r = new_rule(c);
    c->refs[c->n_refs].schema = target;
    c->refs[c->n_refs++].rule = r;
    int body = schema(c, target, ref);
    alt(c, r, 1, R(body));
    return c->st ? -1 : r;
}

// An object with declared properties, written in declared order; required ones always appear, optional
// ones may be skipped. first[i]: from property i on, nothing written yet; after[i]: something was.
static int object_props(jc *c, const json_t *props, const json_t *required) {
    size_t n_req = json_is_array(required) ? json_array_size(required) : 0;
    size_t n_props = json_is_object(props) ? json_object_size(props) : 0;
    size_t n = 0, cap = n_props + n_req;
    int *kv = malloc(sizeof *kv * (cap ? cap : 1));
    bool *req = calloc(cap ? cap : 1, 1);
    if (!kv || !req) {
        free(kv);
        free(req);
        return oom(c);
    }
    int w = ws(c);
    const char *key;
    const json_t *sub;
    size_t plen = strlen(c->path);
    json_object_foreach((json_t *)props, key, sub) {
        bool is_req = false;
        for (size_t i = 0; i < n_req; i++) {
            const json_t *rk = json_array_get(required, i);
            if (json_is_string(rk) && !strcmp(json_string_value(rk), key)) is_req = true;
        }
        json_t *ks = json_string(key);
        int klit = ks ? json_literal(c, ks) : oom(c);
        json_decref(ks);
        snprintf(c->path + plen, sizeof c->path - plen, "/properties/%s", key);
        int v = schema(c, sub, NULL);
        c->path[plen] = 0;
        int r = new_rule(c);
        alt(c, r, 5, R(klit), R(w), B(c, ':'), R(w), R(v));
        req[n] = is_req;
        kv[n++] = r;
    }
    for (size_t i = 0; i < n_req; i++) { // required names without a declared schema: any value
        const json_t *rk = json_array_get(required, i);
        if (!json_is_string(rk)) {
            free(kv);
            free(req);
            return fail(c, AERO_ERR_INVALID, "required", "'required' must be an array of strings");
        }
        if (props && json_object_get(props, json_string_value(rk))) continue;
        int klit = json_literal(c, rk);
        int r = new_rule(c);
        alt(c, r, 5, R(klit), R(w), B(c, ':'), R(w), R(value(c)));
        req[n] = true;
        kv[n++] = r;
    }
    int first = new_rule(c), after = new_rule(c); // first[n], after[n]: the end
    alt(c, first, 0);
    alt(c, after, 0);
    for (size_t k = n; k-- > 0 && !c->st;) {
        int f = new_rule(c), a = new_rule(c);
        alt(c, f, 2, R(kv[k]), R(after));
        alt(c, a, 5, R(w), B(c, ','), R(w), R(kv[k]), R(after));
        if (!req[k]) {
            alt(c, f, 1, R(first));
            alt(c, a, 1, R(after));
        }
        first = f;
        after = a;
    }
    free(kv);
    free(req);
    int r = new_rule(c);
    alt(c, r, 5, B(c, '{'), R(w), R(first), R(w), B(c, '}'));
    return c->st ? -1 : r;
}

// Objects whose every value follows one schema (additionalProperties as a schema, no properties).
static int object_map(jc *c, int val) {
    int w = ws(c), kv = new_rule(c), more = new_rule(c), r = new_rule(c);
    alt(c, kv, 5, R(string(c)), R(w), B(c, ':'), R(w), R(val));
    alt(c, more, 0);
    alt(c, more, 5, R(w), B(c, ','), R(w), R(kv), R(more));
    alt(c, r, 6, B(c, '{'), R(w), R(kv), R(more), R(w), B(c, '}'));
    alt(c, r, 3, B(c, '{'), R(w), B(c, '}'));
    return c->st ? -1 : r;
}

// type object: declared properties, a map of one schema, '{}' only, or any object.
static int type_object(jc *c, const json_t *s) {
    const json_t *props = json_object_get(s, "properties"), *required = json_object_get(s, "required");
    const json_t *addl = json_object_get(s, "additionalProperties");
    if (props && !json_is_object(props))
        return fail(c, AERO_ERR_INVALID, "properties", "'properties' must be an object");
    if (required && !json_is_array(required))
        return fail(c, AERO_ERR_INVALID, "required", "'required' must be an array of strings");
    if (addl && !json_is_boolean(addl) && !json_is_object(addl))
        return fail(c, AERO_ERR_INVALID, "additionalProperties",
                    "'additionalProperties' must be a boolean or a schema");
    bool has_props = (props && json_object_size(props)) || (required && json_array_size(required));
    if (has_props) return object_props(c, props, required);
    if (json_is_false(addl)) return literal_z(c, "{}");
    if (json_is_object(addl) && json_object_size(addl)) {
        size_t plen = strlen(c->path);
        snprintf(c->path + plen, sizeof c->path - plen, "/additionalProperties");
        int v = schema(c, addl, NULL);
        c->path[plen] = 0;
        return object_map(c, v);
    }
    return object_any(c);
}

// type array: items with minItems/maxItems.
static int type_array(jc *c, const json_t *s) {
    const json_t *items = json_object_get(s, "items"), *uniq = json_object_get(s, "uniqueItems");
    if (json_is_true(uniq))
        return fail(c, AERO_ERR_INVALID, "uniqueItems", "'uniqueItems' is not supported in constrained output");
    int min, max;
    if (get_count(c, s, "minItems", &min) || get_count(c, s, "maxItems", &max)) return -1;
    if (min < 0) min = 0;
    if (max >= 0 && max < min) return fail(c, AERO_ERR_INVALID, "maxItems", "'maxItems' is below 'minItems'");
    int item;
    if (items) {
        size_t plen = strlen(c->path);
        snprintf(c->path + plen, sizeof c->path - plen, "/items");
        item = schema(c, items, NULL);
        c->path[plen] = 0;
    } else {
        item = value(c);
    }
    return array_of(c, item, min, max);
}

// date: YYYY-MM-DD with a day that exists in its month (February up to the 28th, every year has one).
static int fmt_date(jc *c) {
    int m31 = new_rule(c), m30 = new_rule(c), d31 = new_rule(c), d30 = new_rule(c), d28 = new_rule(c);
    int r = new_rule(c);
    aero_gel d = C(c, "0-9");
    alt(c, m31, 2, B(c, '0'), C(c, "13578"));
    alt(c, m31, 2, B(c, '1'), C(c, "02"));
    alt(c, m30, 2, B(c, '0'), C(c, "469"));
    alt(c, m30, 2, B(c, '1'), B(c, '1'));
    alt(c, d28, 2, B(c, '0'), C(c, "1-9"));
    alt(c, d28, 2, B(c, '1'), d);
    alt(c, d28, 2, B(c, '2'), C(c, "0-8"));
    alt(c, d30, 2, B(c, '0'), C(c, "1-9"));
    alt(c, d30, 2, C(c, "12"), d);
    alt(c, d30, 2, B(c, '3'), B(c, '0'));
    alt(c, d31, 1, R(d30));
    alt(c, d31, 2, B(c, '3'), B(c, '1'));
    int md = new_rule(c);
    alt(c, md, 3, R(m31), B(c, '-'), R(d31));
    alt(c, md, 3, R(m30), B(c, '-'), R(d30));
    alt(c, md, 4, B(c, '0'), B(c, '2'), B(c, '-'), R(d28));
    alt(c, r, 6, d, d, d, d, B(c, '-'), R(md));
    return c->st ? -1 : r;
}

// time (RFC 3339 full-time): hh:mm:ss, optional fraction, then Z or an offset.
static int fmt_time(jc *c) {
    int hh = new_rule(c), frac = new_rule(c), tz = new_rule(c), r = new_rule(c);
    aero_gel d = C(c, "0-9"), d5 = C(c, "0-5");
    alt(c, hh, 2, C(c, "01"), d);
    alt(c, hh, 2, B(c, '2'), C(c, "0-3"));
    alt(c, frac, 0);
    alt(c, frac, 2, B(c, '.'), R(repeat(c, d, 1, 6)));
    alt(c, tz, 1, C(c, "Zz"));
    alt(c, tz, 5, C(c, "+-"), R(hh), B(c, ':'), d5, d);
    alt(c, r, 9, R(hh), B(c, ':'), d5, d, B(c, ':'), d5, d, R(frac), R(tz));
    return c->st ? -1 : r;
}

// uuid: 8-4-4-4-12 lower-case hex digits.
static int fmt_uuid(jc *c) {
    aero_gel h = C(c, "0-9a-f");
    int h4 = repeat(c, h, 4, 4), h8 = repeat(c, h, 8, 8), h12 = repeat(c, h, 12, 12), r = new_rule(c);
    alt(c, r, 9, R(h8), B(c, '-'), R(h4), B(c, '-'), R(h4), B(c, '-'), R(h4), B(c, '-'), R(h12));
    return c->st ? -1 : r;
}

// A conservative address: every text it allows is an email by the usual validators' rules (a dot-atom local
// part: no leading, trailing or doubled dots).
static int fmt_email(jc *c) {
    int atom = repeat(c, C(c, "a-zA-Z0-9_+-"), 1, 20);
    int dot_atom = new_rule(c);
    alt(c, dot_atom, 2, B(c, '.'), R(atom));
    int local = new_rule(c);
    alt(c, local, 2, R(atom), R(repeat(c, R(dot_atom), 0, 3)));
    int label = repeat(c, C(c, "a-zA-Z0-9"), 1, 30);
    int dot_label = new_rule(c);
    alt(c, dot_label, 2, B(c, '.'), R(label));
    int more = repeat(c, R(dot_label), 0, 3);
    int tld = repeat(c, C(c, "a-zA-Z"), 2, 10);
    int r = new_rule(c);
    alt(c, r, 6, R(local), B(c, '@'), R(label), R(more), B(c, '.'), R(tld));
    return c->st ? -1 : r;
}

// type string: a format, bounded length, or any string.
static int type_string(jc *c, const json_t *s) {
    const json_t *fmt = json_object_get(s, "format");
    int min, max;
    if (get_count(c, s, "minLength", &min) || get_count(c, s, "maxLength", &max)) return -1;
    if (max >= 0 && min > max) return fail(c, AERO_ERR_INVALID, "maxLength", "'maxLength' is below 'minLength'");
    if (fmt) {
        if (!json_is_string(fmt)) return fail(c, AERO_ERR_INVALID, "format", "'format' must be a string");
        const char *f = json_string_value(fmt);
        int body;
        if (!strcmp(f, "date")) body = fmt_date(c);
        else if (!strcmp(f, "time")) body = fmt_time(c);
        else if (!strcmp(f, "date-time")) {
            body = new_rule(c);
            alt(c, body, 3, R(fmt_date(c)), C(c, "Tt"), R(fmt_time(c)));
        } else if (!strcmp(f, "uuid")) body = fmt_uuid(c);
        else if (!strcmp(f, "email")) body = fmt_email(c);
        else
            return fail(c, AERO_ERR_INVALID, "format",
                        "'format' '%.40s' is not supported in constrained output (date, time, date-time, uuid, email "
                        "are)",
                        f);
        if (min > 0 || max >= 0)
            return fail(c, AERO_ERR_INVALID, min > 0 ? "minLength" : "maxLength",
                        "'%s' together with 'format' is not supported", min > 0 ? "minLength" : "maxLength");
        int r = new_rule(c);
        alt(c, r, 3, B(c, '"'), R(body), B(c, '"'));
        return c->st ? -1 : r;
    }
    if (min <= 0 && max < 0) return string(c);
    return string_bounded(c, min < 0 ? 0 : min, max);
}

// Reads minimum/maximum (and the exclusive forms) as integral bounds; false with an error otherwise.
static bool int_bounds(jc *c, const json_t *s, bool integral_only, bool *has_lo, long long *lo, bool *has_hi,
                       long long *hi) {
    static const char *keys[] = {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"};
    *has_lo = *has_hi = false;
    for (int k = 0; k < 4; k++) {
        json_t *v = json_object_get(s, keys[k]);
        if (!v) continue;
        if (!json_is_number(v)) {
            fail(c, AERO_ERR_INVALID, keys[k], "'%s' must be a number", keys[k]);
            return false;
        }
        double d = json_number_value(v);
        bool excl = k == 1 || k == 3;
        if (!integral_only && excl) {
            fail(c, AERO_ERR_INVALID, keys[k], "'%s' on a number is not supported in constrained output", keys[k]);
            return false;
        }
        if (d != floor(d) || fabs(d) > 1e15) {
            if (!integral_only) {
                fail(c, AERO_ERR_INVALID, keys[k], "'%s' %g on a number is not supported (integral bounds are)",
                     keys[k], d);
                return false;
            }
            d = k < 2 ? ceil(d) : floor(d); // integers within a fractional bound
            excl = false;
        }
        long long x = (long long)d;
        if (k < 2) {
            x += excl;
            if (!*has_lo || x > *lo) *lo = x;
            *has_lo = true;
        } else {
            x -= excl;
            if (!*has_hi || x < *hi) *hi = x;
            *has_hi = true;
        }
    }
    return true;
}

// type integer with the bounds the grammar can enforce exactly.
static int type_integer(jc *c, const json_t *s) {
    bool has_lo, has_hi;
    long long lo = 0, hi = 0;
    if (!int_bounds(c, s, true, &has_lo, &lo, &has_hi, &hi)) return -1;
    if (!has_lo && !has_hi) return integer(c);
    if (has_lo && has_hi) {
        if (hi < lo) return fail(c, AERO_ERR_INVALID, "maximum", "'maximum' is below 'minimum'");
        if (hi - lo < MAX_RANGE && lo > -1000000000LL && hi < 1000000000LL) return int_range(c, lo, hi);
    } else if (has_lo && !has_hi && (lo == 0 || lo == 1)) {
        return lo == 0 ? nn_integer(c) : pos_integer(c);
    }
    const char *kw = has_hi ? "maximum" : "minimum";
    return fail(c, AERO_ERR_INVALID, kw,
                "'%s' %lld on an integer is not supported in constrained output (ranges of up to %d values, or "
                "minimum 0 or 1 alone, are)",
                kw, has_hi ? hi : lo, MAX_RANGE);
}

// type number with the bounds the grammar can enforce exactly.
static int type_number(jc *c, const json_t *s) {
    bool has_lo, has_hi;
    long long lo = 0, hi = 0;
    if (!int_bounds(c, s, false, &has_lo, &lo, &has_hi, &hi)) return -1;
    if (!has_lo && !has_hi) return number(c);
    if (has_lo && lo == 0 && !has_hi) { // non-negative
        int r = new_rule(c);
        alt(c, r, 2, R(nn_integer(c)), R(frac_exp(c)));
        return c->st ? -1 : r;
    }
    if (has_lo && has_hi && lo >= 0 && hi >= lo && hi <= 100000) {
        // [lo, hi]: an integer part lo..hi-1 with any fraction, or hi itself with zeros after the point
        int frac = new_rule(c), zeros = new_rule(c), r = new_rule(c);
        alt(c, frac, 0);
        alt(c, frac, 2, B(c, '.'), R(repeat(c, C(c, "0-9"), 1, 15)));
        alt(c, zeros, 0);
        alt(c, zeros, 2, B(c, '.'), R(repeat(c, B(c, '0'), 1, 15)));
        if (hi > lo) alt(c, r, 2, R(int_range(c, lo, hi - 1)), R(frac));
        alt(c, r, 2, R(int_range(c, hi, hi)), R(zeros));
        return c->st ? -1 : r;
    }
    const char *kw = has_hi ? "maximum" : "minimum";
    return fail(c, AERO_ERR_INVALID, kw,
                "'%s' %lld on a number is not supported in constrained output (integral bounds from 0 up to 100000, "
                "or minimum 0 alone, are)",
                kw, has_hi ? hi : lo);
}

// One JSON type under the schema's keywords for that type.
static int one_type(jc *c, const json_t *s, const char *t) {
    if (!strcmp(t, "object")) return type_object(c, s);
    if (!strcmp(t, "array")) return type_array(c, s);
    if (!strcmp(t, "string")) return type_string(c, s);
    if (!strcmp(t, "integer")) return type_integer(c, s);
    if (!strcmp(t, "number")) return type_number(c, s);
    if (!strcmp(t, "boolean")) {
        int r = new_rule(c);
        alt(c, r, 1, R(literal_z(c, "true")));
        alt(c, r, 1, R(literal_z(c, "false")));
        return c->st ? -1 : r;
    }
    if (!strcmp(t, "null")) return literal_z(c, "null");
    return fail(c, AERO_ERR_INVALID, "type", "'type' '%.40s' is not a JSON-schema type", t);
}

// The type a schema without "type" describes, from its keywords (NULL: any value).
static const char *implied_type(const json_t *s) {
    if (json_object_get(s, "properties") || json_object_get(s, "required") ||
        json_object_get(s, "additionalProperties"))
        return "object";
    if (json_object_get(s, "items") || json_object_get(s, "minItems") || json_object_get(s, "maxItems")) return "array";
    if (json_object_get(s, "minLength") || json_object_get(s, "maxLength") || json_object_get(s, "format"))
        return "string";
    if (json_object_get(s, "minimum") || json_object_get(s, "maximum") || json_object_get(s, "exclusiveMinimum") ||
        json_object_get(s, "exclusiveMaximum"))
        return "number";
    return NULL;
}

// A rule matching the JSON values valid under schema s.
static int schema(jc *c, const json_t *s, const char *where) {
    (void)where;
    if (c->st) return -1;
    if (json_is_true(s)) return value(c);
    if (!json_is_object(s))
        return fail(c, AERO_ERR_INVALID, NULL,
                    json_is_false(s) ? "schema 'false' matches nothing" : "a schema must be an object");
    if (++c->depth > MAX_DEPTH) {
        c->depth--;
        return fail(c, AERO_ERR_INVALID, NULL, "the schema nests deeper than %d levels", MAX_DEPTH);
    }
    int r = -1;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)s, key, v) {
        if (!is_supported(key) && !is_annotation(key)) {
            r = fail(c, AERO_ERR_INVALID, key, "JSON-schema keyword '%.60s' is not supported in constrained output",
                     key);
            goto done;
        }
    }
    json_t *x;
    if ((x = json_object_get(s, "$ref"))) {
        if (!json_is_string(x)) {
            r = fail(c, AERO_ERR_INVALID, "$ref", "'$ref' must be a string");
            goto done;
        }
        json_object_foreach((json_t *)s, key, v) if (strcmp(key, "$ref") && !is_annotation(key)) {
            r = fail(c, AERO_ERR_INVALID, key, "'%.60s' beside '$ref' is not supported in constrained output", key);
            goto done;
        }
        r = ref_rule(c, json_string_value(x));
    } else if ((x = json_object_get(s, "const"))) {
        r = json_literal(c, x);
    } else if ((x = json_object_get(s, "enum"))) {
        if (!json_is_array(x) || !json_array_size(x)) {
            r = fail(c, AERO_ERR_INVALID, "enum", "'enum' must be a non-empty array");
            goto done;
        }
        r = new_rule(c);
        size_t i;
        json_t *e;
        json_array_foreach(x, i, e) alt(c, r, 1, R(json_literal(c, e)));
    } else if ((x = json_object_get(s, "anyOf")) || (x = json_object_get(s, "oneOf")) ||
               (x = json_object_get(s, "allOf"))) {
        const char *kw = json_object_get(s, "anyOf") ? "anyOf" : json_object_get(s, "oneOf") ? "oneOf" : "allOf";
        if (!json_is_array(x) || !json_array_size(x)) {
            r = fail(c, AERO_ERR_INVALID, kw, "'%s' must be a non-empty array of schemas", kw);
            goto done;
        }
        if (!strcmp(kw, "allOf") && json_array_size(x) != 1) {
            r = fail(c, AERO_ERR_INVALID, "allOf",
                     "'allOf' with more than one schema is not supported in constrained output");
            goto done;
        }
        r = new_rule(c);
        size_t i;
        json_t *e;
        size_t plen = strlen(c->path);
        json_array_foreach(x, i, e) {
            snprintf(c->path + plen, sizeof c->path - plen, "/%s/%zu", kw, i);
            int sub = schema(c, e, NULL);
            c->path[plen] = 0;
            alt(c, r, 1, R(sub));
        }
    } else {
        x = json_object_get(s, "type");
        if (!x) {
            const char *t = implied_type(s);
            r = t ? one_type(c, s, t) : value(c);
        } else if (json_is_string(x)) {
            r = one_type(c, s, json_string_value(x));
        } else if (json_is_array(x) && json_array_size(x)) {
            r = new_rule(c);
            size_t i;
            json_t *e;
            json_array_foreach(x, i, e) {
                if (!json_is_string(e)) {
                    r = fail(c, AERO_ERR_INVALID, "type", "'type' must be a string or an array of strings");
                    goto done;
                }
                alt(c, r, 1, R(one_type(c, s, json_string_value(e))));
            }
        } else {
            r = fail(c, AERO_ERR_INVALID, "type", "'type' must be a string or an array of strings");
        }
    }
done:
    c->depth--;
    return c->st ? -1 : r;
}

aero_status aero_json_grammar_compile(aero_grammar **out, const json_t *sch, char *keyword, aero_error *err) {
    *out = NULL;
    if (keyword) keyword[0] = 0;
    jc c = {.err = err, .keyword = keyword, .root = sch};
    c.ws = c.value = c.object = c.array = c.string = c.strchar = c.utf8 = c.number = c.integer = c.nn_integer =
        c.pos_integer = c.boolean = c.null = c.digits15 = c.frac = c.exp = c.esc = -1;
    c.g = aero_grammar_new();
    if (!c.g) return aero_fail(err, AERO_ERR_NOMEM, "out of memory compiling the JSON schema");
    int root = new_rule(&c);
    int v = sch ? schema(&c, sch, NULL) : object_any(&c);
    alt(&c, root, 2, R(ws(&c)), R(v));
    if (!c.st) {
        aero_grammar_set_root(c.g, root);
        c.st = aero_grammar_check(c.g, err);
    }
    if (c.st) {
        aero_grammar_free(c.g);
        return c.st;
    }
    *out = c.g;
    return AERO_OK;
}
