// Which chat template a model is rendered with, decided in one place for `chat`, `template` and `serve`.
#ifndef AERO_CHAT_TEMPLATE_PICK_H
#define AERO_CHAT_TEMPLATE_PICK_H

#include <stddef.h>

#include "../core/status.h"
#include "../format/gguf.h"
#include "chat.h"

// The ChatML template used when a model has no usable template of its own:
//   <|im_start|>{role}\n{content}<|im_end|>\n ... <|im_start|>assistant\n
extern const char aero_chat_template_chatml[];

// Picks the template: the file when given (a failure is an error), else the model's own (g may be NULL), else
// ChatML. *name is "file", "model" or "chatml fallback"; note (note_cap bytes) receives, when the fallback was
// taken, a sentence saying why for the user (else ""). Errors only for a bad file or out of memory.
aero_status aero_chat_template_pick(aero_chat_template **out, const aero_gguf *g, const char *file, const char **name,
                                    char *note, size_t note_cap, aero_error *err);

#endif
