// The attention over the F16 KV cache (aero_cuda_attention). Compiled with --fmad=false, so each expression
// rounds as written; every fused multiply-add is an explicit fmaf.
#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>

#include "cuda_internal.cuh"

#define ATTN_MAXJ 8 // head_dim <= 32 * ATTN_MAXJ

// ---- attention -------------------------------------------------------------------------------------------

// Whether batch token i may see batch token j (same sequence, j <= i, and the tree mask when there is one).
__device__ __forceinline__ bool visible(int i, int j, int n, const int32_t *seq, const uint8_t *mask, int has_mask) {
    if (j > i || seq[i] != seq[j]) return false;
    return has_mask ? mask[(size_t)i * n + j] != 0 : true;
}

// One warp per (token, head, segment of 256 visible keys): lanes own dims lane, lane + 32, ...; each key's score
// is an ordered per-lane sum folded by xor butterfly (the same value on every lane), then an online softmax.
// Visible key number v of token i is slot v for v < base, then its visible batch tokens in batch order.
__global__ void k_attn(const float *q, const uint16_t *kc, const uint16_t *vc, int n, int n_head, int n_head_kv,
                       int hd, int n_ctx, const int32_t *seq, const int32_t *slot, const int32_t *base,
                       const uint8_t *mask, int has_mask, int max_segs, float scale, float *part) {
    size_t wid = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (wid >= (size_t)n * n_head * max_segs) return;
    int g = (int)(wid % max_segs);
    size_t ih = wid / max_segs;
    int h = (int)(ih % n_head), i = (int)(ih / n_head);
    int s = seq[i], nb = base[s], kvh = h / (n_head / n_head_kv), kv_dim = n_head_kv * hd;
    const float *qr = q + ih * hd;
    float qv[ATTN_MAXJ], acc[ATTN_MAXJ];
#pragma unroll
    for (int j = 0; j < ATTN_MAXJ; j++) {
        int d = lane + 32 * j;
        qv[j] = d < hd ? qr[d] : 0.0f;
        acc[j] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    const int lo = g * AERO_ATTN_SEG, hi = lo + AERO_ATTN_SEG;
    const size_t seq_base = (size_t)s * n_ctx;
    // visits one key: score, then the running max, sum and weighted values
    auto visit = [&](int sl) {
        const uint16_t *kr = kc + (seq_base + sl) * kv_dim + (size_t)kvh * hd;
        const uint16_t *vr = vc + (seq_base + sl) * kv_dim + (size_t)kvh * hd;
        float dot = 0.0f;
#pragma unroll
        for (int j = 0; j < ATTN_MAXJ; j++) {
            int d = lane + 32 * j;
            if (d < hd) dot = fmaf(qv[j], __half2float(__ushort_as_half(kr[d])), dot);
        }
#pragma unroll
        for (int o = 16; o >= 1; o >>= 1) dot = dot + __shfl_xor_sync(0xffffffffu, dot, o);
        float sc = dot * scale;
        float mn = fmaxf(m, sc);
        float corr = expf(m - mn), p = expf(sc - mn);
        l = l * corr + p;
#pragma unroll
        for (int j = 0; j < ATTN_MAXJ; j++) {
            int d = lane + 32 * j;
            if (d < hd) acc[j] = acc[j] * corr + p * __half2float(__ushort_as_half(vr[d]));
        }
        m = mn;
    };
    for (int t = lo; t < hi && t < nb; t++) visit(t);
    if (hi > nb) {
        int v = nb;
        for (int j = 0; j <= i && v < hi; j++) {
            if (!visible(i, j, n, seq, mask, has_mask)) continue;
            if (v >= lo) visit(slot[j]);
            v++;
        }
    }
    float *pp = part + (ih * max_segs + g) * (size_t)(2 + hd);
    if (lane == 0) pp[0] = m, pp[1] = l;
#pragma unroll
    for (int j = 0; j < ATTN_MAXJ; j++) {
        int d = lane + 32 * j;
        if (d < hd) pp[2 + d] = acc[j];
    }
}

// Merges the non-empty segments of each (token, head) in segment order.
__global__ void k_attn_merge(const float *part, int n, int n_head, int hd, int max_segs, float *out) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)n * n_head * hd) return;
    int d = (int)(idx % hd);
    size_t ih = idx / hd;
    const float *p0 = part + ih * max_segs * (size_t)(2 + hd);
    float M = -INFINITY;
    for (int g = 0; g < max_segs; g++) {
        const float *pp = p0 + g * (size_t)(2 + hd);
        if (pp[1] > 0.0f) M = fmaxf(M, pp[0]);
    }
    float L = 0.0f, o = 0.0f;
    for (int g = 0; g < max_segs; g++) {
        const float *pp = p0 + g * (size_t)(2 + hd);
        if (!(pp[1] > 0.0f)) continue;
        float f = expf(pp[0] - M);
        L = L + pp[1] * f;
        o = o + pp[2 + d] * f;
    }
    out[idx] = L > 0.0f ? o / L : 0.0f;
}

extern "C" aero_status aero_cuda_attention(aero_cuda_batch *b, const float *q, const uint16_t *k_cache,
                                           const uint16_t *v_cache, int n_head, int n_head_kv, int head_dim, float *out,
                                           aero_error *err) {
    if (n_head <= 0 || n_head_kv <= 0 || n_head % n_head_kv || n_head > b->n_head || head_dim != b->head_dim ||
        head_dim > 32 * ATTN_MAXJ)
        return aero_fail(err, AERO_ERR_INVALID, "CUDA attention: %d heads, %d KV heads of %d (batch made for %d of %d)",
                         n_head, n_head_kv, head_dim, b->n_head, b->head_dim);
    if (b->n <= 0) return aero_fail(err, AERO_ERR_INVALID, "CUDA attention without a batch");
    cudaStream_t st = b->cu->compute;
    size_t warps = (size_t)b->n * n_head * b->max_segs;
    float scale = 1.0f / sqrtf((float)head_dim);
    k_attn<<<(unsigned)((warps * 32 + 127) / 128), 128, 0, st>>>(q, k_cache, v_cache, b->n, n_head, n_head_kv, head_dim,
                                                                 b->n_ctx, b->d_seq, b->d_slot, b->d_base, b->d_mask,
                                                                 b->has_mask ? 1 : 0, b->max_segs, scale, b->d_part);
    CU_LAUNCHED("attention launch");
    size_t total = (size_t)b->n * n_head * head_dim;
    k_attn_merge<<<(unsigned)((total + 255) / 256), 256, 0, st>>>(b->d_part, b->n, n_head, head_dim, b->max_segs, out);
    CU_LAUNCHED("attention merge launch");
    return AERO_OK;
}
