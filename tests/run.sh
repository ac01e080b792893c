#!/usr/bin/env bash
# Runs every test binary given, then the shell and Node tests; prints a summary; non-zero when any failed.
# Exit code 77 from a test means skipped (it prints why).
# --only NAME: run only the tests called NAME (test_NAME, tests/sh/[test_]NAME.sh, tests/node/NAME.test.mjs);
# fails when none is found. `make test T=NAME` uses it.
set -u
only=
if [ "${1:-}" = --only ]; then only=$2; shift 2; fi
pass=0; fail=0; skip=0; failed=()
run_one() {
  local name=$1; shift
  local out rc start end
  start=$(date +%s.%N)
  out=$("$@" 2>&1); rc=$?
  end=$(date +%s.%N)
  local secs; secs=$(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.1f", b-a}')
  # node --test reports suites skipped for lack of data as "# skipped N" with "# pass 0"
  if [ $rc -eq 0 ] && echo "$out" | grep -q '^# pass 0$' && echo "$out" | grep -qE '^# skipped [1-9]'; then rc=77; fi
  if [ $rc -eq 0 ]; then pass=$((pass+1)); echo "PASS  $name (${secs}s)";
  elif [ $rc -eq 77 ]; then skip=$((skip+1)); echo "SKIP  $name: $(echo "$out" | grep -m1 -i 'skip')";
  else fail=$((fail+1)); failed+=("$name"); echo "FAIL  $name (rc=$rc)"; echo "$out" | tail -40 | sed 's/^/      /'; fi
}
# Whether a test whose file is called $1 (suffix stripped) is selected.
wanted() { [ -z "$only" ] || [ "$1" = "$only" ] || [ "$1" = "test_$only" ]; }
# The three tests that mostly build (the sanitized fuzz library, the CUDA variant, the GPU forward pass over the
# emulation) run beside the others, which seldom keep both cores busy: the suite's wall time drops by about their
# length. Their results come at the end.
HEAVY="test_fuzz_smoke.sh test_cuda_build.sh test_cuda_emu.sh"
bg_dir=$(mktemp -d /tmp/aero_tests_bg.XXXXXX)
trap 'rm -rf "$bg_dir"' EXIT
bg=()
for h in $HEAVY; do
  t=tests/sh/$h
  [ -e "$t" ] && wanted "$(basename "$t" .sh)" || continue
  ( run_one "$h" bash "$t" > "$bg_dir/$h.out"; echo "$pass $skip $fail" > "$bg_dir/$h.rc" ) &
  bg+=("$h")
done
for t in "$@"; do run_one "$(basename "$t")" "$t"; done
for t in tests/sh/test_*.sh; do
  case " $HEAVY " in *" $(basename "$t") "*) continue ;; esac
  [ -e "$t" ] && wanted "$(basename "$t" .sh)" && run_one "$(basename "$t")" bash "$t"
done
node_tests=()
for t in tests/node/*.test.mjs; do [ -e "$t" ] && wanted "$(basename "$t" .test.mjs)" && node_tests+=("$t"); done
if [ ${#node_tests[@]} -gt 0 ] && [ ! -d node_modules ]; then
  echo "SKIP  node tests: node_modules missing (run npm ci)"; skip=$((skip+1))
else
  for t in "${node_tests[@]}"; do run_one "$(basename "$t")" node --test "$t"; done
fi
wait
for h in "${bg[@]}"; do # each background job counted from zero: add its own tallies
  cat "$bg_dir/$h.out"
  read -r p s f < "$bg_dir/$h.rc" || { p=0; s=0; f=1; }
  pass=$((pass + p)); skip=$((skip + s)); fail=$((fail + f))
  [ "$f" = 0 ] || failed+=("$h")
done
if [ -n "$only" ] && [ $((pass + skip + fail)) -eq 0 ]; then
  echo "no test called '$only' (a tests/test_*.c, tests/sh/test_*.sh or tests/node/*.test.mjs name)"; exit 1
fi
echo "== $pass passed, $skip skipped, $fail failed"
[ $fail -eq 0 ] || { printf 'failed: %s\n' "${failed[@]}"; exit 1; }
