// Options and the generation loop shared by run, chat, bench and perplexity: one parser for llama.cpp-style
// flags, one place that opens a model with its context and sampler, one place that generates.
#ifndef AERO_CLI_COMMON_H
#define AERO_CLI_COMMON_H

#include <stdio.h>

#include <aerollm.h>

typedef struct {
    const char *model;
    const char *prompt;
    const char *prompt_file;
    int n_predict;
    int n_threads;
    int n_ctx;
    int n_batch;
    uint64_t mem;
    const char *device; // --device cpu|cuda (NULL: aero_default_device())
    uint64_t gpu_mem;   // --gpu-mem SIZE (0: what the model needs, at most the free VRAM less a margin)
    int prefetch;
    int io_threads;
    bool stats;
    bool no_bos;
    bool ignore_eos;
    bool kv_f32;
    int type_k, type_v; // -ctk/-ctv: aero_kv_type (0: F16, or F32 with --kv-f32)
    int kv_recent;      // --kv-recent N: the last N positions read from F16 copies of a quantized cache
    bool json;
    aero_sampler_params sp;
    // speculative decoding
    const char *draft; // model path or "ngram"
    const char *draft_head; // --draft-head FILE: an EAGLE-style draft head for the model (instead of --draft)
    int draft_max, draft_min, draft_tree, draft_threads;
    float draft_p_min;
    bool draft_fixed; // --draft-fixed: always draft draft_max tokens (default: adaptive length)
    bool draft_cost;  // --draft-policy cost: trees grown by measured cost (aero_spec_tree_policy COST)
    bool draft_costs_fixed;          // --draft-costs V,D given
    float draft_cost_v, draft_cost_d; // its verify-per-token and drafter-per-token costs (one-token pass = 1)
    // saved prompts
    const char *prompt_cache; // --prompt-cache FILE: the prompt's KV cache, loaded when it matches, saved after prefill
    bool prompt_cache_ro;     // --prompt-cache-ro: load it but never write it
    // under mpirun: the pipeline across ranks (aero_model_params.pipe_split / pipe_micro)
    const char *pipe_split; // --split 0.4,0.6
    int pipe_micro;         // --pipe-micro N
} cli_opts;

// Nodes a --draft-policy cost tree may reach when --draft-tree is not given.
#define CLI_COST_TREE_DEFAULT 128
// The largest tree (or chain) a step may draft with these options.
int cli_draft_nodes(const cli_opts *o);

// The defaults every command starts from.
void cli_opts_default(cli_opts *o);
// Parses the common flag at argv[i]; returns the number of argv entries used, 0 when not a common flag,
// -1 after printing an error.
int cli_opts_parse(cli_opts *o, const char *cmd, int argc, char **argv, int i);
// Help for the common flags.
void cli_common_usage(void);
// The bundled default model path (models/ beside the binary or in the working directory), or NULL.
const char *cli_default_model(void);

typedef struct {
    aero_model *model;
    aero_ctx *ctx;
    aero_sampler *sampler;
    aero_model *draft;    // --draft MODEL (fully resident, counted inside --mem), or NULL
    uint64_t draft_bytes; // the drafter's weight bytes (a draft model's or a draft head's)
    uint64_t kv_bytes;    // the KV cache's bytes (inside --mem: the weights get what is left)
    aero_spec *spec;      // --draft MODEL|ngram, or NULL
    double load_s;
} cli_session;

// What one CLI command works with: a loaded model, its one-sequence context and sampler, and the drafter.
// Loads the model (o->model or the default), creates a one-sequence context and a sampler; with --draft, also
// the drafter (checked for vocabulary compatibility; its bytes come out of --mem) and the speculative decoder.
int cli_session_open(cli_session *e, const cli_opts *o, const char *cmd);
// Frees everything cli_session_open made.
void cli_session_close(cli_session *e);
// Reads the prompt from -p or -f (malloc'ed; "" when none), or NULL after printing an error.
char *cli_read_prompt(const cli_opts *o, const char *cmd);
// Tokenizes, prefills, generates (speculatively with --draft) and streams text to out; timings (and --stats)
// to stderr. Exit code.
int cli_generate(cli_session *e, const cli_opts *o, FILE *out);
// The --stats line on how --mem is shared between the KV cache, the drafter and the model's weights.
void cli_print_budget(const cli_session *e, const cli_opts *o, FILE *f);
// The speculative decoder's settings from the command line.
void cli_spec_params(const cli_opts *o, aero_spec_params *p);
// Prints the --stats block of speculative decoding; t1_pass: a measured 1-token target pass (0: unknown).
void cli_spec_print_stats(aero_spec *s, double gen_s, double t1_pass, FILE *f);

// --prompt-cache before a generation's begin: loads the file (when it exists) into sequence 0 and tells g which
// of its tokens the prompt ids[0..n) starts with, so begin reuses them. *state remembers what the file held for
// cli_prompt_cache_save. Exit code (a file of another model, other cache types or damaged is an error).
typedef struct {
    bool loaded;   // the file existed and was read
    bool same;     // the file holds exactly this prompt: nothing to write
    int n_file;    // tokens the file held
    int n_matched; // of them, the prompt's common prefix
} cli_prompt_cache;
int cli_prompt_cache_load(cli_session *e, const cli_opts *o, aero_generator *g, const int32_t *ids, int n,
                          cli_prompt_cache *state, const char *cmd);
// After the prefill: writes the prompt's KV to the file unless --prompt-cache-ro or it already holds this prompt.
int cli_prompt_cache_save(cli_session *e, const cli_opts *o, const int32_t *ids, int n, const cli_prompt_cache *state,
                          const char *cmd);

// `aerollm bench --draft ...`: speculative decoding measurements (bench_spec.c).
int cli_bench_spec(const cli_opts *o, int n_prompt, int n_gen);

#endif
