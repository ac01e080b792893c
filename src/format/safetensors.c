// safetensors header parsing. Layout: u64 little-endian N, N bytes of JSON {"name": {"dtype", "shape",
// "data_offsets": [begin, end]}, "__metadata__": {...}}, then the data section the offsets index. Every number is
// checked before use; the tensors must tile the data section exactly (as the reference library requires), so a
// tensor never overlaps another nor lies outside the file.
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "safetensors.h"

typedef struct {
    const char *name;
    uint32_t size;
    int type;
} st_dtype;

// Every dtype the format defines, so sizes are checked for all; only the float ones the kernels read get a type.
static const st_dtype DTYPES[] = {
    {"F32", 4, AERO_DT_F32},  {"F16", 2, AERO_DT_F16},   {"BF16", 2, AERO_DT_BF16}, {"F64", 8, -1},
    {"I64", 8, -1},           {"U64", 8, -1},            {"I32", 4, -1},            {"U32", 4, -1},
    {"I16", 2, -1},           {"U16", 2, -1},            {"I8", 1, -1},             {"U8", 1, -1},
    {"BOOL", 1, -1},          {"F8_E4M3", 1, -1},        {"F8_E5M2", 1, -1},        {"F8_E8M0", 1, -1},
};

// The row of a dtype name, NULL for one the format does not define.
static const st_dtype *find_dtype(const char *s) {
    for (size_t i = 0; i < sizeof DTYPES / sizeof DTYPES[0]; i++)
        if (!strcmp(DTYPES[i].name, s)) return &DTYPES[i];
    return NULL;
}

// Frees what open/parse made; f is zeroed (safe to call twice).
void aero_st_free(aero_st_file *f) {
    if (!f) return;
    for (uint64_t i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    free(f->path);
    memset(f, 0, sizeof *f);
}

// A JSON number that is a non-negative integer (jansson parses integers exactly up to 2^63 - 1).
static bool json_u64(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

// One header entry into t; data_size bounds the offsets (relative to the data section).
static aero_status parse_tensor(aero_st_tensor *t, const char *name, const json_t *o, uint64_t data_size,
                                const char *file, aero_error *err) {
    if (!json_is_object(o)) return aero_fail(err, AERO_ERR_FORMAT, "%s: tensor '%s': entry is not an object", file, name);
    const json_t *dt = json_object_get(o, "dtype"), *shape = json_object_get(o, "shape"),
                 *offs = json_object_get(o, "data_offsets");
    if (!json_is_string(dt)) return aero_fail(err, AERO_ERR_FORMAT, "%s: tensor '%s': no dtype", file, name);
    const st_dtype *d = find_dtype(json_string_value(dt));
    if (!d)
        return aero_fail(err, AERO_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%.20s'", file, name,
                         json_string_value(dt));
    snprintf(t->dtype, sizeof t->dtype, "%s", d->name);
    t->type = d->type;
    if (!json_is_array(shape) || json_array_size(shape) > AERO_ST_MAX_DIMS)
        return aero_fail(err, AERO_ERR_FORMAT, "%s: tensor '%s': shape must be an array of at most %d sizes", file,
                         name, AERO_ST_MAX_DIMS);
    t->n_dims = (uint32_t)json_array_size(shape);
    uint64_t n = 1;
    for (uint32_t i = 0; i < t->n_dims; i++) {
        uint64_t s;
        if (!json_u64(json_array_get(shape, i), &s))
            return aero_fail(err, AERO_ERR_FORMAT, "%s: tensor '%s': shape[%u] is not a size", file, name, i);
        if (s && n > UINT64_MAX / s)
            return aero_fail(err, AERO_ERR_FORMAT, "%s: tensor '%s': shape overflows", file, name);
        t->shape[i] = s;
        n *= s;
    }
    t->n_elements = n;
    uint64_t b, e;
    if (!json_is_array(offs) || json_array_size(offs) != 2 || !json_u64(json_array_get(offs, 0), &b) ||
        !json_u64(json_array_get(offs, 1), &e))
        return aero_fail(err, AERO_ERR_FORMAT, "%s: tensor '%s': data_offsets must be [begin, end]", file, name);
    if (b > e || e > data_size)
        return aero_fail(err, AERO_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets [%llu, %llu] outside the data section (%llu bytes)", file,
                         name, (unsigned long long)b, (unsigned long long)e, (unsigned long long)data_size);
    if (n > UINT64_MAX / d->size || n * d->size != e - b)
        return aero_fail(err, AERO_ERR_FORMAT, "%s: tensor '%s': %llu bytes for %llu elements of %s", file, name,
                         (unsigned long long)(e - b), (unsigned long long)n, d->name);
    t->offset = b; // made absolute by the caller
    t->nbytes = e - b;
    return AERO_OK;
}

// Data order, for the tiling check.
static int cmp_offset(const void *a, const void *b) {
    const aero_st_tensor *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

// Parses the JSON header hdr (hlen bytes) of a file of file_size bytes.
static aero_status parse_header(aero_st_file *f, const char *hdr, uint64_t hlen, uint64_t file_size,
                                const char *file, aero_error *err) {
    json_error_t je;
    json_t *root = json_loadb(hdr, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
    aero_status st = AERO_OK;
    if (!root) return aero_fail(err, AERO_ERR_FORMAT, "%s: header JSON: %s (byte %d)", file, je.text, je.position + 8);
    if (!json_is_object(root)) {
        st = aero_fail(err, AERO_ERR_FORMAT, "%s: header is not a JSON object", file);
        goto done;
    }
    uint64_t data_size = file_size - 8 - hlen;
    size_t cap = json_object_size(root);
    f->tensors = calloc(cap ? cap : 1, sizeof *f->tensors);
    if (!f->tensors) {
        st = aero_fail(err, AERO_ERR_NOMEM, "%s: out of memory", file);
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (!strcmp(key, "__metadata__")) {
            if (!json_is_object(val)) {
                st = aero_fail(err, AERO_ERR_FORMAT, "%s: __metadata__ is not an object", file);
                goto done;
            }
            continue;
        }
        if (!key[0] || strlen(key) > 1024) {
            st = aero_fail(err, AERO_ERR_FORMAT, "%s: a tensor name is empty or longer than 1024 bytes", file);
            goto done;
        }
        aero_st_tensor *t = &f->tensors[f->n_tensors];
        if ((st = parse_tensor(t, key, val, data_size, file, err))) goto done;
        if (!(t->name = strdup(key))) {
            st = aero_fail(err, AERO_ERR_NOMEM, "%s: out of memory", file);
            goto done;
        }
        f->n_tensors++;
    }
    qsort(f->tensors, f->n_tensors, sizeof *f->tensors, cmp_offset);
    uint64_t at = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        aero_st_tensor *t = &f->tensors[i];
        if (t->offset != at) {
            st = aero_fail(err, AERO_ERR_FORMAT, "%s: tensor '%s' starts at data byte %llu, expected %llu (%s)", file,
                           t->name, (unsigned long long)t->offset, (unsigned long long)at,
                           t->offset < at ? "overlaps the tensor before" : "a gap before it");
            goto done;
        }
        at += t->nbytes;
        t->offset += 8 + hlen;
    }
    if (at != data_size) {
        st = aero_fail(err, AERO_ERR_FORMAT, "%s: tensors cover %llu of the %llu data bytes", file,
                       (unsigned long long)at, (unsigned long long)data_size);
        goto done;
    }
    f->size = file_size;
    f->data_start = 8 + hlen;
done:
    json_decref(root);
    return st;
}

// The 8-byte length, checked against the file size and the header limit.
static aero_status header_len(const uint8_t b[8], uint64_t file_size, const char *file, uint64_t *out,
                              aero_error *err) {
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | b[i];
    if (n > AERO_ST_MAX_HEADER)
        return aero_fail(err, AERO_ERR_FORMAT, "%s: header length %llu exceeds %u bytes", file,
                         (unsigned long long)n, AERO_ST_MAX_HEADER);
    if (n > file_size - 8)
        return aero_fail(err, AERO_ERR_FORMAT, "%s: header length %llu runs past the end of the file (%llu bytes)",
                         file, (unsigned long long)n, (unsigned long long)file_size);
    *out = n;
    return AERO_OK;
}

// The whole-image form of aero_st_open, for fuzzers and tests: the buffer is the file.
aero_status aero_st_parse_buffer(aero_st_file *f, const void *buf, size_t len, const char *name, aero_error *err) {
    memset(f, 0, sizeof *f);
    uint64_t n;
    if (len < 8) return aero_fail(err, AERO_ERR_FORMAT, "%s: %zu bytes, too short for a safetensors file", name, len);
    if (header_len(buf, len, name, &n, err)) return err->code;
    aero_status st = parse_header(f, (const char *)buf + 8, n, len, name, err);
    if (!st && !(f->path = strdup(name))) st = aero_fail(err, AERO_ERR_NOMEM, "%s: out of memory", name);
    if (st) aero_st_free(f);
    return st;
}

// Reads only the 8-byte length and the header: the data stays on disk for the streamer.
aero_status aero_st_open(aero_st_file *f, const char *path, aero_error *err) {
    memset(f, 0, sizeof *f);
    FILE *fp = fopen(path, "rb");
    if (!fp) return aero_fail(err, AERO_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *hdr = NULL;
    aero_status st = AERO_OK;
    struct stat sb;
    uint8_t b[8];
    uint64_t n;
    if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = aero_fail(err, AERO_ERR_IO, "%s: not a regular file", path);
        goto done;
    }
    if (sb.st_size < 8 || fread(b, 1, 8, fp) != 8) {
        st = aero_fail(err, AERO_ERR_FORMAT, "%s: too short for a safetensors file", path);
        goto done;
    }
    if ((st = header_len(b, (uint64_t)sb.st_size, path, &n, err))) goto done;
    if (!(hdr = malloc(n ? n : 1))) {
        st = aero_fail(err, AERO_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    if (fread(hdr, 1, n, fp) != n) {
        st = aero_fail(err, AERO_ERR_IO, "%s: cannot read the header", path);
        goto done;
    }
    if ((st = parse_header(f, hdr, n, (uint64_t)sb.st_size, path, err))) goto done;
    if (!(f->path = strdup(path))) st = aero_fail(err, AERO_ERR_NOMEM, "%s: out of memory", path);
done:
    free(hdr);
    fclose(fp);
    if (st) aero_st_free(f);
    return st;
}

// Linear lookup: shards hold hundreds of tensors at most, and it runs once per listed name.
const aero_st_tensor *aero_st_find(const aero_st_file *f, const char *name) {
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}
