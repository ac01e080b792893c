#!/usr/bin/env bash
# Streaming through the CLI: `aerollm run --mem` below the minimum is refused with the minimum in the message;
# greedy text (stories260K, and a synth model of a few MB) is identical at the smallest legal budget, a middle
# budget and resident; --stats prints the per-pass report with its disk floor; `aerollm repack` writes a GGUF
# whose every layer is one 4 KiB-aligned range, that `info` reads and that generates the same text.
set -u
: "${AEROLLM:=./aerollm}"
MODEL=../shared/data/models/stories260K.gguf
if [ ! -r "$MODEL" ]; then echo "skipped: $MODEL not found"; exit 77; fi
work=$(mktemp -d /tmp/aero_test_stream_sh.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; fi; }

# Every run here uses a 128-token context: --mem holds the KV cache too, and a small one keeps the budgets between
# the minimum and the file size about the weights.
C=(-c 128)

# Smallest legal budget of a model, in bytes, from the refusal of a 1-byte budget ("minimum ... (N bytes)").
min_budget() {
  "$AEROLLM" run -m "$1" "${C[@]}" -p x -n 1 --mem 1 2>&1 >/dev/null | tee "$work/refusal.txt" |
    sed -n 's/.*below the minimum [0-9.]* [KMG]iB (\([0-9]*\) bytes).*/\1/p'
}

gen() { # model budget -> greedy text
  local mem=()
  [ "$2" != 0 ] && mem=(--mem "$2")
  "$AEROLLM" run -m "$1" "${C[@]}" -p "Once upon a time" -n 48 --temp 0 "${mem[@]}" 2>"$work/err.txt"
}

identity() { # name model
  local name=$1 model=$2 min size mid ref out
  min=$(min_budget "$model")
  check "$name: a 1-byte budget is refused naming the minimum" "grep -q 'below the minimum' '$work/refusal.txt'"
  check "$name: the refusal gives the minimum in bytes" "[ -n '$min' ]"
  [ -n "$min" ] || return
  size=$(stat -c %s "$model")
  mid=$(( (min + size) / 2 ))
  ref=$(gen "$model" 0)
  check "$name: resident run" "[ -n \"\$ref\" ]"
  for b in "$min" "$mid"; do
    out=$(gen "$model" "$b")
    check "$name: --mem $b runs ($(head -c 300 "$work/err.txt"))" "[ -n \"\$out\" ]"
    check "$name: --mem $b gives the resident text" "[ \"\$out\" = \"\$ref\" ]"
  done
  # below the minimum: refused, exit status non-zero, the minimum in the message
  local below=$(( min - 200000 ))
  [ $below -lt 1 ] && below=1
  "$AEROLLM" run -m "$model" "${C[@]}" -p x -n 1 --mem "$below" > /dev/null 2> "$work/below.txt"
  rc=$?
  check "$name: --mem $below is refused" "[ $rc -ne 0 ]"
  check "$name: the refusal states the minimum ($(cat "$work/below.txt"))" "grep -q 'minimum [0-9.]* [KMG]iB ($min bytes)' '$work/below.txt'"
}

identity stories260K "$MODEL"

# a synthetic model with separate (untied) output head and several MB of layers
if "$AEROLLM" synth --arch llama --dim 256 --layers 6 --heads 4 --ffn 768 --vocab 512 --type Q8_0 --untied \
     --quiet -o "$work/synth.gguf" > "$work/synth.log" 2>&1; then
  identity synth "$work/synth.gguf"
else
  echo "FAIL: aerollm synth: $(tail -3 "$work/synth.log")"; fail=1
fi

# --stats: the per-pass report with the floor measured in the run
min=$(min_budget "$MODEL")
"$AEROLLM" run -m "$MODEL" "${C[@]}" -p "Once upon a time" -n 8 --temp 0 --mem "$min" --stats > /dev/null 2> "$work/stats.txt"
check "--stats prints per-pass rows and the disk floor ($(head -c 400 "$work/stats.txt"))" \
  "grep -q 'floor ms' '$work/stats.txt' && grep -q '^  mean ' '$work/stats.txt' && grep -q 'disk bw' '$work/stats.txt'"

# repack: each layer contiguous and aligned, the same text at the smallest budget
if "$AEROLLM" repack "$MODEL" "$work/repacked.gguf" > /dev/null 2> "$work/repack.txt"; then
  check "repack reports contiguous layers" "grep -q 'each layer one contiguous 4 KiB-aligned range' '$work/repack.txt'"
  check "no temporary file left" "[ -z \"\$(ls '$work' | grep tmp)\" ]"
  "$AEROLLM" info "$work/repacked.gguf" > "$work/info.txt" 2>&1
  check "info reads the repacked file" "grep -q 'general.alignment' '$work/info.txt'"
  a=$(gen "$MODEL" 0); b=$(gen "$work/repacked.gguf" "$(min_budget "$work/repacked.gguf")")
  check "repacked model, streamed, gives the original text" "[ -n \"\$a\" ] && [ \"\$a\" = \"\$b\" ]"
else
  echo "FAIL: repack: $(cat "$work/repack.txt")"; fail=1
fi
"$AEROLLM" repack "$work/does-not-exist.gguf" "$work/x.gguf" > /dev/null 2>&1
check "repack of a missing file fails" "[ $? -ne 0 ] && [ ! -e '$work/x.gguf' ]"

[ $fail -eq 0 ] && echo "test_stream.sh: ok"
exit $fail
