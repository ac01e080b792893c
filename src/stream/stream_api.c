// The residency plan of a model file without loading it (include/aerollm.h), for `aerollm info --mem`: the same
// planner the engine runs, asked to decide and stop.
#include "stream.h"

// A plan-only stream over g: the head is output.weight, or the tied embedding when the file has none; the head
// may be streamed in row blocks, as the CPU forward pass reads it.
aero_status aero_stream_open_plan(aero_stream **out, const aero_gguf *g, int n_layer, uint64_t budget,
                                  aero_error *err) {
    aero_stream_params sp = {
        .mem_budget = budget,
        .output_tensor = aero_gguf_tensor(g, "output.weight") ? "output.weight" : "token_embd.weight",
        .embd_tensor = "token_embd.weight",
        .plan_only = true,
        .head_in_parts = true,
    };
    return aero_stream_open(out, g, n_layer, &sp, err);
}
