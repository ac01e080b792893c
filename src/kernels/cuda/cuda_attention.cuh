// The device code of the attention shared by both kernels and the whole of v2 (see cuda_attention.cu), in a
// header so that tests/cuda/test_attn_host.cpp can run the very same v2 code on the CPU under a SIMT emulation
// (AERO_CUDA_HOST_EMU: threads as fibers, shuffles and barriers emulated).
#ifndef AERO_KERNELS_CUDA_ATTENTION_CUH
#define AERO_KERNELS_CUDA_ATTENTION_CUH

#ifndef AERO_CUDA_HOST_EMU
#include <cuda_fp16.h>
#endif
#include <math.h>
#include <stdint.h>

// Whether batch token i may see batch token j (same sequence, j <= i, and the tree mask when there is one).
__device__ __forceinline__ bool visible(int i, int j, int n, const int32_t *seq, const uint8_t *mask, int has_mask) {
    if (j > i || seq[i] != seq[j]) return false;
    return has_mask ? mask[(size_t)i * n + j] != 0 : true;
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


// ---- v2: one block per (segment, KV head, token tile), all the query heads of the group ---------------------
//
// Layout: lane l of warp w owns dims 8c .. 8c + 7 (c = l % LPK, LPK = head_dim / 8 rounded up to a power of two)
// of key kk = (step * 8 + w) * KPI + l / LPK (KPI = 32 / LPK keys per warp load), one 16-byte load per key.
// Per token and segment, with the segment's slot list in shared memory:
//   1. scores: each lane's 8-term fmaf chain, folded over the LPK lanes of the key by xor butterfly;
//   2. softmax: a warp per head takes the exact max, then p = expf(s - max) and l = sum p (lane kk mod 32 in
//      key order, then xor butterfly);
//   3. values: each lane sums p * v over its keys in step order, then across the KPI keys of a warp load
//      (xor butterfly) and across the 8 warps in warp order.
// Every order is a function of head_dim and the number of keys in the segment, so a token's bits depend only on
// its own visible keys; the token tile, the GQA chunking and the number of segments of the batch do not enter.

#define ATTN2_WARPS 8
#define ATTN2_THREADS (32 * ATTN2_WARPS)
#define ATTN2_UNROLL 8  // loads in flight per thread per phase
#define ATTN2_RED 512   // floats per warp in the cross-warp sum of the values
#define ATTN2_MAX_TILE 64

// The 8 halves of a 16-byte load as floats (element 0 in the low half of .x), exact.
__device__ __forceinline__ void attn2_unpack(uint4 r, float f[8]) {
    const uint32_t wd[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int k = 0; k < 4; k++) {
        f[2 * k] = __half2float(__ushort_as_half((unsigned short)(wd[k] & 0xffffu)));
        f[2 * k + 1] = __half2float(__ushort_as_half((unsigned short)(wd[k] >> 16)));
    }
}

// Fills s_slot with the slots of token i's visible keys lo .. lo + 255 (slot v for v < nb, then the visible
// batch tokens j <= i in batch order) and returns how many there are (0 past the token's last key). The batch
// tokens are numbered by a block-wide prefix count over chunks of 256. Called by the whole block.
__device__ int attn2_slots(int i, int n, int nb, int lo, const int32_t *seq, const int32_t *slot, const uint8_t *mask,
                           int has_mask, int *s_slot, int *s_wcount) {
    const int t = threadIdx.x, lane = t & 31, w = t >> 5, hi = lo + AERO_ATTN_SEG;
    for (int v = lo + t; v < hi && v < nb; v += ATTN2_THREADS) s_slot[v - lo] = v;
    int total = nb; // visible keys numbered so far (the same on every thread)
    for (int j0 = 0; j0 <= i && total < hi; j0 += ATTN2_THREADS) {
        const int j = j0 + t;
        const bool vis = j <= i && visible(i, j, n, seq, mask, has_mask);
        const unsigned bal = __ballot_sync(0xffffffffu, vis);
        if (lane == 0) s_wcount[w] = __popc(bal);
        __syncthreads();
        int v = total + __popc(bal & ((1u << lane) - 1u));
        for (int k = 0; k < w; k++) v += s_wcount[k];
        if (vis && v >= lo && v < hi) s_slot[v - lo] = slot[j];
        for (int k = 0; k < ATTN2_WARPS; k++) total += s_wcount[k];
        __syncthreads(); // s_wcount is rewritten by the next chunk
    }
    __syncthreads(); // s_slot is complete
    const int nk = (total < hi ? total : hi) - lo;
    return nk > 0 ? nk : 0;
}

// The ATTN2_UNROLL rows this lane loads in one step from k0 (its 8 dims of each key's K or V row; zeros past nk
// or where the lane owns no dims): the loads of a step issued together, before any is used.
template <int LPK>
__device__ __forceinline__ void attn2_load(uint4 (&raw)[ATTN2_UNROLL], const uint16_t *rows, size_t kv_dim,
                                           bool dims_on, const int *s_slot, int nk, int k0) {
    constexpr int KPI = 32 / LPK;
    const int w = threadIdx.x >> 5, sub = (threadIdx.x & 31) / LPK;
#pragma unroll
    for (int u = 0; u < ATTN2_UNROLL; u++) {
        const int kk = k0 + (u * ATTN2_WARPS + w) * KPI + sub;
        raw[u] = make_uint4(0u, 0u, 0u, 0u);
        if (kk < nk && dims_on) raw[u] = __ldg((const uint4 *)(rows + (size_t)s_slot[kk] * kv_dim));
    }
}

// Phase 1: the scores of the block's NG query heads (qv: this lane's 8 dims of each, zero where the lane owns
// no dims or the head is past ng) against the segment's nk keys, scaled, into s_p[g][kk]. `kr` points at this
// lane's 8 dims of slot 0 of the sequence's K rows (rows kv_dim halves apart); dims_on: the lane owns dims.
template <int LPK, int NG>
__device__ __forceinline__ void attn2_scores(const float (&qv)[NG][8], const uint16_t *kr, size_t kv_dim, bool dims_on,
                                             const int *s_slot, int nk, int ng, float scale,
                                             float (*s_p)[AERO_ATTN_SEG]) {
    constexpr int KPI = 32 / LPK, STEP = ATTN2_WARPS * KPI;
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, sub = lane / LPK;
    const bool lead = lane % LPK == 0;
    for (int k0 = 0; k0 < nk; k0 += STEP * ATTN2_UNROLL) {
        uint4 raw[ATTN2_UNROLL];
        attn2_load<LPK>(raw, kr, kv_dim, dims_on, s_slot, nk, k0);
#pragma unroll
        for (int u = 0; u < ATTN2_UNROLL; u++) {
            const int kk = k0 + (u * ATTN2_WARPS + w) * KPI + sub;
            float kf[8];
            attn2_unpack(raw[u], kf);
#pragma unroll
            for (int g = 0; g < NG; g++) {
                float dot = 0.0f;
#pragma unroll
                for (int e = 0; e < 8; e++) dot = fmaf(qv[g][e], kf[e], dot);
#pragma unroll
                for (int o = LPK / 2; o >= 1; o >>= 1) dot = dot + __shfl_xor_sync(0xffffffffu, dot, o);
                if (lead && g < ng && kk < nk) s_p[g][kk] = dot * scale;
            }
        }
    }
}

// Phase 2: per head (warp g), the exact max m of the scores, p = expf(s - m) in place and l = sum p: lane
// kk % 32 sums its keys in order, then an xor butterfly. Into s_m[g], s_l[g].
__device__ __forceinline__ void attn2_softmax(float (*s_p)[AERO_ATTN_SEG], int nk, int ng, float *s_m, float *s_l) {
    const int lane = threadIdx.x & 31, g = threadIdx.x >> 5;
    if (g >= ng) return;
    float m = -INFINITY;
    for (int kk = lane; kk < nk; kk += 32) m = fmaxf(m, s_p[g][kk]);
#pragma unroll
    for (int o = 16; o >= 1; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    float l = 0.0f;
    for (int kk = lane; kk < nk; kk += 32) {
        const float p = expf(s_p[g][kk] - m);
        s_p[g][kk] = p;
        l = l + p;
    }
#pragma unroll
    for (int o = 16; o >= 1; o >>= 1) l = l + __shfl_xor_sync(0xffffffffu, l, o);
    if (lane == 0) s_m[g] = m, s_l[g] = l;
}

// Phase 3, per lane: acc[g][e] = sum over this lane's keys (in step order) of p[g][kk] * v[kk][8c + e], then
// summed over the KPI keys of each warp load (xor butterfly over the lanes that own the same dims).
template <int LPK, int NG>
__device__ __forceinline__ void attn2_values(float (&acc)[NG][8], const uint16_t *vr, size_t kv_dim, bool dims_on,
                                             const int *s_slot, int nk, int ng, const float (*s_p)[AERO_ATTN_SEG]) {
    constexpr int KPI = 32 / LPK, STEP = ATTN2_WARPS * KPI;
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, sub = lane / LPK;
#pragma unroll
    for (int g = 0; g < NG; g++)
#pragma unroll
        for (int e = 0; e < 8; e++) acc[g][e] = 0.0f;
    for (int k0 = 0; k0 < nk; k0 += STEP * ATTN2_UNROLL) {
        uint4 raw[ATTN2_UNROLL];
        attn2_load<LPK>(raw, vr, kv_dim, dims_on, s_slot, nk, k0);
#pragma unroll
        for (int u = 0; u < ATTN2_UNROLL; u++) {
            const int kk = k0 + (u * ATTN2_WARPS + w) * KPI + sub;
            if (kk >= nk) continue;
            float vf[8];
            attn2_unpack(raw[u], vf);
#pragma unroll
            for (int g = 0; g < NG; g++) {
                if (g >= ng) continue;
                const float p = s_p[g][kk];
#pragma unroll
                for (int e = 0; e < 8; e++) acc[g][e] = fmaf(p, vf[e], acc[g][e]);
            }
        }
    }
#pragma unroll
    for (int g = 0; g < NG; g++)
#pragma unroll
        for (int e = 0; e < 8; e++)
#pragma unroll
            for (int o = LPK; o < 32; o <<= 1) acc[g][e] = acc[g][e] + __shfl_xor_sync(0xffffffffu, acc[g][e], o);
}

// One block per (segment blockIdx.x, KV head and chunk of NG of its query heads blockIdx.y, tile of
// tokens_per_block tokens blockIdx.z); the tile's tokens run one after another through the same code (their
// K/V rows, when shared, come from L1 the second time). Writes the segment's partial (m, l, unnormalized
// values) to part[token][head][seg], or, when part is NULL (the batch has one segment), the output with the
// merge's own arithmetic for a single non-empty segment (so a token alone, one segment, and the same token in a
// batch with more segments, merged, give the same bits).
template <int LPK, int NG>
__global__ void __launch_bounds__(ATTN2_THREADS, 2)
    k_attn2(const float *q, const uint16_t *kc, const uint16_t *vc, int n, int n_head, int n_head_kv, int hd, int n_ctx,
            const int32_t *seq, const int32_t *slot, const int32_t *base, const uint8_t *mask, int has_mask,
            int max_segs, int tokens_per_block, float scale, float *part, float *out) {
    constexpr int SP = 8 * LPK;                                      // head_dim padded to the lanes that own it
    constexpr int HPR = ATTN2_RED / SP < NG ? ATTN2_RED / SP : NG;  // heads per round of the cross-warp sum
    __shared__ int s_slot[AERO_ATTN_SEG];
    __shared__ int s_wcount[ATTN2_WARPS];
    __shared__ float s_p[NG][AERO_ATTN_SEG];
    __shared__ float s_m[NG], s_l[NG];
    __shared__ float s_red[ATTN2_WARPS][ATTN2_RED];
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, sub = lane / LPK, d0 = 8 * (lane % LPK);
    const bool dims_on = d0 < hd;
    const int seg = blockIdx.x, lo = seg * AERO_ATTN_SEG;
    const int group = n_head / n_head_kv, chunks = (group + NG - 1) / NG;
    const int kvh = blockIdx.y / chunks, chunk = blockIdx.y % chunks;
    const int h0 = kvh * group + chunk * NG, ng = min(NG, group - chunk * NG);
    const size_t kv_dim = (size_t)n_head_kv * hd, col = (size_t)kvh * hd + (dims_on ? d0 : 0);
    const int i_end = min(n, (int)(blockIdx.z + 1) * tokens_per_block);
    for (int i = blockIdx.z * tokens_per_block; i < i_end; i++) {
        __syncthreads(); // the previous token is done with the shared arrays
        const int s = seq[i];
        const int nk = attn2_slots(i, n, base[s], lo, seq, slot, mask, has_mask, s_slot, s_wcount);
        if (nk == 0) { // past the token's last key: l = 0 (the merge skips it), or an output of zeros
            for (int idx = threadIdx.x; idx < ng * (part ? 1 : hd); idx += ATTN2_THREADS) {
                const size_t ih = (size_t)i * n_head + h0 + (part ? idx : idx / hd);
                if (part) {
                    float *pp = part + (ih * max_segs + seg) * (size_t)(2 + hd);
                    pp[0] = -INFINITY, pp[1] = 0.0f;
                } else {
                    out[ih * hd + idx % hd] = 0.0f;
                }
            }
            continue;
        }
        const size_t row0 = (size_t)s * n_ctx * kv_dim + col;
        {
            float qv[NG][8];
#pragma unroll
            for (int g = 0; g < NG; g++) {
                float4 a = make_float4(0.0f, 0.0f, 0.0f, 0.0f), b = a;
                if (g < ng && dims_on) {
                    const float4 *qr = (const float4 *)(q + ((size_t)i * n_head + h0 + g) * hd + d0);
                    a = qr[0], b = qr[1];
                }
                qv[g][0] = a.x, qv[g][1] = a.y, qv[g][2] = a.z, qv[g][3] = a.w;
                qv[g][4] = b.x, qv[g][5] = b.y, qv[g][6] = b.z, qv[g][7] = b.w;
            }
            attn2_scores<LPK, NG>(qv, kc + row0, kv_dim, dims_on, s_slot, nk, ng, scale, s_p);
            __syncthreads();
            attn2_softmax(s_p, nk, ng, s_m, s_l);
            __syncthreads();
        }
        float acc[NG][8];
        attn2_values<LPK, NG>(acc, vc + row0, kv_dim, dims_on, s_slot, nk, ng, s_p);
        for (int r0 = 0; r0 < ng; r0 += HPR) {
            if (sub == 0 && dims_on) {
#pragma unroll
                for (int g = 0; g < NG; g++) {
                    if (g < r0 || g >= r0 + HPR || g >= ng) continue;
                    float *dst = &s_red[w][(g - r0) * SP + d0];
#pragma unroll
                    for (int e = 0; e < 8; e++) dst[e] = acc[g][e];
                }
            }
            __syncthreads();
            const int nout = min(HPR, ng - r0) * hd;
            for (int idx = threadIdx.x; idx < nout; idx += ATTN2_THREADS) {
                const int gr = idx / hd, d = idx % hd, g = r0 + gr;
                float o = s_red[0][gr * SP + d];
#pragma unroll
                for (int k = 1; k < ATTN2_WARPS; k++) o = o + s_red[k][gr * SP + d];
                const size_t ih = (size_t)i * n_head + h0 + g;
                if (part) {
                    float *pp = part + (ih * max_segs + seg) * (size_t)(2 + hd);
                    pp[2 + d] = o;
                    if (d == 0) pp[0] = s_m[g], pp[1] = s_l[g];
                } else { // the merge's arithmetic for one non-empty segment, so the bits match it (even -0)
                    const float f = expf(s_m[g] - s_m[g]), L = 0.0f + s_l[g] * f, oo = 0.0f + o * f;
                    out[ih * hd + d] = L > 0.0f ? oo / L : 0.0f;
                }
            }
            __syncthreads(); // s_red is rewritten by the next round
        }
    }
}

#endif
