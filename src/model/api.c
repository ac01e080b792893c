// The public face of models (include/aerollm.h): the hyperparameters a caller needs as getters, so that
// aero_hparams (which grows with every architecture) stays internal, plus the library's version and the
// kernels' instruction set for benchmark reports.
#include "../kernels/kernels.h"
#include "../kernels/ops.h"
#include "../stream/stream.h"
#include "model.h"
#include "model_internal.h"

// The version a program linked against, for `--version` and bug reports.
const char *aero_version(void) { return AEROLLM_VERSION; }

// What benchmarks print beside their numbers: which SIMD kernels ran.
const char *aero_kernels_isa_name(void) { return aero_isa_name(aero_kernels_isa()); }

// Hyperparameter getters (see aero_hparams for their meaning).
const char *aero_model_arch(const aero_model *m) { return aero_model_hparams(m)->arch; }
int aero_model_n_layer(const aero_model *m) { return aero_model_hparams(m)->n_layer; }
int aero_model_n_embd(const aero_model *m) { return aero_model_hparams(m)->n_embd; }
int aero_model_n_vocab(const aero_model *m) { return aero_model_hparams(m)->n_vocab; }
int aero_model_n_ctx_train(const aero_model *m) { return aero_model_hparams(m)->n_ctx_train; }

// The file the model was loaded from (the first of a split model), for reports.
const char *aero_model_path(const aero_model *m) { return aero_model_gguf(m)->files[0].path; }

// Embeddings need the last hidden state, which aero_decode keeps in the context's residual rows until the next
// pass; the output norm is applied here as the head applies it, so a row is what the vocabulary projection reads.
aero_status aero_ctx_hidden(aero_ctx *c, int i, float *out, aero_error *err) {
    if (c->gpu && c->hidden_users <= 0)
        return aero_fail(err, AERO_ERR_UNSUPPORTED,
                         "hidden states are not kept by a context computing on the GPU (only for a draft head)");
    if (i < 0 || i >= c->cap) return aero_fail(err, AERO_ERR_RANGE, "hidden state of batch token %d: no such token", i);
    aero_model *m = c->m;
    const float *on = aero_stream_global(m->stream, m->out_norm);
    if (!on) on = aero_stream_tensor(m->stream, m->out_norm);
    if (!on) return aero_fail(err, AERO_ERR_UNSUPPORTED, "the output norm is not in memory");
    aero_rmsnorm(out, c->x + (size_t)i * m->hp.n_embd, on, m->hp.n_embd, m->hp.norm_eps);
    return AERO_OK;
}

// A draft head's target context: counted, so the GPU's copies stop when the last head is freed.
void aero_ctx_want_hidden(aero_ctx *c, bool on) {
    if (on) c->hidden_users++;
    else if (c->hidden_users > 0) c->hidden_users--;
}

bool aero_ctx_on_gpu(const aero_ctx *c) { return c->gpu != NULL; }
