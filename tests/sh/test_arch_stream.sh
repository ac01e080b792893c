#!/usr/bin/env bash
# The newer architectures (gemma2, gemma3, phi3, granite, olmo2) stream as llama does: greedy text with every layer
# streamed at the smallest --mem the model takes, and with a 3-token tile (-b 3), equals the resident text.
set -u
A=${AEROLLM:-build/aerollm}
[ -x "$A" ] || { echo "skipped: $A not built"; exit 77; }
T=$(mktemp -d /tmp/aero_test_arch_stream.XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails+1)); }
for p in gemma2-tiny gemma3-tiny phi3-tiny-longrope granite-tiny olmo2-tiny; do
  "$A" synth --preset $p --type Q8_0 -q -o "$T/m.gguf" || { fail "synth $p"; continue; }
  run() { "$A" run -m "$T/m.gguf" -p "Once upon a time" -n 16 --temp 0 -c 256 "$@" 2>/dev/null; }
  ref=$(run)
  min=$("$A" run -m "$T/m.gguf" -p x -n 1 -c 256 --mem 100K 2>&1 | grep -o 'minimum [0-9.]* [KMG]iB ([0-9]* bytes)' |
        grep -o '([0-9]*' | tr -d '(')
  [ -n "$min" ] || { fail "$p: no minimum budget reported"; continue; }
  [ "$(run --mem "$min")" = "$ref" ] || fail "$p: streamed at --mem $min differs from resident"
  [ "$(run -b 3)" = "$ref" ] || fail "$p: -b 3 differs"
  [ -n "$ref" ] || fail "$p: no text"
done
[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "test_arch_stream: ok"
