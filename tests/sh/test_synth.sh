#!/usr/bin/env bash
# aerollm synth: tiny models of each architecture and of every matrix type are written and read back by
# aerollm info with the expected tensors and types; the same seed gives the same bytes (at any thread count),
# another seed other bytes; --tokenizer-from copies a real vocabulary; bad arguments fail with a clear message.
set -u
A=${AEROLLM:-build/aerollm}
[ -x "$A" ] || { echo "skipped: $A not built"; exit 77; }
T=$(mktemp -d /tmp/aero_test_synth.XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails+1)); }
ok() { "$@" >"$T/out" 2>"$T/err" || { fail "$* (exit $?): $(tail -3 "$T/err")"; return 1; }; }
has() { grep -q -- "$1" "$2" || fail "'$1' not in $2 output: $(head -c 300 "$2")"; }
hasnt() { ! grep -q -- "$1" "$2" || fail "'$1' unexpectedly in $2 output"; }

SMALL="--dim 256 --layers 2 --heads 4 --kv-heads 2 --ffn 512 --vocab 600"

# Each architecture: its own tensors, read back by info.
ok "$A" synth --preset tiny -q -o "$T/llama.gguf" && ok "$A" info "$T/llama.gguf"
has 'general.architecture *string *"llama"' "$T/out"
has 'blk.1.ffn_down.weight *F16 *512 x 256' "$T/out"
has 'output.weight *F16 *256 x 512' "$T/out"
has 'token_embd.weight *F16 *256 x 512' "$T/out"
has 'tokenizer.ggml.model *string *"gpt2"' "$T/out"
has 'tokenizer.chat_template .*<|start_header_id|>' "$T/out"
hasnt 'attn_q.bias' "$T/out"

ok "$A" synth --arch qwen2 $SMALL --type Q8_0 --tied -q -o "$T/qwen2.gguf" && ok "$A" info "$T/qwen2.gguf"
has 'blk.0.attn_q.bias *F32 *256 ' "$T/out"
has 'blk.1.attn_v.bias *F32 *128 ' "$T/out"
has 'blk.0.attn_k.weight *Q8_0 *256 x 128' "$T/out"
hasnt '^  output\.weight' "$T/out"
has 'tokenizer.ggml.tokens.*\[string x 600\]' "$T/out"

ok "$A" synth --arch qwen3 $SMALL --head-dim 128 --type Q4_K -q -o "$T/qwen3.gguf" && ok "$A" info "$T/qwen3.gguf"
has 'blk.0.attn_q_norm.weight *F32 *128 ' "$T/out"
has 'blk.1.attn_k_norm.weight *F32 *128 ' "$T/out"
has 'blk.0.attn_q.weight *Q4_K *256 x 512' "$T/out"         # 4 heads x 128: wider than dim, as in Qwen3
has 'blk.0.attn_output.weight *Q4_K *512 x 256' "$T/out"
has 'qwen3.attention.key_length *uint32 *128' "$T/out"
has '<|im_end|>' "$T/out"

# Every matrix type the kernels compute with.
for ty in F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K Q4_K Q5_K Q6_K IQ2_XXS IQ2_XS IQ3_XXS IQ3_S IQ4_NL IQ4_XS MXFP4; do
  ok "$A" synth --preset tiny --type $ty --layers 1 -q -o "$T/t_$ty.gguf" || continue
  ok "$A" info "$T/t_$ty.gguf" --no-tensors || continue
  n=$(grep -E "^  $ty +[0-9]+ tensors" "$T/out" | awk '{print $2}')
  want=9; [ $ty = F32 ] && want=12 # the 3 norms are F32 too
  [ "${n:-0}" = $want ] || fail "--type $ty: expected $want $ty tensors, info says '${n:-none}'"
done

# The Q4_K_M / Q5_K_M mixes as llama.cpp's quantizer makes them: Q6_K for the head and for attn_v and ffn_down of
# the "more bits" layers (8 layers: 0, 3, 6, 7), the base type elsewhere; tied: the embedding is the head.
ok "$A" synth --preset tiny --layers 8 --type Q4_K_M -q -o "$T/q4km.gguf" && ok "$A" info "$T/q4km.gguf"
has 'general.file_type *uint32 *15' "$T/out"
has 'output.weight *Q6_K' "$T/out"
has 'token_embd.weight *Q4_K' "$T/out"
for l in 0 3 6 7; do has "blk.$l.attn_v.weight *Q6_K" "$T/out"; has "blk.$l.ffn_down.weight *Q6_K" "$T/out"; done
for l in 1 2 4 5; do has "blk.$l.attn_v.weight *Q4_K" "$T/out"; has "blk.$l.ffn_down.weight *Q4_K" "$T/out"; done
has 'blk.3.attn_q.weight *Q4_K' "$T/out"
has 'blk.3.ffn_up.weight *Q4_K' "$T/out"
ok "$A" synth --preset tiny --layers 8 --type q5_k_m --tied -q -o "$T/q5km.gguf" && ok "$A" info "$T/q5km.gguf"
has 'general.file_type *uint32 *17' "$T/out"
has 'token_embd.weight *Q6_K' "$T/out"
has 'blk.2.ffn_down.weight *Q5_K' "$T/out"
has 'blk.6.attn_v.weight *Q6_K' "$T/out"

# Determinism: same seed -> same bytes (1 or 2 threads); another seed -> other bytes; --exact differs but loads.
for ty in F16 Q4_K; do
  ok "$A" synth --preset tiny --type $ty --seed 7 -t 1 -q -o "$T/s7a.gguf"
  ok "$A" synth --preset tiny --type $ty --seed 7 -t 2 -q -o "$T/s7b.gguf"
  ok "$A" synth --preset tiny --type $ty --seed 8 -q -o "$T/s8.gguf"
  cmp -s "$T/s7a.gguf" "$T/s7b.gguf" || fail "$ty: same seed gave different files"
  cmp -s "$T/s7a.gguf" "$T/s8.gguf" && fail "$ty: different seeds gave the same file"
done
ok "$A" synth --preset tiny --type Q4_K --seed 7 --exact -q -o "$T/exact.gguf" && ok "$A" info "$T/exact.gguf" --no-tensors
cmp -s "$T/exact.gguf" "$T/s7a.gguf" && fail "--exact gave the same bytes as block drawing"
[ "$(stat -c %s "$T/exact.gguf")" = "$(stat -c %s "$T/s7a.gguf")" ] || fail "--exact changed the file size"

# A preset shortened by --layers keeps its real dimensions; rows that do not fit K-quant blocks fall back.
ok "$A" synth --preset qwen2-0.5b --layers 1 --vocab 1000 --type Q4_K -o "$T/q05.gguf"
has 'matrices with rows not a multiple of the Q4_K block' "$T/out"
ok "$A" info "$T/q05.gguf"
has 'qwen2.embedding_length *uint32 *896' "$T/out"
has 'blk.0.attn_q.weight *Q5_0 *896 x 896' "$T/out"
has 'blk.0.ffn_down.weight *Q4_K *4864 x 896' "$T/out"
has 'blk.0.attn_k.weight *Q5_0 *896 x 128' "$T/out"
ok "$A" synth --preset llama-8b --layers 1 --vocab 300 --type Q4_0 -q -o "$T/l8.gguf" && ok "$A" info "$T/l8.gguf"
has 'rope_freqs.weight *F32 *64 ' "$T/out"
has 'blk.0.ffn_gate.weight *Q4_0 *4096 x 14336' "$T/out"
has 'llama.rope.freq_base *float32 *500000' "$T/out"

# A real vocabulary through --tokenizer-from: the vocabulary size follows it.
if [ -f ../shared/data/models/stories260K.gguf ]; then
  ok "$A" synth --preset tiny --tokenizer-from ../shared/data/models/stories260K.gguf -q -o "$T/tf.gguf" &&
    ok "$A" info "$T/tf.gguf"
  has 'tokenizer.ggml.model *string *"llama"' "$T/out"
  has 'token_embd.weight *F16 *256 x 512' "$T/out"
  has 'tokenizer.ggml.scores' "$T/out"
fi

# The tokenizer section loads in the tokenizer module (when the tokenize command is built).
if "$A" tokenize -m "$T/llama.gguf" -p "the quick brown fox" --ids >"$T/out" 2>"$T/err"; then
  [ "$(wc -w <"$T/out")" -ge 3 ] || fail "tokenize on a synthetic model gave: $(cat "$T/out")"
elif ! grep -q "not built yet" "$T/err"; then
  fail "tokenize on a synthetic model failed: $(cat "$T/err")"
fi

# The model loader runs what synth writes (when the run command is built): each architecture generates, and the
# padding tokens of the vocabulary stay out of greedy output.
for m in llama qwen2 qwen3; do
  if timeout 120 "$A" run -m "$T/$m.gguf" -p "Once upon a time" -n 8 --temp 0 >"$T/out" 2>"$T/err"; then
    grep -q '\[PAD' "$T/out" && fail "greedy output of the synthetic $m model contains padding tokens: $(cat "$T/out")"
  elif ! grep -q "not built yet" "$T/err"; then
    fail "aerollm run on the synthetic $m model failed: $(tail -3 "$T/err")"
  fi
done

# Bad arguments: non-zero exit, a message naming the problem, no file left behind.
bad() {
  local want=$1; shift
  if "$A" synth "$@" >"$T/out" 2>"$T/err"; then fail "synth $* succeeded"; return; fi
  grep -qi -- "$want" "$T/err" || fail "synth $*: message lacks '$want': $(cat "$T/err")"
}
bad "no output file" --preset tiny
bad "unknown preset 'llama-9b'" --preset llama-9b -o "$T/x.gguf"
bad "unknown type 'Q9_K'" --preset tiny --type Q9_K -o "$T/x.gguf"
bad "cannot be used for weights" --preset tiny --type Q8_K -o "$T/x.gguf"
bad "cannot be used for weights" --preset tiny --type IQ1_S -o "$T/x.gguf"
bad "unknown architecture 'gpt'" --arch gpt $SMALL -o "$T/x.gguf"
bad "needs --dim" --arch llama --layers 2 -o "$T/x.gguf"
bad "give --preset" -o "$T/x.gguf"
bad "not a multiple of the KV head count" --preset tiny --heads 4 --kv-heads 3 -o "$T/x.gguf"
bad "--dim: '0' is not an integer" --preset tiny --dim 0 -o "$T/x.gguf"
bad "--layers: 'abc'" --preset tiny --layers abc -o "$T/x.gguf"
bad "vocabulary size" --preset tiny --vocab 100 -o "$T/x.gguf"
bad "head size 3 must be even" --preset tiny --head-dim 3 -o "$T/x.gguf"
bad "contradicts preset" --preset tiny --arch qwen3 -o "$T/x.gguf"
bad "--seed" --preset tiny --seed -5 -o "$T/x.gguf"
bad "needs a value" --preset tiny -o
bad "unknown argument '--bogus'" --preset tiny --bogus -o "$T/x.gguf"
bad "no-such.gguf" --preset tiny --tokenizer-from "$T/no-such.gguf" -o "$T/x.gguf"
bad "no tokenizer.ggml.tokens" --preset tiny --tokenizer-from fuzz/corpus/gguf/aligned.gguf -o "$T/x.gguf"
bad "cannot create" --preset tiny -o "$T/no/such/dir/x.gguf"
[ -e "$T/x.gguf" ] && fail "a failed synth left $T/x.gguf"
ls "$T" | grep -q '\.tmp\.' && fail "temporary files left: $(ls "$T" | grep '\.tmp\.')"

[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "test_synth: ok"
