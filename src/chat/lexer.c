// Template lexer: splits a chat template into text and tag tokens with exactly jinja2's whitespace rules as
// transformers configures them (trim_blocks, lstrip_blocks, `-` and `+` markers, newline normalisation),
// since one stray newline changes the prompt a model sees. Also the parse-time arena.
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja.h"

// ---------------------------------------------------------------- arena

struct jarena_chunk {
    jarena_chunk *next;
    size_t used, cap;
    _Alignas(16) char data[];
};

// Bump allocation for everything the parsed template keeps; freed at once with the template.
void *jarena_alloc(jarena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    jarena_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        c = malloc(sizeof *c + cap);
        if (!c) jparse_fail(a, 0, "out of memory");
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

// NUL-terminated copy owned by the arena.
char *jarena_strndup(jarena *a, const char *s, size_t n) {
    char *p = jarena_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

// Frees every chunk of the arena at once (the template's whole AST).
void jarena_free(jarena *a) {
    jarena_chunk *c = a->head;
    while (c) {
        jarena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
}

// Formats "line N: ..." into the caller's error and unwinds to the parse entry point.
_Noreturn void jparse_fail(jarena *a, int line, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (line > 0) aero_fail(a->err, AERO_ERR_FORMAT, "chat template line %d: %s", line, msg);
    else aero_fail(a->err, AERO_ERR_FORMAT, "chat template: %s", msg);
    longjmp(*a->jb, 1);
}

// ---------------------------------------------------------------- lexer

typedef struct {
    jarena *a;
    const char *s;
    size_t n, pos;
    int line;
    bool line_starting;
    jtoks *out;
} lexer;

static const char *op_names[] = {
    [OP_NONE] = "?",      [OP_ADD] = "+",       [OP_SUB] = "-",    [OP_MUL] = "*",        [OP_DIV] = "/",
    [OP_FLOORDIV] = "//", [OP_MOD] = "%",       [OP_POW] = "**",   [OP_TILDE] = "~",      [OP_LBRACKET] = "[",
    [OP_RBRACKET] = "]",  [OP_LPAREN] = "(",    [OP_RPAREN] = ")", [OP_LBRACE] = "{",     [OP_RBRACE] = "}",
    [OP_EQ] = "==",       [OP_NE] = "!=",       [OP_GT] = ">",     [OP_GTEQ] = ">=",      [OP_LT] = "<",
    [OP_LTEQ] = "<=",     [OP_ASSIGN] = "=",    [OP_DOT] = ".",    [OP_COLON] = ":",      [OP_PIPE] = "|",
    [OP_COMMA] = ",",     [OP_SEMICOLON] = ";", [OP_IN] = "in",    [OP_NOTIN] = "not in", [OP_AND] = "and",
    [OP_OR] = "or",       [OP_NOT] = "not",     [OP_NEG] = "-",    [OP_POS] = "+",
};

const char *jop_str(jop op) { return op < sizeof op_names / sizeof op_names[0] && op_names[op] ? op_names[op] : "?"; }

// Appends a zeroed token, growing the arena-held array.
static jtok *push(lexer *L, jtok_kind kind, int line) {
    jtoks *t = L->out;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        jtok *v = jarena_alloc(L->a, cap * sizeof *v);
        if (t->n) memcpy(v, t->v, t->n * sizeof *v);
        t->v = v;
        t->cap = cap;
    }
    jtok *k = &t->v[t->n++];
    memset(k, 0, sizeof *k);
    k->kind = kind;
    k->line = line;
    return k;
}

// Newlines in a span, to keep line numbers for error messages.
static int count_nl(const char *s, size_t n) {
    int k = 0;
    for (size_t i = 0; i < n; i++) k += s[i] == '\n';
    return k;
}

// Length of s without its trailing Python whitespace (str.rstrip()).
static size_t rstrip_len(const char *s, size_t n) {
    size_t i = 0, keep = 0;
    while (i < n) {
        uint32_t cp = jutf8_next(s, n, &i);
        if (!jpy_isspace(cp)) keep = i;
    }
    return keep;
}

// Bytes of Python whitespace at s[0..n).
static size_t ws_prefix(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        if (!jpy_isspace(jutf8_next(s, n, &j))) break;
        i = j;
    }
    return i;
}

// Emits the text before a tag after applying `-` (strip all whitespace) or lstrip_blocks (strip the indent
// of a line holding only the tag), as jinja2's OptionalLStrip rule does.
static void emit_text(lexer *L, const char *text, size_t len, char sign, bool is_var) {
    int line = L->line;
    size_t keep = len;
    if (sign == '-') {
        keep = rstrip_len(text, len);
    } else if (sign != '+' && !is_var) {
        size_t l_pos = len;
        while (l_pos > 0 && text[l_pos - 1] != '\n') l_pos--;
        if ((l_pos > 0 || L->line_starting) && l_pos < len && ws_prefix(text + l_pos, len - l_pos) == len - l_pos)
            keep = l_pos;
    }
    if (keep > 0) {
        jtok *t = push(L, TK_TEXT, line);
        t->s = text;
        t->len = keep;
    }
    L->line += count_nl(text, len);
}

// Whether the source has lit at position at.
static bool starts(const lexer *L, size_t at, const char *lit) {
    size_t k = strlen(lit);
    return at + k <= L->n && memcmp(L->s + at, lit, k) == 0;
}

static size_t skip_ws(const lexer *L, size_t at) { return at + ws_prefix(L->s + at, L->n - at); }

// Consumes a block end ("+%}", "-%}" + whitespace, "%}" + one newline) at L->pos if present.
static bool block_end(lexer *L) {
    size_t p = L->pos;
    if (starts(L, p, "+%}")) {
        L->pos = p + 3;
    } else if (starts(L, p, "-%}")) {
        size_t e = skip_ws(L, p + 3);
        L->line += count_nl(L->s + p, e - p);
        L->pos = e;
    } else if (starts(L, p, "%}")) {
        L->pos = p + 2;
        if (L->pos < L->n && L->s[L->pos] == '\n') {
            L->pos++;
            L->line++;
        }
    } else {
        return false;
    }
    L->line_starting = L->pos > 0 && L->s[L->pos - 1] == '\n';
    return true;
}

// Consumes a variable end ("-}}" + whitespace, or "}}") at L->pos if present.
static bool var_end(lexer *L) {
    size_t p = L->pos;
    if (starts(L, p, "-}}")) {
        size_t e = skip_ws(L, p + 3);
        L->line += count_nl(L->s + p, e - p);
        L->pos = e;
    } else if (starts(L, p, "}}")) {
        L->pos = p + 2;
    } else {
        return false;
    }
    L->line_starting = L->pos > 0 && L->s[L->pos - 1] == '\n';
    return true;
}

// Value of a hex digit, -1 when c is not one.
static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Unescapes a string literal the way jinja2 does (Python's unicode-escape): unknown escapes stay as written.
static void lex_string(lexer *L) {
    char q = L->s[L->pos];
    int line = L->line;
    size_t start = L->pos + 1, p = start;
    while (p < L->n && L->s[p] != q) {
        if (L->s[p] == '\\') p++;
        p++;
    }
    if (p >= L->n) jparse_fail(L->a, line, "unterminated string literal");
    size_t rawlen = p - start;
    char *out = jarena_alloc(L->a, rawlen + 1);
    size_t o = 0;
    const char *r = L->s + start;
    for (size_t i = 0; i < rawlen;) {
        char c = r[i];
        if (c != '\\') {
            out[o++] = c;
            i++;
            continue;
        }
        char e = r[i + 1];
        i += 2;
        switch (e) {
        case '\\': out[o++] = '\\'; break;
        case '\'': out[o++] = '\''; break;
        case '"': out[o++] = '"'; break;
        case 'a': out[o++] = '\a'; break;
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'v': out[o++] = '\v'; break;
        case '\n': break; // line continuation
        case 'x':
        case 'u':
        case 'U': {
            int digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            uint32_t cp = 0;
            for (int k = 0; k < digits; k++) {
                int h = i + k < rawlen ? hexval(r[i + k]) : -1;
                if (h < 0)
                    jparse_fail(L->a, line, "invalid \\%c escape in string literal (needs %d hex digits)", e, digits);
                cp = cp * 16 + (uint32_t)h;
            }
            i += (size_t)digits;
            if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                jparse_fail(L->a, line, "string literal escape \\%c%0*X is not a Unicode scalar value", e, digits, cp);
            // A \x or \u escape never produces more bytes than its own text (4+ chars -> <= 4 bytes).
            o += jutf8_put(out + o, cp);
            break;
        }
        case 'N': jparse_fail(L->a, line, "\\N{...} escapes in string literals are not supported");
        default:
            if (e >= '0' && e <= '7') {
                uint32_t cp = (uint32_t)(e - '0');
                for (int k = 0; k < 2 && i < rawlen && r[i] >= '0' && r[i] <= '7'; k++)
                    cp = cp * 8 + (uint32_t)(r[i++] - '0');
                o += jutf8_put(out + o, cp); // at most 0777 = 2 bytes for 2+ chars of text
            } else {
                out[o++] = '\\'; // Python keeps unknown escapes
                i--;
            }
        }
    }
    out[o] = 0;
    jtok *t = push(L, TK_STRING, line);
    t->s = out;
    t->len = o;
    L->line += count_nl(L->s + L->pos, p + 1 - L->pos);
    L->pos = p + 1;
}

static bool isdig(char c) { return c >= '0' && c <= '9'; }

// Digits with single underscores between them (Python numeric literal style); returns the end.
static size_t scan_digits(const lexer *L, size_t p, int (*ok)(char)) {
    size_t q = p;
    while (q < L->n && (ok(L->s[q]) || (L->s[q] == '_' && q + 1 < L->n && ok(L->s[q + 1]) && q > p))) q++;
    return q;
}

static int ok_dec(char c) { return isdig(c); }
static int ok_hex(char c) { return hexval(c) >= 0; }
static int ok_oct(char c) { return c >= '0' && c <= '7'; }
static int ok_bin(char c) { return c == '0' || c == '1'; }

// Integer (decimal, 0x, 0o, 0b, underscores) or float literal, as jinja2's integer_re/float_re.
static void lex_number(lexer *L) {
    size_t p = L->pos, q;
    char buf[128];
    bool after_dot = p > 0 && L->s[p - 1] == '.';
    if (L->s[p] == '0' && p + 2 < L->n && strchr("xXoObB", L->s[p + 1]) && L->s[p + 1]) {
        char k = (char)(L->s[p + 1] | 32);
        int (*ok)(char) = k == 'x' ? ok_hex : k == 'o' ? ok_oct : ok_bin;
        size_t s2 = p + 2;
        if (s2 < L->n && L->s[s2] == '_') s2++;
        q = scan_digits(L, s2, ok);
        if (q > s2) {
            uint64_t v = 0;
            int base = k == 'x' ? 16 : k == 'o' ? 8 : 2;
            for (size_t i = s2; i < q; i++) {
                if (L->s[i] == '_') continue;
                uint64_t d = (uint64_t)hexval(L->s[i]);
                if (v > (UINT64_MAX - d) / (uint64_t)base || v * (uint64_t)base + d > (uint64_t)INT64_MAX)
                    jparse_fail(L->a, L->line, "integer literal too large (64-bit limit)");
                v = v * (uint64_t)base + d;
            }
            jtok *t = push(L, TK_INT, L->line);
            t->i = (int64_t)v;
            L->pos = q;
            return;
        }
    }
    q = scan_digits(L, p, ok_dec);
    bool is_float = false;
    if (!after_dot) {
        if (q + 1 < L->n && L->s[q] == '.' && isdig(L->s[q + 1])) {
            q = scan_digits(L, q + 1, ok_dec);
            is_float = true;
        }
        if (q < L->n && (L->s[q] | 32) == 'e') {
            size_t e = q + 1;
            if (e < L->n && (L->s[e] == '+' || L->s[e] == '-')) e++;
            if (e < L->n && isdig(L->s[e])) {
                q = scan_digits(L, e, ok_dec);
                is_float = true;
            }
        }
    }
    size_t bl = 0;
    for (size_t i = p; i < q && bl + 1 < sizeof buf; i++)
        if (L->s[i] != '_') buf[bl++] = L->s[i];
    buf[bl] = 0;
    if (q - p >= sizeof buf - 1) jparse_fail(L->a, L->line, "numeric literal too long");
    if (is_float) {
        jtok *t = push(L, TK_FLOAT, L->line);
        t->f = strtod(buf, NULL);
    } else {
        errno = 0;
        long long v = strtoll(buf, NULL, 10);
        if (errno == ERANGE) jparse_fail(L->a, L->line, "integer literal %s too large (64-bit limit)", buf);
        jtok *t = push(L, TK_INT, L->line);
        t->i = v;
    }
    L->pos = q;
}

// Whether an identifier starts at p (ASCII letter, underscore, or a Unicode letter).
static bool name_start(lexer *L, size_t p) {
    unsigned char c = (unsigned char)L->s[p];
    if (c == '_' || ((c | 32) >= 'a' && (c | 32) <= 'z')) return true;
    if (c < 0x80) return false;
    size_t j = p;
    return jpy_isalpha(jutf8_next(L->s, L->n, &j));
}

// End of the identifier starting at p.
static size_t name_end(lexer *L, size_t p) {
    while (p < L->n) {
        unsigned char c = (unsigned char)L->s[p];
        if (c == '_' || isdig((char)c) || ((c | 32) >= 'a' && (c | 32) <= 'z')) {
            p++;
        } else if (c >= 0x80) {
            size_t j = p;
            if (!jpy_isalnum(jutf8_next(L->s, L->n, &j))) break;
            p = j;
        } else {
            break;
        }
    }
    return p;
}

static const struct {
    const char *s;
    jop op;
} ops[] = {
    {"//", OP_FLOORDIV}, {"**", OP_POW},      {"==", OP_EQ},    {"!=", OP_NE},    {">=", OP_GTEQ},  {"<=", OP_LTEQ},
    {"+", OP_ADD},       {"-", OP_SUB},       {"/", OP_DIV},    {"*", OP_MUL},    {"%", OP_MOD},    {"~", OP_TILDE},
    {"[", OP_LBRACKET},  {"]", OP_RBRACKET},  {"(", OP_LPAREN}, {")", OP_RPAREN}, {"{", OP_LBRACE}, {"}", OP_RBRACE},
    {">", OP_GT},        {"<", OP_LT},        {"=", OP_ASSIGN}, {".", OP_DOT},    {":", OP_COLON},  {"|", OP_PIPE},
    {",", OP_COMMA},     {";", OP_SEMICOLON},
};

// Lexes the inside of a {{ }} or {% %} tag up to and including its end marker.
static void lex_tag(lexer *L, bool is_block, int open_line) {
    char balance[256];
    int nb = 0;
    for (;;) {
        if (L->pos >= L->n)
            jparse_fail(L->a, open_line, "unclosed '%s' tag (expected '%s' before the end of the template)",
                        is_block ? "{%" : "{{", is_block ? "%}" : "}}");
        if (nb == 0 && (is_block ? block_end(L) : var_end(L))) {
            push(L, is_block ? TK_BLOCK_END : TK_VAR_END, L->line);
            return;
        }
        size_t ws = ws_prefix(L->s + L->pos, L->n - L->pos);
        if (ws) {
            L->line += count_nl(L->s + L->pos, ws);
            L->pos += ws;
            continue;
        }
        char c = L->s[L->pos];
        if (isdig(c)) {
            lex_number(L);
            continue;
        }
        if (name_start(L, L->pos)) {
            size_t e = name_end(L, L->pos);
            jtok *t = push(L, TK_NAME, L->line);
            t->s = jarena_strndup(L->a, L->s + L->pos, e - L->pos);
            t->len = e - L->pos;
            L->pos = e;
            continue;
        }
        if (c == '\'' || c == '"') {
            lex_string(L);
            continue;
        }
        size_t k;
        for (k = 0; k < sizeof ops / sizeof ops[0]; k++)
            if (starts(L, L->pos, ops[k].s)) break;
        if (k == sizeof ops / sizeof ops[0]) {
            size_t j = L->pos;
            uint32_t cp = jutf8_next(L->s, L->n, &j);
            jparse_fail(L->a, L->line, "unexpected character '%.*s' (U+%04X) inside a tag", (int)(j - L->pos),
                        L->s + L->pos, cp);
        }
        jop op = ops[k].op;
        if (op == OP_LPAREN || op == OP_LBRACKET || op == OP_LBRACE) {
            if (nb == (int)sizeof balance) jparse_fail(L->a, L->line, "brackets nested too deeply");
            balance[nb++] = op == OP_LPAREN ? ')' : op == OP_LBRACKET ? ']' : '}';
        } else if (op == OP_RPAREN || op == OP_RBRACKET || op == OP_RBRACE) {
            char want = op == OP_RPAREN ? ')' : op == OP_RBRACKET ? ']' : '}';
            if (nb == 0) jparse_fail(L->a, L->line, "unexpected '%c'", want);
            if (balance[nb - 1] != want)
                jparse_fail(L->a, L->line, "unexpected '%c', expected '%c'", want, balance[nb - 1]);
            nb--;
        }
        jtok *t = push(L, TK_OP, L->line);
        t->op = op;
        L->pos += strlen(ops[k].s);
    }
}

// Matches `{%[-+]? raw [-]?%}` at p; returns the end of the tag (0 when it is not a raw tag).
static size_t match_raw(lexer *L, size_t p, const char *word, char *sign_out, bool *end_trim) {
    size_t q = p + 2;
    char sign = 0;
    if (q < L->n && (L->s[q] == '-' || L->s[q] == '+')) sign = L->s[q++];
    q = skip_ws(L, q);
    size_t wl = strlen(word);
    if (!starts(L, q, word)) return 0;
    q += wl;
    if (q < L->n && (isdig(L->s[q]) || L->s[q] == '_' || ((L->s[q] | 32) >= 'a' && (L->s[q] | 32) <= 'z'))) return 0;
    q = skip_ws(L, q);
    *sign_out = sign;
    *end_trim = false;
    if (end_trim && starts(L, q, "+%}")) return q + 3;
    if (starts(L, q, "-%}")) {
        *end_trim = true;
        return skip_ws(L, q + 3);
    }
    if (starts(L, q, "%}")) return q + 2;
    return 0;
}

// Tokenizes a whole template; raises (longjmp) on malformed input with the line.
void jlex(jarena *a, const char *src, size_t len, jtoks *out) {
    // jinja2 turns \r\n and \r into \n everywhere and drops one trailing newline.
    char *s = jarena_alloc(a, len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            s[n++] = src[i];
        }
    }
    if (n > 0 && s[n - 1] == '\n') n--;
    s[n] = 0;
    lexer L = {.a = a, .s = s, .n = n, .pos = 0, .line = 1, .line_starting = true, .out = out};
    while (L.pos < L.n) {
        size_t p = L.pos;
        while (p + 1 < L.n && !(L.s[p] == '{' && (L.s[p + 1] == '{' || L.s[p + 1] == '%' || L.s[p + 1] == '#'))) p++;
        if (p + 1 >= L.n) {
            emit_text(&L, L.s + L.pos, L.n - L.pos, 0, true);
            break;
        }
        char kind = L.s[p + 1];
        char sign = p + 2 < L.n && (L.s[p + 2] == '-' || L.s[p + 2] == '+') ? L.s[p + 2] : 0;
        const char *text = L.s + L.pos;
        size_t tlen = p - L.pos;
        if (kind == '%') {
            char rsign;
            bool rtrim;
            size_t rend = match_raw(&L, p, "raw", &rsign, &rtrim);
            if (rend) {
                emit_text(&L, text, tlen, rsign, false);
                int open_line = L.line;
                L.line += count_nl(L.s + p, rend - p);
                // body runs to the first {% endraw %}
                size_t q = rend, e = 0;
                char esign = 0;
                bool etrim = false;
                for (; q + 1 < L.n; q++)
                    if (L.s[q] == '{' && L.s[q + 1] == '%' && (e = match_raw(&L, q, "endraw", &esign, &etrim))) break;
                if (!e) jparse_fail(a, open_line, "unclosed 'raw' block (expected '{%% endraw %%}')");
                L.line_starting = rend > 0 && L.s[rend - 1] == '\n';
                L.pos = rend;
                emit_text(&L, L.s + rend, q - rend, esign, false);
                L.line += count_nl(L.s + q, e - q);
                // "%}" of endraw takes one newline with trim_blocks; "+%}" does not
                if (!etrim && e >= 3 && L.s[e - 3] != '+' && e < L.n && L.s[e] == '\n') e++, L.line++;
                L.pos = e;
                L.line_starting = e > 0 && L.s[e - 1] == '\n';
                continue;
            }
        }
        emit_text(&L, text, tlen, sign, kind == '{');
        int open_line = L.line;
        L.pos = p + 2 + (sign ? 1 : 0);
        if (kind == '#') {
            size_t q = L.pos;
            while (q + 1 < L.n && !(L.s[q] == '#' && L.s[q + 1] == '}')) q++;
            if (q + 1 >= L.n) jparse_fail(a, open_line, "unclosed comment (expected '#}')");
            char csign = q > L.pos && (L.s[q - 1] == '-' || L.s[q - 1] == '+') ? L.s[q - 1] : 0;
            size_t e = q + 2;
            if (csign == '-') e = skip_ws(&L, e);
            else if (csign != '+' && e < L.n && L.s[e] == '\n') e++;
            L.line += count_nl(L.s + L.pos, e - L.pos);
            L.pos = e;
            L.line_starting = L.s[e - 1] == '\n';
            continue;
        }
        L.line_starting = false;
        push(&L, kind == '%' ? TK_BLOCK_BEGIN : TK_VAR_BEGIN, open_line);
        lex_tag(&L, kind == '%', open_line);
    }
    push(&L, TK_EOF, L.line);
}
