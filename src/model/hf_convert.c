// `aerollm convert`: a Hugging Face directory as a GGUF file llama.cpp reads. The same mapping the direct loader
// uses (hf_map.c), plus what a GGUF must carry on its own: tensors transformed as llama.cpp's converter does
// (Q/K rows permuted into pairs, per-expert tensors merged into one [experts, rows, cols] tensor, Gemma norms + 1),
// converted to the requested type, and the tokenizer as tokenizer.ggml.* keys.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/dtype.h"
#include "../kernels/kernels.h"
#include "../tokenizer/tokenizer.h"
#include "hf.h"
#include "hf_internal.h"

// The public handle for `aerollm info`/`template` on either kind of model path.
aero_status aero_model_file_load(aero_gguf **out, const char *path, aero_error *err) {
    if (!aero_hf_is_dir(path)) return aero_gguf_load(out, path, err);
    *out = NULL;
    aero_gguf *g = calloc(1, sizeof *g);
    if (!g) return aero_fail(err, AERO_ERR_NOMEM, "%s: out of memory", path);
    if (aero_hf_open(g, path, err)) {
        free(g);
        return err->code;
    }
    *out = g;
    return AERO_OK;
}

// ---- tokenizer.json as tokenizer.ggml.* ----

// A special-token field of tokenizer_config.json (a string or an AddedToken object).
static const char *config_token(const json_t *cfg, const char *key) {
    const json_t *v = json_object_get(cfg, key);
    if (json_is_string(v)) return json_string_value(v);
    return json_string_value(json_object_get(v, "content"));
}

// tokenizer.ggml.pre for a byte-level BPE's pre_tokenizer: ByteLevel with its own regex is GPT-2's; a Split
// before a regex-less ByteLevel is looked up by its pattern.
static aero_status pre_name(const json_t *pt, const char *path, char *name, size_t cap, aero_error *err) {
    const char *type = json_string_value(json_object_get(pt, "type"));
    if (type && !strcmp(type, "ByteLevel") && !json_is_false(json_object_get(pt, "use_regex"))) {
        snprintf(name, cap, "gpt-2");
        return AERO_OK;
    }
    if (type && !strcmp(type, "Sequence")) {
        const json_t *list = json_object_get(pt, "pretokenizers"), *split = NULL;
        size_t i;
        json_t *e;
        json_array_foreach(list, i, e) {
            const char *t = json_string_value(json_object_get(e, "type"));
            if (t && !strcmp(t, "Split")) {
                if (split) split = json_null(); // more than one: not a known single-split entry
                else split = e;
            }
        }
        const char *re = split ? json_string_value(json_object_get(json_object_get(split, "pattern"), "Regex")) : NULL;
        if (re && aero_tok_pre_for_regex(re, name, cap)) return AERO_OK;
    }
    return aero_fail(err, AERO_ERR_UNSUPPORTED,
                     "%s: pre_tokenizer is not one llama.cpp names (GPT-2's ByteLevel, or a Split of a known regex)",
                     path);
}

// Byte-level BPE only: its tokens and merges carry over as they are; SentencePiece-style files are refused.
aero_status hf_tokenizer_keys(aero_gguf_writer *w, const char *dir, aero_error *err) {
    char path[4096], cpath[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    snprintf(cpath, sizeof cpath, "%s/tokenizer_config.json", dir);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je), *cfg = NULL;
    aero_status st = AERO_OK;
    char **toks = NULL;
    int32_t *types = NULL;
    char **merges = NULL;
    size_t n_tok = 0, n_merge = 0;
    if (!root) return aero_fail(err, je.line < 0 ? AERO_ERR_IO : AERO_ERR_FORMAT, "%s: %s", path, je.text);
    cfg = json_load_file(cpath, JSON_DECODE_INT_AS_REAL, NULL);
    const json_t *model = json_object_get(root, "model"), *vocab = json_object_get(model, "vocab"),
                 *added = json_object_get(root, "added_tokens");
    const char *mtype = json_string_value(json_object_get(model, "type"));
    if (!mtype || strcmp(mtype, "BPE") || !json_is_object(vocab)) {
        st = aero_fail(err, AERO_ERR_UNSUPPORTED, "%s: model type '%s' is not converted (byte-level BPE)", path,
                       mtype ? mtype : "(none)");
        goto done;
    }
    const char *dtype = json_string_value(json_object_get(json_object_get(root, "decoder"), "type"));
    if (!dtype || strcmp(dtype, "ByteLevel")) {
        st = aero_fail(err, AERO_ERR_UNSUPPORTED,
                       "%s: decoder '%s' is not converted (byte-level BPE; SentencePiece-style vocabularies are not "
                       "yet)",
                       path, dtype ? dtype : "(none)");
        goto done;
    }
    char pre[64];
    if ((st = pre_name(json_object_get(root, "pre_tokenizer"), path, pre, sizeof pre, err))) goto done;
    // ids: the vocabulary and the added tokens; holes (and the config's larger vocab_size) become [PADn] as in
    // llama.cpp's converter
    int64_t max_id = -1;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)vocab, k, v) if (json_integer_value(v) > max_id) max_id = json_integer_value(v);
    size_t i;
    json_array_foreach(added, i, v) if (json_integer_value(json_object_get(v, "id")) > max_id) max_id =
        json_integer_value(json_object_get(v, "id"));
    char cpath2[4096];
    snprintf(cpath2, sizeof cpath2, "%s/config.json", dir);
    json_t *mc = json_load_file(cpath2, JSON_DECODE_INT_AS_REAL, NULL);
    double vs = json_number_value(json_object_get(mc, "vocab_size"));
    json_decref(mc);
    if (max_id >= (1 << 24)) {
        st = aero_fail(err, AERO_ERR_FORMAT, "%s: vocabulary ids out of range", path);
        goto done;
    }
    n_tok = (size_t)(max_id + 1);
    if (vs > (double)n_tok && vs < (double)(1 << 24)) n_tok = (size_t)vs;
    if (max_id < 0 || n_tok > (1u << 24)) {
        st = aero_fail(err, AERO_ERR_FORMAT, "%s: vocabulary ids out of range", path);
        goto done;
    }
    toks = calloc(n_tok, sizeof *toks);
    types = calloc(n_tok, sizeof *types);
    if (!toks || !types) {
        st = aero_fail(err, AERO_ERR_NOMEM, "out of memory");
        goto done;
    }
    json_object_foreach((json_t *)vocab, k, v) {
        json_int_t id = json_integer_value(v);
        if (id < 0 || !json_is_integer(v)) continue;
        free(toks[id]);
        toks[id] = strdup(k);
        types[id] = 1; // NORMAL
    }
    json_array_foreach(added, i, v) {
        json_int_t id = json_integer_value(json_object_get(v, "id"));
        const char *c = json_string_value(json_object_get(v, "content"));
        if (id < 0 || !c) continue;
        free(toks[id]);
        toks[id] = strdup(c);
        types[id] = json_is_true(json_object_get(v, "special")) ? 3 : 4; // CONTROL : USER_DEFINED
    }
    for (size_t t = 0; t < n_tok; t++) {
        if (!toks[t]) {
            char pad[32];
            snprintf(pad, sizeof pad, "[PAD%zu]", t);
            toks[t] = strdup(pad);
            types[t] = 4;
        }
        if (!toks[t]) {
            st = aero_fail(err, AERO_ERR_NOMEM, "out of memory");
            goto done;
        }
    }
    const json_t *jm = json_object_get(model, "merges");
    n_merge = json_array_size(jm);
    merges = calloc(n_merge ? n_merge : 1, sizeof *merges);
    if (!merges) {
        st = aero_fail(err, AERO_ERR_NOMEM, "out of memory");
        goto done;
    }
    json_array_foreach(jm, i, v) { // "a b", or ["a", "b"] in newer files
        if (json_is_string(v)) merges[i] = strdup(json_string_value(v));
        else if (json_array_size(v) == 2 && json_is_string(json_array_get(v, 0)) && json_is_string(json_array_get(v, 1))) {
            const char *a = json_string_value(json_array_get(v, 0)), *b = json_string_value(json_array_get(v, 1));
            if ((merges[i] = malloc(strlen(a) + strlen(b) + 2))) sprintf(merges[i], "%s %s", a, b);
        } else {
            st = aero_fail(err, AERO_ERR_FORMAT, "%s: merge %zu is neither \"a b\" nor [a, b]", path, i);
            goto done;
        }
        if (!merges[i]) {
            st = aero_fail(err, AERO_ERR_NOMEM, "out of memory");
            goto done;
        }
    }
    aero_gguf_set_str(w, "tokenizer.ggml.model", "gpt2");
    aero_gguf_set_str(w, "tokenizer.ggml.pre", pre);
    aero_gguf_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)toks, n_tok);
    aero_gguf_set_arr(w, "tokenizer.ggml.token_type", AERO_GGUF_INT32, types, n_tok);
    aero_gguf_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)merges, n_merge);
    // BOS/EOS as the direct loader's tokenizer reads them: the post-processor's template, then tokenizer_config
    int64_t bos = -1, eos = -1;
    bool add_bos = false, add_eos = false;
    const json_t *post = json_object_get(root, "post_processor");
    const char *ptype = json_string_value(json_object_get(post, "type"));
    if (ptype && !strcmp(ptype, "TemplateProcessing")) {
        const json_t *single = json_object_get(post, "single");
        size_t cnt = json_array_size(single);
        for (size_t j = 0; j < cnt; j++) {
            const char *tid = json_string_value(json_object_get(json_object_get(json_array_get(single, j), "SpecialToken"), "id"));
            if (!tid) continue;
            int64_t id = -1;
            for (size_t t = 0; t < n_tok && id < 0; t++)
                if (!strcmp(toks[t], tid)) id = (int64_t)t;
            if (j == 0) bos = id, add_bos = id >= 0;
            else if (j == cnt - 1) eos = id, add_eos = id >= 0;
        }
    }
    static const char *const keys[3] = {"bos_token", "eos_token", "pad_token"};
    int64_t ids[3] = {-1, -1, -1};
    for (int q = 0; q < 3 && cfg; q++) {
        const char *name = config_token(cfg, keys[q]);
        for (size_t t = 0; name && t < n_tok && ids[q] < 0; t++)
            if (!strcmp(toks[t], name)) ids[q] = (int64_t)t;
    }
    if (bos < 0) bos = ids[0];
    if (ids[1] >= 0) eos = ids[1];
    const json_t *ab = json_object_get(cfg, "add_bos_token"), *ae = json_object_get(cfg, "add_eos_token");
    if (json_is_boolean(ab)) add_bos = json_is_true(ab);
    if (json_is_boolean(ae)) add_eos = json_is_true(ae);
    if (bos >= 0) aero_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos);
    if (eos >= 0) aero_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos);
    if (ids[2] >= 0) aero_gguf_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)ids[2]);
    aero_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", add_bos && bos >= 0);
    aero_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", add_eos && eos >= 0);
done:
    for (size_t t = 0; toks && t < n_tok; t++) free(toks[t]);
    for (size_t t = 0; merges && t < n_merge; t++) free(merges[t]);
    free(toks);
    free(types);
    free(merges);
    json_decref(cfg);
    json_decref(root);
    return st;
}

// ---- tensors ----

// One output tensor: a mapped tensor, or the experts of one layer and part stacked along the outermost dimension.
typedef struct {
    const hf_model *m;
    const hf_tensor **src; // n_src parts, each ne[1] rows
    int n_src;
    aero_dtype type;
    uint64_t ne0, rows_per_src;
    float *buf;
} conv_tensor;

// Produces rows of the output tensor: F32 rows from the shards (transformed), converted to the output type.
static bool fill_conv(void *ctx, void *dst, uint64_t row0, uint64_t n_rows, aero_error *err) {
    conv_tensor *c = ctx;
    size_t rb = aero_dtype_row_bytes(c->type, c->ne0);
    if (!c->buf && !(c->buf = malloc(sizeof(float) * (size_t)c->ne0))) {
        aero_fail(err, AERO_ERR_NOMEM, "out of memory");
        return false;
    }
    for (uint64_t r = 0; r < n_rows; r++) {
        uint64_t row = row0 + r, s = row / c->rows_per_src;
        if (hf_read_rows(c->m, c->src[s], row % c->rows_per_src, 1, true, c->buf, err)) return false;
        aero_quantize_row(c->type, c->buf, (char *)dst + r * rb, (int64_t)c->ne0);
    }
    return true;
}

// The type a tensor is written in: F32 for vectors and routers (as llama.cpp keeps them), the requested type
// where the row fits its blocks (F16 where it does not), else the stored one.
static aero_dtype out_type(const hf_tensor *t, int want) {
    if (t->n_dims == 1 || strstr(t->name, "ffn_gate_inp") || !t->st) return AERO_DT_F32;
    if (want < 0) return (aero_dtype)t->st->type;
    const aero_dtype_info *d = aero_dtype_get((uint32_t)want);
    if (!d || t->ne[0] % d->block) return AERO_DT_F16;
    return (aero_dtype)want;
}

// llama.cpp's file order: tensors outside layers first, layers in order, the output norm and head last.
static int64_t file_rank(const char *name) {
    int l = aero_gguf_tensor_layer(name);
    if (l >= 0) return 1 + (int64_t)l;
    return strncmp(name, "output", 6) ? 0 : INT64_MAX;
}

static int cmp_rank(const void *a, const void *b) {
    const hf_tensor *x = a, *y = b;
    int64_t rx = file_rank(x->name), ry = file_rank(y->name);
    if (rx != ry) return rx < ry ? -1 : 1;
    return strcmp(x->name, y->name);
}

// "blk.L.ffn_P.E.weight" -> expert E and the merged name "blk.L.ffn_P_exps.weight"; -1 for other names.
static long expert_of(const char *name, char *merged, size_t cap) {
    int l, n = 0;
    char part[8];
    long e;
    if (sscanf(name, "blk.%d.ffn_%7[a-z].%ld.weight%n", &l, part, &e, &n) != 3 || name[n]) return -1;
    snprintf(merged, cap, "blk.%d.ffn_%s_exps.weight", l, part);
    return e;
}

// One writer: metadata from the mapping, tensors produced row by row at write time (never all in memory).
aero_status aero_hf_convert(const aero_hf_convert_params *p, aero_error *err) {
    if (!p || !p->dir || !p->out) return aero_fail(err, AERO_ERR_INVALID, "convert: a directory and an output path");
    if (p->type >= 0 && (!aero_dtype_get((uint32_t)p->type) || !aero_dtype_get((uint32_t)p->type)->computable))
        return aero_fail(err, AERO_ERR_INVALID, "convert: type %s cannot be written", aero_dtype_name((uint32_t)p->type));
    hf_model m;
    if (hf_model_open(&m, p->dir, err)) return err->code;
    conv_tensor *cv = calloc(m.n_t ? m.n_t : 1, sizeof *cv);
    const hf_tensor **srcs = calloc(m.n_t ? m.n_t : 1, sizeof *srcs);
    bool *done = calloc(m.n_t ? m.n_t : 1, sizeof *done);
    if (!cv || !srcs || !done) {
        aero_fail(err, AERO_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (hf_template_keys(m.w, m.dir, err) || hf_tokenizer_keys(m.w, m.dir, err)) goto fail;
    aero_gguf_set_u32(m.w, "general.quantization_version", 2);
    qsort(m.t, m.n_t, sizeof *m.t, cmp_rank);
    size_t n_cv = 0, n_src = 0;
    for (uint64_t i = 0; i < m.n_t; i++) {
        if (done[i]) continue;
        conv_tensor *c = &cv[n_cv++];
        char merged[160];
        long e = expert_of(m.t[i].name, merged, sizeof merged);
        c->m = &m;
        c->src = &srcs[n_src];
        c->ne0 = m.t[i].ne[0];
        c->rows_per_src = m.t[i].n_dims >= 2 ? m.t[i].ne[1] : 1;
        c->type = out_type(&m.t[i], p->type);
        const char *name = m.t[i].name;
        uint32_t nd = m.t[i].n_dims;
        uint64_t ne[AERO_GGUF_MAX_DIMS] = {m.t[i].ne[0], m.t[i].ne[1], 1, 1};
        if (e >= 0) { // all experts of this layer and part, in expert order
            if (m.n_expert < 1) {
                aero_fail(err, AERO_ERR_FORMAT, "%s: expert tensors without an expert count", m.dir);
                goto fail;
            }
            for (int x = 0; x < m.n_expert; x++) {
                const hf_tensor *found = NULL;
                for (uint64_t j = i; j < m.n_t && !found; j++) {
                    char mj[160];
                    if (!done[j] && expert_of(m.t[j].name, mj, sizeof mj) == x && !strcmp(mj, merged)) {
                        found = &m.t[j];
                        done[j] = true;
                    }
                }
                if (!found) {
                    aero_fail(err, AERO_ERR_FORMAT, "%s: %s: expert %d is missing", m.dir, merged, x);
                    goto fail;
                }
                srcs[n_src++] = found;
            }
            c->n_src = m.n_expert;
            name = merged;
            nd = 3;
            ne[2] = (uint64_t)m.n_expert;
        } else {
            srcs[n_src++] = &m.t[i];
            c->n_src = 1;
            done[i] = true;
        }
        if (aero_gguf_add_tensor_rows(m.w, name, c->type, nd, ne, fill_conv, c, err)) goto fail;
    }
    if (p->progress) aero_gguf_writer_progress(m.w, p->progress, p->progress_ctx);
    if (aero_gguf_write(m.w, p->out, err)) goto fail;
    for (size_t i = 0; i < n_cv; i++) free(cv[i].buf);
    free(cv);
    free(srcs);
    free(done);
    hf_model_free(&m);
    return AERO_OK;
fail:
    for (size_t i = 0; cv && i < m.n_t; i++) free(cv[i].buf);
    free(cv);
    free(srcs);
    free(done);
    hf_model_free(&m);
    return err->code;
}
