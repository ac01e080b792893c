#!/usr/bin/env bash
# aerollm info: metadata with long arrays abbreviated, the tensor table, totals by type, bytes per layer, the
# stream plan under --mem; clear errors for missing, corrupt and truncated files and bad arguments.
set -u
A=${AEROLLM:-build/aerollm}
[ -x "$A" ] || { echo "skipped: $A not built"; exit 77; }
M=../shared/data/models
[ -f $M/stories260K.gguf ] || { echo "skipped: ../shared/data not found"; exit 77; }
T=$(mktemp -d /tmp/aero_test_info.XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails+1)); }
has() { grep -q -- "$1" "$2" || fail "'$1' not in output of $3"; }

"$A" info $M/stories260K.gguf >"$T/out" 2>"$T/err" || fail "info stories260K: $(cat "$T/err")"
o="$T/out"; w="info stories260K"
has 'GGUF v3, 1 file, 1.13 MiB, alignment 32' "$o" "$w"
has 'metadata (19 keys)' "$o" "$w"
has 'llama.block_count  *uint32 *5$' "$o" "$w"
has 'llama.attention.layer_norm_rms_epsilon *float32 *1e-05' "$o" "$w"
# 512 tokens shown as 8 and an ellipsis: the line stays short.
has 'tokenizer.ggml.tokens *array *\[string x 512\] \["<unk>", "<s>", "</s>", "<0x00>", .*, \.\.\.\]$' "$o" "$w"
[ "$(grep 'tokenizer.ggml.tokens' "$o" | wc -c)" -lt 200 ] || fail "token array not abbreviated"
has '^tensors (48):' "$o" "$w"
has 'token_embd.weight *F32 *64 x 512 *0 *14176 *128.0 KiB' "$o" "$w"
has 'blk.4.ffn_down.weight *F32 *172 x 64 ' "$o" "$w"
has '^  F32 *48 tensors *1.12 MiB *100.0%' "$o" "$w"
has 'all *48 tensors .*292.8 K parameters' "$o" "$w"
has 'blk.0-4 *177.5 KiB each (5 layers)' "$o" "$w"
[ "$(grep -c ' F32 ' "$o")" -ge 48 ] || fail "tensor table incomplete"

"$A" info $M/stories260K-Q4_0.gguf --no-tensors >"$o" 2>"$T/err" || fail "info Q4_0: $(cat "$T/err")"
has '^  Q4_0 *32 tensors' "$o" "info Q4_0"
has '^  F32 *16 tensors' "$o" "info Q4_0"
grep -q '^tensors (' "$o" && fail "--no-tensors printed the table"

"$A" info $M/llama-2-tiny-random.gguf >"$o" 2>"$T/err" || fail "info tiny-random: $(cat "$T/err")"
has 'tokenizer.ggml.tokens *array *\[string x 32000\]' "$o" "info tiny-random"
has 'output.weight *F16 *8 x 32000' "$o" "info tiny-random"
has '^  blk.0 .*' "$o" "info tiny-random"

# A vocabulary-only file: no tensors, no layers.
"$A" info ../shared/data/vocab/ggml-vocab-gpt-2.gguf >"$o" 2>"$T/err" || fail "info vocab: $(cat "$T/err")"
has 'tokenizer.ggml.merges *array *\[string x 50000\] \["Ġ t", ' "$o" "info vocab"
has 'all *0 tensors' "$o" "info vocab"

# Strings with quotes and control bytes stay on one line, escaped.
"$A" synth --preset tiny -q -o "$T/s.gguf" || fail "synth"
"$A" info "$T/s.gguf" >"$o" 2>"$T/err" || fail "info synth: $(cat "$T/err")"
has '\["!", "\\"", "#",' "$o" "info synth"
has 'tokenizer.chat_template .*\.\.\.(3[0-9][0-9] bytes)$' "$o" "info synth"

# The stream plan under a budget (plan only: nothing is read).
if "$A" info $M/stories260K.gguf --no-tensors --mem 1M >"$o" 2>"$T/err"; then
  has 'plan under --mem 1.00 MiB' "$o" "info --mem"
  has 'units: 6 (5 layers + output head)' "$o" "info --mem"
  has 'per unit: [Rs]\{6\} ' "$o" "info --mem"
else
  grep -qiE 'budget|plan|minimum' "$T/err" || fail "info --mem 1M failed without naming the budget: $(cat "$T/err")"
fi
"$A" info $M/stories260K.gguf --no-tensors --mem 64G >"$o" 2>"$T/err" || fail "info --mem 64G: $(cat "$T/err")"
has 'per unit: RRRRRR ' "$o" "info --mem 64G"

# Errors: non-zero exit, a message naming the file and the problem.
bad() {
  local want=$1; shift
  if "$A" info "$@" >"$T/out2" 2>"$T/err"; then fail "info $* succeeded"; return; fi
  grep -q -- "$want" "$T/err" || fail "info $*: message lacks '$want': $(cat "$T/err")"
}
bad "no model file given"
bad "cannot open" "$T/missing.gguf"
bad "not a GGUF file" $M/stories260K.bin
head -c 5000 $M/stories260K.gguf >"$T/trunc.gguf"
bad "trunc.gguf: .*at offset" "$T/trunc.gguf"
head -c 1000000 $M/stories260K.gguf >"$T/cut.gguf"
bad "past end of file" "$T/cut.gguf"
bad "bad size 'lots' for --mem" $M/stories260K.gguf --mem lots
bad "--mem needs a size" $M/stories260K.gguf --mem
bad "unknown argument '--frobnicate'" $M/stories260K.gguf --frobnicate

[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "test_info: ok"
