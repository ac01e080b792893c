#!/usr/bin/env bash
# CI-sized fuzzing: builds every libFuzzer target in fuzz/ with `make fuzz` (clang) and runs each for a short time,
# FUZZ_SMOKE_BUDGET seconds in all (24 by default, at most 20 s each). A crash, leak or timeout fails the test
# and leaves the input in a temp folder.
# Seeds come from fuzz/corpus/<name>/ and a dictionary from fuzz/<name>.dict when they exist (<name> = the part
# after fuzz_). Skips when clang with libFuzzer is not installed. Longer runs by hand:
#   make fuzz && build-fuzz/fuzz_gguf -max_total_time=600 fuzz/corpus/gguf -dict=fuzz/gguf.dict
set -u
BUDGET=${FUZZ_SMOKE_BUDGET:-24}  # the whole suite must stay under 10 min on 2 cores; longer runs by hand
PER_MAX=20

shopt -s nullglob
srcs=(fuzz/fuzz_*.c)
if [ ${#srcs[@]} -eq 0 ]; then echo "skipped: no fuzz targets in fuzz/"; exit 77; fi
if ! command -v clang >/dev/null 2>&1; then echo "skipped: clang not installed (libFuzzer needs clang)"; exit 77; fi
work=$(mktemp -d /tmp/aero_fuzz_smoke.XXXXXX)
trap 'rm -rf "$work"' EXIT
printf '#include <stdint.h>\n#include <stddef.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' > "$work/probe.c"
if ! clang -fsanitize=fuzzer "$work/probe.c" -o "$work/probe" >/dev/null 2>&1; then
  echo "skipped: clang cannot link -fsanitize=fuzzer (libFuzzer runtime missing)"; exit 77
fi

# Build with the Makefile (the library once into build-fuzz/libaero.a, then each target); only what is stale.
# Suites running at once share build-fuzz/: one builds while the others wait.
mkdir -p build-fuzz
if command -v flock >/dev/null 2>&1; then exec 9>build-fuzz/.lock; flock 9; fi
start=$(date +%s)
# The caller's make (its jobserver, SAN, T) is not ours: a clean sub-make.
env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make -j2 fuzz >"$work/build.log" 2>&1 ||
  { echo "make fuzz failed:"; tail -30 "$work/build.log"; exit 1; }
exec 9>&-
echo "fuzz targets up to date ($(grep -c -- '-fsanitize=fuzzer-no-link' "$work/build.log") library file(s) compiled, $(( $(date +%s) - start )) s)"

n=${#srcs[@]}
per=$(( BUDGET / n )); [ $per -gt $PER_MAX ] && per=$PER_MAX; [ $per -lt 3 ] && per=3
fail=0
for s in "${srcs[@]}"; do
  name=$(basename "$s" .c); short=${name#fuzz_}; bin=build-fuzz/$name
  if [ ! -x "$bin" ]; then echo "$name: not built"; fail=1; continue; fi
  corpus="$work/corpus_$short"; mkdir -p "$corpus"
  [ -d "fuzz/corpus/$short" ] && cp -r "fuzz/corpus/$short/." "$corpus/"
  dict=(); [ -f "fuzz/$short.dict" ] && dict=(-dict="fuzz/$short.dict")
  mkdir -p "$work/art_$short"
  timeout $(( per + 60 )) "$bin" -max_total_time=$per -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/art_$short/" "${dict[@]}" "$corpus" >"$work/$name.log" 2>&1
  rc=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/$name.log" | grep -o '[0-9]*$')
  arts=$(ls "$work/art_$short" | wc -l)
  if [ $rc -ne 0 ] || [ "$arts" -ne 0 ]; then
    keep=$(mktemp -d /tmp/aero_fuzz_crash_${short}.XXXXXX)
    cp -r "$work/art_$short/." "$keep/" 2>/dev/null; cp "$work/$name.log" "$keep/"
    echo "$name: FAILED (exit $rc) after ${runs:-?} runs; inputs and log kept in $keep"
    grep -m5 -E 'ERROR|SUMMARY|deadly|Test unit written' "$work/$name.log" | sed 's/^/    /'
    fail=1
  else
    echo "$name: ${runs:-?} runs in ${per} s, 0 crashes (corpus $(ls "$corpus" | wc -l) inputs)"
  fi
done
exit $fail
