// What the Hugging Face reader (hf_map.c), the direct loader (hf_load.c) and the converter (hf_convert.c) share:
// a directory mapped onto llama.cpp's names and keys.
#ifndef AERO_MODEL_HF_INTERNAL_H
#define AERO_MODEL_HF_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "../format/gguf.h"
#include "../format/safetensors.h"

enum {
    HF_PERM = 1,    // rows of a llama-family Q or K projection: rotate-halves order, permuted into pairs for GGUF
    HF_ADD_ONE = 2, // a Gemma norm stored as weight - 1
};

typedef struct hf_arch hf_arch;

typedef struct {
    char name[128];  // llama.cpp's name
    uint32_t shard;  // index into hf_model.shards (unused for generated tensors)
    const aero_st_tensor *st; // NULL for a generated tensor (data below)
    uint64_t part_off;        // where in st's bytes this tensor starts (one expert of a fused experts tensor)
    uint64_t nbytes;          // of this tensor (st->nbytes unless a part)
    uint32_t flags;
    int perm_heads;  // HF_PERM: heads of the projection
    float *data;     // generated F32 values (rope_freqs), n_elements of them
    uint32_t n_dims;
    uint64_t ne[AERO_GGUF_MAX_DIMS]; // GGUF order (ne[0] the row)
} hf_tensor;

typedef struct {
    char *dir;
    json_t *cfg;
    const hf_arch *arch;
    const char *gguf_arch; // llama.cpp's architecture name
    bool perm_qk;          // llama-family: Q/K rows permuted by llama.cpp's converter
    aero_st_file *shards;
    int *fds; // per shard, opened on first read (-1 until then)
    uint32_t n_shards;
    hf_tensor *t;
    uint64_t n_t;
    int n_layer, n_embd, n_head, n_head_kv, head_dim, rope_dim, n_vocab, n_expert;
    aero_gguf_writer *w; // the model's metadata as llama.cpp's converter writes it (tokenizer keys apart)
} hf_model;

// Reads config.json and the shards, maps every tensor, checks shapes against the config, fills m->w.
aero_status hf_model_open(hf_model *m, const char *dir, aero_error *err);
void hf_model_free(hf_model *m);
// Rows [row0, row0 + n) of a mapped tensor as F32 after its transforms (+ 1; the Q/K permutation when permute);
// a row is ne[0] long.
aero_status hf_read_rows(const hf_model *m, const hf_tensor *t, uint64_t row0, uint64_t n, bool permute, float *out,
                         aero_error *err);
// Whether t reaches the engine changed (+ 1, a 1-D tensor not in F32, generated), so that the direct loader
// cannot hand the shard's bytes to the streamer as stored.
bool hf_needs_side(const hf_tensor *t);
// tokenizer.json + tokenizer_config.json as llama.cpp's tokenizer.ggml.* keys (for the converter).
aero_status hf_tokenizer_keys(aero_gguf_writer *w, const char *dir, aero_error *err);
// tokenizer.chat_template and the like that the engine reads beside the tokenizer.
aero_status hf_template_keys(aero_gguf_writer *w, const char *dir, aero_error *err);

#endif
