// Malformed GGUF: a table of corruptions applied to a valid image built here byte by byte (so every field's
// offset is known), each of which must give an error whose message names the problem; truncation at every
// byte; and truncations and byte flips of a real file's header region. Run it under ASan+UBSan (make SAN=1).
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "helpers.h"
#include "format/gguf.h"

#define NAME "img.gguf"

// ---------------------------------------------------------------------------------------------------------
// A GGUF image built by hand, recording where each field lies.

typedef struct {
    uint8_t *p;
    size_t len, cap;
} bbuf;

static void b_put(bbuf *b, const void *src, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}
static size_t b_u32(bbuf *b, uint32_t v) {
    size_t at = b->len;
    b_put(b, &v, 4);
    return at;
}
static size_t b_u64(bbuf *b, uint64_t v) {
    size_t at = b->len;
    b_put(b, &v, 8);
    return at;
}
static size_t b_u8(bbuf *b, uint8_t v) {
    size_t at = b->len;
    b_put(b, &v, 1);
    return at;
}
static size_t b_str(bbuf *b, const char *s) {
    size_t at = b_u64(b, strlen(s));
    b_put(b, s, strlen(s));
    return at;
}

// Offsets of the fields the corruptions aim at.
typedef struct {
    size_t version, n_tensors, n_kv;
    size_t arch_key_len, arch_key, arch_type, arch_val_len;
    size_t align_type, align_val;
    size_t bool_val;
    size_t k1_key, k2_key;        // "test.k1", "test.k2"
    size_t arr_elem, arr_len;     // int32 array
    size_t sarr_len, sarr_e1_len; // string array and its second element's length
    size_t barr_key, barr_e1;     // "test.barr" and the second element of that bool array
    size_t nest_elem, nest_inner_elem, nest_inner_len;
    size_t f64_type;
    size_t kv_end;
    size_t t_name_len[3], t_name[3], t_ndims[3], t_ne[3][2], t_type[3], t_off[3];
    size_t data;            // start of the data section
    size_t boundaries[128]; // every field boundary of the header
    int n_boundaries;
} layout;

static void mark(layout *L, size_t at) {
    if (L->n_boundaries < 128) L->boundaries[L->n_boundaries++] = at;
}

// The valid image: 10 metadata keys of several kinds, 3 tensors (F32 32x2, Q8_0 64, Q4_K 256) and their data.
static bbuf build(layout *L) {
    bbuf b = {0};
    memset(L, 0, sizeof *L);
    b_put(&b, "GGUF", 4);
    L->version = b_u32(&b, 3);
    L->n_tensors = b_u64(&b, 3);
    L->n_kv = b_u64(&b, 10);
    mark(L, b.len);
    L->arch_key_len = b_str(&b, "general.architecture");
    L->arch_key = L->arch_key_len + 8;
    L->arch_type = b_u32(&b, AERO_GGUF_STRING);
    L->arch_val_len = b_str(&b, "llama");
    mark(L, L->arch_key);
    mark(L, L->arch_type);
    mark(L, L->arch_val_len);
    mark(L, b.len);
    b_str(&b, "general.alignment");
    L->align_type = b_u32(&b, AERO_GGUF_UINT32);
    L->align_val = b_u32(&b, 32);
    mark(L, L->align_val);
    mark(L, b.len);
    b_str(&b, "test.bool");
    b_u32(&b, AERO_GGUF_BOOL);
    L->bool_val = b_u8(&b, 1);
    mark(L, b.len);
    L->k1_key = b_str(&b, "test.k1") + 8;
    b_u32(&b, AERO_GGUF_UINT8);
    b_u8(&b, 7);
    L->k2_key = b_str(&b, "test.k2") + 8;
    b_u32(&b, AERO_GGUF_STRING);
    b_str(&b, "h\xc3\xa9llo");
    mark(L, b.len);
    b_str(&b, "test.arr");
    b_u32(&b, AERO_GGUF_ARRAY);
    L->arr_elem = b_u32(&b, AERO_GGUF_INT32);
    L->arr_len = b_u64(&b, 3);
    for (int i = 1; i <= 3; i++) b_u32(&b, (uint32_t)i);
    mark(L, L->arr_len);
    mark(L, b.len);
    b_str(&b, "test.sarr");
    b_u32(&b, AERO_GGUF_ARRAY);
    b_u32(&b, AERO_GGUF_STRING);
    L->sarr_len = b_u64(&b, 2);
    b_str(&b, "a");
    L->sarr_e1_len = b_str(&b, "bc");
    mark(L, L->sarr_e1_len);
    mark(L, b.len);
    L->barr_key = b_str(&b, "test.barr") + 8;
    b_u32(&b, AERO_GGUF_ARRAY);
    b_u32(&b, AERO_GGUF_BOOL);
    b_u64(&b, 2);
    b_u8(&b, 0);
    L->barr_e1 = b_u8(&b, 1);
    mark(L, b.len);
    b_str(&b, "test.nested");
    b_u32(&b, AERO_GGUF_ARRAY);
    L->nest_elem = b_u32(&b, AERO_GGUF_ARRAY);
    b_u64(&b, 2);
    L->nest_inner_elem = b_u32(&b, AERO_GGUF_UINT8);
    L->nest_inner_len = b_u64(&b, 2);
    b_u8(&b, 1);
    b_u8(&b, 2);
    b_u32(&b, AERO_GGUF_UINT8);
    b_u64(&b, 0);
    mark(L, L->nest_inner_len);
    mark(L, b.len);
    b_str(&b, "test.f64");
    L->f64_type = b_u32(&b, AERO_GGUF_FLOAT64);
    double d = 1.5;
    b_put(&b, &d, 8);
    L->kv_end = b.len;
    mark(L, b.len);
    static const char *names[3] = {"a", "b", "c"};
    static const uint64_t ne[3][2] = {{32, 2}, {64, 1}, {256, 1}};
    static const uint32_t nd[3] = {2, 1, 2};
    static const uint32_t ty[3] = {AERO_DT_F32, AERO_DT_Q8_0, AERO_DT_Q4_K};
    static const uint64_t off[3] = {0, 256, 352}; // 256 bytes; 68 -> 352; 144 -> 496
    for (int t = 0; t < 3; t++) {
        L->t_name_len[t] = b_str(&b, names[t]);
        L->t_name[t] = L->t_name_len[t] + 8;
        L->t_ndims[t] = b_u32(&b, nd[t]);
        for (uint32_t k = 0; k < nd[t]; k++) L->t_ne[t][k] = b_u64(&b, ne[t][k]);
        L->t_type[t] = b_u32(&b, ty[t]);
        L->t_off[t] = b_u64(&b, off[t]);
        mark(L, L->t_name[t]);
        mark(L, L->t_ndims[t]);
        mark(L, L->t_ne[t][0]);
        mark(L, L->t_type[t]);
        mark(L, L->t_off[t]);
        mark(L, b.len);
    }
    while (b.len % 32) b_u8(&b, 0);
    L->data = b.len;
    for (size_t i = 0; i < 496; i++) b_u8(&b, (uint8_t)(i * 7));
    mark(L, L->data + 256);
    mark(L, L->data + 400);
    return b;
}

static void p32(bbuf *b, size_t at, uint32_t v) { memcpy(b->p + at, &v, 4); }
static void p64(bbuf *b, size_t at, uint64_t v) { memcpy(b->p + at, &v, 8); }

// Replaces bytes [at, at + old_len) by new bytes (for corruptions that change a field's size).
static void img_splice(bbuf *b, size_t at, size_t old_len, const void *src, size_t n) {
    size_t tail = b->len - at - old_len;
    uint8_t *q = malloc(at + n + tail);
    memcpy(q, b->p, at);
    memcpy(q + at, src, n);
    memcpy(q + at + n, b->p + at + old_len, tail);
    free(b->p);
    b->p = q;
    b->len = at + n + tail;
    b->cap = b->len;
}

// Parses an image, expecting an error whose message contains `want` and the image name.
static void expect_error(const char *what, const bbuf *b, const char *want) {
    aero_gguf g;
    aero_error err = {0};
    aero_status s = aero_gguf_parse_buffer(&g, b->p, b->len, NAME, &err);
    CHECKF(s != AERO_OK, "%s: parsed without error", what);
    if (s == AERO_OK) {
        aero_gguf_free(&g);
        return;
    }
    CHECKF(g.kv == NULL && g.tensors == NULL && g.n_kv == 0 && g.files == NULL, "%s: result not cleared", what);
    CHECKF(strstr(err.msg, NAME) != NULL, "%s: message does not name the file: %s", what, err.msg);
    CHECKF(!want || strstr(err.msg, want), "%s: message lacks '%s': %s", what, want, err.msg);
    printf("  %-34s -> %s\n", what, err.msg);
}

typedef void (*corrupt_fn)(bbuf *b, const layout *L);

#define C(name) static void name(bbuf *b, const layout *L)
C(bad_magic) {
    (void)L;
    memcpy(b->p, "GGUX", 4);
}
C(version1) { p32(b, L->version, 1); }
C(version4) { p32(b, L->version, 4); }
C(version_max) { p32(b, L->version, 0xFFFFFFFFu); }
C(big_endian_version) { p32(b, L->version, 0x03000000u); }
C(huge_tensor_count) { p64(b, L->n_tensors, 1ull << 60); }
C(huge_kv_count) { p64(b, L->n_kv, UINT64_MAX); }
C(kv_count_plus_one) { p64(b, L->n_kv, 11); }
C(tensor_count_plus_one) { p64(b, L->n_tensors, 4); }
C(key_len_zero) { p64(b, L->arch_key_len, 0); }
C(key_len_past_eof) { p64(b, L->arch_key_len, 1ull << 40); }
C(key_len_max) { p64(b, L->arch_key_len, UINT64_MAX); }
C(key_with_nul) { b->p[L->arch_key + 3] = 0; }
C(value_type_unknown) { p32(b, L->arch_type, 13); }
C(value_type_max) { p32(b, L->arch_type, 0xFFFFFFFFu); }
C(string_len_past_eof) { p64(b, L->arch_val_len, b->len); }
C(string_len_max) { p64(b, L->arch_val_len, UINT64_MAX - 3); }
C(array_elem_unknown) { p32(b, L->arr_elem, 20); }
C(array_len_huge) { p64(b, L->arr_len, 1ull << 62); }
C(array_len_past_eof) { p64(b, L->arr_len, (b->len - L->arr_len) / 4 + 1); }
C(string_array_len_huge) { p64(b, L->sarr_len, UINT64_MAX); }
C(string_elem_past_eof) { p64(b, L->sarr_e1_len, 1ull << 33); }
C(nested_inner_elem_unknown) { p32(b, L->nest_inner_elem, 99); }
C(nested_inner_len_huge) { p64(b, L->nest_inner_len, 1ull << 50); }
C(bool_value_2) { b->p[L->bool_val] = 2; }
C(bool_array_elem_2) { b->p[L->barr_e1] = 0xFF; }
C(alignment_zero) { p32(b, L->align_val, 0); }
C(alignment_three) { p32(b, L->align_val, 3); }
C(alignment_wrong_type) { p32(b, L->align_type, AERO_GGUF_INT32); }
C(alignment_big) { p32(b, L->align_val, 1u << 20); } // valid power of two, but tensor b's offset 256 is then misaligned
C(duplicate_key) { b->p[L->k2_key + 6] = '1'; }
C(duplicate_key_apart) { memcpy(b->p + L->barr_key, "test.bool", 9); }
C(tensor_name_len_zero) { p64(b, L->t_name_len[1], 0); }
C(tensor_name_past_eof) { p64(b, L->t_name_len[2], 1ull << 32); }
C(tensor_name_nul) { b->p[L->t_name[2]] = 0; }
C(n_dims_zero) { p32(b, L->t_ndims[0], 0); }
C(n_dims_five) { p32(b, L->t_ndims[0], 5); }
C(n_dims_huge) { p32(b, L->t_ndims[0], 0xFFFFFFFFu); }
C(dimension_zero) { p64(b, L->t_ne[0][1], 0); }
C(dimension_over_int64) { p64(b, L->t_ne[0][0], 1ull << 63); }
C(shape_product_overflow) {
    p64(b, L->t_ne[0][0], 1ull << 40);
    p64(b, L->t_ne[0][1], 1ull << 40);
}
C(byte_size_overflow) {
    p64(b, L->t_ne[0][0], 1ull << 62);
    p64(b, L->t_ne[0][1], 1);
}
C(shape_past_eof) { p64(b, L->t_ne[0][1], 1ull << 20); }
C(tensor_type_unknown) { p32(b, L->t_type[1], 99); }
C(tensor_type_hole) { p32(b, L->t_type[1], 4); } // ids 4 and 5 (Q4_2, Q4_3) were removed from ggml
C(tensor_type_count) { p32(b, L->t_type[1], AERO_DT_COUNT); }
C(row_not_block_multiple) { p64(b, L->t_ne[1][0], 48); }
C(row_not_kblock_multiple) {
    p64(b, L->t_ne[2][0], 128);
    p64(b, L->t_ne[2][1], 2);
}
C(offset_misaligned) { p64(b, L->t_off[1], 260); }
C(offset_past_eof) { p64(b, L->t_off[2], 1ull << 40); }
C(offset_wraps) { p64(b, L->t_off[2], UINT64_MAX - 31); }
C(data_end_past_eof) { p64(b, L->t_off[2], 384); } // 384 + 144 > 496 bytes of data
C(overlap_same_offset) { p64(b, L->t_off[1], 0); }
C(overlap_partial) { p64(b, L->t_off[1], 224); }
C(overlap_reordered) {
    p64(b, L->t_off[0], 352);
    p64(b, L->t_off[2], 0);
} // c's 144 bytes then a at 352? c: [0,144) fine; a [352,608) past eof
C(duplicate_tensor) { b->p[L->t_name[1]] = 'a'; }
C(duplicate_tensor_last) { b->p[L->t_name[2]] = 'a'; }
#undef C

// Corruptions that change a field's size or add structure.
static void deep_nesting(bbuf *b, const layout *L) {
    bbuf n = {0};
    for (int i = 0; i < 9; i++) {
        b_u32(&n, AERO_GGUF_ARRAY);
        b_u64(&n, 1);
    }
    b_u32(&n, AERO_GGUF_UINT8);
    b_u64(&n, 0);
    // Replace test.nested's body (element type onwards) with 10 levels of arrays.
    size_t f64_entry = L->f64_type - 8 - 8; // key length field of "test.f64", where test.nested's body ends
    img_splice(b, L->nest_elem, f64_entry - L->nest_elem, n.p, n.len);
    free(n.p);
}

static void empty_key_string_value(bbuf *b, const layout *L) {
    // A key of length 0 in the middle: remove the bytes of "test.k2" (7) and set its length to 0.
    size_t len_at = L->k2_key - 8;
    p64(b, len_at, 0);
    img_splice(b, L->k2_key, 7, "", 0);
}

static const struct {
    const char *name;
    corrupt_fn fn;
    const char *want;
} table[] = {
    {"bad magic", bad_magic, "not a GGUF"},
    {"version 1", version1, "version 1 "},
    {"version 4", version4, "version 4 "},
    {"version 0xffffffff", version_max, "version 4294967295"},
    {"big-endian file", big_endian_version, "not supported"},
    {"huge tensor count", huge_tensor_count, "tensor count"},
    {"huge metadata count", huge_kv_count, "metadata count"},
    {"metadata count + 1", kv_count_plus_one, NULL},
    {"tensor count + 1", tensor_count_plus_one, "tensor 3"},
    {"key length 0", key_len_zero, "invalid key"},
    {"key length past EOF", key_len_past_eof, "metadata 0 key"},
    {"key length UINT64_MAX", key_len_max, "past end of file"},
    {"key with NUL", key_with_nul, "contains NUL"},
    {"unknown value type 13", value_type_unknown, "unknown value type 13"},
    {"value type 0xffffffff", value_type_max, "unknown value type 4294967295"},
    {"string length past EOF", string_len_past_eof, "metadata 'general.architecture' string value"},
    {"string length near UINT64_MAX", string_len_max, "string length"},
    {"unknown array element type", array_elem_unknown, "unknown array element type 20"},
    {"array length 2^62", array_len_huge, "array of 4611686018427387904 int32"},
    {"array length 1 past EOF", array_len_past_eof, "past end of file"},
    {"string array length max", string_array_len_huge, "metadata 'test.sarr'"},
    {"string element past EOF", string_elem_past_eof, "test.sarr' element 1"},
    {"nested element type unknown", nested_inner_elem_unknown, "test.nested' element 0"},
    {"nested length huge", nested_inner_len_huge, "test.nested' element 0"},
    {"nested arrays too deep", deep_nesting, "nested deeper than 8"},
    {"bool value 2", bool_value_2, "bool has value 2"},
    {"bool array element 255", bool_array_elem_2, "bool element 1 has value 255"},
    {"general.alignment 0", alignment_zero, "power of two"},
    {"general.alignment 3", alignment_three, "is 3, must be a power of two"},
    {"general.alignment int32", alignment_wrong_type, "must be uint32"},
    {"general.alignment 1 MiB", alignment_big, "not a multiple of the alignment 1048576"},
    {"duplicate key", duplicate_key, "duplicate metadata key 'test.k1'"},
    {"duplicate key (apart)", duplicate_key_apart, "duplicate metadata key 'test.bool'"},
    {"empty key mid-table", empty_key_string_value, "metadata 4 key"},
    {"tensor name length 0", tensor_name_len_zero, "tensor 1"},
    {"tensor name past EOF", tensor_name_past_eof, "tensor 2 name"},
    {"tensor name with NUL", tensor_name_nul, "contains NUL"},
    {"n_dims 0", n_dims_zero, "n_dims"},
    {"n_dims 5", n_dims_five, "5 not in [1, 4]"},
    {"n_dims 0xffffffff", n_dims_huge, "n_dims"},
    {"dimension 0", dimension_zero, "dimension 1 at offset"},
    {"dimension 2^63", dimension_over_int64, "overflow"},
    {"shape product overflow", shape_product_overflow, "tensor 'a' dimension 1"},
    {"byte size overflow", byte_size_overflow, "byte size"},
    {"shape past EOF", shape_past_eof, "tensor 'a' data"},
    {"unknown tensor type 99", tensor_type_unknown, "unknown tensor type 99"},
    {"removed tensor type 4", tensor_type_hole, "unknown tensor type 4"},
    {"tensor type = count", tensor_type_count, "unknown tensor type"},
    {"row not a multiple of Q8_0", row_not_block_multiple, "row length 48 is not a multiple of the Q8_0 block"},
    {"row not a multiple of Q4_K", row_not_kblock_multiple, "Q4_K block size 256"},
    {"misaligned offset", offset_misaligned, "260 is not a multiple of the alignment 32"},
    {"offset past EOF", offset_past_eof, "tensor 'c' data"},
    {"offset wraps around", offset_wraps, "past end of file"},
    {"data end past EOF", data_end_past_eof, "tensor 'c' data"},
    {"tensors at the same offset", overlap_same_offset, "overlaps"},
    {"tensors overlapping", overlap_partial, "overlaps tensor 'b'"},
    {"reordered, one past EOF", overlap_reordered, "past end of file"},
    {"duplicate tensor name", duplicate_tensor, "duplicate tensor name 'a'"},
    {"duplicate tensor name (last)", duplicate_tensor_last, "duplicate tensor name 'a'"},
};

static void test_table(void) {
    layout L;
    bbuf base = build(&L);
    aero_gguf g;
    aero_error err = {0};
    CHECKF(aero_gguf_parse_buffer(&g, base.p, base.len, NAME, &err) == AERO_OK, "valid image: %s", err.msg);
    CHECK(g.n_kv == 10 && g.n_tensors == 3 && g.files[0].data_offset == L.data);
    CHECK(g.tensors[1].offset == L.data + 256 && g.tensors[1].nbytes == 68 && g.tensors[2].nbytes == 144);
    const aero_gguf_value *nested = aero_gguf_get(&g, "test.nested");
    CHECK(nested && nested->arr.n == 2 && ((aero_gguf_value *)nested->arr.data)[1].arr.n == 0);
    aero_gguf_free(&g);
    size_t n = sizeof table / sizeof *table;
    CHECKF(n >= 30, "only %zu corruptions", n);
    printf("corruption table (%zu entries):\n", n);
    for (size_t i = 0; i < n; i++) {
        bbuf b = {.p = malloc(base.len), .len = base.len, .cap = base.len};
        memcpy(b.p, base.p, base.len);
        table[i].fn(&b, &L);
        expect_error(table[i].name, &b, table[i].want);
        free(b.p);
    }
    // Truncation at every field boundary (and at every byte) is an error that names an offset.
    printf("truncations at %d field boundaries:\n", L.n_boundaries);
    for (int i = 0; i < L.n_boundaries; i++) {
        bbuf b = {.p = malloc(base.len), .len = L.boundaries[i], .cap = base.len};
        memcpy(b.p, base.p, base.len);
        char what[64];
        snprintf(what, sizeof what, "truncated at %zu", L.boundaries[i]);
        expect_error(what, &b, L.boundaries[i] < L.data ? "offset" : "past end of file");
        free(b.p);
    }
    int errors = 0;
    for (size_t cut = 0; cut < base.len; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1); // exact-size copy: ASan catches any read past it
        memcpy(copy, base.p, cut);
        aero_status s = aero_gguf_parse_buffer(&g, copy, cut, NAME, &err);
        errors += s != AERO_OK;
        if (s == AERO_OK) aero_gguf_free(&g);
        free(copy);
    }
    CHECKF(errors == (int)base.len, "%d of %zu truncations gave an error", errors, base.len);
    CHECK(aero_gguf_parse_buffer(&g, NULL, 0, NULL, &err) != AERO_OK && strstr(err.msg, "magic"));
    // Trailing bytes after the data are allowed (files are often padded).
    bbuf b = {.p = malloc(base.len + 100), .len = base.len + 100, .cap = base.len + 100};
    memcpy(b.p, base.p, base.len);
    memset(b.p + base.len, 0xAB, 100);
    CHECK(aero_gguf_parse_buffer(&g, b.p, b.len, NAME, &err) == AERO_OK);
    aero_gguf_free(&g);
    free(b.p);
    free(base.p);
}

// ---------------------------------------------------------------------------------------------------------
// The real stories260K file: truncations of its header region and byte flips never crash.

static uint64_t rng = 88172645463325252ull;
static uint64_t xorshift(void) { return test_xorshift64(&rng); }

static void test_real_file(void) {
    const char *path = SHARED_DATA "/models/stories260K.gguf";
    FILE *f = fopen(path, "rb");
    if (!f) {
        printf("note: %s not found, real-file truncations skipped\n", path);
        return;
    }
    fseek(f, 0, SEEK_END);
    size_t size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *img = malloc(size);
    CHECK(fread(img, 1, size, f) == size);
    fclose(f);
    aero_gguf g;
    aero_error err = {0};
    CHECK(aero_gguf_parse_buffer(&g, img, size, "stories260K.gguf", &err) == AERO_OK);
    size_t header = (size_t)g.files[0].data_offset;
    aero_gguf_free(&g);
    // Every cut inside the header region, into an exact-size buffer.
    int errors = 0, cuts = 0;
    for (size_t cut = 0; cut <= header + 64; cut++, cuts++) {
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, img, cut);
        aero_status s = aero_gguf_parse_buffer(&g, copy, cut, "stories260K.gguf", &err);
        if (s == AERO_OK) aero_gguf_free(&g);
        else errors++;
        free(copy);
    }
    CHECKF(errors == cuts, "%d of %d header truncations gave an error", errors, cuts);
    // The same through files (the pread path), at a stride plus the last bytes of the file.
    char tmp[] = "/tmp/aero_trunc_XXXXXX";
    int fd = mkstemp(tmp);
    CHECK(fd >= 0);
    int file_errors = 0, file_cuts = 0;
    for (size_t cut = 0; cut < size && fd >= 0; cut += cut < header ? 379 : 65537) {
        CHECK(ftruncate(fd, 0) == 0 && pwrite(fd, img, cut, 0) == (ssize_t)cut);
        aero_status s = aero_gguf_open(&g, tmp, &err);
        file_cuts++;
        if (s == AERO_OK) aero_gguf_free(&g);
        else file_errors += strstr(err.msg, tmp) != NULL;
    }
    CHECKF(file_errors == file_cuts, "%d of %d file truncations gave an error naming the file", file_errors, file_cuts);
    CHECK(ftruncate(fd, 0) == 0 && pwrite(fd, img, size - 1, 0) == (ssize_t)(size - 1));
    CHECK(aero_gguf_open(&g, tmp, &err) != AERO_OK && strstr(err.msg, "past end of file"));
    if (fd >= 0) close(fd);
    unlink(tmp);
    // Random byte flips in the header region of the whole image (restored after each parse): any outcome but
    // a crash (ASan/UBSan watch the reads); flips inside strings and values still parse.
    int ok = 0, bad = 0;
    for (int it = 0; it < 3000; it++) {
        size_t at[4];
        uint8_t old[4];
        int flips = 1 + (int)(xorshift() % 4);
        for (int k = 0; k < flips; k++) {
            at[k] = (size_t)(xorshift() % header);
            old[k] = img[at[k]];
            uint64_t r = xorshift();
            img[at[k]] = r & 1 ? (uint8_t)(r >> 8) : (uint8_t)(img[at[k]] ^ (1u << ((r >> 8) & 7)));
        }
        aero_status s = aero_gguf_parse_buffer(&g, img, size, "flip", &err);
        if (s == AERO_OK) {
            ok++;
            aero_gguf_free(&g);
        } else {
            bad++;
            CHECK(err.msg[0] != 0);
        }
        for (int k = flips - 1; k >= 0; k--) img[at[k]] = old[k];
    }
    printf("byte flips: %d parsed, %d refused\n", ok, bad);
    CHECK(ok > 0 && bad > 0);
    free(img);
}

int main(void) {
    test_table();
    test_real_file();
    return check_done("test_gguf_malformed");
}
