#!/usr/bin/env bash
# The bundled models (models/aero-teacher-34M-Q8_0.gguf, models/aero-drafter-3M-F16.gguf, made by train/train.sh):
# - they load, tokenize the reference prompt to PyTorch's ids, and generate greedily the same 32 tokens that PyTorch
#   computed from the same exported weights (train/reference_logits.txt), resident and with the teacher streamed;
# - greedy speculative decoding with the drafter (chain and tree) gives the teacher's plain greedy output;
# - perplexity on the held-out slice (train/heldout.sh --small, first 8 chunks) is within 1% of PyTorch's and
#   far below the unigram perplexity of that text (795.8). Needs ../shared/data; skipped without it.
set -u
A=${AEROLLM:-build/aerollm}
[ -x "$A" ] || { echo "skipped: $A not built"; exit 77; }
T=models/aero-teacher-34M-Q8_0.gguf
D=models/aero-drafter-3M-F16.gguf
REF=train/reference_logits.txt
for f in $T $D $REF; do [ -f $f ] || { echo "skipped: $f missing"; exit 77; }; done
W=$(mktemp -d /tmp/aero_test_bundled.XXXXXX)
trap 'rm -rf "$W"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails+1)); }

# reference_logits.txt: "[teacher] model ..." then "greedy32_text <JSON string>" for each model.
ref_text() {
  local s
  s=$(awk -v m="[$1]" '$1 == m {on=1} on && $1 == "greedy32_text" {sub(/^greedy32_text /, ""); print; exit}' $REF)
  case $s in *\\*) echo "reference text for $1 has JSON escapes; extend ref_text()" >&2; return 1;; esac
  s=${s#\"}; printf '%s' "${s%\"}"
}
PROMPT=$(awk '$1 == "prompt" {sub(/^prompt /, ""); print; exit}' $REF)
PIDS=$(awk '$1 == "prompt_ids" {sub(/^prompt_ids /, ""); print; exit}' $REF)

got=$("$A" tokenize -m $T -p "$PROMPT" --ids 2>"$W/err") || fail "tokenize: $(cat "$W/err")"
[ "$got" = "$PIDS" ] || fail "tokenize '$PROMPT': got '$got', PyTorch '$PIDS'"

check_greedy() {  # name model extra-args...
  local name=$1 model=$2; shift 2
  local want; want="$PROMPT$(ref_text "$name")" || { fail "no reference for $name"; return; }
  "$A" run -m "$model" -p "$PROMPT" -n 32 --temp 0 -t 2 "$@" >"$W/out" 2>"$W/err" || { fail "run $name $*: $(tail -3 "$W/err")"; return; }
  [ "$(cat "$W/out")" = "$want" ] || fail "run $name $* greedy 32:
    got:     $(cat "$W/out")
    PyTorch: $want"
}
check_greedy teacher $T
check_greedy teacher $T --mem 24M          # streamed: 16M for the weights (the 8M F16 KV cache comes first)
check_greedy drafter $D

# Lossless greedy speculation: the drafter's chain and tree drafts change nothing in the teacher's output.
"$A" run -m $T -p "$PROMPT" -n 96 --temp 0 -t 2 >"$W/plain" 2>"$W/err" || fail "plain run: $(tail -3 "$W/err")"
for mode in "--draft $D" "--draft $D --draft-tree 8" "--draft $D --mem 31M"; do
  # shellcheck disable=SC2086
  "$A" run -m $T $mode -p "$PROMPT" -n 96 --temp 0 -t 2 >"$W/spec" 2>"$W/err" || { fail "run $mode: $(tail -3 "$W/err")"; continue; }
  cmp -s "$W/plain" "$W/spec" || fail "greedy with $mode differs from plain greedy:
    plain: $(cat "$W/plain")
    spec:  $(cat "$W/spec")"
done

# Perplexity against PyTorch (train/eval_gguf.py --chunks 8, llama.cpp's scoring: positions 257..511 of each chunk).
if train/heldout.sh --small "$W/heldout.txt" 2>"$W/err"; then
  ppl_check() {  # model pytorch_ppl ceiling
    "$A" perplexity -m "$1" -f "$W/heldout.txt" --chunks 8 -t 2 >"$W/ppl" 2>&1 || { fail "perplexity $1: $(tail -3 "$W/ppl")"; return; }
    local p; p=$(sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' "$W/ppl")
    [ -n "$p" ] || { fail "perplexity $1: no 'Final estimate' line: $(tail -3 "$W/ppl")"; return; }
    awk -v p="$p" -v r="$2" -v c="$3" 'BEGIN { d = p / r - 1; if (d < 0) d = -d; exit !(d < 0.01 && p < c) }' ||
      fail "perplexity $1 = $p; PyTorch $2 (must agree within 1%), ceiling $3"
    echo "perplexity $1: $p (PyTorch $2)"
  }
  ppl_check $T 8.9359 12
  ppl_check $D 12.5063 16
else
  echo "note: held-out text unavailable ($(cat "$W/err")); perplexity part skipped"
fi

[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "bundled models: OK"
