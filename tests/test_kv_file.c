// KV cache files (saved prompts): a sequence saved and loaded into another context and sequence continues with
// bitwise the logits of the original; the file checker finds damaged rows, tokens and headers, truncation and
// trailing bytes, and aero_kv_file_seal makes a damaged image consistent again; save and load refuse what they
// cannot do; slot file names stay inside their directory.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "helpers.h"

#define MODEL SHARED_DATA "/models/stories260K.gguf"
enum { N = 24, NCTX = 64 };

// Decodes one token at pos of seq and copies its logits out.
static bool decode_one(aero_ctx *c, int32_t tok, int pos, int seq, float *out, int n_vocab) {
    aero_batch_buf *b = aero_batch_buf_new(1);
    float *lg = malloc(sizeof(float) * n_vocab);
    aero_error err = {0};
    aero_batch_buf_add(b, tok, pos, seq, true);
    bool ok = b && lg && aero_decode(c, aero_batch_buf_get(b), lg, &err) == AERO_OK;
    if (ok) memcpy(out, lg, sizeof(float) * n_vocab);
    else fprintf(stderr, "decode: %s\n", err.msg);
    aero_batch_buf_free(b);
    free(lg);
    return ok;
}

static aero_ctx *new_ctx(aero_model *m, int n_ctx, int n_seq, aero_kv_type tk) {
    aero_ctx *c = NULL;
    aero_error err = {0};
    aero_ctx_params cp = {.n_ctx = n_ctx, .n_seq = n_seq, .type_k = tk};
    if (aero_ctx_new(&c, m, &cp, &err)) fprintf(stderr, "ctx: %s\n", err.msg);
    return c;
}

int main(void) {
    require_shared_data();
    aero_model *m = test_load_model(MODEL, 2, 0);
    CHECK(m != NULL);
    if (!m) return check_done("test_kv_file");
    int nv = aero_model_n_vocab(m);
    int32_t toks[N];
    for (int i = 0; i < N; i++) toks[i] = (int32_t)((i * 37 + 5) % nv);
    char path[512];
    test_tmp_path(path, sizeof path, "kv_file.kv");
    aero_error err = {0};

    // save sequence 0 of a context, then continue it there: the reference logits
    aero_ctx *a = new_ctx(m, NCTX, 1, AERO_KV_DEFAULT);
    CHECK(a && aero_prefill(a, 0, toks, N, 0, 0, NULL, &err) == AERO_OK);
    CHECKF(aero_kv_save(a, 0, toks, N, path, &err) == AERO_OK, "%s", err.msg);
    float *ref = malloc(sizeof(float) * nv), *got = malloc(sizeof(float) * nv);
    CHECK(decode_one(a, 7, N, 0, ref, nv));

    // loaded into sequence 1 of another context: the same continuation, bit for bit
    aero_ctx *b = new_ctx(m, NCTX, 2, AERO_KV_DEFAULT);
    int32_t *lt = NULL;
    int nt = 0;
    CHECKF(aero_kv_load(b, 1, path, &lt, &nt, &err) == AERO_OK, "%s", err.msg);
    CHECK(nt == N && lt && !memcmp(lt, toks, sizeof toks));
    CHECK(aero_kv_len(b, 1) == N && aero_kv_len(b, 0) == 0);
    free(lt);
    CHECK(decode_one(b, 7, N, 1, got, nv));
    CHECK(!memcmp(ref, got, sizeof(float) * nv));

    // refusals of save and load, each changing nothing
    CHECK(aero_kv_save(a, 0, toks, N + 5, path, &err) == AERO_ERR_INVALID); // more than the sequence holds
    CHECK(aero_kv_save(a, 3, toks, 1, path, &err) == AERO_ERR_INVALID);     // no such sequence
    int32_t bad[2] = {1, nv};
    CHECK(aero_kv_save(a, 0, bad, 2, path, &err) == AERO_ERR_INVALID); // outside the vocabulary
    aero_ctx *f32 = new_ctx(m, NCTX, 1, AERO_KV_F32);
    CHECK(aero_kv_load(f32, 0, path, NULL, NULL, &err) == AERO_ERR_INVALID && strstr(err.msg, "cache types"));
    aero_ctx *small = new_ctx(m, N - 1, 1, AERO_KV_DEFAULT);
    CHECK(aero_kv_load(small, 0, path, NULL, NULL, &err) == AERO_ERR_RANGE && strstr(err.msg, "raise -c"));
    CHECK(aero_kv_len(small, 0) == 0);

    // the image: checks, damage, seal
    char *img = NULL;
    size_t len = 0;
    CHECK(aero_read_file(path, 0, &img, &len, &err) == AERO_OK);
    int n = -1;
    CHECKF(aero_kv_file_check(img, len, &n, &err) == AERO_OK && n == N, "%s", err.msg);
    CHECK(aero_kv_file_check(img, len - 1, NULL, &err) == AERO_ERR_FORMAT && strstr(err.msg, "truncated"));
    CHECK(aero_kv_file_check(img, 100, NULL, &err) == AERO_ERR_FORMAT && strstr(err.msg, "truncated"));
    char *big = calloc(len + 8, 1);
    memcpy(big, img, len);
    CHECK(aero_kv_file_check(big, len + 8, NULL, &err) == AERO_ERR_FORMAT && strstr(err.msg, "more than"));
    img[len - 3] ^= 0x40; // a row byte
    CHECK(aero_kv_file_check(img, len, NULL, &err) == AERO_ERR_FORMAT && strstr(err.msg, "rows do not match"));
    aero_kv_file_seal(img, len);
    CHECK(aero_kv_file_check(img, len, NULL, &err) == AERO_OK);
    img[160 + 4 * 3] ^= 0x01; // a token id
    CHECK(aero_kv_file_check(img, len, NULL, &err) == AERO_ERR_FORMAT && strstr(err.msg, "token ids"));
    aero_kv_file_seal(img, len);
    CHECK(aero_kv_file_check(img, len, NULL, &err) == AERO_OK);
    memcpy(img + 160, &(int32_t){nv + 3}, 4); // sealed, but outside the vocabulary
    aero_kv_file_seal(img, len);
    CHECK(aero_kv_file_check(img, len, NULL, &err) == AERO_ERR_FORMAT && strstr(err.msg, "outside the vocabulary"));
    img[100] ^= 0x10; // a header field
    CHECK(aero_kv_file_check(img, len, NULL, &err) == AERO_ERR_FORMAT && strstr(err.msg, "header"));
    memcpy(img + 112, &(uint32_t){0xffffffffu}, 4); // n_tokens, sealed: sizes no longer match
    aero_kv_file_seal(img, len);
    CHECK(aero_kv_file_check(img, len, NULL, &err) == AERO_ERR_FORMAT);
    img[0] = 'X';
    CHECK(aero_kv_file_check(img, len, NULL, &err) == AERO_ERR_FORMAT && strstr(err.msg, "magic"));
    free(img);
    free(big);

    // slot file names
    char sp[300];
    CHECK(aero_kv_slot_path("/tmp/slots", "s0.bin", sp, sizeof sp, &err) == AERO_OK && !strcmp(sp, "/tmp/slots/s0.bin"));
    CHECK(aero_kv_slot_path(NULL, "s0.bin", sp, sizeof sp, &err) == AERO_ERR_UNSUPPORTED);
    const char *badnames[] = {"", "../x", "a/b", ".hidden", "a\\b", "a\nb"};
    for (size_t i = 0; i < sizeof badnames / sizeof *badnames; i++)
        CHECKF(aero_kv_slot_path("/tmp/slots", badnames[i], sp, sizeof sp, &err) == AERO_ERR_INVALID, "'%s'",
               badnames[i]);
    CHECK(aero_kv_slot_path("/tmp/slots", "abc", sp, 8, &err) == AERO_ERR_INVALID);

    unlink(path);
    free(ref);
    free(got);
    aero_ctx_free(a);
    aero_ctx_free(b);
    aero_ctx_free(f32);
    aero_ctx_free(small);
    aero_model_free(m);
    return check_done("test_kv_file");
}
