// The layer math of kernels/ops.c against double-precision references, and the property the forward pass
// relies on: a result depends on the values only, not on where the rows sit.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/kernels/ops.h"
#include "check.h"

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static float frand(void) { // xorshift64 in [-1, 1)
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

static void test_rmsnorm(void) {
    enum { N = 77 };
    float x[N], w[N], y[N];
    for (int i = 0; i < N; i++) x[i] = 3 * frand(), w[i] = 1 + frand();
    aero_rmsnorm(y, x, w, N, 1e-5f);
    double ss = 0;
    for (int i = 0; i < N; i++) ss += (double)x[i] * x[i];
    double r = 1 / sqrt(ss / N + 1e-5);
    for (int i = 0; i < N; i++) CHECKF(fabs(y[i] - x[i] * r * w[i]) < 1e-5, "rmsnorm[%d]", i);
    aero_rmsnorm(x, x, w, N, 1e-5f); // in place gives the same bits
    CHECK(!memcmp(x, y, sizeof y));
}

static void test_rope(void) {
    enum { HD = 64, RD = 48 };
    float inv[RD / 2];
    for (int i = 0; i < RD / 2; i++) inv[i] = (float)pow(10000.0, -2.0 * i / RD);
    for (int neox = 0; neox < 2; neox++) {
        float v[HD], o[HD];
        for (int i = 0; i < HD; i++) v[i] = o[i] = frand();
        int pos = 123;
        aero_rope(v, pos, RD, inv, neox);
        for (int i = 0; i < RD / 2; i++) {
            int a = neox ? i : 2 * i, b = neox ? i + RD / 2 : 2 * i + 1;
            double th = (double)pos * inv[i], c = cos(th), s = sin(th);
            CHECKF(fabs(v[a] - (o[a] * c - o[b] * s)) < 1e-4 && fabs(v[b] - (o[a] * s + o[b] * c)) < 1e-4,
                   "rope neox=%d pair %d", neox, i);
        }
        CHECKF(!memcmp(v + RD, o + RD, sizeof(float) * (HD - RD)), "rope leaves the dims past rope_dim");
        float n0 = 0, n1 = 0;
        for (int i = 0; i < HD; i++) n0 += o[i] * o[i], n1 += v[i] * v[i];
        CHECK(fabsf(n0 - n1) < 1e-4f * n0);
    }
}

static void test_swiglu(void) {
    float g[40], u[40], o[40];
    for (int i = 0; i < 40; i++) g[i] = o[i] = 6 * frand(), u[i] = frand();
    aero_swiglu(g, u, 40);
    for (int i = 0; i < 40; i++) CHECKF(fabs(g[i] - o[i] / (1 + exp(-(double)o[i])) * u[i]) < 1e-5, "swiglu[%d]", i);
}

static void test_dot_attention(void) {
    enum { HD = 40, N = 37 };
    float q[HD], k[N * HD], v[N * HD], out[HD], out2[HD], scores[N];
    for (int i = 0; i < HD; i++) q[i] = frand();
    for (int i = 0; i < N * HD; i++) k[i] = frand(), v[i] = frand();
    double exact = 0;
    for (int i = 0; i < HD; i++) exact += (double)q[i] * k[i];
    CHECK(fabs(aero_dot_fixed(q, k, HD) - exact) < 1e-5);
    // rows 0, 2, 4, ... visible
    int rows[N], n = 0;
    for (int t = 0; t < N; t += 2) rows[n++] = t;
    float scale = 1 / sqrtf(HD);
    aero_attention(out, q, k, v, rows, n, HD, scale, scores);
    double sc[N], mx = -1e30, sum = 0;
    for (int j = 0; j < n; j++) {
        double s = 0;
        for (int d = 0; d < HD; d++) s += (double)q[d] * k[rows[j] * HD + d];
        sc[j] = s * scale;
        if (sc[j] > mx) mx = sc[j];
    }
    for (int j = 0; j < n; j++) sum += sc[j] = exp(sc[j] - mx);
    for (int d = 0; d < HD; d++) {
        double o = 0;
        for (int j = 0; j < n; j++) o += sc[j] / sum * v[rows[j] * HD + d];
        CHECKF(fabs(out[d] - o) < 1e-5, "attention[%d] %g vs %g", d, out[d], o);
    }
    // the same rows copied elsewhere (compacted, unaligned start) give the same bits
    float *k2 = malloc(sizeof(float) * (n * HD + 1)), *v2 = malloc(sizeof(float) * (n * HD + 1));
    int rows2[N];
    for (int j = 0; j < n; j++) {
        memcpy(k2 + 1 + j * HD, k + rows[j] * HD, sizeof(float) * HD);
        memcpy(v2 + 1 + j * HD, v + rows[j] * HD, sizeof(float) * HD);
        rows2[j] = j;
    }
    aero_attention(out2, q, k2 + 1, v2 + 1, rows2, n, HD, scale, scores);
    CHECK(!memcmp(out, out2, sizeof out));
    free(k2), free(v2);
}

// The AVX2 attention loops are the scalar ones lane for lane: bitwise equal for every length and alignment.
static void test_fixed_isa(void) {
    float a[260], b[260], o1[260], o2[260];
    unsigned x = 12345;
    for (int i = 0; i < 260; i++) {
        x = x * 1103515245u + 12345u;
        a[i] = (float)((int)(x >> 8) % 20001 - 10000) / 977.0f;
        x = x * 1103515245u + 12345u;
        b[i] = (float)((int)(x >> 8) % 20001 - 10000) / 1231.0f;
    }
    int bad = 0;
    for (int n = 0; n <= 200; n++)
        for (int off = 0; off < 3; off++) {
            float s0 = aero_dot_fixed_isa(a + off, b + off, n, 0), s1 = aero_dot_fixed_isa(a + off, b + off, n, 1);
            bad += memcmp(&s0, &s1, sizeof s0) != 0;
            memcpy(o1, b, sizeof o1);
            memcpy(o2, b, sizeof o2);
            aero_axpy_fixed_isa(o1 + off, a[n], a + off, n, 0);
            aero_axpy_fixed_isa(o2 + off, a[n], a + off, n, 1);
            bad += memcmp(o1, o2, sizeof o1) != 0;
        }
    CHECKF(bad == 0, "%d scalar/AVX2 mismatches", bad);
}

// aero_attention (four keys' scores at once, V rows summed in registers where the CPU has AVX2) against the
// scalar loops one key at a time: bitwise equal for head sizes on and off its fast paths and any row count.
static void test_attention_batched(void) {
    static const int hds[] = {64, 80, 128, 40};
    enum { N = 70, HMAX = 128 };
    float *k = malloc(sizeof(float) * N * HMAX), *v = malloc(sizeof(float) * N * HMAX);
    float q[HMAX], out[HMAX], ref[HMAX], scores[N], sref[N];
    int rows[N], bad = 0;
    for (size_t h = 0; h < sizeof hds / sizeof hds[0]; h++) {
        int hd = hds[h];
        for (int i = 0; i < hd; i++) q[i] = 3 * frand();
        for (int i = 0; i < N * hd; i++) k[i] = frand(), v[i] = frand();
        for (int n = 1; n <= N; n += (n < 10 ? 1 : 7)) {
            for (int j = 0; j < n; j++) rows[j] = (j * 37) % N; // scattered rows
            float scale = 1 / sqrtf((float)hd);
            aero_attention(out, q, k, v, rows, n, hd, scale, scores);
            float maxs = -INFINITY, sum = 0;
            for (int t = 0; t < n; t++) {
                sref[t] = aero_dot_fixed_isa(q, k + rows[t] * hd, hd, 0) * scale;
                if (sref[t] > maxs) maxs = sref[t];
            }
            for (int t = 0; t < n; t++) sum += sref[t] = expf(sref[t] - maxs);
            memset(ref, 0, sizeof ref);
            for (int t = 0; t < n; t++) aero_axpy_fixed_isa(ref, sref[t] / sum, v + rows[t] * hd, hd, 0);
            bad += memcmp(out, ref, sizeof(float) * hd) != 0;
        }
    }
    CHECKF(bad == 0, "%d attention results not bitwise the scalar loops", bad);
    free(k), free(v);
}

int main(void) {
    test_fixed_isa();
    test_attention_batched();
    test_rmsnorm();
    test_rope();
    test_swiglu();
    test_dot_attention();
    return check_done("test_kernels_ops");
}
