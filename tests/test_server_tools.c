// Tool calls at the C level: the call format read from published templates' markers (fixtures), each format's
// parser on whole outputs (one call, parallel calls, content before the calls, text that only looks like a
// call) and on every prefix of an output (a stream: content never taken back, names sent whole, arguments only
// growing), and the forcing grammar accepting exactly the format's calls with valid arguments.
#include <string.h>

#include "check.h"
#include "core/util.h"
#include "sample/grammar.h"
#include "server/tools.h"

#define FIX "tests/fixtures/chat/tools/"

static const char *TOOLS_JSON =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\","
    "\"properties\":{\"city\":{\"type\":\"string\"},\"unit\":{\"enum\":[\"c\",\"f\"]}},\"required\":[\"city\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"parameters\":{\"type\":\"object\","
    "\"properties\":{\"zone\":{\"type\":\"string\"}},\"required\":[\"zone\"]}}}]";

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
    if (s) s[n] = 0;
    fclose(f);
    return s;
}

static void test_detect(void) {
    static const struct {
        const char *file;
        aero_tool_format f;
        bool renders;
    } cases[] = {
        {"Qwen-Qwen2.5-7B-Instruct.jinja", AERO_TOOLS_HERMES, true},
        {"NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja", AERO_TOOLS_HERMES, true},
        {"meta-llama-Llama-3.1-8B-Instruct.jinja", AERO_TOOLS_LLAMA3, true},
        {"meta-llama-Llama-3.2-3B-Instruct.jinja", AERO_TOOLS_LLAMA3, true},
        {"mistralai-Mistral-Nemo-Instruct-2407.jinja", AERO_TOOLS_MISTRAL, true},
        {"deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", AERO_TOOLS_DEEPSEEK, false},
        {"deepseek-ai-DeepSeek-V3.1.jinja", AERO_TOOLS_DEEPSEEK_V31, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, FIX "%s", cases[i].file);
        char *src = read_text(path);
        CHECKF(src, "%s", path);
        if (!src) continue;
        aero_tool_style st = aero_tool_style_detect(src);
        CHECKF(st.format == cases[i].f, "%s: %s", cases[i].file, aero_tool_format_name(st.format));
        CHECKF(st.renders_tools == cases[i].renders, "%s", cases[i].file);
        free(src);
    }
    const char *chatml = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}";
    CHECK(aero_tool_style_detect(chatml).format == AERO_TOOLS_UNSUPPORTED);
    CHECK(aero_tool_style_detect(NULL).format == AERO_TOOLS_UNSUPPORTED);
    CHECK(aero_tool_style_detect("{{ tools | tojson }}").format == AERO_TOOLS_GENERIC);
}

#define DS_CB                       \
    "<\xef\xbd\x9ctool\xe2\x96\x81" \
    "calls\xe2\x96\x81"             \
    "begin\xef\xbd\x9c>"
#define DS_CE                       \
    "<\xef\xbd\x9ctool\xe2\x96\x81" \
    "calls\xe2\x96\x81"             \
    "end\xef\xbd\x9c>"
#define DS_B                        \
    "<\xef\xbd\x9ctool\xe2\x96\x81" \
    "call\xe2\x96\x81"              \
    "begin\xef\xbd\x9c>"
#define DS_E                        \
    "<\xef\xbd\x9ctool\xe2\x96\x81" \
    "call\xe2\x96\x81"              \
    "end\xef\xbd\x9c>"
#define DS_S                        \
    "<\xef\xbd\x9ctool\xe2\x96\x81" \
    "sep\xef\xbd\x9c>"

typedef struct {
    aero_tool_format f;
    const char *text;
    const char *content; // expected content ("" none)
    int n;               // calls (0: text)
    const char *names[2], *args[2];
} parse_case;

static const parse_case PARSE[] = {
    {AERO_TOOLS_HERMES,
     "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
     "",
     1,
     {"get_weather"},
     {"{\"city\": \"Paris\"}"}},
    {AERO_TOOLS_HERMES,
     "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\", \"unit\": \"c\"}}\n"
     "</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"zone\": \"CET\"}}\n</tool_call>",
     "Let me check.",
     2,
     {"get_weather", "get_time"},
     {"{\"city\": \"Oslo\", \"unit\": \"c\"}", "{\"zone\": \"CET\"}"}},
    {AERO_TOOLS_HERMES, "No tools needed: the answer is 4.", "No tools needed: the answer is 4.", 0, {0}, {0}},
    {AERO_TOOLS_HERMES,
     "<tool_call>\n{\"name\": \"get_weather\", \"argu",
     "<tool_call>\n{\"name\": \"get_weather\", \"argu",
     0,
     {0},
     {0}},
    {AERO_TOOLS_MISTRAL,
     "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}, \"id\": \"abcdefghi\"}, {\"name\": "
     "\"get_time\", \"arguments\": {\"zone\": \"UTC\"}}]",
     "",
     2,
     {"get_weather", "get_time"},
     {"{\"city\": \"Rome\"}", "{\"zone\": \"UTC\"}"}},
    {AERO_TOOLS_LLAMA3,
     "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Lima\"}}",
     "",
     1,
     {"get_weather"},
     {"{\"city\": \"Lima\"}"}},
    {AERO_TOOLS_LLAMA3,
     "<|python_tag|>brave_search.call(query=\"weather in Lima\", n=3)",
     "",
     1,
     {"brave_search"},
     {"{\"query\":\"weather in Lima\",\"n\":3}"}},
    {AERO_TOOLS_LLAMA3,
     "{\"name\": \"not_a_tool\", \"parameters\": {}}",
     "{\"name\": \"not_a_tool\", \"parameters\": {}}",
     0,
     {0},
     {0}},
    {AERO_TOOLS_LLAMA3, "The weather is fine.", "The weather is fine.", 0, {0}, {0}},
    {AERO_TOOLS_GENERIC,
     "[{\"name\": \"get_time\", \"arguments\": {\"zone\": \"EST\"}}, {\"name\": \"get_weather\", \"arguments\": "
     "{\"city\": \"NYC\"}}]",
     "",
     2,
     {"get_time", "get_weather"},
     {"{\"zone\": \"EST\"}", "{\"city\": \"NYC\"}"}},
    {AERO_TOOLS_DEEPSEEK,
     "Sure." DS_CB DS_B "function" DS_S "get_weather\n```json\n{\"city\": \"Kyiv\"}\n```" DS_E "\n" DS_B "function" DS_S
     "get_time\n```json\n{\"zone\": \"EET\"}\n```" DS_E DS_CE,
     "Sure.",
     2,
     {"get_weather", "get_time"},
     {"{\"city\": \"Kyiv\"}", "{\"zone\": \"EET\"}"}},
    {AERO_TOOLS_DEEPSEEK_V31,
     DS_CB DS_B "get_time" DS_S "{\"zone\": \"JST\"}" DS_E DS_CE,
     "",
     1,
     {"get_time"},
     {"{\"zone\": \"JST\"}"}},
};

static void test_parse(const json_t *tools) {
    for (size_t k = 0; k < sizeof PARSE / sizeof PARSE[0]; k++) {
        const parse_case *c = &PARSE[k];
        size_t len = strlen(c->text);
        aero_tool_parse p;
        aero_tool_parse_output(c->f, c->text, len, false, tools, &p);
        CHECKF(p.n_calls == c->n && p.calls_ok == (c->n > 0), "case %zu: %d calls", k, p.n_calls);
        size_t cl = p.content_len;
        if (c->n) // the response trims the whitespace between content and calls
            while (cl && (c->text[cl - 1] == '\n' || c->text[cl - 1] == ' ')) cl--;
        CHECKF(cl == strlen(c->content) && !memcmp(c->text, c->content, cl), "case %zu: content %zu", k, cl);
        for (int i = 0; i < p.n_calls && i < c->n; i++) {
            CHECKF(!strcmp(p.calls[i].name, c->names[i]), "case %zu call %d: %s", k, i, p.calls[i].name);
            char *a = aero_tool_call_arguments(&p, i, c->text);
            CHECKF(a && !strcmp(a, c->args[i]), "case %zu call %d: args %s", k, i, a ? a : "(null)");
            free(a);
        }
        // every prefix, as a stream sees it: content and arguments only grow, names appear whole
        size_t content = 0, args[AERO_TOOL_MAX_CALLS] = {0};
        int names = 0;
        for (size_t n = 0; n <= len; n++) {
            aero_tool_parse q;
            aero_tool_parse_output(c->f, c->text, n, n < len, tools, &q);
            if (n < len) {
                CHECKF(q.content_len >= content || c->n == 0, "case %zu prefix %zu: content shrank", k, n);
                if (q.content_len > content) content = q.content_len;
                for (int i = 0; i < q.n_calls; i++) {
                    if (!q.calls[i].name_done) continue;
                    if (i < c->n) CHECKF(!strcmp(q.calls[i].name, c->names[i]), "case %zu prefix %zu: name", k, n);
                    if (i >= names) names = i + 1;
                    CHECKF(q.calls[i].args_len >= args[i], "case %zu prefix %zu: args shrank", k, n);
                    args[i] = q.calls[i].args_len;
                }
                if (c->n)
                    CHECKF(q.content_len <= strlen(c->content) + 1, "case %zu prefix %zu: call shown as text", k, n);
            }
            aero_tool_parse_free(&q);
        }
        aero_tool_parse_free(&p);
    }
}

// Whether the grammar accepts s whole.
static bool accepts(const aero_grammar *g, const char *s) {
    aero_grammar_run *r = aero_grammar_run_new(g);
    bool ok = r && aero_grammar_run_feed(r, s, strlen(s)) && aero_grammar_run_accepting(r);
    aero_grammar_run_free(r);
    return ok;
}

static void test_grammar(const json_t *tools) {
    aero_error err = {0};
    char kw[64];
    aero_grammar *g = NULL;
    CHECK(aero_tool_grammar(&g, AERO_TOOLS_HERMES, tools, NULL, false, kw, &err) == AERO_OK);
    if (g) {
        CHECK(
            accepts(g, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"));
        CHECK(accepts(g, "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"zone\": \"UTC\"}}\n</tool_call>"));
        CHECK(!accepts(g, "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"city\": \"UTC\"}}\n</tool_call>"));
        CHECK(!accepts(
            g,
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"P\", \"unit\": \"k\"}}\n</tool_call>"));
        CHECK(!accepts(g, "Hello"));
        CHECK(!accepts(g, "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"zone\": \"UTC\"}}\n</tool_call>\n"
                          "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"zone\": \"UTC\"}}\n</tool_call>"));
        aero_grammar_free(g);
    }
    CHECK(aero_tool_grammar(&g, AERO_TOOLS_HERMES, tools, "get_time", true, kw, &err) == AERO_OK);
    if (g) {
        CHECK(!accepts(g,
                       "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"));
        CHECK(accepts(g, "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"zone\": \"UTC\"}}\n</tool_call>\n"
                         "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"zone\": \"CET\"}}\n</tool_call>"));
        aero_grammar_free(g);
    }
    CHECK(aero_tool_grammar(&g, AERO_TOOLS_MISTRAL, tools, NULL, true, kw, &err) == AERO_OK);
    if (g) {
        CHECK(accepts(g, "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}, {\"name\": "
                         "\"get_time\", \"arguments\": {\"zone\": \"UTC\"}}]"));
        aero_grammar_free(g);
    }
    CHECK(aero_tool_grammar(&g, AERO_TOOLS_LLAMA3, tools, "get_weather", false, kw, &err) == AERO_OK);
    if (g) {
        CHECK(accepts(g, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Lima\"}}"));
        CHECK(!accepts(g, "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Lima\"}}"));
        aero_grammar_free(g);
    }
    CHECK(aero_tool_grammar(&g, AERO_TOOLS_DEEPSEEK, tools, NULL, false, kw, &err) == AERO_OK);
    if (g) {
        CHECK(accepts(g, DS_CB DS_B "function" DS_S "get_weather\n```json\n{\"city\": \"Kyiv\"}\n```" DS_E DS_CE));
        // a name outside the JSON still goes with its own tool's arguments
        CHECK(!accepts(g, DS_CB DS_B "function" DS_S "get_time\n```json\n{\"city\": \"Kyiv\"}\n```" DS_E DS_CE));
        aero_grammar_free(g);
    }
    CHECK(aero_tool_grammar(&g, AERO_TOOLS_DEEPSEEK_V31, tools, "get_time", false, kw, &err) == AERO_OK);
    if (g) {
        CHECK(accepts(g, DS_CB DS_B "get_time" DS_S "{\"zone\": \"JST\"}" DS_E DS_CE));
        aero_grammar_free(g);
    }
    CHECK(aero_tool_grammar(&g, AERO_TOOLS_GENERIC, tools, "nope", false, kw, &err) == AERO_ERR_INVALID);
    // every grammar-forced output parses back into the same call
    json_t *bad = json_loads("[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\","
                             "\"patternProperties\":{}}}}]",
                             0, NULL);
    CHECK(aero_tool_grammar(&g, AERO_TOOLS_HERMES, bad, NULL, false, kw, &err) == AERO_ERR_INVALID);
    CHECKF(!strcmp(kw, "patternProperties"), "%s", kw);
    json_decref(bad);
}

int main(void) {
    json_t *tools = json_loads(TOOLS_JSON, 0, NULL);
    CHECK(tools);
    test_detect();
    test_parse(tools);
    test_grammar(tools);
    json_decref(tools);
    return check_done("test_server_tools");
}
