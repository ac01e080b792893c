#!/usr/bin/env bash
# `aerollm run --draft` end to end: greedy text identical to plain greedy for a draft model (chain, fixed chain,
# tree, tree grown by cost), for n-grams and with a streamed teacher; --stats prints the speculation figures; `aerollm bench --draft`
# runs; bad input (a drafter with another vocabulary, --draft-max 0, a drafter whose context is too short for the
# request) fails with a message naming the problem and a non-zero exit.
set -u
M=../shared/data/models
[ -d "$M" ] || { echo "skipped: ../shared/data not found"; exit 77; }
A=${AEROLLM:-./aerollm}
work=$(mktemp -d /tmp/aero_spec_cli.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }

T=$M/stories260K.gguf
D=$M/stories260K-Q4_0.gguf
for prompt in "Once upon a time" "Lily wanted to"; do
  "$A" run -m "$T" -p "$prompt" -n 80 --temp 0 >"$work/plain.txt" 2>"$work/plain.err" || bad "plain run: $(cat "$work/plain.err")"
  i=0
  for flags in "--draft $D" "--draft $D --draft-max 5 --draft-fixed" "--draft $D --draft-tree 24 --draft-max 8" \
               "--draft $D --draft-p-min 0.5 --draft-min 2" "--draft ngram" "--draft ngram --draft-tree 16" \
               "--draft $D --draft-tree 16 --mem 2530K" "--draft $D --draft-policy cost --draft-max 24" \
               "--draft $D --draft-policy cost --draft-costs 0.01,0.02 --draft-tree 40"; do
    i=$((i + 1))
    # shellcheck disable=SC2086
    "$A" run -m "$T" -p "$prompt" -n 80 --temp 0 $flags >"$work/spec$i.txt" 2>"$work/spec$i.err" ||
      bad "run $flags: $(tail -3 "$work/spec$i.err")"
    cmp -s "$work/plain.txt" "$work/spec$i.txt" || bad "'$prompt' $flags: output differs from plain greedy"
  done
done

# --stats: the speculation block with acceptance, tokens per pass, passes, draft time, speedup
"$A" run -m "$T" -p "Once upon a time" -n 60 --temp 0 --draft "$D" --stats >/dev/null 2>"$work/stats.err" ||
  bad "--stats run failed"
for field in "acceptance rate" "tokens per verify pass" "target passes" "draft " "speedup"; do
  grep -q "$field" "$work/stats.err" || bad "--stats lacks '$field'"
done

# sampling runs (the distribution itself is checked in test_spec_lossless)
"$A" run -m "$T" -p "Once upon a time" -n 40 --temp 0.8 --seed 7 --draft "$D" >"$work/s.txt" 2>"$work/s.err" ||
  bad "sampling with a drafter: $(tail -2 "$work/s.err")"
"$A" run -m "$T" -p "Once upon a time" -n 40 --temp 0.8 --seed 7 --draft "$D" --draft-tree 12 >/dev/null 2>&1 ||
  bad "sampling with a tree"
"$A" run -m "$T" -p "Once upon a time" -n 40 --temp 0.8 --seed 7 --draft "$D" --draft-policy cost >/dev/null 2>&1 ||
  bad "sampling with a tree grown by cost"

# bench --draft: verify-cost curve, acceptance, predicted and measured speedup
"$A" bench -m "$T" --draft "$D" -p 32 -n 32 >"$work/bench.txt" 2>&1 || bad "bench --draft: $(tail -3 "$work/bench.txt")"
for field in "verify" "acceptance" "tokens per pass" "predicted" "measured"; do
  grep -qi "$field" "$work/bench.txt" || bad "bench --draft lacks '$field'"
done

# bad input: non-zero exit and a message naming the problem
expect_fail() { # pattern, args...
  local pat=$1; shift
  if "$A" "$@" >"$work/out.txt" 2>"$work/err.txt"; then bad "succeeded: $*"; return; fi
  grep -qi "$pat" "$work/err.txt" || bad "'$*': message lacks '$pat': $(cat "$work/err.txt")"
}
expect_fail "token id 259" run -m "$T" -p "Hi" -n 4 --draft "$M/llama-2-tiny-random.gguf"
expect_fail "draft-max" run -m "$T" -p "Hi" -n 4 --draft "$D" --draft-max 0
expect_fail "context is 2048 tokens, shorter than" run -m "$T" -p "Hi" -c 4096 -n 3000 --draft "$D"
expect_fail "draft-policy expects" run -m "$T" -p "Hi" -n 4 --draft "$D" --draft-policy widest
expect_fail "draft-costs expects" run -m "$T" -p "Hi" -n 4 --draft "$D" --draft-policy cost --draft-costs 0.1
expect_fail "cannot open\|no such\|not found" run -m "$T" -p "Hi" -n 4 --draft "$work/missing.gguf"
# a draft head projects through the output head every drafted token: a budget that would stream the head keeps
# it resident instead (layers give way), and greedy output stays the plain output. --mem 38M: the head's weights,
# cache cells and scratch (13.4 MB at -c 512) come out of it first, and plain decoding still streams the head there
H=models/aero-draft-head-4M-F16.gguf TB=models/aero-teacher-34M-Q8_0.gguf
if [ -f "$H" ] && [ -f "$TB" ]; then
    "$A" run -m "$TB" -p "Once upon a time" -n 32 --temp 0 --mem 38M --stats > "$work/plain38.txt" 2>"$work/plain38.err" || bad "plain --mem 38M"
    grep -q "output head streamed" "$work/plain38.err" || bad "plain --mem 38M no longer streams the head: the check below tests nothing"
    "$A" run -m "$TB" -p "Once upon a time" -n 32 --temp 0 --mem 38M --draft-head "$H" --stats > "$work/head38.txt" 2>"$work/head38.err" || bad "--draft-head --mem 38M"
    grep -q "output head resident" "$work/head38.err" || bad "--draft-head: the output head is not resident: $(grep '^stream: budget' "$work/head38.err")"
    cmp -s "$work/plain38.txt" "$work/head38.txt" || bad "--draft-head greedy differs from plain"
fi
[ $fail -eq 0 ] && echo "test_spec_cli: ok"
exit $fail
