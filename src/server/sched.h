// The request scheduler: one thread owns the model context and runs a step loop with continuous batching.
// Each step builds ONE batch holding the next token of every generating sequence plus the prompts (whole, or
// as much as the pass bound n_pass allows) of newly admitted requests, each request's part built by the
// generation layer (aero_generator_feed); runs one forward pass (one pass over possibly streamed weights
// advances everyone), then lets the layer sample, detokenize and match stop strings for each request
// (aero_generator_advance) and publishes its text. HTTP threads submit generations into a bounded queue and read
// their output through aero_gen_next.
#ifndef AERO_SERVER_SCHED_H
#define AERO_SERVER_SCHED_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"
#include "../model/generate.h"
#include "../model/model.h"
#include "../speculative/spec.h"
#include "../sample/sample.h"
#include "../tokenizer/tokenizer.h"
#include "metrics.h"
#include "oai.h"

// The scheduler's backend: what it needs from a model, i.e. a batched forward pass over a multi-sequence KV
// cache, the end-of-generation test and streaming detokenization (handed to the generation layer). The server
// wraps aero_model/aero_ctx in one; unit tests use a small deterministic fake.
typedef struct {
    void *self;
    int n_vocab;
    int n_ctx;  // KV capacity per sequence
    int n_seq;  // KV sequences, one per request in progress
    int n_pass; // most tokens per forward pass (>= n_seq): the decoding sequences' next tokens, then prompt
                // tokens, oldest request first; a prompt that fits goes in one pass (one read of the weights)
    aero_status (*decode)(void *self, const aero_batch *b, float *logits, aero_error *err);
    void (*kv_drop)(void *self, int seq);
    // Keeps the first len KV entries of seq: with it, a finished request's tokens stay in its sequence and the
    // next request sharing a prefix with them decodes only the rest (prompt reuse). NULL: no reuse.
    void (*kv_truncate)(void *self, int seq, int len);
    aero_generator_vocab vocab;         // end-of-generation test and streaming text, with their own self
    aero_generator_vocab vocab_special; // the same with control tokens written out (tool-call markers such as
                                        // [TOOL_CALLS] or <|python_tag|>); detok_init NULL: as vocab
    void (*stats)(void *self, aero_backend_stats *out); // may be NULL
    // Speculation (NULL: none): a decoder for sequence seq drafting with a request's sampling settings, or NULL
    // when it cannot be made. Every speculating sequence drafts at most spec_nodes nodes a step; its root and
    // nodes join the one batch, each sequence's nodes seeing only their ancestors.
    aero_spec *(*spec_new)(void *self, int seq, const aero_sampler_params *sp);
    int spec_nodes;
    // Embeddings (NULL: none): the last hidden state (n_embd floats) of batch token i of the last pass.
    aero_status (*hidden)(void *self, int i, float *out, aero_error *err);
    int n_embd;
    // Saved sequences (NULL: none): seq's cache of tokens[0..n) written to path; a file read into seq (the
    // tokens it then caches, malloc'ed, into *tokens and *n).
    aero_status (*kv_save)(void *self, int seq, const int32_t *tokens, int n, const char *path, aero_error *err);
    aero_status (*kv_load)(void *self, int seq, const char *path, int32_t **tokens, int *n, aero_error *err);
} aero_sched_backend;

// llama-server's slot actions (POST /slots/ID?action=...).
typedef enum { AERO_SLOT_SAVE, AERO_SLOT_RESTORE, AERO_SLOT_ERASE } aero_slot_action;

typedef enum {
    AERO_FINISH_NONE = 0,
    AERO_FINISH_STOP,      // end-of-generation token or a stop string
    AERO_FINISH_LENGTH,    // max_tokens or the context is full
    AERO_FINISH_CANCELLED, // the client went away
    AERO_FINISH_ERROR,     // the forward pass failed or the server is shutting down
} aero_finish;

const char *aero_finish_name(aero_finish f); // "stop", "length", ...

typedef struct {
    int32_t *prompt; // malloc'ed; the generation takes ownership
    int n_prompt;    // >= 1 and < n_ctx
    int max_tokens;  // >= 1
    aero_sampler_params sp;
    char **stop; // malloc'ed array of malloc'ed strings; owned
    int n_stop;
    bool logprobs;
    int top_logprobs; // 0..AERO_OAI_MAX_TOP
    bool ignore_eos;
    bool detok_first;    // the prompt is only BOS: generated text starts a document
    bool fresh_kv;       // cache_prompt false: start on an emptied sequence, reusing nothing
    bool render_special; // control tokens appear in the text (a request with tools: the call markers)
    bool embed;          // an embedding: the prompt's last hidden states, mean-pooled and L2-normalized, no output
    int n_bias;          // logit_bias entries (owned arrays)
    int32_t *bias_id;
    float *bias;
} aero_gen_params;

typedef struct aero_gen aero_gen;

// Takes ownership of p's arrays (also on failure). NULL when out of memory.
aero_gen *aero_gen_new(aero_gen_params *p);
void aero_gen_unref(aero_gen *g);
// Asks the scheduler to stop this generation and free its sequence at the next step.
void aero_gen_cancel(aero_gen *g);

// An embedding generation's vector once done (n_embd floats into out); false when it has none (failed, not done).
bool aero_gen_embedding(aero_gen *g, float *out, int n_embd);

typedef struct {
    size_t text; // bytes of text already taken
    int lp;      // logprob entries already taken
} aero_gen_cursor;

typedef struct {
    char *text; // new text (malloc'ed, NUL-terminated) or NULL
    size_t len;
    aero_oai_logprob *lp; // new logprob entries (malloc'ed) or NULL
    int n_lp;
    bool done;
    aero_finish finish;
    char error[256];
    int n_prompt, n_gen;
    int n_cached;                             // prompt tokens found in the sequence's KV cache, not decoded again
    int n_drafted, n_accepted;                // speculation: nodes drafted for this request, and accepted
    bool speculative;                         // the request drafts (a drafter is loaded and the request allows it)
    double t_submit, t_start, t_first, t_end; // monotonic seconds; 0 until reached
} aero_gen_delta;

// Waits up to timeout_ms for output past cur or the end; fills d with what is new and advances cur. Returns
// false when nothing new arrived (timeout). Free d with aero_gen_delta_free.
bool aero_gen_next(aero_gen *g, aero_gen_cursor *cur, int timeout_ms, aero_gen_delta *d);
void aero_gen_delta_free(aero_gen_delta *d);

typedef struct aero_sched aero_sched;

// Starts the scheduler thread over backend e (copied). max_queue bounds waiting requests.
aero_status aero_sched_new(aero_sched **out, const aero_sched_backend *e, int max_queue, aero_metrics *metrics,
                           aero_error *err);
// Stops the thread; every queued or running generation ends with AERO_FINISH_ERROR and later submissions fail.
// The scheduler stays valid (for HTTP threads still holding it) until aero_sched_free.
void aero_sched_shutdown(aero_sched *s);
// Shuts down (if not yet) and frees.
void aero_sched_free(aero_sched *s);
// Queues g (the scheduler takes its own reference). AERO_ERR_RANGE when the queue is full, AERO_ERR_INVALID
// when the prompt cannot fit the context, AERO_ERR_IO when the scheduler has stopped.
aero_status aero_sched_submit(aero_sched *s, aero_gen *g, aero_error *err);
// Wakes the scheduler so it notices a cancellation while otherwise idle.
void aero_sched_poke(aero_sched *s);
// Whether aero_sched_shutdown has begun (the loop ends after the pass it is in): a state tests can wait for.
bool aero_sched_stopping(aero_sched *s);
const aero_sched_backend *aero_sched_backend_of(const aero_sched *s);

// Runs a slot action on the scheduler thread between two steps and waits for it: save sequence seq's cached
// tokens to path, restore a file into it (a later request sharing its prefix reuses it), or erase it. *n_tokens:
// the tokens saved, restored or erased. A sequence holding a request is refused (AERO_ERR_RANGE, "busy").
aero_status aero_sched_slot(aero_sched *s, int seq, aero_slot_action action, const char *path, int *n_tokens,
                            aero_error *err);

#endif
