// GBNF (llama.cpp's grammar format) -> grammar, for llama-server's "grammar" request field: rules
// `name ::= alternatives`, literals "..." (escapes \n \r \t \\ \" \xHH \uHHHH), byte classes [a-z] and negated
// classes [^...] (which also admit every non-ASCII character), `.` (any character), groups ( ), repetition
// * + ? {m} {m,} {m,n}, and # comments. Non-ASCII members inside a class are refused (use an alternation
// of literals); left recursion is refused. The root rule is `root`.
#ifndef AERO_GBNF_H
#define AERO_GBNF_H

#include <stddef.h>

#include "../core/status.h"
#include "grammar.h"

aero_status aero_gbnf_compile(aero_grammar **out, const char *text, size_t len, aero_error *err);

#endif
