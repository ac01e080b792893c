// Running a Hugging Face directory directly: its metadata and the few tensors that must change on the way in
// (Gemma's norms + 1, 1-D tensors to F32, rope factors from config.json) go into a small GGUF side file; every
// other tensor is a byte range of its shard, appended to the side file's table, so the streamer reads the shards
// as they are stored (BF16/F16/F32) and the model builder sees the same table a GGUF file gives.
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/util.h"
#include "hf.h"
#include "hf_internal.h"

// A directory is taken for a Hugging Face model; anything else for a GGUF file.
bool aero_hf_is_dir(const char *path) {
    struct stat sb;
    return path && stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

// The one place a model path is told apart, so every loader accepts both.
aero_status aero_model_source_open(aero_gguf *g, const char *path, aero_error *err) {
    return aero_hf_is_dir(path) ? aero_hf_open(g, path, err) : aero_gguf_open(g, path, err);
}

typedef struct {
    const hf_model *m;
    const hf_tensor *t;
} side_fill;

// Produces a side tensor's rows as F32 (HF order: the forward pass reorders Q/K outputs itself).
static bool fill_side(void *ctx, void *dst, uint64_t row0, uint64_t n_rows, aero_error *err) {
    const side_fill *f = ctx;
    return hf_read_rows(f->m, f->t, row0, n_rows, false, dst, err) == AERO_OK;
}

// tokenizer_config.json's chat template (a string, or a list of named ones of which "default" is taken).
aero_status hf_template_keys(aero_gguf_writer *w, const char *dir, aero_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    if (access(path, F_OK) != 0) return AERO_OK;
    json_error_t je;
    json_t *cfg = json_load_file(path, JSON_DECODE_INT_AS_REAL, &je);
    if (!cfg) return aero_fail(err, AERO_ERR_FORMAT, "%s: %s (line %d)", path, je.text, je.line);
    const json_t *ct = json_object_get(cfg, "chat_template");
    const char *tmpl = json_string_value(ct);
    if (json_is_array(ct)) {
        size_t i;
        json_t *e;
        json_array_foreach(ct, i, e) {
            const char *name = json_string_value(json_object_get(e, "name"));
            if (!tmpl || (name && !strcmp(name, "default")))
                tmpl = json_string_value(json_object_get(e, "template"));
        }
    }
    if (!tmpl) { // newer transformers save it beside the config
        json_decref(cfg);
        cfg = NULL;
        snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
        char *text = NULL;
        size_t len;
        aero_error e2 = {0};
        if (access(path, F_OK) == 0 && aero_read_file(path, 1u << 20, &text, &len, &e2) == AERO_OK) {
            aero_gguf_set_str(w, "tokenizer.chat_template", text);
            free(text);
        }
        return AERO_OK;
    }
    aero_gguf_set_str(w, "tokenizer.chat_template", tmpl);
    json_decref(cfg);
    return AERO_OK;
}

// Side file first (metadata + changed tensors), then the shards appended as further files of the table.
aero_status aero_hf_open(aero_gguf *g, const char *dir, aero_error *err) {
    memset(g, 0, sizeof *g);
    hf_model m;
    if (hf_model_open(&m, dir, err)) return err->code;
    side_fill *fills = calloc(m.n_t ? m.n_t : 1, sizeof *fills);
    char tmp[4096] = "", fdpath[64];
    int fd = -1;
    const char *tdir = getenv("TMPDIR");
    if (!fills) {
        aero_fail(err, AERO_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (hf_template_keys(m.w, m.dir, err)) goto fail;
    { // the vocabulary as GGUF keys too, for tools that read it from the table (template, info); the model itself
      // reads tokenizer.json with the tokenizer's own reader, which takes more than these keys can say
        aero_error terr = {0};
        (void)hf_tokenizer_keys(m.w, m.dir, &terr);
    }
    if (m.perm_qk) aero_gguf_set_bool(m.w, "aerollm.hf.qk_halves", true);
    aero_gguf_set_str(m.w, "aerollm.hf.dir", m.dir);
    for (uint64_t i = 0; i < m.n_t; i++) {
        if (!hf_needs_side(&m.t[i])) continue;
        fills[i] = (side_fill){&m, &m.t[i]};
        if (aero_gguf_add_tensor_rows(m.w, m.t[i].name, AERO_DT_F32, m.t[i].n_dims, m.t[i].ne, fill_side, &fills[i],
                                      err))
            goto fail;
    }
    // The side file lives on as an open descriptor only: named through /proc/self/fd for the streamer's opens.
    snprintf(tmp, sizeof tmp, "%s/aerollm-hf-XXXXXX", tdir && tdir[0] ? tdir : "/tmp");
    fd = mkstemp(tmp);
    if (fd < 0) {
        aero_fail(err, AERO_ERR_IO, "%s: cannot create the side file: %s", tmp, strerror(errno));
        tmp[0] = 0;
        goto fail;
    }
    close(fd);
    if (aero_gguf_write(m.w, tmp, err)) goto fail;
    fd = open(tmp, O_RDONLY | O_CLOEXEC);
    unlink(tmp);
    if (fd < 0) {
        aero_fail(err, AERO_ERR_IO, "%s: cannot reopen the side file: %s", tmp, strerror(errno));
        goto fail;
    }
    snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", fd);
    if (aero_gguf_open(g, fdpath, err)) goto fail;
    g->owned_fd = fd;
    fd = -1;
    {
        uint64_t n_direct = 0;
        for (uint64_t i = 0; i < m.n_t; i++) n_direct += !hf_needs_side(&m.t[i]);
        aero_gguf_file *files = realloc(g->files, sizeof *files * (g->n_files + m.n_shards));
        if (files) g->files = files;
        aero_tensor_info *ts = realloc(g->tensors, sizeof *ts * (g->n_tensors + n_direct + 1));
        if (ts) g->tensors = ts;
        if (!files || !ts) {
            aero_fail(err, AERO_ERR_NOMEM, "out of memory");
            goto fail;
        }
        uint32_t base = g->n_files;
        for (uint32_t s = 0; s < m.n_shards; s++) {
            if (!(g->files[base + s].path = strdup(m.shards[s].path))) {
                aero_fail(err, AERO_ERR_NOMEM, "out of memory");
                goto fail;
            }
            g->files[base + s].size = m.shards[s].size;
            g->files[base + s].data_offset = m.shards[s].data_start;
            g->n_files++;
        }
        for (uint64_t i = 0; i < m.n_t; i++) {
            const hf_tensor *t = &m.t[i];
            if (hf_needs_side(t)) continue;
            aero_tensor_info *o = &g->tensors[g->n_tensors];
            memset(o, 0, sizeof *o);
            if (!(o->name = strdup(t->name))) {
                aero_fail(err, AERO_ERR_NOMEM, "out of memory");
                goto fail;
            }
            o->type = (aero_dtype)t->st->type;
            o->n_dims = t->n_dims;
            memcpy(o->ne, t->ne, sizeof o->ne);
            o->n_elements = o->ne[0] * o->ne[1] * o->ne[2] * o->ne[3];
            o->file = base + t->shard;
            o->offset = t->st->offset + t->part_off;
            o->nbytes = t->nbytes;
            g->n_tensors++;
        }
    }
    free(fills);
    hf_model_free(&m);
    return AERO_OK;
fail:
    if (fd >= 0) close(fd);
    if (tmp[0]) unlink(tmp);
    aero_gguf_free(g);
    free(fills);
    hf_model_free(&m);
    return err->code;
}
