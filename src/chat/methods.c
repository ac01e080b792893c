// Attribute and item access, str/dict/list methods and the global functions chat templates call: the
// Python behaviour jinja2 exposes through its immutable sandbox (templates can read but never modify data).
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jinja.h"

enum {
    // str
    M_CAPITALIZE,
    M_CASEFOLD,
    M_CENTER,
    M_COUNT,
    M_ENDSWITH,
    M_FIND,
    M_FORMAT,
    M_INDEX,
    M_ISALNUM,
    M_ISALPHA,
    M_ISDIGIT,
    M_ISLOWER,
    M_ISSPACE,
    M_ISUPPER,
    M_JOIN,
    M_LJUST,
    M_LOWER,
    M_LSTRIP,
    M_PARTITION,
    M_REMOVEPREFIX,
    M_REMOVESUFFIX,
    M_REPLACE,
    M_RFIND,
    M_RINDEX,
    M_RJUST,
    M_RPARTITION,
    M_RSPLIT,
    M_RSTRIP,
    M_SPLIT,
    M_SPLITLINES,
    M_STARTSWITH,
    M_STRIP,
    M_SWAPCASE,
    M_TITLE,
    M_UPPER,
    M_ZFILL,
    // dict
    M_DGET,
    M_DITEMS,
    M_DKEYS,
    M_DVALUES,
    M_DCOPY,
    // list / tuple
    M_LINDEX,
    M_LCOUNT,
    M_LCOPY,
    // loop
    M_LOOP_CYCLE,
    M_LOOP_CHANGED,
};

static const char *const str_methods[] = {
    [M_CAPITALIZE] = "capitalize",
    [M_CASEFOLD] = "casefold",
    [M_CENTER] = "center",
    [M_COUNT] = "count",
    [M_ENDSWITH] = "endswith",
    [M_FIND] = "find",
    [M_FORMAT] = "format",
    [M_INDEX] = "index",
    [M_ISALNUM] = "isalnum",
    [M_ISALPHA] = "isalpha",
    [M_ISDIGIT] = "isdigit",
    [M_ISLOWER] = "islower",
    [M_ISSPACE] = "isspace",
    [M_ISUPPER] = "isupper",
    [M_JOIN] = "join",
    [M_LJUST] = "ljust",
    [M_LOWER] = "lower",
    [M_LSTRIP] = "lstrip",
    [M_PARTITION] = "partition",
    [M_REMOVEPREFIX] = "removeprefix",
    [M_REMOVESUFFIX] = "removesuffix",
    [M_REPLACE] = "replace",
    [M_RFIND] = "rfind",
    [M_RINDEX] = "rindex",
    [M_RJUST] = "rjust",
    [M_RPARTITION] = "rpartition",
    [M_RSPLIT] = "rsplit",
    [M_RSTRIP] = "rstrip",
    [M_SPLIT] = "split",
    [M_SPLITLINES] = "splitlines",
    [M_STARTSWITH] = "startswith",
    [M_STRIP] = "strip",
    [M_SWAPCASE] = "swapcase",
    [M_TITLE] = "title",
    [M_UPPER] = "upper",
    [M_ZFILL] = "zfill",
};

// Name of a method id, for error messages.
static const char *method_name(int id) {
    if (id <= M_ZFILL) return str_methods[id];
    switch (id) {
    case M_DGET: return "get";
    case M_DITEMS: return "items";
    case M_DKEYS: return "keys";
    case M_DVALUES: return "values";
    case M_DCOPY:
    case M_LCOPY: return "copy";
    case M_LINDEX: return "index";
    case M_LCOUNT: return "count";
    case M_LOOP_CYCLE: return "cycle";
    case M_LOOP_CHANGED: return "changed";
    }
    return "?";
}

static bool name_is(const char *name, size_t len, const char *lit) {
    return strlen(lit) == len && !memcmp(name, lit, len);
}

static jv bound(jctx *c, int id, jv self) { return jfunc_new(c, FK_METHOD, id, jv_incref(self)); }

// Using an undefined value is an error that says why it is undefined (jinja2's UndefinedError).
_Noreturn static void raise_undefined(jctx *c, jv u) {
    if (u.o) jraise(c, "%s", jv_str(u)->s);
    jraise(c, "use of an undefined value");
}

// The error jinja2's sandbox gives when a template reaches for a method that would modify its data.
_Noreturn static void raise_unsafe(jctx *c, const char *type, const char *name, size_t len) {
    jraise(c, "access to %s.%.*s() is not allowed: chat templates cannot modify their inputs", type, (int)len, name);
}

// The attributes of jinja2's LoopContext.
static jv loop_attr(jctx *c, jv obj, const char *name, size_t len) {
    jloop *l = (jloop *)obj.o;
    jlist *items = jv_list(l->items);
    if (name_is(name, len, "index")) return jv_int(l->index0 + 1);
    if (name_is(name, len, "index0")) return jv_int(l->index0);
    if (name_is(name, len, "revindex")) return jv_int(l->length - l->index0);
    if (name_is(name, len, "revindex0")) return jv_int(l->length - l->index0 - 1);
    if (name_is(name, len, "first")) return jv_bool(l->index0 == 0);
    if (name_is(name, len, "last")) return jv_bool(l->index0 == l->length - 1);
    if (name_is(name, len, "length")) return jv_int(l->length);
    if (name_is(name, len, "depth")) return jv_int(l->depth);
    if (name_is(name, len, "depth0")) return jv_int(l->depth - 1);
    if (name_is(name, len, "previtem"))
        return l->index0 > 0 ? jv_incref(items->v[l->index0 - 1]) : jv_undef_hint(c, "there is no previous item");
    if (name_is(name, len, "nextitem"))
        return l->index0 + 1 < l->length ? jv_incref(items->v[l->index0 + 1])
                                         : jv_undef_hint(c, "there is no next item");
    if (name_is(name, len, "cycle")) return bound(c, M_LOOP_CYCLE, obj);
    if (name_is(name, len, "changed")) return bound(c, M_LOOP_CHANGED, obj);
    return jv_undef_hint(c, "'LoopContext' object has no attribute '%.*s'", (int)len, name);
}

// `obj.name`: Python attribute first (methods), then item, as jinja2's Environment.getattr.
jv jget_attr(jctx *c, jv obj, const char *name, size_t len) {
    switch ((jv_type)obj.t) {
    case JV_UNDEF: raise_undefined(c, obj);
    case JV_DICT: {
        if (name_is(name, len, "get")) return bound(c, M_DGET, obj);
        if (name_is(name, len, "items")) return bound(c, M_DITEMS, obj);
        if (name_is(name, len, "keys")) return bound(c, M_DKEYS, obj);
        if (name_is(name, len, "values")) return bound(c, M_DVALUES, obj);
        if (name_is(name, len, "copy")) return bound(c, M_DCOPY, obj);
        if (name_is(name, len, "pop") || name_is(name, len, "popitem") || name_is(name, len, "setdefault") ||
            name_is(name, len, "update") || name_is(name, len, "clear"))
            raise_unsafe(c, "dict", name, len);
        jv *v = jv_dict_get(obj, name, len);
        if (v) return jv_incref(*v);
        return jv_undef_hint(c, "'dict object' has no attribute '%.*s'", (int)len, name);
    }
    case JV_NS: {
        jv *v = jv_dict_get(obj, name, len);
        if (v) return jv_incref(*v);
        return jv_undef_hint(c, "'Namespace' object has no attribute '%.*s'", (int)len, name);
    }
    case JV_STR:
        for (int i = 0; i <= M_ZFILL; i++)
            if (name_is(name, len, str_methods[i])) return bound(c, i, obj);
        return jv_undef_hint(c, "'str object' has no attribute '%.*s'", (int)len, name);
    case JV_LIST:
    case JV_TUPLE:
        if (name_is(name, len, "index")) return bound(c, M_LINDEX, obj);
        if (name_is(name, len, "count")) return bound(c, M_LCOUNT, obj);
        if (obj.t == JV_LIST && name_is(name, len, "copy")) return bound(c, M_LCOPY, obj);
        if (obj.t == JV_LIST &&
            (name_is(name, len, "append") || name_is(name, len, "extend") || name_is(name, len, "insert") ||
             name_is(name, len, "pop") || name_is(name, len, "remove") || name_is(name, len, "reverse") ||
             name_is(name, len, "sort") || name_is(name, len, "clear")))
            raise_unsafe(c, "list", name, len);
        return jv_undef_hint(c, "'%s object' has no attribute '%.*s'", jv_type_name(obj), (int)len, name);
    case JV_LOOP: return loop_attr(c, obj, name, len);
    default: return jv_undef_hint(c, "'%s object' has no attribute '%.*s'", jv_type_name(obj), (int)len, name);
    }
}

// `obj[key]`: item first, then attribute for string keys, as jinja2's Environment.getitem.
jv jget_item(jctx *c, jv obj, jv key) {
    if (obj.t == JV_UNDEF) raise_undefined(c, obj);
    if ((obj.t == JV_LIST || obj.t == JV_TUPLE || obj.t == JV_STR) && (key.t == JV_INT || key.t == JV_BOOL)) {
        int64_t i = key.t == JV_BOOL ? key.b : key.i;
        if (obj.t == JV_STR) {
            const jstr *s = jv_str(obj);
            int64_t n = (int64_t)jstr_cplen(s);
            int64_t k = i < 0 ? i + n : i;
            if (k < 0 || k >= n) return jv_undef_hint(c, "str object has no element %" PRId64, i);
            return jstr_slice_cp(c, s, k, k + 1, 1, true, true);
        }
        jlist *l = jv_list(obj);
        int64_t k = i < 0 ? i + (int64_t)l->n : i;
        if (k < 0 || k >= (int64_t)l->n)
            return jv_undef_hint(c, "%s object has no element %" PRId64, jv_type_name(obj), i);
        return jv_incref(l->v[k]);
    }
    if (obj.t == JV_DICT) {
        if (key.t == JV_STR) {
            jv *v = jv_dict_get(obj, jv_str(key)->s, jv_str(key)->len);
            if (v) return jv_incref(*v);
            return jget_attr(c, obj, jv_str(key)->s, jv_str(key)->len);
        }
        jbuf b = {0};
        jv_write_repr(c, &b, key, 0);
        jv u = jv_undef_hint(c, "'dict object' has no element %s", b.p ? b.p : "");
        jx_free(c, b.p);
        return u;
    }
    if (key.t == JV_STR) return jget_attr(c, obj, jv_str(key)->s, jv_str(key)->len);
    return jv_undef_hint(c, "'%s object' has no element of type %s", jv_type_name(obj), jv_type_name(key));
}

// ---------------------------------------------------------------- argument helpers

void jargs_bind(jctx *c, const char *what, const jargs *a, const char *const *names, int n, jv *out) {
    for (int i = 0; i < n; i++) out[i] = jv_missing();
    if (a->npos > n) jraise(c, "%s takes at most %d argument(s) (%d given)", what, n, a->npos);
    for (int i = 0; i < a->npos; i++) out[i] = a->pos[i];
    for (int k = 0; k < a->nkw; k++) {
        int j;
        for (j = 0; j < n; j++)
            if (!strcmp(names[j], a->kwk[k])) break;
        if (j == n) jraise(c, "%s got an unexpected keyword argument '%s'", what, a->kwk[k]);
        if (out[j].t != JV_MISSING) jraise(c, "%s got multiple values for argument '%s'", what, a->kwk[k]);
        out[j] = a->kwv[k];
    }
}

// Argument checking for string parameters; Undefined reads as "" as jinja2 prints it.
const jstr *jexpect_str(jctx *c, jv v, const char *what) {
    if (v.t == JV_STR) return jv_str(v);
    if (v.t == JV_UNDEF) return jv_str(jv_str_new(c, "", 0));
    jraise(c, "%s expects a string, got %s", what, jv_type_name(v));
}

// Argument checking for integer parameters (bool counts, as in Python).
int64_t jexpect_int(jctx *c, jv v, const char *what) {
    if (v.t == JV_INT) return v.i;
    if (v.t == JV_BOOL) return v.b;
    jraise(c, "%s expects an integer, got %s", what, jv_type_name(v));
}

// ---------------------------------------------------------------- string helpers

static bool in_chars(const jstr *chars, uint32_t cp) {
    if (!chars) return jpy_isspace(cp);
    size_t i = 0;
    while (i < chars->len)
        if (jutf8_next(chars->s, chars->len, &i) == cp) return true;
    return false;
}

// Python's strip/lstrip/rstrip: Python whitespace, or the given characters.
jv jstr_strip(jctx *c, const jstr *s, const jstr *chars, bool left, bool right) {
    size_t lo = 0, hi = s->len;
    if (left) {
        while (lo < hi) {
            size_t j = lo;
            if (!in_chars(chars, jutf8_next(s->s, s->len, &j))) break;
            lo = j;
        }
    }
    if (right) {
        size_t i = lo, keep = lo;
        while (i < hi) {
            uint32_t cp = jutf8_next(s->s, hi, &i);
            if (!in_chars(chars, cp)) keep = i;
        }
        hi = keep;
    }
    return jv_str_new(c, s->s + lo, hi - lo);
}

// Appends one code point as UTF-8.
static void put_cp(jctx *c, jbuf *b, uint32_t cp) {
    char tmp[4];
    jbuf_put(c, b, tmp, jutf8_put(tmp, cp));
}

// Case conversions of str methods and filters, by code point.
jv jstr_case(jctx *c, const jstr *s, jcase mode) {
    jbuf b = {0};
    size_t i = 0;
    bool prev_cased = false, first = true, word_start = true;
    while (i < s->len) {
        uint32_t cp = jutf8_next(s->s, s->len, &i), out = cp;
        switch (mode) {
        case CASE_UPPER: {
            // Python's full mappings that expand to two or three letters
            const char *full = cp == 0xDF                     ? "SS"
                               : cp == 0xFB00                 ? "FF"
                               : cp == 0xFB01                 ? "FI"
                               : cp == 0xFB02                 ? "FL"
                               : cp == 0xFB03                 ? "FFI"
                               : cp == 0xFB04                 ? "FFL"
                               : cp == 0xFB05 || cp == 0xFB06 ? "ST"
                                                              : NULL;
            if (full) {
                jbuf_puts(c, &b, full);
                first = false;
                continue;
            }
            out = jpy_upper(cp);
            break;
        }
        case CASE_LOWER: out = jpy_lower(cp); break;
        case CASE_CAPITALIZE: out = first ? jpy_upper(cp) : jpy_lower(cp); break;
        case CASE_SWAP: out = jpy_isupper(cp) ? jpy_lower(cp) : jpy_upper(cp); break;
        case CASE_PYTITLE: {
            // str.title(): a cased letter after an uncased one starts a word
            bool cased = jpy_isalpha(cp);
            out = cased ? (prev_cased ? jpy_lower(cp) : jpy_upper(cp)) : cp;
            prev_cased = cased;
            break;
        }
        case CASE_JTITLE: {
            // jinja2's title filter: words start after whitespace or one of - ( { [ <
            bool sep = jpy_isspace(cp) || cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<';
            out = sep ? cp : word_start ? jpy_upper(cp) : jpy_lower(cp);
            word_start = sep;
            break;
        }
        }
        first = false;
        put_cp(c, &b, out);
    }
    return jv_str_take_buf(c, &b);
}

// Python's str.replace (count < 0: all), including the empty-pattern case.
jv jstr_replace(jctx *c, const jstr *s, const jstr *old, const jstr *rep, int64_t count) {
    jbuf b = {0};
    if (count < 0) count = INT64_MAX;
    if (old->len == 0) {
        // Python inserts the replacement before every code point and at the end
        size_t i = 0;
        while (i < s->len && count > 0) {
            jbuf_put(c, &b, rep->s, rep->len);
            count--;
            size_t at = i;
            jutf8_next(s->s, s->len, &i);
            jbuf_put(c, &b, s->s + at, i - at);
        }
        jbuf_put(c, &b, s->s + i, s->len - i);
        if (count > 0) jbuf_put(c, &b, rep->s, rep->len);
        return jv_str_take_buf(c, &b);
    }
    size_t i = 0;
    while (i < s->len) {
        const char *hit = count > 0 ? memmem(s->s + i, s->len - i, old->s, old->len) : NULL;
        if (!hit) break;
        size_t at = (size_t)(hit - s->s);
        jbuf_put(c, &b, s->s + i, at - i);
        jbuf_put(c, &b, rep->s, rep->len);
        i = at + old->len;
        count--;
    }
    jbuf_put(c, &b, s->s + i, s->len - i);
    if (!b.p) return jv_str_new(c, "", 0);
    return jv_str_take_buf(c, &b);
}

// Steps *i back to the start of the previous code point and decodes it.
static uint32_t prev_cp(const char *s, size_t *i) {
    size_t p = *i;
    size_t end = p;
    do p--;
    while (p > 0 && ((unsigned char)s[p] & 0xC0) == 0x80 && end - p < 4);
    *i = p;
    size_t j = p;
    return jutf8_next(s, end, &j);
}

// str.split() without a separator: runs of whitespace separate, leading and trailing ones give nothing.
static void split_ws(jctx *c, jv out, const jstr *s, int64_t maxsplit) {
    size_t i = 0;
    for (;;) {
        while (i < s->len) {
            size_t j = i;
            if (!jpy_isspace(jutf8_next(s->s, s->len, &j))) break;
            i = j;
        }
        if (i >= s->len) return;
        if (maxsplit == 0) {
            jv_list_push(c, out, jv_str_new(c, s->s + i, s->len - i));
            return;
        }
        size_t st = i;
        while (i < s->len) {
            size_t j = i;
            if (jpy_isspace(jutf8_next(s->s, s->len, &j))) break;
            i = j;
        }
        jv_list_push(c, out, jv_str_new(c, s->s + st, i - st));
        maxsplit--;
    }
}

// str.split(sep): every occurrence separates, up to maxsplit of them.
static void split_sep(jctx *c, jv out, const jstr *s, const jstr *sep, int64_t maxsplit) {
    size_t i = 0;
    for (;;) {
        const char *hit = maxsplit > 0 ? memmem(s->s + i, s->len - i, sep->s, sep->len) : NULL;
        if (!hit) {
            jv_list_push(c, out, jv_str_new(c, s->s + i, s->len - i));
            return;
        }
        size_t at = (size_t)(hit - s->s);
        jv_list_push(c, out, jv_str_new(c, s->s + i, at - i));
        i = at + sep->len;
        maxsplit--;
    }
}

// str.rsplit() without a separator, collecting the parts right to left.
static void rsplit_ws(jctx *c, jv out, const jstr *s, int64_t maxsplit) {
    size_t hi = s->len;
    for (;;) {
        while (hi > 0) {
            size_t q = hi;
            if (!jpy_isspace(prev_cp(s->s, &q))) break;
            hi = q;
        }
        if (hi == 0) return;
        if (maxsplit == 0) {
            // the unsplit rest keeps its leading whitespace, as in Python
            jv_list_push(c, out, jv_str_new(c, s->s, hi));
            return;
        }
        size_t st = hi;
        while (st > 0) {
            size_t q = st;
            if (jpy_isspace(prev_cp(s->s, &q))) break;
            st = q;
        }
        jv_list_push(c, out, jv_str_new(c, s->s + st, hi - st));
        hi = st;
        maxsplit--;
    }
}

// str.rsplit(sep), collecting the parts right to left.
static void rsplit_sep(jctx *c, jv out, const jstr *s, const jstr *sep, int64_t maxsplit) {
    size_t hi = s->len;
    for (;;) {
        const char *hit = NULL;
        if (maxsplit > 0 && hi >= sep->len)
            for (size_t p = hi - sep->len + 1; p-- > 0;)
                if (!memcmp(s->s + p, sep->s, sep->len)) {
                    hit = s->s + p;
                    break;
                }
        if (!hit) {
            jv_list_push(c, out, jv_str_new(c, s->s, hi));
            return;
        }
        size_t at = (size_t)(hit - s->s);
        jv_list_push(c, out, jv_str_new(c, s->s + at + sep->len, hi - at - sep->len));
        hi = at;
        maxsplit--;
    }
}

// Python's str.split / str.rsplit (sep NULL: runs of whitespace, ends ignored).
jv jstr_split(jctx *c, const jstr *s, const jstr *sep, int64_t maxsplit, bool from_right) {
    jv out = jv_list_new(c, 0, false);
    if (sep && sep->len == 0) jraise(c, "split(): empty separator");
    if (maxsplit < 0) maxsplit = INT64_MAX;
    if (!from_right) {
        if (sep) split_sep(c, out, s, sep, maxsplit);
        else split_ws(c, out, s, maxsplit);
        return out;
    }
    // rsplit: collect from the right, then reverse
    if (sep) rsplit_sep(c, out, s, sep, maxsplit);
    else rsplit_ws(c, out, s, maxsplit);
    jlist *l = jv_list(out);
    for (size_t a = 0, b = l->n ? l->n - 1 : 0; a < b; a++, b--) {
        jv t = l->v[a];
        l->v[a] = l->v[b];
        l->v[b] = t;
    }
    return out;
}

// Code-point index of byte offset off in s.
static int64_t cp_index(const jstr *s, size_t off) { return (int64_t)jutf8_len(s->s, off); }

// find/rfind returning a code-point index, -1 when absent.
static jv str_find(jctx *c, const jstr *s, const jstr *sub, bool rev) {
    (void)c;
    if (sub->len > s->len) return jv_int(-1);
    if (!rev) {
        const char *hit = memmem(s->s, s->len, sub->s, sub->len);
        return jv_int(hit ? cp_index(s, (size_t)(hit - s->s)) : -1);
    }
    for (size_t p = s->len - sub->len + 1; p-- > 0;)
        if (!memcmp(s->s + p, sub->s, sub->len)) return jv_int(cp_index(s, p));
    return jv_int(-1);
}

// startswith/endswith with a string or a tuple of strings.
static bool prefix_match(jctx *c, const jstr *s, jv arg, bool suffix) {
    if (arg.t == JV_STR) {
        const jstr *p = jv_str(arg);
        if (p->len > s->len) return false;
        return !memcmp(suffix ? s->s + s->len - p->len : s->s, p->s, p->len);
    }
    if (jv_is_seq(arg)) {
        jlist *l = jv_list(arg);
        for (size_t i = 0; i < l->n; i++) {
            if (l->v[i].t != JV_STR)
                jraise(c, "%s first arg must be str or a tuple of str", suffix ? "endswith" : "startswith");
            if (prefix_match(c, s, l->v[i], suffix)) return true;
        }
        return false;
    }
    jraise(c, "%s first arg must be str or a tuple of str, not %s", suffix ? "endswith" : "startswith",
           jv_type_name(arg));
}

// ljust (0), center (1), rjust (2) with Python's placement of the odd pad.
static jv pad(jctx *c, const jstr *s, int64_t width, jv fill, int where) {
    uint32_t fc = ' ';
    if (fill.t != JV_MISSING) {
        const jstr *f = jexpect_str(c, fill, "the fill character");
        if (jstr_cplen(f) != 1) jraise(c, "the fill character must be exactly one character long");
        size_t i = 0;
        fc = jutf8_next(f->s, f->len, &i);
    }
    int64_t n = (int64_t)jstr_cplen(s);
    if (width > 1000000) jraise(c, "padding width %" PRId64 " too large", width);
    if (width <= n) return jv_str_new(c, s->s, s->len);
    int64_t total = width - n, left = where == 0 ? 0 : where == 2 ? total : total / 2 + (total & width & 1);
    jbuf b = {0};
    for (int64_t i = 0; i < left; i++) put_cp(c, &b, fc);
    jbuf_put(c, &b, s->s, s->len);
    for (int64_t i = left; i < total; i++) put_cp(c, &b, fc);
    return jv_str_take_buf(c, &b);
}

// Python's str.format for the forms templates use: {} {0} {name} {{ }} with an optional !s / !r.
static jv str_format(jctx *c, const jstr *fmt, const jargs *a) {
    jbuf b = {0};
    int auto_idx = 0;
    for (size_t i = 0; i < fmt->len; i++) {
        char ch = fmt->s[i];
        if (ch == '{' && i + 1 < fmt->len && fmt->s[i + 1] == '{') {
            jbuf_putc(c, &b, '{');
            i++;
            continue;
        }
        if (ch == '}' && i + 1 < fmt->len && fmt->s[i + 1] == '}') {
            jbuf_putc(c, &b, '}');
            i++;
            continue;
        }
        if (ch == '}') jraise(c, "str.format: single '}' encountered in format string");
        if (ch != '{') {
            jbuf_putc(c, &b, ch);
            continue;
        }
        const char *end = memchr(fmt->s + i, '}', fmt->len - i);
        if (!end) jraise(c, "str.format: single '{' encountered in format string");
        size_t fl = (size_t)(end - (fmt->s + i + 1));
        char field[128];
        if (fl >= sizeof field) jraise(c, "str.format: replacement field too long");
        memcpy(field, fmt->s + i + 1, fl);
        field[fl] = 0;
        i = (size_t)(end - fmt->s);
        char conv = 0;
        char *bang = strchr(field, '!');
        if (strchr(field, ':')) jraise(c, "str.format: format specs ('{%s}') are not supported", field);
        if (bang) {
            conv = bang[1];
            *bang = 0;
        }
        jv val;
        if (!field[0]) {
            if (auto_idx >= a->npos) jraise(c, "str.format: replacement index %d out of range", auto_idx);
            val = a->pos[auto_idx++];
        } else if (field[0] >= '0' && field[0] <= '9') {
            int k = atoi(field);
            if (k >= a->npos) jraise(c, "str.format: replacement index %d out of range", k);
            val = a->pos[k];
        } else {
            int k;
            for (k = 0; k < a->nkw; k++)
                if (!strcmp(a->kwk[k], field)) break;
            if (k == a->nkw) jraise(c, "str.format: no argument named '%s'", field);
            val = a->kwv[k];
        }
        if (conv == 'r') jv_write_repr(c, &b, val, 0);
        else jv_write_str(c, &b, val);
    }
    return jv_str_take_buf(c, &b);
}

// str.upper, lower, capitalize, title, swapcase, casefold: Python's case mappings (casefold as lower).
static jv strm_case(jctx *c, int id, jv self, const jstr *s, const jargs *a, const char *what) {
    jv p[3];
    jargs_bind(c, what, a, NULL, 0, p);
    return jstr_case(c, s,
                     id == M_UPPER        ? CASE_UPPER
                     : id == M_CAPITALIZE ? CASE_CAPITALIZE
                     : id == M_TITLE      ? CASE_PYTITLE
                     : id == M_SWAPCASE   ? CASE_SWAP
                                          : CASE_LOWER);
}

// str.strip, lstrip, rstrip: whitespace or the given characters off one or both ends.
static jv strm_strip(jctx *c, int id, jv self, const jstr *s, const jargs *a, const char *what) {
    jv p[3];
    static const char *const n[] = {"chars"};
    jargs_bind(c, what, a, n, 1, p);
    const jstr *chars = p[0].t == JV_MISSING || p[0].t == JV_NONE ? NULL : jexpect_str(c, p[0], what);
    return jstr_strip(c, s, chars, id != M_RSTRIP, id != M_LSTRIP);
}

// str.split and rsplit: on a separator or on runs of whitespace, with maxsplit from either end.
static jv strm_split(jctx *c, int id, jv self, const jstr *s, const jargs *a, const char *what) {
    jv p[3];
    static const char *const n[] = {"sep", "maxsplit"};
    jargs_bind(c, what, a, n, 2, p);
    const jstr *sep = p[0].t == JV_MISSING || p[0].t == JV_NONE ? NULL : jexpect_str(c, p[0], what);
    int64_t maxsplit = p[1].t == JV_MISSING ? -1 : jexpect_int(c, p[1], what);
    return jstr_split(c, s, sep, maxsplit, id == M_RSPLIT);
}

// str.splitlines: on every line boundary Python recognises, \r\n counting as one.
static jv strm_splitlines(jctx *c, int id, jv self, const jstr *s, const jargs *a, const char *what) {
    jv p[3];
    static const char *const n[] = {"keepends"};
    jargs_bind(c, what, a, n, 1, p);
    bool keep = p[0].t != JV_MISSING && jv_truthy(p[0]);
    jv out = jv_list_new(c, 0, false);
    size_t i = 0, st = 0;
    while (i < s->len) {
        size_t at = i;
        uint32_t cp = jutf8_next(s->s, s->len, &i);
        bool br = cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C || (cp >= 0x1C && cp <= 0x1E) || cp == 0x85 ||
                  cp == 0x2028 || cp == 0x2029;
        if (!br) continue;
        size_t e = i;
        if (cp == '\r' && i < s->len && s->s[i] == '\n') e = ++i;
        jv_list_push(c, out, jv_str_new(c, s->s + st, (keep ? e : at) - st));
        st = i;
    }
    if (st < s->len) jv_list_push(c, out, jv_str_new(c, s->s + st, s->len - st));
    return out;
}

// str.startswith and endswith: a string or a tuple of candidates.
static jv strm_affix_match(jctx *c, int id, jv self, const jstr *s, const jargs *a, const char *what) {
    jv p[3];
    static const char *const n[] = {"prefix"};
    jargs_bind(c, what, a, n, 1, p);
    if (p[0].t == JV_MISSING) jraise(c, "%s takes at least 1 argument", what);
    return jv_bool(prefix_match(c, s, p[0], id == M_ENDSWITH));
}

// str.replace: Python's str.replace with an optional count.
static jv strm_replace(jctx *c, int id, jv self, const jstr *s, const jargs *a, const char *what) {
    jv p[3];
    static const char *const n[] = {"old", "new", "count"};
    jargs_bind(c, what, a, n, 3, p);
    if (p[0].t == JV_MISSING || p[1].t == JV_MISSING) jraise(c, "%s takes at least 2 arguments", what);
    int64_t count = p[2].t == JV_MISSING ? -1 : jexpect_int(c, p[2], what);
    return jstr_replace(c, s, jexpect_str(c, p[0], what), jexpect_str(c, p[1], what), count);
}

// str.find, rfind, index, rindex, count: code-point positions of a substring (index raises when absent).
static jv strm_find(jctx *c, int id, jv self, const jstr *s, const jargs *a, const char *what) {
    jv p[3];
    static const char *const n[] = {"sub"};
    jargs_bind(c, what, a, n, 1, p);
    if (p[0].t == JV_MISSING) jraise(c, "%s takes exactly 1 argument", what);
    const jstr *sub = jexpect_str(c, p[0], what);
    if (id == M_COUNT) {
        if (sub->len == 0) return jv_int((int64_t)jstr_cplen(s) + 1);
        int64_t k = 0;
        const char *q = s->s, *end = s->s + s->len;
        while ((q = memmem(q, (size_t)(end - q), sub->s, sub->len))) {
            k++;
            q += sub->len;
        }
        return jv_int(k);
    }
    jv r = str_find(c, s, sub, id == M_RFIND || id == M_RINDEX);
    if (r.i < 0 && (id == M_INDEX || id == M_RINDEX)) jraise(c, "%s: substring not found", what);
    return r;
}

// str.join: strings only, as Python refuses anything else.
static jv strm_join(jctx *c, int id, jv self, const jstr *s, const jargs *a, const char *what) {
    jv p[3];
    static const char *const n[] = {"iterable"};
    jargs_bind(c, what, a, n, 1, p);
    jv items = jv_iter_list(c, p[0]);
    jlist *l = jv_list(items);
    jbuf b = {0};
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i].t != JV_STR)
            jraise(c, "str.join(): sequence item %zu: expected str instance, %s found", i, jv_type_name(l->v[i]));
        if (i) jbuf_put(c, &b, s->s, s->len);
        jbuf_put(c, &b, jv_str(l->v[i])->s, jv_str(l->v[i])->len);
    }
    jv_decref(c, items);
    return jv_str_take_buf(c, &b);
}

// str.isalnum, isalpha, isdigit, isspace, islower, isupper: Python's character-class predicates.
static jv strm_char_class(jctx *c, int id, jv self, const jstr *s, const jargs *a, const char *what) {
    jv p[3];
    jargs_bind(c, what, a, NULL, 0, p);
    size_t i = 0;
    bool any = false, cased = false;
    while (i < s->len) {
        uint32_t cp = jutf8_next(s->s, s->len, &i);
        any = true;
        switch (id) {
        case M_ISALNUM:
            if (!jpy_isalnum(cp)) return jv_bool(false);
            break;
        case M_ISALPHA:
            if (!jpy_isalpha(cp)) return jv_bool(false);
            break;
        case M_ISDIGIT:
            if (!jpy_isdigit(cp)) return jv_bool(false);
            break;
        case M_ISSPACE:
            if (!jpy_isspace(cp)) return jv_bool(false);
            break;
        case M_ISLOWER:
            if (jpy_isupper(cp)) return jv_bool(false);
            cased |= jpy_islower(cp);
            break;
        case M_ISUPPER:
            if (jpy_islower(cp)) return jv_bool(false);
            cased |= jpy_isupper(cp);
            break;
        }
    }
    return jv_bool(id == M_ISLOWER || id == M_ISUPPER ? cased : any);
}

// str.removeprefix and removesuffix: the string without the affix when it is there.
static jv strm_remove_affix(jctx *c, int id, jv self, const jstr *s, const jargs *a, const char *what) {
    jv p[3];
    static const char *const n[] = {"affix"};
    jargs_bind(c, what, a, n, 1, p);
    const jstr *x = jexpect_str(c, p[0], what);
    if (x->len <= s->len) {
        if (id == M_REMOVEPREFIX && !memcmp(s->s, x->s, x->len)) return jv_str_new(c, s->s + x->len, s->len - x->len);
        if (id == M_REMOVESUFFIX && x->len && !memcmp(s->s + s->len - x->len, x->s, x->len))
            return jv_str_new(c, s->s, s->len - x->len);
    }
    return jv_incref(self);
}

// str.partition and rpartition: (before, separator, after) at the first or last occurrence.
static jv strm_partition(jctx *c, int id, jv self, const jstr *s, const jargs *a, const char *what) {
    jv p[3];
    static const char *const n[] = {"sep"};
    jargs_bind(c, what, a, n, 1, p);
    const jstr *sep = jexpect_str(c, p[0], what);
    if (!sep->len) jraise(c, "%s: empty separator", what);
    jv r = str_find(c, s, sep, id == M_RPARTITION);
    jv out = jv_list_new(c, 3, true);
    if (r.i < 0) {
        jv e = jv_str_new(c, "", 0);
        if (id == M_PARTITION) {
            jv_list_push(c, out, jv_incref(self));
            jv_list_push(c, out, jv_incref(e));
            jv_list_push(c, out, e);
        } else {
            jv_list_push(c, out, jv_incref(e));
            jv_list_push(c, out, e);
            jv_list_push(c, out, jv_incref(self));
        }
        return out;
    }
    size_t at = id == M_PARTITION ? (size_t)((const char *)memmem(s->s, s->len, sep->s, sep->len) - s->s) : 0;
    if (id == M_RPARTITION)
        for (size_t q = s->len - sep->len + 1; q-- > 0;)
            if (!memcmp(s->s + q, sep->s, sep->len)) {
                at = q;
                break;
            }
    jv_list_push(c, out, jv_str_new(c, s->s, at));
    jv_list_push(c, out, jv_str_new(c, sep->s, sep->len));
    jv_list_push(c, out, jv_str_new(c, s->s + at + sep->len, s->len - at - sep->len));
    return out;
}

// str.center, ljust, rjust: padding to a width in code points.
static jv strm_pad(jctx *c, int id, jv self, const jstr *s, const jargs *a, const char *what) {
    jv p[3];
    static const char *const n[] = {"width", "fillchar"};
    jargs_bind(c, what, a, n, 2, p);
    return pad(c, s, jexpect_int(c, p[0], what), p[1], id == M_LJUST ? 0 : id == M_RJUST ? 2 : 1);
}

// str.zfill: zeros on the left to a width, after any sign.
static jv strm_zfill(jctx *c, int id, jv self, const jstr *s, const jargs *a, const char *what) {
    jv p[3];
    static const char *const n[] = {"width"};
    jargs_bind(c, what, a, n, 1, p);
    int64_t w = jexpect_int(c, p[0], what), len = (int64_t)jstr_cplen(s);
    if (w > 1000000) jraise(c, "zfill width too large");
    if (w <= len) return jv_incref(self);
    jbuf b = {0};
    size_t st = 0;
    if (s->len && (s->s[0] == '-' || s->s[0] == '+')) {
        jbuf_putc(c, &b, s->s[0]);
        st = 1;
    }
    for (int64_t i = 0; i < w - len; i++) jbuf_putc(c, &b, '0');
    jbuf_put(c, &b, s->s + st, s->len - st);
    return jv_str_take_buf(c, &b);
}

// str.format: str.format's replacement fields.
static jv strm_format(jctx *c, int id, jv self, const jstr *s, const jargs *a, const char *what) {
    return str_format(c, s, a);
}

typedef jv (*str_method_fn)(jctx *c, int id, jv self, const jstr *s, const jargs *a, const char *what);

// The function behind each str method id (names in str_methods); related methods share one.
static const str_method_fn str_method_fns[M_ZFILL + 1] = {
    [M_CAPITALIZE] = strm_case,
    [M_CASEFOLD] = strm_case,
    [M_CENTER] = strm_pad,
    [M_COUNT] = strm_find,
    [M_ENDSWITH] = strm_affix_match,
    [M_FIND] = strm_find,
    [M_FORMAT] = strm_format,
    [M_INDEX] = strm_find,
    [M_ISALNUM] = strm_char_class,
    [M_ISALPHA] = strm_char_class,
    [M_ISDIGIT] = strm_char_class,
    [M_ISLOWER] = strm_char_class,
    [M_ISSPACE] = strm_char_class,
    [M_ISUPPER] = strm_char_class,
    [M_JOIN] = strm_join,
    [M_LJUST] = strm_pad,
    [M_LOWER] = strm_case,
    [M_LSTRIP] = strm_strip,
    [M_PARTITION] = strm_partition,
    [M_REMOVEPREFIX] = strm_remove_affix,
    [M_REMOVESUFFIX] = strm_remove_affix,
    [M_REPLACE] = strm_replace,
    [M_RFIND] = strm_find,
    [M_RINDEX] = strm_find,
    [M_RJUST] = strm_pad,
    [M_RPARTITION] = strm_partition,
    [M_RSPLIT] = strm_split,
    [M_RSTRIP] = strm_strip,
    [M_SPLIT] = strm_split,
    [M_SPLITLINES] = strm_splitlines,
    [M_STARTSWITH] = strm_affix_match,
    [M_STRIP] = strm_strip,
    [M_SWAPCASE] = strm_case,
    [M_TITLE] = strm_case,
    [M_UPPER] = strm_case,
    [M_ZFILL] = strm_zfill,
};

// Calls a str method bound to self.
static jv str_method(jctx *c, int id, jv self, const jargs *a) {
    if (id < 0 || id > M_ZFILL) jraise(c, "str has no method %d", id);
    char what[48];
    snprintf(what, sizeof what, "str.%s()", str_methods[id]);
    return str_method_fns[id](c, id, self, jv_str(self), a, what);
}

// dict.items(): (key, value) tuples in insertion order.
static jv items_of(jctx *c, jv d) {
    jdict *x = jv_dict(d);
    jv out = jv_list_new(c, x->n, false);
    for (size_t i = 0; i < x->n; i++) {
        jv t = jv_list_new(c, 2, true);
        jv k = {.t = JV_STR};
        k.o = &x->k[i]->h;
        jv_list_push(c, t, jv_incref(k));
        jv_list_push(c, t, jv_incref(x->v[i]));
        jv_list_push(c, out, t);
    }
    return out;
}

// Calls a bound method of a str, dict, list or loop.
jv jcall_method(jctx *c, int id, jv self, const jargs *a) {
    jv p[3];
    char what[48];
    snprintf(what, sizeof what, "%s.%s()", jv_type_name(self), method_name(id));
    if (id <= M_ZFILL) return str_method(c, id, self, a);
    switch (id) {
    case M_DGET: {
        static const char *const n[] = {"key", "default"};
        jargs_bind(c, what, a, n, 2, p);
        if (p[0].t == JV_MISSING) jraise(c, "dict.get() takes at least 1 argument");
        jv *v = p[0].t == JV_STR ? jv_dict_get(self, jv_str(p[0])->s, jv_str(p[0])->len) : NULL;
        if (v) return jv_incref(*v);
        return p[1].t == JV_MISSING ? jv_none() : jv_incref(p[1]);
    }
    case M_DITEMS: jargs_bind(c, what, a, NULL, 0, p); return items_of(c, self);
    case M_DKEYS:
    case M_DVALUES: {
        jargs_bind(c, what, a, NULL, 0, p);
        jdict *x = jv_dict(self);
        jv out = jv_list_new(c, x->n, false);
        for (size_t i = 0; i < x->n; i++) {
            jv k = {.t = JV_STR};
            k.o = &x->k[i]->h;
            jv_list_push(c, out, jv_incref(id == M_DKEYS ? k : x->v[i]));
        }
        return out;
    }
    case M_DCOPY: {
        jargs_bind(c, what, a, NULL, 0, p);
        jdict *x = jv_dict(self);
        jv out = jv_dict_new(c, false);
        for (size_t i = 0; i < x->n; i++) jv_dict_set(c, out, x->k[i], jv_incref(x->v[i]));
        return out;
    }
    case M_LINDEX:
    case M_LCOUNT: {
        static const char *const n[] = {"value"};
        jargs_bind(c, what, a, n, 1, p);
        jlist *l = jv_list(self);
        int64_t k = 0;
        for (size_t i = 0; i < l->n; i++)
            if (jv_equal(c, l->v[i], p[0], 0)) {
                if (id == M_LINDEX) return jv_int((int64_t)i);
                k++;
            }
        if (id == M_LINDEX) jraise(c, "list.index(x): x not in list");
        return jv_int(k);
    }
    case M_LCOPY: {
        jargs_bind(c, what, a, NULL, 0, p);
        jlist *l = jv_list(self);
        jv out = jv_list_new(c, l->n, false);
        for (size_t i = 0; i < l->n; i++) jv_list_push(c, out, jv_incref(l->v[i]));
        return out;
    }
    case M_LOOP_CYCLE: {
        if (a->nkw || a->npos == 0) jraise(c, "loop.cycle() needs at least one positional argument");
        jloop *l = (jloop *)self.o;
        return jv_incref(a->pos[l->index0 % a->npos]);
    }
    case M_LOOP_CHANGED: jraise(c, "loop.changed() is not supported");
    }
    jraise(c, "unknown method");
}

// ---------------------------------------------------------------- globals

enum { G_RANGE, G_NAMESPACE, G_RAISE, G_STRFTIME, G_DICT, G_COUNT };
static const char *const global_names[G_COUNT] = {"range", "namespace", "raise_exception", "strftime_now", "dict"};

// Puts the global functions into the render's outermost scope.
void jglobals_install(jctx *c, jscope *s) {
    for (int i = 0; i < G_COUNT; i++) jscope_set(c, s, global_names[i], jfunc_new(c, FK_GLOBAL, i, jv_undef()));
}

// Fills a dict from a mapping or an iterable of pairs, then keyword arguments (Python's dict(*a, **kw)).
static void dict_fill(jctx *c, jv out, const jargs *a, const char *what) {
    if (a->npos > 1) jraise(c, "%s expected at most 1 positional argument, got %d", what, a->npos);
    if (a->npos == 1) {
        jv src = a->pos[0];
        if (src.t == JV_DICT || src.t == JV_NS) {
            jdict *x = jv_dict(src);
            for (size_t i = 0; i < x->n; i++) jv_dict_set(c, out, x->k[i], jv_incref(x->v[i]));
        } else if (jv_is_seq(src)) {
            jlist *l = jv_list(src);
            for (size_t i = 0; i < l->n; i++) {
                jv pr = l->v[i];
                if (!jv_is_seq(pr) || jv_list(pr)->n != 2)
                    jraise(c, "%s: element %zu is not a (key, value) pair", what, i);
                jv k = jv_list(pr)->v[0];
                if (k.t != JV_STR) jraise(c, "%s: keys must be strings", what);
                jv_dict_set(c, out, jv_str(k), jv_incref(jv_list(pr)->v[1]));
            }
        } else {
            jraise(c, "%s: '%s' object is not iterable", what, jv_type_name(src));
        }
    }
    for (int k = 0; k < a->nkw; k++) jv_dict_set_cstr(c, out, a->kwk[k], jv_incref(a->kwv[k]));
}

// range, namespace, dict, raise_exception, strftime_now.
jv jcall_global(jctx *c, int id, const jargs *a) {
    switch (id) {
    case G_RANGE: {
        if (a->nkw) jraise(c, "range() takes no keyword arguments");
        if (a->npos < 1 || a->npos > 3) jraise(c, "range expected 1 to 3 arguments, got %d", a->npos);
        int64_t v[3];
        for (int i = 0; i < a->npos; i++) v[i] = jexpect_int(c, a->pos[i], "range()");
        int64_t start = a->npos == 1 ? 0 : v[0], stop = a->npos == 1 ? v[0] : v[1], step = a->npos == 3 ? v[2] : 1;
        if (step == 0) jraise(c, "range() arg 3 must not be zero");
        double count = step > 0 ? ceil(((double)stop - (double)start) / (double)step)
                                : ceil(((double)start - (double)stop) / (double)-step);
        if (count < 0) count = 0;
        if (count > 100000) jraise(c, "range() of %.0f items is too big (the sandbox limit is 100000)", count);
        jv out = jv_list_new(c, (size_t)count, false);
        for (int64_t i = 0; i < (int64_t)count; i++) jv_list_push(c, out, jv_int(start + i * step));
        return out;
    }
    case G_NAMESPACE: {
        jv ns = jv_dict_new(c, true);
        dict_fill(c, ns, a, "namespace()");
        return ns;
    }
    case G_DICT: {
        jv d = jv_dict_new(c, false);
        dict_fill(c, d, a, "dict()");
        return d;
    }
    case G_RAISE: {
        jbuf b = {0};
        for (int i = 0; i < a->npos; i++) {
            if (i) jbuf_puts(c, &b, " ");
            jv_write_str(c, &b, a->pos[i]);
        }
        jraise(c, "raise_exception: %s", b.p ? b.p : "");
    }
    case G_STRFTIME: {
        static const char *const n[] = {"format"};
        jv p[1];
        jargs_bind(c, "strftime_now()", a, n, 1, p);
        const jstr *f = jexpect_str(c, p[0], "strftime_now()");
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        size_t cap = f->len * 8 + 64;
        if (cap > 1 << 20) jraise(c, "strftime_now(): format too long");
        char *buf = jx_alloc(c, cap);
        size_t n2 = f->len ? strftime(buf, cap, f->s, &tm) : 0;
        jv out = jv_str_new(c, buf, n2);
        jx_free(c, buf);
        return out;
    }
    }
    jraise(c, "unknown global function");
}

// ---------------------------------------------------------------- printf-style `%`

// One %-conversion of val, with the flags, width and precision already in spec[0..sl) (printf does the work).
static void percent_convert(jctx *c, jbuf *b, char conv, char *spec, size_t sl, jv val) {
    char out[512];
    switch (conv) {
    case 's':
    case 'r': {
        jbuf t = {0};
        if (conv == 's') jv_write_str(c, &t, val);
        else jv_write_repr(c, &t, val, 0);
        spec[sl++] = 's';
        spec[sl] = 0;
        if (sl == 2) jbuf_put(c, b, t.p ? t.p : "", t.n);
        else {
            int n = snprintf(out, sizeof out, spec, t.p ? t.p : "");
            jbuf_put(c, b, out, n < 0 ? 0 : (size_t)n >= sizeof out ? sizeof out - 1 : (size_t)n);
        }
        jx_free(c, t.p);
        break;
    }
    case 'd':
    case 'i':
    case 'x':
    case 'X':
    case 'o': {
        if (val.t != JV_INT && val.t != JV_BOOL && val.t != JV_FLOAT)
            jraise(c, "%%%c format: a number is required, not %s", conv, jv_type_name(val));
        long long x = val.t == JV_INT ? val.i : val.t == JV_BOOL ? val.b : (long long)val.f;
        spec[sl++] = 'l';
        spec[sl++] = 'l';
        spec[sl++] = conv == 'i' ? 'd' : conv;
        spec[sl] = 0;
        int n = snprintf(out, sizeof out, spec, x);
        jbuf_put(c, b, out, n < 0 ? 0 : (size_t)n >= sizeof out ? sizeof out - 1 : (size_t)n);
        break;
    }
    case 'f':
    case 'F':
    case 'e':
    case 'E':
    case 'g':
    case 'G': {
        if (val.t != JV_INT && val.t != JV_BOOL && val.t != JV_FLOAT)
            jraise(c, "%%%c format: a number is required, not %s", conv, jv_type_name(val));
        double x = val.t == JV_FLOAT ? val.f : val.t == JV_INT ? (double)val.i : val.b;
        spec[sl++] = conv;
        spec[sl] = 0;
        int n = snprintf(out, sizeof out, spec, x);
        jbuf_put(c, b, out, n < 0 ? 0 : (size_t)n >= sizeof out ? sizeof out - 1 : (size_t)n);
        break;
    }
    case 'c': {
        if (val.t == JV_STR) jbuf_put(c, b, jv_str(val)->s, jv_str(val)->len);
        else put_cp(c, b, (uint32_t)jexpect_int(c, val, "%c"));
        break;
    }
    default: jraise(c, "unsupported format character '%c'", conv);
    }
}

jv jstr_percent(jctx *c, jv fmtv, jv args) {
    const jstr *f = jv_str(fmtv);
    jbuf b = {0};
    jlist *tup = args.t == JV_TUPLE ? jv_list(args) : NULL;
    size_t next = 0;
    bool used_single = false;
    for (size_t i = 0; i < f->len; i++) {
        if (f->s[i] != '%') {
            jbuf_putc(c, &b, f->s[i]);
            continue;
        }
        if (++i >= f->len) jraise(c, "incomplete format");
        jv val = jv_missing();
        if (f->s[i] == '(') {
            const char *e = memchr(f->s + i, ')', f->len - i);
            if (!e) jraise(c, "incomplete format key");
            if (args.t != JV_DICT) jraise(c, "format requires a mapping");
            jv *v = jv_dict_get(args, f->s + i + 1, (size_t)(e - f->s - i - 1));
            if (!v) jraise(c, "format key '%.*s' not found", (int)(e - f->s - i - 1), f->s + i + 1);
            val = *v;
            i = (size_t)(e - f->s) + 1;
        }
        char spec[32];
        size_t sl = 0;
        spec[sl++] = '%';
        while (i < f->len && strchr("-+ #0", f->s[i]) && sl < 8) spec[sl++] = f->s[i++];
        while (i < f->len && f->s[i] >= '0' && f->s[i] <= '9' && sl < 16) spec[sl++] = f->s[i++];
        if (i < f->len && f->s[i] == '.') {
            spec[sl++] = f->s[i++];
            while (i < f->len && f->s[i] >= '0' && f->s[i] <= '9' && sl < 24) spec[sl++] = f->s[i++];
        }
        if (i >= f->len) jraise(c, "incomplete format");
        char conv = f->s[i];
        if (conv == '%') {
            jbuf_putc(c, &b, '%');
            continue;
        }
        if (val.t == JV_MISSING) {
            if (tup) {
                if (next >= tup->n) jraise(c, "not enough arguments for format string");
                val = tup->v[next++];
            } else {
                if (used_single) jraise(c, "not enough arguments for format string");
                val = args;
                used_single = true;
            }
        }
        percent_convert(c, &b, conv, spec, sl, val);
    }
    if (tup && next < tup->n) jraise(c, "not all arguments converted during string formatting");
    if (!tup && !used_single && args.t != JV_DICT) jraise(c, "not all arguments converted during string formatting");
    return jv_str_take_buf(c, &b);
}
