// Every engine module's internal header, for the white-box tests that reach past the public API
// (include/aerollm.h is what programs use; tests/test_public_api.c checks that it suffices on its own).
#ifndef AERO_TESTS_MODULES_H
#define AERO_TESTS_MODULES_H

#include <aerollm.h>

#include "chat/chat.h"
#include "chat/template_pick.h"
#include "core/buf.h"
#include "core/dtype.h"
#include "core/measure.h"
#include "core/status.h"
#include "core/threadpool.h"
#include "core/util.h"
#include "format/gguf.h"
#include "kernels/kernels.h"
#include "model/generate.h"
#include "model/model.h"
#include "sample/sample.h"
#include "server/server.h"
#include "speculative/spec.h"
#include "stream/stream.h"
#include "tokenizer/tokenizer.h"

#endif
