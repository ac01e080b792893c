// Read-only access-pattern ceilings of the GPU (issue 13): how fast a matrix of quantized rows can be read with
// each load pattern a decode matrix-vector kernel might use, with no arithmetic beyond folding the loaded words
// into one value per thread. It separates "this access pattern cannot go faster" from "this kernel's arithmetic
// or dependencies hold it back": the int8 decode tile reads 0.36-0.47 of HBM and a deeper ring made it slower.
//
//   bench_access [ROWS ROW_BYTES]      default 14336 x 8064 (an 8B FFN matrix in Q4_K: 14336 x 14336 / 256 x 144)
//
// Patterns (each reads every byte of the matrix once per pass; a pass over copies larger than L2):
//   coalesced   grid-stride 16 B per lane: the device's streaming ceiling
//   tile8       the int8 decode tile: 16 rows per 8-warp block, warp w a contiguous eighth of the row, lane
//               (g, t) 8 B of rows g and g + 8 at 8 t of each 32-byte unit, plus the unit's 16-byte header
//               (h/sb: the header once per 144-byte super-block; no-h: codes only)
//   quad8       one row per warp, quad q (4 lanes) the q-th eighth of the row, 8 B per lane per 32-byte unit
//   lane16      one (row, eighth) per lane: 32 rows x one eighth per warp, 2 x 16 B per lane per 32-byte unit
//   rowspan     one row per warp, 16 B per lane contiguous: 512 B of one row per warp load
//   cp.async    k_q8v's movement: 32 rows x one 144-byte group per warp step into shared memory, double-buffered
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define CK(x)                                                                                                  \
    do {                                                                                                       \
        cudaError_t e_ = (x);                                                                                  \
        if (e_ != cudaSuccess) {                                                                               \
            fprintf(stderr, "cuda: %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, __LINE__);               \
            exit(1);                                                                                           \
        }                                                                                                      \
    } while (0)

// Grid-stride 16-byte loads over the whole buffer.
__global__ void k_coalesced(const uint4 *p, size_t n16, unsigned *out) {
    unsigned a = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n16; i += (size_t)gridDim.x * blockDim.x) {
        const uint4 v = __ldg(p + i);
        a ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (a == 0x12345678u) out[0] = a;
}

// The decode tile's loads: block = 16 rows, 8 warps; warp w takes units [w per, (w + 1) per) of 32 code bytes;
// each unit also reads its 144-byte super-block's 16-byte header (a Q4_K layout: header then 128 code bytes).
template <int DEPTH, int HDR>
__global__ void __launch_bounds__(256, 2) k_tile8(const uint8_t *W, size_t rb, int rows, unsigned *out) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int nunits = (int)(rb / 144) * 4, per = (nunits + 7) / 8, u0 = min(warp * per, nunits),
              u1 = min(u0 + per, nunits);
    const uint8_t *ra = W + (size_t)min(blockIdx.x * 16 + g, rows - 1) * rb;
    const uint8_t *rbp = W + (size_t)min(blockIdx.x * 16 + g + 8, rows - 1) * rb;
    unsigned a = 0;
    for (int u = u0; u < u1; u += DEPTH) {
        uint4 h[DEPTH][2];
        uint2 q[DEPTH][2];
#pragma unroll
        for (int s = 0; s < DEPTH; s++) {
            const int uu = min(u + s, u1 - 1);
            const size_t off = 144 * (size_t)(uu >> 2);
            // HDR 1: the header with every unit (as the tile does); 4: once per super-block; 0: never
            const bool hdr = HDR == 1 || (HDR == 4 && ((uu & 3) == 0 || s == 0));
            h[s][0] = hdr ? __ldg((const uint4 *)(ra + off)) : make_uint4(s, 0, 0, 0);
            h[s][1] = hdr ? __ldg((const uint4 *)(rbp + off)) : make_uint4(0, s, 0, 0);
            q[s][0] = __ldg((const uint2 *)(ra + off + 16 + 32 * (uu & 3) + 8 * t));
            q[s][1] = __ldg((const uint2 *)(rbp + off + 16 + 32 * (uu & 3) + 8 * t));
        }
#pragma unroll
        for (int s = 0; s < DEPTH; s++)
            a ^= h[s][0].x ^ h[s][1].y ^ q[s][0].x ^ q[s][0].y ^ q[s][1].x ^ q[s][1].y;
    }
    if (a == 0x12345678u) out[0] = a;
}

// One row per warp, quad q = lane / 4 the q-th eighth of the row's units, 8 B per lane per unit, header per unit.
template <int DEPTH>
__global__ void k_quad8(const uint8_t *W, size_t rb, int rows, unsigned *out) {
    const int lane = threadIdx.x & 31, q = lane >> 2, t = lane & 3;
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= rows) return;
    const int nunits = (int)(rb / 144) * 4, per = (nunits + 7) / 8, u0 = min(q * per, nunits),
              u1 = min(u0 + per, nunits);
    const uint8_t *r = W + (size_t)row * rb;
    unsigned a = 0;
    for (int u = u0; u < u1; u += DEPTH) {
        uint4 h[DEPTH];
        uint2 c[DEPTH];
#pragma unroll
        for (int s = 0; s < DEPTH; s++) {
            const int uu = min(u + s, u1 - 1);
            const size_t off = 144 * (size_t)(uu >> 2);
            h[s] = __ldg((const uint4 *)(r + off));
            c[s] = __ldg((const uint2 *)(r + off + 16 + 32 * (uu & 3) + 8 * t));
        }
#pragma unroll
        for (int s = 0; s < DEPTH; s++) a ^= h[s].x ^ c[s].x ^ c[s].y;
    }
    if (a == 0x12345678u) out[0] = a;
}

// One (row, eighth) per lane: warp w of the block = eighth w, lane = row within a 32-row group; each unit
// is read whole by its lane (2 x 16 B), plus the header once per super-block.
template <int DEPTH>
__global__ void k_lane16(const uint8_t *W, size_t rb, int rows, unsigned *out) {
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    const int row = min((int)blockIdx.x * 32 + lane, rows - 1);
    const int nunits = (int)(rb / 144) * 4, per = (nunits + 7) / 8, u0 = min(w * per, nunits),
              u1 = min(u0 + per, nunits);
    const uint8_t *r = W + (size_t)row * rb;
    unsigned a = 0;
    for (int u = u0; u < u1; u += DEPTH) {
        uint4 c[DEPTH][2], h[DEPTH];
#pragma unroll
        for (int s = 0; s < DEPTH; s++) {
            const int uu = min(u + s, u1 - 1);
            const size_t off = 144 * (size_t)(uu >> 2);
            h[s] = __ldg((const uint4 *)(r + off));
            c[s][0] = __ldg((const uint4 *)(r + off + 16 + 32 * (uu & 3)));
            c[s][1] = __ldg((const uint4 *)(r + off + 32 + 32 * (uu & 3)));
        }
#pragma unroll
        for (int s = 0; s < DEPTH; s++) a ^= h[s].x ^ c[s][0].x ^ c[s][0].w ^ c[s][1].y ^ c[s][1].z;
    }
    if (a == 0x12345678u) out[0] = a;
}

// One row per warp, 16 B per lane, the row read front to back 512 B per warp load.
template <int DEPTH>
__global__ void k_rowspan(const uint8_t *W, size_t rb, int rows, unsigned *out) {
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= rows) return;
    const uint4 *r = (const uint4 *)(W + (size_t)row * rb);
    const int n16 = (int)(rb / 16);
    unsigned a = 0;
    for (int i = lane; i < n16; i += 32 * DEPTH) {
        uint4 v[DEPTH];
#pragma unroll
        for (int s = 0; s < DEPTH; s++) v[s] = i + 32 * s < n16 ? __ldg(r + i + 32 * s) : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int s = 0; s < DEPTH; s++) a ^= v[s].x ^ v[s].w;
    }
    if (a == 0x12345678u) out[0] = a;
}

// k_q8v's data movement alone: block = 32 rows, 8 warps, warp w an eighth of each row's 144-byte groups; per step
// the warp copies one group of each of its 32 rows into shared memory by cp.async (16 consecutive bytes per lane),
// double-buffered, then each lane folds its row's group (9 x 16 B) from shared memory.
__global__ void __launch_bounds__(256) k_cpasync(const uint8_t *W, size_t rb, int rows, unsigned *out) {
    extern __shared__ uint4 sm[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, r0 = blockIdx.x * 32;
    const int ng = (int)(rb / 144), per = (ng + 7) / 8, g0 = min(warp * per, ng), g1 = min(g0 + per, ng);
    uint8_t *buf = (uint8_t *)sm + (size_t)warp * 2 * 32 * 144;
    auto issue = [&](int i) {
        uint8_t *dst = buf + (size_t)(i & 1) * 32 * 144;
        for (int k = 0; k < 9; k++) {
            const int p = lane + 32 * k, row = p / 9, part = p - row * 9;
            const uint8_t *src = W + (size_t)min(r0 + row, rows - 1) * rb + 144 * (size_t)(g0 + i) + 16 * part;
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"((unsigned)__cvta_generic_to_shared(dst + 16 * p)),
                         "l"(src));
        }
        asm volatile("cp.async.commit_group;\n" ::);
    };
    unsigned a = 0;
    const int nb = g1 - g0;
    if (nb > 0) issue(0);
    for (int i = 0; i < nb; i++) {
        if (i + 1 < nb) {
            issue(i + 1);
            asm volatile("cp.async.wait_group 1;\n" ::);
        } else {
            asm volatile("cp.async.wait_group 0;\n" ::);
        }
        __syncwarp();
        const uint4 *g = (const uint4 *)(buf + (size_t)(i & 1) * 32 * 144 + (size_t)lane * 144);
        for (int k = 0; k < 9; k++) a ^= g[k].x ^ g[k].w;
        __syncwarp();
    }
    if (a == 0x12345678u) out[0] = a;
}

typedef void (*Launch)(const uint8_t *, size_t, int, unsigned *);

// Best of a few timed passes, each over the next copy (copies together exceed L2), in GB/s.
static double time_pattern(const char *name, Launch launch, uint8_t *buf, int copies, size_t bytes, size_t rb,
                           int rows, unsigned *out) {
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    for (int c = 0; c < copies; c++) launch(buf + c * bytes, rb, rows, out); // warm
    CK(cudaDeviceSynchronize());
    float best = 1e30f;
    for (int rep = 0; rep < 4; rep++) {
        CK(cudaEventRecord(a));
        for (int c = 0; c < copies; c++) launch(buf + c * bytes, rb, rows, out);
        CK(cudaEventRecord(b));
        CK(cudaEventSynchronize(b));
        float ms;
        CK(cudaEventElapsedTime(&ms, a, b));
        if (ms < best) best = ms;
    }
    CK(cudaGetLastError());
    const double gbs = (double)bytes * copies / (best * 1e-3) / 1e9;
    printf("  %-14s %8.1f GB/s  (%.1f us a matrix)\n", name, gbs, best * 1e3 / copies);
    return gbs;
}

static int g_sms;

#define L_TILE(D, H)                                                                                           \
    [](const uint8_t *w, size_t rb, int rows, unsigned *o) { k_tile8<D, H><<<(rows + 15) / 16, 256>>>(w, rb, rows, o); }
#define L_QUAD(D, WPB)                                                                                         \
    [](const uint8_t *w, size_t rb, int rows, unsigned *o) {                                                   \
        k_quad8<D><<<(rows + WPB - 1) / WPB, 32 * WPB>>>(w, rb, rows, o);                                      \
    }
#define L_LANE(D)                                                                                              \
    [](const uint8_t *w, size_t rb, int rows, unsigned *o) { k_lane16<D><<<(rows + 31) / 32, 256>>>(w, rb, rows, o); }
#define L_SPAN(D, WPB)                                                                                         \
    [](const uint8_t *w, size_t rb, int rows, unsigned *o) {                                                   \
        k_rowspan<D><<<(rows + WPB - 1) / WPB, 32 * WPB>>>(w, rb, rows, o);                                    \
    }

int main(int argc, char **argv) {
    const int rows = argc > 2 ? atoi(argv[1]) : 14336;
    const size_t rb = argc > 2 ? (size_t)atoll(argv[2]) : 8064;
    if (rows <= 0 || rb < 144 || rb % 144) {
        fprintf(stderr, "usage: bench_access [ROWS ROW_BYTES]  (ROW_BYTES a multiple of 144)\n");
        return 2;
    }
    cudaDeviceProp p;
    CK(cudaGetDeviceProperties(&p, 0));
    g_sms = p.multiProcessorCount;
    const size_t bytes = (size_t)rows * rb;
    const int copies = (int)(1 + (3 * (size_t)p.l2CacheSize) / bytes);
    uint8_t *buf;
    unsigned *out;
    CK(cudaMalloc(&buf, bytes * copies));
    CK(cudaMalloc(&out, 4));
    CK(cudaMemset(buf, 0x5a, bytes * copies));
    printf("%s, %d SMs, L2 %d MB; matrix %d x %zu B = %.1f MB, %d copies\n", p.name, g_sms, p.l2CacheSize >> 20,
           rows, rb, bytes / 1e6, copies);
    time_pattern("coalesced", [](const uint8_t *w, size_t rb, int rows, unsigned *o) {
        k_coalesced<<<g_sms * 8, 256>>>((const uint4 *)w, (size_t)rows * rb / 16, o);
    }, buf, copies, bytes, rb, rows, out);
    time_pattern("tile8 d3", L_TILE(3, 1), buf, copies, bytes, rb, rows, out);
    time_pattern("tile8 d6", L_TILE(6, 1), buf, copies, bytes, rb, rows, out);
    time_pattern("tile8 d4 h/sb", L_TILE(4, 4), buf, copies, bytes, rb, rows, out);
    time_pattern("tile8 d4 no-h", L_TILE(4, 0), buf, copies, bytes, rb, rows, out);
    time_pattern("quad8 d2 w4", L_QUAD(2, 4), buf, copies, bytes, rb, rows, out);
    time_pattern("quad8 d4 w4", L_QUAD(4, 4), buf, copies, bytes, rb, rows, out);
    time_pattern("quad8 d8 w8", L_QUAD(8, 8), buf, copies, bytes, rb, rows, out);
    time_pattern("lane16 d1", L_LANE(1), buf, copies, bytes, rb, rows, out);
    time_pattern("lane16 d2", L_LANE(2), buf, copies, bytes, rb, rows, out);
    time_pattern("lane16 d4", L_LANE(4), buf, copies, bytes, rb, rows, out);
    CK(cudaFuncSetAttribute(k_cpasync, cudaFuncAttributeMaxDynamicSharedMemorySize, 8 * 2 * 32 * 144));
    time_pattern("cp.async 32x144", [](const uint8_t *w, size_t rb, int rows, unsigned *o) {
        k_cpasync<<<(rows + 31) / 32, 256, 8 * 2 * 32 * 144>>>(w, rb, rows, o);
    }, buf, copies, bytes, rb, rows, out);
    time_pattern("rowspan d1 w4", L_SPAN(1, 4), buf, copies, bytes, rb, rows, out);
    time_pattern("rowspan d2 w4", L_SPAN(2, 4), buf, copies, bytes, rb, rows, out);
    time_pattern("rowspan d4 w8", L_SPAN(4, 8), buf, copies, bytes, rb, rows, out);
    CK(cudaFree(buf));
    CK(cudaFree(out));
    return 0;
}
