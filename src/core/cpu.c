#include "cpu.h"

#include <pthread.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define AERO_X86 1
#endif

static aero_cpu_features cpu_features;
static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;

#ifdef AERO_X86
// XGETBV without needing -mxsave on this file: which register states the OS saves on context switch.
static unsigned long long read_xcr0(void) {
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}
#endif

// Reads CPUID once: instruction sets count only when XCR0 shows the OS saves their registers.
static void cpu_detect(void) {
    aero_cpu_features *f = &cpu_features;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    f->n_cpus = n > 0 ? (int)n : 1;
#ifdef AERO_X86
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    bool osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    bool fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    if (!osxsave || !avx) return;
    unsigned long long xcr0 = read_xcr0();
    bool ymm = (xcr0 & 0x6) == 0x6, zmm = ymm && (xcr0 & 0xe0) == 0xe0;
    if (!ymm) return;
    unsigned int max_leaf = __get_cpuid_max(0, NULL);
    if (max_leaf < 7) return;
    __cpuid_count(7, 0, a, b, c, d);
    f->fma = fma;
    f->f16c = f16c;
    f->avx2 = (b >> 5) & 1;
    if (zmm) {
        f->avx512f = (b >> 16) & 1;
        f->avx512dq = (b >> 17) & 1;
        f->avx512bw = (b >> 30) & 1;
        f->avx512vl = (b >> 31) & 1;
        f->avx512vnni = (c >> 11) & 1;
        unsigned int a1, b1, c1, d1;
        __cpuid_count(7, 1, a1, b1, c1, d1);
        f->avx512bf16 = (a1 >> 5) & 1;
    }
#endif
}

// Detection runs once, whatever thread asks first.
const aero_cpu_features *aero_cpu_get(void) {
    pthread_once(&cpu_once, cpu_detect);
    return &cpu_features;
}

// The pool's default size.
int aero_cpu_count(void) { return aero_cpu_get()->n_cpus; }
