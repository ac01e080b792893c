// Conformance of the chat-template renderer against recorded oracles: every conversation of
// tests/fixtures/chat/hf_cases.json (real templates of Llama 3, Llama 3.1, Qwen3, Gemma 3, DeepSeek-V3 and
// Phi-3, rendered by @huggingface/jinja) must come out byte for byte, and the error cases must fail; every
// case of jinja2_cases.json (rendered by Python's jinja2 as transformers configures it, where the two
// renderers disagree) must match jinja2.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modules.h" // the module headers: a white-box test

#include "check.h"

#define HF_FIXTURE "tests/fixtures/chat/hf_cases.json"
#define J2_FIXTURE "tests/fixtures/chat/jinja2_cases.json"

// Prints where two renderings first differ, with a little context.
static void show_diff(const char *what, const char *want, size_t wn, const char *got, size_t gn) {
    size_t i = 0;
    while (i < wn && i < gn && want[i] == got[i]) i++;
    size_t from = i > 40 ? i - 40 : 0;
    fprintf(stderr, "%s: first difference at byte %zu (want %zu bytes, got %zu)\n  want: ", what, i, wn, gn);
    for (size_t k = from; k < wn && k < i + 40; k++) fputc(want[k] == '\n' ? '|' : want[k], stderr);
    fprintf(stderr, "\n  got:  ");
    for (size_t k = from; k < gn && k < i + 40; k++) fputc(got[k] == '\n' ? '|' : got[k], stderr);
    fputc('\n', stderr);
}

// Renders one case; returns the output (malloc'ed) or NULL with err filled.
static char *render_case(const aero_chat_template *t, json_t *cs, const char *bos, const char *eos, size_t *n,
                         aero_error *err) {
    json_t *extra = json_object_get(cs, "extra");
    json_t *tools = json_object_get(cs, "tools");
    aero_chat_inputs in = {
        .messages = json_object_get(cs, "messages"),
        .tools = json_is_array(tools) ? tools : NULL,
        .add_generation_prompt = json_is_true(json_object_get(cs, "add_generation_prompt")),
        .bos_token = bos,
        .eos_token = eos,
        .extra = json_is_object(extra) ? extra : NULL,
    };
    char *out = NULL;
    if (aero_chat_render(t, &in, &out, n, err) != AERO_OK) return NULL;
    return out;
}

static int run_fixture(const char *path, int *n_cases) {
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) {
        fprintf(stderr, "%s: %s (line %d)\n", path, je.text, je.line);
        check_failures++;
        return 1;
    }
    json_t *templates = json_object_get(root, "templates"), *cases = json_object_get(root, "cases");
    CHECK(json_is_object(templates) && json_is_array(cases));
    // parse each template once
    const char *id;
    json_t *tv;
    json_t *parsed = json_object();
    json_object_foreach(templates, id, tv) {
        aero_chat_template *t = NULL;
        aero_error err = {0};
        json_t *src = json_object_get(tv, "source");
        aero_status st = aero_chat_template_parse(&t, json_string_value(src), json_string_length(src), &err);
        CHECKF(st == AERO_OK, "%s: template %s does not parse: %s", path, id, err.msg);
        if (st == AERO_OK) json_object_set_new(parsed, id, json_integer((json_int_t)(intptr_t)t));
    }
    size_t i;
    json_t *cs;
    int failures = 0;
    json_array_foreach(cases, i, cs) {
        const char *tid = json_string_value(json_object_get(cs, "template"));
        const char *name = json_string_value(json_object_get(cs, "name"));
        json_t *tp = json_object_get(parsed, tid);
        json_t *tinfo = json_object_get(templates, tid);
        if (!tp) continue;
        const aero_chat_template *t = (const aero_chat_template *)(intptr_t)json_integer_value(tp);
        json_t *want = json_object_get(cs, "expected");
        size_t n = 0;
        aero_error err = {0};
        char *got = render_case(t, cs, json_string_value(json_object_get(tinfo, "bos")),
                                json_string_value(json_object_get(tinfo, "eos")), &n, &err);
        char what[160];
        snprintf(what, sizeof what, "%s %s/%s", path, tid, name);
        if (json_is_string(want)) {
            if (!got) {
                fprintf(stderr, "%s: render failed: %s\n", what, err.msg);
                failures++;
            } else if (n != json_string_length(want) || memcmp(got, json_string_value(want), n)) {
                show_diff(what, json_string_value(want), json_string_length(want), got, n);
                failures++;
            }
        } else {
            if (got) {
                fprintf(stderr, "%s: expected an error (%s), rendered %zu bytes\n", what,
                        json_string_value(json_object_get(cs, "error")), n);
                failures++;
            } else if (!err.msg[0] || err.code != AERO_ERR_INVALID) {
                fprintf(stderr, "%s: error without a message or with code %d\n", what, err.code);
                failures++;
            }
        }
        free(got);
        (*n_cases)++;
    }
    json_object_foreach(parsed, id, tv) aero_chat_template_free((aero_chat_template *)(intptr_t)json_integer_value(tv));
    json_decref(parsed);
    json_decref(root);
    check_failures += failures;
    return failures;
}

// The phi-3 template is taken from the GGUF file itself through the GGUF reader, as serve/chat do.
static void check_gguf_template(void) {
    const char *path = SHARED_DATA "/vocab/ggml-vocab-phi-3.gguf";
    if (access(path, R_OK) != 0) {
        printf("note: %s absent, GGUF template check skipped\n", path);
        return;
    }
    aero_gguf g;
    aero_error err = {0};
    if (aero_gguf_open(&g, path, &err) != AERO_OK) {
        CHECKF(0, "%s: %s", path, err.msg);
        return;
    }
    const char *src = aero_chat_template_source_gguf(&g);
    CHECK(src != NULL);
    json_t *root = json_load_file(HF_FIXTURE, 0, NULL);
    const char *want =
        json_string_value(json_object_get(json_object_get(json_object_get(root, "templates"), "phi3"), "source"));
    CHECKF(src && want && !strcmp(src, want), "the phi-3 GGUF template differs from the fixture's");
    aero_chat_template *t = NULL;
    CHECKF(aero_chat_template_from_gguf(&t, &g, &err) == AERO_OK, "%s", err.msg);
    aero_chat_template_free(t);
    json_decref(root);
    aero_gguf_free(&g);
}

int main(void) {
    int n = 0;
    int f = run_fixture(HF_FIXTURE, &n);
    printf("%s: %d cases, %d differences\n", HF_FIXTURE, n, f);
    int n2 = 0;
    if (access(J2_FIXTURE, R_OK) == 0) {
        f = run_fixture(J2_FIXTURE, &n2);
        printf("%s: %d cases, %d differences\n", J2_FIXTURE, n2, f);
    }
    check_gguf_template();
    return check_done("test_chat_oracle");
}
