// The VRAM plan (gpu_plan.h): one chooser for the GPU forward pass and `aerollm info`.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/util.h"
#include "../stream/stream.h"
#include "gpu_plan.h"

static uint64_t r256(uint64_t b) { return (b + 255) & ~(uint64_t)255; }

// The widest activation row bounds the tokens of one pass (16 MiB of floats per buffer at most).
int aero_gpu_pass_cap(const aero_hparams *hp, int n_tile) {
    int widest = hp->n_embd;
    if (hp->n_head * hp->head_dim > widest) widest = hp->n_head * hp->head_dim;
    if (hp->n_ff > widest) widest = hp->n_ff;
    int cap = n_tile < AERO_GPU_MAX_PASS ? n_tile : AERO_GPU_MAX_PASS;
    if ((int64_t)cap * widest > ((int64_t)16 << 20)) cap = (int)(((int64_t)16 << 20) / widest);
    return cap > 0 ? cap : 1;
}

// What forward_cuda.c allocates besides weights, so that a plan never promises VRAM the pass then lacks.
uint64_t aero_gpu_fixed_bytes(const aero_hparams *hp, int n_vocab, int n_ctx, int n_seq, int cap, uint64_t small) {
    uint64_t d = hp->n_embd, qd = (uint64_t)hp->n_head * hp->head_dim, kvd = (uint64_t)hp->n_head_kv * hp->head_dim;
    uint64_t n = cap;
    uint64_t b = (uint64_t)64 << 20; // the backend's activation scratch
    b += 2 * (uint64_t)hp->n_layer * r256((uint64_t)n_seq * n_ctx * kvd * 2);
    b += r256(n * d * 4) * 2 + r256(n * (d > qd ? d : qd) * 4) + r256(n * qd * 4) * 2 + r256(n * kvd * 4) * 2 +
         r256(n * hp->n_ff * 4) * 2 + r256((uint64_t)AERO_GPU_HEAD_ROWS * n_vocab * 4) + r256(hp->rope_dim * 2 + 4);
    b += aero_gpu_batch_bytes(cap, n_seq, n_ctx, hp->n_head, hp->head_dim);
    return b + small + ((uint64_t)1 << 20);
}

// What aero_cuda_batch_new takes from the arena: positions, sequences, slots, bases, the mask and the attention's
// per-segment partial results.
uint64_t aero_gpu_batch_bytes(int max_tokens, int n_seq, int n_ctx, int n_head, int head_dim) {
    uint64_t n = max_tokens, segs = ((uint64_t)n_ctx + n + 255) / 256;
    return 3 * r256(n * 4) + r256((uint64_t)n_seq * 4) + r256(n * n) +
           r256(n * n_head * segs * (2 + (uint64_t)head_dim) * 4);
}

uint64_t aero_gpu_head_embd_bytes(aero_dtype type, int64_t cols, uint64_t nbytes, bool tied) {
    // the CUDA backend's get_rows types (aero_cuda_type_supported; cuda_emu.c lists the same)
    bool dense = type == AERO_DT_F32 || type == AERO_DT_F16 || type == AERO_DT_BF16;
    bool quant = type == AERO_DT_Q8_0 || type == AERO_DT_Q4_0 || type == AERO_DT_Q4_K || type == AERO_DT_Q5_K ||
                 type == AERO_DT_Q6_K;
    if (tied || !(dense || (quant && cols % 32 == 0))) return 0;
    return r256(nbytes);
}

// Residency in layer order: the first layers never wait for a copy, and a pass still streams the rest in order.
void aero_gpu_plan_needs(aero_gpu_plan *p, uint64_t *all, uint64_t *slot_out) {
    uint64_t slot = 0;
    bool any_host = false;
    p->total = 0;
    for (int u = 0; u < p->n_units; u++) {
        p->total += p->unit_bytes[u];
        if (p->unit_bytes[u] > slot) slot = p->unit_bytes[u];
        any_host |= p->host_ffn && p->host_ffn[u];
    }
    p->min_need = p->fixed + AERO_GPU_SLOTS * slot;
    *all = p->fixed + p->total + (any_host ? AERO_GPU_SLOTS * slot : 0);
    if (slot_out) *slot_out = slot;
}

aero_status aero_gpu_plan_choose(aero_gpu_plan *p, uint64_t gpu_mem, aero_error *err) {
    uint64_t all_need, slot;
    aero_gpu_plan_needs(p, &all_need, &slot);
    if (gpu_mem < p->min_need && gpu_mem < all_need)
        return aero_fail(err, AERO_ERR_NOMEM,
                         "--gpu-mem %llu bytes is too small: this model and context need at "
                         "least %llu bytes on the GPU (KV cache, activations and two weight slots of %llu bytes)",
                         (unsigned long long)gpu_mem, (unsigned long long)p->min_need, (unsigned long long)slot);
    p->budget = gpu_mem;
    uint64_t room = gpu_mem - p->fixed;
    bool all = all_need <= gpu_mem && all_need == p->fixed + p->total; // every unit resident, no slots
    if (!all) room -= AERO_GPU_SLOTS * slot;
    for (int i = 0; i < p->n_units; i++) {
        int u = !p->head_first ? i : i == 0 ? p->n_units - 1 : i - 1;
        p->vram[u] = !(p->host_ffn && p->host_ffn[u]) && (all || p->unit_bytes[u] <= room);
        if (!all && p->vram[u]) room -= p->unit_bytes[u];
    }
    p->slot_bytes = all ? 0 : slot;
    return AERO_OK;
}

// The embedding's VRAM planned beside a draft head's layer, from the file (forward_cuda.c: head_embd_bytes).
static uint64_t head_embd_from_gguf(const aero_gguf *g) {
    int64_t embd = aero_gguf_tensor_index(g, "token_embd.weight"), out = aero_gguf_tensor_index(g, "output.weight");
    if (embd < 0) return 0;
    const aero_tensor_info *te = &g->tensors[embd];
    return aero_gpu_head_embd_bytes((aero_dtype)te->type, (int64_t)te->ne[0], te->nbytes, out < 0 || out == embd);
}

aero_status aero_gpu_plan_from_gguf(const aero_gguf *g, int n_ctx, int n_seq, int n_tile, uint64_t gpu_mem,
                                    uint64_t head_vram, bool head_hot, aero_gpu_plan *p, aero_error *err) {
    memset(p, 0, sizeof *p);
    aero_hparams hp;
    if (aero_hparams_from_gguf(g, &hp, err)) return err->code;
    int64_t embd = aero_gguf_tensor_index(g, "token_embd.weight"), out = aero_gguf_tensor_index(g, "output.weight");
    if (embd < 0) return aero_fail(err, AERO_ERR_FORMAT, "no token_embd.weight: cannot plan");
    if (out < 0) out = embd; // tied
    p->n_units = hp.n_layer + 1;
    p->unit_bytes = calloc(p->n_units, sizeof *p->unit_bytes);
    p->vram = calloc(p->n_units, sizeof *p->vram);
    p->host_ffn = calloc(p->n_units, sizeof *p->host_ffn);
    if (!p->unit_bytes || !p->vram || !p->host_ffn) {
        aero_gpu_plan_free(p);
        return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) { // MoE layers: their FFN runs on the host
        int l = aero_gguf_tensor_layer(g->tensors[i].name);
        if (l >= 0 && l < hp.n_layer && aero_stream_is_expert_tensor(g->tensors[i].name, NULL)) p->host_ffn[l] = true;
    }
    uint64_t small = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const aero_tensor_info *t = &g->tensors[i];
        int l = aero_gguf_tensor_layer(t->name);
        bool matrix = t->n_elements != t->ne[0];
        if (l >= 0 && l < hp.n_layer && !aero_stream_is_expert_tensor(t->name, NULL)) {
            if (!matrix) small += r256(t->nbytes);
            else if (!p->host_ffn[l] || strstr(t->name, ".attn_")) p->unit_bytes[l] += r256(t->nbytes);
        } else if ((int64_t)i == out) p->unit_bytes[hp.n_layer] += r256(t->nbytes);
        else if (!strcmp(t->name, "output_norm.weight")) small += r256(t->nbytes);
    }
    aero_ctx_params cp = {.n_ctx = n_ctx, .n_seq = n_seq};
    int ctx = aero_ctx_params_n_ctx(&hp, &cp);
    p->fixed = aero_gpu_fixed_bytes(&hp, (int)g->tensors[embd].ne[1], ctx, n_seq > 0 ? n_seq : 1,
                                    aero_gpu_pass_cap(&hp, n_tile > 0 ? n_tile : AERO_GPU_MAX_PASS), small) +
               head_vram + (head_vram ? head_embd_from_gguf(g) : 0); // as forward_cuda.c plans it
    p->head_first = head_hot || head_vram > 0; // as forward_cuda.c plans it
    aero_status st = aero_gpu_plan_choose(p, gpu_mem, err);
    if (st) aero_gpu_plan_free(p);
    return st;
}

aero_status aero_gpu_plan_tiers(const aero_gguf *g, const aero_gpu_plan *p, uint64_t mem_budget, char *tier,
                                aero_error *err) {
    aero_stream *s = NULL;
    aero_stream_params sp = {.mem_budget = mem_budget,
                             .output_tensor = aero_gguf_tensor_index(g, "output.weight") >= 0 ? "output.weight"
                                                                                              : "token_embd.weight",
                             .embd_tensor = "token_embd.weight",
                             .plan_only = true,
                             .head_hot = p->head_first,
                             .external = p->vram};
    if (aero_stream_open(&s, g, p->n_units - 1, &sp, err)) return err->code;
    const aero_stream_plan *hp = aero_stream_get_plan(s);
    for (int u = 0; u < p->n_units; u++) tier[u] = p->vram[u] ? 'V' : hp->unit_resident[u] ? 'H' : 'D';
    aero_stream_close(s);
    return AERO_OK;
}

void aero_gpu_plan_free(aero_gpu_plan *p) {
    free(p->unit_bytes);
    free(p->vram);
    free(p->host_ffn);
    p->unit_bytes = NULL;
    p->vram = NULL;
    p->host_ffn = NULL;
}

aero_status aero_gpu_plan_print(const aero_gguf *g, const aero_ctx_params *kv, int n_tile, uint64_t gpu_mem,
                                uint64_t mem_budget, bool head_hot, FILE *f, aero_error *err) {
    aero_gpu_plan p;
    char a[32], b[32], c[32], d[32];
    if (aero_gpu_plan_from_gguf(g, kv->n_ctx, kv->n_seq, n_tile, gpu_mem, kv->gpu_head_vram, head_hot, &p, err))
        return err->code;
    int n_vram = 0;
    uint64_t vram_w = 0, host = 0, disk = 0;
    for (int u = 0; u < p.n_units; u++)
        if (p.vram[u]) n_vram++, vram_w += p.unit_bytes[u];
    fprintf(f, "\nGPU plan under --gpu-mem %s: %d of %d units VRAM-resident (%s), %s for the KV cache, activations "
               "and small tensors",
            aero_format_size(gpu_mem, a, sizeof a), n_vram, p.n_units, aero_format_size(vram_w, b, sizeof b),
            aero_format_size(p.fixed, c, sizeof c));
    if (kv->gpu_head_vram)
        fprintf(f, " and a draft head's layer (%s of them)", aero_format_size(kv->gpu_head_vram, b, sizeof b));
    if (kv->gpu_head_vram && head_embd_from_gguf(g))
        fprintf(f, " and the token embedding beside it (%s: the head looks up its drafted tokens on the device)",
                aero_format_size(head_embd_from_gguf(g), b, sizeof b));
    if (p.slot_bytes) fprintf(f, ", 2 copy slots of %s", aero_format_size(p.slot_bytes, d, sizeof d));
    fprintf(f, "; minimum --gpu-mem %s\n", aero_format_size(p.min_need, a, sizeof a));
    char *tier = malloc((size_t)p.n_units + 1);
    aero_status st = tier ? aero_gpu_plan_tiers(g, &p, mem_budget, tier, err) : aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    if (!st) {
        tier[p.n_units] = 0;
        for (int u = 0; u < p.n_units; u++) {
            if (tier[u] == 'H') host += p.unit_bytes[u];
            if (tier[u] == 'D') disk += p.unit_bytes[u];
        }
        fprintf(f, "  per unit: %s   (V VRAM, H host memory, D disk; the last is the output head)\n", tier);
        int n_moe = 0;
        for (int u = 0; u < p.n_units; u++) n_moe += p.host_ffn && p.host_ffn[u];
        if (n_moe)
            fprintf(f, "  %d MoE layers: attention on the GPU (copied each pass), router and experts on the host "
                       "(--mem and the expert cache)\n", n_moe);
        fprintf(f, "  per pass: %s copied over PCIe, of which %s read from disk first\n", aero_format_size(host + disk, a, sizeof a),
                aero_format_size(disk, b, sizeof b));
    } else {
        aero_error_prefix(err, "no host plan beside the GPU plan under --mem %s: ", aero_format_size(mem_budget, a, sizeof a));
    }
    free(tier);
    aero_gpu_plan_free(&p);
    return st;
}
