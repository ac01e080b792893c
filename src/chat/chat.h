// Chat templates: the model's own Hugging Face chat template (a Jinja program, GGUF key
// `tokenizer.chat_template`) parsed and rendered in C with the semantics of Python's jinja2 as transformers
// configures it (trim_blocks, lstrip_blocks, loop controls, raise_exception, strftime_now, its tojson), so a
// conversation becomes exactly the prompt the model was trained on.
#ifndef AERO_CHAT_H
#define AERO_CHAT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "../core/status.h"
#include "../format/gguf.h"

typedef struct aero_chat_template aero_chat_template;

// Parses a template; on error err names the construct and the line.
aero_status aero_chat_template_parse(aero_chat_template **out, const char *source, size_t len, aero_error *err);

#include "../../include/aerollm.h" // aero_chat_inputs

// The template text stored in a GGUF file (`tokenizer.chat_template`), or NULL when the file has none.
const char *aero_chat_template_source_gguf(const aero_gguf *g);

// Parses the GGUF file's template; AERO_ERR_FORMAT naming the key when the file carries none.
aero_status aero_chat_template_from_gguf(aero_chat_template **out, const aero_gguf *g, aero_error *err);

// Reads and parses a template file; a .json file is taken as a tokenizer_config.json (its "chat_template"
// string, or the entry named "default" of a list of {name, template}), anything else as the template text.
aero_status aero_chat_template_load_file(aero_chat_template **out, const char *path, aero_error *err);

#endif
