// Template parser: tokens to an AST with jinja2's grammar and operator precedence (filters and tests bind
// tighter than arithmetic, `~` between `+` and `*`, chained comparisons). Unknown tags, filters and tests are
// parse errors naming the construct and its line, as jinja2 reports them at compile time.
#include <string.h>

#include "jinja.h"

#define MAX_NESTING 200
#define MAX_AST_DEPTH 600

typedef struct {
    jarena *a;
    const jtoks *t;
    size_t i;
    int loop_depth;
    int depth;
    // innermost open block, for error messages about stray or missing end tags
    const char *open_name;
    int open_line;
} parser;

static const jtok *cur(parser *P) { return &P->t->v[P->i]; }
// The token k ahead (the EOF token past the end).
static const jtok *look(parser *P, size_t k) {
    size_t j = P->i + k;
    return j < P->t->n ? &P->t->v[j] : &P->t->v[P->t->n - 1];
}
// Consumes the current token (never past EOF).
static const jtok *advance(parser *P) {
    const jtok *t = cur(P);
    if (P->i + 1 < P->t->n) P->i++;
    return t;
}
static bool is_op(parser *P, jop op) { return cur(P)->kind == TK_OP && cur(P)->op == op; }
static bool tok_is_name(const jtok *t, const char *name) { return t->kind == TK_NAME && !strcmp(t->s, name); }
static bool is_name(parser *P, const char *name) { return tok_is_name(cur(P), name); }

// Describes a token for error messages ("'}}'", "name 'foo'", "end of template").
static const char *describe(parser *P, const jtok *t, char *buf, size_t cap) {
    switch (t->kind) {
    case TK_EOF: return "end of template";
    case TK_TEXT: return "template text";
    case TK_VAR_BEGIN: return "'{{'";
    case TK_VAR_END: return "'}}'";
    case TK_BLOCK_BEGIN: return "'{%'";
    case TK_BLOCK_END: return "'%}'";
    case TK_NAME: snprintf(buf, cap, "'%.60s'", t->s); return buf;
    case TK_STRING: return "string literal";
    case TK_INT:
    case TK_FLOAT: return "number";
    case TK_OP: snprintf(buf, cap, "'%s'", jop_str(t->op)); return buf;
    }
    (void)P;
    return "token";
}

// "expected X, got Y" at the current token's line.
_Noreturn static void fail_unexpected(parser *P, const char *expected) {
    char buf[96];
    const jtok *t = cur(P);
    if (expected) jparse_fail(P->a, t->line, "expected %s, got %s", expected, describe(P, t, buf, sizeof buf));
    jparse_fail(P->a, t->line, "unexpected %s", describe(P, t, buf, sizeof buf));
}

// Consumes an operator token or fails naming it.
static void expect_op(parser *P, jop op) {
    if (!is_op(P, op)) {
        char want[16];
        snprintf(want, sizeof want, "'%s'", jop_str(op));
        fail_unexpected(P, want);
    }
    advance(P);
}

// Consumes a name token or fails naming what was wanted.
static const char *expect_name(parser *P, const char *what) {
    if (cur(P)->kind != TK_NAME) fail_unexpected(P, what);
    return advance(P)->s;
}

// Consumes '%}' or fails naming the tag it should end.
static void expect_block_end(parser *P, const char *tag) {
    if (cur(P)->kind != TK_BLOCK_END) {
        char buf[96], want[64];
        snprintf(want, sizeof want, "'%%}' to end the '%s' tag", tag);
        jparse_fail(P->a, cur(P)->line, "expected %s, got %s", want, describe(P, cur(P), buf, sizeof buf));
    }
    advance(P);
}

// A zeroed AST node in the arena.
static jnode *mk(parser *P, jnode_kind kind, int line) {
    jnode *n = jarena_alloc(P->a, sizeof *n);
    n->kind = kind;
    n->line = line;
    return n;
}

// Appends to a node list held in the arena.
void jnodes_push(jarena *a, jnodes *l, jnode *n) {
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 4;
        jnode **v = jarena_alloc(a, (size_t)cap * sizeof *v);
        if (l->n) memcpy(v, l->v, (size_t)l->n * sizeof *v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = n;
}

// Bounds recursion so hostile nesting is an error, not a stack overflow.
static void enter(parser *P) {
    if (++P->depth > MAX_NESTING)
        jparse_fail(P->a, cur(P)->line, "expression or blocks nested too deeply (limit %d)", MAX_NESTING);
}
static void leave(parser *P) { P->depth--; }

static jnode *parse_expression(parser *P, bool with_condexpr);
static jnode *parse_tuple(parser *P, bool simplified, bool with_condexpr, const char *extra_end, bool explicit_parens);
static jnode *parse_unary(parser *P, bool with_filter);
static jnode *parse_primary(parser *P);
static jnode *parse_postfix(parser *P, jnode *node);
static jnode *parse_filter_expr(parser *P, jnode *node);

// ---------------------------------------------------------------- expressions

static jnode *parse_condexpr(parser *P) {
    int line = cur(P)->line;
    jnode *expr1 = parse_expression(P, false);
    while (is_name(P, "if")) {
        advance(P);
        jnode *n = mk(P, E_COND, line);
        n->a = parse_expression(P, false); // test
        n->b = expr1;
        if (is_name(P, "else")) {
            advance(P);
            enter(P);
            n->c = parse_condexpr(P);
            leave(P);
        }
        expr1 = n;
    }
    return expr1;
}

static jnode *parse_not(parser *P);
static jnode *parse_compare(parser *P);

// `and` chains (tighter than `or`).
static jnode *parse_and(parser *P) {
    int line = cur(P)->line;
    jnode *left = parse_not(P);
    while (is_name(P, "and")) {
        advance(P);
        jnode *n = mk(P, E_AND, line);
        n->a = left;
        n->b = parse_not(P);
        left = n;
    }
    return left;
}

// `or` chains.
static jnode *parse_or(parser *P) {
    int line = cur(P)->line;
    jnode *left = parse_and(P);
    while (is_name(P, "or")) {
        advance(P);
        jnode *n = mk(P, E_OR, line);
        n->a = left;
        n->b = parse_and(P);
        left = n;
    }
    return left;
}

// `not` binds looser than comparisons: `not a == b` is `not (a == b)`.
static jnode *parse_not(parser *P) {
    if (is_name(P, "not")) {
        int line = advance(P)->line;
        enter(P);
        jnode *n = mk(P, E_NOT, line);
        n->a = parse_not(P);
        leave(P);
        return n;
    }
    return parse_compare(P);
}

static jnode *parse_math1(parser *P);

// Comparison chains (a < b < c), `in` and `not in`.
static jnode *parse_compare(parser *P) {
    int line = cur(P)->line;
    jnode *expr = parse_math1(P);
    jnode *cmp = NULL;
    for (;;) {
        jop op = OP_NONE;
        const jtok *t = cur(P);
        if (t->kind == TK_OP && (t->op == OP_EQ || t->op == OP_NE || t->op == OP_LT || t->op == OP_LTEQ ||
                                 t->op == OP_GT || t->op == OP_GTEQ)) {
            op = t->op;
            advance(P);
        } else if (is_name(P, "in")) {
            op = OP_IN;
            advance(P);
        } else if (is_name(P, "not") && tok_is_name(look(P, 1), "in")) {
            op = OP_NOTIN;
            advance(P);
            advance(P);
        } else {
            break;
        }
        if (!cmp) {
            cmp = mk(P, E_COMPARE, line);
            cmp->a = expr;
        }
        jnode *o = mk(P, E_CONST_INT, line);
        o->op = op;
        jnodes_push(P->a, &cmp->kids2, o);
        jnodes_push(P->a, &cmp->kids, parse_math1(P));
    }
    return cmp ? cmp : expr;
}

// A binary operator node (`~` gets its own kind: it stringifies).
static jnode *binary(parser *P, jop op, jnode *l, jnode *r, int line) {
    jnode *n = mk(P, op == OP_TILDE ? E_CONCAT : E_BINARY, line);
    n->op = op;
    n->a = l;
    n->b = r;
    return n;
}

static jnode *parse_math2(parser *P);
// `~`: tighter than + and -, looser than * and /, as in jinja2.
static jnode *parse_concat(parser *P) {
    int line = cur(P)->line;
    jnode *left = parse_math2(P);
    while (is_op(P, OP_TILDE)) {
        advance(P);
        left = binary(P, OP_TILDE, left, parse_math2(P), line);
    }
    return left;
}

// `+` and `-`.
static jnode *parse_math1(parser *P) {
    int line = cur(P)->line;
    jnode *left = parse_concat(P);
    while (is_op(P, OP_ADD) || is_op(P, OP_SUB)) {
        jop op = advance(P)->op;
        left = binary(P, op, left, parse_concat(P), line);
    }
    return left;
}

static jnode *parse_pow(parser *P);
// `*`, `/`, `//`, `%`.
static jnode *parse_math2(parser *P) {
    int line = cur(P)->line;
    jnode *left = parse_pow(P);
    while (is_op(P, OP_MUL) || is_op(P, OP_DIV) || is_op(P, OP_FLOORDIV) || is_op(P, OP_MOD)) {
        jop op = advance(P)->op;
        left = binary(P, op, left, parse_pow(P), line);
    }
    return left;
}

// `**`, left-associative as in jinja2.
static jnode *parse_pow(parser *P) {
    int line = cur(P)->line;
    jnode *left = parse_unary(P, true);
    while (is_op(P, OP_POW)) {
        advance(P);
        left = binary(P, OP_POW, left, parse_unary(P, true), line);
    }
    return left;
}

// Unary sign, then postfix, then filters/tests (so `-x|abs` is `(-x)|abs`).
static jnode *parse_unary(parser *P, bool with_filter) {
    enter(P);
    jnode *node;
    int line = cur(P)->line;
    if (is_op(P, OP_SUB) || is_op(P, OP_ADD)) {
        jop op = advance(P)->op == OP_SUB ? OP_NEG : OP_POS;
        node = mk(P, E_UNARY, line);
        node->op = op;
        node->a = parse_unary(P, false);
    } else {
        node = parse_primary(P);
    }
    node = parse_postfix(P, node);
    if (with_filter) node = parse_filter_expr(P, node);
    leave(P);
    return node;
}

// [a, b, ...] with an optional trailing comma.
static jnode *parse_list(parser *P) {
    int line = advance(P)->line; // [
    jnode *n = mk(P, E_LIST, line);
    while (!is_op(P, OP_RBRACKET)) {
        if (n->kids.n) {
            expect_op(P, OP_COMMA);
            if (is_op(P, OP_RBRACKET)) break;
        }
        jnodes_push(P->a, &n->kids, parse_expression(P, true));
    }
    expect_op(P, OP_RBRACKET);
    return n;
}

// {k: v, ...} with an optional trailing comma.
static jnode *parse_dict(parser *P) {
    int line = advance(P)->line; // {
    jnode *n = mk(P, E_DICT, line);
    while (!is_op(P, OP_RBRACE)) {
        if (n->kids.n) {
            expect_op(P, OP_COMMA);
            if (is_op(P, OP_RBRACE)) break;
        }
        jnodes_push(P->a, &n->kids, parse_expression(P, true));
        expect_op(P, OP_COLON);
        jnodes_push(P->a, &n->kids2, parse_expression(P, true));
    }
    expect_op(P, OP_RBRACE);
    return n;
}

// Literals, names, parenthesised expressions and tuples, lists, dicts.
static jnode *parse_primary(parser *P) {
    const jtok *t = cur(P);
    jnode *n;
    switch (t->kind) {
    case TK_NAME:
        advance(P);
        if (!strcmp(t->s, "true") || !strcmp(t->s, "True") || !strcmp(t->s, "false") || !strcmp(t->s, "False")) {
            n = mk(P, E_CONST_BOOL, t->line);
            n->id = t->s[0] == 't' || t->s[0] == 'T';
        } else if (!strcmp(t->s, "none") || !strcmp(t->s, "None")) {
            n = mk(P, E_CONST_NONE, t->line);
        } else {
            n = mk(P, E_NAME, t->line);
            n->s = t->s;
            n->len = t->len;
        }
        return n;
    case TK_STRING: {
        // adjacent literals concatenate: "a" "b" == "ab"
        size_t total = 0, k = 0;
        while (look(P, k)->kind == TK_STRING) total += look(P, k++)->len;
        char *s = jarena_alloc(P->a, total + 1);
        size_t o = 0;
        while (k--) {
            const jtok *x = advance(P);
            memcpy(s + o, x->s, x->len);
            o += x->len;
        }
        n = mk(P, E_CONST_STR, t->line);
        n->s = s;
        n->len = total;
        return n;
    }
    case TK_INT:
        advance(P);
        n = mk(P, E_CONST_INT, t->line);
        n->i = t->i;
        return n;
    case TK_FLOAT:
        advance(P);
        n = mk(P, E_CONST_FLOAT, t->line);
        n->f = t->f;
        return n;
    case TK_OP:
        if (t->op == OP_LPAREN) {
            advance(P);
            enter(P);
            n = parse_tuple(P, false, true, NULL, true);
            leave(P);
            expect_op(P, OP_RPAREN);
            return n;
        }
        if (t->op == OP_LBRACKET) {
            enter(P);
            n = parse_list(P);
            leave(P);
            return n;
        }
        if (t->op == OP_LBRACE) {
            enter(P);
            n = parse_dict(P);
            leave(P);
            return n;
        }
        break;
    default: break;
    }
    fail_unexpected(P, "an expression");
}

// Where an implicit tuple stops.
static bool is_tuple_end(parser *P, const char *extra_end) {
    const jtok *t = cur(P);
    if (t->kind == TK_VAR_END || t->kind == TK_BLOCK_END || t->kind == TK_EOF) return true;
    if (t->kind == TK_OP && t->op == OP_RPAREN) return true;
    return extra_end && is_name(P, extra_end);
}

// An expression, or a tuple when commas follow (jinja2's parse_tuple).
static jnode *parse_tuple(parser *P, bool simplified, bool with_condexpr, const char *extra_end, bool explicit_parens) {
    int line = cur(P)->line;
    jnode *tup = mk(P, E_TUPLE, line);
    bool is_tuple = false;
    for (;;) {
        if (tup->kids.n) expect_op(P, OP_COMMA);
        if (is_tuple_end(P, extra_end)) break;
        jnode *e = simplified ? parse_primary(P) : parse_expression(P, with_condexpr);
        jnodes_push(P->a, &tup->kids, e);
        if (is_op(P, OP_COMMA)) is_tuple = true;
        else break;
    }
    if (!is_tuple) {
        if (tup->kids.n) return tup->kids.v[0];
        if (!explicit_parens) fail_unexpected(P, "an expression");
    }
    return tup;
}

// A full expression (with `x if c else y` when with_condexpr).
static jnode *parse_expression(parser *P, bool with_condexpr) {
    enter(P);
    jnode *n = with_condexpr ? parse_condexpr(P) : parse_or(P);
    leave(P);
    return n;
}

// (a, b, k=v, *xs, **kw) into args.
static void parse_call_args(parser *P, jnodes *args) {
    expect_op(P, OP_LPAREN);
    bool saw_kw = false;
    while (!is_op(P, OP_RPAREN)) {
        if (args->n) {
            expect_op(P, OP_COMMA);
            if (is_op(P, OP_RPAREN)) break;
        }
        int line = cur(P)->line;
        jnode *arg;
        if (is_op(P, OP_MUL)) {
            advance(P);
            arg = mk(P, E_STARARG, line);
            arg->a = parse_expression(P, true);
        } else if (is_op(P, OP_POW)) {
            advance(P);
            arg = mk(P, E_DSTARARG, line);
            arg->a = parse_expression(P, true);
            saw_kw = true;
        } else if (cur(P)->kind == TK_NAME && look(P, 1)->kind == TK_OP && look(P, 1)->op == OP_ASSIGN) {
            arg = mk(P, E_KWARG, line);
            arg->s = advance(P)->s;
            advance(P);
            arg->a = parse_expression(P, true);
            saw_kw = true;
        } else {
            if (saw_kw) jparse_fail(P->a, line, "positional argument follows keyword argument");
            arg = parse_expression(P, true);
        }
        jnodes_push(P->a, args, arg);
    }
    expect_op(P, OP_RPAREN);
}

// A call of callee with its argument list.
static jnode *parse_call(parser *P, jnode *callee) {
    jnode *n = mk(P, E_CALL, cur(P)->line);
    n->a = callee;
    enter(P);
    parse_call_args(P, &n->kids);
    leave(P);
    return n;
}

// One subscript: an expression or a slice start:stop:step (E_SLICE; id bit 1/2/4 = start/stop/step given).
static jnode *parse_subscribed(parser *P) {
    int line = cur(P)->line;
    jnode *start = NULL;
    if (!is_op(P, OP_COLON)) {
        start = parse_expression(P, true);
        if (!is_op(P, OP_COLON)) return start;
    }
    advance(P); // ':'
    jnode *s = mk(P, E_SLICE, line);
    s->a = start;
    if (!is_op(P, OP_RBRACKET) && !is_op(P, OP_COMMA) && !is_op(P, OP_COLON)) s->b = parse_expression(P, true);
    if (is_op(P, OP_COLON)) {
        advance(P);
        if (!is_op(P, OP_RBRACKET) && !is_op(P, OP_COMMA)) s->c = parse_expression(P, true);
    }
    return s;
}

// `.name`, `.0`, `[i]`, `[a:b:c]` and calls after a primary.
static jnode *parse_postfix(parser *P, jnode *node) {
    for (;;) {
        int line = cur(P)->line;
        if (is_op(P, OP_DOT)) {
            advance(P);
            const jtok *t = cur(P);
            if (t->kind == TK_NAME) {
                advance(P);
                jnode *n = mk(P, E_GETATTR, line);
                n->a = node;
                n->s = t->s;
                n->len = t->len;
                node = n;
            } else if (t->kind == TK_INT) {
                advance(P);
                jnode *k = mk(P, E_CONST_INT, line);
                k->i = t->i;
                jnode *n = mk(P, E_GETITEM, line);
                n->a = node;
                n->b = k;
                node = n;
            } else {
                fail_unexpected(P, "an attribute name after '.'");
            }
        } else if (is_op(P, OP_LBRACKET)) {
            advance(P);
            enter(P);
            jnode *arg = parse_subscribed(P);
            if (is_op(P, OP_COMMA)) {
                jnode *tup = mk(P, E_TUPLE, line);
                jnodes_push(P->a, &tup->kids, arg);
                while (is_op(P, OP_COMMA)) {
                    advance(P);
                    if (is_op(P, OP_RBRACKET)) break;
                    jnodes_push(P->a, &tup->kids, parse_subscribed(P));
                }
                arg = tup;
            }
            leave(P);
            expect_op(P, OP_RBRACKET);
            jnode *n = mk(P, E_GETITEM, line);
            n->a = node;
            n->b = arg;
            node = n;
        } else if (is_op(P, OP_LPAREN)) {
            node = parse_call(P, node);
        } else {
            return node;
        }
    }
}

// A chain of `| name(args)` filters applied to node (node may be NULL for filter blocks).
static jnode *parse_filter(parser *P, jnode *node, bool start_inline) {
    while (is_op(P, OP_PIPE) || start_inline) {
        if (!start_inline) advance(P);
        start_inline = false;
        int line = cur(P)->line;
        const char *name = expect_name(P, "a filter name");
        char full[128];
        snprintf(full, sizeof full, "%s", name);
        while (is_op(P, OP_DOT)) {
            advance(P);
            const char *more = expect_name(P, "a filter name");
            size_t l = strlen(full);
            snprintf(full + l, sizeof full - l, ".%s", more);
        }
        int id = jfilter_lookup(full);
        if (id < 0) jparse_fail(P->a, line, "unknown filter '%s'", full);
        jnode *n = mk(P, E_FILTER, line);
        n->id = id;
        n->s = jarena_strndup(P->a, full, strlen(full));
        n->a = node;
        if (is_op(P, OP_LPAREN)) {
            enter(P);
            parse_call_args(P, &n->kids);
            leave(P);
        }
        node = n;
    }
    return node;
}

// `is [not] test`, with arguments in parentheses or one bare argument, as jinja2 allows.
static jnode *parse_test(parser *P, jnode *node) {
    int line = advance(P)->line; // 'is'
    bool negated = false;
    if (is_name(P, "not")) {
        advance(P);
        negated = true;
    }
    const char *name = expect_name(P, "a test name");
    char full[128];
    snprintf(full, sizeof full, "%s", name);
    while (is_op(P, OP_DOT)) {
        advance(P);
        const char *more = expect_name(P, "a test name");
        size_t l = strlen(full);
        snprintf(full + l, sizeof full - l, ".%s", more);
    }
    // `is none` and friends: the names none/true/false lex as names here
    int id = jtest_lookup(full);
    if (id < 0) jparse_fail(P->a, line, "unknown test '%s'", full);
    jnode *n = mk(P, E_TEST, line);
    n->id = id;
    n->op = negated ? OP_NOT : OP_NONE;
    n->s = jarena_strndup(P->a, full, strlen(full));
    n->a = node;
    const jtok *t = cur(P);
    if (is_op(P, OP_LPAREN)) {
        enter(P);
        parse_call_args(P, &n->kids);
        leave(P);
    } else if ((t->kind == TK_NAME || t->kind == TK_STRING || t->kind == TK_INT || t->kind == TK_FLOAT ||
                (t->kind == TK_OP && (t->op == OP_LBRACKET || t->op == OP_LBRACE))) &&
               !is_name(P, "else") && !is_name(P, "or") && !is_name(P, "and")) {
        if (is_name(P, "is")) jparse_fail(P->a, t->line, "tests cannot be chained with 'is'");
        enter(P);
        jnode *arg = parse_postfix(P, parse_primary(P));
        leave(P);
        jnodes_push(P->a, &n->kids, arg);
    }
    return n;
}

// Any mix of filters, tests and calls after an operand.
static jnode *parse_filter_expr(parser *P, jnode *node) {
    for (;;) {
        if (is_op(P, OP_PIPE)) node = parse_filter(P, node, false);
        else if (is_name(P, "is")) node = parse_test(P, node);
        else if (is_op(P, OP_LPAREN)) node = parse_call(P, node);
        else return node;
    }
}

// ---------------------------------------------------------------- statements

static jnode *parse_body(parser *P, const char *const *ends, int nends);

// Only names and tuples of names can be assigned (or namespace attributes, parsed apart).
static void check_assignable(parser *P, jnode *t) {
    if (t->kind == E_NAME) return;
    if (t->kind == E_TUPLE) {
        for (int i = 0; i < t->kids.n; i++) check_assignable(P, t->kids.v[i]);
        return;
    }
    jparse_fail(P->a, t->line,
                "cannot assign to this expression (only names, tuples of names and namespace.attribute)");
}

// The left side of set/for/with: a name, a tuple of names, or ns.attr.
static jnode *parse_assign_target(parser *P, const char *extra_end, bool with_namespace, bool with_tuple) {
    if (with_namespace && cur(P)->kind == TK_NAME && look(P, 1)->kind == TK_OP && look(P, 1)->op == OP_DOT) {
        int line = cur(P)->line;
        jnode *n = mk(P, E_NSREF, line);
        n->s = advance(P)->s;
        advance(P);
        const char *attr = expect_name(P, "an attribute name");
        jnode *k = mk(P, E_CONST_STR, line);
        k->s = attr;
        k->len = strlen(attr);
        n->b = k;
        return n;
    }
    jnode *t = with_tuple ? parse_tuple(P, true, false, extra_end, false) : parse_primary(P);
    check_assignable(P, t);
    return t;
}

// Consumes `{% name %}` (an end tag the body stopped at).
static void consume_end(parser *P, const char *name) {
    advance(P); // {%
    if (!is_name(P, name)) fail_unexpected(P, name);
    advance(P);
    expect_block_end(P, name);
}

// Macro or call-block parameters: names with optional defaults, defaults last.
static void parse_signature(parser *P, jnodes *params) {
    expect_op(P, OP_LPAREN);
    bool saw_default = false;
    while (!is_op(P, OP_RPAREN)) {
        if (params->n) {
            expect_op(P, OP_COMMA);
            if (is_op(P, OP_RPAREN)) break;
        }
        int line = cur(P)->line;
        const char *name = expect_name(P, "a parameter name");
        for (int i = 0; i < params->n; i++)
            if (!strcmp(params->v[i]->s, name)) jparse_fail(P->a, line, "duplicate parameter '%s'", name);
        jnode *p = mk(P, E_NAME, line);
        p->s = name;
        if (is_op(P, OP_ASSIGN)) {
            advance(P);
            p->kind = E_KWARG;
            p->a = parse_expression(P, true);
            saw_default = true;
        } else if (saw_default) {
            jparse_fail(P->a, line, "parameter '%s' without a default follows one with a default", name);
        }
        jnodes_push(P->a, params, p);
    }
    expect_op(P, OP_RPAREN);
}

// Marks a block as the innermost open one, so a stray end tag can name what is still open.
static void open_block(parser *P, const char *name, int line) {
    P->open_name = name;
    P->open_line = line;
}

// The rest of a block tag with a single end tag: `%}`, the body, then `{% end<name> %}`; returns the body.
static jnodes parse_simple_block(parser *P, const char *name, int line, const char *end) {
    expect_block_end(P, name);
    open_block(P, name, line);
    const char *ends[] = {end};
    jnodes kids = parse_body(P, ends, 1)->kids;
    consume_end(P, end);
    return kids;
}

// {% if %} ... {% elif %} ... {% else %} ... {% endif %}: each elif nests as the else branch of the one before.
static jnode *parse_if(parser *P, const char *name, int line) {
    jnode *n = mk(P, N_IF, line);
    n->a = parse_tuple(P, false, false, NULL, false);
    expect_block_end(P, "if");
    open_block(P, "if", line);
    static const char *const ends[] = {"endif", "elif", "else"};
    jnode *node = n;
    for (;;) {
        jnode *body = parse_body(P, ends, 3);
        node->kids = body->kids;
        const char *tag = look(P, 1)->s;
        if (!strcmp(tag, "elif")) {
            int eline = advance(P)->line;
            advance(P);
            jnode *e = mk(P, N_IF, eline);
            e->a = parse_tuple(P, false, false, NULL, false);
            expect_block_end(P, "elif");
            jnodes_push(P->a, &node->kids2, e);
            node = e;
            continue;
        }
        if (!strcmp(tag, "else")) {
            advance(P);
            advance(P);
            expect_block_end(P, "else");
            static const char *const ends2[] = {"endif"};
            jnode *eb = parse_body(P, ends2, 1);
            node->kids2 = eb->kids;
        }
        consume_end(P, "endif");
        return n;
    }
}

// {% for target in iterable [if cond] %} ... [{% else %} ...] {% endfor %}.
static jnode *parse_for(parser *P, const char *name, int line) {
    jnode *n = mk(P, N_FOR, line);
    n->a = parse_assign_target(P, "in", false, true);
    if (!is_name(P, "in")) fail_unexpected(P, "'in'");
    advance(P);
    n->b = parse_tuple(P, false, false, "recursive", false);
    if (is_name(P, "if")) {
        advance(P);
        n->c = parse_expression(P, true);
    }
    if (is_name(P, "recursive")) jparse_fail(P->a, cur(P)->line, "recursive for loops are not supported");
    expect_block_end(P, "for");
    open_block(P, "for", line);
    P->loop_depth++;
    static const char *const ends[] = {"endfor", "else"};
    jnode *body = parse_body(P, ends, 2);
    P->loop_depth--;
    n->kids = body->kids;
    if (tok_is_name(look(P, 1), "else")) {
        advance(P);
        advance(P);
        expect_block_end(P, "else");
        static const char *const ends2[] = {"endfor"};
        n->kids2 = parse_body(P, ends2, 1)->kids;
    }
    consume_end(P, "endfor");
    return n;
}

// {% set target = value %}, or the block form {% set target [| filters] %} ... {% endset %}.
static jnode *parse_set(parser *P, const char *name, int line) {
    jnode *target = parse_assign_target(P, NULL, true, true);
    jnode *n;
    if (is_op(P, OP_ASSIGN)) {
        advance(P);
        n = mk(P, N_SET, line);
        n->a = target;
        n->b = parse_tuple(P, false, true, NULL, false);
        expect_block_end(P, "set");
        return n;
    }
    n = mk(P, N_SETBLOCK, line);
    n->a = target;
    n->b = parse_filter(P, NULL, false);
    n->kids = parse_simple_block(P, "set", line, "endset");
    return n;
}

// {% macro name(params) %} ... {% endmacro %}: loops outside do not reach into the macro body.
static jnode *parse_macro(parser *P, const char *name, int line) {
    jnode *n = mk(P, N_MACRO, line);
    n->s = expect_name(P, "a macro name");
    parse_signature(P, &n->kids2);
    int saved_loops = P->loop_depth;
    P->loop_depth = 0;
    n->kids = parse_simple_block(P, "macro", line, "endmacro");
    P->loop_depth = saved_loops;
    return n;
}

// {% call [(params)] m(args) %} ... {% endcall %}.
static jnode *parse_call_block(parser *P, const char *name, int line) {
    jnode *n = mk(P, N_CALLBLOCK, line);
    if (is_op(P, OP_LPAREN)) parse_signature(P, &n->kids2);
    n->a = parse_expression(P, true);
    if (n->a->kind != E_CALL) jparse_fail(P->a, line, "'call' needs a macro call, like {%% call m(x) %%}");
    n->kids = parse_simple_block(P, "call", line, "endcall");
    return n;
}

// {% filter f | g %} ... {% endfilter %}.
static jnode *parse_filter_block(parser *P, const char *name, int line) {
    jnode *n = mk(P, N_FILTERBLOCK, line);
    n->b = parse_filter(P, NULL, true);
    n->kids = parse_simple_block(P, "filter", line, "endfilter");
    return n;
}

// {% with a = x, b = y %} ... {% endwith %}.
static jnode *parse_with(parser *P, const char *name, int line) {
    jnode *n = mk(P, N_WITH, line);
    while (cur(P)->kind != TK_BLOCK_END) {
        if (n->kids2.n) expect_op(P, OP_COMMA);
        jnode *s = mk(P, N_SET, cur(P)->line);
        s->a = parse_assign_target(P, NULL, false, false);
        expect_op(P, OP_ASSIGN);
        s->b = parse_expression(P, true);
        jnodes_push(P->a, &n->kids2, s);
    }
    n->kids = parse_simple_block(P, "with", line, "endwith");
    return n;
}

// {% break %} and {% continue %}, only inside a for loop.
static jnode *parse_loop_control(parser *P, const char *name, int line) {
    if (P->loop_depth == 0) jparse_fail(P->a, line, "'%s' outside a for loop", name);
    jnode *n = mk(P, name[0] == 'b' ? N_BREAK : N_CONTINUE, line);
    expect_block_end(P, name);
    return n;
}

// transformers' {% generation %} marks assistant text for masks; it renders its body unchanged.
static jnode *parse_generation(parser *P, const char *name, int line) {
    jnode *n = mk(P, N_BLOCK, line);
    n->kids = parse_simple_block(P, "generation", line, "endgeneration");
    return n;
}

// jinja2 tags that make no sense for a chat template (no loader, no autoescape, no i18n).
static jnode *parse_unsupported(parser *P, const char *name, int line) {
    jparse_fail(P->a, line, "the '%s' tag is not supported in chat templates", name);
}

// Every tag a statement can open with, and its parser.
static const struct {
    const char *name;
    jnode *(*parse)(parser *P, const char *name, int line);
} statements[] = {
    {"if", parse_if},
    {"for", parse_for},
    {"set", parse_set},
    {"macro", parse_macro},
    {"call", parse_call_block},
    {"filter", parse_filter_block},
    {"with", parse_with},
    {"break", parse_loop_control},
    {"continue", parse_loop_control},
    {"generation", parse_generation},
    {"include", parse_unsupported},
    {"extends", parse_unsupported},
    {"import", parse_unsupported},
    {"from", parse_unsupported},
    {"block", parse_unsupported},
    {"autoescape", parse_unsupported},
    {"do", parse_unsupported},
    {"trans", parse_unsupported},
};

// A tag no statement opens with: a stray end/else/elif (naming the open block) or an unknown tag.
_Noreturn static void fail_tag(parser *P, const char *name, int line) {
    if (!strncmp(name, "end", 3) || !strcmp(name, "else") || !strcmp(name, "elif")) {
        if (P->open_name)
            jparse_fail(P->a, line, "unexpected '{%% %s %%}' (the innermost open block is '%s' from line %d)", name,
                        P->open_name, P->open_line);
        jparse_fail(P->a, line, "unexpected '{%% %s %%}' (no block is open)", name);
    }
    jparse_fail(P->a, line, "unknown tag '%s'", name);
}

// One `{% tag ... %}` statement (with its body and end tag for block tags), dispatched on the tag name.
static jnode *parse_statement(parser *P) {
    const jtok *open = advance(P); // {%
    int line = open->line;
    if (cur(P)->kind != TK_NAME) fail_unexpected(P, "a tag name after '{%'");
    const char *name = advance(P)->s;
    const char *saved_name = P->open_name;
    int saved_line = P->open_line;
    enter(P);
    size_t k = 0;
    while (k < sizeof statements / sizeof *statements && strcmp(statements[k].name, name)) k++;
    if (k == sizeof statements / sizeof *statements) fail_tag(P, name, line);
    jnode *n = statements[k].parse(P, name, line);
    leave(P);
    P->open_name = saved_name;
    P->open_line = saved_line;
    return n;
}

// Statements up to one of the end tags (left unconsumed) or the end of the template when ends is NULL.
static jnode *parse_body(parser *P, const char *const *ends, int nends) {
    jnode *blk = mk(P, N_BLOCK, cur(P)->line);
    for (;;) {
        const jtok *t = cur(P);
        switch (t->kind) {
        case TK_EOF:
            if (ends)
                jparse_fail(P->a, P->open_line,
                            "unclosed '%s' block (expected '{%% %s %%}' before the end of the template)", P->open_name,
                            ends[0]);
            return blk;
        case TK_TEXT: {
            advance(P);
            jnode *n = mk(P, N_TEXT, t->line);
            n->s = t->s;
            n->len = t->len;
            jnodes_push(P->a, &blk->kids, n);
            break;
        }
        case TK_VAR_BEGIN: {
            advance(P);
            jnode *n = mk(P, N_OUTPUT, t->line);
            n->a = parse_tuple(P, false, true, NULL, false);
            if (cur(P)->kind != TK_VAR_END) fail_unexpected(P, "'}}'");
            advance(P);
            jnodes_push(P->a, &blk->kids, n);
            break;
        }
        case TK_BLOCK_BEGIN: {
            const jtok *nm = look(P, 1);
            if (ends && nm->kind == TK_NAME)
                for (int i = 0; i < nends; i++)
                    if (!strcmp(nm->s, ends[i])) return blk;
            jnodes_push(P->a, &blk->kids, parse_statement(P));
            break;
        }
        default: fail_unexpected(P, NULL);
        }
    }
}

// The whole template as one block; raises (longjmp) on a syntax error.
// One pass over the finished AST without recursion: bounds its depth (long operator or filter chains are
// built without recursion in the parser but are walked recursively when rendering), and marks each macro
// whose body mentions varargs/kwargs/caller (id bits 1/2/4): extra arguments are accepted only then.
static void finish_ast(parser *P, jnode *root) {
    typedef struct {
        jnode *n, *owner;
        int depth;
    } item;
    size_t cap = 256, top = 0;
    item *st = jarena_alloc(P->a, cap * sizeof *st);
    st[top++] = (item){root, NULL, 0};
    while (top) {
        item it = st[--top];
        jnode *n = it.n;
        if (it.depth > MAX_AST_DEPTH)
            jparse_fail(P->a, n->line, "expression nested too deeply (more than %d levels)", MAX_AST_DEPTH);
        if (n->kind == E_NAME && it.owner && n->s) {
            if (!strcmp(n->s, "varargs")) it.owner->id |= 1;
            else if (!strcmp(n->s, "kwargs")) it.owner->id |= 2;
            else if (!strcmp(n->s, "caller")) it.owner->id |= 4;
        }
        jnode *owner = n->kind == N_MACRO || n->kind == N_CALLBLOCK ? n : it.owner;
        jnode *kids[3] = {n->a, n->b, n->c};
        size_t need = top + 3 + (size_t)n->kids.n + (size_t)n->kids2.n;
        if (need > cap) {
            while (cap < need) cap *= 2;
            item *ns = jarena_alloc(P->a, cap * sizeof *ns);
            memcpy(ns, st, top * sizeof *st);
            st = ns;
        }
        // a call block's own call expression belongs to the enclosing scope, not to its body
        for (int k = 0; k < 3; k++)
            if (kids[k]) st[top++] = (item){kids[k], n->kind == N_CALLBLOCK && k == 0 ? it.owner : owner, it.depth + 1};
        for (int k = 0; k < n->kids.n; k++) st[top++] = (item){n->kids.v[k], owner, it.depth + 1};
        for (int k = 0; k < n->kids2.n; k++) st[top++] = (item){n->kids2.v[k], owner, it.depth + 1};
    }
}

jnode *jparse(jarena *a, const jtoks *toks) {
    parser P = {.a = a, .t = toks, .i = 0};
    jnode *root = parse_body(&P, NULL, 0);
    finish_ast(&P, root);
    return root;
}
