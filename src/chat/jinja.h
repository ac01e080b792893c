// Internals of the chat-template interpreter, shared by its files: the arena, the lexer's tokens, the AST,
// run-time values with their reference counts, and the render context. Not part of the public API.
//
// Errors inside the lexer, parser and interpreter unwind with longjmp to the one entry point that set the
// jump (aero_chat_template_parse, aero_chat_render). This is safe because every allocation made below an
// entry point is owned by its arena or by the render context's object list, which the entry point frees.
#ifndef AERO_CHAT_JINJA_H
#define AERO_CHAT_JINJA_H

#include <jansson.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"

// ---------------------------------------------------------------- arena (parse time)
typedef struct jarena_chunk jarena_chunk;
typedef struct {
    jarena_chunk *head;
    jmp_buf *jb; // where to unwind on allocation failure
    aero_error *err;
} jarena;

void *jarena_alloc(jarena *a, size_t n);
char *jarena_strndup(jarena *a, const char *s, size_t n);
void jarena_free(jarena *a);
// Records the error and unwinds to the parse entry point.
_Noreturn void jparse_fail(jarena *a, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

// ---------------------------------------------------------------- unicode helpers (utf8.c)
// Decodes the code point at s[*i] (advancing *i); invalid bytes decode as U+FFFD, one byte each.
uint32_t jutf8_next(const char *s, size_t n, size_t *i);
size_t jutf8_put(char *dst, uint32_t cp);  // writes 1..4 bytes
size_t jutf8_len(const char *s, size_t n); // code points
bool jutf8_valid(const char *s, size_t n, size_t *bad_at);
bool jpy_isspace(uint32_t cp); // Python str.isspace()
bool jpy_isalpha(uint32_t cp);
bool jpy_isdigit(uint32_t cp);
bool jpy_isalnum(uint32_t cp);
uint32_t jpy_upper(uint32_t cp);
uint32_t jpy_lower(uint32_t cp);
bool jpy_isupper(uint32_t cp);
bool jpy_islower(uint32_t cp);

// ---------------------------------------------------------------- tokens (lexer.c)
typedef enum {
    TK_EOF,
    TK_TEXT,
    TK_VAR_BEGIN,
    TK_VAR_END,
    TK_BLOCK_BEGIN,
    TK_BLOCK_END,
    TK_NAME,
    TK_STRING,
    TK_INT,
    TK_FLOAT,
    TK_OP,
} jtok_kind;

typedef enum {
    OP_NONE,
    OP_ADD,
    OP_SUB,
    OP_MUL,
    OP_DIV,
    OP_FLOORDIV,
    OP_MOD,
    OP_POW,
    OP_TILDE,
    OP_LBRACKET,
    OP_RBRACKET,
    OP_LPAREN,
    OP_RPAREN,
    OP_LBRACE,
    OP_RBRACE,
    OP_EQ,
    OP_NE,
    OP_GT,
    OP_GTEQ,
    OP_LT,
    OP_LTEQ,
    OP_ASSIGN,
    OP_DOT,
    OP_COLON,
    OP_PIPE,
    OP_COMMA,
    OP_SEMICOLON,
    // non-token operators used by the AST
    OP_IN,
    OP_NOTIN,
    OP_AND,
    OP_OR,
    OP_NOT,
    OP_NEG,
    OP_POS,
} jop;

typedef struct {
    jtok_kind kind;
    jop op;
    int line;
    const char *s; // TEXT, NAME, STRING (unescaped, arena-owned); not NUL-terminated for TEXT
    size_t len;
    int64_t i;
    double f;
} jtok;

typedef struct {
    jtok *v;
    size_t n, cap;
} jtoks;

// Splits the template into tokens with jinja2's whitespace rules (trim_blocks, lstrip_blocks, `-`, `+`).
void jlex(jarena *a, const char *src, size_t len, jtoks *out);
const char *jop_str(jop op);

// ---------------------------------------------------------------- AST (parser.c)
typedef enum {
    // statements
    N_TEXT,
    N_OUTPUT,
    N_IF,
    N_FOR,
    N_SET,
    N_SETBLOCK,
    N_MACRO,
    N_CALLBLOCK,
    N_FILTERBLOCK,
    N_WITH,
    N_BREAK,
    N_CONTINUE,
    N_BLOCK,
    // expressions
    E_CONST_STR,
    E_CONST_INT,
    E_CONST_FLOAT,
    E_CONST_BOOL,
    E_CONST_NONE,
    E_NAME,
    E_GETATTR,
    E_GETITEM,
    E_SLICE,
    E_CALL,
    E_FILTER,
    E_TEST,
    E_UNARY,
    E_BINARY,
    E_COMPARE,
    E_AND,
    E_OR,
    E_NOT,
    E_COND,
    E_LIST,
    E_TUPLE,
    E_DICT,
    E_CONCAT,
    E_KWARG,
    E_STARARG,
    E_DSTARARG,
    E_NSREF,
} jnode_kind;

typedef struct jnode jnode;
typedef struct {
    jnode **v;
    int n, cap;
} jnodes;

struct jnode {
    jnode_kind kind;
    jop op; // E_UNARY, E_BINARY; N_FOR: loop controls used
    int line;
    int id;        // filter/test id; E_CONST_BOOL value; E_SLICE presence bits
    const char *s; // name, string literal, attribute, filter/test name (NUL-terminated)
    size_t len;
    int64_t i;
    double f;
    jnode *a, *b, *c; // operands: see parser.c for each kind
    jnodes kids;      // bodies, items, call arguments, compare operands
    jnodes kids2;     // else bodies, dict values, macro parameters, compare operators (as E_CONST_INT)
};

void jnodes_push(jarena *a, jnodes *l, jnode *n);
// Parses tokens into a program (a N_BLOCK node).
jnode *jparse(jarena *a, const jtoks *toks);

// Filter and test tables (filters.c), resolved at parse time so an unknown name is a parse error.
int jfilter_lookup(const char *name); // -1 when unknown
int jtest_lookup(const char *name);

// ---------------------------------------------------------------- values (value.c)
typedef enum {
    JV_UNDEF,
    JV_NONE,
    JV_BOOL,
    JV_INT,
    JV_FLOAT,
    JV_STR,
    JV_LIST,
    JV_TUPLE,
    JV_DICT,
    JV_NS,
    JV_FUNC,
    JV_LOOP,
    JV_MISSING, // argument not given (binder), never visible to templates
} jv_type;

typedef enum { JO_STR, JO_LIST, JO_DICT, JO_FUNC, JO_SCOPE, JO_LOOP, JO_BLOB } jobj_kind;

typedef struct jobj jobj;
struct jobj {
    jobj *prev, *next;
    size_t bytes; // accounted size of the object itself
    int32_t rc;
    uint8_t kind;
};

typedef struct {
    uint8_t t;
    union {
        bool b;
        int64_t i;
        double f;
        jobj *o; // STR, LIST, TUPLE, DICT, NS, FUNC, LOOP; UNDEF: optional hint string
    };
} jv;

typedef struct {
    jobj h;
    size_t len;
    char s[];
} jstr;

typedef struct {
    jobj h;
    size_t n, cap;
    jv *v;
} jlist;

typedef struct {
    jobj h;
    size_t n, cap;
    jstr **k;
    jv *v;
    uint32_t *ht; // open-addressing index (entry+1; 0 empty), built once n grows past a few keys
    size_t hcap;
} jdict;

typedef struct jscope jscope;
struct jscope {
    jobj h;
    jscope *parent;
    size_t n, cap;
    const char **names;
    jv *vals;
};

typedef enum { FK_GLOBAL, FK_METHOD, FK_MACRO, FK_CALLER, FK_LOOP_CYCLE } jfunc_kind;

typedef struct {
    jobj h;
    jfunc_kind fk;
    int id;            // global or method id
    jv self;           // bound method receiver
    const jnode *node; // macro / call block
    jscope *closure;
    jv caller; // macro invoked from a call block: the caller function
} jfunc;

typedef struct {
    jobj h;
    jv items; // the list iterated (a JV_LIST)
    int64_t index0, length;
    int depth;
} jloop;

// ---------------------------------------------------------------- render context
typedef struct {
    char *p;
    size_t n, cap;
} jbuf;

typedef struct jctx {
    jobj head; // sentinel of the list of every live object
    jmp_buf jb;
    aero_error *err;
    int line;       // line being evaluated, for error messages
    int ctl;        // 0, CTL_BREAK, CTL_CONTINUE
    int depth;      // macro call depth
    int edepth;     // expression/statement recursion depth
    uint64_t steps; // loop iterations, bounded
    jbuf *outs;     // capture stack: outs[nout-1] receives output
    int nout, capout;
    jscope *globals;
    uint64_t mem; // bytes held by values and buffers, bounded per render
    uint64_t max_mem, max_steps;
} jctx;

#define JCTX_MAX_MEM ((uint64_t)256 << 20)
#define JCTX_MAX_STEPS 5000000ull
// Lowers a template's render limits (fuzzers: many inputs per second); 0 keeps a limit unchanged.
struct aero_chat_template;
void jtemplate_set_limits(struct aero_chat_template *t, uint64_t max_steps, uint64_t max_mem);
// Accounts n more (or, negative, fewer) bytes held by the render; raises past max_mem.
void jctx_mem(jctx *c, int64_t n);

enum { CTL_NONE = 0, CTL_BREAK = 1, CTL_CONTINUE = 2 };

// Records "line N: msg" and unwinds to aero_chat_render.
_Noreturn void jraise(jctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
_Noreturn void jraise_oom(jctx *c);

void jctx_init(jctx *c, aero_error *err);
void jctx_sweep(jctx *c); // frees every object still alive

void *jx_alloc(jctx *c, size_t n); // scratch memory owned by the context (freed at sweep or by jx_free)
void jx_free(jctx *c, void *p);
void *jx_realloc(jctx *c, void *p, size_t n);

static inline jv jv_undef(void) {
    jv v = {.t = JV_UNDEF};
    v.o = NULL;
    return v;
}
static inline jv jv_none(void) {
    jv v = {.t = JV_NONE};
    v.o = NULL;
    return v;
}
static inline jv jv_missing(void) {
    jv v = {.t = JV_MISSING};
    v.o = NULL;
    return v;
}
static inline jv jv_bool(bool b) {
    jv v = {.t = JV_BOOL};
    v.i = 0;
    v.b = b;
    return v;
}
static inline jv jv_int(int64_t i) {
    jv v = {.t = JV_INT};
    v.i = i;
    return v;
}
static inline jv jv_float(double f) {
    jv v = {.t = JV_FLOAT};
    v.f = f;
    return v;
}
static inline bool jv_isobj(jv v) { return (v.t >= JV_STR && v.t <= JV_LOOP) || (v.t == JV_UNDEF && v.o); }
static inline jstr *jv_str(jv v) { return (jstr *)v.o; }
static inline jlist *jv_list(jv v) { return (jlist *)v.o; }
static inline jdict *jv_dict(jv v) { return (jdict *)v.o; }
static inline bool jv_is_seq(jv v) { return v.t == JV_LIST || v.t == JV_TUPLE; }

jv jv_incref(jv v);
void jv_decref(jctx *c, jv v);

jv jv_str_new(jctx *c, const char *s, size_t n);
jv jv_str_cstr(jctx *c, const char *s);
jv jv_str_fmt(jctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
jv jv_str_take_buf(jctx *c, jbuf *b); // makes a string of the buffer's bytes and empties the buffer
jv jv_undef_hint(jctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

jv jv_list_new(jctx *c, size_t cap, bool tuple);
void jv_list_push(jctx *c, jv list, jv item); // steals item

jv jv_dict_new(jctx *c, bool ns);
void jv_dict_set(jctx *c, jv dict, jstr *key, jv val); // key borrowed (increfs), steals val
void jv_dict_set_cstr(jctx *c, jv dict, const char *key, jv val);
jv *jv_dict_get(jv dict, const char *key, size_t klen); // borrowed slot or NULL

jscope *jscope_new(jctx *c, jscope *parent);
void jscope_set(jctx *c, jscope *s, const char *name, jv val); // steals val
jv *jscope_lookup(jscope *s, const char *name);

jv jfunc_new(jctx *c, jfunc_kind fk, int id, jv self);
jv jv_from_json(jctx *c, const json_t *j, int depth);
jv jv_loop_new(jctx *c, jv items, int depth);

bool jv_truthy(jv v);
bool jv_equal(jctx *c, jv a, jv b, int depth);
int jv_compare(jctx *c, jv a, jv b, bool case_sensitive); // -1, 0, 1; raises when unordered
const char *jv_type_name(jv v);

// Python str() / repr() of a value appended to a buffer.
void jv_write_str(jctx *c, jbuf *b, jv v);
void jv_write_repr(jctx *c, jbuf *b, jv v, int depth);
jv jv_to_str(jctx *c, jv v);                      // new reference; a string is returned increfed
void jfmt_float(char *buf, size_t cap, double f); // Python repr of a float

typedef struct {
    int indent; // < 0: none
    const char *indent_str;
    const char *item_sep, *key_sep;
    bool ensure_ascii, sort_keys;
} jjson_opts;
void jv_write_json(jctx *c, jbuf *b, jv v, const jjson_opts *o, int depth);

void jbuf_put(jctx *c, jbuf *b, const char *s, size_t n);
void jbuf_putc(jctx *c, jbuf *b, char ch);
void jbuf_puts(jctx *c, jbuf *b, const char *s);

// Code-point helpers over a string value.
size_t jstr_cplen(const jstr *s);
jv jstr_slice_cp(jctx *c, const jstr *s, int64_t start, int64_t stop, int64_t step, bool has_start, bool has_stop);

// ---------------------------------------------------------------- calls (filters.c, methods.c)
typedef struct {
    jv *pos;
    int npos;
    const char **kwk;
    jv *kwv;
    int nkw;
} jargs;

// Binds args to a Python-style signature: names[i] gets out[i] (JV_MISSING when not given).
void jargs_bind(jctx *c, const char *what, const jargs *a, const char *const *names, int n, jv *out);

jv jfilter_apply(jctx *c, int id, jv operand, const jargs *a);
bool jtest_apply(jctx *c, int id, jv operand, const jargs *a);

// Attribute (`x.name`) and item (`x[key]`) access with jinja2's sandboxed lookup order.
jv jget_attr(jctx *c, jv obj, const char *name, size_t len);
jv jget_item(jctx *c, jv obj, jv key);
jv jcall_value(jctx *c, jv fn, const jargs *a);
// Global functions (range, namespace, raise_exception, strftime_now, dict).
void jglobals_install(jctx *c, jscope *s);
jv jcall_global(jctx *c, int id, const jargs *a);
jv jcall_method(jctx *c, int id, jv self, const jargs *a);
// Python's `str % args`.
jv jstr_percent(jctx *c, jv fmt, jv args);
// String helpers shared by filters and str methods (all by code point, Python semantics).
jv jstr_strip(jctx *c, const jstr *s, const jstr *chars, bool left, bool right);
typedef enum { CASE_UPPER, CASE_LOWER, CASE_CAPITALIZE, CASE_PYTITLE, CASE_JTITLE, CASE_SWAP } jcase;
jv jstr_case(jctx *c, const jstr *s, jcase mode);
jv jstr_replace(jctx *c, const jstr *s, const jstr *old, const jstr *rep, int64_t count);
jv jstr_split(jctx *c, const jstr *s, const jstr *sep, int64_t maxsplit, bool from_right);
// Borrowed string of a value that must be a string (Undefined counts as ""); raises naming `what` otherwise.
const jstr *jexpect_str(jctx *c, jv v, const char *what);
int64_t jexpect_int(jctx *c, jv v, const char *what);
// The macro call hook, implemented by the interpreter (render.c).
jv jcall_macro(jctx *c, jfunc *f, const jargs *a);
// String of the current sequence/dict keys for iteration: the items a for loop sees.
jv jv_iter_list(jctx *c, jv v);

#endif
