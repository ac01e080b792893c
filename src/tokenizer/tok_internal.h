// Internal layout of aero_tokenizer, shared by the loaders (GGUF, tokenizer.json), the encoders (SPM, BPE,
// WordPiece), the pre-tokenizer and the decoder. Not part of the public API.
#ifndef AERO_TOK_INTERNAL_H
#define AERO_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tok_unicode.h"
#include "tokenizer.h"

// Token attributes (GGUF token_type values become these bits).
enum {
    AERO_TA_NORMAL = 1 << 0,
    AERO_TA_UNKNOWN = 1 << 1,
    AERO_TA_CONTROL = 1 << 2,
    AERO_TA_USER = 1 << 3, // user-defined / non-special added token: always split out of text
    AERO_TA_UNUSED = 1 << 4,
    AERO_TA_BYTE = 1 << 5,   // <0xNN>
    AERO_TA_LSTRIP = 1 << 6, // swallow whitespace before it when split out of text
    AERO_TA_RSTRIP = 1 << 7, // swallow whitespace after it
    AERO_TA_EOG = 1 << 8,    // ends generation
};

// Normalizer steps (tokenizer.json "normalizer"; GGUF qwen2 implies NFC).
typedef enum {
    AERO_NORM_NFC,
    AERO_NORM_NFD,
    AERO_NORM_LOWER,
    AERO_NORM_STRIP_ACCENTS,
    AERO_NORM_REPLACE,
    AERO_NORM_PREPEND,
} aero_norm_op;

typedef struct {
    aero_norm_op op;
    char *a, *b; // REPLACE: a -> b; PREPEND: a
    size_t alen, blen;
} aero_norm_step;

// How a Split rule treats its matches (Hugging Face SplitDelimiterBehavior).
typedef enum {
    AERO_SPLIT_ISOLATED,
    AERO_SPLIT_REMOVED,
    AERO_SPLIT_MERGED_PREV,
    AERO_SPLIT_MERGED_NEXT,
    AERO_SPLIT_CONTIGUOUS,
} aero_split_behavior;

typedef enum {
    AERO_PRE_SPLIT,       // regex or literal split
    AERO_PRE_METASPACE,   // ' ' -> U+2581, optional prefix, split before each U+2581
    AERO_PRE_PREFIX_SPACE // ByteLevel add_prefix_space: prepend ' ' unless the piece starts with one
} aero_pre_kind;

// Patterns with a hand-written matcher (tok_fastsplit.c).
enum { AERO_FAST_NONE, AERO_FAST_GPT2, AERO_FAST_LLAMA3, AERO_FAST_QWEN2 };
int aero_tok_fast_kind(const char *pattern, size_t len);
size_t aero_tok_fast_match(int kind, const unsigned char *s, size_t n, size_t i);

typedef struct {
    aero_pre_kind kind;
    pcre2_code *re; // SPLIT
    int fast;       // SPLIT: AERO_FAST_* when the pattern has a hand-written matcher
    aero_split_behavior behavior;
    bool invert;
    // METASPACE
    bool meta_prepend_first, meta_prepend_always, meta_split;
} aero_pre_rule;

typedef struct {
    uint64_t *slots; // (hash >> 32) << 32 | (id + 1); 0 = empty. The fingerprint skips most string compares.
    uint32_t mask;
} aero_tok_strmap;

typedef struct {
    uint64_t key; // (left id << 32 | right id) + 1, 0 = empty
    uint32_t rank;
    int32_t result;
} aero_tok_merge;

typedef struct {
    aero_tok_merge *slots; // one cache line per probe: key, rank and result together
    uint32_t mask;
} aero_tok_mergemap;

struct aero_tokenizer {
    aero_tok_kind kind;
    int32_t n_vocab;
    char *str_pool;    // all token strings, each NUL-terminated
    uint64_t *str_off; // [n_vocab]
    uint32_t *str_len; // [n_vocab]
    float *score;      // [n_vocab]
    uint16_t *attr;    // [n_vocab]
    char *piece_pool;  // decoded bytes of each token (what it prints as)
    uint64_t *piece_off;
    uint32_t *piece_len;
    uint32_t max_token_len, max_piece_len;
    aero_tok_strmap vocab;
    aero_tok_mergemap merges;
    uint32_t n_merges;
    // Every pair of adjacent characters found inside some token (SPM and character-level BPE). Text is cut
    // between two characters whose pair is absent: no merge can ever cross there, so encoding the pieces
    // separately gives the same ids with small heaps.
    uint64_t *bigrams;
    uint32_t bigram_mask;

    // pipeline
    aero_norm_step *norm;
    int n_norm;
    aero_pre_rule *pre;
    int n_pre;
    bool byte_level;    // GPT-2 bytes <-> unicode mapping
    bool ignore_merges; // a pre-token that is itself a token is taken whole (Llama 3)
    bool byte_fallback; // unknown characters become <0xNN> tokens
    bool fuse_unk;
    bool spm_escape;        // SPM: ' ' -> U+2581 before encoding
    bool add_space_prefix;  // SPM: prepend a space at the start and after each special token
    bool strip_first_space; // decoding: drop the leading space of the first piece
    bool metaspace_decode;  // decoding: U+2581 -> ' '
    bool added_metaspace;   // ... also inside added tokens (tokenizer.json's Replace decoder sees every token)
    bool wpm_lowercase, wpm_strip_accents;
    char *wpm_prefix; // WordPiece continuation prefix ("##") for tokenizer.json; NULL for GGUF (U+2581 word starts)
    int32_t byte_tok[256]; // token of each byte (byte-level char or <0xNN>), -1 when absent
    int16_t unicode_to_byte[324];
    char byte_utf8[256][2]; // UTF-8 of each byte's GPT-2 character (1 or 2 bytes)
    uint8_t byte_utf8_len[256];

    int32_t bos, eos, eot, eom, unk, sep, pad;
    bool add_bos, add_eos, add_sep;

    // special-token splitting: ids sorted by (first two bytes, length desc); bucket heads by first 2 bytes
    int32_t *special;
    uint32_t n_special;
    uint32_t *special_bucket; // [65537] start offsets into special
    char *pre_name;
    char *model_name;
};

// ---- construction helpers (tokenizer.c) ----
aero_tokenizer *aero_tok_alloc(void);
// Takes the n token strings and builds pools, the vocab map, default attrs. strs[i]/lens[i] are copied.
aero_status aero_tok_set_vocab(aero_tokenizer *t, int32_t n, const char *const *strs, const uint32_t *lens,
                               aero_error *err);
aero_status aero_tok_add_merge(aero_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen, uint32_t rank,
                               aero_error *err);
aero_status aero_tok_merges_reserve(aero_tokenizer *t, uint32_t n, aero_error *err);
// Finishes a loaded tokenizer: byte tokens, decoded pieces, special-token index, EOG set.
aero_status aero_tok_finish(aero_tokenizer *t, aero_error *err);
int32_t aero_tok_lookup(const aero_tokenizer *t, const char *s, size_t n);
uint64_t aero_tok_hash(const void *p, size_t n);
bool aero_tok_merge_find(const aero_tokenizer *t, int32_t a, int32_t b, uint32_t *rank, int32_t *result);
// Whether characters a then b occur next to each other inside some token (invalid bytes: 0x110000 + byte).
bool aero_tok_bigram_possible(const aero_tokenizer *t, uint32_t a, uint32_t b);

// ---- pre-tokenizer (tok_pretok.c) ----
// Rewrites a Hugging Face (Oniguruma) regex for PCRE2 and compiles it.
aero_status aero_tok_compile_regex(const char *pattern, size_t len, pcre2_code **out, aero_error *err);
aero_status aero_tok_add_split(aero_tokenizer *t, const char *pattern, size_t len, bool literal,
                               aero_split_behavior behavior, bool invert, aero_error *err);
aero_status aero_tok_add_rule(aero_tokenizer *t, const aero_pre_rule *r, aero_error *err);
// Installs the pre-tokenizer that a GGUF tokenizer.ggml.pre names (BPE vocabularies).
aero_status aero_tok_set_pre_by_name(aero_tokenizer *t, const char *name, aero_error *err);

// A list of [start, end) byte ranges into a text buffer.
typedef struct {
    size_t *v;
    size_t n, cap;
} aero_tok_spans;
bool aero_tok_spans_push(aero_tok_spans *s, size_t a, size_t b);
// Applies the pre-tokenizer rules to text[0..n) (which may be rewritten: metaspace, prefixes): on return
// *text/*n may point into buf, and out holds the word spans. first_section tells Metaspace "first".
aero_status aero_tok_pretokenize(const aero_tokenizer *t, const char **text, size_t *n, aero_tok_buf *buf,
                                 bool first_section, aero_tok_spans *out, aero_error *err);

// ---- encoders; each appends ids to out ----
typedef struct {
    int32_t *v;
    size_t n, cap;
} aero_tok_ids;
bool aero_tok_ids_push(aero_tok_ids *o, int32_t id);

typedef struct aero_tok_scratch aero_tok_scratch;
aero_tok_scratch *aero_tok_scratch_new(void);
void aero_tok_scratch_free(aero_tok_scratch *s);
aero_status aero_tok_bpe_word(const aero_tokenizer *t, aero_tok_scratch *s, const char *w, size_t n, aero_tok_ids *out,
                              aero_error *err);
aero_status aero_tok_spm_encode(const aero_tokenizer *t, aero_tok_scratch *s, const char *text, size_t n,
                                aero_tok_ids *out, aero_error *err);
aero_status aero_tok_wpm_encode(const aero_tokenizer *t, const char *text, size_t n, aero_tok_ids *out,
                                aero_error *err);

// GPT-2 byte <-> unicode map.
uint32_t aero_tok_byte_to_unicode(uint8_t b);

#endif
