// libFuzzer target for the KV cache file parser (--prompt-cache, slot files): any byte string must be accepted
// as a whole, consistent file or refused with a message, never crash or read out of bounds. What it accepts is
// checked again: the token count it reports must fit the image.
// Run: make fuzz && build-fuzz/fuzz_kv_file -max_total_time=60 fuzz/corpus/kv_file -dict=fuzz/kv_file.dict
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <aerollm.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    // a copy of exactly size bytes, so that ASan sees any read past the end
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    aero_error err = {0};
    int n = -1;
    aero_status st = aero_kv_file_check(buf, size, &n, &err);
    if (st == AERO_OK && (n < 0 || (size_t)n * 4 > size)) abort();
    if (st != AERO_OK && !err.msg[0]) abort(); // a refusal always names its reason
    // again with valid checksums, so that the fields behind them (shape, types, sizes, token ids) are reached
    aero_kv_file_seal(buf, size);
    n = -1;
    err.msg[0] = 0;
    st = aero_kv_file_check(buf, size, &n, &err);
    if (st == AERO_OK && (n < 0 || (size_t)n * 4 > size)) abort();
    if (st != AERO_OK && !err.msg[0]) abort();
    free(buf);
    return 0;
}
