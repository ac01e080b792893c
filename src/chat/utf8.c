// UTF-8 and Unicode character classes for the template interpreter: Python counts, slices and strips
// strings by code point with its own whitespace set, so the renderer must do the same to match jinja2.
#include <locale.h>
#include <pthread.h>
#include <wctype.h>

#include "jinja.h"

// Decodes one code point; a malformed sequence yields U+FFFD and consumes one byte, so loops always advance.
uint32_t jutf8_next(const char *str, size_t n, size_t *i) {
    const unsigned char *s = (const unsigned char *)str;
    size_t p = *i;
    unsigned char c = s[p];
    if (c < 0x80) {
        *i = p + 1;
        return c;
    }
    int len = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 0;
    if (len == 0 || p + len > n) {
        *i = p + 1;
        return 0xFFFD;
    }
    uint32_t cp = c & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
    for (int k = 1; k < len; k++) {
        if ((s[p + k] & 0xC0) != 0x80) {
            *i = p + 1;
            return 0xFFFD;
        }
        cp = (cp << 6) | (s[p + k] & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) {
        *i = p + 1;
        return 0xFFFD;
    }
    *i = p + len;
    return cp;
}

// Encodes a code point (callers pass valid scalar values).
size_t jutf8_put(char *d, uint32_t cp) {
    if (cp < 0x80) {
        d[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        d[0] = (char)(0xC0 | (cp >> 6));
        d[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        d[0] = (char)(0xE0 | (cp >> 12));
        d[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        d[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    d[0] = (char)(0xF0 | (cp >> 18));
    d[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    d[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    d[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

// Python's len() of a str: code points, not bytes.
size_t jutf8_len(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) k++;
    return k;
}

// Checks strict UTF-8 (no overlongs, no surrogates); templates must be text, as in Python.
bool jutf8_valid(const char *s, size_t n, size_t *bad_at) {
    size_t i = 0;
    while (i < n) {
        size_t at = i;
        uint32_t cp = jutf8_next(s, n, &i);
        if (cp == 0xFFFD && !(i - at == 3 && (unsigned char)s[at] == 0xEF && (unsigned char)s[at + 1] == 0xBF &&
                              (unsigned char)s[at + 2] == 0xBD)) {
            if (bad_at) *bad_at = at;
            return false;
        }
    }
    return true;
}

// Python's str.isspace(): the set jinja2's `-` control, trim and split() use (differs from JavaScript's trim).
bool jpy_isspace(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

static pthread_once_t loc_once = PTHREAD_ONCE_INIT;
static locale_t loc_utf8 = (locale_t)0;

// A private UTF-8 ctype locale: case mapping and letter classes beyond ASCII without touching the
// process-wide locale (the library must not call setlocale).
static void loc_init(void) {
    loc_utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    if (!loc_utf8) loc_utf8 = newlocale(LC_CTYPE_MASK, "en_US.UTF-8", (locale_t)0);
}

// The shared read-only locale, created once.
static locale_t loc(void) {
    pthread_once(&loc_once, loc_init);
    return loc_utf8;
}

// Unicode upper case (simple mapping: 'ß' stays 'ß' where Python gives "SS").
uint32_t jpy_upper(uint32_t c) {
    if (c < 0x80) return c >= 'a' && c <= 'z' ? c - 32 : c;
    locale_t l = loc();
    return l ? (uint32_t)towupper_l((wint_t)c, l) : c;
}

// Unicode lower case (simple mapping).
uint32_t jpy_lower(uint32_t c) {
    if (c < 0x80) return c >= 'A' && c <= 'Z' ? c + 32 : c;
    locale_t l = loc();
    return l ? (uint32_t)towlower_l((wint_t)c, l) : c;
}

// Letter test for str.isalpha()/title(); ASCII exact, beyond through the UTF-8 locale.
bool jpy_isalpha(uint32_t c) {
    if (c < 0x80) return (c | 32) >= 'a' && (c | 32) <= 'z';
    locale_t l = loc();
    return l ? iswalpha_l((wint_t)c, l) != 0 : false;
}

// Digit test for str.isdigit().
bool jpy_isdigit(uint32_t c) {
    if (c < 0x80) return c >= '0' && c <= '9';
    locale_t l = loc();
    return l ? iswdigit_l((wint_t)c, l) != 0 : false;
}

bool jpy_isalnum(uint32_t c) { return jpy_isalpha(c) || jpy_isdigit(c); }

bool jpy_isupper(uint32_t c) { return jpy_lower(c) != c; }

bool jpy_islower(uint32_t c) { return jpy_upper(c) != c; }
