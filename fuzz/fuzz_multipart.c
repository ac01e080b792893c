// libFuzzer target for the upload parsers: multipart/form-data (the first line of the input is the Content-Type
// header, the rest the body) and chunked transfer decoding. Parts must lie inside the body; any byte string
// gives parts or an error, never a crash.
// Run: make fuzz && build-fuzz/fuzz_multipart -max_total_time=60
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/loopback.h"
#include "server/multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *nl = memchr(data, '\n', size);
    size_t hl = nl ? (size_t)(nl - (const char *)data) : size;
    char *ct = malloc(hl + 1);
    if (!ct) return 0;
    memcpy(ct, data, hl);
    ct[hl] = 0;
    const char *body = nl ? nl + 1 : (const char *)data + size;
    size_t blen = (size_t)((const char *)data + size - body);
    aero_multipart_part parts[AERO_MULTIPART_MAX_PARTS];
    int n = 0;
    aero_error err = {0};
    if (!aero_multipart_parse(ct, body, blen, parts, &n, &err)) {
        if (n < 0 || n > AERO_MULTIPART_MAX_PARTS) abort();
        for (int i = 0; i < n; i++)
            if (parts[i].data < body || parts[i].data + parts[i].len > body + blen || !parts[i].name[0]) abort();
    }
    char *copy = malloc(size ? size : 1);
    if (copy) {
        memcpy(copy, data, size);
        size_t len = size;
        if (!aero_http_dechunk(copy, &len, &err) && len > size) abort();
        free(copy);
    }
    free(ct);
    return 0;
}
