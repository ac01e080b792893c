// The public face of models (include/aerollm.h): the hyperparameters a caller needs as getters, so that
// aero_hparams (which grows with every architecture) stays internal, plus the library's version and the
// kernels' instruction set for benchmark reports.
#include "../kernels/kernels.h"
#include "model.h"

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
