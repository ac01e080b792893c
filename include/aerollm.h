// AeroLLM public API: the one header a program (the aerollm command, an embedding application, the public-API
// test) builds on. It is self-contained: every type here is either an opaque handle, a parameter or statistics
// struct meant for callers, or a value enum, and every struct of the engine's internals stays in src/.
// The module headers in src/ include this header for the types it defines, so each type has one definition.
//
// The life of a generation through it:
//   aero_model_load -> aero_ctx_new -> aero_sampler_new -> aero_tokenize -> aero_generator_new/begin/step
//   (text through aero_generator_text/visible) -> aero_generator_free, aero_sampler_free, aero_ctx_free,
//   aero_model_free.
#ifndef AEROLLM_H
#define AEROLLM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AEROLLM_VERSION "0.1.0"

// The library's version (AEROLLM_VERSION of the build that made libaero.a).
const char *aero_version(void);

// ---- errors ----

typedef enum {
    AERO_OK = 0,
    AERO_ERR_IO,          // read/write/open failed
    AERO_ERR_FORMAT,      // malformed input file or data
    AERO_ERR_NOMEM,       // allocation failed or budget exceeded
    AERO_ERR_INVALID,     // bad argument or request
    AERO_ERR_UNSUPPORTED, // valid but not implemented (architecture, type, ...)
    AERO_ERR_RANGE,       // out of range (context overflow, ...)
} aero_status;

// What failed and why: every function that can fail fills one (the message names file, field, offset).
typedef struct {
    aero_status code;
    char msg[512];
} aero_error;

// Records an error (printf-style) and returns its code, so callers can write `return aero_fail(err, ...)`.
aero_status aero_fail(aero_error *err, aero_status code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
// A short name for a status code, for logs.
const char *aero_status_name(aero_status s);

// ---- small helpers ----

// Parses "512M", "8G", "1.5G", "64K", "100000" (binary units) into bytes; false when malformed or zero.
bool aero_parse_size(const char *s, uint64_t *out);
// Seconds from a monotonic clock.
double aero_now(void);
// Peak resident set size of this process in bytes, 0 if unknown.
uint64_t aero_peak_rss(void);
// Reads a whole stream into a NUL-terminated buffer (free() it). max bounds the size (0: no bound); a longer
// stream fails with AERO_ERR_RANGE. `name` prefixes the error messages.
aero_status aero_read_stream(FILE *f, const char *name, size_t max, char **out, size_t *len, aero_error *err);
// aero_read_stream on a file opened by path (AERO_ERR_IO when it cannot be opened).
aero_status aero_read_file(const char *path, size_t max, char **out, size_t *len, aero_error *err);

// A growing byte buffer for text of unknown length, always NUL-terminated; a caller-owned value like aero_error
// (zero-initialise it, read p and len, aero_buf_free it).
typedef struct {
    char *p;    // NULL until the first append; then always NUL-terminated at p[len]
    size_t len; // bytes used, not counting the terminator
    size_t cap; // bytes allocated
    bool oom;   // an append failed since the last clear, so a caller can check once at the end
} aero_buf;

// Appends n bytes (s may be NULL when n is 0); false (and b->oom set) when memory runs out.
bool aero_buf_append(aero_buf *b, const void *s, size_t n);
// Appends a NUL-terminated string.
bool aero_buf_puts(aero_buf *b, const char *s);
// Appends printf-formatted text.
bool aero_buf_printf(aero_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// Hands the bytes to the caller (free() them; never NULL unless out of memory) and empties the buffer.
char *aero_buf_take(aero_buf *b, size_t *len);
// Empties the buffer but keeps its allocation, for reuse.
void aero_buf_clear(aero_buf *b);
// Frees the bytes and resets the buffer to empty.
void aero_buf_free(aero_buf *b);

// A fixed pool of compute threads (for the memory-bandwidth probes).
typedef struct aero_pool aero_pool;
// n_threads <= 0: the number of online CPUs. NULL when out of memory.
aero_pool *aero_pool_new(int n_threads);
void aero_pool_free(aero_pool *p);
// Read bandwidth (bytes/s) of summing a buffer of `bytes` (far larger than the caches) on all pool threads.
double aero_measure_mem_bw(aero_pool *pool, uint64_t bytes);
// The instruction set the kernels dispatch to on this CPU ("scalar", "avx2", "avx512", ...).
const char *aero_kernels_isa_name(void);

// ---- tensor types ----

// Tensor element types as numbered in GGUF (ggml_type).
typedef enum {
    AERO_DT_F32 = 0,
    AERO_DT_F16 = 1,
    AERO_DT_Q4_0 = 2,
    AERO_DT_Q4_1 = 3,
    AERO_DT_Q5_0 = 6,
    AERO_DT_Q5_1 = 7,
    AERO_DT_Q8_0 = 8,
    AERO_DT_Q8_1 = 9,
    AERO_DT_Q2_K = 10,
    AERO_DT_Q3_K = 11,
    AERO_DT_Q4_K = 12,
    AERO_DT_Q5_K = 13,
    AERO_DT_Q6_K = 14,
    AERO_DT_Q8_K = 15,
    AERO_DT_IQ2_XXS = 16,
    AERO_DT_IQ2_XS = 17,
    AERO_DT_IQ3_XXS = 18,
    AERO_DT_IQ1_S = 19,
    AERO_DT_IQ4_NL = 20,
    AERO_DT_IQ3_S = 21,
    AERO_DT_IQ2_S = 22,
    AERO_DT_IQ4_XS = 23,
    AERO_DT_I8 = 24,
    AERO_DT_I16 = 25,
    AERO_DT_I32 = 26,
    AERO_DT_I64 = 27,
    AERO_DT_F64 = 28,
    AERO_DT_IQ1_M = 29,
    AERO_DT_BF16 = 30,
    AERO_DT_MXFP4 = 39, // 31..38 are ids ggml removed or this engine does not know (TQ1_0, TQ2_0)
    AERO_DT_COUNT = 40,
} aero_dtype;

// Name for printing ("F32", "Q4_K", "type#99").
const char *aero_dtype_name(uint32_t type);
// Parses a name like "q4_k" or "F16"; returns -1 when unknown.
int aero_dtype_parse(const char *name);
// Bytes of a row of n elements; 0 when n is not a multiple of the block size or the type is unknown.
size_t aero_dtype_row_bytes(uint32_t type, uint64_t n);

// ---- GGUF files: inspection and writing ----

typedef struct aero_gguf aero_gguf;             // an opened GGUF file (or the files of a split model)
typedef struct aero_gguf_value aero_gguf_value; // one metadata value, owned by its file
typedef struct aero_gguf_writer aero_gguf_writer;

// The type of a metadata value, as numbered in GGUF.
typedef enum {
    AERO_GGUF_UINT8 = 0,
    AERO_GGUF_INT8 = 1,
    AERO_GGUF_UINT16 = 2,
    AERO_GGUF_INT16 = 3,
    AERO_GGUF_UINT32 = 4,
    AERO_GGUF_INT32 = 5,
    AERO_GGUF_FLOAT32 = 6,
    AERO_GGUF_BOOL = 7,
    AERO_GGUF_STRING = 8,
    AERO_GGUF_ARRAY = 9,
    AERO_GGUF_UINT64 = 10,
    AERO_GGUF_INT64 = 11,
    AERO_GGUF_FLOAT64 = 12,
    AERO_GGUF_TYPE_COUNT
} aero_gguf_type;

// Parses path (and, when it is named *-00001-of-0000N.gguf, its siblings): metadata and the tensor table, no
// tensor data. err names the file, the field and the byte offset of a malformed file.
aero_status aero_gguf_load(aero_gguf **out, const char *path, aero_error *err);
void aero_gguf_close(aero_gguf *g);
// aero_gguf_load, or for a Hugging Face model directory the tensor table and metadata it is run with (llama.cpp's
// names and keys; see docs/architectures.md), so that `aerollm info DIR` shows what the engine reads.
aero_status aero_model_file_load(aero_gguf **out, const char *path, aero_error *err);

// Writes a Hugging Face directory (config.json, safetensors, tokenizer.json) as a GGUF file llama.cpp reads:
// its tensor names and metadata keys, Q/K rows permuted for the llama family, Gemma norms + 1, tokenizer.ggml.*
// from tokenizer.json. Written to a temporary name and renamed; nothing is left at out on failure.
typedef struct {
    const char *dir, *out;
    int type; // an aero_dtype for the matrices, -1: as stored (F32/F16/BF16); 1-D tensors and routers stay F32
    void (*progress)(void *ctx, uint64_t done, uint64_t total); // bytes written so far (NULL: none)
    void *progress_ctx;
} aero_hf_convert_params;
aero_status aero_hf_convert(const aero_hf_convert_params *p, aero_error *err);

uint32_t aero_gguf_version(const aero_gguf *g); // of the first file
uint64_t aero_gguf_alignment(const aero_gguf *g);
uint32_t aero_gguf_n_files(const aero_gguf *g); // > 1 for a split model
const char *aero_gguf_file_path(const aero_gguf *g, uint32_t file);
uint64_t aero_gguf_file_size(const aero_gguf *g, uint32_t file);

// Metadata, in file order: key i and its value.
uint64_t aero_gguf_n_kv(const aero_gguf *g);
const char *aero_gguf_kv_key(const aero_gguf *g, uint64_t i);
const aero_gguf_value *aero_gguf_kv_value(const aero_gguf *g, uint64_t i);
const char *aero_gguf_type_name(aero_gguf_type t);
// Lookups by key; NULL / false when absent or of an incompatible type. Integer/float/bool getters accept any
// scalar numeric type that represents the value exactly.
const aero_gguf_value *aero_gguf_get(const aero_gguf *g, const char *key);
const char *aero_gguf_get_str(const aero_gguf *g, const char *key);
bool aero_gguf_get_u64(const aero_gguf *g, const char *key, uint64_t *out);
bool aero_gguf_get_i64(const aero_gguf *g, const char *key, int64_t *out);
bool aero_gguf_get_f64(const aero_gguf *g, const char *key, double *out);
bool aero_gguf_get_bool(const aero_gguf *g, const char *key, bool *out);

// A value: its type; a scalar as the widest integer/float of its kind (u64 for unsigned and BOOL, i64 for
// signed, f64 for floats; 0 for another type); a string's bytes (*len; may hold NULs; NULL when not a string).
aero_gguf_type aero_gguf_value_type(const aero_gguf_value *v);
uint64_t aero_gguf_value_u64(const aero_gguf_value *v);
int64_t aero_gguf_value_i64(const aero_gguf_value *v);
double aero_gguf_value_f64(const aero_gguf_value *v);
const char *aero_gguf_value_str(const aero_gguf_value *v, uint64_t *len);
// An array value: its element type and length (AERO_GGUF_TYPE_COUNT and 0 when not an array); element i of an
// array of arrays (NULL when not one).
aero_gguf_type aero_gguf_value_arr_type(const aero_gguf_value *v);
uint64_t aero_gguf_value_arr_n(const aero_gguf_value *v);
const aero_gguf_value *aero_gguf_value_arr_at(const aero_gguf_value *v, uint64_t i);
// Scalar element i of an array as integer/float (false when not representable), string element i (*len bytes).
bool aero_gguf_arr_i64(const aero_gguf_value *v, uint64_t i, int64_t *out);
bool aero_gguf_arr_u64(const aero_gguf_value *v, uint64_t i, uint64_t *out);
bool aero_gguf_arr_f64(const aero_gguf_value *v, uint64_t i, double *out);
const char *aero_gguf_arr_string(const aero_gguf_value *v, uint64_t i, uint64_t *len);

// The tensor table, across all split files in file order.
uint64_t aero_gguf_n_tensors(const aero_gguf *g);
int64_t aero_gguf_tensor_index(const aero_gguf *g, const char *name); // -1 when absent
const char *aero_gguf_tensor_name(const aero_gguf *g, uint64_t i);
uint32_t aero_gguf_tensor_type(const aero_gguf *g, uint64_t i); // an aero_dtype
uint32_t aero_gguf_tensor_n_dims(const aero_gguf *g, uint64_t i);
// The shape, ne[0] (elements per row) first: n_dims entries.
const uint64_t *aero_gguf_tensor_shape(const aero_gguf *g, uint64_t i);
uint64_t aero_gguf_tensor_n_elements(const aero_gguf *g, uint64_t i);
uint32_t aero_gguf_tensor_file(const aero_gguf *g, uint64_t i);   // which split file holds the data
uint64_t aero_gguf_tensor_offset(const aero_gguf *g, uint64_t i); // absolute byte offset in that file
uint64_t aero_gguf_tensor_nbytes(const aero_gguf *g, uint64_t i);
// The layer a tensor belongs to: N for a name "blk.N.<anything>", else -1. The one place the naming rule lives.
int aero_gguf_tensor_layer(const char *name);
// The layer count a model file declares: <arch>.block_count, arch being general.architecture (llama when
// absent); false when the key is missing.
bool aero_gguf_block_count(const aero_gguf *g, int64_t *n_layer);

// Produces rows [row0, row0 + n_rows) of a tensor (each aero_dtype_row_bytes(type, ne[0]) bytes) into dst, in
// increasing row order, so that a tensor larger than memory is written in pieces; false (err set) on failure.
typedef bool (*aero_gguf_fill_rows_fn)(void *ctx, void *dst, uint64_t row0, uint64_t n_rows, aero_error *err);

// alignment: 0 = default 32; another power of two is recorded as general.alignment. NULL only when out of memory.
aero_gguf_writer *aero_gguf_writer_new(uint64_t alignment);
void aero_gguf_writer_free(aero_gguf_writer *w);
// Copies a metadata value (of another file) under key; setting an existing key replaces it.
void aero_gguf_set_value(aero_gguf_writer *w, const char *key, const aero_gguf_value *v);
aero_status aero_gguf_add_tensor_rows(aero_gguf_writer *w, const char *name, aero_dtype type, uint32_t n_dims,
                                      const uint64_t *ne, aero_gguf_fill_rows_fn fill, void *ctx, aero_error *err);
// Progress callback during write (bytes written so far, total).
void aero_gguf_writer_progress(aero_gguf_writer *w, void (*fn)(void *ctx, uint64_t done, uint64_t total), void *ctx);
// Writes GGUF v3 to path via a temporary file, fsync and rename; nothing is left at path on failure.
aero_status aero_gguf_write(aero_gguf_writer *w, const char *path, aero_error *err);

// ---- tokenizers ----

typedef struct aero_tokenizer aero_tokenizer;
// A streaming detokenizer: never emits an incomplete UTF-8 sequence.
typedef struct aero_detok aero_detok;

// Loads from a path: a .json file (tokenizer.json) or a GGUF file. SentencePiece-style BPE by scores
// (llama/Mistral/Phi-3), byte-level BPE by merge rank (GPT-2, Llama 3, Qwen, DeepSeek, ...) and WordPiece.
aero_status aero_tokenizer_load(aero_tokenizer **out, const char *path, aero_error *err);
// The tokenizer of an opened GGUF file.
aero_status aero_tokenizer_from_gguf(aero_tokenizer **out, const aero_gguf *g, aero_error *err);
void aero_tokenizer_free(aero_tokenizer *t);

int32_t aero_tokenizer_n_vocab(const aero_tokenizer *t);
int32_t aero_tokenizer_bos(const aero_tokenizer *t);  // -1 when none
int32_t aero_tokenizer_eos(const aero_tokenizer *t);  // -1 when none
bool aero_tokenizer_add_bos(const aero_tokenizer *t); // metadata's add_bos_token (model default)
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

// Encodes len bytes of text. add_bos: prepend BOS (when the vocab has one; WordPiece also appends SEP, and a
// vocabulary with add_eos_token appends EOS). parse_special: recognise control-token strings in the text
// (user-defined tokens are always recognised, as in Hugging Face and llama.cpp). Any bytes are accepted:
// invalid UTF-8 becomes byte tokens (or <unk>). *ids is malloc'ed; caller frees.
aero_status aero_tokenize(const aero_tokenizer *t, const char *text, size_t len, bool add_bos, bool parse_special,
                          int32_t **ids, size_t *n_ids, aero_error *err);
// The bytes one token stands for in output text (byte-level decoded, ▁ -> space, <0xNN> -> byte). Control
// tokens (BOS/EOS...) give "" unless render_special. Writes up to cap bytes; returns the full length.
size_t aero_token_to_bytes(const aero_tokenizer *t, int32_t id, bool render_special, char *buf, size_t cap);
// Decodes a whole id sequence into text (malloc'ed, NUL-terminated), applying the SPM leading-space rule.
// The bytes are exactly the tokens' bytes (no UTF-8 repair, no clean-up of spaces before punctuation); an id
// outside the vocabulary is an error.
aero_status aero_detokenize(const aero_tokenizer *t, const int32_t *ids, size_t n, bool render_special, char **text,
                            size_t *len, aero_error *err);

// A streaming detokenizer whose first token starts the output (an SPM leading space is dropped). NULL when out of
// memory.
aero_detok *aero_detok_new(const aero_tokenizer *t, bool render_special);
void aero_detok_free(aero_detok *d);
// Appends the complete UTF-8 produced by token id to out (cap >= aero_tokenizer_max_piece bytes); returns bytes
// written. Invalid byte sequences come out as U+FFFD.
size_t aero_detok_push(aero_detok *d, int32_t id, char *out, size_t cap);
// Flushes what is pending at the end of a stream (invalid leftovers as U+FFFD); returns bytes written.
size_t aero_detok_flush(aero_detok *d, char *out, size_t cap);

// ---- sampling ----

// A constraint on what may be sampled next (a grammar, a JSON schema; layout in src/sample/sample.h): before each
// draw it forbids tokens, and it advances past each token the sampler draws (never past prompt tokens).
typedef struct aero_sampler_constraint aero_sampler_constraint;
typedef struct aero_sampler aero_sampler;

typedef struct {
    float temp;           // <= 0: greedy
    int top_k;            // <= 0: off
    float top_p;          // >= 1: off
    float min_p;          // <= 0: off
    float repeat_penalty; // 1: off (llama.cpp semantics over the last repeat_last_n tokens)
    int repeat_last_n;
    float presence_penalty; // OpenAI semantics
    float frequency_penalty;
    uint64_t seed;
    aero_sampler_constraint *constraint; // NULL: none; borrowed (must outlive the sampler), state is per request
} aero_sampler_params;

void aero_sampler_params_default(aero_sampler_params *p);
// Sets (or with NULL clears) the constraint applied to every later draw; same as params.constraint.
void aero_sampler_set_constraint(aero_sampler *s, aero_sampler_constraint *c);
aero_sampler *aero_sampler_new(const aero_sampler_params *p, int n_vocab);
void aero_sampler_free(aero_sampler *s);
void aero_sampler_reset(aero_sampler *s); // forgets history; reseeds
bool aero_sampler_is_greedy(const aero_sampler *s);
// Records a token of the context (prompt or generated) for penalties.
void aero_sampler_accept(aero_sampler *s, int32_t token);
// Samples from n_vocab logits: the distribution after penalties, temperature and truncation, drawn with the
// sampler's seeded RNG; argmax (lowest id on ties) when greedy. Does not accept the token.
int32_t aero_sampler_sample(aero_sampler *s, const float *logits);

// ---- weight streaming ----

// The weights of a model under a memory budget: some units (layers, the output head) resident, the rest read
// from disk each pass.
typedef struct aero_stream aero_stream;

typedef struct {
    uint64_t passes;
    uint64_t bytes_streamed; // read from disk for streamed units
    double io_busy_s;        // wall time IO threads spent reading
    double compute_s;        // wall time between acquire returning and release (model compute)
    double wait_s;           // time acquire() blocked waiting for IO
    double wall_s;           // time from first acquire of a pass to release of its last unit, summed
} aero_stream_stats;

typedef struct {
    uint64_t resident_bytes;                    // small tensors + pinned units + resident head/embeddings
    uint64_t streamed_bytes;                    // bytes read per pass
    uint64_t window_bytes;                      // slot ring
    uint64_t min_budget;                        // smallest legal budget
    int n_units, n_pinned, n_streamed, n_slots; // units: layer units + the head unit; slots: of the ring
    bool head_resident, embd_resident;
    bool *unit_resident;  // per unit
    uint64_t budget;      // the --mem given (0 = none)
    uint64_t embd_bytes;  // part of resident_bytes held only for embedding row lookups (0 when tied/by row)
    uint64_t small_bytes; // part of resident_bytes: norms, biases and other small tensors
    int prefetch;         // units read ahead (n_slots - 1)
    int io_threads;
    bool direct; // O_DIRECT reads (false: buffered + FADV_DONTNEED); known after open
    // routed experts (mixture-of-experts models): never part of a layer unit. Resident when the budget holds
    // the whole model; else served by an expert cache of expert_budget bytes, outside the fields above.
    int n_moe_layers, n_expert, n_expert_used; // from the tensors and `%s.expert_used_count`; 0 when dense
    uint64_t expert_bytes;                     // all routed expert tensors
    uint64_t expert_span; // bytes one expert takes in the expert cache (4 KiB-aligned parts), the largest
    bool experts_resident;
    uint64_t expert_min;    // smallest expert cache: one decode step's experts of a layer (k spans)
    uint64_t expert_budget; // the expert cache's share of the budget (0 when resident or dense)
    int head_parts;         // row blocks the streamed output head is read in (0: resident or read whole)
    int prefetch_asked;     // the prefetch depth asked for; above `prefetch` when the budget only held fewer slots
} aero_stream_plan;

// The plan a model file would get under budget (0: no limit), decided without opening or reading anything
// (aerollm info). Close with aero_stream_close.
aero_status aero_stream_open_plan(aero_stream **out, const aero_gguf *g, int n_layer, uint64_t budget, aero_error *err);
void aero_stream_close(aero_stream *s);
const aero_stream_plan *aero_stream_get_plan(const aero_stream *s);
// The output head's unit (the last unit, after the layer units): what callers acquire for the head.
int aero_stream_head_unit(const aero_stream *s);
// Blocks until unit u is in memory; pair with release. Units are acquired in cyclic order: the layer units
// 0..n_layer-1, then the head unit (out of order restarts the cycle there, re-reading).
aero_status aero_stream_acquire(aero_stream *s, int unit, aero_error *err);
void aero_stream_release(aero_stream *s, int unit);
// Row blocks the output head comes in: 1 when resident or streamed whole, more when a head larger than a layer
// unit is streamed in layer-sized blocks (only for a caller that opened the stream with head_in_parts).
int aero_stream_head_parts(const aero_stream *s);
// Acquires row block `part` of the output head, in order after the last layer unit: while held, the output
// tensor's data (aero_stream_tensor) is its rows [*row0, *row0 + *rows). Release with aero_stream_release(s,
// aero_stream_head_unit(s)). With one part it is aero_stream_acquire of the head unit (all rows).
aero_status aero_stream_acquire_head_part(aero_stream *s, int part, int64_t *row0, int64_t *rows, aero_error *err);
void aero_stream_get_stats(const aero_stream *s, aero_stream_stats *out);
void aero_stream_reset_stats(aero_stream *s);
// The live state of every unit, for a viewer, read under the streamer's lock (held for a few loads, never across
// IO): out[u] (at most cap - 1 letters, NUL-ended) is 'p' resident, 'P' resident and computing, 'd' on disk,
// 'r' being read into the window, 'w' read and waiting, 'c' computing from the window; slot_unit/slot_state
// (AERO_STREAM_MAX_SLOTS each) the window's slots, oldest first, *n_slots of them; *stats the counters copied
// under the same lock. Returns the units written (0: nothing to show yet).
#define AERO_STREAM_MAX_SLOTS 18
int aero_stream_unit_states(aero_stream *s, char *out, int cap, int *slot_unit, char *slot_state, int *n_slots,
                            aero_stream_stats *stats);
// Prints the --stats report (per pass: bytes streamed, IO busy, compute, IO wait, GB/s, disk floor) to f. The
// floor's disk bandwidth is measured now (O_DIRECT reads of the model file into the idle window) unless set.
void aero_stream_print_stats(aero_stream *s, FILE *f);
// Bytes read from disk per decode token that the plan predicts: the streamed dense bytes plus, per MoE layer,
// k experts times the miss rate of the expert cache (its share of all experts: the uniform-routing estimate,
// a skewed router does better).
double aero_stream_plan_bytes_per_token(const aero_stream_plan *p);
// Prints the dense / window / expert cache split and the expected bytes read per token (nothing for a dense
// model): what `aerollm info MODEL --mem SIZE` adds for a mixture-of-experts model.
void aero_stream_print_expert_plan(const aero_stream_plan *p, FILE *f);
// Disk read bandwidth (bytes/s) of the bytes a pass streams, read through the one disk probe (aero_measure_disk)
// the way the streamer reads (its request size, as many requests in flight as it has IO threads, O_DIRECT):
// every streamed range, or max_bytes of its requests spread evenly over the pass (0 or UINT64_MAX: no limit).
// The same bytes, so that a host-side cache favours neither side. The streaming window is the buffer, so the
// measurement adds no memory; the next acquire refills the window. 0 when nothing is streamed, the window is in use, or the reads failed.
double aero_stream_measure_disk_bw(aero_stream *s, uint64_t max_bytes);
// Uses bw (bytes/s) as the probe's disk bandwidth in aero_stream_print_stats instead of measuring.
void aero_stream_set_disk_bw(aero_stream *s, double bw);
// The disk as the passes use it: the IO threads' own rate (bytes they finished / seconds with a read in flight)
// over runs of consecutive logged passes that read at least 64 MiB together (one pass where it reads that much),
// and the probe's.
typedef struct {
    double probe;            // the last probe (aero_stream_measure_disk_bw) or aero_stream_set_disk_bw; 0: none
    double best;             // the best run since open (not reset by aero_stream_reset_stats)
    int n_passes;            // runs of logged passes whose rate counts
    double min, median, max; // their rates
} aero_stream_disk_spread;
// The disk bandwidth (bytes/s) of the floor: the best of the probe and of the passes' own rates, so that no
// pass (no run of small passes) beats its floor, where a short probe alone varied 1-3 GB/s on one disk; the
// spread in *sp (may be NULL).
double aero_stream_disk_floor_bw(aero_stream *s, aero_stream_disk_spread *sp);
// Memory read bandwidth (bytes/s) summing the engine's own largest weight buffer (window or pinned unit) on
// the pool's threads, so that a benchmark under a memory limit allocates nothing more. 0 when too small.
double aero_stream_measure_mem_bw(aero_stream *s, aero_pool *pool);

// ---- pipeline parallelism over MPI (src/mpi/) ----

// Joins the MPI job when mpirun started the process (else, and in a build without MPI, a job of one rank).
aero_status aero_pipeline_init(int *argc, char ***argv, aero_error *err);
int aero_pipeline_rank(void);
int aero_pipeline_size(void);
// A rank other than 0: serves the passes rank 0 sends until it says stop; the process's exit code.
int aero_pipeline_worker(void);
// Rank 0 at exit, with the command's exit code: tells the workers to stop and leaves the job; when the pipeline
// broke (a rank died), ends the whole job instead. Returns the exit code to use.
int aero_pipeline_finish(int rc);
// The message of a pipeline that broke (a rank died, a link failed), or NULL while it works.
const char *aero_pipeline_failure(void);

// ---- models and contexts ----

typedef struct aero_model aero_model;
typedef struct aero_ctx aero_ctx;

// Rank 0 of a pipelined model: the ranks and this rank's layers, the bytes rank 0 sent and received and the
// seconds it waited in MPI since the reset, per token for n_tokens; nothing without a pipeline.
void aero_pipeline_print_stats(const aero_model *m, int n_tokens, FILE *f);
void aero_pipeline_reset_stats(void);
// The same figures for a benchmark's JSON: false (and zeros) without a pipeline.
typedef struct {
    int ranks, layer_first, layer_last; // rank 0's layers: [first, last)
    double mpi_wait_s;                  // rank 0's seconds inside MPI waits
    unsigned long long bytes_sent, bytes_recv, messages;
} aero_pipeline_stats;
bool aero_pipeline_get_stats(const aero_model *m, aero_pipeline_stats *out);

typedef struct {
    const char *path;
    uint64_t mem_budget;  // weight bytes the engine may hold in RAM; 0 = no limit (all resident)
    int n_threads;        // compute threads; <= 0: number of CPUs
    int prefetch;         // layers read ahead when streaming; <= 0: default (2)
    int io_threads;       // <= 0: default
    bool expert_prefetch; // MoE: prefetch the next layer's predicted experts (off: it did not pay, docs/perf/moe.md)
    const char *device;   // "cpu" (NULL) or "cuda": where its contexts compute unless they say otherwise
    uint64_t gpu_mem;     // VRAM budget of a CUDA context; 0: what it needs, at most the free VRAM less a margin
    bool head_hot;        // the output head is read more than once a pass (a draft head projects through it for
                          // every drafted token): the plan keeps it resident whenever such a plan is feasible
    // Under mpirun with several ranks (aero_pipeline_init): this model's layers are split into contiguous ranges,
    // one per rank, each rank holding or streaming its range under its own mem_budget (the drafter is left false).
    bool pipeline;
    const char *pipe_split; // --split 0.4,0.6: each rank's share of the layers' bytes; NULL: equal bytes
    int pipe_micro;         // micro-batches a pass is cut into so that every rank computes; 0: auto, 1: none
} aero_model_params;

void aero_model_params_default(aero_model_params *p);
aero_status aero_model_load(aero_model **out, const aero_model_params *p, aero_error *err);
void aero_model_free(aero_model *m);
// Hyperparameters a caller needs: architecture name, layers, embedding width, vocabulary, training context.
const char *aero_model_arch(const aero_model *m);
int aero_model_n_layer(const aero_model *m);
int aero_model_n_embd(const aero_model *m);
int aero_model_n_vocab(const aero_model *m);
int aero_model_n_ctx_train(const aero_model *m);
const aero_tokenizer *aero_model_tokenizer(const aero_model *m);
// The model's file (metadata, tensor table, chat template) and the path it was loaded from.
const aero_gguf *aero_model_gguf(const aero_model *m);
const char *aero_model_path(const aero_model *m);
aero_stream *aero_model_stream(aero_model *m);
uint64_t aero_model_weight_bytes(const aero_model *m); // bytes of all weight tensors in the file(s)
int aero_model_n_threads(const aero_model *m);
// Mixture-of-experts models: zeroes the expert cache's counters and the per-expert use counts (after warm-up).
void aero_model_expert_stats_reset(aero_model *m);
// Prints, for the n_tokens decoded since the reset, the expert cache's hit rate and bytes read per token against
// the floor (the reads of an oracle that keeps the experts used most in a cache of the same size), and the
// predictor's hit rate; nothing for a dense model.
void aero_model_print_expert_stats(const aero_model *m, int n_tokens, FILE *f);

// Element type of the cached keys or values (llama.cpp's -ctk/-ctv values). The quantized ones are stored in
// blocks of 32 along the head dimension, so head_dim must be a multiple of 32 for them.
typedef enum {
    AERO_KV_DEFAULT = 0, // F16, or F32 with kv_f32
    AERO_KV_F32,
    AERO_KV_F16,
    AERO_KV_BF16,
    AERO_KV_Q8_0,
    AERO_KV_Q4_0,
    AERO_KV_Q4_1,
    AERO_KV_Q5_0,
    AERO_KV_Q5_1,
} aero_kv_type;

typedef struct {
    int n_ctx;   // KV capacity per sequence; <= 0: model's training context capped at 4096
    int n_seq;   // sequences the cache holds at once (server sequences); <= 0: 1
    bool kv_f32; // F32 cache instead of F16 (for a type left AERO_KV_DEFAULT)
    int n_batch; // tokens computed at once inside a layer (-b, the compute tile); <= 0: 512. A longer batch
                 // is computed tile by tile within each layer, so it still reads the weights once.
    aero_kv_type type_k, type_v; // cache types of keys and values (AERO_KV_DEFAULT: see kv_f32)
    int kv_recent;      // --kv-recent N: a query reads the cached rows of the N positions up to its own from an F16
                        // copy instead of the quantized cache (quantized types only; 0: none). The copy is a ring of
                        // N + n_batch cells per sequence and layer, counted by aero_kv_bytes.
    const char *device; // NULL: the model's (aero_model_params.device); "cpu" or "cuda"
    uint64_t gpu_mem;   // 0: the model's
    uint64_t gpu_head_vram; // VRAM a draft head's layer takes on this GPU context (aero_spec_head_mem), planned
                            // inside gpu_mem beside the model's units; 0: none (a head's layer then runs on the host)
} aero_ctx_params;

// Parses a cache type name as llama.cpp's -ctk/-ctv take it ("f16", "q8_0", case-insensitive); -1 if unknown.
int aero_kv_type_parse(const char *name);
// "f16", "q8_0", ... ("default" for AERO_KV_DEFAULT).
const char *aero_kv_type_name(aero_kv_type t);
// The tensor type a cache type stores, with AERO_KV_DEFAULT resolved by kv_f32.
aero_dtype aero_kv_type_dtype(aero_kv_type t, bool kv_f32);
// Bytes of the KV cache of model file g for context p (*n_ctx: the context length it resolves to); 0 bytes when g
// holds no model (a vocabulary-only file). Refuses cache types the model's head size cannot hold.
aero_status aero_gguf_kv_bytes(const aero_gguf *g, const aero_ctx_params *p, uint64_t *bytes, int *n_ctx,
                               aero_error *err);
// Prints the plan `--device cuda --gpu-mem gpu_mem` would make for this file and context (kv: -c, -np; n_tile:
// tokens a pass, 0 = 512), without a GPU: the VRAM-resident units, the fixed VRAM, the copy slots, the minimum
// --gpu-mem, and per unit V (VRAM), H (host memory under mem_budget, 0 = no limit) or D (disk), with the bytes
// copied over PCIe per pass (`aerollm info --gpu-mem`). Refuses a budget below the minimum, saying it. head_hot:
// a draft head reads the output head every drafted token (aero_model_params.head_hot); kv->gpu_head_vram: its
// layer's VRAM beside the model's.
aero_status aero_gpu_plan_print(const aero_gguf *g, const aero_ctx_params *kv, int n_tile, uint64_t gpu_mem,
                                uint64_t mem_budget, bool head_hot, FILE *f, aero_error *err);

// How --mem is shared at start. The KV cache is allocated whole when the context is made and a drafter is held
// resident, so both come out of the budget first; the weights' streamer gets what is left.
typedef struct {
    uint64_t mem;           // the --mem given (0: no limit)
    uint64_t kv_bytes;      // the KV cache (aero_kv_bytes)
    uint64_t other_bytes;   // other bytes held inside --mem (a resident drafter)
    uint64_t weight_budget; // for aero_model_params.mem_budget: mem - kv_bytes - other_bytes (0 when mem is 0)
    uint64_t min_mem;       // the smallest --mem that runs: the streamer's minimum + kv_bytes + other_bytes
    int n_ctx, n_seq;       // the context the KV bytes are for
    aero_dtype type_k, type_v;
} aero_mem_split;

// Splits mp->mem_budget for a context cp of model file mp->path, with other_bytes already held (a drafter).
// Refuses, naming every share and the smallest --mem that works ("below the minimum X (N bytes)"), a budget
// that cannot hold the KV cache, the other bytes and the streamer's minimum; or cache types the head size
// cannot hold. Reads the file's metadata only.
aero_status aero_mem_split_plan(aero_mem_split *out, const aero_model_params *mp, const aero_ctx_params *cp,
                                uint64_t other_bytes, aero_error *err);
// The same with other_bytes named other_what in a refusal ("draft model", "draft head").
aero_status aero_mem_split_plan_named(aero_mem_split *out, const aero_model_params *mp, const aero_ctx_params *cp,
                                      uint64_t other_bytes, const char *other_what, aero_error *err);

aero_status aero_ctx_new(aero_ctx **out, aero_model *m, const aero_ctx_params *p, aero_error *err);
// "cuda" when built with the CUDA backend and a GPU is present, else "cpu" (the CLI's --device default).
const char *aero_default_device(void);
// One line on where the context computes (device, VRAM budget, resident and streamed units).
const char *aero_ctx_device(const aero_ctx *c);
void aero_ctx_free(aero_ctx *c);
int aero_ctx_n_ctx(const aero_ctx *c);
int aero_ctx_n_seq(const aero_ctx *c);
aero_model *aero_ctx_model(aero_ctx *c);

int aero_kv_len(const aero_ctx *c, int seq);          // tokens cached for seq
void aero_kv_truncate(aero_ctx *c, int seq, int len); // keeps the first len entries (rollback)
void aero_kv_drop(aero_ctx *c, int seq);              // empties seq
// Keeps, after the first `base` entries, only the entries base+keep[0], base+keep[1], ... (ascending), moved
// down to base, base+1, ...: the accepted path of a verified tree.
void aero_kv_keep(aero_ctx *c, int seq, int base, const int *keep, int n_keep);

// Saved prompts (--prompt-cache, the server's slot files): the cached K/V of a sequence's first n_tokens
// positions, with those tokens, written to path through a temporary file in the same directory that is fsync'd
// and renamed into place (a crash never leaves a half file). The file records the model's identity (a hash of
// its metadata and tensor table, and the shape of the cache) and the cache types. CPU contexts without
// --kv-recent only (AERO_ERR_UNSUPPORTED otherwise, with the reason).
aero_status aero_kv_save(aero_ctx *c, int seq, const int32_t *tokens, int n_tokens, const char *path,
                         aero_error *err);
// Reads a file written by aero_kv_save into sequence seq: afterwards the sequence caches the file's tokens
// (*tokens, malloc'ed, and *n_tokens; tokens may be NULL). Refused, naming the reason and changing nothing, for
// another model, other cache types, a context shorter than the file's tokens, a truncated file or a damaged
// header; rows that fail their checksum leave the sequence empty.
aero_status aero_kv_load(aero_ctx *c, int seq, const char *path, int32_t **tokens, int *n_tokens, aero_error *err);
// Checks a whole file image in memory without a model (fuzzers, tools): header, sizes, token ids against the
// vocabulary size it records, and every checksum.
aero_status aero_kv_file_check(const void *buf, size_t len, int *n_tokens, aero_error *err);
// Rewrites the checksums of a file image (of the rows only when its size matches the header), so that fuzzers
// and tests reach the checks behind them with damaged fields.
void aero_kv_file_seal(void *buf, size_t len);
// The path of a slot file (the server's POST /slots/ID?action=save|restore): DIR/filename, the name checked to
// stay inside DIR (1-255 bytes, no '/', '\\', control characters or leading dot). AERO_ERR_UNSUPPORTED when
// dir is NULL or empty (slot files are off), AERO_ERR_INVALID for a bad name.
aero_status aero_kv_slot_path(const char *dir, const char *filename, char *out, size_t cap, aero_error *err);

// ---- batches and the forward pass ----

// Tokens with their positions, sequences and which ones want logits (built with an aero_batch_buf).
typedef struct aero_batch aero_batch;
// A growing batch that owns its arrays.
typedef struct aero_batch_buf aero_batch_buf;

aero_batch_buf *aero_batch_buf_new(int cap);
void aero_batch_buf_free(aero_batch_buf *b);
void aero_batch_buf_clear(aero_batch_buf *b);
int aero_batch_buf_len(const aero_batch_buf *b);
int aero_batch_buf_room(const aero_batch_buf *b); // tokens that can still be added
// Adds a token; returns its row in the packed logits output when want_logits, else -1. -1 too when full.
int aero_batch_buf_add(aero_batch_buf *b, int32_t tok, int32_t pos, int32_t seq, bool want_logits);
int32_t aero_batch_buf_seq(const aero_batch_buf *b, int i); // sequence of token i
// The batch to pass to aero_decode; valid until the next change.
const aero_batch *aero_batch_buf_get(aero_batch_buf *b);

// Runs the model over the batch, appending K/V to the cache; writes n_vocab logits per wanted token.
// Each layer computes every tile (n_batch tokens) of the batch while it is held, so a whole prompt passed in
// one call reads streamed weights once. Context overflow is AERO_ERR_RANGE and changes nothing.
aero_status aero_decode(aero_ctx *c, const aero_batch *b, float *logits, aero_error *err);
// The last hidden state of batch token i of the last aero_decode call (after the output norm: the row the
// vocabulary projection reads), n_embd floats into out; valid until the next pass. For embeddings.
// AERO_ERR_UNSUPPORTED on a context computing on the GPU (its activations stay on the device) unless a draft head
// asked for them, checked before i is: i = -1 probes whether a context gives hidden states at all.
aero_status aero_ctx_hidden(aero_ctx *c, int i, float *out, aero_error *err);
// Decodes toks[0..n) as positions pos0.. of sequence seq in passes of at most n_batch tokens; <= 0: all n in
// one pass, which reads streamed weights once (the context's tile, aero_ctx_params.n_batch, bounds the
// compute; the pass holds n x n_embd floats of activations). last_logits (n_vocab floats, or NULL) receives the
// logits of the last token.
aero_status aero_prefill(aero_ctx *c, int seq, const int32_t *toks, int n, int pos0, int n_batch, float *last_logits,
                         aero_error *err);

// ---- speculative decoding ----

// A drafter (a small resident model, or prompt-lookup n-grams) and the lossless verification of its drafts.
typedef struct aero_spec aero_spec;

// How a drafted token is accepted. Only LOSSLESS is correct; the other exists so that tests can show their
// distribution check detects a wrong rule.
typedef enum {
    AERO_SPEC_RULE_LOSSLESS = 0,   // min(1, p/q), then the residual norm(max(0, p - q))
    AERO_SPEC_RULE_WRONG_RESAMPLE, // WRONG: after a rejection, draws from p itself instead of the residual
} aero_spec_rule;

// How a tree draft (tree_nodes > 0, model drafter) is grown.
typedef enum {
    AERO_SPEC_TREE_BEST_FIRST = 0, // up to tree_nodes nodes by drafter path probability; adaptive: the best prefix
    AERO_SPEC_TREE_COST,           // grown while a node's estimated acceptance (drafter probabilities calibrated by
                                   // measured acceptance per rank and probability) beats its measured marginal cost
                                   // (verify-cost curve t(k) and drafter calls); size and shape chosen per step
} aero_spec_tree_policy;

typedef struct {
    int draft_max;            // longest chain, deepest tree path (>= 1)
    int draft_min;            // p_min never stops a draft shorter than this; the adaptive length is at least this
    float p_min;              // stop drafting when the drafter's top probability (chain) or the best branch's path
                              // probability (tree) falls below this; 0: off
    int tree_nodes;           // > 0: draft a tree of up to this many nodes; 0: a chain
    bool adaptive;            // chain: choose the length from measured acceptance and pass costs (else draft_max);
                              // tree: verify the most promising prefix of the nodes by the same costs
    int ngram_min, ngram_max; // n-gram drafter: context suffix lengths tried, longest first (<= 0: 1 and 4)
    int n_batch;              // -b (<= 0: 512): the drafter context's compute tile, and the prompt's last chunk
                              // (1..n_batch tokens) that the first verify pass takes; the rest is prefilled in one pass
    aero_sampler_params sampling; // the target's sampling settings: drafts are drawn with the same temperature and
                                  // truncation (penalties aside) so they are accepted often; any choice is lossless
    aero_spec_rule rule;
    aero_spec_tree_policy tree_policy;
    // Cost model of the COST policy: false measures pass and drafter times while generating; true uses these,
    // in units of a one-token target pass, so the trees (and tokens per pass) do not depend on the machine's load
    bool cost_fixed;
    float cost_verify_token; // a target pass of k tokens costs 1 + cost_verify_token * (k - 1)
    float cost_draft_token;  // a drafter call costs this per token it is fed
    // A feature-level draft head (EAGLE-style GGUF, train/train_head.py) instead of a draft model: drafts from
    // the target's last hidden states, which every verify pass computes anyway; aero_spec_new's draft must be
    // NULL. Refused when the file was trained for another teacher. On a GPU context the hidden states are copied
    // back after each pass and the projection runs on the device.
    const char *draft_head;
} aero_spec_params;

typedef struct {
    uint64_t prefill_passes; // target passes over the prompt but its last chunk (0 or 1)
    uint64_t verify_passes;  // target passes that checked a draft (each yields >= 1 token)
    uint64_t drafted;        // tokens proposed (tree: nodes)
    uint64_t accepted;       // proposed tokens the target kept
    uint64_t generated;      // tokens produced by verify passes (accepted + one per pass)
    uint64_t draft_calls;    // drafter forward passes
    uint64_t verify_tokens;  // tokens fed to the target by verify passes (pending + drafted)
    double prefill_s, draft_s, verify_s, accept_s;
    double alpha;          // current acceptance-rate estimate (chain, adaptive)
    double pass_a, pass_b; // fitted target pass cost: a + b * tokens (seconds)
    double draft_call_s;   // mean drafter call time
    int draft_len;         // chain length (tree: nodes) chosen by the last step
    double tree_expected;  // COST policy: tokens the last tree was expected to yield (1 + its nodes' acceptance)
} aero_spec_stats;

void aero_spec_params_default(aero_spec_params *p);
// The bytes a draft head file's tensors take once loaded (resident: counted inside --mem), checking that the file
// is a draft head.
aero_status aero_spec_head_file_bytes(const char *path, uint64_t *bytes, aero_error *err);
// What a draft head takes beside its target for n_seq sequences drafting at most `nodes` tokens a step over a
// context of n_ctx tokens (as resolved: aero_mem_split.n_ctx), n_batch tokens a prefill pass (aero_spec_params's;
// <= 0: 512): *host, the bytes inside --mem (its weights and per
// sequence its cache cells, scratch and the decoder's feature rows); *vram, for a target on the GPU (gpu), the
// VRAM its layer takes there (weights, KV cells, one call's activations: aero_ctx_params.gpu_head_vram), 0 when
// its layer runs on the host (a CPU target, or AERO_DRAFT_HEAD_HOST=1).
aero_status aero_spec_head_mem(const char *path, int n_ctx, int n_seq, int nodes, int n_batch, bool gpu, uint64_t *host,
                               uint64_t *vram, aero_error *err);
// Whether draft can propose tokens for target: same tokenizer type, BOS/EOS, the same token string for every
// id both vocabularies hold, and sizes within 128 ids of each other. The error names the first differing id.
aero_status aero_spec_check_vocab(const aero_model *target, const aero_model *draft, aero_error *err);
// Creates a speculative decoder for sequence seq of target (whose context it uses, not owns). draft: a
// loaded drafter model (not owned; it gets its own context here), or NULL for prompt-lookup n-grams.
aero_status aero_spec_new(aero_spec **out, aero_ctx *target, int seq, aero_model *draft, const aero_spec_params *p,
                          aero_error *err);
void aero_spec_free(aero_spec *s);
// Starts generation after prompt (n >= 1 tokens): empties both caches and prefills the prompt but its last
// chunk of n_batch tokens or fewer in one pass (one read of a streamed target); the first step's pass verifies
// that chunk together with the first draft. n_predict: tokens the caller means to generate, for the drafter's
// context check (its training context must cover min(target context, n + n_predict)).
aero_status aero_spec_begin(aero_spec *s, const int32_t *prompt, int n, int n_predict, aero_error *err);
// One draft-and-verify round: writes 1..max_new tokens to out (*n_out), each also passed to
// aero_sampler_accept(smp). The caller has accepted the prompt tokens into smp. Greedy when smp is greedy.
// AERO_ERR_RANGE when the target context is full.
aero_status aero_spec_step(aero_spec *s, aero_sampler *smp, int max_new, int32_t *out, int *n_out, aero_error *err);
// Tokens committed so far (prompt + generated) and the target context size.
int aero_spec_n_tokens(const aero_spec *s);
// The most tokens one aero_spec_step can produce (the longest draft plus the target's own token).
int aero_spec_max_step_tokens(const aero_spec *s);
void aero_spec_get_stats(const aero_spec *s, aero_spec_stats *st);
// Times one target pass of n tokens appended after the committed ones, then removes them (for the speedup
// estimate in --stats and the verify-cost curve in bench). Needs n free context slots.
aero_status aero_spec_time_pass(aero_spec *s, int n, double *secs, aero_error *err);
// "chain (adaptive, <= 16)", "tree (64 nodes)", "n-gram chain (8)", ...
void aero_spec_describe(const aero_spec *s, char *buf, int cap);

// ---- the generation layer ----
// The one loop every caller goes through: prefill a prompt, sample, apply the stopping rules, make
// streaming-safe text. The rules: the end-of-generation token ends it and is never emitted; max_tokens counts
// emitted tokens; a full KV cache ends it; text is cut before a stop string; checked in that order.

typedef struct aero_generator aero_generator;
// Callbacks that replace a tokenizer (tests, fake models); built with the internal generate.h.
typedef struct aero_generator_vocab aero_generator_vocab;

typedef enum {
    AERO_END_NONE = 0,    // still generating
    AERO_END_EOG,         // the end-of-generation token was sampled
    AERO_END_STOP_STRING, // a stop string appeared
    AERO_END_MAX_TOKENS,  // max_tokens emitted
    AERO_END_CONTEXT,     // the KV cache of the sequence is full
    AERO_END_INTERRUPTED, // aero_generator_interrupt
} aero_end;

const char *aero_end_name(aero_end e); // "end of text", "stop string", "length", "context full", "interrupted"

typedef struct {
    aero_ctx *ctx;                     // the context aero_generator_step and aero_generator_prefill decode with; NULL
                                       // when the caller runs the forward passes (feed/advance)
    const aero_tokenizer *tok;         // end-of-generation tokens and text; or vocab
    const aero_generator_vocab *vocab; // used instead of tok when set (copied)
    int seq;                           // KV sequence
    int n_ctx, n_vocab;                // taken from ctx when it is set
    int n_batch;                       // most prompt tokens per forward pass; <= 0 (the default): the whole prompt in
                                       // one pass, one read of streamed weights. The pass holds n x n_embd floats
                                       // of activations (in real models several times less than the KV cache the
                                       // same n tokens take); set a limit where that is too much.
    int max_tokens;                    // tokens to emit at most; < 0: no limit
    bool ignore_eos;                   // the end-of-generation token is emitted like any other
    bool text_starts_document;         // the prompt is only BOS: the first piece of text starts the document
    const char *const *stop;           // stop strings (borrowed; empty ones ignored)
    int n_stop;
    const int32_t *bias_id; // logit bias (borrowed)
    const float *bias;
    int n_bias;
    aero_spec *spec; // speculative decoder over ctx (borrowed), or NULL; no logit bias with it
} aero_generator_params;

void aero_generator_params_default(aero_generator_params *p);
// smp is borrowed: the generation samples with it and accepts tokens into its history.
aero_status aero_generator_new(aero_generator **out, const aero_generator_params *p, aero_sampler *smp,
                               aero_error *err);
void aero_generator_free(aero_generator *g);
// Starts a generation after prompt (n >= 1 tokens, fewer than the context). With ctx, the KV entries of the
// sequence that equal a prefix of the prompt are kept (all but the prompt's last token) and the rest removed;
// only the tokens decoded anew are accepted into the sampler. With a drafter, this also checks the drafter
// against the request and prefills all but the prompt's last chunk.
aero_status aero_generator_begin(aero_generator *g, const int32_t *prompt, int n, aero_error *err);
// Decodes what remains of the prompt (needs ctx). When it is not called, the first step does it (or the first
// steps, one pass of n_batch tokens each, when n_batch is set).
aero_status aero_generator_prefill(aero_generator *g, aero_error *err);
// One forward pass of the sequence (needs ctx): the prompt (or its next n_batch tokens), or the next token;
// with a drafter, one draft-and-verify round. Afterwards the new tokens and text are available, and
// aero_generator_end tells whether the generation ended.
aero_status aero_generator_step(aero_generator *g, aero_error *err);
// Multi-sequence form. feed: adds what the sequence needs next to b (its last token, or a prompt chunk of at
// most room tokens); returns the number of tokens added (0 when it needs nothing). After aero_decode of the
// batch into logits (packed rows), advance reads the sequence's row, if any, and samples.
int aero_generator_feed(aero_generator *g, aero_batch_buf *b, int room);
void aero_generator_advance(aero_generator *g, const float *logits);
// Ends the generation now (a user's Ctrl-C), keeping the text so far with the detokenizer's tail.
void aero_generator_interrupt(aero_generator *g);
aero_end aero_generator_end(const aero_generator *g);
bool aero_generator_prefilling(const aero_generator *g); // prompt tokens remain to decode
int aero_generator_n_prompt(const aero_generator *g);
// Tells a generator with ctx that its sequence's cache already holds toks[0..n) (loaded from a saved prompt),
// so that the next begin reuses them as it reuses what an earlier generation left.
void aero_generator_set_history(aero_generator *g, const int32_t *toks, int n);
int aero_generator_n_reused(const aero_generator *g);    // prompt tokens found in the KV cache by begin
int aero_generator_n_generated(const aero_generator *g); // tokens emitted
// Tokens emitted by the last step/advance, and the logits row the last of them was sampled from.
const int32_t *aero_generator_new_tokens(const aero_generator *g, int *n);
const float *aero_generator_last_logits(const aero_generator *g);
// All text made so far (*len bytes, including text held back), and how many leading bytes of it may be shown:
// complete characters, never a stop string nor the start of one. At the end, the final length of the text.
const char *aero_generator_text(const aero_generator *g, size_t *len);
size_t aero_generator_visible(const aero_generator *g);

// ---- chat templates ----

typedef struct aero_chat_template aero_chat_template;
struct json_t; // jansson's value type: conversations are JSON, as in the OpenAI API

typedef struct {
    const struct json_t *messages; // array of {role, content, tool_calls?, tool_call_id?, name?...}
    const struct json_t *tools;    // NULL or array
    bool add_generation_prompt;
    const char *bos_token, *eos_token; // may be NULL -> ""
    const struct json_t *extra;        // NULL or object of extra variables (date_string, enable_thinking, ...)
} aero_chat_inputs;

// Picks the template of a conversation, the same rule for chat, template and serve: the file when given (a
// failure is an error), else the model's own (g may be NULL), else ChatML. *name is "file", "model" or "chatml
// fallback"; note (note_cap bytes) receives, when the fallback was taken, a sentence saying why (else "").
aero_status aero_chat_template_pick(aero_chat_template **out, const aero_gguf *g, const char *file, const char **name,
                                    char *note, size_t note_cap, aero_error *err);
void aero_chat_template_free(aero_chat_template *t);
// Renders to a malloc'ed NUL-terminated string. raise_exception() and runtime errors -> AERO_ERR_INVALID with
// message.
aero_status aero_chat_render(const aero_chat_template *t, const aero_chat_inputs *in, char **out, size_t *out_len,
                             aero_error *err);

// ---- the OpenAI-compatible server ----

typedef struct aero_server aero_server;

typedef struct {
    const char *host;       // default "127.0.0.1"
    int port;               // default 8080; 0 picks a free port (see aero_server_port)
    int parallel;           // sequences generated at once (default 4)
    int max_queue;          // requests waiting for a sequence before 503 (default 64)
    size_t max_body;        // request body limit in bytes before 413 (default 8 MiB)
    const char *api_key;    // NULL: no authentication; else "Authorization: Bearer KEY" required
    const char *alias;      // model id in the API (default: the model file's name)
    int timeout_s;          // limit in seconds on receiving a whole request, and on idle connections (default 600)
    int shutdown_timeout_s; // on stop, how long requests in flight may still run (default 30)
    const char *chat_template_file; // overrides the model's chat template
    aero_model_params model;        // path, memory budget, threads, prefetch
    int n_ctx;                      // KV capacity per sequence (<= 0: the model's, at most 4096)
    int n_batch;                    // the compute tile, tokens computed at once in a layer (default 512)
    bool kv_f32;
    aero_kv_type type_k, type_v;  // KV cache types (AERO_KV_DEFAULT: F16, or F32 with kv_f32); counted inside --mem
    int kv_recent;                // --kv-recent N: F16 copies of each query's last N positions (quantized cache)
    aero_sampler_params defaults; // sampling for fields a request leaves out
    bool quiet;                   // no per-request log lines
    const char *draft;            // --draft MODEL|ngram: every request that allows it drafts, and one pass verifies
                                  // every sequence's draft; NULL: no speculation. A drafter model is resident,
                                  // its weights counted inside --mem
    aero_spec_params spec;        // drafting settings (draft_max, tree_nodes, ...); sampling comes from each request
    int draft_threads;            // drafter compute threads (<= 0: as the model's)
    bool embeddings;              // --embeddings: /v1/embeddings answers (mean-pooled, normalized last hidden state)
    const char *slot_save_path;   // --slot-save-path DIR: POST /slots/ID?action=save|restore|erase (NULL: off)
    const char *files_dir;        // --files-dir DIR: /v1/files and the batches' output files live there and outlive
                                  // the server (NULL: a private temporary directory removed at stop)
    size_t max_file;              // upload limit of POST /v1/files in bytes (default 256 MiB)
} aero_server_params;

void aero_server_params_default(aero_server_params *p);
// Starts listening (/health answers 503 until the model is loaded). The parameters' strings must outlive it.
aero_status aero_server_start(aero_server **out, const aero_server_params *p, aero_error *err);
// The port actually bound (useful with port 0).
int aero_server_port(const aero_server *s);
// Loads the model, creates the context and starts the scheduler; afterwards /health answers 200.
aero_status aero_server_load(aero_server *s, aero_error *err);
// Stops accepting, ends running generations, frees everything.
void aero_server_stop(aero_server *s);

// ---- offline batch jobs (`aerollm batch`) ----
// The OpenAI Batch format: each input line {"custom_id", "method": "POST", "url": "/v1/chat/completions" or
// "/v1/completions", "body"}; each output line {"id", "custom_id", "response": {"status_code", "request_id",
// "body"}, "error"}, the body exactly what the server answers (its request parser, scheduler and response
// builders, in process). A line that is no request gets "response": null and an "error" naming the line (under
// custom_id "line-N" when it has no usable custom_id of its own, or repeats one).

typedef struct {
    const char *input;         // JSONL requests
    const char *output;        // JSONL answers, appended and flushed as each request ends
    bool resume;               // keep the output's complete lines and skip their custom_ids; without it an
                               // existing non-empty output is refused
    bool progress;             // a progress line on stderr (requests done, tokens/s, ETA)
    aero_server_params server; // model, context, cache types, sampling defaults, alias; parallel: sequences
                               // decoded together in each forward pass (the batch size)
} aero_batch_job_params;

typedef struct {
    int n_done;    // lines answered by this run (errors included)
    int n_errors;  // of them, answers that are not a 200 response
    int n_skipped; // requests skipped as already answered (resume)
    uint64_t prompt_tokens, completion_tokens;
    double seconds;
} aero_batch_job_stats;

void aero_batch_job_params_default(aero_batch_job_params *p);
// Runs the whole job; AERO_OK when every line was answered (bad lines included: they get error lines).
aero_status aero_batch_job_run(const aero_batch_job_params *p, aero_batch_job_stats *st, aero_error *err);

#ifdef __cplusplus
}
#endif

// ---- synthetic models ----
// A tool API (`aerollm synth`, tests): random-weight GGUF models of a real architecture and shape. Its header
// holds only its parameter and statistics structs and four functions, so it is public as it is.
#include "../src/synth/synth.h"

#endif
