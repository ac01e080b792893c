// GGUF reader: parses header, metadata and tensor infos, checking every count, length, offset and shape
// against the file size and for overflow, so that a corrupt file is an error that names the field and offset.
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"

#define GGUF_MAX_DEPTH 8   // nested arrays deeper than this are refused
#define GGUF_MAX_NAME 4096 // longest tensor name accepted
#define RD_CACHE (1u << 20)

// A bounded cursor over a file (pread through a cache) or a memory buffer.
typedef struct {
    int fd;
    const uint8_t *buf;
    uint64_t size;
    uint64_t pos;
    const char *name;
    uint8_t *cache;
    uint64_t cache_off;
    size_t cache_len;
} reader;

// A field for error messages, formatted only when an error happens (vocabularies have 100k+ strings):
// base [" element " index] tail tail2, e.g. "metadata 'tokenizer.ggml.tokens' element 7 length".
#define NO_INDEX UINT64_MAX
typedef struct {
    const char *base;
    const char *sep; // between base and index: " element " or " "
    uint64_t index;
    const char *tail, *tail2;
} fld;
#define FLD(base, tail) (&(fld){(base), "", NO_INDEX, (tail), ""})

static const char *fld_text(const fld *f, char *buf, size_t cap) {
    if (f->index == NO_INDEX) snprintf(buf, cap, "%s%s%s", f->base, f->tail, f->tail2);
    else snprintf(buf, cap, "%s%s%llu%s%s", f->base, f->sep, (unsigned long long)f->index, f->tail, f->tail2);
    return buf;
}

static const char *fmt_base(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static const char *fmt_base(char *buf, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    return buf;
}

static uint64_t rd_left(const reader *r) { return r->pos <= r->size ? r->size - r->pos : 0; }

// Copies n bytes at the cursor, failing (with the field name and offset) when the file ends first.
static aero_status rd_bytes(reader *r, void *dst, uint64_t n, const fld *field, aero_error *err) {
    char text[256];
    if (n > rd_left(r))
        return aero_fail(err, AERO_ERR_FORMAT, "%s: %s at offset %llu: needs %llu bytes, file ends at %llu", r->name,
                         fld_text(field, text, sizeof text), (unsigned long long)r->pos, (unsigned long long)n,
                         (unsigned long long)r->size);
    if (r->buf) {
        if (n) memcpy(dst, r->buf + r->pos, n);
        r->pos += n;
        return AERO_OK;
    }
    uint8_t *out = dst;
    while (n > 0) {
        if (r->pos < r->cache_off || r->pos >= r->cache_off + r->cache_len) {
            ssize_t got = pread(r->fd, r->cache, RD_CACHE, (off_t)r->pos);
            if (got <= 0)
                return aero_fail(err, AERO_ERR_IO, "%s: reading %s at offset %llu: %s", r->name,
                                 fld_text(field, text, sizeof text), (unsigned long long)r->pos,
                                 got < 0 ? strerror(errno) : "unexpected end of file");
            r->cache_off = r->pos;
            r->cache_len = (size_t)got;
        }
        size_t at = (size_t)(r->pos - r->cache_off);
        size_t take = r->cache_len - at;
        if (take > n) take = (size_t)n;
        memcpy(out, r->cache + at, take);
        out += take;
        r->pos += take;
        n -= take;
    }
    return AERO_OK;
}

static aero_status rd_u32(reader *r, uint32_t *v, const fld *field, aero_error *err) {
    return rd_bytes(r, v, 4, field, err);
}
static aero_status rd_u64(reader *r, uint64_t *v, const fld *field, aero_error *err) {
    return rd_bytes(r, v, 8, field, err);
}

// Reads a GGUF string (u64 length + bytes) into a NUL-terminated heap copy.
static aero_status rd_str(reader *r, aero_gguf_str *s, fld field, aero_error *err) {
    uint64_t at = r->pos;
    char text[256];
    fld len_field = field;
    len_field.tail2 = " length";
    if (rd_u64(r, &s->len, &len_field, err)) return err->code;
    if (s->len > rd_left(r))
        return aero_fail(err, AERO_ERR_FORMAT, "%s: %s at offset %llu: string length %llu past end of file (size %llu)",
                         r->name, fld_text(&field, text, sizeof text), (unsigned long long)at,
                         (unsigned long long)s->len, (unsigned long long)r->size);
    s->ptr = malloc(s->len + 1);
    if (!s->ptr)
        return aero_fail(err, AERO_ERR_NOMEM, "%s: %s: out of memory", r->name, fld_text(&field, text, sizeof text));
    if (rd_bytes(r, s->ptr, s->len, &field, err)) {
        free(s->ptr);
        s->ptr = NULL;
        return err->code;
    }
    s->ptr[s->len] = 0;
    return AERO_OK;
}

static const char *type_names[AERO_GGUF_TYPE_COUNT] = {
    "uint8", "int8",   "uint16", "int16",  "uint32", "int32",   "float32",
    "bool",  "string", "array",  "uint64", "int64",  "float64",
};
static const uint8_t type_sizes[AERO_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *aero_gguf_type_name(aero_gguf_type t) {
    return (unsigned)t < AERO_GGUF_TYPE_COUNT ? type_names[t] : "invalid";
}

size_t aero_gguf_type_size(aero_gguf_type t) { return (unsigned)t < AERO_GGUF_TYPE_COUNT ? type_sizes[t] : 0; }

// Frees what a value owns (strings, array storage, nested arrays).
static void value_free(aero_gguf_value *v) {
    if (v->type == AERO_GGUF_STRING) {
        free(v->str.ptr);
    } else if (v->type == AERO_GGUF_ARRAY && v->arr.data) {
        if (v->arr.elem == AERO_GGUF_STRING) {
            aero_gguf_str *s = v->arr.data;
            for (uint64_t i = 0; i < v->arr.n; i++) free(s[i].ptr);
        } else if (v->arr.elem == AERO_GGUF_ARRAY) {
            aero_gguf_value *a = v->arr.data;
            for (uint64_t i = 0; i < v->arr.n; i++) value_free(&a[i]);
        }
        free(v->arr.data);
    }
    memset(v, 0, sizeof *v);
}

// Decodes a scalar of the given type from its little-endian bytes into the value union.
static void scalar_set(aero_gguf_value *v, aero_gguf_type t, const uint8_t *p) {
    v->type = t;
    switch (t) {
    case AERO_GGUF_UINT8: v->u64 = p[0]; break;
    case AERO_GGUF_BOOL: v->u64 = p[0] != 0; break;
    case AERO_GGUF_INT8: v->i64 = (int8_t)p[0]; break;
    case AERO_GGUF_UINT16: {
        uint16_t x;
        memcpy(&x, p, 2);
        v->u64 = x;
        break;
    }
    case AERO_GGUF_INT16: {
        int16_t x;
        memcpy(&x, p, 2);
        v->i64 = x;
        break;
    }
    case AERO_GGUF_UINT32: {
        uint32_t x;
        memcpy(&x, p, 4);
        v->u64 = x;
        break;
    }
    case AERO_GGUF_INT32: {
        int32_t x;
        memcpy(&x, p, 4);
        v->i64 = x;
        break;
    }
    case AERO_GGUF_FLOAT32: {
        float x;
        memcpy(&x, p, 4);
        v->f64 = x;
        break;
    }
    case AERO_GGUF_UINT64: {
        uint64_t x;
        memcpy(&x, p, 8);
        v->u64 = x;
        break;
    }
    case AERO_GGUF_INT64: {
        int64_t x;
        memcpy(&x, p, 8);
        v->i64 = x;
        break;
    }
    case AERO_GGUF_FLOAT64: {
        double x;
        memcpy(&x, p, 8);
        v->f64 = x;
        break;
    }
    default: break;
    }
}

static aero_status rd_value(reader *r, aero_gguf_value *v, aero_gguf_type type, int depth, const char *what,
                            aero_error *err);

// Reads an array body (element type, count, elements), bounding the count by the bytes left in the file.
// `what` names the value for messages ("metadata 'k'", "metadata 'k' element 3").
static aero_status rd_array(reader *r, aero_gguf_value *v, int depth, const char *what, aero_error *err) {
    uint64_t at = r->pos;
    uint32_t elem;
    v->type = AERO_GGUF_ARRAY;
    if (depth >= GGUF_MAX_DEPTH)
        return aero_fail(err, AERO_ERR_FORMAT, "%s: %s at offset %llu: arrays nested deeper than %d", r->name, what,
                         (unsigned long long)at, GGUF_MAX_DEPTH);
    if (rd_u32(r, &elem, FLD(what, " array element type"), err)) return err->code;
    if (elem >= AERO_GGUF_TYPE_COUNT)
        return aero_fail(err, AERO_ERR_FORMAT, "%s: %s at offset %llu: unknown array element type %u", r->name, what,
                         (unsigned long long)at, elem);
    v->arr.elem = (aero_gguf_type)elem;
    uint64_t n;
    if (rd_u64(r, &n, FLD(what, " array length"), err)) return err->code;
    uint64_t min_elem = elem == AERO_GGUF_STRING ? 8 : elem == AERO_GGUF_ARRAY ? 12 : type_sizes[elem];
    if (n > rd_left(r) / min_elem)
        return aero_fail(err, AERO_ERR_FORMAT,
                         "%s: %s at offset %llu: array of %llu %s elements past end of file (size %llu)", r->name, what,
                         (unsigned long long)at, (unsigned long long)n, type_names[elem], (unsigned long long)r->size);
    if (n == 0) return AERO_OK;
    if (elem != AERO_GGUF_STRING && elem != AERO_GGUF_ARRAY) {
        v->arr.data = malloc(n * min_elem);
        if (!v->arr.data) return aero_fail(err, AERO_ERR_NOMEM, "%s: %s: out of memory", r->name, what);
        v->arr.n = n;
        if (rd_bytes(r, v->arr.data, n * min_elem, FLD(what, " array data"), err)) return err->code;
        if (elem == AERO_GGUF_BOOL) {
            uint8_t *b = v->arr.data;
            for (uint64_t i = 0; i < n; i++)
                if (b[i] > 1)
                    return aero_fail(err, AERO_ERR_FORMAT,
                                     "%s: %s at offset %llu: bool element %llu has value %u "
                                     "(not 0 or 1)",
                                     r->name, what, (unsigned long long)at, (unsigned long long)i, b[i]);
        }
        return AERO_OK;
    }
    size_t each = elem == AERO_GGUF_STRING ? sizeof(aero_gguf_str) : sizeof(aero_gguf_value);
    v->arr.data = calloc(n, each);
    if (!v->arr.data) return aero_fail(err, AERO_ERR_NOMEM, "%s: %s: out of memory", r->name, what);
    for (uint64_t i = 0; i < n; i++) {
        v->arr.n = i + 1; // so that value_free releases what was read so far
        aero_status s;
        if (elem == AERO_GGUF_STRING) {
            s = rd_str(r, &((aero_gguf_str *)v->arr.data)[i], (fld){what, " element ", i, "", ""}, err);
        } else {
            char sub[256];
            fmt_base(sub, sizeof sub, "%s element %llu", what, (unsigned long long)i);
            s = rd_value(r, &((aero_gguf_value *)v->arr.data)[i], AERO_GGUF_ARRAY, depth + 1, sub, err);
        }
        if (s) return s;
    }
    return AERO_OK;
}

// Reads one metadata value of a known type.
static aero_status rd_value(reader *r, aero_gguf_value *v, aero_gguf_type type, int depth, const char *what,
                            aero_error *err) {
    if (type == AERO_GGUF_STRING) {
        v->type = AERO_GGUF_STRING;
        return rd_str(r, &v->str, (fld){what, "", NO_INDEX, " string value", ""}, err);
    }
    if (type == AERO_GGUF_ARRAY) return rd_array(r, v, depth, what, err);
    uint8_t raw[8];
    uint64_t at = r->pos;
    if (rd_bytes(r, raw, type_sizes[type], &(fld){what, "", NO_INDEX, " value of type ", type_names[type]}, err))
        return err->code;
    if (type == AERO_GGUF_BOOL && raw[0] > 1)
        return aero_fail(err, AERO_ERR_FORMAT, "%s: %s at offset %llu: bool has value %u (not 0 or 1)", r->name, what,
                         (unsigned long long)at, raw[0]);
    scalar_set(v, type, raw);
    return AERO_OK;
}

void aero_gguf_free(aero_gguf *g) {
    if (!g) return;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        free(g->kv[i].key.ptr);
        value_free(&g->kv[i].value);
    }
    free(g->kv);
    for (uint64_t i = 0; i < g->n_tensors; i++) free(g->tensors[i].name);
    free(g->tensors);
    for (uint32_t i = 0; i < g->n_files; i++) free(g->files[i].path);
    free(g->files);
    if (g->owned_fd > 0) close(g->owned_fd);
    memset(g, 0, sizeof *g);
}

static int cmp_tensor_name(const void *a, const void *b) {
    const aero_tensor_info *x = *(aero_tensor_info *const *)a, *y = *(aero_tensor_info *const *)b;
    return strcmp(x->name, y->name);
}

static int cmp_tensor_offset(const void *a, const void *b) {
    const aero_tensor_info *x = *(aero_tensor_info *const *)a, *y = *(aero_tensor_info *const *)b;
    if (x->file != y->file) return x->file < y->file ? -1 : 1;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int cmp_kv_key(const void *a, const void *b) {
    const aero_gguf_kv *x = *(aero_gguf_kv *const *)a, *y = *(aero_gguf_kv *const *)b;
    return strcmp(x->key.ptr, y->key.ptr);
}

// Refuses duplicate metadata keys (sorted, so a file with many keys is not a quadratic scan).
static aero_status check_keys(aero_gguf *g, aero_error *err) {
    if (g->n_kv < 2) return AERO_OK;
    aero_gguf_kv **idx = malloc(g->n_kv * sizeof *idx);
    if (!idx) return aero_fail(err, AERO_ERR_NOMEM, "metadata table: out of memory");
    for (uint64_t i = 0; i < g->n_kv; i++) idx[i] = &g->kv[i];
    qsort(idx, g->n_kv, sizeof *idx, cmp_kv_key);
    aero_status s = AERO_OK;
    for (uint64_t i = 1; i < g->n_kv && !s; i++)
        if (!strcmp(idx[i - 1]->key.ptr, idx[i]->key.ptr))
            s = aero_fail(err, AERO_ERR_FORMAT, "%s: duplicate metadata key '%s'", g->files[0].path, idx[i]->key.ptr);
    free(idx);
    return s;
}

// Refuses duplicate names and overlapping data ranges across the whole tensor table.
static aero_status check_table(aero_gguf *g, aero_error *err) {
    if (g->n_tensors < 2) return AERO_OK;
    aero_tensor_info **idx = malloc(g->n_tensors * sizeof *idx);
    if (!idx) return aero_fail(err, AERO_ERR_NOMEM, "tensor table: out of memory");
    for (uint64_t i = 0; i < g->n_tensors; i++) idx[i] = &g->tensors[i];
    qsort(idx, g->n_tensors, sizeof *idx, cmp_tensor_name);
    for (uint64_t i = 1; i < g->n_tensors; i++)
        if (!strcmp(idx[i - 1]->name, idx[i]->name)) {
            aero_fail(err, AERO_ERR_FORMAT, "%s: duplicate tensor name '%s'", g->files[idx[i]->file].path,
                      idx[i]->name);
            goto fail;
        }
    qsort(idx, g->n_tensors, sizeof *idx, cmp_tensor_offset);
    for (uint64_t i = 1; i < g->n_tensors; i++) {
        const aero_tensor_info *a = idx[i - 1], *b = idx[i];
        if (a->file == b->file && a->offset + a->nbytes > b->offset) {
            aero_fail(err, AERO_ERR_FORMAT, "%s: tensor '%s' data [%llu, %llu) overlaps tensor '%s' at %llu",
                      g->files[a->file].path, a->name, (unsigned long long)a->offset,
                      (unsigned long long)(a->offset + a->nbytes), b->name, (unsigned long long)b->offset);
            goto fail;
        }
    }
    free(idx);
    return AERO_OK;
fail:
    free(idx);
    return err->code;
}

// Reads one tensor info record and validates type, shape, size and alignment (data range checked later).
static aero_status rd_tensor_info(reader *r, aero_tensor_info *t, uint64_t index, uint64_t alignment, aero_error *err) {
    uint64_t at = r->pos;
    aero_gguf_str name = {0};
    char base[GGUF_MAX_NAME + 64];
    if (rd_str(r, &name, (fld){"tensor", " ", index, " name", ""}, err)) return err->code;
    t->name = name.ptr;
    if (name.len == 0 || name.len > GGUF_MAX_NAME || strlen(name.ptr) != name.len)
        return aero_fail(err, AERO_ERR_FORMAT, "%s: tensor %llu at offset %llu: invalid name (length %llu%s)", r->name,
                         (unsigned long long)index, (unsigned long long)at, (unsigned long long)name.len,
                         name.len && strlen(name.ptr) != name.len ? ", contains NUL" : "");
    uint64_t dims_at = r->pos;
    fmt_base(base, sizeof base, "tensor '%s'", t->name);
    if (rd_u32(r, &t->n_dims, FLD(base, " n_dims"), err)) return err->code;
    if (t->n_dims < 1 || t->n_dims > AERO_GGUF_MAX_DIMS)
        return aero_fail(err, AERO_ERR_FORMAT, "%s: tensor '%s' n_dims at offset %llu: %u not in [1, %d]", r->name,
                         t->name, (unsigned long long)dims_at, t->n_dims, AERO_GGUF_MAX_DIMS);
    for (int d = 0; d < AERO_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    uint64_t n = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t dim_at = r->pos;
        static const char *const dim_names[AERO_GGUF_MAX_DIMS] = {" dimension 0", " dimension 1", " dimension 2",
                                                                  " dimension 3"};
        if (rd_u64(r, &t->ne[d], FLD(base, dim_names[d]), err)) return err->code;
        if (t->ne[d] == 0)
            return aero_fail(err, AERO_ERR_FORMAT, "%s: tensor '%s' dimension %u at offset %llu is 0", r->name, t->name,
                             d, (unsigned long long)dim_at);
        if (t->ne[d] > (uint64_t)INT64_MAX || n > (uint64_t)INT64_MAX / t->ne[d])
            return aero_fail(err, AERO_ERR_FORMAT,
                             "%s: tensor '%s' dimension %u at offset %llu: %llu makes the "
                             "element count overflow",
                             r->name, t->name, d, (unsigned long long)dim_at, (unsigned long long)t->ne[d]);
        n *= t->ne[d];
    }
    t->n_elements = n;
    uint32_t type;
    uint64_t type_at = r->pos;
    if (rd_u32(r, &type, FLD(base, " type"), err)) return err->code;
    const aero_dtype_info *di = aero_dtype_get(type);
    if (!di)
        return aero_fail(err, AERO_ERR_FORMAT, "%s: tensor '%s' type at offset %llu: unknown tensor type %u", r->name,
                         t->name, (unsigned long long)type_at, type);
    t->type = (aero_dtype)type;
    if (t->ne[0] % di->block)
        return aero_fail(err, AERO_ERR_FORMAT,
                         "%s: tensor '%s': row length %llu is not a multiple of the %s block "
                         "size %u",
                         r->name, t->name, (unsigned long long)t->ne[0], di->name, di->block);
    uint64_t blocks = n / di->block;
    if (blocks > (uint64_t)INT64_MAX / di->block_bytes)
        return aero_fail(err, AERO_ERR_FORMAT, "%s: tensor '%s': byte size of %llu %s elements overflows", r->name,
                         t->name, (unsigned long long)n, di->name);
    t->nbytes = blocks * di->block_bytes;
    uint64_t off_at = r->pos;
    if (rd_u64(r, &t->offset, FLD(base, " offset"), err)) return err->code;
    if (t->offset % alignment)
        return aero_fail(err, AERO_ERR_FORMAT,
                         "%s: tensor '%s' offset at offset %llu: data offset %llu is not a "
                         "multiple of the alignment %llu",
                         r->name, t->name, (unsigned long long)off_at, (unsigned long long)t->offset,
                         (unsigned long long)alignment);
    return AERO_OK;
}

// Grows an array of `each`-byte items to hold at least `need`, doubling, so that memory follows what the file
// actually contains rather than the counts its header claims.
static bool grow(void **p, uint64_t *cap, uint64_t need, size_t each) {
    if (need <= *cap) return true;
    uint64_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * each);
    if (!q) return false;
    memset((char *)q + *cap * each, 0, (c - *cap) * each);
    *p = q;
    *cap = c;
    return true;
}

// Parses one GGUF file (already opened as a reader) into g, appending its tensors with file index `file`.
static aero_status parse_one(aero_gguf *g, reader *r, uint32_t file, aero_error *err) {
    char magic[4];
    uint32_t version;
    uint64_t n_tensors, n_kv;
    if (rd_bytes(r, magic, 4, FLD("magic", ""), err)) return err->code;
    if (memcmp(magic, "GGUF", 4))
        return aero_fail(err, AERO_ERR_FORMAT, "%s: not a GGUF file (magic at offset 0 is not 'GGUF')", r->name);
    if (rd_u32(r, &version, FLD("version", ""), err)) return err->code;
    if (version != 2 && version != 3)
        return aero_fail(err, AERO_ERR_UNSUPPORTED, "%s: GGUF version %u at offset 4 is not supported (2 or 3)",
                         r->name, version);
    if (rd_u64(r, &n_tensors, FLD("tensor count", ""), err) || rd_u64(r, &n_kv, FLD("metadata count", ""), err))
        return err->code;
    if (n_kv > rd_left(r) / 13)
        return aero_fail(err, AERO_ERR_FORMAT, "%s: metadata count %llu at offset 16 is larger than the file allows",
                         r->name, (unsigned long long)n_kv);
    if (n_tensors > rd_left(r) / 33)
        return aero_fail(err, AERO_ERR_FORMAT, "%s: tensor count %llu at offset 8 is larger than the file allows",
                         r->name, (unsigned long long)n_tensors);

    if (file == 0) g->version = version;
    uint64_t alignment = AERO_GGUF_DEFAULT_ALIGNMENT, cap = 0;
    aero_gguf_kv scratch;
    char kbase[256];
    for (uint64_t i = 0; i < n_kv; i++) {
        aero_gguf_kv *e = &scratch;
        if (file == 0) {
            if (!grow((void **)&g->kv, &cap, i + 1, sizeof *g->kv))
                return aero_fail(err, AERO_ERR_NOMEM, "%s: out of memory", r->name);
            e = &g->kv[i];
            g->n_kv = i + 1; // so that aero_gguf_free releases a partly read entry
        }
        memset(e, 0, sizeof *e);
        uint64_t at = r->pos;
        uint32_t type;
        aero_status s = rd_str(r, &e->key, (fld){"metadata", " ", i, " key", ""}, err);
        if (!s && (e->key.len == 0 || strlen(e->key.ptr) != e->key.len))
            s = aero_fail(err, AERO_ERR_FORMAT, "%s: metadata %llu key at offset %llu: invalid key (length %llu%s)",
                          r->name, (unsigned long long)i, (unsigned long long)at, (unsigned long long)e->key.len,
                          e->key.len ? ", contains NUL" : "");
        uint64_t type_at = r->pos;
        if (!s)
            s = rd_u32(r, &type, FLD(fmt_base(kbase, sizeof kbase, "metadata '%.200s'", e->key.ptr), " value type"),
                       err);
        if (!s && type >= AERO_GGUF_TYPE_COUNT)
            s = aero_fail(err, AERO_ERR_FORMAT, "%s: metadata '%s' value type at offset %llu: unknown value type %u",
                          r->name, e->key.ptr, (unsigned long long)type_at, type);
        if (!s) s = rd_value(r, &e->value, (aero_gguf_type)type, 0, kbase, err);
        if (!s && !strcmp(e->key.ptr, "general.alignment")) {
            if (e->value.type != AERO_GGUF_UINT32)
                s = aero_fail(err, AERO_ERR_FORMAT, "%s: general.alignment at offset %llu has type %s, must be uint32",
                              r->name, (unsigned long long)at, type_names[e->value.type]);
            else if (e->value.u64 == 0 || (e->value.u64 & (e->value.u64 - 1)))
                s = aero_fail(err, AERO_ERR_FORMAT,
                              "%s: general.alignment at offset %llu is %llu, must be a power of two", r->name,
                              (unsigned long long)at, (unsigned long long)e->value.u64);
            else alignment = e->value.u64;
        }
        if (file != 0) {
            free(scratch.key.ptr);
            value_free(&scratch.value);
        }
        if (s) return s;
    }
    if (file == 0) {
        g->alignment = alignment;
        if (check_keys(g, err)) return err->code;
    }

    uint64_t base = g->n_tensors;
    cap = base;
    for (uint64_t i = 0; i < n_tensors; i++) {
        if (!grow((void **)&g->tensors, &cap, base + i + 1, sizeof *g->tensors))
            return aero_fail(err, AERO_ERR_NOMEM, "%s: out of memory", r->name);
        aero_tensor_info *t = &g->tensors[base + i];
        memset(t, 0, sizeof *t);
        g->n_tensors = base + i + 1;
        t->file = file;
        if (rd_tensor_info(r, t, i, alignment, err)) return err->code;
    }
    uint64_t data = r->pos + (alignment - r->pos % alignment) % alignment;
    g->files[file].data_offset = data;
    for (uint64_t i = 0; i < n_tensors; i++) {
        aero_tensor_info *t = &g->tensors[base + i];
        if (data > r->size || t->offset > r->size - data || t->nbytes > r->size - data - t->offset)
            return aero_fail(err, AERO_ERR_FORMAT,
                             "%s: tensor '%s' data [%llu, +%llu) (offset %llu in the data section "
                             "at %llu) past end of file (size %llu)",
                             r->name, t->name, (unsigned long long)(data + t->offset), (unsigned long long)t->nbytes,
                             (unsigned long long)t->offset, (unsigned long long)data, (unsigned long long)r->size);
        t->offset += data;
    }
    return AERO_OK;
}

static aero_status add_file(aero_gguf *g, const char *path, uint64_t size, aero_error *err) {
    aero_gguf_file *f = realloc(g->files, (g->n_files + 1) * sizeof *f);
    if (!f) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    g->files = f;
    f[g->n_files].path = strdup(path);
    f[g->n_files].size = size;
    f[g->n_files].data_offset = 0;
    if (!f[g->n_files].path) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    g->n_files++;
    return AERO_OK;
}

// Opens and parses one file of a (possibly split) model.
static aero_status open_one(aero_gguf *g, const char *path, aero_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return aero_fail(err, AERO_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return aero_fail(err, AERO_ERR_IO, "%s: not a regular file", path);
    }
    reader r = {.fd = fd, .size = (uint64_t)st.st_size, .name = path, .cache = malloc(RD_CACHE)};
    aero_status s = r.cache ? add_file(g, path, r.size, err) : aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    if (!s) s = parse_one(g, &r, g->n_files - 1, err);
    free(r.cache);
    close(fd);
    return s;
}

// Recognises "<prefix>-00001-of-0000N.gguf" and returns N (0 when the name is not a split name).
static int split_count(const char *path, size_t *prefix_len) {
    size_t n = strlen(path);
    const char *tail = "-00001-of-00000.gguf";
    size_t tl = strlen(tail);
    if (n < tl) return 0;
    const char *p = path + n - tl;
    int count;
    char dot[6];
    if (strncmp(p, "-00001-of-", 10) || sscanf(p + 10, "%5d%5s", &count, dot) != 2 || strcmp(dot, ".gguf")) return 0;
    *prefix_len = n - tl;
    return count > 1 ? count : 0;
}

aero_status aero_gguf_open(aero_gguf *g, const char *path, aero_error *err) {
    memset(g, 0, sizeof *g);
    aero_status s = open_one(g, path, err);
    size_t plen = 0;
    int count = s ? 0 : split_count(path, &plen);
    for (int i = 2; !s && i <= count; i++) {
        char part[4096];
        snprintf(part, sizeof part, "%.*s-%05d-of-%05d.gguf", (int)plen, path, i, count);
        s = open_one(g, part, err);
    }
    if (!s) s = check_table(g, err);
    if (s) aero_gguf_free(g);
    return s;
}

aero_status aero_gguf_parse_buffer(aero_gguf *g, const void *buf, size_t len, const char *name, aero_error *err) {
    memset(g, 0, sizeof *g);
    static const uint8_t empty[1];
    reader r = {.fd = -1, .buf = buf ? buf : empty, .size = buf ? len : 0, .name = name ? name : "buffer"};
    aero_status s = add_file(g, r.name, r.size, err);
    if (!s) s = parse_one(g, &r, 0, err);
    if (!s) s = check_table(g, err);
    if (s) aero_gguf_free(g);
    return s;
}

const aero_gguf_value *aero_gguf_get(const aero_gguf *g, const char *key) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (!strcmp(g->kv[i].key.ptr, key)) return &g->kv[i].value;
    return NULL;
}

int64_t aero_gguf_tensor_index(const aero_gguf *g, const char *name) {
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (!strcmp(g->tensors[i].name, name)) return (int64_t)i;
    return -1;
}

const aero_tensor_info *aero_gguf_tensor(const aero_gguf *g, const char *name) {
    int64_t i = aero_gguf_tensor_index(g, name);
    return i < 0 ? NULL : &g->tensors[i];
}

const char *aero_gguf_get_str(const aero_gguf *g, const char *key) {
    const aero_gguf_value *v = aero_gguf_get(g, key);
    return v && v->type == AERO_GGUF_STRING ? v->str.ptr : NULL;
}

// Converts a scalar value to int64 when it is an integer type (or bool) that fits.
static bool value_i64(const aero_gguf_value *v, int64_t *out) {
    switch (v->type) {
    case AERO_GGUF_UINT8:
    case AERO_GGUF_UINT16:
    case AERO_GGUF_UINT32:
    case AERO_GGUF_UINT64:
    case AERO_GGUF_BOOL:
        if (v->u64 > (uint64_t)INT64_MAX) return false;
        *out = (int64_t)v->u64;
        return true;
    case AERO_GGUF_INT8:
    case AERO_GGUF_INT16:
    case AERO_GGUF_INT32:
    case AERO_GGUF_INT64: *out = v->i64; return true;
    default: return false;
    }
}

bool aero_gguf_get_i64(const aero_gguf *g, const char *key, int64_t *out) {
    const aero_gguf_value *v = aero_gguf_get(g, key);
    return v && value_i64(v, out);
}

bool aero_gguf_get_u64(const aero_gguf *g, const char *key, uint64_t *out) {
    const aero_gguf_value *v = aero_gguf_get(g, key);
    if (!v) return false;
    if (v->type == AERO_GGUF_UINT64) {
        *out = v->u64;
        return true;
    }
    int64_t x;
    if (!value_i64(v, &x) || x < 0) return false;
    *out = (uint64_t)x;
    return true;
}

bool aero_gguf_get_f64(const aero_gguf *g, const char *key, double *out) {
    const aero_gguf_value *v = aero_gguf_get(g, key);
    if (!v) return false;
    if (v->type == AERO_GGUF_FLOAT32 || v->type == AERO_GGUF_FLOAT64) {
        *out = v->f64;
        return true;
    }
    int64_t x;
    if (!value_i64(v, &x)) return false;
    *out = (double)x;
    return true;
}

bool aero_gguf_get_bool(const aero_gguf *g, const char *key, bool *out) {
    const aero_gguf_value *v = aero_gguf_get(g, key);
    if (!v || v->type != AERO_GGUF_BOOL) return false;
    *out = v->u64 != 0;
    return true;
}

bool aero_gguf_arr_i64(const aero_gguf_value *v, uint64_t i, int64_t *out) {
    if (!v || v->type != AERO_GGUF_ARRAY || i >= v->arr.n) return false;
    aero_gguf_type t = v->arr.elem;
    if (t == AERO_GGUF_STRING || t == AERO_GGUF_ARRAY || t == AERO_GGUF_FLOAT32 || t == AERO_GGUF_FLOAT64) return false;
    aero_gguf_value e;
    scalar_set(&e, t, (const uint8_t *)v->arr.data + i * type_sizes[t]);
    return value_i64(&e, out);
}

bool aero_gguf_arr_f64(const aero_gguf_value *v, uint64_t i, double *out) {
    if (!v || v->type != AERO_GGUF_ARRAY || i >= v->arr.n) return false;
    aero_gguf_type t = v->arr.elem;
    if (t == AERO_GGUF_STRING || t == AERO_GGUF_ARRAY) return false;
    aero_gguf_value e;
    scalar_set(&e, t, (const uint8_t *)v->arr.data + i * type_sizes[t]);
    if (t == AERO_GGUF_FLOAT32 || t == AERO_GGUF_FLOAT64) {
        *out = e.f64;
        return true;
    }
    int64_t x;
    if (!value_i64(&e, &x)) return false;
    *out = (double)x;
    return true;
}

const aero_gguf_str *aero_gguf_arr_str(const aero_gguf_value *v, uint64_t i) {
    if (!v || v->type != AERO_GGUF_ARRAY || v->arr.elem != AERO_GGUF_STRING || i >= v->arr.n) return NULL;
    return &((const aero_gguf_str *)v->arr.data)[i];
}

// Layer-of-a-tensor rule shared by every reader of the "blk.N." naming (see gguf.h).
int aero_gguf_tensor_layer(const char *name) {
    if (!name || strncmp(name, "blk.", 4)) return -1;
    const char *p = name + 4;
    int64_t l = 0;
    if (*p < '0' || *p > '9') return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        l = l * 10 + (*p - '0');
        if (l > INT32_MAX) return -1;
    }
    return *p == '.' ? (int)l : -1;
}
