// The GBNF parser: recursive descent straight into grammar rules. A postfix operator turns its item into a
// chain of rules (as the JSON-schema compiler does for bounds); a group becomes a rule of its own.
#include "gbnf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NAMES 4096
#define MAX_BOUND 10000
#define MAX_NEST 64

typedef struct {
    char name[64];
    int rule;
    bool defined;
} gname;

typedef struct {
    const char *s;
    size_t n, i;
    aero_grammar *g;
    aero_error *err;
    aero_status st;
    gname *names;
    int n_names;
    int any_multi; // rule: a UTF-8 character of 2-4 bytes, -1 until needed
    int depth;
} gp;

typedef struct {
    aero_gel *e;
    int n, cap;
} gseq;

// Records the first error with the line it is on.
static void perr(gp *p, const char *what) {
    if (p->st) return;
    int line = 1;
    for (size_t k = 0; k < p->i && k < p->n; k++) line += p->s[k] == '\n';
    p->st = aero_fail(p->err, AERO_ERR_INVALID, "grammar, line %d: %s", line, what);
}

// Grows a sequence by one element.
static void push(gp *p, gseq *q, aero_gel e) {
    if (p->st) return;
    if (q->n == q->cap) {
        int nc = q->cap ? q->cap * 2 : 16;
        aero_gel *ne = realloc(q->e, sizeof *ne * (size_t)nc);
        if (!ne) {
            p->st = aero_fail(p->err, AERO_ERR_NOMEM, "out of memory parsing the grammar");
            return;
        }
        q->e = ne;
        q->cap = nc;
    }
    q->e[q->n++] = e;
}

// A new rule (errors recorded).
static int rule(gp *p) {
    int r = p->st ? -1 : aero_grammar_add_rule(p->g);
    if (r < 0) perr(p, "the grammar is too large");
    return r;
}

// Adds an alternative of n elements.
static void add(gp *p, int r, const aero_gel *e, int n) {
    if (!p->st && !aero_grammar_add_alt(p->g, r, e, n)) perr(p, "the grammar is too large");
}

static aero_gel cls(gp *p, const aero_cset *c) {
    int i = aero_grammar_cset(p->g, c);
    if (i < 0) perr(p, "the grammar is too large");
    return (aero_gel){AERO_GEL_CHARS, i < 0 ? 0 : i};
}

static aero_gel byte(gp *p, unsigned b) {
    aero_cset c = {{0}};
    aero_cset_add(&c, b);
    return cls(p, &c);
}

// Whitespace and # comments between tokens.
static void skip(gp *p) {
    while (p->i < p->n) {
        char c = p->s[p->i];
        if (c == '#') {
            while (p->i < p->n && p->s[p->i] != '\n') p->i++;
        } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            p->i++;
        } else {
            break;
        }
    }
}

static bool name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

// Length of the name at i (0: none).
static size_t name_len(const gp *p, size_t i) {
    size_t k = i;
    while (k < p->n && name_char(p->s[k])) k++;
    return k - i;
}

// True when a rule definition (`name ::=`) starts at the current position.
static bool at_rule_start(gp *p) {
    size_t k = name_len(p, p->i);
    if (!k) return false;
    size_t j = p->i + k;
    while (j < p->n && (p->s[j] == ' ' || p->s[j] == '\t')) j++;
    return j + 3 <= p->n && !memcmp(p->s + j, "::=", 3);
}

// The rule of a name, created on first use (a reference may come before the definition).
static int name_rule(gp *p, const char *s, size_t len) {
    if (len >= sizeof p->names[0].name) {
        perr(p, "a rule name is longer than 63 characters");
        return -1;
    }
    for (int k = 0; k < p->n_names; k++)
        if (strlen(p->names[k].name) == len && !memcmp(p->names[k].name, s, len)) return p->names[k].rule;
    if (p->n_names == MAX_NAMES) {
        perr(p, "too many rules");
        return -1;
    }
    gname *g = &p->names[p->n_names++];
    memcpy(g->name, s, len);
    g->name[len] = 0;
    g->rule = rule(p);
    g->defined = false;
    return g->rule;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// One character of a literal or class (escapes decoded) as a code point; -1 on error.
static long read_char(gp *p) {
    if (p->i >= p->n) return -1;
    unsigned char c = (unsigned char)p->s[p->i++];
    if (c != '\\') {
        if (c < 0x80) return c;
        // a UTF-8 character written as is
        int extra = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc0 ? 1 : -1;
        if (extra < 0 || p->i + (size_t)extra > p->n) return -1;
        long cp = c & (0x3f >> extra);
        for (int k = 0; k < extra; k++) cp = (cp << 6) | ((unsigned char)p->s[p->i++] & 0x3f);
        return cp;
    }
    if (p->i >= p->n) return -1;
    char e = p->s[p->i++];
    int digits = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
    if (digits) {
        long cp = 0;
        for (int k = 0; k < digits; k++) {
            int h = p->i < p->n ? hexval(p->s[p->i++]) : -1;
            if (h < 0) return -1;
            cp = cp * 16 + h;
        }
        return cp <= 0x10ffff ? cp : -1;
    }
    switch (e) {
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    case '\\': return '\\';
    case '"': return '"';
    case '[': return '[';
    case ']': return ']';
    case '-': return '-';
    case '^': return '^';
    default: return -1;
    }
}

// UTF-8 bytes of a code point; returns their count.
static int utf8_put(long cp, unsigned char *b) {
    if (cp < 0x80) return b[0] = (unsigned char)cp, 1;
    if (cp < 0x800) return b[0] = (unsigned char)(0xc0 | cp >> 6), b[1] = (unsigned char)(0x80 | (cp & 0x3f)), 2;
    if (cp < 0x10000) {
        b[0] = (unsigned char)(0xe0 | cp >> 12);
        b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        b[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    b[0] = (unsigned char)(0xf0 | cp >> 18);
    b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    b[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

// Any character of two to four bytes, as UTF-8 allows.
static int any_multi(gp *p) {
    if (p->any_multi >= 0) return p->any_multi;
    int r = p->any_multi = rule(p);
    aero_cset k = {{0}}, a = {{0}}, b = {{0}}, c = {{0}}, d = {{0}}, e = {{0}}, f = {{0}}, g = {{0}}, h = {{0}};
    aero_cset_range(&k, 0x80, 0xbf);
    aero_cset_range(&a, 0xc2, 0xdf);
    aero_cset_range(&b, 0xa0, 0xbf);
    aero_cset_range(&c, 0xe1, 0xec);
    aero_cset_range(&c, 0xee, 0xef);
    aero_cset_range(&d, 0x80, 0x9f);
    aero_cset_range(&e, 0x90, 0xbf);
    aero_cset_range(&f, 0xf1, 0xf3);
    aero_cset_range(&g, 0x80, 0x8f);
    aero_cset_add(&h, 0xe0);
    aero_gel K = cls(p, &k);
    add(p, r, (aero_gel[]){cls(p, &a), K}, 2);
    add(p, r, (aero_gel[]){cls(p, &h), cls(p, &b), K}, 3);
    add(p, r, (aero_gel[]){cls(p, &c), K, K}, 3);
    add(p, r, (aero_gel[]){byte(p, 0xed), cls(p, &d), K}, 3);
    add(p, r, (aero_gel[]){byte(p, 0xf0), cls(p, &e), K, K}, 4);
    add(p, r, (aero_gel[]){cls(p, &f), K, K, K}, 4);
    add(p, r, (aero_gel[]){byte(p, 0xf4), cls(p, &g), K, K}, 4);
    return p->st ? -1 : r;
}

// "literal": its bytes as one element (a byte) or a rule (several).
static aero_gel literal(gp *p) {
    p->i++; // the opening quote
    gseq q = {0};
    while (!p->st) {
        if (p->i >= p->n) {
            perr(p, "a literal is not closed");
            break;
        }
        if (p->s[p->i] == '"') {
            p->i++;
            break;
        }
        long cp = read_char(p);
        if (cp < 0) {
            perr(p, "bad character or escape in a literal");
            break;
        }
        unsigned char b[4];
        int nb = utf8_put(cp, b);
        for (int k = 0; k < nb; k++) push(p, &q, byte(p, b[k]));
    }
    aero_gel out = {AERO_GEL_RULE, -1};
    if (!p->st) {
        if (q.n == 1) {
            out = q.e[0];
        } else {
            int r = rule(p);
            add(p, r, q.e, q.n);
            out = (aero_gel){AERO_GEL_RULE, r};
        }
    }
    free(q.e);
    return out;
}

// [class] or [^class]: ASCII members; a negated class also admits every non-ASCII character.
static aero_gel char_class(gp *p) {
    p->i++; // '['
    bool neg = p->i < p->n && p->s[p->i] == '^';
    if (neg) p->i++;
    aero_cset c = {{0}};
    while (!p->st) {
        if (p->i >= p->n) {
            perr(p, "a character class is not closed");
            break;
        }
        if (p->s[p->i] == ']') {
            p->i++;
            break;
        }
        long lo = read_char(p), hi = lo;
        if (lo >= 0 && p->i + 1 < p->n && p->s[p->i] == '-' && p->s[p->i + 1] != ']') {
            p->i++;
            hi = read_char(p);
        }
        if (lo < 0 || hi < 0 || hi < lo) {
            perr(p, "bad character, escape or range in a character class");
            break;
        }
        if (hi > 0x7f) {
            perr(p, "non-ASCII characters in a character class are not supported (write them as alternatives)");
            break;
        }
        aero_cset_range(&c, (unsigned)lo, (unsigned)hi);
    }
    if (p->st) return (aero_gel){AERO_GEL_RULE, -1};
    if (!neg) return cls(p, &c);
    aero_cset inv = {{0}};
    for (unsigned b = 0; b < 0x80; b++)
        if (!aero_cset_has(&c, b)) aero_cset_add(&inv, b);
    int r = rule(p);
    add(p, r, (aero_gel[]){cls(p, &inv)}, 1);
    add(p, r, (aero_gel[]){{AERO_GEL_RULE, any_multi(p)}}, 1);
    return (aero_gel){AERO_GEL_RULE, r};
}

// elem repeated min..max times (max < 0: no limit), as a chain of rules.
static aero_gel repeat(gp *p, aero_gel elem, long min, long max) {
    int tail = rule(p);
    if (max < 0) {
        add(p, tail, (aero_gel[]){elem, {AERO_GEL_RULE, tail}}, 2);
        add(p, tail, NULL, 0);
    } else {
        add(p, tail, NULL, 0);
        for (long k = 1; k <= max - min && !p->st; k++) {
            int r = rule(p);
            add(p, r, (aero_gel[]){elem, {AERO_GEL_RULE, tail}}, 2);
            add(p, r, NULL, 0);
            tail = r;
        }
    }
    for (long k = 0; k < min && !p->st; k++) {
        int r = rule(p);
        add(p, r, (aero_gel[]){elem, {AERO_GEL_RULE, tail}}, 2);
        tail = r;
    }
    return (aero_gel){AERO_GEL_RULE, tail};
}

static long read_int(gp *p) {
    long v = -1;
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9' && v < MAX_BOUND * 10L)
        v = (v < 0 ? 0 : v * 10) + (p->s[p->i++] - '0');
    return v;
}

static void alternatives(gp *p, int r);

// One item with its postfix operator.
static aero_gel item(gp *p) {
    aero_gel e = {AERO_GEL_RULE, -1};
    char c = p->s[p->i];
    if (c == '"') {
        e = literal(p);
    } else if (c == '[') {
        e = char_class(p);
    } else if (c == '.') {
        p->i++;
        aero_cset a = {{0}};
        aero_cset_range(&a, 0, 0x7f);
        int r = rule(p);
        add(p, r, (aero_gel[]){cls(p, &a)}, 1);
        add(p, r, (aero_gel[]){{AERO_GEL_RULE, any_multi(p)}}, 1);
        e = (aero_gel){AERO_GEL_RULE, r};
    } else if (c == '(') {
        p->i++;
        if (++p->depth > MAX_NEST) {
            perr(p, "groups nest too deeply");
            return e;
        }
        int r = rule(p);
        alternatives(p, r);
        p->depth--;
        skip(p);
        if (p->i >= p->n || p->s[p->i] != ')') perr(p, "a group is not closed with ')'");
        else p->i++;
        e = (aero_gel){AERO_GEL_RULE, r};
    } else if (name_len(p, p->i)) {
        size_t k = name_len(p, p->i);
        e = (aero_gel){AERO_GEL_RULE, name_rule(p, p->s + p->i, k)};
        p->i += k;
    } else {
        perr(p, "expected a literal, a class, a rule name or a group");
        return e;
    }
    if (p->st) return e;
    for (;;) { // postfix operators (several may follow each other)
        if (p->i >= p->n) break;
        char o = p->s[p->i];
        long min, max;
        if (o == '*') min = 0, max = -1;
        else if (o == '+') min = 1, max = -1;
        else if (o == '?') min = 0, max = 1;
        else if (o == '{') {
            p->i++;
            min = read_int(p);
            max = min;
            if (p->i < p->n && p->s[p->i] == ',') {
                p->i++;
                max = p->i < p->n && p->s[p->i] == '}' ? -1 : read_int(p);
            }
            if (min < 0 || p->i >= p->n || p->s[p->i] != '}' || (max >= 0 && max < min) || min > MAX_BOUND ||
                max > MAX_BOUND) {
                perr(p, "bad repetition {m,n} (bounds up to 10000)");
                return e;
            }
        } else {
            break;
        }
        p->i++;
        e = repeat(p, e, min, max);
    }
    return e;
}

// A sequence up to '|', ')', the next rule or the end, added to rule r as one alternative.
static void sequence(gp *p, int r) {
    gseq q = {0};
    for (;;) {
        skip(p);
        if (p->st || p->i >= p->n || p->s[p->i] == '|' || p->s[p->i] == ')' || at_rule_start(p)) break;
        push(p, &q, item(p));
    }
    if (!p->st) add(p, r, q.e, q.n);
    free(q.e);
}

static void alternatives(gp *p, int r) {
    sequence(p, r);
    for (;;) {
        skip(p);
        if (p->st || p->i >= p->n || p->s[p->i] != '|') break;
        p->i++;
        sequence(p, r);
    }
}

aero_status aero_gbnf_compile(aero_grammar **out, const char *text, size_t len, aero_error *err) {
    *out = NULL;
    gp p = {.s = text, .n = len, .err = err, .any_multi = -1};
    p.g = aero_grammar_new();
    p.names = calloc(MAX_NAMES, sizeof *p.names);
    if (!p.g || !p.names) {
        p.st = aero_fail(err, AERO_ERR_NOMEM, "out of memory parsing the grammar");
        goto done;
    }
    for (;;) {
        skip(&p);
        if (p.st || p.i >= p.n) break;
        if (!at_rule_start(&p)) {
            perr(&p, "expected a rule definition 'name ::= ...'");
            break;
        }
        size_t k = name_len(&p, p.i);
        int r = name_rule(&p, p.s + p.i, k);
        for (int j = 0; j < p.n_names; j++)
            if (p.names[j].rule == r) {
                if (p.names[j].defined) perr(&p, "a rule is defined twice");
                p.names[j].defined = true;
            }
        p.i += k;
        skip(&p);
        p.i += 3; // ::=
        alternatives(&p, r);
    }
    int root = -1;
    for (int j = 0; j < p.n_names && !p.st; j++) {
        if (!p.names[j].defined) {
            char msg[128];
            snprintf(msg, sizeof msg, "rule '%s' is used but not defined", p.names[j].name);
            p.st = aero_fail(err, AERO_ERR_INVALID, "grammar: %s", msg);
        }
        if (!strcmp(p.names[j].name, "root")) root = p.names[j].rule;
    }
    if (!p.st && root < 0) p.st = aero_fail(err, AERO_ERR_INVALID, "grammar: no 'root' rule");
    if (!p.st) {
        aero_grammar_set_root(p.g, root);
        p.st = aero_grammar_check(p.g, err);
    }
done:
    free(p.names);
    if (p.st) {
        aero_grammar_free(p.g);
        return p.st;
    }
    *out = p.g;
    return AERO_OK;
}
