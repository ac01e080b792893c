// Stop strings matched across token boundaries, for the generation layer (generate.c). Generated text grows
// piece by piece; the matcher finds the first stop string anywhere in it and says how much text is safe to
// show: never a tail that could be the beginning of a stop string, so a stop string is never emitted, not
// even in part.
#ifndef AERO_MODEL_STOP_H
#define AERO_MODEL_STOP_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    const char *const *stops; // borrowed; empty strings are ignored
    int n;
    size_t max_len;   // longest stop string
    size_t scan_from; // earliest offset where a not-yet-seen match could start
} aero_stop;

void aero_stop_init(aero_stop *s, const char *const *stops, int n);
// Call after text grew to len bytes (text is the whole generation so far). Returns true when a stop string
// occurs: *cut is the offset of the earliest one (the text to keep). Otherwise *safe is how many leading
// bytes may be released (len minus the longest tail that is a proper prefix of a stop string).
bool aero_stop_scan(aero_stop *s, const char *text, size_t len, size_t *cut, size_t *safe);

#endif
