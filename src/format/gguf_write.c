// GGUF v3 writer: metadata of every type and tensors (copied or produced on demand), aligned as the spec
// requires, written to a temporary file that is renamed into place only when complete.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"

typedef struct {
    char *name;
    aero_dtype type;
    uint32_t n_dims;
    uint64_t ne[AERO_GGUF_MAX_DIMS];
    uint64_t nbytes;
    uint64_t offset;          // relative to the data section
    void *data;               // owned copy, or NULL when fill is set
    aero_gguf_fill_fn fill;
    void *fill_ctx;
} wtensor;

struct aero_gguf_writer {
    uint64_t alignment;
    aero_gguf_kv *kv;
    uint64_t n_kv, cap_kv;
    wtensor *t;
    uint64_t n_t, cap_t;
    void (*progress)(void *, uint64_t, uint64_t);
    void *progress_ctx;
    bool oom;                 // a setter ran out of memory: write() fails
};

aero_gguf_writer *aero_gguf_writer_new(uint64_t alignment) {
    aero_gguf_writer *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->alignment = alignment ? alignment : AERO_GGUF_DEFAULT_ALIGNMENT;
    if (alignment != 0 && alignment != AERO_GGUF_DEFAULT_ALIGNMENT) aero_gguf_set_u32(w, "general.alignment", (uint32_t)alignment);
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
    memcpy(dst->ptr, s, len);
    dst->ptr[len] = 0;
    return true;
}

// Deep copy of a value, so the writer owns everything it will write.
static bool value_copy(aero_gguf_value *dst, const aero_gguf_value *src) {
    *dst = *src;
    if (src->type == AERO_GGUF_STRING) return str_copy(&dst->str, src->str.ptr, src->str.len);
    if (src->type != AERO_GGUF_ARRAY) return true;
    dst->arr.data = NULL;
    if (src->arr.n == 0) return true;
    aero_gguf_type e = src->arr.elem;
    if (e == AERO_GGUF_STRING) {
        aero_gguf_str *d = calloc(src->arr.n, sizeof *d);
        if (!(dst->arr.data = d)) return false;
        for (uint64_t i = 0; i < src->arr.n; i++) {
            const aero_gguf_str *s = &((const aero_gguf_str *)src->arr.data)[i];
            if (!str_copy(&d[i], s->ptr, s->len)) return false;
        }
    } else if (e == AERO_GGUF_ARRAY) {
        aero_gguf_value *d = calloc(src->arr.n, sizeof *d);
        if (!(dst->arr.data = d)) return false;
        for (uint64_t i = 0; i < src->arr.n; i++)
            if (!value_copy(&d[i], &((const aero_gguf_value *)src->arr.data)[i])) return false;
    } else {
        size_t bytes = src->arr.n * aero_gguf_type_size(e);
        if (!(dst->arr.data = malloc(bytes))) return false;
        memcpy(dst->arr.data, src->arr.data, bytes);
    }
    return true;
}

void aero_gguf_set_value(aero_gguf_writer *w, const char *key, const aero_gguf_value *v) {
    aero_gguf_kv *slot = NULL;
    for (uint64_t i = 0; i < w->n_kv; i++)
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
    aero_gguf_value val = {.type = AERO_GGUF_STRING, .str = {.len = strlen(v), .ptr = (char *)v}};
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
        s[i].len = strlen(strs[i]);
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
    const aero_dtype_info *di = aero_dtype_get(type);
    if (!di) return aero_fail(err, AERO_ERR_INVALID, "tensor '%s': unknown type %u", name, (unsigned)type);
    if (n_dims < 1 || n_dims > AERO_GGUF_MAX_DIMS)
        return aero_fail(err, AERO_ERR_INVALID, "tensor '%s': n_dims %u", name, n_dims);
    uint64_t n = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] == 0 || n > UINT64_MAX / 2 / ne[d])
            return aero_fail(err, AERO_ERR_INVALID, "tensor '%s': bad dimension %u", name, d);
        n *= ne[d];
    }
    if (ne[0] % di->block)
        return aero_fail(err, AERO_ERR_INVALID, "tensor '%s': row length %llu not a multiple of %u (%s)", name,
                         (unsigned long long)ne[0], di->block, di->name);
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

// Writes bytes, remembering the first failure (checked once at the end of each section).
typedef struct {
    FILE *f;
    uint64_t pos;
    bool failed;
} out_stream;

static void put(out_stream *o, const void *p, size_t n) {
    if (!o->failed && n && fwrite(p, 1, n, o->f) != n) o->failed = true;
    o->pos += n;
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
    case AERO_GGUF_FLOAT32: { float f = (float)v->f64; memcpy(raw, &f, 4); break; }
    case AERO_GGUF_FLOAT64: memcpy(raw, &v->f64, 8); break;
    case AERO_GGUF_INT8: case AERO_GGUF_INT16: case AERO_GGUF_INT32: case AERO_GGUF_INT64: memcpy(raw, &v->i64, 8); break;
    default: memcpy(raw, &v->u64, 8); break;
    }
    put(o, raw, aero_gguf_type_size(v->type)); // little-endian: the low bytes come first
}

aero_status aero_gguf_write(aero_gguf_writer *w, const char *path, aero_error *err) {
    if (w->oom) return aero_fail(err, AERO_ERR_NOMEM, "%s: out of memory while building metadata", path);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return aero_fail(err, AERO_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    out_stream o = {.f = f};
    uint64_t total = 0;
    for (uint64_t i = 0; i < w->n_t; i++) {
        w->t[i].offset = total;
        total += w->t[i].nbytes;
        total += (w->alignment - total % w->alignment) % w->alignment;
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
    put_pad(&o, w->alignment);
    uint64_t done = 0;
    void *buf = NULL;
    size_t buf_cap = 0;
    for (uint64_t i = 0; i < w->n_t && !o.failed; i++) {
        const wtensor *t = &w->t[i];
        if (t->fill) {
            if (buf_cap < t->nbytes) {
                free(buf);
                buf_cap = t->nbytes;
                if (!(buf = malloc(buf_cap))) {
                    fclose(f);
                    unlink(tmp);
                    return aero_fail(err, AERO_ERR_NOMEM, "%s: tensor '%s': out of memory", path, t->name);
                }
            }
            if (!t->fill(t->fill_ctx, buf, t->nbytes, err)) {
                free(buf);
                fclose(f);
                unlink(tmp);
                return aero_error_prefix(err, "%s: tensor '%s': ", path, t->name);
            }
            put(&o, buf, t->nbytes);
        } else {
            put(&o, t->data, t->nbytes);
        }
        put_pad(&o, w->alignment);
        done += t->nbytes;
        if (w->progress) w->progress(w->progress_ctx, done, total);
    }
    free(buf);
    if (o.failed || fflush(f) != 0 || fsync(fileno(f)) != 0) {
        int e = errno;
        fclose(f);
        unlink(tmp);
        return aero_fail(err, AERO_ERR_IO, "%s: write failed: %s", tmp, strerror(e));
    }
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return aero_fail(err, AERO_ERR_IO, "%s: cannot finish write: %s", path, strerror(e));
    }
    return AERO_OK;
}
