// The math of a transformer layer other than the matmuls: RMS norm, rotary position embedding, SwiGLU and the
// attention of one query over listed key/value rows. Each computes in a fixed order, so a token's result never
// depends on where its vectors sit or what else is in its batch (DESIGN.md invariant 3).
#ifndef AERO_KERNELS_OPS_H
#define AERO_KERNELS_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/dtype.h"

// out = x / rms(x) * w (out may be x).
void aero_rmsnorm(float *out, const float *x, const float *w, int n, float eps);

// Rotates one head's vector by its position: adjacent pairs (llama) or the two halves (neox: NeoX/qwen), over
// the first rope_dim elements, with inv_freq[i] the angle per position of pair i.
void aero_rope(float *v, int pos, int rope_dim, const float *inv_freq, bool neox);

// gate[i] = silu(gate[i]) * up[i].
void aero_swiglu(float *gate, const float *up, int64_t n);

// Dot product in a fixed order (16 running lanes, then a fixed fold), which the compiler vectorises.
float aero_dot_fixed(const float *a, const float *b, int n);
// out[d] += p * v[d], one multiply and one add rounding each (never fused), the same bits on every ISA.
void aero_axpy_fixed(float *out, float p, const float *v, int n);
// The scalar (avx2 0) and AVX2 (1, where the CPU has it) versions of the two, for their bitwise test.
float aero_dot_fixed_isa(const float *a, const float *b, int n, int avx2);
void aero_axpy_fixed_isa(float *out, float p, const float *v, int n, int avx2);

// out = softmax(q . K[rows] * scale) . V[rows] for one query: K and V are f32 rows of hd elements, rows[0..n)
// the visible ones in the order they are reduced; scores is scratch of n floats.
void aero_attention(float *out, const float *q, const float *k, const float *v, const int *rows, int n, int hd,
                    float scale, float *scores);

// The rows of a quantized cache that one query reads from F16 copies instead (--kv-recent): rows[first..n), the
// recent positions. Row rows[t] is at slot rows[t] % ring of k / v (stride elements apart); k or v NULL: that side
// has no copy and is read as usual. tmp: scratch of hd floats.
typedef struct {
    int first;
    const uint16_t *k, *v;
    size_t stride;
    int ring;
    float *tmp;
} aero_attn_recent;

// The same with K left in a quantized cache type kt (a type with a dot kernel, hd a multiple of its block): row
// rows[t] of K is at k + rows[t] * k_stride. The query is quantized into qa (aero_attention_kq_scratch bytes) to
// the activation type of kt's dot (Q8_0 for the 32-blocks) and dotted with each stored row by that kernel.
// kt F32 takes f32 rows (k_stride bytes apart) with aero_attention's dot, for a float K beside a recent V copy.
// recent: NULL, or the rows read from F16 copies (their K scores with the f32 dot of aero_attention).
void aero_attention_kq(float *out, const float *q, aero_dtype kt, const void *k, size_t k_stride, const float *v,
                       const int *rows, int n, int hd, float scale, float *scores, void *qa,
                       const aero_attn_recent *recent);
// Bytes of aero_attention_kq's query scratch for K type kt and head size hd.
size_t aero_attention_kq_scratch(aero_dtype kt, int hd);

#endif
