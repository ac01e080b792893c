// CPU feature detection (CPUID + XGETBV), so kernels pick an ISA the CPU and the OS both support.
#ifndef AERO_CORE_CPU_H
#define AERO_CORE_CPU_H

#include <stdbool.h>

typedef struct {
    bool avx2, fma, f16c;                       // with OS support for YMM state
    bool avx512f, avx512bw, avx512vl, avx512dq; // with OS support for ZMM and opmask state
    bool avx512vnni, avx512bf16;
    int n_cpus; // online CPUs (at least 1)
} aero_cpu_features;

// Detected once; the returned struct lives forever.
const aero_cpu_features *aero_cpu_get(void);

// Number of online CPUs, at least 1.
int aero_cpu_count(void);

#endif
