// Unit tests of the server's pure parts: stop-string matching across token boundaries (the generation layer's
// matcher, model/stop.h, which every request's text goes through), request parsing and validation (the 400
// matrix at the C level), the OpenAI wire format (responses, chunks, SSE, errors), and the core append buffer
// and file reader the server builds its bodies with.
#include <string.h>

#include "check.h"
#include "core/buf.h"
#include "core/util.h"
#include "model/stop.h"
#include "server/oai.h"
#include "server/request.h"

// Feeds pieces one by one the way the generation layer does and returns the text released before the stop.
static void run_stop(const char *const *stops, int n, const char *const *pieces, int n_pieces, char *out, bool *found) {
    aero_stop s;
    aero_stop_init(&s, stops, n);
    char text[512] = "";
    size_t len = 0, released = 0;
    *found = false;
    for (int i = 0; i < n_pieces; i++) {
        size_t pl = strlen(pieces[i]);
        memcpy(text + len, pieces[i], pl);
        len += pl;
        size_t cut, safe;
        if (aero_stop_scan(&s, text, len, &cut, &safe)) {
            CHECK(cut >= released); // never takes back what was sent
            released = cut;
            *found = true;
            break;
        }
        CHECK(safe >= released);
        released = safe;
    }
    if (!*found) released = len;
    memcpy(out, text, released);
    out[released] = 0;
}

static void test_stop(void) {
    char out[512];
    bool found;
    const char *s1[] = {"\n\n"};
    const char *p1[] = {"Hello", " world", "\n", "\nMore"};
    run_stop(s1, 1, p1, 4, out, &found);
    CHECK(found && !strcmp(out, "Hello world"));

    // A stop string split over three tokens.
    const char *s2[] = {"STOP"};
    const char *p2[] = {"abc S", "T", "OP def"};
    run_stop(s2, 1, p2, 3, out, &found);
    CHECK(found && !strcmp(out, "abc "));

    // A prefix that turns out not to be a stop is released later, nothing lost.
    const char *p3[] = {"x S", "T", "x"};
    run_stop(s2, 1, p3, 3, out, &found);
    CHECK(!found && !strcmp(out, "x STx"));

    // The held tail is never released while it could still complete a stop.
    aero_stop st;
    aero_stop_init(&st, s2, 1);
    size_t cut, safe;
    CHECK(!aero_stop_scan(&st, "abcST", 5, &cut, &safe) && safe == 3);
    CHECK(!aero_stop_scan(&st, "abcSTx", 6, &cut, &safe) && safe == 6);

    // Earliest of several stops wins; the text before it is kept.
    const char *s4[] = {"world", "lo w"};
    const char *p4[] = {"hello world"};
    run_stop(s4, 2, p4, 1, out, &found);
    CHECK(found && !strcmp(out, "hel"));

    // Overlapping prefixes: "aab" inside "aaab".
    const char *s5[] = {"aab"};
    const char *p5[] = {"a", "a", "a", "b", "c"};
    run_stop(s5, 1, p5, 5, out, &found);
    CHECK(found && !strcmp(out, "a"));

    // A stop at the very beginning releases nothing.
    const char *p6[] = {"STOP now"};
    run_stop(s2, 1, p6, 1, out, &found);
    CHECK(found && !strcmp(out, ""));

    // Multi-byte stop split inside a character.
    const char *s7[] = {"\xC3\xA9t\xC3\xA9"};
    const char *p7[] = {"un \xC3", "\xA9t\xC3", "\xA9 chaud"};
    run_stop(s7, 1, p7, 3, out, &found);
    CHECK(found && !strcmp(out, "un "));

    // Empty stop strings are ignored.
    const char *s8[] = {""};
    const char *p8[] = {"abc"};
    run_stop(s8, 1, p8, 1, out, &found);
    CHECK(!found && !strcmp(out, "abc"));
}

// Parses body as kind and checks failure with the given param (NULL: must succeed).
static void expect_parse(aero_req_kind kind, const char *body, const char *param) {
    aero_req r;
    aero_error err = {0};
    aero_status st = aero_req_parse(&r, kind, body, strlen(body), 512, NULL, &err);
    if (param) {
        CHECKF(st == AERO_ERR_INVALID, "expected failure for %s", body);
        CHECKF(!strcmp(r.err_param, param), "param '%s' != '%s' for %s (%s)", r.err_param, param, body, err.msg);
        CHECKF(err.msg[0] != 0, "no message for %s", body);
    } else {
        CHECKF(st == AERO_OK, "expected success for %s: %s", body, err.msg);
        if (st == AERO_OK) aero_req_free(&r);
    }
}

static void test_request_matrix(void) {
    const aero_req_kind C = AERO_REQ_CHAT, P = AERO_REQ_COMPLETION;
    const char *msg = "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]";
    char b[512];
#define CHAT(extra) (snprintf(b, sizeof b, "{%s%s}", msg, extra), b)
    expect_parse(C, CHAT(""), NULL);
    expect_parse(C, CHAT(",\"unknown_field\":{\"x\":1},\"user\":\"u\""), NULL);
    expect_parse(C, CHAT(",\"temperature\":null,\"stop\":null,\"n\":1"), NULL);
    expect_parse(C, "{\"messages\":[]}", "messages");
    expect_parse(C, "{}", "messages");
    expect_parse(C, "{\"messages\":\"hi\"}", "messages");
    expect_parse(C, "{\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}", "messages");
    expect_parse(C, "{\"messages\":[{\"content\":\"x\"}]}", "messages");
    expect_parse(C, "{\"messages\":[{\"role\":\"user\"}]}", "messages");
    expect_parse(C, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "messages");
    expect_parse(C, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", "messages");
    expect_parse(C, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"}]}]}", NULL);
    expect_parse(C, "{\"messages\":[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[]}]}", NULL);
    expect_parse(C, "{\"messages\":[1]}", "messages");
    expect_parse(C, CHAT(",\"model\":5"), "model");
    expect_parse(C, CHAT(",\"max_tokens\":\"10\""), "max_tokens");
    expect_parse(C, CHAT(",\"max_tokens\":0"), "max_tokens");
    expect_parse(C, CHAT(",\"max_tokens\":-5"), "max_tokens");
    expect_parse(C, CHAT(",\"max_tokens\":1.5"), "max_tokens");
    expect_parse(C, CHAT(",\"max_completion_tokens\":99999999999"), "max_completion_tokens");
    expect_parse(C, CHAT(",\"temperature\":\"hot\""), "temperature");
    expect_parse(C, CHAT(",\"temperature\":3"), "temperature");
    expect_parse(C, CHAT(",\"top_p\":1.5"), "top_p");
    expect_parse(C, CHAT(",\"top_k\":-2"), "top_k");
    expect_parse(C, CHAT(",\"min_p\":-0.1"), "min_p");
    expect_parse(C, CHAT(",\"presence_penalty\":2.5"), "presence_penalty");
    expect_parse(C, CHAT(",\"frequency_penalty\":true"), "frequency_penalty");
    expect_parse(C, CHAT(",\"seed\":1.5"), "seed");
    expect_parse(C, CHAT(",\"seed\":-7"), NULL);
    expect_parse(C, CHAT(",\"n\":2"), "n");
    expect_parse(C, CHAT(",\"n\":\"1\""), "n");
    expect_parse(C, CHAT(",\"stream\":\"yes\""), "stream");
    expect_parse(C, CHAT(",\"stream_options\":{\"include_usage\":true}"), "stream_options");
    expect_parse(C, CHAT(",\"stream\":true,\"stream_options\":{\"include_usage\":1}"), "include_usage");
    expect_parse(C, CHAT(",\"stream\":true,\"stream_options\":{\"include_usage\":true}"), NULL);
    expect_parse(C, CHAT(",\"stop\":5"), "stop");
    expect_parse(C, CHAT(",\"stop\":[\"a\",3]"), "stop");
    expect_parse(
        C,
        CHAT(
            ",\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\",\"10\",\"11\",\"12\",\"13\",\"14\",\"15\",\"16\",\"17\"]"),
        "stop");
    expect_parse(C, CHAT(",\"logprobs\":1"), "logprobs");
    expect_parse(C, CHAT(",\"top_logprobs\":3"), "top_logprobs");
    expect_parse(C, CHAT(",\"logprobs\":true,\"top_logprobs\":21"), "top_logprobs");
    expect_parse(C, CHAT(",\"logprobs\":true,\"top_logprobs\":20"), NULL);
    expect_parse(C, CHAT(",\"logit_bias\":{\"abc\":1}"), "logit_bias");
    expect_parse(C, CHAT(",\"logit_bias\":{\"600\":1}"), "logit_bias");
    expect_parse(C, CHAT(",\"logit_bias\":{\"5\":101}"), "logit_bias");
    expect_parse(C, CHAT(",\"logit_bias\":{\"5\":-100,\"7\":3.5}"), NULL);
    expect_parse(C, CHAT(",\"response_format\":{\"type\":\"json_schema\"}"), "response_format");
    expect_parse(C, CHAT(",\"response_format\":{\"type\":\"text\"}"), NULL);
    expect_parse(C, CHAT(",\"tools\":{}"), "tools");
    expect_parse(P, "{\"prompt\":\"Once\"}", NULL);
    expect_parse(P, "{\"prompt\":[\"Once\"]}", NULL);
    expect_parse(P, "{\"prompt\":[1,2,3]}", NULL);
    expect_parse(P, "{\"prompt\":[[1,2,3]]}", NULL);
    expect_parse(P, "{\"prompt\":[\"a\",\"b\"]}", "prompt");
    expect_parse(P, "{\"prompt\":[]}", "prompt");
    expect_parse(P, "{\"prompt\":[1,\"x\"]}", "prompt");
    expect_parse(P, "{\"prompt\":[1,512]}", "prompt");
    expect_parse(P, "{\"prompt\":{}}", "prompt");
    expect_parse(P, "{}", "prompt");
    expect_parse(P, "{\"prompt\":\"x\",\"logprobs\":6}", "logprobs");
    expect_parse(P, "{\"prompt\":\"x\",\"logprobs\":2}", NULL);
    expect_parse(P, "{\"prompt\":\"x\",\"echo\":true,\"logprobs\":1}", "echo");
    expect_parse(P, "{\"prompt\":\"x\",\"suffix\":\"y\"}", "suffix");
    expect_parse(P, "{\"prompt\":\"x\",\"best_of\":3}", "best_of");
#undef CHAT
    // Bodies that are not a JSON object at all.
    const char *junk[] = {"",
                          "{",
                          "[1,2]",
                          "\"str\"",
                          "{\"prompt\": \"a\"} trailing",
                          "{\"a\":1,\"a\":2}",
                          "\xff\xfe{}",
                          "{\"prompt\":\"\xc3\x28\"}",
                          "null"};
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        aero_req r;
        aero_error err = {0};
        CHECKF(aero_req_parse(&r, P, junk[i], strlen(junk[i]), 512, NULL, &err) == AERO_ERR_INVALID, "junk %zu", i);
        CHECKF(err.msg[0], "junk %zu has no message", i);
    }
}

static void test_request_values(void) {
    const char *body =
        "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"sys\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]}],"
        "\"max_tokens\":10,\"max_completion_tokens\":12,\"temperature\":0,\"top_p\":0.5,\"top_k\":7,"
        "\"min_p\":0.1,\"seed\":42,\"stop\":[\"x\",\"\",\"yz\"],\"stream\":true,"
        "\"stream_options\":{\"include_usage\":true},\"logprobs\":true,\"top_logprobs\":3,"
        "\"presence_penalty\":0.5,\"frequency_penalty\":-0.5,\"logit_bias\":{\"3\":-100}}";
    aero_req r;
    aero_error err = {0};
    CHECK(aero_req_parse(&r, AERO_REQ_CHAT, body, strlen(body), 512, NULL, &err) == AERO_OK);
    CHECK(!strcmp(r.model, "m"));
    CHECK(r.max_tokens == 12);
    CHECK(r.sp.temp == 0.0f && r.sp.top_p == 0.5f && r.sp.top_k == 7);
    CHECK(r.has_seed && r.sp.seed == 42);
    CHECK(r.n_stop == 2 && !strcmp(r.stop[0], "x") && !strcmp(r.stop[1], "yz"));
    CHECK(r.stream && r.include_usage && r.logprobs && r.top_logprobs == 3);
    CHECK(r.n_bias == 1 && r.bias_id[0] == 3 && r.bias[0] == -100.0f);
    CHECK(json_array_size(r.messages) == 2);
    json_t *m1 = json_array_get(r.messages, 1);
    CHECK(!strcmp(json_string_value(json_object_get(m1, "content")), "ab"));
    aero_req_free(&r);

    const char *p = "{\"prompt\":\"Once upon\"}";
    CHECK(aero_req_parse(&r, AERO_REQ_COMPLETION, p, strlen(p), 0, NULL, &err) == AERO_OK);
    CHECK(r.prompt_len == 9 && !memcmp(r.prompt, "Once upon", 9) && r.max_tokens == -1 && r.sp.temp == 1.0f);
    CHECK(!r.stream && !r.logprobs);
    aero_req_free(&r);

    // An escaped NUL is valid JSON: kept with its length in text, refused where a C string is needed.
    const char *nul = "{\"prompt\":\"a\\u0000b\",\"max_tokens\":5.0}";
    CHECK(aero_req_parse(&r, AERO_REQ_COMPLETION, nul, strlen(nul), 0, NULL, &err) == AERO_OK);
    CHECK(r.prompt_len == 3 && !memcmp(r.prompt, "a\0b", 3) && r.max_tokens == 5);
    aero_req_free(&r);
    expect_parse(AERO_REQ_COMPLETION, "{\"prompt\":\"a\",\"model\":\"m\\u0000x\"}", "model");
    expect_parse(AERO_REQ_COMPLETION, "{\"prompt\":\"a\",\"stop\":[\"m\\u0000x\"]}", "stop");
    expect_parse(AERO_REQ_COMPLETION, "{\"prompt\":\"a\",\"max_tokens\":5.5}", "max_tokens");

    aero_tokenize_req t;
    const char *tb = "{\"content\":\"hello\",\"add_special\":false}";
    CHECK(aero_req_parse_tokenize(&t, tb, strlen(tb), &err) == AERO_OK);
    CHECK(t.content_len == 5 && !t.add_special && t.parse_special);
    json_decref(t.root);
    CHECK(aero_req_parse_tokenize(&t, "{\"content\":\"x\"}", 15, &err) == AERO_OK);
    CHECK(!t.add_special); // llama-server's default
    json_decref(t.root);
    CHECK(aero_req_parse_tokenize(&t, "{\"content\":1}", 13, &err) == AERO_ERR_INVALID);
    aero_detokenize_req d;
    CHECK(aero_req_parse_detokenize(&d, "{\"tokens\":[1,2,3]}", 18, 512, &err) == AERO_OK);
    CHECK(d.n == 3 && d.ids[2] == 3);
    free(d.ids);
    CHECK(aero_req_parse_detokenize(&d, "{\"tokens\":[1,999]}", 18, 512, &err) == AERO_ERR_INVALID);
    CHECK(aero_req_parse_detokenize(&d, "{\"tokens\":[-1]}", 15, 512, &err) == AERO_ERR_INVALID);
}

static size_t fake_piece(void *ctx, int32_t id, char *buf, size_t cap) {
    (void)ctx;
    const char *s = id == 1 ? "\xE2" : id == 2 ? "\x82\xAC" : "ab";
    size_t n = strlen(s);
    memcpy(buf, s, n < cap ? n : cap);
    return n;
}

static void test_oai(void) {
    CHECK(aero_oai_utf8_valid("h\xC3\xA9llo", 6));
    CHECK(!aero_oai_utf8_valid("\xC3", 1));
    CHECK(!aero_oai_utf8_valid("\xC0\x80", 2));         // overlong NUL
    CHECK(!aero_oai_utf8_valid("\xED\xA0\x80", 3));     // surrogate
    CHECK(!aero_oai_utf8_valid("\xF4\x90\x80\x80", 4)); // above U+10FFFF
    json_t *s = aero_oai_string("a\xFF"
                                "b",
                                3);
    CHECK(s && !strcmp(json_string_value(s), "a\xEF\xBF\xBD"
                                             "b"));
    json_decref(s);

    json_t *e = aero_oai_error(400, "bad \"thing\"", "messages", NULL);
    char *txt = json_dumps(e, JSON_COMPACT | JSON_SORT_KEYS);
    CHECK(!strcmp(txt, "{\"error\":{\"code\":null,\"message\":\"bad \\\"thing\\\"\",\"param\":\"messages\","
                       "\"type\":\"invalid_request_error\"}}"));
    free(txt);
    json_decref(e);
    CHECK(!strcmp(aero_oai_error_type(401), "authentication_error"));
    CHECK(!strcmp(aero_oai_error_type(404), "not_found_error"));
    CHECK(!strcmp(aero_oai_error_type(500), "server_error"));

    aero_oai_meta m = {.chat = true, .id = "chatcmpl-1", .model = "stories", .created = 1700000000};
    json_t *c = aero_oai_chunk(&m, true, "", 0, NULL, NULL, true);
    size_t len;
    char *sse = aero_oai_sse(c, &len);
    CHECK(len == strlen(sse));
    CHECK(!strncmp(sse, "data: {", 7) && !strcmp(sse + len - 3, "}\n\n"));
    CHECK(strstr(sse, "\"object\":\"chat.completion.chunk\""));
    CHECK(strstr(sse, "\"delta\":{\"role\":\"assistant\",\"content\":\"\"}"));
    CHECK(strstr(sse, "\"finish_reason\":null"));
    CHECK(strstr(sse, "\"usage\":null"));
    free(sse);
    json_decref(c);
    c = aero_oai_chunk(&m, false, NULL, 0, "stop", NULL, false);
    sse = aero_oai_sse(c, &len);
    CHECK(strstr(sse, "\"delta\":{}") && strstr(sse, "\"finish_reason\":\"stop\"") && !strstr(sse, "usage"));
    CHECK(!strchr(sse, '\n') || strchr(sse, '\n') == sse + len - 2); // one line per event
    free(sse);
    json_decref(c);
    c = aero_oai_usage_chunk(&m, 5, 7);
    CHECK(json_array_size(json_object_get(c, "choices")) == 0);
    CHECK(json_integer_value(json_object_get(json_object_get(c, "usage"), "total_tokens")) == 12);
    json_decref(c);

    json_t *r = aero_oai_response(&m, "hi\nthere", 8, "length", NULL, 3, 4);
    json_t *ch = json_array_get(json_object_get(r, "choices"), 0);
    CHECK(!strcmp(json_string_value(json_object_get(r, "object")), "chat.completion"));
    CHECK(!strcmp(json_string_value(json_object_get(json_object_get(ch, "message"), "content")), "hi\nthere"));
    CHECK(!strcmp(json_string_value(json_object_get(ch, "finish_reason")), "length"));
    CHECK(json_integer_value(json_object_get(json_object_get(r, "usage"), "completion_tokens")) == 4);
    json_decref(r);
    m.chat = false;
    r = aero_oai_response(&m, "x", 1, "stop", NULL, 1, 1);
    CHECK(!strcmp(json_string_value(json_object_get(r, "object")), "text_completion"));
    CHECK(!strcmp(json_string_value(json_object_get(json_array_get(json_object_get(r, "choices"), 0), "text")), "x"));
    json_decref(r);

    // Logprobs: a token that is half a character still yields valid JSON with its raw bytes.
    aero_oai_logprob lp[2] = {{.id = 1, .logprob = -0.5f, .n_top = 2, .top_id = {1, 3}, .top_lp = {-0.5f, -1.0f}},
                              {.id = 2, .logprob = -0.25f, .n_top = 1, .top_id = {2}, .top_lp = {-0.25f}}};
    json_t *l = aero_oai_logprobs(true, lp, 2, 2, fake_piece, NULL, 0);
    json_t *c0 = json_array_get(json_object_get(l, "content"), 0);
    CHECK(!strcmp(json_string_value(json_object_get(c0, "token")), "\xEF\xBF\xBD"));
    CHECK(json_integer_value(json_array_get(json_object_get(c0, "bytes"), 0)) == 0xE2);
    CHECK(json_array_size(json_object_get(c0, "top_logprobs")) == 2);
    json_decref(l);
    l = aero_oai_logprobs(false, lp, 2, 2, fake_piece, NULL, 10);
    CHECK(json_array_size(json_object_get(l, "tokens")) == 2);
    CHECK(json_integer_value(json_array_get(json_object_get(l, "text_offset"), 1)) == 11);
    CHECK(json_object_size(json_array_get(json_object_get(l, "top_logprobs"), 0)) == 2);
    json_decref(l);
}

// The append buffer: stays NUL-terminated through growth, printf past the spare capacity, take and clear.
static void test_buf(void) {
    aero_buf b = {0};
    char *empty = aero_buf_take(&b, NULL);
    CHECK(empty && !strcmp(empty, ""));
    free(empty);
    CHECK(aero_buf_append(&b, "ab", 2));
    CHECK(b.len == 2 && !strcmp(b.p, "ab"));
    CHECK(aero_buf_append(&b, NULL, 0) && b.len == 2);
    char big[1000];
    memset(big, 'x', sizeof big);
    CHECK(aero_buf_printf(&b, "%d-%.*s", 42, (int)sizeof big, big));
    CHECK(b.len == 2 + 3 + sizeof big && b.p[b.len] == 0 && !memcmp(b.p, "ab42-x", 6));
    CHECK(aero_buf_puts(&b, "!") && b.p[b.len - 1] == '!');
    aero_buf_clear(&b);
    CHECK(b.len == 0 && b.p && b.p[0] == 0 && !b.oom);
    CHECK(aero_buf_printf(&b, "%s", "tail"));
    size_t n;
    char *t = aero_buf_take(&b, &n);
    CHECK(t && n == 4 && !strcmp(t, "tail"));
    CHECK(b.p == NULL && b.len == 0 && b.cap == 0);
    free(t);
    aero_buf_free(&b);
}

// The whole-file reader: contents with a terminator, the size bound (AERO_ERR_RANGE), a missing file (IO).
static void test_read_file(void) {
    char path[] = "/tmp/aero_test_read_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    CHECK(write(fd, "hello\0world", 11) == 11);
    close(fd);
    char *p;
    size_t n;
    aero_error err = {0};
    CHECK(aero_read_file(path, 0, &p, &n, &err) == AERO_OK);
    CHECK(n == 11 && p && !memcmp(p, "hello\0world", 12));
    free(p);
    CHECK(aero_read_file(path, 11, &p, &n, &err) == AERO_OK);
    free(p);
    CHECK(aero_read_file(path, 10, &p, &n, &err) == AERO_ERR_RANGE && !p && strstr(err.msg, "10-byte limit"));
    unlink(path);
    CHECK(aero_read_file(path, 0, &p, &n, &err) == AERO_ERR_IO && !p && strstr(err.msg, path));
}

int main(void) {
    test_stop();
    test_request_matrix();
    test_request_values();
    test_oai();
    test_buf();
    test_read_file();
    return check_done("test_server");
}
