// safetensors header parsing: a valid image parses into the table it describes; every corruption (header length,
// JSON, dtype, shape, data_offsets, gaps, overlaps, a tensor past the end, duplicates) is refused with a message
// naming the file and, where there is one, the tensor; truncation at every byte never crashes. Run it under
// ASan+UBSan (make SAN=1) as well.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "format/safetensors.h"

// A file image: u64 header length, the header text padded with spaces to 8, then data bytes.
static uint8_t *image(const char *header, size_t data, size_t *len) {
    size_t n = strlen(header), pad = (8 - n % 8) % 8;
    *len = 8 + n + pad + data;
    uint8_t *b = calloc(1, *len);
    uint64_t hl = n + pad;
    memcpy(b, &hl, 8);
    memcpy(b + 8, header, n);
    memset(b + 8 + n, ' ', pad);
    for (size_t i = 0; i < data; i++) b[8 + hl + i] = (uint8_t)i;
    return b;
}

// Parses header + data bytes; expects failure with every want substring in the message (NULL: success).
static void expect(const char *header, size_t data, const char *want1, const char *want2) {
    size_t len;
    uint8_t *b = image(header, data, &len);
    aero_st_file f;
    aero_error err = {0};
    aero_status st = aero_st_parse_buffer(&f, b, len, "x.safetensors", &err);
    if (!want1) {
        CHECKF(st == AERO_OK, "%s: %s", header, err.msg);
        if (!st) aero_st_free(&f);
    } else {
        CHECKF(st != AERO_OK, "accepted: %s", header);
        CHECKF(strstr(err.msg, "x.safetensors") && strstr(err.msg, want1) && (!want2 || strstr(err.msg, want2)),
               "%s: message '%s' lacks '%s' / '%s'", header, err.msg, want1, want2 ? want2 : "");
    }
    free(b);
}

// A well-formed image: the table, offsets made absolute, data order; then every truncation refused.
static void valid(void) {
    const char *h = "{\"__metadata__\":{\"format\":\"pt\"},\"b\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[16,28]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                    "\"c\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[28,36]}}";
    size_t len;
    uint8_t *b = image(h, 36, &len);
    aero_st_file f;
    aero_error err = {0};
    CHECKF(aero_st_parse_buffer(&f, b, len, "ok.safetensors", &err) == AERO_OK, "%s", err.msg);
    CHECK(f.n_tensors == 3);
    const aero_st_tensor *a = aero_st_find(&f, "a"), *bt = aero_st_find(&f, "b"), *c = aero_st_find(&f, "c");
    CHECK(a && bt && c && !aero_st_find(&f, "d"));
    if (a && bt && c) {
        CHECK(a->type == AERO_DT_F32 && a->n_dims == 1 && a->shape[0] == 4 && a->nbytes == 16);
        CHECK(a->offset == f.data_start && f.data_start == 8 + (len - 36 - 8));
        CHECK(bt->type == AERO_DT_BF16 && bt->n_dims == 2 && bt->shape[0] == 2 && bt->shape[1] == 3);
        CHECK(bt->offset == f.data_start + 16 && bt->n_elements == 6);
        CHECK(c->type == -1 && !strcmp(c->dtype, "I64") && c->n_dims == 0 && c->n_elements == 1);
        CHECK(f.tensors[0].offset < f.tensors[1].offset); // in data order
    }
    aero_st_free(&f);
    // truncation at every byte is refused, never read past
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *t = malloc(cut ? cut : 1);
        memcpy(t, b, cut);
        CHECK(aero_st_parse_buffer(&f, t, cut, "cut.safetensors", &err) != AERO_OK);
        free(t);
    }
    free(b);
}

// One corruption per line, each refused with its own message.
static void malformed(void) {
    expect("{}", 0, NULL, NULL); // an empty model is a valid file
    expect("[1,2]", 0, "not a JSON object", NULL);
    expect("{\"a\":", 0, "header JSON", NULL);
    expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
           "\"data_offsets\":[4,8]}}",
           8, "header JSON", NULL); // duplicate key
    expect("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'a'", "no dtype");
    expect("{\"a\":{\"dtype\":\"F12\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'a'", "unknown dtype");
    expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "'a'", "shape");
    expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "'a'", "shape[0]");
    expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "'a'", "shape[0]");
    expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4, "'a'",
           "overflows");
    expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "'a'", "4 bytes for 2 elements");
    expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, "'a'", "outside the data");
    expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 2, "'a'", "outside the data");
    expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "'a'", "data_offsets");
    expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "'a'", "a gap before it");
    expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],"
           "\"data_offsets\":[4,8]}}",
           8, "overlaps", NULL);
    expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, "cover 4 of the 8", NULL);
    expect("{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "empty", NULL);
    expect("{\"__metadata__\":[]}", 0, "__metadata__", NULL);
    expect("{\"a\":7}", 0, "'a'", "not an object");
    // header length past the file, and past the limit
    uint8_t b[16] = {0};
    uint64_t hl = 9;
    memcpy(b, &hl, 8);
    aero_st_file f;
    aero_error err = {0};
    CHECK(aero_st_parse_buffer(&f, b, 16, "len.safetensors", &err) != AERO_OK && strstr(err.msg, "past the end"));
    hl = (uint64_t)1 << 40;
    memcpy(b, &hl, 8);
    CHECK(aero_st_parse_buffer(&f, b, 16, "len.safetensors", &err) != AERO_OK && strstr(err.msg, "exceeds"));
    CHECK(aero_st_open(&f, "/nonexistent/x.safetensors", &err) != AERO_OK && strstr(err.msg, "/nonexistent/x"));
}

// Valid then malformed images.
int main(void) {
    valid();
    malformed();
    return check_done("test_safetensors");
}
