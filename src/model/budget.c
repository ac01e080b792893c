// The memory budget at start: what --mem must hold besides the weights (the KV cache, a resident drafter) is
// set aside before the weights are planned, from the file's metadata alone, so that run, serve and info agree.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/util.h"
#include "hf.h"
#include "model_internal.h"

aero_status aero_hparams_from_gguf(const aero_gguf *g, aero_hparams *hp, aero_error *err) {
    aero_arch_kind kind;
    return aero_hparams_read(g, hp, &kind, err);
}

aero_status aero_model_read_hparams(const char *path, aero_hparams *hp, aero_error *err) {
    aero_gguf g;
    if (!path) return aero_fail(err, AERO_ERR_INVALID, "no model path given");
    if (aero_model_source_open(&g, path, err)) return err->code;
    aero_status st = aero_hparams_from_gguf(&g, hp, err);
    aero_gguf_free(&g);
    return st;
}

// The KV cache of a model file, for `aerollm info`, which inspects files without loading them.
aero_status aero_gguf_kv_bytes(const aero_gguf *g, const aero_ctx_params *p, uint64_t *bytes, int *n_ctx,
                               aero_error *err) {
    *bytes = 0;
    *n_ctx = 0;
    aero_hparams hp;
    aero_error ignored = {0};
    if (aero_hparams_from_gguf(g, &hp, &ignored)) return AERO_OK; // not a model: no cache
    aero_status st = aero_kv_check(&hp, p, err);
    if (st) return st;
    *bytes = aero_kv_bytes(&hp, p);
    *n_ctx = aero_ctx_params_n_ctx(&hp, p);
    return AERO_OK;
}


// The streamer's smallest budget for this file, from a plan that opens and reads nothing.
static aero_status stream_min(const aero_gguf *g, const aero_hparams *hp, const aero_model_params *mp, uint64_t *min,
                              aero_error *err) {
    aero_stream_params sp = {
        .mem_budget = 0,
        .prefetch = mp->prefetch,
        .io_threads = mp->io_threads,
        .output_tensor = aero_gguf_tensor_index(g, "output.weight") >= 0 ? "output.weight" : "token_embd.weight",
        .embd_tensor = "token_embd.weight",
        .plan_only = true,
        .head_in_parts = !mp->device || !mp->device[0] || !strcmp(mp->device, "cpu"), // as aero_model_load
        .head_hot = mp->head_hot,

    };
    int first, last; // under a pipeline, the minimum of this rank's layers (src/mpi/pipeline.c)
    bool *external = NULL;
    if (aero_pipe_plan(g, hp->n_layer, mp, &first, &last, &external, err)) return err->code;
    sp.external = external;
    aero_stream *s;
    aero_status st = aero_stream_open(&s, g, hp->n_layer, &sp, err);
    free(external);
    if (st) return st;
    *min = aero_stream_get_plan(s)->min_budget;
    aero_stream_close(s);
    return AERO_OK;
}

aero_status aero_mem_split_plan(aero_mem_split *out, const aero_model_params *mp, const aero_ctx_params *cp,
                                uint64_t other_bytes, aero_error *err) {
    return aero_mem_split_plan_named(out, mp, cp, other_bytes, "draft model", err);
}

aero_status aero_mem_split_plan_named(aero_mem_split *out, const aero_model_params *mp, const aero_ctx_params *cp,
                                      uint64_t other_bytes, const char *other_what, aero_error *err) {
    memset(out, 0, sizeof *out);
    if (!mp->path) return aero_fail(err, AERO_ERR_INVALID, "no model path given");
    aero_gguf g;
    aero_hparams hp;
    if (aero_model_source_open(&g, mp->path, err)) return err->code;
    aero_status st = aero_hparams_from_gguf(&g, &hp, err);
    if (!st) st = aero_kv_check(&hp, cp, err);
    if (st) goto done;
    out->mem = mp->mem_budget;
    out->kv_bytes = aero_kv_bytes(&hp, cp);
    int first = 0, last = hp.n_layer; // under a pipeline, a rank caches its own layers only (not deepseek2's latent
    bool *external = NULL;            // cache yet, mla.c)
    if ((st = aero_pipe_plan(&g, hp.n_layer, mp, &first, &last, &external, err))) goto done;
    free(external);
    if (hp.kv_lora_rank == 0 && last - first < hp.n_layer) // aero_kv_bytes is n_layer times the bytes of one layer
        out->kv_bytes = out->kv_bytes / (uint64_t)hp.n_layer * (uint64_t)(last - first);
    out->other_bytes = other_bytes;
    out->n_ctx = aero_ctx_params_n_ctx(&hp, cp);
    out->n_seq = cp->n_seq > 0 ? cp->n_seq : 1;
    out->type_k = aero_kv_type_dtype(cp->type_k, cp->kv_f32);
    out->type_v = aero_kv_type_dtype(cp->type_v, cp->kv_f32);
    if (!out->mem) goto done;
    uint64_t wmin = 0;
    if ((st = stream_min(&g, &hp, mp, &wmin, err))) goto done;
    out->min_mem = wmin + out->kv_bytes + other_bytes;
    if (out->mem < out->min_mem) {
        char a[32], b[32], c[32], d[32], f[32], e[96] = "", seqs[32] = "";
        if (other_bytes) snprintf(e, sizeof e, " + %s %s", other_what, aero_format_size(other_bytes, f, sizeof f));
        if (out->n_seq > 1) snprintf(seqs, sizeof seqs, "%d sequences x ", out->n_seq);
        st = aero_fail(err, AERO_ERR_NOMEM,
                       "--mem %s is below the minimum %s (%llu bytes) for this model with its "
                       "KV cache: weights %s (the streamer's minimum) + KV cache %s (%s%d tokens, K %s, V %s)%s; "
                       "lower -c, quantize the cache (-ctk/-ctv q8_0) or raise --mem",
                       aero_format_size(out->mem, a, sizeof a), aero_format_size(out->min_mem, b, sizeof b),
                       (unsigned long long)out->min_mem, aero_format_size(wmin, c, sizeof c),
                       aero_format_size(out->kv_bytes, d, sizeof d), seqs, out->n_ctx, aero_dtype_name(out->type_k),
                       aero_dtype_name(out->type_v), e);
        goto done;
    }
    out->weight_budget = out->mem - out->kv_bytes - other_bytes;
done:
    aero_gguf_free(&g);
    return st;
}
