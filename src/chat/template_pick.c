// The one rule for choosing a chat template (see template_pick.h).
#include "template_pick.h"

#include <stdio.h>
#include <string.h>

const char aero_chat_template_chatml[] =
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% endif %}{{ '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

// A model without a template (the bundled teacher) still chats, through ChatML, and the user is told.
aero_status aero_chat_template_pick(aero_chat_template **out, const aero_gguf *g, const char *file, const char **name,
                                    char *note, size_t note_cap, aero_error *err) {
    *out = NULL;
    if (note_cap) note[0] = 0;
    if (file) {
        *name = "file";
        return aero_chat_template_load_file(out, file, err);
    }
    if (g && aero_chat_template_source_gguf(g)) {
        aero_error terr = {0};
        if (aero_chat_template_from_gguf(out, g, &terr) == AERO_OK) {
            *name = "model";
            return AERO_OK;
        }
        snprintf(note, note_cap, "the model's chat template cannot be used (%s); chats use ChatML", terr.msg);
    } else {
        snprintf(note, note_cap, "the model has no chat template; chats use the ChatML fallback");
    }
    *name = "chatml fallback";
    return aero_chat_template_parse(out, aero_chat_template_chatml, strlen(aero_chat_template_chatml), err);
}
