// AERO_CUDA_PROFILE for the GPU forward pass: where a pass's time goes, by host phase and by GPU op class.
#ifndef AERO_MODEL_GPU_PROF_H
#define AERO_MODEL_GPU_PROF_H

#include <stdint.h>

#include "../kernels/cuda/cuda_backend.h"

// AERO_CUDA_PROFILE=1 (or N: also every N passes): where a pass's time goes, host and GPU, printed at context
// free. Host phases by clock; GPU time by op class from events recorded where the class changes (the interval
// from one mark to the next belongs to the class of the first; a GPU waiting for the host to queue work counts
// in the class before the gap, so compare GPU total with host "layers").
enum { PH_EMBED, PH_BATCH, PH_LAYERS, PH_HEAD, PH_SYNC, PH_N };
// GPU op classes, reported by group (matmul, attention, norm/rope/act, copies, slot waits) and in detail: the
// forward pass marks each matrix and element-wise op by its role; OP_MATMUL and OP_ELEM are the other ones.
enum {
    OP_MM_QKV,
    OP_MM_O,
    OP_MM_GU,
    OP_MM_DOWN,
    OP_MATMUL, // matmul group
    OP_ATTN,   // attention group
    OP_NORM,
    OP_ROPE,
    OP_PREP,
    OP_ACT,
    OP_ELEM, // norm/rope/act group
    OP_COPY,
    OP_WAIT,
    OP_N
};
#define PROF_MAX_MARKS 8192

typedef struct {
    long passes, tokens, ops;
    double host[PH_N], gpu[OP_N];
} prof_sum;

typedef struct {
    aero_cuda *cu;
    const char *name;     // the report's title (NULL: "cuda profile")
    int every;            // 0: off
    aero_cuda_event **ev; // a pool of marks reused each pass
    uint8_t *cls;         // class of the interval after each mark
    int n_marks, cap;
    long ops;          // ops queued this pass
    double last;       // host clock at the last phase boundary
    double host[PH_N]; // this pass
    prof_sum by[2];    // [0] one-token passes (decode), [1] the others
} gpu_prof;

// Reads AERO_CUDA_PROFILE once per context: unset or 0 off; 1 a report at context free; N > 1 also every N passes.
void prof_init(gpu_prof *p, aero_cuda *cu);
// Marks the start of an op of class cls on the compute stream (an event only where the class changes).
void prof_op(gpu_prof *p, int cls);
// Host time since the last boundary goes to phase ph.
void prof_phase(gpu_prof *p, int ph);
// Resets the per-pass marks and clocks.
void prof_pass_begin(gpu_prof *p);
// After the pass's work is done (synchronized): the GPU intervals between the marks, summed by class.
void prof_pass_end(gpu_prof *p, int n);
// The last mark of a pass, after its last op (closes the last interval).
void prof_mark_end(gpu_prof *p);
// Prints the report (when profiling) and frees the marks.
void prof_free(gpu_prof *p);

#endif
