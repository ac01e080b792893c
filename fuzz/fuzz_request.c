// libFuzzer target for the server's request side: the OpenAI request parser (chat and completions), the
// tokenize/detokenize parsers, the response builders fed with what parsed, and the stop-string matcher
// checked against a brute-force search. Any byte string must give a result or an error, never a crash.
// Run: make fuzz && build-fuzz/fuzz_request -max_total_time=60
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/oai.h"
#include "server/request.h"
#include "model/stop.h"

static size_t piece(void *ctx, int32_t id, char *buf, size_t cap) {
    (void)ctx;
    int n = snprintf(buf, cap, "<%d>\xE2", id); // ends inside a character on purpose
    return (size_t)n;
}

// What the parser accepted must be within the documented ranges and usable by the response builders.
static void check_request(const aero_req *r) {
    if (r->max_tokens != -1 && (r->max_tokens < 1 || r->max_tokens > (1 << 30))) abort();
    if (r->n_stop < 0 || r->n_stop > AERO_REQ_MAX_STOP) abort();
    for (int i = 0; i < r->n_stop; i++)
        if (!r->stop[i][0] || strlen(r->stop[i]) > AERO_REQ_MAX_STOP_LEN) abort();
    if (r->sp.temp < 0 || r->sp.temp > 2 || r->sp.top_p < 0 || r->sp.top_p > 1) abort();
    if (r->top_logprobs < 0 || r->top_logprobs > 20) abort();
    for (int i = 0; i < r->n_bias; i++)
        if (r->bias_id[i] < 0 || r->bias_id[i] >= 512) abort();
    for (size_t i = 0; i < r->n_prompt_ids; i++)
        if (r->prompt_ids[i] < 0 || r->prompt_ids[i] >= 512) abort();
    if (r->kind == AERO_REQ_CHAT) {
        if (!json_is_array(r->messages) || json_array_size(r->messages) == 0) abort();
        size_t i;
        json_t *m;
        json_array_foreach(r->messages, i, m) {
            json_t *c = json_object_get(m, "content");
            if (!json_is_string(json_object_get(m, "role")) || !(json_is_string(c) || json_is_null(c))) abort();
        }
    } else if (!r->prompt_ids && !r->prompt) {
        abort();
    }
    aero_oai_meta meta = {.chat = r->kind == AERO_REQ_CHAT, .id = "x", .model = r->model ? r->model : "m"};
    const char *text = r->prompt ? r->prompt : "";
    size_t len = r->prompt ? r->prompt_len : 0;
    aero_oai_logprob lp = {.id = 3, .logprob = -1, .n_top = 2, .top_id = {3, 4}, .top_lp = {-1, -2}};
    json_t *j = aero_oai_response(&meta, text, len, "stop",
                                  aero_oai_logprobs(meta.chat, &lp, 1, r->top_logprobs, piece, NULL, 0), 1, 1);
    size_t n;
    char *sse = aero_oai_sse(j, &n);
    if (!sse || strlen(sse) != n || memchr(sse, '\n', n - 2)) abort(); // one line per event
    free(sse);
    json_decref(j);
}

// Incremental matching must agree with searching the whole text at once.
static void check_stop(const uint8_t *data, size_t size) {
    if (size < 2) return;
    size_t n_stops = (data[0] % 3) + 1;
    const char *stops[3];
    char store[3][8];
    size_t off = 1;
    for (size_t i = 0; i < n_stops; i++) {
        size_t l = off < size ? data[off] % 5 + 1 : 1;
        off++;
        for (size_t k = 0; k < l; k++) store[i][k] = off + k < size ? "ab\xC3\xA9"[data[off + k] % 4] : 'a';
        store[i][l] = 0;
        off += l;
        stops[i] = store[i];
    }
    aero_stop s;
    aero_stop_init(&s, stops, (int)n_stops);
    char text[512];
    size_t len = 0, released = 0;
    while (off < size && len < 400) {
        size_t pl = data[off++] % 4 + 1;
        for (size_t k = 0; k < pl && off < size; k++) text[len++] = "ab\xC3\xA9 "[data[off++] % 5];
        size_t cut, safe;
        bool found = aero_stop_scan(&s, text, len, &cut, &safe);
        size_t first = len; // brute force: earliest occurrence of any stop
        for (size_t i = 0; i < n_stops; i++) {
            size_t l = strlen(stops[i]);
            for (size_t p = 0; p + l <= len; p++)
                if (!memcmp(text + p, stops[i], l) && p < first) first = p;
        }
        if (found != (first < len)) abort();
        if (found) {
            if (cut != first || cut < released) abort();
            return;
        }
        if (safe < released || safe > len) abort();
        // nothing released may start a stop string that the next bytes could complete
        for (size_t p = 0; p < safe; p++)
            for (size_t i = 0; i < n_stops; i++) {
                size_t l = strlen(stops[i]);
                if (len - p < l && !memcmp(text + p, stops[i], len - p)) abort();
            }
        released = safe;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    aero_error err = {0};
    switch (data[0] % 4) {
    case 0:
    case 1: {
        aero_req r;
        aero_req_kind kind = data[0] % 4 == 0 ? AERO_REQ_CHAT : AERO_REQ_COMPLETION;
        if (aero_req_parse(&r, kind, body, len, 512, NULL, &err) == AERO_OK) {
            check_request(&r);
            aero_req_free(&r);
        } else if (!err.msg[0]) {
            abort(); // every failure says why
        }
        break;
    }
    case 2: {
        aero_tokenize_req t;
        if (aero_req_parse_tokenize(&t, body, len, &err) == AERO_OK) {
            if (!aero_oai_utf8_valid(t.content, t.content_len)) abort();
            json_decref(t.root);
        }
        aero_detokenize_req d;
        if (aero_req_parse_detokenize(&d, body, len, 512, &err) == AERO_OK) {
            for (size_t i = 0; i < d.n; i++)
                if (d.ids[i] < 0 || d.ids[i] >= 512) abort();
            free(d.ids);
        }
        json_t *s = aero_oai_string(body, len);
        if (!s) abort();
        json_decref(s);
        break;
    }
    default: check_stop(data + 1, size - 1);
    }
    return 0;
}
