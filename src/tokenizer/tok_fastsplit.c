// Hand-written matchers for the three pre-tokenizer regexes that most models use (GPT-2, Llama 3, Qwen 2):
// the same matches as PCRE2 running the pattern (leftmost alternative, greedy with backtracking, invalid
// UTF-8 bytes matching nothing), without a regex call per word. The PCRE2 path stays for every other
// pattern, and the fuzzer checks that both paths split identically.
#include <string.h>

#include "tok_internal.h"

#define FAST_GPT2_RE "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define FAST_LLAMA3_RE \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define FAST_QWEN2_RE \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

// Recognises a pattern that has a hand-written matcher (exact string match only).
int aero_tok_fast_kind(const char *pattern, size_t len) {
    if (len == strlen(FAST_GPT2_RE) && memcmp(pattern, FAST_GPT2_RE, len) == 0) return AERO_FAST_GPT2;
    if (len == strlen(FAST_LLAMA3_RE) && memcmp(pattern, FAST_LLAMA3_RE, len) == 0) return AERO_FAST_LLAMA3;
    if (len == strlen(FAST_QWEN2_RE) && memcmp(pattern, FAST_QWEN2_RE, len) == 0) return AERO_FAST_QWEN2;
    return AERO_FAST_NONE;
}

// Character classes the patterns distinguish.
enum { C_INVALID, C_L, C_N, C_WS, C_OTHER };

static const uint8_t ASCII_CLASS[128] = {
    // 0x00-0x1F: \t \n \v \f \r are White_Space, the rest are controls (other)
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_WS,
    C_WS,
    C_WS,
    C_WS,
    C_WS,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    // ' ' ! " # $ % & ' ( ) * + , - . /
    C_WS,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    // 0-9 : ; < = > ? @
    C_N,
    C_N,
    C_N,
    C_N,
    C_N,
    C_N,
    C_N,
    C_N,
    C_N,
    C_N,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    // A-Z
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    // [ \ ] ^ _ `
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    // a-z
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    C_L,
    // { | } ~ DEL
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
    C_OTHER,
};

// Class and byte length of the character at s[i] (i < n).
static inline int cls(const unsigned char *s, size_t n, size_t i, size_t *len) {
    if (s[i] < 0x80) {
        *len = 1;
        return ASCII_CLASS[s[i]];
    }
    uint32_t cp;
    *len = (size_t)aero_utf8_decode(s + i, n - i, &cp);
    if (cp == AERO_UTF8_INVALID) return C_INVALID;
    if (aero_unicode_is_whitespace(cp)) return C_WS;
    int g = aero_unicode_category(cp);
    if (g >= AERO_GC_Lu && g <= AERO_GC_Lo) return C_L;
    if (g >= AERO_GC_Nd && g <= AERO_GC_No) return C_N;
    return C_OTHER;
}

// Class at i, or -1 past the end (lookahead at the end of text).
static inline int cls_at(const unsigned char *s, size_t n, size_t i) {
    size_t l;
    return i < n ? cls(s, n, i, &l) : -1;
}

// End of the run of class c starting at i (i itself of class c), at most max characters (0: unlimited).
static size_t run_end(const unsigned char *s, size_t n, size_t i, int c, size_t max) {
    size_t k = 0, l;
    while (i < n && (max == 0 || k < max) && cls(s, n, i, &l) == c) {
        i += l;
        k++;
    }
    return i;
}

static inline bool lower_is(unsigned char c, char want) { return (c | 0x20) == want; }

// The contractions: 's 't 're 've 'm 'll 'd (ASCII case-insensitive when ci). Returns the end, or 0.
static size_t contraction(const unsigned char *s, size_t n, size_t i, bool ci) {
    if (s[i] != '\'' || i + 1 >= n) return 0;
    unsigned char a = s[i + 1], b = i + 2 < n ? s[i + 2] : 0;
    if (!ci) {
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
        return 0;
    }
    if (lower_is(a, 's') || lower_is(a, 't')) return i + 2;
    if ((lower_is(a, 'r') && lower_is(b, 'e')) || (lower_is(a, 'v') && lower_is(b, 'e'))) return i + 3;
    if (lower_is(a, 'm')) return i + 2;
    if (lower_is(a, 'l') && lower_is(b, 'l')) return i + 3;
    if (lower_is(a, 'd')) return i + 2;
    return 0;
}

// \s+(?!\S) then \s+ at a whitespace character: the run, minus its last character when a non-space follows.
static size_t ws_tail(const unsigned char *s, size_t n, size_t i, size_t j) {
    int after = cls_at(s, n, j);
    if (after == -1 || after == C_INVALID || after == C_WS) return j; // (?!\S) holds at j
    // back off one character (the whole run is whitespace, so the lookahead holds there)
    size_t k = i, last = i, l;
    while (k < j) {
        last = k;
        cls(s, n, k, &l);
        k += l;
    }
    return last > i ? last : j; // a single space before a word: \s+ alone
}

// End of the match starting at i (> i), or 0 when no alternative matches there (an invalid byte).
size_t aero_tok_fast_match(int kind, const unsigned char *s, size_t n, size_t i) {
    size_t l;
    int c = cls(s, n, i, &l);
    if (c == C_INVALID) return 0;
    if (kind == AERO_FAST_GPT2) {
        size_t e = contraction(s, n, i, false);
        if (e) return e;
        size_t start = i;
        if (s[i] == ' ' && i + 1 < n) {
            size_t l2;
            int c2 = cls(s, n, i + 1, &l2);
            if (c2 == C_L || c2 == C_N || c2 == C_OTHER) return run_end(s, n, i + 1, c2, 0);
        }
        if (c == C_L || c == C_N || c == C_OTHER) return run_end(s, n, start, c, 0);
        size_t j = run_end(s, n, i, C_WS, 0); // c == C_WS
        return ws_tail(s, n, i, j);
    }
    // Llama 3 / Qwen 2
    size_t e = contraction(s, n, i, true);
    if (e) return e;
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (c == C_L) return run_end(s, n, i, C_L, 0);
    if (c != C_N && s[i] != '\r' && s[i] != '\n' && cls_at(s, n, i + l) == C_L) return run_end(s, n, i + l, C_L, 0);
    // \p{N}{1,3} or \p{N}
    if (c == C_N) return run_end(s, n, i, C_N, kind == AERO_FAST_LLAMA3 ? 3 : 1);
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    size_t p = i;
    if (s[i] == ' ' && cls_at(s, n, i + 1) == C_OTHER) p = i + 1;
    if (p != i || c == C_OTHER) {
        size_t j = run_end(s, n, p, C_OTHER, 0);
        while (j < n && (s[j] == '\r' || s[j] == '\n')) j++;
        return j;
    }
    // c is whitespace: \s*[\r\n]+ ends after the last \r or \n of the run
    size_t j = run_end(s, n, i, C_WS, 0);
    for (size_t q = j; q > i; q--)
        if (s[q - 1] == '\r' || s[q - 1] == '\n') return q;
    return ws_tail(s, n, i, j);
}
