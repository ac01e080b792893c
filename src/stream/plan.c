// The residency planner: groups tensors into units and aligned read ranges, sizes the streaming window, and
// decides once, at open, what stays resident under the budget. Access is cyclic (layer units 0..L-1, then the
// head unit, again and again), so a fixed pinned set is the right cache: an LRU smaller than the scan never hits.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/util.h"
#include "stream_internal.h"

static uint64_t align_down(uint64_t x) { return x & ~(uint64_t)(ST_ALIGN - 1); }
static uint64_t align_up(uint64_t x) { return (x + ST_ALIGN - 1) & ~(uint64_t)(ST_ALIGN - 1); }


// Which unit a tensor belongs to: layer unit N for "blk.N.*", the head unit for the output head, -1 otherwise
// (the layer units are 0..head_unit-1).
static int tensor_unit(const char *name, int head_unit, const char *output) {
    int l = aero_gguf_tensor_layer(name);
    if (l >= 0 && l < head_unit) return l;
    if (output && !strcmp(name, output)) return head_unit;
    return -1;
}

// The one place that tells routed expert tensors from the rest of a layer (llama.cpp's names).
bool aero_stream_is_expert_tensor(const char *name, int *expert) {
    if (expert) *expert = -1;
    if (aero_gguf_tensor_layer(name) < 0) return false;
    const char *p = strchr(name + 4, '.') + 1; // after "blk.N."
    static const char *const merged[] = {"ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight",
                                         "ffn_gate_up_exps.weight"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(p, merged[i])) return true;
    static const char *const split[] = {"ffn_gate.", "ffn_up.", "ffn_down."};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(split[i]);
        if (strncmp(p, split[i], n)) continue;
        const char *q = p + n;
        long e = 0;
        if (*q < '0' || *q > '9') return false;
        for (; *q >= '0' && *q <= '9' && e < (1 << 20); q++) e = e * 10 + (*q - '0');
        if (strcmp(q, ".weight")) return false;
        if (expert) *expert = (int)e;
        return true;
    }
    return false;
}

// Small tensors (one row: norms, biases) stay resident so that a unit's reads are only its matrices.
static bool tensor_is_small(const aero_tensor_info *t) { return t->n_elements == t->ne[0]; }

static const aero_gguf *sort_g; // qsort has no context argument in C11

// Orders tensors by file, then offset, so that neighbours on disk become one read.
static int cmp_by_position(const void *a, const void *b) {
    const aero_tensor_info *x = &sort_g->tensors[*(const int64_t *)a], *y = &sort_g->tensors[*(const int64_t *)b];
    if (x->file != y->file) return x->file < y->file ? -1 : 1;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

// Turns a list of tensors (sorted by position) into aligned ranges and placements; returns the buffer size.
static uint64_t make_ranges(aero_stream *s, const int64_t *idx, int n, st_range *ranges, int *n_ranges,
                            st_place *places) {
    const aero_gguf *g = s->g;
    int nr = 0;
    uint64_t mem = 0;
    for (int i = 0; i < n; i++) {
        const aero_tensor_info *t = &g->tensors[idx[i]];
        uint64_t a = align_down(t->offset), end = t->offset + t->nbytes;
        st_range *r = nr ? &ranges[nr - 1] : NULL;
        if (r && r->file == t->file && a <= r->off + r->len + ST_GAP_MERGE) {
            if (end > r->need_end) r->need_end = end;
            uint64_t len = align_up(r->need_end) - r->off;
            mem += len - r->len;
            r->len = len;
        } else {
            r = &ranges[nr++];
            *r = (st_range){.file = t->file, .off = a, .need_end = end, .mem_off = mem};
            r->len = align_up(end) - a;
            mem += r->len;
        }
        places[i] = (st_place){.tensor = idx[i], .mem_off = r->mem_off + (t->offset - r->off)};
    }
    *n_ranges = nr;
    return mem;
}

// Row blocks of a head larger than every layer unit, each at most a layer unit's bytes, so that a streamed head
// needs no larger slot than a layer (the minimum budget is then the layer window, not the head). Built after the
// units, as units n_units.. with one range each; whether they are used is the planner's choice.
static aero_status build_head_parts(aero_stream *s, aero_error *err) {
    const st_unit *h = &s->units[s->head_unit];
    if (!s->params.head_in_parts || h->n_places != 1 || h->external) return AERO_OK;
    uint64_t maxl = 0;
    for (int u = 0; u < s->head_unit; u++)
        if (s->units[u].bytes > maxl) maxl = s->units[u].bytes;
    const aero_tensor_info *t = &s->g->tensors[s->places[h->first_place].tensor];
    uint64_t rb = aero_dtype_row_bytes(t->type, t->ne[0]), rows = t->n_dims >= 2 ? t->ne[1] : 1;
    if (h->bytes <= maxl || maxl <= 2 * ST_ALIGN || !rb || rows < 2 || rb * rows > t->nbytes) return AERO_OK;
    uint64_t per = (maxl - 2 * ST_ALIGN) / rb; // an unaligned block takes up to two more pages
    if (per < 1) return AERO_OK;
    uint64_t k = (rows + per - 1) / per;
    per = (rows + k - 1) / k; // balanced blocks
    k = (rows + per - 1) / per;
    st_unit *units = realloc(s->units, sizeof *units * (s->n_units + k));
    if (!units) return aero_fail(err, AERO_ERR_NOMEM, "stream: out of memory for the head blocks");
    s->units = units;
    st_range *ranges = realloc(s->ranges, sizeof *ranges * (s->n_ranges + k));
    if (ranges) s->ranges = ranges;
    st_place *places = realloc(s->places, sizeof *places * (s->n_places + k));
    if (places) s->places = places;
    if (!ranges || !places) return aero_fail(err, AERO_ERR_NOMEM, "stream: out of memory for the head blocks");
    int64_t tensor = s->places[s->units[s->head_unit].first_place].tensor;
    for (uint64_t p = 0; p < k; p++) {
        uint64_t r0 = p * per, r1 = r0 + per < rows ? r0 + per : rows;
        uint64_t start = t->offset + r0 * rb, end = t->offset + r1 * rb, a = align_down(start);
        st_range *r = &s->ranges[s->n_ranges];
        *r = (st_range){.file = t->file, .off = a, .len = align_up(end) - a, .need_end = end, .mem_off = 0};
        s->places[s->n_places] = (st_place){.tensor = tensor, .mem_off = start - a};
        s->units[s->n_units + p] = (st_unit){.first_range = s->n_ranges,
                                             .n_ranges = 1,
                                             .first_place = s->n_places,
                                             .n_places = 1,
                                             .bytes = r->len,
                                             .tensor_bytes = end - start};
        s->n_ranges++, s->n_places++;
    }
    s->n_parts = (int)k;
    s->part_rows = (int64_t)per;
    return AERO_OK;
}

// The routed experts: their one resident buffer (used when everything fits) and what the expert cache needs to
// be sized: experts per layer, the bytes one expert takes there, k from the metadata.
static aero_status expert_tables(aero_stream *s, int64_t *idx, aero_error *err) {
    const aero_gguf *g = s->g;
    aero_stream_plan *p = &s->plan;
    int n = 0, n_layer = s->head_unit;
    uint64_t *layer_span = calloc(n_layer + 1, sizeof *layer_span);
    int *layer_exp = calloc(n_layer + 1, sizeof *layer_exp);
    if (!layer_span || !layer_exp) {
        free(layer_span);
        free(layer_exp);
        return aero_fail(err, AERO_ERR_NOMEM, "stream: out of memory for the expert table");
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        if (s->kind[i] != ST_T_EXPERT) continue;
        const aero_tensor_info *t = &g->tensors[i];
        int l = aero_gguf_tensor_layer(t->name), e;
        aero_stream_is_expert_tensor(t->name, &e);
        uint64_t ne2 = t->n_dims >= 3 ? t->ne[2] : 1, slice = ne2 ? t->nbytes / ne2 : 0;
        layer_span[l] += ne2 * (align_up(slice) + ST_ALIGN); // an unaligned slice may straddle one more page
        if (e < 0 && (int)ne2 > layer_exp[l]) layer_exp[l] = (int)ne2;
        if (e >= 0 && e + 1 > layer_exp[l]) layer_exp[l] = e + 1;
        p->expert_bytes += t->nbytes;
        idx[n++] = (int64_t)i;
    }
    for (int l = 0; l < n_layer; l++) {
        if (!layer_exp[l]) continue;
        p->n_moe_layers++;
        if (layer_exp[l] > p->n_expert) p->n_expert = layer_exp[l];
        uint64_t span = layer_span[l] / (uint64_t)layer_exp[l];
        if (span > p->expert_span) p->expert_span = span;
    }
    free(layer_span);
    free(layer_exp);
    if (!n) return AERO_OK;
    const char *arch = aero_gguf_get_str(g, "general.architecture");
    char key[160];
    int64_t k = 0;
    snprintf(key, sizeof key, "%s.expert_used_count", arch ? arch : "");
    if (!aero_gguf_get_i64(g, key, &k) || k < 1 || k > p->n_expert) k = p->n_expert < 2 ? p->n_expert : 2;
    p->n_expert_used = (int)k;
    p->expert_min = (uint64_t)k * p->expert_span;
    sort_g = g;
    qsort(idx, n, sizeof *idx, cmp_by_position);
    s->exp_ranges = calloc(n, sizeof *s->exp_ranges);
    s->exp_places = calloc(n, sizeof *s->exp_places);
    if (!s->exp_ranges || !s->exp_places) return aero_fail(err, AERO_ERR_NOMEM, "stream: out of memory");
    s->n_exp_places = n;
    s->exp_mem_bytes = make_ranges(s, idx, n, s->exp_ranges, &s->n_exp_ranges, s->exp_places);
    return AERO_OK;
}

// Builds, once, the tables every later step uses: tensor kinds, units, their aligned ranges and placements.
aero_status st_build_tables(aero_stream *s, aero_error *err) {
    const aero_gguf *g = s->g;
    uint64_t nt = g->n_tensors;
    int64_t *idx = NULL;
    int *count = NULL;
    s->kind = calloc(nt + 1, sizeof *s->kind);
    s->unit_of = calloc(nt + 1, sizeof *s->unit_of);
    s->ptr = calloc(nt + 1, sizeof *s->ptr);
    s->units = calloc(s->n_units, sizeof *s->units);
    s->ranges = calloc(nt + 1, sizeof *s->ranges);
    s->places = calloc(nt + 1, sizeof *s->places);
    s->embd_ranges = calloc(1, sizeof *s->embd_ranges);
    idx = malloc((nt + 1) * sizeof *idx);
    count = calloc(s->n_units + 1, sizeof *count);
    if (!s->kind || !s->unit_of || !s->ptr || !s->units || !s->ranges || !s->places || !s->embd_ranges || !idx ||
        !count) {
        aero_fail(err, AERO_ERR_NOMEM, "stream: out of memory for the tensor table");
        goto fail;
    }
    const char *out_name = s->params.output_tensor;
    if (out_name && aero_gguf_tensor_index(g, out_name) < 0) {
        aero_fail(err, AERO_ERR_FORMAT, "stream: output tensor '%s' not in the model", out_name);
        goto fail;
    }
    s->embd = s->params.embd_tensor ? aero_gguf_tensor_index(g, s->params.embd_tensor) : -1;
    s->embd_in_head = s->embd >= 0 && out_name && !strcmp(out_name, s->params.embd_tensor);
    for (uint64_t i = 0; i < nt; i++) {
        const aero_tensor_info *t = &g->tensors[i];
        int u = tensor_unit(t->name, s->head_unit, out_name);
        s->unit_of[i] = u;
        if (u >= 0 && u < s->head_unit && aero_stream_is_expert_tensor(t->name, NULL)) {
            s->kind[i] = ST_T_EXPERT;
            s->unit_of[i] = -1;
        } else if (u < 0 && aero_gguf_tensor_layer(t->name) >= s->head_unit) s->kind[i] = ST_T_SKIP;
        else if (u >= 0 && !tensor_is_small(t)) s->kind[i] = ST_T_UNIT, count[u]++;
        else if (u < 0 && (int64_t)i == s->embd) s->kind[i] = ST_T_EMBD;
        else s->kind[i] = ST_T_SMALL, s->small_bytes += (t->nbytes + 63) & ~(uint64_t)63;
    }
    // each unit's tensors, sorted by position, become its ranges
    sort_g = g;
    int nr_total = 0, np_total = 0;
    for (int u = 0; u < s->n_units; u++) {
        int n = 0;
        for (uint64_t i = 0; i < nt; i++)
            if (s->unit_of[i] == u && s->kind[i] == ST_T_UNIT) idx[n++] = (int64_t)i;
        qsort(idx, n, sizeof *idx, cmp_by_position);
        st_unit *un = &s->units[u];
        un->first_range = nr_total;
        un->first_place = np_total;
        un->n_places = n;
        un->bytes = make_ranges(s, idx, n, s->ranges + nr_total, &un->n_ranges, s->places + np_total);
        for (int i = 0; i < n; i++) un->tensor_bytes += g->tensors[idx[i]].nbytes;
        nr_total += un->n_ranges;
        np_total += n;
    }
    s->n_ranges = nr_total;
    s->n_places = np_total;
    if (s->params.external)
        for (int u = 0; u < s->n_units; u++) s->units[u].external = s->params.external[u];
    s->params.external = NULL; // the caller's array may not outlive the open; the units keep the flags
    if (build_head_parts(s, err)) goto fail;
    if (expert_tables(s, idx, err)) goto fail;
    if (s->embd >= 0) {
        const aero_tensor_info *t = &g->tensors[s->embd];
        size_t row = aero_dtype_row_bytes(t->type, t->ne[0]);
        if (row == 0 || t->ne[1] == 0 || row * t->ne[1] > t->nbytes) {
            aero_fail(err, AERO_ERR_FORMAT,
                      "stream: embedding '%s' has rows of %zu bytes that do not fit its %llu "
                      "bytes",
                      t->name, row, (unsigned long long)t->nbytes);
            goto fail;
        }
        s->row_buf_bytes = align_up(row) + ST_ALIGN;
        if (s->kind[s->embd] == ST_T_EMBD) {
            st_place pl;
            s->embd_bytes = make_ranges(s, &s->embd, 1, s->embd_ranges, &s->n_embd_ranges, &pl);
        }
    }
    free(idx);
    free(count);
    return AERO_OK;
fail:
    free(idx);
    free(count);
    return err->code;
}

// The ring allocator shared by the runtime and the tests (FIFO: units are released in the order read).
bool st_ring_place(uint64_t cap, int n_live, uint64_t first_off, uint64_t alloc_off, uint64_t size, uint64_t *at) {
    if (n_live == 0) {
        *at = 0;
        return size <= cap;
    }
    if (alloc_off > first_off) { // live: [first_off, alloc_off); free: the tail, then the head
        if (cap - alloc_off >= size) {
            *at = alloc_off;
            return true;
        }
        *at = 0;
        return first_off >= size;
    }
    *at = alloc_off; // wrapped: free is [alloc_off, first_off)
    return first_off - alloc_off >= size;
}

typedef struct {
    bool feasible;
    bool head_resident;
    bool *pinned; // per unit (layer units and the head unit)
    uint64_t ring, slot, fixed, cost, min_cost, streamed;
    int n_streamed, depth;
    int max_depth; // prefetch depth asked for (lowered when only a smaller ring fits)
} plan_option;

// A unit's bytes as the plan counts them: an external unit (held by the caller, e.g. in VRAM) takes none.
static uint64_t plan_bytes(const aero_stream *s, int u) { return s->units[u].external ? 0 : s->units[u].bytes; }

// Pins `npin` of the candidate layer units, evenly spaced, and prices the option. The streamed units share a ring
// of depth + 1 slots of the largest streamed unit's size: with equal slots the cyclic schedule never fragments
// the ring (layer units differ by a few aligned pages; a head unit larger than a layer unit makes its option cost
// more than keeping the head resident, so that option then loses on its own).
static void price_option(const aero_stream *s, plan_option *o, const int *cand, int n_cand, int npin) {
    for (int u = 0; u < s->n_units; u++) o->pinned[u] = plan_bytes(s, u) == 0;
    if (o->head_resident) o->pinned[s->head_unit] = true;
    for (int i = 0; i < npin; i++) o->pinned[cand[(int)(((int64_t)2 * i + 1) * n_cand / (2 * npin))]] = true;
    int k = 0;
    uint64_t pinned_bytes = 0, streamed = 0, slot = 0;
    for (int u = 0; u < s->n_units; u++) {
        if (o->pinned[u]) pinned_bytes += plan_bytes(s, u);
        else if (u == s->head_unit && s->n_parts) { // a streamed head goes in its row blocks
            for (int b = 0; b < s->n_parts; b++) {
                const st_unit *pu = &s->units[s->n_units + b];
                k++, streamed += pu->bytes;
                if (pu->bytes > slot) slot = pu->bytes;
            }
        } else {
            k++, streamed += plan_bytes(s, u);
            if (plan_bytes(s, u) > slot) slot = plan_bytes(s, u);
        }
    }
    o->n_streamed = k;
    o->depth = k < o->max_depth ? k : o->max_depth;
    o->slot = slot;
    o->ring = (uint64_t)(o->depth + 1) * slot;
    o->streamed = streamed;
    o->cost = o->fixed + pinned_bytes + o->ring;
}

// Best plan with the head unit resident or streamed: the most layer units pinned that the budget leaves room for.
static void plan_with_head(const aero_stream *s, plan_option *o, bool head_resident, uint64_t budget, int *cand,
                           int max_depth) {
    o->head_resident = head_resident;
    o->max_depth = max_depth;
    o->fixed = s->small_bytes + s->row_buf_bytes;
    int n_cand = 0;
    uint64_t maxl = 1;
    for (int u = 0; u < s->head_unit; u++) // the layer units
        if (plan_bytes(s, u)) {
            cand[n_cand++] = u;
            if (plan_bytes(s, u) > maxl) maxl = plan_bytes(s, u);
        }
    price_option(s, o, cand, n_cand, 0);
    o->min_cost = o->cost;
    o->feasible = o->cost <= budget;
    if (!o->feasible) return;
    uint64_t fit = (budget - o->min_cost) / maxl;
    int npin = fit > (uint64_t)n_cand ? n_cand : (int)fit;
    for (;;) {
        price_option(s, o, cand, n_cand, npin);
        if (o->cost <= budget || npin == 0) break;
        npin--;
    }
    while (npin < n_cand) {
        price_option(s, o, cand, n_cand, npin + 1);
        if (o->cost > budget) break;
        npin++;
    }
    price_option(s, o, cand, n_cand, npin);
}

// Decides what stays resident under the budget, or refuses a budget below the minimum, saying the minimum.
aero_status st_plan(aero_stream *s, aero_error *err) {
    aero_stream_plan *p = &s->plan;
    const uint64_t budget = s->params.mem_budget;
    int nu = s->n_units;
    int *cand = malloc(sizeof *cand * nu);
    bool *pin_a = calloc(nu, sizeof(bool)), *pin_b = calloc(nu, sizeof(bool));
    p->unit_resident = calloc(nu, sizeof(bool));
    s->streamed = calloc(nu + s->n_parts, sizeof(int));
    if (!cand || !pin_a || !pin_b || !p->unit_resident || !s->streamed) {
        aero_fail(err, AERO_ERR_NOMEM, "stream: out of memory for the plan");
        goto fail;
    }
    p->n_units = nu;
    p->budget = budget;
    p->io_threads = s->io_threads;
    p->small_bytes = s->small_bytes;
    uint64_t all = s->small_bytes;
    for (int u = 0; u < nu; u++) all += plan_bytes(s, u);
    if (s->embd >= 0 && !s->embd_in_head) all += s->embd_bytes;
    all += s->exp_mem_bytes;
    // experts that do not all fit leave the expert cache at least its minimum; the dense plan gets the rest
    // (a dense unit is read every token, an expert only when routed to, so pinning dense bytes pays first)
    const uint64_t exp_min = s->exp_mem_bytes ? p->expert_min : 0;
    const bool head_external = s->units[s->head_unit].external; // a tied embedding is then read by rows

    plan_option a = {.pinned = pin_a}, b = {.pinned = pin_b};
    const uint64_t limit = !budget ? UINT64_MAX : budget >= all ? budget : budget > exp_min ? budget - exp_min : 0;
    bool can_stream_head = plan_bytes(s, s->head_unit) > 0;
    // The asked depth first; a budget between the 2-slot and the asked minimums gets fewer slots (prefetch 1: the
    // disk still reads the next unit while one is computed), the minimum is the 2-slot one.
    p->prefetch_asked = s->prefetch;
    uint64_t min_at[2] = {0, 0}; // the minimums at 2 slots and at the asked depth
    for (int i = 0; i < 2; i++) {
        plan_with_head(s, &a, true, limit, cand, i ? s->prefetch : 1);
        if (can_stream_head) plan_with_head(s, &b, false, limit, cand, i ? s->prefetch : 1);
        min_at[i] = (can_stream_head && b.min_cost < a.min_cost ? b.min_cost : a.min_cost) + exp_min;
    }
    p->min_budget = min_at[0];
    s->min_budget_asked = min_at[1];
    int depth = s->prefetch;
    for (;; depth--) {
        plan_with_head(s, &a, true, limit, cand, depth);
        if (can_stream_head) plan_with_head(s, &b, false, limit, cand, depth);
        if (a.feasible || (can_stream_head && b.feasible) || depth <= 1) break;
    }
    const plan_option *smallest = can_stream_head && b.min_cost < a.min_cost ? &b : &a;
    s->depth_lowered = depth < s->prefetch;

    if (budget == 0 || budget >= all) { // everything resident: no window, no IO threads after load
        for (int u = 0; u < nu; u++) s->units[u].resident = p->unit_resident[u] = true;
        s->n_parts = 0;
        p->resident_bytes = all;
        p->n_pinned = nu;
        p->head_resident = true;
        p->embd_resident = s->embd >= 0 && !(s->embd_in_head && head_external);
        p->embd_bytes = s->embd_in_head ? 0 : s->embd_bytes;
        p->prefetch = s->prefetch;
        p->experts_resident = s->exp_mem_bytes > 0;
        if (p->embd_resident) s->row_buf_bytes = 0;
        goto done;
    }
    if (!a.feasible && !(can_stream_head && b.feasible)) {
        char bb[32], mb[32], sb[32], wb[32], ub[32], hb[32];
        const plan_option *m = smallest;
        uint64_t maxu = m->slot;
        char head[96] = "", suggest[32]; // a --mem value at or just above the minimum
        if (p->min_budget >= (1ull << 30))
            snprintf(suggest, sizeof suggest, "%.2fG", (double)((p->min_budget * 100 + (1ull << 30) - 1) >> 30) / 100);
        else snprintf(suggest, sizeof suggest, "%.1fM", (double)((p->min_budget * 10 + (1ull << 20) - 1) >> 20) / 10);
        char exp_note[96] = "", eb[32];
        if (exp_min)
            snprintf(exp_note, sizeof exp_note, " and an expert cache of %s (%d experts)",
                     aero_format_size(exp_min, eb, sizeof eb), p->n_expert_used);
        if (m->head_resident && can_stream_head)
            snprintf(head, sizeof head, " and the output head (%s)",
                     aero_format_size(s->units[s->head_unit].bytes, hb, sizeof hb));
        aero_fail(err, AERO_ERR_NOMEM,
                  "--mem %s is below the minimum %s (%llu bytes) for this model: a streaming "
                  "window of %s (%d slots of %s, prefetch %d) plus %s of resident small "
                  "tensors%s%s; use --mem %s or more",
                  aero_format_size(budget, bb, sizeof bb), aero_format_size(p->min_budget, mb, sizeof mb),
                  (unsigned long long)p->min_budget, aero_format_size(m->ring, wb, sizeof wb), m->depth + 1,
                  aero_format_size(maxu, ub, sizeof ub), m->depth, aero_format_size(s->small_bytes + s->row_buf_bytes, sb, sizeof sb),
                  head, exp_note, suggest);
        goto fail;
    }
    const plan_option *best = &a;
    if (!a.feasible || (!s->params.head_hot && can_stream_head && b.feasible && b.streamed < a.streamed)) best = &b;
    uint64_t resident = best->cost - best->ring;
    // the untied embedding is the last thing worth holding: a lookup reads only a few rows
    bool embd_res = false;
    if (s->embd >= 0 && !s->embd_in_head && best->cost - s->row_buf_bytes + s->embd_bytes <= limit) {
        embd_res = true;
        resident = resident - s->row_buf_bytes + s->embd_bytes;
        s->row_buf_bytes = 0;
    }
    if (s->embd_in_head && best->head_resident && !head_external) { // the rows come from the resident head
        resident -= s->row_buf_bytes;
        s->row_buf_bytes = 0;
    }
    int k = 0;
    for (int u = 0; u < nu; u++) {
        s->units[u].resident = p->unit_resident[u] = best->pinned[u];
        if (best->pinned[u]) p->n_pinned++;
        else s->streamed[k++] = u;
    }
    s->n_streamed = k;
    if (!best->head_resident && s->n_parts) { // the head unit's place in the cycle goes to its row blocks
        k = 0;
        for (int u = 0; u < nu; u++) {
            if (best->pinned[u]) continue;
            if (u == s->head_unit)
                for (int b2 = 0; b2 < s->n_parts; b2++) s->streamed[k++] = s->n_units + b2;
            else s->streamed[k++] = u;
        }
        s->n_streamed = k;
        p->head_parts = s->n_parts;
    } else {
        s->n_parts = 0; // built but unused: the head is resident (or there is no head)
    }
    s->ring_bytes = best->ring;
    s->slot_bytes = best->slot;
    s->depth = best->depth;
    p->resident_bytes = resident;
    p->streamed_bytes = best->streamed;
    p->window_bytes = best->ring;
    p->n_streamed = k;
    p->n_slots = best->depth + 1;
    p->prefetch = best->depth;
    p->head_resident = best->pinned[s->head_unit];
    p->embd_resident = s->embd >= 0 && (s->embd_in_head ? p->head_resident && !head_external : embd_res);
    p->embd_bytes = embd_res ? s->embd_bytes : 0;
    if (exp_min) p->expert_budget = budget - resident - best->ring;
done:
    free(cand);
    free(pin_a);
    free(pin_b);
    return AERO_OK;
fail:
    free(cand);
    free(pin_a);
    free(pin_b);
    return err->code;
}

// The plan's prediction of decode IO, for `aerollm info` before anything is read.
double aero_stream_plan_bytes_per_token(const aero_stream_plan *p) {
    double b = (double)p->streamed_bytes;
    if (p->n_moe_layers && !p->experts_resident && p->expert_bytes) {
        double cached = (double)(p->expert_budget / (p->expert_span ? p->expert_span : 1)),
               all = (double)p->n_expert * p->n_moe_layers, miss = cached >= all ? 0 : 1 - cached / all;
        b += (double)p->n_moe_layers * p->n_expert_used * ((double)p->expert_bytes / all) * miss;
    }
    return b;
}

// What `aerollm info --mem` adds for a MoE model, kept in the library so the CLI only calls it.
void aero_stream_print_expert_plan(const aero_stream_plan *p, FILE *f) {
    if (!p->n_moe_layers) return;
    char a[32], b[32], c[32], d[32], e[32];
    uint64_t dense = p->resident_bytes;
    fprintf(f, "  experts: %d MoE layers x %d experts, %d used per token, %s in all (%s per expert in the cache)\n",
            p->n_moe_layers, p->n_expert, p->n_expert_used, aero_format_size(p->expert_bytes, a, sizeof a),
            aero_format_size(p->expert_span, b, sizeof b));
    if (p->experts_resident) {
        fprintf(f, "  split: everything resident (%s of experts among the resident bytes)\n",
                aero_format_size(p->expert_bytes, a, sizeof a));
        return;
    }
    uint64_t n_cached = p->expert_span ? p->expert_budget / p->expert_span : 0;
    fprintf(f, "  split of --mem %s: dense resident %s + window %s + expert cache %s (%llu of %llu experts, %.1f%%)\n",
            aero_format_size(p->budget, a, sizeof a), aero_format_size(dense, b, sizeof b), aero_format_size(p->window_bytes, c, sizeof c),
            aero_format_size(p->expert_budget, d, sizeof d), (unsigned long long)n_cached,
            (unsigned long long)p->n_expert * p->n_moe_layers,
            100.0 * (double)n_cached / ((double)p->n_expert * p->n_moe_layers));
    fprintf(f,
            "  expected read per decode token: %s (dense streamed %s + routed experts missing from the cache, "
            "uniform-routing estimate; a skewed router reads less)\n",
            aero_format_size((uint64_t)aero_stream_plan_bytes_per_token(p), e, sizeof e),
            aero_format_size(p->streamed_bytes, a, sizeof a));
}
