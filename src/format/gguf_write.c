// GGUF v3 writer: metadata of every type and tensors (copied, produced whole on demand, or produced in row
// chunks so that a tensor larger than memory can be written), aligned as the spec requires, written to a
// temporary file that is renamed into place only when complete.
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"

#define WRITE_BUF (4u << 20)   // output buffer
#define FILL_CHUNK (16u << 20) // bytes of rows asked of a row filler at once
#define MAX_DEPTH 8            // the reader refuses deeper nesting
#define MAX_NAME 4096          // the reader refuses longer tensor names

typedef struct {
    char *name;
    aero_dtype type;
    uint32_t n_dims;
    uint64_t ne[AERO_GGUF_MAX_DIMS];
    uint64_t nbytes;
    uint64_t offset; // relative to the data section
    void *data;      // owned copy, or NULL when a filler is set
    aero_gguf_fill_fn fill;
    aero_gguf_fill_rows_fn fill_rows;
    void *fill_ctx;
} wtensor;

struct aero_gguf_writer {
    aero_gguf_kv *kv;
    uint64_t n_kv, cap_kv;
    wtensor *t;
    uint64_t n_t, cap_t;
    void (*progress)(void *, uint64_t, uint64_t);
    void *progress_ctx;
    bool oom;      // a setter ran out of memory: write() fails
    char bad[256]; // first invalid metadata given to a setter: write() fails with it
};

// Remembers the first invalid setter call, so that write() can report it (setters return nothing).
static void writer_bad(aero_gguf_writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void writer_bad(aero_gguf_writer *w, const char *fmt, ...) {
    if (w->bad[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->bad, sizeof w->bad, fmt, ap);
    va_end(ap);
}

aero_gguf_writer *aero_gguf_writer_new(uint64_t alignment) {
    aero_gguf_writer *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    if (alignment != 0 && alignment != AERO_GGUF_DEFAULT_ALIGNMENT) {
        if (alignment > UINT32_MAX)
            writer_bad(w, "alignment %llu does not fit general.alignment (uint32)", (unsigned long long)alignment);
        else aero_gguf_set_u32(w, "general.alignment", (uint32_t)alignment);
    }
    return w;
}

// Frees what a value owns (mirror of the reader's layout).
static void wvalue_free(aero_gguf_value *v) {
    if (v->type == AERO_GGUF_STRING) free(v->str.ptr);
    if (v->type == AERO_GGUF_ARRAY && v->arr.data) {
        if (v->arr.elem == AERO_GGUF_STRING)
            for (uint64_t i = 0; i < v->arr.n; i++) free(((aero_gguf_str *)v->arr.data)[i].ptr);
        if (v->arr.elem == AERO_GGUF_ARRAY)
            for (uint64_t i = 0; i < v->arr.n; i++) wvalue_free(&((aero_gguf_value *)v->arr.data)[i]);
        free(v->arr.data);
    }
}

void aero_gguf_writer_free(aero_gguf_writer *w) {
    if (!w) return;
    for (uint64_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key.ptr);
        wvalue_free(&w->kv[i].value);
    }
    free(w->kv);
    for (uint64_t i = 0; i < w->n_t; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    free(w->t);
    free(w);
}

static bool str_copy(aero_gguf_str *dst, const char *s, uint64_t len) {
    dst->len = len;
    dst->ptr = malloc(len + 1);
    if (!dst->ptr) return false;
    if (len) memcpy(dst->ptr, s, len);
    dst->ptr[len] = 0;
    return true;
}

// Checks that a value can be written and read back: known types, bools 0/1, nesting the reader accepts.
static bool value_valid(const aero_gguf_value *v, int depth, char *why, size_t cap) {
    if ((unsigned)v->type >= AERO_GGUF_TYPE_COUNT) {
        snprintf(why, cap, "unknown value type %u", (unsigned)v->type);
        return false;
    }
    if (v->type == AERO_GGUF_BOOL && v->u64 > 1) {
        snprintf(why, cap, "bool value %llu", (unsigned long long)v->u64);
        return false;
    }
    if (v->type == AERO_GGUF_STRING && v->str.len && !v->str.ptr) {
        snprintf(why, cap, "string without data");
        return false;
    }
    if (v->type != AERO_GGUF_ARRAY) return true;
    if (depth >= MAX_DEPTH) {
        snprintf(why, cap, "arrays nested deeper than %d", MAX_DEPTH);
        return false;
    }
    aero_gguf_type e = v->arr.elem;
    if ((unsigned)e >= AERO_GGUF_TYPE_COUNT) {
        snprintf(why, cap, "unknown array element type %u", (unsigned)e);
        return false;
    }
    if (v->arr.n && !v->arr.data) {
        snprintf(why, cap, "array of %llu elements without data", (unsigned long long)v->arr.n);
        return false;
    }
    if (e == AERO_GGUF_ARRAY) {
        for (uint64_t i = 0; i < v->arr.n; i++) {
            const aero_gguf_value *x = &((const aero_gguf_value *)v->arr.data)[i];
            if (x->type != AERO_GGUF_ARRAY) {
                snprintf(why, cap, "element %llu of an array of arrays has type %s", (unsigned long long)i,
                         aero_gguf_type_name(x->type));
                return false;
            }
            if (!value_valid(x, depth + 1, why, cap)) return false;
        }
    } else if (e == AERO_GGUF_STRING) {
        for (uint64_t i = 0; i < v->arr.n; i++) {
            const aero_gguf_str *s = &((const aero_gguf_str *)v->arr.data)[i];
            if (s->len && !s->ptr) {
                snprintf(why, cap, "string element %llu without data", (unsigned long long)i);
                return false;
            }
        }
    } else if (e == AERO_GGUF_BOOL) {
        for (uint64_t i = 0; i < v->arr.n; i++)
            if (((const uint8_t *)v->arr.data)[i] > 1) {
                snprintf(why, cap, "bool element %llu has value %u", (unsigned long long)i,
                         ((const uint8_t *)v->arr.data)[i]);
                return false;
            }
    }
    return true;
}

// Deep copy of a (valid) value, so the writer owns everything it will write.
static bool value_copy(aero_gguf_value *dst, const aero_gguf_value *src) {
    *dst = *src;
    if (src->type == AERO_GGUF_STRING) return str_copy(&dst->str, src->str.ptr, src->str.len);
    if (src->type != AERO_GGUF_ARRAY) return true;
    dst->arr.data = NULL;
    dst->arr.n = 0;
    if (src->arr.n == 0) return true;
    aero_gguf_type e = src->arr.elem;
    if (e == AERO_GGUF_STRING) {
        aero_gguf_str *d = calloc(src->arr.n, sizeof *d);
        if (!(dst->arr.data = d)) return false;
        dst->arr.n = src->arr.n;
        for (uint64_t i = 0; i < src->arr.n; i++) {
            const aero_gguf_str *s = &((const aero_gguf_str *)src->arr.data)[i];
            if (!str_copy(&d[i], s->ptr, s->len)) return false;
        }
    } else if (e == AERO_GGUF_ARRAY) {
        aero_gguf_value *d = calloc(src->arr.n, sizeof *d);
        if (!(dst->arr.data = d)) return false;
        dst->arr.n = src->arr.n;
        for (uint64_t i = 0; i < src->arr.n; i++)
            if (!value_copy(&d[i], &((const aero_gguf_value *)src->arr.data)[i])) return false;
    } else {
        size_t bytes = src->arr.n * aero_gguf_type_size(e);
        if (!(dst->arr.data = malloc(bytes))) return false;
        dst->arr.n = src->arr.n;
        memcpy(dst->arr.data, src->arr.data, bytes);
    }
    return true;
}

void aero_gguf_set_value(aero_gguf_writer *w, const char *key, const aero_gguf_value *v) {
    char why[160];
    if (!key || !key[0]) {
        writer_bad(w, "empty metadata key");
        return;
    }
    if (!value_valid(v, 0, why, sizeof why)) {
        writer_bad(w, "metadata '%s': %s", key, why);
        return;
    }
    aero_gguf_kv *slot = NULL;
    for (uint64_t i = 0; i < w->n_kv && !slot; i++)
        if (!strcmp(w->kv[i].key.ptr, key)) {
            slot = &w->kv[i];
            wvalue_free(&slot->value);
            memset(&slot->value, 0, sizeof slot->value);
        }
    if (!slot) {
        if (w->n_kv == w->cap_kv) {
            uint64_t cap = w->cap_kv ? w->cap_kv * 2 : 32;
            aero_gguf_kv *kv = realloc(w->kv, cap * sizeof *kv);
            if (!kv) {
                w->oom = true;
                return;
            }
            w->kv = kv;
            w->cap_kv = cap;
        }
        slot = &w->kv[w->n_kv];
        memset(slot, 0, sizeof *slot);
        if (!str_copy(&slot->key, key, strlen(key))) {
            w->oom = true;
            return;
        }
        w->n_kv++;
    }
    if (!value_copy(&slot->value, v)) w->oom = true;
}

// Removes a key set earlier (tools that write variants of a file without one of its keys); no-op if absent.
void aero_gguf_unset(aero_gguf_writer *w, const char *key) {
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key.ptr, key)) {
            free(w->kv[i].key.ptr);
            wvalue_free(&w->kv[i].value);
            memmove(&w->kv[i], &w->kv[i + 1], (w->n_kv - i - 1) * sizeof *w->kv);
            w->n_kv--;
            return;
        }
}

void aero_gguf_set_u32(aero_gguf_writer *w, const char *key, uint32_t v) {
    aero_gguf_set_value(w, key, &(aero_gguf_value){.type = AERO_GGUF_UINT32, .u64 = v});
}
void aero_gguf_set_i32(aero_gguf_writer *w, const char *key, int32_t v) {
    aero_gguf_set_value(w, key, &(aero_gguf_value){.type = AERO_GGUF_INT32, .i64 = v});
}
void aero_gguf_set_u64(aero_gguf_writer *w, const char *key, uint64_t v) {
    aero_gguf_set_value(w, key, &(aero_gguf_value){.type = AERO_GGUF_UINT64, .u64 = v});
}
void aero_gguf_set_f32(aero_gguf_writer *w, const char *key, float v) {
    aero_gguf_set_value(w, key, &(aero_gguf_value){.type = AERO_GGUF_FLOAT32, .f64 = v});
}
void aero_gguf_set_bool(aero_gguf_writer *w, const char *key, bool v) {
    aero_gguf_set_value(w, key, &(aero_gguf_value){.type = AERO_GGUF_BOOL, .u64 = v});
}
void aero_gguf_set_str(aero_gguf_writer *w, const char *key, const char *v) {
    aero_gguf_value val = {.type = AERO_GGUF_STRING, .str = {.len = v ? strlen(v) : 0, .ptr = (char *)v}};
    aero_gguf_set_value(w, key, &val);
}
void aero_gguf_set_arr(aero_gguf_writer *w, const char *key, aero_gguf_type elem, const void *data, uint64_t n) {
    aero_gguf_value val = {.type = AERO_GGUF_ARRAY, .arr = {.elem = elem, .n = n, .data = (void *)data}};
    aero_gguf_set_value(w, key, &val);
}
void aero_gguf_set_arr_str(aero_gguf_writer *w, const char *key, const char *const *strs, uint64_t n) {
    aero_gguf_str *s = calloc(n ? n : 1, sizeof *s);
    if (!s) {
        w->oom = true;
        return;
    }
    for (uint64_t i = 0; i < n; i++) {
        s[i].ptr = (char *)strs[i];
        s[i].len = strs[i] ? strlen(strs[i]) : 0;
    }
    aero_gguf_set_arr(w, key, AERO_GGUF_STRING, s, n);
    free(s);
}

void aero_gguf_writer_progress(aero_gguf_writer *w, void (*fn)(void *, uint64_t, uint64_t), void *ctx) {
    w->progress = fn;
    w->progress_ctx = ctx;
}

// Validates and records a tensor's shape; the caller attaches its bytes.
static aero_status add_tensor(aero_gguf_writer *w, const char *name, aero_dtype type, uint32_t n_dims,
                              const uint64_t *ne, wtensor **out, aero_error *err) {
    if (!name || !name[0] || strlen(name) > MAX_NAME)
        return aero_fail(err, AERO_ERR_INVALID, "tensor name '%.64s' is empty or longer than %d bytes",
                         name ? name : "", MAX_NAME);
    const aero_dtype_info *di = aero_dtype_get(type);
    if (!di) return aero_fail(err, AERO_ERR_INVALID, "tensor '%s': unknown type %u", name, (unsigned)type);
    if (n_dims < 1 || n_dims > AERO_GGUF_MAX_DIMS)
        return aero_fail(err, AERO_ERR_INVALID, "tensor '%s': n_dims %u not in [1, %d]", name, n_dims,
                         AERO_GGUF_MAX_DIMS);
    uint64_t n = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] == 0 || n > (uint64_t)INT64_MAX / ne[d])
            return aero_fail(err, AERO_ERR_INVALID, "tensor '%s': dimension %u = %llu is zero or overflows", name, d,
                             (unsigned long long)ne[d]);
        n *= ne[d];
    }
    if (ne[0] % di->block)
        return aero_fail(err, AERO_ERR_INVALID, "tensor '%s': row length %llu not a multiple of %u (%s)", name,
                         (unsigned long long)ne[0], di->block, di->name);
    if (n / di->block > (uint64_t)INT64_MAX / di->block_bytes)
        return aero_fail(err, AERO_ERR_INVALID, "tensor '%s': byte size overflows", name);
    for (uint64_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name)) return aero_fail(err, AERO_ERR_INVALID, "duplicate tensor '%s'", name);
    if (w->n_t == w->cap_t) {
        uint64_t cap = w->cap_t ? w->cap_t * 2 : 64;
        wtensor *t = realloc(w->t, cap * sizeof *t);
        if (!t) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
        w->t = t;
        w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name))) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < AERO_GGUF_MAX_DIMS; d++) t->ne[d] = d < (int)n_dims ? ne[d] : 1;
    t->nbytes = n / di->block * di->block_bytes;
    w->n_t++;
    *out = t;
    return AERO_OK;
}

aero_status aero_gguf_add_tensor(aero_gguf_writer *w, const char *name, aero_dtype type, uint32_t n_dims,
                                 const uint64_t *ne, const void *data, aero_error *err) {
    wtensor *t;
    if (add_tensor(w, name, type, n_dims, ne, &t, err)) return err->code;
    if (!(t->data = malloc(t->nbytes ? t->nbytes : 1))) {
        free(t->name);
        w->n_t--;
        return aero_fail(err, AERO_ERR_NOMEM, "tensor '%s': out of memory", name);
    }
    memcpy(t->data, data, t->nbytes);
    return AERO_OK;
}

aero_status aero_gguf_add_tensor_fill(aero_gguf_writer *w, const char *name, aero_dtype type, uint32_t n_dims,
                                      const uint64_t *ne, aero_gguf_fill_fn fill, void *ctx, aero_error *err) {
    wtensor *t;
    if (add_tensor(w, name, type, n_dims, ne, &t, err)) return err->code;
    t->fill = fill;
    t->fill_ctx = ctx;
    return AERO_OK;
}

aero_status aero_gguf_add_tensor_rows(aero_gguf_writer *w, const char *name, aero_dtype type, uint32_t n_dims,
                                      const uint64_t *ne, aero_gguf_fill_rows_fn fill, void *ctx, aero_error *err) {
    wtensor *t;
    if (add_tensor(w, name, type, n_dims, ne, &t, err)) return err->code;
    t->fill_rows = fill;
    t->fill_ctx = ctx;
    return AERO_OK;
}

// A buffered output file that remembers its first failure (checked at the end and between tensors).
typedef struct {
    int fd;
    uint8_t *buf;
    size_t len;
    uint64_t pos; // bytes accepted so far (the file offset once flushed)
    int err;      // errno of the first failure, 0 if none
} out_stream;

// Writes all of n bytes to the fd, retrying short writes and EINTR.
static void out_raw(out_stream *o, const void *p, size_t n) {
    const uint8_t *b = p;
    while (n && !o->err) {
        ssize_t k = write(o->fd, b, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            o->err = errno;
        } else if (k == 0) {
            o->err = EIO;
        } else {
            b += k;
            n -= (size_t)k;
        }
    }
}

static void out_flush(out_stream *o) {
    out_raw(o, o->buf, o->len);
    o->len = 0;
}

static void put(out_stream *o, const void *p, size_t n) {
    o->pos += n;
    if (o->err || !n) return;
    if (o->len + n > WRITE_BUF) out_flush(o);
    if (n >= WRITE_BUF) {
        out_raw(o, p, n); // large pieces skip the copy
        return;
    }
    memcpy(o->buf + o->len, p, n);
    o->len += n;
}
static void put_u32(out_stream *o, uint32_t v) { put(o, &v, 4); }
static void put_u64(out_stream *o, uint64_t v) { put(o, &v, 8); }
static void put_str(out_stream *o, const char *s, uint64_t len) {
    put_u64(o, len);
    put(o, s, len);
}
static void put_pad(out_stream *o, uint64_t alignment) {
    static const uint8_t zeros[4096];
    uint64_t pad = (alignment - o->pos % alignment) % alignment;
    while (pad) {
        size_t n = pad > sizeof zeros ? sizeof zeros : (size_t)pad;
        put(o, zeros, n);
        pad -= n;
    }
}

// Serialises one value's body (after its type tag).
static void put_value(out_stream *o, const aero_gguf_value *v) {
    uint8_t raw[8];
    switch (v->type) {
    case AERO_GGUF_STRING: put_str(o, v->str.ptr, v->str.len); return;
    case AERO_GGUF_ARRAY:
        put_u32(o, v->arr.elem);
        put_u64(o, v->arr.n);
        if (v->arr.elem == AERO_GGUF_STRING) {
            for (uint64_t i = 0; i < v->arr.n; i++) {
                const aero_gguf_str *s = &((const aero_gguf_str *)v->arr.data)[i];
                put_str(o, s->ptr, s->len);
            }
        } else if (v->arr.elem == AERO_GGUF_ARRAY) {
            for (uint64_t i = 0; i < v->arr.n; i++) put_value(o, &((const aero_gguf_value *)v->arr.data)[i]);
        } else {
            put(o, v->arr.data, v->arr.n * aero_gguf_type_size(v->arr.elem));
        }
        return;
    case AERO_GGUF_FLOAT32: {
        float f = (float)v->f64;
        memcpy(raw, &f, 4);
        break;
    }
    case AERO_GGUF_FLOAT64: memcpy(raw, &v->f64, 8); break;
    case AERO_GGUF_INT8:
    case AERO_GGUF_INT16:
    case AERO_GGUF_INT32:
    case AERO_GGUF_INT64: memcpy(raw, &v->i64, 8); break;
    default: memcpy(raw, &v->u64, 8); break;
    }
    put(o, raw, aero_gguf_type_size(v->type)); // little-endian: the low bytes come first
}

// The alignment the file will declare: general.alignment when set (it must be a uint32 power of two).
static aero_status writer_alignment(const aero_gguf_writer *w, uint64_t *out, aero_error *err) {
    *out = AERO_GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key.ptr, "general.alignment")) continue;
        const aero_gguf_value *v = &w->kv[i].value;
        if (v->type != AERO_GGUF_UINT32)
            return aero_fail(err, AERO_ERR_INVALID, "general.alignment has type %s, must be uint32",
                             aero_gguf_type_name(v->type));
        if (v->u64 == 0 || (v->u64 & (v->u64 - 1)))
            return aero_fail(err, AERO_ERR_INVALID, "general.alignment %llu is not a power of two",
                             (unsigned long long)v->u64);
        *out = v->u64;
    }
    return AERO_OK;
}

// Streams one tensor's bytes into the output, asking its producer for them whole or in row chunks.
static aero_status put_tensor(out_stream *o, const wtensor *t, void **buf, size_t *cap, aero_error *err) {
    if (t->data) {
        put(o, t->data, t->nbytes);
        return AERO_OK;
    }
    uint64_t row_bytes = aero_dtype_row_bytes(t->type, t->ne[0]);
    uint64_t rows = t->nbytes / row_bytes;
    uint64_t per = t->fill ? rows : (FILL_CHUNK / row_bytes ? FILL_CHUNK / row_bytes : 1);
    if (per > rows) per = rows;
    if (*cap < per * row_bytes) {
        free(*buf);
        *cap = 0;
        if (!(*buf = malloc(per * row_bytes)))
            return aero_fail(err, AERO_ERR_NOMEM, "tensor '%s': out of memory for %llu bytes", t->name,
                             (unsigned long long)(per * row_bytes));
        *cap = per * row_bytes;
    }
    for (uint64_t r = 0; r < rows && !o->err; r += per) {
        uint64_t n = rows - r < per ? rows - r : per;
        bool ok = t->fill ? t->fill(t->fill_ctx, *buf, t->nbytes, err) : t->fill_rows(t->fill_ctx, *buf, r, n, err);
        if (!ok) {
            if (err->code == AERO_OK)
                return aero_fail(err, AERO_ERR_INVALID, "tensor '%s': its producer failed", t->name);
            return aero_error_prefix(err, "tensor '%s': ", t->name);
        }
        put(o, *buf, n * row_bytes);
    }
    return AERO_OK;
}

aero_status aero_gguf_write(aero_gguf_writer *w, const char *path, aero_error *err) {
    if (w->oom) return aero_fail(err, AERO_ERR_NOMEM, "%s: out of memory while building metadata", path);
    if (w->bad[0]) return aero_fail(err, AERO_ERR_INVALID, "%s: %s", path, w->bad);
    uint64_t alignment;
    if (writer_alignment(w, &alignment, err)) return aero_error_prefix(err, "%s: ", path);
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp)
        return aero_fail(err, AERO_ERR_INVALID, "%.200s...: path too long", path);
    out_stream o = {.fd = -1, .buf = malloc(WRITE_BUF)};
    if (!o.buf) return aero_fail(err, AERO_ERR_NOMEM, "%s: out of memory", path);
    o.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (o.fd < 0) {
        aero_fail(err, AERO_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        free(o.buf);
        return err->code;
    }
    void *buf = NULL;
    size_t buf_cap = 0;
    uint64_t total = 0;
    for (uint64_t i = 0; i < w->n_t; i++) {
        w->t[i].offset = total;
        total += w->t[i].nbytes;
        total += (alignment - total % alignment) % alignment;
    }
    put(&o, "GGUF", 4);
    put_u32(&o, 3);
    put_u64(&o, w->n_t);
    put_u64(&o, w->n_kv);
    for (uint64_t i = 0; i < w->n_kv; i++) {
        put_str(&o, w->kv[i].key.ptr, w->kv[i].key.len);
        put_u32(&o, w->kv[i].value.type);
        put_value(&o, &w->kv[i].value);
    }
    for (uint64_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        put_str(&o, t->name, strlen(t->name));
        put_u32(&o, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) put_u64(&o, t->ne[d]);
        put_u32(&o, t->type);
        put_u64(&o, t->offset);
    }
    put_pad(&o, alignment);
    uint64_t data_start = o.pos;
    for (uint64_t i = 0; i < w->n_t && !o.err; i++) {
        if (put_tensor(&o, &w->t[i], &buf, &buf_cap, err)) goto fail;
        put_pad(&o, alignment);
        if (w->progress) w->progress(w->progress_ctx, o.pos - data_start, total);
    }
    if (!o.err) out_flush(&o);
    if (!o.err && fsync(o.fd) != 0) o.err = errno;
    if (o.err) {
        aero_fail(err, AERO_ERR_IO, "%s: write failed at offset %llu: %s", tmp, (unsigned long long)o.pos,
                  strerror(o.err));
        goto fail;
    }
    if (close(o.fd) != 0) {
        o.fd = -1;
        aero_fail(err, AERO_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
        goto fail;
    }
    o.fd = -1;
    if (rename(tmp, path) != 0) {
        aero_fail(err, AERO_ERR_IO, "%s: cannot rename into place: %s", path, strerror(errno));
        goto fail;
    }
    free(buf);
    free(o.buf);
    return AERO_OK;
fail:
    if (o.fd >= 0) close(o.fd);
    unlink(tmp);
    free(buf);
    free(o.buf);
    return err->code;
}
