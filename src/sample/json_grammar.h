// JSON schema -> grammar: the JSON texts a schema accepts, as a grammar the token mask can enforce
// (response_format json_schema; json_object is the schema-less case). Objects are written with their
// properties in declared order (required ones always, optional ones when the model chooses), no properties
// beyond the declared ones, and bounded whitespace and number lengths so a model cannot loop on them. What
// the grammar cannot express exactly is refused with the keyword's name rather than silently loosened.
//
// Supported: type (one or several), properties, required, additionalProperties (false, true or a schema),
// items, minItems, maxItems, enum, const, anyOf, oneOf (as anyOf), allOf (of one schema), $ref to "#..."
// (recursion allowed), minLength, maxLength, format (date, time, date-time, uuid, email), minimum/maximum on
// integers (a range up to 10000 values, or minimum 0 or 1 without maximum) and on numbers (integral bounds
// from 0 to 100000), and the annotations (title, description, default, examples, $schema, $id, $comment,
// deprecated, readOnly, writeOnly, $defs, definitions).
#ifndef AERO_JSON_GRAMMAR_H
#define AERO_JSON_GRAMMAR_H

#include <jansson.h>

#include "../core/status.h"
#include "grammar.h"

// Compiles a schema (NULL: any JSON object) into a grammar of JSON texts, optionally led by whitespace. On an
// unsupported keyword the status is AERO_ERR_INVALID, the message names it and where it is, and keyword (when
// not NULL, 64 bytes) receives the keyword alone.
aero_status aero_json_grammar_compile(aero_grammar **out, const json_t *schema, char *keyword, aero_error *err);

#endif
