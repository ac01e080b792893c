# AeroLLM build. `make` builds ./aerollm; `make test` runs the suite (`make test T=NAME` runs one test);
# `make bench` the benchmarks; `make test SAN=1` builds with ASan+UBSan into build-san/; `make fuzz` builds the
# libFuzzer targets into build-fuzz/; `make install PREFIX=...` / `make uninstall` install the binary and models.
CC      ?= cc
SAN     ?= 0
ifeq ($(SAN),1)
BUILD   ?= build-san
OPT     := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDSAN   := -fsanitize=address,undefined
else
BUILD   ?= build
OPT     := -O2 -g
LDSAN   :=
endif
# OBJ: the folder of the C objects, BUILD's unless given. The CUDA=1 and CUDA=emu variants compile every C file
# with the same flags, so tests/sh/test_cuda_emu.sh links its build against build-cuda's objects (OBJ=build-cuda)
# instead of compiling the library a second time; a link's own outputs (libaero.a, the binaries) stay in BUILD.
OBJ     ?= $(BUILD)
WARN    := -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-format-truncation
# -MMD -MP: each object records the headers it includes (BUILD/x.d), so touching a header rebuilds only its users.
CFLAGS  := -std=c11 -D_GNU_SOURCE $(WARN) -pthread -Iinclude -Isrc -MMD -MP $(OPT) $(EXTRA_CFLAGS)
LDLIBS  := -pthread -lm -ljansson -lmicrohttpd -lpcre2-8

# Per-file ISA flags: the binary still runs on a CPU without AVX-512; dispatch happens at run time.
AVX2_FLAGS   := -mavx2 -mfma -mf16c
COMMA        := ,
AVX512_FLAGS := $(AVX2_FLAGS) -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni

LIB_SRC  := $(filter-out src/cli/%,$(wildcard src/*/*.c))
# CUDA=1: the GPU backend (cuda.mk: nvcc objects into BUILD/cuda, -DAERO_CUDA=1, libcudart in the link) and
# the GPU forward pass; without it neither is compiled and nothing needs CUDA.
CUDA     ?= 0
.DEFAULT_GOAL := all
ifeq ($(CUDA),1)
CUDA_BUILD := $(BUILD)/cuda
include cuda.mk
CFLAGS   += $(CUDA_CFLAGS)
LDLIBS   += $(CUDA_LDLIBS)
else ifeq ($(CUDA),emu)
# The GPU forward pass over a CPU emulation of the CUDA backend (tests/cuda/cuda_emu.c): its wiring is tested
# where there is no GPU (tests/sh/test_cuda_emu.sh); needs no CUDA.
CFLAGS   += -DAERO_CUDA=1
CUDA_OBJ := $(BUILD)/tests/cuda/cuda_emu.o
else
LIB_SRC  := $(filter-out src/model/forward_cuda.c src/model/gpu_prof.c,$(LIB_SRC))
endif
# MPI=1: pipeline parallelism across the ranks of an MPI job (src/mpi/transport.c talks MPI; docs/perf/mpi.md).
# On by default where mpicc is found; MPI=0, or no MPI installed, builds the same binary for a job of one rank.
MPI      ?= $(if $(shell command -v mpicc 2>/dev/null),1,0)
ifeq ($(MPI),1)
MPI_CFLAGS := $(shell mpicc --showme:compile 2>/dev/null || pkg-config --cflags mpi 2>/dev/null)
LDLIBS     += $(shell mpicc --showme:link 2>/dev/null || pkg-config --libs mpi 2>/dev/null)
$(OBJ)/src/mpi/transport.o: CFLAGS += -DAERO_MPI=1 $(MPI_CFLAGS)
endif
CLI_SRC  := $(wildcard src/cli/*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(OBJ)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(OBJ)/%.o)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_SRC := $(wildcard bench/bench_*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

# Helpers and sanitizer builds use their own BUILD folder; the default build also installs ./aerollm.
AEROLLM := $(BUILD)/aerollm

.PHONY: all test bench fuzz clean run install uninstall FORCE
ifeq ($(BUILD),build)
all: aerollm
aerollm: $(AEROLLM)
	cp $(AEROLLM) aerollm
else
all: $(AEROLLM)
endif

# Compile rules for one build folder: $(1) folder, $(2) compiler, $(3) flags. The ISA-specific kernels get their
# instruction set on top; everything else stays baseline x86-64.
define compile_rules
$(1)/%_avx2.o: %_avx2.c
	@mkdir -p $$(dir $$@)
	$(2) $(3) $$(AVX2_FLAGS) -c $$< -o $$@
$(1)/%_avx512.o: %_avx512.c
	@mkdir -p $$(dir $$@)
	$(2) $(3) $$(AVX512_FLAGS) -c $$< -o $$@
$(1)/%.o: %.c
	@mkdir -p $$(dir $$@)
	$(2) $(3) -c $$< -o $$@
endef
$(eval $(call compile_rules,$(BUILD),$(CC),$$(CFLAGS)))
ifneq ($(OBJ),$(BUILD))
$(eval $(call compile_rules,$(OBJ),$(CC),$$(CFLAGS)))
endif

# Objects also depend on the compiler command: changing flags (EXTRA_CFLAGS=..., a new warning) rebuilds them; the
# links also on the libraries (OBJ/.flags records the compile, BUILD/.ldflags the link, so two variants that link
# differently share one OBJ). $(1) stamp file, $(2) the command it records.
define flags_stamp
$(1): FORCE
	@mkdir -p $$(dir $$@)
	@echo '$(2)' | cmp -s - $$@ || echo '$(2)' > $$@
endef
$(eval $(call flags_stamp,$(OBJ)/.flags,$(CC) $(CFLAGS)))
$(eval $(call flags_stamp,$(BUILD)/.ldflags,$(CC) $(CFLAGS) $(LDSAN) $(LDLIBS)))
$(LIB_OBJ) $(CLI_OBJ): $(OBJ)/.flags
$(TEST_BIN) $(BENCH_BIN) $(AEROLLM): $(BUILD)/.ldflags

$(BUILD)/libaero.a: $(LIB_OBJ) $(CUDA_OBJ)
	@rm -f $@
	ar rcs $@ $^

# The commit the binary was built from, for `aerollm --version`: from git in a clone, from .git-commit in a tarball
# made by `git archive` (export-subst fills it in), else "unknown" (or GIT_COMMIT=... given). The header is
# rewritten only when the commit changes, so an unchanged tree does not relink.
GIT_COMMIT ?= $(shell if [ -e .git ]; then git describe --always --dirty --abbrev=12 --exclude='*' 2>/dev/null || echo unknown; \
                elif grep -qv '^[$$]Format' .git-commit 2>/dev/null; then head -c 40 .git-commit | tr -cd '0-9a-f'; \
                else echo unknown; fi)
$(OBJ)/aero_commit.h: FORCE
	@mkdir -p $(dir $@)
	@echo '#define AERO_GIT_COMMIT "$(GIT_COMMIT)"' > $@.tmp
	@cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@
$(OBJ)/src/cli/main.o: $(OBJ)/aero_commit.h
$(OBJ)/src/cli/main.o: CFLAGS += -I$(OBJ)

# The web page (web/*) is compiled into the server: web/embed.sh turns the files into C arrays (od and sed only,
# nothing fetched) that src/server/web.c includes; editing a page file rebuilds only web.o.
WEB_FILES := $(filter-out web/embed.sh,$(wildcard web/*))
$(OBJ)/web_assets.inc: $(WEB_FILES) web/embed.sh
	@mkdir -p $(dir $@)
	sh web/embed.sh $(WEB_FILES) > $@.tmp && mv $@.tmp $@
$(OBJ)/src/server/web.o: $(OBJ)/web_assets.inc
$(OBJ)/src/server/web.o: CFLAGS += -I$(OBJ)

$(AEROLLM): $(CLI_OBJ) $(BUILD)/libaero.a
	$(CC) $(LDSAN) -o $@ $(CLI_OBJ) $(BUILD)/libaero.a $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(BUILD)/libaero.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libaero.a $(LDSAN) $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libaero.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libaero.a $(LDSAN) $(LDLIBS)

# The suite: C unit tests, then the shell tests, then the Node tests against the oracles (tokenizers, templates,
# OpenAI client). T=NAME runs one test: a C test (test_sample or sample), a shell test (tests/sh/test_install.sh,
# test_install or install) or a Node test (server_badinput, server_badinput.test.mjs); only what it needs is built.
ifdef T
T_NAME   := $(patsubst %.test,%,$(basename $(notdir $(T))))
RUN_BIN  := $(filter $(BUILD)/tests/$(T_NAME) $(BUILD)/tests/test_$(T_NAME),$(TEST_BIN))
RUN_ARGS := --only "$(T_NAME)"
else
RUN_BIN  := $(TEST_BIN)
RUN_ARGS :=
endif
test: $(AEROLLM) $(RUN_BIN)
	@[ -d node_modules ] || ! command -v npm >/dev/null || npm ci
	@AEROLLM=$(AEROLLM) BUILD=$(BUILD) SAN=$(SAN) ./tests/run.sh $(RUN_ARGS) $(RUN_BIN)

bench: $(AEROLLM) $(BENCH_BIN)
	@for b in $(BENCH_BIN); do echo "== $$b"; $$b || exit 1; done
	@AEROLLM=$(AEROLLM) ./bench/run.sh

# libFuzzer targets (clang): the library is compiled once into build-fuzz/libaero.a with coverage
# instrumentation (fuzzer-no-link) and sanitizers, then each fuzz/fuzz_*.c links against it.
# Run one: build-fuzz/fuzz_gguf -max_total_time=60 fuzz/corpus/gguf -dict=fuzz/gguf.dict
FUZZ_BUILD  := build-fuzz
FUZZ_CC     := clang
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -Iinclude -Isrc -pthread -MMD -MP -fsanitize=address,undefined \
               -fno-sanitize-recover=undefined
FUZZ_SRC    := $(wildcard fuzz/fuzz_*.c)
FUZZ_BIN    := $(FUZZ_SRC:fuzz/%.c=$(FUZZ_BUILD)/%)
FUZZ_OBJ    := $(LIB_SRC:%.c=$(FUZZ_BUILD)/obj/%.o)
$(eval $(call compile_rules,$(FUZZ_BUILD)/obj,$(FUZZ_CC),$$(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link))
$(eval $(call flags_stamp,$(FUZZ_BUILD)/.flags,$(FUZZ_CC) $(FUZZ_CFLAGS) $(LDLIBS)))
$(FUZZ_OBJ) $(FUZZ_BIN): $(FUZZ_BUILD)/.flags
$(FUZZ_BUILD)/web_assets.inc: $(WEB_FILES) web/embed.sh
	@mkdir -p $(dir $@)
	sh web/embed.sh $(WEB_FILES) > $@.tmp && mv $@.tmp $@
$(FUZZ_BUILD)/obj/src/server/web.o: $(FUZZ_BUILD)/web_assets.inc
# The SIMD dot kernels without sanitizers (coverage stays): UBSan on dot_avx2.c's unrolled intrinsics cost ~4
# minutes of clang time, ASan 32 of its 40 s, and no fuzzer's input reaches them (parsers only; the kernels are
# checked against their scalar references, which keep every sanitizer, in test_kernels and `make test SAN=1`).
FUZZ_SIMD_OBJ := $(filter $(FUZZ_BUILD)/obj/src/kernels/dot_%,$(FUZZ_OBJ))
$(FUZZ_SIMD_OBJ): FUZZ_CFLAGS := $(filter-out -fsanitize=address$(COMMA)undefined -fno-sanitize-recover=undefined,\
                                   $(FUZZ_CFLAGS))
$(FUZZ_BUILD)/obj/src/server/web.o: FUZZ_CFLAGS += -I$(FUZZ_BUILD)
fuzz: $(FUZZ_BIN)
$(FUZZ_BUILD)/libaero.a: $(FUZZ_OBJ)
	@rm -f $@
	ar rcs $@ $^
# Linked aside and renamed: a test suite running at the same time may be executing the old binary.
$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c $(FUZZ_BUILD)/libaero.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -MF $@.d -MT $@ -fsanitize=fuzzer -o $@.part $< $(FUZZ_BUILD)/libaero.a $(LDLIBS)
	@mv $@.part $@

# Install: the binary in PREFIX/bin, the bundled models in PREFIX/share/aerollm/models, where the installed
# binary looks for its default model (relative to itself, so DESTDIR staging and any PREFIX work unrebuilt).
PREFIX  ?= /usr/local
DATADIR := $(PREFIX)/share/aerollm
MODELS  := $(wildcard models/*.gguf models/*.md)
install: $(AEROLLM)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(DATADIR)/models
	install -m 755 $(AEROLLM) $(DESTDIR)$(PREFIX)/bin/aerollm
	install -m 644 $(MODELS) $(DESTDIR)$(DATADIR)/models/
uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/aerollm $(addprefix $(DESTDIR)$(DATADIR)/,$(MODELS))
	rmdir $(DESTDIR)$(DATADIR)/models $(DESTDIR)$(DATADIR) 2>/dev/null || true

# Demo: the bundled teacher (models/, trained by train/train.sh) streamed under a deliberately small memory budget,
# with the bundled drafter proposing tokens: prints the text, then the stream and speculation statistics.
DEMO_PROMPT ?= Once upon a time
run: all
	./$(AEROLLM) run -p "$(DEMO_PROMPT)" -n 200 --mem 31M --draft models/aero-drafter-3M-F16.gguf --stats

clean:
	rm -rf build build-san build-fuzz build-cuda build-emu aerollm

-include $(wildcard $(OBJ)/src/*/*.d $(BUILD)/tests/*.d $(BUILD)/bench/*.d $(FUZZ_BUILD)/obj/src/*/*.d $(FUZZ_BUILD)/*.d)
