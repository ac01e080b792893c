// On-device drafting (cuda_backend.h): the argmax of logits rows with the probability the host's draft ranking
// gives the top token, and chains of one-token batches set with one upload. Together they let a draft head draft
// a whole chain on the device (speculative/head_gpu.c): each drafted token is the previous call's argmax, read by
// the embedding lookup from device memory, and only the chain's ids and probabilities come back.
// Compiled with --fmad=false like the other kernels: each expression rounds as written.
#include <cuda_runtime.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.cuh"

#define PICK_THREADS 1024 // one block per row, whatever the row count: a row's reduction order is fixed
#define PICK_WARPS (PICK_THREADS / 32)

// (v, i) becomes (v2, i2) when that is larger, ties to the smaller index: a total order on non-NaN pairs, so the
// reduction's result does not depend on its order.
__device__ __forceinline__ void pick_better(float &v, int &i, float v2, int i2) {
    if (v2 > v || (v2 == v && i2 < i)) v = v2, i = i2;
}

// One block per row: the first index of the largest value (NaN never wins; a NaN or +inf anywhere, or a row of
// -inf only, makes the row invalid, as the host's ranking sees no candidate there), then the sum of expf(l - max)
// in double over a fixed per-thread stride and a fixed tree: prob = (float)(1 / sum), the host's q of the top.
__global__ void k_pick(const float *logits, int n_vocab, int32_t *ids, float *prob) {
    __shared__ float s_v[PICK_WARPS];
    __shared__ int s_i[PICK_WARPS];
    __shared__ double s_sum[PICK_WARPS];
    const float *l = logits + (size_t)blockIdx.x * n_vocab;
    const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
    float v = -INFINITY;
    int idx = INT_MAX, bad = 0;
    for (int j = t; j < n_vocab; j += PICK_THREADS) {
        float x = l[j];
        if (isnan(x) || x == INFINITY) bad = 1;
        else if (x > v) v = x, idx = j; // ascending j: the thread's first maximum
    }
    bad = __syncthreads_or(bad);
#pragma unroll
    for (int o = 16; o >= 1; o >>= 1) {
        float v2 = __shfl_down_sync(0xffffffffu, v, o);
        int i2 = __shfl_down_sync(0xffffffffu, idx, o);
        pick_better(v, idx, v2, i2);
    }
    if (lane == 0) s_v[warp] = v, s_i[warp] = idx;
    __syncthreads();
    if (warp == 0) {
        v = s_v[lane], idx = s_i[lane]; // PICK_WARPS == 32
#pragma unroll
        for (int o = 16; o >= 1; o >>= 1) {
            float v2 = __shfl_down_sync(0xffffffffu, v, o);
            int i2 = __shfl_down_sync(0xffffffffu, idx, o);
            pick_better(v, idx, v2, i2);
        }
        if (lane == 0) s_v[0] = v, s_i[0] = idx;
    }
    __syncthreads();
    const float mx = s_v[0];
    const int best = s_i[0];
    if (bad || mx == -INFINITY) {
        if (t == 0) ids[blockIdx.x] = -1, prob[blockIdx.x] = 0.0f;
        return; // the whole block leaves together (bad and mx are the same on every thread)
    }
    double sum = 0;
    for (int j = t; j < n_vocab; j += PICK_THREADS) sum += (double)expf(l[j] - mx);
#pragma unroll
    for (int o = 16; o >= 1; o >>= 1) sum += __shfl_down_sync(0xffffffffu, sum, o);
    if (lane == 0) s_sum[warp] = sum;
    __syncthreads();
    if (warp == 0) {
        sum = s_sum[lane];
#pragma unroll
        for (int o = 16; o >= 1; o >>= 1) sum += __shfl_down_sync(0xffffffffu, sum, o);
        if (lane == 0) ids[blockIdx.x] = best, prob[blockIdx.x] = (float)(1.0 / sum);
    }
}

extern "C" aero_status aero_cuda_argmax(aero_cuda *cu, const float *logits, int n, int n_vocab, int32_t *ids,
                                        float *prob, aero_error *err) {
    if (n <= 0 || n_vocab <= 0 || !logits || !ids || !prob)
        return aero_fail(err, AERO_ERR_INVALID, "CUDA argmax: %d rows of %d", n, n_vocab);
    k_pick<<<(unsigned)n, PICK_THREADS, 0, cu->compute>>>(logits, n_vocab, ids, prob);
    CU_LAUNCHED("argmax launch");
    return AERO_OK;
}

// ---- chains of one-token batches ---------------------------------------------------------------------------

struct aero_cuda_chain {
    aero_cuda *cu;
    int max_k, n_ctx;
    aero_cuda_batch *views; // max_k one-token batches over the arrays below
    int32_t *d_arr;         // device: pos [max_k], slot [max_k], base [max_k], seq [max_k] (zeros)
    int32_t *h_stage;       // pinned: pos, slot, base as uploaded
    cudaEvent_t staged;     // the staging buffer's last upload is done
};

extern "C" aero_status aero_cuda_chain_new(aero_cuda *cu, int max_k, int n_ctx, int n_head, int head_dim,
                                           aero_cuda_chain **out, aero_error *err) {
    *out = NULL;
    if (max_k <= 0 || max_k > 4096 || n_ctx <= 0 || n_head <= 0 || head_dim <= 0 || head_dim > 256)
        return aero_fail(err, AERO_ERR_INVALID, "CUDA chain: %d tokens, %d slots, %d heads of %d", max_k, n_ctx, n_head,
                         head_dim);
    aero_cuda_chain *c = (aero_cuda_chain *)calloc(1, sizeof *c);
    aero_cuda_batch *v = (aero_cuda_batch *)calloc((size_t)max_k, sizeof *v);
    if (!c || !v) {
        free(c), free(v);
        return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    }
    c->cu = cu, c->max_k = max_k, c->n_ctx = n_ctx, c->views = v;
    int segs = (n_ctx + 1 + AERO_ATTN_SEG - 1) / AERO_ATTN_SEG;
    float *part = NULL;
    aero_status st;
    if ((st = aero_cuda_alloc(cu, (size_t)4 * max_k * 4, (void **)&c->d_arr, err)) ||
        (st = aero_cuda_alloc(cu, (size_t)n_head * segs * (2 + head_dim) * 4, (void **)&part, err)) ||
        (st = aero_cuda_memset0(cu, c->d_arr + 3 * max_k, (size_t)max_k * 4, err)) ||
        (st = aero_cuda_host_alloc((size_t)3 * max_k * 4, (void **)&c->h_stage, err))) {
        free(v), free(c);
        return st;
    }
    cudaError_t e = cudaEventCreateWithFlags(&c->staged, cudaEventDisableTiming);
    if (e != cudaSuccess) {
        aero_cuda_host_free(c->h_stage);
        free(v), free(c);
        return aero_cuda_fail(err, e, "cudaEventCreate");
    }
    for (int j = 0; j < max_k; j++) { // one-token causal batches of sequence 0 (no mask)
        aero_cuda_batch *b = &v[j];
        b->cu = cu, b->max_tokens = 1, b->n_seq = 1, b->n_ctx = n_ctx, b->n_head = n_head, b->head_dim = head_dim;
        b->d_pos = c->d_arr + j, b->d_slot = c->d_arr + max_k + j, b->d_base = c->d_arr + 2 * max_k + j;
        b->d_seq = c->d_arr + 3 * max_k + j;
        b->d_part = part, b->part_segs = segs;
    }
    *out = c;
    return AERO_OK;
}

// The device arrays stay in the arena (released with it); the views, the staging and the event go now.
extern "C" void aero_cuda_chain_free(aero_cuda_chain *c) {
    if (!c) return;
    cudaEventSynchronize(c->staged);
    cudaEventDestroy(c->staged);
    aero_cuda_host_free(c->h_stage);
    free(c->views);
    free(c);
}

extern "C" aero_status aero_cuda_chain_set(aero_cuda_chain *c, int k, const int32_t *pos, const int32_t *slot,
                                           const int32_t *base, aero_error *err) {
    if (k <= 0 || k > c->max_k) return aero_fail(err, AERO_ERR_INVALID, "CUDA chain of %d tokens (1..%d)", k, c->max_k);
    for (int j = 0; j < k; j++)
        if (slot[j] < 0 || slot[j] >= c->n_ctx || base[j] < 0 || base[j] > c->n_ctx)
            return aero_fail(err, AERO_ERR_RANGE, "chain token %d: slot %d, base %d, context %d", j, slot[j], base[j],
                             c->n_ctx);
    CU_TRY(cudaEventSynchronize(c->staged), "chain staging");
    int m = c->max_k;
    memcpy(c->h_stage, pos, (size_t)k * 4);
    memcpy(c->h_stage + m, slot, (size_t)k * 4);
    memcpy(c->h_stage + 2 * m, base, (size_t)k * 4);
    for (int j = 0; j < k; j++) {
        aero_cuda_batch *b = &c->views[j];
        b->n = 1;
        b->max_segs = (base[j] + 1 + AERO_ATTN_SEG - 1) / AERO_ATTN_SEG;
        if (b->max_segs > b->part_segs) b->max_segs = b->part_segs;
    }
    size_t bytes = (size_t)(2 * m + k) * 4; // pos and slot whole, base up to k
    CU_TRY(cudaMemcpyAsync(c->d_arr, c->h_stage, bytes, cudaMemcpyHostToDevice, c->cu->compute), "chain upload");
    CU_TRY(cudaEventRecord(c->staged, c->cu->compute), "cudaEventRecord");
    return AERO_OK;
}

extern "C" aero_cuda_batch *aero_cuda_chain_batch(aero_cuda_chain *c, int j) {
    return j >= 0 && j < c->max_k ? &c->views[j] : NULL;
}
