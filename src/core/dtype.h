// Tensor element types as numbered in GGUF (ggml_type), with their block geometry. The block layouts
// themselves live in kernels/; this table is what format/ needs to size tensors.
#ifndef AERO_CORE_DTYPE_H
#define AERO_CORE_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../include/aerollm.h" // aero_dtype

typedef struct {
    const char *name; // "Q4_K"; NULL for ids that are not a type
    uint32_t block;   // elements per block
    uint32_t block_bytes;
    bool computable; // the kernels can dequantize it and take dot products with it
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
