#!/usr/bin/env bash
# Hugging Face directories without transformers: synthetic F32 models (aerollm synth) turned into HF directories by
# tests/fixtures/hf/gguf_to_hf.py (Q/K rows back in rotate-halves order, Gemma norms - 1, experts split, shards),
# then, per architecture: the directory run directly gives bitwise the GGUF's logits and greedy tokens, and
# `aerollm convert` of the directory gives a GGUF whose logits are bitwise the directory's. Refusals (missing
# shard, wrong dtype, shape against config.json, unknown architecture) fail with the file and tensor named, and a
# failed convert leaves no output file. The transformers fixtures are checked by build/tests/test_hf itself.
set -u
AEROLLM=${AEROLLM:-./aerollm}
T=${BUILD:-build}/tests/test_hf
G=tests/fixtures/hf/gguf_to_hf.py
command -v python3 >/dev/null || { echo "skipped: python3 not found"; exit 77; }
[ -x "$T" ] || { echo "skipped: $T not built (make)"; exit 77; }
work=$(mktemp -d "${TMPDIR:-/tmp}/aero_hf.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
synth() { local out=$1; shift; "$AEROLLM" synth "$@" --type F32 -t 2 --quiet -o "$out" >/dev/null 2>&1 || bad "synth $*"; }

synth "$work/tok.gguf" --preset tiny
TOK=(--tokenizer-from "$work/tok.gguf")
SMALL=(--dim 128 --layers 2 --heads 4 --kv-heads 2 --ffn 256 --vocab 512)
cases=(
  "llama|--preset tiny"
  "llama-tied|--preset tiny --tied"
  "qwen2|--arch qwen2 ${SMALL[*]}"
  "qwen3|--arch qwen3 ${SMALL[*]} --head-dim 64"
  "qwen3moe|--preset qwen3moe-tiny"
  "mixtral|--preset mixtral-tiny"
  "gemma2|--preset gemma2-tiny"
  "gemma3|--preset gemma3-tiny"
  "phi3|--preset phi3-tiny"
  "granite|--preset granite-tiny"
  "olmo2|--preset olmo2-tiny"
)
for c in "${cases[@]}"; do
  name=${c%%|*}; args=${c#*|}
  g="$work/$name.gguf"; d="$work/$name"
  # shellcheck disable=SC2086
  synth "$g" $args "${TOK[@]}"
  python3 "$G" "$g" "$d" || { bad "$name: gguf_to_hf.py"; continue; }
  out=$("$T" --same "$d" "$g" 2>&1) || bad "$name: directory vs synth GGUF: $out"
  "$AEROLLM" convert "$d" -o "$d.conv.gguf" --quiet || { bad "$name: convert"; continue; }
  out=$("$T" --same "$d" "$d.conv.gguf" 2>&1) || bad "$name: directory vs converted GGUF: $out"
  echo "$name: directory = GGUF = converted GGUF (bitwise)"
done

# shards through model.safetensors.index.json; BF16 matrices (read as stored); Llama 3.1 rope (rope_freqs from config)
python3 "$G" "$work/llama.gguf" "$work/sharded" --shards 3 && out=$("$T" --same "$work/sharded" "$work/llama.gguf" 2>&1) ||
  bad "sharded: $out"
python3 "$G" "$work/llama.gguf" "$work/bf16" --bf16 && "$AEROLLM" convert "$work/bf16" -o "$work/bf16.gguf" --quiet &&
  out=$("$T" --same "$work/bf16" "$work/bf16.gguf" 2>&1) || bad "bf16: $out"
[ "$("$AEROLLM" info "$work/bf16.gguf" | grep -c ' BF16 ')" -gt 0 ] || bad "bf16: converted file has no BF16 tensors"
synth "$work/l31.gguf" --preset llama-1b "${SMALL[@]}" "${TOK[@]}"
python3 "$G" "$work/l31.gguf" "$work/l31" && "$AEROLLM" convert "$work/l31" -o "$work/l31.conv.gguf" --quiet &&
  out=$("$T" --same "$work/l31" "$work/l31.conv.gguf" 2>&1) || bad "llama3 rope: $out"
cmp -s <("$AEROLLM" info "$work/l31.gguf" | grep rope_freqs | awk '{print $2,$3}') \
       <("$AEROLLM" info "$work/l31.conv.gguf" | grep rope_freqs | awk '{print $2,$3}') || bad "llama3 rope: no rope_freqs.weight"
python3 "$G" "$work/qwen3moe.gguf" "$work/fused" --fused-experts && "$AEROLLM" convert "$work/fused" -o "$work/fused.gguf" --quiet &&
  out=$("$T" --same "$work/fused" "$work/qwen3moe.gguf" 2>&1) && out=$("$T" --same "$work/fused" "$work/fused.gguf" 2>&1) ||
  bad "fused experts: $out"
for n in gemma3 l31; do # transformers 5's rope_parameters instead of rope_theta / rope_scaling
  python3 "$G" "$work/$n.gguf" "$work/$n.v5" --rope-parameters && out=$("$T" --same "$work/$n.v5" "$work/$n" 2>&1) ||
    bad "$n with rope_parameters: $out"
done
[ $fail -eq 0 ] && echo "shards, BF16, Llama 3.1 rope, fused experts, rope_parameters: ok"
# the transformers fixtures (tests/fixtures/hf/<arch>/, checked against their ref.json by build/tests/test_hf):
# each one's converted GGUF gives bitwise the directory's logits
n_fx=0
for d in tests/fixtures/hf/*/; do
  n=$(basename "$d"); [ -f "$d/config.json" ] && [ "$n" != deepseek3 ] || continue
  "$AEROLLM" convert "$d" -o "$work/fx.gguf" --quiet && out=$("$T" --same "$d" "$work/fx.gguf" 2>&1) ||
    bad "fixture $n: directory vs converted GGUF: $out"
  n_fx=$((n_fx + 1))
done
echo "transformers fixtures: $n_fx directories = their converted GGUFs (bitwise)"
for ty in Q8_0 Q4_K; do
  "$AEROLLM" convert "$work/llama" -o "$work/q.gguf" --type $ty --quiet &&
    "$AEROLLM" run -m "$work/q.gguf" -p "Hello" -n 4 --temp 0 >/dev/null 2>&1 || bad "convert --type $ty does not run"
done

# refusals: exit non-zero, the file and the tensor named
refuse() { # what dir want...
  local what=$1 dir=$2; shift 2
  local msg; msg=$("$AEROLLM" run -m "$dir" -p hi -n 1 2>&1) && { bad "$what: accepted"; return; }
  for w in "$@"; do echo "$msg" | grep -qF -- "$w" || bad "$what: message '$msg' lacks '$w'"; done
  rm -f "$work/out.gguf"
  "$AEROLLM" convert "$dir" -o "$work/out.gguf" --quiet >/dev/null 2>&1 && bad "$what: convert accepted"
  [ -e "$work/out.gguf" ] && bad "$what: convert left $work/out.gguf"
  ls "$work" | grep -q 'out.gguf.tmp' && bad "$what: convert left a temporary file"
  echo "$what: refused ($msg)"
}
cp -r "$work/sharded" "$work/noshard"; rm "$work/noshard/model-00002-of-00003.safetensors"
refuse "missing shard" "$work/noshard" "model-00002-of-00003.safetensors"
cp -r "$work/llama" "$work/dtype"
python3 - "$work/dtype/model.safetensors" <<'PY'
import json, struct, sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); n = struct.unpack("<Q", b[:8])[0]
h = b[8:8 + n].replace(b'"model.norm.weight":{"dtype":"F32"', b'"model.norm.weight":{"dtype":"I32"')
assert len(h) == n; b[8:8 + n] = h; open(p, "wb").write(b)
PY
refuse "wrong dtype" "$work/dtype" "model.safetensors" "model.norm.weight" "I32"
cp -r "$work/llama" "$work/shape"
sed -i 's/"intermediate_size": 512/"intermediate_size": 384/' "$work/shape/config.json"
refuse "shape against config" "$work/shape" "model.safetensors" "mlp." "config.json"
cp -r "$work/llama" "$work/arch"
sed -i 's/LlamaForCausalLM/FooForCausalLM/' "$work/arch/config.json"
refuse "unknown architecture" "$work/arch" "config.json" "FooForCausalLM"
cp -r "$work/llama" "$work/trunc"; truncate -s -100 "$work/trunc/model.safetensors"
refuse "truncated shard" "$work/trunc" "model.safetensors"
[ $fail -eq 0 ] && echo "test_hf.sh: ok"
exit $fail
