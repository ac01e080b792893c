// Vocabulary from GGUF metadata (tokenizer.ggml.*), and aero_tokenizer_load, which picks the loader by file.
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <strings.h>

#include "tok_internal.h"

static const aero_gguf_value *get_arr(const aero_gguf *g, const char *key) {
    const aero_gguf_value *v = aero_gguf_get(g, key);
    return (v && v->type == AERO_GGUF_ARRAY) ? v : NULL;
}

// Reads an optional token id; out-of-range values (e.g. 0xFFFFFFFF for 'none') become -1.
static void get_id(const aero_gguf *g, const char *key, int32_t *id) {
    uint64_t v;
    if (aero_gguf_get_u64(g, key, &v)) *id = v < (uint64_t)INT32_MAX ? (int32_t)v : -1;
    else {
        int64_t s;
        if (aero_gguf_get_i64(g, key, &s)) *id = (s >= 0 && s < INT32_MAX) ? (int32_t)s : -1;
    }
}

// Case-insensitive substring test, for model names.
static bool contains_ci(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++)
        if (strncasecmp(p, needle, n) == 0) return true;
    return false;
}

// tokenizer.ggml.model picks the algorithm and llama.cpp's defaults for it (ids, prefixes, casing).
static aero_status gguf_model_kind(aero_tokenizer *t, const aero_gguf *g, aero_error *err) {
    const char *model = aero_gguf_get_str(g, "tokenizer.ggml.model");
    if (!model) return aero_fail(err, AERO_ERR_FORMAT, "tokenizer: GGUF has no tokenizer.ggml.model (no vocabulary)");
    if (strcmp(model, "llama") == 0) {
        t->kind = AERO_TOK_SPM;
        t->bos = 1;
        t->eos = 2;
        t->unk = 0;
        t->add_space_prefix = true;
        t->spm_escape = true;
        t->metaspace_decode = true;
        t->add_bos = true;
    } else if (strcmp(model, "gpt2") == 0) {
        t->kind = AERO_TOK_BPE;
        t->byte_level = true;
    } else if (strcmp(model, "bert") == 0) {
        t->kind = AERO_TOK_WPM;
        t->bos = 101;
        t->unk = 100;
        t->sep = 102;
        t->pad = 0;
        t->add_bos = true;
        t->add_sep = true;
        t->metaspace_decode = true;
        t->wpm_lowercase = true;
        t->wpm_strip_accents = true;
    } else {
        return aero_fail(err, AERO_ERR_UNSUPPORTED,
                         "tokenizer: unsupported tokenizer.ggml.model '%s' (supported: llama, gpt2, bert)", model);
    }
    t->model_name = strdup(model);
    return AERO_OK;
}

// tokenizer.ggml.tokens: the token strings, by id.
static aero_status gguf_vocab(aero_tokenizer *t, const aero_gguf *g, aero_error *err) {
    const aero_gguf_value *tok = get_arr(g, "tokenizer.ggml.tokens");
    if (!tok || tok->arr.elem != AERO_GGUF_STRING)
        return aero_fail(err, AERO_ERR_FORMAT,
                         "tokenizer: tokenizer.ggml.tokens is missing or not an array of strings");
    if (tok->arr.n == 0 || tok->arr.n > (uint64_t)INT32_MAX / 2)
        return aero_fail(err, AERO_ERR_FORMAT, "tokenizer: tokenizer.ggml.tokens has %llu entries",
                         (unsigned long long)tok->arr.n);
    int32_t n = (int32_t)tok->arr.n;
    aero_status st;
    const char **strs = malloc((size_t)n * sizeof *strs);
    uint32_t *lens = malloc((size_t)n * sizeof *lens);
    if (!strs || !lens) {
        st = aero_fail(err, AERO_ERR_NOMEM, "tokenizer: out of memory");
        goto done;
    }
    for (int32_t i = 0; i < n; i++) {
        const aero_gguf_str *s = aero_gguf_arr_str(tok, (uint64_t)i);
        if (!s || s->len > UINT32_MAX / 2) {
            st = aero_fail(err, AERO_ERR_FORMAT, "tokenizer: token %d of tokenizer.ggml.tokens is unreadable", (int)i);
            goto done;
        }
        strs[i] = s->ptr;
        lens[i] = (uint32_t)s->len;
    }
    st = aero_tok_set_vocab(t, n, strs, lens, err);
done:
    free(strs);
    free(lens);
    return st;
}

// tokenizer.ggml.scores (optional): SentencePiece piece scores, floats or integers.
static aero_status gguf_scores(aero_tokenizer *t, const aero_gguf *g, aero_error *err) {
    const aero_gguf_value *scores = get_arr(g, "tokenizer.ggml.scores");
    if (!scores) return AERO_OK;
    int32_t n = t->n_vocab;
    if (scores->arr.n < (uint64_t)n)
        return aero_fail(err, AERO_ERR_FORMAT, "tokenizer: tokenizer.ggml.scores has %llu entries for %d tokens",
                         (unsigned long long)scores->arr.n, (int)n);
    for (int32_t i = 0; i < n; i++) {
        double d;
        if (!aero_gguf_arr_f64(scores, (uint64_t)i, &d)) {
            int64_t v;
            if (!aero_gguf_arr_i64(scores, (uint64_t)i, &v))
                return aero_fail(err, AERO_ERR_FORMAT, "tokenizer: tokenizer.ggml.scores is not numeric");
            d = (double)v;
        }
        t->score[i] = (float)d;
    }
    return AERO_OK;
}

// tokenizer.ggml.token_type (optional): llama.cpp's token types mapped to our attributes.
static aero_status gguf_token_types(aero_tokenizer *t, const aero_gguf *g, aero_error *err) {
    const aero_gguf_value *types = get_arr(g, "tokenizer.ggml.token_type");
    if (!types) return AERO_OK;
    int32_t n = t->n_vocab;
    if (types->arr.n < (uint64_t)n)
        return aero_fail(err, AERO_ERR_FORMAT, "tokenizer: tokenizer.ggml.token_type has %llu entries for %d tokens",
                         (unsigned long long)types->arr.n, (int)n);
    for (int32_t i = 0; i < n; i++) {
        int64_t v;
        if (!aero_gguf_arr_i64(types, (uint64_t)i, &v))
            return aero_fail(err, AERO_ERR_FORMAT, "tokenizer: tokenizer.ggml.token_type is not an integer array");
        switch (v) {
        case 1: t->attr[i] = AERO_TA_NORMAL; break;
        case 2: t->attr[i] = AERO_TA_UNKNOWN; break;
        case 3: t->attr[i] = AERO_TA_CONTROL; break;
        case 4: t->attr[i] = AERO_TA_USER; break;
        case 5: t->attr[i] = AERO_TA_UNUSED; break;
        case 6: t->attr[i] = AERO_TA_BYTE; break;
        default: t->attr[i] = AERO_TA_NORMAL; break;
        }
    }
    return AERO_OK;
}

// BPE: the pre-tokenizer named by tokenizer.ggml.pre and the "a b" merges, ranked by position.
static aero_status gguf_bpe(aero_tokenizer *t, const aero_gguf *g, aero_error *err) {
    const char *pre = aero_gguf_get_str(g, "tokenizer.ggml.pre");
    if (!pre || !*pre) pre = "default"; // as llama.cpp: old conversions carry no pre-tokenizer name
    t->pre_name = strdup(pre);
    aero_status st = aero_tok_set_pre_by_name(t, pre, err);
    if (st != AERO_OK) return st;
    const aero_gguf_value *merges = get_arr(g, "tokenizer.ggml.merges");
    if (!merges || merges->arr.elem != AERO_GGUF_STRING)
        return aero_fail(err, AERO_ERR_FORMAT,
                         "tokenizer: BPE vocabulary without tokenizer.ggml.merges (array of strings)");
    if (merges->arr.n > UINT32_MAX / 4)
        return aero_fail(err, AERO_ERR_FORMAT, "tokenizer: tokenizer.ggml.merges has too many entries");
    st = aero_tok_merges_reserve(t, (uint32_t)merges->arr.n, err);
    if (st != AERO_OK) return st;
    for (uint64_t i = 0; i < merges->arr.n; i++) {
        const aero_gguf_str *m = aero_gguf_arr_str(merges, i);
        if (!m) continue;
        // "a b": split at the first space after the first byte (a part may itself be a space)
        const char *sp = m->len > 1 ? memchr(m->ptr + 1, ' ', m->len - 1) : NULL;
        if (!sp) continue;
        size_t al = (size_t)(sp - m->ptr);
        st = aero_tok_add_merge(t, m->ptr, al, sp + 1, m->len - al - 1, (uint32_t)i, err);
        if (st != AERO_OK) return st;
    }
    return AERO_OK;
}

// Special token ids and add-BOS/EOS/SEP flags the file sets, over the model kind's defaults.
static void gguf_special_tokens(aero_tokenizer *t, const aero_gguf *g) {
    if (t->kind == AERO_TOK_BPE && t->pre_name && (!strcmp(t->pre_name, "chatglm-bpe") || !strcmp(t->pre_name, "glm4")))
        t->bos = -1; // GLM-4 has no BOS unless the file names one
    get_id(g, "tokenizer.ggml.bos_token_id", &t->bos);
    get_id(g, "tokenizer.ggml.cls_token_id", t->kind == AERO_TOK_WPM ? &t->bos : &(int32_t){0});
    get_id(g, "tokenizer.ggml.eos_token_id", &t->eos);
    get_id(g, "tokenizer.ggml.eot_token_id", &t->eot);
    get_id(g, "tokenizer.ggml.eom_token_id", &t->eom);
    get_id(g, "tokenizer.ggml.unknown_token_id", &t->unk);
    get_id(g, "tokenizer.ggml.seperator_token_id", &t->sep);
    get_id(g, "tokenizer.ggml.padding_token_id", &t->pad);
    bool b;
    if (aero_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b)) t->add_bos = b;
    if (aero_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &b)) t->add_eos = b;
    if (aero_gguf_get_bool(g, "tokenizer.ggml.add_sep_token", &b)) t->add_sep = b;
    if (aero_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &b) && t->kind == AERO_TOK_SPM)
        t->add_space_prefix = b;
    t->strip_first_space = t->kind == AERO_TOK_SPM ? t->add_space_prefix : t->kind == AERO_TOK_WPM;
}

// Phi-3's special tokens swallow the whitespace after them (llama.cpp sets the same attributes by name).
static void gguf_phi3_rstrip(aero_tokenizer *t, const aero_gguf *g) {
    const char *name = aero_gguf_get_str(g, "general.name");
    if (!name || !(contains_ci(name, "phi-3") || contains_ci(name, "phi3"))) return;
    for (uint32_t i = 0; i < t->n_special; i++) t->attr[t->special[i]] |= AERO_TA_RSTRIP;
    int32_t id = aero_tok_lookup(t, "</s>", 4);
    if (id >= 0) t->attr[id] |= AERO_TA_RSTRIP;
    const char *keep[] = {"<unk>", "<s>", "<|endoftext|>"};
    for (int k = 0; k < 3; k++) {
        id = aero_tok_lookup(t, keep[k], strlen(keep[k]));
        if (id >= 0) t->attr[id] &= (uint16_t)~AERO_TA_RSTRIP;
    }
}

// Every step of a GGUF vocabulary in order: model kind, tokens, scores, types, merges, special tokens.
static aero_status gguf_build(aero_tokenizer *t, const aero_gguf *g, aero_error *err) {
    aero_status st = gguf_model_kind(t, g, err);
    if (st == AERO_OK) st = gguf_vocab(t, g, err);
    if (st == AERO_OK) st = gguf_scores(t, g, err);
    if (st == AERO_OK) st = gguf_token_types(t, g, err);
    if (st != AERO_OK) return st;
    if (t->kind == AERO_TOK_BPE) {
        st = gguf_bpe(t, g, err);
        if (st != AERO_OK) return st;
    } else {
        const char *pre = aero_gguf_get_str(g, "tokenizer.ggml.pre");
        if (pre) t->pre_name = strdup(pre);
    }
    gguf_special_tokens(t, g);
    st = aero_tok_finish(t, err);
    if (st != AERO_OK) return st;
    gguf_phi3_rstrip(t, g);
    return AERO_OK;
}

// Builds a tokenizer from tokenizer.ggml.* metadata (the model file's own vocabulary).
aero_status aero_tokenizer_from_gguf(aero_tokenizer **out, const aero_gguf *g, aero_error *err) {
    if (!out || !g) return aero_fail(err, AERO_ERR_INVALID, "aero_tokenizer_from_gguf: NULL argument");
    *out = NULL;
    aero_tokenizer *t = aero_tok_alloc();
    if (!t) return aero_fail(err, AERO_ERR_NOMEM, "tokenizer: out of memory");
    aero_status st = gguf_build(t, g, err);
    if (st != AERO_OK) {
        aero_tokenizer_free(t);
        return st;
    }
    *out = t;
    return AERO_OK;
}

// One entry point for the CLI and tests: *.json is a tokenizer.json, a directory (a Hugging Face model) its
// tokenizer.json, anything else a GGUF file.
aero_status aero_tokenizer_load(aero_tokenizer **out, const char *path, aero_error *err) {
    if (!out || !path) return aero_fail(err, AERO_ERR_INVALID, "aero_tokenizer_load: NULL argument");
    size_t n = strlen(path);
    if (n >= 5 && strcasecmp(path + n - 5, ".json") == 0) return aero_tokenizer_from_json(out, path, err);
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        char tj[4096];
        snprintf(tj, sizeof tj, "%s/tokenizer.json", path);
        return aero_tokenizer_from_json(out, tj, err);
    }
    aero_gguf g;
    memset(&g, 0, sizeof g);
    aero_status st = aero_gguf_open(&g, path, err);
    if (st != AERO_OK) return st;
    st = aero_tokenizer_from_gguf(out, &g, err);
    if (st != AERO_OK) aero_error_prefix(err, "%s", path);
    aero_gguf_free(&g);
    return st;
}
