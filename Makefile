# AeroLLM build. `make` builds ./aerollm; `make test` runs the suite; `make bench` the benchmarks;
# `make test SAN=1` builds with ASan+UBSan into build-san/; `make fuzz` builds the libFuzzer targets.
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
CFLAGS  := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-format-truncation \
           -pthread -Iinclude -Isrc $(OPT) $(EXTRA_CFLAGS)
LDLIBS  := -pthread -lm -ljansson -lmicrohttpd -lpcre2-8

# Per-file ISA flags: the binary still runs on a CPU without AVX-512; dispatch happens at run time.
AVX2_FLAGS   := -mavx2 -mfma -mf16c
AVX512_FLAGS := $(AVX2_FLAGS) -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni

LIB_SRC  := $(filter-out src/cli/%,$(wildcard src/*/*.c))
CLI_SRC  := $(wildcard src/cli/*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_SRC := $(wildcard bench/bench_*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
HEADERS  := $(wildcard include/*.h src/*/*.h tests/*.h)

# Helpers and sanitizer builds use their own BUILD folder; the default build also installs ./aerollm.
AEROLLM := $(BUILD)/aerollm

.PHONY: all test bench fuzz clean run
ifeq ($(BUILD),build)
all: aerollm
aerollm: $(AEROLLM)
	cp $(AEROLLM) aerollm
else
all: $(AEROLLM)
endif

$(BUILD)/%_avx2.o: %_avx2.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX2_FLAGS) -c $< -o $@
$(BUILD)/%_avx512.o: %_avx512.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX512_FLAGS) -c $< -o $@
$(BUILD)/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libaero.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(AEROLLM): $(CLI_OBJ) $(BUILD)/libaero.a
	$(CC) $(LDSAN) -o $@ $(CLI_OBJ) $(BUILD)/libaero.a $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(BUILD)/libaero.a $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libaero.a $(LDSAN) $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libaero.a $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libaero.a $(LDSAN) $(LDLIBS)

# The suite: C unit tests, then the Node tests against the oracles (tokenizers, templates, OpenAI client).
test: $(AEROLLM) $(TEST_BIN)
	@[ -d node_modules ] || ! command -v npm >/dev/null || npm ci
	@AEROLLM=$(AEROLLM) BUILD=$(BUILD) ./tests/run.sh $(TEST_BIN)

bench: $(AEROLLM) $(BENCH_BIN)
	@for b in $(BENCH_BIN); do echo "== $$b"; $$b || exit 1; done
	@AEROLLM=$(AEROLLM) ./bench/run.sh

# libFuzzer targets (clang). Run one: build-fuzz/fuzz_gguf -max_total_time=60
FUZZ_SRC := $(wildcard fuzz/fuzz_*.c)
fuzz:
	@mkdir -p build-fuzz
	@for f in $(FUZZ_SRC); do \
	  n=$$(basename $$f .c); \
	  echo "clang $$n"; \
	  clang -std=c11 -D_GNU_SOURCE -g -O1 -Iinclude -Isrc -pthread -fsanitize=fuzzer,address,undefined \
	    $(AVX512_FLAGS) -o build-fuzz/$$n $$f $(LIB_SRC) $(LDLIBS) || exit 1; \
	done

# Demo: the bundled teacher (models/, trained by train/train.sh) streamed under a deliberately small memory budget,
# with the bundled drafter proposing tokens: prints the text, then the stream and speculation statistics.
DEMO_PROMPT ?= Once upon a time
run: all
	./$(AEROLLM) run -p "$(DEMO_PROMPT)" -n 200 --mem 23M --draft models/aero-drafter-3M-F16.gguf --stats

clean:
	rm -rf build build-san build-fuzz aerollm
