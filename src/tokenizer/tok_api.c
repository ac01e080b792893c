// The streaming detokenizer as an opaque handle (include/aerollm.h), for callers that cannot hold an aero_detok
// on their stack because its layout is internal.
#include <stdlib.h>

#include "tokenizer.h"

// A detokenizer whose first token starts the output; NULL when out of memory.
aero_detok *aero_detok_new(const aero_tokenizer *t, bool render_special) {
    aero_detok *d = malloc(sizeof *d);
    if (d) aero_detok_init(d, t, render_special);
    return d;
}

// Frees what aero_detok_new made (NULL is fine).
void aero_detok_free(aero_detok *d) { free(d); }
