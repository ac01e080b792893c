// Tokenizer core: vocabulary storage and lookup tables, the special-token splitter and the encode driver
// that routes each piece of text to the SPM, BPE or WordPiece encoder.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/util.h"
#include "tok_internal.h"

// ---- hashing ----

// A fast byte-string hash for the vocabulary map and the word cache (strings are short).
uint64_t aero_tok_hash(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t k;
        memcpy(&k, s, 8);
        h = (h ^ k) * 0xc4ceb9fe1a85ec53ull;
        h ^= h >> 31;
        s += 8;
        n -= 8;
    }
    uint64_t k = 0;
    memcpy(&k, s, n);
    h = (h ^ k) * 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 29;
    return h;
}

// Power-of-two table size keeping open addressing at most half full.
static uint32_t table_size_for(uint64_t n) {
    uint64_t cap = 16;
    while (cap < n * 2 + 1) cap <<= 1;
    return (uint32_t)cap;
}

// Id of an exact token string, or -1. The map's probe sequence is linear over id+1 slots.
int32_t aero_tok_lookup(const aero_tokenizer *t, const char *s, size_t n) {
    if (!t->vocab.slots) return -1;
    uint64_t h = aero_tok_hash(s, n);
    uint32_t i = (uint32_t)h & t->vocab.mask;
    uint64_t fp = h >> 32;
    for (;;) {
        uint64_t v = t->vocab.slots[i];
        if (!v) return -1;
        if ((v >> 32) == fp) {
            int32_t id = (int32_t)(uint32_t)v - 1;
            if (t->str_len[id] == n && memcmp(t->str_pool + t->str_off[id], s, n) == 0) return id;
        }
        i = (i + 1) & t->vocab.mask;
    }
}

// Rank and result of merging token a with token b (byte-level and SPM-style BPE by rank).
bool aero_tok_merge_find(const aero_tokenizer *t, int32_t a, int32_t b, uint32_t *rank, int32_t *result) {
    if (!t->merges.slots) return false;
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    uint32_t i = (uint32_t)aero_hash_u64(key) & t->merges.mask;
    for (;;) {
        const aero_tok_merge *m = &t->merges.slots[i];
        if (m->key == key) {
            *rank = m->rank;
            *result = m->result;
            return true;
        }
        if (!m->key) return false;
        i = (i + 1) & t->merges.mask;
    }
}

static uint64_t bigram_key(uint32_t a, uint32_t b) { return ((uint64_t)a << 24 | b) + 1; }

// Set membership for the bigram table (true when the table was not built).
bool aero_tok_bigram_possible(const aero_tokenizer *t, uint32_t a, uint32_t b) {
    if (!t->bigrams) return true;
    uint64_t key = bigram_key(a, b);
    uint32_t i = (uint32_t)aero_hash_u64(key) & t->bigram_mask;
    for (;;) {
        uint64_t k = t->bigrams[i];
        if (k == key) return true;
        if (!k) return false;
        i = (i + 1) & t->bigram_mask;
    }
}

// Collects the adjacent character pairs of every token that merging can produce.
static bool build_bigrams(aero_tokenizer *t) {
    uint64_t total = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) total += t->str_len[id];
    uint32_t cap = table_size_for(total);
    t->bigrams = calloc(cap, sizeof *t->bigrams);
    if (!t->bigrams) return false;
    t->bigram_mask = cap - 1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (t->attr[id] & (AERO_TA_CONTROL | AERO_TA_UNKNOWN)) continue;
        const unsigned char *s = (const unsigned char *)t->str_pool + t->str_off[id];
        uint32_t n = t->str_len[id], prev = 0;
        bool have_prev = false;
        for (uint32_t i = 0; i < n;) {
            uint32_t cp;
            int l = aero_utf8_decode(s + i, n - i, &cp);
            if (cp == AERO_UTF8_INVALID) cp = 0x110000u + s[i];
            if (have_prev) {
                uint64_t key = bigram_key(prev, cp);
                uint32_t h = (uint32_t)aero_hash_u64(key) & t->bigram_mask;
                while (t->bigrams[h] && t->bigrams[h] != key) h = (h + 1) & t->bigram_mask;
                t->bigrams[h] = key;
            }
            prev = cp;
            have_prev = true;
            i += (uint32_t)l;
        }
    }
    return true;
}

// An empty tokenizer with every special id unset, for the loaders to fill.
aero_tokenizer *aero_tok_alloc(void) {
    aero_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->bos = t->eos = t->eot = t->eom = t->unk = t->sep = t->pad = -1;
    for (int i = 0; i < 256; i++) t->byte_tok[i] = -1;
    return t;
}

// Copies the token strings into one pool and indexes them. Empty strings are kept (they never match text);
// a duplicate string keeps its first id in the map, as Hugging Face's vocabulary does.
aero_status aero_tok_set_vocab(aero_tokenizer *t, int32_t n, const char *const *strs, const uint32_t *lens,
                               aero_error *err) {
    if (n <= 0) return aero_fail(err, AERO_ERR_FORMAT, "tokenizer: the vocabulary is empty");
    uint64_t total = 0;
    for (int32_t i = 0; i < n; i++) total += (uint64_t)lens[i] + 1;
    t->n_vocab = n;
    t->str_pool = malloc(total ? total : 1);
    t->str_off = malloc((size_t)n * sizeof *t->str_off);
    t->str_len = malloc((size_t)n * sizeof *t->str_len);
    t->score = calloc((size_t)n, sizeof *t->score);
    t->attr = malloc((size_t)n * sizeof *t->attr);
    uint32_t cap = table_size_for((uint64_t)n);
    t->vocab.slots = calloc(cap, sizeof *t->vocab.slots);
    t->vocab.mask = cap - 1;
    if (!t->str_pool || !t->str_off || !t->str_len || !t->score || !t->attr || !t->vocab.slots)
        return aero_fail(err, AERO_ERR_NOMEM, "tokenizer: out of memory for %d tokens", (int)n);
    uint64_t off = 0;
    for (int32_t i = 0; i < n; i++) {
        t->str_off[i] = off;
        t->str_len[i] = lens[i];
        if (lens[i]) memcpy(t->str_pool + off, strs[i], lens[i]);
        t->str_pool[off + lens[i]] = 0;
        off += (uint64_t)lens[i] + 1;
        t->attr[i] = AERO_TA_NORMAL;
        if (lens[i] > t->max_token_len) t->max_token_len = lens[i];
        if (lens[i] == 0) continue;
        uint64_t hv = aero_tok_hash(strs[i], lens[i]);
        uint32_t h = (uint32_t)hv & t->vocab.mask;
        bool dup = false;
        while (t->vocab.slots[h]) {
            int32_t o = (int32_t)(uint32_t)t->vocab.slots[h] - 1;
            if (t->str_len[o] == lens[i] && memcmp(t->str_pool + t->str_off[o], strs[i], lens[i]) == 0) {
                dup = true;
                break;
            }
            h = (h + 1) & t->vocab.mask;
        }
        if (!dup) t->vocab.slots[h] = (hv >> 32) << 32 | ((uint64_t)i + 1);
    }
    return AERO_OK;
}

// Sizes the merge table once so that adding merges never rehashes.
aero_status aero_tok_merges_reserve(aero_tokenizer *t, uint32_t n, aero_error *err) {
    uint32_t cap = table_size_for(n);
    t->merges.slots = calloc(cap, sizeof *t->merges.slots);
    t->merges.mask = cap - 1;
    if (!t->merges.slots) return aero_fail(err, AERO_ERR_NOMEM, "tokenizer: out of memory for %u merges", n);
    return AERO_OK;
}

// Records merge "a b" with its rank. Merges whose parts or result are not tokens can never apply to ids, so
// they are skipped (Hugging Face rejects such files; llama.cpp ignores them). The first rank of a pair wins.
aero_status aero_tok_add_merge(aero_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen, uint32_t rank,
                               aero_error *err) {
    int32_t ia = aero_tok_lookup(t, a, alen), ib = aero_tok_lookup(t, b, blen);
    if (ia < 0 || ib < 0) return AERO_OK;
    char stackbuf[256];
    char *cat = alen + blen <= sizeof stackbuf ? stackbuf : malloc(alen + blen);
    if (!cat) return aero_fail(err, AERO_ERR_NOMEM, "tokenizer: out of memory");
    memcpy(cat, a, alen);
    memcpy(cat + alen, b, blen);
    int32_t r = aero_tok_lookup(t, cat, alen + blen);
    if (cat != stackbuf) free(cat);
    if (r < 0) return AERO_OK;
    if (t->n_merges + 1 > (t->merges.mask + 1) / 2)
        return aero_fail(err, AERO_ERR_INVALID, "tokenizer: merge table full (reserve too small)");
    uint64_t key = (((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib) + 1;
    uint32_t i = (uint32_t)aero_hash_u64(key) & t->merges.mask;
    while (t->merges.slots[i].key) {
        if (t->merges.slots[i].key == key) return AERO_OK;
        i = (i + 1) & t->merges.mask;
    }
    t->merges.slots[i] = (aero_tok_merge){key, rank, r};
    t->n_merges++;
    return AERO_OK;
}

// GPT-2's reversible byte -> printable character map: printable Latin-1 bytes stand for themselves, the
// rest are shifted to U+0100.. in byte order.
uint32_t aero_tok_byte_to_unicode(uint8_t b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) return b;
    uint32_t n = 0;
    for (uint32_t x = 0; x < b; x++) {
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174)) n++;
    }
    return 256 + n;
}

// Hex digit value, or -1.
static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

// "<0xNN>" -> NN, else -1.
static int byte_token_value(const char *s, uint32_t n) {
    if (n != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>') return -1;
    int h = hexval(s[3]), l = hexval(s[4]);
    return (h < 0 || l < 0) ? -1 : h * 16 + l;
}

// What token id prints as, before the control-token and leading-space rules.
static bool build_piece(const aero_tokenizer *t, int32_t id, aero_tok_buf *out) {
    const char *s = t->str_pool + t->str_off[id];
    uint32_t n = t->str_len[id];
    uint16_t a = t->attr[id];
    if (a & AERO_TA_BYTE) {
        int v = byte_token_value(s, n);
        if (v >= 0) {
            char c = (char)v;
            return aero_buf_append(out, &c, 1);
        }
    }
    if ((a & (AERO_TA_CONTROL | AERO_TA_USER | AERO_TA_UNKNOWN)) && !(t->metaspace_decode && t->added_metaspace))
        return aero_buf_append(out, s, n);
    if (t->byte_level) {
        for (uint32_t i = 0; i < n;) {
            uint32_t cp;
            int l = aero_utf8_decode((const unsigned char *)s + i, n - i, &cp);
            if (cp != AERO_UTF8_INVALID && cp < 324 && t->unicode_to_byte[cp] >= 0) {
                char c = (char)t->unicode_to_byte[cp];
                if (!aero_buf_append(out, &c, 1)) return false;
            } else if (!aero_buf_append(out, s + i, (size_t)l)) {
                return false;
            }
            i += (size_t)l;
        }
        return true;
    }
    if (t->kind == AERO_TOK_WPM && t->wpm_prefix) {
        size_t pl = strlen(t->wpm_prefix);
        if (pl && n >= pl && memcmp(s, t->wpm_prefix, pl) == 0) return aero_buf_append(out, s + pl, n - pl);
        return aero_buf_append(out, " ", 1) && aero_buf_append(out, s, n);
    }
    if (t->metaspace_decode) {
        for (uint32_t i = 0; i < n;) {
            if (i + 3 <= n && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
                if (!aero_buf_append(out, " ", 1)) return false;
                i += 3;
            } else {
                if (!aero_buf_append(out, s + i, 1)) return false;
                i++;
            }
        }
        return true;
    }
    return aero_buf_append(out, s, n);
}

// Orders special tokens by first byte, longest first, so the splitter finds the longest match first.
static int cmp_special(const void *pa, const void *pb, void *ctx) {
    int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    const aero_tokenizer *t = ctx;
    unsigned char fa = (unsigned char)t->str_pool[t->str_off[a]], fb = (unsigned char)t->str_pool[t->str_off[b]];
    if (fa != fb) return fa < fb ? -1 : 1;
    if (t->str_len[a] != t->str_len[b]) return t->str_len[a] > t->str_len[b] ? -1 : 1;
    return a < b ? -1 : (a > b);
}

// Whether token id's string is exactly s.
static bool text_is(const aero_tokenizer *t, int32_t id, const char *s) {
    size_t n = strlen(s);
    return t->str_len[id] == n && memcmp(t->str_pool + t->str_off[id], s, n) == 0;
}

// Marks end-of-generation tokens: the declared EOS/EOT/EOM plus the turn-ending tokens that vocabularies
// carry by name (llama.cpp detects the same list by text, since GGUF has no field for them).
static void mark_eog(aero_tokenizer *t) {
    static const char *names[] = {
        "<|eot_id|>",
        "<|im_end|>",
        "<|end|>",
        "<|return|>",
        "<|call|>",
        "<end_of_turn>",
        "<|endoftext|>",
        "<|eom_id|>",
        "<EOT>",
        "_<EOT>",
        "<|end_of_text|>",
        "<end_of_utterance>",
        "<\xEF\xBD\x9C"
        "end\xE2\x96\x81"
        "of\xE2\x96\x81"
        "sentence\xEF\xBD\x9C>",
    };
    int32_t end_id = -1;
    bool has_return = false, has_call = false;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
            if (text_is(t, id, names[k])) {
                t->attr[id] |= AERO_TA_EOG;
                if (!(t->attr[id] & AERO_TA_CONTROL))
                    t->attr[id] = (uint16_t)((t->attr[id] & ~AERO_TA_NORMAL) | AERO_TA_CONTROL);
                if (k == 2) end_id = id;
                if (k == 3) has_return = true;
                if (k == 4) has_call = true;
                break;
            }
        }
    }
    // gpt-oss (harmony): "<|end|>" ends a message, not the generation, when <|return|>/<|call|> exist.
    if (has_return && has_call && end_id >= 0)
        t->attr[end_id] = (uint16_t)((t->attr[end_id] & ~(AERO_TA_EOG | AERO_TA_CONTROL)) | AERO_TA_USER);
    int32_t decl[3] = {t->eos, t->eot, t->eom};
    for (int k = 0; k < 3; k++)
        if (decl[k] >= 0 && decl[k] < t->n_vocab) t->attr[decl[k]] |= AERO_TA_EOG;
}

// Builds everything derived from the vocabulary once loading is done.
aero_status aero_tok_finish(aero_tokenizer *t, aero_error *err) {
    aero_tok_buf pieces = {0};
    for (int i = 0; i < 324; i++) t->unicode_to_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        uint32_t cp = aero_tok_byte_to_unicode((uint8_t)b);
        t->unicode_to_byte[cp] = (int16_t)b;
        char u[4];
        int l = aero_utf8_encode(cp, u);
        memcpy(t->byte_utf8[b], u, (size_t)l);
        t->byte_utf8_len[b] = (uint8_t)l;
    }
    int32_t *ids[] = {&t->bos, &t->eos, &t->eot, &t->eom, &t->unk, &t->sep, &t->pad};
    for (size_t k = 0; k < sizeof ids / sizeof ids[0]; k++)
        if (*ids[k] >= t->n_vocab) *ids[k] = -1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (byte_token_value(t->str_pool + t->str_off[id], t->str_len[id]) >= 0 &&
            (t->byte_fallback || t->kind == AERO_TOK_SPM) && (t->attr[id] & (AERO_TA_NORMAL | AERO_TA_BYTE)))
            t->attr[id] = (uint16_t)((t->attr[id] & ~AERO_TA_NORMAL) | AERO_TA_BYTE);
    }
    for (int b = 0; b < 256; b++) {
        int32_t id = -1;
        if (t->byte_level) {
            char u[4];
            int l = aero_utf8_encode(aero_tok_byte_to_unicode((uint8_t)b), u);
            id = aero_tok_lookup(t, u, (size_t)l);
        } else {
            char hx[7];
            snprintf(hx, sizeof hx, "<0x%02X>", b);
            id = aero_tok_lookup(t, hx, 6);
            if (id < 0 && b < 0x80) {
                char c = (char)b;
                id = aero_tok_lookup(t, &c, 1);
            }
        }
        t->byte_tok[b] = id;
    }
    mark_eog(t);
    if ((t->kind == AERO_TOK_SPM || (t->kind == AERO_TOK_BPE && !t->byte_level)) && !build_bigrams(t)) goto nomem;
    t->piece_off = malloc((size_t)t->n_vocab * sizeof *t->piece_off);
    t->piece_len = malloc((size_t)t->n_vocab * sizeof *t->piece_len);
    if (!t->piece_off || !t->piece_len) goto nomem;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        size_t start = pieces.len;
        if (!build_piece(t, id, &pieces)) goto nomem;
        t->piece_off[id] = start;
        t->piece_len[id] = (uint32_t)(pieces.len - start);
        if (t->piece_len[id] > t->max_piece_len) t->max_piece_len = t->piece_len[id];
    }
    t->piece_pool = pieces.p ? pieces.p : malloc(1);
    pieces.p = NULL;
    if (!t->piece_pool) goto nomem;

    uint32_t ns = 0;
    for (int32_t id = 0; id < t->n_vocab; id++)
        if ((t->attr[id] & (AERO_TA_CONTROL | AERO_TA_USER | AERO_TA_UNKNOWN)) && t->str_len[id] > 0) ns++;
    if (ns) {
        t->special = malloc(ns * sizeof *t->special);
        t->special_bucket = calloc(257, sizeof *t->special_bucket);
        if (!t->special || !t->special_bucket) goto nomem;
        for (int32_t id = 0; id < t->n_vocab; id++)
            if ((t->attr[id] & (AERO_TA_CONTROL | AERO_TA_USER | AERO_TA_UNKNOWN)) && t->str_len[id] > 0)
                t->special[t->n_special++] = id;
        qsort_r(t->special, t->n_special, sizeof *t->special, cmp_special, t);
        for (uint32_t i = 0; i < t->n_special; i++)
            t->special_bucket[(unsigned char)t->str_pool[t->str_off[t->special[i]]] + 1]++;
        for (int b = 0; b < 256; b++) t->special_bucket[b + 1] += t->special_bucket[b];
    }
    return AERO_OK;
nomem:
    free(pieces.p);
    return aero_fail(err, AERO_ERR_NOMEM, "tokenizer: out of memory building decode tables");
}

// Frees a tokenizer and everything it owns (NULL is fine).
void aero_tokenizer_free(aero_tokenizer *t) {
    if (!t) return;
    free(t->str_pool);
    free(t->str_off);
    free(t->str_len);
    free(t->score);
    free(t->attr);
    free(t->piece_pool);
    free(t->piece_off);
    free(t->piece_len);
    free(t->vocab.slots);
    free(t->merges.slots);
    free(t->bigrams);
    for (int i = 0; i < t->n_norm; i++) {
        free(t->norm[i].a);
        free(t->norm[i].b);
    }
    free(t->norm);
    for (int i = 0; i < t->n_pre; i++) pcre2_code_free(t->pre[i].re);
    free(t->pre);
    free(t->wpm_prefix);
    free(t->special);
    free(t->special_bucket);
    free(t->pre_name);
    free(t->model_name);
    free(t);
}

// ---- accessors ----

aero_tok_kind aero_tokenizer_kind(const aero_tokenizer *t) { return t->kind; }
int32_t aero_tokenizer_n_vocab(const aero_tokenizer *t) { return t->n_vocab; }
int32_t aero_tokenizer_bos(const aero_tokenizer *t) { return t->bos; }
int32_t aero_tokenizer_eos(const aero_tokenizer *t) { return t->eos; }
bool aero_tokenizer_add_bos(const aero_tokenizer *t) { return t->add_bos && t->bos >= 0; }

// Lets generation loops stop on any turn-ending token, not just EOS.
bool aero_tokenizer_is_eog(const aero_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && (t->attr[id] & AERO_TA_EOG);
}

// The raw vocabulary string, for debugging and `aerollm tokenize`.
const char *aero_tokenizer_token_str(const aero_tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab) return NULL;
    return t->str_pool + t->str_off[id];
}

// Looks up a token by its exact string (chat templates need ids of <|im_end|> and the like).
int32_t aero_tokenizer_find(const aero_tokenizer *t, const char *str) {
    if (!str) return -1;
    return aero_tok_lookup(t, str, strlen(str));
}

// Tokens that print nothing by default.
bool aero_tokenizer_is_control(const aero_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && (t->attr[id] & (AERO_TA_CONTROL | AERO_TA_UNKNOWN));
}

size_t aero_tokenizer_max_piece(const aero_tokenizer *t) { return (size_t)t->max_piece_len + 8; }

const char *aero_tokenizer_pre_name(const aero_tokenizer *t) { return t->pre_name ? t->pre_name : ""; }

// ---- encode ----

bool aero_tok_ids_push(aero_tok_ids *o, int32_t id) {
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 64;
        int32_t *v = realloc(o->v, cap * sizeof *v);
        if (!v) return false;
        o->v = v;
        o->cap = cap;
    }
    o->v[o->n++] = id;
    return true;
}

// Whitespace test at s for lstrip/rstrip of special tokens (Unicode White_Space).
static bool is_ws_at(const char *s, size_t n, size_t *len) {
    uint32_t cp;
    int l = aero_utf8_decode((const unsigned char *)s, n, &cp);
    *len = (size_t)l;
    return cp != AERO_UTF8_INVALID && aero_unicode_is_whitespace(cp);
}

// Applies the normalizer steps to one section of text; the result is in *out_text/*out_n (either the input
// or one of the two buffers).
static aero_status normalize_section(const aero_tokenizer *t, const char *s, size_t n, aero_tok_buf *b1,
                                     aero_tok_buf *b2, const char **out_text, size_t *out_n, aero_error *err) {
    const char *cur = s;
    size_t cn = n;
    aero_tok_buf *bufs[2] = {b1, b2};
    int which = 0;
    for (int k = 0; k < t->n_norm; k++) {
        const aero_norm_step *st = &t->norm[k];
        aero_tok_buf *o = bufs[which];
        o->len = 0;
        bool ok = true;
        switch (st->op) {
        case AERO_NORM_NFC: ok = aero_unicode_nfc(cur, cn, o); break;
        case AERO_NORM_NFD: ok = aero_unicode_nfd(cur, cn, o); break;
        case AERO_NORM_LOWER:
            ok = aero_buf_reserve(o, cn * 2 + 4);
            for (size_t i = 0; ok && i < cn;) {
                uint32_t cp;
                int l = aero_utf8_decode((const unsigned char *)cur + i, cn - i, &cp);
                if (cp == AERO_UTF8_INVALID) {
                    ok = aero_buf_append(o, cur + i, 1);
                } else if (cp == 0x130) { // full lowercase of U+0130 is "i" + U+0307
                    ok = aero_buf_append(o, "i\xCC\x87", 3);
                } else {
                    char u[4];
                    int ul = aero_utf8_encode(aero_unicode_tolower(cp), u);
                    ok = aero_buf_append(o, u, (size_t)ul);
                }
                i += (size_t)l;
            }
            break;
        case AERO_NORM_STRIP_ACCENTS:
            for (size_t i = 0; ok && i < cn;) {
                uint32_t cp;
                int l = aero_utf8_decode((const unsigned char *)cur + i, cn - i, &cp);
                if (cp == AERO_UTF8_INVALID || aero_unicode_category(cp) != AERO_GC_Mn)
                    ok = aero_buf_append(o, cur + i, (size_t)l);
                i += (size_t)l;
            }
            break;
        case AERO_NORM_REPLACE:
            for (size_t i = 0; ok && i < cn;) {
                if (st->alen && i + st->alen <= cn && memcmp(cur + i, st->a, st->alen) == 0) {
                    ok = aero_buf_append(o, st->b, st->blen);
                    i += st->alen;
                } else {
                    ok = aero_buf_append(o, cur + i, 1);
                    i++;
                }
            }
            break;
        case AERO_NORM_PREPEND:
            if (cn) ok = aero_buf_append(o, st->a, st->alen) && aero_buf_append(o, cur, cn);
            break;
        }
        if (!ok) return aero_fail(err, AERO_ERR_NOMEM, "tokenizer: out of memory normalizing input");
        cur = o->p ? o->p : "";
        cn = o->len;
        which ^= 1;
    }
    *out_text = cur;
    *out_n = cn;
    return AERO_OK;
}

typedef struct {
    aero_tok_scratch *scratch;
    aero_tok_buf n1, n2, pre, spm;
    aero_tok_spans spans;
} encode_ctx;

// Encodes one stretch of ordinary text (no special tokens inside).
static aero_status encode_section(const aero_tokenizer *t, encode_ctx *c, const char *s, size_t n, bool prev_special,
                                  bool first_section, aero_tok_ids *out, aero_error *err) {
    if (t->kind == AERO_TOK_WPM) return aero_tok_wpm_encode(t, s, n, out, err);
    const char *txt;
    size_t tn;
    aero_status st = normalize_section(t, s, n, &c->n1, &c->n2, &txt, &tn, err);
    if (st != AERO_OK) return st;
    if (t->kind == AERO_TOK_SPM) {
        aero_tok_buf *b = &c->spm;
        b->len = 0;
        bool ok = aero_buf_reserve(b, tn * 3 + 3);
        if (ok && t->add_space_prefix && prev_special) ok = aero_buf_append(b, "\xE2\x96\x81", 3);
        for (size_t i = 0; ok && i < tn; i++) {
            if (txt[i] == ' ' && t->spm_escape) ok = aero_buf_append(b, "\xE2\x96\x81", 3);
            else ok = aero_buf_append(b, txt + i, 1);
        }
        if (!ok) return aero_fail(err, AERO_ERR_NOMEM, "tokenizer: out of memory");
        return aero_tok_spm_encode(t, c->scratch, b->p ? b->p : "", b->len, out, err);
    }
    c->spans.n = 0;
    st = aero_tok_pretokenize(t, &txt, &tn, &c->pre, first_section, &c->spans, err);
    if (st != AERO_OK) return st;
    for (size_t k = 0; k < c->spans.n; k++) {
        size_t a = c->spans.v[2 * k], b = c->spans.v[2 * k + 1];
        st = aero_tok_bpe_word(t, c->scratch, txt + a, b - a, out, err);
        if (st != AERO_OK) return st;
    }
    return AERO_OK;
}

// Longest special token that starts at s[0..n), or -1. Control and unknown tokens count only when
// parse_special; user-defined tokens always do (as in Hugging Face and llama.cpp).
static int32_t match_special(const aero_tokenizer *t, const char *s, size_t n, bool parse_special) {
    unsigned char c = (unsigned char)s[0];
    uint32_t lo = t->special_bucket[c], hi = t->special_bucket[c + 1];
    for (uint32_t i = lo; i < hi; i++) {
        int32_t id = t->special[i];
        uint32_t l = t->str_len[id];
        if (l > n) continue;
        if (!parse_special && !(t->attr[id] & AERO_TA_USER)) continue;
        if (memcmp(s, t->str_pool + t->str_off[id], l) == 0) return id;
    }
    return -1;
}

// Encode driver: BOS, then special tokens split out of the text, each stretch between them encoded.
aero_status aero_tokenize(const aero_tokenizer *t, const char *text, size_t len, bool add_bos, bool parse_special,
                          int32_t **ids, size_t *n_ids, aero_error *err) {
    if (!t || !ids || !n_ids || (!text && len)) return aero_fail(err, AERO_ERR_INVALID, "aero_tokenize: NULL argument");
    *ids = NULL;
    *n_ids = 0;
    aero_tok_ids out = {0};
    encode_ctx c = {0};
    aero_status st = AERO_OK;
    c.scratch = aero_tok_scratch_new();
    if (!c.scratch) {
        st = aero_fail(err, AERO_ERR_NOMEM, "tokenizer: out of memory");
        goto fail;
    }
    if (add_bos && t->bos >= 0 && !aero_tok_ids_push(&out, t->bos)) goto nomem;

    size_t seg = 0, p = 0;
    bool prev_special = true, first_section = true;
    while (p < len) {
        int32_t id = -1;
        if (t->n_special && t->special_bucket[(unsigned char)text[p] + 1] > t->special_bucket[(unsigned char)text[p]])
            id = match_special(t, text + p, len - p, parse_special);
        if (id < 0) {
            p++;
            continue;
        }
        size_t end = p;
        if (t->attr[id] & AERO_TA_LSTRIP) {
            // trim whitespace (ASCII and Unicode) at the end of the text before the token
            size_t q = seg;
            size_t last_non_ws = seg;
            while (q < end) {
                size_t l;
                bool ws = is_ws_at(text + q, end - q, &l);
                q += l;
                if (!ws) last_non_ws = q;
            }
            end = last_non_ws;
        }
        if (end > seg) {
            st = encode_section(t, &c, text + seg, end - seg, prev_special, first_section, &out, err);
            if (st != AERO_OK) goto fail;
        }
        if (!aero_tok_ids_push(&out, id)) goto nomem;
        prev_special = true;
        p += t->str_len[id];
        if (t->attr[id] & AERO_TA_RSTRIP) {
            size_t l;
            while (p < len && is_ws_at(text + p, len - p, &l)) p += l;
        }
        seg = p;
        first_section = false;
    }
    if (len > seg) {
        st = encode_section(t, &c, text + seg, len - seg, prev_special, first_section, &out, err);
        if (st != AERO_OK) goto fail;
    }
    if (add_bos && t->kind == AERO_TOK_WPM && t->add_sep && t->sep >= 0 && !aero_tok_ids_push(&out, t->sep)) goto nomem;
    if (add_bos && t->add_eos && t->eos >= 0 && !aero_tok_ids_push(&out, t->eos)) goto nomem;
    *ids = out.v ? out.v : malloc(sizeof(int32_t));
    if (!*ids) goto nomem;
    *n_ids = out.n;
    out.v = NULL;
    goto done;
nomem:
    st = aero_fail(err, AERO_ERR_NOMEM, "tokenizer: out of memory encoding %zu bytes", len);
fail:
    free(out.v);
done:
    aero_tok_scratch_free(c.scratch);
    free(c.n1.p);
    free(c.n2.p);
    free(c.pre.p);
    free(c.spm.p);
    free(c.spans.v);
    return st;
}
