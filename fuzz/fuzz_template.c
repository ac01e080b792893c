// libFuzzer target for the chat-template parser and interpreter: any byte string must parse or give an error
// naming a line, never crash, leak or read out of bounds; whatever parses is rendered over a small
// conversation (with tools, list content and a tool call) under lowered step/memory limits, and must render
// or fail with a message.
// Run: make fuzz && build-fuzz/fuzz_template -max_total_time=60 fuzz/corpus/template -dict=fuzz/template.dict
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat.h"
#include "chat/jinja.h"

static json_t *messages, *tools, *extra;

static void setup(void) {
    const char *m = "[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                    "{\"role\":\"user\",\"content\":\"Hi \\u00e9\\ud83d\\ude00 {{ x }}\"},"
                    "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"type\":\"function\",\"function\":"
                    "{\"name\":\"f\",\"arguments\":{\"x\":1,\"y\":[true,null,2.5]}}}]},"
                    "{\"role\":\"tool\",\"content\":\"42\"},"
                    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"look\"},{\"type\":\"image\"}]}]";
    messages = json_loads(m, 0, NULL);
    tools = json_loads("[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\"}}}]",
                       0, NULL);
    extra = json_loads("{\"enable_thinking\":false,\"date_string\":\"1 Jan 2025\"}", 0, NULL);
    if (!messages || !tools || !extra) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!messages) setup();
    aero_chat_template *t = NULL;
    aero_error err = {0};
    if (aero_chat_template_parse(&t, (const char *)data, size, &err) != AERO_OK) {
        if (!err.msg[0] || t) abort(); // an error always says what is wrong and returns no template
        return 0;
    }
    jtemplate_set_limits(t, 20000, 16u << 20);
    for (int k = 0; k < 2; k++) {
        aero_chat_inputs in = {.messages = messages,
                               .tools = k ? tools : NULL,
                               .add_generation_prompt = k == 1,
                               .bos_token = "<s>",
                               .eos_token = "</s>",
                               .extra = k ? extra : NULL};
        char *out = NULL;
        size_t n = 0;
        aero_error rerr = {0};
        aero_status st = aero_chat_render(t, &in, &out, &n, &rerr);
        if (st == AERO_OK) {
            if (!out || out[n] != 0) abort();
            free(out);
        } else if (!rerr.msg[0] || out) {
            abort();
        }
    }
    aero_chat_template_free(t);
    return 0;
}
