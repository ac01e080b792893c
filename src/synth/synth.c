// Synthetic models: random weights of a real architecture and shape, produced row chunk by row chunk while the
// GGUF writer streams them out (the tokenizer section comes from tokenizer.c).
// Quantized matrices are drawn block by block from a pool of blocks made by the real quantizer from Gaussian
// floats of the tensor's scale: the values have the distribution of a quantized random matrix, every block is
// valid, and writing costs a memcpy per block instead of a quantization (an 8B-shape Q4_K in seconds, not minutes).
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../core/threadpool.h"
#include "../core/util.h"
#include "../format/gguf.h"
#include "../kernels/kernels.h"
#include "synth.h"
#include "synth_internal.h"

// ---------------------------------------------------------------------------------------------------------
// Presets: the dimensions of the real models.

typedef struct {
    const char *name, *arch;
    int n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab, n_ctx, head_dim;
    float rope_base, norm_eps, llama3_factor;
    bool tied;
    int n_expert, n_expert_used, n_ff_exp, n_ff_shexp; // 0: dense
    bool per_expert;
    int n_swa;          // gemma: sliding window
    float rope_linear; // gemma3 4B+: linear rope scaling of the global layers
    int longrope;      // phi3: LongRoPE's original context (0: none)
    float granite[4];  // granite: embedding, attention, residual, logit scales
} preset;

static const preset presets[] = {
    // Llama 3.2 1B, Llama 3.1 8B and 70B (rope scaled the Llama 3.1 way), Qwen2 0.5B/7B, Qwen3 0.6B/8B.
    {"llama-1b", "llama", 2048, 16, 32, 8, 8192, 128256, 131072, 64, 500000.f, 1e-5f, 32.f, true},
    {"llama-8b", "llama", 4096, 32, 32, 8, 14336, 128256, 131072, 128, 500000.f, 1e-5f, 8.f, false},
    {"llama-70b", "llama", 8192, 80, 64, 8, 28672, 128256, 131072, 128, 500000.f, 1e-5f, 8.f, false},
    {"qwen2-0.5b", "qwen2", 896, 24, 14, 2, 4864, 151936, 32768, 64, 1000000.f, 1e-6f, 0.f, true},
    {"qwen2-7b", "qwen2", 3584, 28, 28, 4, 18944, 152064, 32768, 128, 1000000.f, 1e-6f, 0.f, false},
    {"qwen3-0.6b", "qwen3", 1024, 28, 16, 8, 3072, 151936, 40960, 128, 1000000.f, 1e-6f, 0.f, true},
    {"qwen3-8b", "qwen3", 4096, 36, 32, 8, 12288, 151936, 40960, 128, 1000000.f, 1e-6f, 0.f, false},
    // Small enough for tests: every matrix row a multiple of 256, so every type applies.
    {"tiny", "llama", 256, 2, 4, 2, 512, 512, 512, 64, 10000.f, 1e-5f, 0.f, false},
    // Mixtures of experts (config.json: Qwen/Qwen3-30B-A3B: 48 layers, hidden 2048, 32 heads, 4 KV heads,
    // head_dim 128, intermediate 6144, 128 experts, 8 per token, moe_intermediate 768, vocab 151936, ctx 40960,
    // rope_theta 1e6; mistralai/Mixtral-8x7B-v0.1: 32 layers, hidden 4096, 32 heads, 8 KV heads, intermediate
    // 14336, 8 experts, 2 per token, vocab 32000, ctx 32768, rope_theta 1e6, rms eps 1e-5; docs/moe.md).
    {"qwen3-30b-a3b", "qwen3moe", 2048, 48, 32, 4, 6144, 151936, 40960, 128, 1000000.f, 1e-6f, 0.f, false, 128, 8, 768,
     0, false},
    {"mixtral-8x7b", "llama", 4096, 32, 32, 8, 14336, 32000, 32768, 128, 1000000.f, 1e-5f, 0.f, false, 8, 2, 14336, 0,
     false},
    // Tiny ones for tests: rows multiples of 256 so every type applies.
    {"qwen3moe-tiny", "qwen3moe", 256, 2, 4, 2, 512, 512, 512, 64, 1000000.f, 1e-6f, 0.f, false, 8, 2, 256, 0, false},
    {"qwen2moe-tiny", "qwen2moe", 256, 2, 4, 2, 512, 512, 512, 64, 1000000.f, 1e-6f, 0.f, false, 8, 2, 256, 512, false},
    {"mixtral-tiny", "llama", 256, 2, 4, 2, 512, 512, 512, 64, 1000000.f, 1e-5f, 0.f, false, 4, 2, 512, 0, false},
    {"mixtral-tiny-split", "llama", 256, 2, 4, 2, 512, 512, 512, 64, 1000000.f, 1e-5f, 0.f, false, 4, 2, 512, 0, true},
    // Gemma 2 2B/9B (config.json: hidden 2304/3584, 26/42 layers, 8/16 heads, 4/8 KV heads, head_dim 256,
    // intermediate 9216/14336, vocab 256000, ctx 8192, sliding_window 4096, rms eps 1e-6), Gemma 3 1B/4B/12B
    // (hidden 1152/2560/3840, 26/34/48 layers, 4/8/16 heads, 1/4/8 KV heads, head_dim 256, intermediate
    // 6912/10240/15360, vocab 262144/262208, ctx 32768/131072, sliding_window 512/1024, rope_theta 1e6 with linear
    // factor 8 from 4B on); embeddings tied.
    {"gemma2-2b", "gemma2", 2304, 26, 8, 4, 9216, 256000, 8192, 256, 10000.f, 1e-6f, 0.f, true, 0, 0, 0, 0, false, 4096},
    {"gemma2-9b", "gemma2", 3584, 42, 16, 8, 14336, 256000, 8192, 256, 10000.f, 1e-6f, 0.f, true, 0, 0, 0, 0, false,
     4096},
    {"gemma3-1b", "gemma3", 1152, 26, 4, 1, 6912, 262144, 32768, 256, 1000000.f, 1e-6f, 0.f, true, 0, 0, 0, 0, false,
     512},
    {"gemma3-4b", "gemma3", 2560, 34, 8, 4, 10240, 262208, 131072, 256, 1000000.f, 1e-6f, 0.f, true, 0, 0, 0, 0, false,
     1024, 8.f},
    {"gemma3-12b", "gemma3", 3840, 48, 16, 8, 15360, 262208, 131072, 256, 1000000.f, 1e-6f, 0.f, true, 0, 0, 0, 0,
     false, 1024, 8.f},
    // Tiny ones for tests: a window of 8 positions, so that a short prompt already slides; gemma3 with 6 layers
    // (five local, one global) and linear scaling on the global one.
    {"gemma2-tiny", "gemma2", 256, 2, 4, 2, 512, 512, 512, 64, 10000.f, 1e-6f, 0.f, true, 0, 0, 0, 0, false, 8},
    {"gemma3-tiny", "gemma3", 256, 6, 4, 2, 512, 512, 512, 64, 1000000.f, 1e-6f, 0.f, true, 0, 0, 0, 0, false, 8, 4.f},
    // Phi-3 mini 4k and Phi-3.5 mini (config.json: hidden 3072, 32 layers, 32 heads and KV heads, intermediate 8192,
    // vocab 32064, ctx 4096 / 131072 with LongRoPE over an original 4096, rms eps 1e-5); untied.
    {"phi3-mini", "phi3", 3072, 32, 32, 32, 8192, 32064, 4096, 96, 10000.f, 1e-5f, 0.f, false},
    {"phi3.5-mini", "phi3", 3072, 32, 32, 32, 8192, 32064, 131072, 96, 10000.f, 1e-5f, 0.f, false, 0, 0, 0, 0, false, 0,
     0.f, 4096},
    {"phi3-tiny", "phi3", 256, 2, 4, 4, 512, 512, 512, 64, 10000.f, 1e-5f, 0.f, false},
    // LongRoPE over an original context of 32, so any context above it rotates with the long factors
    {"phi3-tiny-longrope", "phi3", 256, 2, 4, 4, 512, 512, 4096, 64, 10000.f, 1e-5f, 0.f, false, 0, 0, 0, 0, false, 0,
     0.f, 32},
    // Granite 3.x 2B / 8B (config.json: hidden 2048/4096, 40 layers, 32 heads, 8 KV heads, intermediate 8192/12800,
    // vocab 49155, ctx 4096, embedding_multiplier 12, attention_multiplier 0.015625/0.0078125, residual_multiplier
    // 0.22, logits_scaling 8/16, tied embeddings)
    {"granite-3-2b", "granite", 2048, 40, 32, 8, 8192, 49155, 4096, 64, 10000.f, 1e-5f, 0.f, true, 0, 0, 0, 0, false, 0,
     0.f, 0, {12.f, 0.015625f, 0.22f, 8.f}},
    {"granite-3-8b", "granite", 4096, 40, 32, 8, 12800, 49155, 4096, 128, 10000.f, 1e-5f, 0.f, true, 0, 0, 0, 0, false,
     0, 0.f, 0, {12.f, 0.0078125f, 0.22f, 16.f}},
    {"granite-tiny", "granite", 256, 2, 4, 2, 512, 512, 512, 64, 10000.f, 1e-5f, 0.f, true, 0, 0, 0, 0, false, 0, 0.f,
     0, {12.f, 0.015625f, 0.22f, 8.f}},
    // OLMo 2 1B / 7B (config.json: hidden 2048/4096, 16/32 layers, 16/32 heads and KV heads, intermediate 8192/11008,
    // vocab 100352, ctx 4096, rope_theta 500000, rms eps 1e-6; untied)
    {"olmo2-1b", "olmo2", 2048, 16, 16, 16, 8192, 100352, 4096, 128, 500000.f, 1e-6f, 0.f, false},
    {"olmo2-7b", "olmo2", 4096, 32, 32, 32, 11008, 100352, 4096, 128, 500000.f, 1e-6f, 0.f, false},
    {"olmo2-tiny", "olmo2", 256, 2, 4, 2, 512, 512, 512, 64, 500000.f, 1e-6f, 0.f, false},
    // mistral3 (Ministral 3 / Mistral 3 as llama.cpp converts them): llama's tensors; its YaRN and temperature keys
    // are given with --kv (tests/node/arch_llamacpp.test.mjs)
    {"mistral3-tiny", "mistral3", 256, 2, 4, 2, 512, 512, 4096, 128, 1000000.f, 1e-5f, 0.f, false},
};

// deepseek2 presets: the dense fields as above, then the latent attention and routing (config.json of
// deepseek-ai/DeepSeek-V3: 61 layers, hidden 7168, 128 heads, q_lora_rank 1536, kv_lora_rank 512, qk_nope 128,
// qk_rope 64, v_head 128, intermediate 18432, moe_intermediate 2048, 256 routed + 1 shared, 8 per token,
// first_k_dense_replace 3, n_group 8, topk_group 4, routed_scaling_factor 2.5, norm_topk_prob, sigmoid scoring,
// vocab 129280, ctx 163840, rope_theta 10000, yarn factor 40 over 4096, mscale_all_dim 1; docs/moe.md).
typedef struct {
    preset base;
    int q_lora, kv_lora, nope, rope, v, lead, shared;
    bool sigmoid, norm_w;
    float w_scale;
    int n_group, n_group_used;
    bool legacy;
    float yarn_factor;
    int yarn_orig;
    float yarn_log_mul;
} ds_preset;

static const ds_preset ds_presets[] = {
    {{"deepseek-v3", "deepseek2", 7168, 61, 128, 128, 18432, 129280, 163840, 192, 10000.f, 1e-6f, 0.f, false, 256, 8,
      2048, 0, false},
     1536, 512, 128, 64, 128, 3, 1, true, true, 2.5f, 8, 4, false, 40.f, 4096, 0.1f},
    // Tiny ones for tests: V3's features (q compression, sigmoid routing with bias, groups, a leading dense
    // layer, a shared expert, scaled weights), and V2-Lite's (one attn_q, softmax, the older attn_kv_b)
    {{"deepseek2-tiny", "deepseek2", 256, 3, 4, 4, 512, 512, 512, 96, 10000.f, 1e-6f, 0.f, false, 8, 2, 256, 0, false},
     128, 128, 64, 32, 64, 1, 1, true, true, 2.5f, 4, 2, false, 0.f, 0, 0.f},
    {{"deepseek2-tiny-lite", "deepseek2", 256, 3, 4, 4, 512, 512, 512, 96, 10000.f, 1e-6f, 0.f, false, 8, 2, 256, 0,
      false},
     0, 128, 64, 32, 64, 1, 2, false, false, 1.0f, 0, 0, true, 0.f, 0, 0.f},
    {{"deepseek2-tiny-yarn", "deepseek2", 256, 3, 4, 4, 512, 512, 512, 96, 10000.f, 1e-6f, 0.f, false, 8, 2, 256, 0,
      false},
     128, 128, 64, 32, 64, 1, 1, true, true, 2.5f, 4, 2, false, 4.f, 128, 0.1f},
};

bool aero_synth_preset(const char *name, aero_synth_params *p) {
    for (size_t i = 0; i < sizeof ds_presets / sizeof *ds_presets; i++) {
        const ds_preset *s = &ds_presets[i];
        if (strcmp(s->base.name, name)) continue;
        memset(p, 0, sizeof *p);
        snprintf(p->arch, sizeof p->arch, "%s", s->base.arch);
        snprintf(p->name, sizeof p->name, "synthetic %s", s->base.name);
        p->n_embd = s->base.n_embd;
        p->n_layer = s->base.n_layer;
        p->n_head = p->n_head_kv = s->base.n_head;
        p->n_ff = s->base.n_ff;
        p->n_vocab = s->base.n_vocab;
        p->n_ctx = s->base.n_ctx;
        p->head_dim = s->nope + s->rope;
        p->rope_base = s->base.rope_base;
        p->norm_eps = s->base.norm_eps;
        p->n_expert = s->base.n_expert;
        p->n_expert_used = s->base.n_expert_used;
        p->n_ff_exp = s->base.n_ff_exp;
        p->router_skew = 3.0f;
        p->type = AERO_DT_F16;
        p->ds.q_lora_rank = s->q_lora;
        p->ds.kv_lora_rank = s->kv_lora;
        p->ds.qk_nope = s->nope;
        p->ds.qk_rope = s->rope;
        p->ds.v_head = s->v;
        p->ds.n_dense_lead = s->lead;
        p->ds.n_expert_shared = s->shared;
        p->ds.sigmoid = s->sigmoid;
        p->ds.norm_w = s->norm_w;
        p->ds.w_scale = s->w_scale;
        p->ds.n_group = s->n_group;
        p->ds.n_group_used = s->n_group_used;
        p->ds.legacy_kv_b = s->legacy;
        p->ds.yarn_factor = s->yarn_factor;
        p->ds.yarn_orig_ctx = s->yarn_orig;
        p->ds.yarn_log_mul = s->yarn_log_mul;
        return true;
    }
    for (size_t i = 0; i < sizeof presets / sizeof *presets; i++) {
        const preset *s = &presets[i];
        if (strcmp(s->name, name)) continue;
        memset(p, 0, sizeof *p);
        snprintf(p->arch, sizeof p->arch, "%s", s->arch);
        snprintf(p->name, sizeof p->name, "synthetic %s", s->name);
        p->n_embd = s->n_embd;
        p->n_layer = s->n_layer;
        p->n_head = s->n_head;
        p->n_head_kv = s->n_head_kv;
        p->n_ff = s->n_ff;
        p->n_vocab = s->n_vocab;
        p->n_ctx = s->n_ctx;
        p->head_dim = s->head_dim;
        p->rope_base = s->rope_base;
        p->norm_eps = s->norm_eps;
        p->rope_llama3_factor = s->llama3_factor;
        p->tied = s->tied;
        p->n_expert = s->n_expert;
        p->n_expert_used = s->n_expert_used;
        p->n_ff_exp = s->n_ff_exp;
        p->n_ff_shexp = s->n_ff_shexp;
        p->per_expert = s->per_expert;
        p->n_swa = s->n_swa;
        p->rope_linear_factor = s->rope_linear;
        p->longrope_orig_ctx = s->longrope;
        memcpy(p->granite_scales, s->granite, sizeof p->granite_scales);
        p->router_skew = s->n_expert ? 3.0f : 0.f;
        p->type = AERO_DT_F16;
        return true;
    }
    return false;
}

const char *aero_synth_preset_names(void) {
    return "llama-1b|llama-8b|llama-70b|qwen2-0.5b|qwen2-7b|qwen3-0.6b|qwen3-8b|tiny|qwen3-30b-a3b|mixtral-8x7b|"
           "qwen3moe-tiny|qwen2moe-tiny|mixtral-tiny|mixtral-tiny-split|gemma2-2b|gemma2-9b|gemma3-1b|gemma3-4b|gemma3-12b|"
           "gemma2-tiny|gemma3-tiny|phi3-mini|phi3.5-mini|phi3-tiny|phi3-tiny-longrope|granite-3-2b|granite-3-8b|"
           "granite-tiny|olmo2-1b|olmo2-7b|olmo2-tiny|mistral3-tiny|deepseek-v3|deepseek2-tiny|deepseek2-tiny-lite|"
           "deepseek2-tiny-yarn";
}

// ---------------------------------------------------------------------------------------------------------
// Random numbers: splitmix64, seeded per tensor and per row, so the bytes do not depend on chunking or threads.

static uint64_t mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t next64(uint64_t *s) {
    *s += 0x9E3779B97F4A7C15ull;
    uint64_t z = *s;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t hash_str(const char *s) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001B3ull;
    return h;
}

// Approximately Gaussian values (sum of four uniforms, scaled to unit variance): cheap, bounded, smooth enough.
static void gauss(uint64_t *s, float *x, int64_t n, float mean, float std) {
    const float k = std * 1.7320508f / 65536.0f; // sqrt(3) / 2^16: (sum - 2) has variance 1/3
    for (int64_t i = 0; i < n; i++) {
        uint64_t r = next64(s);
        uint32_t sum = (uint32_t)(r & 0xFFFF) + (uint32_t)((r >> 16) & 0xFFFF) + (uint32_t)((r >> 32) & 0xFFFF) +
                       (uint32_t)(r >> 48);
        x[i] = mean + ((float)sum - 131072.0f) * k;
    }
}

// ---------------------------------------------------------------------------------------------------------
// Tensor producers.

typedef enum { KIND_MATRIX, KIND_NORM, KIND_BIAS, KIND_ROPE, KIND_ROPE_LONG, KIND_ROPE_SHORT } tensor_kind;

typedef struct {
    aero_dtype type;
    float std;
    uint8_t *blocks;
    int n;
} block_pool;

#define MAX_POOLS 32
#define AERO_QK_K_SYNTH 256 // the K-quants' super-block

typedef struct synth_state synth_state;

typedef struct {
    synth_state *st;
    tensor_kind kind;
    aero_dtype type;
    int64_t row_len; // ne[0]
    size_t row_bytes;
    float std;
    uint64_t seed;
    const block_pool *pool; // quantized types, unless exact
    uint64_t tail_from;     // rows from here on (padding tokens of a vocabulary matrix) get tail_std: a random
    float tail_std;         // model then rarely emits "[PAD123]", as a trained one never does; 0 = no tail
    const block_pool *tail_pool;
    uint64_t row_offset; // rows of a per-expert tensor are those of the merged tensor from this row on
    float skew;          // > 0: a router; row r (an expert) gets std * (1 + skew / (1 + rank of r))
    int n_rank;          // the router's rows (experts), ranked by a per-tensor permutation
} tensor_src;

struct synth_state {
    const aero_synth_params *p;
    aero_pool *pool;
    block_pool pools[MAX_POOLS];
    int n_pools;
    tensor_src *src;
    int n_src;
    uint64_t done, total; // tensor bytes produced, for progress
    int n_real_tokens;    // tokens before the padding of the built-in vocabulary; 0 = no padding
    // set just before add() for the next tensor only
    char seed_name[96]; // draw from this tensor name's stream instead of its own (per-expert tensors)
    uint64_t next_row_offset;
    float next_skew; // a router's skew
};

// A pool of quantized blocks of a type made from Gaussian floats of a scale, shared by the tensors that need it.
static const block_pool *get_pool(synth_state *st, aero_dtype type, float std, aero_error *err) {
    for (int i = 0; i < st->n_pools; i++)
        if (st->pools[i].type == type && st->pools[i].std == std) return &st->pools[i];
    if (st->n_pools == MAX_POOLS) {
        aero_fail(err, AERO_ERR_INVALID, "synth: too many block pools");
        return NULL;
    }
    const aero_dtype_info *di = aero_dtype_get(type);
    block_pool *bp = &st->pools[st->n_pools];
    bp->type = type;
    bp->std = std;
    bp->n = di->block >= 256 ? 2048 : 4096;
    int64_t n_el = (int64_t)bp->n * di->block;
    float *x = malloc((size_t)n_el * sizeof *x);
    bp->blocks = malloc((size_t)bp->n * di->block_bytes);
    if (!x || !bp->blocks) {
        free(x);
        free(bp->blocks);
        aero_fail(err, AERO_ERR_NOMEM, "synth: out of memory for a block pool");
        return NULL;
    }
    uint32_t stdbits;
    memcpy(&stdbits, &std, 4);
    uint64_t s = mix64(st->p->seed ^ mix64(((uint64_t)type << 32) | stdbits));
    gauss(&s, x, n_el, 0.f, std);
    aero_quantize_row(type, x, bp->blocks, n_el);
    free(x);
    st->n_pools++;
    return bp;
}

// Llama 3.1 rope scaling as llama.cpp's converter stores it: one divisor per rotation frequency.
static void rope_factors(const aero_synth_params *p, int head_dim, float *out) {
    const double factor = p->rope_llama3_factor, low = 1.0, high = 4.0, orig = 8192.0;
    const double low_wl = orig / low, high_wl = orig / high;
    for (int i = 0; i < head_dim / 2; i++) {
        double freq = pow(p->rope_base, -2.0 * i / head_dim), wavelen = 2 * M_PI / freq;
        if (wavelen < high_wl) out[i] = 1.0f;
        else if (wavelen > low_wl) out[i] = (float)factor;
        else {
            double smooth = (orig / wavelen - low) / (high - low);
            out[i] = (float)(1.0 / ((1 - smooth) / factor + smooth));
        }
    }
}

// Produces one row of a tensor into dst; scratch holds row_len floats.
static void make_row(const tensor_src *t, uint64_t row, uint8_t *dst, float *scratch) {
    row += t->row_offset;
    uint64_t s = mix64(t->seed ^ mix64(row + 1));
    if (t->kind == KIND_ROPE) {
        rope_factors(t->st->p, (int)(t->row_len * 2), (float *)dst);
        return;
    }
    if (t->kind == KIND_ROPE_LONG || t->kind == KIND_ROPE_SHORT) { // LongRoPE-like divisors growing with the pair
        float step = t->kind == KIND_ROPE_LONG ? 0.25f : 0.02f, *y = (float *)dst;
        for (int64_t i = 0; i < t->row_len; i++) y[i] = 1.0f + step * (float)i;
        return;
    }
    bool tail = t->tail_std > 0 && row >= t->tail_from;
    float std = tail ? t->tail_std : t->std;
    if (t->skew > 0) { // hot experts: a larger spread of router logits wins the top-k more often
        uint64_t rank = mix64(t->seed ^ 0x5bd1e995u ^ row) % (uint64_t)t->n_rank;
        std *= 1.0f + t->skew / (1.0f + (float)rank);
    }
    const block_pool *pool = tail ? t->tail_pool : t->pool;
    if (pool) {
        const aero_dtype_info *di = aero_dtype_get(t->type);
        int64_t nb = t->row_len / di->block;
        for (int64_t b = 0; b < nb; b++) {
            uint64_t pick = next64(&s) % (uint64_t)pool->n;
            memcpy(dst + b * di->block_bytes, pool->blocks + pick * di->block_bytes, di->block_bytes);
        }
        return;
    }
    float mean = t->kind == KIND_NORM ? 1.0f : 0.0f;
    float *x = t->type == AERO_DT_F32 ? (float *)dst : scratch;
    gauss(&s, x, t->row_len, mean, std);
    switch (t->type) {
    case AERO_DT_F32: break;
    case AERO_DT_F16: aero_f32_to_f16_row(x, (uint16_t *)dst, t->row_len); break;
    case AERO_DT_BF16: {
        uint16_t *y = (uint16_t *)dst;
        for (int64_t i = 0; i < t->row_len; i++) y[i] = aero_f32_to_bf16(x[i]);
        break;
    }
    default: aero_quantize_row(t->type, x, dst, t->row_len); break;
    }
}

typedef struct {
    const tensor_src *t;
    uint8_t *dst;
    uint64_t row0, n_rows;
    int failed;
} fill_job;

// One thread's share of a chunk of rows.
static void fill_part(void *ctx, int ith, int nth) {
    fill_job *j = ctx;
    long b, e;
    aero_pool_split((long)j->n_rows, ith, nth, &b, &e);
    if (b >= e) return;
    float *scratch = malloc((size_t)j->t->row_len * sizeof *scratch);
    if (!scratch) {
        j->failed = 1;
        return;
    }
    for (long r = b; r < e; r++) make_row(j->t, j->row0 + (uint64_t)r, j->dst + (size_t)r * j->t->row_bytes, scratch);
    free(scratch);
}

// The writer's row producer: a chunk of rows, split across the thread pool.
static bool fill_rows(void *ctx, void *dst, uint64_t row0, uint64_t n_rows, aero_error *err) {
    const tensor_src *t = ctx;
    fill_job j = {.t = t, .dst = dst, .row0 = row0, .n_rows = n_rows};
    aero_pool_run(t->kind == KIND_MATRIX && n_rows > 1 ? t->st->pool : NULL, fill_part, &j);
    if (j.failed) {
        aero_fail(err, AERO_ERR_NOMEM, "out of memory for a row of %lld elements", (long long)t->row_len);
        return false;
    }
    synth_state *st = t->st;
    st->done += n_rows * t->row_bytes;
    if (st->p->progress) st->p->progress(st->p->progress_ctx, st->done, st->total);
    return true;
}

// The type a matrix is written in: the requested one, or (as llama.cpp's quantizer does) a smaller-block type
// when its rows are not a multiple of the block.
static aero_dtype fit_type(aero_dtype type, int64_t row_len) {
    const aero_dtype_info *di = aero_dtype_get(type);
    if (row_len % di->block == 0) return type;
    aero_dtype fb;
    switch (type) {
    case AERO_DT_Q2_K:
    case AERO_DT_Q3_K: fb = AERO_DT_Q4_0; break;
    case AERO_DT_Q4_K: fb = AERO_DT_Q5_0; break;
    case AERO_DT_Q5_K: fb = AERO_DT_Q5_1; break;
    case AERO_DT_Q6_K: fb = AERO_DT_Q8_0; break;
    case AERO_DT_IQ2_XXS:
    case AERO_DT_IQ2_XS:
    case AERO_DT_IQ3_XXS:
    case AERO_DT_IQ3_S:
    case AERO_DT_IQ4_XS: fb = AERO_DT_IQ4_NL; break;
    default: fb = AERO_DT_F16; break;
    }
    return row_len % aero_dtype_get(fb)->block == 0 ? fb : AERO_DT_F16;
}

// ---------------------------------------------------------------------------------------------------------

static bool matrix_type_ok(aero_dtype t) {
    switch (t) {
    case AERO_DT_F32:
    case AERO_DT_F16:
    case AERO_DT_BF16:
    case AERO_DT_Q8_0:
    case AERO_DT_Q4_0:
    case AERO_DT_Q4_1:
    case AERO_DT_Q5_0:
    case AERO_DT_Q5_1:
    case AERO_DT_Q2_K:
    case AERO_DT_Q3_K:
    case AERO_DT_Q4_K:
    case AERO_DT_Q5_K:
    case AERO_DT_Q6_K:
    case AERO_DT_IQ4_NL:
    case AERO_DT_IQ4_XS:
    case AERO_DT_IQ2_XXS:
    case AERO_DT_IQ2_XS:
    case AERO_DT_IQ3_XXS:
    case AERO_DT_IQ3_S:
    case AERO_DT_MXFP4: return true;
    default: return false;
    }
}

bool aero_synth_mix_parse(const char *name, aero_synth_mix *mix, aero_dtype *base) {
    if (!strcasecmp(name, "Q4_K_M")) *mix = AERO_SYNTH_MIX_Q4_K_M, *base = AERO_DT_Q4_K;
    else if (!strcasecmp(name, "Q5_K_M")) *mix = AERO_SYNTH_MIX_Q5_K_M, *base = AERO_DT_Q5_K;
    else return false;
    return true;
}

const char *aero_synth_mix_name(aero_synth_mix mix) {
    return mix == AERO_SYNTH_MIX_Q4_K_M ? "Q4_K_M" : mix == AERO_SYNTH_MIX_Q5_K_M ? "Q5_K_M" : NULL;
}

// The roles llama.cpp's quantizer tells matrices apart by (tensor_get_category).
typedef enum { ROLE_EMBD, ROLE_OUTPUT, ROLE_Q, ROLE_K, ROLE_V, ROLE_O, ROLE_GATE, ROLE_UP, ROLE_DOWN } mat_role;

// llama.cpp's "more bits" layers: the first and last eighth, and every third layer between.
static bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

// The type of a matrix of a role in layer l: p->type, or what llama.cpp's quantizer picks for the mix
// (llama_tensor_get_type_impl for LLAMA_FTYPE_MOSTLY_Q4_K_M / Q5_K_M), before the block-size fallback.
static aero_dtype mix_type(const aero_synth_params *p, mat_role r, int l) {
    if (!p->mix) return p->type;
    bool experts8 = p->n_expert == 8, llama70b = !strcmp(p->arch, "llama") && p->n_layer == 80;
    switch (r) {
    case ROLE_OUTPUT: return p->n_embd % AERO_QK_K_SYNTH ? AERO_DT_Q8_0 : AERO_DT_Q6_K;
    case ROLE_EMBD: // tied: the embedding is the head, quantized as the head
        return p->tied ? (p->n_embd % AERO_QK_K_SYNTH ? AERO_DT_Q8_0 : AERO_DT_Q6_K) : p->type;
    case ROLE_V: {
        aero_dtype t = use_more_bits(l, p->n_layer) ? AERO_DT_Q6_K : p->type;
        if (llama70b && t == AERO_DT_Q4_K) t = AERO_DT_Q5_K;
        return experts8 ? AERO_DT_Q8_0 : t;
    }
    case ROLE_K: return experts8 ? AERO_DT_Q8_0 : p->type;
    case ROLE_DOWN: return use_more_bits(l, p->n_layer) ? AERO_DT_Q6_K : p->type;
    case ROLE_O: return experts8 && p->mix == AERO_SYNTH_MIX_Q4_K_M ? AERO_DT_Q5_K : p->type;
    default: return p->type;
    }
}

aero_status aero_synth_check(const aero_synth_params *p, aero_error *err) {
    bool llama = !strcmp(p->arch, "llama") || !strcmp(p->arch, "mistral3"), qwen = !strcmp(p->arch, "qwen2") || !strcmp(p->arch, "qwen3"),
         qmoe = !strcmp(p->arch, "qwen2moe") || !strcmp(p->arch, "qwen3moe"),
         gemma = !strcmp(p->arch, "gemma2") || !strcmp(p->arch, "gemma3"), phi3 = !strcmp(p->arch, "phi3"),
         granite = !strcmp(p->arch, "granite"), olmo2 = !strcmp(p->arch, "olmo2"), ds2 = !strcmp(p->arch, "deepseek2");
    if (!llama && !qwen && !qmoe && !gemma && !phi3 && !granite && !olmo2 && !ds2)
        return aero_fail(err, AERO_ERR_INVALID,
                         "unknown architecture '%s' (llama, qwen2, qwen3, qwen2moe, qwen3moe, gemma2, gemma3, phi3, "
                         "granite, olmo2, mistral3, deepseek2)",
                         p->arch);
    if ((granite || olmo2) && p->n_expert)
        return aero_fail(err, AERO_ERR_INVALID, "%s: no experts", p->arch);
    if (phi3 && (p->n_expert || (p->head_dim && p->head_dim * p->n_head != p->n_embd)))
        return aero_fail(err, AERO_ERR_INVALID, "phi3: no experts, head count x head size = embedding size");
    if (p->longrope_orig_ctx < 0 || (p->longrope_orig_ctx > 0 && !phi3))
        return aero_fail(err, AERO_ERR_INVALID, "LongRoPE is written for phi3 only");
    if (gemma && (p->n_expert || !p->tied || p->n_swa < 0 || !(p->rope_linear_factor >= 0)))
        return aero_fail(err, AERO_ERR_INVALID, "%s: no experts, tied embeddings, a window >= 0", p->arch);
    if (ds2 && (p->ds.kv_lora_rank < 1 || p->ds.qk_nope < 1 || p->ds.qk_rope < 2 || p->ds.qk_rope % 2 ||
                p->ds.v_head < 1 || p->ds.q_lora_rank < 0 || p->ds.n_dense_lead < 0 || p->ds.n_expert_shared < 0))
        return aero_fail(err, AERO_ERR_INVALID, "deepseek2: latent attention sizes are inconsistent (use a preset)");
    if ((qmoe || ds2) && p->n_expert < 1) return aero_fail(err, AERO_ERR_INVALID, "%s needs experts", p->arch);
    if (llama && p->n_expert && p->n_ff_exp != p->n_ff)
        return aero_fail(err, AERO_ERR_INVALID,
                         "Mixtral (llama with experts) has experts of the feed-forward size %d, "
                         "not %d",
                         p->n_ff, p->n_ff_exp);
    if (p->n_expert && (p->n_expert > 4096 || p->n_expert_used < 1 || p->n_expert_used > p->n_expert ||
                        p->n_ff_exp < 1 || p->n_ff_shexp < 0 || (p->per_expert && !llama) || p->router_skew < 0))
        return aero_fail(err, AERO_ERR_INVALID, "experts: %d, %d used, %d rows, %d shared rows%s are inconsistent",
                         p->n_expert, p->n_expert_used, p->n_ff_exp, p->n_ff_shexp,
                         p->per_expert ? ", per-expert tensors (llama only)" : "");
    struct {
        const char *name;
        int v, max;
    } dims[] = {{"embedding size (--dim)", p->n_embd, 1 << 17},  {"layer count (--layers)", p->n_layer, 4096},
                {"head count (--heads)", p->n_head, 4096},       {"KV head count (--kv-heads)", p->n_head_kv, 4096},
                {"feed-forward size (--ffn)", p->n_ff, 1 << 20}, {"context length (--ctx)", p->n_ctx, 1 << 24}};
    for (size_t i = 0; i < sizeof dims / sizeof *dims; i++)
        if (dims[i].v < 1 || dims[i].v > dims[i].max)
            return aero_fail(err, AERO_ERR_INVALID, "%s must be in [1, %d], not %d", dims[i].name, dims[i].max,
                             dims[i].v);
    if (p->n_head % p->n_head_kv)
        return aero_fail(err, AERO_ERR_INVALID, "head count %d is not a multiple of the KV head count %d", p->n_head,
                         p->n_head_kv);
    int hd = p->head_dim ? p->head_dim : p->n_embd / p->n_head;
    if (!p->head_dim && p->n_embd % p->n_head)
        return aero_fail(err, AERO_ERR_INVALID, "embedding size %d is not a multiple of the head count %d", p->n_embd,
                         p->n_head);
    if (hd < 2 || hd % 2 || hd > 1024)
        return aero_fail(err, AERO_ERR_INVALID, "head size %d must be even and in [2, 1024]", hd);
    if (!p->tokenizer_from) {
        int min_vocab = 256 + (llama || granite ? 5 : phi3 ? 7 : gemma ? 4 : 3);
        if (p->n_vocab < min_vocab || p->n_vocab > (1 << 22))
            return aero_fail(err, AERO_ERR_INVALID,
                             "vocabulary size (--vocab) must be in [%d, %d] for the built-in "
                             "tokenizer (256 bytes + special tokens), not %d",
                             min_vocab, 1 << 22, p->n_vocab);
    }
    aero_synth_mix mx;
    aero_dtype base;
    if (p->mix && (!aero_synth_mix_name(p->mix) || !aero_synth_mix_parse(aero_synth_mix_name(p->mix), &mx, &base) ||
                   base != p->type))
        return aero_fail(err, AERO_ERR_INVALID, "mix %d needs its base type, not %s", (int)p->mix,
                         aero_dtype_name(p->type));
    if (!matrix_type_ok(p->type))
        return aero_fail(err, AERO_ERR_UNSUPPORTED,
                         "type %s cannot be used for weights (F32, F16, BF16, Q8_0, Q4_0, "
                         "Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ2_XXS, IQ2_XS, IQ3_XXS, IQ3_S, IQ4_NL, IQ4_XS, MXFP4)",
                         aero_dtype_name(p->type));
    if (!(p->rope_base > 1) || !(p->norm_eps > 0 && p->norm_eps < 1) || !(p->rope_llama3_factor >= 0))
        return aero_fail(err, AERO_ERR_INVALID, "rope base %g / norm epsilon %g / rope factor %g out of range",
                         p->rope_base, p->norm_eps, p->rope_llama3_factor);
    return AERO_OK;
}

static int ftype_of(const aero_synth_params *p) {
    if (p->mix == AERO_SYNTH_MIX_Q4_K_M) return 15;
    if (p->mix == AERO_SYNTH_MIX_Q5_K_M) return 17;
    switch (p->type) {
    case AERO_DT_F32: return 0;
    case AERO_DT_F16: return 1;
    case AERO_DT_Q4_0: return 2;
    case AERO_DT_Q4_1: return 3;
    case AERO_DT_Q8_0: return 7;
    case AERO_DT_Q5_0: return 8;
    case AERO_DT_Q5_1: return 9;
    case AERO_DT_Q2_K: return 10;
    case AERO_DT_Q3_K: return 11; // Q3_K_S: every matrix Q3_K
    case AERO_DT_Q4_K: return 14; // Q4_K_S
    case AERO_DT_Q5_K: return 16; // Q5_K_S
    case AERO_DT_Q6_K: return 18;
    case AERO_DT_IQ4_NL: return 25;
    case AERO_DT_IQ4_XS: return 30;
    case AERO_DT_MXFP4: return 38; // LLAMA_FTYPE_MOSTLY_MXFP4_MOE
    case AERO_DT_IQ2_XXS: return 19;
    case AERO_DT_IQ2_XS: return 20;
    case AERO_DT_IQ3_XXS: return 23;
    case AERO_DT_IQ3_S: return 26;
    case AERO_DT_BF16: return 32;
    default: return 0;
    }
}

// Applies one "KEY=TYPE:VALUE" (or "KEY=" to remove) metadata edit.
static aero_status apply_kv(aero_gguf_writer *w, const char *spec, aero_error *err) {
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec || eq - spec >= 160)
        return aero_fail(err, AERO_ERR_INVALID, "metadata edit '%s' is not KEY=TYPE:VALUE or KEY=", spec);
    char key[160];
    memcpy(key, spec, (size_t)(eq - spec));
    key[eq - spec] = 0;
    const char *tv = eq + 1, *colon = strchr(tv, ':');
    if (!*tv) {
        aero_gguf_unset(w, key);
        return AERO_OK;
    }
    if (!colon) return aero_fail(err, AERO_ERR_INVALID, "metadata edit '%s': no TYPE:VALUE", spec);
    const char *v = colon + 1;
    size_t tl = (size_t)(colon - tv);
    char *end = NULL;
    if (tl == 3 && !strncmp(tv, "str", 3)) aero_gguf_set_str(w, key, v);
    else if (tl == 4 && !strncmp(tv, "bool", 4)) {
        if (strcmp(v, "true") && strcmp(v, "false"))
            return aero_fail(err, AERO_ERR_INVALID, "metadata edit '%s': bool is true or false", spec);
        aero_gguf_set_bool(w, key, !strcmp(v, "true"));
    } else if (tl == 3 && !strncmp(tv, "u32", 3)) {
        unsigned long long x = strtoull(v, &end, 0);
        if (end == v || *end || x > 0xFFFFFFFFull) goto bad;
        aero_gguf_set_u32(w, key, (uint32_t)x);
    } else if (tl == 3 && !strncmp(tv, "i32", 3)) {
        long x = strtol(v, &end, 0);
        if (end == v || *end) goto bad;
        aero_gguf_set_i32(w, key, (int32_t)x);
    } else if (tl == 3 && !strncmp(tv, "f32", 3)) {
        double x = strtod(v, &end);
        if (end == v || *end) goto bad;
        aero_gguf_set_f32(w, key, (float)x);
    } else {
        return aero_fail(err, AERO_ERR_INVALID, "metadata edit '%s': type is u32, i32, f32, bool or str", spec);
    }
    return AERO_OK;
bad:
    return aero_fail(err, AERO_ERR_INVALID, "metadata edit '%s': bad number", spec);
}

// Registers one tensor and its producer.
static aero_status add(aero_gguf_writer *w, synth_state *st, tensor_kind kind, aero_dtype type, float std, int64_t ne0,
                       int64_t ne1, int64_t ne2, aero_synth_stats *stats, aero_error *err, const char *fmt, ...)
    __attribute__((format(printf, 11, 12)));
static aero_status add(aero_gguf_writer *w, synth_state *st, tensor_kind kind, aero_dtype type, float std, int64_t ne0,
                       int64_t ne1, int64_t ne2, aero_synth_stats *stats, aero_error *err, const char *fmt, ...) {
    char name[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    tensor_src *t = &st->src[st->n_src];
    memset(t, 0, sizeof *t);
    t->st = st;
    t->kind = kind;
    t->type = kind == KIND_MATRIX ? fit_type(type, ne0) : AERO_DT_F32;
    if (t->type != type && kind == KIND_MATRIX) stats->n_fallback++;
    t->row_len = ne0;
    t->row_bytes = aero_dtype_row_bytes(t->type, (uint64_t)ne0);
    t->std = std;
    t->seed = mix64(st->p->seed ^ hash_str(name));
    bool quant_pool = kind == KIND_MATRIX && t->type != AERO_DT_F32 && t->type != AERO_DT_F16 &&
                      t->type != AERO_DT_BF16 && !st->p->exact;
    if (quant_pool && !(t->pool = get_pool(st, t->type, std, err))) return err->code;
    bool vocab_matrix = !strcmp(name, "token_embd.weight") || !strcmp(name, "output.weight");
    if (vocab_matrix && st->n_real_tokens > 0 && st->n_real_tokens < ne1) {
        t->tail_from = (uint64_t)st->n_real_tokens;
        t->tail_std = std * 0.05f;
        if (quant_pool && !(t->tail_pool = get_pool(st, t->type, t->tail_std, err))) return err->code;
    }
    if (st->seed_name[0]) { // a per-expert tensor: rows [offset, ...) of the merged tensor named seed_name
        t->seed = mix64(st->p->seed ^ hash_str(st->seed_name));
        t->row_offset = st->next_row_offset;
    }
    st->seed_name[0] = 0;
    st->next_row_offset = 0;
    if (st->next_skew > 0) {
        t->skew = st->next_skew;
        t->n_rank = (int)ne1;
        st->next_skew = 0;
    }
    uint64_t ne[3] = {(uint64_t)ne0, (uint64_t)(ne1 > 0 ? ne1 : 1), (uint64_t)ne2};
    uint32_t nd = ne2 > 1 ? 3 : ne1 > 0 ? 2 : 1;
    uint64_t rows = (uint64_t)(ne1 > 0 ? ne1 : 1) * (uint64_t)(ne2 > 1 ? ne2 : 1);
    if (aero_gguf_add_tensor_rows(w, name, t->type, nd, ne, fill_rows, t, err)) return err->code;
    st->n_src++;
    st->total += t->row_bytes * rows;
    stats->n_tensors++;
    stats->tensor_bytes += t->row_bytes * rows;
    return AERO_OK;
}

aero_status aero_synth_write(const aero_synth_params *p, const char *path, aero_synth_stats *stats_out,
                             aero_error *err) {
    aero_synth_stats stats = {0};
    synth_state st = {.p = p};
    aero_gguf_writer *w = NULL;
    aero_status s = aero_synth_check(p, err);
    if (s) return s;
    aero_kernels_init();
    bool llama = !strcmp(p->arch, "llama") || !strcmp(p->arch, "mistral3"), qwen2 = !strcmp(p->arch, "qwen2") || !strcmp(p->arch, "qwen2moe"),
         qwen3 = !strcmp(p->arch, "qwen3") || !strcmp(p->arch, "qwen3moe"), gemma2 = !strcmp(p->arch, "gemma2"),
         gemma3 = !strcmp(p->arch, "gemma3"), gemma = gemma2 || gemma3, phi3 = !strcmp(p->arch, "phi3"),
         olmo2 = !strcmp(p->arch, "olmo2"), ds2 = !strcmp(p->arch, "deepseek2");
    int hd = p->head_dim ? p->head_dim : p->n_embd / p->n_head;
    int64_t d = p->n_embd, qd = (int64_t)p->n_head * hd, kvd = (int64_t)p->n_head_kv * hd, ff = p->n_ff;
    int64_t ne = p->n_expert, fe = p->n_ff_exp;
    int n_vocab = p->n_vocab;
    w = aero_gguf_writer_new(0);
    st.src = calloc((size_t)p->n_layer * (24 + (p->per_expert ? 3 * (size_t)p->n_expert : 0)) + 8, sizeof *st.src);
    st.pool = aero_pool_new(p->n_threads);
    if (!w || !st.src || !st.pool) {
        s = aero_fail(err, AERO_ERR_NOMEM, "synth: out of memory");
        goto done;
    }
    const char *arch = p->arch;
    char key[96];
#define KEY(suffix) (snprintf(key, sizeof key, "%s." suffix, arch), key)
    aero_gguf_set_str(w, "general.architecture", arch);
    aero_gguf_set_str(w, "general.name", p->name[0] ? p->name : "synthetic model");
    char desc[160];
    snprintf(desc, sizeof desc, "random weights written by aerollm synth (seed %llu); not a trained model",
             (unsigned long long)p->seed);
    aero_gguf_set_str(w, "general.description", desc);
    aero_gguf_set_u32(w, "general.file_type", (uint32_t)ftype_of(p));
    aero_gguf_set_u32(w, "general.quantization_version", 2);
    if (p->tokenizer_from) {
        if ((s = synth_copy_tokenizer(w, p->tokenizer_from, &n_vocab, err))) goto done;
        stats.n_vocab = n_vocab;
    } else if ((s = synth_write_tokenizer(w, p, &stats, &st.n_real_tokens, err))) {
        goto done;
    }
    aero_gguf_set_u32(w, KEY("vocab_size"), (uint32_t)n_vocab);
    aero_gguf_set_u32(w, KEY("context_length"), (uint32_t)p->n_ctx);
    aero_gguf_set_u32(w, KEY("embedding_length"), (uint32_t)d);
    aero_gguf_set_u32(w, KEY("block_count"), (uint32_t)p->n_layer);
    aero_gguf_set_u32(w, KEY("feed_forward_length"), (uint32_t)ff);
    aero_gguf_set_u32(w, KEY("attention.head_count"), (uint32_t)p->n_head);
    aero_gguf_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)p->n_head_kv);
    aero_gguf_set_u32(w, KEY("attention.key_length"), (uint32_t)hd);
    aero_gguf_set_u32(w, KEY("attention.value_length"), (uint32_t)hd);
    aero_gguf_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), p->norm_eps);
    aero_gguf_set_f32(w, KEY("rope.freq_base"), p->rope_base);
    aero_gguf_set_u32(w, KEY("rope.dimension_count"), (uint32_t)hd);
    if (gemma && p->n_swa > 0) aero_gguf_set_u32(w, KEY("attention.sliding_window"), (uint32_t)p->n_swa);
    if (gemma2) { // the soft-capping values of every Gemma 2 (config.json), as the converter writes them
        aero_gguf_set_f32(w, KEY("attn_logit_softcapping"), 50.0f);
        aero_gguf_set_f32(w, KEY("final_logit_softcapping"), 30.0f);
    }
    static const char *const granite_keys[4] = {"embedding_scale", "attention.scale", "residual_scale", "logit_scale"};
    for (int k = 0; k < 4; k++)
        if (p->granite_scales[k] > 0) {
            snprintf(key, sizeof key, "%s.%s", arch, granite_keys[k]);
            aero_gguf_set_f32(w, key, p->granite_scales[k]);
        }
    if (p->longrope_orig_ctx > 0) { // as Phi-3's converter: the magnitude correction of the long context
        double scale = (double)p->n_ctx / p->longrope_orig_ctx;
        aero_gguf_set_u32(w, KEY("rope.scaling.original_context_length"), (uint32_t)p->longrope_orig_ctx);
        aero_gguf_set_f32(w, KEY("rope.scaling.attn_factor"),
                          scale > 1 ? (float)sqrt(1 + log(scale) / log((double)p->longrope_orig_ctx)) : 1.0f);
    }
    if (p->rope_linear_factor > 0) {
        aero_gguf_set_str(w, KEY("rope.scaling.type"), "linear");
        aero_gguf_set_f32(w, KEY("rope.scaling.factor"), p->rope_linear_factor);
    }
    if (p->n_expert) { // the keys llama.cpp's converter writes for these architectures (docs/moe.md)
        aero_gguf_set_u32(w, KEY("expert_count"), (uint32_t)p->n_expert);
        aero_gguf_set_u32(w, KEY("expert_used_count"), (uint32_t)p->n_expert_used);
        if (!llama) aero_gguf_set_u32(w, KEY("expert_feed_forward_length"), (uint32_t)p->n_ff_exp);
        if (p->n_ff_shexp) aero_gguf_set_u32(w, KEY("expert_shared_feed_forward_length"), (uint32_t)p->n_ff_shexp);
    }
    const int ds_lead = p->ds.n_dense_lead < p->n_layer ? p->ds.n_dense_lead : p->n_layer;
    if (ds2) { // llama.cpp's convert_hf_to_gguf keys for DeepseekV2/V3 (docs/moe.md), newer files' MLA head sizes
        int kq = p->ds.qk_nope + p->ds.qk_rope;
        bool legacy = p->ds.legacy_kv_b;
        aero_gguf_set_u32(w, KEY("attention.head_count_kv"), legacy ? (uint32_t)p->n_head : 1);
        aero_gguf_set_u32(w, KEY("attention.key_length"),
                          (uint32_t)(legacy ? kq : p->ds.kv_lora_rank + p->ds.qk_rope));
        aero_gguf_set_u32(w, KEY("attention.value_length"), (uint32_t)(legacy ? p->ds.v_head : p->ds.kv_lora_rank));
        if (!legacy) {
            aero_gguf_set_u32(w, KEY("attention.key_length_mla"), (uint32_t)kq);
            aero_gguf_set_u32(w, KEY("attention.value_length_mla"), (uint32_t)p->ds.v_head);
        }
        aero_gguf_set_u32(w, KEY("rope.dimension_count"), (uint32_t)p->ds.qk_rope);
        aero_gguf_set_u32(w, KEY("attention.q_lora_rank"), (uint32_t)p->ds.q_lora_rank);
        aero_gguf_set_u32(w, KEY("attention.kv_lora_rank"), (uint32_t)p->ds.kv_lora_rank);
        aero_gguf_set_u32(w, KEY("leading_dense_block_count"), (uint32_t)ds_lead);
        aero_gguf_set_u32(w, KEY("expert_shared_count"), (uint32_t)p->ds.n_expert_shared);
        aero_gguf_set_f32(w, KEY("expert_weights_scale"), p->ds.w_scale);
        aero_gguf_set_bool(w, KEY("expert_weights_norm"), p->ds.norm_w);
        aero_gguf_set_u32(w, KEY("expert_gating_func"), p->ds.sigmoid ? 2 : 1);
        if (p->ds.n_group > 1) {
            aero_gguf_set_u32(w, KEY("expert_group_count"), (uint32_t)p->ds.n_group);
            aero_gguf_set_u32(w, KEY("expert_group_used_count"), (uint32_t)p->ds.n_group_used);
        }
        if (p->ds.yarn_factor > 0) {
            aero_gguf_set_str(w, KEY("rope.scaling.type"), "yarn");
            aero_gguf_set_f32(w, KEY("rope.scaling.factor"), p->ds.yarn_factor);
            aero_gguf_set_u32(w, KEY("rope.scaling.original_context_length"), (uint32_t)p->ds.yarn_orig_ctx);
            aero_gguf_set_f32(w, KEY("rope.scaling.yarn_log_multiplier"), p->ds.yarn_log_mul);
        }
    }
#undef KEY
    for (int i = 0; i < p->n_kv; i++)
        if ((s = apply_kv(w, p->kv[i], err))) goto done;
    // Tensors in llama.cpp's names and shapes (ne[0] first: the input dimension, the length of a row), in the
    // order the forward pass reads them. Matrices ~ N(0, 1/fan_in) keep activations of order 1 through the
    // layers; embeddings ~ N(0, 0.02); norms ~ 1 + N(0, 0.02); biases ~ N(0, 0.02).
    const float sd = 1.0f / sqrtf((float)d), sq = 1.0f / sqrtf((float)qd), sf = 1.0f / sqrtf((float)ff);
#define ADD(kind, type, std, ne0, ne1, ...) \
    if ((s = add(w, &st, kind, type, std, ne0, ne1, 1, &stats, err, __VA_ARGS__))) goto done
#define ADD3(kind, type, std, ne0, ne1, ne2, ...) \
    if ((s = add(w, &st, kind, type, std, ne0, ne1, ne2, &stats, err, __VA_ARGS__))) goto done
    // MoE: embeddings of order 1 keep the residual stream token-specific through the layers, so that routing
    // depends on the token as a trained model's does (with 0.02 a random model routes nearly every token alike)
    ADD(KIND_MATRIX, mix_type(p, ROLE_EMBD, 0), p->n_expert ? 1.0f : 0.02f, d, n_vocab, "token_embd.weight");
    if (llama && p->rope_llama3_factor > 0) ADD(KIND_ROPE, AERO_DT_F32, 0, hd / 2, 0, "rope_freqs.weight");
    if (p->longrope_orig_ctx > 0) {
        ADD(KIND_ROPE_LONG, AERO_DT_F32, 0, hd / 2, 0, "rope_factors_long.weight");
        ADD(KIND_ROPE_SHORT, AERO_DT_F32, 0, hd / 2, 0, "rope_factors_short.weight");
    }
    for (int l = 0; l < p->n_layer; l++) {
        if (ds2) { // llama.cpp's deepseek2 tensors, in its load_arch_tensors order
            const aero_dtype T = p->type; // one type (a Q4_K_M-like mix is written for the other architectures)
            int64_t H = p->n_head, nope = p->ds.qk_nope, rope = p->ds.qk_rope, kq = nope + rope, v = p->ds.v_head;
            int64_t Q = p->ds.q_lora_rank, L = p->ds.kv_lora_rank, fe = p->n_ff_exp;
            const float sl = 1.0f / sqrtf((float)L);
            ADD(KIND_NORM, AERO_DT_F32, 0.02f, d, 0, "blk.%d.attn_norm.weight", l);
            if (Q > 0) {
                ADD(KIND_NORM, AERO_DT_F32, 0.02f, Q, 0, "blk.%d.attn_q_a_norm.weight", l);
                ADD(KIND_MATRIX, T, sd, d, Q, "blk.%d.attn_q_a.weight", l);
                ADD(KIND_MATRIX, T, 1.0f / sqrtf((float)Q), Q, H * kq, "blk.%d.attn_q_b.weight", l);
            } else {
                ADD(KIND_MATRIX, T, sd, d, H * kq, "blk.%d.attn_q.weight", l);
            }
            ADD(KIND_NORM, AERO_DT_F32, 0.02f, L, 0, "blk.%d.attn_kv_a_norm.weight", l);
            ADD(KIND_MATRIX, T, sd, d, L + rope, "blk.%d.attn_kv_a_mqa.weight", l);
            if (p->ds.legacy_kv_b) {
                ADD(KIND_MATRIX, T, sl, L, H * (nope + v), "blk.%d.attn_kv_b.weight", l);
            } else { // one matrix per head: k_b's rows are the latent's, its columns a head's q_nope
                ADD3(KIND_MATRIX, T, sl, nope, L, H, "blk.%d.attn_k_b.weight", l);
                ADD3(KIND_MATRIX, T, sl, L, v, H, "blk.%d.attn_v_b.weight", l);
            }
            ADD(KIND_MATRIX, T, 1.0f / sqrtf((float)(H * v)), H * v, d, "blk.%d.attn_output.weight", l);
            ADD(KIND_NORM, AERO_DT_F32, 0.02f, d, 0, "blk.%d.ffn_norm.weight", l);
            if (l < ds_lead) {
                ADD(KIND_MATRIX, T, sd, d, ff, "blk.%d.ffn_gate.weight", l);
                ADD(KIND_MATRIX, T, sf, ff, d, "blk.%d.ffn_down.weight", l);
                ADD(KIND_MATRIX, T, sd, d, ff, "blk.%d.ffn_up.weight", l);
                continue;
            }
            st.next_skew = p->router_skew;
            ADD(KIND_MATRIX, AERO_DT_F32, sd * 2.0f, d, ne, "blk.%d.ffn_gate_inp.weight", l);
            // the selection bias: of the order of the sigmoid's spread, so that it changes some choices
            if (p->ds.sigmoid) ADD(KIND_BIAS, AERO_DT_F32, 0.1f, ne, 0, "blk.%d.exp_probs_b.bias", l);
            const float sfe = 1.0f / sqrtf((float)fe);
            ADD3(KIND_MATRIX, T, sfe, fe, d, ne, "blk.%d.ffn_down_exps.weight", l);
            ADD3(KIND_MATRIX, T, sd, d, fe, ne, "blk.%d.ffn_gate_exps.weight", l);
            ADD3(KIND_MATRIX, T, sd, d, fe, ne, "blk.%d.ffn_up_exps.weight", l);
            if (p->ds.n_expert_shared > 0) {
                int64_t fs = fe * p->ds.n_expert_shared;
                ADD(KIND_MATRIX, T, sd, d, fs, "blk.%d.ffn_gate_shexp.weight", l);
                ADD(KIND_MATRIX, T, 1.0f / sqrtf((float)fs), fs, d, "blk.%d.ffn_down_shexp.weight", l);
                ADD(KIND_MATRIX, T, sd, d, fs, "blk.%d.ffn_up_shexp.weight", l);
            }
            continue;
        }
        if (!olmo2) ADD(KIND_NORM, AERO_DT_F32, 0.02f, d, 0, "blk.%d.attn_norm.weight", l);
        if (phi3) { // fused, classed with attn_v by llama.cpp's quantizer
            ADD(KIND_MATRIX, mix_type(p, ROLE_V, l), sd, d, qd + 2 * kvd, "blk.%d.attn_qkv.weight", l);
        } else {
            ADD(KIND_MATRIX, mix_type(p, ROLE_Q, l), sd, d, qd, "blk.%d.attn_q.weight", l);
            ADD(KIND_MATRIX, mix_type(p, ROLE_K, l), sd, d, kvd, "blk.%d.attn_k.weight", l);
            ADD(KIND_MATRIX, mix_type(p, ROLE_V, l), sd, d, kvd, "blk.%d.attn_v.weight", l);
        }
        if (qwen2) {
            ADD(KIND_BIAS, AERO_DT_F32, 0.02f, qd, 0, "blk.%d.attn_q.bias", l);
            ADD(KIND_BIAS, AERO_DT_F32, 0.02f, kvd, 0, "blk.%d.attn_k.bias", l);
            ADD(KIND_BIAS, AERO_DT_F32, 0.02f, kvd, 0, "blk.%d.attn_v.bias", l);
        }
        if (qwen3 || gemma3 || olmo2) { // OLMo 2's span the whole projection, the others' one head
            ADD(KIND_NORM, AERO_DT_F32, 0.02f, olmo2 ? qd : hd, 0, "blk.%d.attn_q_norm.weight", l);
            ADD(KIND_NORM, AERO_DT_F32, 0.02f, olmo2 ? kvd : hd, 0, "blk.%d.attn_k_norm.weight", l);
        }
        ADD(KIND_MATRIX, mix_type(p, ROLE_O, l), sq, qd, d, "blk.%d.attn_output.weight", l);
        if (gemma || olmo2) ADD(KIND_NORM, AERO_DT_F32, 0.02f, d, 0, "blk.%d.post_attention_norm.weight", l);
        if (!olmo2) ADD(KIND_NORM, AERO_DT_F32, 0.02f, d, 0, "blk.%d.ffn_norm.weight", l);
        if (phi3) {
            ADD(KIND_MATRIX, mix_type(p, ROLE_UP, l), sd, d, 2 * ff, "blk.%d.ffn_up.weight", l);
            ADD(KIND_MATRIX, mix_type(p, ROLE_DOWN, l), sf, ff, d, "blk.%d.ffn_down.weight", l);
            continue;
        }
        if (!p->n_expert) {
            ADD(KIND_MATRIX, mix_type(p, ROLE_GATE, l), sd, d, ff, "blk.%d.ffn_gate.weight", l);
            ADD(KIND_MATRIX, mix_type(p, ROLE_UP, l), sd, d, ff, "blk.%d.ffn_up.weight", l);
            ADD(KIND_MATRIX, mix_type(p, ROLE_DOWN, l), sf, ff, d, "blk.%d.ffn_down.weight", l);
            if (gemma || olmo2) ADD(KIND_NORM, AERO_DT_F32, 0.02f, d, 0, "blk.%d.post_ffw_norm.weight", l);
            continue;
        }
        // the router stays F32 (llama.cpp's quantizer never quantizes ffn_gate_inp); a scale that makes the
        // logits of order 1, times the skew of the hot experts
        st.next_skew = p->router_skew;
        ADD(KIND_MATRIX, AERO_DT_F32, sd * 2.0f, d, ne, "blk.%d.ffn_gate_inp.weight", l);
        const float sfe = 1.0f / sqrtf((float)fe);
        if (!p->per_expert) {
            ADD3(KIND_MATRIX, mix_type(p, ROLE_GATE, l), sd, d, fe, ne, "blk.%d.ffn_gate_exps.weight", l);
            ADD3(KIND_MATRIX, mix_type(p, ROLE_UP, l), sd, d, fe, ne, "blk.%d.ffn_up_exps.weight", l);
            ADD3(KIND_MATRIX, mix_type(p, ROLE_DOWN, l), sfe, fe, d, ne, "blk.%d.ffn_down_exps.weight", l);
        } else {
            static const char *const part[3] = {"gate", "up", "down"};
            for (int e = 0; e < ne; e++)
                for (int q = 0; q < 3; q++) {
                    snprintf(st.seed_name, sizeof st.seed_name, "blk.%d.ffn_%s_exps.weight", l, part[q]);
                    st.next_row_offset = (uint64_t)e * (uint64_t)(q == 2 ? d : fe);
                    int64_t cols = q < 2 ? d : fe, rows = q < 2 ? fe : d;
                    ADD(KIND_MATRIX, mix_type(p, q == 0 ? ROLE_GATE : q == 1 ? ROLE_UP : ROLE_DOWN, l), q < 2 ? sd : sfe, cols, rows, "blk.%d.ffn_%s.%d.weight", l, part[q], e);
                }
        }
        if (p->n_ff_shexp > 0) {
            int64_t fs = p->n_ff_shexp;
            ADD(KIND_NORM, AERO_DT_F32, 0.5f, d, 0, "blk.%d.ffn_gate_inp_shexp.weight", l); // mean 1: gate open
            ADD(KIND_MATRIX, mix_type(p, ROLE_GATE, l), sd, d, fs, "blk.%d.ffn_gate_shexp.weight", l);
            ADD(KIND_MATRIX, mix_type(p, ROLE_UP, l), sd, d, fs, "blk.%d.ffn_up_shexp.weight", l);
            ADD(KIND_MATRIX, mix_type(p, ROLE_DOWN, l), 1.0f / sqrtf((float)fs), fs, d, "blk.%d.ffn_down_shexp.weight", l);
        }
    }
    ADD(KIND_NORM, AERO_DT_F32, 0.02f, d, 0, "output_norm.weight");
    if (!p->tied) ADD(KIND_MATRIX, mix_type(p, ROLE_OUTPUT, 0), sd, d, n_vocab, "output.weight");
#undef ADD
#undef ADD3
    s = aero_gguf_write(w, path, err);
done:
    aero_gguf_writer_free(w);
    aero_pool_free(st.pool);
    for (int i = 0; i < st.n_pools; i++) free(st.pools[i].blocks);
    free(st.src);
    if (stats_out) *stats_out = stats;
    return s;
}
