// Internals shared by the CUDA files of the backend: the device handle and the error checks.
#ifndef AERO_KERNELS_CUDA_INTERNAL_CUH
#define AERO_KERNELS_CUDA_INTERNAL_CUH

#include <cuda_runtime.h>

#include "cuda_backend.h"

struct aero_cuda {
    aero_cuda_info info;
    cudaStream_t compute, copy;
    char *arena;        // one cudaMalloc of `budget` bytes
    size_t budget, used;
    size_t reserved;    // arena bytes the backend keeps (the scratch): a reset never goes below
    float *scratch;     // permuted activations of aero_cuda_act_prepare
    size_t scratch_floats;
    bool act_f16;       // a matrix that reads f16 activations runs here (aero_cuda_act_f16_note; AERO_CUDA_ACT_F16=1)
};

#define AERO_CUDA_SCRATCH_FLOATS ((size_t)16 << 20)

struct aero_cuda_event {
    cudaEvent_t ev;
    int device;
};

struct aero_cuda_batch {
    aero_cuda *cu;
    int max_tokens, n_seq, n_ctx, n_head, head_dim;
    int n;              // tokens of the current batch
    int max_segs;       // attention segments of its token with the most visible keys
    bool has_mask;
    int32_t *d_pos, *d_seq, *d_slot, *d_base; // device
    uint8_t *d_mask;                           // device, max_tokens^2
    float *d_part;                             // attention partials: [token][head][seg][2 + head_dim]
    int part_segs;                             // segments the partials have room for
    void *h_stage;                             // pinned staging of the uploads
    size_t stage_bytes;
    cudaEvent_t staged;                        // the staging buffer's last upload is done
};

#define AERO_ATTN_SEG 256 // visible keys per attention segment

// Position of element e of an activation row of `cols` (a multiple of 32) in the f32 kernels' permuted layout
// (float4 q of chunk c = 128 k + t goes to float4 1024 k + m q + t, m = the chunks of group k): written by
// aero_cuda_act_prepare and by the fused ops that produce a matmul input themselves.
__device__ __forceinline__ size_t act_perm(int cols, int e) {
    int f = e >> 2, c = f >> 3, q = f & 7, k = c >> 7, t = c & 127;
    int m = min(128, (cols >> 5) - 128 * k);
    return 4 * (1024 * (size_t)k + (size_t)m * q + t) + (e & 3);
}

// Whether prepared activations get the f16 copy: the f16 tensor-core kernels read it, the int8 ones never; so
// under the int8 default only once a matrix of an f16-path type is on this backend (aero_cuda_act_f16_note).
bool aero_cuda_act_f16_wanted(const aero_cuda *cu);

// Threads of a one-block-per-row kernel (rmsnorm, swiglu, the f16 prepare): about four elements each, a whole
// number of warps, at most 1024, so every element's load is in flight at once. A function of the row length
// only, so a row's reduction order does not depend on how many rows a launch has.
static inline int aero_row_threads(int cols) {
    int t = ((cols + 3) / 4 + 31) / 32 * 32;
    return t < 32 ? 32 : t > 1024 ? 1024 : t;
}

// Turns a CUDA error into a status that names the call.
static inline aero_status aero_cuda_fail(aero_error *err, cudaError_t e, const char *what) {
    return aero_fail(err, e == cudaErrorMemoryAllocation ? AERO_ERR_NOMEM : AERO_ERR_IO, "CUDA %s: %s", what,
                     cudaGetErrorString(e));
}

#define CU_TRY(call, what)                                                                                     \
    do {                                                                                                       \
        cudaError_t e_ = (call);                                                                               \
        if (e_ != cudaSuccess) return aero_cuda_fail(err, e_, what);                                           \
    } while (0)

// After a launch: a bad configuration shows up here, a fault at the next sync.
#define CU_LAUNCHED(what) CU_TRY(cudaGetLastError(), what)

#endif
