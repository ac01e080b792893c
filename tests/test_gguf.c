// GGUF reader on the real files in ../shared/data (header counts read independently here, values spot-checked
// against what the files are known to hold), and writer -> reader round trips of every metadata type and every
// computable tensor type, including producers that fail (no file may be left behind).
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "helpers.h"
#include "format/gguf.h"

// ---------------------------------------------------------------------------------------------------------
// Real files

// Reads the header counts straight from the file, without the reader, so the reader is checked against them.
static bool raw_header(const char *path, uint32_t *version, uint64_t *n_tensors, uint64_t *n_kv) {
    uint8_t h[24];
    int fd = open(path, O_RDONLY);
    if (fd < 0) return false;
    bool ok = pread(fd, h, 24, 0) == 24 && !memcmp(h, "GGUF", 4);
    close(fd);
    memcpy(version, h + 4, 4);
    memcpy(n_tensors, h + 8, 8);
    memcpy(n_kv, h + 16, 8);
    return ok;
}

static uint64_t file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

// Every .gguf under a folder parses, agrees with the raw header, and its tensor table lies inside the file.
static int check_folder(const char *dir) {
    DIR *d = opendir(dir);
    CHECKF(d != NULL, "cannot open %s", dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 5, ".gguf")) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        aero_gguf g;
        aero_error err = {0};
        aero_status s = aero_gguf_open(&g, path, &err);
        CHECKF(s == AERO_OK, "%s: %s", path, err.msg);
        if (s) continue;
        n++;
        uint32_t ver = 0;
        uint64_t nt = 0, nkv = 0;
        CHECK(raw_header(path, &ver, &nt, &nkv));
        CHECKF(g.version == ver && g.n_tensors == nt && g.n_kv == nkv, "%s: header %u/%llu/%llu vs %u/%llu/%llu", path,
               g.version, (unsigned long long)g.n_tensors, (unsigned long long)g.n_kv, ver, (unsigned long long)nt,
               (unsigned long long)nkv);
        uint64_t size = file_size(path);
        CHECK(g.n_files == 1 && g.files[0].size == size);
        CHECK(g.files[0].data_offset % g.alignment == 0);
        for (uint64_t i = 0; i < g.n_tensors; i++) {
            const aero_tensor_info *t = &g.tensors[i];
            CHECKF(t->offset >= g.files[0].data_offset && t->offset + t->nbytes <= size &&
                       (t->offset - g.files[0].data_offset) % g.alignment == 0,
                   "%s: tensor %s at %llu", path, t->name, (unsigned long long)t->offset);
            CHECK(t->nbytes == aero_dtype_row_bytes(t->type, t->ne[0]) * (t->n_elements / t->ne[0]));
        }
        for (uint64_t i = 0; i < g.n_kv; i++) CHECK(g.kv[i].key.len > 0 && g.kv[i].key.ptr);
        aero_gguf_free(&g);
    }
    closedir(d);
    return n;
}

static int64_t get_int(const aero_gguf *g, const char *key) {
    int64_t v = -12345;
    CHECKF(aero_gguf_get_i64(g, key, &v), "key %s", key);
    return v;
}

// Counts tensors of a type, and of a type among the 2-D ones.
static void count_types(const aero_gguf *g, aero_dtype t, int *all, int *two_d) {
    *all = *two_d = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].type == t) {
            (*all)++;
            if (g->tensors[i].n_dims == 2) (*two_d)++;
        }
}

static void test_stories(void) {
    aero_gguf g;
    aero_error err = {0};
    const char *path = SHARED_DATA "/models/stories260K.gguf";
    CHECKF(aero_gguf_open(&g, path, &err) == AERO_OK, "%s", err.msg);
    CHECK(g.version == 3 && g.n_kv == 19 && g.n_tensors == 48 && g.alignment == 32);
    CHECK(g.files[0].data_offset == 14176); // header ends at 14152 (counted by a separate script), aligned up to 32
    const char *arch = aero_gguf_get_str(&g, "general.architecture");
    CHECK(arch && !strcmp(arch, "llama"));
    CHECK(get_int(&g, "llama.block_count") == 5);
    CHECK(get_int(&g, "llama.embedding_length") == 64);
    CHECK(get_int(&g, "llama.feed_forward_length") == 172);
    CHECK(get_int(&g, "llama.attention.head_count") == 8);
    CHECK(get_int(&g, "llama.attention.head_count_kv") == 4);
    CHECK(get_int(&g, "llama.context_length") == 2048);
    CHECK(get_int(&g, "llama.rope.dimension_count") == 8);
    CHECK(get_int(&g, "tokenizer.ggml.bos_token_id") == 1);
    uint64_t sep = 0;
    CHECK(aero_gguf_get_u64(&g, "tokenizer.ggml.seperator_token_id", &sep) && sep == 4294967295u);
    double eps = 0;
    CHECK(aero_gguf_get_f64(&g, "llama.attention.layer_norm_rms_epsilon", &eps) && fabs(eps - 1e-5) < 1e-9);
    const aero_gguf_value *tokens = aero_gguf_get(&g, "tokenizer.ggml.tokens");
    CHECK(tokens && tokens->type == AERO_GGUF_ARRAY && tokens->arr.elem == AERO_GGUF_STRING && tokens->arr.n == 512);
    const aero_gguf_str *s0 = aero_gguf_arr_str(tokens, 0), *s1 = aero_gguf_arr_str(tokens, 1);
    CHECK(s0 && !strcmp(s0->ptr, "<unk>") && s1 && !strcmp(s1->ptr, "<s>"));
    CHECK(aero_gguf_arr_str(tokens, 512) == NULL);
    const aero_gguf_value *scores = aero_gguf_get(&g, "tokenizer.ggml.scores");
    CHECK(scores && scores->arr.elem == AERO_GGUF_FLOAT32 && scores->arr.n == 512);
    const aero_gguf_value *types = aero_gguf_get(&g, "tokenizer.ggml.token_type");
    int64_t t0 = 0, t1 = 0;
    CHECK(types && types->arr.elem == AERO_GGUF_INT32 && aero_gguf_arr_i64(types, 0, &t0) &&
          aero_gguf_arr_i64(types, 1, &t1) && t0 == 2 && t1 == 3);
    int f32, f32_2d;
    count_types(&g, AERO_DT_F32, &f32, &f32_2d);
    CHECK(f32 == 48);
    const aero_tensor_info *te = aero_gguf_tensor(&g, "token_embd.weight");
    CHECK(te && te->n_dims == 2 && te->ne[0] == 64 && te->ne[1] == 512 && te->nbytes == 64 * 512 * 4 &&
          te->offset == 14176);
    const aero_tensor_info *on = aero_gguf_tensor(&g, "output_norm.weight");
    CHECK(on && on->n_dims == 1 && on->ne[0] == 64 && on->ne[1] == 1 && on->offset == 14176 + 131072);
    const aero_tensor_info *fd = aero_gguf_tensor(&g, "blk.0.ffn_down.weight");
    CHECK(fd && fd->ne[0] == 172 && fd->ne[1] == 64 && fd->offset == 14176 + 355840);
    CHECK(aero_gguf_tensor(&g, "blk.4.ffn_up.weight") && !aero_gguf_tensor(&g, "blk.5.ffn_up.weight"));
    CHECK(aero_gguf_tensor_index(&g, "nope") == -1);
    // The norms of a trained model are positive numbers of order 1: read one to check the offset is real.
    float w[64];
    int fdesc = open(path, O_RDONLY);
    CHECK(fdesc >= 0 && pread(fdesc, w, sizeof w, (off_t)on->offset) == (ssize_t)sizeof w);
    if (fdesc >= 0) close(fdesc);
    int sane = 0;
    for (int i = 0; i < 64; i++) sane += isfinite(w[i]) && fabsf(w[i]) > 0.01f && fabsf(w[i]) < 100.f;
    CHECKF(sane == 64, "output_norm values look wrong (%d sane)", sane);
    aero_gguf_free(&g);
    CHECK(g.n_kv == 0 && g.kv == NULL && g.tensors == NULL);
}

// The quantized variants: matrices of the file's type except ffn_down (172 columns) and the norms (F32).
static void test_variant(const char *file, aero_dtype type, int file_type, int n_quant, int n_f32) {
    aero_gguf g;
    aero_error err = {0};
    char path[512];
    snprintf(path, sizeof path, SHARED_DATA "/models/%s", file);
    CHECKF(aero_gguf_open(&g, path, &err) == AERO_OK, "%s", err.msg);
    if (err.code) return;
    int q, q2, f, f2;
    count_types(&g, type, &q, &q2);
    count_types(&g, AERO_DT_F32, &f, &f2);
    CHECKF(q == n_quant && q2 == n_quant && f == n_f32, "%s: %d %s, %d F32", file, q, aero_dtype_name(type), f);
    CHECK(get_int(&g, "general.file_type") == file_type);
    CHECK(g.n_tensors == 48);
    const aero_tensor_info *fd = aero_gguf_tensor(&g, "blk.2.ffn_down.weight");
    CHECK(fd && fd->type == (type == AERO_DT_F16 ? AERO_DT_F16 : AERO_DT_F32));
    const aero_tensor_info *q0 = aero_gguf_tensor(&g, "blk.0.attn_q.weight");
    CHECK(q0 && q0->type == type && q0->nbytes == aero_dtype_row_bytes(type, 64) * 64);
    for (uint64_t i = 0; i < g.n_tensors; i++)
        if (g.tensors[i].n_dims == 1) CHECK(g.tensors[i].type == AERO_DT_F32);
    aero_gguf_free(&g);
}

static void test_tiny_random(void) {
    aero_gguf g;
    aero_error err = {0};
    CHECKF(aero_gguf_open(&g, SHARED_DATA "/models/llama-2-tiny-random.gguf", &err) == AERO_OK, "%s", err.msg);
    if (err.code) return;
    CHECK(g.n_tensors == 12 && g.n_kv == 18 && g.files[0].data_offset == 724416);
    const aero_gguf_value *tokens = aero_gguf_get(&g, "tokenizer.ggml.tokens");
    CHECK(tokens && tokens->arr.n == 32000);
    const aero_gguf_str *last = aero_gguf_arr_str(tokens, 31999);
    CHECK(last && last->len > 0);
    const char *name = aero_gguf_get_str(&g, "general.name");
    CHECK(name && !strcmp(name, "LLaMA v2"));
    CHECK(get_int(&g, "llama.block_count") == 1 && get_int(&g, "llama.embedding_length") == 8);
    const aero_tensor_info *te = aero_gguf_tensor(&g, "token_embd.weight"),
                           *out = aero_gguf_tensor(&g, "output.weight");
    CHECK(te && out && te != out && te->offset != out->offset);
    CHECK(te && te->type == AERO_DT_F16 && te->ne[0] == 8 && te->ne[1] == 32000 && te->nbytes == 8 * 32000 * 2);
    CHECK(out && out->type == AERO_DT_F16 && out->ne[1] == 32000 && out->offset == 724416 + 514144);
    int f16, f16_2d;
    count_types(&g, AERO_DT_F16, &f16, &f16_2d);
    CHECK(f16 == 9 && f16_2d == 9);
    aero_gguf_free(&g);
}

static void test_vocab_gpt2(void) {
    aero_gguf g;
    aero_error err = {0};
    CHECKF(aero_gguf_open(&g, SHARED_DATA "/vocab/ggml-vocab-gpt-2.gguf", &err) == AERO_OK, "%s", err.msg);
    if (err.code) return;
    CHECK(g.n_tensors == 0);
    const char *model = aero_gguf_get_str(&g, "tokenizer.ggml.model");
    CHECK(model && !strcmp(model, "gpt2"));
    const aero_gguf_value *tokens = aero_gguf_get(&g, "tokenizer.ggml.tokens");
    const aero_gguf_value *merges = aero_gguf_get(&g, "tokenizer.ggml.merges");
    CHECK(tokens && tokens->arr.n == 50257 && merges && merges->arr.n == 50000);
    const aero_gguf_str *m0 = aero_gguf_arr_str(merges, 0);
    CHECK(m0 && m0->len == 4 && !memcmp(m0->ptr, "\xc4\xa0 t", 4));
    aero_gguf_free(&g);
}

static void test_real_files(void) {
    if (access(SHARED_DATA "/models", R_OK) != 0) {
        printf("note: ../shared/data not found, real-file checks skipped\n");
        return;
    }
    int n = check_folder(SHARED_DATA "/models") + check_folder(SHARED_DATA "/vocab");
    CHECKF(n >= 12, "only %d GGUF files parsed", n);
    test_stories();
    test_variant("stories260K-F16.gguf", AERO_DT_F16, 1, 37, 11);
    test_variant("stories260K-Q8_0.gguf", AERO_DT_Q8_0, 7, 32, 16);
    test_variant("stories260K-Q4_0.gguf", AERO_DT_Q4_0, 2, 32, 16);
    test_tiny_random();
    test_vocab_gpt2();
    aero_gguf g;
    aero_error err = {0};
    CHECK(aero_gguf_open(&g, SHARED_DATA "/models/stories260K.bin", &err) == AERO_ERR_FORMAT &&
          strstr(err.msg, "not a GGUF") && strstr(err.msg, "stories260K.bin"));
    CHECK(aero_gguf_open(&g, SHARED_DATA "/models/no-such-file.gguf", &err) == AERO_ERR_IO &&
          strstr(err.msg, "no-such-file.gguf"));
    CHECK(aero_gguf_open(&g, SHARED_DATA "/models", &err) == AERO_ERR_IO && strstr(err.msg, "not a regular file"));
}

// ---------------------------------------------------------------------------------------------------------
// Round trip

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) { return test_splitmix64(&rng_state); }
static void rnd_bytes(void *p, size_t n) {
    uint8_t *b = p;
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)rnd();
}

// Deep equality of two values; float32 compared as the float the file holds, floats by bits (NaN, -0).
static bool value_eq(const aero_gguf_value *a, const aero_gguf_value *b) {
    if (a->type != b->type) return false;
    switch (a->type) {
    case AERO_GGUF_STRING: return a->str.len == b->str.len && !memcmp(a->str.ptr, b->str.ptr, a->str.len);
    case AERO_GGUF_FLOAT32: {
        float x = (float)a->f64, y = (float)b->f64;
        return !memcmp(&x, &y, 4);
    }
    case AERO_GGUF_FLOAT64: return !memcmp(&a->f64, &b->f64, 8);
    case AERO_GGUF_INT8:
    case AERO_GGUF_INT16:
    case AERO_GGUF_INT32:
    case AERO_GGUF_INT64: return a->i64 == b->i64;
    case AERO_GGUF_ARRAY:
        if (a->arr.elem != b->arr.elem || a->arr.n != b->arr.n) return false;
        for (uint64_t i = 0; i < a->arr.n; i++) {
            if (a->arr.elem == AERO_GGUF_STRING) {
                const aero_gguf_str *x = aero_gguf_arr_str(a, i), *y = aero_gguf_arr_str(b, i);
                if (x->len != y->len || memcmp(x->ptr, y->ptr, x->len)) return false;
            } else if (a->arr.elem == AERO_GGUF_ARRAY) {
                if (!value_eq(&((aero_gguf_value *)a->arr.data)[i], &((aero_gguf_value *)b->arr.data)[i])) return false;
            }
        }
        if (a->arr.elem != AERO_GGUF_STRING && a->arr.elem != AERO_GGUF_ARRAY && a->arr.n)
            return !memcmp(a->arr.data, b->arr.data, a->arr.n * aero_gguf_type_size(a->arr.elem));
        return true;
    default: return a->u64 == b->u64;
    }
}

#define MAX_KV 64
typedef struct {
    const char *key;
    aero_gguf_value v;
} expect_kv;

static expect_kv expected[MAX_KV];
static int n_expected;

static void expect(aero_gguf_writer *w, const char *key, aero_gguf_value v) {
    aero_gguf_set_value(w, key, &v);
    for (int i = 0; i < n_expected; i++)
        if (!strcmp(expected[i].key, key)) {
            expected[i].v = v;
            return;
        }
    expected[n_expected].key = key;
    expected[n_expected++].v = v;
}

#define SCALAR(t_, field_, x_) ((aero_gguf_value){.type = (t_), .field_ = (x_)})
#define ARRAY(t_, n_, p_) \
    ((aero_gguf_value){.type = AERO_GGUF_ARRAY, .arr = {.elem = (t_), .n = (n_), .data = (void *)(p_)}})

// Sets one key of every type and every array form, recording what the reader must return.
static void set_all_metadata(aero_gguf_writer *w) {
    static uint8_t u8s[] = {0, 1, 255};
    static int8_t i8s[] = {-128, 0, 127};
    static uint16_t u16s[] = {0, 65535, 1234};
    static int16_t i16s[] = {-32768, 32767};
    static uint32_t u32s[] = {0, 4294967295u, 7};
    static int32_t i32s[] = {INT32_MIN, -1, INT32_MAX};
    static float f32s[] = {0.0f, -0.0f, 1.5f, -3.25e-38f, 1e-45f, INFINITY};
    static uint8_t bools[] = {1, 0, 1, 1};
    static uint64_t u64s[] = {0, UINT64_MAX, 1ull << 53};
    static int64_t i64s[] = {INT64_MIN, -2, INT64_MAX};
    static double f64s[] = {3.141592653589793, -0.0, 1e308, 4.9e-324, -INFINITY};
    static aero_gguf_str strs[] = {
        {0, ""}, {5, "a\0b\0c"}, {12, "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98"}, {3, "\xf0\x9f\x98"}};
    static aero_gguf_str strs2[] = {{1, "x"}};
    static uint8_t in_a[] = {1, 2, 3};
    static uint8_t in_b[] = {4};
    static aero_gguf_value inner_u8[] = {ARRAY(AERO_GGUF_UINT8, 3, in_a), ARRAY(AERO_GGUF_UINT8, 0, NULL),
                                         ARRAY(AERO_GGUF_UINT8, 1, in_b)};
    static aero_gguf_value inner_str[] = {ARRAY(AERO_GGUF_STRING, 4, strs), ARRAY(AERO_GGUF_STRING, 1, strs2)};
    static aero_gguf_value deep1[] = {ARRAY(AERO_GGUF_ARRAY, 3, inner_u8), ARRAY(AERO_GGUF_ARRAY, 0, NULL),
                                      ARRAY(AERO_GGUF_ARRAY, 2, inner_str)};
    static aero_gguf_value deep2[] = {ARRAY(AERO_GGUF_ARRAY, 3, deep1)};
    static aero_gguf_value empty_inner[] = {ARRAY(AERO_GGUF_FLOAT64, 0, NULL)};
    n_expected = 0;
    expect(w, "general.architecture", SCALAR(AERO_GGUF_STRING, str, ((aero_gguf_str){5, "llama"})));
    expect(w, "t.u8", SCALAR(AERO_GGUF_UINT8, u64, 255));
    expect(w, "t.i8", SCALAR(AERO_GGUF_INT8, i64, -128));
    expect(w, "t.u16", SCALAR(AERO_GGUF_UINT16, u64, 65535));
    expect(w, "t.i16", SCALAR(AERO_GGUF_INT16, i64, -32768));
    expect(w, "t.u32", SCALAR(AERO_GGUF_UINT32, u64, 4294967295u));
    expect(w, "t.i32", SCALAR(AERO_GGUF_INT32, i64, INT32_MIN));
    expect(w, "t.f32", SCALAR(AERO_GGUF_FLOAT32, f64, 0.1f));
    expect(w, "t.f32nan", SCALAR(AERO_GGUF_FLOAT32, f64, NAN));
    expect(w, "t.bool0", SCALAR(AERO_GGUF_BOOL, u64, 0));
    expect(w, "t.bool1", SCALAR(AERO_GGUF_BOOL, u64, 1));
    expect(w, "t.str", SCALAR(AERO_GGUF_STRING, str, strs[2]));
    expect(w, "t.str_nul", SCALAR(AERO_GGUF_STRING, str, strs[1]));
    expect(w, "t.str_empty", SCALAR(AERO_GGUF_STRING, str, strs[0]));
    expect(w, "t.u64", SCALAR(AERO_GGUF_UINT64, u64, UINT64_MAX));
    expect(w, "t.i64", SCALAR(AERO_GGUF_INT64, i64, INT64_MIN));
    expect(w, "t.f64", SCALAR(AERO_GGUF_FLOAT64, f64, -1.0 / 3.0));
    expect(w, "t.a.u8", ARRAY(AERO_GGUF_UINT8, 3, u8s));
    expect(w, "t.a.i8", ARRAY(AERO_GGUF_INT8, 3, i8s));
    expect(w, "t.a.u16", ARRAY(AERO_GGUF_UINT16, 3, u16s));
    expect(w, "t.a.i16", ARRAY(AERO_GGUF_INT16, 2, i16s));
    expect(w, "t.a.u32", ARRAY(AERO_GGUF_UINT32, 3, u32s));
    expect(w, "t.a.i32", ARRAY(AERO_GGUF_INT32, 3, i32s));
    expect(w, "t.a.f32", ARRAY(AERO_GGUF_FLOAT32, 6, f32s));
    expect(w, "t.a.bool", ARRAY(AERO_GGUF_BOOL, 4, bools));
    expect(w, "t.a.str", ARRAY(AERO_GGUF_STRING, 4, strs));
    expect(w, "t.a.u64", ARRAY(AERO_GGUF_UINT64, 3, u64s));
    expect(w, "t.a.i64", ARRAY(AERO_GGUF_INT64, 3, i64s));
    expect(w, "t.a.f64", ARRAY(AERO_GGUF_FLOAT64, 5, f64s));
    for (int t = 0; t < AERO_GGUF_TYPE_COUNT; t++) {
        static char keys[AERO_GGUF_TYPE_COUNT][32];
        snprintf(keys[t], sizeof keys[t], "t.empty.%s", aero_gguf_type_name((aero_gguf_type)t));
        expect(w, keys[t], ARRAY((aero_gguf_type)t, 0, NULL));
    }
    expect(w, "t.nested", ARRAY(AERO_GGUF_ARRAY, 3, inner_u8));
    expect(w, "t.nested_str", ARRAY(AERO_GGUF_ARRAY, 2, inner_str));
    expect(w, "t.deep", ARRAY(AERO_GGUF_ARRAY, 1, deep2));
    expect(w, "t.nested_empty", ARRAY(AERO_GGUF_ARRAY, 1, empty_inner));
    // Replacing a key keeps one entry with the new value.
    expect(w, "t.replaced", SCALAR(AERO_GGUF_UINT32, u64, 1));
    expect(w, "t.replaced", SCALAR(AERO_GGUF_STRING, str, strs[2]));
    // The typed setters.
    aero_gguf_set_u32(w, "s.u32", 42);
    aero_gguf_set_i32(w, "s.i32", -42);
    aero_gguf_set_u64(w, "s.u64", 1ull << 40);
    aero_gguf_set_f32(w, "s.f32", 0.25f);
    aero_gguf_set_bool(w, "s.bool", true);
    aero_gguf_set_str(w, "s.str", "hello");
    const char *list[] = {"a", "", "\xe2\x96\x81the"};
    aero_gguf_set_arr_str(w, "s.arr_str", list, 3);
    int32_t ints[] = {5, -6};
    aero_gguf_set_arr(w, "s.arr_i32", AERO_GGUF_INT32, ints, 2);
}

// Checks the typed setters' keys through the typed getters.
static void check_setters(const aero_gguf *g) {
    uint64_t u;
    int64_t i;
    double f;
    bool b;
    CHECK(aero_gguf_get_u64(g, "s.u32", &u) && u == 42);
    CHECK(aero_gguf_get_i64(g, "s.i32", &i) && i == -42);
    CHECK(!aero_gguf_get_u64(g, "s.i32", &u)); // negative: not representable
    CHECK(aero_gguf_get_u64(g, "s.u64", &u) && u == 1ull << 40);
    CHECK(aero_gguf_get_f64(g, "s.f32", &f) && f == 0.25);
    CHECK(aero_gguf_get_bool(g, "s.bool", &b) && b);
    CHECK(!aero_gguf_get_bool(g, "s.u32", &b));
    const char *s = aero_gguf_get_str(g, "s.str");
    CHECK(s && !strcmp(s, "hello"));
    CHECK(aero_gguf_get_str(g, "s.u32") == NULL && aero_gguf_get(g, "absent") == NULL);
    const aero_gguf_value *a = aero_gguf_get(g, "s.arr_str");
    CHECK(a && a->arr.n == 3 && aero_gguf_arr_str(a, 1)->len == 0 &&
          !strcmp(aero_gguf_arr_str(a, 2)->ptr, "\xe2\x96\x81the"));
    const aero_gguf_value *ai = aero_gguf_get(g, "s.arr_i32");
    CHECK(ai && aero_gguf_arr_i64(ai, 1, &i) && i == -6 && aero_gguf_arr_f64(ai, 0, &f) && f == 5.0);
    CHECK(!aero_gguf_arr_i64(ai, 2, &i));
    uint64_t big = 0;
    CHECK(!aero_gguf_get_i64(g, "t.u64", (int64_t *)&big)); // UINT64_MAX does not fit int64
    CHECK(aero_gguf_get_u64(g, "t.u64", &big) && big == UINT64_MAX);
}

typedef struct {
    uint8_t *bytes; // expected content
    uint64_t nbytes;
    uint64_t row_bytes;
    uint64_t next_row; // rows producer: the next row0 expected (order check)
    int calls;
    int fail_at_call; // 0 = never
} producer;

static bool fill_whole(void *ctx, void *dst, uint64_t nbytes, aero_error *err) {
    producer *p = ctx;
    p->calls++;
    if (p->fail_at_call && p->calls >= p->fail_at_call) {
        aero_fail(err, AERO_ERR_IO, "synthetic failure of the whole-tensor producer");
        return false;
    }
    if (nbytes != p->nbytes) return false;
    memcpy(dst, p->bytes, nbytes);
    return true;
}

static bool fill_rows(void *ctx, void *dst, uint64_t row0, uint64_t n_rows, aero_error *err) {
    producer *p = ctx;
    p->calls++;
    if (p->fail_at_call && p->calls >= p->fail_at_call) {
        aero_fail(err, AERO_ERR_IO, "synthetic failure at row %llu", (unsigned long long)row0);
        return false;
    }
    if (row0 != p->next_row || (row0 + n_rows) * p->row_bytes > p->nbytes) {
        aero_fail(err, AERO_ERR_INVALID, "rows asked out of order: %llu (expected %llu)", (unsigned long long)row0,
                  (unsigned long long)p->next_row);
        return false;
    }
    memcpy(dst, p->bytes + row0 * p->row_bytes, n_rows * p->row_bytes);
    p->next_row = row0 + n_rows;
    return true;
}

#define MAX_T 64
typedef struct {
    char name[64];
    aero_dtype type;
    uint32_t n_dims;
    uint64_t ne[4];
    producer p;
} expect_tensor;

// Reads back a written file and compares metadata and every tensor's bytes (pread at the reported offsets).
static void check_file(const char *path, const expect_tensor *et, int n_t, uint64_t alignment, int extra_kv) {
    aero_gguf g;
    aero_error err = {0};
    CHECKF(aero_gguf_open(&g, path, &err) == AERO_OK, "%s", err.msg);
    if (err.code) return;
    CHECK(g.version == 3 && g.alignment == alignment);
    CHECKF(g.n_kv == (uint64_t)(n_expected + extra_kv), "n_kv %llu, expected %d", (unsigned long long)g.n_kv,
           n_expected + extra_kv);
    for (int i = 0; i < n_expected; i++) {
        const aero_gguf_value *v = aero_gguf_get(&g, expected[i].key);
        CHECKF(v && value_eq(v, &expected[i].v), "metadata '%s' differs after the round trip", expected[i].key);
    }
    if (extra_kv) check_setters(&g);
    CHECK(g.n_tensors == (uint64_t)n_t);
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    for (int i = 0; i < n_t && fd >= 0; i++) {
        const aero_tensor_info *t = aero_gguf_tensor(&g, et[i].name);
        CHECKF(t != NULL, "tensor %s missing", et[i].name);
        if (!t) continue;
        CHECK(&g.tensors[i] == t); // file order kept
        CHECK(t->type == et[i].type && t->n_dims == et[i].n_dims && t->nbytes == et[i].p.nbytes);
        for (uint32_t d = 0; d < 4; d++) CHECK(t->ne[d] == (d < et[i].n_dims ? et[i].ne[d] : 1));
        CHECK((t->offset - g.files[0].data_offset) % alignment == 0 && g.files[0].data_offset % alignment == 0);
        uint8_t *buf = malloc(t->nbytes);
        CHECK(pread(fd, buf, t->nbytes, (off_t)t->offset) == (ssize_t)t->nbytes);
        CHECKF(!memcmp(buf, et[i].p.bytes, t->nbytes), "tensor %s (%s) bytes differ", t->name,
               aero_dtype_name(t->type));
        free(buf);
    }
    if (fd >= 0) close(fd);
    aero_gguf_free(&g);
}

static char tmpdir[256];

// True when no file whose name starts with `prefix` is in the temporary folder (no leftover .tmp files).
static bool no_file_starting(const char *prefix) {
    DIR *d = opendir(tmpdir);
    if (!d) return false;
    struct dirent *e;
    bool none = true;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, prefix, strlen(prefix))) none = false;
    closedir(d);
    return none;
}

// Every computable type, in several shapes, through all three ways of supplying bytes.
static void test_round_trip(uint64_t alignment, bool via_key) {
    aero_gguf_writer *w = aero_gguf_writer_new(via_key ? 0 : alignment);
    CHECK(w != NULL);
    set_all_metadata(w);
    int extra = 8;
    if (via_key) {
        aero_gguf_set_u32(w, "general.alignment", (uint32_t)alignment);
        extra++;
    } else if (alignment != AERO_GGUF_DEFAULT_ALIGNMENT) {
        extra++;
    }
    static expect_tensor et[MAX_T];
    int n_t = 0;
    aero_error err = {0};
    for (int type = 0; type < AERO_DT_COUNT; type++) {
        const aero_dtype_info *di = aero_dtype_get((uint32_t)type);
        if (!di || !di->computable) continue;
        for (int shape = 0; shape < 3; shape++) {
            expect_tensor *e = &et[n_t++];
            snprintf(e->name, sizeof e->name, "%s.%s.%d", shape == 0 ? "blk.0" : "x", di->name, shape);
            e->type = (aero_dtype)type;
            static const uint32_t dims[3] = {1, 2, 4};
            e->n_dims = dims[shape];
            uint64_t ne[4] = {di->block * (uint64_t)(1 + rnd() % 3), 1 + rnd() % 3, 1 + rnd() % 2, 1 + rnd() % 2};
            if (shape == 1 && type == AERO_DT_F32) ne[1] = 8193; // > FILL_CHUNK: the rows producer is called twice
            if (shape == 1 && type == AERO_DT_F32) ne[0] = 512;
            memcpy(e->ne, ne, sizeof ne);
            uint64_t n = 1;
            for (uint32_t d = 0; d < e->n_dims; d++) n *= ne[d];
            memset(&e->p, 0, sizeof e->p);
            e->p.row_bytes = aero_dtype_row_bytes((uint32_t)type, ne[0]);
            e->p.nbytes = n / di->block * di->block_bytes;
            e->p.bytes = malloc(e->p.nbytes);
            rnd_bytes(e->p.bytes, e->p.nbytes);
            aero_status s =
                shape == 0   ? aero_gguf_add_tensor(w, e->name, e->type, e->n_dims, ne, e->p.bytes, &err)
                : shape == 1 ? aero_gguf_add_tensor_rows(w, e->name, e->type, e->n_dims, ne, fill_rows, &e->p, &err)
                             : aero_gguf_add_tensor_fill(w, e->name, e->type, e->n_dims, ne, fill_whole, &e->p, &err);
            CHECKF(s == AERO_OK, "%s", err.msg);
        }
    }
    char path[512];
    snprintf(path, sizeof path, "%s/rt.gguf", tmpdir);
    aero_status s = aero_gguf_write(w, path, &err);
    CHECKF(s == AERO_OK, "%s", err.msg);
    check_file(path, et, n_t, alignment, extra);
    for (int i = 0; i < n_t; i++) {
        if (!strcmp(et[i].name, "x.F32.1")) CHECKF(et[i].p.calls == 2, "rows producer called %d times", et[i].p.calls);
    }
    // Writing again gives the same bytes (the writer is not consumed, offsets are stable).
    for (int i = 0; i < n_t; i++) et[i].p.next_row = 0;
    char path2[512];
    snprintf(path2, sizeof path2, "%s/rt2.gguf", tmpdir);
    CHECKF(aero_gguf_write(w, path2, &err) == AERO_OK, "%s", err.msg);
    FILE *a = fopen(path, "rb"), *b = fopen(path2, "rb");
    int ca, cb, same = a && b;
    while (same && (ca = fgetc(a)) != EOF) {
        cb = fgetc(b);
        if (ca != cb) same = 0;
    }
    if (same) same = fgetc(b) == EOF;
    CHECK(same);
    if (a) fclose(a);
    if (b) fclose(b);
    unlink(path);
    unlink(path2);
    aero_gguf_writer_free(w);
    for (int i = 0; i < n_t; i++) free(et[i].p.bytes);
    CHECK(no_file_starting("rt.gguf.tmp") && no_file_starting("rt2.gguf.tmp"));
}

static void progress_cb(void *ctx, uint64_t done, uint64_t total) {
    uint64_t *last = ctx;
    CHECK(done >= last[0] && done <= total);
    last[0] = done;
    last[1] = total;
    last[2]++;
}

// Producers that fail leave no file (and no temporary) behind, and never replace an existing file.
static void test_failing_producers(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/fail.gguf", tmpdir);
    aero_error err = {0};
    for (int mode = 0; mode < 3; mode++) {
        aero_gguf_writer *w = aero_gguf_writer_new(0);
        aero_gguf_set_str(w, "general.architecture", "llama");
        static uint8_t small[64 * 4];
        uint64_t ne_small[1] = {64};
        CHECK(aero_gguf_add_tensor(w, "a", AERO_DT_F32, 1, ne_small, small, &err) == AERO_OK);
        producer p = {.row_bytes = 4096 * 4, .nbytes = 4096ull * 4 * 2048, .fail_at_call = mode == 2 ? 1 : 2};
        p.bytes = calloc(1, p.nbytes);
        uint64_t ne[2] = {4096, 2048}; // 32 MiB: two row chunks
        if (mode == 0) CHECK(aero_gguf_add_tensor_fill(w, "b", AERO_DT_F32, 2, ne, fill_whole, &p, &err) == AERO_OK);
        else CHECK(aero_gguf_add_tensor_rows(w, "b", AERO_DT_F32, 2, ne, fill_rows, &p, &err) == AERO_OK);
        if (mode == 0) p.fail_at_call = 1;
        aero_status s = aero_gguf_write(w, path, &err);
        CHECKF(s != AERO_OK && strstr(err.msg, "tensor 'b'") && strstr(err.msg, "synthetic failure"), "mode %d: %s",
               mode, err.msg);
        CHECK(access(path, F_OK) != 0);
        CHECK(no_file_starting("fail.gguf"));
        aero_gguf_writer_free(w);
        free(p.bytes);
    }
    // An existing file at the path survives a failed write unchanged.
    FILE *f = fopen(path, "wb");
    fputs("old content", f);
    fclose(f);
    aero_gguf_writer *w = aero_gguf_writer_new(0);
    producer p = {.row_bytes = 128, .nbytes = 128, .fail_at_call = 1, .bytes = calloc(1, 128)};
    uint64_t ne[1] = {32};
    CHECK(aero_gguf_add_tensor_rows(w, "c", AERO_DT_F32, 1, ne, fill_rows, &p, &err) == AERO_OK);
    CHECK(aero_gguf_write(w, path, &err) != AERO_OK);
    char buf[32] = {0};
    f = fopen(path, "rb");
    CHECK(f && fread(buf, 1, sizeof buf - 1, f) == 11 && !strcmp(buf, "old content"));
    if (f) fclose(f);
    // The same writer with a producer that works now replaces it, reporting progress up to the total.
    p.fail_at_call = 0;
    uint64_t prog[3] = {0, 0, 0};
    aero_gguf_writer_progress(w, progress_cb, prog);
    CHECKF(aero_gguf_write(w, path, &err) == AERO_OK, "%s", err.msg);
    CHECK(prog[2] == 1 && prog[0] == prog[1] && prog[1] == 128);
    aero_gguf g;
    CHECK(aero_gguf_open(&g, path, &err) == AERO_OK && g.n_tensors == 1);
    aero_gguf_free(&g);
    unlink(path);
    free(p.bytes);
    aero_gguf_writer_free(w);
    // Unwritable destination: an error naming the path, nothing created.
    w = aero_gguf_writer_new(0);
    CHECK(aero_gguf_write(w, "/nonexistent-dir/x.gguf", &err) == AERO_ERR_IO &&
          strstr(err.msg, "/nonexistent-dir/x.gguf"));
    aero_gguf_writer_free(w);
}

// The writer refuses what the reader would refuse, naming the problem.
static void test_writer_refuses(void) {
    aero_error err = {0};
    char path[512];
    snprintf(path, sizeof path, "%s/bad.gguf", tmpdir);
    uint64_t ne[5] = {32, 2, 1, 1, 1};
    static uint8_t data[4096];
    aero_gguf_writer *w = aero_gguf_writer_new(0);
    CHECK(aero_gguf_add_tensor(w, "t", AERO_DT_Q8_0, 2, ne, data, &err) == AERO_OK);
    CHECK(aero_gguf_add_tensor(w, "t", AERO_DT_Q8_0, 2, ne, data, &err) == AERO_ERR_INVALID &&
          strstr(err.msg, "duplicate"));
    CHECK(aero_gguf_add_tensor(w, "u", AERO_DT_Q8_0, 0, ne, data, &err) == AERO_ERR_INVALID &&
          strstr(err.msg, "n_dims"));
    CHECK(aero_gguf_add_tensor(w, "u", AERO_DT_Q8_0, 5, ne, data, &err) == AERO_ERR_INVALID &&
          strstr(err.msg, "n_dims"));
    uint64_t odd[2] = {48, 1};
    CHECK(aero_gguf_add_tensor(w, "u", AERO_DT_Q8_0, 2, odd, data, &err) == AERO_ERR_INVALID &&
          strstr(err.msg, "multiple"));
    uint64_t zero[2] = {32, 0};
    CHECK(aero_gguf_add_tensor(w, "u", AERO_DT_Q8_0, 2, zero, data, &err) == AERO_ERR_INVALID &&
          strstr(err.msg, "dimension 1"));
    uint64_t huge[2] = {1ull << 40, 1ull << 40};
    CHECK(aero_gguf_add_tensor(w, "u", AERO_DT_F32, 2, huge, data, &err) == AERO_ERR_INVALID &&
          strstr(err.msg, "overflow"));
    CHECK(aero_gguf_add_tensor(w, "u", (aero_dtype)4, 2, ne, data, &err) == AERO_ERR_INVALID &&
          strstr(err.msg, "unknown type"));
    CHECK(aero_gguf_add_tensor(w, "", AERO_DT_F32, 2, ne, data, &err) == AERO_ERR_INVALID && strstr(err.msg, "name"));
    CHECKF(aero_gguf_write(w, path, &err) == AERO_OK, "%s", err.msg); // the refused tensors left no trace
    aero_gguf g;
    CHECK(aero_gguf_open(&g, path, &err) == AERO_OK && g.n_tensors == 1);
    aero_gguf_free(&g);
    unlink(path);
    aero_gguf_writer_free(w);

    struct {
        const char *what;
        int kind;
    } cases[] = {{"general.alignment", 0}, {"general.alignment", 1}, {"general.alignment", 2},  {"bool", 3},
                 {"nested deeper", 4},     {"element type", 5},      {"empty metadata key", 6}, {"has type", 7}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        w = aero_gguf_writer_new(cases[c].kind == 0 ? 3 : 0);
        uint8_t two = 2;
        static aero_gguf_value chain[10];
        switch (cases[c].kind) {
        case 1: aero_gguf_set_u32(w, "general.alignment", 0); break;
        case 2: aero_gguf_set_u64(w, "general.alignment", 64); break;
        case 3: aero_gguf_set_arr(w, "k", AERO_GGUF_BOOL, &two, 1); break;
        case 4:
            for (int i = 0; i < 10; i++)
                chain[i] = i == 9 ? ARRAY(AERO_GGUF_UINT8, 0, NULL) : ARRAY(AERO_GGUF_ARRAY, 1, &chain[i + 1]);
            aero_gguf_set_value(w, "k", &chain[0]);
            break;
        case 5: aero_gguf_set_arr(w, "k", (aero_gguf_type)13, &two, 1); break;
        case 6: aero_gguf_set_u32(w, "", 1); break;
        case 7: {
            aero_gguf_value bad = ARRAY(AERO_GGUF_ARRAY, 1, &(aero_gguf_value){.type = AERO_GGUF_UINT8});
            aero_gguf_set_value(w, "k", &bad);
            break;
        }
        }
        aero_status s = aero_gguf_write(w, path, &err);
        CHECKF(s == AERO_ERR_INVALID && strstr(err.msg, cases[c].what), "case %zu: %s", c, err.msg);
        CHECK(access(path, F_OK) != 0);
        aero_gguf_writer_free(w);
    }
    // A nesting depth the reader accepts (8 levels) round-trips.
    static aero_gguf_value chain8[8];
    for (int i = 0; i < 8; i++)
        chain8[i] = i == 7 ? ARRAY(AERO_GGUF_UINT8, 0, NULL) : ARRAY(AERO_GGUF_ARRAY, 1, &chain8[i + 1]);
    w = aero_gguf_writer_new(0);
    aero_gguf_set_value(w, "deep", &chain8[0]);
    CHECKF(aero_gguf_write(w, path, &err) == AERO_OK, "%s", err.msg);
    CHECKF(aero_gguf_open(&g, path, &err) == AERO_OK, "%s", err.msg);
    CHECK(value_eq(aero_gguf_get(&g, "deep"), &chain8[0]));
    aero_gguf_free(&g);
    unlink(path);
    aero_gguf_writer_free(w);
}

// The layer-of-a-tensor rule: exactly "blk.<digits>." and a layer index that fits an int.
static void test_tensor_layer(void) {
    CHECK(aero_gguf_tensor_layer("blk.0.attn_q.weight") == 0);
    CHECK(aero_gguf_tensor_layer("blk.79.ffn_down.weight") == 79);
    CHECK(aero_gguf_tensor_layer("blk.007.x") == 7);
    CHECK(aero_gguf_tensor_layer("blk.3.") == 3);
    CHECK(aero_gguf_tensor_layer("blk.2147483647.x") == 2147483647);
    CHECK(aero_gguf_tensor_layer("blk.2147483648.x") == -1);
    CHECK(aero_gguf_tensor_layer("blk.3") == -1);
    CHECK(aero_gguf_tensor_layer("blk..x") == -1);
    CHECK(aero_gguf_tensor_layer("blk.-1.x") == -1);
    CHECK(aero_gguf_tensor_layer("blk. 1.x") == -1);
    CHECK(aero_gguf_tensor_layer("blk.1a.x") == -1);
    CHECK(aero_gguf_tensor_layer("output.weight") == -1);
    CHECK(aero_gguf_tensor_layer("token_embd.weight") == -1);
    CHECK(aero_gguf_tensor_layer("") == -1);
    CHECK(aero_gguf_tensor_layer(NULL) == -1);
}

int main(void) {
    test_tensor_layer();
    snprintf(tmpdir, sizeof tmpdir, "/tmp/aero_test_gguf.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_real_files();
    test_round_trip(AERO_GGUF_DEFAULT_ALIGNMENT, false);
    test_round_trip(64, false);
    test_round_trip(1, true);
    test_round_trip(4096, true);
    test_failing_producers();
    test_writer_refuses();
    rmdir(tmpdir);
    return check_done("test_gguf");
}
