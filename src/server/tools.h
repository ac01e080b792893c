// Tool calls: which call format a chat template uses (read from the markers in its text, never from a list of
// model names), the grammar that forces a call (tool_choice "required" or a named function: the tools' own
// parameter schemas compiled by the JSON-schema compiler, wrapped in the format's markers), and the parser that
// turns the model's output into OpenAI tool_calls, also on a partial output so that a stream can send
// argument deltas as they are generated.
//
// Formats (what the model writes):
//   hermes    <tool_call>\n{"name": N, "arguments": {...}}\n</tool_call>       Hermes, Qwen 2.5/3
//   llama3    {"name": N, "parameters": {...}}, or <|python_tag|>N.call(k="v")  Llama 3.1/3.2/3.3
//   mistral   [TOOL_CALLS][{"name": N, "arguments": {...}}, ...]                Mistral Nemo/Small
//   deepseek  <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>N\n```json\n{...}\n```
//             <｜tool▁call▁end｜>...<｜tool▁calls▁end｜> (V3, R1), or ...begin｜>N<｜tool▁sep｜>{...}<｜tool▁call▁end｜> (V3.1)
//   generic   {"name": N, "arguments": {...}} or an array of them (a template that names tools in no known format)
#ifndef AERO_SERVER_TOOLS_H
#define AERO_SERVER_TOOLS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "../core/status.h"
#include "../sample/grammar.h"

typedef enum {
    AERO_TOOLS_UNSUPPORTED = 0, // the template renders neither tools nor tool calls
    AERO_TOOLS_GENERIC,
    AERO_TOOLS_HERMES,
    AERO_TOOLS_LLAMA3,
    AERO_TOOLS_MISTRAL,
    AERO_TOOLS_DEEPSEEK,    // V3 / R1: "function<｜tool▁sep｜>NAME\n```json ..."
    AERO_TOOLS_DEEPSEEK_V31 // V3.1: "NAME<｜tool▁sep｜>ARGS"
} aero_tool_format;

typedef struct {
    aero_tool_format format;
    bool renders_tools; // the template reads `tools` (else the server lists them in a system message)
} aero_tool_style;

// The format of a template's text (NULL: the ChatML fallback, which has none).
aero_tool_style aero_tool_style_detect(const char *template_src);
const char *aero_tool_format_name(aero_tool_format f);

#define AERO_TOOL_MAX_CALLS 32

typedef struct {
    char name[128];
    bool name_done;   // the whole name has been read
    size_t args_off;  // the arguments' JSON text in the output
    size_t args_len;  // bytes of it so far
    bool args_done;   // the arguments' value is complete
    char *args_owned; // arguments built by the parser (a python-style call), replacing the span; malloc'ed
} aero_tool_call;

typedef struct {
    size_t content_len; // leading bytes of the output that are text for the user (safe to show)
    int n_calls;
    aero_tool_call calls[AERO_TOOL_MAX_CALLS];
    bool calls_ok; // final: the output after the content parsed as complete calls
} aero_tool_parse;

// Parses output (len bytes). partial: the output may continue (streaming): content stops before anything that
// may begin a call, and calls hold what is complete so far. tools: the request's (names a marker-less format
// must match). Free with aero_tool_parse_free.
void aero_tool_parse_output(aero_tool_format f, const char *text, size_t len, bool partial, const json_t *tools,
                            aero_tool_parse *out);
void aero_tool_parse_free(aero_tool_parse *p);
// The arguments of call i as OpenAI sends them (a JSON text; a string value decoded), malloc'ed.
char *aero_tool_call_arguments(const aero_tool_parse *p, int i, const char *text);

// The grammar of a forced tool call: one call (or, with parallel, one or more) of the named tool, or of any
// tool when name is NULL, each with arguments valid against the tool's "parameters" schema. AERO_ERR_INVALID
// naming the keyword when a schema uses one the compiler cannot enforce.
aero_status aero_tool_grammar(aero_grammar **out, aero_tool_format f, const json_t *tools, const char *name,
                              bool parallel, char *keyword, aero_error *err);

// A system message listing the tools, for a template that renders tool calls but not tool definitions
// (DeepSeek V3): malloc'ed text.
char *aero_tool_system_text(const json_t *tools, aero_tool_format f);

#endif
