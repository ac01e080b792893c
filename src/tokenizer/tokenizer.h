// Tokenizers: SentencePiece-style BPE by scores (llama/Mistral/Phi-3) and byte-level BPE by merge rank
// (GPT-2, Llama 3, Qwen, DeepSeek, ...), loaded from GGUF metadata or a Hugging Face tokenizer.json.
#ifndef AERO_TOKENIZER_H
#define AERO_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"
#include "../format/gguf.h"

typedef struct aero_tokenizer aero_tokenizer;

typedef enum { AERO_TOK_SPM = 1, AERO_TOK_BPE = 2, AERO_TOK_WPM = 3 } aero_tok_kind;

// The tokenizer's public functions (load, from_gguf, free, the vocabulary queries, aero_tokenize,
// aero_token_to_bytes, aero_detokenize, aero_detok_push/flush) are declared in include/aerollm.h; these are
// what the engine and the tests use beyond them.
aero_status aero_tokenizer_from_json(aero_tokenizer **out, const char *path, aero_error *err);
aero_tok_kind aero_tokenizer_kind(const aero_tokenizer *t);
// The pre-tokenizer name (GGUF tokenizer.ggml.pre), "" when none.
const char *aero_tokenizer_pre_name(const aero_tokenizer *t);
// The tokenizer.ggml.pre name whose one split is this regex (a tokenizer.json Split pattern); false when none.
bool aero_tok_pre_for_regex(const char *pattern, char *name, size_t cap);

// Incremental decoder for streaming: never emits an incomplete UTF-8 sequence.
typedef struct aero_detok {
    const aero_tokenizer *tok;
    bool first; // next token is the first of the output (SPM strips one leading space after BOS)
    bool render_special;
    unsigned char pending[8];
    int n_pending;
} aero_detok;

// Sets first = true: the next token starts the output, so an SPM leading space is dropped; set d->first = false
// to continue text that already has output before it.
void aero_detok_init(aero_detok *d, const aero_tokenizer *t, bool render_special);

#endif
