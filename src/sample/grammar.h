// Grammars that constrain sampling: rules of alternatives over byte classes and rule references (what GBNF
// and the JSON-schema compiler produce), a pushdown recognizer over bytes, and the per-step token mask: a
// token is allowed when its bytes keep the recognizer alive. The vocabulary side (token bytes in a trie) is
// built once per tokenizer; each request's constraint caches masks by recognizer state, and a state that
// loops on many bytes (inside a free string) is masked from a per-token table instead of a trie walk.
#ifndef AERO_GRAMMAR_H
#define AERO_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"
#include "sample.h"

// A set of bytes.
typedef struct {
    uint64_t w[4];
} aero_cset;

static inline void aero_cset_add(aero_cset *c, unsigned b) { c->w[b >> 6] |= 1ull << (b & 63); }
static inline bool aero_cset_has(const aero_cset *c, unsigned b) { return (c->w[b >> 6] >> (b & 63)) & 1; }
void aero_cset_range(aero_cset *c, unsigned lo, unsigned hi); // adds lo..hi inclusive

typedef enum { AERO_GEL_END = 0, AERO_GEL_CHARS, AERO_GEL_RULE } aero_gel_kind;

// One element of an alternative: a byte class (arg: class index) or a rule reference (arg: rule id).
typedef struct {
    int32_t kind, arg;
} aero_gel;

typedef struct aero_grammar aero_grammar;

aero_grammar *aero_grammar_new(void);
void aero_grammar_free(aero_grammar *g);
// A new rule without alternatives; -1 when out of memory or past the size limit.
int aero_grammar_add_rule(aero_grammar *g);
// The index of a byte class (equal classes share one); -1 when out of memory.
int aero_grammar_cset(aero_grammar *g, const aero_cset *c);
// Appends an alternative (a sequence of n elements; n may be 0 for the empty string) to a rule.
bool aero_grammar_add_alt(aero_grammar *g, int rule, const aero_gel *els, int n);
void aero_grammar_set_root(aero_grammar *g, int rule);
// The root rule (-1: unset): lets a caller wrap a compiled grammar in more rules (tool-call formats).
int aero_grammar_root(const aero_grammar *g);
// Copies src's rules into dst; returns src's root rule in dst (-1: out of memory).
int aero_grammar_import(aero_grammar *dst, const aero_grammar *src);
// Checks what the builder cannot: every rule has an alternative, references are in range, and no rule can
// reach itself without consuming a byte (left recursion would loop the recognizer).
aero_status aero_grammar_check(const aero_grammar *g, aero_error *err);
int aero_grammar_n_rules(const aero_grammar *g);

// Byte-level recognizer (the reference the token mask must agree with; tests and fuzzers use it).
typedef struct aero_grammar_run aero_grammar_run;
aero_grammar_run *aero_grammar_run_new(const aero_grammar *g);
void aero_grammar_run_free(aero_grammar_run *r);
// Feeds bytes; false (state unchanged) when they cannot continue any sentence of the grammar.
bool aero_grammar_run_feed(aero_grammar_run *r, const char *bytes, size_t n);
// True when the bytes fed so far form a complete sentence.
bool aero_grammar_run_accepting(const aero_grammar_run *r);

// Token bytes of a tokenizer, arranged for masking. kind: 0 an ordinary token, 1 a control token (never
// allowed), 2 end of generation (allowed exactly when the grammar is complete).
typedef size_t (*aero_grammar_piece_fn)(void *ctx, int32_t id, char *buf, size_t cap);
typedef int (*aero_grammar_kind_fn)(void *ctx, int32_t id);
typedef struct aero_grammar_vocab aero_grammar_vocab;
aero_grammar_vocab *aero_grammar_vocab_new(int n_vocab, aero_grammar_piece_fn piece, aero_grammar_kind_fn kind,
                                           void *ctx);
void aero_grammar_vocab_free(aero_grammar_vocab *v);

// A request's constraint for the sampler (aero_sampler_params.constraint). g and v must outlive it.
aero_sampler_constraint *aero_grammar_constraint_new(const aero_grammar *g, const aero_grammar_vocab *v);
void aero_grammar_constraint_free(aero_sampler_constraint *c);
// Whether the output so far is a complete sentence of the grammar.
bool aero_grammar_constraint_complete(const aero_sampler_constraint *c);

typedef struct {
    long masks;      // masks computed (steps)
    long cache_hits; // masks served from the state cache
    long loop_masks; // masks computed from the per-token table of a looping state
    long trie_masks; // masks computed by walking the token trie
    double seconds;  // time spent masking
} aero_grammar_stats;
void aero_grammar_constraint_stats(const aero_sampler_constraint *c, aero_grammar_stats *out);

#endif
