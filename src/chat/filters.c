// jinja2's built-in filters and tests as chat templates use them, with transformers' tojson (no HTML
// escaping, no key sorting, ensure_ascii off). String filters refuse non-string operands with a clear error
// instead of printing a Python repr into the prompt.
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja.h"

enum {
    F_ABS,
    F_ATTR,
    F_BATCH,
    F_CAPITALIZE,
    F_CENTER,
    F_COUNT,
    F_D,
    F_DEFAULT,
    F_DICTSORT,
    F_E,
    F_ESCAPE,
    F_FIRST,
    F_FLOAT,
    F_FORMAT,
    F_INDENT,
    F_INT,
    F_ITEMS,
    F_JOIN,
    F_LAST,
    F_LENGTH,
    F_LIST,
    F_LOWER,
    F_MAP,
    F_MAX,
    F_MIN,
    F_REJECT,
    F_REJECTATTR,
    F_REPLACE,
    F_REVERSE,
    F_ROUND,
    F_SAFE,
    F_SELECT,
    F_SELECTATTR,
    F_SORT,
    F_STRING,
    F_SUM,
    F_TITLE,
    F_TOJSON,
    F_TRIM,
    F_UNIQUE,
    F_UPPER,
    F_WORDCOUNT,
    F_COUNT_ALL
};

enum {
    T_BOOLEAN,
    T_CALLABLE,
    T_DEFINED,
    T_DIVISIBLEBY,
    T_EQ,
    T_EQUALTO,
    T_ESCAPED,
    T_EVEN,
    T_FALSE,
    T_FILTER,
    T_FLOAT,
    T_GE,
    T_GREATERTHAN,
    T_GT,
    T_IN,
    T_INTEGER,
    T_ITERABLE,
    T_LE,
    T_LESSTHAN,
    T_LOWER,
    T_LT,
    T_MAPPING,
    T_NE,
    T_NONE,
    T_NUMBER,
    T_ODD,
    T_SAMEAS,
    T_SEQUENCE,
    T_STRING,
    T_TEST,
    T_TRUE,
    T_UNDEFINED,
    T_UPPER,
    T_COUNT_ALL
};

// ---------------------------------------------------------------- helpers

// The items a for loop or a sequence filter sees: list/tuple as is, dict keys, string characters.
jv jv_iter_list(jctx *c, jv v) {
    switch ((jv_type)v.t) {
    case JV_LIST:
    case JV_TUPLE: return jv_incref(v);
    case JV_UNDEF: return jv_list_new(c, 0, false);
    case JV_DICT: {
        jdict *d = jv_dict(v);
        jv out = jv_list_new(c, d->n, false);
        for (size_t i = 0; i < d->n; i++) {
            jv k = {.t = JV_STR};
            k.o = &d->k[i]->h;
            jv_list_push(c, out, jv_incref(k));
        }
        return out;
    }
    case JV_STR: {
        const jstr *s = jv_str(v);
        jv out = jv_list_new(c, 0, false);
        size_t i = 0;
        while (i < s->len) {
            size_t at = i;
            jutf8_next(s->s, s->len, &i);
            jv_list_push(c, out, jv_str_new(c, s->s + at, i - at));
        }
        return out;
    }
    default: jraise(c, "'%s' object is not iterable", jv_type_name(v));
    }
}

// Looks up a dotted attribute path ("a.b", "0") on an item, as jinja2's make_attrgetter.
static jv attr_path(jctx *c, jv item, jv attr) {
    if (attr.t == JV_INT) return jget_item(c, item, attr);
    const jstr *p = jexpect_str(c, attr, "attribute");
    jv cur = jv_incref(item);
    size_t i = 0;
    while (i <= p->len) {
        const char *dot = memchr(p->s + i, '.', p->len - i);
        size_t e = dot ? (size_t)(dot - p->s) : p->len;
        jv key;
        bool digits = e > i;
        for (size_t k = i; k < e; k++) digits &= p->s[k] >= '0' && p->s[k] <= '9';
        if (digits) key = jv_int(strtoll(p->s + i, NULL, 10));
        else key = jv_str_new(c, p->s + i, e - i);
        jv next = cur.t == JV_UNDEF ? jv_undef() : jget_item(c, cur, key);
        jv_decref(c, key);
        jv_decref(c, cur);
        cur = next;
        if (!dot) break;
        i = e + 1;
    }
    return cur;
}

static bool is_numeric(jv v) { return v.t == JV_INT || v.t == JV_FLOAT || v.t == JV_BOOL; }
static double num(jv v) { return v.t == JV_FLOAT ? v.f : v.t == JV_INT ? (double)v.i : v.b; }

// Python int() of a string: optional sign, digits with underscores, surrounding whitespace; false if invalid.
static bool parse_pyint(const jstr *s, int64_t base, int64_t *out) {
    size_t lo = 0, hi = s->len;
    while (lo < hi && (s->s[lo] == ' ' || (s->s[lo] >= 9 && s->s[lo] <= 13))) lo++;
    while (hi > lo && (s->s[hi - 1] == ' ' || (s->s[hi - 1] >= 9 && s->s[hi - 1] <= 13))) hi--;
    if (lo == hi) return false;
    bool neg = false;
    if (s->s[lo] == '+' || s->s[lo] == '-') neg = s->s[lo++] == '-';
    if (base == 16 && hi - lo > 2 && s->s[lo] == '0' && (s->s[lo + 1] | 32) == 'x') lo += 2;
    if (lo == hi) return false;
    uint64_t v = 0;
    bool prev_us = true;
    for (size_t i = lo; i < hi; i++) {
        char ch = s->s[i];
        if (ch == '_') {
            if (prev_us) return false;
            prev_us = true;
            continue;
        }
        int d = ch >= '0' && ch <= '9' ? ch - '0' : (ch | 32) >= 'a' && (ch | 32) <= 'z' ? (ch | 32) - 'a' + 10 : 99;
        if (d >= base) return false;
        if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base) return false;
        v = v * (uint64_t)base + (uint64_t)d;
        prev_us = false;
    }
    if (prev_us) return false;
    if (v > (uint64_t)INT64_MAX + neg) return false;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

// Python float() of a string (underscores allowed, no hex); false when it is not a number.
static bool parse_pyfloat(const jstr *s, double *out) {
    char buf[128];
    size_t lo = 0, hi = s->len;
    while (lo < hi && (s->s[lo] == ' ' || (s->s[lo] >= 9 && s->s[lo] <= 13))) lo++;
    while (hi > lo && (s->s[hi - 1] == ' ' || (s->s[hi - 1] >= 9 && s->s[hi - 1] <= 13))) hi--;
    if (lo == hi || hi - lo >= sizeof buf) return false;
    size_t n = 0;
    for (size_t i = lo; i < hi; i++)
        if (s->s[i] != '_') buf[n++] = s->s[i];
    buf[n] = 0;
    char *end;
    double v = strtod(buf, &end);
    if (*end) return false;
    // strtod accepts hex floats; Python's float() does not
    for (size_t i = 0; i < n; i++)
        if ((buf[i] | 32) == 'x') return false;
    *out = v;
    return true;
}

// Adds without the silent wraparound Python's big integers never have.
static int64_t checked_add(jctx *c, int64_t a, int64_t b) {
    int64_t r;
    if (__builtin_add_overflow(a, b, &r)) jraise(c, "integer overflow (values beyond 64 bits are not supported)");
    return r;
}

// Stable merge sort (Python's sort is stable); comparisons may raise, so no qsort with hidden buffers.
typedef struct {
    jv key, item;
} sort_ent;

// Sorts e[0..n) by key, stable like Python's sort, using tmp as scratch.
static void merge_sort(jctx *c, sort_ent *e, sort_ent *tmp, size_t n, bool cs, bool rev) {
    if (n < 2) return;
    size_t h = n / 2;
    merge_sort(c, e, tmp, h, cs, rev);
    merge_sort(c, e + h, tmp, n - h, cs, rev);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) {
        int r = jv_compare(c, e[j].key, e[i].key, cs);
        if (rev) r = -r;
        tmp[k++] = r < 0 ? e[j++] : e[i++];
    }
    while (i < h) tmp[k++] = e[i++];
    while (j < n) tmp[k++] = e[j++];
    memcpy(e, tmp, n * sizeof *e);
}

// The sort/dictsort/min/max core: items ordered by themselves, an attribute path, or element i of pairs.
static jv sorted_list(jctx *c, jv seq, bool reverse, bool case_sensitive, jv attribute, bool by_value_of_pair) {
    jv items = jv_iter_list(c, seq);
    jlist *l = jv_list(items);
    sort_ent *e = jx_alloc(c, (l->n + 1) * sizeof *e), *tmp = jx_alloc(c, (l->n + 1) * sizeof *e);
    for (size_t i = 0; i < l->n; i++) {
        e[i].item = l->v[i];
        if (by_value_of_pair) e[i].key = jv_list(l->v[i])->v[attribute.i];
        else
            e[i].key = attribute.t == JV_MISSING || attribute.t == JV_NONE ? l->v[i] : attr_path(c, l->v[i], attribute);
    }
    merge_sort(c, e, tmp, l->n, case_sensitive, reverse);
    jv out = jv_list_new(c, l->n, false);
    for (size_t i = 0; i < l->n; i++) jv_list_push(c, out, jv_incref(e[i].item));
    jx_free(c, e);
    jx_free(c, tmp);
    jv_decref(c, items);
    return out;
}

// Applies the test named by a select/reject argument list (name, args...) to one item.
static bool run_named_test(jctx *c, jv item, const jargs *a, int first, const char *what) {
    if (a->npos <= first) return jv_truthy(item);
    if (a->pos[first].t != JV_STR) jraise(c, "%s: the test name must be a string", what);
    int tid = jtest_lookup(jv_str(a->pos[first])->s);
    if (tid < 0) jraise(c, "%s: unknown test '%s'", what, jv_str(a->pos[first])->s);
    jargs sub = {.pos = a->pos + first + 1, .npos = a->npos - first - 1, .kwk = a->kwk, .kwv = a->kwv, .nkw = a->nkw};
    return jtest_apply(c, tid, item, &sub);
}

// markupsafe's escape(): the five characters HTML cares about.
static void html_escape(jctx *c, jbuf *b, const jstr *s) {
    for (size_t i = 0; i < s->len; i++) {
        switch (s->s[i]) {
        case '&': jbuf_puts(c, b, "&amp;"); break;
        case '<': jbuf_puts(c, b, "&lt;"); break;
        case '>': jbuf_puts(c, b, "&gt;"); break;
        case '"': jbuf_puts(c, b, "&#34;"); break;
        case '\'': jbuf_puts(c, b, "&#39;"); break;
        default: jbuf_putc(c, b, s->s[i]);
        }
    }
}

// ---------------------------------------------------------------- filters

// `safe`: templates are rendered without autoescape, so marking a value safe leaves it as is.
static jv filter_safe(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[5];
    jargs_bind(c, what, a, NULL, 0, p);
    return jv_incref(v);
}

// `string`: the value as text, the way jinja2 prints it.
static jv filter_string(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[5];
    jargs_bind(c, what, a, NULL, 0, p);
    return jv_to_str(c, v);
}

// `abs`: Python's abs(), with the int64 overflow Python would not have reported as an error.
static jv filter_abs(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[5];
    jargs_bind(c, what, a, NULL, 0, p);
    if (v.t == JV_INT) {
        if (v.i == INT64_MIN) jraise(c, "integer overflow in abs");
        return jv_int(v.i < 0 ? -v.i : v.i);
    }
    if (v.t == JV_BOOL) return jv_int(v.b);
    if (v.t == JV_FLOAT) return jv_float(fabs(v.f));
    jraise(c, "bad operand type for abs(): '%s'", jv_type_name(v));
}

// `attr`: attribute lookup only, so a dict's keys do not answer (jinja2's getattr semantics).
static jv filter_attr(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[5];
    static const char *const n[] = {"name"};
    jargs_bind(c, what, a, n, 1, p);
    const jstr *name = jexpect_str(c, p[0], what);
    if (v.t == JV_DICT) {
        // attribute only: a dict's keys are not attributes
        jv m = jget_attr(c, v, name->s, name->len);
        if (m.t == JV_FUNC) return m;
        jv_decref(c, m);
        return jv_undef_hint(c, "'dict object' has no attribute '%s'", name->s);
    }
    return jget_attr(c, v, name->s, name->len);
}

// `batch`: rows of linecount items, the last one padded with fill_with when given.
static jv filter_batch(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[5];
    static const char *const n[] = {"linecount", "fill_with"};
    jargs_bind(c, what, a, n, 2, p);
    int64_t k = jexpect_int(c, p[0], what);
    if (k <= 0) jraise(c, "batch: linecount must be positive");
    jv items = jv_iter_list(c, v);
    jlist *l = jv_list(items);
    jv out = jv_list_new(c, 0, false), row = jv_undef();
    for (size_t i = 0; i < l->n; i++) {
        if (row.t == JV_UNDEF) row = jv_list_new(c, (size_t)k, false);
        jv_list_push(c, row, jv_incref(l->v[i]));
        if ((int64_t)jv_list(row)->n == k) {
            jv_list_push(c, out, row);
            row = jv_undef();
        }
    }
    if (row.t != JV_UNDEF) {
        if (p[1].t != JV_MISSING)
            while ((int64_t)jv_list(row)->n < k) jv_list_push(c, row, jv_incref(p[1]));
        jv_list_push(c, out, row);
    }
    jv_decref(c, items);
    return out;
}

// `capitalize`, `lower`, `upper`, `title`: jinja2's case filters (title uses jinja2's word rule).
static jv filter_case(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[5];
    jargs_bind(c, what, a, NULL, 0, p);
    return jstr_case(c, jexpect_str(c, v, what),
                     id == F_CAPITALIZE ? CASE_CAPITALIZE
                     : id == F_LOWER    ? CASE_LOWER
                     : id == F_UPPER    ? CASE_UPPER
                                        : CASE_JTITLE);
}

// `center`: str.center with jinja2's default width of 80.
static jv filter_center(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[5];
    static const char *const n[] = {"width"};
    jargs_bind(c, what, a, n, 1, p);
    jv self = jv_to_str(c, v);
    jv m = jget_attr(c, self, "center", 6);
    jargs sub = {.pos = p, .npos = p[0].t == JV_MISSING ? 0 : 1};
    jv w = jv_int(80);
    if (p[0].t == JV_MISSING) {
        sub.pos = &w;
        sub.npos = 1;
    }
    jv r = jcall_value(c, m, &sub);
    jv_decref(c, m);
    jv_decref(c, self);
    return r;
}

// `count` and `length`: len(), where an undefined value counts as empty.
static jv filter_length(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[5];
    jargs_bind(c, what, a, NULL, 0, p);
    switch ((jv_type)v.t) {
    case JV_STR: return jv_int((int64_t)jstr_cplen(jv_str(v)));
    case JV_LIST:
    case JV_TUPLE: return jv_int((int64_t)jv_list(v)->n);
    case JV_DICT: return jv_int((int64_t)jv_dict(v)->n);
    case JV_UNDEF: return jv_int(0);
    default: jraise(c, "object of type '%s' has no len()", jv_type_name(v));
    }
}

// `default` (alias `d`): a fallback for undefined values, or for falsy ones when boolean is true.
static jv filter_default(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[5];
    static const char *const n[] = {"default_value", "boolean"};
    jargs_bind(c, what, a, n, 2, p);
    bool boolean = p[1].t != JV_MISSING && jv_truthy(p[1]);
    if (v.t == JV_UNDEF || (boolean && !jv_truthy(v)))
        return p[0].t == JV_MISSING ? jv_str_new(c, "", 0) : jv_incref(p[0]);
    return jv_incref(v);
}

// `dictsort`: a mapping's (key, value) pairs sorted by key or by value.
static jv filter_dictsort(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[5];
    static const char *const n[] = {"case_sensitive", "by", "reverse"};
    jargs_bind(c, what, a, n, 3, p);
    if (v.t != JV_DICT) jraise(c, "dictsort needs a mapping, got %s", jv_type_name(v));
    int pos = 0;
    if (p[1].t != JV_MISSING) {
        const jstr *by = jexpect_str(c, p[1], what);
        if (!strcmp(by->s, "value")) pos = 1;
        else if (strcmp(by->s, "key")) jraise(c, "dictsort: You can only sort by either \"key\" or \"value\"");
    }
    jv m = jget_attr(c, v, "items", 5);
    jargs none = {0};
    jv items = jcall_value(c, m, &none);
    jv r = sorted_list(c, items, p[2].t != JV_MISSING && jv_truthy(p[2]), p[0].t != JV_MISSING && jv_truthy(p[0]),
                       jv_int(pos), true);
    jv_decref(c, items);
    jv_decref(c, m);
    return r;
}

// `escape` (alias `e`): HTML escaping, for templates that ask for it explicitly.
static jv filter_escape(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[5];
    jargs_bind(c, what, a, NULL, 0, p);
    jv s = jv_to_str(c, v);
    jbuf b = {0};
    html_escape(c, &b, jv_str(s));
    jv_decref(c, s);
    return jv_str_take_buf(c, &b);
}

// `first` and `last`: an end of a sequence, undefined (with a reason) when it is empty.
static jv filter_first_last(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[5];
    jargs_bind(c, what, a, NULL, 0, p);
    jv items = jv_iter_list(c, v);
    jlist *l = jv_list(items);
    jv r = l->n ? jv_incref(l->v[id == F_FIRST ? 0 : l->n - 1])
                : jv_undef_hint(c, "No %s item, sequence was empty.", id == F_FIRST ? "first" : "last");
    jv_decref(c, items);
    return r;
}

// `float`: Python's float() of the value, or the default when it does not convert.
static jv filter_float(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[5];
    static const char *const n[] = {"default"};
    jargs_bind(c, what, a, n, 1, p);
    jv def = p[0].t == JV_MISSING ? jv_float(0.0) : p[0];
    if (v.t == JV_FLOAT) return v;
    if (v.t == JV_INT) return jv_float((double)v.i);
    if (v.t == JV_BOOL) return jv_float(v.b);
    double d;
    if (v.t == JV_STR && parse_pyfloat(jv_str(v), &d)) return jv_float(d);
    return jv_incref(def);
}

// `int`: Python's int() of the value in a base, or the default when it does not convert.
static jv filter_int(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[5];
    static const char *const n[] = {"default", "base"};
    jargs_bind(c, what, a, n, 2, p);
    jv def = p[0].t == JV_MISSING ? jv_int(0) : p[0];
    int64_t base = p[1].t == JV_MISSING ? 10 : jexpect_int(c, p[1], what);
    if (base < 2 || base > 36) jraise(c, "int(): base must be between 2 and 36");
    if (v.t == JV_INT) return v;
    if (v.t == JV_BOOL) return jv_int(v.b);
    if (v.t == JV_FLOAT) {
        if (!isfinite(v.f) || fabs(v.f) >= 9.2e18) return jv_incref(def);
        return jv_int((int64_t)v.f); // truncation toward zero, as Python's int()
    }
    if (v.t == JV_STR) {
        int64_t i;
        if (parse_pyint(jv_str(v), base, &i)) return jv_int(i);
        double d;
        if (base == 10 && parse_pyfloat(jv_str(v), &d) && isfinite(d) && fabs(d) < 9.2e18) return jv_int((int64_t)d);
    }
    return jv_incref(def);
}

// `format`: printf-style formatting (`%`) with either positional or keyword arguments.
static jv filter_format(jctx *c, int id, jv v, const jargs *a, const char *what) {
    const jstr *f = jexpect_str(c, v, what);
    (void)f;
    if (a->nkw && a->npos) jraise(c, "format: can't handle positional and keyword arguments at the same time");
    if (a->nkw) {
        jv d = jv_dict_new(c, false);
        for (int k = 0; k < a->nkw; k++) jv_dict_set_cstr(c, d, a->kwk[k], jv_incref(a->kwv[k]));
        return jstr_percent(c, v, d);
    }
    jv t = jv_list_new(c, (size_t)a->npos, true);
    for (int k = 0; k < a->npos; k++) jv_list_push(c, t, jv_incref(a->pos[k]));
    return jstr_percent(c, v, t);
}

// `indent`: indents every line after the first (and the first or blank lines on request).
static jv filter_indent(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[5];
    static const char *const n[] = {"width", "first", "blank"};
    jargs_bind(c, what, a, n, 3, p);
    const jstr *s = jexpect_str(c, v, what);
    jbuf ind = {0};
    if (p[0].t == JV_STR) jbuf_put(c, &ind, jv_str(p[0])->s, jv_str(p[0])->len);
    else {
        int64_t w = p[0].t == JV_MISSING ? 4 : jexpect_int(c, p[0], what);
        if (w > 10000) jraise(c, "indent width too large");
        for (int64_t i = 0; i < w; i++) jbuf_putc(c, &ind, ' ');
    }
    bool first = p[1].t != JV_MISSING && jv_truthy(p[1]), blank = p[2].t != JV_MISSING && jv_truthy(p[2]);
    // jinja2: s += "\n", then splitlines(); lines after the first get the indent (blank ones only with blank)
    jbuf t = {0};
    jbuf_put(c, &t, s->s, s->len);
    jbuf_putc(c, &t, '\n');
    jv tmp = jv_str_take_buf(c, &t);
    jv meth = jget_attr(c, tmp, "splitlines", 10);
    jargs none = {0};
    jv sl = jcall_value(c, meth, &none);
    jv_decref(c, meth);
    jv_decref(c, tmp);
    jlist *lines = jv_list(sl);
    jbuf b = {0};
    if (first) jbuf_put(c, &b, ind.p ? ind.p : "", ind.n);
    for (size_t i = 0; i < lines->n; i++) {
        const jstr *ln = jv_str(lines->v[i]);
        if (i) {
            jbuf_putc(c, &b, '\n');
            if (blank || ln->len) jbuf_put(c, &b, ind.p ? ind.p : "", ind.n);
        }
        jbuf_put(c, &b, ln->s, ln->len);
    }
    jv_decref(c, sl);
    jx_free(c, ind.p);
    return jv_str_take_buf(c, &b);
}

// `items`: a mapping's (key, value) pairs; an undefined value gives an empty list.
static jv filter_items(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[5];
    jargs_bind(c, what, a, NULL, 0, p);
    if (v.t == JV_UNDEF) return jv_list_new(c, 0, false);
    if (v.t != JV_DICT) jraise(c, "Can only get item pairs from a mapping, got %s", jv_type_name(v));
    jv m = jget_attr(c, v, "items", 5);
    jargs none = {0};
    jv r = jcall_value(c, m, &none);
    jv_decref(c, m);
    return r;
}

// `join`: the items (or an attribute of each) written as text with a separator between them.
static jv filter_join(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[5];
    static const char *const n[] = {"d", "attribute"};
    jargs_bind(c, what, a, n, 2, p);
    const jstr *sep = p[0].t == JV_MISSING ? NULL : jexpect_str(c, p[0], what);
    jv items = jv_iter_list(c, v);
    jlist *l = jv_list(items);
    jbuf b = {0};
    for (size_t i = 0; i < l->n; i++) {
        if (i && sep) jbuf_put(c, &b, sep->s, sep->len);
        if (p[1].t != JV_MISSING && p[1].t != JV_NONE) {
            jv x = attr_path(c, l->v[i], p[1]);
            jv_write_str(c, &b, x);
            jv_decref(c, x);
        } else {
            jv_write_str(c, &b, l->v[i]);
        }
    }
    jv_decref(c, items);
    return jv_str_take_buf(c, &b);
}

// `list`: a fresh list of the items a for loop would see.
static jv filter_list(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[5];
    jargs_bind(c, what, a, NULL, 0, p);
    jv items = jv_iter_list(c, v);
    if (items.t == JV_LIST && items.o != v.o) return items;
    jlist *l = jv_list(items);
    jv out = jv_list_new(c, l->n, false);
    for (size_t i = 0; i < l->n; i++) jv_list_push(c, out, jv_incref(l->v[i]));
    jv_decref(c, items);
    return out;
}

// `map`: an attribute of each item, or another filter applied to each item.
static jv filter_map(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[5];
    jv items = jv_iter_list(c, v);
    jlist *l = jv_list(items);
    jv out = jv_list_new(c, l->n, false);
    if (a->npos == 0) {
        static const char *const n[] = {"attribute", "default"};
        jargs_bind(c, what, a, n, 2, p);
        if (p[0].t == JV_MISSING) jraise(c, "map: needs a filter name or attribute=");
        for (size_t i = 0; i < l->n; i++) {
            jv x = attr_path(c, l->v[i], p[0]);
            if (x.t == JV_UNDEF && p[1].t != JV_MISSING) {
                jv_decref(c, x);
                x = jv_incref(p[1]);
            }
            jv_list_push(c, out, x);
        }
    } else {
        if (a->pos[0].t != JV_STR) jraise(c, "map: the filter name must be a string");
        int fid = jfilter_lookup(jv_str(a->pos[0])->s);
        if (fid < 0) jraise(c, "map: unknown filter '%s'", jv_str(a->pos[0])->s);
        jargs sub = {.pos = a->pos + 1, .npos = a->npos - 1, .kwk = a->kwk, .kwv = a->kwv, .nkw = a->nkw};
        for (size_t i = 0; i < l->n; i++) jv_list_push(c, out, jfilter_apply(c, fid, l->v[i], &sub));
    }
    jv_decref(c, items);
    return out;
}

// `max` and `min`: the largest or smallest item (optionally by attribute), by sorting.
static jv filter_max_min(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[5];
    static const char *const n[] = {"case_sensitive", "attribute"};
    jargs_bind(c, what, a, n, 2, p);
    jv s = sorted_list(c, v, id == F_MAX, p[0].t != JV_MISSING && jv_truthy(p[0]), p[1], false);
    jlist *l = jv_list(s);
    jv r = l->n ? jv_incref(l->v[0]) : jv_undef_hint(c, "No aggregated item, sequence was empty.");
    jv_decref(c, s);
    return r;
}

// `select`, `reject`, `selectattr`, `rejectattr`: the items a test keeps or drops.
static jv filter_select_reject(jctx *c, int id, jv v, const jargs *a, const char *what) {
    bool attr = id == F_SELECTATTR || id == F_REJECTATTR, keep = id == F_SELECT || id == F_SELECTATTR;
    if (attr && a->npos < 1) jraise(c, "%s: missing the attribute name", what);
    jv items = jv_iter_list(c, v);
    jlist *l = jv_list(items);
    jv out = jv_list_new(c, 0, false);
    for (size_t i = 0; i < l->n; i++) {
        jv x = attr ? attr_path(c, l->v[i], a->pos[0]) : jv_incref(l->v[i]);
        bool r = run_named_test(c, x, a, attr ? 1 : 0, what);
        jv_decref(c, x);
        if (r == keep) jv_list_push(c, out, jv_incref(l->v[i]));
    }
    jv_decref(c, items);
    return out;
}

// `replace`: str.replace with an optional count.
static jv filter_replace(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[5];
    static const char *const n[] = {"old", "new", "count"};
    jargs_bind(c, what, a, n, 3, p);
    if (p[0].t == JV_MISSING || p[1].t == JV_MISSING) jraise(c, "%s needs the old and new strings", what);
    int64_t count = p[2].t == JV_MISSING || p[2].t == JV_NONE ? -1 : jexpect_int(c, p[2], what);
    return jstr_replace(c, jexpect_str(c, v, what), jexpect_str(c, p[0], what), jexpect_str(c, p[1], what), count);
}

// `reverse`: a string backwards or a reversed list of the items.
static jv filter_reverse(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[5];
    jargs_bind(c, what, a, NULL, 0, p);
    if (v.t == JV_STR) return jstr_slice_cp(c, jv_str(v), 0, 0, -1, false, false);
    jv items = jv_iter_list(c, v);
    jlist *l = jv_list(items);
    jv out = jv_list_new(c, l->n, false);
    for (size_t i = l->n; i-- > 0;) jv_list_push(c, out, jv_incref(l->v[i]));
    jv_decref(c, items);
    return out;
}

// `round`: rounding to a precision with jinja2's methods common, ceil and floor.
static jv filter_round(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[5];
    static const char *const n[] = {"precision", "method"};
    jargs_bind(c, what, a, n, 2, p);
    if (!is_numeric(v)) jraise(c, "round needs a number, got %s", jv_type_name(v));
    int64_t prec = p[0].t == JV_MISSING ? 0 : jexpect_int(c, p[0], what);
    const char *method = p[1].t == JV_MISSING ? "common" : jexpect_str(c, p[1], what)->s;
    if (prec < -30 || prec > 30) jraise(c, "round: precision out of range");
    double x = num(v), m = pow(10.0, (double)prec), r;
    if (!strcmp(method, "common")) {
        if (v.t != JV_FLOAT) return v.t == JV_BOOL ? jv_int(v.b) : v;
        if (prec >= 0 && isfinite(x)) {
            // Python rounds the exact binary value to prec decimals (2.675 -> 2.67), as printf does
            char buf[400];
            snprintf(buf, sizeof buf, "%.*f", (int)prec, x);
            r = strtod(buf, NULL);
        } else {
            r = nearbyint(x * m) / m; // half to even
        }
    } else if (!strcmp(method, "ceil")) r = ceil(x * m) / m;
    else if (!strcmp(method, "floor")) r = floor(x * m) / m;
    else jraise(c, "round: method must be 'common', 'ceil' or 'floor'");
    return jv_float(r);
}

// `sort`: the items sorted, optionally reversed, case sensitive or by attribute.
static jv filter_sort(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[5];
    static const char *const n[] = {"reverse", "case_sensitive", "attribute"};
    jargs_bind(c, what, a, n, 3, p);
    return sorted_list(c, v, p[0].t != JV_MISSING && jv_truthy(p[0]), p[1].t != JV_MISSING && jv_truthy(p[1]), p[2],
                       false);
}

// `sum`: the numeric total of the items (or an attribute of each) from a start value.
static jv filter_sum(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[5];
    static const char *const n[] = {"attribute", "start"};
    jargs_bind(c, what, a, n, 2, p);
    jv items = jv_iter_list(c, v);
    jlist *l = jv_list(items);
    jv acc = p[1].t == JV_MISSING ? jv_int(0) : p[1];
    for (size_t i = 0; i < l->n; i++) {
        jv x = p[0].t == JV_MISSING || p[0].t == JV_NONE ? jv_incref(l->v[i]) : attr_path(c, l->v[i], p[0]);
        if (!is_numeric(x) || !is_numeric(acc))
            jraise(c, "sum: unsupported operand types %s and %s", jv_type_name(acc), jv_type_name(x));
        if (acc.t != JV_FLOAT && x.t != JV_FLOAT)
            acc = jv_int(checked_add(c, acc.t == JV_BOOL ? acc.b : acc.i, x.t == JV_BOOL ? x.b : x.i));
        else acc = jv_float(num(acc) + num(x));
    }
    jv_decref(c, items);
    return jv_incref(acc);
}

// `tojson`: JSON as transformers configures it (no HTML escaping, indent and separators honoured).
static jv filter_tojson(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[5];
    static const char *const n[] = {"ensure_ascii", "indent", "separators", "sort_keys"};
    jargs_bind(c, what, a, n, 4, p);
    jjson_opts o = {.indent = -1, .indent_str = NULL, .item_sep = ", ", .key_sep = ": "};
    o.ensure_ascii = p[0].t != JV_MISSING && jv_truthy(p[0]);
    o.sort_keys = p[3].t != JV_MISSING && jv_truthy(p[3]);
    jbuf ind = {0};
    if (p[1].t == JV_STR) {
        jbuf_put(c, &ind, jv_str(p[1])->s, jv_str(p[1])->len);
        jbuf_putc(c, &ind, 0);
        o.indent_str = ind.p;
    } else if (p[1].t != JV_MISSING && p[1].t != JV_NONE) {
        int64_t w = jexpect_int(c, p[1], what);
        if (w > 1000) jraise(c, "tojson: indent too large");
        for (int64_t i = 0; i < w; i++) jbuf_putc(c, &ind, ' ');
        jbuf_putc(c, &ind, 0);
        o.indent_str = ind.p ? ind.p : "";
    }
    if (o.indent_str) o.item_sep = ",";
    if (p[2].t != JV_MISSING && p[2].t != JV_NONE) {
        if (!jv_is_seq(p[2]) || jv_list(p[2])->n != 2 || jv_list(p[2])->v[0].t != JV_STR ||
            jv_list(p[2])->v[1].t != JV_STR)
            jraise(c, "tojson: separators must be a pair of strings");
        o.item_sep = jv_str(jv_list(p[2])->v[0])->s;
        o.key_sep = jv_str(jv_list(p[2])->v[1])->s;
    }
    jbuf b = {0};
    jv_write_json(c, &b, v, &o, 0);
    jx_free(c, ind.p);
    return jv_str_take_buf(c, &b);
}

// `trim`: strips whitespace or the given characters from both ends.
static jv filter_trim(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[5];
    static const char *const n[] = {"chars"};
    jargs_bind(c, what, a, n, 1, p);
    const jstr *chars = p[0].t == JV_MISSING || p[0].t == JV_NONE ? NULL : jexpect_str(c, p[0], what);
    return jstr_strip(c, jexpect_str(c, v, what), chars, true, true);
}

// `unique`: items in first-seen order without repeats (case-insensitive by default).
static jv filter_unique(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[5];
    static const char *const n[] = {"case_sensitive", "attribute"};
    jargs_bind(c, what, a, n, 2, p);
    bool cs = p[0].t != JV_MISSING && jv_truthy(p[0]);
    jv items = jv_iter_list(c, v);
    jlist *l = jv_list(items);
    jv out = jv_list_new(c, 0, false), keys = jv_list_new(c, 0, false);
    for (size_t i = 0; i < l->n; i++) {
        jv k = p[1].t == JV_MISSING || p[1].t == JV_NONE ? jv_incref(l->v[i]) : attr_path(c, l->v[i], p[1]);
        if (!cs && k.t == JV_STR) {
            jv lk = jstr_case(c, jv_str(k), CASE_LOWER);
            jv_decref(c, k);
            k = lk;
        }
        bool seen = false;
        for (size_t j = 0; j < jv_list(keys)->n && !seen; j++) seen = jv_equal(c, jv_list(keys)->v[j], k, 0);
        if (seen) {
            jv_decref(c, k);
            continue;
        }
        jv_list_push(c, keys, k);
        jv_list_push(c, out, jv_incref(l->v[i]));
    }
    jv_decref(c, keys);
    jv_decref(c, items);
    return out;
}

// `wordcount`: the number of runs of word characters.
static jv filter_wordcount(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[5];
    jargs_bind(c, what, a, NULL, 0, p);
    const jstr *s = jexpect_str(c, v, what);
    int64_t k = 0;
    bool in = false;
    size_t i = 0;
    while (i < s->len) {
        uint32_t cp = jutf8_next(s->s, s->len, &i);
        bool w = jpy_isalnum(cp) || cp == '_';
        if (w && !in) k++;
        in = w;
    }
    return jv_int(k);
}
typedef jv (*filter_fn)(jctx *c, int id, jv v, const jargs *a, const char *what);

// Every filter by id: its name (for lookup and messages) and the function that applies it; aliases share one.
static const struct {
    const char *name;
    filter_fn fn;
} filters[F_COUNT_ALL] = {
    [F_ABS] = {"abs", filter_abs},
    [F_ATTR] = {"attr", filter_attr},
    [F_BATCH] = {"batch", filter_batch},
    [F_CAPITALIZE] = {"capitalize", filter_case},
    [F_CENTER] = {"center", filter_center},
    [F_COUNT] = {"count", filter_length},
    [F_D] = {"d", filter_default},
    [F_DEFAULT] = {"default", filter_default},
    [F_DICTSORT] = {"dictsort", filter_dictsort},
    [F_E] = {"e", filter_escape},
    [F_ESCAPE] = {"escape", filter_escape},
    [F_FIRST] = {"first", filter_first_last},
    [F_FLOAT] = {"float", filter_float},
    [F_FORMAT] = {"format", filter_format},
    [F_INDENT] = {"indent", filter_indent},
    [F_INT] = {"int", filter_int},
    [F_ITEMS] = {"items", filter_items},
    [F_JOIN] = {"join", filter_join},
    [F_LAST] = {"last", filter_first_last},
    [F_LENGTH] = {"length", filter_length},
    [F_LIST] = {"list", filter_list},
    [F_LOWER] = {"lower", filter_case},
    [F_MAP] = {"map", filter_map},
    [F_MAX] = {"max", filter_max_min},
    [F_MIN] = {"min", filter_max_min},
    [F_REJECT] = {"reject", filter_select_reject},
    [F_REJECTATTR] = {"rejectattr", filter_select_reject},
    [F_REPLACE] = {"replace", filter_replace},
    [F_REVERSE] = {"reverse", filter_reverse},
    [F_ROUND] = {"round", filter_round},
    [F_SAFE] = {"safe", filter_safe},
    [F_SELECT] = {"select", filter_select_reject},
    [F_SELECTATTR] = {"selectattr", filter_select_reject},
    [F_SORT] = {"sort", filter_sort},
    [F_STRING] = {"string", filter_string},
    [F_SUM] = {"sum", filter_sum},
    [F_TITLE] = {"title", filter_case},
    [F_TOJSON] = {"tojson", filter_tojson},
    [F_TRIM] = {"trim", filter_trim},
    [F_UNIQUE] = {"unique", filter_unique},
    [F_UPPER] = {"upper", filter_case},
    [F_WORDCOUNT] = {"wordcount", filter_wordcount},
};

// Resolves a filter name at parse time, so an unknown filter fails where jinja2 fails: at compile time.
int jfilter_lookup(const char *name) {
    for (int i = 0; i < F_COUNT_ALL; i++)
        if (!strcmp(filters[i].name, name)) return i;
    return -1;
}

// Applies filter `id` (from jfilter_lookup) to v; `what` names the filter in argument errors.
jv jfilter_apply(jctx *c, int id, jv v, const jargs *a) {
    if (id < 0 || id >= F_COUNT_ALL) jraise(c, "filter %d not implemented", id);
    char what[48];
    snprintf(what, sizeof what, "filter '%s'", filters[id].name);
    return filters[id].fn(c, id, v, a, what);
}

// ---------------------------------------------------------------- tests

// The single argument of the comparison tests.
static const char *const one_arg[] = {"other"};

// The tests on the operand's type or value alone (they take no arguments).
static bool test_type(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[1];
    jargs_bind(c, what, a, NULL, 0, p);
    switch (id) {
    case T_BOOLEAN: return v.t == JV_BOOL;
    case T_CALLABLE: return v.t == JV_FUNC;
    case T_DEFINED: return v.t != JV_UNDEF;
    case T_UNDEFINED: return v.t == JV_UNDEF;
    case T_NONE: return v.t == JV_NONE;
    case T_TRUE: return v.t == JV_BOOL && v.b;
    case T_FALSE: return v.t == JV_BOOL && !v.b;
    case T_STRING: return v.t == JV_STR;
    case T_MAPPING: return v.t == JV_DICT;
    case T_NUMBER: return v.t == JV_INT || v.t == JV_FLOAT || v.t == JV_BOOL;
    case T_INTEGER: return v.t == JV_INT;
    case T_FLOAT: return v.t == JV_FLOAT;
    case T_ESCAPED: return false;
    case T_ITERABLE: return v.t == JV_STR || v.t == JV_LIST || v.t == JV_TUPLE || v.t == JV_DICT || v.t == JV_UNDEF;
    case T_SEQUENCE: return v.t == JV_STR || v.t == JV_LIST || v.t == JV_TUPLE || v.t == JV_DICT || v.t == JV_UNDEF;
    }
    return false;
}

// `lower` and `upper`: all cased characters in one case, and at least one of them (Python's islower/isupper).
static bool test_case(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[1];
    jargs_bind(c, what, a, NULL, 0, p);
    jv s = jv_to_str(c, v);
    const jstr *x = jv_str(s);
    bool cased = false, ok = true;
    size_t i = 0;
    while (i < x->len && ok) {
        uint32_t cp = jutf8_next(x->s, x->len, &i);
        if (id == T_LOWER) {
            ok = !jpy_isupper(cp);
            cased |= jpy_islower(cp);
        } else {
            ok = !jpy_islower(cp);
            cased |= jpy_isupper(cp);
        }
    }
    jv_decref(c, s);
    return ok && cased;
}

// `odd`, `even`, `divisibleby`: Python's modulo (the sign follows the divisor), floats included.
static bool test_modulo(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[1];
    int64_t d = 2;
    if (id == T_DIVISIBLEBY) {
        static const char *const n[] = {"num"};
        jargs_bind(c, what, a, n, 1, p);
        d = jexpect_int(c, p[0], what);
        if (d == 0) jraise(c, "divisibleby: integer modulo by zero");
    } else {
        jargs_bind(c, what, a, NULL, 0, p);
    }
    if (v.t == JV_FLOAT) {
        double r = fmod(v.f, (double)d);
        if (r != 0 && (r < 0) != (d < 0)) r += (double)d;
        return id == T_ODD ? r == 1 : r == 0;
    }
    int64_t x = jexpect_int(c, v, what);
    int64_t r = d == -1 ? 0 : x % d;
    if (r != 0 && (r < 0) != (d < 0)) r += d;
    return id == T_ODD ? r == 1 : r == 0;
}

// `eq` (alias `equalto`) and `ne`: Python equality.
static bool test_equal(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[1];
    jargs_bind(c, what, a, one_arg, 1, p);
    return jv_equal(c, v, p[0], 0) == (id != T_NE);
}

// The ordering tests `lt`, `le`, `gt`, `ge` and their long names.
static bool test_order(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[1];
    jargs_bind(c, what, a, one_arg, 1, p);
    int r = jv_compare(c, v, p[0], true);
    if (id == T_LT || id == T_LESSTHAN) return r < 0;
    if (id == T_LE) return r <= 0;
    if (id == T_GT || id == T_GREATERTHAN) return r > 0;
    return r >= 0;
}

// `sameas`: the same object (identity), or equal for values that are not objects.
static bool test_sameas(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[1];
    jargs_bind(c, what, a, one_arg, 1, p);
    if (v.t != p[0].t) return false;
    if (jv_isobj(v)) return v.o == p[0].o;
    return jv_equal(c, v, p[0], 0);
}

// `in`: substring, mapping key or sequence member.
static bool test_in(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[1];
    static const char *const n[] = {"seq"};
    jargs_bind(c, what, a, n, 1, p);
    jv seq = p[0];
    if (seq.t == JV_STR) {
        const jstr *x = jexpect_str(c, v, "'in <string>'");
        return memmem(jv_str(seq)->s, jv_str(seq)->len, x->s, x->len) != NULL || x->len == 0;
    }
    if (seq.t == JV_DICT) return v.t == JV_STR && jv_dict_get(seq, jv_str(v)->s, jv_str(v)->len);
    jv items = jv_iter_list(c, seq);
    bool found = false;
    for (size_t i = 0; i < jv_list(items)->n && !found; i++) found = jv_equal(c, jv_list(items)->v[i], v, 0);
    jv_decref(c, items);
    return found;
}

// `filter` and `test`: whether a name is a known filter or test.
static bool test_known_name(jctx *c, int id, jv v, const jargs *a, const char *what) {
    jv p[1];
    jargs_bind(c, what, a, NULL, 0, p);
    if (v.t != JV_STR) return false;
    return id == T_FILTER ? jfilter_lookup(jv_str(v)->s) >= 0 : jtest_lookup(jv_str(v)->s) >= 0;
}

typedef bool (*test_fn)(jctx *c, int id, jv v, const jargs *a, const char *what);

// Every test by id: its name (for lookup and messages) and the function that applies it; aliases share one.
static const struct {
    const char *name;
    test_fn fn;
} tests[T_COUNT_ALL] = {
    [T_BOOLEAN] = {"boolean", test_type},
    [T_CALLABLE] = {"callable", test_type},
    [T_DEFINED] = {"defined", test_type},
    [T_DIVISIBLEBY] = {"divisibleby", test_modulo},
    [T_EQ] = {"eq", test_equal},
    [T_EQUALTO] = {"equalto", test_equal},
    [T_ESCAPED] = {"escaped", test_type},
    [T_EVEN] = {"even", test_modulo},
    [T_FALSE] = {"false", test_type},
    [T_FILTER] = {"filter", test_known_name},
    [T_FLOAT] = {"float", test_type},
    [T_GE] = {"ge", test_order},
    [T_GREATERTHAN] = {"greaterthan", test_order},
    [T_GT] = {"gt", test_order},
    [T_IN] = {"in", test_in},
    [T_INTEGER] = {"integer", test_type},
    [T_ITERABLE] = {"iterable", test_type},
    [T_LE] = {"le", test_order},
    [T_LESSTHAN] = {"lessthan", test_order},
    [T_LOWER] = {"lower", test_case},
    [T_LT] = {"lt", test_order},
    [T_MAPPING] = {"mapping", test_type},
    [T_NE] = {"ne", test_equal},
    [T_NONE] = {"none", test_type},
    [T_NUMBER] = {"number", test_type},
    [T_ODD] = {"odd", test_modulo},
    [T_SAMEAS] = {"sameas", test_sameas},
    [T_SEQUENCE] = {"sequence", test_type},
    [T_STRING] = {"string", test_type},
    [T_TEST] = {"test", test_known_name},
    [T_TRUE] = {"true", test_type},
    [T_UNDEFINED] = {"undefined", test_type},
    [T_UPPER] = {"upper", test_case},
};

// Resolves a test name at parse time (an unknown test is a parse error, as in jinja2).
int jtest_lookup(const char *name) {
    for (int i = 0; i < T_COUNT_ALL; i++)
        if (!strcmp(tests[i].name, name)) return i;
    return -1;
}

// Applies test `id` (from jtest_lookup) to v; `what` names the test in argument errors.
bool jtest_apply(jctx *c, int id, jv v, const jargs *a) {
    if (id < 0 || id >= T_COUNT_ALL) jraise(c, "test %d not implemented", id);
    char what[48];
    snprintf(what, sizeof what, "test '%s'", tests[id].name);
    return tests[id].fn(c, id, v, a, what);
}
