// Tokenizer unit tests that need no shared data: a synthetic byte-level BPE vocabulary written as GGUF with
// tokenizer.ggml.model = "gpt2", pre = "gpt-2" (the combination the project's own models use), bad
// metadata, special tokens, the streaming decoder, invalid UTF-8 and the NFC/NFD tables.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "check.h"
#include "helpers.h"
#include "format/gguf.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/tokenizer.h"

// GPT-2's byte -> character map, written independently of the library's.
static int byte_char(int b, char *out) {
    int cp;
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) {
        cp = b;
    } else {
        int n = 0;
        for (int x = 0; x < 256; x++) {
            if ((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174) continue;
            if (x == b) break;
            n++;
        }
        cp = 256 + n;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

static const char *MERGES[] = {"h e",        "l l", "l o",          "he ll", "hell o",
                               "\xC4\xA0 w", "o r", "\xC4\xA0w or", "l d",   "\xC4\xA0wor ld"};
static const char *MERGED[] = {"he",        "ll", "lo",          "hell", "hello",
                               "\xC4\xA0w", "or", "\xC4\xA0wor", "ld",   "\xC4\xA0world"};
#define N_MERGES 10
#define ID_HELLO (256 + 4)
#define ID_WORLD (256 + 9)
#define ID_EOT (256 + N_MERGES)
#define ID_USER (ID_EOT + 1)
#define N_TOK (ID_USER + 1)

// Writes the synthetic vocabulary to path; pre/model may be overridden to test errors.
static bool write_vocab(const char *path, const char *model, const char *pre, bool with_tokens) {
    static char bytes[256][3];
    const char *toks[N_TOK];
    int32_t types[N_TOK];
    for (int b = 0; b < 256; b++) {
        int l = byte_char(b, bytes[b]);
        bytes[b][l] = 0;
        toks[b] = bytes[b];
        types[b] = 1;
    }
    for (int i = 0; i < N_MERGES; i++) {
        toks[256 + i] = MERGED[i];
        types[256 + i] = 1;
    }
    toks[ID_EOT] = "<|endoftext|>";
    types[ID_EOT] = 3;
    toks[ID_USER] = "<tool>";
    types[ID_USER] = 4;
    aero_gguf_writer *w = aero_gguf_writer_new(0);
    if (!w) return false;
    aero_gguf_set_str(w, "general.architecture", "llama");
    if (model) aero_gguf_set_str(w, "tokenizer.ggml.model", model);
    if (pre) aero_gguf_set_str(w, "tokenizer.ggml.pre", pre);
    if (with_tokens) aero_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, N_TOK);
    aero_gguf_set_arr(w, "tokenizer.ggml.token_type", AERO_GGUF_INT32, types, N_TOK);
    aero_gguf_set_arr_str(w, "tokenizer.ggml.merges", MERGES, N_MERGES);
    aero_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", ID_EOT);
    aero_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", ID_EOT);
    aero_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", false);
    aero_error err = {0};
    aero_status st = aero_gguf_write(w, path, &err);
    aero_gguf_writer_free(w);
    if (st != AERO_OK) fprintf(stderr, "write %s: %s\n", path, err.msg);
    return st == AERO_OK;
}

static char tmpdir[256];

static aero_status load_variant(const char *model, const char *pre, bool with_tokens, aero_tokenizer **t,
                                aero_error *err) {
    char path[512];
    snprintf(path, sizeof path, "%s/vocab.gguf", tmpdir);
    if (!write_vocab(path, model, pre, with_tokens)) return AERO_ERR_IO;
    aero_status st = aero_tokenizer_load(t, path, err);
    unlink(path);
    return st;
}

static bool ids_eq(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

static void roundtrip(const aero_tokenizer *t, const char *s, size_t n) {
    int32_t *ids = NULL;
    size_t ni = 0;
    aero_error err = {0};
    CHECK(aero_tokenize(t, s, n, false, false, &ids, &ni, &err) == AERO_OK);
    char *txt = NULL;
    size_t tl = 0;
    CHECK(aero_detokenize(t, ids, ni, false, &txt, &tl, &err) == AERO_OK);
    CHECKF(txt && tl == n && memcmp(txt, s, n) == 0, "round trip of %zu bytes", n);
    free(txt);
    free(ids);
}

static void test_gpt2_vocab(void) {
    aero_tokenizer *t = NULL;
    aero_error err = {0};
    CHECKF(load_variant("gpt2", "gpt-2", true, &t, &err) == AERO_OK, "%s", err.msg);
    if (!t) return;
    CHECK(aero_tokenizer_kind(t) == AERO_TOK_BPE);
    CHECK(aero_tokenizer_n_vocab(t) == N_TOK);
    CHECK(aero_tokenizer_eos(t) == ID_EOT);
    CHECK(aero_tokenizer_is_eog(t, ID_EOT));
    CHECK(!aero_tokenizer_is_eog(t, ID_HELLO));
    CHECK(!aero_tokenizer_add_bos(t));
    CHECK(aero_tokenizer_find(t, "hello") == ID_HELLO);
    CHECK(strcmp(aero_tokenizer_token_str(t, ID_WORLD), "\xC4\xA0world") == 0);
    CHECK(aero_tokenizer_token_str(t, N_TOK) == NULL && aero_tokenizer_token_str(t, -1) == NULL);

    int32_t *ids = NULL;
    size_t n = 0;
    CHECK(aero_tokenize(t, "hello world", 11, false, false, &ids, &n, &err) == AERO_OK);
    int32_t want1[] = {ID_HELLO, ID_WORLD};
    CHECK(ids_eq(ids, n, want1, 2));
    free(ids);
    // "hellohello" is one pre-token: merges apply in rank order, leftmost first
    CHECK(aero_tokenize(t, "hellohello lo", 13, false, false, &ids, &n, &err) == AERO_OK);
    int32_t want2[] = {ID_HELLO, ID_HELLO, ' ', 256 + 2}; // " lo": the space byte, then "lo" (no merge with it)
    CHECK(ids_eq(ids, n, want2, 4));
    free(ids);
    // BOS only when asked and present
    CHECK(aero_tokenize(t, "hello", 5, true, false, &ids, &n, &err) == AERO_OK);
    CHECK(n == 2 && ids[0] == ID_EOT && ids[1] == ID_HELLO);
    free(ids);

    // control tokens split only with parse_special; user-defined tokens always
    const char *sp = "he<|endoftext|>ll<tool>";
    CHECK(aero_tokenize(t, sp, strlen(sp), false, true, &ids, &n, &err) == AERO_OK);
    int32_t want3[] = {256 + 0, ID_EOT, 256 + 1, ID_USER};
    CHECK(ids_eq(ids, n, want3, 4));
    free(ids);
    CHECK(aero_tokenize(t, sp, strlen(sp), false, false, &ids, &n, &err) == AERO_OK);
    CHECK(n > 4 && ids[n - 1] == ID_USER);
    for (size_t i = 0; i < n; i++) CHECK(ids[i] != ID_EOT);
    char *txt = NULL;
    CHECK(aero_detokenize(t, ids, n, false, &txt, NULL, &err) == AERO_OK);
    CHECKF(txt && strcmp(txt, sp) == 0, "got \"%s\"", txt ? txt : "");
    free(txt);
    free(ids);
    // control tokens print only with render_special
    int32_t ctl[] = {ID_HELLO, ID_EOT};
    CHECK(aero_detokenize(t, ctl, 2, false, &txt, NULL, &err) == AERO_OK && strcmp(txt, "hello") == 0);
    free(txt);
    CHECK(aero_detokenize(t, ctl, 2, true, &txt, NULL, &err) == AERO_OK && strcmp(txt, "hello<|endoftext|>") == 0);
    free(txt);
    int32_t bad[] = {ID_HELLO, N_TOK};
    CHECK(aero_detokenize(t, bad, 2, false, &txt, NULL, &err) == AERO_ERR_RANGE);
    char b8[8];
    CHECK(aero_token_to_bytes(t, ID_WORLD, false, b8, sizeof b8) == 6 && memcmp(b8, " world", 6) == 0);
    CHECK(aero_token_to_bytes(t, ID_EOT, false, b8, sizeof b8) == 0);
    CHECK(aero_token_to_bytes(t, ID_EOT, true, b8, 4) == 13 && memcmp(b8, "<|en", 4) == 0);

    // any bytes round-trip: invalid UTF-8, NUL, lone continuation bytes, truncated sequences
    roundtrip(t, "a\xff\xfe b\x00\x80 \xc3", 9);
    roundtrip(t, "\xe2\x82", 2);
    roundtrip(t, "", 0);
    char all[256];
    for (int i = 0; i < 256; i++) all[i] = (char)i;
    roundtrip(t, all, 256);

    // streaming: a character split over two tokens comes out whole, once complete
    aero_detok d;
    aero_detok_init(&d, t, false);
    char out[64];
    CHECK(aero_detok_push(&d, 0xC3, out, sizeof out) == 0);
    size_t w = aero_detok_push(&d, 0xA9, out, sizeof out);
    CHECK(w == 2 && memcmp(out, "\xC3\xA9", 2) == 0);
    CHECK(aero_detok_push(&d, 0xF0, out, sizeof out) == 0); // 4-byte emoji, 1 byte at a time
    CHECK(aero_detok_push(&d, 0x9F, out, sizeof out) == 0);
    CHECK(aero_detok_push(&d, 0xA6, out, sizeof out) == 0);
    w = aero_detok_push(&d, 0x99, out, sizeof out);
    CHECK(w == 4 && memcmp(out, "\xF0\x9F\xA6\x99", 4) == 0);
    w = aero_detok_push(&d, 0xFF, out, sizeof out); // never valid: replacement char
    CHECK(w == 3 && memcmp(out, "\xEF\xBF\xBD", 3) == 0);
    CHECK(aero_detok_push(&d, 0xE2, out, sizeof out) == 0);
    w = aero_detok_push(&d, ID_HELLO, out, sizeof out); // interrupted sequence: U+FFFD then text
    CHECK(w == 8 && memcmp(out, "\xEF\xBF\xBDhello", 8) == 0);
    CHECK(aero_detok_push(&d, 0xE2, out, sizeof out) == 0);
    CHECK(aero_detok_push(&d, 0x82, out, sizeof out) == 0);
    w = aero_detok_flush(&d, out, sizeof out); // stream ends mid-character
    CHECK(w == 3 && memcmp(out, "\xEF\xBF\xBD", 3) == 0);
    CHECK(aero_detok_flush(&d, out, sizeof out) == 0);
    CHECK(aero_detok_push(&d, ID_EOT, out, sizeof out) == 0); // control token: nothing
    aero_detok_init(&d, t, true);
    w = aero_detok_push(&d, ID_EOT, out, sizeof out);
    CHECK(w == 13 && memcmp(out, "<|endoftext|>", 13) == 0);
    CHECK(aero_tokenizer_max_piece(t) >= 13);

    // the stream equals the whole decode for every split of a multilingual text
    const char *ml = "h\xC3\xA9llo \xE4\xB8\xAD\xE6\x96\x87 \xF0\x9F\xA6\x99!";
    CHECK(aero_tokenize(t, ml, strlen(ml), false, false, &ids, &n, &err) == AERO_OK);
    aero_detok_init(&d, t, false);
    char acc[128];
    size_t al = 0;
    for (size_t i = 0; i < n; i++) al += aero_detok_push(&d, ids[i], acc + al, sizeof acc - al);
    al += aero_detok_flush(&d, acc + al, sizeof acc - al);
    CHECKF(al == strlen(ml) && memcmp(acc, ml, al) == 0, "stream gave %zu bytes", al);
    free(ids);

    // 1 MB of one repeated letter: one giant pre-token, merged in O(n log n)
    size_t big = 1 << 20;
    char *s = malloc(big);
    memset(s, 'l', big);
    CHECK(aero_tokenize(t, s, big, false, false, &ids, &n, &err) == AERO_OK);
    CHECK(n == big / 2);
    for (size_t i = 0; i < n && i < 10; i++) CHECK(ids[i] == 256 + 1);
    free(ids);
    free(s);
    aero_tokenizer_free(t);
}

static void test_bad_metadata(void) {
    aero_tokenizer *t = NULL;
    aero_error err = {0};
    CHECK(load_variant("gpt2", "no-such-pre", true, &t, &err) == AERO_ERR_UNSUPPORTED);
    CHECKF(strstr(err.msg, "no-such-pre") != NULL, "message: %s", err.msg);
    CHECK(t == NULL);
    memset(&err, 0, sizeof err);
    CHECK(load_variant("t5", "default", true, &t, &err) == AERO_ERR_UNSUPPORTED);
    CHECKF(strstr(err.msg, "t5") != NULL, "message: %s", err.msg);
    memset(&err, 0, sizeof err);
    CHECK(load_variant(NULL, "default", true, &t, &err) == AERO_ERR_FORMAT);
    CHECKF(strstr(err.msg, "tokenizer.ggml.model") != NULL, "message: %s", err.msg);
    memset(&err, 0, sizeof err);
    CHECK(load_variant("gpt2", "gpt-2", false, &t, &err) == AERO_ERR_FORMAT);
    CHECKF(strstr(err.msg, "tokenizer.ggml.tokens") != NULL, "message: %s", err.msg);
    // every pre-tokenizer name the issue lists is known
    const char *names[] = {"default",     "gpt-2",       "llama-bpe", "qwen2",      "deepseek-llm", "deepseek-coder",
                           "falcon",      "starcoder",   "refact",    "mpt",        "gpt-neox",     "tekken",
                           "smollm",      "deepseek-v3", "gpt-4o",    "command-r",  "olmo",         "stablelm2",
                           "chatglm-bpe", "viking",      "bloom",     "seed-coder", "bailingmoe"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        memset(&err, 0, sizeof err);
        aero_status st = load_variant("gpt2", names[i], true, &t, &err);
        CHECKF(st == AERO_OK, "pre '%s': %s", names[i], err.msg);
        if (st != AERO_OK) continue;
        CHECK(strcmp(aero_tokenizer_pre_name(t), names[i]) == 0);
        int32_t *ids = NULL;
        size_t n = 0;
        const char *txt = "Hello 123456 w\xC3\xB6rld's   \xE4\xB8\xAD\xE6\x96\x87\n\n\tx = y+1;";
        CHECK(aero_tokenize(t, txt, strlen(txt), false, false, &ids, &n, &err) == AERO_OK);
        char *back = NULL;
        CHECK(aero_detokenize(t, ids, n, false, &back, NULL, &err) == AERO_OK);
        CHECKF(back && strcmp(back, txt) == 0, "pre '%s' does not round-trip", names[i]);
        free(back);
        free(ids);
        aero_tokenizer_free(t);
    }
    CHECK(aero_tokenizer_load(&t, "/nonexistent/x.gguf", &err) != AERO_OK);
    CHECK(aero_tokenizer_load(&t, "/nonexistent/tokenizer.json", &err) == AERO_ERR_IO);
}

static void test_json_errors(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizer.json", tmpdir);
    struct {
        const char *json;
        aero_status want;
        const char *needle;
    } C[] = {
        {"{", AERO_ERR_FORMAT, "tokenizer.json"},
        {"{\"model\": {\"type\": \"Unigram\", \"vocab\": {}}}", AERO_ERR_UNSUPPORTED, "Unigram"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": {\"type\": \"Nope\"}}",
         AERO_ERR_UNSUPPORTED, "Nope"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -3}, \"merges\": []}}", AERO_ERR_FORMAT, "vocab"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": "
         "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"}}",
         AERO_ERR_FORMAT, "regex"},
    };
    for (size_t i = 0; i < sizeof C / sizeof C[0]; i++) {
        FILE *f = fopen(path, "w");
        fputs(C[i].json, f);
        fclose(f);
        aero_tokenizer *t = NULL;
        aero_error err = {0};
        aero_status st = aero_tokenizer_load(&t, path, &err);
        CHECKF(st == C[i].want && strstr(err.msg, C[i].needle), "case %zu: status %d, message: %s", i, st, err.msg);
        aero_tokenizer_free(t);
    }
    unlink(path);
}

// WordPiece from a BERT-style tokenizer.json: lowercase, accents stripped, punctuation split, ## pieces.
static void test_wordpiece_json(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizer.json", tmpdir);
    FILE *f = fopen(path, "w");
    fputs(
        "{\"added_tokens\": [{\"id\": 0, \"content\": \"[UNK]\", \"special\": true},"
        " {\"id\": 1, \"content\": \"[CLS]\", \"special\": true}, {\"id\": 2, \"content\": \"[SEP]\", \"special\": true}],"
        " \"normalizer\": {\"type\": \"BertNormalizer\", \"lowercase\": true, \"strip_accents\": null},"
        " \"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"},"
        " \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"[CLS]\"}},"
        "   {\"Sequence\": {\"id\": \"A\"}}, {\"SpecialToken\": {\"id\": \"[SEP]\"}}]},"
        " \"decoder\": {\"type\": \"WordPiece\", \"prefix\": \"##\"},"
        " \"model\": {\"type\": \"WordPiece\", \"unk_token\": \"[UNK]\", \"continuing_subword_prefix\": \"##\","
        "   \"vocab\": {\"[UNK]\": 0, \"[CLS]\": 1, \"[SEP]\": 2, \"hello\": 3, \"world\": 4, \"##s\": 5, \"un\": 6,"
        "   \"##aff\": 7, \"##able\": 8, \",\": 9, \"!\": 10, \"caf\": 11, \"##e\": 12, \"\u4e2d\": 13}}}",
        f);
    fclose(f);
    aero_tokenizer *t = NULL;
    aero_error err = {0};
    CHECKF(aero_tokenizer_load(&t, path, &err) == AERO_OK, "%s", err.msg);
    unlink(path);
    if (!t) return;
    CHECK(aero_tokenizer_kind(t) == AERO_TOK_WPM && aero_tokenizer_add_bos(t) && aero_tokenizer_bos(t) == 1);
    const char *s = "Hello, WORLDS!\tUnaffable caf\xC3\xA9 xyz\xE4\xB8\xAD";
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK(aero_tokenize(t, s, strlen(s), true, false, &ids, &n, &err) == AERO_OK);
    int32_t want[] = {1, 3, 9, 4, 5, 10, 6, 7, 8, 11, 12, 0, 13, 2};
    CHECKF(ids_eq(ids, n, want, sizeof want / sizeof want[0]), "got %zu ids", n);
    char *txt = NULL;
    CHECK(aero_detokenize(t, ids, n, false, &txt, NULL, &err) == AERO_OK);
    CHECKF(txt && strcmp(txt, "hello , worlds ! unaffable cafe \xE4\xB8\xAD") == 0, "decoded \"%s\"", txt ? txt : "");
    free(txt);
    free(ids);
    aero_tokenizer_free(t);
}

// Splits text with rule 0 of t, with or without its hand-written matcher; true when both agree.
static bool same_split(aero_tokenizer *t, const char *text, size_t n) {
    aero_tok_spans a = {0}, b = {0};
    aero_tok_buf buf = {0};
    aero_error err = {0};
    const char *tx = text;
    size_t tn = n;
    int fast = t->pre[0].fast;
    bool ok = aero_tok_pretokenize(t, &tx, &tn, &buf, true, &a, &err) == AERO_OK;
    t->pre[0].fast = AERO_FAST_NONE;
    tx = text;
    tn = n;
    ok = ok && aero_tok_pretokenize(t, &tx, &tn, &buf, true, &b, &err) == AERO_OK;
    t->pre[0].fast = fast;
    ok = ok && a.n == b.n && (a.n == 0 || memcmp(a.v, b.v, a.n * 2 * sizeof *a.v) == 0);
    free(a.v);
    free(b.v);
    free(buf.p);
    return ok;
}

// The hand-written GPT-2 / Llama 3 / Qwen 2 splitters against PCRE2 running the same pattern, on the
// differential corpus and on random code points from all of Unicode plus invalid bytes.
static void test_fast_split(void) {
    const char *names[] = {"gpt-2", "llama-bpe", "qwen2"};
    const int kinds[] = {AERO_FAST_GPT2, AERO_FAST_LLAMA3, AERO_FAST_QWEN2};
    char *corpus = NULL;
    size_t clen = 0;
    FILE *f = fopen("tests/fixtures/tokenizer/corpus.jsonl", "rb");
    if (f) {
        fseek(f, 0, SEEK_END);
        clen = (size_t)ftell(f);
        fseek(f, 0, SEEK_SET);
        corpus = malloc(clen + 1);
        if (fread(corpus, 1, clen, f) != clen) clen = 0;
        corpus[clen] = 0;
        fclose(f);
    }
    CHECKF(corpus && clen, "tests/fixtures/tokenizer/corpus.jsonl missing");
    for (int k = 0; k < 3; k++) {
        aero_tokenizer *t = aero_tok_alloc();
        aero_error err = {0};
        CHECK(aero_tok_set_pre_by_name(t, names[k], &err) == AERO_OK);
        CHECKF(t->n_pre == 1 && t->pre[0].fast == kinds[k], "%s: no fast matcher", names[k]);
        if (t->n_pre != 1) {
            aero_tokenizer_free(t);
            continue;
        }
        int bad = 0, count = 0;
        for (char *line = corpus; line && *line;) {
            char *nl = strchr(line, '\n');
            if (nl) *nl = 0;
            json_t *js = json_loads(line, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
            if (json_is_string(js)) {
                count++;
                if (!same_split(t, json_string_value(js), json_string_length(js)) && bad++ < 3)
                    fprintf(stderr, "  %s: fast split differs on %s\n", names[k], line);
            }
            json_decref(js);
            if (nl) *nl = '\n';
            line = nl ? nl + 1 : NULL;
        }
        uint64_t x = 0x9E3779B97F4A7C15ull * (uint64_t)(k + 1);
        char buf[256];
        for (int r = 0; r < 20000; r++) {
            size_t n = 0;
            int len = 1 + r % 24;
            for (int c = 0; c < len && n + 4 < sizeof buf; c++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                uint32_t pick = (uint32_t)(x >> 32) % 16, cp;
                static const char ascii[] = " \t\n\r'sStTlLdDmMvVeE0123456789.,!?";
                if (pick < 5) cp = (unsigned char)ascii[(x >> 8) % (sizeof ascii - 1)];
                else if (pick < 8) cp = (uint32_t)(x >> 16) % 0x3000;
                else if (pick < 12) cp = (uint32_t)(x >> 16) % 0x30000;
                else if (pick < 14)
                    cp = (uint32_t[]){0x85, 0xA0, 0x3000, 0x2028, 0x180E, 0xFEFF, 0x200B, 0x2581}[(x >> 20) % 8];
                else {
                    buf[n++] = (char)(0x80 + (x >> 24) % 0x80); // invalid or truncated UTF-8
                    continue;
                }
                if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'x';
                n += (size_t)aero_utf8_encode(cp, buf + n);
            }
            count++;
            if (!same_split(t, buf, n) && bad++ < 3) {
                fprintf(stderr, "  %s: fast split differs on bytes:", names[k]);
                for (size_t i = 0; i < n; i++) fprintf(stderr, " %02x", (unsigned char)buf[i]);
                fprintf(stderr, "\n");
            }
        }
        CHECKF(bad == 0, "%s: %d of %d strings split differently", names[k], bad, count);
        aero_tokenizer_free(t);
    }
    free(corpus);
}

// Split behaviors on a small pattern, and empty matches as boundaries (SuperBPE's digit grouping).
static void test_split_behaviors(void) {
    struct {
        const char *re;
        aero_split_behavior b;
        bool invert;
        const char *text, *want;
    } C[] = {
        {"(?=(\\d{3})+(?!\\d))", AERO_SPLIT_ISOLATED, false, "x1234567", "x1|234|567"},
        {"-", AERO_SPLIT_ISOLATED, false, "a-b--c", "a|-|b|-|-|c"},
        {"-", AERO_SPLIT_REMOVED, false, "a-b--c", "a|b|c"},
        {"-", AERO_SPLIT_MERGED_PREV, false, "a-b--c", "a-|b-|-|c"},
        {"-", AERO_SPLIT_MERGED_NEXT, false, "a-b--c", "a|-b|-|-c"},
        {"-", AERO_SPLIT_CONTIGUOUS, false, "a-b--c", "a|-|b|--|c"},
        {"\\w+", AERO_SPLIT_REMOVED, true, "ab, cd!", "ab|cd"},
    };
    for (size_t i = 0; i < sizeof C / sizeof C[0]; i++) {
        aero_tokenizer *t = aero_tok_alloc();
        aero_error err = {0};
        CHECK(aero_tok_add_split(t, C[i].re, strlen(C[i].re), false, C[i].b, C[i].invert, &err) == AERO_OK);
        aero_tok_spans sp = {0};
        aero_tok_buf buf = {0};
        const char *tx = C[i].text;
        size_t tn = strlen(tx);
        CHECK(aero_tok_pretokenize(t, &tx, &tn, &buf, true, &sp, &err) == AERO_OK);
        char got[128] = "";
        for (size_t k = 0; k < sp.n; k++) {
            if (k) strcat(got, "|");
            strncat(got, tx + sp.v[2 * k], sp.v[2 * k + 1] - sp.v[2 * k]);
        }
        CHECKF(strcmp(got, C[i].want) == 0, "case %zu: got %s want %s", i, got, C[i].want);
        free(sp.v);
        free(buf.p);
        aero_tokenizer_free(t);
    }
}

// NFC/NFD against values computed with Python's unicodedata.
static void test_normalization(void) {
    struct {
        const char *in, *nfc, *nfd;
    } C[] = {
        {"e\xCC\x81", "\xC3\xA9", "e\xCC\x81"},
        {"\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8", "\xEA\xB0\x81", "\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8"},
        {"\xE2\x84\xAB", "\xC3\x85", "A\xCC\x8A"},
        {"q\xCC\x87\xCC\xA3", "q\xCC\xA3\xCC\x87", "q\xCC\xA3\xCC\x87"},
        {"s\xCC\x87\xCC\xA3", "\xE1\xB9\xA9", "s\xCC\xA3\xCC\x87"},
        {"\xE0\xA5\x98", "\xE0\xA4\x95\xE0\xA4\xBC", "\xE0\xA4\x95\xE0\xA4\xBC"},
        {"\xE0\xAD\x87\xE0\xAC\xBE", "\xE0\xAD\x8B", "\xE0\xAD\x87\xE0\xAC\xBE"},
        {"plain ascii", "plain ascii", "plain ascii"},
        {"a\xFF\xCC\x81", "a\xFF\xCC\x81", "a\xFF\xCC\x81"}, // an invalid byte blocks composition
    };
    for (size_t i = 0; i < sizeof C / sizeof C[0]; i++) {
        aero_tok_buf b = {0};
        CHECK(aero_unicode_nfc(C[i].in, strlen(C[i].in), &b));
        CHECKF(b.len == strlen(C[i].nfc) && memcmp(b.p, C[i].nfc, b.len) == 0, "NFC case %zu", i);
        b.len = 0;
        CHECK(aero_unicode_nfd(C[i].in, strlen(C[i].in), &b));
        CHECKF(b.len == strlen(C[i].nfd) && memcmp(b.p, C[i].nfd, b.len) == 0, "NFD case %zu", i);
        free(b.p);
    }
    CHECK(aero_unicode_category('A') == AERO_GC_Lu && aero_unicode_category(0x4E2D) == AERO_GC_Lo);
    CHECK(aero_unicode_category(0x301) == AERO_GC_Mn && aero_unicode_category(0x10FFFF) == AERO_GC_Cn);
    CHECK(aero_unicode_is_whitespace(0x85) && aero_unicode_is_whitespace(0x3000) &&
          !aero_unicode_is_whitespace(0x180E));
    CHECK(aero_unicode_tolower(0x410) == 0x430 && aero_unicode_tolower('Z') == 'z');
    CHECK(strcmp(aero_tok_unicode_version, "14.0.0") == 0);
}

int main(void) {
    if (!test_tmp_dir(tmpdir, sizeof tmpdir, "tok")) return 1;
    test_gpt2_vocab();
    test_bad_metadata();
    test_json_errors();
    test_wordpiece_json();
    test_fast_split();
    test_split_behaviors();
    test_normalization();
    rmdir(tmpdir);
    return check_done("test_tokenizer_unit");
}
