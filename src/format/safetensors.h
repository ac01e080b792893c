// safetensors reader: the 8-byte header length, the JSON header (dtype, shape, data_offsets per tensor) checked
// for bounds, overflow, sizes and a contiguous, complete data section, and the tensor table it describes. It
// never reads tensor data: tensors are byte ranges of the file that the streamer reads as they are stored.
#ifndef AERO_FORMAT_SAFETENSORS_H
#define AERO_FORMAT_SAFETENSORS_H

#include <stdint.h>
#include <stddef.h>

#include "../core/status.h"

#define AERO_ST_MAX_DIMS 4
#define AERO_ST_MAX_HEADER (100u << 20) // the reference library's own limit on the JSON header

typedef struct {
    char *name;
    char dtype[16];   // as written ("F32", "BF16", "I64", ...)
    int type;         // the matching aero_dtype (F32, F16, BF16), or -1 for a type the engine cannot compute with
    uint32_t n_dims;
    uint64_t shape[AERO_ST_MAX_DIMS]; // as stored, outermost first (PyTorch order): shape[n_dims - 1] is the row
    uint64_t n_elements;
    uint64_t offset; // absolute byte offset in the file
    uint64_t nbytes;
} aero_st_tensor;

typedef struct {
    char *path;
    uint64_t size;       // of the file
    uint64_t data_start; // 8 + header length
    uint64_t n_tensors;
    aero_st_tensor *tensors; // in data order
} aero_st_file;

// Reads and checks path's header (not its data). On error f is zeroed and err names the file and the tensor.
aero_status aero_st_open(aero_st_file *f, const char *path, aero_error *err);
// The same over a whole file image held in memory (fuzzers, tests); name is used in messages.
aero_status aero_st_parse_buffer(aero_st_file *f, const void *buf, size_t len, const char *name, aero_error *err);
void aero_st_free(aero_st_file *f);
// The tensor called name, or NULL.
const aero_st_tensor *aero_st_find(const aero_st_file *f, const char *name);

#endif
