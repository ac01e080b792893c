// Hugging Face model directories (config.json, safetensors shards, tokenizer.json): read as the same tensor table
// and metadata a GGUF file gives, with llama.cpp's tensor names and keys, so the one model builder loads both.
#ifndef AERO_MODEL_HF_H
#define AERO_MODEL_HF_H

#include <stdbool.h>

#include "../format/gguf.h"

// Whether path is a directory (then it is read as a Hugging Face model directory).
bool aero_hf_is_dir(const char *path);

// Opens a Hugging Face directory as a tensor table: the big tensors are byte ranges of the shards, read as stored;
// the few that need changing (norms stored as weight - 1, 1-D tensors not in F32, rope factors from config.json)
// are written converted into a small side file that g owns. Errors name the file and the tensor.
aero_status aero_hf_open(aero_gguf *g, const char *dir, aero_error *err);

// aero_hf_open for a directory, aero_gguf_open for a file: what every loader of a model path calls.
aero_status aero_model_source_open(aero_gguf *g, const char *path, aero_error *err);

#endif
