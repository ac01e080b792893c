// The public face of the GGUF reader (include/aerollm.h): an opened file as an opaque handle, its metadata and
// tensor table read through functions, so that callers (aerollm info, repack, template) never depend on the
// layout of aero_gguf, aero_gguf_value or aero_tensor_info.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"

// Heap form of aero_gguf_open, for callers that only hold the opaque handle.
aero_status aero_gguf_load(aero_gguf **out, const char *path, aero_error *err) {
    *out = NULL;
    aero_gguf *g = calloc(1, sizeof *g);
    if (!g) return aero_fail(err, AERO_ERR_NOMEM, "%s: out of memory", path);
    aero_status st = aero_gguf_open(g, path, err);
    if (st) {
        free(g);
        return st;
    }
    *out = g;
    return AERO_OK;
}

// Frees what aero_gguf_load made (NULL is fine).
void aero_gguf_close(aero_gguf *g) {
    if (!g) return;
    aero_gguf_free(g);
    free(g);
}

// File-level facts `aerollm info` prints.
uint32_t aero_gguf_version(const aero_gguf *g) { return g->version; }
uint64_t aero_gguf_alignment(const aero_gguf *g) { return g->alignment; }
uint32_t aero_gguf_n_files(const aero_gguf *g) { return g->n_files; }
// Paths and sizes of the (split) files, NULL / 0 out of range.
const char *aero_gguf_file_path(const aero_gguf *g, uint32_t file) {
    return file < g->n_files ? g->files[file].path : NULL;
}
uint64_t aero_gguf_file_size(const aero_gguf *g, uint32_t file) { return file < g->n_files ? g->files[file].size : 0; }

// Metadata iteration in file order (NULL out of range).
uint64_t aero_gguf_n_kv(const aero_gguf *g) { return g->n_kv; }
const char *aero_gguf_kv_key(const aero_gguf *g, uint64_t i) { return i < g->n_kv ? g->kv[i].key.ptr : NULL; }
const aero_gguf_value *aero_gguf_kv_value(const aero_gguf *g, uint64_t i) {
    return i < g->n_kv ? &g->kv[i].value : NULL;
}

// Reading a value without its union: the type, then the member that type fills.
aero_gguf_type aero_gguf_value_type(const aero_gguf_value *v) { return v->type; }

// The kinds of scalar type, for picking the union member a value's type fills.
static bool is_signed(aero_gguf_type t) {
    return t == AERO_GGUF_INT8 || t == AERO_GGUF_INT16 || t == AERO_GGUF_INT32 || t == AERO_GGUF_INT64;
}
static bool is_unsigned(aero_gguf_type t) {
    return t == AERO_GGUF_UINT8 || t == AERO_GGUF_UINT16 || t == AERO_GGUF_UINT32 || t == AERO_GGUF_UINT64 ||
           t == AERO_GGUF_BOOL;
}
static bool is_float(aero_gguf_type t) { return t == AERO_GGUF_FLOAT32 || t == AERO_GGUF_FLOAT64; }

// Scalars as the widest member of their kind; 0 for any other kind, so a wrong guess reads as zero, not garbage.
uint64_t aero_gguf_value_u64(const aero_gguf_value *v) { return is_unsigned(v->type) ? v->u64 : 0; }
int64_t aero_gguf_value_i64(const aero_gguf_value *v) { return is_signed(v->type) ? v->i64 : 0; }
double aero_gguf_value_f64(const aero_gguf_value *v) { return is_float(v->type) ? v->f64 : 0; }
const char *aero_gguf_value_str(const aero_gguf_value *v, uint64_t *len) {
    if (v->type != AERO_GGUF_STRING) return NULL;
    if (len) *len = v->str.len;
    return v->str.ptr;
}

// Arrays: element type, length, and the nested arrays of an array of arrays.
aero_gguf_type aero_gguf_value_arr_type(const aero_gguf_value *v) {
    return v->type == AERO_GGUF_ARRAY ? v->arr.elem : AERO_GGUF_TYPE_COUNT;
}
uint64_t aero_gguf_value_arr_n(const aero_gguf_value *v) { return v->type == AERO_GGUF_ARRAY ? v->arr.n : 0; }
const aero_gguf_value *aero_gguf_value_arr_at(const aero_gguf_value *v, uint64_t i) {
    if (v->type != AERO_GGUF_ARRAY || v->arr.elem != AERO_GGUF_ARRAY || i >= v->arr.n) return NULL;
    return &((const aero_gguf_value *)v->arr.data)[i];
}

// Unsigned elements above INT64_MAX (UINT64 arrays) that aero_gguf_arr_i64 cannot represent.
bool aero_gguf_arr_u64(const aero_gguf_value *v, uint64_t i, uint64_t *out) {
    if (!v || v->type != AERO_GGUF_ARRAY || i >= v->arr.n) return false;
    if (v->arr.elem == AERO_GGUF_UINT64) {
        memcpy(out, (const uint8_t *)v->arr.data + i * sizeof(uint64_t), sizeof(uint64_t));
        return true;
    }
    int64_t x;
    if (!aero_gguf_arr_i64(v, i, &x) || x < 0) return false;
    *out = (uint64_t)x;
    return true;
}

// String elements without exposing aero_gguf_str.
const char *aero_gguf_arr_string(const aero_gguf_value *v, uint64_t i, uint64_t *len) {
    const aero_gguf_str *s = aero_gguf_arr_str(v, i);
    if (!s) return NULL;
    if (len) *len = s->len;
    return s->ptr;
}

// The tensor table by index (callers check i < aero_gguf_n_tensors).
uint64_t aero_gguf_n_tensors(const aero_gguf *g) { return g->n_tensors; }
const char *aero_gguf_tensor_name(const aero_gguf *g, uint64_t i) { return g->tensors[i].name; }
uint32_t aero_gguf_tensor_type(const aero_gguf *g, uint64_t i) { return (uint32_t)g->tensors[i].type; }
uint32_t aero_gguf_tensor_n_dims(const aero_gguf *g, uint64_t i) { return g->tensors[i].n_dims; }
const uint64_t *aero_gguf_tensor_shape(const aero_gguf *g, uint64_t i) { return g->tensors[i].ne; }
uint64_t aero_gguf_tensor_n_elements(const aero_gguf *g, uint64_t i) { return g->tensors[i].n_elements; }
uint32_t aero_gguf_tensor_file(const aero_gguf *g, uint64_t i) { return g->tensors[i].file; }
uint64_t aero_gguf_tensor_offset(const aero_gguf *g, uint64_t i) { return g->tensors[i].offset; }
uint64_t aero_gguf_tensor_nbytes(const aero_gguf *g, uint64_t i) { return g->tensors[i].nbytes; }

// The layer count key of a model file, looked up one way for info and repack.
bool aero_gguf_block_count(const aero_gguf *g, int64_t *n_layer) {
    const char *arch = aero_gguf_get_str(g, "general.architecture");
    char key[160];
    snprintf(key, sizeof key, "%s.block_count", arch ? arch : "llama");
    return aero_gguf_get_i64(g, key, n_layer);
}
