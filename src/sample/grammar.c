// The grammar recognizer and token mask. A recognizer state is a set of stacks (a pushdown automaton run
// breadth-first, as llama.cpp's grammar sampler does); stacks are immutable linked cells from an arena, so a
// byte step shares every tail and a trie walk releases what it built by resetting a mark.
#include "grammar.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/util.h"

#define MAX_ELEMS (1 << 22)
#define MAX_RULES (1 << 20)
#define MAX_STACKS 256 // a state holding more is truncated (only ambiguity this wide would reach it)
#define MAX_EXPAND_DEPTH 512
#define CHUNK_CELLS 4096
#define MASK_CACHE 16
#define LOOP_MIN_BYTES 32 // a state that loops on this many bytes is masked from the per-token table

// Byte ranges are how grammars write classes ([0-9], [\x80-\xbf]).
void aero_cset_range(aero_cset *c, unsigned lo, unsigned hi) {
    for (unsigned b = lo; b <= hi && b < 256; b++) aero_cset_add(c, b);
}

typedef struct {
    int32_t *alts; // start index of each alternative in elems
    int n, cap;
} rule_t;

struct aero_grammar {
    aero_gel *elems;
    int n_elems, cap_elems;
    rule_t *rules;
    int n_rules, cap_rules;
    aero_cset *sets;
    int n_sets, cap_sets;
    int root;
};

// An empty grammar for a compiler to fill; root unset until aero_grammar_set_root.
aero_grammar *aero_grammar_new(void) {
    aero_grammar *g = calloc(1, sizeof *g);
    if (g) g->root = -1;
    return g;
}

// Frees the rules, their elements and the byte classes.
void aero_grammar_free(aero_grammar *g) {
    if (!g) return;
    for (int i = 0; i < g->n_rules; i++) free(g->rules[i].alts);
    free(g->rules);
    free(g->elems);
    free(g->sets);
    free(g);
}

// Grows an array to hold n + extra items of size sz; false when out of memory or past limit.
static bool grow(void **p, int *cap, int n, int extra, size_t sz, int limit) {
    if (n + extra <= *cap) return true;
    if (n + extra > limit) return false;
    int nc = *cap ? *cap : 16;
    while (nc < n + extra) nc *= 2;
    if (nc > limit) nc = limit;
    void *q = realloc(*p, (size_t)nc * sz);
    if (!q) return false;
    *p = q;
    *cap = nc;
    return true;
}

// Rules are created before their alternatives so that rules can refer to each other (recursion).
int aero_grammar_add_rule(aero_grammar *g) {
    if (!grow((void **)&g->rules, &g->cap_rules, g->n_rules, 1, sizeof *g->rules, MAX_RULES)) return -1;
    memset(&g->rules[g->n_rules], 0, sizeof g->rules[0]);
    return g->n_rules++;
}

// Classes are shared: grammars repeat the same few ([0-9], string bytes) thousands of times.
int aero_grammar_cset(aero_grammar *g, const aero_cset *c) {
    for (int i = 0; i < g->n_sets; i++)
        if (!memcmp(&g->sets[i], c, sizeof *c)) return i;
    if (!grow((void **)&g->sets, &g->cap_sets, g->n_sets, 1, sizeof *g->sets, 1 << 20)) return -1;
    g->sets[g->n_sets] = *c;
    return g->n_sets++;
}

// Alternatives live end to end in one element array, each closed by an END element.
bool aero_grammar_add_alt(aero_grammar *g, int rule, const aero_gel *els, int n) {
    if (rule < 0 || rule >= g->n_rules || n < 0) return false;
    if (!grow((void **)&g->elems, &g->cap_elems, g->n_elems, n + 1, sizeof *g->elems, MAX_ELEMS)) return false;
    rule_t *r = &g->rules[rule];
    if (!grow((void **)&r->alts, &r->cap, r->n, 1, sizeof *r->alts, 1 << 20)) return false;
    r->alts[r->n++] = g->n_elems;
    if (n) memcpy(g->elems + g->n_elems, els, sizeof *els * (size_t)n);
    g->n_elems += n;
    g->elems[g->n_elems++] = (aero_gel){AERO_GEL_END, 0};
    return true;
}

void aero_grammar_set_root(aero_grammar *g, int rule) { g->root = rule; }
int aero_grammar_root(const aero_grammar *g) { return g->root; }

// Copies src's rules into dst (byte classes shared, references shifted): compiled grammars become parts of a
// larger one. Returns src's root in dst, -1 when out of memory.
int aero_grammar_import(aero_grammar *dst, const aero_grammar *src) {
    int base = dst->n_rules;
    for (int r = 0; r < src->n_rules; r++)
        if (aero_grammar_add_rule(dst) < 0) return -1;
    aero_gel *els = malloc(sizeof *els * (size_t)(src->n_elems ? src->n_elems : 1));
    if (!els) return -1;
    for (int r = 0; r < src->n_rules; r++)
        for (int a = 0; a < src->rules[r].n; a++) {
            int n = 0;
            for (int i = src->rules[r].alts[a]; src->elems[i].kind != AERO_GEL_END; i++, n++) {
                aero_gel e = src->elems[i];
                e.arg = e.kind == AERO_GEL_RULE ? base + e.arg : aero_grammar_cset(dst, &src->sets[e.arg]);
                if (e.arg < 0) goto fail;
                els[n] = e;
            }
            if (!aero_grammar_add_alt(dst, base + r, els, n)) goto fail;
        }
    free(els);
    return src->root < 0 ? -1 : base + src->root;
fail:
    free(els);
    return -1;
}
int aero_grammar_n_rules(const aero_grammar *g) { return g->n_rules; }

// Which rules can match the empty string (fixed point), for the left-recursion check.
static bool *nullable_rules(const aero_grammar *g) {
    bool *nul = calloc((size_t)g->n_rules + 1, 1);
    if (!nul) return NULL;
    for (bool changed = true; changed;) {
        changed = false;
        for (int r = 0; r < g->n_rules; r++) {
            if (nul[r]) continue;
            for (int a = 0; a < g->rules[r].n && !nul[r]; a++) {
                bool all = true;
                for (int i = g->rules[r].alts[a]; g->elems[i].kind != AERO_GEL_END && all; i++)
                    all = g->elems[i].kind == AERO_GEL_RULE && nul[g->elems[i].arg];
                if (all) nul[r] = changed = true;
            }
        }
    }
    return nul;
}

// Runs once per compiled grammar, so the recognizer can assume a well-formed one.
aero_status aero_grammar_check(const aero_grammar *g, aero_error *err) {
    if (g->root < 0 || g->root >= g->n_rules) return aero_fail(err, AERO_ERR_INVALID, "grammar has no root rule");
    for (int r = 0; r < g->n_rules; r++) {
        if (g->rules[r].n == 0) return aero_fail(err, AERO_ERR_INVALID, "grammar rule %d has no alternative", r);
        for (int a = 0; a < g->rules[r].n; a++)
            for (int i = g->rules[r].alts[a]; g->elems[i].kind != AERO_GEL_END; i++) {
                const aero_gel *e = &g->elems[i];
                if (e->kind == AERO_GEL_RULE && (e->arg < 0 || e->arg >= g->n_rules))
                    return aero_fail(err, AERO_ERR_INVALID, "grammar rule %d refers to a missing rule", r);
                if (e->kind == AERO_GEL_CHARS && (e->arg < 0 || e->arg >= g->n_sets))
                    return aero_fail(err, AERO_ERR_INVALID, "grammar rule %d refers to a missing byte class", r);
            }
    }
    // Left recursion: a cycle in "r may start with s" (s after only rules that can match nothing).
    bool *nul = nullable_rules(g);
    int *edge_at = calloc((size_t)g->n_rules + 1, sizeof *edge_at);
    int *edges = NULL, *color = NULL, *stack = NULL, *it = NULL;
    aero_status st = AERO_OK;
    if (!nul || !edge_at) goto oom;
    int n_edges = 0;
    for (int pass = 0; pass < 2; pass++) {
        n_edges = 0;
        for (int r = 0; r < g->n_rules; r++) {
            if (pass) edge_at[r] = n_edges;
            for (int a = 0; a < g->rules[r].n; a++)
                for (int i = g->rules[r].alts[a]; g->elems[i].kind == AERO_GEL_RULE; i++) {
                    if (pass) edges[n_edges] = g->elems[i].arg;
                    n_edges++;
                    if (!nul[g->elems[i].arg]) break;
                }
        }
        if (!pass && !(edges = malloc(sizeof *edges * (size_t)(n_edges + 1)))) goto oom;
    }
    edge_at[g->n_rules] = n_edges;
    color = calloc((size_t)g->n_rules, sizeof *color);
    stack = malloc(sizeof *stack * (size_t)g->n_rules);
    it = malloc(sizeof *it * (size_t)g->n_rules);
    if (!color || !stack || !it) goto oom;
    for (int s0 = 0; s0 < g->n_rules && !st; s0++) {
        if (color[s0]) continue;
        int sp = 0;
        stack[sp] = s0;
        it[sp++] = edge_at[s0];
        color[s0] = 1;
        while (sp) {
            int r = stack[sp - 1];
            if (it[sp - 1] == edge_at[r + 1]) {
                color[r] = 2;
                sp--;
                continue;
            }
            int t = edges[it[sp - 1]++];
            if (color[t] == 1) {
                st = aero_fail(err, AERO_ERR_INVALID, "grammar rule %d is left-recursive", t);
                break;
            }
            if (color[t] == 0) {
                color[t] = 1;
                stack[sp] = t;
                it[sp++] = edge_at[t];
            }
        }
    }
    goto done;
oom:
    st = aero_fail(err, AERO_ERR_NOMEM, "out of memory checking the grammar");
done:
    free(nul);
    free(edge_at);
    free(edges);
    free(color);
    free(stack);
    free(it);
    return st;
}

// ---- stacks ----

typedef struct cell {
    int32_t pos;       // element index: a byte class once expanded, else what comes next
    uint64_t hash;     // of the whole stack, so sets compare in O(1) almost always
    struct cell *next; // the rest of the stack (NULL: bottom)
} cell;

typedef struct {
    cell **chunks;
    int n_chunks, cap_chunks;
    int chunk, used; // allocation point
    bool oom;
} arena;

typedef struct {
    int chunk, used;
} arena_mark;

// Cells come from fixed chunks so a mark/reset frees a whole trie branch's work at once.
static cell *arena_cell(arena *a) {
    if (a->chunk < a->n_chunks && a->used == CHUNK_CELLS) {
        a->chunk++;
        a->used = 0;
    }
    if (a->chunk >= a->n_chunks) {
        if (!grow((void **)&a->chunks, &a->cap_chunks, a->n_chunks, 1, sizeof *a->chunks, 1 << 20)) goto oom;
        cell *c = malloc(sizeof(cell) * CHUNK_CELLS);
        if (!c) goto oom;
        a->chunks[a->n_chunks++] = c;
        a->chunk = a->n_chunks - 1;
        a->used = 0;
    }
    return &a->chunks[a->chunk][a->used++];
oom:
    a->oom = true;
    return NULL;
}

static arena_mark arena_get(const arena *a) { return (arena_mark){a->chunk, a->used}; }
// Releases everything allocated after mark m (kept for reuse).
static void arena_set(arena *a, arena_mark m) {
    a->chunk = m.chunk;
    a->used = m.used;
}
// Returns the chunks to the allocator.
static void arena_free(arena *a) {
    for (int i = 0; i < a->n_chunks; i++) free(a->chunks[i]);
    free(a->chunks);
    memset(a, 0, sizeof *a);
}

// Pushes pos onto stack next; the hash covers the whole stack so equal stacks compare in O(1) mostly.
static cell *mk(arena *a, int32_t pos, cell *next) {
    cell *c = arena_cell(a);
    if (!c) return NULL;
    c->pos = pos;
    c->next = next;
    c->hash = aero_hash_u64((uint64_t)(uint32_t)pos * 0x9e3779b97f4a7c15ull ^ (next ? next->hash : 0x51ed270b27ull));
    return c;
}

// Structural equality, short-cut by shared tails and hashes.
static bool stack_eq(const cell *x, const cell *y) {
    while (x != y) {
        if (!x || !y || x->hash != y->hash || x->pos != y->pos) return false;
        x = x->next;
        y = y->next;
    }
    return true;
}

// A recognizer state: the live stacks (each topped by a byte class) and whether the input so far is complete.
typedef struct {
    cell **st;
    int n;
    bool accept;
    aero_cset first; // union of the top classes: the bytes that can come next
} sset;

typedef struct {
    const aero_grammar *g;
    arena *a;
    sset *out;
} expander;

// State buffers are allocated once at their largest size; a step never allocates them.
static bool sset_init(sset *s) {
    memset(s, 0, sizeof *s);
    s->st = malloc(sizeof *s->st * MAX_STACKS);
    return s->st != NULL;
}

// Empties a state before a step writes into it.
static void sset_clear(sset *s) {
    s->n = 0;
    s->accept = false;
    memset(&s->first, 0, sizeof s->first);
}

// Adds a stack unless an equal one is there (ambiguity would otherwise multiply states).
static void sset_add(const aero_grammar *g, sset *s, cell *c) {
    for (int i = 0; i < s->n; i++)
        if (stack_eq(s->st[i], c)) return;
    if (s->n == MAX_STACKS) return;
    s->st[s->n++] = c;
    const aero_cset *cs = &g->sets[g->elems[c->pos].arg];
    for (int k = 0; k < 4; k++) s->first.w[k] |= cs->w[k];
}

// Adds the stacks that stack c stands for once its top is a byte class: rule references are replaced by
// each alternative (a reference last in its alternative does not stay on the stack), finished alternatives
// return to what called them, and an empty stack means the sentence may end here.
static void expand(expander *x, cell *c, int depth) {
    if (!c) {
        x->out->accept = true;
        return;
    }
    if (depth > MAX_EXPAND_DEPTH) return;
    const aero_grammar *g = x->g;
    const aero_gel *e = &g->elems[c->pos];
    if (e->kind == AERO_GEL_CHARS) {
        sset_add(g, x->out, c);
        return;
    }
    if (e->kind == AERO_GEL_END) {
        expand(x, c->next, depth + 1);
        return;
    }
    cell *cont = g->elems[c->pos + 1].kind == AERO_GEL_END ? c->next : mk(x->a, c->pos + 1, c->next);
    if (!cont && g->elems[c->pos + 1].kind != AERO_GEL_END) return;
    const rule_t *r = &g->rules[e->arg];
    for (int i = 0; i < r->n; i++) {
        cell *n = mk(x->a, r->alts[i], cont);
        if (n) expand(x, n, depth + 1);
    }
}

// The state after byte b (out is cleared first).
static void advance(const aero_grammar *g, arena *a, const sset *in, unsigned b, sset *out) {
    sset_clear(out);
    if (!aero_cset_has(&in->first, b)) return;
    expander x = {g, a, out};
    for (int i = 0; i < in->n; i++) {
        cell *c = in->st[i];
        if (!aero_cset_has(&g->sets[g->elems[c->pos].arg], b)) continue;
        cell *n = mk(a, c->pos + 1, c->next);
        if (n) expand(&x, n, 0);
    }
}

static bool sset_alive(const sset *s) { return s->n > 0 || s->accept; }

// Copies the stack pointers (stacks are immutable, so they can be shared).
static void sset_copy(sset *dst, const sset *src) {
    memcpy(dst->st, src->st, sizeof *src->st * (size_t)src->n);
    dst->n = src->n;
    dst->accept = src->accept;
    dst->first = src->first;
}

// Copies stacks into a fresh arena (sharing tails among themselves), so the old arena can be dropped.
static cell *copy_stack(arena *a, const cell *c) {
    if (!c) return NULL;
    cell *rest = copy_stack(a, c->next);
    if (c->next && !rest) return NULL;
    cell *n = arena_cell(a);
    if (!n) return NULL;
    *n = *c;
    n->next = rest;
    return n;
}

// ---- byte-level run ----

struct aero_grammar_run {
    const aero_grammar *g;
    arena a[2];
    int cur;
    sset s, tmp, tmp2;
};

// The start state: the root rule expanded.
static void start_state(const aero_grammar *g, arena *a, sset *s) {
    sset_clear(s);
    expander x = {g, a, s};
    const rule_t *r = &g->rules[g->root];
    for (int i = 0; i < r->n; i++) {
        cell *n = mk(a, r->alts[i], NULL);
        if (n) expand(&x, n, 0);
    }
}

// A recognizer at the start of the root rule.
aero_grammar_run *aero_grammar_run_new(const aero_grammar *g) {
    aero_grammar_run *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->g = g;
    if (!sset_init(&r->s) || !sset_init(&r->tmp) || !sset_init(&r->tmp2)) {
        aero_grammar_run_free(r);
        return NULL;
    }
    start_state(g, &r->a[0], &r->s);
    return r;
}

// Frees the recognizer's arenas and state buffers.
void aero_grammar_run_free(aero_grammar_run *r) {
    if (!r) return;
    arena_free(&r->a[0]);
    arena_free(&r->a[1]);
    free(r->s.st);
    free(r->tmp.st);
    free(r->tmp2.st);
    free(r);
}

// Moves the state's stacks into the other arena, dropping everything else built meanwhile (a stack that
// cannot be copied for lack of memory is dropped: the state only narrows).
static void run_compact(arena a[2], int *cur, sset *s) {
    arena *dst = &a[!*cur];
    arena_set(dst, (arena_mark){0, 0});
    int k = 0;
    for (int i = 0; i < s->n; i++) {
        cell *c = copy_stack(dst, s->st[i]);
        if (c) s->st[k++] = c;
    }
    s->n = k;
    *cur = !*cur;
    arena_set(&a[!*cur], (arena_mark){0, 0});
}

// Steps byte by byte; on failure the arena is reset so the old state stays intact.
bool aero_grammar_run_feed(aero_grammar_run *r, const char *bytes, size_t n) {
    arena *a = &r->a[r->cur];
    arena_mark m = arena_get(a);
    const sset *in = &r->s;
    sset *buf[2] = {&r->tmp, &r->tmp2};
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        sset *out = buf[i & 1];
        advance(r->g, a, in, (unsigned char)bytes[i], out);
        ok = out->n > 0 || (out->accept && i + 1 == n);
        in = out;
    }
    if (!ok || a->oom) {
        arena_set(a, m);
        return false;
    }
    if (n) {
        sset_copy(&r->s, in);
        run_compact(r->a, &r->cur, &r->s);
    }
    return true;
}

bool aero_grammar_run_accepting(const aero_grammar_run *r) { return r->s.accept; }

// ---- vocabulary ----

struct aero_grammar_vocab {
    int n_vocab;
    uint32_t *off; // token bytes: bytes[off[id] .. off[id] + len[id])
    uint16_t *len;
    char *bytes;
    uint8_t *kind; // 0 ordinary (with bytes), 1 never allowed, 2 end of generation
    // trie in preorder: node i's children start at i + 1 and each child c is followed by its subtree
    int n_nodes;
    uint8_t *nbyte;
    int32_t *size;     // nodes in the subtree, the node included
    int32_t *tok_head; // first token ending at the node (-1 none)
    int32_t *tok_next; // next token with the same bytes
    int max_len;
};

// Frees the token bytes and the trie.
void aero_grammar_vocab_free(aero_grammar_vocab *v) {
    if (!v) return;
    free(v->off);
    free(v->len);
    free(v->bytes);
    free(v->kind);
    free(v->nbyte);
    free(v->size);
    free(v->tok_head);
    free(v->tok_next);
    free(v);
}

static const aero_grammar_vocab *sort_vocab; // qsort has no context argument; vocabularies are built at load
// Byte order of token strings, so tokens sharing a prefix are adjacent (the trie is built in one pass).
static int cmp_tok(const void *a, const void *b) {
    const aero_grammar_vocab *v = sort_vocab;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    size_t lx = v->len[x], ly = v->len[y], l = lx < ly ? lx : ly;
    int c = memcmp(v->bytes + v->off[x], v->bytes + v->off[y], l);
    if (c) return c;
    if (lx != ly) return lx < ly ? -1 : 1;
    return x < y ? -1 : x > y;
}

aero_grammar_vocab *aero_grammar_vocab_new(int n_vocab, aero_grammar_piece_fn piece, aero_grammar_kind_fn kind,
                                           void *ctx) {
    static pthread_mutex_t sort_mu = PTHREAD_MUTEX_INITIALIZER;
    if (n_vocab <= 0) return NULL;
    aero_grammar_vocab *v = calloc(1, sizeof *v);
    int32_t *order = NULL, *path = NULL;
    if (!v) return NULL;
    v->n_vocab = n_vocab;
    v->off = malloc(sizeof *v->off * (size_t)n_vocab);
    v->len = calloc((size_t)n_vocab, sizeof *v->len);
    v->kind = calloc((size_t)n_vocab, 1);
    v->tok_next = malloc(sizeof *v->tok_next * (size_t)n_vocab);
    order = malloc(sizeof *order * (size_t)n_vocab);
    if (!v->off || !v->len || !v->kind || !v->tok_next || !order) goto fail;
    size_t cap = (size_t)n_vocab * 8 + 64, total = 0;
    v->bytes = malloc(cap);
    if (!v->bytes) goto fail;
    char buf[1024];
    int n_ord = 0;
    for (int id = 0; id < n_vocab; id++) {
        int k = kind(ctx, id);
        size_t n = k == 0 ? piece(ctx, id, buf, sizeof buf) : 0;
        if (k == 0 && (n == 0 || n > sizeof buf || n > 65535)) k = 1; // empty or oversized: never emitted
        v->kind[id] = (uint8_t)k;
        v->off[id] = (uint32_t)total;
        if (k != 0) continue;
        if (total + n > cap) {
            while (total + n > cap) cap *= 2;
            char *nb = realloc(v->bytes, cap);
            if (!nb) goto fail;
            v->bytes = nb;
        }
        memcpy(v->bytes + total, buf, n);
        v->len[id] = (uint16_t)n;
        total += n;
        if ((int)n > v->max_len) v->max_len = (int)n;
        order[n_ord++] = id;
    }
    pthread_mutex_lock(&sort_mu);
    sort_vocab = v;
    qsort(order, (size_t)n_ord, sizeof *order, cmp_tok);
    pthread_mutex_unlock(&sort_mu);
    // Trie in preorder from the sorted tokens: nodes along the previous token's path are reused.
    size_t max_nodes = total + 1;
    v->nbyte = malloc(max_nodes);
    v->size = malloc(sizeof *v->size * max_nodes);
    v->tok_head = malloc(sizeof *v->tok_head * max_nodes);
    path = malloc(sizeof *path * ((size_t)v->max_len + 2));
    if (!v->nbyte || !v->size || !v->tok_head || !path) goto fail;
    v->n_nodes = 1; // the root
    v->nbyte[0] = 0;
    v->tok_head[0] = -1;
    int depth = 0; // path[0..depth] are the nodes of the previous token (path[0] the root)
    path[0] = 0;
    int prev = -1;
    for (int i = 0; i < n_ord; i++) {
        int id = order[i];
        const char *b = v->bytes + v->off[id];
        int l = v->len[id], common = 0;
        if (prev >= 0) {
            const char *pb = v->bytes + v->off[prev];
            int pl = v->len[prev];
            while (common < l && common < pl && b[common] == pb[common]) common++;
        }
        while (depth > common) { // close the nodes past the shared prefix
            v->size[path[depth]] = v->n_nodes - path[depth];
            depth--;
        }
        for (int k = common; k < l; k++) {
            int nd = v->n_nodes++;
            v->nbyte[nd] = (uint8_t)b[k];
            v->tok_head[nd] = -1;
            path[++depth] = nd;
        }
        // same bytes as a token seen before: chain it on the node
        v->tok_next[id] = v->tok_head[path[depth]];
        v->tok_head[path[depth]] = id;
        prev = id;
    }
    while (depth >= 0) {
        v->size[path[depth]] = v->n_nodes - path[depth];
        depth--;
    }
    free(order);
    free(path);
    return v;
fail:
    free(order);
    free(path);
    aero_grammar_vocab_free(v);
    return NULL;
}

// ---- the constraint ----

// Recognizer states reached while masking are interned as numbered states with memoized byte transitions
// (a DFA built lazily), so a trie walk costs a table lookup per node once its states are known, and states
// met again at later steps (the k-th character of a bounded string, the same key in another object) reuse
// both their transitions and their masks.
#define DFA_CAP 16384
#define T_UNKNOWN 0xffff
#define T_DEAD 0xfffe

typedef struct {
    cell **st; // stacks, in the DFA's arena
    int n;
    bool accept;
    aero_cset first;
    uint64_t hash;
    int32_t *key; // canonical form (see state_key)
    int key_len;
    uint16_t next[256]; // state after each byte, T_UNKNOWN until computed
} dstate;

typedef struct {
    int sid;        // -1: empty slot
    uint64_t *bits; // allowed tokens in state sid
    unsigned long used;
} mask_entry;

typedef struct {
    aero_sampler_constraint base;
    const aero_grammar *g;
    const aero_grammar_vocab *v;
    arena a[2]; // the current state's stacks (compacted after each token) and scratch work
    int cur;
    sset s; // the state after the tokens accepted so far
    sset tmp[2];
    bool dead; // a token was accepted that the grammar refused (cannot happen through the mask)
    arena dfa_arena;
    dstate *ds;
    int n_ds, cap_ds;
    int32_t *htab; // open addressing over ds by hash; -1 empty
    int hcap;
    bool overflow;  // a walk needed more states than DFA_CAP (tokens beyond were refused)
    uint64_t *bits; // the mask being built
    mask_entry cache[MASK_CACHE];
    unsigned long tick;
    aero_cset loop;       // the looping bytes loop_first was computed for
    uint16_t *loop_first; // per token: index of its first byte outside loop
    bool loop_ok;
    aero_grammar_stats stats;
} gconstraint;

// Monotonic seconds, for the mask cost statistics.
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Serializes a state: its stacks' positions, sorted by stack hash so order does not matter.
static int32_t *state_key(const sset *s, int *len) {
    size_t n = (size_t)s->n + 2;
    for (int i = 0; i < s->n; i++)
        for (const cell *x = s->st[i]; x; x = x->next) n++;
    int32_t *k = malloc(sizeof *k * n);
    if (!k) return NULL;
    const cell *ord[MAX_STACKS];
    for (int i = 0; i < s->n; i++) ord[i] = s->st[i];
    for (int i = 1; i < s->n; i++) { // insertion sort by hash (states are small)
        const cell *t = ord[i];
        int j = i;
        while (j > 0 && ord[j - 1]->hash > t->hash) {
            ord[j] = ord[j - 1];
            j--;
        }
        ord[j] = t;
    }
    int o = 0;
    k[o++] = s->accept;
    for (int i = 0; i < s->n; i++) {
        for (const cell *x = ord[i]; x; x = x->next) k[o++] = x->pos;
        k[o++] = -1;
    }
    *len = o;
    return k;
}

// Hash of a state's canonical key, for the DFA's table.
static uint64_t key_hash(const int32_t *k, int n) {
    uint64_t h = 0x243f6a8885a308d3ull;
    for (int i = 0; i < n; i++) h = aero_hash_u64(h ^ (uint64_t)(uint32_t)k[i]) + 0x9e3779b97f4a7c15ull;
    return h;
}

// Forgets every interned state (when the table fills up; at the start of a mask, never in the middle).
static void dfa_reset(gconstraint *c) {
    for (int i = 0; i < c->n_ds; i++) {
        free(c->ds[i].st);
        free(c->ds[i].key);
    }
    c->n_ds = 0;
    for (int i = 0; i < c->hcap; i++) c->htab[i] = -1;
    arena_set(&c->dfa_arena, (arena_mark){0, 0});
    for (int i = 0; i < MASK_CACHE; i++) c->cache[i].sid = -1;
}

// The id of state s (interned on first sight); -1 when the table is full or memory ran out.
static int intern(gconstraint *c, const sset *s) {
    int klen;
    int32_t *key = state_key(s, &klen);
    if (!key) return -1;
    uint64_t h = key_hash(key, klen);
    int at = (int)(h & (uint64_t)(c->hcap - 1));
    for (; c->htab[at] >= 0; at = (at + 1) & (c->hcap - 1)) {
        const dstate *d = &c->ds[c->htab[at]];
        if (d->hash == h && d->key_len == klen && !memcmp(d->key, key, sizeof *key * (size_t)klen)) {
            free(key);
            return c->htab[at];
        }
    }
    if (c->n_ds == DFA_CAP || !grow((void **)&c->ds, &c->cap_ds, c->n_ds, 1, sizeof *c->ds, DFA_CAP)) goto full;
    dstate *d = &c->ds[c->n_ds];
    memset(d, 0, sizeof *d);
    d->st = malloc(sizeof *d->st * (size_t)(s->n ? s->n : 1));
    if (!d->st) goto full;
    for (int i = 0; i < s->n; i++) {
        d->st[i] = copy_stack(&c->dfa_arena, s->st[i]);
        if (!d->st[i]) {
            free(d->st);
            goto full;
        }
    }
    d->n = s->n;
    d->accept = s->accept;
    d->first = s->first;
    d->hash = h;
    d->key = key;
    d->key_len = klen;
    memset(d->next, 0xff, sizeof d->next);
    c->htab[at] = c->n_ds;
    return c->n_ds++;
full:
    free(key);
    c->overflow = true;
    return -1;
}

// The state after byte b from state sid (T_DEAD when b cannot come next).
static int trans(gconstraint *c, int sid, unsigned b) {
    uint16_t t = c->ds[sid].next[b];
    if (t != T_UNKNOWN) return t == T_DEAD ? -1 : t;
    if (!aero_cset_has(&c->ds[sid].first, b)) {
        c->ds[sid].next[b] = T_DEAD;
        return -1;
    }
    arena *a = &c->a[c->cur];
    arena_mark m = arena_get(a);
    const dstate *d = &c->ds[sid];
    sset view = {.st = d->st, .n = d->n, .accept = d->accept, .first = d->first};
    advance(c->g, a, &view, b, &c->tmp[0]);
    int id = sset_alive(&c->tmp[0]) ? intern(c, &c->tmp[0]) : -2;
    arena_set(a, m);
    if (id == -1) return -1; // table full: refused, not remembered
    c->ds[sid].next[b] = id < 0 ? T_DEAD : (uint16_t)id;
    return id < 0 ? -1 : id;
}

// Size of a byte class (how many bytes a state loops on).
static int popcount_cset(const aero_cset *x) {
    int n = 0;
    for (int k = 0; k < 4; k++) n += __builtin_popcountll(x->w[k]);
    return n;
}

static void allow(gconstraint *c, int32_t id) { c->bits[id >> 6] |= 1ull << (id & 63); }

// Walks the trie under node from state sid: a token is allowed when its bytes lead to a live state.
static void walk(gconstraint *c, int node, int sid) {
    const aero_grammar_vocab *v = c->v;
    int end = node + v->size[node];
    for (int ch = node + 1; ch < end; ch += v->size[ch]) {
        int nid = trans(c, sid, v->nbyte[ch]);
        if (nid < 0) continue;
        for (int t = v->tok_head[ch]; t >= 0; t = v->tok_next[t]) allow(c, t);
        if (v->size[ch] > 1 && c->ds[nid].n > 0) walk(c, ch, nid);
    }
}

// Mask for a state that loops on many bytes (inside a free string): tokens made only of looping bytes are
// allowed at once, the others run through the transitions from their first other byte.
static void mask_loop(gconstraint *c, int sid, const aero_cset *loop) {
    const aero_grammar_vocab *v = c->v;
    if (!c->loop_ok || memcmp(&c->loop, loop, sizeof *loop)) {
        for (int id = 0; id < v->n_vocab; id++) {
            const unsigned char *b = (const unsigned char *)v->bytes + v->off[id];
            int l = v->len[id], k = 0;
            while (k < l && aero_cset_has(loop, b[k])) k++;
            c->loop_first[id] = (uint16_t)(k < 65535 ? k : 65535);
        }
        c->loop = *loop;
        c->loop_ok = true;
    }
    for (int id = 0; id < v->n_vocab; id++) {
        if (v->kind[id] != 0) continue;
        int k = c->loop_first[id], l = v->len[id];
        if (k == l) {
            allow(c, id);
            continue;
        }
        const unsigned char *b = (const unsigned char *)v->bytes + v->off[id];
        int x = sid;
        for (int i = k; i < l && x >= 0; i++) x = trans(c, x, b[i]);
        if (x >= 0) allow(c, id);
    }
}

// The sampler's hook before each draw: forbidden tokens get -INFINITY.
static void constraint_mask(aero_sampler_constraint *base, float *logits, int n_vocab) {
    gconstraint *c = (gconstraint *)base;
    const aero_grammar_vocab *v = c->v;
    double t0 = now_s();
    c->stats.masks++;
    int words = (v->n_vocab + 63) / 64;
    bool accept = c->s.accept && !c->dead;
    if (c->n_ds > DFA_CAP * 3 / 4) dfa_reset(c);
    int sid = !c->dead && c->s.n > 0 ? intern(c, &c->s) : -1;
    mask_entry *hit = NULL;
    for (int i = 0; i < MASK_CACHE && sid >= 0; i++)
        if (c->cache[i].sid == sid) hit = &c->cache[i];
    if (hit) {
        c->stats.cache_hits++;
        memcpy(c->bits, hit->bits, sizeof *c->bits * (size_t)words);
        hit->used = ++c->tick;
    } else {
        memset(c->bits, 0, sizeof *c->bits * (size_t)words);
        if (sid >= 0) {
            aero_cset loop = {{0}};
            for (unsigned b = 0; b < 256; b++)
                if (aero_cset_has(&c->ds[sid].first, b) && trans(c, sid, b) == sid) aero_cset_add(&loop, b);
            if (popcount_cset(&loop) >= LOOP_MIN_BYTES) {
                c->stats.loop_masks++;
                mask_loop(c, sid, &loop);
            } else {
                c->stats.trie_masks++;
                walk(c, 0, sid);
            }
            mask_entry *e = &c->cache[0]; // remember it in the least recently used slot
            for (int i = 1; i < MASK_CACHE; i++)
                if (c->cache[i].used < e->used) e = &c->cache[i];
            if (e->bits || (e->bits = malloc(sizeof *e->bits * (size_t)words))) {
                memcpy(e->bits, c->bits, sizeof *c->bits * (size_t)words);
                e->sid = sid;
                e->used = ++c->tick;
            }
        }
    }
    bool any = false;
    for (int w = 0; w < words && !any; w++) any = c->bits[w] != 0;
    int n = n_vocab < v->n_vocab ? n_vocab : v->n_vocab;
    // End of generation once the sentence is complete, or when nothing else can follow (a dead end).
    bool eog_ok = accept || !any;
    for (int id = 0; id < n; id++) {
        bool ok = v->kind[id] == 2 ? eog_ok : (c->bits[id >> 6] >> (id & 63)) & 1;
        if (!ok) logits[id] = -INFINITY;
    }
    for (int id = n; id < n_vocab; id++) logits[id] = -INFINITY;
    c->stats.seconds += now_s() - t0;
}

// The sampler's hook after each draw: the state moves past the token's bytes.
static void constraint_accept(aero_sampler_constraint *base, int32_t token) {
    gconstraint *c = (gconstraint *)base;
    const aero_grammar_vocab *v = c->v;
    if (token < 0 || token >= v->n_vocab || c->dead) return;
    if (v->kind[token] == 2) return; // the end: nothing follows
    if (v->kind[token] != 0) {
        c->dead = true;
        return;
    }
    const unsigned char *b = (const unsigned char *)v->bytes + v->off[token];
    arena *a = &c->a[c->cur];
    sset *x = &c->tmp[0], *y = &c->tmp[1];
    sset_copy(x, &c->s);
    for (int i = 0; i < v->len[token]; i++) {
        advance(c->g, a, x, b[i], y);
        sset *t = x;
        x = y;
        y = t;
        if (!sset_alive(x)) {
            c->dead = true;
            return;
        }
    }
    sset_copy(&c->s, x);
    run_compact(c->a, &c->cur, &c->s);
}

// A request's constraint at the grammar's start; its DFA and mask cache start empty.
aero_sampler_constraint *aero_grammar_constraint_new(const aero_grammar *g, const aero_grammar_vocab *v) {
    gconstraint *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->base.mask = constraint_mask;
    c->base.accept = constraint_accept;
    c->g = g;
    c->v = v;
    c->hcap = DFA_CAP * 2;
    c->htab = malloc(sizeof *c->htab * (size_t)c->hcap);
    c->bits = malloc(sizeof *c->bits * (size_t)((v->n_vocab + 63) / 64));
    c->loop_first = malloc(sizeof *c->loop_first * (size_t)v->n_vocab);
    if (!c->htab || !c->bits || !c->loop_first || !sset_init(&c->s) || !sset_init(&c->tmp[0]) || !sset_init(&c->tmp[1]))
        goto fail;
    for (int i = 0; i < c->hcap; i++) c->htab[i] = -1;
    for (int i = 0; i < MASK_CACHE; i++) c->cache[i].sid = -1;
    start_state(g, &c->a[0], &c->s);
    if (c->a[0].oom) goto fail;
    return &c->base;
fail:
    aero_grammar_constraint_free(&c->base);
    return NULL;
}

// Frees the DFA, the caches and the state.
void aero_grammar_constraint_free(aero_sampler_constraint *base) {
    if (!base) return;
    gconstraint *c = (gconstraint *)base;
    if (c->htab) dfa_reset(c);
    free(c->ds);
    free(c->htab);
    arena_free(&c->dfa_arena);
    arena_free(&c->a[0]);
    arena_free(&c->a[1]);
    free(c->s.st);
    free(c->tmp[0].st);
    free(c->tmp[1].st);
    free(c->bits);
    free(c->loop_first);
    for (int i = 0; i < MASK_CACHE; i++) free(c->cache[i].bits);
    free(c);
}

// For callers that want to know whether the output is a whole sentence (tests, logs).
bool aero_grammar_constraint_complete(const aero_sampler_constraint *base) {
    const gconstraint *c = (const gconstraint *)base;
    return !c->dead && c->s.accept;
}

// Mask counters for the request log and the benchmark.
void aero_grammar_constraint_stats(const aero_sampler_constraint *base, aero_grammar_stats *out) {
    *out = ((const gconstraint *)base)->stats;
}
