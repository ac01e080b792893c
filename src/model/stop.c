// The stop-string matcher (see stop.h).
#include "stop.h"

#include <string.h>

// Remembers the stop strings and their longest length, which bounds how far back a new match may start.
void aero_stop_init(aero_stop *s, const char *const *stops, int n) {
    s->stops = stops;
    s->n = n;
    s->max_len = 0;
    s->scan_from = 0;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(stops[i]);
        if (l > s->max_len) s->max_len = l;
    }
}

// Looks only at the region new text could complete, so the cost per token is O(max_len * n), not O(len).
bool aero_stop_scan(aero_stop *s, const char *text, size_t len, size_t *cut, size_t *safe) {
    *cut = len;
    *safe = len;
    if (s->max_len == 0) return false;
    bool found = false;
    size_t best = len;
    for (int i = 0; i < s->n; i++) {
        size_t l = strlen(s->stops[i]);
        if (l == 0 || l > len) continue;
        const char *hay = text + s->scan_from;
        size_t hay_len = len - s->scan_from;
        const char *p = memmem(hay, hay_len, s->stops[i], l);
        if (p && (size_t)(p - text) < best) {
            best = (size_t)(p - text);
            found = true;
        }
    }
    if (found) {
        *cut = best;
        *safe = best;
        return true;
    }
    // No match can start before len - (max_len - 1) any more.
    s->scan_from = len >= s->max_len ? len - (s->max_len - 1) : 0;
    // Longest tail of text that is a proper prefix of some stop string: held back.
    size_t hold = 0;
    size_t lim = s->max_len - 1 < len ? s->max_len - 1 : len;
    for (size_t k = lim; k > 0 && hold == 0; k--) {
        for (int i = 0; i < s->n; i++) {
            size_t l = strlen(s->stops[i]);
            if (l > k && memcmp(text + len - k, s->stops[i], k) == 0) {
                hold = k;
                break;
            }
        }
    }
    *safe = len - hold;
    return false;
}
