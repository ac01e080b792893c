// The template interpreter and the public chat-template API: evaluates the AST over the conversation with
// jinja2's scoping (a fresh scope per loop iteration, namespaces for state that outlives it), Python's
// arithmetic and comparisons, and the variables transformers passes (messages, tools, add_generation_prompt,
// bos_token, eos_token, documents, and any extra ones).
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../format/gguf.h"
#include "chat.h"
#include "core/util.h"
#include "jinja.h"

#define MAX_TEMPLATE_BYTES (16u << 20)
#define MAX_CALL_DEPTH 100
#define MAX_EVAL_DEPTH 3000

struct aero_chat_template {
    jarena arena;
    jnode *root;
    uint64_t max_steps, max_mem;
};

// Lets fuzzers and tests lower the per-render limits of one template.
void jtemplate_set_limits(aero_chat_template *t, uint64_t max_steps, uint64_t max_mem) {
    if (max_steps) t->max_steps = max_steps;
    if (max_mem) t->max_mem = max_mem;
}

static jv eval(jctx *c, jscope *s, const jnode *n);
static void exec_block(jctx *c, jscope *s, const jnodes *body);
static void exec_stmt(jctx *c, jscope *s, const jnode *n);

// ---------------------------------------------------------------- output capture

static void out_push(jctx *c) {
    if (c->nout == c->capout) {
        int cap = c->capout ? c->capout * 2 : 8;
        c->outs = jx_realloc(c, c->outs, (size_t)cap * sizeof *c->outs);
        c->capout = cap;
    }
    c->outs[c->nout++] = (jbuf){0};
}

// Ends a capture and returns what was written as a string.
static jv out_pop(jctx *c) {
    jbuf *b = &c->outs[--c->nout];
    return jv_str_take_buf(c, b);
}

static jbuf *out_cur(jctx *c) { return &c->outs[c->nout - 1]; }

// ---------------------------------------------------------------- arithmetic

_Noreturn static void raise_undef(jctx *c, jv u) {
    if (u.o) jraise(c, "%s", jv_str(u)->s);
    jraise(c, "use of an undefined value");
}

static bool numeric(jv v) { return v.t == JV_INT || v.t == JV_FLOAT || v.t == JV_BOOL; }
static bool intlike(jv v) { return v.t == JV_INT || v.t == JV_BOOL; }
static int64_t ival(jv v) { return v.t == JV_BOOL ? v.b : v.i; }
static double fval(jv v) { return v.t == JV_FLOAT ? v.f : (double)ival(v); }

_Noreturn static void overflow(jctx *c) { jraise(c, "integer overflow (values beyond 64 bits are not supported)"); }

// str * n and list * n, bounded.
static jv repeat_seq(jctx *c, jv seq, int64_t times) {
    if (times < 0) times = 0;
    if (seq.t == JV_STR) {
        const jstr *s = jv_str(seq);
        if (s->len && (uint64_t)times > ((uint64_t)1 << 30) / s->len) jraise(c, "string repetition result too large");
        jbuf b = {0};
        for (int64_t i = 0; i < times; i++) jbuf_put(c, &b, s->s, s->len);
        return jv_str_take_buf(c, &b);
    }
    jlist *l = jv_list(seq);
    if (l->n && (uint64_t)times > ((uint64_t)1 << 24) / l->n) jraise(c, "list repetition result too large");
    jv out = jv_list_new(c, l->n * (size_t)times, seq.t == JV_TUPLE);
    for (int64_t i = 0; i < times; i++)
        for (size_t k = 0; k < l->n; k++) jv_list_push(c, out, jv_incref(l->v[k]));
    return out;
}

// Arithmetic on two numbers (bools count as ints): exact integers with overflow errors, Python's floor division
// and modulo signs; jv_missing() for an operator that is not arithmetic.
static jv num_binop(jctx *c, jop op, jv a, jv b) {
    bool ints = intlike(a) && intlike(b);
    int64_t x = ints ? ival(a) : 0, y = ints ? ival(b) : 0, r;
    double fx = fval(a), fy = fval(b);
    switch (op) {
    case OP_ADD:
        if (!ints) return jv_float(fx + fy);
        if (__builtin_add_overflow(x, y, &r)) overflow(c);
        return jv_int(r);
    case OP_SUB:
        if (!ints) return jv_float(fx - fy);
        if (__builtin_sub_overflow(x, y, &r)) overflow(c);
        return jv_int(r);
    case OP_MUL:
        if (!ints) return jv_float(fx * fy);
        if (__builtin_mul_overflow(x, y, &r)) overflow(c);
        return jv_int(r);
    case OP_DIV:
        if (fy == 0) jraise(c, "division by zero");
        return jv_float(fx / fy);
    case OP_FLOORDIV:
        if (ints) {
            if (y == 0) jraise(c, "integer division or modulo by zero");
            if (x == INT64_MIN && y == -1) overflow(c);
            r = x / y;
            if ((x % y != 0) && ((x < 0) != (y < 0))) r--;
            return jv_int(r);
        }
        if (fy == 0) jraise(c, "float floor division by zero");
        return jv_float(floor(fx / fy));
    case OP_MOD:
        if (ints) {
            if (y == 0) jraise(c, "integer division or modulo by zero");
            if (y == -1) return jv_int(0);
            r = x % y;
            if (r != 0 && ((r < 0) != (y < 0))) r += y;
            return jv_int(r);
        } else {
            if (fy == 0) jraise(c, "float modulo");
            double m = fmod(fx, fy);
            if (m != 0 && ((m < 0) != (fy < 0))) m += fy;
            return jv_float(m);
        }
    case OP_POW:
        if (ints && y >= 0) {
            int64_t acc = 1, base = x;
            for (int64_t e = y; e > 0; e >>= 1) {
                if (e & 1 && __builtin_mul_overflow(acc, base, &acc)) overflow(c);
                if (e > 1 && __builtin_mul_overflow(base, base, &base)) overflow(c);
            }
            return jv_int(acc);
        }
        if (fx == 0 && fy < 0) jraise(c, "0.0 cannot be raised to a negative power");
        return jv_float(pow(fx, fy));
    default: return jv_missing();
    }
}

// Python arithmetic: exact integers (overflow is an error), floor division and modulo by sign, str/list + and *.
static jv binop(jctx *c, jop op, jv a, jv b) {
    if (a.t == JV_UNDEF) raise_undef(c, a);
    if (b.t == JV_UNDEF) raise_undef(c, b);
    if (op == OP_MOD && a.t == JV_STR) return jstr_percent(c, a, b);
    if (numeric(a) && numeric(b)) {
        jv r = num_binop(c, op, a, b);
        if (r.t != JV_MISSING) return r;
    }
    if (op == OP_ADD) {
        if (a.t == JV_STR && b.t == JV_STR) {
            jbuf buf = {0};
            jbuf_put(c, &buf, jv_str(a)->s, jv_str(a)->len);
            jbuf_put(c, &buf, jv_str(b)->s, jv_str(b)->len);
            if (!buf.p) return jv_str_new(c, "", 0);
            return jv_str_take_buf(c, &buf);
        }
        if (a.t == b.t && jv_is_seq(a)) {
            jlist *x = jv_list(a), *y = jv_list(b);
            jv out = jv_list_new(c, x->n + y->n, a.t == JV_TUPLE);
            for (size_t i = 0; i < x->n; i++) jv_list_push(c, out, jv_incref(x->v[i]));
            for (size_t i = 0; i < y->n; i++) jv_list_push(c, out, jv_incref(y->v[i]));
            return out;
        }
        if (a.t == JV_STR || jv_is_seq(a))
            jraise(c, "can only concatenate %s (not \"%s\") to %s", jv_type_name(a), jv_type_name(b), jv_type_name(a));
    }
    if (op == OP_MUL) {
        if ((a.t == JV_STR || jv_is_seq(a)) && intlike(b)) return repeat_seq(c, a, ival(b));
        if ((b.t == JV_STR || jv_is_seq(b)) && intlike(a)) return repeat_seq(c, b, ival(a));
    }
    jraise(c, "unsupported operand type(s) for %s: '%s' and '%s'", jop_str(op), jv_type_name(a), jv_type_name(b));
}

// `item in container` with Python's rules.
static bool contains(jctx *c, jv container, jv item) {
    switch ((jv_type)container.t) {
    case JV_STR:
        if (item.t != JV_STR) jraise(c, "'in <string>' requires string as left operand, not %s", jv_type_name(item));
        return jv_str(item)->len == 0 ||
               memmem(jv_str(container)->s, jv_str(container)->len, jv_str(item)->s, jv_str(item)->len) != NULL;
    case JV_DICT: return item.t == JV_STR && jv_dict_get(container, jv_str(item)->s, jv_str(item)->len) != NULL;
    case JV_LIST:
    case JV_TUPLE: {
        jlist *l = jv_list(container);
        for (size_t i = 0; i < l->n; i++)
            if (jv_equal(c, l->v[i], item, 0)) return true;
        return false;
    }
    case JV_UNDEF: return false;
    default: jraise(c, "argument of type '%s' is not iterable", jv_type_name(container));
    }
}

// One link of a comparison chain.
static bool compare_op(jctx *c, jop op, jv a, jv b) {
    switch (op) {
    case OP_EQ: return jv_equal(c, a, b, 0);
    case OP_NE: return !jv_equal(c, a, b, 0);
    case OP_IN: return contains(c, b, a);
    case OP_NOTIN: return !contains(c, b, a);
    default: break;
    }
    if (a.t == JV_UNDEF) raise_undef(c, a);
    if (b.t == JV_UNDEF) raise_undef(c, b);
    int r = jv_compare(c, a, b, true);
    switch (op) {
    case OP_LT: return r < 0;
    case OP_LTEQ: return r <= 0;
    case OP_GT: return r > 0;
    case OP_GTEQ: return r >= 0;
    default: return false;
    }
}

// ---------------------------------------------------------------- calls

typedef struct {
    jargs a;
    jv *hold; // values to release after the call
    int nhold;
} evargs;

// Evaluates call arguments, expanding *args and **kwargs.
static void eval_args(jctx *c, jscope *s, const jnodes *kids, evargs *out) {
    int cap = kids->n + 1;
    // star arguments may expand: count them first
    jv *vals = jx_alloc(c, (size_t)cap * sizeof *vals);
    int nv = 0;
    for (int i = 0; i < kids->n; i++)
        vals[nv++] = eval(c, s,
                          kids->v[i]->kind == E_KWARG || kids->v[i]->kind == E_STARARG || kids->v[i]->kind == E_DSTARARG
                              ? kids->v[i]->a
                              : kids->v[i]);
    int npos = 0, nkw = 0;
    for (int i = 0; i < kids->n; i++) {
        jnode_kind k = kids->v[i]->kind;
        if (k == E_STARARG) {
            if (!jv_is_seq(vals[i]))
                jraise(c, "argument after * must be a list or tuple, not %s", jv_type_name(vals[i]));
            npos += (int)jv_list(vals[i])->n;
        } else if (k == E_DSTARARG) {
            if (vals[i].t != JV_DICT) jraise(c, "argument after ** must be a mapping, not %s", jv_type_name(vals[i]));
            nkw += (int)jv_dict(vals[i])->n;
        } else if (k == E_KWARG) {
            nkw++;
        } else {
            npos++;
        }
    }
    out->a.pos = jx_alloc(c, (size_t)(npos + 1) * sizeof(jv));
    out->a.kwk = jx_alloc(c, (size_t)(nkw + 1) * sizeof(char *));
    out->a.kwv = jx_alloc(c, (size_t)(nkw + 1) * sizeof(jv));
    out->a.npos = out->a.nkw = 0;
    for (int i = 0; i < kids->n; i++) {
        const jnode *k = kids->v[i];
        if (k->kind == E_STARARG) {
            jlist *l = jv_list(vals[i]);
            for (size_t j = 0; j < l->n; j++) out->a.pos[out->a.npos++] = l->v[j];
        } else if (k->kind == E_DSTARARG) {
            jdict *d = jv_dict(vals[i]);
            for (size_t j = 0; j < d->n; j++) {
                for (int q = 0; q < out->a.nkw; q++)
                    if (!strcmp(out->a.kwk[q], d->k[j]->s))
                        jraise(c, "got multiple values for keyword argument '%s'", d->k[j]->s);
                out->a.kwk[out->a.nkw] = d->k[j]->s;
                out->a.kwv[out->a.nkw++] = d->v[j];
            }
        } else if (k->kind == E_KWARG) {
            for (int q = 0; q < out->a.nkw; q++)
                if (!strcmp(out->a.kwk[q], k->s)) jraise(c, "got multiple values for keyword argument '%s'", k->s);
            out->a.kwk[out->a.nkw] = k->s;
            out->a.kwv[out->a.nkw++] = vals[i];
        } else {
            out->a.pos[out->a.npos++] = vals[i];
        }
    }
    out->hold = vals;
    out->nhold = nv;
}

// Releases the values eval_args evaluated.
static void free_args(jctx *c, evargs *e) {
    for (int i = 0; i < e->nhold; i++) jv_decref(c, e->hold[i]);
    jx_free(c, e->hold);
    jx_free(c, e->a.pos);
    jx_free(c, (void *)e->a.kwk);
    jx_free(c, e->a.kwv);
}

static void assign(jctx *c, jscope *s, const jnode *target, jv v);

// Runs a macro or call-block body with its arguments bound like jinja2 binds macro parameters.
static jv invoke(jctx *c, const jnode *def, const jnodes *params, const jnodes *body, jscope *closure, const jargs *a,
                 const char *name, jv caller) {
    if (c->depth >= MAX_CALL_DEPTH) jraise(c, "macro calls nested too deeply (limit %d)", MAX_CALL_DEPTH);
    int saved_line = c->line;
    jscope *ms = jscope_new(c, closure);
    int np = params->n;
    bool uses_varargs = def->id & 1, uses_kwargs = def->id & 2;
    if (a->npos > np && !uses_varargs) jraise(c, "macro '%s' takes not more than %d argument(s)", name, np);
    bool *given = jx_alloc(c, (size_t)np + 1);
    for (int i = 0; i < np && i < a->npos; i++) {
        jscope_set(c, ms, params->v[i]->s, jv_incref(a->pos[i]));
        given[i] = true;
    }
    jv kwargs = jv_dict_new(c, false);
    for (int k = 0; k < a->nkw; k++) {
        int i;
        for (i = 0; i < np; i++)
            if (!strcmp(params->v[i]->s, a->kwk[k])) break;
        if (i < np) {
            if (given[i]) jraise(c, "macro '%s' got multiple values for argument '%s'", name, a->kwk[k]);
            jscope_set(c, ms, params->v[i]->s, jv_incref(a->kwv[k]));
            given[i] = true;
        } else if (uses_kwargs) {
            jv_dict_set_cstr(c, kwargs, a->kwk[k], jv_incref(a->kwv[k]));
        } else {
            jraise(c, "macro '%s' takes no keyword argument '%s'", name, a->kwk[k]);
        }
    }
    for (int i = 0; i < np; i++)
        if (!given[i])
            jscope_set(c, ms, params->v[i]->s, jv_undef_hint(c, "parameter '%s' was not provided", params->v[i]->s));
    for (int i = 0; i < np; i++)
        if (!given[i] && params->v[i]->kind == E_KWARG)
            jscope_set(c, ms, params->v[i]->s, eval(c, ms, params->v[i]->a));
    jx_free(c, given);
    jv varargs = jv_list_new(c, 0, true);
    for (int i = np; i < a->npos; i++) jv_list_push(c, varargs, jv_incref(a->pos[i]));
    jscope_set(c, ms, "varargs", varargs);
    jscope_set(c, ms, "kwargs", kwargs);
    if (caller.t == JV_FUNC) jscope_set(c, ms, "caller", jv_incref(caller));
    c->depth++;
    out_push(c);
    int saved_ctl = c->ctl;
    exec_block(c, ms, body);
    c->ctl = saved_ctl;
    jv r = out_pop(c);
    c->depth--;
    jv d = {.t = JV_NS};
    d.o = &ms->h;
    jv_decref(c, d);
    c->line = saved_line;
    return r;
}

// Calls a macro (optionally from a call block, with its caller) or a call block's caller().
static jv call_macro(jctx *c, jfunc *f, const jargs *a, jv caller) {
    const jnode *n = f->node;
    if (f->fk == FK_CALLER) return invoke(c, n, &n->kids2, &n->kids, f->closure, a, "caller", jv_undef());
    return invoke(c, n, &n->kids2, &n->kids, f->closure, a, n->s, caller);
}

jv jcall_macro(jctx *c, jfunc *f, const jargs *a) { return call_macro(c, f, a, jv_undef()); }

// Calls any callable value: global function, bound method, macro, caller.
jv jcall_value(jctx *c, jv fn, const jargs *a) {
    if (fn.t == JV_UNDEF) raise_undef(c, fn);
    if (fn.t != JV_FUNC) jraise(c, "'%s' object is not callable", jv_type_name(fn));
    jfunc *f = (jfunc *)fn.o;
    switch (f->fk) {
    case FK_GLOBAL: return jcall_global(c, f->id, a);
    case FK_METHOD: return jcall_method(c, f->id, f->self, a);
    case FK_MACRO:
    case FK_CALLER: return call_macro(c, f, a, jv_undef());
    default: jraise(c, "not callable");
    }
}

// ---------------------------------------------------------------- expressions

static jv apply_filter_chain(jctx *c, jscope *s, const jnode *f, jv operand) {
    // operand is owned; the chain's innermost filter has a == NULL and receives it
    if (!f) return operand;
    jv inner = apply_filter_chain(c, s, f->a, operand);
    evargs ea;
    eval_args(c, s, &f->kids, &ea);
    c->line = f->line;
    jv r = jfilter_apply(c, f->id, inner, &ea.a);
    free_args(c, &ea);
    jv_decref(c, inner);
    return r;
}

// Python slicing of lists, tuples and strings (by code point).
static jv eval_slice(jctx *c, jscope *s, jv obj, const jnode *sl) {
    int64_t v[3] = {0, 0, 1};
    bool has[3] = {false, false, false};
    const jnode *parts[3] = {sl->a, sl->b, sl->c};
    for (int i = 0; i < 3; i++) {
        if (!parts[i]) continue;
        jv x = eval(c, s, parts[i]);
        if (x.t == JV_NONE || x.t == JV_UNDEF) continue;
        v[i] = jexpect_int(c, x, "slice index");
        has[i] = true;
    }
    if (v[2] == 0) jraise(c, "slice step cannot be zero");
    if (obj.t == JV_STR) return jstr_slice_cp(c, jv_str(obj), v[0], v[1], v[2], has[0], has[1]);
    if (!jv_is_seq(obj)) {
        if (obj.t == JV_UNDEF) raise_undef(c, obj);
        jraise(c, "'%s' object is not subscriptable with a slice", jv_type_name(obj));
    }
    jlist *l = jv_list(obj);
    int64_t len = (int64_t)l->n, step = v[2];
    jv out = jv_list_new(c, 0, obj.t == JV_TUPLE);
    if (step > 0) {
        int64_t lo = !has[0] ? 0 : v[0] < 0 ? (v[0] + len < 0 ? 0 : v[0] + len) : (v[0] > len ? len : v[0]);
        int64_t hi = !has[1] ? len : v[1] < 0 ? (v[1] + len < 0 ? 0 : v[1] + len) : (v[1] > len ? len : v[1]);
        for (int64_t i = lo; i < hi; i += step) jv_list_push(c, out, jv_incref(l->v[i]));
    } else {
        int64_t lo = !has[0]    ? len - 1
                     : v[0] < 0 ? (v[0] + len < -1 ? -1 : v[0] + len)
                                : (v[0] >= len ? len - 1 : v[0]);
        int64_t hi = !has[1] ? -1 : v[1] < 0 ? (v[1] + len < -1 ? -1 : v[1] + len) : (v[1] >= len ? len - 1 : v[1]);
        for (int64_t i = lo; i > hi; i += step) jv_list_push(c, out, jv_incref(l->v[i]));
    }
    return out;
}

// A variable: its value in the innermost scope that has it, else undefined with the reason.
static jv eval_name(jctx *c, jscope *s, const jnode *n) {
    jv *v = jscope_lookup(s, n->s);
    if (v) return jv_incref(*v);
    return jv_undef_hint(c, "'%s' is undefined", n->s);
}

// obj.name: attribute access with the sandbox rules of jget_attr.
static jv eval_getattr(jctx *c, jscope *s, const jnode *n) {
    jv obj = eval(c, s, n->a);
    c->line = n->line;
    jv r = jget_attr(c, obj, n->s, n->len);
    jv_decref(c, obj);
    return r;
}

// obj[key] or obj[a:b:c].
static jv eval_getitem(jctx *c, jscope *s, const jnode *n) {
    jv obj = eval(c, s, n->a);
    jv r;
    if (n->b->kind == E_SLICE) {
        r = eval_slice(c, s, obj, n->b);
    } else {
        jv key = eval(c, s, n->b);
        c->line = n->line;
        r = jget_item(c, obj, key);
        jv_decref(c, key);
    }
    jv_decref(c, obj);
    return r;
}

// f(args): a macro, a bound method or a global function.
static jv eval_call(jctx *c, jscope *s, const jnode *n) {
    jv fn = eval(c, s, n->a);
    evargs ea;
    eval_args(c, s, &n->kids, &ea);
    c->line = n->line;
    jv r = jcall_value(c, fn, &ea.a);
    free_args(c, &ea);
    jv_decref(c, fn);
    return r;
}

// value | filter(args).
static jv eval_filter(jctx *c, jscope *s, const jnode *n) {
    jv operand = eval(c, s, n->a);
    evargs ea;
    eval_args(c, s, &n->kids, &ea);
    c->line = n->line;
    jv r = jfilter_apply(c, n->id, operand, &ea.a);
    free_args(c, &ea);
    jv_decref(c, operand);
    return r;
}

// value is [not] test(args).
static jv eval_test(jctx *c, jscope *s, const jnode *n) {
    jv operand = eval(c, s, n->a);
    evargs ea;
    eval_args(c, s, &n->kids, &ea);
    c->line = n->line;
    bool r = jtest_apply(c, n->id, operand, &ea.a);
    free_args(c, &ea);
    jv_decref(c, operand);
    return jv_bool(n->op == OP_NOT ? !r : r);
}

// Unary minus and plus: numbers only (bools count as ints, as in Python).
static jv eval_unary(jctx *c, jscope *s, const jnode *n) {
    jv v = eval(c, s, n->a);
    c->line = n->line;
    if (v.t == JV_UNDEF) raise_undef(c, v);
    if (v.t == JV_BOOL) v = jv_int(v.b);
    if (v.t == JV_INT) {
        if (n->op == OP_NEG && v.i == INT64_MIN) overflow(c);
        return jv_int(n->op == OP_NEG ? -v.i : v.i);
    }
    if (v.t == JV_FLOAT) return jv_float(n->op == OP_NEG ? -v.f : v.f);
    jraise(c, "bad operand type for unary %s: '%s'", n->op == OP_NEG ? "-" : "+", jv_type_name(v));
}

// Arithmetic and `in`, delegated to binop once both sides are evaluated.
static jv eval_binary(jctx *c, jscope *s, const jnode *n) {
    jv a = eval(c, s, n->a), b = eval(c, s, n->b);
    c->line = n->line;
    jv r = binop(c, n->op, a, b);
    jv_decref(c, a);
    jv_decref(c, b);
    return r;
}

// a ~ b: both sides written as strings and joined.
static jv eval_concat(jctx *c, jscope *s, const jnode *n) {
    jv a = eval(c, s, n->a), b = eval(c, s, n->b);
    c->line = n->line;
    jbuf buf = {0};
    jv_write_str(c, &buf, a);
    jv_write_str(c, &buf, b);
    jv_decref(c, a);
    jv_decref(c, b);
    return jv_str_take_buf(c, &buf);
}

// A comparison chain (a < b <= c), stopping at the first false link as Python does.
static jv eval_compare(jctx *c, jscope *s, const jnode *n) {
    jv left = eval(c, s, n->a);
    bool ok = true;
    for (int i = 0; i < n->kids.n && ok; i++) {
        jv right = eval(c, s, n->kids.v[i]);
        c->line = n->line;
        ok = compare_op(c, n->kids2.v[i]->op, left, right);
        jv_decref(c, left);
        left = right;
    }
    jv_decref(c, left);
    return jv_bool(ok);
}

// `and` / `or`: short-circuit, returning the deciding operand itself, as Python does.
static jv eval_and(jctx *c, jscope *s, const jnode *n) {
    jv a = eval(c, s, n->a);
    bool t = jv_truthy(a);
    if ((n->kind == E_AND) != t) return a;
    jv_decref(c, a);
    return eval(c, s, n->b);
}

// `not`: the negated truth value.
static jv eval_not(jctx *c, jscope *s, const jnode *n) {
    jv a = eval(c, s, n->a);
    bool t = jv_truthy(a);
    jv_decref(c, a);
    return jv_bool(!t);
}

// a if cond else b; without else, a false condition gives undefined (jinja2).
static jv eval_cond(jctx *c, jscope *s, const jnode *n) {
    jv t = eval(c, s, n->a);
    bool yes = jv_truthy(t);
    jv_decref(c, t);
    if (yes) return eval(c, s, n->b);
    if (n->c) return eval(c, s, n->c);
    return jv_undef_hint(c, "the inline if-expression on line %d evaluated to false and no else section was defined",
                         n->line);
}

// List and tuple literals.
static jv eval_list(jctx *c, jscope *s, const jnode *n) {
    jv out = jv_list_new(c, (size_t)n->kids.n, n->kind == E_TUPLE);
    for (int i = 0; i < n->kids.n; i++) jv_list_push(c, out, eval(c, s, n->kids.v[i]));
    return out;
}

// Dict literals (string keys only, as chat templates write them).
static jv eval_dict(jctx *c, jscope *s, const jnode *n) {
    jv out = jv_dict_new(c, false);
    for (int i = 0; i < n->kids.n; i++) {
        jv k = eval(c, s, n->kids.v[i]);
        if (k.t != JV_STR) jraise(c, "dict literal keys must be strings here, got %s", jv_type_name(k));
        jv_dict_set(c, out, jv_str(k), eval(c, s, n->kids2.v[i]));
        jv_decref(c, k);
    }
    return out;
}

// The expression evaluator proper; eval() wraps it with the depth bound.
static jv eval_node(jctx *c, jscope *s, const jnode *n) {
    c->line = n->line;
    switch (n->kind) {
    case E_CONST_STR: return jv_str_new(c, n->s, n->len);
    case E_CONST_INT: return jv_int(n->i);
    case E_CONST_FLOAT: return jv_float(n->f);
    case E_CONST_BOOL: return jv_bool(n->id != 0);
    case E_CONST_NONE: return jv_none();
    case E_NAME: return eval_name(c, s, n);
    case E_GETATTR: return eval_getattr(c, s, n);
    case E_GETITEM: return eval_getitem(c, s, n);
    case E_CALL: return eval_call(c, s, n);
    case E_FILTER: return eval_filter(c, s, n);
    case E_TEST: return eval_test(c, s, n);
    case E_UNARY: return eval_unary(c, s, n);
    case E_BINARY: return eval_binary(c, s, n);
    case E_CONCAT: return eval_concat(c, s, n);
    case E_COMPARE: return eval_compare(c, s, n);
    case E_AND:
    case E_OR: return eval_and(c, s, n);
    case E_NOT: return eval_not(c, s, n);
    case E_COND: return eval_cond(c, s, n);
    case E_LIST:
    case E_TUPLE: return eval_list(c, s, n);
    case E_DICT: return eval_dict(c, s, n);
    case E_SLICE: jraise(c, "a slice is only valid inside [ ]");
    case E_KWARG:
    case E_STARARG:
    case E_DSTARARG: jraise(c, "keyword or star argument outside a call");
    case E_NSREF: jraise(c, "namespace attribute reference outside an assignment");
    default: jraise(c, "statement used as an expression");
    }
}

// Evaluates an expression to a new reference, bounding the recursion depth.
static jv eval(jctx *c, jscope *s, const jnode *n) {
    if (++c->edepth > MAX_EVAL_DEPTH) jraise(c, "template nests too deeply while rendering (macro recursion?)");
    jv r = eval_node(c, s, n);
    c->edepth--;
    return r;
}

// ---------------------------------------------------------------- statements

static void assign(jctx *c, jscope *s, const jnode *target, jv v) {
    if (target->kind == E_NAME) {
        jscope_set(c, s, target->s, v);
        return;
    }
    if (target->kind == E_NSREF) {
        jv *ns = jscope_lookup(s, target->s);
        if (!ns || ns->t != JV_NS)
            jraise(c, "cannot assign attribute on non-namespace object '%s' (create it with namespace())", target->s);
        jv_dict_set_cstr(c, *ns, target->b->s, v);
        return;
    }
    // tuple unpacking
    jv items = v.t == JV_LIST || v.t == JV_TUPLE ? jv_incref(v) : jv_iter_list(c, v);
    jlist *l = jv_list(items);
    if ((int)l->n != target->kids.n)
        jraise(c, "%s values to unpack (expected %d, got %zu)", (int)l->n > target->kids.n ? "too many" : "not enough",
               target->kids.n, l->n);
    for (int i = 0; i < target->kids.n; i++) assign(c, s, target->kids.v[i], jv_incref(l->v[i]));
    jv_decref(c, items);
    jv_decref(c, v);
}

// Drops a scope reference (scopes are objects so macros can keep theirs).
static void release_scope(jctx *c, jscope *sc) {
    jv d = {.t = JV_NS};
    d.o = &sc->h;
    jv_decref(c, d);
}

// A for loop: filter first, then one fresh scope per iteration, so `set` inside does not leak (jinja2 scoping).
static void exec_for(jctx *c, jscope *s, const jnode *n) {
    jv iterv = eval(c, s, n->b);
    c->line = n->line;
    jv items = jv_iter_list(c, iterv);
    jv_decref(c, iterv);
    if (n->c) {
        // `for x in xs if cond`: filter first, so loop.length and friends count kept items only
        jlist *l = jv_list(items);
        jv kept = jv_list_new(c, l->n, false);
        for (size_t i = 0; i < l->n; i++) {
            jscope *t = jscope_new(c, s);
            assign(c, t, n->a, jv_incref(l->v[i]));
            jv ok = eval(c, t, n->c);
            if (jv_truthy(ok)) jv_list_push(c, kept, jv_incref(l->v[i]));
            jv_decref(c, ok);
            release_scope(c, t);
        }
        jv_decref(c, items);
        items = kept;
    }
    jlist *l = jv_list(items);
    if (l->n == 0) {
        jv_decref(c, items);
        exec_block(c, s, &n->kids2);
        return;
    }
    // Loop objects carry the iterated list and the position; they are created here.
    // loop.depth counts recursive-loop levels in jinja2; recursive loops are not supported, so it is 1
    jv loopv = jv_loop_new(c, items, 1);
    jloop *lp = (jloop *)loopv.o;
    for (size_t i = 0; i < l->n; i++) {
        if (++c->steps > c->max_steps)
            jraise(c, "template runs too long (more than %llu loop iterations)", (unsigned long long)c->max_steps);
        lp->index0 = (int64_t)i;
        jscope *it = jscope_new(c, s);
        jscope_set(c, it, "loop", jv_incref(loopv));
        assign(c, it, n->a, jv_incref(l->v[i]));
        exec_block(c, it, &n->kids);
        release_scope(c, it);
        if (c->ctl == CTL_BREAK) {
            c->ctl = CTL_NONE;
            break;
        }
        if (c->ctl == CTL_CONTINUE) c->ctl = CTL_NONE;
    }
    jv_decref(c, loopv);
    jv_decref(c, items);
}

// Executes one statement, writing to the current capture.
static void exec_node(jctx *c, jscope *s, const jnode *n) {
    c->line = n->line;
    switch (n->kind) {
    case N_TEXT: jbuf_put(c, out_cur(c), n->s, n->len); return;
    case N_OUTPUT: {
        jv v = eval(c, s, n->a);
        jv_write_str(c, out_cur(c), v);
        jv_decref(c, v);
        return;
    }
    case N_IF: {
        jv t = eval(c, s, n->a);
        bool yes = jv_truthy(t);
        jv_decref(c, t);
        exec_block(c, s, yes ? &n->kids : &n->kids2);
        return;
    }
    case N_FOR: exec_for(c, s, n); return;
    case N_SET: assign(c, s, n->a, eval(c, s, n->b)); return;
    case N_SETBLOCK: {
        out_push(c);
        exec_block(c, s, &n->kids);
        jv v = out_pop(c);
        assign(c, s, n->a, apply_filter_chain(c, s, n->b, v));
        return;
    }
    case N_MACRO: {
        jv f = jfunc_new(c, FK_MACRO, 0, jv_undef());
        jfunc *fn = (jfunc *)f.o;
        fn->node = n;
        fn->closure = s;
        s->h.rc++;
        jscope_set(c, s, n->s, f);
        return;
    }
    case N_CALLBLOCK: {
        jv caller = jfunc_new(c, FK_CALLER, 0, jv_undef());
        jfunc *cf = (jfunc *)caller.o;
        cf->node = n;
        cf->closure = s;
        s->h.rc++;
        const jnode *call = n->a;
        jv fn = eval(c, s, call->a);
        evargs ea;
        eval_args(c, s, &call->kids, &ea);
        c->line = n->line;
        if (fn.t != JV_FUNC || ((jfunc *)fn.o)->fk != FK_MACRO)
            jraise(c, "'call' block needs a macro, got %s", jv_type_name(fn));
        jv r = call_macro(c, (jfunc *)fn.o, &ea.a, caller);
        free_args(c, &ea);
        jbuf_put(c, out_cur(c), jv_str(r)->s, jv_str(r)->len);
        jv_decref(c, r);
        jv_decref(c, fn);
        jv_decref(c, caller);
        return;
    }
    case N_FILTERBLOCK: {
        out_push(c);
        exec_block(c, s, &n->kids);
        jv v = apply_filter_chain(c, s, n->b, out_pop(c));
        jv_write_str(c, out_cur(c), v);
        jv_decref(c, v);
        return;
    }
    case N_WITH: {
        jscope *w = jscope_new(c, s);
        for (int i = 0; i < n->kids2.n; i++) {
            jv v = eval(c, s, n->kids2.v[i]->b);
            assign(c, w, n->kids2.v[i]->a, v);
        }
        exec_block(c, w, &n->kids);
        release_scope(c, w);
        return;
    }
    case N_BREAK: c->ctl = CTL_BREAK; return;
    case N_CONTINUE: c->ctl = CTL_CONTINUE; return;
    case N_BLOCK: exec_block(c, s, &n->kids); return;
    default: jraise(c, "expression used as a statement");
    }
}

// Bounds the C stack: statements and expressions nest through macro calls as well as through the AST.
static void exec_stmt(jctx *c, jscope *s, const jnode *n) {
    if (++c->edepth > MAX_EVAL_DEPTH) jraise(c, "template nests too deeply while rendering (macro recursion?)");
    exec_node(c, s, n);
    c->edepth--;
}

// Executes statements until the end or a break/continue.
static void exec_block(jctx *c, jscope *s, const jnodes *body) {
    for (int i = 0; i < body->n; i++) {
        exec_stmt(c, s, body->v[i]);
        if (c->ctl) return;
    }
}

// ---------------------------------------------------------------- public API

aero_status aero_chat_template_parse(aero_chat_template **out, const char *source, size_t len, aero_error *err) {
    if (!out || (!source && len)) return aero_fail(err, AERO_ERR_INVALID, "chat template: no template text");
    *out = NULL;
    if (len > MAX_TEMPLATE_BYTES)
        return aero_fail(err, AERO_ERR_INVALID, "chat template: %zu bytes is larger than the %u-byte limit", len,
                         MAX_TEMPLATE_BYTES);
    size_t bad;
    if (!jutf8_valid(source ? source : "", len, &bad)) {
        int line = 1;
        for (size_t i = 0; i < bad; i++) line += source[i] == '\n';
        return aero_fail(err, AERO_ERR_FORMAT, "chat template line %d: invalid UTF-8 at byte %zu", line, bad);
    }
    aero_chat_template *t = calloc(1, sizeof *t);
    if (!t) return aero_fail(err, AERO_ERR_NOMEM, "chat template: out of memory");
    jmp_buf jb;
    aero_error local;
    t->arena.jb = &jb;
    t->arena.err = err ? err : &local;
    if (setjmp(jb)) {
        jarena_free(&t->arena);
        free(t);
        return err ? err->code : AERO_ERR_FORMAT;
    }
    jtoks toks = {0};
    jlex(&t->arena, source ? source : "", len, &toks);
    t->root = jparse(&t->arena, &toks);
    t->max_steps = JCTX_MAX_STEPS;
    t->max_mem = JCTX_MAX_MEM;
    *out = t;
    return AERO_OK;
}

// Frees a parsed template (NULL is fine).
void aero_chat_template_free(aero_chat_template *t) {
    if (!t) return;
    jarena_free(&t->arena);
    free(t);
}

static const char *const reserved_inputs[] = {"messages"};

aero_status aero_chat_render(const aero_chat_template *t, const aero_chat_inputs *in, char **out, size_t *out_len,
                             aero_error *err) {
    if (!t || !in || !out) return aero_fail(err, AERO_ERR_INVALID, "chat template: missing template, inputs or output");
    *out = NULL;
    if (out_len) *out_len = 0;
    if (!in->messages || !json_is_array(in->messages))
        return aero_fail(err, AERO_ERR_INVALID, "chat template: messages must be a JSON array");
    if (in->tools && !json_is_array(in->tools) && !json_is_null(in->tools))
        return aero_fail(err, AERO_ERR_INVALID, "chat template: tools must be a JSON array");
    if (in->extra && !json_is_object(in->extra))
        return aero_fail(err, AERO_ERR_INVALID, "chat template: extra variables must be a JSON object");
    if (in->extra)
        for (size_t i = 0; i < sizeof reserved_inputs / sizeof reserved_inputs[0]; i++)
            if (json_object_get(in->extra, reserved_inputs[i]))
                return aero_fail(err, AERO_ERR_INVALID, "chat template: extra variables cannot replace '%s'",
                                 reserved_inputs[i]);
    aero_error local;
    jctx *c = malloc(sizeof *c);
    if (!c) return aero_fail(err, AERO_ERR_NOMEM, "chat template: out of memory");
    jctx_init(c, err ? err : &local);
    c->max_steps = t->max_steps;
    c->max_mem = t->max_mem;
    if (setjmp(c->jb)) {
        aero_status st = c->err->code;
        jctx_sweep(c);
        free(c);
        return st;
    }
    jscope *g = jscope_new(c, NULL);
    jglobals_install(c, g);
    jscope_set(c, g, "messages", jv_from_json(c, in->messages, 0));
    jscope_set(c, g, "tools", in->tools ? jv_from_json(c, in->tools, 0) : jv_none());
    jscope_set(c, g, "documents", jv_none());
    jscope_set(c, g, "add_generation_prompt", jv_bool(in->add_generation_prompt));
    jscope_set(c, g, "bos_token", jv_str_cstr(c, in->bos_token ? in->bos_token : ""));
    jscope_set(c, g, "eos_token", jv_str_cstr(c, in->eos_token ? in->eos_token : ""));
    if (in->extra) {
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)in->extra, key, val) jscope_set(c, g, key, jv_from_json(c, val, 0));
    }
    // the template's own top-level variables live in a scope below the inputs
    jscope *top = jscope_new(c, g);
    out_push(c);
    exec_block(c, top, &t->root->kids);
    jbuf *b = out_cur(c);
    char *res = malloc(b->n + 1);
    if (!res) jraise_oom(c);
    if (b->n) memcpy(res, b->p, b->n);
    res[b->n] = 0;
    if (out_len) *out_len = b->n;
    *out = res;
    jctx_sweep(c);
    free(c);
    return AERO_OK;
}

// The GGUF metadata key llama.cpp and HF converters write the template to.
const char *aero_chat_template_source_gguf(const aero_gguf *g) {
    return g ? aero_gguf_get_str(g, "tokenizer.chat_template") : NULL;
}

// Parses the model's own template; a model without one needs --chat-template-file.
aero_status aero_chat_template_from_gguf(aero_chat_template **out, const aero_gguf *g, aero_error *err) {
    const char *src = aero_chat_template_source_gguf(g);
    if (!src)
        return aero_fail(err, AERO_ERR_FORMAT,
                         "the model file has no chat template (GGUF key tokenizer.chat_template); "
                         "pass one with --chat-template-file");
    aero_status st = aero_chat_template_parse(out, src, strlen(src), err);
    if (st) aero_error_prefix(err, "tokenizer.chat_template: ");
    return st;
}

// --chat-template-file: a bare template, or the chat_template of a tokenizer_config.json.
aero_status aero_chat_template_load_file(aero_chat_template **out, const char *path, aero_error *err) {
    char *buf;
    size_t n;
    aero_status rd = aero_read_file(path, MAX_TEMPLATE_BYTES, &buf, &n, err);
    if (rd == AERO_ERR_RANGE)
        return aero_fail(err, AERO_ERR_INVALID, "%s: larger than the %u-byte template limit", path, MAX_TEMPLATE_BYTES);
    if (rd != AERO_OK) return rd;
    size_t pl = strlen(path);
    aero_status st;
    if (pl > 5 && !strcmp(path + pl - 5, ".json")) {
        json_error_t je;
        json_t *cfg = json_loadb(buf, n, 0, &je);
        free(buf);
        if (!cfg) return aero_fail(err, AERO_ERR_FORMAT, "%s:%d: %s", path, je.line, je.text);
        json_t *ct = json_object_get(cfg, "chat_template");
        const char *src = NULL;
        size_t slen = 0;
        if (json_is_string(ct)) {
            src = json_string_value(ct);
            slen = json_string_length(ct);
        } else if (json_is_array(ct)) {
            size_t i;
            json_t *e;
            json_array_foreach(ct, i, e) {
                if (json_is_string(json_object_get(e, "name")) &&
                    !strcmp(json_string_value(json_object_get(e, "name")), "default") &&
                    json_is_string(json_object_get(e, "template"))) {
                    src = json_string_value(json_object_get(e, "template"));
                    slen = json_string_length(json_object_get(e, "template"));
                }
            }
        }
        if (!src) {
            json_decref(cfg);
            return aero_fail(err, AERO_ERR_FORMAT, "%s: no \"chat_template\" string in this JSON file", path);
        }
        st = aero_chat_template_parse(out, src, slen, err);
        json_decref(cfg);
    } else {
        st = aero_chat_template_parse(out, buf, n, err);
        free(buf);
    }
    if (st) aero_error_prefix(err, "%s: ", path);
    return st;
}
