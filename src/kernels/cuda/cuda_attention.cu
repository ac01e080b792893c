// The attention over the F16 KV cache (aero_cuda_attention). Two kernels, both batch invariant (a token's
// result depends only on its own visible-key list, split into fixed segments of 256 visible keys merged in
// segment order):
//   v2 (default): one 256-thread block per (segment, KV head, token tile) serving all the query heads of the
//      GQA group, so each K/V row is read once per group; 16-byte loads, 8 keys in flight per thread;
//   v1 (AERO_CUDA_ATTN=v1, and the fallback for head_dim not a multiple of 8): one warp per (token, head,
//      segment), one key at a time.
// Compiled with --fmad=false, so each expression rounds as written; every fused multiply-add is an explicit fmaf.
#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.cuh"
#include "cuda_attention.cuh"

#define ATTN_MAXJ 8 // head_dim <= 32 * ATTN_MAXJ

// ---- v1: one warp per (token, head, segment) -----------------------------------------------------------

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

// The kernel instance for a head_dim (lanes per key row: head_dim / 8 rounded up to a power of two) and a GQA
// group size (heads per block: the group rounded up to a power of two, at most 8; larger groups take chunks).
typedef void (*attn2_kernel)(const float *, const uint16_t *, const uint16_t *, int, int, int, int, int,
                             const int32_t *, const int32_t *, const int32_t *, const uint8_t *, int, int, int, float,
                             float *, float *);
template <int LPK> static attn2_kernel attn2_pick_ng(int ng) {
    switch (ng) {
    case 1: return k_attn2<LPK, 1>;
    case 2: return k_attn2<LPK, 2>;
    case 4: return k_attn2<LPK, 4>;
    default: return k_attn2<LPK, 8>;
    }
}
static attn2_kernel attn2_pick(int lpk, int ng) {
    switch (lpk) {
    case 1: return attn2_pick_ng<1>(ng);
    case 2: return attn2_pick_ng<2>(ng);
    case 4: return attn2_pick_ng<4>(ng);
    case 8: return attn2_pick_ng<8>(ng);
    case 16: return attn2_pick_ng<16>(ng);
    default: return attn2_pick_ng<32>(ng);
    }
}

static int pow2_at_least(int x) {
    int p = 1;
    while (p < x) p <<= 1;
    return p;
}

// Tokens per block: AERO_CUDA_ATTN_TOKENS (1..64, for tests and benchmarks: every value gives the same bits),
// else enough token tiles for about 4 blocks per SM, at most 16 tokens a tile.
static int attn2_tokens_per_block(const aero_cuda_batch *b, int blocks_per_token) {
    const char *e = getenv("AERO_CUDA_ATTN_TOKENS");
    int forced = e ? atoi(e) : 0;
    if (forced >= 1 && forced <= ATTN2_MAX_TILE) return forced;
    int n_sm = b->cu->info.n_sm > 0 ? b->cu->info.n_sm : 1;
    int tiles = 4 * n_sm / blocks_per_token;
    if (tiles < 1) tiles = 1;
    int tpb = (b->n + tiles - 1) / tiles;
    return tpb < 1 ? 1 : tpb > 16 ? 16 : tpb;
}

// Queues v2; false when it does not apply (head_dim not a multiple of 8, or a pointer not 16-byte aligned for
// the vector loads): the caller runs v1.
static bool attention_v2(aero_cuda_batch *b, const float *q, const uint16_t *kc, const uint16_t *vc, int n_head,
                         int n_head_kv, int hd, float *out) {
    if (hd % 8 || (((uintptr_t)q | (uintptr_t)kc | (uintptr_t)vc) & 15)) return false;
    const int group = n_head / n_head_kv, ng = pow2_at_least(group < 8 ? group : 8), chunks = (group + ng - 1) / ng;
    const int lpk = pow2_at_least(hd / 8);
    const int tpb = attn2_tokens_per_block(b, b->max_segs * n_head_kv * chunks);
    dim3 grid((unsigned)b->max_segs, (unsigned)(n_head_kv * chunks), (unsigned)((b->n + tpb - 1) / tpb));
    float *part = b->max_segs > 1 ? b->d_part : NULL;
    attn2_pick(lpk, ng)<<<grid, ATTN2_THREADS, 0, b->cu->compute>>>(
        q, kc, vc, b->n, n_head, n_head_kv, hd, b->n_ctx, b->d_seq, b->d_slot, b->d_base, b->d_mask,
        b->has_mask ? 1 : 0, b->max_segs, tpb, 1.0f / sqrtf((float)hd), part, out);
    return true;
}

// Queues v1: one warp per (token, head, segment), then the merge.
static void attention_v1(aero_cuda_batch *b, const float *q, const uint16_t *kc, const uint16_t *vc, int n_head,
                         int n_head_kv, int hd) {
    size_t warps = (size_t)b->n * n_head * b->max_segs;
    k_attn<<<(unsigned)((warps * 32 + 127) / 128), 128, 0, b->cu->compute>>>(
        q, kc, vc, b->n, n_head, n_head_kv, hd, b->n_ctx, b->d_seq, b->d_slot, b->d_base, b->d_mask,
        b->has_mask ? 1 : 0, b->max_segs, 1.0f / sqrtf((float)hd), b->d_part);
}

// v2 unless AERO_CUDA_ATTN=v1 (read at every call, so a test can run both) or v2 does not apply; the segments
// are merged in order unless the batch has a single one (v2 then writes the output itself).
extern "C" aero_status aero_cuda_attention(aero_cuda_batch *b, const float *q, const uint16_t *k_cache,
                                           const uint16_t *v_cache, int n_head, int n_head_kv, int head_dim, float *out,
                                           aero_error *err) {
    if (n_head <= 0 || n_head_kv <= 0 || n_head % n_head_kv || n_head > b->n_head || head_dim != b->head_dim ||
        head_dim > 32 * ATTN_MAXJ)
        return aero_fail(err, AERO_ERR_INVALID, "CUDA attention: %d heads, %d KV heads of %d (batch made for %d of %d)",
                         n_head, n_head_kv, head_dim, b->n_head, b->head_dim);
    if (b->n <= 0) return aero_fail(err, AERO_ERR_INVALID, "CUDA attention without a batch");
    const char *ver = getenv("AERO_CUDA_ATTN");
    if (ver && strcmp(ver, "v1") && strcmp(ver, "v2"))
        return aero_fail(err, AERO_ERR_INVALID, "AERO_CUDA_ATTN=%s: expected v1 or v2", ver);
    bool v2 = !(ver && !strcmp(ver, "v1")) && attention_v2(b, q, k_cache, v_cache, n_head, n_head_kv, head_dim, out);
    if (!v2) attention_v1(b, q, k_cache, v_cache, n_head, n_head_kv, head_dim);
    CU_LAUNCHED("attention launch");
    if (v2 && b->max_segs == 1) return AERO_OK;
    size_t total = (size_t)b->n * n_head * head_dim;
    k_attn_merge<<<(unsigned)((total + 255) / 256), 256, 0, b->cu->compute>>>(b->d_part, b->n, n_head, head_dim,
                                                                              b->max_segs, out);
    CU_LAUNCHED("attention merge launch");
    return AERO_OK;
}
