// Pre-tokenizers: the regex splits that cut text into words before BPE, per GGUF tokenizer.ggml.pre name or
// per tokenizer.json config. Regexes run on PCRE2 (UTF + UCP + JIT); Hugging Face's Oniguruma patterns are
// rewritten first so that \s means Unicode White_Space and (?i:...) folds ASCII only, as the reference
// tokenizers (Rust `tokenizers` and its JavaScript port) behave.
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

// White_Space members, for use inside a character class.
static const char WS_CLASS_BODY[] = "\\t-\\r \\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}"
                                    "\\x{205f}\\x{3000}";

static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static char swap_case(char c) { return (c >= 'a' && c <= 'z') ? (char)(c - 32) : (char)(c + 32); }

// Copies one escape sequence starting at p[i] == '\\' (with its {..} body for \p, \x, \u); returns its length.
static size_t escape_len(const char *p, size_t n, size_t i) {
    if (i + 1 >= n) return 1;
    char c = p[i + 1];
    if ((c == 'p' || c == 'P' || c == 'x' || c == 'u') && i + 2 < n && p[i + 2] == '{') {
        size_t j = i + 3;
        while (j < n && p[j] != '}') j++;
        return j < n ? j - i + 1 : n - i;
    }
    if (c == 'x' && i + 3 < n) return 4;
    return 2;
}

// A character class [...] of the pattern at *at: copied with \s expanded, and inside a (?i: group with the
// other case of ASCII letters added (PCRE2 has no scoped case folding we could use instead).
static bool translate_class(const char *p, size_t n, size_t *at, bool ci, aero_tok_buf *o) {
    size_t i = *at;
    aero_tok_buf extra = {0};
    if (!aero_buf_append(o, "[", 1)) return false;
    i++;
    if (i < n && p[i] == '^') {
        if (!aero_buf_append(o, "^", 1)) return false;
        i++;
    }
    if (i < n && p[i] == ']') { // a literal ] first in the class
        if (!aero_buf_append(o, "\\]", 2)) return false;
        i++;
    }
    bool ok = true;
    while (ok && i < n && p[i] != ']') {
        if (p[i] == '\\') {
            size_t l = escape_len(p, n, i);
            if (i + 1 < n && p[i + 1] == 's') ok = aero_buf_append(o, WS_CLASS_BODY, sizeof WS_CLASS_BODY - 1);
            else ok = aero_buf_append(o, p + i, l);
            i += l;
            continue;
        }
        if (p[i] == '[' && i + 1 < n && p[i + 1] == ':') { // POSIX class [:alpha:]
            size_t j = i + 2;
            while (j + 1 < n && !(p[j] == ':' && p[j + 1] == ']')) j++;
            size_t l = (j + 1 < n) ? j + 2 - i : n - i;
            ok = aero_buf_append(o, p + i, l);
            i += l;
            continue;
        }
        if (ci && is_alpha(p[i])) {
            if (i + 2 < n && p[i + 1] == '-' && is_alpha(p[i + 2])) {
                char r[3] = {swap_case(p[i]), '-', swap_case(p[i + 2])};
                ok = aero_buf_append(o, p + i, 3) && aero_buf_append(&extra, r, 3);
                i += 3;
                continue;
            }
            char r = swap_case(p[i]);
            ok = aero_buf_append(&extra, &r, 1);
        }
        if (ok) ok = aero_buf_append(o, p + i, 1);
        i++;
    }
    if (ok && extra.len) ok = aero_buf_append(o, extra.p, extra.len);
    free(extra.p);
    if (!ok || !aero_buf_append(o, "]", 1)) return false;
    if (i < n) i++;
    *at = i;
    return true;
}

// Rewrites a Hugging Face regex into PCRE2 syntax with the reference semantics (see file comment).
static bool translate(const char *p, size_t n, aero_tok_buf *o) {
    int depth = 0;
    int ci_depth = -1; // paren depth at which a (?i: group opened; -1 when not inside one
    for (size_t i = 0; i < n;) {
        char c = p[i];
        bool ci = ci_depth >= 0;
        if (c == '\\') {
            size_t l = escape_len(p, n, i);
            char e = i + 1 < n ? p[i + 1] : 0;
            if (e == 's') {
                if (!aero_buf_append(o, "[", 1) || !aero_buf_append(o, WS_CLASS_BODY, sizeof WS_CLASS_BODY - 1) ||
                    !aero_buf_append(o, "]", 1))
                    return false;
            } else if (e == 'S') {
                if (!aero_buf_append(o, "[^", 2) || !aero_buf_append(o, WS_CLASS_BODY, sizeof WS_CLASS_BODY - 1) ||
                    !aero_buf_append(o, "]", 1))
                    return false;
            } else if (!aero_buf_append(o, p + i, l)) {
                return false;
            }
            i += l;
            continue;
        }
        if (c == '[') {
            if (!translate_class(p, n, &i, ci, o)) return false;
            continue;
        }
        if (c == '(') {
            depth++;
            if (i + 3 < n && p[i + 1] == '?' && p[i + 2] == 'i' && p[i + 3] == ':' && ci_depth < 0) {
                ci_depth = depth;
                if (!aero_buf_append(o, "(?:", 3)) return false;
                i += 4;
                continue;
            }
        } else if (c == ')') {
            if (depth == ci_depth) ci_depth = -1;
            depth--;
        } else if (ci && is_alpha(c)) {
            char r[4] = {'[', c, swap_case(c), ']'};
            if (!aero_buf_append(o, r, 4)) return false;
            i++;
            continue;
        }
        if (!aero_buf_append(o, p + i, 1)) return false;
        i++;
    }
    return true;
}

// Compiles a pattern for matching UTF-8 text that may contain invalid bytes (they match nothing).
aero_status aero_tok_compile_regex(const char *pattern, size_t len, pcre2_code **out, aero_error *err) {
    aero_tok_buf b = {0};
    if (!translate(pattern, len, &b)) {
        free(b.p);
        return aero_fail(err, AERO_ERR_NOMEM, "tokenizer: out of memory compiling a regex");
    }
    int code;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)(b.p ? b.p : ""), b.len, PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF,
                                   &code, &off, NULL);
    if (!re) {
        char msg[160];
        pcre2_get_error_message(code, (PCRE2_UCHAR *)msg, sizeof msg);
        aero_status st =
            aero_fail(err, AERO_ERR_FORMAT, "tokenizer: pre-tokenizer regex /%.*s/ does not compile: %s at %zu",
                      (int)(len > 200 ? 200 : len), pattern, msg, (size_t)off);
        free(b.p);
        return st;
    }
    free(b.p);
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); // falls back to the interpreter when JIT is unavailable
    *out = re;
    return AERO_OK;
}

// Appends a pre-tokenizer rule (rules run in order, each on the pieces of the previous).
aero_status aero_tok_add_rule(aero_tokenizer *t, const aero_pre_rule *r, aero_error *err) {
    aero_pre_rule *p = realloc(t->pre, (size_t)(t->n_pre + 1) * sizeof *p);
    if (!p) return aero_fail(err, AERO_ERR_NOMEM, "tokenizer: out of memory");
    t->pre = p;
    t->pre[t->n_pre++] = *r;
    return AERO_OK;
}

// Adds a Split rule; literal patterns are escaped into a regex.
aero_status aero_tok_add_split(aero_tokenizer *t, const char *pattern, size_t len, bool literal,
                               aero_split_behavior behavior, bool invert, aero_error *err) {
    aero_pre_rule r = {.kind = AERO_PRE_SPLIT, .behavior = behavior, .invert = invert};
    aero_status st;
    if (literal) {
        aero_tok_buf b = {0};
        bool ok = aero_buf_append(&b, "\\Q", 2) && aero_buf_append(&b, pattern, len) && aero_buf_append(&b, "\\E", 2);
        if (!ok) {
            free(b.p);
            return aero_fail(err, AERO_ERR_NOMEM, "tokenizer: out of memory");
        }
        int code;
        PCRE2_SIZE off;
        r.re = pcre2_compile((PCRE2_SPTR)b.p, b.len, PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &code, &off, NULL);
        free(b.p);
        if (!r.re) return aero_fail(err, AERO_ERR_FORMAT, "tokenizer: split string does not compile");
        pcre2_jit_compile(r.re, PCRE2_JIT_COMPLETE);
    } else {
        st = aero_tok_compile_regex(pattern, len, &r.re, err);
        if (st != AERO_OK) return st;
        r.fast = aero_tok_fast_kind(pattern, len);
    }
    st = aero_tok_add_rule(t, &r, err);
    if (st != AERO_OK) pcre2_code_free(r.re);
    return st;
}

// ---- GGUF tokenizer.ggml.pre names ----
// Patterns are the ones in each model's Hugging Face tokenizer.json (llama.cpp keeps the same list, with
// some rewritten for std::regex); one entry = a sequence of Isolated splits.

#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define RE_GPT2_NOTAIL "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RE_LLAMA3 \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2 \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_BLOOM " ?[^(\\s|.,!?\xE2\x80\xA6\xE3\x80\x82\xEF\xBC\x8C\xE3\x80\x81\xE0\xA5\xA4\xDB\x94\xD8\x8C)]+"

typedef struct {
    const char *names;  // '|'-separated aliases
    const char *res[7]; // patterns, NULL-terminated
    bool ignore_merges, add_bos, nfc;
} pre_def;

static const pre_def PRE_DEFS[] = {
    {"default", {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2_NOTAIL, "\\p{N}+", "[0-9][0-9][0-9]"}, false, false, false},
    {"gpt-2|phi-2|gpt-neox|mpt|olmo|jais|trillion|jina-es|jina-de|jina-v1-en|jina-v2-es|jina-v2-de|jina-v2-code|"
     "roberta-bpe|gigachat|a.x-4.0|mellum|modern-bert|exaone4|granite-docling",
     {RE_GPT2},
     false,
     false,
     false},
    // llama.cpp adds BOS and ignores merges for the Llama 3 family only; DBRX, Smaug and GLM-4 share just the split
    {"llama3|llama-v3|llama-bpe|falcon3|falcon-h1|pixtral|midm-2.0|lfm2|jina-v5-nano", {RE_LLAMA3}, true, true, false},
    {"dbrx|smaug-bpe|chatglm-bpe|glm4", {RE_LLAMA3}, false, false, false},
    {"qwen2|deepseek-r1-qwen|megrez|stablelm2|hunyuan|kormo", {RE_QWEN2}, false, false, true},
    {"deepseek-llm",
     {"[\r\n]",
      "\\s?[A-Za-z\xC2\xB5\xC3\x80-\xC3\x96\xC3\x98-\xC3\xB6\xC3\xB8-\xC6\xBA\xC6\xBC-\xC6\xBF\xC7\x84-\xCA\x93\xCA\x95-\xCA\xAF"
      "\xCD\xB0-\xCD\xB3\xCD\xB6\xCD\xB7\xCD\xBB-\xCD\xBD\xCD\xBF\xCE\x86\xCE\x88-\xCE\x8A\xCE\x8C\xCE\x8E-\xCE\xA1\xCE\xA3-\xCF\xB5"
      "\xCF\xB7-\xD2\x81\xD2\x8A-\xD4\xAF\xD4\xB1-\xD5\x96\xE1\x82\xA0-\xE1\x83\x85\xE1\x8E\xA0-\xE1\x8F\xB5\xE1\x8F\xB8-\xE1\x8F\xBD"
      "\xE1\xB2\x90-\xE1\xB2\xBA\xE1\xB2\xBD-\xE1\xB2\xBF\xE1\xB4\x80-\xE1\xB4\xAB\xE1\xB5\xAB-\xE1\xB5\xB7\xE1\xB5\xB9-\xE1\xB6\x9A"
      "\xE1\xB8\x80-\xE1\xBC\x95\xE1\xBC\x98-\xE1\xBC\x9D\xE1\xBC\xA0-\xE1\xBD\x85\xE1\xBD\x88-\xE1\xBD\x8D\xE1\xBD\x90-\xE1\xBD\x97"
      "\xE1\xBD\x99\xE1\xBD\x9B\xE1\xBD\x9D\xE1\xBD\x9F-\xE1\xBD\xBD\xE1\xBE\x80-\xE1\xBE\xB4\xE1\xBE\xB6-\xE1\xBE\xBC\xE1\xBE\xBE"
      "\xE1\xBF\x82-\xE1\xBF\x84\xE1\xBF\x86-\xE1\xBF\x8C\xE1\xBF\x90-\xE1\xBF\x93\xE1\xBF\x96-\xE1\xBF\x9B\xE1\xBF\xA0-\xE1\xBF\xAC"
      "\xE1\xBF\xB2-\xE1\xBF\xB4\xE1\xBF\xB6-\xE1\xBF\xBC\xE2\x84\x82\xE2\x84\x87\xE2\x84\x8A-\xE2\x84\x93\xE2\x84\x95\xE2\x84\x99-\xE2\x84\x9D"
      "\xE2\x84\xA4\xE2\x84\xA6\xE2\x84\xA8\xE2\x84\xAA-\xE2\x84\xAD\xE2\x84\xAF-\xE2\x84\xB4\xE2\x84\xB9\xE2\x84\xBC-\xE2\x84\xBF"
      "\xE2\x85\x85-\xE2\x85\x89\xE2\x85\x8E\xE2\x86\x83\xE2\x86\x84\xE2\xB0\x80-\xE2\xB1\xBB\xE2\xB1\xBE-\xE2\xB3\xA4\xE2\xB3\xAB-\xE2\xB3\xAE"
      "\xE2\xB3\xB2\xE2\xB3\xB3\xEA\x99\x80-\xEA\x99\xAD\xEA\x9A\x80-\xEA\x9A\x9B\xEA\x9C\xA2-\xEA\x9D\xAF\xEA\x9D\xB1-\xEA\x9E\x87"
      "\xEA\x9E\x8B-\xEA\x9E\x8E\xEA\xAD\xB0-\xEA\xAE\xBF\xEF\xAC\x80-\xEF\xAC\x86\xEF\xAC\x93-\xEF\xAC\x97\xEF\xBC\xA1-\xEF\xBC\xBA"
      "\xEF\xBD\x81-\xEF\xBD\x9A\xF0\x90\x90\x80-\xF0\x90\x91\x8F\xF0\x90\x92\xB0-\xF0\x90\x93\x93\xF0\x90\x93\x98-\xF0\x90\x93\xBB"
      "\xF0\x90\xB2\x80-\xF0\x90\xB2\xB2\xF0\x90\xB3\x80-\xF0\x90\xB3\xB2\xF0\x91\xA2\xA0-\xF0\x91\xA3\x9F\xF0\x9E\xA4\x80-\xF0\x9E\xA5\x83]+",
      "\\s?[!-/:-~\xEF\xBC\x81-\xEF\xBC\x8F\xEF\xBC\x9A-\xEF\xBD\x9E\xE2\x80\x98-\xE2\x80\x9F\xE3\x80\x80-\xE3\x80\x82]+",
      "\\s+$", "[\xE4\xB8\x80-\xE9\xBE\xA5\xE0\xA0\x80-\xE4\xB8\x80\xEA\xB0\x80-\xED\x9F\xBF]+", "\\p{N}+"},
     false,
     false,
     false},
    {"deepseek-coder",
     {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+",
      "[\xE4\xB8\x80-\xE9\xBE\xA5\xE0\xA0\x80-\xE4\xB8\x80\xEA\xB0\x80-\xED\x9F\xBF]+", "\\p{N}"},
     false,
     false,
     false},
    {"deepseek-v3|hunyuan-dense|joyai-llm",
     {"\\p{N}{1,3}", "[\xE4\xB8\x80-\xE9\xBE\xA5\xE3\x81\x80-\xE3\x82\x9F\xE3\x82\xA0-\xE3\x83\xBF]+",
      "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"},
     false,
     false,
     false},
    {"falcon", {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2_NOTAIL, "[0-9][0-9][0-9]"}, false, false, false},
    {"starcoder|refact|command-r|smollm|codeshell|exaone|minerva-7b|mellum2",
     {"\\p{N}", RE_GPT2_NOTAIL},
     false,
     false,
     false},
    {"poro-chat|bloom|gpt3-finnish", {RE_BLOOM}, false, false, false},
    {"viking", {RE_BLOOM, "\\p{N}"}, false, false, false},
    {"tekken",
     {"[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|[^\\r\\n\\p{L}\\p{N}]?"
      "[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
     true,
     true,
     false},
    {"gpt-4o|llama4|kanana2",
     {"[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
      "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
      "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
     false,
     false,
     false},
    {"seed-coder",
     {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
     false,
     false,
     false},
    {"bailingmoe|bailingmoe2|llada-moe",
     {"'(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"},
     false,
     false,
     false},
    {"superbpe", {"\\p{N}+", "(?=(\\d{3})+(?!\\d))"}, false, false, false},
};

// Whether name is one of the '|'-separated aliases.
static bool name_in(const char *list, const char *name) {
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, '|');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && memcmp(p, name, n) == 0) return true;
        if (!e) break;
        p = e + 1;
    }
    return false;
}

// Installs the splits a GGUF pre-tokenizer name stands for; an unknown name is an error naming it.
aero_status aero_tok_set_pre_by_name(aero_tokenizer *t, const char *name, aero_error *err) {
    for (size_t d = 0; d < sizeof PRE_DEFS / sizeof PRE_DEFS[0]; d++) {
        const pre_def *pd = &PRE_DEFS[d];
        if (!name_in(pd->names, name)) continue;
        for (int k = 0; k < 7 && pd->res[k]; k++) {
            aero_status st =
                aero_tok_add_split(t, pd->res[k], strlen(pd->res[k]), false, AERO_SPLIT_ISOLATED, false, err);
            if (st != AERO_OK) return aero_error_prefix(err, "pre-tokenizer '%s'", name);
        }
        t->ignore_merges = pd->ignore_merges;
        t->add_bos = pd->add_bos;
        if (pd->nfc) {
            aero_norm_step *ns = realloc(t->norm, (size_t)(t->n_norm + 1) * sizeof *ns);
            if (!ns) return aero_fail(err, AERO_ERR_NOMEM, "tokenizer: out of memory");
            t->norm = ns;
            t->norm[t->n_norm++] = (aero_norm_step){.op = AERO_NORM_NFC};
        }
        return AERO_OK;
    }
    return aero_fail(err, AERO_ERR_UNSUPPORTED, "tokenizer: unknown pre-tokenizer '%s' (tokenizer.ggml.pre)", name);
}

// ---- applying the rules ----

bool aero_tok_spans_push(aero_tok_spans *s, size_t a, size_t b) {
    if (s->n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        size_t *v = realloc(s->v, cap * 2 * sizeof *v);
        if (!v) return false;
        s->v = v;
        s->cap = cap;
    }
    s->v[2 * s->n] = a;
    s->v[2 * s->n + 1] = b;
    s->n++;
    return true;
}

typedef struct {
    pcre2_match_data *md;
    pcre2_match_context *mc;
    pcre2_jit_stack *js;
    bool jit; // the current rule's pattern was JIT-compiled
} matcher;

// Finds the next match of re in s[0..n) at or after off. Returns 1 found, 0 none, <0 error (message in err).
static int next_match(const pcre2_code *re, matcher *m, const char *s, size_t n, size_t off, size_t *ms, size_t *me,
                      aero_error *err) {
    for (;;) {
        // pcre2_jit_match skips pcre2_match's argument checks: it matters at one call per word
        int rc = m->jit ? pcre2_jit_match(re, (PCRE2_SPTR)s, n, off, 0, m->md, m->mc)
                        : pcre2_match(re, (PCRE2_SPTR)s, n, off, 0, m->md, m->mc);
        if (rc == PCRE2_ERROR_NOMATCH) return 0;
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !m->js) {
            m->js = pcre2_jit_stack_create(64 * 1024, 64 * 1024 * 1024, NULL);
            if (!m->mc) m->mc = pcre2_match_context_create(NULL);
            if (!m->js || !m->mc) {
                aero_fail(err, AERO_ERR_NOMEM, "tokenizer: out of memory for the regex stack");
                return -1;
            }
            pcre2_jit_stack_assign(m->mc, NULL, m->js);
            continue;
        }
        if (rc < 0) {
            char msg[160];
            pcre2_get_error_message(rc, (PCRE2_UCHAR *)msg, sizeof msg);
            aero_fail(err, AERO_ERR_RANGE, "tokenizer: pre-tokenizer regex failed at byte %zu: %s", off, msg);
            return -1;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(m->md);
        *ms = ov[0];
        *me = ov[1];
        return 1;
    }
}

// Splits one span [a, b) of text by rule r into out.
static aero_status split_span(const aero_pre_rule *r, matcher *m, const char *text, size_t a, size_t b,
                              aero_tok_spans *out, aero_error *err) {
    size_t n = b - a;
    const char *s = text + a;
    size_t pos = 0, off = 0;
    // pieces are emitted through these, so that the behaviors can merge neighbours
    size_t pend_a = 0, pend_end = 0;
    bool have_pend = false; // a MERGED_NEXT delimiter waiting for its following piece
    bool last_was_match = false;
    size_t last_out_end = (size_t)-1;
#define EMIT(x, y, is_match)                                                                                \
    do {                                                                                                    \
        size_t xa = (x), yb = (y);                                                                          \
        bool im = (is_match) != r->invert;                                                                  \
        if (xa >= yb) break;                                                                                \
        switch (r->behavior) {                                                                              \
        case AERO_SPLIT_ISOLATED:                                                                           \
            if (!aero_tok_spans_push(out, a + xa, a + yb)) goto nomem;                                      \
            break;                                                                                          \
        case AERO_SPLIT_REMOVED:                                                                            \
            if (!im && !aero_tok_spans_push(out, a + xa, a + yb)) goto nomem;                               \
            break;                                                                                          \
        case AERO_SPLIT_MERGED_PREV: /* a delimiter joins the piece before it, unless that is one */        \
            if (im && !last_was_match && out->n && last_out_end == a + xa) out->v[2 * out->n - 1] = a + yb; \
            else if (!aero_tok_spans_push(out, a + xa, a + yb)) goto nomem;                                 \
            break;                                                                                          \
        case AERO_SPLIT_MERGED_NEXT: /* a delimiter joins the piece after it, unless that is one */         \
            if (have_pend && (im || pend_end != xa)) {                                                      \
                if (!aero_tok_spans_push(out, a + pend_a, a + pend_end)) goto nomem;                        \
                have_pend = false;                                                                          \
            }                                                                                               \
            if (im) {                                                                                       \
                pend_a = xa;                                                                                \
                pend_end = yb;                                                                              \
                have_pend = true;                                                                           \
            } else {                                                                                        \
                if (!aero_tok_spans_push(out, a + (have_pend ? pend_a : xa), a + yb)) goto nomem;           \
                have_pend = false;                                                                          \
            }                                                                                               \
            break;                                                                                          \
        case AERO_SPLIT_CONTIGUOUS:                                                                         \
            if (im && last_was_match && out->n && last_out_end == a + xa) out->v[2 * out->n - 1] = a + yb;  \
            else if (!aero_tok_spans_push(out, a + xa, a + yb)) goto nomem;                                 \
            break;                                                                                          \
        }                                                                                                   \
        last_was_match = im;                                                                                \
        last_out_end = a + yb;                                                                              \
    } while (0)

    while (off <= n) {
        size_t ms = 0, me = 0;
        if (r->fast) {
            // the hand-written matcher: a match starts at every character except invalid bytes
            size_t p = off;
            while (p < n && !(me = aero_tok_fast_match(r->fast, (const unsigned char *)s, n, p))) p++;
            if (p >= n) break;
            ms = p;
        } else {
            int rc = next_match(r->re, m, s, n, off, &ms, &me, err);
            if (rc < 0) return err->code;
            if (rc == 0) break;
        }
        if (me == ms) { // empty match: a boundary (as in Hugging Face's Split), then step over one character
            if (ms >= n) break;
            EMIT(pos, ms, false);
            if (ms > pos) pos = ms;
            uint32_t cp;
            off = ms + (size_t)aero_utf8_decode((const unsigned char *)s + ms, n - ms, &cp);
            continue;
        }
        EMIT(pos, ms, false);
        EMIT(ms, me, true);
        pos = me;
        off = me;
    }
    EMIT(pos, n, false);
    if (have_pend && !aero_tok_spans_push(out, a + pend_a, a + pend_end)) goto nomem;
#undef EMIT
    return AERO_OK;
nomem:
    return aero_fail(err, AERO_ERR_NOMEM, "tokenizer: out of memory splitting text");
}

// Rewrites the spans for Metaspace (' ' -> U+2581, prefix, split before U+2581) or ByteLevel's prefix space,
// building a new text in nb.
static aero_status rewrite_spans(const aero_pre_rule *r, const char *text, const aero_tok_spans *in, bool first_section,
                                 aero_tok_buf *nb, aero_tok_spans *out, aero_error *err) {
    static const char META[] = "\xE2\x96\x81";
    for (size_t k = 0; k < in->n; k++) {
        size_t a = in->v[2 * k], b = in->v[2 * k + 1];
        size_t start = nb->len;
        bool ok = true;
        if (r->kind == AERO_PRE_PREFIX_SPACE) {
            if (b > a && text[a] != ' ') ok = aero_buf_append(nb, " ", 1);
            ok = ok && aero_buf_append(nb, text + a, b - a);
            if (!ok || !aero_tok_spans_push(out, start, nb->len)) goto nomem;
            continue;
        }
        bool prepend = r->meta_prepend_always || (r->meta_prepend_first && first_section && a == 0);
        if (prepend && !(b - a >= 3 && memcmp(text + a, META, 3) == 0) && !(b > a && text[a] == ' '))
            ok = aero_buf_append(nb, META, 3);
        for (size_t i = a; ok && i < b; i++)
            ok = text[i] == ' ' ? aero_buf_append(nb, META, 3) : aero_buf_append(nb, text + i, 1);
        if (!ok) goto nomem;
        if (!r->meta_split) {
            if (nb->len > start && !aero_tok_spans_push(out, start, nb->len)) goto nomem;
            continue;
        }
        size_t piece = start;
        for (size_t i = start; i + 3 <= nb->len; i++) {
            if (i > piece && memcmp(nb->p + i, META, 3) == 0) {
                if (!aero_tok_spans_push(out, piece, i)) goto nomem;
                piece = i;
            }
        }
        if (nb->len > piece && !aero_tok_spans_push(out, piece, nb->len)) goto nomem;
    }
    return AERO_OK;
nomem:
    return aero_fail(err, AERO_ERR_NOMEM, "tokenizer: out of memory in the pre-tokenizer");
}

// Runs every rule over the current pieces (see tok_internal.h).
aero_status aero_tok_pretokenize(const aero_tokenizer *t, const char **text, size_t *n, aero_tok_buf *buf,
                                 bool first_section, aero_tok_spans *out, aero_error *err) {
    out->n = 0;
    if (*n == 0) return AERO_OK;
    if (!aero_tok_spans_push(out, 0, *n)) return aero_fail(err, AERO_ERR_NOMEM, "tokenizer: out of memory");
    if (t->n_pre == 0) return AERO_OK;
    aero_status st = AERO_OK;
    aero_tok_spans tmp = {0};
    aero_tok_buf nb = {0};
    matcher m = {0};
    m.md = pcre2_match_data_create(1, NULL);
    if (!m.md) {
        st = aero_fail(err, AERO_ERR_NOMEM, "tokenizer: out of memory");
        goto done;
    }
    for (int k = 0; k < t->n_pre; k++) {
        const aero_pre_rule *r = &t->pre[k];
        tmp.n = 0;
        if (r->kind == AERO_PRE_SPLIT) {
            size_t jsz = 0;
            m.jit = pcre2_pattern_info(r->re, PCRE2_INFO_JITSIZE, &jsz) == 0 && jsz > 0;
            for (size_t i = 0; i < out->n; i++) {
                st = split_span(r, &m, *text, out->v[2 * i], out->v[2 * i + 1], &tmp, err);
                if (st != AERO_OK) goto done;
            }
        } else {
            nb.len = 0;
            st = rewrite_spans(r, *text, out, first_section, &nb, &tmp, err);
            if (st != AERO_OK) goto done;
            // the new text replaces the old one; keep it in buf
            aero_tok_buf old = *buf;
            *buf = nb;
            nb = old;
            *text = buf->p ? buf->p : "";
            *n = buf->len;
        }
        aero_tok_spans sw = *out;
        *out = tmp;
        tmp = sw;
    }
done:
    free(tmp.v);
    free(nb.p);
    pcre2_match_data_free(m.md);
    pcre2_match_context_free(m.mc);
    pcre2_jit_stack_free(m.js);
    return st;
}

// The tokenizer.ggml.pre name of a single-split pre-tokenizer whose regex is pattern (for writing a GGUF from a
// tokenizer.json): the first alias of the matching entry; false when no entry is that one split.
bool aero_tok_pre_for_regex(const char *pattern, char *name, size_t cap) {
    for (size_t d = 0; d < sizeof PRE_DEFS / sizeof PRE_DEFS[0]; d++) {
        const pre_def *pd = &PRE_DEFS[d];
        if (!pd->res[0] || pd->res[1] || strcmp(pd->res[0], pattern)) continue;
        size_t l = strcspn(pd->names, "|");
        if (l >= cap) return false;
        memcpy(name, pd->names, l);
        name[l] = 0;
        return true;
    }
    return false;
}
