// GGUF (v2, v3) reader and writer. The reader validates every count, length, offset and shape against the
// file size and for overflow, and produces a tensor table; it never maps or reads tensor data.
#ifndef AERO_FORMAT_GGUF_H
#define AERO_FORMAT_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/dtype.h"
#include "../core/status.h"

#include "../../include/aerollm.h" // aero_gguf_type, aero_gguf_fill_rows_fn

#define AERO_GGUF_MAX_DIMS 4
#define AERO_GGUF_DEFAULT_ALIGNMENT 32

typedef struct {
    uint64_t len;
    char *ptr; // NUL-terminated copy (may contain interior NULs; use len)
} aero_gguf_str;

typedef struct aero_gguf_value aero_gguf_value;
struct aero_gguf_value {
    aero_gguf_type type;
    union {
        uint64_t u64; // UINT8..UINT64, BOOL
        int64_t i64;  // INT8..INT64
        double f64;   // FLOAT32, FLOAT64
        aero_gguf_str str;
        struct {
            aero_gguf_type elem;
            uint64_t n;
            // elem scalar: packed little-endian elements of the file's width (n * width bytes);
            // elem STRING: aero_gguf_str[n]; elem ARRAY: aero_gguf_value[n] (each of type ARRAY)
            void *data;
        } arr;
    };
};

typedef struct {
    aero_gguf_str key;
    aero_gguf_value value;
} aero_gguf_kv;

typedef struct {
    char *name;
    aero_dtype type;
    uint32_t n_dims;
    uint64_t ne[AERO_GGUF_MAX_DIMS]; // ne[0] = elements per row (contiguous), unused dims = 1
    uint64_t n_elements;
    uint32_t file;   // index into aero_gguf.files (split models)
    uint64_t offset; // absolute byte offset of the data in that file
    uint64_t nbytes;
} aero_tensor_info;

typedef struct {
    char *path;
    uint64_t size;
    uint64_t data_offset; // where the tensor data section starts
} aero_gguf_file;

typedef struct aero_gguf {
    uint32_t version; // of the first file
    uint64_t alignment;
    uint64_t n_kv;
    aero_gguf_kv *kv; // of the first file (split files repeat/extend metadata; first wins)
    uint64_t n_tensors;
    aero_tensor_info *tensors; // across all split files, in file order
    uint32_t n_files;
    aero_gguf_file *files;
    int owned_fd; // > 0: an open descriptor one of the files lives behind (an HF directory's side file), closed at free
} aero_gguf;

// Parses path (and, when it is named *-00001-of-0000N.gguf, its siblings) into g. On error g is left
// freed/zeroed and err names the file, the field and the byte offset.
aero_status aero_gguf_open(aero_gguf *g, const char *path, aero_error *err);
// Parses a GGUF image held in memory (fuzzers, tests). Tensor data must lie within the buffer.
aero_status aero_gguf_parse_buffer(aero_gguf *g, const void *buf, size_t len, const char *name, aero_error *err);
void aero_gguf_free(aero_gguf *g);

const char *aero_gguf_type_name(aero_gguf_type t);
size_t aero_gguf_type_size(aero_gguf_type t); // width of a scalar type; 0 for STRING/ARRAY

// Lookups; NULL / false when absent or of an incompatible type.
const aero_gguf_value *aero_gguf_get(const aero_gguf *g, const char *key);
const aero_tensor_info *aero_gguf_tensor(const aero_gguf *g, const char *name);
int64_t aero_gguf_tensor_index(const aero_gguf *g, const char *name);
const char *aero_gguf_get_str(const aero_gguf *g, const char *key);
// Integer/float/bool getters accept any scalar numeric type that represents the value exactly.
bool aero_gguf_get_u64(const aero_gguf *g, const char *key, uint64_t *out);
bool aero_gguf_get_i64(const aero_gguf *g, const char *key, int64_t *out);
bool aero_gguf_get_f64(const aero_gguf *g, const char *key, double *out);
bool aero_gguf_get_bool(const aero_gguf *g, const char *key, bool *out);
// Array element access: scalar element i of an array value as integer/float; string element i.
bool aero_gguf_arr_i64(const aero_gguf_value *v, uint64_t i, int64_t *out);
bool aero_gguf_arr_f64(const aero_gguf_value *v, uint64_t i, double *out);
const aero_gguf_str *aero_gguf_arr_str(const aero_gguf_value *v, uint64_t i);
// The layer a tensor belongs to: N for a name "blk.N.<anything>" (N decimal digits, below 2^31), else -1. The one
// place the naming rule lives, for the streamer's units, `aerollm info` and `aerollm repack`.
int aero_gguf_tensor_layer(const char *name);

// ---- writer ----
typedef struct aero_gguf_writer aero_gguf_writer;

// Produces a tensor's bytes on demand so that large synthetic models need not sit in memory.
// Writes exactly nbytes into dst (called with dst sized nbytes); returns false on failure.
typedef bool (*aero_gguf_fill_fn)(void *ctx, void *dst, uint64_t nbytes, aero_error *err);

// Produces rows [row0, row0 + n_rows) of a tensor (each aero_dtype_row_bytes(type, ne[0]) bytes, a row being
// ne[0] elements) into dst, so that a tensor larger than memory is written in pieces of a few MiB. Called in
// increasing row order; returns false (with err set) on failure.
typedef bool (*aero_gguf_fill_rows_fn)(void *ctx, void *dst, uint64_t row0, uint64_t n_rows, aero_error *err);

// alignment: 0 = default 32; another power of two is recorded as general.alignment (setting that key later
// also changes the alignment). Returns NULL only when out of memory.
aero_gguf_writer *aero_gguf_writer_new(uint64_t alignment);
void aero_gguf_writer_free(aero_gguf_writer *w);
// Metadata setters copy their arguments. Setting an existing key replaces it. An invalid value (unknown type,
// bool not 0/1, arrays nested deeper than the reader accepts, empty key) makes aero_gguf_write fail naming it.
void aero_gguf_set_u32(aero_gguf_writer *w, const char *key, uint32_t v);
void aero_gguf_set_i32(aero_gguf_writer *w, const char *key, int32_t v);
void aero_gguf_set_u64(aero_gguf_writer *w, const char *key, uint64_t v);
void aero_gguf_set_f32(aero_gguf_writer *w, const char *key, float v);
void aero_gguf_set_bool(aero_gguf_writer *w, const char *key, bool v);
void aero_gguf_set_str(aero_gguf_writer *w, const char *key, const char *v);
// Any value, including nested arrays (deep-copied).
void aero_gguf_set_value(aero_gguf_writer *w, const char *key, const aero_gguf_value *v);
// Removes a key set earlier; nothing when it is absent.
void aero_gguf_unset(aero_gguf_writer *w, const char *key);
// Array of scalars of type elem (packed elements), or of strings.
void aero_gguf_set_arr(aero_gguf_writer *w, const char *key, aero_gguf_type elem, const void *data, uint64_t n);
void aero_gguf_set_arr_str(aero_gguf_writer *w, const char *key, const char *const *strs, uint64_t n);
// Tensor with bytes copied now, or produced by fill() at write time. ne[0] is the row length.
aero_status aero_gguf_add_tensor(aero_gguf_writer *w, const char *name, aero_dtype type, uint32_t n_dims,
                                 const uint64_t *ne, const void *data, aero_error *err);
aero_status aero_gguf_add_tensor_fill(aero_gguf_writer *w, const char *name, aero_dtype type, uint32_t n_dims,
                                      const uint64_t *ne, aero_gguf_fill_fn fill, void *ctx, aero_error *err);
aero_status aero_gguf_add_tensor_rows(aero_gguf_writer *w, const char *name, aero_dtype type, uint32_t n_dims,
                                      const uint64_t *ne, aero_gguf_fill_rows_fn fill, void *ctx, aero_error *err);
// Optional progress callback during write (bytes written so far, total).
void aero_gguf_writer_progress(aero_gguf_writer *w, void (*fn)(void *ctx, uint64_t done, uint64_t total), void *ctx);
// Writes GGUF v3 to path via path.tmp.<pid>, fsync and rename; nothing is left at path (nor the temporary file)
// on failure, including a producer that fails. May be called again (the writer is not consumed).
aero_status aero_gguf_write(aero_gguf_writer *w, const char *path, aero_error *err);

#endif
