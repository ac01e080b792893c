// The model adapter: aero_model + aero_ctx + tokenizer behind the scheduler's aero_sched_backend interface, plus the
// prompt side (chat rendering, tokenization) that HTTP threads use. The template is chosen by
// aero_chat_template_pick: the model's own when usable, else the documented ChatML fallback.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../chat/template_pick.h"
#include "../stream/stream.h"
#include "internal.h"

// A forward pass takes prompt tokens up to this many tiles (-b): a prompt up to that length costs one read of
// streamed weights. Unbounded, one pass would hold the activations of every token it carries (n x n_embd
// floats, for --parallel prompts at once) and delay the decoding sequences' next token by all their compute;
// a longer prompt goes on in the next steps, the decoders advancing between them.
#define PROMPT_PASS_TILES 4

// The scheduler's forward pass: one batch over every active sequence.
static aero_status backend_decode(void *self, const aero_batch *b, float *logits, aero_error *err) {
    aero_srv_model *x = self;
    return aero_decode(x->ctx, b, logits, err);
}
// Frees a finished or cancelled request's KV entries at once.
static void backend_kv_drop(void *self, int seq) {
    aero_srv_model *x = self;
    aero_kv_drop(x->ctx, seq);
}
// Keeps a sequence's first len entries: a new request sharing them with its prompt decodes only the rest.
static aero_status backend_kv_save(void *self, int seq, const int32_t *tokens, int n, const char *path,
                                   aero_error *err) {
    aero_srv_model *x = self;
    return aero_kv_save(x->ctx, seq, tokens, n, path, err);
}

static aero_status backend_kv_load(void *self, int seq, const char *path, int32_t **tokens, int *n,
                                   aero_error *err) {
    aero_srv_model *x = self;
    return aero_kv_load(x->ctx, seq, path, tokens, n, err);
}

static void backend_kv_truncate(void *self, int seq, int len) {
    aero_srv_model *x = self;
    aero_kv_truncate(x->ctx, seq, len);
}
// Called on the scheduler thread, which owns the model, after every step.
static void backend_stats(void *self, aero_backend_stats *out) {
    aero_srv_model *x = self;
    aero_stream_stats st;
    aero_stream_get_stats(aero_model_stream(x->model), &st);
    out->bytes_streamed = st.bytes_streamed;
    out->passes = st.passes;
    out->io_wait_s = st.wait_s;
    out->io_busy_s = st.io_busy_s;
    out->draft_tokens = 0;
    out->draft_accepted = 0;
}

// A speculative decoder for one request on sequence seq, drafting with its sampling settings; NULL (plain
// steps) when it cannot be made, e.g. out of memory.
static aero_spec *backend_spec_new(void *self, int seq, const aero_sampler_params *sp) {
    aero_srv_model *x = self;
    aero_spec_params p = x->spec;
    p.sampling = *sp;
    p.sampling.constraint = NULL;
    aero_spec *s = NULL;
    aero_error err = {0};
    if (x->spec_proto ? aero_spec_new_like(&s, x->spec_proto, seq, &p, &err)
                      : aero_spec_new(&s, x->ctx, seq, x->draft, &p, &err))
        return NULL;
    return s;
}

// The last hidden state of batch token i, for /v1/embeddings.
static aero_status backend_hidden(void *self, int i, float *out, aero_error *err) {
    aero_srv_model *x = self;
    return aero_ctx_hidden(x->ctx, i, out, err);
}

// Streaming text with control tokens written out, for requests whose tool-call markers are control tokens.
static void special_detok_init(void *self, aero_detok *d, bool first) {
    aero_detok_init(d, self, true);
    d->first = first;
}

// The template's text, for tool-call format detection and /props: the file's, or the model's.
static char *template_source(const aero_srv_model *x, const aero_server_params *p) {
    if (!x->tmpl) return NULL;
    if (p->chat_template_file && !strcmp(x->tmpl_name, "file")) {
        FILE *f = fopen(p->chat_template_file, "rb");
        if (!f) return NULL;
        aero_buf b = {0};
        char chunk[4096];
        size_t n;
        while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) aero_buf_append(&b, chunk, n);
        fclose(f);
        if (!aero_buf_append(&b, "", 1)) {
            aero_buf_free(&b);
            return NULL;
        }
        return b.p;
    }
    const char *src = aero_chat_template_source_gguf(aero_model_gguf(x->model));
    return src ? strdup(src) : NULL;
}

// Copies a special token's vocabulary string (e.g. "<s>") so templates and BOS detection can use it.
static void token_string(const aero_tokenizer *t, int32_t id, char *out, size_t cap) {
    out[0] = 0;
    const char *s = id >= 0 ? aero_tokenizer_token_str(t, id) : NULL;
    if (s) snprintf(out, cap, "%s", s);
}

// A draft head's memory for every sequence's decoder and the one that holds its weights (spec_proto): host bytes
// inside --mem and, on the GPU, the VRAM of its layer inside --gpu-mem.
static aero_status head_mem(const aero_model_params *mp, const aero_ctx_params *cp, const aero_spec_params *sp,
                            uint64_t *host, uint64_t *vram, aero_error *err) {
    aero_model_params probe = *mp; // no budget: only the context length is resolved
    probe.mem_budget = 0;
    aero_mem_split ms;
    if (aero_mem_split_plan(&ms, &probe, cp, 0, err)) return err->code;
    int nodes = sp->tree_nodes > sp->draft_max ? sp->tree_nodes : sp->draft_max;
    bool gpu = mp->device && !strcmp(mp->device, "cuda");
    return aero_spec_head_mem(sp->draft_head, ms.n_ctx, ms.n_seq + 1, nodes, cp->n_batch, gpu, host, vram, err);
}

// Loads the model, a context with one KV sequence per --parallel request, and the chat template.
aero_status aero_srv_model_open(aero_srv_model *x, const aero_server_params *p, aero_error *err) {
    memset(x, 0, sizeof *x);
    int tile = p->n_batch > 0 ? p->n_batch : 512;
    aero_ctx_params cp = {.n_ctx = p->n_ctx,
                          .n_seq = p->parallel,
                          .kv_f32 = p->kv_f32,
                          .type_k = p->type_k,
                          .type_v = p->type_v,
                          .kv_recent = p->kv_recent,
                          .n_batch = tile};
    // the KV cache of every sequence is allocated at start: inside --mem it comes out of the weights' share
    aero_model_params mp = p->model;
    aero_status st;
    uint64_t draft_bytes = 0;
    const char *head = p->spec.draft_head;
    if (p->draft && head)
        return aero_fail(err, AERO_ERR_INVALID, "--draft and --draft-head exclude each other");
    if (head) { // read every drafted token: resident, inside --mem like a drafter (and its layer inside --gpu-mem)
        if ((st = head_mem(&mp, &cp, &p->spec, &x->head_bytes, &cp.gpu_head_vram, err))) return st;
        mp.head_hot = true; // and the output head it projects through stays resident
    }
    if (p->draft && strcmp(p->draft, "ngram")) {
        // the drafter is small and read every step: fully resident, inside --mem like the KV cache
        aero_model_params dp;
        aero_model_params_default(&dp);
        dp.path = p->draft;
        dp.n_threads = p->draft_threads > 0 ? p->draft_threads : mp.n_threads;
        dp.device = mp.device;
        if ((st = aero_model_load(&x->draft, &dp, err))) {
            aero_error_prefix(err, "draft model %s: ", p->draft);
            return st;
        }
        draft_bytes = aero_model_weight_bytes(x->draft);
    }
    aero_mem_split ms;
    if ((st = aero_mem_split_plan_named(&ms, &mp, &cp, draft_bytes + x->head_bytes, head ? "draft head" : "draft model",
                                        err)))
        goto fail;
    mp.mem_budget = ms.weight_budget;
    if ((st = aero_model_load(&x->model, &mp, err))) goto fail;
    if ((st = aero_ctx_new(&x->ctx, x->model, &cp, err))) goto fail;
    x->tok = aero_model_tokenizer(x->model);
    token_string(x->tok, aero_tokenizer_bos(x->tok), x->bos_str, sizeof x->bos_str);
    token_string(x->tok, aero_tokenizer_eos(x->tok), x->eos_str, sizeof x->eos_str);
    if ((st = aero_chat_template_pick(&x->tmpl, aero_model_gguf(x->model), p->chat_template_file, &x->tmpl_name,
                                      x->note, sizeof x->note, err))) {
        if (p->chat_template_file) aero_error_prefix(err, "--chat-template-file %s: ", p->chat_template_file);
        goto fail;
    }
    pthread_mutex_init(&x->render_mu, NULL);
    x->render_mu_ok = true;
    x->backend = (aero_sched_backend){
        .self = x,
        .n_vocab = aero_model_hparams(x->model)->n_vocab,
        .n_ctx = aero_ctx_n_ctx(x->ctx),
        .n_seq = aero_ctx_n_seq(x->ctx),
        .n_pass = PROMPT_PASS_TILES * tile,
        .decode = backend_decode,
        .kv_drop = backend_kv_drop,
        // the F16 ring of --kv-recent is indexed by position: after a truncation it would hold later positions'
        // rows, so reuse is off there (prompt reuse must not change the output)
        .kv_truncate = p->kv_recent > 0 ? NULL : backend_kv_truncate,
        .kv_save = backend_kv_save, // aero_kv_save refuses the contexts it cannot serve (GPU, --kv-recent)
        .kv_load = backend_kv_load,
        .stats = backend_stats,
    };
    aero_generator_vocab_of(&x->backend.vocab, x->tok); // end-of-generation tokens and streaming text
    x->backend.vocab_special = x->backend.vocab;
    x->backend.vocab_special.detok_init = special_detok_init;
    x->tmpl_src = template_source(x, p);
    x->tools = aero_tool_style_detect(x->tmpl_src);
    // a GPU context keeps no hidden states on the host, and takes masked (tree) batches of one tile at most
    bool gpu = aero_ctx_on_gpu(x->ctx);
    if (gpu && p->embeddings) {
        st = aero_fail(err, AERO_ERR_UNSUPPORTED,
                       "--embeddings: this model computes on the GPU, which keeps its hidden states on the device; "
                       "serve embeddings with --device cpu");
        goto fail;
    }
    if (gpu && (p->draft || head) && p->spec.tree_nodes > 0) {
        st = aero_fail(err, AERO_ERR_UNSUPPORTED,
                       "--draft-tree: on the GPU a tree-masked pass holds one tile, too few for every sequence's tree "
                       "and the prompts beside them; serve chains (no --draft-tree) or use --device cpu");
        goto fail;
    }
    if (p->embeddings) {
        x->backend.hidden = backend_hidden;
        x->backend.n_embd = aero_model_n_embd(x->model);
    }
    if (p->draft || head) {
        if (x->draft && (st = aero_spec_check_vocab(x->model, x->draft, err))) {
            aero_error_prefix(err, "--draft %s: ", p->draft);
            goto fail;
        }
        if (x->draft && aero_model_hparams(x->draft)->n_ctx_train < x->backend.n_ctx) {
            st = aero_fail(err, AERO_ERR_INVALID,
                           "--draft %s: the draft model's context is %d tokens, shorter than the server's %d (-c)",
                           p->draft, aero_model_hparams(x->draft)->n_ctx_train, x->backend.n_ctx);
            goto fail;
        }
        x->spec = p->spec;
        x->spec.n_batch = tile;
        aero_spec *probe = NULL; // checks the settings once, and describes them
        if ((st = aero_spec_new(&probe, x->ctx, 0, x->draft, &x->spec, err))) {
            aero_error_prefix(err, "%s %s: ", head ? "--draft-head" : "--draft", head ? head : p->draft);
            goto fail;
        }
        aero_spec_describe(probe, x->spec_desc, sizeof x->spec_desc);
        if (head) x->spec_proto = probe; // the head's weights, loaded once for every sequence
        else aero_spec_free(probe);
        x->spec_on = true;
        x->backend.spec_new = backend_spec_new;
        x->backend.spec_nodes = x->spec.tree_nodes > x->spec.draft_max ? x->spec.tree_nodes : x->spec.draft_max;
    }
    return AERO_OK;
fail:
    aero_srv_model_close(x);
    return st;
}

// Frees what aero_srv_model_open made, in reverse order.
void aero_srv_model_close(aero_srv_model *x) {
    aero_chat_template_free(x->tmpl);
    free(x->tmpl_src);
    if (x->render_mu_ok) pthread_mutex_destroy(&x->render_mu);
    aero_spec_free(x->spec_proto); // after every request's decoder (the scheduler is freed first)
    aero_ctx_free(x->ctx);
    aero_model_free(x->model);
    aero_model_free(x->draft);
    memset(x, 0, sizeof *x);
}

aero_status aero_srv_model_render(aero_srv_model *x, const json_t *messages, const json_t *tools, char **out,
                                  size_t *len, aero_error *err) {
    aero_chat_inputs in = {.messages = messages,
                           .tools = tools,
                           .add_generation_prompt = true,
                           .bos_token = x->bos_str,
                           .eos_token = x->eos_str,
                           .extra = NULL};
    // The header does not promise concurrent renders of one template; they are short, so serialize them.
    pthread_mutex_lock(&x->render_mu);
    aero_status st = aero_chat_render(x->tmpl, &in, out, len, err);
    pthread_mutex_unlock(&x->render_mu);
    if (st) aero_error_prefix(err, "chat template: ");
    return st;
}

aero_status aero_srv_model_tokenize(aero_srv_model *x, const char *text, size_t len, bool add_special,
                                    bool parse_special, int32_t **ids, size_t *n, aero_error *err) {
    size_t bl = strlen(x->bos_str);
    bool has_bos_text = bl && len >= bl && !memcmp(text, x->bos_str, bl) && parse_special;
    bool add_bos = add_special && aero_tokenizer_add_bos(x->tok) && !has_bos_text;
    return aero_tokenize(x->tok, text, len, add_bos, parse_special, ids, n, err);
}

// Token bytes with special tokens shown, for logprobs and /tokenize pieces.
size_t aero_srv_model_piece(void *self, int32_t id, char *buf, size_t cap) {
    aero_srv_model *x = self;
    return aero_token_to_bytes(x->tok, id, true, buf, cap);
}
