# The CUDA backend (src/kernels/cuda/*.cu) and its GPU tests. The Makefile includes this file when CUDA=1 and
# adds $(CUDA_OBJ) to the library and $(CUDA_LDLIBS) to the link; alone it builds the tests:
#   make -f cuda.mk cuda-tests      # build-cuda/test_cuda, build-cuda/bench_cuda, build-cuda/test_decode_host
#   make -f cuda.mk cuda-test-host  # the GPU decoders and attention v2 checked on the CPU (no GPU or CUDA runtime)
#   scripts/gpu_tests.sh            # runs them (on a machine with a GPU)
# Real code for sm_90 (H100/H200) plus PTX for compute_80 that newer or older-than-Hopper drivers JIT.
CUDA_HOME  ?= /usr/local/cuda
NVCC       ?= $(CUDA_HOME)/bin/nvcc
CUDA_ARCH  ?= -gencode arch=compute_90,code=sm_90 -gencode arch=compute_80,code=compute_80
# --fmad=false: the kernels write every fused multiply-add explicitly, so one-token and batched
# instantiations round identically (batch invariance); -Isrc for the core headers.
NVCCFLAGS  ?= -O3 -std=c++17 $(CUDA_ARCH) --fmad=false -Xcompiler -fPIC -Xcompiler -Wall -Isrc -Iinclude
CUDA_BUILD ?= build-cuda
CUDA_SRC   := $(wildcard src/kernels/cuda/*.cu)
CUDA_HDR   := $(wildcard src/kernels/cuda/*.h src/kernels/cuda/*.cuh)
CUDA_OBJ   := $(patsubst src/%.cu,$(CUDA_BUILD)/%.o,$(CUDA_SRC))
CUDA_CFLAGS := -DAERO_CUDA=1
CUDA_LDLIBS := -L$(CUDA_HOME)/lib64 -lcudart -lstdc++ -Wl,-rpath,$(CUDA_HOME)/lib64
CUDA_CC    ?= cc

$(CUDA_BUILD)/kernels/cuda/%.o: src/kernels/cuda/%.cu $(CUDA_HDR)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

# The tests check the GPU against the CPU scalar reference, compiled here from its own sources.
CUDA_REF_SRC := src/kernels/quants_ref.c src/kernels/quants_iq.c src/kernels/quants_iq_grid.c src/kernels/iq_grids.c \
                src/core/dtype.c src/core/status.c
CUDA_TEST_CFLAGS := -std=c11 -O2 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -Wno-format-truncation -Isrc -Iinclude $(CUDA_CFLAGS)

$(CUDA_BUILD)/test_cuda: tests/cuda/test_cuda.c tests/cuda/cuda_test_util.h $(CUDA_OBJ) $(CUDA_REF_SRC)
	$(CUDA_CC) $(CUDA_TEST_CFLAGS) -o $@ tests/cuda/test_cuda.c $(CUDA_REF_SRC) $(CUDA_OBJ) $(CUDA_LDLIBS) -lm -lpthread

# The reference sources as objects, for links by nvcc and c++ (which would compile .c files as C++).
CUDA_REF_OBJ := $(patsubst src/%.c,$(CUDA_BUILD)/ref/%.o,$(CUDA_REF_SRC))
$(CUDA_BUILD)/ref/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CUDA_CC) $(CUDA_TEST_CFLAGS) -c $< -o $@

$(CUDA_BUILD)/bench_cuda: tests/cuda/bench_cuda.cu tests/cuda/cuda_test_util.h $(CUDA_OBJ) $(CUDA_REF_OBJ)
	$(NVCC) $(NVCCFLAGS) -o $@ tests/cuda/bench_cuda.cu $(CUDA_OBJ) $(CUDA_REF_OBJ) -lm

# Read ceilings of the access patterns a decode kernel may use (no arithmetic): stands alone.
$(CUDA_BUILD)/bench_access: tests/cuda/bench_access.cu
	$(NVCC) -O3 -std=c++17 $(CUDA_ARCH) -o $@ tests/cuda/bench_access.cu

# The GPU decoders compiled for the CPU (host stand-ins for the intrinsics): runs anywhere, no CUDA needed.
CUDA_CXX ?= c++
$(CUDA_BUILD)/test_decode_host: tests/cuda/test_decode_host.cpp src/kernels/cuda/cuda_decode.cuh src/kernels/cuda/cuda_host_emu.h $(CUDA_REF_OBJ)
	$(CUDA_CXX) -std=c++17 -O2 -Wall -Wno-unknown-pragmas -Isrc -Iinclude -o $@ tests/cuda/test_decode_host.cpp \
		$(CUDA_REF_OBJ) -lm

# The attention v2 kernel run on the CPU under a SIMT emulation (fibers for threads): no CUDA needed.
$(CUDA_BUILD)/test_attn_host: tests/cuda/test_attn_host.cpp tests/cuda/simt_host_emu.h tests/cuda/host_check.h src/kernels/cuda/cuda_attention.cuh src/kernels/cuda/cuda_host_emu.h $(CUDA_REF_OBJ)
	$(CUDA_CXX) -std=c++17 -O2 -Wall -Wno-unknown-pragmas -Isrc -Iinclude -o $@ tests/cuda/test_attn_host.cpp \
		$(CUDA_REF_OBJ) -lm

# The tensor-core matmul run on the CPU under the same emulation, mma.m16n8k16 emulated from its fragment layout.
$(CUDA_BUILD)/test_mma_host: tests/cuda/test_mma_host.cpp tests/cuda/simt_host_emu.h tests/cuda/host_check.h src/kernels/cuda/cuda_mma_kernel.cuh src/kernels/cuda/cuda_q8_kernel.cuh src/kernels/cuda/cuda_decode.cuh src/kernels/cuda/cuda_host_emu.h $(CUDA_REF_OBJ)
	$(CUDA_CXX) -std=c++17 -O2 -Wall -Wno-unknown-pragmas -Isrc -Iinclude -o $@ tests/cuda/test_mma_host.cpp \
		$(CUDA_REF_OBJ) -lm

.PHONY: cuda-objs cuda-tests cuda-test-host cuda-clean
cuda-objs: $(CUDA_OBJ)
cuda-tests: $(CUDA_BUILD)/test_cuda $(CUDA_BUILD)/bench_cuda $(CUDA_BUILD)/bench_access $(CUDA_BUILD)/test_decode_host \
            $(CUDA_BUILD)/test_attn_host $(CUDA_BUILD)/test_mma_host
cuda-test-host: $(CUDA_BUILD)/test_decode_host $(CUDA_BUILD)/test_attn_host $(CUDA_BUILD)/test_mma_host
	$(CUDA_BUILD)/test_decode_host
	$(CUDA_BUILD)/test_attn_host
	$(CUDA_BUILD)/test_mma_host
cuda-clean:
	rm -rf $(CUDA_BUILD)
