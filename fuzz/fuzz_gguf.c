// libFuzzer target for the GGUF reader: any byte string must parse or give an error, never crash, leak or read
// out of bounds; what parses must be self-consistent (tensor data inside the input, getters safe on every key).
// Run: make fuzz && build-fuzz/fuzz_gguf -max_total_time=60 fuzz/corpus/gguf -dict=fuzz/gguf.dict
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "format/gguf.h"

// Walks a parsed file through every accessor, so that what the parser accepted is also safe to use.
static void exercise(const aero_gguf *g, size_t size) {
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const aero_gguf_kv *kv = &g->kv[i];
        if (aero_gguf_get(g, kv->key.ptr) == NULL) abort(); // every key can be found again
        int64_t iv;
        uint64_t uv;
        double dv;
        bool bv;
        (void)aero_gguf_get_i64(g, kv->key.ptr, &iv);
        (void)aero_gguf_get_u64(g, kv->key.ptr, &uv);
        (void)aero_gguf_get_f64(g, kv->key.ptr, &dv);
        (void)aero_gguf_get_bool(g, kv->key.ptr, &bv);
        (void)aero_gguf_get_str(g, kv->key.ptr);
        const aero_gguf_value *v = &kv->value;
        if (v->type == AERO_GGUF_ARRAY) {
            uint64_t n = v->arr.n < 64 ? v->arr.n : 64;
            for (uint64_t j = 0; j <= n; j++) { // one past the end must be refused
                bool a = aero_gguf_arr_i64(v, j, &iv), b = aero_gguf_arr_f64(v, j, &dv);
                const aero_gguf_str *s = aero_gguf_arr_str(v, j);
                if (j == v->arr.n && (a || b || s)) abort();
                if (s && s->ptr[s->len] != 0) abort();
            }
        } else if (v->type == AERO_GGUF_STRING && v->str.ptr[v->str.len] != 0) {
            abort();
        }
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const aero_tensor_info *t = &g->tensors[i];
        if (t->offset > size || t->nbytes > size - t->offset) abort(); // the reader promised data inside the input
        if (t->offset % g->alignment) abort();
        const aero_tensor_info *u = aero_gguf_tensor(g, t->name);
        if (u != t) abort(); // names are unique
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    aero_gguf g;
    aero_error err = {0};
    if (aero_gguf_parse_buffer(&g, data, size, "fuzz.gguf", &err) == AERO_OK) {
        exercise(&g, size);
        aero_gguf_free(&g);
    } else if (err.msg[0] == 0) {
        abort(); // every error has a message
    }
    return 0;
}
