// `aerollm template`: renders a chat template for a messages file and prints the prompt byte for byte, so
// scripts and people can see exactly what the model will be fed.
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

// Help text.
static void template_usage(FILE *f) {
    fprintf(f, "usage: aerollm template (-m MODEL.gguf | --template-file FILE) --messages MESSAGES.json [options]\n"
               "  -m MODEL.gguf            use the model's tokenizer.chat_template and its BOS/EOS tokens\n"
               "  --template-file FILE     a template file (or a tokenizer_config.json); overrides the model's\n"
               "  --chat-template-file FILE  same as --template-file\n"
               "  --messages FILE          a JSON array of messages, or an object with \"messages\" (and optionally\n"
               "                           \"tools\" and other template variables); '-' reads stdin\n"
               "  --tools FILE             a JSON array of tools\n"
               "  --add-generation-prompt  end with the assistant header the model answers after\n"
               "  --bos TEXT --eos TEXT    bos_token / eos_token (default: the model's, or empty)\n"
               "  --var NAME=JSON          an extra template variable, e.g. --var enable_thinking=false\n");
}

// Loads a JSON file ("-" = stdin); NULL after printing an error.
static json_t *load_json(const char *path, const char *what) {
    json_error_t je;
    json_t *j = !strcmp(path, "-") ? json_loadf(stdin, JSON_ALLOW_NUL, &je) : json_load_file(path, JSON_ALLOW_NUL, &je);
    if (!j) cli_fail("template", "%s %s: line %d: %s", what, path, je.line, je.text);
    return j;
}

// The BOS/EOS strings of a model's vocabulary ("" when it has none).
static int vocab_specials(const aero_gguf *g, char **bos, char **eos) {
    aero_tokenizer *tok = NULL;
    aero_error err = {0};
    if (aero_tokenizer_from_gguf(&tok, g, &err) != AERO_OK)
        return cli_fail("template", "loading the vocabulary for BOS/EOS: %s (pass --bos and --eos)", err.msg);
    int32_t b = aero_tokenizer_bos(tok), e = aero_tokenizer_eos(tok);
    const char *bs = b >= 0 ? aero_tokenizer_token_str(tok, b) : NULL;
    const char *es = e >= 0 ? aero_tokenizer_token_str(tok, e) : NULL;
    *bos = strdup(bs ? bs : "");
    *eos = strdup(es ? es : "");
    aero_tokenizer_free(tok);
    if (!*bos || !*eos) return cli_fail("template", "out of memory");
    return 0;
}

// Entry point: template from the model or a file, messages from JSON, prompt to stdout.
int aero_cmd_template(int argc, char **argv) {
    const char *model = NULL, *tfile = NULL, *mfile = NULL, *tools_file = NULL, *bos = NULL, *eos = NULL;
    bool gen = false;
    int rc = 1;
    json_t *extra = json_object(), *msgdoc = NULL, *tools = NULL;
    aero_gguf *g = NULL;
    aero_chat_template *t = NULL;
    char *vbos = NULL, *veos = NULL, *out = NULL;
    aero_error err = {0};
    if (!extra) return cli_fail("template", "out of memory");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            template_usage(stdout);
            rc = 0;
            goto done;
        } else if (!strcmp(a, "--add-generation-prompt")) {
            gen = true;
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && has_val) {
            model = argv[++i];
        } else if ((!strcmp(a, "--template-file") || !strcmp(a, "--chat-template-file")) && has_val) {
            tfile = argv[++i];
        } else if (!strcmp(a, "--messages") && has_val) {
            mfile = argv[++i];
        } else if (!strcmp(a, "--tools") && has_val) {
            tools_file = argv[++i];
        } else if (!strcmp(a, "--bos") && has_val) {
            bos = argv[++i];
        } else if (!strcmp(a, "--eos") && has_val) {
            eos = argv[++i];
        } else if (!strcmp(a, "--var") && has_val) {
            const char *kv = argv[++i], *eq = strchr(kv, '=');
            if (!eq || eq == kv) {
                cli_fail("template", "--var wants NAME=JSON, got '%s'", kv);
                goto done;
            }
            json_error_t je;
            json_t *v = json_loads(eq + 1, JSON_DECODE_ANY, &je);
            if (!v) v = json_string(eq + 1); // a bare word is a string
            char name[256];
            snprintf(name, sizeof name, "%.*s", (int)(eq - kv), kv);
            json_object_set_new(extra, name, v);
        } else {
            cli_fail("template", "unknown or incomplete option '%s'", a);
            template_usage(stderr);
            goto done;
        }
    }
    if (!model && !tfile) {
        cli_fail("template", "give -m MODEL.gguf or --template-file FILE");
        template_usage(stderr);
        goto done;
    }
    if (!mfile) {
        cli_fail("template", "--messages FILE is required");
        goto done;
    }
    if (model) {
        if (aero_model_file_load(&g, model, &err) != AERO_OK) {
            cli_fail("template", "%s", err.msg);
            goto done;
        }
        if ((!bos || !eos) && vocab_specials(g, &vbos, &veos)) goto done;
    }
    const char *tname;
    char note[256];
    if (aero_chat_template_pick(&t, g, tfile, &tname, note, sizeof note, &err)) {
        cli_fail("template", "%s%s%s", model && !tfile ? model : "", model && !tfile ? ": " : "", err.msg);
        goto done;
    }
    if (note[0]) fprintf(stderr, "aerollm template: %s\n", note);
    if (!(msgdoc = load_json(mfile, "messages"))) goto done;
    json_t *messages = msgdoc;
    if (json_is_object(msgdoc)) {
        messages = json_object_get(msgdoc, "messages");
        const char *key;
        json_t *val;
        json_object_foreach(msgdoc, key, val) {
            if (!strcmp(key, "messages")) continue;
            if (!strcmp(key, "tools")) tools = json_incref(val);
            else if (!strcmp(key, "add_generation_prompt")) gen = gen || json_is_true(val);
            else if (!json_object_get(extra, key)) json_object_set(extra, key, val);
        }
    }
    if (!json_is_array(messages)) {
        cli_fail("template", "%s: expected a JSON array of messages (or an object with \"messages\")", mfile);
        goto done;
    }
    if (tools_file) {
        json_decref(tools);
        if (!(tools = load_json(tools_file, "tools"))) goto done;
    }
    aero_chat_inputs in = {
        .messages = messages,
        .tools = tools,
        .add_generation_prompt = gen,
        .bos_token = bos    ? bos
                     : vbos ? vbos
                            : "",
        .eos_token = eos    ? eos
                     : veos ? veos
                            : "",
        .extra = json_object_size(extra) ? extra : NULL,
    };
    size_t n = 0;
    if (aero_chat_render(t, &in, &out, &n, &err) != AERO_OK) {
        cli_fail("template", "%s", err.msg);
        goto done;
    }
    if (fwrite(out, 1, n, stdout) != n || fflush(stdout) != 0) {
        cli_fail("template", "writing the prompt: %s", strerror(errno));
        goto done;
    }
    rc = 0;
done:
    free(out);
    free(vbos);
    free(veos);
    aero_chat_template_free(t);
    aero_gguf_close(g);
    json_decref(msgdoc);
    json_decref(tools);
    json_decref(extra);
    return rc;
}
