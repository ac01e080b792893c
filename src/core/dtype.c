#include "dtype.h"

#include <stdio.h>
#include <strings.h>

static const aero_dtype_info dtype_table[AERO_DT_COUNT] = {
    [AERO_DT_F32] = {"F32", 1, 4, true},
    [AERO_DT_F16] = {"F16", 1, 2, true},
    [AERO_DT_Q4_0] = {"Q4_0", 32, 18, true},
    [AERO_DT_Q4_1] = {"Q4_1", 32, 20, true},
    [AERO_DT_Q5_0] = {"Q5_0", 32, 22, true},
    [AERO_DT_Q5_1] = {"Q5_1", 32, 24, true},
    [AERO_DT_Q8_0] = {"Q8_0", 32, 34, true},
    [AERO_DT_Q8_1] = {"Q8_1", 32, 36, false},
    [AERO_DT_Q2_K] = {"Q2_K", 256, 84, true},
    [AERO_DT_Q3_K] = {"Q3_K", 256, 110, true},
    [AERO_DT_Q4_K] = {"Q4_K", 256, 144, true},
    [AERO_DT_Q5_K] = {"Q5_K", 256, 176, true},
    [AERO_DT_Q6_K] = {"Q6_K", 256, 210, true},
    [AERO_DT_Q8_K] = {"Q8_K", 256, 292, true},
    [AERO_DT_IQ2_XXS] = {"IQ2_XXS", 256, 66, true},
    [AERO_DT_IQ2_XS] = {"IQ2_XS", 256, 74, true},
    [AERO_DT_IQ3_XXS] = {"IQ3_XXS", 256, 98, true},
    [AERO_DT_IQ1_S] = {"IQ1_S", 256, 50, false},
    [AERO_DT_IQ4_NL] = {"IQ4_NL", 32, 18, true},
    [AERO_DT_IQ3_S] = {"IQ3_S", 256, 110, true},
    [AERO_DT_IQ2_S] = {"IQ2_S", 256, 82, false},
    [AERO_DT_IQ4_XS] = {"IQ4_XS", 256, 136, true},
    [AERO_DT_I8] = {"I8", 1, 1, false},
    [AERO_DT_I16] = {"I16", 1, 2, false},
    [AERO_DT_I32] = {"I32", 1, 4, false},
    [AERO_DT_I64] = {"I64", 1, 8, false},
    [AERO_DT_F64] = {"F64", 1, 8, false},
    [AERO_DT_IQ1_M] = {"IQ1_M", 256, 56, false},
    [AERO_DT_BF16] = {"BF16", 1, 2, true},
    [AERO_DT_MXFP4] = {"MXFP4", 32, 17, true},
};

const aero_dtype_info *aero_dtype_get(uint32_t type) {
    if (type >= AERO_DT_COUNT || !dtype_table[type].name) return NULL;
    return &dtype_table[type];
}

const char *aero_dtype_name(uint32_t type) {
    static __thread char buf[24];
    const aero_dtype_info *d = aero_dtype_get(type);
    if (d) return d->name;
    snprintf(buf, sizeof buf, "type#%u", type);
    return buf;
}

int aero_dtype_parse(const char *name) {
    for (int t = 0; t < AERO_DT_COUNT; t++)
        if (dtype_table[t].name && strcasecmp(dtype_table[t].name, name) == 0) return t;
    return -1;
}

size_t aero_dtype_row_bytes(uint32_t type, uint64_t n) {
    const aero_dtype_info *d = aero_dtype_get(type);
    if (!d || n % d->block) return 0;
    return (size_t)(n / d->block) * d->block_bytes;
}
