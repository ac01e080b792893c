// UTF-8 and Unicode normalization for the tokenizer. Invalid bytes never stop processing: they pass through
// as themselves, so every input has a defined tokenization.
#include "tok_unicode.h"

#include <stdlib.h>
#include <string.h>

// Decodes one UTF-8 sequence strictly (no overlongs, no surrogates, <= U+10FFFF), so that what the regex
// engine and the tables see is the same set of code points.
int aero_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        v = c & 0x1F;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        v = c & 0x0F;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        v = c & 0x07;
        min = 0x10000;
    } else {
        *cp = AERO_UTF8_INVALID;
        return 1;
    }
    if ((size_t)len > n) {
        *cp = AERO_UTF8_INVALID;
        return 1;
    }
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *cp = AERO_UTF8_INVALID;
            return 1;
        }
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        *cp = AERO_UTF8_INVALID;
        return 1;
    }
    *cp = v;
    return len;
}

// Encodes a code point; the inverse of aero_utf8_decode for valid scalars.
int aero_utf8_encode(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = 0xC0 | (cp >> 6);
        o[1] = 0x80 | (cp & 0x3F);
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = 0xE0 | (cp >> 12);
        o[1] = 0x80 | ((cp >> 6) & 0x3F);
        o[2] = 0x80 | (cp & 0x3F);
        return 3;
    }
    o[0] = 0xF0 | (cp >> 18);
    o[1] = 0x80 | ((cp >> 12) & 0x3F);
    o[2] = 0x80 | ((cp >> 6) & 0x3F);
    o[3] = 0x80 | (cp & 0x3F);
    return 4;
}

// Lets callers take the fast path (no invalid-byte handling) for the common all-valid input.
size_t aero_utf8_valid_prefix(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        int l = aero_utf8_decode(s + i, n - i, &cp);
        if (cp == AERO_UTF8_INVALID) break;
        i += (size_t)l;
    }
    return i;
}

// Binary search in sorted, disjoint code point ranges.
static int range_lookup(const aero_tok_urange *r, uint32_t n, uint32_t cp, int dflt) {
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (cp < r[mid].lo) hi = mid;
        else if (cp > r[mid].hi) lo = mid + 1;
        else return r[mid].v;
    }
    return dflt;
}

// General category, for the BERT pre-tokenizer's punctuation/control/accent tests.
int aero_unicode_category(uint32_t cp) {
    if (cp > 0x10FFFF) return AERO_GC_Cn;
    return range_lookup(aero_tok_gc_ranges, aero_tok_gc_n, cp, AERO_GC_Cn);
}

// White_Space as Hugging Face's regex engines define \s (PCRE2's \s differs on U+180E).
bool aero_unicode_is_whitespace(uint32_t cp) {
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
    switch (cp) {
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000: return true;
    default: return cp >= 0x2000 && cp <= 0x200A;
    }
}

// Canonical combining class, needed to order and compose marks.
int aero_unicode_ccc(uint32_t cp) {
    if (cp < 0x300 || cp > 0x10FFFF) return 0;
    return range_lookup(aero_tok_ccc_ranges, aero_tok_ccc_n, cp, 0);
}

// Simple (one to one) lowercase, as BERT's lowercasing uses per character.
uint32_t aero_unicode_tolower(uint32_t cp) {
    if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
    uint32_t lo = 0, hi = aero_tok_lower_n;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (cp < aero_tok_lower_table[mid].from) hi = mid;
        else if (cp > aero_tok_lower_table[mid].from) lo = mid + 1;
        else return aero_tok_lower_table[mid].to;
    }
    return cp;
}

// ---- normalization ----
// Invalid input bytes travel through the pipeline as code points above U+10FFFF (0x110000 + byte): they
// have class 0, never compose, and are written back as the original byte.
#define RAW_BYTE_BASE 0x110000u
#define SBASE 0xAC00u
#define LBASE 0x1100u
#define VBASE 0x1161u
#define TBASE 0x11A7u
#define LCOUNT 19u
#define VCOUNT 21u
#define TCOUNT 28u
#define NCOUNT (VCOUNT * TCOUNT)
#define SCOUNT (LCOUNT * NCOUNT)

typedef struct {
    uint32_t *p;
    size_t len, cap;
} cpvec;

// Appends a code point to the normalizer's work vector.
static bool cp_push(cpvec *v, uint32_t cp) {
    if (v->len == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        uint32_t *p = realloc(v->p, cap * sizeof *p);
        if (!p) return false;
        v->p = p;
        v->cap = cap;
    }
    v->p[v->len++] = cp;
    return true;
}

static const aero_tok_decomp *find_decomp(uint32_t cp) {
    uint32_t lo = 0, hi = aero_tok_decomp_n;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (cp < aero_tok_decomp_table[mid].cp) hi = mid;
        else if (cp > aero_tok_decomp_table[mid].cp) lo = mid + 1;
        else return &aero_tok_decomp_table[mid];
    }
    return NULL;
}

// Full canonical decomposition of one code point (recursive; Hangul by formula).
static bool decompose_push(cpvec *v, uint32_t cp, int depth) {
    if (cp >= SBASE && cp < SBASE + SCOUNT) {
        uint32_t s = cp - SBASE;
        if (!cp_push(v, LBASE + s / NCOUNT) || !cp_push(v, VBASE + (s % NCOUNT) / TCOUNT)) return false;
        if (s % TCOUNT) return cp_push(v, TBASE + s % TCOUNT);
        return true;
    }
    const aero_tok_decomp *d = (cp >= 0xC0 && cp < RAW_BYTE_BASE && depth < 8) ? find_decomp(cp) : NULL;
    if (!d) return cp_push(v, cp);
    if (!decompose_push(v, d->a, depth + 1)) return false;
    return d->b ? decompose_push(v, d->b, depth + 1) : true;
}

static int ccc_of(uint32_t cp) { return cp >= RAW_BYTE_BASE ? 0 : aero_unicode_ccc(cp); }

// Canonical ordering: stable insertion sort of each run of non-starters by combining class.
static void reorder(cpvec *v) {
    for (size_t i = 1; i < v->len; i++) {
        int c = ccc_of(v->p[i]);
        if (c == 0) continue;
        size_t j = i;
        uint32_t x = v->p[i];
        while (j > 0) {
            int pc = ccc_of(v->p[j - 1]);
            if (pc == 0 || pc <= c) break;
            v->p[j] = v->p[j - 1];
            j--;
        }
        v->p[j] = x;
    }
}

// Primary composite of a + b (Hangul by formula), or 0.
static uint32_t compose_pair(uint32_t a, uint32_t b) {
    if (a >= LBASE && a < LBASE + LCOUNT && b >= VBASE && b < VBASE + VCOUNT)
        return SBASE + ((a - LBASE) * VCOUNT + (b - VBASE)) * TCOUNT;
    if (a >= SBASE && a < SBASE + SCOUNT && (a - SBASE) % TCOUNT == 0 && b > TBASE && b < TBASE + TCOUNT)
        return a + (b - TBASE);
    uint32_t lo = 0, hi = aero_tok_comp_n;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        const aero_tok_comp *c = &aero_tok_comp_table[mid];
        if (a < c->a || (a == c->a && b < c->b)) hi = mid;
        else if (a > c->a || b > c->b) lo = mid + 1;
        else return c->cp;
    }
    return 0;
}

// Canonical composition (UAX #15): a mark composes with the last starter unless blocked.
static void compose(cpvec *v) {
    if (v->len == 0) return;
    size_t out = 0;
    long starter = -1;
    for (size_t i = 0; i < v->len; i++) {
        uint32_t c = v->p[i];
        int cc = ccc_of(c);
        if (starter >= 0 && c < RAW_BYTE_BASE) {
            bool adjacent = (size_t)starter == out - 1;
            int prev_cc = adjacent ? 0 : ccc_of(v->p[out - 1]);
            if (adjacent || (prev_cc != 0 && prev_cc < cc)) {
                uint32_t comp = compose_pair(v->p[starter], c);
                if (comp) {
                    v->p[starter] = comp;
                    continue;
                }
            }
        }
        if (cc == 0) starter = c < RAW_BYTE_BASE ? (long)out : -1;
        v->p[out++] = c;
    }
    v->len = out;
}

// NFD (decompose + reorder) and, for NFC, recompose; ASCII-only text is copied as is.
static bool normalize(const char *s, size_t n, aero_tok_buf *out, bool nfc) {
    const unsigned char *u = (const unsigned char *)s;
    // No byte >= 0xCC means every code point is below U+0300: nothing decomposes differently, nothing
    // combines, so the text is already in NFC and NFD... except Latin-1 letters with accents under NFD.
    bool simple = true;
    for (size_t i = 0; i < n; i++) {
        if (u[i] >= (nfc ? 0xCC : 0xC3)) {
            simple = false;
            break;
        }
    }
    if (simple) return aero_buf_append(out, s, n);
    cpvec v = {0};
    bool ok = true;
    for (size_t i = 0; i < n && ok;) {
        uint32_t cp;
        int l = aero_utf8_decode(u + i, n - i, &cp);
        if (cp == AERO_UTF8_INVALID) cp = RAW_BYTE_BASE + u[i];
        ok = decompose_push(&v, cp, 0);
        i += (size_t)l;
    }
    if (ok) {
        reorder(&v);
        if (nfc) compose(&v);
        ok = aero_buf_reserve(out, v.len * 4);
        for (size_t i = 0; ok && i < v.len; i++) {
            uint32_t cp = v.p[i];
            if (cp >= RAW_BYTE_BASE) out->p[out->len++] = (char)(cp - RAW_BYTE_BASE);
            else out->len += (size_t)aero_utf8_encode(cp, out->p + out->len);
        }
    }
    free(v.p);
    return ok;
}

// NFC, as the Qwen 2/3 tokenizers normalize input before pre-tokenization.
bool aero_unicode_nfc(const char *s, size_t n, aero_tok_buf *out) { return normalize(s, n, out, true); }
// NFD, as BERT strips accents (decompose, then drop the marks).
bool aero_unicode_nfd(const char *s, size_t n, aero_tok_buf *out) { return normalize(s, n, out, false); }
