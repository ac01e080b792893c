// AeroLLM public API: the one header the CLI and the server build on. It gathers the module interfaces a
// program needs: errors, GGUF files, tokenizers, models with their KV cache and batched forward pass,
// weight streaming statistics, sampling, speculative decoding and chat templates.
#ifndef AEROLLM_H
#define AEROLLM_H

#include "../src/core/status.h"
#include "../src/core/dtype.h"
#include "../src/core/threadpool.h"
#include "../src/core/util.h"
#include "../src/core/measure.h"
#include "../src/format/gguf.h"
#include "../src/kernels/kernels.h"
#include "../src/tokenizer/tokenizer.h"
#include "../src/stream/stream.h"
#include "../src/model/model.h"
#include "../src/sample/sample.h"
#include "../src/spec/spec.h"
#include "../src/chat/chat.h"
#include "../src/server/server.h"

#define AEROLLM_VERSION "0.1.0"

#endif
