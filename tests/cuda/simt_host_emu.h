// A small SIMT emulation for running block-level CUDA code on the CPU (tests/cuda/test_attn_host.cpp): each
// thread of a block is a fiber on one OS thread (an x86-64 stack switch: ucontext's swapcontext made two
// signal-mask system calls per switch, half the tests' time); __syncthreads waits for every thread of the block,
// a shuffle or ballot for every lane of its warp, and a mix of the two (a barrier under divergent control)
// is reported as a deadlock. __shared__ variables become statics: one block runs at a time. Host stand-ins for
// the types come from cuda_host_emu.h.
#ifndef AERO_TESTS_CUDA_SIMT_HOST_EMU_H
#define AERO_TESTS_CUDA_SIMT_HOST_EMU_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <functional>

#include "kernels/cuda/cuda_host_emu.h"

#define __global__
#define __shared__ static
#define __launch_bounds__(...)

struct emu_dim3 {
    unsigned x, y, z;
};
static inline uint4 make_uint4(uint32_t x, uint32_t y, uint32_t z, uint32_t w) { return uint4{x, y, z, w}; }
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
static inline uint2 make_uint2(uint32_t x, uint32_t y) { return uint2{x, y}; }
static inline float2 make_float2(float x, float y) { return float2{x, y}; }
static inline int __float2int_rn(float f) { return (int)nearbyintf(f); } // round to nearest even (default mode)
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
using std::max;
using std::min;

static emu_dim3 threadIdx, blockIdx, blockDim, gridDim;

#if !defined(__x86_64__)
#error "simt_host_emu.h: the fiber switch is written for x86-64"
#endif
// Saves the callee-saved registers, MXCSR and the x87 control word on the current stack, stores the stack pointer
// in *from_sp and resumes the fiber whose stack pointer is to_sp (the SysV ABI leaves every other register to
// the caller). Defined once per program: include this header from one file of a test.
extern "C" void emu_switch(void **from_sp, void *to_sp);
asm(".text\n.globl emu_switch\n.type emu_switch, @function\nemu_switch:\n"
    "\tpushq %rbp\n\tpushq %rbx\n\tpushq %r12\n\tpushq %r13\n\tpushq %r14\n\tpushq %r15\n"
    "\tsubq $8, %rsp\n\tstmxcsr (%rsp)\n\tfnstcw 4(%rsp)\n"
    "\tmovq %rsp, (%rdi)\n\tmovq %rsi, %rsp\n"
    "\tldmxcsr (%rsp)\n\tfldcw 4(%rsp)\n\taddq $8, %rsp\n"
    "\tpopq %r15\n\tpopq %r14\n\tpopq %r13\n\tpopq %r12\n\tpopq %rbx\n\tpopq %rbp\n\tret\n"
    ".size emu_switch, .-emu_switch\n");

enum { EMU_MAX_THREADS = 256, EMU_STACK = 256 << 10 };
enum { EMU_RUN, EMU_WARP_WAIT, EMU_BLOCK_WAIT, EMU_DONE };
static struct {
    void *sched, *ctx[EMU_MAX_THREADS]; // saved stack pointers
    int state[EMU_MAX_THREADS], cur, n;
    char *stacks;
    std::function<void()> body;
    uint32_t xbuf[2][EMU_MAX_THREADS]; // shuffle / ballot exchange, alternating (one warp wait per exchange)
    int xcount[EMU_MAX_THREADS];
} emu;

// Suspends the current thread until its warp (or block) has all arrived.
static inline void emu_wait(int kind) {
    emu.state[emu.cur] = kind;
    emu_switch(&emu.ctx[emu.cur], emu.sched);
}
static inline void __syncthreads() { emu_wait(EMU_BLOCK_WAIT); }

// Publishes this lane's word and returns the slot where every lane of the warp has published its own.
static inline const uint32_t *emu_exchange(uint32_t word) {
    int t = (int)threadIdx.x, c = emu.xcount[t]++ & 1;
    emu.xbuf[c][t] = word;
    emu_wait(EMU_WARP_WAIT);
    return emu.xbuf[c] + (threadIdx.x & ~31u);
}
static inline float __shfl_xor_sync(unsigned, float v, int o) {
    uint32_t w;
    memcpy(&w, &v, 4);
    const uint32_t *lanes = emu_exchange(w);
    float r;
    memcpy(&r, &lanes[(threadIdx.x & 31) ^ (unsigned)o], 4);
    return r;
}
static inline int __shfl_xor_sync(unsigned, int v, int o) {
    const uint32_t *lanes = emu_exchange((uint32_t)v);
    return (int)lanes[(threadIdx.x & 31) ^ (unsigned)o];
}
static inline unsigned __ballot_sync(unsigned, bool pred) {
    const uint32_t *lanes = emu_exchange(pred ? 1u : 0u);
    unsigned m = 0;
    for (int l = 0; l < 32; l++) m |= lanes[l] << l;
    return m;
}

// A fiber's first frame: runs the body, then hands back to the scheduler for good.
static void emu_trampoline() {
    emu.body();
    emu.state[emu.cur] = EMU_DONE;
    void *dead;
    emu_switch(&dead, emu.sched);
    abort(); // never resumed
}

// A new fiber's stack as emu_switch leaves a suspended one: the trampoline as the return address (16-byte
// aligned below it, as a call leaves it), zeroed registers and the current MXCSR / x87 control word.
static void *emu_fiber_stack(char *base) {
    uintptr_t top = ((uintptr_t)(base + EMU_STACK) & ~(uintptr_t)15) - 16;
    void **sp = (void **)top;
    *sp = (void *)emu_trampoline;
    for (int r = 0; r < 6; r++) *--sp = NULL;
    uint32_t mxcsr;
    uint16_t fcw;
    __asm__ volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(mxcsr), "=m"(fcw));
    char *ctl = (char *)--sp;
    memset(ctl, 0, 8);
    memcpy(ctl, &mxcsr, 4);
    memcpy(ctl + 4, &fcw, 2);
    return sp;
}

// Runs one block of n threads through `body` (which reads threadIdx / blockIdx); false on a deadlock.
static bool emu_run_block(emu_dim3 block, int n, const std::function<void()> &body) {
    if (!emu.stacks) emu.stacks = (char *)malloc((size_t)EMU_STACK * EMU_MAX_THREADS);
    emu.body = body, emu.n = n;
    blockIdx = block, blockDim = emu_dim3{(unsigned)n, 1, 1};
    for (int t = 0; t < n; t++) {
        emu.ctx[t] = emu_fiber_stack(emu.stacks + (size_t)EMU_STACK * t);
        emu.state[t] = EMU_RUN, emu.xcount[t] = 0;
    }
    for (;;) {
        for (int t = 0; t < n; t++)
            if (emu.state[t] == EMU_RUN) {
                emu.cur = t, threadIdx = emu_dim3{(unsigned)t, 0, 0};
                emu_switch(&emu.sched, emu.ctx[t]);
            }
        bool released = false, all_done = true, all_block = true;
        for (int w0 = 0; w0 < n; w0 += 32) { // a warp whose live lanes all wait at a shuffle goes on
            bool all = true, any = false;
            for (int t = w0; t < w0 + 32 && t < n; t++) {
                if (emu.state[t] == EMU_DONE) continue;
                any = true;
                all &= emu.state[t] == EMU_WARP_WAIT;
            }
            if (any && all) {
                for (int t = w0; t < w0 + 32 && t < n; t++)
                    if (emu.state[t] == EMU_WARP_WAIT) emu.state[t] = EMU_RUN;
                released = true;
            }
        }
        if (released) continue;
        for (int t = 0; t < n; t++) {
            all_done &= emu.state[t] == EMU_DONE;
            all_block &= emu.state[t] == EMU_DONE || emu.state[t] == EMU_BLOCK_WAIT;
        }
        if (all_done) return true;
        if (!all_block) {
            printf("SIMT emulation: deadlock in block (%u, %u, %u): a warp shuffle under divergent control\n",
                   block.x, block.y, block.z);
            return false;
        }
        for (int t = 0; t < n; t++)
            if (emu.state[t] == EMU_BLOCK_WAIT) emu.state[t] = EMU_RUN;
    }
}

// Runs every block of a grid, blocks one after another.
static bool emu_launch(emu_dim3 grid, int threads, const std::function<void()> &body) {
    gridDim = grid;
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++)
                if (!emu_run_block(emu_dim3{x, y, z}, threads, body)) return false;
    return true;
}

#endif
