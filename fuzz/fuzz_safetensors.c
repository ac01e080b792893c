// libFuzzer target for the safetensors header parser: any byte string must parse or give an error, never crash,
// leak or read out of bounds; what parses must describe tensors that tile the data section inside the input.
// Run: make fuzz && build-fuzz/fuzz_safetensors -max_total_time=60 fuzz/corpus/safetensors -dict=fuzz/safetensors.dict
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "format/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    aero_st_file f;
    aero_error err = {0};
    if (aero_st_parse_buffer(&f, data, size, "fuzz.safetensors", &err) == AERO_OK) {
        uint64_t at = f.data_start;
        for (uint64_t i = 0; i < f.n_tensors; i++) {
            const aero_st_tensor *t = &f.tensors[i];
            if (t->offset != at || t->offset > size || t->nbytes > size - t->offset) abort();
            at += t->nbytes;
            if (aero_st_find(&f, t->name) != t) abort(); // names are unique
        }
        if (at != size) abort();
        aero_st_free(&f);
    } else if (err.msg[0] == 0) {
        abort(); // every error has a message
    }
    return 0;
}
