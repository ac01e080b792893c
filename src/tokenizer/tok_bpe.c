// BPE encoders: merge-rank BPE (GPT-2 byte-level and SentencePiece-style tokenizer.json models) and
// score-ordered SentencePiece BPE (llama GGUF). Both keep a heap of candidate pairs so that a word of n
// symbols costs O(n log n), whatever its length.
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

typedef struct {
    int32_t id; // current token of this symbol (-1 while it has none)
    int32_t prev, next;
    uint32_t start, len; // bytes in the word
    uint64_t pkey;       // heap key of the pair (this, next), NO_PAIR when they cannot merge
    int32_t presult;     // the token that pair merges into
    bool alive, mergeable;
} sym;

// Heap entries are 64-bit keys: priority in the high half (BPE: rank; SPM: inverted score, so that the
// smallest key is the best pair), left symbol index in the low half (ties go to the leftmost pair). An entry
// is current when it equals its left symbol's pkey; stale ones are skipped when popped.
#define NO_PAIR UINT64_MAX

// Word cache: natural text repeats its words, so one encode call remembers the ids of short pre-tokens.
#define CACHE_MIN_SLOTS 1024u  // powers of two; the table doubles when half full, up to the max,
#define CACHE_MAX_SLOTS 65536u // where it starts over
#define CACHE_MAX_WORD 48u

typedef struct {
    uint64_t h;          // 0 = empty
    uint32_t woff, wlen; // bytes in cwords
    uint32_t ioff, nid;  // ids in cids
} cache_ent;

struct aero_tok_scratch {
    sym *syms;
    size_t nsym, capsym;
    uint64_t *heap;
    size_t nheap, capheap;
    aero_tok_buf word;
    cache_ent *cache;
    uint32_t cache_used, cache_slots;
    aero_tok_buf cwords;
    aero_tok_ids cids;
};

aero_tok_scratch *aero_tok_scratch_new(void) { return calloc(1, sizeof(aero_tok_scratch)); }

// Releases the per-call buffers.
void aero_tok_scratch_free(aero_tok_scratch *s) {
    if (!s) return;
    free(s->syms);
    free(s->heap);
    free(s->word.p);
    free(s->cache);
    free(s->cwords.p);
    free(s->cids.v);
    free(s);
}

// Appends the cached ids of word w to out; false when absent.
static bool cache_get(aero_tok_scratch *s, uint64_t h, const char *w, size_t n, aero_tok_ids *out, bool *nomem) {
    if (!s->cache) return false;
    uint32_t mask = s->cache_slots - 1;
    for (uint32_t i = (uint32_t)h & mask;; i = (i + 1) & mask) {
        const cache_ent *e = &s->cache[i];
        if (!e->h) return false;
        if (e->h == h && e->wlen == n && memcmp(s->cwords.p + e->woff, w, n) == 0) {
            for (uint32_t k = 0; k < e->nid; k++)
                if (!aero_tok_ids_push(out, s->cids.v[e->ioff + k])) {
                    *nomem = true;
                    return false;
                }
            return true;
        }
    }
}

// Remembers that word w encodes to ids[0..nid); a full cache starts over (best effort: no error).
static void cache_put(aero_tok_scratch *s, uint64_t h, const char *w, size_t n, const int32_t *ids, size_t nid) {
    if (!s->cache || s->cache_used >= s->cache_slots / 2) {
        if (s->cache && s->cache_slots >= CACHE_MAX_SLOTS) { // full at the largest size: start over
            memset(s->cache, 0, s->cache_slots * sizeof *s->cache);
            s->cache_used = 0;
            s->cwords.len = 0;
            s->cids.n = 0;
        } else { // grow and rehash
            uint32_t slots = s->cache ? s->cache_slots * 2 : CACHE_MIN_SLOTS;
            cache_ent *c = calloc(slots, sizeof *c);
            if (!c) return;
            for (uint32_t k = 0; s->cache && k < s->cache_slots; k++) {
                if (!s->cache[k].h) continue;
                uint32_t i = (uint32_t)s->cache[k].h & (slots - 1);
                while (c[i].h) i = (i + 1) & (slots - 1);
                c[i] = s->cache[k];
            }
            free(s->cache);
            s->cache = c;
            s->cache_slots = slots;
        }
    }
    uint32_t woff = (uint32_t)s->cwords.len, ioff = (uint32_t)s->cids.n;
    if (!aero_buf_append(&s->cwords, w, n)) return;
    for (size_t k = 0; k < nid; k++)
        if (!aero_tok_ids_push(&s->cids, ids[k])) return;
    uint32_t mask = s->cache_slots - 1;
    uint32_t i = (uint32_t)h & mask;
    while (s->cache[i].h) i = (i + 1) & mask;
    s->cache[i] = (cache_ent){h, woff, (uint32_t)n, ioff, (uint32_t)nid};
    s->cache_used++;
}

// Appends a symbol, growing the array geometrically.
static bool sym_push(aero_tok_scratch *s, sym v) {
    if (s->nsym == s->capsym) {
        size_t cap = s->capsym ? s->capsym * 2 : 256;
        sym *p = realloc(s->syms, cap * sizeof *p);
        if (!p) return false;
        s->syms = p;
        s->capsym = cap;
    }
    s->syms[s->nsym++] = v;
    return true;
}

// Makes room for n keys so that the initial pairs can be written without checks.
static bool heap_reserve(aero_tok_scratch *s, size_t n) {
    if (n <= s->capheap) return true;
    size_t cap = s->capheap ? s->capheap : 256;
    while (cap < n) cap *= 2;
    uint64_t *h = realloc(s->heap, cap * sizeof *h);
    if (!h) return false;
    s->heap = h;
    s->capheap = cap;
    return true;
}

// Restores the min-heap property below i (pop and heapify share it).
static void sift_down(uint64_t *h, size_t n, size_t i) {
    uint64_t x = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && h[c + 1] < h[c]) c++;
        if (h[c] >= x) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

// Adds a pair created by a merge.
static bool heap_push(aero_tok_scratch *s, uint64_t key) {
    if (!heap_reserve(s, s->nheap + 1)) return false;
    size_t i = s->nheap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (s->heap[parent] <= key) break;
        s->heap[i] = s->heap[parent];
        i = parent;
    }
    s->heap[i] = key;
    return true;
}

// Removes the best pair: lowest rank (or highest score), leftmost on ties.
static uint64_t heap_pop(aero_tok_scratch *s) {
    uint64_t top = s->heap[0];
    s->heap[0] = s->heap[--s->nheap];
    if (s->nheap) sift_down(s->heap, s->nheap, 0);
    return top;
}

// Floyd's heap construction over the keys already in s->heap: O(n) for the initial pairs of a long word.
static void heapify(aero_tok_scratch *s) {
    for (size_t i = s->nheap / 2; i-- > 0;) sift_down(s->heap, s->nheap, i);
}

// Records the pair (l, r) in l's pkey and, when push, in the heap (else the caller heapifies later).
static bool bpe_try_pair(const aero_tokenizer *t, aero_tok_scratch *s, int32_t l, int32_t r, bool push) {
    if (l < 0) return true;
    sym *a = &s->syms[l];
    a->pkey = NO_PAIR;
    if (r < 0) return true;
    const sym *b = &s->syms[r];
    if (!a->mergeable || !b->mergeable || a->id < 0 || b->id < 0) return true;
    uint32_t rank;
    int32_t res;
    if (!aero_tok_merge_find(t, a->id, b->id, &rank, &res)) return true;
    a->pkey = ((uint64_t)rank << 32) | (uint32_t)l;
    a->presult = res;
    if (!push) {
        s->heap[s->nheap++] = a->pkey;
        return true;
    }
    return heap_push(s, a->pkey);
}

// Runs the merges over the symbols in s (one word or one piece of it) and appends the resulting ids.
static bool bpe_merge(const aero_tokenizer *t, aero_tok_scratch *s, aero_tok_ids *out) {
    size_t ns = s->nsym;
    s->nheap = 0;
    if (!heap_reserve(s, ns)) return false;
    for (size_t i = 0; i < ns; i++) {
        s->syms[i].prev = (int32_t)i - 1;
        s->syms[i].next = i + 1 < ns ? (int32_t)i + 1 : -1;
        s->syms[i].alive = true;
    }
    for (size_t i = 0; i < ns; i++) bpe_try_pair(t, s, (int32_t)i, s->syms[i].next, false);
    heapify(s);
    while (s->nheap) {
        uint64_t key = heap_pop(s);
        int32_t l = (int32_t)(uint32_t)key;
        sym *a = &s->syms[l];
        if (!a->alive || a->pkey != key) continue;
        sym *b = &s->syms[a->next];
        a->id = a->presult;
        a->len += b->len;
        b->alive = false;
        a->next = b->next;
        if (b->next >= 0) s->syms[b->next].prev = l;
        if (!bpe_try_pair(t, s, a->prev, l, true) || !bpe_try_pair(t, s, l, a->next, true)) return false;
    }
    for (int32_t i = ns ? 0 : -1; i >= 0; i = s->syms[i].next)
        if (!aero_tok_ids_push(out, s->syms[i].id)) return false;
    return true;
}

// Symbols of a character-level piece: a token per character, else <0xNN> bytes (byte_fallback), else <unk>.
static bool bpe_chars(const aero_tokenizer *t, aero_tok_scratch *s, const char *w, size_t n, bool *last_unk,
                      aero_tok_ids *out) {
    const unsigned char *u = (const unsigned char *)w;
    s->nsym = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = (size_t)aero_utf8_decode(u + i, n - i, &cp);
        int32_t id = cp == AERO_UTF8_INVALID ? -1 : aero_tok_lookup(t, w + i, l);
        if (id >= 0) {
            *last_unk = false;
            if (!sym_push(s, (sym){.id = id, .start = (uint32_t)i, .len = (uint32_t)l, .mergeable = true}))
                return false;
        } else {
            bool bytes_ok = t->byte_fallback;
            for (size_t k = 0; bytes_ok && k < l; k++) bytes_ok = t->byte_tok[u[i + k]] >= 0;
            if (bytes_ok) {
                *last_unk = false;
                for (size_t k = 0; k < l; k++)
                    if (!sym_push(s, (sym){.id = t->byte_tok[u[i + k]],
                                           .start = (uint32_t)(i + k),
                                           .len = 1,
                                           .mergeable = false}))
                        return false;
            } else if (t->unk >= 0 && !(t->fuse_unk && *last_unk)) {
                *last_unk = true;
                if (!sym_push(s, (sym){.id = t->unk, .start = (uint32_t)i, .len = (uint32_t)l, .mergeable = false}))
                    return false;
            }
        }
        i += l;
    }
    return bpe_merge(t, s, out);
}

static aero_status bpe_word_uncached(const aero_tokenizer *t, aero_tok_scratch *s, const char *w, size_t n,
                                     aero_tok_ids *out, aero_error *err);

// Encodes one pre-token, through the word cache when it is short.
aero_status aero_tok_bpe_word(const aero_tokenizer *t, aero_tok_scratch *s, const char *w, size_t n, aero_tok_ids *out,
                              aero_error *err) {
    if (n == 0) return AERO_OK;
    if (n > CACHE_MAX_WORD) return bpe_word_uncached(t, s, w, n, out, err);
    uint64_t h = aero_tok_hash(w, n) | 1;
    bool nomem = false;
    if (cache_get(s, h, w, n, out, &nomem)) return AERO_OK;
    if (nomem) return aero_fail(err, AERO_ERR_NOMEM, "tokenizer: out of memory");
    size_t start = out->n;
    aero_status st = bpe_word_uncached(t, s, w, n, out, err);
    if (st == AERO_OK) cache_put(s, h, w, n, out->v + start, out->n - start);
    return st;
}

// Encodes one pre-token by merge rank, without the cache.
static aero_status bpe_word_uncached(const aero_tokenizer *t, aero_tok_scratch *s, const char *w, size_t n,
                                     aero_tok_ids *out, aero_error *err) {
    if (n > UINT32_MAX) return aero_fail(err, AERO_ERR_RANGE, "tokenizer: word of %zu bytes is too long", n);
    const unsigned char *u = (const unsigned char *)w;
    if (t->ignore_merges) {
        int32_t id;
        if (t->byte_level) {
            s->word.len = 0;
            if (!aero_buf_reserve(&s->word, n * 2)) goto nomem;
            for (size_t i = 0; i < n; i++) {
                memcpy(s->word.p + s->word.len, t->byte_utf8[u[i]], 2);
                s->word.len += t->byte_utf8_len[u[i]];
            }
            id = aero_tok_lookup(t, s->word.p, s->word.len);
        } else {
            id = aero_tok_lookup(t, w, n);
        }
        if (id >= 0)
            return aero_tok_ids_push(out, id) ? AERO_OK : aero_fail(err, AERO_ERR_NOMEM, "tokenizer: out of memory");
    }
    if (t->byte_level) {
        s->nsym = 0;
        bool last_unk = false;
        for (size_t i = 0; i < n; i++) {
            int32_t id = t->byte_tok[u[i]];
            if (id < 0) { // vocabulary lacks this byte: unknown (once per run when fuse_unk), else dropped
                if (t->unk < 0 || (t->fuse_unk && last_unk)) continue;
                last_unk = true;
                if (!sym_push(s, (sym){.id = t->unk, .start = (uint32_t)i, .len = 1, .mergeable = false})) goto nomem;
                continue;
            }
            last_unk = false;
            if (!sym_push(s, (sym){.id = id, .start = (uint32_t)i, .len = 1, .mergeable = true})) goto nomem;
        }
        return bpe_merge(t, s, out) ? AERO_OK : aero_fail(err, AERO_ERR_NOMEM, "tokenizer: out of memory in BPE");
    }
    // character-level BPE: cut where no token can span (see bigrams), merge each piece on its own
    bool last_unk = false;
    size_t start = 0;
    uint32_t prev = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = (size_t)aero_utf8_decode(u + i, n - i, &cp);
        uint32_t key = cp == AERO_UTF8_INVALID ? 0x110000u + u[i] : cp;
        if (i > start && !aero_tok_bigram_possible(t, prev, key)) {
            if (!bpe_chars(t, s, w + start, i - start, &last_unk, out)) goto nomem;
            start = i;
        }
        prev = key;
        i += l;
    }
    if (!bpe_chars(t, s, w + start, n - start, &last_unk, out)) goto nomem;
    return AERO_OK;
nomem:
    return aero_fail(err, AERO_ERR_NOMEM, "tokenizer: out of memory in BPE (word of %zu bytes)", n);
}

// ---- SentencePiece BPE (llama GGUF) ----

// Order-preserving map of a float score to an integer, inverted so that the best (highest) is smallest.
static uint32_t score_key(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ~u;
}

// Records the pair (l, r) when its concatenation is a mergeable token, keyed by that token's score.
static bool spm_try_pair(const aero_tokenizer *t, aero_tok_scratch *s, const char *text, int32_t l, int32_t r,
                         bool push) {
    if (l < 0) return true;
    sym *a = &s->syms[l];
    a->pkey = NO_PAIR;
    if (r < 0) return true;
    const sym *b = &s->syms[r];
    uint32_t size = a->len + b->len;
    if (size > t->max_token_len) return true;
    int32_t id = aero_tok_lookup(t, text + a->start, size);
    if (id < 0 || (t->attr[id] & (AERO_TA_CONTROL | AERO_TA_UNKNOWN))) return true;
    a->pkey = ((uint64_t)score_key(t->score[id]) << 32) | (uint32_t)l;
    a->presult = id;
    if (!push) {
        s->heap[s->nheap++] = a->pkey;
        return true;
    }
    return heap_push(s, a->pkey);
}

// SentencePiece BPE over text[a, b) (a piece no token can extend beyond); appends its ids.
static bool spm_piece(const aero_tokenizer *t, aero_tok_scratch *s, const char *text, size_t a, size_t b,
                      aero_tok_ids *out) {
    const unsigned char *u = (const unsigned char *)text;
    s->nsym = 0;
    s->nheap = 0;
    for (size_t i = a; i < b;) {
        uint32_t cp;
        size_t l = (size_t)aero_utf8_decode(u + i, b - i, &cp);
        if (!sym_push(s, (sym){.id = -1, .start = (uint32_t)i, .len = (uint32_t)l, .alive = true})) return false;
        i += l;
    }
    size_t ns = s->nsym;
    if (!heap_reserve(s, ns)) return false;
    for (size_t i = 0; i < ns; i++) {
        s->syms[i].prev = (int32_t)i - 1;
        s->syms[i].next = i + 1 < ns ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i < ns; i++) spm_try_pair(t, s, text, (int32_t)i, s->syms[i].next, false);
    heapify(s);
    while (s->nheap) {
        uint64_t key = heap_pop(s);
        int32_t l = (int32_t)(uint32_t)key;
        sym *x = &s->syms[l];
        if (!x->alive || x->pkey != key) continue;
        sym *y = &s->syms[x->next];
        x->len += y->len;
        x->id = x->presult;
        y->alive = false;
        x->next = y->next;
        if (y->next >= 0) s->syms[y->next].prev = l;
        if (!spm_try_pair(t, s, text, x->prev, l, true) || !spm_try_pair(t, s, text, l, x->next, true)) return false;
    }
    for (int32_t i = ns ? 0 : -1; i >= 0; i = s->syms[i].next) {
        sym *x = &s->syms[i];
        int32_t id = x->id >= 0 ? x->id : aero_tok_lookup(t, text + x->start, x->len);
        if (id >= 0 && !(t->attr[id] & (AERO_TA_CONTROL | AERO_TA_UNKNOWN))) {
            if (!aero_tok_ids_push(out, id)) return false;
            continue;
        }
        bool bytes_ok = true;
        for (uint32_t k = 0; bytes_ok && k < x->len; k++) bytes_ok = t->byte_tok[u[x->start + k]] >= 0;
        if (bytes_ok) {
            for (uint32_t k = 0; k < x->len; k++)
                if (!aero_tok_ids_push(out, t->byte_tok[u[x->start + k]])) return false;
        } else if (t->unk >= 0) {
            if (!aero_tok_ids_push(out, t->unk)) return false;
        }
    }
    return true;
}

// spm_piece through the word cache (pieces are mostly words: text is cut before each U+2581).
static bool spm_piece_cached(const aero_tokenizer *t, aero_tok_scratch *s, const char *text, size_t a, size_t b,
                             aero_tok_ids *out) {
    size_t n = b - a;
    if (n > CACHE_MAX_WORD) return spm_piece(t, s, text, a, b, out);
    uint64_t h = aero_tok_hash(text + a, n) | 1;
    bool nomem = false;
    if (cache_get(s, h, text + a, n, out, &nomem)) return true;
    if (nomem) return false;
    size_t start = out->n;
    if (!spm_piece(t, s, text, a, b, out)) return false;
    cache_put(s, h, text + a, n, out->v + start, out->n - start);
    return true;
}

// Encodes escaped text (spaces already U+2581) as SentencePiece BPE does: repeatedly merge the adjacent pair
// whose concatenation is the highest-scoring token; leftovers become <0xNN> byte tokens or <unk>.
aero_status aero_tok_spm_encode(const aero_tokenizer *t, aero_tok_scratch *s, const char *text, size_t n,
                                aero_tok_ids *out, aero_error *err) {
    if (n == 0) return AERO_OK;
    if (n > UINT32_MAX) return aero_fail(err, AERO_ERR_RANGE, "tokenizer: text of %zu bytes is too long", n);
    const unsigned char *u = (const unsigned char *)text;
    size_t start = 0;
    uint32_t prev = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = (size_t)aero_utf8_decode(u + i, n - i, &cp);
        uint32_t key = cp == AERO_UTF8_INVALID ? 0x110000u + u[i] : cp;
        if (i > start && !aero_tok_bigram_possible(t, prev, key)) {
            if (!spm_piece_cached(t, s, text, start, i, out)) goto nomem;
            start = i;
        }
        prev = key;
        i += l;
    }
    if (!spm_piece_cached(t, s, text, start, n, out)) goto nomem;
    return AERO_OK;
nomem:
    return aero_fail(err, AERO_ERR_NOMEM, "tokenizer: out of memory in SentencePiece BPE (%zu bytes)", n);
}
