// The GPU attention v2 (src/kernels/cuda/cuda_attention.cuh) run on the CPU under a SIMT emulation
// (simt_host_emu.h: threads as fibers, real barriers and shuffles), so its index math, slot lists, GQA head
// chunks, token tiles and segment merge are checked where there is no GPU: each output against a double-
// precision softmax, and bitwise batch invariance (alone == in a mixed causal + tree batch == under every token
// tile; one segment written directly == the same token merged in a batch of two segments). The launch
// arithmetic (grid, head chunks, tile) mirrors attention_v2 in cuda_attention.cu.
#define AERO_CUDA_HOST_EMU 1
#include <algorithm>

#include "simt_host_emu.h"

extern "C" {
#include "kernels/kernels.h"
}
#define AERO_ATTN_SEG 256 // as cuda_internal.cuh
#include "kernels/cuda/cuda_attention.cuh"

#include <vector>

#define HOST_CHECK_SEED 0x243F6A8885A308D3ull
#include "host_check.h"

enum { N_CTX = 600, N_SEQ = 4 };

struct Shape {
    int n_head, n_kv, hd;
};

// One batch as aero_cuda_batch_set describes it.
struct Batch {
    std::vector<int32_t> seq, slot;
    std::vector<uint8_t> mask; // empty: causal
    int32_t base[N_SEQ];
};

template <int LPK, int NG> static bool launch_lpk_ng(const Shape &sh, const Batch &b, const float *q, const uint16_t *kc,
                                                    const uint16_t *vc, int tpb, float *part, int max_segs,
                                                    float *out) {
    int n = (int)b.seq.size(), group = sh.n_head / sh.n_kv, chunks = (group + NG - 1) / NG;
    emu_dim3 grid{(unsigned)max_segs, (unsigned)(sh.n_kv * chunks), (unsigned)((n + tpb - 1) / tpb)};
    const uint8_t *mask = b.mask.empty() ? NULL : b.mask.data();
    return emu_launch(grid, ATTN2_THREADS, [&] {
        k_attn2<LPK, NG>(q, kc, vc, n, sh.n_head, sh.n_kv, sh.hd, N_CTX, b.seq.data(), b.slot.data(), b.base, mask,
                         mask != NULL, max_segs, tpb, 1.0f / sqrtf((float)sh.hd), part, out);
    });
}

template <int LPK> static bool launch_lpk(int ng, const Shape &sh, const Batch &b, const float *q, const uint16_t *kc,
                                          const uint16_t *vc, int tpb, float *part, int max_segs, float *out) {
    switch (ng) {
    case 1: return launch_lpk_ng<LPK, 1>(sh, b, q, kc, vc, tpb, part, max_segs, out);
    case 2: return launch_lpk_ng<LPK, 2>(sh, b, q, kc, vc, tpb, part, max_segs, out);
    case 4: return launch_lpk_ng<LPK, 4>(sh, b, q, kc, vc, tpb, part, max_segs, out);
    default: return launch_lpk_ng<LPK, 8>(sh, b, q, kc, vc, tpb, part, max_segs, out);
    }
}

static int pow2_at_least(int x) {
    int p = 1;
    while (p < x) p <<= 1;
    return p;
}

// aero_cuda_attention's v2 path: the kernel, then the merge unless the batch has one segment.
static void attention(const Shape &sh, const Batch &b, const float *q, const uint16_t *kc, const uint16_t *vc, int tpb,
                      float *out) {
    int n = (int)b.seq.size(), max_vis = 0;
    for (int i = 0; i < n; i++) max_vis = std::max(max_vis, b.base[b.seq[i]] + i + 1);
    int max_segs = (max_vis + AERO_ATTN_SEG - 1) / AERO_ATTN_SEG;
    int group = sh.n_head / sh.n_kv, ng = pow2_at_least(std::min(group, 8)), lpk = pow2_at_least(sh.hd / 8);
    std::vector<float> part((size_t)n * sh.n_head * max_segs * (2 + sh.hd), NAN);
    float *pp = max_segs > 1 ? part.data() : NULL;
    bool ok = false;
    switch (lpk) {
    case 1: ok = launch_lpk<1>(ng, sh, b, q, kc, vc, tpb, pp, max_segs, out); break;
    case 2: ok = launch_lpk<2>(ng, sh, b, q, kc, vc, tpb, pp, max_segs, out); break;
    case 4: ok = launch_lpk<4>(ng, sh, b, q, kc, vc, tpb, pp, max_segs, out); break;
    case 8: ok = launch_lpk<8>(ng, sh, b, q, kc, vc, tpb, pp, max_segs, out); break;
    case 16: ok = launch_lpk<16>(ng, sh, b, q, kc, vc, tpb, pp, max_segs, out); break;
    default: ok = launch_lpk<32>(ng, sh, b, q, kc, vc, tpb, pp, max_segs, out); break;
    }
    if (!ok) exit(1);
    if (max_segs == 1) return;
    size_t total = (size_t)n * sh.n_head * sh.hd; // the merge: one thread per output, no barriers
    for (size_t idx = 0; idx < total; idx++) {
        blockIdx = emu_dim3{(unsigned)(idx / 256), 0, 0}, threadIdx = emu_dim3{(unsigned)(idx % 256), 0, 0};
        blockDim = emu_dim3{256, 1, 1};
        k_attn_merge(part.data(), n, sh.n_head, sh.hd, max_segs, out);
    }
}

// Double-precision softmax attention of one query over explicit slots of one sequence.
static void reference(const Shape &sh, const std::vector<uint16_t> &kc, const std::vector<uint16_t> &vc, int s,
                      const float *qh, int h, const std::vector<int> &slots, double *o) {
    int kvh = h / (sh.n_head / sh.n_kv), kv_dim = sh.n_kv * sh.hd;
    std::vector<double> sc(slots.size());
    double mx = -INFINITY, sum = 0;
    for (size_t t = 0; t < slots.size(); t++) {
        const uint16_t *kr = &kc[((size_t)s * N_CTX + slots[t]) * kv_dim + (size_t)kvh * sh.hd];
        double d = 0;
        for (int k = 0; k < sh.hd; k++) d += (double)qh[k] * aero_f16_to_f32(kr[k]);
        sc[t] = d / sqrt((double)sh.hd), mx = std::max(mx, sc[t]);
    }
    for (double &x : sc) x = exp(x - mx), sum += x;
    for (int k = 0; k < sh.hd; k++) o[k] = 0;
    for (size_t t = 0; t < slots.size(); t++) {
        const uint16_t *vr = &vc[((size_t)s * N_CTX + slots[t]) * kv_dim + (size_t)kvh * sh.hd];
        for (int k = 0; k < sh.hd; k++) o[k] += sc[t] / sum * aero_f16_to_f32(vr[k]);
    }
}

// Sequences 0..2 share a committed prefix of NB rows; 0 gets NP causal tokens, 1 a tree of NT (parents),
// 3 has SB committed rows and NS causal tokens (one segment alone). All in one interleaved batch with a mask.
static void test_shape(Shape sh) {
    enum { NB = 300, NP = 4, NT = 4, SB = 100, NS = 2 };
    const int parent[NT] = {-1, 0, 0, 1};
    const int kv_dim = sh.n_kv * sh.hd, qd = sh.n_head * sh.hd;
    std::vector<uint16_t> kc((size_t)N_SEQ * N_CTX * kv_dim), vc(kc.size());
    for (size_t r = 0; r < (size_t)N_CTX * kv_dim; r++) { // sequences 0..2: the same rows
        uint16_t k = aero_f32_to_f16(2.0f * unif()), v = aero_f32_to_f16(unif());
        for (int s = 0; s < 3; s++) kc[(size_t)s * N_CTX * kv_dim + r] = k, vc[(size_t)s * N_CTX * kv_dim + r] = v;
    }
    for (size_t r = 0; r < (size_t)N_CTX * kv_dim; r++)
        kc[(size_t)3 * N_CTX * kv_dim + r] = aero_f32_to_f16(2.0f * unif()),
                                     vc[(size_t)3 * N_CTX * kv_dim + r] = aero_f32_to_f16(unif());
    // the tree's rows differ from sequence 0's new rows (slots NB..)
    for (int t = 0; t < NT; t++)
        for (int d = 0; d < kv_dim; d++) {
            size_t at = ((size_t)1 * N_CTX + NB + t) * kv_dim + d;
            kc[at] = aero_f32_to_f16(2.0f * unif()), vc[at] = aero_f32_to_f16(unif());
        }
    // the mixed batch: kinds interleaved
    struct Tok {
        int s, slot, tree;
    };
    std::vector<Tok> toks;
    for (int k = 0; k < NP; k++) {
        toks.push_back({0, NB + k, -1});
        toks.push_back({1, NB + k, k});
        if (k < NS) toks.push_back({3, SB + k, -1});
    }
    int n = (int)toks.size();
    Batch mb;
    mb.base[0] = mb.base[1] = NB, mb.base[2] = 0, mb.base[3] = SB;
    mb.mask.assign((size_t)n * n, 0);
    for (int a = 0; a < n; a++) {
        mb.seq.push_back(toks[a].s), mb.slot.push_back(toks[a].slot);
        for (int c = 0; c <= a; c++) {
            if (toks[c].s != toks[a].s) continue;
            bool vis = toks[a].tree < 0 ? toks[c].slot <= toks[a].slot : false;
            if (toks[a].tree >= 0)
                for (int x = toks[a].tree; x >= 0; x = parent[x]) vis |= toks[c].tree == x;
            mb.mask[(size_t)a * n + c] = vis;
        }
    }
    std::vector<float> q((size_t)n * qd), o_mix((size_t)n * qd), o((size_t)n * qd), o1(qd);
    for (float &x : q) x = 2.0f * unif();
    attention(sh, mb, q.data(), kc.data(), vc.data(), 1, o_mix.data());
    // reference
    double worst = 0;
    std::vector<double> ro(sh.hd);
    for (int a = 0; a < n; a++) {
        std::vector<int> vis;
        int committed = mb.base[toks[a].s];
        for (int t = 0; t < committed; t++) vis.push_back(t);
        for (int c = 0; c <= a; c++)
            if (mb.mask[(size_t)a * n + c]) vis.push_back(toks[c].slot);
        for (int h = 0; h < sh.n_head; h++) {
            reference(sh, kc, vc, toks[a].s, &q[(size_t)a * qd + (size_t)h * sh.hd], h, vis, ro.data());
            for (int d = 0; d < sh.hd; d++)
                worst = std::max(worst, fabs(o_mix[(size_t)a * qd + (size_t)h * sh.hd + d] - ro[d]));
        }
    }
    EXPECT(worst <= 2e-5, "%d/%d x %d: error %.3g", sh.n_head, sh.n_kv, sh.hd, worst);
    // token tiles
    int tile_bad = 0;
    for (int tpb : {2, 3, 16}) {
        attention(sh, mb, q.data(), kc.data(), vc.data(), tpb, o.data());
        tile_bad += memcmp(o.data(), o_mix.data(), sizeof(float) * o.size()) != 0;
    }
    EXPECT(tile_bad == 0, "%d/%d x %d: %d token tiles change the bits", sh.n_head, sh.n_kv, sh.hd, tile_bad);
    // alone: causal tokens with base = slot; tree tokens with their ancestors compacted into sequence 2
    int alone_bad = 0;
    for (int a = 0; a < n; a++) {
        Batch ab;
        ab.base[0] = ab.base[1] = ab.base[2] = ab.base[3] = 0;
        ab.seq.push_back(toks[a].s), ab.slot.push_back(toks[a].slot);
        if (toks[a].tree < 0) {
            ab.base[toks[a].s] = toks[a].slot;
        } else {
            int chain[NT], len = 0;
            for (int x = toks[a].tree; x >= 0; x = parent[x]) chain[len++] = x;
            for (int c = 0; c < len; c++)
                for (int d = 0; d < kv_dim; d++) {
                    size_t from = ((size_t)1 * N_CTX + NB + chain[len - 1 - c]) * kv_dim + d;
                    size_t to = ((size_t)2 * N_CTX + NB + c) * kv_dim + d;
                    kc[to] = kc[from], vc[to] = vc[from];
                }
            ab.seq[0] = 2, ab.slot[0] = NB + len - 1, ab.base[2] = NB + len - 1;
        }
        attention(sh, ab, &q[(size_t)a * qd], kc.data(), vc.data(), 1, o1.data());
        alone_bad += memcmp(o1.data(), &o_mix[(size_t)a * qd], sizeof(float) * qd) != 0;
    }
    EXPECT(alone_bad == 0, "%d/%d x %d: %d tokens differ alone vs in the batch", sh.n_head, sh.n_kv, sh.hd, alone_bad);
    printf("  attention v2 (emulated) %d/%d heads x %d: %d tokens (causal, tree, short), 2 segments: max err %.2e; "
           "token tiles: %s; alone == batch: %s\n",
           sh.n_head, sh.n_kv, sh.hd, n, worst, tile_bad ? "NO" : "bitwise", alone_bad ? "NO" : "bitwise");
}

int main() {
    printf("GPU attention v2 on the CPU (SIMT emulation)\n");
    // GQA groups 4 (two KV heads), 8, 12 (two chunks of heads), 1; head_dim 128, 64, 80 (idle lanes), 8, 256
    const Shape shapes[] = {{8, 2, 128}, {8, 1, 64}, {12, 1, 80}, {2, 2, 8}, {2, 1, 256}};
    for (const Shape &sh : shapes) test_shape(sh);
    printf("%s: %d checks passed, %d failed\n", n_fail ? "FAIL" : "PASS", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
