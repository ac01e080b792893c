// libFuzzer target for constrained output: the JSON-schema compiler and the GBNF parser on any bytes (a schema
// or grammar, then after a NUL byte a candidate text), the recognizer on the candidate, and the token mask on a small vocabulary. A text
// the grammar accepts must be JSON (the grammar's language stays inside JSON); a token the mask allows must
// keep the recognizer alive, and an allowed end of generation must mean a complete sentence.
// Run: make fuzz && build-fuzz/fuzz_json_schema -max_total_time=60 fuzz/corpus/json_schema
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sample/gbnf.h"
#include "sample/grammar.h"
#include "sample/json_grammar.h"

static const char *const PIECES[] = {"{\"",    "\":",     "\"}",   "true", "null", " ", "\n  ", "12",
                                     "-0.5e3", "\\u00e9", "\",\"", "[{",   "}]",   "a", "\"",   ",",
                                     "{",      "}",       "[",     "]",    ":",    "0", "\\"};
#define N_P ((int)(sizeof PIECES / sizeof PIECES[0]))
#define N_VOCAB (N_P + 2) // + a control token + end of generation

static size_t piece(void *ctx, int32_t id, char *buf, size_t cap) {
    (void)ctx;
    size_t n = id < N_P ? strlen(PIECES[id]) : 0;
    memcpy(buf, id < N_P ? PIECES[id] : "", n < cap ? n : cap);
    return n;
}

static int kind(void *ctx, int32_t id) {
    (void)ctx;
    return id == N_P ? 1 : id == N_P + 1 ? 2 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t slen = nul ? (size_t)(nul - data) : size;
    const char *cand = nul ? (const char *)nul + 1 : "";
    size_t clen = nul ? size - slen - 1 : 0;
    { // the same bytes as a GBNF grammar: compiles or fails cleanly; its recognizer runs on the candidate
        aero_grammar *gb = NULL;
        aero_error gerr = {0};
        if (aero_gbnf_compile(&gb, (const char *)data, slen, &gerr) == AERO_OK) {
            aero_grammar_run *gr = aero_grammar_run_new(gb);
            if (gr && clen < 4096) aero_grammar_run_feed(gr, cand, clen);
            aero_grammar_run_free(gr);
            aero_grammar_free(gb);
        } else if (!gerr.msg[0] || gb) {
            abort();
        }
    }
    json_t *schema = json_loadb((const char *)data, slen, JSON_DECODE_ANY, NULL);
    aero_grammar *g = NULL;
    aero_error err = {0};
    char kw[64];
    aero_status st = aero_json_grammar_compile(&g, schema, kw, &err);
    json_decref(schema);
    if (st) {
        if (!err.msg[0] || g) abort();
        return 0;
    }
    aero_grammar_run *r = aero_grammar_run_new(g);
    if (r && clen < 4096 && aero_grammar_run_feed(r, cand, clen) && aero_grammar_run_accepting(r)) {
        json_t *v = json_loadb(cand, clen, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        if (!v) abort(); // the grammar accepted something that is not JSON
        json_decref(v);
    }
    aero_grammar_run_free(r);

    aero_grammar_vocab *voc = aero_grammar_vocab_new(N_VOCAB, piece, kind, NULL);
    aero_sampler_constraint *c = voc ? aero_grammar_constraint_new(g, voc) : NULL;
    aero_grammar_run *ref = aero_grammar_run_new(g);
    // Walk: pick tokens by the candidate's bytes as a source of choices; check each against the recognizer.
    for (size_t step = 0; c && ref && step < 24; step++) {
        float logits[N_VOCAB] = {0};
        c->mask(c, logits, N_VOCAB);
        if (!isinf(logits[N_P])) abort(); // a control token is never allowed
        int allowed[N_VOCAB], n = 0;
        for (int id = 0; id < N_VOCAB; id++)
            if (!isinf(logits[id])) allowed[n++] = id;
        if (n == 0) abort(); // something must stay allowed
        int t = allowed[(step < clen ? (uint8_t)cand[step] : step) % (size_t)n];
        if (t == N_P + 1) {
            if (n > 1 && !aero_grammar_run_accepting(ref)) abort(); // ending before the sentence is complete
            break;
        }
        if (!aero_grammar_run_feed(ref, PIECES[t], strlen(PIECES[t]))) abort();
        c->accept(c, t);
    }
    aero_grammar_run_free(ref);
    aero_grammar_constraint_free(c);
    aero_grammar_vocab_free(voc);
    aero_grammar_free(g);
    return 0;
}
