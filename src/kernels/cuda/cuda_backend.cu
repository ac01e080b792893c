// Device, VRAM arena, pinned host memory, streams, events and the batch upload of the CUDA backend.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.cuh"

// ---- device ----------------------------------------------------------------------------------------------

// Counts devices without failing: no driver or no GPU is simply zero.
extern "C" int aero_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); // clear the sticky "no device" error
        return 0;
    }
    return n;
}

// Reads the properties the planner and the benchmarks print.
extern "C" aero_status aero_cuda_device_info(int device, aero_cuda_info *info, aero_error *err) {
    int n = aero_cuda_device_count();
    if (n <= 0) return aero_fail(err, AERO_ERR_UNSUPPORTED, "no CUDA device");
    if (device < 0 || device >= n)
        return aero_fail(err, AERO_ERR_INVALID, "CUDA device %d does not exist (%d present)", device, n);
    cudaDeviceProp p;
    CU_TRY(cudaGetDeviceProperties(&p, device), "cudaGetDeviceProperties");
    memset(info, 0, sizeof *info);
    info->device = device;
    snprintf(info->name, sizeof info->name, "%s", p.name);
    info->cc_major = p.major;
    info->cc_minor = p.minor;
    info->n_sm = p.multiProcessorCount;
    int clock_khz = 0, bus_bits = 0;
    cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, device);
    cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device);
    cudaGetLastError();
    info->mem_bus_gbs = 2.0 * clock_khz * 1e3 * (bus_bits / 8) / 1e9; // double data rate
    CU_TRY(cudaSetDevice(device), "cudaSetDevice");
    CU_TRY(cudaMemGetInfo(&info->free_vram, &info->total_vram), "cudaMemGetInfo");
    return AERO_OK;
}

// Opens the device, its two streams and the arena (one allocation of the whole budget).
extern "C" aero_status aero_cuda_init(aero_cuda **out, int device, size_t vram_budget, aero_error *err) {
    *out = NULL;
    aero_cuda_info info;
    aero_status st = aero_cuda_device_info(device, &info, err);
    if (st) return st;
    size_t margin = info.free_vram / 20 > ((size_t)512 << 20) ? info.free_vram / 20 : ((size_t)512 << 20);
    if (vram_budget == 0) vram_budget = info.free_vram > margin ? info.free_vram - margin : 0;
    if (vram_budget == 0 || vram_budget > info.free_vram)
        return aero_fail(err, AERO_ERR_NOMEM, "VRAM budget of %zu MiB does not fit in the %zu MiB free on %s",
                         vram_budget >> 20, info.free_vram >> 20, info.name);
    aero_cuda *cu = (aero_cuda *)calloc(1, sizeof *cu);
    if (!cu) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    cu->info = info;
    cudaError_t e = cudaStreamCreateWithFlags(&cu->compute, cudaStreamNonBlocking);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&cu->copy, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        aero_cuda_free(cu);
        return aero_cuda_fail(err, e, "cudaStreamCreate");
    }
    e = cudaMalloc((void **)&cu->arena, vram_budget);
    if (e != cudaSuccess) {
        cudaGetLastError();
        aero_cuda_free(cu);
        return aero_fail(err, AERO_ERR_NOMEM, "cannot allocate the VRAM budget of %zu MiB on %s (%zu MiB free): %s",
                         vram_budget >> 20, info.name, info.free_vram >> 20, cudaGetErrorString(e));
    }
    cu->budget = vram_budget;
    st = aero_cuda_alloc(cu, AERO_CUDA_SCRATCH_FLOATS * sizeof(float), (void **)&cu->scratch, err);
    if (st) {
        aero_cuda_free(cu);
        return aero_error_prefix(err, "activation scratch: ");
    }
    cu->scratch_floats = AERO_CUDA_SCRATCH_FLOATS;
    cu->reserved = cu->used;
    // AERO_CUDA_ACT_F16=1: the f16 copy always, as before aero_cuda_act_f16_note existed (A/B runs)
    const char *f16 = getenv("AERO_CUDA_ACT_F16");
    cu->act_f16 = f16 && !strcmp(f16, "1");
    *out = cu;
    return AERO_OK;
}

// Releases the arena and the streams; the device context stays for the process.
extern "C" void aero_cuda_free(aero_cuda *cu) {
    if (!cu) return;
    cudaSetDevice(cu->info.device);
    if (cu->compute) cudaStreamSynchronize(cu->compute);
    if (cu->copy) cudaStreamSynchronize(cu->copy);
    if (cu->arena) cudaFree(cu->arena);
    if (cu->compute) cudaStreamDestroy(cu->compute);
    if (cu->copy) cudaStreamDestroy(cu->copy);
    cudaGetLastError();
    free(cu);
}

extern "C" const aero_cuda_info *aero_cuda_get_info(const aero_cuda *cu) { return &cu->info; }

// ---- arena -----------------------------------------------------------------------------------------------

// Bump allocation: the budget is taken once at init, so "over budget" is an exact, early, named failure.
extern "C" aero_status aero_cuda_alloc(aero_cuda *cu, size_t bytes, void **dev, aero_error *err) {
    *dev = NULL;
    size_t need = (bytes + 255) & ~(size_t)255;
    if (need < bytes || need > cu->budget - cu->used)
        return aero_fail(err, AERO_ERR_NOMEM,
                         "VRAM budget exceeded: %zu bytes asked, %zu of %zu bytes in use (%zu MiB budget)", bytes,
                         cu->used, cu->budget, cu->budget >> 20);
    *dev = cu->arena + cu->used;
    cu->used += need;
    return AERO_OK;
}

extern "C" size_t aero_cuda_arena_mark(const aero_cuda *cu) { return cu->used; }
extern "C" size_t aero_cuda_arena_budget(const aero_cuda *cu) { return cu->budget; }

// Gives back everything allocated after `mark`; the caller makes sure no queued work still uses it.
extern "C" void aero_cuda_arena_reset(aero_cuda *cu, size_t mark) {
    if (mark < cu->reserved) mark = cu->reserved;
    if (mark <= cu->used) cu->used = mark;
}

// ---- pinned host memory ----------------------------------------------------------------------------------

// Page-locked and portable, so any stream of any device copies from it asynchronously.
extern "C" aero_status aero_cuda_host_alloc(size_t bytes, void **host, aero_error *err) {
    *host = NULL;
    CU_TRY(cudaHostAlloc(host, bytes ? bytes : 1, cudaHostAllocPortable), "cudaHostAlloc (pinned host memory)");
    return AERO_OK;
}

extern "C" void aero_cuda_host_free(void *host) {
    if (host) cudaFreeHost(host);
}

extern "C" aero_status aero_cuda_host_register(void *host, size_t bytes, aero_error *err) {
    if (!host || !bytes) return AERO_OK;
    CU_TRY(cudaHostRegister(host, bytes, cudaHostRegisterPortable), "cudaHostRegister (pinning host memory)");
    return AERO_OK;
}

extern "C" void aero_cuda_host_unregister(void *host) {
    if (host && cudaHostUnregister(host) != cudaSuccess) cudaGetLastError();
}

// ---- streams, copies, events -----------------------------------------------------------------------------

static cudaStream_t stream_of(aero_cuda *cu, aero_cuda_stream s) {
    return s == AERO_CUDA_STREAM_COPY ? cu->copy : cu->compute;
}

extern "C" aero_status aero_cuda_copy_h2d_async(aero_cuda *cu, aero_cuda_stream s, void *dev, const void *host,
                                                size_t bytes, aero_error *err) {
    CU_TRY(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, stream_of(cu, s)), "host-to-device copy");
    return AERO_OK;
}

// Synchronous for the caller: the host reads the result right after.
extern "C" aero_status aero_cuda_copy_d2h(aero_cuda *cu, void *host, const void *dev, size_t bytes, aero_error *err) {
    CU_TRY(cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, cu->compute), "device-to-host copy");
    CU_TRY(cudaStreamSynchronize(cu->compute), "device-to-host copy (sync)");
    return AERO_OK;
}

extern "C" aero_status aero_cuda_copy_d2d(aero_cuda *cu, void *dst, const void *src, size_t bytes, aero_error *err) {
    CU_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cu->compute), "device-to-device copy");
    return AERO_OK;
}

extern "C" aero_status aero_cuda_memset0(aero_cuda *cu, void *dev, size_t bytes, aero_error *err) {
    CU_TRY(cudaMemsetAsync(dev, 0, bytes, cu->compute), "cudaMemsetAsync");
    return AERO_OK;
}

// Events with timing, so benchmarks can use the same ones the pipeline orders with.
extern "C" aero_status aero_cuda_event_new(aero_cuda *cu, aero_cuda_event **ev, aero_error *err) {
    *ev = NULL;
    aero_cuda_event *e = (aero_cuda_event *)calloc(1, sizeof *e);
    if (!e) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    cudaError_t r = cudaEventCreate(&e->ev);
    if (r != cudaSuccess) {
        free(e);
        return aero_cuda_fail(err, r, "cudaEventCreate");
    }
    e->device = cu->info.device;
    *ev = e;
    return AERO_OK;
}

extern "C" void aero_cuda_event_free(aero_cuda_event *ev) {
    if (!ev) return;
    cudaEventDestroy(ev->ev);
    free(ev);
}

extern "C" aero_status aero_cuda_record(aero_cuda *cu, aero_cuda_stream s, aero_cuda_event *ev, aero_error *err) {
    CU_TRY(cudaEventRecord(ev->ev, stream_of(cu, s)), "cudaEventRecord");
    return AERO_OK;
}

extern "C" aero_status aero_cuda_wait(aero_cuda *cu, aero_cuda_stream s, aero_cuda_event *ev, aero_error *err) {
    CU_TRY(cudaStreamWaitEvent(stream_of(cu, s), ev->ev, 0), "cudaStreamWaitEvent");
    return AERO_OK;
}

extern "C" aero_status aero_cuda_event_sync(aero_cuda_event *ev, aero_error *err) {
    CU_TRY(cudaEventSynchronize(ev->ev), "cudaEventSynchronize");
    return AERO_OK;
}

extern "C" float aero_cuda_event_ms(aero_cuda_event *a, aero_cuda_event *b) {
    float ms = 0;
    if (cudaEventElapsedTime(&ms, a->ev, b->ev) != cudaSuccess) {
        cudaGetLastError();
        return -1.0f;
    }
    return ms;
}

// Drains both streams; the first asynchronous error of a kernel or copy surfaces here.
extern "C" aero_status aero_cuda_sync(aero_cuda *cu, aero_error *err) {
    CU_TRY(cudaStreamSynchronize(cu->copy), "copy stream");
    CU_TRY(cudaStreamSynchronize(cu->compute), "compute stream");
    CU_TRY(cudaGetLastError(), "kernel");
    return AERO_OK;
}

// ---- batch -----------------------------------------------------------------------------------------------

extern "C" aero_status aero_cuda_batch_new(aero_cuda *cu, int max_tokens, int n_seq, int n_ctx, int n_head,
                                           int head_dim, aero_cuda_batch **out, aero_error *err) {
    *out = NULL;
    if (max_tokens <= 0 || max_tokens > 4096 || n_seq <= 0 || n_ctx <= 0 || n_head <= 0 || head_dim <= 0 ||
        head_dim > 256)
        return aero_fail(err, AERO_ERR_INVALID,
                         "CUDA batch: %d tokens, %d sequences, %d slots, %d heads of %d (head_dim must be <= 256)",
                         max_tokens, n_seq, n_ctx, n_head, head_dim);
    aero_cuda_batch *b = (aero_cuda_batch *)calloc(1, sizeof *b);
    if (!b) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    b->cu = cu;
    b->max_tokens = max_tokens, b->n_seq = n_seq, b->n_ctx = n_ctx, b->n_head = n_head, b->head_dim = head_dim;
    b->part_segs = (n_ctx + max_tokens + AERO_ATTN_SEG - 1) / AERO_ATTN_SEG;
    size_t mt = (size_t)max_tokens;
    b->stage_bytes = 3 * mt * 4 + (size_t)n_seq * 4 + mt * mt;
    aero_status st;
    if ((st = aero_cuda_alloc(cu, mt * 4, (void **)&b->d_pos, err)) ||
        (st = aero_cuda_alloc(cu, mt * 4, (void **)&b->d_seq, err)) ||
        (st = aero_cuda_alloc(cu, mt * 4, (void **)&b->d_slot, err)) ||
        (st = aero_cuda_alloc(cu, (size_t)n_seq * 4, (void **)&b->d_base, err)) ||
        (st = aero_cuda_alloc(cu, mt * mt, (void **)&b->d_mask, err)) ||
        (st = aero_cuda_alloc(cu, mt * n_head * b->part_segs * (size_t)(2 + head_dim) * 4, (void **)&b->d_part, err)) ||
        (st = aero_cuda_host_alloc(b->stage_bytes, &b->h_stage, err))) {
        free(b);
        return st;
    }
    cudaError_t e = cudaEventCreateWithFlags(&b->staged, cudaEventDisableTiming);
    if (e != cudaSuccess) {
        aero_cuda_host_free(b->h_stage);
        free(b);
        return aero_cuda_fail(err, e, "cudaEventCreate");
    }
    *out = b;
    return AERO_OK;
}

// The device buffers stay in the arena (released with it); the staging and the event go now.
extern "C" void aero_cuda_batch_free(aero_cuda_batch *b) {
    if (!b) return;
    cudaEventSynchronize(b->staged);
    cudaEventDestroy(b->staged);
    aero_cuda_host_free(b->h_stage);
    free(b);
}

extern "C" const int32_t *aero_cuda_batch_pos(const aero_cuda_batch *b) { return b->d_pos; }

// Checks the batch on the host (slots, sequences, mask diagonal), stages it in pinned memory and queues one
// copy per array on the compute stream, so the layers that follow see it in order.
extern "C" aero_status aero_cuda_batch_set(aero_cuda_batch *b, int n, const int32_t *pos, const int32_t *seq,
                                           const int32_t *slot, const uint8_t *mask, const int32_t *base,
                                           aero_error *err) {
    if (n <= 0 || n > b->max_tokens)
        return aero_fail(err, AERO_ERR_INVALID, "CUDA batch of %d tokens (1..%d)", n, b->max_tokens);
    int max_vis = 0;
    for (int i = 0; i < n; i++) {
        int s = seq ? seq[i] : 0;
        if (s < 0 || s >= b->n_seq) return aero_fail(err, AERO_ERR_INVALID, "batch token %d: sequence %d", i, s);
        if (slot[i] < 0 || slot[i] >= b->n_ctx || base[s] < 0 || base[s] > b->n_ctx)
            return aero_fail(err, AERO_ERR_RANGE, "batch token %d: slot %d, base %d, context %d", i, slot[i], base[s],
                             b->n_ctx);
        int vis = base[s] + i + 1; // an upper bound on the token's visible keys
        if (vis > max_vis) max_vis = vis;
    }
    b->max_segs = (max_vis + AERO_ATTN_SEG - 1) / AERO_ATTN_SEG;
    if (b->max_segs > b->part_segs) b->max_segs = b->part_segs;
    CU_TRY(cudaEventSynchronize(b->staged), "batch staging");
    char *h = (char *)b->h_stage;
    int32_t *hp = (int32_t *)h, *hs = hp + n, *hl = hs + n, *hb = hl + n;
    uint8_t *hm = (uint8_t *)(hb + b->n_seq);
    memcpy(hp, pos, (size_t)n * 4);
    for (int i = 0; i < n; i++) hs[i] = seq ? seq[i] : 0;
    memcpy(hl, slot, (size_t)n * 4);
    memcpy(hb, base, (size_t)b->n_seq * 4);
    b->has_mask = mask != NULL;
    if (mask) memcpy(hm, mask, (size_t)n * n);
    cudaStream_t st = b->cu->compute;
    CU_TRY(cudaMemcpyAsync(b->d_pos, hp, (size_t)n * 4, cudaMemcpyHostToDevice, st), "batch upload");
    CU_TRY(cudaMemcpyAsync(b->d_seq, hs, (size_t)n * 4, cudaMemcpyHostToDevice, st), "batch upload");
    CU_TRY(cudaMemcpyAsync(b->d_slot, hl, (size_t)n * 4, cudaMemcpyHostToDevice, st), "batch upload");
    CU_TRY(cudaMemcpyAsync(b->d_base, hb, (size_t)b->n_seq * 4, cudaMemcpyHostToDevice, st), "batch upload");
    if (mask) CU_TRY(cudaMemcpyAsync(b->d_mask, hm, (size_t)n * n, cudaMemcpyHostToDevice, st), "batch upload");
    CU_TRY(cudaEventRecord(b->staged, st), "cudaEventRecord");
    b->n = n;
    return AERO_OK;
}

// ---- CUDA graphs -----------------------------------------------------------------------------------------

struct aero_cuda_graph {
    cudaGraphExec_t exec;
};

// Relaxed mode: other threads (stream/'s IO) may still call the runtime while the compute stream records.
extern "C" aero_status aero_cuda_capture_begin(aero_cuda *cu, aero_error *err) {
    CU_TRY(cudaStreamBeginCapture(cu->compute, cudaStreamCaptureModeRelaxed), "cudaStreamBeginCapture");
    return AERO_OK;
}

extern "C" aero_status aero_cuda_capture_end(aero_cuda *cu, aero_cuda_graph **out, aero_error *err) {
    *out = NULL;
    cudaGraph_t graph = NULL;
    cudaError_t e = cudaStreamEndCapture(cu->compute, &graph);
    cudaGraphExec_t exec = NULL;
    if (e == cudaSuccess) e = cudaGraphInstantiate(&exec, graph, 0);
    if (graph) cudaGraphDestroy(graph);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return aero_cuda_fail(err, e, "graph capture");
    }
    aero_cuda_graph *g = (aero_cuda_graph *)calloc(1, sizeof *g);
    if (!g) {
        cudaGraphExecDestroy(exec);
        return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    }
    g->exec = exec;
    *out = g;
    return AERO_OK;
}

extern "C" aero_status aero_cuda_graph_launch(aero_cuda *cu, aero_cuda_graph *g, aero_error *err) {
    CU_TRY(cudaGraphLaunch(g->exec, cu->compute), "cudaGraphLaunch");
    return AERO_OK;
}

extern "C" void aero_cuda_graph_free(aero_cuda_graph *g) {
    if (!g) return;
    cudaGraphExecDestroy(g->exec);
    free(g);
}

// FNV-1a over the batch's host struct (calloc'd, so padding is zero): any field a launch reads changes the key.
extern "C" uint64_t aero_cuda_batch_shape_key(const aero_cuda_batch *b) {
    const unsigned char *p = (const unsigned char *)b;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < sizeof *b; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}
