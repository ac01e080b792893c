#!/usr/bin/env bash
# CI-sized fuzzing: builds every libFuzzer target in fuzz/ (as make fuzz does, clang) and runs each for a short time,
# 80 s in all (at most 20 s each). A crash, leak or timeout fails the test and leaves the input in a temp folder.
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

# Build. `make fuzz` compiles every library source again for each target (75 s per target on this machine), too
# slow for the suite once there are several targets, so this builds the same way (same compiler and flags as the
# Makefile's fuzz rule) but compiles each library source once, only when stale, two at a time, and links each
# target against an archive of those objects. Outputs land where make fuzz puts them: build-fuzz/fuzz_<name>.
FUZZ_CFLAGS="-std=c11 -D_GNU_SOURCE -g -O1 -Iinclude -Isrc -pthread -fsanitize=address,undefined \
  -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni"
LIBS="-pthread -lm -ljansson -lmicrohttpd -lpcre2-8"
obj=build-fuzz/obj
mkdir -p "$obj"
# Suites running at once share build-fuzz/: one builds while the others wait.
if command -v flock >/dev/null 2>&1; then exec 9>build-fuzz/.lock; flock 9; fi
newest_h=$(find include src -name '*.h' -printf '%T@\n' | sort -n | tail -1)
start=$(date +%s)
stale=(); lib_srcs=()
for c in src/*/*.c; do case $c in src/cli/*) ;; *) lib_srcs+=("$c");; esac; done # one snapshot of the sources
for c in "${lib_srcs[@]}"; do
  o=$obj/$(echo "${c%.c}" | tr / _).o
  if [ ! -f "$o" ] || [ "$c" -nt "$o" ] || awk -v h="$newest_h" -v t="$(stat -c %Y "$o")" 'BEGIN{exit !(h > t)}'; then
    stale+=("$c")
  fi
done
if [ ${#stale[@]} -gt 0 ]; then
  printf '%s\n' "${stale[@]}" | xargs -P 2 -I{} sh -c 'o='"$obj"'/$(echo "{}" | sed "s/\.c$//; s#/#_#g").o; \
    clang '"$FUZZ_CFLAGS"' -fsanitize=fuzzer-no-link -c {} -o "$o.part" && mv "$o.part" "$o" || { echo "compile failed: {}"; exit 255; }' \
    >"$work/build.log" 2>&1 || { echo "building the library for fuzzing failed:"; tail -30 "$work/build.log"; exit 1; }
fi
objs=()
for c in "${lib_srcs[@]}"; do objs+=("$obj/$(echo "${c%.c}" | tr / _).o"); done
lib=build-fuzz/libaero-fuzz.a
relib=0
[ -f "$lib" ] || relib=1
for o in "${objs[@]}"; do [ $relib -eq 1 ] && break; [ "$o" -nt "$lib" ] && relib=1; done
[ $relib -eq 0 ] && [ "$(ar t "$lib" | wc -l)" -ne ${#objs[@]} ] && relib=1 # a source added or removed
if [ $relib -eq 1 ]; then
  rm -f "$lib.part"
  ar rcs "$lib.part" "${objs[@]}" && mv "$lib.part" "$lib" || { echo "archiving the fuzz library failed"; exit 1; }
fi
for s in "${srcs[@]}"; do
  b=build-fuzz/$(basename "$s" .c)
  if [ ! -x "$b" ] || [ "$s" -nt "$b" ] || [ "$lib" -nt "$b" ]; then
    # Linked aside and renamed: another suite may be running the old binary.
    clang $FUZZ_CFLAGS -fsanitize=fuzzer -o "$b.part" "$s" "$lib" $LIBS >"$work/link.log" 2>&1 && mv "$b.part" "$b" ||
      { echo "building $b failed:"; tail -30 "$work/link.log"; exit 1; }
  fi
done
[ -n "$(command -v flock)" ] && flock -u 9
echo "fuzz targets up to date (${#stale[@]} library file(s) recompiled, $(( $(date +%s) - start )) s)"

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
