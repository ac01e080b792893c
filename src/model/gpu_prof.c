// AERO_CUDA_PROFILE: host phases by clock, GPU op classes from events recorded where the class changes.
#include "gpu_prof.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// Monotonic clock in milliseconds (host phases).
static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

// Reads AERO_CUDA_PROFILE once per context: unset or 0 off; 1 a report at context free; N > 1 also every N passes.
void prof_init(gpu_prof *p, aero_cuda *cu) {
    p->cu = cu;
    const char *e = getenv("AERO_CUDA_PROFILE");
    p->every = e ? atoi(e) : 0;
    if (p->every < 0) p->every = 0;
}

// Marks the start of an op of class cls on the compute stream (an event only where the class changes).
void prof_op(gpu_prof *p, int cls) {
    if (!p->every) return;
    p->ops++;
    if (p->n_marks && p->cls[p->n_marks - 1] == cls) return;
    if (p->n_marks == p->cap) {
        aero_error e = {0};
        int cap = p->cap ? 2 * p->cap : 256;
        if (cap > PROF_MAX_MARKS) return; // the interval stays with the last class
        aero_cuda_event **ev = realloc(p->ev, sizeof *ev * cap);
        uint8_t *cl = ev ? realloc(p->cls, cap) : NULL;
        if (ev) p->ev = ev;
        if (!cl) return;
        p->cls = cl;
        for (; p->cap < cap; p->cap++)
            if (aero_cuda_event_new(p->cu, &p->ev[p->cap], &e)) return;
    }
    aero_error e = {0};
    if (aero_cuda_record(p->cu, AERO_CUDA_STREAM_COMPUTE, p->ev[p->n_marks], &e)) return;
    p->cls[p->n_marks++] = (uint8_t)cls;
}

// Host time since the last boundary goes to phase ph.
void prof_phase(gpu_prof *p, int ph) {
    if (!p->every) return;
    double t = now_ms();
    p->host[ph] += t - p->last;
    p->last = t;
}

void prof_pass_begin(gpu_prof *p) {
    if (!p->every) return;
    p->n_marks = 0;
    p->ops = 0;
    memset(p->host, 0, sizeof p->host);
    p->last = now_ms();
}

static const char *const PH_NAMES[PH_N] = {"embed", "batch", "layers", "head", "sync"};
enum { G_MATMUL, G_ATTN, G_ELEM, G_COPY, G_WAIT, G_N };
static const char *const GROUP_NAMES[G_N] = {"matmul", "attention", "norm/rope/act", "copies", "slot waits"};
// The group of an op class, from the enum's order (gpu_prof.h: the matmul classes, attention, the element-wise ones).
static int group_of(int op) {
    return op <= OP_MATMUL ? G_MATMUL
           : op == OP_ATTN ? G_ATTN
           : op <= OP_ELEM ? G_ELEM
           : op == OP_COPY ? G_COPY
                           : G_WAIT;
}
static const char *const OP_NAMES[OP_N] = {"q/k/v",   "o",    "gate/up", "down",  "other",  "attention", "norm",
                                           "rope/kv", "prep", "act",     "other", "copies", "slot waits"};

// One line per kind of pass: averages per pass of host phases, GPU op classes, ops queued.
static void prof_report(const gpu_prof *p, const char *when) {
    for (int k = 0; k < 2; k++) {
        const prof_sum *s = &p->by[k];
        if (!s->passes) continue;
        double n = (double)s->passes, h = 0, d = 0;
        for (int i = 0; i < PH_N; i++) h += s->host[i];
        for (int i = 0; i < OP_N; i++) d += s->gpu[i];
        fprintf(stderr, "%s (%s, %s passes: %ld, %.1f tokens/pass, %.0f backend calls/pass):\n  host %.3f ms/pass =",
                p->name ? p->name : "cuda profile", when, k ? "batch" : "1-token", s->passes, s->tokens / n, s->ops / n,
                h / n);
        for (int i = 0; i < PH_N; i++) fprintf(stderr, " %s %.3f", PH_NAMES[i], s->host[i] / n);
        double grp[G_N] = {0};
        for (int i = 0; i < OP_N; i++) grp[group_of(i)] += s->gpu[i];
        fprintf(stderr, "\n  GPU  %.3f ms/pass =", d / n);
        for (int i = 0; i < G_N; i++) fprintf(stderr, " %s %.3f", GROUP_NAMES[i], grp[i] / n);
        fprintf(stderr, "\n  detail:");
        for (int i = 0; i < OP_N; i++) { // the groups of more than one class, each class by name
            const int gi = group_of(i);
            if (gi != G_MATMUL && gi != G_ELEM) continue;
            if (i == 0 || group_of(i - 1) != gi) fprintf(stderr, "%s %s:", gi == G_MATMUL ? "" : " |", GROUP_NAMES[gi]);
            fprintf(stderr, " %s %.3f", OP_NAMES[i], s->gpu[i] / n);
        }
        fprintf(stderr, "\n");
    }
}

// After the pass's work is done (synchronized): the GPU intervals between the marks, summed by class.
void prof_pass_end(gpu_prof *p, int n) {
    if (!p->every) return;
    prof_sum *s = &p->by[n > 1];
    s->passes++;
    s->tokens += n;
    s->ops += p->ops;
    for (int i = 0; i < PH_N; i++) s->host[i] += p->host[i];
    for (int i = 0; i + 1 < p->n_marks; i++) {
        float ms = aero_cuda_event_ms(p->ev[i], p->ev[i + 1]);
        if (ms > 0) s->gpu[p->cls[i]] += ms;
    }
    if (p->every > 1 && s->passes % p->every == 0) prof_report(p, "so far");
}

// The last mark of a pass, after its last op (closes the last interval).
void prof_mark_end(gpu_prof *p) {
    if (!p->every) return;
    prof_op(p, OP_N);
    p->ops--;
}

void prof_free(gpu_prof *p) {
    if (p->every) prof_report(p, p->name ? "end" : "context end");
    for (int i = 0; i < p->cap; i++) aero_cuda_event_free(p->ev[i]);
    free(p->ev);
    free(p->cls);
}
