// Decoding: token -> bytes, whole sequences, and the streaming decoder that holds back an incomplete UTF-8
// sequence until the token that completes it arrives (byte-level tokens often split a character).
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

// The bytes of token id as they appear in output, or NULL/0 when it prints nothing.
static const char *piece_of(const aero_tokenizer *t, int32_t id, bool render_special, size_t *len) {
    *len = 0;
    if (!t || id < 0 || id >= t->n_vocab) return NULL;
    if (!render_special && (t->attr[id] & (AERO_TA_CONTROL | AERO_TA_UNKNOWN))) return NULL;
    *len = t->piece_len[id];
    return t->piece_pool + t->piece_off[id];
}

// One token's output bytes, for callers that print token by token.
size_t aero_token_to_bytes(const aero_tokenizer *t, int32_t id, bool render_special, char *buf, size_t cap) {
    size_t n;
    const char *p = piece_of(t, id, render_special, &n);
    if (p && buf && cap) memcpy(buf, p, n < cap ? n : cap);
    return n;
}

// Whole-sequence decode: concatenated pieces, minus the SPM leading space of the first one.
aero_status aero_detokenize(const aero_tokenizer *t, const int32_t *ids, size_t n, bool render_special, char **text,
                            size_t *len, aero_error *err) {
    if (!t || !text || (!ids && n)) return aero_fail(err, AERO_ERR_INVALID, "aero_detokenize: NULL argument");
    aero_tok_buf b = {0};
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab) {
            free(b.p);
            return aero_fail(err, AERO_ERR_RANGE,
                             "detokenize: token id %d at position %zu is outside the vocabulary (%d tokens)",
                             (int)ids[i], i, (int)t->n_vocab);
        }
        size_t pn;
        const char *p = piece_of(t, ids[i], render_special, &pn);
        if (!pn) continue;
        if (first && t->strip_first_space && p[0] == ' ') {
            p++;
            pn--;
        }
        first = false;
        if (!aero_buf_append(&b, p, pn)) goto nomem;
    }
    if (!aero_buf_reserve(&b, 1)) goto nomem;
    b.p[b.len] = 0;
    *text = b.p;
    if (len) *len = b.len;
    return AERO_OK;
nomem:
    free(b.p);
    return aero_fail(err, AERO_ERR_NOMEM, "detokenize: out of memory");
}

// Starts a stream: nothing pending, next token is the first of the output.
void aero_detok_init(aero_detok *d, const aero_tokenizer *t, bool render_special) {
    memset(d, 0, sizeof *d);
    d->tok = t;
    d->first = true;
    d->render_special = render_special;
}

// Length a lead byte announces (0: not a lead byte).
static int utf8_need(unsigned char c) {
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 0;
}

// Whether byte k (1-based) after lead c may continue a valid sequence (excludes overlongs and surrogates).
static bool utf8_cont_ok(unsigned char lead, int k, unsigned char b) {
    if ((b & 0xC0) != 0x80) return false;
    if (k != 1) return true;
    if (lead == 0xE0) return b >= 0xA0;
    if (lead == 0xED) return b <= 0x9F;
    if (lead == 0xF0) return b >= 0x90;
    if (lead == 0xF4) return b <= 0x8F;
    return true;
}

typedef struct {
    char *out;
    size_t cap, n;
} sink;

// Appends to the caller's buffer if it fits (sized by aero_tokenizer_max_piece, it always does).
static void put(sink *s, const void *p, size_t n) {
    if (s->n + n > s->cap) return; // cannot fit: the caller sized the buffer below aero_tokenizer_max_piece
    memcpy(s->out + s->n, p, n);
    s->n += n;
}

// Emits the complete characters of data; an incomplete tail goes back to pending.
static void feed(aero_detok *d, const unsigned char *data, size_t n, sink *s) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = data[i];
        if (c < 0x80) {
            size_t j = i;
            while (j < n && data[j] < 0x80) j++;
            put(s, data + i, j - i);
            i = j;
            continue;
        }
        int need = utf8_need(c);
        if (!need) {
            put(s, "\xEF\xBF\xBD", 3);
            i++;
            continue;
        }
        int k = 1;
        while (k < need && i + (size_t)k < n && utf8_cont_ok(c, k, data[i + k])) k++;
        if (k == need) {
            put(s, data + i, (size_t)need);
            i += (size_t)need;
        } else if (i + (size_t)k == n) { // valid so far, but the rest has not arrived yet
            memcpy(d->pending, data + i, (size_t)k);
            d->n_pending = k;
            return;
        } else {
            put(s, "\xEF\xBF\xBD", 3);
            i += (size_t)k;
        }
    }
}

// Emits what token id completes, holding back a trailing incomplete UTF-8 sequence.
size_t aero_detok_push(aero_detok *d, int32_t id, char *out, size_t cap) {
    size_t pn;
    const char *p = piece_of(d->tok, id, d->render_special, &pn);
    if (!pn) return 0;
    if (d->first && d->tok->strip_first_space && p[0] == ' ') {
        p++;
        pn--;
    }
    d->first = false;
    sink s = {out, cap, 0};
    if (d->n_pending) {
        // complete the held-back sequence with at most 3 bytes of the new piece, then continue normally
        unsigned char tmp[8];
        int np = d->n_pending;
        memcpy(tmp, d->pending, (size_t)np);
        size_t take = pn < 3 ? pn : 3;
        memcpy(tmp + np, p, take);
        d->n_pending = 0;
        // find how many of tmp's bytes form the first character (or its invalid lead)
        int need = utf8_need(tmp[0]);
        int k = 1;
        while (k < need && k < np + (int)take && utf8_cont_ok(tmp[0], k, tmp[k])) k++;
        if (k == need) {
            put(&s, tmp, (size_t)need);
            size_t used = (size_t)(need - np);
            feed(d, (const unsigned char *)p + used, pn - used, &s);
        } else if (k == np + (int)take) { // still incomplete (the piece was 1-2 continuation bytes)
            memcpy(d->pending, tmp, (size_t)k);
            d->n_pending = k;
        } else {
            put(&s, "\xEF\xBF\xBD", 3);
            size_t used = k > np ? (size_t)(k - np) : 0;
            feed(d, (const unsigned char *)p + used, pn - used, &s);
        }
        return s.n;
    }
    feed(d, (const unsigned char *)p, pn, &s);
    return s.n;
}

// Ends a stream: a sequence still incomplete becomes U+FFFD.
size_t aero_detok_flush(aero_detok *d, char *out, size_t cap) {
    if (!d->n_pending) return 0;
    d->n_pending = 0;
    if (cap < 3) return 0;
    memcpy(out, "\xEF\xBF\xBD", 3);
    return 3;
}
