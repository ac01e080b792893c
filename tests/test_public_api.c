// The public API on its own: this file includes only <aerollm.h> (tests/sh/test_public_header.sh compiles it with
// -Iinclude and no -Isrc), and through it loads the bundled model, tokenizes, generates, decodes a batch,
// detokenizes as a stream, renders the chat template, inspects GGUF files, writes a synthetic model and starts
// the server. If a program needs a module header to do any of this, the boundary has a hole.
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <aerollm.h>

#include "check.h"

#define MODEL "models/aero-teacher-34M-Q8_0.gguf"

// GGUF inspection through functions: metadata, tensor table, layer rule, block count.
static void test_gguf(const char *path) {
    aero_gguf *g = NULL;
    aero_error err = {0};
    CHECKF(aero_gguf_load(&g, path, &err) == AERO_OK, "%s", err.msg);
    if (!g) return;
    CHECK(aero_gguf_version(g) >= 2);
    CHECK(aero_gguf_n_files(g) == 1);
    CHECK(aero_gguf_file_size(g, 0) > 0 && !strcmp(aero_gguf_file_path(g, 0), path));
    bool saw_arch = false;
    for (uint64_t i = 0; i < aero_gguf_n_kv(g); i++) {
        const aero_gguf_value *v = aero_gguf_kv_value(g, i);
        if (!strcmp(aero_gguf_kv_key(g, i), "general.architecture")) {
            uint64_t len = 0;
            const char *s = aero_gguf_value_str(v, &len);
            saw_arch = aero_gguf_value_type(v) == AERO_GGUF_STRING && s && len == strlen(s);
        }
    }
    CHECK(saw_arch);
    int64_t n_layer = 0;
    CHECK(aero_gguf_block_count(g, &n_layer) && n_layer > 0);
    int max_layer = -1;
    uint64_t bytes = 0;
    for (uint64_t i = 0; i < aero_gguf_n_tensors(g); i++) {
        int l = aero_gguf_tensor_layer(aero_gguf_tensor_name(g, i));
        if (l > max_layer) max_layer = l;
        bytes += aero_gguf_tensor_nbytes(g, i);
        CHECK(aero_gguf_tensor_n_dims(g, i) >= 1 && aero_gguf_tensor_shape(g, i)[0] > 0);
        CHECK(aero_dtype_row_bytes(aero_gguf_tensor_type(g, i), aero_gguf_tensor_shape(g, i)[0]) > 0);
    }
    CHECK(max_layer + 1 == n_layer);
    CHECK(bytes > 0);
    CHECK(aero_gguf_tensor_index(g, "token_embd.weight") >= 0);
    const aero_gguf_value *toks = aero_gguf_get(g, "tokenizer.ggml.tokens");
    CHECK(toks && aero_gguf_value_arr_type(toks) == AERO_GGUF_STRING && aero_gguf_value_arr_n(toks) > 0);
    if (toks) CHECK(aero_gguf_arr_string(toks, 0, NULL) != NULL);
    aero_stream *s = NULL;
    CHECKF(aero_stream_open_plan(&s, g, (int)n_layer, bytes / 2, &err) == AERO_OK, "%s", err.msg);
    if (s) {
        const aero_stream_plan *p = aero_stream_get_plan(s);
        CHECK(p->n_units == n_layer + 1 && p->streamed_bytes > 0);
        aero_stream_close(s);
    }
    aero_gguf_close(g);
}

// A synthetic model through the tool API, read back.
static void test_synth(void) {
    char path[] = "/tmp/aero_public_api_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    close(fd);
    aero_synth_params p;
    memset(&p, 0, sizeof p);
    CHECK(aero_synth_preset("tiny", &p));
    aero_error err = {0};
    aero_synth_stats st;
    CHECKF(aero_synth_write(&p, path, &st, &err) == AERO_OK, "%s", err.msg);
    aero_gguf *g = NULL;
    CHECKF(aero_gguf_load(&g, path, &err) == AERO_OK, "%s", err.msg);
    if (g) CHECK(aero_gguf_n_tensors(g) == st.n_tensors);
    aero_gguf_close(g);
    unlink(path);
}

// Tokenize, generate greedily, decode the same prompt as a batch, detokenize as a stream.
static void test_generate(void) {
    aero_model_params mp;
    aero_model_params_default(&mp);
    mp.path = MODEL;
    mp.n_threads = 2;
    aero_model *m = NULL;
    aero_error err = {0};
    CHECKF(aero_model_load(&m, &mp, &err) == AERO_OK, "%s", err.msg);
    if (!m) return;
    CHECK(aero_model_n_layer(m) > 0 && aero_model_n_embd(m) > 0 && aero_model_arch(m)[0]);
    CHECK(!strcmp(aero_model_path(m), MODEL));
    const aero_tokenizer *tok = aero_model_tokenizer(m);
    int n_vocab = aero_model_n_vocab(m);
    CHECK(n_vocab == aero_tokenizer_n_vocab(tok));

    const char *text = "Once upon a time, there was a little robot";
    int32_t *ids = NULL;
    size_t n_ids = 0;
    bool bos = aero_tokenizer_add_bos(tok) && aero_tokenizer_bos(tok) >= 0;
    CHECKF(aero_tokenize(tok, text, strlen(text), bos, false, &ids, &n_ids, &err) == AERO_OK, "%s", err.msg);
    CHECK(n_ids > 2);
    char *back = NULL;
    size_t back_len = 0;
    CHECKF(aero_detokenize(tok, ids, n_ids, false, &back, &back_len, &err) == AERO_OK, "%s", err.msg);
    CHECKF(back && strstr(back, "little robot"), "round trip gave '%s'", back ? back : "(null)");
    free(back);

    aero_ctx *ctx = NULL;
    aero_ctx_params cp = {.n_ctx = 128, .n_seq = 1};
    CHECKF(aero_ctx_new(&ctx, m, &cp, &err) == AERO_OK, "%s", err.msg);
    aero_sampler_params sp;
    aero_sampler_params_default(&sp);
    sp.temp = 0;
    aero_sampler *smp = aero_sampler_new(&sp, n_vocab);
    CHECK(ctx && smp);
    if (!ctx || !smp) goto done;

    aero_generator_params gp;
    aero_generator_params_default(&gp);
    gp.ctx = ctx;
    gp.tok = tok;
    gp.max_tokens = 12;
    gp.ignore_eos = true;
    aero_generator *g = NULL;
    CHECKF(aero_generator_new(&g, &gp, smp, &err) == AERO_OK, "%s", err.msg);
    if (!g) goto done;
    int32_t out[64];
    int n_out = 0;
    CHECKF(aero_generator_begin(g, ids, (int)n_ids, &err) == AERO_OK, "%s", err.msg);
    CHECKF(aero_generator_prefill(g, &err) == AERO_OK, "%s", err.msg);
    for (;;) { // the prefill's last pass already sampled the first token
        int k;
        const int32_t *t = aero_generator_new_tokens(g, &k);
        for (int i = 0; i < k && n_out < 64; i++) out[n_out++] = t[i];
        if (aero_generator_end(g) != AERO_END_NONE) break;
        if (aero_generator_step(g, &err)) {
            CHECKF(0, "%s", err.msg);
            break;
        }
    }
    CHECK(aero_generator_end(g) == AERO_END_MAX_TOKENS);
    CHECK(n_out == 12 && aero_generator_n_generated(g) == 12);
    size_t len = 0;
    const char *gen_text = aero_generator_text(g, &len);
    CHECK(len > 0 && aero_generator_visible(g) == len);

    // the streaming detokenizer gives the same text as the whole-sequence one
    aero_detok *d = aero_detok_new(tok, false);
    CHECK(d != NULL);
    size_t cap = aero_tokenizer_max_piece(tok), n_stream = 0;
    char *stream = malloc(cap * (n_out + 1) + 1);
    for (int i = 0; d && stream && i < n_out; i++) n_stream += aero_detok_push(d, out[i], stream + n_stream, cap);
    if (d && stream) n_stream += aero_detok_flush(d, stream + n_stream, cap);
    char *whole = NULL;
    size_t whole_len = 0;
    CHECK(aero_detokenize(tok, out, (size_t)n_out, false, &whole, &whole_len, &err) == AERO_OK);
    CHECK(stream && whole && n_stream == whole_len && !memcmp(stream, whole, whole_len));
    CHECK(whole_len == len && !memcmp(whole, gen_text, len)); // the generation's text is its tokens' text
    free(stream);
    free(whole);
    aero_detok_free(d);
    aero_generator_free(g);

    // the prompt as one batch: its last logits give the first generated token (greedy, batch-invariant)
    aero_kv_drop(ctx, 0);
    CHECK(aero_kv_len(ctx, 0) == 0);
    aero_batch_buf *b = aero_batch_buf_new((int)n_ids);
    float *logits = malloc(sizeof(float) * n_vocab);
    CHECK(b && logits);
    if (b && logits) {
        for (size_t i = 0; i < n_ids; i++) aero_batch_buf_add(b, ids[i], (int32_t)i, 0, i + 1 == n_ids);
        CHECKF(aero_decode(ctx, aero_batch_buf_get(b), logits, &err) == AERO_OK, "%s", err.msg);
        CHECK(aero_kv_len(ctx, 0) == (int)n_ids);
        aero_sampler_reset(smp);
        CHECK(aero_sampler_sample(smp, logits) == out[0]);
    }
    aero_batch_buf_free(b);
    free(logits);

    // the stream's statistics are readable through the model
    aero_stream_stats ss;
    aero_stream_get_stats(aero_model_stream(m), &ss);
    CHECK(aero_stream_get_plan(aero_model_stream(m))->streamed_bytes == 0); // no budget: all resident

    // the chat template the CLI and the server would pick renders a conversation
    aero_chat_template *t = NULL;
    const char *tname = NULL;
    char note[256];
    CHECKF(aero_chat_template_pick(&t, aero_model_gguf(m), NULL, &tname, note, sizeof note, &err) == AERO_OK, "%s",
           err.msg);
    json_t *msgs = json_pack("[{s:s,s:s}]", "role", "user", "content", "Hello there");
    aero_chat_inputs in = {.messages = msgs, .add_generation_prompt = true};
    char *prompt = NULL;
    size_t plen = 0;
    CHECKF(t && aero_chat_render(t, &in, &prompt, &plen, &err) == AERO_OK, "%s", err.msg);
    CHECK(prompt && strstr(prompt, "Hello there"));
    free(prompt);
    json_decref(msgs);
    aero_chat_template_free(t);
done:
    free(ids);
    aero_sampler_free(smp);
    aero_ctx_free(ctx);
    aero_model_free(m);
}

// The server starts listening and stops without a model loaded.
static void test_server(void) {
    aero_server_params p;
    aero_server_params_default(&p);
    p.port = 0;
    p.quiet = true;
    p.model.path = MODEL;
    aero_server *s = NULL;
    aero_error err = {0};
    CHECKF(aero_server_start(&s, &p, &err) == AERO_OK, "%s", err.msg);
    if (s) {
        CHECK(aero_server_port(s) > 0);
        aero_server_stop(s);
    }
}

// Runs each part; the version string is the first thing a program can ask.
int main(void) {
    if (access(MODEL, R_OK) != 0) {
        printf("skipped: %s not found (run from the repository root)\n", MODEL);
        return 77;
    }
    CHECK(aero_version()[0] && !strcmp(aero_version(), AEROLLM_VERSION));
    CHECK(!strcmp(aero_status_name(AERO_OK), aero_status_name(AERO_OK)));
    uint64_t sz = 0;
    CHECK(aero_parse_size("8M", &sz) && sz == 8u << 20);
    test_gguf(MODEL);
    test_synth();
    test_generate();
    test_server();
    return check_done("test_public_api");
}
