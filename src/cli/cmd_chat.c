// `aerollm chat`: an interactive conversation with a model through its own chat template. Each turn renders
// the whole conversation, tokenizes it with special tokens recognised, and decodes only what the KV cache
// does not already hold (the common prefix with the previous turn is kept), then streams the answer.
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "common.h"

static volatile sig_atomic_t interrupted = 0;

// Ctrl-C stops the answer being generated (or ends the chat at the prompt).
static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

// Help text.
static void chat_usage(void) {
    printf("usage: aerollm chat [-m MODEL] [options]\n"
           "  -m MODEL                  GGUF file (default: the bundled model)\n"
           "  --system PROMPT           system message that starts the conversation\n"
           "  --chat-template-file FILE template file or tokenizer_config.json (default: the model's own)\n"
           "  -p TEXT                   send TEXT as the first message, then read more from stdin\n"
           "  -n N                      longest answer in tokens (default 512)\n"
           "  --verbose                 per turn: prompt tokens, tokens reused from the cache, speed (stderr)\n"
           "commands at the prompt: /reset (forget the conversation), /exit; end a line with \\ to continue it\n");
    cli_common_usage();
}

// Reads one user message: lines ending in a backslash continue it. NULL at end of input or interrupt.
static char *read_message(bool tty) {
    aero_buf msg = {0};
    char *line = NULL;
    size_t cap = 0;
    bool started = false;
    for (;;) {
        if (tty) {
            fputs(started ? ". " : "> ", stdout);
            fflush(stdout);
        }
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0 || interrupted) {
            free(line);
            if (started && !interrupted && !msg.oom) return aero_buf_take(&msg, NULL); // last line without a newline
            aero_buf_free(&msg);
            return NULL;
        }
        if (n > 0 && line[n - 1] == '\n') line[--n] = 0;
        if (n > 0 && line[n - 1] == '\r') line[--n] = 0;
        bool more = n > 0 && line[n - 1] == '\\';
        if (more) line[--n] = 0;
        started = true;
        aero_buf_append(&msg, line, (size_t)n);
        if (more) aero_buf_append(&msg, "\n", 1);
        if (!more) break;
    }
    free(line);
    if (msg.oom) {
        aero_buf_free(&msg);
        return NULL;
    }
    return aero_buf_take(&msg, NULL);
}

typedef struct {
    cli_session e;
    const aero_tokenizer *tok;
    aero_chat_template *tmpl;
    char *bos, *eos;
    json_t *messages;
    aero_generator *gen; // one generation per turn on sequence 0; it knows what the KV cache holds
    int n_ctx;
    bool verbose;
    const cli_opts *o;
    bool cache_done; // --prompt-cache applies to the first turn's prompt (the system message and first message)
} chat_state;

// One turn: render, reuse the cached prefix, prefill the rest, stream the answer. The answer (malloc'ed) is
// returned in *answer; 1 on a hard error, 2 when the turn was refused (conversation too long, bad render).
static int turn(chat_state *s, char **answer) {
    aero_error err = {0};
    char *prompt = NULL;
    size_t plen = 0;
    aero_chat_inputs in = {
        .messages = s->messages, .add_generation_prompt = true, .bos_token = s->bos, .eos_token = s->eos};
    if (aero_chat_render(s->tmpl, &in, &prompt, &plen, &err)) {
        cli_fail("chat", "%s", err.msg);
        return 2;
    }
    // the template usually writes BOS itself; add it only when the vocabulary wants one and it is missing
    size_t bl = strlen(s->bos);
    bool add_bos = aero_tokenizer_add_bos(s->tok) && aero_tokenizer_bos(s->tok) >= 0 &&
                   !(bl && plen >= bl && !memcmp(prompt, s->bos, bl));
    int32_t *ids = NULL;
    size_t n_ids = 0;
    aero_status st = aero_tokenize(s->tok, prompt, plen, add_bos, true, &ids, &n_ids, &err);
    free(prompt);
    if (st) {
        cli_fail("chat", "%s", err.msg);
        return 2;
    }
    if (n_ids == 0 || n_ids >= (size_t)s->n_ctx) {
        cli_fail("chat", "the conversation is %zu tokens, the context holds %d (-c): /reset to start over", n_ids,
                 s->n_ctx);
        free(ids);
        return 2;
    }
    int n = (int)n_ids;
    double t0 = aero_now();
    cli_prompt_cache pc = {0};
    bool use_cache = s->o->prompt_cache && !s->cache_done;
    if (use_cache && cli_prompt_cache_load(&s->e, s->o, s->gen, ids, n, &pc, "chat")) {
        free(ids);
        return 1;
    }
    st = aero_generator_begin(s->gen, ids, n, &err);
    if (st || aero_generator_prefill(s->gen, &err)) {
        free(ids);
        return cli_fail("chat", "%s", err.msg);
    }
    if (use_cache) {
        s->cache_done = true;
        int reused = aero_generator_n_reused(s->gen);
        fprintf(stderr, "[prompt cache: %s: %d of %d prompt tokens reused, %d prefilled]\n", s->o->prompt_cache,
                reused, n, n - reused);
        if (cli_prompt_cache_save(&s->e, s->o, ids, n, &pc, "chat")) {
            free(ids);
            return 1;
        }
    }
    free(ids);
    double t1 = aero_now();
    int keep = aero_generator_n_reused(s->gen);
    size_t shown = 0, len;
    const char *text;
    interrupted = 0;
    for (;;) {
        size_t vis = aero_generator_visible(s->gen);
        text = aero_generator_text(s->gen, &len);
        fwrite(text + shown, 1, vis - shown, stdout);
        fflush(stdout);
        shown = vis;
        if (aero_generator_end(s->gen) != AERO_END_NONE) break;
        if (interrupted) {
            aero_generator_interrupt(s->gen);
            continue;
        }
        if (aero_generator_step(s->gen, &err)) return cli_fail("chat", "%s", err.msg);
    }
    fputc('\n', stdout);
    fflush(stdout);
    text = aero_generator_text(s->gen, &len);
    aero_buf ans = {0};
    if (!aero_buf_append(&ans, text, len)) return cli_fail("chat", "out of memory");
    double t2 = aero_now();
    int n_gen = aero_generator_n_generated(s->gen);
    aero_end end = aero_generator_end(s->gen);
    if (s->verbose)
        fprintf(stderr,
                "[prompt %d tokens: %d reused from the cache, %d decoded in %.2f s | answer %d tokens in %.2f s "
                "(%.1f tok/s) | stop: %s]\n",
                n, keep, n - keep, t1 - t0, n_gen, t2 - t1, n_gen / (t2 - t1 > 0 ? t2 - t1 : 1e-9),
                end == AERO_END_EOG ? "end of turn" : aero_end_name(end));
    *answer = aero_buf_take(&ans, NULL);
    return 0;
}

// Adds a {role, content} message; text that is not UTF-8 is refused.
static int append_message(json_t *messages, const char *role, const char *content) {
    json_t *m = json_pack("{s:s,s:s}", "role", role, "content", content);
    if (!m) return cli_fail("chat", "the %s message is not valid UTF-8 text", role);
    json_array_append_new(messages, m);
    return 0;
}

// Entry point: options, model, template, then the read-answer loop.
int aero_cmd_chat(int argc, char **argv) {
    cli_opts o;
    cli_opts_default(&o);
    o.n_predict = 512;
    const char *system = NULL, *tfile = NULL;
    chat_state s;
    memset(&s, 0, sizeof s);
    for (int i = 1; i < argc; i++) {
        int used = cli_opts_parse(&o, "chat", argc, argv, i);
        if (used < 0) return 1;
        if (used > 0) {
            i += used - 1;
            continue;
        }
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            chat_usage();
            return 0;
        } else if (!strcmp(argv[i], "--system") && i + 1 < argc) {
            system = argv[++i];
        } else if ((!strcmp(argv[i], "--chat-template-file") || !strcmp(argv[i], "--template-file")) && i + 1 < argc) {
            tfile = argv[++i];
        } else if (!strcmp(argv[i], "--verbose")) {
            s.verbose = true;
        } else {
            return cli_fail("chat", "unknown or incomplete argument '%s' (see aerollm chat --help)", argv[i]);
        }
    }
    if (o.draft || o.draft_head) return cli_fail("chat", "--draft is not supported by chat; use run or serve for speculative decoding");
    if (o.prompt_file) return cli_fail("chat", "-f is not supported by chat; pipe messages on stdin");
    int rc = 1;
    aero_error err = {0};
    if (cli_session_open(&s.e, &o, "chat")) return 1;
    s.o = &o;
    s.tok = aero_model_tokenizer(s.e.model);
    const char *tname;
    char note[256];
    if (aero_chat_template_pick(&s.tmpl, aero_model_gguf(s.e.model), tfile, &tname, note, sizeof note, &err)) {
        cli_fail("chat", "%s", err.msg);
        goto done;
    }
    if (note[0]) fprintf(stderr, "aerollm chat: %s\n", note);
    aero_generator_params gp;
    aero_generator_params_default(&gp);
    gp.ctx = s.e.ctx;
    gp.tok = s.tok;
    gp.max_tokens = o.n_predict;
    gp.ignore_eos = o.ignore_eos;
    if (aero_generator_new(&s.gen, &gp, s.e.sampler, &err)) {
        cli_fail("chat", "%s", err.msg);
        goto done;
    }
    int32_t b = aero_tokenizer_bos(s.tok), e = aero_tokenizer_eos(s.tok);
    const char *bs = b >= 0 ? aero_tokenizer_token_str(s.tok, b) : NULL,
               *es = e >= 0 ? aero_tokenizer_token_str(s.tok, e) : NULL;
    s.bos = strdup(bs ? bs : "");
    s.eos = strdup(es ? es : "");
    s.n_ctx = aero_ctx_n_ctx(s.e.ctx);
    s.messages = json_array();
    if (!s.bos || !s.eos || !s.messages) {
        cli_fail("chat", "out of memory");
        goto done;
    }
    if (system && append_message(s.messages, "system", system)) goto done;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL); // no SA_RESTART: Ctrl-C at the prompt ends the chat, during an answer stops it
    bool tty = isatty(0);
    if (tty)
        fprintf(stderr,
                "aerollm chat: %s, context %d tokens. /reset forgets the conversation, /exit or Ctrl-D quits.\n",
                o.model ? o.model : "bundled model", s.n_ctx);
    const char *first = o.prompt;
    for (;;) {
        char *msg = NULL;
        if (first) {
            msg = strdup(first);
            first = NULL;
        } else {
            msg = read_message(tty);
        }
        if (!msg) break;
        if (!strcmp(msg, "/exit") || !strcmp(msg, "/quit")) {
            free(msg);
            break;
        }
        if (!strcmp(msg, "/reset")) {
            free(msg);
            json_array_clear(s.messages);
            if (system) append_message(s.messages, "system", system);
            aero_generator_free(s.gen); // a fresh generation forgets what the cache held
            s.gen = NULL;
            aero_kv_drop(s.e.ctx, 0);
            aero_sampler_reset(s.e.sampler);
            if (aero_generator_new(&s.gen, &gp, s.e.sampler, &err)) {
                cli_fail("chat", "%s", err.msg);
                goto done;
            }
            if (tty) fprintf(stderr, "(conversation forgotten)\n");
            continue;
        }
        if (!strcmp(msg, "/help")) {
            free(msg);
            fprintf(stderr, "/reset forgets the conversation, /exit quits; end a line with \\ to continue it\n");
            continue;
        }
        if (!msg[0]) {
            free(msg);
            continue;
        }
        int bad = append_message(s.messages, "user", msg);
        free(msg);
        if (bad) continue;
        char *answer = NULL;
        int r = turn(&s, &answer);
        if (r == 1) goto done;
        if (r == 2) {
            json_array_remove(s.messages, json_array_size(s.messages) - 1);
            continue;
        }
        int bad2 = append_message(s.messages, "assistant", answer);
        free(answer);
        if (bad2) json_array_append_new(s.messages, json_pack("{s:s,s:s}", "role", "assistant", "content", ""));
    }
    rc = 0;
done:
    json_decref(s.messages);
    aero_generator_free(s.gen);
    free(s.bos);
    free(s.eos);
    aero_chat_template_free(s.tmpl);
    cli_session_close(&s.e);
    return rc;
}
