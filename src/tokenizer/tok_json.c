// Vocabulary and pipeline from a Hugging Face tokenizer.json (plus tokenizer_config.json beside it for the
// BOS/EOS names): model BPE or WordPiece; normalizers, pre-tokenizers, decoder and post-processor are mapped
// onto the same engine the GGUF path uses. Anything the engine cannot reproduce is an error naming it.
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

static const char *jstr(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

// An optional boolean field.
static bool jbool(const json_t *o, const char *key, bool dflt) {
    const json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

// Appends a normalizer step (takes ownership of its strings).
static aero_status add_norm(aero_tokenizer *t, aero_norm_step s, aero_error *err) {
    aero_norm_step *p = realloc(t->norm, (size_t)(t->n_norm + 1) * sizeof *p);
    if (!p) {
        free(s.a);
        free(s.b);
        return aero_fail(err, AERO_ERR_NOMEM, "tokenizer: out of memory");
    }
    t->norm = p;
    t->norm[t->n_norm++] = s;
    return AERO_OK;
}

// Copies n bytes that may contain NUL.
static char *dupn(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

// Maps one normalizer object (recursively for Sequence).
static aero_status load_normalizer(aero_tokenizer *t, const json_t *n, aero_error *err) {
    if (!n || json_is_null(n)) return AERO_OK;
    const char *type = jstr(n, "type");
    if (!type) return aero_fail(err, AERO_ERR_FORMAT, "tokenizer.json: normalizer without a type");
    if (!strcmp(type, "Sequence")) {
        const json_t *arr = json_object_get(n, "normalizers");
        size_t i;
        const json_t *v;
        json_array_foreach(arr, i, v) {
            aero_status st = load_normalizer(t, v, err);
            if (st != AERO_OK) return st;
        }
        return AERO_OK;
    }
    if (!strcmp(type, "NFC")) return add_norm(t, (aero_norm_step){.op = AERO_NORM_NFC}, err);
    if (!strcmp(type, "NFD")) return add_norm(t, (aero_norm_step){.op = AERO_NORM_NFD}, err);
    if (!strcmp(type, "Lowercase")) return add_norm(t, (aero_norm_step){.op = AERO_NORM_LOWER}, err);
    if (!strcmp(type, "StripAccents")) return add_norm(t, (aero_norm_step){.op = AERO_NORM_STRIP_ACCENTS}, err);
    if (!strcmp(type, "Prepend")) {
        const json_t *p = json_object_get(n, "prepend");
        if (!json_is_string(p))
            return aero_fail(err, AERO_ERR_FORMAT, "tokenizer.json: Prepend normalizer without 'prepend'");
        aero_norm_step s = {.op = AERO_NORM_PREPEND, .alen = json_string_length(p)};
        s.a = dupn(json_string_value(p), s.alen);
        if (!s.a) return aero_fail(err, AERO_ERR_NOMEM, "tokenizer: out of memory");
        return add_norm(t, s, err);
    }
    if (!strcmp(type, "Replace")) {
        const json_t *pat = json_object_get(n, "pattern"), *content = json_object_get(n, "content");
        const json_t *str = json_object_get(pat, "String");
        if (!json_is_string(str) || !json_is_string(content))
            return aero_fail(err, AERO_ERR_UNSUPPORTED,
                             "tokenizer.json: Replace normalizer supports only a String pattern");
        aero_norm_step s = {
            .op = AERO_NORM_REPLACE, .alen = json_string_length(str), .blen = json_string_length(content)};
        s.a = dupn(json_string_value(str), s.alen);
        s.b = dupn(json_string_value(content), s.blen);
        if (!s.a || !s.b) {
            free(s.a);
            free(s.b);
            return aero_fail(err, AERO_ERR_NOMEM, "tokenizer: out of memory");
        }
        return add_norm(t, s, err);
    }
    if (!strcmp(type, "BertNormalizer")) {
        t->wpm_lowercase = jbool(n, "lowercase", true);
        const json_t *sa = json_object_get(n, "strip_accents");
        t->wpm_strip_accents = json_is_boolean(sa) ? json_is_true(sa) : t->wpm_lowercase;
        return AERO_OK;
    }
    return aero_fail(err, AERO_ERR_UNSUPPORTED, "tokenizer.json: unsupported normalizer '%s'", type);
}

// Maps a Split 'behavior' name; *ok is false for an unknown one.
static aero_split_behavior parse_behavior(const char *b, bool *ok) {
    *ok = true;
    if (!b || !strcmp(b, "Isolated")) return AERO_SPLIT_ISOLATED;
    if (!strcmp(b, "Removed")) return AERO_SPLIT_REMOVED;
    if (!strcmp(b, "MergedWithPrevious")) return AERO_SPLIT_MERGED_PREV;
    if (!strcmp(b, "MergedWithNext")) return AERO_SPLIT_MERGED_NEXT;
    if (!strcmp(b, "Contiguous")) return AERO_SPLIT_CONTIGUOUS;
    *ok = false;
    return AERO_SPLIT_ISOLATED;
}

#define GPT2_REGEX "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

// Maps one pre-tokenizer object (recursively for Sequence) onto split/rewrite rules.
static aero_status load_pretok(aero_tokenizer *t, const json_t *p, aero_error *err) {
    if (!p || json_is_null(p)) return AERO_OK;
    const char *type = jstr(p, "type");
    if (!type) return aero_fail(err, AERO_ERR_FORMAT, "tokenizer.json: pre_tokenizer without a type");
    if (!strcmp(type, "Sequence")) {
        size_t i;
        const json_t *v;
        json_array_foreach(json_object_get(p, "pretokenizers"), i, v) {
            aero_status st = load_pretok(t, v, err);
            if (st != AERO_OK) return st;
        }
        return AERO_OK;
    }
    if (!strcmp(type, "Split")) {
        const json_t *pat = json_object_get(p, "pattern");
        const json_t *re = json_object_get(pat, "Regex"), *str = json_object_get(pat, "String");
        bool ok;
        aero_split_behavior b = parse_behavior(jstr(p, "behavior"), &ok);
        if (!ok)
            return aero_fail(err, AERO_ERR_UNSUPPORTED, "tokenizer.json: unsupported Split behavior '%s'",
                             jstr(p, "behavior"));
        bool invert = jbool(p, "invert", false);
        if (json_is_string(re))
            return aero_tok_add_split(t, json_string_value(re), json_string_length(re), false, b, invert, err);
        if (json_is_string(str))
            return aero_tok_add_split(t, json_string_value(str), json_string_length(str), true, b, invert, err);
        return aero_fail(err, AERO_ERR_FORMAT, "tokenizer.json: Split pre-tokenizer without a pattern");
    }
    if (!strcmp(type, "ByteLevel")) {
        t->byte_level = true;
        if (jbool(p, "add_prefix_space", false)) {
            aero_pre_rule r = {.kind = AERO_PRE_PREFIX_SPACE};
            aero_status st = aero_tok_add_rule(t, &r, err);
            if (st != AERO_OK) return st;
        }
        if (jbool(p, "use_regex", true))
            return aero_tok_add_split(t, GPT2_REGEX, strlen(GPT2_REGEX), false, AERO_SPLIT_ISOLATED, false, err);
        return AERO_OK;
    }
    if (!strcmp(type, "Digits")) {
        const char *re = jbool(p, "individual_digits", false) ? "\\p{N}" : "\\p{N}+";
        return aero_tok_add_split(t, re, strlen(re), false, AERO_SPLIT_ISOLATED, false, err);
    }
    if (!strcmp(type, "Whitespace")) {
        const char *re = "\\w+|[^\\w\\s]+";
        return aero_tok_add_split(t, re, strlen(re), false, AERO_SPLIT_REMOVED, true, err);
    }
    if (!strcmp(type, "WhitespaceSplit")) {
        const char *re = "\\s+";
        return aero_tok_add_split(t, re, strlen(re), false, AERO_SPLIT_REMOVED, false, err);
    }
    if (!strcmp(type, "Punctuation")) {
        bool ok;
        aero_split_behavior b = parse_behavior(jstr(p, "behavior"), &ok);
        if (!ok) return aero_fail(err, AERO_ERR_UNSUPPORTED, "tokenizer.json: unsupported Punctuation behavior");
        const char *re = "[\\p{P}!-/:-@\\[-`{-~]";
        return aero_tok_add_split(t, re, strlen(re), false, b, false, err);
    }
    if (!strcmp(type, "Metaspace")) {
        const char *rep = jstr(p, "replacement");
        if (rep && strcmp(rep, "\xE2\x96\x81") != 0)
            return aero_fail(err, AERO_ERR_UNSUPPORTED, "tokenizer.json: Metaspace replacement other than U+2581");
        aero_pre_rule r = {.kind = AERO_PRE_METASPACE, .meta_split = jbool(p, "split", true)};
        const char *scheme = jstr(p, "prepend_scheme");
        if (scheme) {
            r.meta_prepend_always = !strcmp(scheme, "always");
            r.meta_prepend_first = !strcmp(scheme, "first");
        } else {
            r.meta_prepend_always = jbool(p, "add_prefix_space", true);
        }
        t->metaspace_decode = true;
        t->strip_first_space = r.meta_prepend_always || r.meta_prepend_first;
        return aero_tok_add_rule(t, &r, err);
    }
    if (!strcmp(type, "BertPreTokenizer")) {
        if (t->kind != AERO_TOK_WPM)
            return aero_fail(err, AERO_ERR_UNSUPPORTED,
                             "tokenizer.json: BertPreTokenizer is supported with WordPiece only");
        return AERO_OK;
    }
    return aero_fail(err, AERO_ERR_UNSUPPORTED, "tokenizer.json: unsupported pre_tokenizer '%s'", type);
}

// Reads decoder settings that change how pieces print.
static aero_status load_decoder(aero_tokenizer *t, const json_t *d, aero_error *err) {
    if (!d || json_is_null(d)) return AERO_OK;
    const char *type = jstr(d, "type");
    if (!type) return AERO_OK;
    if (!strcmp(type, "Sequence")) {
        size_t i;
        const json_t *v;
        json_array_foreach(json_object_get(d, "decoders"), i, v) {
            aero_status st = load_decoder(t, v, err);
            if (st != AERO_OK) return st;
        }
    } else if (!strcmp(type, "ByteLevel")) {
        t->byte_level = true;
    } else if (!strcmp(type, "Replace")) {
        const json_t *str = json_object_get(json_object_get(d, "pattern"), "String");
        if (json_is_string(str) && !strcmp(json_string_value(str), "\xE2\x96\x81")) t->metaspace_decode = true;
    } else if (!strcmp(type, "Metaspace")) {
        t->metaspace_decode = true;
        const char *scheme = jstr(d, "prepend_scheme");
        t->strip_first_space = scheme ? strcmp(scheme, "never") != 0 : jbool(d, "add_prefix_space", true);
    } else if (!strcmp(type, "Strip")) {
        const json_t *start = json_object_get(d, "start");
        const char *content = jstr(d, "content");
        if (json_is_integer(start) && json_integer_value(start) >= 1 && content && !strcmp(content, " "))
            t->strip_first_space = true;
    }
    return AERO_OK;
}

// The content of a tokenizer_config.json special-token field (a string or an AddedToken object).
static const char *config_token(const json_t *cfg, const char *key) {
    const json_t *v = json_object_get(cfg, key);
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_object(v)) return jstr(v, "content");
    return NULL;
}

// tokenizer_config.json next to tokenizer.json holds the BOS/EOS names; absent is fine.
static json_t *load_config_beside(const char *path) {
    const char *slash = strrchr(path, '/');
    size_t dir = slash ? (size_t)(slash - path + 1) : 0;
    char *p = malloc(dir + sizeof "tokenizer_config.json");
    if (!p) return NULL;
    memcpy(p, path, dir);
    strcpy(p + dir, "tokenizer_config.json");
    // model_max_length is often 1e30 written as an integer, too big for json_int_t
    json_t *cfg = json_load_file(p, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, NULL);
    free(p);
    return cfg;
}

// model.type: BPE or WordPiece (with its continuing-subword prefix); anything else is refused.
static aero_status json_model_kind(aero_tokenizer *t, const json_t *model, const char *path, aero_error *err) {
    const char *mtype = jstr(model, "type");
    if (mtype && !strcmp(mtype, "BPE")) {
        t->kind = AERO_TOK_BPE;
    } else if (mtype && !strcmp(mtype, "WordPiece")) {
        t->kind = AERO_TOK_WPM;
        const char *pfx = jstr(model, "continuing_subword_prefix");
        t->wpm_prefix = strdup(pfx ? pfx : "##");
        if (!t->wpm_prefix) return aero_fail(err, AERO_ERR_NOMEM, "%s: out of memory", path);
    } else {
        return aero_fail(err, AERO_ERR_UNSUPPORTED, "%s: unsupported model type '%s' (supported: BPE, WordPiece)", path,
                         mtype ? mtype : "(none)");
    }
    t->model_name = strdup(mtype);
    return AERO_OK;
}

// The largest id of model.vocab and added_tokens, checking every id on the way; -1 for an empty vocabulary.
static aero_status json_max_id(const json_t *vocab, const json_t *added, const char *path, int64_t *max_id,
                               aero_error *err) {
    *max_id = -1;
    const char *key;
    size_t klen;
    json_t *val;
    json_object_keylen_foreach((json_t *)vocab, key, klen, val) {
        (void)key;
        (void)klen;
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) >= INT32_MAX / 2)
            return aero_fail(err, AERO_ERR_FORMAT, "%s: model.vocab has a non-integer or out-of-range id", path);
        if (json_integer_value(val) > *max_id) *max_id = json_integer_value(val);
    }
    size_t ai;
    const json_t *at;
    json_array_foreach(added, ai, at) {
        const json_t *id = json_object_get(at, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= INT32_MAX / 2 ||
            !json_is_string(json_object_get(at, "content")))
            return aero_fail(err, AERO_ERR_FORMAT, "%s: added_tokens[%zu] lacks a valid id or content", path, ai);
        if (json_integer_value(id) > *max_id) *max_id = json_integer_value(id);
    }
    if (*max_id < 0) return aero_fail(err, AERO_ERR_FORMAT, "%s: empty vocabulary", path);
    return AERO_OK;
}

// The vocabulary: model.vocab plus added_tokens, indexed by id; holes stay empty (and unused) strings.
static aero_status json_vocab(aero_tokenizer *t, const json_t *root, const json_t *vocab, const char *path,
                              aero_error *err) {
    const json_t *added = json_object_get(root, "added_tokens");
    int64_t max_id;
    aero_status st = json_max_id(vocab, added, path, &max_id, err);
    if (st != AERO_OK) return st;
    int32_t n = (int32_t)(max_id + 1);
    const char **strs = calloc((size_t)n, sizeof *strs);
    uint32_t *lens = calloc((size_t)n, sizeof *lens);
    if (!strs || !lens) {
        st = aero_fail(err, AERO_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    const char *key;
    size_t klen;
    json_t *val;
    json_object_keylen_foreach((json_t *)vocab, key, klen, val) {
        int32_t id = (int32_t)json_integer_value(val);
        strs[id] = key;
        lens[id] = (uint32_t)klen;
    }
    size_t ai;
    const json_t *at;
    json_array_foreach(added, ai, at) {
        const json_t *c = json_object_get(at, "content");
        int32_t id = (int32_t)json_integer_value(json_object_get(at, "id"));
        strs[id] = json_string_value(c);
        lens[id] = (uint32_t)json_string_length(c);
    }
    for (int32_t i = 0; i < n; i++)
        if (!strs[i]) strs[i] = "";
    st = aero_tok_set_vocab(t, n, strs, lens, err);
    if (st != AERO_OK) goto done;
    for (int32_t i = 0; i < n; i++)
        if (lens[i] == 0) t->attr[i] = AERO_TA_UNUSED;
    json_array_foreach(added, ai, at) {
        int32_t id = (int32_t)json_integer_value(json_object_get(at, "id"));
        uint16_t a = jbool(at, "special", false) ? AERO_TA_CONTROL : AERO_TA_USER;
        if (jbool(at, "lstrip", false)) a |= AERO_TA_LSTRIP;
        if (jbool(at, "rstrip", false)) a |= AERO_TA_RSTRIP;
        t->attr[id] = a;
    }
done:
    free(strs);
    free(lens);
    return st;
}

// model.merges in either spelling ("a b" strings or [a, b] pairs), ranked by position.
static aero_status json_merges(aero_tokenizer *t, const json_t *merges, const char *path, aero_error *err) {
    aero_status st = aero_tok_merges_reserve(t, (uint32_t)json_array_size(merges), err);
    if (st != AERO_OK) return st;
    size_t mi;
    const json_t *m;
    json_array_foreach(merges, mi, m) {
        const char *a, *b;
        size_t al, bl;
        if (json_is_string(m)) {
            const char *s = json_string_value(m);
            size_t sl = json_string_length(m);
            const char *sp = sl > 1 ? memchr(s + 1, ' ', sl - 1) : NULL;
            if (!sp) continue;
            a = s;
            al = (size_t)(sp - s);
            b = sp + 1;
            bl = sl - al - 1;
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0));
            al = json_string_length(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1));
            bl = json_string_length(json_array_get(m, 1));
        } else {
            return aero_fail(err, AERO_ERR_FORMAT, "%s: merges[%zu] is neither \"a b\" nor [a, b]", path, mi);
        }
        st = aero_tok_add_merge(t, a, al, b, bl, (uint32_t)mi, err);
        if (st != AERO_OK) return st;
    }
    return AERO_OK;
}

// The BPE model's options and merges; the variants we cannot reproduce exactly are refused.
static aero_status json_bpe_model(aero_tokenizer *t, const json_t *model, const char *path, aero_error *err) {
    const char *cs = jstr(model, "continuing_subword_prefix"), *ew = jstr(model, "end_of_word_suffix");
    if ((cs && *cs) || (ew && *ew))
        return aero_fail(err, AERO_ERR_UNSUPPORTED, "%s: BPE with continuing_subword_prefix/end_of_word_suffix", path);
    const json_t *dropout = json_object_get(model, "dropout");
    if (json_is_number(dropout) && json_number_value(dropout) > 0)
        return aero_fail(err, AERO_ERR_UNSUPPORTED, "%s: BPE dropout is not deterministic", path);
    t->byte_fallback = jbool(model, "byte_fallback", false);
    t->fuse_unk = jbool(model, "fuse_unk", false);
    t->ignore_merges = jbool(model, "ignore_merges", false);
    const char *unk = jstr(model, "unk_token");
    if (unk) t->unk = aero_tok_lookup(t, unk, strlen(unk));
    const json_t *merges = json_object_get(model, "merges");
    if (!json_is_array(merges)) return aero_fail(err, AERO_ERR_FORMAT, "%s: BPE model without a merges array", path);
    return json_merges(t, merges, path, err);
}

// BOS/EOS/SEP from the post-processor: TemplateProcessing's first and last special tokens, or BERT's cls/sep.
static void json_post_processor(aero_tokenizer *t, const json_t *post) {
    const char *ptype = jstr(post, "type");
    if (ptype && !strcmp(ptype, "TemplateProcessing")) {
        const json_t *single = json_object_get(post, "single");
        size_t cnt = json_array_size(single);
        for (size_t k = 0; k < cnt; k++) {
            const json_t *item = json_object_get(json_array_get(single, k), "SpecialToken");
            const char *tid = jstr(item, "id");
            if (!tid) continue;
            int32_t id = aero_tok_lookup(t, tid, strlen(tid));
            if (k == 0) {
                t->bos = id;
                t->add_bos = id >= 0;
            } else if (k == cnt - 1) {
                t->eos = id;
                t->add_eos = id >= 0;
            }
        }
    } else if (ptype && (!strcmp(ptype, "BertProcessing") || !strcmp(ptype, "RobertaProcessing"))) {
        const json_t *cls = json_object_get(post, "cls"), *sep = json_object_get(post, "sep");
        if (json_is_array(cls) && json_is_string(json_array_get(cls, 0))) {
            t->bos = aero_tok_lookup(t, json_string_value(json_array_get(cls, 0)),
                                     json_string_length(json_array_get(cls, 0)));
            t->add_bos = t->bos >= 0;
        }
        if (json_is_array(sep) && json_is_string(json_array_get(sep, 0))) {
            t->sep = aero_tok_lookup(t, json_string_value(json_array_get(sep, 0)),
                                     json_string_length(json_array_get(sep, 0)));
            t->add_sep = t->sep >= 0;
        }
    }
}

// tokenizer_config.json's special tokens fill what the post-processor left out (its EOS wins).
static void json_config_tokens(aero_tokenizer *t, const char *path) {
    json_t *cfg = load_config_beside(path);
    if (!cfg) return;
    const char *b = config_token(cfg, "bos_token"), *e = config_token(cfg, "eos_token"),
               *u = config_token(cfg, "unk_token");
    if (b && t->bos < 0) t->bos = aero_tok_lookup(t, b, strlen(b));
    if (e) t->eos = aero_tok_lookup(t, e, strlen(e));
    if (u && t->unk < 0) t->unk = aero_tok_lookup(t, u, strlen(u));
    const json_t *ab = json_object_get(cfg, "add_bos_token");
    if (json_is_boolean(ab)) t->add_bos = json_is_true(ab);
    json_decref(cfg);
}

// Everything of tokenizer.json but the file reading: model, vocabulary, pipeline stages, special tokens.
static aero_status json_build(aero_tokenizer *t, const json_t *root, const char *path, aero_error *err) {
    const json_t *model = json_object_get(root, "model");
    const json_t *vocab = json_object_get(model, "vocab");
    if (!json_is_object(model) || !json_is_object(vocab))
        return aero_fail(err, AERO_ERR_FORMAT, "%s: no model.vocab object", path);
    aero_status st = json_model_kind(t, model, path, err);
    if (st == AERO_OK) st = json_vocab(t, root, vocab, path, err);
    if (st != AERO_OK) return st;
    if (t->kind == AERO_TOK_BPE) {
        st = json_bpe_model(t, model, path, err);
        if (st != AERO_OK) return st;
    } else {
        const char *unk = jstr(model, "unk_token");
        if (unk) t->unk = aero_tok_lookup(t, unk, strlen(unk));
        t->strip_first_space = true;
    }
    st = load_normalizer(t, json_object_get(root, "normalizer"), err);
    if (st == AERO_OK) st = load_pretok(t, json_object_get(root, "pre_tokenizer"), err);
    if (st == AERO_OK) st = load_decoder(t, json_object_get(root, "decoder"), err);
    if (st != AERO_OK) {
        aero_error_prefix(err, "%s", path);
        return st;
    }
    // BOS/EOS: the post-processor template first, then tokenizer_config.json
    json_post_processor(t, json_object_get(root, "post_processor"));
    json_config_tokens(t, path);
    t->added_metaspace = t->metaspace_decode;
    return aero_tok_finish(t, err);
}

// Builds a tokenizer from a Hugging Face tokenizer.json (for safetensors checkpoints).
aero_status aero_tokenizer_from_json(aero_tokenizer **out, const char *path, aero_error *err) {
    if (!out || !path) return aero_fail(err, AERO_ERR_INVALID, "aero_tokenizer_from_json: NULL argument");
    *out = NULL;
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_ALLOW_NUL, &jerr);
    if (!root) {
        return aero_fail(err, jerr.line < 0 ? AERO_ERR_IO : AERO_ERR_FORMAT, "%s: %s (line %d, column %d)", path,
                         jerr.text, jerr.line, jerr.column);
    }
    aero_tokenizer *t = aero_tok_alloc();
    aero_status st = t ? json_build(t, root, path, err) : aero_fail(err, AERO_ERR_NOMEM, "%s: out of memory", path);
    json_decref(root);
    if (st != AERO_OK) {
        aero_tokenizer_free(t);
        return st;
    }
    *out = t;
    return AERO_OK;
}
