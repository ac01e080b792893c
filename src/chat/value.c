// Run-time values of the template interpreter: reference-counted strings, lists, dicts and namespaces kept
// on one list per render so an error can unwind and free everything at once; Python's equality, ordering,
// str(), repr() and json.dumps() over them, since those decide the bytes of the prompt.
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja.h"

// ---------------------------------------------------------------- context, errors, memory

void jctx_init(jctx *c, aero_error *err) {
    memset(c, 0, sizeof *c);
    c->head.prev = c->head.next = &c->head;
    c->err = err;
    c->max_mem = JCTX_MAX_MEM;
    c->max_steps = JCTX_MAX_STEPS;
}

// Records "line N: msg" and unwinds to aero_chat_render, which frees everything.
_Noreturn void jraise(jctx *c, const char *fmt, ...) {
    char msg[440];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->line > 0) aero_fail(c->err, AERO_ERR_INVALID, "chat template line %d: %s", c->line, msg);
    else aero_fail(c->err, AERO_ERR_INVALID, "chat template: %s", msg);
    longjmp(c->jb, 1);
}

// Allocation failure: unwinds like any other render error.
_Noreturn void jraise_oom(jctx *c) {
    aero_fail(c->err, AERO_ERR_NOMEM, "chat template: out of memory while rendering");
    longjmp(c->jb, 1);
}

// Puts a new object on the render's list so an error can free it.
static void link_obj(jctx *c, jobj *o, jobj_kind kind) {
    o->kind = (uint8_t)kind;
    o->rc = 1;
    o->next = c->head.next;
    o->prev = &c->head;
    c->head.next->prev = o;
    c->head.next = o;
}

// Takes an object off the render's list before it is freed.
static void unlink_obj(jobj *o) {
    o->prev->next = o->next;
    o->next->prev = o->prev;
}

// Keeps a hostile template from exhausting memory: every value and buffer is counted.
void jctx_mem(jctx *c, int64_t n) {
    c->mem += (uint64_t)n;
    if (n > 0 && c->mem > c->max_mem)
        jraise(c, "rendering needs more than %llu MiB (values too large or too many)",
               (unsigned long long)(c->max_mem >> 20));
}

// A zeroed, counted, listed object with one reference.
static void *obj_new(jctx *c, jobj_kind kind, size_t size) {
    if (size > c->max_mem) jraise(c, "a value of %zu bytes is larger than the render limit", size);
    jctx_mem(c, (int64_t)size);
    jobj *o = calloc(1, size);
    if (!o) jraise_oom(c);
    link_obj(c, o, kind);
    o->bytes = size;
    return o;
}

typedef struct {
    jobj h;
    _Alignas(16) char data[];
} jblob;

// Scratch memory that an error unwinding through the caller cannot leak.
void *jx_alloc(jctx *c, size_t n) {
    if (n > SIZE_MAX - sizeof(jblob)) jraise_oom(c);
    jblob *b = obj_new(c, JO_BLOB, sizeof(jblob) + n);
    return b->data;
}

// Frees scratch memory early.
void jx_free(jctx *c, void *p) {
    (void)c;
    if (!p) return;
    jblob *b = (jblob *)((char *)p - offsetof(jblob, data));
    jctx_mem(c, -(int64_t)b->h.bytes);
    unlink_obj(&b->h);
    free(b);
}

// Grows scratch memory, keeping it on the render's list.
void *jx_realloc(jctx *c, void *p, size_t n) {
    if (!p) return jx_alloc(c, n);
    if (n > SIZE_MAX - sizeof(jblob)) jraise_oom(c);
    jblob *b = (jblob *)((char *)p - offsetof(jblob, data));
    if (n > c->max_mem) jraise(c, "a buffer of %zu bytes is larger than the render limit", n);
    jctx_mem(c, (int64_t)(sizeof(jblob) + n) - (int64_t)b->h.bytes);
    jobj *prev = b->h.prev, *next = b->h.next;
    jblob *nb = realloc(b, sizeof(jblob) + n);
    if (!nb) jraise_oom(c);
    nb->h.bytes = sizeof(jblob) + n;
    prev->next = &nb->h;
    next->prev = &nb->h;
    return nb->data;
}

// Frees an object's own storage and drops its references to others.
static void obj_free(jctx *c, jobj *o) {
    unlink_obj(o);
    jctx_mem(c, -(int64_t)o->bytes);
    switch ((jobj_kind)o->kind) {
    case JO_LIST: {
        jlist *l = (jlist *)o;
        jctx_mem(c, -(int64_t)(l->cap * sizeof(jv)));
        for (size_t i = 0; i < l->n; i++) jv_decref(c, l->v[i]);
        free(l->v);
        break;
    }
    case JO_DICT: {
        jdict *d = (jdict *)o;
        jctx_mem(c, -(int64_t)(d->cap * (sizeof(jstr *) + sizeof(jv)) + d->hcap * sizeof(uint32_t)));
        for (size_t i = 0; i < d->n; i++) {
            jv k = {.t = JV_STR};
            k.o = &d->k[i]->h;
            jv_decref(c, k);
            jv_decref(c, d->v[i]);
        }
        free(d->k);
        free(d->v);
        free(d->ht);
        break;
    }
    case JO_SCOPE: {
        jscope *s = (jscope *)o;
        jctx_mem(c, -(int64_t)(s->cap * (sizeof(char *) + sizeof(jv))));
        for (size_t i = 0; i < s->n; i++) jv_decref(c, s->vals[i]);
        free(s->names);
        free(s->vals);
        if (s->parent) {
            jv p = {.t = JV_NS};
            p.o = &s->parent->h;
            jv_decref(c, p);
        }
        break;
    }
    case JO_FUNC: {
        jfunc *f = (jfunc *)o;
        jv_decref(c, f->self);
        jv_decref(c, f->caller);
        if (f->closure) {
            jv p = {.t = JV_NS};
            p.o = &f->closure->h;
            jv_decref(c, p);
        }
        break;
    }
    case JO_LOOP: jv_decref(c, ((jloop *)o)->items); break;
    default: break;
    }
    free(o);
}

// Frees whatever is left (cycles, values abandoned by an error) without following references.
void jctx_sweep(jctx *c) {
    jobj *o = c->head.next;
    while (o != &c->head) {
        jobj *next = o->next;
        switch ((jobj_kind)o->kind) {
        case JO_LIST: free(((jlist *)o)->v); break;
        case JO_DICT:
            free(((jdict *)o)->k);
            free(((jdict *)o)->v);
            free(((jdict *)o)->ht);
            break;
        case JO_SCOPE:
            free(((jscope *)o)->names);
            free(((jscope *)o)->vals);
            break;
        default: break;
        }
        free(o);
        o = next;
    }
    c->head.prev = c->head.next = &c->head;
}

// Takes a reference (no-op for immediates).
jv jv_incref(jv v) {
    if (jv_isobj(v)) v.o->rc++;
    return v;
}

// Drops a reference, freeing the object at zero.
void jv_decref(jctx *c, jv v) {
    if (!jv_isobj(v)) return;
    if (--v.o->rc == 0) obj_free(c, v.o);
}

// ---------------------------------------------------------------- buffers

void jbuf_put(jctx *c, jbuf *b, const char *s, size_t n) {
    if (n == 0) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) {
            if (cap > SIZE_MAX / 2) jraise_oom(c);
            cap *= 2;
        }

        b->p = jx_realloc(c, b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void jbuf_putc(jctx *c, jbuf *b, char ch) { jbuf_put(c, b, &ch, 1); }
void jbuf_puts(jctx *c, jbuf *b, const char *s) { jbuf_put(c, b, s, strlen(s)); }

// ---------------------------------------------------------------- constructors

jv jv_str_new(jctx *c, const char *s, size_t n) {
    if (n > SIZE_MAX - sizeof(jstr) - 1) jraise_oom(c);
    jstr *st = obj_new(c, JO_STR, sizeof(jstr) + n + 1);
    if (n) memcpy(st->s, s, n);
    st->s[n] = 0;
    st->len = n;
    jv v = {.t = JV_STR};
    v.o = &st->h;
    return v;
}

jv jv_str_cstr(jctx *c, const char *s) { return jv_str_new(c, s, strlen(s)); }

// A short formatted string value.
jv jv_str_fmt(jctx *c, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
    return jv_str_new(c, buf, (size_t)n);
}

// Turns a built buffer into a string value.
jv jv_str_take_buf(jctx *c, jbuf *b) {
    jv v = jv_str_new(c, b->p ? b->p : "", b->n);
    jx_free(c, b->p);
    b->p = NULL;
    b->n = b->cap = 0;
    return v;
}

// An undefined value that remembers why it is undefined, for the error when it is used.
jv jv_undef_hint(jctx *c, const char *fmt, ...) {
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
    jv s = jv_str_new(c, buf, (size_t)n);
    jv u = {.t = JV_UNDEF};
    u.o = s.o;
    return u;
}

// An empty list (or tuple, which prints with parentheses).
jv jv_list_new(jctx *c, size_t cap, bool tuple) {
    jlist *l = obj_new(c, JO_LIST, sizeof(jlist));
    if (cap) {
        if (cap > c->max_mem / sizeof(jv)) jraise(c, "a list of %zu items is larger than the render limit", cap);
        jctx_mem(c, (int64_t)(cap * sizeof(jv)));
        l->v = malloc(cap * sizeof *l->v);
        if (!l->v) jraise_oom(c);
        l->cap = cap;
    }
    jv v = {.t = tuple ? JV_TUPLE : JV_LIST};
    v.o = &l->h;
    return v;
}

// Appends, taking ownership of item.
void jv_list_push(jctx *c, jv list, jv item) {
    jlist *l = jv_list(list);
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        jctx_mem(c, (int64_t)((cap - l->cap) * sizeof(jv)));
        jv *nv = realloc(l->v, cap * sizeof *nv);
        if (!nv) jraise_oom(c);
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = item;
}

// An empty insertion-ordered dict, or a namespace() (same storage).
jv jv_dict_new(jctx *c, bool ns) {
    jdict *d = obj_new(c, JO_DICT, sizeof(jdict));
    jv v = {.t = ns ? JV_NS : JV_DICT};
    v.o = &d->h;
    return v;
}

// FNV-1a of a key.
static uint32_t hash_key(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

// Builds the hash index once a dict outgrows linear search (large JSON objects).
static void dict_index(jctx *c, jdict *d) {
    size_t hcap = 16;
    while (hcap < d->n * 2 + 2) hcap *= 2;
    jctx_mem(c, (int64_t)(hcap - d->hcap) * (int64_t)sizeof(uint32_t));
    uint32_t *ht = calloc(hcap, sizeof *ht);
    if (!ht) jraise_oom(c);
    for (size_t i = 0; i < d->n; i++) {
        size_t h = hash_key(d->k[i]->s, d->k[i]->len) & (hcap - 1);
        while (ht[h]) h = (h + 1) & (hcap - 1);
        ht[h] = (uint32_t)(i + 1);
    }
    free(d->ht);
    d->ht = ht;
    d->hcap = hcap;
}

// Index of key, or -1.
static long dict_find(const jdict *d, const char *key, size_t klen) {
    if (d->ht) {
        size_t h = hash_key(key, klen) & (d->hcap - 1);
        while (d->ht[h]) {
            size_t i = d->ht[h] - 1;
            if (d->k[i]->len == klen && !memcmp(d->k[i]->s, key, klen)) return (long)i;
            h = (h + 1) & (d->hcap - 1);
        }
        return -1;
    }
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i]->len == klen && !memcmp(d->k[i]->s, key, klen)) return (long)i;
    return -1;
}

// Borrowed slot of key, or NULL.
jv *jv_dict_get(jv dict, const char *key, size_t klen) {
    jdict *d = jv_dict(dict);
    long i = dict_find(d, key, klen);
    return i < 0 ? NULL : &d->v[i];
}

// Inserts or replaces (keeping the key's original position, as Python dicts do).
void jv_dict_set(jctx *c, jv dict, jstr *key, jv val) {
    jdict *d = jv_dict(dict);
    long i = dict_find(d, key->s, key->len);
    if (i >= 0) {
        jv old = d->v[i];
        d->v[i] = val;
        jv_decref(c, old);
        return;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        jctx_mem(c, (int64_t)((cap - d->cap) * (sizeof(jstr *) + sizeof(jv))));
        jstr **nk = realloc(d->k, cap * sizeof *nk);
        if (!nk) jraise_oom(c);
        d->k = nk;
        jv *nv = realloc(d->v, cap * sizeof *nv);
        if (!nv) jraise_oom(c);
        d->v = nv;
        d->cap = cap;
    }
    key->h.rc++;
    d->k[d->n] = key;
    d->v[d->n] = val;
    d->n++;
    if (d->ht && d->n * 2 + 2 <= d->hcap) {
        size_t h = hash_key(key->s, key->len) & (d->hcap - 1);
        while (d->ht[h]) h = (h + 1) & (d->hcap - 1);
        d->ht[h] = (uint32_t)d->n;
    } else if (d->n > 8) {
        dict_index(c, d);
    }
}

// jv_dict_set with a C string key.
void jv_dict_set_cstr(jctx *c, jv dict, const char *key, jv val) {
    jv k = jv_str_cstr(c, key);
    jv_dict_set(c, dict, jv_str(k), val);
    jv_decref(c, k);
}

// A variable scope chained to its parent.
jscope *jscope_new(jctx *c, jscope *parent) {
    jscope *s = obj_new(c, JO_SCOPE, sizeof(jscope));
    if (parent) parent->h.rc++;
    s->parent = parent;
    return s;
}

// Binds name in this scope (not a parent's), as jinja2's set does.
void jscope_set(jctx *c, jscope *s, const char *name, jv val) {
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->names[i], name)) {
            jv old = s->vals[i];
            s->vals[i] = val;
            jv_decref(c, old);
            return;
        }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        jctx_mem(c, (int64_t)((cap - s->cap) * (sizeof(char *) + sizeof(jv))));
        const char **nn = realloc(s->names, cap * sizeof *nn);
        if (!nn) jraise_oom(c);
        s->names = nn;
        jv *nv = realloc(s->vals, cap * sizeof *nv);
        if (!nv) jraise_oom(c);
        s->vals = nv;
        s->cap = cap;
    }
    s->names[s->n] = name;
    s->vals[s->n] = val;
    s->n++;
}

// Innermost binding of name, or NULL.
jv *jscope_lookup(jscope *s, const char *name) {
    for (; s; s = s->parent)
        for (size_t i = s->n; i-- > 0;)
            if (!strcmp(s->names[i], name)) return &s->vals[i];
    return NULL;
}

// A callable value; self is stolen.
jv jfunc_new(jctx *c, jfunc_kind fk, int id, jv self) {
    jfunc *f = obj_new(c, JO_FUNC, sizeof(jfunc));
    f->fk = fk;
    f->id = id;
    f->self = self;
    f->caller = jv_undef();
    jv v = {.t = JV_FUNC};
    v.o = &f->h;
    return v;
}

// The `loop` object of a for loop over items (a list), nested depth levels deep.
jv jv_loop_new(jctx *c, jv items, int depth) {
    jloop *l = obj_new(c, JO_LOOP, sizeof(jloop));
    l->items = jv_incref(items);
    l->length = (int64_t)jv_list(items)->n;
    l->depth = depth;
    jv v = {.t = JV_LOOP};
    v.o = &l->h;
    return v;
}

// Messages, tools and extra variables as template values, as transformers hands Python objects to jinja2.
jv jv_from_json(jctx *c, const json_t *j, int depth) {
    if (depth > 1000) jraise(c, "input JSON nested too deeply");
    switch (json_typeof(j)) {
    case JSON_NULL: return jv_none();
    case JSON_TRUE: return jv_bool(true);
    case JSON_FALSE: return jv_bool(false);
    case JSON_INTEGER: return jv_int((int64_t)json_integer_value(j));
    case JSON_REAL: return jv_float(json_real_value(j));
    case JSON_STRING: return jv_str_new(c, json_string_value(j), json_string_length(j));
    case JSON_ARRAY: {
        size_t n = json_array_size(j);
        jv l = jv_list_new(c, n, false);
        for (size_t i = 0; i < n; i++) jv_list_push(c, l, jv_from_json(c, json_array_get(j, i), depth + 1));
        return l;
    }
    case JSON_OBJECT: {
        jv d = jv_dict_new(c, false);
        const char *key;
        json_t *val;
        // jansson iterates objects in insertion order, which is the order Python's json.loads keeps
        json_object_foreach((json_t *)j, key, val) {
            jv k = jv_str_cstr(c, key);
            jv_dict_set(c, d, jv_str(k), jv_from_json(c, val, depth + 1));
            jv_decref(c, k);
        }
        return d;
    }
    }
    return jv_none();
}

// ---------------------------------------------------------------- Python semantics

bool jv_truthy(jv v) {
    switch ((jv_type)v.t) {
    case JV_UNDEF:
    case JV_NONE:
    case JV_MISSING: return false;
    case JV_BOOL: return v.b;
    case JV_INT: return v.i != 0;
    case JV_FLOAT: return v.f != 0.0;
    case JV_STR: return jv_str(v)->len > 0;
    case JV_LIST:
    case JV_TUPLE: return jv_list(v)->n > 0;
    case JV_DICT: return jv_dict(v)->n > 0;
    default: return true;
    }
}

// Python's type name, for error messages like jinja2's.
const char *jv_type_name(jv v) {
    switch ((jv_type)v.t) {
    case JV_UNDEF: return "Undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: return "int";
    case JV_FLOAT: return "float";
    case JV_STR: return "str";
    case JV_LIST: return "list";
    case JV_TUPLE: return "tuple";
    case JV_DICT: return "dict";
    case JV_NS: return "Namespace";
    case JV_FUNC: return ((jfunc *)v.o)->fk == FK_MACRO ? "Macro" : "function";
    case JV_LOOP: return "LoopContext";
    case JV_MISSING: return "missing";
    }
    return "?";
}

static bool is_num(jv v) { return v.t == JV_INT || v.t == JV_FLOAT || v.t == JV_BOOL; }

// Compares two Python numbers exactly (an int64 and a double are not compared through a lossy cast).
static int num_cmp(jv a, jv b) {
    if (a.t == JV_BOOL) a = jv_int(a.b);
    if (b.t == JV_BOOL) b = jv_int(b.b);
    if (a.t == JV_INT && b.t == JV_INT) return a.i < b.i ? -1 : a.i > b.i;
    if (a.t == JV_FLOAT && b.t == JV_FLOAT) return a.f < b.f ? -1 : a.f > b.f ? 1 : (a.f == b.f ? 0 : 2);
    bool swap = a.t == JV_FLOAT;
    int64_t i = swap ? b.i : a.i;
    double f = swap ? a.f : b.f;
    int r;
    if (isnan(f)) return 2;
    if (f >= 9223372036854775808.0) r = -1;
    else if (f < -9223372036854775808.0) r = 1;
    else {
        double fl = floor(f);
        int64_t fi = (int64_t)fl;
        if (i < fi) r = -1;
        else if (i > fi) r = 1;
        else r = f > fl ? -1 : 0;
    }
    return swap ? -r : r;
}

// Python ==: numbers across int/float/bool, deep lists and dicts, identity otherwise.
bool jv_equal(jctx *c, jv a, jv b, int depth) {
    if (depth > 500) jraise(c, "values nested too deeply (or cyclic) to compare");
    if (is_num(a) && is_num(b)) return num_cmp(a, b) == 0;
    if (a.t != b.t) return false;
    switch ((jv_type)a.t) {
    case JV_UNDEF:
    case JV_NONE: return true;
    case JV_STR: return jv_str(a)->len == jv_str(b)->len && !memcmp(jv_str(a)->s, jv_str(b)->s, jv_str(a)->len);
    case JV_LIST:
    case JV_TUPLE: {
        jlist *x = jv_list(a), *y = jv_list(b);
        if (x->n != y->n) return false;
        for (size_t i = 0; i < x->n; i++)
            if (!jv_equal(c, x->v[i], y->v[i], depth + 1)) return false;
        return true;
    }
    case JV_DICT: {
        jdict *x = jv_dict(a), *y = jv_dict(b);
        if (x->n != y->n) return false;
        for (size_t i = 0; i < x->n; i++) {
            jv *o = jv_dict_get(b, x->k[i]->s, x->k[i]->len);
            if (!o || !jv_equal(c, x->v[i], *o, depth + 1)) return false;
        }
        return true;
    }
    default: return a.o == b.o;
    }
}

// Case-insensitive ordering used by sort/unique/min/max by default.
static int str_cmp_fold(const jstr *a, const jstr *b) {
    size_t i = 0, j = 0;
    while (i < a->len && j < b->len) {
        uint32_t x = jpy_lower(jutf8_next(a->s, a->len, &i)), y = jpy_lower(jutf8_next(b->s, b->len, &j));
        if (x != y) return x < y ? -1 : 1;
    }
    return (i < a->len) - (j < b->len);
}

// Python's ordering (`<`, sort): numbers, strings by code point, sequences lexicographically.
int jv_compare(jctx *c, jv a, jv b, bool case_sensitive) {
    if (is_num(a) && is_num(b)) {
        int r = num_cmp(a, b);
        return r == 2 ? 0 : r;
    }
    if (a.t == JV_STR && b.t == JV_STR) {
        if (!case_sensitive) return str_cmp_fold(jv_str(a), jv_str(b));
        const jstr *x = jv_str(a), *y = jv_str(b);
        size_t n = x->len < y->len ? x->len : y->len;
        int r = memcmp(x->s, y->s, n);
        if (r) return r < 0 ? -1 : 1;
        return (x->len > n) - (y->len > n);
    }
    if (a.t == b.t && jv_is_seq(a)) {
        jlist *x = jv_list(a), *y = jv_list(b);
        for (size_t i = 0; i < x->n && i < y->n; i++) {
            if (jv_equal(c, x->v[i], y->v[i], 0)) continue;
            return jv_compare(c, x->v[i], y->v[i], case_sensitive);
        }
        return (x->n > y->n) - (x->n < y->n);
    }
    jraise(c, "'<' not supported between instances of '%s' and '%s'", jv_type_name(a), jv_type_name(b));
}

// Python's repr(float): the shortest digits that round-trip, fixed notation for exponents -4..15.
void jfmt_float(char *buf, size_t cap, double f) {
    if (isnan(f)) {
        snprintf(buf, cap, "nan");
        return;
    }
    if (isinf(f)) {
        snprintf(buf, cap, f < 0 ? "-inf" : "inf");
        return;
    }
    if (f == 0) {
        snprintf(buf, cap, signbit(f) ? "-0.0" : "0.0");
        return;
    }
    char tmp[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, f);
        if (strtod(tmp, NULL) == f) break;
    }
    // tmp = [-]d.ddde[+-]XX
    char digits[24];
    int nd = 0;
    const char *p = tmp;
    bool neg = *p == '-';
    if (neg) p++;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9') digits[nd++] = *p;
    int exp = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    char out[64];
    size_t o = 0;
    if (neg) out[o++] = '-';
    if (exp < -4 || exp >= 16) {
        out[o++] = digits[0];
        if (nd > 1) {
            out[o++] = '.';
            for (int i = 1; i < nd; i++) out[o++] = digits[i];
        }
        o += (size_t)snprintf(out + o, sizeof out - o, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    } else if (exp < 0) {
        out[o++] = '0';
        out[o++] = '.';
        for (int i = 0; i < -exp - 1; i++) out[o++] = '0';
        for (int i = 0; i < nd; i++) out[o++] = digits[i];
        out[o] = 0;
    } else {
        for (int i = 0; i <= exp; i++) out[o++] = i < nd ? digits[i] : '0';
        out[o++] = '.';
        if (nd > exp + 1)
            for (int i = exp + 1; i < nd; i++) out[o++] = digits[i];
        else out[o++] = '0';
        out[o] = 0;
    }
    out[o] = 0;
    snprintf(buf, cap, "%s", out);
}

// Code points Python's str.isprintable() rejects (and repr() escapes), for the common ranges.
static bool py_unprintable(uint32_t cp) {
    if (cp < 0x20 || (cp >= 0x7F && cp <= 0xA0) || cp == 0xAD) return true;
    if (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202F) ||
        (cp >= 0x205F && cp <= 0x206F) || cp == 0x3000 || cp == 0xFEFF || (cp >= 0xFFF9 && cp <= 0xFFFB) ||
        cp == 0x061C || cp == 0x180E || (cp >= 0xD800 && cp <= 0xF8FF) || cp >= 0xF0000 || cp == 0xFFFE || cp == 0xFFFF)
        return true;
    return false;
}

// Python's repr() of a str: quote choice and escapes as Python prints them.
static void write_py_strrepr(jctx *c, jbuf *b, const jstr *s) {
    bool has_sq = memchr(s->s, '\'', s->len) != NULL, has_dq = memchr(s->s, '"', s->len) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    jbuf_putc(c, b, q);
    size_t i = 0;
    while (i < s->len) {
        size_t at = i;
        uint32_t cp = jutf8_next(s->s, s->len, &i);
        char esc[16];
        if (cp == (uint32_t)q || cp == '\\') {
            esc[0] = '\\';
            esc[1] = (char)cp;
            jbuf_put(c, b, esc, 2);
        } else if (cp == '\n') jbuf_puts(c, b, "\\n");
        else if (cp == '\r') jbuf_puts(c, b, "\\r");
        else if (cp == '\t') jbuf_puts(c, b, "\\t");
        else if (py_unprintable(cp)) {
            if (cp < 0x100) snprintf(esc, sizeof esc, "\\x%02x", cp);
            else if (cp < 0x10000) snprintf(esc, sizeof esc, "\\u%04x", cp);
            else snprintf(esc, sizeof esc, "\\U%08x", cp);
            jbuf_puts(c, b, esc);
        } else {
            jbuf_put(c, b, s->s + at, i - at);
        }
    }
    jbuf_putc(c, b, q);
}

// How a callable prints (rare; templates print their results).
static void write_func(jctx *c, jbuf *b, jv v) {
    jfunc *f = (jfunc *)v.o;
    char tmp[160];
    if (f->fk == FK_MACRO && f->node) snprintf(tmp, sizeof tmp, "<Macro '%s'>", f->node->s);
    else if (f->fk == FK_CALLER) snprintf(tmp, sizeof tmp, "<Macro 'caller'>");
    else if (f->fk == FK_METHOD) snprintf(tmp, sizeof tmp, "<built-in method of %s object>", jv_type_name(f->self));
    else snprintf(tmp, sizeof tmp, "<built-in function>");
    jbuf_puts(c, b, tmp);
}

// Python repr(), used for containers printed with {{ }}.
void jv_write_repr(jctx *c, jbuf *b, jv v, int depth) {
    if (depth > 500) jraise(c, "value nested too deeply (or cyclic) to print");
    char tmp[64];
    switch ((jv_type)v.t) {
    case JV_STR: write_py_strrepr(c, b, jv_str(v)); return;
    case JV_UNDEF: jbuf_puts(c, b, "Undefined"); return;
    case JV_LIST:
    case JV_TUPLE: {
        jlist *l = jv_list(v);
        jbuf_putc(c, b, v.t == JV_LIST ? '[' : '(');
        for (size_t i = 0; i < l->n; i++) {
            if (i) jbuf_puts(c, b, ", ");
            jv_write_repr(c, b, l->v[i], depth + 1);
        }
        if (v.t == JV_TUPLE && l->n == 1) jbuf_putc(c, b, ',');
        jbuf_putc(c, b, v.t == JV_LIST ? ']' : ')');
        return;
    }
    case JV_DICT:
    case JV_NS: {
        jdict *d = jv_dict(v);
        if (v.t == JV_NS) jbuf_puts(c, b, "<Namespace ");
        jbuf_putc(c, b, '{');
        for (size_t i = 0; i < d->n; i++) {
            if (i) jbuf_puts(c, b, ", ");
            write_py_strrepr(c, b, d->k[i]);
            jbuf_puts(c, b, ": ");
            jv_write_repr(c, b, d->v[i], depth + 1);
        }
        jbuf_putc(c, b, '}');
        if (v.t == JV_NS) jbuf_putc(c, b, '>');
        return;
    }
    case JV_LOOP: {
        jloop *l = (jloop *)v.o;
        snprintf(tmp, sizeof tmp, "<LoopContext %lld/%lld>", (long long)l->index0 + 1, (long long)l->length);
        jbuf_puts(c, b, tmp);
        return;
    }
    default: jv_write_str(c, b, v); return;
    }
}

// Python str(): what {{ value }} writes (None prints as None, Undefined as nothing).
void jv_write_str(jctx *c, jbuf *b, jv v) {
    char tmp[64];
    switch ((jv_type)v.t) {
    case JV_UNDEF:
    case JV_MISSING: return;
    case JV_NONE: jbuf_puts(c, b, "None"); return;
    case JV_BOOL: jbuf_puts(c, b, v.b ? "True" : "False"); return;
    case JV_INT:
        snprintf(tmp, sizeof tmp, "%lld", (long long)v.i);
        jbuf_puts(c, b, tmp);
        return;
    case JV_FLOAT:
        jfmt_float(tmp, sizeof tmp, v.f);
        jbuf_puts(c, b, tmp);
        return;
    case JV_STR: jbuf_put(c, b, jv_str(v)->s, jv_str(v)->len); return;
    case JV_FUNC: write_func(c, b, v); return;
    default: jv_write_repr(c, b, v, 0); return;
    }
}

// str() as a string value.
jv jv_to_str(jctx *c, jv v) {
    if (v.t == JV_STR) return jv_incref(v);
    jbuf b = {0};
    jv_write_str(c, &b, v);
    return jv_str_take_buf(c, &b);
}

// ---------------------------------------------------------------- json.dumps (transformers' tojson)

static void write_json_str(jctx *c, jbuf *b, const char *s, size_t n, bool ascii) {
    jbuf_putc(c, b, '"');
    size_t i = 0, run = 0;
    while (i < n) {
        unsigned char ch = (unsigned char)s[i];
        char esc[16];
        const char *e = NULL;
        size_t adv = 1;
        if (ch == '"') e = "\\\"";
        else if (ch == '\\') e = "\\\\";
        else if (ch == '\n') e = "\\n";
        else if (ch == '\r') e = "\\r";
        else if (ch == '\t') e = "\\t";
        else if (ch == '\b') e = "\\b";
        else if (ch == '\f') e = "\\f";
        else if (ch < 0x20 || (ascii && ch == 0x7F)) {
            snprintf(esc, sizeof esc, "\\u%04x", ch);
            e = esc;
        } else if (ascii && ch >= 0x80) {
            size_t j = i;
            uint32_t cp = jutf8_next(s, n, &j);
            adv = j - i;
            if (cp >= 0x10000) {
                uint32_t v = cp - 0x10000;
                snprintf(esc, sizeof esc, "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
            } else {
                snprintf(esc, sizeof esc, "\\u%04x", cp);
            }
            e = esc;
        }
        if (e) {
            jbuf_put(c, b, s + i - run, run);
            run = 0;
            jbuf_puts(c, b, e);
            i += adv;
        } else {
            run++;
            i++;
        }
    }
    jbuf_put(c, b, s + n - run, run);
    jbuf_putc(c, b, '"');
}

// Newline and indent for json.dumps(indent=...).
static void json_newline(jctx *c, jbuf *b, const jjson_opts *o, int level) {
    jbuf_putc(c, b, '\n');
    for (int i = 0; i < level; i++) jbuf_puts(c, b, o->indent_str);
}

// sort_keys order: by code point.
static int cmp_keys(const void *x, const void *y) {
    const jstr *a = *(jstr *const *)x, *b = *(jstr *const *)y;
    size_t n = a->len < b->len ? a->len : b->len;
    int r = memcmp(a->s, b->s, n);
    return r ? r : (a->len > b->len) - (a->len < b->len);
}

// json.dumps as transformers' tojson calls it (no HTML escaping, no key sorting by default).
void jv_write_json(jctx *c, jbuf *b, jv v, const jjson_opts *o, int depth) {
    if (depth > 500) jraise(c, "tojson: value nested too deeply (or cyclic)");
    char tmp[64];
    switch ((jv_type)v.t) {
    case JV_NONE: jbuf_puts(c, b, "null"); return;
    case JV_BOOL: jbuf_puts(c, b, v.b ? "true" : "false"); return;
    case JV_INT:
        snprintf(tmp, sizeof tmp, "%lld", (long long)v.i);
        jbuf_puts(c, b, tmp);
        return;
    case JV_FLOAT:
        if (isnan(v.f)) jbuf_puts(c, b, "NaN");
        else if (isinf(v.f)) jbuf_puts(c, b, v.f < 0 ? "-Infinity" : "Infinity");
        else {
            jfmt_float(tmp, sizeof tmp, v.f);
            jbuf_puts(c, b, tmp);
        }
        return;
    case JV_STR: write_json_str(c, b, jv_str(v)->s, jv_str(v)->len, o->ensure_ascii); return;
    case JV_LIST:
    case JV_TUPLE: {
        jlist *l = jv_list(v);
        if (l->n == 0) {
            jbuf_puts(c, b, "[]");
            return;
        }
        jbuf_putc(c, b, '[');
        for (size_t i = 0; i < l->n; i++) {
            if (i) jbuf_puts(c, b, o->item_sep);
            if (o->indent_str) json_newline(c, b, o, depth + 1);
            jv_write_json(c, b, l->v[i], o, depth + 1);
        }
        if (o->indent_str) json_newline(c, b, o, depth);
        jbuf_putc(c, b, ']');
        return;
    }
    case JV_DICT: {
        jdict *d = jv_dict(v);
        if (d->n == 0) {
            jbuf_puts(c, b, "{}");
            return;
        }
        size_t *order = jx_alloc(c, d->n * sizeof *order);
        for (size_t i = 0; i < d->n; i++) order[i] = i;
        if (o->sort_keys) {
            jstr **keys = jx_alloc(c, d->n * sizeof *keys);
            memcpy(keys, d->k, d->n * sizeof *keys);
            qsort(keys, d->n, sizeof *keys, cmp_keys);
            for (size_t i = 0; i < d->n; i++) order[i] = (size_t)dict_find(d, keys[i]->s, keys[i]->len);
            jx_free(c, keys);
        }
        jbuf_putc(c, b, '{');
        for (size_t k = 0; k < d->n; k++) {
            size_t i = order[k];
            if (k) jbuf_puts(c, b, o->item_sep);
            if (o->indent_str) json_newline(c, b, o, depth + 1);
            write_json_str(c, b, d->k[i]->s, d->k[i]->len, o->ensure_ascii);
            jbuf_puts(c, b, o->key_sep);
            jv_write_json(c, b, d->v[i], o, depth + 1);
        }
        if (o->indent_str) json_newline(c, b, o, depth);
        jbuf_putc(c, b, '}');
        jx_free(c, order);
        return;
    }
    default: jraise(c, "tojson: Object of type %s is not JSON serializable", jv_type_name(v));
    }
}

// ---------------------------------------------------------------- strings by code point

size_t jstr_cplen(const jstr *s) { return jutf8_len(s->s, s->len); }

// Python slicing s[start:stop:step] by code point.
jv jstr_slice_cp(jctx *c, const jstr *s, int64_t start, int64_t stop, int64_t step, bool has_start, bool has_stop) {
    size_t n = jstr_cplen(s);
    // byte offset of every code point (n + 1 entries)
    size_t *off = jx_alloc(c, (n + 1) * sizeof *off);
    size_t i = 0, k = 0;
    while (i < s->len) {
        off[k++] = i;
        jutf8_next(s->s, s->len, &i);
    }
    off[k] = s->len;
    jbuf b = {0};
    int64_t len = (int64_t)n;
    if (step > 0) {
        int64_t lo = !has_start ? 0 : start < 0 ? (start + len < 0 ? 0 : start + len) : (start > len ? len : start);
        int64_t hi = !has_stop ? len : stop < 0 ? (stop + len < 0 ? 0 : stop + len) : (stop > len ? len : stop);
        if (step == 1 && lo < hi) {
            jv r = jv_str_new(c, s->s + off[lo], off[hi] - off[lo]);
            jx_free(c, off);
            return r;
        }
        for (int64_t x = lo; x < hi; x += step) jbuf_put(c, &b, s->s + off[x], off[x + 1] - off[x]);
    } else {
        int64_t lo = !has_start  ? len - 1
                     : start < 0 ? (start + len < -1 ? -1 : start + len)
                                 : (start >= len ? len - 1 : start);
        int64_t hi = !has_stop ? -1 : stop < 0 ? (stop + len < -1 ? -1 : stop + len) : (stop >= len ? len - 1 : stop);
        for (int64_t x = lo; x > hi; x += step) jbuf_put(c, &b, s->s + off[x], off[x + 1] - off[x]);
    }
    jx_free(c, off);
    return jv_str_take_buf(c, &b);
}
