// `aerollm chat`: an interactive conversation with a model through its own chat template. Each turn renders
// the whole conversation, tokenizes it with special tokens recognised, and decodes only what the KV cache
// does not already hold (the common prefix with the previous turn is kept), then streams the answer.
#include <errno.h>
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
    char *msg = NULL, *line = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (tty) {
            fputs(msg ? ". " : "> ", stdout);
            fflush(stdout);
        }
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0 || interrupted) {
            free(line);
            if (msg && !interrupted) return msg; // last line without a newline
            free(msg);
            return NULL;
        }
        if (n > 0 && line[n - 1] == '\n') line[--n] = 0;
        if (n > 0 && line[n - 1] == '\r') line[--n] = 0;
        bool more = n > 0 && line[n - 1] == '\\';
        if (more) line[--n] = 0;
        char *m = realloc(msg, len + (size_t)n + 2);
        if (!m) {
            free(msg);
            free(line);
            return NULL;
        }
        msg = m;
        memcpy(msg + len, line, (size_t)n);
        len += (size_t)n;
        if (more) msg[len++] = '\n';
        msg[len] = 0;
        if (!more) break;
    }
    free(line);
    return msg;
}

typedef struct {
    cli_engine e;
    const aero_tokenizer *tok;
    aero_chat_template *tmpl;
    char *bos, *eos;
    json_t *messages;
    int32_t *cache;  // tokens held by the KV cache of sequence 0, in order
    int n_cache, n_ctx;
    float *logits;
    bool verbose;
} chat_state;

// Decodes ids[from..n) after the cached prefix, in passes of n_batch, keeping the last token's logits.
static int prefill(chat_state *s, const cli_opts *o, const int32_t *ids, int from, int n) {
    aero_error err = {0};
    for (int first = from; first < n; first += o->n_batch) {
        int k = n - first < o->n_batch ? n - first : o->n_batch;
        int32_t *pos = malloc(sizeof(int32_t) * (size_t)k);
        uint8_t *want = calloc((size_t)k, 1);
        if (!pos || !want) {
            free(pos);
            free(want);
            return cli_fail("chat", "out of memory");
        }
        for (int i = 0; i < k; i++) pos[i] = first + i;
        want[k - 1] = 1;
        aero_batch b = {.n = k, .tokens = ids + first, .pos = pos, .want_logits = want};
        aero_status st = aero_decode(s->e.ctx, &b, s->logits, &err);
        free(pos);
        free(want);
        if (st) return cli_fail("chat", "%s", err.msg);
        memcpy(s->cache + first, ids + first, sizeof(int32_t) * (size_t)k);
        s->n_cache = first + k;
        for (int i = 0; i < k; i++) aero_sampler_accept(s->e.sampler, ids[first + i]);
    }
    return 0;
}

// One turn: render, reuse the cached prefix, prefill the rest, stream the answer. The answer (malloc'ed) is
// returned in *answer; 1 on a hard error, 2 when the turn was refused (conversation too long, bad render).
static int turn(chat_state *s, const cli_opts *o, char **answer) {
    aero_error err = {0};
    char *prompt = NULL;
    size_t plen = 0;
    aero_chat_inputs in = {.messages = s->messages, .add_generation_prompt = true, .bos_token = s->bos, .eos_token = s->eos};
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
        cli_fail("chat", "the conversation is %zu tokens, the context holds %d (-c): /reset to start over", n_ids, s->n_ctx);
        free(ids);
        return 2;
    }
    int n = (int)n_ids, keep = 0;
    while (keep < s->n_cache && keep < n && s->cache[keep] == ids[keep]) keep++;
    if (keep == n) keep = n - 1; // the last prompt token is decoded again for its logits
    aero_kv_truncate(s->e.ctx, 0, keep);
    s->n_cache = keep;
    double t0 = aero_now();
    if (prefill(s, o, ids, keep, n)) {
        free(ids);
        return 1;
    }
    free(ids);
    double t1 = aero_now();
    aero_detok d;
    aero_detok_init(&d, s->tok, false);
    d.first = false;
    size_t cap = 256, len = 0;
    char *ans = malloc(cap);
    if (!ans) return cli_fail("chat", "out of memory");
    const char *stop = "length";
    int n_gen = 0;
    char piece[512];
    aero_error derr = {0};
    interrupted = 0;
    while (n_gen < o->n_predict) {
        int32_t t = aero_sampler_sample(s->e.sampler, s->logits);
        aero_sampler_accept(s->e.sampler, t);
        n_gen++;
        if (!o->ignore_eos && aero_tokenizer_is_eog(s->tok, t)) {
            stop = "end of turn";
            break;
        }
        size_t k = aero_detok_push(&d, t, piece, sizeof piece);
        fwrite(piece, 1, k, stdout);
        fflush(stdout);
        if (len + k + 1 > cap) {
            while (len + k + 1 > cap) cap *= 2;
            char *na = realloc(ans, cap);
            if (!na) {
                free(ans);
                return cli_fail("chat", "out of memory");
            }
            ans = na;
        }
        memcpy(ans + len, piece, k);
        len += k;
        if (interrupted) {
            stop = "interrupted";
            break;
        }
        if (n_gen >= o->n_predict) break;
        if (s->n_cache >= s->n_ctx) {
            stop = "context full";
            break;
        }
        int32_t pos = s->n_cache;
        aero_batch b = {.n = 1, .tokens = &t, .pos = &pos};
        if (aero_decode(s->e.ctx, &b, s->logits, &derr)) {
            free(ans);
            return cli_fail("chat", "%s", derr.msg);
        }
        s->cache[s->n_cache++] = t;
    }
    size_t k = aero_detok_flush(&d, piece, sizeof piece);
    fwrite(piece, 1, k, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    if (len + k + 1 > cap) {
        char *na = realloc(ans, len + k + 1);
        if (!na) {
            free(ans);
            return cli_fail("chat", "out of memory");
        }
        ans = na;
    }
    memcpy(ans + len, piece, k);
    len += k;
    ans[len] = 0;
    double t2 = aero_now();
    if (s->verbose)
        fprintf(stderr, "[prompt %d tokens: %d reused from the cache, %d decoded in %.2f s | answer %d tokens in %.2f s "
                        "(%.1f tok/s) | stop: %s]\n",
                n, keep, n - keep, t1 - t0, n_gen, t2 - t1, n_gen / (t2 - t1 > 0 ? t2 - t1 : 1e-9), stop);
    *answer = ans;
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
    if (o.draft) return cli_fail("chat", "--draft is not supported by chat; use run or serve for speculative decoding");
    if (o.prompt_file) return cli_fail("chat", "-f is not supported by chat; pipe messages on stdin");
    int rc = 1;
    aero_error err = {0};
    if (cli_engine_open(&s.e, &o, "chat")) return 1;
    s.tok = aero_model_tokenizer(s.e.model);
    if (tfile ? aero_chat_template_load_file(&s.tmpl, tfile, &err)
              : aero_chat_template_from_gguf(&s.tmpl, aero_model_gguf(s.e.model), &err)) {
        cli_fail("chat", "%s", err.msg);
        goto done;
    }
    int32_t b = aero_tokenizer_bos(s.tok), e = aero_tokenizer_eos(s.tok);
    const char *bs = b >= 0 ? aero_tokenizer_token_str(s.tok, b) : NULL, *es = e >= 0 ? aero_tokenizer_token_str(s.tok, e) : NULL;
    s.bos = strdup(bs ? bs : "");
    s.eos = strdup(es ? es : "");
    s.n_ctx = aero_ctx_n_ctx(s.e.ctx);
    s.cache = malloc(sizeof(int32_t) * (size_t)s.n_ctx);
    s.logits = malloc(sizeof(float) * (size_t)aero_model_hparams(s.e.model)->n_vocab);
    s.messages = json_array();
    if (!s.bos || !s.eos || !s.cache || !s.logits || !s.messages) {
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
        fprintf(stderr, "aerollm chat: %s, context %d tokens. /reset forgets the conversation, /exit or Ctrl-D quits.\n",
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
            aero_kv_drop(s.e.ctx, 0);
            s.n_cache = 0;
            aero_sampler_reset(s.e.sampler);
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
        int r = turn(&s, &o, &answer);
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
    free(s.cache);
    free(s.logits);
    free(s.bos);
    free(s.eos);
    aero_chat_template_free(s.tmpl);
    cli_engine_close(&s.e);
    return rc;
}
