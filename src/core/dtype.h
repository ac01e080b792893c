// Tensor element types as numbered in GGUF (ggml_type), with their block geometry. The block layouts
// themselves live in kernels/; this table is what format/ needs to size tensors.
#ifndef AERO_CORE_DTYPE_H
#define AERO_CORE_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    AERO_DT_F32 = 0,
    AERO_DT_F16 = 1,
    AERO_DT_Q4_0 = 2,
    AERO_DT_Q4_1 = 3,
    AERO_DT_Q5_0 = 6,
    AERO_DT_Q5_1 = 7,
    AERO_DT_Q8_0 = 8,
    AERO_DT_Q8_1 = 9,
    AERO_DT_Q2_K = 10,
    AERO_DT_Q3_K = 11,
    AERO_DT_Q4_K = 12,
    AERO_DT_Q5_K = 13,
    AERO_DT_Q6_K = 14,
    AERO_DT_Q8_K = 15,
    AERO_DT_IQ2_XXS = 16,
    AERO_DT_IQ2_XS = 17,
    AERO_DT_IQ3_XXS = 18,
    AERO_DT_IQ1_S = 19,
    AERO_DT_IQ4_NL = 20,
    AERO_DT_IQ3_S = 21,
    AERO_DT_IQ2_S = 22,
    AERO_DT_IQ4_XS = 23,
    AERO_DT_I8 = 24,
    AERO_DT_I16 = 25,
    AERO_DT_I32 = 26,
    AERO_DT_I64 = 27,
    AERO_DT_F64 = 28,
    AERO_DT_IQ1_M = 29,
    AERO_DT_BF16 = 30,
    AERO_DT_COUNT = 31,
} aero_dtype;

typedef struct {
    const char *name;   // "Q4_K"; NULL for ids that are not a type
    uint32_t block;     // elements per block
    uint32_t block_bytes;
    bool computable;    // the kernels can dequantize it and take dot products with it
} aero_dtype_info;

// Geometry of a type, or NULL when the id is not a known type.
const aero_dtype_info *aero_dtype_get(uint32_t type);

// Name for printing ("F32", "Q4_K", "type#99").
const char *aero_dtype_name(uint32_t type);

// Parses a name like "q4_k" or "F16"; returns -1 when unknown.
int aero_dtype_parse(const char *name);

// Bytes of a row of n elements; 0 when n is not a multiple of the block size or the type is unknown.
size_t aero_dtype_row_bytes(uint32_t type, uint64_t n);

#endif
