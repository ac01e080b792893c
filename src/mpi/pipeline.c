// Pipeline parallelism over MPI (pipeline.h). Every message flows down the ranks, 0 -> 1 -> ... -> n-1, and the
// last rank answers rank 0, so each rank waits on one source and the order of passes is the order of messages.
// A rank that fails a command passes an error on instead; rank 0 gets exactly one answer per command that asks
// for one (load, context, pass), in the order it sent them.
#include "pipeline.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../model/model_internal.h"
#include "transport.h"

enum {
    CMD_LOAD = 1,
    CMD_UNLOAD,
    CMD_CTX_NEW,
    CMD_CTX_FREE, // no answer
    CMD_KEEP,     // no answer
    CMD_DECODE,
    CMD_QUIT, // no answer
    REP_OK,
    REP_ERR,
    REP_LOGITS,
};
enum { F_SEQ = 1, F_MASK = 2, F_WANT = 4, F_LOGITS = 8 };

typedef struct {
    int32_t cmd, ctx, n, n_seq, flags, a, b, rows;
} msg_hdr;

typedef struct {
    uint64_t mem_budget;
    int32_t n_threads, prefetch, io_threads, expert_prefetch, micro;
    char path[4096], split[256], device[16];
} msg_load;

typedef struct {
    int32_t n_ctx, n_seq, kv_f32, n_batch, type_k, type_v, kv_recent;
} msg_ctx;

#define MAX_CTX 256 // contexts of the pipelined model alive at once

typedef struct aero_pipe {
    bool worker;
    int rank, size, micro;
    int next_ctx; // rank 0: the next context id
} aero_pipe;

static bool g_broken; // rank 0: a rank died or a link failed; every later pass fails with g_why
static char g_why[512];
static aero_model *g_model; // the one pipelined model of this process

int aero_pipeline_rank(void) { return aero_mpi_rank(); }
int aero_pipeline_size(void) { return aero_mpi_size(); }
aero_status aero_pipeline_init(int *argc, char ***argv, aero_error *err) { return aero_mpi_init(argc, argv, err); }
const char *aero_pipeline_failure(void) { return g_broken ? g_why : NULL; }

// Rank 0: a transport failure ends the pipeline (the ranks' states may differ now); later calls say why.
static aero_status broken(aero_error *err) {
    if (!g_broken) {
        g_broken = true;
        snprintf(g_why, sizeof g_why, "%s", err->msg);
    }
    return err->code;
}

static aero_status check_broken(aero_error *err) {
    return g_broken ? aero_fail(err, AERO_ERR_IO, "%s", g_why) : AERO_OK;
}

aero_status aero_pipe_split(const aero_gguf *g, int n_layer, int n, const char *split, int *first, aero_error *err) {
    if (n < 1 || n_layer < n)
        return aero_fail(err, AERO_ERR_INVALID, "pipeline: %d ranks for a model of %d layers (one layer each at least)",
                         n, n_layer);
    double share[1024], sum = 0;
    if (n > 1024) return aero_fail(err, AERO_ERR_INVALID, "pipeline: more than 1024 ranks");
    if (split && *split) {
        const char *s = split;
        for (int r = 0; r < n; r++) {
            char *end;
            share[r] = strtod(s, &end);
            if (end == s || !(share[r] > 0) || (r < n - 1 ? *end != ',' : *end != 0))
                return aero_fail(err, AERO_ERR_INVALID, "--split '%s': give %d positive shares separated by commas",
                                 split, n);
            sum += share[r];
            s = end + 1;
        }
    } else {
        for (int r = 0; r < n; r++) share[r] = 1, sum += 1;
    }
    double *cum = calloc((size_t)n_layer + 1, sizeof *cum); // bytes of layers [0, l)
    if (!cum) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        int l = aero_gguf_tensor_layer(g->tensors[i].name);
        if (l >= 0 && l < n_layer) cum[l + 1] += (double)g->tensors[i].nbytes;
    }
    for (int l = 0; l < n_layer; l++) cum[l + 1] += cum[l];
    first[0] = 0;
    double acc = 0;
    for (int r = 1; r < n; r++) {
        acc += share[r - 1];
        double target = cum[n_layer] * acc / sum;
        int best = first[r - 1] + 1;
        for (int l = best; l <= n_layer - (n - r); l++)
            if (fabs(cum[l] - target) < fabs(cum[best] - target)) best = l;
        first[r] = best;
    }
    first[n] = n_layer;
    free(cum);
    return AERO_OK;
}

aero_status aero_pipe_plan(const aero_gguf *g, int n_layer, const aero_model_params *p, int *first, int *last,
                           bool **external, aero_error *err) {
    *first = 0;
    *last = n_layer;
    *external = NULL;
    int size = aero_mpi_size(), rank = aero_mpi_rank();
    if (!p->pipeline || size < 2) return AERO_OK;
    if (p->device && *p->device && strcmp(p->device, "cpu"))
        return aero_fail(err, AERO_ERR_UNSUPPORTED, "pipeline: --device %s is not supported across ranks yet (use cpu)",
                         p->device);
    int *bounds = malloc(sizeof(int) * (size_t)(size + 1));
    bool *ext = calloc((size_t)n_layer + 1, sizeof *ext);
    if (!bounds || !ext) {
        free(bounds);
        free(ext);
        return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    }
    if (aero_pipe_split(g, n_layer, size, p->pipe_split, bounds, err)) {
        free(bounds);
        free(ext);
        return err->code;
    }
    *first = bounds[rank];
    *last = bounds[rank + 1];
    for (int l = 0; l < n_layer; l++) ext[l] = l < *first || l >= *last;
    ext[n_layer] = rank != size - 1; // the head unit: the last rank's
    free(bounds);
    *external = ext;
    return AERO_OK;
}

// Rank 0: one command that asks for an answer (OK, or an error a rank passed on).
static aero_status request(const void *msg, size_t n, aero_error *err) {
    if (check_broken(err)) return err->code;
    void *rep = NULL;
    size_t rn = 0;
    aero_mpi_watch_reset();
    if (aero_mpi_send(1, msg, n, err) || aero_mpi_recv(aero_mpi_size() - 1, &rep, &rn, err)) return broken(err);
    aero_status st = AERO_OK;
    const msg_hdr *h = rep;
    if (rn < sizeof *h || (h->cmd != REP_OK && h->cmd != REP_ERR)) {
        aero_fail(err, AERO_ERR_FORMAT, "pipeline: an unexpected answer from the last rank");
        st = broken(err);
    } else if (h->cmd == REP_ERR) {
        st = aero_fail(err, (aero_status)h->a, "%.*s", (int)(rn - sizeof *h), (const char *)(h + 1));
    }
    free(rep);
    return st;
}

// Rank 0: a command without an answer (the order of messages is enough).
static void notify(const msg_hdr *h, const void *extra, size_t n) {
    aero_error err = {0};
    if (g_broken) return;
    char *buf = malloc(sizeof *h + n);
    if (!buf) return;
    memcpy(buf, h, sizeof *h);
    if (n) memcpy(buf + sizeof *h, extra, n);
    aero_mpi_watch_reset();
    if (aero_mpi_send(1, buf, sizeof *h + n, &err)) broken(&err);
    free(buf);
}

aero_status aero_pipe_open(aero_model *m, const aero_model_params *p, aero_error *err) {
    if (m->layer_first == 0 && m->layer_last == m->hp.n_layer) return AERO_OK; // not split
    if (g_model) return aero_fail(err, AERO_ERR_UNSUPPORTED, "pipeline: one pipelined model at a time");
    aero_pipe *pp = calloc(1, sizeof *pp);
    if (!pp) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    pp->rank = aero_mpi_rank();
    pp->size = aero_mpi_size();
    pp->worker = pp->rank != 0;
    pp->micro = p->pipe_micro;
    m->pipe = pp;
    g_model = m;
    if (pp->worker) return AERO_OK;
    struct {
        msg_hdr h;
        msg_load l;
    } msg = {.h = {.cmd = CMD_LOAD}};
    msg.l = (msg_load){.mem_budget = p->mem_budget,
                       .n_threads = p->n_threads,
                       .prefetch = p->prefetch,
                       .io_threads = p->io_threads,
                       .expert_prefetch = p->expert_prefetch,
                       .micro = p->pipe_micro};
    if (strlen(p->path) >= sizeof msg.l.path) return aero_fail(err, AERO_ERR_INVALID, "pipeline: model path too long");
    snprintf(msg.l.path, sizeof msg.l.path, "%s", p->path);
    snprintf(msg.l.split, sizeof msg.l.split, "%s", p->pipe_split ? p->pipe_split : "");
    if (request(&msg, sizeof msg, err)) {
        aero_error_prefix(err, "pipeline: ");
        return err->code;
    }
    return AERO_OK;
}

void aero_pipe_close(aero_model *m) {
    if (!m->pipe) return;
    if (!m->pipe->worker) {
        aero_error err = {0};
        msg_hdr h = {.cmd = CMD_UNLOAD};
        request(&h, sizeof h, &err);
    }
    free(m->pipe);
    m->pipe = NULL;
    if (g_model == m) g_model = NULL;
}

aero_status aero_pipe_ctx_new(aero_ctx *c, const aero_ctx_params *p, aero_error *err) {
    aero_pipe *pp = c->m->pipe;
    if (pp->worker) return AERO_OK;
    if (pp->next_ctx >= MAX_CTX) return aero_fail(err, AERO_ERR_UNSUPPORTED, "pipeline: more than %d contexts", MAX_CTX);
    c->pipe_id = pp->next_ctx++;
    struct {
        msg_hdr h;
        msg_ctx x;
    } msg = {.h = {.cmd = CMD_CTX_NEW, .ctx = c->pipe_id},
             .x = {.n_ctx = c->n_ctx,
                   .n_seq = c->n_seq,
                   .kv_f32 = p->kv_f32,
                   .n_batch = c->n_tile,
                   .type_k = p->type_k,
                   .type_v = p->type_v,
                   .kv_recent = p->kv_recent}};
    return request(&msg, sizeof msg, err);
}

void aero_pipe_ctx_free(aero_ctx *c) {
    if (c->m->pipe->worker) return;
    notify(&(msg_hdr){.cmd = CMD_CTX_FREE, .ctx = c->pipe_id}, NULL, 0);
}

void aero_pipe_kv_keep(aero_ctx *c, int seq, int base, const int *keep, int n_keep) {
    if (c->m->pipe->worker || n_keep < 0) return;
    notify(&(msg_hdr){.cmd = CMD_KEEP, .ctx = c->pipe_id, .n = n_keep, .a = seq, .b = base}, keep,
           sizeof(int) * (size_t)n_keep);
}

// Where micro-batches may be cut: between two tokens whose sides share no sequence, so each micro-batch is a
// batch of its own whose tokens see nothing of another's (batch invariance keeps the logits bitwise the same).
// Cuts [0 = cut[0] < ... < cut[k] = n]; returns k.
static int micro_cuts(const aero_batch *b, int want, int n_seq, int *cut) {
    cut[0] = 0;
    if (want <= 1 || !b->seq || b->n < 2) {
        cut[1] = b->n;
        return 1;
    }
    int *last = malloc(sizeof(int) * (size_t)n_seq);
    if (!last) {
        cut[1] = b->n;
        return 1;
    }
    for (int s = 0; s < n_seq; s++) last[s] = -1;
    for (int i = 0; i < b->n; i++) last[b->seq[i]] = i;
    int k = 0, reach = 0, target = (b->n + want - 1) / want;
    for (int i = 0; i < b->n - 1 && k < want - 1; i++) {
        if (last[b->seq[i]] > reach) reach = last[b->seq[i]];
        if (reach == i && i + 1 - cut[k] >= target) cut[++k] = i + 1; // nothing before i + 1 continues after it
    }
    cut[++k] = b->n;
    free(last);
    return k;
}

// The message of batch tokens [t0, t1): the description, the sequences' lengths and the hidden states.
static char *decode_msg(aero_ctx *c, const aero_batch *b, const int *base, int t0, int t1, bool want_logits,
                        size_t *len, int *rows) {
    int n = t1 - t0, d = c->m->hp.n_embd;
    msg_hdr h = {.cmd = CMD_DECODE, .ctx = c->pipe_id, .n = n, .n_seq = c->n_seq};
    h.flags = (b->seq ? F_SEQ : 0) | (b->mask ? F_MASK : 0) | (b->want_logits ? F_WANT : 0) |
              (want_logits ? F_LOGITS : 0);
    h.rows = 0;
    for (int i = t0; i < t1; i++) h.rows += !b->want_logits || b->want_logits[i];
    *rows = h.rows;
    size_t ints = (size_t)c->n_seq + (size_t)n * (2 + (b->seq ? 1 : 0));
    size_t bytes = (b->want_logits ? (size_t)n : 0) + (b->mask ? (size_t)n * n : 0);
    size_t pad = (4 - bytes % 4) % 4;
    *len = sizeof h + 4 * ints + bytes + pad + sizeof(float) * (size_t)n * d;
    char *buf = malloc(*len), *p = buf;
    if (!buf) return NULL;
    memcpy(p, &h, sizeof h), p += sizeof h;
    memcpy(p, base, 4 * (size_t)c->n_seq), p += 4 * (size_t)c->n_seq;
    memcpy(p, b->tokens + t0, 4 * (size_t)n), p += 4 * (size_t)n;
    memcpy(p, b->pos + t0, 4 * (size_t)n), p += 4 * (size_t)n;
    if (b->seq) memcpy(p, b->seq + t0, 4 * (size_t)n), p += 4 * (size_t)n;
    if (b->want_logits) memcpy(p, b->want_logits + t0, (size_t)n), p += n;
    if (b->mask)
        for (int i = 0; i < n; i++) memcpy(p, b->mask + (size_t)(t0 + i) * b->n + t0, (size_t)n), p += n;
    memset(p, 0, pad), p += pad;
    memcpy(p, c->x + (size_t)t0 * d, sizeof(float) * (size_t)n * d);
    return buf;
}

aero_status aero_pipe_decode(aero_ctx *c, const aero_batch *b, const int *cell, const int *base, float *logits,
                             aero_error *err) {
    aero_model *m = c->m;
    aero_pipe *pp = m->pipe;
    if (check_broken(err)) return err->code;
    if (aero_forward_embed(c, b, err)) return err->code;
    // micro-batches let rank 1 compute one while rank 0 computes the next; a streamed range would be read once
    // per micro-batch, so by default only a resident one is cut
    int want = pp->micro > 0 ? pp->micro : aero_stream_get_plan(m->stream)->n_streamed == 0 ? pp->size : 1;
    int cut[AERO_MPI_MAX_PENDING / 2 + 1];
    if (want > AERO_MPI_MAX_PENDING / 2 - 1) want = AERO_MPI_MAX_PENDING / 2 - 1;
    int k = micro_cuts(b, want, c->n_seq, cut), sent = 0, rows[AERO_MPI_MAX_PENDING / 2];
    char *msgs[AERO_MPI_MAX_PENDING / 2] = {0};
    aero_status st = AERO_OK;
    aero_mpi_watch_reset();
    for (int i = 0; i < k && !st; i++) {
        size_t len = 0;
        if ((st = aero_forward_layers(c, b, cell, base, cut[i], cut[i + 1], m->layer_first, m->layer_last, err)))
            break;
        if (!(msgs[i] = decode_msg(c, b, base, cut[i], cut[i + 1], logits != NULL, &len, &rows[i]))) {
            st = aero_fail(err, AERO_ERR_NOMEM, "pipeline: out of memory for a message");
            break;
        }
        if ((st = aero_mpi_send_start(1, msgs[i], len, err))) {
            st = broken(err);
            break;
        }
        sent++;
    }
    // every micro-batch sent gets its answer, even after a failure, so the next pass reads its own
    aero_error rerr = {0};
    size_t out_row = 0;
    for (int i = 0; i < sent && !g_broken; i++) {
        void *rep = NULL;
        size_t rn = 0;
        if (aero_mpi_recv(pp->size - 1, &rep, &rn, &rerr)) {
            broken(&rerr);
            break;
        }
        const msg_hdr *h = rep;
        size_t nv = (size_t)m->hp.n_vocab;
        if (rn >= sizeof *h && h->cmd == REP_LOGITS && rn == sizeof *h + sizeof(float) * nv * rows[i]) {
            if (logits) memcpy(logits + out_row * nv, h + 1, sizeof(float) * nv * rows[i]);
        } else if (rn >= sizeof *h && h->cmd == REP_OK) {
        } else if (rn >= sizeof *h && h->cmd == REP_ERR) {
            if (!st && !rerr.code)
                aero_fail(&rerr, (aero_status)h->a, "%.*s", (int)(rn - sizeof *h), (const char *)(h + 1));
        } else {
            aero_fail(&rerr, AERO_ERR_FORMAT, "pipeline: an unexpected answer from the last rank");
            broken(&rerr);
        }
        out_row += rows[i];
        free(rep);
    }
    if (!g_broken && aero_mpi_wait_sends(&rerr)) broken(&rerr);
    for (int i = 0; i < k; i++) free(msgs[i]);
    if (!st && rerr.code) st = aero_fail(err, rerr.code, "%s", rerr.msg);
    else if (!st && g_broken) st = aero_fail(err, AERO_ERR_IO, "%s", g_why);
    return st;
}

// ---- the workers ----

typedef struct {
    aero_model *m;
    aero_ctx *ctx[MAX_CTX];
} worker;

// An error message passed on toward rank 0 in place of the command.
static char *error_msg(const aero_error *e, int rank, size_t *len) {
    size_t n = strlen(e->msg) + 32;
    char *buf = malloc(sizeof(msg_hdr) + n);
    if (!buf) return NULL;
    msg_hdr h = {.cmd = REP_ERR, .a = e->code ? e->code : AERO_ERR_IO};
    memcpy(buf, &h, sizeof h);
    int w = snprintf(buf + sizeof h, n, "rank %d: %s", rank, e->msg);
    *len = sizeof h + (size_t)(w < (int)n ? w : (int)n - 1);
    return buf;
}

// Drops the model and its contexts (rank 0 unloaded it, or loads another).
static void w_unload(worker *w) {
    for (int i = 0; i < MAX_CTX; i++) aero_ctx_free(w->ctx[i]), w->ctx[i] = NULL;
    aero_model_free(w->m);
    w->m = NULL;
}

// Loads the rank's part of the model rank 0 describes.
static aero_status w_load(worker *w, const char *buf, size_t n, aero_error *err) {
    if (n < sizeof(msg_hdr) + sizeof(msg_load)) return aero_fail(err, AERO_ERR_FORMAT, "a short load message");
    msg_load l;
    memcpy(&l, buf + sizeof(msg_hdr), sizeof l);
    l.path[sizeof l.path - 1] = l.split[sizeof l.split - 1] = 0;
    w_unload(w);
    aero_model_params mp;
    aero_model_params_default(&mp);
    mp.path = l.path;
    mp.mem_budget = l.mem_budget;
    mp.n_threads = l.n_threads;
    mp.prefetch = l.prefetch;
    mp.io_threads = l.io_threads;
    mp.expert_prefetch = l.expert_prefetch;
    mp.pipeline = true;
    mp.pipe_split = l.split[0] ? l.split : NULL;
    mp.pipe_micro = l.micro;
    return aero_model_load(&w->m, &mp, err);
}

static aero_status w_ctx_new(worker *w, const msg_hdr *h, const char *buf, size_t n, aero_error *err) {
    if (!w->m) return aero_fail(err, AERO_ERR_INVALID, "no model loaded");
    if (n < sizeof *h + sizeof(msg_ctx) || h->ctx < 0 || h->ctx >= MAX_CTX)
        return aero_fail(err, AERO_ERR_FORMAT, "a bad context message");
    msg_ctx x;
    memcpy(&x, buf + sizeof *h, sizeof x);
    aero_ctx_params cp = {.n_ctx = x.n_ctx,
                          .n_seq = x.n_seq,
                          .kv_f32 = x.kv_f32,
                          .n_batch = x.n_batch,
                          .type_k = (aero_kv_type)x.type_k,
                          .type_v = (aero_kv_type)x.type_v,
                          .kv_recent = x.kv_recent,
                          .device = "cpu"};
    aero_ctx_free(w->ctx[h->ctx]);
    w->ctx[h->ctx] = NULL;
    return aero_ctx_new(&w->ctx[h->ctx], w->m, &cp, err);
}

static aero_ctx *w_ctx(worker *w, const msg_hdr *h) {
    return w->m && h->ctx >= 0 && h->ctx < MAX_CTX ? w->ctx[h->ctx] : NULL;
}

// One pass over the rank's layers: the hidden states of buf replaced by its output (buf goes on to the next rank),
// or, on the last rank, the logits in *out.
static aero_status w_decode(worker *w, const msg_hdr *h, char *buf, size_t len, char **out, size_t *out_len,
                            aero_error *err) {
    aero_ctx *c = w_ctx(w, h);
    if (!c) return aero_fail(err, AERO_ERR_INVALID, "a pass for an unknown context");
    aero_model *m = c->m;
    int n = h->n, d = m->hp.n_embd;
    if (n <= 0 || h->n_seq != c->n_seq || (h->flags & F_MASK && n > 65536))
        return aero_fail(err, AERO_ERR_FORMAT, "a bad pass message");
    size_t ints = (size_t)c->n_seq + (size_t)n * (2 + (h->flags & F_SEQ ? 1 : 0));
    size_t bytes = (h->flags & F_WANT ? (size_t)n : 0) + (h->flags & F_MASK ? (size_t)n * n : 0);
    size_t pad = (4 - bytes % 4) % 4;
    if (len != sizeof *h + 4 * ints + bytes + pad + sizeof(float) * (size_t)n * d)
        return aero_fail(err, AERO_ERR_FORMAT, "a pass message of %zu bytes", len);
    char *p = buf + sizeof *h;
    const int32_t *rbase = (const int32_t *)p;
    p += 4 * (size_t)c->n_seq;
    aero_batch b = {.n = n};
    b.tokens = (const int32_t *)p, p += 4 * (size_t)n;
    b.pos = (const int32_t *)p, p += 4 * (size_t)n;
    if (h->flags & F_SEQ) b.seq = (const int32_t *)p, p += 4 * (size_t)n;
    if (h->flags & F_WANT) b.want_logits = (const uint8_t *)p, p += n;
    if (h->flags & F_MASK) b.mask = (const uint8_t *)p, p += (size_t)n * n;
    float *x = (float *)(p + pad);
    int rows = 0; // counted here, not taken from the header: the logits buffer is sized by it
    for (int i = 0; i < n; i++) rows += !b.want_logits || b.want_logits[i];
    // the lengths rank 0 holds for the batch's sequences (a rollback or a truncation there is one here too)
    for (int i = 0; i < n; i++) {
        int s = b.seq ? b.seq[i] : 0;
        if (s < 0 || s >= c->n_seq || rbase[s] < 0 || rbase[s] > c->n_ctx)
            return aero_fail(err, AERO_ERR_FORMAT, "a pass message with a bad sequence");
        c->kv.len[s] = rbase[s];
    }
    int *cell = malloc(sizeof(int) * (size_t)n), *base = malloc(sizeof(int) * c->n_seq),
        *added = malloc(sizeof(int) * c->n_seq);
    float *logits = NULL;
    aero_status st = AERO_OK;
    if (!cell || !base || !added) {
        st = aero_fail(err, AERO_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((st = aero_forward_begin(c, &b, cell, base, added, err))) goto done;
    memcpy(c->x, x, sizeof(float) * (size_t)n * d);
    if ((st = aero_forward_layers(c, &b, cell, base, 0, n, m->layer_first, m->layer_last, err))) goto done;
    if (m->layer_last == m->hp.n_layer) {
        size_t nv = (size_t)m->hp.n_vocab;
        if (h->flags & F_LOGITS && !(logits = malloc(sizeof(msg_hdr) + sizeof(float) * nv * rows + 1))) {
            st = aero_fail(err, AERO_ERR_NOMEM, "out of memory for the logits");
            goto done;
        }
        if ((st = aero_forward_head(c, &b, logits ? (float *)((char *)logits + sizeof(msg_hdr)) : NULL, err)))
            goto done;
        msg_hdr r = {.cmd = logits ? REP_LOGITS : REP_OK, .rows = rows};
        if (!logits && !(logits = malloc(sizeof r))) {
            st = aero_fail(err, AERO_ERR_NOMEM, "out of memory");
            goto done;
        }
        memcpy(logits, &r, sizeof r);
        *out = (char *)logits;
        *out_len = sizeof r + (r.cmd == REP_LOGITS ? sizeof(float) * nv * rows : 0);
        logits = NULL;
    } else {
        memcpy(x, c->x, sizeof(float) * (size_t)n * d);
    }
    for (int s = 0; s < c->n_seq; s++) c->kv.len[s] = base[s] + added[s];
done:
    free(logits);
    free(cell);
    free(base);
    free(added);
    return st;
}

int aero_pipeline_worker(void) {
    int rank = aero_mpi_rank(), size = aero_mpi_size(), rc = 0;
    bool last = rank == size - 1;
    worker w = {0};
    aero_error err = {0};
    if (aero_mpi_heartbeat_start(&err)) {
        fprintf(stderr, "aerollm rank %d: %s\n", rank, err.msg);
        return 1;
    }
    for (;;) {
        char *buf = NULL, *out = NULL;
        size_t len = 0, out_len = 0;
        memset(&err, 0, sizeof err);
        if (aero_mpi_recv(rank - 1, (void **)&buf, &len, &err)) {
            fprintf(stderr, "aerollm rank %d: %s\n", rank, err.msg);
            rc = 1;
            break;
        }
        msg_hdr h = {0};
        if (len >= sizeof h) memcpy(&h, buf, sizeof h);
        bool answer = true, quit = false; // whether the last rank answers rank 0
        aero_status st = AERO_OK;
        switch (len >= sizeof h ? h.cmd : 0) {
        case CMD_LOAD: st = w_load(&w, buf, len, &err); break;
        case CMD_UNLOAD: w_unload(&w); break;
        case CMD_CTX_NEW: st = w_ctx_new(&w, &h, buf, len, &err); break;
        case CMD_CTX_FREE:
            if (w.m && h.ctx >= 0 && h.ctx < MAX_CTX) aero_ctx_free(w.ctx[h.ctx]), w.ctx[h.ctx] = NULL;
            answer = false;
            break;
        case CMD_KEEP:
            if (w_ctx(&w, &h) && len == sizeof h + sizeof(int) * (size_t)h.n)
                aero_kv_keep(w_ctx(&w, &h), h.a, h.b, (const int *)(buf + sizeof h), h.n);
            answer = false;
            break;
        case CMD_DECODE: st = w_decode(&w, &h, buf, len, &out, &out_len, &err); break;
        case CMD_QUIT: answer = false, quit = true; break;
        case REP_ERR: break; // an earlier rank's failure, passed on as it is
        default: st = aero_fail(&err, AERO_ERR_FORMAT, "an unknown message (%zu bytes)", len);
        }
        if (st) { // the command goes no further: its error does
            free(out);
            out = error_msg(&err, rank, &out_len);
        }
        const char *send = out ? out : buf;
        size_t send_len = out ? out_len : len;
        if (last && !out && answer && h.cmd != REP_ERR) { // the last rank's plain acknowledgement
            static const msg_hdr ok = {.cmd = REP_OK};
            send = (const char *)&ok;
            send_len = sizeof ok;
        }
        if ((!last || answer) && send && aero_mpi_send(last ? 0 : rank + 1, send, send_len, &err)) {
            fprintf(stderr, "aerollm rank %d: %s\n", rank, err.msg);
            rc = 1;
            quit = true;
        }
        free(buf);
        free(out);
        if (quit) break;
    }
    if (rc) aero_mpi_abort(rc); // a rank is gone (MPI_Finalize would wait for it): the job ends
    w_unload(&w);
    aero_mpi_heartbeat_stop();
    aero_mpi_finalize();
    return rc;
}

void aero_pipeline_reset_stats(void) { aero_mpi_counters_reset(); }

bool aero_pipeline_get_stats(const aero_model *m, aero_pipeline_stats *out) {
    memset(out, 0, sizeof *out);
    if (!m->pipe || m->pipe->worker) return false;
    out->ranks = m->pipe->size;
    out->layer_first = m->layer_first;
    out->layer_last = m->layer_last;
    aero_mpi_counters(&out->mpi_wait_s, &out->bytes_sent, &out->bytes_recv, &out->messages);
    return true;
}

void aero_pipeline_print_stats(const aero_model *m, int n_tokens, FILE *f) {
    if (!m->pipe || m->pipe->worker) return;
    double wait_s;
    unsigned long long sent, recv, msgs;
    aero_mpi_counters(&wait_s, &sent, &recv, &msgs);
    int n = n_tokens > 0 ? n_tokens : 1;
    fprintf(f,
            "pipeline   %d ranks, layers [%d, %d) of %d on rank 0; rank 0 sent %.1f KB/token (%.1f messages/token), "
            "received %.1f KB/token, waited in MPI %.2f ms/token\n",
            m->pipe->size, m->layer_first, m->layer_last, m->hp.n_layer, sent / 1e3 / n, (double)msgs / n,
            recv / 1e3 / n, wait_s * 1e3 / n);
}

int aero_pipeline_finish(int rc) {
    if (aero_mpi_size() < 2 || aero_mpi_rank() != 0) return rc;
    if (g_broken) { // a rank is gone: MPI_Finalize would wait for it
        fprintf(stderr, "aerollm: %s; ending the job\n", g_why);
        aero_mpi_abort(rc ? rc : 1);
        return rc ? rc : 1;
    }
    notify(&(msg_hdr){.cmd = CMD_QUIT}, NULL, 0);
    aero_mpi_finalize();
    return rc;
}
