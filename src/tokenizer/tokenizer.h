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

aero_status aero_tokenizer_from_gguf(aero_tokenizer **out, const aero_gguf *g, aero_error *err);
aero_status aero_tokenizer_from_json(aero_tokenizer **out, const char *path, aero_error *err);
// Loads from a path: a .json file (tokenizer.json) or a GGUF file.
aero_status aero_tokenizer_load(aero_tokenizer **out, const char *path, aero_error *err);
void aero_tokenizer_free(aero_tokenizer *t);

aero_tok_kind aero_tokenizer_kind(const aero_tokenizer *t);
int32_t aero_tokenizer_n_vocab(const aero_tokenizer *t);
int32_t aero_tokenizer_bos(const aero_tokenizer *t);   // -1 when none
int32_t aero_tokenizer_eos(const aero_tokenizer *t);   // -1 when none
bool aero_tokenizer_add_bos(const aero_tokenizer *t);  // metadata's add_bos_token (model default)
// End-of-generation: EOS, EOT, <|im_end|>, <|eot_id|> and the like declared by the vocabulary.
bool aero_tokenizer_is_eog(const aero_tokenizer *t, int32_t id);
// The token's stored string (as in the vocabulary, e.g. "▁the" or "Ġthe"); NULL when out of range.
const char *aero_tokenizer_token_str(const aero_tokenizer *t, int32_t id);
// Id of an exact vocabulary string, or -1.
int32_t aero_tokenizer_find(const aero_tokenizer *t, const char *str);
// Control/unknown tokens (BOS, EOS, <|im_start|>...): they print nothing unless render_special.
bool aero_tokenizer_is_control(const aero_tokenizer *t, int32_t id);
// An output buffer of this many bytes always holds what one aero_detok_push can write.
size_t aero_tokenizer_max_piece(const aero_tokenizer *t);
// The pre-tokenizer name (GGUF tokenizer.ggml.pre), "" when none.
const char *aero_tokenizer_pre_name(const aero_tokenizer *t);

// Encodes len bytes of text. add_bos: prepend BOS (when the vocab has one; WordPiece also appends SEP, and a
// vocabulary with add_eos_token appends EOS). parse_special: recognise control-token strings in the text
// (user-defined tokens are always recognised, as in Hugging Face and llama.cpp). Any bytes are accepted:
// invalid UTF-8 becomes byte tokens (or <unk>). *ids is malloc'ed; caller frees.
aero_status aero_tokenize(const aero_tokenizer *t, const char *text, size_t len, bool add_bos, bool parse_special,
                          int32_t **ids, size_t *n_ids, aero_error *err);

// The bytes one token stands for in output text (byte-level decoded, ▁ -> space, <0xNN> -> byte).
// Control tokens (BOS/EOS...) give "" unless render_special. Writes up to cap bytes; returns the full length.
size_t aero_token_to_bytes(const aero_tokenizer *t, int32_t id, bool render_special, char *buf, size_t cap);

// Decodes a whole id sequence into text (malloc'ed, NUL-terminated), applying the SPM leading-space rule.
// The bytes are exactly the tokens' bytes (no UTF-8 repair, no clean-up of spaces before punctuation);
// an id outside the vocabulary is an error.
aero_status aero_detokenize(const aero_tokenizer *t, const int32_t *ids, size_t n, bool render_special,
                            char **text, size_t *len, aero_error *err);

// Incremental decoder for streaming: never emits an incomplete UTF-8 sequence.
typedef struct aero_detok {
    const aero_tokenizer *tok;
    bool first;          // next token is the first of the output (SPM strips one leading space after BOS)
    bool render_special;
    unsigned char pending[8];
    int n_pending;
} aero_detok;

void aero_detok_init(aero_detok *d, const aero_tokenizer *t, bool render_special);
// aero_detok_init sets first = true: the next token starts the output, so an SPM leading space is dropped;
// set d->first = false to continue text that already has output before it.
// Appends the complete UTF-8 produced by token id to out (cap bytes); returns bytes written. Invalid byte
// sequences come out as U+FFFD. cap >= aero_tokenizer_max_piece(t) always suffices.
size_t aero_detok_push(aero_detok *d, int32_t id, char *out, size_t cap);
// Flushes what is pending at the end of a stream (invalid leftovers as U+FFFD); returns bytes written.
size_t aero_detok_flush(aero_detok *d, char *out, size_t cap);

#endif
