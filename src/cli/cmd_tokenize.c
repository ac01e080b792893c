// `aerollm tokenize` and `aerollm detokenize`, shaped like llama.cpp's tokenize tool: text in, ids out (and
// back). `tokenize --batch` reads length-prefixed records so that tests can run thousands of strings
// through one process.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

// Help text for `aerollm tokenize`.
static void tok_usage(FILE *f) {
    fprintf(f, "usage: aerollm tokenize -m MODEL.gguf|tokenizer.json [-p TEXT | -f FILE | < stdin] [options]\n"
               "  --no-bos          do not prepend BOS (default: as the vocabulary says)\n"
               "  --parse-special   recognise control tokens such as <|im_start|> in the text\n"
               "  --ids             print only the ids, space-separated on one line\n"
               "  --batch           read records \"LEN\\nBYTES\" from stdin; per record print the ids on one line\n"
               "                    and the hex of their decoding on the next (for differential tests)\n");
}

// Prints a piece with control characters escaped, so that one token stays on one line.
static void print_piece(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c == '\\') fputs("\\\\", stdout);
        else if (c < 0x20 || c == 0x7F) printf("\\x%02x", c);
        else putchar(c);
    }
}

// One record per input for --batch: ids line, then the hex of aero_detokenize(render_special) of them.
static int run_batch(const aero_tokenizer *t, bool add_bos, bool parse_special) {
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(line, &end, 10);
        if (end == line || errno || n > (1ull << 32))
            return cli_fail("tokenize", "--batch: bad record header '%s'", line);
        char *buf = malloc(n ? n : 1);
        if (!buf) return cli_fail("tokenize", "out of memory");
        if (fread(buf, 1, n, stdin) != n) {
            free(buf);
            return cli_fail("tokenize", "--batch: record shorter than its length %llu", n);
        }
        int32_t *ids = NULL;
        size_t nid = 0;
        aero_error err = {0};
        if (aero_tokenize(t, buf, n, add_bos, parse_special, &ids, &nid, &err) != AERO_OK) {
            free(buf);
            return cli_fail("tokenize", "%s", err.msg);
        }
        for (size_t i = 0; i < nid; i++) printf(i ? " %d" : "%d", ids[i]);
        putchar('\n');
        char *txt = NULL;
        size_t tl = 0;
        if (aero_detokenize(t, ids, nid, true, &txt, &tl, &err) != AERO_OK) {
            free(buf);
            free(ids);
            return cli_fail("tokenize", "%s", err.msg);
        }
        for (size_t i = 0; i < tl; i++) printf("%02x", (unsigned char)txt[i]);
        putchar('\n');
        free(txt);
        free(ids);
        free(buf);
    }
    fflush(stdout);
    return 0;
}

// `aerollm tokenize`: text -> ids (and pieces), like llama.cpp's tokenize tool.
int aero_cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL, *file = NULL;
    bool no_bos = false, parse_special = false, ids_only = false, batch = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && i + 1 < argc) model = argv[++i];
        else if ((!strcmp(a, "-p") || !strcmp(a, "--prompt")) && i + 1 < argc) prompt = argv[++i];
        else if ((!strcmp(a, "-f") || !strcmp(a, "--file")) && i + 1 < argc) file = argv[++i];
        else if (!strcmp(a, "--no-bos")) no_bos = true;
        else if (!strcmp(a, "--parse-special")) parse_special = true;
        else if (!strcmp(a, "--ids")) ids_only = true;
        else if (!strcmp(a, "--batch")) batch = true;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            tok_usage(stdout);
            return 0;
        } else {
            tok_usage(stderr);
            return cli_fail("tokenize", "unknown or incomplete option '%s'", a);
        }
    }
    if (!model) {
        tok_usage(stderr);
        return cli_fail("tokenize", "-m MODEL is required");
    }
    if (prompt && file) return cli_fail("tokenize", "give -p or -f, not both");
    aero_tokenizer *t = NULL;
    aero_error err = {0};
    if (aero_tokenizer_load(&t, model, &err) != AERO_OK) return cli_fail("tokenize", "%s", err.msg);
    bool add_bos = !no_bos && aero_tokenizer_add_bos(t);
    if (batch) {
        int rc = run_batch(t, add_bos, parse_special);
        aero_tokenizer_free(t);
        return rc;
    }
    char *text = NULL;
    size_t len = 0;
    aero_status st = AERO_OK;
    if (prompt) {
        len = strlen(prompt);
        if (!(text = strdup(prompt))) st = aero_fail(&err, AERO_ERR_NOMEM, "out of memory");
    } else if (file) {
        st = aero_read_file(file, 0, &text, &len, &err);
    } else {
        st = aero_read_stream(stdin, "stdin", 0, &text, &len, &err);
    }
    if (st) {
        aero_tokenizer_free(t);
        return cli_fail("tokenize", "%s", err.msg);
    }
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = 0;
    if (aero_tokenize(t, text, len, add_bos, parse_special, &ids, &n, &err) != AERO_OK) {
        rc = cli_fail("tokenize", "%s", err.msg);
        goto done;
    }
    for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    putchar('\n');
    if (!ids_only) {
        size_t cap = aero_tokenizer_max_piece(t);
        char *buf = malloc(cap);
        for (size_t i = 0; buf && i < n; i++) {
            size_t l = aero_token_to_bytes(t, ids[i], true, buf, cap);
            printf("%6d -> '", ids[i]);
            print_piece(buf, l < cap ? l : cap);
            printf("'\n");
        }
        free(buf);
    }
done:
    free(ids);
    free(text);
    aero_tokenizer_free(t);
    return rc;
}

// `aerollm detokenize`: ids -> text.
int aero_cmd_detokenize(int argc, char **argv) {
    const char *model = NULL;
    bool special = false;
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && i + 1 < argc) {
            model = argv[++i];
            continue;
        }
        if (!strcmp(a, "--special")) {
            special = true;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: aerollm detokenize -m MODEL.gguf|tokenizer.json [--special] ID...\n"
                   "  ids may be separated by spaces or commas and wrapped in [ ]\n"
                   "  --special   print control tokens (BOS, <|im_start|>, ...) too\n");
            free(ids);
            return 0;
        }
        // ids: "1 2 3", "1,2,3", "[1, 2, 3]"
        for (const char *p = a; *p;) {
            if (*p == '[' || *p == ']' || *p == ',' || *p == ' ') {
                p++;
                continue;
            }
            char *end;
            errno = 0;
            long v = strtol(p, &end, 10);
            if (end == p || errno || v < 0 || v > INT32_MAX) {
                free(ids);
                return cli_fail("detokenize", "'%s' is not a token id", a);
            }
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                int32_t *q = realloc(ids, cap * sizeof *q);
                if (!q) {
                    free(ids);
                    return cli_fail("detokenize", "out of memory");
                }
                ids = q;
            }
            ids[n++] = (int32_t)v;
            p = end;
        }
    }
    if (!model) {
        free(ids);
        return cli_fail("detokenize", "-m MODEL is required (usage: aerollm detokenize -m MODEL ID...)");
    }
    aero_tokenizer *t = NULL;
    aero_error err = {0};
    if (aero_tokenizer_load(&t, model, &err) != AERO_OK) {
        free(ids);
        return cli_fail("detokenize", "%s", err.msg);
    }
    char *text = NULL;
    size_t len = 0;
    if (aero_detokenize(t, ids, n, special, &text, &len, &err) != AERO_OK) {
        rc = cli_fail("detokenize", "%s", err.msg);
    } else {
        fwrite(text, 1, len, stdout);
        putchar('\n');
    }
    free(text);
    free(ids);
    aero_tokenizer_free(t);
    return rc;
}
