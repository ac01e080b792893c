// Bad input to the model and to `aerollm run`: unknown architecture, missing or inconsistent metadata, missing
// tensors, prompt longer than the context, negative -n, unreadable file, context overflow in the API. Each must
// give a clear message (naming the problem) and a non-zero exit, never a crash.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "modules.h" // the module headers: a white-box test

#include "check.h"

#define STORIES SHARED_DATA "/models/stories260K.gguf"

// Rewrites stories260K with one metadata key replaced (value NULL = removed) or one tensor dropped.
static void write_variant(const char *out, const char *key, const aero_gguf_value *val, const char *drop_tensor) {
    aero_gguf g;
    aero_error err = {0};
    CHECK(!aero_gguf_open(&g, STORIES, &err));
    aero_gguf_writer *w = aero_gguf_writer_new(0);
    for (uint64_t i = 0; i < g.n_kv; i++) {
        if (key && !strcmp(g.kv[i].key.ptr, key)) continue;
        aero_gguf_set_value(w, g.kv[i].key.ptr, &g.kv[i].value);
    }
    if (key && val) aero_gguf_set_value(w, key, val);
    FILE *f = fopen(STORIES, "rb");
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const aero_tensor_info *t = &g.tensors[i];
        if (drop_tensor && !strcmp(t->name, drop_tensor)) continue;
        void *buf = malloc(t->nbytes);
        fseek(f, (long)t->offset, SEEK_SET);
        CHECK(fread(buf, 1, t->nbytes, f) == t->nbytes);
        CHECK(!aero_gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, buf, &err));
        free(buf);
    }
    fclose(f);
    CHECKF(!aero_gguf_write(w, out, &err), "%s", err.msg);
    aero_gguf_writer_free(w);
    aero_gguf_free(&g);
}

// Loading must fail with a message containing `expect`.
static void expect_load_error(const char *path, const char *expect) {
    aero_model_params p;
    aero_model_params_default(&p);
    p.path = path;
    p.n_threads = 1;
    aero_model *m = NULL;
    aero_error err = {0};
    aero_status s = aero_model_load(&m, &p, &err);
    CHECKF(s != AERO_OK && m == NULL, "%s: load should fail", expect);
    CHECKF(strstr(err.msg, expect) != NULL, "message '%s' should mention '%s'", err.msg, expect);
    if (m) aero_model_free(m);
}

// Runs the CLI; returns its exit status and the first line of its stderr in msg.
static int run_cli(const char *args, char *msg, size_t cap) {
    const char *bin = getenv("AEROLLM") ? getenv("AEROLLM") : "./aerollm";
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1 >/dev/null", bin, args);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    msg[0] = 0;
    if (!fgets(msg, (int)cap, p)) msg[0] = 0;
    char sink[4096];
    while (fread(sink, 1, sizeof sink, p) > 0) {}
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

static void expect_cli_error(const char *args, const char *expect) {
    char msg[1024];
    int rc = run_cli(args, msg, sizeof msg);
    CHECKF(rc != 0 && rc < 128, "aerollm %s: exit %d (want a clean non-zero exit)", args, rc);
    CHECKF(strstr(msg, expect) != NULL, "aerollm %s: message '%s' should mention '%s'", args, msg, expect);
}

int main(void) {
    require_shared_data();
    char path[128];
    snprintf(path, sizeof path, "/tmp/aero_test_bad_%d.gguf", (int)getpid());

    aero_gguf_value arch = {.type = AERO_GGUF_STRING, .str = {.len = 5, .ptr = "mamba"}};
    write_variant(path, "general.architecture", &arch, NULL);
    expect_load_error(path, "unsupported architecture 'mamba'");
    write_variant(path, "llama.embedding_length", NULL, NULL);
    expect_load_error(path, "llama.embedding_length is missing");
    aero_gguf_value heads = {.type = AERO_GGUF_UINT32, .u64 = 3};
    write_variant(path, "llama.attention.head_count_kv", &heads, NULL);
    expect_load_error(path, "head_count_kv");
    aero_gguf_value wrong = {.type = AERO_GGUF_STRING, .str = {.len = 2, .ptr = "64"}};
    write_variant(path, "llama.block_count", &wrong, NULL);
    expect_load_error(path, "llama.block_count has the wrong type");
    write_variant(path, NULL, NULL, "blk.2.ffn_up.weight");
    expect_load_error(path, "tensor 'blk.2.ffn_up.weight' is missing");
    aero_gguf_value ff = {.type = AERO_GGUF_UINT32, .u64 = 100};
    write_variant(path, "llama.feed_forward_length", &ff, NULL);
    expect_load_error(path, "has shape");

    // CLI: clean messages and non-zero exits
    expect_cli_error("run -m /nonexistent/model.gguf -n 4", "cannot open");
    expect_cli_error("run -m " STORIES " -n -1", "-n expects");
    expect_cli_error("run -m " STORIES " -c 8 -p 'Once upon a time there was a little girl who lived in a house'",
                     "more than the context size");
    char args[256];
    snprintf(args, sizeof args, "run -m %s -n 4", path);
    expect_cli_error(args, "has shape");
    expect_cli_error("run -m " STORIES " --temp abc", "--temp expects");
    expect_cli_error("run -m " STORIES " --bogus", "unknown argument");
    expect_cli_error("bogus-command", "unknown command");
    if (getuid() != 0) { // root reads files regardless of permissions
        write_variant(path, NULL, NULL, NULL);
        chmod(path, 0);
        expect_cli_error(args, "cannot open");
    }
    unlink(path);

    // API: context overflow is an error that changes nothing
    aero_model_params p;
    aero_model_params_default(&p);
    p.path = STORIES;
    p.n_threads = 1;
    aero_model *m;
    aero_error err = {0};
    CHECK(!aero_model_load(&m, &p, &err));
    aero_ctx *c;
    aero_ctx_params cp = {.n_ctx = 4};
    CHECK(!aero_ctx_new(&c, m, &cp, &err));
    int32_t tok[5] = {1, 403, 407, 261, 378}, pos[5] = {0, 1, 2, 3, 4};
    aero_batch b = {.n = 5, .tokens = tok, .pos = pos};
    CHECK(aero_decode(c, &b, NULL, &err) == AERO_ERR_RANGE);
    CHECK(strstr(err.msg, "context overflow") != NULL);
    CHECK(aero_kv_len(c, 0) == 0);
    int32_t bad = 100000;
    aero_batch b2 = {.n = 1, .tokens = &bad, .pos = pos};
    CHECK(aero_decode(c, &b2, NULL, &err) == AERO_ERR_INVALID);
    CHECK(strstr(err.msg, "not in the vocabulary") != NULL);
    aero_ctx_free(c);
    aero_model_free(m);
    return check_done("test_model_errors");
}
