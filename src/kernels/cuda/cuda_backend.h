// The CUDA backend as the forward pass sees it: one device with a compute stream and a copy stream, a VRAM
// arena under a budget, page-locked host buffers, events that order copy -> compute -> slot reuse, and the
// kernels of one transformer layer over a batch. Plain C; every pointer named `dev` or passed to an op lives
// in VRAM (from aero_cuda_alloc). Ops are queued on the compute stream and return at once; argument errors
// come back as a status immediately, errors of the device itself at the next aero_cuda_sync.
//
// Batch invariance (DESIGN.md invariant 3): every kernel computes each output element with a reduction whose
// order depends only on the shapes of the weights and the element's own inputs (for attention: its own
// visible keys in slot order), never on how many tokens share the batch or where in the batch it sits.
// The batched matmul is the matvec kernel with more rows and tokens held in registers, so a token's outputs
// are bitwise identical alone or in any batch. GPU against CPU is a tolerance (see docs/perf/cuda.md).
#ifndef AERO_KERNELS_CUDA_BACKEND_H
#define AERO_KERNELS_CUDA_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "../../core/dtype.h"
#include "../../core/status.h"

// ---- device ----------------------------------------------------------------------------------------------

typedef struct {
    int device;
    char name[256];
    int cc_major, cc_minor; // compute capability
    int n_sm;
    size_t total_vram, free_vram;
    double mem_bus_gbs; // theoretical memory bandwidth from clock and bus width (GB/s); 0 when unknown
} aero_cuda_info;

// Number of usable CUDA devices; 0 when there is no driver, no device, or the runtime fails.
int aero_cuda_device_count(void);
// Name, compute capability and VRAM of a device.
aero_status aero_cuda_device_info(int device, aero_cuda_info *info, aero_error *err);

typedef struct aero_cuda aero_cuda; // one device, its two streams and its VRAM arena

// Opens a device with a VRAM budget: the arena is one cudaMalloc of `vram_budget` bytes (0: the free VRAM
// less a margin of 5% or 512 MiB, whichever is larger), never managed memory. Fails with AERO_ERR_NOMEM
// naming the sizes when the device cannot give the budget, AERO_ERR_UNSUPPORTED when there is no device.
aero_status aero_cuda_init(aero_cuda **out, int device, size_t vram_budget, aero_error *err);
void aero_cuda_free(aero_cuda *cu);
const aero_cuda_info *aero_cuda_get_info(const aero_cuda *cu);

// ---- VRAM arena ------------------------------------------------------------------------------------------

// Takes `bytes` (rounded up to 256) from the arena; AERO_ERR_NOMEM with budget, used and asked sizes when it
// does not fit. Memory is released only by aero_cuda_arena_reset to an earlier mark (stack discipline).
aero_status aero_cuda_alloc(aero_cuda *cu, size_t bytes, void **dev, aero_error *err);
size_t aero_cuda_arena_mark(const aero_cuda *cu);       // bytes in use now
void aero_cuda_arena_reset(aero_cuda *cu, size_t mark); // frees everything taken after the mark
size_t aero_cuda_arena_budget(const aero_cuda *cu);

// ---- page-locked host memory -----------------------------------------------------------------------------

// Pinned host buffers for the slots the IO threads fill (only pinned memory copies asynchronously at full
// PCIe speed). Free with aero_cuda_host_free.
aero_status aero_cuda_host_alloc(size_t bytes, void **host, aero_error *err);
void aero_cuda_host_free(void *host);
// Page-locks memory someone else allocated (the stream's resident units and ring), so copies from it run
// asynchronously at full PCIe speed without a staging copy. Unregister before that memory is freed.
aero_status aero_cuda_host_register(void *host, size_t bytes, aero_error *err);
void aero_cuda_host_unregister(void *host);

// ---- streams, copies, events -----------------------------------------------------------------------------

typedef enum { AERO_CUDA_STREAM_COMPUTE = 0, AERO_CUDA_STREAM_COPY = 1 } aero_cuda_stream;
typedef struct aero_cuda_event aero_cuda_event;

// Host -> device copy queued on a stream (COPY for weight slots, COMPUTE for activations); `host` should be
// pinned for the copy to be asynchronous. Returns at once.
aero_status aero_cuda_copy_h2d_async(aero_cuda *cu, aero_cuda_stream s, void *dev, const void *host, size_t bytes,
                                     aero_error *err);
// Device -> host copy on the compute stream, then waits for it (logits for sampling).
aero_status aero_cuda_copy_d2h(aero_cuda *cu, void *host, const void *dev, size_t bytes, aero_error *err);
// Device -> device copy on the compute stream.
aero_status aero_cuda_copy_d2d(aero_cuda *cu, void *dst, const void *src, size_t bytes, aero_error *err);
// Fills device memory with zero bytes on the compute stream.
aero_status aero_cuda_memset0(aero_cuda *cu, void *dev, size_t bytes, aero_error *err);

aero_status aero_cuda_event_new(aero_cuda *cu, aero_cuda_event **ev, aero_error *err);
void aero_cuda_event_free(aero_cuda_event *ev);
// Marks the point reached by stream s (e.g. COPY after a slot's copy, COMPUTE after a slot's last use).
aero_status aero_cuda_record(aero_cuda *cu, aero_cuda_stream s, aero_cuda_event *ev, aero_error *err);
// Makes stream s wait (on the device, the host does not block) until the event's point is reached.
aero_status aero_cuda_wait(aero_cuda *cu, aero_cuda_stream s, aero_cuda_event *ev, aero_error *err);
// Blocks the host until the event's point is reached (before an IO thread refills a pinned slot).
aero_status aero_cuda_event_sync(aero_cuda_event *ev, aero_error *err);
// Milliseconds between two recorded events (for benchmarks).
float aero_cuda_event_ms(aero_cuda_event *a, aero_cuda_event *b);
// Waits for both streams; reports any error a queued kernel or copy raised.
aero_status aero_cuda_sync(aero_cuda *cu, aero_error *err);

// ---- weights -----------------------------------------------------------------------------------------------

// A weight matrix in VRAM as stored in the GGUF file: rows of `cols` elements, row r at data + r * row_bytes.
typedef struct {
    const void *data;
    aero_dtype type;
    int64_t cols;
    int64_t rows;
    size_t row_bytes;
} aero_cuda_wmat;

// Whether the GPU has matmul and get_rows kernels for a type (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K).
bool aero_cuda_type_supported(aero_dtype t);
// Checks a weight matrix (type, cols a multiple of 32 for quantized types, row stride, alignment); call once at
// load. Dense types of any width (stories260K's 172) take a plain per-row kernel, equally batch invariant. A type
// without a kernel gives AERO_ERR_UNSUPPORTED naming it, so the caller can keep that tensor on the CPU.
aero_status aero_cuda_wmat_check(const aero_cuda_wmat *w, aero_error *err);

// ---- ops (compute stream; every pointer is device memory) ------------------------------------------------

// Activations laid out for the matmul kernels. The quantized-weight kernels read each thread's 32-element
// chunk of x from a permuted copy (so a warp's loads are contiguous); preparing it once lets several matmuls
// share one input (q/k/v, gate/up), as the CPU quantizes an activation row once. Dense weights read `x`.
typedef struct {
    const float *x;  // natural layout [n][cols]
    const float *xp; // permuted copy in the backend's scratch (valid until the next prepare), or NULL
    int n, cols;
    const void *xh;   // f16 copy for the tensor-core kernels (scaled per token), or NULL
    const float *xs;  // per token: the power of two that undoes the f16 copy's scaling
    const void *xq;   // int8 codes [n][cols] for the int8 kernels of the quantized types, or NULL
    const float *xd;  // per token and 32-element block: {d, d * sum of its codes} ([n][cols / 32] pairs)
} aero_cuda_act;

// Prepares n rows of cols activations (cols a multiple of 32, at most the scratch: n * cols <= 16 Mi floats;
// the scratch is 64 MiB of the VRAM budget, taken at init): the permuted exact copy for the f32 kernels, or,
// for the tensor-core kernels (the default, see aero_cuda_matmul_f16), an f16 copy scaled per token by a power
// of two so that it cannot overflow, and (unless AERO_CUDA_MM=f16) the int8 form of aero_cuda_matmul_int8.
aero_status aero_cuda_act_prepare(aero_cuda *cu, const float *x, int n, int cols, aero_cuda_act *out, aero_error *err);
// y[i * rows + r] = dot(row r of W, activation row i), weights dequantized in registers: on the tensor cores
// (f16 weights and activations, f32 accumulation) for the types of aero_cuda_matmul_f16, else f32 arithmetic.
// n = 1 is the decode matvec; any n (prefill, verification) gives each token the bits it gets alone.
aero_status aero_cuda_matmul_act(aero_cuda *cu, const aero_cuda_wmat *w, const aero_cuda_act *a, float *y,
                                 aero_error *err);
// y[i] = W[i] x for count matrices sharing one input (q/k/v, gate/up), each output bitwise what
// aero_cuda_matmul_act gives it; one launch covering all of them when they share an int8 type and width and a
// is at most 8 tokens (so the small ones, an 8B's 1024-row K and V, share the GPU with the rest), else one each.
aero_status aero_cuda_matmul_many(aero_cuda *cu, const aero_cuda_wmat *const w[], float *const y[], int count,
                                  const aero_cuda_act *a, aero_error *err);
// Whether matmuls of this weight type run on the tensor cores with f16 activations (F16 and the quantized
// types, unless AERO_CUDA_MM=v1 selects the f32 kernels for all): their tolerance against the CPU is that of
// f16 rounding (~1e-3 of sum |w x|), not f32's.
bool aero_cuda_matmul_f16(aero_dtype t);
// Whether matmuls of this weight type run on the int8 tensor-core kernels (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K by
// default; AERO_CUDA_MM=f16 or v1 turn them off): activations quantized per 32-element block to int8 (as the
// CPU's Q8 activations), tolerance against f32 activations ~4e-3 of sum |w x| (1/127 of a block's largest
// magnitude per element at worst; docs/perf/cuda.md).
bool aero_cuda_matmul_int8(aero_dtype t);
// Tells the backend that a matrix of type t will read the activations it prepares (the forward pass and the draft
// head call it for each of their matrices at load): one of an f16-path type (aero_cuda_matmul_f16) makes every
// later prepare and fused op write the f16 copy too. Without it, the int8 default writes only the int8 form
// (one pass, no row-wide maximum: the element-wise ops then run over many blocks), and an f16-path matmul given
// such activations prepares its f16 copy itself (same bits, one launch more).
void aero_cuda_act_f16_note(aero_cuda *cu, aero_dtype t);
// The same from natural activations x[n][cols] (prepares them, in token groups when they exceed the scratch).
aero_status aero_cuda_matmul(aero_cuda *cu, const aero_cuda_wmat *w, const float *x, int n, float *y, aero_error *err);
// The same with an explicit kernel shape (rows per block 1, 2, 4 or 8 with 1 token per block; 1, 2 or 4 with 8
// tokens): for tests, which check that every shape gives the same bits, and benchmarks. For the tensor-core
// types the shape picks 1 (R = 1) or 2 (R >= 2) tiles of 16 rows and T / 8 tiles of 8 tokens (1, 2, 4, 8).
aero_status aero_cuda_matmul_shape(aero_cuda *cu, const aero_cuda_wmat *w, const aero_cuda_act *a, float *y,
                                   int rows_per_block, int tokens_per_block, aero_error *err);
// out[i * cols ...] = row ids[i] of W dequantized to f32 (embedding lookup); ids in device memory.
// Bitwise equal to the CPU's aero_dequantize_row. An id out of range gives a row of zeros.
aero_status aero_cuda_get_rows(aero_cuda *cu, const aero_cuda_wmat *w, const int32_t *ids, int n, float *out,
                               aero_error *err);
// out = x / rms(x) * w over each of n_rows rows of dim elements (in place allowed); also per-head q/k norms
// with n_rows = tokens * heads, dim = head_dim.
aero_status aero_cuda_rmsnorm(aero_cuda *cu, float *out, const float *x, const float *w, int n_rows, int dim, float eps,
                              aero_error *err);
// Rotates the first rope_dim dims of each head of x[n][n_heads * head_dim] in place by pos[i] * inv_freq[j]:
// adjacent pairs (neox false, llama) or halves (neox true, NeoX/qwen). inv_freq (rope_dim / 2 floats) is the
// model's table with linear or Llama 3 scaling folded in, the same floats the CPU path uses.
aero_status aero_cuda_rope(aero_cuda *cu, float *x, int n, int n_heads, int head_dim, int rope_dim, const int32_t *pos,
                           const float *inv_freq, bool neox, aero_error *err);
// out[i] = silu(gate[i]) * up[i] = gate / (1 + exp(-gate)) * up (out may alias gate).
aero_status aero_cuda_swiglu(aero_cuda *cu, float *out, const float *gate, const float *up, size_t count,
                             aero_error *err);
// y[i] += x[i] (the residual adds).
aero_status aero_cuda_add(aero_cuda *cu, float *y, const float *x, size_t count, aero_error *err);
// y[i * dim + j] += b[j] for i in [0, n) (qwen2's q/k/v biases).
aero_status aero_cuda_add_bias(aero_cuda *cu, float *y, const float *b, int n, int dim, aero_error *err);

// ---- batch and attention ---------------------------------------------------------------------------------

// The batch description the attention needs, uploaded once per forward pass (not per layer).
typedef struct aero_cuda_batch aero_cuda_batch;

// Device buffers for batches of up to max_tokens tokens over n_seq sequences of n_ctx slots, and the
// attention scratch for n_head heads of head_dim (<= 256).
aero_status aero_cuda_batch_new(aero_cuda *cu, int max_tokens, int n_seq, int n_ctx, int n_head, int head_dim,
                                aero_cuda_batch **out, aero_error *err);
void aero_cuda_batch_free(aero_cuda_batch *b);
// Uploads a batch: per token its position, sequence (NULL: all 0) and KV slot; mask NULL (causal within a
// sequence) or n x n bytes, mask[i * n + j] != 0 when token i may see token j (j <= i, tree verification);
// base[s] = committed cache length of sequence s before this batch. Token i of sequence s sees the slots
// [0, base[s]) and then the batch tokens j <= i of its sequence that the mask allows, in that order.
// The host arrays may be reused as soon as this returns.
aero_status aero_cuda_batch_set(aero_cuda_batch *b, int n, const int32_t *pos, const int32_t *seq, const int32_t *slot,
                                const uint8_t *mask, const int32_t *base, aero_error *err);
// The device copy of the positions (for aero_cuda_rope).
const int32_t *aero_cuda_batch_pos(const aero_cuda_batch *b);

// Writes the batch's K and V rows (f32, [n][kv_dim]) into one layer's F16 cache ([n_seq][n_ctx][kv_dim]) at
// each token's slot, rounding to nearest even like the CPU's aero_f32_to_f16.
aero_status aero_cuda_kv_store(aero_cuda_batch *b, uint16_t *k_cache, uint16_t *v_cache, const float *k, const float *v,
                               int kv_dim, aero_error *err);
// out[i][h] = softmax(q[i][h] . K / sqrt(head_dim)) V over token i's visible keys (see batch_set), grouped-query
// heads h -> h / (n_head / n_head_kv). The keys are split into fixed segments of 256 visible keys (so long
// contexts use the whole GPU) that are merged in order: the split depends only on the token's own key count.
aero_status aero_cuda_attention(aero_cuda_batch *b, const float *q, const uint16_t *k_cache, const uint16_t *v_cache,
                                int n_head, int n_head_kv, int head_dim, float *out, aero_error *err);

// ---- fused ops (one launch each; bitwise equal to the unfused sequences, checked by test_cuda) --------------

// [x += add;] out = rmsnorm(x) * w as aero_cuda_rmsnorm (add NULL: no residual add; out may alias add), and when
// act is not NULL, *act = aero_cuda_act_prepare(out) written by the same launch: the residual add, the norm and
// the matmul input layout of a layer in one kernel. dim not a multiple of 32: act holds the natural rows only.
aero_status aero_cuda_rmsnorm_act(aero_cuda *cu, float *out, float *x, const float *add, const float *w, int n_rows,
                                  int dim, float eps, aero_cuda_act *act, aero_error *err);
// out = swiglu(gate, up) over n rows of cols as aero_cuda_swiglu, and *act = aero_cuda_act_prepare(out).
aero_status aero_cuda_swiglu_act(aero_cuda *cu, float *out, const float *gate, const float *up, int n, int cols,
                                 aero_cuda_act *act, aero_error *err);

// The attention inputs of a layer after the q/k/v matmuls, for aero_cuda_rope_kv_store.
typedef struct {
    float *q, *k, *v;          // [n][n_head * head_dim], [n][n_head_kv * head_dim] twice
    const float *bq, *bk, *bv; // biases added first (qwen2), or all NULL
    int n_head, n_head_kv, head_dim, rope_dim;
    const float *inv_freq; // as aero_cuda_rope
    bool neox;
    uint16_t *k_cache, *v_cache; // one layer's F16 cache
} aero_cuda_qkv;
// The sequence add_bias(q, k, v), rope(q), rope(k), kv_store(k, v) in one launch (same bits in q, k, v and the
// caches). head_dim must be even.
aero_status aero_cuda_rope_kv_store(aero_cuda_batch *b, const aero_cuda_qkv *a, aero_error *err);

// ---- CUDA graphs (a one-token pass of a VRAM-resident model replayed without per-op launches) -------------

typedef struct aero_cuda_graph aero_cuda_graph;
// Starts recording the compute stream's ops instead of running them (nothing may synchronize until the end).
aero_status aero_cuda_capture_begin(aero_cuda *cu, aero_error *err);
// Ends the recording and makes it launchable; on failure *g is NULL and nothing recorded ran.
aero_status aero_cuda_capture_end(aero_cuda *cu, aero_cuda_graph **g, aero_error *err);
// Queues the recorded ops on the compute stream, with the arguments they were recorded with.
aero_status aero_cuda_graph_launch(aero_cuda *cu, aero_cuda_graph *g, aero_error *err);
void aero_cuda_graph_free(aero_cuda_graph *g);
// A hash of every host-side value of the batch that an op may take by value at launch (n, attention segments,
// mask, and whatever a kernel adds later: the whole host struct), so a graph is recaptured when it changes.
uint64_t aero_cuda_batch_shape_key(const aero_cuda_batch *b);

// ---- on-device drafting (cuda_pick.cu: a draft head's chain drafted without a host round trip per token) -----

// Per row i of n rows of n_vocab logits: ids[i] = the first index of the row's largest value and prob[i] =
// 1 / sum_j expf(l_j - max) in double (the top token's softmax probability at temperature 1, as the host's draft
// ranking computes it), or ids[i] = -1 and prob[i] = 0 when the row holds a NaN or +inf or only -inf (the host's
// ranking finds no candidate there). Deterministic: a fixed block size and reduction order per row. ids and prob
// in device memory.
aero_status aero_cuda_argmax(aero_cuda *cu, const float *logits, int n, int n_vocab, int32_t *ids, float *prob,
                             aero_error *err);

// Up to max_k one-token causal batches of one sequence, set with one upload: batch j is a token at position pos[j]
// and KV slot slot[j] that sees the slots [0, base[j]) and itself. Each is an aero_cuda_batch for rope_kv_store and
// attention (not for aero_cuda_batch_set or _free); they share one attention scratch, so they run in order.
typedef struct aero_cuda_chain aero_cuda_chain;
aero_status aero_cuda_chain_new(aero_cuda *cu, int max_k, int n_ctx, int n_head, int head_dim, aero_cuda_chain **out,
                                aero_error *err);
void aero_cuda_chain_free(aero_cuda_chain *c);
// Checks and uploads k batches (one copy on the compute stream); the host arrays may be reused at once.
aero_status aero_cuda_chain_set(aero_cuda_chain *c, int k, const int32_t *pos, const int32_t *slot, const int32_t *base,
                                aero_error *err);
aero_cuda_batch *aero_cuda_chain_batch(aero_cuda_chain *c, int j);

#ifdef __cplusplus
}
#endif

#endif
