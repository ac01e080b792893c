// WordPiece (BERT): normalize and split into words the way BertNormalizer + BertPreTokenizer do, then take the
// longest vocabulary match greedily; a word that cannot be covered becomes one unknown token.
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

// CJK ideographs that BERT isolates as single-character words (the ranges of Hugging Face's code).
static bool is_cjk(uint32_t cp) {
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
           (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B920 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

// BERT's punctuation: ASCII symbols and Unicode P* categories.
static bool is_punct(uint32_t cp) {
    if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126))
        return true;
    int c = aero_unicode_category(cp);
    return c >= AERO_GC_Pc && c <= AERO_GC_Po;
}

// Greedy longest-match of one word; appends its ids, or the unknown token when some part has no match.
static bool wpm_word(const aero_tokenizer *t, const char *w, size_t n, size_t nchars, aero_tok_buf *tmp,
                     aero_tok_ids *out) {
    size_t mark = out->n;
    const char *pre = t->wpm_prefix;
    size_t pl = pre ? strlen(pre) : 0;
    bool ok = nchars <= 100; // Hugging Face's max_input_chars_per_word
    for (size_t i = 0; ok && i < n;) {
        size_t best = 0;
        int32_t best_id = -1;
        size_t maxj = n - i;
        if (maxj > t->max_token_len) maxj = t->max_token_len;
        for (size_t l = maxj; l > 0; l--) {
            int32_t id;
            if (pre && i > 0) {
                tmp->len = 0;
                if (!aero_buf_append(tmp, pre, pl) || !aero_buf_append(tmp, w + i, l)) return false;
                id = aero_tok_lookup(t, tmp->p, tmp->len);
            } else {
                id = aero_tok_lookup(t, w + i, l);
            }
            if (id >= 0) {
                best = l;
                best_id = id;
                break;
            }
        }
        if (best_id < 0) {
            ok = false;
            break;
        }
        if (!aero_tok_ids_push(out, best_id)) return false;
        i += best;
    }
    if (!ok) {
        out->n = mark;
        if (t->unk >= 0 && !aero_tok_ids_push(out, t->unk)) return false;
    }
    return true;
}

// Encodes one section of text with WordPiece.
aero_status aero_tok_wpm_encode(const aero_tokenizer *t, const char *text, size_t n, aero_tok_ids *out,
                                aero_error *err) {
    aero_tok_buf nfd = {0}, word = {0}, tmp = {0};
    aero_status st = AERO_OK;
    const char *s = text;
    if (t->wpm_strip_accents) {
        if (!aero_unicode_nfd(text, n, &nfd)) goto nomem;
        s = nfd.p ? nfd.p : "";
        n = nfd.len;
    }
    // GGUF BERT vocabularies mark word starts with U+2581 instead of marking continuations with ##
    const bool phantom = t->wpm_prefix == NULL;
    size_t nchars = 0;
#define FLUSH()                                                                \
    do {                                                                       \
        if (word.len > (phantom ? 3u : 0u)) {                                  \
            if (!wpm_word(t, word.p, word.len, nchars, &tmp, out)) goto nomem; \
        }                                                                      \
        word.len = 0;                                                          \
        nchars = 0;                                                            \
        if (phantom && !aero_buf_append(&word, "\xE2\x96\x81", 3)) goto nomem; \
    } while (0)
    if (phantom && !aero_buf_append(&word, "\xE2\x96\x81", 3)) goto nomem;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = (size_t)aero_utf8_decode((const unsigned char *)s + i, n - i, &cp);
        i += l;
        if (cp == AERO_UTF8_INVALID) continue;
        if (aero_unicode_is_whitespace(cp)) {
            FLUSH();
            continue;
        }
        int cat = aero_unicode_category(cp);
        if (cp == 0 || cp == 0xFFFD || cat == AERO_GC_Cc || cat == AERO_GC_Cf) continue;
        if (t->wpm_strip_accents && cat == AERO_GC_Mn) continue;
        uint32_t c2 = t->wpm_lowercase ? aero_unicode_tolower(cp) : cp;
        char u[4];
        int ul = aero_utf8_encode(c2, u);
        if (is_punct(cp) || is_cjk(cp)) {
            FLUSH();
            if (!aero_buf_append(&word, u, (size_t)ul)) goto nomem;
            nchars = 1;
            FLUSH();
        } else {
            if (!aero_buf_append(&word, u, (size_t)ul)) goto nomem;
            nchars++;
        }
    }
    FLUSH();
#undef FLUSH
    goto done;
nomem:
    st = aero_fail(err, AERO_ERR_NOMEM, "tokenizer: out of memory in WordPiece");
done:
    free(nfd.p);
    free(word.p);
    free(tmp.p);
    return st;
}
