// JSON-schema constraints: the compiler's grammars accept valid JSON and refuse the rest (checked byte by
// byte with the recognizer), unsupported keywords are named, the token mask agrees with the recognizer token
// by token along random walks (both mask paths: the trie walk and the looping-state table), the sampler only
// draws allowed tokens and ignores prompt tokens, and on a real 100k vocabulary the cost per step is printed.
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "helpers.h"
#include "sample/gbnf.h"
#include "sample/grammar.h"
#include "sample/json_grammar.h"
#include "sample/sample.h"
#include "tokenizer/tokenizer.h"

static aero_grammar *compile(const char *schema_text) {
    json_t *s = NULL;
    if (schema_text) {
        json_error_t je;
        s = json_loads(schema_text, 0, &je);
        CHECKF(s != NULL, "bad test schema: %s", je.text);
        if (!s) return NULL;
    }
    aero_grammar *g = NULL;
    aero_error err = {0};
    aero_status st = aero_json_grammar_compile(&g, s, NULL, &err);
    CHECKF(st == AERO_OK, "compile failed: %s", err.msg);
    json_decref(s);
    return g;
}

// True when the whole text is a sentence of g.
static bool accepts(const aero_grammar *g, const char *text) {
    aero_grammar_run *r = aero_grammar_run_new(g);
    bool ok = r && aero_grammar_run_feed(r, text, strlen(text)) && aero_grammar_run_accepting(r);
    aero_grammar_run_free(r);
    return ok;
}

static void expect(const char *schema, const char *const *good, const char *const *bad) {
    aero_grammar *g = compile(schema);
    if (!g) return;
    for (int i = 0; good[i]; i++)
        CHECKF(accepts(g, good[i]), "schema %s should accept %s", schema ? schema : "-", good[i]);
    for (int i = 0; bad[i]; i++)
        CHECKF(!accepts(g, bad[i]), "schema %s should refuse %s", schema ? schema : "-", bad[i]);
    aero_grammar_free(g);
}

static void test_recognizer(void) {
    expect(NULL,
           (const char *[]){"{}", "{\"a\":1}", " {\"a\" : [1, 2.5e3, {\"b\": null}], \"c\": \"x\\\"y\\u00e9\"}",
                            "{\n  \"a\": true,\n  \"b\": false\n}", "{\"\xc3\xa9\":\"\xe2\x82\xac\xf0\x9f\x98\x80\"}",
                            "{\"e\":\"\\ud83d\\ude00\\u00e9\"}", NULL},
           (const char *[]){"[1]", "{\"a\":}", "{'a':1}", "{\"a\":1,}", "{\"a\":01}", "{\"a\":1}x", "\"s\"",
                            "{\"a\":\"\x01\"}", "{\"a\":1e}", "{\"a\":\"\xcd\"}", "{\"a\":\"\xc0\xaf\"}",
                            "{\"a\":\"\xed\xa0\x80\"}", "{\"a\":\"\\ud800\"}", "{\"a\":\"\\udc00\"}", NULL});
    const char *tool = "{\"type\":\"object\",\"properties\":{"
                       "\"city\":{\"type\":\"string\",\"maxLength\":20},"
                       "\"unit\":{\"enum\":[\"celsius\",\"fahrenheit\"]},"
                       "\"days\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":14},"
                       "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"minItems\":1,\"maxItems\":3},"
                       "\"when\":{\"type\":\"string\",\"format\":\"date\"},"
                       "\"extra\":{\"anyOf\":[{\"type\":\"null\"},{\"type\":\"number\",\"minimum\":0,\"maximum\":1}]}"
                       "},\"required\":[\"city\",\"unit\"],\"additionalProperties\":false}";
    expect(tool,
           (const char *[]){"{\"city\":\"Paris\",\"unit\":\"celsius\"}",
                            "{\"city\": \"Oslo\", \"unit\": \"fahrenheit\", \"days\": 14, \"tags\": [\"a\", \"b\"], "
                            "\"when\": \"2024-02-28\", \"extra\": 0.25}",
                            "{\"city\":\"\",\"unit\":\"celsius\",\"extra\":null}",
                            "{\"city\":\"x\",\"unit\":\"celsius\",\"extra\":1.000}", NULL},
           (const char *[]){"{\"unit\":\"celsius\",\"city\":\"Paris\"}", "{\"city\":\"Paris\"}",
                            "{\"city\":\"Paris\",\"unit\":\"kelvin\"}",
                            "{\"city\":\"Paris\",\"unit\":\"celsius\",\"days\":15}",
                            "{\"city\":\"Paris\",\"unit\":\"celsius\",\"days\":0}",
                            "{\"city\":\"Paris\",\"unit\":\"celsius\",\"tags\":[]}",
                            "{\"city\":\"Paris\",\"unit\":\"celsius\",\"tags\":[\"a\",\"b\",\"c\",\"d\"]}",
                            "{\"city\":\"Paris\",\"unit\":\"celsius\",\"when\":\"2024-13-01\"}",
                            "{\"city\":\"Paris\",\"unit\":\"celsius\",\"when\":\"2024-04-31\"}",
                            "{\"city\":\"Paris\",\"unit\":\"celsius\",\"extra\":1.5}",
                            "{\"city\":\"123456789012345678901\",\"unit\":\"celsius\"}",
                            "{\"city\":\"Paris\",\"unit\":\"celsius\",\"other\":1}", NULL});
    // recursion through $ref, const, integer and boolean types, type arrays
    const char *tree = "{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},"
                       "\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"}}},\"required\":[\"v\"]}},"
                       "\"$ref\":\"#/$defs/node\"}";
    expect(tree, (const char *[]){"{\"v\":1}", "{\"v\":-3,\"kids\":[{\"v\":2},{\"v\":4,\"kids\":[]}]}", NULL},
           (const char *[]){"{\"v\":1.5}", "{\"kids\":[]}", "{\"v\":1,\"kids\":[{}]}", NULL});
    expect("{\"type\":[\"string\",\"null\"],\"format\":\"uuid\"}",
           (const char *[]){"\"123e4567-e89b-12d3-a456-426614174000\"", "null", NULL},
           (const char *[]){"\"123e4567\"", "1", NULL});
    expect("{\"const\":{\"k\":[1,\"x\"]}}", (const char *[]){"{\"k\":[1,\"x\"]}", NULL},
           (const char *[]){"{\"k\":[1]}", NULL});
    expect("{\"type\":\"string\",\"format\":\"date-time\"}",
           (const char *[]){"\"2024-05-01T12:30:00Z\"", "\"2024-12-31T23:59:59.123+02:00\"", NULL},
           (const char *[]){"\"2024-05-01 12:30:00Z\"", "\"2024-05-01T24:00:00Z\"", NULL});
    expect("{\"type\":\"string\",\"format\":\"email\"}", (const char *[]){"\"a.b@example.com\"", NULL},
           (const char *[]){"\"a@b\"", "\"@x.com\"", "\"a..b@x.com\"", "\".a@x.com\"", NULL});
    expect("{\"type\":\"integer\",\"minimum\":-5,\"maximum\":5}", (const char *[]){"-5", "0", "5", NULL},
           (const char *[]){"-6", "6", "-0", "05", NULL});
    expect("{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}", (const char *[]){"\"ab\"", "\"abc\"", NULL},
           (const char *[]){"\"a\"", "\"abcd\"", NULL});
}

static void test_unsupported(void) {
    const char *cases[][2] = {
        {"{\"type\":\"string\",\"pattern\":\"^a+$\"}", "pattern"},
        {"{\"allOf\":[{\"type\":\"object\"},{\"required\":[\"a\"]}]}", "allOf"},
        {"{\"type\":\"array\",\"uniqueItems\":true}", "uniqueItems"},
        {"{\"type\":\"string\",\"format\":\"ipv4\"}", "format"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\",\"maximum\":5}}}", "maximum"},
        {"{\"type\":\"object\",\"patternProperties\":{\"^x\":{}}}", "patternProperties"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"not\":{}}}}", "not"},
        {"{\"$ref\":\"#/$defs/missing\"}", "$ref"},
        {"{\"type\":\"widget\"}", "type"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *s = json_loads(cases[i][0], 0, NULL);
        aero_grammar *g = NULL;
        aero_error err = {0};
        char kw[64];
        aero_status st = aero_json_grammar_compile(&g, s, kw, &err);
        CHECKF(st == AERO_ERR_INVALID && !g, "case %zu compiled", i);
        CHECKF(!strcmp(kw, cases[i][1]), "case %zu: keyword '%s', want '%s' (%s)", i, kw, cases[i][1], err.msg);
        CHECKF(strstr(err.msg, cases[i][1]) != NULL, "case %zu: message '%s' does not name %s", i, err.msg,
               cases[i][1]);
        json_decref(s);
    }
}

// A small vocabulary: every byte alone plus pieces that cross JSON structure, like real BPE merges.
static const char *const PIECES[] = {"{\"",        "\":",  "\": \"", "\",\"", "\"}", "true",    "false",
                                     "null",       "name", "city",   " \"",   "},",  "}]",      "[{",
                                     "12",         "3.5",  "\\\"",   "\\u00", "e9",  "celsius", "\"celsius\"",
                                     "unit\": \"", "\n  ", " ",      "\",",   ", ",  "\"\n}"};
#define N_SINGLE 256
#define N_PIECES ((int)(sizeof PIECES / sizeof PIECES[0]))
#define V_CONTROL (N_SINGLE + N_PIECES)
#define V_EOG (V_CONTROL + 1)
#define N_VOCAB (V_EOG + 1)

static size_t toy_piece(void *ctx, int32_t id, char *buf, size_t cap) {
    (void)ctx;
    if (id < N_SINGLE) {
        if (cap) buf[0] = (char)id;
        return 1;
    }
    const char *p = PIECES[id - N_SINGLE];
    size_t n = strlen(p);
    memcpy(buf, p, n < cap ? n : cap);
    return n;
}

static int toy_kind(void *ctx, int32_t id) {
    (void)ctx;
    return id == V_EOG ? 2 : id == V_CONTROL ? 1 : 0;
}

// Walks random allowed tokens; at every step each token's verdict must match the recognizer's.
static void walk_agrees(const char *schema, uint64_t seed, int steps) {
    aero_grammar *g = compile(schema);
    aero_grammar_vocab *v = aero_grammar_vocab_new(N_VOCAB, toy_piece, toy_kind, NULL);
    aero_sampler_constraint *c = g && v ? aero_grammar_constraint_new(g, v) : NULL;
    CHECK(c != NULL);
    if (!c) goto done;
    char text[4096];
    size_t len = 0;
    float logits[N_VOCAB];
    for (int step = 0; step < steps; step++) {
        for (int i = 0; i < N_VOCAB; i++) logits[i] = 0;
        c->mask(c, logits, N_VOCAB);
        int allowed[N_VOCAB], n_allowed = 0;
        for (int id = 0; id < N_VOCAB; id++) {
            bool mask_ok = !isinf(logits[id]);
            bool want;
            if (id == V_CONTROL) want = false;
            else if (id == V_EOG) want = accepts(g, len ? text : "");
            else {
                char buf[64];
                size_t n = toy_piece(NULL, id, buf, sizeof buf);
                aero_grammar_run *r = aero_grammar_run_new(g);
                want = aero_grammar_run_feed(r, text, len) && aero_grammar_run_feed(r, buf, n);
                aero_grammar_run_free(r);
            }
            if (id == V_EOG) {
                text[len] = 0;
                want = accepts(g, text);
            }
            CHECKF(mask_ok == want || (id == V_EOG && mask_ok && n_allowed == 0),
                   "schema %s seed %llu step %d token %d: mask %d, recognizer %d after '%.*s'", schema ? schema : "-",
                   (unsigned long long)seed, step, id, mask_ok, want, (int)len, text);
            if (mask_ok) allowed[n_allowed++] = id;
        }
        if (n_allowed == 0) break;
        // prefer ending once possible on some seeds; otherwise wander
        int pick = allowed[test_splitmix64(&seed) % (uint64_t)n_allowed];
        if (pick == V_EOG) break;
        char buf[64];
        size_t n = toy_piece(NULL, pick, buf, sizeof buf);
        if (len + n + 1 >= sizeof text) break;
        memcpy(text + len, buf, n);
        len += n;
        c->accept(c, pick);
    }
    aero_grammar_stats st;
    aero_grammar_constraint_stats(c, &st);
    CHECK(st.masks > 0);
done:
    aero_grammar_constraint_free(c);
    aero_grammar_vocab_free(v);
    aero_grammar_free(g);
}

static void test_mask_agrees(void) {
    const char *schemas[] = {
        NULL,
        "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"unit\":{\"enum\":[\"celsius\",\"k\"]},"
        "\"n\":{\"type\":\"number\"},\"ok\":{\"type\":\"boolean\"}},\"required\":[\"name\",\"unit\"]}",
        "{\"type\":\"array\",\"items\":{\"anyOf\":[{\"type\":\"string\",\"maxLength\":4},{\"type\":\"integer\"}]},"
        "\"maxItems\":4}",
    };
    for (size_t i = 0; i < sizeof schemas / sizeof schemas[0]; i++)
        for (uint64_t seed = 1; seed <= 12; seed++) walk_agrees(schemas[i], seed * 7919 + i, 40);
}

// The sampler draws only allowed tokens, and prompt tokens do not move the constraint.
static void test_sampler_hook(void) {
    aero_grammar *g = compile("{\"enum\":[\"true\"]}");
    aero_grammar_vocab *v = aero_grammar_vocab_new(N_VOCAB, toy_piece, toy_kind, NULL);
    aero_sampler_constraint *c = aero_grammar_constraint_new(g, v);
    aero_sampler_params p;
    aero_sampler_params_default(&p);
    p.temp = 0; // greedy: the best logit is a token the grammar forbids
    p.constraint = c;
    aero_sampler *s = aero_sampler_new(&p, N_VOCAB);
    CHECK(s != NULL);
    if (!s) return;
    aero_sampler_accept(s, '{'); // prompt: must not advance the constraint
    float logits[N_VOCAB];
    char out[32];
    int n = 0;
    for (int step = 0; step < 8; step++) {
        for (int i = 0; i < N_VOCAB; i++) logits[i] = (float)(i % 17);
        logits['x'] = 100; // forbidden, yet the best
        int32_t t = aero_sampler_sample(s, logits);
        aero_sampler_accept(s, t);
        if (t == V_EOG) break;
        CHECK(t != 'x' && t != V_CONTROL);
        char buf[64];
        size_t k = toy_piece(NULL, t, buf, sizeof buf);
        memcpy(out + n, buf, k);
        n += (int)k;
    }
    out[n] = 0;
    CHECKF(accepts(g, out) && strstr(out, "\"true\""), "sampled '%s'", out);
    CHECK(aero_grammar_constraint_complete(c));
    aero_sampler_free(s);
    aero_grammar_constraint_free(c);
    aero_grammar_vocab_free(v);
    aero_grammar_free(g);
}

typedef struct {
    aero_tokenizer *t;
} real_vocab;

static size_t real_piece(void *ctx, int32_t id, char *buf, size_t cap) {
    return aero_token_to_bytes(((real_vocab *)ctx)->t, id, false, buf, cap);
}

static int real_kind(void *ctx, int32_t id) {
    aero_tokenizer *t = ((real_vocab *)ctx)->t;
    if (aero_tokenizer_is_eog(t, id)) return 2;
    return aero_tokenizer_is_control(t, id) ? 1 : 0;
}

// Cost per step on a real vocabulary: tokenize a valid answer, then replay it through the constraint
// (mask, accept) as a generation would; every token of the answer must be allowed on the way.
static void bench_real(const char *vocab_path) {
    real_vocab rv = {0};
    aero_error err = {0};
    if (aero_tokenizer_load(&rv.t, vocab_path, &err)) {
        printf("skipped bench: %s\n", err.msg);
        return;
    }
    int n_vocab = aero_tokenizer_n_vocab(rv.t);
    double t0 = test_now_s();
    aero_grammar_vocab *v = aero_grammar_vocab_new(n_vocab, real_piece, real_kind, &rv);
    double t_vocab = test_now_s() - t0;
    const char *schema =
        "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},"
        "\"location\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},"
        "\"country\":{\"type\":\"string\",\"maxLength\":40}},\"required\":[\"city\",\"country\"]},"
        "\"unit\":{\"enum\":[\"celsius\",\"fahrenheit\"]},\"days\":{\"type\":\"integer\",\"minimum\":1,"
        "\"maximum\":14},\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}}},"
        "\"required\":[\"name\",\"location\",\"unit\",\"days\",\"tags\"]}";
    const char *answer = "{\"name\": \"weekend forecast for the trip\", \"location\": {\"city\": \"San Francisco\", "
                         "\"country\": \"United States\"}, \"unit\": \"fahrenheit\", \"days\": 3, \"tags\": "
                         "[\"coast\", \"fog\", \"weekend plans with friends\"]}";
    t0 = test_now_s();
    aero_grammar *g = compile(schema);
    double t_compile = test_now_s() - t0;
    for (int pass = 0; pass < 2 && g && v; pass++) { // json_schema, then json_object
        aero_grammar *gg = pass ? compile(NULL) : g;
        aero_sampler_constraint *c = aero_grammar_constraint_new(gg, v);
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK(aero_tokenize(rv.t, answer, strlen(answer), false, false, &ids, &n, &err) == AERO_OK);
        float *logits = malloc(sizeof *logits * (size_t)n_vocab);
        double worst = 0;
        t0 = test_now_s();
        for (size_t i = 0; i < n && c && logits; i++) {
            for (int k = 0; k < n_vocab; k++) logits[k] = 0;
            double s0 = test_now_s();
            c->mask(c, logits, n_vocab);
            double dt = test_now_s() - s0;
            if (dt > worst) worst = dt;
            CHECKF(!isinf(logits[ids[i]]), "%s: token %zu (%d) of the answer is masked", vocab_path, i, ids[i]);
            c->accept(c, ids[i]);
        }
        double total = test_now_s() - t0;
        if (c) {
            int eog = aero_tokenizer_eos(rv.t);
            for (int k = 0; k < n_vocab; k++) logits[k] = 0;
            c->mask(c, logits, n_vocab);
            CHECK(eog < 0 || !isinf(logits[eog]));
            aero_grammar_stats st;
            aero_grammar_constraint_stats(c, &st);
            printf("%s (%d tokens) %s: vocab %.1f ms, compile %.2f ms, %zu steps, %.3f ms/step mean, %.3f ms worst; "
                   "masks: %ld cached, %ld looping-state table, %ld trie walk\n",
                   strrchr(vocab_path, '/') + 1, n_vocab, pass ? "json_object" : "json_schema", t_vocab * 1e3,
                   t_compile * 1e3, n, total * 1e3 / (double)(n ? n : 1), worst * 1e3, st.cache_hits, st.loop_masks,
                   st.trie_masks);
        }
        free(logits);
        free(ids);
        aero_grammar_constraint_free(c);
        if (pass) aero_grammar_free(gg);
    }
    aero_grammar_free(g);
    aero_grammar_vocab_free(v);
    aero_tokenizer_free(rv.t);
}

// GBNF: llama.cpp's grammar format, through the same recognizer.
static bool gbnf_accepts(const char *grammar, const char *text) {
    aero_grammar *g = NULL;
    aero_error err = {0};
    if (aero_gbnf_compile(&g, grammar, strlen(grammar), &err)) {
        fprintf(stderr, "gbnf: %s\n", err.msg);
        return false;
    }
    bool ok = accepts(g, text);
    aero_grammar_free(g);
    return ok;
}

static void test_gbnf(void) {
    const char *answer = "# a yes/no answer and a two-digit count\n"
                         "root ::= verdict \" \" count (\"!\")?\n"
                         "verdict ::= \"yes\" | \"no\"\n"
                         "count ::= [1-9] [0-9]{1}\n";
    CHECK(gbnf_accepts(answer, "yes 42"));
    CHECK(gbnf_accepts(answer, "no 10!"));
    CHECK(!gbnf_accepts(answer, "maybe 42"));
    CHECK(!gbnf_accepts(answer, "yes 042"));
    CHECK(!gbnf_accepts(answer, "yes 4"));
    const char *list = "root ::= item (\",\" ws item)*\nitem ::= [^,\\n ]+\nws ::= \" \"?\n";
    CHECK(gbnf_accepts(list, "a,b, \xc3\xa9t\xc3\xa9"));
    CHECK(!gbnf_accepts(list, "a,,b"));
    CHECK(gbnf_accepts("root ::= \"\\u00e9\" . [a-c]{2,3}", "\xc3\xa9zab"));
    CHECK(gbnf_accepts("root ::= \"\\u00e9\" . [a-c]{2,3}", "\xc3\xa9\xe2\x82\xac"
                                                            "abc"));
    const char *bad[] = {"root ::= missing",    "item ::= \"x\"",      "root ::= \"open",
                         "root ::= [a-",        "root ::= root \"x\"", "root ::= [\xc3\xa9]",
                         "root ::= \"a\"{5,2}", "root ::= (\"a\"",     "root ::= \"a\"\nroot ::= \"b\""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        aero_grammar *g = NULL;
        aero_error err = {0};
        CHECKF(aero_gbnf_compile(&g, bad[i], strlen(bad[i]), &err) == AERO_ERR_INVALID && !g && err.msg[0],
               "bad grammar %zu accepted", i);
    }
}

int main(void) {
    test_gbnf();
    test_recognizer();
    test_unsupported();
    test_mask_agrees();
    test_sampler_hook();
    if (access(SHARED_DATA "/vocab", R_OK) == 0) {
        bench_real(SHARED_DATA "/vocab/ggml-vocab-deepseek-llm.gguf");
        bench_real(SHARED_DATA "/vocab/ggml-vocab-llama-spm.gguf");
    }
    return check_done("test_json_grammar");
}
